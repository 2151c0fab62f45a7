//! How an object or a page of objects is answered, as the request negotiated it
//! (`negotiation.rs`): as JSON, as its `PartialObjectMetadata`, or as the Table its
//! resource's strategy prints for `kubectl get`.

use keelson_api::ResourceInfo;
use serde_json::Value;

use crate::negotiation::{MetaVersion, Output, cannot_transform, internal_type};
use crate::registry::strategy;
use crate::request::Request;
use crate::response::{Response, error_response, json_ordered, json_response};
use crate::status::ApiResult;

/// One object as the request asks for it (upstream's `transformResponseObject`): as
/// it is, as a Table for `kubectl get`, or as its `PartialObjectMetadata`; a list's
/// transform is not acceptable for one object (406), a Status is never transformed.
pub fn respond(
    req: &Request,
    info: &ResourceInfo,
    code: http::StatusCode,
    object: &Value,
) -> Response {
    let answer = |output| -> ApiResult<Value> {
        Ok(match output {
            _ if object["kind"] == "Status" => object.clone(),
            Output::Object => object.clone(),
            Output::Table(version) => {
                table(info, std::slice::from_ref(object), None, req, version, true)?
            }
            Output::Partial(version) => crate::table::partial_object_metadata(object, version),
            Output::PartialList(_) => {
                let group = object["apiVersion"].as_str().and_then(|v| v.rsplit_once('/'));
                let kind = object["kind"].as_str().unwrap_or(info.kind);
                let go = internal_type(group.map_or("", |(g, _)| g), kind, info.is_custom(), false);
                return Err(cannot_transform(format!(
                    "you requested PartialObjectMetadataList, but the requested object is not a list ({go})"
                )));
            }
        })
    };
    let output = match req.output(info, false) {
        Ok(output) => output,
        Err(error) => return error_response(&error),
    };
    match answer(output) {
        // Custom resources are encoded as Go maps, in key order.
        Ok(body) if info.is_custom() && output == Output::Object => {
            json_ordered(code, &body, &crate::gojson::KEYS)
        }
        Ok(body) => json_response(code, &body),
        Err(error) => error_response(&error),
    }
}

/// `objects` of `info`'s resource as a Table of `meta.k8s.io` `version` with the printer
/// of its strategy; `list_meta` for lists, `None` for one object; `headers` false leaves
/// the column definitions out (a watch's later events).
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    list_meta: Option<Value>,
    req: &Request,
    version: MetaVersion,
    headers: bool,
) -> ApiResult<Value> {
    let printer = strategy::for_resource(info).printer();
    crate::table::render(printer, objects, list_meta, req, version, headers)
}

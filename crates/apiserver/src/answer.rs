//! How an object or a page of objects is answered: as JSON, or as the Table its
//! resource's strategy prints for `kubectl get`.

use http::StatusCode;
use keelson_api::ResourceInfo;
use serde_json::Value;

use crate::registry::strategy;
use crate::request::Request;
use crate::response::{Response, json_response};

/// One object as the request asks for it: as a Table for `kubectl get`, else as is.
pub fn respond(req: &Request, info: &ResourceInfo, code: StatusCode, object: &Value) -> Response {
    if req.wants_table() {
        return json_response(code, &table(info, std::slice::from_ref(object), None, req));
    }
    json_response(code, object)
}

/// `objects` of `info`'s resource as a Table; `list_meta` for lists, `None` for one
/// object.
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    list_meta: Option<Value>,
    req: &Request,
) -> Value {
    crate::table::render(strategy::for_resource(info).printer(), objects, list_meta, req)
}

//! The `scale` subresource: an `autoscaling/v1` `Scale` view of a workload's
//! `spec.replicas` (deployments, replicasets, statefulsets, replicationcontrollers), as
//! `kubectl scale` and autoscalers use it.

use http::StatusCode;
use keelson_api::ResourceInfo;
use serde_json::{Value, json};

use crate::meta::metadata;
use crate::registry::selector::selector_string;
use crate::registry::update_precondition;
use crate::registry::{Place, decode, stores_as};
use crate::request::{Request, Target};
use crate::response::{Response, json_response};
use crate::status::{ApiError, ApiResult, Cause};
use crate::{ApiServer, patch};

/// The Scale of `object`.
fn scale_of(info: &ResourceInfo, object: &Value) -> Value {
    let meta = metadata(object);
    let keep = ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"];
    let scale_meta: serde_json::Map<String, Value> = meta
        .iter()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(scale) = custom_scale(info) {
        let read = |field: &str| scale[field].as_str().and_then(|p| at_path(object, p));
        let mut status =
            json!({ "replicas": read("statusReplicasPath").and_then(Value::as_i64).unwrap_or(0) });
        if let Some(selector) = read("labelSelectorPath").and_then(Value::as_str) {
            status["selector"] = json!(selector);
        }
        return json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": scale_meta,
            "spec": { "replicas": read("specReplicasPath").and_then(Value::as_i64).unwrap_or(0) },
            "status": status,
        });
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": { "replicas": object["spec"]["replicas"].as_i64().unwrap_or(1) },
        "status": { "replicas": object["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector(info, object) },
    })
}

/// A custom resource's `subresources.scale` (`specReplicasPath`, `statusReplicasPath`,
/// `labelSelectorPath`).
fn custom_scale(info: &ResourceInfo) -> Option<&'static Value> {
    info.custom.map(|v| &v["subresources"]["scale"]).filter(|s| s.is_object())
}

/// The value at a simple `.a.b` path.
fn at_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').filter(|p| !p.is_empty()).try_fold(object, |v, key| v.get(key))
}

/// Sets the value at a simple `.a.b` path, creating objects on the way.
fn set_path(object: &mut Value, path: &str, value: Value) {
    let keys: Vec<&str> = path.split('.').filter(|p| !p.is_empty()).collect();
    let mut current = object;
    for key in &keys {
        if !current.is_object() {
            *current = json!({});
        }
        current = &mut current[*key];
    }
    *current = value;
}

/// The label selector of the workload's pods, as a string.
fn selector(info: &ResourceInfo, object: &Value) -> String {
    // Replication controllers select with a plain map; the rest with a LabelSelector.
    selector_string(&object["spec"]["selector"], info.kind == "ReplicationController")
}

pub async fn get(api: &ApiServer, target: &Target) -> ApiResult<Response> {
    let place = Place::of(target);
    let (object, _) = api.objects.get(place).await?;
    Ok(json_response(StatusCode::OK, &scale_of(target.info, &object)))
}

/// PUT or PATCH of the Scale: sets the workload's `spec.replicas`.
pub async fn write(
    api: &ApiServer,
    req: &Request,
    target: &Target,
    dry_run: bool,
) -> ApiResult<Response> {
    let place = Place::of(target);
    for _ in 0..8 {
        let stored = api.objects.get_raw(place).await?;
        let (mut object, revision) = (decode(target.info, &stored)?, stored.mod_revision);
        let current = scale_of(target.info, &object);
        let wanted = if req.method == http::Method::PATCH {
            let content_type = req
                .header(http::header::CONTENT_TYPE)
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            let scale = patch::root_type("autoscaling", "v1", "Scale");
            patch::apply(
                patch::Kind::from_content_type(&content_type)?,
                target.info,
                scale,
                &current,
                &req.body,
            )?
        } else {
            req.json_body()?
        };
        let wanted = crate::registry::typed::decode_body(
            keelson_api::Typed::of::<keelson_api::k8s_openapi::api::autoscaling::v1::Scale>(),
            "autoscaling",
            "v1",
            "Scale",
            &wanted,
        )?;
        let precondition = update_precondition(&wanted)?;
        if precondition.is_some_and(|rv| rv != revision) {
            return Err(ApiError::modified(target.info.group, target.info.plural, place.name));
        }
        let replicas = match wanted["spec"]["replicas"].as_i64() {
            Some(n) if n >= 0 => n,
            Some(n) => {
                return Err(ApiError::invalid(
                    "autoscaling",
                    "Scale",
                    place.name,
                    vec![Cause::invalid(
                        "spec.replicas",
                        &json!(n),
                        "must be greater than or equal to 0",
                    )],
                ));
            }
            None => 0,
        };
        let spec_path = custom_scale(target.info)
            .and_then(|s| s["specReplicasPath"].as_str())
            .unwrap_or(".spec.replicas");
        if at_path(&object, spec_path).and_then(Value::as_i64) != Some(replicas) {
            let old = object.clone();
            set_path(&mut object, spec_path, json!(replicas));
            let manager = crate::apply::field_manager(req);
            crate::apply::track_update(target.info, "scale", &manager, Some(&old), &mut object);
            if let Some(version) = target.info.custom {
                // The new replicas must still fit the custom resource's schema.
                let causes = crate::structural::validation::validate(version, &object, None);
                if !causes.is_empty() {
                    return Err(ApiError::invalid(
                        target.info.group,
                        target.info.kind,
                        place.name,
                        causes,
                    ));
                }
            }
            let generation =
                metadata(&object).get("generation").and_then(Value::as_i64).unwrap_or(0) + 1;
            object["metadata"]["generation"] = json!(generation);
        } else if stores_as(target.info, &stored, &object)?
            && crate::storage::changes_nothing(api, place, &stored).await?
        {
            // The replicas asked for already: nothing is written (upstream's no-op update).
            return Ok(json_response(StatusCode::OK, &current));
        }
        match api.objects.replace(place, object, revision, dry_run).await {
            Ok(updated) => {
                return Ok(json_response(StatusCode::OK, &scale_of(target.info, &updated)));
            }
            Err(e) if e.is_conflict() && precondition.is_none() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::modified(target.info.group, target.info.plural, place.name))
}

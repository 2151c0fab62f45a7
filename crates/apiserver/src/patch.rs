//! PATCH bodies: JSON patch (RFC 6902) and JSON merge patch (RFC 7386) through the
//! `json-patch` crate, and strategic merge patch, which no crate provides, written here.
//!
//! Strategic merge patch merges lists of objects by a key instead of replacing them,
//! and understands the directives `$patch` (replace, delete, merge), `$retainKeys`,
//! `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`. The merge keys are
//! those of the built-in types' Go struct tags (`patchMergeKey`), by field and context;
//! a list with no key is replaced, as upstream does for lists without a patch strategy.

use keelson_api::ResourceInfo;
use serde_json::{Map, Value};

use crate::status::{ApiError, ApiResult, Cause};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Json,
    Merge,
    Strategic,
}

impl Kind {
    pub fn from_content_type(content_type: &str) -> ApiResult<Self> {
        match content_type {
            "application/json-patch+json" => Ok(Kind::Json),
            "application/merge-patch+json" => Ok(Kind::Merge),
            "application/strategic-merge-patch+json" => Ok(Kind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Err(ApiError {
                code: http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                reason: "UnsupportedMediaType",
                message: "server-side apply is not supported yet".into(),
                details: None,
            }),
            other => Err(ApiError {
                code: http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                reason: "UnsupportedMediaType",
                message: format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {other:?})"
                ),
                details: None,
            }),
        }
    }
}

/// Applies a patch body to `original`.
pub fn apply(kind: Kind, info: &ResourceInfo, original: &Value, body: &[u8]) -> ApiResult<Value> {
    let invalid_body =
        |e: serde_json::Error| ApiError::bad_request(format!("error decoding patch: {e}"));
    let mut document = original.clone();
    match kind {
        Kind::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(body).map_err(invalid_body)?;
            json_patch::patch(&mut document, &patch).map_err(|e| {
                ApiError::invalid(
                    info.group,
                    info.kind,
                    "",
                    vec![Cause {
                        reason: "FieldValueInvalid",
                        message: format!("the patch could not be applied: {e}"),
                        field: "patch".into(),
                    }],
                )
            })?;
        }
        Kind::Merge => {
            let patch: Value = serde_json::from_slice(body).map_err(invalid_body)?;
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            json_patch::merge(&mut document, &patch);
        }
        Kind::Strategic => {
            let patch: Value = serde_json::from_slice(body).map_err(invalid_body)?;
            let Value::Object(patch) = patch else {
                return Err(ApiError::bad_request("a strategic merge patch must be a JSON object"));
            };
            document = strategic_merge(&document, &patch, &mut Vec::new(), info)?;
        }
    }
    Ok(document)
}

/// The merge key of the list at `path` (field names from the root, list items as `[]`).
fn merge_key(path: &[String], info: &ResourceInfo) -> Option<&'static str> {
    let field = path.last()?.as_str();
    let parent = path.len().checked_sub(2).and_then(|i| path.get(i)).map(String::as_str);
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates"
        | "env" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "ports" if parent == Some("[]") => "containerPort",
        "ports" if info.kind == "Service" => "port",
        "hostAliases" | "podIPs" | "hostIPs" => "ip",
        "conditions" => "type",
        "addresses" if info.kind == "Node" => "type",
        "ownerReferences" => "uid",
        "topologySpreadConstraints" => "topologyKey",
        _ => return None,
    })
}

/// Lists of strings merged as sets rather than replaced.
fn merges_primitives(path: &[String]) -> bool {
    matches!(
        path.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
        ["metadata", "finalizers"]
    )
}

fn strategic_merge(
    original: &Value,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
    info: &ResourceInfo,
) -> ApiResult<Value> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = patch.clone();
            replaced.remove("$patch");
            return Ok(Value::Object(replaced));
        }
        Some("delete") => return Ok(Value::Null),
        Some("merge") | None => {}
        Some(other) => return Err(ApiError::bad_request(format!("unknown patch type: {other:?}"))),
    }
    let mut result = original.as_object().cloned().unwrap_or_default();
    for (key, value) in patch {
        if key == "$patch"
            || key == "$retainKeys"
            || key.starts_with("$setElementOrder/")
            || key.starts_with("$deleteFromPrimitiveList/")
        {
            continue;
        }
        path.push(key.clone());
        match value {
            Value::Null => {
                result.remove(key);
            }
            Value::Object(inner) => {
                let merged =
                    strategic_merge(result.get(key).unwrap_or(&Value::Null), inner, path, info)?;
                if merged.is_null() {
                    result.remove(key);
                } else {
                    result.insert(key.clone(), merged);
                }
            }
            Value::Array(items) => {
                let merged = merge_list(result.get(key), items, path, info)?;
                result.insert(key.clone(), merged);
            }
            scalar => {
                result.insert(key.clone(), scalar.clone());
            }
        }
        path.pop();
    }
    for (key, value) in patch {
        if let Some(list) = key.strip_prefix("$deleteFromPrimitiveList/")
            && let (Some(Value::Array(current)), Some(remove)) =
                (result.get_mut(list), value.as_array())
        {
            current.retain(|v| !remove.contains(v));
        }
        if let Some(list) = key.strip_prefix("$setElementOrder/")
            && let (Some(Value::Array(current)), Some(order)) =
                (result.get_mut(list), value.as_array())
        {
            let mut with_path = path.clone();
            with_path.push(list.to_owned());
            reorder(current, order, merge_key(&with_path, info));
        }
    }
    if let Some(retain) = patch.get("$retainKeys").and_then(Value::as_array) {
        result.retain(|k, _| retain.iter().any(|r| r == k));
    }
    Ok(Value::Object(result))
}

fn merge_list(
    original: Option<&Value>,
    items: &[Value],
    path: &mut Vec<String>,
    info: &ResourceInfo,
) -> ApiResult<Value> {
    let replace = items.iter().any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
    let items: Vec<&Value> = items
        .iter()
        .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("replace"))
        .collect();
    let current = original.and_then(Value::as_array).cloned().unwrap_or_default();
    if replace {
        return Ok(Value::Array(items.into_iter().cloned().collect()));
    }
    if merges_primitives(path) {
        let mut merged = current;
        for item in items {
            if !merged.contains(item) {
                merged.push(item.clone());
            }
        }
        return Ok(Value::Array(merged));
    }
    let Some(key) = merge_key(path, info) else {
        return Ok(Value::Array(items.into_iter().cloned().collect()));
    };
    let mut merged = current;
    path.push("[]".into());
    for item in items {
        let Some(item_map) = item.as_object() else {
            return Err(ApiError::bad_request(format!(
                "list {} holds objects merged by {key:?}; got {item}",
                path[..path.len() - 1].join(".")
            )));
        };
        let id = item_map.get(key);
        let position = merged.iter().position(|m| m.get(key) == id && id.is_some());
        match (item_map.get("$patch").and_then(Value::as_str), position) {
            (Some("delete"), Some(i)) => {
                merged.remove(i);
            }
            (Some("delete"), None) => {}
            (_, Some(i)) => {
                let combined = strategic_merge(&merged[i], item_map, path, info)?;
                merged[i] = combined;
            }
            (_, None) => {
                let mut fresh = item_map.clone();
                fresh.remove("$patch");
                merged.push(Value::Object(fresh));
            }
        }
    }
    path.pop();
    Ok(Value::Array(merged))
}

/// Orders `list` as `order` says; elements it does not name keep their order, after.
fn reorder(list: &mut [Value], order: &[Value], key: Option<&str>) {
    let rank = |v: &Value| {
        order
            .iter()
            .position(|o| match key {
                Some(k) => o.get(k).is_some() && o.get(k) == v.get(k),
                None => o == v,
            })
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(rank);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(kind: &str) -> &'static ResourceInfo {
        let registry = keelson_api::Registry::builtin();
        registry.resources().iter().find(|r| r.kind == kind).expect("registered")
    }

    fn smp(kind: &str, original: Value, patch: Value) -> Value {
        apply(Kind::Strategic, info(kind), &original, patch.to_string().as_bytes())
            .expect("patch applies")
    }

    #[test]
    fn containers_merge_by_name_and_env_by_name() {
        let original = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "side", "image": "s:1"}
        ]}}}});
        let patched = smp(
            "Deployment",
            original,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "a:2", "env": [{"name": "B", "value": "2"}]},
                {"name": "side", "$patch": "delete"}
            ]}}}}),
        );
        assert_eq!(
            patched,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "a:2", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
            ]}}}})
        );
    }

    #[test]
    fn directives_and_keyless_lists() {
        let original = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1", "y": "2"}}, "spec": {"ports": [{"port": 80, "name": "http"}], "externalIPs": ["1.1.1.1"]}});
        let patched = smp(
            "Service",
            original,
            json!({
                "metadata": {"finalizers": ["c"], "labels": {"x": null}, "$deleteFromPrimitiveList/finalizers": ["a"]},
                "spec": {"ports": [{"port": 443, "name": "https"}], "externalIPs": ["2.2.2.2"]}
            }),
        );
        assert_eq!(patched["metadata"], json!({"finalizers": ["b", "c"], "labels": {"y": "2"}}));
        assert_eq!(
            patched["spec"]["ports"],
            json!([{"port": 80, "name": "http"}, {"port": 443, "name": "https"}])
        );
        assert_eq!(
            patched["spec"]["externalIPs"],
            json!(["2.2.2.2"]),
            "a list without a merge key is replaced"
        );
        let replaced = smp(
            "Service",
            patched,
            json!({"spec": {"ports": [{"$patch": "replace"}, {"port": 8080}]}}),
        );
        assert_eq!(replaced["spec"]["ports"], json!([{"port": 8080}]));
    }

    #[test]
    fn retain_keys_and_element_order() {
        let original = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}, "template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}});
        let patched = smp(
            "Deployment",
            original,
            json!({"spec": {
                "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
                "template": {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}
            }}),
        );
        assert_eq!(patched["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(
            patched["spec"]["template"]["spec"]["containers"],
            json!([{"name": "b"}, {"name": "a"}])
        );
    }
}

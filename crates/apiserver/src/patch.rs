//! PATCH bodies: JSON patch (RFC 6902) and JSON merge patch (RFC 7386) through the
//! `json-patch` crate, and strategic merge patch, which no crate provides, written here.
//!
//! Strategic merge patch merges lists of objects by a key instead of replacing them,
//! and understands the directives `$patch` (replace, delete, merge), `$retainKeys`,
//! `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`. Which lists merge,
//! and by which key, is upstream's own `patchStrategy`/`patchMergeKey` data for every
//! built-in type (`keelson_api::patch_meta`), walked from the object's kind; a list
//! without a strategy is replaced, a map merged, as upstream does.

use keelson_api::ResourceInfo;
use keelson_api::patch_meta::Shape;
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
            other => Err(ApiError {
                code: http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                reason: crate::status::Reason::UnsupportedMediaType,
                message: format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
                ),
                details: None,
            }),
        }
    }
}

/// Applies a patch body to `original`, an object of type `root` (see [`root_type`]);
/// `info` names the resource in errors.
pub fn apply(
    kind: Kind,
    info: &ResourceInfo,
    root: Option<Meta>,
    original: &Value,
    body: &[u8],
) -> ApiResult<Value> {
    let invalid_body =
        |e: serde_json::Error| ApiError::bad_request(format!("error decoding patch: {e}"));
    let mut document = original.clone();
    match kind {
        Kind::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(body).map_err(invalid_body)?;
            if patch.0.len() > MAX_JSON_PATCH_OPERATIONS {
                return Err(ApiError::too_large_message(format!(
                    "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
                    patch.0.len()
                )));
            }
            // Only `copy` makes a document grow beyond what the body carries: count what
            // the copies add, so that doubling a subtree again and again stops early.
            let mut copied = 0usize;
            for operation in &patch.0 {
                if let json_patch::PatchOperation::Copy(copy) = operation
                    && let Ok(source) = copy.from.resolve(&document)
                {
                    copied = copied.saturating_add(serialized_len(source));
                    if copied > crate::MAX_REQUEST_BYTES {
                        return Err(too_large_after_patch());
                    }
                }
                // One operation at a time, unchecked (no undo log): on an error the
                // whole document is dropped anyway.
                json_patch::patch_unsafe(&mut document, std::slice::from_ref(operation)).map_err(
                    |e| {
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
                    },
                )?;
            }
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
            document = strategic_merge(&document, &patch, root)?;
            if info.custom.is_none()
                && let Some(error) = crate::registry::typed::unrestorable_patch(
                    info,
                    &document,
                    &Value::Object(patch),
                )
            {
                return Err(error);
            }
        }
    }
    // A patched object may not outgrow what a request could have sent whole.
    if serialized_len(&document) > crate::MAX_REQUEST_BYTES {
        return Err(too_large_after_patch());
    }
    Ok(document)
}

/// Upstream's `maxJSONPatchOperations`.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

fn too_large_after_patch() -> ApiError {
    ApiError::too_large_message(format!(
        "the object after applying the patch is larger than the request body limit of {} bytes",
        crate::MAX_REQUEST_BYTES
    ))
}

/// The length of `value` as compact JSON.
fn serialized_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

type Meta = &'static keelson_api::patch_meta::TypeMeta;

/// The type a resource's objects have, where patches start their walk.
pub fn root_type(group: &str, version: &str, kind: &str) -> Option<Meta> {
    keelson_api::patch_meta::kind_type(group, version, kind)
}

/// Merges `patch` into `original`, an object of type `ty` (`None`: unknown, so lists are
/// replaced and maps merged, as for a field with no patch strategy).
fn strategic_merge(
    original: &Value,
    patch: &Map<String, Value>,
    ty: Option<Meta>,
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
        if key.starts_with('$') {
            continue;
        }
        let field = ty.and_then(|t| t.field(key));
        let child = field.and_then(|f| f.value_type());
        match value {
            Value::Null => {
                result.remove(key);
            }
            Value::Object(inner) => {
                let current = result.get(key).unwrap_or(&Value::Null);
                let merged = match field.map(|f| f.shape) {
                    // A map of objects: each entry merges as its type.
                    Some(Shape::Map) if child.is_some() => merge_map(current, inner, child)?,
                    _ => strategic_merge(current, inner, child)?,
                };
                if merged.is_null() {
                    result.remove(key);
                } else {
                    result.insert(key.clone(), merged);
                }
            }
            Value::Array(items) => {
                let merged = merge_list(result.get(key), items, field)?;
                result.insert(key.clone(), merged);
            }
            scalar => {
                result.insert(key.clone(), scalar.clone());
            }
        }
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
            let merge_key = ty.and_then(|t| t.field(list)).and_then(|f| f.merge_key);
            reorder(current, order, merge_key);
        }
    }
    if let Some(retain) = patch.get("$retainKeys").and_then(Value::as_array) {
        result.retain(|k, _| retain.iter().any(|r| r == k));
    }
    Ok(Value::Object(result))
}

/// A map whose values are objects of type `ty`: entries merge one by one.
fn merge_map(original: &Value, patch: &Map<String, Value>, ty: Option<Meta>) -> ApiResult<Value> {
    let mut result = original.as_object().cloned().unwrap_or_default();
    for (key, value) in patch {
        match value {
            Value::Null => {
                result.remove(key);
            }
            Value::Object(inner) => {
                let merged = strategic_merge(result.get(key).unwrap_or(&Value::Null), inner, ty)?;
                result.insert(key.clone(), merged);
            }
            other => {
                result.insert(key.clone(), other.clone());
            }
        }
    }
    Ok(Value::Object(result))
}

fn merge_list(
    original: Option<&Value>,
    items: &[Value],
    field: Option<&'static keelson_api::patch_meta::FieldMeta>,
) -> ApiResult<Value> {
    let replace = items.iter().any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
    let items: Vec<&Value> = items
        .iter()
        .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("replace"))
        .collect();
    let current = original.and_then(Value::as_array).cloned().unwrap_or_default();
    let merges = field.is_some_and(|f| f.strategy.merges());
    if replace || !merges {
        return Ok(Value::Array(items.into_iter().cloned().collect()));
    }
    let Some(key) = field.and_then(|f| f.merge_key) else {
        // A merged list of primitives is a set.
        let mut merged = current;
        for item in items {
            if !merged.contains(item) {
                merged.push(item.clone());
            }
        }
        return Ok(Value::Array(merged));
    };
    let item_type = field.and_then(|f| f.value_type());
    let mut merged = current;
    for item in items {
        let Some(item_map) = item.as_object() else {
            return Err(ApiError::bad_request(format!(
                "list items merged by {key:?} must be objects; got {item}"
            )));
        };
        let id = item_map.get(key);
        let position = merged.iter().position(|m| id.is_some() && m.get(key) == id);
        match (item_map.get("$patch").and_then(Value::as_str), position) {
            (Some("delete"), Some(i)) => {
                merged.remove(i);
            }
            (Some("delete"), None) => {}
            (_, Some(i)) => {
                let combined = strategic_merge(&merged[i], item_map, item_type)?;
                merged[i] = combined;
            }
            (_, None) => {
                let mut fresh = item_map.clone();
                fresh.remove("$patch");
                merged.push(Value::Object(fresh));
            }
        }
    }
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
        registry.resources().find(|r| r.kind == kind).expect("registered")
    }

    fn smp(kind: &str, original: Value, patch: Value) -> Value {
        let info = info(kind);
        let root = root_type(info.group, info.version, info.kind);
        apply(Kind::Strategic, info, root, &original, patch.to_string().as_bytes())
            .expect("patch applies")
    }

    fn patched(kind: Kind, original: &Value, body: &str) -> ApiResult<Value> {
        let info = info("ConfigMap");
        apply(kind, info, root_type("", "v1", "ConfigMap"), original, body.as_bytes())
    }

    #[test]
    fn json_patches_are_capped_at_ten_thousand_operations() {
        let original = json!({"data": {"a": "1"}});
        let op = r#"{"op":"test","path":"/data/a","value":"1"}"#;
        let ops = |n: usize| format!("[{}]", vec![op; n].join(","));
        assert!(patched(Kind::Json, &original, &ops(MAX_JSON_PATCH_OPERATIONS)).is_ok());
        let refused = patched(Kind::Json, &original, &ops(MAX_JSON_PATCH_OPERATIONS + 1))
            .expect_err("too many operations");
        assert_eq!(refused.code, http::StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(refused.reason, crate::status::Reason::RequestEntityTooLarge);
        assert_eq!(
            refused.message,
            "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
        );
    }

    #[test]
    fn patched_objects_may_not_outgrow_the_request_body_limit() {
        // Copies of a 1 KiB value: 4,000 of them would be 4 MB from a 200 kB body.
        let original = json!({"data": {"a": "x".repeat(1024)}});
        let copies: Vec<String> = (0..4000)
            .map(|i| format!(r#"{{"op":"copy","from":"/data/a","path":"/data/k{i}"}}"#))
            .collect();
        let refused = patched(Kind::Json, &original, &format!("[{}]", copies.join(",")))
            .expect_err("copies beyond the limit");
        assert_eq!(refused.code, http::StatusCode::PAYLOAD_TOO_LARGE);
        // Merge and strategic patches: the result is measured.
        let big = json!({"data": {"a": "x".repeat(2 << 20)}});
        let more = json!({"data": {"b": "y".repeat(2 << 20)}}).to_string();
        for kind in [Kind::Merge, Kind::Strategic] {
            let refused = patched(kind, &big, &more).expect_err("result beyond the limit");
            assert_eq!(refused.code, http::StatusCode::PAYLOAD_TOO_LARGE, "{kind:?}");
        }
        assert!(patched(Kind::Merge, &big, r#"{"data":{"b":"y"}}"#).is_ok());
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

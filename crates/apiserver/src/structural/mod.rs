//! What a custom resource's structural `openAPIV3Schema` does to its objects before
//! they are validated, as upstream's `apiextensions-apiserver/pkg/apiserver/schema/
//! {pruning,defaulting}`: unknown fields are pruned (reported by the caller as unknown
//! fields) and `default`s applied, on writes and (defaults only) on reads.
//!
//! `apiVersion`, `kind` and `metadata` at the root are the generic store's; this module
//! never prunes them. Must never panic on any schema or object.

pub mod validation;

use serde_json::{Value, json};

/// The fields of `metav1.ObjectMeta`, all an embedded resource's metadata may hold.
const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Prunes `object` to what `version`'s schema knows and applies its defaults; the object
/// as stored (unknown fields are then reported by comparing it with the input).
pub fn prune_and_default(version: &Value, mut object: Value) -> Value {
    let schema = &version["schema"];
    if !schema.is_object() || version["preserveUnknownFields"] == json!(true) {
        return object;
    }
    if let Value::Object(map) = &mut object {
        for (key, value) in map.iter_mut() {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(child) = property(schema, key) {
                prune(value, child);
            }
        }
        if !preserves(schema) {
            map.retain(|k, _| {
                matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                    || property(schema, k).is_some()
            });
        }
    }
    default(&mut object, schema, true);
    object
}

/// Applies the schema's defaults to an object read from storage (upstream defaults on
/// read too, so defaults added later show on old objects); never prunes.
pub fn default_on_read(version: &Value, object: &mut Value) {
    if version["hasDefaults"] == json!(true) && version["schema"].is_object() {
        default(object, &version["schema"], true);
    }
}

/// The schema of property `key` of an object schema: its `properties` entry or its
/// `additionalProperties`.
pub(super) fn property<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    schema["properties"].get(key).or_else(|| {
        let additional = &schema["additionalProperties"];
        additional.is_object().then_some(additional)
    })
}

fn preserves(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == json!(true)
        || schema["additionalProperties"] == json!(true)
}

/// Whether pruning `value` by `schema` would take nothing away (a CRD's `default`s must
/// be pruned already).
pub fn is_pruned(value: &Value, schema: &Value) -> bool {
    let mut pruned = value.clone();
    prune(&mut pruned, schema);
    pruned == *value
}

fn prune(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            let embedded = schema["x-kubernetes-embedded-resource"] == json!(true);
            let has_structure =
                schema["properties"].is_object() || schema["additionalProperties"].is_object();
            // An embedded object's metadata is an ObjectMeta: what it does not have goes.
            if embedded && let Some(Value::Object(meta)) = map.get_mut("metadata") {
                meta.retain(|k, _| OBJECT_META.contains(&k.as_str()));
            }
            if !has_structure && preserves(schema) {
                return;
            }
            for (key, child) in map.iter_mut() {
                if let Some(s) = property(schema, key) {
                    prune(child, s);
                }
            }
            if !preserves(schema) {
                map.retain(|k, _| {
                    property(schema, k).is_some()
                        || (embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
                });
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for item in items {
                prune(item, &schema["items"]);
            }
        }
        _ => {}
    }
}

/// Applies `default`s of absent properties (and of nulls where null is not allowed);
/// drops other nulls where null is not allowed.
fn default(value: &mut Value, schema: &Value, root: bool) {
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema["properties"].as_object() {
                for (key, s) in properties {
                    if root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                        continue;
                    }
                    let nullable = s["nullable"] == json!(true);
                    match map.get(key) {
                        None if s.get("default").is_some() => {
                            map.insert(key.clone(), s["default"].clone());
                        }
                        Some(Value::Null) if !nullable => {
                            match s.get("default") {
                                Some(d) => map.insert(key.clone(), d.clone()),
                                None => map.remove(key),
                            };
                        }
                        _ => {}
                    }
                }
            }
            for (key, child) in map.iter_mut() {
                if root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(s) = property(schema, key) {
                    default(child, s, false);
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for item in items {
                default(item, &schema["items"], false);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(schema: Value) -> Value {
        json!({ "schema": schema })
    }

    #[test]
    fn unknown_fields_are_pruned_and_defaults_applied() {
        let v = version(json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {
                "replicas": {"type": "integer", "default": 1},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "items": {"type": "array", "items": {"type": "object",
                    "properties": {"name": {"type": "string"}, "mode": {"type": "string", "default": "rw"}}}}}}}}));
        let object = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"},
            "spec": {"bogus": 1, "free": {"any": {"thing": 1}}, "items": [{"name": "n", "extra": true}]},
            "top": 1});
        assert_eq!(
            prune_and_default(&v, object),
            json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"},
                "spec": {"replicas": 1, "free": {"any": {"thing": 1}}, "items": [{"name": "n", "mode": "rw"}]}})
        );
    }
}

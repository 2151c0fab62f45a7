//! OpenAPI v3 → Swagger 2.0: the conversion `/openapi/v2` is built with, document by
//! document, into one [`Swagger`].
//!
//! Upstream builds both versions from the same Go definitions (kube-openapi's
//! `pkg/builder` and `builder3`); here v2 is derived from the v3 documents:
//! `components.schemas` become `definitions` and their `$ref`s follow, request bodies
//! become `in: body` parameters with `consumes`, responses' `content` becomes `schema`
//! with `produces`, and parameters carry their schema's `type` themselves. Schemas lose
//! what v2 has no word for (`nullable`, `anyOf`, `oneOf`, `not`, ...) the way
//! apiextensions' `ToStructuralOpenAPIV2` drops them for custom resources, so that
//! gnostic's parser and kubectl's model builder (`k8s.io/kube-openapi/pkg/util/proto`)
//! accept every definition.

use serde_json::{Map, Value, json};

const V3_REF: &str = "#/components/schemas/";
const V2_REF: &str = "#/definitions/";

/// The keys of a Swagger 2.0 schema object (besides `x-` extensions); gnostic refuses
/// a document with any other.
pub(super) const SCHEMA_KEYS: &[&str] = &[
    "$ref",
    "additionalProperties",
    "allOf",
    "default",
    "description",
    "discriminator",
    "enum",
    "example",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "externalDocs",
    "format",
    "items",
    "maxItems",
    "maxLength",
    "maxProperties",
    "maximum",
    "minItems",
    "minLength",
    "minProperties",
    "minimum",
    "multipleOf",
    "pattern",
    "properties",
    "readOnly",
    "required",
    "title",
    "type",
    "uniqueItems",
];

/// The keys a v3 parameter's schema lends to a v2 non-body parameter.
const PARAMETER_SCHEMA_KEYS: &[&str] = &[
    "type",
    "format",
    "items",
    "collectionFormat",
    "default",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "enum",
    "multipleOf",
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch"];

/// A Swagger 2.0 document being assembled from v3 documents.
#[derive(Clone, Default)]
pub struct Swagger {
    paths: Map<String, Value>,
    definitions: Map<String, Value>,
}

impl Swagger {
    /// Adds the paths and schemas of one v3 document. A definition several documents
    /// hold (`ObjectMeta`, ...) is kept once, with the union of their kinds.
    pub fn add(&mut self, v3: &Value) {
        for (path, item) in v3["paths"].as_object().into_iter().flatten() {
            self.paths.insert(path.clone(), path_item(item));
        }
        for (name, schema) in v3["components"]["schemas"].as_object().into_iter().flatten() {
            let converted = self::schema(schema);
            match self.definitions.get_mut(name) {
                Some(existing) => merge_kinds(existing, &converted),
                None => {
                    self.definitions.insert(name.clone(), converted);
                }
            }
        }
    }

    /// The document, with upstream's title and bearer token security scheme.
    pub fn document(&self, version: &str) -> Value {
        json!({
            "swagger": "2.0",
            "info": { "title": "Kubernetes", "version": version },
            "paths": self.paths,
            "definitions": self.definitions,
            "securityDefinitions": {
                "BearerToken": {
                    "description": "Bearer Token authentication",
                    "type": "apiKey",
                    "name": "authorization",
                    "in": "header",
                },
            },
            "security": [{ "BearerToken": [] }],
        })
    }
}

/// Adds `from`'s `x-kubernetes-group-version-kind` entries `into` lacks.
fn merge_kinds(into: &mut Value, from: &Value) {
    const GVK: &str = "x-kubernetes-group-version-kind";
    let Some(kinds) = from[GVK].as_array() else { return };
    let Some(object) = into.as_object_mut() else { return };
    let entry = object.entry(GVK).or_insert_with(|| json!([]));
    if let Some(existing) = entry.as_array_mut() {
        for kind in kinds {
            if !existing.contains(kind) {
                existing.push(kind.clone());
            }
        }
    }
}

fn path_item(item: &Value) -> Value {
    let mut out = Map::new();
    for (key, value) in item.as_object().into_iter().flatten() {
        if METHODS.contains(&key.as_str()) {
            out.insert(key.clone(), operation(value));
        } else if key == "parameters" {
            out.insert(key.clone(), parameters(value));
        } else if key.starts_with("x-") {
            out.insert(key.clone(), value.clone());
        }
    }
    Value::Object(out)
}

fn parameters(list: &Value) -> Value {
    list.as_array().into_iter().flatten().map(parameter).collect()
}

/// A non-body parameter: its schema's `type`, `uniqueItems`, ... on itself.
fn parameter(p: &Value) -> Value {
    let mut out = Map::new();
    for key in ["name", "in", "description", "required", "allowEmptyValue"] {
        if let Some(value) = p.get(key) {
            out.insert(key.to_owned(), value.clone());
        }
    }
    for key in PARAMETER_SCHEMA_KEYS {
        if let Some(value) = p["schema"].get(*key) {
            out.insert((*key).to_owned(), value.clone());
        }
    }
    for (key, value) in p.as_object().into_iter().flatten().filter(|(k, _)| k.starts_with("x-")) {
        out.insert(key.clone(), value.clone());
    }
    Value::Object(out)
}

fn operation(op: &Value) -> Value {
    let mut out = Map::new();
    for key in ["tags", "summary", "description", "operationId", "deprecated"] {
        if let Some(value) = op.get(key) {
            out.insert(key.to_owned(), value.clone());
        }
    }
    let mut parameters: Vec<Value> = Vec::new();
    if let Some(content) = op["requestBody"]["content"].as_object() {
        out.insert("consumes".into(), content.keys().cloned().collect());
        if let Some(schema) = content.values().find_map(|media| media.get("schema")) {
            parameters.push(json!({
                "name": "body",
                "in": "body",
                "required": op["requestBody"]["required"].as_bool().unwrap_or(false),
                "schema": self::schema(schema),
            }));
        }
    }
    parameters.extend(op["parameters"].as_array().into_iter().flatten().map(parameter));
    let mut produces: Vec<Value> = Vec::new();
    let mut responses = Map::new();
    for (code, response) in op["responses"].as_object().into_iter().flatten() {
        let mut converted = Map::new();
        converted.insert("description".into(), response["description"].clone());
        if let Some(content) = response["content"].as_object() {
            for media in content.keys() {
                if !produces.iter().any(|p| p == media) {
                    produces.push(json!(media));
                }
            }
            if let Some(schema) = content.values().find_map(|media| media.get("schema")) {
                converted.insert("schema".into(), self::schema(schema));
            }
        }
        responses.insert(code.clone(), Value::Object(converted));
    }
    if !produces.is_empty() {
        out.insert("produces".into(), Value::Array(produces));
    }
    out.insert("schemes".into(), json!(["https"]));
    if !parameters.is_empty() {
        out.insert("parameters".into(), Value::Array(parameters));
    }
    out.insert("responses".into(), Value::Object(responses));
    for (key, value) in op.as_object().into_iter().flatten().filter(|(k, _)| k.starts_with("x-")) {
        out.insert(key.clone(), value.clone());
    }
    Value::Object(out)
}

/// One schema and everything under it.
fn schema(s: &Value) -> Value {
    let Some(object) = s.as_object() else { return json!({}) };
    let mut object = object.clone();
    // `allOf` of one schema (how v3 puts a description beside a `$ref`) is that schema:
    // v2 allows siblings of `$ref`, and kubectl reads a lone `allOf` as "any value".
    if let Some(Value::Array(all_of)) = object.get("allOf")
        && let [Value::Object(only)] = all_of.as_slice()
    {
        let only = only.clone();
        object.remove("allOf");
        for (key, value) in only {
            object.entry(key).or_insert(value);
        }
    }
    let nullable: Vec<String> = object
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, p)| p["nullable"] == true)
        .map(|(name, _)| name.clone())
        .collect();
    // kubectl cannot tell a null from a typed value, nor cope with fields or items
    // under a value that keeps unknown fields.
    if object.get("nullable") == Some(&Value::Bool(true)) {
        object.remove("type");
        object.remove("items");
        object.remove("properties");
    }
    if object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        object.remove("items");
        object.remove("properties");
    }
    if let Some(Value::Array(types)) = object.get("type") {
        let first = types.iter().find(|t| *t != "null").cloned();
        match first {
            Some(t) => object.insert("type".into(), t),
            None => object.remove("type"),
        };
    }
    if object.get("type") == Some(&json!("array")) && !object.contains_key("items") {
        object.remove("type");
    }
    let mut out = Map::new();
    for (key, value) in object {
        let converted = match key.as_str() {
            "$ref" => match value.as_str() {
                Some(r) => json!(r.replacen(V3_REF, V2_REF, 1)),
                None => continue,
            },
            "properties" => Value::Object(
                value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, p)| (name.clone(), schema(p)))
                    .collect(),
            ),
            "items" => match value {
                Value::Array(items) => items.iter().map(schema).collect(),
                items => schema(&items),
            },
            "additionalProperties" => match value {
                Value::Bool(b) => Value::Bool(b),
                Value::Object(mut additional) => {
                    additional.remove("nullable");
                    schema(&Value::Object(additional))
                }
                _ => continue,
            },
            "allOf" => value.as_array().into_iter().flatten().map(schema).collect(),
            "required" if !nullable.is_empty() => value
                .as_array()
                .into_iter()
                .flatten()
                .filter(|name| !nullable.iter().any(|n| *name == n.as_str()))
                .cloned()
                .collect(),
            k if SCHEMA_KEYS.contains(&k) || k.starts_with("x-") => value,
            _ => continue,
        };
        out.insert(key, converted);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v3_operation_becomes_a_v2_one() {
        let op = json!({
            "operationId": "createPod",
            "parameters": [{ "name": "dryRun", "in": "query", "description": "d", "schema": { "type": "string", "uniqueItems": true } }],
            "requestBody": { "content": { "*/*": { "schema": { "$ref": "#/components/schemas/io.k8s.api.core.v1.Pod" } } }, "required": true },
            "responses": {
                "200": { "description": "OK", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/io.k8s.api.core.v1.Pod" } } } },
                "401": { "description": "Unauthorized" },
            },
            "x-kubernetes-action": "post",
        });
        assert_eq!(
            operation(&op),
            json!({
                "operationId": "createPod",
                "consumes": ["*/*"],
                "produces": ["application/json"],
                "schemes": ["https"],
                "parameters": [
                    { "name": "body", "in": "body", "required": true, "schema": { "$ref": "#/definitions/io.k8s.api.core.v1.Pod" } },
                    { "name": "dryRun", "in": "query", "description": "d", "type": "string", "uniqueItems": true },
                ],
                "responses": {
                    "200": { "description": "OK", "schema": { "$ref": "#/definitions/io.k8s.api.core.v1.Pod" } },
                    "401": { "description": "Unauthorized" },
                },
                "x-kubernetes-action": "post",
            })
        );
    }

    #[test]
    fn schemas_lose_what_v2_has_no_word_for() {
        let v3 = json!({
            "type": "object",
            "required": ["a", "b"],
            "properties": {
                "a": { "type": "string", "nullable": true },
                "b": { "allOf": [{ "$ref": "#/components/schemas/M" }], "description": "meta", "default": {} },
                "c": { "x-kubernetes-int-or-string": true, "anyOf": [{ "type": "integer" }, { "type": "string" }] },
                "d": { "type": "array" },
                "e": { "type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": { "f": {} } },
                "g": { "type": "object", "additionalProperties": { "type": "string", "nullable": true } },
            },
        });
        assert_eq!(
            schema(&v3),
            json!({
                "type": "object",
                "required": ["b"],
                "properties": {
                    "a": {},
                    "b": { "$ref": "#/definitions/M", "description": "meta", "default": {} },
                    "c": { "x-kubernetes-int-or-string": true },
                    "d": {},
                    "e": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
                    "g": { "type": "object", "additionalProperties": { "type": "string" } },
                },
            })
        );
    }
}

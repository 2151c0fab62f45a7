//! OpenAPI v3: `/openapi/v3` (an index of group-versions) and one document per
//! group-version with its paths, operations and the schemas of its types; [`v2`]
//! derives `/openapi/v2`, the whole API in one Swagger 2.0 document, from them.
//!
//! Schemas come from the `k8s-openapi` types (schemars), with upstream's definition
//! names and the `x-kubernetes-group-version-kind` extension, so `kubectl explain`
//! reads them. Operations carry `x-kubernetes-action`, the GVK, and the query
//! parameters this server understands, so kubectl sees that it validates fields itself
//! (`fieldValidation`). Documents are built once and cached with a content hash.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use http::StatusCode;
use keelson_api::schemars::SchemaGenerator;
use keelson_api::schemars::generate::SchemaSettings;
use keelson_api::{Registry, ResourceInfo};
use serde_json::{Map, Value, json};

use crate::response::{Response, full};
use crate::status::{ApiError, ApiResult};

mod swagger;
pub mod v2;

/// A built document: its JSON and content hash.
struct Document {
    hash: String,
    body: Vec<u8>,
}

fn documents() -> &'static BTreeMap<String, Document> {
    static DOCUMENTS: OnceLock<BTreeMap<String, Document>> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        let mut by_gv: BTreeMap<String, Vec<&'static ResourceInfo>> = BTreeMap::new();
        for r in Registry::builtin().resources() {
            by_gv.entry(path_prefix(r)).or_default().push(r);
        }
        by_gv
            .into_iter()
            .map(|(prefix, resources)| {
                let body =
                    serde_json::to_vec(&group_version_document(&resources)).unwrap_or_default();
                (prefix, document(body))
            })
            .collect()
    })
}

/// `api/v1` or `apis/apps/v1`.
fn path_prefix(r: &ResourceInfo) -> String {
    if r.group.is_empty() {
        format!("api/{}", r.version)
    } else {
        format!("apis/{}/{}", r.group, r.version)
    }
}

/// `GET /openapi/v3`: the built-in group-versions and those of custom resources.
pub fn index(registry: &Registry) -> Response {
    let custom = custom_documents(registry);
    let paths: Map<String, Value> = documents()
        .iter()
        .chain(custom.iter())
        .map(|(prefix, doc)| {
            (
                prefix.clone(),
                json!({ "serverRelativeURL": format!("/openapi/v3/{prefix}?hash={}", doc.hash) }),
            )
        })
        .collect();
    json(serde_json::to_vec(&json!({ "paths": paths })).unwrap_or_default())
}

/// `GET /openapi/v3/{api/v1 | apis/<group>/<version>}`.
pub fn group_version(registry: &Registry, prefix: &str) -> ApiResult<Response> {
    if let Some(doc) = documents().get(prefix) {
        return Ok(json(doc.body.clone()));
    }
    let mut custom = custom_documents(registry);
    let doc = custom.remove(prefix).ok_or_else(ApiError::path_not_found)?;
    Ok(json(doc.body))
}

fn document(body: Vec<u8>) -> Document {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    Document { hash: format!("{:016X}", hasher.finish()), body }
}

/// The documents of the custom resources' group-versions.
fn custom_documents(registry: &Registry) -> BTreeMap<String, Document> {
    custom_values(registry)
        .into_iter()
        .map(|(prefix, value)| (prefix, document(serde_json::to_vec(&value).unwrap_or_default())))
        .collect()
}

/// The documents of the custom resources' group-versions as JSON values, built from
/// their schemas (upstream's `apiextensions-apiserver/pkg/controller/openapi/builder`).
fn custom_values(registry: &Registry) -> BTreeMap<String, Value> {
    let mut by_gv: BTreeMap<String, Vec<&'static ResourceInfo>> = BTreeMap::new();
    for r in registry.resources().filter(|r| r.is_custom()) {
        by_gv.entry(path_prefix(r)).or_default().push(r);
    }
    by_gv.into_iter().map(|(prefix, resources)| (prefix, custom_document(&resources))).collect()
}

/// Upstream's definition name of a custom kind: the group reversed, the version, the
/// kind (`com.example.v1.Widget`).
fn definition_name(r: &ResourceInfo, kind: &str) -> String {
    let mut group: Vec<&str> = r.group.split('.').collect();
    group.reverse();
    format!("{}.{}.{kind}", group.join("."), r.version)
}

fn custom_document(resources: &[&ResourceInfo]) -> Value {
    use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        ListMeta, ObjectMeta, Status,
    };
    let mut generator = SchemaGenerator::new(SchemaSettings::openapi3());
    let status = serde_json::to_value(generator.subschema_for::<Status>()).unwrap_or(Value::Null);
    let object_meta =
        serde_json::to_value(generator.subschema_for::<ObjectMeta>()).unwrap_or(Value::Null);
    let list_meta =
        serde_json::to_value(generator.subschema_for::<ListMeta>()).unwrap_or(Value::Null);
    let mut paths = Map::new();
    let mut custom = Map::new();
    for r in resources {
        let version = r.custom.cloned().unwrap_or(Value::Null);
        let name = definition_name(r, r.kind);
        let mut schema = match &version["schema"] {
            Value::Object(map) => Value::Object(map.clone()),
            _ => json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true }),
        };
        let string = |description: &str| json!({ "type": "string", "description": description });
        schema["type"] = json!("object");
        schema["properties"]["apiVersion"] = string(
            "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
        );
        schema["properties"]["kind"] = string(
            "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
        );
        schema["properties"]["metadata"] = json!({
            "allOf": [object_meta],
            "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
        });
        schema["x-kubernetes-group-version-kind"] =
            json!([{ "group": r.group, "kind": r.kind, "version": r.version }]);
        custom.insert(name.clone(), schema);
        let list_name = definition_name(r, &r.list_kind());
        let item = json!({ "$ref": format!("#/components/schemas/{name}") });
        custom.insert(list_name.clone(), list_definition(r, &item, &list_meta));
        let list = json!({ "$ref": format!("#/components/schemas/{list_name}") });
        add_paths(&mut paths, r, &Schemas { item: &item, list: &list, status: &status });
    }
    let mut schemas = generator.take_definitions(true);
    schemas.extend(custom);
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes CRD Swagger", "version": "v0.1.0" },
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

fn json(body: Vec<u8>) -> Response {
    let mut response = http::Response::new(full(body));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

fn group_version_document(resources: &[&ResourceInfo]) -> Value {
    use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, Status};
    let mut generator = SchemaGenerator::new(SchemaSettings::openapi3());
    let list_meta =
        serde_json::to_value(generator.subschema_for::<ListMeta>()).unwrap_or(Value::Null);
    let status = serde_json::to_value(generator.subschema_for::<Status>()).unwrap_or(Value::Null);
    let mut paths = Map::new();
    let mut kinds: Vec<(String, &ResourceInfo)> = Vec::new();
    let mut lists = Map::new();
    for r in resources {
        let schema = serde_json::to_value((r.typed.schema)(&mut generator)).unwrap_or(Value::Null);
        let name = schema.get("$ref").and_then(Value::as_str).and_then(|s| s.rsplit('/').next());
        let list = match name {
            Some(name) => {
                kinds.push((name.to_owned(), r));
                // Upstream's name: the item's with the list kind (`io.k8s.api.core.v1.PodList`).
                let list_name =
                    format!("{}{}", name.strip_suffix(r.kind).unwrap_or(name), r.list_kind());
                lists.insert(list_name.clone(), list_definition(r, &schema, &list_meta));
                json!({ "$ref": format!("#/components/schemas/{list_name}") })
            }
            None => schema.clone(),
        };
        add_paths(&mut paths, r, &Schemas { item: &schema, list: &list, status: &status });
    }
    let mut schemas = generator.take_definitions(true);
    schemas.extend(lists);
    add_patch_extensions(&mut schemas);
    metadata_is_optional(&mut schemas);
    for (name, r) in kinds {
        if let Some(Value::Object(definition)) = schemas.get_mut(&name) {
            definition.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{ "group": r.group, "kind": r.kind, "version": r.version }]),
            );
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": crate::git_version() },
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

/// Upstream never requires `metadata` (the Go field is a value with `omitempty`);
/// k8s-openapi's schemas do, which kubectl's client-side validation would enforce.
fn metadata_is_optional(schemas: &mut Map<String, Value>) {
    for definition in schemas.values_mut() {
        if let Some(Value::Array(required)) = definition.get_mut("required") {
            required.retain(|field| field != "metadata");
        }
    }
}

/// Upstream's extensions from the generated metadata: `x-kubernetes-patch-strategy`,
/// `-patch-merge-key`, `-list-type`, `-list-map-keys`, `-map-type` on properties, and
/// `x-kubernetes-map-type` on structs marked atomic or granular.
fn add_patch_extensions(schemas: &mut Map<String, Value>) {
    for (name, definition) in schemas.iter_mut() {
        let Some(meta) = keelson_api::patch_meta::type_named(name) else { continue };
        if let (Some(structure), Some(object)) = (meta.struct_type, definition.as_object_mut()) {
            object.insert("x-kubernetes-map-type".into(), json!(structure.as_str()));
        }
        let Some(properties) = definition.get_mut("properties").and_then(Value::as_object_mut)
        else {
            continue;
        };
        for field in meta.fields {
            let Some(Value::Object(property)) = properties.get_mut(field.name) else { continue };
            if let Some(strategy) = field.strategy.as_str() {
                property.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
            }
            if let Some(key) = field.merge_key {
                property.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            }
            if let Some(list) = field.list_type {
                property.insert("x-kubernetes-list-type".into(), json!(list.as_str()));
                if !field.list_map_keys.is_empty() {
                    property
                        .insert("x-kubernetes-list-map-keys".into(), json!(field.list_map_keys));
                }
            }
            if let Some(map) = field.map_type {
                property.insert("x-kubernetes-map-type".into(), json!(map.as_str()));
            }
        }
    }
}

fn query(name: &str, description: &str, kind: &str) -> Value {
    json!({ "name": name, "in": "query", "description": description, "schema": { "type": kind, "uniqueItems": true } })
}

fn write_parameters() -> Vec<Value> {
    vec![
        query(
            "dryRun",
            "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
            "string",
        ),
        query(
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
            "string",
        ),
        query(
            "fieldValidation",
            "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: - Ignore - Warn (default) - Strict",
            "string",
        ),
    ]
}

fn list_parameters() -> Vec<Value> {
    vec![
        query(
            "allowWatchBookmarks",
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
            "boolean",
        ),
        query(
            "continue",
            "The continue option should be set when retrieving more results from the server.",
            "string",
        ),
        query(
            "fieldSelector",
            "A selector to restrict the list of returned objects by their fields.",
            "string",
        ),
        query(
            "labelSelector",
            "A selector to restrict the list of returned objects by their labels.",
            "string",
        ),
        query(
            "limit",
            "limit is a maximum number of responses to return for a list call.",
            "integer",
        ),
        query(
            "resourceVersion",
            "resourceVersion sets a constraint on what resource versions a request may be served from.",
            "string",
        ),
        query(
            "resourceVersionMatch",
            "resourceVersionMatch determines how resourceVersion is applied to list calls.",
            "string",
        ),
        query(
            "sendInitialEvents",
            "`sendInitialEvents=true` may be set together with `watch=true`.",
            "boolean",
        ),
        query("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
        query(
            "watch",
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
            "boolean",
        ),
    ]
}

fn operation(
    r: &ResourceInfo,
    action: &str,
    parameters: Vec<Value>,
    schema: &Value,
    body: Option<Vec<&str>>,
) -> Value {
    let mut op = json!({
        "operationId": format!("{action}{}{}", r.kind, if r.group.is_empty() { "Core".to_owned() } else { r.group.split('.').next().unwrap_or("").to_owned() }),
        "parameters": parameters,
        "responses": {
            "200": { "description": "OK", "content": { "application/json": { "schema": schema } } },
            "401": { "description": "Unauthorized" },
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": { "group": r.group, "version": r.version, "kind": r.kind },
    });
    if let Some(types) = body {
        let content: Map<String, Value> =
            types.into_iter().map(|t| (t.to_owned(), json!({ "schema": schema }))).collect();
        op["requestBody"] = json!({ "content": content, "required": true });
    }
    op
}

/// The `<Kind>List` definition: `items` of the kind and the list's metadata.
fn list_definition(r: &ResourceInfo, item: &Value, list_meta: &Value) -> Value {
    let list_kind = r.list_kind();
    json!({
        "type": "object",
        "required": ["items"],
        "description": format!("{list_kind} is a list of {}", r.kind),
        "properties": {
            "apiVersion": { "type": "string" },
            "kind": { "type": "string" },
            "items": { "type": "array", "items": item },
            "metadata": { "allOf": [list_meta] },
        },
        "x-kubernetes-group-version-kind": [{ "group": r.group, "kind": list_kind, "version": r.version }],
    })
}

/// What a resource's operations answer: the object, the list, or a `Status`
/// (deletecollection).
struct Schemas<'a> {
    item: &'a Value,
    list: &'a Value,
    status: &'a Value,
}

fn path_parameter(name: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string", "uniqueItems": true } })
}

fn add_paths(paths: &mut Map<String, Value>, r: &ResourceInfo, schemas: &Schemas<'_>) {
    let schema = schemas.item;
    let base = if r.namespaced() {
        format!("/{}/namespaces/{{namespace}}/{}", path_prefix(r), r.plural)
    } else {
        format!("/{}/{}", path_prefix(r), r.plural)
    };
    let scope_params: Vec<Value> =
        if r.namespaced() { vec![path_parameter("namespace")] } else { vec![] };
    let mut collection = Map::new();
    if r.supports("list") {
        let list = operation(r, "list", list_parameters(), schemas.list, None);
        collection.insert("get".into(), list);
    }
    if r.supports("create") {
        collection.insert(
            "post".into(),
            operation(r, "post", write_parameters(), schema, Some(vec!["*/*"])),
        );
    }
    if r.supports("deletecollection") {
        collection.insert(
            "delete".into(),
            operation(r, "deletecollection", list_parameters(), schemas.status, None),
        );
    }
    if !collection.is_empty() {
        collection.insert("parameters".into(), Value::Array(scope_params.clone()));
        paths.insert(base.clone(), Value::Object(collection));
    }
    let mut item = Map::new();
    if r.supports("get") {
        item.insert("get".into(), operation(r, "get", vec![], schema, None));
    }
    if r.supports("update") {
        item.insert(
            "put".into(),
            operation(r, "put", write_parameters(), schema, Some(vec!["*/*"])),
        );
    }
    if r.supports("patch") {
        let mut parameters = write_parameters();
        parameters.push(query("force", "Force is going to \"force\" Apply requests.", "boolean"));
        // The schemas lack upstream's patch-strategy extensions, so strategic merge patch
        // is not advertised: kubectl then computes strategic patches from its own
        // built-in type information, which has them. The server accepts it all the same.
        let types = vec![
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ];
        item.insert("patch".into(), operation(r, "patch", parameters, schema, Some(types)));
    }
    if r.supports("delete") {
        item.insert("delete".into(), operation(r, "delete", write_parameters(), schema, None));
    }
    if !item.is_empty() {
        let mut params = scope_params.clone();
        params.push(path_parameter("name"));
        item.insert("parameters".into(), Value::Array(params));
        paths.insert(format!("{base}/{{name}}"), Value::Object(item));
    }
    if let Some(status) = r.subresource("status") {
        let mut sub = Map::new();
        for (method, action, verb) in
            [("get", "get", "get"), ("put", "put", "update"), ("patch", "patch", "patch")]
        {
            if status.verbs.contains(&verb) {
                let body = (method != "get").then(|| vec!["*/*"]);
                sub.insert(
                    method.into(),
                    operation(
                        r,
                        action,
                        if method == "get" { vec![] } else { write_parameters() },
                        schema,
                        body,
                    ),
                );
            }
        }
        let mut params = scope_params;
        params.push(path_parameter("name"));
        sub.insert("parameters".into(), Value::Array(params));
        paths.insert(format!("{base}/{{name}}/status"), Value::Object(sub));
    }
}

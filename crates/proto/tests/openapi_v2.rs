//! The `openapi.v2.Document` encoding, read back by `protoc --decode` against
//! `proto/openapiv2.proto` (gnostic's field numbers): what Go's `proto.Unmarshal` would
//! see.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;

fn protoc_decode(bytes: &[u8]) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let mut child = Command::new("protoc")
        .arg("--decode=openapi.v2.Document")
        .arg(format!("-I{}", dir.display()))
        .arg("-I/usr/include")
        .arg("openapiv2.proto")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("protoc (protobuf-compiler, see scripts/setup.sh)");
    child.stdin.take().expect("stdin").write_all(bytes).expect("write to protoc");
    let out = child.wait_with_output().expect("protoc");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The protoc text with its indentation and line breaks collapsed to single spaces.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn a_document_decodes_with_gnostic_field_numbers() {
    let document = json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": "v1.34.0" },
        "paths": {
            "/api/v1/namespaces/{namespace}/pods": {
                "post": {
                    "consumes": ["*/*"],
                    "produces": ["application/json"],
                    "operationId": "createCoreV1NamespacedPod",
                    "parameters": [
                        { "name": "body", "in": "body", "required": true,
                          "schema": { "$ref": "#/definitions/io.k8s.api.core.v1.Pod" } },
                        { "name": "dryRun", "in": "query", "type": "string", "uniqueItems": true }
                    ],
                    "responses": {
                        "200": { "description": "OK",
                                 "schema": { "$ref": "#/definitions/io.k8s.api.core.v1.Pod" } }
                    },
                    "x-kubernetes-action": "post"
                },
                "parameters": [
                    { "name": "namespace", "in": "path", "required": true, "type": "string" }
                ]
            }
        },
        "definitions": {
            "io.k8s.api.core.v1.Pod": {
                "type": "object",
                "required": ["spec"],
                "properties": {
                    "labels": { "type": "object", "additionalProperties": { "type": "string" } },
                    "open": { "type": "object", "additionalProperties": true },
                    "policy": { "type": "string", "enum": ["Always", "Never"], "nullable": true },
                    "ports": { "type": "array", "items": { "type": "integer", "format": "int32", "maximum": 65535.0 } }
                },
                "x-kubernetes-group-version-kind": [{ "group": "", "kind": "Pod", "version": "v1" }]
            }
        },
        "securityDefinitions": {
            "BearerToken": { "type": "apiKey", "name": "authorization", "in": "header" }
        },
        "security": [{ "BearerToken": [] }]
    });
    let text = flat(&protoc_decode(&keelson_proto::openapi_v2::encode(&document)));
    let expected = [
        r##"swagger: "2.0" info { title: "Kubernetes" version: "v1.34.0" }"##,
        r##"paths { path { name: "/api/v1/namespaces/{namespace}/pods" value { post {"##,
        r##"operation_id: "createCoreV1NamespacedPod" produces: "application/json" consumes: "*/*""##,
        r##"parameters { parameter { body_parameter { name: "body" in: "body" required: true schema { _ref: "#/definitions/io.k8s.api.core.v1.Pod" } } } }"##,
        r##"parameters { parameter { non_body_parameter { query_parameter_sub_schema { in: "query" name: "dryRun" type: "string" unique_items: true } } } }"##,
        r##"responses { response_code { name: "200" value { response { description: "OK" schema { schema { _ref: "#/definitions/io.k8s.api.core.v1.Pod" } } } } } }"##,
        r##"vendor_extension { name: "x-kubernetes-action" value { yaml: "\"post\"" } } }"##,
        r##"parameters { parameter { non_body_parameter { path_parameter_sub_schema { required: true in: "path" name: "namespace" type: "string" } } } } } } }"##,
        r##"definitions { additional_properties { name: "io.k8s.api.core.v1.Pod" value {"##,
        r##"required: "spec" type { value: "object" } properties {"##,
        r##"additional_properties { name: "labels" value { additional_properties { schema { type { value: "string" } } } type { value: "object" } } }"##,
        r##"additional_properties { name: "open" value { additional_properties { boolean: true } type { value: "object" } } }"##,
        r##"additional_properties { name: "policy" value { enum { yaml: "\"Always\"" } enum { yaml: "\"Never\"" } type { value: "string" } } }"##,
        r##"additional_properties { name: "ports" value { type { value: "array" } items { schema { format: "int32" maximum: 65535 type { value: "integer" } } } } } }"##,
        r##"vendor_extension { name: "x-kubernetes-group-version-kind" value { yaml: "[{\"group\":\"\",\"kind\":\"Pod\",\"version\":\"v1\"}]" } } } } }"##,
        r##"security { additional_properties { name: "BearerToken" value { } } }"##,
        r##"security_definitions { additional_properties { name: "BearerToken" value { api_key_security { type: "apiKey" name: "authorization" in: "header" } } } }"##,
    ]
    .join(" ");
    assert_eq!(text, expected);
}

#[test]
fn anything_that_is_not_a_document_encodes_without_panicking() {
    for value in [json!(null), json!([1, 2]), json!({ "paths": 3, "definitions": { "a": [] } })] {
        protoc_decode(&keelson_proto::openapi_v2::encode(&value));
    }
}

//! `GET /openapi/v2`: the whole API in one Swagger 2.0 document, as JSON or as gnostic's
//! `openapi.v2.Document` protobuf, negotiated as kube-openapi's `handler` does.
//!
//! Go clients read it: client-go's `discovery.OpenAPISchema()` (Helm, Argo CD, ...),
//! kubectl's client-side validation of kinds the v3 documents give no PATCH operation
//! (reviews, token requests) and `kubectl explain --output=plaintext-openapiv2`. They
//! ask for protobuf. The document is derived from the v3 documents ([`super::swagger`]):
//! the built-in part once, the whole document once per registry (custom resources
//! change it), JSON, protobuf and ETag together.

use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY};
use http::{HeaderMap, HeaderValue, StatusCode};
use keelson_api::Registry;
use serde_json::Value;

use super::swagger::Swagger;
use crate::response::{Response, full};

/// What kube-openapi serves protobuf as, whichever of the two names was asked for.
pub const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The deprecated name of the protobuf media type (what client-go asks for).
const PROTOBUF_DEPRECATED: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json,
    Protobuf,
}

/// The document of one registry in both encodings.
struct Encoded {
    json: Bytes,
    protobuf: Bytes,
    /// Upstream's: the uppercase hex SHA-512 of the JSON, quoted.
    etag: String,
}

/// `GET /openapi/v2`.
pub fn serve(registry: &Arc<Registry>, headers: &HeaderMap) -> Response {
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let format = negotiate(if accept.trim().is_empty() { "*/*" } else { accept });
    let mut response = http::Response::new(full(Bytes::new()));
    response.headers_mut().insert(VARY, HeaderValue::from_static("Accept"));
    let Some(format) = format else {
        *response.status_mut() = StatusCode::NOT_ACCEPTABLE;
        return response;
    };
    let encoded = encoded(registry);
    if let Ok(etag) = HeaderValue::from_str(&encoded.etag) {
        response.headers_mut().insert(ETAG, etag);
    }
    let if_none_match = headers.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok());
    if if_none_match.is_some_and(|tags| matches_etag(tags, &encoded.etag)) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }
    let (body, content_type) = match format {
        Format::Json => (encoded.json.clone(), "application/json"),
        Format::Protobuf => (encoded.protobuf.clone(), PROTOBUF),
    };
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    *response.body_mut() = full(body);
    response
}

/// The format to answer an `Accept` header with: its clauses by preference (goautoneg's
/// order: quality, then specific types before wildcards), the first that JSON or
/// protobuf matches. `None` when neither does: 406.
fn negotiate(accept: &str) -> Option<Format> {
    let mut clauses: Vec<(f32, &str, &str)> = accept
        .split(',')
        .filter_map(|clause| {
            let mut parts = clause.split(';');
            let range = parts.next()?.trim();
            let (kind, sub) = match range.split_once('/') {
                Some((kind, sub)) => (kind.trim(), sub.trim()),
                None if range == "*" => ("*", "*"),
                None => return None,
            };
            let quality = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim() == "q")
                .map_or(1.0, |(_, q)| q.trim().parse().unwrap_or(0.0));
            Some((quality, kind, sub))
        })
        .collect();
    clauses.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then((a.1 == "*").cmp(&(b.1 == "*")))
            .then((a.2 == "*").cmp(&(b.2 == "*")))
    });
    let offered = [
        ("application/json", Format::Json),
        (PROTOBUF_DEPRECATED, Format::Protobuf),
        (PROTOBUF, Format::Protobuf),
    ];
    clauses.iter().find_map(|(_, kind, sub)| {
        offered.iter().find_map(|(media, format)| {
            let (offered_kind, offered_sub) = media.split_once('/')?;
            let kind_ok = *kind == "*" || *kind == offered_kind;
            let sub_ok = *sub == "*" || *sub == offered_sub;
            (kind_ok && sub_ok).then_some(*format)
        })
    })
}

/// Whether an `If-None-Match` list names the ETag (weakly, as Go's `ServeContent`).
fn matches_etag(tags: &str, etag: &str) -> bool {
    tags.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// The built-in group-versions, converted once.
fn builtin() -> &'static Swagger {
    static BUILTIN: OnceLock<Swagger> = OnceLock::new();
    BUILTIN.get_or_init(|| {
        let mut swagger = Swagger::default();
        for document in super::documents().values() {
            if let Ok(v3) = serde_json::from_slice::<Value>(&document.body) {
                swagger.add(&v3);
            }
        }
        swagger
    })
}

/// The document of `registry`, built on first use and kept until the registry changes.
fn encoded(registry: &Arc<Registry>) -> Arc<Encoded> {
    // Holding the registry keeps its address from being reused by a newer one.
    static LAST: Mutex<Option<(Arc<Registry>, Arc<Encoded>)>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((cached, encoded)) = last.as_ref()
        && Arc::ptr_eq(cached, registry)
    {
        return encoded.clone();
    }
    let custom = super::custom_values(registry);
    let document = if custom.is_empty() {
        builtin().document(&crate::git_version())
    } else {
        let mut swagger = builtin().clone();
        for v3 in custom.values() {
            swagger.add(v3);
        }
        swagger.document(&crate::git_version())
    };
    let json = serde_json::to_vec(&document).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA512, &json);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    let encoded = Arc::new(Encoded {
        protobuf: Bytes::from(keelson_proto::openapi_v2::encode(&document)),
        json: Bytes::from(json),
        etag: format!("\"{hex}\""),
    });
    *last = Some((registry.clone(), encoded.clone()));
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_as_kube_openapi() {
        assert_eq!(negotiate("*/*"), Some(Format::Json));
        assert_eq!(negotiate("application/json"), Some(Format::Json));
        assert_eq!(negotiate("application/*"), Some(Format::Json));
        assert_eq!(negotiate(PROTOBUF_DEPRECATED), Some(Format::Protobuf));
        assert_eq!(negotiate(PROTOBUF), Some(Format::Protobuf));
        assert_eq!(
            negotiate(&format!("{PROTOBUF_DEPRECATED}, application/json")),
            Some(Format::Protobuf)
        );
        assert_eq!(
            negotiate(&format!("application/json;q=0.5, {PROTOBUF}")),
            Some(Format::Protobuf)
        );
        assert_eq!(negotiate(&format!("*/*, {PROTOBUF}")), Some(Format::Protobuf));
        assert_eq!(negotiate("application/yaml"), None);
        assert_eq!(negotiate("text/html, image/*"), None);
    }

    /// What kubectl's model builder (`k8s.io/kube-openapi/pkg/util/proto`) refuses:
    /// references to no definition, arrays without items, several types, unknown
    /// primitive types. One such schema anywhere fails the whole document.
    fn model_errors(
        definitions: &serde_json::Map<String, Value>,
        path: &str,
        s: &Value,
        errors: &mut Vec<String>,
    ) {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let name = r.strip_prefix("#/definitions/").unwrap_or(r);
            if !definitions.contains_key(name) {
                errors.push(format!("{path}: unknown model in reference: {r:?}"));
            }
            return;
        }
        for key in s.as_object().into_iter().flatten().map(|(k, _)| k) {
            if !super::super::swagger::SCHEMA_KEYS.contains(&key.as_str()) && !key.starts_with("x-")
            {
                errors.push(format!("{path}: key {key:?} is not Swagger 2.0"));
            }
        }
        match s.get("type") {
            None => {}
            Some(Value::String(t)) if t == "array" => match s.get("items") {
                Some(items @ Value::Object(_)) => {
                    model_errors(definitions, &format!("{path}[]"), items, errors)
                }
                _ => errors.push(format!("{path}: array should have exactly one sub-item")),
            },
            Some(Value::String(t))
                if ["object", "string", "number", "integer", "boolean"].contains(&t.as_str()) => {}
            Some(t) => errors.push(format!("{path}: type {t}")),
        }
        for (name, p) in s["properties"].as_object().into_iter().flatten() {
            model_errors(definitions, &format!("{path}.{name}"), p, errors);
        }
        if let Some(additional @ Value::Object(_)) = s.get("additionalProperties") {
            model_errors(definitions, &format!("{path}{{}}"), additional, errors);
        }
    }

    #[test]
    fn kubectl_can_build_its_models_from_every_definition() {
        let document = builtin().document("v1");
        let definitions = document["definitions"].as_object().expect("definitions");
        assert!(definitions.contains_key("io.k8s.api.core.v1.Pod"));
        let mut errors = Vec::new();
        for (name, s) in definitions {
            model_errors(definitions, name, s, &mut errors);
        }
        for (path, item) in document["paths"].as_object().expect("paths") {
            for op in item.as_object().into_iter().flatten().filter_map(|(_, op)| op.as_object()) {
                for p in op.get("parameters").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(s) = p.get("schema") {
                        model_errors(definitions, path, s, &mut errors);
                    }
                }
            }
        }
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }

    #[test]
    fn if_none_match_compares_weakly() {
        assert!(matches_etag("\"A\"", "\"A\""));
        assert!(matches_etag("\"B\", W/\"A\"", "\"A\""));
        assert!(matches_etag("*", "\"A\""));
        assert!(!matches_etag("\"B\"", "\"A\""));
    }
}

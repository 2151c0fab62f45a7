//! Decoding a JSON object through its Rust type, as upstream decodes into Go structs:
//! values of the wrong type are rejected, required fields must be there, and fields the
//! type does not have are dropped — reported per `fieldValidation` (`Strict`: 400,
//! `Warn`: a `Warning` header, `Ignore`: silently). What Go's encoder would then leave
//! out (`omitempty` zero values, which k8s-openapi's `Option`s keep) is dropped by
//! `keelson_proto::omit_empty`.

use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_api::{ResourceInfo, TypeError, Typed};
use serde_json::Value;

use crate::status::{ApiError, ApiResult, Cause};

/// `fieldValidation`, upstream's default being `Warn`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    #[default]
    Warn,
    Ignore,
}

impl FieldValidation {
    pub fn parse(value: Option<&str>) -> ApiResult<Self> {
        match value {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation: unsupported value {other:?}, supported values: \"Ignore\", \"Warn\", \"Strict\""
            ))),
        }
    }
}

/// How strictly a request body is checked, and what was found in its raw form.
#[derive(Clone, Debug, Default)]
pub struct BodyCheck {
    pub mode: FieldValidation,
    /// Fields the body named twice ([`duplicate_fields`]).
    pub duplicates: Vec<String>,
}

/// The object as its type sees it, and the warnings to send.
pub fn decode(
    info: &ResourceInfo,
    object: Value,
    check: &BodyCheck,
    warnings: &mut Vec<String>,
) -> ApiResult<Value> {
    let normalized = match info.custom {
        // A custom resource: pruned to its schema and defaulted.
        Some(version) if object.is_object() => {
            Ok(crate::structural::prune_and_default(version, object.clone()))
        }
        _ => (info.typed.normalize)(&object),
    };
    let normalized =
        normalized.map_err(|e| type_error(info.group, info.version, info.kind, &object, e))?;
    check_metadata(info.group, info.version, info.kind, &normalized)?;
    check_quantities(info, &normalized)?;
    let mut unknown = Vec::new();
    unknown_fields(&object, &normalized, &mut String::new(), &mut unknown);
    let mut normalized = normalized;
    super::strategy::for_resource(info).defaults(&mut normalized);
    if info.custom.is_none() {
        // What Go's encoder would leave out of the object upstream stores.
        keelson_proto::omit_empty(&info.api_version(), info.kind, &mut normalized);
    }
    let mut problems: Vec<String> =
        unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    problems.extend(check.duplicates.iter().map(|f| format!("duplicate field \"{f}\"")));
    match check.mode {
        FieldValidation::Strict if !problems.is_empty() => {
            let listed = problems;
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                info.kind,
                info.version,
                info.kind,
                listed.join(", ")
            )));
        }
        FieldValidation::Warn => warnings.extend(problems),
        _ => {}
    }
    Ok(normalized)
}

/// A request body that is never stored as it is (a review, a TokenRequest, an Eviction,
/// DeleteOptions), decoded through its type `typed` as upstream decodes it into the Go
/// struct before anything reads it: the body as the type sees it (so every field the
/// handler then reads or writes has its type's shape), or 400 — 422 for a missing
/// required field.
pub fn decode_body(
    typed: Typed,
    group: &str,
    version: &str,
    kind: &str,
    body: &Value,
) -> ApiResult<Value> {
    // Which version of the kind the client wrote is the handler's business (an Eviction
    // may come as `policy/v1beta1`); the type checks only the fields. `status` is the
    // server's answer, never read from a client (kubectl sends an empty one whose
    // required fields are null).
    let mut fields = body.clone();
    if let Some(map) = fields.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
        map.remove("status");
    }
    let decoded =
        (typed.normalize)(&fields).map_err(|e| type_error(group, version, kind, body, e))?;
    check_metadata(group, version, kind, &decoded)?;
    Ok(decoded)
}

/// Whether `object` fits the resource's type, without changing it (server-side apply
/// keeps the configuration as sent: which fields it names is what it owns).
pub fn check_shape(info: &ResourceInfo, object: &Value) -> ApiResult<()> {
    let normalized = match info.custom {
        Some(_) if object.is_object() => Ok(object.clone()),
        _ => (info.typed.normalize)(object),
    };
    normalized.map_err(|e| type_error(info.group, info.version, info.kind, object, e))?;
    check_metadata(info.group, info.version, info.kind, object)?;
    check_quantities(info, object)
}

/// Every quantity the object holds must be one, as upstream's `Quantity` decodes.
fn check_quantities(info: &ResourceInfo, object: &Value) -> ApiResult<()> {
    match super::quantities::first_invalid(info, object) {
        None => Ok(()),
        Some(path) => Err(type_error(
            info.group,
            info.version,
            info.kind,
            object,
            TypeError { path, missing: false, message: super::quantities::FORMAT_WRONG.into() },
        )),
    }
}

/// `metadata`, when there, must be an `ObjectMeta` — also for custom resources, whose
/// schema does not describe it — before anything indexes into it.
fn check_metadata(group: &str, version: &str, kind: &str, object: &Value) -> ApiResult<()> {
    match object.get("metadata") {
        None | Some(Value::Null) => Ok(()),
        Some(metadata) => {
            let typed = keelson_api::Typed::of::<ObjectMeta>();
            (typed.normalize)(metadata).map(drop).map_err(|mut e| {
                e.path = if e.path == "." || e.path.is_empty() {
                    "metadata".to_owned()
                } else {
                    format!("metadata.{}", e.path.trim_start_matches('.'))
                };
                type_error(group, version, kind, object, e)
            })
        }
    }
}

/// Why a body does not fit its type, as upstream's decoder says it.
fn type_error(group: &str, version: &str, kind: &str, object: &Value, e: TypeError) -> ApiError {
    if e.missing {
        ApiError::invalid(group, kind, name_of(object), vec![Cause::required(&e.path, "")])
    } else {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {} at {}",
            e.message, e.path
        ))
    }
}

/// A strategic merge patch whose result does not fit the type, refused as upstream
/// refuses it when it converts the patched map into the Go struct: 422, `patch: Invalid
/// value: "<the patch as Go prints a map>": cannot restore map from string`. `None` when
/// the result fits.
pub fn unrestorable_patch(info: &ResourceInfo, patched: &Value, patch: &Value) -> Option<ApiError> {
    let error = match (info.typed.normalize)(patched) {
        // A missing field is a zero value to the converter, not an error.
        Err(e) if !e.missing => e,
        _ => return None,
    };
    let cause =
        Cause::invalid("patch", &Value::String(go_print(patch)), &converter_words(&error.message));
    Some(ApiError::invalid("", "", "", vec![cause]))
}

/// What upstream's `DefaultUnstructuredConverter` says of a value of the wrong type,
/// from serde's `invalid type: <found>, expected <wanted>`: the Go kind of what was
/// found (JSON numbers are `int64` or `float64`) and of what the field is.
fn converter_words(serde_message: &str) -> String {
    let Some(rest) = serde_message.strip_prefix("invalid type: ") else {
        return serde_message.to_owned();
    };
    let (found, wanted) = rest.split_once(", expected ").unwrap_or((rest, ""));
    let found = match found.split_whitespace().next().unwrap_or("") {
        "string" => "string",
        "integer" => "int64",
        "floating" => "float64",
        "boolean" => "bool",
        "map" => "map",
        "sequence" => "slice",
        _ => "interface",
    };
    let wanted = wanted.trim();
    match wanted {
        "a map" => format!("cannot restore map from {found}"),
        "a sequence" => format!("cannot restore slice from {found}"),
        _ if wanted.starts_with("struct ") => format!("cannot restore struct from: {found}"),
        "a string" if matches!(found, "int64" | "float64") => {
            format!("cannot convert {found} to string")
        }
        "a string" => "unrecognized type: string".into(),
        "a boolean" => "unrecognized type: bool".into(),
        _ => {
            let go = match wanted {
                "i32" => "int32",
                "i64" => "int64",
                "u8" | "u16" | "u32" | "u64" => "uint64",
                "f32" | "f64" => "float64",
                other => return format!("{found} cannot be restored as {other}"),
            };
            if found == "float64" {
                format!("cannot convert float64 to {go}")
            } else {
                format!("unrecognized type: {go}")
            }
        }
    }
}

/// A JSON value as Go's `%+v` prints the `map[string]interface{}` it decodes to: maps
/// as `map[k:v …]` in key order, lists as `[a b]`, strings bare, `<nil>` for null.
pub fn go_print(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => go_float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(go_print).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Object(map) => {
            let fields: Vec<String> =
                map.iter().map(|(k, v)| format!("{k}:{}", go_print(v))).collect();
            format!("map[{}]", fields.join(" "))
        }
    }
}

/// A float64 as Go's `%v` prints it: the shortest form, with an exponent (two digits at
/// least) below 1e-4 and from 1e21.
fn go_float(f: f64) -> String {
    let exponent = if f == 0.0 { 0 } else { f.abs().log10().floor() as i64 };
    if (-4..21).contains(&exponent) {
        return f.to_string();
    }
    let scientific = format!("{f:e}");
    let (mantissa, exp) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(digits) => ('-', digits),
        None => ('+', exp),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

fn name_of(object: &Value) -> &str {
    object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}

/// Paths present (and not null) in `input` that the typed `output` lacks.
fn unknown_fields(input: &Value, output: &Value, path: &mut String, found: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(inp), Value::Object(out)) => {
            for (key, value) in inp {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match out.get(key) {
                    None if !value.is_null() => found.push(path.clone()),
                    Some(out_value) => unknown_fields(value, out_value, path, found),
                    None => {}
                }
                path.truncate(len);
            }
        }
        (Value::Array(inp), Value::Array(out)) if inp.len() == out.len() => {
            for (i, (a, b)) in inp.iter().zip(out).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                unknown_fields(a, b, path, found);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strict() -> BodyCheck {
        BodyCheck { mode: FieldValidation::Strict, duplicates: Vec::new() }
    }

    fn info(kind: &str) -> &'static ResourceInfo {
        keelson_api::Registry::builtin().resources().find(|r| r.kind == kind).expect("registered")
    }

    #[test]
    fn unknown_fields_are_named_by_path() {
        let pod = json!({"metadata": {"name": "p", "bogus": 1}, "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolice": "Always"}]}, "extra": null});
        let mut warnings = Vec::new();
        let decoded = decode(info("Pod"), pod.clone(), &BodyCheck::default(), &mut warnings)
            .expect("decodes");
        assert_eq!(
            warnings,
            [
                "unknown field \"metadata.bogus\"",
                "unknown field \"spec.containers[0].imagePullPolice\""
            ]
        );
        assert!(decoded["spec"]["containers"][0].get("imagePullPolice").is_none());
        let strict = decode(info("Pod"), pod, &strict(), &mut Vec::new()).expect_err("strict");
        assert_eq!(strict.code, 400);
        assert!(
            strict.message.starts_with("Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"metadata.bogus\""),
            "{}",
            strict.message
        );
    }

    #[test]
    fn wrong_types_are_bad_requests_and_absent_fields_decode_as_empty() {
        let wrong = json!({"metadata": {"name": "d"}, "spec": {"replicas": "three", "selector": {}, "template": {}}});
        let error =
            decode(info("Deployment"), wrong, &strict(), &mut Vec::new()).expect_err("wrong type");
        assert_eq!(
            (error.code.as_u16(), error.reason.as_str()),
            (400, "BadRequest"),
            "{}",
            error.message
        );
        // As Go's decoder does: required fields are the validation's business, not decoding's.
        let missing =
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"image": "busybox"}]}});
        let decoded = decode(info("Pod"), missing, &strict(), &mut Vec::new()).expect("decodes");
        assert_eq!(decoded["spec"]["containers"][0]["name"], "");
    }
}

/// Paths of keys that appear twice in one object of a JSON document, which parsing into
/// a map silently collapses (`spec.replicas`, `spec.containers[0].name`).
///
/// Runs on every JSON write, so it allocates little: keys are compared as the raw bytes
/// between their quotes (decoded only when they hold an escape), in one set for the whole
/// document, and a path is built only for a duplicate.
pub fn duplicate_fields(json: &[u8]) -> Vec<String> {
    use std::borrow::Cow;
    use std::collections::HashSet;

    /// An open object (by its number in the document, and the key being read) or array.
    enum Frame<'a> {
        Object { id: usize, key: Option<Cow<'a, [u8]>> },
        Array { index: usize },
    }
    fn name(key: &[u8]) -> String {
        String::from_utf8_lossy(key).into_owned()
    }
    let mut found = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut seen: HashSet<(usize, Cow<[u8]>)> = HashSet::new();
    let mut objects = 0;
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'{' => {
                objects += 1;
                stack.push(Frame::Object { id: objects, key: None });
            }
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array { index }) => *index += 1,
                Some(Frame::Object { key, .. }) => *key = None,
                None => {}
            },
            b'"' => {
                let start = i + 1;
                let mut escaped = false;
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    if json[i] == b'\\' {
                        escaped = true;
                        i += 1;
                    }
                    i += 1;
                }
                let text = &json[start..i.min(json.len())];
                // A string right after '{' or ',' in an object is a key.
                if let Some(&Frame::Object { id, key: None }) = stack.last() {
                    let text: Cow<[u8]> = if escaped {
                        let quoted = [b"\"", text, b"\""].concat();
                        let decoded: String = serde_json::from_slice(&quoted).unwrap_or_default();
                        Cow::Owned(decoded.into_bytes())
                    } else {
                        Cow::Borrowed(text)
                    };
                    if !seen.insert((id, text.clone())) {
                        let mut path = String::new();
                        for frame in &stack[..stack.len() - 1] {
                            match frame {
                                Frame::Object { key: Some(k), .. } => {
                                    if !path.is_empty() {
                                        path.push('.');
                                    }
                                    path.push_str(&name(k));
                                }
                                Frame::Array { index } => path.push_str(&format!("[{index}]")),
                                Frame::Object { key: None, .. } => {}
                            }
                        }
                        if !path.is_empty() {
                            path.push('.');
                        }
                        path.push_str(&name(&text));
                        found.push(path);
                    }
                    if let Some(Frame::Object { key, .. }) = stack.last_mut() {
                        *key = Some(text);
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

#[cfg(test)]
mod duplicate_tests {
    use super::duplicate_fields;

    #[test]
    fn duplicates_are_found_at_any_depth() {
        let body = br#"{"metadata":{"name":"a","name":"b"},"spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"x"},{"name":"y","image":"i","image":"j"}]}},"replicas":2},"data":{"k\"q":"1","k\"q":"2"}}"#;
        assert_eq!(
            duplicate_fields(body),
            [
                "metadata.name",
                "spec.template.spec.containers[1].image",
                "spec.replicas",
                "data.k\"q"
            ]
        );
        assert!(
            duplicate_fields(br#"{"a":{"b":1},"c":{"b":2},"s":"{\"a\":1,\"a\":2}"}"#).is_empty()
        );
    }
}

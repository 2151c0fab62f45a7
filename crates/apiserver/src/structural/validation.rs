//! Custom resources checked against their version's structural schema, as upstream's
//! `apiextensions-apiserver/pkg/apiserver/validation` (kube-openapi's validator and CEL
//! `x-kubernetes-validations`) checks them: type, format, enum, bounds, lengths, pattern,
//! items, list keys, required, nullable, embedded resources, then the CEL rules — with
//! upstream's field paths and messages (`spec.replicas: Invalid value: 20: spec.replicas
//! in body should be less than or equal to 10`) and ratcheting on updates.
//!
//! `metadata` is the generic store's: only its name reaches rules at the root. Must never
//! panic on any schema or object.

use serde_json::{Map, Value, json};

use super::property;
use crate::status::Cause;

/// Every problem of `object` (and, on updates, of the transition from `old`) against the
/// version's schema: the schema's own rules first, then its CEL rules.
pub fn validate(version: &Value, object: &Value, old: Option<&Value>) -> Vec<Cause> {
    let schema = &version["schema"];
    let mut causes = Vec::new();
    if !schema.is_object() {
        return causes;
    }
    // Rules at the root see `apiVersion`, `kind` and of the metadata only `name` and
    // `generateName`, as upstream's.
    let visible = |object: &Value| {
        let mut root = object.clone();
        if let Value::Object(map) = &mut root {
            let meta: Map<String, Value> = ["name", "generateName"]
                .iter()
                .filter_map(|k| object["metadata"].get(*k).map(|v| ((*k).to_owned(), v.clone())))
                .collect();
            map.insert("metadata".into(), Value::Object(meta));
        }
        root
    };
    let root = visible(object);
    let old_root = old.map(visible);
    check(&root, schema, "", &mut causes);
    rules(&root, old_root.as_ref(), schema, "", &mut causes);
    if let Some(old_root) = &old_root {
        // Ratcheting (upstream's CRDValidationRatcheting, on by default): an update may
        // keep a value that the schema no longer accepts, as long as it does not change it.
        causes.retain(|c| at(&root, &c.field) != at(old_root, &c.field));
    }
    causes
}

/// The problems of a schema node's `default` (at `path`, e.g.
/// `spec.versions[0].schema.openAPIV3Schema.properties[spec].default`): checked against
/// the node's schema and CEL rules as an object's value would be (upstream's
/// `ValidateDefaults`, with `oldSelf` the default too).
pub fn check_default(default: &Value, s: &Value, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    check(default, s, path, &mut causes);
    if causes.is_empty() {
        rules(default, Some(default), s, path, &mut causes);
    }
    causes
}

/// The value at a cause's field path (`spec.ports[1].name`; `<nil>` or empty: the root);
/// `None` when absent.
fn at<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() || path == "<nil>" {
        return Some(root);
    }
    let mut current = root;
    for part in path.split('.') {
        let (field, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !field.is_empty() {
            current = current.get(field)?;
        }
        for index in indexes.split('[').filter(|x| !x.is_empty()) {
            let index = index.trim_end_matches(']');
            current = match index.parse::<usize>() {
                Ok(i) => current.get(i)?,
                Err(_) => current.get(index)?,
            };
        }
    }
    Some(current)
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// The JSON type name kube-openapi reports for a value.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => true,
    }
}

/// `what` as it names the failing field in a message: `spec.replicas`, or `body` at the root.
fn named(path: &str) -> &str {
    if path.is_empty() { "body" } else { path }
}

fn type_invalid(path: &str, value: &Value, expected: &str, actual: &str) -> Cause {
    let mut cause = Cause::invalid(
        path,
        value,
        &format!("{} in body must be of type {expected}: {actual:?}", named(path)),
    );
    cause.reason = "FieldValueTypeInvalid";
    cause
}

/// A number as Go's `%v` prints a float64 bound.
fn number(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        Some(f) => format!("{f}"),
        None => v.to_string(),
    }
}

fn check(v: &Value, s: &Value, path: &str, causes: &mut Vec<Cause>) {
    let int_or_string = s["x-kubernetes-int-or-string"] == json!(true);
    if v.is_null() {
        if s["nullable"] != json!(true)
            && let Some(t) = s["type"].as_str()
        {
            causes.push(type_invalid(path, &json!("null"), t, "null"));
        }
        return;
    }
    if int_or_string {
        if !(v.is_string() || has_type(v, "integer")) {
            let actual = type_name(v);
            causes.push(type_invalid(path, &json!(actual), "integer,string", actual));
            return;
        }
    } else if let Some(t) = s["type"].as_str()
        && !has_type(v, t)
    {
        let actual = type_name(v);
        causes.push(type_invalid(path, &json!(actual), t, actual));
        return;
    }
    if let Some(values) = s["enum"].as_array()
        && !values.contains(v)
    {
        let supported: Vec<String> = values
            .iter()
            .map(|e| format!("{:?}", e.as_str().map_or_else(|| e.to_string(), str::to_owned)))
            .collect();
        let shown = match v {
            Value::String(text) => format!("{text:?}"),
            other => other.to_string(),
        };
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {shown}: supported values: {}",
                supported.join(", ")
            ),
            field: path.to_owned(),
        });
    }
    let name = named(path);
    if let Some(n) = v.as_f64().filter(|_| v.is_number()) {
        let exclusive = |key: &str| s[key] == json!(true);
        if let Some(max) = s["maximum"].as_f64() {
            let bound = number(&s["maximum"]);
            if exclusive("exclusiveMaximum") && n >= max {
                causes.push(Cause::invalid(
                    path,
                    v,
                    &format!("{name} in body should be less than {bound}"),
                ));
            } else if n > max {
                causes.push(Cause::invalid(
                    path,
                    v,
                    &format!("{name} in body should be less than or equal to {bound}"),
                ));
            }
        }
        if let Some(min) = s["minimum"].as_f64() {
            let bound = number(&s["minimum"]);
            if exclusive("exclusiveMinimum") && n <= min {
                causes.push(Cause::invalid(
                    path,
                    v,
                    &format!("{name} in body should be greater than {bound}"),
                ));
            } else if n < min {
                causes.push(Cause::invalid(
                    path,
                    v,
                    &format!("{name} in body should be greater than or equal to {bound}"),
                ));
            }
        }
        if let Some(m) = s["multipleOf"].as_f64()
            && m > 0.0
            && (n / m).fract() != 0.0
        {
            let bound = number(&s["multipleOf"]);
            causes.push(Cause::invalid(
                path,
                v,
                &format!("{name} in body should be a multiple of {bound}"),
            ));
        }
        match s["format"].as_str() {
            Some("int32") if n < f64::from(i32::MIN) || n > f64::from(i32::MAX) => {
                causes.push(type_invalid(path, v, "int32", &v.to_string()));
            }
            _ => {}
        }
    }
    if let Some(text) = v.as_str() {
        let length = text.chars().count() as u64;
        if let Some(max) = s["maxLength"].as_u64()
            && length > max
        {
            causes.push(Cause {
                reason: "FieldValueTooLong",
                message: format!("Too long: may not be more than {max} bytes"),
                field: path.to_owned(),
            });
        }
        if let Some(min) = s["minLength"].as_u64()
            && length < min
        {
            causes.push(Cause::invalid(
                path,
                v,
                &format!("{name} in body should be at least {min} chars long"),
            ));
        }
        if let Some(pattern) = s["pattern"].as_str()
            && let Some(re) = compiled_pattern(pattern)
            && !re.is_match(text)
        {
            causes.push(Cause::invalid(
                path,
                v,
                &format!("{name} in body should match '{pattern}'"),
            ));
        }
        if let Some(format) = s["format"].as_str()
            && !int_or_string
            && !format_ok(format, text)
        {
            causes.push(type_invalid(path, v, format, text));
        }
    }
    if let Some(items) = v.as_array() {
        let count = items.len() as u64;
        if let Some(max) = s["maxItems"].as_u64()
            && count > max
        {
            causes.push(Cause {
                reason: "FieldValueTooMany",
                message: format!("Too many: {count}: must have at most {max} items"),
                field: path.to_owned(),
            });
        }
        if let Some(min) = s["minItems"].as_u64()
            && count < min
        {
            causes.push(Cause::invalid(
                path,
                v,
                &format!("{name} in body should have at least {min} items"),
            ));
        }
        if s["uniqueItems"] == json!(true)
            && items.iter().enumerate().any(|(i, a)| items[..i].contains(a))
        {
            causes.push(Cause::invalid(
                path,
                v,
                &format!("{name} in body shouldn't contain duplicates"),
            ));
        }
        list_type(items, s, path, causes);
        for (i, item) in items.iter().enumerate() {
            if s["items"].is_object() {
                check(item, &s["items"], &format!("{path}[{i}]"), causes);
            }
        }
    }
    if let Some(map) = v.as_object() {
        for required in s["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !map.contains_key(required) {
                causes.push(Cause::required(&child_path(path, required), ""));
            }
        }
        if s["x-kubernetes-embedded-resource"] == json!(true) {
            for field in ["apiVersion", "kind"] {
                if map.get(field).and_then(Value::as_str).is_none_or(str::is_empty) {
                    causes.push(Cause::required(&child_path(path, field), "must not be empty"));
                }
            }
        }
        for (key, child) in map {
            if let Some(cs) = property(s, key) {
                check(child, cs, &child_path(path, key), causes);
            }
        }
    }
}

/// `x-kubernetes-list-type`: `set` items and `map` keys are unique.
fn list_type(items: &[Value], s: &Value, path: &str, causes: &mut Vec<Cause>) {
    match s["x-kubernetes-list-type"].as_str() {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    causes.push(duplicate(&format!("{path}[{i}]"), item));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = s["x-kubernetes-list-map-keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let key_of = |item: &Value| -> Value {
                let map: Map<String, Value> = keys
                    .iter()
                    .filter_map(|k| item.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                    .collect();
                Value::Object(map)
            };
            for (i, item) in items.iter().enumerate() {
                let key = key_of(item);
                if items[..i].iter().any(|other| key_of(other) == key) {
                    causes.push(duplicate(&format!("{path}[{i}]"), &key));
                }
            }
        }
        _ => {}
    }
}

fn duplicate(path: &str, value: &Value) -> Cause {
    let shown = match value {
        Value::String(s) => format!("{s:?}"),
        Value::Object(map) => {
            let parts: Vec<String> = map.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("map[string]interface {{}}{{{}}}", parts.join(", "))
        }
        other => other.to_string(),
    };
    Cause {
        reason: "FieldValueDuplicate",
        message: format!("Duplicate value: {shown}"),
        field: path.to_owned(),
    }
}

fn format_ok(format: &str, text: &str) -> bool {
    match format {
        "date-time" => text.parse::<keelson_api::k8s_openapi::jiff::Timestamp>().is_ok(),
        "date" => {
            text.parse::<keelson_api::k8s_openapi::jiff::civil::Date>().is_ok() && text.len() == 10
        }
        "int32" => text.parse::<i32>().is_ok(),
        "int64" => text.parse::<i64>().is_ok(),
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(text).is_ok()
        }
        _ => true,
    }
}

/// The CEL rules (`x-kubernetes-validations`) of every node, with `self` and, where the
/// old object has the same node, `oldSelf`; rules that use `oldSelf` only run then.
fn rules(v: &Value, old: Option<&Value>, s: &Value, path: &str, causes: &mut Vec<Cause>) {
    if v.is_null() {
        return;
    }
    let declared = s["x-kubernetes-validations"].as_array().filter(|r| !r.is_empty());
    // As the rules see them: converted once for all of the node's rules.
    let escaped_self = declared.map(|_| escaped(v, s));
    let escaped_old = declared.and(old).map(|o| escaped(o, s));
    for rule in declared.into_iter().flatten() {
        let Some(source) = rule["rule"].as_str() else { continue };
        let transition = source.contains("oldSelf");
        if transition && old.is_none() {
            continue;
        }
        let field = match rule["fieldPath"].as_str() {
            Some(extra) if !extra.is_empty() => {
                let extra = extra.strip_prefix('.').unwrap_or(extra);
                child_path(path, extra)
            }
            // The root has no path; upstream prints Go's nil one.
            _ if path.is_empty() => "<nil>".to_owned(),
            _ => path.to_owned(),
        };
        let schema_type = if s["x-kubernetes-int-or-string"] == json!(true) {
            "integer-or-string"
        } else {
            s["type"].as_str().unwrap_or("object")
        };
        let Some(escaped_self) = &escaped_self else { break };
        let mut variables: Vec<(&str, &Value)> = vec![("self", escaped_self)];
        if let Some(old) = &escaped_old {
            variables.push(("oldSelf", old));
        }
        let result = crate::cel::compile(source).and_then(|e| e.holds(&variables));
        match result {
            Ok(true) => {}
            Ok(false) => {
                // `messageExpression` first (when it yields a non-empty string), then
                // `message`, then upstream's `failed rule: <rule>`.
                let expressed = rule["messageExpression"]
                    .as_str()
                    .and_then(|m| crate::cel::compile(m).ok())
                    .and_then(|e| e.evaluate(&variables).ok())
                    .and_then(|v| v.as_str().filter(|s| !s.trim().is_empty()).map(str::to_owned));
                let message = match (expressed, rule["message"].as_str()) {
                    (Some(m), _) => m,
                    (None, Some(m)) if !m.is_empty() => m.to_owned(),
                    _ => format!("failed rule: {source}"),
                };
                let mut cause = Cause::invalid(&field, &json!(schema_type), &message);
                if let Some(reason) = rule["reason"].as_str() {
                    cause.reason = match reason {
                        "FieldValueForbidden" => "FieldValueForbidden",
                        "FieldValueRequired" => "FieldValueRequired",
                        "FieldValueDuplicate" => "FieldValueDuplicate",
                        _ => "FieldValueInvalid",
                    };
                }
                causes.push(cause);
            }
            Err(e) => causes.push(Cause::invalid(
                &field,
                &json!(schema_type),
                &format!("rule evaluation error: {e}"),
            )),
        }
    }
    match v {
        Value::Object(map) => {
            for (key, child) in map {
                if let Some(cs) = property(s, key) {
                    let old_child = old.and_then(|o| o.get(key));
                    rules(child, old_child, cs, &child_path(path, key), causes);
                }
            }
        }
        Value::Array(items) if s["items"].is_object() => {
            let keys: Vec<&str> = s["x-kubernetes-list-map-keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let is_map = s["x-kubernetes-list-type"] == "map" && !keys.is_empty();
            for (i, item) in items.iter().enumerate() {
                // Old items correlate by map keys (upstream's ratcheting of map lists).
                let old_item = old.and_then(Value::as_array).and_then(|old| {
                    is_map
                        .then(|| {
                            old.iter().find(|o| keys.iter().all(|k| o.get(*k) == item.get(*k)))
                        })
                        .flatten()
                });
                rules(item, old_item, &s["items"], &format!("{path}[{i}]"), causes);
            }
        }
        _ => {}
    }
}

/// A value as CEL rules see it: the properties of objects under the names upstream
/// escapes them to (`x-y` → `x__dash__y`, `namespace` → `__namespace__`), properties
/// with other characters left out; map keys as they are; `number`s as doubles.
fn escaped(v: &Value, s: &Value) -> Value {
    match v {
        Value::Object(map) if s["properties"].is_object() => map
            .iter()
            .filter_map(|(key, child)| {
                let schema = &s["properties"][key];
                Some((escape_property(key)?, escaped(child, schema)))
            })
            .collect(),
        Value::Object(map) if s["additionalProperties"].is_object() => map
            .iter()
            .map(|(key, child)| (key.clone(), escaped(child, &s["additionalProperties"])))
            .collect(),
        Value::Array(items) if s["items"].is_object() => {
            items.iter().map(|item| escaped(item, &s["items"])).collect()
        }
        // A `number` is a CEL double even when written without a fraction.
        Value::Number(n) if s["type"] == "number" => n.as_f64().map_or(Value::Null, Value::from),
        _ => v.clone(),
    }
}

/// The fields a CRD rule at schema node `s` selects from `self` or `oldSelf` that the
/// schema does not declare — upstream's checker refuses such a rule at CRD creation
/// with `undefined field`. Only plain objects are checked: maps, values that keep
/// unknown fields and anything untyped accept any field, and the root (`root`) and
/// embedded resources always have `apiVersion`, `kind` and `metadata`.
pub fn undefined_fields(rule: &crate::cel::Expression, s: &Value, root: bool) -> Vec<String> {
    let mut undefined = Vec::new();
    for path in rule.selections(&["self", "oldSelf"]) {
        let mut node = s;
        for (i, field) in path.iter().enumerate() {
            let embedded = (root && i == 0) || node["x-kubernetes-embedded-resource"] == true;
            if embedded && matches!(field.as_str(), "apiVersion" | "kind" | "metadata") {
                break;
            }
            if node["x-kubernetes-preserve-unknown-fields"] == true {
                break;
            }
            if let Some(properties) = node["properties"].as_object() {
                match properties
                    .iter()
                    .find(|(name, _)| escape_property(name).as_ref() == Some(field))
                {
                    Some((_, child)) => node = child,
                    None => {
                        if !undefined.contains(field) {
                            undefined.push(field.clone());
                        }
                        break;
                    }
                }
            } else if node["additionalProperties"].is_object() {
                node = &node["additionalProperties"];
            } else {
                break;
            }
        }
    }
    undefined
}

/// Words CEL reserves, which a property is renamed around (`__in__`).
const CEL_RESERVED: [&str; 21] = [
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// The CEL name of a property (upstream's `cel.Escape`), or none for a name CEL rules
/// cannot reach: one outside `[a-zA-Z_.\-/][a-zA-Z0-9_.\-/]*`.
pub(crate) fn escape_property(name: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_.-/".contains(c);
    let first = name.chars().next()?;
    if first.is_ascii_digit() || !name.chars().all(allowed) {
        return None;
    }
    if CEL_RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        let (text, len) = match c {
            '_' if rest.starts_with("__") => ("__underscores__", 2),
            '.' => ("__dot__", 1),
            '-' => ("__dash__", 1),
            '/' => ("__slash__", 1),
            _ => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
                continue;
            }
        };
        out.push_str(text);
        rest = &rest[len..];
    }
    Some(out)
}

/// A schema's `pattern`, compiled once: the same patterns check every object of a CRD.
fn compiled_pattern(pattern: &str) -> Option<std::sync::Arc<regex::Regex>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static COMPILED: OnceLock<Mutex<HashMap<String, Arc<regex::Regex>>>> = OnceLock::new();
    let memo = COMPILED.get_or_init(Mutex::default);
    if let Some(found) = memo.lock().unwrap_or_else(|e| e.into_inner()).get(pattern) {
        return Some(found.clone());
    }
    let compiled = Arc::new(regex::Regex::new(pattern).ok()?);
    let mut memo = memo.lock().unwrap_or_else(|e| e.into_inner());
    if memo.len() >= 1024 {
        memo.clear();
    }
    memo.insert(pattern.to_owned(), compiled.clone());
    Some(compiled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(schema: Value) -> Value {
        json!({ "schema": schema })
    }

    fn messages(causes: &[Cause]) -> Vec<String> {
        causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn values_are_checked_with_upstreams_messages() {
        let v = version(json!({"type": "object", "properties": {"spec": {"type": "object",
            "required": ["name"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
                "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
                "color": {"type": "string", "enum": ["red", "green"]},
                "port": {"x-kubernetes-int-or-string": true},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                "when": {"type": "string", "format": "date-time"}}}}}));
        let object = json!({"spec": {"replicas": 20, "color": "purple", "port": true,
            "tags": ["a", "b", "c"], "when": "yesterday"}});
        assert_eq!(
            messages(&validate(&v, &object, None)),
            [
                "spec.name: Required value",
                "spec.color: Unsupported value: \"purple\": supported values: \"red\", \"green\"",
                "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
                "spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10",
                "spec.tags: Too many: 3: must have at most 2 items",
                "spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\"",
            ]
        );
        let object = json!({"spec": {"name": "ABCDEFG", "replicas": "3"}});
        assert_eq!(
            messages(&validate(&v, &object, None)),
            [
                "spec.name: Too long: may not be more than 5 bytes",
                "spec.name: Invalid value: \"ABCDEFG\": spec.name in body should match '^[a-z]+$'",
                "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
            ]
        );
    }

    #[test]
    fn root_rules_see_the_name_but_not_the_rest_of_the_metadata() {
        let v = version(json!({"type": "object", "x-kubernetes-validations": [
            {"rule": "self.metadata.name.startsWith('w') && !has(self.metadata.labels)"},
            {"rule": "self.kind == 'Widget'"}]}));
        let object = json!({"apiVersion": "x/v1", "kind": "Widget", "metadata": {"name": "web", "labels": {"a": "b"}}});
        assert!(validate(&v, &object, None).is_empty());
        let object = json!({"kind": "Widget", "metadata": {"name": "db"}});
        assert_eq!(
            messages(&validate(&v, &object, None)),
            [
                "<nil>: Invalid value: \"object\": failed rule: self.metadata.name.startsWith('w') && !has(self.metadata.labels)"
            ]
        );
    }

    #[test]
    fn updates_may_keep_values_the_schema_no_longer_accepts() {
        let v = version(json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"replicas": {"type": "integer", "maximum": 5},
                "name": {"type": "string", "maxLength": 3}}}}}));
        let old = json!({"spec": {"replicas": 9, "name": "long"}});
        let kept = json!({"spec": {"replicas": 9, "name": "abc"}});
        assert!(validate(&v, &kept, Some(&old)).is_empty());
        let changed = json!({"spec": {"replicas": 8, "name": "abc"}});
        assert_eq!(
            messages(&validate(&v, &changed, Some(&old))),
            [
                "spec.replicas: Invalid value: 8: spec.replicas in body should be less than or equal to 5"
            ]
        );
    }

    #[test]
    fn cel_rules_see_self_and_old_self() {
        let v = version(json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.min <= self.max", "message": "min must not exceed max"},
                {"rule": "self.max >= oldSelf.max", "messageExpression": "'max may not shrink below ' + string(oldSelf.max)"}],
            "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}}}}}));
        let object = json!({"spec": {"min": 5, "max": 3}});
        assert_eq!(
            messages(&validate(&v, &object, None)),
            ["spec: Invalid value: \"object\": min must not exceed max"]
        );
        let old = json!({"spec": {"min": 1, "max": 4}});
        assert_eq!(
            messages(&validate(&v, &object, Some(&old))),
            [
                "spec: Invalid value: \"object\": min must not exceed max",
                "spec: Invalid value: \"object\": max may not shrink below 4"
            ]
        );
    }

    #[test]
    fn embedded_resources_keep_their_type_and_object_metadata() {
        let v = version(json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"template": {"type": "object", "x-kubernetes-embedded-resource": true,
                "x-kubernetes-preserve-unknown-fields": true}}}}}));
        let object = json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "b"}, "bogus": 1}, "spec": {"any": 1}}}});
        assert_eq!(
            crate::structural::prune_and_default(&v, object),
            json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"any": 1}}}})
        );
        let missing = json!({"spec": {"template": {"metadata": {}}}});
        assert_eq!(
            messages(&validate(&v, &missing, None)),
            [
                "spec.template.apiVersion: Required value: must not be empty",
                "spec.template.kind: Required value: must not be empty"
            ]
        );
    }

    #[test]
    fn rules_use_kubernetes_libraries_and_escaped_names() {
        let rule = |rule: &str| json!({"rule": rule});
        let v = version(json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [
                rule("isIP(self.address) && ip(self.address).family() == 4"),
                rule("cidr(self.network).containsIP(self.address)"),
                rule("quantity(self.memory).isLessThan(quantity('1Gi'))"),
                rule("isURL(self.endpoint) && url(self.endpoint).getScheme() == 'https'"),
                rule("self.tags.isSorted() && self.weights.sum() == 100"),
                rule("self.x__dash__name.startsWith('x') && self.__namespace__ == 'ns'"),
                rule("self.address.find('[0-9]+') == '10'"),
                rule("!format.dns1123Label().validate(self.label).hasValue()"),
                rule("semver(self.version).isGreaterThan(semver('1.2.0'))"),
                rule("self.weights[0] == 60 && self.weights.max() < 100"),
                rule("self.ratio * 2.0 == 2.0")],
            "properties": {
                "address": {"type": "string"}, "network": {"type": "string"},
                "memory": {"type": "string"}, "endpoint": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "weights": {"type": "array", "items": {"type": "integer"}},
                "x-name": {"type": "string"}, "namespace": {"type": "string"},
                "label": {"type": "string"}, "version": {"type": "string"},
                "ratio": {"type": "number"}}}}}));
        let good = json!({"spec": {"address": "10.0.0.1", "network": "10.0.0.0/8",
            "memory": "512Mi", "endpoint": "https://example.com/x", "tags": ["a", "b"],
            "weights": [60, 40], "x-name": "xy", "namespace": "ns", "label": "web",
            "version": "1.3.0", "ratio": 1}});
        assert_eq!(messages(&validate(&v, &good, None)), Vec::<String>::new());
        let bad = json!({"spec": {"address": "10.0.0.1", "network": "192.168.0.0/16",
            "memory": "2Gi", "endpoint": "http://example.com", "tags": ["b", "a"],
            "weights": [60, 40], "x-name": "xy", "namespace": "ns", "label": "Web_1",
            "version": "1.1.0", "ratio": 1.0}});
        let failed = messages(&validate(&v, &bad, None));
        for expected in [
            "failed rule: cidr(self.network).containsIP(self.address)",
            "failed rule: quantity(self.memory).isLessThan(quantity('1Gi'))",
            "failed rule: isURL(self.endpoint) && url(self.endpoint).getScheme() == 'https'",
            "failed rule: self.tags.isSorted() && self.weights.sum() == 100",
            "failed rule: !format.dns1123Label().validate(self.label).hasValue()",
            "failed rule: semver(self.version).isGreaterThan(semver('1.2.0'))",
        ] {
            assert!(failed.iter().any(|m| m.ends_with(expected)), "{expected} in {failed:?}");
        }
        assert_eq!(failed.len(), 6, "{failed:?}");
    }

    #[test]
    fn property_names_escape_as_upstreams() {
        for (name, escaped) in [
            ("x-name", Some("x__dash__name")),
            ("a.b/c", Some("a__dot__b__slash__c")),
            ("a__b", Some("a__underscores__b")),
            ("a___b", Some("a__underscores___b")),
            ("namespace", Some("__namespace__")),
            ("_ok", Some("_ok")),
            ("1st", None),
            ("a b", None),
        ] {
            assert_eq!(escape_property(name).as_deref(), escaped, "{name}");
        }
    }
}

//! Resource quantities in objects (`spec.hard`, container `resources`, a claim's
//! `storage`, a LimitRange's bounds, …): upstream's `Quantity` refuses to decode text
//! that is not one, so the body does not fit its type (400, with upstream's message).
//! k8s-openapi's `Quantity` is a plain string; this module finds where a kind holds
//! quantities — once per kind, from its type's JSON schema — and checks each.
//!
//! Must never let through text that is not shaped like a quantity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use keelson_api::ResourceInfo;
use keelson_api::schemars::SchemaGenerator;
use keelson_api::schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

/// Upstream's `resource.ErrFormatWrong`.
pub const FORMAT_WRONG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// One step from a value to a quantity inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Field(String),
    /// Every item of a list, or every value of a map.
    Each,
}

type Paths = Arc<Vec<Vec<Step>>>;

/// The first value of a `info` object that is not a quantity: its field path
/// (`spec.hard.cpu`, `spec.containers[0].resources.limits.memory`).
pub fn first_invalid(info: &ResourceInfo, object: &Value) -> Option<String> {
    if info.custom.is_some() {
        return None;
    }
    let paths = paths_of(info);
    for path in paths.iter() {
        let mut found = None;
        walk(object, path, &mut String::new(), &mut found);
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Whether `text` has a quantity's form: a signed decimal number and a known suffix
/// (upstream's `ParseQuantity` grammar; magnitude is not checked here).
pub fn well_formed(text: &str) -> bool {
    let rest = text.strip_prefix(['+', '-']).unwrap_or(text);
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return false;
    }
    match suffix {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => true,
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => true,
        other => other.strip_prefix(['e', 'E']).is_some_and(|exponent| {
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        }),
    }
}

fn is_quantity(value: &Value) -> bool {
    match value {
        Value::String(text) => well_formed(text),
        // Upstream takes a bare number for a quantity as well.
        Value::Number(_) | Value::Null => true,
        _ => false,
    }
}

fn walk(value: &Value, path: &[Step], at: &mut String, found: &mut Option<String>) {
    if found.is_some() {
        return;
    }
    let Some((step, rest)) = path.split_first() else {
        if !is_quantity(value) {
            *found = Some(at.clone());
        }
        return;
    };
    let len = at.len();
    match (step, value) {
        (Step::Field(name), Value::Object(map)) => {
            if let Some(child) = map.get(name) {
                if !at.is_empty() {
                    at.push('.');
                }
                at.push_str(name);
                walk(child, rest, at, found);
            }
        }
        (Step::Each, Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                at.push_str(&format!("[{i}]"));
                walk(item, rest, at, found);
                at.truncate(len);
            }
        }
        (Step::Each, Value::Object(map)) => {
            for (key, item) in map {
                at.push('.');
                at.push_str(key);
                walk(item, rest, at, found);
                at.truncate(len);
            }
        }
        _ => {}
    }
    at.truncate(len);
}

/// Where objects of `info`'s kind hold quantities, computed on first use.
fn paths_of(info: &ResourceInfo) -> Paths {
    static CACHE: OnceLock<Mutex<HashMap<String, Paths>>> = OnceLock::new();
    let key = format!("{}/{}/{}", info.group, info.version, info.kind);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(paths) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return paths.clone();
    }
    let mut generator = SchemaGenerator::new(SchemaSettings::openapi3());
    let root = (info.typed.schema)(&mut generator);
    let definitions = generator.take_definitions(true);
    let mut paths = Vec::new();
    collect(root.as_value(), &definitions, &mut Vec::new(), &mut Vec::new(), &mut paths);
    let paths = Arc::new(paths);
    cache.lock().unwrap_or_else(|e| e.into_inner()).insert(key, paths.clone());
    paths
}

fn collect(
    schema: &Value,
    definitions: &Map<String, Value>,
    path: &mut Vec<Step>,
    visiting: &mut Vec<String>,
    out: &mut Vec<Vec<Step>>,
) {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or("");
        if name == QUANTITY {
            out.push(path.clone());
            return;
        }
        // Recursive types (JSONSchemaProps) hold no quantities: stop at a repeat.
        if visiting.iter().any(|v| v == name) || visiting.len() > 24 {
            return;
        }
        if let Some(definition) = definitions.get(name) {
            visiting.push(name.to_owned());
            collect(definition, definitions, path, visiting, out);
            visiting.pop();
        }
        return;
    }
    for combined in ["allOf", "anyOf", "oneOf"] {
        for part in schema.get(combined).and_then(Value::as_array).into_iter().flatten() {
            collect(part, definitions, path, visiting, out);
        }
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            path.push(Step::Field(name.clone()));
            collect(property, definitions, path, visiting, out);
            path.pop();
        }
    }
    for nested in ["items", "additionalProperties"] {
        if let Some(inner) = schema.get(nested).filter(|s| s.is_object()) {
            path.push(Step::Each);
            collect(inner, definitions, path, visiting, out);
            path.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(plural: &str) -> &'static ResourceInfo {
        let registry = keelson_api::Registry::builtin();
        registry.resources().find(|r| r.plural == plural).expect("registered")
    }

    #[test]
    fn quantities_have_upstreams_form() {
        for good in ["1", "500m", "1.5Gi", "+2", "-1", ".5", "5.", "1e3", "1E-3", "2Ki"] {
            assert!(well_formed(good), "{good}");
        }
        for bad in ["é", "0x10", "1_000", "", "+", ".", "1..2", "1 Gi", "1e", "1Gib", "1e+"] {
            assert!(!well_formed(bad), "{bad}");
        }
    }

    #[test]
    fn invalid_quantities_are_found_where_each_kind_holds_them() {
        let quota = json!({"spec": {"hard": {"cpu": "1", "memory": "é"}}});
        assert_eq!(
            first_invalid(info("resourcequotas"), &quota).as_deref(),
            Some("spec.hard.memory")
        );
        let ranges = json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "0x10"}}]}});
        assert_eq!(
            first_invalid(info("limitranges"), &ranges).as_deref(),
            Some("spec.limits[0].max.cpu")
        );
        let claim = json!({"spec": {"resources": {"requests": {"storage": "1_000"}}}});
        assert_eq!(
            first_invalid(info("persistentvolumeclaims"), &claim).as_deref(),
            Some("spec.resources.requests.storage")
        );
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "1"}}},
            {"name": "b", "resources": {"requests": {"memory": "1 Gi"}}}
        ]}});
        assert_eq!(
            first_invalid(info("pods"), &pod).as_deref(),
            Some("spec.containers[1].resources.requests.memory")
        );
        let template = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "x"}}}
        ]}}}});
        assert_eq!(
            first_invalid(info("deployments"), &template).as_deref(),
            Some("spec.template.spec.containers[0].resources.limits.cpu")
        );
        assert_eq!(first_invalid(info("pods"), &json!({"spec": {"containers": []}})), None);
    }
}

//! Tables of custom resources (upstream's `apiextensions-apiserver/pkg/registry/
//! customresource/tableconvertor`): NAME, then the version's `additionalPrinterColumns`
//! (or AGE when it declares none), each cell read with a simple JSONPath —
//! `.spec.replicas`, `.spec.items[0].name`, `.status.conditions[?(@.type=="Ready")].status`.
//!
//! A path that finds nothing prints as nothing (`<none>` in kubectl), never as an error.

use serde_json::{Value, json};

use super::cells::{self, Now};

/// The column definitions of a custom resource's table.
pub(super) fn columns(version: &Value) -> Vec<Value> {
    let mut out = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    })];
    for c in printer_columns(version) {
        out.push(json!({
            "name": c["name"],
            "type": c["type"],
            "format": c["format"].as_str().unwrap_or(""),
            "description": c["description"].as_str().unwrap_or(""),
            "priority": c["priority"].as_i64().unwrap_or(0),
        }));
    }
    out
}

/// One row's cells.
pub(super) fn cells(version: &Value, object: &Value, now: Now) -> Vec<Value> {
    let mut out = vec![cells::name(object)];
    for c in printer_columns(version) {
        let found = c["jsonPath"].as_str().and_then(|p| lookup(object, p));
        let cell = match (found, c["type"].as_str()) {
            (None, _) => Value::Null,
            (Some(v), Some("date")) => match cells::timestamp(&v) {
                Some(t) => json!(now.ago(t)),
                None => Value::Null,
            },
            (Some(Value::String(s)), Some("integer" | "number")) => {
                serde_json::from_str(&s).unwrap_or(Value::Null)
            }
            (Some(v), Some("string")) if !v.is_string() => json!(plain(&v)),
            (Some(v), _) => v,
        };
        out.push(cell);
    }
    out
}

/// The version's printer columns, or upstream's default AGE.
fn printer_columns(version: &Value) -> Vec<Value> {
    match version["additionalPrinterColumns"].as_array() {
        Some(columns) if !columns.is_empty() => columns.clone(),
        _ => vec![json!({
            "name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
            "description": "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
        })],
    }
}

/// A value as JSONPath's template prints it.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The first value `path` finds in `object` (with `{…}` around it or not).
pub fn lookup(object: &Value, path: &str) -> Option<Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut current: Vec<&Value> = vec![object];
    let mut rest = path.strip_prefix('$').unwrap_or(path);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let field = &r[..end];
            rest = &r[end..];
            if field.is_empty() {
                continue;
            }
            current = current.into_iter().filter_map(|v| v.get(field)).collect();
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = find_close(r)?;
            let inside = &r[..end];
            rest = &r[end + 1..];
            current = select(current, inside)?;
        } else {
            return None;
        }
    }
    current.into_iter().next().cloned()
}

/// The index of the `]` closing a bracket, outside quotes.
fn find_close(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ']') => return Some(i),
            _ => {}
        }
    }
    None
}

fn select<'a>(current: Vec<&'a Value>, inside: &str) -> Option<Vec<&'a Value>> {
    let inside = inside.trim();
    if inside == "*" {
        return Some(current.into_iter().flat_map(children).collect());
    }
    if let Ok(i) = inside.parse::<i64>() {
        return Some(
            current
                .into_iter()
                .filter_map(|v| {
                    let items = v.as_array()?;
                    let i = if i < 0 { items.len() as i64 + i } else { i };
                    items.get(usize::try_from(i).ok()?)
                })
                .collect(),
        );
    }
    if let Some(filter) = inside.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        let (left, op, right) = ["==", "!="]
            .iter()
            .find_map(|op| filter.split_once(op).map(|(l, r)| (l.trim(), *op, r.trim())))?;
        let field = left.strip_prefix('@')?;
        let wanted: Value = match right.trim_matches(['"', '\'']) {
            unquoted if right.starts_with(['"', '\'']) => json!(unquoted),
            other => serde_json::from_str(other).unwrap_or(json!(other)),
        };
        return Some(
            current
                .into_iter()
                .flat_map(children)
                .filter(|item| {
                    let found = lookup(item, field);
                    (found.as_ref() == Some(&wanted)) == (op == "==")
                })
                .collect(),
        );
    }
    let key = inside.trim_matches(['"', '\'']);
    Some(current.into_iter().filter_map(|v| v.get(key)).collect())
}

fn children(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        Value::Object(map) => map.values().collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::lookup;
    use serde_json::json;

    #[test]
    fn simple_paths_and_filters_find_values() {
        let o = json!({"spec": {"replicas": 3, "items": [{"name": "a"}, {"name": "b"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}]}});
        assert_eq!(lookup(&o, ".spec.replicas"), Some(json!(3)));
        assert_eq!(lookup(&o, ".spec.items[1].name"), Some(json!("b")));
        assert_eq!(lookup(&o, ".spec.items[-1].name"), Some(json!("b")));
        assert_eq!(
            lookup(&o, r#".status.conditions[?(@.type=="Synced")].status"#),
            Some(json!("False"))
        );
        assert_eq!(lookup(&o, "{.spec.missing}"), None);
    }
}

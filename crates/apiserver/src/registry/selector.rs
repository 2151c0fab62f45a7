//! Label selectors (every operator of `labels.Parse`) and field selectors (`=`, `==`,
//! `!=` on the fields a resource supports).

use serde_json::Value;

use crate::status::{ApiError, ApiResult};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector`; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    pub fn parse(text: &str) -> ApiResult<Self> {
        let mut requirements = Vec::new();
        for clause in split_top_level(text) {
            let clause = clause.trim();
            if clause.is_empty() {
                continue;
            }
            requirements.push(parse_clause(clause).map_err(|why| {
                ApiError::bad_request(format!("unable to parse requirement: {why}: {clause:?}"))
            })?);
        }
        Ok(LabelSelector(requirements))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|v| !vs.iter().any(|x| x == v)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_clause(clause: &str) -> Result<Requirement, &'static str> {
    if let Some(key) = clause.strip_prefix('!') {
        return Ok(Requirement::NotExists(label_key(key.trim())?));
    }
    for (op, make) in [
        ("!=", Requirement::NotEquals as fn(String, String) -> Requirement),
        ("==", Requirement::Equals),
        ("=", Requirement::Equals),
    ] {
        if let Some((key, value)) = clause.split_once(op) {
            return Ok(make(label_key(key.trim())?, value.trim().to_owned()));
        }
    }
    let words: Vec<&str> = clause.splitn(2, char::is_whitespace).collect();
    match words.as_slice() {
        [key] => Ok(Requirement::Exists(label_key(key)?)),
        [key, rest] => {
            let rest = rest.trim();
            let (op, values) = if let Some(v) = rest.strip_prefix("notin") {
                ("notin", v)
            } else if let Some(v) = rest.strip_prefix("in") {
                ("in", v)
            } else {
                return Err("unknown operator");
            };
            let values = values.trim();
            let inner = values
                .strip_prefix('(')
                .and_then(|v| v.strip_suffix(')'))
                .ok_or("values must be in parentheses")?;
            let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
            let key = label_key(key)?;
            Ok(if op == "in" {
                Requirement::In(key, values)
            } else {
                Requirement::NotIn(key, values)
            })
        }
        _ => Err("empty requirement"),
    }
}

fn label_key(key: &str) -> Result<String, &'static str> {
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err("invalid label key");
    }
    Ok(key.to_owned())
}

/// A `metav1.LabelSelector` object (or, with `plain_map`, a bare label map as replication
/// controllers and services use) written as selector text: `app=web,tier in (a,b)`.
pub fn selector_string(selector: &Value, plain_map: bool) -> String {
    let labels = if plain_map { selector } else { &selector["matchLabels"] };
    let mut terms: Vec<String> = labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    for expression in selector["matchExpressions"].as_array().into_iter().flatten() {
        let key = expression["key"].as_str().unwrap_or("");
        let values: Vec<&str> = expression["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        terms.push(match expression["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_owned(),
            _ => format!("!{key}"),
        });
    }
    terms.join(",")
}

/// A field a `fieldSelector` may name, and how upstream's field set
/// (`ToSelectableFields`, `GetAttrs`) reads its value: always a string, the zero value's
/// when the field is unset (`fmt.Sprint(false)`, `strconv.Itoa(0)`), so `=false` and `=0`
/// select objects that leave the field out.
#[derive(Clone, Copy, Debug)]
pub struct SelectableField {
    pub name: &'static str,
    read: Read,
}

#[derive(Clone, Copy, Debug)]
enum Read {
    /// The value at the name's path; `unset` when there is none.
    Path { unset: &'static str },
    /// A value computed from the object (a field named otherwise, a fallback).
    With(fn(&Value) -> String),
}

impl SelectableField {
    /// A string field (or a custom resource's selectable field): "" when unset.
    pub const fn string(name: &'static str) -> Self {
        SelectableField { name, read: Read::Path { unset: "" } }
    }

    /// A Go `bool` field: "false" when unset.
    pub const fn boolean(name: &'static str) -> Self {
        SelectableField { name, read: Read::Path { unset: "false" } }
    }

    /// A Go integer field: "0" when unset.
    pub const fn integer(name: &'static str) -> Self {
        SelectableField { name, read: Read::Path { unset: "0" } }
    }

    /// A field whose value upstream computes from the object.
    pub const fn with(name: &'static str, read: fn(&Value) -> String) -> Self {
        SelectableField { name, read: Read::With(read) }
    }

    /// The field's value in `object`, as upstream's field set holds it.
    pub fn value(&self, object: &Value) -> String {
        match self.read {
            Read::Path { unset } => scalar_at(object, self.name).unwrap_or_else(|| unset.into()),
            Read::With(read) => read(object),
        }
    }
}

/// The scalar at a dotted path, as a selector compares it: strings as they are, booleans
/// and numbers printed; `None` when unset or not a scalar.
pub fn scalar_at(object: &Value, path: &str) -> Option<String> {
    match object.pointer(&format!("/{}", path.replace('.', "/"))) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// What every resource selects on.
const OBJECT_META: [SelectableField; 2] =
    [SelectableField::string("metadata.name"), SelectableField::string("metadata.namespace")];

/// A parsed `fieldSelector`: `field=value`, `field==value`, `field!=value`, joined by commas.
#[derive(Clone, Debug, Default)]
pub struct FieldSelector(Vec<(SelectableField, bool, String)>);

impl FieldSelector {
    /// Parses `text`, accepting only the fields in `supported` (plus metadata.name and
    /// metadata.namespace, which every resource supports).
    pub fn parse(text: &str, kind: &str, supported: &[SelectableField]) -> ApiResult<Self> {
        let mut terms = Vec::new();
        for clause in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = clause.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = clause.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = clause.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{text}'; can't understand '{clause}'"
                )));
            };
            let field = field.trim();
            let Some(known) = OBJECT_META.iter().chain(supported).find(|f| f.name == field) else {
                return Err(ApiError::bad_request(format!(
                    "\"{field}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"{}",
                    supported.iter().map(|f| format!(", \"{}\"", f.name)).collect::<String>()
                ))
                .for_kind(kind));
            };
            terms.push((*known, equal, value.trim().to_owned()));
        }
        Ok(FieldSelector(terms))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| (field.value(object) == *value) == *equal)
    }
}

trait ForKind {
    fn for_kind(self, kind: &str) -> Self;
}

impl ForKind for ApiError {
    fn for_kind(mut self, kind: &str) -> Self {
        self.message = format!("{} (for {kind})", self.message);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "labels": labels}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn every_label_operator() {
        let p = pod(json!({"app": "web", "tier": "front"}));
        for (selector, expected) in [
            ("app=web", true),
            ("app==web,tier=front", true),
            ("app!=web", false),
            ("app in (web, api)", true),
            ("tier notin (front)", false),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("missing notin (x)", true),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(selector).map(|s| s.matches(&p)).ok(),
                Some(expected),
                "{selector}"
            );
        }
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("app foo (x)").is_err());
    }

    #[test]
    fn field_selectors_on_supported_fields_only() {
        let p = pod(json!({}));
        let supported =
            [SelectableField::string("spec.nodeName"), SelectableField::string("status.phase")];
        let s = FieldSelector::parse("spec.nodeName=n1,status.phase!=Pending", "Pod", &supported);
        assert!(s.is_ok_and(|s| s.matches(&p)));
        assert!(FieldSelector::parse("spec.bogus=x", "Pod", &supported).is_err());
    }

    /// Upstream's field sets hold Go's zero value for an unset field: `fmt.Sprint(false)`,
    /// `strconv.Itoa(0)`, "".
    #[test]
    fn unset_fields_select_as_their_zero_value() {
        let supported = [
            SelectableField::boolean("spec.unschedulable"),
            SelectableField::integer("status.replicas"),
            SelectableField::string("spec.nodeName"),
        ];
        let unset = json!({ "metadata": { "name": "n" }, "spec": {} });
        let set = json!({ "metadata": { "name": "n" }, "spec": { "unschedulable": true, "nodeName": "a" }, "status": { "replicas": 2 } });
        for (selector, on_unset, on_set) in [
            ("spec.unschedulable=false", true, false),
            ("spec.unschedulable!=false", false, true),
            ("spec.unschedulable=true", false, true),
            ("status.replicas=0", true, false),
            ("status.replicas=2", false, true),
            ("spec.nodeName=", true, false),
            ("spec.nodeName!=", false, true),
        ] {
            let s = FieldSelector::parse(selector, "Node", &supported).expect("parses");
            assert_eq!((s.matches(&unset), s.matches(&set)), (on_unset, on_set), "{selector}");
        }
    }
}

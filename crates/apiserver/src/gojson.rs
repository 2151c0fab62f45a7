//! JSON bodies as upstream's Go encoder writes them: the fields of the types the API
//! server answers with in Go struct order ([`Order`]), one newline after each body (what
//! `json.Encoder.Encode` adds), and, for a client that asks for it, indented with two
//! spaces and no newline (`json.MarshalIndent`, [`indent`]).
//!
//! Objects are ordered only at the top: `kind`, `apiVersion`, `metadata`, then their
//! other fields in key order, which is Go's order for the `spec` and `status` of most
//! types. Nested fields keep key order, so the stored-bytes fast path (design note 0004)
//! and decoded objects agree. A leaf module: it must never order custom resources,
//! which upstream encodes as Go maps, in key order.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// The order of an object's fields: these first, each with the order of its value (of
/// each item, for a list), then the others in key order.
pub struct Order(pub &'static [(&'static str, &'static Order)]);

/// Key order, Go's for maps (and so for custom resources).
pub const KEYS: Order = Order(&[]);

/// A built-in object, its `TypeMeta` and `ObjectMeta` first.
pub const OBJECT: Order = Order(&[("kind", &KEYS), ("apiVersion", &KEYS), ("metadata", &KEYS)]);

/// `ListMeta`.
pub const LIST_META: Order =
    Order(&[("selfLink", &KEYS), ("resourceVersion", &KEYS), ("continue", &KEYS)]);

/// A built-in list: its items as objects.
pub const LIST: Order =
    Order(&[("kind", &KEYS), ("apiVersion", &KEYS), ("metadata", &LIST_META), ("items", &OBJECT)]);

const CAUSE: Order = Order(&[("reason", &KEYS), ("message", &KEYS), ("field", &KEYS)]);
const DETAILS: Order = Order(&[
    ("name", &KEYS),
    ("group", &KEYS),
    ("kind", &KEYS),
    ("uid", &KEYS),
    ("causes", &CAUSE),
]);

/// `metav1.Status`.
pub const STATUS: Order = Order(&[
    ("kind", &KEYS),
    ("apiVersion", &KEYS),
    ("metadata", &LIST_META),
    ("status", &KEYS),
    ("message", &KEYS),
    ("reason", &KEYS),
    ("details", &DETAILS),
    ("code", &KEYS),
]);

const GROUP_VERSION: Order = Order(&[("groupVersion", &KEYS), ("version", &KEYS)]);
const API_GROUP: Order = Order(&[
    ("kind", &KEYS),
    ("apiVersion", &KEYS),
    ("name", &KEYS),
    ("versions", &GROUP_VERSION),
    ("preferredVersion", &GROUP_VERSION),
]);
const API_RESOURCE: Order = Order(&[
    ("name", &KEYS),
    ("singularName", &KEYS),
    ("namespaced", &KEYS),
    ("group", &KEYS),
    ("version", &KEYS),
    ("kind", &KEYS),
    ("verbs", &KEYS),
    ("shortNames", &KEYS),
    ("categories", &KEYS),
    ("storageVersionHash", &KEYS),
]);
const GVK: Order = Order(&[("group", &KEYS), ("version", &KEYS), ("kind", &KEYS)]);
const SUBRESOURCE_DISCOVERY: Order = Order(&[
    ("subresource", &KEYS),
    ("responseKind", &GVK),
    ("acceptedTypes", &GVK),
    ("verbs", &KEYS),
]);
const RESOURCE_DISCOVERY: Order = Order(&[
    ("resource", &KEYS),
    ("responseKind", &GVK),
    ("scope", &KEYS),
    ("singularResource", &KEYS),
    ("verbs", &KEYS),
    ("shortNames", &KEYS),
    ("categories", &KEYS),
    ("subresources", &SUBRESOURCE_DISCOVERY),
]);
const VERSION_DISCOVERY: Order =
    Order(&[("version", &KEYS), ("resources", &RESOURCE_DISCOVERY), ("freshness", &KEYS)]);
const GROUP_DISCOVERY: Order = Order(&[
    ("kind", &KEYS),
    ("apiVersion", &KEYS),
    ("metadata", &KEYS),
    ("versions", &VERSION_DISCOVERY),
]);

/// The discovery documents, by kind.
const DISCOVERY: &[(&str, Order)] = &[
    ("APIVersions", Order(&[("kind", &KEYS), ("versions", &KEYS)])),
    ("APIGroupList", Order(&[("kind", &KEYS), ("apiVersion", &KEYS), ("groups", &API_GROUP)])),
    ("APIGroup", API_GROUP),
    (
        "APIResourceList",
        Order(&[
            ("kind", &KEYS),
            ("apiVersion", &KEYS),
            ("groupVersion", &KEYS),
            ("resources", &API_RESOURCE),
        ]),
    ),
    (
        "APIGroupDiscoveryList",
        Order(&[
            ("kind", &KEYS),
            ("apiVersion", &KEYS),
            ("metadata", &KEYS),
            ("items", &GROUP_DISCOVERY),
        ]),
    ),
];

/// The order of a built-in value by its kind: a Status, a discovery document, a list
/// (it has `items`) or any other object.
pub fn order_of(value: &Value) -> &'static Order {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind == "Status" {
        return &STATUS;
    }
    if let Some((_, order)) = DISCOVERY.iter().find(|(k, _)| *k == kind) {
        return order;
    }
    if value.get("items").is_some_and(Value::is_array) { &LIST } else { &OBJECT }
}

/// `value` in `order` on one line, with a newline after it (Go's `Encoder.Encode`).
pub fn to_vec(value: &Value, order: &'static Order) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write(&mut out, value, order);
    out.push(b'\n');
    out
}

/// Appends `value` in `order` to `out`, without a newline.
pub fn write(out: &mut Vec<u8>, value: &Value, order: &'static Order) {
    // Writing a Value into a Vec cannot fail: its keys are strings.
    let _ = serde_json::to_writer(out, &Ordered { value, order });
}

/// A value serialized in an [`Order`].
struct Ordered<'a> {
    value: &'a Value,
    order: &'static Order,
}

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.order.0.is_empty() {
            return self.value.serialize(serializer);
        }
        match self.value {
            Value::Object(map) => {
                let mut out = serializer.serialize_map(Some(map.len()))?;
                for (key, order) in self.order.0 {
                    if let Some(value) = map.get(*key) {
                        out.serialize_entry(key, &Ordered { value, order })?;
                    }
                }
                for (key, value) in map {
                    if !self.order.0.iter().any(|(k, _)| k == key) {
                        out.serialize_entry(key, value)?;
                    }
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = serializer.serialize_seq(Some(items.len()))?;
                for value in items {
                    out.serialize_element(&Ordered { value, order: self.order })?;
                }
                out.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// Whether a request asks for indented JSON, as upstream decides it: `?pretty=` parsed
/// as Go's `strconv.ParseBool` (an unparsable value is false), else a `pretty=1` media
/// type parameter in `Accept`, else a User-Agent of curl, Wget or a browser.
pub fn wants_pretty(query_pretty: Option<&str>, accept: &str, user_agent: &str) -> bool {
    if let Some(value) = query_pretty.filter(|v| !v.is_empty()) {
        return matches!(value, "1" | "t" | "T" | "TRUE" | "true" | "True");
    }
    let accepts_pretty = accept
        .split(',')
        .any(|clause| clause.split(';').skip(1).any(|p| p.trim().replace(' ', "") == "pretty=1"));
    accepts_pretty
        || ["curl", "Wget", "Mozilla/5.0"].iter().any(|agent| user_agent.starts_with(agent))
}

/// Compact JSON (with or without a trailing newline) indented as Go's `json.Indent`
/// with two spaces: a newline and indentation before each element and closing bracket,
/// `": "` after keys, empty objects and arrays kept as `{}` and `[]`, no newline at the
/// end. Keys keep their order; strings are copied as they are.
pub fn indent(compact: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(compact.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    // Just after `{` or `[`: the newline is written before the next token, unless it
    // closes the empty value.
    let mut opened = false;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b' ', depth * 2));
    };
    for &byte in compact {
        if in_string {
            out.push(byte);
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        if byte.is_ascii_whitespace() {
            continue;
        }
        if opened {
            opened = false;
            if byte != b'}' && byte != b']' {
                newline(&mut out, depth);
            } else {
                depth = depth.saturating_sub(1);
                out.push(byte);
                continue;
            }
        }
        match byte {
            b'"' => {
                in_string = true;
                out.push(byte);
            }
            b'{' | b'[' => {
                out.push(byte);
                depth += 1;
                opened = true;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(byte);
            }
            b',' => {
                out.push(byte);
                newline(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            _ => out.push(byte),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_status_is_in_go_struct_order() {
        let status = json!({"apiVersion": "v1", "code": 404, "details": {"kind": "pods", "name": "x"},
            "kind": "Status", "message": "m", "metadata": {}, "reason": "NotFound", "status": "Failure"});
        assert_eq!(
            String::from_utf8(to_vec(&status, order_of(&status))).unwrap(),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"m\",\"reason\":\"NotFound\",\"details\":{\"name\":\"x\",\"kind\":\"pods\"},\"code\":404}\n"
        );
    }

    #[test]
    fn objects_start_with_their_type_and_metadata() {
        let cm = json!({"apiVersion": "v1", "data": {"b": "1", "a": "2"}, "kind": "ConfigMap", "metadata": {"name": "x"}});
        assert_eq!(
            String::from_utf8(to_vec(&cm, order_of(&cm))).unwrap(),
            "{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"x\"},\"data\":{\"a\":\"2\",\"b\":\"1\"}}\n"
        );
    }

    #[test]
    fn indentation_is_go_marshal_indent() {
        let compact =
            br#"{"kind":"List","items":[],"metadata":{},"a":[1,{"b":"x,\"y\":{"}],"c":true}
"#;
        let expected = "{\n  \"kind\": \"List\",\n  \"items\": [],\n  \"metadata\": {},\n  \"a\": [\n    1,\n    {\n      \"b\": \"x,\\\"y\\\":{\"\n    }\n  ],\n  \"c\": true\n}";
        assert_eq!(String::from_utf8(indent(compact)).unwrap(), expected);
    }

    #[test]
    fn pretty_is_asked_for_as_upstream_reads_it() {
        assert!(wants_pretty(Some("true"), "", ""));
        assert!(!wants_pretty(Some("false"), "", "curl/8.0"));
        assert!(!wants_pretty(Some("yes"), "", ""));
        assert!(wants_pretty(None, "application/json;pretty=1", "kubectl"));
        assert!(wants_pretty(None, "", "curl/8.5.0"));
        assert!(!wants_pretty(None, "application/json", "kubectl/v1.34.0"));
    }
}

//! Cell helpers shared by the printers: reading fields of a JSON object the way upstream's
//! printers read the internal Go types (a missing field is its zero value), and upstream's
//! formatting helpers (`translateTimestampSince`, `labels.FormatLabels`,
//! `metav1.FormatLabelSelector`, `layoutContainerCells`, `listWithMoreString`).
//!
//! Nothing here may panic on any JSON value.

use keelson_api::k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::human_duration;
use crate::meta::{format_time, metadata};

/// The time rows are printed at, so that ages and durations are computed against one clock
/// reading per response (and against a fixed one in tests).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Now(Timestamp);

impl Now {
    pub(super) fn current() -> Now {
        Now(crate::meta::now_timestamp())
    }

    /// A fixed clock reading, for tests.
    #[cfg(test)]
    pub(super) fn at(rfc3339: &str) -> Now {
        Now(rfc3339.parse().unwrap_or_else(|e| panic!("{rfc3339}: {e}")))
    }

    /// Upstream's `translateTimestampSince`: how long ago `time` was, `<unknown>` if unset.
    pub(super) fn since(self, time: &Value) -> String {
        timestamp(time).map_or_else(|| "<unknown>".into(), |t| self.ago(t))
    }

    /// How long ago `time` was.
    pub(super) fn ago(self, time: Timestamp) -> String {
        between(time, self.0)
    }

    /// The object's age, from its creation timestamp.
    pub(super) fn age(self, object: &Value) -> Value {
        json!(self.since(metadata(object).get("creationTimestamp").unwrap_or(&Value::Null)))
    }
}

/// A `metav1.Time` or `MicroTime`; `None` when unset, unparsable or Go's zero time.
pub(super) fn timestamp(time: &Value) -> Option<Timestamp> {
    let t: Timestamp = time.as_str()?.parse().ok()?;
    (t.as_second() != ZERO_TIME).then_some(t)
}

/// Go's zero `time.Time`, `0001-01-01T00:00:00Z`, in Unix seconds.
const ZERO_TIME: i64 = -62_135_596_800;

/// The elapsed time between two timestamps, as upstream prints a job's duration.
pub(super) fn between(start: Timestamp, end: Timestamp) -> String {
    human_duration(end.duration_since(start).as_secs())
}

/// The object's name cell.
pub(super) fn name(object: &Value) -> Value {
    json!(metadata(object).get("name").and_then(Value::as_str).unwrap_or(""))
}

/// The creation time as the default table prints it: RFC 3339 in UTC, Go's zero time if
/// unset.
pub(super) fn created_at(object: &Value) -> String {
    metadata(object)
        .get("creationTimestamp")
        .and_then(timestamp)
        .map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), format_time)
}

/// Whether the object is being deleted.
pub(super) fn deleting(object: &Value) -> bool {
    metadata(object).get("deletionTimestamp").is_some_and(|t| !t.is_null())
}

/// One annotation of the object.
pub(super) fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    metadata(object).get("annotations")?.get(key)?.as_str()
}

/// A string field, `""` when missing (Go's zero string).
pub(super) fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// A string field, or `default` when missing or empty.
pub(super) fn text_or(v: &Value, default: &str) -> String {
    v.as_str().filter(|s| !s.is_empty()).unwrap_or(default).to_owned()
}

/// An integer field, 0 when missing.
pub(super) fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// A boolean field, `default` when missing (a defaulted `*bool`).
pub(super) fn flag(v: &Value, default: bool) -> bool {
    v.as_bool().unwrap_or(default)
}

/// Upstream's `printBoolPtr`: `True`, `False` or `<unset>`.
pub(super) fn bool_ptr(v: &Value) -> &'static str {
    match v.as_bool() {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    }
}

/// The number of entries of a list or map field.
pub(super) fn len(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    }
}

/// The items of a list field; none when it is missing.
pub(super) fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// The strings of a list field.
pub(super) fn strings(v: &Value) -> impl Iterator<Item = &str> {
    items(v).filter_map(Value::as_str)
}

/// A `resource.Quantity` as Go's `Quantity.String()` prints a stored one; `0` when unset.
pub(super) fn quantity(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "0".into(),
    }
}

/// An `IntOrString` as its `String()`.
pub(super) fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "0".into(),
    }
}

/// The first condition of `kind` in a `conditions` list.
pub(super) fn condition<'a>(conditions: &'a Value, kind: &str) -> Option<&'a Value> {
    items(conditions).find(|c| c["type"] == kind)
}

/// Whether the first condition of `kind` has status `True` (upstream's `hasJobCondition`).
pub(super) fn condition_true(conditions: &Value, kind: &str) -> bool {
    condition(conditions, kind).is_some_and(|c| c["status"] == "True")
}

/// Upstream's `labels.FormatLabels`: `k=v` pairs sorted by key, `<none>` when empty.
pub(super) fn labels(map: &Value) -> String {
    let mut pairs: Vec<String> =
        map.as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", text(v))).collect();
    pairs.sort();
    if pairs.is_empty() { "<none>".into() } else { pairs.join(",") }
}

/// `metav1.LabelSelectorAsSelector(selector).String()`: requirements sorted by key, `""`
/// for a missing or empty selector, `None` for one that cannot be a selector.
pub(super) fn selector(selector: &Value) -> Option<String> {
    let mut requirements: Vec<(&str, String)> = Vec::new();
    for (key, value) in selector["matchLabels"].as_object().into_iter().flatten() {
        requirements.push((key, format!("{key}={}", value.as_str()?)));
    }
    for expression in items(&selector["matchExpressions"]) {
        let key = text(&expression["key"]);
        let mut values: Vec<&str> = strings(&expression["values"]).collect();
        values.sort_unstable();
        let shown = match (text(&expression["operator"]), values.is_empty()) {
            ("In", false) => format!("{key} in ({})", values.join(",")),
            ("NotIn", false) => format!("{key} notin ({})", values.join(",")),
            ("Exists", true) => key.to_owned(),
            ("DoesNotExist", true) => format!("!{key}"),
            _ => return None,
        };
        requirements.push((key, shown));
    }
    requirements.sort_by(|a, b| a.0.cmp(b.0));
    Some(requirements.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(","))
}

/// Upstream's `metav1.FormatLabelSelector`: the selector, `<none>` when it selects
/// everything or nothing, `<error>` when it is invalid.
pub(super) fn format_selector(v: &Value) -> String {
    match selector(v) {
        None => "<error>".into(),
        Some(s) if s.is_empty() => "<none>".into(),
        Some(s) => s,
    }
}

/// Upstream's `layoutContainerCells` for a pod spec: container names and images.
pub(super) fn containers(pod_spec: &Value) -> [Value; 2] {
    let containers: Vec<&Value> = items(&pod_spec["containers"]).collect();
    let names: Vec<&str> = containers.iter().map(|c| text(&c["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(&c["image"])).collect();
    [json!(names.join(",")), json!(images.join(","))]
}

/// Upstream's `listWithMoreString`: at most `max` items, then `+ N more...`; `<unset>`
/// when there are none.
pub(super) fn list_with_more(items: &[String], max: usize) -> String {
    if items.len() > max {
        return format!("{} + {} more...", items[..max].join(","), items.len() - max);
    }
    if items.is_empty() { "<unset>".into() } else { items.join(",") }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{format_selector, labels, list_with_more, selector};

    #[test]
    fn selectors_print_like_apimachinery() {
        let s = json!({
            "matchLabels": { "tier": "web", "app": "shop" },
            "matchExpressions": [
                { "key": "env", "operator": "In", "values": ["prod", "dev"] },
                { "key": "zone", "operator": "DoesNotExist" },
                { "key": "canary", "operator": "Exists" }
            ]
        });
        assert_eq!(format_selector(&s), "app=shop,canary,env in (dev,prod),tier=web,!zone");
        assert_eq!(format_selector(&json!({})), "<none>");
        assert_eq!(format_selector(&json!(null)), "<none>");
        let bad = json!({ "matchExpressions": [{ "key": "a", "operator": "In", "values": [] }] });
        assert_eq!(format_selector(&bad), "<error>");
        assert_eq!(selector(&json!(null)).as_deref(), Some(""));
    }

    #[test]
    fn labels_and_lists_print_like_upstream() {
        assert_eq!(labels(&json!({ "b": "2", "a": "1" })), "a=1,b=2");
        assert_eq!(labels(&json!(null)), "<none>");
        let four: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        assert_eq!(list_with_more(&four, 3), "a,b,c + 1 more...");
        assert_eq!(list_with_more(&[], 3), "<unset>");
    }
}

//! Object metadata rules every resource shares (upstream's `rest.BeforeCreate`,
//! `BeforeUpdate` and `ValidateObjectMeta`): names, generateName, uid, timestamps,
//! labels and annotations.

use serde_json::{Map, Value, json};

use crate::status::Cause;

use keelson_api::k8s_openapi::jiff::Timestamp;

/// The current time, to the second (k8s-openapi's jiff is built without a clock).
pub fn now_timestamp() -> Timestamp {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A time as Kubernetes writes timestamps: RFC 3339, whole seconds, UTC.
pub fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Now, as Kubernetes writes timestamps.
pub fn now() -> String {
    format_time(now_timestamp())
}

/// The strings of a JSON list (anything else is none).
pub fn string_list(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect()
}

pub fn metadata(object: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    object.get("metadata").and_then(Value::as_object).unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    match object.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// Upstream's `ResetObjectMetaForStatus` for the labels and annotations: a status write
/// of `new` keeps those `old` has, whatever it sent.
pub fn keep_labels_and_annotations(old: &Value, new: &mut Value) {
    for field in ["labels", "annotations"] {
        match metadata(old).get(field).cloned() {
            Some(v) => metadata_mut(new).insert(field.into(), v),
            None => metadata_mut(new).remove(field),
        };
    }
}

pub fn str_field<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    metadata(object).get(field).and_then(Value::as_str).filter(|s| !s.is_empty())
}

pub fn name(object: &Value) -> Option<&str> {
    str_field(object, "name")
}

/// A name from `generateName`: the prefix plus five random characters from upstream's
/// alphabet (no vowels, no look-alikes).
pub fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let random = uuid::Uuid::new_v4();
    let suffix: String = random.as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("{}{suffix}", generate_name_prefix(prefix))
}

/// The part of `generateName` a generated name keeps: at most 58 bytes (63 less the
/// suffix, as upstream), cut at a character boundary — a non-ASCII prefix then fails
/// name validation (422) rather than splitting a character.
fn generate_name_prefix(prefix: &str) -> &str {
    const MAX: usize = 63 - 5;
    let mut end = prefix.len().min(MAX);
    while !prefix.is_char_boundary(end) {
        end -= 1;
    }
    &prefix[..end]
}

/// Which name rule a resource's names follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// Lowercase RFC 1123 subdomain, at most 253 characters (most resources).
    Subdomain,
    /// Lowercase RFC 1123 label, at most 63 characters (namespaces, services).
    Label,
    /// Anything a path segment can hold (e.g. RBAC roles allow `:`).
    PathSegment,
}

pub fn validate_name(rule: NameRule, name: &str, field: &str, causes: &mut Vec<Cause>) {
    if let Some(problem) = name_problem(rule, name) {
        causes.push(Cause::invalid(field, &json!(name), &problem));
    }
}

/// `generateName` follows the name rule as a prefix: a trailing dash is allowed (upstream
/// masks it before checking).
pub fn validate_generate_name(rule: NameRule, prefix: &str, causes: &mut Vec<Cause>) {
    let masked = match prefix.strip_suffix('-') {
        Some(head) => format!("{head}a"),
        None => prefix.to_owned(),
    };
    if let Some(problem) = name_problem(rule, &masked) {
        causes.push(Cause::invalid("metadata.generateName", &json!(prefix), &problem));
    }
}

fn name_problem(rule: NameRule, name: &str) -> Option<String> {
    match rule {
        NameRule::Subdomain => dns_subdomain_problem(name),
        NameRule::Label => dns_label_problem(name),
        NameRule::PathSegment => path_segment_problem(name),
    }
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

pub fn dns_label_problem(s: &str) -> Option<String> {
    let shape_ok =
        !s.is_empty() && s.chars().all(is_label_char) && !s.starts_with('-') && !s.ends_with('-');
    if s.len() > 63 {
        Some("must be no more than 63 characters".into())
    } else if !shape_ok {
        Some("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into())
    } else {
        None
    }
}

pub fn dns_subdomain_problem(s: &str) -> Option<String> {
    let shape_ok = !s.is_empty()
        && s.split('.').all(|part| {
            !part.is_empty()
                && part.chars().all(is_label_char)
                && !part.starts_with('-')
                && !part.ends_with('-')
        });
    if s.len() > 253 {
        Some("must be no more than 253 characters".into())
    } else if !shape_ok {
        Some("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into())
    } else {
        None
    }
}

fn path_segment_problem(s: &str) -> Option<String> {
    if s == "." || s == ".." {
        Some(format!("may not be '{s}'"))
    } else if s.contains('/') || s.contains('%') {
        Some("may not contain '/' or '%'".into())
    } else if s.contains('\0') {
        // Upstream's etcd keys could hold one; no store of Keelson's can.
        Some("may not contain a NUL character".into())
    } else {
        None
    }
}

/// Label keys and values, annotation keys and total size, as `ValidateObjectMeta` checks.
pub fn validate_labels_and_annotations(object: &Value, causes: &mut Vec<Cause>) {
    let meta = metadata(object);
    for (field, map) in [("labels", meta.get("labels")), ("annotations", meta.get("annotations"))] {
        let Some(map) = map else { continue };
        let Some(map) = map.as_object() else {
            causes.push(Cause::invalid(
                &format!("metadata.{field}"),
                map,
                "must be a map of strings",
            ));
            continue;
        };
        let mut total = 0;
        for (key, value) in map {
            let path = format!("metadata.{field}");
            if let Some(problem) = qualified_name_problem(key) {
                causes.push(Cause::invalid(&path, &json!(key), &problem));
            }
            let Some(value) = value.as_str() else {
                causes.push(Cause::invalid(&format!("{path}[{key}]"), value, "must be a string"));
                continue;
            };
            total += key.len() + value.len();
            if field == "labels" && label_value_problem(value) {
                causes.push(Cause::invalid(&path, &json!(value), LABEL_VALUE_MESSAGE));
            }
        }
        if field == "annotations" && total > 256 * 1024 {
            causes.push(Cause {
                reason: "FieldValueTooLong",
                message: "Too long: may not be more than 262144 bytes".into(),
                field: "metadata.annotations".into(),
            });
        }
    }
}

/// `prefix/name` keys: an optional DNS subdomain prefix and a 63-character name.
pub fn qualified_name_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && let Some(problem) = dns_subdomain_problem(prefix)
    {
        return Some(format!("prefix part {problem}"));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    let alnum_ends = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 63 || !name.chars().all(ok_char) || !alnum_ends {
        return Some("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".into());
    }
    None
}

/// Upstream's `IsValidLabelValue` message.
pub const LABEL_VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

pub fn label_value_problem(value: &str) -> bool {
    if value.is_empty() {
        return false;
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    value.len() > 63
        || !value.chars().all(ok_char)
        || !value.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !value.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rfc_1123() {
        assert!(dns_subdomain_problem("my-app.example").is_none());
        assert!(dns_subdomain_problem("My_App").is_some());
        assert!(dns_subdomain_problem("a..b").is_some());
        assert!(dns_label_problem("web-1").is_none());
        assert!(dns_label_problem("web.1").is_some());
        assert!(dns_label_problem(&"a".repeat(64)).is_some());
        let generated = generate_name("web-");
        assert!(generated.starts_with("web-") && generated.len() == 9, "{generated}");
    }

    #[test]
    fn generated_names_cut_the_prefix_at_a_character_boundary() {
        assert_eq!(generate_name_prefix(&"a".repeat(70)).len(), 58);
        // 57 ASCII bytes and a two-byte character: byte 58 is inside the character.
        let split = format!("{}é-", "a".repeat(57));
        assert_eq!(generate_name(&split).len(), 57 + 5);
        assert_eq!(generate_name_prefix("ééé"), "ééé");
    }

    #[test]
    fn generate_name_follows_the_name_rule_as_a_prefix() {
        let causes = |prefix: &str| {
            let mut causes = Vec::new();
            validate_generate_name(NameRule::Subdomain, prefix, &mut causes);
            causes
        };
        assert!(causes("web-").is_empty());
        let refused = causes(&format!("{}é", "a".repeat(57)));
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].field, "metadata.generateName");
    }

    #[test]
    fn labels_and_annotations_are_checked() {
        let mut causes = Vec::new();
        let object = json!({"metadata": {"labels": {"app": "web", "bad key": "x", "ok": "-bad"}, "annotations": {"example.com/note": "anything goes here"}}});
        validate_labels_and_annotations(&object, &mut causes);
        let fields: Vec<_> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["metadata.labels", "metadata.labels"], "{causes:?}");
    }
}

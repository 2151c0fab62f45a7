//! Per-type validation, as upstream's `pkg/apis/<group>/validation` does it: field
//! paths, reasons and messages as kube-apiserver writes them, so `Invalid` errors read
//! the same. Each resource's strategy (`registry/<group>/<resource>.rs`) calls the rules
//! of its type here, after defaulting, on create and (with the old object) on update.
//!
//! Must never reject what upstream accepts; a rule not written here yet is a rule not
//! enforced, never a guess.

pub(crate) mod apiregistration;
pub mod certificates;
pub(crate) mod cluster;
pub(crate) mod core;
pub(crate) mod crd;
pub(crate) mod flowcontrol;
pub(crate) mod pod;
pub(crate) mod pod_subresources;
pub(crate) mod resource;
pub(crate) mod resource_slice;
pub(crate) mod workloads;

use serde_json::{Value, json};

use crate::status::Cause;

/// `field is immutable` when a value changed.
pub(crate) fn immutable(old: &Value, new: &Value, field: &str, causes: &mut Vec<Cause>) {
    if old != new {
        causes.push(Cause::invalid(field, new, "field is immutable"));
    }
}

/// `Too long: may not be more than N bytes`.
fn too_long(field: &str, max: usize) -> Cause {
    Cause {
        reason: "FieldValueTooLong",
        message: format!("Too long: may not be more than {max} bytes"),
        field: field.to_owned(),
    }
}

/// `Too many: N: must have at most M items`.
fn too_many(field: &str, actual: usize, max: usize) -> Cause {
    let items = if max == 1 { "item" } else { "items" };
    Cause {
        reason: "FieldValueTooMany",
        message: format!("Too many: {actual}: must have at most {max} {items}"),
        field: field.to_owned(),
    }
}

fn required(field: &str, causes: &mut Vec<Cause>) {
    causes.push(Cause::required(field, ""));
}

/// `Unsupported value: "x": supported values: "a", "b"`.
fn not_supported(field: &str, value: &Value, supported: &[&str], causes: &mut Vec<Cause>) {
    let shown = match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    let listed: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    causes.push(Cause {
        reason: "FieldValueNotSupported",
        message: format!("Unsupported value: {shown}: supported values: {}", listed.join(", ")),
        field: field.to_owned(),
    });
}

fn duplicate(field: &str, value: &Value, causes: &mut Vec<Cause>) {
    let shown = match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    causes.push(Cause {
        reason: "FieldValueDuplicate",
        message: format!("Duplicate value: {shown}"),
        field: field.to_owned(),
    });
}

/// Checks an enum-like string field that has a default (so absent means defaulted).
fn one_of(value: &Value, field: &str, supported: &[&str], causes: &mut Vec<Cause>) {
    if let Some(s) = value.as_str()
        && !supported.contains(&s)
    {
        not_supported(field, value, supported, causes);
    }
}

/// A port number: 1–65535.
fn port_number(value: &Value, field: &str, causes: &mut Vec<Cause>) {
    match value.as_i64() {
        Some(p) if (1..=65535).contains(&p) => {}
        Some(_) => {
            causes.push(Cause::invalid(field, value, "must be between 1 and 65535, inclusive"))
        }
        None => required(field, causes),
    }
}

/// `IANA_SVC_NAME`: at most 15 characters, lowercase letters, digits and '-', at least
/// one letter, no leading, trailing or double '-'.
fn port_name_problem(name: &str) -> Option<&'static str> {
    if name.len() > 15 {
        Some("must be no more than 15 characters")
    } else if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        Some("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    } else if name.contains("--") {
        Some("must not contain consecutive hyphens")
    } else if !name.chars().any(|c| c.is_ascii_lowercase()) {
        Some("must contain at least one letter (a-z)")
    } else if name.starts_with('-') || name.ends_with('-') {
        Some("must not begin or end with a hyphen")
    } else {
        None
    }
}

/// A non-negative integer field.
fn non_negative(value: &Value, field: &str, causes: &mut Vec<Cause>) {
    if value.as_i64().is_some_and(|n| n < 0) {
        causes.push(Cause::invalid(field, value, "must be greater than or equal to 0"));
    }
}

/// Label selector text of a LabelSelector, to match template labels against.
fn selects(selector: &Value, labels: &Value) -> bool {
    let text = super::selector::selector_string(selector, false);
    !text.is_empty()
        && super::selector::LabelSelector::parse(&text)
            .is_ok_and(|s| s.matches(&json!({ "metadata": { "labels": labels } })))
}

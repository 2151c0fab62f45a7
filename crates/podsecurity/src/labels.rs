//! Namespace labels to [`Policy`], as upstream's `api.PolicyToEvaluate` resolves them.

use serde_json::{Map, Value};

use crate::checks::go_quote;
use crate::{Level, LevelVersion, Policy, Version};

pub const ENFORCE_LEVEL_LABEL: &str = "pod-security.kubernetes.io/enforce";
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";
pub const AUDIT_LEVEL_LABEL: &str = "pod-security.kubernetes.io/audit";
pub const AUDIT_VERSION_LABEL: &str = "pod-security.kubernetes.io/audit-version";
pub const WARN_LEVEL_LABEL: &str = "pod-security.kubernetes.io/warn";
pub const WARN_VERSION_LABEL: &str = "pod-security.kubernetes.io/warn-version";

/// Resolves a namespace's `pod-security.kubernetes.io/{enforce,audit,warn}[-version]`
/// labels on top of `defaults`, or returns every invalid label as a field error worded as
/// upstream's namespace validation reports it, e.g.
/// `metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "foo": must be one of privileged, baseline, restricted`.
///
/// Like upstream, when `enforce` is set explicitly and no `warn` level is, warn is raised to
/// the enforce level (and version, unless `warn-version` is set) if enforce is stricter.
pub fn policy_from_labels(
    labels: &Map<String, Value>,
    defaults: &Policy,
) -> Result<Policy, Vec<String>> {
    let (policy, errors) = evaluate_labels(labels, defaults);
    if errors.is_empty() { Ok(policy) } else { Err(errors) }
}

/// [`policy_from_labels`] that always yields a policy, as upstream's admission does for a
/// namespace whose labels are already stored: an invalid enforce level reads as
/// `restricted`, an invalid audit or warn level as `privileged` (fail open), and an invalid
/// version as `latest`. The errors are returned alongside.
pub fn evaluate_labels(labels: &Map<String, Value>, defaults: &Policy) -> (Policy, Vec<String>) {
    let mut errors = Vec::new();
    let mut policy = *defaults;
    let errs = &mut errors;
    // Parsed in upstream's order, so the errors come out in that order too.
    let enforce_level = level_label(labels, ENFORCE_LEVEL_LABEL, Level::Restricted, errs);
    let enforce_version = version_label(labels, ENFORCE_VERSION_LABEL, errs);
    let audit_level = level_label(labels, AUDIT_LEVEL_LABEL, Level::Privileged, errs);
    let audit_version = version_label(labels, AUDIT_VERSION_LABEL, errs);
    let warn_level = level_label(labels, WARN_LEVEL_LABEL, Level::Privileged, errs);
    let warn_version = version_label(labels, WARN_VERSION_LABEL, errs);

    set(&mut policy.enforce, enforce_level.map(|(l, _)| l), enforce_version);
    set(&mut policy.audit, audit_level.map(|(l, _)| l), audit_version);
    set(&mut policy.warn, warn_level.map(|(l, _)| l), warn_version);

    // Default warn to the enforce level when enforce is explicitly (and validly) set to a
    // stricter level, so that users are told why a pod would be rejected.
    let enforce_explicit = matches!(enforce_level, Some((_, true)));
    if warn_level.is_none() && enforce_explicit && policy.enforce.level > policy.warn.level {
        policy.warn.level = policy.enforce.level;
        if warn_version.is_none() {
            policy.warn.version = policy.enforce.version;
        }
    }
    (policy, errors)
}

/// The level a label sets, and whether it was valid (`fallback` when not); `None` if unset.
fn level_label(
    labels: &Map<String, Value>,
    key: &str,
    fallback: Level,
    errors: &mut Vec<String>,
) -> Option<(Level, bool)> {
    let value = label(labels, key)?;
    Some(match parse_level(&value) {
        Ok(level) => (level, true),
        Err(e) => {
            errors.push(invalid(key, &value, e));
            (fallback, false)
        }
    })
}

/// The version a label sets (`latest` when invalid); `None` if unset.
fn version_label(
    labels: &Map<String, Value>,
    key: &str,
    errors: &mut Vec<String>,
) -> Option<Version> {
    let value = label(labels, key)?;
    Some(parse_version(&value).unwrap_or_else(|e| {
        errors.push(invalid(key, &value, e));
        Version::Latest
    }))
}

fn set(lv: &mut LevelVersion, level: Option<Level>, version: Option<Version>) {
    if let Some(level) = level {
        lv.level = level;
    }
    if let Some(version) = version {
        lv.version = version;
    }
}

/// The label's value; a non-string is read as its JSON text (and so fails to parse).
fn label(labels: &Map<String, Value>, key: &str) -> Option<String> {
    labels.get(key).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// Upstream's `ParseLevel`.
pub(crate) fn parse_level(value: &str) -> Result<Level, &'static str> {
    match value {
        "privileged" => Ok(Level::Privileged),
        "baseline" => Ok(Level::Baseline),
        "restricted" => Ok(Level::Restricted),
        _ => Err("must be one of privileged, baseline, restricted"),
    }
}

/// Upstream's `ParseVersion`: `latest` or `v1.<minor>` (`^v1\.([0-9]|[1-9][0-9]*)$`).
pub(crate) fn parse_version(value: &str) -> Result<Version, &'static str> {
    const ERR: &str = r#"must be "latest" or "v1.x""#;
    if value == "latest" {
        return Ok(Version::Latest);
    }
    let minor = value.strip_prefix("v1.").ok_or(ERR)?;
    let digits_ok = !minor.is_empty()
        && minor.bytes().all(|b| b.is_ascii_digit())
        && (minor == "0" || !minor.starts_with('0'));
    if !digits_ok {
        return Err(ERR);
    }
    minor.parse().map(Version::V1).map_err(|_| ERR)
}

/// A `field.Invalid` error's text.
fn invalid(key: &str, value: &str, detail: &str) -> String {
    format!("metadata.labels[{key}]: Invalid value: {}: {detail}", go_quote(value))
}

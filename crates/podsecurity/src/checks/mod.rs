//! The check registry: which revision of which check runs at a level and policy version,
//! in upstream's order, plus the helpers the checks share (container and security-context
//! traversal, Go-style quoting and pluralisation, so details read exactly like upstream's).

mod baseline;
mod restricted;

use std::collections::BTreeSet;

use serde_json::Value;

use crate::{Level, Violation};

/// A check revision: the policy version it starts at, what it runs, and which baseline
/// checks it replaces when restricted is evaluated (upstream's `OverrideCheckIDs`).
struct Revision {
    min_minor: u32,
    run: fn(&Pod<'_>) -> Option<Violation>,
    overrides: &'static [&'static str],
}

/// One control, with its revisions sorted by `min_minor`.
struct Check {
    id: &'static str,
    revisions: &'static [Revision],
}

impl Check {
    /// The revision in force at `minor`, if the check exists at that version.
    fn at(&self, minor: u32) -> Option<&Revision> {
        self.revisions.iter().rev().find(|r| r.min_minor <= minor)
    }
}

/// Evaluates `level` at the (already clamped) `minor` policy version.
pub(crate) fn evaluate(level: Level, minor: u32, metadata: &Value, spec: &Value) -> Vec<Violation> {
    let pod = Pod { metadata, spec };
    let restricted: Vec<&Revision> = match level {
        Level::Privileged => return Vec::new(),
        Level::Baseline => Vec::new(),
        Level::Restricted => restricted::CHECKS.iter().filter_map(|c| c.at(minor)).collect(),
    };
    let overridden = |id: &str| restricted.iter().any(|r| r.overrides.contains(&id));
    baseline::CHECKS
        .iter()
        .filter(|c| !overridden(c.id))
        .filter_map(|c| c.at(minor))
        .chain(restricted.iter().copied())
        .filter_map(|r| (r.run)(&pod))
        .collect()
}

/// A pod's metadata and spec, with the accessors the checks need. Absent and `null` fields
/// read as unset, the way a Go pointer would be nil.
pub(crate) struct Pod<'a> {
    metadata: &'a Value,
    spec: &'a Value,
}

impl<'a> Pod<'a> {
    /// Init containers, then containers, then ephemeral containers: upstream's
    /// `visitContainers` order.
    fn containers(&self) -> impl Iterator<Item = &'a Value> + use<'a> {
        let spec = self.spec;
        ["initContainers", "containers", "ephemeralContainers"]
            .into_iter()
            .flat_map(move |list| array(spec, &[list]))
    }

    /// `spec.volumes`.
    fn volumes(&self) -> impl Iterator<Item = &'a Value> + use<'a> {
        array(self.spec, &["volumes"])
    }

    /// `metadata.annotations`, as (key, value) pairs; non-string values read as empty.
    fn annotations(&self) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a> {
        get(self.metadata, &["annotations"])
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
    }

    fn annotation(&self, key: &str) -> Option<&'a str> {
        get(self.metadata, &["annotations", key]).map(|v| v.as_str().unwrap_or(""))
    }

    /// `spec.os.name == "windows"`, which exempts a pod from the Linux-only restricted
    /// checks from policy v1.25.
    fn is_windows(&self) -> bool {
        str_at(self.spec, &["os", "name"]) == Some("windows")
    }
}

/// The value at `path` under `v`; `None` when absent or `null`.
fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    (!cur.is_null()).then_some(cur)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

fn bool_at(v: &Value, path: &[&str]) -> Option<bool> {
    get(v, path).and_then(Value::as_bool)
}

/// The elements of the array at `path`, none when absent.
fn array<'a>(v: &'a Value, path: &[&str]) -> impl Iterator<Item = &'a Value> + use<'a> {
    get(v, path).and_then(Value::as_array).into_iter().flatten()
}

/// The strings of the array at `path`; non-strings are skipped.
fn strings<'a>(v: &'a Value, path: &[&str]) -> impl Iterator<Item = &'a str> + use<'a> {
    array(v, path).filter_map(Value::as_str)
}

fn name(v: &Value) -> String {
    str_at(v, &["name"]).unwrap_or("").to_owned()
}

/// Upstream's `pluralize`.
fn pluralize<'s>(singular: &'s str, plural: &'s str, count: usize) -> &'s str {
    if count == 1 { singular } else { plural }
}

/// Upstream's `joinQuote`: `"a", "b"`, with no escaping; empty for no items.
fn join_quote<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let items: Vec<String> = items.into_iter().map(|s| format!("\"{}\"", s.as_ref())).collect();
    items.join(", ")
}

/// `"<singular|plural> \"a\", \"b\""`: quoted items after a noun agreeing with their number.
fn quoted_list<I>(singular: &str, plural: &str, items: I) -> String
where
    I: IntoIterator<IntoIter: ExactSizeIterator, Item: AsRef<str>>,
{
    let items = items.into_iter();
    format!("{} {}", pluralize(singular, plural, items.len()), join_quote(items))
}

/// `"<container|containers> \"a\", \"b\""`, the subject most details start with.
fn containers_phrase(names: &[String]) -> String {
    quoted_list("container", "containers", names)
}

/// `"<subjects> <uses|use> <objects>"`, upstream's detail for `count` named subjects (such as
/// `containers "a", "b"`) that use forbidden things.
fn uses(subjects: &str, count: usize, objects: &str) -> String {
    format!("{subjects} {} {objects}", pluralize("uses", "use", count))
}

/// The object's `securityContext`, `None` when absent or `null`.
fn security_context(v: &Value) -> Option<&Value> {
    get(v, &["securityContext"])
}

/// `containers "a", "b"` naming the containers `pred` holds for, in visit order; `None` when
/// there are none.
fn containers_where<'a>(pod: &Pod<'a>, mut pred: impl FnMut(&'a Value) -> bool) -> Option<String> {
    let names: Vec<String> = pod.containers().filter(|c| pred(c)).map(name).collect();
    (!names.is_empty()).then(|| containers_phrase(&names))
}

/// Runs `bad` on each container, in visit order: the names of those it finds forbidden
/// values in, and every distinct value found, sorted.
fn bad_containers<'a, T: Ord, I: IntoIterator<Item = T>>(
    pod: &Pod<'a>,
    mut bad: impl FnMut(&'a Value) -> I,
) -> (Vec<String>, BTreeSet<T>) {
    let mut names = Vec::new();
    let mut values = BTreeSet::new();
    for c in pod.containers() {
        let mut found = false;
        for value in bad(c) {
            found = true;
            values.insert(value);
        }
        if found {
            names.push(name(c));
        }
    }
    (names, values)
}

/// Who sets a forbidden value in a security context, and the distinct values set.
struct Setters<T> {
    /// `"pod"` and/or `containers "a", "b"`, in that order.
    who: Vec<String>,
    /// The distinct forbidden values found, sorted.
    values: BTreeSet<T>,
}

impl<T> Setters<T> {
    /// `"pod and containers \"a\", \"b\""`, or `None` when nothing sets a forbidden value.
    fn phrase(&self) -> Option<String> {
        (!self.who.is_empty()).then(|| self.who.join(" and "))
    }
}

/// Runs `bad` on the pod's `securityContext`, then on each container's (absent or `null`
/// contexts are skipped): upstream's "pod then containers" pattern for a field that may be
/// set at either level and must not hold a forbidden value at any.
fn security_context_setters<'a, T: Ord>(
    pod: &Pod<'a>,
    mut bad: impl FnMut(&'a Value) -> Option<T>,
) -> Setters<T> {
    let mut who = Vec::new();
    let mut values = BTreeSet::new();
    if let Some(value) = security_context(pod.spec).and_then(&mut bad) {
        who.push("pod".to_owned());
        values.insert(value);
    }
    let (containers, container_values) =
        bad_containers(pod, |c| security_context(c).and_then(&mut bad));
    if !containers.is_empty() {
        who.push(containers_phrase(&containers));
    }
    values.extend(container_values);
    Setters { who, values }
}

/// [`security_context_setters`] for a yes/no rule: the phrase naming every security context
/// `forbidden` holds for, `None` when there are none.
fn forbidden_setters<'a>(
    pod: &Pod<'a>,
    mut forbidden: impl FnMut(&'a Value) -> bool,
) -> Option<String> {
    security_context_setters(pod, |sc| forbidden(sc).then_some(())).phrase()
}

/// `"pod or containers \"a\", \"b\""` when a field the restricted level requires is unset
/// in the pod's `securityContext` and in those containers' (`is_set` reads one context);
/// `None` when the pod sets it, or every container does.
fn unset_phrase(pod: &Pod<'_>, is_set: impl Fn(&Value) -> bool) -> Option<String> {
    let set = |v: &Value| security_context(v).is_some_and(&is_set);
    if set(pod.spec) {
        return None;
    }
    containers_where(pod, |c| !set(c)).map(|containers| format!("pod or {containers}"))
}

/// Go's `%q` for a string: double-quoted with backslash escapes.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn violation(reason: impl Into<String>, detail: impl Into<String>) -> Option<Violation> {
    Some(Violation { reason: reason.into(), detail: detail.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_ids_are_in_upstream_order() {
        // Upstream sorts IDs (Go byte order) so messages are stable; the tables are written
        // in that order and evaluation relies on it.
        for table in [baseline::CHECKS, restricted::CHECKS] {
            let ids: Vec<&str> = table.iter().map(|c| c.id).collect();
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            assert_eq!(ids, sorted);
        }
    }

    #[test]
    fn revisions_are_increasing_and_latest_is_the_newest() {
        let mut newest = 0;
        for c in baseline::CHECKS.iter().chain(restricted::CHECKS) {
            assert!(c.revisions.windows(2).all(|w| w[0].min_minor < w[1].min_minor), "{}", c.id);
            newest = newest.max(c.revisions.last().map_or(0, |r| r.min_minor));
        }
        assert_eq!(newest, crate::LATEST_MINOR);
    }

    #[test]
    fn overrides_name_baseline_checks() {
        for c in restricted::CHECKS {
            for r in c.revisions {
                for id in r.overrides {
                    assert!(baseline::CHECKS.iter().any(|b| b.id == *id), "{id}");
                }
            }
        }
    }

    #[test]
    fn go_quote_escapes_like_go() {
        assert_eq!(go_quote("unconfined"), r#""unconfined""#);
        assert_eq!(go_quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(go_quote("\u{1}"), r#""\x01""#);
    }
}

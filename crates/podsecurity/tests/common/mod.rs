//! Helpers shared by the integration tests.
#![allow(dead_code)]

use keelson_podsecurity::{Level, LevelVersion, Version, Violation, check, forbidden_detail};
use serde_json::{Value, json};

/// Parses `baseline:latest`, `restricted:v1.24`.
pub fn lv(s: &str) -> LevelVersion {
    let (level, version) = s.split_once(':').expect("level:version");
    let level = match level {
        "privileged" => Level::Privileged,
        "baseline" => Level::Baseline,
        "restricted" => Level::Restricted,
        other => panic!("level {other}"),
    };
    let version = match version {
        "latest" => Version::Latest,
        v => Version::V1(v.strip_prefix("v1.").expect("v1.x").parse().expect("minor")),
    };
    LevelVersion::new(level, version)
}

/// Runs `level` against a whole pod object (`metadata` and `spec`).
pub fn run(level: &str, pod: &Value) -> Vec<Violation> {
    let empty = json!({});
    let metadata = pod.get("metadata").unwrap_or(&empty);
    let spec = pod.get("spec").unwrap_or(&empty);
    check(&lv(level), metadata, spec)
}

/// The aggregated `reason (detail), ...` text.
pub fn detail(level: &str, pod: &Value) -> String {
    forbidden_detail(&run(level, pod))
}

/// The single violation `level` finds, panicking if there is not exactly one.
pub fn only(level: &str, pod: &Value) -> Violation {
    let mut v = run(level, pod);
    assert_eq!(v.len(), 1, "expected one violation, got {v:?}");
    v.remove(0)
}

pub fn assert_only(level: &str, pod: &Value, reason: &str, detail: &str) {
    let v = only(level, pod);
    assert_eq!(v.reason, reason);
    assert_eq!(v.detail, detail);
}

pub fn assert_allowed(level: &str, pod: &Value) {
    let v = run(level, pod);
    assert!(v.is_empty(), "{level}: expected no violations, got {v:?}");
}

/// Asserts that a check is new in policy `v1.{minor}` of `level`: `pod` passes at the version
/// before, and from that version fails that check alone, with `reason`.
pub fn assert_new_in(level: &str, minor: u32, pod: &Value, reason: &str) {
    assert_allowed(&format!("{level}:v1.{}", minor - 1), pod);
    assert_eq!(only(&format!("{level}:v1.{minor}"), pod).reason, reason);
}

/// The reasons of the violations `level` finds, in order.
pub fn reasons(level: &str, pod: &Value) -> Vec<String> {
    run(level, pod).into_iter().map(|v| v.reason).collect()
}

/// Asserts that `f`'s problem still fails `level` with `reason` in a `hostUsers: false` pod:
/// upstream 1.34 relaxes some checks for such pods only behind a default-off feature gate.
pub fn assert_no_user_namespace_relaxation(level: &str, f: impl FnOnce(&mut Value), reason: &str) {
    let userns = with(|p| {
        p["spec"]["hostUsers"] = json!(false);
        f(p);
    });
    assert_eq!(only(level, &userns).reason, reason);
}

/// A pod that satisfies restricted at every version; tests add one problem to it.
pub fn restricted_pod() -> Value {
    json!({
        "metadata": {"name": "p"},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container("app")],
        }
    })
}

/// A container that satisfies restricted.
pub fn container(name: &str) -> Value {
    json!({
        "name": name,
        "image": "registry.k8s.io/pause",
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
    })
}

/// Restricted-clean containers named `names`, as a JSON array.
pub fn containers(names: &[&str]) -> Value {
    names.iter().map(|n| container(n)).collect()
}

/// `restricted_pod()` with `f` applied to it.
pub fn with(f: impl FnOnce(&mut Value)) -> Value {
    let mut pod = restricted_pod();
    f(&mut pod);
    pod
}

/// `restricted_pod()` as a Windows pod (`spec.os.name: windows`), with `f` applied to it.
pub fn windows_with(f: impl FnOnce(&mut Value)) -> Value {
    with(|p| {
        p["spec"]["os"] = json!({"name": "windows"});
        f(p);
    })
}

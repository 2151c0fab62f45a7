//! Each restricted control, with upstream's wording, its version gates, the Windows
//! exemptions from v1.25, and the baseline checks it replaces.

mod common;

use common::{assert_allowed, assert_new_in, assert_only, containers, windows_with, with};
use serde_json::{Value, json};

/// Asserts that `pod` breaks a rule only restricted has: restricted (latest) reports it alone,
/// as `reason` with `detail`, and baseline allows the pod.
fn assert_restricted_only(pod: &Value, reason: &str, detail: &str) {
    assert_only("restricted:latest", pod, reason, detail);
    assert_allowed("baseline:latest", pod);
}

/// Asserts that a restricted control exempts Windows pods from policy v1.25: `pod` (a Windows
/// pod) passes restricted there and at latest, and fails with `reason` at v1.24.
fn assert_linux_only_from_v1_25(pod: &Value, reason: &str) {
    assert_allowed("restricted:v1.25", pod);
    assert_allowed("restricted:latest", pod);
    assert_eq!(common::only("restricted:v1.24", pod).reason, reason);
}

#[test]
fn allow_privilege_escalation() {
    let pod = with(|p| {
        p["spec"]["containers"] = json!([
            common::container("ok"),
            {"name": "a", "securityContext": {"allowPrivilegeEscalation": true, "capabilities": {"drop": ["ALL"]}}},
            {"name": "b", "securityContext": {"capabilities": {"drop": ["ALL"]}}},
        ]);
    });
    assert_restricted_only(
        &pod,
        "allowPrivilegeEscalation != false",
        r#"containers "a", "b" must set securityContext.allowPrivilegeEscalation=false"#,
    );
    // The field arrived in 1.8: policy v1.7 does not check it.
    assert_new_in("restricted", 8, &pod, "allowPrivilegeEscalation != false");
}

#[test]
fn allow_privilege_escalation_is_linux_only_from_v1_25() {
    let unset = |p: &mut Value| {
        p["spec"]["containers"][0]["securityContext"] = json!({"capabilities": {"drop": ["ALL"]}});
    };
    assert_linux_only_from_v1_25(&windows_with(unset), "allowPrivilegeEscalation != false");
    let linux = with(|p| {
        p["spec"]["os"] = json!({"name": "linux"});
        unset(p);
    });
    assert_eq!(
        common::only("restricted:latest", &linux).reason,
        "allowPrivilegeEscalation != false"
    );
}

#[test]
fn capabilities_restricted() {
    let pod = with(|p| {
        p["spec"]["containers"] = json!([
            {"name": "a", "securityContext": {"allowPrivilegeEscalation": false}},
            {"name": "b", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["NET_RAW"]}}},
            {"name": "c", "securityContext": {"allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "SYS_ADMIN", "CHOWN"]}}},
            {"name": "d", "securityContext": {"allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}},
        ]);
    });
    assert_only(
        "restricted:latest",
        &pod,
        "unrestricted capabilities",
        concat!(
            r#"containers "a", "b" must set securityContext.capabilities.drop=["ALL"]; "#,
            r#"container "c" must not include "CHOWN", "SYS_ADMIN" in securityContext.capabilities.add"#,
        ),
    );
}

#[test]
fn capabilities_restricted_replaces_baseline_from_v1_22() {
    let pod = with(|p| {
        p["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"]);
    });
    // Baseline sees a non-default capability ...
    assert_eq!(common::only("baseline:latest", &pod).reason, "non-default capabilities");
    // ... restricted reports it once, through its own check.
    assert_only(
        "restricted:latest",
        &pod,
        "unrestricted capabilities",
        r#"container "app" must not include "SYS_ADMIN" in securityContext.capabilities.add"#,
    );
    // Before v1.22 restricted had no capabilities check, so the baseline one runs.
    assert_eq!(common::only("restricted:v1.21", &pod).reason, "non-default capabilities");
    // Dropping ALL was not required before v1.22 either.
    let no_drop = with(|p| {
        p["spec"]["containers"][0]["securityContext"] = json!({"allowPrivilegeEscalation": false})
    });
    assert_new_in("restricted", 22, &no_drop, "unrestricted capabilities");
}

#[test]
fn capabilities_restricted_is_linux_only_from_v1_25() {
    let pod = windows_with(|p| {
        p["spec"]["containers"][0]["securityContext"] = json!({"allowPrivilegeEscalation": false});
    });
    assert_linux_only_from_v1_25(&pod, "unrestricted capabilities");
}

#[test]
fn restricted_volumes() {
    let pod = with(|p| {
        p["spec"]["volumes"] = json!([
            {"name": "a", "configMap": {"name": "x"}},
            {"name": "b", "hostPath": {"path": "/"}},
            {"name": "c", "nfs": {"server": "s", "path": "/"}},
            {"name": "d", "emptyDir": {}},
            {"name": "e", "image": {"reference": "x"}},
            {"name": "f", "projected": {"sources": []}},
            {"name": "g", "secret": {"secretName": "x"}},
            {"name": "h", "persistentVolumeClaim": {"claimName": "x"}},
            {"name": "i", "csi": {"driver": "x"}},
            {"name": "j", "downwardAPI": {}},
            {"name": "k", "ephemeral": {}},
            {"name": "l", "gitRepo": {"repository": "x"}},
        ]);
    });
    // Replaces the baseline hostPath check: reported once, as a restricted volume type.
    assert_only(
        "restricted:latest",
        &pod,
        "restricted volume types",
        r#"volumes "b", "c", "l" use restricted volume types "gitRepo", "hostPath", "nfs""#,
    );
    assert_only("baseline:latest", &pod, "hostPath volumes", r#"volume "b""#);
    let unknown = with(|p| p["spec"]["volumes"] = json!([{"name": "x"}]));
    assert_only(
        "restricted:latest",
        &unknown,
        "restricted volume types",
        r#"volume "x" uses restricted volume type "unknown""#,
    );
}

#[test]
fn run_as_non_root() {
    let explicit = with(|p| {
        p["spec"]["securityContext"]["runAsNonRoot"] = json!(false);
        p["spec"]["containers"] = containers(&["a", "b", "c"]);
        p["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = json!(false);
        p["spec"]["containers"][1]["securityContext"]["runAsNonRoot"] = json!(false);
        p["spec"]["containers"][2]["securityContext"]["runAsNonRoot"] = json!(true);
    });
    assert_only(
        "restricted:latest",
        &explicit,
        "runAsNonRoot != true",
        r#"pod and containers "a", "b" must not set securityContext.runAsNonRoot=false"#,
    );
    let implicit = with(|p| {
        p["spec"]["securityContext"] = json!({"seccompProfile": {"type": "RuntimeDefault"}});
        p["spec"]["containers"] = containers(&["a", "b", "c"]);
        p["spec"]["containers"][2]["securityContext"]["runAsNonRoot"] = json!(true);
    });
    assert_restricted_only(
        &implicit,
        "runAsNonRoot != true",
        r#"pod or containers "a", "b" must set securityContext.runAsNonRoot=true"#,
    );
    // Checked since v1.0.
    assert_eq!(common::only("restricted:v1.0", &implicit).reason, "runAsNonRoot != true");
    // Applies to Windows pods too.
    let windows = windows_with(|p| p["spec"]["securityContext"] = json!({}));
    assert_eq!(common::only("restricted:latest", &windows).reason, "runAsNonRoot != true");
}

#[test]
fn run_as_user() {
    let pod = with(|p| {
        p["spec"]["securityContext"]["runAsUser"] = json!(0);
        p["spec"]["containers"] = containers(&["a", "b"]);
        p["spec"]["containers"][0]["securityContext"]["runAsUser"] = json!(0);
        p["spec"]["containers"][1]["securityContext"]["runAsUser"] = json!(1000);
    });
    assert_only(
        "restricted:latest",
        &pod,
        "runAsUser=0",
        r#"pod and container "a" must not set runAsUser=0"#,
    );
    // New in policy v1.23.
    assert_new_in("restricted", 23, &pod, "runAsUser=0");
    common::assert_no_user_namespace_relaxation(
        "restricted:latest",
        |p| p["spec"]["securityContext"]["runAsUser"] = json!(0),
        "runAsUser=0",
    );
}

#[test]
fn seccomp_restricted() {
    let implicit = with(|p| {
        p["spec"]["securityContext"] = json!({"runAsNonRoot": true});
        p["spec"]["containers"] = containers(&["a", "b"]);
        p["spec"]["containers"][1]["securityContext"]["seccompProfile"] =
            json!({"type": "Localhost", "localhostProfile": "x"});
    });
    // Restricted requires a profile; baseline allows it unset.
    assert_restricted_only(
        &implicit,
        "seccompProfile",
        r#"pod or container "a" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
    );
    // New in policy v1.19.
    assert_new_in("restricted", 19, &implicit, "seccompProfile");
    let explicit = with(|p| {
        p["spec"]["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"});
        p["spec"]["containers"] = containers(&["a", "b"]);
        p["spec"]["containers"][1]["securityContext"]["seccompProfile"] =
            json!({"type": "Unconfined"});
    });
    // Replaces the baseline seccomp check, so it is reported once.
    assert_only(
        "restricted:latest",
        &explicit,
        "seccompProfile",
        r#"pod and container "b" must not set securityContext.seccompProfile.type to "Unconfined""#,
    );
}

#[test]
fn seccomp_restricted_is_linux_only_from_v1_25() {
    let pod = windows_with(|p| p["spec"]["securityContext"] = json!({"runAsNonRoot": true}));
    assert_linux_only_from_v1_25(&pod, "seccompProfile");
    // A Windows pod is still held to baseline's seccomp rule.
    let unconfined = windows_with(|p| {
        p["spec"]["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"});
    });
    assert_eq!(common::only("baseline:latest", &unconfined).reason, "seccompProfile");
    assert_allowed("restricted:latest", &unconfined);
}

//! Each restricted control, with upstream's wording, its version gates, the Windows
//! exemptions from v1.25, and the baseline checks it replaces.

mod common;

use common::{assert_allowed, assert_only, run, with};
use serde_json::json;

#[test]
fn allow_privilege_escalation() {
    let pod = with(|p| {
        p["spec"]["containers"] = json!([
            common::container("ok"),
            {"name": "a", "securityContext": {"allowPrivilegeEscalation": true, "capabilities": {"drop": ["ALL"]}}},
            {"name": "b", "securityContext": {"capabilities": {"drop": ["ALL"]}}},
        ]);
    });
    assert_only(
        "restricted:latest",
        &pod,
        "allowPrivilegeEscalation != false",
        r#"containers "a", "b" must set securityContext.allowPrivilegeEscalation=false"#,
    );
    assert_allowed("baseline:latest", &pod);
    // The field arrived in 1.8: policy v1.7 does not check it.
    assert_allowed("restricted:v1.7", &pod);
    assert_eq!(run("restricted:v1.8", &pod).len(), 1);
}

#[test]
fn allow_privilege_escalation_is_linux_only_from_v1_25() {
    let pod = with(|p| {
        p["spec"]["os"] = json!({"name": "windows"});
        p["spec"]["containers"][0]["securityContext"] = json!({"capabilities": {"drop": ["ALL"]}});
    });
    assert_allowed("restricted:v1.25", &pod);
    assert_eq!(common::only("restricted:v1.24", &pod).reason, "allowPrivilegeEscalation != false");
    let linux = with(|p| {
        p["spec"]["os"] = json!({"name": "linux"});
        p["spec"]["containers"][0]["securityContext"] = json!({"capabilities": {"drop": ["ALL"]}});
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
    assert_allowed("restricted:v1.21", &no_drop);
    assert_eq!(common::only("restricted:v1.22", &no_drop).reason, "unrestricted capabilities");
}

#[test]
fn capabilities_restricted_is_linux_only_from_v1_25() {
    let pod = with(|p| {
        p["spec"]["os"] = json!({"name": "windows"});
        p["spec"]["containers"][0]["securityContext"] = json!({"allowPrivilegeEscalation": false});
    });
    assert_allowed("restricted:latest", &pod);
    assert_eq!(common::only("restricted:v1.24", &pod).reason, "unrestricted capabilities");
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
        p["spec"]["containers"] =
            json!([common::container("a"), common::container("b"), common::container("c"),]);
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
        p["spec"]["containers"] =
            json!([common::container("a"), common::container("b"), common::container("c")]);
        p["spec"]["containers"][2]["securityContext"]["runAsNonRoot"] = json!(true);
    });
    assert_only(
        "restricted:latest",
        &implicit,
        "runAsNonRoot != true",
        r#"pod or containers "a", "b" must set securityContext.runAsNonRoot=true"#,
    );
    assert_allowed("baseline:latest", &implicit);
    // Checked since v1.0.
    assert_eq!(common::only("restricted:v1.0", &implicit).reason, "runAsNonRoot != true");
    // Applies to Windows pods too.
    let windows = with(|p| {
        p["spec"]["os"] = json!({"name": "windows"});
        p["spec"]["securityContext"] = json!({});
    });
    assert_eq!(common::only("restricted:latest", &windows).reason, "runAsNonRoot != true");
}

#[test]
fn run_as_user() {
    let pod = with(|p| {
        p["spec"]["securityContext"]["runAsUser"] = json!(0);
        p["spec"]["containers"] = json!([common::container("a"), common::container("b")]);
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
    assert_allowed("restricted:v1.22", &pod);
    assert_eq!(common::only("restricted:v1.23", &pod).reason, "runAsUser=0");
    // No user-namespace relaxation at 1.34 (it sits behind a default-off feature gate).
    let userns = with(|p| {
        p["spec"]["hostUsers"] = json!(false);
        p["spec"]["securityContext"]["runAsUser"] = json!(0);
    });
    assert_eq!(common::only("restricted:latest", &userns).reason, "runAsUser=0");
}

#[test]
fn seccomp_restricted() {
    let implicit = with(|p| {
        p["spec"]["securityContext"] = json!({"runAsNonRoot": true});
        p["spec"]["containers"] = json!([common::container("a"), common::container("b")]);
        p["spec"]["containers"][1]["securityContext"]["seccompProfile"] =
            json!({"type": "Localhost", "localhostProfile": "x"});
    });
    assert_only(
        "restricted:latest",
        &implicit,
        "seccompProfile",
        r#"pod or container "a" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
    );
    // Unset is fine for baseline.
    assert_allowed("baseline:latest", &implicit);
    let explicit = with(|p| {
        p["spec"]["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"});
        p["spec"]["containers"] = json!([common::container("a"), common::container("b")]);
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
    // New in policy v1.19.
    assert_allowed("restricted:v1.18", &implicit);
}

#[test]
fn seccomp_restricted_is_linux_only_from_v1_25() {
    let pod = with(|p| {
        p["spec"]["os"] = json!({"name": "windows"});
        p["spec"]["securityContext"] = json!({"runAsNonRoot": true});
    });
    assert_allowed("restricted:v1.25", &pod);
    assert_eq!(common::only("restricted:v1.24", &pod).reason, "seccompProfile");
    // A Windows pod is still held to baseline's seccomp rule.
    let unconfined = with(|p| {
        p["spec"]["os"] = json!({"name": "windows"});
        p["spec"]["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"});
    });
    assert_eq!(common::only("baseline:latest", &unconfined).reason, "seccompProfile");
    assert_allowed("restricted:latest", &unconfined);
}

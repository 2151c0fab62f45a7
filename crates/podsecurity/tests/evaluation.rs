//! Level and version selection, result order, and the aggregated messages users see.

mod common;

use common::{detail, lv, reasons, run};
use keelson_podsecurity::{LATEST_MINOR, Version, Violation, message, warning};
use serde_json::json;

#[test]
fn privileged_checks_nothing() {
    let pod = json!({"spec": {
        "hostNetwork": true,
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
        "containers": [{"name": "x", "securityContext": {"privileged": true}}],
    }});
    assert!(run("privileged:latest", &pod).is_empty());
    assert!(run("privileged:v1.0", &pod).is_empty());
    assert_eq!(run("baseline:latest", &pod).len(), 3);
}

#[test]
fn baseline_message_matches_upstream() {
    let pod = json!({"spec": {
        "hostNetwork": true,
        "containers": [{"name": "x", "securityContext": {"privileged": true}}],
    }});
    let level = lv("baseline:latest");
    let violations = run("baseline:latest", &pod);
    assert_eq!(
        message(&level, &violations),
        r#"violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true), privileged (container "x" must not set securityContext.privileged=true)"#
    );
}

#[test]
fn default_pod_under_restricted_reads_like_kubectl() {
    let pod = json!({"metadata": {"name": "nginx"}, "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}});
    let level = lv("restricted:latest");
    assert_eq!(
        warning(&level, &run("restricted:latest", &pod)),
        concat!(
            r#"would violate PodSecurity "restricted:latest": "#,
            r#"allowPrivilegeEscalation != false (container "nginx" must set securityContext.allowPrivilegeEscalation=false), "#,
            r#"unrestricted capabilities (container "nginx" must set securityContext.capabilities.drop=["ALL"]), "#,
            r#"runAsNonRoot != true (pod or container "nginx" must set securityContext.runAsNonRoot=true), "#,
            r#"seccompProfile (pod or container "nginx" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
        )
    );
}

#[test]
fn baseline_results_come_before_restricted_results_each_sorted_by_check_id() {
    let pod = json!({"spec": {
        "hostNetwork": true,
        "securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]},
        "volumes": [{"name": "v", "hostPath": {"path": "/"}}],
        "containers": [{"name": "c", "ports": [{"hostPort": 80}],
                        "securityContext": {"runAsUser": 0, "procMount": "Unmasked"}}],
    }});
    assert_eq!(
        reasons("restricted:latest", &pod),
        [
            "host namespaces",
            "hostPort",
            "procMount",
            "forbidden sysctls",
            "allowPrivilegeEscalation != false",
            "unrestricted capabilities",
            "restricted volume types",
            "runAsNonRoot != true",
            "runAsUser=0",
            "seccompProfile",
        ]
    );
    assert_eq!(
        reasons("baseline:latest", &pod),
        ["host namespaces", "hostPath volumes", "hostPort", "procMount", "forbidden sysctls"]
    );
}

#[test]
fn latest_is_v1_34_and_newer_versions_clamp_to_it() {
    assert_eq!(LATEST_MINOR, 34);
    assert_eq!(Version::Latest.effective_minor(), 34);
    assert_eq!(Version::V1(40).effective_minor(), 34);
    assert_eq!(Version::V1(20).effective_minor(), 20);
    let pod = json!({"spec": {
        "securityContext": {"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "1"}]},
        "containers": [{"name": "a", "livenessProbe": {"tcpSocket": {"host": "h", "port": 1}}}],
    }});
    assert_eq!(detail("baseline:latest", &pod), detail("baseline:v1.99", &pod));
    assert_eq!(detail("baseline:latest", &pod), detail("baseline:v1.34", &pod));
    assert_ne!(detail("baseline:latest", &pod), detail("baseline:v1.31", &pod));
}

#[test]
fn at_v1_0_only_the_original_checks_run() {
    // A pod that fails every check that was added after v1.0 and nothing else.
    let pod = json!({"spec": {
        "securityContext": {"runAsNonRoot": true, "runAsUser": 0,
                            "sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "1"}]},
        "containers": [{"name": "a", "securityContext": {"allowPrivilegeEscalation": true,
                        "seLinuxOptions": {"type": "container_engine_t"}},
                        "readinessProbe": {"httpGet": {"host": "h"}}}],
    }});
    assert!(
        run("restricted:v1.0", &pod)
            .iter()
            .all(|v| v.reason == "forbidden sysctls" || v.reason == "seLinuxOptions")
    );
    assert_eq!(run("restricted:v1.0", &pod).len(), 2);
    assert_eq!(
        reasons("restricted:latest", &pod),
        [
            "probe or lifecycle host",
            "allowPrivilegeEscalation != false",
            "unrestricted capabilities",
            "runAsUser=0",
            "seccompProfile",
        ]
    );
}

#[test]
fn level_version_display() {
    assert_eq!(lv("baseline:latest").to_string(), "baseline:latest");
    assert_eq!(lv("restricted:v1.30").to_string(), "restricted:v1.30");
    assert_eq!(lv("privileged:v1.0").to_string(), "privileged:v1.0");
}

#[test]
fn empty_details_print_without_parentheses() {
    let v = [
        Violation { reason: "a".into(), detail: String::new() },
        Violation { reason: "b".into(), detail: "x".into() },
    ];
    assert_eq!(
        message(&lv("baseline:v1.2"), &v),
        r#"violates PodSecurity "baseline:v1.2": a, b (x)"#
    );
}

#[test]
fn missing_and_null_fields_read_as_unset() {
    let pod = json!({"spec": {
        "hostNetwork": null,
        "securityContext": null,
        "containers": [{"name": "a", "securityContext": {"privileged": null, "capabilities": null}}],
        "volumes": [{"name": "v", "hostPath": null, "emptyDir": {}}],
    }});
    assert!(run("baseline:latest", &pod).is_empty());
    assert!(run("baseline:latest", &json!({})).is_empty());
    assert!(run("restricted:latest", &json!({"spec": {}})).is_empty());
}

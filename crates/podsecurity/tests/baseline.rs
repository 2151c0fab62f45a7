//! Each baseline control: what passes, what fails, and upstream's exact wording. Every pod
//! starts restricted-clean, so a failure here is the control under test and nothing else;
//! each is also checked under restricted, which includes baseline.

mod common;

use common::{assert_allowed, assert_only, with};
use serde_json::json;

#[test]
fn host_namespaces() {
    let pod = with(|p| {
        p["spec"]["hostNetwork"] = json!(true);
        p["spec"]["hostIPC"] = json!(true);
        p["spec"]["hostPID"] = json!(true);
    });
    let detail = "hostNetwork=true, hostPID=true, hostIPC=true";
    assert_only("baseline:latest", &pod, "host namespaces", detail);
    assert_only("restricted:latest", &pod, "host namespaces", detail);
    let unset = with(|p| p["spec"]["hostNetwork"] = json!(false));
    assert_allowed("baseline:latest", &unset);
}

#[test]
fn privileged_counts_every_container_list() {
    let pod = with(|p| {
        p["spec"]["initContainers"] =
            json!([{"name": "init", "securityContext": {"privileged": true}}]);
        p["spec"]["containers"] = json!([
            {"name": "a"},
            {"name": "b", "securityContext": {}},
            {"name": "c", "securityContext": {"privileged": false}},
            {"name": "d", "securityContext": {"privileged": true}},
        ]);
        p["spec"]["ephemeralContainers"] =
            json!([{"name": "debug", "securityContext": {"privileged": true}}]);
    });
    assert_only(
        "baseline:latest",
        &pod,
        "privileged",
        r#"containers "init", "d", "debug" must not set securityContext.privileged=true"#,
    );
    let one = with(|p| p["spec"]["containers"][0]["securityContext"]["privileged"] = json!(true));
    assert_only(
        "baseline:latest",
        &one,
        "privileged",
        r#"container "app" must not set securityContext.privileged=true"#,
    );
}

#[test]
fn capabilities_baseline() {
    let pod = json!({"spec": {"containers": [
        {"name": "a", "securityContext": {"capabilities": {"add": ["FOO", "BAR"]}}},
        {"name": "b", "securityContext": {"capabilities": {"add": ["BAR", "BAZ"]}}},
        {"name": "c", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN", "KILL"]}}},
    ]}});
    assert_only(
        "baseline:latest",
        &pod,
        "non-default capabilities",
        r#"containers "a", "b" must not include "BAR", "BAZ", "FOO" in securityContext.capabilities.add"#,
    );
    let net_raw = json!({"spec": {"containers": [
        {"name": "a", "securityContext": {"capabilities": {"add": ["NET_RAW"]}}},
    ]}});
    assert_only(
        "baseline:latest",
        &net_raw,
        "non-default capabilities",
        r#"container "a" must not include "NET_RAW" in securityContext.capabilities.add"#,
    );
}

#[test]
fn host_path_volumes() {
    let pod = json!({"spec": {"volumes": [
        {"name": "a", "hostPath": {"path": "/"}},
        {"name": "b", "hostPath": {}},
        {"name": "c", "emptyDir": {}},
    ]}});
    assert_only("baseline:latest", &pod, "hostPath volumes", r#"volumes "a", "b""#);
    let one = json!({"spec": {"volumes": [{"name": "a", "hostPath": {"path": "/"}}]}});
    assert_only("baseline:latest", &one, "hostPath volumes", r#"volume "a""#);
}

#[test]
fn host_ports() {
    let one = json!({"spec": {"containers": [
        {"name": "a", "ports": [{"hostPort": 0}]},
        {"name": "b", "ports": [{"hostPort": 0}, {"hostPort": 20}]},
    ]}});
    assert_only("baseline:latest", &one, "hostPort", r#"container "b" uses hostPort 20"#);
    let many = json!({"spec": {"containers": [
        {"name": "a", "ports": [{"containerPort": 80}]},
        {"name": "b", "ports": [{"hostPort": 0}, {"hostPort": 10}, {"hostPort": 20}]},
        {"name": "c", "ports": [{"hostPort": 0}, {"hostPort": 10}, {"hostPort": 30}]},
    ]}});
    assert_only(
        "baseline:latest",
        &many,
        "hostPort",
        r#"containers "b", "c" use hostPorts 10, 20, 30"#,
    );
    // Upstream sorts the ports as strings.
    let sorted = json!({"spec": {"containers": [
        {"name": "a", "ports": [{"hostPort": 8080}, {"hostPort": 10000}]},
    ]}});
    assert_only(
        "baseline:latest",
        &sorted,
        "hostPort",
        r#"container "a" uses hostPorts 10000, 8080"#,
    );
}

#[test]
fn host_probes_and_lifecycle_hosts() {
    let pod = with(|p| {
        p["spec"]["containers"] = json!([
            {"name": "b", "livenessProbe": {"httpGet": {"host": "10.0.0.1", "port": 80}}},
            {"name": "a", "lifecycle": {"preStop": {"tcpSocket": {"host": "example.com", "port": 1}}},
             "readinessProbe": {"tcpSocket": {"host": "10.0.0.1", "port": 1}}},
            {"name": "ok", "startupProbe": {"httpGet": {"host": "", "port": 80}}},
        ]);
    });
    let v = common::run("baseline:latest", &pod);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].reason, "probe or lifecycle host");
    assert_eq!(
        v[0].detail,
        r#"containers "a", "b" use probe or lifecycle hosts "10.0.0.1", "example.com""#
    );

    let one = json!({"spec": {"initContainers": [
        {"name": "init", "lifecycle": {"postStart": {"httpGet": {"host": "169.254.169.254"}}}},
    ]}});
    assert_only(
        "baseline:latest",
        &one,
        "probe or lifecycle host",
        r#"container "init" uses probe or lifecycle host "169.254.169.254""#,
    );
    // New in policy v1.34.
    common::assert_new_in("baseline", 34, &one, "probe or lifecycle host");
}

#[test]
fn app_armor_field_and_annotations() {
    let pod_level =
        json!({"spec": {"securityContext": {"appArmorProfile": {"type": "Unconfined"}}}});
    assert_only(
        "baseline:latest",
        &pod_level,
        "forbidden AppArmor profile",
        r#"pod must not set AppArmor profile type to "Unconfined""#,
    );
    let init = json!({"spec": {
        "securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "foo", "securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": "x"}}}],
        "initContainers": [{"name": "bar", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}],
    }});
    assert_only(
        "baseline:latest",
        &init,
        "forbidden AppArmor profile",
        r#"container "bar" must not set AppArmor profile type to "Unconfined""#,
    );
    let annotations = json!({"metadata": {"annotations": {
        "container.apparmor.security.beta.kubernetes.io/": "bogus",
        "container.apparmor.security.beta.kubernetes.io/a": "",
        "container.apparmor.security.beta.kubernetes.io/b": "runtime/default",
        "container.apparmor.security.beta.kubernetes.io/c": "localhost/",
        "container.apparmor.security.beta.kubernetes.io/d": "localhost/foo",
        "container.apparmor.security.beta.kubernetes.io/e": "unconfined",
        "container.apparmor.security.beta.kubernetes.io/f": "unknown",
        "env": "prod",
    }}});
    assert_only(
        "baseline:latest",
        &annotations,
        "forbidden AppArmor profiles",
        concat!(
            r#"annotations must not set AppArmor profile type to "#,
            r#""container.apparmor.security.beta.kubernetes.io/="bogus"", "#,
            r#""container.apparmor.security.beta.kubernetes.io/e="unconfined"", "#,
            r#""container.apparmor.security.beta.kubernetes.io/f="unknown"""#,
        ),
    );
    // The field check was added to the single v1.0 revision, so it applies at every version.
    assert!(!common::run("baseline:v1.0", &pod_level).is_empty());
    let both = json!({
        "metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/x": "unconfined"}},
        "spec": {"securityContext": {"appArmorProfile": {"type": "Unconfined"}},
                 "containers": [{"name": "x", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}]},
    });
    assert_only(
        "baseline:latest",
        &both,
        "forbidden AppArmor profiles",
        concat!(
            r#"pod and container "x" and annotation must not set AppArmor profile type to "#,
            r#""Unconfined", "container.apparmor.security.beta.kubernetes.io/x="unconfined"""#,
        ),
    );
}

#[test]
fn se_linux_options() {
    let containers = json!([
        {"name": "a", "securityContext": {"seLinuxOptions": {"type": "container_t"}}},
        {"name": "b", "securityContext": {"seLinuxOptions": {"type": "container_init_t"}}},
        {"name": "c", "securityContext": {"seLinuxOptions": {"type": "container_kvm_t"}}},
        {"name": "d", "securityContext": {"seLinuxOptions": {"type": "container_engine_t"}}},
        {"name": "e", "securityContext": {"seLinuxOptions": {"type": "bar"}}},
        {"name": "f", "securityContext": {"seLinuxOptions": {"user": "bar"}}},
        {"name": "g", "securityContext": {"seLinuxOptions": {"role": "baz"}}},
    ]);
    let pod = json!({"spec": {
        "securityContext": {"seLinuxOptions": {"type": "foo", "user": "bar", "role": "baz"}},
        "containers": containers,
    }});
    assert_only(
        "baseline:latest",
        &pod,
        "seLinuxOptions",
        r#"pod and containers "e", "f", "g" set forbidden securityContext.seLinuxOptions: types "bar", "foo"; user may not be set; role may not be set"#,
    );
    let only_containers =
        json!({"spec": {"securityContext": {"seLinuxOptions": {}}, "containers": containers}});
    assert_only(
        "baseline:latest",
        &only_containers,
        "seLinuxOptions",
        r#"containers "e", "f", "g" set forbidden securityContext.seLinuxOptions: type "bar"; user may not be set; role may not be set"#,
    );
    let user = json!({"spec": {"securityContext": {"seLinuxOptions": {"user": "bad"}}}});
    assert_only(
        "baseline:latest",
        &user,
        "seLinuxOptions",
        "pod set forbidden securityContext.seLinuxOptions: user may not be set",
    );
    // container_engine_t is allowed from policy v1.31.
    let engine =
        json!({"spec": {"securityContext": {"seLinuxOptions": {"type": "container_engine_t"}}}});
    assert_allowed("baseline:v1.31", &engine);
    assert_only(
        "baseline:v1.30",
        &engine,
        "seLinuxOptions",
        r#"pod set forbidden securityContext.seLinuxOptions: type "container_engine_t""#,
    );
}

#[test]
fn proc_mount() {
    let pod = with(|p| {
        p["spec"]["containers"][0]["securityContext"]["procMount"] = json!("Unmasked");
        p["spec"]["initContainers"] =
            json!([{"name": "i", "securityContext": {"procMount": "Default"}}]);
    });
    assert_only(
        "baseline:latest",
        &pod,
        "procMount",
        r#"container "app" must not set securityContext.procMount to "Unmasked""#,
    );
    common::assert_no_user_namespace_relaxation(
        "baseline:latest",
        |p| p["spec"]["containers"][0]["securityContext"]["procMount"] = json!("Unmasked"),
        "procMount",
    );
}

#[test]
fn seccomp_baseline_field() {
    let pod = json!({"spec": {
        "securityContext": {"seccompProfile": {"type": "Unconfined"}},
        "containers": [
            {"name": "a", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
            {"name": "b", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
            {"name": "c"},
        ],
    }});
    assert_only(
        "baseline:latest",
        &pod,
        "seccompProfile",
        r#"pod and container "b" must not set securityContext.seccompProfile.type to "Unconfined""#,
    );
    // Baseline allows an unset profile.
    assert_allowed("baseline:latest", &json!({"spec": {"containers": [{"name": "a"}]}}));
}

#[test]
fn seccomp_baseline_annotations_before_v1_19() {
    let pod = json!({
        "metadata": {"annotations": {
            "seccomp.security.alpha.kubernetes.io/pod": "unconfined",
            "container.seccomp.security.alpha.kubernetes.io/a": "runtime/default",
            "container.seccomp.security.alpha.kubernetes.io/b": "unconfined",
            "container.seccomp.security.alpha.kubernetes.io/other": "unconfined",
        }},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
    });
    assert_only(
        "baseline:v1.18",
        &pod,
        "seccompProfile",
        concat!(
            r#"forbidden annotations container.seccomp.security.alpha.kubernetes.io/b="unconfined", "#,
            r#"seccomp.security.alpha.kubernetes.io/pod="unconfined""#,
        ),
    );
    // From v1.19 the field is checked and the annotations are not.
    assert_allowed("baseline:v1.19", &pod);
    // Restricted below v1.19 has no restricted seccomp check, so the baseline one runs.
    assert_eq!(
        common::run("restricted:v1.18", &pod)
            .iter()
            .filter(|v| v.reason == "seccompProfile")
            .count(),
        1
    );
}

#[test]
fn sysctls_by_version() {
    let sysctls = |names: &[&str]| {
        let list: Vec<_> = names.iter().map(|n| json!({"name": n, "value": "1"})).collect();
        json!({"spec": {"securityContext": {"sysctls": list}}})
    };
    assert_only("baseline:latest", &sysctls(&["a", "b"]), "forbidden sysctls", "a, b");
    let v1_0 = sysctls(&[
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
    ]);
    assert_allowed("baseline:v1.0", &v1_0);
    let reserved = sysctls(&["net.ipv4.ip_local_reserved_ports"]);
    assert_allowed("baseline:v1.27", &reserved);
    assert_only(
        "baseline:v1.26",
        &reserved,
        "forbidden sysctls",
        "net.ipv4.ip_local_reserved_ports",
    );
    let keepalive = sysctls(&[
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ]);
    assert_allowed("baseline:v1.29", &keepalive);
    assert_eq!(common::only("baseline:v1.28", &keepalive).detail.matches(", ").count(), 3);
    let buffers = sysctls(&["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"]);
    assert_allowed("baseline:v1.32", &buffers);
    assert_allowed("baseline:latest", &buffers);
    assert_only(
        "baseline:v1.31",
        &buffers,
        "forbidden sysctls",
        "net.ipv4.tcp_rmem, net.ipv4.tcp_wmem",
    );
}

#[test]
fn windows_host_process() {
    let pod = json!({"spec": {
        "securityContext": {"windowsOptions": {"hostProcess": true}},
        "containers": [
            {"name": "a"},
            {"name": "b", "securityContext": {}},
            {"name": "c", "securityContext": {"windowsOptions": {}}},
            {"name": "d", "securityContext": {"windowsOptions": {"hostProcess": false}}},
            {"name": "e", "securityContext": {"windowsOptions": {"hostProcess": true}}},
            {"name": "f", "securityContext": {"windowsOptions": {"hostProcess": true}}},
        ],
    }});
    assert_only(
        "baseline:latest",
        &pod,
        "hostProcess",
        r#"pod and containers "e", "f" must not set securityContext.windowsOptions.hostProcess=true"#,
    );
}

#[test]
fn restricted_clean_pod_passes_every_level_and_version() {
    let pod = common::restricted_pod();
    for minor in 0..=40 {
        for level in ["privileged", "baseline", "restricted"] {
            assert_allowed(&format!("{level}:v1.{minor}"), &pod);
        }
    }
    assert_allowed("restricted:latest", &pod);
}

//! The baseline controls (upstream's `check_*.go` with `Level: api.LevelBaseline`): they
//! prevent known privilege escalations while allowing the default pod configuration.

use std::collections::BTreeSet;

use super::{
    Check, Pod, Revision, bool_at, containers_phrase, get, go_quote, join_quote, name, pluralize,
    str_at, strings, violation,
};
use crate::Violation;

/// Baseline checks, sorted by ID as upstream orders them.
pub(super) static CHECKS: &[Check] = &[
    check("appArmorProfile", &[rev(0, app_armor_profile)]),
    check("capabilities_baseline", &[rev(0, capabilities_baseline)]),
    check("hostNamespaces", &[rev(0, host_namespaces)]),
    check("hostPathVolumes", &[rev(0, host_path_volumes)]),
    check("hostPorts", &[rev(0, host_ports)]),
    check("hostProbesAndHostLifecycle", &[rev(34, host_probes_and_host_lifecycle)]),
    check("privileged", &[rev(0, privileged)]),
    check("procMount", &[rev(0, proc_mount)]),
    check("seLinuxOptions", &[rev(0, se_linux_options_v1_0), rev(31, se_linux_options_v1_31)]),
    check("seccompProfile_baseline", &[rev(0, seccomp_annotations), rev(19, seccomp_baseline)]),
    check(
        "sysctls",
        &[
            rev(0, sysctls_v1_0),
            rev(27, sysctls_v1_27),
            rev(29, sysctls_v1_29),
            rev(32, sysctls_v1_32),
        ],
    ),
    check("windowsHostProcess", &[rev(0, windows_host_process)]),
];

const fn check(id: &'static str, revisions: &'static [Revision]) -> Check {
    Check { id, revisions }
}

const fn rev(min_minor: u32, run: fn(&Pod<'_>) -> Option<Violation>) -> Revision {
    Revision { min_minor, run, overrides: &[] }
}

/// `appArmorProfile.type` (pod and containers) must be RuntimeDefault or Localhost, and the
/// deprecated `container.apparmor.security.beta.kubernetes.io/*` annotations must be empty,
/// `runtime/default` or `localhost/*`. One revision since v1.0 (upstream amended it in place
/// when the field arrived).
fn app_armor_profile(pod: &Pod<'_>) -> Option<Violation> {
    const ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
    let bad_type = |sc: Option<&serde_json::Value>| -> Option<String> {
        let profile = get(sc?, &["appArmorProfile"])?;
        let ty = str_at(profile, &["type"]).unwrap_or("");
        (!matches!(ty, "RuntimeDefault" | "Localhost")).then(|| ty.to_owned())
    };
    let mut setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    if let Some(ty) = bad_type(get(pod.spec, &["securityContext"])) {
        setters.push("pod".to_owned());
        bad_values.insert(ty);
    }
    let mut bad_containers = Vec::new();
    for c in pod.containers() {
        if let Some(ty) = bad_type(get(c, &["securityContext"])) {
            bad_containers.push(name(c));
            bad_values.insert(ty);
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }
    let mut bad_annotations: Vec<String> = pod
        .annotations()
        .filter(|(k, v)| {
            k.starts_with(ANNOTATION_PREFIX)
                && !(v.is_empty() || *v == "runtime/default" || v.starts_with("localhost/"))
        })
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    bad_annotations.sort();
    let mut bad_values: Vec<String> = bad_values.into_iter().collect();
    if !bad_annotations.is_empty() {
        setters.push(pluralize("annotation", "annotations", bad_annotations.len()).to_owned());
        bad_values.extend(bad_annotations);
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        pluralize("forbidden AppArmor profile", "forbidden AppArmor profiles", bad_values.len()),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&bad_values)
        ),
    )
}

/// The capabilities a baseline container may add: the container runtime's default set.
const DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// `securityContext.capabilities.add` may only hold the default capabilities.
fn capabilities_baseline(pod: &Pod<'_>) -> Option<Violation> {
    let mut bad_containers = Vec::new();
    let mut non_default = BTreeSet::new();
    for c in pod.containers() {
        let mut valid = true;
        for cap in strings(c, &["securityContext", "capabilities", "add"]) {
            if !DEFAULT_CAPABILITIES.contains(&cap) {
                valid = false;
                non_default.insert(cap);
            }
        }
        if !valid {
            bad_containers.push(name(c));
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad_containers),
            join_quote(&non_default)
        ),
    )
}

/// `hostNetwork`, `hostPID` and `hostIPC` must be unset or false.
fn host_namespaces(pod: &Pod<'_>) -> Option<Violation> {
    let set: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|f| bool_at(pod.spec, &[f]) == Some(true))
        .map(|f| format!("{f}=true"))
        .collect();
    if set.is_empty() {
        return None;
    }
    violation("host namespaces", set.join(", "))
}

/// No `hostPath` volumes.
fn host_path_volumes(pod: &Pod<'_>) -> Option<Violation> {
    let bad: Vec<String> =
        pod.volumes().filter(|v| get(v, &["hostPath"]).is_some()).map(name).collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "hostPath volumes",
        format!("{} {}", pluralize("volume", "volumes", bad.len()), join_quote(&bad)),
    )
}

/// No container port may set a non-zero `hostPort`.
fn host_ports(pod: &Pod<'_>) -> Option<Violation> {
    let mut bad_containers = Vec::new();
    // Upstream collects the ports as strings in a sorted set, so "10000" sorts before "80".
    let mut ports = BTreeSet::new();
    for c in pod.containers() {
        let mut valid = true;
        for port in super::array(c, &["ports"]) {
            let host_port = get(port, &["hostPort"]).and_then(serde_json::Value::as_i64);
            if let Some(p) = host_port.filter(|p| *p != 0) {
                valid = false;
                ports.insert(p.to_string());
            }
        }
        if !valid {
            bad_containers.push(name(c));
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad_containers),
            pluralize("uses", "use", bad_containers.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

/// Probes and lifecycle handlers must not set `httpGet.host` or `tcpSocket.host` (v1.34+;
/// the kubelet would otherwise connect wherever the pod says).
fn host_probes_and_host_lifecycle(pod: &Pod<'_>) -> Option<Violation> {
    const HANDLERS: &[&[&str]] = &[
        &["livenessProbe"],
        &["readinessProbe"],
        &["startupProbe"],
        &["lifecycle", "postStart"],
        &["lifecycle", "preStop"],
    ];
    let mut bad_containers = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for c in pod.containers() {
        for path in HANDLERS {
            let Some(handler) = get(c, path) else { continue };
            for action in ["httpGet", "tcpSocket"] {
                match str_at(handler, &[action, "host"]) {
                    Some(host) if !host.is_empty() => {
                        bad_containers.insert(name(c));
                        hosts.insert(host.to_owned());
                    }
                    _ => {}
                }
            }
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    violation(
        "probe or lifecycle host",
        format!(
            "{} {} {} {} {}",
            pluralize("container", "containers", bad_containers.len()),
            join_quote(&bad_containers),
            pluralize("uses", "use", bad_containers.len()),
            pluralize("probe or lifecycle host", "probe or lifecycle hosts", hosts.len()),
            join_quote(&hosts)
        ),
    )
}

/// `securityContext.privileged` must be unset or false.
fn privileged(pod: &Pod<'_>) -> Option<Violation> {
    let bad: Vec<String> = pod
        .containers()
        .filter(|c| bool_at(c, &["securityContext", "privileged"]) == Some(true))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "privileged",
        format!("{} must not set securityContext.privileged=true", containers_phrase(&bad)),
    )
}

/// `securityContext.procMount` must be unset or `Default`.
///
/// Upstream 1.34 relaxes this for `hostUsers: false` pods only behind the alpha, default-off
/// `UserNamespacesPodSecurityStandards` feature gate; this crate evaluates the default.
fn proc_mount(pod: &Pod<'_>) -> Option<Violation> {
    let mut bad_containers = Vec::new();
    let mut types = BTreeSet::new();
    for c in pod.containers() {
        match str_at(c, &["securityContext", "procMount"]) {
            Some(ty) if ty != "Default" => {
                bad_containers.push(name(c));
                types.insert(ty);
            }
            _ => {}
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad_containers),
            join_quote(&types)
        ),
    )
}

fn se_linux_options_v1_0(pod: &Pod<'_>) -> Option<Violation> {
    se_linux_options(pod, &["", "container_t", "container_init_t", "container_kvm_t"])
}

fn se_linux_options_v1_31(pod: &Pod<'_>) -> Option<Violation> {
    let allowed = ["", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"];
    se_linux_options(pod, &allowed)
}

/// `seLinuxOptions.type` must be one of `allowed_types`; `user` and `role` must be unset.
fn se_linux_options(pod: &Pod<'_>, allowed_types: &[&str]) -> Option<Violation> {
    let mut bad_types = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut valid = |sc: Option<&serde_json::Value>| -> bool {
        let Some(opts) = sc.and_then(|sc| get(sc, &["seLinuxOptions"])) else { return true };
        let mut ok = true;
        let ty = str_at(opts, &["type"]).unwrap_or("");
        if !allowed_types.contains(&ty) {
            ok = false;
            bad_types.insert(ty.to_owned());
        }
        if !str_at(opts, &["user"]).unwrap_or("").is_empty() {
            ok = false;
            set_user = true;
        }
        if !str_at(opts, &["role"]).unwrap_or("").is_empty() {
            ok = false;
            set_role = true;
        }
        ok
    };
    let mut setters = Vec::new();
    if !valid(get(pod.spec, &["securityContext"])) {
        setters.push("pod".to_owned());
    }
    let bad_containers: Vec<String> =
        pod.containers().filter(|c| !valid(get(c, &["securityContext"]))).map(name).collect();
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        data.push(format!(
            "{} {}",
            pluralize("type", "types", bad_types.len()),
            join_quote(&bad_types)
        ));
    }
    if set_user {
        data.push("user may not be set".to_owned());
    }
    if set_role {
        data.push("role may not be set".to_owned());
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    )
}

/// Before v1.19: the alpha seccomp annotations must not select an unconfined profile.
fn seccomp_annotations(pod: &Pod<'_>) -> Option<Violation> {
    const POD_KEY: &str = "seccomp.security.alpha.kubernetes.io/pod";
    const CONTAINER_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";
    let valid =
        |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let mut forbidden = BTreeSet::new();
    if let Some(v) = pod.annotation(POD_KEY).filter(|v| !valid(v)) {
        forbidden.insert(format!("{POD_KEY}={}", go_quote(v)));
    }
    for c in pod.containers() {
        let key = format!("{CONTAINER_PREFIX}{}", name(c));
        if let Some(v) = pod.annotation(&key).filter(|v| !valid(v)) {
            forbidden.insert(format!("{key}={}", go_quote(v)));
        }
    }
    if forbidden.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", forbidden.len()),
            forbidden.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

pub(super) fn valid_seccomp(ty: &str) -> bool {
    matches!(ty, "RuntimeDefault" | "Localhost")
}

/// From v1.19: `seccompProfile.type`, where set, must be RuntimeDefault or Localhost.
fn seccomp_baseline(pod: &Pod<'_>) -> Option<Violation> {
    let bad_type = |sc: Option<&serde_json::Value>| -> Option<String> {
        let profile = get(sc?, &["seccompProfile"])?;
        let ty = str_at(profile, &["type"]).unwrap_or("");
        (!valid_seccomp(ty)).then(|| ty.to_owned())
    };
    let mut setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    if let Some(ty) = bad_type(get(pod.spec, &["securityContext"])) {
        setters.push("pod".to_owned());
        bad_values.insert(ty);
    }
    let mut bad_containers = Vec::new();
    for c in pod.containers() {
        if let Some(ty) = bad_type(get(c, &["securityContext"])) {
            bad_containers.push(name(c));
            bad_values.insert(ty);
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters.join(" and "),
            join_quote(&bad_values)
        ),
    )
}

const SAFE_SYSCTLS_V1_0: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
];
const SAFE_SYSCTLS_V1_27: &[&str] = &["net.ipv4.ip_local_reserved_ports"];
const SAFE_SYSCTLS_V1_29: &[&str] = &[
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
const SAFE_SYSCTLS_V1_32: &[&str] = &["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"];

fn sysctls_v1_0(pod: &Pod<'_>) -> Option<Violation> {
    sysctls(pod, &[SAFE_SYSCTLS_V1_0])
}

fn sysctls_v1_27(pod: &Pod<'_>) -> Option<Violation> {
    sysctls(pod, &[SAFE_SYSCTLS_V1_0, SAFE_SYSCTLS_V1_27])
}

fn sysctls_v1_29(pod: &Pod<'_>) -> Option<Violation> {
    sysctls(pod, &[SAFE_SYSCTLS_V1_0, SAFE_SYSCTLS_V1_27, SAFE_SYSCTLS_V1_29])
}

fn sysctls_v1_32(pod: &Pod<'_>) -> Option<Violation> {
    let safe = [SAFE_SYSCTLS_V1_0, SAFE_SYSCTLS_V1_27, SAFE_SYSCTLS_V1_29, SAFE_SYSCTLS_V1_32];
    sysctls(pod, &safe)
}

/// `spec.securityContext.sysctls[*].name` must be in the safe set of the policy version.
fn sysctls(pod: &Pod<'_>, safe: &[&[&str]]) -> Option<Violation> {
    let forbidden: Vec<&str> = super::array(pod.spec, &["securityContext", "sysctls"])
        .map(|s| str_at(s, &["name"]).unwrap_or(""))
        .filter(|n| !safe.iter().any(|set| set.contains(n)))
        .collect();
    if forbidden.is_empty() {
        return None;
    }
    violation("forbidden sysctls", forbidden.join(", "))
}

/// `windowsOptions.hostProcess` (pod and containers) must be unset or false.
fn windows_host_process(pod: &Pod<'_>) -> Option<Violation> {
    let host_process = |v: &serde_json::Value| {
        bool_at(v, &["securityContext", "windowsOptions", "hostProcess"]) == Some(true)
    };
    let mut setters = Vec::new();
    if host_process(pod.spec) {
        setters.push("pod".to_owned());
    }
    let bad: Vec<String> = pod.containers().filter(|c| host_process(c)).map(name).collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    )
}

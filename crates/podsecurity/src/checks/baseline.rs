//! The baseline controls (upstream's `check_*.go` with `Level: api.LevelBaseline`): they
//! prevent known privilege escalations while allowing the default pod configuration.

use std::collections::BTreeSet;

use super::{
    Check, Pod, Revision, bad_containers, bool_at, containers_phrase, containers_where,
    forbidden_setters, get, go_quote, join_quote, name, pluralize, quoted_list,
    security_context_setters, str_at, strings, uses, violation,
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
    let mut setters = security_context_setters(pod, |sc| {
        let ty = str_at(get(sc, &["appArmorProfile"])?, &["type"]).unwrap_or("");
        (!matches!(ty, "RuntimeDefault" | "Localhost")).then(|| ty.to_owned())
    });
    let mut bad_annotations: Vec<String> = pod
        .annotations()
        .filter(|(k, v)| {
            k.starts_with(ANNOTATION_PREFIX)
                && !(v.is_empty() || *v == "runtime/default" || v.starts_with("localhost/"))
        })
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    bad_annotations.sort();
    if !bad_annotations.is_empty() {
        setters.who.push(pluralize("annotation", "annotations", bad_annotations.len()).to_owned());
    }
    let who = setters.phrase()?;
    let bad_values: Vec<String> = setters.values.into_iter().chain(bad_annotations).collect();
    violation(
        pluralize("forbidden AppArmor profile", "forbidden AppArmor profiles", bad_values.len()),
        format!("{who} must not set AppArmor profile type to {}", join_quote(&bad_values)),
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
    let (bad, non_default) = bad_containers(pod, |c| {
        strings(c, &["securityContext", "capabilities", "add"])
            .filter(|cap| !DEFAULT_CAPABILITIES.contains(cap))
    });
    if bad.is_empty() {
        return None;
    }
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad),
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
    violation("hostPath volumes", quoted_list("volume", "volumes", &bad))
}

/// No container port may set a non-zero `hostPort`.
fn host_ports(pod: &Pod<'_>) -> Option<Violation> {
    // Upstream collects the ports as strings in a sorted set, so "10000" sorts before "80".
    let (bad, ports) = bad_containers(pod, |c| {
        super::array(c, &["ports"])
            .filter_map(|port| get(port, &["hostPort"]).and_then(serde_json::Value::as_i64))
            .filter(|p| *p != 0)
            .map(|p| p.to_string())
    });
    if bad.is_empty() {
        return None;
    }
    let ports = format!(
        "{} {}",
        pluralize("hostPort", "hostPorts", ports.len()),
        ports.into_iter().collect::<Vec<_>>().join(", ")
    );
    violation("hostPort", uses(&containers_phrase(&bad), bad.len(), &ports))
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
    let (mut bad, hosts) = bad_containers(pod, |c| {
        HANDLERS
            .iter()
            .filter_map(|path| get(c, path))
            .flat_map(|handler| {
                ["httpGet", "tcpSocket"].map(|action| str_at(handler, &[action, "host"]))
            })
            .flatten()
            .filter(|host| !host.is_empty())
    });
    if bad.is_empty() {
        return None;
    }
    // Upstream keeps these container names in a sorted set.
    bad.sort();
    bad.dedup();
    let hosts = quoted_list("probe or lifecycle host", "probe or lifecycle hosts", &hosts);
    violation("probe or lifecycle host", uses(&containers_phrase(&bad), bad.len(), &hosts))
}

/// `securityContext.privileged` must be unset or false.
fn privileged(pod: &Pod<'_>) -> Option<Violation> {
    let bad =
        containers_where(pod, |c| bool_at(c, &["securityContext", "privileged"]) == Some(true))?;
    violation("privileged", format!("{bad} must not set securityContext.privileged=true"))
}

/// `securityContext.procMount` must be unset or `Default`.
///
/// Upstream 1.34 relaxes this for `hostUsers: false` pods only behind the alpha, default-off
/// `UserNamespacesPodSecurityStandards` feature gate; this crate evaluates the default.
fn proc_mount(pod: &Pod<'_>) -> Option<Violation> {
    let (bad, types) = bad_containers(pod, |c| {
        str_at(c, &["securityContext", "procMount"]).filter(|ty| *ty != "Default")
    });
    if bad.is_empty() {
        return None;
    }
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad),
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
    let setters = forbidden_setters(pod, |sc| {
        let Some(opts) = get(sc, &["seLinuxOptions"]) else { return false };
        let mut forbidden = false;
        let ty = str_at(opts, &["type"]).unwrap_or("");
        if !allowed_types.contains(&ty) {
            forbidden = true;
            bad_types.insert(ty.to_owned());
        }
        if !str_at(opts, &["user"]).unwrap_or("").is_empty() {
            forbidden = true;
            set_user = true;
        }
        if !str_at(opts, &["role"]).unwrap_or("").is_empty() {
            forbidden = true;
            set_role = true;
        }
        forbidden
    })?;
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        data.push(quoted_list("type", "types", &bad_types));
    }
    if set_user {
        data.push("user may not be set".to_owned());
    }
    if set_role {
        data.push("role may not be set".to_owned());
    }
    violation(
        "seLinuxOptions",
        format!("{setters} set forbidden securityContext.seLinuxOptions: {}", data.join("; ")),
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

/// From v1.19: `seccompProfile.type`, where set, must be RuntimeDefault or Localhost. The
/// restricted seccomp check reports explicitly forbidden types through this too.
pub(super) fn seccomp_baseline(pod: &Pod<'_>) -> Option<Violation> {
    let setters = security_context_setters(pod, |sc| {
        let ty = str_at(get(sc, &["seccompProfile"])?, &["type"]).unwrap_or("");
        (!valid_seccomp(ty)).then(|| ty.to_owned())
    });
    let who = setters.phrase()?;
    violation(
        "seccompProfile",
        format!(
            "{who} must not set securityContext.seccompProfile.type to {}",
            join_quote(&setters.values)
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
    let setters =
        forbidden_setters(pod, |sc| bool_at(sc, &["windowsOptions", "hostProcess"]) == Some(true))?;
    violation(
        "hostProcess",
        format!("{setters} must not set securityContext.windowsOptions.hostProcess=true"),
    )
}

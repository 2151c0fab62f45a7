//! The restricted controls (upstream's `check_*.go` with `Level: api.LevelRestricted`):
//! current pod hardening practice, at the cost of some compatibility. Three of them replace
//! a baseline check when restricted is evaluated (`overrides`).

use std::collections::BTreeSet;

use super::{
    Check, Pod, Revision, baseline::valid_seccomp, bool_at, containers_phrase, get, join_quote,
    name, pluralize, str_at, strings, violation,
};
use crate::Violation;

/// Restricted checks, sorted by ID as upstream orders them.
pub(super) static CHECKS: &[Check] = &[
    Check {
        id: "allowPrivilegeEscalation",
        revisions: &[
            rev(8, allow_privilege_escalation, &[]),
            rev(25, allow_privilege_escalation_linux, &[]),
        ],
    },
    Check {
        id: "capabilities_restricted",
        revisions: &[
            rev(22, capabilities_restricted, &["capabilities_baseline"]),
            rev(25, capabilities_restricted_linux, &["capabilities_baseline"]),
        ],
    },
    Check {
        id: "restrictedVolumes",
        revisions: &[rev(0, restricted_volumes, &["hostPathVolumes"])],
    },
    Check { id: "runAsNonRoot", revisions: &[rev(0, run_as_non_root, &[])] },
    Check { id: "runAsUser", revisions: &[rev(23, run_as_user, &[])] },
    Check {
        id: "seccompProfile_restricted",
        revisions: &[
            rev(19, seccomp_restricted, &["seccompProfile_baseline"]),
            rev(25, seccomp_restricted_linux, &["seccompProfile_baseline"]),
        ],
    },
];

const fn rev(
    min_minor: u32,
    run: fn(&Pod<'_>) -> Option<Violation>,
    overrides: &'static [&'static str],
) -> Revision {
    Revision { min_minor, run, overrides }
}

/// Every container must set `securityContext.allowPrivilegeEscalation: false`.
fn allow_privilege_escalation(pod: &Pod<'_>) -> Option<Violation> {
    let bad: Vec<String> = pod
        .containers()
        .filter(|c| bool_at(c, &["securityContext", "allowPrivilegeEscalation"]) != Some(false))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    )
}

/// From v1.25 the privilege-escalation rule is Linux-only: Windows pods pass.
fn allow_privilege_escalation_linux(pod: &Pod<'_>) -> Option<Violation> {
    if pod.is_windows() { None } else { allow_privilege_escalation(pod) }
}

/// Every container must drop `ALL` and may add only `NET_BIND_SERVICE`.
fn capabilities_restricted(pod: &Pod<'_>) -> Option<Violation> {
    let mut missing_drop_all = Vec::new();
    let mut adding_forbidden = Vec::new();
    let mut forbidden = BTreeSet::new();
    for c in pod.containers() {
        let Some(caps) = get(c, &["securityContext", "capabilities"]) else {
            missing_drop_all.push(name(c));
            continue;
        };
        if !strings(caps, &["drop"]).any(|cap| cap == "ALL") {
            missing_drop_all.push(name(c));
        }
        let mut added_forbidden = false;
        for cap in strings(caps, &["add"]).filter(|cap| *cap != "NET_BIND_SERVICE") {
            added_forbidden = true;
            forbidden.insert(cap);
        }
        if added_forbidden {
            adding_forbidden.push(name(c));
        }
    }
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            r#"{} must set securityContext.capabilities.drop=["ALL"]"#,
            containers_phrase(&missing_drop_all)
        ));
    }
    if !adding_forbidden.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding_forbidden),
            join_quote(&forbidden)
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

/// From v1.25 the capabilities rule is Linux-only: Windows pods pass.
fn capabilities_restricted_linux(pod: &Pod<'_>) -> Option<Violation> {
    if pod.is_windows() { None } else { capabilities_restricted(pod) }
}

/// Volume sources a restricted pod may use. `image` joined in 1.33, patched into the single
/// v1.0 revision, so it is allowed at every policy version (as upstream).
const ALLOWED_VOLUME_SOURCES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The restricted sources upstream names, in the order it tests for them.
const NAMED_VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

/// Volumes may only use the allowed sources; this replaces the baseline hostPath check.
fn restricted_volumes(pod: &Pod<'_>) -> Option<Violation> {
    let mut bad_volumes = Vec::new();
    let mut bad_types = BTreeSet::new();
    for v in pod.volumes() {
        if ALLOWED_VOLUME_SOURCES.iter().any(|s| get(v, &[s]).is_some()) {
            continue;
        }
        bad_volumes.push(name(v));
        let ty = NAMED_VOLUME_SOURCES.iter().find(|s| get(v, &[s]).is_some());
        bad_types.insert(ty.copied().unwrap_or("unknown"));
    }
    if bad_volumes.is_empty() {
        return None;
    }
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad_volumes.len()),
            join_quote(&bad_volumes),
            pluralize("uses", "use", bad_volumes.len()),
            pluralize("restricted volume type", "restricted volume types", bad_types.len()),
            join_quote(&bad_types)
        ),
    )
}

/// `runAsNonRoot` must be true, at pod level or on every container; nothing may set it to
/// false.
///
/// Upstream 1.34 skips this for `hostUsers: false` pods only behind the alpha, default-off
/// `UserNamespacesPodSecurityStandards` feature gate; this crate evaluates the default.
fn run_as_non_root(pod: &Pod<'_>) -> Option<Violation> {
    let mut setters = Vec::new();
    let pod_value = bool_at(pod.spec, &["securityContext", "runAsNonRoot"]);
    if pod_value == Some(false) {
        setters.push("pod".to_owned());
    }
    let pod_non_root = pod_value == Some(true);
    let mut explicitly_bad = Vec::new();
    let mut implicitly_bad = Vec::new();
    for c in pod.containers() {
        match bool_at(c, &["securityContext", "runAsNonRoot"]) {
            Some(false) => explicitly_bad.push(name(c)),
            Some(true) => {}
            None if !pod_non_root => implicitly_bad.push(name(c)),
            None => {}
        }
    }
    if !explicitly_bad.is_empty() {
        setters.push(containers_phrase(&explicitly_bad));
    }
    if !setters.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!("{} must not set securityContext.runAsNonRoot=false", setters.join(" and ")),
        );
    }
    if !implicitly_bad.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&implicitly_bad)
            ),
        );
    }
    None
}

/// Nothing may set `runAsUser: 0` (v1.23+). Same user-namespace note as `runAsNonRoot`.
fn run_as_user(pod: &Pod<'_>) -> Option<Violation> {
    let is_root = |v: &serde_json::Value| {
        get(v, &["securityContext", "runAsUser"]).and_then(|u| u.as_i64()) == Some(0)
    };
    let mut setters = Vec::new();
    if is_root(pod.spec) {
        setters.push("pod".to_owned());
    }
    let bad: Vec<String> = pod.containers().filter(|c| is_root(c)).map(name).collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    violation("runAsUser=0", format!("{} must not set runAsUser=0", setters.join(" and ")))
}

/// `seccompProfile.type` must be set, to RuntimeDefault or Localhost, at pod level or on
/// every container (v1.19+); this replaces the baseline seccomp check.
fn seccomp_restricted(pod: &Pod<'_>) -> Option<Violation> {
    let profile_type = |v: &serde_json::Value| {
        get(v, &["securityContext", "seccompProfile"])
            .map(|p| str_at(p, &["type"]).unwrap_or("").to_owned())
    };
    let mut setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    let mut pod_set = false;
    if let Some(ty) = profile_type(pod.spec) {
        if valid_seccomp(&ty) {
            pod_set = true;
        } else {
            setters.push("pod".to_owned());
            bad_values.insert(ty);
        }
    }
    let mut explicitly_bad = Vec::new();
    let mut implicitly_bad = Vec::new();
    for c in pod.containers() {
        match profile_type(c) {
            Some(ty) if !valid_seccomp(&ty) => {
                explicitly_bad.push(name(c));
                bad_values.insert(ty);
            }
            Some(_) => {}
            None if !pod_set => implicitly_bad.push(name(c)),
            None => {}
        }
    }
    if !explicitly_bad.is_empty() {
        setters.push(containers_phrase(&explicitly_bad));
    }
    if !setters.is_empty() {
        return violation(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters.join(" and "),
                join_quote(&bad_values)
            ),
        );
    }
    if !implicitly_bad.is_empty() {
        return violation(
            "seccompProfile",
            format!(
                r#"pod or {} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
                containers_phrase(&implicitly_bad)
            ),
        );
    }
    None
}

/// From v1.25 the seccomp rule is Linux-only: Windows pods pass.
fn seccomp_restricted_linux(pod: &Pod<'_>) -> Option<Violation> {
    if pod.is_windows() { None } else { seccomp_restricted(pod) }
}

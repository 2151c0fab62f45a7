//! The restricted controls (upstream's `check_*.go` with `Level: api.LevelRestricted`):
//! current pod hardening practice, at the cost of some compatibility. Three of them replace
//! a baseline check when restricted is evaluated (`overrides`).

use std::collections::BTreeSet;

use super::{
    Check, Pod, Revision, bad_containers, baseline::seccomp_baseline, bool_at, containers_phrase,
    containers_where, forbidden_setters, get, join_quote, name, quoted_list, strings, unset_phrase,
    uses, violation,
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
    let bad = containers_where(pod, |c| {
        bool_at(c, &["securityContext", "allowPrivilegeEscalation"]) != Some(false)
    })?;
    violation(
        "allowPrivilegeEscalation != false",
        format!("{bad} must set securityContext.allowPrivilegeEscalation=false"),
    )
}

/// From v1.25 the privilege-escalation rule is Linux-only: Windows pods pass.
fn allow_privilege_escalation_linux(pod: &Pod<'_>) -> Option<Violation> {
    if pod.is_windows() { None } else { allow_privilege_escalation(pod) }
}

/// Every container must drop `ALL` and may add only `NET_BIND_SERVICE`.
fn capabilities_restricted(pod: &Pod<'_>) -> Option<Violation> {
    let missing_drop_all = containers_where(pod, |c| {
        !strings(c, &["securityContext", "capabilities", "drop"]).any(|cap| cap == "ALL")
    });
    let (adding_forbidden, forbidden) = bad_containers(pod, |c| {
        strings(c, &["securityContext", "capabilities", "add"])
            .filter(|cap| *cap != "NET_BIND_SERVICE")
    });
    let mut details = Vec::new();
    if let Some(missing_drop_all) = missing_drop_all {
        details.push(format!(
            r#"{missing_drop_all} must set securityContext.capabilities.drop=["ALL"]"#
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
    let volumes = quoted_list("volume", "volumes", &bad_volumes);
    let types = quoted_list("restricted volume type", "restricted volume types", &bad_types);
    violation("restricted volume types", uses(&volumes, bad_volumes.len(), &types))
}

/// `runAsNonRoot` must be true, at pod level or on every container; nothing may set it to
/// false.
///
/// Upstream 1.34 skips this for `hostUsers: false` pods only behind the alpha, default-off
/// `UserNamespacesPodSecurityStandards` feature gate; this crate evaluates the default.
fn run_as_non_root(pod: &Pod<'_>) -> Option<Violation> {
    let run_as_non_root = |sc: &serde_json::Value| bool_at(sc, &["runAsNonRoot"]);
    let detail = match forbidden_setters(pod, |sc| run_as_non_root(sc) == Some(false)) {
        Some(setters) => format!("{setters} must not set securityContext.runAsNonRoot=false"),
        // Nothing sets false, so "set" here means set to true.
        None => {
            let unset = unset_phrase(pod, |sc| run_as_non_root(sc).is_some())?;
            format!("{unset} must set securityContext.runAsNonRoot=true")
        }
    };
    violation("runAsNonRoot != true", detail)
}

/// Nothing may set `runAsUser: 0` (v1.23+). Same user-namespace note as `runAsNonRoot`.
fn run_as_user(pod: &Pod<'_>) -> Option<Violation> {
    let setters = forbidden_setters(pod, |sc| {
        get(sc, &["runAsUser"]).and_then(serde_json::Value::as_i64) == Some(0)
    })?;
    violation("runAsUser=0", format!("{setters} must not set runAsUser=0"))
}

/// `seccompProfile.type` must be set, to RuntimeDefault or Localhost, at pod level or on
/// every container (v1.19+); this replaces the baseline seccomp check, and reports a
/// forbidden type exactly as that check does.
fn seccomp_restricted(pod: &Pod<'_>) -> Option<Violation> {
    seccomp_baseline(pod).or_else(|| {
        // No profile has a forbidden type, so a set one is valid.
        let unset = unset_phrase(pod, |sc| get(sc, &["seccompProfile"]).is_some())?;
        violation(
            "seccompProfile",
            format!(
                r#"{unset} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#
            ),
        )
    })
}

/// From v1.25 the seccomp rule is Linux-only: Windows pods pass.
fn seccomp_restricted_linux(pod: &Pod<'_>) -> Option<Violation> {
    if pod.is_windows() { None } else { seccomp_restricted(pod) }
}

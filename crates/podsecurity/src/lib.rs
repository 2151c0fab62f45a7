//! The Pod Security Standards, evaluated the way upstream's `k8s.io/pod-security-admission`
//! does at Kubernetes 1.34.
//!
//! This crate is the policy half of the PodSecurity admission plugin: given a level and a
//! policy version (`baseline:v1.30`, `restricted:latest`) it runs every check that upstream
//! runs for that pair against a pod's metadata and spec, and reports each failed check as a
//! [`Violation`] with upstream's wording, so that `kubectl` users see the same rejection
//! text and warnings they would see from a Kubernetes API server. It also resolves a
//! namespace's `pod-security.kubernetes.io/*` labels to a [`Policy`] and finds the pod
//! template inside workload objects, for audit and warn on Deployments and friends.
//!
//! It works on `serde_json::Value` objects so it needs no Kubernetes types, and it must
//! never do I/O, keep state, or decide what an admission response looks like: the
//! apiserver's admission plugin owns exemptions, namespace lookups and the response.
//!
//! How a level and version select checks (upstream's `policy/registry.go`):
//!
//! - `privileged` runs nothing;
//! - every check has one or more revisions, each with a minimum policy version; at `v1.N` the
//!   newest revision whose minimum is at or below `v1.N` runs, and a check whose first
//!   revision is newer than `v1.N` does not run at all;
//! - `latest`, and any version newer than the newest revision of any check (v1.34 here),
//!   resolve to that newest version;
//! - `restricted` runs the baseline checks, minus those a restricted check overrides (the
//!   restricted volume, capability and seccomp checks replace their baseline counterparts),
//!   plus the restricted checks; results come baseline checks first, then restricted, each
//!   group sorted by check ID, so messages are stable.

mod checks;
mod labels;
mod template;

use std::fmt;

use serde_json::Value;

pub use labels::{
    AUDIT_LEVEL_LABEL, AUDIT_VERSION_LABEL, ENFORCE_LEVEL_LABEL, ENFORCE_VERSION_LABEL,
    WARN_LEVEL_LABEL, WARN_VERSION_LABEL, evaluate_labels, policy_from_labels,
};
pub use template::pod_template;

/// The newest policy version any check has a revision for; what `latest` means.
pub const LATEST_MINOR: u32 = 34;

/// A Pod Security Standards level, from least to most strict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    /// The label value spelling: `privileged`, `baseline` or `restricted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy version: `latest`, or `v1.<minor>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    Latest,
    V1(u32),
}

impl Version {
    /// The minor version whose checks run for this version (`latest` and anything newer than
    /// [`LATEST_MINOR`] clamp to it).
    pub fn effective_minor(self) -> u32 {
        match self {
            Version::Latest => LATEST_MINOR,
            Version::V1(minor) => minor.min(LATEST_MINOR),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::V1(minor) => write!(f, "v1.{minor}"),
        }
    }
}

/// A level at a policy version, displayed as upstream does: `baseline:latest`,
/// `restricted:v1.30`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Version,
}

impl LevelVersion {
    pub fn new(level: Level, version: Version) -> Self {
        LevelVersion { level, version }
    }
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level, self.version)
    }
}

/// A namespace's policy: one level and version per admission mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

impl Policy {
    /// Every mode at `privileged:latest`: upstream's default, which checks nothing.
    pub fn privileged() -> Self {
        let lv = LevelVersion::new(Level::Privileged, Version::Latest);
        Policy { enforce: lv, audit: lv, warn: lv }
    }
}

/// One failed check: upstream's `ForbiddenReason` (short, e.g. `host namespaces`) and
/// `ForbiddenDetail` (the offending values, e.g. `hostNetwork=true`; may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Violation {
    pub reason: String,
    pub detail: String,
}

/// Runs every check of `level` (and of the lower levels it includes) at its version against
/// a pod's `metadata` and `spec`, and returns the failed ones in upstream's order. Empty for
/// `privileged` and for a conforming pod. Missing or `null` fields count as unset.
pub fn check(level: &LevelVersion, metadata: &Value, spec: &Value) -> Vec<Violation> {
    checks::evaluate(level.level, level.version.effective_minor(), metadata, spec)
}

/// The text upstream puts in a rejected request's status:
/// `violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true), ...`.
pub fn message(level: &LevelVersion, violations: &[Violation]) -> String {
    format!("violates PodSecurity \"{level}\": {}", forbidden_detail(violations))
}

/// The text upstream sends as a warning (warn mode):
/// `would violate PodSecurity "restricted:latest": ...`.
pub fn warning(level: &LevelVersion, violations: &[Violation]) -> String {
    format!("would violate PodSecurity \"{level}\": {}", forbidden_detail(violations))
}

/// Upstream's `AggregateCheckResult.ForbiddenDetail`: each reason, with its detail in
/// parentheses when there is one, joined by `, `.
pub fn forbidden_detail(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| {
            if v.detail.is_empty() {
                v.reason.clone()
            } else {
                format!("{} ({})", v.reason, v.detail)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

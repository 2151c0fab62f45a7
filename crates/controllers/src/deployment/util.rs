//! The Deployment controller's pure rules (upstream's `deployment/util`): the
//! pod-template hash and ReplicaSet names, revision and replica annotations,
//! maxSurge/maxUnavailable with upstream's rounding, proportions for scaling during a
//! rollout, conditions, and the status computed from the ReplicaSets.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use keelson_api::k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet,
};
use keelson_api::k8s_openapi::api::core::v1::PodTemplateSpec;
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_api::k8s_openapi::jiff::Timestamp;

pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
/// `revision-history` is kept under this many characters.
pub const MAX_HISTORY_CHARS: usize = 2000;

pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
pub const REPLICA_SET_UPDATED: &str = "ReplicaSetUpdated";
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
pub const NEW_REPLICA_SET: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";

/// The hash of a pod template that names its ReplicaSet (upstream's `ComputeHash`:
/// FNV-32a, the collision count appended, the decimal sum encoded with
/// `rand.SafeEncodeString`'s alphabet). Upstream hashes Go's dump of the struct; this
/// hashes its JSON, so names differ from upstream's but are as stable.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    let mut write = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    write(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(count as u32).to_le_bytes());
        write(&bytes);
    }
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string().bytes().map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char).collect()
}

/// `<deployment>-<hash>`, the deployment's name cut to fit 253 characters.
pub fn replica_set_name(deployment: &str, hash: &str) -> String {
    let max = 253 - 1 - hash.len();
    let prefix = if deployment.len() > max { &deployment[..max] } else { deployment };
    format!("{prefix}-{hash}")
}

/// Whether two templates are equal but for the hash label (upstream's `EqualIgnoreHash`).
pub fn equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(HASH_LABEL);
        }
        // Absent and empty are the same to Go's semantic equality.
        crate::wire::pruned(&t, false)
    };
    strip(a) == strip(b)
}

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_status(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.clone().unwrap_or_default();
    (s.replicas, s.ready_replicas.unwrap_or(0), s.available_replicas.unwrap_or(0))
}

pub fn is_rolling_update(d: &Deployment) -> bool {
    let strategy = d.spec.as_ref().and_then(|s| s.strategy.as_ref());
    strategy.and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate"
}

pub fn is_paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

/// Upstream's `GetScaledValueFromIntOrPercent`; a string that is not a percentage
/// (refused by validation) counts as 0.
pub fn scaled(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        None => 0,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let Some(percent) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return 0;
            };
            let exact = percent as f64 * f64::from(total) / 100.0;
            (if round_up { exact.ceil() } else { exact.floor() }) as i32
        }
    }
}

/// (maxSurge, maxUnavailable) resolved against `spec.replicas` (upstream's
/// `ResolveFenceposts`: surge rounds up, unavailable down, never both zero).
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let rolling =
        d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let desired = replicas(d);
    let surge = scaled(rolling.and_then(|r| r.max_surge.as_ref()), desired, true);
    let unavailable = scaled(rolling.and_then(|r| r.max_unavailable.as_ref()), desired, false);
    if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) }
}

pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling_update(d) {
        return 0;
    }
    fenceposts(d).0
}

pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling_update(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The revision annotation of `rs`; 0 when absent, `None` when not a number.
pub fn revision(rs: &ReplicaSet) -> Option<i64> {
    match annotation(rs, REVISION) {
        None => Some(0),
        Some(v) => v.parse().ok(),
    }
}

pub fn max_revision(rss: &[ReplicaSet]) -> i64 {
    rss.iter().filter_map(revision).max().unwrap_or(0).max(0)
}

/// A non-negative count stored in an annotation.
pub fn count_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(rs, key)?.parse::<u32>().ok().and_then(|v| i32::try_from(v).ok())
}

/// Sets `desired-replicas` and `max-replicas`; whether they changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_default();
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        if annotations.get(key) != Some(&value.to_string()) {
            annotations.insert(key.into(), value.to_string());
            changed = true;
        }
    }
    changed
}

fn skipped(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | ROLLBACK_TO
    )
}

/// Upstream's `SetNewReplicaSetAnnotations`: the deployment's annotations copied, the
/// revision raised to `new_revision` (the old one appended to `revision-history`),
/// and for a new ReplicaSet the replica annotations; whether anything changed.
pub fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    let annotations = rs.metadata.annotations.get_or_insert_default();
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skipped(k) || annotations.get(k) == Some(v) {
            continue;
        }
        annotations.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = annotations.get(REVISION).cloned();
    let old_number = match &old {
        None => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return false,
        },
    };
    if old_number < new_revision {
        annotations.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = annotations.get(REVISION_HISTORY).cloned().unwrap_or_default();
            if history.is_empty() {
                annotations.insert(REVISION_HISTORY.into(), old);
            } else {
                let mut entries: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > MAX_HISTORY_CHARS && start < entries.len() {
                    total -= entries[start].len() + 1;
                    start += 1;
                }
                if total <= MAX_HISTORY_CHARS {
                    entries = entries.split_off(start);
                    entries.push(&old);
                    let joined = entries.join(",");
                    annotations.insert(REVISION_HISTORY.into(), joined);
                }
            }
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

/// Older first, then by name (upstream's `ReplicaSetsByCreationTimestamp`).
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let t = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    t(a).cmp(&t(b)).then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Larger first; among equals, older first (`ReplicaSetsBySizeOlder`).
pub fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| by_creation(a, b))
}

/// Larger first; among equals, newer first (`ReplicaSetsBySizeNewer`).
pub fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| by_creation(b, a))
}

/// Lower revision first, then older (`ReplicaSetsByRevision`).
pub fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    match (revision(a), revision(b)) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        _ => by_creation(a, b),
    }
}

/// How many replicas `rs` gains (or loses) when the deployment grows by `to_add`,
/// of which `added` are already given out (upstream's `GetReplicaSetProportion`).
pub fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if replicas(d) == 0 {
        -rs_replicas(rs)
    } else {
        let max = replicas(d) + max_surge(d);
        let before = match count_annotation(rs, MAX_REPLICAS) {
            Some(n) if n != 0 => n,
            _ => d.status.as_ref().map(|s| s.replicas.unwrap_or(0)).unwrap_or(0),
        };
        if before == 0 {
            0
        } else {
            let size = f64::from(rs_replicas(rs)) * f64::from(max) / f64::from(before);
            // Go's `integer.RoundToInt32`: half away from zero.
            size.round() as i32 - rs_replicas(rs)
        }
    };
    let allowed = to_add - added;
    if to_add > 0 { fraction.min(allowed) } else { fraction.max(allowed) }
}

pub fn condition<'a>(status: &'a DeploymentStatus, kind: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.iter().flatten().find(|c| c.type_ == kind)
}

/// Now, to the second (as the wire keeps it).
pub fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH))
}

pub fn new_condition(
    kind: &str,
    status: &str,
    reason: &str,
    message: String,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now()),
        last_transition_time: Some(now()),
    }
}

/// Upstream's `SetDeploymentCondition`: nothing when status and reason are the same;
/// the transition time kept when only the reason changed.
pub fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(current) = condition(status, &c.type_) {
        if current.status == c.status && current.reason == c.reason {
            return;
        }
        if current.status == c.status {
            c.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &c.type_.clone());
    status.conditions.get_or_insert_default().push(c);
}

pub fn remove_condition(status: &mut DeploymentStatus, kind: &str) {
    if let Some(cs) = status.conditions.as_mut() {
        cs.retain(|c| c.type_ != kind);
    }
    if status.conditions.as_ref().is_some_and(Vec::is_empty) {
        status.conditions = None;
    }
}

pub fn has_progress_deadline(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).is_some_and(|s| s != i32::MAX)
}

/// Every replica updated, present and available, and the generation observed.
pub fn complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let want = replicas(d);
    status.updated_replicas.unwrap_or(0) == want
        && status.replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) == want
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Whether `status` shows progress over the deployment's current status.
pub fn progressing(d: &Deployment, status: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(status.replicas) - n(status.updated_replicas);
    n(status.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(status.ready_replicas) > n(old.ready_replicas)
        || n(status.available_replicas) > n(old.available_replicas)
}

/// Whether the Progressing condition is older than `progressDeadlineSeconds`.
pub fn timed_out(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let Some(c) = condition(status, PROGRESSING) else { return false };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => {
            let deadline =
                i64::from(d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600));
            let from = c.last_update_time.as_ref().map_or(0, |t| t.0.as_second());
            from + deadline < now.as_second()
        }
    }
}

/// The status the ReplicaSets add up to (upstream's `calculateStatus`), with the
/// `Available` condition.
pub fn calculate_status(
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    d: &Deployment,
) -> DeploymentStatus {
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| all.iter().map(|rs| f(rs)).sum::<i32>();
    let available = sum(&|rs| rs_status(rs).2);
    let total = sum(&rs_replicas);
    let old = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(sum(&|rs| rs_status(rs).0)),
        updated_replicas: Some(new.map_or(0, |rs| rs_status(rs).0)),
        ready_replicas: Some(sum(&|rs| rs_status(rs).1)),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: None,
    };
    let (state, reason, message) = if available >= replicas(d) - max_unavailable(d) {
        ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    } else {
        ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
    };
    set_condition(&mut status, new_condition(AVAILABLE, state, reason, message.into()));
    status
}

/// The labels of `labels` plus the hash label.
pub fn with_hash(
    labels: Option<&BTreeMap<String, String>>,
    hash: &str,
) -> BTreeMap<String, String> {
    let mut labels = labels.cloned().unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.into());
    labels
}

#[cfg(test)]
mod tests {
    use keelson_api::k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetSpec, RollingUpdateDeployment,
    };
    use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn deployment(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(surge),
                        max_unavailable: Some(unavailable),
                    }),
                }),
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        }
    }

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn surge_rounds_up_and_unavailable_down() {
        assert_eq!(fenceposts(&deployment(10, pct("25%"), pct("25%"))), (3, 2));
        assert_eq!(fenceposts(&deployment(1, pct("25%"), pct("25%"))), (1, 0));
        assert_eq!(fenceposts(&deployment(3, IntOrString::Int(0), IntOrString::Int(0))), (0, 1));
        assert_eq!(max_unavailable(&deployment(2, IntOrString::Int(0), IntOrString::Int(5))), 2);
        assert_eq!(max_unavailable(&deployment(0, IntOrString::Int(0), IntOrString::Int(5))), 0);
    }

    #[test]
    fn hashes_are_stable_and_change_with_the_template_and_collisions() {
        let t = PodTemplateSpec::default();
        let h = template_hash(&t, None);
        assert_eq!(h, template_hash(&t, None));
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{h}");
        assert_ne!(h, template_hash(&t, Some(1)));
        let mut other = t.clone();
        other.metadata = Some(ObjectMeta {
            labels: Some([("a".into(), "b".into())].into()),
            ..ObjectMeta::default()
        });
        assert_ne!(h, template_hash(&other, None));
        assert_eq!(replica_set_name("web", &h), format!("web-{h}"));
        assert_eq!(replica_set_name(&"x".repeat(300), "abc").len(), 253);
    }

    #[test]
    fn revisions_move_to_the_history() {
        let d = Deployment {
            metadata: ObjectMeta {
                annotations: Some(
                    [("team".into(), "a".into()), (REVISION.into(), "9".into())].into(),
                ),
                ..ObjectMeta::default()
            },
            ..deployment(3, pct("25%"), pct("25%"))
        };
        let mut rs = ReplicaSet { spec: Some(ReplicaSetSpec::default()), ..ReplicaSet::default() };
        assert!(set_new_rs_annotations(&d, &mut rs, 1, false));
        let a = rs.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            (
                a["team"].as_str(),
                a[REVISION].as_str(),
                a[DESIRED_REPLICAS].as_str(),
                a[MAX_REPLICAS].as_str()
            ),
            ("a", "1", "3", "4")
        );
        assert!(!a.contains_key(REVISION_HISTORY));
        assert!(set_new_rs_annotations(&d, &mut rs, 3, true));
        assert!(set_new_rs_annotations(&d, &mut rs, 5, true));
        let a = rs.metadata.annotations.clone().unwrap_or_default();
        assert_eq!((a[REVISION].as_str(), a[REVISION_HISTORY].as_str()), ("5", "1,3"));
        assert!(!set_new_rs_annotations(&d, &mut rs, 4, true), "never lowered");
    }

    #[test]
    fn proportions_follow_the_old_size() {
        let d = deployment(15, IntOrString::Int(3), IntOrString::Int(0));
        let mut rs = ReplicaSet {
            spec: Some(ReplicaSetSpec { replicas: Some(5), ..ReplicaSetSpec::default() }),
            ..ReplicaSet::default()
        };
        set_replicas_annotations(&mut rs, 10, 13);
        // 5 of a 13-pod deployment that is now 18: 5 * 18 / 13 = 6.9 → 7.
        assert_eq!(proportion(&rs, &d, 5, 0), 2);
        assert_eq!(proportion(&rs, &d, 5, 4), 1, "never more than is left");
    }
}

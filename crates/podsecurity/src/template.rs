//! The pod template inside a workload object, as upstream's `DefaultPodSpecExtractor`
//! finds it, so audit and warn can evaluate Deployments, Jobs and the like.

use serde_json::Value;

/// Stands in for a template's missing `metadata` or `spec`: upstream reads the zero value,
/// which every check treats as unset.
static EMPTY: Value = Value::Null;

/// The `(metadata, spec)` a pod made from `object` would have, by the object's `kind`:
///
/// - `Pod`: the pod itself;
/// - `PodTemplate`: `template`;
/// - `ReplicationController`, `ReplicaSet`, `Deployment`, `StatefulSet`, `DaemonSet`, `Job`:
///   `spec.template`;
/// - `CronJob`: `spec.jobTemplate.spec.template`.
///
/// `None` for any other kind, and when the object has no template (upstream skips a
/// ReplicationController without one; for the other kinds Go's zero-value template holds
/// no containers, so nothing could fail anyway). A missing `metadata` or `spec` inside a
/// template reads as empty.
pub fn pod_template<'a>(kind: &str, object: &'a Value) -> Option<(&'a Value, &'a Value)> {
    let template: &[&str] = match kind {
        "Pod" => &[],
        "PodTemplate" => &["template"],
        "ReplicationController"
        | "ReplicaSet"
        | "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "Job" => &["spec", "template"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template"],
        _ => return None,
    };
    let mut cur = object;
    for key in template {
        cur = cur.get(key).filter(|v| !v.is_null())?;
    }
    let part = |key: &str| cur.get(key).filter(|v| !v.is_null()).unwrap_or(&EMPTY);
    Some((part("metadata"), part("spec")))
}

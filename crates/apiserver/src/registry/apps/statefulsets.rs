//! StatefulSets: upstream's `pkg/registry/apps/statefulset`.

use serde_json::{Value, json};

use crate::registry::defaults::{child, default, pod_template};
use crate::registry::strategy::Strategy;
use crate::registry::validation::workloads;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct StatefulSets;

/// The spec fields an update may change (upstream's `ValidateStatefulSetUpdate`).
const MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "minReadySeconds",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
];

/// Drops `rollingUpdate.maxUnavailable` unless the stored object uses it: the
/// `MaxUnavailableStatefulSet` gate is alpha and off in 1.34 (upstream's
/// `dropStatefulSetDisabledFields`).
fn drop_max_unavailable(old: Option<&Value>, new: &mut Value) {
    let in_use = old.and_then(|o| o.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable"));
    if in_use.is_some_and(|v| !v.is_null()) {
        return;
    }
    if let Some(Value::Object(rolling)) = new.pointer_mut("/spec/updateStrategy/rollingUpdate") {
        rolling.remove("maxUnavailable");
    }
}

impl Strategy for StatefulSets {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn defaults(&self, object: &mut Value) {
        let spec = child(object, "spec");
        default(spec, "replicas", json!(1));
        default(spec, "podManagementPolicy", json!("OrderedReady"));
        let strategy = child(spec, "updateStrategy");
        default(strategy, "type", json!("RollingUpdate"));
        if strategy["type"] == "RollingUpdate" {
            default(child(strategy, "rollingUpdate"), "partition", json!(0));
        }
        default(spec, "revisionHistoryLimit", json!(10));
        let retention = child(spec, "persistentVolumeClaimRetentionPolicy");
        default(retention, "whenDeleted", json!("Retain"));
        default(retention, "whenScaled", json!("Retain"));
        pod_template(object.pointer_mut("/spec/template"));
    }

    fn prepare_create(&self, object: &mut Value) {
        drop_max_unavailable(None, object);
    }

    fn prepare_update(&self, subresource: Option<&str>, old: &Value, new: &mut Value) {
        if subresource.is_none() {
            drop_max_unavailable(Some(old), new);
        }
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        workloads::replicated("statefulsets", object, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, _: Option<&str>, causes: &mut Vec<Cause>) {
        self.validate(new, causes);
        workloads::selector_unchanged(old, new, causes);
        let fixed = |object: &Value| {
            let mut spec = object["spec"].as_object().cloned().unwrap_or_default();
            spec.retain(|k, _| !MUTABLE.contains(&k.as_str()));
            spec
        };
        if fixed(old) != fixed(new) {
            causes.push(Cause::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', \
                 'template', 'updateStrategy', 'revisionHistoryLimit', \
                 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }

    fn printer(&self) -> Printer {
        table::workloads::STATEFUL_SET
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(spec: Value) -> Value {
        json!({ "metadata": { "name": "web" }, "spec": spec })
    }

    #[test]
    fn max_unavailable_is_dropped_while_its_gate_is_off() {
        let mut new = set(json!({ "updateStrategy": { "type": "RollingUpdate",
            "rollingUpdate": { "partition": 1, "maxUnavailable": 2 } } }));
        StatefulSets.prepare_create(&mut new);
        assert_eq!(new["spec"]["updateStrategy"]["rollingUpdate"], json!({ "partition": 1 }));
        let old = set(json!({ "updateStrategy": { "rollingUpdate": { "maxUnavailable": 2 } } }));
        let mut kept = old.clone();
        StatefulSets.prepare_update(None, &old, &mut kept);
        assert_eq!(kept["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"], 2);
    }

    #[test]
    fn only_upstreams_mutable_fields_may_change() {
        let old =
            set(json!({ "replicas": 1, "serviceName": "a", "podManagementPolicy": "Parallel" }));
        let mut causes = Vec::new();
        let scaled =
            set(json!({ "replicas": 3, "serviceName": "a", "podManagementPolicy": "Parallel" }));
        StatefulSets.validate_update(&old, &scaled, None, &mut causes);
        assert!(!causes.iter().any(|c| c.field == "spec"), "{causes:?}");
        let renamed =
            set(json!({ "replicas": 1, "serviceName": "b", "podManagementPolicy": "Parallel" }));
        StatefulSets.validate_update(&old, &renamed, None, &mut causes);
        assert!(causes.iter().any(|c| c.field == "spec"), "{causes:?}");
    }
}

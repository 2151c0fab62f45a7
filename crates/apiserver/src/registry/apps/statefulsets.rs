//! StatefulSets: upstream's `pkg/registry/apps/statefulset`.

use serde_json::{Value, json};

use crate::registry::defaults::{child, default, pod_template};
use crate::registry::strategy::Strategy;
use crate::registry::validation::workloads;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct StatefulSets;

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

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        workloads::replicated("statefulsets", object, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, _: Option<&str>, causes: &mut Vec<Cause>) {
        self.validate(new, causes);
        workloads::selector_unchanged(old, new, causes);
    }

    fn printer(&self) -> Printer {
        table::workloads::STATEFUL_SET
    }
}

//! Deployments: upstream's `pkg/registry/apps/deployment`.

use serde_json::{Value, json};

use crate::registry::defaults::{child, default, pod_template};
use crate::registry::strategy::Strategy;
use crate::registry::validation::workloads;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct Deployments;

impl Strategy for Deployments {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn defaults(&self, object: &mut Value) {
        let spec = child(object, "spec");
        default(spec, "replicas", json!(1));
        let strategy = child(spec, "strategy");
        default(strategy, "type", json!("RollingUpdate"));
        if strategy["type"] == "RollingUpdate" {
            let rolling = child(strategy, "rollingUpdate");
            default(rolling, "maxUnavailable", json!("25%"));
            default(rolling, "maxSurge", json!("25%"));
        }
        default(spec, "revisionHistoryLimit", json!(10));
        default(spec, "progressDeadlineSeconds", json!(600));
        pod_template(object.pointer_mut("/spec/template"));
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        workloads::replicated("deployments", object, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, _: Option<&str>, causes: &mut Vec<Cause>) {
        self.validate(new, causes);
        workloads::selector_unchanged(old, new, causes);
    }

    fn printer(&self) -> Printer {
        table::workloads::DEPLOYMENT
    }
}

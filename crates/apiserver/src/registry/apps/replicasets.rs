//! ReplicaSets: upstream's `pkg/registry/apps/replicaset`.

use std::borrow::Cow;

use serde_json::{Value, json};

use crate::registry::defaults::{child, default, pod_template};
use crate::registry::selector::SelectableField;
use crate::registry::strategy::Strategy;
use crate::registry::validation::workloads;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct ReplicaSets;

impl Strategy for ReplicaSets {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn field_selectors(&self) -> Cow<'static, [SelectableField]> {
        const FIELDS: &[SelectableField] = &[SelectableField::integer("status.replicas")];
        Cow::Borrowed(FIELDS)
    }

    fn defaults(&self, object: &mut Value) {
        default(child(object, "spec"), "replicas", json!(1));
        pod_template(object.pointer_mut("/spec/template"));
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        workloads::replicated("replicasets", object, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, _: Option<&str>, causes: &mut Vec<Cause>) {
        self.validate(new, causes);
        workloads::selector_unchanged(old, new, causes);
    }

    fn printer(&self) -> Printer {
        table::workloads::REPLICA_SET
    }
}

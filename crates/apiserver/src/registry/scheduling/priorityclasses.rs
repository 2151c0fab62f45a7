//! PriorityClasses: upstream's `pkg/registry/scheduling/priorityclass`.

use serde_json::{Value, json};

use crate::registry::defaults::default;
use crate::registry::strategy::Strategy;
use crate::registry::validation::cluster;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct PriorityClasses;

impl Strategy for PriorityClasses {
    fn defaults(&self, object: &mut Value) {
        default(object, "preemptionPolicy", json!("PreemptLowerPriority"));
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        cluster::priority_class(object, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, _: Option<&str>, causes: &mut Vec<Cause>) {
        self.validate(new, causes);
        cluster::priority_class_update(old, new, causes);
    }

    fn printer(&self) -> Printer {
        table::cluster::PRIORITY_CLASS
    }
}

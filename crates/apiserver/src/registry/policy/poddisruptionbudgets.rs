//! PodDisruptionBudgets: upstream's `pkg/registry/policy/poddisruptionbudget`.

use serde_json::Value;

use crate::registry::strategy::Strategy;
use crate::registry::validation::cluster;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct PodDisruptionBudgets;

impl Strategy for PodDisruptionBudgets {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        cluster::disruption_budget(object, causes);
    }

    fn printer(&self) -> Printer {
        table::workloads::POD_DISRUPTION_BUDGET
    }
}

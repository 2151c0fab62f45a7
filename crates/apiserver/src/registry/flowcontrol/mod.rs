//! The `flowcontrol.apiserver.k8s.io` group: upstream's `pkg/registry/flowcontrol` —
//! the FlowSchema and PriorityLevelConfiguration objects API Priority and Fairness reads,
//! stored and validated (the engine that limits requests and the bootstrap objects are
//! not here).
//!
//! Both strategies: generation follows the spec; a new object's status is reset and an
//! update of the object keeps the stored one; `…/status` changes only the status — all
//! of the stored metadata stays, labels and annotations included.

pub mod flowschemas;
pub mod prioritylevelconfigurations;

use serde_json::Value;

use crate::meta::keep_labels_and_annotations;
use crate::registry::strategy::Strategy;
use crate::status::Cause;
use crate::table::Printer;

/// The strategy both kinds share; each module fills in its defaults, validation and
/// printer.
pub struct FlowControl {
    defaults: fn(&mut Value),
    validate: fn(&Value, &mut Vec<Cause>),
    printer: Printer,
}

impl Strategy for FlowControl {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn defaults(&self, object: &mut Value) {
        (self.defaults)(object);
    }

    fn prepare_update(&self, subresource: Option<&str>, old: &Value, new: &mut Value) {
        if subresource == Some("status") {
            keep_labels_and_annotations(old, new);
        }
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        (self.validate)(object, causes);
    }

    /// Upstream validates the whole new object on update, and only the status's
    /// conditions on `…/status`.
    fn validate_update(
        &self,
        _old: &Value,
        new: &Value,
        sub: Option<&str>,
        causes: &mut Vec<Cause>,
    ) {
        match sub {
            Some("status") => {
                crate::registry::validation::flowcontrol::conditions(&new["status"], causes)
            }
            _ => self.validate(new, causes),
        }
    }

    fn printer(&self) -> Printer {
        self.printer
    }
}

//! Nodes: upstream's `pkg/registry/core/node`.

use std::borrow::Cow;

use serde_json::Value;

use crate::registry::selector::SelectableField;
use crate::registry::strategy::Strategy;
use crate::registry::validation::cluster;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct Nodes;

impl Strategy for Nodes {
    fn field_selectors(&self) -> Cow<'static, [SelectableField]> {
        // `fmt.Sprint(Unschedulable)`: an unset field selects as "false".
        const FIELDS: &[SelectableField] = &[SelectableField::boolean("spec.unschedulable")];
        Cow::Borrowed(FIELDS)
    }

    /// A kubelet registers its node with the status it sees.
    fn keeps_status_on_create(&self) -> bool {
        true
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        cluster::node(object, causes);
    }

    fn printer(&self) -> Printer {
        table::core::NODE
    }
}

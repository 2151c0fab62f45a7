//! ResourceQuotas: upstream's `pkg/registry/core/resourcequota`.

use serde_json::{Value, json};

use crate::registry::strategy::Strategy;
use crate::table::{self, Printer};

pub struct ResourceQuotas;

impl Strategy for ResourceQuotas {
    /// A new quota has no status: the quota controller fills it in.
    fn prepare_create(&self, object: &mut Value) {
        object["status"] = json!({});
    }

    fn printer(&self) -> Printer {
        table::core::RESOURCE_QUOTA
    }
}

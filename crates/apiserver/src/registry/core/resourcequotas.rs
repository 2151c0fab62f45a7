//! ResourceQuotas: upstream's `pkg/registry/core/resourcequota`.

use crate::registry::strategy::Strategy;
use crate::table::{self, Printer};

pub struct ResourceQuotas;

impl Strategy for ResourceQuotas {
    fn printer(&self) -> Printer {
        table::core::RESOURCE_QUOTA
    }
}

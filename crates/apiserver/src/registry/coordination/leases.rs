//! Leases: upstream's `pkg/registry/coordination/lease`.

use serde_json::Value;

use crate::registry::strategy::Strategy;
use crate::registry::validation::cluster;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct Leases;

impl Strategy for Leases {
    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        cluster::lease(object, causes);
    }

    fn printer(&self) -> Printer {
        table::cluster::LEASE
    }
}

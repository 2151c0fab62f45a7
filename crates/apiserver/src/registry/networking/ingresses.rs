//! Ingresses: upstream's `pkg/registry/networking/ingress`.

use serde_json::Value;

use crate::registry::strategy::Strategy;
use crate::registry::validation::cluster;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct Ingresses;

impl Strategy for Ingresses {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        cluster::ingress(object, causes);
    }

    fn printer(&self) -> Printer {
        table::networking::INGRESS
    }
}

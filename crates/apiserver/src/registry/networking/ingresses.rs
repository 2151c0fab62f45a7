//! Ingresses: upstream's `pkg/registry/networking/ingress`.

use serde_json::{Value, json};

use crate::registry::defaults::default;

use crate::registry::strategy::Strategy;
use crate::registry::validation::cluster;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct Ingresses;

impl Strategy for Ingresses {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn defaults(&self, object: &mut Value) {
        if let Some(status) = object.get_mut("status").filter(|s| s.is_object()) {
            default(status, "loadBalancer", json!({}));
        }
    }

    /// Go prints the load balancer status struct even when empty.
    fn empty_status(&self) -> Option<Value> {
        Some(json!({ "loadBalancer": {} }))
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        cluster::ingress(object, causes);
    }

    fn printer(&self) -> Printer {
        table::networking::INGRESS
    }
}

//! PodTemplates: upstream's `pkg/registry/core/podtemplate`.

use serde_json::Value;

use crate::registry::defaults::pod_template;
use crate::registry::strategy::Strategy;
use crate::table::{self, Printer};

pub struct PodTemplates;

impl Strategy for PodTemplates {
    fn defaults(&self, object: &mut Value) {
        pod_template(object.get_mut("template"));
    }

    fn printer(&self) -> Printer {
        table::core::POD_TEMPLATE
    }
}

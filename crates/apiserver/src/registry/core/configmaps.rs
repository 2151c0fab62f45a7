//! ConfigMaps: upstream's `pkg/registry/core/configmap`.

use serde_json::Value;

use crate::registry::strategy::Strategy;
use crate::registry::validation::core;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct ConfigMaps;

impl Strategy for ConfigMaps {
    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        core::configmap(object, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, _: Option<&str>, causes: &mut Vec<Cause>) {
        self.validate(new, causes);
        core::immutable_data("configmaps", old, new, causes);
    }

    fn printer(&self) -> Printer {
        table::core::CONFIG_MAP
    }
}

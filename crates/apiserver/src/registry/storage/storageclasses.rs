//! StorageClasses: upstream's `pkg/registry/storage/storageclass`.

use serde_json::Value;

use crate::registry::strategy::Strategy;
use crate::registry::validation::cluster;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct StorageClasses;

impl Strategy for StorageClasses {
    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        cluster::storage_class(object, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, _: Option<&str>, causes: &mut Vec<Cause>) {
        self.validate(new, causes);
        cluster::storage_class_update(old, new, causes);
    }

    fn printer(&self) -> Printer {
        table::storage::STORAGE_CLASS
    }
}

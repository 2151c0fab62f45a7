//! PersistentVolumes: upstream's `pkg/registry/core/persistentvolume`.

use serde_json::{Value, json};

use crate::registry::strategy::Strategy;
use crate::table::{self, Printer};

pub struct PersistentVolumes;

impl Strategy for PersistentVolumes {
    /// A new volume is `Pending` until it is available, since now.
    fn prepare_create(&self, object: &mut Value) {
        object["status"]["phase"] = json!("Pending");
        object["status"]["lastPhaseTransitionTime"] = json!(crate::meta::now());
    }

    fn printer(&self) -> Printer {
        table::storage::PERSISTENT_VOLUME
    }
}

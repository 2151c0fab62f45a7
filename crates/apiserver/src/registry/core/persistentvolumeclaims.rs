//! PersistentVolumeClaims: upstream's `pkg/registry/core/persistentvolumeclaim`.

use serde_json::{Value, json};

use crate::registry::defaults::{child, default};
use crate::registry::strategy::Strategy;
use crate::table::{self, Printer};

pub struct PersistentVolumeClaims;

impl Strategy for PersistentVolumeClaims {
    fn defaults(&self, object: &mut Value) {
        default(child(object, "spec"), "volumeMode", json!("Filesystem"));
    }

    /// A new claim is `Pending` until a volume binds it.
    fn prepare_create(&self, object: &mut Value) {
        object["status"]["phase"] = json!("Pending");
    }

    fn printer(&self) -> Printer {
        table::storage::PERSISTENT_VOLUME_CLAIM
    }
}

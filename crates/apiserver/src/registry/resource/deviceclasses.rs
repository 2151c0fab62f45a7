//! DeviceClasses: upstream's `pkg/registry/resource/deviceclass` — generation follows
//! the spec, `spec.extendedResourceName` (`DRAExtendedResource`, off) is dropped unless
//! the stored class has one.

use serde_json::Value;

use super::{remove, set};
use crate::registry::strategy::Strategy;
use crate::registry::validation::resource;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct DeviceClasses;

impl Strategy for DeviceClasses {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_create(&self, object: &mut Value) {
        remove(object.get_mut("spec"), &["extendedResourceName"]);
    }

    fn prepare_update(&self, _subresource: Option<&str>, old: &Value, new: &mut Value) {
        if !set(&old["spec"]["extendedResourceName"]) {
            remove(new.get_mut("spec"), &["extendedResourceName"]);
        }
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        resource::device_class(object, None, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, _: Option<&str>, causes: &mut Vec<Cause>) {
        resource::device_class(new, Some(old), causes);
    }

    fn printer(&self) -> Printer {
        table::resource::DEVICE_CLASS
    }
}

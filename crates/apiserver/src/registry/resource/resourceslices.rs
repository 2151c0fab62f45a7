//! ResourceSlices: upstream's `pkg/registry/resource/resourceslice` — generation follows
//! the spec; field selectors `spec.nodeName` and `spec.driver` (upstream's field label
//! conversion allows only those and `metadata.name`); the fields of default-off features
//! (`DRADeviceTaints`, `DRAPartitionableDevices`, `DRADeviceBindingConditions`,
//! `DRAConsumableCapacity`) dropped unless the stored slice uses them.

use std::borrow::Cow;

use serde_json::Value;

use super::{items, items_mut, remove, set};
use crate::registry::selector::SelectableField;
use crate::registry::strategy::Strategy;
use crate::registry::validation::resource_slice;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct ResourceSlices;

impl Strategy for ResourceSlices {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn field_selectors(&self) -> Cow<'static, [SelectableField]> {
        const FIELDS: &[SelectableField] =
            &[SelectableField::string("spec.nodeName"), SelectableField::string("spec.driver")];
        Cow::Borrowed(FIELDS)
    }

    fn prepare_create(&self, object: &mut Value) {
        drop_disabled_fields(&Value::Null, object);
    }

    fn prepare_update(&self, _subresource: Option<&str>, old: &Value, new: &mut Value) {
        drop_disabled_fields(old, new);
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        resource_slice::slice(object, None, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, _: Option<&str>, causes: &mut Vec<Cause>) {
        resource_slice::slice(new, Some(old), causes);
    }

    fn printer(&self) -> Printer {
        table::resource::RESOURCE_SLICE
    }
}

/// Per feature: whether the stored slice (`old`, null on create) uses it, and what goes
/// from the new one if not.
fn drop_disabled_fields(old: &Value, new: &mut Value) {
    let devices = |slice: &Value| items(&slice["spec"]["devices"]).cloned().collect::<Vec<_>>();
    let old_devices = devices(old);
    let any = |f: &dyn Fn(&Value) -> bool| old_devices.iter().any(f);
    let taints = any(&|d| set(&d["taints"]));
    let partitionable = set(&old["spec"]["sharedCounters"])
        || !old["spec"]["perDeviceNodeSelection"].is_null()
        || any(&|d| {
            set(&d["consumesCounters"])
                || ["nodeName", "nodeSelector", "allNodes"].iter().any(|f| !d[*f].is_null())
        });
    let binding = any(&|d| {
        set(&d["bindingConditions"])
            || set(&d["bindingFailureConditions"])
            || !d["bindsToNode"].is_null()
    });
    let capacity = any(&|d| {
        !d["allowMultipleAllocations"].is_null()
            || d["capacity"]
                .as_object()
                .is_some_and(|c| c.values().any(|c| !c["requestPolicy"].is_null()))
    });
    if !partitionable {
        remove(new.get_mut("spec"), &["sharedCounters", "perDeviceNodeSelection"]);
    }
    for device in items_mut(new.pointer_mut("/spec/devices")) {
        let mut dropped = Vec::new();
        if !taints {
            dropped.push("taints");
        }
        if !partitionable {
            dropped.extend(["consumesCounters", "nodeName", "nodeSelector", "allNodes"]);
        }
        if !binding {
            dropped.extend(["bindingConditions", "bindingFailureConditions", "bindsToNode"]);
        }
        if !capacity {
            dropped.push("allowMultipleAllocations");
            let capacities = device.get_mut("capacity").and_then(Value::as_object_mut);
            for capacity in capacities.into_iter().flat_map(|m| m.values_mut()) {
                remove(Some(capacity), &["requestPolicy"]);
            }
        }
        remove(Some(device), &dropped);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::ResourceSlices;
    use crate::registry::strategy::Strategy;

    #[test]
    fn alpha_fields_are_dropped_on_create_and_kept_when_stored() {
        let slice = json!({ "spec": {
            "driver": "d.example.com", "perDeviceNodeSelection": true,
            "devices": [{ "name": "gpu-0", "nodeName": "n1", "taints": [{ "key": "k", "effect": "NoSchedule" }],
                "capacity": { "memory": { "value": "1Gi", "requestPolicy": {} } } }]
        } });
        let mut created = slice.clone();
        ResourceSlices.prepare_create(&mut created);
        assert!(created["spec"].get("perDeviceNodeSelection").is_none());
        assert_eq!(
            created["spec"]["devices"][0],
            json!({ "name": "gpu-0", "capacity": { "memory": { "value": "1Gi" } } })
        );
        let mut updated = slice.clone();
        ResourceSlices.prepare_update(None, &slice, &mut updated);
        assert_eq!(updated, slice, "fields the stored slice uses stay");
    }
}

//! ResourceClaims: upstream's `pkg/registry/resource/resourceclaim` — the requests'
//! defaults; status reset on create and kept on updates of the claim; the spec
//! immutable; `…/status` changes only the status (labels and annotations stay as stored,
//! upstream's `ResetObjectMetaForStatus`), forgets the device statuses of devices no
//! longer allocated, and is checked by upstream's status rules; the fields of default-off
//! features dropped unless the stored claim uses them.

use serde_json::Value;

use super::{
    claim_uses_consumable_capacity, default_requests, default_tolerations, drop_request_capacity,
    items, items_mut, remove, set,
};
use crate::meta::keep_labels_and_annotations;
use crate::registry::strategy::Strategy;
use crate::registry::validation::{immutable, resource};
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct ResourceClaims;

impl Strategy for ResourceClaims {
    fn defaults(&self, object: &mut Value) {
        if let Some(devices) = object.pointer_mut("/spec/devices").filter(|d| d.is_object()) {
            default_requests(devices);
        }
        for result in items_mut(object.pointer_mut("/status/allocation/devices/results")) {
            default_tolerations(result.get_mut("tolerations"));
        }
    }

    fn prepare_create(&self, object: &mut Value) {
        drop_request_capacity(object.pointer_mut("/spec/devices"), false);
    }

    fn prepare_update(&self, subresource: Option<&str>, old: &Value, new: &mut Value) {
        if subresource == Some("status") {
            keep_labels_and_annotations(old, new);
            drop_deallocated_device_statuses(old, new);
            drop_disabled_status_fields(old, new);
        } else {
            drop_request_capacity(new.pointer_mut("/spec/devices"), uses_consumable_capacity(old));
        }
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        resource::claim_spec(&object["spec"], "spec", causes);
    }

    /// Upstream validates the new claim, then the update: the spec is immutable, and is
    /// checked a second time (so an invalid change reports its problems twice, as there).
    fn validate_update(
        &self,
        old: &Value,
        new: &Value,
        subresource: Option<&str>,
        causes: &mut Vec<Cause>,
    ) {
        if subresource == Some("status") {
            resource::claim_status_update(old, new, causes);
            return;
        }
        self.validate(new, causes);
        immutable(&old["spec"], &new["spec"], "spec", causes);
        resource::claim_spec(&new["spec"], "spec", causes);
    }

    fn printer(&self) -> Printer {
        table::resource::RESOURCE_CLAIM
    }
}

/// Whether the claim uses `DRAConsumableCapacity`, in its spec or its status.
fn uses_consumable_capacity(claim: &Value) -> bool {
    let status = &claim["status"];
    claim_uses_consumable_capacity(&claim["spec"]["devices"])
        || items(&status["allocation"]["devices"]["results"])
            .any(|r| set(&r["shareID"]) || set(&r["consumedCapacity"]))
        || items(&status["devices"]).any(|d| set(&d["shareID"]))
}

/// Whether the claim's allocation uses `DRADeviceBindingConditions`.
fn uses_binding_conditions(claim: &Value) -> bool {
    let allocation = &claim["status"]["allocation"];
    set(&allocation["allocationTimestamp"])
        || items(&allocation["devices"]["results"])
            .any(|r| set(&r["bindingConditions"]) || set(&r["bindingFailureConditions"]))
}

/// The status fields of the default-off features, unless the stored claim uses them.
fn drop_disabled_status_fields(old: &Value, new: &mut Value) {
    let capacity = uses_consumable_capacity(old);
    let binding = uses_binding_conditions(old);
    let Some(status) = new.get_mut("status") else { return };
    if !binding {
        remove(status.get_mut("allocation"), &["allocationTimestamp"]);
    }
    for result in items_mut(status.pointer_mut("/allocation/devices/results")) {
        if !binding {
            remove(Some(&mut *result), &["bindingConditions", "bindingFailureConditions"]);
        }
        if !capacity {
            remove(Some(result), &["shareID", "consumedCapacity"]);
        }
    }
    if !capacity {
        for device in items_mut(status.get_mut("devices")) {
            remove(Some(device), &["shareID"]);
        }
    }
}

/// A device's identity: driver, pool, device and share.
fn device_id(v: &Value) -> (&Value, &Value, &Value, &Value) {
    (&v["driver"], &v["pool"], &v["device"], &v["shareID"])
}

/// Upstream's `dropDeallocatedStatusDevices`: the status of a device that was allocated
/// before this update and is not any more goes with its allocation.
fn drop_deallocated_device_statuses(old: &Value, new: &mut Value) {
    let results = |claim: &Value| -> Vec<_> {
        items(&claim["status"]["allocation"]["devices"]["results"])
            .map(|r| {
                let (d, p, n, s) = device_id(r);
                (d.clone(), p.clone(), n.clone(), s.clone())
            })
            .collect()
    };
    let (before, after) = (results(old), results(new));
    let deallocated: Vec<_> = before.iter().filter(|id| !after.contains(id)).collect();
    if deallocated.is_empty() {
        return;
    }
    let Some(devices) = new.pointer_mut("/status/devices").and_then(Value::as_array_mut) else {
        return;
    };
    devices.retain(|d| {
        let (driver, pool, device, share) = device_id(d);
        !deallocated.iter().any(|(a, b, c, e)| (a, b, c, e) == (driver, pool, device, share))
    });
    if devices.is_empty() {
        remove(new.get_mut("status"), &["devices"]);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::ResourceClaims;
    use crate::registry::strategy::Strategy;

    fn result(device: &str) -> serde_json::Value {
        json!({ "request": "gpu", "driver": "d.example.com", "pool": "p", "device": device })
    }

    #[test]
    fn status_writes_keep_labels_and_forget_deallocated_devices() {
        let old = json!({
            "metadata": { "name": "c", "labels": { "a": "1" } },
            "spec": { "devices": { "requests": [] } },
            "status": {
                "allocation": { "devices": { "results": [result("gpu-0"), result("gpu-1")] } },
                "devices": [
                    { "driver": "d.example.com", "pool": "p", "device": "gpu-0" },
                    { "driver": "d.example.com", "pool": "p", "device": "gpu-1" }
                ]
            }
        });
        let mut new = old.clone();
        new["metadata"]["labels"] = json!({ "b": "2" });
        new["status"]["allocation"]["devices"]["results"] = json!([result("gpu-1")]);
        new["status"]["allocation"]["allocationTimestamp"] = json!("2025-01-01T00:00:00Z");
        ResourceClaims.prepare_update(Some("status"), &old, &mut new);
        assert_eq!(new["metadata"]["labels"], json!({ "a": "1" }));
        assert_eq!(
            new["status"]["devices"],
            json!([{ "driver": "d.example.com", "pool": "p", "device": "gpu-1" }])
        );
        assert!(new["status"]["allocation"].get("allocationTimestamp").is_none(), "alpha field");
    }

    #[test]
    fn capacity_requests_are_dropped_unless_stored() {
        let mut claim = json!({ "spec": { "devices": { "requests": [
            { "name": "r", "exactly": { "deviceClassName": "c", "capacity": { "requests": { "memory": "1Gi" } } } }
        ] } } });
        ResourceClaims.prepare_create(&mut claim);
        assert!(claim["spec"]["devices"]["requests"][0]["exactly"].get("capacity").is_none());
    }
}

//! The `resource.k8s.io` group (dynamic resource allocation): upstream's
//! `pkg/registry/resource`, with the defaults of `pkg/apis/resource/v1/defaults.go` and
//! the fields of 1.34's default-off DRA features dropped as the strategies'
//! `dropDisabledFields` drop them (unless the stored object already uses them):
//! `DRAConsumableCapacity`, `DRADeviceBindingConditions`, `DRAPartitionableDevices`,
//! `DRADeviceTaints` and `DRAExtendedResource` are alpha and off; `DRAPrioritizedList`,
//! `DRAAdminAccess` and `DRAResourceClaimDeviceStatus` are beta and on, so their fields stay.

pub mod deviceclasses;
pub mod resourceclaims;
pub mod resourceclaimtemplates;
pub mod resourceslices;

use serde_json::{Value, json};

/// The items of a list field; none when it is missing.
fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// The items of a list field, to change; none when it is missing. (Fields are reached
/// with `get_mut` and `pointer_mut`, never by indexing, which would add them as nulls.)
fn items_mut(v: Option<&mut Value>) -> impl Iterator<Item = &mut Value> {
    v.and_then(Value::as_array_mut).into_iter().flatten()
}

/// Whether a field holds something: neither missing, null, nor an empty list or map.
fn set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        _ => true,
    }
}

/// Removes `fields` from `object` (an object; anything else is left alone).
fn remove(object: Option<&mut Value>, fields: &[&str]) {
    if let Some(map) = object.and_then(Value::as_object_mut) {
        for field in fields {
            map.remove(*field);
        }
    }
}

/// `SetDefaults_ExactDeviceRequest` and `SetDefaults_DeviceSubRequest` over a
/// `DeviceClaim`'s requests: allocation mode `ExactCount`, and then a count of 1; their
/// tolerations' operator `Equal`.
fn default_requests(devices: &mut Value) {
    for request in items_mut(devices.get_mut("requests")) {
        if let Some(exactly) = request.get_mut("exactly").filter(|e| e.is_object()) {
            default_allocation(exactly);
        }
        for sub in items_mut(request.get_mut("firstAvailable")) {
            default_allocation(sub);
        }
    }
}

/// A toleration's operator defaults to `Equal` (the `+default` of the v1 type).
fn default_tolerations(tolerations: Option<&mut Value>) {
    for toleration in items_mut(tolerations) {
        if toleration["operator"].as_str().is_none_or(str::is_empty) {
            toleration["operator"] = json!("Equal");
        }
    }
}

fn default_allocation(request: &mut Value) {
    default_tolerations(request.get_mut("tolerations"));
    if request["allocationMode"].as_str().is_none_or(str::is_empty) {
        request["allocationMode"] = json!("ExactCount");
    }
    if request["allocationMode"] == "ExactCount" && request["count"].as_i64().unwrap_or(0) == 0 {
        request["count"] = json!(1);
    }
}

/// Whether a `DeviceClaim` (spec) uses `DRAConsumableCapacity`: a constraint's
/// `distinctAttribute` or a request's `capacity`.
fn claim_uses_consumable_capacity(devices: &Value) -> bool {
    items(&devices["constraints"]).any(|c| set(&c["distinctAttribute"]))
        || items(&devices["requests"]).any(|r| {
            set(&r["exactly"]["capacity"])
                || items(&r["firstAvailable"]).any(|s| set(&s["capacity"]))
        })
}

/// Drops a `DeviceClaim`'s `DRAConsumableCapacity` fields unless the stored object
/// (`in_use`) has some. Upstream's loop over constraints clears a copy, so a
/// constraint's `distinctAttribute` is kept; so it is here.
fn drop_request_capacity(devices: Option<&mut Value>, in_use: bool) {
    let Some(devices) = devices.filter(|_| !in_use) else { return };
    for request in items_mut(devices.get_mut("requests")) {
        remove(request.get_mut("exactly"), &["capacity"]);
        for sub in items_mut(request.get_mut("firstAvailable")) {
            remove(Some(sub), &["capacity"]);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::default_requests;

    #[test]
    fn requests_default_to_one_device() {
        let mut devices = json!({ "requests": [
            { "name": "a", "exactly": { "deviceClassName": "gpu" } },
            { "name": "b", "exactly": { "deviceClassName": "gpu", "allocationMode": "All" } },
            { "name": "c", "exactly": { "deviceClassName": "gpu", "count": 3 } },
            { "name": "d", "firstAvailable": [{ "name": "big", "deviceClassName": "gpu" }] }
        ] });
        default_requests(&mut devices);
        let requests = &devices["requests"];
        assert_eq!(requests[0]["exactly"]["allocationMode"], "ExactCount");
        assert_eq!(requests[0]["exactly"]["count"], 1);
        assert_eq!(requests[1]["exactly"]["allocationMode"], "All");
        assert!(requests[1]["exactly"].get("count").is_none());
        assert_eq!(requests[2]["exactly"]["count"], 3);
        assert_eq!(requests[3]["firstAvailable"][0]["allocationMode"], "ExactCount");
        assert_eq!(requests[3]["firstAvailable"][0]["count"], 1);
    }
}

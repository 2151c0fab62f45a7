//! Printers of dynamic resource allocation (`resource.k8s.io`): device classes, resource
//! claims and their templates, resource slices. Upstream's `printDeviceClass`,
//! `printResourceClaim` (with `resourceClaimState`), `printResourceClaimTemplate` and
//! `printResourceSlice`.

use serde_json::{Value, json};

use super::cells::{self, deleting, len, text};
use super::{Column, Printer};

pub(crate) const DEVICE_CLASS: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::AGE],
    cells: |o, now| vec![cells::name(o), now.age(o)],
};

pub(crate) const RESOURCE_CLAIM: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::string("State"), Column::AGE],
    cells: |o, now| vec![cells::name(o), json!(claim_state(o)), now.age(o)],
};

/// The same columns as a device class's.
pub(crate) const RESOURCE_CLAIM_TEMPLATE: Printer = DEVICE_CLASS;

pub(crate) const RESOURCE_SLICE: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::string("Node"),
        Column::string("Driver"),
        Column::string("Pool"),
        Column::AGE,
    ],
    cells: |o, now| {
        let spec = &o["spec"];
        vec![
            cells::name(o),
            json!(text(&spec["nodeName"])),
            json!(text(&spec["driver"])),
            json!(text(&spec["pool"]["name"])),
            now.age(o),
        ]
    },
};

/// Upstream's `resourceClaimState`: `deleted`, then `pending` (not allocated, not being
/// deleted) or `allocated` and `reserved` (reserved for at least one consumer), joined
/// by commas.
fn claim_state(claim: &Value) -> String {
    let deleted = deleting(claim);
    let status = &claim["status"];
    let mut states = Vec::new();
    if deleted {
        states.push("deleted");
    }
    if status["allocation"].is_null() {
        if !deleted {
            states.push("pending");
        }
    } else {
        states.push("allocated");
        if len(&status["reservedFor"]) > 0 {
            states.push("reserved");
        }
    }
    states.join(",")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::table::tests::print;

    const NOW: &str = "2025-01-01T00:10:00Z";

    #[test]
    fn claims_print_their_state() {
        let state = |claim: serde_json::Value| {
            let (columns, cells) = print("resource.k8s.io", "resourceclaims", &claim, NOW);
            assert_eq!(columns, ["Name", "State", "Age"]);
            cells[1].clone()
        };
        let meta = json!({ "name": "gpu", "creationTimestamp": "2025-01-01T00:00:00Z" });
        assert_eq!(state(json!({ "metadata": meta, "status": {} })), "pending");
        let allocated = json!({ "devices": { "results": [] } });
        assert_eq!(
            state(json!({ "metadata": meta, "status": { "allocation": allocated } })),
            "allocated"
        );
        let reserved = json!({ "allocation": allocated, "reservedFor": [{ "resource": "pods", "name": "p", "uid": "u" }] });
        assert_eq!(state(json!({ "metadata": meta, "status": reserved })), "allocated,reserved");
        let mut deleted = meta.clone();
        deleted["deletionTimestamp"] = json!("2025-01-01T00:05:00Z");
        assert_eq!(state(json!({ "metadata": deleted, "status": {} })), "deleted");
        assert_eq!(
            state(json!({ "metadata": deleted, "status": reserved })),
            "deleted,allocated,reserved"
        );
    }

    #[test]
    fn slices_print_node_driver_and_pool() {
        let slice = json!({
            "metadata": { "name": "node-1-gpu", "creationTimestamp": "2025-01-01T00:00:00Z" },
            "spec": { "driver": "gpu.example.com", "nodeName": "node-1", "pool": { "name": "node-1", "generation": 0, "resourceSliceCount": 1 } }
        });
        let (columns, cells) = print("resource.k8s.io", "resourceslices", &slice, NOW);
        assert_eq!(columns, ["Name", "Node", "Driver", "Pool", "Age"]);
        assert_eq!(
            json!(cells),
            json!(["node-1-gpu", "node-1", "gpu.example.com", "node-1", "10m"])
        );
        let everywhere = json!({ "metadata": { "name": "net" }, "spec": { "driver": "d", "allNodes": true, "pool": { "name": "p" } } });
        let (_, cells) = print("resource.k8s.io", "resourceslices", &everywhere, NOW);
        assert_eq!(json!(cells), json!(["net", "", "d", "p", "<unknown>"]));
        let class = json!({ "metadata": { "name": "gpu.example.com" } });
        let (columns, _) = print("resource.k8s.io", "deviceclasses", &class, NOW);
        assert_eq!(columns, ["Name", "Age"]);
    }
}

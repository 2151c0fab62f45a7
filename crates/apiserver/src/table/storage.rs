//! Printers of volumes and the storage group: persistent volumes and claims, storage
//! classes, volume attributes classes, volume attachments, CSI drivers, CSI nodes and CSI
//! storage capacities. Upstream's `printPersistentVolume`, `printPersistentVolumeClaim`,
//! `printStorageClass`, `printVolumeAttributesClass`, `printVolumeAttachment`,
//! `printCSIDriver`, `printCSINode`, `printCSIStorageCapacity`.

use serde_json::{Value, json};

use super::cells::{self, Now, annotation, flag, quantity, strings, text, text_or};
use super::{Column, Printer};

pub(crate) const PERSISTENT_VOLUME: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::string("Capacity"),
        Column::string("Access Modes"),
        Column::string("Reclaim Policy"),
        Column::string("Status"),
        Column::string("Claim"),
        Column::string("StorageClass"),
        Column::string("VolumeAttributesClass"),
        Column::string("Reason"),
        Column::AGE,
        Column::wide("VolumeMode"),
    ],
    cells: persistent_volume_cells,
};

pub(crate) const PERSISTENT_VOLUME_CLAIM: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::string("Status"),
        Column::string("Volume"),
        Column::string("Capacity"),
        Column::string("Access Modes"),
        Column::string("StorageClass"),
        Column::string("VolumeAttributesClass"),
        Column::AGE,
        Column::wide("VolumeMode"),
    ],
    cells: persistent_volume_claim_cells,
};

pub(crate) const STORAGE_CLASS: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::string("Provisioner"),
        Column::string("ReclaimPolicy"),
        Column::string("VolumeBindingMode"),
        Column::string("AllowVolumeExpansion"),
        Column::AGE,
    ],
    cells: |o, now| {
        let default = ["storageclass.kubernetes.io/is-default-class", BETA_DEFAULT_CLASS]
            .into_iter()
            .any(|key| annotation(o, key) == Some("true"));
        vec![
            default_name(o, default),
            json!(text(&o["provisioner"])),
            json!(text_or(&o["reclaimPolicy"], "Delete")),
            json!(text_or(&o["volumeBindingMode"], "Immediate")),
            json!(flag(&o["allowVolumeExpansion"], false)),
            now.age(o),
        ]
    },
};

pub(crate) const VOLUME_ATTRIBUTES_CLASS: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::string("DriverName"), Column::AGE],
    cells: |o, now| {
        let default = annotation(o, "volumeattributesclass.alpha.kubernetes.io/is-default-class")
            == Some("true");
        vec![default_name(o, default), json!(text(&o["driverName"])), now.age(o)]
    },
};

/// Upstream gives the attacher column `format: name` too.
pub(crate) const VOLUME_ATTACHMENT: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column { name: "Attacher", kind: "string", priority: 0, format: "name" },
        Column::string("PV"),
        Column::string("Node"),
        Column::boolean("Attached"),
        Column::AGE,
    ],
    cells: |o, now| {
        let spec = &o["spec"];
        vec![
            cells::name(o),
            json!(text(&spec["attacher"])),
            json!(text(&spec["source"]["persistentVolumeName"])),
            json!(text(&spec["nodeName"])),
            json!(flag(&o["status"]["attached"], false)),
            now.age(o),
        ]
    },
};

pub(crate) const CSI_DRIVER: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::boolean("AttachRequired"),
        Column::boolean("PodInfoOnMount"),
        Column::boolean("StorageCapacity"),
        Column::string("TokenRequests"),
        Column::boolean("RequiresRepublish"),
        Column::string("Modes"),
        Column::AGE,
    ],
    cells: |o, now| {
        let spec = &o["spec"];
        let tokens = &spec["tokenRequests"];
        let tokens = if tokens.is_array() {
            cells::items(tokens).map(|t| text(&t["audience"])).collect::<Vec<_>>().join(",")
        } else {
            "<unset>".into()
        };
        let modes: Vec<&str> = strings(&spec["volumeLifecycleModes"]).collect();
        vec![
            cells::name(o),
            json!(flag(&spec["attachRequired"], true)),
            json!(flag(&spec["podInfoOnMount"], false)),
            json!(flag(&spec["storageCapacity"], false)),
            json!(tokens),
            json!(flag(&spec["requiresRepublish"], false)),
            json!(if modes.is_empty() { "<none>".to_owned() } else { modes.join(",") }),
            now.age(o),
        ]
    },
};

pub(crate) const CSI_NODE: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::integer("Drivers"), Column::AGE],
    cells: |o, now| vec![cells::name(o), json!(cells::len(&o["spec"]["drivers"])), now.age(o)],
};

/// Upstream prints no age for CSI storage capacities.
pub(crate) const CSI_STORAGE_CAPACITY: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::string("StorageClassName"), Column::string("Capacity")],
    cells: |o, _| {
        let capacity =
            if o["capacity"].is_null() { "<unset>".into() } else { quantity(&o["capacity"]) };
        vec![cells::name(o), json!(text(&o["storageClassName"])), json!(capacity)]
    },
};

/// The beta default-class annotation, still honoured by upstream.
const BETA_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// The beta storage-class annotation of volumes and claims, which wins over the field.
const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// The name, marked ` (default)` for the default class.
fn default_name(o: &Value, default: bool) -> Value {
    let name = text(&o["metadata"]["name"]);
    json!(if default { format!("{name} (default)") } else { name.to_owned() })
}

/// Upstream's `GetAccessModesAsString`: `RWO,ROX,RWX,RWOP`, in that order, each once.
fn access_modes(modes: &Value) -> String {
    let modes: Vec<&str> = strings(modes).collect();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .into_iter()
    .filter(|(mode, _)| modes.contains(mode))
    .map(|(_, short)| short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The volume's or claim's class: the beta annotation if set, else `storageClassName`.
fn storage_class(o: &Value) -> String {
    annotation(o, BETA_STORAGE_CLASS)
        .unwrap_or_else(|| text(&o["spec"]["storageClassName"]))
        .to_owned()
}

fn persistent_volume_cells(o: &Value, now: Now) -> Vec<Value> {
    let (spec, status) = (&o["spec"], &o["status"]);
    let claim = &spec["claimRef"];
    let claim = if claim.is_object() {
        format!("{}/{}", text(&claim["namespace"]), text(&claim["name"]))
    } else {
        String::new()
    };
    let phase = if cells::deleting(o) { "Terminating" } else { text(&status["phase"]) };
    vec![
        cells::name(o),
        json!(quantity(&spec["capacity"]["storage"])),
        json!(access_modes(&spec["accessModes"])),
        json!(text(&spec["persistentVolumeReclaimPolicy"])),
        json!(phase),
        json!(claim),
        json!(storage_class(o)),
        json!(spec["volumeAttributesClassName"].as_str().unwrap_or("<unset>")),
        json!(text(&status["reason"])),
        now.age(o),
        json!(spec["volumeMode"].as_str().unwrap_or("<unset>")),
    ]
}

/// Capacity and access modes are the bound volume's, shown only once the claim names one.
fn persistent_volume_claim_cells(o: &Value, now: Now) -> Vec<Value> {
    let (spec, status) = (&o["spec"], &o["status"]);
    let phase = if cells::deleting(o) { "Terminating" } else { text(&status["phase"]) };
    let volume = text(&spec["volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (quantity(&status["capacity"]["storage"]), access_modes(&status["accessModes"]))
    };
    vec![
        cells::name(o),
        json!(phase),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(storage_class(o)),
        json!(spec["volumeAttributesClassName"].as_str().unwrap_or("<unset>")),
        now.age(o),
        json!(spec["volumeMode"].as_str().unwrap_or("<unset>")),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::table::tests::print;

    #[test]
    fn a_bound_claim_and_its_volume() {
        let claim = json!({
            "metadata": { "name": "data", "creationTimestamp": "2025-01-01T00:00:00Z" },
            "spec": {
                "accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                "volumeName": "pv-1", "volumeMode": "Filesystem",
                "resources": { "requests": { "storage": "1Gi" } }
            },
            "status": { "phase": "Bound", "accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "capacity": { "storage": "2Gi" } }
        });
        let (columns, cells) = print("", "persistentvolumeclaims", &claim, "2025-01-01T02:00:00Z");
        assert_eq!(
            columns,
            [
                "Name",
                "Status",
                "Volume",
                "Capacity",
                "Access Modes",
                "StorageClass",
                "VolumeAttributesClass",
                "Age",
                "VolumeMode"
            ]
        );
        let expected = json!([
            "data",
            "Bound",
            "pv-1",
            "2Gi",
            "RWO,ROX",
            "local-path",
            "<unset>",
            "120m",
            "Filesystem"
        ]);
        assert_eq!(json!(cells), expected);

        let pending = json!({ "metadata": { "name": "p" }, "spec": { "resources": { "requests": { "storage": "1Gi" } } }, "status": { "phase": "Pending" } });
        let (_, cells) = print("", "persistentvolumeclaims", &pending, "2025-01-01T02:00:00Z");
        assert_eq!(cells[1..5], [json!("Pending"), json!(""), json!(""), json!("")]);

        let volume = json!({
            "metadata": { "name": "pv-1", "annotations": { "volume.beta.kubernetes.io/storage-class": "old" } },
            "spec": {
                "capacity": { "storage": "2Gi" }, "accessModes": ["ReadWriteOncePod"],
                "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "local-path",
                "claimRef": { "namespace": "default", "name": "data" }
            },
            "status": { "phase": "Bound" }
        });
        let (_, cells) = print("", "persistentvolumes", &volume, "2025-01-01T02:00:00Z");
        let expected = json!([
            "pv-1",
            "2Gi",
            "RWOP",
            "Retain",
            "Bound",
            "default/data",
            "old",
            "<unset>",
            "",
            "<unknown>",
            "<unset>"
        ]);
        assert_eq!(json!(cells), expected);
    }

    #[test]
    fn the_default_storage_class_is_marked() {
        let class = json!({
            "metadata": { "name": "local-path", "annotations": { "storageclass.kubernetes.io/is-default-class": "true" } },
            "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer"
        });
        let (_, cells) = print("storage.k8s.io", "storageclasses", &class, "2025-01-01T00:00:00Z");
        let expected = json!([
            "local-path (default)",
            "rancher.io/local-path",
            "Delete",
            "WaitForFirstConsumer",
            false,
            "<unknown>"
        ]);
        assert_eq!(json!(cells), expected);
    }
}

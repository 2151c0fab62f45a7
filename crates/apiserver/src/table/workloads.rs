//! Printers of the replicated workloads and what guards them: deployments, replica sets,
//! stateful sets, daemon sets, replication controllers, controller revisions and pod
//! disruption budgets. Upstream's `printDeployment`, `printReplicaSet`,
//! `printStatefulSet`, `printDaemonSet`, `printReplicationController`,
//! `printControllerRevision`, `printPodDisruptionBudget`.
//!
//! A missing `spec.replicas` prints as 1, the value upstream's defaulting gives it before
//! any printer sees the object.

use serde_json::{Value, json};

use super::cells::{self, Now, format_selector, int, labels, text};
use super::{Column, Printer};
use crate::meta::metadata;

/// Containers and images of the pod template, then the selector: the wide columns of most
/// workloads.
const WIDE: [Column; 3] =
    [Column::wide("Containers"), Column::wide("Images"), Column::wide("Selector")];

fn replicas(o: &Value) -> i64 {
    o["spec"]["replicas"].as_i64().unwrap_or(1)
}

pub(crate) const DEPLOYMENT: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::string("Ready"),
        Column::string("Up-to-date"),
        Column::string("Available"),
        Column::AGE,
        WIDE[0],
        WIDE[1],
        WIDE[2],
    ],
    cells: |o, now| {
        let status = &o["status"];
        let [names, images] = cells::containers(&o["spec"]["template"]["spec"]);
        // Unlike the other workloads, an empty selector prints as nothing here.
        let selector =
            cells::selector(&o["spec"]["selector"]).unwrap_or_else(|| "<invalid>".into());
        vec![
            cells::name(o),
            json!(format!("{}/{}", int(&status["readyReplicas"]), replicas(o))),
            json!(int(&status["updatedReplicas"])),
            json!(int(&status["availableReplicas"])),
            now.age(o),
            names,
            images,
            json!(selector),
        ]
    },
};

const REPLICATED: &[Column] = &[
    Column::NAME,
    Column::integer("Desired"),
    Column::integer("Current"),
    Column::integer("Ready"),
    Column::AGE,
    WIDE[0],
    WIDE[1],
    WIDE[2],
];

pub(crate) const REPLICA_SET: Printer = Printer::Columns {
    columns: REPLICATED,
    cells: |o, now| {
        let mut row = replicated(o, now);
        row.push(json!(format_selector(&o["spec"]["selector"])));
        row
    },
};

/// Replication controllers select by a plain label map.
pub(crate) const REPLICATION_CONTROLLER: Printer = Printer::Columns {
    columns: REPLICATED,
    cells: |o, now| {
        let mut row = replicated(o, now);
        row.push(json!(labels(&o["spec"]["selector"])));
        row
    },
};

/// Name, desired, current, ready, age, containers, images: all but the selector.
fn replicated(o: &Value, now: Now) -> Vec<Value> {
    let status = &o["status"];
    let [names, images] = cells::containers(&o["spec"]["template"]["spec"]);
    vec![
        cells::name(o),
        json!(replicas(o)),
        json!(int(&status["replicas"])),
        json!(int(&status["readyReplicas"])),
        now.age(o),
        names,
        images,
    ]
}

pub(crate) const STATEFUL_SET: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::string("Ready"), Column::AGE, WIDE[0], WIDE[1]],
    cells: |o, now| {
        let [names, images] = cells::containers(&o["spec"]["template"]["spec"]);
        let ready = format!("{}/{}", int(&o["status"]["readyReplicas"]), replicas(o));
        vec![cells::name(o), json!(ready), now.age(o), names, images]
    },
};

pub(crate) const DAEMON_SET: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::integer("Desired"),
        Column::integer("Current"),
        Column::integer("Ready"),
        Column::integer("Up-to-date"),
        Column::integer("Available"),
        Column::string("Node Selector"),
        Column::AGE,
        WIDE[0],
        WIDE[1],
        WIDE[2],
    ],
    cells: |o, now| {
        let (spec, status) = (&o["spec"], &o["status"]);
        let [names, images] = cells::containers(&spec["template"]["spec"]);
        vec![
            cells::name(o),
            json!(int(&status["desiredNumberScheduled"])),
            json!(int(&status["currentNumberScheduled"])),
            json!(int(&status["numberReady"])),
            json!(int(&status["updatedNumberScheduled"])),
            json!(int(&status["numberAvailable"])),
            json!(labels(&spec["template"]["spec"]["nodeSelector"])),
            now.age(o),
            names,
            images,
            json!(format_selector(&spec["selector"])),
        ]
    },
};

pub(crate) const CONTROLLER_REVISION: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::string("Controller"), Column::string("Revision"), Column::AGE],
    cells: |o, now| {
        vec![cells::name(o), json!(controller(o)), json!(int(&o["revision"])), now.age(o)]
    },
};

/// The owner with `controller: true`, as `kind.group/name` in lower case (`<none>`).
fn controller(o: &Value) -> String {
    let owners = metadata(o).get("ownerReferences").unwrap_or(&Value::Null);
    let Some(owner) = cells::items(owners).find(|r| r["controller"] == true) else {
        return "<none>".into();
    };
    let name = text(&owner["name"]);
    let group = match text(&owner["apiVersion"]).split_once('/') {
        Some((group, _)) => group,
        None => "",
    };
    let kind = match (text(&owner["kind"]), group) {
        ("", "") => return name.to_owned(),
        (kind, "") => kind.to_owned(),
        (kind, group) => format!("{kind}.{group}"),
    };
    format!("{}/{name}", kind.to_lowercase())
}

pub(crate) const POD_DISRUPTION_BUDGET: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::string("Min Available"),
        Column::string("Max Unavailable"),
        Column::integer("Allowed Disruptions"),
        Column::AGE,
    ],
    cells: |o, now| {
        let bound =
            |v: &Value| if v.is_null() { "N/A".to_owned() } else { cells::int_or_string(v) };
        vec![
            cells::name(o),
            json!(bound(&o["spec"]["minAvailable"])),
            json!(bound(&o["spec"]["maxUnavailable"])),
            json!(int(&o["status"]["disruptionsAllowed"])),
            now.age(o),
        ]
    },
};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::table::tests::print;

    #[test]
    fn a_deployment_and_its_replica_set() {
        let template = json!({ "spec": { "containers": [
            { "name": "web", "image": "nginx:1.25" }, { "name": "log", "image": "busybox" }
        ] } });
        let deployment = json!({
            "metadata": { "name": "web", "creationTimestamp": "2025-01-01T00:00:00Z" },
            "spec": { "replicas": 3, "selector": { "matchLabels": { "app": "web" } }, "template": template },
            "status": { "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2 }
        });
        let (columns, cells) = print("apps", "deployments", &deployment, "2025-01-01T00:00:30Z");
        assert_eq!(columns[..5], ["Name", "Ready", "Up-to-date", "Available", "Age"]);
        let expected =
            json!(["web", "2/3", 3, 2, "30s", "web,log", "nginx:1.25,busybox", "app=web"]);
        assert_eq!(json!(cells), expected);

        let replica_set = json!({
            "metadata": { "name": "web-5d4f", "ownerReferences": [] },
            "spec": { "replicas": 3, "template": template },
            "status": { "replicas": 3, "readyReplicas": 1 }
        });
        let (_, cells) = print("apps", "replicasets", &replica_set, "2025-01-01T00:00:30Z");
        let expected =
            json!(["web-5d4f", 3, 3, 1, "<unknown>", "web,log", "nginx:1.25,busybox", "<none>"]);
        assert_eq!(json!(cells), expected);
    }

    #[test]
    fn a_controller_revision_names_its_owner() {
        let revision = json!({
            "metadata": { "name": "ds-7c9", "ownerReferences": [
                { "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "controller": true }
            ] },
            "revision": 2
        });
        let (_, cells) = print("apps", "controllerrevisions", &revision, "2025-01-01T00:00:00Z");
        assert_eq!(json!(cells), json!(["ds-7c9", "daemonset.apps/ds", 2, "<unknown>"]));
    }

    #[test]
    fn a_disruption_budget_shows_what_it_allows() {
        let pdb = json!({
            "metadata": { "name": "web" },
            "spec": { "minAvailable": "50%" },
            "status": { "disruptionsAllowed": 1 }
        });
        let (_, cells) = print("policy", "poddisruptionbudgets", &pdb, "2025-01-01T00:00:00Z");
        assert_eq!(json!(cells), json!(["web", "50%", "N/A", 1, "<unknown>"]));
    }
}

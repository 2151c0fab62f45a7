//! Printers of the core group's configuration and cluster objects: namespaces, config maps,
//! secrets, service accounts, nodes, component statuses, resource quotas and pod templates.
//! Pods, events, services, endpoints, volumes and replication controllers have their own
//! modules. Upstream's `printNamespace`, `printConfigMap`, `printSecret`,
//! `printServiceAccount`, `printNode`, `printComponentStatus`, `printResourceQuota`,
//! `printPodTemplate`.

use serde_json::{Value, json};

use super::cells::{self, Now, items, labels, len, quantity, text, text_or};
use super::{Column, Printer};
use crate::meta::metadata;

pub(crate) const NAMESPACE: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::string("Status"), Column::AGE],
    cells: |o, now| vec![cells::name(o), json!(text(&o["status"]["phase"])), now.age(o)],
};

pub(crate) const CONFIG_MAP: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::string("Data"), Column::AGE],
    cells: |o, now| {
        vec![cells::name(o), json!(len(&o["data"]) + len(&o["binaryData"])), now.age(o)]
    },
};

pub(crate) const SECRET: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::string("Type"), Column::string("Data"), Column::AGE],
    cells: |o, now| {
        let kind = text_or(&o["type"], "Opaque");
        vec![cells::name(o), json!(kind), json!(len(&o["data"])), now.age(o)]
    },
};

pub(crate) const SERVICE_ACCOUNT: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::string("Secrets"), Column::AGE],
    cells: |o, now| vec![cells::name(o), json!(len(&o["secrets"])), now.age(o)],
};

pub(crate) const NODE: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::string("Status"),
        Column::string("Roles"),
        Column::AGE,
        Column::string("Version"),
        Column::wide("Internal-IP"),
        Column::wide("External-IP"),
        Column::wide("OS-Image"),
        Column::wide("Kernel-Version"),
        Column::wide("Container-Runtime"),
    ],
    cells: node_cells,
};

pub(crate) const COMPONENT_STATUS: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::string("Status"),
        Column::string("Message"),
        Column::string("Error"),
    ],
    cells: |o, _| {
        let (status, message, error) = match cells::condition(&o["conditions"], "Healthy") {
            Some(c) => {
                let status = if c["status"] == "True" { "Healthy" } else { "Unhealthy" };
                (status, text(&c["message"]), text(&c["error"]))
            }
            None => ("Unknown", "", ""),
        };
        vec![cells::name(o), json!(status), json!(message), json!(error)]
    },
};

pub(crate) const RESOURCE_QUOTA: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::string("Request"), Column::string("Limit"), Column::AGE],
    cells: resource_quota_cells,
};

pub(crate) const POD_TEMPLATE: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::string("Containers"),
        Column::string("Images"),
        Column::string("Pod Labels"),
    ],
    cells: |o, _| {
        let template = &o["template"];
        let [names, images] = cells::containers(&template["spec"]);
        vec![cells::name(o), names, images, json!(labels(&template["metadata"]["labels"]))]
    },
};

/// `Ready`, `NotReady` or `Unknown` from the Ready condition, then `SchedulingDisabled`
/// for a cordoned node; roles from the `node-role.kubernetes.io/<role>` and
/// `kubernetes.io/role` labels.
fn node_cells(o: &Value, now: Now) -> Vec<Value> {
    let mut status = vec![match cells::condition(&o["status"]["conditions"], "Ready") {
        Some(c) if c["status"] == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if o["spec"]["unschedulable"] == true {
        status.push("SchedulingDisabled");
    }
    let mut roles: Vec<&str> = metadata(o)
        .get("labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(role) => Some(role),
            None if k == "kubernetes.io/role" => v.as_str(),
            None => None,
        })
        .filter(|role| !role.is_empty())
        .collect();
    roles.sort_unstable();
    roles.dedup();
    let address = |kind: &str| {
        items(&o["status"]["addresses"])
            .find(|a| a["type"] == kind)
            .map_or("<none>", |a| text(&a["address"]))
            .to_owned()
    };
    let info = &o["status"]["nodeInfo"];
    vec![
        cells::name(o),
        json!(status.join(",")),
        json!(if roles.is_empty() { "<none>".to_owned() } else { roles.join(",") }),
        now.age(o),
        json!(text(&info["kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(text_or(&info["osImage"], "<unknown>")),
        json!(text_or(&info["kernelVersion"], "<unknown>")),
        json!(text_or(&info["containerRuntimeVersion"], "<unknown>")),
    ]
}

/// `resource: used/hard` for each hard limit, sorted by resource name; `limits.*` resources
/// go to the Limit column, all others to Request.
fn resource_quota_cells(o: &Value, now: Now) -> Vec<Value> {
    let status = &o["status"];
    let mut resources: Vec<&String> =
        status["hard"].as_object().into_iter().flat_map(|m| m.keys()).collect();
    resources.sort_unstable();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for resource in resources {
        let used = quantity(&status["used"][resource.as_str()]);
        let hard = quantity(&status["hard"][resource.as_str()]);
        let shown = format!("{resource}: {used}/{hard}");
        match resource.split_once('.') {
            Some(("limits", _)) => limits.push(shown),
            _ => requests.push(shown),
        }
    }
    vec![cells::name(o), json!(requests.join(", ")), json!(limits.join(", ")), now.age(o)]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::table::tests::print;

    #[test]
    fn a_cordoned_control_plane_node() {
        let node = json!({
            "metadata": {
                "name": "n1",
                "creationTimestamp": "2025-01-01T00:00:00Z",
                "labels": { "node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "master" }
            },
            "spec": { "unschedulable": true },
            "status": {
                "conditions": [{ "type": "Ready", "status": "True" }],
                "addresses": [{ "type": "InternalIP", "address": "10.0.0.1" }],
                "nodeInfo": { "kubeletVersion": "v1.34.0", "osImage": "Debian" }
            }
        });
        let (columns, cells) = print("", "nodes", &node, "2025-01-01T00:05:00Z");
        assert_eq!(columns[..5], ["Name", "Status", "Roles", "Age", "Version"]);
        assert_eq!(
            cells,
            [
                "n1",
                "Ready,SchedulingDisabled",
                "control-plane,master",
                "5m",
                "v1.34.0",
                "10.0.0.1",
                "<none>",
                "Debian",
                "<unknown>",
                "<unknown>"
            ]
            .map(|s| json!(s))
        );
    }

    #[test]
    fn a_quota_splits_requests_from_limits() {
        let quota = json!({
            "metadata": { "name": "q" },
            "status": {
                "hard": { "pods": "10", "limits.cpu": "2", "requests.memory": "1Gi" },
                "used": { "pods": "3", "requests.memory": "512Mi" }
            }
        });
        let (columns, cells) = print("", "resourcequotas", &quota, "2025-01-01T00:00:00Z");
        assert_eq!(columns, ["Name", "Request", "Limit", "Age"]);
        assert_eq!(cells[1], json!("pods: 3/10, requests.memory: 512Mi/1Gi"));
        assert_eq!(cells[2], json!("limits.cpu: 0/2"));
        assert_eq!(cells[3], json!("<unknown>"));
    }
}

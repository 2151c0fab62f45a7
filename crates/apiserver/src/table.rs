//! Server-side printing: `meta.k8s.io/v1` Tables for `kubectl get`, with upstream's
//! columns per type (`pkg/printers/internalversion/printers.go`) and upstream's
//! NAME/CREATED AT default for types without a printer.

use keelson_api::ResourceInfo;
use keelson_api::k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::registry::meta::metadata;
use crate::request::Request;

/// A column: name, type, and priority (0 shown always, 1 only with `-o wide`).
type Column = (&'static str, &'static str, u8);
/// A type's columns and the function that fills a row's cells.
type Printer = (&'static [Column], fn(&Value) -> Vec<Value>);

/// Renders `objects` as a Table; `list_meta` for lists, `None` for one object.
pub fn render(
    info: &ResourceInfo,
    objects: &[Value],
    list_meta: Option<Value>,
    req: &Request,
) -> Value {
    let (columns, cells): Printer = printer(info);
    let include = req.param("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let object = match include {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata(o) }),
            };
            json!({ "cells": cells(o), "object": object })
        })
        .collect();
    let definitions: Vec<Value> = columns
        .iter()
        .map(|(name, kind, priority)| {
            let format = if *name == "Name" { "name" } else { "" };
            json!({ "name": name, "type": kind, "format": format, "description": "", "priority": priority })
        })
        .collect();
    let meta = list_meta.unwrap_or_else(|| {
        json!({ "resourceVersion": objects.first().and_then(|o| metadata(o).get("resourceVersion")).cloned().unwrap_or(json!("")) })
    });
    json!({ "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": definitions, "rows": rows })
}

fn printer(info: &ResourceInfo) -> Printer {
    match (info.group, info.plural) {
        ("", "namespaces") => {
            (&[("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)], |o| {
                vec![name(o), json!(o["status"]["phase"].as_str().unwrap_or("")), age(o)]
            })
        }
        ("", "configmaps") => {
            (&[("Name", "string", 0), ("Data", "string", 0), ("Age", "string", 0)], |o| {
                let count = len(&o["data"]) + len(&o["binaryData"]);
                vec![name(o), json!(count), age(o)]
            })
        }
        ("", "secrets") => (
            &[
                ("Name", "string", 0),
                ("Type", "string", 0),
                ("Data", "string", 0),
                ("Age", "string", 0),
            ],
            |o| {
                vec![
                    name(o),
                    json!(o["type"].as_str().unwrap_or("Opaque")),
                    json!(len(&o["data"])),
                    age(o),
                ]
            },
        ),
        ("", "serviceaccounts") => {
            (&[("Name", "string", 0), ("Secrets", "string", 0), ("Age", "string", 0)], |o| {
                vec![name(o), json!(len(&o["secrets"])), age(o)]
            })
        }
        ("", "pods") => (
            &[
                ("Name", "string", 0),
                ("Ready", "string", 0),
                ("Status", "string", 0),
                ("Restarts", "string", 0),
                ("Age", "string", 0),
                ("IP", "string", 1),
                ("Node", "string", 1),
                ("Nominated Node", "string", 1),
                ("Readiness Gates", "string", 1),
            ],
            pod_cells,
        ),
        ("", "services") => (
            &[
                ("Name", "string", 0),
                ("Type", "string", 0),
                ("Cluster-IP", "string", 0),
                ("External-IP", "string", 0),
                ("Port(s)", "string", 0),
                ("Age", "string", 0),
                ("Selector", "string", 1),
            ],
            service_cells,
        ),
        ("", "nodes") => (
            &[
                ("Name", "string", 0),
                ("Status", "string", 0),
                ("Roles", "string", 0),
                ("Age", "string", 0),
                ("Version", "string", 0),
                ("Internal-IP", "string", 1),
                ("External-IP", "string", 1),
                ("OS-Image", "string", 1),
                ("Kernel-Version", "string", 1),
                ("Container-Runtime", "string", 1),
            ],
            node_cells,
        ),
        ("", "endpoints") => {
            (&[("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)], |o| {
                let mut addresses = Vec::new();
                for subset in o["subsets"].as_array().into_iter().flatten() {
                    for address in subset["addresses"].as_array().into_iter().flatten() {
                        for port in subset["ports"].as_array().into_iter().flatten() {
                            addresses.push(format!(
                                "{}:{}",
                                address["ip"].as_str().unwrap_or(""),
                                port["port"]
                            ));
                        }
                    }
                }
                let shown = if addresses.is_empty() {
                    "<none>".to_owned()
                } else {
                    truncate_list(&addresses, 3)
                };
                vec![name(o), json!(shown), age(o)]
            })
        }
        ("apps", "deployments") => (
            &[
                ("Name", "string", 0),
                ("Ready", "string", 0),
                ("Up-to-date", "string", 0),
                ("Available", "string", 0),
                ("Age", "string", 0),
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1),
            ],
            |o| {
                let s = &o["status"];
                let ready = format!(
                    "{}/{}",
                    s["readyReplicas"].as_i64().unwrap_or(0),
                    o["spec"]["replicas"].as_i64().unwrap_or(1)
                );
                let mut cells = vec![
                    name(o),
                    json!(ready),
                    json!(s["updatedReplicas"].as_i64().unwrap_or(0)),
                    json!(s["availableReplicas"].as_i64().unwrap_or(0)),
                    age(o),
                ];
                cells.extend(workload_wide(o));
                cells
            },
        ),
        ("apps", "replicasets") => (
            &[
                ("Name", "string", 0),
                ("Desired", "integer", 0),
                ("Current", "integer", 0),
                ("Ready", "integer", 0),
                ("Age", "string", 0),
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1),
            ],
            |o| {
                let s = &o["status"];
                let mut cells = vec![
                    name(o),
                    json!(o["spec"]["replicas"].as_i64().unwrap_or(1)),
                    json!(s["replicas"].as_i64().unwrap_or(0)),
                    json!(s["readyReplicas"].as_i64().unwrap_or(0)),
                    age(o),
                ];
                cells.extend(workload_wide(o));
                cells
            },
        ),
        ("coordination.k8s.io", "leases") => {
            (&[("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)], |o| {
                vec![name(o), json!(o["spec"]["holderIdentity"].as_str().unwrap_or("")), age(o)]
            })
        }
        _ => (&[("Name", "string", 0), ("Created At", "date", 0)], |o| {
            vec![name(o), metadata(o).get("creationTimestamp").cloned().unwrap_or(Value::Null)]
        }),
    }
}

fn name(o: &Value) -> Value {
    metadata(o).get("name").cloned().unwrap_or(json!(""))
}

fn len(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    }
}

fn age(o: &Value) -> Value {
    let created = metadata(o)
        .get("creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<Timestamp>().ok());
    match created {
        Some(t) => json!(human_duration(
            crate::registry::meta::now_timestamp().as_second() - t.as_second()
        )),
        None => json!("<unknown>"),
    }
}

/// Upstream's `duration.HumanDuration`: precise when recent, coarse when old.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    let y = d / 365;
    match () {
        () if s < 120 => format!("{s}s"),
        () if m < 10 && s % 60 != 0 => format!("{m}m{}s", s % 60),
        () if m < 10 || m < 180 => format!("{m}m"),
        () if h < 8 && m % 60 != 0 => format!("{h}h{}m", m % 60),
        () if h < 48 => format!("{h}h"),
        () if h < 192 && h % 24 != 0 => format!("{d}d{}h", h % 24),
        () if h < 24 * 365 * 2 => format!("{d}d"),
        () if y < 8 && d % 365 != 0 => format!("{y}y{}d", d % 365),
        () => format!("{y}y"),
    }
}

fn truncate_list(items: &[String], max: usize) -> String {
    if items.len() <= max {
        items.join(",")
    } else {
        format!("{} + {} more...", items[..max].join(","), items.len() - max)
    }
}

/// `containers`, `images`, `selector` of a workload's pod template.
fn workload_wide(o: &Value) -> Vec<Value> {
    let containers =
        o["spec"]["template"]["spec"]["containers"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = containers.iter().filter_map(|c| c["name"].as_str()).collect();
    let images: Vec<&str> = containers.iter().filter_map(|c| c["image"].as_str()).collect();
    let selector = o["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    vec![json!(names.join(",")), json!(images.join(",")), json!(selector)]
}

fn pod_cells(o: &Value) -> Vec<Value> {
    let statuses = o["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
    let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
    let ready = statuses.iter().filter(|c| c["ready"] == true).count();
    let restarts: i64 = statuses.iter().filter_map(|c| c["restartCount"].as_i64()).sum();
    let mut reason = o["status"]["reason"]
        .as_str()
        .or(o["status"]["phase"].as_str())
        .unwrap_or("Pending")
        .to_owned();
    for c in &statuses {
        if let Some(waiting) = c["state"]["waiting"]["reason"].as_str() {
            reason = waiting.to_owned();
        } else if let Some(terminated) = c["state"]["terminated"]["reason"].as_str() {
            reason = terminated.to_owned();
        }
    }
    if metadata(o).contains_key("deletionTimestamp") {
        reason = "Terminating".into();
    }
    let none = || json!("<none>");
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map_or_else(none, |s| json!(s));
    let gates = o["spec"]["readinessGates"].as_array().map_or(0, Vec::len);
    vec![
        name(o),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts),
        age(o),
        text(&o["status"]["podIP"]),
        text(&o["spec"]["nodeName"]),
        text(&o["status"]["nominatedNodeName"]),
        if gates == 0 { none() } else { json!(format!("0/{gates}")) },
    ]
}

fn service_cells(o: &Value) -> Vec<Value> {
    let spec = &o["spec"];
    let kind = spec["type"].as_str().unwrap_or("ClusterIP");
    let cluster_ip = spec["clusterIP"].as_str().filter(|s| !s.is_empty()).unwrap_or("<none>");
    let mut external: Vec<String> = spec["externalIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    for ingress in o["status"]["loadBalancer"]["ingress"].as_array().into_iter().flatten() {
        if let Some(ip) = ingress["ip"].as_str().or(ingress["hostname"].as_str()) {
            external.push(ip.to_owned());
        }
    }
    let external = match (kind, external.is_empty()) {
        ("ExternalName", _) => spec["externalName"].as_str().unwrap_or("<none>").to_owned(),
        ("LoadBalancer", true) => "<pending>".into(),
        (_, true) => "<none>".into(),
        (_, false) => external.join(","),
    };
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let protocol = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(node) => format!("{}:{node}/{protocol}", p["port"]),
                None => format!("{}/{protocol}", p["port"]),
            }
        })
        .collect();
    let selector = spec["selector"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "<none>".into());
    vec![
        name(o),
        json!(kind),
        json!(cluster_ip),
        json!(external),
        json!(if ports.is_empty() { "<none>".to_owned() } else { ports.join(",") }),
        age(o),
        json!(selector),
    ]
}

fn node_cells(o: &Value) -> Vec<Value> {
    let conditions = o["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let ready = conditions.iter().find(|c| c["type"] == "Ready");
    let mut status = match ready.and_then(|c| c["status"].as_str()) {
        Some("True") => "Ready".to_owned(),
        _ => "NotReady".to_owned(),
    };
    if o["spec"]["unschedulable"] == true {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = metadata(o)
        .get("labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/").map(str::to_owned))
        .collect();
    roles.sort();
    let address = |kind: &str| {
        o["status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["type"] == kind)
            .and_then(|a| a["address"].as_str())
            .unwrap_or("<none>")
            .to_owned()
    };
    let info = &o["status"]["nodeInfo"];
    vec![
        name(o),
        json!(status),
        json!(if roles.is_empty() { "<none>".to_owned() } else { roles.join(",") }),
        age(o),
        json!(info["kubeletVersion"].as_str().unwrap_or("")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info["osImage"].as_str().unwrap_or("<unknown>")),
        json!(info["kernelVersion"].as_str().unwrap_or("<unknown>")),
        json!(info["containerRuntimeVersion"].as_str().unwrap_or("<unknown>")),
    ]
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn durations_read_like_kubectl() {
        for (seconds, shown) in [
            (5, "5s"),
            (119, "119s"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (20 * 3600, "20h"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (40 * 86400, "40d"),
            (3 * 365 * 86400 + 10 * 86400, "3y10d"),
        ] {
            assert_eq!(human_duration(seconds), shown, "{seconds}s");
        }
    }
}

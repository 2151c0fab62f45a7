//! Printers of services and the networking and discovery groups: services, endpoints,
//! endpoint slices, ingresses, ingress classes, network policies, IP addresses and service
//! CIDRs. Upstream's `printService`, `printEndpoints`, `printEndpointSlice`,
//! `printIngress`, `printIngressClass`, `printNetworkPolicy`, `printIPAddress`,
//! `printServiceCIDR`.
//!
//! The server prints wide, so load-balancer addresses are never shortened.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::cells::{self, Now, items, labels, list_with_more, strings, text};
use super::{Column, Printer};

pub(crate) const SERVICE: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::string("Type"),
        Column::string("Cluster-IP"),
        Column::string("External-IP"),
        Column::string("Port(s)"),
        Column::AGE,
        Column::wide("Selector"),
    ],
    cells: service_cells,
};

pub(crate) const ENDPOINTS: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::string("Endpoints"), Column::AGE],
    cells: |o, now| vec![cells::name(o), json!(endpoints(o)), now.age(o)],
};

pub(crate) const ENDPOINT_SLICE: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::string("AddressType"),
        Column::string("Ports"),
        Column::string("Endpoints"),
        Column::AGE,
    ],
    cells: |o, now| {
        let ports: Vec<String> = items(&o["ports"])
            .map(|p| match (&p["port"], &p["name"]) {
                (Value::Number(n), _) => n.to_string(),
                (_, Value::String(name)) => name.clone(),
                _ => "*".into(),
            })
            .collect();
        let addresses: Vec<String> = items(&o["endpoints"])
            .flat_map(|e| strings(&e["addresses"]).map(str::to_owned))
            .collect();
        vec![
            cells::name(o),
            json!(text(&o["addressType"])),
            json!(list_with_more(&ports, 3)),
            json!(list_with_more(&addresses, 3)),
            now.age(o),
        ]
    },
};

pub(crate) const INGRESS: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::string("Class"),
        Column::string("Hosts"),
        Column::string("Address"),
        Column::string("Ports"),
        Column::AGE,
    ],
    cells: |o, now| {
        let spec = &o["spec"];
        let hosts = hosts(&spec["rules"]);
        let ports = if cells::len(&spec["tls"]) == 0 { "80" } else { "80, 443" };
        vec![
            cells::name(o),
            json!(cells::text_or(&spec["ingressClassName"], "<none>")),
            json!(hosts),
            json!(load_balancer(&o["status"]["loadBalancer"]).join(",")),
            json!(ports),
            now.age(o),
        ]
    },
};

pub(crate) const INGRESS_CLASS: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::string("Controller"),
        Column::string("Parameters"),
        Column::AGE,
    ],
    cells: |o, now| {
        let spec = &o["spec"];
        let p = &spec["parameters"];
        let parameters = if p.is_object() {
            let kind = match p["apiGroup"].as_str() {
                Some(group) => format!("{}.{group}", text(&p["kind"])),
                None => text(&p["kind"]).to_owned(),
            };
            format!("{kind}/{}", text(&p["name"]))
        } else {
            "<none>".into()
        };
        vec![cells::name(o), json!(text(&spec["controller"])), json!(parameters), now.age(o)]
    },
};

pub(crate) const NETWORK_POLICY: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::string("Pod-Selector"), Column::AGE],
    cells: |o, now| {
        vec![cells::name(o), json!(cells::format_selector(&o["spec"]["podSelector"])), now.age(o)]
    },
};

/// Upstream declares no AGE column for IP addresses (and prints an age cell kubectl
/// drops); only the declared columns are printed here.
pub(crate) const IP_ADDRESS: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::string("ParentRef")],
    cells: |o, _| {
        let r = &o["spec"]["parentRef"];
        let parent = if r.is_object() {
            let resource = match text(&r["group"]) {
                "" => text(&r["resource"]).to_owned(),
                group => format!("{}.{group}", text(&r["resource"])),
            };
            let mut parent = resource.to_lowercase();
            if let Some(namespace) = r["namespace"].as_str().filter(|n| !n.is_empty()) {
                parent = format!("{parent}/{namespace}");
            }
            format!("{parent}/{}", text(&r["name"]))
        } else {
            "<none>".into()
        };
        vec![cells::name(o), json!(parent)]
    },
};

pub(crate) const SERVICE_CIDR: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::string("CIDRs"), Column::AGE],
    cells: |o, now| {
        let cidrs: Vec<&str> = strings(&o["spec"]["cidrs"]).collect();
        vec![cells::name(o), json!(cidrs.join(",")), now.age(o)]
    },
};

fn service_cells(o: &Value, now: Now) -> Vec<Value> {
    let spec = &o["spec"];
    let kind = cells::text_or(&spec["type"], "ClusterIP");
    let kind = kind.as_str();
    let cluster_ip = strings(&spec["clusterIPs"])
        .next()
        .or(spec["clusterIP"].as_str().filter(|ip| !ip.is_empty()))
        .unwrap_or("<none>");
    let external_ips: Vec<&str> = strings(&spec["externalIPs"]).collect();
    let external = match kind {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_owned(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let mut all = load_balancer(&o["status"]["loadBalancer"]);
            all.extend(external_ips);
            if all.is_empty() { "<pending>".to_owned() } else { all.join(",") }
        }
        "ExternalName" => text(&spec["externalName"]).to_owned(),
        _ => "<unknown>".to_owned(),
    };
    let ports: Vec<String> = items(&spec["ports"])
        .map(|p| {
            let (port, protocol) = (cells::int(&p["port"]), cells::text_or(&p["protocol"], "TCP"));
            match cells::int(&p["nodePort"]) {
                0 => format!("{port}/{protocol}"),
                node => format!("{port}:{node}/{protocol}"),
            }
        })
        .collect();
    vec![
        cells::name(o),
        json!(kind),
        json!(cluster_ip),
        json!(external),
        json!(if ports.is_empty() { "<none>".to_owned() } else { ports.join(",") }),
        now.age(o),
        json!(labels(&spec["selector"])),
    ]
}

/// Upstream's `formatHosts`: up to three rule hosts, then `+ N more...` counting every
/// rule after the first three; `*` when no rule names a host.
fn hosts(rules: &Value) -> String {
    const MAX: usize = 3;
    let (mut list, mut more) = (Vec::new(), false);
    for rule in items(rules) {
        more |= list.len() == MAX;
        let host = text(&rule["host"]);
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    match (list.is_empty(), more) {
        (true, _) => "*".into(),
        (false, true) => format!("{} + {} more...", list.join(","), cells::len(rules) - MAX),
        (false, false) => list.join(","),
    }
}

/// The IPs (or else host names) of a load balancer's ingress points, sorted and without
/// duplicates.
fn load_balancer(status: &Value) -> Vec<&str> {
    let points: BTreeSet<&str> = items(&status["ingress"])
        .filter_map(|i| [&i["ip"], &i["hostname"]].into_iter().map(text).find(|s| !s.is_empty()))
        .collect();
    points.into_iter().collect()
}

/// Upstream's `formatEndpoints`: up to three `ip:port` (or `ip` for a subset without
/// ports), then `+ N more...`; `<none>` without subsets.
fn endpoints(o: &Value) -> String {
    const MAX: usize = 3;
    let subsets: Vec<&Value> = items(&o["subsets"]).collect();
    if subsets.is_empty() {
        return "<none>".into();
    }
    let (mut list, mut count) = (Vec::new(), 0);
    for subset in subsets {
        let addresses: Vec<&str> = items(&subset["addresses"]).map(|a| text(&a["ip"])).collect();
        let ports: Vec<i64> = items(&subset["ports"]).map(|p| cells::int(&p["port"])).collect();
        if ports.is_empty() {
            count += addresses.len();
            list.extend(addresses.iter().map(|ip| (*ip).to_owned()));
            continue;
        }
        for port in ports {
            count += addresses.len();
            list.extend(addresses.iter().map(|ip| host_port(ip, port)));
        }
    }
    list.truncate(MAX);
    if count > MAX {
        format!("{} + {} more...", list.join(","), count - MAX)
    } else {
        list.join(",")
    }
}

/// Go's `net.JoinHostPort`: IPv6 addresses in brackets.
fn host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::table::tests::print;

    #[test]
    fn an_ingress_lists_hosts_address_and_ports() {
        let ingress = json!({
            "metadata": { "name": "shop", "creationTimestamp": "2025-01-01T00:00:00Z" },
            "spec": {
                "ingressClassName": "nginx",
                "tls": [{ "hosts": ["shop.example.com"], "secretName": "tls" }],
                "rules": [{ "host": "shop.example.com" }, { "host": "api.example.com" }, {}]
            },
            "status": { "loadBalancer": { "ingress": [{ "ip": "203.0.113.9" }, { "hostname": "lb.example.com" }] } }
        });
        let (columns, cells) =
            print("networking.k8s.io", "ingresses", &ingress, "2025-01-01T00:10:00Z");
        assert_eq!(columns, ["Name", "Class", "Hosts", "Address", "Ports", "Age"]);
        let expected = json!([
            "shop",
            "nginx",
            "shop.example.com,api.example.com",
            "203.0.113.9,lb.example.com",
            "80, 443",
            "10m"
        ]);
        assert_eq!(json!(cells), expected);

        let bare = json!({ "metadata": { "name": "any" }, "spec": { "defaultBackend": {} } });
        let (_, cells) = print("networking.k8s.io", "ingresses", &bare, "2025-01-01T00:10:00Z");
        assert_eq!(json!(cells), json!(["any", "<none>", "*", "", "80", "<unknown>"]));
    }

    #[test]
    fn services_show_their_addresses() {
        let lb = json!({
            "metadata": { "name": "web" },
            "spec": {
                "type": "LoadBalancer", "clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"],
                "externalIPs": ["192.0.2.1"], "selector": { "app": "web" },
                "ports": [{ "port": 80, "nodePort": 30080, "protocol": "TCP" }, { "port": 53, "protocol": "UDP" }]
            }
        });
        let (_, cells) = print("", "services", &lb, "2025-01-01T00:00:00Z");
        let expected = json!([
            "web",
            "LoadBalancer",
            "10.43.0.10",
            "192.0.2.1",
            "80:30080/TCP,53/UDP",
            "<unknown>",
            "app=web"
        ]);
        assert_eq!(json!(cells), expected);
    }

    #[test]
    fn endpoints_and_slices_list_a_few_addresses() {
        let endpoints = json!({
            "metadata": { "name": "web" },
            "subsets": [{
                "addresses": [{ "ip": "10.42.0.1" }, { "ip": "10.42.0.2" }, { "ip": "fd00::3" }],
                "ports": [{ "port": 80 }, { "port": 443 }]
            }]
        });
        let (_, cells) = print("", "endpoints", &endpoints, "2025-01-01T00:00:00Z");
        assert_eq!(cells[1], json!("10.42.0.1:80,10.42.0.2:80,[fd00::3]:80 + 3 more..."));

        let slice = json!({
            "metadata": { "name": "web-abc" },
            "addressType": "IPv4",
            "ports": [{ "name": "http", "port": 80 }, { "name": "metrics" }],
            "endpoints": [{ "addresses": ["10.42.0.1"] }]
        });
        let (_, cells) =
            print("discovery.k8s.io", "endpointslices", &slice, "2025-01-01T00:00:00Z");
        assert_eq!(
            json!(cells),
            json!(["web-abc", "IPv4", "80,metrics", "10.42.0.1", "<unknown>"])
        );
    }
}

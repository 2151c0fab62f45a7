//! The endpoints and endpointslice controllers against a real API server, scheduler and
//! hollow nodes: a Service's pods in its Endpoints and EndpointSlices with named ports,
//! nodes and zones; a pod that is not ready, and one terminating; scale to zero (the
//! placeholder slice); headless Services; labels following the Service; and everything
//! gone with the Service. What kubectl shows of it.

mod common;

use anyhow::Result;
use common::{Cluster, eventually, wait_for};
use keelson_api::k8s_openapi::api::apps::v1::ReplicaSet;
use keelson_api::k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use keelson_api::k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

fn from<T: serde::de::DeserializeOwned>(value: Value) -> Result<T> {
    Ok(serde_json::from_value(value)?)
}

async fn slices_of(cluster: &Cluster, service: &str) -> Result<Vec<EndpointSlice>> {
    let api: Api<EndpointSlice> = Api::namespaced(cluster.client.clone(), "default");
    let params = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    Ok(api.list(&params).await?.items)
}

/// Every endpoint of the Service's slices, as `pod: ready/serving/terminating`.
fn conditions(slices: &[EndpointSlice]) -> Vec<String> {
    let mut all: Vec<String> = slices
        .iter()
        .flat_map(|s| &s.endpoints)
        .map(|e| {
            let c = e.conditions.clone().unwrap_or_default();
            let name = e.target_ref.as_ref().and_then(|t| t.name.clone()).unwrap_or_default();
            let flag = |b: Option<bool>| if b == Some(true) { "1" } else { "0" };
            format!("{name}: {}{}{}", flag(c.ready), flag(c.serving), flag(c.terminating))
        })
        .collect();
    all.sort();
    all
}

fn addresses(endpoints: &Endpoints) -> (usize, usize) {
    let count = |f: fn(&keelson_api::k8s_openapi::api::core::v1::EndpointSubset) -> usize| {
        endpoints.subsets.iter().flatten().map(f).sum::<usize>()
    };
    (
        count(|s| s.addresses.as_ref().map_or(0, Vec::len)),
        count(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len)),
    )
}

#[tokio::test]
async fn a_services_pods_are_its_endpoints_and_slices() -> Result<()> {
    let cluster = Cluster::start(2).await?;
    let client = cluster.client.clone();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    sets.create(
        &PostParams::default(),
        &from(json!({
            "metadata": { "name": "web" },
            "spec": {
                "replicas": 3,
                "selector": { "matchLabels": { "app": "web" } },
                "template": {
                    "metadata": { "labels": { "app": "web" } },
                    "spec": { "containers": [{
                        "name": "c",
                        "image": "registry.k8s.io/pause:3.10",
                        "ports": [{ "name": "http", "containerPort": 8080 }],
                    }]},
                },
            },
        }))?,
    )
    .await?;
    services
        .create(
            &PostParams::default(),
            &from(json!({
                "metadata": { "name": "web", "labels": { "team": "blue" } },
                "spec": {
                    "selector": { "app": "web" },
                    "ports": [{ "name": "http", "port": 80, "targetPort": "http" }],
                },
            }))?,
        )
        .await?;

    let web = wait_for(
        "three ready addresses",
        || async { Ok(endpoints.get_opt("web").await?) },
        |e| e.as_ref().is_some_and(|e| addresses(e) == (3, 0)),
    )
    .await?
    .expect("the Endpoints");
    let labels = web.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("endpoints.kubernetes.io/managed-by").map(String::as_str),
        Some("endpoint-controller")
    );
    assert_eq!(labels.get("team").map(String::as_str), Some("blue"));
    let subset = &web.subsets.as_ref().expect("subsets")[0];
    let port = &subset.ports.as_ref().expect("ports")[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("http"), 8080, Some("TCP"))
    );
    let address = &subset.addresses.as_ref().expect("addresses")[0];
    assert!(address.node_name.as_deref().is_some_and(|n| n.starts_with("hollow-node-")));
    assert_eq!(address.target_ref.as_ref().and_then(|t| t.kind.as_deref()), Some("Pod"));

    let slices = wait_for(
        "one slice of three ready endpoints",
        || slices_of(&cluster, "web"),
        |s| s.len() == 1 && conditions(s).iter().filter(|c| c.ends_with(": 110")).count() == 3,
    )
    .await?;
    let slice = &slices[0];
    assert_eq!(slice.address_type, "IPv4");
    assert!(slice.metadata.name.as_deref().is_some_and(|n| n.starts_with("web-")));
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("endpointslice.kubernetes.io/managed-by").map(String::as_str),
        Some("endpointslice-controller.k8s.io")
    );
    assert_eq!(labels.get("team").map(String::as_str), Some("blue"));
    let owner = &slice.metadata.owner_references.as_ref().expect("an owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Service", "web", Some(true))
    );
    let port = &slice.ports.as_ref().expect("ports")[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), Some(8080)));
    let endpoint = &slice.endpoints[0];
    assert!(endpoint.zone.as_deref().is_some_and(|z| z.starts_with("zone-")), "{endpoint:?}");
    assert!(slice.metadata.generation.is_some_and(|g| g >= 1), "the API server counts writes");

    // kubectl shows the addresses.
    let shown = cluster.kubectl(&["get", "endpoints", "web"]).await?;
    assert!(shown.contains(":8080"), "{shown}");
    let described = cluster.kubectl(&["describe", "service", "web"]).await?;
    assert!(described.contains(":8080"), "{described}");

    // The Service's labels follow onto its slices.
    services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "team": "green" } } })),
        )
        .await?;
    wait_for(
        "the slice relabelled",
        || slices_of(&cluster, "web"),
        |s| {
            s.iter().all(|s| {
                s.metadata.labels.as_ref().and_then(|l| l.get("team")).map(String::as_str)
                    == Some("green")
            })
        },
    )
    .await?;

    // Scaled to zero: no addresses, one empty placeholder slice.
    sets.patch("web", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 0 } })))
        .await?;
    wait_for(
        "no addresses",
        || async { Ok(endpoints.get("web").await?) },
        |e| addresses(e) == (0, 0),
    )
    .await?;
    let slices = wait_for(
        "the placeholder",
        || slices_of(&cluster, "web"),
        |s| s.len() == 1 && s[0].endpoints.is_empty(),
    )
    .await?;
    assert!(slices[0].ports.as_ref().is_none_or(Vec::is_empty));

    // Gone with the Service: the Endpoints by the controller, the slices by the GC.
    services.delete("web", &DeleteParams::default()).await?;
    eventually("the Endpoints and slices gone", || async {
        Ok(endpoints.get_opt("web").await?.is_none()
            && slices_of(&cluster, "web").await?.is_empty())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn not_ready_and_terminating_pods_are_told_apart() -> Result<()> {
    let cluster = Cluster::start(0).await?;
    let client = cluster.client.clone();
    // A node and pods nobody runs: the test writes their status, as a kubelet would.
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &from(json!({ "metadata": { "name": "n1", "labels": { "topology.kubernetes.io/zone": "z1" } } }))?,
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, ready, ip) in [("ready", "True", "10.42.0.2"), ("unready", "False", "10.42.0.3")] {
        pods.create(
            &PostParams::default(),
            &from(json!({
                "metadata": { "name": name, "labels": { "app": "db" }, "finalizers": ["example.com/hold"] },
                "spec": {
                    "nodeName": "n1",
                    "hostname": name,
                    "subdomain": "db",
                    "containers": [{ "name": "c", "image": "registry.k8s.io/pause:3.10" }],
                },
            }))?,
        )
        .await?;
        let status = json!({ "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{ "ip": ip }],
            "conditions": [{ "type": "Ready", "status": ready }],
        }});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await?;
    }
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services
        .create(
            &PostParams::default(),
            &from(json!({
                "metadata": { "name": "db" },
                "spec": { "clusterIP": "None", "selector": { "app": "db" } },
            }))?,
        )
        .await?;
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let db = wait_for(
        "one ready and one not ready address",
        || async { Ok(endpoints.get_opt("db").await?) },
        |e| e.as_ref().is_some_and(|e| addresses(e) == (1, 1)),
    )
    .await?
    .expect("the Endpoints");
    let labels = db.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("service.kubernetes.io/headless").map(String::as_str), Some(""));
    let subset = &db.subsets.as_ref().expect("subsets")[0];
    assert!(subset.ports.is_none(), "a headless Service without ports: {subset:?}");
    let address = &subset.addresses.as_ref().expect("ready")[0];
    assert_eq!(
        address.hostname.as_deref(),
        Some("ready"),
        "the pod's hostname under its subdomain"
    );
    wait_for(
        "ready and not ready endpoints",
        || slices_of(&cluster, "db"),
        |s| conditions(s) == ["ready: 110", "unready: 000"],
    )
    .await?;

    // Terminating: out of the Endpoints, still serving in the slice.
    pods.delete("ready", &DeleteParams::default()).await?;
    wait_for(
        "the terminating pod out of the Endpoints",
        || async { Ok(endpoints.get("db").await?) },
        |e| addresses(e) == (0, 1),
    )
    .await?;
    let slices = wait_for(
        "a terminating endpoint",
        || slices_of(&cluster, "db"),
        |s| conditions(s) == ["ready: 011", "unready: 000"],
    )
    .await?;
    let endpoint =
        slices.iter().flat_map(|s| &s.endpoints).find(|e| e.hostname.as_deref() == Some("ready"));
    assert_eq!(endpoint.and_then(|e| e.zone.as_deref()), Some("z1"));

    // publishNotReadyAddresses: every address ready, even the terminating one.
    services
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "publishNotReadyAddresses": true } })),
        )
        .await?;
    wait_for(
        "every address ready",
        || async { Ok(endpoints.get("db").await?) },
        |e| addresses(e) == (2, 0),
    )
    .await?;
    wait_for(
        "every endpoint ready",
        || slices_of(&cluster, "db"),
        |s| conditions(s) == ["ready: 111", "unready: 100"],
    )
    .await?;
    for name in ["ready", "unready"] {
        pods.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
        )
        .await?;
    }
    Ok(())
}

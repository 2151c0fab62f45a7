//! Services get cluster IPs and node ports from their ranges, never one twice, and give
//! them back when deleted; the `kubernetes` Service points at the API server.

mod common;

use std::collections::HashSet;

use anyhow::{Result, ensure};
use common::TestServer;
use serde_json::Value;

fn service(name: &str, kind: &str, cluster_ip: Option<&str>, node_port: Option<u64>) -> String {
    let ip = cluster_ip.map(|ip| format!("  clusterIP: {ip}\n")).unwrap_or_default();
    let port = node_port.map(|p| format!("    nodePort: {p}\n")).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: {kind}\n{ip}  selector: {{app: {name}}}\n  ports:\n  - port: 80\n{port}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_service_points_at_the_api_server() -> Result<()> {
    let s = TestServer::start().await?;
    let table = s.ok(&["get", "svc", "kubernetes"]).await?;
    let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
    ensure!(header == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], "{table}");
    let row: Vec<&str> = table.lines().nth(1).unwrap_or("").split_whitespace().collect();
    ensure!(row[..5] == ["kubernetes", "ClusterIP", "10.43.0.1", "<none>", "443/TCP"], "{table}");
    let port = s.url.rsplit(':').next().unwrap_or("");
    let endpoints = s
        .ok(&[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={.subsets[0].addresses[0].ip}:{.subsets[0].ports[0].port}",
        ])
        .await?;
    ensure!(endpoints == format!("127.0.0.1:{port}"), "{endpoints}");
    // And the EndpointSlice kube-proxy reads, as upstream's endpoints adapter writes it.
    let slice = s
        .ok(&[
            "get",
            "endpointslice",
            "kubernetes",
            "-o",
            "jsonpath={.addressType} {.endpoints[0].addresses[0]}:{.ports[0].port} {.endpoints[0].conditions.ready} {.metadata.labels.kubernetes\\.io/service-name}",
        ])
        .await?;
    ensure!(slice == format!("IPv4 127.0.0.1:{port} true kubernetes"), "{slice}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ips_and_node_ports_are_allocated_once_and_released() -> Result<()> {
    let s = TestServer::start().await?;
    let created =
        s.kubectl_in(&["apply", "-f", "-"], Some(&service("web", "NodePort", None, None))).await?;
    ensure!(created.ok, "{}", created.stderr);
    let web: Value = serde_json::from_str(&s.ok(&["get", "svc", "web", "-o", "json"]).await?)?;
    let ip = web["spec"]["clusterIP"].as_str().unwrap_or("").to_owned();
    ensure!(
        ip.starts_with("10.43.")
            && ip != "10.43.0.1"
            && web["spec"]["clusterIPs"][0] == ip.as_str(),
        "{web}"
    );
    let node_port = web["spec"]["ports"][0]["nodePort"].as_u64().unwrap_or(0);
    ensure!((30000..=32767).contains(&node_port), "{web}");
    ensure!(
        web["spec"]["ports"][0]["targetPort"] == 80 && web["spec"]["ports"][0]["protocol"] == "TCP",
        "defaults: {web}"
    );
    let address =
        s.ok(&["get", "ipaddresses", &ip, "-o", "jsonpath={.spec.parentRef.name}"]).await?;
    ensure!(address == "web", "the IP's IPAddress object names its service: {address}");

    // The same IP or node port cannot be had twice.
    let taken = s
        .kubectl_in(&["apply", "-f", "-"], Some(&service("other", "ClusterIP", Some(&ip), None)))
        .await?;
    ensure!(
        !taken.ok && taken.stderr.contains("provided IP is already allocated"),
        "{}",
        taken.stderr
    );
    let port_taken = s
        .kubectl_in(&["apply", "-f", "-"], Some(&service("np", "NodePort", None, Some(node_port))))
        .await?;
    ensure!(
        !port_taken.ok && port_taken.stderr.contains("provided port is already allocated"),
        "{}",
        port_taken.stderr
    );
    let outside = s
        .kubectl_in(
            &["apply", "-f", "-"],
            Some(&service("far", "ClusterIP", Some("10.99.0.5"), None)),
        )
        .await?;
    ensure!(
        !outside.ok && outside.stderr.contains("is not in the valid range"),
        "{}",
        outside.stderr
    );

    // Deleting the service gives both back.
    s.ok(&["delete", "svc", "web"]).await?;
    let again = s
        .kubectl_in(
            &["apply", "-f", "-"],
            Some(&service("again", "NodePort", Some(&ip), Some(node_port))),
        )
        .await?;
    ensure!(again.ok, "released IP and port could not be reused: {}", again.stderr);

    // Headless services get no IP; the cluster IP cannot change.
    s.kubectl_in(
        &["apply", "-f", "-"],
        Some(&service("headless", "ClusterIP", Some("None"), None)),
    )
    .await?;
    ensure!(s.ok(&["get", "svc", "headless", "-o", "jsonpath={.spec.clusterIP}"]).await? == "None");
    let changed = s
        .kubectl(&[
            "patch",
            "svc",
            "again",
            "--type=merge",
            "-p",
            r#"{"spec":{"clusterIP":"10.43.9.9"}}"#,
        ])
        .await?;
    ensure!(!changed.ok && changed.stderr.contains("Invalid"), "{}", changed.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_never_share_an_ip() -> Result<()> {
    let s = TestServer::start().await?;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"s{i}"}},"spec":{{"type":"NodePort","ports":[{{"port":80}}]}}}}"#
        );
        let s = &s;
        tasks.push(async move {
            s.curl(
                "POST",
                "/api/v1/namespaces/default/services",
                Some(&body),
                "application/json",
                true,
            )
            .await
        });
    }
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for result in futures_join(tasks).await {
        let (code, body) = result?;
        ensure!(code == 201, "{code} {body}");
        let svc: Value = serde_json::from_str(&body)?;
        ensure!(
            ips.insert(svc["spec"]["clusterIP"].as_str().unwrap_or("").to_owned()),
            "IP given twice: {body}"
        );
        ensure!(
            ports.insert(svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap_or(0)),
            "port given twice: {body}"
        );
    }
    ensure!(ips.len() == 16 && ports.len() == 16);
    Ok(())
}

/// Runs futures concurrently on this task, in order of completion being irrelevant.
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => outputs[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Only `…/status` writes a status: what a create sends is replaced by the type's empty
/// status, printed as Go prints it (a user who may create a Service cannot set its
/// load balancer this way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_sent_on_create_is_replaced_by_the_empty_one() -> Result<()> {
    let s = TestServer::start().await?;
    let created = |manifest: String| {
        let s = &s;
        async move {
            let out = s.kubectl_in(&["create", "-f", "-", "-o", "json"], Some(&manifest)).await?;
            ensure!(out.ok, "{}", out.stderr);
            let object: Value = serde_json::from_str(&out.stdout)?;
            Ok::<Value, anyhow::Error>(object["status"].clone())
        }
    };
    let lb = format!(
        "{}status:\n  loadBalancer:\n    ingress:\n    - ip: 203.0.113.9\n",
        service("lb", "ClusterIP", None, None)
    );
    ensure!(created(lb).await? == serde_json::json!({ "loadBalancer": {} }));
    let stored = s.ok(&["get", "svc", "lb", "-o", "jsonpath={.status}"]).await?;
    ensure!(stored == r#"{"loadBalancer":{}}"#, "{stored}");
    let template = "  selector: {matchLabels: {app: w}}\n  template:\n    metadata: {labels: {app: w}}\n    spec: {containers: [{name: w, image: nginx}]}\n";
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d}}\nspec:\n{template}status: {{replicas: 5, readyReplicas: 5}}\n"
    );
    ensure!(created(deployment).await? == serde_json::json!({}));
    let replica_set = format!(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: r}}\nspec:\n{template}status: {{replicas: 5}}\n"
    );
    ensure!(created(replica_set).await? == serde_json::json!({ "replicas": 0 }));
    // A node registers with the status its kubelet sees.
    let node =
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus: {capacity: {pods: \"110\"}}\n";
    ensure!(created(node.into()).await?["capacity"]["pods"] == "110");
    Ok(())
}

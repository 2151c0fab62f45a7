//! The pod subresources that act: binding (the scheduler's) and eviction (drain's),
//! which honours PodDisruptionBudgets.

mod common;

use anyhow::{Result, ensure};
use common::TestServer;
use serde_json::{Value, json};

async fn post(s: &TestServer, path: &str, body: Value) -> Result<(u16, Value)> {
    let (code, text) =
        s.curl("POST", path, Some(&body.to_string()), "application/json", true).await?;
    Ok((code, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

async fn put_status(s: &TestServer, path: &str, object: &Value) -> Result<()> {
    let (code, text) =
        s.curl("PUT", path, Some(&object.to_string()), "application/json", true).await?;
    ensure!(code == 200, "{code} {text}");
    Ok(())
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_assigns_a_pod_once() -> Result<()> {
    let s = TestServer::start().await?;
    post(&s, "/api/v1/namespaces/default/pods", pod("p")).await?;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "node-1"}});
    let (code, status) =
        post(&s, "/api/v1/namespaces/default/pods/p/binding", binding.clone()).await?;
    ensure!(code == 201 && status["status"] == "Success", "{code} {status}");
    let node = s
        .ok(&[
            "get",
            "pod",
            "p",
            "-o",
            "jsonpath={.spec.nodeName} {.status.conditions[?(@.type==\"PodScheduled\")].status}",
        ])
        .await?;
    ensure!(node == "node-1 True", "{node}");
    let (code, status) = post(&s, "/api/v1/namespaces/default/pods/p/binding", binding).await?;
    ensure!(
        code == 409
            && status["message"]
                == "Operation cannot be fulfilled on pods/binding \"p\": pod p is already assigned to node \"node-1\"",
        "{status}"
    );
    // The legacy bindings resource does the same and stores nothing of its own.
    post(&s, "/api/v1/namespaces/default/pods", pod("q")).await?;
    let (code, _) = post(
        &s,
        "/api/v1/namespaces/default/bindings",
        json!({"metadata": {"name": "q"}, "target": {"name": "node-2"}}),
    )
    .await?;
    ensure!(code == 201);
    ensure!(s.ok(&["get", "pod", "q", "-o", "jsonpath={.spec.nodeName}"]).await? == "node-2");
    let (code, _) = post(
        &s,
        "/api/v1/namespaces/default/pods/missing/binding",
        json!({"metadata": {"name": "missing"}, "target": {"name": "n"}}),
    )
    .await?;
    ensure!(code == 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_honours_the_disruption_budget() -> Result<()> {
    let s = TestServer::start().await?;
    for name in ["a", "b"] {
        post(&s, "/api/v1/namespaces/default/pods", pod(name)).await?;
        // Running and ready, as a kubelet would report it.
        let mut running =
            serde_json::from_str::<Value>(&s.ok(&["get", "pod", name, "-o", "json"]).await?)?;
        running["status"] =
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
        put_status(&s, &format!("/api/v1/namespaces/default/pods/{name}/status"), &running).await?;
    }
    let (code, body) = post(
        &s,
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
        json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}
        }),
    )
    .await?;
    ensure!(code == 201, "{body}");
    // The disruption controller's view: one disruption allowed.
    let mut budget = body;
    budget["status"] = json!({"observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2});
    put_status(&s, "/apis/policy/v1/namespaces/default/poddisruptionbudgets/db/status", &budget)
        .await?;

    let eviction = |name: &str| json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}});
    let (code, status) =
        post(&s, "/api/v1/namespaces/default/pods/a/eviction", eviction("a")).await?;
    ensure!(code == 201 && status["status"] == "Success", "{code} {status}");
    ensure!(s.fails(&["get", "pod", "a"]).await?.contains("NotFound"));

    let (code, status) =
        post(&s, "/api/v1/namespaces/default/pods/b/eviction", eviction("b")).await?;
    ensure!(code == 429 && status["reason"] == "TooManyRequests", "{code} {status}");
    ensure!(
        status["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    );
    ensure!(
        status["details"]["causes"][0]["message"]
            == "The disruption budget db needs 1 healthy pods and has 2 currently",
        "{status}"
    );
    ensure!(s.ok(&["get", "pod", "b", "-o", "name"]).await?.trim() == "pod/b", "the budget kept b");
    let allowed = s
        .ok(&[
            "get",
            "pdb",
            "db",
            "-o",
            "jsonpath={.status.disruptionsAllowed} {.status.disruptedPods.a}",
        ])
        .await?;
    ensure!(allowed.starts_with("0 ") && allowed.len() > 2, "{allowed}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_kinds_are_never_stored() -> Result<()> {
    let s = TestServer::start().await?;
    let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "metadata": {"name": "x"}, "spec": {"user": "u", "groups": ["system:authenticated"], "nonResourceAttributes": {"path": "/version", "verb": "get"}}});
    let (code, body) =
        post(&s, "/apis/authorization.k8s.io/v1/subjectaccessreviews", review).await?;
    ensure!(code == 201 && body["status"]["allowed"] == true, "{code} {body}");
    let (code, body) =
        s.curl("GET", "/apis/authorization.k8s.io/v1/subjectaccessreviews", None, "", true).await?;
    ensure!(code == 405, "{code} {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_without_a_source_is_an_empty_dir() -> Result<()> {
    let s = TestServer::start().await?;
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: scratch}
spec:
  containers:
  - {name: c, image: busybox, volumeMounts: [{name: v, mountPath: /scratch}]}
  volumes:
  - name: v
"#;
    let out = s.kubectl_in(&["create", "-f", "-"], Some(manifest)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let volume = s
        .ok(&["get", "pod", "scratch", "-o", "jsonpath={.spec.volumes[?(@.name==\"v\")]}"])
        .await?;
    let volume: Value = serde_json::from_str(&volume)?;
    ensure!(volume == json!({"name": "v", "emptyDir": {}}), "{volume}");
    Ok(())
}

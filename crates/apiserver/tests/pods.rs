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
    // The disruption controller (in the test's controller manager) allows one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let allowed =
            s.ok(&["get", "pdb", "db", "-o", "jsonpath={.status.disruptionsAllowed}"]).await?;
        if allowed == "1" {
            break;
        }
        ensure!(std::time::Instant::now() < deadline, "the budget never allowed one: {allowed}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

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
    // Two healthy as the eviction recorded it, or one once the controller recounted.
    let cause = status["details"]["causes"][0]["message"].as_str().unwrap_or_default();
    ensure!(
        cause.starts_with("The disruption budget db needs 1 healthy pods and has ")
            && cause.ends_with(" currently"),
        "{status}"
    );
    ensure!(s.ok(&["get", "pod", "b", "-o", "name"]).await?.trim() == "pod/b", "the budget kept b");
    let allowed =
        s.ok(&["get", "pdb", "db", "-o", "jsonpath={.status.disruptionsAllowed}"]).await?;
    ensure!(allowed == "0", "{allowed}");
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

/// `kubectl debug` adds an ephemeral container through `pods/ephemeralcontainers`, which
/// changes nothing else and keeps every added container as it is; upstream's rules for
/// ephemeral containers apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_containers_are_added_through_their_subresource() -> Result<()> {
    let s = TestServer::start().await?;
    post(&s, "/api/v1/namespaces/default/pods", pod("web")).await?;
    let out = s
        .kubectl(&["debug", "web", "--image=busybox:1.36", "--target=c", "--container=debugger"])
        .await?;
    ensure!(out.ok, "{} {}", out.stdout, out.stderr);
    let path = "/api/v1/namespaces/default/pods/web/ephemeralcontainers";
    let (code, text) = s.curl("GET", path, None, "", true).await?;
    let mut live: Value = serde_json::from_str(&text)?;
    let added = live["spec"]["ephemeralContainers"][0].clone();
    ensure!(
        code == 200
            && added["name"] == "debugger"
            && added["targetContainerName"] == "c"
            && added["terminationMessagePolicy"] == "File",
        "{code} {live}"
    );
    ensure!(live["metadata"]["generation"] == 2, "{live}");

    // Only ephemeral containers change here: a label or an image sent along is dropped.
    live["metadata"]["labels"]["extra"] = json!("x");
    live["spec"]["containers"][0]["image"] = json!("busybox:1.37");
    let invalid = |live: &Value, ephemeral: Value| {
        let mut sent = live.clone();
        sent["spec"]["ephemeralContainers"] = ephemeral;
        sent.to_string()
    };
    let more = json!([added, {"name": "second", "image": "busybox:1.36"}]);
    let (code, text) =
        s.curl("PUT", path, Some(&invalid(&live, more)), "application/json", true).await?;
    let updated: Value = serde_json::from_str(&text)?;
    ensure!(
        code == 200
            && updated["spec"]["ephemeralContainers"][1]["name"] == "second"
            && updated["metadata"]["labels"].get("extra").is_none()
            && updated["spec"]["containers"][0]["image"] == "busybox:1.36",
        "{code} {text}"
    );

    let live = updated;
    for (ephemeral, message) in [
        (
            json!([live["spec"]["ephemeralContainers"][1].clone()]),
            "spec.ephemeralContainers: Forbidden: existing ephemeral containers \\\"debugger\\\" may not be removed\\n",
        ),
        (
            json!([live["spec"]["ephemeralContainers"][0].clone(), {"name": "second", "image": "busybox:1.37"}]),
            "spec.ephemeralContainers: Forbidden: existing ephemeral containers \\\"second\\\" may not be changed\\n",
        ),
        (
            json!([
                live["spec"]["ephemeralContainers"][0].clone(),
                live["spec"]["ephemeralContainers"][1].clone(),
                {"name": "probe", "image": "busybox:1.36", "ports": [{"containerPort": 80}], "targetContainerName": "nope",
                 "readinessProbe": {"exec": {"command": ["true"]}}}
            ]),
            "[spec.ephemeralContainers[2].targetContainerName: Not found: \\\"nope\\\", spec.ephemeralContainers[2].ports: Forbidden: cannot be set for an Ephemeral Container, spec.ephemeralContainers[2].readinessProbe: Forbidden: cannot be set for an Ephemeral Container]",
        ),
    ] {
        let (code, text) =
            s.curl("PUT", path, Some(&invalid(&live, ephemeral)), "application/json", true).await?;
        ensure!(code == 422 && text.contains(message), "{code} {text}");
    }
    // Never through the pod itself, and never on create.
    let mut through_pod = live.clone();
    through_pod["spec"]["ephemeralContainers"] = json!([]);
    let (code, text) = s
        .curl(
            "PUT",
            "/api/v1/namespaces/default/pods/web",
            Some(&through_pod.to_string()),
            "application/json",
            true,
        )
        .await?;
    ensure!(code == 422 && text.contains("pod updates may not change fields"), "{code} {text}");
    let mut created = pod("born-debugged");
    created["spec"]["ephemeralContainers"] = json!([{"name": "d", "image": "busybox:1.36"}]);
    let (code, status) = post(&s, "/api/v1/namespaces/default/pods", created).await?;
    ensure!(
        code == 422
            && status["message"].as_str().is_some_and(
                |m| m.ends_with("spec.ephemeralContainers: Forbidden: cannot be set on create")
            ),
        "{code} {status}"
    );
    Ok(())
}

/// `pods/resize` changes containers' CPU and memory only, within the pod's QoS class.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_changes_cpu_and_memory_only() -> Result<()> {
    let s = TestServer::start().await?;
    let mut sized = pod("sized");
    sized["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "100m"}});
    post(&s, "/api/v1/namespaces/default/pods", sized).await?;
    let path = "/api/v1/namespaces/default/pods/sized/resize";
    let patch = |container: Value| json!({"spec": {"containers": [container]}}).to_string();
    let strategic = "application/strategic-merge-patch+json";
    let (code, text) = s
        .curl(
            "PATCH",
            path,
            Some(&patch(json!({"name": "c", "image": "busybox:1.37", "resources": {"requests": {"cpu": "200m"}}}))),
            strategic,
            true,
        )
        .await?;
    let resized: Value = serde_json::from_str(&text)?;
    let container = &resized["spec"]["containers"][0];
    ensure!(
        code == 200
            && container["resources"]["requests"]["cpu"] == "200m"
            && container["image"] == "busybox:1.36"
            && resized["metadata"]["generation"] == 2,
        "{code} {text}"
    );
    let (code, text) = s.curl("GET", path, None, "", true).await?;
    ensure!(code == 200 && text.contains("\"200m\""), "{code} {text}");
    for (resources, message) in [
        (
            json!({"requests": {"cpu": "200m", "ephemeral-storage": "1Gi"}}),
            "spec: Forbidden: only cpu and memory resources are mutable",
        ),
        (
            json!({"requests": {"cpu": "200m"}, "limits": {"memory": "1Gi"}}),
            "spec.containers[0].resources.limits[memory]: Forbidden: memory limits cannot be added unless resizePolicy is RestartContainer",
        ),
        (
            json!({"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}}),
            "Pod QOS Class may not change as a result of resizing",
        ),
    ] {
        let body =
            json!({"spec": {"containers": [{"name": "c", "resources": resources}]}}).to_string();
        let (code, text) =
            s.curl("PATCH", path, Some(&body), "application/merge-patch+json", true).await?;
        ensure!(code == 422 && text.contains(message), "{code} {text}");
    }
    let mut without = resized.clone();
    if let Some(container) = without["spec"]["containers"][0].as_object_mut() {
        container.remove("resources");
    }
    let (code, text) =
        s.curl("PUT", path, Some(&without.to_string()), "application/json", true).await?;
    ensure!(
        code == 422 && text.contains("spec.containers[0].resources.requests: Forbidden: resource requests cannot be removed"),
        "{code} {text}"
    );
    Ok(())
}

/// Until a kubelet serves them, a pod no node runs yet has an empty log (upstream's null
/// stream: 204) and nothing to exec into (400), after the options and the container are
/// checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_exec_of_a_pod_without_a_node() -> Result<()> {
    let s = TestServer::start().await?;
    post(&s, "/api/v1/namespaces/default/pods", pod("pending")).await?;
    let base = "/api/v1/namespaces/default/pods/pending";
    let (code, text) = s.curl("GET", &format!("{base}/log"), None, "", true).await?;
    ensure!(code == 204 && text.is_empty(), "{code} {text}");
    let out = s.kubectl(&["logs", "pending"]).await?;
    ensure!(out.ok && out.stdout.is_empty(), "{} {}", out.stdout, out.stderr);
    for (query, code_wanted, message) in [
        ("container=nope", 400, "container nope is not valid for pod pending"),
        (
            "tailLines=-1",
            422,
            "PodLogOptions \\\"pending\\\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0",
        ),
        ("tailLines=x", 400, "strconv.ParseInt: parsing \\\"x\\\": invalid syntax"),
    ] {
        let (code, text) = s.curl("GET", &format!("{base}/log?{query}"), None, "", true).await?;
        ensure!(code == code_wanted && text.contains(message), "{query}: {code} {text}");
    }
    let (code, text) =
        s.curl("POST", &format!("{base}/exec?command=ls&stdout=true"), None, "", true).await?;
    ensure!(
        code == 400 && text.contains("\"message\":\"pod pending does not have a host assigned\""),
        "{code} {text}"
    );
    let (code, text) = s
        .curl("POST", "/api/v1/namespaces/default/pods/gone/exec?command=ls", None, "", true)
        .await?;
    ensure!(code == 404, "{code} {text}");
    Ok(())
}

//! What a write does and does not do, as upstream's generic store decides it: server-side
//! dry runs (`dryRun` in the query or in a `DeleteOptions` body) change nothing, writes
//! that change nothing store nothing (the resource version stays),
//! `resourceVersion: "0"` on a replace is no precondition, and an unconditional write
//! retries however many races it loses.

mod common;

use anyhow::{Result, ensure};
use common::TestServer;
use serde_json::{Value, json};

async fn send(s: &TestServer, method: &str, path: &str, body: &Value) -> Result<(u16, Value)> {
    let (code, text) =
        s.curl(method, path, Some(&body.to_string()), "application/json", true).await?;
    Ok((code, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

async fn resource_version(s: &TestServer, what: &[&str]) -> Result<String> {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "jsonpath={.metadata.resourceVersion}"]);
    s.ok(&args).await
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}})
}

async fn server_side_dry_runs_change_nothing(s: TestServer) -> Result<()> {
    // kubectl sends a delete's dryRun in the DeleteOptions body.
    s.ok(&["create", "configmap", "one", "--from-literal=a=b"]).await?;
    let out = s.ok(&["delete", "configmap", "one", "--dry-run=server"]).await?;
    ensure!(
        out.starts_with("configmap \"one\" deleted") && out.contains("(server dry run)"),
        "{out}"
    );
    s.ok(&["get", "configmap", "one"]).await?;
    // So may any client, for a collection too; a query without a body still counts.
    let collection = "/api/v1/namespaces/default/configmaps";
    let (code, list) = send(&s, "DELETE", collection, &json!({"dryRun": ["All"]})).await?;
    ensure!(code == 200 && list["items"].as_array().is_some_and(|i| !i.is_empty()), "{list}");
    let (code, _) =
        s.curl("DELETE", &format!("{collection}/one?dryRun=All"), None, "", true).await?;
    ensure!(code == 200);
    s.ok(&["get", "configmap", "one"]).await?;
    // Values other than All are refused, as upstream validates each kind of options.
    let (code, status) =
        send(&s, "DELETE", &format!("{collection}/one"), &json!({"dryRun": ["Some"]})).await?;
    ensure!(
        code == 422
            && status["message"]
                == r#"DeleteOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: []string{"Some"}: supported values: "All""#,
        "{status}"
    );
    let (code, status) =
        send(&s, "POST", &format!("{collection}?dryRun=Some"), &json!({"metadata": {"name": "x"}}))
            .await?;
    ensure!(
        code == 422
            && status["message"]
                == r#"CreateOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: []string{"Some"}: supported values: "All""#,
        "{status}"
    );
    // Reads take no dryRun and ignore one.
    let (code, _) = s.curl("GET", &format!("{collection}/one?dryRun=Some"), None, "", true).await?;
    ensure!(code == 200);

    // An eviction whose DeleteOptions ask for a dry run (what `kubectl drain
    // --dry-run=server` sends) evicts nothing.
    let (code, created) = send(&s, "POST", "/api/v1/namespaces/default/pods", &pod("p")).await?;
    ensure!(code == 201, "{created}");
    let eviction = |options: Value| {
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"},
            "deleteOptions": options})
    };
    let evict = "/api/v1/namespaces/default/pods/p/eviction";
    let (code, status) = send(&s, "POST", evict, &eviction(json!({"dryRun": ["All"]}))).await?;
    ensure!(code == 201, "{status}");
    s.ok(&["get", "pod", "p"]).await?;
    // The query and the body must agree.
    let (code, status) =
        send(&s, "POST", &format!("{evict}?dryRun=All"), &eviction(json!({"dryRun": ["X"]})))
            .await?;
    ensure!(
        code == 500
            && status["message"]
                == "Non-matching dry-run options in request and content: [All] and [X]",
        "{status}"
    );
    // A dry-run binding assigns nothing.
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
        "target": {"kind": "Node", "name": "node-1"}});
    let (code, status) =
        send(&s, "POST", "/api/v1/namespaces/default/pods/p/binding?dryRun=All", &binding).await?;
    ensure!(code == 201, "{status}");
    let node = s.ok(&["get", "pod", "p", "-o", "jsonpath={.spec.nodeName}"]).await?;
    ensure!(node.is_empty(), "a dry-run binding assigned the pod to {node:?}");
    // kubectl drain --dry-run=server: the node stays schedulable, the pod stays.
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}});
    let (code, created) = send(&s, "POST", "/api/v1/nodes", &node).await?;
    ensure!(code == 201, "{created}");
    let mut placed = pod("q");
    placed["spec"]["nodeName"] = json!("node-1");
    let (code, created) = send(&s, "POST", "/api/v1/namespaces/default/pods", &placed).await?;
    ensure!(code == 201, "{created}");
    let out = s.ok(&["drain", "node-1", "--force", "--dry-run=server"]).await?;
    ensure!(out.contains("evicting pod default/q (server dry run)"), "{out}");
    s.ok(&["get", "pod", "q"]).await?;
    let cordoned = s.ok(&["get", "node", "node-1", "-o", "jsonpath={.spec.unschedulable}"]).await?;
    ensure!(cordoned.is_empty(), "a dry-run drain cordoned the node");
    Ok(())
}

async fn writes_that_change_nothing_store_nothing(s: TestServer) -> Result<()> {
    s.ok(&["create", "configmap", "nop", "--from-literal=a=b"]).await?;
    let before = resource_version(&s, &["configmap", "nop"]).await?;
    let out = s.ok(&["patch", "configmap", "nop", "-p", r#"{"data":{"a":"b"}}"#]).await?;
    ensure!(out.trim() == "configmap/nop patched (no change)", "{out}");
    ensure!(resource_version(&s, &["configmap", "nop"]).await? == before);
    // A replace with the object as read, and an update through the status subresource.
    let read = s.ok(&["get", "configmap", "nop", "-o", "json"]).await?;
    s.kubectl_in(&["replace", "-f", "-"], Some(&read)).await?;
    ensure!(resource_version(&s, &["configmap", "nop"]).await? == before);
    let deployment = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
"#;
    // Applying the same configuration again, with its managedFields time and all.
    for _ in 0..2 {
        let out = s.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(deployment)).await?;
        ensure!(out.ok, "{}", out.stderr);
    }
    let applied = resource_version(&s, &["deployment", "web"]).await?;
    let out = s.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(deployment)).await?;
    ensure!(out.ok, "{}", out.stderr);
    ensure!(resource_version(&s, &["deployment", "web"]).await? == applied);
    s.ok(&["scale", "deployment", "web", "--replicas=2"]).await?;
    ensure!(resource_version(&s, &["deployment", "web"]).await? == applied);
    let status = r#"{"status":{"replicas":0}}"#;
    s.ok(&["patch", "deployment", "web", "--subresource=status", "-p", status]).await?;
    let written = resource_version(&s, &["deployment", "web"]).await?;
    let out = s.ok(&["patch", "deployment", "web", "--subresource=status", "-p", status]).await?;
    ensure!(out.trim() == "deployment.apps/web patched (no change)", "{out}");
    ensure!(resource_version(&s, &["deployment", "web"]).await? == written);
    // So do a namespace's finalizers put back as they are.
    let namespace = resource_version(&s, &["namespace", "default"]).await?;
    let finalizers = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"},
        "spec": {"finalizers": ["kubernetes"]}});
    let (code, put) = send(&s, "PUT", "/api/v1/namespaces/default/finalize", &finalizers).await?;
    ensure!(code == 200 && put["metadata"]["resourceVersion"] == namespace.as_str(), "{put}");
    // A real change is written.
    s.ok(&["patch", "configmap", "nop", "-p", r#"{"data":{"a":"c"}}"#]).await?;
    ensure!(resource_version(&s, &["configmap", "nop"]).await? != before);
    Ok(())
}

async fn resource_version_zero_is_no_precondition(s: TestServer) -> Result<()> {
    s.ok(&["create", "configmap", "rv", "--from-literal=a=b"]).await?;
    let replace = |rv: &str, value: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: rv, resourceVersion: \"{rv}\"}}\ndata: {{a: {value}}}\n"
        )
    };
    let out = s.kubectl_in(&["replace", "-f", "-"], Some(&replace("0", "c"))).await?;
    ensure!(out.ok, "{}", out.stderr);
    let value = s.ok(&["get", "configmap", "rv", "-o", "jsonpath={.data.a}"]).await?;
    ensure!(value == "c", "{value}");
    // Any other version that is not the current one is.
    let out = s.kubectl_in(&["replace", "-f", "-"], Some(&replace("1", "d"))).await?;
    ensure!(!out.ok && out.stderr.contains("the object has been modified"), "{}", out.stderr);
    // The scale subresource takes "0" the same way.
    let path = "/api/v1/namespaces/default/replicationcontrollers";
    let rc = json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc"},
        "spec": {"replicas": 1, "selector": {"app": "rc"}, "template": {"metadata": {"labels": {"app": "rc"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    let (code, created) = send(&s, "POST", path, &rc).await?;
    ensure!(code == 201, "{created}");
    let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": "rc", "namespace": "default", "resourceVersion": "0"}, "spec": {"replicas": 3}});
    let (code, scaled) = send(&s, "PUT", &format!("{path}/rc/scale"), &scale).await?;
    ensure!(code == 200 && scaled["spec"]["replicas"] == 3, "{code} {scaled}");
    Ok(())
}

/// Forty clients merge-patch one ConfigMap at once, none naming a resourceVersion:
/// each loses races to the others, and each still succeeds (upstream's
/// `GuaranteedUpdate` retries until the request's deadline, never a Conflict).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconditional_patches_never_fail_on_contention() -> Result<()> {
    let s = TestServer::start().await?;
    s.ok(&["create", "configmap", "busy"]).await?;
    let path = "/api/v1/namespaces/default/configmaps/busy";
    let patches = (0..40).map(|i| {
        let s = &s;
        async move {
            let body = json!({ "data": { format!("k{i}"): "v" } }).to_string();
            s.curl("PATCH", path, Some(&body), "application/merge-patch+json", true).await
        }
    });
    for (i, answer) in futures_util::future::join_all(patches).await.into_iter().enumerate() {
        let (code, body) = answer?;
        ensure!(code == 200, "patch {i}: {code} {body}");
    }
    let data = s.ok(&["get", "configmap", "busy", "-o", "jsonpath={.data}"]).await?;
    let data: Value = serde_json::from_str(&data)?;
    ensure!(data.as_object().map(|m| m.len()) == Some(40), "{data}");
    Ok(())
}

with_each_kubectl!(
    server_side_dry_runs_change_nothing,
    writes_that_change_nothing_store_nothing,
    resource_version_zero_is_no_precondition,
);

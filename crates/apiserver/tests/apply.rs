//! Server-side apply with the real kubectl: `apply --server-side` creating and updating,
//! field ownership in managedFields, conflicts with another manager and
//! `--force-conflicts`, removal of fields no longer applied, two managers sharing one
//! Deployment, `diff --server-side`, and the errors of a bad apply request.

mod common;

use anyhow::{Result, ensure};
use common::TestServer;
use serde_json::Value;

fn deployment(replicas: u32, image: &str, labels: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{{labels}}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: {image}
"#
    )
}

fn managers(object: &Value) -> Vec<(String, String)> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or("").to_owned(),
                e["operation"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

async fn apply_with_managers(s: TestServer) -> Result<()> {
    let applied = s
        .kubectl_in(
            &["apply", "--server-side", "-f", "-"],
            Some(&deployment(2, "nginx:1", "team: a, tier: web")),
        )
        .await?;
    ensure!(
        applied.ok && applied.stdout.trim() == "deployment.apps/web serverside-applied",
        "{} {}",
        applied.stdout,
        applied.stderr
    );
    let live: Value = serde_json::from_str(
        &s.ok(&["get", "deploy", "web", "-o", "json", "--show-managed-fields"]).await?,
    )?;
    ensure!(
        managers(&live) == [("kubectl".to_owned(), "Apply".to_owned())],
        "{:?}",
        managers(&live)
    );
    let fields = &live["metadata"]["managedFields"][0]["fieldsV1"];
    ensure!(
        fields["f:spec"]["f:replicas"].is_object()
            && fields["f:metadata"]["f:labels"]["f:team"].is_object(),
        "{fields}"
    );

    // Another manager changes replicas with an ordinary patch and owns them.
    s.ok(&["patch", "deploy", "web", "--field-manager=ops", "-p", r#"{"spec":{"replicas":5}}"#])
        .await?;
    let live: Value = serde_json::from_str(
        &s.ok(&["get", "deploy", "web", "-o", "json", "--show-managed-fields"]).await?,
    )?;
    ensure!(
        managers(&live)
            == [
                ("kubectl".to_owned(), "Apply".to_owned()),
                ("ops".to_owned(), "Update".to_owned())
            ],
        "{:?}",
        managers(&live)
    );

    // Re-applying replicas: a conflict naming the other manager and the field.
    let conflict = s
        .kubectl_in(
            &["apply", "--server-side", "-f", "-"],
            Some(&deployment(2, "nginx:1", "team: a, tier: web")),
        )
        .await?;
    ensure!(
        !conflict.ok
            && conflict.stderr.contains(
                r#"Apply failed with 1 conflict: conflict with "ops" using apps/v1: .spec.replicas"#
            ),
        "{}",
        conflict.stderr
    );
    // Without replicas, the apply leaves them to ops; dropping a label removes it.
    let without_replicas = deployment(2, "nginx:2", "team: a").replace("  replicas: 2\n", "");
    let out = s.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(&without_replicas)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let state = s.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.metadata.labels} {.spec.template.spec.containers[0].image}"]).await?;
    ensure!(state == r#"5 {"team":"a"} nginx:2"#, "{state}");
    // Forcing takes the field back.
    let forced = s
        .kubectl_in(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            Some(&deployment(3, "nginx:2", "team: a")),
        )
        .await?;
    ensure!(forced.ok, "{}", forced.stderr);
    let replicas = s.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]).await?;
    ensure!(replicas == "3", "{replicas}");

    // A second applier owns its own fields beside the first.
    let labels = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {owner: team-b}\n";
    let out = s
        .kubectl_in(&["apply", "--server-side", "--field-manager=team-b", "-f", "-"], Some(labels))
        .await?;
    ensure!(out.ok, "{}", out.stderr);
    let live: Value = serde_json::from_str(
        &s.ok(&["get", "deploy", "web", "-o", "json", "--show-managed-fields"]).await?,
    )?;
    ensure!(
        live["metadata"]["labels"]["owner"] == "team-b"
            && live["metadata"]["labels"]["team"] == "a",
        "{}",
        live["metadata"]["labels"]
    );
    ensure!(
        managers(&live).iter().any(|(m, op)| m == "team-b" && op == "Apply"),
        "{:?}",
        managers(&live)
    );

    // diff --server-side shows what an apply would change, and changes nothing.
    let diff = s
        .kubectl_in(
            &["diff", "--server-side", "--force-conflicts", "-f", "-"],
            Some(&deployment(4, "nginx:3", "team: a")),
        )
        .await?;
    ensure!(
        diff.stdout.contains("-  replicas: 3") && diff.stdout.contains("+  replicas: 4"),
        "{} {}",
        diff.stdout,
        diff.stderr
    );
    ensure!(s.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]).await? == "3");
    Ok(())
}

with_each_kubectl!(apply_with_managers);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_apply_requests_are_refused() -> Result<()> {
    let s = TestServer::start().await?;
    let path = "/apis/apps/v1/namespaces/default/deployments/web";
    let body = deployment(1, "nginx", "a: b");
    let (code, text) =
        s.curl("PATCH", path, Some(&body), "application/apply-patch+yaml", true).await?;
    ensure!(
        code == 400 && text.contains("fieldManager is required for apply requests"),
        "{code} {text}"
    );
    let other = format!("{path}?fieldManager=me").replace("/web?", "/other?");
    let (code, text) =
        s.curl("PATCH", &other, Some(&body), "application/apply-patch+yaml", true).await?;
    ensure!(code == 400 && text.contains("does not match the name on the URL"), "{code} {text}");
    let (code, text) = s
        .curl(
            "PATCH",
            &format!("{path}?fieldManager=me"),
            Some("metadata: {name: web}"),
            "application/apply-patch+yaml",
            true,
        )
        .await?;
    ensure!(code == 400, "{code} {text}");
    let (code, _) = s
        .curl(
            "PATCH",
            &format!("{path}?fieldManager=me"),
            Some(&body),
            "application/apply-patch+yaml",
            true,
        )
        .await?;
    ensure!(code == 201, "an apply of a missing object creates it");
    // Creates and updates record their managers too.
    let out = s.kubectl(&["create", "configmap", "plain", "--from-literal=a=b"]).await?;
    ensure!(out.ok, "{}", out.stderr);
    let cm: Value = serde_json::from_str(
        &s.ok(&["get", "cm", "plain", "-o", "json", "--show-managed-fields"]).await?,
    )?;
    let entry = &cm["metadata"]["managedFields"][0];
    ensure!(
        entry["manager"] == "kubectl-create"
            && entry["operation"] == "Update"
            && entry["fieldsV1"]["f:data"]["f:a"].is_object(),
        "{cm}"
    );
    Ok(())
}

/// kube-rs applies a configuration without `metadata.name` to a named object: upstream
/// checks the name of the merged object, not of the configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_without_a_name_merges_into_the_named_object() -> Result<()> {
    let s = TestServer::start().await?;
    s.ok(&["create", "configmap", "x", "--from-literal=a=1"]).await?;
    let path = "/api/v1/namespaces/default/configmaps/x?fieldManager=kube&force=true";
    let body = "apiVersion: v1\nkind: ConfigMap\ndata: {b: \"2\"}\n";
    let (code, text) =
        s.curl("PATCH", path, Some(body), "application/apply-patch+yaml", true).await?;
    ensure!(code == 200, "{code} {text}");
    let applied: Value = serde_json::from_str(&text)?;
    ensure!(applied["metadata"]["name"] == "x" && applied["data"]["b"] == "2", "{applied}");
    // Without an object to merge into, the name is still missing.
    let missing = path.replace("/x?", "/y?");
    let (code, text) =
        s.curl("PATCH", &missing, Some(body), "application/apply-patch+yaml", true).await?;
    ensure!(
        code == 400
            && text.contains("the name of the object () does not match the name on the URL (y)"),
        "{code} {text}"
    );
    // Nor may a configuration name another namespace.
    let elsewhere = format!("{body}metadata: {{namespace: kube-system}}\n");
    let (code, text) =
        s.curl("PATCH", path, Some(&elsewhere), "application/apply-patch+yaml", true).await?;
    ensure!(
        code == 400
            && text.contains(
                "the namespace of the object (kube-system) does not match the namespace on the URL (default)"
            ),
        "{code} {text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_apply_upgrades_to_server_side() -> Result<()> {
    let s = TestServer::start().await?;
    let out =
        s.kubectl_in(&["apply", "-f", "-"], Some(&deployment(2, "nginx:1", "team: a"))).await?;
    ensure!(out.ok, "{}", out.stderr);
    // The fields client-side apply set pass to kubectl's server-side apply without a conflict.
    let out = s
        .kubectl_in(
            &["apply", "--server-side", "-f", "-"],
            Some(&deployment(3, "nginx:2", "team: a")),
        )
        .await?;
    ensure!(out.ok, "{}", out.stderr);
    let live: Value = serde_json::from_str(
        &s.ok(&["get", "deploy", "web", "-o", "json", "--show-managed-fields"]).await?,
    )?;
    ensure!(live["spec"]["replicas"] == 3, "{}", live["spec"]);
    ensure!(
        managers(&live).contains(&("kubectl".to_owned(), "Apply".to_owned())),
        "{:?}",
        managers(&live)
    );
    // …and the annotation follows, so client-side apply can come back.
    let last: Value = serde_json::from_str(
        live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .unwrap_or("{}"),
    )?;
    ensure!(last["spec"]["replicas"] == 3, "{last}");
    // A field someone else changed since is still theirs.
    s.ok(&["patch", "deploy", "web", "--field-manager=ops", "-p", r#"{"spec":{"replicas":5}}"#])
        .await?;
    let conflict = s
        .kubectl_in(
            &["apply", "--server-side", "-f", "-"],
            Some(&deployment(4, "nginx:2", "team: a")),
        )
        .await?;
    ensure!(
        !conflict.ok
            && conflict.stderr.contains(r#"conflict with "ops" using apps/v1: .spec.replicas"#),
        "{}",
        conflict.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_takes_over_replicas_through_the_scale_subresource() -> Result<()> {
    let s = TestServer::start().await?;
    let out = s
        .kubectl_in(
            &["apply", "--server-side", "-f", "-"],
            Some(&deployment(2, "nginx:1", "team: a")),
        )
        .await?;
    ensure!(out.ok, "{}", out.stderr);
    s.ok(&["scale", "deploy", "web", "--replicas=4"]).await?;
    let live: Value = serde_json::from_str(
        &s.ok(&["get", "deploy", "web", "-o", "json", "--show-managed-fields"]).await?,
    )?;
    let scale = live["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["subresource"] == "scale")
        .cloned()
        .unwrap_or_default();
    ensure!(
        scale["operation"] == "Update" && scale["fieldsV1"]["f:spec"]["f:replicas"].is_object(),
        "{live}"
    );
    let conflict = s
        .kubectl_in(
            &["apply", "--server-side", "-f", "-"],
            Some(&deployment(2, "nginx:1", "team: a")),
        )
        .await?;
    ensure!(
        !conflict.ok && conflict.stderr.contains(r#"with subresource "scale""#),
        "{}",
        conflict.stderr
    );
    Ok(())
}

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: test-pod
  labels:
    name: test-pod-label
spec:
  containers:
  - name: kubernetes-pause
    image: registry.k8s.io/pause:3.10.1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_a_pod_again_changes_nothing() -> Result<()> {
    let s = TestServer::start().await?;
    let out = s.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(POD)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let first: Value =
        serde_json::from_str(&s.ok(&["get", "pod", "test-pod", "-o", "json"]).await?)?;
    ensure!(first["spec"].get("initContainers").is_none(), "{}", first["spec"]);
    let out = s.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(POD)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let second: Value =
        serde_json::from_str(&s.ok(&["get", "pod", "test-pod", "-o", "json"]).await?)?;
    ensure!(second["metadata"]["generation"] == 1, "{}", second["metadata"]);
    ensure!(second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]);
    let diff = s.kubectl_in(&["diff", "--server-side", "-f", "-"], Some(POD)).await?;
    ensure!(diff.ok && diff.stdout.is_empty(), "{}{}", diff.stdout, diff.stderr);
    Ok(())
}

/// Upstream's `test/cmd` apply upgrade and downgrade on a pod: what admission added (the
/// token volume, tolerations, the service account, the priority) belongs to no manager,
/// so going back to the first configuration does not try to remove it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_additions_belong_to_no_manager() -> Result<()> {
    let s = TestServer::start().await?;
    let out = s.kubectl_in(&["apply", "-f", "-"], Some(POD)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let live: Value = serde_json::from_str(
        &s.ok(&["get", "pod", "test-pod", "-o", "json", "--show-managed-fields"]).await?,
    )?;
    let owned = live["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"].clone();
    for added in ["f:serviceAccountName", "f:volumes", "f:tolerations", "f:priority"] {
        ensure!(owned.get(added).is_none(), "{added} credited to the client: {owned}");
    }
    ensure!(owned["f:dnsPolicy"].is_object(), "defaults are the client's: {owned}");
    let applied = POD.replace("test-pod-label", "test-pod-applied");
    let out = s.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(&applied)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let out = s.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(POD)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let out = s.kubectl_in(&["apply", "-f", "-"], Some(&applied)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let label = s.ok(&["get", "pod", "test-pod", "-o", "jsonpath={.metadata.labels.name}"]).await?;
    ensure!(label == "test-pod-applied", "{label}");
    Ok(())
}

/// Upstream's keyed lists match items on their keys with missing key fields at their
/// schema defaults: a port applied without `protocol` is the server's
/// `{containerPort: 80, protocol: TCP}`, whoever applies it, never a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_items_match_on_defaulted_keys() -> Result<()> {
    let s = TestServer::start().await?;
    let manifest = deployment(1, "nginx", "a: b").replace(
        "        image: nginx\n",
        "        image: nginx\n        ports:\n        - containerPort: 80\n",
    );
    let out = s.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(&manifest)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let out = s
        .kubectl_in(
            &["apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", "-"],
            Some(&manifest),
        )
        .await?;
    ensure!(out.ok, "{}", out.stderr);
    let live: Value = serde_json::from_str(
        &s.ok(&["get", "deployment", "web", "-o", "json", "--show-managed-fields"]).await?,
    )?;
    let ports = &live["spec"]["template"]["spec"]["containers"][0]["ports"];
    ensure!(*ports == serde_json::json!([{"containerPort": 80, "protocol": "TCP"}]), "{ports}");
    for entry in live["metadata"]["managedFields"].as_array().into_iter().flatten() {
        let owned = &entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]
            ["f:ports"];
        ensure!(
            *owned
                == serde_json::json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                    ".": {}, "f:containerPort": {}
                }}),
            "{}: {owned}",
            entry["manager"]
        );
    }
    // Applying it again without the port removes the one item.
    let out = s.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(&manifest)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let without = deployment(1, "nginx", "a: b");
    for manager in ["kubectl", "other"] {
        let flag = format!("--field-manager={manager}");
        let out =
            s.kubectl_in(&["apply", "--server-side", &flag, "-f", "-"], Some(&without)).await?;
        ensure!(out.ok, "{}", out.stderr);
    }
    let ports = s
        .ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].ports}",
        ])
        .await?;
    ensure!(ports.is_empty(), "{ports}");
    Ok(())
}

//! `namespace-controller` against a real API server: a deleted namespace's content is
//! deleted — built-in and custom resources — then the namespace; what holds it is
//! shown in its conditions until it lets go.

mod support;

use anyhow::Result;
use keelson_api::k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::json;
use support::{Cluster, eventually};

async fn create_namespace(cluster: &Cluster, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}}))?,
    )
    .await?;
    // Pods need the namespace's default ServiceAccount.
    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), name);
    eventually("the default ServiceAccount", || async {
        Ok(accounts.get_opt("default").await?.is_some())
    })
    .await
}

async fn create<K>(cluster: &Cluster, namespace: &str, object: serde_json::Value) -> Result<()>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(cluster.client.clone(), namespace);
    api.create(&PostParams::default(), &serde_json::from_value(object)?).await?;
    Ok(())
}

fn widgets() -> ApiResource {
    ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    }
}

/// Defines `widgets.example.com` and waits until one can be made.
pub async fn define_widgets(cluster: &Cluster) -> Result<()> {
    let crd = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"#;
    let path = cluster.dir.path().join("crd.yaml");
    std::fs::write(&path, crd)?;
    cluster.kubectl(&["apply", "-f", path.to_str().unwrap_or_default()]).await?;
    eventually("widgets to be served", || async {
        Ok(cluster.kubectl(&["get", "widgets", "-A"]).await.is_ok())
    })
    .await
}

async fn gone(cluster: &Cluster, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    eventually(&format!("namespace {name} to go"), || async {
        Ok(api.get_opt(name).await?.is_none())
    })
    .await
}

async fn condition(cluster: &Cluster, name: &str, kind: &str, message: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    eventually(&format!("{kind}: {message}"), || async {
        let ns = api.get(name).await?;
        Ok(ns.status.and_then(|s| s.conditions).unwrap_or_default().iter().any(|c| {
            c.type_ == kind
                && c.status == "True"
                && c.message.as_deref().is_some_and(|m| m.contains(message))
        }))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_namespace_goes_with_everything_in_it() -> Result<()> {
    let cluster = Cluster::with_controllers().await?;
    define_widgets(&cluster).await?;
    create_namespace(&cluster, "doomed").await?;
    create::<ConfigMap>(
        &cluster,
        "doomed",
        json!({"metadata": {"name": "settings"}, "data": {"a": "b"}}),
    )
    .await?;
    create::<Secret>(
        &cluster,
        "doomed",
        json!({"metadata": {"name": "password"}, "stringData": {"p": "q"}}),
    )
    .await?;
    // No node: deleted at once, as upstream deletes a pod no kubelet runs.
    create::<Pod>(
        &cluster,
        "doomed",
        json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
    )
    .await?;
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), "doomed", &widgets());
    widgets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}))?,
        )
        .await?;
    cluster.kubectl(&["delete", "namespace", "doomed", "--wait=false"]).await?;
    gone(&cluster, "doomed").await?;
    // Made again, it is empty.
    create_namespace(&cluster, "doomed").await?;
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "doomed");
    assert!(maps.get_opt("settings").await?.is_none());
    assert!(widgets.get_opt("w").await?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_waits_for_its_terminating_pods_and_finalizers() -> Result<()> {
    let cluster = Cluster::with_controllers().await?;
    create_namespace(&cluster, "held").await?;
    create::<ConfigMap>(
        &cluster,
        "held",
        json!({"metadata": {"name": "kept", "finalizers": ["example.com/hold"]}}),
    )
    .await?;
    // Bound to a node whose kubelet never confirms: it stays terminating.
    create::<Pod>(
        &cluster,
        "held",
        json!({"metadata": {"name": "stuck"}, "spec": {"nodeName": "nowhere", "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "c", "image": "nginx"}]}}),
    )
    .await?;
    cluster.kubectl(&["delete", "namespace", "held", "--wait=false"]).await?;
    condition(&cluster, "held", "NamespaceContentRemaining", "pods. has 1 resource instances")
        .await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "held");
    pods.delete("stuck", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() })
        .await?;
    condition(
        &cluster,
        "held",
        "NamespaceFinalizersRemaining",
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances",
    )
    .await?;
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "held");
    maps.patch(
        "kept",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    gone(&cluster, "held").await
}

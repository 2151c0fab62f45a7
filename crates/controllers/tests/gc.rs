//! `garbage-collector-controller` against a real API server and kubectl: background,
//! orphan and foreground deletion, dependents of owners that are gone, and owner
//! references whose uid is not the named object's.

mod support;

use anyhow::{Context as _, Result};
use keelson_api::k8s_openapi::api::core::v1::ConfigMap;
use keelson_api::k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{Cluster, eventually};

struct Maps<'a> {
    cluster: &'a Cluster,
    api: Api<ConfigMap>,
}

impl<'a> Maps<'a> {
    fn new(cluster: &'a Cluster) -> Self {
        Maps { cluster, api: Api::namespaced(cluster.client.clone(), "default") }
    }

    /// Creates ConfigMap `name` owned by `owners` (`(kind, name, uid, blockOwnerDeletion)`)
    /// with `finalizers`; returns its uid.
    async fn create(&self, name: &str, owners: &[Value], finalizers: &[&str]) -> Result<String> {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": name, "ownerReferences": owners, "finalizers": finalizers}
        }))?;
        let made = self.api.create(&PostParams::default(), &cm).await?;
        made.metadata.uid.context("no uid")
    }

    async fn get(&self, name: &str) -> Result<Option<ConfigMap>> {
        Ok(self.api.get_opt(name).await?)
    }

    async fn until_gone(&self, name: &str) -> Result<()> {
        eventually(&format!("configmap {name} to be collected"), || async {
            Ok(self.get(name).await?.is_none())
        })
        .await
    }

    async fn drop_finalizers(&self, name: &str) -> Result<()> {
        let patch = json!({"metadata": {"finalizers": null}});
        self.api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        Ok(())
    }

    async fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.cluster.kubectl(args).await
    }
}

fn owner(kind: &str, name: &str, uid: &str, block: bool) -> Value {
    let api_version = if kind == "ClusterRole" { "rbac.authorization.k8s.io/v1" } else { "v1" };
    json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "blockOwnerDeletion": block})
}

fn owner_uids(cm: &ConfigMap) -> Vec<String> {
    cm.metadata.owner_references.iter().flatten().map(|r| r.uid.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_cascades_in_the_background_in_the_foreground_or_not_at_all() -> Result<()> {
    let cluster = Cluster::with_controllers().await?;
    let maps = Maps::new(&cluster);

    // Background: the owner goes at once, its dependent after.
    let bg = maps.create("bg", &[], &[]).await?;
    maps.create("bg-child", &[owner("ConfigMap", "bg", &bg, false)], &[]).await?;
    maps.kubectl(&["delete", "configmap", "bg", "--cascade=background"]).await?;
    assert!(maps.get("bg").await?.is_none());
    maps.until_gone("bg-child").await?;

    // Orphan: the dependent stays, without its reference; then the owner goes.
    let or = maps.create("or", &[], &[]).await?;
    maps.create("or-child", &[owner("ConfigMap", "or", &or, true)], &[]).await?;
    maps.kubectl(&["delete", "configmap", "or", "--cascade=orphan", "--wait=false"]).await?;
    maps.until_gone("or").await?;
    let child = maps.get("or-child").await?.context("the orphan was deleted")?;
    assert!(owner_uids(&child).is_empty(), "{child:?}");

    // Foreground: the owner waits for the dependent that blocks it.
    let fg = maps.create("fg", &[], &[]).await?;
    maps.create("fg-child", &[owner("ConfigMap", "fg", &fg, true)], &["example.com/hold"]).await?;
    maps.kubectl(&["delete", "configmap", "fg", "--cascade=foreground", "--wait=false"]).await?;
    eventually("the blocking dependent to be deleted", || async {
        Ok(maps.get("fg-child").await?.is_some_and(|c| c.metadata.deletion_timestamp.is_some()))
    })
    .await?;
    let waiting = maps.get("fg").await?.context("the owner went before its dependent")?;
    assert!(waiting.metadata.finalizers.iter().flatten().any(|f| f == "foregroundDeletion"));
    maps.drop_finalizers("fg-child").await?;
    maps.until_gone("fg-child").await?;
    maps.until_gone("fg").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependents_of_owners_that_are_gone_are_collected() -> Result<()> {
    let cluster = Cluster::with_controllers().await?;
    let maps = Maps::new(&cluster);
    // An owner deleted through the API with no policy.
    let owner_uid = maps.create("parent", &[], &[]).await?;
    maps.create("child", &[owner("ConfigMap", "parent", &owner_uid, false)], &[]).await?;
    maps.api.delete("parent", &Default::default()).await?;
    maps.until_gone("child").await?;
    // An owner that never existed.
    maps.create(
        "dangling",
        &[owner("ConfigMap", "never", "00000000-0000-0000-0000-000000000001", false)],
        &[],
    )
    .await?;
    maps.until_gone("dangling").await?;
    // A cluster-scoped owner of a namespaced dependent.
    let roles: Api<ClusterRole> = Api::all(cluster.client.clone());
    let role = roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "gc-owner"}}))?,
        )
        .await?;
    let role_uid = role.metadata.uid.context("no uid")?;
    maps.create("of-role", &[owner("ClusterRole", "gc-owner", &role_uid, false)], &[]).await?;
    maps.kubectl(&["delete", "clusterrole", "gc-owner"]).await?;
    maps.until_gone("of-role").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_to_another_uid_counts_as_an_absent_owner() -> Result<()> {
    let cluster = Cluster::with_controllers().await?;
    let maps = Maps::new(&cluster);
    let live = maps.create("live", &[], &[]).await?;
    let foreign = "00000000-0000-0000-0000-000000000002";
    // Only a foreign-uid reference: collected, though an object of that name exists.
    maps.create("impostor-child", &[owner("ConfigMap", "live", foreign, false)], &[]).await?;
    maps.until_gone("impostor-child").await?;
    // A real owner besides: kept, and the foreign reference removed.
    maps.create(
        "mixed-child",
        &[owner("ConfigMap", "live", &live, false), owner("ConfigMap", "other", foreign, false)],
        &[],
    )
    .await?;
    eventually("the foreign reference to be removed", || async {
        Ok(maps.get("mixed-child").await?.is_some_and(|c| owner_uids(&c) == [live.clone()]))
    })
    .await?;
    assert!(maps.get("live").await?.is_some());
    Ok(())
}

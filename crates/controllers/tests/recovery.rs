//! Controllers outlive failed requests: a controller whose client cannot be had at
//! start, or whose write fails, retries with backoff until the API server answers.

mod support;

use anyhow::Result;
use keelson_api::k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use support::{Cluster, Proxy, eventually, refused_more_than};

async fn create_namespace(cluster: &Cluster, name: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    let ns = Namespace {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        ..Default::default()
    };
    namespaces.create(&PostParams::default(), &ns).await?;
    Ok(())
}

async fn default_account_appears(cluster: &Cluster, namespace: &str) -> Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), namespace);
    eventually(&format!("the default ServiceAccount of {namespace}"), || async {
        Ok(accounts.get_opt("default").await?.is_some())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_start_once_an_unavailable_api_server_answers() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let proxy = Proxy::start(cluster.addr, false).await?;
    let url = proxy.url.clone();
    cluster.start_controllers(&url, &url).await?;
    // The controllers' first requests (their tokens, their informers' lists) fail.
    refused_more_than(&proxy, 2).await?;
    create_namespace(&cluster, "late").await?;
    proxy.set_up(true);
    default_account_appears(&cluster, "late").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_retried_with_backoff() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    // The informers read the API server directly; the controllers' writes go through
    // the proxy, which is down: the ServiceAccount's create fails.
    let proxy = Proxy::start(cluster.addr, false).await?;
    let (direct, writes) = (cluster.url.clone(), proxy.url.clone());
    cluster.start_controllers(&direct, &writes).await?;
    create_namespace(&cluster, "retried").await?;
    let before = proxy.refused();
    refused_more_than(&proxy, before + 2).await?;
    // Nothing changes in the namespace from now on: only a retry makes the account.
    proxy.set_up(true);
    default_account_appears(&cluster, "retried").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informers_recover_after_their_watches_are_cut() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let proxy = Proxy::start(cluster.addr, true).await?;
    let url = proxy.url.clone();
    cluster.start_controllers(&url, &url).await?;
    default_account_appears(&cluster, "default").await?;
    proxy.set_up(false);
    create_namespace(&cluster, "while-down").await?;
    let before = proxy.refused();
    refused_more_than(&proxy, before).await?;
    proxy.set_up(true);
    default_account_appears(&cluster, "while-down").await
}

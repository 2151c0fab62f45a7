//! Watches served by the watch cache never miss or repeat an event: not when they resume
//! from before the cache's ring, not when they fall far behind.

mod common;

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use common::TestServer;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use keelson_api::k8s_openapi;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

async fn api(s: &TestServer) -> Result<Api<ConfigMap>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&s.kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    Ok(Api::namespaced(kube::Client::try_from(config)?, "default"))
}

async fn create_many(api: &Api<ConfigMap>, prefix: &str, count: usize) -> Result<Vec<String>> {
    let mut versions = Vec::new();
    for i in 0..count {
        let cm: ConfigMap =
            serde_json::from_value(json!({ "metadata": { "name": format!("{prefix}-{i}") } }))?;
        let created = api.create(&PostParams::default(), &cm).await?;
        versions.push(created.metadata.resource_version.unwrap_or_default());
    }
    Ok(versions)
}

/// Reads `count` ADDED events and returns their names in order (the namespace's
/// `kube-root-ca.crt`, which the controller manager may publish meanwhile, aside).
async fn added<S>(stream: &mut S, count: usize) -> Result<Vec<String>>
where
    S: futures_util::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin,
{
    let mut names = Vec::new();
    while names.len() < count {
        match tokio::time::timeout(Duration::from_secs(20), stream.next()).await? {
            Some(Ok(WatchEvent::Added(cm))) => {
                let name = cm.metadata.name.unwrap_or_default();
                if name != "kube-root-ca.crt" {
                    names.push(name);
                }
            }
            Some(Ok(WatchEvent::Bookmark(_))) => {}
            Some(Ok(other)) => bail!("unexpected event {other:?}"),
            Some(Err(e)) => bail!("watch failed: {e}"),
            None => bail!("watch ended after {} events", names.len()),
        }
    }
    Ok(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_from_before_the_cache_ring() -> Result<()> {
    let s = TestServer::start().await?;
    let api = api(&s).await?;
    // Start the cache, then push more events through it than its ring keeps.
    let first = create_many(&api, "early", 1).await?;
    let _warm = api.watch(&WatchParams::default(), &first[0]).await?;
    create_many(&api, "many", 1500).await?;
    let mut stream = api.watch(&WatchParams::default(), &first[0]).await?.boxed();
    let names = added(&mut stream, 1500).await?;
    let expected: Vec<String> = (0..1500).map(|i| format!("many-{i}")).collect();
    ensure!(names == expected, "events out of order or missing");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_loses_nothing() -> Result<()> {
    let s = TestServer::start().await?;
    let api = api(&s).await?;
    let start =
        api.list(&ListParams::default()).await?.metadata.resource_version.unwrap_or_default();
    let mut stream = api.watch(&WatchParams::default(), &start).await?.boxed();
    // Nobody reads the watch while thousands of events go by.
    create_many(&api, "slow", 2500).await?;
    let names = added(&mut stream, 2500).await?;
    ensure!(names.iter().enumerate().all(|(i, n)| *n == format!("slow-{i}")), "a gap or a repeat");
    // Lists at "any" revision come from the cache and are complete.
    let any = api.list(&ListParams::default().match_any()).await?;
    // And the namespace's kube-root-ca.crt.
    ensure!(any.items.len() == 2501, "{}", any.items.len());
    Ok(())
}

/// Updates start from the cache's copy of the object: chains of conditional updates,
/// each right after the last, succeed while other writes keep the cache busy, and a
/// stale revision is still a conflict. (With the embedded store the cache rarely lags
/// here, so this guards the results, not the store fallback itself.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_succeed_while_the_cache_lags() -> Result<()> {
    let s = TestServer::start().await?;
    let api = api(&s).await?;
    // Start the ConfigMaps' cache.
    let _warm = api.list(&ListParams::default().match_any()).await?;
    let mut cm = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "counter" } }))?,
        )
        .await?;
    let first = cm.clone();
    // Other writes keep the cache busy meanwhile.
    let busy = {
        let api = api.clone();
        tokio::spawn(async move { create_many(&api, "busy", 300).await })
    };
    // Each update names the revision the last one returned, right after it was written.
    for i in 0..200 {
        cm.data = Some([("n".to_owned(), i.to_string())].into());
        cm = api.replace("counter", &PostParams::default(), &cm).await?;
    }
    busy.await??;
    ensure!(cm.data.as_ref().and_then(|d| d.get("n")).map(String::as_str) == Some("199"));
    // Without a revision, an update is applied to whatever is current.
    let mut unconditional = cm.clone();
    unconditional.metadata.resource_version = None;
    unconditional.data = Some([("n".to_owned(), "last".to_owned())].into());
    api.replace("counter", &PostParams::default(), &unconditional).await?;
    // A revision that is no longer current is a conflict, as ever.
    match api.replace("counter", &PostParams::default(), &first).await {
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        other => bail!("a stale update was not refused: {other:?}"),
    }
    Ok(())
}

/// A streaming list (`sendInitialEvents=true`) starts with an ADDED event per object,
/// each at its own resourceVersion, then a bookmark that marks the end of the initial
/// events, then the changes — for a watch of everything (written from the stored
/// bytes) and for one with a selector (decoded) alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_lists_send_the_initial_objects_then_a_bookmark() -> Result<()> {
    let s = TestServer::start().await?;
    let api = api(&s).await?;
    let versions = create_many(&api, "initial", 3).await?;
    for labels in [None, Some("!absent")] {
        let mut params = WatchParams::streaming_lists();
        if let Some(selector) = labels {
            params = params.labels(selector);
        }
        let mut stream = api.watch(&params, "").await?.boxed();
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), stream.next()).await? {
                Some(Ok(WatchEvent::Added(cm))) => seen.push((
                    cm.metadata.name.unwrap_or_default(),
                    cm.metadata.resource_version.unwrap_or_default(),
                )),
                Some(Ok(WatchEvent::Bookmark(b))) => {
                    ensure!(
                        b.metadata.annotations.get("k8s.io/initial-events-end").map(String::as_str)
                            == Some("true"),
                        "a bookmark without the end of the initial events"
                    );
                    break;
                }
                other => bail!("unexpected {other:?}"),
            }
        }
        for (i, version) in versions.iter().enumerate() {
            let name = format!("initial-{i}");
            ensure!(seen.contains(&(name.clone(), version.clone())), "{name} in {seen:?}");
        }
        let later = format!("later-{}", labels.is_some());
        create_many(&api, &later, 1).await?;
        let names = added(&mut stream, 1).await?;
        ensure!(names == [format!("{later}-0")], "{names:?}");
    }
    Ok(())
}

/// A list without a resourceVersion (a consistent read, served from the cache once it
/// has caught up with the store) shows every write that finished before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_lists_see_every_finished_write() -> Result<()> {
    use kube::api::DeleteParams;
    let s = TestServer::start().await?;
    let api = api(&s).await?;
    let names = |list: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        list.items
            .into_iter()
            .filter_map(|cm| cm.metadata.name)
            .filter(|n| n.starts_with("rw-"))
            .collect()
    };
    for i in 0..30 {
        create_many(&api, &format!("rw-{i}"), 1).await?;
        let seen = names(api.list(&ListParams::default()).await?);
        ensure!(
            seen.len() == i + 1 && seen.contains(&format!("rw-{i}-0")),
            "after create {i}: {seen:?}"
        );
    }
    for i in 0..30 {
        api.delete(&format!("rw-{i}-0"), &DeleteParams::default()).await?;
        let seen = names(api.list(&ListParams::default()).await?);
        ensure!(seen.len() == 29 - i, "after delete {i}: {seen:?}");
    }
    Ok(())
}

//! Watch delivery: many watchers on one namespace, one client creating pods in it, and
//! the delay from each create's response to each watcher's receipt of its ADDED event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, BytesMut};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;
use tokio::task::JoinSet;

use super::{pod_json, pod_name, pods_path};
use crate::client::{Call, Endpoint};

/// How long a watcher waits for its events once the creates are done.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// One line of a watch stream, as far as the benchmark reads it.
#[derive(Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: Object,
}

#[derive(Deserialize)]
struct Object {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    message: String,
}

#[derive(Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "resourceVersion")]
    resource_version: String,
}

/// Starts `watchers` watches on `namespace`, creates `events` pods there one after the
/// other, and returns the wall time from the first create to the last delivery with one
/// latency per delivery.
pub async fn delivery(
    endpoint: &Endpoint,
    namespace: &str,
    watchers: usize,
    events: usize,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let mut creator = endpoint.connect().await?;
    let list = creator
        .call(&Call {
            index: 0,
            method: Method::GET,
            path: pods_path(namespace),
            body: None,
            expect: StatusCode::OK,
        })
        .await?;
    let list: Object = serde_json::from_slice(&list).context("pod list")?;
    let from = list.metadata.resource_version;

    let (sent_tx, sent_rx) = tokio::sync::watch::channel(HashMap::<String, Instant>::new());
    let mut tasks = JoinSet::new();
    let path = format!("{}?watch=1&resourceVersion={from}", pods_path(namespace));
    for _ in 0..watchers {
        // Each watch is established (its response head received) before any create.
        let mut body = endpoint.connect().await?.open_stream(&path).await?;
        let mut sent_rx = sent_rx.clone();
        tasks.spawn(async move {
            let mut received = Vec::with_capacity(events);
            let mut buffer = BytesMut::new();
            while received.len() < events {
                let Some(frame) = body.frame().await else { bail!("watch stream ended") };
                let at = Instant::now();
                let Ok(data) = frame?.into_data() else { continue };
                buffer.extend_from_slice(&data);
                while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                    let line = buffer.split_to(end + 1);
                    let event: WatchEvent =
                        serde_json::from_slice(line.chunk()).context("watch event")?;
                    match event.kind.as_str() {
                        "ADDED" => received.push((event.object.metadata.name, at)),
                        "ERROR" => bail!("watch error: {}", event.object.message),
                        _ => {}
                    }
                }
            }
            drop(body);
            // Wait until the creator has published every response time.
            let _ = sent_rx.wait_for(|sent| sent.len() >= events).await;
            let sent = sent_rx.borrow();
            Ok(received
                .into_iter()
                .filter_map(|(name, at)| sent.get(&name).map(|s| at.saturating_duration_since(*s)))
                .collect::<Vec<_>>())
        });
    }

    let start = Instant::now();
    let mut sent = HashMap::with_capacity(events);
    for i in 0..events {
        let name = pod_name(0, i);
        let call = Call {
            index: i,
            method: Method::POST,
            path: pods_path(namespace),
            body: Some(pod_json(&name, "bench")),
            expect: StatusCode::CREATED,
        };
        creator.call(&call).await?;
        sent.insert(name, Instant::now());
    }
    sent_tx.send_replace(sent);
    let mut latencies = Vec::with_capacity(watchers * events);
    let deadline = tokio::time::Instant::now() + DELIVERY_TIMEOUT;
    while let Some(done) = tokio::time::timeout_at(deadline, tasks.join_next())
        .await
        .context("watchers did not receive every event in time")?
    {
        latencies.extend(done??);
    }
    Ok((start.elapsed(), latencies))
}

//! The store benchmark behind `keelson bench store`: one workload, run the same way
//! against every backend, reporting throughput, latency percentiles and bytes written.
//!
//! Figures are for issue notes and comparisons made in one run; nothing asserts on them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::{Event, ListOptions, Result, Store};

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Writes (creates, updates) and gets per client-count setting.
    pub ops: usize,
    /// Client counts to measure create, update and get at.
    pub clients: Vec<usize>,
    pub value_bytes: usize,
    /// Keys listed by the list measurement.
    pub list_keys: usize,
    /// How often the list is read.
    pub list_repeats: usize,
    pub watchers: usize,
    /// Writes delivered to the watchers.
    pub watch_events: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ops: 4000,
            clients: vec![1, 16],
            value_bytes: 1024,
            list_keys: 10_000,
            list_repeats: 20,
            watchers: 100,
            watch_events: 1000,
        }
    }
}

/// One measured operation.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    pub backend: String,
    pub op: String,
    pub clients: usize,
    pub value_bytes: usize,
    pub ops: usize,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Bytes the backend wrote to storage for 1,000 updates of `value_bytes` values,
/// compaction included.
#[derive(Clone, Debug, Serialize)]
pub struct WriteVolume {
    pub backend: String,
    pub bytes_written_per_1k_updates: u64,
    pub value_bytes: usize,
    /// Where the figure comes from, e.g. `/proc/self/io write_bytes`.
    pub measured_from: String,
}

/// Reads a cumulative count of bytes written to storage, if the backend has one.
pub type BytesWritten = Box<dyn Fn() -> Option<u64> + Send + Sync>;

/// `write_bytes` of `/proc/<pid>/io` (`self` for this process).
pub fn proc_write_bytes(pid: &str) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines().find_map(|l| l.strip_prefix("write_bytes: ")).and_then(|n| n.trim().parse().ok())
}

/// Runs the whole workload against `store`, which must be empty.
pub async fn run(
    name: &str,
    store: Arc<dyn Store>,
    config: &Config,
    written: Option<(BytesWritten, String)>,
) -> Result<(Vec<Measurement>, Option<WriteVolume>)> {
    let value = vec![b'x'; config.value_bytes];
    let mut rows = Vec::new();
    let row = |op: &str, clients: usize, elapsed: Duration, mut latencies: Vec<Duration>| {
        latencies.sort_unstable();
        Measurement {
            backend: name.to_owned(),
            op: op.to_owned(),
            clients,
            value_bytes: config.value_bytes,
            ops: latencies.len(),
            ops_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50_ms: percentile(&latencies, 0.50),
            p99_ms: percentile(&latencies, 0.99),
        }
    };
    for &clients in &config.clients {
        let prefix = format!("/bench/c{clients}");
        let (elapsed, latencies) = parallel(&store, clients, config.ops, {
            let (prefix, value) = (prefix.clone(), value.clone());
            move |store, i| {
                let (key, value) = (format!("{prefix}/{i:08}"), value.clone());
                async move { store.create(&key, value).await.map(|_| ()) }
            }
        })
        .await?;
        rows.push(row("create", clients, elapsed, latencies));

        // Each client updates its own keys, so no update conflicts.
        let (elapsed, latencies) = parallel(&store, clients, config.ops, {
            let (prefix, value) = (prefix.clone(), value.clone());
            move |store, i| {
                let (key, value) = (format!("{prefix}/{i:08}"), value.clone());
                async move {
                    let rev = store.get(&key).await?.map_or(0, |kv| kv.mod_revision);
                    store.update(&key, value, rev).await.map(|_| ())
                }
            }
        })
        .await?;
        rows.push(row("update", clients, elapsed, latencies));

        let (elapsed, latencies) = parallel(&store, clients, config.ops, {
            let prefix = prefix.clone();
            move |store, i| {
                let key = format!("{prefix}/{i:08}");
                async move { store.get(&key).await.map(|_| ()) }
            }
        })
        .await?;
        rows.push(row("get", clients, elapsed, latencies));
    }

    parallel(&store, 16, config.list_keys, {
        let value = value.clone();
        move |store, i| {
            let (key, value) = (format!("/bench/list/{i:08}"), value.clone());
            async move { store.create(&key, value).await.map(|_| ()) }
        }
    })
    .await?;
    let (elapsed, latencies) = parallel(&store, 1, config.list_repeats, |store, _| async move {
        store.list("/bench/list", ListOptions::default()).await.map(|_| ())
    })
    .await?;
    rows.push(row(&format!("list-{}", config.list_keys), 1, elapsed, latencies));

    let (elapsed, latencies) = watch_delivery(&store, config, &value).await?;
    rows.push(row("watch-delivery", config.watchers, elapsed, latencies));

    let volume = match written {
        Some((read, source)) => {
            Some(write_volume(name, &store, config, &value, read, source).await?)
        }
        None => None,
    };
    Ok((rows, volume))
}

/// Runs `ops` calls of `op` spread over `clients` tasks; returns wall time and each
/// call's latency.
async fn parallel<F, Fut>(
    store: &Arc<dyn Store>,
    clients: usize,
    ops: usize,
    op: F,
) -> Result<(Duration, Vec<Duration>)>
where
    F: Fn(Arc<dyn Store>, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for client in 0..clients {
        let (store, op) = (store.clone(), op.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            for i in (client..ops).step_by(clients) {
                let t = Instant::now();
                op(store.clone(), i).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, crate::Error>(latencies)
        });
    }
    let mut all = Vec::with_capacity(ops);
    while let Some(done) = tasks.join_next().await {
        all.extend(done.map_err(|e| crate::Error::Unavailable(format!("bench task: {e}")))??);
    }
    Ok((start.elapsed(), all))
}

/// Latency from a write's acknowledgement to each watcher's receipt of its event.
async fn watch_delivery(
    store: &Arc<dyn Store>,
    config: &Config,
    value: &[u8],
) -> Result<(Duration, Vec<Duration>)> {
    let from = store.current_revision().await?;
    let (sent_tx, sent_rx) = tokio::sync::watch::channel(Vec::<(i64, Instant)>::new());
    let mut watchers = JoinSet::new();
    for _ in 0..config.watchers {
        let mut watch = store.watch("/bench/watch", from).await?;
        let mut sent_rx = sent_rx.clone();
        let events = config.watch_events;
        watchers.spawn(async move {
            let mut received = Vec::with_capacity(events);
            while received.len() < events {
                match watch.next().await {
                    Some(Ok(Event::Put { kv, .. })) => {
                        received.push((kv.mod_revision, Instant::now()))
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                    None => return Err(crate::Error::Closed),
                }
            }
            // Wait until the writer has published every acknowledgement time.
            let _ = sent_rx.wait_for(|sent| sent.len() >= events).await;
            let sent: std::collections::HashMap<i64, Instant> =
                sent_rx.borrow().iter().copied().collect();
            Ok(received
                .into_iter()
                .filter_map(|(rev, at)| sent.get(&rev).map(|s| at.saturating_duration_since(*s)))
                .collect::<Vec<_>>())
        });
    }
    let start = Instant::now();
    let mut sent = Vec::with_capacity(config.watch_events);
    for i in 0..config.watch_events {
        let rev = store.create(&format!("/bench/watch/{i:08}"), value.to_vec()).await?;
        sent.push((rev, Instant::now()));
    }
    sent_tx.send_replace(sent);
    let mut latencies = Vec::new();
    while let Some(done) = watchers.join_next().await {
        latencies.extend(done.map_err(|e| crate::Error::Unavailable(format!("bench task: {e}")))??);
    }
    Ok((start.elapsed(), latencies))
}

/// Bytes written for 1,000 updates followed by a compaction of their history.
async fn write_volume(
    name: &str,
    store: &Arc<dyn Store>,
    config: &Config,
    value: &[u8],
    read: BytesWritten,
    measured_from: String,
) -> Result<WriteVolume> {
    const UPDATES: usize = 1000;
    let keys = 16;
    let mut revs = Vec::with_capacity(keys);
    for k in 0..keys {
        revs.push(store.create(&format!("/bench/volume/{k}"), value.to_vec()).await?);
    }
    // Compact the earlier phases' history and let background work (checkpoints,
    // discards) settle, so only this phase is counted.
    store.compact(store.current_revision().await?).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = read().unwrap_or(0);
    let mut tasks = JoinSet::new();
    for (k, rev) in revs.into_iter().enumerate() {
        let (store, value) = (store.clone(), value.to_vec());
        tasks.spawn(async move {
            let key = format!("/bench/volume/{k}");
            let mut rev = rev;
            for _ in 0..UPDATES / keys {
                rev = store.update(&key, value.clone(), rev).await?;
            }
            Ok::<_, crate::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| crate::Error::Unavailable(format!("bench task: {e}")))??;
    }
    store.compact(store.current_revision().await?).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = read().unwrap_or(before);
    let updates = (UPDATES / keys * keys) as u64;
    Ok(WriteVolume {
        backend: name.to_owned(),
        bytes_written_per_1k_updates: (after - before) * 1000 / updates,
        value_bytes: config.value_bytes,
        measured_from,
    })
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

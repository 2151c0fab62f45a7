//! `keelson bench api`: the API server as its clients see it. Starts `keelson server` as
//! a child process in a temporary data dir, drives it over HTTPS with the admin client
//! certificate, and reports throughput, latency percentiles and the server's memory.
//!
//! Figures are for issue notes and comparisons made in one run; nothing asserts on them.
//! The benchmark runs on the server's machine and competes with it for CPU.

pub(super) mod server;
mod watch;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Serialize;
use tokio::task::JoinSet;

use self::server::ServerProcess;
use super::Output;
use crate::client::{Call, Endpoint};

/// Where create, get, update and delete are measured.
const POD_NAMESPACE: &str = "default";
const LIST_NAMESPACE: &str = "bench-list";
const WATCH_NAMESPACE: &str = "bench-watch";
/// Clients that fill and empty namespaces around the measurements (not measured).
const SETUP_CLIENTS: usize = 16;

#[derive(clap::Args)]
pub struct ApiArgs {
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
    /// Creates, gets, updates and deletes per client count, spread over the clients
    #[arg(long, default_value_t = 5000)]
    ops: usize,
    /// Client counts (one HTTPS connection each) for create, get, update and delete
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Pods in the namespace the list measurement reads
    #[arg(long, default_value_t = 10_000)]
    list_pods: usize,
    /// How often the list is read
    #[arg(long, default_value_t = 20)]
    list_repeats: usize,
    /// Watch streams receiving the watch-delivery events
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Pods created while the watchers watch
    #[arg(long, default_value_t = 1000)]
    watch_events: usize,
    /// The server's --datastore-endpoint, an empty datastore [default: SQLite in the temporary data dir]
    #[arg(long)]
    datastore_endpoint: Option<String>,
}

/// One measured operation.
#[derive(Serialize)]
struct Measurement {
    op: String,
    clients: usize,
    ops: usize,
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// The server's peak resident memory (`VmHWM`) after this measurement.
    server_peak_rss_mb: f64,
}

/// The server's resident memory (`VmRSS`) at the end, with `pods` pods stored.
#[derive(Serialize)]
struct ServerRss {
    op: &'static str,
    pods: usize,
    rss_mb: f64,
}

pub async fn run(args: ApiArgs) -> anyhow::Result<()> {
    ensure!(args.clients.iter().all(|&c| c > 0), "--clients must all be at least 1");
    let datastore = args.datastore_endpoint.clone();
    let (mut server, endpoint) =
        tokio::task::spawn_blocking(move || ServerProcess::start(datastore.as_deref())).await??;
    // Dropping `server` kills it, whatever the outcome; a stop signal is one outcome.
    let outcome = tokio::select! {
        outcome = measure(&args, &server, &endpoint) => outcome,
        signal = stop_signal() => Err(signal.unwrap_or_else(|e| e)),
    };
    outcome.map_err(|e| server.explain(e))
}

/// Resolves on SIGINT or SIGTERM, with the error that stops the benchmark.
async fn stop_signal() -> anyhow::Result<anyhow::Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut interrupt) =
        (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
    tokio::select! {
        _ = term.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(anyhow::anyhow!("interrupted"))
}

async fn measure(
    args: &ApiArgs,
    server: &ServerProcess,
    endpoint: &Endpoint,
) -> anyhow::Result<()> {
    let mut report = Report { output: args.output, rows: Vec::new() };
    for namespace in [LIST_NAMESPACE, WATCH_NAMESPACE] {
        let body = serde_json::json!({"metadata": {"name": namespace}}).to_string();
        endpoint
            .call_once(&call(
                0,
                Method::POST,
                "/api/v1/namespaces".into(),
                Some(body.into()),
                StatusCode::CREATED,
            ))
            .await?;
    }
    // Pods wait for their namespace's `default` ServiceAccount (the ServiceAccount
    // admission plugin needs it), which the controller manager makes.
    for namespace in [POD_NAMESPACE, LIST_NAMESPACE, WATCH_NAMESPACE] {
        let get = call(
            0,
            Method::GET,
            format!("/api/v1/namespaces/{namespace}/serviceaccounts/default"),
            None,
            StatusCode::OK,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(e) = endpoint.call_once(&get).await {
            ensure!(Instant::now() < deadline, "no default ServiceAccount in {namespace}: {e:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    for &clients in &args.clients {
        let path = |client, i| format!("{}/{}", pods_path(POD_NAMESPACE), pod_name(client, i));
        tracing::info!(clients, "measuring create, get, update, delete");
        let creates = spread(clients, args.ops, |client, i| {
            let body = pod_json(&pod_name(client, i), "bench");
            call(i, Method::POST, pods_path(POD_NAMESPACE), Some(body), StatusCode::CREATED)
        });
        let (elapsed, latencies, created) = parallel(endpoint, creates, |body| body).await?;
        report.row("create", clients, elapsed, latencies, server)?;

        let gets = spread(clients, args.ops, |client, i| {
            call(i, Method::GET, path(client, i), None, StatusCode::OK)
        });
        let (elapsed, latencies, _) = parallel(endpoint, gets, drop).await?;
        report.row("get", clients, elapsed, latencies, server)?;

        // Each client updates its own pods, from the object its create returned (so with
        // that resourceVersion): no conflicts.
        let created: HashMap<usize, Bytes> = created.into_iter().collect();
        let mut updates = Vec::with_capacity(clients);
        for calls in spread(clients, args.ops, |client, i| (client, i)) {
            let mut built = Vec::with_capacity(calls.len());
            for (client, i) in calls {
                let body = relabel(created.get(&i).context("created pod")?)?;
                built.push(call(i, Method::PUT, path(client, i), Some(body), StatusCode::OK));
            }
            updates.push(built);
        }
        drop(created);
        let (elapsed, latencies, _) = parallel(endpoint, updates, drop).await?;
        report.row("update", clients, elapsed, latencies, server)?;

        // Deleting also leaves the next client count an empty namespace.
        let deletes = spread(clients, args.ops, |client, i| {
            call(i, Method::DELETE, path(client, i), None, StatusCode::OK)
        });
        let (elapsed, latencies, _) = parallel(endpoint, deletes, drop).await?;
        report.row("delete", clients, elapsed, latencies, server)?;
    }

    tracing::info!(pods = args.list_pods, "filling {LIST_NAMESPACE}");
    let fill = spread(SETUP_CLIENTS, args.list_pods, |client, i| {
        let body = pod_json(&pod_name(client, i), "bench");
        call(i, Method::POST, pods_path(LIST_NAMESPACE), Some(body), StatusCode::CREATED)
    });
    parallel(endpoint, fill, drop).await?;
    let list = call(0, Method::GET, pods_path(LIST_NAMESPACE), None, StatusCode::OK);
    let listed = count_items(&endpoint.call_once(&list).await?)?;
    ensure!(
        listed == args.list_pods,
        "{LIST_NAMESPACE} lists {listed} pods, not {}",
        args.list_pods
    );
    tracing::info!(repeats = args.list_repeats, "measuring list");
    let lists = spread(1, args.list_repeats, |_, i| {
        call(i, Method::GET, pods_path(LIST_NAMESPACE), None, StatusCode::OK)
    });
    let (elapsed, latencies, _) = parallel(endpoint, lists, drop).await?;
    report.row(&format!("list-{}", args.list_pods), 1, elapsed, latencies, server)?;

    tracing::info!(
        watchers = args.watchers,
        events = args.watch_events,
        "measuring watch delivery"
    );
    let (elapsed, latencies) =
        watch::delivery(endpoint, WATCH_NAMESPACE, args.watchers, args.watch_events).await?;
    report.row("watch-delivery", args.watchers, elapsed, latencies, server)?;
    let cleanup = spread(SETUP_CLIENTS, args.watch_events, |_, i| {
        let path = format!("{}/{}", pods_path(WATCH_NAMESPACE), pod_name(0, i));
        call(i, Method::DELETE, path, None, StatusCode::OK)
    });
    parallel(endpoint, cleanup, drop).await?;

    // Memory first, then the count that proves which pods it holds.
    let rss_mb = server.rss_mb()?;
    let all = call(0, Method::GET, "/api/v1/pods".into(), None, StatusCode::OK);
    let pods = count_items(&endpoint.call_once(&all).await?)?;
    report.finish(&ServerRss { op: "server_rss", pods, rss_mb })
}

/// Prints JSON lines as measurements come, or a table at the end.
struct Report {
    output: Output,
    rows: Vec<Measurement>,
}

impl Report {
    fn row(
        &mut self,
        op: &str,
        clients: usize,
        elapsed: Duration,
        mut latencies: Vec<Duration>,
        server: &ServerProcess,
    ) -> anyhow::Result<()> {
        latencies.sort_unstable();
        let row = Measurement {
            op: op.to_owned(),
            clients,
            ops: latencies.len(),
            ops_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50_ms: percentile(&latencies, 0.50),
            p99_ms: percentile(&latencies, 0.99),
            server_peak_rss_mb: server.peak_rss_mb()?,
        };
        if self.output == Output::Json {
            println!("{}", serde_json::to_string(&row)?);
        }
        self.rows.push(row);
        Ok(())
    }

    fn finish(self, rss: &ServerRss) -> anyhow::Result<()> {
        if self.output == Output::Json {
            println!("{}", serde_json::to_string(rss)?);
            return Ok(());
        }
        println!(
            "{:<15} {:>7} {:>7} {:>10} {:>9} {:>9} {:>13}",
            "OP", "CLIENTS", "OPS", "OPS/S", "P50 MS", "P99 MS", "PEAK RSS MB"
        );
        for r in &self.rows {
            println!(
                "{:<15} {:>7} {:>7} {:>10.0} {:>9.3} {:>9.3} {:>13.1}",
                r.op, r.clients, r.ops, r.ops_per_sec, r.p50_ms, r.p99_ms, r.server_peak_rss_mb
            );
        }
        println!();
        println!("server RSS with {} pods stored: {:.1} MB", rss.pods, rss.rss_mb);
        Ok(())
    }
}

/// Runs each client's calls in order on its own connection, all clients at once; returns
/// the wall time, each call's latency and `keep` of each response body by call index.
/// Connections are opened before the clock starts.
async fn parallel<T: Send + 'static>(
    endpoint: &Endpoint,
    calls: Vec<Vec<Call>>,
    keep: fn(Bytes) -> T,
) -> anyhow::Result<(Duration, Vec<Duration>, Vec<(usize, T)>)> {
    let mut connections = Vec::with_capacity(calls.len());
    for _ in 0..calls.len() {
        connections.push(endpoint.connect().await?);
    }
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for (mut connection, calls) in connections.into_iter().zip(calls) {
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(calls.len());
            let mut kept = Vec::with_capacity(calls.len());
            for call in &calls {
                let t = Instant::now();
                let body = connection.call(call).await?;
                latencies.push(t.elapsed());
                kept.push((call.index, keep(body)));
            }
            anyhow::Ok((latencies, kept))
        });
    }
    let (mut latencies, mut kept) = (Vec::new(), Vec::new());
    while let Some(done) = tasks.join_next().await {
        let (l, k) = done.context("bench client task")??;
        latencies.extend(l);
        kept.extend(k);
    }
    Ok((start.elapsed(), latencies, kept))
}

/// `ops` items spread over `clients`: client `c` gets indexes `c`, `c + clients`, …
fn spread<T>(clients: usize, ops: usize, mut make: impl FnMut(usize, usize) -> T) -> Vec<Vec<T>> {
    (0..clients).map(|c| (c..ops).step_by(clients).map(|i| make(c, i)).collect()).collect()
}

fn call(
    index: usize,
    method: Method,
    path: String,
    body: Option<Bytes>,
    expect: StatusCode,
) -> Call {
    Call { index, method, path, body, expect }
}

fn pods_path(namespace: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/pods")
}

fn pod_name(client: usize, i: usize) -> String {
    format!("pod-{client}-{i}")
}

/// A small, valid pod: one container, no unknown fields.
fn pod_json(name: &str, app: &str) -> Bytes {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
    })
    .to_string()
    .into()
}

/// `pod` (as the server returned it) with its `app` label changed.
fn relabel(pod: &[u8]) -> anyhow::Result<Bytes> {
    let mut pod: serde_json::Value = serde_json::from_slice(pod).context("created pod")?;
    pod["metadata"]["labels"]["app"] = "bench-updated".into();
    Ok(serde_json::to_vec(&pod)?.into())
}

fn count_items(list: &[u8]) -> anyhow::Result<usize> {
    #[derive(serde::Deserialize)]
    struct List {
        items: Vec<serde::de::IgnoredAny>,
    }
    Ok(serde_json::from_slice::<List>(list).context("pod list")?.items.len())
}

/// As `keelson_store::bench` computes them: the value at rank ⌈n·q⌉, in milliseconds.
fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

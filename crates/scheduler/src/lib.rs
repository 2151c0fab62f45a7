//! Keelson's kube-scheduler: places pending pods on nodes, as upstream's does — an API
//! client with its own identity (`system:kube-scheduler`), in `keelson server` or alone
//! as `keelson scheduler --kubeconfig …`, one leader of Lease `kube-system/kube-scheduler`
//! at a time, with upstream's secure port (10259: health and `/metrics`).
//!
//! - [`types`]: what a cycle reads of a pod and a node, computed once;
//! - [`cache`]: nodes with their bound and assumed pods, and the cycle's snapshot;
//! - [`queue`]: activeQ, backoffQ, the unschedulable and gated pods, requeueing by
//!   cluster events;
//! - [`framework`]: extension points, plugins, a profile's plugin lists;
//! - [`plugins`]: the default plugins;
//! - [`config`]: the `KubeSchedulerConfiguration`;
//! - [`scheduler`]: the scheduling and binding cycles;
//! - [`cluster`]: informers, the writes, events.
//!
//! Must never reach the datastore or the API server's internals.

pub mod cache;
pub mod cluster;
pub mod config;
pub mod framework;
pub mod metrics;
pub mod plugins;
pub mod queue;
pub mod resources;
pub mod scheduler;
pub mod types;

use std::sync::Arc;
use std::time::Duration;

use keelson_runtime::health::Checks;
use keelson_runtime::informer::Informers;
use keelson_runtime::leader::{LeaderElection, LeaseTimings, Outcome};
use keelson_runtime::metrics::Metrics;
use kube::Client;

/// The scheduler name pods get by default.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// The Lease schedulers elect their leader on.
pub const LEASE: &str = "kube-scheduler";
pub const LEASE_NAMESPACE: &str = "kube-system";
/// kube-scheduler's `--secure-port` default.
pub const SECURE_PORT: u16 = 10259;

/// What the scheduler calls itself to the API server, so its writes are recorded in
/// `managedFields` under upstream's manager name, `kube-scheduler`.
pub const USER_AGENT: &str = concat!("kube-scheduler/v", env!("CARGO_PKG_VERSION"), " (keelson)");

/// How often parked pods are checked against the 5-minute limit (upstream: 30 s).
const FLUSH_UNSCHEDULABLE: Duration = Duration::from_secs(30);

/// How to run the scheduler.
pub struct Config {
    pub client: Client,
    pub scheduler: config::Config,
    /// `--leader-elect` timings, when leader election is on.
    pub leader_timings: LeaseTimings,
    pub metrics: Metrics,
    /// The secure port; `None` serves none.
    pub serving: Option<keelson_runtime::secure::Config>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] keelson_runtime::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("leader election lost")]
    LeaseLost,
}

/// Runs the scheduler until `stop` turns true (or the lease is lost).
pub async fn run(config: Config, stop: tokio::sync::watch::Receiver<bool>) -> Result<(), Error> {
    let health = Checks::default();
    let election = config.scheduler.leader_elect.then(|| {
        let election = LeaderElection::new(
            config.client.clone(),
            &config.scheduler.lease_namespace,
            &config.scheduler.lease_name,
            &LeaderElection::default_identity(),
            config.leader_timings,
        );
        election.report_to(&health);
        election
    });
    if let Some(serving) = config.serving {
        keelson_runtime::secure::serve(
            serving,
            health.clone(),
            config.metrics.clone(),
            stop.clone(),
        )
        .await?;
    }
    let stopped = {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    let work = schedule(config.client, config.scheduler, config.metrics, stop.clone());
    let Some(mut election) = election else {
        tokio::select! {
            result = work => return result,
            _ = stopped => return Ok(()),
        }
    };
    let mut result = Ok(());
    let work = async { result = work.await };
    match election.run(stopped, work).await {
        Outcome::Lost => Err(Error::LeaseLost),
        Outcome::Stopped | Outcome::Finished => result,
    }
}

/// Starts the informers, waits for them, and schedules until stopped.
async fn schedule(
    client: Client,
    settings: config::Config,
    metrics: Metrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Error> {
    let informers = Informers::new(client.clone());
    let reads = Arc::new(cluster::Reads::start(&informers));
    let api = Arc::new(cluster::ApiHandle::new(client, reads.clone()));
    let handle: Arc<dyn framework::Handle> = api.clone();
    let profiles = Arc::new(settings.frameworks(&handle).map_err(Error::Config)?);
    let queue = Arc::new(queue::SchedulingQueue::new(
        queue::QueueConfig {
            initial_backoff: settings.initial_backoff,
            max_backoff: settings.max_backoff,
            ..queue::QueueConfig::default()
        },
        profiles.clone(),
    ));
    let scheduler = Arc::new(scheduler::Scheduler::new(
        cache::Cache::new(),
        queue.clone(),
        profiles,
        settings.parallelism,
        api,
        metrics::SchedulerMetrics::new(&metrics),
    ));
    cluster::connect(&reads, &scheduler);
    tokio::select! {
        _ = reads.wait_synced() => {}
        _ = stop.wait_for(|s| *s) => return Ok(()),
    }
    tracing::info!("scheduler caches synced; scheduling");
    let flusher = {
        let queue = queue.clone();
        AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(FLUSH_UNSCHEDULABLE).await;
                queue.flush_unschedulable();
            }
        }))
    };
    // Dropped with this future when leadership is lost: nothing schedules after.
    let _running = AbortOnDrop(tokio::spawn(scheduler.run()));
    let _ = stop.wait_for(|s| *s).await;
    queue.close();
    drop(flusher);
    drop(informers);
    Ok(())
}

/// A task that ends with its handle.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

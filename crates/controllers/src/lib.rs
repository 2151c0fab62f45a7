//! Keelson's kube-controller-manager: the controllers a cluster needs, each an API
//! client on `keelson-runtime` with its own ServiceAccount, under upstream's names, run
//! by one leader of Lease `kube-system/kube-controller-manager` — in `keelson server`
//! or alone as `keelson controller-manager --kubeconfig …` — with upstream's secure port
//! (`keelson_runtime::secure`: health checks `leaderElection` and one per controller,
//! and the metrics).
//!
//! Built so far: `deployment-controller`, `daemonset-controller`,
//! `statefulset-controller` (its revisions through [`history`], shared with the
//! DaemonSet controller), `replicaset-controller` and
//! `replicationcontroller-controller` (with what workload controllers share: [`pods`],
//! [`expectations`], [`ownership`], [`wire`]), and, ported from inside the API server,
//! `clusterrole-aggregation-controller`, `serviceaccount-controller`,
//! `root-ca-certificate-publisher-controller`,
//! `certificatesigningrequest-approving-controller`,
//! `certificatesigningrequest-signing-controller` and `resourcequota-controller`.
//! New here: `namespace-controller`, `garbage-collector-controller`,
//! `endpoints-controller` and `endpointslice-controller` (with what they share:
//! [`endpointutil`]), the node controllers `node-ipam-controller`,
//! `node-lifecycle-controller` and `taint-eviction-controller` ([`nodeutil`]),
//! `pod-garbage-collector-controller`, and the
//! batch controllers `job-controller`, `cronjob-controller` and
//! `ttl-after-finished-controller`, and `disruption-controller` (PodDisruptionBudget
//! status).
//!
//! Must never reach the datastore or the API server's internals.

pub mod certificates;
pub mod clusterrole_aggregation;
pub mod cronjob;
pub mod daemon;
pub mod deployment;
mod discovery;
pub mod disruption;
pub mod endpoint;
pub mod endpointslice;
pub mod endpointutil;
pub mod expectations;
pub mod garbagecollector;
pub mod history;
pub mod job;
pub mod namespace;
mod namespaces;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod nodeutil;
pub mod ownership;
pub mod pod_handlers;
pub mod podgc;
pub mod pods;
pub mod replicaset;
pub mod resourcequota;
pub mod root_ca_publisher;
pub mod serviceaccounts;
pub mod statefulset;
pub mod tainteviction;
#[cfg(test)]
mod testing;
pub mod ttl_after_finished;
pub mod wire;

use std::sync::Arc;

use keelson_runtime::controller::{Descriptor, Manager};
use keelson_runtime::credentials::Credentials;
use keelson_runtime::health::Checks;
use keelson_runtime::informer::Informers;
use keelson_runtime::leader::{LeaderElection, LeaseTimings, Outcome};
use keelson_runtime::metrics::Metrics;
use kube::Client;

/// Locks `m`, through a poisoned lock too: every state behind one here changes in
/// single steps, so a panic while holding it leaves it consistent.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Lease the controller managers of a cluster elect their leader on.
pub const LEASE: &str = "kube-controller-manager";
pub const LEASE_NAMESPACE: &str = "kube-system";

/// What the controllers call themselves to the API server, so their writes are recorded
/// in `managedFields` under upstream's manager name, `kube-controller-manager`.
pub const USER_AGENT: &str =
    concat!("kube-controller-manager/v", env!("CARGO_PKG_VERSION"), " (keelson)");

/// kube-controller-manager's `--secure-port` default.
pub const SECURE_PORT: u16 = 10257;

/// The node controllers' and the pod garbage collector's settings
/// (kube-controller-manager's node flags and `--terminated-pod-gc-threshold`).
#[derive(Clone, Debug, Default)]
pub struct NodeSettings {
    /// `--allocate-node-cidrs` with `--cluster-cidr` and `--node-cidr-mask-size`; `None`
    /// allocates none (upstream's default).
    pub ipam: Option<nodeipam::Settings>,
    pub lifecycle: nodelifecycle::Settings,
    pub podgc: podgc::Settings,
}

/// The controller table, in upstream's names.
pub fn table(
    root_ca_pem: &str,
    csr_signer: Option<keelson_pki::CsrSigner>,
    nodes: &NodeSettings,
) -> Vec<Descriptor> {
    vec![
        Descriptor {
            name: certificates::approving::NAME,
            service_account: certificates::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(certificates::approving::start),
        },
        Descriptor {
            name: certificates::signing::NAME,
            service_account: certificates::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(certificates::signing::starter(csr_signer)),
        },
        Descriptor {
            name: clusterrole_aggregation::NAME,
            service_account: clusterrole_aggregation::NAME,
            enabled_by_default: true,
            start: Box::new(clusterrole_aggregation::start),
        },
        Descriptor {
            name: daemon::NAME,
            service_account: daemon::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(daemon::start),
        },
        Descriptor {
            name: deployment::NAME,
            service_account: deployment::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(deployment::start),
        },
        Descriptor {
            name: disruption::NAME,
            service_account: disruption::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(disruption::start),
        },
        Descriptor {
            name: endpoint::NAME,
            service_account: endpoint::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(endpoint::start),
        },
        Descriptor {
            name: endpointslice::NAME,
            service_account: endpointslice::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(endpointslice::start),
        },
        Descriptor {
            name: nodeipam::NAME,
            service_account: nodeutil::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(nodeipam::starter(nodes.ipam)),
        },
        Descriptor {
            name: nodelifecycle::NAME,
            service_account: nodeutil::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(nodelifecycle::starter(nodes.lifecycle.clone())),
        },
        Descriptor {
            name: podgc::NAME,
            service_account: podgc::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(podgc::starter(nodes.podgc.clone())),
        },
        Descriptor {
            name: statefulset::NAME,
            service_account: statefulset::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(statefulset::start),
        },
        Descriptor {
            name: tainteviction::NAME,
            service_account: nodeutil::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(tainteviction::start),
        },
        Descriptor {
            name: replicaset::NAME,
            service_account: replicaset::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(replicaset::start),
        },
        Descriptor {
            name: replicaset::RC_NAME,
            service_account: replicaset::RC_SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(replicaset::start_rc),
        },
        Descriptor {
            name: resourcequota::NAME,
            service_account: resourcequota::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(resourcequota::start),
        },
        Descriptor {
            name: root_ca_publisher::NAME,
            service_account: root_ca_publisher::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(root_ca_publisher::starter(root_ca_pem.to_owned())),
        },
        Descriptor {
            name: serviceaccounts::NAME,
            service_account: serviceaccounts::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(serviceaccounts::start),
        },
        Descriptor {
            name: namespace::NAME,
            service_account: namespace::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(namespace::start),
        },
        Descriptor {
            name: garbagecollector::NAME,
            service_account: garbagecollector::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(garbagecollector::start),
        },
        Descriptor {
            name: job::NAME,
            service_account: job::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(job::start),
        },
        Descriptor {
            name: cronjob::NAME,
            service_account: cronjob::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(cronjob::start),
        },
        Descriptor {
            name: ttl_after_finished::NAME,
            service_account: ttl_after_finished::SERVICE_ACCOUNT,
            enabled_by_default: true,
            start: Box::new(ttl_after_finished::start),
        },
    ]
}

/// Upstream's aliases of the controllers built here (their names before 1.27, still
/// accepted by `--controllers`), alias first.
pub const ALIASES: &[(&str, &str)] = &[
    ("clusterrole-aggregation", clusterrole_aggregation::NAME),
    ("cronjob", cronjob::NAME),
    ("csrapproving", certificates::approving::NAME),
    ("csrsigning", certificates::signing::NAME),
    ("daemonset", daemon::NAME),
    ("deployment", deployment::NAME),
    ("endpoint", endpoint::NAME),
    ("endpointslice", endpointslice::NAME),
    ("garbagecollector", garbagecollector::NAME),
    ("job", job::NAME),
    ("namespace", namespace::NAME),
    ("nodeipam", nodeipam::NAME),
    ("nodelifecycle", nodelifecycle::NAME),
    ("podgc", podgc::NAME),
    ("replicaset", replicaset::NAME),
    ("replicationcontroller", replicaset::RC_NAME),
    ("resourcequota", resourcequota::NAME),
    ("root-ca-cert-publisher", root_ca_publisher::NAME),
    ("serviceaccount", serviceaccounts::NAME),
    ("statefulset", statefulset::NAME),
    ("ttl-after-finished", ttl_after_finished::NAME),
];

/// `--controllers` with every alias replaced by its controller's name, the `-` kept
/// (upstream's `ApplyTo` does the same before anything reads the list).
pub fn canonical_controllers(controllers: &[String]) -> Vec<String> {
    controllers
        .iter()
        .map(|c| {
            let (minus, name) = c.strip_prefix('-').map_or(("", c.as_str()), |n| ("-", n));
            let name = ALIASES.iter().find(|(a, _)| *a == name).map_or(name, |(_, n)| n);
            format!("{minus}{name}")
        })
        .collect()
}

/// How to run the controller manager.
pub struct Config {
    /// The component's client (`system:kube-controller-manager`) and its configuration.
    pub client: Client,
    pub client_config: kube::Config,
    /// `--controllers` (`*`, `name`, `-name`).
    pub controllers: Vec<String>,
    pub use_service_account_credentials: bool,
    /// `--leader-elect`, with these timings.
    pub leader_elect: Option<LeaseTimings>,
    /// The CA bundle published to every namespace (`--root-ca-file`).
    pub root_ca_pem: String,
    /// The cluster CA that signs approved `kubernetes.io` requests
    /// (`--cluster-signing-cert-file`/`--cluster-signing-key-file`); `None` signs none.
    pub csr_signer: Option<keelson_pki::CsrSigner>,
    pub nodes: NodeSettings,
    pub metrics: Metrics,
    /// The secure port (`--secure-port`, `--bind-address`, …); `None` serves none.
    pub serving: Option<keelson_runtime::secure::Config>,
}

impl Config {
    /// The controller manager in a process beside the API server, as tests run it:
    /// every controller on by default, each as its ServiceAccount, `csr_signer` signing,
    /// no leader election, no secure port.
    pub fn in_process(
        client: Client,
        client_config: kube::Config,
        root_ca_pem: &str,
        csr_signer: Option<keelson_pki::CsrSigner>,
    ) -> Self {
        Config {
            client,
            client_config,
            controllers: vec!["*".into()],
            use_service_account_credentials: true,
            leader_elect: None,
            root_ca_pem: root_ca_pem.to_owned(),
            csr_signer,
            nodes: NodeSettings::default(),
            metrics: Metrics::default(),
            serving: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] keelson_runtime::Error),
    #[error("leader election lost")]
    LeaseLost,
}

/// Runs the enabled controllers until `stop` says so (or the lease is lost).
pub async fn run(
    mut config: Config,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Error> {
    config.controllers = canonical_controllers(&config.controllers);
    let table = table(&config.root_ca_pem, config.csr_signer.clone(), &config.nodes);
    keelson_runtime::controller::check_names(&table, &config.controllers)?;
    let credentials = if config.use_service_account_credentials {
        let mut client_config = config.client_config.clone();
        client_config
            .headers
            .push((http::header::USER_AGENT, http::HeaderValue::from_static(USER_AGENT)));
        Credentials::service_accounts(config.client.clone(), client_config)?
    } else {
        Credentials::Shared(config.client.clone())
    };
    let health = Checks::default();
    let election = config.leader_elect.map(|timings| {
        let election = LeaderElection::new(
            config.client.clone(),
            LEASE_NAMESPACE,
            LEASE,
            &LeaderElection::default_identity(),
            timings,
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
    let manager = Manager {
        credentials,
        informers: Arc::new(Informers::new(config.client.clone())),
        metrics: config.metrics.clone(),
        controllers: config.controllers.clone(),
        health,
    };
    let Some(mut election) = election else {
        return Ok(manager.run(&table, stop).await?);
    };
    let stopped = {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    let mut result = Ok(());
    let work = async {
        result = manager.run(&table, stop.clone()).await;
    };
    match election.run(stopped, work).await {
        Outcome::Lost => Err(Error::LeaseLost),
        Outcome::Stopped | Outcome::Finished => Ok(result?),
    }
}

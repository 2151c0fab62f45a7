//! Hollow nodes: many simulated kubelets in one process, as kubemark's hollow nodes
//! and kwok's fake nodes, for scale tests and the scheduler benchmark
//! (`keelson hollow-nodes --count N --kubeconfig …`).
//!
//! Each node registers a Node (capacity, kubelet labels, a pod CIDR, Ready), renews
//! its Lease every 10 s, reports its status when it changes and every 5 minutes, and
//! turns the pods bound to it Running and Ready — or deletes them for good once they
//! are being deleted. Nothing runs.
//!
//! Identities are real: every node has its own client certificate for
//! `system:node:<name>` in `system:nodes`, obtained through the CSR API
//! ([`identity`]), and every write a node makes goes with it ([`transport`]), so the
//! Node authorizer and NodeRestriction apply as they do to kubelets. The deviations:
//! pods are read through one watch with the kubeconfig's identity ([`pods`]), and
//! `--delete-nodes-on-exit` deletes the Nodes with it (the kubelet's role may not).
//!
//! Made cheap for thousands of nodes: no task, client or connection per node — one
//! heartbeat scheduler wakes each node in turn ([`Fleet`]), a connection lives only
//! as long as its request, and a node keeps only its name, addresses, TLS
//! configuration and a few versions in memory.
//!
//! Must never reach the datastore or the API server's internals: an API client only,
//! like the kubelet it imitates.

pub mod cidr;
pub mod identity;
pub mod node;
pub mod pods;
pub mod status;
pub mod transport;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use keelson_api::k8s_openapi::api::core::v1::Pod;
use keelson_runtime::controller::Context;
use keelson_runtime::informer::{Informers, Selectors};
use keelson_runtime::queue::{RateLimit, WorkQueue};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cidr::Ipv4Cidr;
use crate::identity::{CertDir, Issuer};
use crate::node::HollowNode;
use crate::status::{Place, Shape};
use crate::transport::Endpoint;

/// What hollow nodes call themselves to the API server.
pub const USER_AGENT: &str = concat!("keelson-hollow/", env!("CARGO_PKG_VERSION"));
/// The kubelet's lease renew interval: a quarter of the lease's 40 s.
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// Nodes registering at once.
const STARTUP_CONCURRENCY: usize = 64;
/// Heartbeats in flight at once.
const HEARTBEAT_CONCURRENCY: usize = 64;
/// Tries to register one node before the start fails.
const REGISTER_ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("cannot get a client certificate for node {node}: {reason}")]
    Certificate { node: String, reason: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The API server's answer to a node's request: a `metav1.Status`.
    #[error("{code} {reason}: {message}")]
    Api { code: u16, reason: String, message: String },
    #[error("{0}")]
    Transport(String),
    #[error(transparent)]
    Request(#[from] kube::core::request::Error),
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Runtime(#[from] keelson_runtime::Error),
}

impl Error {
    /// The HTTP status of an API answer.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Api { code, .. } => Some(*code),
            Error::Kube(kube::Error::Api(status)) => Some(status.code),
            _ => None,
        }
    }

    fn encode(e: serde_json::Error) -> Error {
        Error::Transport(format!("cannot encode a request: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `keelson hollow-nodes`' settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Whom the process is: it asks for the nodes' certificates and watches pods.
    pub kubeconfig: PathBuf,
    pub count: u32,
    /// Node `i` is `<prefix><i>`.
    pub name_prefix: String,
    /// Where issued certificates are kept between runs.
    pub cert_dir: PathBuf,
    pub shape: Shape,
    /// Nodes are spread round-robin over `zone-0` … `zone-<zones-1>`.
    pub zones: u32,
    /// Node `i`'s pod CIDR is the `i`th block of this size in `pod_cidr`.
    pub pod_cidr: Ipv4Cidr,
    pub node_cidr_mask_size: u8,
    /// Node `i`'s InternalIP is host `i + 1` of this range.
    pub node_ip_range: Ipv4Cidr,
    pub delete_nodes_on_exit: bool,
}

/// Defaults, kubemark's and kwok's where they have one.
pub mod defaults {
    pub const NAME_PREFIX: &str = "hollow-node-";
    pub const CPU: &str = "32";
    pub const MEMORY: &str = "256Gi";
    pub const PODS: u32 = 110;
    pub const ZONES: u32 = 3;
    pub const REGION: &str = "region-0";
    /// Keelson's cluster CIDR, as `keelson server`'s `--cluster-cidr`.
    pub const POD_CIDR: &str = "10.42.0.0/16";
    pub const NODE_CIDR_MASK_SIZE: u8 = 24;
    /// Beside the cluster (10.42) and service (10.43) ranges.
    pub const NODE_IP_RANGE: &str = "10.41.0.0/16";
}

impl Config {
    /// `count` nodes with every default, on the host's architecture.
    pub fn new(kubeconfig: PathBuf, cert_dir: PathBuf, count: u32) -> Self {
        let cidr = |s: &str| s.parse::<Ipv4Cidr>().expect("a valid default range");
        Config {
            kubeconfig,
            count,
            name_prefix: defaults::NAME_PREFIX.into(),
            cert_dir,
            shape: Shape {
                cpu: defaults::CPU.into(),
                memory: defaults::MEMORY.into(),
                pods: defaults::PODS,
                region: defaults::REGION.into(),
                arch: status::host_arch().into(),
            },
            zones: defaults::ZONES,
            pod_cidr: cidr(defaults::POD_CIDR),
            node_cidr_mask_size: defaults::NODE_CIDR_MASK_SIZE,
            node_ip_range: cidr(defaults::NODE_IP_RANGE),
            delete_nodes_on_exit: false,
        }
    }

    /// Each node's name, zone and addresses; an error if the ranges are too small.
    pub fn places(&self) -> Result<Vec<Place>> {
        let count = u64::from(self.count);
        let blocks = self.pod_cidr.blocks(self.node_cidr_mask_size);
        if blocks < count {
            return Err(Error::Config(format!(
                "--pod-cidr {} holds {blocks} blocks of /{}, fewer than --count {}",
                self.pod_cidr, self.node_cidr_mask_size, self.count
            )));
        }
        if self.node_ip_range.size().saturating_sub(2) < count {
            return Err(Error::Config(format!(
                "--node-ip-range {} holds fewer than --count {} addresses",
                self.node_ip_range, self.count
            )));
        }
        if self.zones == 0 {
            return Err(Error::Config("--zones must be at least 1".into()));
        }
        (0..count)
            .map(|i| {
                let (Some(pod_cidr), Some(ip)) = (
                    self.pod_cidr.block(self.node_cidr_mask_size, i),
                    self.node_ip_range.host(i + 1),
                ) else {
                    return Err(Error::Config(format!("no addresses for node {i}")));
                };
                Ok(Place {
                    name: format!("{}{i}", self.name_prefix),
                    zone: format!("zone-{}", i % u64::from(self.zones)),
                    pod_cidr,
                    ip,
                })
            })
            .collect()
    }
}

/// The running hollow nodes.
pub struct Fleet {
    nodes: Arc<HashMap<String, Arc<HollowNode>>>,
    stop: tokio::sync::watch::Sender<bool>,
    heartbeats: JoinHandle<()>,
    pod_workers: JoinHandle<()>,
    informers: Arc<Informers>,
    delete_nodes_on_exit: bool,
}

impl Fleet {
    /// Registers every node — asking for certificates it has none for — then starts
    /// the heartbeats and the pod workers. Returns once every node is registered.
    pub async fn start(config: Config) -> Result<Fleet> {
        let places = config.places()?;
        let (client, client_config) =
            keelson_runtime::credentials::from_kubeconfig(&config.kubeconfig).await?;
        let endpoint = Arc::new(Endpoint::new(&client_config).await?);
        let cert_dir = CertDir::open(&config.cert_dir)?;
        let issuer = Issuer::new(client.clone());
        let shape = Arc::new(config.shape.clone());
        let began = Instant::now();
        let total = places.len();
        let done = AtomicUsize::new(0);
        let mut registered = futures_util::stream::iter(places)
            .map(|place| {
                let (endpoint, cert_dir, issuer, shape) = (&endpoint, &cert_dir, &issuer, &shape);
                async move { start_node(place, shape, endpoint, cert_dir, issuer).await }
            })
            .buffer_unordered(STARTUP_CONCURRENCY);
        let mut nodes = HashMap::with_capacity(total);
        let mut last_log = Instant::now();
        while let Some(node) = registered.next().await {
            let node = node?;
            nodes.insert(node.name().to_owned(), Arc::new(node));
            let done = done.fetch_add(1, Ordering::Relaxed) + 1;
            if last_log.elapsed() >= Duration::from_secs(5) {
                last_log = Instant::now();
                tracing::info!(registered = done, total, "registering hollow nodes");
            }
        }
        drop(registered);
        drop(issuer);
        tracing::info!(
            nodes = total,
            seconds = format!("{:.1}", began.elapsed().as_secs_f64()),
            "hollow nodes registered"
        );
        let nodes = Arc::new(nodes);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let heartbeats = tokio::spawn(heartbeats(nodes.clone(), shape));

        let informers = Arc::new(Informers::new(client.clone()));
        let pods = informers
            .get_with::<Pod>(Selectors { labels: None, fields: Some("spec.nodeName!=".into()) });
        let queue = WorkQueue::new(RateLimit::default());
        pods::track(nodes.clone(), &pods, queue.clone());
        let context = Context {
            name: "hollow-node-pods",
            client,
            informers: informers.clone(),
            metrics: Default::default(),
            stop: stopped,
        };
        let pod_workers = tokio::spawn(pods::run(context, nodes.clone(), pods, queue));
        Ok(Fleet {
            nodes,
            stop,
            heartbeats,
            pod_workers,
            informers,
            delete_nodes_on_exit: config.delete_nodes_on_exit,
        })
    }

    /// The nodes' names.
    pub fn node_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.nodes.keys().cloned().collect();
        names.sort();
        names
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Arc<HollowNode>> {
        self.nodes.get(name)
    }

    /// Stops heartbeats and pod work (writes in flight finish); with
    /// `delete_nodes_on_exit`, deletes every Node and Lease.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.heartbeats.abort();
        let _ = self.heartbeats.await;
        let _ = self.pod_workers.await;
        if self.delete_nodes_on_exit {
            let nodes: Vec<Arc<HollowNode>> = self.nodes.values().cloned().collect();
            let admin = self.informers.client();
            let failures = futures_util::stream::iter(nodes)
                .map(|node| async move {
                    node.delete(admin).await.err().map(|e| (node.name().to_owned(), e))
                })
                .buffer_unordered(STARTUP_CONCURRENCY)
                .filter_map(|failed| async move { failed })
                .collect::<Vec<_>>()
                .await;
            if let Some((node, e)) = failures.into_iter().next() {
                return Err(Error::Transport(format!("cannot delete node {node}: {e}")));
            }
        }
        Ok(())
    }
}

/// One node up: its credential (cached, or issued), its Node and its Lease. A cached
/// certificate the server no longer accepts is dropped and asked for again.
async fn start_node(
    place: Place,
    shape: &Shape,
    endpoint: &Arc<Endpoint>,
    cert_dir: &CertDir,
    issuer: &Issuer,
) -> Result<HollowNode> {
    let name = place.name.clone();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = async {
            let credential = match cert_dir.load(&name) {
                Some(cached) => cached,
                None => {
                    let issued = issuer.issue(&name).await?;
                    cert_dir.store(&name, &issued)?;
                    issued
                }
            };
            let mut node = HollowNode::new(place.clone(), endpoint.client(&credential)?);
            node.register(shape).await?;
            Ok::<_, Error>(node)
        }
        .await;
        match result {
            Ok(node) => return Ok(node),
            Err(e) if attempt < REGISTER_ATTEMPTS => {
                if e.code() == Some(401) {
                    cert_dir.forget(&name);
                }
                tracing::warn!(node = name, attempt, error = %e, "cannot register a hollow node; retrying");
                tokio::time::sleep(Duration::from_secs(1 << attempt.min(4))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Wakes each node every [`LEASE_RENEW_INTERVAL`], spread evenly over the interval, with
/// at most [`HEARTBEAT_CONCURRENCY`] in flight: one task for the whole fleet.
async fn heartbeats(nodes: Arc<HashMap<String, Arc<HollowNode>>>, shape: Arc<Shape>) {
    let all: Vec<Arc<HollowNode>> = nodes.values().cloned().collect();
    let slots = Arc::new(tokio::sync::Semaphore::new(HEARTBEAT_CONCURRENCY));
    let start = Instant::now();
    let step = LEASE_RENEW_INTERVAL / (all.len().max(1) as u32);
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = (0..all.len())
        .map(|i| Reverse((start + LEASE_RENEW_INTERVAL + step * i as u32, i)))
        .collect();
    while let Some(Reverse((at, i))) = due.pop() {
        tokio::time::sleep_until(at).await;
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let node = all[i].clone();
        let shape = shape.clone();
        tokio::spawn(async move {
            node.heartbeat(&shape).await;
            drop(slot);
        });
        // Keep the cadence; a node still beating when its turn comes skips it.
        let mut next = at + LEASE_RENEW_INTERVAL;
        let now = Instant::now();
        if next < now {
            next = now;
        }
        due.push(Reverse((next, i)));
    }
}

/// Runs hollow nodes until `stop` resolves (SIGINT/SIGTERM in the CLI).
pub async fn run(config: Config, stop: impl Future<Output = ()>) -> Result<()> {
    let mut stop = std::pin::pin!(stop);
    let fleet = tokio::select! {
        fleet = Fleet::start(config) => fleet?,
        () = &mut stop => return Ok(()),
    };
    stop.await;
    tracing::info!("stopping hollow nodes");
    fleet.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(count: u32) -> Config {
        Config::new("admin.kubeconfig".into(), "certs".into(), count)
    }

    #[test]
    fn nodes_get_names_zones_and_addresses_by_index() {
        let places = config(4).places().unwrap();
        let summary: Vec<_> = places
            .iter()
            .map(|p| (p.name.as_str(), p.zone.as_str(), p.pod_cidr.to_string(), p.ip.to_string()))
            .collect();
        assert_eq!(
            summary,
            [
                ("hollow-node-0", "zone-0", "10.42.0.0/24".into(), "10.41.0.1".into()),
                ("hollow-node-1", "zone-1", "10.42.1.0/24".into(), "10.41.0.2".into()),
                ("hollow-node-2", "zone-2", "10.42.2.0/24".into(), "10.41.0.3".into()),
                ("hollow-node-3", "zone-0", "10.42.3.0/24".into(), "10.41.0.4".into()),
            ]
        );
    }

    #[test]
    fn a_pod_range_too_small_for_the_count_is_refused() {
        let err = config(257).places().unwrap_err().to_string();
        assert_eq!(err, "--pod-cidr 10.42.0.0/16 holds 256 blocks of /24, fewer than --count 257");
        let mut wide = config(5000);
        wide.pod_cidr = "10.0.0.0/8".parse().unwrap();
        assert_eq!(wide.places().unwrap().len(), 5000);
        let mut small = config(5000);
        small.node_cidr_mask_size = 26;
        assert!(small.places().is_err(), "1024 blocks of /26");
    }
}

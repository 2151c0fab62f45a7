//! One hollow node: its registration, its Lease heartbeat and its status reports, all
//! written as the node (`system:node:<name>`), so the Node authorizer and
//! NodeRestriction judge them as they judge a kubelet's.
//!
//! As the kubelet: the Node is created, or adopted if it exists (its pod CIDR kept,
//! missing kubelet labels added); the Lease in `kube-node-lease` is renewed every 10 s
//! (held by the node, 40 s long, owned by the Node); the status is written when it
//! differs from what the Node says, and otherwise every 5 minutes
//! (`nodeStatusReportFrequency`), with fresh heartbeat times.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keelson_api::k8s_openapi::api::coordination::v1::Lease;
use keelson_api::k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};
use kube::Resource;
use kube::api::{DeleteParams, GetParams, Patch, PatchParams, PostParams};
use kube::core::Request;
use serde_json::json;

use crate::Error;
use crate::cidr::{Ipv4Cidr, PodIps};
use crate::status::{self, Place, Shape};
use crate::transport::NodeClient;

/// The kubelet's `nodeStatusReportFrequency`.
pub const STATUS_REPORT_INTERVAL: Duration = Duration::from_secs(300);

pub struct HollowNode {
    pub place: Place,
    client: NodeClient,
    state: Mutex<State>,
    /// A heartbeat is in flight: the next one waits its turn.
    beating: AtomicBool,
}

struct State {
    uid: Option<String>,
    lease_version: Option<String>,
    /// The conditions last written, whose transition times the next report keeps.
    conditions: Option<Vec<NodeCondition>>,
    reported: Instant,
    pod_ips: PodIps,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn nodes() -> Request {
    Request::new(Node::url_path(&(), None))
}

fn leases() -> Request {
    Request::new(Lease::url_path(&(), Some(status::LEASE_NAMESPACE)))
}

impl HollowNode {
    pub fn new(place: Place, client: NodeClient) -> Self {
        let pod_ips = PodIps::new(place.pod_cidr);
        HollowNode {
            place,
            client,
            state: Mutex::new(State {
                uid: None,
                lease_version: None,
                conditions: None,
                reported: Instant::now(),
                pod_ips,
            }),
            beating: AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &str {
        &self.place.name
    }

    pub fn client(&self) -> &NodeClient {
        &self.client
    }

    /// Runs `f` on the node's pod addresses.
    pub fn with_pod_ips<T>(&self, f: impl FnOnce(&mut PodIps) -> T) -> T {
        f(&mut lock(&self.state).pod_ips)
    }

    /// Creates the Node, or adopts the one that exists; then takes or creates its Lease.
    /// Returns the node as registered: an adopted Node's pod CIDR wins.
    pub async fn register(&mut self, shape: &Shape) -> Result<(), Error> {
        let desired = status::node(&self.place, shape, &status::now());
        let body = serde_json::to_vec(&desired).map_err(Error::encode)?;
        let node: Node = match self.client.json(nodes().create(&PostParams::default(), body)?).await
        {
            Ok(node) => node,
            Err(e) if e.code() == Some(409) => self.adopt(shape).await?,
            Err(e) => return Err(e),
        };
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        state.uid = node.metadata.uid.clone();
        state.conditions = node.status.and_then(|s| s.conditions);
        state.reported = Instant::now();
        self.renew_lease().await
    }

    /// The existing Node made this node's: kubelet labels added, the pod CIDR set if
    /// it has none, the status written if it differs.
    async fn adopt(&mut self, shape: &Shape) -> Result<Node, Error> {
        let mut node: Node =
            self.client.json(nodes().get(self.name(), &GetParams::default())?).await?;
        let current_cidr =
            node.spec.as_ref().and_then(|s| s.pod_cidr.clone()).filter(|c| !c.is_empty());
        match current_cidr.as_deref().map(str::parse::<Ipv4Cidr>) {
            Some(Ok(cidr)) if cidr != self.place.pod_cidr => {
                self.place.pod_cidr = cidr;
                let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
                state.pod_ips = PodIps::new(cidr);
            }
            Some(Err(e)) => return Err(Error::Config(format!("node {}: {e}", self.name()))),
            _ => {}
        }
        let labels = status::labels(&self.place, shape);
        let have = node.metadata.labels.clone().unwrap_or_default();
        let missing: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .filter(|(k, v)| have.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        if !missing.is_empty() || current_cidr.is_none() {
            let mut patch = json!({ "metadata": { "labels": missing } });
            if current_cidr.is_none() {
                let cidr = self.place.pod_cidr.to_string();
                patch["spec"] = json!({ "podCIDR": cidr, "podCIDRs": [cidr] });
            }
            let request =
                nodes().patch(self.name(), &PatchParams::default(), &Patch::Merge(&patch))?;
            node = self.client.json(request).await?;
        }
        let desired = status::node_status(&self.place, shape, &status::now(), node.status.as_ref());
        if status::node_status_changed(node.status.as_ref(), &desired) {
            node = self.write_status(&desired).await?;
        }
        Ok(node)
    }

    async fn write_status(&self, desired: &NodeStatus) -> Result<Node, Error> {
        let patch = json!({ "status": desired });
        let request = nodes().patch_subresource(
            "status",
            self.name(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )?;
        self.client.json(request).await
    }

    /// One heartbeat: the Lease renewed; the status reported if 5 minutes passed.
    /// Skipped while the previous one is still in flight.
    pub async fn heartbeat(&self, shape: &Shape) {
        if self.beating.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = self.renew_lease().await {
            tracing::warn!(node = self.name(), error = %e, "cannot renew the node lease");
        }
        let due = lock(&self.state).reported.elapsed() >= STATUS_REPORT_INTERVAL;
        if due && let Err(e) = self.report_status(shape).await {
            tracing::warn!(node = self.name(), error = %e, "cannot update the node status");
        }
        self.beating.store(false, Ordering::Release);
    }

    /// Writes the status with fresh heartbeats.
    async fn report_status(&self, shape: &Shape) -> Result<(), Error> {
        let previous = NodeStatus {
            conditions: lock(&self.state).conditions.clone(),
            ..NodeStatus::default()
        };
        let desired = status::node_status(&self.place, shape, &status::now(), Some(&previous));
        let node = self.write_status(&desired).await?;
        let mut state = lock(&self.state);
        state.conditions = node.status.and_then(|s| s.conditions);
        state.reported = Instant::now();
        Ok(())
    }

    /// Renews the Lease from the version last seen; creates it if missing, reads it
    /// again on a conflict.
    async fn renew_lease(&self) -> Result<(), Error> {
        let name = self.name().to_owned();
        for _ in 0..3 {
            let (uid, version) = {
                let state = lock(&self.state);
                (state.uid.clone(), state.lease_version.clone())
            };
            let lease = status::lease(&name, uid.as_deref(), version.clone());
            let body = serde_json::to_vec(&lease).map_err(Error::encode)?;
            let request = match version {
                Some(_) => leases().replace(&name, &PostParams::default(), body)?,
                None => leases().create(&PostParams::default(), body)?,
            };
            let answer: Result<Lease, Error> = self.client.json(request).await;
            let next = match answer {
                Ok(lease) => {
                    lock(&self.state).lease_version = lease.metadata.resource_version;
                    return Ok(());
                }
                // Created meanwhile, changed by someone else, or gone: read it again.
                Err(e) if matches!(e.code(), Some(409)) => {
                    let current: Result<Lease, Error> =
                        self.client.json(leases().get(&name, &GetParams::default())?).await;
                    match current {
                        Ok(current) => current.metadata.resource_version,
                        Err(e) if e.code() == Some(404) => None,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) if e.code() == Some(404) => None,
                Err(e) => return Err(e),
            };
            lock(&self.state).lease_version = next;
        }
        Err(Error::Transport(format!("the lease of {name} keeps changing under it")))
    }

    /// Deletes the Lease (as the node) and the Node (with `admin`: the kubelet's role
    /// may not delete Nodes), for `--delete-nodes-on-exit`.
    pub async fn delete(&self, admin: &kube::Client) -> Result<(), Error> {
        match self.client.send(leases().delete(self.name(), &DeleteParams::default())?).await {
            Err(e) if e.code() != Some(404) => return Err(e),
            _ => {}
        }
        let nodes: kube::Api<Node> = kube::Api::all(admin.clone());
        match nodes.delete(self.name(), &DeleteParams::default()).await {
            Err(e) if !matches!(&e, kube::Error::Api(s) if s.code == 404) => Err(e.into()),
            _ => Ok(()),
        }
    }
}

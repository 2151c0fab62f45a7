//! `node-lifecycle-controller` (upstream's `pkg/controller/nodelifecycle`): notices
//! nodes that stopped reporting and taints nodes by their conditions.
//!
//! Every `--node-monitor-period` it looks at each node's last heartbeat — the `Ready`
//! condition's `lastHeartbeatTime` or the renew time of its Lease in `kube-node-lease`,
//! whichever it saw change last — and once none came for `--node-monitor-grace-period`
//! (`--node-startup-grace-period` for a node that never reported) sets `Ready`,
//! `MemoryPressure`, `DiskPressure` and `PIDPressure` to `Unknown` (`NodeStatusUnknown`,
//! "Kubelet stopped posting node status."; `NodeStatusNeverUpdated` for a condition the
//! kubelet never wrote). A node that turns not ready gets the `NodeNotReady` event and
//! its pods' `Ready` conditions set to `False`.
//!
//! Taints, as upstream writes them: `NoSchedule` ones mirror the conditions
//! (`not-ready`, `unreachable`, `memory-pressure`, `disk-pressure`, `pid-pressure`,
//! `network-unavailable`) and `spec.unschedulable`; the `NoExecute` `not-ready` /
//! `unreachable` taints that make the taint-eviction controller evict pods are added
//! through a rate-limited queue per zone — `--node-eviction-rate` while a zone is
//! healthy or wholly down, `--secondary-node-eviction-rate` (0 in clusters of at most
//! `--large-cluster-size-threshold` nodes) once `--unhealthy-zone-threshold` of it is
//! not ready — and when every zone is wholly down the controller assumes its own
//! network is at fault and taints nothing (upstream's "master disruption mode").

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keelson_api::k8s_openapi::api::coordination::v1::Lease;
use keelson_api::k8s_openapi::api::core::v1::{Node, NodeCondition, ObjectReference, Pod, Taint};
use keelson_api::k8s_openapi::jiff::{SignedDuration, Timestamp};
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use keelson_runtime::events::{EventType, Recorder};
use keelson_runtime::informer::{Informer, Key};
use keelson_runtime::queue::WorkQueue;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::nodeutil::{self, condition, has_taint, swap_taints, taint, zone_key};

pub const NAME: &str = "node-lifecycle-controller";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// Nodes with this label count in no zone's health.
const EXCLUDE_DISRUPTION: &str = "node.kubernetes.io/exclude-disruption";
/// How often the `NoExecute` queues are worked (upstream's `NodeEvictionPeriod`).
const TAINTING_PERIOD: Duration = Duration::from_millis(100);
/// How often a failed status write is tried again against a fresh read.
const STATUS_RETRIES: usize = 5;

/// Each condition status that taints a node, and the taint (upstream's
/// `nodeConditionToTaintKeyStatusMap`).
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", NOT_READY),
    ("Ready", "Unknown", UNREACHABLE),
    ("MemoryPressure", "True", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("NetworkUnavailable", "True", "node.kubernetes.io/network-unavailable"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
];

/// The taint for a condition in a status, if any.
fn condition_taint(type_: &str, status: &str) -> Option<&'static str> {
    CONDITION_TAINTS.iter().find(|(t, s, _)| *t == type_ && *s == status).map(|(_, _, key)| *key)
}

/// Whether a `NoSchedule` taint is one this controller keeps.
fn is_condition_taint(key: &str) -> bool {
    key == UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == key)
}

/// kube-controller-manager's node lifecycle flags.
#[derive(Clone, Debug)]
pub struct Settings {
    pub monitor_period: Duration,
    pub grace_period: Duration,
    pub startup_grace_period: Duration,
    pub eviction_rate: f64,
    pub secondary_eviction_rate: f64,
    pub unhealthy_zone_threshold: f64,
    pub large_cluster_size_threshold: usize,
}

impl Default for Settings {
    /// Upstream's defaults.
    fn default() -> Self {
        Settings {
            monitor_period: Duration::from_secs(5),
            grace_period: Duration::from_secs(50),
            startup_grace_period: Duration::from_secs(60),
            eviction_rate: 0.1,
            secondary_eviction_rate: 0.01,
            unhealthy_zone_threshold: 0.55,
            large_cluster_size_threshold: 50,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    Initial,
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// Upstream's `ComputeZoneState`: how many of the zone's nodes are not ready, and the
/// zone's state.
pub fn zone_state(ready: &[bool], threshold: f64) -> (usize, ZoneState) {
    let not_ready = ready.iter().filter(|r| !**r).count();
    let ready = ready.len() - not_ready;
    let state = if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / (not_ready + ready) as f64 >= threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    };
    (not_ready, state)
}

/// A token bucket of burst 1 (upstream's eviction limiter); rate 0 never admits.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Self {
        Bucket { rate, tokens: 1.0, last: Instant::now() }
    }

    fn try_take(&mut self) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(1.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A zone's queue of nodes to taint `NoExecute`, at its bucket's rate (upstream's
/// `RateLimitedTimedQueue`).
#[derive(Debug)]
struct Tainter {
    queue: VecDeque<String>,
    bucket: Bucket,
}

impl Tainter {
    fn add(&mut self, node: &str) {
        if !self.queue.iter().any(|n| n == node) {
            self.queue.push_back(node.to_owned());
        }
    }

    fn remove(&mut self, node: &str) {
        self.queue.retain(|n| n != node);
    }

    /// The first node in line, if the bucket lets it through now.
    fn next(&mut self) -> Option<String> {
        if self.queue.is_empty() || !self.bucket.try_take() {
            return None;
        }
        self.queue.pop_front()
    }
}

/// What the controller remembers of a node's health (upstream's `nodeHealthData`).
#[derive(Clone, Debug)]
struct Health {
    ready: Option<NodeCondition>,
    probe: Timestamp,
    ready_transition: Timestamp,
    lease_renew: Option<Timestamp>,
}

pub fn starter(settings: Settings) -> impl Fn(Context) -> StartFuture + Send + Sync {
    move |context| Box::pin(run(context, settings.clone()))
}

struct Controller {
    client: Client,
    settings: Settings,
    nodes: Arc<Informer<Node>>,
    leases: Arc<Informer<Lease>>,
    pods: Arc<Informer<Pod>>,
    recorder: Recorder,
    known: HashSet<String>,
    health: HashMap<String, Health>,
    zones: BTreeMap<String, ZoneState>,
    tainters: BTreeMap<String, Tainter>,
    /// Nodes whose pods could not all be marked not ready.
    retry: HashSet<String>,
}

async fn run(context: Context, settings: Settings) -> keelson_runtime::Result<()> {
    let nodes = context.informers.get::<Node>();
    let leases = context.informers.get::<Lease>();
    let pods = context.informers.get::<Pod>();
    nodeutil::index_pods_by_node(&pods);
    // The NoSchedule taints follow each node's changes.
    let queue: WorkQueue<Key> = context.queue();
    nodes.queue_changes(&queue);
    nodes.wait_synced().await;
    leases.wait_synced().await;
    pods.wait_synced().await;
    let no_schedule = {
        let client = context.client.clone();
        let nodes = nodes.clone();
        let context = context.clone();
        tokio::spawn(async move {
            run_workers(&context, queue, 1, move |name: Key| {
                let client = client.clone();
                let nodes = nodes.clone();
                async move { no_schedule_taints(&client, &nodes, &name).await }
            })
            .await;
        })
    };
    let mut controller = Controller {
        recorder: Recorder::new(context.client.clone(), "node-controller", None),
        client: context.client.clone(),
        settings,
        nodes,
        leases,
        pods,
        known: HashSet::new(),
        health: HashMap::new(),
        zones: BTreeMap::new(),
        tainters: BTreeMap::new(),
        retry: HashSet::new(),
    };
    let mut next_monitor = tokio::time::Instant::now();
    let mut stop = context.stop.clone();
    loop {
        if tokio::time::Instant::now() >= next_monitor {
            controller.monitor().await;
            next_monitor = tokio::time::Instant::now() + controller.settings.monitor_period;
        }
        controller.no_execute_tainting().await;
        tokio::select! {
            _ = tokio::time::sleep(TAINTING_PERIOD) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    no_schedule.abort();
    Ok(())
}

/// Upstream's `doNoScheduleTaintingPass`: the node's `NoSchedule` taints of this
/// controller made to match its conditions and `spec.unschedulable`.
async fn no_schedule_taints(
    client: &Client,
    nodes: &Informer<Node>,
    name: &str,
) -> Result<Action, kube::Error> {
    let Some(node) = nodes.get(name) else { return Ok(Action::AwaitChange) };
    let mut want: Vec<Taint> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| condition_taint(&c.type_, &c.status))
        .map(|key| taint(key, "NoSchedule"))
        .collect();
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        want.push(taint(UNSCHEDULABLE, "NoSchedule"));
    }
    let have: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.effect == "NoSchedule" && is_condition_taint(&t.key))
        .collect();
    let add: Vec<Taint> = want.iter().filter(|t| !has_taint(&have, t)).cloned().collect();
    let remove: Vec<Taint> = have.iter().filter(|t| !has_taint(&want, t)).cloned().collect();
    if add.is_empty() && remove.is_empty() {
        return Ok(Action::AwaitChange);
    }
    match swap_taints(client, name, &add, &remove).await {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::AwaitChange),
        Err(e) => Err(e),
        Ok(()) => Ok(Action::AwaitChange),
    }
}

fn to_jiff(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

impl Controller {
    fn tainter(&mut self, zone: &str) -> &mut Tainter {
        let rate = self.settings.eviction_rate;
        self.zones.entry(zone.to_owned()).or_insert(ZoneState::Initial);
        self.tainters
            .entry(zone.to_owned())
            .or_insert_with(|| Tainter { queue: VecDeque::new(), bucket: Bucket::new(rate) })
    }

    async fn monitor(&mut self) {
        let nodes = self.nodes.list();
        let names: HashSet<String> = nodes.iter().filter_map(|n| n.metadata.name.clone()).collect();
        for node in &nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let zone = zone_key(node);
            self.tainter(&zone);
            if self.known.insert(name.clone()) {
                let message = format!("Registered Node {name} in Controller");
                self.recorder.event(
                    &nodeutil::reference(node),
                    EventType::Normal,
                    "RegisteredNode",
                    &message,
                );
                self.mark_reachable(node).await;
            }
        }
        let gone: Vec<String> =
            self.known.iter().filter(|n| !names.contains(*n)).cloned().collect();
        for name in gone {
            let reference = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(name.clone()),
                ..Default::default()
            };
            let message = format!("Removing Node {name} from Controller");
            self.recorder.event(&reference, EventType::Normal, "RemovingNode", &message);
            self.known.remove(&name);
            self.health.remove(&name);
            self.retry.remove(&name);
        }
        let mut zone_ready: BTreeMap<String, Vec<bool>> = BTreeMap::new();
        for node in &nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let Some((observed, current, node)) = self.update_health(node).await else { continue };
            let excluded =
                node.metadata.labels.as_ref().is_some_and(|l| l.contains_key(EXCLUDE_DISRUPTION));
            if !excluded {
                let ready = current.as_ref().is_some_and(|c| c.status == "True");
                zone_ready.entry(zone_key(&node)).or_default().push(ready);
            }
            let Some(current) = current else { continue };
            self.taint_for_eviction(&node, &current).await;
            let became_not_ready = current.status != "True" && observed.status == "True";
            if became_not_ready {
                let message = format!("Node {name} status is now: NodeNotReady");
                self.recorder.event(
                    &nodeutil::reference(&node),
                    EventType::Normal,
                    "NodeNotReady",
                    &message,
                );
            }
            if became_not_ready || (self.retry.contains(&name) && observed.status != "True") {
                if self.mark_pods_not_ready(&name).await {
                    self.retry.remove(&name);
                } else {
                    self.retry.insert(name);
                }
            } else {
                self.retry.remove(&name);
            }
        }
        self.handle_disruption(zone_ready, &nodes).await;
    }

    /// Upstream's `tryUpdateNodeHealth`, retried against fresh reads: the Ready
    /// condition as observed and as it is now, and the node as written.
    async fn update_health(
        &mut self,
        node: &Node,
    ) -> Option<(NodeCondition, Option<NodeCondition>, Node)> {
        let mut node = node.clone();
        for _ in 0..STATUS_RETRIES {
            match self.try_update_health(&mut node).await {
                Ok((observed, current)) => return Some((observed, current, node)),
                Err(e) => {
                    let name = node.metadata.name.clone().unwrap_or_default();
                    tracing::debug!(node = name, error = %e, "cannot update the node's health; reading it again");
                    match Api::<Node>::all(self.client.clone()).get(&name).await {
                        Ok(fresh) => node = fresh,
                        Err(_) => return None,
                    }
                }
            }
        }
        None
    }

    async fn try_update_health(
        &mut self,
        node: &mut Node,
    ) -> Result<(NodeCondition, Option<NodeCondition>), kube::Error> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let now = Timestamp::now();
        let created = node.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
        let current = condition(node, "Ready").cloned();
        let mut health = self.health.get(&name).cloned();
        let (observed, grace) = match &current {
            None => {
                let observed = NodeCondition {
                    type_: "Ready".into(),
                    status: "Unknown".into(),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: node.metadata.creation_timestamp.clone(),
                    ..Default::default()
                };
                match &mut health {
                    Some(h) => h.ready = None,
                    None => {
                        health = Some(Health {
                            ready: None,
                            probe: created,
                            ready_transition: created,
                            lease_renew: None,
                        });
                    }
                }
                (observed, self.settings.startup_grace_period)
            }
            Some(c) => (c.clone(), self.settings.grace_period),
        };
        let saved = health.as_ref().and_then(|h| h.ready.clone());
        let fresh = |ready: Option<NodeCondition>| Health {
            ready,
            probe: now,
            ready_transition: now,
            lease_renew: None,
        };
        let mut health = match (health, &saved, &current) {
            (None, _, _) => fresh(current.clone()),
            (Some(_), None, Some(_)) => fresh(current.clone()),
            (Some(_), Some(_), None) => fresh(None),
            (Some(h), Some(saved), Some(c))
                if saved.last_heartbeat_time != c.last_heartbeat_time =>
            {
                Health {
                    ready: Some(c.clone()),
                    probe: now,
                    ready_transition: if saved.last_transition_time != c.last_transition_time {
                        now
                    } else {
                        h.ready_transition
                    },
                    lease_renew: h.lease_renew,
                }
            }
            (Some(h), _, _) => h,
        };
        let lease = self.leases.get(&format!("kube-node-lease/{name}"));
        let renew = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
        if let Some(renew) = renew
            && health.lease_renew.is_none_or(|saved| saved < renew)
        {
            health.lease_renew = Some(renew);
            health.probe = now;
        }
        let mut result = (observed.clone(), current.clone());
        if now > health.probe + to_jiff(grace) {
            let status = node.status.get_or_insert_default();
            let conditions = status.conditions.get_or_insert_default();
            for type_ in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
                match conditions.iter_mut().find(|c| c.type_ == type_) {
                    None => conditions.push(NodeCondition {
                        type_: type_.into(),
                        status: "Unknown".into(),
                        reason: Some("NodeStatusNeverUpdated".into()),
                        message: Some("Kubelet never posted node status.".into()),
                        last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                        last_transition_time: Some(nodeutil::now()),
                    }),
                    Some(c) if c.status != "Unknown" => {
                        c.status = "Unknown".into();
                        c.reason = Some("NodeStatusUnknown".into());
                        c.message = Some("Kubelet stopped posting node status.".into());
                        c.last_transition_time = Some(nodeutil::now());
                    }
                    Some(_) => {}
                }
            }
            let now_ready = condition(node, "Ready").cloned();
            if now_ready.as_ref() != Some(&observed) {
                let api: Api<Node> = Api::all(self.client.clone());
                *node = api.replace_status(&name, &PostParams::default(), &*node).await?;
                health = Health {
                    ready: condition(node, "Ready").cloned(),
                    probe: health.probe,
                    ready_transition: now,
                    lease_renew: health.lease_renew,
                };
                result = (observed, now_ready);
            }
        }
        self.health.insert(name, health);
        Ok(result)
    }

    /// Upstream's `processTaintBaseEviction`.
    async fn taint_for_eviction(&mut self, node: &Node, ready: &NodeCondition) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let not_ready = taint(NOT_READY, "NoExecute");
        let unreachable = taint(UNREACHABLE, "NoExecute");
        let zone = zone_key(node);
        let (this, other) = match ready.status.as_str() {
            "False" => (not_ready, unreachable),
            "Unknown" => (unreachable, not_ready),
            _ => {
                self.mark_reachable(node).await;
                return;
            }
        };
        if has_taint(&taints, &other) {
            // Already tainted the other way: swapped at once, not rate-limited.
            if let Err(e) = swap_taints(&self.client, &name, &[this], &[other]).await {
                tracing::warn!(node = name, error = %e, "cannot swap the node's NoExecute taint");
            }
            return;
        }
        let tainter = self.tainter(&zone);
        if !has_taint(&taints, &this) {
            tainter.remove(&name);
        }
        tainter.add(&name);
    }

    /// Upstream's `markNodeAsReachable`: both NoExecute taints off, out of the queue.
    async fn mark_reachable(&mut self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let remove = [taint(NOT_READY, "NoExecute"), taint(UNREACHABLE, "NoExecute")];
        if remove.iter().any(|t| has_taint(&taints, t))
            && let Err(e) = swap_taints(&self.client, &name, &[], &remove).await
        {
            tracing::warn!(node = name, error = %e, "cannot remove the node's NoExecute taints");
        }
        let zone = zone_key(node);
        self.tainter(&zone).remove(&name);
    }

    /// Upstream's `doNoExecuteTaintingPass`: each zone's queue worked at its rate.
    async fn no_execute_tainting(&mut self) {
        let zones: Vec<String> = self.tainters.keys().cloned().collect();
        for zone in zones {
            while let Some(name) = self.tainters.get_mut(&zone).and_then(Tainter::next) {
                let Some(node) = self.nodes.get(&name) else { continue };
                let Some(ready) = condition(&node, "Ready") else {
                    self.tainter(&zone).queue.push_back(name);
                    break;
                };
                let (add, remove) = match ready.status.as_str() {
                    "False" => (taint(NOT_READY, "NoExecute"), taint(UNREACHABLE, "NoExecute")),
                    "Unknown" => (taint(UNREACHABLE, "NoExecute"), taint(NOT_READY, "NoExecute")),
                    _ => continue,
                };
                if let Err(e) = swap_taints(&self.client, &name, &[add], &[remove]).await {
                    tracing::warn!(node = name, error = %e, "cannot taint the node NoExecute; trying again");
                    self.tainter(&zone).queue.push_back(name);
                    break;
                }
                tracing::info!(node = name, "tainted the node NoExecute");
            }
        }
    }

    /// Upstream's `MarkPodsNotReady`: the `Ready` condition of the node's pods set to
    /// `False`; says whether every write succeeded.
    async fn mark_pods_not_ready(&self, node: &str) -> bool {
        let mut ok = true;
        for pod in self.pods.by_index(nodeutil::NODE_INDEX, node) {
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
            if ready.is_none_or(|c| c.status == "False") {
                continue;
            }
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            let patch = json!({
                "metadata": { "uid": pod.metadata.uid },
                "status": { "conditions": [{
                    "type": "Ready",
                    "status": "False",
                    "lastTransitionTime": nodeutil::now(),
                }]},
            });
            match api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await
            {
                Ok(_) => {
                    let reference = ObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Pod".into()),
                        namespace: Some(namespace),
                        name: Some(name),
                        uid: pod.metadata.uid.clone(),
                        ..Default::default()
                    };
                    self.recorder.event(
                        &reference,
                        EventType::Warning,
                        "NodeNotReady",
                        "Node is not ready",
                    );
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    tracing::warn!(pod = name, error = %e, "cannot mark the pod not ready");
                    ok = false;
                }
            }
        }
        ok
    }

    /// Upstream's `handleDisruption`: zone states from their nodes' readiness, and each
    /// zone's tainting rate from its state.
    async fn handle_disruption(
        &mut self,
        zone_ready: BTreeMap<String, Vec<bool>>,
        nodes: &[Arc<Node>],
    ) {
        let threshold = self.settings.unhealthy_zone_threshold;
        let new_states: BTreeMap<String, (usize, ZoneState)> = zone_ready
            .iter()
            .map(|(zone, ready)| (zone.clone(), (ready.len(), zone_state(ready, threshold).1)))
            .collect();
        let all_are_full = new_states.values().all(|(_, s)| *s == ZoneState::FullDisruption);
        for zone in new_states.keys() {
            self.zones.entry(zone.clone()).or_insert(ZoneState::Initial);
        }
        self.zones.retain(|zone, _| zone_ready.contains_key(zone));
        let all_were_full = self.zones.values().all(|s| *s == ZoneState::FullDisruption);
        if all_are_full && all_were_full {
            return;
        }
        if all_are_full {
            tracing::info!(
                "every node is not ready: entering master disruption mode (no NoExecute taints)"
            );
            for node in nodes {
                self.mark_reachable(node).await;
            }
            for tainter in self.tainters.values_mut() {
                tainter.bucket = Bucket::new(0.0);
            }
            for state in self.zones.values_mut() {
                *state = ZoneState::FullDisruption;
            }
            return;
        }
        if all_were_full {
            tracing::info!("some nodes are ready: leaving master disruption mode");
            let now = Timestamp::now();
            for health in self.health.values_mut() {
                health.probe = now;
                health.ready_transition = now;
            }
        }
        let zones: Vec<String> = self.zones.keys().cloned().collect();
        for zone in zones {
            let (size, state) = new_states.get(&zone).copied().unwrap_or((0, ZoneState::Normal));
            if self.zones.get(&zone) == Some(&state) && !all_were_full {
                continue;
            }
            tracing::info!(zone, ?state, "zone state changed");
            let rate = match state {
                ZoneState::Normal | ZoneState::FullDisruption | ZoneState::Initial => {
                    self.settings.eviction_rate
                }
                ZoneState::PartialDisruption
                    if size > self.settings.large_cluster_size_threshold =>
                {
                    self.settings.secondary_eviction_rate
                }
                ZoneState::PartialDisruption => 0.0,
            };
            self.tainter(&zone).bucket = Bucket::new(rate);
            self.zones.insert(zone, state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_are_judged_as_upstream_judges_them() {
        assert_eq!(zone_state(&[true, true, false], 0.55), (1, ZoneState::Normal));
        assert_eq!(zone_state(&[false, false], 0.55), (2, ZoneState::FullDisruption));
        assert_eq!(
            zone_state(&[true, false, false], 0.55),
            (2, ZoneState::Normal),
            "needs more than two"
        );
        assert_eq!(
            zone_state(&[true, false, false, false], 0.55),
            (3, ZoneState::PartialDisruption)
        );
        assert_eq!(
            zone_state(&[true, true, false, false, false, true, true], 0.55),
            (3, ZoneState::Normal)
        );
    }

    #[test]
    fn buckets_admit_one_then_wait_and_rate_zero_never() {
        let mut bucket = Bucket::new(1000.0);
        assert!(bucket.try_take());
        let mut slow = Bucket::new(0.001);
        assert!(slow.try_take());
        assert!(!slow.try_take());
        assert!(!Bucket::new(0.0).try_take());
        std::thread::sleep(Duration::from_millis(5));
        assert!(bucket.try_take());
    }

    #[test]
    fn conditions_map_to_upstreams_taints() {
        assert_eq!(condition_taint("Ready", "False"), Some(NOT_READY));
        assert_eq!(condition_taint("Ready", "Unknown"), Some(UNREACHABLE));
        assert_eq!(condition_taint("Ready", "True"), None);
        assert_eq!(
            condition_taint("MemoryPressure", "True"),
            Some("node.kubernetes.io/memory-pressure")
        );
        assert_eq!(condition_taint("MemoryPressure", "False"), None);
        assert!(is_condition_taint(UNSCHEDULABLE) && !is_condition_taint("example.com/x"));
    }
}

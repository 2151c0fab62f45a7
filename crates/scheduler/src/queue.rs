//! The scheduling queue (upstream's `PriorityQueue`):
//!
//! - **activeQ**: pods ready to be tried, highest priority first, then first come;
//! - **backoffQ**: pods that failed recently and wait out their backoff (1 s, doubling
//!   per attempt, at most 10 s) before going back to activeQ;
//! - **unschedulable**: pods no node fits, parked until a cluster event that may help
//!   them — one the plugins that rejected the pod registered for, and whose hint says
//!   so — moves them back (to backoffQ while their backoff lasts), or at most 5 minutes;
//! - **gated**: pods a PreEnqueue plugin holds (scheduling gates), released by their
//!   own update.
//!
//! Events that happen while a pod is being scheduled are remembered, so a pod that
//! fails because of a node that appeared mid-cycle is requeued, not parked.
//!
//! Must never hand out a pod twice at once, nor lose one: every pod added is in
//! exactly one place until it is deleted or bound.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::framework::{ClusterEvent, EventResource, Framework, Hint, Object, Status, action};
use crate::types::PodInfo;

/// Upstream's defaults (`podInitialBackoffSeconds`, `podMaxBackoffSeconds`,
/// `podMaxInUnschedulablePodsDuration`).
#[derive(Clone, Copy, Debug)]
pub struct QueueConfig {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub max_unschedulable: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_unschedulable: Duration::from_secs(300),
        }
    }
}

/// A pod in the queue, with its scheduling history.
#[derive(Clone, Debug)]
pub struct QueuedPod {
    pub info: Arc<PodInfo>,
    /// When it last entered a queue (ordering among equal priorities; backoff start).
    pub timestamp: Instant,
    /// When it was first added (the scheduling SLI starts here).
    pub first_seen: Instant,
    pub attempts: u32,
    /// The plugins that rejected it last time (empty after an error).
    pub unschedulable_plugins: HashSet<&'static str>,
    /// The PreEnqueue plugin holding it, with its reason.
    pub gated_by: Option<Status>,
    /// The scheduling cycle it was popped in.
    pub cycle: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    Gated,
    InFlight,
}

struct Entry {
    pod: QueuedPod,
    place: Place,
    /// Bumped at each move, so stale heap entries are skipped.
    generation: u64,
}

type ActiveKey = (i32, Reverse<Instant>, Reverse<u64>);

struct Inner {
    pods: HashMap<String, Entry>,
    active: BinaryHeap<(ActiveKey, String, u64)>,
    backoff: BinaryHeap<(Reverse<Instant>, String, u64)>,
    /// Cluster events seen while pods were in flight, with the cycle they came in.
    in_flight_events: Vec<(u64, ClusterEvent, Option<Object>, Option<Object>)>,
    cycle: u64,
    seq: u64,
    /// Nominated pods (preemptors waiting for their victims to go) by node.
    nominated: HashMap<String, Vec<Arc<PodInfo>>>,
    nominated_node: HashMap<String, String>,
    closed: bool,
    /// Indexes of `pods`, so no operation walks every pod: the parked ones, the ones in
    /// flight (with their cycle), and how many are in each place.
    parked: HashSet<String>,
    in_flight: HashMap<String, u64>,
    counts: HashMap<Place, usize>,
}

impl Inner {
    /// Keeps the indexes true when the pod `uid` moves from `from` to `to`.
    fn track(&mut self, uid: &str, from: Option<Place>, to: Option<Place>, cycle: u64) {
        if let Some(from) = from {
            if let Some(n) = self.counts.get_mut(&from) {
                *n = n.saturating_sub(1);
            }
            match from {
                Place::Unschedulable => {
                    self.parked.remove(uid);
                }
                Place::InFlight => {
                    self.in_flight.remove(uid);
                }
                _ => {}
            }
        }
        if let Some(to) = to {
            *self.counts.entry(to).or_default() += 1;
            match to {
                Place::Unschedulable => {
                    self.parked.insert(uid.to_owned());
                }
                Place::InFlight => {
                    self.in_flight.insert(uid.to_owned(), cycle);
                }
                _ => {}
            }
        }
    }

    fn remove(&mut self, uid: &str) -> Option<Entry> {
        let entry = self.pods.remove(uid)?;
        self.track(uid, Some(entry.place), None, 0);
        Some(entry)
    }

    /// The parked pods.
    fn parked_pods(&self) -> Vec<QueuedPod> {
        self.parked.iter().filter_map(|uid| self.pods.get(uid)).map(|e| e.pod.clone()).collect()
    }
}

/// The queue; cheap to share.
pub struct SchedulingQueue {
    inner: Mutex<Inner>,
    ready: Notify,
    config: QueueConfig,
    profiles: Arc<HashMap<String, Arc<Framework>>>,
}

/// How many pods each part of the queue holds (`scheduler_pending_pods`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
    pub gated: usize,
}

impl SchedulingQueue {
    pub fn new(config: QueueConfig, profiles: Arc<HashMap<String, Arc<Framework>>>) -> Self {
        SchedulingQueue {
            inner: Mutex::new(Inner {
                pods: HashMap::new(),
                active: BinaryHeap::new(),
                backoff: BinaryHeap::new(),
                in_flight_events: Vec::new(),
                cycle: 0,
                seq: 0,
                nominated: HashMap::new(),
                nominated_node: HashMap::new(),
                closed: false,
                parked: HashSet::new(),
                in_flight: HashMap::new(),
                counts: HashMap::new(),
            }),
            ready: Notify::new(),
            config,
            profiles,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn framework(&self, pod: &PodInfo) -> Option<&Arc<Framework>> {
        self.profiles.get(pod.scheduler_name())
    }

    fn backoff_of(&self, attempts: u32) -> Duration {
        let mut d = self.config.initial_backoff;
        for _ in 1..attempts {
            if d > self.config.max_backoff.saturating_sub(d) {
                return self.config.max_backoff;
            }
            d += d;
        }
        d.min(self.config.max_backoff)
    }

    /// A new pod waiting to be scheduled.
    pub fn add(&self, info: Arc<PodInfo>) {
        let now = Instant::now();
        let gated_by = self.gate(&info);
        let mut inner = self.lock();
        if inner.pods.contains_key(&info.uid) {
            drop(inner);
            self.update(info);
            return;
        }
        self.note_nomination(&mut inner, &info);
        let pod = QueuedPod {
            info,
            timestamp: now,
            first_seen: now,
            attempts: 0,
            unschedulable_plugins: HashSet::new(),
            gated_by,
            cycle: 0,
        };
        let place = if pod.gated_by.is_some() { Place::Gated } else { Place::Active };
        self.place(&mut inner, pod, place);
    }

    fn gate(&self, info: &PodInfo) -> Option<Status> {
        let status = self.framework(info)?.run_pre_enqueue(info);
        (!status.is_success()).then_some(status)
    }

    fn place(&self, inner: &mut Inner, pod: QueuedPod, place: Place) {
        let uid = pod.info.uid.clone();
        let (generation, from) = match inner.pods.get(&uid) {
            Some(e) => (e.generation + 1, Some(e.place)),
            None => (0, None),
        };
        inner.track(&uid, from, Some(place), pod.cycle);
        match place {
            Place::Active => {
                inner.seq += 1;
                let key = (pod.info.priority, Reverse(pod.timestamp), Reverse(inner.seq));
                inner.active.push((key, uid.clone(), generation));
                self.ready.notify_one();
            }
            Place::Backoff => {
                let until = pod.timestamp + self.backoff_of(pod.attempts);
                inner.backoff.push((Reverse(until), uid.clone(), generation));
                // The popper wakes to move it when due.
                self.ready.notify_one();
            }
            _ => {}
        }
        inner.pods.insert(uid, Entry { pod, place, generation });
    }

    /// An update of a pod waiting to be scheduled.
    pub fn update(&self, info: Arc<PodInfo>) {
        let gated_by = self.gate(&info);
        let mut inner = self.lock();
        self.note_nomination(&mut inner, &info);
        let Some(entry) = inner.pods.get_mut(&info.uid) else {
            drop(inner);
            self.add(info);
            return;
        };
        let old = std::mem::replace(&mut entry.pod.info, info.clone());
        entry.pod.gated_by = gated_by;
        let (mut pod, place) = (entry.pod.clone(), entry.place);
        match place {
            Place::InFlight => {
                let actions = pod_update_actions(&old, &info);
                let event = ClusterEvent::new(EventResource::UnscheduledPod, actions);
                let cycle = inner.cycle;
                let objects = (Some(Object::Pod(old)), Some(Object::Pod(info)));
                inner.in_flight_events.push((cycle, event, objects.0, objects.1));
            }
            Place::Active | Place::Backoff => {
                if pod.gated_by.is_some() {
                    self.place(&mut inner, pod, Place::Gated);
                } else if place == Place::Active && old.priority != info.priority {
                    pod.timestamp = Instant::now();
                    self.place(&mut inner, pod, Place::Active);
                }
            }
            Place::Gated | Place::Unschedulable => {
                if pod.gated_by.is_some() {
                    self.place(&mut inner, pod, Place::Gated);
                } else if place == Place::Gated || spec_or_labels_changed(&old, &info) {
                    let to = self.requeue_place(&pod);
                    self.place(&mut inner, pod, to);
                }
            }
        }
    }

    /// A pod that is no longer waiting (deleted, or bound by someone).
    pub fn delete(&self, uid: &str) {
        let mut inner = self.lock();
        inner.remove(uid);
        Self::forget_nomination(&mut inner, uid);
    }

    /// The next pod to schedule; `None` once closed.
    pub async fn pop(&self) -> Option<QueuedPod> {
        loop {
            let wait = {
                let mut inner = self.lock();
                if inner.closed {
                    return None;
                }
                self.flush_backoff(&mut inner);
                if let Some(pod) = self.take_active(&mut inner) {
                    return Some(pod);
                }
                inner.backoff.peek().map(|(Reverse(until), _, _)| *until)
            };
            match wait {
                Some(until) => {
                    tokio::select! {
                        _ = self.ready.notified() => {}
                        _ = tokio::time::sleep_until(until) => {}
                    }
                }
                None => self.ready.notified().await,
            }
        }
    }

    fn take_active(&self, inner: &mut Inner) -> Option<QueuedPod> {
        while let Some((_, uid, generation)) = inner.active.pop() {
            let cycle = inner.cycle + 1;
            let Some(entry) = inner.pods.get_mut(&uid) else { continue };
            if entry.generation != generation || entry.place != Place::Active {
                continue;
            }
            entry.place = Place::InFlight;
            entry.pod.attempts += 1;
            entry.pod.cycle = cycle;
            let pod = entry.pod.clone();
            inner.cycle = cycle;
            inner.track(&uid, Some(Place::Active), Some(Place::InFlight), cycle);
            return Some(pod);
        }
        None
    }

    fn flush_backoff(&self, inner: &mut Inner) {
        let now = Instant::now();
        while let Some((Reverse(until), _, _)) = inner.backoff.peek() {
            if *until > now {
                break;
            }
            let Some((_, uid, generation)) = inner.backoff.pop() else { break };
            let Some(entry) = inner.pods.get(&uid) else { continue };
            if entry.generation != generation || entry.place != Place::Backoff {
                continue;
            }
            let pod = entry.pod.clone();
            self.place(inner, pod, Place::Active);
        }
    }

    /// Moves pods parked for longer than the limit back (upstream flushes every 30 s).
    pub fn flush_unschedulable(&self) {
        let mut inner = self.lock();
        let now = Instant::now();
        let max = self.config.max_unschedulable;
        let due: Vec<QueuedPod> = inner
            .parked_pods()
            .into_iter()
            .filter(|p| now.duration_since(p.timestamp) >= max)
            .collect();
        for pod in due {
            let to = self.requeue_place(&pod);
            self.place(&mut inner, pod, to);
        }
    }

    fn requeue_place(&self, pod: &QueuedPod) -> Place {
        if pod.attempts == 0 || Instant::now() >= pod.timestamp + self.backoff_of(pod.attempts) {
            Place::Active
        } else {
            Place::Backoff
        }
    }

    /// A pod the cycle could not place: parked, or back to backoffQ when an event
    /// during its cycle may have changed that (or when it failed with an error).
    pub fn requeue(&self, mut pod: QueuedPod, rejected_by: HashSet<&'static str>) {
        let mut inner = self.lock();
        let Some(entry) = inner.pods.get(&pod.info.uid) else { return };
        if entry.place != Place::InFlight {
            return;
        }
        // The latest version of the pod, if it changed while in flight.
        pod.info = entry.pod.info.clone();
        pod.gated_by = entry.pod.gated_by.clone();
        pod.timestamp = Instant::now();
        pod.unschedulable_plugins = rejected_by;
        let helped =
            pod.unschedulable_plugins.is_empty()
                || inner.in_flight_events.iter().filter(|(cycle, ..)| *cycle >= pod.cycle).any(
                    |(_, event, old, new)| self.may_help(&pod, event, old.as_ref(), new.as_ref()),
                );
        let place = if pod.gated_by.is_some() {
            Place::Gated
        } else if helped {
            Place::Backoff
        } else {
            Place::Unschedulable
        };
        self.place(&mut inner, pod, place);
        self.prune_events(&mut inner);
    }

    /// A pod that was bound (or given up for good): no longer in the queue.
    pub fn done(&self, uid: &str) {
        let mut inner = self.lock();
        if inner.pods.get(uid).is_some_and(|e| e.place == Place::InFlight) {
            inner.remove(uid);
        }
        self.prune_events(&mut inner);
    }

    fn prune_events(&self, inner: &mut Inner) {
        let oldest = inner.in_flight.values().copied().min();
        match oldest {
            None => inner.in_flight_events.clear(),
            Some(oldest) => inner.in_flight_events.retain(|(cycle, ..)| *cycle >= oldest),
        }
    }

    fn may_help(
        &self,
        pod: &QueuedPod,
        event: &ClusterEvent,
        old: Option<&Object>,
        new: Option<&Object>,
    ) -> bool {
        let Some(framework) = self.framework(&pod.info) else { return true };
        pod.unschedulable_plugins.iter().any(|name| {
            let Some(plugin) = framework.plugin(name) else { return true };
            plugin.events().iter().any(|registered| registered.covers(event))
                && plugin.hint(&pod.info, event, old, new) == Hint::Queue
        })
    }

    /// A cluster event: parked pods it may help go back, and pods in flight will be
    /// requeued rather than parked.
    pub fn on_event(&self, event: ClusterEvent, old: Option<Object>, new: Option<Object>) {
        let mut inner = self.lock();
        if !inner.in_flight.is_empty() {
            let cycle = inner.cycle;
            inner.in_flight_events.push((cycle, event, old.clone(), new.clone()));
        }
        let moving: Vec<QueuedPod> = inner
            .parked_pods()
            .into_iter()
            .filter(|p| self.may_help(p, &event, old.as_ref(), new.as_ref()))
            .collect();
        for pod in moving {
            let to = self.requeue_place(&pod);
            self.place(&mut inner, pod, to);
        }
    }

    /// Moves every parked pod back (upstream's `MoveAllToActiveOrBackoffQueue` for a
    /// wildcard event).
    pub fn move_all(&self) {
        let mut inner = self.lock();
        let moving: Vec<QueuedPod> = inner.parked_pods();
        for pod in moving {
            let to = self.requeue_place(&pod);
            self.place(&mut inner, pod, to);
        }
    }

    fn note_nomination(&self, inner: &mut Inner, info: &Arc<PodInfo>) {
        let node = info
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.clone())
            .filter(|n| !n.is_empty());
        Self::forget_nomination(inner, &info.uid);
        if let Some(node) = node {
            Self::nominate_locked(inner, info.clone(), &node);
        }
    }

    fn nominate_locked(inner: &mut Inner, info: Arc<PodInfo>, node: &str) {
        Self::forget_nomination(inner, &info.uid);
        inner.nominated_node.insert(info.uid.clone(), node.to_owned());
        inner.nominated.entry(node.to_owned()).or_default().push(info);
    }

    fn forget_nomination(inner: &mut Inner, uid: &str) {
        let Some(node) = inner.nominated_node.remove(uid) else { return };
        if let Some(pods) = inner.nominated.get_mut(&node) {
            pods.retain(|p| p.uid != uid);
            if pods.is_empty() {
                inner.nominated.remove(&node);
            }
        }
    }

    /// Records that `pod` waits for `node` (after preemption), or no longer waits.
    pub fn nominate(&self, info: Arc<PodInfo>, node: Option<&str>) {
        let mut inner = self.lock();
        match node {
            Some(node) => Self::nominate_locked(&mut inner, info, node),
            None => Self::forget_nomination(&mut inner, &info.uid),
        }
    }

    /// What the queue holds of the pod `uid`.
    pub fn info(&self, uid: &str) -> Option<Arc<PodInfo>> {
        self.lock().pods.get(uid).map(|e| e.pod.info.clone())
    }

    /// The pods nominated to `node`.
    pub fn nominated_for(&self, node: &str) -> Vec<Arc<PodInfo>> {
        self.lock().nominated.get(node).cloned().unwrap_or_default()
    }

    /// Whether any pod is nominated anywhere (the cycle skips the what-if otherwise).
    pub fn has_nominated(&self) -> bool {
        !self.lock().nominated.is_empty()
    }

    pub fn pending(&self) -> Pending {
        let inner = self.lock();
        let count = |place| inner.counts.get(&place).copied().unwrap_or(0);
        Pending {
            active: count(Place::Active),
            backoff: count(Place::Backoff),
            unschedulable: count(Place::Unschedulable),
            gated: count(Place::Gated),
        }
    }

    /// Ends `pop`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_waiters();
        self.ready.notify_one();
    }
}

/// Whether an update of a waiting pod may change where it fits (upstream ignores
/// status, resourceVersion, generation and managed-fields changes).
fn spec_or_labels_changed(old: &PodInfo, new: &PodInfo) -> bool {
    old.pod.spec != new.pod.spec
        || old.pod.metadata.labels != new.pod.metadata.labels
        || old.pod.metadata.annotations != new.pod.metadata.annotations
}

/// What changed in a pod update, as action bits.
pub fn pod_update_actions(old: &PodInfo, new: &PodInfo) -> u32 {
    let mut actions = 0;
    if old.pod.metadata.labels != new.pod.metadata.labels {
        actions |= action::UPDATE_POD_LABEL;
    }
    if old.tolerations() != new.tolerations() {
        actions |= action::UPDATE_POD_TOLERATION;
    }
    let gates = |p: &PodInfo| {
        p.pod.spec.as_ref().and_then(|s| s.scheduling_gates.as_ref()).is_some_and(|g| !g.is_empty())
    };
    if gates(old) && !gates(new) {
        actions |= action::UPDATE_POD_GATES_ELIMINATED;
    }
    let r = (&old.requests.requests, &new.requests.requests);
    if r.1.milli_cpu < r.0.milli_cpu || r.1.memory < r.0.memory {
        actions |= action::UPDATE_POD_SCALE_DOWN;
    }
    if actions == 0 { action::UPDATE } else { actions }
}

#[cfg(test)]
mod tests {
    use keelson_api::k8s_openapi::api::core::v1::{Pod, PodSpec};

    use super::*;
    use crate::framework::{Code, Plugin, Point};

    /// A plugin that gates pods labelled `gated` and registers for node additions.
    struct Probe;

    impl Plugin for Probe {
        fn name(&self) -> &'static str {
            "Probe"
        }
        fn points(&self) -> &'static [Point] {
            &[Point::PreEnqueue, Point::Filter]
        }
        fn events(&self) -> &'static [ClusterEvent] {
            &[ClusterEvent { resource: EventResource::Node, actions: action::ADD }]
        }
        fn pre_enqueue(&self, pod: &PodInfo) -> Status {
            if pod.labels().is_some_and(|l| l.contains_key("gated")) {
                Status::new(Code::UnschedulableAndUnresolvable, "gated")
            } else {
                Status::success()
            }
        }
    }

    struct Handle;

    impl crate::framework::Handle for Handle {
        fn namespace_labels(&self, _: &str) -> Option<std::collections::BTreeMap<String, String>> {
            None
        }
        fn select_node_for_claim(
            &self,
            _: &str,
            _: &str,
            _: &str,
        ) -> crate::framework::futures::BoxFuture<'static, Result<(), String>> {
            Box::pin(async { Ok(()) })
        }
        fn lister(&self) -> &dyn crate::plugins::Lister {
            unreachable!("the queue reads no cluster state")
        }
    }

    fn queue() -> SchedulingQueue {
        let plugin: Arc<dyn Plugin> = Arc::new(Probe);
        let enabled = crate::framework::Enabled { plugin, weight: 1 };
        let framework = Framework {
            scheduler_name: crate::DEFAULT_SCHEDULER_NAME.into(),
            percentage_of_nodes_to_score: None,
            points: [(Point::PreEnqueue, vec![enabled.clone()]), (Point::Filter, vec![enabled])]
                .into(),
            handle: Arc::new(Handle),
        };
        let profiles =
            Arc::new([(crate::DEFAULT_SCHEDULER_NAME.to_owned(), Arc::new(framework))].into());
        SchedulingQueue::new(QueueConfig::default(), profiles)
    }

    fn pod(name: &str, priority: i32, labels: &[&str]) -> Arc<PodInfo> {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("default".into());
        p.metadata.uid = Some(name.into());
        p.metadata.labels = Some(labels.iter().map(|l| (l.to_string(), String::new())).collect());
        p.spec = Some(PodSpec { priority: Some(priority), ..Default::default() });
        Arc::new(PodInfo::new(Arc::new(p)))
    }

    async fn next(q: &SchedulingQueue) -> Option<String> {
        tokio::time::timeout(Duration::from_millis(1), q.pop())
            .await
            .ok()
            .flatten()
            .map(|p| p.info.name.clone())
    }

    #[tokio::test(start_paused = true)]
    async fn higher_priority_first_then_first_come() {
        let q = queue();
        q.add(pod("low", 1, &[]));
        tokio::time::advance(Duration::from_millis(1)).await;
        q.add(pod("high", 10, &[]));
        tokio::time::advance(Duration::from_millis(1)).await;
        q.add(pod("low-later", 1, &[]));
        assert_eq!(next(&q).await.as_deref(), Some("high"));
        assert_eq!(next(&q).await.as_deref(), Some("low"));
        assert_eq!(next(&q).await.as_deref(), Some("low-later"));
        assert_eq!(next(&q).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejected_pod_waits_for_a_relevant_event_then_its_backoff() {
        let q = queue();
        q.add(pod("p", 0, &[]));
        let popped = q.pop().await.expect("pod");
        q.requeue(popped, HashSet::from(["Probe"]));
        assert_eq!(q.pending(), Pending { unschedulable: 1, ..Pending::default() });
        // An event the plugin did not register for changes nothing.
        q.on_event(ClusterEvent::new(EventResource::AssignedPod, action::DELETE), None, None);
        assert_eq!(q.pending().unschedulable, 1);
        // A node added: back, through backoff (1 s after the first attempt).
        q.on_event(ClusterEvent::new(EventResource::Node, action::ADD), None, None);
        assert_eq!(q.pending(), Pending { backoff: 1, ..Pending::default() });
        assert_eq!(next(&q).await, None);
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert_eq!(next(&q).await.as_deref(), Some("p"));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_to_ten_seconds() {
        let q = queue();
        assert_eq!(
            (1..=6).map(|a| q.backoff_of(a).as_secs()).collect::<Vec<_>>(),
            [1, 2, 4, 8, 10, 10]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_during_the_cycle_requeues_instead_of_parking() {
        let q = queue();
        q.add(pod("p", 0, &[]));
        let popped = q.pop().await.expect("pod");
        // While the pod is being scheduled, a node appears.
        q.on_event(ClusterEvent::new(EventResource::Node, action::ADD), None, None);
        q.requeue(popped, HashSet::from(["Probe"]));
        assert_eq!(q.pending(), Pending { backoff: 1, ..Pending::default() });
    }

    #[tokio::test(start_paused = true)]
    async fn parked_pods_return_after_five_minutes() {
        let q = queue();
        q.add(pod("p", 0, &[]));
        let popped = q.pop().await.expect("pod");
        q.requeue(popped, HashSet::from(["Probe"]));
        tokio::time::advance(Duration::from_secs(299)).await;
        q.flush_unschedulable();
        assert_eq!(q.pending().unschedulable, 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        q.flush_unschedulable();
        assert_eq!(q.pending().active, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn gated_pods_wait_for_their_own_update_and_deleted_pods_go() {
        let q = queue();
        q.add(pod("g", 0, &["gated"]));
        assert_eq!(q.pending(), Pending { gated: 1, ..Pending::default() });
        assert_eq!(next(&q).await, None);
        q.update(pod("g", 0, &[]));
        assert_eq!(next(&q).await.as_deref(), Some("g"));
        q.add(pod("d", 0, &[]));
        q.delete("d");
        assert_eq!(next(&q).await, None);
        // A pod in flight that fails with an error goes to backoff.
        q.add(pod("e", 0, &[]));
        let popped = q.pop().await.expect("pod");
        q.requeue(popped, HashSet::new());
        assert_eq!(q.pending().backoff, 1);
    }
}

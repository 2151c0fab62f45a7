//! One pod at a time (upstream's `scheduleOne`): the scheduling cycle — snapshot,
//! PreFilter, Filter over enough nodes (in parallel, from where the last search
//! stopped), Score, pick the best (ties at random), assume, Reserve, Permit — then the
//! binding cycle in its own task (PreBind, Bind, and the `Scheduled` event), so the next
//! pod is scheduled while this one binds. A pod that fits nowhere goes to PostFilter
//! (preemption), gets a `FailedScheduling` event and a `PodScheduled=False` condition
//! worded as upstream's, and back to the queue.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::cache::{Cache, Snapshot};
use crate::framework::{Code, CycleState, Framework, NodeScore, Point, PostFilterContext, Status};
use crate::metrics::SchedulerMetrics;
use crate::queue::{QueuedPod, SchedulingQueue};
use crate::types::{NodeInfo, PodInfo};

/// Upstream's `minFeasibleNodesToFind` and `minFeasibleNodesPercentageToFind`.
const MIN_FEASIBLE_NODES: usize = 100;
const MIN_FEASIBLE_PERCENTAGE: usize = 5;

/// Upstream's `ErrNoNodesAvailable`.
const NO_NODES: &str = "no nodes available to schedule pods";

/// The rejector of a pod no node could be offered to: any event may help it.
pub const ANY_EVENT: &str = "*";

/// How many feasible nodes to find before scoring (`numFeasibleNodesToFind`):
/// every node in small clusters, else a percentage — adaptive when unset: 50% minus one
/// per 125 nodes, at least 5% — and never fewer than 100.
pub fn nodes_to_find(percentage: Option<i32>, all: usize) -> usize {
    if all < MIN_FEASIBLE_NODES {
        return all;
    }
    let mut pct = percentage.unwrap_or(0).max(0) as usize;
    if pct == 0 {
        pct = 50usize.saturating_sub(all / 125).max(MIN_FEASIBLE_PERCENTAGE);
    }
    if pct >= 100 {
        return all;
    }
    (all * pct / 100).max(MIN_FEASIBLE_NODES)
}

/// Nodes that fit (with their place in the search) and why the others did not.
type Found = (Vec<(usize, Arc<NodeInfo>)>, HashMap<String, Status>);

/// Why a pod fits nowhere (upstream's `FitError`).
#[derive(Debug, Default)]
pub struct FitError {
    pub all_nodes: usize,
    pub statuses: HashMap<String, Status>,
    pub pre_filter_msg: String,
    pub post_filter_msg: String,
    /// Why the nodes without a status in `statuses` fit neither (upstream's
    /// `SetAbsentNodesStatus`).
    pub absent: Option<Status>,
    /// The plugins that rejected the pod.
    pub rejected_by: HashSet<&'static str>,
}

impl FitError {
    /// `0/5 nodes are available: 3 Insufficient cpu, 2 node(s) were unschedulable.
    /// preemption: …` — as upstream words it.
    pub fn message(&self) -> String {
        if self.all_nodes == 0 {
            return NO_NODES.to_owned();
        }
        let mut msg = format!("0/{} nodes are available:", self.all_nodes);
        if !self.pre_filter_msg.is_empty() {
            msg.push_str(&format!(" {}.", self.pre_filter_msg));
        } else {
            let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
            for status in self.statuses.values() {
                for r in &status.reasons {
                    *reasons.entry(r.as_str()).or_default() += 1;
                }
            }
            let absent = self.all_nodes.saturating_sub(self.statuses.len());
            if let Some(status) = self.absent.as_ref().filter(|_| absent > 0) {
                for r in &status.reasons {
                    *reasons.entry(r.as_str()).or_default() += absent;
                }
            }
            let mut list: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
            list.sort();
            if !list.is_empty() {
                msg.push_str(&format!(" {}.", list.join(", ")));
            }
        }
        if !self.post_filter_msg.is_empty() {
            msg.push_str(&format!(" {}", self.post_filter_msg));
        }
        msg
    }
}

pub enum Outcome {
    Fit(String),
    NoFit(FitError),
    Error(Status),
}

/// What a scheduling failure tells the user and the cluster.
pub struct Failure {
    /// `Unschedulable` or `SchedulerError`.
    pub reason: &'static str,
    pub message: String,
    /// `Some(node)` sets `status.nominatedNodeName` (`Some("")` clears it).
    pub nominated: Option<String>,
}

/// Writes what the scheduler decided: bindings, failures, events.
pub trait Reporter: Send + Sync {
    fn bind(
        &self,
        pod: &PodInfo,
        node: &str,
    ) -> crate::framework::futures::BoxFuture<'static, Result<(), String>>;
    fn scheduled(&self, pod: &PodInfo, node: &str);
    fn failed(&self, pod: &PodInfo, failure: Failure);
    fn evict(&self, victim: &PodInfo, preemptor: &PodInfo, node: &str);
}

pub struct Scheduler {
    pub cache: Mutex<Cache>,
    pub queue: Arc<SchedulingQueue>,
    pub profiles: Arc<HashMap<String, Arc<Framework>>>,
    snapshot: Mutex<Snapshot>,
    next_start: AtomicUsize,
    parallelism: usize,
    reporter: Arc<dyn Reporter>,
    pub metrics: SchedulerMetrics,
}

impl Scheduler {
    pub fn new(
        cache: Cache,
        queue: Arc<SchedulingQueue>,
        profiles: Arc<HashMap<String, Arc<Framework>>>,
        parallelism: usize,
        reporter: Arc<dyn Reporter>,
        metrics: SchedulerMetrics,
    ) -> Self {
        Scheduler {
            cache: Mutex::new(cache),
            queue,
            profiles,
            snapshot: Mutex::new(Snapshot::default()),
            next_start: AtomicUsize::new(0),
            parallelism: parallelism.max(1),
            reporter,
            metrics,
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Schedules pods until the queue closes.
    pub async fn run(self: Arc<Self>) {
        while let Some(pod) = self.queue.pop().await {
            self.schedule_one(pod).await;
        }
    }

    /// One scheduling cycle, and the binding cycle spawned.
    pub async fn schedule_one(self: &Arc<Self>, queued: QueuedPod) {
        let pod = queued.info.clone();
        let Some(fw) = self.profiles.get(pod.scheduler_name()).cloned() else {
            self.queue.done(&pod.uid);
            return;
        };
        if pod.pod.metadata.deletion_timestamp.is_some() || self.lock_cache().is_assumed(&pod.uid) {
            self.queue.done(&pod.uid);
            return;
        }
        let start = Instant::now();
        let mut state = CycleState::default();
        // The snapshot is this loop's alone: held through the cycle's synchronous part
        // (PostFilter included), never copied.
        let mut nominated = None;
        let outcome = {
            let mut snapshot = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
            self.lock_cache().update_snapshot(&mut snapshot);
            let mut outcome = self.schedule_pod(&fw, &mut state, &pod, &snapshot);
            if let Outcome::NoFit(fit) = &mut outcome {
                nominated = self.post_filter(&fw, &state, &pod, &snapshot, fit);
            }
            outcome
        };
        match outcome {
            Outcome::Fit(node) => self.assume_and_bind(fw, state, queued, node, start).await,
            Outcome::NoFit(fit) => {
                self.metrics.attempt(&fw.scheduler_name, "unschedulable", start.elapsed());
                let message = fit.message();
                tracing::debug!(pod = %pod.key(), %message, "unable to schedule pod");
                self.reporter.failed(&pod, Failure { reason: "Unschedulable", message, nominated });
                self.queue.requeue(queued, fit.rejected_by);
            }
            Outcome::Error(status) => {
                self.metrics.attempt(&fw.scheduler_name, "error", start.elapsed());
                let message = status.message();
                tracing::warn!(pod = %pod.key(), %message, "error scheduling pod");
                self.reporter
                    .failed(&pod, Failure { reason: "SchedulerError", message, nominated: None });
                self.queue.requeue(queued, HashSet::new());
            }
        }
        self.metrics.pending(self.queue.pending());
    }

    /// PostFilter (preemption) for a pod that fits nowhere: victims deleted, the pod
    /// nominated; returns the nomination to write (`Some("")` clears one).
    fn post_filter(
        &self,
        fw: &Framework,
        state: &CycleState,
        pod: &Arc<PodInfo>,
        snapshot: &Snapshot,
        fit: &mut FitError,
    ) -> Option<String> {
        if fit.all_nodes == 0 || fw.at(Point::PostFilter).is_empty() {
            return None;
        }
        let queue = self.queue.clone();
        let nominated_for = move |node: &str| queue.nominated_for(node);
        let ctx = PostFilterContext {
            state,
            pod,
            snapshot,
            statuses: &fit.statuses,
            framework: fw,
            nominated_for: &nominated_for,
        };
        let mut nominated = None;
        for e in fw.at(Point::PostFilter) {
            let outcome = e.plugin.post_filter(&ctx);
            fit.post_filter_msg = outcome.status.message();
            if let Some(node) = outcome.nominated.as_deref().filter(|n| !n.is_empty()) {
                for victim in &outcome.victims {
                    self.reporter.evict(victim, pod, node);
                }
                self.queue.nominate(pod.clone(), Some(node));
            }
            nominated = outcome.nominated;
            if outcome.status.is_success() {
                break;
            }
        }
        nominated
    }

    /// The scheduling algorithm (`schedulePod`): the node for `pod`, or why none.
    pub fn schedule_pod(
        &self,
        fw: &Framework,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> Outcome {
        let all = snapshot.nodes.len();
        if all == 0 {
            return Outcome::NoFit(FitError {
                all_nodes: 0,
                pre_filter_msg: NO_NODES.into(),
                rejected_by: HashSet::from([ANY_EVENT]),
                ..FitError::default()
            });
        }
        let (result, status) = fw.run_pre_filter(state, pod, snapshot);
        if status.code == Code::Error {
            return Outcome::Error(status);
        }
        if !status.is_success() {
            let statuses =
                snapshot.nodes.iter().map(|n| (n.name.clone(), status.clone())).collect();
            return Outcome::NoFit(FitError {
                all_nodes: all,
                pre_filter_msg: status.message(),
                rejected_by: HashSet::from([status.plugin]),
                statuses,
                ..FitError::default()
            });
        }
        let has_nominated = self.queue.has_nominated();
        // The node the pod was nominated to (after preemption) is tried first.
        if let Some(node) = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .and_then(|n| snapshot.get(n))
        {
            let status = self.filter_one(fw, state, pod, node, has_nominated);
            if status.is_success() {
                return Outcome::Fit(node.name.clone());
            }
        }
        let narrowed: Vec<Arc<NodeInfo>>;
        let candidates: &[Arc<NodeInfo>] = match result.and_then(|r| r.node_names) {
            Some(names) => {
                narrowed =
                    snapshot.nodes.iter().filter(|n| names.contains(&n.name)).cloned().collect();
                &narrowed
            }
            None => &snapshot.nodes,
        };
        let (feasible, statuses) = self.find_feasible(fw, state, pod, candidates, has_nominated);
        let mut statuses = statuses;
        // Nodes PreFilter left out are rejected by it.
        if candidates.len() < all {
            let names: HashSet<&str> = candidates.iter().map(|n| n.name.as_str()).collect();
            for n in &snapshot.nodes {
                if !names.contains(n.name.as_str()) {
                    statuses.insert(
                        n.name.clone(),
                        Status::unresolvable("node(s) didn't satisfy plugin(s) [PreFilter]"),
                    );
                }
            }
        }
        if let Some(error) = statuses.values().find(|s| s.code == Code::Error) {
            return Outcome::Error(error.clone());
        }
        if feasible.is_empty() {
            let rejected_by =
                statuses.values().map(|s| s.plugin).filter(|p| !p.is_empty()).collect();
            return Outcome::NoFit(FitError {
                all_nodes: all,
                statuses,
                rejected_by,
                ..FitError::default()
            });
        }
        if feasible.len() == 1 {
            return Outcome::Fit(feasible[0].name.clone());
        }
        match fw.run_score(state, pod, &feasible, snapshot) {
            Ok(scores) => Outcome::Fit(select_host(&scores)),
            Err(status) => Outcome::Error(status),
        }
    }

    fn filter_one(
        &self,
        fw: &Framework,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        has_nominated: bool,
    ) -> Status {
        if has_nominated {
            let nominated = self.queue.nominated_for(&node.name);
            fw.run_filter_with_nominated(state, pod, node, &nominated)
        } else {
            fw.run_filter(state, pod, node)
        }
    }

    /// Filter from where the last search stopped until enough nodes fit.
    fn find_feasible(
        &self,
        fw: &Framework,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        has_nominated: bool,
    ) -> (Vec<Arc<NodeInfo>>, HashMap<String, Status>) {
        let total = nodes.len();
        let wanted = nodes_to_find(fw.percentage_of_nodes_to_score, total);
        let start = self.next_start.load(Ordering::Relaxed) % total.max(1);
        let found = AtomicUsize::new(0);
        let next = AtomicUsize::new(0);
        let results: Mutex<Found> = Mutex::default();
        let work = || {
            let mut local_fit = Vec::new();
            let mut local_rejected = HashMap::new();
            loop {
                if found.load(Ordering::Relaxed) >= wanted {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let node = &nodes[(start + i) % total];
                let status = self.filter_one(fw, state, pod, node, has_nominated);
                if status.is_success() {
                    if found.fetch_add(1, Ordering::Relaxed) < wanted {
                        local_fit.push((i, node.clone()));
                    }
                } else {
                    local_rejected.insert(node.name.clone(), status);
                }
            }
            let mut r = results.lock().unwrap_or_else(|e| e.into_inner());
            r.0.extend(local_fit);
            r.1.extend(local_rejected);
        };
        let workers = if total >= 256 {
            self.parallelism.min(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
        } else {
            1
        };
        if workers <= 1 {
            work();
        } else {
            std::thread::scope(|s| {
                for _ in 1..workers {
                    s.spawn(work);
                }
                work();
            });
        }
        let (mut fit, statuses) = results.into_inner().unwrap_or_else(|e| e.into_inner());
        fit.sort_by_key(|(i, _)| *i);
        let processed = next.load(Ordering::Relaxed).min(total);
        self.next_start.store((start + processed) % total.max(1), Ordering::Relaxed);
        (fit.into_iter().map(|(_, n)| n).collect(), statuses)
    }

    async fn assume_and_bind(
        self: &Arc<Self>,
        fw: Arc<Framework>,
        mut state: CycleState,
        queued: QueuedPod,
        node: String,
        start: Instant,
    ) {
        let pod = queued.info.clone();
        self.lock_cache().assume(pod.clone(), &node);
        let mut status = fw.run_reserve(&mut state, &pod, &node);
        if status.is_success() {
            status = fw.run_permit(&mut state, &pod, &node);
        }
        if !status.is_success() {
            fw.run_unreserve(&mut state, &pod, &node);
            self.lock_cache().forget(&pod.uid);
            self.metrics.attempt(&fw.scheduler_name, "error", start.elapsed());
            let rejected =
                if status.is_rejected() { HashSet::from([status.plugin]) } else { HashSet::new() };
            self.reporter.failed(
                &pod,
                Failure { reason: reason_of(&status), message: status.message(), nominated: None },
            );
            self.queue.requeue(queued, rejected);
            return;
        }
        // The nomination, if any, is fulfilled.
        self.queue.nominate(pod.clone(), None);
        self.metrics.attempt(&fw.scheduler_name, "scheduled", start.elapsed());
        let this = self.clone();
        tokio::spawn(async move {
            let mut status = fw.run_pre_bind(&state, &pod, &node).await;
            if status.is_success() {
                status = match this.reporter.bind(&pod, &node).await {
                    Ok(()) => Status::success(),
                    Err(e) => Status::error(format!("binding rejected: {e}")),
                };
            }
            if status.is_success() {
                this.reporter.scheduled(&pod, &node);
                this.metrics.scheduled(queued.attempts, queued.first_seen.elapsed());
                this.queue.done(&pod.uid);
                return;
            }
            fw.run_unreserve(&mut state, &pod, &node);
            this.lock_cache().forget(&pod.uid);
            this.reporter.failed(
                &pod,
                Failure { reason: "SchedulerError", message: status.message(), nominated: None },
            );
            this.queue.requeue(queued, HashSet::new());
            // Its reservation is gone: pods parked for want of room may fit now.
            this.queue.move_all();
        });
    }
}

fn reason_of(status: &Status) -> &'static str {
    if status.is_rejected() { "Unschedulable" } else { "SchedulerError" }
}

/// The highest score; ties broken at random (reservoir sampling, as upstream).
pub fn select_host(scores: &[NodeScore<'_>]) -> String {
    let mut best: Option<&NodeScore<'_>> = None;
    let mut ties = 0u32;
    for s in scores {
        match best {
            Some(b) if s.score < b.score => {}
            Some(b) if s.score == b.score => {
                ties += 1;
                if fastrand::u32(..ties) == 0 {
                    best = Some(s);
                }
            }
            _ => {
                best = Some(s);
                ties = 1;
            }
        }
    }
    best.map(|s| s.name.to_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_size_follows_upstream() {
        assert_eq!(nodes_to_find(None, 50), 50);
        assert_eq!(nodes_to_find(None, 1000), 420);
        assert_eq!(nodes_to_find(None, 5000), 500);
        assert_eq!(nodes_to_find(None, 6000), 300);
        assert_eq!(nodes_to_find(Some(1), 5000), 100);
        assert_eq!(nodes_to_find(Some(100), 5000), 5000);
    }

    #[test]
    fn fit_errors_read_as_upstreams() {
        let mut statuses = HashMap::new();
        for (node, reason) in [
            ("a", "Insufficient cpu"),
            ("b", "Insufficient cpu"),
            ("c", "node(s) were unschedulable"),
        ] {
            statuses.insert(node.to_owned(), Status::unschedulable(reason));
        }
        let fit = FitError {
            all_nodes: 3,
            statuses,
            post_filter_msg:
                "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
                    .into(),
            ..FitError::default()
        };
        assert_eq!(
            fit.message(),
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn ties_are_broken_among_the_best_only() {
        let scores: Vec<NodeScore> = [("a", 5), ("b", 9), ("c", 9), ("d", 1)]
            .into_iter()
            .map(|(n, s)| NodeScore { name: n, score: s })
            .collect();
        let mut seen = HashSet::new();
        for _ in 0..200 {
            seen.insert(select_host(&scores));
        }
        assert_eq!(seen, HashSet::from(["b".to_owned(), "c".to_owned()]));
    }
}

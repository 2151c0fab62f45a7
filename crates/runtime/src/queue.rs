//! The work queue every controller drains (client-go's `workqueue`): keys, not objects,
//! so a burst of changes to one object is one reconcile of its current state.
//!
//! - **Dedup:** a key added while it waits is added once; a key added while a worker
//!   holds it waits until that worker calls [`WorkQueue::done`], then runs again — two
//!   workers never hold the same key.
//! - **Delays:** [`WorkQueue::add_after`] keeps the earliest time asked for a key.
//! - **Rate limits:** [`WorkQueue::add_rate_limited`] waits as upstream's default
//!   controller limiter does — the longer of a per-key exponential backoff (5 ms
//!   doubling to 1000 s, reset by [`WorkQueue::forget`]) and an overall token bucket
//!   (10 per second, bursts of 100).
//!
//! Must never hand one key to two workers at once, and never lose a key added before
//! [`WorkQueue::shut_down`].

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::QueueMetrics;

/// How long a key waits after its `n`th failure, and for how many keys at once.
#[derive(Clone, Debug)]
pub struct RateLimit {
    /// The first retry's delay; each further failure doubles it.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// The overall bucket: tokens per second and its size.
    pub qps: f64,
    pub burst: u32,
}

impl Default for RateLimit {
    /// Upstream's `DefaultControllerRateLimiter`.
    fn default() -> Self {
        RateLimit {
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_secs(1000),
            qps: 10.0,
            burst: 100,
        }
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

struct State<K> {
    queue: VecDeque<K>,
    /// Keys waiting to be processed (in `queue`, or to be put back there by `done`).
    dirty: HashSet<K>,
    processing: HashSet<K>,
    /// Delayed keys: the earliest time each is due, and the same ordered by time.
    waiting: HashMap<K, (Instant, u64)>,
    due: BTreeSet<(Instant, u64)>,
    due_keys: HashMap<u64, K>,
    next_seq: u64,
    failures: HashMap<K, u32>,
    bucket: Bucket,
    /// When each queued key was added, for the queue-latency metric.
    added_at: HashMap<K, Instant>,
    started_at: HashMap<K, Instant>,
    shutting_down: bool,
}

/// A rate-limited, deduplicating, delaying work queue, cheap to clone.
pub struct WorkQueue<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue { inner: self.inner.clone() }
    }
}

struct Inner<K> {
    state: Mutex<State<K>>,
    ready: Notify,
    limit: RateLimit,
    metrics: Option<QueueMetrics>,
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    pub fn new(limit: RateLimit) -> Self {
        Self::build(limit, None)
    }

    /// A queue that reports its depth, adds, retries and latencies under `name`.
    pub fn with_metrics(limit: RateLimit, metrics: QueueMetrics) -> Self {
        Self::build(limit, Some(metrics))
    }

    fn build(limit: RateLimit, metrics: Option<QueueMetrics>) -> Self {
        let burst = f64::from(limit.burst);
        WorkQueue {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    waiting: HashMap::new(),
                    due: BTreeSet::new(),
                    due_keys: HashMap::new(),
                    next_seq: 0,
                    failures: HashMap::new(),
                    bucket: Bucket { tokens: burst, last: Instant::now() },
                    added_at: HashMap::new(),
                    started_at: HashMap::new(),
                    shutting_down: false,
                }),
                ready: Notify::new(),
                limit,
                metrics,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<K>> {
        // A panic while holding the lock leaves the sets consistent (each change is one
        // insert or remove), so a poisoned lock is still usable.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `key` now, unless it already waits.
    pub fn add(&self, key: K) {
        let mut state = self.state();
        if self.insert(&mut state, key) {
            drop(state);
            self.inner.ready.notify_one();
        }
    }

    /// Returns whether a worker should be woken.
    fn insert(&self, state: &mut State<K>, key: K) -> bool {
        if state.shutting_down || state.dirty.contains(&key) {
            return false;
        }
        if let Some(m) = &self.inner.metrics {
            m.adds.inc();
        }
        state.dirty.insert(key.clone());
        state.added_at.insert(key.clone(), Instant::now());
        if state.processing.contains(&key) {
            return false;
        }
        state.queue.push_back(key);
        self.report_depth(state);
        true
    }

    fn report_depth(&self, state: &State<K>) {
        if let Some(m) = &self.inner.metrics {
            m.depth.set(state.queue.len() as i64);
        }
    }

    /// Queues `key` after `delay`; a key already due sooner keeps its time.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let at = Instant::now() + delay;
        let mut state = self.state();
        if state.shutting_down {
            return;
        }
        if let Some(&(current, seq)) = state.waiting.get(&key) {
            if current <= at {
                return;
            }
            state.due.remove(&(current, seq));
            state.due_keys.remove(&seq);
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        state.waiting.insert(key.clone(), (at, seq));
        state.due.insert((at, seq));
        state.due_keys.insert(seq, key);
        drop(state);
        // A worker sleeping until a later time must look again.
        self.inner.ready.notify_one();
    }

    /// Queues `key` after its rate-limited delay (a failed reconcile's retry).
    pub fn add_rate_limited(&self, key: K) {
        let delay = {
            let mut state = self.state();
            let failures = state.failures.entry(key.clone()).or_insert(0);
            let exponent = (*failures).min(62);
            *failures = failures.saturating_add(1);
            let backoff = self
                .inner
                .limit
                .base_delay
                .checked_mul(1u32.checked_shl(exponent.min(31)).unwrap_or(u32::MAX))
                .unwrap_or(self.inner.limit.max_delay)
                .min(self.inner.limit.max_delay);
            let bucket = self.take_token(&mut state);
            backoff.max(bucket)
        };
        if let Some(m) = &self.inner.metrics {
            m.retries.inc();
        }
        self.add_after(key, delay);
    }

    /// Takes a token from the overall bucket; returns how long until it is there.
    fn take_token(&self, state: &mut State<K>) -> Duration {
        let limit = &self.inner.limit;
        if limit.qps <= 0.0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(state.bucket.last).as_secs_f64();
        state.bucket.last = now;
        state.bucket.tokens =
            (state.bucket.tokens + elapsed * limit.qps).min(f64::from(limit.burst));
        state.bucket.tokens -= 1.0;
        if state.bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-state.bucket.tokens / limit.qps)
        }
    }

    /// Forgets `key`'s failures: its next rate-limited add waits the base delay.
    pub fn forget(&self, key: &K) {
        self.state().failures.remove(key);
    }

    /// How many rate-limited adds `key` has had since it was last forgotten.
    pub fn num_requeues(&self, key: &K) -> u32 {
        self.state().failures.get(key).copied().unwrap_or(0)
    }

    /// The next key to work on; `None` once the queue is shut down and drained.
    /// The caller must call [`WorkQueue::done`] with it.
    pub async fn get(&self) -> Option<K> {
        loop {
            // Registered before looking, so an add between the look and the wait wakes it.
            let notified = self.inner.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_due = {
                let mut state = self.state();
                self.promote_due(&mut state);
                if let Some(key) = state.queue.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    let now = Instant::now();
                    if let (Some(m), Some(added)) =
                        (&self.inner.metrics, state.added_at.remove(&key))
                    {
                        m.queue_duration
                            .observe(now.saturating_duration_since(added).as_secs_f64());
                    }
                    state.started_at.insert(key.clone(), now);
                    self.report_depth(&state);
                    let more = !state.queue.is_empty();
                    drop(state);
                    if more {
                        // Pass the wake-up on: one notify may stand for several adds.
                        self.inner.ready.notify_one();
                    }
                    return Some(key);
                }
                if state.shutting_down {
                    drop(state);
                    self.inner.ready.notify_one();
                    return None;
                }
                state.due.first().map(|&(at, _)| at)
            };
            match next_due {
                Some(at) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Moves delayed keys whose time has come into the queue.
    fn promote_due(&self, state: &mut State<K>) {
        let now = Instant::now();
        while let Some(&(at, seq)) = state.due.first() {
            if at > now {
                break;
            }
            state.due.pop_first();
            if let Some(key) = state.due_keys.remove(&seq) {
                state.waiting.remove(&key);
                self.insert(state, key);
            }
        }
    }

    /// Marks `key` finished; if it was added again meanwhile, it is queued now.
    pub fn done(&self, key: &K) {
        let mut state = self.state();
        state.processing.remove(key);
        if let (Some(m), Some(started)) = (&self.inner.metrics, state.started_at.remove(key)) {
            m.work_duration
                .observe(Instant::now().saturating_duration_since(started).as_secs_f64());
        }
        if state.dirty.contains(key) {
            state.queue.push_back(key.clone());
            self.report_depth(&state);
            drop(state);
            self.inner.ready.notify_one();
        }
    }

    /// Keys queued now (not delayed, not being processed).
    pub fn len(&self) -> usize {
        self.state().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops taking keys; [`WorkQueue::get`] returns what is queued, then `None`.
    /// Delayed keys are dropped.
    pub fn shut_down(&self) {
        let mut state = self.state();
        state.shutting_down = true;
        state.due.clear();
        state.due_keys.clear();
        state.waiting.clear();
        drop(state);
        self.inner.ready.notify_waiters();
        self.inner.ready.notify_one();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.state().shutting_down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> WorkQueue<&'static str> {
        WorkQueue::new(RateLimit::default())
    }

    async fn next(q: &WorkQueue<&'static str>) -> Option<&'static str> {
        tokio::time::timeout(Duration::from_secs(3600), q.get()).await.ok().flatten()
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_added_twice_while_waiting_is_handed_out_once() {
        let q = queue();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(next(&q).await, Some("a"));
        assert_eq!(next(&q).await, Some("b"));
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_added_while_processed_runs_again_after_done_not_before() {
        let q = queue();
        q.add("a");
        let key = next(&q).await.unwrap();
        q.add("a");
        q.add("a");
        // A second worker must not get the key while the first holds it.
        assert!(tokio::time::timeout(Duration::from_secs(1), q.get()).await.is_err());
        q.done(&key);
        assert_eq!(next(&q).await, Some("a"));
        q.done(&"a");
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_retries_back_off_exponentially_until_forgotten() {
        let q = queue();
        let mut waits = Vec::new();
        for _ in 0..4 {
            let start = Instant::now();
            q.add_rate_limited("a");
            let key = next(&q).await.unwrap();
            waits.push(start.elapsed().as_millis());
            q.done(&key);
        }
        assert_eq!(waits, [5, 10, 20, 40]);
        assert_eq!(q.num_requeues(&"a"), 4);
        q.forget(&"a");
        let start = Instant::now();
        q.add_rate_limited("a");
        next(&q).await.unwrap();
        assert_eq!(start.elapsed().as_millis(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn the_backoff_stops_at_its_maximum() {
        let q =
            WorkQueue::new(RateLimit { max_delay: Duration::from_secs(1), ..RateLimit::default() });
        for _ in 0..40 {
            q.add_rate_limited("a");
            let key = next(&q).await.unwrap();
            q.done(&key);
        }
        let start = Instant::now();
        q.add_rate_limited("a");
        next(&q).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_overall_bucket_spaces_out_retries_of_many_keys() {
        let q: WorkQueue<u32> =
            WorkQueue::new(RateLimit { burst: 2, qps: 10.0, ..RateLimit::default() });
        let start = Instant::now();
        for key in 0..4 {
            q.add_rate_limited(key);
        }
        let mut at = Vec::new();
        for _ in 0..4 {
            let key =
                tokio::time::timeout(Duration::from_secs(60), q.get()).await.unwrap().unwrap();
            at.push((key, start.elapsed().as_millis()));
            q.done(&key);
        }
        // Two from the burst after the 5 ms backoff, then one per 100 ms.
        assert_eq!(at, [(0, 5), (1, 5), (2, 100), (3, 200)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_key_keeps_the_earliest_time_and_is_deduplicated() {
        let q = queue();
        let start = Instant::now();
        q.add_after("a", Duration::from_secs(10));
        q.add_after("a", Duration::from_secs(2));
        q.add_after("a", Duration::from_secs(5));
        assert_eq!(next(&q).await, Some("a"));
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        q.done(&"a");
        assert!(tokio::time::timeout(Duration::from_secs(60), q.get()).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_worker_wakes_for_an_add_from_another_task() {
        let q = queue();
        let worker = tokio::spawn({
            let q = q.clone();
            async move { q.get().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        q.add("a");
        assert_eq!(worker.await.unwrap(), Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn shut_down_hands_out_what_is_queued_then_ends_every_worker() {
        let q = queue();
        q.add("a");
        q.add_after("b", Duration::from_secs(1));
        let idle = tokio::spawn({
            let q = q.clone();
            async move {
                let first = q.get().await;
                (first, q.get().await)
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        q.shut_down();
        q.add("c");
        let (first, second) = idle.await.unwrap();
        assert_eq!(first, Some("a"));
        assert_eq!(second, None);
        assert!(q.is_shutting_down());
    }
}

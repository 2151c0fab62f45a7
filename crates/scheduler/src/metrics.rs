//! The scheduler's metrics under upstream's names: `scheduler_schedule_attempts_total`
//! (by `result` and `profile`), `scheduler_scheduling_attempt_duration_seconds`,
//! `scheduler_pod_scheduling_sli_duration_seconds` (by `attempts`) and
//! `scheduler_pending_pods` (by `queue`), on the component's registry.

use std::time::Duration;

use keelson_runtime::metrics::Metrics;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::queue::Pending;

type Labels = Vec<(&'static str, String)>;

#[derive(Clone)]
pub struct SchedulerMetrics {
    attempts: Family<Labels, Counter>,
    attempt_duration: Family<Labels, Histogram>,
    sli: Family<Labels, Histogram>,
    pending: Family<Labels, Gauge>,
}

impl SchedulerMetrics {
    /// The families, registered on `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        let m = SchedulerMetrics {
            attempts: Family::default(),
            // Upstream's buckets: 1 ms doubling, 15 of them; 10 ms doubling, 20.
            attempt_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 15))
            }),
            sli: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 2.0, 20))
            }),
            pending: Family::default(),
        };
        metrics.register(
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.",
            m.attempts.clone(),
        );
        metrics.register(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            m.attempt_duration.clone(),
        );
        metrics.register(
            "scheduler_pod_scheduling_sli_duration_seconds",
            "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue and might involve multiple scheduling attempts.",
            m.sli.clone(),
        );
        metrics.register(
            "scheduler_pending_pods",
            "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods that the scheduler attempted to schedule and failed; 'gated' is the number of unschedulable pods that the scheduler never attempted to schedule because they are gated.",
            m.pending.clone(),
        );
        m
    }

    pub fn attempt(&self, profile: &str, result: &str, took: Duration) {
        let labels: Labels = vec![("profile", profile.to_owned()), ("result", result.to_owned())];
        self.attempts.get_or_create(&labels).inc();
        let observed = took.as_secs_f64();
        self.attempt_duration.get_or_create(&labels).observe(observed);
    }

    pub fn scheduled(&self, attempts: u32, since_first_seen: Duration) {
        let labels: Labels = vec![("attempts", attempts.to_string())];
        self.sli.get_or_create(&labels).observe(since_first_seen.as_secs_f64());
    }

    pub fn pending(&self, p: Pending) {
        for (queue, n) in [
            ("active", p.active),
            ("backoff", p.backoff),
            ("unschedulable", p.unschedulable),
            ("gated", p.gated),
        ] {
            let labels: Labels = vec![("queue", queue.to_owned())];
            self.pending.get_or_create(&labels).set(n as i64);
        }
    }
}

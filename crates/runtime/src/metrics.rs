//! Metrics of a component's controllers under upstream's names, so dashboards made
//! for kube-controller-manager read them: client-go's work-queue metrics
//! (`workqueue_depth`, `workqueue_adds_total`, `workqueue_queue_duration_seconds`,
//! `workqueue_work_duration_seconds`, `workqueue_retries_total`, labelled `name`) and
//! controller-runtime's reconcile metrics (`controller_runtime_reconcile_total` by
//! `result`, `controller_runtime_reconcile_errors_total`,
//! `controller_runtime_reconcile_time_seconds`, labelled `controller`). Rendered in
//! Prometheus' text format by [`Metrics::render`] for a component's `/metrics`.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// One process's metrics registry; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Families>,
}

struct Families {
    registry: Mutex<Registry>,
    depth: Family<Labels, Gauge>,
    adds: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    queue_duration: Family<Labels, Histogram>,
    work_duration: Family<Labels, Histogram>,
    reconciles: Family<Labels, Counter>,
    reconcile_errors: Family<Labels, Counter>,
    reconcile_time: Family<Labels, Histogram>,
}

fn queue_buckets() -> Histogram {
    // Upstream's: 10 ns to 10 s, ×10.
    Histogram::new(exponential_buckets(1e-8, 10.0, 10))
}

fn reconcile_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        let families = Families {
            registry: Mutex::new(Registry::default()),
            depth: Family::default(),
            adds: Family::default(),
            retries: Family::default(),
            queue_duration: Family::new_with_constructor(queue_buckets),
            work_duration: Family::new_with_constructor(queue_buckets),
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_time: Family::new_with_constructor(reconcile_buckets),
        };
        {
            let mut r = families.registry.lock().unwrap_or_else(|e| e.into_inner());
            r.register("workqueue_depth", "Current depth of workqueue", families.depth.clone());
            r.register(
                "workqueue_adds",
                "Total number of adds handled by workqueue",
                families.adds.clone(),
            );
            r.register(
                "workqueue_retries",
                "Total number of retries handled by workqueue",
                families.retries.clone(),
            );
            r.register(
                "workqueue_queue_duration_seconds",
                "How long in seconds an item stays in workqueue before being requested",
                families.queue_duration.clone(),
            );
            r.register(
                "workqueue_work_duration_seconds",
                "How long in seconds processing an item from workqueue takes",
                families.work_duration.clone(),
            );
            r.register(
                "controller_runtime_reconcile",
                "Total number of reconciliations per controller",
                families.reconciles.clone(),
            );
            r.register(
                "controller_runtime_reconcile_errors",
                "Total number of reconciliation errors per controller",
                families.reconcile_errors.clone(),
            );
            r.register(
                "controller_runtime_reconcile_time_seconds",
                "Length of time per reconciliation per controller",
                families.reconcile_time.clone(),
            );
        }
        Metrics { inner: Arc::new(families) }
    }
}

impl Metrics {
    /// The handles of the work queue called `name`.
    pub fn queue(&self, name: &str) -> QueueMetrics {
        let labels: Labels = vec![("name", name.to_owned())];
        let f = &self.inner;
        // One statement each: a family's read guard lives to the end of its statement,
        // and the next `get_or_create` of the same family may need its write lock.
        let depth = f.depth.get_or_create(&labels).clone();
        let adds = f.adds.get_or_create(&labels).clone();
        let retries = f.retries.get_or_create(&labels).clone();
        let queue_duration = f.queue_duration.get_or_create(&labels).clone();
        let work_duration = f.work_duration.get_or_create(&labels).clone();
        QueueMetrics { depth, adds, retries, queue_duration, work_duration }
    }

    /// The handles of the controller called `name`.
    pub fn controller(&self, name: &str) -> ControllerMetrics {
        let f = &self.inner;
        let by =
            |result: &str| vec![("controller", name.to_owned()), ("result", result.to_owned())];
        let labels: Labels = vec![("controller", name.to_owned())];
        let success = f.reconciles.get_or_create(&by("success")).clone();
        let requeue = f.reconciles.get_or_create(&by("requeue_after")).clone();
        let error = f.reconciles.get_or_create(&by("error")).clone();
        let errors = f.reconcile_errors.get_or_create(&labels).clone();
        let time = f.reconcile_time.get_or_create(&labels).clone();
        ControllerMetrics { success, requeue, error, errors, time }
    }

    /// Every metric in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.inner.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

/// A work queue's metrics.
#[derive(Clone)]
pub struct QueueMetrics {
    pub depth: Gauge,
    pub adds: Counter,
    pub retries: Counter,
    pub queue_duration: Histogram,
    pub work_duration: Histogram,
}

/// A controller's reconcile metrics.
#[derive(Clone)]
pub struct ControllerMetrics {
    pub success: Counter,
    pub requeue: Counter,
    pub error: Counter,
    pub errors: Counter,
    pub time: Histogram,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_and_controller_metrics_render_under_upstream_names() {
        let metrics = Metrics::default();
        let q = metrics.queue("clusterrole-aggregation");
        q.adds.inc();
        q.depth.set(3);
        let c = metrics.controller("clusterrole-aggregation");
        c.error.inc();
        c.errors.inc();
        let text = metrics.render();
        assert!(
            text.contains("workqueue_adds_total{name=\"clusterrole-aggregation\"} 1"),
            "{text}"
        );
        assert!(text.contains("workqueue_depth{name=\"clusterrole-aggregation\"} 3"), "{text}");
        assert!(
            text.contains(
                "controller_runtime_reconcile_total{controller=\"clusterrole-aggregation\",result=\"error\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains(
            "controller_runtime_reconcile_errors_total{controller=\"clusterrole-aggregation\"} 1"
        ));
    }
}

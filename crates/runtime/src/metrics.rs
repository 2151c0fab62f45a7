//! Metrics of a component's controllers under upstream's names, so dashboards made
//! for kube-controller-manager read them: client-go's work-queue metrics
//! (`workqueue_depth`, `workqueue_adds_total`, `workqueue_queue_duration_seconds`,
//! `workqueue_work_duration_seconds`, `workqueue_retries_total`, labelled `name`) and
//! controller-runtime's reconcile metrics (`controller_runtime_reconcile_total` by
//! `result`, `controller_runtime_reconcile_errors_total`,
//! `controller_runtime_reconcile_time_seconds`, labelled `controller`), and the process's
//! own under client_golang's names (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, …, read from `/proc/self` at
//! each scrape). Rendered in the OpenMetrics text format by [`Metrics::render`] for a
//! component's `/metrics`.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
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
            r.register_collector(Box::new(Process));
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

    /// Registers a component's own metric (the scheduler's, say) to be rendered with
    /// the rest.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        let mut registry = self.inner.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry.register(name, help, metric);
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

/// The process's CPU time, memory, file descriptors and start time, from `/proc/self`
/// (client_golang's process collector); what cannot be read is left out.
#[derive(Debug)]
struct Process;

impl Process {
    /// Clock ticks a second and the page size: Linux's fixed values on the platforms
    /// Keelson runs on.
    const TICKS: f64 = 100.0;
    const PAGE: f64 = 4096.0;
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64| {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
        };
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n).and_then(|f| f.parse::<f64>().ok());
        // utime and stime are fields 14 and 15 of stat(5), vsize 23, rss 24: here, with
        // the pid and name gone, at 11, 12, 20 and 21; starttime (22) at 19.
        if let (Some(user), Some(system)) = (field(11), field(12)) {
            let cpu = ConstCounter::new((user + system) / Self::TICKS);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                cpu.metric_type(),
            )?)?;
        }
        if let Some(vsize) = field(20) {
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                vsize,
            )?;
        }
        if let Some(rss) = field(21) {
            let help = "Resident memory size in bytes.";
            gauge(&mut encoder, "process_resident_memory_bytes", help, rss * Self::PAGE)?;
        }
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())
        });
        if let (Some(boot), Some(start)) = (boot, field(19)) {
            let help = "Start time of the process since unix epoch in seconds.";
            gauge(&mut encoder, "process_start_time_seconds", help, boot + start / Self::TICKS)?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            let help = "Number of open file descriptors.";
            gauge(&mut encoder, "process_open_fds", help, fds.count() as f64)?;
        }
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let max_fds = limits.lines().find_map(|l| {
            l.strip_prefix("Max open files")?.split_whitespace().next()?.parse::<f64>().ok()
        });
        if let Some(max) = max_fds {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max,
            )?;
        }
        Ok(())
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
        for process in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(process), "{process} missing: {text}");
        }
    }
}

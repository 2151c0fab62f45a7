//! API Priority and Fairness metrics under upstream's names and labels
//! (`apiserver_flowcontrol_*`): requests rejected, dispatched, waiting and executing by
//! priority level and flow schema, how long they waited, and each level's seats.
//!
//! Label values are FlowSchema and PriorityLevelConfiguration names: objects only
//! cluster administrators create, as upstream labels them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{Buckets, Histograms};

/// Upstream's `apiserver_flowcontrol_request_wait_duration_seconds` buckets.
const WAIT_SECONDS: &[f64] =
    &[0.0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    pub priority_level: String,
    pub flow_schema: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    priority_level: String,
    flow_schema: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WaitLabels {
    priority_level: String,
    flow_schema: String,
    execute: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LevelLabels {
    priority_level: String,
}

#[derive(Clone)]
pub struct FlowControl {
    rejected: Family<RejectLabels, Counter>,
    dispatched: Family<FlowLabels, Counter>,
    in_queue: Family<FlowLabels, Gauge>,
    executing: Family<FlowLabels, Gauge>,
    executing_seats: Family<FlowLabels, Gauge>,
    waited: Histograms<WaitLabels>,
    nominal_limit: Family<LevelLabels, Gauge>,
    current_limit: Family<LevelLabels, Gauge>,
}

impl FlowControl {
    pub fn register(registry: &mut Registry) -> FlowControl {
        let families = FlowControl {
            rejected: Family::default(),
            dispatched: Family::default(),
            in_queue: Family::default(),
            executing: Family::default(),
            executing_seats: Family::default(),
            waited: Family::new_with_constructor(Buckets(WAIT_SECONDS)),
            nominal_limit: Family::default(),
            current_limit: Family::default(),
        };
        let r = registry;
        r.register(
            "apiserver_flowcontrol_rejected_requests",
            "Number of requests rejected by API Priority and Fairness subsystem",
            families.rejected.clone(),
        );
        r.register(
            "apiserver_flowcontrol_dispatched_requests",
            "Number of requests executed by API Priority and Fairness subsystem",
            families.dispatched.clone(),
        );
        r.register(
            "apiserver_flowcontrol_current_inqueue_requests",
            "Number of requests currently pending in queues of the API Priority and Fairness subsystem",
            families.in_queue.clone(),
        );
        r.register(
            "apiserver_flowcontrol_current_executing_requests",
            "Number of requests in initial (for a WATCH) or any (for a non-WATCH) execution stage in the API Priority and Fairness subsystem",
            families.executing.clone(),
        );
        r.register(
            "apiserver_flowcontrol_current_executing_seats",
            "Concurrency (number of seats) occupied by the currently executing (initial stage for a WATCH, any stage otherwise) requests in the API Priority and Fairness subsystem",
            families.executing_seats.clone(),
        );
        r.register(
            "apiserver_flowcontrol_request_wait_duration_seconds",
            "Length of time a request spent waiting in its queue",
            families.waited.clone(),
        );
        r.register(
            "apiserver_flowcontrol_nominal_limit_seats",
            "Nominal number of execution seats configured for each priority level",
            families.nominal_limit.clone(),
        );
        r.register(
            "apiserver_flowcontrol_current_limit_seats",
            "current derived number of execution seats available to each priority level",
            families.current_limit.clone(),
        );
        families
    }

    /// A level's seats: what its shares give it, and what it may use now.
    pub fn set_limits(&self, priority_level: &str, nominal: u32, current: u32) {
        let labels = LevelLabels { priority_level: priority_level.to_owned() };
        self.nominal_limit.get_or_create(&labels).set(i64::from(nominal));
        self.current_limit.get_or_create(&labels).set(i64::from(current));
    }

    pub fn rejected(&self, flow: &FlowLabels, reason: &'static str) {
        let FlowLabels { priority_level, flow_schema } = flow.clone();
        self.rejected.get_or_create(&RejectLabels { priority_level, flow_schema, reason }).inc();
    }

    /// A request waits in a queue; its gauge goes down when it leaves.
    pub fn queued(&self, flow: &FlowLabels) -> Gauge {
        let gauge = self.in_queue.get_or_create(flow).clone();
        gauge.inc();
        gauge
    }

    /// How long a request waited before it executed (or was refused).
    pub fn waited(&self, flow: &FlowLabels, execute: bool, seconds: f64) {
        let FlowLabels { priority_level, flow_schema } = flow.clone();
        self.waited
            .get_or_create(&WaitLabels { priority_level, flow_schema, execute })
            .observe(seconds);
    }

    /// A request starts executing on `seats` seats; the gauges go down when the returned
    /// value drops.
    pub fn executing(&self, flow: &FlowLabels, seats: u32) -> Executing {
        self.dispatched.get_or_create(flow).inc();
        let requests = self.executing.get_or_create(flow).clone();
        let occupied = self.executing_seats.get_or_create(flow).clone();
        requests.inc();
        occupied.inc_by(i64::from(seats));
        Executing { requests, seats: occupied, count: i64::from(seats) }
    }
}

/// One executing request, counted until dropped.
pub struct Executing {
    requests: Gauge,
    seats: Gauge,
    count: i64,
}

impl Drop for Executing {
    fn drop(&mut self) {
        self.requests.dec();
        self.seats.dec_by(self.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executing_requests_are_counted_until_they_end() {
        let mut registry = Registry::default();
        let metrics = FlowControl::register(&mut registry);
        let flow = FlowLabels {
            priority_level: "workload-low".into(),
            flow_schema: "service-accounts".into(),
        };
        let running = metrics.executing(&flow, 2);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(text.contains(
            "apiserver_flowcontrol_current_executing_seats{priority_level=\"workload-low\",flow_schema=\"service-accounts\"} 2"
        ), "{text}");
        assert!(text.contains("apiserver_flowcontrol_dispatched_requests_total{priority_level=\"workload-low\",flow_schema=\"service-accounts\"} 1"), "{text}");
        drop(running);
        metrics.rejected(&flow, "queue-full");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(text.contains(
            "apiserver_flowcontrol_current_executing_requests{priority_level=\"workload-low\",flow_schema=\"service-accounts\"} 0"
        ), "{text}");
        assert!(text.contains("reason=\"queue-full\"} 1"), "{text}");
    }
}

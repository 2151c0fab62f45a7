//! The API server's Prometheus metrics, under upstream's names and labels so that
//! dashboards and alerts made for kube-apiserver read them: requests
//! (`apiserver_request_total`, `apiserver_request_duration_seconds`,
//! `apiserver_current_inflight_requests`, `apiserver_longrunning_requests`:
//! [`request`]), watch events (`apiserver_watch_events_total`,
//! `apiserver_watch_events_sizes`), admission (`apiserver_admission_controller_admission_duration_seconds`,
//! `apiserver_admission_step_admission_duration_seconds`), the store
//! (`etcd_request_duration_seconds`, `apiserver_storage_objects`: [`store`]), API
//! Priority and Fairness (`apiserver_flowcontrol_*`: [`flowcontrol`]). Served at
//! `/metrics` to whoever RBAC lets `get` it (`system:monitoring`), in the OpenMetrics
//! text format through prometheus-client's encoder, as the other components' secure
//! ports serve theirs.
//!
//! Must never take a lock every request shares on the way to recording: counters and
//! histograms are atomics ([`histogram`]), found by their label set under a read lock;
//! and never create label sets from what a client chooses freely (paths, names) — only
//! from resolved resources and fixed lists.

pub mod flowcontrol;
pub mod histogram;
pub mod request;
pub mod store;

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use histogram::Histogram;
use request::{CodeLabel, DurationLabels, LongRunningLabels};
use store::{ObjectLabels, StoreLabels};

/// Builds histograms with one fixed set of buckets.
#[derive(Clone, Copy, Debug)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0)
    }
}

type Histograms<L> = Family<L, Histogram, Buckets>;

/// The server's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Families>,
}

struct Families {
    registry: Registry,
    requests: Family<(DurationLabels, CodeLabel), Counter>,
    durations: Histograms<DurationLabels>,
    long_running: Family<LongRunningLabels, Gauge>,
    inflight_read_only: Gauge,
    inflight_mutating: Gauge,
    watch_events: Family<WatchLabels, Counter>,
    watch_sizes: Histograms<WatchLabels>,
    admission_controller: Histograms<ControllerLabels>,
    admission_step: Histograms<StepLabels>,
    storage: Histograms<StoreLabels>,
    objects: Family<ObjectLabels, Gauge>,
    flowcontrol: flowcontrol::FlowControl,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatchLabels {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    name: &'static str,
    operation: &'static str,
    rejected: bool,
    r#type: &'static str,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    operation: &'static str,
    rejected: bool,
    r#type: &'static str,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestKind {
    request_kind: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let inflight = Family::<RequestKind, Gauge>::default();
        // Clones share the value: the fields are the family's two entries.
        let kind = |request_kind| inflight.get_or_create(&RequestKind { request_kind }).clone();
        let (inflight_read_only, inflight_mutating) = (kind("readOnly"), kind("mutating"));
        let mut registry = Registry::default();
        let flowcontrol = flowcontrol::FlowControl::register(&mut registry);
        let mut families = Families {
            registry,
            requests: Family::default(),
            durations: Family::new_with_constructor(Buckets(histogram::REQUEST_SECONDS)),
            long_running: Family::default(),
            inflight_read_only,
            inflight_mutating,
            watch_events: Family::default(),
            watch_sizes: Family::new_with_constructor(Buckets(histogram::WATCH_EVENT_BYTES)),
            admission_controller: Family::new_with_constructor(Buckets(
                histogram::ADMISSION_SECONDS,
            )),
            admission_step: Family::new_with_constructor(Buckets(histogram::ADMISSION_SECONDS)),
            storage: Family::new_with_constructor(Buckets(histogram::REQUEST_SECONDS)),
            objects: Family::default(),
            flowcontrol,
        };
        let r = &mut families.registry;
        r.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code",
            families.requests.clone(),
        );
        r.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component",
            families.durations.clone(),
        );
        r.register(
            "apiserver_current_inflight_requests",
            "Number of requests of each kind being served now, long-running ones aside",
            inflight,
        );
        r.register(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component",
            families.long_running.clone(),
        );
        r.register(
            "apiserver_watch_events",
            "Number of events sent in watch clients",
            families.watch_events.clone(),
        );
        r.register(
            "apiserver_watch_events_sizes",
            "Watch event size distribution in bytes",
            families.watch_sizes.clone(),
        );
        r.register(
            "apiserver_admission_controller_admission_duration_seconds",
            "Admission controller latency histogram in seconds, identified by name and broken out for each operation and API resource and type (validate or admit)",
            families.admission_controller.clone(),
        );
        r.register(
            "apiserver_admission_step_admission_duration_seconds",
            "Admission sub-step latency histogram in seconds, broken out for each operation and API resource and step type (validate or admit)",
            families.admission_step.clone(),
        );
        r.register(
            "etcd_request_duration_seconds",
            "Store request latency in seconds for each operation and object type",
            families.storage.clone(),
        );
        r.register(
            "apiserver_storage_objects",
            "Number of stored objects at the time of last check split by kind",
            families.objects.clone(),
        );
        Metrics { inner: Arc::new(families) }
    }
}

impl Metrics {
    /// API Priority and Fairness's metrics.
    pub fn flowcontrol(&self) -> &flowcontrol::FlowControl {
        &self.inner.flowcontrol
    }

    /// Every metric in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }

    /// The watch event metrics of objects of `info`'s group, version and kind, found once
    /// per watch.
    pub fn watch_events(&self, info: &keelson_api::ResourceInfo) -> WatchEvents {
        let labels = WatchLabels { group: info.group, version: info.version, kind: info.kind };
        let count = self.inner.watch_events.get_or_create(&labels).clone();
        let sizes = self.inner.watch_sizes.get_or_create(&labels).clone();
        WatchEvents { count, sizes }
    }

    /// Records how long one admission plugin's half, started at `started`, took on an
    /// operation, and whether it refused.
    pub fn admission_controller<T, E>(
        &self,
        name: &'static str,
        operation: &'static str,
        step: Step,
        outcome: &Result<T, E>,
        started: Instant,
    ) {
        let labels =
            ControllerLabels { name, operation, rejected: outcome.is_err(), r#type: step.as_str() };
        let seconds = started.elapsed().as_secs_f64();
        self.inner.admission_controller.get_or_create(&labels).observe(seconds);
    }

    /// Records how long all the mutating (or validating) halves took on an operation.
    pub fn admission_step<T, E>(
        &self,
        operation: &'static str,
        step: Step,
        outcome: &Result<T, E>,
        started: Instant,
    ) {
        let labels = StepLabels { operation, rejected: outcome.is_err(), r#type: step.as_str() };
        let seconds = started.elapsed().as_secs_f64();
        self.inner.admission_step.get_or_create(&labels).observe(seconds);
    }
}

/// An admission step, as upstream's `type` label spells it.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    Admit,
    Validate,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::Admit => "admit",
            Step::Validate => "validate",
        }
    }
}

/// One watch's event metrics.
#[derive(Clone)]
pub struct WatchEvents {
    count: Counter,
    sizes: Histogram,
}

impl WatchEvents {
    /// Counts one event of `bytes` sent.
    pub fn sent(&self, bytes: usize) {
        self.count.inc();
        self.sizes.observe(bytes as f64);
    }
}

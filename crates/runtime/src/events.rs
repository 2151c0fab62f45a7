//! Events as upstream's recorder writes them (client-go's `record` package): core/v1
//! Events, which `kubectl describe` and `kubectl get events` show, correlated so a
//! controller stuck in a loop writes a count, not a flood.
//!
//! - **Dedup:** an event equal to an earlier one (same object, type, reason, message,
//!   source) increments that Event's `count` and `lastTimestamp` instead of creating one.
//! - **Aggregation:** from the 10th distinct message with the same object, type and
//!   reason within 10 minutes, messages are replaced by one aggregate Event,
//!   `(combined from similar events): <message>`.
//! - **Spam filter:** per source and object, a token bucket of 25 events refilled at
//!   one per 5 minutes; events beyond it are dropped.
//! - Recording never blocks the caller: events go to a writer task through a queue of
//!   1000 and are dropped (logged) when it is full, as upstream's broadcaster does.

use std::collections::HashMap;
use std::time::Duration;

use keelson_api::k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use keelson_api::k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;
use tokio::time::Instant;

const AGGREGATE_AFTER: usize = 10;
const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);
const SPAM_BURST: f64 = 25.0;
const SPAM_REFILL_PER_SEC: f64 = 1.0 / 300.0;
const QUEUE: usize = 1000;
/// Each cache keeps this many keys (upstream's LRU size is 4096).
const CACHE: usize = 4096;

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// What the correlator decided for one event.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Create this new Event.
    Create(Event),
    /// The Event named `name` (in `namespace`) happened again: it now reads `event`.
    Update { name: String, event: Event },
    /// Dropped by the spam filter.
    Drop,
}

struct Seen {
    name: String,
    count: i32,
    first: Time,
}

/// Dedup, aggregation and the spam filter, with time passed in so tests drive it.
pub struct Correlator {
    source: EventSource,
    /// Per similar-event key: the distinct messages seen and when the window began.
    similar: HashMap<String, (Vec<String>, Instant)>,
    /// Per exact-event key: the Event written for it.
    seen: HashMap<String, Seen>,
    buckets: HashMap<String, (f64, Instant)>,
}

fn reference_key(r: &ObjectReference) -> String {
    format!(
        "{}/{}/{}/{}/{}",
        r.kind.as_deref().unwrap_or_default(),
        r.namespace.as_deref().unwrap_or_default(),
        r.name.as_deref().unwrap_or_default(),
        r.uid.as_deref().unwrap_or_default(),
        r.api_version.as_deref().unwrap_or_default(),
    )
}

fn bounded<V>(map: &mut HashMap<String, V>) {
    if map.len() >= CACHE {
        // Upstream evicts the least recently used; dropping all is simpler and only
        // costs a new Event instead of a count for keys seen long ago.
        map.clear();
    }
}

impl Correlator {
    pub fn new(source: EventSource) -> Self {
        Correlator {
            source,
            similar: HashMap::new(),
            seen: HashMap::new(),
            buckets: HashMap::new(),
        }
    }

    pub fn decide(
        &mut self,
        object: &ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
        now: Instant,
        wall: Timestamp,
    ) -> Decision {
        let component = self.source.component.clone().unwrap_or_default();
        let host = self.source.host.clone().unwrap_or_default();
        let object_key = reference_key(object);
        // The spam filter.
        let bucket_key = format!("{component}/{host}/{object_key}");
        bounded(&mut self.buckets);
        let (tokens, last) = self.buckets.entry(bucket_key).or_insert((SPAM_BURST, now));
        *tokens = (*tokens
            + now.saturating_duration_since(*last).as_secs_f64() * SPAM_REFILL_PER_SEC)
            .min(SPAM_BURST);
        *last = now;
        if *tokens < 1.0 {
            return Decision::Drop;
        }
        *tokens -= 1.0;

        // Aggregation of similar events.
        let similar_key = format!("{component}/{host}/{object_key}/{}/{reason}", kind.as_str());
        bounded(&mut self.similar);
        let (messages, since) =
            self.similar.entry(similar_key.clone()).or_insert_with(|| (Vec::new(), now));
        if now.saturating_duration_since(*since) > AGGREGATE_WINDOW {
            messages.clear();
            *since = now;
        }
        if !messages.iter().any(|m| m == message) {
            messages.push(message.to_owned());
        }
        let (key, message) = if messages.len() >= AGGREGATE_AFTER {
            (similar_key, format!("(combined from similar events): {message}"))
        } else {
            (format!("{similar_key}/{message}"), message.to_owned())
        };

        // Dedup of equal events.
        let time = Time(wall);
        bounded(&mut self.seen);
        if let Some(seen) = self.seen.get_mut(&key) {
            seen.count = seen.count.saturating_add(1);
            let event = build(
                &self.source,
                object,
                kind,
                reason,
                &message,
                &seen.name,
                seen.count,
                seen.first.clone(),
                time,
            );
            return Decision::Update { name: seen.name.clone(), event };
        }
        // Upstream's name: the object's and the time in nanoseconds, in hex.
        let name = format!(
            "{}.{:x}",
            object.name.as_deref().unwrap_or_default(),
            wall.as_nanosecond().max(0)
        );
        self.seen.insert(key, Seen { name: name.clone(), count: 1, first: time.clone() });
        Decision::Create(build(
            &self.source,
            object,
            kind,
            reason,
            &message,
            &name,
            1,
            time.clone(),
            time,
        ))
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    source: &EventSource,
    object: &ObjectReference,
    kind: EventType,
    reason: &str,
    message: &str,
    name: &str,
    count: i32,
    first: Time,
    last: Time,
) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace_of(object).to_owned()),
            ..ObjectMeta::default()
        },
        involved_object: object.clone(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        source: Some(source.clone()),
        first_timestamp: Some(first),
        last_timestamp: Some(last),
        count: Some(count),
        type_: Some(kind.as_str().to_owned()),
        reporting_component: source.component.clone(),
        reporting_instance: source.host.clone(),
        ..Event::default()
    }
}

/// Events of cluster-scoped objects live in `default`, as upstream's.
fn namespace_of(object: &ObjectReference) -> &str {
    object.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or("default")
}

struct Record {
    object: ObjectReference,
    kind: EventType,
    reason: String,
    message: String,
}

/// Records events for one component; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Record>,
}

impl Recorder {
    /// A recorder whose events name `component` (and `host`) as their source; it
    /// writes until every clone is dropped.
    pub fn new(client: Client, component: &str, host: Option<&str>) -> Self {
        let (queue, mut records) = mpsc::channel::<Record>(QUEUE);
        let mut correlator = Correlator::new(EventSource {
            component: Some(component.to_owned()),
            host: host.map(str::to_owned),
        });
        tokio::spawn(async move {
            while let Some(r) = records.recv().await {
                let decision = correlator.decide(
                    &r.object,
                    r.kind,
                    &r.reason,
                    &r.message,
                    Instant::now(),
                    Timestamp::now(),
                );
                write(&client, decision).await;
            }
        });
        Recorder { queue }
    }

    /// Records an event about `object` (upstream's `Eventf`).
    pub fn event(&self, object: &ObjectReference, kind: EventType, reason: &str, message: &str) {
        let record = Record {
            object: object.clone(),
            kind,
            reason: reason.to_owned(),
            message: message.to_owned(),
        };
        if self.queue.try_send(record).is_err() {
            tracing::warn!(reason, "event queue full; dropping an event");
        }
    }
}

async fn write(client: &Client, decision: Decision) {
    match decision {
        Decision::Drop => {}
        Decision::Create(event) => create(client, event).await,
        Decision::Update { name, event } => {
            let api: Api<Event> = Api::namespaced(
                client.clone(),
                event.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let patch = serde_json::json!({
                "count": event.count,
                "lastTimestamp": event.last_timestamp,
                "message": event.message,
            });
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {}
                // Gone (deleted, expired): write it anew, as upstream does.
                Err(kube::Error::Api(s)) if s.code == 404 => create(client, event).await,
                Err(e) => tracing::warn!(event = name, error = %e, "cannot update an event"),
            }
        }
    }
}

async fn create(client: &Client, event: Event) {
    let api: Api<Event> =
        Api::namespaced(client.clone(), event.metadata.namespace.as_deref().unwrap_or("default"));
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        tracing::warn!(reason = event.reason.as_deref().unwrap_or_default(), error = %e, "cannot write an event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn correlator() -> Correlator {
        Correlator::new(EventSource { component: Some("test-controller".into()), host: None })
    }

    fn pod(name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some("default".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            api_version: Some("v1".into()),
            ..ObjectReference::default()
        }
    }

    fn count(d: &Decision) -> Option<i32> {
        match d {
            Decision::Create(e) | Decision::Update { event: e, .. } => e.count,
            Decision::Drop => None,
        }
    }

    #[test]
    fn an_equal_event_counts_up_on_the_first_one() {
        let mut c = correlator();
        let now = Instant::now();
        let t = Timestamp::now();
        let first = c.decide(&pod("a"), EventType::Warning, "Failed", "boom", now, t);
        let Decision::Create(event) = &first else { panic!("{first:?}") };
        assert_eq!(event.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(
            event.source.as_ref().and_then(|s| s.component.as_deref()),
            Some("test-controller")
        );
        let name = event.metadata.name.clone().unwrap();
        assert!(name.starts_with("a."), "{name}");
        let again = c.decide(&pod("a"), EventType::Warning, "Failed", "boom", now, t);
        match &again {
            Decision::Update { name: n, event } => {
                assert_eq!(n, &name);
                assert_eq!(event.count, Some(2));
                assert_eq!(event.first_timestamp, Some(Time(t)));
            }
            other => panic!("{other:?}"),
        }
        // Another object or message is another Event.
        assert!(matches!(
            c.decide(&pod("b"), EventType::Warning, "Failed", "boom", now, t),
            Decision::Create(_)
        ));
        assert!(matches!(
            c.decide(&pod("a"), EventType::Warning, "Failed", "other", now, t),
            Decision::Create(_)
        ));
    }

    #[test]
    fn ten_distinct_messages_of_one_reason_become_one_aggregate() {
        let mut c = correlator();
        let now = Instant::now();
        let t = Timestamp::now();
        for i in 0..9 {
            let d =
                c.decide(&pod("a"), EventType::Warning, "Failed", &format!("attempt {i}"), now, t);
            assert!(matches!(d, Decision::Create(_)), "{i}: {d:?}");
        }
        let tenth = c.decide(&pod("a"), EventType::Warning, "Failed", "attempt 9", now, t);
        let Decision::Create(aggregate) = tenth else { panic!("{tenth:?}") };
        assert_eq!(aggregate.message.as_deref(), Some("(combined from similar events): attempt 9"));
        let eleventh = c.decide(&pod("a"), EventType::Warning, "Failed", "attempt 10", now, t);
        let Decision::Update { event, .. } = eleventh else { panic!("{eleventh:?}") };
        assert_eq!(event.message.as_deref(), Some("(combined from similar events): attempt 10"));
        assert_eq!(event.count, Some(2));
        // After the window, messages stand alone again.
        let later = now + AGGREGATE_WINDOW + Duration::from_secs(1);
        let d = c.decide(&pod("a"), EventType::Warning, "Failed", "attempt 11", later, t);
        let Decision::Create(event) = d else { panic!("{d:?}") };
        assert_eq!(event.message.as_deref(), Some("attempt 11"));
    }

    #[test]
    fn the_spam_filter_drops_beyond_25_per_object_and_refills_slowly() {
        let mut c = correlator();
        let now = Instant::now();
        let t = Timestamp::now();
        let counted: Vec<Option<i32>> = (0..27)
            .map(|_| count(&c.decide(&pod("a"), EventType::Normal, "Sync", "same", now, t)))
            .collect();
        assert_eq!(counted[24], Some(25));
        assert_eq!(&counted[25..], [None, None]);
        // Another object has its own bucket.
        assert_eq!(count(&c.decide(&pod("b"), EventType::Normal, "Sync", "same", now, t)), Some(1));
        // One token comes back every five minutes.
        let later = now + Duration::from_secs(300);
        assert_eq!(
            count(&c.decide(&pod("a"), EventType::Normal, "Sync", "same", later, t)),
            Some(26)
        );
        assert_eq!(count(&c.decide(&pod("a"), EventType::Normal, "Sync", "same", later, t)), None);
    }

    #[test]
    fn events_of_cluster_scoped_objects_go_to_default() {
        let mut c = correlator();
        let node = ObjectReference {
            kind: Some("Node".into()),
            name: Some("n1".into()),
            ..ObjectReference::default()
        };
        let d =
            c.decide(&node, EventType::Normal, "Starting", "up", Instant::now(), Timestamp::now());
        let Decision::Create(event) = d else { panic!("{d:?}") };
        assert_eq!(event.metadata.namespace.as_deref(), Some("default"));
    }
}

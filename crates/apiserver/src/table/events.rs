//! The event printer, upstream's `printEvent`, shared by core `v1` Events and
//! `events.k8s.io/v1` Events (upstream converts both to one internal type; here either
//! version's field names are read into one [`Event`] view). The first column is LAST
//! SEEN, not the name: the name is a wide column.

use serde_json::{Value, json};

use super::cells::{self, Now, int, text};
use super::{Column, Printer};

const COLUMNS: &[Column] = &[
    Column::string("Last Seen"),
    Column::string("Type"),
    Column::string("Reason"),
    Column::string("Object"),
    Column::wide("Subobject"),
    Column::wide("Source"),
    Column::string("Message"),
    Column::wide("First Seen"),
    Column::wide("Count"),
    Column { name: "Name", kind: "string", priority: 1, format: "name" },
];

/// Events of either version. The view is chosen per field, not by the version asked for:
/// an event stored through one version and read through the other keeps its field names.
pub(crate) const EVENT: Printer = Printer::Columns {
    columns: COLUMNS,
    cells: |o, now| {
        let field = |new: &str, core: &str| if o[new].is_null() { &o[core] } else { &o[new] };
        let event = Event {
            object: field("regarding", "involvedObject"),
            message: field("note", "message"),
            first: field("deprecatedFirstTimestamp", "firstTimestamp"),
            last: field("deprecatedLastTimestamp", "lastTimestamp"),
            count: field("deprecatedCount", "count"),
            source: field("deprecatedSource", "source"),
            controller: field("reportingController", "reportingComponent"),
        };
        event.cells(o, now)
    },
};

/// The fields whose names differ between core `v1` and `events.k8s.io/v1`.
struct Event<'a> {
    object: &'a Value,
    message: &'a Value,
    first: &'a Value,
    last: &'a Value,
    count: &'a Value,
    source: &'a Value,
    controller: &'a Value,
}

impl Event<'_> {
    fn cells(&self, o: &Value, now: Now) -> Vec<Value> {
        let first = match cells::timestamp(self.first) {
            Some(t) => now.ago(t),
            None => now.since(&o["eventTime"]),
        };
        let mut last = match cells::timestamp(self.last) {
            Some(t) => now.ago(t),
            None => first.clone(),
        };
        let series = &o["series"];
        let count = if series.is_object() {
            last = now.since(&series["lastObservedTime"]);
            int(&series["count"])
        } else {
            // Singleton events of the new API have no count.
            match int(self.count) {
                0 => 1,
                n => n,
            }
        };
        let kind = text(&self.object["kind"]).to_lowercase();
        let target = match text(&self.object["name"]) {
            "" => kind,
            name => format!("{kind}/{name}"),
        };
        let component = first_non_empty(&self.source["component"], self.controller);
        let instance = first_non_empty(&self.source["host"], &o["reportingInstance"]);
        let source = if instance.is_empty() {
            component.to_owned()
        } else {
            format!("{component}, {instance}")
        };
        vec![
            json!(last),
            json!(text(&o["type"])),
            json!(text(&o["reason"])),
            json!(target),
            json!(text(&self.object["fieldPath"])),
            json!(source),
            json!(text(self.message).trim()),
            json!(first),
            json!(count),
            cells::name(o),
        ]
    }
}

fn first_non_empty<'a>(a: &'a Value, b: &'a Value) -> &'a str {
    match text(a) {
        "" => text(b),
        s => s,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::table::tests::print;

    #[test]
    fn both_event_versions_print_alike() {
        let core = json!({
            "metadata": { "name": "web.1" },
            "involvedObject": { "kind": "Pod", "name": "web", "fieldPath": "spec.containers{a}" },
            "reason": "Pulled", "type": "Normal", "message": "pulled image\n",
            "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:09:00Z",
            "count": 3, "source": { "component": "kubelet", "host": "n1" }
        });
        let (columns, cells) = print("", "events", &core, "2025-01-01T00:10:00Z");
        assert_eq!(columns[..4], ["Last Seen", "Type", "Reason", "Object"]);
        let expected = json!([
            "60s",
            "Normal",
            "Pulled",
            "pod/web",
            "spec.containers{a}",
            "kubelet, n1",
            "pulled image",
            "10m",
            3,
            "web.1"
        ]);
        assert_eq!(json!(cells), expected);

        let new = json!({
            "metadata": { "name": "web.2" },
            "regarding": { "kind": "Deployment", "name": "web" },
            "reason": "ScalingReplicaSet", "type": "Normal", "note": "scaled up",
            "eventTime": "2025-01-01T00:09:30.123456Z",
            "reportingController": "deployment-controller", "reportingInstance": ""
        });
        let (_, cells) = print("events.k8s.io", "events", &new, "2025-01-01T00:10:00Z");
        let expected = json!([
            "29s",
            "Normal",
            "ScalingReplicaSet",
            "deployment/web",
            "",
            "deployment-controller",
            "scaled up",
            "29s",
            1,
            "web.2"
        ]);
        assert_eq!(json!(cells), expected);
    }
}

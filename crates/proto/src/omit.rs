//! What Go's `encoding/json` leaves out when it prints an object: a field declared as a
//! value (not a pointer) with `omitempty` holding its zero value — `false`, `0`, `""` —
//! or an empty list or map. kube-apiserver decodes every object it writes into its Go
//! struct and prints it, so `spec.unschedulable: false` sent by a client is never
//! stored. k8s-openapi's types cannot say so (a pointer and an `omitempty` value are
//! both an `Option`); the schema's Go declarations can.
//!
//! Walks only where the JSON goes, so it recurses no deeper than the value; never panics.

use serde_json::{Map, Value};

use crate::decode::is_zero;
use crate::schema::{self, Card, Field, Message, Special, Ty};

/// Drops from `object`, an object of `kind` in `api_version`, every field Go would not
/// print; returns whether the kind is known (an unknown one is left as it is).
pub fn omit_empty(api_version: &str, kind: &str, object: &mut Value) -> bool {
    let Some(id) = schema::kind(api_version, kind) else {
        return false;
    };
    if let Value::Object(fields) = object {
        walk(schema::message(id), fields);
    }
    true
}

fn walk(m: &Message, object: &mut Map<String, Value>) {
    if m.special != Special::None {
        return;
    }
    for f in m.fields {
        if f.inline() {
            // An embedded struct's fields are the enclosing object's.
            if let Ty::Msg(t) = f.ty {
                walk(schema::message(t), object);
            }
            continue;
        }
        let Some(value) = object.get_mut(f.json) else {
            continue;
        };
        if f.is_value() && f.omitempty() && is_empty(f, value) {
            object.retain(|name, _| name != f.json);
            continue;
        }
        let Ty::Msg(t) = f.ty else {
            continue;
        };
        let inner = schema::message(t);
        match (f.card, value) {
            (Card::One, Value::Object(fields)) => walk(inner, fields),
            (Card::Rep, Value::Array(items)) => {
                for item in items {
                    if let Value::Object(fields) = item {
                        walk(inner, fields);
                    }
                }
            }
            (Card::Map, Value::Object(entries)) => {
                for entry in entries.values_mut() {
                    if let Value::Object(fields) = entry {
                        walk(inner, fields);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Whether `omitempty` drops the value: a zero scalar, an empty list or map; never a
/// struct.
fn is_empty(f: &Field, value: &Value) -> bool {
    match (f.card, f.ty, value) {
        (Card::Rep, _, Value::Array(items)) => items.is_empty(),
        (Card::Map, _, Value::Object(entries)) => entries.is_empty(),
        (Card::One, Ty::Msg(_), _) => false,
        (Card::One, _, scalar) => is_zero(scalar),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::omit_empty;

    #[test]
    fn drops_what_go_would_not_print() {
        let mut node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": { "name": "n", "labels": {}, "generation": 0, "finalizers": [] },
            "spec": { "unschedulable": false, "podCIDR": "", "taints": [] },
            "status": { "capacity": {}, "phase": "" },
        });
        assert!(omit_empty("v1", "Node", &mut node));
        assert_eq!(
            node,
            json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n" }, "spec": {}, "status": {} })
        );
        let mut unschedulable = json!({ "spec": { "unschedulable": true } });
        omit_empty("v1", "Node", &mut unschedulable);
        assert_eq!(unschedulable, json!({ "spec": { "unschedulable": true } }));
    }

    #[test]
    fn keeps_pointers_structs_and_fields_without_omitempty() {
        // replicas is a pointer; a ReplicaSet's status.replicas has no omitempty;
        // a container's stdin (a value with omitempty) goes, inside lists too.
        let mut deployment = json!({
            "spec": { "replicas": 0, "paused": false, "template": { "spec": {
                "containers": [{ "name": "c", "stdin": false, "tty": true }],
                "hostNetwork": false,
            } } },
        });
        omit_empty("apps/v1", "Deployment", &mut deployment);
        assert_eq!(
            deployment,
            json!({ "spec": { "replicas": 0, "template": { "spec": {
                "containers": [{ "name": "c", "tty": true }],
            } } } })
        );
        let mut replica_set = json!({ "status": { "replicas": 0, "readyReplicas": 0 } });
        omit_empty("apps/v1", "ReplicaSet", &mut replica_set);
        assert_eq!(replica_set, json!({ "status": { "replicas": 0 } }));
        // A volume's source is an inline struct: its fields are the volume's.
        let mut pod = json!({ "spec": { "volumes": [
            { "name": "v", "emptyDir": { "medium": "" } },
            { "name": "w", "hostPath": { "path": "/x", "type": "" } },
        ] } });
        omit_empty("v1", "Pod", &mut pod);
        assert_eq!(
            pod,
            json!({ "spec": { "volumes": [
                { "name": "v", "emptyDir": {} },
                { "name": "w", "hostPath": { "path": "/x", "type": "" } },
            ] } }),
            "a pointer's zero value stays"
        );
        let mut custom = json!({ "spec": { "on": false } });
        assert!(!omit_empty("example.com/v1", "Widget", &mut custom));
        assert_eq!(custom, json!({ "spec": { "on": false } }));
    }
}

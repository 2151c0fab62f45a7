//! Objects as the wire carries them: Go omits zero counts, empty lists and maps and
//! unset pointers, so a status read back may lack what was written as `0` or `[]`.
//! Comparing in this form keeps a controller from writing a status again and again
//! because of how it reads back; converting through it maps one kind's fields onto a
//! kind of the same shape (a ReplicationController's status onto a ReplicaSet's).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Drops nulls, empty lists and maps and, with `zeros`, zero numbers, at every depth.
pub fn prune(value: &mut Value, zeros: bool) {
    match value {
        Value::Object(map) => {
            map.values_mut().for_each(|v| prune(v, zeros));
            map.retain(|_, v| !is_empty(v, zeros));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| prune(v, zeros)),
        _ => {}
    }
}

fn is_empty(v: &Value, zeros: bool) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Number(n) => zeros && n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// `value` as JSON with what Go would omit left out (zero numbers too, when `zeros`).
pub fn pruned<T: Serialize>(value: &T, zeros: bool) -> Value {
    let mut json = serde_json::to_value(value).unwrap_or_default();
    prune(&mut json, zeros);
    json
}

/// Whether two statuses read back the same (every count is `omitempty`).
pub fn same_status<T: Serialize>(a: &T, b: &T) -> bool {
    pruned(a, true) == pruned(b, true)
}

/// `value` re-read as a `B` with the same JSON fields; fields `B` lacks are dropped.
pub fn convert<A: Serialize, B: DeserializeOwned + Default>(value: &A) -> B {
    serde_json::to_value(value).and_then(serde_json::from_value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn zeros_and_empties_read_back_absent() {
        let written = json!({ "replicas": 0, "ready": 2, "conditions": [], "x": { "y": null } });
        assert!(same_status(&written, &json!({ "ready": 2 })));
        assert!(!same_status(&written, &json!({ "ready": 3 })));
        assert_eq!(pruned(&json!({ "n": 0, "m": {} }), false), json!({ "n": 0 }));
    }
}

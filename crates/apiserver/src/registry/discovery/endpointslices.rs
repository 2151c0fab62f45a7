//! EndpointSlices: upstream's `pkg/registry/discovery/endpointslice`.
//!
//! Generation starts at 1 and goes up when anything but metadata changes, or the labels
//! do: the endpointslice controller compares the generation it wrote with the one its
//! informer holds to tell a stale cache from its own writes.

use serde_json::{Value, json};

use crate::registry::spec_changed;
use crate::registry::strategy::Strategy;
use crate::table::{self, Printer};

pub struct EndpointSlices;

impl Strategy for EndpointSlices {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_update(&self, _subresource: Option<&str>, old: &Value, new: &mut Value) {
        // The generic store counts changes beyond metadata; labels count here too.
        let labels = |object: &Value| object.pointer("/metadata/labels").cloned();
        if labels(old) != labels(new) && !spec_changed(old, new) {
            let generation = old.pointer("/metadata/generation").and_then(Value::as_i64);
            if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("generation".into(), json!(generation.unwrap_or(0) + 1));
            }
        }
    }

    fn printer(&self) -> Printer {
        table::networking::ENDPOINT_SLICE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_change_alone_counts_as_a_new_generation() {
        let old =
            json!({ "metadata": { "generation": 2, "labels": { "a": "1" } }, "endpoints": [] });
        let mut new =
            json!({ "metadata": { "generation": 2, "labels": { "a": "2" } }, "endpoints": [] });
        EndpointSlices.prepare_update(None, &old, &mut new);
        assert_eq!(new["metadata"]["generation"], 3);
        let mut same = old.clone();
        EndpointSlices.prepare_update(None, &old, &mut same);
        assert_eq!(same["metadata"]["generation"], 2);
    }
}

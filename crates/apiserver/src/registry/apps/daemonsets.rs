//! DaemonSets: upstream's `pkg/registry/apps/daemonset`.

use serde_json::{Value, json};

use crate::registry::defaults::{child, default, pod_template};
use crate::registry::strategy::Strategy;
use crate::registry::validation::workloads;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct DaemonSets;

/// Where apps/v1 keeps `spec.templateGeneration`.
const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

fn set_template_generation(object: &mut Value, generation: i64) {
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if annotations.is_null() {
        *annotations = json!({});
    }
    if let Some(map) = annotations.as_object_mut() {
        map.insert(TEMPLATE_GENERATION.into(), json!(generation.to_string()));
    }
}

impl Strategy for DaemonSets {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn defaults(&self, object: &mut Value) {
        let spec = child(object, "spec");
        let strategy = child(spec, "updateStrategy");
        default(strategy, "type", json!("RollingUpdate"));
        if strategy["type"] == "RollingUpdate" {
            let rolling = child(strategy, "rollingUpdate");
            default(rolling, "maxUnavailable", json!(1));
            default(rolling, "maxSurge", json!(0));
        }
        default(spec, "revisionHistoryLimit", json!(10));
        pod_template(object.pointer_mut("/spec/template"));
    }

    /// Upstream's `PrepareForCreate`: template generation 1 (apps/v1 keeps it in an
    /// annotation).
    fn prepare_create(&self, object: &mut Value) {
        set_template_generation(object, 1);
    }

    /// Upstream's `PrepareForUpdate`: a changed template raises the template generation.
    fn prepare_update(&self, subresource: Option<&str>, old: &Value, new: &mut Value) {
        if subresource.is_some() {
            return;
        }
        let old_generation = old
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(TEMPLATE_GENERATION))
            .and_then(Value::as_str)
            .and_then(|g| g.parse::<i64>().ok())
            .unwrap_or(0);
        let changed = old.pointer("/spec/template") != new.pointer("/spec/template");
        set_template_generation(new, old_generation + i64::from(changed));
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        workloads::replicated("daemonsets", object, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, _: Option<&str>, causes: &mut Vec<Cause>) {
        self.validate(new, causes);
        workloads::selector_unchanged(old, new, causes);
    }

    fn printer(&self) -> Printer {
        table::workloads::DAEMON_SET
    }
}

//! HorizontalPodAutoscalers: upstream's `pkg/registry/autoscaling/horizontalpodautoscaler`,
//! served as `autoscaling/v2` and `v1` and stored as `v2` (the conversion is in
//! `conversion.rs`), with each version's defaults.

use serde_json::{Value, json};

use super::conversion::{v1_to_v2, v2_to_v1};
use crate::registry::strategy::Strategy;
use crate::table::{self, Printer};

pub struct HorizontalPodAutoscalers;

impl Strategy for HorizontalPodAutoscalers {
    fn defaults(&self, object: &mut Value) {
        match version(object) {
            "v1" => min_replicas(object),
            _ => v2_defaults(object),
        }
    }

    fn convert(&self, object: &mut Value, to_version: &str) {
        match (version(object), to_version) {
            ("v1", "v2") => {
                v1_to_v2(object);
                v2_defaults(object);
            }
            ("v2", "v1") => {
                v2_defaults(object);
                v2_to_v1(object);
            }
            _ => {}
        }
    }

    fn printer(&self) -> Printer {
        table::autoscaling::HORIZONTAL_POD_AUTOSCALER
    }
}

pub(super) fn version(object: &Value) -> &str {
    object["apiVersion"].as_str().and_then(|v| v.strip_prefix("autoscaling/")).unwrap_or("")
}

/// Upstream's `DefaultCPUUtilization`: the target when none is given.
pub(super) const DEFAULT_CPU_UTILIZATION: i64 = 80;

fn min_replicas(object: &mut Value) {
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
        spec.entry("minReplicas").or_insert(json!(1));
    }
}

pub(super) fn cpu_utilization(percent: Value) -> Value {
    json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}}})
}

/// `v2`'s `SetDefaults_HorizontalPodAutoscaler`: one replica at least, 80 % CPU when no
/// metric is given, and a behavior's missing rules as upstream's constants.
pub(super) fn v2_defaults(object: &mut Value) {
    min_replicas(object);
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if spec.get("metrics").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        spec.insert("metrics".into(), json!([cpu_utilization(json!(DEFAULT_CPU_UTILIZATION))]));
    }
    let Some(behavior) = spec.get_mut("behavior").and_then(Value::as_object_mut) else { return };
    let up = json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15},
    ]});
    let down = json!({"selectPolicy": "Max", "policies": [
        {"type": "Percent", "value": 100, "periodSeconds": 15},
    ]});
    for (name, mut defaults) in [("scaleUp", up), ("scaleDown", down)] {
        if let (Some(given), Some(rules)) =
            (behavior.get(name).and_then(Value::as_object), defaults.as_object_mut())
        {
            for (field, value) in given.iter().filter(|(_, v)| !v.is_null()) {
                rules.insert(field.clone(), value.clone());
            }
        }
        behavior.insert(name.into(), defaults);
    }
}

//! The conversion between `autoscaling/v1` and `v2` HorizontalPodAutoscalers, as
//! upstream's `pkg/apis/autoscaling/v1/conversion.go` does it through the internal type.
//! `v1` has one CPU target where `v2` has a list of metrics and a scaling behavior; what
//! `v1` cannot say travels in annotations (`autoscaling.alpha.kubernetes.io/metrics`,
//! `…/behavior`, `…/current-metrics`, `…/conditions`), written as upstream's conversion
//! writes them, so a `v1` client's update keeps what a `v2` client set.

use serde_json::{Map, Value, json};

use super::horizontalpodautoscalers::{DEFAULT_CPU_UTILIZATION, cpu_utilization};
use crate::gojson::{KEYS, Order};

pub(super) const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
pub(super) const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
/// Upstream's `DropRoundTripHorizontalPodAutoscalerAnnotations` drops these.
const ROUND_TRIP: [&str; 6] = [
    METRICS,
    BEHAVIOR,
    "autoscaling.alpha.kubernetes.io/scale-down-tolerance",
    "autoscaling.alpha.kubernetes.io/scale-up-tolerance",
    CURRENT_METRICS,
    CONDITIONS,
];

/// The annotations without the round-trip ones, and those it had.
fn take_round_trip(object: &mut Value) -> Map<String, Value> {
    let mut taken = Map::new();
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return taken;
    };
    if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
        for key in ROUND_TRIP {
            if let Some(value) = annotations.remove(key) {
                taken.insert(key.into(), value);
            }
        }
        if annotations.is_empty() {
            meta.remove("annotations");
        }
    }
    taken
}

fn annotate(object: &mut Value, key: &str, value: String) {
    let meta = crate::meta::metadata_mut(object);
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(key.into(), Value::String(value));
    }
}

/// An annotation holding a JSON list, if it parses.
fn parsed(taken: &Map<String, Value>, key: &str) -> Option<Value> {
    serde_json::from_str(taken.get(key)?.as_str()?).ok()
}

/// A value, unless absent or null.
fn present(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| !v.is_null())
}

/// Sets `key` to `value` unless it is null (Go's `omitempty` of a pointer).
fn set(map: &mut Map<String, Value>, key: &str, value: &Value) {
    if !value.is_null() {
        map.insert(key.into(), value.clone());
    }
}

/// The fields of `from` named in `fields`, those present.
fn pick(from: &Value, fields: &[&str]) -> Map<String, Value> {
    fields.iter().filter_map(|f| Some(((*f).to_owned(), from.get(*f)?.clone()))).collect()
}

pub(super) fn v1_to_v2(object: &mut Value) {
    let taken = take_round_trip(object);
    let spec = object["spec"].take();
    let mut new_spec = pick(&spec, &["scaleTargetRef", "minReplicas", "maxReplicas"]);
    let mut metrics: Vec<Value> = Vec::new();
    if let Some(others) = parsed(&taken, METRICS).as_ref().and_then(Value::as_array) {
        metrics.extend(others.iter().map(metric_spec_to_v2));
    }
    if let Some(percent) = present(spec.get("targetCPUUtilizationPercentage")) {
        metrics.push(cpu_utilization(percent.clone()));
    }
    if metrics.is_empty() {
        metrics.push(cpu_utilization(json!(DEFAULT_CPU_UTILIZATION)));
    }
    new_spec.insert("metrics".into(), Value::Array(metrics));
    if let Some(behavior) = taken.get(BEHAVIOR).and_then(Value::as_str).and_then(behavior_to_v2) {
        new_spec.insert("behavior".into(), behavior);
    }
    object["spec"] = Value::Object(new_spec);

    let status = object["status"].take();
    let mut new_status = pick(
        &status,
        &["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"],
    );
    new_status.entry("desiredReplicas").or_insert(json!(0));
    if let Some(current) = present(status.get("currentCPUUtilizationPercentage")) {
        let metric = json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": current}}});
        new_status.insert("currentMetrics".into(), json!([metric]));
    }
    if let Some(current) = parsed(&taken, CURRENT_METRICS).as_ref().and_then(Value::as_array) {
        let current: Vec<Value> = current.iter().map(metric_status_to_v2).collect();
        new_status.insert("currentMetrics".into(), Value::Array(current));
    }
    if let Some(conditions) = parsed(&taken, CONDITIONS).filter(Value::is_array) {
        new_status.insert("conditions".into(), conditions);
    }
    if new_status.get("currentReplicas") == Some(&json!(0)) {
        // omitempty in v2.
        new_status.remove("currentReplicas");
    }
    object["status"] = Value::Object(new_status);
    object["apiVersion"] = json!("autoscaling/v2");
}

/// Whether a v2 metric is the CPU utilization target `v1` holds in its own field.
fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && !metric["resource"]["target"]["averageUtilization"].is_null()
}

pub(super) fn v2_to_v1(object: &mut Value) {
    take_round_trip(object);
    let spec = object["spec"].take();
    let mut new_spec = pick(&spec, &["scaleTargetRef", "minReplicas", "maxReplicas"]);
    let metrics = spec["metrics"].as_array().cloned().unwrap_or_default();
    if let Some(cpu) = metrics.iter().find(|m| is_cpu_utilization(m)) {
        let percent = cpu["resource"]["target"]["averageUtilization"].clone();
        new_spec.insert("targetCPUUtilizationPercentage".into(), percent);
    }
    object["spec"] = Value::Object(new_spec);
    let others: Vec<Value> = metrics
        .iter()
        .filter(|m| !is_cpu_utilization(m))
        .map(|m| metric_to_v1(m, Half::Target))
        .collect();
    if !others.is_empty() {
        annotate(object, METRICS, go_json(&Value::Array(others), &V1_METRIC_SPEC));
    }

    let status = object["status"].take();
    let mut new_status = pick(
        &status,
        &["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"],
    );
    new_status.entry("currentReplicas").or_insert(json!(0));
    new_status.entry("desiredReplicas").or_insert(json!(0));
    let current = status["currentMetrics"].as_array().cloned().unwrap_or_default();
    for metric in &current {
        let utilization = &metric["resource"]["current"]["averageUtilization"];
        if metric["type"] == "Resource"
            && metric["resource"]["name"] == "cpu"
            && !utilization.is_null()
        {
            new_status.insert("currentCPUUtilizationPercentage".into(), utilization.clone());
        }
    }
    object["status"] = Value::Object(new_status);
    if !current.is_empty() {
        let current: Vec<Value> = current.iter().map(|m| metric_to_v1(m, Half::Current)).collect();
        annotate(object, CURRENT_METRICS, go_json(&Value::Array(current), &V1_METRIC_STATUS));
    }
    if let Some(behavior) = spec.get("behavior").filter(|b| b.is_object()) {
        annotate(object, BEHAVIOR, go_json(&behavior_to_internal(behavior), &BEHAVIOR_ORDER));
    }
    if let Some(conditions) = status["conditions"].as_array().filter(|c| !c.is_empty()) {
        let conditions: Vec<Value> = conditions
            .iter()
            .map(|c| {
                let mut c = c.clone();
                if let Some(map) = c.as_object_mut() {
                    map.entry("lastTransitionTime").or_insert(Value::Null);
                }
                c
            })
            .collect();
        annotate(object, CONDITIONS, go_json(&Value::Array(conditions), &CONDITION));
    }
    object["apiVersion"] = json!("autoscaling/v1");
}

/// JSON as Go's `json.Marshal` writes the annotation's value.
fn go_json(value: &Value, order: &'static Order) -> String {
    let mut out = Vec::new();
    crate::gojson::write(&mut out, value, order);
    String::from_utf8(out).unwrap_or_default()
}

/// A `v1` (annotation) metric spec in `v2`'s shape.
fn metric_spec_to_v2(metric: &Value) -> Value {
    let mut out = pick(metric, &["type"]);
    let target = |value: Option<&Value>, average: Option<&Value>, kind: &str| {
        let mut t = Map::new();
        t.insert("type".into(), json!(kind));
        set(&mut t, "value", value.unwrap_or(&Value::Null));
        set(&mut t, "averageValue", average.unwrap_or(&Value::Null));
        Value::Object(t)
    };
    let identifier = |name: &Value, selector: Option<&Value>| {
        metric_identifier(name, selector.unwrap_or(&Value::Null))
    };
    if let Some(r) = metric.get("resource").filter(|r| r.is_object()) {
        out.insert("resource".into(), resource_to_v2(r));
    }
    if let Some(r) = metric.get("containerResource").filter(|r| r.is_object()) {
        let mut converted = resource_to_v2(r);
        converted["container"] = r["container"].clone();
        out.insert("containerResource".into(), converted);
    }
    if let Some(p) = metric.get("pods").filter(|p| p.is_object()) {
        out.insert(
            "pods".into(),
            json!({
                "metric": identifier(&p["metricName"], p.get("selector")),
                "target": target(None, p.get("targetAverageValue"), "AverageValue"),
            }),
        );
    }
    if let Some(o) = metric.get("object").filter(|o| o.is_object()) {
        let kind = present(o.get("averageValue")).map_or("Value", |_| "AverageValue");
        out.insert(
            "object".into(),
            json!({
                "describedObject": o["target"],
                "target": target(o.get("targetValue"), o.get("averageValue"), kind),
                "metric": identifier(&o["metricName"], o.get("selector")),
            }),
        );
    }
    if let Some(e) = metric.get("external").filter(|e| e.is_object()) {
        let kind = present(e.get("targetValue")).map_or("AverageValue", |_| "Value");
        out.insert(
            "external".into(),
            json!({
                "metric": identifier(&e["metricName"], e.get("metricSelector")),
                "target": target(e.get("targetValue"), e.get("targetAverageValue"), kind),
            }),
        );
    }
    Value::Object(out)
}

/// `v2`'s `MetricIdentifier`.
fn metric_identifier(name: &Value, selector: &Value) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), name.clone());
    set(&mut m, "selector", selector);
    Value::Object(m)
}

fn resource_to_v2(r: &Value) -> Value {
    let utilization = present(r.get("targetAverageUtilization"));
    let mut target = Map::new();
    target.insert(
        "type".into(),
        json!(if utilization.is_some() { "Utilization" } else { "AverageValue" }),
    );
    set(&mut target, "averageValue", &r["targetAverageValue"]);
    if let Some(u) = utilization {
        target.insert("averageUtilization".into(), u.clone());
    }
    json!({"name": r["name"], "target": target})
}

/// A `v1` (annotation) metric status in `v2`'s shape.
fn metric_status_to_v2(metric: &Value) -> Value {
    let mut out = pick(metric, &["type"]);
    let current = |value: &Value, average: &Value, utilization: &Value| {
        let mut c = Map::new();
        set(&mut c, "value", value);
        set(&mut c, "averageValue", average);
        set(&mut c, "averageUtilization", utilization);
        Value::Object(c)
    };
    let identifier = metric_identifier;
    if let Some(r) = metric.get("resource").filter(|r| r.is_object()) {
        out.insert("resource".into(), json!({"name": r["name"],
            "current": current(&Value::Null, &r["currentAverageValue"], &r["currentAverageUtilization"])}));
    }
    if let Some(r) = metric.get("containerResource").filter(|r| r.is_object()) {
        out.insert("containerResource".into(), json!({"name": r["name"], "container": r["container"],
            "current": current(&Value::Null, &r["currentAverageValue"], &r["currentAverageUtilization"])}));
    }
    if let Some(p) = metric.get("pods").filter(|p| p.is_object()) {
        out.insert(
            "pods".into(),
            json!({"metric": identifier(&p["metricName"], &p["selector"]),
            "current": current(&Value::Null, &p["currentAverageValue"], &Value::Null)}),
        );
    }
    if let Some(o) = metric.get("object").filter(|o| o.is_object()) {
        out.insert(
            "object".into(),
            json!({"describedObject": o["target"],
            "metric": identifier(&o["metricName"], &o["selector"]),
            "current": current(&o["currentValue"], &o["averageValue"], &Value::Null)}),
        );
    }
    if let Some(e) = metric.get("external").filter(|e| e.is_object()) {
        out.insert(
            "external".into(),
            json!({"metric": identifier(&e["metricName"], &e["metricSelector"]),
            "current": current(&e["currentValue"], &e["currentAverageValue"], &Value::Null)}),
        );
    }
    Value::Object(out)
}

/// Which half of a metric a conversion reads: a spec's target or a status's current
/// value (`v1` names its fields `target…` and `current…`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Half {
    Target,
    Current,
}

/// A `v2` metric spec or status in `v1`'s (annotation) shape: upstream's
/// `Convert_autoscaling_*MetricSource_To_v1_*` and `…MetricStatus_To_v1_*`. Quantities
/// Go's `v1` types hold as values (not pointers) are written `"0"` when unset.
fn metric_to_v1(metric: &Value, half: Half) -> Value {
    let (side, prefix) = match half {
        Half::Target => ("target", "target"),
        Half::Current => ("current", "current"),
    };
    let name = |field: &str| format!("{prefix}{field}");
    let required = |m: &mut Map<String, Value>, key: &str, value: &Value| {
        m.insert(key.into(), if value.is_null() { json!("0") } else { value.clone() });
    };
    // What the status requires and the spec leaves out when unset.
    let by_half = |m: &mut Map<String, Value>, key: &str, value: &Value| match half {
        Half::Current => required(m, key, value),
        Half::Target => set(m, key, value),
    };
    let mut out = pick(metric, &["type"]);
    for kind in ["resource", "containerResource"] {
        if let Some(r) = metric.get(kind).filter(|r| r.is_object()) {
            let mut m = pick(r, &["name"]);
            set(&mut m, &name("AverageUtilization"), &r[side]["averageUtilization"]);
            by_half(&mut m, &name("AverageValue"), &r[side]["averageValue"]);
            if kind == "containerResource" {
                m.insert("container".into(), r["container"].clone());
            }
            out.insert(kind.into(), Value::Object(m));
        }
    }
    if let Some(p) = metric.get("pods").filter(|p| p.is_object()) {
        let mut m = Map::new();
        m.insert("metricName".into(), p["metric"]["name"].clone());
        required(&mut m, &name("AverageValue"), &p[side]["averageValue"]);
        set(&mut m, "selector", &p["metric"]["selector"]);
        out.insert("pods".into(), Value::Object(m));
    }
    if let Some(o) = metric.get("object").filter(|o| o.is_object()) {
        let mut m = Map::new();
        m.insert("target".into(), o["describedObject"].clone());
        m.insert("metricName".into(), o["metric"]["name"].clone());
        required(&mut m, &name("Value"), &o[side]["value"]);
        set(&mut m, "selector", &o["metric"]["selector"]);
        set(&mut m, "averageValue", &o[side]["averageValue"]);
        out.insert("object".into(), Value::Object(m));
    }
    if let Some(e) = metric.get("external").filter(|e| e.is_object()) {
        let mut m = Map::new();
        m.insert("metricName".into(), e["metric"]["name"].clone());
        set(&mut m, "metricSelector", &e["metric"]["selector"]);
        by_half(&mut m, &name("Value"), &e[side]["value"]);
        set(&mut m, &name("AverageValue"), &e[side]["averageValue"]);
        out.insert("external".into(), Value::Object(m));
    }
    Value::Object(out)
}

/// The behavior annotation's JSON: upstream marshals the internal type, which has no
/// JSON tags: Go's field names, and every field (`null` when unset).
fn behavior_to_internal(behavior: &Value) -> Value {
    let rules = |r: &Value| {
        if !r.is_object() {
            return Value::Null;
        }
        let policies = match r["policies"].as_array() {
            Some(list) => Value::Array(
                list.iter()
                    .map(|p| json!({"Type": p["type"], "Value": p["value"], "PeriodSeconds": p["periodSeconds"]}))
                    .collect(),
            ),
            None => Value::Null,
        };
        json!({
            "StabilizationWindowSeconds": r["stabilizationWindowSeconds"],
            "SelectPolicy": r["selectPolicy"],
            "Policies": policies,
            "Tolerance": r["tolerance"],
        })
    };
    json!({"ScaleUp": rules(&behavior["scaleUp"]), "ScaleDown": rules(&behavior["scaleDown"])})
}

/// The behavior annotation read back (Go matches field names without regard to case),
/// `None` when it does not parse or says nothing.
fn behavior_to_v2(text: &str) -> Option<Value> {
    let parsed: Value = serde_json::from_str(text).ok()?;
    let field = |v: &Value, name: &str| -> Value {
        v.as_object()
            .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.clone())
            .unwrap_or(Value::Null)
    };
    let rules = |r: Value| -> Option<Value> {
        if !r.is_object() {
            return None;
        }
        let mut out = Map::new();
        for (name, json_name) in [
            ("StabilizationWindowSeconds", "stabilizationWindowSeconds"),
            ("SelectPolicy", "selectPolicy"),
            ("Tolerance", "tolerance"),
        ] {
            let value = field(&r, name);
            if !value.is_null() {
                out.insert(json_name.into(), value);
            }
        }
        if let Some(policies) = field(&r, "Policies").as_array() {
            let policies: Vec<Value> = policies
                .iter()
                .map(|p| json!({"type": field(p, "Type"), "value": field(p, "Value"), "periodSeconds": field(p, "PeriodSeconds")}))
                .collect();
            out.insert("policies".into(), Value::Array(policies));
        }
        Some(Value::Object(out))
    };
    let mut behavior = Map::new();
    if let Some(up) = rules(field(&parsed, "ScaleUp")) {
        behavior.insert("scaleUp".into(), up);
    }
    if let Some(down) = rules(field(&parsed, "ScaleDown")) {
        behavior.insert("scaleDown".into(), down);
    }
    (!behavior.is_empty()).then_some(Value::Object(behavior))
}

const REFERENCE: Order = Order(&[("kind", &KEYS), ("name", &KEYS), ("apiVersion", &KEYS)]);
/// `autoscaling/v1.MetricSpec`'s Go struct order.
const V1_METRIC_SPEC: Order = Order(&[
    ("type", &KEYS),
    (
        "object",
        &Order(&[
            ("target", &REFERENCE),
            ("metricName", &KEYS),
            ("targetValue", &KEYS),
            ("selector", &KEYS),
            ("averageValue", &KEYS),
        ]),
    ),
    ("pods", &Order(&[("metricName", &KEYS), ("targetAverageValue", &KEYS), ("selector", &KEYS)])),
    (
        "resource",
        &Order(&[
            ("name", &KEYS),
            ("targetAverageUtilization", &KEYS),
            ("targetAverageValue", &KEYS),
        ]),
    ),
    (
        "containerResource",
        &Order(&[
            ("name", &KEYS),
            ("targetAverageUtilization", &KEYS),
            ("targetAverageValue", &KEYS),
            ("container", &KEYS),
        ]),
    ),
    (
        "external",
        &Order(&[
            ("metricName", &KEYS),
            ("metricSelector", &KEYS),
            ("targetValue", &KEYS),
            ("targetAverageValue", &KEYS),
        ]),
    ),
]);
/// `autoscaling/v1.MetricStatus`'s Go struct order.
const V1_METRIC_STATUS: Order = Order(&[
    ("type", &KEYS),
    (
        "object",
        &Order(&[
            ("target", &REFERENCE),
            ("metricName", &KEYS),
            ("currentValue", &KEYS),
            ("selector", &KEYS),
            ("averageValue", &KEYS),
        ]),
    ),
    ("pods", &Order(&[("metricName", &KEYS), ("currentAverageValue", &KEYS), ("selector", &KEYS)])),
    (
        "resource",
        &Order(&[
            ("name", &KEYS),
            ("currentAverageUtilization", &KEYS),
            ("currentAverageValue", &KEYS),
        ]),
    ),
    (
        "containerResource",
        &Order(&[
            ("name", &KEYS),
            ("currentAverageUtilization", &KEYS),
            ("currentAverageValue", &KEYS),
            ("container", &KEYS),
        ]),
    ),
    (
        "external",
        &Order(&[
            ("metricName", &KEYS),
            ("metricSelector", &KEYS),
            ("currentValue", &KEYS),
            ("currentAverageValue", &KEYS),
        ]),
    ),
]);
const RULES: Order = Order(&[
    ("StabilizationWindowSeconds", &KEYS),
    ("SelectPolicy", &KEYS),
    ("Policies", &Order(&[("Type", &KEYS), ("Value", &KEYS), ("PeriodSeconds", &KEYS)])),
    ("Tolerance", &KEYS),
]);
const BEHAVIOR_ORDER: Order = Order(&[("ScaleUp", &RULES), ("ScaleDown", &RULES)]);
const CONDITION: Order = Order(&[
    ("type", &KEYS),
    ("status", &KEYS),
    ("lastTransitionTime", &KEYS),
    ("reason", &KEYS),
    ("message", &KEYS),
]);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::autoscaling::horizontalpodautoscalers::{
        HorizontalPodAutoscalers, v2_defaults,
    };
    use crate::registry::strategy::Strategy;

    fn v1(spec: Value) -> Value {
        json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"}, "spec": spec, "status": {"currentReplicas": 0, "desiredReplicas": 0}})
    }

    #[test]
    fn a_cpu_target_becomes_a_metric_and_back() {
        let target = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"});
        let mut object = v1(
            json!({"scaleTargetRef": target, "maxReplicas": 3, "targetCPUUtilizationPercentage": 70}),
        );
        HorizontalPodAutoscalers.defaults(&mut object);
        HorizontalPodAutoscalers.convert(&mut object, "v2");
        assert_eq!(object["apiVersion"], "autoscaling/v2");
        assert_eq!(
            object["spec"],
            json!({"scaleTargetRef": target, "minReplicas": 1, "maxReplicas": 3, "metrics": [cpu_utilization(json!(70))]})
        );
        assert_eq!(object["status"], json!({"desiredReplicas": 0}));
        HorizontalPodAutoscalers.convert(&mut object, "v1");
        assert_eq!(
            object,
            v1(
                json!({"scaleTargetRef": target, "minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 70})
            )
        );
    }

    #[test]
    fn without_a_target_the_default_is_80_percent_cpu() {
        let mut object = v1(json!({"maxReplicas": 3}));
        HorizontalPodAutoscalers.convert(&mut object, "v2");
        assert_eq!(object["spec"]["metrics"], json!([cpu_utilization(json!(80))]));
        assert_eq!(object["spec"]["minReplicas"], 1);
    }

    #[test]
    fn what_v1_cannot_say_travels_in_annotations() {
        let pods = json!({"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}});
        let mut object = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"},
            "spec": {"maxReplicas": 3, "metrics": [pods, cpu_utilization(json!(50))], "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
            "status": {"desiredReplicas": 1}});
        let original = object.clone();
        HorizontalPodAutoscalers.convert(&mut object, "v1");
        let annotations = &object["metadata"]["annotations"];
        assert_eq!(
            annotations[METRICS],
            r#"[{"type":"Pods","pods":{"metricName":"qps","targetAverageValue":"10"}}]"#
        );
        assert_eq!(
            annotations[BEHAVIOR],
            r#"{"ScaleUp":{"StabilizationWindowSeconds":0,"SelectPolicy":"Max","Policies":[{"Type":"Pods","Value":4,"PeriodSeconds":15},{"Type":"Percent","Value":100,"PeriodSeconds":15}],"Tolerance":null},"ScaleDown":{"StabilizationWindowSeconds":60,"SelectPolicy":"Max","Policies":[{"Type":"Percent","Value":100,"PeriodSeconds":15}],"Tolerance":null}}"#
        );
        assert_eq!(object["spec"]["targetCPUUtilizationPercentage"], 50);
        HorizontalPodAutoscalers.convert(&mut object, "v2");
        let mut expected = original;
        v2_defaults(&mut expected);
        // The CPU target comes back after the others, as upstream's conversion puts it.
        assert_eq!(object["spec"]["behavior"], expected["spec"]["behavior"]);
        assert_eq!(object["spec"]["metrics"], expected["spec"]["metrics"]);
        assert!(object["metadata"].get("annotations").is_none(), "{object}");
    }
}

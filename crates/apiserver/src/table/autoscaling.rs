//! The horizontal pod autoscaler printer, upstream's `printHorizontalPodAutoscaler` with
//! `formatHPAMetrics`, for `autoscaling/v1` and `v2` alike. Upstream prints the internal
//! (v2-shaped) object for both versions; here an object in v1's shape
//! (`targetCPUUtilizationPercentage`) is read as the one CPU metric v1's conversion makes
//! of it.

use serde_json::{Value, json};

use super::cells::{self, int, items, text};
use super::{Column, Printer};

pub(crate) const HORIZONTAL_POD_AUTOSCALER: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::string("Reference"),
        Column::string("Targets"),
        Column::string("MinPods"),
        Column::string("MaxPods"),
        Column::string("Replicas"),
        Column::AGE,
    ],
    cells: |o, now| {
        let (spec, status) = (&o["spec"], &o["status"]);
        let target = &spec["scaleTargetRef"];
        let reference = format!("{}/{}", text(&target["kind"]), text(&target["name"]));
        let min = spec["minReplicas"].as_i64().map_or_else(|| "<unset>".into(), |n| n.to_string());
        vec![
            cells::name(o),
            json!(reference),
            json!(targets(spec, status)),
            json!(min),
            json!(int(&spec["maxReplicas"])),
            json!(int(&status["currentReplicas"])),
            now.age(o),
        ]
    },
};

/// At most two metrics as `current/target`, then `+ N more...`; `<none>` without metrics.
fn targets(spec: &Value, status: &Value) -> String {
    let (specs, statuses) = match spec["targetCPUUtilizationPercentage"].as_i64() {
        Some(percent) if spec["metrics"].is_null() => {
            let current = &status["currentCPUUtilizationPercentage"];
            let statuses = match current.as_i64() {
                Some(c) => vec![cpu(json!({ "current": { "averageUtilization": c } }))],
                None => Vec::new(),
            };
            (vec![cpu(json!({ "target": { "averageUtilization": percent } }))], statuses)
        }
        _ => (
            items(&spec["metrics"]).cloned().collect(),
            items(&status["currentMetrics"]).cloned().collect(),
        ),
    };
    if specs.is_empty() {
        return "<none>".into();
    }
    let shown: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, metric)| {
            let current = statuses.get(i).unwrap_or(&Value::Null);
            target(metric, current)
        })
        .collect();
    const MAX: usize = 2;
    if shown.len() > MAX {
        format!("{} + {} more...", shown[..MAX].join(", "), shown.len() - MAX)
    } else {
        shown.join(", ")
    }
}

/// A v2 `Resource` metric for CPU with `fields` (`target` or `current`).
fn cpu(mut fields: Value) -> Value {
    fields["name"] = json!("cpu");
    json!({ "type": "Resource", "resource": fields })
}

/// One metric: its current value against its target.
fn target(spec: &Value, status: &Value) -> String {
    let kind = text(&spec["type"]);
    let source = match kind {
        "External" => "external",
        "Pods" => "pods",
        "Object" => "object",
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        _ => return "<unknown type>".into(),
    };
    let (target, current) = (&spec[source]["target"], &status[source]["current"]);
    let reported = !status[source].is_null();
    // Upstream reads the current value once the metric is reported, and checks some
    // optional fields (`nil` prints as `<nil>` where it does not).
    let current_of = |field: &str, checked: bool| {
        if !reported || (checked && current[field].is_null()) {
            "<unknown>".to_owned()
        } else {
            quantity(&current[field])
        }
    };
    match kind {
        "Pods" => {
            format!("{}/{}", current_of("averageValue", false), quantity(&target["averageValue"]))
        }
        "External" | "Object" if !target["averageValue"].is_null() => format!(
            "{}/{} (avg)",
            current_of("averageValue", true),
            quantity(&target["averageValue"])
        ),
        "External" | "Object" => {
            format!("{}/{}", current_of("value", false), quantity(&target["value"]))
        }
        _ => {
            let name = text(&spec[source]["name"]);
            if !target["averageValue"].is_null() {
                let current = current_of("averageValue", false);
                return format!("{name}: {current}/{}", quantity(&target["averageValue"]));
            }
            let percent = |v: &Value| v.as_i64().map(|p| format!("{p}%"));
            let current = match percent(&current["averageUtilization"]) {
                Some(p) if reported => p,
                _ => "<unknown>".into(),
            };
            let target = percent(&target["averageUtilization"]).unwrap_or_else(|| "<auto>".into());
            format!("{name}: {current}/{target}")
        }
    }
}

/// A `*resource.Quantity` as Go prints it, `<nil>` when unset.
fn quantity(v: &Value) -> String {
    if v.is_null() { "<nil>".into() } else { cells::quantity(v) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::table::tests::print;

    #[test]
    fn an_autoscaler_in_either_version() {
        let v2 = json!({
            "metadata": { "name": "web" },
            "spec": {
                "scaleTargetRef": { "kind": "Deployment", "name": "web" },
                "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    { "type": "Resource", "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 80 } } },
                    { "type": "Resource", "resource": { "name": "memory", "target": { "type": "AverageValue", "averageValue": "100Mi" } } },
                    { "type": "Pods", "pods": { "metric": { "name": "qps" }, "target": { "type": "AverageValue", "averageValue": "10" } } }
                ]
            },
            "status": {
                "currentReplicas": 2,
                "currentMetrics": [{ "type": "Resource", "resource": { "name": "cpu", "current": { "averageUtilization": 35 } } }]
            }
        });
        let (columns, cells) =
            print("autoscaling", "horizontalpodautoscalers", &v2, "2025-01-01T00:00:00Z");
        assert_eq!(
            columns,
            ["Name", "Reference", "Targets", "MinPods", "MaxPods", "Replicas", "Age"]
        );
        let targets = "cpu: 35%/80%, memory: <unknown>/100Mi + 1 more...";
        assert_eq!(json!(cells), json!(["web", "Deployment/web", targets, "1", 5, 2, "<unknown>"]));

        let v1 = json!({
            "metadata": { "name": "web" },
            "spec": { "scaleTargetRef": { "kind": "Deployment", "name": "web" }, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50 },
            "status": { "currentReplicas": 1 }
        });
        let (_, cells) =
            print("autoscaling", "horizontalpodautoscalers", &v1, "2025-01-01T00:00:00Z");
        assert_eq!(
            json!(cells),
            json!(["web", "Deployment/web", "cpu: <unknown>/50%", "<unset>", 3, 1, "<unknown>"])
        );
    }
}

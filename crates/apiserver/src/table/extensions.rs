//! Printers of the API extension points: mutating and validating webhook configurations,
//! validating admission policies and their bindings (upstream's `printMutatingWebhook`,
//! `printValidatingWebhook`, `printValidatingAdmissionPolicy`,
//! `printValidatingAdmissionPolicyBinding`), and API services (the aggregator's own table
//! convertor). Custom resource definitions have no printer upstream and keep the default
//! columns.

use serde_json::{Value, json};

use super::cells::{self, items, strings, text};
use super::{Column, Printer};

const WEBHOOK_COLUMNS: &[Column] = &[Column::NAME, Column::integer("Webhooks"), Column::AGE];

pub(crate) const MUTATING_WEBHOOK_CONFIGURATION: Printer = Printer::Columns {
    columns: WEBHOOK_COLUMNS,
    cells: |o, now| vec![cells::name(o), json!(cells::len(&o["webhooks"])), now.age(o)],
};

pub(crate) const VALIDATING_WEBHOOK_CONFIGURATION: Printer = MUTATING_WEBHOOK_CONFIGURATION;

pub(crate) const VALIDATING_ADMISSION_POLICY: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::integer("Validations"),
        Column::string("ParamKind"),
        Column::AGE,
    ],
    cells: |o, now| {
        let spec = &o["spec"];
        let kind = &spec["paramKind"];
        let kind = if kind.is_object() {
            format!("{}/{}", text(&kind["apiVersion"]), text(&kind["kind"]))
        } else {
            "<unset>".into()
        };
        vec![cells::name(o), json!(cells::len(&spec["validations"])), json!(kind), now.age(o)]
    },
};

pub(crate) const VALIDATING_ADMISSION_POLICY_BINDING: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::string("PolicyName"), Column::string("ParamRef"), Column::AGE],
    cells: |o, now| {
        let spec = &o["spec"];
        let r = &spec["paramRef"];
        let param = match (text(&r["name"]), text(&r["namespace"])) {
            _ if !r.is_object() => "<unset>".to_owned(),
            // Whether the parameter is cluster-scoped cannot be told from here.
            (name, "") if !name.is_empty() => format!("*/{name}"),
            (name, namespace) if !name.is_empty() => format!("{namespace}/{name}"),
            _ if r["selector"].is_object() => go_label_selector(&r["selector"]),
            _ => "<unset>".to_owned(),
        };
        vec![cells::name(o), json!(text(&spec["policyName"])), json!(param), now.age(o)]
    },
};

pub(crate) const API_SERVICE: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::string("Service"), Column::string("Available"), Column::AGE],
    cells: |o, now| {
        let service = &o["spec"]["service"];
        let service = if service.is_object() {
            format!("{}/{}", text(&service["namespace"]), text(&service["name"]))
        } else {
            "Local".into()
        };
        let available = match cells::condition(&o["status"]["conditions"], "Available") {
            None => "Unknown".to_owned(),
            Some(c) => match (text(&c["status"]), text(&c["reason"])) {
                ("True", _) => "True".to_owned(),
                (status, "") => status.to_owned(),
                (status, reason) => format!("{status} ({reason})"),
            },
        };
        vec![cells::name(o), json!(service), json!(available), now.age(o)]
    },
};

/// A label selector as Go's generated `LabelSelector.String()` prints it, which is what
/// upstream shows for a binding that selects its parameters.
fn go_label_selector(selector: &Value) -> String {
    let mut labels: Vec<(&String, &str)> = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k, text(v)))
        .collect();
    labels.sort();
    let labels: String = labels.iter().map(|(k, v)| format!("{k}: {v},")).collect();
    let expressions: String = items(&selector["matchExpressions"])
        .map(|e| {
            let values: Vec<&str> = strings(&e["values"]).collect();
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},",
                text(&e["key"]),
                text(&e["operator"]),
                values.join(" ")
            )
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{{expressions}}},}}"
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::table::tests::print;

    #[test]
    fn admission_policies_and_bindings() {
        let policy = json!({
            "metadata": { "name": "replicas" },
            "spec": {
                "paramKind": { "apiVersion": "v1", "kind": "ConfigMap" },
                "validations": [{ "expression": "object.spec.replicas <= 5" }]
            }
        });
        let group = "admissionregistration.k8s.io";
        let (columns, cells) =
            print(group, "validatingadmissionpolicies", &policy, "2025-01-01T00:00:00Z");
        assert_eq!(columns, ["Name", "Validations", "ParamKind", "Age"]);
        assert_eq!(json!(cells), json!(["replicas", 1, "v1/ConfigMap", "<unknown>"]));

        let binding = json!({
            "metadata": { "name": "replicas-prod" },
            "spec": { "policyName": "replicas", "paramRef": { "name": "limits" } }
        });
        let (_, cells) =
            print(group, "validatingadmissionpolicybindings", &binding, "2025-01-01T00:00:00Z");
        assert_eq!(json!(cells), json!(["replicas-prod", "replicas", "*/limits", "<unknown>"]));

        let selecting = json!({
            "metadata": { "name": "b" },
            "spec": { "policyName": "p", "paramRef": { "selector": {
                "matchLabels": { "env": "prod" },
                "matchExpressions": [{ "key": "tier", "operator": "In", "values": ["a", "b"] }]
            } } }
        });
        let (_, cells) =
            print(group, "validatingadmissionpolicybindings", &selecting, "2025-01-01T00:00:00Z");
        let shown = "&LabelSelector{MatchLabels:map[string]string{env: prod,},MatchExpressions:[]LabelSelectorRequirement{LabelSelectorRequirement{Key:tier,Operator:In,Values:[a b],},},}";
        assert_eq!(cells[2], json!(shown));
    }

    #[test]
    fn api_services_and_webhooks() {
        let local = json!({
            "metadata": { "name": "v1.apps" },
            "spec": { "group": "apps", "version": "v1" },
            "status": { "conditions": [{ "type": "Available", "status": "True", "reason": "Local" }] }
        });
        let (columns, cells) =
            print("apiregistration.k8s.io", "apiservices", &local, "2025-01-01T00:00:00Z");
        assert_eq!(columns, ["Name", "Service", "Available", "Age"]);
        assert_eq!(json!(cells), json!(["v1.apps", "Local", "True", "<unknown>"]));

        let webhooks =
            json!({ "metadata": { "name": "w" }, "webhooks": [{ "name": "a.example.com" }] });
        let group = "admissionregistration.k8s.io";
        let (_, cells) =
            print(group, "mutatingwebhookconfigurations", &webhooks, "2025-01-01T00:00:00Z");
        assert_eq!(json!(cells), json!(["w", 1, "<unknown>"]));
    }
}

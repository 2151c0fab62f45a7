//! Printers of API Priority and Fairness configuration (`flowcontrol.apiserver.k8s.io`):
//! upstream's `printFlowSchema` and `printPriorityLevelConfiguration`.
//!
//! Not upstream's: a list of FlowSchemas prints in the list's order (name), where
//! upstream's `printFlowSchemaList` sorts by matching precedence, then name.

use serde_json::{Value, json};

use super::cells::{self, condition, text};
use super::{Column, Printer};

pub(crate) const FLOW_SCHEMA: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::string("PriorityLevel"),
        Column::string("MatchingPrecedence"),
        Column::string("DistinguisherMethod"),
        Column::AGE,
        Column::string("MissingPL"),
    ],
    cells: |o, now| {
        let spec = &o["spec"];
        let method = spec["distinguisherMethod"]["type"].as_str();
        // The `Dangling` condition's status: whether the priority level is missing.
        let missing = condition(&o["status"]["conditions"], "Dangling")
            .map_or_else(|| "?".to_owned(), |c| text(&c["status"]).to_owned());
        vec![
            cells::name(o),
            json!(text(&spec["priorityLevelConfiguration"]["name"])),
            json!(cells::int(&spec["matchingPrecedence"])),
            json!(if spec["distinguisherMethod"].is_object() {
                method.unwrap_or("")
            } else {
                "<none>"
            }),
            now.age(o),
            json!(missing),
        ]
    },
};

pub(crate) const PRIORITY_LEVEL_CONFIGURATION: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::string("Type"),
        Column::string("NominalConcurrencyShares"),
        Column::string("Queues"),
        Column::string("HandSize"),
        Column::string("QueueLengthLimit"),
        Column::AGE,
    ],
    cells: |o, now| {
        let spec = &o["spec"];
        let limited = &spec["limited"];
        let queuing = &limited["limitResponse"]["queuing"];
        // `<none>` without a limited configuration (or, for the queue columns, without
        // queuing); what a limited one holds, as upstream prints its int32s, otherwise.
        let shown = |present: bool, v: &Value| {
            if present { json!(cells::int(v)) } else { json!("<none>") }
        };
        vec![
            cells::name(o),
            json!(text(&spec["type"])),
            shown(limited.is_object(), &limited["nominalConcurrencyShares"]),
            shown(queuing.is_object(), &queuing["queues"]),
            shown(queuing.is_object(), &queuing["handSize"]),
            shown(queuing.is_object(), &queuing["queueLengthLimit"]),
            now.age(o),
        ]
    },
};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::table::tests::print;

    const NOW: &str = "2025-01-01T01:00:00Z";
    const GROUP: &str = "flowcontrol.apiserver.k8s.io";

    #[test]
    fn flow_schemas() {
        let schema = json!({
            "metadata": { "name": "service-accounts", "creationTimestamp": "2025-01-01T00:00:00Z" },
            "spec": { "priorityLevelConfiguration": { "name": "workload-low" }, "matchingPrecedence": 9000, "distinguisherMethod": { "type": "ByUser" } },
            "status": { "conditions": [{ "type": "Dangling", "status": "False" }] }
        });
        let (columns, cells) = print(GROUP, "flowschemas", &schema, NOW);
        assert_eq!(
            columns,
            [
                "Name",
                "PriorityLevel",
                "MatchingPrecedence",
                "DistinguisherMethod",
                "Age",
                "MissingPL"
            ]
        );
        assert_eq!(
            json!(cells),
            json!(["service-accounts", "workload-low", 9000, "ByUser", "60m", "False"])
        );
        let bare = json!({ "metadata": { "name": "exempt" }, "spec": { "priorityLevelConfiguration": { "name": "exempt" }, "matchingPrecedence": 1 } });
        let (_, cells) = print(GROUP, "flowschemas", &bare, NOW);
        assert_eq!(json!(cells), json!(["exempt", "exempt", 1, "<none>", "<unknown>", "?"]));
    }

    #[test]
    fn priority_levels() {
        let limited = json!({
            "metadata": { "name": "workload-low" },
            "spec": { "type": "Limited", "limited": { "nominalConcurrencyShares": 100, "lendablePercent": 90,
                "limitResponse": { "type": "Queue", "queuing": { "queues": 128, "handSize": 6, "queueLengthLimit": 50 } } } }
        });
        let (columns, cells) = print(GROUP, "prioritylevelconfigurations", &limited, NOW);
        assert_eq!(
            columns,
            [
                "Name",
                "Type",
                "NominalConcurrencyShares",
                "Queues",
                "HandSize",
                "QueueLengthLimit",
                "Age"
            ]
        );
        assert_eq!(json!(cells), json!(["workload-low", "Limited", 100, 128, 6, 50, "<unknown>"]));
        let reject = json!({ "metadata": { "name": "catch-all" }, "spec": { "type": "Limited",
            "limited": { "nominalConcurrencyShares": 5, "limitResponse": { "type": "Reject" } } } });
        let (_, cells) = print(GROUP, "prioritylevelconfigurations", &reject, NOW);
        assert_eq!(
            json!(cells),
            json!(["catch-all", "Limited", 5, "<none>", "<none>", "<none>", "<unknown>"])
        );
        let exempt =
            json!({ "metadata": { "name": "exempt" }, "spec": { "type": "Exempt", "exempt": {} } });
        let (_, cells) = print(GROUP, "prioritylevelconfigurations", &exempt, NOW);
        assert_eq!(
            json!(cells),
            json!(["exempt", "Exempt", "<none>", "<none>", "<none>", "<none>", "<unknown>"])
        );
    }
}

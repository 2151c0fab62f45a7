//! Printers of the cluster-wide scheduling, node and coordination groups: priority
//! classes, runtime classes and leases. Upstream's `printPriorityClass`,
//! `printRuntimeClass` and `printLease`.

use serde_json::json;

use super::cells::{self, flag, int, text};
use super::{Column, Printer};

pub(crate) const PRIORITY_CLASS: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::integer("Value"),
        Column::boolean("Global-Default"),
        Column::AGE,
        // Printed only when wide upstream, but not declared a wide column: always shown.
        Column::string("PreemptionPolicy"),
    ],
    cells: |o, now| {
        vec![
            cells::name(o),
            json!(int(&o["value"])),
            json!(flag(&o["globalDefault"], false)),
            now.age(o),
            json!(text(&o["preemptionPolicy"])),
        ]
    },
};

pub(crate) const RUNTIME_CLASS: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::string("Handler"), Column::AGE],
    cells: |o, now| vec![cells::name(o), json!(text(&o["handler"])), now.age(o)],
};

pub(crate) const LEASE: Printer = Printer::Columns {
    columns: &[Column::NAME, Column::string("Holder"), Column::AGE],
    cells: |o, now| vec![cells::name(o), json!(text(&o["spec"]["holderIdentity"])), now.age(o)],
};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::table::tests::print;

    #[test]
    fn priority_and_runtime_classes_and_leases() {
        let class = json!({
            "metadata": { "name": "system-node-critical" },
            "value": 2_000_001_000, "globalDefault": false, "preemptionPolicy": "PreemptLowerPriority"
        });
        let (columns, cells) =
            print("scheduling.k8s.io", "priorityclasses", &class, "2025-01-01T00:00:00Z");
        assert_eq!(columns, ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]);
        let expected = json!([
            "system-node-critical",
            2_000_001_000,
            false,
            "<unknown>",
            "PreemptLowerPriority"
        ]);
        assert_eq!(json!(cells), expected);

        let runtime = json!({ "metadata": { "name": "gvisor" }, "handler": "runsc" });
        let (_, cells) = print("node.k8s.io", "runtimeclasses", &runtime, "2025-01-01T00:00:00Z");
        assert_eq!(json!(cells), json!(["gvisor", "runsc", "<unknown>"]));

        let lease = json!({ "metadata": { "name": "n1" }, "spec": { "holderIdentity": "n1" } });
        let (_, cells) = print("coordination.k8s.io", "leases", &lease, "2025-01-01T00:00:00Z");
        assert_eq!(json!(cells), json!(["n1", "n1", "<unknown>"]));
    }
}

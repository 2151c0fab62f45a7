//! PriorityLevelConfigurations: upstream's
//! `pkg/registry/flowcontrol/prioritylevelconfiguration`, with the defaults of
//! `pkg/apis/flowcontrol/v1/defaults.go`: 30 nominal concurrency shares for a limited
//! level (0 for an exempt one), 0 lendable percent, and 64 queues, a hand of 8 and 50
//! requests a queue when queuing.

use serde_json::{Value, json};

use super::FlowControl;
use crate::registry::validation::flowcontrol;
use crate::table;

pub static PRIORITY_LEVEL_CONFIGURATIONS: FlowControl = FlowControl {
    defaults,
    validate: flowcontrol::priority_level,
    printer: table::flowcontrol::PRIORITY_LEVEL_CONFIGURATION,
};

/// Sets `field` to `value` when it is missing (or, with `zero`, also when 0: Go's
/// non-pointer ints default on their zero value).
fn default(object: &mut Value, field: &str, value: i64, zero: bool) {
    let current = &object[field];
    if current.is_null() || (zero && current.as_i64() == Some(0)) {
        object[field] = json!(value);
    }
}

fn defaults(object: &mut Value) {
    // Reached with `pointer_mut`: indexing would add the missing fields as nulls.
    if let Some(exempt) = object.pointer_mut("/spec/exempt").filter(|e| e.is_object()) {
        default(exempt, "nominalConcurrencyShares", 0, false);
        default(exempt, "lendablePercent", 0, false);
    }
    if let Some(limited) = object.pointer_mut("/spec/limited").filter(|l| l.is_object()) {
        default(limited, "nominalConcurrencyShares", 30, false);
        default(limited, "lendablePercent", 0, false);
    }
    let queuing = object.pointer_mut("/spec/limited/limitResponse/queuing");
    if let Some(queuing) = queuing.filter(|q| q.is_object()) {
        default(queuing, "handSize", 8, true);
        default(queuing, "queues", 64, true);
        default(queuing, "queueLengthLimit", 50, true);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::defaults;

    #[test]
    fn levels_get_upstreams_defaults() {
        let mut level = json!({ "spec": { "type": "Limited", "limited": {
            "limitResponse": { "type": "Queue", "queuing": { "queues": 0 } } } } });
        defaults(&mut level);
        assert_eq!(
            level["spec"]["limited"],
            json!({ "nominalConcurrencyShares": 30, "lendablePercent": 0, "limitResponse": { "type": "Queue",
                "queuing": { "queues": 64, "handSize": 8, "queueLengthLimit": 50 } } })
        );
        let mut zero = json!({ "spec": { "type": "Limited", "limited": { "nominalConcurrencyShares": 0, "limitResponse": { "type": "Reject" } } } });
        defaults(&mut zero);
        assert_eq!(zero["spec"]["limited"]["nominalConcurrencyShares"], 0, "an explicit 0 stays");
        let mut exempt = json!({ "spec": { "type": "Exempt", "exempt": {} } });
        defaults(&mut exempt);
        assert_eq!(
            exempt["spec"]["exempt"],
            json!({ "nominalConcurrencyShares": 0, "lendablePercent": 0 })
        );
    }
}

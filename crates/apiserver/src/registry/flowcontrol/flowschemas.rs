//! FlowSchemas: upstream's `pkg/registry/flowcontrol/flowschema`, with
//! `SetDefaults_FlowSchemaSpec` (matching precedence 1000).

use serde_json::{Value, json};

use super::FlowControl;
use crate::registry::validation::flowcontrol;
use crate::table;

pub static FLOW_SCHEMAS: FlowControl = FlowControl {
    defaults,
    validate: flowcontrol::flow_schema,
    printer: table::flowcontrol::FLOW_SCHEMA,
};

fn defaults(object: &mut Value) {
    // Upstream defaults the spec struct, there even when the body has none.
    let spec = &mut object["spec"];
    if (spec.is_null() || spec.is_object()) && spec["matchingPrecedence"].as_i64().unwrap_or(0) == 0
    {
        spec["matchingPrecedence"] = json!(1000);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::defaults;

    #[test]
    fn schemas_match_at_precedence_1000_by_default() {
        let mut schema = json!({ "metadata": { "name": "s" } });
        defaults(&mut schema);
        assert_eq!(schema["spec"], json!({ "matchingPrecedence": 1000 }));
        let mut schema = json!({ "spec": { "matchingPrecedence": 500 } });
        defaults(&mut schema);
        assert_eq!(schema["spec"]["matchingPrecedence"], 500);
    }
}

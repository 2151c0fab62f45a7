//! FlowSchemas and PriorityLevelConfigurations: upstream's
//! `pkg/apis/flowcontrol/validation`, including the fixed specs of the mandatory
//! objects (`exempt` and `catch-all`, apiserver's `bootstrap.Mandatory*`): a FlowSchema
//! or priority level of that name must have exactly that spec (the `exempt` level may
//! change only `spec.exempt`).
//!
//! Values Go prints as `%#v` structs (`flowcontrol.FlowDistinguisherMethod{Type:"x"}`,
//! `[]string{"a"}`) are written as Go writes them; a whole spec (the mandatory objects'
//! "must equal the fixed value") is shown as JSON, as Go's form holds pointer addresses.

use serde_json::{Value, json};

use super::{duplicate, not_supported, required};
use crate::meta::{dns_label_problem, dns_subdomain_problem, metadata, name};
use crate::status::Cause;

const MAX_MATCHING_PRECEDENCE: i64 = 10_000;
const MAX_QUEUES: i64 = 10_000_000;
/// shufflesharding's `MaxHashBits`.
const MAX_HASH_BITS: f64 = 60.0;
const SUPPORTED_VERBS: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "proxy", "update", "watch"];
const PRESERVE_ZERO_SHARES: &str = "flowcontrol.k8s.io/v1beta3-preserve-zero-concurrency-shares";

/// A list of strings as Go's `%#v` prints a `[]string`.
fn go_strings(list: &Value) -> String {
    let quoted: Vec<String> = strings(list).map(|s| format!("{s:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

fn strings(list: &Value) -> impl Iterator<Item = &str> {
    list.as_array().into_iter().flatten().filter_map(Value::as_str)
}

fn items(list: &Value) -> impl Iterator<Item = &Value> {
    list.as_array().into_iter().flatten()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// An `Invalid` cause whose value is shown as Go's `%#v` wrote it.
fn invalid_shown(field: &str, shown: &str, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        message: format!("Invalid value: {shown}: {detail}"),
        field: field.to_owned(),
    }
}

pub fn flow_schema(object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    let schema_name = name(object).unwrap_or("");
    let precedence = spec["matchingPrecedence"].as_i64().unwrap_or(0);
    let field = "spec.matchingPrecedence";
    if precedence <= 0 {
        causes.push(Cause::invalid(field, &json!(precedence), "must be a positive value"));
    }
    if precedence > MAX_MATCHING_PRECEDENCE {
        let detail = format!("must not be greater than {MAX_MATCHING_PRECEDENCE}");
        causes.push(Cause::invalid(field, &json!(precedence), &detail));
    }
    if precedence == 1 && schema_name != "exempt" {
        causes.push(Cause::invalid(
            field,
            &json!(precedence),
            "only the schema named 'exempt' may have matchingPrecedence 1",
        ));
    }
    let method = &spec["distinguisherMethod"];
    if method.is_object() && !matches!(str_of(&method["type"]), "ByNamespace" | "ByUser") {
        let shown =
            format!("flowcontrol.FlowDistinguisherMethod{{Type:{:?}}}", str_of(&method["type"]));
        causes.push(Cause::not_supported(
            "spec.distinguisherMethod.type",
            &shown,
            &["ByNamespace", "ByUser"],
        ));
    }
    let level = str_of(&spec["priorityLevelConfiguration"]["name"]);
    let field = "spec.priorityLevelConfiguration.name";
    if level.is_empty() {
        causes.push(Cause::required(field, "must reference a priority level"));
    } else if let Some(problem) = dns_subdomain_problem(level) {
        causes.push(Cause::invalid(field, &json!(level), &problem));
    }
    for (i, rule) in items(&spec["rules"]).enumerate() {
        policy_rule(rule, &format!("spec.rules[{i}]"), causes);
    }
    if let Some(fixed) = mandatory_flow_schema(schema_name)
        && comparable(spec) != comparable(&fixed)
    {
        let detail = format!("spec of '{schema_name}' must equal the fixed value");
        causes.push(Cause::invalid("spec", spec, &detail));
    }
    conditions(&object["status"], causes);
}

fn policy_rule(rule: &Value, path: &str, causes: &mut Vec<Cause>) {
    let subjects = rule["subjects"].as_array().filter(|s| !s.is_empty());
    match subjects {
        Some(subjects) => {
            for (i, subject) in subjects.iter().enumerate() {
                flow_subject(subject, &format!("{path}.subjects[{i}]"), causes);
            }
        }
        None => causes.push(Cause::required(
            &format!("{path}.subjects"),
            "subjects must contain at least one value",
        )),
    }
    let resource_rules: Vec<&Value> = items(&rule["resourceRules"]).collect();
    let non_resource_rules: Vec<&Value> = items(&rule["nonResourceRules"]).collect();
    if resource_rules.is_empty() && non_resource_rules.is_empty() {
        causes.push(Cause::required(
            path,
            "at least one of resourceRules and nonResourceRules has to be non-empty",
        ));
    }
    for (i, r) in resource_rules.iter().enumerate() {
        resource_rule(r, &format!("{path}.resourceRules[{i}]"), causes);
    }
    for (i, r) in non_resource_rules.iter().enumerate() {
        non_resource_rule(r, &format!("{path}.nonResourceRules[{i}]"), causes);
    }
}

fn flow_subject(subject: &Value, path: &str, causes: &mut Vec<Cause>) {
    // The subject kinds and, for each, the member it must have.
    const MEMBERS: [(&str, &str); 3] =
        [("ServiceAccount", "serviceAccount"), ("User", "user"), ("Group", "group")];
    let kind = str_of(&subject["kind"]);
    let Some(&(_, member)) = MEMBERS.iter().find(|(k, _)| *k == kind) else {
        let shown = format!("{kind:?}");
        causes.push(Cause::not_supported(
            &format!("{path}.kind"),
            &shown,
            &["Group", "ServiceAccount", "User"],
        ));
        return;
    };
    let value = &subject[member];
    let field = format!("{path}.{member}");
    if value.is_null() {
        let detail = format!("{member} is required when subject kind is '{kind}'");
        causes.push(Cause::required(&field, &detail));
    } else {
        let name_field = format!("{field}.name");
        let subject_name = str_of(&value["name"]);
        if subject_name.is_empty() {
            required(&name_field, causes);
        } else if kind == "ServiceAccount"
            && subject_name != "*"
            && let Some(problem) = dns_subdomain_problem(subject_name)
        {
            causes.push(Cause::invalid(&name_field, &json!(subject_name), &problem));
        }
        if kind == "ServiceAccount" {
            let namespace = str_of(&value["namespace"]);
            let ns_field = format!("{field}.namespace");
            if namespace.is_empty() {
                causes
                    .push(Cause::required(&ns_field, "must specify namespace for service account"));
            } else if let Some(problem) = dns_label_problem(namespace) {
                causes.push(Cause::invalid(&ns_field, &json!(namespace), &problem));
            }
        }
    }
    // The other kinds' members, in upstream's order.
    for (other, other_kind) in
        [("serviceAccount", "ServiceAccount"), ("user", "User"), ("group", "Group")]
    {
        if other != member && !subject[other].is_null() {
            causes.push(Cause::forbidden(
                &format!("{path}.{other}"),
                &format!("{other} is forbidden when subject kind is not '{other_kind}'"),
            ));
        }
    }
}

/// The verbs of a rule: present, `*` alone, or all of them supported.
fn verbs(verbs: &Value, field: &str, causes: &mut Vec<Cause>) {
    let list: Vec<&str> = strings(verbs).collect();
    if list.is_empty() {
        causes.push(Cause::required(field, "verbs must contain at least one value"));
    } else if list.contains(&"*") {
        if list.len() > 1 {
            let shown = go_strings(verbs);
            causes.push(invalid_shown(
                field,
                &shown,
                "if '*' is present, must not specify other verbs",
            ));
        }
    } else if !list.iter().all(|v| SUPPORTED_VERBS.contains(v)) {
        causes.push(Cause::not_supported(field, &go_strings(verbs), SUPPORTED_VERBS));
    }
}

/// A list that must not be empty and may hold `*` only alone.
fn wildcard_list(list: &Value, field: &str, empty: &str, what: &str, causes: &mut Vec<Cause>) {
    let values: Vec<&str> = strings(list).collect();
    if values.is_empty() {
        causes.push(Cause::required(field, empty));
    } else if values.len() > 1 && values.contains(&"*") {
        let detail = format!("if '*' is present, must not specify other {what}");
        causes.push(invalid_shown(field, &go_strings(list), &detail));
    }
}

fn resource_rule(rule: &Value, path: &str, causes: &mut Vec<Cause>) {
    verbs(&rule["verbs"], &format!("{path}.verbs"), causes);
    wildcard_list(
        &rule["apiGroups"],
        &format!("{path}.apiGroups"),
        "resource rules must supply at least one api group",
        "api groups",
        causes,
    );
    wildcard_list(
        &rule["resources"],
        &format!("{path}.resources"),
        "resource rules must supply at least one resource",
        "resources",
        causes,
    );
    let namespaces: Vec<&str> = strings(&rule["namespaces"]).collect();
    let field = format!("{path}.namespaces");
    if namespaces.is_empty() && rule["clusterScope"] != true {
        causes.push(Cause::required(
            &field,
            "resource rules that are not cluster scoped must supply at least one namespace",
        ));
    } else if namespaces.contains(&"*") {
        if namespaces.len() > 1 {
            let detail = "if '*' is present, must not specify other namespaces";
            causes.push(invalid_shown(&field, &go_strings(&rule["namespaces"]), detail));
        }
    } else {
        for (i, namespace) in namespaces.iter().enumerate() {
            if let Some(problem) = dns_label_problem(namespace) {
                let detail =
                    format!("each member of this list must be '*' or a DNS-1123 label; {problem}");
                causes.push(Cause::invalid(&format!("{field}[{i}]"), &json!(namespace), &detail));
            }
        }
    }
}

fn non_resource_rule(rule: &Value, path: &str, causes: &mut Vec<Cause>) {
    verbs(&rule["verbs"], &format!("{path}.verbs"), causes);
    let field = format!("{path}.nonResourceURLs");
    let urls: Vec<&str> = strings(&rule["nonResourceURLs"]).collect();
    if urls.is_empty() {
        causes.push(Cause::required(&field, "nonResourceURLs must contain at least one value"));
    } else if urls.contains(&"*") {
        if urls.len() > 1 {
            let detail = "if '*' is present, must not specify other non-resource URLs";
            causes.push(invalid_shown(&field, &go_strings(&rule["nonResourceURLs"]), detail));
        }
    } else {
        for (i, url) in urls.iter().enumerate() {
            if let Some(problem) = url_problem(url) {
                causes.push(Cause::invalid(&format!("{field}[{i}]"), &json!(url), problem));
            }
        }
    }
}

/// Upstream's `ValidateNonResourceURLPath`.
fn url_problem(path: &str) -> Option<&'static str> {
    let wildcards = path.matches('*').count();
    match () {
        () if path.is_empty() => Some("must not be empty"),
        () if path == "/" => None,
        () if !path.starts_with('/') => Some("must start with slash"),
        () if path.contains(' ') => Some("must not contain white-space"),
        () if path.contains("//") => Some("must not contain double slash"),
        () if wildcards > 1 || (wildcards == 1 && !path.ends_with("/*")) => {
            Some("wildcard can only do suffix matching")
        }
        () => None,
    }
}

/// The conditions of a status: each with a type, no type twice.
pub fn conditions(status: &Value, causes: &mut Vec<Cause>) {
    let mut seen = Vec::new();
    for (i, condition) in items(&status["conditions"]).enumerate() {
        let kind = str_of(&condition["type"]);
        let field = format!("status.conditions[{i}].type");
        if seen.contains(&kind) {
            duplicate(&field, &condition["type"], causes);
        }
        seen.push(kind);
        if kind.is_empty() {
            required(&field, causes);
        }
    }
}

pub fn priority_level(object: &Value, causes: &mut Vec<Cause>) {
    let level_name = name(object).unwrap_or("");
    if metadata(object).get("annotations").and_then(|a| a.get(PRESERVE_ZERO_SHARES)).is_some() {
        let detail = format!("annotation '{PRESERVE_ZERO_SHARES}' is forbidden");
        causes.push(Cause::forbidden("metadata.annotations", &detail));
    }
    let spec = &object["spec"];
    let kind = &spec["type"];
    if (level_name == "exempt") != (kind == "Exempt") {
        causes.push(Cause::invalid(
            "spec.type",
            &json!(str_of(kind)),
            "must be 'Exempt' if and only if `name` is 'exempt'",
        ));
    }
    match str_of(kind) {
        "Exempt" => {
            if !spec["limited"].is_null() {
                causes.push(Cause::forbidden(
                    "spec.limited",
                    "must be nil if the type is not Limited",
                ));
            }
            let exempt = &spec["exempt"];
            if exempt.is_object() {
                non_negative_shares(&exempt["nominalConcurrencyShares"], "spec.exempt", causes);
                percent(&exempt["lendablePercent"], "spec.exempt.lendablePercent", causes);
            }
        }
        "Limited" => {
            if !spec["exempt"].is_null() {
                causes.push(Cause::forbidden("spec.exempt", "must be nil if the type is Limited"));
            }
            if spec["limited"].is_object() {
                limited(&spec["limited"], causes);
            } else {
                causes.push(Cause::required(
                    "spec.limited",
                    "must not be empty when type is Limited",
                ));
            }
        }
        other => not_supported("spec.type", &json!(other), &["Exempt", "Limited"], causes),
    }
    if let Some(fixed) = mandatory_priority_level(level_name) {
        let mut have = spec.clone();
        if level_name == "exempt" {
            have["exempt"] = fixed["exempt"].clone();
        }
        if comparable(&have) != comparable(&fixed) {
            let detail = if level_name == "exempt" {
                "spec of 'exempt' except the 'spec.exempt' field must equal the fixed value"
                    .to_owned()
            } else {
                format!("spec of '{level_name}' must equal the fixed value")
            };
            causes.push(Cause::invalid("spec", spec, &detail));
        }
    }
    conditions(&object["status"], causes);
}

fn non_negative_shares(shares: &Value, path: &str, causes: &mut Vec<Cause>) {
    if let Some(n) = shares.as_i64().filter(|n| *n < 0) {
        let field = format!("{path}.nominalConcurrencyShares");
        causes.push(Cause::invalid(&field, &json!(n), "must be a non-negative integer"));
    }
}

fn percent(value: &Value, field: &str, causes: &mut Vec<Cause>) {
    if let Some(n) = value.as_i64().filter(|n| !(0..=100).contains(n)) {
        causes.push(Cause::invalid(field, &json!(n), "must be between 0 and 100, inclusive"));
    }
}

fn limited(limited: &Value, causes: &mut Vec<Cause>) {
    non_negative_shares(&limited["nominalConcurrencyShares"], "spec.limited", causes);
    let response = &limited["limitResponse"];
    let path = "spec.limited.limitResponse";
    match str_of(&response["type"]) {
        "Reject" => {
            if !response["queuing"].is_null() {
                causes.push(Cause::forbidden(
                    &format!("{path}.queuing"),
                    "must be nil if limited.limitResponse.type is not Limited",
                ));
            }
        }
        "Queue" => match &response["queuing"] {
            queuing @ Value::Object(_) => queuing_configuration(queuing, causes),
            _ => causes.push(Cause::required(
                &format!("{path}.queuing"),
                "must not be empty if limited.limitResponse.type is Limited",
            )),
        },
        other => {
            not_supported(&format!("{path}.type"), &json!(other), &["Queue", "Reject"], causes)
        }
    }
    percent(&limited["lendablePercent"], "spec.limited.lendablePercent", causes);
    if let Some(n) = limited["borrowingLimitPercent"].as_i64().filter(|n| *n < 0) {
        causes.push(Cause::invalid(
            "spec.limited.borrowingLimitPercent",
            &json!(n),
            "if specified, must be a non-negative integer",
        ));
    }
}

fn queuing_configuration(queuing: &Value, causes: &mut Vec<Cause>) {
    let path = "spec.limited.limitResponse.queuing";
    let int = |field: &str| queuing[field].as_i64().unwrap_or(0);
    let (limit, queues, hand) = (int("queueLengthLimit"), int("queues"), int("handSize"));
    if limit <= 0 {
        causes.push(Cause::invalid(
            &format!("{path}.queueLengthLimit"),
            &json!(limit),
            "must be positive",
        ));
    }
    let queues_field = format!("{path}.queues");
    if queues <= 0 {
        causes.push(Cause::invalid(&queues_field, &json!(queues), "must be positive"));
    } else if queues > MAX_QUEUES {
        let detail = format!("must not be greater than {MAX_QUEUES}");
        causes.push(Cause::invalid(&queues_field, &json!(queues), &detail));
    }
    let hand_field = format!("{path}.handSize");
    // shufflesharding's `RequiredEntropyBits`: ⌈log2(deck) × hand⌉.
    let entropy = ((queues as f64).log2() * hand as f64).ceil();
    if hand <= 0 {
        causes.push(Cause::invalid(&hand_field, &json!(hand), "must be positive"));
    } else if hand > queues {
        let detail = format!("should not be greater than queues ({queues})");
        causes.push(Cause::invalid(&hand_field, &json!(hand), &detail));
    } else if entropy > MAX_HASH_BITS {
        let detail = format!(
            "required entropy bits of deckSize {queues} and handSize {hand} should not be greater than 60"
        );
        causes.push(Cause::invalid(&hand_field, &json!(hand), &detail));
    }
}

/// A spec as Go's semantic equality compares it: no nulls, empty lists, empty maps or
/// `false` (the zero values Go cannot tell from absent).
fn comparable(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), comparable(v)))
                .filter(|(_, v)| !is_zero(v))
                .collect(),
        ),
        Value::Array(list) => Value::Array(list.iter().map(comparable).collect()),
        other => other.clone(),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Every verb, group, resource and namespace, cluster-wide, and every non-resource URL.
fn everything() -> Value {
    json!({
        "resourceRules": [{ "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"], "clusterScope": true }],
        "nonResourceRules": [{ "verbs": ["*"], "nonResourceURLs": ["*"] }]
    })
}

/// The fixed spec of a mandatory FlowSchema, as defaulted.
fn mandatory_flow_schema(name: &str) -> Option<Value> {
    let group = |name: &str| json!({ "kind": "Group", "group": { "name": name } });
    let mut rule = everything();
    let spec = match name {
        "exempt" => {
            rule["subjects"] = json!([group("system:masters")]);
            json!({ "priorityLevelConfiguration": { "name": "exempt" }, "matchingPrecedence": 1 })
        }
        "catch-all" => {
            rule["subjects"] =
                json!([group("system:unauthenticated"), group("system:authenticated")]);
            json!({ "priorityLevelConfiguration": { "name": "catch-all" }, "matchingPrecedence": 10000,
                "distinguisherMethod": { "type": "ByUser" } })
        }
        _ => return None,
    };
    let mut spec = spec;
    spec["rules"] = json!([rule]);
    Some(spec)
}

/// The fixed spec of a mandatory PriorityLevelConfiguration, as defaulted.
fn mandatory_priority_level(name: &str) -> Option<Value> {
    match name {
        "exempt" => Some(json!({ "type": "Exempt",
            "exempt": { "nominalConcurrencyShares": 0, "lendablePercent": 0 } })),
        "catch-all" => Some(json!({ "type": "Limited", "limited": { "nominalConcurrencyShares": 5,
            "lendablePercent": 0, "limitResponse": { "type": "Reject" } } })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{flow_schema, mandatory_flow_schema, priority_level};

    fn messages(check: fn(&Value, &mut Vec<crate::status::Cause>), object: Value) -> Vec<String> {
        let mut causes = Vec::new();
        check(&object, &mut causes);
        causes.into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn flow_schema_rules() {
        let schema = json!({ "metadata": { "name": "web" }, "spec": {
            "priorityLevelConfiguration": { "name": "" }, "matchingPrecedence": 1,
            "distinguisherMethod": { "type": "ByColor" },
            "rules": [{ "subjects": [{ "kind": "User", "group": { "name": "g" } }],
                "resourceRules": [{ "verbs": ["get", "fly"], "apiGroups": ["*", "apps"], "resources": ["pods"] }],
                "nonResourceRules": [{ "verbs": ["*"], "nonResourceURLs": ["/healthz/*/x"] }] }]
        } });
        assert_eq!(
            messages(flow_schema, schema),
            [
                "spec.matchingPrecedence: Invalid value: 1: only the schema named 'exempt' may have matchingPrecedence 1",
                "spec.distinguisherMethod.type: Unsupported value: flowcontrol.FlowDistinguisherMethod{Type:\"ByColor\"}: supported values: \"ByNamespace\", \"ByUser\"",
                "spec.priorityLevelConfiguration.name: Required value: must reference a priority level",
                "spec.rules[0].subjects[0].user: Required value: user is required when subject kind is 'User'",
                "spec.rules[0].subjects[0].group: Forbidden: group is forbidden when subject kind is not 'Group'",
                "spec.rules[0].resourceRules[0].verbs: Unsupported value: []string{\"get\", \"fly\"}: supported values: \"create\", \"delete\", \"deletecollection\", \"get\", \"list\", \"patch\", \"proxy\", \"update\", \"watch\"",
                "spec.rules[0].resourceRules[0].apiGroups: Invalid value: []string{\"*\", \"apps\"}: if '*' is present, must not specify other api groups",
                "spec.rules[0].resourceRules[0].namespaces: Required value: resource rules that are not cluster scoped must supply at least one namespace",
                "spec.rules[0].nonResourceRules[0].nonResourceURLs[0]: Invalid value: \"/healthz/*/x\": wildcard can only do suffix matching",
            ]
        );
    }

    #[test]
    fn mandatory_objects_have_fixed_specs() {
        let exempt = json!({ "metadata": { "name": "exempt" }, "spec": mandatory_flow_schema("exempt").unwrap() });
        assert!(messages(flow_schema, exempt.clone()).is_empty());
        let mut changed = exempt;
        changed["spec"]["rules"][0]["nonResourceRules"] = json!([]);
        let found = messages(flow_schema, changed);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].ends_with(": spec of 'exempt' must equal the fixed value"), "{found:?}");

        let level = |spec: Value| json!({ "metadata": { "name": "exempt" }, "spec": spec });
        let shares = json!({ "type": "Exempt", "exempt": { "nominalConcurrencyShares": 10, "lendablePercent": 50 } });
        assert!(messages(priority_level, level(shares)).is_empty(), "exempt may set spec.exempt");
        let found = messages(
            priority_level,
            level(json!({ "type": "Limited", "limited": {
            "nominalConcurrencyShares": 5, "lendablePercent": 0, "limitResponse": { "type": "Reject" } } })),
        );
        assert_eq!(
            found[0],
            "spec.type: Invalid value: \"Limited\": must be 'Exempt' if and only if `name` is 'exempt'"
        );
        assert!(found[1].ends_with(
            "spec of 'exempt' except the 'spec.exempt' field must equal the fixed value"
        ));
    }

    #[test]
    fn queuing_limits() {
        let level = json!({ "metadata": { "name": "big" }, "spec": { "type": "Limited", "limited": {
            "nominalConcurrencyShares": -1, "lendablePercent": 101,
            "limitResponse": { "type": "Queue", "queuing": { "queues": 128, "handSize": 10, "queueLengthLimit": 50 } } } } });
        assert_eq!(
            messages(priority_level, level),
            [
                "spec.limited.nominalConcurrencyShares: Invalid value: -1: must be a non-negative integer",
                "spec.limited.limitResponse.queuing.handSize: Invalid value: 10: required entropy bits of deckSize 128 and handSize 10 should not be greater than 60",
                "spec.limited.lendablePercent: Invalid value: 101: must be between 0 and 100, inclusive",
            ]
        );
    }
}

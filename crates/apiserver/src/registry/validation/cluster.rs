//! RBAC, nodes, disruption budgets, priority and storage classes, leases, ingresses.

use serde_json::{Value, json};

use super::{immutable, non_negative, not_supported, one_of, required};
use crate::status::Cause;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Roles and ClusterRoles: every rule names verbs, and either resources (with API
/// groups) or, cluster-wide only, non-resource URLs.
pub fn role(plural: &str, object: &Value, causes: &mut Vec<Cause>) {
    let namespaced = plural == "roles";
    for (i, rule) in object["rules"].as_array().into_iter().flatten().enumerate() {
        let field = format!("rules[{i}]");
        if rule["verbs"].as_array().is_none_or(Vec::is_empty) {
            required(&format!("{field}.verbs"), causes);
        }
        let urls = rule["nonResourceURLs"].as_array().is_some_and(|u| !u.is_empty());
        let resources = rule["resources"].as_array().is_some_and(|r| !r.is_empty());
        if urls && namespaced {
            causes.push(Cause::invalid(
                &format!("{field}.nonResourceURLs"),
                &rule["nonResourceURLs"],
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if urls && resources {
            causes.push(Cause::invalid(
                &format!("{field}.nonResourceURLs"),
                &rule["nonResourceURLs"],
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        if !urls && !resources {
            required(&format!("{field}.resources"), causes);
        }
        if resources && rule["apiGroups"].as_array().is_none_or(Vec::is_empty) {
            required(&format!("{field}.apiGroups"), causes);
        }
    }
}

/// RoleBindings and ClusterRoleBindings: a role reference and well-formed subjects.
pub fn binding(plural: &str, object: &Value, causes: &mut Vec<Cause>) {
    let role_ref = &object["roleRef"];
    let allowed: &[&str] =
        if plural == "rolebindings" { &["Role", "ClusterRole"] } else { &["ClusterRole"] };
    match role_ref["kind"].as_str() {
        None | Some("") => required("roleRef.kind", causes),
        Some(kind) if !allowed.contains(&kind) => {
            not_supported("roleRef.kind", &role_ref["kind"], allowed, causes)
        }
        Some(_) => {}
    }
    if role_ref["apiGroup"] != RBAC_GROUP {
        not_supported("roleRef.apiGroup", &role_ref["apiGroup"], &[RBAC_GROUP], causes);
    }
    if role_ref["name"].as_str().is_none_or(str::is_empty) {
        required("roleRef.name", causes);
    }
    for (i, subject) in object["subjects"].as_array().into_iter().flatten().enumerate() {
        let field = format!("subjects[{i}]");
        if subject["name"].as_str().is_none_or(str::is_empty) {
            required(&format!("{field}.name"), causes);
        }
        match subject["kind"].as_str() {
            Some("ServiceAccount") => {
                if !subject["apiGroup"].as_str().is_none_or(str::is_empty) {
                    not_supported(
                        &format!("{field}.apiGroup"),
                        &subject["apiGroup"],
                        &[""],
                        causes,
                    );
                }
                if plural == "clusterrolebindings"
                    && subject["namespace"].as_str().is_none_or(str::is_empty)
                {
                    required(&format!("{field}.namespace"), causes);
                }
            }
            Some("User" | "Group") => {
                if subject["apiGroup"] != RBAC_GROUP {
                    not_supported(
                        &format!("{field}.apiGroup"),
                        &subject["apiGroup"],
                        &[RBAC_GROUP],
                        causes,
                    );
                }
            }
            _ => not_supported(
                &format!("{field}.kind"),
                &subject["kind"],
                &["ServiceAccount", "User", "Group"],
                causes,
            ),
        }
    }
}

/// A binding's role reference never changes (a new binding is made instead).
pub fn binding_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    if old["roleRef"] != new["roleRef"] {
        causes.push(Cause::invalid("roleRef", &new["roleRef"], "cannot change roleRef"));
    }
}

pub fn node(object: &Value, causes: &mut Vec<Cause>) {
    for (i, taint) in object["spec"]["taints"].as_array().into_iter().flatten().enumerate() {
        let field = format!("spec.taints[{i}]");
        if taint["key"].as_str().is_none_or(str::is_empty) {
            required(&format!("{field}.key"), causes);
        }
        match taint["effect"].as_str() {
            None | Some("") => required(&format!("{field}.effect"), causes),
            Some(_) => one_of(
                &taint["effect"],
                &format!("{field}.effect"),
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
                causes,
            ),
        }
    }
}

pub fn disruption_budget(object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    if !spec["minAvailable"].is_null() && !spec["maxUnavailable"].is_null() {
        causes.push(Cause::invalid(
            "spec",
            spec,
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for field in ["minAvailable", "maxUnavailable"] {
        match &spec[field] {
            Value::Number(n) if n.as_i64().is_some_and(|n| n < 0) => {
                causes.push(Cause::invalid(
                    &format!("spec.{field}"),
                    &spec[field],
                    "must be greater than or equal to 0",
                ));
            }
            Value::String(s)
                if !s.ends_with('%')
                    || s.trim_end_matches('%').parse::<u32>().map_or(true, |p| p > 100) =>
            {
                causes.push(Cause::invalid(
                    &format!("spec.{field}"),
                    &spec[field],
                    "must be an integer or percentage (e.g '5%')",
                ));
            }
            _ => {}
        }
    }
    one_of(
        &spec["unhealthyPodEvictionPolicy"],
        "spec.unhealthyPodEvictionPolicy",
        &["AlwaysAllow", "IfHealthyBudget"],
        causes,
    );
}

/// User priority classes stay at or below one billion; `system-` names are reserved.
pub fn priority_class(object: &Value, causes: &mut Vec<Cause>) {
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let value = object["value"].as_i64().unwrap_or(0);
    let system = name.starts_with("system-");
    if system && !["system-cluster-critical", "system-node-critical"].contains(&name) {
        causes.push(Cause::forbidden(
            "metadata.name",
            "priority class names with 'system-' prefix are reserved for system use only",
        ));
    }
    if !system && value > 1_000_000_000 {
        causes.push(Cause::forbidden(
            "value",
            "maximum allowed value of a user defined priority is 1000000000",
        ));
    }
    one_of(
        &object["preemptionPolicy"],
        "preemptionPolicy",
        &["PreemptLowerPriority", "Never"],
        causes,
    );
}

pub fn priority_class_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    immutable(&old["value"], &new["value"], "value", causes);
    immutable(&old["preemptionPolicy"], &new["preemptionPolicy"], "preemptionPolicy", causes);
}

pub fn storage_class(object: &Value, causes: &mut Vec<Cause>) {
    if object["provisioner"].as_str().is_none_or(str::is_empty) {
        required("provisioner", causes);
    }
    one_of(&object["reclaimPolicy"], "reclaimPolicy", &["Delete", "Retain"], causes);
    one_of(
        &object["volumeBindingMode"],
        "volumeBindingMode",
        &["Immediate", "WaitForFirstConsumer"],
        causes,
    );
}

pub fn storage_class_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    for field in ["parameters", "provisioner", "reclaimPolicy", "volumeBindingMode"] {
        immutable(&old[field], &new[field], field, causes);
    }
}

pub fn lease(object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    if let Some(duration) = spec["leaseDurationSeconds"].as_i64()
        && duration <= 0
    {
        causes.push(Cause::invalid(
            "spec.leaseDurationSeconds",
            &json!(duration),
            "must be greater than 0",
        ));
    }
    non_negative(&spec["leaseTransitions"], "spec.leaseTransitions", causes);
}

pub fn ingress(object: &Value, causes: &mut Vec<Cause>) {
    for (i, rule) in object["spec"]["rules"].as_array().into_iter().flatten().enumerate() {
        for (j, path) in rule["http"]["paths"].as_array().into_iter().flatten().enumerate() {
            let field = format!("spec.rules[{i}].http.paths[{j}]");
            match path["pathType"].as_str() {
                None | Some("") => required(&format!("{field}.pathType"), causes),
                Some(_) => one_of(
                    &path["pathType"],
                    &format!("{field}.pathType"),
                    &["Exact", "ImplementationSpecific", "Prefix"],
                    causes,
                ),
            }
            if path["pathType"] != "ImplementationSpecific"
                && !path["path"].as_str().is_some_and(|p| p.starts_with('/'))
            {
                causes.push(Cause::invalid(
                    &format!("{field}.path"),
                    &path["path"],
                    "must be an absolute path",
                ));
            }
            let backend = &path["backend"];
            if backend["service"].is_null() && backend["resource"].is_null() {
                required(&format!("{field}.backend"), causes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(causes: &[Cause]) -> Vec<String> {
        causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn rbac_rules_and_bindings() {
        let mut causes = Vec::new();
        role(
            "roles",
            &json!({"rules": [{"resources": ["pods"]}, {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
            &mut causes,
        );
        assert_eq!(
            messages(&causes),
            [
                "rules[0].verbs: Required value",
                "rules[0].apiGroups: Required value",
                "rules[1].nonResourceURLs: Invalid value: [\"/healthz\"]: namespaced rules cannot apply to non-resource URLs",
            ]
        );
        let mut causes = Vec::new();
        binding(
            "clusterrolebindings",
            &json!({"roleRef": {"kind": "Role", "apiGroup": RBAC_GROUP, "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "sa"}]}),
            &mut causes,
        );
        assert_eq!(
            messages(&causes),
            [
                "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                "subjects[0].namespace: Required value",
            ]
        );
        let mut causes = Vec::new();
        binding_update(
            &json!({"roleRef": {"name": "a"}}),
            &json!({"roleRef": {"name": "b"}}),
            &mut causes,
        );
        assert_eq!(causes[0].message, "Invalid value: {\"name\":\"b\"}: cannot change roleRef");
    }

    #[test]
    fn budgets_priorities_and_taints() {
        let mut causes = Vec::new();
        disruption_budget(
            &json!({"spec": {"minAvailable": 1, "maxUnavailable": "150%"}}),
            &mut causes,
        );
        assert_eq!(causes.len(), 2);
        let mut causes = Vec::new();
        priority_class(
            &json!({"metadata": {"name": "system-mine"}, "value": 2_000_000_000}),
            &mut causes,
        );
        assert_eq!(causes[0].reason, "FieldValueForbidden");
        let mut causes = Vec::new();
        node(&json!({"spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}}), &mut causes);
        assert_eq!(
            messages(&causes),
            [
                "spec.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""
            ]
        );
    }
}

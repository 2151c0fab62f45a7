//! Pod specs (also inside every workload's template) and what a pod update may change.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::{duplicate, not_supported, one_of, port_name_problem, port_number, required};
use crate::meta::dns_label_problem;
use crate::quantity::Quantity;
use crate::status::Cause;

/// `ValidatePodSpec`, at `path` (`spec` or `spec.template.spec`).
pub fn spec(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let volumes = volumes(spec, path, causes);
    let containers = spec["containers"].as_array().map_or(&[][..], Vec::as_slice);
    if containers.is_empty() {
        required(&format!("{path}.containers"), causes);
    }
    let mut names = HashSet::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            container(c, &format!("{path}.{list}[{i}]"), &volumes, &mut names, causes);
        }
    }
    ephemeral_containers(spec, path, causes);
    one_of(
        &spec["restartPolicy"],
        &format!("{path}.restartPolicy"),
        &["Always", "OnFailure", "Never"],
        causes,
    );
    one_of(
        &spec["dnsPolicy"],
        &format!("{path}.dnsPolicy"),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        causes,
    );
    if let Some(grace) = spec["terminationGracePeriodSeconds"].as_i64()
        && grace < 0
    {
        causes.push(Cause::invalid(
            &format!("{path}.terminationGracePeriodSeconds"),
            &json!(grace),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(deadline) = spec["activeDeadlineSeconds"].as_i64()
        && deadline <= 0
    {
        causes.push(Cause::invalid(
            &format!("{path}.activeDeadlineSeconds"),
            &json!(deadline),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
}

/// The fields of a container an ephemeral one may not set, in the Go struct's order:
/// those upstream's `allowedEphemeralContainerFields` leaves out.
const NOT_FOR_EPHEMERAL: [&str; 9] = [
    "ports",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "restartPolicyRules",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
];

/// What only ephemeral containers are held to (upstream's `validateEphemeralContainers`):
/// a target among the pod's other containers, none of the fields that would make them
/// part of the workload, no subpaths.
fn ephemeral_containers(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let others: HashSet<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|list| spec[*list].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    for (i, c) in spec["ephemeralContainers"].as_array().into_iter().flatten().enumerate() {
        let field = format!("{path}.ephemeralContainers[{i}]");
        if let Some(target) = c["targetContainerName"].as_str()
            && !target.is_empty()
            && !others.contains(target)
        {
            causes.push(Cause {
                reason: "FieldValueNotFound",
                message: format!("Not found: {target:?}"),
                field: format!("{field}.targetContainerName"),
            });
        }
        for name in NOT_FOR_EPHEMERAL {
            // Set means not Go's zero value: an empty `resources` is zero, a probe is not.
            let set = match &c[name] {
                Value::Null => false,
                Value::Array(items) => !items.is_empty(),
                Value::Object(fields) => name != "resources" || !fields.is_empty(),
                _ => true,
            };
            if set {
                let at = format!("{field}.{name}");
                causes.push(Cause::forbidden(&at, "cannot be set for an Ephemeral Container"));
            }
        }
        for (j, mount) in c["volumeMounts"].as_array().into_iter().flatten().enumerate() {
            for sub in ["subPath", "subPathExpr"] {
                if mount[sub].as_str().is_some_and(|v| !v.is_empty()) {
                    let at = format!("{field}.volumeMounts[{j}].{sub}");
                    causes.push(Cause::forbidden(&at, "cannot be set for an Ephemeral Container"));
                }
            }
        }
    }
}

/// Volume names, unique DNS labels with exactly one source; returns the names.
fn volumes(spec: &Value, path: &str, causes: &mut Vec<Cause>) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, volume) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        let field = format!("{path}.volumes[{i}]");
        let name = volume["name"].as_str().unwrap_or("");
        if name.is_empty() {
            required(&format!("{field}.name"), causes);
        } else if let Some(problem) = dns_label_problem(name) {
            causes.push(Cause::invalid(&format!("{field}.name"), &json!(name), &problem));
        } else if !names.insert(name.to_owned()) {
            duplicate(&format!("{field}.name"), &json!(name), causes);
        }
        let sources = volume
            .as_object()
            .map_or(0, |v| v.iter().filter(|(k, v)| *k != "name" && !v.is_null()).count());
        match sources {
            0 => causes.push(Cause::required(&field, "must specify a volume type")),
            1 => {}
            _ => causes.push(Cause::forbidden(&field, "may not specify more than 1 volume type")),
        }
    }
    names
}

fn container(
    c: &Value,
    path: &str,
    volumes: &HashSet<String>,
    names: &mut HashSet<String>,
    causes: &mut Vec<Cause>,
) {
    let name = c["name"].as_str().unwrap_or("");
    if name.is_empty() {
        required(&format!("{path}.name"), causes);
    } else if let Some(problem) = dns_label_problem(name) {
        causes.push(Cause::invalid(&format!("{path}.name"), &json!(name), &problem));
    } else if !names.insert(name.to_owned()) {
        duplicate(&format!("{path}.name"), &json!(name), causes);
    }
    if c["image"].as_str().is_none_or(|i| i.trim().is_empty()) {
        required(&format!("{path}.image"), causes);
    }
    one_of(
        &c["imagePullPolicy"],
        &format!("{path}.imagePullPolicy"),
        &["Always", "IfNotPresent", "Never"],
        causes,
    );
    one_of(
        &c["terminationMessagePolicy"],
        &format!("{path}.terminationMessagePolicy"),
        &["File", "FallbackToLogsOnError"],
        causes,
    );
    let mut port_names = HashSet::new();
    for (i, port) in c["ports"].as_array().into_iter().flatten().enumerate() {
        let field = format!("{path}.ports[{i}]");
        port_number(&port["containerPort"], &format!("{field}.containerPort"), causes);
        if !port["hostPort"].is_null() && port["hostPort"] != 0 {
            port_number(&port["hostPort"], &format!("{field}.hostPort"), causes);
        }
        if let Some(protocol) = port["protocol"].as_str()
            && !["TCP", "UDP", "SCTP"].contains(&protocol)
        {
            not_supported(
                &format!("{field}.protocol"),
                &port["protocol"],
                &["SCTP", "TCP", "UDP"],
                causes,
            );
        }
        if let Some(port_name) = port["name"].as_str() {
            if let Some(problem) = port_name_problem(port_name) {
                causes.push(Cause::invalid(&format!("{field}.name"), &port["name"], problem));
            } else if !port_names.insert(port_name.to_owned()) {
                duplicate(&format!("{field}.name"), &port["name"], causes);
            }
        }
    }
    for (i, mount) in c["volumeMounts"].as_array().into_iter().flatten().enumerate() {
        let field = format!("{path}.volumeMounts[{i}]");
        match mount["name"].as_str() {
            None | Some("") => required(&format!("{field}.name"), causes),
            Some(v) if !volumes.contains(v) => causes.push(Cause {
                reason: "FieldValueNotFound",
                message: format!("Not found: {v:?}"),
                field: format!("{field}.name"),
            }),
            Some(_) => {}
        }
        if mount["mountPath"].as_str().is_none_or(str::is_empty) {
            required(&format!("{field}.mountPath"), causes);
        }
    }
    for (i, env) in c["env"].as_array().into_iter().flatten().enumerate() {
        let env_name = env["name"].as_str().unwrap_or("");
        let field = format!("{path}.env[{i}].name");
        if env_name.is_empty() {
            required(&field, causes);
        } else if env_name.contains('=') || !env_name.chars().all(|ch| (' '..='~').contains(&ch)) {
            causes.push(Cause::invalid(&field, &env["name"], "a valid environment variable name must consist only of printable ASCII characters other than '='"));
        }
    }
    resources(&c["resources"], &format!("{path}.resources"), causes);
}

/// Requests may not exceed limits.
fn resources(resources: &Value, path: &str, causes: &mut Vec<Cause>) {
    let (Some(requests), Some(limits)) =
        (resources["requests"].as_object(), resources["limits"].as_object())
    else {
        return;
    };
    for (resource, request) in requests {
        let (Some(limit), Some(req)) = (limits.get(resource), request.as_str()) else { continue };
        if let (Some(r), Some(l)) = (Quantity::parse(req), limit.as_str().and_then(Quantity::parse))
            && r > l
        {
            causes.push(Cause::invalid(
                &format!("{path}.requests"),
                request,
                &format!(
                    "must be less than or equal to {resource} limit of {}",
                    limit.as_str().unwrap_or("")
                ),
            ));
        }
    }
}

/// What a pod update may change in the spec: container images, the active deadline,
/// added tolerations, removed scheduling gates (and, while gated, added node selector
/// entries), a negative grace period set to 1.
pub fn update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    let mut comparable = new["spec"].clone();
    let old_spec = &old["spec"];
    for list in ["containers", "initContainers"] {
        let (Some(new_list), Some(old_list)) =
            (comparable[list].as_array_mut(), old_spec[list].as_array())
        else {
            continue;
        };
        for (n, o) in new_list.iter_mut().zip(old_list) {
            keep_old(n, o, "image");
        }
    }
    keep_old(&mut comparable, old_spec, "activeDeadlineSeconds");
    if let (Some(new_tolerations), Some(old_tolerations)) =
        (comparable["tolerations"].as_array(), old_spec["tolerations"].as_array())
        && old_tolerations.iter().all(|t| new_tolerations.contains(t))
    {
        keep_old(&mut comparable, old_spec, "tolerations");
    }
    if old_spec["terminationGracePeriodSeconds"].as_i64().is_some_and(|g| g < 0)
        && comparable["terminationGracePeriodSeconds"] == 1
    {
        keep_old(&mut comparable, old_spec, "terminationGracePeriodSeconds");
    }
    // Scheduling gates may only be removed.
    let gates = |spec: &Value| -> Vec<String> {
        spec["schedulingGates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g["name"].as_str().map(str::to_owned))
            .collect()
    };
    let old_gates = gates(old_spec);
    for (i, gate) in gates(&comparable).iter().enumerate() {
        if !old_gates.contains(gate) {
            causes.push(Cause::forbidden(
                &format!("spec.schedulingGates[{i}].name"),
                &format!("only deletion is allowed, but found new scheduling gate '{gate}'"),
            ));
        }
    }
    keep_old(&mut comparable, old_spec, "schedulingGates");
    // A gated pod may gain node selector entries (none changed or removed).
    if !old_gates.is_empty() && comparable["nodeSelector"] != old_spec["nodeSelector"] {
        let kept = old_spec["nodeSelector"]
            .as_object()
            .into_iter()
            .flatten()
            .all(|(k, v)| comparable["nodeSelector"].get(k) == Some(v));
        if !kept {
            causes.push(Cause::invalid(
                "spec.nodeSelector",
                &comparable["nodeSelector"],
                "only additions to spec.nodeSelector are allowed (no mutations or deletions)",
            ));
        }
        keep_old(&mut comparable, old_spec, "nodeSelector");
    }
    // Binding fills in the node once; the scheduler's write is not a user's change.
    if old_spec["nodeName"].as_str().is_none_or(str::is_empty) {
        keep_old(&mut comparable, old_spec, "nodeName");
    }
    if comparable != *old_spec && strip_nulls(&comparable) != strip_nulls(old_spec) {
        causes.push(Cause::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
}

/// Sets `field` of `comparable` to `old`'s, absent if `old` has none: the fields an
/// update may change compare equal.
fn keep_old(comparable: &mut Value, old: &Value, field: &str) {
    match (comparable.as_object_mut(), old.get(field)) {
        (Some(map), Some(value)) => {
            map.insert(field.to_owned(), value.clone());
        }
        (Some(map), None) => {
            map.remove(field);
        }
        (None, _) => {}
    }
}

fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(causes: &[Cause]) -> Vec<String> {
        causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn a_pod_spec_is_checked_as_upstream_checks_it() {
        let bad = json!({
            "restartPolicy": "Sometimes",
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [
                {"name": "app", "image": "nginx", "ports": [{"containerPort": 70000, "protocol": "HTTP"}],
                 "volumeMounts": [{"name": "nope", "mountPath": "/x"}],
                 "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}},
                {"name": "app", "image": ""}
            ]
        });
        let mut causes = Vec::new();
        spec(&bad, "spec", &mut causes);
        assert_eq!(
            fields(&causes),
            [
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.containers[0].volumeMounts[0].name: Not found: \"nope\"",
                "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 500m",
                "spec.containers[1].name: Duplicate value: \"app\"",
                "spec.containers[1].image: Required value",
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ]
        );
    }

    #[test]
    fn a_pod_update_may_change_images_only() {
        let old = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}]}});
        let mut causes = Vec::new();
        update(
            &old,
            &json!({"spec": {"containers": [{"name": "a", "image": "x:2"}]}}),
            &mut causes,
        );
        assert!(causes.is_empty(), "{causes:?}");
        update(
            &old,
            &json!({"spec": {"containers": [{"name": "a", "image": "x:1", "args": ["-v"]}]}}),
            &mut causes,
        );
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].reason, "FieldValueForbidden");
    }

    #[test]
    fn scheduling_gates_may_only_be_removed_and_gated_pods_gain_selectors() {
        let c = json!([{"name": "a", "image": "x"}]);
        let old = json!({"spec": {"containers": c, "schedulingGates": [{"name": "g1"}, {"name": "g2"}],
                                   "nodeSelector": {"disk": "ssd"}}});
        let mut causes = Vec::new();
        // Removing a gate and adding a selector entry while gated.
        let new = json!({"spec": {"containers": c, "schedulingGates": [{"name": "g2"}],
                                   "nodeSelector": {"disk": "ssd", "zone": "a"}}});
        update(&old, &new, &mut causes);
        assert!(causes.is_empty(), "{causes:?}");
        let new = json!({"spec": {"containers": c, "schedulingGates": [{"name": "g3"}],
                                   "nodeSelector": {"disk": "hdd"}}});
        update(&old, &new, &mut causes);
        assert_eq!(
            fields(&causes),
            [
                "spec.schedulingGates[0].name: Forbidden: only deletion is allowed, but found new scheduling gate 'g3'",
                "spec.nodeSelector: Invalid value: {\"disk\":\"hdd\"}: only additions to spec.nodeSelector are allowed (no mutations or deletions)",
            ]
        );
        // Without gates, the selector is as immutable as the rest.
        let ungated = json!({"spec": {"containers": c, "nodeSelector": {"disk": "ssd"}}});
        let mut causes = Vec::new();
        update(
            &ungated,
            &json!({"spec": {"containers": c, "nodeSelector": {"disk": "ssd", "zone": "a"}}}),
            &mut causes,
        );
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec");
    }
}

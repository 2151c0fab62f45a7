//! The FlowSchemas and PriorityLevelConfigurations every 1.34 cluster starts with
//! (upstream's `apis/flowcontrol/bootstrap`): the mandatory `exempt` and `catch-all`
//! pairs, and the suggested levels and schemas that give nodes, leader election, the
//! control plane's components and workloads their own shares.

use serde_json::{Value, json};

/// Whether the API server keeps an object's spec as the bootstrap configuration has it
/// (upstream's `apf.kubernetes.io/autoupdate-spec`).
pub const AUTO_UPDATE: &str = "apf.kubernetes.io/autoupdate-spec";

fn object(name: &str, spec: Value) -> Value {
    json!({
        "metadata": { "name": name, "annotations": { AUTO_UPDATE: "true" } },
        "spec": spec,
    })
}

fn queued(shares: i32, lendable: i32, queues: i32, hand_size: i32) -> Value {
    json!({
        "type": "Limited",
        "limited": {
            "nominalConcurrencyShares": shares,
            "lendablePercent": lendable,
            "limitResponse": {
                "type": "Queue",
                "queuing": { "queues": queues, "handSize": hand_size, "queueLengthLimit": 50 },
            },
        },
    })
}

fn groups(names: &[&str]) -> Value {
    names.iter().map(|name| json!({ "kind": "Group", "group": { "name": name } })).collect()
}

fn users(names: &[&str]) -> Value {
    names.iter().map(|name| json!({ "kind": "User", "user": { "name": name } })).collect()
}

fn kube_system_service_accounts() -> Value {
    json!([{ "kind": "ServiceAccount", "serviceAccount": { "name": "*", "namespace": "kube-system" } }])
}

/// Every verb on every resource (cluster-scoped ones too) and every non-resource URL.
fn everything(subjects: Value) -> Value {
    json!({
        "subjects": subjects,
        "resourceRules": [{
            "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
            "namespaces": ["*"], "clusterScope": true,
        }],
        "nonResourceRules": [{ "verbs": ["*"], "nonResourceURLs": ["*"] }],
    })
}

fn schema(name: &str, level: &str, precedence: i32, by: Option<&str>, rule: Value) -> Value {
    let mut spec = json!({
        "priorityLevelConfiguration": { "name": level },
        "matchingPrecedence": precedence,
        "rules": [rule],
    });
    if let Some(by) = by {
        spec["distinguisherMethod"] = json!({ "type": by });
    }
    object(name, spec)
}

const AUTHENTICATED_OR_NOT: &[&str] = &["system:unauthenticated", "system:authenticated"];

pub fn mandatory_levels() -> Vec<Value> {
    vec![
        object(
            "catch-all",
            json!({
                "type": "Limited",
                "limited": {
                    "nominalConcurrencyShares": 5,
                    "lendablePercent": 0,
                    "limitResponse": { "type": "Reject" },
                },
            }),
        ),
        object(
            "exempt",
            json!({
                "type": "Exempt",
                "exempt": { "nominalConcurrencyShares": 0, "lendablePercent": 0 },
            }),
        ),
    ]
}

pub fn mandatory_schemas() -> Vec<Value> {
    vec![
        schema("exempt", "exempt", 1, None, everything(groups(&["system:masters"]))),
        schema(
            "catch-all",
            "catch-all",
            10000,
            Some("ByUser"),
            everything(groups(AUTHENTICATED_OR_NOT)),
        ),
    ]
}

pub fn suggested_levels() -> Vec<Value> {
    vec![
        object("system", queued(30, 33, 64, 6)),
        object("node-high", queued(40, 25, 64, 6)),
        object("leader-election", queued(10, 0, 16, 4)),
        object("workload-high", queued(40, 50, 128, 6)),
        object("workload-low", queued(100, 90, 128, 6)),
        object("global-default", queued(20, 50, 128, 6)),
    ]
}

pub fn suggested_schemas() -> Vec<Value> {
    let nodes = groups(&["system:nodes"]);
    let mut leader_election = users(&["system:kube-controller-manager", "system:kube-scheduler"]);
    if let (Some(all), Some(accounts)) =
        (leader_election.as_array_mut(), kube_system_service_accounts().as_array())
    {
        all.extend(accounts.iter().cloned());
    }
    vec![
        schema("system-nodes", "system", 500, Some("ByUser"), everything(nodes.clone())),
        schema(
            "system-node-high",
            "node-high",
            400,
            Some("ByUser"),
            json!({
                "subjects": nodes,
                "resourceRules": [
                    {
                        "verbs": ["*"], "apiGroups": [""], "resources": ["nodes", "nodes/status"],
                        "namespaces": ["*"], "clusterScope": true,
                    },
                    {
                        "verbs": ["*"], "apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                        "namespaces": ["*"], "clusterScope": false,
                    },
                ],
            }),
        ),
        schema(
            "probes",
            "exempt",
            2,
            None,
            json!({
                "subjects": groups(AUTHENTICATED_OR_NOT),
                "nonResourceRules": [{
                    "verbs": ["get"], "nonResourceURLs": ["/healthz", "/readyz", "/livez"],
                }],
            }),
        ),
        schema(
            "system-leader-election",
            "leader-election",
            100,
            Some("ByUser"),
            json!({
                "subjects": leader_election,
                "resourceRules": [{
                    "verbs": ["get", "create", "update"], "apiGroups": ["coordination.k8s.io"],
                    "resources": ["leases"], "namespaces": ["*"], "clusterScope": false,
                }],
            }),
        ),
        schema(
            "kube-controller-manager",
            "workload-high",
            800,
            Some("ByNamespace"),
            everything(users(&["system:kube-controller-manager"])),
        ),
        schema(
            "kube-scheduler",
            "workload-high",
            800,
            Some("ByNamespace"),
            everything(users(&["system:kube-scheduler"])),
        ),
        schema(
            "kube-system-service-accounts",
            "workload-high",
            900,
            Some("ByNamespace"),
            everything(kube_system_service_accounts()),
        ),
        schema(
            "service-accounts",
            "workload-low",
            9000,
            Some("ByUser"),
            everything(groups(&["system:serviceaccounts"])),
        ),
        schema(
            "global-default",
            "global-default",
            9900,
            Some("ByUser"),
            everything(groups(AUTHENTICATED_OR_NOT)),
        ),
    ]
}

/// What upstream's ensurer does with an existing bootstrap object: `None` to leave
/// it, or the object to write — its spec put back as the bootstrap has it when the
/// object is mandatory or still auto-updated, and the annotation saying which.
pub fn revise(current: &Value, bootstrap: &Value, mandatory: bool) -> Option<Value> {
    let annotation = current["metadata"]["annotations"][AUTO_UPDATE].as_str();
    let parsed = annotation.and_then(parse_go_bool);
    let auto_update = mandatory
        || parsed.unwrap_or_else(|| current["metadata"]["generation"].as_i64() == Some(1));
    let annotation_stale = parsed != Some(auto_update);
    let spec_stale = auto_update && current["spec"] != bootstrap["spec"];
    if !annotation_stale && !spec_stale {
        return None;
    }
    let mut revised = current.clone();
    if spec_stale {
        revised["spec"] = bootstrap["spec"].clone();
    }
    if annotation_stale {
        if !revised["metadata"]["annotations"].is_object() {
            revised["metadata"]["annotations"] = json!({});
        }
        revised["metadata"]["annotations"][AUTO_UPDATE] = json!(auto_update.to_string());
    }
    Some(revised)
}

/// Whether an object no longer in the bootstrap configuration is the API server's to
/// delete: only one still marked auto-updated.
pub fn unwanted(current: &Value) -> bool {
    current["metadata"]["annotations"][AUTO_UPDATE].as_str().and_then(parse_go_bool) == Some(true)
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_configuration_is_upstreams() {
        let names = |objects: Vec<Value>| -> Vec<String> {
            objects
                .iter()
                .map(|o| o["metadata"]["name"].as_str().unwrap_or("").to_owned())
                .collect()
        };
        assert_eq!(names(mandatory_levels()), ["catch-all", "exempt"]);
        assert_eq!(names(mandatory_schemas()), ["exempt", "catch-all"]);
        assert_eq!(
            names(suggested_levels()),
            [
                "system",
                "node-high",
                "leader-election",
                "workload-high",
                "workload-low",
                "global-default"
            ]
        );
        assert_eq!(names(suggested_schemas()).len(), 9);
        // Shares sum to 245: global-default's 20 of 600 seats are ceil(600·20/245) = 49.
        let shares: i64 = mandatory_levels()
            .iter()
            .chain(suggested_levels().iter())
            .map(|l| {
                l["spec"]["limited"]["nominalConcurrencyShares"]
                    .as_i64()
                    .or(l["spec"]["exempt"]["nominalConcurrencyShares"].as_i64())
                    .unwrap_or(-1000)
            })
            .sum();
        assert_eq!(shares, 245);
        let leader = suggested_schemas()
            .into_iter()
            .find(|s| s["metadata"]["name"] == "system-leader-election")
            .expect("leader election");
        assert_eq!(leader["spec"]["rules"][0]["subjects"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn suggested_objects_are_revised_only_while_auto_updated() {
        let boot = suggested_levels().remove(0);
        let mut edited = boot.clone();
        edited["spec"]["limited"]["nominalConcurrencyShares"] = json!(99);
        edited["metadata"]["generation"] = json!(2);
        // Still marked auto-updated: the spec goes back.
        let revised = revise(&edited, &boot, false).expect("revised");
        assert_eq!(revised["spec"], boot["spec"]);
        // An administrator's `false` keeps the edit, and the annotation as it is.
        edited["metadata"]["annotations"][AUTO_UPDATE] = json!("false");
        assert_eq!(revise(&edited, &boot, false), None);
        // Mandatory objects are always put back, and marked so.
        let revised = revise(&edited, &boot, true).expect("revised");
        assert_eq!(revised["spec"], boot["spec"]);
        assert_eq!(revised["metadata"]["annotations"][AUTO_UPDATE], "true");
        // No annotation: auto-updated while never changed (generation 1).
        let mut bare = boot.clone();
        bare["metadata"]["annotations"] = json!({});
        bare["metadata"]["generation"] = json!(1);
        assert_eq!(
            revise(&bare, &boot, false).expect("annotated")["metadata"]["annotations"][AUTO_UPDATE],
            "true"
        );
        bare["metadata"]["generation"] = json!(3);
        assert_eq!(
            revise(&bare, &boot, false).expect("annotated")["metadata"]["annotations"][AUTO_UPDATE],
            "false"
        );
        assert_eq!(revise(&boot, &boot, false), None);
        assert!(unwanted(&boot));
        assert!(!unwanted(&bare));
    }
}

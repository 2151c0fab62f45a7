//! What quota knows about each kind of object (upstream's `quota.Evaluator`s in
//! `pkg/quota/v1/evaluator/core` and the generic object counter): which quota resource
//! names it answers for, what one object uses, which scopes it falls in, and what a pod
//! must declare when a quota constrains its CPU or memory.

use std::collections::{BTreeMap, BTreeSet};

use keelson_api::k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use crate::pod::{pod_resources, qos_class};
use crate::quantity::{self, Quantity, ResourceList};

const STORAGE_CLASS: &str = ".storageclass.storage.k8s.io/";

/// The compute resources a pod is charged for (besides `count/pods`).
const POD_RESOURCES: [&str; 10] = [
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];

/// Quota names that oblige every container to declare the resource (upstream's
/// `validationSet`, kept for compatibility).
const MUST_DECLARE: [&str; 6] =
    ["cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pods,
    Services,
    Claims,
    /// Any other resource: counted only (`count/<resource>.<group>`, and the legacy
    /// name of the four that have one).
    Count,
}

/// The quota evaluator of one resource (by group and plural, so the controller manager
/// evaluates resources it only knows from discovery, custom ones included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluator {
    pub group: String,
    pub plural: String,
    kind: Kind,
}

/// `count/<resource>` or `count/<resource>.<group>` (upstream's
/// `ObjectCountQuotaResourceNameFor`).
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() { format!("count/{plural}") } else { format!("count/{plural}.{group}") }
}

fn string_list(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect()
}

/// One requirement of a quota's scope: `spec.scopes` entries are `Exists`.
#[derive(Clone, Debug)]
pub struct Scope {
    pub name: String,
    pub operator: String,
    pub values: Vec<String>,
}

/// A quota's scopes and scope selector, as requirements.
pub fn scopes(quota: &Value) -> Vec<Scope> {
    let mut scopes: Vec<Scope> = string_list(&quota["spec"]["scopes"])
        .into_iter()
        .map(|name| Scope { name, operator: "Exists".into(), values: Vec::new() })
        .collect();
    for e in quota["spec"]["scopeSelector"]["matchExpressions"].as_array().into_iter().flatten() {
        scopes.push(Scope {
            name: e["scopeName"].as_str().unwrap_or("").to_owned(),
            operator: e["operator"].as_str().unwrap_or("").to_owned(),
            values: string_list(&e["values"]),
        });
    }
    scopes
}

impl Evaluator {
    pub fn for_resource(group: &str, plural: &str) -> Evaluator {
        let kind = match (group, plural) {
            ("", "pods") => Kind::Pods,
            ("", "services") => Kind::Services,
            ("", "persistentvolumeclaims") => Kind::Claims,
            _ => Kind::Count,
        };
        Evaluator { group: group.to_owned(), plural: plural.to_owned(), kind }
    }

    /// The evaluators a quota's resource names need, each once: the reconciler counts
    /// these resources' objects. `served(group, plural)` says whether a namespaced
    /// resource is served (the served registry, or discovery, so custom resources are
    /// counted too).
    pub fn for_names<'a>(
        served: impl Fn(&str, &str) -> bool,
        names: impl IntoIterator<Item = &'a String>,
    ) -> Vec<Evaluator> {
        let find = |group: &str, plural: &str| {
            served(group, plural).then(|| Evaluator::for_resource(group, plural))
        };
        let mut found: Vec<Evaluator> = Vec::new();
        for name in names {
            let (group, plural) = if let Some(counted) = name.strip_prefix("count/") {
                let (plural, group) = counted.split_once('.').unwrap_or((counted, ""));
                (group.to_owned(), plural.to_owned())
            } else if let Some(plural) =
                ["configmaps", "secrets", "replicationcontrollers", "resourcequotas"]
                    .into_iter()
                    .find(|alias| name == alias)
            {
                (String::new(), plural.to_owned())
            } else {
                let probe = [("", "pods"), ("", "services"), ("", "persistentvolumeclaims")]
                    .into_iter()
                    .find(|(g, p)| find(g, p).is_some_and(|e| !e.matching([name]).is_empty()));
                match probe {
                    Some((g, p)) => (g.to_owned(), p.to_owned()),
                    None => continue,
                }
            };
            if let Some(evaluator) = find(&group, &plural)
                && !found.contains(&evaluator)
            {
                found.push(evaluator);
            }
        }
        found
    }

    /// The names among `names` this evaluator answers for (`MatchingResources`).
    pub fn matching<'a>(&self, names: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        let count = count_name(&self.group, &self.plural);
        names
            .into_iter()
            .filter(|name| {
                let name = name.as_str();
                name == count
                    || match self.kind {
                        Kind::Pods => {
                            POD_RESOURCES.contains(&name)
                                || name.starts_with("hugepages-")
                                || name.starts_with("requests.hugepages-")
                                || name.strip_prefix("requests.").is_some_and(is_extended)
                        }
                        Kind::Services => {
                            matches!(
                                name,
                                "services" | "services.nodeports" | "services.loadbalancers"
                            )
                        }
                        Kind::Claims => {
                            matches!(name, "persistentvolumeclaims" | "requests.storage")
                                || name.ends_with(&format!("{STORAGE_CLASS}persistentvolumeclaims"))
                                || name.ends_with(&format!("{STORAGE_CLASS}requests.storage"))
                        }
                        Kind::Count => legacy_name(&self.group, &self.plural) == Some(name),
                    }
            })
            .cloned()
            .collect()
    }

    /// Whether the write changes what quota counts (`Handles`): creates; updates of
    /// services and claims; pod updates that move the pod between the terminating scopes.
    pub fn handles(&self, create: bool, object: &Value, old: Option<&Value>) -> bool {
        if create {
            return true;
        }
        match self.kind {
            Kind::Services | Kind::Claims => true,
            Kind::Pods => old.is_some_and(|old| terminating(old) != terminating(object)),
            Kind::Count => false,
        }
    }

    /// What one object uses (`Usage`). `now` is the time in seconds, for pods past
    /// their deletion grace period.
    pub fn usage(&self, object: &Value, now: i64) -> ResourceList {
        let one = Quantity::from_int(1);
        let mut usage = ResourceList::from([(count_name(&self.group, &self.plural), one)]);
        match self.kind {
            Kind::Count => {
                if let Some(alias) = legacy_name(&self.group, &self.plural) {
                    usage.insert(alias.to_owned(), one);
                }
            }
            Kind::Services => {
                let ports = object["spec"]["ports"].as_array().map_or(0, Vec::len) as i64;
                let (node_ports, balancers) = match object["spec"]["type"].as_str() {
                    Some("NodePort") => (ports, 0),
                    Some("LoadBalancer") => (ports, 1),
                    _ => (0, 0),
                };
                usage.insert("services".into(), one);
                usage.insert("services.nodeports".into(), Quantity::from_int(node_ports));
                usage.insert("services.loadbalancers".into(), Quantity::from_int(balancers));
            }
            Kind::Claims => {
                usage.insert("persistentvolumeclaims".into(), one);
                let class =
                    object["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"]
                        .as_str()
                        .or_else(|| object["spec"]["storageClassName"].as_str())
                        .unwrap_or("");
                if !class.is_empty() {
                    usage.insert(format!("{class}{STORAGE_CLASS}persistentvolumeclaims"), one);
                }
                let requested = quantity::resource_list(&object["spec"]["resources"]["requests"])
                    .get("storage")
                    .map(|q| q.round_up());
                let allocated = quantity::resource_list(&object["status"]["allocatedResources"])
                    .get("storage")
                    .map(|q| q.round_up());
                if let Some(mut storage) = requested {
                    if let Some(allocated) = allocated.filter(|a| *a > storage) {
                        storage = allocated;
                    }
                    usage.insert("requests.storage".into(), storage);
                    if !class.is_empty() {
                        usage.insert(format!("{class}{STORAGE_CLASS}requests.storage"), storage);
                    }
                }
            }
            Kind::Pods => {
                if counts(object, now) {
                    let spec = &object["spec"];
                    let overhead = quantity::resource_list(&spec["overhead"]);
                    let mut requests = pod_resources(spec, "requests");
                    quantity::add_into(&mut requests, &overhead);
                    let mut limits = pod_resources(spec, "limits");
                    for (name, q) in &overhead {
                        if let Some(limit) = limits.get_mut(name) {
                            limit.add(q);
                        }
                    }
                    quantity::add_into(&mut usage, &compute(&requests, &limits));
                }
            }
        }
        usage
    }

    /// Whether the object falls in the scope (`MatchingScopes`); only pods have scopes.
    pub fn in_scope(&self, scope: &Scope, object: &Value) -> bool {
        if self.kind != Kind::Pods {
            return false;
        }
        let spec = &object["spec"];
        let best_effort = qos_class(spec) == "BestEffort";
        match scope.name.as_str() {
            "Terminating" => terminating(object),
            "NotTerminating" => !terminating(object),
            "BestEffort" => best_effort,
            "NotBestEffort" => !best_effort,
            "PriorityClass" => {
                let class = spec["priorityClassName"].as_str().unwrap_or("");
                let listed = scope.values.iter().any(|v| v == class);
                match scope.operator.as_str() {
                    "Exists" => !class.is_empty(),
                    "DoesNotExist" => class.is_empty(),
                    "In" => !class.is_empty() && listed,
                    "NotIn" => class.is_empty() || !listed,
                    _ => false,
                }
            }
            "CrossNamespacePodAffinity" => cross_namespace_affinity(spec),
            _ => false,
        }
    }

    /// Whether the quota covers the object: it limits something the evaluator counts
    /// and the object is in all its scopes (`generic.Matches`).
    pub fn matches(&self, quota: &Value, object: &Value) -> bool {
        let hard = quantity::resource_list(&quota["status"]["hard"]);
        !self.matching(hard.keys()).is_empty()
            && scopes(quota).iter().all(|s| self.in_scope(s, object))
    }

    /// Upstream's pod `Constraints`: when a quota limits CPU or memory, every container
    /// must declare it (unless the pod sets pod-level resources).
    pub fn constraints(&self, required: &[String], object: &Value) -> Result<(), Undeclared> {
        let spec = &object["spec"];
        let pod_level = ["requests", "limits"]
            .iter()
            .any(|f| spec["resources"][f].as_object().is_some_and(|m| !m.is_empty()));
        if self.kind != Kind::Pods || pod_level {
            return Ok(());
        }
        let required: Vec<&String> =
            required.iter().filter(|r| MUST_DECLARE.contains(&r.as_str())).collect();
        let mut missing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for list in ["containers", "initContainers"] {
            for c in spec[list].as_array().into_iter().flatten() {
                let declared = compute(
                    &quantity::resource_list(&c["resources"]["requests"]),
                    &quantity::resource_list(&c["resources"]["limits"]),
                );
                for r in &required {
                    if !declared.contains_key(r.as_str()) {
                        missing
                            .entry(r.to_string())
                            .or_default()
                            .insert(c["name"].as_str().unwrap_or("").to_owned());
                    }
                }
            }
        }
        if missing.is_empty() { Ok(()) } else { Err(Undeclared { missing }) }
    }
}

/// A pod that leaves undeclared a compute resource a quota constrains, in upstream's
/// words: `must specify limits.cpu for: a,b; requests.memory for: b`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("must specify {}", describe(.missing))]
pub struct Undeclared {
    /// Each resource left undeclared, with the containers that leave it so.
    pub missing: BTreeMap<String, BTreeSet<String>>,
}

fn describe(missing: &BTreeMap<String, BTreeSet<String>>) -> String {
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!("{r} for: {}", names.iter().cloned().collect::<Vec<_>>().join(","))
        })
        .collect();
    parts.join("; ")
}

/// The name quota used for a resource's count before `count/` (four have one).
fn legacy_name(group: &str, plural: &str) -> Option<&'static str> {
    match (group, plural) {
        ("", "configmaps") => Some("configmaps"),
        ("", "secrets") => Some("secrets"),
        ("", "replicationcontrollers") => Some("replicationcontrollers"),
        ("", "resourcequotas") => Some("resourcequotas"),
        _ => None,
    }
}

/// An extended resource (`example.com/gpu`): qualified, outside `kubernetes.io`.
fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.")
}

/// Upstream's `podComputeUsageHelper`: the quota names a set of requests and limits
/// is charged to.
fn compute(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut usage = ResourceList::from([("pods".to_owned(), Quantity::from_int(1))]);
    for resource in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(resource) {
            usage.insert(resource.to_owned(), *q);
            usage.insert(format!("requests.{resource}"), *q);
        }
        if let Some(q) = limits.get(resource) {
            usage.insert(format!("limits.{resource}"), *q);
        }
    }
    for (resource, q) in requests {
        if resource.starts_with("hugepages-") {
            usage.insert(resource.clone(), *q);
            usage.insert(format!("requests.{resource}"), *q);
        } else if is_extended(resource) {
            usage.insert(format!("requests.{resource}"), *q);
        }
    }
    usage
}

/// `IsTerminating`: the pod has an active deadline.
fn terminating(pod: &Value) -> bool {
    pod["spec"]["activeDeadlineSeconds"].as_i64().is_some_and(|s| s >= 0)
}

/// `QuotaV1Pod`: terminal pods, and pods past their deletion grace period, are not
/// charged compute resources.
fn counts(pod: &Value, now: i64) -> bool {
    if matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
        return false;
    }
    let meta = &pod["metadata"];
    let deleted = meta["deletionTimestamp"].as_str().and_then(|t| t.parse::<Timestamp>().ok());
    match (deleted, meta["deletionGracePeriodSeconds"].as_i64()) {
        (Some(at), Some(grace)) => now <= at.as_second() + grace,
        _ => true,
    }
}

/// Whether any pod (anti-)affinity term reaches other namespaces.
fn cross_namespace_affinity(spec: &Value) -> bool {
    let reaches = |term: &Value| {
        term["namespaces"].as_array().is_some_and(|n| !n.is_empty())
            || !term["namespaceSelector"].is_null()
    };
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let affinity = &spec["affinity"][kind];
        let required = affinity["requiredDuringSchedulingIgnoredDuringExecution"].as_array();
        let preferred = affinity["preferredDuringSchedulingIgnoredDuringExecution"].as_array();
        required.into_iter().flatten().any(reaches)
            || preferred.into_iter().flatten().any(|w| reaches(&w["podAffinityTerm"]))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn evaluator(group: &str, plural: &str) -> Evaluator {
        Evaluator::for_resource(group, plural)
    }

    fn builtin(group: &str, plural: &str) -> bool {
        keelson_api::Registry::builtin()
            .resources()
            .any(|r| r.group == group && r.plural == plural && r.namespaced())
    }

    #[test]
    fn pods_use_their_requests_limits_and_one_pod() {
        let pods = evaluator("", "pods");
        let pod = json!({ "spec": { "containers": [
            { "name": "a", "resources": { "requests": { "cpu": "250m", "memory": "64Mi" }, "limits": { "cpu": "500m" } } },
            { "name": "b", "resources": { "requests": { "cpu": "250m", "memory": "64Mi" } } },
        ] } });
        assert_eq!(
            quantity::pretty(&pods.usage(&pod, 0)),
            "count/pods=1,cpu=500m,limits.cpu=500m,memory=128Mi,pods=1,requests.cpu=500m,requests.memory=128Mi"
        );
        let mut done = pod.clone();
        done["status"]["phase"] = json!("Succeeded");
        assert_eq!(quantity::pretty(&pods.usage(&done, 0)), "count/pods=1");
        assert_eq!(
            pods.constraints(&["limits.cpu".into(), "requests.memory".into(), "pods".into()], &pod)
                .map_err(|e| e.to_string()),
            Err("must specify limits.cpu for: b".into())
        );
    }

    #[test]
    fn services_claims_and_other_objects_are_counted() {
        let service =
            json!({ "spec": { "type": "NodePort", "ports": [{ "port": 80 }, { "port": 443 }] } });
        assert_eq!(
            quantity::pretty(&evaluator("", "services").usage(&service, 0)),
            "count/services=1,services=1,services.loadbalancers=0,services.nodeports=2"
        );
        let claim = json!({ "spec": { "storageClassName": "gold", "resources": { "requests": { "storage": "1.5" } } } });
        assert_eq!(
            quantity::pretty(&evaluator("", "persistentvolumeclaims").usage(&claim, 0)),
            "count/persistentvolumeclaims=1,gold.storageclass.storage.k8s.io/persistentvolumeclaims=1,gold.storageclass.storage.k8s.io/requests.storage=2,persistentvolumeclaims=1,requests.storage=2"
        );
        assert_eq!(
            quantity::pretty(&evaluator("", "secrets").usage(&json!({}), 0)),
            "count/secrets=1,secrets=1"
        );
        assert_eq!(
            quantity::pretty(&evaluator("apps", "deployments").usage(&json!({}), 0)),
            "count/deployments.apps=1"
        );
        let names: Vec<String> =
            ["pods", "count/deployments.apps", "secrets", "requests.storage", "services.nodeports"]
                .map(String::from)
                .to_vec();
        let found = Evaluator::for_names(builtin, &names);
        let plurals: Vec<&str> = found.iter().map(|e| e.plural.as_str()).collect();
        assert_eq!(
            plurals,
            ["pods", "deployments", "secrets", "persistentvolumeclaims", "services"]
        );
    }

    #[test]
    fn pod_scopes_follow_deadline_qos_and_priority_class() {
        let pods = evaluator("", "pods");
        let scope = |name: &str, operator: &str, values: &[&str]| Scope {
            name: name.into(),
            operator: operator.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let pod = json!({ "spec": { "priorityClassName": "high", "activeDeadlineSeconds": 30, "containers": [{ "name": "c" }] } });
        assert!(pods.in_scope(&scope("Terminating", "Exists", &[]), &pod));
        assert!(!pods.in_scope(&scope("NotTerminating", "Exists", &[]), &pod));
        assert!(pods.in_scope(&scope("BestEffort", "Exists", &[]), &pod));
        assert!(pods.in_scope(&scope("PriorityClass", "In", &["high", "low"]), &pod));
        assert!(!pods.in_scope(&scope("PriorityClass", "NotIn", &["high"]), &pod));
        assert!(pods.in_scope(&scope("PriorityClass", "Exists", &[]), &pod));
        assert!(!pods.in_scope(&scope("PriorityClass", "DoesNotExist", &[]), &pod));
        assert!(!evaluator("", "services").in_scope(&scope("BestEffort", "Exists", &[]), &pod));
    }
}

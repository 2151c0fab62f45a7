//! Which nodes run a DaemonSet's pod (upstream's `NodeShouldRunDaemonPod` and the
//! helpers of `pkg/controller/daemon/util`): the pod the DaemonSet would put on a node,
//! with the tolerations the controller adds to every daemon pod, checked against the
//! node's name, `nodeSelector`, required node affinity and taints; the node affinity
//! that pins a created pod to its node; and the node a pod is meant for.
//!
//! Pure.

use keelson_api::k8s_openapi::api::apps::v1::DaemonSet;
use keelson_api::k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};
use keelson_core::taints::tolerates;

/// The taints and effects of the tolerations added to every daemon pod (upstream's
/// `AddOrUpdateDaemonPodTolerations`); the last only for pods on the host's network.
const AUTOMATIC: [(&str, &str); 6] = [
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];
const NETWORK_UNAVAILABLE: (&str, &str) = ("node.kubernetes.io/network-unavailable", "NoSchedule");

/// The field a node is pinned by (`metav1.ObjectNameField`).
pub const NAME_FIELD: &str = "metadata.name";

/// Adds the automatic tolerations to `spec`, replacing one with the same key and effect
/// (upstream's `AddOrUpdateTolerationInPodSpec`).
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted: Vec<(&str, &str)> = AUTOMATIC.to_vec();
    if spec.host_network == Some(true) {
        wanted.push(NETWORK_UNAVAILABLE);
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let toleration = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            value: None,
            toleration_seconds: None,
        };
        let same = |t: &Toleration| {
            t.key.as_deref() == Some(key) && t.effect.as_deref().unwrap_or_default() == effect
        };
        match tolerations.iter_mut().find(|t| same(t)) {
            Some(existing) => *existing = toleration,
            None => tolerations.push(toleration),
        }
    }
}

/// The pod `ds` would run on `node` (upstream's `NewPod`): its template with the
/// automatic tolerations, bound to the node.
pub fn new_pod(ds: &DaemonSet, node: &str) -> Pod {
    let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    spec.node_name = Some(node.to_owned());
    Pod { metadata: template.metadata.unwrap_or_default(), spec: Some(spec), status: None }
}

/// (should run, should continue running) of `ds`'s pod on `node`: not at all when the
/// name or affinity does not fit; an untolerated `NoSchedule` taint keeps a running pod,
/// an untolerated `NoExecute` one does not.
pub fn node_should_run(node: &Node, ds: &DaemonSet) -> (bool, bool) {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let template_node = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default();
    if !template_node.is_empty() && template_node != name {
        return (false, false);
    }
    let pod = new_pod(ds, name);
    let spec = pod.spec.as_ref().expect("new_pod sets a spec");
    if !fits_affinity(spec, node) {
        return (false, false);
    }
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let untolerated = |effects: &[&str]| {
        taints.iter().any(|taint: &Taint| {
            effects.contains(&taint.effect.as_str())
                && !tolerations.iter().any(|t| tolerates(t, taint))
        })
    };
    if untolerated(&["NoExecute", "NoSchedule"]) {
        return (false, !untolerated(&["NoExecute"]));
    }
    (true, true)
}

/// `nodeSelector` and required node affinity (upstream's `GetRequiredNodeAffinity`).
pub fn fits_affinity(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let by_selector = spec.node_selector.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
    by_selector && required.is_none_or(|selector| selector_matches(selector, node))
}

/// Any term matches (`NodeSelector` semantics); a term without requirements matches
/// nothing.
pub fn selector_matches(selector: &NodeSelector, node: &Node) -> bool {
    selector.node_selector_terms.iter().any(|term| term_matches(term, node))
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let name = node.metadata.name.clone().unwrap_or_default();
    expressions.iter().all(|r| requirement_matches(r, labels.get(&r.key)))
        && fields.iter().all(|r| {
            r.key == NAME_FIELD
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && requirement_matches(r, Some(&name))
        })
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |v: &str| v.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), [want]) = (value.and_then(|v| number(v)), values) else {
                return false;
            };
            let Some(want) = number(want) else { return false };
            if r.operator == "Gt" { have > want } else { have < want }
        }
        _ => false,
    }
}

/// `affinity` with its required node affinity replaced by one term pinning the pod to
/// `node` (upstream's `ReplaceDaemonSetPodNodeNameNodeAffinity`).
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let term = NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![NodeSelectorRequirement {
            key: NAME_FIELD.into(),
            operator: "In".into(),
            values: Some(vec![node.to_owned()]),
        }]),
    };
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution =
        Some(NodeSelector { node_selector_terms: vec![term] });
    affinity
}

/// The node `pod` runs on or is pinned to (upstream's `GetTargetNodeName`).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(name.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().flat_map(|t| t.match_fields.iter().flatten()).find_map(|r| {
        let values = r.values.as_deref().unwrap_or_default();
        (r.key == NAME_FIELD && r.operator == "In" && values.len() == 1).then(|| values[0].clone())
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": { "name": name, "labels": labels },
            "spec": { "taints": taints },
        }))
        .expect("node")
    }

    fn ds(spec: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": { "name": "d", "namespace": "default" },
            "spec": {
                "selector": { "matchLabels": { "app": "d" } },
                "template": { "metadata": { "labels": { "app": "d" } }, "spec": spec },
            },
        }))
        .expect("daemonset")
    }

    fn containers() -> serde_json::Value {
        json!([{ "name": "c", "image": "pause" }])
    }

    #[test]
    fn node_name_and_selector_and_affinity_limit_nodes() {
        let plain = node("n1", json!({ "disk": "ssd", "cores": "8" }), json!([]));
        assert_eq!(
            node_should_run(&plain, &ds(json!({ "containers": containers() }))),
            (true, true)
        );
        let named = ds(json!({ "containers": containers(), "nodeName": "n2" }));
        assert_eq!(node_should_run(&plain, &named), (false, false));
        let selected = ds(json!({ "containers": containers(), "nodeSelector": { "disk": "hdd" } }));
        assert_eq!(node_should_run(&plain, &selected), (false, false));
        let selected = ds(json!({ "containers": containers(), "nodeSelector": { "disk": "ssd" } }));
        assert_eq!(node_should_run(&plain, &selected), (true, true));
        let affinity = |op: &str, values: serde_json::Value| {
            ds(json!({ "containers": containers(), "affinity": { "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [
                    { "matchExpressions": [{ "key": "cores", "operator": op, "values": values }] },
                ]},
            }}}))
        };
        assert!(node_should_run(&plain, &affinity("Gt", json!(["4"]))).0);
        assert!(!node_should_run(&plain, &affinity("Lt", json!(["4"]))).0);
        assert!(node_should_run(&plain, &affinity("In", json!(["8", "16"]))).0);
        assert!(!node_should_run(&plain, &affinity("NotIn", json!(["8"]))).0);
        assert!(node_should_run(&plain, &affinity("Exists", json!([]))).0);
    }

    #[test]
    fn taints_need_tolerations_but_the_automatic_ones_are_given() {
        let d = ds(json!({ "containers": containers() }));
        let tainted = |key: &str, effect: &str| {
            node("n", json!({}), json!([{ "key": key, "effect": effect }]))
        };
        assert_eq!(node_should_run(&tainted("dedicated", "NoSchedule"), &d), (false, true));
        assert_eq!(node_should_run(&tainted("dedicated", "NoExecute"), &d), (false, false));
        assert_eq!(node_should_run(&tainted("dedicated", "PreferNoSchedule"), &d), (true, true));
        for (key, effect) in AUTOMATIC {
            assert_eq!(node_should_run(&tainted(key, effect), &d), (true, true), "{key}");
        }
        let network = tainted(NETWORK_UNAVAILABLE.0, NETWORK_UNAVAILABLE.1);
        assert_eq!(node_should_run(&network, &d), (false, true));
        let host = ds(json!({ "containers": containers(), "hostNetwork": true }));
        assert_eq!(node_should_run(&network, &host), (true, true));
        let tolerant = ds(json!({ "containers": containers(), "tolerations": [
            { "key": "dedicated", "operator": "Exists" },
        ]}));
        assert_eq!(node_should_run(&tainted("dedicated", "NoExecute"), &tolerant), (true, true));
    }

    #[test]
    fn automatic_tolerations_replace_the_same_key_and_effect() {
        let mut spec: PodSpec = serde_json::from_value(json!({ "containers": containers(),
            "tolerations": [{ "key": "node.kubernetes.io/not-ready", "operator": "Exists",
                "effect": "NoExecute", "tolerationSeconds": 30 }] }))
        .expect("spec");
        add_daemon_tolerations(&mut spec);
        let tolerations = spec.tolerations.expect("tolerations");
        assert_eq!(tolerations.len(), 6);
        assert_eq!(tolerations[0].toleration_seconds, None, "no seconds: stays through NotReady");
    }

    #[test]
    fn pinned_pods_name_their_node() {
        let mut affinity: Affinity = serde_json::from_value(json!({ "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [
                { "matchExpressions": [{ "key": "a", "operator": "Exists" }] },
            ]},
            "preferredDuringSchedulingIgnoredDuringExecution": [],
        }}))
        .expect("affinity");
        affinity = pin_to_node(Some(affinity), "n7");
        let pod = Pod {
            spec: Some(PodSpec { affinity: Some(affinity.clone()), ..PodSpec::default() }),
            ..Pod::default()
        };
        assert_eq!(target_node(&pod).as_deref(), Some("n7"));
        let terms = affinity
            .node_affinity
            .and_then(|a| a.required_during_scheduling_ignored_during_execution)
            .expect("required")
            .node_selector_terms;
        assert_eq!(terms.len(), 1, "the template's terms are replaced");
        assert!(selector_matches(
            &NodeSelector { node_selector_terms: terms.clone() },
            &node("n7", json!({}), json!([]))
        ));
        assert!(!selector_matches(
            &NodeSelector { node_selector_terms: terms },
            &node("n8", json!({}), json!([]))
        ));
    }
}

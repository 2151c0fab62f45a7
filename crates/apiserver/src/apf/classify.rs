//! Which FlowSchema a request matches, and its flow: upstream's `matchesFlowSchema`
//! rules (subjects, then resource or non-resource rules) and flow distinguishers.
//!
//! Must never match on anything but the authenticated (and impersonated) user and the
//! request's attributes, and must treat `*` only where upstream treats it as a
//! wildcard.

use keelson_api::k8s_openapi::api::flowcontrol::v1::{
    FlowSchema, NonResourcePolicyRule, PolicyRulesWithSubjects, ResourcePolicyRule, Subject,
};

use crate::auth::Attributes;
use crate::request::User;

const ALL: &str = "*";
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// Whether any of the schema's rules matches the request.
pub fn matches(schema: &FlowSchema, request: &Attributes) -> bool {
    let rules = schema.spec.as_ref().and_then(|s| s.rules.as_deref()).unwrap_or_default();
    rules.iter().any(|rule| matches_rule(rule, request))
}

fn matches_rule(rule: &PolicyRulesWithSubjects, request: &Attributes) -> bool {
    if !rule.subjects.iter().any(|subject| matches_subject(subject, &request.user)) {
        return false;
    }
    if request.resource_request {
        let rules = rule.resource_rules.as_deref().unwrap_or_default();
        rules.iter().any(|r| matches_resource_rule(r, request))
    } else {
        let rules = rule.non_resource_rules.as_deref().unwrap_or_default();
        rules.iter().any(|r| matches_non_resource_rule(r, request))
    }
}

fn matches_subject(subject: &Subject, user: &User) -> bool {
    match subject.kind.as_str() {
        "User" => subject.user.as_ref().is_some_and(|u| u.name == ALL || u.name == user.name),
        "Group" => {
            subject.group.as_ref().is_some_and(|g| g.name == ALL || user.groups.contains(&g.name))
        }
        "ServiceAccount" => subject.service_account.as_ref().is_some_and(|account| {
            let Some((namespace, name)) = service_account(&user.name) else { return false };
            namespace == account.namespace && (account.name == ALL || name == account.name)
        }),
        _ => false,
    }
}

/// The namespace and name of a service account's user name.
fn service_account(user: &str) -> Option<(&str, &str)> {
    user.strip_prefix(SERVICE_ACCOUNT_PREFIX)?.split_once(':')
}

fn matches_resource_rule(rule: &ResourcePolicyRule, request: &Attributes) -> bool {
    let resource = if request.subresource.is_empty() {
        request.resource.clone()
    } else {
        format!("{}/{}", request.resource, request.subresource)
    };
    if !contains(&rule.verbs, &request.verb)
        || !contains(&rule.resources, &resource)
        || !contains(&rule.api_groups, &request.api_group)
    {
        return false;
    }
    if request.namespace.is_empty() {
        return rule.cluster_scope.unwrap_or(false);
    }
    contains(rule.namespaces.as_deref().unwrap_or_default(), &request.namespace)
}

fn matches_non_resource_rule(rule: &NonResourcePolicyRule, request: &Attributes) -> bool {
    if !contains(&rule.verbs, &request.verb) {
        return false;
    }
    rule.non_resource_urls.iter().any(|url| {
        if url == ALL || *url == request.path {
            return true;
        }
        // `/a/*` and `/a` both cover everything under `/a/`.
        let mut prefix = url.strip_suffix('*').unwrap_or(url).to_owned();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        request.path.starts_with(&prefix)
    })
}

/// `list` holds `value`, or is exactly the wildcard alone (upstream's `containsString`).
fn contains(list: &[String], value: &str) -> bool {
    (list.len() == 1 && list[0] == ALL) || list.iter().any(|item| item == value)
}

/// The flow a request belongs to within its schema: by user, by namespace, or one flow.
pub fn distinguisher(schema: &FlowSchema, request: &Attributes) -> String {
    let method = schema.spec.as_ref().and_then(|s| s.distinguisher_method.as_ref());
    match method.map(|m| m.type_.as_str()) {
        Some("ByUser") => request.user.name.clone(),
        Some("ByNamespace") => request.namespace.clone(),
        _ => String::new(),
    }
}

/// A flow's hash for shuffle sharding: FNV-1a over the schema's name and the
/// distinguisher, separated so that ("ab", "c") and ("a", "bc") differ.
pub fn flow_hash(schema: &str, distinguisher: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in schema.bytes().chain([0]).chain(distinguisher.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema(spec: serde_json::Value) -> FlowSchema {
        serde_json::from_value(json!({ "metadata": { "name": "s" }, "spec": spec }))
            .expect("a FlowSchema")
    }

    fn request(user: &str, groups: &[&str], verb: &str, path: &str) -> Attributes {
        let user = User {
            name: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        };
        let mut attributes =
            Attributes { user, verb: verb.into(), path: path.into(), ..Default::default() };
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if let ["api", "v1", rest @ ..] = parts.as_slice() {
            attributes.resource_request = true;
            match rest {
                ["namespaces", ns, resource, more @ ..] => {
                    attributes.namespace = ns.to_string();
                    attributes.resource = resource.to_string();
                    attributes.subresource = more.get(1).map(|s| s.to_string()).unwrap_or_default();
                }
                [resource, ..] => attributes.resource = resource.to_string(),
                [] => {}
            }
        }
        attributes
    }

    fn rule(subjects: serde_json::Value) -> serde_json::Value {
        json!({
            "priorityLevelConfiguration": { "name": "pl" },
            "rules": [{
                "subjects": subjects,
                "resourceRules": [{
                    "verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/status"],
                    "namespaces": ["team"], "clusterScope": false,
                }],
                "nonResourceRules": [{ "verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*"] }],
            }],
        })
    }

    #[test]
    fn subjects_match_users_groups_and_service_accounts() {
        let alice = request("alice", &["devs"], "get", "/api/v1/namespaces/team/pods/p");
        let by_user = schema(rule(json!([{ "kind": "User", "user": { "name": "alice" } }])));
        assert!(matches(&by_user, &alice));
        let bob = request("bob", &["devs"], "get", "/api/v1/namespaces/team/pods/p");
        assert!(!matches(&by_user, &bob));
        let by_group = schema(rule(json!([{ "kind": "Group", "group": { "name": "devs" } }])));
        assert!(matches(&by_group, &bob));
        let any_group = schema(rule(json!([{ "kind": "Group", "group": { "name": "*" } }])));
        assert!(matches(&any_group, &request("x", &[], "get", "/api/v1/namespaces/team/pods")));
        let sa = |name: &str| {
            schema(rule(json!([{ "kind": "ServiceAccount",
                "serviceAccount": { "namespace": "kube-system", "name": name } }])))
        };
        let robot = request(
            "system:serviceaccount:kube-system:robot",
            &[],
            "list",
            "/api/v1/namespaces/team/pods",
        );
        assert!(matches(&sa("robot"), &robot));
        assert!(matches(&sa("*"), &robot));
        assert!(!matches(&sa("other"), &robot));
        // A namespace that only starts like the account's is another namespace.
        let lookalike = request(
            "system:serviceaccount:kube-system-x:robot",
            &[],
            "list",
            "/api/v1/namespaces/team/pods",
        );
        assert!(!matches(&sa("*"), &lookalike));
    }

    #[test]
    fn resource_rules_match_verb_group_resource_subresource_and_namespace() {
        let s = schema(rule(json!([{ "kind": "Group", "group": { "name": "*" } }])));
        assert!(matches(&s, &request("u", &[], "get", "/api/v1/namespaces/team/pods/p/status")));
        assert!(!matches(&s, &request("u", &[], "get", "/api/v1/namespaces/team/pods/p/log")));
        assert!(!matches(&s, &request("u", &[], "delete", "/api/v1/namespaces/team/pods/p")));
        assert!(!matches(&s, &request("u", &[], "get", "/api/v1/namespaces/other/pods/p")));
        // Cluster-scoped requests need `clusterScope`.
        assert!(!matches(&s, &request("u", &[], "list", "/api/v1/pods")));
    }

    #[test]
    fn non_resource_rules_match_exact_paths_and_prefixes() {
        let s = schema(rule(json!([{ "kind": "Group", "group": { "name": "*" } }])));
        assert!(matches(&s, &request("u", &[], "get", "/healthz")));
        assert!(matches(&s, &request("u", &[], "get", "/healthz/etcd")));
        assert!(matches(&s, &request("u", &[], "get", "/apis/apps")));
        assert!(!matches(&s, &request("u", &[], "get", "/apisx")));
        assert!(!matches(&s, &request("u", &[], "post", "/healthz")));
        assert!(!matches(&s, &request("u", &[], "get", "/version")));
    }

    #[test]
    fn flows_are_told_apart_by_the_distinguisher() {
        let mut spec = rule(json!([]));
        spec["distinguisherMethod"] = json!({ "type": "ByNamespace" });
        let by_ns = schema(spec.clone());
        let r = request("alice", &[], "get", "/api/v1/namespaces/team/pods/p");
        assert_eq!(distinguisher(&by_ns, &r), "team");
        spec["distinguisherMethod"] = json!({ "type": "ByUser" });
        assert_eq!(distinguisher(&schema(spec), &r), "alice");
        assert_eq!(distinguisher(&schema(rule(json!([]))), &r), "");
        assert_ne!(flow_hash("ab", "c"), flow_hash("a", "bc"));
        assert_eq!(flow_hash("s", "alice"), flow_hash("s", "alice"));
    }
}

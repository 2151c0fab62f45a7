//! RBAC (upstream's `plugin/pkg/auth/authorizer/rbac` and `pkg/registry/rbac/validation`):
//! the rules of the roles bound to a user, whether they allow a request, which rules a
//! user holds in a namespace, and whether one set of rules covers another (escalation
//! prevention).
//!
//! The roles and bindings are read from the watch caches and parsed once per change into
//! an [`Index`]; a request walks the cluster role bindings, then the role bindings of its
//! namespace, and stops at the first rule that allows it.
//!
//! Must never treat a missing role as empty silently: it is a resolution error that shows
//! in the 403's reason, as upstream's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Attributes, Decision};
use crate::cache::Caches;
use crate::request::User;

pub const GROUP: &str = "rbac.authorization.k8s.io";

/// A `PolicyRule`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    #[serde(default, rename = "nonResourceURLs", skip_serializing_if = "Vec::is_empty")]
    pub non_resource_urls: Vec<String>,
}

fn has(list: &[String], item: &str) -> bool {
    list.iter().any(|s| s == item)
}

impl Rule {
    /// Upstream's `RuleAllows`.
    pub fn allows(&self, a: &Attributes) -> bool {
        let verb = has(&self.verbs, "*") || has(&self.verbs, &a.verb);
        if !verb {
            return false;
        }
        if !a.resource_request {
            return self.non_resource_urls.iter().any(|url| {
                url == "*"
                    || *url == a.path
                    || url.strip_suffix('*').is_some_and(|prefix| a.path.starts_with(prefix))
            });
        }
        let group = has(&self.api_groups, "*") || has(&self.api_groups, &a.api_group);
        let combined = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let resource = self.resources.iter().any(|r| {
            r == "*"
                || *r == combined
                || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
        });
        let name = self.resource_names.is_empty() || has(&self.resource_names, &a.name);
        group && resource && name
    }

    /// Upstream's `CompactString`: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`.
    pub fn compact(&self) -> String {
        let list = |v: &[String]| {
            let quoted: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
            format!("[{}]", quoted.join(" "))
        };
        let mut parts = Vec::new();
        for (name, values) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !values.is_empty() {
                parts.push(format!("{name}:{}", list(values)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }

    /// Upstream's `BreakdownRule`: one rule per group, resource, name and verb.
    fn breakdown(&self) -> Vec<Rule> {
        let mut rules = Vec::new();
        for group in &self.api_groups {
            for resource in &self.resources {
                for verb in &self.verbs {
                    let one = |names: Vec<String>| Rule {
                        verbs: vec![verb.clone()],
                        api_groups: vec![group.clone()],
                        resources: vec![resource.clone()],
                        resource_names: names,
                        non_resource_urls: vec![],
                    };
                    if self.resource_names.is_empty() {
                        rules.push(one(vec![]));
                    } else {
                        rules.extend(self.resource_names.iter().map(|n| one(vec![n.clone()])));
                    }
                }
            }
        }
        for url in &self.non_resource_urls {
            for verb in &self.verbs {
                rules.push(Rule {
                    verbs: vec![verb.clone()],
                    non_resource_urls: vec![url.clone()],
                    ..Default::default()
                });
            }
        }
        rules
    }

    /// Upstream's `ruleCovers` for one owner rule.
    fn covers(&self, sub: &Rule) -> bool {
        let all = |owner: &[String], wanted: &[String]| {
            has(owner, "*") || wanted.iter().all(|w| has(owner, w))
        };
        let resources = sub.resources.iter().all(|r| {
            has(&self.resources, "*")
                || has(&self.resources, r)
                || r.find('/').is_some_and(|i| has(&self.resources, &format!("*{}", &r[i..])))
        });
        let urls = sub.non_resource_urls.iter().all(|wanted| {
            self.non_resource_urls.iter().any(|owner| {
                owner == wanted
                    || owner.strip_suffix('*').is_some_and(|prefix| wanted.starts_with(prefix))
            })
        });
        let names = if sub.resource_names.is_empty() {
            self.resource_names.is_empty()
        } else {
            self.resource_names.is_empty()
                || sub.resource_names.iter().all(|n| has(&self.resource_names, n))
        };
        all(&self.verbs, &sub.verbs)
            && all(&self.api_groups, &sub.api_groups)
            && resources
            && urls
            && names
    }
}

/// Upstream's `Covers`: the rules of `wanted` that `owner` does not hold, compacted and
/// sorted as the escalation message lists them.
pub fn uncovered(owner: &[Rule], wanted: &[Rule]) -> Vec<Rule> {
    let missing: Vec<Rule> = wanted
        .iter()
        .flat_map(Rule::breakdown)
        .filter(|sub| !owner.iter().any(|o| o.covers(sub)))
        .collect();
    // Upstream's `CompactRules`: simple resource rules that differ only in their verb
    // become one.
    let mut compacted: Vec<Rule> = Vec::new();
    for rule in missing {
        let simple = rule.non_resource_urls.is_empty()
            && rule.api_groups.len() == 1
            && rule.resources.len() == 1;
        let same = compacted.iter_mut().find(|c| {
            simple
                && c.non_resource_urls.is_empty()
                && c.api_groups == rule.api_groups
                && c.resources == rule.resources
                && c.resource_names == rule.resource_names
        });
        match same {
            Some(existing) => {
                for verb in rule.verbs {
                    if !has(&existing.verbs, &verb) {
                        existing.verbs.push(verb);
                    }
                }
            }
            None => compacted.push(rule),
        }
    }
    compacted.sort_by_key(Rule::compact);
    compacted
}

/// A subject of a binding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Subject {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
}

impl Subject {
    /// Upstream's `appliesToUser`; a service account without a namespace is in the
    /// binding's.
    fn applies_to(&self, user: &User, binding_namespace: &str) -> bool {
        match self.kind.as_str() {
            "User" => user.name == self.name,
            "Group" => has(&user.groups, &self.name),
            "ServiceAccount" => {
                let namespace =
                    if self.namespace.is_empty() { binding_namespace } else { &self.namespace };
                !namespace.is_empty()
                    && user.name == format!("system:serviceaccount:{namespace}:{}", self.name)
            }
            _ => false,
        }
    }

    /// Upstream's `describeSubject`, for allow reasons.
    fn describe(&self, binding_namespace: &str) -> String {
        match self.kind.as_str() {
            "ServiceAccount" => {
                let namespace =
                    if self.namespace.is_empty() { binding_namespace } else { &self.namespace };
                format!("{} {:?}", self.kind, format!("{}/{namespace}", self.name))
            }
            _ => format!("{} {:?}", self.kind, self.name),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct RoleRef {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

/// A RoleBinding (with its namespace) or ClusterRoleBinding (namespace empty).
#[derive(Clone, Debug, Default)]
pub struct Binding {
    pub name: String,
    pub namespace: String,
    pub role_ref: RoleRef,
    pub subjects: Vec<Subject>,
}

impl Binding {
    pub fn from_object(object: &Value) -> Binding {
        let text = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("").to_owned();
        Binding {
            name: text("/metadata/name"),
            namespace: text("/metadata/namespace"),
            role_ref: serde_json::from_value(object["roleRef"].clone()).unwrap_or_default(),
            subjects: serde_json::from_value(object["subjects"].clone()).unwrap_or_default(),
        }
    }

    fn describe(&self, subject: &Subject) -> String {
        if self.namespace.is_empty() {
            format!(
                "ClusterRoleBinding {:?} of {} {:?} to {}",
                self.name,
                self.role_ref.kind,
                self.role_ref.name,
                subject.describe("")
            )
        } else {
            format!(
                "RoleBinding {:?} of {} {:?} to {}",
                format!("{}/{}", self.name, self.namespace),
                self.role_ref.kind,
                self.role_ref.name,
                subject.describe(&self.namespace)
            )
        }
    }
}

/// The rules of a role object (`rules`, absent is none).
pub fn rules_of(object: &Value) -> Vec<Rule> {
    serde_json::from_value(object["rules"].clone()).unwrap_or_default()
}

/// The RBAC objects at one moment, parsed.
#[derive(Default)]
pub struct Index {
    cluster_roles: HashMap<String, Vec<Rule>>,
    roles: HashMap<(String, String), Vec<Rule>>,
    cluster_bindings: Vec<Binding>,
    bindings: HashMap<String, Vec<Binding>>,
}

/// Why a binding's role reference does not resolve, in upstream's words.
#[derive(Debug, thiserror::Error)]
pub enum RoleRefError {
    #[error("unsupported role reference kind: {0:?}")]
    UnsupportedKind(String),
    /// `kind` is `Role` or `ClusterRole`.
    #[error("{}.{} {name:?} not found", kind.to_ascii_lowercase(), GROUP)]
    NotFound { kind: String, name: String },
}

impl Index {
    /// The rules a binding's role reference names, in the binding's namespace.
    pub fn role_rules(&self, role_ref: &RoleRef, namespace: &str) -> Result<&[Rule], RoleRefError> {
        let found = match role_ref.kind.as_str() {
            "ClusterRole" => self.cluster_roles.get(&role_ref.name),
            "Role" => self.roles.get(&(namespace.to_owned(), role_ref.name.clone())),
            other => return Err(RoleRefError::UnsupportedKind(other.to_owned())),
        };
        found.map(Vec::as_slice).ok_or_else(|| RoleRefError::NotFound {
            kind: role_ref.kind.clone(),
            name: role_ref.name.clone(),
        })
    }

    /// The bindings that count in `namespace` (cluster bindings first), with the
    /// subject of each that names `user`.
    fn applicable<'a>(
        &'a self,
        user: &'a User,
        namespace: &'a str,
    ) -> impl Iterator<Item = (&'a Binding, &'a Subject)> + 'a {
        let local = (!namespace.is_empty()).then(|| self.bindings.get(namespace)).flatten();
        self.cluster_bindings.iter().chain(local.into_iter().flatten()).filter_map(move |b| {
            b.subjects.iter().find(|s| s.applies_to(user, &b.namespace)).map(|s| (b, s))
        })
    }

    /// Upstream's RBAC `Authorize`.
    pub fn decide(&self, a: &Attributes) -> Decision {
        let mut errors = Vec::new();
        for (binding, subject) in self.applicable(&a.user, &a.namespace) {
            match self.role_rules(&binding.role_ref, &binding.namespace) {
                Ok(rules) => {
                    if rules.iter().any(|r| r.allows(a)) {
                        return Decision::Allow(format!(
                            "RBAC: allowed by {}",
                            binding.describe(subject)
                        ));
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        Decision::NoOpinion(match errors.len() {
            0 => String::new(),
            1 => format!("RBAC: {}", errors[0]),
            _ => format!("RBAC: [{}]", errors.join(", ")),
        })
    }

    /// Upstream's `RulesFor`: every rule `user` holds in `namespace` (`""`: cluster-wide
    /// only), and the role references that could not be resolved.
    pub fn rules_for(&self, user: &User, namespace: &str) -> (Vec<Rule>, Vec<String>) {
        let (mut rules, mut errors) = (Vec::new(), Vec::new());
        for (binding, _) in self.applicable(user, namespace) {
            match self.role_rules(&binding.role_ref, &binding.namespace) {
                Ok(found) => rules.extend_from_slice(found),
                Err(e) => errors.push(e.to_string()),
            }
        }
        (rules, errors)
    }
}

/// The storage directories of the four RBAC resources.
const PREFIXES: [&str; 4] = [
    "/registry/clusterroles/",
    "/registry/roles/",
    "/registry/clusterrolebindings/",
    "/registry/rolebindings/",
];

/// RBAC over the watch caches: the parsed [`Index`] of the last revisions seen.
#[derive(Default)]
pub struct Rbac {
    current: Mutex<Option<([i64; 4], Arc<Index>)>>,
}

impl Rbac {
    /// The index at the caches' current revisions, re-parsed only after a change. `None`
    /// while a cache cannot start (the store is down).
    pub async fn index(&self, caches: &Caches) -> Option<Arc<Index>> {
        let mut found = Vec::with_capacity(4);
        for prefix in PREFIXES {
            found.push(caches.get(prefix).await?);
        }
        let revisions: [i64; 4] = std::array::from_fn(|i| found[i].revision());
        {
            let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((seen, index)) = current.as_ref()
                && *seen == revisions
            {
                return Some(index.clone());
            }
        }
        let objects = |i: usize| {
            found[i]
                .objects(PREFIXES[i])
                .0
                .into_iter()
                .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
        };
        let mut index = Index::default();
        for role in objects(0) {
            let name = role.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
            index.cluster_roles.insert(name.to_owned(), rules_of(&role));
        }
        for role in objects(1) {
            let meta = |f: &str| role["metadata"][f].as_str().unwrap_or("").to_owned();
            index.roles.insert((meta("namespace"), meta("name")), rules_of(&role));
        }
        index.cluster_bindings = objects(2).map(|b| Binding::from_object(&b)).collect();
        for binding in objects(3).map(|b| Binding::from_object(&b)) {
            index.bindings.entry(binding.namespace.clone()).or_default().push(binding);
        }
        let index = Arc::new(index);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((revisions, index.clone()));
        Some(index)
    }

    pub async fn decide(&self, caches: &Caches, a: &Attributes) -> Decision {
        match self.index(caches).await {
            Some(index) => index.decide(a),
            None => Decision::NoOpinion("RBAC: the roles and bindings cannot be read".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Rule {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Rule {
            verbs: own(verbs),
            api_groups: own(groups),
            resources: own(resources),
            ..Default::default()
        }
    }

    fn request(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn rules_match_as_upstreams() {
        let pods = rule(&["get", "list"], &[""], &["pods"]);
        assert!(pods.allows(&request("get", "", "pods", "", "p")));
        assert!(!pods.allows(&request("get", "", "pods", "log", "p")));
        assert!(!pods.allows(&request("delete", "", "pods", "", "p")));
        assert!(!pods.allows(&request("get", "apps", "pods", "", "p")));
        let scale = rule(&["*"], &["*"], &["*/scale"]);
        assert!(scale.allows(&request("update", "apps", "deployments", "scale", "d")));
        assert!(!scale.allows(&request("update", "apps", "deployments", "", "d")));
        let mut named = rule(&["get"], &[""], &["configmaps"]);
        named.resource_names = vec!["a".into()];
        assert!(named.allows(&request("get", "", "configmaps", "", "a")));
        assert!(!named.allows(&request("get", "", "configmaps", "", "b")));
        assert!(!named.allows(&request("list", "", "configmaps", "", "")));
        let urls = Rule {
            verbs: vec!["get".into()],
            non_resource_urls: vec!["/healthz".into(), "/api/*".into()],
            ..Default::default()
        };
        let path =
            |p: &str| Attributes { verb: "get".into(), path: p.into(), ..Default::default() };
        assert!(urls.allows(&path("/healthz")));
        assert!(urls.allows(&path("/api/v1")));
        assert!(!urls.allows(&path("/apis")));
    }

    #[test]
    fn coverage_finds_what_is_not_held() {
        let owner = vec![rule(&["get", "list"], &[""], &["pods"]), rule(&["*"], &["apps"], &["*"])];
        assert!(uncovered(&owner, &[rule(&["get"], &[""], &["pods"])]).is_empty());
        assert!(
            uncovered(&owner, &[rule(&["delete"], &["apps"], &["deployments/scale"])]).is_empty()
        );
        let missing =
            uncovered(&owner, &[rule(&["get", "delete", "watch"], &[""], &["pods", "secrets"])]);
        let shown: Vec<String> = missing.iter().map(Rule::compact).collect();
        assert_eq!(
            shown,
            [
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete" "watch"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "delete" "watch"]}"#,
            ]
        );
        // A wildcard is covered only by a wildcard.
        assert_eq!(uncovered(&owner, &[rule(&["*"], &[""], &["pods"])]).len(), 1);
        let mut named = rule(&["get"], &[""], &["pods"]);
        named.resource_names = vec!["x".into()];
        assert!(uncovered(&owner, &[named.clone()]).is_empty());
        assert_eq!(uncovered(&[named], &[rule(&["get"], &[""], &["pods"])]).len(), 1);
    }

    #[test]
    fn bindings_apply_to_their_subjects() {
        let mut index = Index::default();
        index.cluster_roles.insert("reader".into(), vec![rule(&["get"], &[""], &["pods"])]);
        index
            .roles
            .insert(("ns".into(), "writer".into()), vec![rule(&["create"], &[""], &["pods"])]);
        let subject = |kind: &str, name: &str| Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: String::new(),
        };
        index.cluster_bindings.push(Binding {
            name: "readers".into(),
            namespace: String::new(),
            role_ref: RoleRef { kind: "ClusterRole".into(), name: "reader".into() },
            subjects: vec![subject("Group", "team")],
        });
        index.bindings.entry("ns".into()).or_default().push(Binding {
            name: "writers".into(),
            namespace: "ns".into(),
            role_ref: RoleRef { kind: "Role".into(), name: "writer".into() },
            subjects: vec![subject("ServiceAccount", "robot"), subject("User", "ghost-ref")],
        });
        index.bindings.entry("ns".into()).or_default().push(Binding {
            name: "broken".into(),
            namespace: "ns".into(),
            role_ref: RoleRef { kind: "ClusterRole".into(), name: "missing".into() },
            subjects: vec![subject("User", "carol")],
        });
        let ask = |user: &str, groups: &[&str], verb: &str, ns: &str| {
            let mut a = request(verb, "", "pods", "", "p");
            a.namespace = ns.into();
            a.user = User {
                name: user.into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                ..Default::default()
            };
            index.decide(&a)
        };
        assert_eq!(
            ask("alice", &["team"], "get", "other"),
            Decision::Allow("RBAC: allowed by ClusterRoleBinding \"readers\" of ClusterRole \"reader\" to Group \"team\"".into())
        );
        assert_eq!(
            ask("system:serviceaccount:ns:robot", &[], "create", "ns"),
            Decision::Allow("RBAC: allowed by RoleBinding \"writers/ns\" of Role \"writer\" to ServiceAccount \"robot/ns\"".into())
        );
        assert!(!ask("system:serviceaccount:ns:robot", &[], "create", "other").allowed());
        assert_eq!(
            ask("carol", &[], "get", "ns"),
            Decision::NoOpinion(
                "RBAC: clusterrole.rbac.authorization.k8s.io \"missing\" not found".into()
            )
        );
        let (rules, errors) = index.rules_for(
            &User { name: "alice".into(), groups: vec!["team".into()], ..Default::default() },
            "ns",
        );
        assert_eq!((rules.len(), errors.len()), (1, 0));
    }
}

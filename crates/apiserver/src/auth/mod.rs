//! Authorization: who may do what. A request becomes [`Attributes`] (upstream's
//! `RequestInfo`: verb, namespace, group, resource, subresource, name or a non-resource
//! path); the [`Authorizer`] asks, in upstream's order, the privileged group
//! (`system:masters` may do anything), the Node authorizer and RBAC ([`rbac`]); the
//! first to allow wins, and a request no one allows is a 403 with upstream's message.
//!
//! Also here: the RBAC bootstrap policy reconciled at start ([`bootstrap`]), RBAC's
//! escalation checks on role and binding writes, and the access reviews
//! (`kubectl auth can-i`, [`reviews`]).
//!
//! Must never allow a request that no authorizer allowed, and must never let an
//! authorizer's failure (a role it cannot read) turn into an allow.

pub mod bootstrap;
pub mod escalation;
pub mod node;
pub mod rbac;
pub mod reviews;

use std::sync::Arc;

use crate::ApiServer;
use crate::cache::Caches;
use crate::request::{Request, User};
use crate::status::ApiError;

/// The group whose members may do anything (upstream's `SystemPrivilegedGroup`).
pub const PRIVILEGED_GROUP: &str = "system:masters";

/// What a request asks to do, in authorization's terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub user: User,
    pub verb: String,
    /// A resource request (`/api/v1/…`, `/apis/{group}/{version}/…`); otherwise `path`
    /// is what is asked for.
    pub resource_request: bool,
    pub path: String,
    pub namespace: String,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

impl Attributes {
    /// Upstream's `RequestInfoFactory.NewRequestInfo`: the verb from the method, `get`
    /// without a name is `list`, `list` with `?watch` is `watch`, `delete` without a name
    /// is `deletecollection`, and a list or watch of `metadata.name=x` names `x`.
    pub fn from_request(req: &Request) -> Attributes {
        let mut attributes = Attributes {
            user: req.user.clone(),
            path: req.path.clone(),
            verb: req.method.as_str().to_ascii_lowercase(),
            ..Default::default()
        };
        let parts: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
        let mut parts = match parts.as_slice() {
            ["api", rest @ ..] if rest.len() >= 2 => rest.to_vec(),
            ["apis", group, rest @ ..] if rest.len() >= 2 => {
                attributes.api_group = group.to_string();
                rest.to_vec()
            }
            _ => return attributes,
        };
        attributes.resource_request = true;
        attributes.api_version = parts.remove(0).to_owned();
        if parts.first() == Some(&"watch") && parts.len() >= 2 {
            parts.remove(0);
            attributes.verb = "watch".into();
        } else {
            attributes.verb = match req.method.as_str() {
                "POST" => "create",
                "GET" | "HEAD" => "get",
                "PUT" => "update",
                "PATCH" => "patch",
                "DELETE" => "delete",
                _ => "",
            }
            .into();
        }
        if parts.first() == Some(&"namespaces") && parts.len() > 1 {
            attributes.namespace = parts[1].to_owned();
            // `namespaces/{ns}/status|finalize` are the namespace's own subresources.
            if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
                parts.drain(..2);
            }
        }
        let part = |i: usize| parts.get(i).map(|s| s.to_string()).unwrap_or_default();
        (attributes.resource, attributes.name, attributes.subresource) =
            (part(0), part(1), part(2));
        if attributes.name.is_empty() && attributes.verb == "get" {
            attributes.verb = "list".into();
        }
        if attributes.verb == "list" && matches!(req.param("watch"), Some("true" | "1")) {
            attributes.verb = "watch".into();
        }
        if matches!(attributes.verb.as_str(), "list" | "watch")
            && let Some(selector) = req.param("fieldSelector")
            && let Some(name) = single_name(selector)
        {
            attributes.name = name;
        }
        if attributes.name.is_empty() && attributes.verb == "delete" {
            attributes.verb = "deletecollection".into();
        }
        attributes
    }

    /// The same question about another verb (what `escalate` and `bind` checks ask).
    pub fn resource(
        user: &User,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Attributes {
        Attributes {
            user: user.clone(),
            verb: verb.into(),
            resource_request: true,
            namespace: namespace.into(),
            api_group: group.into(),
            resource: resource.into(),
            name: name.into(),
            ..Default::default()
        }
    }
}

/// `metadata.name=x` (or `==`) as the whole field selector.
fn single_name(selector: &str) -> Option<String> {
    let (key, value) = selector
        .split_once("==")
        .or_else(|| selector.split_once('='))
        .filter(|(k, _)| !k.ends_with('!') && !selector.contains(','))?;
    (key.trim() == "metadata.name").then(|| value.trim().to_owned())
}

/// An authorizer's answer (upstream's `Decision` with its reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow(String),
    Deny(String),
    /// Neither: the next authorizer decides. The reason says why not (a role that does
    /// not exist), for the 403 message.
    NoOpinion(String),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// The authorizers of `--authorization-mode=Node,RBAC`, behind the privileged group,
/// reading the roles, bindings, pods and volumes through the watch caches.
pub struct Authorizer {
    rbac: rbac::Rbac,
    caches: Arc<Caches>,
}

impl Authorizer {
    pub fn new(caches: Arc<Caches>) -> Authorizer {
        Authorizer { rbac: rbac::Rbac::default(), caches }
    }

    /// The parsed roles and bindings (for the escalation check and rules reviews).
    pub async fn rbac_index(&self) -> Option<Arc<rbac::Index>> {
        self.rbac.index(&self.caches).await
    }

    /// The union of the authorizers: the first allow or deny decides; without one, the
    /// reasons of all are joined.
    pub async fn decide(&self, attributes: &Attributes) -> Decision {
        if attributes.user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
            return Decision::Allow(String::new());
        }
        let mut reasons = Vec::new();
        for decision in [
            node::decide(&self.caches, attributes).await,
            self.rbac.decide(&self.caches, attributes).await,
        ] {
            match decision {
                Decision::NoOpinion(reason) => {
                    if !reason.is_empty() {
                        reasons.push(reason);
                    }
                }
                decided => return decided,
            }
        }
        Decision::NoOpinion(reasons.join(", "))
    }

    /// Authorizes a request, or the 403 a client sees.
    pub async fn authorize(&self, attributes: &Attributes) -> Result<(), ApiError> {
        self.authorize_audited(attributes, false).await
    }

    /// [`Authorizer::authorize`], noting the decision and its reason on the request's
    /// audit event when `audited` (upstream's authorization filter does so for the
    /// request itself, not for impersonation checks).
    async fn authorize_audited(
        &self,
        attributes: &Attributes,
        audited: bool,
    ) -> Result<(), ApiError> {
        let decision = self.decide(attributes).await;
        if audited {
            let (verdict, reason) = match &decision {
                Decision::Allow(reason) => ("allow", reason),
                Decision::Deny(reason) | Decision::NoOpinion(reason) => ("forbid", reason),
            };
            crate::audit::annotate("authorization.k8s.io/decision", verdict);
            crate::audit::annotate("authorization.k8s.io/reason", reason.as_str());
        }
        match decision {
            Decision::Allow(_) => Ok(()),
            Decision::Deny(reason) | Decision::NoOpinion(reason) => {
                tracing::debug!(user = %attributes.user.name, verb = %attributes.verb, resource = %attributes.resource, path = %attributes.path, %reason, "forbidden");
                Err(forbidden(attributes, &reason))
            }
        }
    }
}

/// Upstream's `responsewriters.Forbidden`: who cannot do what, and why.
pub fn forbidden(attributes: &Attributes, reason: &str) -> ApiError {
    let user = &attributes.user.name;
    let verb = &attributes.verb;
    let mut message = if !attributes.resource_request {
        format!("User {user:?} cannot {verb} path {:?}", attributes.path)
    } else {
        let mut resource = attributes.resource.clone();
        if !attributes.subresource.is_empty() {
            resource = format!("{resource}/{}", attributes.subresource);
        }
        let group = &attributes.api_group;
        match attributes.namespace.as_str() {
            "" => format!(
                "User {user:?} cannot {verb} resource {resource:?} in API group {group:?} at the cluster scope"
            ),
            ns => format!(
                "User {user:?} cannot {verb} resource {resource:?} in API group {group:?} in the namespace {ns:?}"
            ),
        }
    };
    if !reason.is_empty() {
        message = format!("{message}: {reason}");
    }
    ApiError::forbidden_resource(
        &attributes.api_group,
        &attributes.resource,
        &attributes.name,
        &message,
    )
}

/// Writes `updated` over `existing` (read at `revision`) as an update by the server
/// itself: prepared and validated as any update, unconditional on nothing but the
/// revision.
pub(crate) async fn write_update(
    api: &ApiServer,
    place: crate::registry::Place<'_>,
    existing: &serde_json::Value,
    updated: serde_json::Value,
    revision: i64,
) -> Result<(), ApiError> {
    write_subresource(api, place, existing, updated, revision, None).await
}

/// [`write_update`] through a subresource (`status`, a CSR's `approval`).
pub(crate) async fn write_subresource(
    api: &ApiServer,
    place: crate::registry::Place<'_>,
    existing: &serde_json::Value,
    updated: serde_json::Value,
    revision: i64,
    subresource: Option<&str>,
) -> Result<(), ApiError> {
    api.objects.rewrite(place, existing, updated, revision, subresource).await.map(drop)
}

/// Authorizes a request as the filter chain does, after authentication.
///
/// exec, attach and portforward also open over a WebSocket upgrade, which is a GET:
/// those need `create` as well, as upstream requires since 1.35, so `get pods/exec`
/// alone never runs a command.
pub async fn authorize_attributes(api: &ApiServer, attributes: Attributes) -> Result<(), ApiError> {
    api.authorizer.authorize_audited(&attributes, true).await?;
    let streaming = matches!(attributes.subresource.as_str(), "exec" | "attach" | "portforward");
    if attributes.resource_request
        && attributes.verb == "get"
        && attributes.api_group.is_empty()
        && attributes.resource == "pods"
        && streaming
    {
        let create = Attributes { verb: "create".into(), ..attributes };
        api.authorizer.authorize(&create).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The authorizer over the bootstrap policy, asked directly: no HTTPS, no client.
    #[tokio::test]
    async fn the_bootstrap_policy_gives_each_component_its_role_and_no_more() {
        let api = crate::ApiServer::for_tests().await;
        let user = |name: &str, groups: &[&str]| User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        };
        let ask = |u: &User, verb: &str, group: &str, resource: &str, ns: &str| {
            Attributes::resource(u, verb, group, resource, ns, "")
        };
        let manager = user("system:kube-controller-manager", &["system:authenticated"]);
        // Leader election: any lease in kube-system (a Role), elsewhere only its own
        // (a ClusterRole with resourceNames), as upstream's policy has it.
        let lease = |ns: &str, name: &str| {
            Attributes::resource(&manager, "update", "coordination.k8s.io", "leases", ns, name)
        };
        assert!(api.authorizer.decide(&lease("kube-system", "other")).await.allowed());
        let own = lease("default", "kube-controller-manager");
        assert!(api.authorizer.decide(&own).await.allowed());
        assert!(!api.authorizer.decide(&lease("default", "other")).await.allowed());
        let mut token = ask(&manager, "create", "", "serviceaccounts", "kube-system");
        token.subresource = "token".into();
        assert!(api.authorizer.decide(&token).await.allowed());
        // Its informers list and watch everything; writing is its controllers' job.
        let secrets = ask(&manager, "list", "", "secrets", "default");
        assert!(api.authorizer.decide(&secrets).await.allowed());
        let pods = ask(&manager, "delete", "", "pods", "default");
        assert!(!api.authorizer.decide(&pods).await.allowed());
        // A controller's ServiceAccount gets its own role only.
        let publisher = user(
            "system:serviceaccount:kube-system:root-ca-cert-publisher",
            &[
                "system:serviceaccounts",
                "system:serviceaccounts:kube-system",
                "system:authenticated",
            ],
        );
        let maps = ask(&publisher, "create", "", "configmaps", "team");
        assert!(api.authorizer.decide(&maps).await.allowed());
        let pods = ask(&publisher, "create", "", "pods", "team");
        assert!(!api.authorizer.decide(&pods).await.allowed());
    }

    fn attributes(method: &str, uri: &str) -> Attributes {
        let (parts, ()) = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .expect("request")
            .into_parts();
        let user = User { name: "u".into(), groups: vec![], ..Default::default() };
        Attributes::from_request(&Request::new(parts, bytes::Bytes::new(), user))
    }

    #[test]
    fn requests_become_upstream_attributes() {
        let a = attributes("GET", "/api/v1/namespaces/ns/pods");
        assert_eq!(
            (a.verb.as_str(), a.namespace.as_str(), a.resource.as_str()),
            ("list", "ns", "pods")
        );
        let a = attributes("GET", "/api/v1/namespaces/ns/pods?watch=true");
        assert_eq!(a.verb, "watch");
        let a = attributes("GET", "/api/v1/watch/namespaces/ns/pods");
        assert_eq!((a.verb.as_str(), a.resource.as_str()), ("watch", "pods"));
        let a = attributes("GET", "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%3Dp");
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("list", "p"));
        let a = attributes("POST", "/api/v1/namespaces/ns/pods/p/exec");
        assert_eq!(
            (a.verb.as_str(), a.name.as_str(), a.subresource.as_str()),
            ("create", "p", "exec")
        );
        let a = attributes("GET", "/api/v1/namespaces/ns");
        assert_eq!(
            (a.resource.as_str(), a.name.as_str(), a.namespace.as_str()),
            ("namespaces", "ns", "ns")
        );
        let a = attributes("PUT", "/api/v1/namespaces/ns/finalize");
        assert_eq!((a.resource.as_str(), a.subresource.as_str()), ("namespaces", "finalize"));
        let a = attributes("DELETE", "/apis/apps/v1/namespaces/ns/deployments");
        assert_eq!((a.verb.as_str(), a.api_group.as_str()), ("deletecollection", "apps"));
        let a = attributes("GET", "/apis/apps/v1");
        assert!(!a.resource_request);
        assert_eq!((a.verb.as_str(), a.path.as_str()), ("get", "/apis/apps/v1"));
        let a = attributes("GET", "/api/v1/nodes");
        assert_eq!((a.verb.as_str(), a.namespace.as_str()), ("list", ""));
    }

    #[test]
    fn forbidden_messages_are_upstreams() {
        let mut a = attributes("GET", "/api/v1/namespaces/ns/pods/p/log");
        a.user.name = "bob".into();
        let e = forbidden(&a, "");
        assert_eq!(e.code, http::StatusCode::FORBIDDEN);
        assert_eq!(
            e.message,
            "pods \"p\" is forbidden: User \"bob\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"ns\""
        );
        let a = attributes("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles");
        let e = forbidden(&a, "RBAC: clusterrole.rbac.authorization.k8s.io \"x\" not found");
        assert_eq!(
            e.message,
            "clusterroles.rbac.authorization.k8s.io is forbidden: User \"u\" cannot list resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" at the cluster scope: RBAC: clusterrole.rbac.authorization.k8s.io \"x\" not found"
        );
        let a = attributes("GET", "/metrics");
        assert_eq!(forbidden(&a, "").message, "forbidden: User \"u\" cannot get path \"/metrics\"");
    }
}

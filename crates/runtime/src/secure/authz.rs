//! Delegated authorization (upstream's `DelegatingAuthorizationOptions`): the
//! always-allowed paths and groups without asking, anyone else by a SubjectAccessReview
//! of the request's non-resource URL and verb, the answer kept 10 s when allowed and
//! 10 s when denied (`--authorization-webhook-cache-authorized-ttl`,
//! `-unauthorized-ttl`).

use std::time::Duration;

use keelson_api::k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

use super::authn::User;
use super::cache::TtlCache;

const ALLOWED_TTL: Duration = Duration::from_secs(10);
const DENIED_TTL: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Allow,
    /// Denied, with the authorizer's reason (may be empty).
    Deny(String),
}

pub(crate) struct Authorizer {
    client: Option<Client>,
    always_allow_paths: Vec<String>,
    always_allow_groups: Vec<String>,
    cache: TtlCache<String, Decision>,
}

impl Authorizer {
    pub(crate) fn new(
        client: Option<Client>,
        always_allow_paths: Vec<String>,
        always_allow_groups: Vec<String>,
    ) -> Self {
        Authorizer { client, always_allow_paths, always_allow_groups, cache: TtlCache::new() }
    }

    /// Whether `path` is always allowed: upstream's path authorizer — an exact path, or a
    /// prefix when the pattern ends in `*`; the leading `/` is optional. `/healthz` does
    /// not allow `/healthz/ping`.
    pub(crate) fn path_allowed(&self, path: &str) -> bool {
        let path = path.trim_start_matches('/');
        self.always_allow_paths.iter().any(|pattern| {
            let pattern = pattern.trim_start_matches('/');
            match pattern.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == pattern,
            }
        })
    }

    /// May `user` `verb` the non-resource URL `path`? `Err` when the API server could not
    /// be asked.
    pub(crate) async fn authorize(
        &self,
        user: &User,
        verb: &str,
        path: &str,
    ) -> Result<Decision, String> {
        if user.groups.iter().any(|g| self.always_allow_groups.contains(g)) {
            return Ok(Decision::Allow);
        }
        let Some(client) = &self.client else {
            return Ok(Decision::Deny("no authorization-kubeconfig was given".into()));
        };
        let spec = SubjectAccessReviewSpec {
            user: Some(user.name.clone()),
            uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
            groups: Some(user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(path.to_owned()),
                verb: Some(verb.to_owned()),
            }),
            resource_attributes: None,
        };
        let key = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
        if let Some(known) = self.cache.get(&key) {
            return Ok(known);
        }
        let review = SubjectAccessReview { spec, ..SubjectAccessReview::default() };
        let reviewed = Api::<SubjectAccessReview>::all(client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| format!("subjectaccessreview: {e}"))?;
        let status = reviewed.status.unwrap_or_default();
        let (decision, ttl) = if status.allowed {
            (Decision::Allow, ALLOWED_TTL)
        } else {
            let reason = status.reason.or(status.evaluation_error).unwrap_or_default();
            (Decision::Deny(reason), DENIED_TTL)
        };
        self.cache.put(key, decision.clone(), ttl);
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorizer(paths: &[&str]) -> Authorizer {
        let paths = paths.iter().map(|p| p.to_string()).collect();
        Authorizer::new(None, paths, vec!["system:masters".into()])
    }

    #[test]
    fn always_allowed_paths_match_as_upstreams() {
        let a = authorizer(&super::super::ALWAYS_ALLOW_PATHS);
        assert!(a.path_allowed("/healthz"));
        assert!(a.path_allowed("/readyz"));
        assert!(a.path_allowed("/livez"));
        assert!(!a.path_allowed("/healthz/leaderElection"));
        assert!(!a.path_allowed("/metrics"));
        let a = authorizer(&["debug/*", "/metrics"]);
        assert!(a.path_allowed("/debug/pprof"));
        assert!(a.path_allowed("/metrics"));
        assert!(!a.path_allowed("/healthz"));
    }

    #[tokio::test]
    async fn masters_are_allowed_and_without_a_client_everyone_else_is_denied() {
        let a = authorizer(&[]);
        let master =
            User { name: "admin".into(), groups: vec!["system:masters".into()], ..User::default() };
        assert_eq!(a.authorize(&master, "get", "/metrics").await, Ok(Decision::Allow));
        let other = User { name: "alice".into(), ..User::default() };
        assert!(matches!(a.authorize(&other, "get", "/metrics").await, Ok(Decision::Deny(_))));
    }
}

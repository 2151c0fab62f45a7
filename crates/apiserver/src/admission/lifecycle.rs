//! NamespaceLifecycle (upstream's `plugin/namespace/lifecycle`): nothing new in a
//! namespace that is missing (its NotFound) or terminating (403, with upstream's
//! `NamespaceTerminating` cause), and the namespaces every cluster relies on —
//! `default`, `kube-system`, `kube-public` — may not be deleted.
//!
//! As upstream, the namespace is read from the watch cache and, when the cache does not
//! have it, from the store, which has the last word on a 404; for a while after a
//! namespace's delete the store is asked even when the cache still has it active.
//! Deletes of other objects, writes outside namespaces and access reviews (whose answer
//! would reveal whether a namespace exists) are always let through.
//!
//! Must never refuse a write to an existing namespace that is not terminating.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::lister::Lister;
use super::{Attributes, Mutating, Operation, Plugin};
use crate::status::ApiResult;

/// The namespaces that may not be deleted (upstream's immortal namespaces).
pub const IMMORTAL: [&str; 3] = ["default", "kube-system", "kube-public"];

/// How long after a namespace's delete creates in it are checked against the store.
const FORCE_LIVE_LOOKUP: Duration = Duration::from_secs(30);

pub struct NamespaceLifecycle {
    namespaces: Lister,
    /// Namespaces deleted recently, and when: the cache may not show it yet.
    deleted: Mutex<HashMap<String, Instant>>,
}

impl NamespaceLifecycle {
    pub fn new(namespaces: Lister) -> Self {
        NamespaceLifecycle { namespaces, deleted: Mutex::new(HashMap::new()) }
    }

    fn recently_deleted(&self, namespace: &str) -> bool {
        let mut deleted = self.deleted.lock().unwrap_or_else(|e| e.into_inner());
        deleted.retain(|_, at| at.elapsed() < FORCE_LIVE_LOOKUP);
        deleted.contains_key(namespace)
    }

    fn note_deleted(&self, namespace: &str) {
        let mut deleted = self.deleted.lock().unwrap_or_else(|e| e.into_inner());
        deleted.insert(namespace.to_owned(), Instant::now());
    }
}

impl Plugin for NamespaceLifecycle {
    fn handles(&self, _: Operation) -> bool {
        true
    }

    fn mutating(&self) -> Option<&dyn Mutating> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl Mutating for NamespaceLifecycle {
    async fn admit(&self, a: &Attributes<'_>, _: Option<&mut Value>) -> ApiResult<Vec<String>> {
        let is_namespace = a.is("", "namespaces");
        if is_namespace {
            if a.operation == Operation::Delete {
                if IMMORTAL.contains(&a.name) {
                    return Err(a.forbidden("this namespace may not be deleted"));
                }
                self.note_deleted(a.name);
            }
            return Ok(Vec::new());
        }
        if a.namespace.is_empty()
            || a.operation == Operation::Delete
            || a.is("authorization.k8s.io", "localsubjectaccessreviews")
        {
            return Ok(Vec::new());
        }
        let cached = self.namespaces.get(None, a.namespace).await;
        let stale = cached.as_ref().is_some_and(|ns| !terminating(ns))
            && self.recently_deleted(a.namespace);
        let namespace = match cached {
            Some(ns) if !stale => ns,
            // The store has the last word: its NotFound is the answer for a missing one.
            _ => self.namespaces.live(None, a.namespace).await?,
        };
        if a.operation == Operation::Create && terminating(&namespace) {
            let mut refused = a.forbidden(format!(
                "unable to create new content in namespace {} because it is being terminated",
                a.namespace
            ));
            if let Some(details) = refused.details.as_mut() {
                details["causes"] = json!([{
                    "reason": "NamespaceTerminating",
                    "message": format!("namespace {} is being terminated", a.namespace),
                    "field": "metadata.namespace",
                }]);
            }
            return Err(refused);
        }
        Ok(Vec::new())
    }
}

/// Whether the namespace is being deleted (its phase, or a deletion timestamp the
/// phase has not caught up with yet).
fn terminating(namespace: &Value) -> bool {
    namespace["status"]["phase"] == "Terminating"
        || !namespace["metadata"]["deletionTimestamp"].is_null()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::admission::lister::Sources;
    use crate::request::User;

    /// The plugin over a store holding an active and a terminating namespace.
    async fn plugin() -> anyhow::Result<NamespaceLifecycle> {
        let store: Arc<dyn keelson_store::Store> = Arc::new(keelson_store::memory::open()?);
        for (name, namespace) in [
            ("team", json!({ "metadata": { "name": "team" }, "status": { "phase": "Active" } })),
            (
                "ending",
                json!({
                    "metadata": { "name": "ending", "deletionTimestamp": "2026-01-01T00:00:00Z" },
                    "status": { "phase": "Terminating" },
                }),
            ),
        ] {
            store
                .create(&format!("/registry/namespaces/{name}"), namespace.to_string().into())
                .await?;
        }
        Ok(NamespaceLifecycle::new(lister(store)?))
    }

    fn lister(store: Arc<dyn keelson_store::Store>) -> anyhow::Result<Lister> {
        Sources::over(store).lister("", "namespaces").ok_or_else(|| anyhow::anyhow!("namespaces"))
    }

    fn resource(group: &str, plural: &str) -> anyhow::Result<&'static keelson_api::ResourceInfo> {
        keelson_api::Registry::builtin()
            .resources()
            .find(|r| r.group == group && r.plural == plural)
            .ok_or_else(|| anyhow::anyhow!("{plural} is not registered"))
    }

    async fn admit(
        plugin: &NamespaceLifecycle,
        (group, plural): (&str, &str),
        namespace: &str,
        name: &str,
        operation: Operation,
    ) -> anyhow::Result<Result<(), crate::status::ApiError>> {
        let user = User::default();
        let a = Attributes {
            user: &user,
            info: resource(group, plural)?,
            namespace,
            name,
            subresource: "",
            operation,
            old: None,
            dry_run: false,
        };
        let mut object = json!({});
        let object = (operation != Operation::Delete).then_some(&mut object);
        Ok(plugin.admit(&a, object).await.map(|_| ()))
    }

    const PODS: (&str, &str) = ("", "pods");
    const NAMESPACES: (&str, &str) = ("", "namespaces");

    #[tokio::test]
    async fn creates_in_a_terminating_namespace_are_refused_in_upstreams_words()
    -> anyhow::Result<()> {
        let plugin = plugin().await?;
        assert!(admit(&plugin, PODS, "team", "p", Operation::Create).await?.is_ok());
        let refused = admit(&plugin, PODS, "ending", "p", Operation::Create)
            .await?
            .err()
            .ok_or_else(|| anyhow::anyhow!("a create in a terminating namespace was admitted"))?;
        assert_eq!(refused.code, http::StatusCode::FORBIDDEN);
        assert_eq!(
            refused.message,
            "pods \"p\" is forbidden: unable to create new content in namespace ending because it is being terminated"
        );
        let cause = refused.details.as_ref().map(|d| d["causes"][0].clone());
        assert_eq!(
            cause,
            Some(json!({
                "reason": "NamespaceTerminating",
                "message": "namespace ending is being terminated",
                "field": "metadata.namespace",
            }))
        );
        // Updates and deletes of what is already there go on while the namespace ends.
        assert!(admit(&plugin, PODS, "ending", "p", Operation::Update).await?.is_ok());
        assert!(admit(&plugin, PODS, "ending", "p", Operation::Delete).await?.is_ok());
        Ok(())
    }

    #[tokio::test]
    async fn a_missing_namespace_is_not_found_except_for_access_reviews() -> anyhow::Result<()> {
        let plugin = plugin().await?;
        let refused = admit(&plugin, PODS, "nowhere", "p", Operation::Create)
            .await?
            .err()
            .ok_or_else(|| anyhow::anyhow!("a create in a missing namespace was admitted"))?;
        assert_eq!(refused.code, http::StatusCode::NOT_FOUND);
        assert_eq!(refused.message, "namespaces \"nowhere\" not found");
        let review = ("authorization.k8s.io", "localsubjectaccessreviews");
        assert!(admit(&plugin, review, "nowhere", "", Operation::Create).await?.is_ok());
        // Cluster-scoped objects have no namespace to check.
        let roles = ("rbac.authorization.k8s.io", "clusterroles");
        assert!(admit(&plugin, roles, "", "r", Operation::Create).await?.is_ok());
        Ok(())
    }

    #[tokio::test]
    async fn the_clusters_own_namespaces_may_not_be_deleted() -> anyhow::Result<()> {
        let plugin = plugin().await?;
        for name in IMMORTAL {
            let refused = admit(&plugin, NAMESPACES, "", name, Operation::Delete)
                .await?
                .err()
                .ok_or_else(|| anyhow::anyhow!("namespace {name} could be deleted"))?;
            assert_eq!(refused.code, http::StatusCode::FORBIDDEN);
            assert_eq!(
                refused.message,
                format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted")
            );
        }
        assert!(admit(&plugin, NAMESPACES, "", "team", Operation::Delete).await?.is_ok());
        assert!(
            admit(&plugin, NAMESPACES, "", "kube-node-lease", Operation::Delete).await?.is_ok()
        );
        // Namespaces themselves are never checked against a namespace.
        assert!(admit(&plugin, NAMESPACES, "", "new", Operation::Create).await?.is_ok());
        Ok(())
    }

    #[tokio::test]
    async fn after_a_namespace_delete_creates_ask_the_store() -> anyhow::Result<()> {
        let store: Arc<dyn keelson_store::Store> = Arc::new(keelson_store::memory::open()?);
        let key = "/registry/namespaces/team";
        let revision =
            store.create(key, json!({ "metadata": { "name": "team" } }).to_string().into()).await?;
        let plugin = NamespaceLifecycle::new(lister(store.clone())?);
        assert!(admit(&plugin, PODS, "team", "p", Operation::Create).await?.is_ok());
        assert!(admit(&plugin, NAMESPACES, "", "team", Operation::Delete).await?.is_ok());
        let ending =
            json!({ "metadata": { "name": "team" }, "status": { "phase": "Terminating" } });
        store.update(key, ending.to_string().into(), revision).await?;
        let refused = admit(&plugin, PODS, "team", "p", Operation::Create).await?;
        assert_eq!(refused.err().map(|e| e.code), Some(http::StatusCode::FORBIDDEN));
        Ok(())
    }
}

//! Admission: what happens to a write after it is authorized and decoded, before it is
//! stored — upstream's `admission.Interface`. Each plugin is a type implementing
//! [`Plugin`] (which operations it [`Plugin::handles`]) and [`Mutating`] and/or
//! [`Validating`]; [`plugins`] knows every upstream plugin by name in upstream's order
//! (`AllOrderedPlugins`) and which are on by default, and builds the [`Chain`] the
//! `--enable-admission-plugins`/`--disable-admission-plugins` choice selects. The chain
//! runs the mutating half of every enabled plugin in that order, then the validating
//! half in the same order (ResourceQuota last, as upstream: it charges quotas for what
//! the others let through). A plugin refuses with a 403 `Forbidden` in upstream's words
//! (NamespaceLifecycle: a 404 for a missing namespace), or adds warnings that reach the
//! client as `Warning` headers.
//!
//! Plugins get the narrow read handles they need ([`lister::Lister`]s over the watch
//! caches, their settings) when they are built, so each can be built in a unit test;
//! the few whose dependencies are still entangled (the certificate plugins, which ask
//! the authorizer; the webhooks and policies; ResourceQuota, which writes quota status)
//! hold a weak handle to the server behind the trait.
//!
//! Must never let a refused object reach the store, and never refuse a write for a
//! reason other than the plugin's rule (a missing object it looks up is the plugin's
//! upstream answer, not an internal error).

pub mod certificates;
pub mod defaults;
pub mod lifecycle;
pub mod limitranger;
pub mod lister;
pub mod noderestriction;
pub mod plugins;
pub mod podsecurity;
pub mod policy;
pub mod resourcequota;
pub mod serviceaccount;
pub mod webhook;

use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use keelson_api::ResourceInfo;
use serde_json::Value;

use crate::ApiServer;
use crate::metrics::{Metrics, Step};
use crate::request::User;
use crate::status::{ApiError, ApiResult};

/// What a write does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    /// Upstream's spelling, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// A write as admission sees it (upstream's `admission.Attributes`).
pub struct Attributes<'a> {
    pub user: &'a User,
    pub info: &'static ResourceInfo,
    pub namespace: &'a str,
    pub name: &'a str,
    pub subresource: &'a str,
    pub operation: Operation,
    /// The object before the write (updates and deletes).
    pub old: Option<&'a Value>,
    pub dry_run: bool,
}

impl Attributes<'_> {
    pub fn is(&self, group: &str, plural: &str) -> bool {
        self.info.group == group && self.info.plural == plural
    }

    /// Upstream's `admission.NewForbidden`: `pods "x" is forbidden: why`.
    pub fn forbidden(&self, why: impl std::fmt::Display) -> ApiError {
        ApiError::forbidden_resource(self.info.group, self.info.plural, self.name, &why.to_string())
    }
}

/// Upstream's `admission.Interface`: a plugin says which operations it looks at, and is
/// mutating ([`Mutating`]), validating ([`Validating`]) or both.
pub trait Plugin: Send + Sync {
    /// Upstream's `Handles(operation)`: whether the chain calls it for `operation`.
    fn handles(&self, operation: Operation) -> bool;

    /// Its mutating half, if any (upstream's `MutationInterface`).
    fn mutating(&self) -> Option<&dyn Mutating> {
        None
    }

    /// Its validating half, if any (upstream's `ValidationInterface`).
    fn validating(&self) -> Option<&dyn Validating> {
        None
    }
}

/// Upstream's `MutationInterface.Admit`: may change `object` (`None` for deletes);
/// returns warnings, or refuses.
#[async_trait::async_trait]
pub trait Mutating: Plugin {
    async fn admit(&self, a: &Attributes<'_>, object: Option<&mut Value>)
    -> ApiResult<Vec<String>>;
}

/// Upstream's `ValidationInterface.Validate`: looks at the final `object` (`None` for
/// deletes); returns warnings, or refuses.
#[async_trait::async_trait]
pub trait Validating: Plugin {
    async fn validate(&self, a: &Attributes<'_>, object: Option<&Value>) -> ApiResult<Vec<String>>;
}

/// The enabled plugins, in upstream's order.
pub struct Chain {
    plugins: Vec<(&'static str, Box<dyn Plugin>)>,
}

impl Chain {
    pub fn new(plugins: Vec<(&'static str, Box<dyn Plugin>)>) -> Chain {
        Chain { plugins }
    }

    /// The names of the enabled plugins, in the order they run.
    pub fn names(&self) -> Vec<&'static str> {
        self.plugins.iter().map(|(name, _)| *name).collect()
    }

    /// The names of the plugins with a mutating half, in order.
    pub fn mutating(&self) -> Vec<&'static str> {
        self.plugins.iter().filter(|(_, p)| p.mutating().is_some()).map(|(n, _)| *n).collect()
    }

    /// The names of the plugins with a validating half, in order.
    pub fn validating(&self) -> Vec<&'static str> {
        self.plugins.iter().filter(|(_, p)| p.validating().is_some()).map(|(n, _)| *n).collect()
    }

    /// Runs the chain on a write: every mutating half that handles the operation, then
    /// every validating half. `object` is `None` for deletes. Returns the warnings.
    pub async fn run(
        &self,
        metrics: &Metrics,
        a: &Attributes<'_>,
        mut object: Option<&mut Value>,
    ) -> ApiResult<Vec<String>> {
        let mut warnings = self.mutate(metrics, a, object.as_deref_mut()).await?;
        warnings.extend(self.validate(metrics, a, object.as_deref()).await?);
        Ok(warnings)
    }

    /// The mutating halves that handle the operation, in order. Returns the warnings.
    pub async fn mutate(
        &self,
        metrics: &Metrics,
        a: &Attributes<'_>,
        mut object: Option<&mut Value>,
    ) -> ApiResult<Vec<String>> {
        let mut warnings = Vec::new();
        let operation = a.operation.as_str();
        let step = Instant::now();
        let admitted: ApiResult<()> = async {
            for (name, plugin) in self.handling(a.operation) {
                let Some(mutating) = plugin.mutating() else { continue };
                let started = Instant::now();
                let admitted = mutating.admit(a, object.as_deref_mut()).await;
                metrics.admission_controller(name, operation, Step::Admit, &admitted, started);
                warnings.extend(admitted?);
            }
            Ok(())
        }
        .await;
        metrics.admission_step(operation, Step::Admit, &admitted, step);
        admitted?;
        Ok(warnings)
    }

    /// The validating halves that handle the operation, in order. Returns the warnings.
    pub async fn validate(
        &self,
        metrics: &Metrics,
        a: &Attributes<'_>,
        object: Option<&Value>,
    ) -> ApiResult<Vec<String>> {
        let mut warnings = Vec::new();
        let operation = a.operation.as_str();
        let step = Instant::now();
        let validated: ApiResult<()> = async {
            for (name, plugin) in self.handling(a.operation) {
                let Some(validating) = plugin.validating() else { continue };
                let started = Instant::now();
                let validated = validating.validate(a, object).await;
                metrics.admission_controller(name, operation, Step::Validate, &validated, started);
                warnings.extend(validated?);
            }
            Ok(())
        }
        .await;
        metrics.admission_step(operation, Step::Validate, &validated, step);
        validated?;
        Ok(warnings)
    }

    fn handling(
        &self,
        operation: Operation,
    ) -> impl Iterator<Item = &(&'static str, Box<dyn Plugin>)> {
        self.plugins.iter().filter(move |(_, p)| p.handles(operation))
    }
}

/// Runs the server's admission chain on a create or update; `object` may be changed
/// by the mutating plugins. Returns the warnings for the client.
pub async fn admit(
    api: &ApiServer,
    a: &Attributes<'_>,
    object: &mut Value,
) -> ApiResult<Vec<String>> {
    api.admission.run(&api.metrics, a, Some(object)).await
}

/// The mutating half of [`admit`], for an update: upstream runs it before the
/// strategy's update validation, which [`admit_validating`] follows.
pub async fn admit_mutating(
    api: &ApiServer,
    a: &Attributes<'_>,
    object: &mut Value,
) -> ApiResult<Vec<String>> {
    api.admission.mutate(&api.metrics, a, Some(object)).await
}

/// The validating half of [`admit`].
pub async fn admit_validating(
    api: &ApiServer,
    a: &Attributes<'_>,
    object: &Value,
) -> ApiResult<Vec<String>> {
    api.admission.validate(&api.metrics, a, Some(object)).await
}

/// Runs the server's admission chain on a delete.
pub async fn admit_delete(api: &ApiServer, a: &Attributes<'_>) -> ApiResult<Vec<String>> {
    api.admission.run(&api.metrics, a, None).await
}

/// The object a delete removes, for the plugins that look at it (webhooks, policies);
/// `None` when it cannot be read (the delete itself reports what is missing).
pub async fn deleted_object(api: &ApiServer, a: &Attributes<'_>) -> Option<Value> {
    let place = crate::registry::Place {
        info: a.info,
        namespace: (!a.namespace.is_empty()).then_some(a.namespace),
        name: a.name,
    };
    api.objects.get(place).await.ok().map(|(old, _)| old)
}

/// A weak handle to the server, for the plugins whose dependencies are not yet
/// narrowed to listers: the server owns the chain, so the chain cannot own it, and the
/// chain is built before the server, which is attached once it exists.
#[derive(Clone, Default)]
pub struct Server(Arc<OnceLock<Weak<ApiServer>>>);

impl Server {
    /// A handle to a server not built yet (or never, in tests).
    pub fn pending() -> Server {
        Server::default()
    }

    pub(crate) fn attach(&self, api: &Arc<ApiServer>) {
        let _ = self.0.set(Arc::downgrade(api));
    }

    pub(crate) fn get(&self) -> ApiResult<Arc<ApiServer>> {
        self.0
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| ApiError::internal("the API server is not running"))
    }
}

/// Every object stored under `prefix`, from the watch cache (or the store while the
/// cache starts).
pub async fn stored(api: &ApiServer, prefix: &str) -> Vec<Value> {
    stored_under(api, prefix, prefix).await
}

/// The objects of the resource stored under `prefix` that are in `namespace`.
pub async fn stored_in(api: &ApiServer, prefix: &str, namespace: &str) -> Vec<Value> {
    stored_under(api, prefix, &format!("{prefix}{namespace}/")).await
}

/// The objects under `dir`, read through the cache of the resource at `prefix`.
async fn stored_under(api: &ApiServer, prefix: &str, dir: &str) -> Vec<Value> {
    let kvs = match api.caches.get(prefix).await {
        Some(cache) => cache.objects(dir).0,
        None => match api.store.list(dir, Default::default()).await {
            Ok(page) => page.items.into_iter().map(Arc::new).collect(),
            Err(e) => {
                tracing::warn!(prefix, error = %e, "admission cannot read objects");
                Vec::new()
            }
        },
    };
    kvs.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect()
}

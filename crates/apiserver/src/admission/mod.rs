//! Admission: what happens to a write after it is authorized and decoded, before it is
//! stored (upstream's `--enable-admission-plugins`, on by default here in upstream's
//! order). Mutating plugins first — LimitRanger, ServiceAccount, Priority,
//! DefaultTolerationSeconds, DefaultStorageClass, then the mutating webhooks — then
//! validating ones — LimitRanger, NodeRestriction, CertificateApproval,
//! CertificateSigning, CertificateSubjectRestriction, PodSecurity,
//! ValidatingAdmissionPolicy, the validating webhooks, and ResourceQuota (last, as
//! upstream: it charges quotas for what the others let through). A plugin refuses with
//! a 403 `Forbidden` in upstream's words, or adds warnings that reach the client as
//! `Warning` headers.
//!
//! NamespaceLifecycle is the check of the namespace in `rest.rs`.
//!
//! Must never let a refused object reach the store, and never refuse a write for a
//! reason other than the plugin's rule (a missing object it looks up is the plugin's
//! upstream answer, not an internal error).

pub mod certificates;
pub mod defaults;
pub mod limitranger;
pub mod noderestriction;
pub mod podsecurity;
pub mod policy;
pub mod resourcequota;
pub mod serviceaccount;
pub mod webhook;

use keelson_api::ResourceInfo;
use serde_json::Value;

use crate::ApiServer;
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

/// Runs the admission chain on a create or update; `object` may be changed by the
/// mutating plugins. Returns the warnings for the client.
pub async fn admit(
    api: &ApiServer,
    a: &Attributes<'_>,
    object: &mut Value,
) -> ApiResult<Vec<String>> {
    limitranger::mutate(api, a, object).await?;
    if a.operation == Operation::Create && a.subresource.is_empty() {
        serviceaccount::admit(api, a, object).await?;
        defaults::priority(api, a, object).await?;
        defaults::toleration_seconds(a, object);
        defaults::storage_class(api, a, object).await?;
    }
    let mut warnings = webhook::mutate(api, a, object).await?;
    limitranger::validate(api, a, object).await?;
    noderestriction::validate(api, a, Some(object)).await?;
    certificates::validate(api, a, object).await?;
    warnings.extend(podsecurity::validate(api, a, object).await?);
    warnings.extend(policy::validate(api, a, Some(object)).await?);
    warnings.extend(webhook::validate(api, a, Some(object)).await?);
    resourcequota::validate(api, a, object).await?;
    Ok(warnings)
}

/// Runs the validating plugins that look at deletes: NodeRestriction, and the
/// webhooks (which see the object being deleted).
pub async fn admit_delete(api: &ApiServer, a: &Attributes<'_>) -> ApiResult<Vec<String>> {
    noderestriction::validate(api, a, None).await?;
    if !webhook::any(api).await && policy::none(api).await {
        return Ok(Vec::new());
    }
    let place = crate::registry::Place {
        info: a.info,
        namespace: (!a.namespace.is_empty()).then_some(a.namespace),
        name: a.name,
    };
    let old = match api.objects.get(place).await {
        Ok((old, _)) => old,
        // The delete itself reports what is missing.
        Err(_) => return Ok(Vec::new()),
    };
    let with_old = Attributes { old: Some(&old), ..*a };
    let mut warnings = policy::validate(api, &with_old, None).await?;
    warnings.extend(webhook::validate(api, &with_old, None).await?);
    Ok(warnings)
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

/// One object, from the watch cache of its resource (as upstream's admission plugins
/// read listers), else from the store; `None` if it does not exist.
pub async fn cached(
    api: &ApiServer,
    info: &keelson_api::ResourceInfo,
    namespace: Option<&str>,
    name: &str,
) -> Option<Value> {
    let key = crate::registry::key(info, namespace, name);
    if let Some(cache) = api.caches.get(&info.storage_prefix()).await {
        let found = cache.objects(&key).0.into_iter().find(|kv| kv.key == key);
        return found.and_then(|kv| crate::registry::decode(info, &kv).ok());
    }
    let place = crate::registry::Place { info, namespace, name };
    api.objects.get(place).await.ok().map(|(object, _)| object)
}

/// The objects under `dir`, read through the cache of the resource at `prefix`.
async fn stored_under(api: &ApiServer, prefix: &str, dir: &str) -> Vec<Value> {
    let kvs = match api.caches.get(prefix).await {
        Some(cache) => cache.objects(dir).0,
        None => match api.store.list(dir, Default::default()).await {
            Ok(page) => page.items.into_iter().map(std::sync::Arc::new).collect(),
            Err(e) => {
                tracing::warn!(prefix, error = %e, "admission cannot read objects");
                Vec::new()
            }
        },
    };
    kvs.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect()
}

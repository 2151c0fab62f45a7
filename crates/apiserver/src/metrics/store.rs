//! The store's side: [`Instrumented`], a [`Store`] wrapper that times every call in
//! `etcd_request_duration_seconds{operation,type}` — upstream's name, whatever the
//! backend, as k3s's API server reports it over kine — and the object counts of
//! `apiserver_storage_objects{resource}`. Both name a resource as upstream's
//! `GroupResource` prints: `pods`, `deployments.apps`, `widgets.example.com`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use keelson_api::Registry;
use keelson_store::{KeyValue, ListOptions, ListResult, Result, Revision, Store, Watch};
use prometheus_client::encoding::EncodeLabelSet;

use super::Metrics;
use super::histogram::Histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub operation: &'static str,
    pub r#type: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub resource: String,
}

/// A resource's name in upstream's metrics: `plural` for the core group, else
/// `plural.group`.
pub fn group_resource(group: &str, plural: &str) -> String {
    if group.is_empty() { plural.to_owned() } else { format!("{plural}.{group}") }
}

/// The built-in resources by the first directory of their storage prefix (or the first
/// two, for prefixes such as `/registry/services/specs/`), each with its label.
fn builtin_labels() -> &'static HashMap<String, &'static str> {
    static LABELS: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    LABELS.get_or_init(|| {
        Registry::builtin()
            .resources()
            .filter(|info| info.storage_version.is_some())
            .map(|info| {
                let label: &'static str =
                    Box::leak(group_resource(info.group, info.plural).into_boxed_str());
                (info.storage_prefix(), label)
            })
            .collect()
    })
}

/// The resource a store key (or directory) belongs to, for the `type` label: a built-in
/// one by its storage prefix, a custom one (`/registry/<group>/<plural>/`) as
/// `plural.group`, anything else by its first directory.
fn resource_of(key: &str) -> Cow<'static, str> {
    let rest = key.strip_prefix("/registry/").unwrap_or(key);
    let mut parts = rest.split('/');
    let (first, second) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let labels = builtin_labels();
    for prefix in [format!("/registry/{first}/{second}/"), format!("/registry/{first}/")] {
        if let Some(label) = labels.get(&prefix) {
            return Cow::Borrowed(label);
        }
    }
    if first.contains('.') && !second.is_empty() {
        Cow::Owned(format!("{second}.{first}"))
    } else {
        Cow::Owned(first.to_owned())
    }
}

/// A store whose every call is timed.
pub struct Instrumented {
    inner: Arc<dyn Store>,
    metrics: Metrics,
}

impl Instrumented {
    pub fn wrap(inner: Arc<dyn Store>, metrics: &Metrics) -> Arc<dyn Store> {
        Arc::new(Instrumented { inner, metrics: metrics.clone() })
    }

    fn histogram(&self, operation: &'static str, key: &str) -> Histogram {
        let labels = StoreLabels { operation, r#type: resource_of(key) };
        self.metrics.inner.storage.get_or_create(&labels).clone()
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        key: &str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let result = call.await;
        self.histogram(operation, key).observe(started.elapsed().as_secs_f64());
        result
    }
}

#[async_trait]
impl Store for Instrumented {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.timed("get", key, self.inner.get(key)).await
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        self.timed("list", prefix, self.inner.list(prefix, options)).await
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        self.timed("count", prefix, self.inner.count(prefix)).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        self.timed("create", key, self.inner.create(key, value)).await
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        self.timed("update", key, self.inner.update(key, value, expected)).await
    }

    async fn delete(&self, key: &str, expected: Revision) -> Result<Revision> {
        self.timed("delete", key, self.inner.delete(key, expected)).await
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch> {
        self.inner.watch(prefix, from_revision).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }

    async fn changed_at(&self, prefix: &str) -> Result<Option<Revision>> {
        self.inner.changed_at(prefix).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

/// Sets `apiserver_storage_objects` of every stored resource `registry` serves from
/// the store's counts (upstream counts every minute; here at each scrape). A resource
/// whose count fails keeps its last value.
pub async fn count_objects(metrics: &Metrics, registry: &Registry, store: &dyn Store) {
    let mut seen = std::collections::HashSet::new();
    for info in registry.resources() {
        if info.storage_version.is_none() && info.custom.is_none() {
            continue;
        }
        let resource = group_resource(info.group, info.plural);
        if !seen.insert(resource.clone()) {
            continue;
        }
        if let Ok(count) = store.count(&info.storage_prefix()).await {
            let gauge = metrics.inner.objects.get_or_create(&ObjectLabels { resource }).clone();
            gauge.set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_named_as_upstream_names_group_resources() {
        assert_eq!(resource_of("/registry/pods/default/web"), "pods");
        assert_eq!(resource_of("/registry/deployments/default/web"), "deployments.apps");
        assert_eq!(resource_of("/registry/services/specs/default/web"), "services");
        assert_eq!(resource_of("/registry/services/endpoints/default/web"), "endpoints");
        assert_eq!(resource_of("/registry/minions/"), "nodes");
        assert_eq!(resource_of("/registry/example.com/widgets/default/w"), "widgets.example.com");
        assert_eq!(
            resource_of("/registry/apiextensions.k8s.io/customresourcedefinitions/w"),
            "customresourcedefinitions.apiextensions.k8s.io"
        );
    }
}

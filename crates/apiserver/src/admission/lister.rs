//! Listers: the read handles admission plugins are given instead of the server, as
//! upstream's plugins get informers' listers. A lister reads one resource from its
//! watch cache (starting it on first use) and falls back to the store while the cache
//! cannot answer; `live` always asks the store, for the last word on a miss.
//!
//! Must never write.

use std::sync::Arc;

use keelson_api::ResourceInfo;
use keelson_store::Store;
use serde_json::Value;

use crate::cache::Caches;
use crate::registry::{self, Objects, Place};
use crate::status::ApiResult;

/// What plugins are built from: the watch caches and the store they follow.
#[derive(Clone)]
pub struct Sources {
    pub(crate) caches: Arc<Caches>,
    pub(crate) store: Arc<dyn Store>,
}

impl Sources {
    pub(crate) fn new(caches: Arc<Caches>, store: Arc<dyn Store>) -> Self {
        Sources { caches, store }
    }

    /// Sources over `store` alone, with caches of their own (for tests).
    pub fn over(store: Arc<dyn Store>) -> Self {
        Sources { caches: Arc::new(Caches::new(store.clone())), store }
    }

    /// The lister of a built-in resource of `group` (`""` for the core group); `None`
    /// if there is no such resource.
    pub fn lister(&self, group: &str, plural: &str) -> Option<Lister> {
        let info = keelson_api::Registry::builtin()
            .resources()
            .find(|r| r.group == group && r.plural == plural)?;
        let objects = Arc::new(Objects { store: self.store.clone() });
        Some(Lister { info, caches: self.caches.clone(), objects })
    }
}

/// Reads of one resource.
#[derive(Clone)]
pub struct Lister {
    info: &'static ResourceInfo,
    caches: Arc<Caches>,
    objects: Arc<Objects>,
}

impl Lister {
    pub fn info(&self) -> &'static ResourceInfo {
        self.info
    }

    /// Every object of the resource, or those in `namespace`.
    pub async fn list(&self, namespace: Option<&str>) -> Vec<Value> {
        let prefix = self.info.storage_prefix();
        let dir = registry::directory(self.info, namespace);
        let kvs = match self.caches.get(&prefix).await {
            Some(cache) => cache.objects(&dir).0,
            None => match self.objects.store.list(&dir, Default::default()).await {
                Ok(page) => page.items.into_iter().map(Arc::new).collect(),
                Err(e) => {
                    tracing::warn!(prefix, error = %e, "admission cannot read objects");
                    Vec::new()
                }
            },
        };
        kvs.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect()
    }

    /// One object from the watch cache (else the store); `None` if it does not exist.
    pub async fn get(&self, namespace: Option<&str>, name: &str) -> Option<Value> {
        let key = registry::key(self.info, namespace, name);
        if let Some(cache) = self.caches.get(&self.info.storage_prefix()).await {
            let found = cache.objects(&key).0.into_iter().find(|kv| kv.key == key);
            return found.and_then(|kv| registry::decode(self.info, &kv).ok());
        }
        self.live(namespace, name).await.ok()
    }

    /// One object read from the store: its NotFound when missing.
    pub async fn live(&self, namespace: Option<&str>, name: &str) -> ApiResult<Value> {
        self.objects.get(Place { info: self.info, namespace, name }).await.map(|(object, _)| object)
    }
}

impl std::fmt::Debug for Lister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lister").field("resource", &self.info.plural).finish()
    }
}

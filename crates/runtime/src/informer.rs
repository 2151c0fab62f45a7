//! Shared informers (client-go's `SharedInformerFactory`): one list-and-watch per
//! resource type per process, however many controllers read it, feeding a typed
//! in-memory store with named indexes (pods by `spec.nodeName`, …) and calling the
//! controllers' change handlers.
//!
//! The watch is kube-runtime's `watcher`: it lists, watches from the list's revision,
//! resumes after a dropped connection and lists again after `410 Gone`. After such a
//! re-list the store is replaced by what the list returned and handlers are told what
//! changed in between — objects that went away while the watch was broken are
//! `Deleted`, as client-go's `DeletedFinalStateUnknown`.
//!
//! Objects are held without `metadata.managedFields` (upstream's controller manager and
//! scheduler strip them too, `TransformStripManagedFields`): no controller reads them,
//! and they are often the larger half of a small object.
//!
//! Must never hand a handler an object the store does not hold, nor miss one: a handler
//! registered late is first told of every object already held.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, RwLock};

use futures_util::StreamExt;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

/// A store key: `namespace/name`, or `name` for cluster-scoped objects (client-go's
/// `MetaNamespaceKeyFunc`).
pub type Key = String;

/// The key of `object`.
pub fn key_of<K: Resource>(object: &K) -> Key {
    let meta = object.meta();
    let name = meta.name.as_deref().unwrap_or_default();
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_owned(),
    }
}

/// What happened to an object, as a handler is told.
#[derive(Debug)]
pub enum Change<K> {
    Added(Arc<K>),
    Updated {
        old: Arc<K>,
        new: Arc<K>,
    },
    /// The last state the store held.
    Deleted(Arc<K>),
}

impl<K> Change<K> {
    /// The object as it is now (or was last, when deleted).
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Added(o) | Change::Deleted(o) | Change::Updated { new: o, .. } => o,
        }
    }
}

type IndexFn<K> = Box<dyn Fn(&K) -> Vec<String> + Send + Sync>;
type Handler<K> = Box<dyn Fn(&Change<K>) + Send + Sync>;

struct Index<K> {
    func: IndexFn<K>,
    entries: HashMap<String, HashSet<Key>>,
}

impl<K> Index<K> {
    fn add(&mut self, key: &Key, object: &K) {
        for value in (self.func)(object) {
            self.entries.entry(value).or_default().insert(key.clone());
        }
    }

    fn remove(&mut self, key: &Key, object: &K) {
        for value in (self.func)(object) {
            if let Some(keys) = self.entries.get_mut(&value) {
                keys.remove(key);
                if keys.is_empty() {
                    self.entries.remove(&value);
                }
            }
        }
    }
}

struct Cache<K> {
    objects: HashMap<Key, Arc<K>>,
    indexes: HashMap<&'static str, Index<K>>,
}

impl<K> Cache<K> {
    fn put(&mut self, key: Key, object: Arc<K>) -> Option<Arc<K>> {
        let old = self.objects.insert(key.clone(), object.clone());
        for index in self.indexes.values_mut() {
            if let Some(old) = &old {
                index.remove(&key, old);
            }
            index.add(&key, &object);
        }
        old
    }

    fn delete(&mut self, key: &Key) -> Option<Arc<K>> {
        let old = self.objects.remove(key)?;
        for index in self.indexes.values_mut() {
            index.remove(key, &old);
        }
        Some(old)
    }
}

/// One resource type's informer: the store, its indexes and its handlers.
pub struct Informer<K> {
    cache: RwLock<Cache<K>>,
    /// Held while a change is applied and dispatched, and while a handler is added, so
    /// a new handler sees each object exactly once.
    handlers: Mutex<Vec<Handler<K>>>,
    synced: tokio::sync::watch::Sender<bool>,
    /// A list in progress after `Init`: what it returned so far.
    relist: Mutex<Option<HashMap<Key, Arc<K>>>>,
}

impl<K: Resource + Send + Sync + 'static> Default for Informer<K> {
    fn default() -> Self {
        Informer {
            cache: RwLock::new(Cache { objects: HashMap::new(), indexes: HashMap::new() }),
            handlers: Mutex::new(Vec::new()),
            synced: tokio::sync::watch::channel(false).0,
            relist: Mutex::new(None),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<K: Resource + Send + Sync + 'static> Informer<K> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache<K>> {
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cache<K>> {
        self.cache.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The object stored under `key`.
    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.read().objects.get(key).cloned()
    }

    /// Every object held.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().objects.values().cloned().collect()
    }

    /// The keys of every object held.
    pub fn keys(&self) -> Vec<Key> {
        self.read().objects.keys().cloned().collect()
    }

    /// Adds an index: `func` says the values an object is found by (client-go's
    /// `IndexFunc`). Objects already held are indexed at once.
    pub fn add_index(
        &self,
        name: &'static str,
        func: impl Fn(&K) -> Vec<String> + Send + Sync + 'static,
    ) {
        let mut cache = self.write();
        let mut index = Index { func: Box::new(func), entries: HashMap::new() };
        for (key, object) in &cache.objects {
            index.add(key, object);
        }
        cache.indexes.insert(name, index);
    }

    /// The objects `index` finds under `value`; none for an unknown index.
    pub fn by_index(&self, index: &str, value: &str) -> Vec<Arc<K>> {
        let cache = self.read();
        let Some(keys) = cache.indexes.get(index).and_then(|i| i.entries.get(value)) else {
            return Vec::new();
        };
        keys.iter().filter_map(|k| cache.objects.get(k).cloned()).collect()
    }

    /// Calls `handler` for every change from now on, after telling it of every object
    /// already held as `Added`. Handlers run on the informer's task: they must be quick
    /// (typically: put a key in a work queue) and must not add handlers.
    pub fn on_change(&self, handler: impl Fn(&Change<K>) + Send + Sync + 'static) {
        let mut handlers = lock(&self.handlers);
        for object in self.list() {
            handler(&Change::Added(object));
        }
        handlers.push(Box::new(handler));
    }

    /// Queues the key of every object added, changed or deleted: the handler of a
    /// controller whose queue holds keys of this very type.
    pub fn queue_changes(&self, queue: &crate::queue::WorkQueue<Key>) {
        let queue = queue.clone();
        self.on_change(move |change| queue.add(key_of(&**change.object())));
    }

    /// Whether the first list has been stored.
    pub fn has_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until the first list has been stored.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        // The sender lives as long as `self`.
        let _ = rx.wait_for(|synced| *synced).await;
    }

    fn dispatch(handlers: &[Handler<K>], change: Change<K>) {
        for handler in handlers {
            handler(&change);
        }
    }

    /// Applies one event of the watch to the store and tells the handlers.
    pub fn apply(&self, event: Event<K>) {
        let handlers = lock(&self.handlers);
        match event {
            Event::Apply(object) => {
                let object = Arc::new(trimmed(object));
                let old = self.write().put(key_of(&*object), object.clone());
                let change = match old {
                    Some(old) => Change::Updated { old, new: object },
                    None => Change::Added(object),
                };
                Self::dispatch(&handlers, change);
            }
            Event::Delete(object) => {
                let key = key_of(&object);
                let old = self.write().delete(&key).unwrap_or_else(|| Arc::new(trimmed(object)));
                Self::dispatch(&handlers, Change::Deleted(old));
            }
            Event::Init => *lock(&self.relist) = Some(HashMap::new()),
            Event::InitApply(object) => {
                let object = Arc::new(trimmed(object));
                lock(&self.relist).get_or_insert_default().insert(key_of(&*object), object);
            }
            Event::InitDone => {
                let listed = lock(&self.relist).take().unwrap_or_default();
                for change in self.replace(listed) {
                    Self::dispatch(&handlers, change);
                }
                self.synced.send_replace(true);
            }
        }
    }

    /// Replaces the store with a fresh list; returns what changed.
    fn replace(&self, listed: HashMap<Key, Arc<K>>) -> Vec<Change<K>> {
        let mut cache = self.write();
        let gone: Vec<Key> =
            cache.objects.keys().filter(|k| !listed.contains_key(*k)).cloned().collect();
        let mut changes = Vec::new();
        for key in gone {
            if let Some(old) = cache.delete(&key) {
                changes.push(Change::Deleted(old));
            }
        }
        for (key, object) in listed {
            match cache.objects.get(&key) {
                Some(old) if old.meta().resource_version == object.meta().resource_version => {}
                Some(_) => {
                    let old = cache.put(key, object.clone()).expect("present");
                    changes.push(Change::Updated { old, new: object });
                }
                None => {
                    cache.put(key, object.clone());
                    changes.push(Change::Added(object));
                }
            }
        }
        changes
    }
}

/// The object as the store holds it: without its managed fields.
fn trimmed<K: Resource>(mut object: K) -> K {
    object.meta_mut().managed_fields = None;
    object
}

/// What an informer watches beyond its type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selectors {
    pub labels: Option<String>,
    pub fields: Option<String>,
}

/// A process's informers: one per resource type and selectors, started on first use.
/// Dropping it stops every watch it started.
pub struct Informers {
    client: Client,
    started: Mutex<HashMap<(TypeId, Selectors), Arc<dyn Any + Send + Sync>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Informers {
    pub fn new(client: Client) -> Self {
        Informers { client, started: Mutex::new(HashMap::new()), tasks: Mutex::new(Vec::new()) }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The informer of every `K` in the cluster.
    pub fn get<K>(&self) -> Arc<Informer<K>>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        self.get_with(Selectors::default())
    }

    /// The informer of the `K`s `selectors` match (a kubelet's pods:
    /// `fields: spec.nodeName=<node>`).
    pub fn get_with<K>(&self, selectors: Selectors) -> Arc<Informer<K>>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let mut started = lock(&self.started);
        let id = (TypeId::of::<K>(), selectors.clone());
        if let Some(existing) = started.get(&id)
            && let Ok(informer) = existing.clone().downcast::<Informer<K>>()
        {
            return informer;
        }
        let informer = Arc::new(Informer::<K>::default());
        started.insert(id, informer.clone());
        let mut config = watcher::Config::default();
        if let Some(labels) = &selectors.labels {
            config = config.labels(labels);
        }
        if let Some(fields) = &selectors.fields {
            config = config.fields(fields);
        }
        let api: Api<K> = Api::all(self.client.clone());
        let feed = informer.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher::watcher(api, config).default_backoff().boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => feed.apply(event),
                    // The backoff retries; the error is worth a line.
                    Err(e) => {
                        tracing::warn!(kind = K::kind(&()).as_ref(), error = %e, "watch failed")
                    }
                }
            }
        });
        lock(&self.tasks).push(task);
        informer
    }
}

impl Drop for Informers {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use keelson_api::k8s_openapi::api::core::v1::Pod;
    use kube::ResourceExt;

    use super::*;

    fn pod(name: &str, node: &str, rv: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.namespace = Some("default".into());
        pod.metadata.name = Some(name.into());
        pod.metadata.resource_version = Some(rv.into());
        pod.spec = Some(Default::default());
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = Some(node.into()).filter(|n: &String| !n.is_empty());
        }
        pod
    }

    fn by_node(pod: &Pod) -> Vec<String> {
        pod.spec.as_ref().and_then(|s| s.node_name.clone()).into_iter().collect()
    }

    fn recorder(informer: &Informer<Pod>) -> Arc<Mutex<Vec<String>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        informer.on_change(move |change| {
            let line = match change {
                Change::Added(p) => format!("added {}", p.name_any()),
                Change::Updated { old, new } => format!(
                    "updated {} {}->{}",
                    new.name_any(),
                    old.resource_version().unwrap_or_default(),
                    new.resource_version().unwrap_or_default()
                ),
                Change::Deleted(p) => format!("deleted {}", p.name_any()),
            };
            lock(&sink).push(line);
        });
        seen
    }

    fn names(pods: Vec<Arc<Pod>>) -> Vec<String> {
        let mut names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
        names.sort();
        names
    }

    fn initial_list(informer: &Informer<Pod>, pods: Vec<Pod>) {
        informer.apply(Event::Init);
        for p in pods {
            informer.apply(Event::InitApply(p));
        }
        informer.apply(Event::InitDone);
    }

    #[test]
    fn objects_are_held_without_their_managed_fields() {
        use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let informer = Informer::<Pod>::default();
        let with_fields = |name: &str, version: &str| {
            let mut p = pod(name, "n1", version);
            p.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
                manager: Some("kubectl".into()),
                ..Default::default()
            }]);
            p
        };
        initial_list(&informer, vec![with_fields("a", "1")]);
        informer.apply(Event::Apply(with_fields("b", "2")));
        for name in ["default/a", "default/b"] {
            let held = informer.get(name).expect("held");
            assert_eq!(held.metadata.managed_fields, None, "{name}");
        }
    }

    #[test]
    fn the_first_list_fills_the_store_and_marks_it_synced() {
        let informer = Informer::<Pod>::default();
        let seen = recorder(&informer);
        assert!(!informer.has_synced());
        initial_list(&informer, vec![pod("a", "n1", "1"), pod("b", "n2", "2")]);
        assert!(informer.has_synced());
        assert_eq!(names(informer.list()), ["a", "b"]);
        assert_eq!(informer.get("default/a").map(|p| p.name_any()).as_deref(), Some("a"));
        let mut seen = lock(&seen).clone();
        seen.sort();
        assert_eq!(seen, ["added a", "added b"]);
    }

    #[test]
    fn indexes_follow_updates_and_deletes() {
        let informer = Informer::<Pod>::default();
        informer.add_index("node", by_node);
        initial_list(&informer, vec![pod("a", "n1", "1"), pod("b", "n1", "2"), pod("c", "", "3")]);
        assert_eq!(names(informer.by_index("node", "n1")), ["a", "b"]);
        informer.apply(Event::Apply(pod("b", "n2", "4")));
        assert_eq!(names(informer.by_index("node", "n1")), ["a"]);
        assert_eq!(names(informer.by_index("node", "n2")), ["b"]);
        informer.apply(Event::Delete(pod("a", "n1", "5")));
        assert!(informer.by_index("node", "n1").is_empty());
        assert!(informer.by_index("other", "n1").is_empty());
        // An index added later covers what is already held.
        informer.add_index("late", by_node);
        assert_eq!(names(informer.by_index("late", "n2")), ["b"]);
    }

    #[test]
    fn a_handler_added_late_is_told_of_every_object_once() {
        let informer = Informer::<Pod>::default();
        initial_list(&informer, vec![pod("a", "n1", "1")]);
        let seen = recorder(&informer);
        informer.apply(Event::Apply(pod("a", "n1", "2")));
        informer.apply(Event::Apply(pod("b", "n1", "3")));
        informer.apply(Event::Delete(pod("a", "n1", "4")));
        assert_eq!(*lock(&seen), ["added a", "updated a 1->2", "added b", "deleted a"]);
    }

    #[test]
    fn a_relist_after_410_reports_what_changed_while_the_watch_was_broken() {
        let informer = Informer::<Pod>::default();
        initial_list(
            &informer,
            vec![pod("a", "n1", "1"), pod("b", "n1", "2"), pod("c", "n1", "3")],
        );
        informer.add_index("node", by_node);
        let seen = recorder(&informer);
        lock(&seen).clear();
        // The watch broke; `a` was deleted, `b` changed and `d` created meanwhile; the
        // watcher gets 410 on resuming and lists again.
        initial_list(
            &informer,
            vec![pod("b", "n2", "7"), pod("c", "n1", "3"), pod("d", "n1", "8")],
        );
        let mut seen = lock(&seen).clone();
        seen.sort();
        assert_eq!(seen, ["added d", "deleted a", "updated b 2->7"]);
        assert_eq!(names(informer.list()), ["b", "c", "d"]);
        assert_eq!(names(informer.by_index("node", "n1")), ["c", "d"]);
        assert_eq!(names(informer.by_index("node", "n2")), ["b"]);
        // Until the relist is done, readers keep the old state.
        informer.apply(Event::Init);
        informer.apply(Event::InitApply(pod("x", "n1", "9")));
        assert_eq!(names(informer.list()), ["b", "c", "d"]);
    }
}

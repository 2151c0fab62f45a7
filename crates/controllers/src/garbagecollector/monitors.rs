//! The collector's monitors (upstream's `GraphBuilder.monitors`): one metadata-only
//! list-and-watch per resource that supports list, watch and delete, found by
//! discovery and found again every [`RESYNC`] and whenever a CustomResourceDefinition
//! changes, feeding the graph.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::task::JoinHandle;

use super::graph::{Graph, Identity, Uid, Work};
use crate::discovery::{self, Served};
use crate::lock;
use keelson_runtime::queue::WorkQueue;

/// How often discovery is read again (upstream's 30 s).
pub const RESYNC: Duration = Duration::from_secs(30);

/// Resources never collected (upstream's `DefaultIgnoredResources`).
const IGNORED: [(&str, &str); 2] = [("", "events"), ("events.k8s.io", "events")];

/// `group/version/kind` → the served resource, from the last discovery.
#[derive(Default)]
pub struct Mapping {
    by_kind: HashMap<(String, String), Served>,
}

impl Mapping {
    /// The served resource of `kind` in `api_version`'s group (any served version: the
    /// object is the same).
    pub fn resource(&self, api_version: &str, kind: &str) -> Option<Served> {
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        self.by_kind.get(&(group.to_owned(), kind.to_owned())).cloned()
    }
}

pub struct Monitors {
    client: Client,
    graph: Arc<Mutex<Graph>>,
    queue: WorkQueue<Work>,
    pub mapping: Mutex<Arc<Mapping>>,
    running: Mutex<HashMap<(String, String), JoinHandle<()>>>,
}

impl Monitors {
    pub fn new(client: Client, graph: Arc<Mutex<Graph>>, queue: WorkQueue<Work>) -> Self {
        Monitors {
            client,
            graph,
            queue,
            mapping: Mutex::new(Arc::default()),
            running: Mutex::new(HashMap::new()),
        }
    }

    pub fn mapping(&self) -> Arc<Mapping> {
        lock(&self.mapping).clone()
    }

    /// Reads discovery; starts a monitor for each new collectable resource and stops
    /// those of resources no longer served.
    pub async fn sync(&self) -> Result<(), kube::Error> {
        let served = discovery::resources(&self.client).await?;
        let mut mapping = Mapping::default();
        for s in &served {
            mapping.by_kind.insert((s.resource.group.clone(), s.resource.kind.clone()), s.clone());
        }
        *lock(&self.mapping) = Arc::new(mapping);
        let collectable: Vec<&Served> = served
            .iter()
            .filter(|s| s.supports_all(&["list", "watch", "delete"]))
            .filter(|s| !IGNORED.contains(&(s.resource.group.as_str(), s.resource.plural.as_str())))
            .collect();
        let mut running = lock(&self.running);
        let wanted: HashSet<(String, String)> = collectable
            .iter()
            .map(|s| (s.resource.group.clone(), s.resource.plural.clone()))
            .collect();
        running.retain(|key, task| {
            let keep = wanted.contains(key);
            if !keep {
                task.abort();
            }
            keep
        });
        for s in collectable {
            let key = (s.resource.group.clone(), s.resource.plural.clone());
            if let std::collections::hash_map::Entry::Vacant(entry) = running.entry(key) {
                tracing::debug!(resource = %s.group_resource(), "monitoring");
                entry.insert(self.monitor(s.clone()));
            }
        }
        Ok(())
    }

    fn monitor(&self, served: Served) -> JoinHandle<()> {
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(self.client.clone(), &served.resource);
        let (graph, queue) = (self.graph.clone(), self.queue.clone());
        tokio::spawn(async move {
            let resource = &served.resource;
            let mut events =
                watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
            // What this monitor has put in the graph, and what a re-list has shown.
            let mut known: HashSet<Uid> = HashSet::new();
            let mut listed: HashSet<Uid> = HashSet::new();
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::warn!(resource = %served.group_resource(), error = %e, "watch failed");
                        continue;
                    }
                };
                let observe = |object: &PartialObjectMeta<DynamicObject>| {
                    let id = Identity::of(&resource.api_version, &resource.kind, &object.metadata);
                    (id.uid.clone(), lock(&graph).observe(id, &object.metadata))
                };
                let work = match event {
                    Event::Apply(object) => {
                        let (uid, work) = observe(&object);
                        known.insert(uid);
                        work
                    }
                    Event::InitApply(object) => {
                        let (uid, work) = observe(&object);
                        known.insert(uid.clone());
                        listed.insert(uid);
                        work
                    }
                    Event::Delete(object) => {
                        let uid = object.metadata.uid.clone().unwrap_or_default();
                        known.remove(&uid);
                        lock(&graph).forget(&uid)
                    }
                    Event::Init => {
                        listed.clear();
                        Vec::new()
                    }
                    Event::InitDone => {
                        let gone: Vec<Uid> = known.difference(&listed).cloned().collect();
                        let mut graph = lock(&graph);
                        let mut work = Vec::new();
                        for uid in gone {
                            known.remove(&uid);
                            work.extend(graph.forget(&uid));
                        }
                        work
                    }
                };
                for w in work {
                    queue.add(w);
                }
            }
        })
    }
}

impl Drop for Monitors {
    fn drop(&mut self) {
        for (_, task) in lock(&self.running).drain() {
            task.abort();
        }
    }
}

//! The watch cache (design note 0002): per resource, one store watch feeds an in-memory
//! copy of its objects and a ring of recent events. Watches start from it and follow it,
//! and lists at `resourceVersion=0` read it, so a thousand watchers cost one store
//! watch.
//!
//! A watch that starts before the ring, or falls behind the live fan-out, continues from
//! the store at its last revision (the store keeps history until compaction), so it
//! never sees a gap or a needless 410. Must never deliver an event out of revision order
//! or hand out a snapshot newer than the events that follow it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use keelson_store::{Event, KeyValue, ListOptions, Revision, Store};
use tokio::sync::{broadcast, watch};

/// Recent events kept per resource for watches that resume.
const RING: usize = 1024;
/// Live events buffered per watcher before it is moved to a store watch.
const FAN_OUT: usize = 1024;

#[derive(Default)]
struct State {
    /// Shared with the readers that take snapshots: a list copies pointers, not values.
    objects: BTreeMap<String, Arc<KeyValue>>,
    /// Everything up to this revision is applied.
    revision: Revision,
    ring: VecDeque<Arc<Event>>,
    /// Every event after this revision is in `ring`.
    ring_start: Revision,
}

/// One resource's cache.
pub struct Cache {
    state: RwLock<State>,
    live: broadcast::Sender<Arc<Event>>,
    /// The revision everything up to is applied, for readers that wait for one.
    progress: watch::Sender<Revision>,
}

/// What a watch gets from the cache: events to replay, then the live feed.
pub struct Subscription {
    pub backlog: Vec<Arc<Event>>,
    pub live: broadcast::Receiver<Arc<Event>>,
}

impl Cache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Events after `from` and the live feed, or `None` if `from` is older than the ring.
    pub fn subscribe(&self, from: Revision) -> Option<Subscription> {
        let state = self.read();
        if from < state.ring_start || from > state.revision {
            return None;
        }
        let backlog = state.ring.iter().filter(|e| e.revision() > from).cloned().collect();
        Some(Subscription { backlog, live: self.live.subscribe() })
    }

    /// The objects under `dir` at the cache's revision, and the live feed from there.
    pub fn snapshot(
        &self,
        dir: &str,
    ) -> (Vec<Arc<KeyValue>>, Revision, broadcast::Receiver<Arc<Event>>) {
        let state = self.read();
        let (objects, revision) = objects_under(&state, dir);
        (objects, revision, self.live.subscribe())
    }

    /// The live feed from now on (for followers that read the objects after subscribing).
    pub fn live(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live.subscribe()
    }

    /// The revision of the last change applied.
    pub fn revision(&self) -> Revision {
        self.read().revision
    }

    /// Waits until the cache has applied everything up to `revision`; `false` if it has
    /// not within `patience`.
    pub async fn reached(&self, revision: Revision, patience: Duration) -> bool {
        let mut progress = self.progress.subscribe();
        let reached = progress.wait_for(|r| *r >= revision);
        matches!(tokio::time::timeout(patience, reached).await, Ok(Ok(_)))
    }

    /// The object at `key`, as of the cache's revision.
    pub fn get(&self, key: &str) -> Option<Arc<KeyValue>> {
        self.read().objects.get(key).cloned()
    }

    /// The objects under `dir` at the cache's revision (for lists: no live feed).
    pub fn objects(&self, dir: &str) -> (Vec<Arc<KeyValue>>, Revision) {
        objects_under(&self.read(), dir)
    }

    fn apply(&self, event: Event) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        match &event {
            Event::Put { kv, .. } => {
                state.objects.insert(kv.key.clone(), Arc::new(kv.clone()));
            }
            Event::Delete { prev, .. } => {
                state.objects.remove(&prev.key);
            }
        }
        state.revision = event.revision();
        let event = Arc::new(event);
        state.ring.push_back(event.clone());
        if state.ring.len() > RING
            && let Some(dropped) = state.ring.pop_front()
        {
            state.ring_start = dropped.revision();
        }
        // Sent under the lock, so a subscriber sees each event in the backlog or live,
        // never both, never neither.
        let revision = event.revision();
        let _ = self.live.send(event);
        self.progress.send_replace(revision);
    }

    fn reset(&self, objects: BTreeMap<String, KeyValue>, revision: Revision) {
        let objects = objects.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        *state = State { objects, revision, ring: VecDeque::new(), ring_start: revision };
        self.progress.send_replace(revision);
    }
}

/// A started cache and the signal that it has its first state.
type Started = (Arc<Cache>, watch::Receiver<bool>);

fn objects_under(state: &State, dir: &str) -> (Vec<Arc<KeyValue>>, Revision) {
    let objects = state
        .objects
        .range(dir.to_owned()..)
        .take_while(|(k, _)| k.starts_with(dir))
        .map(|(_, kv)| kv.clone())
        .collect();
    (objects, state.revision)
}

/// The caches of all resources, started on first use.
pub struct Caches {
    store: Arc<dyn Store>,
    by_prefix: Mutex<HashMap<String, Started>>,
}

impl Caches {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Caches { store, by_prefix: Mutex::new(HashMap::new()) }
    }

    /// The cache of the resource stored under `prefix` if it is started and has its first
    /// state; never starts one or waits.
    pub fn ready(&self, prefix: &str) -> Option<Arc<Cache>> {
        let caches = self.by_prefix.lock().unwrap_or_else(|e| e.into_inner());
        let (cache, ready) = caches.get(prefix)?;
        (*ready.borrow()).then(|| cache.clone())
    }

    /// The cache of the resource stored under `prefix`, once it has its first state;
    /// `None` if it cannot get one (the caller reads the store instead).
    pub async fn get(&self, prefix: &str) -> Option<Arc<Cache>> {
        let (cache, mut ready) = {
            let mut caches = self.by_prefix.lock().unwrap_or_else(|e| e.into_inner());
            caches
                .entry(prefix.to_owned())
                .or_insert_with(|| start(self.store.clone(), prefix.to_owned()))
                .clone()
        };
        match tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|r| *r)).await {
            Ok(Ok(_)) => Some(cache),
            _ => None,
        }
    }
}

fn start(store: Arc<dyn Store>, prefix: String) -> Started {
    let (live, _) = broadcast::channel(FAN_OUT);
    let (progress, _) = watch::channel(0);
    let cache = Arc::new(Cache { state: RwLock::new(State::default()), live, progress });
    let (ready_tx, ready) = watch::channel(false);
    let feeder = cache.clone();
    tokio::spawn(async move { feed(store, prefix, feeder, ready_tx).await });
    (cache, ready)
}

/// Lists the resource, then follows its store watch; lists again when the watch ends
/// with an error (compaction outran it, the store restarted).
async fn feed(
    store: Arc<dyn Store>,
    prefix: String,
    cache: Arc<Cache>,
    ready: watch::Sender<bool>,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        match prime(store.as_ref(), &prefix).await {
            Ok((objects, revision)) => {
                cache.reset(objects, revision);
                let _ = ready.send(true);
                delay = Duration::from_millis(100);
                match store.watch(&prefix, revision).await {
                    Ok(mut watch) => loop {
                        match watch.next().await {
                            Some(Ok(event)) => cache.apply(event),
                            Some(Err(e)) => {
                                tracing::info!(prefix, error = %e, "watch cache re-listing");
                                break;
                            }
                            // The store closed: the server is stopping.
                            None => return,
                        }
                    },
                    Err(e) => tracing::warn!(prefix, error = %e, "watch cache cannot watch"),
                }
            }
            Err(e) => tracing::warn!(prefix, error = %e, "watch cache cannot list"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn prime(
    store: &dyn Store,
    prefix: &str,
) -> keelson_store::Result<(BTreeMap<String, KeyValue>, Revision)> {
    let mut objects = BTreeMap::new();
    let mut options = ListOptions { limit: 1000, ..Default::default() };
    loop {
        let page = store.list(prefix, options.clone()).await?;
        options.revision = Some(page.revision);
        options.start_after = page.items.last().map(|kv| kv.key.clone());
        let more = page.more();
        objects.extend(page.items.into_iter().map(|kv| (kv.key.clone(), kv)));
        if !more {
            return Ok((objects, page.revision));
        }
    }
}

/// The cache of `prefix` and its live feed, once the cache has its first state (retried
/// every second); `None` when the server stops first.
pub async fn subscribe(
    api: &crate::ApiServer,
    prefix: &str,
) -> Option<(Arc<Cache>, broadcast::Receiver<Arc<Event>>)> {
    loop {
        if api.shutting_down() {
            return None;
        }
        match api.caches.get(prefix).await {
            Some(cache) => {
                let live = cache.live();
                return Some((cache, live));
            }
            None => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// The loop of Keelson's in-process, level-triggered controllers: runs `pass` over the
/// objects stored under `prefix` now, after every burst of changes, and at the latest
/// after the delay `pass` returns (`resync` when it returns `None`), until the server
/// stops.
pub async fn follow<F, Fut>(
    api: Arc<crate::ApiServer>,
    prefix: &'static str,
    resync: Duration,
    mut pass: F,
) where
    F: FnMut(Arc<crate::ApiServer>, Vec<Arc<KeyValue>>) -> Fut,
    Fut: std::future::Future<Output = Option<Duration>>,
{
    use tokio::sync::broadcast::error::RecvError;
    let Some((cache, mut live)) = subscribe(&api, prefix).await else { return };
    loop {
        let wait = pass(api.clone(), cache.objects(prefix).0).await.unwrap_or(resync);
        match tokio::time::timeout(wait, live.recv()).await {
            Ok(Ok(_) | Err(RecvError::Lagged(_))) | Err(_) => {}
            Ok(Err(RecvError::Closed)) => return,
        }
        // A burst of changes is one pass.
        tokio::time::sleep(Duration::from_millis(20)).await;
        while live.try_recv().is_ok() {}
        if api.shutting_down() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, revision: Revision) -> Event {
        let kv = KeyValue {
            key: key.into(),
            value: b"{}".to_vec(),
            create_revision: revision,
            mod_revision: revision,
        };
        Event::Put { kv, prev: None }
    }

    /// A consistent read waits for the cache to reach the store's last change under its
    /// directory, and gives up after its patience.
    #[tokio::test]
    async fn readers_wait_until_the_cache_reaches_a_revision() {
        let (live, _) = broadcast::channel(FAN_OUT);
        let (progress, _) = watch::channel(0);
        let cache = Arc::new(Cache { state: RwLock::new(State::default()), live, progress });
        cache.reset(BTreeMap::new(), 3);
        assert!(cache.reached(3, Duration::from_millis(1)).await);
        assert!(!cache.reached(5, Duration::from_millis(20)).await, "not there yet");
        let waiting = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.reached(5, Duration::from_secs(5)).await })
        };
        cache.apply(put("/registry/x/a", 4));
        cache.apply(put("/registry/x/b", 5));
        assert!(waiting.await.expect("joins"), "woken by the event that reached it");
        assert_eq!(cache.objects("/registry/x/").0.len(), 2);
    }
}

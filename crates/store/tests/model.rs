//! Random operation sequences against a model of the contract: every backend must give
//! the same answers, revision for revision, and its watch must replay the same history.

use std::collections::BTreeMap;
use std::sync::Arc;

use keelson_store::{Error, Event, ListOptions, Revision, Store};
use proptest::prelude::*;

const KEYS: &[&str] = &["/p/a", "/p/b", "/p/c", "/q/a", "/pa", "/p/a/x"];
const DIRS: &[&str] = &["/p", "/p/", "/q", "", "/p/a"];

#[derive(Clone, Debug)]
enum Op {
    Create(usize, u8),
    /// Update with the current revision plus an offset (0 is the right one).
    Update(usize, u8, i8),
    Delete(usize, i8),
    Get(usize),
    List {
        dir: usize,
        limit: usize,
        back: usize,
    },
    Compact {
        back: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    let offset = prop_oneof![4 => Just(0i8), 1 => Just(-1i8), 1 => Just(1i8)];
    prop_oneof![
        3 => (key.clone(), any::<u8>()).prop_map(|(k, v)| Op::Create(k, v)),
        3 => (key.clone(), any::<u8>(), offset.clone()).prop_map(|(k, v, o)| Op::Update(k, v, o)),
        2 => (key.clone(), offset).prop_map(|(k, o)| Op::Delete(k, o)),
        2 => key.prop_map(Op::Get),
        2 => (0..DIRS.len(), 0usize..4, 0usize..6).prop_map(|(dir, limit, back)| Op::List { dir, limit, back }),
        1 => (0usize..6).prop_map(|back| Op::Compact { back }),
    ]
}

/// A key's value, create revision and mod revision.
type Entry = (Vec<u8>, Revision, Revision);
type State = BTreeMap<String, Entry>;
/// A fresh store and whatever keeps it alive.
type Opened = (Arc<dyn Store>, Box<dyn std::any::Any>);

/// The contract, written as plainly as possible.
#[derive(Default)]
struct Model {
    /// The state after each revision: `states[r]` is the state at revision r.
    states: Vec<State>,
    compacted: Revision,
    events: Vec<(Revision, String, bool)>,
}

impl Model {
    fn current(&self) -> Revision {
        self.states.len() as Revision - 1
    }

    fn state(&self) -> &State {
        &self.states[self.states.len() - 1]
    }

    fn write(&mut self, key: &str, value: Option<Vec<u8>>) -> Revision {
        let rev = self.current() + 1;
        let mut next = self.state().clone();
        let deleted = value.is_none();
        match value {
            Some(v) => {
                let create = next.get(key).map_or(rev, |e| e.1);
                next.insert(key.to_owned(), (v, create, rev));
            }
            None => {
                next.remove(key);
            }
        }
        self.states.push(next);
        self.events.push((rev, key.to_owned(), deleted));
        rev
    }
}

/// A comparable summary of an outcome.
fn kind<T: std::fmt::Debug>(r: &keelson_store::Result<T>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(Error::AlreadyExists { .. }) => "already-exists".into(),
        Err(Error::NotFound { .. }) => "not-found".into(),
        Err(Error::Conflict { .. }) => "conflict".into(),
        Err(Error::Compacted { .. }) => "compacted".into(),
        Err(Error::FutureRevision { .. }) => "future".into(),
        Err(e) => format!("error {e}"),
    }
}

fn dir_of(dir: &str) -> String {
    if dir.is_empty() || dir.ends_with('/') { dir.to_owned() } else { format!("{dir}/") }
}

async fn run(store: Arc<dyn Store>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut model = Model { states: vec![BTreeMap::new()], ..Default::default() };
    for op in ops {
        match op {
            Op::Create(k, v) => {
                let key = KEYS[k];
                let got = store.create(key, vec![v]).await;
                let want = if model.state().contains_key(key) {
                    "already-exists".to_owned()
                } else {
                    format!("ok {:?}", model.write(key, Some(vec![v])))
                };
                prop_assert_eq!(kind(&got), want, "create {}", key);
            }
            Op::Update(k, v, offset) => {
                let key = KEYS[k];
                let expected = model.state().get(key).map_or(1, |e| e.2) + offset as Revision;
                let got = store.update(key, vec![v], expected).await;
                let want = match model.state().get(key) {
                    None => "not-found".to_owned(),
                    Some(e) if e.2 != expected => "conflict".to_owned(),
                    Some(_) => format!("ok {:?}", model.write(key, Some(vec![v]))),
                };
                prop_assert_eq!(kind(&got), want, "update {}", key);
            }
            Op::Delete(k, offset) => {
                let key = KEYS[k];
                let expected = model.state().get(key).map_or(1, |e| e.2) + offset as Revision;
                let got = store.delete(key, expected).await;
                let want = match model.state().get(key) {
                    None => "not-found".to_owned(),
                    Some(e) if e.2 != expected => "conflict".to_owned(),
                    Some(_) => format!("ok {:?}", model.write(key, None)),
                };
                prop_assert_eq!(kind(&got), want, "delete {}", key);
            }
            Op::Get(k) => {
                let key = KEYS[k];
                let got = store
                    .get(key)
                    .await
                    .map(|o| o.map(|kv| (kv.value, kv.create_revision, kv.mod_revision)));
                prop_assert_eq!(kind(&got), format!("ok {:?}", model.state().get(key).cloned()));
            }
            Op::List { dir, limit, back } => {
                // Revision 0 (or below) means "current".
                let past = model.current() - back as Revision;
                let at = if past > 0 { past } else { model.current() };
                let options = ListOptions {
                    limit,
                    revision: Some(past).filter(|r| *r > 0),
                    start_after: None,
                };
                let got = store.list(DIRS[dir], options).await.map(|l| {
                    let items: Vec<_> =
                        l.items.into_iter().map(|kv| (kv.key, kv.value, kv.mod_revision)).collect();
                    (items, l.remaining)
                });
                let want = if past > 0 && at < model.compacted {
                    "compacted".to_owned()
                } else {
                    let prefix = dir_of(DIRS[dir]);
                    let all: Vec<_> = model.states[at as usize]
                        .iter()
                        .filter(|(k, _)| k.starts_with(&prefix))
                        .map(|(k, (v, _, m))| (k.clone(), v.clone(), *m))
                        .collect();
                    let take = if limit == 0 { all.len() } else { limit.min(all.len()) };
                    format!("ok {:?}", (all[..take].to_vec(), (all.len() - take) as u64))
                };
                prop_assert_eq!(kind(&got), want, "list {:?} at {}", DIRS[dir], at);
            }
            Op::Compact { back } => {
                let to = (model.current() - back as Revision).max(0);
                let got = store.compact(to).await;
                prop_assert_eq!(kind(&got), "ok ()".to_owned(), "compact {}", to);
                model.compacted = model.compacted.max(to);
            }
        }
    }
    // The watch from the compacted revision replays exactly the model's history since.
    let current = store.current_revision().await.map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(current, model.current());
    let mut watch =
        store.watch("", model.compacted).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
    for (rev, key, deleted) in model.events.iter().filter(|e| e.0 > model.compacted) {
        let event = watch.next().await.ok_or_else(|| TestCaseError::fail("watch ended"))?;
        let event = event.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(event.revision(), *rev);
        prop_assert_eq!(event.key(), key.as_str());
        prop_assert_eq!(matches!(event, Event::Delete { .. }), *deleted);
        let prev = match &event {
            Event::Put { prev, .. } => prev.as_ref().map(|p| p.mod_revision),
            Event::Delete { prev, .. } => Some(prev.mod_revision),
        };
        let before = model.states[*rev as usize - 1].get(key.as_str());
        prop_assert_eq!(prev, before.map(|b| b.2), "prev of {} at {}", key, rev);
    }
    Ok(())
}

fn check(open: fn() -> Opened, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (store, keep) = runtime.block_on(async { open() });
    let result = runtime.block_on(run(store, ops));
    drop(keep);
    result
}

fn memory() -> Opened {
    (Arc::new(keelson_store::memory::open().expect("memory store")), Box::new(()))
}

fn sqlite() -> Opened {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = keelson_store::sqlite::open(&dir.path().join("state.db")).expect("sqlite store");
    (Arc::new(store), Box::new(dir))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn memory_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        check(memory, ops)?;
    }

    #[test]
    fn sqlite_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        check(sqlite, ops)?;
    }
}

//! The engine behind the embedded backends: one writer thread with group commit, the
//! in-memory [`Index`], and the watch hub (design note 0001).
//!
//! A backend only says how to make a batch of records durable and how to read values
//! back by revision ([`Log`]); everything the contract promises about revisions,
//! conditions, snapshots and watches is decided here, once, for SQLite and memory alike.
//!
//! Must never: reply to a write before its batch is durable, or let a reader see a
//! revision whose value is not yet durable (the index is updated after the commit).

use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

mod watch;
mod writer;

use crate::index::{Index, Version};
use crate::{
    Error, Event, KeyValue, ListOptions, ListResult, Result, Revision, Store, Watch, check_key,
    check_value, directory,
};

/// How many requests one commit takes at most.
const MAX_BATCH: usize = 512;
/// How many bytes of keys and values one commit takes at most (one request may exceed it).
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// How many compacted revisions one commit discards at most, so that compaction never
/// holds up writers for more than a small, fixed amount of work.
const DISCARD_PER_COMMIT: usize = 1024;
/// Events buffered per watcher before it is made to catch up from the log.
const WATCH_BUFFER: usize = 1024;
/// Values read per batch while a watch catches up.
const CATCH_UP_CHUNK: usize = 256;
/// Reads that race with compaction retry this often before calling the log damaged.
const READ_ATTEMPTS: usize = 8;

/// One durable change.
pub struct Record<'a> {
    pub rev: Revision,
    pub key: &'a str,
    pub create_rev: Revision,
    /// `None` for a tombstone.
    pub value: Option<&'a [u8]>,
}

/// What a backend provides: durable append, discard, and reads by revision.
pub trait Log: Send + Sync + 'static {
    /// The writer half, owned by the writer thread.
    type Writer: LogWriter;

    /// Values by revision; `None` where the revision was discarded.
    fn read(&self, revs: &[Revision]) -> Result<Vec<Option<Vec<u8>>>>;
}

pub trait LogWriter: Send + 'static {
    /// Makes `records` and the discarding of `discard` durable, all or nothing.
    fn commit(&mut self, records: &[Record<'_>], discard: &[Revision]) -> Result<()>;

    /// Persists that history below `rev` is gone.
    fn set_compacted(&mut self, rev: Revision) -> Result<()>;

    /// Values by revision, as seen by the writer.
    fn read(&mut self, revs: &[Revision]) -> Result<Vec<Option<Vec<u8>>>>;
}

enum Op {
    Create { key: String, value: Vec<u8> },
    Update { key: String, value: Vec<u8>, expected: Revision },
    Delete { key: String, expected: Revision },
    Compact { rev: Revision },
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Revision>>,
}

impl Request {
    /// What the request adds to a batch's transaction.
    fn bytes(&self) -> usize {
        match &self.op {
            Op::Create { key, value } | Op::Update { key, value, .. } => key.len() + value.len(),
            Op::Delete { key, .. } => key.len(),
            Op::Compact { .. } => 0,
        }
    }
}

struct Watcher {
    dir: String,
    tx: mpsc::Sender<Event>,
}

struct Shared<L: Log> {
    index: RwLock<Index>,
    /// Guarded by `index`'s lock discipline: the writer publishes while holding the
    /// index write lock, watchers register while holding the read lock.
    watchers: Mutex<Vec<Watcher>>,
    log: L,
    backend: &'static str,
}

/// An embedded store (SQLite or memory): [`Shared`] state plus the writer thread.
pub struct Engine<L: Log> {
    shared: Arc<Shared<L>>,
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl<L: Log> Engine<L> {
    pub(crate) fn start(
        backend: &'static str,
        index: Index,
        log: L,
        writer: L::Writer,
    ) -> Result<Self> {
        let shared = Arc::new(Shared {
            index: RwLock::new(index),
            watchers: Mutex::new(Vec::new()),
            log,
            backend,
        });
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let writer_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name(format!("keelson-{backend}-writer"))
            .spawn(move || writer::write_loop(writer_shared, writer, rx))
            .map_err(|e| Error::Unavailable(format!("cannot start writer thread: {e}")))?;
        Ok(Engine { shared, requests: Some(tx), writer: Some(handle) })
    }

    async fn submit(&self, op: Op) -> Result<Revision> {
        let (reply, rx) = oneshot::channel();
        let requests = self.requests.as_ref().ok_or(Error::Closed)?;
        requests.send(Request { op, reply }).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Runs a blocking read off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared<L>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || f(&shared))
            .await
            .map_err(|e| Error::Unavailable(format!("read task failed: {e}")))?
    }
}

impl<L: Log> Drop for Engine<L> {
    fn drop(&mut self) {
        // Closing the channel ends the writer after it has answered what it took.
        self.requests.take();
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}

impl<L: Log> Shared<L> {
    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    fn key_value(&self, key: String, v: Version, value: Vec<u8>) -> KeyValue {
        KeyValue { key, value, create_revision: v.create_rev, mod_revision: v.rev }
    }

    /// Reads the values of `found` (key, version) pairs. `Ok(None)` if any of them was
    /// discarded by a compaction that raced with the read.
    fn fill(&self, found: Vec<(String, Version)>) -> Result<Option<Vec<KeyValue>>> {
        let revs: Vec<Revision> = found.iter().map(|(_, v)| v.rev).collect();
        let values = self.log.read(&revs)?;
        let mut items = Vec::with_capacity(found.len());
        for ((key, v), value) in found.into_iter().zip(values) {
            match value {
                Some(value) => items.push(self.key_value(key, v, value)),
                None => return Ok(None),
            }
        }
        Ok(Some(items))
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        for _ in 0..READ_ATTEMPTS {
            let found = {
                let ix = self.read_index();
                match ix.live_at(key, ix.current) {
                    Some(v) => v,
                    None => return Ok(None),
                }
            };
            // A compaction may discard this value between the index read and the value
            // read only if a newer version exists: read again to get that one.
            if let Some(mut items) = self.fill(vec![(key.to_owned(), found)])? {
                return Ok(items.pop());
            }
        }
        Err(missing_value(key))
    }

    fn list(&self, dir: &str, options: &ListOptions) -> Result<ListResult> {
        for _ in 0..READ_ATTEMPTS {
            let (found, remaining, revision) = {
                let ix = self.read_index();
                let rev = match options.revision {
                    None | Some(0) => ix.current,
                    Some(r) if r < ix.compacted => {
                        return Err(Error::Compacted { requested: r, compacted: ix.compacted });
                    }
                    Some(r) if r > ix.current => {
                        return Err(Error::FutureRevision { requested: r, current: ix.current });
                    }
                    Some(r) => r,
                };
                let (found, remaining) =
                    ix.range(dir, options.start_after.as_deref(), rev, options.limit);
                (found, remaining, rev)
            };
            if let Some(items) = self.fill(found)? {
                return Ok(ListResult { items, revision, remaining });
            }
            // Values went away under us: at a fixed revision that means it is now
            // compacted; for a current read, read again.
            if options.revision.is_some_and(|r| r > 0) {
                let compacted = self.read_index().compacted;
                return Err(Error::Compacted { requested: revision, compacted });
            }
        }
        Err(missing_value(dir))
    }
}

/// A value the index names is not in the log, again and again: not a race with
/// compaction but a damaged log.
fn missing_value(key: &str) -> Error {
    Error::Corrupt(format!("the log has no value for a live version under {key:?}"))
}

#[async_trait]
impl<L: Log> Store for Engine<L> {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        check_key(key)?;
        let key = key.to_owned();
        self.blocking(move |s| s.get(&key)).await
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        let dir = directory(prefix);
        self.blocking(move |s| s.list(&dir, &options)).await
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        Ok(self.shared.read_index().count(&directory(prefix)))
    }

    async fn changed_at(&self, prefix: &str) -> Result<Option<Revision>> {
        Ok(Some(self.shared.read_index().changed_at(&directory(prefix))))
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        check_key(key)?;
        check_value(&value)?;
        self.submit(Op::Create { key: key.to_owned(), value }).await
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        check_key(key)?;
        check_value(&value)?;
        self.submit(Op::Update { key: key.to_owned(), value, expected }).await
    }

    async fn delete(&self, key: &str, expected: Revision) -> Result<Revision> {
        check_key(key)?;
        self.submit(Op::Delete { key: key.to_owned(), expected }).await
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch> {
        let dir = directory(prefix);
        {
            let ix = self.shared.read_index();
            if from_revision < ix.compacted {
                return Err(Error::Compacted { requested: from_revision, compacted: ix.compacted });
            }
            if from_revision > ix.current {
                return Err(Error::FutureRevision {
                    requested: from_revision,
                    current: ix.current,
                });
            }
        }
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(watch::pump(Arc::downgrade(&self.shared), dir, from_revision, tx));
        Ok(Watch::new(rx))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.read_index().current)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.submit(Op::Compact { rev: revision }).await.map(|_| ())
    }

    fn backend(&self) -> &'static str {
        self.shared.backend
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

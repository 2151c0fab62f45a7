//! The storage contract of Keelson and its backends.
//!
//! Everything the API server keeps lives in one revisioned key-value space shaped like
//! etcd's v3 API (design note `docs/design/0001-store.md`). This crate defines that
//! contract ([`Store`]) and three backends that meet it:
//!
//! - [`sqlite::SqliteStore`]: the embedded default, one file, one writer with group commit;
//! - [`etcd::EtcdStore`]: etcd v3 over gRPC with mutual TLS, for several servers;
//! - [`memory::MemoryStore`]: in memory, for tests.
//!
//! # The contract
//!
//! Callers may rely on the following, whatever the backend:
//!
//! - **One global revision.** Every successful write (create, update, delete) gets a
//!   revision strictly greater than every revision before it; reads report the revision
//!   they observed. An object's resourceVersion is its key's `mod_revision`.
//! - **Conditional writes.** `create` succeeds only if the key is absent; `update` and
//!   `delete` only if the key's current `mod_revision` equals the expected one. A failed
//!   condition changes nothing and returns the current state in the error, so the caller
//!   can retry without another read.
//! - **Durability.** When a write returns `Ok`, it survives a crash of the process (and,
//!   for SQLite, of the machine: the log is fsynced before the reply).
//! - **Directory prefixes.** `list`, `count` and `watch` take a directory: `/a` and `/a/`
//!   both mean "keys beginning with `/a/`", so `/a` never returns `/ab`. The empty prefix
//!   means every key.
//! - **Snapshot lists.** `list` at a revision returns the state at exactly that revision,
//!   so a caller can page through a large prefix with `start_after` while writes go on.
//! - **Ordered, resumable watches.** `watch(prefix, from)` yields every change with
//!   revision `> from`, in revision order, with the previous value, and no gaps: a watch
//!   that falls behind catches up by itself. Starting from a revision that compaction has
//!   discarded is [`Error::Compacted`], which the API server turns into `410 Gone`.
//! - **Compaction** discards history older than a revision; the state at that revision
//!   and everything after it stay readable.

pub mod bench;
pub mod endpoint;
pub mod etcd;
mod index;
pub mod memory;
pub mod migrate;
mod mvcc;
pub mod sqlite;

use std::fmt;

use async_trait::async_trait;
pub use endpoint::{Endpoint, TlsFiles, open};

/// A revision of the whole key space. Revisions start at 1; 0 means "none yet".
pub type Revision = i64;

/// The largest value the embedded backends accept. etcd's own limit is set on the etcd
/// server (`--max-request-bytes`, 1.5 MiB by default) and reported as [`Error::TooLarge`].
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// One key at one revision.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision that created this key (since it was last absent).
    pub create_revision: Revision,
    /// The revision of the write that produced this value.
    pub mod_revision: Revision,
}

impl fmt::Debug for KeyValue {
    // Values can be megabytes; show their size, not their bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// What `list` is asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only keys strictly after this one (a continue token's key).
    pub start_after: Option<String>,
    /// At most this many items; 0 means all.
    pub limit: usize,
    /// Read the state at this revision; `None` means the current one.
    pub revision: Option<Revision>,
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    /// Live keys in key order.
    pub items: Vec<KeyValue>,
    /// The revision the list was read at: pass it back to read the next page.
    pub revision: Revision,
    /// How many live keys under the prefix come after the last item returned.
    pub remaining: u64,
}

impl ListResult {
    /// Whether more items follow this page.
    pub fn more(&self) -> bool {
        self.remaining > 0
    }
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The key was created (`prev` is `None`) or updated.
    Put { kv: KeyValue, prev: Option<KeyValue> },
    /// The key was deleted at `revision`; `prev` is the value it had.
    Delete { revision: Revision, prev: KeyValue },
}

impl Event {
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { prev, .. } => &prev.key,
        }
    }
}

/// Everything that can go wrong. Conflicts carry the current state.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String, current: Box<KeyValue> },
    #[error("key {key:?} not found")]
    NotFound { key: String },
    #[error("key {key:?} was modified: expected revision {expected}, found {}", current.mod_revision)]
    Conflict { key: String, expected: Revision, current: Box<KeyValue> },
    #[error("revision {requested} has been compacted (oldest available: {compacted})")]
    Compacted { requested: Revision, compacted: Revision },
    #[error("revision {requested} is in the future (current: {current})")]
    FutureRevision { requested: Revision, current: Revision },
    #[error("invalid key {0:?}: keys are non-empty UTF-8 without NUL bytes")]
    InvalidKey(String),
    #[error("value of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("invalid datastore endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    /// The backend could not be reached or failed; the operation may or may not have
    /// been applied if it was a write to etcd (etcd's own contract), never for SQLite.
    #[error("datastore unavailable: {0}")]
    Unavailable(String),
    /// The stored data is not what this version of Keelson can read.
    #[error("datastore corrupt: {0}")]
    Corrupt(String),
    /// The store was closed (the server is shutting down).
    #[error("datastore closed")]
    Closed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The storage contract; see the crate documentation for what callers may rely on.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The live value of `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Live keys under the directory `prefix`, in key order, at one revision.
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult>;

    /// How many live keys are under the directory `prefix`.
    async fn count(&self, prefix: &str) -> Result<u64>;

    /// Creates `key`; [`Error::AlreadyExists`] if it is live. Returns the new revision.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision>;

    /// Replaces `key` if its `mod_revision` is `expected`; [`Error::Conflict`] if not,
    /// [`Error::NotFound`] if absent. Returns the new revision.
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision>;

    /// Deletes `key` if its `mod_revision` is `expected`; errors as for `update`.
    /// Returns the revision of the deletion.
    async fn delete(&self, key: &str, expected: Revision) -> Result<Revision>;

    /// Every change under the directory `prefix` with revision `> from_revision`.
    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch>;

    /// The revision of the latest write.
    async fn current_revision(&self) -> Result<Revision>;

    /// The newest revision at which anything under the directory `prefix` changed
    /// (deletions included), or the compaction revision if that is newer: whoever has
    /// followed `prefix`'s watch up to it holds the current state of `prefix`. `None`
    /// when the backend cannot tell without reading everything (etcd).
    async fn changed_at(&self, prefix: &str) -> Result<Option<Revision>> {
        let _ = prefix;
        Ok(None)
    }

    /// Discards history older than `revision`. Idempotent; compacting to a revision at or
    /// below an earlier compaction does nothing.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// A short name for logs and benchmarks: `sqlite`, `etcd` or `memory`.
    fn backend(&self) -> &'static str;
}

/// A stream of [`Event`]s. Ends with `None` only when the store closes; an `Err` item is
/// final (the watch cannot go on, for example because its history was compacted while
/// it was catching up).
pub struct Watch {
    rx: tokio::sync::mpsc::Receiver<Result<Event>>,
}

impl Watch {
    pub(crate) fn new(rx: tokio::sync::mpsc::Receiver<Result<Event>>) -> Self {
        Watch { rx }
    }

    /// A watch fed by a channel, for stores that wrap another (encryption at rest): the
    /// sender must keep the contract's ordering and end with an `Err` or by closing.
    pub fn from_channel(rx: tokio::sync::mpsc::Receiver<Result<Event>>) -> Self {
        Watch { rx }
    }

    /// The next event, in revision order.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        self.rx.recv().await
    }
}

/// Turns a directory prefix into the exact byte prefix keys must start with.
pub(crate) fn directory(prefix: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_owned()
    } else {
        format!("{prefix}/")
    }
}

pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.contains('\0') {
        return Err(Error::InvalidKey(key.to_owned()));
    }
    Ok(())
}

pub(crate) fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::TooLarge { size: value.len(), limit: MAX_VALUE_BYTES });
    }
    Ok(())
}

//! The SQLite backend: the embedded default (design note 0001).
//!
//! The file is an append-only log of changes, not a table of current rows: `log` holds
//! one small row per revision (key, create revision, tombstone flag) and `value` the
//! bytes, both keyed by revision, so every write appends at the end of two B-trees and
//! every read is a primary-key lookup. Which revision holds a key lives in the in-memory
//! index, rebuilt from `log` at start; there is no `MAX(id)` scan anywhere.
//!
//! One writer thread (in [`crate::mvcc`]) commits batches in one transaction with one
//! fsync (`synchronous=FULL` in WAL mode), and discards compacted rows a bounded number
//! per commit. A checkpointer thread copies the WAL into the database in the background
//! when the WAL passes [`CHECKPOINT_FRAMES`], so the writer never waits for it and the
//! WAL stays bounded.
//!
//! Must never: acknowledge a write before the WAL is fsynced; let another process open
//! the same file (a lock file guards it); create files readable by anyone but the owner.

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior, params};

use crate::index::{Index, Version};
use crate::mvcc::{Engine, Log, LogWriter, Record};
use crate::{Error, Result, Revision};

/// An SQLite store; see [`open`].
pub type SqliteStore = Engine<SqliteLog>;

/// The schema this code writes; a file with a newer one is refused.
const SCHEMA_VERSION: i64 = 1;
/// WAL frames (pages) after which the checkpointer copies the WAL into the database.
const CHECKPOINT_FRAMES: i32 = 1000;
/// WAL frames after which a checkpoint may wait for readers to reset the WAL.
const HARD_WAL_FRAMES: i32 = 16 * CHECKPOINT_FRAMES;
/// Connections kept open for reads.
const MAX_IDLE_READERS: usize = 8;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    create_revision INTEGER NOT NULL,
    deleted INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS value (
    revision INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
";

/// Opens (creating if needed) the store at `path`. Blocking: call it off async threads.
pub fn open(path: &Path) -> Result<SqliteStore> {
    prepare_files(path)?;
    let lock = lock_file(path)?;
    let mut conn = connect(path, false)?;
    conn.execute_batch(SCHEMA).map_err(|e| sql_error(path, e))?;
    let (index, schema) = load(&conn).map_err(|e| sql_error(path, e))?;
    if schema > SCHEMA_VERSION {
        return Err(Error::Corrupt(format!(
            "{} has schema version {schema}, newer than this Keelson's {SCHEMA_VERSION}",
            path.display()
        )));
    }
    conn.execute("INSERT OR IGNORE INTO meta(name, value) VALUES ('schema', ?1)", [SCHEMA_VERSION])
        .map_err(|e| sql_error(path, e))?;
    let checkpointer = Checkpointer::start(path)?;
    let checkpoints = checkpointer.asks.clone();
    conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, frames: i32| {
        if frames >= CHECKPOINT_FRAMES {
            // Full means a checkpoint is already asked for.
            let _ = checkpoints.try_send(frames);
        }
        Ok(())
    }))
    .map_err(|e| sql_error(path, e))?;
    tracing::info!(
        path = %path.display(),
        revision = index.current,
        compacted = index.compacted,
        "opened sqlite datastore"
    );
    let log = SqliteLog { path: path.to_owned(), readers: Mutex::new(Vec::new()), _lock: lock };
    Engine::start(
        "sqlite",
        index,
        log,
        SqliteWriter { path: path.to_owned(), conn, _checkpointer: checkpointer },
    )
}

/// Creates the directory (0700) and the file (0600), or tightens an existing file's mode.
fn prepare_files(path: &Path) -> Result<()> {
    let unavailable = |what: &str, e: std::io::Error| {
        Error::Unavailable(format!("{what} {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        tracing::info!(dir = %dir.display(), "creating datastore directory");
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| unavailable("cannot create the directory of", e))?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| unavailable("cannot open", e))?;
    let meta = file.metadata().map_err(|e| unavailable("cannot stat", e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "datastore file was readable by others; setting mode 0600");
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| unavailable("cannot chmod", e))?;
    }
    Ok(())
}

/// Holds `<path>.lock` exclusively for as long as the store is open.
fn lock_file(path: &Path) -> Result<File> {
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| Error::Unavailable(format!("cannot open {}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Unavailable(format!(
            "{} is in use by another process (lock {} is held)",
            path.display(),
            lock_path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Error::Unavailable(format!("cannot lock {}: {e}", lock_path.display())))
        }
    }
}

fn connect(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| sql_error(path, e))?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(|e| sql_error(path, e))?;
    if !read_only {
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| sql_error(path, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Unavailable(format!(
                "{} cannot use WAL journaling (got {mode})",
                path.display()
            )));
        }
        // FULL in WAL mode: the WAL is fsynced at every commit, before we reply.
        conn.execute_batch(
            "PRAGMA synchronous=FULL;
             PRAGMA journal_size_limit=16777216;
             PRAGMA cache_size=-16384;",
        )
        .map_err(|e| sql_error(path, e))?;
    }
    Ok(conn)
}

/// Rebuilds the index from `log` and reads `meta`.
fn load(conn: &Connection) -> rusqlite::Result<(Index, i64)> {
    let mut index = Index::default();
    let mut stmt =
        conn.prepare("SELECT revision, key, create_revision, deleted FROM log ORDER BY revision")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let key: String = row.get(1)?;
        let version = Version { rev: row.get(0)?, create_rev: row.get(2)?, deleted: row.get(3)? };
        index.apply(&key, version);
    }
    let meta = |name: &str| -> rusqlite::Result<i64> {
        conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0)).or_else(
            |e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(0),
                e => Err(e),
            },
        )
    };
    // Compaction may have discarded the newest rows (tombstones); the revision never
    // goes back below the compacted one. The writer re-derives what to discard.
    index.compacted = meta("compacted")?;
    index.current = index.current.max(index.compacted);
    Ok((index, meta("schema")?))
}

/// The background thread that copies the WAL into the database.
struct Checkpointer {
    asks: SyncSender<i32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Self> {
        let conn = connect(path, false)?;
        let (asks, rx) = sync_channel(1);
        let path = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("keelson-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(&path, &conn, &rx))
            .map_err(|e| Error::Unavailable(format!("cannot start checkpointer: {e}")))?;
        Ok(Checkpointer { asks, thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // The loop ends once every sender is gone: ours here, the WAL hook's with the
        // writer's connection (dropped before this, see `SqliteWriter`).
        let (closed, _) = sync_channel(0);
        drop(std::mem::replace(&mut self.asks, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copies the WAL into the database whenever the writer says it has grown; ends when
/// the senders are gone.
fn checkpoint_loop(path: &Path, conn: &Connection, asks: &Receiver<i32>) {
    use rusqlite::wal::CheckpointMode;
    while asks.recv().is_ok() {
        match conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
            Ok((frames, done)) if frames >= HARD_WAL_FRAMES && done < frames => {
                // Readers keep the WAL from being reset; wait for them this once.
                tracing::warn!(path = %path.display(), frames, "WAL is large; waiting for readers to truncate it");
                if let Err(e) = conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::TRUNCATE) {
                    tracing::warn!(path = %path.display(), error = %e, "WAL truncation failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "checkpoint failed"),
        }
    }
}

/// Maps SQLite's errors to the contract's: a damaged file is `Corrupt`, the rest
/// `Unavailable`, always naming the file.
fn sql_error(path: &Path, e: rusqlite::Error) -> Error {
    let message = format!("{}: {e}", path.display());
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => Error::Corrupt(message),
        _ => Error::Unavailable(message),
    }
}

pub struct SqliteLog {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    _lock: File,
}

impl SqliteLog {
    fn reader(&self) -> Result<Connection> {
        let idle = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => connect(&self.path, true),
        }
    }
}

fn read_values(conn: &Connection, revs: &[Revision]) -> rusqlite::Result<Vec<Option<Vec<u8>>>> {
    let mut stmt = conn.prepare_cached("SELECT data FROM value WHERE revision = ?1")?;
    let mut values = Vec::with_capacity(revs.len());
    for rev in revs {
        let mut rows = stmt.query([rev])?;
        values.push(match rows.next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        });
    }
    Ok(values)
}

impl Log for SqliteLog {
    type Writer = SqliteWriter;

    fn read(&self, revs: &[Revision]) -> Result<Vec<Option<Vec<u8>>>> {
        if revs.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.reader()?;
        // One read transaction: one snapshot, one lock for the whole batch.
        let values = conn
            .execute_batch("BEGIN")
            .and_then(|()| read_values(&conn, revs))
            .and_then(|values| conn.execute_batch("COMMIT").map(|()| values))
            .map_err(|e| sql_error(&self.path, e));
        if values.is_ok() {
            let mut idle = self.readers.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        values
    }
}

pub struct SqliteWriter {
    path: PathBuf,
    // Field order matters: the connection (holding the WAL hook's sender) must drop
    // before the checkpointer joins its thread.
    conn: Connection,
    _checkpointer: Checkpointer,
}

impl LogWriter for SqliteWriter {
    fn commit(&mut self, records: &[Record<'_>], discard: &[Revision]) -> Result<()> {
        if records.is_empty() && discard.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_error(&path, e))?;
        (|| {
            let mut log = tx.prepare_cached(
                "INSERT INTO log(revision, key, create_revision, deleted) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut value =
                tx.prepare_cached("INSERT INTO value(revision, data) VALUES (?1, ?2)")?;
            for r in records {
                log.execute(params![r.rev, r.key, r.create_rev, r.value.is_none()])?;
                if let Some(data) = r.value {
                    value.execute(params![r.rev, data])?;
                }
            }
            let mut drop_log = tx.prepare_cached("DELETE FROM log WHERE revision = ?1")?;
            let mut drop_value = tx.prepare_cached("DELETE FROM value WHERE revision = ?1")?;
            for rev in discard {
                drop_log.execute([rev])?;
                drop_value.execute([rev])?;
            }
            Ok(())
        })()
        .map_err(|e| sql_error(&path, e))?;
        tx.commit().map_err(|e| sql_error(&path, e))
    }

    fn set_compacted(&mut self, rev: Revision) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO meta(name, value) VALUES ('compacted', ?1)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                [rev],
            )
            .map(|_| ())
            .map_err(|e| sql_error(&self.path, e))
    }

    fn read(&mut self, revs: &[Revision]) -> Result<Vec<Option<Vec<u8>>>> {
        read_values(&self.conn, revs).map_err(|e| sql_error(&self.path, e))
    }
}

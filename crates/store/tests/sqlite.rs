//! What only the SQLite backend promises: durability across a crash and a restart,
//! private files, one process per file, and clear errors for damaged files.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use keelson_store::{Error, Event, ListOptions, Revision, Store, sqlite};

async fn open(path: &Path) -> keelson_store::Result<sqlite::SqliteStore> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || sqlite::open(&path)).await.expect("open task")
}

fn mode(path: &Path) -> Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

#[tokio::test]
async fn files_are_private_and_a_missing_directory_is_created() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("nested/data/state.db");
    let store = open(&path).await?;
    store.create("/k", b"v".to_vec()).await?;
    ensure!(mode(&path)? == 0o600, "state.db mode {:o}", mode(&path)?);
    ensure!(mode(path.parent().context("parent")?)? == 0o700);
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    ensure!(mode(&wal)? == 0o600, "WAL mode {:o}", mode(&wal)?);
    drop(store);

    // A file someone loosened is tightened on open.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    let _store = open(&path).await?;
    ensure!(mode(&path)? == 0o600);
    Ok(())
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_file() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("state.db");
    let _first = open(&path).await?;
    match open(&path).await {
        Err(Error::Unavailable(message)) => ensure!(message.contains("in use"), "{message}"),
        Err(e) => bail!("expected Unavailable, got {e}"),
        Ok(_) => bail!("the same file was opened twice"),
    }
    Ok(())
}

#[tokio::test]
async fn a_corrupt_or_unreadable_file_is_a_clear_error() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let garbage = tmp.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 64 * 1024])?;
    match open(&garbage).await {
        Err(Error::Corrupt(message)) => ensure!(message.contains("garbage.db"), "{message}"),
        Err(e) => bail!("expected Corrupt, got {e}"),
        Ok(_) => bail!("garbage opened as a datastore"),
    }
    // A directory where the file should be.
    let dir = tmp.path().join("adir.db");
    std::fs::create_dir(&dir)?;
    match open(&dir).await {
        Err(Error::Unavailable(message)) => ensure!(message.contains("adir.db"), "{message}"),
        Err(e) => bail!("expected Unavailable, got {e}"),
        Ok(_) => bail!("a directory opened as a datastore"),
    }
    Ok(())
}

#[tokio::test]
async fn a_truncated_file_is_an_error_not_a_panic() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("state.db");
    {
        let store = open(&path).await?;
        let value = vec![7u8; 4096];
        for i in 0..200 {
            store.create(&format!("/t/{i}"), value.clone()).await?;
        }
    }
    // Move everything from the WAL into the main file, then cut that in half.
    rusqlite::Connection::open(&path)?.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    let len = std::fs::metadata(&path)?.len();
    std::fs::OpenOptions::new().write(true).open(&path)?.set_len(len / 2)?;
    match open(&path).await {
        Err(Error::Corrupt(_) | Error::Unavailable(_)) => Ok(()),
        Err(e) => bail!("unexpected error kind: {e}"),
        Ok(store) => {
            // SQLite may only notice when it reads the missing pages.
            match store.list("/t", ListOptions::default()).await {
                Err(Error::Corrupt(_) | Error::Unavailable(_)) => Ok(()),
                Ok(list) => bail!("a truncated file listed {} items", list.items.len()),
                Err(e) => bail!("unexpected error kind: {e}"),
            }
        }
    }
}

#[tokio::test]
async fn state_and_revisions_survive_a_restart_and_compaction() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("state.db");
    let (last, compacted) = {
        let store = open(&path).await?;
        let r1 = store.create("/r/a", b"1".to_vec()).await?;
        let r2 = store.update("/r/a", b"2".to_vec(), r1).await?;
        let r3 = store.create("/r/b", b"b".to_vec()).await?;
        let r4 = store.delete("/r/b", r3).await?;
        // The newest rows are a tombstone and its key's history: all compacted away.
        store.compact(r4).await?;
        (r4, r2)
    };
    let store = open(&path).await?;
    ensure!(store.current_revision().await? == last, "revision went back after restart");
    let kv = store.get("/r/a").await?.context("missing after restart")?;
    ensure!(kv.value == b"2" && kv.mod_revision == compacted);
    ensure!(store.get("/r/b").await?.is_none());
    match store.watch("/r", last - 1).await {
        Err(Error::Compacted { .. }) => {}
        other => bail!("compaction must survive a restart, got {:?}", other.map(|_| ())),
    }
    let next = store.create("/r/c", b"c".to_vec()).await?;
    ensure!(next == last + 1, "revisions must continue without reuse: {next} after {last}");
    Ok(())
}

#[tokio::test]
async fn compaction_removes_history_from_the_file() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("state.db");
    let store = open(&path).await?;
    let mut rev = store.create("/h/k", vec![1u8; 1024]).await?;
    for _ in 0..2000 {
        rev = store.update("/h/k", vec![2u8; 1024], rev).await?;
    }
    store.compact(rev).await?;
    // Discarding happens in small batches after the compaction was acknowledged.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = rusqlite::Connection::open(&path)?.query_row(
            "SELECT COUNT(*) FROM value",
            [],
            |r| r.get::<_, i64>(0),
        )?;
        if rows == 1 {
            break;
        }
        ensure!(Instant::now() < deadline, "{rows} values left after compaction");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(store.get("/h/k").await?.context("missing")?.mod_revision == rev);
    Ok(())
}

/// The child half of the crash test: writes under load and prints every acknowledged
/// write, until it is killed. Does nothing unless the parent started it.
#[test]
fn crash_child() -> Result<()> {
    let Ok(path) = std::env::var("KEELSON_CRASH_CHILD_DB") else { return Ok(()) };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let store = std::sync::Arc::new(sqlite::open(Path::new(&path))?);
        let mut tasks = tokio::task::JoinSet::new();
        for client in 0..16 {
            let store = store.clone();
            tasks.spawn(async move {
                let key = format!("/crash/{client}");
                let mut rev = store.create(&key, b"0".to_vec()).await?;
                ack(&key, 0, rev);
                for n in 1.. {
                    rev = store.update(&key, n.to_string().into_bytes(), rev).await?;
                    ack(&key, n, rev);
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        anyhow::Ok(())
    })
}

fn ack(key: &str, n: u64, rev: Revision) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ack {key} {n} {rev}");
    let _ = out.flush();
}

#[tokio::test]
async fn every_acknowledged_write_survives_sigkill() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("state.db");
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env("KEELSON_CRASH_CHILD_DB", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut acked: BTreeMap<String, (u64, Revision)> = BTreeMap::new();
        let mut count = 0u64;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let ["ack", key, n, rev] = parts[..]
                && let (Ok(n), Ok(rev)) = (n.parse(), rev.parse())
            {
                acked.insert(key.to_owned(), (n, rev));
                count += 1;
            }
        }
        (acked, count)
    });
    // Let it write for a while under load, then kill it mid-stream.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill()?;
    child.wait()?;
    let (acked, count) = reader.join().map_err(|_| anyhow::anyhow!("reader panicked"))?;
    ensure!(count > 100, "the child acknowledged only {count} writes");

    let store = open(&path).await?;
    for (key, (n, rev)) in &acked {
        let kv = store.get(key).await?.with_context(|| format!("{key} lost"))?;
        // The child may have written more after its last printed ack, never less.
        let stored: u64 = String::from_utf8(kv.value)?.parse()?;
        ensure!(
            stored >= *n && kv.mod_revision >= *rev,
            "{key}: acked {n}@{rev}, found {stored}@{}",
            kv.mod_revision
        );
    }
    // The history has every revision exactly once.
    let current = store.current_revision().await?;
    let mut watch = store.watch("", 0).await?;
    for expected in 1..=current {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await?
            .context("watch ended")??;
        ensure!(
            event.revision() == expected,
            "revision {} where {expected} was due",
            event.revision()
        );
        if let Event::Delete { .. } = event {
            bail!("the child never deleted");
        }
    }
    ensure!(current >= count as Revision);
    Ok(())
}

//! The cases every backend must pass. Each takes a fresh, empty store.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use keelson_store::{Error, Event, ListOptions, Revision, Store, Watch};

const WAIT: Duration = Duration::from_secs(20);

async fn next_event(watch: &mut Watch) -> Result<Event> {
    match tokio::time::timeout(WAIT, watch.next()).await {
        Ok(Some(Ok(event))) => Ok(event),
        Ok(Some(Err(e))) => bail!("watch failed: {e}"),
        Ok(None) => bail!("watch ended"),
        Err(_) => bail!("no watch event within {WAIT:?}"),
    }
}

pub async fn create_then_get(store: Arc<dyn Store>) -> Result<()> {
    let before = store.current_revision().await?;
    let rev = store.create("/registry/pods/default/a", b"one".to_vec()).await?;
    ensure!(rev > before, "create must advance the revision ({before} -> {rev})");
    let kv = store.get("/registry/pods/default/a").await?.context("created key is missing")?;
    ensure!(kv.value == b"one");
    ensure!(kv.mod_revision == rev && kv.create_revision == rev);
    ensure!(store.current_revision().await? == rev);
    ensure!(store.get("/registry/pods/default/b").await?.is_none());
    Ok(())
}

pub async fn create_existing_key_fails_with_current_state(store: Arc<dyn Store>) -> Result<()> {
    let rev = store.create("/k", b"first".to_vec()).await?;
    match store.create("/k", b"second".to_vec()).await {
        Err(Error::AlreadyExists { key, current }) => {
            ensure!(key == "/k");
            ensure!(current.value == b"first" && current.mod_revision == rev);
        }
        other => bail!("expected AlreadyExists, got {other:?}"),
    }
    ensure!(store.get("/k").await?.context("missing")?.value == b"first");
    ensure!(store.current_revision().await? == rev, "a failed create must not write");
    Ok(())
}

pub async fn stale_update_and_delete_conflict_and_change_nothing(
    store: Arc<dyn Store>,
) -> Result<()> {
    let r1 = store.create("/k", b"v1".to_vec()).await?;
    let r2 = store.update("/k", b"v2".to_vec(), r1).await?;
    ensure!(r2 > r1);
    let kv = store.get("/k").await?.context("missing")?;
    ensure!(kv.value == b"v2" && kv.mod_revision == r2 && kv.create_revision == r1);

    match store.update("/k", b"stale".to_vec(), r1).await {
        Err(Error::Conflict { expected, current, .. }) => {
            ensure!(expected == r1 && current.mod_revision == r2 && current.value == b"v2");
        }
        other => bail!("expected Conflict, got {other:?}"),
    }
    match store.delete("/k", r1).await {
        Err(Error::Conflict { current, .. }) => ensure!(current.mod_revision == r2),
        other => bail!("expected Conflict, got {other:?}"),
    }
    ensure!(store.get("/k").await?.context("missing")?.value == b"v2");
    ensure!(store.current_revision().await? == r2, "failed writes must not write");

    match store.update("/missing", b"x".to_vec(), r2).await {
        Err(Error::NotFound { key }) => ensure!(key == "/missing"),
        other => bail!("expected NotFound, got {other:?}"),
    }
    match store.delete("/missing", r2).await {
        Err(Error::NotFound { .. }) => {}
        other => bail!("expected NotFound, got {other:?}"),
    }

    let r3 = store.delete("/k", r2).await?;
    ensure!(r3 > r2);
    ensure!(store.get("/k").await?.is_none());
    // A deleted key can be created again, with a new create revision.
    let r4 = store.create("/k", b"again".to_vec()).await?;
    let kv = store.get("/k").await?.context("missing")?;
    ensure!(kv.create_revision == r4 && r4 > r3);
    Ok(())
}

pub async fn list_pages_at_a_fixed_revision_while_writes_continue(
    store: Arc<dyn Store>,
) -> Result<()> {
    for i in 0..25 {
        store.create(&format!("/items/{i:03}"), format!("v{i}").into_bytes()).await?;
    }
    let first = store.list("/items", ListOptions { limit: 10, ..Default::default() }).await?;
    ensure!(first.items.len() == 10 && first.remaining == 15 && first.more());
    let at = first.revision;

    // Writes between pages: an update, a delete, a new key in the middle.
    let kv = store.get("/items/012").await?.context("missing")?;
    store.update("/items/012", b"changed".to_vec(), kv.mod_revision).await?;
    let kv = store.get("/items/020").await?.context("missing")?;
    store.delete("/items/020", kv.mod_revision).await?;
    store.create("/items/015a", b"new".to_vec()).await?;

    let mut keys: Vec<String> = first.items.iter().map(|kv| kv.key.clone()).collect();
    let mut start_after = first.items.last().map(|kv| kv.key.clone());
    loop {
        let page = store
            .list(
                "/items",
                ListOptions { start_after: start_after.clone(), limit: 10, revision: Some(at) },
            )
            .await?;
        ensure!(page.revision == at, "pages must be read at the requested revision");
        for kv in &page.items {
            if kv.key == "/items/012" {
                ensure!(kv.value == b"v12", "page must show the value at the snapshot");
            }
        }
        keys.extend(page.items.iter().map(|kv| kv.key.clone()));
        start_after = page.items.last().map(|kv| kv.key.clone());
        if !page.more() {
            break;
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("/items/{i:03}")).collect();
    ensure!(keys == expected, "snapshot pages must list exactly the keys at that revision");

    let now = store.list("/items/", ListOptions::default()).await?;
    ensure!(now.items.len() == 25 && now.remaining == 0);
    ensure!(now.items.iter().any(|kv| kv.key == "/items/015a"));
    ensure!(!now.items.iter().any(|kv| kv.key == "/items/020"));
    ensure!(store.count("/items").await? == 25);

    let future = at + 1000;
    match store.list("/items", ListOptions { revision: Some(future), ..Default::default() }).await {
        Err(Error::FutureRevision { requested, .. }) => ensure!(requested == future),
        other => bail!("expected FutureRevision, got {other:?}"),
    }
    Ok(())
}

pub async fn watch_from_a_past_revision_with_previous_values(store: Arc<dyn Store>) -> Result<()> {
    let start = store.current_revision().await?;
    let r1 = store.create("/w/a", b"a1".to_vec()).await?;
    store.create("/other/x", b"not watched".to_vec()).await?;
    let r2 = store.update("/w/a", b"a2".to_vec(), r1).await?;
    let r3 = store.create("/w/b", b"b1".to_vec()).await?;
    let r4 = store.delete("/w/a", r2).await?;

    let mut watch = store.watch("/w", start).await?;
    match next_event(&mut watch).await? {
        Event::Put { kv, prev: None } => {
            ensure!(kv.key == "/w/a" && kv.value == b"a1" && kv.mod_revision == r1)
        }
        e => bail!("expected creation of /w/a, got {e:?}"),
    }
    match next_event(&mut watch).await? {
        Event::Put { kv, prev: Some(prev) } => {
            ensure!(kv.value == b"a2" && kv.mod_revision == r2 && kv.create_revision == r1);
            ensure!(prev.value == b"a1" && prev.mod_revision == r1);
        }
        e => bail!("expected update of /w/a, got {e:?}"),
    }
    match next_event(&mut watch).await? {
        Event::Put { kv, prev: None } => ensure!(kv.key == "/w/b" && kv.mod_revision == r3),
        e => bail!("expected creation of /w/b, got {e:?}"),
    }
    match next_event(&mut watch).await? {
        Event::Delete { revision, prev } => {
            ensure!(revision == r4 && prev.key == "/w/a" && prev.value == b"a2");
        }
        e => bail!("expected deletion of /w/a, got {e:?}"),
    }
    // Then live events, in order.
    let r5 = store.create("/w/c", b"c1".to_vec()).await?;
    store.create("/wx/not-in-dir", b"no".to_vec()).await?;
    let r6 = store.update("/w/b", b"b2".to_vec(), r3).await?;
    let e5 = next_event(&mut watch).await?;
    let e6 = next_event(&mut watch).await?;
    ensure!(e5.revision() == r5 && e6.revision() == r6, "live events in order: {e5:?} {e6:?}");
    match e6 {
        Event::Put { prev: Some(prev), .. } => ensure!(prev.value == b"b1"),
        e => bail!("expected update with prev, got {e:?}"),
    }
    Ok(())
}

pub async fn watch_from_a_compacted_revision_is_a_typed_error(store: Arc<dyn Store>) -> Result<()> {
    let r1 = store.create("/c/a", b"1".to_vec()).await?;
    let r2 = store.update("/c/a", b"2".to_vec(), r1).await?;
    let r3 = store.update("/c/a", b"3".to_vec(), r2).await?;
    store.create("/c/b", b"b".to_vec()).await?;
    store.compact(r3).await?;
    match store.watch("/c", r1).await {
        Err(Error::Compacted { requested, .. }) => ensure!(requested == r1),
        Err(e) => bail!("expected Compacted, got {e}"),
        Ok(mut w) => match tokio::time::timeout(WAIT, w.next()).await {
            Ok(Some(Err(Error::Compacted { .. }))) => {}
            other => bail!("expected a Compacted error from the watch, got {other:?}"),
        },
    }
    match store.list("/c", ListOptions { revision: Some(r1), ..Default::default() }).await {
        Err(Error::Compacted { .. }) => {}
        other => bail!("expected Compacted for a list at {r1}, got {other:?}"),
    }
    // The state at the compacted revision and after stays readable.
    let at = store.list("/c", ListOptions { revision: Some(r3), ..Default::default() }).await?;
    ensure!(at.items.len() == 1 && at.items[0].value == b"3");
    let mut watch = store.watch("/c", r3).await?;
    match next_event(&mut watch).await? {
        Event::Put { kv, prev: None } => ensure!(kv.key == "/c/b"),
        e => bail!("expected creation of /c/b, got {e:?}"),
    }
    // Compacting again, lower or equal, is fine.
    store.compact(r2).await?;
    store.compact(r3).await?;
    Ok(())
}

pub async fn concurrent_writers_lose_no_update(store: Arc<dyn Store>) -> Result<()> {
    const CLIENTS: usize = 8;
    const INCREMENTS: usize = 25;
    store.create("/counter", b"0".to_vec()).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let store = store.clone();
        tasks.spawn(async move {
            let mut revisions = Vec::new();
            for _ in 0..INCREMENTS {
                loop {
                    let kv = store.get("/counter").await?.context("counter missing")?;
                    let n: u64 = String::from_utf8(kv.value)?.parse()?;
                    match store
                        .update("/counter", (n + 1).to_string().into_bytes(), kv.mod_revision)
                        .await
                    {
                        Ok(rev) => {
                            revisions.push(rev);
                            break;
                        }
                        Err(Error::Conflict { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            anyhow::Ok(revisions)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let revisions = done??;
        ensure!(revisions.windows(2).all(|w| w[0] < w[1]), "each client sees increasing revisions");
        all.extend(revisions);
    }
    let kv = store.get("/counter").await?.context("counter missing")?;
    ensure!(
        kv.value == (CLIENTS * INCREMENTS).to_string().as_bytes(),
        "lost updates: {:?}",
        String::from_utf8_lossy(&kv.value)
    );
    let unique: HashSet<Revision> = all.iter().copied().collect();
    ensure!(unique.len() == all.len(), "two writes got the same revision");
    Ok(())
}

pub async fn values_of_one_and_a_half_mebibytes(store: Arc<dyn Store>) -> Result<()> {
    let big: Vec<u8> = (0..1536 * 1024).map(|i| (i % 251) as u8).collect();
    let start = store.current_revision().await?;
    let r1 = store.create("/big/one", big.clone()).await?;
    let mut bigger = big.clone();
    bigger.reverse();
    let r2 = store.update("/big/one", bigger.clone(), r1).await?;
    ensure!(store.get("/big/one").await?.context("missing")?.value == bigger);
    let listed = store.list("/big", ListOptions::default()).await?;
    ensure!(listed.items.len() == 1 && listed.items[0].value == bigger);
    let mut watch = store.watch("/big", start).await?;
    next_event(&mut watch).await?;
    match next_event(&mut watch).await? {
        Event::Put { kv, prev: Some(prev) } => {
            ensure!(kv.mod_revision == r2 && kv.value == bigger && prev.value == big);
        }
        e => bail!("expected update with prev, got {e:?}"),
    }
    Ok(())
}

pub async fn a_hundred_thousand_keys(store: Arc<dyn Store>) -> Result<()> {
    const KEYS: usize = 100_000;
    const CLIENTS: usize = 64;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let store = store.clone();
        tasks.spawn(async move {
            for i in (c..KEYS).step_by(CLIENTS) {
                store.create(&format!("/many/{i:06}"), format!("value-{i}").into_bytes()).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    ensure!(store.count("/many").await? == KEYS as u64);
    let mut seen = 0;
    let mut start_after = None;
    let mut revision = None;
    loop {
        let page =
            store.list("/many", ListOptions { start_after, limit: 10_000, revision }).await?;
        for (offset, kv) in page.items.iter().enumerate() {
            let i = seen + offset;
            ensure!(
                kv.key == format!("/many/{i:06}") && kv.value == format!("value-{i}").as_bytes()
            );
        }
        seen += page.items.len();
        ensure!(page.remaining as usize == KEYS - seen);
        revision = Some(page.revision);
        start_after = page.items.last().map(|kv| kv.key.clone());
        if !page.more() {
            break;
        }
    }
    ensure!(seen == KEYS);
    Ok(())
}

pub async fn prefixes_are_directories(store: Arc<dyn Store>) -> Result<()> {
    for key in ["/a", "/a/1", "/a/2", "/ab", "/ab/1", "/a0/1", "/b/1"] {
        store.create(key, key.as_bytes().to_vec()).await?;
    }
    let keys = |items: Vec<keelson_store::KeyValue>| -> Vec<String> {
        items.into_iter().map(|kv| kv.key).collect()
    };
    let with_slash = store.list("/a/", ListOptions::default()).await?;
    let without = store.list("/a", ListOptions::default()).await?;
    ensure!(keys(with_slash.items) == ["/a/1", "/a/2"]);
    ensure!(keys(without.items) == ["/a/1", "/a/2"], "/a must never return /ab or /a0");
    ensure!(store.count("/a").await? == 2);
    ensure!(store.count("").await? == 7, "the empty prefix means every key");

    let start = store.current_revision().await?;
    let mut watch = store.watch("/a", start).await?;
    store.create("/ab/2", b"no".to_vec()).await?;
    store.create("/a1", b"no".to_vec()).await?;
    let rev = store.create("/a/3", b"yes".to_vec()).await?;
    let event = next_event(&mut watch).await?;
    ensure!(event.revision() == rev && event.key() == "/a/3", "watch /a saw {event:?}");
    Ok(())
}

pub async fn a_slow_watcher_catches_up_without_gaps(store: Arc<dyn Store>) -> Result<()> {
    const WRITES: usize = 3000;
    let start = store.current_revision().await?;
    let mut watch = store.watch("/slow", start).await?;
    let mut expected = BTreeMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..4 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut revs = Vec::new();
            for i in 0..WRITES / 4 {
                let key = format!("/slow/{c}-{i}");
                revs.push((store.create(&key, key.clone().into_bytes()).await?, key));
            }
            anyhow::Ok(revs)
        });
    }
    while let Some(done) = tasks.join_next().await {
        expected.extend(done??);
    }
    // Nobody read the watch while thousands of events went by.
    for (rev, key) in expected {
        let event = next_event(&mut watch).await?;
        ensure!(
            event.revision() == rev && event.key() == key,
            "expected {key} at {rev}, got {event:?}"
        );
    }
    Ok(())
}

pub async fn bad_input_is_rejected_cleanly(store: Arc<dyn Store>) -> Result<()> {
    match store.create("", b"x".to_vec()).await {
        Err(Error::InvalidKey(_)) => {}
        other => bail!("expected InvalidKey, got {other:?}"),
    }
    match store.compact(store.current_revision().await? + 10).await {
        Err(Error::FutureRevision { .. }) => {}
        other => bail!("expected FutureRevision, got {other:?}"),
    }
    ensure!(store.count("").await? == 0);
    Ok(())
}

//! The watch side of the engine: each watch is a task that replays the index's changes
//! since its start revision, then forwards the writer's live events, and replays again
//! if it falls behind. Must never skip or repeat a revision.

use std::collections::HashMap;
use std::sync::Weak;

use tokio::sync::mpsc;

use super::{CATCH_UP_CHUNK, Log, Shared, WATCH_BUFFER, Watcher, lock};
use crate::index::Change;
use crate::{Error, Event, Result, Revision};

/// Feeds one watch: catch up from the index and log, then forward live events; when the
/// live buffer overflows (a slow consumer), catch up again from the last delivered
/// revision. Ends when the consumer goes away or the store closes.
pub(super) async fn pump<L: Log>(
    shared: Weak<Shared<L>>,
    dir: String,
    mut last: Revision,
    out: mpsc::Sender<Result<Event>>,
) {
    loop {
        let Some(strong) = shared.upgrade() else { return };
        let (live_tx, mut live_rx) = mpsc::channel(WATCH_BUFFER);
        let changes = {
            let ix = strong.read_index();
            if last < ix.compacted {
                let err = Error::Compacted { requested: last, compacted: ix.compacted };
                let _ = out.try_send(Err(err));
                return;
            }
            let changes = ix.changes_since(&dir, last);
            lock(&strong.watchers).push(Watcher { dir: dir.clone(), tx: live_tx });
            changes
        };
        drop(strong);
        for chunk in changes.chunks(CATCH_UP_CHUNK) {
            let Some(strong) = shared.upgrade() else { return };
            let chunk = chunk.to_vec();
            let events = tokio::task::spawn_blocking(move || catch_up_events(&strong, chunk))
                .await
                .unwrap_or_else(|e| Err(Error::Unavailable(format!("watch task failed: {e}"))));
            match events {
                Ok(events) => {
                    for event in events {
                        last = event.revision();
                        if out.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(err) => {
                    let _ = out.send(Err(err)).await;
                    return;
                }
            }
        }
        loop {
            tokio::select! {
                event = live_rx.recv() => match event {
                    Some(event) => {
                        last = event.revision();
                        if out.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                    // Dropped by the hub: we fell behind, or the store is closing.
                    None => break,
                },
                () = out.closed() => return,
            }
        }
    }
}

fn catch_up_events<L: Log>(shared: &Shared<L>, changes: Vec<Change>) -> Result<Vec<Event>> {
    let mut revs = Vec::with_capacity(changes.len() * 2);
    for c in &changes {
        if !c.version.deleted {
            revs.push(c.version.rev);
        }
        if let Some(p) = c.prev {
            revs.push(p.rev);
        }
    }
    let values: HashMap<Revision, Vec<u8>> = revs
        .iter()
        .copied()
        .zip(shared.log.read(&revs)?)
        .filter_map(|(r, v)| v.map(|v| (r, v)))
        .collect();
    let value = |rev: Revision| {
        values.get(&rev).cloned().ok_or_else(|| Error::Compacted {
            requested: rev,
            compacted: shared.read_index().compacted,
        })
    };
    let mut events = Vec::with_capacity(changes.len());
    for c in changes {
        let prev = match c.prev {
            Some(p) => Some(shared.key_value(c.key.clone(), p, value(p.rev)?)),
            None => None,
        };
        events.push(if c.version.deleted {
            let prev = prev.ok_or_else(|| {
                Error::Corrupt(format!("deletion of {:?} without a previous value", c.key))
            })?;
            Event::Delete { revision: c.version.rev, prev }
        } else {
            Event::Put { kv: shared.key_value(c.key, c.version, value(c.version.rev)?), prev }
        });
    }
    Ok(events)
}

//! The writer thread: takes every queued request, decides each against the index and
//! the batch so far, commits the batch once, then updates the index, publishes events
//! and replies. Must never reply before the commit, or publish a write that failed.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{
    DISCARD_PER_COMMIT, Log, LogWriter, MAX_BATCH, MAX_BATCH_BYTES, Op, Record, Request, Shared,
    Watcher, lock,
};
use crate::index::{Index, Version};
use crate::{Error, Event, KeyValue, Result, Revision};

/// A write that passed its condition, waiting for the commit.
struct Staged {
    key: String,
    version: Version,
    value: Option<Vec<u8>>,
    prev: Option<Version>,
}

pub(super) fn write_loop<L: Log>(
    shared: Arc<Shared<L>>,
    mut writer: L::Writer,
    mut rx: mpsc::Receiver<Request>,
) {
    // History a crash interrupted the discarding of: the index was rebuilt with all
    // rows still in the log, so compacting it again names them.
    let mut discard: Vec<Revision> = {
        let mut ix = shared.write_index();
        let compacted = std::mem::take(&mut ix.compacted);
        ix.compact(compacted)
    };
    loop {
        let mut batch = Vec::new();
        if discard.is_empty() {
            match rx.blocking_recv() {
                Some(r) => batch.push(r),
                None => break,
            }
        }
        let mut bytes: usize = batch.iter().map(Request::bytes).sum();
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(r) => {
                    bytes += r.bytes();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        let take = discard.len().min(DISCARD_PER_COMMIT);
        let discarding: Vec<Revision> = discard.drain(..take).collect();
        if let Err(err) = commit_batch(&shared, &mut writer, batch, &discarding, &mut discard) {
            tracing::error!(backend = shared.backend, error = %err, "commit failed");
            // The discard is retried with the next commit.
            discard.extend(discarding);
        }
    }
    tracing::debug!(backend = shared.backend, "writer stopped");
}

/// Decides, commits and publishes one batch. Returns an error only when the commit
/// itself failed (every request in the batch has then been answered with it).
fn commit_batch<L: Log>(
    shared: &Shared<L>,
    writer: &mut L::Writer,
    batch: Vec<Request>,
    discarding: &[Revision],
    discard: &mut Vec<Revision>,
) -> Result<()> {
    let mut staged: Vec<Staged> = Vec::new();
    let mut replies: Vec<(oneshot::Sender<Result<Revision>>, Result<Revision>)> = Vec::new();
    let mut compact_to: Option<Revision> = None;
    {
        let ix = shared.read_index();
        // The newest version of each key this batch has touched.
        let mut overlay: HashMap<String, Version> = HashMap::new();
        let mut rev = ix.current;
        for Request { op, reply } in batch {
            let outcome = match op {
                Op::Compact { rev: target } => {
                    if target > rev {
                        Err(Error::FutureRevision { requested: target, current: rev })
                    } else {
                        compact_to = Some(compact_to.map_or(target, |c| c.max(target)));
                        Ok(target)
                    }
                }
                op => decide(op, &ix, &mut overlay, &mut rev, &mut staged),
            };
            replies.push((reply, outcome));
        }
    }
    fill_current_values(&mut replies, &staged, writer);
    let prev_values = prev_values(&staged, writer);
    let records: Vec<Record<'_>> = staged
        .iter()
        .map(|s| Record {
            rev: s.version.rev,
            key: &s.key,
            create_rev: s.version.create_rev,
            value: s.value.as_deref(),
        })
        .collect();
    let committed = writer.commit(&records, discarding).and_then(|()| match compact_to {
        Some(c) if c > shared.read_index().compacted => writer.set_compacted(c),
        _ => Ok(()),
    });
    let prev_values = match (committed, prev_values) {
        (Ok(()), Ok(p)) => p,
        (Err(err), _) | (Ok(()), Err(err)) => {
            let message = err.to_string();
            for (reply, _) in replies {
                let _ = reply.send(Err(Error::Unavailable(message.clone())));
            }
            return Err(err);
        }
    };
    {
        let mut ix = shared.write_index();
        let mut watchers = lock(&shared.watchers);
        for s in staged {
            ix.apply(&s.key, s.version);
            let prev = s.prev.map(|p| {
                let value = prev_values.get(&p.rev).cloned().unwrap_or_default();
                shared.key_value(s.key.clone(), p, value)
            });
            let event = match s.value {
                Some(value) => Event::Put { kv: shared.key_value(s.key, s.version, value), prev },
                None => match prev {
                    Some(prev) => Event::Delete { revision: s.version.rev, prev },
                    None => continue,
                },
            };
            publish(&mut watchers, &event);
        }
        if let Some(c) = compact_to {
            discard.extend(ix.compact(c));
        }
    }
    for (reply, outcome) in replies {
        let _ = reply.send(outcome);
    }
    Ok(())
}

/// Checks one write's condition against the index and what this batch already did.
fn decide(
    op: Op,
    ix: &Index,
    overlay: &mut HashMap<String, Version>,
    rev: &mut Revision,
    staged: &mut Vec<Staged>,
) -> Result<Revision> {
    let (key, value, expected) = match op {
        Op::Create { key, value } => (key, Some(value), None),
        Op::Update { key, value, expected } => (key, Some(value), Some(expected)),
        Op::Delete { key, expected } => (key, None, Some(expected)),
        Op::Compact { .. } => unreachable!("handled by the caller"),
    };
    let newest = overlay.get(&key).copied().or_else(|| ix.newest(&key));
    let live = newest.filter(|v| !v.deleted);
    let current = |v: Version| {
        // The value is filled in by `fill_current_values` once the batch is decided.
        Box::new(KeyValue {
            key: key.clone(),
            value: Vec::new(),
            create_revision: v.create_rev,
            mod_revision: v.rev,
        })
    };
    match (expected, live) {
        (None, Some(v)) => {
            return Err(Error::AlreadyExists { key: key.clone(), current: current(v) });
        }
        (Some(_), None) => return Err(Error::NotFound { key }),
        (Some(expected), Some(v)) if v.rev != expected => {
            return Err(Error::Conflict { key: key.clone(), expected, current: current(v) });
        }
        _ => {}
    }
    *rev += 1;
    let version = Version {
        rev: *rev,
        create_rev: live.map_or(*rev, |v| v.create_rev),
        deleted: value.is_none(),
    };
    overlay.insert(key.clone(), version);
    staged.push(Staged { key, version, value, prev: live });
    Ok(*rev)
}

/// Puts the current value into each conflict error, so callers can retry without a read.
fn fill_current_values<W: LogWriter>(
    replies: &mut [(oneshot::Sender<Result<Revision>>, Result<Revision>)],
    staged: &[Staged],
    writer: &mut W,
) {
    let mut wanted: Vec<&mut KeyValue> = replies
        .iter_mut()
        .filter_map(|(_, outcome)| match outcome {
            Err(Error::AlreadyExists { current, .. } | Error::Conflict { current, .. }) => {
                Some(current.as_mut())
            }
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return;
    }
    let unstaged: Vec<Revision> = wanted
        .iter()
        .map(|kv| kv.mod_revision)
        .filter(|r| !staged.iter().any(|s| s.version.rev == *r))
        .collect();
    let read: HashMap<Revision, Vec<u8>> = match writer.read(&unstaged) {
        Ok(values) => {
            unstaged.into_iter().zip(values).filter_map(|(r, v)| v.map(|v| (r, v))).collect()
        }
        // The error still names the current revision, which is what callers retry on.
        Err(err) => {
            tracing::warn!(error = %err, "cannot read current values for conflict errors");
            HashMap::new()
        }
    };
    for kv in wanted.iter_mut() {
        let staged_value = staged.iter().find(|s| s.version.rev == kv.mod_revision);
        if let Some(value) = staged_value.and_then(|s| s.value.clone()) {
            kv.value = value;
        } else if let Some(value) = read.get(&kv.mod_revision) {
            kv.value = value.clone();
        }
    }
}

/// The values replaced by this batch, for the watch events' `prev`.
fn prev_values<W: LogWriter>(
    staged: &[Staged],
    writer: &mut W,
) -> Result<HashMap<Revision, Vec<u8>>> {
    let mut values: HashMap<Revision, Vec<u8>> = HashMap::new();
    for s in staged {
        if let Some(v) = &s.value {
            values.insert(s.version.rev, v.clone());
        }
    }
    let missing: Vec<Revision> = staged
        .iter()
        .filter_map(|s| s.prev.map(|p| p.rev))
        .filter(|r| !values.contains_key(r))
        .collect();
    for (rev, value) in missing.iter().zip(writer.read(&missing)?) {
        if let Some(value) = value {
            values.insert(*rev, value);
        }
    }
    Ok(values)
}

fn publish(watchers: &mut Vec<Watcher>, event: &Event) {
    // A watcher whose buffer is full is dropped here and catches up from the log.
    watchers.retain(|w| !event.key().starts_with(&w.dir) || w.tx.try_send(event.clone()).is_ok());
}

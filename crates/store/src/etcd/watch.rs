//! Watches on etcd: one task per watch forwards etcd's stream as [`Event`]s, carrying
//! previous values, and re-establishes a broken stream after the last delivered
//! revision. Must never deliver an event twice or skip one.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, WatchClient, WatchOptions, WatchResponse, WatchStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};

use super::{COMPACTED_PROBE_TIMEOUT, REQUEST_TIMEOUT, RETRY_MAX_DELAY, WATCH_PATIENCE, key_value};
use crate::{Error, Event, Result, Revision, Watch};

const WATCH_BUFFER: usize = 1024;

/// Watches `[start, end)` after `from`: opens the etcd watch (so that a refusal is this
/// call's error) and spawns the task that forwards it.
pub(super) async fn start(
    client: WatchClient,
    start: Vec<u8>,
    end: Vec<u8>,
    from: Revision,
    endpoints: Arc<str>,
) -> Result<Watch> {
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    let mut watcher = Watcher { client, start, end, last: from, tx, endpoints };
    let (stream, id) = watcher.open(REQUEST_TIMEOUT).await.map_err(Reopen::into_error)?;
    tokio::spawn(watcher.run(stream, id));
    Ok(Watch::new(rx))
}

/// One watch's forwarding task: etcd's stream in, [`Event`]s out.
struct Watcher {
    client: WatchClient,
    start: Vec<u8>,
    end: Vec<u8>,
    /// The revision of the last event delivered (or the starting point).
    last: Revision,
    tx: mpsc::Sender<Result<Event>>,
    endpoints: Arc<str>,
}

/// Why a watch could not be (re-)established.
enum Reopen {
    /// Retrying would not help: the history is gone or etcd refused the watch.
    Fatal(Error),
    Retry(String),
}

impl Reopen {
    fn into_error(self) -> Error {
        match self {
            Reopen::Fatal(e) => e,
            Reopen::Retry(message) => Error::Unavailable(message),
        }
    }
}

enum Flow {
    Continue,
    Stop,
}

impl Watcher {
    /// Starts an etcd watch after `last` and waits up to `patience` for etcd to confirm it.
    async fn open(&mut self, patience: Duration) -> Result<(WatchStream, i64), Reopen> {
        let options = WatchOptions::new()
            .with_range(self.end.clone())
            .with_start_revision(self.last + 1)
            .with_prev_key()
            // Split responses bigger than etcd's request limit instead of failing.
            .with_fragment();
        let unavailable =
            |e: String| Reopen::Retry(format!("etcd at {}: watch: {e}", self.endpoints));
        let mut client = self.client.clone();
        let opened = async {
            let mut stream = client.watch(self.start.clone(), Some(options)).await?;
            let first = stream.message().await?;
            Ok::<_, etcd_client::Error>((stream, first))
        };
        let (stream, first) = match timeout(patience, opened).await {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) => return Err(unavailable(e.to_string())),
            Err(_) => return Err(unavailable(format!("no answer within {patience:?}"))),
        };
        match first {
            Some(response) if response.canceled() || response.compact_revision() > 0 => {
                Err(Reopen::Fatal(self.canceled(&response)))
            }
            Some(response) if response.created() => Ok((stream, response.watch_id())),
            Some(_) => Err(unavailable("etcd did not confirm the watch".into())),
            None => Err(unavailable("etcd closed the watch stream at once".into())),
        }
    }

    /// The error for a watch etcd canceled.
    fn canceled(&self, response: &WatchResponse) -> Error {
        if response.compact_revision() > 0 {
            Error::Compacted { requested: self.last, compacted: response.compact_revision() }
        } else {
            Error::Unavailable(format!(
                "etcd at {} canceled the watch: {}",
                self.endpoints,
                response.cancel_reason()
            ))
        }
    }

    /// Forwards events until the receiver goes away or the watch cannot go on.
    async fn run(mut self, mut stream: WatchStream, mut id: i64) {
        loop {
            let message = tokio::select! {
                () = self.tx.closed() => {
                    let _ = stream.cancel(id).await;
                    return;
                }
                message = stream.message() => message,
            };
            let problem = match message {
                Ok(Some(response)) => match self.deliver(response).await {
                    Flow::Continue => continue,
                    Flow::Stop => {
                        let _ = stream.cancel(id).await;
                        return;
                    }
                },
                Ok(None) => "etcd closed the watch stream".to_owned(),
                Err(e) => e.to_string(),
            };
            match self.reopen(problem).await {
                Some((new_stream, new_id)) => (stream, id) = (new_stream, new_id),
                None => return,
            }
        }
    }

    /// Sends one response's events on; `Stop` when the watch is over.
    async fn deliver(&mut self, response: WatchResponse) -> Flow {
        if response.canceled() || response.compact_revision() > 0 {
            let _ = self.tx.send(Err(self.canceled(&response))).await;
            return Flow::Stop;
        }
        for event in response.events() {
            let event = match convert(event) {
                Ok(Converted::Event(event)) => event,
                Ok(Converted::MissingPrev { key, revision }) => {
                    let error = self.missing_prev(key, revision).await;
                    let _ = self.tx.send(Err(error)).await;
                    return Flow::Stop;
                }
                Err(error) => {
                    let _ = self.tx.send(Err(error)).await;
                    return Flow::Stop;
                }
            };
            let revision = event.revision();
            if self.tx.send(Ok(event)).await.is_err() {
                return Flow::Stop;
            }
            self.last = self.last.max(revision);
        }
        Flow::Continue
    }

    /// etcd leaves out the previous value when compaction discarded it, which happens
    /// when the watch catches up from right below the compacted revision.
    async fn missing_prev(&self, key: String, revision: Revision) -> Error {
        match compacted_revision(&self.client).await {
            Some(compacted) if revision - 1 < compacted => {
                Error::Compacted { requested: self.last, compacted }
            }
            _ => Error::Corrupt(format!(
                "etcd sent the change of {key:?} at revision {revision} without its previous value"
            )),
        }
    }

    /// Re-establishes a broken watch after the last delivered revision, with backoff;
    /// `None` (after sending the error) when it cannot.
    async fn reopen(&mut self, problem: String) -> Option<(WatchStream, i64)> {
        let deadline = Instant::now() + WATCH_PATIENCE;
        let mut delay = Duration::from_millis(100);
        let mut problem = problem;
        loop {
            tracing::warn!(
                endpoints = %self.endpoints,
                after = self.last,
                "etcd watch broke, re-establishing in {delay:?}: {problem}"
            );
            tokio::select! {
                () = self.tx.closed() => return None,
                () = sleep(delay) => {}
            }
            match self.open(deadline.saturating_duration_since(Instant::now()).max(delay)).await {
                Ok(opened) => return Some(opened),
                Err(Reopen::Retry(message)) if Instant::now() + delay < deadline => {
                    problem = message
                }
                Err(failure) => {
                    let error = match failure {
                        Reopen::Retry(message) => Error::Unavailable(format!(
                            "watch could not be re-established within {WATCH_PATIENCE:?}: {message}"
                        )),
                        Reopen::Fatal(error) => error,
                    };
                    let _ = self.tx.send(Err(error)).await;
                    return None;
                }
            }
            delay = (delay * 2).min(RETRY_MAX_DELAY);
        }
    }
}

enum Converted {
    Event(Event),
    MissingPrev { key: String, revision: Revision },
}

fn convert(event: &etcd_client::Event) -> Result<Converted> {
    let kv =
        event.kv().ok_or_else(|| Error::Corrupt("etcd sent a watch event without a key".into()))?;
    let prev = event.prev_kv().cloned().map(key_value).transpose()?;
    let revision = kv.mod_revision();
    Ok(match (event.event_type(), prev) {
        // Version 1 is a creation, which has no previous value.
        (EventType::Put, None) if kv.version() > 1 => {
            Converted::MissingPrev { key: key_value(kv.clone())?.key, revision }
        }
        (EventType::Put, prev) => Converted::Event(Event::Put { kv: key_value(kv.clone())?, prev }),
        (EventType::Delete, Some(prev)) => Converted::Event(Event::Delete { revision, prev }),
        (EventType::Delete, None) => {
            Converted::MissingPrev { key: key_value(kv.clone())?.key, revision }
        }
    })
}

/// etcd's current compacted revision, if etcd names it in time: a watch from revision 1
/// is canceled with it once anything was compacted.
pub(super) async fn compacted_revision(client: &WatchClient) -> Option<Revision> {
    let mut client = client.clone();
    let probe = async {
        // "\0" is never a Keelson key, so the probe sees no events.
        let options = WatchOptions::new().with_start_revision(1);
        let mut stream = client.watch(vec![0], Some(options)).await.ok()?;
        while let Some(response) = stream.message().await.ok()? {
            if response.compact_revision() > 0 {
                return Some(response.compact_revision());
            }
            if response.canceled() {
                return None;
            }
        }
        None
    };
    timeout(COMPACTED_PROBE_TIMEOUT, probe).await.ok().flatten()
}

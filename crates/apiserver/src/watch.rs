//! WATCH: a chunked stream of `WatchEvent` JSON objects, one per line.
//!
//! Events come from one store watch per request, filtered by namespace (the key
//! directory) and selectors. An object that stops matching a selector is a DELETED
//! event, one that starts matching an ADDED event, as upstream's watch filter does. A
//! start revision older than the kept history is an ERROR event with a 410 Status.
//! Must never send an event out of revision order, or a bookmark ahead of an event
//! not yet sent.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use keelson_api::ResourceInfo;
use keelson_store::{Event, KeyValue, Revision};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keelson_store::Store;
use tokio::sync::{broadcast, mpsc};

use crate::ApiServer;
use crate::list::{Filter, read_page};
use crate::negotiation::Output;
use crate::registry::{Splicer, decode, directory};
use crate::request::Request;
use crate::request::Target;
use crate::response::Response;
use crate::status::{ApiError, ApiResult, from_store};

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);
/// Upstream's default watch timeout is 30–60 minutes (`--min-request-timeout`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// Where a watch's events come from.
enum Source {
    /// A store watch of the request's directory.
    Store(keelson_store::Watch),
    /// The resource's watch cache: a backlog, then the live feed, filtered to `dir`.
    Cache {
        backlog: VecDeque<Arc<Event>>,
        live: broadcast::Receiver<Arc<Event>>,
        dir: String,
        store: Arc<dyn Store>,
    },
}

impl Source {
    /// The next event after `last`. A cache subscriber that fell behind continues from
    /// the store at `last`, which keeps the history a broadcast drops.
    async fn next(&mut self, last: Revision) -> Option<keelson_store::Result<Event>> {
        loop {
            let (event, dir) = match self {
                Source::Store(watch) => return watch.next().await,
                Source::Cache { backlog, live, dir, store } => {
                    let event = match backlog.pop_front() {
                        Some(event) => event,
                        None => match live.recv().await {
                            Ok(event) => event,
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                match store.watch(dir, last).await {
                                    Ok(watch) => *self = Source::Store(watch),
                                    Err(e) => return Some(Err(e)),
                                }
                                continue;
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        },
                    };
                    (event, dir)
                }
            };
            if event.revision() > last && event.key().starts_with(dir.as_str()) {
                return Some(Ok((*event).clone()));
            }
        }
    }
}

/// A streaming response body fed by a channel.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// The objects a watch starts with: as stored, for a watch that sees every object, or
/// decoded.
enum Initial {
    Stored(Vec<std::sync::Arc<KeyValue>>),
    Decoded(Vec<Value>),
}

/// Everything one watch needs to turn store events into wire events.
struct Stream {
    info: &'static ResourceInfo,
    filter: Filter,
    name: Option<String>,
    /// What each event carries, and the request a Table reads its options from.
    output: Output,
    req: Request,
    /// Whether a Table's column definitions went out (only the first event has them).
    headers_sent: AtomicBool,
    out: mpsc::Sender<Bytes>,
    /// For a watch of every object as JSON: events written from the stored bytes.
    raw: Option<Splicer>,
    /// `apiserver_watch_events_*` of the watched kind.
    events: crate::metrics::WatchEvents,
}

impl Stream {
    /// Sends one event's line; `false` when the client has gone.
    async fn emit(&self, line: Bytes) -> bool {
        self.events.sent(line.len());
        self.out.send(line).await.is_ok()
    }

    /// The wire line of a store event for a watch that sees every event, written from
    /// the stored bytes; `None` when they do not allow it (the event is then decoded).
    fn raw_line(&self, event: &Event) -> Option<Bytes> {
        match event {
            Event::Put { kv, prev: None } => self.raw_object_line("ADDED", kv, kv.mod_revision),
            Event::Put { kv, prev: Some(_) } => {
                self.raw_object_line("MODIFIED", kv, kv.mod_revision)
            }
            Event::Delete { revision, prev } => self.raw_object_line("DELETED", prev, *revision),
        }
    }

    /// The wire line of an event of type `kind` carrying the stored object `kv` at
    /// `revision`, for a watch that sees every event.
    fn raw_object_line(&self, kind: &str, kv: &KeyValue, revision: Revision) -> Option<Bytes> {
        let splicer = self.raw.as_ref()?;
        let mut line = format!(r#"{{"type":"{kind}","object":"#).into_bytes();
        if !splicer.write_at(kv, revision, true, &mut line) {
            return None;
        }
        line.extend_from_slice(b"}\n");
        Some(Bytes::from(line))
    }

    fn matches(&self, object: &Value) -> bool {
        let name_ok = self
            .name
            .as_deref()
            .is_none_or(|n| object.pointer("/metadata/name").and_then(Value::as_str) == Some(n));
        name_ok && self.filter.matches(object)
    }

    /// Sends one event; `false` when the client has gone. Its object is transformed as
    /// negotiated (upstream's `watchEmbeddedEncoder`), an ERROR's Status never; a list's
    /// transform cannot apply to one object, which is then sent as it is.
    async fn send(&self, kind: &str, object: &Value) -> bool {
        let object = match self.output {
            _ if kind == "ERROR" => object.clone(),
            Output::Object | Output::PartialList(_) => object.clone(),
            Output::Partial(version) => crate::table::partial_object_metadata(object, version),
            Output::Table(version) => {
                let headers = !self.headers_sent.swap(true, Ordering::Relaxed);
                let one = std::slice::from_ref(object);
                crate::answer::table(self.info, one, None, &self.req, version, headers)
                    .unwrap_or_else(|_| object.clone())
            }
        };
        // A WatchEvent: `type` first; its object in its type's order, a custom
        // resource's in key order.
        let order = match self.output {
            Output::Object | Output::PartialList(_) if kind != "ERROR" && self.info.is_custom() => {
                &crate::gojson::KEYS
            }
            _ => crate::gojson::order_of(&object),
        };
        let mut line = format!(r#"{{"type":{},"object":"#, json!(kind)).into_bytes();
        crate::gojson::write(&mut line, &object, order);
        line.extend_from_slice(b"}\n");
        self.emit(Bytes::from(line)).await
    }

    async fn bookmark(&self, revision: Revision, initial_events_end: bool) -> bool {
        let mut meta = json!({ "resourceVersion": revision.to_string() });
        if initial_events_end {
            meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let object = json!({ "kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": meta });
        self.send("BOOKMARK", &object).await
    }

    /// The wire event for a store event, if the watch sees it.
    fn translate(&self, event: &Event) -> ApiResult<Option<(&'static str, Value)>> {
        Ok(match event {
            Event::Put { kv, prev } => {
                let object = decode(self.info, kv)?;
                let now = self.matches(&object);
                let before = match prev {
                    Some(prev) => Some(self.matches(&decode(self.info, prev)?)),
                    None => None,
                };
                match (before, now) {
                    (None | Some(false), true) => Some(("ADDED", object)),
                    (Some(true), true) => Some(("MODIFIED", object)),
                    (Some(true), false) => Some(("DELETED", object)),
                    (_, false) => None,
                }
            }
            Event::Delete { revision, prev } => {
                let mut object = decode(self.info, prev)?;
                object["metadata"]["resourceVersion"] = json!(revision.to_string());
                self.matches(&object).then_some(("DELETED", object))
            }
        })
    }
}

pub async fn serve(api: &ApiServer, req: &Request, target: &Target) -> ApiResult<Response> {
    let info = target.info;
    let filter = Filter::from_request(req, info)?;
    let timeout = match req.param("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
        ),
        None => DEFAULT_TIMEOUT,
    };
    let bookmarks = req.flag("allowWatchBookmarks");
    let send_initial = match req.param("sendInitialEvents") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_request(format!("invalid sendInitialEvents {other:?}")));
        }
    };
    if send_initial.is_some() && req.param("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(ApiError::invalid("meta.k8s.io", "ListOptions", "", vec![crate::status::Cause {
            reason: "FieldValueForbidden",
            message: "Forbidden: sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan".into(),
            field: "sendInitialEvents".into(),
        }]));
    }
    let rv = req.param("resourceVersion");
    // Initial state: for "" and "0" (synthetic ADDED events, upstream's "get state and
    // start at most recent/any"), or when sendInitialEvents asks for it.
    let initial_state = match (send_initial, rv) {
        (Some(send), _) => send,
        (None, None | Some("0")) => true,
        (None, Some(_)) => false,
    };
    let dir = directory(info, target.namespace.as_deref());
    let output = req.output(info, true)?;
    if let Output::Table(_) = output {
        crate::table::include_object(req)?;
    }
    let everything = filter.is_empty() && target.name.is_none() && output == Output::Object;
    let cache = api.caches.get(&info.storage_prefix()).await;
    let (initial, from, source) = if initial_state {
        match &cache {
            // The initial state and what follows, from the cache at one revision.
            Some(cache) => {
                let (objects, revision, live) = cache.snapshot(&dir);
                let initial = if everything {
                    Initial::Stored(objects)
                } else {
                    Initial::Decoded(
                        objects.iter().map(|kv| decode(info, kv)).collect::<ApiResult<_>>()?,
                    )
                };
                let source = Source::Cache {
                    backlog: VecDeque::new(),
                    live,
                    dir: dir.clone(),
                    store: api.store.clone(),
                };
                (initial, revision, Ok(source))
            }
            None => {
                let mut list_req = Request::new_like(req);
                list_req.query.remove("limit");
                list_req.query.remove("continue");
                list_req.query.remove("resourceVersionMatch");
                list_req.query.insert("resourceVersion".into(), "0".into());
                let page = read_page(api, &list_req, target).await?;
                let source = api.store.watch(&dir, page.revision).await.map(Source::Store);
                (Initial::Decoded(page.items), page.revision, source)
            }
        }
    } else {
        let from = match rv {
            Some(rv) => rv
                .parse::<Revision>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}")))?,
            None => api
                .store
                .current_revision()
                .await
                .map_err(|e| from_store(e, info.group, info.plural, ""))?,
        };
        let source = match cache.as_ref().and_then(|c| c.subscribe(from)) {
            Some(sub) => Ok(Source::Cache {
                backlog: sub.backlog.into(),
                live: sub.live,
                dir: dir.clone(),
                store: api.store.clone(),
            }),
            // Older than the cache's ring (or newer than it has seen): from the store.
            None => api.store.watch(&dir, from).await.map(Source::Store),
        };
        (Initial::Decoded(Vec::new()), from, source)
    };
    let (out, rx) = mpsc::channel(64);
    let stream = Stream {
        info,
        filter,
        name: target.name.clone(),
        output,
        req: Request::new_like(req),
        headers_sent: AtomicBool::new(false),
        out,
        raw: everything.then(|| Splicer::new(info)),
        events: api.metrics.watch_events(info),
    };
    tokio::spawn(async move {
        let _ = tokio::time::timeout(
            timeout,
            run(stream, initial, from, source, bookmarks, send_initial == Some(true)),
        )
        .await;
    });
    let mut response = http::Response::new(ChannelBody(rx).boxed());
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    Ok(response)
}

async fn run(
    stream: Stream,
    initial: Initial,
    from: Revision,
    source: keelson_store::Result<Source>,
    bookmarks: bool,
    initial_events_end: bool,
) {
    match initial {
        Initial::Stored(objects) => {
            for kv in &objects {
                let sent = match stream.raw_object_line("ADDED", kv, kv.mod_revision) {
                    Some(line) => stream.emit(line).await,
                    None => match decode(stream.info, kv) {
                        Ok(object) => stream.send("ADDED", &object).await,
                        Err(error) => {
                            let _ = stream.send("ERROR", &error.to_status()).await;
                            false
                        }
                    },
                };
                if !sent {
                    return;
                }
            }
        }
        Initial::Decoded(objects) => {
            for object in objects.iter().filter(|o| stream.matches(o)) {
                if !stream.send("ADDED", object).await {
                    return;
                }
            }
        }
    }
    if initial_events_end && !stream.bookmark(from, true).await {
        return;
    }
    let mut watch = match source {
        Ok(watch) => watch,
        Err(e) => {
            let error = from_store(e, stream.info.group, stream.info.plural, "");
            let _ = stream.send("ERROR", &error.to_status()).await;
            return;
        }
    };
    let mut last = from;
    let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
    ticker.tick().await;
    loop {
        tokio::select! {
            event = watch.next(last) => match event {
                Some(Ok(event)) => {
                    last = event.revision();
                    if let Some(line) = stream.raw_line(&event) {
                        if !stream.emit(line).await {
                            return;
                        }
                        continue;
                    }
                    match stream.translate(&event) {
                        Ok(Some((kind, object))) => if !stream.send(kind, &object).await { return },
                        Ok(None) => {}
                        Err(error) => {
                            let _ = stream.send("ERROR", &error.to_status()).await;
                            return;
                        }
                    }
                }
                Some(Err(e)) => {
                    let error = from_store(e, stream.info.group, stream.info.plural, "");
                    let _ = stream.send("ERROR", &error.to_status()).await;
                    return;
                }
                None => return,
            },
            _ = ticker.tick(), if bookmarks => if !stream.bookmark(last, false).await { return },
            () = stream.out.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events written from the stored bytes are the decoded ones.
    #[test]
    fn raw_events_are_the_translated_ones() {
        let pods = keelson_api::Registry::builtin().find("", "v1", "pods").expect("pods");
        let (out, _rx) = mpsc::channel(1);
        let req = {
            let (parts, ()) = http::Request::builder()
                .uri("/api/v1/pods?watch=1")
                .body(())
                .expect("request")
                .into_parts();
            Request::new(parts, Bytes::new(), Default::default())
        };
        let stream = Stream {
            info: pods,
            filter: Filter::from_request(&req, pods).expect("filter"),
            name: None,
            output: Output::Object,
            req: Request::new_like(&req),
            headers_sent: AtomicBool::new(false),
            out,
            raw: Some(Splicer::new(pods)),
            events: crate::metrics::Metrics::default().watch_events(pods),
        };
        let kv = |rev: i64, image: &str| KeyValue {
            key: "/registry/pods/default/web".into(),
            value: crate::registry::encode(
                pods,
                &json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"containers": [{"name": "web", "image": image}]}}),
            )
            .expect("encodes"),
            create_revision: 5,
            mod_revision: rev,
        };
        for event in [
            Event::Put { kv: kv(5, "a"), prev: None },
            Event::Put { kv: kv(6, "b"), prev: Some(kv(5, "a")) },
            Event::Delete { revision: 7, prev: kv(6, "b") },
        ] {
            let raw: Value =
                serde_json::from_slice(&stream.raw_line(&event).expect("raw")).expect("JSON");
            let (kind, object) = stream.translate(&event).expect("translates").expect("seen");
            assert_eq!(raw, json!({"type": kind, "object": object}));
        }
    }
}

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
use keelson_store::{Event, Revision};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::registry::{decode, directory};
use crate::request::Request;
use crate::rest::{Filter, read_page};
use crate::router::Target;
use crate::server::Response;
use crate::status::{ApiError, ApiResult, from_store};
use crate::{ApiServer, table};

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);
/// Upstream's default watch timeout is 30–60 minutes (`--min-request-timeout`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

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

/// Everything one watch needs to turn store events into wire events.
struct Stream {
    info: &'static ResourceInfo,
    filter: Filter,
    name: Option<String>,
    table: Option<Request>,
    out: mpsc::Sender<Bytes>,
}

impl Stream {
    fn matches(&self, object: &Value) -> bool {
        let name_ok = self
            .name
            .as_deref()
            .is_none_or(|n| object.pointer("/metadata/name").and_then(Value::as_str) == Some(n));
        name_ok && self.filter.matches(object)
    }

    /// Sends one event; `false` when the client has gone.
    async fn send(&self, kind: &str, object: &Value) -> bool {
        let object = match &self.table {
            Some(req) if kind != "BOOKMARK" && kind != "ERROR" => {
                table::render(self.info, std::slice::from_ref(object), None, req)
            }
            _ => object.clone(),
        };
        let mut line =
            serde_json::to_vec(&json!({ "type": kind, "object": object })).unwrap_or_default();
        line.push(b'\n');
        self.out.send(Bytes::from(line)).await.is_ok()
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
    let (initial, from) = if initial_state {
        let mut list_req = Request::new_like(req);
        list_req.query.remove("limit");
        list_req.query.remove("continue");
        list_req.query.remove("resourceVersionMatch");
        list_req.query.insert("resourceVersion".into(), "0".into());
        let page = read_page(api, &list_req, target).await?;
        (page.items, page.revision)
    } else {
        match rv {
            Some(rv) => (
                Vec::new(),
                rv.parse::<Revision>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version {rv:?}"))
                })?,
            ),
            None => (
                Vec::new(),
                api.store
                    .current_revision()
                    .await
                    .map_err(|e| from_store(e, info.group, info.plural, ""))?,
            ),
        }
    };
    let (out, rx) = mpsc::channel(64);
    let stream = Stream {
        info,
        filter,
        name: target.name.clone(),
        table: req.wants_table().then(|| Request::new_like(req)),
        out,
    };
    let store_watch = api.store.watch(&directory(info, target.namespace.as_deref()), from).await;
    tokio::spawn(async move {
        let _ = tokio::time::timeout(
            timeout,
            run(stream, initial, from, store_watch, bookmarks, send_initial == Some(true)),
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
    initial: Vec<Value>,
    from: Revision,
    store_watch: keelson_store::Result<keelson_store::Watch>,
    bookmarks: bool,
    initial_events_end: bool,
) {
    for object in initial.iter().filter(|o| stream.matches(o)) {
        if !stream.send("ADDED", object).await {
            return;
        }
    }
    if initial_events_end && !stream.bookmark(from, true).await {
        return;
    }
    let mut watch = match store_watch {
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
            event = watch.next() => match event {
                Some(Ok(event)) => {
                    last = event.revision();
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

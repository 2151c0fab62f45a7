//! Reads of collections: list pages (from the watch cache or the store, with `limit`,
//! `continue`, `resourceVersion` and `resourceVersionMatch`), selectors, and the plain
//! JSON lists written from the stored bytes. Shared by the list handler and the watch's
//! initial events.

use crate::ApiServer;
use crate::negotiation::{Output, cannot_transform, internal_type};
use crate::registry::selector::{FieldSelector, LabelSelector};
use crate::registry::strategy;
use crate::registry::{self, decode};
use crate::request::Request;
use crate::request::Target;
use crate::response::{Response, json_ordered, json_response};
use crate::status::{ApiError, ApiResult};
use http::StatusCode;
use keelson_api::ResourceInfo;
use keelson_store::ListOptions;
use serde_json::{Value, json};

/// Selectors of a list or watch.
pub struct Filter {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn from_request(req: &Request, info: &ResourceInfo) -> ApiResult<Self> {
        let supported = strategy::for_resource(info).field_selectors();
        Ok(Filter {
            labels: LabelSelector::parse(req.param("labelSelector").unwrap_or(""))?,
            fields: FieldSelector::parse(
                req.param("fieldSelector").unwrap_or(""),
                info.kind,
                &supported,
            )?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }
}

/// One page of a list, as the handlers and the watch's initial events need it.
pub struct Page {
    pub items: Vec<Value>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

/// Reads a page of `target`'s collection per the request's selectors, `limit`,
/// `continue`, `resourceVersion` and `resourceVersionMatch`.
pub async fn read_page(api: &ApiServer, req: &Request, target: &Target) -> ApiResult<Page> {
    let info = target.info;
    let filter = Filter::from_request(req, info)?;
    let mut items = Vec::new();
    let meta = scan(api, req, target, !filter.is_empty(), |kv| {
        let object = decode(info, kv)?;
        let matched = filter.matches(&object);
        if matched {
            items.push(object);
        }
        Ok(matched)
    })
    .await?;
    Ok(Page {
        items,
        revision: meta.revision,
        continue_token: meta.continue_token,
        remaining: meta.remaining,
    })
}

/// Where a scan of a collection ended.
pub struct PageMeta {
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

/// Walks `target`'s collection per the request's `limit`, `continue`, `resourceVersion`
/// and `resourceVersionMatch`, handing each stored object to `visit`, which says whether
/// it counts towards the limit (matched the selectors). `filtered` hides the remaining
/// count, which a filtered list cannot know.
async fn scan<F>(
    api: &ApiServer,
    req: &Request,
    target: &Target,
    filtered: bool,
    mut visit: F,
) -> ApiResult<PageMeta>
where
    F: FnMut(&keelson_store::KeyValue) -> ApiResult<bool>,
{
    let info = target.info;
    let dir = registry::directory(info, target.namespace.as_deref());
    let limit: usize = match req.param("limit") {
        None => 0,
        Some(l) => l.parse().map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
    };
    let current = api
        .store
        .current_revision()
        .await
        .map_err(|e| crate::status::from_store(e, info.group, info.plural, ""))?;
    let (mut start_after, mut revision) = match req.param("continue") {
        Some(token) => {
            if req.param("resourceVersion").is_some_and(|rv| rv != "0") {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            let (start, revision) = decode_continue(token)?;
            (Some(format!("{dir}{start}")), Some(revision))
        }
        None => (None, list_revision(req, current)?),
    };
    // A first page at the current or any revision: from the watch cache when it may.
    if start_after.is_none()
        && revision.is_none()
        && let Some(cache) = cached_list(api, req, info, &dir).await?
    {
        let (objects, revision) = cache.objects(&dir);
        return cached_page(&objects, revision, &dir, limit, filtered, visit);
    }
    let mut counted = 0;
    let mut continue_token = None;
    let mut remaining = None;
    let chunk = if limit == 0 { 1000 } else { limit.max(100) };
    'pages: loop {
        let options = ListOptions { start_after: start_after.clone(), limit: chunk, revision };
        let page = api.store.list(&dir, options).await.map_err(|e| match e {
            keelson_store::Error::Compacted { .. } if req.param("continue").is_some() => ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
            ),
            e => crate::status::from_store(e, info.group, info.plural, ""),
        })?;
        revision = Some(page.revision);
        let count = page.items.len();
        for (i, kv) in page.items.iter().enumerate() {
            start_after = Some(kv.key.clone());
            if visit(kv)? {
                counted += 1;
            }
            if limit > 0 && counted == limit {
                let left = page.remaining + (count - i - 1) as u64;
                if left > 0 {
                    let start = kv.key.strip_prefix(&dir).unwrap_or(&kv.key);
                    continue_token = Some(encode_continue(start, page.revision));
                    remaining = (!filtered).then_some(left);
                }
                break 'pages;
            }
        }
        if !page.more() {
            break;
        }
    }
    Ok(PageMeta { revision: revision.unwrap_or(current), continue_token, remaining })
}

/// A page of a list from the cache's objects at `revision`, as [`scan`] pages the store;
/// the pages after it come from the store at that revision.
fn cached_page<F>(
    objects: &[std::sync::Arc<keelson_store::KeyValue>],
    revision: i64,
    dir: &str,
    limit: usize,
    filtered: bool,
    mut visit: F,
) -> ApiResult<PageMeta>
where
    F: FnMut(&keelson_store::KeyValue) -> ApiResult<bool>,
{
    let mut counted = 0;
    for (i, kv) in objects.iter().enumerate() {
        if visit(kv)? {
            counted += 1;
        }
        let left = (objects.len() - i - 1) as u64;
        if limit > 0 && counted == limit && left > 0 {
            let start = kv.key.strip_prefix(dir).unwrap_or(&kv.key);
            return Ok(PageMeta {
                revision,
                continue_token: Some(encode_continue(start, revision)),
                remaining: (!filtered).then_some(left),
            });
        }
    }
    Ok(PageMeta { revision, continue_token: None, remaining: None })
}

/// The revision a list reads at: current for `""`/`"0"`/NotOlderThan, exactly `N` for
/// `resourceVersionMatch=Exact`.
pub(crate) fn list_revision(req: &Request, current: i64) -> ApiResult<Option<i64>> {
    let rv = req.param("resourceVersion");
    let parsed = match rv {
        None | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}")))?,
        ),
    };
    match (req.param("resourceVersionMatch"), parsed) {
        (Some("Exact"), Some(n)) => Ok(Some(n)),
        (Some("Exact"), None) => Err(ApiError::bad_request(
            "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"\" or \"0\"",
        )),
        (Some("NotOlderThan") | None, Some(n)) if n > current => Err(ApiError {
            code: StatusCode::GATEWAY_TIMEOUT,
            reason: crate::status::Reason::Timeout,
            message: format!("Too large resource version: {n}, current: {current}"),
            details: None,
        }),
        (Some("NotOlderThan") | None, _) => Ok(None),
        (Some(other), _) => Err(ApiError::bad_request(format!(
            "resourceVersionMatch: unsupported value {other:?}, supported values: \"Exact\", \"NotOlderThan\""
        ))),
    }
}

fn encode_continue(start: &str, revision: i64) -> String {
    use base64::Engine;
    let token = json!({ "v": "meta.k8s.io/v1", "rv": revision, "start": start });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

pub(crate) fn decode_continue(token: &str) -> ApiResult<(String, i64)> {
    use base64::Engine;
    let invalid = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    match (value["v"].as_str(), value["rv"].as_i64(), value["start"].as_str()) {
        (Some("meta.k8s.io/v1"), Some(rv), Some(start)) if rv > 0 && !start.contains("..") => {
            Ok((start.to_owned(), rv))
        }
        _ => Err(invalid()),
    }
}

pub async fn list(api: &ApiServer, req: &Request, target: &Target) -> ApiResult<Response> {
    let info = target.info;
    let output = req.output(info, false)?;
    if output == Output::Object && Filter::from_request(req, info)?.is_empty() {
        return list_raw(api, req, target).await;
    }
    let page = read_page(api, req, target).await?;
    let mut list_meta = json!({ "resourceVersion": page.revision.to_string() });
    if let Some(token) = &page.continue_token {
        list_meta["continue"] = json!(token);
    }
    if let Some(remaining) = page.remaining {
        list_meta["remainingItemCount"] = json!(remaining);
    }
    let list = list_as(info, req, output, page.items, list_meta)?;
    if info.is_custom() && output == Output::Object {
        // Unstructured lists are encoded as Go maps, in key order.
        return Ok(json_ordered(StatusCode::OK, &list, &crate::gojson::KEYS));
    }
    Ok(json_response(StatusCode::OK, &list))
}

/// A list's items in the negotiated representation (upstream's `transformResponseObject`
/// of a list, done after the list is read): the typed list, a Table, or a
/// `PartialObjectMetadataList`; one object's transform is not acceptable (406).
pub(crate) fn list_as(
    info: &ResourceInfo,
    req: &Request,
    output: Output,
    items: Vec<Value>,
    list_meta: Value,
) -> ApiResult<Value> {
    Ok(match output {
        Output::Table(version) => {
            crate::answer::table(info, &items, Some(list_meta), req, version, true)?
        }
        Output::Partial(_) => {
            let go = internal_type(info.group, info.kind, info.is_custom(), true);
            return Err(cannot_transform(format!(
                "you requested PartialObjectMetadata, but the requested object is a list ({go})"
            )));
        }
        Output::PartialList(version) => {
            let items: Vec<Value> =
                items.iter().map(|o| crate::table::partial_object_metadata(o, version)).collect();
            json!({ "kind": "PartialObjectMetadataList", "apiVersion": version.api_version(), "metadata": list_meta, "items": items })
        }
        Output::Object => {
            // Items of a typed list carry no apiVersion/kind, as upstream encodes them.
            let items: Vec<Value> = items
                .into_iter()
                .map(|mut o| {
                    if let Some(map) = o.as_object_mut() {
                        map.remove("apiVersion");
                        map.remove("kind");
                    }
                    o
                })
                .collect();
            json!({ "kind": info.list_kind(), "apiVersion": info.api_version(), "metadata": list_meta, "items": items })
        }
    })
}

/// The watch cache to serve a list's first page from, if it may: at "any" revision
/// (`resourceVersion=0`) always; for the consistent read (no `resourceVersion`) once it
/// has followed `dir` up to its last change in the store (upstream's
/// ConsistentListFromCache), when the store can tell that revision.
async fn cached_list(
    api: &ApiServer,
    req: &Request,
    info: &ResourceInfo,
    dir: &str,
) -> ApiResult<Option<std::sync::Arc<crate::cache::Cache>>> {
    if req.param("continue").is_some() {
        return Ok(None);
    }
    match req.param("resourceVersion") {
        Some("0") => Ok(api.caches.get(&info.storage_prefix()).await),
        None | Some("") => {
            let changed = api
                .store
                .changed_at(dir)
                .await
                .map_err(|e| crate::status::from_store(e, info.group, info.plural, ""))?;
            let Some(changed) = changed else { return Ok(None) };
            let Some(cache) = api.caches.get(&info.storage_prefix()).await else {
                return Ok(None);
            };
            Ok(cache.reached(changed, CONSISTENT_READ_PATIENCE).await.then_some(cache))
        }
        Some(_) => Ok(None),
    }
}

/// How long a consistent list waits for the watch cache before reading the store (as
/// upstream's 3 s).
const CONSISTENT_READ_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// A plain JSON list without selectors, written from the stored bytes: no object is
/// decoded whole (the hot path of informers and `kubectl get -o json`).
///
/// A built-in list starts with its metadata, as upstream's typed lists do, but its
/// revision is known only after the items are read: they are written after room left
/// for the head, which is then written into the room's end and the body sliced from
/// there, so nothing is copied. A custom resource's list is in key order (`apiVersion`,
/// `items`, `kind`, `metadata`), as upstream's unstructured lists.
async fn list_raw(api: &ApiServer, req: &Request, target: &Target) -> ApiResult<Response> {
    /// Room for the head: the kinds, the revision and a continue token (a key's worth).
    const HEAD_ROOM: usize = 4096;
    let info = target.info;
    let custom = info.is_custom();
    let mut body = if custom {
        format!(r#"{{"apiVersion":{},"items":["#, json!(info.api_version())).into_bytes()
    } else {
        vec![0; HEAD_ROOM]
    };
    let empty = body.len();
    let splicer = registry::Splicer::new(info);
    let write = |kv: &keelson_store::KeyValue| -> ApiResult<bool> {
        if body.len() > empty {
            body.push(b',');
        }
        // Custom resources' list items keep apiVersion and kind (unstructured lists).
        if !splicer.write(kv, custom, &mut body) {
            registry::write_list_item(info, kv, &mut body)?;
        }
        Ok(true)
    };
    let meta = scan(api, req, target, false, write).await?;
    let mut list_meta = json!({ "resourceVersion": meta.revision.to_string() });
    if let Some(token) = &meta.continue_token {
        list_meta["continue"] = json!(token);
    }
    if let Some(remaining) = meta.remaining {
        list_meta["remainingItemCount"] = json!(remaining);
    }
    if custom {
        body.extend_from_slice(
            format!(r#"],"kind":{},"metadata":"#, json!(info.list_kind())).as_bytes(),
        );
        body.extend_from_slice(list_meta.to_string().as_bytes());
        body.extend_from_slice(b"}\n");
        return Ok(crate::response::json_body(body));
    }
    let mut head = format!(
        r#"{{"kind":{},"apiVersion":{},"metadata":"#,
        json!(info.list_kind()),
        json!(info.api_version())
    )
    .into_bytes();
    crate::gojson::write(&mut head, &list_meta, &crate::gojson::LIST_META);
    head.extend_from_slice(br#","items":["#);
    body.extend_from_slice(b"]}\n");
    let body = match HEAD_ROOM.checked_sub(head.len()) {
        Some(start) => {
            body[start..HEAD_ROOM].copy_from_slice(&head);
            bytes::Bytes::from(body).slice(start..)
        }
        None => {
            head.extend_from_slice(&body[HEAD_ROOM..]);
            bytes::Bytes::from(head)
        }
    };
    Ok(crate::response::json_body(body))
}

//! The REST verbs on a resolved resource path (upstream's `endpoints/handlers`): get,
//! list, create, update, patch, delete, deletecollection, watch, with their query
//! parameters, status codes and response shapes.

use http::StatusCode;
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions as DeleteOptionsType;
use keelson_api::{ResourceInfo, Typed};
use keelson_store::ListOptions;
use serde_json::{Value, json};

use crate::registry::meta::{self, metadata, metadata_mut};
use crate::registry::selector::{FieldSelector, LabelSelector};
use crate::registry::strategy;
use crate::registry::typed::{BodyCheck, FieldValidation};
use crate::registry::{self, Place, decode, prepare_create, prepare_update, resource_version};
use crate::request::Request;
use crate::router::{Target, verb};
use crate::server::{Response, json_response};
use crate::status::{ApiError, ApiResult};
use crate::{ApiServer, patch, pods, scale, services, table, watch};

/// How often an unconditional write retries after losing a race.
const RETRIES: usize = 8;

pub async fn handle(api: &ApiServer, req: Request, target: Target) -> ApiResult<Response> {
    let watching = target.legacy_watch || req.flag("watch");
    let verb = verb(&req.method, &target, watching);
    let allowed = match &target.subresource {
        None => target.info.verbs.contains(&verb),
        Some(sub) => target
            .info
            .subresources
            .iter()
            .find(|s| s.name == sub.as_str())
            .is_some_and(|s| s.verbs.contains(&verb)),
    };
    if !allowed {
        return Err(ApiError::method_not_supported(target.info.group, target.info.plural, verb));
    }
    no_impossible_names(&target)?;
    let dry_run = match req.param("dryRun") {
        None => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "dryRun: unsupported value {other:?}, supported values: \"All\""
            )));
        }
    };
    let write =
        Write { dry_run, validation: FieldValidation::parse(req.param("fieldValidation"))? };
    match (verb, target.subresource.as_deref()) {
        ("watch", _) => watch::serve(api, &req, &target).await,
        ("list", None) => list(api, &req, &target).await,
        ("get", None | Some("status" | "approval")) => get(api, &req, &target).await,
        ("update", None | Some("status" | "approval")) => update(api, &req, &target, write).await,
        ("patch", None | Some("status" | "approval")) => patch(api, &req, &target, write).await,
        ("create", Some("binding")) => {
            pods::bind(api, &req, target.namespace.as_deref().unwrap_or(""), target.name.as_deref())
                .await
        }
        ("create", Some("eviction")) => {
            let (ns, name) =
                (target.namespace.as_deref().unwrap_or(""), target.name.as_deref().unwrap_or(""));
            pods::evict(api, &req, ns, name, dry_run).await
        }
        ("create", None) if target.info.group.is_empty() && target.info.plural == "bindings" => {
            pods::bind(api, &req, target.namespace.as_deref().unwrap_or(""), None).await
        }
        ("create", None)
            if target.info.group == "authentication.k8s.io"
                && target.info.plural == "selfsubjectreviews" =>
        {
            Ok(self_subject_review(&req))
        }
        ("create", Some("token")) => {
            crate::authn::serviceaccount::token_request(api, &req, &target).await
        }
        ("create", None)
            if target.info.group == "authentication.k8s.io"
                && target.info.plural == "tokenreviews" =>
        {
            crate::authn::serviceaccount::token_review(api, &req).await
        }
        ("create", None) if target.info.group == "authorization.k8s.io" => {
            crate::auth::reviews::answer(api, &req, &target).await
        }
        ("create", None) if !is_stored(target.info) => Err(ApiError::method_not_supported(
            target.info.group,
            target.info.plural,
            "create (not served yet)",
        )),
        ("create", None) if crate::crd::terminating(target.info) => {
            // Upstream refuses new objects while the CRD's cleanup deletes them.
            Err(ApiError::method_not_supported(target.info.group, target.info.plural, "create"))
        }
        ("create", None) => create(api, &req, &target, write).await,
        ("update", Some("finalize")) => finalize_namespace(api, &req, &target, dry_run).await,
        ("get", Some("scale")) => scale::get(api, &target).await,
        ("update" | "patch", Some("scale")) => scale::write(api, &req, &target, dry_run).await,
        ("delete", None) => delete(api, &req, &target, dry_run).await,
        ("deletecollection", None) => delete_collection(api, &req, &target, dry_run).await,
        (verb, Some(sub)) => Err(ApiError::method_not_supported(
            target.info.group,
            &format!("{}/{sub}", target.info.plural),
            verb,
        )),
        (verb, None) => {
            Err(ApiError::method_not_supported(target.info.group, target.info.plural, verb))
        }
    }
}

/// How a write is to be done: for real or not, and how strictly its body is checked.
#[derive(Clone, Copy)]
struct Write {
    dry_run: bool,
    validation: FieldValidation,
}

/// The checks of a JSON or YAML object body: the mode asked for, and duplicate fields.
fn body_check(req: &Request, write: Write) -> BodyCheck {
    let json = matches!(
        req.header(http::header::CONTENT_TYPE).split(';').next().unwrap_or("").trim(),
        "" | "application/json"
    );
    let duplicates = if json { registry::typed::duplicate_fields(&req.body) } else { Vec::new() };
    BodyCheck { mode: write.validation, duplicates }
}

/// Adds upstream's `Warning: 299 - "…"` headers.
fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        let text = format!("299 - \"{}\"", warning.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(value) = http::HeaderValue::from_str(&text) {
            response.headers_mut().append(http::header::WARNING, value);
        }
    }
    response
}

/// `kubectl auth whoami`: who the server takes the caller for.
fn self_subject_review(req: &Request) -> Response {
    let user = &req.user;
    let mut info = json!({ "username": user.name, "groups": user.groups });
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    json_response(
        StatusCode::CREATED,
        &json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": { "creationTimestamp": null },
            "status": { "userInfo": info },
        }),
    )
}

/// Whether objects of the resource are kept (the review kinds, bindings and token
/// requests only act).
fn is_stored(info: &ResourceInfo) -> bool {
    !matches!(
        (info.group, info.plural),
        ("", "bindings")
            | ("authentication.k8s.io", "tokenreviews" | "selfsubjectreviews")
            | (
                "authorization.k8s.io",
                "subjectaccessreviews"
                    | "selfsubjectaccessreviews"
                    | "localsubjectaccessreviews"
                    | "selfsubjectrulesreviews"
            )
    )
}

/// A namespace or name in the path that no object can have — the store's keys hold no
/// NUL — names nothing: 404 before any store call, as upstream finds nothing there (a
/// create into such a namespace finds no namespace).
fn no_impossible_names(target: &Target) -> ApiResult<()> {
    let impossible = |s: &str| s.contains('\0');
    if let Some(namespace) = target.namespace.as_deref().filter(|ns| impossible(ns)) {
        return Err(ApiError::not_found("", "namespaces", namespace));
    }
    match target.name.as_deref() {
        Some(name) if impossible(name) => {
            Err(ApiError::not_found(target.info.group, target.info.plural, name))
        }
        _ => Ok(()),
    }
}

/// `PUT /api/v1/namespaces/{name}/finalize`: replaces the namespace's `spec.finalizers`;
/// a namespace being deleted that has none left is removed.
async fn finalize_namespace(
    api: &ApiServer,
    req: &Request,
    target: &Target,
    dry_run: bool,
) -> ApiResult<Response> {
    let body = req.json_body()?;
    registry::typed::check_shape(target.info, &body)?;
    let place = place(target);
    for _ in 0..RETRIES {
        let (mut namespace, revision) = api.objects.get(place).await?;
        namespace["spec"]["finalizers"] = body["spec"]["finalizers"].clone();
        if namespace["spec"]["finalizers"].is_null() {
            namespace["spec"]["finalizers"] = json!([]);
        }
        let done = namespace["spec"]["finalizers"].as_array().is_none_or(Vec::is_empty)
            && metadata(&namespace)
                .get("finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
            && metadata(&namespace).contains_key("deletionTimestamp");
        let result = if done {
            api.objects.remove(place, revision, dry_run).await.map(|()| namespace)
        } else {
            api.objects.replace(place, namespace, revision, dry_run).await
        };
        match result {
            Ok(namespace) => return Ok(respond(req, target.info, StatusCode::OK, &namespace)),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::modified("", "namespaces", place.name))
}

fn is_service(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.plural == "services"
}

pub fn place<'a>(target: &'a Target) -> Place<'a> {
    Place {
        info: target.info,
        namespace: target.namespace.as_deref(),
        name: target.name.as_deref().unwrap_or(""),
    }
}

fn respond(req: &Request, info: &ResourceInfo, code: StatusCode, object: &Value) -> Response {
    if req.wants_table() {
        return json_response(code, &table::render(info, std::slice::from_ref(object), None, req));
    }
    json_response(code, object)
}

async fn get(api: &ApiServer, req: &Request, target: &Target) -> ApiResult<Response> {
    if !req.wants_table() {
        // The stored bytes, stamped, when they allow it: no decoding and encoding.
        let kv = api.objects.get_raw(place(target)).await?;
        let mut body = Vec::new();
        if registry::Splicer::new(target.info).write(&kv, true, &mut body) {
            return Ok(crate::server::json_bytes(body));
        }
        return Ok(respond(req, target.info, StatusCode::OK, &registry::decode(target.info, &kv)?));
    }
    let (object, _) = api.objects.get(place(target)).await?;
    Ok(respond(req, target.info, StatusCode::OK, &object))
}

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

async fn list(api: &ApiServer, req: &Request, target: &Target) -> ApiResult<Response> {
    let info = target.info;
    if !req.wants_table()
        && !req.wants_metadata_only()
        && Filter::from_request(req, info)?.is_empty()
    {
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
    if req.wants_table() {
        return Ok(json_response(
            StatusCode::OK,
            &table::render(info, &page.items, Some(list_meta), req),
        ));
    }
    if req.wants_metadata_only() {
        let items: Vec<Value> = page
            .items
            .iter()
            .map(|o| json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata(o) }))
            .collect();
        return Ok(json_response(
            StatusCode::OK,
            &json!({ "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "items": items }),
        ));
    }
    // Items of a typed list carry no apiVersion/kind, as upstream encodes them.
    let items: Vec<Value> = page
        .items
        .into_iter()
        .map(|mut o| {
            if let Some(map) = o.as_object_mut() {
                map.remove("apiVersion");
                map.remove("kind");
            }
            o
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "kind": info.list_kind(), "apiVersion": info.api_version(), "metadata": list_meta, "items": items }),
    ))
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
async fn list_raw(api: &ApiServer, req: &Request, target: &Target) -> ApiResult<Response> {
    let info = target.info;
    // Items first and list metadata last (JSON clients do not care about key order), so
    // the body is written once, in place.
    let mut body = format!(
        r#"{{"kind":"{}","apiVersion":"{}","items":["#,
        info.list_kind(),
        info.api_version()
    )
    .into_bytes();
    let empty = body.len();
    let splicer = registry::Splicer::new(info);
    let write = |kv: &keelson_store::KeyValue| -> ApiResult<bool> {
        if body.len() > empty {
            body.push(b',');
        }
        // Custom resources' list items keep apiVersion and kind (unstructured lists).
        if !splicer.write(kv, info.is_custom(), &mut body) {
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
    body.extend_from_slice(b"],\"metadata\":");
    body.extend_from_slice(list_meta.to_string().as_bytes());
    body.push(b'}');
    Ok(crate::server::json_bytes(body))
}

async fn create(
    api: &ApiServer,
    req: &Request,
    target: &Target,
    write: Write,
) -> ApiResult<Response> {
    if target.name.is_some() {
        return Err(ApiError::method_not_supported(
            target.info.group,
            target.info.plural,
            "create",
        ));
    }
    create_object(api, req, target, write, req.json_body()?, false).await
}

/// The manager a write is recorded under: `?fieldManager=`, else upstream's default
/// from the User-Agent.
pub fn field_manager(req: &Request) -> String {
    match req.param("fieldManager") {
        Some(manager) if !manager.is_empty() => manager.to_owned(),
        _ => crate::apply::default_manager(req.header(http::header::USER_AGENT)),
    }
}

fn is_apply(req: &Request) -> bool {
    req.method == http::Method::PATCH
        && req.header(http::header::CONTENT_TYPE).split(';').next().unwrap_or("").trim()
            == "application/apply-patch+yaml"
}

/// Creates `body` in the target's collection; `applied` bodies carry their managed
/// fields already.
async fn create_object(
    api: &ApiServer,
    req: &Request,
    target: &Target,
    write: Write,
    body: Value,
    applied: bool,
) -> ApiResult<Response> {
    let info = target.info;
    if info.namespaced() && target.namespace.is_none() {
        return Err(ApiError::path_not_found());
    }
    let mut warnings = Vec::new();
    let mut body = body;
    strategy::for_resource(info).set_creator(&mut body, &req.user);
    let object = prepare_create(
        info,
        target.namespace.as_deref(),
        body,
        &body_check(req, write),
        &mut warnings,
    )?;
    let name = meta::name(&object).unwrap_or_default().to_owned();
    let mut object = object;
    let admission = crate::admission::Attributes {
        user: &req.user,
        info,
        namespace: target.namespace.as_deref().unwrap_or(""),
        name: &name,
        subresource: "",
        operation: crate::admission::Operation::Create,
        old: None,
        dry_run: write.dry_run,
    };
    warnings.extend(crate::admission::admit(api, &admission, &mut object).await?);
    if !applied {
        crate::apply::track_update(info, "", &field_manager(req), None, &mut object);
    }
    crate::auth::escalation::check(api, &req.user, info, None, &object).await?;
    let place = Place { info, namespace: target.namespace.as_deref(), name: &name };
    let claims = if is_service(info) {
        Some(services::allocate(api, &mut object, write.dry_run).await?)
    } else {
        None
    };
    let created = match api.objects.create(place, object, write.dry_run).await {
        Ok(created) => created,
        Err(e) => {
            if let Some(claims) = claims {
                services::release(api, claims).await;
            }
            return Err(e);
        }
    };
    Ok(with_warnings(respond(req, info, StatusCode::CREATED, &created), &warnings))
}

async fn update(
    api: &ApiServer,
    req: &Request,
    target: &Target,
    write: Write,
) -> ApiResult<Response> {
    let body = req.json_body()?;
    let check = body_check(req, write);
    guaranteed_update(api, req, target, write, |_| Ok((body.clone(), check.clone()))).await
}

/// Upstream's `GuaranteedUpdate`: read the stored object, compute the new one from it,
/// write it if nothing changed in between, and start again after a lost race — unless
/// the client named the resourceVersion it expects.
async fn guaranteed_update<F>(
    api: &ApiServer,
    req: &Request,
    target: &Target,
    write: Write,
    mut next: F,
) -> ApiResult<Response>
where
    F: FnMut(&Value) -> ApiResult<(Value, BodyCheck)>,
{
    let place = place(target);
    // The first attempt starts from the watch cache's copy, as upstream's does: the write
    // is conditional on its revision, so a stale copy only costs a retry from the store.
    let mut cached = api
        .caches
        .ready(&target.info.storage_prefix())
        .and_then(|cache| cache.get(&place.key()))
        .and_then(|kv| Some((registry::decode(target.info, &kv).ok()?, kv.mod_revision)));
    for _ in 0..RETRIES {
        let from_cache = cached.is_some();
        let (old, revision) = match cached.take() {
            Some(found) => found,
            None => api.objects.get(place).await?,
        };
        let (body, check) = next(&old)?;
        let wanted = resource_version(&body);
        if wanted.is_some_and(|w| w != revision) {
            if from_cache {
                continue;
            }
            return Err(ApiError::modified(target.info.group, target.info.plural, place.name));
        }
        let mut warnings = Vec::new();
        let subresource = target.subresource.as_deref();
        let mut object =
            prepare_update(target.info, &old, body, subresource, &check, &mut warnings)?;
        let admission = crate::admission::Attributes {
            user: &req.user,
            info: target.info,
            namespace: target.namespace.as_deref().unwrap_or(""),
            name: place.name,
            subresource: subresource.unwrap_or(""),
            operation: crate::admission::Operation::Update,
            old: Some(&old),
            dry_run: write.dry_run,
        };
        warnings.extend(crate::admission::admit(api, &admission, &mut object).await?);
        if !is_apply(req) {
            let manager = field_manager(req);
            let sub = subresource.unwrap_or("");
            crate::apply::track_update(target.info, sub, &manager, Some(&old), &mut object);
        }
        crate::auth::escalation::check(api, &req.user, target.info, Some(&old), &object).await?;
        match write_update(api, place, &old, object, revision, write.dry_run).await {
            Err(e) if e.is_conflict() && (wanted.is_none() || from_cache) => continue,
            Ok((code, object)) => {
                return Ok(with_warnings(respond(req, target.info, code, &object), &warnings));
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::modified(target.info.group, target.info.plural, place.name))
}

/// Writes an updated object; an object being deleted whose last finalizer went away is
/// deleted instead.
async fn write_update(
    api: &ApiServer,
    place: Place<'_>,
    old: &Value,
    mut object: Value,
    revision: i64,
    dry_run: bool,
) -> ApiResult<(StatusCode, Value)> {
    let service = is_service(place.info);
    let finalizing = metadata(&object).contains_key("deletionTimestamp")
        && metadata(&object).get("finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty)
        && metadata(&object).get("deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0)
            == 0;
    if finalizing {
        api.objects.remove(place, revision, dry_run).await?;
        if service && !dry_run {
            services::release_service(api, old).await;
        }
        return Ok((StatusCode::OK, object));
    }
    let claims = if service {
        Some(services::reallocate(api, old, &mut object, dry_run).await?)
    } else {
        None
    };
    match api.objects.replace(place, object, revision, dry_run).await {
        Ok(updated) => {
            if service && !dry_run {
                services::release_dropped(api, old, &updated).await;
            }
            Ok((StatusCode::OK, updated))
        }
        Err(e) => {
            if let Some(claims) = claims {
                services::release(api, claims).await;
            }
            Err(e)
        }
    }
}

async fn patch(
    api: &ApiServer,
    req: &Request,
    target: &Target,
    write: Write,
) -> ApiResult<Response> {
    if is_apply(req) {
        return apply(api, req, target, write).await;
    }
    let content_type =
        req.header(http::header::CONTENT_TYPE).split(';').next().unwrap_or("").trim().to_owned();
    let kind = patch::Kind::from_content_type(&content_type)?;
    if kind == patch::Kind::Strategic && target.info.is_custom() {
        // Custom resources have no patch strategies (upstream's 415).
        return Err(ApiError {
            code: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            reason: crate::status::Reason::UnsupportedMediaType,
            message: "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
            details: None,
        });
    }
    let check = BodyCheck { mode: write.validation, duplicates: Vec::new() };
    guaranteed_update(api, req, target, write, |old| {
        let info = target.info;
        let root = patch::root_type(info.group, info.version, info.kind);
        Ok((patch::apply(kind, info, root, old, &req.body)?, check.clone()))
    })
    .await
}

/// Server-side apply (`PATCH` with `application/apply-patch+yaml`): the applied
/// configuration merged into the live object as `fieldManager` (created if missing).
async fn apply(
    api: &ApiServer,
    req: &Request,
    target: &Target,
    write: Write,
) -> ApiResult<Response> {
    let info = target.info;
    let manager = match req.param("fieldManager") {
        Some(manager) if !manager.is_empty() => manager.to_owned(),
        _ => return Err(ApiError::bad_request("fieldManager is required for apply requests")),
    };
    let force = match req.param("force") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(ApiError::bad_request(format!("invalid force {other:?}"))),
    };
    let applied = req.json_body()?;
    registry::check_type(info, &applied)?;
    // The configuration must fit the type before it is merged into the live object.
    registry::typed::check_shape(info, &applied)?;
    let (api_version, kind) = (applied["apiVersion"].as_str(), applied["kind"].as_str());
    let subresource = target.subresource.as_deref().unwrap_or("");
    if api_version.is_none_or(str::is_empty) || kind.is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(
            "apiVersion and kind must be set in an apply configuration",
        ));
    }
    let name = target.name.as_deref().unwrap_or("");
    let given = meta::name(&applied).unwrap_or("");
    if given != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    match api.objects.get(place(target)).await {
        Err(e) if e.code == StatusCode::NOT_FOUND && subresource.is_empty() => {
            let merged = crate::apply::apply(info, "", &manager, force, None, &applied)?;
            let collection = Target {
                info,
                namespace: target.namespace.clone(),
                name: None,
                subresource: None,
                legacy_watch: false,
            };
            create_object(api, req, &collection, write, merged, true).await
        }
        Err(e) => Err(e),
        Ok(_) => {
            let check = BodyCheck { mode: write.validation, duplicates: Vec::new() };
            guaranteed_update(api, req, target, write, |old| {
                let merged =
                    crate::apply::apply(info, subresource, &manager, force, Some(old), &applied)?;
                Ok((merged, check.clone()))
            })
            .await
        }
    }
}

/// `DeleteOptions`, from the body or the query.
struct DeleteOptions {
    grace_period: Option<i64>,
    propagation: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
}

impl DeleteOptions {
    fn from_request(req: &Request) -> ApiResult<Self> {
        let body = if req.body.is_empty() {
            json!({})
        } else {
            registry::typed::decode_body(
                Typed::of::<DeleteOptionsType>(),
                "meta.k8s.io",
                "v1",
                "DeleteOptions",
                &req.json_body()?,
            )?
        };
        Self::from_value(&body, Some(req))
    }

    /// From a `DeleteOptions` object, falling back to the query for what it lacks.
    fn from_value(body: &Value, req: Option<&Request>) -> ApiResult<Self> {
        let param = |name: &str| req.and_then(|r| r.param(name));
        let grace_period = match body.get("gracePeriodSeconds").and_then(Value::as_i64) {
            Some(g) => Some(g),
            None => param("gracePeriodSeconds").and_then(|g| g.parse().ok()),
        };
        let propagation = body
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| param("propagationPolicy").map(str::to_owned));
        if let Some(p) = &propagation
            && !["Orphan", "Background", "Foreground"].contains(&p.as_str())
        {
            return Err(ApiError::invalid(
                "",
                "DeleteOptions",
                "",
                vec![crate::status::Cause {
                    reason: "FieldValueNotSupported",
                    message: format!(
                        "Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                    ),
                    field: "propagationPolicy".into(),
                }],
            ));
        }
        let orphan = body
            .get("orphanDependents")
            .and_then(Value::as_bool)
            .or_else(|| param("orphanDependents").map(|o| o == "true"));
        let propagation = propagation
            .or_else(|| orphan.map(|o| if o { "Orphan".into() } else { "Background".into() }));
        Ok(DeleteOptions {
            grace_period,
            propagation,
            uid: body.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_owned),
            resource_version: body
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

/// Deletes one object with `DeleteOptions` given as JSON (for evictions).
pub async fn delete_with_options(
    api: &ApiServer,
    place: Place<'_>,
    options: &Value,
    dry_run: bool,
) -> ApiResult<(StatusCode, Value)> {
    let options = DeleteOptions::from_value(options, None)?;
    delete_one(api, place, &options, dry_run).await
}

async fn delete(
    api: &ApiServer,
    req: &Request,
    target: &Target,
    dry_run: bool,
) -> ApiResult<Response> {
    let name = target.name.as_deref().unwrap_or("");
    let admission = crate::admission::Attributes {
        user: &req.user,
        info: target.info,
        namespace: target.namespace.as_deref().unwrap_or(""),
        name,
        subresource: "",
        operation: crate::admission::Operation::Delete,
        old: None,
        dry_run,
    };
    let warnings = crate::admission::admit_delete(api, &admission).await?;
    let options = DeleteOptions::from_request(req)?;
    let (code, object) = delete_one(api, place(target), &options, dry_run).await?;
    let strategy = strategy::for_resource(target.info);
    if code == StatusCode::ACCEPTED || strategy.return_deleted_object() {
        return Ok(with_warnings(respond(req, target.info, code, &object), &warnings));
    }
    let mut details = json!({ "name": place(target).name, "kind": target.info.plural, "uid": metadata(&object).get("uid") });
    if !target.info.group.is_empty() {
        details["group"] = json!(target.info.group);
    }
    let status = json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details });
    Ok(with_warnings(json_response(code, &status), &warnings))
}

/// Deletes one object, or marks it for deletion: 200 and the object when it is gone,
/// 202 and the object when finalizers or a grace period hold it.
async fn delete_one(
    api: &ApiServer,
    place: Place<'_>,
    options: &DeleteOptions,
    dry_run: bool,
) -> ApiResult<(StatusCode, Value)> {
    let info = place.info;
    for _ in 0..RETRIES {
        let (mut object, revision) = api.objects.get(place).await?;
        let meta = metadata(&object);
        if let Some(uid) = &options.uid
            && meta.get("uid").and_then(Value::as_str) != Some(uid.as_str())
        {
            return Err(ApiError::conflict(
                info.group,
                info.plural,
                place.name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta.get("uid").and_then(Value::as_str).unwrap_or("")
                ),
            ));
        }
        if let Some(rv) = &options.resource_version
            && *rv != revision.to_string()
        {
            return Err(ApiError::conflict(
                info.group,
                info.plural,
                place.name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {revision}"
                ),
            ));
        }
        let mut finalizers: Vec<Value> =
            meta.get("finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
        let policy_finalizer = match options.propagation.as_deref() {
            Some("Orphan") => Some("orphan"),
            Some("Foreground") => Some("foregroundDeletion"),
            _ => None,
        };
        if let Some(f) = policy_finalizer
            && !finalizers.iter().any(|x| x == f)
        {
            finalizers.push(json!(f));
        }
        let grace = graceful_seconds(info, &object, options.grace_period);
        let namespace_finalizers = info.group.is_empty()
            && info.plural == "namespaces"
            && object["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if finalizers.is_empty() && grace == 0 && !namespace_finalizers {
            match api.objects.remove(place, revision, dry_run).await {
                Err(e) if e.is_conflict() && options.resource_version.is_none() => continue,
                Err(e) => return Err(e),
                Ok(()) => {
                    if is_service(info) && !dry_run {
                        services::release_service(api, &object).await;
                    }
                    return Ok((StatusCode::OK, object));
                }
            }
        }
        if meta.contains_key("deletionTimestamp") {
            // Already being deleted: nothing more to record.
            return Ok((StatusCode::ACCEPTED, object));
        }
        let meta = metadata_mut(&mut object);
        meta.insert("deletionTimestamp".into(), json!(deletion_time(grace)));
        meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
        if !finalizers.is_empty() {
            meta.insert("finalizers".into(), Value::Array(finalizers));
        }
        if namespace_finalizers {
            object["status"]["phase"] = json!("Terminating");
        }
        match api.objects.replace(place, object, revision, dry_run).await {
            Err(e) if e.is_conflict() && options.resource_version.is_none() => continue,
            Err(e) => return Err(e),
            Ok(object) => return Ok((StatusCode::ACCEPTED, object)),
        }
    }
    Err(ApiError::modified(info.group, info.plural, place.name))
}

/// The grace period a deletion waits for: only pods bound to a node have one (their
/// kubelet confirms the end); everything else goes at once.
fn graceful_seconds(info: &ResourceInfo, object: &Value, requested: Option<i64>) -> i64 {
    if !(info.group.is_empty() && info.plural == "pods") {
        return 0;
    }
    let bound = object["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
    let finished = matches!(object["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
    if !bound || finished {
        return 0;
    }
    requested
        .or_else(|| object["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30)
        .max(0)
}

fn deletion_time(grace: i64) -> String {
    use keelson_api::k8s_openapi::jiff::SignedDuration;
    let now = meta::now_timestamp();
    meta::format_time(now.checked_add(SignedDuration::from_secs(grace)).unwrap_or(now))
}

async fn delete_collection(
    api: &ApiServer,
    req: &Request,
    target: &Target,
    dry_run: bool,
) -> ApiResult<Response> {
    let info = target.info;
    let options = DeleteOptions::from_request(req)?;
    let page = read_page(api, req, target).await?;
    let mut deleted = Vec::new();
    for object in page.items {
        let name = meta::name(&object).unwrap_or_default().to_owned();
        let namespace = meta::str_field(&object, "namespace").map(str::to_owned);
        let place = Place { info, namespace: namespace.as_deref(), name: &name };
        match delete_one(api, place, &options, dry_run).await {
            Ok((_, object)) => deleted.push(object),
            // Gone in the meantime: that is what was asked.
            Err(e) if e.code == StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "kind": info.list_kind(), "apiVersion": info.api_version(), "metadata": { "resourceVersion": page.revision.to_string() }, "items": deleted }),
    ))
}

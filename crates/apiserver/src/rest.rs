//! The REST verbs on a resolved resource path (upstream's `endpoints/handlers`): get,
//! list, create, update, patch, delete, deletecollection, watch, with their query
//! parameters, status codes and response shapes.

use http::StatusCode;
use keelson_api::ResourceInfo;
use serde_json::{Value, json};

use crate::answer::respond;
use crate::meta::{self, metadata};
use crate::negotiation::Output;
use crate::registry::strategy;
use crate::registry::typed::{BodyCheck, FieldValidation};
use crate::registry::{self, Place};
use crate::request::Request;
use crate::request::Target;
use crate::response::{Response, json_response, with_warnings};
use crate::status::{ApiError, ApiResult};
use crate::storage::{self, DeleteOptions, Writer};
use crate::{ApiServer, list, patch, subresources, watch};

pub async fn handle(api: &ApiServer, req: Request, target: Target) -> ApiResult<Response> {
    // Every answer from a deprecated custom resource version says so, as upstream's.
    let deprecated = crate::crd::warning(target.info);
    let response = serve(api, req, target).await?;
    Ok(match deprecated {
        Some(warning) => with_warnings(response, &[warning.to_owned()]),
        None => response,
    })
}

async fn serve(api: &ApiServer, req: Request, target: Target) -> ApiResult<Response> {
    let watching = target.legacy_watch || req.flag("watch");
    let verb = target.verb(&req.method, watching);
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
    // 406 before anything is done, as upstream negotiates first.
    req.output(target.info, watching)?;
    // The options of create, update and patch come from the query alone; a delete's from
    // its body when it has one (`delete_options`).
    let dry_run = match verb {
        "create" => Some("CreateOptions"),
        "update" => Some("UpdateOptions"),
        "patch" => Some("PatchOptions"),
        _ => None,
    };
    let dry_run = match dry_run {
        Some(kind) => storage::dry_run(kind, req.param("dryRun").as_slice())?,
        None => false,
    };
    let write =
        Write { dry_run, validation: FieldValidation::parse(req.param("fieldValidation"))? };
    if let Some(handler) = subresources::find(target.info, target.subresource.as_deref(), verb) {
        return handler(api, &req, &target, dry_run).await;
    }
    match (verb, target.subresource.as_deref()) {
        ("watch", _) => watch::serve(api, &req, &target).await,
        ("list", None) => list::list(api, &req, &target).await,
        ("get", sub) if is_generic(sub) => get(api, &req, &target).await,
        ("update", sub) if is_generic(sub) => update(api, &req, &target, write).await,
        ("patch", sub) if is_generic(sub) => patch(api, &req, &target, write).await,
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
        ("delete", None) => delete(api, &req, &target).await,
        ("deletecollection", None) => delete_collection(api, &req, &target).await,
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

/// The object itself, or a subresource read and written as the whole object through
/// the generic store, the strategy's `prepare_update` deciding what it may change.
fn is_generic(subresource: Option<&str>) -> bool {
    matches!(subresource, None | Some("status" | "approval" | "ephemeralcontainers" | "resize"))
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

async fn get(api: &ApiServer, req: &Request, target: &Target) -> ApiResult<Response> {
    if req.output(target.info, false)? == Output::Object {
        // The stored bytes, stamped, when they allow it: no decoding and encoding.
        let kv = api.objects.get_raw(Place::of(target)).await?;
        let mut body = Vec::new();
        if registry::Splicer::new(target.info).write(&kv, true, &mut body) {
            return Ok(crate::response::json_bytes(body));
        }
        return Ok(respond(req, target.info, StatusCode::OK, &registry::decode(target.info, &kv)?));
    }
    let (object, _) = api.objects.get(Place::of(target)).await?;
    Ok(respond(req, target.info, StatusCode::OK, &object))
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
    let body = req.object_body(target.info.kind)?;
    create_object(api, req, target, write, body, false).await
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
    let writer = writer(req, write, applied);
    let namespace = target.namespace.as_deref();
    let check = body_check(req, write);
    let (created, warnings) = storage::create(api, &writer, info, namespace, body, &check).await?;
    Ok(with_warnings(respond(req, info, StatusCode::CREATED, &created), &warnings))
}

/// Who writes and how: server-side apply records its managed fields itself.
fn writer(req: &Request, write: Write, applied: bool) -> Writer<'_> {
    Writer {
        user: &req.user,
        manager: (!applied).then(|| crate::apply::field_manager(req)),
        dry_run: write.dry_run,
    }
}

async fn update(
    api: &ApiServer,
    req: &Request,
    target: &Target,
    write: Write,
) -> ApiResult<Response> {
    let body = req.object_body(target.info.kind)?;
    let check = body_check(req, write);
    guaranteed_update(api, req, target, write, |_| Ok((body.clone(), check.clone()))).await
}

/// An update through the generic store, answered as the request asks.
async fn guaranteed_update<F>(
    api: &ApiServer,
    req: &Request,
    target: &Target,
    write: Write,
    next: F,
) -> ApiResult<Response>
where
    F: FnMut(&Value) -> ApiResult<(Value, BodyCheck)>,
{
    let writer = writer(req, write, is_apply(req));
    let subresource = target.subresource.as_deref();
    let (code, object, warnings) =
        storage::update(api, &writer, Place::of(target), subresource, next).await?;
    Ok(with_warnings(respond(req, target.info, code, &object), &warnings))
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
    match api.objects.get(Place::of(target)).await {
        Err(e) if e.code == StatusCode::NOT_FOUND && subresource.is_empty() => {
            let merged = crate::apply::apply(info, "", &manager, force, None, &applied)?;
            check_name(target, &merged)?;
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
                check_name(target, &merged)?;
                Ok((merged, check.clone()))
            })
            .await
        }
    }
}

/// Upstream's `checkName` on a patched object: its name (and namespace, if it has one)
/// must be the URL's. Checked after the merge, so an apply configuration may leave the
/// name out for an object that has one.
fn check_name(target: &Target, object: &Value) -> ApiResult<()> {
    let url_name = target.name.as_deref().unwrap_or("");
    let name = meta::name(object).unwrap_or("");
    if name != url_name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({url_name})"
        )));
    }
    let namespace = metadata(object).get("namespace").and_then(Value::as_str).unwrap_or("");
    match target.namespace.as_deref() {
        Some(url_namespace) if !namespace.is_empty() && namespace != url_namespace => {
            Err(ApiError::bad_request(format!(
                "the namespace of the object ({namespace}) does not match the namespace on the URL ({url_namespace})"
            )))
        }
        _ => Ok(()),
    }
}

/// The request's `DeleteOptions`: its body if it has one, else its query (upstream reads
/// one or the other, never both).
fn delete_options(req: &Request) -> ApiResult<DeleteOptions> {
    if req.body.is_empty() {
        DeleteOptions::from_query(|name| req.param(name))
    } else {
        DeleteOptions::from_value(&DeleteOptions::decode(&req.json_body()?)?)
    }
}

async fn delete(api: &ApiServer, req: &Request, target: &Target) -> ApiResult<Response> {
    let name = target.name.as_deref().unwrap_or("");
    let options = delete_options(req)?;
    let admission = crate::admission::Attributes {
        user: &req.user,
        info: target.info,
        namespace: target.namespace.as_deref().unwrap_or(""),
        name,
        subresource: "",
        operation: crate::admission::Operation::Delete,
        old: None,
        dry_run: options.dry_run,
    };
    let warnings = crate::admission::admit_delete(api, &admission).await?;
    let (code, object) = storage::delete(api, Place::of(target), &options).await?;
    let strategy = strategy::for_resource(target.info);
    if code == StatusCode::ACCEPTED || strategy.return_deleted_object() {
        return Ok(with_warnings(respond(req, target.info, code, &object), &warnings));
    }
    let mut details = json!({ "name": Place::of(target).name, "kind": target.info.plural, "uid": metadata(&object).get("uid") });
    if !target.info.group.is_empty() {
        details["group"] = json!(target.info.group);
    }
    let status = json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details });
    Ok(with_warnings(json_response(code, &status), &warnings))
}

async fn delete_collection(api: &ApiServer, req: &Request, target: &Target) -> ApiResult<Response> {
    let info = target.info;
    let options = delete_options(req)?;
    let page = list::read_page(api, req, target).await?;
    let deleted = storage::delete_each(api, info, page.items, &options).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "kind": info.list_kind(), "apiVersion": info.api_version(), "metadata": { "resourceVersion": page.revision.to_string() }, "items": deleted }),
    ))
}

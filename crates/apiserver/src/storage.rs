//! Upstream's `genericregistry.Store`: what create, update and delete mean for every
//! resource — preparation by the resource's strategy, admission, managed fields, the
//! escalation check, conditional writes retried after a lost race, graceful deletion,
//! finalizers and propagation — with [`Hooks`] for the resources whose storage does more
//! (a Service's cluster IP and node ports).
//!
//! The HTTP layer (`rest.rs`) parses a request and calls in here; the subresource
//! handlers (eviction, finalize, scale) call in here too. Nothing here reads the request
//! itself: who writes and how comes as a [`Writer`].

use http::StatusCode;
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions as DeleteOptionsType;
use keelson_api::{ResourceInfo, Typed};
use serde_json::{Value, json};

use crate::ApiServer;
use crate::admission::{Attributes, Operation};
use crate::meta::{self, metadata, metadata_mut};
use crate::registry::hooks::Hooks;
use crate::registry::strategy;
use crate::registry::typed::BodyCheck;
use crate::registry::{
    self, Place, prepare_create, prepare_update_unvalidated, update_precondition,
};
use crate::request::User;
use crate::status::{ApiError, ApiResult, Cause};

/// How often an unconditional write retries after losing a race.
pub const RETRIES: usize = 8;

/// Who writes, and how.
pub struct Writer<'a> {
    pub user: &'a User,
    /// The field manager the write is recorded under; `None` for server-side apply,
    /// whose merged object carries its managed fields already.
    pub manager: Option<String>,
    pub dry_run: bool,
}

/// The resources whose storage does more than the generic store, and what
/// (upstream's `pkg/registry/<group>/<resource>/storage` wrappers).
static HOOKS: &[(&str, &str, &dyn Hooks)] = &[("", "services", &crate::services::Allocation)];

fn hooks(info: &ResourceInfo) -> Option<&'static dyn Hooks> {
    HOOKS.iter().find(|&&(g, p, _)| (g, p) == (info.group, info.plural)).map(|&(_, _, h)| h)
}

/// Creates `body` in `info`'s collection (in `namespace`), as `writer`: returns the
/// created object and the warnings to send.
pub async fn create(
    api: &ApiServer,
    writer: &Writer<'_>,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    mut body: Value,
    check: &BodyCheck,
) -> ApiResult<(Value, Vec<String>)> {
    let strategy = strategy::for_resource(info);
    strategy.set_creator(&mut body, writer.user);
    let mut warnings = Vec::new();
    let mut object = prepare_create(info, namespace, body, check, &mut warnings)?;
    // Ownership is recorded before admission, as upstream's: what admission adds (a
    // token volume, tolerations, a priority) belongs to no manager.
    if let Some(manager) = &writer.manager {
        crate::apply::track_update(info, "", manager, None, &mut object);
    }
    let name = meta::name(&object).unwrap_or_default().to_owned();
    let admission = Attributes {
        user: writer.user,
        info,
        namespace: namespace.unwrap_or(""),
        name: &name,
        subresource: "",
        operation: Operation::Create,
        old: None,
        dry_run: writer.dry_run,
    };
    warnings.extend(crate::admission::admit(api, &admission, &mut object).await?);
    crate::auth::escalation::check(api, writer.user, info, None, &object).await?;
    let place = Place { info, namespace, name: &name };
    let undo = match hooks(info) {
        Some(hooks) => hooks.begin_create(api, &mut object, writer.dry_run).await?,
        None => None,
    };
    match api.objects.create(place, object, writer.dry_run).await {
        Ok(created) => Ok((created, warnings)),
        Err(e) => {
            if let Some(undo) = undo {
                undo.run(api).await;
            }
            Err(e)
        }
    }
}

/// The outcome of a write: the status code, the object, and the warnings to send.
pub type Written = (StatusCode, Value, Vec<String>);

/// Upstream's `GuaranteedUpdate`: read the stored object, compute the new one from it
/// with `next` (the body and how to check it), write it if nothing changed in between,
/// and start again after a lost race — unless the client named the resourceVersion it
/// expects. As upstream's, it starts again however many races it loses: the request's
/// deadline bounds it, never a count (a client's unconditional patch must not fail with
/// a Conflict because a controller keeps writing the object's status). An update that
/// would store the same bytes is not written (see [`changes_nothing`]): the stored
/// object is the answer.
pub async fn update<F>(
    api: &ApiServer,
    writer: &Writer<'_>,
    place: Place<'_>,
    subresource: Option<&str>,
    mut next: F,
) -> ApiResult<Written>
where
    F: FnMut(&Value) -> ApiResult<(Value, BodyCheck)>,
{
    let info = place.info;
    // The first attempt starts from the watch cache's copy, as upstream's does: the write
    // is conditional on its revision, so a stale copy only costs a retry from the store.
    let mut cached = api
        .caches
        .ready(&info.storage_prefix())
        .and_then(|cache| cache.get(&place.key()))
        .and_then(|kv| Some((registry::decode(info, &kv).ok()?, kv)));
    loop {
        let from_cache = cached.is_some();
        let (old, stored) = match cached.take() {
            Some(found) => found,
            None => {
                let kv = api.objects.get_raw(place).await?;
                (registry::decode(info, &kv)?, std::sync::Arc::new(kv))
            }
        };
        let revision = stored.mod_revision;
        let (body, check) = next(&old)?;
        let wanted = update_precondition(&body)?;
        if wanted.is_some_and(|w| w != revision) {
            if from_cache {
                continue;
            }
            return Err(ApiError::modified(info.group, info.plural, place.name));
        }
        let mut warnings = Vec::new();
        let mut object =
            prepare_update_unvalidated(info, &old, body, subresource, &check, &mut warnings)?;
        // Before admission, as on create.
        if let Some(manager) = &writer.manager {
            let sub = subresource.unwrap_or("");
            crate::apply::track_update(info, sub, manager, Some(&old), &mut object);
        }
        let admission = Attributes {
            user: writer.user,
            info,
            namespace: place.namespace.unwrap_or(""),
            name: place.name,
            subresource: subresource.unwrap_or(""),
            operation: Operation::Update,
            old: Some(&old),
            dry_run: writer.dry_run,
        };
        // Upstream's order: mutating admission, the update's validation, validating
        // admission.
        warnings.extend(crate::admission::admit_mutating(api, &admission, &mut object).await?);
        crate::registry::finish_update(info, &old, &mut object, subresource)?;
        warnings.extend(crate::admission::admit_validating(api, &admission, &object).await?);
        crate::auth::escalation::check(api, writer.user, info, Some(&old), &object).await?;
        crate::apply::ignore_time_only_changes(&old, &mut object);
        if !finalizing(info, &object) && registry::stores_as(info, &stored, &object)? {
            if from_cache {
                // Nothing to write, if the cache's copy is current: the store says.
                continue;
            }
            if changes_nothing(api, place, &stored).await? {
                return Ok((StatusCode::OK, old, warnings));
            }
        }
        match write_update(api, place, &old, object, revision, writer.dry_run).await {
            // Lost a race: read again. A client's own resourceVersion then fails the
            // check above; a patch, applied again to the new object, goes on.
            Err(e) if e.is_conflict() => continue,
            Ok((code, object)) => return Ok((code, object, warnings)),
            Err(e) => return Err(e),
        }
    }
}

/// Writes an updated object; an object being deleted whose last finalizer went away is
/// deleted instead (upstream's `ShouldDeleteDuringUpdate`).
async fn write_update(
    api: &ApiServer,
    place: Place<'_>,
    old: &Value,
    mut object: Value,
    revision: i64,
    dry_run: bool,
) -> ApiResult<(StatusCode, Value)> {
    let hooks = hooks(place.info);
    if finalizing(place.info, &object) {
        api.objects.remove(place, revision, dry_run).await?;
        if let Some(hooks) = hooks.filter(|_| !dry_run) {
            hooks.after_delete(api, old).await;
        }
        return Ok((StatusCode::OK, object));
    }
    let undo = match hooks {
        Some(hooks) => hooks.begin_update(api, old, &mut object, dry_run).await?,
        None => None,
    };
    match api.objects.replace(place, object, revision, dry_run).await {
        Ok(updated) => {
            if let Some(hooks) = hooks.filter(|_| !dry_run) {
                hooks.after_update(api, old, &updated).await;
            }
            Ok((StatusCode::OK, updated))
        }
        Err(e) => {
            if let Some(undo) = undo {
                undo.run(api).await;
            }
            Err(e)
        }
    }
}

/// An object being deleted whose last finalizer went away: an update deletes it. One
/// its strategy still holds (a namespace with `spec.finalizers`) stays, as upstream's
/// namespace storage overrides `ShouldDeleteDuringUpdate`.
fn finalizing(info: &ResourceInfo, object: &Value) -> bool {
    let meta = metadata(object);
    !strategy::for_resource(info).held_on_delete(object)
        && meta.contains_key("deletionTimestamp")
        && meta.get("finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty)
        && meta.get("deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) == 0
}

/// Whether an update that would store the same bytes as `stored` (read from the store,
/// not the cache) has nothing to write. It still has when the bytes are encrypted with
/// a key the configuration no longer writes with (upstream's stale data).
pub async fn changes_nothing(
    api: &ApiServer,
    place: Place<'_>,
    stored: &keelson_store::KeyValue,
) -> ApiResult<bool> {
    match api.stored_stale(stored).await {
        Ok(stale) => Ok(!stale),
        Err(e) => Err(place.store_error(e)),
    }
}

/// Whether a request with options of kind `kind` (`CreateOptions`, `DeleteOptions`, …)
/// and these `dryRun` values is a dry run: any value makes it one.
pub fn dry_run(kind: &str, values: &[&str]) -> ApiResult<bool> {
    match dry_run_cause(values) {
        None => Ok(!values.is_empty()),
        Some(cause) => Err(ApiError::invalid("meta.k8s.io", kind, "", vec![cause])),
    }
}

/// Upstream's `ValidateDryRun`: each value is `All`.
fn dry_run_cause(values: &[&str]) -> Option<Cause> {
    if values.iter().all(|v| *v == "All") {
        return None;
    }
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    let shown = format!("[]string{{{}}}", quoted.join(", "));
    Some(Cause::not_supported("dryRun", &shown, &["All"]))
}

/// `DeleteOptions`, from a request's body or its query.
pub struct DeleteOptions {
    grace_period: Option<i64>,
    propagation: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    /// Nothing is deleted or changed: the answer is what would have been.
    pub dry_run: bool,
}

impl DeleteOptions {
    /// A `DeleteOptions` body as its type reads it: a field of the wrong shape is a 400.
    pub fn decode(body: &Value) -> ApiResult<Value> {
        registry::typed::decode_body(
            Typed::of::<DeleteOptionsType>(),
            "meta.k8s.io",
            "v1",
            "DeleteOptions",
            body,
        )
    }

    /// From the query of a request without a body (`param` reads it): the same fields,
    /// as upstream's parameter codec converts them.
    pub fn from_query<'p>(param: impl Fn(&str) -> Option<&'p str>) -> ApiResult<Self> {
        let mut options = json!({});
        if let Some(grace) = param("gracePeriodSeconds") {
            let grace: i64 = grace.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "strconv.ParseInt: parsing {grace:?}: invalid syntax"
                ))
            })?;
            options["gracePeriodSeconds"] = json!(grace);
        }
        if let Some(orphan) = param("orphanDependents") {
            let orphan = match orphan {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
                "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "strconv.ParseBool: parsing {other:?}: invalid syntax"
                    )));
                }
            };
            options["orphanDependents"] = json!(orphan);
        }
        if let Some(policy) = param("propagationPolicy") {
            options["propagationPolicy"] = json!(policy);
        }
        if let Some(dry_run) = param("dryRun") {
            options["dryRun"] = json!([dry_run]);
        }
        Self::from_value(&options)
    }

    /// From a decoded `DeleteOptions` object, checked as upstream's
    /// `ValidateDeleteOptions` checks it.
    pub fn from_value(body: &Value) -> ApiResult<Self> {
        let propagation = body.get("propagationPolicy").and_then(Value::as_str);
        let orphan = body.get("orphanDependents").and_then(Value::as_bool);
        let mut causes = Vec::new();
        if let (Some(p), Some(_)) = (propagation, orphan) {
            causes.push(Cause::invalid(
                "propagationPolicy",
                &json!(p),
                "orphanDependents and deletionPropagation cannot be both set",
            ));
        }
        if let Some(p) = propagation
            && !["Orphan", "Background", "Foreground"].contains(&p)
        {
            causes.push(Cause::not_supported(
                "propagationPolicy",
                &format!("{p:?}"),
                &["Foreground", "Background", "Orphan", "nil"],
            ));
        }
        let dry_run_values: Vec<&str> = body
            .get("dryRun")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|v| v.as_str().unwrap_or(""))
            .collect();
        causes.extend(dry_run_cause(&dry_run_values));
        if !causes.is_empty() {
            return Err(ApiError::invalid("meta.k8s.io", "DeleteOptions", "", causes));
        }
        let propagation = propagation
            .map(str::to_owned)
            .or_else(|| orphan.map(|o| if o { "Orphan".into() } else { "Background".into() }));
        Ok(DeleteOptions {
            grace_period: body.get("gracePeriodSeconds").and_then(Value::as_i64),
            propagation,
            uid: body.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_owned),
            resource_version: body
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_owned),
            dry_run: !dry_run_values.is_empty(),
        })
    }
}

/// Deletes one object, or marks it for deletion: 200 and the object when it is gone,
/// 202 and the object when finalizers or a grace period hold it.
pub async fn delete(
    api: &ApiServer,
    place: Place<'_>,
    options: &DeleteOptions,
) -> ApiResult<(StatusCode, Value)> {
    let dry_run = options.dry_run;
    let info = place.info;
    let strategy = strategy::for_resource(info);
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
        let grace = strategy.deletion_grace_seconds(&object, options.grace_period);
        let held = strategy.held_on_delete(&object);
        if finalizers.is_empty() && grace == 0 && !held {
            match api.objects.remove(place, revision, dry_run).await {
                Err(e) if e.is_conflict() && options.resource_version.is_none() => continue,
                Err(e) => return Err(e),
                Ok(()) => {
                    if let Some(hooks) = hooks(info).filter(|_| !dry_run) {
                        hooks.after_delete(api, &object).await;
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
        if held {
            strategy.prepare_held_delete(&mut object);
        }
        match api.objects.replace(place, object, revision, dry_run).await {
            Err(e) if e.is_conflict() && options.resource_version.is_none() => continue,
            Err(e) => return Err(e),
            Ok(object) => return Ok((StatusCode::ACCEPTED, object)),
        }
    }
    Err(ApiError::modified(info.group, info.plural, place.name))
}

/// Deletes each of `objects` of `info` (a page of a collection); returns what was
/// deleted or marked. An object gone in the meantime is what was asked.
pub async fn delete_each(
    api: &ApiServer,
    info: &'static ResourceInfo,
    objects: Vec<Value>,
    options: &DeleteOptions,
) -> ApiResult<Vec<Value>> {
    let mut deleted = Vec::new();
    for object in objects {
        let name = meta::name(&object).unwrap_or_default().to_owned();
        let namespace = meta::str_field(&object, "namespace").map(str::to_owned);
        let place = Place { info, namespace: namespace.as_deref(), name: &name };
        match delete(api, place, options).await {
            Ok((_, object)) => deleted.push(object),
            Err(e) if e.code == StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

fn deletion_time(grace: i64) -> String {
    use keelson_api::k8s_openapi::jiff::SignedDuration;
    let now = meta::now_timestamp();
    meta::format_time(now.checked_add(SignedDuration::from_secs(grace)).unwrap_or(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_options_are_checked_as_upstream_checks_them() {
        let message = |body: Value| DeleteOptions::from_value(&body).err().map(|e| e.message);
        assert_eq!(
            message(json!({"propagationPolicy": "Later"})).as_deref(),
            Some(
                r#"DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "Later": supported values: "Foreground", "Background", "Orphan", "nil""#
            )
        );
        assert_eq!(
            message(
                json!({"propagationPolicy": "Orphan", "orphanDependents": true, "dryRun": ["x"]})
            )
            .as_deref(),
            Some(
                r#"DeleteOptions.meta.k8s.io "" is invalid: [propagationPolicy: Invalid value: "Orphan": orphanDependents and deletionPropagation cannot be both set, dryRun: Unsupported value: []string{"x"}: supported values: "All"]"#
            )
        );
        let options =
            DeleteOptions::from_value(&json!({"dryRun": ["All"], "orphanDependents": false}))
                .expect("valid");
        assert!(options.dry_run);
        assert_eq!(options.propagation.as_deref(), Some("Background"));
        // A query is read only when there is no body, with the codec's conversions.
        let query = |q: &'static [(&'static str, &'static str)]| {
            DeleteOptions::from_query(move |name| {
                q.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
            })
        };
        assert!(
            query(&[("dryRun", "All"), ("gracePeriodSeconds", "5")])
                .is_ok_and(|o| o.dry_run && o.grace_period == Some(5))
        );
        assert_eq!(
            query(&[("orphanDependents", "T")]).ok().and_then(|o| o.propagation).as_deref(),
            Some("Orphan")
        );
        assert_eq!(
            query(&[("gracePeriodSeconds", "soon")]).err().map(|e| e.code),
            Some(StatusCode::BAD_REQUEST)
        );
        assert!(!query(&[]).is_ok_and(|o| o.dry_run));
    }
}

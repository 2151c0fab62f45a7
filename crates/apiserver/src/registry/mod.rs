//! The generic store (upstream's `genericregistry.Store`): every resource's objects as
//! JSON under `/registry/…` keys, with the metadata rules all resources share, and the
//! per-resource differences from [`strategy`].
//!
//! An object's `resourceVersion` is its key's mod revision: it is set on every object
//! read and never stored. Must never write a half-prepared object: everything is
//! decided before the one conditional write.

pub mod defaults;
pub mod hooks;
pub mod quantities;
pub mod selector;
pub(crate) mod strategy;
pub mod typed;
pub mod validation;

// Each resource's strategy, by group: `<group>/<resource>.rs`, registered in
// `strategy::BUILTIN`.
mod apiextensions;
mod apiregistration;
mod apps;
mod autoscaling;
mod batch;
mod certificates;
mod coordination;
mod core;
mod discovery;
mod events;
mod flowcontrol;
mod networking;
mod policy;
mod rbac;
mod resource;
mod scheduling;
mod storage;

use std::sync::Arc;

use keelson_api::ResourceInfo;
use keelson_store::{KeyValue, Revision, Store};
use serde_json::{Value, json};

use crate::meta::{self, metadata, metadata_mut};
use crate::request::Target;
use crate::status::{ApiError, ApiResult, Cause, from_store};
use strategy::Strategy;
use typed::BodyCheck;

/// Where an object lives: the resource, its namespace (if namespaced), its name.
#[derive(Clone, Copy)]
pub struct Place<'a> {
    pub info: &'static ResourceInfo,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

impl<'a> Place<'a> {
    /// The object a request's path names.
    pub fn of(target: &'a Target) -> Place<'a> {
        Place {
            info: target.info,
            namespace: target.namespace.as_deref(),
            name: target.name.as_deref().unwrap_or(""),
        }
    }

    pub fn key(&self) -> String {
        key(self.info, self.namespace, self.name)
    }

    pub fn not_found(&self) -> ApiError {
        ApiError::not_found(self.info.group, self.info.plural, self.name)
    }

    pub fn store_error(&self, e: keelson_store::Error) -> ApiError {
        from_store(e, self.info.group, self.info.plural, self.name)
    }
}

pub fn key(info: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{}{ns}/{name}", info.storage_prefix()),
        None => format!("{}{name}", info.storage_prefix()),
    }
}

/// The directory of a resource's objects, in one namespace or all.
pub fn directory(info: &ResourceInfo, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{}{ns}/", info.storage_prefix()),
        None => info.storage_prefix(),
    }
}

/// Decodes a stored object and stamps it with its resource version.
pub fn decode(info: &ResourceInfo, kv: &KeyValue) -> ApiResult<Value> {
    let mut object: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        ApiError::internal(format!("stored {} {:?} is not JSON: {e}", info.kind, kv.key))
    })?;
    if info.custom.is_none() && object["apiVersion"] != info.api_version().as_str() {
        // Stored in another version of the group (the storage version): converted.
        strategy::for_resource(info).convert(&mut object, info.version);
    }
    object["apiVersion"] = json!(info.api_version());
    object["kind"] = json!(info.kind);
    metadata_mut(&mut object).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    if let Some(version) = info.custom {
        // Defaults added to the schema after the object was written apply on read.
        crate::structural::default_on_read(version, &mut object);
    }
    Ok(object)
}

/// Stored objects as the API's JSON without parsing them. Objects are stored with
/// `apiVersion`, `kind` and `metadata` first ([`stored_bytes`]), so one stored in the
/// version it is read in starts `{"apiVersion":…,"kind":…,"metadata":{` and its metadata
/// has no `resourceVersion`:
/// the read object is those bytes with `"resourceVersion":"<mod revision>"` put first in
/// the metadata. Objects that start otherwise (another stored version, encrypted bytes,
/// custom resources with defaults to apply on read) are for [`decode`].
pub struct Splicer {
    /// How a stored object of the resource starts.
    start: Vec<u8>,
    /// How it starts on the wire: `kind` before `apiVersion` (Go's struct order) for a
    /// built-in type, as stored (Go's map order) for a custom resource.
    wire_start: Vec<u8>,
    usable: bool,
}

impl Splicer {
    pub fn new(info: &ResourceInfo) -> Self {
        let (api_version, kind) = (json!(info.api_version()), json!(info.kind));
        let start = format!(r#"{{"apiVersion":{api_version},"kind":{kind},"metadata":{{"#);
        let wire_start = match info.custom {
            Some(_) => start.clone(),
            None => format!(r#"{{"kind":{kind},"apiVersion":{api_version},"metadata":{{"#),
        };
        let usable = info.custom.is_none_or(|v| v["hasDefaults"] != json!(true));
        Splicer { start: start.into_bytes(), wire_start: wire_start.into_bytes(), usable }
    }

    /// Writes the object (without `apiVersion` and `kind` unless `typed`) to `out`;
    /// `false`, writing nothing, when its bytes do not start as expected.
    pub fn write(&self, kv: &KeyValue, typed: bool, out: &mut Vec<u8>) -> bool {
        self.write_at(kv, kv.mod_revision, typed, out)
    }

    /// As [`Splicer::write`], stamped with `revision` (a deletion's, for the deleted
    /// object).
    pub fn write_at(
        &self,
        kv: &KeyValue,
        revision: Revision,
        typed: bool,
        out: &mut Vec<u8>,
    ) -> bool {
        let rest = match kv.value.strip_prefix(self.start.as_slice()) {
            Some(rest) if self.usable => rest,
            _ => return false,
        };
        out.reserve(self.wire_start.len() + rest.len() + 32);
        if typed {
            out.extend_from_slice(&self.wire_start);
        } else {
            out.extend_from_slice(br#"{"metadata":{"#);
        }
        out.extend_from_slice(format!(r#""resourceVersion":"{revision}""#).as_bytes());
        if rest.first() != Some(&b'}') {
            out.push(b',');
        }
        out.extend_from_slice(rest);
        true
    }
}

/// Writes a stored object as a list item — stamped with its resource version, without
/// `apiVersion`/`kind` (but with them for custom resources) — straight from its stored bytes: only the top level and
/// `metadata` are parsed, the rest is copied as it is.
pub fn write_list_item(info: &ResourceInfo, kv: &KeyValue, out: &mut Vec<u8>) -> ApiResult<()> {
    let corrupt = |e: serde_json::Error| {
        ApiError::internal(format!("stored {} {:?} is not JSON: {e}", info.kind, kv.key))
    };
    if info.is_custom() {
        // Custom resources' list items carry apiVersion and kind (upstream's unstructured
        // lists) and are defaulted on read: through the whole object.
        let object = decode(info, kv)?;
        return serde_json::to_writer(&mut *out, &object).map_err(corrupt);
    }
    let top: std::collections::BTreeMap<String, &serde_json::value::RawValue> =
        serde_json::from_slice(&kv.value).map_err(corrupt)?;
    let stored_version = top.get("apiVersion").map(|raw| raw.get());
    let served_version = json!(info.api_version()).to_string();
    if stored_version.is_some_and(|v| v != served_version) {
        // Stored in another version: converted whole.
        let mut object = decode(info, kv)?;
        if let Some(map) = object.as_object_mut() {
            map.remove("apiVersion");
            map.remove("kind");
        }
        crate::gojson::write(out, &object, &crate::gojson::OBJECT);
        return Ok(());
    }
    out.push(b'{');
    let mut first = true;
    let mut separator = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
    };
    let mut wrote_metadata = false;
    // Metadata first, as upstream's typed items start.
    let metadata = top.get_key_value("metadata");
    let rest =
        top.iter().filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata"));
    for (key, raw) in metadata.into_iter().chain(rest) {
        separator(out);
        serde_json::to_writer(&mut *out, key).map_err(corrupt)?;
        out.push(b':');
        if key == "metadata" {
            // Raw too: only resourceVersion is added; managedFields and the rest are
            // copied as stored, never parsed.
            let mut meta: std::collections::BTreeMap<String, &serde_json::value::RawValue> =
                serde_json::from_str(raw.get()).map_err(corrupt)?;
            let revision =
                serde_json::value::to_raw_value(&kv.mod_revision.to_string()).map_err(corrupt)?;
            meta.insert("resourceVersion".into(), &revision);
            serde_json::to_writer(&mut *out, &meta).map_err(corrupt)?;
            wrote_metadata = true;
        } else {
            out.extend_from_slice(raw.get().as_bytes());
        }
    }
    if !wrote_metadata {
        separator(out);
        out.extend_from_slice(
            format!(r#""metadata":{{"resourceVersion":"{}"}}"#, kv.mod_revision).as_bytes(),
        );
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
pub(crate) fn encode(info: &ResourceInfo, object: &Value) -> ApiResult<Vec<u8>> {
    encode_in_place(info, &mut object.clone())
}

/// The stored bytes of `object`, which loses its `resourceVersion` (a write stamps the
/// new one) and is otherwise left as it was: no copy of the object is made.
fn encode_in_place(info: &ResourceInfo, object: &mut Value) -> ApiResult<Vec<u8>> {
    metadata_mut(object).remove("resourceVersion");
    if let Some(storage) = info.storage_version.filter(|s| {
        info.custom.is_none()
            && s.group == info.group
            && s.kind == info.kind
            && s.version != info.version
    }) {
        // Stored in the storage version, whatever version it was written in.
        let mut stored = object.clone();
        stored["apiVersion"] = json!(info.api_version());
        strategy::for_resource(info).convert(&mut stored, storage.version);
        stored["apiVersion"] = json!(format!("{}/{}", storage.group, storage.version));
        return stored_bytes(&stored).map_err(ApiError::internal);
    }
    let Some(version) = info.custom.and_then(|v| v["storageVersion"].as_str()) else {
        return stored_bytes(object).map_err(ApiError::internal);
    };
    // Custom resources are stored in the storage version (upstream's `None` conversion
    // only changes apiVersion), as kube-apiserver would store them.
    let requested =
        std::mem::replace(&mut object["apiVersion"], json!(format!("{}/{version}", info.group)));
    let bytes = stored_bytes(object).map_err(ApiError::internal);
    object["apiVersion"] = requested;
    bytes
}

/// An object's JSON with `apiVersion`, `kind` and `metadata` first and the other fields
/// after them in key order: the layout [`Splicer`] reads without parsing.
fn stored_bytes(object: &Value) -> serde_json::Result<Vec<u8>> {
    const FIRST: [&str; 3] = ["apiVersion", "kind", "metadata"];
    let Some(map) = object.as_object() else {
        return serde_json::to_vec(object);
    };
    let mut out = Vec::with_capacity(1024);
    out.push(b'{');
    let first = FIRST.iter().filter_map(|k| map.get_key_value(*k));
    let rest = map.iter().filter(|(k, _)| !FIRST.contains(&k.as_str()));
    for (i, (key, value)) in first.chain(rest).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, key)?;
        out.push(b':');
        serde_json::to_writer(&mut out, value)?;
    }
    out.push(b'}');
    Ok(out)
}

/// Whether `object` would be stored as exactly the bytes `stored` holds: upstream's test
/// for an update that changes nothing, which is then not written.
pub fn stores_as(info: &ResourceInfo, stored: &KeyValue, object: &Value) -> ApiResult<bool> {
    Ok(encode_in_place(info, &mut object.clone())? == stored.value)
}

pub fn resource_version(object: &Value) -> Option<Revision> {
    meta::str_field(object, "resourceVersion").and_then(|rv| rv.parse().ok())
}

/// The resource version an update of `object` is conditional on: none for `""` and
/// `"0"`, which upstream takes as an unconditional update; a version that is no number
/// fails as upstream's versioner fails it.
pub fn update_precondition(object: &Value) -> ApiResult<Option<Revision>> {
    let given = meta::str_field(object, "resourceVersion").unwrap_or("");
    if given.is_empty() {
        return Ok(None);
    }
    match given.parse::<u64>() {
        Ok(0) => Ok(None),
        // Beyond any revision the store can have: a conflict, as upstream's.
        Ok(n) => Ok(Some(Revision::try_from(n).unwrap_or(Revision::MAX))),
        Err(e) => {
            let why = match e.kind() {
                std::num::IntErrorKind::PosOverflow => "value out of range",
                _ => "invalid syntax",
            };
            Err(ApiError::plain(format!("strconv.ParseUint: parsing {given:?}: {why}")))
        }
    }
}

/// The generic store over one [`Store`].
pub struct Objects {
    pub store: Arc<dyn Store>,
}

impl Objects {
    pub async fn get(&self, place: Place<'_>) -> ApiResult<(Value, Revision)> {
        let kv = self.get_raw(place).await?;
        Ok((decode(place.info, &kv)?, kv.mod_revision))
    }

    /// The stored object as the store has it.
    pub async fn get_raw(&self, place: Place<'_>) -> ApiResult<KeyValue> {
        match self.store.get(&place.key()).await {
            Ok(Some(kv)) => Ok(kv),
            Ok(None) => Err(place.not_found()),
            Err(e) => Err(place.store_error(e)),
        }
    }

    /// Creates `object` (already defaulted and validated) at `place`.
    pub async fn create(
        &self,
        place: Place<'_>,
        mut object: Value,
        dry_run: bool,
    ) -> ApiResult<Value> {
        let bytes = encode_in_place(place.info, &mut object)?;
        if dry_run {
            return match self.store.get(&place.key()).await {
                Ok(Some(_)) => {
                    Err(ApiError::already_exists(place.info.group, place.info.plural, place.name))
                }
                Ok(None) => Ok(object),
                Err(e) => Err(place.store_error(e)),
            };
        }
        let revision =
            self.store.create(&place.key(), bytes).await.map_err(|e| place.store_error(e))?;
        Ok(stamp(object, revision))
    }

    /// Replaces the object at `place` if it is still at `expected`.
    pub async fn replace(
        &self,
        place: Place<'_>,
        mut object: Value,
        expected: Revision,
        dry_run: bool,
    ) -> ApiResult<Value> {
        if dry_run {
            return Ok(object);
        }
        let revision = self
            .store
            .update(&place.key(), encode_in_place(place.info, &mut object)?, expected)
            .await
            .map_err(|e| place.store_error(e))?;
        Ok(stamp(object, revision))
    }

    /// Replaces `existing`, stored at `revision`, with `updated` as the server writes
    /// its own objects: the generic update rules of `subresource` (no field validation,
    /// warnings or admission).
    pub async fn rewrite(
        &self,
        place: Place<'_>,
        existing: &Value,
        updated: Value,
        revision: Revision,
        subresource: Option<&str>,
    ) -> ApiResult<Value> {
        let check = Default::default();
        let object =
            prepare_update(place.info, existing, updated, subresource, &check, &mut Vec::new())?;
        self.replace(place, object, revision, false).await
    }

    pub async fn remove(
        &self,
        place: Place<'_>,
        expected: Revision,
        dry_run: bool,
    ) -> ApiResult<()> {
        if dry_run {
            return Ok(());
        }
        self.store
            .delete(&place.key(), expected)
            .await
            .map(|_| ())
            .map_err(|e| place.store_error(e))
    }
}

fn stamp(mut object: Value, revision: Revision) -> Value {
    metadata_mut(&mut object).insert("resourceVersion".into(), json!(revision.to_string()));
    object
}

/// Checks `apiVersion`/`kind` of a body against the resource it was sent to.
pub fn check_type(info: &ResourceInfo, object: &Value) -> ApiResult<()> {
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    if !api_version.is_empty() && api_version != info.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            info.api_version()
        )));
    }
    let version = api_version.rsplit_once('/').map_or(api_version, |(_, v)| v);
    let version = if version.is_empty() { info.version } else { version };
    let registered = keelson_api::Registry::builtin().find_kind(info.group, version, kind);
    if !kind.is_empty() && kind != info.kind && info.custom.is_none() && registered.is_some() {
        // Upstream decodes the object as its own kind, then fails to convert it.
        let package = crate::negotiation::internal_type(info.group, info.kind, false, false);
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {}: converting ({version}.{kind}) to ({}): unknown conversion",
            info.kind,
            package.trim_start_matches('*'),
        )));
    }
    if !kind.is_empty() && kind != info.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            info.kind
        )));
    }
    Ok(())
}

/// Upstream's `BeforeCreate`: name (or generateName), namespace, uid, timestamps,
/// generation, the strategy's defaults, then metadata validation.
pub fn prepare_create(
    info: &ResourceInfo,
    namespace: Option<&str>,
    object: Value,
    check: &BodyCheck,
    warnings: &mut Vec<String>,
) -> ApiResult<Value> {
    check_type(info, &object)?;
    let mut object = typed::decode(info, object, check, warnings)?;
    let strategy = strategy::for_resource(info);
    object["apiVersion"] = json!(info.api_version());
    object["kind"] = json!(info.kind);
    let meta = metadata_mut(&mut object);
    match (info.namespaced(), namespace, meta.get("namespace").and_then(Value::as_str)) {
        (true, Some(ns), Some(body)) if !body.is_empty() && body != ns => {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        (true, Some(ns), _) => {
            meta.insert("namespace".into(), json!(ns));
        }
        _ => {
            meta.remove("namespace");
        }
    }
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_owned();
    let generate = meta.get("generateName").and_then(Value::as_str).unwrap_or("").to_owned();
    if name.is_empty() && !generate.is_empty() {
        meta.insert("name".into(), json!(meta::generate_name(&generate)));
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(meta::now()));
    for field in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"]
    {
        meta.remove(field);
    }
    if strategy.tracks_generation() {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    if strategy::has_status(info) && !strategy.keeps_status_on_create() {
        reset_status(info, &*strategy, &mut object);
    }
    strategy.prepare_create(&mut object);
    let mut causes = Vec::new();
    strategy.validate(&object, &mut causes);
    validate(info, &*strategy, &object, causes)?;
    Ok(object)
}

/// Replaces a new object's status with its type's empty one (what Go prints of the
/// zero status struct: the fields without `omitempty`), or drops it for a custom
/// resource: only `…/status` writes it.
fn reset_status(info: &ResourceInfo, strategy: &dyn Strategy, object: &mut Value) {
    let empty = match (strategy.empty_status(), info.custom) {
        (Some(empty), _) => Some(empty),
        (None, Some(_)) => None,
        (None, None) => {
            let zero = json!({ "apiVersion": info.api_version(), "kind": info.kind, "metadata": {}, "status": {} });
            Some((info.typed.normalize)(&zero).map_or_else(|_| json!({}), |o| o["status"].clone()))
        }
    };
    match (empty, object.as_object_mut()) {
        (Some(empty), Some(map)) => {
            map.insert("status".into(), if empty.is_object() { empty } else { json!({}) });
        }
        (None, Some(map)) => {
            map.remove("status");
        }
        _ => {}
    }
}

/// Validates a new object again after admission changed it (upstream validates after
/// the mutating plugins; here the registry runs first).
pub fn revalidate_create(info: &ResourceInfo, object: &Value) -> ApiResult<()> {
    let strategy = strategy::for_resource(info);
    let mut causes = Vec::new();
    strategy.validate(object, &mut causes);
    validate(info, &*strategy, object, causes)
}

/// Upstream's `BeforeUpdate`: identity and bookkeeping fields come from the stored
/// object; status or everything-but-status follows the subresource; generation moves
/// when anything but metadata and status changed.
pub fn prepare_update(
    info: &ResourceInfo,
    old: &Value,
    object: Value,
    subresource: Option<&str>,
    check: &BodyCheck,
    warnings: &mut Vec<String>,
) -> ApiResult<Value> {
    let mut object = prepare_update_unvalidated(info, old, object, subresource, check, warnings)?;
    finish_update(info, old, &mut object, subresource)?;
    Ok(object)
}

/// [`prepare_update`] but for the generation and the validation ([`finish_update`]),
/// which a write through the API does after the mutating admission plugins, as
/// upstream's `BeforeUpdate` comes after them: what they fill in (a pod's priority, its
/// tolerations) is then compared with the stored object.
pub fn prepare_update_unvalidated(
    info: &ResourceInfo,
    old: &Value,
    object: Value,
    subresource: Option<&str>,
    check: &BodyCheck,
    warnings: &mut Vec<String>,
) -> ApiResult<Value> {
    check_type(info, &object)?;
    let mut object = typed::decode(info, object, check, warnings)?;
    let strategy = strategy::for_resource(info);
    object["apiVersion"] = json!(info.api_version());
    object["kind"] = json!(info.kind);
    let old_meta = metadata(old).clone();
    let name = old_meta.get("name").cloned().unwrap_or(Value::Null);
    let body_name = metadata(&object).get("name").cloned();
    if body_name.as_ref().is_some_and(|n| n != &name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({})",
            body_name.and_then(|n| n.as_str().map(str::to_owned)).unwrap_or_default(),
            name.as_str().unwrap_or_default()
        )));
    }
    if strategy::has_status(info) {
        match subresource {
            Some("status" | "approval") => {
                // Only status changes through /status (and a CSR's /approval).
                let status = object.get("status").cloned();
                let mut merged = old.clone();
                match status {
                    Some(status) => merged["status"] = status,
                    None => {
                        if let Some(map) = merged.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
                // Labels and annotations may change with status, as upstream allows.
                for field in ["labels", "annotations"] {
                    match metadata(&object).get(field).cloned() {
                        Some(v) => {
                            metadata_mut(&mut merged).insert(field.into(), v);
                        }
                        None => {
                            metadata_mut(&mut merged).remove(field);
                        }
                    }
                }
                object = merged;
            }
            _ => match old.get("status") {
                Some(status) => object["status"] = status.clone(),
                None => {
                    if let Some(map) = object.as_object_mut() {
                        map.remove("status");
                    }
                }
            },
        }
    }
    let meta = metadata_mut(&mut object);
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    strategy.prepare_update(subresource, old, &mut object);
    Ok(object)
}

/// The end of [`prepare_update`]: the generation moves if anything but metadata and
/// status changed; then metadata rules and the type's own update validation.
pub fn finish_update(
    info: &ResourceInfo,
    old: &Value,
    object: &mut Value,
    subresource: Option<&str>,
) -> ApiResult<()> {
    let strategy = strategy::for_resource(info);
    if strategy.tracks_generation() && spec_changed(old, object) {
        let generation = metadata(old).get("generation").and_then(Value::as_i64).unwrap_or(0) + 1;
        metadata_mut(object).insert("generation".into(), json!(generation));
    }
    let mut causes = Vec::new();
    strategy.validate_update(old, object, subresource, &mut causes);
    validate(info, &*strategy, object, causes)
}

/// Whether anything but metadata and status differs.
pub(crate) fn spec_changed(old: &Value, new: &Value) -> bool {
    const NOT_SPEC: [&str; 4] = ["metadata", "status", "apiVersion", "kind"];
    match (old.as_object(), new.as_object()) {
        // Maps iterate in key order, so the rest of both compare pairwise.
        (Some(old), Some(new)) => {
            let spec = |(k, _): &(&String, &Value)| !NOT_SPEC.contains(&k.as_str());
            !old.iter().filter(spec).eq(new.iter().filter(spec))
        }
        _ => old != new,
    }
}

/// Metadata rules, then the type's own (`type_causes`, from the strategy), as one
/// `Invalid` error.
fn validate(
    info: &ResourceInfo,
    strategy: &dyn Strategy,
    object: &Value,
    type_causes: Vec<Cause>,
) -> ApiResult<()> {
    let mut causes = Vec::new();
    let name = meta::name(object).unwrap_or("");
    if name.is_empty() {
        causes.push(Cause::required("metadata.name", "name or generateName is required"));
    } else {
        meta::validate_name(strategy.name_rule(), name, "metadata.name", &mut causes);
    }
    if let Some(prefix) = meta::str_field(object, "generateName") {
        meta::validate_generate_name(strategy.name_rule(), prefix, &mut causes);
    }
    meta::validate_labels_and_annotations(object, &mut causes);
    if let Some(finalizers) = metadata(object).get("finalizers")
        && !finalizers.as_array().is_some_and(|f| f.iter().all(Value::is_string))
    {
        causes.push(Cause::invalid("metadata.finalizers", finalizers, "must be a list of strings"));
    }
    causes.extend(type_causes);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(info.group, info.kind, name, causes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(info: &ResourceInfo, object: Value) -> KeyValue {
        let value = encode(info, &object).expect("encodes");
        KeyValue { key: "/registry/x".into(), value, create_revision: 7, mod_revision: 9 }
    }

    #[test]
    fn an_update_is_unconditional_without_a_version_or_with_zero() {
        let with = |rv: &str| json!({"metadata": {"name": "a", "resourceVersion": rv}});
        assert_eq!(update_precondition(&json!({"metadata": {}})), Ok(None));
        assert_eq!(update_precondition(&with("")), Ok(None));
        assert_eq!(update_precondition(&with("0")), Ok(None));
        assert_eq!(update_precondition(&with("42")), Ok(Some(42)));
        let error = update_precondition(&with("abc")).expect_err("not a number");
        assert_eq!(error.code, http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error.message, r#"strconv.ParseUint: parsing "abc": invalid syntax"#);
    }

    #[test]
    fn spliced_objects_are_the_decoded_ones() {
        let pods = keelson_api::Registry::builtin().find("", "v1", "pods").expect("pods");
        let splicer = Splicer::new(pods);
        for object in [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "n",
                "resourceVersion": "3", "labels": {"x": "y"}}, "spec": {"containers": []}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}}),
        ] {
            let kv = stored(pods, object);
            let mut out = Vec::new();
            assert!(splicer.write(&kv, true, &mut out));
            let spliced: Value = serde_json::from_slice(&out).expect("JSON");
            assert_eq!(spliced, decode(pods, &kv).expect("decodes"));
            assert_eq!(spliced["metadata"]["resourceVersion"], "9");
            let mut item = Vec::new();
            assert!(splicer.write(&kv, false, &mut item));
            let mut fallback = Vec::new();
            write_list_item(pods, &kv, &mut fallback).expect("writes");
            let item: Value = serde_json::from_slice(&item).expect("JSON");
            assert_eq!(item, serde_json::from_slice::<Value>(&fallback).expect("JSON"));
        }
        // Every kind is stored so: fields sorting before `kind` come after the metadata.
        let configmaps =
            keelson_api::Registry::builtin().find("", "v1", "configmaps").expect("configmaps");
        let kv = stored(
            configmaps,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "data": {"a": "b"}, "binaryData": {}, "metadata": {"name": "c"}}),
        );
        let mut out = Vec::new();
        assert!(Splicer::new(configmaps).write(&kv, true, &mut out));
        let spliced: Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(spliced, decode(configmaps, &kv).expect("decodes"));
        // Bytes that start otherwise (encrypted, another version) are left to decoding.
        let mut other = stored(pods, json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}}));
        other.value = b"k8s:enc:secretbox:v1:key1:...".to_vec();
        assert!(!splicer.write(&other, true, &mut Vec::new()));
    }

    #[test]
    fn a_new_object_starts_with_the_empty_status_of_its_type() {
        let mut kept = Vec::new();
        for info in keelson_api::Registry::builtin().resources().filter(|r| strategy::has_status(r))
        {
            let strategy = strategy::for_resource(info);
            let mut object = json!({ "metadata": { "name": "x" }, "status": { "sent": true } });
            if strategy.keeps_status_on_create() {
                kept.push(info.plural);
                continue;
            }
            reset_status(info, &*strategy, &mut object);
            assert!(object["status"].is_object(), "{}: {object}", info.plural);
            assert!(object["status"].get("sent").is_none(), "{}: {object}", info.plural);
        }
        kept.sort_unstable();
        assert_eq!(kept, ["nodes", "servicecidrs"], "upstream keeps only these");
        let empty = |group: &str, version: &str, plural: &str| {
            let info =
                keelson_api::Registry::builtin().find(group, version, plural).expect("served");
            let mut object = json!({ "status": { "sent": true } });
            reset_status(info, &*strategy::for_resource(info), &mut object);
            object["status"].clone()
        };
        // What Go prints of each zero status struct: fields without `omitempty` stay.
        assert_eq!(empty("", "v1", "services"), json!({ "loadBalancer": {} }));
        assert_eq!(empty("networking.k8s.io", "v1", "ingresses"), json!({ "loadBalancer": {} }));
        assert_eq!(empty("apps", "v1", "deployments"), json!({}));
        assert_eq!(empty("apps", "v1", "replicasets"), json!({ "replicas": 0 }));
        assert_eq!(empty("", "v1", "replicationcontrollers"), json!({ "replicas": 0 }));
        assert_eq!(
            empty("apps", "v1", "daemonsets"),
            json!({ "currentNumberScheduled": 0, "desiredNumberScheduled": 0,
                "numberMisscheduled": 0, "numberReady": 0 })
        );
        assert_eq!(
            empty("policy", "v1", "poddisruptionbudgets"),
            json!({ "currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0,
                "expectedPods": 0 })
        );
        assert_eq!(
            empty("autoscaling", "v2", "horizontalpodautoscalers"),
            json!({ "desiredReplicas": 0 })
        );
    }
}

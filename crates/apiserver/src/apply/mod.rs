//! Server-side apply and field ownership (upstream's `fieldmanager` and
//! structured-merge-diff): every write records, in `metadata.managedFields`, which
//! fields its manager set — an `Update` entry for create, update and patch, an `Apply`
//! entry for apply — and `PATCH` with `application/apply-patch+yaml` merges the applied
//! configuration into the live object by the type's list and map semantics, refuses
//! to change fields another manager owns unless forced (409 with a cause per field),
//! and removes fields the manager applied before and applies no more.
//!
//! Types come from [`schema::Ty`]: the generated list types, map keys and atomic markers
//! of the built-in types, and a custom resource's structural schema. kubectl upgrading an object from client-side apply takes over the
//! fields its `last-applied-configuration` annotation set without conflicts, and keeps
//! the annotation current, as upstream's last-applied manager and updater do.
//!
//! Not yet: version conversion of managed fields.

pub mod fieldset;
pub mod schema;

use keelson_api::ResourceInfo;
use serde_json::{Value, json};

use crate::status::{ApiError, ApiResult, Cause};
use fieldset::Set;
use schema::{Shape, Ty};

/// One `managedFields` entry.
#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    subresource: String,
    time: Value,
    fields: Set,
}

impl Entry {
    fn from_json(v: &Value) -> Entry {
        let text = |f: &str| v[f].as_str().unwrap_or("").to_owned();
        Entry {
            manager: text("manager"),
            operation: text("operation"),
            api_version: text("apiVersion"),
            subresource: text("subresource"),
            time: v["time"].clone(),
            fields: Set::from_fields_v1(&v["fieldsV1"]),
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.fields.to_fields_v1(),
        });
        // An apply that changed nothing gives a new entry no time (upstream's too).
        if !self.time.is_null() {
            v["time"] = self.time.clone();
        }
        if !self.subresource.is_empty() {
            v["subresource"] = json!(self.subresource);
        }
        v
    }

    fn same(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }
}

fn entries(object: &Value) -> Vec<Entry> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(Entry::from_json)
        .collect()
}

fn store(object: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> =
        entries.iter().filter(|e| !e.fields.is_empty()).map(Entry::to_json).collect();
    match object["metadata"].as_object_mut() {
        Some(meta) if list.is_empty() => {
            meta.remove("managedFields");
        }
        Some(meta) => {
            meta.insert("managedFields".into(), Value::Array(list));
        }
        None => {}
    }
}

/// The manager of a write that names none: the User-Agent up to its first `/`, as
/// upstream's default.
pub fn default_manager(user_agent: &str) -> String {
    let name = user_agent.split('/').next().unwrap_or("").trim();
    if name.is_empty() { "unknown".into() } else { name.chars().take(128).collect() }
}

/// The part of the object a write through `subresource` may own.
fn owned_part(info: &ResourceInfo, subresource: &str, object: &Value) -> Set {
    let has_status = info.subresources.iter().any(|s| s.name == "status");
    let set = Set::of_object(object, Ty::of_resource(info), !has_status || subresource == "status");
    only_status(set, subresource)
}

/// A write through the status subresource owns only status.
fn only_status(mut set: Set, subresource: &str) -> Set {
    if subresource == "status" {
        let status = set.children.remove("f:status");
        set = Set::default();
        if let Some(status) = status {
            set.children.insert("f:status".into(), status);
        }
    }
    set
}

/// The manager a write is recorded under: `?fieldManager=`, else upstream's default
/// from the User-Agent.
pub fn field_manager(req: &crate::request::Request) -> String {
    match req.param("fieldManager") {
        Some(manager) if !manager.is_empty() => manager.to_owned(),
        _ => default_manager(req.header(http::header::USER_AGENT)),
    }
}

/// Records an `Update` by `manager` that turned `old` (none: a create) into `new`: the
/// manager owns what it changed, and the others lose it.
pub fn track_update(
    info: &ResourceInfo,
    subresource: &str,
    manager: &str,
    old: Option<&Value>,
    new: &mut Value,
) {
    let given = new["metadata"]["managedFields"].clone();
    let previous = old.map(|o| o["metadata"]["managedFields"].clone()).unwrap_or(Value::Null);
    // A client that sends managedFields of its own (other than what it read) resets them.
    if given.is_array() && given != previous && !given.as_array().is_some_and(Vec::is_empty) {
        return;
    }
    let mut list = old.map(entries).unwrap_or_default();
    let (changed, removed) = match old {
        Some(old) => {
            let has_status = info.subresources.iter().any(|s| s.name == "status");
            let (changed, removed) = Set::compare(
                old,
                new,
                Ty::of_resource(info),
                !has_status || subresource == "status",
            );
            (only_status(changed, subresource), only_status(removed, subresource))
        }
        None => (owned_part(info, subresource, new), Set::default()),
    };
    for entry in list.iter_mut() {
        entry.fields = entry.fields.difference(&changed).difference(&removed);
    }
    let time = json!(crate::meta::now());
    match list.iter_mut().find(|e| e.same(manager, "Update", subresource)) {
        // A write that changed no field leaves its manager's entry as it was.
        Some(_) if changed.is_empty() => {}
        Some(entry) => {
            entry.fields = entry.fields.union(&changed);
            entry.time = time;
            entry.api_version = info.api_version();
        }
        None => list.push(Entry {
            manager: manager.into(),
            operation: "Update".into(),
            api_version: info.api_version(),
            subresource: subresource.into(),
            time,
            fields: changed,
        }),
    }
    store(new, list);
}

fn insert(set: &mut Set, path: &[String]) {
    let mut node = set;
    for element in path {
        node = node.children.entry(element.clone()).or_default();
    }
    node.own = true;
}

/// The value at a field path of an object of type `ty`.
fn value_at<'a>(object: &'a Value, path: &[String], ty: Ty) -> Option<&'a Value> {
    let (mut node, mut ty) = (object, ty);
    for element in path {
        (node, ty) = step(node, element, ty)?;
    }
    Some(node)
}

/// The child of `node` (of type `ty`) a path element names, and its type. A keyed item is
/// found by its whole key, missing key fields by their defaults, as upstream compares
/// path elements.
fn step<'a>(node: &'a Value, element: &str, ty: Ty) -> Option<(&'a Value, Ty)> {
    if let Some(name) = element.strip_prefix("f:") {
        return Some((node.get(name)?, ty.field(name)));
    }
    let items = node.as_array()?;
    let found = if element.starts_with("k:") {
        let Shape::Keyed(keys) = ty.shape(node) else { return None };
        items.iter().find(|item| fieldset::item_key(item, &keys, ty.items()) == element)
    } else if let Some(value) = element.strip_prefix("v:") {
        let value: Value = serde_json::from_str(value).ok()?;
        items.iter().find(|item| **item == value)
    } else {
        None
    };
    Some((found?, ty.items()))
}

/// Removes the value at a path (a field, a keyed item, a set item) of an object of type
/// `ty`.
fn remove_at(object: &mut Value, path: &[String], ty: Ty) {
    let Some((last, parents)) = path.split_last() else { return };
    let (mut node, mut ty) = (object, ty);
    for element in parents {
        let next = if let Some(name) = element.strip_prefix("f:") {
            let field = ty.field(name);
            node.get_mut(name).map(|n| (n, field))
        } else if element.starts_with("k:") {
            let Shape::Keyed(keys) = ty.shape(node) else { return };
            let item_type = ty.items();
            node.as_array_mut()
                .and_then(|items| {
                    items.iter_mut().find(|i| fieldset::item_key(i, &keys, item_type) == *element)
                })
                .map(|n| (n, item_type))
        } else {
            None
        };
        match next {
            Some(n) => (node, ty) = n,
            None => return,
        }
    }
    if let Some(name) = last.strip_prefix("f:") {
        if let Some(map) = node.as_object_mut() {
            map.remove(name);
        }
    } else if last.starts_with("k:") {
        let Shape::Keyed(keys) = ty.shape(node) else { return };
        let item_type = ty.items();
        if let Some(items) = node.as_array_mut() {
            items.retain(|i| fieldset::item_key(i, &keys, item_type) != *last);
        }
    } else if let Some(value) = last.strip_prefix("v:") {
        let value: Value = serde_json::from_str(value).unwrap_or(Value::Null);
        if let Some(items) = node.as_array_mut() {
            items.retain(|i| *i != value);
        }
    }
}

/// Applies `applied` (a full object of the resource's kind) as `manager`: the merged
/// object with its managedFields, or the conflicts with other managers.
pub fn apply(
    info: &ResourceInfo,
    subresource: &str,
    manager: &str,
    force: bool,
    live: Option<&Value>,
    applied: &Value,
) -> ApiResult<Value> {
    let mut list = live.map(entries).unwrap_or_default();
    let wanted = owned_part(info, subresource, applied);
    let empty = json!({});
    let live_object = live.unwrap_or(&empty);
    let ty = Ty::of_resource(info);
    // Conflicts: fields another manager owns that this apply would change.
    let mut conflicts = Vec::new();
    for entry in list.iter().filter(|e| !e.same(manager, "Apply", subresource)) {
        for path in wanted.intersection(&entry.fields).members() {
            if value_at(live_object, &path, ty) != value_at(applied, &path, ty)
                && is_leafy(&path, applied, ty)
            {
                conflicts.push((entry.clone(), path));
            }
        }
    }
    let mut force = force;
    if !conflicts.is_empty() && !force {
        // Upgrading from client-side apply: kubectl may take over the fields its
        // last-applied annotation says it set, and that still hold those values.
        if manager == "kubectl" {
            let allowed = from_last_applied(info, live_object);
            conflicts.retain(|(_, path)| !contains(&allowed, path));
        }
        if !conflicts.is_empty() {
            return Err(conflict_error(info, applied, &conflicts));
        }
        force = true;
    }
    let previous = list
        .iter()
        .find(|e| e.same(manager, "Apply", subresource))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others = list
        .iter()
        .filter(|e| !e.same(manager, "Apply", subresource))
        .fold(Set::default(), |all, e| all.union(&e.fields));
    let mut merged = live_object.clone();
    merge(&mut merged, applied, ty);
    // kubectl keeps the client-side annotation current, so going back to client-side
    // apply works (upstream's lastAppliedUpdater).
    if manager == "kubectl" && live_object["metadata"]["annotations"].get(LAST_APPLIED).is_some() {
        let mut config = applied.clone();
        if let Some(meta) = config.get_mut("metadata").and_then(Value::as_object_mut)
            && let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut)
        {
            annotations.remove(LAST_APPLIED);
            if annotations.is_empty() {
                meta.remove("annotations");
            }
        }
        // The configuration fits the type (the caller checked), so the merged
        // annotations are a map; written without indexing all the same.
        let meta = crate::meta::metadata_mut(&mut merged);
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if !annotations.is_object() {
            *annotations = json!({});
        }
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(LAST_APPLIED.to_owned(), json!(config.to_string()));
        }
    }
    // What this manager applied before, applies no more, and nobody else owns goes.
    let dropped = previous.difference(&wanted).difference(&others);
    // Outermost first: a keyed item goes whole before its key fields would be removed
    // from it (which would leave it unfindable).
    let mut paths = dropped.members();
    paths.sort_by_key(Vec::len);
    for path in paths {
        remove_at(&mut merged, &path, ty);
    }
    for entry in list.iter_mut() {
        if !entry.same(manager, "Apply", subresource) && force {
            entry.fields = entry.fields.difference(&wanted);
        }
    }
    // The manager's time moves only when the object changes.
    let time = match live {
        Some(live) if same_but_managed_fields(live, &merged) => Value::Null,
        _ => json!(crate::meta::now()),
    };
    match list.iter_mut().find(|e| e.same(manager, "Apply", subresource)) {
        Some(entry) => {
            entry.fields = wanted;
            if !time.is_null() {
                entry.time = time;
            }
            entry.api_version = info.api_version();
        }
        None => list.push(Entry {
            manager: manager.into(),
            operation: "Apply".into(),
            api_version: info.api_version(),
            subresource: subresource.into(),
            time,
            fields: wanted,
        }),
    }
    store(&mut merged, list);
    Ok(merged)
}

/// Whether two versions of an object differ in nothing but their managed fields (and
/// the resource version a read stamps).
fn same_but_managed_fields(a: &Value, b: &Value) -> bool {
    let without = |object: &Value| {
        let mut object = object.clone();
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
            meta.remove("resourceVersion");
        }
        object
    };
    without(a) == without(b)
}

/// Upstream's `IgnoreManagedFieldsTimestampsTransformer`: a write whose only change is
/// the time of managedFields entries (the same entries otherwise, the rest of the object
/// unchanged) keeps the old times, so that it changes nothing at all and is not stored.
pub fn ignore_time_only_changes(old: &Value, new: &mut Value) {
    let (Some(before), Some(after)) = (
        old.pointer("/metadata/managedFields").and_then(Value::as_array),
        new.pointer("/metadata/managedFields").and_then(Value::as_array),
    ) else {
        return;
    };
    let without_time = |entry: &Value| {
        let mut entry = entry.clone();
        if let Some(map) = entry.as_object_mut() {
            map.remove("time");
        }
        entry
    };
    let pairs = || before.iter().zip(after);
    if before.len() != after.len()
        || pairs().all(|(a, b)| a.get("time") == b.get("time"))
        || !pairs().all(|(a, b)| without_time(a) == without_time(b))
        || !same_but_managed_fields(old, new)
    {
        return;
    }
    let kept = Value::Array(before.clone());
    if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("managedFields".into(), kept);
    }
}

/// The annotation client-side apply keeps its configuration in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The fields the live object's last-applied configuration set, where the live object
/// still holds the values it set (upstream's `allowedConflictsFromLastApplied`).
fn from_last_applied(info: &ResourceInfo, live: &Value) -> Set {
    let Some(text) = live["metadata"]["annotations"][LAST_APPLIED].as_str() else {
        return Set::default();
    };
    let Ok(last) = serde_json::from_str::<Value>(text) else {
        return Set::default();
    };
    if last["apiVersion"] != info.api_version().as_str() {
        return Set::default();
    }
    let mut allowed = Set::default();
    for path in owned_part(info, "", &last).members() {
        let ty = Ty::of_resource(info);
        if value_at(&last, &path, ty) == value_at(live, &path, ty) {
            insert(&mut allowed, &path);
        }
    }
    allowed
}

fn contains(set: &Set, path: &[String]) -> bool {
    let mut node = set;
    for element in path {
        match node.children.get(element) {
            Some(child) => node = child,
            None => return false,
        }
    }
    node.own
}

/// A path whose value is not a keyed item's existence only (`.` of a list item): items
/// conflict through their fields.
fn is_leafy(path: &[String], applied: &Value, ty: Ty) -> bool {
    match path.last() {
        Some(last) if last.starts_with("k:") => {
            value_at(applied, path, ty).is_none_or(|v| !v.is_object())
        }
        _ => true,
    }
}

fn conflict_error(
    info: &ResourceInfo,
    applied: &Value,
    conflicts: &[(Entry, Vec<String>)],
) -> ApiError {
    let name = applied["metadata"]["name"].as_str().unwrap_or("");
    let mut causes = Vec::new();
    let mut lines = Vec::new();
    for (entry, path) in conflicts {
        let mut who = format!("conflict with {:?}", entry.manager);
        if !entry.subresource.is_empty() {
            who.push_str(&format!(" with subresource {:?}", entry.subresource));
        }
        if entry.operation == "Update" {
            who.push_str(&format!(" using {}", entry.api_version));
        }
        let field = fieldset::describe(path);
        lines.push(format!("{who}: {field}"));
        causes.push(Cause { reason: "FieldManagerConflict", message: who, field });
    }
    let count = conflicts.len();
    let plural = if count == 1 { "conflict" } else { "conflicts" };
    let message = if count == 1 {
        format!("Apply failed with 1 conflict: {}", lines[0])
    } else {
        format!("Apply failed with {count} {plural}: {}", lines.join("\n"))
    };
    let mut error = ApiError::conflict(info.group, info.plural, name, "").with_causes(&causes);
    error.message = message;
    error
}

/// Merges `applied` into `live` by the type: objects and granular maps field by field,
/// keyed lists item by item, sets as unions, everything atomic replaced.
fn merge(live: &mut Value, applied: &Value, ty: Ty) {
    match (ty.shape(applied), &mut *live, applied) {
        (Shape::Granular, Value::Object(target), Value::Object(source)) => {
            for (key, value) in source {
                match target.get_mut(key) {
                    Some(existing) => merge(existing, value, ty.field(key)),
                    None => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Shape::Keyed(keys), Value::Array(items), Value::Array(wanted)) => {
            for item in wanted {
                let key = fieldset::item_key(item, &keys, ty.items());
                match items.iter_mut().find(|i| fieldset::item_key(i, &keys, ty.items()) == key) {
                    Some(existing) => merge(existing, item, ty.items()),
                    None => items.push(item.clone()),
                }
            }
        }
        (Shape::Set, Value::Array(items), Value::Array(wanted)) => {
            for item in wanted {
                if !items.contains(item) {
                    items.push(item.clone());
                }
            }
        }
        _ => *live = applied.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployments() -> &'static ResourceInfo {
        keelson_api::Registry::builtin().find("apps", "v1", "deployments").expect("deployments")
    }

    fn deployment(replicas: u32, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web" },
            "spec": {
                "replicas": replicas,
                "selector": { "matchLabels": { "app": "web" } },
                "template": { "metadata": { "labels": { "app": "web" } }, "spec": { "containers": [{ "name": "web", "image": image }] } },
            },
        })
    }

    #[test]
    fn two_managers_own_their_fields_and_conflict_on_shared_ones() {
        let info = deployments();
        let created =
            apply(info, "", "alice", false, None, &deployment(2, "nginx:1")).expect("created");
        assert_eq!(created["metadata"]["managedFields"][0]["manager"], "alice");
        assert_eq!(created["metadata"]["managedFields"][0]["operation"], "Apply");
        // Bob changes replicas with an ordinary update: he owns them now.
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(5);
        track_update(info, "", "bob", Some(&created), &mut scaled);
        let managers: Vec<&str> = scaled["metadata"]["managedFields"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|e| e["manager"].as_str())
            .collect();
        assert_eq!(managers, ["alice", "bob"]);
        // Alice re-applies 2 replicas: a conflict with bob, naming the field.
        let error =
            apply(info, "", "alice", false, Some(&scaled), &deployment(2, "nginx:1")).unwrap_err();
        assert_eq!(error.code, http::StatusCode::CONFLICT);
        assert_eq!(
            error.message,
            "Apply failed with 1 conflict: conflict with \"bob\" using apps/v1: .spec.replicas"
        );
        // The same value is no conflict; forcing takes the field over.
        assert!(apply(info, "", "alice", false, Some(&scaled), &deployment(5, "nginx:2")).is_ok());
        let forced = apply(info, "", "alice", true, Some(&scaled), &deployment(2, "nginx:1"))
            .expect("forced");
        assert_eq!(forced["spec"]["replicas"], 2);
        let bob = forced["metadata"]["managedFields"]
            .as_array()
            .expect("list")
            .iter()
            .any(|e| e["manager"] == "bob");
        assert!(!bob, "bob owned only replicas and lost them");
    }

    #[test]
    fn fields_no_longer_applied_are_removed() {
        let info = deployments();
        let mut with_label = deployment(2, "nginx:1");
        with_label["metadata"]["labels"] = json!({ "team": "a", "tier": "web" });
        let first = apply(info, "", "alice", false, None, &with_label).expect("first");
        let mut without = deployment(2, "nginx:1");
        without["metadata"]["labels"] = json!({ "team": "a" });
        let second = apply(info, "", "alice", false, Some(&first), &without).expect("second");
        assert_eq!(second["metadata"]["labels"], json!({ "team": "a" }));
        // Containers merge by name: another manager's container stays.
        let mut sidecar = second.clone();
        sidecar["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .expect("list")
            .push(json!({ "name": "log", "image": "busybox" }));
        track_update(info, "", "bob", Some(&second), &mut sidecar);
        let third = apply(info, "", "alice", false, Some(&sidecar), &deployment(2, "nginx:2"))
            .expect("third");
        let names: Vec<&str> = third["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["web", "log"]);
        assert_eq!(third["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:2");
    }

    #[test]
    fn times_move_only_with_changes() {
        let info = deployments();
        let stamped = |mut object: Value, time: &str| {
            for entry in object["metadata"]["managedFields"].as_array_mut().expect("entries") {
                entry["time"] = json!(time);
            }
            object
        };
        let created = stamped(
            apply(info, "", "alice", false, None, &deployment(2, "nginx:1")).expect("created"),
            "2020-01-01T00:00:00Z",
        );
        // Applying the same again keeps alice's time; another manager applying the same
        // values gets an entry without one.
        let again = apply(info, "", "alice", false, Some(&created), &deployment(2, "nginx:1"))
            .expect("again");
        assert_eq!(again, created);
        let shared =
            apply(info, "", "bob", false, Some(&created), &deployment(2, "nginx:1")).expect("bob");
        assert!(shared["metadata"]["managedFields"][1].get("time").is_none(), "{shared}");
        // An update that changes no field leaves its manager's entry alone.
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(3);
        track_update(info, "", "ops", Some(&created), &mut scaled);
        let scaled = stamped(scaled, "2020-01-01T00:00:00Z");
        let mut same = scaled.clone();
        track_update(info, "", "ops", Some(&scaled), &mut same);
        assert_eq!(same, scaled);
        // A write whose only change is a time keeps the old one; any other change keeps
        // the new one.
        let mut retimed = stamped(scaled.clone(), "2030-01-01T00:00:00Z");
        ignore_time_only_changes(&scaled, &mut retimed);
        assert_eq!(retimed, scaled);
        let mut changed = stamped(scaled.clone(), "2030-01-01T00:00:00Z");
        changed["spec"]["replicas"] = json!(4);
        ignore_time_only_changes(&scaled, &mut changed);
        assert_eq!(changed["metadata"]["managedFields"][0]["time"], "2030-01-01T00:00:00Z");
    }

    /// A custom resource whose schema has a keyed list, a set, an atomic map and an
    /// atomic list.
    fn gadgets() -> &'static ResourceInfo {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "ports": {"type": "array", "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name", "protocol"],
                "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "protocol": {"type": "string"},
                    "number": {"type": "integer"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "args": {"type": "array", "items": {"type": "string"}},
            "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                "additionalProperties": {"type": "string"}},
            "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                "x-kubernetes-preserve-unknown-fields": true}}}}});
        let crd = json!({"metadata": {"name": "gadgets.example.com"}, "spec": {"group": "example.com",
            "scope": "Namespaced", "names": {"plural": "gadgets", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": schema}}]},
            "status": {"conditions": [{"type": "Established", "status": "True"}]}});
        let served = crate::crd::Served::default();
        served.set(&[crd]);
        served.registry().find("example.com", "v1", "gadgets").expect("served")
    }

    fn gadget(spec: Value) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g", "labels": {"a": "1"}}, "spec": spec})
    }

    #[test]
    fn custom_resources_merge_by_their_schema() {
        let info = gadgets();
        let alice = gadget(json!({
            "ports": [{"name": "web", "protocol": "TCP", "number": 80}],
            "tags": ["a"], "args": ["x"], "selector": {"app": "g"},
            "template": {"metadata": {"labels": {"t": "1"}}, "spec": {"size": 1}},
        }));
        let first = apply(info, "", "alice", false, None, &alice).expect("first");
        let fields = &first["metadata"]["managedFields"][0]["fieldsV1"];
        let port = &fields["f:spec"]["f:ports"]["k:{\"name\":\"web\",\"protocol\":\"TCP\"}"];
        assert_eq!(port["f:number"], json!({}), "{fields}");
        assert_eq!(fields["f:spec"]["f:tags"]["v:\"a\""], json!({}), "{fields}");
        assert_eq!(fields["f:spec"]["f:args"], json!({}), "an unmarked list is atomic");
        assert_eq!(fields["f:spec"]["f:selector"], json!({}), "an atomic map is owned whole");
        assert_eq!(fields["f:metadata"]["f:labels"]["f:a"], json!({}));
        assert_eq!(fields["f:spec"]["f:template"]["f:metadata"]["f:labels"]["f:t"], json!({}));

        // Bob applies another port (same name, other protocol), another tag, his own args
        // and selector: keyed items and set members are his beside alice's; the atomic
        // list and map conflict (the label he shares with alice's value does not).
        let bob = gadget(json!({
            "ports": [{"name": "web", "protocol": "UDP", "number": 53}],
            "tags": ["b"], "args": ["y"], "selector": {"tier": "x"},
        }));
        let error = apply(info, "", "bob", false, Some(&first), &bob).unwrap_err();
        assert_eq!(error.code, http::StatusCode::CONFLICT);
        assert!(error.message.starts_with("Apply failed with 2 conflicts"), "{}", error.message);
        for field in [".spec.args", ".spec.selector"] {
            assert!(error.message.contains(field), "{}", error.message);
        }
        let mut bob = bob;
        bob["spec"].as_object_mut().map(|s| {
            s.remove("args");
            s.remove("selector")
        });
        let second = apply(info, "", "bob", false, Some(&first), &bob).expect("second");
        let spec = &second["spec"];
        assert_eq!(spec["ports"].as_array().map(Vec::len), Some(2), "{spec}");
        assert_eq!(spec["tags"], json!(["a", "b"]));
        assert_eq!(spec["selector"], json!({"app": "g"}));

        // Alice stops applying her port and tag: they go, bob's stay.
        let mut less = alice.clone();
        less["spec"]["ports"] = json!([]);
        less["spec"]["tags"] = json!([]);
        let third = apply(info, "", "alice", false, Some(&second), &less).expect("third");
        assert_eq!(
            third["spec"]["ports"],
            json!([{"name": "web", "protocol": "UDP", "number": 53}])
        );
        assert_eq!(third["spec"]["tags"], json!(["b"]));
    }
}

//! The CRD controllers of upstream's apiextensions-apiserver, as one level-triggered pass
//! over every CRD: names (`NamesAccepted`, `status.acceptedNames`), establishing
//! (`Established`, `status.storedVersions`), the cleanup finalizer
//! (`customresourcecleanup.apiextensions.k8s.io`: added on create; on delete, every
//! object of the resource is deleted before the finalizer goes), and the registry the
//! server serves from ([`super::Served::set`]).
//!
//! It runs inside the API server and follows the CRD watch cache. Must never serve a CRD
//! whose names conflict with an earlier one's.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use keelson_api::{Registry, ResourceInfo};
use serde_json::{Value, json};

use super::PREFIX;
use crate::ApiServer;
use crate::meta::{self, metadata};
use crate::registry::{self, Place};
use crate::status::{ApiError, ApiResult};
use crate::storage::{self, DeleteOptions};

/// The finalizer that holds a deleted CRD until its objects are gone.
pub const FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Follows the CRDs until the server stops: soon again while a deletion waits for
/// its objects to go.
pub async fn run(api: Arc<ApiServer>) {
    crate::cache::follow(api, PREFIX, Duration::from_secs(60), |api, crds| async move {
        reconcile_all(&api, &crds).await.then_some(Duration::from_millis(500))
    })
    .await
}

fn crd_info() -> &'static ResourceInfo {
    Registry::builtin()
        .find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .expect("customresourcedefinitions are registered")
}

/// One pass over the stored CRDs; returns whether a deletion is still waiting.
pub async fn reconcile_all(
    api: &ApiServer,
    stored: &[std::sync::Arc<keelson_store::KeyValue>],
) -> bool {
    let info = crd_info();
    let mut crds: Vec<(Value, i64)> = stored
        .iter()
        .filter_map(|kv| registry::decode(info, kv).ok().map(|v| (v, kv.mod_revision)))
        .collect();
    // Earlier CRDs keep their names when a later one asks for the same.
    crds.sort_by(|(a, _), (b, _)| {
        let key = |v: &Value| {
            (
                meta::str_field(v, "creationTimestamp").unwrap_or("").to_owned(),
                meta::name(v).unwrap_or("").to_owned(),
            )
        };
        key(a).cmp(&key(b))
    });
    let mut claimed: HashSet<(String, String)> = HashSet::new();
    let mut pending = false;
    // First decide everything, then serve it, then write it: a client that sees a CRD
    // established (or gone) finds its resource served (or not).
    let mut plans = Vec::new();
    for (crd, revision) in crds {
        let wanted = desired_status(&crd, &mut claimed);
        let deleting = metadata(&crd).contains_key("deletionTimestamp");
        let finalizers: Vec<Value> =
            metadata(&crd).get("finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
        let has_finalizer = finalizers.iter().any(|f| f == FINALIZER);
        let mut cleaned = false;
        if deleting && has_finalizer {
            match clean_up(api, &crd).await {
                Ok(done) => cleaned = done,
                Err(e) => {
                    tracing::warn!(crd = meta::name(&crd), error = %e.message, "cannot delete a CRD's objects");
                }
            }
            pending |= !cleaned;
        }
        plans.push((crd, revision, wanted, finalizers, cleaned));
    }
    let served: Vec<Value> = plans
        .iter()
        .filter(|(_, _, _, _, cleaned)| !cleaned)
        .map(|(crd, _, wanted, _, _)| {
            let mut crd = crd.clone();
            crd["status"] = wanted.clone();
            crd
        })
        .collect();
    api.custom.set(&served);
    for (crd, revision, wanted, finalizers, cleaned) in plans {
        let deleting = metadata(&crd).contains_key("deletionTimestamp");
        let has_finalizer = finalizers.iter().any(|f| f == FINALIZER);
        let mut crd = crd;
        let mut revision = revision;
        if crd["status"] != wanted {
            let mut updated = crd.clone();
            updated["status"] = wanted;
            match write(api, info, &crd, updated, revision, true).await {
                Ok(Some(written)) => {
                    revision = registry::resource_version(&written).unwrap_or(revision);
                    crd = written;
                }
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(crd = meta::name(&crd), error = %e.message, "cannot set a CRD's status");
                    pending = true;
                    continue;
                }
            }
        }
        let change = if !deleting && !has_finalizer {
            let mut list = finalizers.clone();
            list.push(json!(FINALIZER));
            Some(list)
        } else if cleaned {
            Some(finalizers.iter().filter(|f| *f != FINALIZER).cloned().collect())
        } else {
            None
        };
        if let Some(list) = change {
            let mut updated = crd.clone();
            updated["metadata"]["finalizers"] = Value::Array(list);
            if let Err(e) = write(api, info, &crd, updated, revision, false).await {
                tracing::warn!(crd = meta::name(&crd), error = %e.message, "cannot change the CRD cleanup finalizer");
                pending = true;
            }
        }
    }
    pending
}

/// The status the CRD should have, claiming its names in `claimed` when they are free.
fn desired_status(crd: &Value, claimed: &mut HashSet<(String, String)>) -> Value {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or("").to_owned();
    let names = &spec["names"];
    let kind = names["kind"].as_str().unwrap_or("");
    let list_kind =
        names["listKind"].as_str().map(str::to_owned).unwrap_or_else(|| format!("{kind}List"));
    let plural = names["plural"].as_str().unwrap_or("");
    let singular = names["singular"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| kind.to_lowercase());
    let short: Vec<String> = crate::meta::string_list(&names["shortNames"]);
    let resource_names = std::iter::once(plural.to_owned())
        .chain(std::iter::once(singular.clone()))
        .chain(short.iter().cloned());
    let kinds = [kind.to_owned(), list_kind.clone()];
    let claim = |name: &str, what: &str| (group.clone(), format!("{what}:{name}"));
    let mut conflict: Option<(&str, String)> = None;
    for name in resource_names.clone() {
        if claimed.contains(&claim(&name, "resource")) && conflict.is_none() {
            let reason = if name == plural {
                "PluralConflict"
            } else if name == singular {
                "SingularConflict"
            } else {
                "ShortNamesConflict"
            };
            conflict = Some((reason, format!("{name:?} is already in use")));
        }
    }
    for (i, name) in kinds.iter().enumerate() {
        if claimed.contains(&claim(name, "kind")) && conflict.is_none() {
            let reason = if i == 0 { "KindConflict" } else { "ListKindConflict" };
            conflict = Some((reason, format!("{name:?} is already in use")));
        }
    }
    let old_status = &crd["status"];
    let now = meta::now();
    let previous = |kind: &str, status: &str| -> String {
        old_status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == kind && c["status"] == status)
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| now.clone())
    };
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": kind,
            "status": status,
            "lastTransitionTime": previous(kind, status),
            "reason": reason,
            "message": message,
        })
    };
    let mut status = json!({});
    let mut conditions = Vec::new();
    match conflict {
        None => {
            for name in resource_names {
                claimed.insert(claim(&name, "resource"));
            }
            for name in &kinds {
                claimed.insert(claim(name, "kind"));
            }
            let mut accepted = json!({
                "plural": plural,
                "singular": singular,
                "kind": kind,
                "listKind": list_kind,
            });
            if !short.is_empty() {
                accepted["shortNames"] = json!(short);
            }
            if let Some(categories) = names["categories"].as_array().filter(|c| !c.is_empty()) {
                accepted["categories"] = json!(categories);
            }
            status["acceptedNames"] = accepted;
            conditions.push(condition(
                "NamesAccepted",
                "True",
                "NoConflicts",
                "no conflicts found",
            ));
            conditions.push(condition(
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            ));
        }
        Some((reason, message)) => {
            status["acceptedNames"] = old_status["acceptedNames"].clone();
            if status["acceptedNames"].is_null() {
                status["acceptedNames"] = json!({ "plural": "", "kind": "" });
            }
            conditions.push(condition("NamesAccepted", "False", reason, &message));
            if super::is_established(crd) {
                conditions.push(condition(
                    "Established",
                    "True",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                ));
            } else {
                conditions.push(condition(
                    "Established",
                    "False",
                    "NotAccepted",
                    "not all names are accepted",
                ));
            }
        }
    }
    if metadata(crd).contains_key("deletionTimestamp") {
        conditions.push(condition(
            "Terminating",
            "True",
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
        ));
    }
    status["conditions"] = Value::Array(conditions);
    let mut stored: Vec<Value> =
        old_status["storedVersions"].as_array().cloned().unwrap_or_default();
    for version in spec["versions"].as_array().into_iter().flatten() {
        if version["storage"] == json!(true) && !stored.contains(&version["name"]) {
            stored.push(version["name"].clone());
        }
    }
    status["storedVersions"] = Value::Array(stored);
    status
}

/// Writes a CRD (its status, or the rest); removes it when it is being deleted and no
/// finalizer is left. The written object, or `None` when it is gone.
async fn write(
    api: &ApiServer,
    info: &'static ResourceInfo,
    old: &Value,
    updated: Value,
    revision: i64,
    status: bool,
) -> ApiResult<Option<Value>> {
    let name = meta::name(old).unwrap_or("").to_owned();
    let place = Place { info, namespace: None, name: &name };
    let subresource = status.then_some("status");
    let object = registry::prepare_update(
        info,
        old,
        updated,
        subresource,
        &Default::default(),
        &mut Vec::new(),
    )?;
    let finalized = metadata(&object).contains_key("deletionTimestamp")
        && metadata(&object).get("finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty);
    if finalized {
        api.objects.remove(place, revision, false).await?;
        tracing::info!(crd = name, "deleted a CustomResourceDefinition after its objects");
        return Ok(None);
    }
    api.objects.replace(place, object, revision, false).await.map(Some)
}

/// Deletes every object of the CRD's resource; whether none is left.
async fn clean_up(api: &ApiServer, crd: &Value) -> ApiResult<bool> {
    let group = crd["spec"]["group"].as_str().unwrap_or("");
    let plural = crd["status"]["acceptedNames"]["plural"]
        .as_str()
        .filter(|p| !p.is_empty())
        .or_else(|| crd["spec"]["names"]["plural"].as_str())
        .unwrap_or("");
    // Any served version addresses the same stored objects.
    let Some(info) = api
        .custom
        .registry()
        .resources()
        .find(|r| r.is_custom() && r.group == group && r.plural == plural)
    else {
        // Never served: nothing can be stored under it.
        return Ok(true);
    };
    let prefix = info.storage_prefix();
    let page = api
        .store
        .list(&prefix, Default::default())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if page.items.is_empty() {
        return Ok(true);
    }
    for kv in &page.items {
        let object = registry::decode(info, kv)?;
        let name = meta::name(&object).unwrap_or("").to_owned();
        let namespace = meta::str_field(&object, "namespace").map(str::to_owned);
        let place = Place { info, namespace: namespace.as_deref(), name: &name };
        let options = DeleteOptions::from_value(&json!({}))?;
        match storage::delete(api, place, &options).await {
            Ok(_) => {}
            Err(e) if e.code == http::StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    let left = api.store.count(&prefix).await.map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(left == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(name: &str, plural: &str, kind: &str) -> Value {
        json!({"metadata": {"name": format!("{plural}.example.com"), "uid": name},
            "spec": {"group": "example.com", "names": {"plural": plural, "kind": kind, "shortNames": ["x"]},
                "versions": [{"name": "v1", "served": true, "storage": true}]}})
    }

    fn condition<'a>(status: &'a Value, kind: &str) -> (&'a str, &'a str, &'a str) {
        let c = status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == kind))
            .expect("condition");
        (
            c["status"].as_str().unwrap_or(""),
            c["reason"].as_str().unwrap_or(""),
            c["message"].as_str().unwrap_or(""),
        )
    }

    #[test]
    fn the_first_crd_keeps_its_names_and_a_later_one_conflicts() {
        let mut claimed = HashSet::new();
        let first = desired_status(&crd("a", "widgets", "Widget"), &mut claimed);
        assert_eq!(
            condition(&first, "NamesAccepted"),
            ("True", "NoConflicts", "no conflicts found")
        );
        assert_eq!(condition(&first, "Established").0, "True");
        assert_eq!(first["acceptedNames"]["listKind"], "WidgetList");
        assert_eq!(first["acceptedNames"]["singular"], "widget");
        assert_eq!(first["storedVersions"], json!(["v1"]));
        let same_kind = desired_status(&crd("b", "gadgets", "Widget"), &mut claimed);
        assert_eq!(
            condition(&same_kind, "NamesAccepted"),
            ("False", "SingularConflict", "\"widget\" is already in use")
        );
        let short = desired_status(&crd("d", "things", "Thing"), &mut claimed);
        assert_eq!(
            condition(&short, "NamesAccepted"),
            ("False", "ShortNamesConflict", "\"x\" is already in use")
        );
        assert_eq!(
            condition(&same_kind, "Established"),
            ("False", "NotAccepted", "not all names are accepted")
        );
        let mut other = crd("c", "widgets", "Thing");
        other["spec"]["names"]["shortNames"] = json!([]);
        let plural = desired_status(&other, &mut claimed);
        assert_eq!(
            condition(&plural, "NamesAccepted"),
            ("False", "PluralConflict", "\"widgets\" is already in use")
        );
    }
}

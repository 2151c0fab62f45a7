//! The resource quota controller (upstream's `pkg/controller/resourcequota`, which
//! the controller manager runs): every quota's `status.hard` is its `spec.hard`, and its
//! `status.used` what the stored objects of its namespace in its scopes use.
//!
//! It runs inside the API server until Keelson has a controller manager. It is
//! level-triggered — a pass recomputes a namespace's quotas from the stored objects — and
//! wakes when a quota's spec is new or changed, when an object that counts is deleted
//! or updated in a way admission does not credit (services and claims changed, pods
//! finished or being deleted), and every [`RESYNC`] for everything else (other
//! `count/<resource>` deletes, usage charged for writes that then failed).
//!
//! It never wakes on admission's own charges: recounting while a charged object is not
//! yet stored would undo the charge.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use keelson_store::Event;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

use super::PREFIX;
use super::evaluator::{self, Evaluator};
use crate::ApiServer;
use crate::quantity::{self, ResourceList};

/// How often every quota is recounted whatever happened.
pub const RESYNC: Duration = Duration::from_secs(30);

/// The resources whose changes wake the controller.
const FEEDS: [&str; 7] = [
    PREFIX,
    "/registry/pods/",
    "/registry/services/specs/",
    "/registry/persistentvolumeclaims/",
    "/registry/configmaps/",
    "/registry/secrets/",
    "/registry/controllers/",
];

/// Follows quotas and the objects they count until the server stops.
pub async fn run(api: Arc<ApiServer>) {
    let (wake, mut woken) = mpsc::unbounded_channel::<String>();
    for prefix in FEEDS {
        tokio::spawn(follow(api.clone(), prefix, wake.clone()));
    }
    drop(wake);
    loop {
        let first = tokio::select! {
            namespace = woken.recv() => match namespace {
                Some(namespace) => Some(namespace),
                None => return,
            },
            () = tokio::time::sleep(RESYNC) => None,
        };
        if api.shutting_down() {
            return;
        }
        match first {
            None => reconcile_all(&api).await,
            Some(namespace) => {
                // A burst of changes is one pass per namespace.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let mut namespaces = BTreeSet::from([namespace]);
                while let Ok(more) = woken.try_recv() {
                    namespaces.insert(more);
                }
                for namespace in namespaces {
                    reconcile_namespace(&api, &namespace).await;
                }
            }
        }
    }
}

/// Sends the namespace of every change under `prefix` that may change usage.
async fn follow(api: Arc<ApiServer>, prefix: &'static str, wake: mpsc::UnboundedSender<String>) {
    loop {
        let Some((_, mut live)) = crate::cache::subscribe(&api, prefix).await else { return };
        loop {
            match live.recv().await {
                Ok(event) => {
                    if let Some(namespace) = wakes(prefix, &event)
                        && wake.send(namespace).is_err()
                    {
                        return;
                    }
                }
                // Missed changes are caught by the resync.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }
}

/// The namespace to recount after `event`, if it may change usage.
fn wakes(prefix: &str, event: &Event) -> Option<String> {
    let (kv, updated) = match event {
        Event::Delete { prev, .. } => {
            return (prefix != PREFIX).then(|| namespace_of(prefix, &prev.key)).flatten();
        }
        Event::Put { kv, prev } => (kv, prev.is_some()),
    };
    let wake = match prefix {
        PREFIX => {
            let object: Value = serde_json::from_slice(&kv.value).ok()?;
            quantity::to_json(&quantity::resource_list(&object["spec"]["hard"]))
                != object["status"]["hard"]
                || object["status"]["used"].is_null()
        }
        // Every pod write comes by here: read the two fields, build nothing else.
        "/registry/pods/" => {
            let pod: PodProbe = serde_json::from_slice(&kv.value).ok()?;
            matches!(pod.status.phase.as_deref(), Some("Succeeded" | "Failed"))
                || pod.metadata.deletion_timestamp.is_some()
        }
        "/registry/services/specs/" | "/registry/persistentvolumeclaims/" => updated,
        _ => false,
    };
    if wake { namespace_of(prefix, &kv.key) } else { None }
}

/// What [`wakes`] reads of a pod.
#[derive(serde::Deserialize)]
struct PodProbe {
    #[serde(default)]
    metadata: PodProbeMeta,
    #[serde(default)]
    status: PodProbeStatus,
}

#[derive(Default, serde::Deserialize)]
struct PodProbeMeta {
    #[serde(rename = "deletionTimestamp")]
    deletion_timestamp: Option<serde::de::IgnoredAny>,
}

#[derive(Default, serde::Deserialize)]
struct PodProbeStatus {
    phase: Option<String>,
}

fn namespace_of(prefix: &str, key: &str) -> Option<String> {
    let (namespace, _) = key.strip_prefix(prefix)?.split_once('/')?;
    Some(namespace.to_owned())
}

/// Recounts every quota of every namespace.
pub async fn reconcile_all(api: &ApiServer) {
    let namespaces: BTreeSet<String> = crate::admission::stored(api, PREFIX)
        .await
        .iter()
        .filter_map(|q| q["metadata"]["namespace"].as_str().map(str::to_owned))
        .collect();
    for namespace in namespaces {
        reconcile_namespace(api, &namespace).await;
    }
}

/// Recounts the quotas of one namespace; a quota whose write lost a race is read again.
pub async fn reconcile_namespace(api: &ApiServer, namespace: &str) {
    for quota in super::quotas_in(api, namespace).await {
        let mut quota = quota;
        for _ in 0..3 {
            let (hard, used) = usage(api, namespace, &quota.object).await;
            let status = &quota.object["status"];
            if status["hard"] == quantity::to_json(&hard)
                && status["used"] == quantity::to_json(&used)
            {
                break;
            }
            let name = quota.object["metadata"]["name"].as_str().unwrap_or("").to_owned();
            match super::write_used(api, &quota, Some(&hard), used).await {
                Ok(()) => break,
                Err(e) if e.is_conflict() => match super::read(api, namespace, &name).await {
                    Ok(Some(again)) => quota = again,
                    _ => break,
                },
                Err(e) => {
                    tracing::warn!(namespace, quota = name, error = %e.message, "cannot update quota status");
                    break;
                }
            }
        }
    }
}

/// A quota's hard limits and what its namespace's stored objects use of them
/// (upstream's `CalculateUsage`); usage of names no evaluator counts is kept as it was.
async fn usage(api: &ApiServer, namespace: &str, quota: &Value) -> (ResourceList, ResourceList) {
    let hard = quantity::resource_list(&quota["spec"]["hard"]);
    let scopes = evaluator::scopes(quota);
    let mut used = quantity::resource_list(&quota["status"]["used"]);
    let now = super::now();
    for e in Evaluator::for_names(&api.registry(), hard.keys()) {
        let matched = e.matching(hard.keys());
        let mut total: ResourceList =
            matched.iter().map(|n| (n.clone(), Default::default())).collect();
        let stored = crate::admission::stored_in(api, &e.info.storage_prefix(), namespace).await;
        for object in stored.iter().filter(|o| scopes.iter().all(|s| e.in_scope(s, o))) {
            quantity::add_into(&mut total, &quantity::mask(&e.usage(object, now), &matched));
        }
        used.extend(total);
    }
    let used = quantity::mask(&used, hard.keys());
    (hard, used)
}

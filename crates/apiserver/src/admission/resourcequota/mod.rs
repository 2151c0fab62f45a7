//! ResourceQuota (upstream's `admission/plugin/resourcequota`): a namespaced write
//! that would take any quota of its namespace past `status.hard` is refused in
//! upstream's words; one that fits is charged to every quota covering it — `status.used`
//! rewritten with an optimistic-concurrency write before the object is stored, retried
//! on a lost race with the quota read again. The charge of a write that then fails is
//! corrected by the controller manager's `resourcequota-controller`, which recomputes
//! usage from the objects (with the same evaluators, `keelson_core::quota`).
//!
//! Must never charge a dry run, and never refuse a write no quota covers.

pub use keelson_core::quota as evaluator;

use keelson_api::ResourceInfo;
use serde_json::Value;

use super::{Attributes, Operation};
use crate::ApiServer;
use crate::quantity::{self, ResourceList};
use crate::registry::Place;
use crate::status::{ApiError, ApiResult};
use evaluator::Evaluator;

pub const PREFIX: &str = "/registry/resourcequotas/";

/// Attempts at charging the quotas before the write fails with the conflict.
const RETRIES: usize = 10;

/// A quota as read, with the revision its write is conditional on.
pub struct Quota {
    pub object: Value,
    pub revision: i64,
}

impl Quota {
    fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or("")
    }
}

/// The quotas of a namespace, from the watch cache, in name order.
pub async fn quotas_in(api: &ApiServer, namespace: &str) -> Vec<Quota> {
    let dir = format!("{PREFIX}{namespace}/");
    let kvs = match api.caches.get(PREFIX).await {
        Some(cache) => cache.objects(&dir).0,
        None => api
            .store
            .list(&dir, Default::default())
            .await
            .map(|p| p.items.into_iter().map(std::sync::Arc::new).collect())
            .unwrap_or_default(),
    };
    kvs.iter()
        .filter_map(|kv| {
            let object = serde_json::from_slice(&kv.value).ok()?;
            Some(Quota { object, revision: kv.mod_revision })
        })
        .collect()
}

/// Resources quota never looks at (upstream's `DefaultIgnoredResources`).
fn ignored(info: &ResourceInfo) -> bool {
    matches!(
        (info.group, info.plural),
        ("" | "events.k8s.io", "events") | ("authorization.k8s.io", "localsubjectaccessreviews")
    )
}

/// Seconds since the epoch, for pods past their deletion grace period.
pub fn now() -> i64 {
    crate::meta::now_timestamp().as_second()
}

/// ResourceQuota; charges quota status through the server, so it holds the server.
pub struct ResourceQuota(pub super::Server);

impl super::Plugin for ResourceQuota {
    fn handles(&self, operation: Operation) -> bool {
        matches!(operation, Operation::Create | Operation::Update)
    }

    fn validating(&self) -> Option<&dyn super::Validating> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl super::Validating for ResourceQuota {
    async fn validate(&self, a: &Attributes<'_>, object: Option<&Value>) -> ApiResult<Vec<String>> {
        match object {
            Some(object) => validate(&*self.0.get()?, a, object).await.map(|()| Vec::new()),
            None => Ok(Vec::new()),
        }
    }
}

/// Checks the write against the namespace's quotas and charges them.
pub async fn validate(api: &ApiServer, a: &Attributes<'_>, object: &Value) -> ApiResult<()> {
    if !a.subresource.is_empty()
        || a.namespace.is_empty()
        || a.operation == Operation::Delete
        || ignored(a.info)
    {
        return Ok(());
    }
    let evaluator = Evaluator::for_resource(a.info.group, a.info.plural);
    if !evaluator.handles(a.operation == Operation::Create, object, a.old) {
        return Ok(());
    }
    let mut quotas = quotas_in(api, a.namespace).await;
    let mut last_lost = String::new();
    for _ in 0..RETRIES {
        if quotas.is_empty() {
            return Ok(());
        }
        let charges = check(a, &evaluator, &quotas, object)?;
        if a.dry_run {
            return Ok(());
        }
        let mut lost = Vec::new();
        for (index, used) in charges {
            match write_used(api, &quotas[index], None, used).await {
                Ok(()) => {}
                Err(e) if e.is_conflict() => lost.push(quotas[index].name().to_owned()),
                Err(e) => return Err(e),
            }
        }
        if lost.is_empty() {
            return Ok(());
        }
        // Only the quotas whose write lost a race are checked again, read afresh.
        quotas = Vec::new();
        last_lost = lost.last().cloned().unwrap_or_default();
        for name in lost {
            if let Some(quota) = read(api, a.namespace, &name).await? {
                quotas.push(quota);
            }
        }
    }
    // Upstream's answer after its retries: the last conflict.
    Err(ApiError::modified("", "resourcequotas", &last_lost))
}

/// Upstream's `CheckRequest`: the new `status.used` of each quota the write changes,
/// or the refusal.
pub fn check(
    a: &Attributes<'_>,
    evaluator: &Evaluator,
    quotas: &[Quota],
    object: &Value,
) -> ApiResult<Vec<(usize, ResourceList)>> {
    let mut covering = Vec::new();
    for (index, quota) in quotas.iter().enumerate() {
        let q = &quota.object;
        if !evaluator.matches(q, object) {
            continue;
        }
        let hard = quantity::resource_list(&q["status"]["hard"]);
        let restricted = evaluator.matching(hard.keys());
        let name = quota.name();
        evaluator
            .constraints(&restricted, object)
            .map_err(|e| a.forbidden(format!("failed quota: {name}: {e}")))?;
        let used = quantity::resource_list(&q["status"]["used"]);
        if restricted.iter().any(|r| !used.contains_key(r)) {
            let mut names = restricted.clone();
            names.sort();
            return Err(a.forbidden(format!(
                "status unknown for quota: {name}, resources: {}",
                names.join(",")
            )));
        }
        covering.push(index);
    }
    if covering.is_empty() {
        return Ok(Vec::new());
    }
    let now = now();
    let input = evaluator.usage(object, now);
    let negative: Vec<&str> =
        input.iter().filter(|(_, q)| q.is_negative()).map(|(n, _)| n.as_str()).collect();
    if !negative.is_empty() {
        return Err(a.forbidden(format!(
            "quota usage is negative for resource(s): {}",
            negative.join(",")
        )));
    }
    // An update is charged what it adds, to quotas that covered the old object too.
    let delta = a
        .old
        .filter(|_| a.operation == Operation::Update)
        .map(|old| (subtract_non_negative(&input, &evaluator.usage(old, now)), old));
    let mut charges = Vec::new();
    for index in covering {
        let q = &quotas[index].object;
        let usage = match &delta {
            Some((delta, old)) if evaluator.matches(q, old) => delta,
            _ => &input,
        };
        let usage: ResourceList =
            usage.iter().filter(|(_, v)| !v.is_zero()).map(|(k, v)| (k.clone(), *v)).collect();
        if usage.is_empty() {
            continue;
        }
        let hard = quantity::resource_list(&q["status"]["hard"]);
        let used = quantity::resource_list(&q["status"]["used"]);
        let requested = quantity::mask(&usage, hard.keys());
        let new_used = quantity::add(&used, &requested);
        let exceeded: Vec<String> = requested
            .keys()
            .filter(|name| hard.get(*name).is_some_and(|limit| new_used[*name] > *limit))
            .cloned()
            .collect();
        if !exceeded.is_empty() {
            return Err(a.forbidden(format!(
                "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                quotas[index].name(),
                quantity::pretty(&quantity::mask(&requested, &exceeded)),
                quantity::pretty(&quantity::mask(&used, &exceeded)),
                quantity::pretty(&quantity::mask(&hard, &exceeded)),
            )));
        }
        if new_used != used {
            charges.push((index, new_used));
        }
    }
    Ok(charges)
}

/// Upstream's `SubtractWithNonNegativeResult`.
fn subtract_non_negative(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut result = ResourceList::new();
    for (name, q) in a {
        let mut left = *q;
        if let Some(other) = b.get(name) {
            left.sub(other);
        }
        result.insert(name.clone(), if left.is_negative() { Default::default() } else { left });
    }
    for name in b.keys() {
        result.entry(name.clone()).or_default();
    }
    result
}

/// A quota read from the store, or `None` if it is gone.
pub async fn read(api: &ApiServer, namespace: &str, name: &str) -> ApiResult<Option<Quota>> {
    let place = Place { info: quota_info()?, namespace: Some(namespace), name };
    match api.objects.get(place).await {
        Ok((object, revision)) => Ok(Some(Quota { object, revision })),
        Err(e) if e.code == http::StatusCode::NOT_FOUND => Ok(None),
        Err(e) => Err(e),
    }
}

fn quota_info() -> ApiResult<&'static ResourceInfo> {
    keelson_api::Registry::builtin()
        .find("", "v1", "resourcequotas")
        .ok_or_else(|| ApiError::internal("resourcequotas are not registered"))
}

/// Writes a quota's status (`hard` too when given) if it is still at the revision read.
pub async fn write_used(
    api: &ApiServer,
    quota: &Quota,
    hard: Option<&ResourceList>,
    used: ResourceList,
) -> ApiResult<()> {
    let info = quota_info()?;
    let namespace = quota.object["metadata"]["namespace"].as_str().unwrap_or("");
    let place = Place { info, namespace: Some(namespace), name: quota.name() };
    let mut updated = quota.object.clone();
    if let Some(hard) = hard {
        updated["status"]["hard"] = quantity::to_json(hard);
    }
    updated["status"]["used"] = quantity::to_json(&used);
    let object = crate::registry::prepare_update(
        info,
        &quota.object,
        updated,
        Some("status"),
        &Default::default(),
        &mut Vec::new(),
    )?;
    api.objects.replace(place, object, quota.revision, false).await.map(drop)
}

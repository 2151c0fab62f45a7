//! `disruption-controller` (upstream's `pkg/controller/disruption`): keeps each
//! PodDisruptionBudget's status — the pods expected (from the budget's own count, or
//! the scale of the pods' controllers: ReplicationControllers, Deployments,
//! ReplicaSets, StatefulSets, anything with a `scale` subresource), how many must stay
//! healthy, how many are, and so the `disruptionsAllowed` that the Eviction API spends.
//! Pods the Eviction API just evicted (`status.disruptedPods`) count as unhealthy for
//! two minutes; a pod still there after that is reported. It also clears a pod's
//! `DisruptionTarget` condition that no deletion followed within two minutes.
//!
//! Must never report more disruptions allowed than the budget gives: when the expected
//! count cannot be computed, the status says zero (upstream's fail-safe).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use keelson_api::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use keelson_api::k8s_openapi::api::core::v1::{
    ObjectReference, Pod, PodCondition, ReplicationController,
};
use keelson_api::k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, OwnerReference, Time,
};
use keelson_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_core::labels;
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use keelson_runtime::events::{EventType, Recorder};
use keelson_runtime::informer::{Change, Informer, key_of};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::replicaset::{NAMESPACE_INDEX, by_namespace};

pub const NAME: &str = "disruption-controller";
pub const SERVICE_ACCOUNT: &str = "disruption-controller";
const WORKERS: usize = 2;

/// How long a pod the Eviction API evicted counts as disrupted, waiting for its
/// deletion (upstream's `DeletionTimeout`).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a `DisruptionTarget` condition may stand without a deletion following.
const STALE_DISRUPTION_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Work {
    Budget(String),
    /// A pod whose `DisruptionTarget` condition may have gone stale.
    StalePod(String),
}

pub fn start(context: Context) -> StartFuture {
    Box::pin(run(context))
}

struct Controller {
    client: Client,
    recorder: Recorder,
    budgets: Arc<Informer<PodDisruptionBudget>>,
    pods: Arc<Informer<Pod>>,
    replica_sets: Arc<Informer<ReplicaSet>>,
    deployments: Arc<Informer<Deployment>>,
    controllers: Arc<Informer<ReplicationController>>,
    stateful_sets: Arc<Informer<StatefulSet>>,
}

async fn run(context: Context) -> keelson_runtime::Result<()> {
    let controller = Arc::new(Controller {
        client: context.client.clone(),
        recorder: Recorder::new(context.client.clone(), "controllermanager", None),
        budgets: context.informers.get::<PodDisruptionBudget>(),
        pods: context.informers.get::<Pod>(),
        replica_sets: context.informers.get::<ReplicaSet>(),
        deployments: context.informers.get::<Deployment>(),
        controllers: context.informers.get::<ReplicationController>(),
        stateful_sets: context.informers.get::<StatefulSet>(),
    });
    controller.budgets.add_index(NAMESPACE_INDEX, by_namespace::<PodDisruptionBudget>);
    controller.pods.add_index(NAMESPACE_INDEX, by_namespace::<Pod>);
    let queue = context.queue::<Work>();
    let q = queue.clone();
    controller.budgets.on_change(move |change| {
        let (Change::Added(pdb) | Change::Updated { new: pdb, .. } | Change::Deleted(pdb)) = change;
        q.add(Work::Budget(key_of(&**pdb)));
    });
    let (q, c) = (queue.clone(), controller.clone());
    controller.pods.on_change(move |change| {
        let (Change::Added(pod) | Change::Updated { new: pod, .. } | Change::Deleted(pod)) = change;
        if let Some(pdb) = c.budget_of(pod) {
            q.add(Work::Budget(key_of(&*pdb)));
        }
        if !matches!(change, Change::Deleted(_))
            && let Some(wait) = stale_disruption(pod, Timestamp::now())
        {
            q.add_after(Work::StalePod(key_of(&**pod)), wait);
        }
    });
    controller.budgets.wait_synced().await;
    controller.pods.wait_synced().await;
    controller.replica_sets.wait_synced().await;
    controller.deployments.wait_synced().await;
    controller.controllers.wait_synced().await;
    controller.stateful_sets.wait_synced().await;
    run_workers(&context, queue, WORKERS, move |work: Work| {
        let controller = controller.clone();
        async move {
            match work {
                Work::Budget(key) => controller.sync(&key).await,
                Work::StalePod(key) => controller.clear_stale_disruption(&key).await,
            }
        }
    })
    .await;
    Ok(())
}

/// An object's reference for events.
fn reference<K: kube::Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    let meta = object.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    }
}

impl Controller {
    /// The budget covering `pod`: one of its namespace whose (non-empty) selector
    /// matches it; a pod matched by several gets a warning, as upstream warns.
    fn budget_of(&self, pod: &Pod) -> Option<Arc<PodDisruptionBudget>> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut matching: Vec<Arc<PodDisruptionBudget>> = self
            .budgets
            .by_index(NAMESPACE_INDEX, namespace)
            .into_iter()
            .filter(|pdb| {
                let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
                // An empty selector picks no pod here (upstream's lister), though the
                // budget itself counts every pod of its namespace.
                selector.is_some_and(|s| {
                    s.match_labels.as_ref().is_some_and(|m| !m.is_empty())
                        || s.match_expressions.as_ref().is_some_and(|e| !e.is_empty())
                }) && labels::matches(selector, pod.metadata.labels.as_ref())
            })
            .collect();
        matching.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        if matching.len() > 1 {
            let message = format!(
                "Pod {:?}/{:?} matches multiple PodDisruptionBudgets.  Chose {:?} arbitrarily.",
                namespace,
                pod.metadata.name.as_deref().unwrap_or_default(),
                matching[0].metadata.name.as_deref().unwrap_or_default()
            );
            self.recorder.event(
                &reference(pod),
                EventType::Warning,
                "MultiplePodDisruptionBudgets",
                &message,
            );
        }
        matching.into_iter().next()
    }

    fn pods_of(&self, pdb: &PodDisruptionBudget) -> Vec<Arc<Pod>> {
        let namespace = pdb.metadata.namespace.as_deref().unwrap_or_default();
        let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
        let mut pods: Vec<Arc<Pod>> = self
            .pods
            .by_index(NAMESPACE_INDEX, namespace)
            .into_iter()
            .filter(|pod| labels::matches(selector, pod.metadata.labels.as_ref()))
            .collect();
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        pods
    }

    async fn sync(&self, key: &str) -> Result<Action, kube::Error> {
        let Some(pdb) = self.budgets.get(key) else { return Ok(Action::AwaitChange) };
        let event_ref = reference(&*pdb);
        let pods = self.pods_of(&pdb);
        if pods.is_empty() {
            self.recorder.event(&event_ref, EventType::Normal, "NoPods", "No matching pods found");
        }
        let counts = match self.expected(&pdb, &pods).await {
            Ok(counts) => counts,
            Err(why) => {
                let message = format!("Failed to calculate the number of expected pods: {why}");
                self.recorder.event(
                    &event_ref,
                    EventType::Warning,
                    "CalculateExpectedPodCountFailed",
                    &message,
                );
                return self.fail_safe(&pdb, &why).await;
            }
        };
        if !counts.unmanaged.is_empty() {
            let selector =
                serde_json::to_string(&pdb.spec.as_ref().and_then(|s| s.selector.clone()))
                    .unwrap_or_default();
            let message = format!(
                "Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."
            );
            self.recorder.event(&event_ref, EventType::Warning, "UnmanagedPods", &message);
        }
        let now = Timestamp::now();
        let (disrupted, recheck) = self.disrupted(&pdb, &pods, now);
        let healthy = count_healthy(&pods, &disrupted, now);
        self.write_status(&pdb, healthy, counts.desired_healthy, counts.expected, disrupted)
            .await?;
        Ok(match recheck {
            Some(at) => Action::RequeueAfter(until(at, now)),
            None => Action::AwaitChange,
        })
    }

    /// The pods the Eviction API recorded, still within their deletion timeout; and
    /// when the first of them runs out.
    fn disrupted(
        &self,
        pdb: &PodDisruptionBudget,
        pods: &[Arc<Pod>],
        now: Timestamp,
    ) -> (BTreeMap<String, Time>, Option<Timestamp>) {
        let recorded = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref());
        let mut kept = BTreeMap::new();
        let mut recheck: Option<Timestamp> = None;
        let Some(recorded) = recorded else { return (kept, recheck) };
        for pod in pods {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let name = pod.metadata.name.clone().unwrap_or_default();
            let Some(at) = recorded.get(&name) else { continue };
            let expected_deletion = at.0 + DELETION_TIMEOUT;
            if expected_deletion < now {
                let message = format!(
                    "Pod was expected by PDB {}/{} to be deleted but it wasn't",
                    // Upstream's message names the namespace twice; so does this one.
                    pdb.metadata.namespace.as_deref().unwrap_or_default(),
                    pdb.metadata.namespace.as_deref().unwrap_or_default()
                );
                self.recorder.event(&reference(&**pod), EventType::Warning, "NotDeleted", &message);
            } else {
                if recheck.is_none_or(|r| expected_deletion < r) {
                    recheck = Some(expected_deletion);
                }
                kept.insert(name, at.clone());
            }
        }
        (kept, recheck)
    }

    /// Upstream's `getExpectedPodCount`.
    async fn expected(
        &self,
        pdb: &PodDisruptionBudget,
        pods: &[Arc<Pod>],
    ) -> Result<Counts, String> {
        let spec = pdb.spec.clone().unwrap_or_default();
        if let Some(max_unavailable) = &spec.max_unavailable {
            let (expected, unmanaged) = self.expected_scale(pods).await?;
            let unavailable = scaled(max_unavailable, expected)?;
            let desired_healthy = (expected - unavailable).max(0);
            return Ok(Counts { expected, desired_healthy, unmanaged });
        }
        match &spec.min_available {
            Some(IntOrString::Int(min)) => Ok(Counts {
                expected: i32::try_from(pods.len()).unwrap_or(i32::MAX),
                desired_healthy: *min,
                unmanaged: Vec::new(),
            }),
            Some(percent @ IntOrString::String(_)) => {
                let (expected, unmanaged) = self.expected_scale(pods).await?;
                Ok(Counts { expected, desired_healthy: scaled(percent, expected)?, unmanaged })
            }
            None => Ok(Counts::default()),
        }
    }

    /// The replicas the pods' controllers want, each controller once; the pods with no
    /// controller.
    async fn expected_scale(&self, pods: &[Arc<Pod>]) -> Result<(i32, Vec<String>), String> {
        let mut scales: HashMap<String, i32> = HashMap::new();
        let mut unmanaged = Vec::new();
        for pod in pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let owners = pod.metadata.owner_references.as_deref().unwrap_or_default();
            let Some(owner) = owners.iter().find(|o| o.controller == Some(true)) else {
                unmanaged.push(name);
                continue;
            };
            if scales.contains_key(&owner.uid) {
                continue;
            }
            let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
            match self.controller_scale(owner, namespace).await? {
                Some((uid, replicas)) => {
                    scales.insert(uid, replicas);
                }
                None => return Err(format!("found no controllers for pod {name:?}")),
            }
        }
        Ok((scales.values().sum(), unmanaged))
    }

    /// The uid and wanted replicas of the controller `owner` names, tried as upstream's
    /// finders try it: ReplicationController, Deployment (through its ReplicaSet),
    /// ReplicaSet, StatefulSet, then any resource's `scale`.
    async fn controller_scale(
        &self,
        owner: &OwnerReference,
        namespace: &str,
    ) -> Result<Option<(String, i32)>, String> {
        let group = owner.api_version.rsplit_once('/').map_or("", |(group, _)| group);
        let key = format!("{namespace}/{}", owner.name);
        let same = |uid: Option<&String>| uid == Some(&owner.uid);
        let apps = matches!(group, "apps" | "extensions");
        if owner.kind == "ReplicationController" && group.is_empty() {
            if let Some(rc) = self.controllers.get(&key).filter(|rc| same(rc.metadata.uid.as_ref()))
            {
                let replicas = rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                return Ok(Some((owner.uid.clone(), replicas)));
            }
        } else if owner.kind == "ReplicaSet" && apps {
            if let Some(rs) =
                self.replica_sets.get(&key).filter(|rs| same(rs.metadata.uid.as_ref()))
            {
                let rs_owners = rs.metadata.owner_references.as_deref().unwrap_or_default();
                match rs_owners.iter().find(|o| o.controller == Some(true)) {
                    Some(deployment) if deployment.kind == "Deployment" => {
                        let group = deployment.api_version.rsplit_once('/').map_or("", |(g, _)| g);
                        let key = format!("{namespace}/{}", deployment.name);
                        let found = matches!(group, "apps" | "extensions")
                            .then(|| self.deployments.get(&key))
                            .flatten()
                            .filter(|d| d.metadata.uid.as_ref() == Some(&deployment.uid));
                        if let Some(d) = found {
                            let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                            return Ok(Some((deployment.uid.clone(), replicas)));
                        }
                    }
                    _ => {
                        let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                        return Ok(Some((owner.uid.clone(), replicas)));
                    }
                }
            }
        } else if owner.kind == "StatefulSet"
            && group == "apps"
            && let Some(set) =
                self.stateful_sets.get(&key).filter(|s| same(s.metadata.uid.as_ref()))
        {
            let replicas = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            return Ok(Some((owner.uid.clone(), replicas)));
        }
        self.scale_of(owner, namespace).await
    }

    /// The `scale` subresource of the owner's resource (a custom workload, say).
    async fn scale_of(
        &self,
        owner: &OwnerReference,
        namespace: &str,
    ) -> Result<Option<(String, i32)>, String> {
        let (group, version) =
            owner.api_version.rsplit_once('/').unwrap_or(("", &owner.api_version));
        let discovery = kube::Discovery::new(self.client.clone())
            .filter(&[group])
            .run_aggregated()
            .await
            .map_err(|e| e.to_string())?;
        let resources =
            discovery.get(group).map(|g| g.versioned_resources(version)).unwrap_or_default();
        let Some((resource, capabilities)) =
            resources.into_iter().find(|(r, _)| r.kind == owner.kind)
        else {
            return Err(format!(
                "no matches for kind {:?} in version {:?}",
                owner.kind, owner.api_version
            ));
        };
        let base = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let path =
            format!("{base}/namespaces/{namespace}/{}/{}/scale", resource.plural, owner.name);
        let request = http::Request::get(&path).body(Vec::new()).map_err(|e| e.to_string())?;
        match self.client.request::<serde_json::Value>(request).await {
            Ok(scale) if scale["metadata"]["uid"].as_str() == Some(owner.uid.as_str()) => {
                let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
                Ok(Some((owner.uid.clone(), i32::try_from(replicas).unwrap_or(i32::MAX))))
            }
            Ok(_) => Ok(None),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                if capabilities.subresources.iter().any(|(sub, _)| sub.plural == "scale") {
                    Ok(None)
                } else {
                    // A GroupResource as upstream prints it: `configmaps`, `widgets.example.com`.
                    let resource = if group.is_empty() {
                        resource.plural
                    } else {
                        format!("{}.{group}", resource.plural)
                    };
                    Err(format!("{resource} does not implement the scale subresource"))
                }
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Upstream's `failSafe`: no disruption allowed, and why.
    async fn fail_safe(&self, pdb: &PodDisruptionBudget, why: &str) -> Result<Action, kube::Error> {
        let mut status = pdb.status.clone().unwrap_or_default();
        status.disruptions_allowed = 0;
        let generation = status.observed_generation;
        set_condition(&mut status, "False", "SyncFailed", why, generation);
        self.replace_status(pdb, status).await?;
        Ok(Action::AwaitChange)
    }

    async fn write_status(
        &self,
        pdb: &PodDisruptionBudget,
        current_healthy: i32,
        desired_healthy: i32,
        expected: i32,
        disrupted: BTreeMap<String, Time>,
    ) -> Result<(), kube::Error> {
        let mut allowed = current_healthy - desired_healthy;
        if expected <= 0 || allowed <= 0 {
            allowed = 0;
        }
        let old = pdb.status.clone().unwrap_or_default();
        let generation = pdb.metadata.generation;
        let unchanged = old.current_healthy == current_healthy
            && old.desired_healthy == desired_healthy
            && old.expected_pods == expected
            && old.disruptions_allowed == allowed
            && old.disrupted_pods.clone().unwrap_or_default() == disrupted
            && old.observed_generation == generation
            && conditions_up_to_date(&old, generation);
        if unchanged {
            return Ok(());
        }
        let mut status = PodDisruptionBudgetStatus {
            current_healthy,
            desired_healthy,
            expected_pods: expected,
            disruptions_allowed: allowed,
            disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
            observed_generation: generation,
            conditions: old.conditions,
        };
        let (state, reason) =
            if allowed > 0 { ("True", "SufficientPods") } else { ("False", "InsufficientPods") };
        set_condition(&mut status, state, reason, "", generation);
        self.replace_status(pdb, status).await
    }

    async fn replace_status(
        &self,
        pdb: &PodDisruptionBudget,
        status: PodDisruptionBudgetStatus,
    ) -> Result<(), kube::Error> {
        let namespace = pdb.metadata.namespace.as_deref().unwrap_or_default();
        let name = pdb.metadata.name.clone().unwrap_or_default();
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), namespace);
        let mut updated = pdb.clone();
        updated.status = Some(status);
        match api.replace_status(&name, &PostParams::default(), &updated).await {
            Ok(_) => Ok(()),
            // Deleted meanwhile: nothing to keep.
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Turns a stale `DisruptionTarget` condition false (upstream's
    /// `syncStalePodDisruption`).
    async fn clear_stale_disruption(&self, key: &str) -> Result<Action, kube::Error> {
        let Some(pod) = self.pods.get(key) else { return Ok(Action::AwaitChange) };
        let now = Timestamp::now();
        let Some(wait) = stale_disruption(&pod, now) else { return Ok(Action::AwaitChange) };
        if !wait.is_zero() {
            return Ok(Action::RequeueAfter(wait));
        }
        let mut updated = (*pod).clone();
        let conditions = updated.status.get_or_insert_default().conditions.get_or_insert_default();
        if let Some(condition) = conditions.iter_mut().find(|c| c.type_ == "DisruptionTarget") {
            *condition = PodCondition {
                type_: "DisruptionTarget".into(),
                status: "False".into(),
                last_transition_time: Some(Time(now)),
                observed_generation: condition.observed_generation.and(pod.metadata.generation),
                ..Default::default()
            };
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        match api.replace_status(&name, &PostParams::default(), &updated).await {
            Ok(_) => Ok(Action::AwaitChange),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::AwaitChange),
            Err(e) => Err(e),
        }
    }
}

#[derive(Debug, Default, PartialEq)]
struct Counts {
    expected: i32,
    desired_healthy: i32,
    unmanaged: Vec<String>,
}

/// An int, or a percentage of `total` rounded up (upstream's
/// `GetScaledValueFromIntOrPercent(…, true)`).
fn scaled(value: &IntOrString, total: i32) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(text) => {
            let percent: i64 = text
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {text:?}"))?;
            let scaled = (percent * i64::from(total) + 99).div_euclid(100);
            Ok(i32::try_from(scaled).unwrap_or(i32::MAX))
        }
    }
}

/// Ready pods not being deleted and not just disrupted.
fn count_healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    let healthy = pods.iter().filter(|pod| {
        if pod.metadata.deletion_timestamp.is_some() {
            return false;
        }
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        if disrupted.get(name).is_some_and(|at| at.0 + DELETION_TIMEOUT > now) {
            return false;
        }
        crate::pods::is_ready(pod)
    });
    i32::try_from(healthy.count()).unwrap_or(i32::MAX)
}

/// Whether the `DisruptionAllowed` condition says what the status does (upstream's
/// `ConditionsAreUpToDate`).
fn conditions_up_to_date(status: &PodDisruptionBudgetStatus, generation: Option<i64>) -> bool {
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let Some(condition) = conditions.iter().find(|c| c.type_ == "DisruptionAllowed") else {
        return false;
    };
    if status.observed_generation != generation {
        return false;
    }
    if status.disruptions_allowed > 0 {
        condition.status == "True" && condition.reason == "SufficientPods"
    } else {
        condition.status == "False" && condition.reason == "InsufficientPods"
    }
}

/// `meta.SetStatusCondition` for `DisruptionAllowed`: the transition time moves only
/// when the status does.
fn set_condition(
    status: &mut PodDisruptionBudgetStatus,
    state: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let conditions = status.conditions.get_or_insert_default();
    let now = Time(Timestamp::now());
    match conditions.iter_mut().find(|c| c.type_ == "DisruptionAllowed") {
        Some(condition) => {
            if condition.status != state {
                condition.status = state.into();
                condition.last_transition_time = now;
            }
            condition.reason = reason.into();
            condition.message = message.into();
            condition.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: "DisruptionAllowed".into(),
            status: state.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: now,
        }),
    }
}

/// How long until a pod's `DisruptionTarget` condition is stale (zero: now), if it has
/// one that may go stale: true, not the kubelet's, on a pod neither finished nor
/// being deleted.
fn stale_disruption(pod: &Pod, now: Timestamp) -> Option<Duration> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let condition = status.conditions.as_ref()?.iter().find(|c| c.type_ == "DisruptionTarget")?;
    if condition.status != "True" || condition.reason.as_deref() == Some("TerminationByKubelet") {
        return None;
    }
    let since = condition.last_transition_time.as_ref().map_or(now, |t| t.0);
    Some(until(since + STALE_DISRUPTION_TIMEOUT, now))
}

fn until(at: Timestamp, now: Timestamp) -> Duration {
    Duration::from_secs_f64(at.duration_since(now).as_secs_f64().max(0.0))
}

#[cfg(test)]
mod tests {
    use keelson_api::k8s_openapi::api::core::v1::PodStatus;
    use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pod(name: &str, ready: bool, deleting: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                deletion_timestamp: deleting.then(|| Time(Timestamp::now())),
                ..Default::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn percentages_round_up_and_bad_ones_are_refused() {
        assert_eq!(scaled(&IntOrString::String("50%".into()), 3), Ok(2));
        assert_eq!(scaled(&IntOrString::String("10%".into()), 10), Ok(1));
        assert_eq!(scaled(&IntOrString::String("0%".into()), 10), Ok(0));
        assert_eq!(scaled(&IntOrString::Int(2), 10), Ok(2));
        assert!(scaled(&IntOrString::String("half".into()), 10).is_err());
    }

    #[test]
    fn healthy_pods_are_ready_not_deleting_and_not_just_evicted() {
        let now = Timestamp::now();
        let pods = vec![
            pod("a", true, false),
            pod("b", true, true),
            pod("c", false, false),
            pod("d", true, false),
            pod("e", true, false),
        ];
        let mut disrupted = BTreeMap::new();
        disrupted.insert("d".to_owned(), Time(now - Duration::from_secs(30)));
        // Evicted long ago and still here: counted again.
        disrupted.insert("e".to_owned(), Time(now - Duration::from_secs(600)));
        assert_eq!(count_healthy(&pods, &disrupted, now), 2);
    }

    #[test]
    fn the_condition_follows_the_disruptions_allowed() {
        let mut status = PodDisruptionBudgetStatus {
            disruptions_allowed: 1,
            observed_generation: Some(2),
            ..Default::default()
        };
        assert!(!conditions_up_to_date(&status, Some(2)));
        set_condition(&mut status, "True", "SufficientPods", "", Some(2));
        assert!(conditions_up_to_date(&status, Some(2)));
        assert!(!conditions_up_to_date(&status, Some(3)));
        let first = status.conditions.as_ref().expect("set")[0].last_transition_time.clone();
        status.disruptions_allowed = 0;
        assert!(!conditions_up_to_date(&status, Some(2)));
        set_condition(&mut status, "False", "InsufficientPods", "", Some(2));
        assert!(conditions_up_to_date(&status, Some(2)));
        assert!(status.conditions.as_ref().expect("set")[0].last_transition_time.0 >= first.0);
    }

    #[test]
    fn a_disruption_target_goes_stale_after_two_minutes_unless_deletion_followed() {
        let now = Timestamp::now();
        let mut p = (*pod("a", true, false)).clone();
        p.status.as_mut().expect("status").conditions.as_mut().expect("conditions").push(
            PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("EvictionByEvictionAPI".into()),
                last_transition_time: Some(Time(now - Duration::from_secs(30))),
                ..Default::default()
            },
        );
        let wait = stale_disruption(&p, now).expect("may go stale");
        assert!(wait > Duration::from_secs(89) && wait <= Duration::from_secs(90), "{wait:?}");
        assert_eq!(stale_disruption(&p, now + Duration::from_secs(120)), Some(Duration::ZERO));
        p.metadata.deletion_timestamp = Some(Time(now));
        assert_eq!(stale_disruption(&p, now), None);
    }
}

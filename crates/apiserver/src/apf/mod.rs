//! API Priority and Fairness (upstream's `util/flowcontrol` and its filter): every
//! request, once its user is known (after impersonation, before authorization), is
//! classified by the FlowSchemas into a priority level and a flow, and executes only
//! on a seat of its level — waiting in the level's fair queues ([`queueset`]) or
//! refused with a 429 and `Retry-After` when they are full. The server's seats
//! (`--max-requests-inflight` plus `--max-mutating-requests-inflight`, 600 by
//! default) are divided among the levels by their nominal concurrency shares.
//!
//! The configuration is the FlowSchema and PriorityLevelConfiguration objects
//! (`flowcontrol.apiserver.k8s.io/v1`), followed as they change; the bootstrap ones
//! ([`bootstrap`]) are created at start and kept as upstream keeps them, every minute.
//! Without its mandatory objects (deleted, not yet created) the server uses
//! upstream's built-in `exempt` and `catch-all`.
//!
//! Not yet as upstream: every request takes one seat (no work estimation of lists or
//! of watch notifications), and levels do not lend or borrow seats (each uses its
//! nominal limit).
//!
//! Must never let a request through unclassified, except the long-running ones
//! upstream exempts (exec, attach, port-forward, proxy, followed logs), and never keep
//! a seat after its request ended, however it ended.

pub mod bootstrap;
mod classify;
mod dropped;
mod queueset;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::Duration;

use keelson_api::ResourceInfo;
use keelson_api::k8s_openapi::api::flowcontrol::v1::{FlowSchema, PriorityLevelConfiguration};
use keelson_store::KeyValue;
use serde_json::{Value, json};

use crate::auth::Attributes;
use crate::metrics::flowcontrol::{FlowControl, FlowLabels};
use crate::registry::{self, Place};
use crate::{ApiServer, meta};
use queueset::{Limit, QueueSet, Start, Ticket};

pub const FLOW_SCHEMA_UID: &str = "X-Kubernetes-PF-FlowSchema-UID";
pub const PRIORITY_LEVEL_UID: &str = "X-Kubernetes-PF-PriorityLevel-UID";

/// kube-apiserver's `--max-requests-inflight` and `--max-mutating-requests-inflight`
/// defaults; APF divides their sum among the priority levels.
pub const DEFAULT_SEATS: u32 = 400 + 200;

/// How long a request may wait in a queue when it has no deadline (a watch): a quarter
/// of the default request timeout, as upstream.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(15);

const GROUP: &str = "flowcontrol.apiserver.k8s.io";

fn info(plural: &str) -> &'static ResourceInfo {
    keelson_api::Registry::builtin()
        .find(GROUP, "v1", plural)
        .unwrap_or_else(|| panic!("{GROUP}/{plural} is a built-in resource"))
}

static SCHEMAS: LazyLock<String> = LazyLock::new(|| registry::directory(info("flowschemas"), None));
static LEVELS: LazyLock<String> =
    LazyLock::new(|| registry::directory(info("prioritylevelconfigurations"), None));

/// Which FlowSchema and priority level a request went to: what the response headers
/// carry (upstream's `X-Kubernetes-PF-*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Classification {
    pub flow_schema: String,
    pub flow_schema_uid: String,
    pub priority_level: String,
    pub priority_level_uid: String,
}

impl Classification {
    pub fn set_headers(&self, headers: &mut http::HeaderMap) {
        for (name, value) in [
            (FLOW_SCHEMA_UID, &self.flow_schema_uid),
            (PRIORITY_LEVEL_UID, &self.priority_level_uid),
        ] {
            if let Ok(value) = http::HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
    }

    fn labels(&self) -> FlowLabels {
        FlowLabels {
            priority_level: self.priority_level.clone(),
            flow_schema: self.flow_schema.clone(),
        }
    }
}

/// A request's answer from APF.
pub enum Admission {
    /// It may execute; the seat is held until this is dropped.
    Execute(Seat),
    /// Refused: answer 429 with this `Retry-After` (seconds).
    Reject { classification: Classification, retry_after: i64 },
}

/// The seat an executing request holds.
pub struct Seat {
    pub classification: Classification,
    _ticket: Ticket,
    _counted: crate::metrics::flowcontrol::Executing,
}

/// The configuration in effect: the schemas in matching order and the levels by name.
struct Config {
    schemas: Vec<FlowSchema>,
    levels: HashMap<String, Level>,
}

struct Level {
    uid: String,
    set: Arc<QueueSet>,
    /// Requests are hashed into flows only where there are queues to shard over.
    sharded: bool,
}

pub struct Apf {
    seats: u32,
    config: RwLock<Arc<Config>>,
    /// Each level's queues, kept across configuration changes.
    sets: Mutex<HashMap<String, Arc<QueueSet>>>,
    /// The objects last read, each kind followed on its own.
    objects: Mutex<(Vec<FlowSchema>, Vec<PriorityLevelConfiguration>)>,
    dropped: dropped::Dropped,
    metrics: FlowControl,
}

impl Apf {
    /// APF over `seats` seats, configured by the mandatory objects alone until the
    /// stored ones are read.
    pub fn new(seats: u32, metrics: FlowControl) -> Apf {
        let apf = Apf {
            seats,
            config: RwLock::new(Arc::new(Config { schemas: Vec::new(), levels: HashMap::new() })),
            sets: Mutex::default(),
            objects: Mutex::default(),
            dropped: Default::default(),
            metrics,
        };
        apf.rebuild();
        apf
    }

    fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        mutex.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the stored FlowSchemas (`Some`) or PriorityLevelConfigurations as they are
    /// now, and returns the schemas whose `Dangling` condition should change.
    fn update(
        &self,
        schemas: Option<Vec<FlowSchema>>,
        levels: Option<Vec<PriorityLevelConfiguration>>,
    ) -> Vec<(FlowSchema, Value)> {
        {
            let mut objects = Self::lock(&self.objects);
            if let Some(schemas) = schemas {
                objects.0 = schemas;
            }
            if let Some(levels) = levels {
                objects.1 = levels;
            }
        }
        self.rebuild()
    }

    /// Rebuilds the configuration in effect from the objects last read.
    fn rebuild(&self) -> Vec<(FlowSchema, Value)> {
        let (mut schemas, mut levels) = Self::lock(&self.objects).clone();
        // The mandatory objects stand in for missing ones.
        for (name, fallback) in [("exempt", 1), ("catch-all", 0)] {
            if !levels.iter().any(|l| l.metadata.name.as_deref() == Some(name)) {
                let boot = bootstrap::mandatory_levels().remove(fallback);
                levels.extend(serde_json::from_value(boot).ok());
            }
        }
        let mut dangling = Vec::new();
        schemas.retain(|schema| {
            let level = level_name(schema);
            let found = levels.iter().any(|l| l.metadata.name.as_deref() == Some(level));
            if let Some(condition) = dangling_condition(schema, level, found) {
                dangling.push((schema.clone(), condition));
            }
            found
        });
        for (name, at) in [("exempt", 0), ("catch-all", 1)] {
            if !schemas.iter().any(|s| s.metadata.name.as_deref() == Some(name)) {
                let boot = bootstrap::mandatory_schemas().remove(at);
                schemas.extend(serde_json::from_value(boot).ok());
            }
        }
        schemas.sort_by(|a, b| {
            let precedence = |s: &FlowSchema| s.spec.as_ref().and_then(|s| s.matching_precedence);
            precedence(a).cmp(&precedence(b)).then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        let total: u64 = levels.iter().map(|l| u64::from(shares(l))).sum();
        let mut sets = Self::lock(&self.sets);
        let mut built = HashMap::new();
        for level in &levels {
            let name = level.metadata.name.clone().unwrap_or_default();
            let nominal = if total == 0 {
                0
            } else {
                let nominal = (u64::from(self.seats) * u64::from(shares(level))).div_ceil(total);
                u32::try_from(nominal).unwrap_or(u32::MAX)
            };
            let limit = limit(level);
            let set = match sets.get(&name) {
                Some(set) => {
                    set.reconfigure(nominal, limit);
                    set.clone()
                }
                None => QueueSet::new(nominal, limit),
            };
            sets.insert(name.clone(), set.clone());
            self.metrics.set_limits(&name, nominal, nominal);
            let sharded = matches!(limit, Limit::Queue { queues, .. } if queues > 1);
            let uid = level.metadata.uid.clone().unwrap_or_default();
            built.insert(name, Level { uid, set, sharded });
        }
        // A deleted level's queues drain through the requests that hold them.
        sets.retain(|name, _| built.contains_key(name));
        drop(sets);
        let config = Arc::new(Config { schemas, levels: built });
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
        dangling
    }

    /// Classifies a request and waits for its seat, at most `wait` in a queue.
    pub async fn admit(&self, request: &Attributes, wait: Duration) -> Admission {
        let config = self.config.read().unwrap_or_else(|p| p.into_inner()).clone();
        let schema =
            config.schemas.iter().find(|schema| classify::matches(schema, request)).or_else(|| {
                config.schemas.iter().find(|s| s.metadata.name.as_deref() == Some("catch-all"))
            });
        let Some((schema, level)) =
            schema.and_then(|s| config.levels.get(level_name(s)).map(|level| (s, level)))
        else {
            // Unreachable: the mandatory objects are always in the configuration.
            unreachable_configuration()
        };
        let classification = Classification {
            flow_schema: schema.metadata.name.clone().unwrap_or_default(),
            flow_schema_uid: schema.metadata.uid.clone().unwrap_or_default(),
            priority_level: level_name(schema).to_owned(),
            priority_level_uid: level.uid.clone(),
        };
        let labels = classification.labels();
        let hash = if level.sharded {
            classify::flow_hash(
                &classification.flow_schema,
                &classify::distinguisher(schema, request),
            )
        } else {
            0
        };
        let arrived = tokio::time::Instant::now();
        let outcome = match level.set.start(hash, 1) {
            Start::Executing(ticket) => Ok(ticket),
            Start::Rejected(why) => Err(why),
            Start::Queued(pending) => {
                let _waiting = Waiting(self.metrics.queued(&labels));
                let waited = pending.wait(arrived + wait).await;
                let seconds = arrived.elapsed().as_secs_f64();
                self.metrics.waited(&labels, waited.is_ok(), seconds);
                waited
            }
        };
        match outcome {
            Ok(ticket) => Admission::Execute(Seat {
                _counted: self.metrics.executing(&labels, 1),
                _ticket: ticket,
                classification,
            }),
            Err(why) => {
                self.metrics.rejected(&labels, why.as_str());
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                self.dropped.record(&classification.priority_level, now);
                let retry_after = self.dropped.retry_after(&classification.priority_level);
                Admission::Reject { classification, retry_after }
            }
        }
    }
}

#[cold]
fn unreachable_configuration() -> ! {
    panic!("the APF configuration lacks its mandatory objects")
}

/// A request in a queue, counted until it leaves (dispatched, refused or gone).
struct Waiting(prometheus_client::metrics::gauge::Gauge);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn level_name(schema: &FlowSchema) -> &str {
    schema.spec.as_ref().map_or("", |s| s.priority_level_configuration.name.as_str())
}

/// A level's nominal concurrency shares, defaulted as upstream's v1 defaults them.
fn shares(level: &PriorityLevelConfiguration) -> u32 {
    let spec = level.spec.as_ref();
    let shares = match spec.map(|s| s.type_.as_str()) {
        Some("Exempt") => {
            spec.and_then(|s| s.exempt.as_ref()?.nominal_concurrency_shares).unwrap_or(0)
        }
        _ => spec.and_then(|s| s.limited.as_ref()?.nominal_concurrency_shares).unwrap_or(30),
    };
    u32::try_from(shares).unwrap_or(0)
}

fn limit(level: &PriorityLevelConfiguration) -> Limit {
    let spec = level.spec.as_ref();
    if spec.is_some_and(|s| s.type_ == "Exempt") {
        return Limit::Exempt;
    }
    let response = spec.and_then(|s| s.limited.as_ref()?.limit_response.as_ref());
    match response {
        Some(response) if response.type_ == "Reject" => Limit::Reject,
        _ => {
            let queuing = response.and_then(|r| r.queuing.as_ref());
            let get = |value: Option<i32>, default: usize| {
                value.and_then(|v| usize::try_from(v).ok()).filter(|v| *v > 0).unwrap_or(default)
            };
            Limit::Queue {
                queues: get(queuing.and_then(|q| q.queues), 64),
                hand_size: get(queuing.and_then(|q| q.hand_size), 8),
                queue_length_limit: get(queuing.and_then(|q| q.queue_length_limit), 50),
            }
        }
    }
}

/// The `Dangling` condition a schema should have, if it does not have it already.
fn dangling_condition(schema: &FlowSchema, level: &str, found: bool) -> Option<Value> {
    let (status, reason, message) = if found {
        (
            "False",
            "Found",
            format!(
                "This FlowSchema references the PriorityLevelConfiguration object named {level:?} and it exists"
            ),
        )
    } else {
        (
            "True",
            "NotFound",
            format!(
                "This FlowSchema references the PriorityLevelConfiguration object named {level:?} but there is no such object"
            ),
        )
    };
    let conditions =
        schema.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let current = conditions.iter().find(|c| c.type_.as_deref() == Some("Dangling"));
    let same = current.is_some_and(|c| {
        c.status.as_deref() == Some(status)
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message.as_str())
    });
    (!same).then(|| {
        json!({
            "type": "Dangling",
            "status": status,
            "lastTransitionTime": meta::now(),
            "reason": reason,
            "message": message,
        })
    })
}

/// Follows the stored FlowSchemas and PriorityLevelConfigurations, keeping the
/// configuration in effect and the schemas' `Dangling` conditions, until the server
/// stops. Each pass (after any change, and every minute as upstream's ensurer) first
/// puts back the bootstrap objects, so a deleted one comes back at once.
pub async fn run(api: Arc<ApiServer>) {
    let levels =
        crate::cache::follow(api.clone(), LEVELS.as_str(), RESYNC, |api, stored| async move {
            keep_bootstrap(&api).await;
            let levels = decode_all(info("prioritylevelconfigurations"), &stored);
            let dangling = api.apf.update(None, Some(levels));
            write_dangling(&api, dangling).await;
            None
        });
    let schemas =
        crate::cache::follow(api.clone(), SCHEMAS.as_str(), RESYNC, |api, stored| async move {
            keep_bootstrap(&api).await;
            let schemas = decode_all(info("flowschemas"), &stored);
            let dangling = api.apf.update(Some(schemas), None);
            write_dangling(&api, dangling).await;
            None
        });
    tokio::join!(levels, schemas);
}

const RESYNC: Duration = Duration::from_secs(60);

async fn keep_bootstrap(api: &ApiServer) {
    if let Err(e) = ensure(api).await {
        tracing::warn!(error = %e, "cannot keep the APF bootstrap configuration, will retry");
    }
}

fn decode_all<T: serde::de::DeserializeOwned>(
    info: &ResourceInfo,
    stored: &[Arc<KeyValue>],
) -> Vec<T> {
    stored
        .iter()
        .filter_map(|kv| registry::decode(info, kv).ok())
        .filter_map(|object| serde_json::from_value(object).ok())
        .collect()
}

async fn write_dangling(api: &ApiServer, updates: Vec<(FlowSchema, Value)>) {
    let info = info("flowschemas");
    for (schema, condition) in updates {
        let name = schema.metadata.name.clone().unwrap_or_default();
        let place = Place { info, namespace: None, name: &name };
        // Read fresh: the cached copy may be behind, and a stale write is a conflict.
        let Ok((current, revision)) = api.objects.get(place).await else { continue };
        let mut updated = current.clone();
        let mut conditions: Vec<Value> = current["status"]["conditions"]
            .as_array()
            .map(|c| c.iter().filter(|c| c["type"] != "Dangling").cloned().collect())
            .unwrap_or_default();
        conditions.push(condition);
        updated["status"] = json!({ "conditions": conditions });
        if let Err(e) =
            api.objects.rewrite(place, &current, updated, revision, Some("status")).await
        {
            tracing::debug!(flowschema = name, error = %e.message, "cannot set a FlowSchema's Dangling condition");
        }
    }
}

/// Upstream's bootstrap ensurer, one pass: the suggested levels and schemas, then the
/// mandatory ones, then the removal of auto-updated objects the bootstrap no longer has.
pub async fn ensure(api: &ApiServer) -> Result<(), String> {
    let (levels, schemas) = (info("prioritylevelconfigurations"), info("flowschemas"));
    for (info, objects, mandatory) in [
        (levels, bootstrap::suggested_levels(), false),
        (schemas, bootstrap::suggested_schemas(), false),
        (levels, bootstrap::mandatory_levels(), true),
        (schemas, bootstrap::mandatory_schemas(), true),
    ] {
        for object in objects {
            ensure_one(api, info, object, mandatory).await?;
        }
    }
    for (info, wanted) in [
        (schemas, [bootstrap::mandatory_schemas(), bootstrap::suggested_schemas()].concat()),
        (levels, [bootstrap::mandatory_levels(), bootstrap::suggested_levels()].concat()),
    ] {
        let stored = api
            .store
            .list(&registry::directory(info, None), Default::default())
            .await
            .map_err(|e| e.to_string())?;
        for kv in &stored.items {
            let Ok(object) = registry::decode(info, kv) else { continue };
            let name = meta::name(&object).unwrap_or("").to_owned();
            if wanted.iter().any(|w| meta::name(w) == Some(&name)) || !bootstrap::unwanted(&object)
            {
                continue;
            }
            let place = Place { info, namespace: None, name: &name };
            match api.objects.remove(place, kv.mod_revision, false).await {
                Ok(()) => tracing::info!(
                    kind = info.kind,
                    name,
                    "deleted an APF object the bootstrap configuration no longer has"
                ),
                Err(e) if e.code == http::StatusCode::NOT_FOUND => {}
                Err(e) => return Err(e.message),
            }
        }
    }
    Ok(())
}

async fn ensure_one(
    api: &ApiServer,
    info: &'static ResourceInfo,
    object: Value,
    mandatory: bool,
) -> Result<(), String> {
    let name = meta::name(&object).unwrap_or("").to_owned();
    let place = Place { info, namespace: None, name: &name };
    // The bootstrap object as a create would store it: defaulted, so specs compare.
    let wanted = registry::prepare_create(info, None, object, &Default::default(), &mut Vec::new())
        .map_err(|e| format!("{}/{name}: {}", info.plural, e.message))?;
    let (current, revision) = match api.objects.get(place).await {
        Ok(found) => found,
        Err(e) if e.code == http::StatusCode::NOT_FOUND => {
            return match api.objects.create(place, wanted, false).await {
                Ok(_) => {
                    tracing::info!(kind = info.kind, name, "created an APF bootstrap object");
                    Ok(())
                }
                // Another server of the cluster was first; checked next pass.
                Err(e) if e.is_already_exists() => Ok(()),
                Err(e) => Err(e.message),
            };
        }
        Err(e) => return Err(e.message),
    };
    let Some(revised) = bootstrap::revise(&current, &wanted, mandatory) else { return Ok(()) };
    match api.objects.rewrite(place, &current, revised, revision, None).await {
        Ok(_) => {
            tracing::info!(
                kind = info.kind,
                name,
                "put an APF bootstrap object back as the bootstrap has it"
            );
            Ok(())
        }
        // Someone changed it meanwhile; checked next pass.
        Err(e) if e.is_conflict() => Ok(()),
        Err(e) => Err(e.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: serde::de::DeserializeOwned>(objects: Vec<Value>) -> Vec<T> {
        objects.into_iter().map(|o| serde_json::from_value(o).expect("parses")).collect()
    }

    fn bootstrap_apf(seats: u32) -> Apf {
        let apf = Apf::new(seats, FlowControl::register(&mut Default::default()));
        let levels = [bootstrap::mandatory_levels(), bootstrap::suggested_levels()].concat();
        let schemas = [bootstrap::mandatory_schemas(), bootstrap::suggested_schemas()].concat();
        apf.update(Some(parse(schemas)), Some(parse(levels)));
        apf
    }

    fn request(
        user: &str,
        groups: &[&str],
        verb: &str,
        path: &str,
        namespace: &str,
        resource: &str,
    ) -> Attributes {
        Attributes {
            user: crate::request::User {
                name: user.into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                ..Default::default()
            },
            verb: verb.into(),
            path: path.into(),
            resource_request: !resource.is_empty(),
            api_group: match path.split('/').collect::<Vec<_>>().as_slice() {
                ["", "apis", group, ..] => group.to_string(),
                _ => String::new(),
            },
            namespace: namespace.into(),
            resource: resource.into(),
            ..Default::default()
        }
    }

    async fn classified(apf: &Apf, request: &Attributes) -> (String, String) {
        match apf.admit(request, DEFAULT_WAIT).await {
            Admission::Execute(seat) => (
                seat.classification.flow_schema.clone(),
                seat.classification.priority_level.clone(),
            ),
            Admission::Reject { .. } => panic!("refused"),
        }
    }

    #[tokio::test]
    async fn requests_land_in_upstreams_bootstrap_schemas() {
        let apf = bootstrap_apf(DEFAULT_SEATS);
        let authenticated = ["system:authenticated"];
        let cases = [
            (
                request(
                    "admin",
                    &["system:masters", "system:authenticated"],
                    "list",
                    "/api/v1/pods",
                    "",
                    "pods",
                ),
                "exempt",
                "exempt",
            ),
            (
                request("system:anonymous", &["system:unauthenticated"], "get", "/readyz", "", ""),
                "probes",
                "exempt",
            ),
            (
                request(
                    "system:node:n1",
                    &["system:nodes", "system:authenticated"],
                    "update",
                    "/api/v1/nodes/n1/status",
                    "",
                    "nodes",
                ),
                "system-node-high",
                "node-high",
            ),
            (
                request(
                    "system:node:n1",
                    &["system:nodes", "system:authenticated"],
                    "get",
                    "/api/v1/namespaces/a/secrets/s",
                    "a",
                    "secrets",
                ),
                "system-nodes",
                "system",
            ),
            (
                request(
                    "system:kube-scheduler",
                    &authenticated,
                    "update",
                    "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler",
                    "kube-system",
                    "leases",
                ),
                "system-leader-election",
                "leader-election",
            ),
            (
                request(
                    "system:kube-scheduler",
                    &authenticated,
                    "create",
                    "/api/v1/namespaces/a/pods/p/binding",
                    "a",
                    "pods",
                ),
                "kube-scheduler",
                "workload-high",
            ),
            (
                request(
                    "system:serviceaccount:kube-system:deployment-controller",
                    &["system:serviceaccounts", "system:authenticated"],
                    "list",
                    "/apis/apps/v1/deployments",
                    "",
                    "deployments",
                ),
                "kube-system-service-accounts",
                "workload-high",
            ),
            (
                request(
                    "system:serviceaccount:team:app",
                    &["system:serviceaccounts", "system:authenticated"],
                    "get",
                    "/api/v1/namespaces/team/configmaps/c",
                    "team",
                    "configmaps",
                ),
                "service-accounts",
                "workload-low",
            ),
            (
                request(
                    "alice",
                    &authenticated,
                    "get",
                    "/api/v1/namespaces/team/configmaps/c",
                    "team",
                    "configmaps",
                ),
                "global-default",
                "global-default",
            ),
        ];
        for (request, schema, level) in cases {
            assert_eq!(
                classified(&apf, &request).await,
                (schema.to_owned(), level.to_owned()),
                "{request:?}"
            );
        }
    }

    #[tokio::test]
    async fn without_stored_objects_the_mandatory_ones_apply() {
        let apf = Apf::new(DEFAULT_SEATS, FlowControl::register(&mut Default::default()));
        let admin = request("admin", &["system:masters"], "get", "/api/v1/pods", "", "pods");
        assert_eq!(classified(&apf, &admin).await, ("exempt".into(), "exempt".into()));
        let alice = request("alice", &["system:authenticated"], "get", "/api/v1/pods", "", "pods");
        assert_eq!(classified(&apf, &alice).await, ("catch-all".into(), "catch-all".into()));
    }

    #[tokio::test]
    async fn a_schema_whose_level_is_missing_is_skipped_and_reported_dangling() {
        let apf = bootstrap_apf(DEFAULT_SEATS);
        let mut schemas: Vec<Value> =
            [bootstrap::mandatory_schemas(), bootstrap::suggested_schemas()].concat();
        let mut mine = schemas[0].clone();
        mine["metadata"]["name"] = json!("mine");
        mine["spec"]["matchingPrecedence"] = json!(50);
        mine["spec"]["priorityLevelConfiguration"]["name"] = json!("nowhere");
        mine["spec"]["rules"][0]["subjects"] =
            json!([{ "kind": "User", "user": { "name": "alice" } }]);
        schemas.push(mine);
        let dangling = apf.update(Some(parse(schemas)), None);
        let (schema, condition) = dangling
            .iter()
            .find(|(s, _)| s.metadata.name.as_deref() == Some("mine"))
            .expect("reported");
        assert_eq!(schema.metadata.name.as_deref(), Some("mine"));
        assert_eq!(condition["status"], "True");
        assert_eq!(condition["reason"], "NotFound");
        let alice = request("alice", &["system:authenticated"], "get", "/api/v1/pods", "", "pods");
        assert_eq!(
            classified(&apf, &alice).await,
            ("global-default".into(), "global-default".into())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_saturated_reject_level_refuses_with_retry_after() {
        // 245 shares over 2 seats: catch-all (5 shares, Reject) gets one seat.
        let apf = bootstrap_apf(2);
        let levels = [bootstrap::mandatory_levels(), bootstrap::suggested_levels()].concat();
        let mut schemas: Vec<Value> = bootstrap::mandatory_schemas();
        // Only the mandatory schemas: everyone not privileged is catch-all.
        apf.update(Some(parse(std::mem::take(&mut schemas))), Some(parse(levels)));
        let alice = request("alice", &["system:authenticated"], "get", "/api/v1/pods", "", "pods");
        let held = match apf.admit(&alice, DEFAULT_WAIT).await {
            Admission::Execute(seat) => seat,
            Admission::Reject { .. } => panic!("the first request executes"),
        };
        match apf.admit(&alice, DEFAULT_WAIT).await {
            Admission::Reject { classification, retry_after } => {
                assert_eq!(classification.priority_level, "catch-all");
                assert_eq!(retry_after, 1);
            }
            Admission::Execute(_) => panic!("a second request finds no seat"),
        }
        drop(held);
        assert!(matches!(apf.admit(&alice, DEFAULT_WAIT).await, Admission::Execute(_)));
    }

    /// Through the router as a request goes: a level with every seat taken refuses with
    /// upstream's plain-text 429, `Retry-After` and the classification headers.
    #[tokio::test]
    async fn a_refused_request_is_answered_429_with_retry_after() {
        let api = crate::ApiServer::for_tests().await;
        let create = |plural: &str, object: Value| {
            let info = info(plural);
            let name = meta::name(&object).unwrap_or("").to_owned();
            let object =
                registry::prepare_create(info, None, object, &Default::default(), &mut Vec::new())
                    .expect("valid");
            let api = api.clone();
            async move {
                api.objects
                    .create(Place { info, namespace: None, name: &name }, object, false)
                    .await
                    .expect("created")
            }
        };
        create("prioritylevelconfigurations", json!({
            "metadata": { "name": "tiny" },
            "spec": { "type": "Limited", "limited": { "nominalConcurrencyShares": 1, "limitResponse": { "type": "Reject" } } },
        })).await;
        create("flowschemas", json!({
            "metadata": { "name": "alice" },
            "spec": {
                "priorityLevelConfiguration": { "name": "tiny" },
                "matchingPrecedence": 10,
                "rules": [{
                    "subjects": [{ "kind": "User", "user": { "name": "alice" } }],
                    "resourceRules": [{ "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"], "clusterScope": true }],
                }],
            },
        })).await;
        let alice = crate::request::User {
            name: "alice".into(),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        };
        let attributes = Attributes {
            user: alice.clone(),
            verb: "list".into(),
            path: "/api/v1/configmaps".into(),
            resource_request: true,
            resource: "configmaps".into(),
            ..Default::default()
        };
        // Take every seat of `tiny` once the configuration has it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut held = Vec::new();
        loop {
            assert!(std::time::Instant::now() < deadline, "the FlowSchema never took effect");
            match api.apf.admit(&attributes, DEFAULT_WAIT).await {
                Admission::Execute(seat) if seat.classification.priority_level == "tiny" => {
                    held.push(seat)
                }
                Admission::Execute(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                Admission::Reject { .. } => break,
            }
        }
        assert!(!held.is_empty());
        let (parts, ()) =
            http::Request::get("/api/v1/configmaps").body(()).expect("request").into_parts();
        let request = crate::request::Request::new(parts, Default::default(), alice);
        let routed = crate::router::dispatch(&api, request, Some(Duration::from_secs(60))).await;
        let response = routed.result.expect("answered");
        assert_eq!(response.status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");
        assert_eq!(response.headers()[http::header::CONTENT_TYPE], "text/plain; charset=utf-8");
        let flow = routed.flow.expect("classified");
        assert_eq!((flow.flow_schema.as_str(), flow.priority_level.as_str()), ("alice", "tiny"));
        assert!(!flow.flow_schema_uid.is_empty() && !flow.priority_level_uid.is_empty());
        // A seat freed, the same request executes (and is then refused by RBAC).
        held.pop();
        let (parts, ()) =
            http::Request::get("/api/v1/configmaps").body(()).expect("request").into_parts();
        let request =
            crate::request::Request::new(parts, Default::default(), attributes.user.clone());
        let routed = crate::router::dispatch(&api, request, Some(Duration::from_secs(60))).await;
        assert_eq!(routed.result.err().map(|e| e.code), Some(http::StatusCode::FORBIDDEN));
    }

    #[test]
    fn nominal_limits_divide_the_seats_by_shares() {
        let apf = bootstrap_apf(DEFAULT_SEATS);
        let sets = Apf::lock(&apf.sets);
        let limit_of = |name: &str| {
            let set = sets.get(name).expect("level");
            // Fill it: the seats executing at once are the limit.
            let tickets: Vec<_> = (0..1000)
                .map_while(|i| match set.start(i, 1) {
                    Start::Executing(ticket) => Some(ticket),
                    _ => None,
                })
                .collect();
            tickets.len()
        };
        // ceil(600·20/245), ceil(600·100/245), ceil(600·5/245).
        assert_eq!(limit_of("global-default"), 49);
        assert_eq!(limit_of("workload-low"), 245);
        assert_eq!(limit_of("catch-all"), 13);
    }
}

//! The pod subresources that act rather than store: `binding` (the scheduler's
//! assignment of a pod to a node; also the legacy `bindings` resource), `eviction`
//! (a deletion that honours PodDisruptionBudgets, as `kubectl drain` uses it), following
//! upstream's `pkg/registry/core/pod/storage`; and `log`, `exec`, `attach` and
//! `portforward` as far as the API server answers them itself (upstream's
//! `LogLocation` and `streamLocation`): their options, the container, and a pod no
//! node runs yet. Streams from a kubelet are not served yet.

use http::StatusCode;
use keelson_api::k8s_openapi::api::core::v1::Binding;
use keelson_api::k8s_openapi::api::policy::v1::Eviction;
use keelson_api::{Registry, Typed};
use serde_json::{Value, json};

use crate::ApiServer;
use crate::meta::{self, metadata};
use crate::registry::selector::{LabelSelector, selector_string};
use crate::registry::{Place, decode, directory, typed};
use crate::request::{Request, Target};
use crate::response::{Response, json_response};
use crate::status::{ApiError, ApiResult, Cause};
use crate::storage::{self, DeleteOptions};

const RETRIES: usize = 8;

fn success(code: StatusCode) -> Response {
    json_response(
        code,
        &json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code.as_u16() }),
    )
}

fn pods() -> ApiResult<&'static keelson_api::ResourceInfo> {
    Registry::builtin()
        .find("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("pods are not registered"))
}

/// `POST …/pods/{name}/binding`, or `POST …/bindings` with the pod's name in the body.
pub async fn bind(
    api: &ApiServer,
    req: &Request,
    namespace: &str,
    name: Option<&str>,
    dry_run: bool,
) -> ApiResult<Response> {
    let binding =
        typed::decode_body(Typed::of::<Binding>(), "", "v1", "Binding", &req.json_body()?)?;
    let body_name = meta::name(&binding).unwrap_or("");
    let name = match name {
        Some(name) if name != body_name => {
            return Err(ApiError::bad_request("name in URL does not match name in Binding object"));
        }
        Some(name) => name,
        None => body_name,
    };
    let node = binding["target"]["name"].as_str().unwrap_or("");
    let kind = binding["target"]["kind"].as_str().unwrap_or("");
    let mut causes = Vec::new();
    if node.is_empty() {
        causes.push(Cause::required("target.name", ""));
    }
    if !kind.is_empty() && kind != "Node" {
        causes.push(Cause::invalid("target.kind", &json!(kind), "must be empty or 'Node'"));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("", "Binding", name, causes));
    }
    let place = Place { info: pods()?, namespace: Some(namespace), name };
    let conflict = |why: String| ApiError::conflict("", "pods/binding", name, &why);
    for _ in 0..RETRIES {
        let (mut pod, revision) = api.objects.get(place).await?;
        if metadata(&pod).contains_key("deletionTimestamp") {
            return Err(conflict(format!(
                "pod {name} is being deleted, cannot be assigned to a host"
            )));
        }
        if let Some(current) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            return Err(conflict(format!("pod {name} is already assigned to node \"{current}\"")));
        }
        pod["spec"]["nodeName"] = json!(node);
        if let Some(annotations) =
            binding.pointer("/metadata/annotations").and_then(Value::as_object)
        {
            let meta = meta::metadata_mut(&mut pod);
            let existing = meta.entry("annotations").or_insert_with(|| json!({}));
            for (k, v) in annotations {
                existing[k] = v.clone();
            }
        }
        set_condition(&mut pod, "PodScheduled", "True");
        match api.objects.replace(place, pod, revision, dry_run).await {
            Ok(_) => return Ok(success(StatusCode::CREATED)),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::modified("", "pods", name))
}

fn set_condition(pod: &mut Value, kind: &str, status: &str) {
    let now = meta::now();
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    let conditions = &mut pod["status"]["conditions"];
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    if let Some(list) = conditions.as_array_mut() {
        list.retain(|c| c["type"] != kind);
        list.push(json!({ "type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now }));
    }
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// A pod whose eviction needs no budget: finished, not started, or already going.
fn can_ignore_budget(pod: &Value) -> bool {
    matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed" | "Pending"))
        || metadata(pod).contains_key("deletionTimestamp")
}

fn too_many_requests(message: String, retry_after: u64) -> ApiError {
    let mut error = ApiError::too_many_requests(
        "Cannot evict pod as it would violate the pod's disruption budget.",
        retry_after,
    );
    if let Some(details) = error.details.as_mut() {
        details["causes"] = json!([{ "reason": "DisruptionBudget", "message": message }]);
    }
    error
}

/// `POST …/pods/{name}/eviction`.
pub async fn evict(
    api: &ApiServer,
    req: &Request,
    namespace: &str,
    name: &str,
    dry_run: bool,
) -> ApiResult<Response> {
    // Decoded through its type first, so `deleteOptions` is DeleteOptions or absent.
    let eviction =
        typed::decode_body(Typed::of::<Eviction>(), "policy", "v1", "Eviction", &req.json_body()?)?;
    if meta::name(&eviction) != Some(name) {
        return Err(ApiError::bad_request("name in URL does not match name in Eviction object"));
    }
    let mut delete_options = eviction.get("deleteOptions").cloned().unwrap_or(json!({}));
    let evict_dry_run = propagate_dry_run(&mut delete_options, dry_run)?;
    let info = pods()?;
    let admission = crate::admission::Attributes {
        user: &req.user,
        info,
        namespace,
        name,
        subresource: "eviction",
        operation: crate::admission::Operation::Create,
        old: None,
        dry_run,
    };
    crate::admission::admit(api, &admission, &mut eviction.clone()).await?;
    let place = Place { info, namespace: Some(namespace), name };
    let (pod, revision) = api.objects.get(place).await?;
    if !can_ignore_budget(&pod) {
        let budgets = matching_budgets(api, namespace, &pod).await?;
        if budgets.len() > 1 {
            return Err(ApiError::plain(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        if let Some(budget) = budgets.into_iter().next() {
            let desired = budget["status"]["desiredHealthy"].as_i64().unwrap_or(0);
            let healthy = budget["status"]["currentHealthy"].as_i64().unwrap_or(0);
            // An unready pod does not count as healthy: evicting it costs the budget nothing.
            if !(!is_ready(&pod) && healthy >= desired && desired > 0) {
                decrement_budget(api, namespace, name, budget, evict_dry_run).await?;
            }
        }
    }
    let mut options = delete_options;
    if options.pointer("/preconditions/resourceVersion").is_none() && !can_ignore_budget(&pod) {
        options["preconditions"]["resourceVersion"] = json!(revision.to_string());
    }
    let options = DeleteOptions::from_value(&options)?;
    storage::delete(api, place, &options).await?;
    Ok(success(StatusCode::CREATED))
}

/// Upstream's `propagateDryRun`: the request's `dryRun` (`query`) and its Eviction's
/// `deleteOptions.dryRun` must agree when both are given; either makes the eviction a dry
/// run. Leaves `options.dryRun` as `["All"]` or absent; returns whether it is one.
fn propagate_dry_run(options: &mut Value, query: bool) -> ApiResult<bool> {
    let given: Vec<String> = options["dryRun"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap_or("").to_owned())
        .collect();
    if query && !given.is_empty() && given != ["All"] {
        return Err(ApiError::plain(format!(
            "Non-matching dry-run options in request and content: [All] and [{}]",
            given.join(" ")
        )));
    }
    let dry_run = query || !given.is_empty();
    if let Some(options) = options.as_object_mut() {
        options.remove("dryRun");
        if dry_run {
            options.insert("dryRun".into(), json!(["All"]));
        }
    }
    Ok(dry_run)
}

async fn matching_budgets(api: &ApiServer, namespace: &str, pod: &Value) -> ApiResult<Vec<Value>> {
    let info = Registry::builtin()
        .find("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::internal("poddisruptionbudgets are not registered"))?;
    let list = api
        .store
        .list(&directory(info, Some(namespace)), keelson_store::ListOptions::default())
        .await
        .map_err(|e| crate::status::from_store(e, "policy", "poddisruptionbudgets", ""))?;
    let mut budgets = Vec::new();
    for kv in &list.items {
        let budget = decode(info, kv)?;
        let selector = &budget["spec"]["selector"];
        // A budget with no selector, or an empty one, selects nothing.
        let text = selector_string(selector, false);
        if text.is_empty() {
            continue;
        }
        if LabelSelector::parse(&text).is_ok_and(|s| s.matches(pod)) {
            budgets.push(budget);
        }
    }
    Ok(budgets)
}

/// Upstream's `checkAndDecrement`, with retries on conflicting budget updates.
async fn decrement_budget(
    api: &ApiServer,
    namespace: &str,
    pod: &str,
    mut budget: Value,
    dry_run: bool,
) -> ApiResult<()> {
    let info = Registry::builtin()
        .find("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::internal("poddisruptionbudgets are not registered"))?;
    let budget_name = meta::name(&budget).unwrap_or("").to_owned();
    let place = Place { info, namespace: Some(namespace), name: &budget_name };
    for attempt in 0..RETRIES {
        if attempt > 0 {
            budget = api.objects.get(place).await?.0;
        }
        let revision = crate::registry::resource_version(&budget).unwrap_or(0);
        let status = &budget["status"];
        let observed = status["observedGeneration"].as_i64().unwrap_or(0);
        let generation = metadata(&budget).get("generation").and_then(Value::as_i64).unwrap_or(0);
        if observed < generation {
            return Err(too_many_requests(
                format!(
                    "The disruption budget {budget_name} is still being processed by the server."
                ),
                10,
            ));
        }
        let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
        if allowed < 0 {
            return Err(ApiError::forbidden(format!(
                "poddisruptionbudgets.policy \"{budget_name}\" is forbidden: pdb disruptions allowed is negative"
            )));
        }
        if allowed == 0 {
            let (desired, healthy) = (
                status["desiredHealthy"].as_i64().unwrap_or(0),
                status["currentHealthy"].as_i64().unwrap_or(0),
            );
            return Err(too_many_requests(
                format!(
                    "The disruption budget {budget_name} needs {desired} healthy pods and has {healthy} currently"
                ),
                0,
            ));
        }
        budget["status"]["disruptionsAllowed"] = json!(allowed - 1);
        if dry_run {
            return Ok(());
        }
        if !budget["status"]["disruptedPods"].is_object() {
            budget["status"]["disruptedPods"] = json!({});
        }
        budget["status"]["disruptedPods"][pod] = json!(meta::now());
        match api.objects.replace(place, budget.clone(), revision, false).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::unavailable(format!(
        "couldn't update PodDisruptionBudget \"{budget_name}\" due to conflicts"
    )))
}

/// `GET …/pods/{name}/log`: the options checked, the container found; a pod on no node
/// has no log yet, which upstream answers with an empty stream (204, no body).
pub async fn log(api: &ApiServer, req: &Request, target: &Target) -> ApiResult<Response> {
    let name = target.name.as_deref().unwrap_or("");
    log_options(req, name)?;
    let (pod, _) = api.objects.get(Place::of(target)).await?;
    container(&pod, req.param("container"), name)?;
    if node_name(&pod).is_empty() {
        let mut response = http::Response::new(crate::response::full(Vec::new()));
        *response.status_mut() = StatusCode::NO_CONTENT;
        return Ok(response);
    }
    Err(ApiError::method_not_supported("", "pods/log", "get (from a kubelet, not served yet)"))
}

/// `exec`, `attach` and `portforward` (`GET` or `POST`): upstream's `streamLocation` —
/// the container (not for port forwarding), then the node the pod runs on.
pub async fn connect(api: &ApiServer, req: &Request, target: &Target) -> ApiResult<Response> {
    let name = target.name.as_deref().unwrap_or("");
    let subresource = target.subresource.as_deref().unwrap_or("");
    let (pod, _) = api.objects.get(Place::of(target)).await?;
    if subresource != "portforward" {
        container(&pod, req.param("container"), name)?;
    }
    if node_name(&pod).is_empty() {
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    Err(ApiError::method_not_supported(
        "",
        &format!("pods/{subresource}"),
        "connect (to a kubelet, not served yet)",
    ))
}

fn node_name(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or("")
}

/// Upstream's `validateContainer`: the named container, or the only one.
fn container(pod: &Value, wanted: Option<&str>, name: &str) -> ApiResult<()> {
    let names: Vec<&str> = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|list| pod["spec"][*list].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    let regular = pod["spec"]["containers"].as_array().map_or(0, Vec::len);
    match wanted {
        Some(wanted) if names.contains(&wanted) => Ok(()),
        Some(wanted) => {
            Err(ApiError::bad_request(format!("container {wanted} is not valid for pod {name}")))
        }
        None if regular == 1 => Ok(()),
        None if regular == 0 => {
            Err(ApiError::bad_request(format!("a container name must be specified for pod {name}")))
        }
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            names.join(" ")
        ))),
    }
}

/// Upstream's `ValidatePodLogOptions` of the query's `PodLogOptions` (422), after
/// decoding its numbers (400, as Go's `strconv` words it).
fn log_options(req: &Request, name: &str) -> ApiResult<()> {
    let number = |param: &str| -> ApiResult<Option<i64>> {
        req.param(param)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "strconv.ParseInt: parsing {v:?}: invalid syntax"
                    ))
                })
            })
            .transpose()
    };
    let (tail, limit, since) =
        (number("tailLines")?, number("limitBytes")?, number("sinceSeconds")?);
    let mut causes = Vec::new();
    if let Some(tail) = tail.filter(|t| *t < 0) {
        causes.push(Cause::invalid(
            "tailLines",
            &json!(tail),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(limit) = limit.filter(|l| *l < 1) {
        causes.push(Cause::invalid("limitBytes", &json!(limit), "must be greater than 0"));
    }
    match (since, req.param("sinceTime")) {
        (Some(_), Some(_)) => causes.push(Cause::forbidden(
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        )),
        (Some(since), None) if since < 1 => {
            causes.push(Cause::invalid("sinceSeconds", &json!(since), "must be greater than 0"))
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("", "PodLogOptions", name, causes))
    }
}

//! LimitRanger (upstream's `plugin/pkg/admission/limitranger`): the namespace's
//! LimitRanges fill in what a new pod's containers leave out — `default` as limits,
//! `defaultRequest` as requests, noted in the `kubernetes.io/limit-ranger` annotation —
//! and bound what pods and claims ask for: `min`, `max` and `maxLimitRequestRatio` per
//! `Container`, per `Pod` (the sum over its containers) and per
//! `PersistentVolumeClaim` (its storage request), refused with upstream's words.
//!
//! As upstream, pod updates are left alone (their containers' resources cannot
//! change) and so is anything written while its object is being deleted.

use serde_json::{Value, json};

use super::lister::Lister;
use super::{Attributes, Mutating, Operation, Plugin, Validating};
use crate::quantity::{self, Quantity, ResourceList};
use crate::status::ApiResult;

const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// Whether the write is one LimitRanger looks at.
fn supports(a: &Attributes<'_>) -> bool {
    if !a.subresource.is_empty()
        || a.old.is_some_and(|o| !o["metadata"]["deletionTimestamp"].is_null())
    {
        return false;
    }
    match a.operation {
        Operation::Create => a.is("", "pods") || a.is("", "persistentvolumeclaims"),
        Operation::Update => a.is("", "persistentvolumeclaims"),
        Operation::Delete => false,
    }
}

pub struct LimitRanger {
    limit_ranges: Lister,
}

impl LimitRanger {
    pub fn new(limit_ranges: Lister) -> Self {
        LimitRanger { limit_ranges }
    }

    /// The namespace's LimitRanges, in name order.
    async fn limit_ranges(&self, namespace: &str) -> Vec<Value> {
        self.limit_ranges.list(Some(namespace)).await
    }
}

impl Plugin for LimitRanger {
    fn handles(&self, operation: Operation) -> bool {
        matches!(operation, Operation::Create | Operation::Update)
    }

    fn mutating(&self) -> Option<&dyn Mutating> {
        Some(self)
    }

    fn validating(&self) -> Option<&dyn Validating> {
        Some(self)
    }
}

/// The mutating half: defaults for the containers of a new pod. A pod it changed gets
/// its QoS class again and is validated again, as upstream validates after admission.
#[async_trait::async_trait]
impl Mutating for LimitRanger {
    async fn admit(&self, a: &Attributes<'_>, pod: Option<&mut Value>) -> ApiResult<Vec<String>> {
        let Some(pod) = pod else { return Ok(Vec::new()) };
        if !supports(a) || !a.is("", "pods") {
            return Ok(Vec::new());
        }
        let mut changed = false;
        for range in self.limit_ranges(a.namespace).await {
            changed |= apply_defaults(&range, pod);
        }
        if changed {
            pod["status"]["qosClass"] = json!(keelson_core::pod::qos_class(&pod["spec"]));
            crate::registry::revalidate_create(a.info, pod)?;
        }
        Ok(Vec::new())
    }
}

/// The validating half: every LimitRange's bounds, the first one broken refusing.
#[async_trait::async_trait]
impl Validating for LimitRanger {
    async fn validate(&self, a: &Attributes<'_>, object: Option<&Value>) -> ApiResult<Vec<String>> {
        let Some(object) = object else { return Ok(Vec::new()) };
        if !supports(a) {
            return Ok(Vec::new());
        }
        for range in self.limit_ranges(a.namespace).await {
            let errors = if a.is("", "pods") {
                pod_errors(&range, object)
            } else {
                claim_errors(&range, object)
            };
            if !errors.is_empty() {
                return Err(a.forbidden(aggregate(errors)));
            }
        }
        Ok(Vec::new())
    }
}

/// Upstream's `utilerrors.NewAggregate(...).Error()`: one message as is, several in
/// brackets, each once.
fn aggregate(errors: Vec<String>) -> String {
    let mut unique: Vec<String> = Vec::new();
    for e in errors {
        if !unique.contains(&e) {
            unique.push(e);
        }
    }
    match unique.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// `PodMutateLimitFunc`: the Container items' defaults merged into every container and
/// init container that lacks them; true if anything was set.
pub fn apply_defaults(range: &Value, pod: &mut Value) -> bool {
    let mut default_limits = serde_json::Map::new();
    let mut default_requests = serde_json::Map::new();
    for item in items(range).filter(|i| i["type"] == "Container") {
        for (field, into) in
            [("default", &mut default_limits), ("defaultRequest", &mut default_requests)]
        {
            for (k, v) in item[field].as_object().into_iter().flatten() {
                into.insert(k.clone(), v.clone());
            }
        }
    }
    let mut notes: Vec<String> = Vec::new();
    for (list, what) in [("containers", "container"), ("initContainers", "init container")] {
        // Through `get_mut`: indexing would add the lists a pod does not have, as nulls.
        let containers = pod.get_mut("spec").and_then(|spec| spec.get_mut(list));
        for container in containers.and_then(Value::as_array_mut).into_iter().flatten() {
            let name = container["name"].as_str().unwrap_or("").to_owned();
            let mut set = |field: &str, defaults: &serde_json::Map<String, Value>| {
                let mut names = Vec::new();
                for (resource, value) in defaults {
                    if container["resources"][field].get(resource).is_none() {
                        container["resources"][field][resource] = value.clone();
                        names.push(resource.clone());
                    }
                }
                names
            };
            // Upstream sets limits first, then requests; the annotation lists requests first.
            let limits = set("limits", &default_limits);
            let requests = set("requests", &default_requests);
            if !requests.is_empty() {
                notes.push(format!("{} request for {what} {name}", requests.join(", ")));
            }
            if !limits.is_empty() {
                notes.push(format!("{} limit for {what} {name}", limits.join(", ")));
            }
        }
    }
    if notes.is_empty() {
        return false;
    }
    pod["metadata"]["annotations"][ANNOTATION] =
        json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
    true
}

fn items(range: &Value) -> impl Iterator<Item = &Value> {
    range["spec"]["limits"].as_array().into_iter().flatten()
}

/// `PodValidateLimitFunc`: Container items against each container and init container,
/// Pod items against the pod's total.
pub fn pod_errors(range: &Value, pod: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    for item in items(range) {
        match item["type"].as_str() {
            Some(kind @ "Container") => {
                for list in ["containers", "initContainers"] {
                    for c in pod["spec"][list].as_array().into_iter().flatten() {
                        let requests = quantity::resource_list(&c["resources"]["requests"]);
                        let limits = quantity::resource_list(&c["resources"]["limits"]);
                        bounds(item, kind, &requests, &limits, &mut errors);
                    }
                }
            }
            Some(kind @ "Pod") => {
                let requests = pod_resources(&pod["spec"], "requests");
                let limits = pod_resources(&pod["spec"], "limits");
                bounds(item, kind, &requests, &limits, &mut errors);
            }
            _ => {}
        }
    }
    errors
}

/// `PersistentVolumeClaimValidateLimitFunc`: only the claim's requests count.
pub fn claim_errors(range: &Value, claim: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let requests = quantity::resource_list(&claim["spec"]["resources"]["requests"]);
    for item in items(range).filter(|i| i["type"] == "PersistentVolumeClaim") {
        let kind = "PersistentVolumeClaim";
        for (resource, enforced) in quantity::resource_list(&item["min"]) {
            errors.extend(min(kind, &resource, &enforced, &requests, &ResourceList::new()));
        }
        for (resource, enforced) in quantity::resource_list(&item["max"]) {
            errors.extend(match requests.get(&resource) {
                None => Some(format!(
                    "maximum {resource} usage per {kind} is {enforced}.  No request is specified"
                )),
                Some(req) if req > &enforced => Some(format!(
                    "maximum {resource} usage per {kind} is {enforced}, but request is {req}"
                )),
                Some(_) => None,
            });
        }
    }
    errors
}

/// The min, max and ratio bounds of one item over one set of requests and limits.
fn bounds(
    item: &Value,
    kind: &str,
    requests: &ResourceList,
    limits: &ResourceList,
    errors: &mut Vec<String>,
) {
    for (resource, enforced) in quantity::resource_list(&item["min"]) {
        errors.extend(min(kind, &resource, &enforced, requests, limits));
    }
    for (resource, enforced) in quantity::resource_list(&item["max"]) {
        errors.extend(max(kind, &resource, &enforced, requests, limits));
    }
    for (resource, enforced) in quantity::resource_list(&item["maxLimitRequestRatio"]) {
        errors.extend(ratio(kind, &resource, &enforced, requests, limits));
    }
}

fn min(
    kind: &str,
    resource: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let prefix = format!("minimum {resource} usage per {kind} is {enforced}");
    match (requests.get(resource), limits.get(resource)) {
        (None, _) => Some(format!("{prefix}.  No request is specified")),
        (Some(req), _) if enforced > req => Some(format!("{prefix}, but request is {req}")),
        (_, Some(lim)) if enforced > lim => Some(format!("{prefix}, but limit is {lim}")),
        _ => None,
    }
}

fn max(
    kind: &str,
    resource: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let prefix = format!("maximum {resource} usage per {kind} is {enforced}");
    match (requests.get(resource), limits.get(resource)) {
        (_, None) => Some(format!("{prefix}.  No limit is specified")),
        (_, Some(lim)) if lim > enforced => Some(format!("{prefix}, but limit is {lim}")),
        (Some(req), _) if req > enforced => Some(format!("{prefix}, but request is {req}")),
        _ => None,
    }
}

/// The limit over the request, compared in thousandths as upstream compares it.
fn ratio(
    kind: &str,
    resource: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let prefix = format!("{resource} max limit to request ratio per {kind} is {enforced}");
    let req = requests.get(resource).map(Quantity::milli_value).filter(|v| *v != 0);
    let lim = limits.get(resource).map(Quantity::milli_value).filter(|v| *v != 0);
    let Some(req) = req else {
        return Some(format!("{prefix}, but no request is specified or request is 0"));
    };
    let Some(lim) = lim else {
        return Some(format!("{prefix}, but no limit is specified or limit is 0"));
    };
    let observed = lim as f64 / req as f64;
    (observed * 1000.0 > enforced.milli_value() as f64)
        .then(|| format!("{prefix}, but provided ratio is {observed:.6}"))
}

pub use keelson_core::pod::pod_resources;

#[cfg(test)]
mod tests {
    use super::*;

    fn range(limits: Value) -> Value {
        json!({ "spec": { "limits": limits } })
    }

    fn pod(resources: Value) -> Value {
        json!({ "spec": { "containers": [{ "name": "c", "image": "busybox", "resources": resources }] } })
    }

    #[test]
    fn defaults_fill_what_containers_leave_out_and_say_so() {
        let r = range(json!([{
            "type": "Container",
            "default": { "cpu": "500m", "memory": "128Mi" },
            "defaultRequest": { "cpu": "250m", "memory": "64Mi" },
        }]));
        let mut p = pod(json!({ "limits": { "memory": "256Mi" } }));
        let mut without_init = p.clone();
        assert!(apply_defaults(&r, &mut without_init));
        assert!(without_init["spec"].get("initContainers").is_none(), "no null list added");
        p["spec"]["initContainers"] = json!([{ "name": "i", "image": "busybox" }]);
        assert!(apply_defaults(&r, &mut p));
        let c = &p["spec"]["containers"][0]["resources"];
        assert_eq!(c["limits"], json!({ "cpu": "500m", "memory": "256Mi" }));
        assert_eq!(c["requests"], json!({ "cpu": "250m", "memory": "64Mi" }));
        assert_eq!(
            p["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory request for container c; cpu limit for container c; cpu, memory request for init container i; cpu, memory limit for init container i"
        );
        // Nothing left to fill: no annotation change.
        let mut full = pod(
            json!({ "limits": { "cpu": "1", "memory": "1Gi" }, "requests": { "cpu": "1", "memory": "1Gi" } }),
        );
        assert!(!apply_defaults(&r, &mut full));
        assert!(full["metadata"].is_null());
    }

    #[test]
    fn container_bounds_are_refused_in_upstream_words() {
        let r = range(json!([{
            "type": "Container",
            "max": { "cpu": "1" },
            "min": { "memory": "10Mi" },
            "maxLimitRequestRatio": { "cpu": "2" },
        }]));
        let errors = pod_errors(
            &r,
            &pod(
                json!({ "limits": { "cpu": "2", "memory": "1Gi" }, "requests": { "cpu": "500m", "memory": "5Mi" } }),
            ),
        );
        assert_eq!(
            errors,
            [
                "minimum memory usage per Container is 10Mi, but request is 5Mi",
                "maximum cpu usage per Container is 1, but limit is 2",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000",
            ]
        );
        assert_eq!(
            pod_errors(&r, &pod(json!({}))),
            [
                "minimum memory usage per Container is 10Mi.  No request is specified",
                "maximum cpu usage per Container is 1.  No limit is specified",
                "cpu max limit to request ratio per Container is 2, but no request is specified or request is 0",
            ]
        );
        let fits = pod(
            json!({ "limits": { "cpu": "1", "memory": "20Mi" }, "requests": { "cpu": "600m", "memory": "10Mi" } }),
        );
        assert!(pod_errors(&r, &fits).is_empty());
        assert_eq!(aggregate(vec!["a".into(), "b".into(), "a".into()]), "[a, b]");
        assert_eq!(aggregate(vec!["a".into()]), "a");
    }

    #[test]
    fn pod_bounds_use_the_sum_of_containers_and_claims_their_request() {
        let r = range(json!([{ "type": "Pod", "max": { "memory": "1Gi" } }]));
        let mut p = pod(json!({ "limits": { "memory": "768Mi" } }));
        if let Some(containers) = p["spec"]["containers"].as_array_mut() {
            containers
                .push(json!({ "name": "d", "resources": { "limits": { "memory": "512Mi" } } }));
        }
        assert_eq!(
            pod_errors(&r, &p),
            ["maximum memory usage per Pod is 1Gi, but limit is 1280Mi"]
        );
        let r = range(
            json!([{ "type": "PersistentVolumeClaim", "min": { "storage": "1Gi" }, "max": { "storage": "10Gi" } }]),
        );
        let claim =
            |size: &str| json!({ "spec": { "resources": { "requests": { "storage": size } } } });
        assert_eq!(
            claim_errors(&r, &claim("20Gi")),
            ["maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"]
        );
        assert_eq!(
            claim_errors(&r, &claim("500Mi")),
            ["minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"]
        );
        assert!(claim_errors(&r, &claim("5Gi")).is_empty());
    }

    #[test]
    fn pod_totals_count_sidecars_and_the_largest_init_container() {
        let spec = json!({
            "containers": [
                { "name": "a", "resources": { "requests": { "cpu": "100m" } } },
                { "name": "b", "resources": { "requests": { "cpu": "200m" } } },
            ],
            "initContainers": [
                { "name": "s", "restartPolicy": "Always", "resources": { "requests": { "cpu": "50m" } } },
                { "name": "i", "resources": { "requests": { "cpu": "1", "memory": "1Gi" } } },
            ],
        });
        let total = pod_resources(&spec, "requests");
        assert_eq!(quantity::pretty(&total), "cpu=1050m,memory=1Gi");
    }

    #[tokio::test]
    async fn the_plugin_defaults_and_bounds_pods_from_the_namespaces_ranges() -> anyhow::Result<()>
    {
        use std::sync::Arc;
        let store: Arc<dyn keelson_store::Store> = Arc::new(keelson_store::memory::open()?);
        let limits = range(json!([{
            "type": "Container",
            "default": { "memory": "128Mi" },
            "defaultRequest": { "memory": "64Mi" },
            "max": { "memory": "1Gi" },
        }]));
        store.create("/registry/limitranges/team/limits", limits.to_string().into()).await?;
        let sources = super::super::lister::Sources::over(store);
        let limit_ranges = sources.lister("", "limitranges");
        let plugin = LimitRanger::new(limit_ranges.ok_or_else(|| anyhow::anyhow!("limitranges"))?);
        let info = keelson_api::Registry::builtin()
            .find("", "v1", "pods")
            .ok_or_else(|| anyhow::anyhow!("pods are not registered"))?;
        let user = crate::request::User::default();
        let attributes = |namespace| Attributes {
            user: &user,
            info,
            namespace,
            name: "p",
            subresource: "",
            operation: Operation::Create,
            old: None,
            dry_run: false,
        };
        let new_pod = |namespace: &str, resources: Value| {
            let mut p = pod(resources);
            p["metadata"] = json!({ "name": "p" });
            crate::registry::prepare_create(
                info,
                Some(namespace),
                p,
                &Default::default(),
                &mut Vec::new(),
            )
            .map_err(|e| anyhow::anyhow!(e.message))
        };
        // In the namespace with the range: defaults filled in, and noted.
        let mut p = new_pod("team", json!({}))?;
        plugin
            .admit(&attributes("team"), Some(&mut p))
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
        let resources = &p["spec"]["containers"][0]["resources"];
        assert_eq!(resources["limits"]["memory"], "128Mi");
        assert_eq!(resources["requests"]["memory"], "64Mi");
        assert_eq!(p["status"]["qosClass"], "Burstable");
        assert!(p["metadata"]["annotations"][ANNOTATION].is_string());
        assert!(plugin.validate(&attributes("team"), Some(&p)).await.is_ok_and(|w| w.is_empty()));
        // Beyond its max: refused.
        let big = new_pod("team", json!({ "limits": { "memory": "2Gi" } }))?;
        let refused = plugin.validate(&attributes("team"), Some(&big)).await.err();
        assert_eq!(
            refused.map(|e| e.message).as_deref(),
            Some(
                "pods \"p\" is forbidden: maximum memory usage per Container is 1Gi, but limit is 2Gi"
            )
        );
        // Elsewhere: nothing to apply.
        let mut other = new_pod("other", json!({}))?;
        plugin
            .admit(&attributes("other"), Some(&mut other))
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
        assert!(other["spec"]["containers"][0]["resources"]["limits"].is_null());
        Ok(())
    }
}

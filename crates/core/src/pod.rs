//! Pod facts every component derives the same way: the QoS class (which the API server
//! records, quota scopes count, the kubelet's eviction and the scheduler's ordering
//! read) and the requests or limits a pod adds up to (quota, LimitRanger, and the
//! scheduler's fit).

use serde_json::Value;

use crate::quantity::{self, ResourceList};

/// Upstream's `GetPodQOS`: Guaranteed when every container limits CPU and memory and
/// requests exactly that; BestEffort when none requests or limits anything; else
/// Burstable.
pub fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|list| spec[*list].as_array().into_iter().flatten())
        .collect();
    let compute = |v: &Value| {
        v.as_object().is_some_and(|m| {
            m.keys().any(|k| k == "cpu" || k == "memory" || k.starts_with("hugepages-"))
        })
    };
    let any = containers
        .iter()
        .any(|c| compute(&c["resources"]["requests"]) || compute(&c["resources"]["limits"]));
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        let (limits, requests) = (&c["resources"]["limits"], &c["resources"]["requests"]);
        ["cpu", "memory"].iter().all(|r| {
            !limits[*r].is_null() && (requests[*r].is_null() || requests[*r] == limits[*r])
        })
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}

/// A pod's requests or limits (`field`) as upstream's `podRequests`/`podLimits` add
/// them up: the containers' sum, sidecars (restartable init containers) included, or
/// the largest init container with the sidecars started before it, whichever is
/// larger; pod-level resources replace CPU and memory.
pub fn pod_resources(spec: &Value, field: &str) -> ResourceList {
    let of = |c: &Value| quantity::resource_list(&c["resources"][field]);
    let mut total = ResourceList::new();
    for c in spec["containers"].as_array().into_iter().flatten() {
        quantity::add_into(&mut total, &of(c));
    }
    let mut sidecars = ResourceList::new();
    let mut init = ResourceList::new();
    for c in spec["initContainers"].as_array().into_iter().flatten() {
        let own = of(c);
        let running = if c["restartPolicy"] == "Always" {
            quantity::add_into(&mut total, &own);
            quantity::add_into(&mut sidecars, &own);
            sidecars.clone()
        } else {
            quantity::add(&own, &sidecars)
        };
        quantity::max_into(&mut init, &running);
    }
    quantity::max_into(&mut total, &init);
    for (resource, q) in quantity::resource_list(&spec["resources"][field]) {
        if resource == "cpu" || resource == "memory" {
            total.insert(resource, q);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn qos_follows_upstreams_rules() {
        let pod =
            |resources: Value| json!({ "containers": [{ "name": "c", "resources": resources }] });
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        let exact = json!({ "limits": { "cpu": "1", "memory": "1Gi" } });
        assert_eq!(qos_class(&pod(exact)), "Guaranteed");
        let equal = json!({ "limits": { "cpu": "1", "memory": "1Gi" }, "requests": { "cpu": "1", "memory": "1Gi" } });
        assert_eq!(qos_class(&pod(equal)), "Guaranteed");
        assert_eq!(qos_class(&pod(json!({ "requests": { "cpu": "1" } }))), "Burstable");
        let lower = json!({ "limits": { "cpu": "1", "memory": "1Gi" }, "requests": { "cpu": "500m", "memory": "1Gi" } });
        assert_eq!(qos_class(&pod(lower)), "Burstable");
        // Only compute resources count.
        assert_eq!(
            qos_class(&pod(json!({ "requests": { "example.com/gpu": "1" } }))),
            "BestEffort"
        );
    }
}

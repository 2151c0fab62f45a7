//! Pod facts every component derives the same way: the QoS class (which the API server
//! records, quota scopes count, the kubelet's eviction and the scheduler's ordering
//! read).

use serde_json::Value;

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

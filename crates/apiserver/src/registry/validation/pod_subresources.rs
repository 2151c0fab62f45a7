//! What a pod's `ephemeralcontainers` and `resize` subresources may change: upstream's
//! `ValidatePodEphemeralContainersUpdate` and `ValidatePodResize`. The strategy has
//! already reset everything else to the stored pod (`registry/core/pods.rs`), so these
//! see only what the subresource lets through, and the spec is checked as on any update.

use keelson_core::pod::qos_class;
use serde_json::{Map, Value, json};

use super::pod;
use crate::quantity::Quantity;
use crate::status::Cause;

/// The annotation of a static pod's mirror.
const MIRROR: &str = "kubernetes.io/config.mirror";

fn is_mirror(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations").and_then(|a| a.get(MIRROR)).is_some()
}

/// An ephemeral container, once added, stays as it is; static pods have none.
pub fn ephemeral_containers_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    if is_mirror(old) {
        causes.push(Cause::forbidden("", "static pods do not support ephemeral containers"));
        return;
    }
    pod::spec(&new["spec"], "spec", causes);
    let field = "spec.ephemeralContainers";
    let added = new["spec"]["ephemeralContainers"].as_array().map_or(&[][..], Vec::as_slice);
    for existing in old["spec"]["ephemeralContainers"].as_array().into_iter().flatten() {
        let name = existing["name"].as_str().unwrap_or("");
        match added.iter().find(|c| c["name"].as_str() == Some(name)) {
            None => causes.push(Cause::forbidden(
                field,
                &format!("existing ephemeral containers {name:?} may not be removed\n"),
            )),
            // Upstream appends go-cmp's diff of the two, whose format it keeps unstable.
            Some(now) if now != existing => causes.push(Cause::forbidden(
                field,
                &format!("existing ephemeral containers {name:?} may not be changed\n"),
            )),
            Some(_) => {}
        }
    }
}

/// Only the CPU and memory of running containers (and sidecars) change, within the
/// pod's QoS class; nothing is removed, memory limits go down only with a restart.
pub fn resize(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    let pod_level = |pod: &Value| {
        ["requests", "limits"]
            .iter()
            .any(|list| pod["spec"]["resources"][*list].as_object().is_some_and(|l| !l.is_empty()))
    };
    let refusal = if pod_level(old) || pod_level(new) {
        Some("pods with pod-level resources cannot be resized")
    } else if is_mirror(old) {
        Some("static pods cannot be resized")
    } else if old["spec"]["os"]["name"] == "windows" {
        Some("windows pods cannot be resized")
    } else {
        None
    };
    if let Some(refusal) = refusal {
        causes.push(Cause::forbidden("", refusal));
        return;
    }
    pod::spec(&new["spec"], "spec", causes);
    let old_qos = old["status"]["qosClass"]
        .as_str()
        .filter(|q| !q.is_empty())
        .unwrap_or_else(|| qos_class(&old["spec"]));
    if old_qos != qos_class(&new["spec"]) {
        causes.push(Cause::invalid(
            "spec",
            &new["status"]["qosClass"],
            "Pod QOS Class may not change as a result of resizing",
        ));
    }
    if !resize_supported(old) {
        causes.push(Cause::forbidden("spec", "Pod running on node without support for resize"));
    }
    let containers = |pod: &Value, list: &str| -> Vec<Value> {
        pod["spec"][list].as_array().cloned().unwrap_or_default()
    };
    let (old_init, new_init) =
        (containers(old, "initContainers"), containers(new, "initContainers"));
    let (old_main, new_main) = (containers(old, "containers"), containers(new, "containers"));
    for (i, (o, n)) in old_init.iter().zip(&new_init).enumerate() {
        if is_sidecar(o) {
            let at = format!("spec.initContainers[{i}].resources");
            container_resize(&n["resources"], &o["resources"], &n["resizePolicy"], &at, causes);
        }
    }
    for (i, (o, n)) in old_main.iter().zip(&new_main).enumerate() {
        let at = format!("spec.containers[{i}].resources");
        container_resize(&n["resources"], &o["resources"], &n["resizePolicy"], &at, causes);
    }
    // With CPU and memory put back as they were, nothing may differ.
    let mut munged = new["spec"].clone();
    if old_main.len() != new_main.len() {
        causes.push(Cause::forbidden("spec", "only cpu and memory resources are mutable"));
    }
    for (i, (o, n)) in old_main.iter().zip(&new_main).enumerate() {
        let kept = without_cpu_memory_changes(n, o);
        if kept != *o {
            causes.push(Cause::forbidden("spec", "only cpu and memory resources are mutable"));
        }
        if let Some(list) = munged.get_mut("containers").and_then(Value::as_array_mut)
            && let Some(slot) = list.get_mut(i)
        {
            *slot = kept;
        }
    }
    for (i, (o, n)) in old_init.iter().zip(&new_init).enumerate() {
        let kept = if is_sidecar(o) {
            let kept = without_cpu_memory_changes(n, o);
            if kept != *o {
                causes.push(Cause::forbidden(
                    "spec",
                    "only cpu and memory resources for sidecar containers are mutable",
                ));
            }
            kept
        } else {
            if n != o {
                causes.push(Cause::forbidden(
                    "spec",
                    "resources for non-sidecar init containers are immutable",
                ));
            }
            n.clone()
        };
        if let Some(list) = munged.get_mut("initContainers").and_then(Value::as_array_mut)
            && let Some(slot) = list.get_mut(i)
        {
            *slot = kept;
        }
    }
    if !causes.is_empty() {
        return;
    }
    if munged != old["spec"] {
        causes.push(Cause::forbidden("spec", "only cpu and memory resources are mutable"));
    }
}

/// A restartable init container (`restartPolicy: Always`).
fn is_sidecar(container: &Value) -> bool {
    container["restartPolicy"] == "Always"
}

/// Upstream's `isPodResizeRequestSupported`: a running container's status reports its
/// resources on nodes that can resize; without running containers, assume it can.
fn resize_supported(pod: &Value) -> bool {
    let statuses = pod["status"]["containerStatuses"].as_array().into_iter().flatten();
    statuses
        .into_iter()
        .find(|s| !s["state"]["running"].is_null())
        .is_none_or(|s| !s["resources"].is_null())
}

/// Upstream's `validateContainerResize` of one container's resources at `at`.
fn container_resize(new: &Value, old: &Value, policies: &Value, at: &str, causes: &mut Vec<Cause>) {
    let list = |resources: &Value, name: &str| resources[name].as_object().cloned();
    for (name, what) in [("requests", "resource requests"), ("limits", "resource limits")] {
        let (before, after) =
            (list(old, name).unwrap_or_default(), list(new, name).unwrap_or_default());
        if before.len() > after.len() || before.keys().any(|k| !after.contains_key(k)) {
            causes.push(Cause::forbidden(
                &format!("{at}.{name}"),
                &format!("{what} cannot be removed"),
            ));
        }
    }
    let memory_policy = policies
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["resourceName"] == "memory")
        .and_then(|p| p["restartPolicy"].as_str())
        .unwrap_or("");
    if memory_policy != "NotRequired" && !memory_policy.is_empty() {
        return;
    }
    let has_limit = |resources: &Value| resources["limits"].get("memory").is_some();
    let limit =
        |resources: &Value| resources["limits"]["memory"].as_str().and_then(Quantity::parse);
    let at = format!("{at}.limits[memory]");
    if has_limit(new) && has_limit(old) {
        if let (Some(after), Some(before)) = (limit(new), limit(old))
            && after < before
        {
            causes.push(Cause::forbidden(
                &at,
                "memory limits cannot be decreased unless resizePolicy is RestartContainer",
            ));
        }
    } else if has_limit(new) {
        causes.push(Cause::forbidden(
            &at,
            "memory limits cannot be added unless resizePolicy is RestartContainer",
        ));
    }
}

/// Upstream's `dropCPUMemoryResourcesFromContainer`: `container` with the CPU and memory
/// of `old`'s requests and limits (none where `old` has no list).
fn without_cpu_memory_changes(container: &Value, old: &Value) -> Value {
    let munge = |list: &Value, old_list: &Value| -> Option<Value> {
        let old_list = old_list.as_object()?;
        let mut munged: Map<String, Value> = list.as_object().cloned().unwrap_or_default();
        for name in ["cpu", "memory"] {
            munged.remove(name);
            if let Some(value) = old_list.get(name) {
                munged.insert(name.to_owned(), value.clone());
            }
        }
        Some(Value::Object(munged))
    };
    let mut kept = container.clone();
    let mut resources = Map::new();
    for name in ["limits", "requests"] {
        if let Some(list) = munge(&container["resources"][name], &old["resources"][name]) {
            resources.insert(name.to_owned(), list);
        }
    }
    if let Some(map) = kept.as_object_mut() {
        if resources.is_empty() && old.get("resources").is_none() {
            map.remove("resources");
        } else {
            map.insert("resources".into(), json!(resources));
        }
    }
    kept
}

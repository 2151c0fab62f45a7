//! Defaulting, as upstream's `pkg/apis/<group>/v1/defaults.go` does it on every decode:
//! a field left out gets the value upstream would give it, so what a client reads back
//! is what it would read from kube-apiserver.
//!
//! Must never overwrite a value the client set.

use serde_json::{Value, json};

/// Sets `object[key]` to `value` unless it is already set (and not null).
fn default(object: &mut Value, key: &str, value: Value) {
    if let Some(map) = object.as_object_mut() {
        match map.get(key) {
            Some(v) if !v.is_null() => {}
            _ => {
                map.insert(key.to_owned(), value);
            }
        }
    }
}

/// The object at `object[key]`, created empty if absent.
fn child<'a>(object: &'a mut Value, key: &str) -> &'a mut Value {
    default(object, key, json!({}));
    &mut object[key]
}

fn each<'a>(value: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    value.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten()
}

/// `SetDefaults_LimitRangeItem`: a Container item's default limit falls back to its
/// max, and its default request to the default limit, then to its min.
fn limit_range_item(item: &mut Value) {
    if item["type"] != "Container" {
        return;
    }
    let copy = |item: &mut Value, from: &str, to: &str| {
        let source = item[from].as_object().cloned().unwrap_or_default();
        let target = child(item, to);
        for (resource, quantity) in source {
            default(target, &resource, quantity);
        }
    };
    copy(item, "max", "default");
    copy(item, "default", "defaultRequest");
    copy(item, "min", "defaultRequest");
}

/// Applies the defaults of `group`/`plural` to `object`.
pub fn apply(group: &str, plural: &str, object: &mut Value) {
    match (group, plural) {
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            super::validation::crd_defaults(object)
        }
        ("", "pods") => {
            pod_spec(child(object, "spec"));
        }
        ("", "podtemplates") => pod_template(object.get_mut("template")),
        ("", "replicationcontrollers") => {
            let spec = child(object, "spec");
            default(spec, "replicas", json!(1));
            // An RC without a selector selects its template's labels, and an object
            // without labels takes them too.
            if let Some(labels) = spec.pointer("/template/metadata/labels").cloned() {
                default(spec, "selector", labels.clone());
                default(child(object, "metadata"), "labels", labels);
            }
            pod_template(object.pointer_mut("/spec/template"));
        }
        ("", "services") => service(object),
        ("", "secrets") => {
            default(object, "type", json!("Opaque"));
            string_data(object);
        }
        ("scheduling.k8s.io", "priorityclasses") => {
            default(object, "preemptionPolicy", json!("PreemptLowerPriority"))
        }
        ("", "persistentvolumeclaims") => {
            default(child(object, "spec"), "volumeMode", json!("Filesystem"))
        }
        ("", "limitranges") => {
            for item in each(child(object, "spec"), "limits") {
                limit_range_item(item);
            }
        }
        ("apps", "deployments") => {
            let spec = child(object, "spec");
            default(spec, "replicas", json!(1));
            let strategy = child(spec, "strategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let rolling = child(strategy, "rollingUpdate");
                default(rolling, "maxUnavailable", json!("25%"));
                default(rolling, "maxSurge", json!("25%"));
            }
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
            pod_template(object.pointer_mut("/spec/template"));
        }
        ("apps", "replicasets") => {
            default(child(object, "spec"), "replicas", json!(1));
            pod_template(object.pointer_mut("/spec/template"));
        }
        ("apps", "statefulsets") => {
            let spec = child(object, "spec");
            default(spec, "replicas", json!(1));
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            let strategy = child(spec, "updateStrategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                default(child(strategy, "rollingUpdate"), "partition", json!(0));
            }
            default(spec, "revisionHistoryLimit", json!(10));
            let retention = child(spec, "persistentVolumeClaimRetentionPolicy");
            default(retention, "whenDeleted", json!("Retain"));
            default(retention, "whenScaled", json!("Retain"));
            pod_template(object.pointer_mut("/spec/template"));
        }
        ("apps", "daemonsets") => {
            let spec = child(object, "spec");
            let strategy = child(spec, "updateStrategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let rolling = child(strategy, "rollingUpdate");
                default(rolling, "maxUnavailable", json!(1));
                default(rolling, "maxSurge", json!(0));
            }
            default(spec, "revisionHistoryLimit", json!(10));
            pod_template(object.pointer_mut("/spec/template"));
        }
        ("batch", "jobs") => {
            job_spec(child(object, "spec"));
        }
        ("batch", "cronjobs") => {
            let spec = child(object, "spec");
            default(spec, "concurrencyPolicy", json!("Allow"));
            default(spec, "suspend", json!(false));
            default(spec, "successfulJobsHistoryLimit", json!(3));
            default(spec, "failedJobsHistoryLimit", json!(1));
            if let Some(job) = spec.pointer_mut("/jobTemplate/spec") {
                job_spec(job);
            }
        }
        _ => {}
    }
}

fn job_spec(spec: &mut Value) {
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        spec["completions"] = json!(1);
        spec["parallelism"] = json!(1);
    }
    default(spec, "parallelism", json!(1));
    default(spec, "backoffLimit", json!(6));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    let failure_policy_set = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
    default(
        spec,
        "podReplacementPolicy",
        json!(if failure_policy_set { "Failed" } else { "TerminatingOrFailed" }),
    );
    pod_template(spec.get_mut("template"));
}

fn pod_template(template: Option<&mut Value>) {
    if let Some(template) = template {
        pod_spec(child(template, "spec"));
    }
}

/// `SetDefaults_PodSpec`, `_Container`, `_Probe`, `_Volume` and friends.
/// A Secret's `stringData` is written into `data` (base64), winning over a key of the
/// same name, and never stored (upstream's v1 conversion).
fn string_data(secret: &mut Value) {
    use base64::Engine;
    let Some(Value::Object(strings)) = secret.as_object_mut().and_then(|s| s.remove("stringData"))
    else {
        return;
    };
    if !secret["data"].is_object() {
        secret["data"] = json!({});
    }
    for (key, value) in strings {
        let text = value.as_str().unwrap_or_default();
        secret["data"][key] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

pub fn pod_spec(spec: &mut Value) {
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "securityContext", json!({}));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "enableServiceLinks", json!(true));
    let host_network = spec["hostNetwork"] == true;
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for container in each(spec, list) {
            self::container(container, host_network);
        }
    }
    for volume in each(spec, "volumes") {
        self::volume(volume);
    }
}

fn container(c: &mut Value, host_network: bool) {
    let image = c["image"].as_str().unwrap_or("").to_owned();
    default(c, "imagePullPolicy", json!(pull_policy(&image)));
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    for port in each(c, "ports") {
        default(port, "protocol", json!("TCP"));
        if host_network && let Some(container_port) = port.get("containerPort").cloned() {
            default(port, "hostPort", container_port);
        }
    }
    // Limits without requests request the limits.
    if let Some(limits) = c.pointer("/resources/limits").and_then(Value::as_object).cloned() {
        let requests = child(child(c, "resources"), "requests");
        for (resource, quantity) in limits {
            default(requests, &resource, quantity);
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
            default(p, "timeoutSeconds", json!(1));
            default(p, "periodSeconds", json!(10));
            default(p, "successThreshold", json!(1));
            default(p, "failureThreshold", json!(3));
            if let Some(http) = p.get_mut("httpGet").filter(|h| h.is_object()) {
                default(http, "scheme", json!("HTTP"));
                default(http, "path", json!("/"));
            }
        }
    }
    for env in each(c, "env") {
        if let Some(field) = env.pointer_mut("/valueFrom/fieldRef") {
            default(field, "apiVersion", json!("v1"));
        }
    }
}

/// `Always` for `:latest` or an untagged image, `IfNotPresent` otherwise.
fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn volume(v: &mut Value) {
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = v.get_mut(source).filter(|s| s.is_object()) {
            default(s, "defaultMode", json!(420));
        }
    }
    if let Some(items) = v.pointer_mut("/downwardAPI/items").and_then(Value::as_array_mut) {
        for item in items {
            if let Some(field) = item.get_mut("fieldRef") {
                default(field, "apiVersion", json!("v1"));
            }
        }
    }
    if let Some(host_path) = v.get_mut("hostPath").filter(|h| h.is_object()) {
        default(host_path, "type", json!(""));
    }
    if let Some(iscsi) = v.get_mut("iscsi").filter(|s| s.is_object()) {
        default(iscsi, "iscsiInterface", json!("default"));
    }
}

/// `SetDefaults_Service`, less the cluster IP (allocated by the service registry).
fn service(object: &mut Value) {
    let spec = child(object, "spec");
    default(spec, "type", json!("ClusterIP"));
    let kind = spec["type"].as_str().unwrap_or("").to_owned();
    default(spec, "sessionAffinity", json!("None"));
    if kind != "ExternalName" {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if kind == "LoadBalancer" {
        default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    for port in each(spec, "ports") {
        default(port, "protocol", json!("TCP"));
        if let Some(number) = port.get("port").cloned() {
            default(port, "targetPort", number);
        }
    }
    if spec["sessionAffinity"] == "ClientIP" {
        let config = child(child(spec, "sessionAffinityConfig"), "clientIP");
        default(config, "timeoutSeconds", json!(10800));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_reads_back_as_upstream_defaults_it() {
        let mut d = json!({"spec": {"selector": {"matchLabels": {"app": "w"}}, "template": {"spec": {"containers": [
            {"name": "w", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "1"}}},
            {"name": "s", "image": "registry.local:5000/side:1.2", "livenessProbe": {"httpGet": {"port": 8080}}}
        ], "volumes": [{"name": "c", "configMap": {"name": "x"}}]}}}});
        apply("apps", "deployments", &mut d);
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(
            (spec["revisionHistoryLimit"].clone(), spec["progressDeadlineSeconds"].clone()),
            (json!(10), json!(600))
        );
        let pod = &spec["template"]["spec"];
        assert_eq!(
            (
                pod["restartPolicy"].as_str(),
                pod["dnsPolicy"].as_str(),
                pod["schedulerName"].as_str()
            ),
            (Some("Always"), Some("ClusterFirst"), Some("default-scheduler"))
        );
        let web = &pod["containers"][0];
        assert_eq!(web["imagePullPolicy"], "Always");
        assert_eq!(web["ports"][0]["protocol"], "TCP");
        assert_eq!(web["resources"]["requests"]["cpu"], "1");
        let side = &pod["containers"][1];
        assert_eq!(side["imagePullPolicy"], "IfNotPresent", "a registry port is not a tag");
        assert_eq!(side["livenessProbe"]["httpGet"]["scheme"], "HTTP");
        assert_eq!(side["livenessProbe"]["periodSeconds"], 10);
        assert_eq!(pod["volumes"][0]["configMap"]["defaultMode"], 420);
    }

    #[test]
    fn values_the_client_set_are_kept() {
        let mut pod = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:latest", "imagePullPolicy": "Never"}]}});
        apply("", "pods", &mut pod);
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Never");
        let mut job = json!({"spec": {"parallelism": 3, "template": {"spec": {"containers": []}}}});
        apply("batch", "jobs", &mut job);
        assert!(
            job["spec"].get("completions").is_none(),
            "parallelism alone leaves completions unset"
        );
        assert_eq!(job["spec"]["backoffLimit"], 6);
    }

    #[test]
    fn services_default_their_ports() {
        let mut svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        apply("", "services", &mut svc);
        assert_eq!(
            svc["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(svc["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(svc["spec"]["sessionAffinity"], "None");
    }
}

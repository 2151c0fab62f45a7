//! Defaulting, as upstream's `pkg/apis/<group>/v1/defaults.go` does it on every decode:
//! a field left out gets the value upstream would give it, so what a client reads back
//! is what it would read from kube-apiserver. Each resource's strategy
//! (`Strategy::defaults`) sets its own fields; this module holds the pieces they share:
//! pod specs, wherever they are embedded.
//!
//! Must never overwrite a value the client set.

use serde_json::{Value, json};

/// Sets `object[key]` to `value` unless it is already set (and not null).
pub(crate) fn default(object: &mut Value, key: &str, value: Value) {
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
pub(crate) fn child<'a>(object: &'a mut Value, key: &str) -> &'a mut Value {
    default(object, key, json!({}));
    &mut object[key]
}

pub(crate) fn each<'a>(value: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    value.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten()
}

/// The defaults of a pod template's pod spec.
pub(crate) fn pod_template(template: Option<&mut Value>) {
    if let Some(template) = template {
        pod_spec(child(template, "spec"));
    }
}

/// `SetDefaults_PodSpec`, `_Container`, `_Probe`, `_Volume` and friends.
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
    // A volume that names no source is an empty directory (`SetDefaults_Volume`).
    if let Some(volume) = v.as_object_mut()
        && volume.iter().all(|(field, value)| field == "name" || value.is_null())
    {
        volume.retain(|field, _| field == "name");
        volume.insert("emptyDir".into(), json!({}));
    }
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    fn apply(group: &str, plural: &str, object: &mut Value) {
        crate::registry::strategy::builtin(group, plural).defaults(object);
    }

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
    fn a_volume_without_a_source_is_an_empty_dir() {
        let mut pod = json!({"spec": {"containers": [], "volumes": [
            {"name": "scratch"}, {"name": "nulled", "hostPath": null}, {"name": "c", "configMap": {"name": "x"}}]}});
        apply("", "pods", &mut pod);
        let volumes = &pod["spec"]["volumes"];
        assert_eq!(volumes[0], json!({"name": "scratch", "emptyDir": {}}));
        assert_eq!(volumes[1], json!({"name": "nulled", "emptyDir": {}}));
        assert!(volumes[2].get("emptyDir").is_none());
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

//! What differs between resources, as upstream's per-resource `Strategy` says it
//! (`pkg/registry/<group>/<resource>/strategy.go`): the name rule, whether `generation`
//! is tracked, the field selectors, and the defaults set on create.
//!
//! Resources not named here follow the generic rules. Must never hold behaviour that
//! applies to every resource: that belongs in the generic store.

use keelson_api::ResourceInfo;
use serde_json::{Value, json};

use super::meta::{NameRule, metadata_mut};

pub struct Strategy {
    pub name_rule: NameRule,
    /// `metadata.generation` starts at 1 and goes up when anything but metadata and
    /// status changes (upstream sets it in these resources' `PrepareForCreate`).
    pub tracks_generation: bool,
    /// Field selectors beyond `metadata.name` and `metadata.namespace`.
    pub field_selectors: &'static [&'static str],
    /// Defaults a new object gets before validation.
    pub prepare_create: fn(&mut Value),
    /// Whether DELETE answers with the object rather than a success `Status`.
    pub return_deleted_object: bool,
    /// What an update through `subresource` may change beyond the generic rules, given
    /// the stored object (upstream's `PrepareForUpdate` of each strategy).
    pub prepare_update: fn(Option<&str>, &Value, &mut Value),
}

impl Strategy {
    /// Whether the resource has a `status` subresource, so that updates of the object
    /// keep the stored status and updates of `/status` keep everything else.
    pub fn has_status(info: &ResourceInfo) -> bool {
        info.subresources.iter().any(|s| s.name == "status")
    }
}

fn nothing(_: &mut Value) {}

fn nothing_more(_: Option<&str>, _: &Value, _: &mut Value) {}

fn drop_status(object: &mut Value) {
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
}

pub fn for_resource(info: &ResourceInfo) -> Strategy {
    let generic = Strategy {
        name_rule: NameRule::Subdomain,
        tracks_generation: false,
        field_selectors: &[],
        prepare_create: nothing,
        return_deleted_object: false,
        prepare_update: nothing_more,
    };
    if info.is_custom() {
        // Upstream's custom resource strategy: generation starts at 1 and follows the
        // spec; with a status subresource, a new object's status is the server's to set.
        let prepare_create = if Strategy::has_status(info) { drop_status } else { nothing };
        return Strategy { tracks_generation: true, prepare_create, ..generic };
    }
    match (info.group, info.plural) {
        ("", "namespaces") => Strategy {
            name_rule: NameRule::Label,
            field_selectors: &["status.phase"],
            prepare_create: prepare_namespace,
            return_deleted_object: true,
            ..generic
        },
        ("", "pods") => Strategy {
            tracks_generation: true,
            field_selectors: &[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.podIPs",
                "status.nominatedNodeName",
            ],
            prepare_create: prepare_pod,
            return_deleted_object: true,
            ..generic
        },
        ("", "services") => {
            Strategy { name_rule: NameRule::Label, return_deleted_object: true, ..generic }
        }
        ("", "persistentvolumeclaims") => Strategy { prepare_create: prepare_claim, ..generic },
        ("", "persistentvolumes") => Strategy { prepare_create: prepare_volume, ..generic },
        ("", "resourcequotas") => Strategy { prepare_create: prepare_quota, ..generic },
        ("", "nodes") => Strategy { field_selectors: &["spec.unschedulable"], ..generic },
        ("", "secrets") => Strategy { field_selectors: &["type"], ..generic },
        ("", "events") => Strategy {
            field_selectors: &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            ..generic
        },
        ("", "replicationcontrollers") => {
            Strategy { tracks_generation: true, field_selectors: &["status.replicas"], ..generic }
        }
        ("apps", "replicasets") => {
            Strategy { tracks_generation: true, field_selectors: &["status.replicas"], ..generic }
        }
        ("apps", "deployments" | "statefulsets" | "daemonsets")
        | ("batch", "cronjobs")
        | ("policy", "poddisruptionbudgets")
        | ("networking.k8s.io", "networkpolicies" | "ingresses")
        | ("apiextensions.k8s.io", "customresourcedefinitions")
        | (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations"
            | "validatingwebhookconfigurations"
            | "validatingadmissionpolicies"
            | "validatingadmissionpolicybindings",
        ) => Strategy { tracks_generation: true, ..generic },
        ("batch", "jobs") => Strategy {
            tracks_generation: true,
            field_selectors: &["status.successful"],
            prepare_create: prepare_job,
            ..generic
        },
        ("certificates.k8s.io", "certificatesigningrequests") => Strategy {
            field_selectors: &["spec.signerName"],
            prepare_create: prepare_csr,
            prepare_update: prepare_csr_update,
            ..generic
        },
        ("rbac.authorization.k8s.io", _) => {
            Strategy { name_rule: NameRule::PathSegment, ..generic }
        }
        _ => generic,
    }
}

/// Every namespace carries its name as a label and the `kubernetes` finalizer, and
/// starts `Active`.
fn prepare_namespace(object: &mut Value) {
    let name = super::meta::name(object).unwrap_or_default().to_owned();
    let meta = metadata_mut(object);
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    if let Some(labels) = labels.as_object_mut() {
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    if !object["spec"].is_object() {
        object["spec"] = json!({});
    }
    let finalizers = &mut object["spec"]["finalizers"];
    match finalizers.as_array_mut() {
        Some(list) if !list.iter().any(|f| f == "kubernetes") => list.push(json!("kubernetes")),
        Some(_) => {}
        None => *finalizers = json!(["kubernetes"]),
    }
    object["status"] = json!({ "phase": "Active" });
}

/// A new CSR is neither approved nor issued: users cannot create pre-approved requests.
fn prepare_csr(object: &mut Value) {
    object["status"] = json!({});
}

/// Who asks for a certificate is who sent the request, never what the body claims
/// (upstream's CSR `PrepareForCreate`); called with the authenticated user on create.
pub fn set_requester(info: &ResourceInfo, object: &mut Value, user: &crate::request::User) {
    if (info.group, info.plural) != ("certificates.k8s.io", "certificatesigningrequests") {
        return;
    }
    if !object["spec"].is_object() {
        object["spec"] = json!({});
    }
    let Some(spec) = object["spec"].as_object_mut() else {
        return;
    };
    for field in ["username", "uid", "groups", "extra"] {
        spec.remove(field);
    }
    spec.insert("username".into(), json!(user.name));
    if !user.uid.is_empty() {
        spec.insert("uid".into(), json!(user.uid));
    }
    if !user.groups.is_empty() {
        spec.insert("groups".into(), json!(user.groups));
    }
    if !user.extra.is_empty() {
        spec.insert("extra".into(), json!(user.extra));
    }
}

/// The spec never changes after create. `/status` keeps the `Approved` and `Denied`
/// conditions as stored (when as many are sent), `/approval` keeps the certificate;
/// conditions get their timestamps (upstream's CSR, status and approval strategies).
fn prepare_csr_update(subresource: Option<&str>, old: &Value, new: &mut Value) {
    new["spec"] = old["spec"].clone();
    match subresource {
        Some("status") => {
            for kind in ["Approved", "Denied"] {
                preserve_conditions(old, new, kind);
            }
        }
        Some("approval") => match old["status"].get("certificate") {
            Some(certificate) => new["status"]["certificate"] = certificate.clone(),
            None => {
                if let Some(status) = new["status"].as_object_mut() {
                    status.remove("certificate");
                }
            }
        },
        _ => return,
    }
    stamp_conditions(old, new);
}

/// Upstream's `preserveConditionInstances`: the stored instances of `kind` replace the
/// sent ones, if there are as many.
fn preserve_conditions(old: &Value, new: &mut Value, kind: &str) {
    let of_kind = |object: &Value| -> Vec<usize> {
        object["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .filter(|(_, c)| c["type"] == kind)
            .map(|(i, _)| i)
            .collect()
    };
    let (before, after) = (of_kind(old), of_kind(new));
    if before.len() != after.len() {
        return;
    }
    for (from, to) in before.into_iter().zip(after) {
        new["status"]["conditions"][to] = old["status"]["conditions"][from].clone();
    }
}

/// Upstream's `populateConditionTimestamps`: `lastUpdateTime` now when missing;
/// `lastTransitionTime` kept from a stored condition of the same type and status, else now.
fn stamp_conditions(old: &Value, new: &mut Value) {
    let now = super::meta::now();
    let stored = old["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let Some(conditions) = new["status"]["conditions"].as_array_mut() else {
        return;
    };
    for condition in conditions.iter_mut().filter(|c| c.is_object()) {
        if condition["lastUpdateTime"].as_str().is_none_or(str::is_empty) {
            condition["lastUpdateTime"] = json!(now);
        }
        if condition["lastTransitionTime"].as_str().is_none_or(str::is_empty) {
            let kept = stored.iter().find(|c| {
                c["type"] == condition["type"]
                    && c["status"] == condition["status"]
                    && c["lastTransitionTime"].as_str().is_some_and(|t| !t.is_empty())
            });
            condition["lastTransitionTime"] =
                kept.map_or_else(|| json!(now), |c| c["lastTransitionTime"].clone());
        }
    }
}

/// A new claim is `Pending` until a volume binds it.
fn prepare_claim(object: &mut Value) {
    object["status"] = json!({ "phase": "Pending" });
}

/// A new volume is `Pending` until it is available.
fn prepare_volume(object: &mut Value) {
    object["status"] = json!({ "phase": "Pending" });
}

/// A new quota has no status: the quota controller fills it in.
fn prepare_quota(object: &mut Value) {
    object["status"] = json!({});
}

/// Upstream's job `PrepareForCreate`: no status yet, and unless the user manages the
/// selector, one generated from the job's uid, with the labels that match it on the pod
/// template.
fn prepare_job(object: &mut Value) {
    object["status"] = json!({});
    if object["spec"]["manualSelector"] == true {
        return;
    }
    let uid = object["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    let labels = json!({
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    });
    if !object["spec"].is_object() {
        object["spec"] = json!({});
    }
    object["spec"]["selector"] =
        json!({ "matchLabels": { "batch.kubernetes.io/controller-uid": uid } });
    let template = &mut object["spec"]["template"];
    if !template.is_object() {
        *template = json!({});
    }
    if !template["metadata"].is_object() {
        template["metadata"] = json!({});
    }
    let template_labels = &mut template["metadata"]["labels"];
    if !template_labels.is_object() {
        *template_labels = json!({});
    }
    if let (Some(target), Some(source)) = (template_labels.as_object_mut(), labels.as_object()) {
        for (k, v) in source {
            target.insert(k.clone(), v.clone());
        }
    }
}

/// A new pod is `Pending`, with the QoS class its resources give it.
fn prepare_pod(object: &mut Value) {
    let qos = qos_class(&object["spec"]);
    object["status"] = json!({ "phase": "Pending", "qosClass": qos });
}

pub use keelson_core::pod::qos_class;

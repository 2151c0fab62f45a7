//! Pods: upstream's `pkg/registry/core/pod`.

use std::borrow::Cow;

use keelson_core::pod::qos_class;
use serde_json::{Value, json};

use crate::registry::defaults::{child, pod_spec};
use crate::registry::selector::{SelectableField, scalar_at};
use crate::registry::strategy::Strategy;
use crate::registry::validation::{pod, pod_subresources};
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct Pods;

impl Strategy for Pods {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn field_selectors(&self) -> Cow<'static, [SelectableField]> {
        const FIELDS: &[SelectableField] = &[
            SelectableField::string("spec.nodeName"),
            // What clients before v1 sent for `spec.nodeName`.
            SelectableField::with("spec.host", |pod| {
                scalar_at(pod, "spec.nodeName").unwrap_or_default()
            }),
            SelectableField::string("spec.restartPolicy"),
            SelectableField::string("spec.schedulerName"),
            SelectableField::string("spec.serviceAccountName"),
            SelectableField::boolean("spec.hostNetwork"),
            SelectableField::string("status.phase"),
            // The first of `status.podIPs`.
            SelectableField::with("status.podIP", |pod| {
                scalar_at(pod, "status.podIPs.0.ip")
                    .or_else(|| scalar_at(pod, "status.podIP"))
                    .unwrap_or_default()
            }),
            // Accepted, but upstream's field set has no value for it: it matches only "".
            SelectableField::with("status.podIPs", |_| String::new()),
            SelectableField::string("status.nominatedNodeName"),
        ];
        Cow::Borrowed(FIELDS)
    }

    fn defaults(&self, object: &mut Value) {
        pod_spec(child(object, "spec"));
    }

    /// A new pod is `Pending`, with the QoS class its resources give it.
    fn prepare_create(&self, object: &mut Value) {
        let qos = qos_class(&object["spec"]);
        object["status"] = json!({ "phase": "Pending", "qosClass": qos });
    }

    /// What the `ephemeralcontainers` and `resize` subresources may change, the rest as
    /// stored (upstream's `dropNonEphemeralContainerUpdates` and `dropNonResizeUpdates`,
    /// with `ResetObjectMetaForStatus`).
    fn prepare_update(&self, subresource: Option<&str>, old: &Value, new: &mut Value) {
        let spec = match subresource {
            Some("ephemeralcontainers") => {
                let mut spec = old["spec"].clone();
                let sent = new["spec"].get("ephemeralContainers");
                set_or_remove(&mut spec, "ephemeralContainers", sent);
                Some(spec)
            }
            // `None` when containers were added, removed or renamed: the spec stays as
            // sent, and validation refuses it.
            Some("resize") => resized_spec(&old["spec"], &new["spec"]),
            _ => return,
        };
        if let (Some(spec), Some(map)) = (spec, new.as_object_mut()) {
            map.insert("spec".into(), spec);
        }
        reset_meta_for_status(old, new);
    }

    /// `ephemeralContainers` are added through their subresource only.
    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        pod::spec(&object["spec"], "spec", causes);
        if object["spec"]["ephemeralContainers"].as_array().is_some_and(|c| !c.is_empty()) {
            causes.push(Cause::forbidden("spec.ephemeralContainers", "cannot be set on create"));
        }
    }

    fn validate_update(
        &self,
        old: &Value,
        new: &Value,
        subresource: Option<&str>,
        causes: &mut Vec<Cause>,
    ) {
        match subresource {
            Some("ephemeralcontainers") => {
                pod_subresources::ephemeral_containers_update(old, new, causes)
            }
            Some("resize") => pod_subresources::resize(old, new, causes),
            _ => {
                pod::spec(&new["spec"], "spec", causes);
                pod::update(old, new, causes);
            }
        }
    }

    fn return_deleted_object(&self) -> bool {
        true
    }

    /// Only pods bound to a node have a grace period (their kubelet confirms the end);
    /// unbound and finished ones go at once.
    fn deletion_grace_seconds(&self, object: &Value, requested: Option<i64>) -> i64 {
        let bound = object["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
        let finished = matches!(object["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
        if !bound || finished {
            return 0;
        }
        requested
            .or_else(|| object["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30)
            .max(0)
    }

    fn printer(&self) -> Printer {
        table::pods::POD
    }
}

/// `field` of `object` set to `value`, or removed when there is none.
fn set_or_remove(object: &mut Value, field: &str, value: Option<&Value>) {
    if let Some(map) = object.as_object_mut() {
        match value {
            Some(value) => map.insert(field.to_owned(), value.clone()),
            None => map.remove(field),
        };
    }
}

/// Upstream's `ResetObjectMetaForStatus`: a subresource write keeps the stored labels,
/// annotations, finalizers and owners.
fn reset_meta_for_status(old: &Value, new: &mut Value) {
    let Some(meta) = new.get_mut("metadata") else { return };
    for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
        set_or_remove(meta, field, old["metadata"].get(field));
    }
}

/// The stored spec with the sent containers' `resources` and `resizePolicy`; `None`
/// when the sent containers are not the stored ones by count and name.
fn resized_spec(old: &Value, new: &Value) -> Option<Value> {
    let mut spec = old.clone();
    for list in ["containers", "initContainers"] {
        let stored = old[list].as_array().map_or(&[][..], Vec::as_slice);
        let sent = new[list].as_array().map_or(&[][..], Vec::as_slice);
        if stored.len() != sent.len() {
            return None;
        }
        let mut resized = Vec::with_capacity(stored.len());
        for (o, n) in stored.iter().zip(sent) {
            if o["name"] != n["name"] {
                return None;
            }
            let mut container = o.clone();
            for field in ["resources", "resizePolicy"] {
                set_or_remove(&mut container, field, n.get(field));
            }
            resized.push(container);
        }
        if !resized.is_empty() {
            set_or_remove(&mut spec, list, Some(&Value::Array(resized)));
        }
    }
    Some(spec)
}

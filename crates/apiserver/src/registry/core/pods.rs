//! Pods: upstream's `pkg/registry/core/pod`.

use std::borrow::Cow;

use keelson_core::pod::qos_class;
use serde_json::{Value, json};

use crate::registry::defaults::{child, pod_spec};
use crate::registry::selector::{SelectableField, scalar_at};
use crate::registry::strategy::Strategy;
use crate::registry::validation::pod;
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

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        pod::spec(&object["spec"], "spec", causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, _: Option<&str>, causes: &mut Vec<Cause>) {
        self.validate(new, causes);
        pod::update(old, new, causes);
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

//! ReplicationControllers: upstream's `pkg/registry/core/replicationcontroller`.

use std::borrow::Cow;

use serde_json::{Value, json};

use crate::registry::defaults::{child, default, pod_template};
use crate::registry::selector::SelectableField;
use crate::registry::strategy::Strategy;
use crate::registry::validation::workloads;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct ReplicationControllers;

impl Strategy for ReplicationControllers {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn field_selectors(&self) -> Cow<'static, [SelectableField]> {
        const FIELDS: &[SelectableField] = &[SelectableField::integer("status.replicas")];
        Cow::Borrowed(FIELDS)
    }

    fn defaults(&self, object: &mut Value) {
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

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        workloads::replicated("replicationcontrollers", object, causes);
    }

    fn printer(&self) -> Printer {
        table::workloads::REPLICATION_CONTROLLER
    }
}

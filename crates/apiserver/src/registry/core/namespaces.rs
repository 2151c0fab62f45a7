//! Namespaces: upstream's `pkg/registry/core/namespace`.

use std::borrow::Cow;

use serde_json::{Value, json};

use crate::meta::{self, NameRule, metadata_mut};
use crate::registry::selector::SelectableField;
use crate::registry::strategy::Strategy;
use crate::table::{self, Printer};

pub struct Namespaces;

impl Strategy for Namespaces {
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn field_selectors(&self) -> Cow<'static, [SelectableField]> {
        const FIELDS: &[SelectableField] = &[SelectableField::string("status.phase")];
        Cow::Borrowed(FIELDS)
    }

    /// Every namespace carries its name as a label and the `kubernetes` finalizer, and
    /// starts `Active`.
    fn prepare_create(&self, object: &mut Value) {
        let name = meta::name(object).unwrap_or_default().to_owned();
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

    fn return_deleted_object(&self) -> bool {
        true
    }

    /// A namespace with `spec.finalizers` waits, `Terminating`, for the namespace
    /// controller to empty it and `finalize` it.
    fn held_on_delete(&self, object: &Value) -> bool {
        object["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty())
    }

    fn prepare_held_delete(&self, object: &mut Value) {
        object["status"]["phase"] = json!("Terminating");
    }

    fn printer(&self) -> Printer {
        table::core::NAMESPACE
    }
}

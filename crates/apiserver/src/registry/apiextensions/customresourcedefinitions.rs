//! CustomResourceDefinitions: the apiextensions-apiserver's
//! `pkg/registry/customresourcedefinition`; printed with the default columns, as upstream
//! has no printer for them. Serving what they define is `crate::crd`.

use serde_json::{Value, json};

use crate::registry::strategy::Strategy;
use crate::registry::validation::crd;
use crate::status::Cause;

pub struct CustomResourceDefinitions;

impl Strategy for CustomResourceDefinitions {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn defaults(&self, object: &mut Value) {
        crd::defaults(object);
    }

    /// No names are accepted yet; the storage version is the one stored so far.
    fn prepare_create(&self, object: &mut Value) {
        let stored: Vec<Value> = object["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["storage"] == true)
            .map(|v| v["name"].clone())
            .collect();
        object["status"] = json!({
            "conditions": [],
            "acceptedNames": { "plural": "", "kind": "" },
            "storedVersions": stored,
        });
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        crd::crd(object, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, _: Option<&str>, causes: &mut Vec<Cause>) {
        self.validate(new, causes);
        crd::update(old, new, causes);
    }
}

//! RoleBindings and ClusterRoleBindings: upstream's `pkg/registry/rbac/rolebinding` and
//! `clusterrolebinding`.

use serde_json::{Value, json};

use crate::meta::NameRule;
use crate::registry::strategy::Strategy;
use crate::registry::validation::cluster;
use crate::status::Cause;
use crate::table::{self, Printer};

/// The RBAC API group.
const GROUP: &str = "rbac.authorization.k8s.io";

pub struct Bindings {
    plural: &'static str,
    printer: Printer,
}

pub const ROLE_BINDINGS: Bindings =
    Bindings { plural: "rolebindings", printer: table::auth::ROLE_BINDING };
pub const CLUSTER_ROLE_BINDINGS: Bindings =
    Bindings { plural: "clusterrolebindings", printer: table::auth::CLUSTER_ROLE_BINDING };

impl Strategy for Bindings {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    /// `SetDefaults_RoleBinding`/`_ClusterRoleBinding` and `SetDefaults_Subject`: an empty
    /// `roleRef.apiGroup`, and a User's or Group's empty `apiGroup`, are RBAC's.
    fn defaults(&self, object: &mut Value) {
        let empty = |v: &Value| v.as_str().is_none_or(str::is_empty);
        if object["roleRef"].is_object() && empty(&object["roleRef"]["apiGroup"]) {
            object["roleRef"]["apiGroup"] = json!(GROUP);
        }
        let subjects = object.get_mut("subjects").and_then(Value::as_array_mut);
        for subject in subjects.into_iter().flatten().filter(|s| s.is_object()) {
            if empty(&subject["apiGroup"])
                && matches!(subject["kind"].as_str(), Some("User" | "Group"))
            {
                subject["apiGroup"] = json!(GROUP);
            }
        }
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        cluster::binding(self.plural, object, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, _: Option<&str>, causes: &mut Vec<Cause>) {
        self.validate(new, causes);
        cluster::binding_update(old, new, causes);
    }

    fn printer(&self) -> Printer {
        self.printer
    }
}

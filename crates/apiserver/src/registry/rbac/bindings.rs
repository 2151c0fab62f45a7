//! RoleBindings and ClusterRoleBindings: upstream's `pkg/registry/rbac/rolebinding` and
//! `clusterrolebinding`.

use serde_json::Value;

use crate::meta::NameRule;
use crate::registry::strategy::Strategy;
use crate::registry::validation::cluster;
use crate::status::Cause;
use crate::table::{self, Printer};

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

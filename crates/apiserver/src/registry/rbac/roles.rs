//! Roles and ClusterRoles: upstream's `pkg/registry/rbac/role` and `clusterrole`;
//! printed with the default columns, as upstream has no printer for them.

use serde_json::Value;

use crate::meta::NameRule;
use crate::registry::strategy::Strategy;
use crate::registry::validation::cluster;
use crate::status::Cause;

pub struct Roles {
    plural: &'static str,
}

pub const ROLES: Roles = Roles { plural: "roles" };
pub const CLUSTER_ROLES: Roles = Roles { plural: "clusterroles" };

impl Strategy for Roles {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        cluster::role(self.plural, object, causes);
    }
}

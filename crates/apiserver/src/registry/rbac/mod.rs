//! The `rbac.authorization.k8s.io` group: upstream's `pkg/registry/rbac`.

pub mod bindings;
pub mod roles;

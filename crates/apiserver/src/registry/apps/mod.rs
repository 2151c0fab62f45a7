//! The `apps` group's workloads: upstream's `pkg/registry/apps`.

pub mod daemonsets;
pub mod deployments;
pub mod replicasets;
pub mod statefulsets;

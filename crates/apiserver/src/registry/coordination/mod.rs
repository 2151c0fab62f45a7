//! The `coordination.k8s.io` group: upstream's `pkg/registry/coordination`.

pub mod leases;

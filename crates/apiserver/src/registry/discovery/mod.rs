//! The `discovery.k8s.io` group: upstream's `pkg/registry/discovery`.

pub mod endpointslices;

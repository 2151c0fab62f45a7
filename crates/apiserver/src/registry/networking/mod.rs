//! The `networking.k8s.io` group: upstream's `pkg/registry/networking`.

pub mod ingresses;

//! The `scheduling.k8s.io` group: upstream's `pkg/registry/scheduling`.

pub mod priorityclasses;

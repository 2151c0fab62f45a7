//! The `storage.k8s.io` group: upstream's `pkg/registry/storage`.

pub mod storageclasses;

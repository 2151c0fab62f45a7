//! The `apiextensions.k8s.io` group: the apiextensions-apiserver's registry.

pub mod customresourcedefinitions;

//! Keelson's resource registry: every built-in Kubernetes resource the API server serves,
//! with the names, scope, verbs, short names, categories and subresources a Kubernetes 1.34
//! kube-apiserver reports for it in discovery, and the etcd-style key prefix it is stored
//! under.
//!
//! The API server builds discovery (`/api`, `/apis`, `kubectl api-resources`) and its REST
//! routes from [`Registry::builtin`]; other crates use [`k8s_openapi`] through the re-export
//! here so the whole workspace agrees on one Kubernetes version.
//!
//! This crate is data and lookups only. It must never depend on the store, the network or
//! any other Keelson crate, and must never hold per-resource behaviour (validation,
//! defaulting, printing): that lives with each resource's strategy in the API server.
//!
//! ```
//! use keelson_api::{Registry, Scope};
//!
//! let pods = Registry::builtin().find("", "v1", "pods").unwrap();
//! assert_eq!(pods.kind, "Pod");
//! assert_eq!(pods.scope, Scope::Namespaced);
//! assert_eq!(pods.storage_prefix(), "/registry/pods/");
//! let scale = Registry::builtin().find("apps", "v1", "deployments").unwrap();
//! assert_eq!(scale.subresource("scale").unwrap().group, "autoscaling");
//! ```

mod builtin;
mod discovery;
mod registry;
mod resource;

pub use k8s_openapi;

pub use registry::{GroupInfo, Registry};
pub use resource::{ResourceInfo, Scope, Subresource, TypeError, Typed};
pub use schemars;

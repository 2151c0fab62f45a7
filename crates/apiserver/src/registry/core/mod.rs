//! The core (legacy, `v1`) group's resources: upstream's `pkg/registry/core`.

pub mod configmaps;
pub mod events;
pub mod limitranges;
pub mod namespaces;
pub mod nodes;
pub mod persistentvolumeclaims;
pub mod persistentvolumes;
pub mod pods;
pub mod podtemplates;
pub mod replicationcontrollers;
pub mod resourcequotas;
pub mod secrets;
pub mod services;

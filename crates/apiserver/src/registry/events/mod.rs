//! The `events.k8s.io` group: upstream serves it from `pkg/registry/core/event`'s
//! storage; Keelson stores its objects in their own shape.

// The group and its one resource share their name, as `<group>/<resource>.rs` has it.
#[allow(clippy::module_inception)]
pub mod events;

//! The `policy` group: upstream's `pkg/registry/policy`.

pub mod poddisruptionbudgets;

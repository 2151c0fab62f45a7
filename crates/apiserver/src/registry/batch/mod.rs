//! The `batch` group: upstream's `pkg/registry/batch`.

pub mod cronjobs;
pub mod jobs;

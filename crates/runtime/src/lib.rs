//! What every Keelson component that is an API client shares — the scheduler, the
//! controller manager, the cloud controller manager, the kubelet and the proxy — on
//! kube-rs's client and watcher, as client-go is what upstream's components share:
//!
//! - [`informer`]: shared informers — one list-and-watch per resource type per
//!   process, typed stores with indexes, change handlers, re-list after `410 Gone`;
//! - [`queue`]: the rate-limited work queue with per-key dedup, delays and backoff;
//! - [`controller`]: the controller table (`name → start`, each with its own
//!   ServiceAccount), `--controllers` selection, and the worker loop;
//! - [`leader`]: Lease-based leader election with upstream's timings;
//! - [`events`]: the event recorder (deduplicated, aggregated, rate-limited);
//! - [`metrics`]: work-queue and reconcile metrics under upstream's names;
//! - [`health`] and [`secure`]: named health checks, and the secure port that serves them
//!   and the metrics, with authentication and authorization delegated to the API server;
//! - [`credentials`]: clients from kubeconfigs and per-controller ServiceAccount tokens.
//!
//! Must never reach the datastore or the API server's internals: a component built on
//! this crate meets the cluster only over HTTPS, so it runs in `keelson server` or
//! alone, as upstream's do.

pub mod controller;
pub mod credentials;
pub mod events;
pub mod health;
pub mod informer;
pub mod leader;
pub mod metrics;
pub mod queue;
pub mod secure;

pub use kube;

/// Errors of the runtime's own setup; a controller's reconcile errors are its own.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

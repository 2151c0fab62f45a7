//! A component's named health checks, which its secure port answers on `/healthz`,
//! `/livez` and `/readyz` (kube-controller-manager's `MutableHealthzHandler`): checks
//! join while the component runs — leader election at start, each controller as it
//! starts.
//!
//! Must never block: a check reads state the component keeps, it does no I/O.

use std::sync::{Arc, RwLock};

type Check = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The checks, in the order they were added; cheap to clone, shared.
#[derive(Clone, Default)]
pub struct Checks {
    checks: Arc<RwLock<Vec<(String, Check)>>>,
}

impl Checks {
    /// Adds a check called `name`; `Err` says why it fails (logged, never answered).
    pub fn add(
        &self,
        name: impl Into<String>,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) {
        let mut checks = self.checks.write().unwrap_or_else(|e| e.into_inner());
        checks.push((name.into(), Arc::new(check)));
    }

    /// Runs every check, in order.
    pub fn run(&self) -> Vec<(String, Result<(), String>)> {
        let checks = self.checks.read().unwrap_or_else(|e| e.into_inner()).clone();
        checks.into_iter().map(|(name, check)| (name, check())).collect()
    }
}

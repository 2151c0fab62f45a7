//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's
//! `leaderelection` with the `LeaseLock`: of several instances of a component, one
//! works and the others wait to take over.
//!
//! - A candidate takes the Lease when it does not exist, when nobody holds it, or when
//!   its holder has not renewed it for `lease_duration` *as this candidate observed* (a
//!   local clock measures the silence, so clocks of different machines never meet).
//! - The leader renews every `retry_period`; if it cannot renew for `renew_deadline` it
//!   stops leading (its work is dropped) before another candidate can take over.
//! - Stopping on purpose releases the Lease (holder emptied, one-second duration), so
//!   the next candidate takes over at its next try instead of after `lease_duration`.
//!
//! Upstream's timings are the default: 15 s lease, 10 s renew deadline, 2 s retry.
//!
//! Must never let two holders both believe they lead: a write of the Lease is always
//! conditional on the revision read.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keelson_api::k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use keelson_api::k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;

/// How long a lease lasts and how often it is renewed and retried.
#[derive(Clone, Debug)]
pub struct LeaseTimings {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    /// kube-controller-manager's and kube-scheduler's defaults.
    fn default() -> Self {
        LeaseTimings {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// How a [`LeaderElection::run`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Asked to stop; the lease was released if held.
    Stopped,
    /// The lease could not be renewed in time; the work was dropped. Upstream's
    /// components exit here.
    Lost,
    /// The work ended by itself; the lease was released.
    Finished,
}

/// One candidate for one lease.
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: LeaseTimings,
    /// The holder and renew time last seen, and when they were first seen so.
    observed: Option<(Option<String>, Option<MicroTime>, Instant)>,
    /// While leading, when the lease was last renewed.
    renewed: Arc<Mutex<Option<Instant>>>,
}

/// How long past the lease's duration a leader that has not renewed counts as unhealthy
/// (kube-controller-manager's `NewLeaderHealthzAdaptor(20 * time.Second)`).
pub const HEALTH_TOLERANCE: Duration = Duration::from_secs(20);

/// The `leaderElection` health check of a candidate (client-go's `HealthzAdaptor`):
/// healthy while not leading, and while leading unless the lease went unrenewed for its
/// duration plus [`HEALTH_TOLERANCE`] — a leader that should have stopped but is stuck.
#[derive(Clone)]
pub struct LeaderHealth {
    lease: String,
    lease_duration: Duration,
    renewed: Arc<Mutex<Option<Instant>>>,
}

impl LeaderHealth {
    pub fn check(&self) -> Result<(), String> {
        let renewed = *self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        match renewed {
            Some(at) if at.elapsed() > self.lease_duration + HEALTH_TOLERANCE => {
                Err(format!("failed election to renew leadership on lease {}", self.lease))
            }
            _ => Ok(()),
        }
    }
}

impl LeaderElection {
    /// A candidate called `identity` for Lease `namespace/name`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timings: LeaseTimings,
    ) -> Self {
        LeaderElection {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timings,
            observed: None,
            renewed: Arc::default(),
        }
    }

    /// The candidate's `leaderElection` health check.
    pub fn health(&self) -> LeaderHealth {
        LeaderHealth {
            lease: self.name.clone(),
            lease_duration: self.timings.lease_duration,
            renewed: self.renewed.clone(),
        }
    }

    fn set_renewed(&self, at: Option<Instant>) {
        *self.renewed.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// Adds the candidate's `leaderElection` check to a component's health checks.
    pub fn report_to(&self, checks: &crate::health::Checks) {
        let leader = self.health();
        checks.add("leaderElection", move || leader.check());
    }

    /// Upstream's identity: the host name and a unique suffix.
    pub fn default_identity() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        format!("{host}_{}", uuid::Uuid::new_v4())
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits to lead, then runs `work` while leading. Returns when `stop` completes,
    /// when the lease is lost or when `work` ends.
    pub async fn run<W: Future<Output = ()>>(
        &mut self,
        stop: impl Future<Output = ()>,
        work: W,
    ) -> Outcome {
        tokio::pin!(stop);
        // Wait to lead.
        loop {
            if self.try_acquire_or_renew().await {
                break;
            }
            tokio::select! {
                _ = &mut stop => return Outcome::Stopped,
                _ = tokio::time::sleep(jittered(self.timings.retry_period)) => {}
            }
        }
        tracing::info!(lease = %self.name, identity = %self.identity, "successfully acquired lease");
        tokio::pin!(work);
        let mut last_renew = Instant::now();
        self.set_renewed(Some(last_renew));
        let outcome = loop {
            tokio::select! {
                _ = &mut stop => break Outcome::Stopped,
                _ = &mut work => break Outcome::Finished,
                _ = tokio::time::sleep(self.timings.retry_period) => {
                    if self.try_acquire_or_renew().await {
                        last_renew = Instant::now();
                        self.set_renewed(Some(last_renew));
                    } else if last_renew.elapsed() >= self.timings.renew_deadline {
                        tracing::error!(lease = %self.name, identity = %self.identity, "leader election lost");
                        self.set_renewed(None);
                        return Outcome::Lost;
                    }
                }
            }
        };
        self.set_renewed(None);
        self.release().await;
        outcome
    }

    fn record(&self, current: Option<&LeaseSpec>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        let ours =
            current.is_some_and(|s| s.holder_identity.as_deref() == Some(self.identity.as_str()));
        let transitions = current.and_then(|s| s.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                self.timings.lease_duration.as_secs().max(1).try_into().unwrap_or(i32::MAX),
            ),
            acquire_time: if ours {
                current.and_then(|s| s.acquire_time.clone())
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if ours || current.is_none() {
                transitions
            } else {
                transitions.saturating_add(1)
            }),
            ..LeaseSpec::default()
        }
    }

    /// One try to take or keep the lease (client-go's `tryAcquireOrRenew`).
    async fn try_acquire_or_renew(&mut self) -> bool {
        let current = match self.api.get_opt(&self.name).await {
            Ok(current) => current,
            Err(e) => {
                tracing::warn!(lease = %self.name, error = %e, "cannot read the lease");
                return false;
            }
        };
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(self.record(None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    self.observe(lease.spec.as_ref());
                    true
                }
                Err(e) => {
                    tracing::debug!(lease = %self.name, error = %e, "cannot create the lease");
                    false
                }
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        self.observe(Some(&spec));
        let holder = spec.holder_identity.as_deref().unwrap_or_default();
        let held_by_other = !holder.is_empty() && holder != self.identity;
        let observed_at = self.observed.as_ref().map(|o| o.2).unwrap_or_else(Instant::now);
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.timings.lease_duration);
        if held_by_other && observed_at.elapsed() < duration {
            return false;
        }
        lease.spec = Some(self.record(Some(&spec)));
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => {
                self.observe(lease.spec.as_ref());
                true
            }
            Err(e) => {
                tracing::debug!(lease = %self.name, error = %e, "cannot update the lease");
                false
            }
        }
    }

    /// Notes the record read; a changed one restarts the silence clock.
    fn observe(&mut self, spec: Option<&LeaseSpec>) {
        let holder = spec.and_then(|s| s.holder_identity.clone());
        let renewed = spec.and_then(|s| s.renew_time.clone());
        let changed = match &self.observed {
            Some((h, r, _)) => *h != holder || *r != renewed,
            None => true,
        };
        if changed {
            self.observed = Some((holder, renewed, Instant::now()));
        }
    }

    /// Gives the lease up if this candidate holds it.
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else { return };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        let now = MicroTime(Timestamp::now());
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        if let Err(e) = self.api.replace(&self.name, &PostParams::default(), &lease).await {
            tracing::warn!(lease = %self.name, error = %e, "cannot release the lease");
        }
    }
}

/// `d` stretched by up to 20 %, as upstream's `wait.Jitter(retryPeriod, 1.2)`.
fn jittered(d: Duration) -> Duration {
    let fraction = f64::from(uuid::Uuid::new_v4().as_u128() as u16) / f64::from(u16::MAX);
    d.mul_f64(1.0 + 0.2 * fraction)
}

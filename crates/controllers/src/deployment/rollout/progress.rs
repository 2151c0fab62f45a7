//! The status and its conditions (upstream's `progress.go` and `syncDeploymentStatus`):
//! counts summed over the ReplicaSets, `Available`, `Progressing` with the progress
//! deadline, `ReplicaFailure` copied from the ReplicaSets, and the paused conditions.

use keelson_api::k8s_openapi::api::apps::v1::ReplicaSet;
use keelson_api::k8s_openapi::jiff::Timestamp;
use keelson_runtime::controller::Action;
use std::time::Duration;

use super::{Result, Rollout, name};
use crate::deployment::util::*;

impl Rollout<'_> {
    /// Writes the status the ReplicaSets add up to (`syncDeploymentStatus`).
    pub(super) async fn sync_status(
        &mut self,
        all: &[ReplicaSet],
        new: Option<&ReplicaSet>,
    ) -> Result<Action> {
        let refs: Vec<&ReplicaSet> = all.iter().chain(new).collect();
        let status = calculate_status(&refs, new, &self.d);
        if !self.d.status.as_ref().is_some_and(|s| crate::wire::same_status(s, &status)) {
            self.d.status = Some(status);
            self.write_status().await?;
        }
        Ok(Action::AwaitChange)
    }

    /// The status with the Progressing and ReplicaFailure conditions (upstream's
    /// `syncRolloutStatus`); a stuck rollout is looked at again at its deadline.
    pub(super) async fn sync_rollout_status(
        &mut self,
        all: &[ReplicaSet],
        new: Option<&ReplicaSet>,
    ) -> Result<Action> {
        let refs: Vec<&ReplicaSet> = all.iter().chain(new).collect();
        let mut status = calculate_status(&refs, new, &self.d);
        let d = &self.d;
        if !has_progress_deadline(d) {
            remove_condition(&mut status, PROGRESSING);
        }
        let old_status = d.status.clone().unwrap_or_default();
        let current = condition(&old_status, PROGRESSING).cloned();
        let is_complete = status.replicas == status.updated_replicas
            && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
        let subject = match new {
            Some(rs) => format!("ReplicaSet {:?}", name(&rs.metadata)),
            None => format!("Deployment {:?}", name(&d.metadata)),
        };
        if has_progress_deadline(d) && !is_complete {
            if complete(d, &status) {
                let message = format!("{subject} has successfully progressed.");
                set_condition(
                    &mut status,
                    new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, message),
                );
            } else if progressing(d, &status) {
                let message = format!("{subject} is progressing.");
                let mut c = new_condition(PROGRESSING, "True", REPLICA_SET_UPDATED, message);
                if let Some(current) = &current {
                    if current.status == "True" {
                        c.last_transition_time = current.last_transition_time.clone();
                    }
                    remove_condition(&mut status, PROGRESSING);
                }
                set_condition(&mut status, c);
            } else if timed_out(d, &status, Timestamp::now()) {
                let message = format!("{subject} has timed out progressing.");
                set_condition(&mut status, new_condition(PROGRESSING, "False", TIMED_OUT, message));
            }
        }
        let failures = |rs: &ReplicaSet| -> Vec<_> {
            let conditions =
                rs.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            conditions.into_iter().filter(|c| c.type_ == REPLICA_FAILURE).collect()
        };
        let mut failed = new.map(failures).unwrap_or_default();
        if failed.is_empty() {
            failed = refs.iter().flat_map(|rs| failures(rs)).collect();
        }
        match failed.into_iter().next() {
            Some(c) => set_condition(
                &mut status,
                keelson_api::k8s_openapi::api::apps::v1::DeploymentCondition {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                    last_update_time: c.last_transition_time.clone(),
                    last_transition_time: c.last_transition_time,
                },
            ),
            None => remove_condition(&mut status, REPLICA_FAILURE),
        }
        if d.status.as_ref().is_some_and(|s| crate::wire::same_status(s, &status)) {
            return Ok(self.requeue_stuck(&status));
        }
        self.d.status = Some(status);
        self.write_status().await?;
        Ok(Action::AwaitChange)
    }

    /// When to look again at a rollout that has not finished within its deadline.
    fn requeue_stuck(
        &self,
        status: &keelson_api::k8s_openapi::api::apps::v1::DeploymentStatus,
    ) -> Action {
        let old = self.d.status.clone().unwrap_or_default();
        let Some(current) = condition(&old, PROGRESSING).filter(|_| has_progress_deadline(&self.d))
        else {
            return Action::AwaitChange;
        };
        if complete(&self.d, status) || current.reason.as_deref() == Some(TIMED_OUT) {
            return Action::AwaitChange;
        }
        let deadline = i64::from(
            self.d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600),
        );
        let from = current.last_update_time.as_ref().map_or(0, |t| t.0.as_second());
        let after = from + deadline - Timestamp::now().as_second();
        Action::RequeueAfter(Duration::from_secs(after.max(0) as u64 + 1))
    }

    pub async fn check_paused_conditions(&mut self) -> Result<()> {
        if !has_progress_deadline(&self.d) {
            return Ok(());
        }
        let reason = condition(self.status(), PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT) {
            return Ok(());
        }
        let paused_exists = reason.as_deref() == Some(PAUSED);
        let c = match (is_paused(&self.d), paused_exists) {
            (true, false) => {
                new_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused".into())
            }
            (false, true) => {
                new_condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed".into())
            }
            _ => return Ok(()),
        };
        set_condition(self.status(), c);
        self.write_status().await
    }
}

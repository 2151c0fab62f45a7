//! The two strategies (upstream's `rolling.go` and `recreate.go`): RollingUpdate moves
//! replicas from the old ReplicaSets to the new one within maxSurge and
//! maxUnavailable; Recreate scales every old one to zero and waits for their pods to
//! be gone before the new one scales up.

use std::sync::Arc;

use keelson_api::k8s_openapi::api::apps::v1::ReplicaSet;
use keelson_api::k8s_openapi::api::core::v1::Pod;
use keelson_runtime::controller::Action;

use super::{Result, Rollout, active, name, total};
use crate::deployment::util::*;

impl Rollout<'_> {
    pub async fn rolling(&mut self, rss: &[ReplicaSet]) -> Result<Action> {
        if self.rss.is_empty() {
            self.rss = rss.to_vec();
        }
        let (new, old) = self.new_and_old(true).await?;
        let Some(new) = new else { return Ok(Action::AwaitChange) };
        let mut all = old.clone();
        all.push(new.clone());
        if self.reconcile_new(&all, &new).await? {
            return self.sync_rollout_status(&old, Some(&new)).await;
        }
        if self.reconcile_old(&all, active(&old), &new).await {
            return self.sync_rollout_status(&old, Some(&new)).await;
        }
        if complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(&old, Some(&new)).await
    }

    async fn reconcile_new(&mut self, all: &[ReplicaSet], new: &ReplicaSet) -> Result<bool> {
        let want = replicas(&self.d);
        if rs_replicas(new) == want {
            return Ok(false);
        }
        let target = if rs_replicas(new) > want { want } else { self.new_rs_replicas(all, new) };
        Ok(self.scale_to(new, target).await?.0)
    }

    /// Scales old ReplicaSets down as far as maxUnavailable allows; errors are logged and
    /// end the step, as upstream's `reconcileOldReplicaSets` does.
    async fn reconcile_old(
        &mut self,
        all: &[ReplicaSet],
        mut old: Vec<ReplicaSet>,
        new: &ReplicaSet,
    ) -> bool {
        if total(&old) == 0 {
            return false;
        }
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        let new_unavailable = rs_replicas(new) - rs_status(new).2;
        let max_scaled_down = total(all) - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        old.sort_by(by_creation);
        let mut cleaned = 0;
        for rs in old.iter_mut() {
            if cleaned >= max_scaled_down {
                break;
            }
            let (want, available) = (rs_replicas(rs), rs_status(rs).2);
            if want == 0 || want == available {
                continue;
            }
            let count = (max_scaled_down - cleaned).min(want - available);
            // A status counting pods the spec no longer asks for (written before the
            // last scale-down) would make this a scale-up: never act on it.
            if count < 0 {
                tracing::warn!(replicaset = %name(&rs.metadata), want, available, "invalid request to scale down unhealthy replicas");
                return false;
            }
            match self.scale_to(rs, want - count).await {
                Ok((_, updated)) => *rs = updated,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot scale down unhealthy replicas");
                    return false;
                }
            }
            cleaned += count;
        }
        let mut all = old.clone();
        all.push(new.clone());
        let available: i32 = all.iter().map(|rs| rs_status(rs).2).sum();
        let mut scaled_down = 0;
        if available > min_available {
            let to_scale_down = available - min_available;
            for rs in &old {
                if scaled_down >= to_scale_down {
                    break;
                }
                if rs_replicas(rs) == 0 {
                    continue;
                }
                let count = rs_replicas(rs).min(to_scale_down - scaled_down);
                if let Err(e) = self.scale_to(rs, rs_replicas(rs) - count).await {
                    tracing::warn!(error = %e, "cannot scale down old replicas");
                    return false;
                }
                scaled_down += count;
            }
        }
        cleaned + scaled_down > 0
    }

    pub async fn recreate(&mut self, rss: &[ReplicaSet], pods: &[Arc<Pod>]) -> Result<Action> {
        self.rss = rss.to_vec();
        let (mut new, mut old) = self.new_and_old(false).await?;
        let mut scaled_down = false;
        for rs in active(&old) {
            scaled_down |= self.scale_to(&rs, 0).await?.0;
        }
        if scaled_down {
            return self.sync_rollout_status(&old, new.as_ref()).await;
        }
        let new_uid = new.as_ref().and_then(|n| n.metadata.uid.clone());
        let old_running = old.iter().map(|rs| rs_status(rs).0).sum::<i32>() > 0
            || pods.iter().any(|p| {
                let owner = crate::pods::controller_of(&p.metadata).map(|r| r.uid.clone());
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                owner != new_uid && !matches!(phase, Some("Failed" | "Succeeded"))
            });
        if old_running {
            return self.sync_rollout_status(&old, new.as_ref()).await;
        }
        if new.is_none() {
            (new, old) = self.new_and_old(true).await?;
        }
        if let Some(rs) = &new {
            self.scale_to(rs, replicas(&self.d)).await?;
        }
        if complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(&old, new.as_ref()).await
    }
}

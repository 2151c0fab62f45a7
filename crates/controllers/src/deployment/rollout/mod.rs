//! One sync of one Deployment (upstream's `sync.go`, `rolling.go`, `recreate.go` and
//! `progress.go`): finding or creating the new ReplicaSet, scaling, cleaning up old
//! revisions and writing the status with its conditions.
//!
//! [`Rollout`] holds the Deployment and its ReplicaSets as this sync last wrote them,
//! so a later step never writes from a copy an earlier step made stale.

use std::collections::HashMap;

use keelson_api::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use keelson_api::k8s_openapi::api::core::v1::ObjectReference;
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_runtime::controller::Action;
use keelson_runtime::events::EventType;
use kube::api::{Api, DeleteParams, PostParams};

mod progress;
mod strategy;

use super::Controller;
use super::util::{self, *};
use crate::pods::controller_ref;
use crate::replicaset::message;

type Result<T, E = kube::Error> = std::result::Result<T, E>;

pub struct Rollout<'a> {
    c: &'a Controller,
    d: Deployment,
    deployments: Api<Deployment>,
    sets: Api<ReplicaSet>,
    /// The ReplicaSets the Deployment owns, as last written.
    rss: Vec<ReplicaSet>,
}

fn name(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn active(rss: &[ReplicaSet]) -> Vec<ReplicaSet> {
    rss.iter().filter(|rs| rs_replicas(rs) > 0).cloned().collect()
}

fn total(rss: &[ReplicaSet]) -> i32 {
    rss.iter().map(rs_replicas).sum()
}

impl<'a> Rollout<'a> {
    pub fn new(c: &'a Controller, d: Deployment) -> Self {
        let namespace = d.metadata.namespace.clone().unwrap_or_default();
        Rollout {
            c,
            deployments: Api::namespaced(c.client.clone(), &namespace),
            sets: Api::namespaced(c.client.clone(), &namespace),
            d,
            rss: Vec::new(),
        }
    }

    fn event(&self, kind: EventType, reason: &str, message: &str) {
        let reference = ObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some("Deployment".into()),
            name: self.d.metadata.name.clone(),
            namespace: self.d.metadata.namespace.clone(),
            uid: self.d.metadata.uid.clone(),
            resource_version: self.d.metadata.resource_version.clone(),
            ..ObjectReference::default()
        };
        self.c.recorder.event(&reference, kind, reason, message);
    }

    fn status(&mut self) -> &mut keelson_api::k8s_openapi::api::apps::v1::DeploymentStatus {
        self.d.status.get_or_insert_default()
    }

    /// Writes the Deployment's status (and annotations) through `/status`.
    async fn write_status(&mut self) -> Result<()> {
        let updated = self
            .deployments
            .replace_status(&name(&self.d.metadata), &PostParams::default(), &self.d)
            .await?;
        self.d = updated;
        Ok(())
    }

    fn remember(&mut self, rs: &ReplicaSet) {
        match self.rss.iter_mut().find(|r| r.metadata.uid == rs.metadata.uid) {
            Some(slot) => *slot = rs.clone(),
            None => self.rss.push(rs.clone()),
        }
    }

    pub async fn selecting_all(&mut self) -> Result<Action> {
        self.event(
            EventType::Warning,
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.",
        );
        let generation = self.d.metadata.generation;
        if self.status().observed_generation < generation {
            self.status().observed_generation = generation;
            self.write_status().await?;
        }
        Ok(Action::AwaitChange)
    }

    /// The new ReplicaSet (found, or made when `create`) and every old one.
    async fn new_and_old(&mut self, create: bool) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>)> {
        let mut sorted = self.rss.clone();
        sorted.sort_by(by_creation);
        let template = self.d.spec.clone().unwrap_or_default().template;
        let existing = sorted.iter().find(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignoring_hash(t, &template))
        });
        let old: Vec<ReplicaSet> = self
            .rss
            .iter()
            .filter(|rs| existing.is_none_or(|e| e.metadata.uid != rs.metadata.uid))
            .cloned()
            .collect();
        let existing = existing.cloned();
        let new = self.new_replica_set(existing, &old, create).await?;
        Ok((new, old))
    }

    /// Upstream's `getNewReplicaSet`: the existing one with its revision raised, or a new
    /// one named by the template's hash.
    async fn new_replica_set(
        &mut self,
        existing: Option<ReplicaSet>,
        old: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>> {
        let new_revision = max_revision(old) + 1;
        let spec = self.d.spec.clone().unwrap_or_default();
        if let Some(rs) = existing {
            let mut copy = rs.clone();
            let annotated = set_new_rs_annotations(&self.d, &mut copy, new_revision, true);
            let rs_spec = copy.spec.get_or_insert_default();
            if annotated
                || rs_spec.min_ready_seconds.unwrap_or(0) != spec.min_ready_seconds.unwrap_or(0)
            {
                rs_spec.min_ready_seconds = spec.min_ready_seconds;
                let updated =
                    self.sets.replace(&name(&copy.metadata), &PostParams::default(), &copy).await?;
                self.remember(&updated);
                return Ok(Some(updated));
            }
            let revision =
                copy.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).cloned();
            let progressing = (has_progress_deadline(&self.d)
                && condition(self.status(), PROGRESSING).is_none())
            .then(|| (FOUND_NEW_RS, format!("Found new replica set {:?}", name(&copy.metadata))));
            self.record_new_rs(revision.unwrap_or_default(), progressing).await?;
            return Ok(Some(copy));
        }
        if !create {
            return Ok(None);
        }
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collision_count);
        let mut template = spec.template.clone();
        let labels = with_hash(template.metadata.as_ref().and_then(|m| m.labels.as_ref()), &hash);
        template.metadata.get_or_insert_default().labels = Some(labels.clone());
        let mut selector = spec.selector.clone();
        selector.match_labels.get_or_insert_default().insert(HASH_LABEL.into(), hash.clone());
        let rs_name = replica_set_name(&name(&self.d.metadata), &hash);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: self.d.metadata.namespace.clone(),
                owner_references: Some(vec![controller_ref(
                    "apps/v1",
                    "Deployment",
                    &self.d.metadata,
                )]),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let mut all = old.to_vec();
        all.push(rs.clone());
        let replicas = self.new_rs_replicas(&all, &rs);
        rs.spec.get_or_insert_default().replicas = Some(replicas);
        set_new_rs_annotations(&self.d, &mut rs, new_revision, false);
        let (created, already_exists) = match self.sets.create(&PostParams::default(), &rs).await {
            Ok(created) => (created, false),
            Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {
                let key =
                    format!("{}/{rs_name}", self.d.metadata.namespace.clone().unwrap_or_default());
                // Not yet in the informer (made by an earlier sync whose event is on its
                // way): try again later, as upstream does, rather than call it a collision.
                let Some(found) = self.c.sets.get(&key) else {
                    return Err(kube::Error::Api(s));
                };
                let found = Some(found);
                let ours = found.as_ref().is_some_and(|f| {
                    crate::pods::controller_of(&f.metadata).map(|r| &r.uid)
                        == self.d.metadata.uid.as_ref()
                        && f.spec
                            .as_ref()
                            .and_then(|s| s.template.as_ref())
                            .is_some_and(|t| equal_ignoring_hash(t, &spec.template))
                });
                match found {
                    Some(found) if ours => ((*found).clone(), true),
                    _ => {
                        // A hash collision: the next sync names it with a higher count.
                        let status = self.status();
                        status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                        self.write_status().await?;
                        return Err(kube::Error::Api(s));
                    }
                }
            }
            Err(e) if crate::namespaces::namespace_gone(&e) => return Err(e),
            Err(e) => {
                let message =
                    format!("Failed to create new replica set {rs_name:?}: {}", message(&e));
                if has_progress_deadline(&self.d) {
                    let c = new_condition(PROGRESSING, "False", FAILED_RS_CREATE, message.clone());
                    set_condition(self.status(), c);
                    let _ = self.write_status().await;
                }
                self.event(EventType::Warning, FAILED_RS_CREATE, &message);
                return Err(e);
            }
        };
        self.remember(&created);
        if !already_exists && replicas > 0 {
            let message = format!("Scaled up replica set {rs_name} from 0 to {replicas}");
            self.event(EventType::Normal, "ScalingReplicaSet", &message);
        }
        let progressing = (!already_exists && has_progress_deadline(&self.d))
            .then(|| (NEW_REPLICA_SET, format!("Created new replica set {rs_name:?}")));
        self.record_new_rs(new_revision.to_string(), progressing).await?;
        Ok(Some(created))
    }

    /// Gives the Deployment the new ReplicaSet's revision and, when asked, a
    /// `Progressing=True` condition with this reason and message; writes if either changed.
    async fn record_new_rs(
        &mut self,
        revision: String,
        progressing: Option<(&str, String)>,
    ) -> Result<()> {
        let mut needs_update = self.set_revision(revision);
        if let Some((reason, message)) = progressing {
            set_condition(self.status(), new_condition(PROGRESSING, "True", reason, message));
            needs_update = true;
        }
        if needs_update {
            self.write_status().await?;
        }
        Ok(())
    }

    /// Sets the Deployment's revision annotation; whether it changed.
    fn set_revision(&mut self, revision: String) -> bool {
        let annotations = self.d.metadata.annotations.get_or_insert_default();
        if annotations.get(REVISION) == Some(&revision) {
            return false;
        }
        annotations.insert(REVISION.into(), revision);
        true
    }

    /// How many replicas the new ReplicaSet may have now (upstream's `NewRSNewReplicas`).
    fn new_rs_replicas(&self, all: &[ReplicaSet], new: &ReplicaSet) -> i32 {
        let want = replicas(&self.d);
        if !is_rolling_update(&self.d) {
            return want;
        }
        let rolling = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.strategy.as_ref())
            .and_then(|s| s.rolling_update.as_ref());
        let surge = scaled(rolling.and_then(|r| r.max_surge.as_ref()), want, true);
        let current = total(all);
        let max_total = want + surge;
        if current >= max_total {
            return rs_replicas(new);
        }
        rs_replicas(new) + (max_total - current).min(want - rs_replicas(new))
    }

    /// Sets `rs` to `replicas` with the Deployment's replica annotations (upstream's
    /// `scaleReplicaSet`); whether its size changed, and it as written.
    async fn scale_rs(&mut self, rs: &ReplicaSet, replicas: i32) -> Result<(bool, ReplicaSet)> {
        let old = rs_replicas(rs);
        let (desired, max) =
            (util::replicas(&self.d), util::replicas(&self.d) + max_surge(&self.d));
        let mut copy = rs.clone();
        let annotated = set_replicas_annotations(&mut copy, desired, max);
        if old == replicas && !annotated {
            return Ok((false, rs.clone()));
        }
        copy.spec.get_or_insert_default().replicas = Some(replicas);
        let updated =
            self.sets.replace(&name(&copy.metadata), &PostParams::default(), &copy).await?;
        self.remember(&updated);
        if old != replicas {
            let direction = if old < replicas { "up" } else { "down" };
            let message = format!(
                "Scaled {direction} replica set {} from {old} to {replicas}",
                name(&rs.metadata)
            );
            self.event(EventType::Normal, "ScalingReplicaSet", &message);
        }
        Ok((old != replicas, updated))
    }

    /// `scale_rs` unless `rs` already has `replicas` (`scaleReplicaSetAndRecordEvent`).
    async fn scale_to(&mut self, rs: &ReplicaSet, replicas: i32) -> Result<(bool, ReplicaSet)> {
        if rs_replicas(rs) == replicas {
            return Ok((false, rs.clone()));
        }
        self.scale_rs(rs, replicas).await
    }

    /// Scaling without a rollout: the one active ReplicaSet, or proportionally across
    /// all of them during a rolling update (upstream's `scale`).
    async fn scale(&mut self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Result<()> {
        let want = replicas(&self.d);
        let mut newest_first = old.to_vec();
        newest_first.sort_by(|a, b| by_creation(b, a));
        let mut candidates: Vec<ReplicaSet> = active(&newest_first);
        if let Some(new) = new.filter(|n| rs_replicas(n) > 0) {
            candidates.push(new.clone());
        }
        let active_or_latest = match candidates.len() {
            0 => new.cloned().or_else(|| newest_first.first().cloned()),
            1 => candidates.pop(),
            _ => None,
        };
        if let Some(rs) = active_or_latest {
            if rs_replicas(&rs) != want {
                self.scale_to(&rs, want).await?;
            }
            return Ok(());
        }
        if new.is_some_and(|n| self.saturated(n)) {
            for rs in active(old) {
                self.scale_to(&rs, 0).await?;
            }
            return Ok(());
        }
        if !is_rolling_update(&self.d) {
            return Ok(());
        }
        let mut all = active(old);
        all.extend(new.filter(|n| rs_replicas(n) > 0).cloned());
        let allowed = if want > 0 { want + max_surge(&self.d) } else { 0 };
        let to_add = allowed - total(&all);
        if to_add > 0 {
            all.sort_by(by_size_newer);
        } else if to_add < 0 {
            all.sort_by(by_size_older);
        }
        let mut added = 0;
        let mut sizes: HashMap<String, i32> = HashMap::new();
        for rs in &all {
            let mut size = rs_replicas(rs);
            if to_add != 0 {
                let p = proportion(rs, &self.d, to_add, added);
                size += p;
                added += p;
            }
            sizes.insert(name(&rs.metadata), size);
        }
        for (i, rs) in all.iter().enumerate() {
            let mut size = sizes[&name(&rs.metadata)];
            if i == 0 && to_add != 0 {
                size = (size + to_add - added).max(0);
            }
            self.scale_rs(rs, size).await?;
        }
        Ok(())
    }

    /// The new ReplicaSet has every replica, desired and available (`IsSaturated`).
    fn saturated(&self, rs: &ReplicaSet) -> bool {
        let want = replicas(&self.d);
        rs_replicas(rs) == want
            && count_annotation(rs, DESIRED_REPLICAS) == Some(want)
            && rs_status(rs).2 == want
    }

    /// Deletes the oldest unused ReplicaSets beyond `revisionHistoryLimit`.
    async fn cleanup(&mut self, old: &[ReplicaSet]) -> Result<()> {
        let Some(limit) =
            self.d.spec.as_ref().and_then(|s| s.revision_history_limit).filter(|l| *l != i32::MAX)
        else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> =
            old.iter().filter(|rs| rs.metadata.deletion_timestamp.is_none()).collect();
        let diff = cleanable.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| by_revision(a, b));
        for rs in cleanable.into_iter().take(diff as usize) {
            let status = rs.status.clone().unwrap_or_default();
            if status.replicas != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation > status.observed_generation
            {
                continue;
            }
            match self.sets.delete(&name(&rs.metadata), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub async fn is_scaling_event(&mut self, rss: &[ReplicaSet]) -> Result<bool> {
        self.rss = rss.to_vec();
        let (new, old) = self.new_and_old(false).await?;
        let want = replicas(&self.d);
        let mut all = active(&old);
        all.extend(new.filter(|n| rs_replicas(n) > 0));
        Ok(all.iter().any(|rs| count_annotation(rs, DESIRED_REPLICAS).is_some_and(|n| n != want)))
    }

    pub async fn sync_status_only(&mut self, rss: &[ReplicaSet]) -> Result<Action> {
        self.rss = rss.to_vec();
        let (new, old) = self.new_and_old(false).await?;
        self.sync_status(&old, new.as_ref()).await
    }

    /// A paused Deployment or a scaling event: scale, clean up, write the status.
    pub async fn sync(&mut self, rss: &[ReplicaSet]) -> Result<Action> {
        if self.rss.is_empty() {
            self.rss = rss.to_vec();
        }
        let (new, old) = self.new_and_old(false).await?;
        self.scale(new.as_ref(), &old).await?;
        if is_paused(&self.d) {
            self.cleanup(&old).await?;
        }
        self.sync_status(&old, new.as_ref()).await
    }
}

//! `DefaultPreemption` (PostFilter): when no node fits, find nodes where removing
//! lower-priority pods would let the pod fit, keep as many of those pods as possible
//! (PDB-protected ones first), pick the node whose victims matter least, and nominate
//! it; the scheduler then deletes the victims and the pod waits for them to go.

use std::sync::Arc;

use serde::Deserialize;

use crate::framework::{Code, Handle, Plugin, Point, PostFilterContext, PostFilterOutcome, Status};
use crate::types::{NodeInfo, PodInfo};

/// `DefaultPreemptionArgs`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Args {
    #[serde(default = "ten")]
    pub min_candidate_nodes_percentage: i32,
    #[serde(default = "hundred")]
    pub min_candidate_nodes_absolute: i32,
}

fn ten() -> i32 {
    10
}

fn hundred() -> i32 {
    100
}

impl Default for Args {
    fn default() -> Self {
        Args { min_candidate_nodes_percentage: 10, min_candidate_nodes_absolute: 100 }
    }
}

impl Args {
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        if !(0..=100).contains(&self.min_candidate_nodes_percentage) {
            errors.push(format!(
                "{path}.minCandidateNodesPercentage: Invalid value: {}: not in valid range [0, 100]",
                self.min_candidate_nodes_percentage
            ));
        }
        if self.min_candidate_nodes_absolute < 0 {
            errors.push(format!(
                "{path}.minCandidateNodesAbsolute: Invalid value: {}: not in valid range [0, inf)",
                self.min_candidate_nodes_absolute
            ));
        }
        if self.min_candidate_nodes_percentage == 0 && self.min_candidate_nodes_absolute == 0 {
            errors.push(format!(
                "{path}.minCandidateNodesAbsolute: Invalid value: 0: cannot be zero at the same time as minCandidateNodesPercentage"
            ));
        }
        errors
    }
}

pub struct DefaultPreemption {
    args: Args,
    handle: Arc<dyn Handle>,
}

struct Candidate {
    node: String,
    victims: Vec<Arc<PodInfo>>,
    violations: usize,
}

fn start_time(p: &PodInfo) -> Option<String> {
    p.pod.status.as_ref()?.start_time.as_ref().map(|t| t.0.to_string())
}

/// `MoreImportantPod`: higher priority, then started earlier.
fn more_important(a: &PodInfo, b: &PodInfo) -> bool {
    if a.priority != b.priority {
        return a.priority > b.priority;
    }
    match (start_time(a), start_time(b)) {
        (Some(x), Some(y)) => x < y,
        (Some(_), None) => true,
        _ => false,
    }
}

impl DefaultPreemption {
    pub fn new(args: Args, handle: Arc<dyn Handle>) -> Self {
        DefaultPreemption { args, handle }
    }

    /// Splits victims into those whose eviction a PDB forbids and the rest
    /// (`filterPodsWithPDBViolation`).
    fn by_pdb(&self, pods: Vec<Arc<PodInfo>>) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
        let mut allowed: Vec<(
            Arc<keelson_api::k8s_openapi::api::policy::v1::PodDisruptionBudget>,
            i32,
        )> = Vec::new();
        let (mut violating, mut fine) = (Vec::new(), Vec::new());
        for pod in pods {
            let pdbs = self.handle.lister().pdbs(&pod.namespace);
            let mut violates = false;
            for pdb in pdbs {
                let Some(selector) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                    continue;
                };
                let empty = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
                    && selector.match_expressions.as_ref().is_none_or(|e| e.is_empty());
                if empty || !keelson_core::labels::matches(Some(selector), pod.labels()) {
                    continue;
                }
                let status = pdb.status.as_ref();
                if status
                    .and_then(|s| s.disrupted_pods.as_ref())
                    .is_some_and(|d| d.contains_key(&pod.name))
                {
                    continue;
                }
                let name = pdb.metadata.name.clone();
                let entry = match allowed.iter_mut().find(|(p, _)| {
                    p.metadata.name == name && p.metadata.namespace == pdb.metadata.namespace
                }) {
                    Some(e) => e,
                    None => {
                        let n = status.map(|s| s.disruptions_allowed).unwrap_or(0);
                        allowed.push((pdb.clone(), n));
                        allowed.last_mut().expect("pushed")
                    }
                };
                entry.1 -= 1;
                if entry.1 < 0 {
                    violates = true;
                }
            }
            if violates { violating.push(pod) } else { fine.push(pod) }
        }
        (violating, fine)
    }

    fn select_victims(
        &self,
        ctx: &PostFilterContext<'_>,
        node: &NodeInfo,
    ) -> Result<Candidate, Status> {
        let fw = ctx.framework;
        let pod = ctx.pod;
        let mut state = ctx.state.clone();
        let mut info = node.clone();
        let mut potential: Vec<Arc<PodInfo>> = Vec::new();
        for p in node.pods.iter().filter(|p| p.priority < pod.priority) {
            potential.push(p.clone());
            info.remove_pod(&p.uid);
            let status = fw.run_remove_pod(&mut state, pod, p, &info);
            if !status.is_success() {
                return Err(status);
            }
        }
        if potential.is_empty() {
            return Err(Status::unresolvable("No preemption victims found for incoming pod"));
        }
        let nominated = (ctx.nominated_for)(&info.name);
        let status = fw.run_filter_with_nominated(&state, pod, &info, &nominated);
        if !status.is_success() {
            return Err(status);
        }
        potential.sort_by(|a, b| {
            if more_important(a, b) {
                std::cmp::Ordering::Less
            } else if more_important(b, a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        let (violating, fine) = self.by_pdb(potential);
        let mut victims = Vec::new();
        let mut violations = 0;
        let mut reprieve = |p: &Arc<PodInfo>,
                            state: &mut crate::framework::CycleState,
                            info: &mut NodeInfo|
         -> Result<bool, Status> {
            info.add_pod(p.clone());
            let s = fw.run_add_pod(state, pod, p, info);
            if !s.is_success() {
                return Err(s);
            }
            let fits = fw.run_filter_with_nominated(state, pod, info, &nominated).is_success();
            if !fits {
                info.remove_pod(&p.uid);
                let s = fw.run_remove_pod(state, pod, p, info);
                if !s.is_success() {
                    return Err(s);
                }
                victims.push(p.clone());
            }
            Ok(fits)
        };
        let mut st = state;
        for p in &violating {
            if !reprieve(p, &mut st, &mut info)? {
                violations += 1;
            }
        }
        for p in &fine {
            reprieve(p, &mut st, &mut info)?;
        }
        if victims.is_empty() {
            return Err(Status::error(format!(
                "expected at least one victim pod on node {:?}",
                node.name
            )));
        }
        Ok(Candidate { node: node.name.clone(), victims, violations })
    }
}

/// `pickOneNodeForPreemption`'s order: fewest PDB violations, lowest highest-priority
/// victim, lowest sum of priorities, fewest victims, latest start of the most important
/// victims.
fn best(candidates: Vec<Candidate>) -> Option<Candidate> {
    candidates.into_iter().min_by(|a, b| {
        let top = |c: &Candidate| c.victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN);
        let sum = |c: &Candidate| {
            c.victims.iter().map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1).sum::<i64>()
        };
        let earliest = |c: &Candidate| {
            let t = top(c);
            c.victims.iter().filter(|v| v.priority == t).filter_map(|v| start_time(v)).min()
        };
        a.violations
            .cmp(&b.violations)
            .then(top(a).cmp(&top(b)))
            .then(sum(a).cmp(&sum(b)))
            .then(a.victims.len().cmp(&b.victims.len()))
            .then(earliest(b).cmp(&earliest(a)))
    })
}

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        "DefaultPreemption"
    }
    fn points(&self) -> &'static [Point] {
        &[Point::PostFilter]
    }
    fn post_filter(&self, ctx: &PostFilterContext<'_>) -> PostFilterOutcome {
        let mut outcome = self.preempt(ctx);
        // Every message says where it comes from, as upstream's does.
        if !outcome.status.reasons.is_empty() && !outcome.status.message().is_empty() {
            outcome.status.reasons = vec![format!("preemption: {}", outcome.status.message())];
        }
        outcome
    }
}

impl DefaultPreemption {
    /// Upstream's `Evaluator.Preempt`.
    fn preempt(&self, ctx: &PostFilterContext<'_>) -> PostFilterOutcome {
        let pod = ctx.pod;
        let not =
            |status: Status| PostFilterOutcome { nominated: None, victims: Vec::new(), status };
        let spec = pod.pod.spec.as_ref();
        if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
            return not(Status::unschedulable("not eligible due to preemptionPolicy=Never."));
        }
        let nominated = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty());
        if let Some(node) = nominated.and_then(|n| ctx.snapshot.get(n)) {
            let unresolvable = ctx
                .statuses
                .get(&node.name)
                .is_some_and(|s| s.code == Code::UnschedulableAndUnresolvable);
            let terminating = node
                .pods
                .iter()
                .any(|p| p.pod.metadata.deletion_timestamp.is_some() && p.priority < pod.priority);
            if !unresolvable && terminating {
                return not(Status::unschedulable(
                    "not eligible due to a terminating pod on the nominated node.",
                ));
            }
        }
        let total = ctx.snapshot.nodes.len();
        let potential: Vec<&Arc<NodeInfo>> = ctx
            .snapshot
            .nodes
            .iter()
            .filter(|n| ctx.statuses.get(&n.name).is_some_and(|s| s.code == Code::Unschedulable))
            .collect();
        let mut statuses: Vec<(String, Status)> = Vec::new();
        let mut candidates = Vec::new();
        if !potential.is_empty() {
            let pct = self.args.min_candidate_nodes_percentage.max(0) as usize;
            let wanted = (potential.len() * pct / 100)
                .max(self.args.min_candidate_nodes_absolute.max(0) as usize)
                .min(potential.len());
            let offset = fastrand::usize(..potential.len());
            let mut non_violating = 0;
            for i in 0..potential.len() {
                let node = potential[(offset + i) % potential.len()];
                match self.select_victims(ctx, node) {
                    Ok(c) => {
                        if c.violations == 0 {
                            non_violating += 1;
                        }
                        candidates.push(c);
                        if non_violating > 0 && candidates.len() >= wanted {
                            break;
                        }
                    }
                    Err(status) => statuses.push((node.name.clone(), status)),
                }
            }
        }
        if candidates.is_empty() {
            let fit = crate::scheduler::FitError {
                all_nodes: total,
                statuses: statuses.into_iter().collect(),
                absent: Some(Status::unresolvable("Preemption is not helpful for scheduling")),
                ..Default::default()
            };
            let message = fit.message();
            return PostFilterOutcome {
                nominated: Some(String::new()),
                victims: Vec::new(),
                status: Status::unschedulable(message),
            };
        }
        let Some(chosen) = best(candidates) else {
            return not(Status::unschedulable("no candidate node for preemption"));
        };
        PostFilterOutcome {
            nominated: Some(chosen.node),
            victims: chosen.victims,
            status: Status::success(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::cache::Snapshot;
    use crate::framework::{CycleState, Handle};
    use crate::plugins::testing::{Fixed, node, pod};

    fn requesting(cpu: &str, priority: i32) -> serde_json::Value {
        json!({ "priority": priority, "containers": [{ "name": "c", "image": "pause",
            "resources": { "requests": { "cpu": cpu } } }] })
    }

    #[test]
    fn the_fewest_victims_sparing_pdb_protected_pods_first() {
        let pdb: PodDisruptionBudgetFixture = serde_json::from_value(json!({
            "metadata": { "name": "guard", "namespace": "default" },
            "spec": { "selector": { "matchLabels": { "app": "guarded" } } },
            "status": { "disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1 },
        }))
        .expect("pdb");
        let fixed = Arc::new(Fixed { pdbs: vec![Arc::new(pdb)], ..Fixed::default() });
        let handle: Arc<dyn Handle> = fixed;
        let profiles = crate::config::Config::default().frameworks(&handle).expect("frameworks");
        let fw = &profiles[crate::DEFAULT_SCHEDULER_NAME];
        let mut n = node("n", json!({}));
        // Equally important: without the PDB, the first (plain) would be kept.
        n.add_pod(pod("plain", json!({}), requesting("2", 1)));
        n.add_pod(pod("guarded", json!({ "app": "guarded" }), requesting("1500m", 1)));
        n.add_pod(pod("important", json!({}), requesting("100m", 100)));
        let snapshot = Snapshot::from_nodes(vec![n]);
        let incoming = pod("vip", json!({}), requesting("2", 10));
        let mut state = CycleState::default();
        let (_, status) = fw.run_pre_filter(&mut state, &incoming, &snapshot);
        assert!(status.is_success());
        let rejected = fw.run_filter(&state, &incoming, &snapshot.nodes[0]);
        assert_eq!(rejected.reasons, ["Insufficient cpu"]);
        let statuses = HashMap::from([("n".to_owned(), rejected)]);
        let nominated_for = |_: &str| Vec::new();
        let ctx = PostFilterContext {
            state: &state,
            pod: &incoming,
            snapshot: &snapshot,
            statuses: &statuses,
            framework: fw,
            nominated_for: &nominated_for,
        };
        let outcome = fw.plugin("DefaultPreemption").expect("plugin").post_filter(&ctx);
        assert!(outcome.status.is_success(), "{:?}", outcome.status);
        assert_eq!(outcome.nominated.as_deref(), Some("n"));
        let victims: Vec<&str> = outcome.victims.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(victims, ["plain"]);
        // A pod that may not preempt says so.
        let never = pod("never", json!({}), {
            let mut spec = requesting("2", 10);
            spec["preemptionPolicy"] = "Never".into();
            spec
        });
        let ctx = PostFilterContext { pod: &never, ..ctx };
        let outcome = fw.plugin("DefaultPreemption").expect("plugin").post_filter(&ctx);
        assert_eq!(
            outcome.status.reasons,
            ["preemption: not eligible due to preemptionPolicy=Never."]
        );
    }

    type PodDisruptionBudgetFixture =
        keelson_api::k8s_openapi::api::policy::v1::PodDisruptionBudget;
}

//! The pure rules of a Job (upstream's `pod_failure_policy.go`, `success_policy.go`,
//! `indexed_job_utils.go` and `backoff_utils.go`): which rule of a `podFailurePolicy`
//! a failed pod matches, whether a `successPolicy` is met, completion indexes and their
//! `1,3-5` form, and the delay before a failed pod is replaced.
//!
//! Must never reach the API: everything here is a function of its arguments.

use std::collections::BTreeSet;
use std::time::Duration;

use keelson_api::k8s_openapi::api::batch::v1::{PodFailurePolicy, SuccessPolicy};
use keelson_api::k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use keelson_api::k8s_openapi::jiff::Timestamp;

/// The annotation (and label) that says a pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// What a `podFailurePolicy` says of one failed pod (upstream's `matchPodFailurePolicy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureAction {
    /// No rule matched: the failure counts towards `backoffLimit`.
    Default,
    /// A `Count` rule matched.
    Count,
    /// An `Ignore` rule matched: the failure does not count.
    Ignore,
    /// A `FailJob` rule matched; the message goes on the Job's conditions.
    FailJob(String),
    /// A `FailIndex` rule matched (only with `backoffLimitPerIndex`).
    FailIndex,
}

impl FailureAction {
    /// Whether the failure counts towards `backoffLimit`.
    pub fn counts(&self) -> bool {
        !matches!(self, FailureAction::Ignore)
    }
}

/// The first rule of `policy` that `pod` matches.
pub fn match_failure(policy: Option<&PodFailurePolicy>, pod: &Pod) -> FailureAction {
    let Some(policy) = policy else { return FailureAction::Default };
    let empty = PodStatus::default();
    let status = pod.status.as_ref().unwrap_or(&empty);
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    for (index, rule) in policy.rules.iter().enumerate() {
        let message = if let Some(requirement) = &rule.on_exit_codes {
            let statuses = status.container_statuses.iter().flatten();
            let init = status.init_container_statuses.iter().flatten();
            let Some((container, code)) = statuses.chain(init).find_map(|c| {
                let code = exit_code(c)?;
                let named = requirement.container_name.as_ref().is_none_or(|n| *n == c.name);
                let listed = requirement.values.contains(&code);
                let matches = match requirement.operator.as_str() {
                    "In" => listed,
                    "NotIn" => !listed,
                    _ => false,
                };
                (named && code != 0 && matches).then_some((c.name.as_str(), code))
            }) else {
                continue;
            };
            format!(
                "Container {container} for pod {namespace}/{name} failed with exit code \
                 {code} matching {} rule at index {index}",
                rule.action
            )
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let Some(condition) = status
                .conditions
                .iter()
                .flatten()
                .find(|c| patterns.iter().any(|p| p.type_ == c.type_ && p.status == c.status))
            else {
                continue;
            };
            format!(
                "Pod {namespace}/{name} has condition {} matching {} rule at index {index}",
                condition.type_, rule.action
            )
        } else {
            continue;
        };
        return match rule.action.as_str() {
            "Ignore" => FailureAction::Ignore,
            "Count" => FailureAction::Count,
            "FailJob" => FailureAction::FailJob(message),
            "FailIndex" => FailureAction::FailIndex,
            // An action this version does not know: upstream skips the rule.
            _ => continue,
        };
    }
    FailureAction::Default
}

fn exit_code(status: &ContainerStatus) -> Option<i32> {
    status.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code)
}

/// A pod's completion index, if it has a valid one.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    let annotations = pod.metadata.annotations.as_ref()?;
    let index: i32 = annotations.get(COMPLETION_INDEX)?.parse().ok()?;
    (index >= 0).then_some(index)
}

/// Parses `1,3-5` into its indexes below `completions` (upstream's
/// `parseIndexesFromString`; what does not parse is skipped).
pub fn parse_indexes(text: &str, completions: i32) -> BTreeSet<i32> {
    let mut indexes = BTreeSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let (Ok(first), Ok(last)) = (first.parse::<i32>(), last.parse::<i32>()) else {
            continue;
        };
        indexes.extend((first..=last.min(completions - 1)).filter(|i| *i >= 0));
    }
    indexes
}

/// Formats indexes as upstream's `orderedIntervals.String`: `1,3-5`.
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(i32, i32)> = None;
    let flush = |run: (i32, i32), parts: &mut Vec<String>| {
        parts.push(if run.0 == run.1 { run.0.to_string() } else { format!("{}-{}", run.0, run.1) });
    };
    for &index in indexes {
        run = match run {
            Some((first, last)) if last + 1 == index => Some((first, index)),
            Some(done) => {
                flush(done, &mut parts);
                Some((index, index))
            }
            None => Some((index, index)),
        };
    }
    if let Some(done) = run {
        flush(done, &mut parts);
    }
    parts.join(",")
}

/// The message of the first `successPolicy` rule the succeeded indexes meet (upstream's
/// `matchSuccessPolicy`).
pub fn match_success(
    policy: Option<&SuccessPolicy>,
    completions: i32,
    succeeded: &BTreeSet<i32>,
) -> Option<String> {
    let policy = policy?;
    for (index, rule) in policy.rules.iter().enumerate() {
        let met = match (&rule.succeeded_indexes, rule.succeeded_count) {
            (Some(indexes), count) => {
                let required = parse_indexes(indexes, completions);
                let done = required.intersection(succeeded).count() as i32;
                match count {
                    None => done == required.len() as i32,
                    Some(count) => done >= count,
                }
            }
            (None, Some(count)) => succeeded.len() as i32 >= count,
            (None, None) => false,
        };
        if met {
            return Some(format!("Matched rules at index {index}"));
        }
    }
    None
}

/// Pod failures since the last success of one Job (upstream's `backoffRecord`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    pub failures_after_last_success: u32,
    pub last_failure: Option<Timestamp>,
}

impl Backoff {
    /// This record after `succeeded` and `failed` newly finished pods, each given as
    /// its finish time.
    pub fn after(self, succeeded: &[Timestamp], failed: &[Timestamp]) -> Backoff {
        let last_success = succeeded.iter().max().copied();
        let mut record = match last_success {
            Some(_) => Backoff::default(),
            None => self,
        };
        for &at in failed.iter().filter(|t| last_success.is_none_or(|s| **t > s)) {
            record.failures_after_last_success += 1;
            record.last_failure = Some(record.last_failure.map_or(at, |l| l.max(at)));
        }
        record
    }

    /// How long to wait at `now` before creating a pod: `base`, doubled per failure
    /// after the first, at most `max`, from the last failure on.
    pub fn remaining(&self, now: Timestamp, base: Duration, max: Duration) -> Duration {
        let (n, Some(last)) = (self.failures_after_last_success, self.last_failure) else {
            return Duration::ZERO;
        };
        if n == 0 {
            return Duration::ZERO;
        }
        let backoff = base.saturating_mul(1 << (n - 1).min(30)).min(max);
        let elapsed = now.duration_since(last).unsigned_abs();
        backoff.saturating_sub(elapsed)
    }
}

/// When a finished pod finished (upstream's `getFinishedTime`): the last container's
/// finish, else its deletion, else `now`.
pub fn finish_time(pod: &Pod, now: Timestamp) -> Timestamp {
    let status = pod.status.as_ref();
    let containers = status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten();
    let finished = containers
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    finished.or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use keelson_api::k8s_openapi::api::batch::v1::{
        PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyOnPodConditionsPattern,
        PodFailurePolicyRule, SuccessPolicyRule,
    };
    use keelson_api::k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, PodCondition,
    };
    use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn failed(codes: &[(&str, i32)], conditions: &[&str]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                container_statuses: Some(
                    codes
                        .iter()
                        .map(|(name, code)| ContainerStatus {
                            name: (*name).into(),
                            state: Some(ContainerState {
                                terminated: Some(ContainerStateTerminated {
                                    exit_code: *code,
                                    ..ContainerStateTerminated::default()
                                }),
                                ..ContainerState::default()
                            }),
                            ..ContainerStatus::default()
                        })
                        .collect(),
                ),
                conditions: Some(
                    conditions
                        .iter()
                        .map(|t| PodCondition {
                            type_: (*t).into(),
                            status: "True".into(),
                            ..PodCondition::default()
                        })
                        .collect(),
                ),
                ..PodStatus::default()
            }),
        }
    }

    fn on_codes(
        action: &str,
        container: Option<&str>,
        op: &str,
        values: &[i32],
    ) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: container.map(Into::into),
                operator: op.into(),
                values: values.to_vec(),
            }),
            on_pod_conditions: None,
        }
    }

    fn on_condition(action: &str, type_: &str) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: None,
            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                type_: type_.into(),
                status: "True".into(),
            }]),
        }
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let policy = PodFailurePolicy {
            rules: vec![
                on_condition("Ignore", "DisruptionTarget"),
                on_codes("FailJob", Some("main"), "In", &[42]),
                on_codes("Count", None, "NotIn", &[1, 2]),
            ],
        };
        let policy = Some(&policy);
        assert_eq!(match_failure(None, &failed(&[("main", 42)], &[])), FailureAction::Default);
        assert_eq!(
            match_failure(policy, &failed(&[("main", 42)], &[])),
            FailureAction::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule \
                 at index 1"
                    .into()
            )
        );
        assert_eq!(
            match_failure(policy, &failed(&[("main", 42)], &["DisruptionTarget"])),
            FailureAction::Ignore,
            "rules are tried in order"
        );
        assert_eq!(
            match_failure(policy, &failed(&[("side", 42)], &[])),
            FailureAction::Count,
            "the FailJob rule names another container; 42 is not in [1, 2]"
        );
        assert_eq!(match_failure(policy, &failed(&[("side", 2)], &[])), FailureAction::Default);
        assert_eq!(
            match_failure(policy, &failed(&[("main", 0)], &[])),
            FailureAction::Default,
            "exit code 0 never matches"
        );
        assert!(!FailureAction::Ignore.counts() && FailureAction::Count.counts());
    }

    #[test]
    fn condition_rules_say_the_condition() {
        let policy = PodFailurePolicy { rules: vec![on_condition("FailJob", "ConfigIssue")] };
        assert_eq!(
            match_failure(Some(&policy), &failed(&[], &["ConfigIssue"])),
            FailureAction::FailJob(
                "Pod ns/p has condition ConfigIssue matching FailJob rule at index 0".into()
            )
        );
    }

    #[test]
    fn indexes_round_trip_as_intervals() {
        let set = parse_indexes("0,2-4,7,9-12", 11);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [0, 2, 3, 4, 7, 9, 10]);
        assert_eq!(format_indexes(&set), "0,2-4,7,9-10");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
        assert_eq!(format_indexes(&[5].into()), "5");
    }

    #[test]
    fn success_policy_rules() {
        let rule = |indexes: Option<&str>, count: Option<i32>| SuccessPolicyRule {
            succeeded_indexes: indexes.map(Into::into),
            succeeded_count: count,
        };
        let policy = SuccessPolicy { rules: vec![rule(Some("0-2"), Some(2)), rule(None, Some(4))] };
        let done = |v: &[i32]| v.iter().copied().collect::<BTreeSet<_>>();
        assert_eq!(match_success(Some(&policy), 10, &done(&[0, 5, 6])), None);
        assert_eq!(
            match_success(Some(&policy), 10, &done(&[0, 2])).as_deref(),
            Some("Matched rules at index 0")
        );
        assert_eq!(
            match_success(Some(&policy), 10, &done(&[0, 5, 6, 7])).as_deref(),
            Some("Matched rules at index 1")
        );
        let all = SuccessPolicy { rules: vec![rule(Some("1,3"), None)] };
        assert!(match_success(Some(&all), 5, &done(&[1, 3])).is_some());
        assert!(match_success(Some(&all), 5, &done(&[1])).is_none());
    }

    #[test]
    fn backoff_doubles_per_failure_and_resets_on_success() {
        let at = |s: i64| Timestamp::from_second(1_700_000_000 + s).expect("valid");
        let (base, max) = (Duration::from_secs(10), Duration::from_secs(360));
        let record = Backoff::default().after(&[], &[at(0)]);
        assert_eq!(record.remaining(at(0), base, max), Duration::from_secs(10));
        assert_eq!(record.remaining(at(4), base, max), Duration::from_secs(6));
        let record = record.after(&[], &[at(5), at(6)]);
        assert_eq!(record.failures_after_last_success, 3);
        assert_eq!(record.remaining(at(6), base, max), Duration::from_secs(40));
        let many = Backoff { failures_after_last_success: 20, last_failure: Some(at(0)) };
        assert_eq!(many.remaining(at(0), base, max), max);
        let reset = record.after(&[at(7)], &[at(3)]);
        assert_eq!(reset, Backoff::default(), "a failure before the success is forgotten");
        assert_eq!(reset.remaining(at(7), base, max), Duration::ZERO);
    }
}

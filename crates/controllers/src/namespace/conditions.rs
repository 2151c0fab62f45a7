//! The conditions a namespace being deleted shows (upstream's
//! `status_condition_utils.go`): each of the five types is always present, `True` with
//! what went wrong, else `False` with its "ok" reason and message.
//! `NamespaceDeletionGroupVersionParsingFailure` is always `False` here: kube's
//! discovery parses group versions itself, and a failure there is a discovery failure.

use std::collections::BTreeMap;

use keelson_api::k8s_openapi::api::core::v1::{NamespaceCondition, NamespaceStatus};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const DISCOVERY_FAILURE: &str = "NamespaceDeletionDiscoveryFailure";
pub const GROUP_VERSION_PARSING_FAILURE: &str = "NamespaceDeletionGroupVersionParsingFailure";
pub const CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
pub const CONTENT_REMAINING: &str = "NamespaceContentRemaining";
pub const FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";

/// Each type with its "ok" reason and message, in upstream's order.
const OK: [(&str, &str, &str); 5] = [
    (DISCOVERY_FAILURE, "ResourcesDiscovered", "All resources successfully discovered"),
    (
        GROUP_VERSION_PARSING_FAILURE,
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        CONTENT_FAILURE,
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    (CONTENT_REMAINING, "ContentRemoved", "All content successfully removed"),
    (FINALIZERS_REMAINING, "ContentHasNoFinalizers", "All content-preserving finalizers finished"),
];

/// What one pass of deletion found wrong, turned into conditions by [`Updater::update`].
#[derive(Debug, Default)]
pub struct Updater {
    failures: Vec<NamespaceCondition>,
    content_errors: Vec<String>,
}

fn failing(kind: &str, reason: &str, message: String) -> NamespaceCondition {
    NamespaceCondition {
        type_: kind.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(now()),
    }
}

fn now() -> Time {
    Time(keelson_api::k8s_openapi::jiff::Timestamp::now())
}

impl Updater {
    pub fn discovery_failed(&mut self, failed_groups: usize, error: &str) {
        let message = if failed_groups > 0 {
            format!("Discovery failed for some groups, {failed_groups} failing: {error}")
        } else {
            error.to_owned()
        };
        self.failures.push(failing(DISCOVERY_FAILURE, "DiscoveryFailed", message));
    }

    pub fn content_deletion_failed(&mut self, error: String) {
        self.content_errors.push(error);
    }

    /// What remains: instances by `resource.group`, and instances by finalizer.
    pub fn content_totals(
        &mut self,
        remaining: &BTreeMap<String, usize>,
        finalizers: &BTreeMap<String, usize>,
    ) {
        // Sorted by name, as upstream sorts for stable updates; zero counts left out.
        let counted = |counts: &BTreeMap<String, usize>, how: &str| -> Vec<String> {
            counts
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{k} {how} {n} resource instances"))
                .collect()
        };
        for (counts, kind, reason, lead, how) in [
            (
                remaining,
                CONTENT_REMAINING,
                "SomeResourcesRemain",
                "Some resources are remaining",
                "has",
            ),
            (
                finalizers,
                FINALIZERS_REMAINING,
                "SomeFinalizersRemain",
                "Some content in the namespace has finalizers remaining",
                "in",
            ),
        ] {
            if !counts.is_empty() {
                let message = format!("{lead}: {}", counted(counts, how).join(", "));
                self.failures.push(failing(kind, reason, message));
            }
        }
    }

    /// Writes the conditions into `status`; returns whether anything changed.
    pub fn update(mut self, status: &mut NamespaceStatus) -> bool {
        if !self.content_errors.is_empty()
            && !self.failures.iter().any(|c| c.type_ == CONTENT_FAILURE)
        {
            self.content_errors.sort();
            let message = format!(
                "Failed to delete all resource types, {} remaining: {}",
                self.content_errors.len(),
                self.content_errors.join(", ")
            );
            self.failures.push(failing(CONTENT_FAILURE, "ContentDeletionFailed", message));
        }
        let conditions = status.conditions.get_or_insert_default();
        let mut changed = false;
        for (kind, reason, message) in OK {
            let new =
                self.failures.iter().find(|c| c.type_ == kind).cloned().unwrap_or_else(|| {
                    NamespaceCondition {
                        type_: kind.into(),
                        status: "False".into(),
                        reason: Some(reason.into()),
                        message: Some(message.into()),
                        last_transition_time: Some(now()),
                    }
                });
            match conditions.iter_mut().find(|c| c.type_ == kind) {
                None => {
                    conditions.push(new);
                    changed = true;
                }
                Some(old)
                    if old.status != new.status
                        || old.reason != new.reason
                        || old.message != new.message =>
                {
                    if old.status != new.status {
                        old.last_transition_time = new.last_transition_time;
                    }
                    old.status = new.status;
                    old.reason = new.reason;
                    old.message = new.message;
                    changed = true;
                }
                Some(_) => {}
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(status: &'a NamespaceStatus, kind: &str) -> &'a NamespaceCondition {
        status.conditions.iter().flatten().find(|c| c.type_ == kind).expect("condition")
    }

    #[test]
    fn a_clean_pass_sets_every_condition_false_with_upstreams_words() {
        let mut status = NamespaceStatus::default();
        assert!(Updater::default().update(&mut status));
        assert_eq!(status.conditions.as_ref().map(Vec::len), Some(5));
        let c = find(&status, CONTENT_FAILURE);
        assert_eq!(c.status, "False");
        assert_eq!(c.reason.as_deref(), Some("ContentDeleted"));
        // The same again changes nothing, so nothing is written.
        assert!(!Updater::default().update(&mut status));
    }

    #[test]
    fn what_remains_is_reported_sorted() {
        let mut status = NamespaceStatus::default();
        let mut u = Updater::default();
        u.content_totals(
            &[("pods.".to_string(), 2), ("widgets.example.com".to_string(), 1)].into(),
            &[("example.com/hold".to_string(), 1)].into(),
        );
        u.content_deletion_failed("b failed".into());
        u.content_deletion_failed("a failed".into());
        assert!(u.update(&mut status));
        let remaining = find(&status, CONTENT_REMAINING);
        assert_eq!(remaining.status, "True");
        assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            remaining.message.as_deref(),
            Some(
                "Some resources are remaining: pods. has 2 resource instances, widgets.example.com has 1 resource instances"
            )
        );
        assert_eq!(
            find(&status, FINALIZERS_REMAINING).message.as_deref(),
            Some(
                "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
            )
        );
        assert_eq!(
            find(&status, CONTENT_FAILURE).message.as_deref(),
            Some("Failed to delete all resource types, 2 remaining: a failed, b failed")
        );
    }
}

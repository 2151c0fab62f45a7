//! Expectations (upstream's `UIDTrackingControllerExpectations`): what a controller
//! has asked the API server to create and delete and not yet seen in its informer.
//!
//! A controller that counts pods from its informer must not act again until the pods it
//! created (or deleted) are seen there, or a slow watch makes it create them twice. It
//! records what it expects before writing ([`Expectations::expect_creations`],
//! [`Expectations::expect_deletions`]), its event handlers lower the counts as the
//! informer reports the objects ([`Expectations::creation_observed`],
//! [`Expectations::deletion_observed`]), and a sync acts only once the counts reached
//! zero ([`Expectations::satisfied`]) — or after [`TTL`], in case an event was lost.
//!
//! Deletions are tracked by object key, so a deletion the controller did not ask for
//! (or reported twice) never lowers the count.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long expectations are trusted: upstream's `ExpectationsTimeout`.
pub const TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Record {
    add: i64,
    del: i64,
    /// The keys of the objects whose deletion is awaited.
    deleting: HashSet<String>,
    set_at: Instant,
}

/// Expectations per controller key (`namespace/name` of the owner); cheap to share.
#[derive(Debug, Default)]
pub struct Expectations {
    records: Mutex<HashMap<String, Record>>,
}

impl Expectations {
    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `key` may act: nothing awaited, everything seen, or the record expired.
    pub fn satisfied(&self, key: &str) -> bool {
        match self.records().get(key) {
            None => true,
            Some(r) => (r.add <= 0 && r.del <= 0) || r.set_at.elapsed() > TTL,
        }
    }

    /// Expects `count` creations (and no deletions) for `key`.
    pub fn expect_creations(&self, key: &str, count: usize) {
        self.set(key, count as i64, HashSet::new());
    }

    /// Expects the objects `keys` to be deleted (and no creations) for `key`.
    pub fn expect_deletions(&self, key: &str, keys: impl IntoIterator<Item = String>) {
        self.set(key, 0, keys.into_iter().collect());
    }

    /// Expects `count` creations and the deletion of the objects `keys` at once
    /// (upstream's `SetExpectations`).
    pub fn expect(&self, key: &str, count: usize, keys: impl IntoIterator<Item = String>) {
        self.set(key, count as i64, keys.into_iter().collect());
    }

    /// Expects `count` more creations and the deletion of `keys` besides what is still
    /// awaited (upstream's `RaiseExpectations`), for a controller that writes one object
    /// at a time; a satisfied or expired record starts over from zero.
    pub fn raise(&self, key: &str, count: usize, keys: impl IntoIterator<Item = String>) {
        let mut records = self.records();
        let record = records.entry(key.to_owned()).or_insert_with(|| Record {
            add: 0,
            del: 0,
            deleting: HashSet::new(),
            set_at: Instant::now(),
        });
        if (record.add <= 0 && record.del <= 0) || record.set_at.elapsed() > TTL {
            *record = Record { add: 0, del: 0, deleting: HashSet::new(), set_at: Instant::now() };
        }
        record.add += count as i64;
        for object in keys {
            if record.deleting.insert(object) {
                record.del += 1;
            }
        }
        record.set_at = Instant::now();
    }

    fn set(&self, key: &str, add: i64, deleting: HashSet<String>) {
        let del = deleting.len() as i64;
        self.records()
            .insert(key.to_owned(), Record { add, del, deleting, set_at: Instant::now() });
    }

    /// One awaited creation was seen (or will never happen: its create failed).
    pub fn creation_observed(&self, key: &str) {
        if let Some(r) = self.records().get_mut(key) {
            r.add -= 1;
        }
    }

    /// The object `object` is gone (or its delete failed); lowers the count only if its
    /// deletion was awaited.
    pub fn deletion_observed(&self, key: &str, object: &str) {
        if let Some(r) = self.records().get_mut(key)
            && r.deleting.remove(object)
        {
            r.del -= 1;
        }
    }

    /// An owner's informer handler: queues the owner, forgetting its expectations when
    /// it is gone.
    pub fn owner_changed<K: kube::Resource>(
        &self,
        change: &keelson_runtime::informer::Change<K>,
        queue: &keelson_runtime::queue::WorkQueue<String>,
    ) {
        let key = keelson_runtime::informer::key_of(&**change.object());
        if matches!(change, keelson_runtime::informer::Change::Deleted(_)) {
            self.delete(&key);
        }
        queue.add(key);
    }

    /// Forgets `key` (its owner is gone).
    pub fn delete(&self, key: &str) {
        self.records().remove(key);
    }

    /// What is still awaited for `key`: (creations, deletions).
    pub fn pending(&self, key: &str) -> Option<(i64, i64)> {
        self.records().get(key).map(|r| (r.add, r.del))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_must_all_be_seen() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs"), "no record: act");
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
        assert_eq!(e.pending("ns/rs"), Some((0, 0)));
        // A later creation (someone else's pod adopted) only goes below zero.
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn only_awaited_deletions_count() {
        let e = Expectations::default();
        e.expect_deletions("ns/rs", ["ns/a".to_string(), "ns/b".to_string()]);
        e.deletion_observed("ns/rs", "ns/other");
        e.deletion_observed("ns/rs", "ns/a");
        e.deletion_observed("ns/rs", "ns/a");
        assert!(!e.satisfied("ns/rs"), "b is still awaited");
        e.deletion_observed("ns/rs", "ns/b");
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn a_new_expectation_replaces_the_old_and_delete_forgets() {
        let e = Expectations::default();
        e.expect_deletions("ns/rs", ["ns/a".to_string()]);
        e.expect_creations("ns/rs", 1);
        assert_eq!(e.pending("ns/rs"), Some((1, 0)));
        e.delete("ns/rs");
        assert!(e.satisfied("ns/rs"));
        assert_eq!(e.pending("ns/rs"), None);
    }

    #[test]
    fn raising_adds_to_what_is_awaited_and_a_satisfied_record_starts_over() {
        let e = Expectations::default();
        e.creation_observed("ns/sts");
        e.expect_creations("ns/sts", 0);
        e.creation_observed("ns/sts");
        assert_eq!(e.pending("ns/sts"), Some((-1, 0)), "an adoption went below zero");
        e.raise("ns/sts", 1, []);
        assert!(!e.satisfied("ns/sts"), "the old surplus does not cover a new creation");
        e.raise("ns/sts", 0, ["ns/web-1".to_string()]);
        assert_eq!(e.pending("ns/sts"), Some((1, 1)));
        e.creation_observed("ns/sts");
        e.deletion_observed("ns/sts", "ns/web-1");
        assert!(e.satisfied("ns/sts"));
    }

    #[tokio::test(start_paused = true)]
    async fn expectations_expire() {
        let e = Expectations::default();
        e.expect_creations("ns/rs", 3);
        tokio::time::advance(TTL - Duration::from_secs(1)).await;
        assert!(!e.satisfied("ns/rs"));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(e.satisfied("ns/rs"), "a lost event does not block the controller forever");
    }
}

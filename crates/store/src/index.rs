//! The key index: for every key, the revisions at which it changed.
//!
//! Like etcd's `treeIndex`, it lives in memory and is rebuilt from the log at start
//! (design note 0001). It answers every "which revision holds key K at revision R"
//! question without touching the disk; values are then read by revision, a primary-key
//! lookup. It holds no values and never does I/O.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::Revision;

/// One change of one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Version {
    pub rev: Revision,
    pub create_rev: Revision,
    /// A tombstone: the key was deleted at `rev`.
    pub deleted: bool,
}

/// A change found by [`Index::changes_since`], with the version it replaced.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub key: String,
    pub version: Version,
    /// The live version before this change, if the key existed.
    pub prev: Option<Version>,
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Each key's versions in ascending revision order. After compaction at C a key keeps
    /// the version live at C (if any) and everything after it.
    keys: BTreeMap<String, Vec<Version>>,
    pub current: Revision,
    pub compacted: Revision,
}

impl Index {
    /// The newest version of `key`, tombstone or not.
    pub fn newest(&self, key: &str) -> Option<Version> {
        self.keys.get(key).and_then(|h| h.last().copied())
    }

    /// The version of `key` live at `rev`, if the key existed then.
    pub fn live_at(&self, key: &str, rev: Revision) -> Option<Version> {
        self.keys.get(key).and_then(|h| live_in(h, rev))
    }

    /// Live keys under `dir` at `rev`, after `start_after`, at most `limit` (0 = all),
    /// with how many live keys follow them.
    pub fn range(
        &self,
        dir: &str,
        start_after: Option<&str>,
        rev: Revision,
        limit: usize,
    ) -> (Vec<(String, Version)>, u64) {
        let mut items = Vec::new();
        let mut remaining = 0u64;
        for (key, history) in self.dir_range(dir, start_after) {
            if let Some(v) = live_in(history, rev) {
                if limit == 0 || items.len() < limit {
                    items.push((key.clone(), v));
                } else {
                    remaining += 1;
                }
            }
        }
        (items, remaining)
    }

    /// The newest revision of a change under `dir` the index still knows of, or the
    /// compaction revision (older changes are forgotten) if that is newer.
    pub fn changed_at(&self, dir: &str) -> Revision {
        self.dir_range(dir, None)
            .filter_map(|(_, history)| history.last().map(|v| v.rev))
            .fold(self.compacted, Revision::max)
    }

    pub fn count(&self, dir: &str) -> u64 {
        let rev = self.current;
        self.dir_range(dir, None).filter(|(_, h)| live_in(h, rev).is_some()).count() as u64
    }

    /// Every change under `dir` with revision in `(from, self.current]`, in revision order.
    pub fn changes_since(&self, dir: &str, from: Revision) -> Vec<Change> {
        let mut changes = Vec::new();
        for (key, history) in self.dir_range(dir, None) {
            let first = history.partition_point(|v| v.rev <= from);
            for i in first..history.len() {
                let prev = i.checked_sub(1).map(|p| history[p]).filter(|p| !p.deleted);
                changes.push(Change { key: key.clone(), version: history[i], prev });
            }
        }
        changes.sort_unstable_by_key(|c| c.version.rev);
        changes
    }

    /// Records a change; `version.rev` must be above every revision seen so far.
    pub fn apply(&mut self, key: &str, version: Version) {
        debug_assert!(version.rev > self.current, "revisions go up");
        self.current = version.rev;
        match self.keys.get_mut(key) {
            Some(history) => history.push(version),
            None => {
                self.keys.insert(key.to_owned(), vec![version]);
            }
        }
    }

    /// Forgets history older than `rev` and returns the revisions whose stored values
    /// are no longer reachable, so the log can discard them.
    pub fn compact(&mut self, rev: Revision) -> Vec<Revision> {
        let mut dead = Vec::new();
        if rev <= self.compacted {
            return dead;
        }
        self.keys.retain(|_, history| {
            // Keep the version live at `rev` and everything after it; a tombstone at or
            // before `rev` is history too.
            let keep_from = match history.partition_point(|v| v.rev <= rev) {
                0 => 0,
                n if history[n - 1].deleted => n,
                n => n - 1,
            };
            dead.extend(history.drain(..keep_from).map(|v| v.rev));
            !history.is_empty()
        });
        self.compacted = rev;
        dead
    }

    fn dir_range<'a>(
        &'a self,
        dir: &'a str,
        start_after: Option<&str>,
    ) -> impl Iterator<Item = (&'a String, &'a Vec<Version>)> + 'a {
        let lower = match start_after {
            Some(after) if after >= dir => Bound::Excluded(after.to_owned()),
            _ => Bound::Included(dir.to_owned()),
        };
        self.keys
            .range::<String, _>((lower, Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(dir))
    }
}

fn live_in(history: &[Version], rev: Revision) -> Option<Version> {
    let n = history.partition_point(|v| v.rev <= rev);
    n.checked_sub(1).map(|i| history[i]).filter(|v| !v.deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(ix: &mut Index, key: &str, rev: Revision) {
        let create_rev = match ix.newest(key) {
            Some(v) if !v.deleted => v.create_rev,
            _ => rev,
        };
        ix.apply(key, Version { rev, create_rev, deleted: false });
    }

    fn del(ix: &mut Index, key: &str, rev: Revision) {
        let create_rev = ix.newest(key).map(|v| v.create_rev).unwrap_or(rev);
        ix.apply(key, Version { rev, create_rev, deleted: true });
    }

    #[test]
    fn compaction_keeps_the_state_at_the_compacted_revision() {
        let mut ix = Index::default();
        put(&mut ix, "/a/1", 1);
        put(&mut ix, "/a/1", 2);
        put(&mut ix, "/a/2", 3);
        del(&mut ix, "/a/2", 4);
        put(&mut ix, "/a/1", 5);
        let mut dead = ix.compact(4);
        dead.sort();
        assert_eq!(dead, vec![1, 3, 4]);
        assert_eq!(ix.live_at("/a/1", 4).map(|v| v.rev), Some(2));
        assert_eq!(ix.live_at("/a/1", 5).map(|v| v.rev), Some(5));
        assert_eq!(ix.live_at("/a/2", 4), None);
        // Compacting again at or below is a no-op.
        assert!(ix.compact(3).is_empty());
    }

    #[test]
    fn changes_since_carries_previous_live_versions() {
        let mut ix = Index::default();
        put(&mut ix, "/a/x", 1);
        put(&mut ix, "/b/x", 2);
        put(&mut ix, "/a/x", 3);
        del(&mut ix, "/a/x", 4);
        put(&mut ix, "/a/x", 5);
        let changes = ix.changes_since("/a/", 1);
        let summary: Vec<_> =
            changes.iter().map(|c| (c.version.rev, c.prev.map(|p| p.rev))).collect();
        assert_eq!(summary, vec![(3, Some(1)), (4, Some(3)), (5, None)]);
    }

    #[test]
    fn range_respects_directory_boundaries_and_start_after() {
        let mut ix = Index::default();
        for (i, key) in ["/a/1", "/a/2", "/a/3", "/ab/1", "/a0"].iter().enumerate() {
            put(&mut ix, key, i as Revision + 1);
        }
        let (items, remaining) = ix.range("/a/", None, 5, 2);
        let keys: Vec<_> = items.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!((keys, remaining), (vec!["/a/1", "/a/2"], 1));
        let (items, remaining) = ix.range("/a/", Some("/a/2"), 5, 0);
        let keys: Vec<_> = items.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!((keys, remaining), (vec!["/a/3"], 0));
        assert_eq!(ix.count("/a/"), 3);
    }

    #[test]
    fn a_directory_changed_at_its_newest_change_or_the_compaction() {
        let mut ix = Index::default();
        assert_eq!(ix.changed_at("/a/"), 0);
        put(&mut ix, "/a/x", 1);
        put(&mut ix, "/b/y", 2);
        put(&mut ix, "/a/z", 3);
        put(&mut ix, "/b/y", 4);
        assert_eq!(ix.changed_at("/a/"), 3);
        del(&mut ix, "/a/x", 5);
        assert_eq!(ix.changed_at("/a/"), 5, "a deletion is a change");
        put(&mut ix, "/b/y", 6);
        assert_eq!(ix.changed_at("/a/"), 5);
        // Compaction forgets the deletion; the compaction revision stands for it.
        ix.compact(6);
        assert_eq!(ix.changed_at("/a/"), 6);
        assert_eq!(ix.changed_at("/c/"), 6);
    }
}

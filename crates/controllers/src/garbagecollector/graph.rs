//! The ownerReferences graph (upstream's `GraphBuilder` and `uidToNode`): one node per
//! object uid the monitors have seen, and a virtual node for each owner a dependent
//! names that no monitor has shown yet. Pure: [`Graph::observe`] and
//! [`Graph::forget`] apply what a watch said and return the work it makes.

use std::collections::{HashMap, HashSet};

use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

pub type Uid = String;

pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

/// Who an object is: enough to read or delete it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub api_version: String,
    pub kind: String,
    /// The dependent's namespace for a virtual node (an owner reference has none).
    pub namespace: String,
    pub name: String,
    pub uid: Uid,
}

impl Identity {
    pub fn of(api_version: &str, kind: &str, meta: &ObjectMeta) -> Self {
        Identity {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
        }
    }

    fn owner(r: &OwnerReference, namespace: &str) -> Self {
        Identity {
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
            namespace: namespace.into(),
            name: r.name.clone(),
            uid: r.uid.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub identity: Identity,
    pub owners: Vec<OwnerReference>,
    pub dependents: HashSet<Uid>,
    /// Named by a dependent, not yet seen by a monitor.
    pub virtual_: bool,
    pub being_deleted: bool,
    /// Being deleted in the foreground: waits for its blocking dependents.
    pub deleting_dependents: bool,
}

/// Work for the collector's queue.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Work {
    /// Check the object (or virtual owner) and delete it if its owners are gone.
    AttemptToDelete(Uid),
    /// Remove the object's dependents' references to it, then its `orphan` finalizer.
    AttemptToOrphan(Uid),
}

#[derive(Default)]
pub struct Graph {
    nodes: HashMap<Uid, Node>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The dependents of `uid` whose reference to it has `blockOwnerDeletion`.
    pub fn blocking_dependents(&self, uid: &str) -> Vec<Node> {
        let Some(node) = self.nodes.get(uid) else { return Vec::new() };
        node.dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .filter(|d| {
                d.owners.iter().any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
            })
            .cloned()
            .collect()
    }

    /// An object was added or changed.
    pub fn observe(&mut self, identity: Identity, meta: &ObjectMeta) -> Vec<Work> {
        let uid = identity.uid.clone();
        let mut work = Vec::new();
        let owners = meta.owner_references.clone().unwrap_or_default();
        let finalizers = meta.finalizers.clone().unwrap_or_default();
        let being_deleted = meta.deletion_timestamp.is_some();
        let (old_owners, dependents) = match self.nodes.remove(&uid) {
            Some(old) => {
                if old.virtual_
                    && (old.identity.kind != identity.kind
                        || old.identity.namespace != identity.namespace
                        || old.identity.name != identity.name)
                {
                    // Dependents named it with other coordinates: check them again.
                    work.extend(old.dependents.iter().cloned().map(Work::AttemptToDelete));
                }
                (if old.virtual_ { Vec::new() } else { old.owners }, old.dependents)
            }
            None => (Vec::new(), HashSet::new()),
        };
        for removed in old_owners.iter().filter(|o| !owners.iter().any(|n| n.uid == o.uid)) {
            if let Some(owner) = self.nodes.get_mut(&removed.uid) {
                owner.dependents.remove(&uid);
                if owner.deleting_dependents {
                    work.push(Work::AttemptToDelete(owner.identity.uid.clone()));
                }
            }
        }
        for changed in owners.iter().filter(|n| {
            old_owners
                .iter()
                .any(|o| o.uid == n.uid && o.block_owner_deletion != n.block_owner_deletion)
        }) {
            if self.nodes.get(&changed.uid).is_some_and(|o| o.deleting_dependents) {
                work.push(Work::AttemptToDelete(changed.uid.clone()));
            }
        }
        for owner in &owners {
            let node = self.nodes.entry(owner.uid.clone()).or_insert_with(|| {
                work.push(Work::AttemptToDelete(owner.uid.clone()));
                Node {
                    identity: Identity::owner(owner, &identity.namespace),
                    owners: Vec::new(),
                    dependents: HashSet::new(),
                    virtual_: true,
                    being_deleted: false,
                    deleting_dependents: false,
                }
            });
            node.dependents.insert(uid.clone());
        }
        let deleting_dependents = being_deleted && finalizers.iter().any(|f| f == FOREGROUND);
        if being_deleted && finalizers.iter().any(|f| f == ORPHAN) {
            work.push(Work::AttemptToOrphan(uid.clone()));
        }
        if deleting_dependents {
            work.extend(dependents.iter().cloned().map(Work::AttemptToDelete));
            work.push(Work::AttemptToDelete(uid.clone()));
        }
        self.nodes.insert(
            uid,
            Node {
                identity,
                owners,
                dependents,
                virtual_: false,
                being_deleted,
                deleting_dependents,
            },
        );
        work
    }

    /// An object is gone (or a virtual owner turned out absent): its dependents are
    /// checked, and owners waiting for it may finish.
    pub fn forget(&mut self, uid: &str) -> Vec<Work> {
        let Some(node) = self.nodes.remove(uid) else { return Vec::new() };
        let mut work: Vec<Work> =
            node.dependents.iter().cloned().map(Work::AttemptToDelete).collect();
        for owner in &node.owners {
            if let Some(o) = self.nodes.get_mut(&owner.uid) {
                o.dependents.remove(uid);
                if o.deleting_dependents {
                    work.push(Work::AttemptToDelete(owner.uid.clone()));
                }
                if o.virtual_ && o.dependents.is_empty() {
                    self.nodes.remove(&owner.uid);
                }
            }
        }
        // Dependents keep naming it: were one changed, a virtual node would be made
        // again and checked.
        work
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn meta(uid: &str, owners: &[(&str, bool)]) -> ObjectMeta {
        ObjectMeta {
            name: Some(format!("n-{uid}")),
            namespace: Some("ns".into()),
            uid: Some(uid.into()),
            owner_references: Some(
                owners
                    .iter()
                    .map(|(o, block)| OwnerReference {
                        api_version: "v1".into(),
                        kind: "ConfigMap".into(),
                        name: format!("n-{o}"),
                        uid: (*o).into(),
                        block_owner_deletion: Some(*block),
                        ..OwnerReference::default()
                    })
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    fn observe(g: &mut Graph, m: &ObjectMeta) -> Vec<Work> {
        g.observe(Identity::of("v1", "ConfigMap", m), m)
    }

    #[test]
    fn an_unseen_owner_is_a_virtual_node_checked_once_seen_it_is_real() {
        let mut g = Graph::default();
        let work = observe(&mut g, &meta("child", &[("parent", false)]));
        assert_eq!(work, [Work::AttemptToDelete("parent".into())]);
        assert!(g.get("parent").is_some_and(|n| n.virtual_ && n.dependents.contains("child")));
        assert!(observe(&mut g, &meta("parent", &[])).is_empty());
        assert!(g.get("parent").is_some_and(|n| !n.virtual_ && n.dependents.contains("child")));
        // The owner goes: its dependent is checked.
        assert_eq!(g.forget("parent"), [Work::AttemptToDelete("child".into())]);
    }

    #[test]
    fn a_foreground_owner_waits_for_blocking_dependents_and_is_woken_when_they_go() {
        let mut g = Graph::default();
        observe(&mut g, &meta("parent", &[]));
        observe(&mut g, &meta("a", &[("parent", true)]));
        observe(&mut g, &meta("b", &[("parent", false)]));
        let mut deleting = meta("parent", &[]);
        deleting.deletion_timestamp = Some(Time(keelson_api::k8s_openapi::jiff::Timestamp::now()));
        deleting.finalizers = Some(vec![FOREGROUND.into()]);
        let mut work = observe(&mut g, &deleting);
        work.sort_by_key(|w| format!("{w:?}"));
        assert_eq!(work.len(), 3);
        assert!(g.get("parent").is_some_and(|n| n.deleting_dependents));
        let blocking: Vec<Uid> =
            g.blocking_dependents("parent").into_iter().map(|n| n.identity.uid).collect();
        assert_eq!(blocking, ["a"]);
        assert_eq!(g.forget("a"), [Work::AttemptToDelete("parent".into())]);
        assert!(g.blocking_dependents("parent").is_empty());
    }

    #[test]
    fn an_owner_being_orphaned_is_queued_for_orphaning() {
        let mut g = Graph::default();
        let mut m = meta("parent", &[]);
        m.deletion_timestamp = Some(Time(keelson_api::k8s_openapi::jiff::Timestamp::now()));
        m.finalizers = Some(vec![ORPHAN.into()]);
        assert_eq!(observe(&mut g, &m), [Work::AttemptToOrphan("parent".into())]);
    }
}

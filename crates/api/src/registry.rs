//! The registry the API server serves discovery and REST routing from: every resource in a
//! stable order, looked up by group, version and plural or kind.
//!
//! The built-in registry is built once and never changes; it must never hold per-request
//! or per-object state. Custom resources come and go with their definitions: the API
//! server builds a new registry ([`Registry::with_custom`]) when they change, and drops
//! the old one once no request holds it. A registry holds its resources by `'static`
//! reference (the built-in ones are constants; the API server interns each custom one
//! once), so a resource found in a registry outlives the registry.

use std::sync::OnceLock;

use crate::builtin::GROUP_VERSIONS;
use crate::resource::ResourceInfo;

/// A set of served resources, in discovery order.
#[derive(Debug)]
pub struct Registry {
    resources: Vec<&'static ResourceInfo>,
}

/// One API group as `/apis` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    /// Group name: `"apps"`.
    pub name: &'static str,
    /// Served versions, preferred first, then by upstream's version priority.
    pub versions: Vec<&'static str>,
    /// The version clients should use: `"v1"`, `"v2"` for autoscaling.
    pub preferred_version: &'static str,
}

impl Registry {
    /// The built-in resources of Kubernetes 1.34 that Keelson serves, built on first use.
    ///
    /// Order: core `v1` first, then the groups in upstream's `/apis` order, each group's
    /// versions preferred first, and each group-version's resources sorted by plural.
    pub fn builtin() -> &'static Registry {
        static BUILTIN: OnceLock<Registry> = OnceLock::new();
        BUILTIN.get_or_init(|| Registry {
            resources: GROUP_VERSIONS.iter().flat_map(|gv| gv.iter()).collect(),
        })
    }

    /// These resources followed by `custom` ones (in the order given: by group, versions
    /// preferred first, plurals sorted), as the API server serves them while
    /// CustomResourceDefinitions add resources.
    pub fn with_custom(&self, custom: impl IntoIterator<Item = &'static ResourceInfo>) -> Registry {
        Registry { resources: self.resources.iter().copied().chain(custom).collect() }
    }

    /// Every resource, in discovery order.
    pub fn resources(&self) -> impl ExactSizeIterator<Item = &'static ResourceInfo> + '_ {
        self.resources.iter().copied()
    }

    /// The resource served at `/<group>/<version>/<plural>`, if any.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
        self.resources().find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The resource whose objects have this group, version and kind, if any.
    pub fn find_kind(
        &self,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Option<&'static ResourceInfo> {
        self.resources().find(|r| r.group == group && r.version == version && r.kind == kind)
    }

    /// The resources of one group-version, in discovery order; empty if it is not served.
    pub fn group_version_resources<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
        self.resources().filter(move |r| r.group == group && r.version == version)
    }

    /// Every named API group (the core group `""` is not one: it is served at `/api`), in
    /// upstream's `/apis` order, each with its versions preferred first.
    pub fn groups(&self) -> Vec<GroupInfo> {
        let mut groups: Vec<GroupInfo> = Vec::new();
        for r in self.resources().filter(|r| !r.group.is_empty()) {
            match groups.iter_mut().find(|g| g.name == r.group) {
                Some(g) if g.versions.contains(&r.version) => {}
                Some(g) => g.versions.push(r.version),
                None => groups.push(GroupInfo {
                    name: r.group,
                    versions: vec![r.version],
                    preferred_version: r.version,
                }),
            }
        }
        groups
    }

    /// The versions of the core group, preferred first: `["v1"]`.
    pub fn core_versions(&self) -> Vec<&'static str> {
        let mut versions = Vec::new();
        for r in self.resources().filter(|r| r.group.is_empty()) {
            if !versions.contains(&r.version) {
                versions.push(r.version);
            }
        }
        versions
    }
}

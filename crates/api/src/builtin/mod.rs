//! The built-in resource table: every resource a Kubernetes 1.34 kube-apiserver serves by
//! default in the group-versions Keelson implements, as upstream discovery reports it.
//!
//! Group, version, kind, plural and scope come from `k8s_openapi::Resource`; singular names,
//! verbs, short names, categories and subresources are upstream's discovery data (the
//! `api/discovery/*.json` fixtures of kubernetes/kubernetes, cross-checked against the
//! `pkg/registry` storage code), written down once here. This module must never describe
//! anything upstream does not serve by default (alpha and beta group-versions, feature-gated
//! resources that are off by default), nor carry behaviour: it is data.
//!
//! Resources are kept sorted by plural inside each group-version, and subresources by name,
//! because that is the order upstream discovery lists them in.

mod auth;
mod cluster;
mod core;
mod extensions;
mod networking;
mod workloads;

use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope, Resource};

use crate::resource::{ResourceInfo, Scope, StorageVersion, Subresource};

/// Every built-in group-version's resources, in the order upstream serves them: core `v1`
/// first, then the groups in kube-apiserver's `/apis` order (by group priority), and inside
/// a group the versions by version priority, preferred first.
pub(crate) const GROUP_VERSIONS: &[&[ResourceInfo]] = &[
    core::V1,
    extensions::APIREGISTRATION_V1,
    workloads::APPS_V1,
    cluster::EVENTS_V1,
    auth::AUTHENTICATION_V1,
    auth::AUTHORIZATION_V1,
    workloads::AUTOSCALING_V2,
    workloads::AUTOSCALING_V1,
    workloads::BATCH_V1,
    auth::CERTIFICATES_V1,
    networking::NETWORKING_V1,
    workloads::POLICY_V1,
    auth::RBAC_V1,
    cluster::STORAGE_V1,
    extensions::ADMISSIONREGISTRATION_V1,
    extensions::APIEXTENSIONS_V1,
    cluster::SCHEDULING_V1,
    cluster::COORDINATION_V1,
    cluster::NODE_V1,
    networking::DISCOVERY_V1,
    cluster::RESOURCE_V1,
    cluster::FLOWCONTROL_V1,
];

/// Verbs of a resource served by the generic store with every operation.
const STANDARD: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
/// Verbs of a create-only resource (bindings, reviews).
const CREATE: &[&str] = &["create"];
/// Verbs of a read-only resource (component statuses).
const GET_LIST: &[&str] = &["get", "list"];
/// Verbs of an update-style subresource (status, scale, approval...).
const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
/// Verbs of a streaming connect subresource (exec, attach, portforward).
const CREATE_GET: &[&str] = &["create", "get"];
/// Verbs of a proxy subresource: every HTTP method a proxy forwards.
const PROXY: &[&str] = &["create", "delete", "get", "patch", "update"];

/// Maps k8s-openapi's scope marker types to [`Scope`]; `SubResourceScope` has no mapping, so a
/// subresource type cannot be registered as a resource by mistake.
trait ScopeOf {
    const SCOPE: Scope;
}

impl ScopeOf for NamespaceResourceScope {
    const SCOPE: Scope = Scope::Namespaced;
}

impl ScopeOf for ClusterResourceScope {
    const SCOPE: Scope = Scope::Cluster;
}

/// An entry for `T` with the standard verbs and no short names, categories or subresources;
/// the builder methods below fill in what differs.
const fn resource<T>(singular: &'static str) -> ResourceInfo
where
    T: Resource + serde::Serialize + serde::de::DeserializeOwned + schemars::JsonSchema,
    T::Scope: ScopeOf,
{
    ResourceInfo {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        plural: T::URL_PATH_SEGMENT,
        singular,
        scope: <T::Scope as ScopeOf>::SCOPE,
        verbs: STANDARD,
        short_names: &[],
        categories: &[],
        subresources: &[],
        typed: crate::resource::Typed::of::<T>(),
        custom: None,
        storage_version: Some(StorageVersion {
            group: T::GROUP,
            version: T::VERSION,
            kind: T::KIND,
        }),
    }
}

impl ResourceInfo {
    const fn verbs(self, verbs: &'static [&'static str]) -> Self {
        ResourceInfo { verbs, ..self }
    }

    const fn short_names(self, short_names: &'static [&'static str]) -> Self {
        ResourceInfo { short_names, ..self }
    }

    const fn categories(self, categories: &'static [&'static str]) -> Self {
        ResourceInfo { categories, ..self }
    }

    const fn subresources(self, subresources: &'static [Subresource]) -> Self {
        ResourceInfo { subresources, ..self }
    }

    /// A resource whose objects are never stored (bindings, reviews).
    const fn not_stored(self) -> Self {
        ResourceInfo { storage_version: None, ..self }
    }

    /// A resource stored as another type's group-version-kind (`autoscaling/v1` HPAs as
    /// `autoscaling/v2`, `events.k8s.io` Events as core ones).
    const fn stored_as<T: Resource>(self) -> Self {
        let storage = StorageVersion { group: T::GROUP, version: T::VERSION, kind: T::KIND };
        ResourceInfo { storage_version: Some(storage), ..self }
    }

    /// A resource stored in another version of its group, one Keelson does not serve
    /// (upstream keeps a newly GA kind stored as its beta for a release).
    const fn stored_in(self, version: &'static str) -> Self {
        let storage = StorageVersion { group: self.group, version, kind: self.kind };
        ResourceInfo { storage_version: Some(storage), ..self }
    }
}

/// The `status` subresource of `T`: it reads and writes a whole `T`.
const fn status<T: Resource>() -> Subresource {
    same_version::<T>("status", GET_PATCH_UPDATE)
}

/// A subresource whose kind `T` is in the parent's own group-version.
const fn same_version<T: Resource>(
    name: &'static str,
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource { name, kind: T::KIND, group: "", version: "", verbs }
}

/// A subresource whose kind `T` is in another group-version (`scale`, `eviction`, `token`).
const fn other_version<T: Resource>(
    name: &'static str,
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource { name, kind: T::KIND, group: T::GROUP, version: T::VERSION, verbs }
}

/// A connect subresource of the parent's group-version whose options kind k8s-openapi has no
/// resource type for (`PodExecOptions`, `NodeProxyOptions`...).
const fn connect(
    name: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource { name, kind, group: "", version: "", verbs }
}

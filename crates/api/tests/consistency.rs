//! The registry is internally consistent: every entry can be found, names do not collide,
//! data is in upstream's order, and it agrees with k8s-openapi's types.

use std::collections::{HashMap, HashSet};

use keelson_api::k8s_openapi::{self, ListableResource};
use keelson_api::{Registry, Scope};

const KNOWN_VERBS: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

fn registry() -> &'static Registry {
    Registry::builtin()
}

#[test]
fn every_entry_is_found_by_plural_and_by_kind() {
    for r in registry().resources() {
        let by_plural = registry().find(r.group, r.version, r.plural).expect("found by plural");
        assert!(std::ptr::eq(by_plural, r), "{}/{} resolves to another entry", r.group, r.plural);
        let by_kind = registry().find_kind(r.group, r.version, r.kind).expect("found by kind");
        assert!(std::ptr::eq(by_kind, r), "{} {} resolves to another entry", r.group, r.kind);
    }
}

#[test]
fn unknown_names_are_not_found() {
    assert!(registry().find("", "v1", "pod").is_none());
    assert!(registry().find("apps", "v1beta1", "deployments").is_none());
    assert!(registry().find("extensions", "v1beta1", "deployments").is_none());
    assert!(registry().find_kind("", "v1", "Deployment").is_none());
    // Off by default in 1.34 (`betaAPIGroupVersionsDisabledByDefault`).
    assert!(registry().find("resource.k8s.io", "v1beta1", "resourceclaims").is_none());
    assert!(registry().find("resource.k8s.io", "v1beta2", "resourceclaims").is_none());
    assert!(registry().find("flowcontrol.apiserver.k8s.io", "v1beta3", "flowschemas").is_none());
}

#[test]
fn plurals_and_kinds_are_unique_per_group_version() {
    let mut plurals = HashSet::new();
    let mut kinds = HashSet::new();
    for r in registry().resources() {
        assert!(plurals.insert((r.group, r.version, r.plural)), "duplicate plural {}", r.plural);
        assert!(kinds.insert((r.group, r.version, r.kind)), "duplicate kind {}", r.kind);
    }
}

#[test]
fn a_short_name_or_singular_names_one_resource() {
    // The same resource may be served in several versions or groups (hpa in autoscaling v1
    // and v2, ev for core and events.k8s.io events), but a name never means two plurals.
    let mut names: HashMap<&str, &str> = HashMap::new();
    for r in registry().resources() {
        for name in r.short_names.iter().chain([&r.singular]) {
            let plural = names.entry(name).or_insert(r.plural);
            assert_eq!(*plural, r.plural, "{name} names both {plural} and {}", r.plural);
        }
    }
}

#[test]
fn singular_is_the_lowercase_kind() {
    for r in registry().resources() {
        assert_eq!(r.singular, r.kind.to_lowercase(), "{}", r.plural);
    }
}

#[test]
fn resources_are_sorted_by_plural_within_a_group_version() {
    let resources: Vec<_> = registry().resources().collect();
    for pair in resources.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if (a.group, a.version) == (b.group, b.version) {
            assert!(a.plural < b.plural, "{} listed before {}", a.plural, b.plural);
        }
    }
}

#[test]
fn verbs_are_known_sorted_and_unique() {
    let check = |what: &str, verbs: &[&str]| {
        assert!(!verbs.is_empty(), "{what} has no verbs");
        assert!(verbs.windows(2).all(|w| w[0] < w[1]), "{what} verbs not sorted: {verbs:?}");
        for verb in verbs {
            assert!(KNOWN_VERBS.contains(verb), "{what} has unknown verb {verb}");
        }
    };
    for r in registry().resources() {
        check(r.plural, r.verbs);
        for s in r.subresources {
            check(&format!("{}/{}", r.plural, s.name), s.verbs);
        }
    }
}

#[test]
fn subresources_are_sorted_and_status_returns_the_parent_kind() {
    for r in registry().resources() {
        assert!(
            r.subresources.windows(2).all(|w| w[0].name < w[1].name),
            "{} subresources not sorted",
            r.plural
        );
        for s in r.subresources {
            assert_eq!(s.group.is_empty(), s.version.is_empty(), "{}/{}", r.plural, s.name);
            assert_ne!((s.group, s.version), (r.group, r.version), "same group-version is blank");
        }
        if let Some(status) = r.subresource("status") {
            assert_eq!((status.kind, status.group, status.version), (r.kind, "", ""));
            assert_eq!(status.verbs, ["get", "patch", "update"]);
        }
    }
}

#[test]
fn pods_match_upstream() {
    let pods = registry().find("", "v1", "pods").unwrap();
    assert_eq!(pods.short_names, ["po"]);
    assert_eq!(pods.categories, ["all"]);
    assert!(pods.namespaced());
    assert_eq!(pods.list_kind(), "PodList");
    assert_eq!(pods.api_version(), "v1");
    let names: Vec<_> = pods.subresources.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "attach",
            "binding",
            "ephemeralcontainers",
            "eviction",
            "exec",
            "log",
            "portforward",
            "proxy",
            "resize",
            "status"
        ]
    );
    let eviction = pods.subresource("eviction").unwrap();
    assert_eq!((eviction.kind, eviction.group, eviction.version), ("Eviction", "policy", "v1"));
    assert_eq!(eviction.api_version(pods), "policy/v1");
    assert_eq!(pods.subresource("binding").unwrap().kind, "Binding");
    assert_eq!(pods.subresource("exec").unwrap().kind, "PodExecOptions");
    assert_eq!(pods.subresource("exec").unwrap().verbs, ["create", "get"]);
    assert_eq!(pods.subresource("log").unwrap().verbs, ["get"]);
    assert_eq!(
        pods.subresource("proxy").unwrap().verbs,
        ["create", "delete", "get", "patch", "update"]
    );
    assert_eq!(pods.subresource("status").unwrap().api_version(pods), "v1");
}

#[test]
fn scale_subresources_are_autoscaling_v1_scale() {
    for (group, plural) in [
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("", "replicationcontrollers"),
    ] {
        let r = registry().find(group, "v1", plural).unwrap();
        let scale = r.subresource("scale").unwrap_or_else(|| panic!("{plural} has no scale"));
        assert_eq!((scale.kind, scale.group, scale.version), ("Scale", "autoscaling", "v1"));
        assert_eq!(scale.verbs, ["get", "patch", "update"]);
    }
    assert!(registry().find("apps", "v1", "daemonsets").unwrap().subresource("scale").is_none());
}

#[test]
fn special_core_resources_match_upstream() {
    let namespaces = registry().find("", "v1", "namespaces").unwrap();
    assert_eq!(namespaces.scope, Scope::Cluster);
    assert!(!namespaces.supports("deletecollection"));
    assert_eq!(namespaces.subresource("finalize").unwrap().verbs, ["update"]);
    assert_eq!(namespaces.subresource("finalize").unwrap().kind, "Namespace");

    let token = registry().find("", "v1", "serviceaccounts").unwrap().subresource("token").unwrap();
    assert_eq!(
        (token.kind, token.group, token.version),
        ("TokenRequest", "authentication.k8s.io", "v1")
    );

    let cs = registry().find("", "v1", "componentstatuses").unwrap();
    assert_eq!(cs.verbs, ["get", "list"]);
    assert_eq!(registry().find("", "v1", "bindings").unwrap().verbs, ["create"]);
    assert_eq!(
        registry().find("", "v1", "nodes").unwrap().subresource("proxy").unwrap().kind,
        "NodeProxyOptions"
    );
}

#[test]
fn reviews_are_create_only() {
    for (group, plural) in [
        ("authentication.k8s.io", "tokenreviews"),
        ("authentication.k8s.io", "selfsubjectreviews"),
        ("authorization.k8s.io", "subjectaccessreviews"),
        ("authorization.k8s.io", "selfsubjectaccessreviews"),
        ("authorization.k8s.io", "localsubjectaccessreviews"),
        ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ] {
        assert_eq!(registry().find(group, "v1", plural).unwrap().verbs, ["create"], "{plural}");
    }
    let local = registry().find("authorization.k8s.io", "v1", "localsubjectaccessreviews").unwrap();
    assert!(local.namespaced());
}

#[test]
fn groups_list_every_group_with_resources() {
    let groups = registry().groups();
    let names: Vec<_> = groups.iter().map(|g| g.name).collect();
    let mut with_resources: Vec<_> =
        registry().resources().map(|r| r.group).filter(|g| !g.is_empty()).collect();
    with_resources.dedup();
    assert_eq!(names, with_resources, "groups are listed once each, in resource order");
    assert!(!names.contains(&""), "the core group is served at /api, not /apis");
    for g in &groups {
        assert_eq!(g.versions[0], g.preferred_version);
        for v in &g.versions {
            assert!(registry().resources().any(|r| r.group == g.name && r.version == *v));
        }
    }
    assert_eq!(registry().core_versions(), ["v1"]);
}

#[test]
fn groups_are_in_upstream_apis_order() {
    let groups = registry().groups();
    let names: Vec<_> = groups.iter().map(|g| g.name).collect();
    assert_eq!(
        names,
        [
            "apiregistration.k8s.io",
            "apps",
            "events.k8s.io",
            "authentication.k8s.io",
            "authorization.k8s.io",
            "autoscaling",
            "batch",
            "certificates.k8s.io",
            "networking.k8s.io",
            "policy",
            "rbac.authorization.k8s.io",
            "storage.k8s.io",
            "admissionregistration.k8s.io",
            "apiextensions.k8s.io",
            "scheduling.k8s.io",
            "coordination.k8s.io",
            "node.k8s.io",
            "discovery.k8s.io",
            "resource.k8s.io",
            "flowcontrol.apiserver.k8s.io",
        ]
    );
    let autoscaling = groups.iter().find(|g| g.name == "autoscaling").unwrap();
    assert_eq!(autoscaling.versions, ["v2", "v1"]);
    assert_eq!(autoscaling.preferred_version, "v2");
    // Core resources come first in resources().
    assert_eq!(registry().resources().next().map(|r| r.group), Some(""));
}

/// `list_kind` is what k8s-openapi's list types say for every listable resource.
#[test]
fn list_kinds_match_k8s_openapi() {
    fn check<T: ListableResource>() {
        let r = Registry::builtin().find_kind(T::GROUP, T::VERSION, T::KIND).expect(T::KIND);
        assert_eq!(r.list_kind(), T::LIST_KIND);
        assert_eq!(r.plural, T::URL_PATH_SEGMENT);
        assert_eq!(r.api_version(), T::API_VERSION);
    }
    use k8s_openapi::api::{apps, autoscaling, batch, core, networking, rbac, storage};
    check::<core::v1::Pod>();
    check::<core::v1::ComponentStatus>();
    check::<core::v1::Endpoints>();
    check::<apps::v1::Deployment>();
    check::<autoscaling::v1::HorizontalPodAutoscaler>();
    check::<autoscaling::v2::HorizontalPodAutoscaler>();
    check::<batch::v1::CronJob>();
    check::<networking::v1::IPAddress>();
    check::<rbac::v1::ClusterRoleBinding>();
    check::<storage::v1::VolumeAttributesClass>();
    check::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>();
    check::<k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService>();
}

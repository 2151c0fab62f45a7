//! The strategic merge patch metadata (`keelson_api::patch_meta`) says what upstream's Go
//! struct tags say, and covers every kind the registry serves.

use keelson_api::Registry;
use keelson_api::patch_meta::{Shape, Strategy, TYPES, TypeMeta, kind_type, type_named};

fn ty(name: &str) -> &'static TypeMeta {
    type_named(name).unwrap_or_else(|| panic!("no type {name}"))
}

/// `(strategy, merge key, is list)` of a field.
fn tags(ty: &TypeMeta, field: &str) -> (Strategy, Option<&'static str>, bool) {
    let f = ty.field(field).unwrap_or_else(|| panic!("{} has no field {field}", ty.name));
    (f.strategy, f.merge_key, f.is_list())
}

#[test]
fn lists_merged_by_key() {
    let pod_spec = ty("io.k8s.api.core.v1.PodSpec");
    assert_eq!(tags(pod_spec, "containers"), (Strategy::Merge, Some("name"), true));
    assert_eq!(tags(pod_spec, "initContainers"), (Strategy::Merge, Some("name"), true));
    assert_eq!(tags(pod_spec, "volumes"), (Strategy::MergeRetainKeys, Some("name"), true));
    assert_eq!(tags(pod_spec, "topologySpreadConstraints").1, Some("topologyKey"));
    let container = ty("io.k8s.api.core.v1.Container");
    assert_eq!(tags(container, "ports"), (Strategy::Merge, Some("containerPort"), true));
    assert_eq!(tags(container, "env"), (Strategy::Merge, Some("name"), true));
    assert_eq!(tags(container, "volumeMounts"), (Strategy::Merge, Some("mountPath"), true));
    let service_spec = ty("io.k8s.api.core.v1.ServiceSpec");
    assert_eq!(tags(service_spec, "ports"), (Strategy::Merge, Some("port"), true));
    let meta = ty("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
    assert_eq!(tags(meta, "ownerReferences"), (Strategy::Merge, Some("uid"), true));
    assert_eq!(tags(meta, "finalizers"), (Strategy::Merge, None, true), "a set of strings");
    assert_eq!(meta.field("finalizers").unwrap().value_type().map(|t| t.name), None);
}

#[test]
fn inline_structs_are_flattened() {
    // EphemeralContainerCommon is inline in EphemeralContainer; VolumeSource in Volume.
    let ephemeral = ty("io.k8s.api.core.v1.EphemeralContainer");
    assert_eq!(tags(ephemeral, "ports"), (Strategy::Merge, Some("containerPort"), true));
    assert_eq!(tags(ephemeral, "targetContainerName").0, Strategy::None);
    let volume = ty("io.k8s.api.core.v1.Volume");
    assert_eq!(
        volume.field_type("configMap").unwrap().name,
        "io.k8s.api.core.v1.ConfigMapVolumeSource"
    );
}

#[test]
fn other_strategies_and_none() {
    let deployment_spec = ty("io.k8s.api.apps.v1.DeploymentSpec");
    assert_eq!(tags(deployment_spec, "strategy"), (Strategy::RetainKeys, None, false));
    assert!(Strategy::RetainKeys.retains_keys() && !Strategy::RetainKeys.merges());
    let pdb_spec = ty("io.k8s.api.policy.v1.PodDisruptionBudgetSpec");
    assert_eq!(tags(pdb_spec, "selector").0, Strategy::Replace);
    // Lists without a tag are replaced by a patch.
    let service_spec = ty("io.k8s.api.core.v1.ServiceSpec");
    assert_eq!(tags(service_spec, "externalIPs"), (Strategy::None, None, true));
    let container = ty("io.k8s.api.core.v1.Container");
    assert_eq!(tags(container, "args"), (Strategy::None, None, true));
    assert_eq!(tags(container, "envFrom"), (Strategy::None, None, true));
    assert_eq!(container.field("image").unwrap().shape, Shape::One);
    assert_eq!(container.field("resources").unwrap().shape, Shape::One);
    let requirements = container.field_type("resources").unwrap();
    assert_eq!(requirements.field("limits").unwrap().shape, Shape::Map);
    assert!(requirements.field_type("limits").is_none(), "quantities are leaves");
    assert_eq!(Strategy::MergeRetainKeys.as_str(), Some("merge,retainKeys"));
    assert_eq!(Strategy::None.as_str(), None);
}

#[test]
fn walks_from_kinds() {
    let walk = |group, version, kind, path: &[&str]| {
        let mut t = kind_type(group, version, kind).expect("kind registered");
        for field in path {
            t = t.field_type(field).unwrap_or_else(|| panic!("{} has no object {field}", t.name));
        }
        t.name
    };
    assert_eq!(
        walk("apps", "v1", "Deployment", &["spec", "template", "spec"]),
        "io.k8s.api.core.v1.PodSpec"
    );
    assert_eq!(
        walk(
            "batch",
            "v1",
            "CronJob",
            &["spec", "jobTemplate", "spec", "template", "spec", "containers"]
        ),
        "io.k8s.api.core.v1.Container"
    );
    assert_eq!(
        walk("", "v1", "Pod", &["metadata"]),
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert_eq!(
        walk("autoscaling", "v1", "Scale", &["spec"]),
        "io.k8s.api.autoscaling.v1.ScaleSpec"
    );
    // The same kind name in two groups resolves to two types.
    assert_eq!(walk("", "v1", "Event", &[]), "io.k8s.api.core.v1.Event");
    assert_eq!(walk("events.k8s.io", "v1", "Event", &[]), "io.k8s.api.events.v1.Event");
    assert!(kind_type("apps", "v1beta1", "Deployment").is_none());
}

#[test]
fn every_registered_kind_has_a_type() {
    for r in Registry::builtin().resources() {
        assert!(
            kind_type(r.group, r.version, r.kind).is_some(),
            "{}/{} {}",
            r.group,
            r.version,
            r.kind
        );
        for s in r.subresources.iter().filter(|s| !s.kind.ends_with("Options")) {
            let (group, version) =
                if s.version.is_empty() { (r.group, r.version) } else { (s.group, s.version) };
            assert!(kind_type(group, version, s.kind).is_some(), "{}/{}", r.plural, s.name);
        }
    }
}

#[test]
fn table_is_sorted_and_consistent() {
    assert!(TYPES.windows(2).all(|w| w[0].name < w[1].name));
    for t in &TYPES {
        assert!(t.fields.windows(2).all(|w| w[0].name < w[1].name), "{}", t.name);
        for f in t.fields {
            assert!(f.merge_key.is_none() || f.strategy.merges(), "{}.{}", t.name, f.name);
        }
    }
}

//! The discovery documents built from the registry have upstream's shape on the wire.

use keelson_api::Registry;
use serde_json::json;

#[test]
fn core_v1_resource_list_has_upstream_entries() {
    let list = Registry::builtin().api_resource_list("", "v1").unwrap();
    assert_eq!(list.group_version, "v1");
    let names: Vec<_> = list.resources.iter().map(|r| r.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "sorted by name like upstream");

    let eviction = list.resources.iter().find(|r| r.name == "pods/eviction").unwrap();
    let wire = serde_json::to_value(eviction).unwrap();
    assert_eq!(
        wire,
        json!({
            "group": "policy",
            "kind": "Eviction",
            "name": "pods/eviction",
            "namespaced": true,
            "singularName": "",
            "verbs": ["create"],
            "version": "v1",
        })
    );
    let pods = list.resources.iter().find(|r| r.name == "pods").unwrap();
    let wire = serde_json::to_value(pods).unwrap();
    assert_eq!(wire["shortNames"], json!(["po"]));
    assert_eq!(wire["categories"], json!(["all"]));
    assert_eq!(wire["singularName"], json!("pod"));
    assert!(wire.get("group").is_none());

    let secrets =
        serde_json::to_value(list.resources.iter().find(|r| r.name == "secrets").unwrap()).unwrap();
    assert!(secrets.get("shortNames").is_none(), "empty short names are omitted");
}

#[test]
fn group_version_resource_lists() {
    let apps = Registry::builtin().api_resource_list("apps", "v1").unwrap();
    assert_eq!(apps.group_version, "apps/v1");
    assert!(apps.resources.iter().any(|r| r.name == "deployments/scale"
        && r.group.as_deref() == Some("autoscaling")
        && r.kind == "Scale"));
    let wire = serde_json::to_value(&apps).unwrap();
    assert_eq!(wire["kind"], "APIResourceList");
    assert!(Registry::builtin().api_resource_list("apps", "v1beta2").is_none());
    assert!(Registry::builtin().api_resource_list("nonexistent.example.com", "v1").is_none());
}

#[test]
fn api_group_list_names_preferred_versions() {
    let groups = Registry::builtin().api_group_list();
    assert_eq!(groups.groups[0].name, "apiregistration.k8s.io");
    let autoscaling = groups.groups.iter().find(|g| g.name == "autoscaling").unwrap();
    let wire = serde_json::to_value(autoscaling).unwrap();
    assert_eq!(
        wire,
        json!({
            "apiVersion": "v1",
            "kind": "APIGroup",
            "name": "autoscaling",
            "versions": [
                {"groupVersion": "autoscaling/v2", "version": "v2"},
                {"groupVersion": "autoscaling/v1", "version": "v1"},
            ],
            "preferredVersion": {"groupVersion": "autoscaling/v2", "version": "v2"},
        })
    );
}

/// `resource.k8s.io` is served in `v1` only: 1.34 turns its betas off by default.
#[test]
fn resource_group_serves_v1_only() {
    let groups = Registry::builtin().api_group_list();
    let resource = groups.groups.iter().find(|g| g.name == "resource.k8s.io").unwrap();
    let versions: Vec<_> = resource.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(versions, ["v1"]);
    assert!(Registry::builtin().api_resource_list("resource.k8s.io", "v1beta2").is_none());
}

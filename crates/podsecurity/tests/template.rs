//! `pod_template` for every kind upstream's PodSpecExtractor knows.

use keelson_podsecurity::{Level, LevelVersion, Version, check, pod_template};
use serde_json::json;

#[test]
fn each_workload_kind_yields_its_template() {
    let template = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"hostPID": true}});
    let objects = [
        ("ReplicaSet", json!({"spec": {"template": template}})),
        ("ReplicationController", json!({"spec": {"template": template}})),
        ("Deployment", json!({"spec": {"template": template}})),
        ("StatefulSet", json!({"spec": {"template": template}})),
        ("DaemonSet", json!({"spec": {"template": template}})),
        ("Job", json!({"spec": {"template": template}})),
        ("CronJob", json!({"spec": {"jobTemplate": {"spec": {"template": template}}}})),
        ("PodTemplate", json!({"template": template})),
    ];
    for (kind, object) in &objects {
        let (metadata, spec) = pod_template(kind, object).unwrap_or_else(|| panic!("{kind}"));
        assert_eq!(metadata, &template["metadata"], "{kind}");
        assert_eq!(spec, &template["spec"], "{kind}");
        let violations =
            check(&LevelVersion::new(Level::Baseline, Version::Latest), metadata, spec);
        assert_eq!(violations[0].detail, "hostPID=true", "{kind}");
    }
}

#[test]
fn a_pod_is_its_own_template() {
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": []}});
    let (metadata, spec) = pod_template("Pod", &pod).unwrap();
    assert_eq!(metadata, &pod["metadata"]);
    assert_eq!(spec, &pod["spec"]);
}

#[test]
fn unknown_kinds_and_missing_templates_yield_nothing() {
    assert!(pod_template("Service", &json!({"spec": {}})).is_none());
    assert!(pod_template("Deployment", &json!({"spec": {}})).is_none());
    assert!(pod_template("ReplicationController", &json!({"spec": {"template": null}})).is_none());
    assert!(pod_template("CronJob", &json!({"spec": {"jobTemplate": {}}})).is_none());
}

#[test]
fn missing_template_parts_read_as_empty() {
    let object = json!({"spec": {"template": {}}});
    let (metadata, spec) = pod_template("Job", &object).unwrap();
    assert!(metadata.is_null() && spec.is_null());
    assert!(
        check(&LevelVersion::new(Level::Restricted, Version::Latest), metadata, spec).is_empty()
    );
}

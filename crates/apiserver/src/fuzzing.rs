//! Entry points for the fuzz targets in `crates/apiserver/fuzz` (a workspace of its own,
//! outside CI): the decoders of the request path that need no running server — routing,
//! the query, selectors, quantities, the three patch types, typed decoding and
//! validation through the registry, server-side apply and CEL. Not an API: each takes raw input and may only
//! return; a panic is the bug the fuzzer looks for.

use bytes::Bytes;
use keelson_api::{Registry, ResourceInfo};
use serde_json::{Value, json};

use crate::registry::typed::{BodyCheck, FieldValidation};
use crate::request::{Request, User};

/// A request line's path and query: routing, the audit description, the query
/// parameters every list and write reads, and a list's `continue` token.
pub fn request_uri(uri: &str) {
    let Ok(parts) = http::Request::builder().uri(uri).body(()).map(|r| r.into_parts().0) else {
        return;
    };
    let req = Request::new(parts, Bytes::new(), User::default());
    let registry = Registry::builtin();
    let described = crate::router::describe(crate::router::target(registry, &req), &req);
    let _ = crate::server::request_timeout(&req);
    let _ = FieldValidation::parse(req.param("fieldValidation"));
    let segments: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let target = match segments.as_slice() {
        ["api", "v1", rest @ ..] => crate::router::resolve(registry, "", "v1", rest).ok(),
        ["apis", group, version, rest @ ..] => {
            crate::router::resolve(registry, group, version, rest).ok()
        }
        _ => None,
    };
    let _ = crate::metrics::request::RequestLabels::of(&req, target.as_ref());
    if let Some(target) = target {
        let _ = target.verb(&req.method, req.flag("watch"));
        let _ = crate::list::Filter::from_request(&req, target.info);
    }
    let _ = crate::list::list_revision(&req, 100);
    if let Some(token) = req.param("continue") {
        let _ = crate::list::decode_continue(token);
    }
    drop(described);
}

/// A `labelSelector` and a `fieldSelector`, parsed and matched against a pod.
pub fn selectors(label: &str, field: &str) {
    let pod = json!({
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "1"}},
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running"}
    });
    if let Ok(selector) = crate::registry::selector::LabelSelector::parse(label) {
        let _ = selector.matches(&pod);
    }
    let supported = [
        crate::registry::selector::SelectableField::string("spec.nodeName"),
        crate::registry::selector::SelectableField::string("status.phase"),
    ];
    if let Ok(selector) = crate::registry::selector::FieldSelector::parse(field, "Pod", &supported)
    {
        let _ = selector.matches(&pod);
    }
}

/// A quantity: parsed, checked for form, added, compared and printed.
pub fn quantity(text: &str) {
    let formed = crate::registry::quantities::well_formed(text);
    if let Some(q) = crate::quantity::Quantity::parse(text) {
        assert!(formed, "{text:?} parses but is not well formed");
        let printed = q.to_string();
        let again = crate::quantity::Quantity::parse(&printed);
        assert_eq!(again, Some(q), "{text:?} printed as {printed:?}");
        let mut sum = q;
        sum.add(&q);
        let _ = sum.cmp(&q);
    }
}

/// One of the three patch types (`kind % 3`) applied to a fixed Deployment.
pub fn patch(kind: u8, body: &[u8]) {
    let kinds =
        [crate::patch::Kind::Json, crate::patch::Kind::Merge, crate::patch::Kind::Strategic];
    let info = find("apps", "deployments");
    let root = crate::patch::root_type(info.group, info.version, info.kind);
    let original = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
            "annotations": {"a": "b"}, "finalizers": ["x"]},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "containers": [{"name": "app", "image": "nginx", "ports": [{"containerPort": 80}],
                    "env": [{"name": "A", "value": "1"}],
                    "resources": {"limits": {"cpu": "1"}}}],
                "volumes": [{"name": "v", "emptyDir": {}}],
                "tolerations": [{"key": "k", "operator": "Exists"}]}}}
    });
    let kind = kinds[usize::from(kind) % kinds.len()];
    if let Ok(patched) = crate::patch::apply(kind, info, root, &original, body) {
        let mut warnings = Vec::new();
        let _ = crate::registry::prepare_update(
            info,
            &original,
            patched,
            None,
            &BodyCheck::default(),
            &mut warnings,
        );
    }
}

/// A request body decoded as a client sends it — JSON, YAML or Kubernetes protobuf, by
/// its content type (`selector / 16 % 3`) — and prepared for create (typed decode,
/// defaults, validation), then as an update of a fixed object, for one of a few kinds
/// (`selector % 16`).
pub fn decode(selector: u8, body: &[u8]) {
    const MEDIA: [&str; 3] = ["application/json", "application/yaml", keelson_proto::MEDIA_TYPE];
    let kind = selector % 16;
    let media = MEDIA[usize::from(selector / 16) % MEDIA.len()];
    const KINDS: [(&str, &str); 8] = [
        ("", "pods"),
        ("", "configmaps"),
        ("apps", "deployments"),
        ("", "services"),
        ("", "resourcequotas"),
        ("", "limitranges"),
        ("", "persistentvolumeclaims"),
        ("rbac.authorization.k8s.io", "clusterroles"),
    ];
    let (group, plural) = KINDS[usize::from(kind) % KINDS.len()];
    let info = find(group, plural);
    let check = BodyCheck {
        mode: FieldValidation::Strict,
        duplicates: crate::registry::typed::duplicate_fields(body),
    };
    let Ok(parts) = http::Request::builder()
        .header(http::header::CONTENT_TYPE, media)
        .body(())
        .map(|r| r.into_parts().0)
    else {
        return;
    };
    let request = Request::new(parts, Bytes::copy_from_slice(body), User::default());
    let Ok(object) = request.json_body() else {
        return;
    };
    let namespace = info.namespaced().then_some("default");
    let mut warnings = Vec::new();
    let created =
        crate::registry::prepare_create(info, namespace, object.clone(), &check, &mut warnings);
    if let Ok(old) = created {
        let _ = crate::registry::prepare_update(info, &old, object, None, &check, &mut warnings);
    }
}

/// Server-side apply for one of a few kinds (`kind % 4`: ConfigMap, Deployment, Service,
/// a custom resource with a structural schema). `body` is JSON read twice: as a
/// `fieldsV1` field set (round-tripped, combined with another, and owned by a manager of
/// a live object that is then applied to) and as an apply configuration applied onto a
/// live object with another manager, with and without force, and as a create.
pub fn apply(kind: u8, body: &[u8]) {
    use crate::apply::fieldset::Set;
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let (info, live) = apply_kind(kind);
    // (a) The body as field set.
    let set = Set::from_fields_v1(&value);
    let written = set.to_fields_v1();
    let again = Set::from_fields_v1(&written);
    if !set.is_empty() {
        assert_eq!(again.members(), set.members(), "{value} written as {written}");
    }
    assert_eq!(again.to_fields_v1(), written, "{value} written as {written}");
    let members = set.members();
    for path in members.iter().take(64) {
        let _ = crate::apply::fieldset::describe(path);
    }
    let owned = Set::of_object(&live, crate::apply::schema::Ty::of_resource(info), false);
    let _ = set.union(&owned).difference(&owned.intersection(&set)).members();
    let mut claimed = live.clone();
    claimed["metadata"]["managedFields"] = json!([{"manager": "bob", "operation": "Update",
        "apiVersion": info.api_version(), "fieldsType": "FieldsV1", "fieldsV1": value}]);
    for force in [false, true] {
        let _ = crate::apply::apply(info, "", "alice", force, Some(&claimed), &live);
        let _ = crate::apply::apply(info, "", "kubectl", force, Some(&claimed), &live);
    }
    let mut updated = live.clone();
    crate::apply::track_update(info, "", "carol", Some(&claimed), &mut updated);
    // (b) The body as apply configuration, checked as the PATCH handler checks it.
    if crate::registry::check_type(info, &value).is_err()
        || crate::registry::typed::check_shape(info, &value).is_err()
    {
        return;
    }
    let _ = crate::apply::apply(info, "", "alice", false, None, &value);
    for force in [false, true] {
        for manager in ["alice", "bob", "kubectl"] {
            if let Ok(merged) = crate::apply::apply(info, "", manager, force, Some(&live), &value) {
                let mut warnings = Vec::new();
                let _ = crate::registry::prepare_update(
                    info,
                    &live,
                    merged,
                    None,
                    &BodyCheck::default(),
                    &mut warnings,
                );
            }
        }
    }
}

/// The resource and a live object with fields owned by `bob` (an update) and `kubectl`
/// (an apply, with the client-side annotation) for [`apply`].
fn apply_kind(kind: u8) -> (&'static ResourceInfo, Value) {
    let (info, object) = match kind % 4 {
        0 => (
            find("", "configmaps"),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
                "data": {"a": "1", "b": "2"}}),
        ),
        1 => (
            find("apps", "deployments"),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                        "containers": [{"name": "app", "image": "nginx",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}]}],
                        "tolerations": [{"key": "k", "operator": "Exists"}]}}}}),
        ),
        2 => (
            find("", "services"),
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"selector": {"app": "web"}, "type": "ClusterIP",
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}}),
        ),
        _ => (
            gadgets(),
            json!({"apiVersion": "example.com/v1", "kind": "Gadget",
                "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
                "spec": {"ports": [{"name": "web", "protocol": "TCP", "number": 80}],
                    "tags": ["a"], "args": ["x"], "selector": {"app": "g"},
                    "template": {"metadata": {"labels": {"t": "1"}}, "spec": {"size": 1}}}}),
        ),
    };
    let mut live = object.clone();
    let mut config = object.clone();
    config["metadata"].as_object_mut().map(|m| m.remove("labels"));
    live["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": config.to_string()});
    let Ok(mut live) = crate::apply::apply(info, "", "kubectl", false, None, &live) else {
        panic!("the live {} applies", info.kind);
    };
    let before = live.clone();
    live["metadata"]["labels"]["extra"] = json!("x");
    crate::apply::track_update(info, "", "bob", Some(&before), &mut live);
    (info, live)
}

/// A custom resource whose schema has a keyed list, a set, an atomic map, an atomic list
/// and an embedded resource.
fn gadgets() -> &'static ResourceInfo {
    static GADGETS: std::sync::OnceLock<&'static ResourceInfo> = std::sync::OnceLock::new();
    GADGETS.get_or_init(|| {
        let served = crate::crd::Served::default();
        served.set(&[gadget_crd(json!([]))]);
        served.registry().find("example.com", "v1", "gadgets").expect("gadgets are served")
    })
}

/// The CRD of [`gadgets`], with `rules` as the spec's `x-kubernetes-validations`.
fn gadget_crd(rules: Value) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"}, "spec": {"group": "example.com",
        "scope": "Namespaced", "names": {"plural": "gadgets", "kind": "Gadget",
            "singular": "gadget", "listKind": "GadgetList"},
        "versions": [{"name": "v1", "served": true, "storage": true,
            "schema": {"openAPIV3Schema": gadget_schema(rules)}}]},
        "status": {"conditions": [{"type": "Established", "status": "True"}]}})
}

fn gadget_schema(rules: Value) -> Value {
    json!({"type": "object", "properties": {"spec": {"type": "object",
        "x-kubernetes-validations": rules,
        "properties": {
            "replicas": {"type": "integer"},
            "name": {"type": "string"},
            "ports": {"type": "array", "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name", "protocol"],
                "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "protocol": {"type": "string"},
                    "number": {"type": "integer"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "args": {"type": "array", "items": {"type": "string"}},
            "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                "additionalProperties": {"type": "string"}},
            "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                "x-kubernetes-preserve-unknown-fields": true}}}}})
}

/// Whether a panic on this thread now would be caught by the CEL boundary and become a
/// compile or evaluation error (the `cel` target's panic hook lets those pass).
pub fn cel_catches_panics() -> bool {
    crate::cel::catching()
}

/// A CEL expression compiled (with the optional-syntax rewrite) and evaluated as an
/// admission policy's against `object`, `oldObject` and `request`, as a CRD rule's
/// against `self` and `oldSelf`, then as a CRD's `x-kubernetes-validations` rule (and
/// message expression): the CRD validated and a custom resource checked against it.
pub fn cel(expression: &str) {
    let spec = json!({"replicas": 3, "name": "web", "ports": [{"name": "web", "protocol": "TCP",
        "number": 80}], "tags": ["a", "b"], "args": ["x"], "selector": {"app": "g"}});
    let old_spec = json!({"replicas": 2, "name": "web", "ports": [], "tags": ["a"], "args": [],
        "selector": {}});
    let object = json!({"apiVersion": "example.com/v1", "kind": "Gadget",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": spec});
    let mut old_object = object.clone();
    old_object["spec"] = old_spec.clone();
    let request = json!({"operation": "UPDATE", "name": "web", "namespace": "default",
        "userInfo": {"username": "alice", "groups": ["system:authenticated"]}});
    let variables = json!({"limit": 5});
    if let Ok(compiled) = crate::cel::compile(expression) {
        let _ = compiled.evaluate(&[
            ("object", &object),
            ("oldObject", &old_object),
            ("request", &request),
            ("params", &Value::Null),
            ("variables", &variables),
        ]);
        let _ = compiled.holds(&[("self", &spec), ("oldSelf", &old_spec)]);
        let _ = compiled.selections(&["self", "oldSelf"]);
        let schema = gadget_schema(json!([]));
        let _ = crate::structural::validation::undefined_fields(
            &compiled,
            &schema["properties"]["spec"],
            false,
        );
    }
    let rules = json!([{"rule": expression, "messageExpression": expression},
        {"rule": "self.replicas > 5", "messageExpression": expression}]);
    let version = json!({"schema": gadget_schema(rules.clone())});
    let _ = crate::structural::validation::validate(&version, &object, Some(&old_object));
    let info = find("apiextensions.k8s.io", "customresourcedefinitions");
    let mut warnings = Vec::new();
    let _ = crate::registry::prepare_create(
        info,
        None,
        gadget_crd(rules),
        &BodyCheck::default(),
        &mut warnings,
    );
}

fn find(group: &str, plural: &str) -> &'static ResourceInfo {
    Registry::builtin()
        .resources()
        .find(|r| r.group == group && r.plural == plural)
        .unwrap_or_else(|| panic!("{group}/{plural} is registered"))
}

//! Entry points for the fuzz targets in `crates/apiserver/fuzz` (a workspace of its own,
//! outside CI): the decoders of the request path that need no running server — routing,
//! the query, selectors, quantities, the three patch types, and typed decoding and
//! validation through the registry. Not an API: each takes raw input and may only
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
    let described = crate::router::describe(registry, &req);
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
    if let Some(target) = target {
        let _ = crate::router::verb(&req.method, &target, req.flag("watch"));
        let _ = crate::rest::Filter::from_request(&req, target.info);
    }
    let _ = crate::rest::list_revision(&req, 100);
    if let Some(token) = req.param("continue") {
        let _ = crate::rest::decode_continue(token);
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
    let supported = ["spec.nodeName", "status.phase"];
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

/// A request body decoded as a client sends it and prepared for create (typed decode,
/// defaults, validation), then as an update of a fixed object, for one of a few kinds.
pub fn decode(kind: u8, body: &[u8]) {
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
    let Ok(object) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    if !object.is_object() {
        return;
    }
    let namespace = info.namespaced().then_some("default");
    let mut warnings = Vec::new();
    let created =
        crate::registry::prepare_create(info, namespace, object.clone(), &check, &mut warnings);
    if let Ok(old) = created {
        let _ = crate::registry::prepare_update(info, &old, object, None, &check, &mut warnings);
    }
}

fn find(group: &str, plural: &str) -> &'static ResourceInfo {
    Registry::builtin()
        .resources()
        .find(|r| r.group == group && r.plural == plural)
        .unwrap_or_else(|| panic!("{group}/{plural} is registered"))
}

//! CustomResourceDefinitions (`apiextensions.k8s.io/v1`): the resources they add to the
//! served registry, and what is done to their objects (upstream's
//! `apiextensions-apiserver`).
//!
//! [`Served`] is the dynamic overlay on [`Registry::builtin`]: [`controller`] follows
//! the CRD watch cache and, whenever the served set changes, builds a new [`Registry`]
//! with one [`ResourceInfo`] per served version of every established CRD. A
//! `ResourceInfo` is static data, so its strings, slices and the CRD version it was built
//! from are leaked (`Box::leak`), interned by content: a CRD that does not change leaks
//! nothing more, one that changes leaks its new description once. The registries
//! themselves are shared (`Arc`) and swapped: one that no request holds any more is
//! freed. Objects of a custom
//! resource are stored under `/registry/<group>/<plural>/` by the generic store, as
//! untyped JSON; [`schema`] prunes and defaults them and [`validation`] checks them
//! against the version's `openAPIV3Schema`.
//!
//! Must never hand out a registry that serves a resource whose CRD is not established.

pub mod controller;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use keelson_api::{Registry, ResourceInfo, Scope, StorageVersion, Subresource, Typed};
use serde_json::{Value, json};

/// Where CRDs are stored.
pub const PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

/// Verbs of a custom resource, in the order upstream's discovery lists them.
const VERBS: &[&str] =
    &["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"];
const SUBRESOURCE_VERBS: &[&str] = &["get", "patch", "update"];

/// The registry in effect: the built-in resources and the established custom ones.
pub struct Served {
    registry: RwLock<Arc<Registry>>,
    /// Each leaked custom resource by the description it was built from.
    interned: Mutex<HashMap<String, &'static ResourceInfo>>,
    /// The custom resources of `registry`, to tell whether a new set differs.
    current: Mutex<Vec<&'static ResourceInfo>>,
}

impl Default for Served {
    fn default() -> Self {
        Served {
            registry: RwLock::new(Arc::new(Registry::builtin().with_custom([]))),
            interned: Mutex::new(HashMap::new()),
            current: Mutex::new(Vec::new()),
        }
    }
}

impl Served {
    /// The registry requests are served from now; a request keeps the one it started
    /// with, and a replaced one is freed when the last such request ends.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Serves the resources of these CRDs (established ones only), replacing the last set.
    pub fn set(&self, crds: &[Value]) {
        let mut described: Vec<(String, Value)> = Vec::new();
        for crd in crds.iter().filter(|c| is_established(c)) {
            described.extend(describe(crd));
        }
        // By group, then versions by priority (preferred first), then plural.
        described.sort_by(|(_, a), (_, b)| {
            let key = |d: &Value| {
                (
                    d["group"].as_str().unwrap_or("").to_owned(),
                    version_rank(d["version"].as_str().unwrap_or("")),
                    d["plural"].as_str().unwrap_or("").to_owned(),
                )
            };
            key(a).cmp(&key(b))
        });
        let infos: Vec<&'static ResourceInfo> = {
            let mut interned = self.interned.lock().unwrap_or_else(|e| e.into_inner());
            described
                .into_iter()
                .map(|(key, d)| *interned.entry(key).or_insert_with(|| leak_info(d)))
                .collect()
        };
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let unchanged = current.len() == infos.len()
            && current.iter().zip(&infos).all(|(a, b)| std::ptr::eq(*a, *b));
        if unchanged {
            return;
        }
        let registry = Arc::new(Registry::builtin().with_custom(infos.iter().copied()));
        *self.registry.write().unwrap_or_else(|e| e.into_inner()) = registry;
        *current = infos;
    }
}

/// Whether the CRD's `Established` condition is true and it is not gone.
pub fn is_established(crd: &Value) -> bool {
    crate::registry::validation::crd::is_established(crd)
}

/// The status of the CRD's condition of this type.
pub fn condition<'a>(crd: &'a Value, kind: &str) -> Option<&'a str> {
    crd["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str())
}

/// One description per served version: what a [`ResourceInfo`] is built from, and its
/// interning key.
fn describe(crd: &Value) -> Vec<(String, Value)> {
    let spec = &crd["spec"];
    let names = &crd["status"]["acceptedNames"];
    let names = if names["plural"].is_string() { names } else { &spec["names"] };
    let kind = names["kind"].as_str().unwrap_or("");
    let storage_version = spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["storage"] == json!(true))
        .map(|v| v["name"].clone())
        .unwrap_or(Value::Null);
    let mut out = Vec::new();
    for version in spec["versions"].as_array().into_iter().flatten() {
        if version["served"] != json!(true) {
            continue;
        }
        let d = json!({
            "crd": crd["metadata"]["name"],
            "group": spec["group"],
            "version": version["name"],
            "kind": kind,
            "listKind": names["listKind"].as_str().map(str::to_owned).unwrap_or_else(|| format!("{kind}List")),
            "plural": names["plural"],
            "singular": names["singular"].as_str().filter(|s| !s.is_empty()).map(str::to_owned).unwrap_or_else(|| kind.to_lowercase()),
            "shortNames": names["shortNames"],
            "categories": names["categories"],
            "scope": spec["scope"],
            "storage": version["storage"],
            "storageVersion": storage_version,
            "schema": version["schema"]["openAPIV3Schema"],
            "subresources": version["subresources"],
            "additionalPrinterColumns": version["additionalPrinterColumns"],
            "selectableFields": version["selectableFields"],
            "deprecated": version["deprecated"],
            "deprecationWarning": version["deprecationWarning"],
            "warning": deprecation_warning(spec, version, kind),
            "preserveUnknownFields": spec["preserveUnknownFields"],
            "terminating": crd["metadata"].get("deletionTimestamp").is_some(),
            "hasDefaults": version["schema"]["openAPIV3Schema"].to_string().contains("\"default\":"),
        });
        out.push((d.to_string(), d));
    }
    out
}

/// The warning upstream's CRD handler adds to every request to a deprecated version:
/// the version's `deprecationWarning`, else `defaultDeprecationWarning`'s, which names
/// the newest served version that is not deprecated and ranks above this one.
fn deprecation_warning(spec: &Value, version: &Value, kind: &str) -> Value {
    if version["deprecated"] != json!(true) {
        return Value::Null;
    }
    if let Some(warning) = version["deprecationWarning"].as_str() {
        return json!(warning);
    }
    let group = spec["group"].as_str().unwrap_or("");
    let name = version["name"].as_str().unwrap_or("");
    let newer = spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"] == json!(true) && v["deprecated"] != json!(true))
        .filter_map(|v| v["name"].as_str())
        .filter(|v| version_rank(v) < version_rank(name))
        .min_by_key(|v| version_rank(v));
    match newer {
        Some(newer) => {
            json!(format!("{group}/{name} {kind} is deprecated; use {group}/{newer} {kind}"))
        }
        None => json!(format!("{group}/{name} {kind} is deprecated")),
    }
}

/// The deprecation warning of a custom resource's version, if it is deprecated.
pub fn warning(info: &ResourceInfo) -> Option<&'static str> {
    info.custom.and_then(|d| d["warning"].as_str())
}

fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

fn leak_strs(v: &Value) -> &'static [&'static str] {
    let items: Vec<&'static str> =
        v.as_array().into_iter().flatten().filter_map(Value::as_str).map(leak_str).collect();
    Box::leak(items.into_boxed_slice())
}

fn leak_info(d: Value) -> &'static ResourceInfo {
    let d: &'static Value = Box::leak(Box::new(d));
    let s = |field: &str| leak_str(d[field].as_str().unwrap_or(""));
    let mut subresources = Vec::new();
    if d["subresources"]["scale"].is_object() {
        subresources.push(Subresource {
            name: "scale",
            kind: "Scale",
            group: "autoscaling",
            version: "v1",
            verbs: SUBRESOURCE_VERBS,
        });
    }
    if d["subresources"]["status"].is_object() {
        subresources.push(Subresource {
            name: "status",
            kind: s("kind"),
            group: "",
            version: "",
            verbs: SUBRESOURCE_VERBS,
        });
    }
    Box::leak(Box::new(ResourceInfo {
        group: s("group"),
        version: s("version"),
        kind: s("kind"),
        plural: s("plural"),
        singular: s("singular"),
        scope: if d["scope"] == "Cluster" { Scope::Cluster } else { Scope::Namespaced },
        verbs: VERBS,
        short_names: leak_strs(&d["shortNames"]),
        categories: leak_strs(&d["categories"]),
        subresources: Box::leak(subresources.into_boxed_slice()),
        typed: Typed::untyped(),
        custom: Some(d),
        storage_version: Some(StorageVersion {
            group: s("group"),
            version: s("storageVersion"),
            kind: s("kind"),
        }),
    }))
}

/// Upstream's version priority (`version.CompareKubeAwareVersionStrings`) as a sort key:
/// GA before beta before alpha, higher numbers first, then anything else by name.
pub fn version_rank(version: &str) -> (u8, i64, i64, String) {
    let parse = || -> Option<(u8, i64, i64)> {
        let rest = version.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((0, -major, 0));
        }
        for (stage, name) in [(1, "beta"), (2, "alpha")] {
            if let Some(n) = tail.strip_prefix(name) {
                let minor: i64 = n.parse().ok()?;
                return Some((stage, -major, -minor));
            }
        }
        None
    };
    match parse() {
        Some((stage, major, minor)) => (stage, major, minor, String::new()),
        None => (3, 0, 0, version.to_owned()),
    }
}

/// Whether the resource is a custom one whose CRD is being deleted (no new objects).
pub fn terminating(info: &ResourceInfo) -> bool {
    info.custom.is_some_and(|v| v["terminating"] == json!(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn established_crds_are_served_and_stored_in_their_storage_version() {
        let crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com",
            "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [
                {"name": "v1beta1", "served": true, "storage": false},
                {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
                {"name": "v1alpha1", "served": false, "storage": false}]},
            "status": {"conditions": [{"type": "Established", "status": "True"}]}});
        let served = Served::default();
        served.set(std::slice::from_ref(&crd));
        let registry = served.registry();
        let versions = &registry
            .groups()
            .into_iter()
            .find(|g| g.name == "example.com")
            .expect("group")
            .versions;
        assert_eq!(versions, &["v1", "v1beta1"]);
        let beta = registry.find("example.com", "v1beta1", "widgets").expect("v1beta1 served");
        assert_eq!(beta.storage_prefix(), "/registry/example.com/widgets/");
        assert!(registry.find("example.com", "v1alpha1", "widgets").is_none());
        assert!(
            registry
                .find("example.com", "v1", "widgets")
                .expect("v1")
                .subresource("status")
                .is_some()
        );
        let stored = crate::registry::encode(
            beta,
            &json!({"apiVersion": "example.com/v1beta1", "metadata": {"name": "a"}}),
        )
        .expect("encodes");
        let stored: Value = serde_json::from_slice(&stored).expect("json");
        assert_eq!(stored["apiVersion"], "example.com/v1");
        // The same CRD again serves the same (interned) resources.
        served.set(std::slice::from_ref(&crd));
        assert!(Arc::ptr_eq(&registry, &served.registry()));
        // Not established: not served, and the replaced registry is freed once no
        // request holds it (it used to be leaked at every change).
        let replaced = Arc::downgrade(&registry);
        drop(registry);
        served.set(&[]);
        assert!(served.registry().find("example.com", "v1", "widgets").is_none());
        assert!(replaced.upgrade().is_none());
    }

    #[test]
    fn versions_sort_as_upstream_prioritizes_them() {
        let mut versions = ["v1alpha1", "foo", "v2", "v1beta2", "v1", "v1beta1", "v10"];
        versions.sort_by_key(|v| version_rank(v));
        assert_eq!(versions, ["v10", "v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }
}

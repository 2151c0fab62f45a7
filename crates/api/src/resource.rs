//! What Keelson knows about one served resource: its names, scope, verbs and subresources.
//!
//! A [`ResourceInfo`] is plain static data, shaped like one entry of a Kubernetes discovery
//! document (`APIResource`) plus the etcd-style key prefix the resource is stored under.
//! This module must never hold behaviour that differs per resource (validation, defaulting,
//! printing): that belongs to the resource's strategy in the API server.

/// Whether objects of a resource live inside a namespace or at cluster level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Objects live in a namespace: `/api/v1/namespaces/{ns}/pods/{name}`.
    Namespaced,
    /// Objects live at cluster level: `/api/v1/nodes/{name}`.
    Cluster,
}

/// One resource (one group, version and plural) as upstream discovery reports it.
///
/// Group, version, kind, plural and scope of the built-in entries come from the
/// `k8s_openapi::Resource` implementations, so they cannot drift from the types the rest of
/// Keelson (de)serializes; the other fields are upstream's discovery data written down by hand.
#[derive(Clone, Debug)]
pub struct ResourceInfo {
    /// API group, `""` for the core (legacy) group.
    pub group: &'static str,
    /// API version within the group: `"v1"`, `"v2"`...
    pub version: &'static str,
    /// Kind of the objects: `"Pod"`.
    pub kind: &'static str,
    /// Plural name, the URL path segment: `"pods"`.
    pub plural: &'static str,
    /// Singular name, the lowercase kind: `"pod"`.
    pub singular: &'static str,
    /// Namespaced or cluster-scoped.
    pub scope: Scope,
    /// Verbs upstream discovery reports for the resource, sorted as upstream sorts them.
    pub verbs: &'static [&'static str],
    /// Short names kubectl accepts (`"po"`), in upstream's order.
    pub short_names: &'static [&'static str],
    /// Categories the resource belongs to (`"all"`, `"api-extensions"`).
    pub categories: &'static [&'static str],
    /// Subresources (`status`, `scale`, `log`...) sorted by name, as upstream lists them.
    pub subresources: &'static [Subresource],
    /// What the Rust type of the resource's objects can do with them.
    pub typed: Typed,
    /// For a custom resource, its CustomResourceDefinition's version as the API server
    /// built it (schema, subresources, printer columns); `None` for built-in resources.
    pub custom: Option<&'static serde_json::Value>,
    /// The group, version and kind objects are stored as (upstream's storage version,
    /// which discovery's `storageVersionHash` is made of); `None` for resources that are
    /// never stored (bindings, component statuses, the review kinds).
    pub storage_version: Option<StorageVersion>,
}

/// A resource's storage version: what its objects are converted to before they are
/// stored, whichever version they are read or written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageVersion {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
}

/// Operations that need the resource's Rust type (from `k8s-openapi`), as plain function
/// pointers so that [`ResourceInfo`] stays static data.
#[derive(Clone, Copy)]
pub struct Typed {
    /// Decodes a JSON object into the type and encodes it again: the object as the type
    /// sees it (fields it does not know dropped), or where and why it does not fit.
    pub normalize: fn(&serde_json::Value) -> Result<serde_json::Value, TypeError>,
    /// The type's JSON schema, registered with all it refers to in the generator.
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

impl std::fmt::Debug for Typed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Typed")
    }
}

impl Typed {
    /// The operations of a resource without a Rust type (custom resources): any JSON
    /// object passes as it is, and the schema says only that it is an object.
    pub const fn untyped() -> Self {
        Typed { normalize: untyped_normalize, schema: untyped_schema }
    }

    /// The operations of `T`.
    pub const fn of<T>() -> Self
    where
        T: serde::Serialize + serde::de::DeserializeOwned + schemars::JsonSchema,
    {
        Typed { normalize: normalize::<T>, schema: schema::<T> }
    }
}

/// Why a JSON object does not fit its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeError {
    /// Where, as a field path from the object's root (`spec.containers[0].name`).
    pub path: String,
    /// A required field is absent (rather than a value of the wrong type).
    pub missing: bool,
    /// serde's description.
    pub message: String,
}

fn normalize<T: serde::Serialize + serde::de::DeserializeOwned>(
    value: &serde_json::Value,
) -> Result<serde_json::Value, TypeError> {
    let typed: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = e.path().to_string().replace(".[", "[");
        let message = e.inner().to_string();
        // serde names a missing field in its message; the path points at its parent.
        let missing = message.starts_with("missing field `");
        if missing && let Some(field) = message.split('`').nth(1) {
            path = if path == "." { field.to_owned() } else { format!("{path}.{field}") };
        }
        TypeError { path, missing, message }
    })?;
    serde_json::to_value(&typed).map_err(|e| TypeError {
        path: String::new(),
        missing: false,
        message: e.to_string(),
    })
}

fn untyped_normalize(value: &serde_json::Value) -> Result<serde_json::Value, TypeError> {
    if value.is_object() {
        Ok(value.clone())
    } else {
        Err(TypeError { path: ".".into(), missing: false, message: "expected an object".into() })
    }
}

fn untyped_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object" })
}

fn schema<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<T>()
}

/// A subresource such as `pods/status` or `deployments/scale`.
///
/// `group` and `version` follow upstream discovery: both are empty when the subresource's
/// kind is in the parent's own group-version (`pods/status` is a `Pod`, `pods/binding` a core
/// `Binding`), and name the other group-version otherwise (`deployments/scale` is an
/// `autoscaling/v1` `Scale`, `pods/eviction` a `policy/v1` `Eviction`).
#[derive(Clone, Debug)]
pub struct Subresource {
    /// Name after the object's name in the URL: `"status"`.
    pub name: &'static str,
    /// Kind of the body the subresource takes or returns: `"Pod"`, `"Scale"`, `"PodExecOptions"`.
    pub kind: &'static str,
    /// Group of `kind` when it differs from the parent's group-version, else `""`.
    pub group: &'static str,
    /// Version of `kind` when it differs from the parent's group-version, else `""`.
    pub version: &'static str,
    /// Verbs upstream discovery reports for the subresource, sorted.
    pub verbs: &'static [&'static str],
}

impl ResourceInfo {
    /// The `apiVersion` of objects of this resource: `"v1"` or `"apps/v1"`.
    pub fn api_version(&self) -> String {
        group_version(self.group, self.version)
    }

    /// The group-version this resource is served under; the same string as [`Self::api_version`].
    pub fn group_version(&self) -> String {
        self.api_version()
    }

    /// Kind of the list type: `"PodList"`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether this is a custom resource, served from a CustomResourceDefinition.
    pub fn is_custom(&self) -> bool {
        self.custom.is_some()
    }

    /// Whether objects live in a namespace.
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// Whether upstream discovery lists `verb` for the resource itself.
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// The subresource called `name`, if the resource has one.
    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// The etcd-style key prefix objects of this resource are stored under, ending in `/`.
    ///
    /// Keys are `<prefix><namespace>/<name>` for namespaced resources and `<prefix><name>`
    /// otherwise. The layout is kube-apiserver's, as its etcd storage-path integration test
    /// pins it down (`test/integration/etcd/data.go`):
    ///
    /// - every resource served by kube-apiserver itself, core or not, is stored under
    ///   `/registry/<plural>/` without its group (`/registry/pods/`, `/registry/deployments/`,
    ///   `/registry/clusterroles/`), so versions and groups that share storage share keys
    ///   (`autoscaling/v1` and `v2` HPAs, core and `events.k8s.io` events);
    /// - five keep historical names: nodes (`/registry/minions/`), services
    ///   (`/registry/services/specs/`), endpoints (`/registry/services/endpoints/`),
    ///   replication controllers (`/registry/controllers/`) and ingresses (`/registry/ingress/`);
    /// - resources of the extension and aggregation servers are stored under their group:
    ///   `/registry/apiextensions.k8s.io/customresourcedefinitions/` and
    ///   `/registry/apiregistration.k8s.io/apiservices/` (as custom resources are, under
    ///   `/registry/<group>/<plural>/`).
    ///
    /// Resources that are never stored (bindings, component statuses, the review kinds) get a
    /// prefix by the same rule; nothing should be written under it.
    pub fn storage_prefix(&self) -> String {
        let legacy = match (self.group, self.plural) {
            ("", "nodes") => Some("minions"),
            ("", "services") => Some("services/specs"),
            ("", "endpoints") => Some("services/endpoints"),
            ("", "replicationcontrollers") => Some("controllers"),
            ("networking.k8s.io", "ingresses") => Some("ingress"),
            _ => None,
        };
        match (legacy, self.group) {
            _ if self.custom.is_some() => format!("/registry/{}/{}/", self.group, self.plural),
            (Some(path), _) => format!("/registry/{path}/"),
            (None, "apiextensions.k8s.io" | "apiregistration.k8s.io") => {
                format!("/registry/{}/{}/", self.group, self.plural)
            }
            (None, _) => format!("/registry/{}/", self.plural),
        }
    }
}

impl Subresource {
    /// The `apiVersion` of the subresource's kind, given the resource it belongs to:
    /// `"autoscaling/v1"` for `deployments/scale`, `"v1"` for `pods/status`.
    pub fn api_version(&self, parent: &ResourceInfo) -> String {
        if self.version.is_empty() {
            parent.api_version()
        } else {
            group_version(self.group, self.version)
        }
    }
}

/// `"v1"` for the core group, `"<group>/<version>"` otherwise.
pub(crate) fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") }
}

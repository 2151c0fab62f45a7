//! What server-side apply knows of a value's type, whatever it comes from: the generated
//! markers of the built-in types (`keelson_api::patch_meta`) or a CustomResourceDefinition
//! version's structural schema (`x-kubernetes-list-type`, `-list-map-keys`, `-map-type`).
//! Both are read through [`Ty`], so ownership and merging are one piece of code for both
//! (upstream's structured-merge-diff reads both as one schema language).

use keelson_api::patch_meta::{FieldMeta, ListType, Shape as Declared, StructType, TypeMeta};
use serde_json::Value;

/// The type of a value, as far as known.
#[derive(Clone, Copy, Debug)]
pub enum Ty {
    /// Nothing known (a field no schema declares, or under
    /// `x-kubernetes-preserve-unknown-fields`): objects are granular and lists atomic, as
    /// upstream treats deduced types.
    Unknown,
    /// A built-in object type.
    Object(&'static TypeMeta),
    /// The value of a built-in type's field.
    Field(&'static FieldMeta),
    /// A custom resource: its version's `openAPIV3Schema`, whose `metadata` is ObjectMeta
    /// whatever the schema says of it.
    Resource(&'static Value),
    /// A node of a structural schema.
    Schema(&'static Value),
}

/// How a value is owned and merged.
#[derive(Debug, PartialEq, Eq)]
pub enum Shape {
    /// Replaced whole: scalars, unmarked lists, atomic maps and structs.
    Atomic,
    /// An object (struct or map) owned and merged field by field.
    Granular,
    /// A list of objects identified by these fields (`x-kubernetes-list-type: map`).
    Keyed(Vec<&'static str>),
    /// A list of distinct scalars (`x-kubernetes-list-type: set`).
    Set,
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

impl Ty {
    /// The type of a resource's objects: the CRD version's schema for a custom resource,
    /// the generated type of a built-in kind, else nothing.
    pub fn of_resource(info: &keelson_api::ResourceInfo) -> Ty {
        if let Some(custom) = info.custom {
            return match &custom["schema"] {
                schema @ Value::Object(_) => Ty::Resource(schema),
                _ => Ty::Unknown,
            };
        }
        keelson_api::patch_meta::kind_type(info.group, info.version, info.kind)
            .map_or(Ty::Unknown, Ty::Object)
    }

    /// How `value`, of this type, is owned and merged.
    pub fn shape(self, value: &Value) -> Shape {
        let by_value = || if value.is_object() { Shape::Granular } else { Shape::Atomic };
        match self {
            Ty::Unknown => by_value(),
            Ty::Object(t) => match t.struct_type {
                Some(StructType::Atomic) => Shape::Atomic,
                _ => by_value(),
            },
            Ty::Field(f) if f.is_atomic() => Shape::Atomic,
            Ty::Field(f) => match (f.shape, f.list_type) {
                (Declared::List, Some(ListType::Map)) => Shape::Keyed(f.list_map_keys.to_vec()),
                (Declared::List, Some(ListType::Set)) => Shape::Set,
                (Declared::List, _) => Shape::Atomic,
                _ => by_value(),
            },
            Ty::Resource(_) => by_value(),
            Ty::Schema(s) => {
                if value.is_array() {
                    return match s["x-kubernetes-list-type"].as_str() {
                        Some("map") => Shape::Keyed(
                            s["x-kubernetes-list-map-keys"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(Value::as_str)
                                .collect(),
                        ),
                        Some("set") => Shape::Set,
                        _ => Shape::Atomic,
                    };
                }
                if s["x-kubernetes-map-type"] == "atomic" {
                    return Shape::Atomic;
                }
                by_value()
            }
        }
    }

    /// The type of field `name` of an object (or of the values of a map) of this type.
    pub fn field(self, name: &str) -> Ty {
        match self {
            Ty::Unknown => Ty::Unknown,
            Ty::Object(t) => t.field(name).map_or(Ty::Unknown, Ty::Field),
            Ty::Field(f) => match (f.shape, f.value_type()) {
                (Declared::Map, Some(t)) => Ty::Object(t),
                (Declared::One, Some(t)) => Ty::Object(t).field(name),
                _ => Ty::Unknown,
            },
            Ty::Resource(s) | Ty::Schema(s) => {
                let embedded = s["x-kubernetes-embedded-resource"] == true;
                if name == "metadata" && (embedded || matches!(self, Ty::Resource(_))) {
                    return keelson_api::patch_meta::type_named(OBJECT_META)
                        .map_or(Ty::Unknown, Ty::Object);
                }
                match s["properties"].get(name) {
                    Some(child) => Ty::Schema(child),
                    None => match &s["additionalProperties"] {
                        child @ Value::Object(_) => Ty::Schema(child),
                        _ => Ty::Unknown,
                    },
                }
            }
        }
    }

    /// What a key field missing from an item of this type (the item type of a keyed list)
    /// counts as in the item's key: the field's schema `default`, as structured-merge-diff's
    /// `getAssociativeKeyDefault` reads it; `None` leaves the field out of the key. So
    /// `{containerPort: 80}` is the item `k:{"containerPort":80,"protocol":"TCP"}`, the
    /// one the server's defaults make of it.
    pub fn key_default(self, key: &str) -> Option<Value> {
        match self {
            Ty::Object(t) => builtin_key_default(t.name, key),
            Ty::Schema(s) => s["properties"][key].get("default").cloned(),
            _ => None,
        }
    }

    /// The type of the items of a list of this type.
    pub fn items(self) -> Ty {
        match self {
            Ty::Field(f) => f.value_type().map_or(Ty::Unknown, Ty::Object),
            Ty::Schema(s) => match &s["items"] {
                items @ Value::Object(_) => Ty::Schema(items),
                _ => Ty::Unknown,
            },
            _ => Ty::Unknown,
        }
    }
}

/// The `default` of a key field of a built-in keyed list's item type in upstream's
/// OpenAPI schemas (1.34): `""` (openapi-gen's default of a non-pointer string) but for
/// these.
fn builtin_key_default(item_type: &str, key: &str) -> Option<Value> {
    const PORTS: [&str; 2] = ["io.k8s.api.core.v1.ContainerPort", "io.k8s.api.core.v1.ServicePort"];
    /// Key fields with no default: missing, they are left out of the key.
    const NONE: &[(&str, &str)] = &[
        ("io.k8s.api.core.v1.ObjectReference", "name"),
        ("io.k8s.api.flowcontrol.v1.FlowSchemaCondition", "type"),
        ("io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationCondition", "type"),
        ("io.k8s.api.apiserverinternal.v1alpha1.ServerStorageVersion", "apiServerID"),
        ("io.k8s.api.resource.v1.AllocatedDeviceStatus", "shareID"),
        ("io.k8s.api.resource.v1beta1.AllocatedDeviceStatus", "shareID"),
        ("io.k8s.api.resource.v1beta2.AllocatedDeviceStatus", "shareID"),
    ];
    match key {
        "protocol" if PORTS.contains(&item_type) => Some(Value::from("TCP")),
        "containerPort" | "port" if PORTS.contains(&item_type) => Some(Value::from(0)),
        _ if NONE.contains(&(item_type, key)) => None,
        _ => Some(Value::from("")),
    }
}

//! The protobuf schema of the built-in Kubernetes types, as the decoder needs it: for
//! each message, its fields by number with their JSON names, wire types and how Go
//! declares them (pointer, `omitempty`, inline), and the kinds that name messages.
//!
//! The data lives in `generated.rs`, written by `crates/proto/generate` (see its
//! README); this module holds the types and lookups. It must never be edited by hand
//! to change a field: regenerate instead, so the table stays one Kubernetes version.

#[rustfmt::skip]
mod generated;

use generated::KINDS;
pub(crate) use generated::MESSAGES;

/// Index into [`MESSAGES`].
pub(crate) type MessageId = u16;

pub(crate) struct Message {
    /// Full proto name, e.g. `k8s.io.api.core.v1.Pod`.
    pub name: &'static str,
    pub special: Special,
    /// Sorted by number.
    pub fields: &'static [Field],
}

/// Messages whose JSON form is not an object of their fields: Go gives them a custom
/// `MarshalJSON`, and the decoder a hand-written rule (`special.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Special {
    None,
    /// meta/v1 Time: RFC 3339 in seconds, `null` when zero.
    Time,
    /// meta/v1 MicroTime: RFC 3339 with microseconds, `null` when zero.
    MicroTime,
    /// meta/v1 Duration: Go's duration string (`1h0m0s`).
    Duration,
    /// resource.Quantity: its string.
    Quantity,
    /// intstr.IntOrString: a number or a string.
    IntOrString,
    /// runtime.RawExtension: the JSON (or nested protobuf object) it holds.
    RawExtension,
    /// meta/v1 FieldsV1, apiextensions JSON: the JSON document in field 1.
    RawJson,
    /// apiextensions JSONSchemaPropsOrArray: a schema or an array of schemas.
    SchemaOrArray,
    /// apiextensions JSONSchemaPropsOrBool: a schema or a boolean.
    SchemaOrBool,
    /// apiextensions JSONSchemaPropsOrStringArray: a schema or an array of strings.
    SchemaOrStringArray,
    /// A Go `[]string` type (ExtraValue, Verbs) wrapped as `{repeated string items = 1}`.
    StringList,
}

pub(crate) struct Field {
    pub number: u32,
    pub json: &'static str,
    pub ty: Ty,
    pub card: Card,
    /// [`GO`], [`PTR`], [`OMIT`], [`INLINE`].
    pub flags: u8,
}

impl Field {
    pub(crate) const fn new(
        number: u32,
        json: &'static str,
        ty: Ty,
        card: Card,
        flags: u8,
    ) -> Field {
        Field { number, json, ty, card, flags }
    }

    /// Go declares the field as a value (not a pointer), so it always has a value:
    /// printed even when absent from the wire, unless `omitempty` drops a zero.
    pub(crate) fn is_value(&self) -> bool {
        self.flags & GO != 0 && self.flags & PTR == 0
    }

    pub(crate) fn omitempty(&self) -> bool {
        self.flags & OMIT != 0
    }

    pub(crate) fn inline(&self) -> bool {
        self.flags & INLINE != 0
    }
}

/// How Go declares the field is known (from the Go struct).
pub(crate) const GO: u8 = 1;
/// A pointer: a present zero value is printed.
pub(crate) const PTR: u8 = 2;
/// `omitempty`: a zero scalar or an empty list, map or byte string is dropped.
pub(crate) const OMIT: u8 = 4;
/// Embedded or `json:",inline"`: its fields go into the enclosing object.
pub(crate) const INLINE: u8 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    Str,
    Bytes,
    Bool,
    I32,
    I64,
    F64,
    Msg(MessageId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Card {
    One,
    Rep,
    /// `map<string, ty>`.
    Map,
}

impl Message {
    pub(crate) fn field(&self, number: u32) -> Option<usize> {
        self.fields.binary_search_by_key(&number, |f| f.number).ok()
    }
}

pub(crate) fn message(id: MessageId) -> &'static Message {
    &MESSAGES[usize::from(id)]
}

/// Kinds of meta/v1 that every group version registers (`metav1.AddToGroupVersion`):
/// a body may name them with any apiVersion.
const META_KINDS: [&str; 6] = [
    "CreateOptions",
    "DeleteOptions",
    "GetOptions",
    "ListOptions",
    "PatchOptions",
    "UpdateOptions",
];

/// The message of an object of this apiVersion and kind.
pub(crate) fn kind(api_version: &str, kind: &str) -> Option<MessageId> {
    let find = |v: &str| {
        KINDS.binary_search_by(|(av, k, _)| (*av, *k).cmp(&(v, kind))).ok().map(|i| KINDS[i].2)
    };
    find(api_version)
        .or_else(|| META_KINDS.contains(&kind).then(|| find("meta.k8s.io/v1")).flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_consistent() {
        for pair in KINDS.windows(2) {
            assert!(
                (pair[0].0, pair[0].1) < (pair[1].0, pair[1].1),
                "KINDS not sorted at {:?}",
                pair[1]
            );
        }
        for m in &MESSAGES {
            for pair in m.fields.windows(2) {
                assert!(pair[0].number < pair[1].number, "{} fields not sorted", m.name);
            }
            for f in m.fields {
                if let Ty::Msg(t) = f.ty {
                    assert!(
                        usize::from(t) < MESSAGES.len(),
                        "{}.{} names no message",
                        m.name,
                        f.json
                    );
                }
            }
        }
    }

    #[test]
    fn finds_kinds() {
        let pod = kind("v1", "Pod").map(|id| message(id).name);
        assert_eq!(pod, Some("k8s.io.api.core.v1.Pod"));
        let deployment = kind("apps/v1", "Deployment").map(|id| message(id).name);
        assert_eq!(deployment, Some("k8s.io.api.apps.v1.Deployment"));
        let options = kind("policy/v1", "DeleteOptions").map(|id| message(id).name);
        assert_eq!(options, Some("k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions"));
        assert_eq!(kind("v1", "NoSuchKind"), None);
        assert_eq!(kind("example.com/v1", "Pod"), None);
    }
}

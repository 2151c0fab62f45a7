//! Unit tests of the decoder on hand-encoded messages: Go's printing rules, each
//! special type, and malformed input. Field numbers are upstream's `generated.proto`.

use serde_json::{Value, json};

use crate::decode::Decoder;
use crate::schema::{MESSAGES, MessageId};
use crate::{Error, MAGIC, decode, is_known_kind, type_meta};

/// A protobuf message under construction.
#[derive(Clone, Default)]
struct Pb(Vec<u8>);

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Pb {
    fn new() -> Pb {
        Pb::default()
    }
    fn key(mut self, number: u32, wire_type: u64) -> Pb {
        varint(u64::from(number) << 3 | wire_type, &mut self.0);
        self
    }
    fn int(self, number: u32, v: i64) -> Pb {
        let mut pb = self.key(number, 0);
        varint(v as u64, &mut pb.0);
        pb
    }
    fn fixed64(self, number: u32, bits: u64) -> Pb {
        let mut pb = self.key(number, 1);
        pb.0.extend(bits.to_le_bytes());
        pb
    }
    fn bytes(self, number: u32, b: &[u8]) -> Pb {
        let mut pb = self.key(number, 2);
        varint(b.len() as u64, &mut pb.0);
        pb.0.extend(b);
        pb
    }
    fn str(self, number: u32, s: &str) -> Pb {
        self.bytes(number, s.as_bytes())
    }
    fn msg(self, number: u32, m: Pb) -> Pb {
        self.bytes(number, &m.0)
    }
    /// A map entry `{key = 1, value = 2}`.
    fn entry(self, number: u32, key: &str, value: Option<Pb>) -> Pb {
        let mut e = Pb::new().str(1, key);
        if let Some(v) = value {
            e.0.extend(v.0);
        }
        self.msg(number, e)
    }
}

/// A whole body: magic, then runtime.Unknown.
fn body(api_version: &str, kind: &str, raw: Pb) -> Vec<u8> {
    let unknown = Pb::new().msg(1, Pb::new().str(1, api_version).str(2, kind)).msg(2, raw);
    [MAGIC, &unknown.0].concat()
}

fn id(name: &str) -> MessageId {
    let full = |m: &&crate::schema::Message| {
        m.name.rsplit('.').next() == Some(name) || m.name.ends_with(name)
    };
    let i = MESSAGES.iter().position(|m| full(&m)).unwrap_or_else(|| panic!("no message {name}"));
    MessageId::try_from(i).unwrap()
}

fn decode_as(name: &str, pb: Pb) -> Result<Value, Error> {
    Decoder::new(pb.0.len()).message(id(name), &pb.0)
}

#[test]
fn value_fields_follow_go_omitempty_and_pointers_keep_zeros() {
    // Go writes every non-pointer field; kubectl's Container has name "" and so on.
    let container = Pb::new().str(1, "").str(2, "").str(5, "/w").int(16, 0).str(13, "");
    assert_eq!(
        decode_as("core.v1.Container", container).unwrap(),
        json!({"name": "", "workingDir": "/w", "resources": {}})
    );
    let security = Pb::new().int(2, 0).int(3, 0);
    assert_eq!(
        decode_as("core.v1.PodSecurityContext", security).unwrap(),
        json!({"runAsUser": 0, "runAsNonRoot": false})
    );
}

#[test]
fn absent_values_print_as_go_zero_values() {
    let pod = decode(&body("v1", "Pod", Pb::new().msg(1, Pb::new().str(1, "p")))).unwrap();
    assert_eq!(
        pod,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "creationTimestamp": null},
               "spec": {"containers": null}, "status": {}})
    );
}

#[test]
fn times() {
    let meta = Pb::new().msg(8, Pb::new().int(1, 1_700_000_000).int(2, 5)).msg(9, Pb::new());
    assert_eq!(
        decode_as("meta.v1.ObjectMeta", meta).unwrap(),
        json!({"creationTimestamp": "2023-11-14T22:13:20Z", "deletionTimestamp": null})
    );
    let event = Pb::new().msg(2, Pb::new().int(1, 1_700_000_000).int(2, 123_456_789));
    assert_eq!(
        decode_as("events.v1.Event", event).unwrap()["eventTime"],
        "2023-11-14T22:13:20.123456Z"
    );
    let lease = Pb::new().str(1, "").msg(4, Pb::new().int(1, 0));
    assert_eq!(
        decode_as("coordination.v1.LeaseSpec", lease).unwrap(),
        json!({"holderIdentity": "", "renewTime": "1970-01-01T00:00:00.000000Z"})
    );
}

#[test]
fn quantities() {
    let spec = Pb::new()
        .entry(1, "cpu", Some(Pb::new().msg(2, Pb::new().str(1, "100m"))))
        .entry(1, "pods", None);
    assert_eq!(
        decode_as("core.v1.ResourceQuotaSpec", spec).unwrap(),
        json!({"hard": {"cpu": "100m", "pods": "0"}})
    );
    let empty = Pb::new().entry(1, "cpu", Some(Pb::new().msg(2, Pb::new().str(1, ""))));
    let err = decode_as("core.v1.ResourceQuotaSpec", empty).unwrap_err();
    assert_eq!(err.to_string(), "malformed protobuf in hard[cpu]: empty quantity");
}

#[test]
fn int_or_string() {
    let port = |target: Option<Pb>| {
        let pb = Pb::new().int(3, 80);
        decode_as("core.v1.ServicePort", if let Some(t) = target { pb.msg(4, t) } else { pb })
    };
    assert_eq!(
        port(Some(Pb::new().int(1, 0).int(2, 8080))).unwrap(),
        json!({"port": 80, "targetPort": 8080})
    );
    assert_eq!(
        port(Some(Pb::new().int(1, 1).str(3, "http"))).unwrap(),
        json!({"port": 80, "targetPort": "http"})
    );
    assert_eq!(port(None).unwrap(), json!({"port": 80, "targetPort": 0}));
    let err = port(Some(Pb::new().int(1, 2))).unwrap_err();
    assert_eq!(err.to_string(), "malformed protobuf in targetPort: IntOrString of type 2");
}

#[test]
fn bytes_print_as_base64() {
    let secret =
        Pb::new().entry(2, "a", Some(Pb::new().bytes(2, &[0xff]))).entry(2, "nil", None).str(3, "");
    assert_eq!(
        decode_as("core.v1.Secret", secret).unwrap(),
        json!({"metadata": {"creationTimestamp": null}, "data": {"a": "/w==", "nil": null}})
    );
    let spec = Pb::new().bytes(1, b"").str(7, "s");
    let csr = decode_as("certificates.v1.CertificateSigningRequestSpec", spec).unwrap();
    assert_eq!((&csr["request"], &csr["signerName"]), (&json!(""), &json!("s")));
}

#[test]
fn raw_extensions_hold_json_or_protobuf() {
    let revision =
        |data: Pb| decode_as("apps.v1.ControllerRevision", Pb::new().int(3, 1).msg(2, data));
    let data = revision(Pb::new().bytes(1, br#"{"spec": {"a": 1}}"#)).unwrap();
    assert_eq!(data["data"], json!({"spec": {"a": 1}}));
    let nested = body("v1", "ConfigMap", Pb::new().entry(2, "k", Some(Pb::new().str(2, "v"))));
    let data = revision(Pb::new().bytes(1, &nested)).unwrap();
    assert_eq!(
        data["data"],
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"creationTimestamp": null}, "data": {"k": "v"}})
    );
    let err = revision(Pb::new().bytes(1, b"{nope")).unwrap_err();
    assert!(
        err.to_string().starts_with("malformed protobuf in data: embedded JSON does not parse"),
        "{err}"
    );
    let absent = decode_as("apps.v1.ControllerRevision", Pb::new()).unwrap();
    assert_eq!(
        absent,
        json!({"metadata": {"creationTimestamp": null}, "data": null, "revision": 0})
    );
    let fields = Pb::new().str(1, "kubectl").msg(7, Pb::new().bytes(1, br#"{"f:data":{}}"#));
    assert_eq!(
        decode_as("meta.v1.ManagedFieldsEntry", fields).unwrap(),
        json!({"manager": "kubectl", "fieldsV1": {"f:data": {}}})
    );
}

#[test]
fn repeated_scalars_packed_or_not() {
    let mut packed = Vec::new();
    for v in [3i64, -1] {
        varint(v as u64, &mut packed);
    }
    let security = Pb::new().int(4, 1).int(4, 2).bytes(4, &packed);
    assert_eq!(
        decode_as("core.v1.PodSecurityContext", security).unwrap(),
        json!({"supplementalGroups": [1, 2, 3, -1]})
    );
    let err = decode_as("core.v1.PodSecurityContext", Pb::new().bytes(4, &[0x80])).unwrap_err();
    assert_eq!(err, Error::Truncated { path: "supplementalGroups".into() });
}

#[test]
fn doubles_print_as_go_prints_them() {
    let schema = Pb::new().fixed64(9, 1.5f64.to_bits()).fixed64(11, 2.0f64.to_bits());
    assert_eq!(
        decode_as("apiextensions.v1.JSONSchemaProps", schema).unwrap(),
        json!({"maximum": 1.5, "minimum": 2})
    );
    let nan = Pb::new().fixed64(9, f64::NAN.to_bits());
    assert!(decode_as("apiextensions.v1.JSONSchemaProps", nan).is_err());
}

#[test]
fn schema_unions_and_raw_json() {
    let string = || Pb::new().str(5, "string");
    let schema = Pb::new()
        .msg(8, Pb::new().bytes(1, br#"{"x":1}"#))
        .msg(20, Pb::new().bytes(1, br#""a""#))
        .msg(20, Pb::new().bytes(1, b"1"))
        .msg(24, Pb::new().msg(1, string()))
        .entry(
            29,
            "p",
            Some(Pb::new().msg(2, Pb::new().msg(24, Pb::new().msg(2, string()).msg(2, string())))),
        )
        .msg(30, Pb::new().int(1, 1))
        .entry(32, "a", Some(Pb::new().msg(2, Pb::new().str(2, "b"))))
        .entry(32, "s", Some(Pb::new().msg(2, Pb::new().msg(1, string()))))
        .int(38, 1);
    assert_eq!(
        decode_as("apiextensions.v1.JSONSchemaProps", schema).unwrap(),
        json!({
            "default": {"x": 1},
            "enum": ["a", 1],
            "items": {"type": "string"},
            "properties": {"p": {"items": [{"type": "string"}, {"type": "string"}]}},
            "additionalProperties": true,
            "dependencies": {"a": ["b"], "s": {"type": "string"}},
            "x-kubernetes-preserve-unknown-fields": true
        })
    );
    let or_bool =
        |pb: Pb| decode_as("apiextensions.v1.JSONSchemaProps", Pb::new().msg(30, pb)).unwrap();
    assert_eq!(or_bool(Pb::new())["additionalProperties"], false);
    assert_eq!(
        or_bool(Pb::new().int(1, 1).msg(2, string()))["additionalProperties"],
        json!({"type": "string"})
    );
}

#[test]
fn string_lists_and_inline_structs() {
    let spec = Pb::new()
        .str(3, "alice")
        .entry(5, "scopes", Some(Pb::new().msg(2, Pb::new().str(1, "a").str(1, "b"))))
        .entry(5, "none", None);
    assert_eq!(
        decode_as("authorization.v1.SubjectAccessReviewSpec", spec).unwrap(),
        json!({"user": "alice", "extra": {"scopes": ["a", "b"], "none": null}})
    );
    let empty_dir = Pb::new().str(1, "Memory").msg(2, Pb::new().str(1, "1Gi"));
    let volume = Pb::new().str(1, "v").msg(2, Pb::new().msg(2, empty_dir));
    assert_eq!(
        decode_as("core.v1.Volume", volume).unwrap(),
        json!({"name": "v", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}})
    );
    // Errors in an inline struct name the fields as JSON does.
    let bad =
        Pb::new().str(1, "v").msg(2, Pb::new().msg(2, Pb::new().msg(2, Pb::new().str(1, ""))));
    let err = decode_as("core.v1.Volume", bad).unwrap_err();
    assert_eq!(err.to_string(), "malformed protobuf in emptyDir.sizeLimit: empty quantity");
}

#[test]
fn unknown_fields_are_skipped_and_repeated_messages_merge() {
    let meta = Pb::new()
        .msg(1, Pb::new().str(1, "a"))
        .msg(1, Pb::new().entry(11, "k", Some(Pb::new().str(2, "v"))))
        .int(999, 7)
        .str(998, "x");
    let pod = decode(&body("v1", "Pod", meta)).unwrap();
    assert_eq!(
        pod["metadata"],
        json!({"name": "a", "labels": {"k": "v"}, "creationTimestamp": null})
    );
}

#[test]
fn envelopes() {
    let configmap = body("v1", "ConfigMap", Pb::new());
    assert_eq!(
        type_meta(&configmap).unwrap(),
        crate::TypeMeta { api_version: "v1".into(), kind: "ConfigMap".into() }
    );
    assert!(is_known_kind("apps/v1", "Deployment") && !is_known_kind("apps/v1", "Pod"));
    let json = [
        MAGIC,
        &Pb::new()
            .msg(1, Pb::new().str(1, "v1").str(2, "X"))
            .bytes(2, br#"{"a":1}"#)
            .str(4, "application/json")
            .0,
    ]
    .concat();
    assert_eq!(decode(&json).unwrap(), json!({"apiVersion": "v1", "kind": "X", "a": 1}));
}

#[test]
fn malformed_bodies_are_errors() {
    let unknown = |pb: Pb| [MAGIC, &pb.0].concat();
    let meta = || Pb::new().msg(1, Pb::new().str(1, "v1").str(2, "ConfigMap"));
    assert_eq!(decode(b"{\"kind\":\"Pod\"}"), Err(Error::NotProtobuf));
    assert_eq!(decode(b"k8s"), Err(Error::NotProtobuf));
    assert_eq!(decode(MAGIC), Err(Error::NoKind));
    assert_eq!(decode(&unknown(Pb::new().bytes(2, b""))), Err(Error::NoKind));
    assert_eq!(
        decode(&body("v1", "Nope", Pb::new())),
        Err(Error::UnknownKind { api_version: "v1".into(), kind: "Nope".into() })
    );
    assert_eq!(decode(&unknown(meta().str(3, "gzip"))), Err(Error::ContentEncoding("gzip".into())));
    assert_eq!(
        decode(&unknown(meta().str(4, "application/cbor"))),
        Err(Error::ContentType("application/cbor".into()))
    );
    let mut truncated = unknown(meta());
    truncated.pop();
    assert!(matches!(decode(&truncated), Err(Error::Truncated { .. })));
    // A string where an integer belongs, deep inside: the path names it.
    let port = Pb::new().msg(1, Pb::new().str(3, "eighty"));
    let err = decode(&body("v1", "Service", Pb::new().msg(2, port))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed protobuf in object.spec.ports[0].port: length-delimited value for a field of type I32"
    );
    let err = decode(&body("v1", "Service", Pb::new().msg(2, Pb::new().bytes(1, &[0x0a, 0x05]))))
        .unwrap_err();
    assert_eq!(err, Error::Truncated { path: "object.spec.ports[0]".into() });
}

#[test]
fn nesting_and_expansion_are_bounded() {
    // JSONSchemaProps nested through `not` (field 28) deeper than the limit.
    let mut schema = Pb::new();
    for _ in 0..200 {
        schema = Pb::new().msg(28, schema);
    }
    assert!(matches!(
        decode_as("apiextensions.v1.JSONSchemaProps", schema),
        Err(Error::TooDeep { .. })
    ));
    // A RawExtension holding a body holding a RawExtension, and so on.
    let mut revision = body("apps/v1", "ControllerRevision", Pb::new());
    for _ in 0..200 {
        revision =
            body("apps/v1", "ControllerRevision", Pb::new().msg(2, Pb::new().bytes(1, &revision)));
    }
    assert!(matches!(decode(&revision), Err(Error::TooDeep { .. })));
    // Each empty container is two bytes but prints Go's zero Container.
    let mut spec = Pb::new();
    for _ in 0..100_000 {
        spec = spec.msg(2, Pb::new());
    }
    assert!(matches!(
        decode(&body("v1", "Pod", Pb::new().msg(2, spec))),
        Err(Error::TooLarge { .. })
    ));
}

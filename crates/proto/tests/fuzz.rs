//! Hostile bodies: decode must return, never panic, whatever the bytes. Random bytes
//! rarely get past the envelope, so most cases start from the kubectl fixtures and
//! cut, flip or splice them, or build well-formed envelopes around random messages.

use std::path::Path;

use proptest::prelude::*;

fn fixtures() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut bodies: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pb"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    bodies.sort();
    assert!(bodies.len() > 20, "fixtures missing");
    bodies
}

fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut type_meta = vec![0x0a, api_version.len() as u8];
    type_meta.extend(api_version.as_bytes());
    type_meta.extend([0x12, kind.len() as u8]);
    type_meta.extend(kind.as_bytes());
    let mut body = b"k8s\0".to_vec();
    body.extend([0x0a, type_meta.len() as u8]);
    body.extend(type_meta);
    body.push(0x12);
    let mut len = raw.len();
    while len >= 0x80 {
        body.push(len as u8 | 0x80);
        len >>= 7;
    }
    body.push(len as u8);
    body.extend(raw);
    body
}

#[test]
fn every_truncation_of_every_fixture() {
    for body in fixtures() {
        assert!(keelson_proto::decode(&body).is_ok());
        for end in 0..body.len() {
            let _ = keelson_proto::decode(&body[..end]);
            let _ = keelson_proto::type_meta(&body[..end]);
        }
    }
}

/// Well-formed protobuf with random field numbers and values, nested, so that the
/// decoder walks deep into the schema and meets wrong wire types there.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let leaf = proptest::collection::vec(any::<u8>(), 0..16);
    leaf.prop_recursive(4, 256, 8, |inner| {
        proptest::collection::vec((1u32..45, 0..4u8, any::<u64>(), inner), 0..8).prop_map(
            |fields| {
                let mut out = Vec::new();
                for (number, kind, value, nested) in fields {
                    let wire_type = [0u64, 1, 2, 2][kind as usize];
                    push_varint(&mut out, u64::from(number) << 3 | wire_type);
                    match kind {
                        0 => push_varint(&mut out, value),
                        1 => out.extend(value.to_le_bytes()),
                        _ => {
                            push_varint(&mut out, nested.len() as u64);
                            out.extend(nested);
                        }
                    }
                }
                out
            },
        )
    })
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(prefix in any::<bool>(), bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let body = if prefix { [b"k8s\0".as_slice(), &bytes].concat() } else { bytes };
        let _ = keelson_proto::decode(&body);
    }

    #[test]
    fn mutated_fixtures(pick in any::<prop::sample::Index>(), edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let bodies = fixtures();
        let mut body = pick.get(&bodies).clone();
        for (at, byte) in edits {
            let i = at.index(body.len());
            body[i] = byte;
        }
        let _ = keelson_proto::decode(&body);
    }

    #[test]
    fn spliced_fixtures(a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>(), from in any::<prop::sample::Index>()) {
        let bodies = fixtures();
        let (a, b) = (a.get(&bodies), b.get(&bodies));
        let body = [&a[..cut.index(a.len())], &b[from.index(b.len())..]].concat();
        let _ = keelson_proto::decode(&body);
    }

    /// Well-formed envelopes of common kinds around random messages, so the bytes
    /// reach the schema-driven decoder rather than failing at the envelope.
    #[test]
    fn random_objects(kind in 0..6usize, raw in prop_oneof![proptest::collection::vec(any::<u8>(), 0..1024), message()]) {
        let (api_version, kind) = [
            ("v1", "Pod"), ("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "Secret"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"), ("apps/v1", "ControllerRevision"),
        ][kind];
        let _ = keelson_proto::decode(&envelope(api_version, kind, &raw));
    }
}

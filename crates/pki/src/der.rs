//! A minimal DER writer: exactly the encodings a client certificate needs.
//!
//! It exists because rcgen keeps one value per attribute type in a distinguished name, and a
//! Kubernetes client certificate carries one `O` per group (see `client.rs`). It must never grow
//! into a general ASN.1 library and never parse: reading certificates is x509-parser's job.

use time::{OffsetDateTime, UtcOffset};

/// Tag, definite length, content.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// `SEQUENCE { parts... }`.
pub(crate) fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// `SET { part }` holding a single element (so no DER sorting is needed).
pub(crate) fn set_of_one(part: &[u8]) -> Vec<u8> {
    tlv(0x31, part)
}

/// `OBJECT IDENTIFIER` from its arcs; the first two arcs must follow X.660 (0..=2, < 40).
pub(crate) fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut content = Vec::new();
    let (first, rest) = match arcs {
        [a, b, rest @ ..] => (a * 40 + b, rest),
        [a] => (a * 40, &[][..]),
        [] => return tlv(0x06, &[]),
    };
    for arc in std::iter::once(first).chain(rest.iter().copied()) {
        base128(arc, &mut content);
    }
    tlv(0x06, &content)
}

fn base128(value: u64, out: &mut Vec<u8>) {
    let mut groups = vec![(value & 0x7f) as u8];
    let mut rest = value >> 7;
    while rest > 0 {
        groups.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.extend(groups.iter().rev());
}

/// Non-negative `INTEGER` from big-endian magnitude bytes.
pub(crate) fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let skip = magnitude.iter().take_while(|b| **b == 0).count();
    let trimmed = &magnitude[skip.min(magnitude.len().saturating_sub(1))..];
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.is_empty() || trimmed[0] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    tlv(0x02, &content)
}

/// `UTF8String`.
pub(crate) fn utf8_string(s: &str) -> Vec<u8> {
    tlv(0x0c, s.as_bytes())
}

/// `OCTET STRING`.
pub(crate) fn octet_string(bytes: &[u8]) -> Vec<u8> {
    tlv(0x04, bytes)
}

/// `BIT STRING` of whole bytes (no unused bits).
pub(crate) fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(bytes.len() + 1);
    content.push(0);
    content.extend_from_slice(bytes);
    tlv(0x03, &content)
}

/// `BOOLEAN TRUE`.
pub(crate) fn boolean_true() -> Vec<u8> {
    vec![0x01, 0x01, 0xff]
}

/// `NULL`.
pub(crate) fn null() -> Vec<u8> {
    vec![0x05, 0x00]
}

/// `[n] EXPLICIT` (constructed, context-specific).
pub(crate) fn explicit(n: u8, content: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, content)
}

/// `[n] IMPLICIT` over a primitive type (context-specific).
pub(crate) fn implicit_primitive(n: u8, content: &[u8]) -> Vec<u8> {
    tlv(0x80 | n, content)
}

/// X.509 `Time`: UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5).
pub(crate) fn x509_time(t: OffsetDateTime) -> Vec<u8> {
    let t = t.to_offset(UtcOffset::UTC);
    let (year, tag) = if (1950..2050).contains(&t.year()) {
        (format!("{:02}", t.year() % 100), 0x17)
    } else {
        (format!("{:04}", t.year()), 0x18)
    };
    let text = format!(
        "{year}{:02}{:02}{:02}{:02}{:02}Z",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    tlv(tag, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_short_and_long_forms() {
        assert_eq!(tlv(0x04, &[7; 3])[..2], [0x04, 3]);
        assert_eq!(tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x04, &[0; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn object_identifiers_encode_like_the_rfc() {
        // ecdsa-with-SHA256
        assert_eq!(
            oid(&[1, 2, 840, 10045, 4, 3, 2]),
            [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]
        );
        // id-kp-clientAuth
        assert_eq!(
            oid(&[1, 3, 6, 1, 5, 5, 7, 3, 2]),
            [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02]
        );
    }

    #[test]
    fn integers_are_minimal_and_non_negative() {
        assert_eq!(unsigned_integer(&[0, 0, 5]), [0x02, 1, 5]);
        assert_eq!(unsigned_integer(&[0x80]), [0x02, 2, 0, 0x80]);
        assert_eq!(unsigned_integer(&[0, 0]), [0x02, 1, 0]);
        assert_eq!(unsigned_integer(&[]), [0x02, 1, 0]);
    }

    #[test]
    fn times_switch_to_generalized_in_2050() {
        let at = |y, m, d, hh, mm, ss| {
            time::Date::from_calendar_date(y, m, d)
                .and_then(|date| date.with_hms(hh, mm, ss))
                .map(|t| t.assume_utc())
                .expect("valid date")
        };
        let t = at(2031, time::Month::February, 3, 4, 5, 6);
        assert_eq!(x509_time(t), tlv(0x17, b"310203040506Z"));
        let t = at(2051, time::Month::December, 31, 23, 59, 59);
        assert_eq!(x509_time(t), tlv(0x18, b"20511231235959Z"));
    }
}

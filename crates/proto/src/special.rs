//! Messages whose JSON is not an object of their fields: Go gives each a custom
//! `MarshalJSON`, mirrored here rule for rule (times, durations, quantities,
//! int-or-strings, raw JSON, the apiextensions schema unions, string lists).
//!
//! Field numbers here are upstream's, fixed in `generated.proto` since the types
//! exist. Nothing here may panic on hostile values: all arithmetic on wire numbers
//! is checked or wrapping.

use base64::Engine as _;
use serde_json::Value;

use crate::decode::Decoder;
use crate::error::{Error, Result};
use crate::schema::{Message, MessageId, Special, Ty};
use crate::wire::{self, Reader};

pub(crate) fn decode(d: &mut Decoder, m: &Message, bytes: &[u8]) -> Result<Value> {
    let fields = Fields::read(bytes)?;
    match m.special {
        Special::None => Err(Error::malformed(format!("{} has no special form", m.name))),
        // Go: time.Unix(seconds, nanos), printed as null when zero.
        Special::Time | Special::MicroTime if bytes.is_empty() => Ok(Value::Null),
        Special::Time => Ok(timestamp(fields.int(1)?, fields.int(2)?, false)),
        Special::MicroTime => Ok(timestamp(fields.int(1)?, fields.int(2)?, true)),
        Special::Duration => Ok(Value::String(go_duration(fields.int(1)?))),
        Special::Quantity => match fields.string(1)? {
            None => Ok(Value::String("0".into())),
            Some(s) if s.is_empty() => Err(Error::malformed("empty quantity")),
            Some(s) => Ok(Value::String(s)),
        },
        Special::IntOrString => match fields.int(1)? {
            0 => Ok(Value::from(fields.int(2)? as i32)),
            1 => Ok(Value::String(fields.string(3)?.unwrap_or_default())),
            t => Err(Error::malformed(format!("IntOrString of type {t}"))),
        },
        Special::RawExtension | Special::RawJson => match fields.bytes(1)? {
            None | Some([]) => Ok(Value::Null),
            Some(raw) if m.special == Special::RawExtension && raw.starts_with(crate::MAGIC) => {
                crate::decode_with(d, raw).map_err(|e| e.within("raw"))
            }
            Some(raw) => serde_json::from_slice(raw)
                .map_err(|e| Error::malformed(format!("embedded JSON does not parse: {e}"))),
        },
        Special::SchemaOrArray => {
            let schemas = fields.all(2);
            if !schemas.is_empty() {
                let t = target(m, 2)?;
                let list =
                    schemas.iter().map(|v| d.message(t, as_bytes(v)?)).collect::<Result<_>>()?;
                return Ok(Value::Array(list));
            }
            schema_or(d, m, &fields, Value::Null)
        }
        Special::SchemaOrBool => {
            let allows = fields.int(1)? != 0;
            schema_or_at(d, m, &fields, 2, Value::Bool(allows))
        }
        Special::SchemaOrStringArray => {
            let property = fields.strings(2)?;
            if !property.is_empty() {
                return Ok(Value::Array(property.into_iter().map(Value::String).collect()));
            }
            schema_or(d, m, &fields, Value::Null)
        }
        Special::StringList => {
            let items = fields.strings(1)?;
            Ok(if items.is_empty() {
                Value::Null
            } else {
                Value::Array(items.into_iter().map(Value::String).collect())
            })
        }
    }
}

/// The schema in field 1 if present, else `otherwise`.
fn schema_or(d: &mut Decoder, m: &Message, fields: &Fields, otherwise: Value) -> Result<Value> {
    schema_or_at(d, m, fields, 1, otherwise)
}

fn schema_or_at(
    d: &mut Decoder,
    m: &Message,
    fields: &Fields,
    number: u32,
    otherwise: Value,
) -> Result<Value> {
    let pieces = fields.all(number);
    if pieces.is_empty() {
        return Ok(otherwise);
    }
    // Repeated occurrences of a message field merge, which protobuf defines as
    // decoding their concatenation.
    let mut merged = Vec::new();
    for piece in &pieces {
        merged.extend_from_slice(as_bytes(piece)?);
    }
    d.message(target(m, number)?, &merged)
}

fn target(m: &Message, number: u32) -> Result<MessageId> {
    match m.field(number).map(|i| m.fields[i].ty) {
        Some(Ty::Msg(t)) => Ok(t),
        _ => Err(Error::malformed(format!("schema of {} lacks message field {number}", m.name))),
    }
}

fn as_bytes<'a>(v: &wire::Value<'a>) -> Result<&'a [u8]> {
    match v {
        wire::Value::Bytes(b) => Ok(b),
        v => Err(Error::malformed(format!("{} value where a message was expected", v.wire_type()))),
    }
}

/// The fields of a small message, in wire order.
struct Fields<'a>(Vec<(u32, wire::Value<'a>)>);

impl<'a> Fields<'a> {
    fn read(bytes: &'a [u8]) -> Result<Fields<'a>> {
        let mut reader = Reader::new(bytes);
        Ok(Fields(std::iter::from_fn(|| reader.field()).collect::<Result<_, _>>()?))
    }

    fn all(&self, number: u32) -> Vec<wire::Value<'a>> {
        self.0.iter().filter(|(n, _)| *n == number).map(|(_, v)| *v).collect()
    }

    /// The last occurrence wins, as in protobuf.
    fn last(&self, number: u32) -> Option<wire::Value<'a>> {
        self.0.iter().rev().find(|(n, _)| *n == number).map(|(_, v)| *v)
    }

    /// A varint field as Go's int64 (zero when absent).
    fn int(&self, number: u32) -> Result<i64> {
        match self.last(number) {
            None => Ok(0),
            Some(wire::Value::Varint(v)) => Ok(v as i64),
            Some(v) => {
                Err(Error::malformed(format!("{} value in integer field {number}", v.wire_type())))
            }
        }
    }

    fn bytes(&self, number: u32) -> Result<Option<&'a [u8]>> {
        self.last(number).map(|v| as_bytes(&v)).transpose()
    }

    fn string(&self, number: u32) -> Result<Option<String>> {
        Ok(self.bytes(number)?.map(|b| String::from_utf8_lossy(b).into_owned()))
    }

    fn strings(&self, number: u32) -> Result<Vec<String>> {
        self.all(number)
            .iter()
            .map(|v| Ok(String::from_utf8_lossy(as_bytes(v)?).into_owned()))
            .collect()
    }
}

/// Seconds from 0001-01-01 to 1970-01-01: Go's zero time as a Unix time.
const ZERO_TIME_UNIX: i64 = -62_135_596_800;

/// Go's `time.Unix(seconds, nanos)` printed as metav1.Time (`2006-01-02T15:04:05Z`)
/// or metav1.MicroTime (`2006-01-02T15:04:05.000000Z`), or null for the zero time.
pub(crate) fn timestamp(seconds: i64, nanos: i64, micro: bool) -> Value {
    // Nanos are an int32 on the wire; normalise into [0, 1e9) as time.Unix does.
    let nanos = nanos as i32 as i64;
    let seconds = seconds.wrapping_add(nanos.div_euclid(1_000_000_000));
    let nanos = nanos.rem_euclid(1_000_000_000);
    if seconds == ZERO_TIME_UNIX && nanos == 0 {
        return Value::Null;
    }
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let year = if year < 0 { format!("-{:04}", year.unsigned_abs()) } else { format!("{year:04}") };
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let fraction = if micro { format!(".{:06}", nanos / 1000) } else { String::new() };
    Value::String(format!("{year}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}{fraction}Z"))
}

/// Howard Hinnant's `civil_from_days`: proleptic Gregorian date of a day count
/// from 1970-01-01. Exact for every input a 64-bit second count can produce.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Go's `time.Duration.String`: `1h2m3.5s`, `1.5ms`, `0s`.
pub(crate) fn go_duration(nanos: i64) -> String {
    let u = nanos.unsigned_abs();
    let sign = if nanos < 0 { "-" } else { "" };
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000_000_000 {
        let (precision, unit) = match u {
            ..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        let (whole, fraction) = split_fraction(u, precision);
        return format!("{sign}{whole}{fraction}{unit}");
    }
    let (secs, fraction) = split_fraction(u, 9);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, secs / 60) {
        (0, 0) => format!("{sign}{s}{fraction}s"),
        (0, _) => format!("{sign}{m}m{s}{fraction}s"),
        _ => format!("{sign}{h}h{m}m{s}{fraction}s"),
    }
}

/// `v / 10^precision` and its fraction as `.5` (trailing zeros dropped, empty if none).
fn split_fraction(v: u64, precision: u32) -> (u64, String) {
    let scale = 10u64.pow(precision);
    let digits = format!("{:0width$}", v % scale, width = precision as usize);
    let digits = digits.trim_end_matches('0');
    (v / scale, if digits.is_empty() { String::new() } else { format!(".{digits}") })
}

/// Go prints a `[]byte` as standard base64 with padding.
pub(crate) fn base64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_go_prints_them() {
        assert_eq!(timestamp(0, 0, false), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(1_700_000_000, 999_999_999, false), "2023-11-14T22:13:20Z");
        assert_eq!(timestamp(1_700_000_000, 123_456_789, true), "2023-11-14T22:13:20.123456Z");
        assert_eq!(timestamp(951_782_400, 0, false), "2000-02-29T00:00:00Z");
        assert_eq!(timestamp(-1, 0, false), "1969-12-31T23:59:59Z");
        assert_eq!(timestamp(253_402_300_799, 0, false), "9999-12-31T23:59:59Z");
        assert_eq!(timestamp(ZERO_TIME_UNIX, 0, false), Value::Null);
        assert_eq!(timestamp(ZERO_TIME_UNIX, 0, true), Value::Null);
        assert_eq!(timestamp(ZERO_TIME_UNIX, 1000, true), "0001-01-01T00:00:00.000001Z");
        // Nanos outside [0, 1e9) carry into seconds.
        assert_eq!(timestamp(10, -1_000_000_000, false), "1970-01-01T00:00:09Z");
        // Extreme values print something and never panic.
        for s in [i64::MIN, i64::MAX, ZERO_TIME_UNIX - 1] {
            assert!(timestamp(s, i64::MAX, true).is_string());
        }
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        let s = 1_000_000_000;
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(1), "1ns");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(1_500_000), "1.5ms");
        assert_eq!(go_duration(s), "1s");
        assert_eq!(go_duration(90 * s), "1m30s");
        assert_eq!(go_duration(3600 * s), "1h0m0s");
        assert_eq!(go_duration(3600 * s + 500_000_000), "1h0m0.5s");
        assert_eq!(go_duration(-2 * s), "-2s");
        assert_eq!(go_duration(i64::MIN), "-2562047h47m16.854775808s");
        assert_eq!(go_duration(i64::MAX), "2562047h47m16.854775807s");
    }
}

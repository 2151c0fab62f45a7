//! Decodes a protobuf message by the schema into the JSON that kube-apiserver prints
//! for it: what Go's `encoding/json` makes of the struct that gogo-protobuf would
//! unmarshal the bytes into.
//!
//! That is not "every field on the wire": Go writes every non-pointer field, empty or
//! not, and prints it only if it is not an `omitempty` zero; a non-pointer struct is
//! printed even when absent (`status: {}`, `creationTimestamp: null`); a pointer is
//! printed whenever present. Fields whose Go declaration the table does not know are
//! printed when present. This module must never panic, recurse without bound or grow
//! its output without bound, whatever the bytes.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};
use crate::schema::{self, Card, Field, Message, MessageId, Special, Ty};
use crate::special;
use crate::wire::{self, Reader};

/// Deepest nesting of messages (serde_json allows 128 levels of JSON).
pub(crate) const MAX_DEPTH: usize = 100;

pub(crate) struct Decoder {
    depth: usize,
    /// JSON values left to produce before the body counts as a decompression bomb.
    budget: usize,
    limit: usize,
}

/// What the wire held for one field of a message being decoded.
enum Slot<'a> {
    Absent,
    Scalar(wire::Value<'a>),
    /// Every occurrence of a message field: protobuf merges them.
    Message(MessageId, Vec<&'a [u8]>),
    /// A repeated field's elements; empty is absent.
    List(Vec<Value>),
    /// A map field's entries; empty is absent.
    Map(Map<String, Value>),
}

impl Decoder {
    /// A decoder for a body of `len` bytes: at most two JSON values per byte (a real
    /// body needs about one byte per value; an empty message is two bytes and Go may
    /// add a few zero fields for it).
    pub(crate) fn new(len: usize) -> Decoder {
        let limit = len.saturating_mul(2).saturating_add(4096);
        Decoder { depth: 0, budget: limit, limit }
    }

    fn spend(&mut self) -> Result<()> {
        self.budget = self.budget.checked_sub(1).ok_or(Error::TooLarge { limit: self.limit })?;
        Ok(())
    }

    /// Enters one more level of nesting (a message, or a body inside a RawExtension).
    pub(crate) fn nested<T>(&mut self, f: impl FnOnce(&mut Decoder) -> Result<T>) -> Result<T> {
        if self.depth >= MAX_DEPTH {
            return Err(Error::TooDeep { path: String::new(), limit: MAX_DEPTH });
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }

    /// The JSON of message `id` encoded in `bytes`.
    pub(crate) fn message(&mut self, id: MessageId, bytes: &[u8]) -> Result<Value> {
        self.nested(|d| {
            d.spend()?;
            let m = schema::message(id);
            if m.special != Special::None {
                return special::decode(d, m, bytes);
            }
            Ok(Value::Object(d.object(m, bytes)?))
        })
    }

    pub(crate) fn object(&mut self, m: &Message, bytes: &[u8]) -> Result<Map<String, Value>> {
        let mut slots: Vec<Slot<'_>> = m
            .fields
            .iter()
            .map(|f| match f.card {
                Card::One => Slot::Absent,
                Card::Rep => Slot::List(Vec::new()),
                Card::Map => Slot::Map(Map::new()),
            })
            .collect();
        let mut reader = Reader::new(bytes);
        while let Some(item) = reader.field() {
            let (number, value) = item?;
            // Unknown fields are skipped, as gogo-protobuf does.
            let Some(i) = m.field(number) else { continue };
            let f = &m.fields[i];
            self.collect(f, &mut slots[i], value).map_err(|e| within(f, e))?;
        }
        let mut out = Map::new();
        for (f, slot) in m.fields.iter().zip(slots) {
            self.emit(f, slot, &mut out).map_err(|e| within(f, e))?;
        }
        Ok(out)
    }

    fn collect<'a>(
        &mut self,
        f: &Field,
        slot: &mut Slot<'a>,
        value: wire::Value<'a>,
    ) -> Result<()> {
        match (f.card, f.ty) {
            (Card::One, Ty::Msg(t)) => {
                let bytes = message_bytes(value)?;
                match slot {
                    Slot::Message(_, pieces) => pieces.push(bytes),
                    _ => *slot = Slot::Message(t, vec![bytes]),
                }
            }
            (Card::One, ty) => {
                scalar(ty, value)?; // reject a wrong wire type now
                *slot = Slot::Scalar(value);
            }
            (Card::Rep, ty) => {
                let Slot::List(list) = slot else { return Err(Error::malformed("not a list")) };
                match (value, ty) {
                    // Packed repeated scalars: one length-delimited run of values.
                    (wire::Value::Bytes(run), Ty::Bool | Ty::I32 | Ty::I64) => {
                        let mut reader = Reader::new(run);
                        while !reader.is_empty() {
                            self.spend()?;
                            list.push(scalar(ty, wire::Value::Varint(reader.varint()?))?);
                        }
                    }
                    (wire::Value::Bytes(run), Ty::F64) => {
                        if run.len() % 8 != 0 {
                            return Err(Error::malformed(
                                "packed doubles not a multiple of 8 bytes",
                            ));
                        }
                        for chunk in run.chunks_exact(8) {
                            self.spend()?;
                            let bits = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
                            list.push(scalar(ty, wire::Value::Fixed64(bits))?);
                        }
                    }
                    _ => {
                        let index = list.len();
                        let element =
                            self.element(ty, value).map_err(|e| e.within(&format!("[{index}]")))?;
                        list.push(element);
                    }
                }
            }
            (Card::Map, ty) => {
                let Slot::Map(map) = slot else { return Err(Error::malformed("not a map")) };
                let (key, value) = self.entry(ty, message_bytes(value)?)?;
                map.insert(key, value);
            }
        }
        Ok(())
    }

    fn element(&mut self, ty: Ty, value: wire::Value<'_>) -> Result<Value> {
        self.spend()?;
        match ty {
            Ty::Msg(t) => self.message(t, message_bytes(value)?),
            ty => scalar(ty, value),
        }
    }

    /// A map entry: `{key = 1, value = 2}`; a missing part is Go's zero value.
    fn entry(&mut self, ty: Ty, bytes: &[u8]) -> Result<(String, Value)> {
        self.spend()?;
        let (mut key, mut value) = (String::new(), None);
        let mut reader = Reader::new(bytes);
        while let Some(item) = reader.field() {
            match item? {
                (1, wire::Value::Bytes(k)) => key = String::from_utf8_lossy(k).into_owned(),
                (1, v) => return Err(Error::malformed(format!("{} map key", v.wire_type()))),
                (2, v) => value = Some(v),
                _ => {}
            }
        }
        let value = match (ty, value) {
            (Ty::Msg(t), v) => {
                self.message(t, v.map(message_bytes).transpose()?.unwrap_or_default())
            }
            (ty, Some(v)) => scalar(ty, v),
            (ty, None) => Ok(zero(ty)),
        };
        Ok((key.clone(), value.map_err(|e| e.within(&format!("[{key}]")))?))
    }

    fn emit(&mut self, f: &Field, slot: Slot<'_>, out: &mut Map<String, Value>) -> Result<()> {
        let slot = match slot {
            Slot::List(list) if list.is_empty() => Slot::Absent,
            Slot::Map(map) if map.is_empty() => Slot::Absent,
            slot => slot,
        };
        let value = match slot {
            // Absent: Go holds its zero value if the field is not a pointer.
            Slot::Absent if !f.is_value() => return Ok(()),
            Slot::Absent => match (f.card, f.ty) {
                // A struct is printed whatever omitempty says.
                (Card::One, Ty::Msg(t)) => self.message(t, &[])?,
                _ if f.omitempty() => return Ok(()),
                (Card::One, ty) => zero(ty),
                // A nil slice or map without omitempty.
                (Card::Rep | Card::Map, _) => Value::Null,
            },
            Slot::Scalar(v) => {
                let v = scalar(f.ty, v)?;
                if f.is_value() && f.omitempty() && is_zero(&v) {
                    return Ok(());
                }
                v
            }
            Slot::Message(t, pieces) => {
                let bytes: Cow<'_, [u8]> = match pieces.as_slice() {
                    [one] => Cow::Borrowed(one),
                    _ => Cow::Owned(pieces.concat()),
                };
                self.message(t, &bytes)?
            }
            Slot::List(list) => Value::Array(list),
            Slot::Map(map) => Value::Object(map),
        };
        self.spend()?;
        if f.inline() {
            // An embedded struct's fields, which lose to the outer struct's own.
            if let Value::Object(fields) = value {
                for (k, v) in fields {
                    out.entry(k).or_insert(v);
                }
            }
        } else {
            out.insert(f.json.to_string(), value);
        }
        Ok(())
    }
}

/// Names the field in an error's path; an inline struct's fields are the outer's.
fn within(f: &Field, e: Error) -> Error {
    if f.inline() { e } else { e.within(f.json) }
}

fn message_bytes(value: wire::Value<'_>) -> Result<&[u8]> {
    match value {
        wire::Value::Bytes(b) => Ok(b),
        v => Err(Error::malformed(format!("{} value for a message field", v.wire_type()))),
    }
}

/// A scalar field's JSON as Go prints it.
fn scalar(ty: Ty, value: wire::Value<'_>) -> Result<Value> {
    Ok(match (ty, value) {
        // Go does not check UTF-8 in protobuf strings; its JSON encoder replaces
        // invalid bytes with U+FFFD, as from_utf8_lossy does.
        (Ty::Str, wire::Value::Bytes(b)) => Value::String(String::from_utf8_lossy(b).into_owned()),
        (Ty::Bytes, wire::Value::Bytes(b)) => special::base64(b),
        (Ty::Bool, wire::Value::Varint(v)) => Value::Bool(v != 0),
        (Ty::I32, wire::Value::Varint(v)) => Value::from(v as i32),
        (Ty::I64, wire::Value::Varint(v)) => Value::from(v as i64),
        (Ty::F64, wire::Value::Fixed64(bits)) => float(f64::from_bits(bits))?,
        (ty, v) => {
            return Err(Error::malformed(format!(
                "{} value for a field of type {ty:?}",
                v.wire_type()
            )));
        }
    })
}

/// Go prints integral floats without a fraction (`1`, not `1.0`), which JSON
/// parsers read back as integers; NaN and infinities make Go's encoder fail.
fn float(x: f64) -> Result<Value> {
    if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 {
        return Ok(Value::from(x as i64));
    }
    Number::from_f64(x)
        .map(Value::Number)
        .ok_or_else(|| Error::malformed(format!("{x} has no JSON form")))
}

/// Go's zero value of a scalar field; a nil `[]byte` prints as null.
fn zero(ty: Ty) -> Value {
    match ty {
        Ty::Str => Value::String(String::new()),
        Ty::Bool => Value::Bool(false),
        Ty::I32 | Ty::I64 | Ty::F64 => Value::from(0),
        Ty::Bytes | Ty::Msg(_) => Value::Null,
    }
}

/// What `omitempty` drops: false, 0, "" (an empty `[]byte` prints as "").
pub(crate) fn is_zero(v: &Value) -> bool {
    match v {
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

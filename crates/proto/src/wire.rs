//! The protobuf wire format: a reader of `(field number, value)` pairs over a byte
//! slice, borrowing length-delimited values from it, and a [`Writer`] of them.
//!
//! It knows nothing of any schema. It must never panic or read past its slice,
//! whatever the bytes: every length is checked, and a problem is a [`WireError`].

use std::fmt;

/// One field's value as it appears on the wire.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl Value<'_> {
    pub(crate) fn wire_type(&self) -> &'static str {
        match self {
            Value::Varint(_) => "varint",
            Value::Fixed64(_) => "fixed64",
            Value::Bytes(_) => "length-delimited",
            Value::Fixed32(_) => "fixed32",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WireError {
    /// The message ends inside a field.
    Truncated,
    /// Anything else that is not protobuf.
    Invalid(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("truncated"),
            WireError::Invalid(reason) => f.write_str(reason),
        }
    }
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    /// A varint (at most 10 bytes, high bits past 64 ignored, as Go does).
    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (i, &b) in self.buf.iter().enumerate().take(10) {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        if self.buf.len() >= 10 {
            Err(WireError::Invalid("varint longer than 10 bytes".into()))
        } else {
            Err(WireError::Truncated)
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next field, or `None` at the end of the message.
    pub(crate) fn field(&mut self) -> Option<Result<(u32, Value<'a>), WireError>> {
        if self.buf.is_empty() {
            return None;
        }
        Some(self.read_field())
    }

    fn read_field(&mut self) -> Result<(u32, Value<'a>), WireError> {
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(WireError::Invalid(format!("illegal field number {number}")));
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default())),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| WireError::Truncated)?;
                Value::Bytes(self.take(len)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default())),
            3 | 4 => return Err(WireError::Invalid("groups are not supported".into())),
            t => return Err(WireError::Invalid(format!("illegal wire type {t}"))),
        };
        Ok((number as u32, value))
    }
}

/// A message being written, field by field, in the order the calls come.
#[derive(Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn raw_varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }

    fn key(&mut self, number: u32, wire_type: u8) {
        self.raw_varint(u64::from(number) << 3 | u64::from(wire_type));
    }

    /// A varint field: bool, int32, int64 (negative ones as ten bytes, as Go writes them).
    pub(crate) fn varint(&mut self, number: u32, value: u64) {
        self.key(number, 0);
        self.raw_varint(value);
    }

    pub(crate) fn double(&mut self, number: u32, value: f64) {
        self.key(number, 1);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// A length-delimited field: a string, bytes or an embedded message.
    pub(crate) fn bytes(&mut self, number: u32, value: &[u8]) {
        self.key(number, 2);
        self.raw_varint(value.len() as u64);
        self.buf.extend_from_slice(value);
    }

    pub(crate) fn message(&mut self, number: u32, message: Writer) {
        self.bytes(number, &message.buf);
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_it_reads() {
        let mut inner = Writer::default();
        inner.bytes(1, b"hi");
        let mut w = Writer::default();
        w.varint(1, 150);
        w.double(2, 1.5);
        w.message(3, inner);
        w.varint(4, -1i64 as u64);
        let bytes = w.into_bytes();
        assert_eq!(
            fields(&bytes).unwrap(),
            [
                (1, Value::Varint(150)),
                (2, Value::Fixed64(1.5f64.to_bits())),
                (3, Value::Bytes(&[0x0a, 0x02, b'h', b'i'])),
                (4, Value::Varint(u64::MAX))
            ]
        );
    }

    fn fields(bytes: &[u8]) -> Result<Vec<(u32, Value<'_>)>, WireError> {
        let mut reader = Reader::new(bytes);
        std::iter::from_fn(|| reader.field()).collect()
    }

    #[test]
    fn reads_each_wire_type() {
        let bytes = [
            0x08, 0x96, 0x01, 0x11, 1, 0, 0, 0, 0, 0, 0, 0, 0x1a, 0x02, b'h', b'i', 0x25, 2, 0, 0,
            0,
        ];
        let got = fields(&bytes).unwrap();
        assert_eq!(
            got,
            [
                (1, Value::Varint(150)),
                (2, Value::Fixed64(1)),
                (3, Value::Bytes(b"hi")),
                (4, Value::Fixed32(2))
            ]
        );
    }

    #[test]
    fn negative_int32_is_a_ten_byte_varint() {
        let bytes = [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(fields(&bytes).unwrap(), [(1, Value::Varint(u64::MAX))]);
    }

    #[test]
    fn rejects_malformed_input() {
        assert_eq!(fields(&[0x0a, 0x05, b'a']), Err(WireError::Truncated));
        assert_eq!(fields(&[0x08]), Err(WireError::Truncated));
        assert_eq!(fields(&[0x08, 0x80]), Err(WireError::Truncated));
        assert!(fields(&[0x08; 12]).is_ok());
        assert!(matches!(
            fields(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(WireError::Invalid(_))
        ));
        assert!(matches!(fields(&[0x00, 0x00]), Err(WireError::Invalid(_))));
        assert!(matches!(fields(&[0x0b]), Err(WireError::Invalid(_))));
        assert!(matches!(fields(&[0x0e]), Err(WireError::Invalid(_))));
        assert_eq!(
            fields(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(WireError::Truncated)
        );
    }
}

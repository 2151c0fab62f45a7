//! Encodes a Swagger 2.0 document (JSON) as gnostic's `openapi.v2.Document` message,
//! the protobuf kube-apiserver serves at `/openapi/v2` to Go clients
//! (`application/com.github.proto-openapi.spec.v2.v1.0+protobuf`).
//!
//! Upstream's handler runs gnostic's `ParseDocument` over its JSON and marshals the
//! result; this walks the JSON the same way, field by field, with the numbers of
//! `proto/openapiv2.proto` (gnostic's). Keys gnostic would not accept are left out,
//! `x-` keys become vendor extensions (`NamedAny` whose `Any.yaml` holds the value as
//! JSON, which YAML reads), and values of the wrong JSON type are skipped: it never
//! panics and never fails, whatever the JSON.

use serde_json::{Map, Value};

use crate::wire::Writer;

/// The protobuf encoding of `document` as an `openapi.v2.Document`.
pub fn encode(document: &Value) -> Vec<u8> {
    let Some(d) = document.as_object() else { return Vec::new() };
    let mut f = Fields::new(d);
    f.string(1, "swagger");
    f.message(2, "info", info);
    f.string(3, "host");
    f.string(4, "basePath");
    f.strings(5, "schemes");
    f.strings(6, "consumes");
    f.strings(7, "produces");
    f.message(8, "paths", paths);
    f.message(9, "definitions", |d| named(d, schema));
    f.messages(12, "security", |s| named(s, |v| Some(strings(1, v))));
    f.message(13, "securityDefinitions", |d| named(d, security_definition));
    f.messages(14, "tags", tag);
    f.message(15, "externalDocs", external_docs);
    f.extensions(16);
    f.done()
}

/// The fields of one JSON object, written into one message.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    out: Writer,
}

impl<'a> Fields<'a> {
    fn new(object: &'a Map<String, Value>) -> Fields<'a> {
        Fields { object, out: Writer::default() }
    }

    fn done(self) -> Vec<u8> {
        self.out.into_bytes()
    }

    fn writer(self) -> Writer {
        self.out
    }

    fn string(&mut self, number: u32, key: &str) {
        if let Some(s) = self.object.get(key).and_then(Value::as_str) {
            self.out.bytes(number, s.as_bytes());
        }
    }

    fn bool(&mut self, number: u32, key: &str) {
        if let Some(b) = self.object.get(key).and_then(Value::as_bool) {
            self.out.varint(number, u64::from(b));
        }
    }

    fn int64(&mut self, number: u32, key: &str) {
        if let Some(i) = self.object.get(key).and_then(Value::as_i64) {
            self.out.varint(number, i as u64);
        }
    }

    fn double(&mut self, number: u32, key: &str) {
        if let Some(x) = self.object.get(key).and_then(Value::as_f64) {
            self.out.double(number, x);
        }
    }

    fn strings(&mut self, number: u32, key: &str) {
        for s in self.object.get(key).and_then(Value::as_array).into_iter().flatten() {
            if let Some(s) = s.as_str() {
                self.out.bytes(number, s.as_bytes());
            }
        }
    }

    fn any(&mut self, number: u32, key: &str) {
        if let Some(value) = self.object.get(key) {
            self.out.message(number, any(value));
        }
    }

    fn anys(&mut self, number: u32, key: &str) {
        for value in self.object.get(key).and_then(Value::as_array).into_iter().flatten() {
            self.out.message(number, any(value));
        }
    }

    /// A message from the value at `key`, if `encode` makes one of it.
    fn message(&mut self, number: u32, key: &str, encode: impl Fn(&Value) -> Option<Writer>) {
        if let Some(message) = self.object.get(key).and_then(encode) {
            self.out.message(number, message);
        }
    }

    /// A repeated message from the array at `key`.
    fn messages(&mut self, number: u32, key: &str, encode: impl Fn(&Value) -> Option<Writer>) {
        for value in self.object.get(key).and_then(Value::as_array).into_iter().flatten() {
            if let Some(message) = encode(value) {
                self.out.message(number, message);
            }
        }
    }

    /// The `x-` keys as `repeated NamedAny vendor_extension`.
    fn extensions(&mut self, number: u32) {
        for (name, value) in self.object.iter().filter(|(k, _)| k.starts_with("x-")) {
            self.out.message(number, named_any(name, value));
        }
    }
}

/// `Any { string yaml = 2 }`.
fn any(value: &Value) -> Writer {
    let mut w = Writer::default();
    w.bytes(2, serde_json::to_string(value).unwrap_or_default().as_bytes());
    w
}

fn named_any(name: &str, value: &Value) -> Writer {
    pair(name, any(value))
}

/// gnostic's `Named<T> { string name = 1; T value = 2; }`.
fn pair(name: &str, value: Writer) -> Writer {
    let mut w = Writer::default();
    w.bytes(1, name.as_bytes());
    w.message(2, value);
    w
}

/// A repeated string field of its own message (`TypeItem`, `StringArray`).
fn strings(number: u32, value: &Value) -> Writer {
    let mut w = Writer::default();
    let values = match value {
        Value::Array(values) => values.iter().filter_map(Value::as_str).collect(),
        Value::String(s) => vec![s.as_str()],
        _ => vec![],
    };
    for s in values {
        w.bytes(number, s.as_bytes());
    }
    w
}

/// A JSON object as gnostic's ordered map: `repeated Named<T> additional_properties = 1`
/// of `{ name = 1, value = 2 }`.
fn named(value: &Value, encode: impl Fn(&Value) -> Option<Writer>) -> Option<Writer> {
    let mut w = Writer::default();
    for (name, value) in value.as_object()? {
        let Some(encoded) = encode(value) else { continue };
        w.message(1, pair(name, encoded));
    }
    Some(w)
}

fn info(value: &Value) -> Option<Writer> {
    let mut f = Fields::new(value.as_object()?);
    f.string(1, "title");
    f.string(2, "version");
    f.string(3, "description");
    f.string(4, "termsOfService");
    f.extensions(7);
    Some(f.writer())
}

fn tag(value: &Value) -> Option<Writer> {
    let mut f = Fields::new(value.as_object()?);
    f.string(1, "name");
    f.string(2, "description");
    f.message(3, "externalDocs", external_docs);
    f.extensions(4);
    Some(f.writer())
}

fn external_docs(value: &Value) -> Option<Writer> {
    let mut f = Fields::new(value.as_object()?);
    f.string(1, "description");
    f.string(2, "url");
    f.extensions(3);
    Some(f.writer())
}

/// `SecurityDefinitionsItem`: only API keys (the bearer token upstream declares).
fn security_definition(value: &Value) -> Option<Writer> {
    let object = value.as_object()?;
    if object.get("type").and_then(Value::as_str) != Some("apiKey") {
        return None;
    }
    let mut f = Fields::new(object);
    f.string(1, "type");
    f.string(2, "name");
    f.string(3, "in");
    f.string(4, "description");
    f.extensions(5);
    let mut item = Writer::default();
    item.message(2, f.writer());
    Some(item)
}

/// `Paths { vendor_extension = 1, repeated NamedPathItem path = 2 }`.
fn paths(value: &Value) -> Option<Writer> {
    let object = value.as_object()?;
    let mut f = Fields::new(object);
    f.extensions(1);
    for (name, item) in object.iter().filter(|(k, _)| k.starts_with('/')) {
        let Some(item) = path_item(item) else { continue };
        f.out.message(2, pair(name, item));
    }
    Some(f.writer())
}

fn path_item(value: &Value) -> Option<Writer> {
    let mut f = Fields::new(value.as_object()?);
    f.string(1, "$ref");
    for (number, method) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (6, "options"),
        (7, "head"),
        (8, "patch"),
    ] {
        f.message(number, method, operation);
    }
    f.messages(9, "parameters", parameters_item);
    f.extensions(10);
    Some(f.writer())
}

fn operation(value: &Value) -> Option<Writer> {
    let mut f = Fields::new(value.as_object()?);
    f.strings(1, "tags");
    f.string(2, "summary");
    f.string(3, "description");
    f.message(4, "externalDocs", external_docs);
    f.string(5, "operationId");
    f.strings(6, "produces");
    f.strings(7, "consumes");
    f.messages(8, "parameters", parameters_item);
    f.message(9, "responses", responses);
    f.strings(10, "schemes");
    f.bool(11, "deprecated");
    f.extensions(13);
    Some(f.writer())
}

/// `ParametersItem`: a `JsonReference` (2) or a `Parameter` (1), itself a body
/// parameter (1) or a non-body one (2) of the kind `in` names.
fn parameters_item(value: &Value) -> Option<Writer> {
    let object = value.as_object()?;
    let mut item = Writer::default();
    if object.contains_key("$ref") {
        item.message(2, json_reference(object));
        return Some(item);
    }
    let mut parameter = Writer::default();
    if object.get("in").and_then(Value::as_str) == Some("body") {
        let mut f = Fields::new(object);
        f.string(1, "description");
        f.string(2, "name");
        f.string(3, "in");
        f.bool(4, "required");
        f.message(5, "schema", schema);
        f.extensions(6);
        parameter.message(1, f.writer());
    } else {
        // Header (1), formData (2), query (3) and path (4) sub-schemas share their
        // fields; formData and query have `allowEmptyValue` as 5 and the rest one later.
        let (kind, shifted) = match object.get("in").and_then(Value::as_str)? {
            "header" => (1, false),
            "formData" => (2, true),
            "query" => (3, true),
            "path" => (4, false),
            _ => return None,
        };
        let mut f = Fields::new(object);
        f.bool(1, "required");
        f.string(2, "in");
        f.string(3, "description");
        f.string(4, "name");
        let first = if shifted {
            f.bool(5, "allowEmptyValue");
            6
        } else {
            5
        };
        primitive(&mut f, first);
        f.extensions(first + 17);
        let mut non_body = Writer::default();
        non_body.message(kind, f.writer());
        parameter.message(2, non_body);
    }
    item.message(1, parameter);
    Some(item)
}

/// The run of fields every primitive-typed parameter and `PrimitivesItems` has, from
/// `type` at `first` to `multipleOf` at `first + 16`.
fn primitive(f: &mut Fields<'_>, first: u32) {
    f.string(first, "type");
    f.string(first + 1, "format");
    f.message(first + 2, "items", primitives_items);
    f.string(first + 3, "collectionFormat");
    f.any(first + 4, "default");
    f.double(first + 5, "maximum");
    f.bool(first + 6, "exclusiveMaximum");
    f.double(first + 7, "minimum");
    f.bool(first + 8, "exclusiveMinimum");
    f.int64(first + 9, "maxLength");
    f.int64(first + 10, "minLength");
    f.string(first + 11, "pattern");
    f.int64(first + 12, "maxItems");
    f.int64(first + 13, "minItems");
    f.bool(first + 14, "uniqueItems");
    f.anys(first + 15, "enum");
    f.double(first + 16, "multipleOf");
}

fn primitives_items(value: &Value) -> Option<Writer> {
    let mut f = Fields::new(value.as_object()?);
    primitive(&mut f, 1);
    f.extensions(18);
    Some(f.writer())
}

fn json_reference(object: &Map<String, Value>) -> Writer {
    let mut f = Fields::new(object);
    f.string(1, "$ref");
    f.string(2, "description");
    f.writer()
}

/// `Responses { repeated NamedResponseValue response_code = 1, vendor_extension = 2 }`.
fn responses(value: &Value) -> Option<Writer> {
    let object = value.as_object()?;
    let mut f = Fields::new(object);
    for (code, response) in object.iter().filter(|(k, _)| !k.starts_with("x-")) {
        let Some(response) = response.as_object() else { continue };
        let mut value = Writer::default();
        if response.contains_key("$ref") {
            value.message(2, json_reference(response));
        } else {
            let mut r = Fields::new(response);
            r.string(1, "description");
            r.message(2, "schema", |s| {
                let mut item = Writer::default();
                item.message(1, schema(s)?);
                Some(item)
            });
            r.extensions(5);
            value.message(1, r.writer());
        }
        f.out.message(1, pair(code, value));
    }
    f.extensions(2);
    Some(f.writer())
}

fn schema(value: &Value) -> Option<Writer> {
    let mut f = Fields::new(value.as_object()?);
    f.string(1, "$ref");
    f.string(2, "format");
    f.string(3, "title");
    f.string(4, "description");
    f.any(5, "default");
    f.double(6, "multipleOf");
    f.double(7, "maximum");
    f.bool(8, "exclusiveMaximum");
    f.double(9, "minimum");
    f.bool(10, "exclusiveMinimum");
    f.int64(11, "maxLength");
    f.int64(12, "minLength");
    f.string(13, "pattern");
    f.int64(14, "maxItems");
    f.int64(15, "minItems");
    f.bool(16, "uniqueItems");
    f.int64(17, "maxProperties");
    f.int64(18, "minProperties");
    f.strings(19, "required");
    f.anys(20, "enum");
    f.message(21, "additionalProperties", |v| {
        let mut item = Writer::default();
        match v {
            Value::Bool(b) => item.varint(2, u64::from(*b)),
            v => item.message(1, schema(v)?),
        }
        Some(item)
    });
    f.message(22, "type", |v| Some(strings(1, v)));
    f.message(23, "items", |v| {
        let mut item = Writer::default();
        match v {
            Value::Array(schemas) => {
                schemas.iter().filter_map(schema).for_each(|s| item.message(1, s))
            }
            v => item.message(1, schema(v)?),
        }
        Some(item)
    });
    f.messages(24, "allOf", schema);
    f.message(25, "properties", |p| named(p, schema));
    f.string(26, "discriminator");
    f.bool(27, "readOnly");
    f.message(29, "externalDocs", external_docs);
    f.any(30, "example");
    f.extensions(31);
    Some(f.writer())
}

//! A request as the handlers see it: who sent it, the path, the decoded query, what the
//! client accepts, and the body decoded by its content type.

use std::collections::HashMap;

use bytes::Bytes;
use keelson_api::ResourceInfo;
use serde_json::Value;

use crate::negotiation::Output;
use crate::status::{ApiError, ApiResult};

/// Who sent a request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    /// Empty for certificate users; the service account's uid for its tokens.
    pub uid: String,
    /// What the authenticator adds (a service account token's pod and credential id).
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl User {
    pub fn anonymous() -> Self {
        User {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            ..Default::default()
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.name == "system:anonymous"
    }
}

pub struct Request {
    pub method: http::Method,
    /// The path, percent-decoded.
    pub path: String,
    /// The path and query as sent, undecoded (what the audit log records).
    pub uri: String,
    pub query: HashMap<String, String>,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub user: User,
}

impl Request {
    pub fn new(parts: http::request::Parts, body: Bytes, user: User) -> Self {
        let query = parts.uri.query().map(parse_query).unwrap_or_default();
        Request {
            method: parts.method,
            path: percent_decode(parts.uri.path()),
            uri: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned()),
            query,
            headers: parts.headers,
            body,
            user,
        }
    }

    /// The same request without its body, to derive sub-requests (a watch's initial list).
    pub fn new_like(other: &Request) -> Request {
        Request {
            method: other.method.clone(),
            path: other.path.clone(),
            uri: other.uri.clone(),
            query: other.query.clone(),
            headers: other.headers.clone(),
            body: Bytes::new(),
            user: other.user.clone(),
        }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A boolean query parameter (`watch=1`, `watch=true`).
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("1" | "true" | "True"))
    }

    pub fn header(&self, name: http::header::HeaderName) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The representation the `Accept` header asks for from `info`'s resource (a watch
    /// needs a streaming one); 406 when none can be given.
    pub fn output(&self, info: &ResourceInfo, watch: bool) -> ApiResult<Output> {
        crate::negotiation::negotiate(self.header(http::header::ACCEPT), info.is_custom(), watch)
    }

    /// Whether the client asked for a `meta.k8s.io` Table (as `kubectl get` does).
    pub fn wants_table(&self, info: &ResourceInfo) -> bool {
        matches!(self.output(info, false), Ok(Output::Table(_)))
    }

    /// The body as JSON, decoded from JSON or YAML by its content type.
    pub fn json_body(&self) -> ApiResult<Value> {
        let content_type = self.header(http::header::CONTENT_TYPE);
        let media = content_type.split(';').next().unwrap_or("").trim();
        if self.body.is_empty() {
            return Err(ApiError::bad_request("the request body is empty"));
        }
        let value: Value = match media {
            "" | "application/json" | "*/*" => serde_json::from_slice(&self.body).map_err(|e| {
                ApiError::bad_request(format!("the body of the request is not valid JSON: {e}"))
            })?,
            keelson_proto::MEDIA_TYPE => keelson_proto::decode(&self.body).map_err(|e| {
                ApiError::bad_request(format!(
                    "the body of the request is not a valid Kubernetes protobuf object: {e}"
                ))
            })?,
            "application/yaml" | "application/apply-patch+yaml" => {
                let text = std::str::from_utf8(&self.body)
                    .map_err(|_| ApiError::bad_request("the YAML body is not UTF-8"))?;
                serde_saphyr::from_str(text).map_err(|e| {
                    ApiError::bad_request(format!("the body of the request is not valid YAML: {e}"))
                })?
            }
            other => return Err(ApiError::unsupported_media_type(other)),
        };
        if !value.is_object() {
            return Err(ApiError::bad_request("the body of the request must be a JSON object"));
        }
        Ok(value)
    }

    /// The body of a create or update of `kind`: [`Request::json_body`], with a JSON
    /// body that does not parse refused in upstream's words (`transformDecodeError`):
    /// `the object provided is unrecognized (must be of type Namespace): couldn't get
    /// version/kind; json parse error: …` and the start of the body.
    pub fn object_body(&self, kind: &str) -> ApiResult<Value> {
        let content_type = self.header(http::header::CONTENT_TYPE);
        let media = content_type.split(';').next().unwrap_or("").trim();
        if matches!(media, "" | "application/json" | "*/*")
            && !self.body.is_empty()
            && let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&self.body)
        {
            return Err(ApiError::bad_request(format!(
                "the object provided is unrecognized (must be of type {kind}): couldn't get version/kind; json parse error: {} ({})",
                go_json_error(&self.body, &e),
                summarize(&self.body)
            )));
        }
        self.json_body()
    }
}

/// What Go's `encoding/json` says of a body that is not JSON, for the errors it words
/// differently from serde_json: a first character no value starts with, an object whose
/// first key is no string, and a body that ends too soon.
fn go_json_error(body: &[u8], error: &serde_json::Error) -> String {
    let mut tokens = body.iter().copied().filter(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    match (tokens.next(), tokens.next()) {
        (Some(c), _)
            if !matches!(c, b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') =>
        {
            format!("invalid character {} looking for beginning of value", go_quote_char(c))
        }
        (Some(b'{'), Some(c)) if c != b'"' && c != b'}' => {
            format!(
                "invalid character {} looking for beginning of object key string",
                go_quote_char(c)
            )
        }
        _ if error.is_eof() => "unexpected end of JSON input".into(),
        _ => error.to_string(),
    }
}

/// Go's `quoteChar`: a byte in single quotes, escaped as `strconv.Quote` escapes it.
fn go_quote_char(c: u8) -> String {
    match c {
        b'\'' => r"'\''".into(),
        b'"' => "'\"'".into(),
        b'\n' => r"'\n'".into(),
        b'\r' => r"'\r'".into(),
        b'\t' => r"'\t'".into(),
        0x07 => r"'\a'".into(),
        0x08 => r"'\b'".into(),
        0x0c => r"'\f'".into(),
        0x0b => r"'\v'".into(),
        b'\\' => r"'\\'".into(),
        c if c < 0x20 || c == 0x7f => format!(r"'\x{c:02x}'"),
        c => format!("'{}'", char::from(c)),
    }
}

/// Upstream's `summarizeData(body, 30)`: a JSON-looking body's first 30 bytes as text,
/// any other's in hex, ` ...` when cut.
fn summarize(body: &[u8]) -> String {
    const MAX: usize = 30;
    let cut = if body.len() > MAX { " ..." } else { "" };
    let head = &body[..body.len().min(MAX)];
    match body.first() {
        None => "<empty>".into(),
        Some(b'{') => format!("{}{cut}", String::from_utf8_lossy(head)),
        Some(_) => {
            let hex: String = head.iter().map(|b| format!("{b:02x}")).collect();
            format!("{hex}{cut}")
        }
    }
}

fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(&k.replace('+', " ")), percent_decode(&v.replace('+', " ")))
        })
        .collect()
}

/// `%XX` escapes to bytes; malformed escapes stay as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A resource request, resolved.
pub struct Target {
    pub info: &'static ResourceInfo,
    /// The namespace in the path; `None` for cluster-scoped resources and for lists
    /// across all namespaces.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// Came through the legacy `/watch/` prefix.
    pub legacy_watch: bool,
}

impl Target {
    /// The verb a request for this target is, in authorization's terms.
    pub fn verb(&self, method: &http::Method, watch: bool) -> &'static str {
        match (method, &self.name) {
            (&http::Method::GET, _) if watch => "watch",
            (&http::Method::GET, Some(_)) => "get",
            (&http::Method::GET, None) => "list",
            (&http::Method::POST, _) => "create",
            (&http::Method::PUT, _) => "update",
            (&http::Method::PATCH, _) => "patch",
            (&http::Method::DELETE, Some(_)) => "delete",
            (&http::Method::DELETE, None) => "deletecollection",
            _ => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        let q = parse_query("labelSelector=app%3Dweb%2Ctier+in+%28a%2Cb%29&limit=500&watch");
        assert_eq!(q["labelSelector"], "app=web,tier in (a,b)");
        assert_eq!(q["limit"], "500");
        assert_eq!(q["watch"], "");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}

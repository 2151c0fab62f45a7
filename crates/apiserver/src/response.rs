//! What handlers answer with: the response type and the JSON, error and warning helpers.
//! A leaf module: it imports nothing of the crate but `status` and `gojson` (bodies
//! written as upstream's encoder writes them), so a handler never depends on the
//! listener (`server.rs`) to build its answer.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

use crate::status::ApiError;

pub type Body = BoxBody<Bytes, Infallible>;
pub type Response = http::Response<Body>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// The one place an [`ApiError`] becomes an HTTP response.
pub fn error_response(error: &ApiError) -> Response {
    json_response(error.code, &error.to_status())
}

/// A built-in value (an object, list, Status or discovery document) as JSON in its Go
/// struct order ([`crate::gojson::order_of`]).
pub fn json_response(code: http::StatusCode, value: &serde_json::Value) -> Response {
    json_ordered(code, value, crate::gojson::order_of(value))
}

/// `value` as JSON with its fields in `order`.
pub fn json_ordered(
    code: http::StatusCode,
    value: &serde_json::Value,
    order: &'static crate::gojson::Order,
) -> Response {
    let mut response = json_body(crate::gojson::to_vec(value, order));
    *response.status_mut() = code;
    response
}

/// A 200 with JSON written elsewhere, on one line: the newline that ends every body is
/// added here.
pub fn json_bytes(mut body: Vec<u8>) -> Response {
    body.push(b'\n');
    json_body(body)
}

/// A 200 with a whole JSON body, its newline included.
pub fn json_body(body: impl Into<Bytes>) -> Response {
    let mut response = http::Response::new(full(body));
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

/// Adds upstream's `Warning: 299 - "…"` headers.
pub fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        let text = format!("299 - \"{}\"", warning.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(value) = http::HeaderValue::from_str(&text) {
            response.headers_mut().append(http::header::WARNING, value);
        }
    }
    response
}

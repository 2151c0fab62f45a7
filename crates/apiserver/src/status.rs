//! The one wire error: `metav1.Status`, with upstream's codes, reasons and messages.
//!
//! Every failure a client can see is built here and turned into an HTTP response in
//! exactly one place ([`ApiError::into_response`]). Messages follow upstream's wording
//! (`k8s.io/apimachinery/pkg/api/errors`) because clients and users match on them.

use http::StatusCode;
use serde_json::{Value, json};

/// One field-level problem of an `Invalid` error (`metav1.StatusCause`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, …
    pub reason: &'static str,
    pub message: String,
    /// The field path, e.g. `metadata.name`.
    pub field: String,
}

impl Cause {
    pub fn required(field: &str, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_owned()
        } else {
            format!("Required value: {detail}")
        };
        Cause { reason: "FieldValueRequired", message, field: field.to_owned() }
    }

    pub fn invalid(field: &str, value: &Value, detail: &str) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {shown}: {detail}"),
            field: field.to_owned(),
        }
    }

    /// `Unsupported value: <shown>: supported values: "a", "b"` (`shown` as Go prints
    /// the value).
    pub fn not_supported(field: &str, shown: &str, supported: &[&str]) -> Self {
        let listed: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Cause {
            reason: "FieldValueNotSupported",
            message: format!("Unsupported value: {shown}: supported values: {}", listed.join(", ")),
            field: field.to_owned(),
        }
    }

    pub fn forbidden(field: &str, detail: &str) -> Self {
        Cause {
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {detail}"),
            field: field.to_owned(),
        }
    }

    /// `field: message`, as upstream joins causes into the error message.
    fn describe(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// A failed request, as a client will see it.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: StatusCode,
    pub reason: Reason,
    pub message: String,
    /// `details` of the Status: name, group, kind (the resource), causes.
    pub details: Option<Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub(crate) fn new(code: StatusCode, reason: Reason, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None }
    }

    /// A write lost an optimistic-concurrency race (or another `Conflict`): the caller
    /// reads again and retries.
    pub fn is_conflict(&self) -> bool {
        self.reason == Reason::Conflict
    }

    pub fn is_already_exists(&self) -> bool {
        self.reason == Reason::AlreadyExists
    }

    pub fn is_not_found(&self) -> bool {
        self.reason == Reason::NotFound
    }

    fn with_details(mut self, group: &str, resource: &str, name: &str) -> Self {
        // Empty fields are left out (`omitempty`), as Go prints them.
        let mut details = json!({});
        for (field, value) in [("name", name), ("group", group), ("kind", resource)] {
            if !value.is_empty() {
                details[field] = json!(value);
            }
        }
        self.details = Some(details);
        self
    }

    /// `pods "x" not found` — `resource` is the plural, qualified by group if any.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        let qualified = qualified(group, resource);
        Self::new(
            StatusCode::NOT_FOUND,
            Reason::NotFound,
            format!("{qualified} \"{name}\" not found"),
        )
        .with_details(group, resource, name)
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        let qualified = qualified(group, resource);
        Self::new(
            StatusCode::CONFLICT,
            Reason::AlreadyExists,
            format!("{qualified} \"{name}\" already exists"),
        )
        .with_details(group, resource, name)
    }

    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let qualified = qualified(group, resource);
        Self::new(
            StatusCode::CONFLICT,
            Reason::Conflict,
            format!("Operation cannot be fulfilled on {qualified} \"{name}\": {why}"),
        )
        .with_details(group, resource, name)
    }

    /// The optimistic-concurrency conflict every client retries on.
    pub fn modified(group: &str, resource: &str, name: &str) -> Self {
        Self::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// `Deployment.apps "x" is invalid: field: message` — `kind` is the Kind.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let joined: Vec<String> = causes.iter().map(Cause::describe).collect();
        let qualified_kind =
            if group.is_empty() { kind.to_owned() } else { format!("{kind}.{group}") };
        let message = match joined.len() {
            0 => format!("{qualified_kind} \"{name}\" is invalid"),
            1 => format!("{qualified_kind} \"{name}\" is invalid: {}", joined[0]),
            _ => format!("{qualified_kind} \"{name}\" is invalid: [{}]", joined.join(", ")),
        };
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, Reason::Invalid, message)
            .with_details(group, kind, name)
            .with_causes(&causes)
    }

    /// The error with `details.causes` listing `causes`.
    pub fn with_causes(mut self, causes: &[Cause]) -> Self {
        if let Some(details) = self.details.as_mut() {
            details["causes"] = Value::Array(
                causes
                    .iter()
                    .map(|c| json!({ "reason": c.reason, "message": c.message, "field": c.field }))
                    .collect(),
            );
        }
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Reason::BadRequest, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, Reason::Unauthorized, "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, Reason::Forbidden, message)
    }

    /// Upstream's `NewForbidden`: `pods "x" is forbidden: why`, `pods is forbidden: why`
    /// without a name, `forbidden: why` without a resource.
    pub fn forbidden_resource(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let qualified = qualified(group, resource);
        let message = match (resource, name) {
            ("", _) => format!("forbidden: {why}"),
            (_, "") => format!("{qualified} is forbidden: {why}"),
            _ => format!("{qualified} {name:?} is forbidden: {why}"),
        };
        Self::new(StatusCode::FORBIDDEN, Reason::Forbidden, message)
            .with_details(group, resource, name)
    }

    pub fn method_not_supported(group: &str, resource: &str, verb: &str) -> Self {
        let qualified = qualified(group, resource);
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Reason::MethodNotAllowed,
            format!("{verb} is not supported on resources of kind \"{qualified}\""),
        )
        .with_details(group, resource, "")
    }

    /// A path nothing serves: upstream's bare 404 Status.
    pub fn path_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Reason::NotFound,
            "the server could not find the requested resource",
        )
        .with_details("", "", "")
    }

    /// 410: a resource version or continue token older than the kept history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, Reason::Expired, message)
    }

    pub fn too_old_resource_version(requested: i64, oldest: i64) -> Self {
        Self::expired(format!("too old resource version: {requested} ({oldest})"))
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Reason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"
            ),
        )
    }

    /// Upstream's `NewTimeoutError`: 504, `Timeout: why`.
    pub fn timeout(why: &str) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, Reason::Timeout, format!("Timeout: {why}"))
    }

    pub fn too_large(limit: usize) -> Self {
        Self::too_large_message(format!("limit is {limit}"))
    }

    /// 413, saying what was too large (upstream's `NewRequestEntityTooLargeError`).
    pub fn too_large_message(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Reason::RequestEntityTooLarge,
            format!("Request entity too large: {message}"),
        )
    }

    /// 429: try again later (upstream's `NewTooManyRequests`).
    pub fn too_many_requests(message: impl Into<String>, retry_after_seconds: u64) -> Self {
        let mut error = Self::new(StatusCode::TOO_MANY_REQUESTS, Reason::TooManyRequests, message);
        error.details = Some(json!({ "retryAfterSeconds": retry_after_seconds }));
        error
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Reason::InternalError,
            format!("Internal error occurred: {message}"),
        )
    }

    /// What upstream answers for a plain Go error out of its storage code (not a
    /// Status of its own): 500 with the error's message alone.
    pub fn plain(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, Reason::InternalError, message)
    }

    pub fn unavailable(message: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, Reason::ServiceUnavailable, message.to_string())
    }

    /// The `metav1.Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason.as_str(),
            "code": self.code.as_u16(),
        });
        if self.reason == Reason::Unknown
            && let Some(map) = status.as_object_mut()
        {
            map.remove("reason");
        }
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// `pods` for core, `deployments.apps` otherwise, as upstream's `GroupResource` prints.
fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() { resource.to_owned() } else { format!("{resource}.{group}") }
}

/// Upstream's `metav1.StatusReason`s: why a request failed, for clients to branch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Unauthorized,
    Forbidden,
    NotFound,
    AlreadyExists,
    Conflict,
    Gone,
    Invalid,
    ServerTimeout,
    StoreReadError,
    Timeout,
    TooManyRequests,
    BadRequest,
    MethodNotAllowed,
    NotAcceptable,
    RequestEntityTooLarge,
    UnsupportedMediaType,
    InternalError,
    Expired,
    ServiceUnavailable,
    /// No reason (upstream's `StatusReasonUnknown`, ""): an error storage did not
    /// classify, as Go's plain `error`s become.
    Unknown,
}

impl Reason {
    const ALL: [Reason; 19] = [
        Reason::Unauthorized,
        Reason::Forbidden,
        Reason::NotFound,
        Reason::AlreadyExists,
        Reason::Conflict,
        Reason::Gone,
        Reason::Invalid,
        Reason::ServerTimeout,
        Reason::StoreReadError,
        Reason::Timeout,
        Reason::TooManyRequests,
        Reason::BadRequest,
        Reason::MethodNotAllowed,
        Reason::NotAcceptable,
        Reason::RequestEntityTooLarge,
        Reason::UnsupportedMediaType,
        Reason::InternalError,
        Reason::Expired,
        Reason::ServiceUnavailable,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unauthorized => "Unauthorized",
            Reason::Forbidden => "Forbidden",
            Reason::NotFound => "NotFound",
            Reason::AlreadyExists => "AlreadyExists",
            Reason::Conflict => "Conflict",
            Reason::Gone => "Gone",
            Reason::Invalid => "Invalid",
            Reason::ServerTimeout => "ServerTimeout",
            Reason::StoreReadError => "StoreReadError",
            Reason::Timeout => "Timeout",
            Reason::TooManyRequests => "TooManyRequests",
            Reason::BadRequest => "BadRequest",
            Reason::MethodNotAllowed => "MethodNotAllowed",
            Reason::NotAcceptable => "NotAcceptable",
            Reason::RequestEntityTooLarge => "RequestEntityTooLarge",
            Reason::UnsupportedMediaType => "UnsupportedMediaType",
            Reason::InternalError => "InternalError",
            Reason::Expired => "Expired",
            Reason::ServiceUnavailable => "ServiceUnavailable",
            Reason::Unknown => "",
        }
    }

    /// A reason by name (a webhook's denial names one), or `Forbidden` for one
    /// Kubernetes does not define.
    pub fn named(name: &str) -> Reason {
        Self::ALL.into_iter().find(|r| r.as_str() == name).unwrap_or(Reason::Forbidden)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The store's errors, seen from a resource (`group`, plural `resource`).
pub fn from_store(
    error: keelson_store::Error,
    group: &str,
    resource: &str,
    name: &str,
) -> ApiError {
    use keelson_store::Error as E;
    match error {
        E::AlreadyExists { .. } => ApiError::already_exists(group, resource, name),
        E::NotFound { .. } => ApiError::not_found(group, resource, name),
        E::Conflict { .. } => ApiError::modified(group, resource, name),
        E::Compacted { requested, compacted } => {
            ApiError::too_old_resource_version(requested, compacted)
        }
        E::FutureRevision { requested, current } => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            Reason::Timeout,
            format!("Too large resource version: {requested}, current: {current}"),
        ),
        E::TooLarge { .. } => ApiError::too_large(3 * 1024 * 1024),
        E::Unavailable(message) | E::Corrupt(message) => ApiError::internal(message),
        other => ApiError::internal(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_values_with_upstreams_spelling() {
        let lost = ApiError::modified("apps", "deployments", "web");
        assert!(lost.is_conflict() && !lost.is_already_exists());
        assert_eq!(lost.to_status()["reason"], "Conflict");
        assert!(ApiError::already_exists("", "pods", "p").is_already_exists());
        assert!(ApiError::not_found("", "pods", "p").is_not_found());
        assert_eq!(Reason::named("TooManyRequests"), Reason::TooManyRequests);
        assert_eq!(Reason::named("Whatever"), Reason::Forbidden);
        assert_eq!(Reason::RequestEntityTooLarge.to_string(), "RequestEntityTooLarge");
    }

    #[test]
    fn not_found_reads_as_upstream_writes_it() {
        let status = ApiError::not_found("apps", "deployments", "web").to_status();
        assert_eq!(status["message"], "deployments.apps \"web\" not found");
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["code"], 404);
        assert_eq!(
            status["details"],
            json!({"name": "web", "group": "apps", "kind": "deployments"})
        );
    }

    #[test]
    fn invalid_joins_causes_like_upstream() {
        let causes = vec![
            Cause::required("metadata.name", "name or generateName is required"),
            Cause::invalid("metadata.labels", &json!("a b"), "a valid label must be …"),
        ];
        let status = ApiError::invalid("", "ConfigMap", "", causes).to_status();
        assert_eq!(
            status["message"],
            "ConfigMap \"\" is invalid: [metadata.name: Required value: name or generateName is required, metadata.labels: Invalid value: \"a b\": a valid label must be …]"
        );
        assert_eq!(status["code"], 422);
        assert_eq!(status["details"]["causes"][0]["reason"], "FieldValueRequired");
    }
}

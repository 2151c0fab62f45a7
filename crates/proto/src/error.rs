//! Why a body could not be decoded, with the JSON path of the field at fault.

/// A body that is not a Kubernetes protobuf object this crate can decode.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    #[error("body does not start with the Kubernetes protobuf prefix \"k8s\\x00\"")]
    NotProtobuf,
    #[error("protobuf body truncated in {path}")]
    Truncated { path: String },
    #[error("protobuf body names no kind")]
    NoKind,
    #[error("no protobuf schema for kind {kind:?} of apiVersion {api_version:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("protobuf body has content encoding {0:?}; only none is supported")]
    ContentEncoding(String),
    #[error("protobuf body wraps content type {0:?}; only protobuf and JSON are supported")]
    ContentType(String),
    #[error("malformed protobuf in {path}: {reason}")]
    Malformed { path: String, reason: String },
    #[error("protobuf body nests deeper than {limit} levels at {path}")]
    TooDeep { path: String, limit: usize },
    #[error("protobuf body expands to more than {limit} JSON values")]
    TooLarge { limit: usize },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The path of the body's top level, before any field is named.
pub(crate) const ROOT: &str = "object";

impl Error {
    pub(crate) fn malformed(reason: impl Into<String>) -> Error {
        Error::Malformed { path: String::new(), reason: reason.into() }
    }

    /// Prefixes the path with the field (`spec`) or element (`[2]`) it occurred in,
    /// as the error travels up from the field at fault.
    pub(crate) fn within(mut self, segment: &str) -> Error {
        if let Error::Truncated { path }
        | Error::Malformed { path, .. }
        | Error::TooDeep { path, .. } = &mut self
        {
            let sep = if path.is_empty() || path.starts_with('[') { "" } else { "." };
            *path = format!("{segment}{sep}{path}");
        }
        self
    }
}

impl From<crate::wire::WireError> for Error {
    fn from(e: crate::wire::WireError) -> Error {
        match e {
            crate::wire::WireError::Truncated => Error::Truncated { path: String::new() },
            crate::wire::WireError::Invalid(reason) => Error::malformed(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_json_paths() {
        let e = Error::malformed("bad")
            .within("containerPort")
            .within("[1]")
            .within("ports")
            .within("spec");
        assert_eq!(e.to_string(), "malformed protobuf in spec.ports[1].containerPort: bad");
    }
}

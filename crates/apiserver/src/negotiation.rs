//! Which representation a request's `Accept` header asks for, as upstream's
//! `endpoints/handlers/negotiation` reads it: the clauses in order of preference, each a
//! media type the server writes (JSON; YAML and protobuf are answered as JSON) and
//! possibly a transform (`as=Table`, `as=PartialObjectMetadata`,
//! `as=PartialObjectMetadataList` of `g=meta.k8s.io`, `v=v1` or `v1beta1`). A clause the
//! server cannot satisfy is skipped; when none is left, 406.
//!
//! A leaf: it knows media types and transforms, never resources or handlers.

use crate::status::{ApiError, ApiResult, Reason};

/// What a response carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// The object or list as it is.
    #[default]
    Object,
    /// A `meta.k8s.io` Table.
    Table(MetaVersion),
    /// One object's `PartialObjectMetadata`.
    Partial(MetaVersion),
    /// A list's `PartialObjectMetadataList`.
    PartialList(MetaVersion),
}

/// The `meta.k8s.io` version a transform is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaVersion {
    V1,
    V1beta1,
}

impl MetaVersion {
    pub fn api_version(self) -> &'static str {
        match self {
            MetaVersion::V1 => "meta.k8s.io/v1",
            MetaVersion::V1beta1 => "meta.k8s.io/v1beta1",
        }
    }
}

/// The media types the server writes, as `type/subtype`, in upstream's order.
const BUILTIN_TYPES: [&str; 3] =
    ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"];
/// Custom resources have no protobuf form.
const CUSTOM_TYPES: [&str; 2] = ["application/json", "application/yaml"];

/// One clause of an `Accept` header.
struct Clause<'a> {
    media: (&'a str, &'a str),
    quality: f64,
    params: Vec<(&'a str, &'a str)>,
}

/// The representation `accept` asks for from a resource (`custom`: one without a
/// protobuf form); `watch` also needs a streaming form (not YAML). An empty header
/// asks for JSON.
pub fn negotiate(accept: &str, custom: bool, watch: bool) -> ApiResult<Output> {
    let served: &[&str] = if custom { &CUSTOM_TYPES } else { &BUILTIN_TYPES };
    if accept.trim().is_empty() {
        return Ok(Output::Object);
    }
    let mut chosen = None;
    'clauses: for clause in clauses(accept) {
        for media in served {
            let (kind, sub) = media.split_once('/').unwrap_or((media, ""));
            let matches = match clause.media {
                (k, s) if k == kind && s == sub => true,
                (k, "*") if k == kind => true,
                ("*", "*") => true,
                _ => false,
            };
            if matches && let Some(output) = accepts(&clause, sub) {
                chosen = Some((output, sub));
                break 'clauses;
            }
        }
    }
    match chosen {
        Some((_, "yaml")) if watch => Err(not_acceptable(
            &served
                .iter()
                .filter(|m| !m.ends_with("yaml"))
                .map(|m| format!("{m};stream=watch"))
                .collect::<Vec<_>>(),
        )),
        Some((output, _)) => Ok(output),
        None if watch => Err(not_acceptable(
            &served
                .iter()
                .filter(|m| !m.ends_with("yaml"))
                .map(|m| format!("{m};stream=watch"))
                .collect::<Vec<_>>(),
        )),
        None => Err(not_acceptable(&served.iter().map(|m| m.to_string()).collect::<Vec<_>>())),
    }
}

/// Upstream's `acceptMediaTypeOptions`: what a clause asks of a media type the server
/// writes (`subtype` of it), or `None` when the endpoint cannot give it.
fn accepts(clause: &Clause<'_>, subtype: &str) -> Option<Output> {
    let (mut kind, mut group, mut version) = (None, None, None);
    for &(name, value) in &clause.params {
        match name {
            "as" => kind = Some(value),
            "g" => group = Some(value),
            "v" => version = Some(value),
            // Only watch streams, and not in YAML.
            "stream" if !value.is_empty() && (value != "watch" || subtype == "yaml") => {
                return None;
            }
            // No group serves another version of itself.
            "sv" if !value.is_empty() => return None,
            _ => {}
        }
    }
    if kind.is_none() && group.is_none() && version.is_none() {
        return Some(Output::Object);
    }
    let version = match (group, version) {
        (Some("meta.k8s.io"), Some("v1")) => MetaVersion::V1,
        (Some("meta.k8s.io"), Some("v1beta1")) => MetaVersion::V1beta1,
        _ => return None,
    };
    match kind? {
        // Tables are written in JSON or YAML only.
        "Table" if matches!(subtype, "json" | "yaml") => Some(Output::Table(version)),
        "PartialObjectMetadata" => Some(Output::Partial(version)),
        "PartialObjectMetadataList" => Some(Output::PartialList(version)),
        _ => None,
    }
}

/// The clauses of an `Accept` header, most preferred first: by quality, then the more
/// specific, else in the order sent (goautoneg's ordering).
fn clauses(accept: &str) -> Vec<Clause<'_>> {
    let mut clauses: Vec<Clause<'_>> = accept
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let media = pieces.next()?.trim();
            let (kind, sub) = media.split_once('/').unwrap_or((media, "*"));
            let mut clause =
                Clause { media: (kind.trim(), sub.trim()), quality: 1.0, params: Vec::new() };
            for param in pieces {
                let (name, value) = param.split_once('=').unwrap_or((param, ""));
                let (name, value) = (name.trim(), value.trim());
                if name == "q" {
                    clause.quality = value.parse().unwrap_or(0.0);
                } else {
                    clause.params.push((name, value));
                }
            }
            Some(clause)
        })
        .collect();
    let specificity = |c: &Clause<'_>| u8::from(c.media.0 != "*") + u8::from(c.media.1 != "*");
    clauses.sort_by(|a, b| {
        b.quality.total_cmp(&a.quality).then_with(|| specificity(b).cmp(&specificity(a)))
    });
    clauses
}

/// Upstream's `NewNotAcceptableError`.
fn not_acceptable(accepted: &[String]) -> ApiError {
    ApiError::new(
        http::StatusCode::NOT_ACCEPTABLE,
        Reason::NotAcceptable,
        format!("only the following media types are accepted: {}", accepted.join(", ")),
    )
}

/// A transform that cannot be done to this response (upstream's `errNotAcceptable` of
/// `asPartialObjectMetadata` and its list sibling).
pub fn cannot_transform(message: String) -> ApiError {
    ApiError::new(http::StatusCode::NOT_ACCEPTABLE, Reason::NotAcceptable, message)
}

/// How Go prints the type of what upstream's handler holds when a transform fails
/// (`%T`): the internal type of a built-in kind (`*core.Pod`, `*apps.DeploymentList`),
/// `*unstructured.Unstructured` for a custom resource.
pub fn internal_type(group: &str, kind: &str, custom: bool, list: bool) -> String {
    let suffix = if list { "List" } else { "" };
    if custom {
        return format!("*unstructured.Unstructured{suffix}");
    }
    let package = match group {
        // events.k8s.io is served from the core Event.
        "" | "events.k8s.io" => "core",
        "internal.apiserver.k8s.io" => "apiserverinternal",
        other => other.split('.').next().unwrap_or(other),
    };
    format!("*{package}.{kind}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_are_tried_in_order_of_preference() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(kubectl, false, false).ok(), Some(Output::Table(MetaVersion::V1)));
        let metadata = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(
            negotiate(metadata, false, false).ok(),
            Some(Output::PartialList(MetaVersion::V1))
        );
        // Protobuf tables do not exist: the next clause is taken.
        let table =
            "application/vnd.kubernetes.protobuf;as=Table;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(negotiate(table, false, false).ok(), Some(Output::Object));
        // Quality first, then the more specific type.
        let weighted = "application/json;q=0.5,application/json;as=Table;g=meta.k8s.io;v=v1beta1";
        assert_eq!(
            negotiate(weighted, false, false).ok(),
            Some(Output::Table(MetaVersion::V1beta1))
        );
        assert_eq!(negotiate("*/*", false, false).ok(), Some(Output::Object));
        assert_eq!(negotiate("", true, true).ok(), Some(Output::Object));
    }

    #[test]
    fn failed_transforms_name_the_internal_type() {
        assert_eq!(internal_type("", "Pod", false, false), "*core.Pod");
        assert_eq!(internal_type("apps", "Deployment", false, true), "*apps.DeploymentList");
        assert_eq!(internal_type("rbac.authorization.k8s.io", "Role", false, false), "*rbac.Role");
        assert_eq!(
            internal_type("example.com", "Widget", true, true),
            "*unstructured.UnstructuredList"
        );
    }

    #[test]
    fn what_cannot_be_given_is_not_acceptable() {
        for (accept, custom, watch, accepted) in [
            (
                "application/json;as=Foo;g=meta.k8s.io;v=v1",
                false,
                false,
                "application/json, application/yaml, application/vnd.kubernetes.protobuf",
            ),
            (
                "application/json;as=Table;g=meta.k8s.io;v=v2",
                false,
                false,
                "application/json, application/yaml, application/vnd.kubernetes.protobuf",
            ),
            ("text/html", true, false, "application/json, application/yaml"),
            (
                "application/vnd.kubernetes.protobuf",
                true,
                false,
                "application/json, application/yaml",
            ),
            (
                "application/yaml",
                false,
                true,
                "application/json;stream=watch, application/vnd.kubernetes.protobuf;stream=watch",
            ),
        ] {
            let error = negotiate(accept, custom, watch).expect_err(accept);
            assert_eq!(error.code, http::StatusCode::NOT_ACCEPTABLE, "{accept}");
            assert_eq!(
                error.message,
                format!("only the following media types are accepted: {accepted}"),
                "{accept}"
            );
        }
    }
}

//! The labels of a request as upstream's `endpoints/metrics` writes them, and the guard
//! that records a request when it ends: `apiserver_request_total`,
//! `apiserver_request_duration_seconds`, `apiserver_current_inflight_requests` and
//! `apiserver_longrunning_requests`.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::gauge::Gauge;

use super::Metrics;
use crate::request::{Request, Target};

/// The labels of a request's metrics (upstream's order): the verb and dry run, then
/// what it addresses.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct RequestLabels {
    pub verb: &'static str,
    pub dry_run: &'static str,
    pub target: TargetLabels,
}

/// What a request addresses, and which server part serves it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    pub scope: &'static str,
    pub component: &'static str,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    pub verb: &'static str,
    pub dry_run: &'static str,
}

/// `apiserver_longrunning_requests` has no `dry_run`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabel {
    pub verb: &'static str,
}

pub type LongRunningLabels = (VerbLabel, TargetLabels);
pub type DurationLabels = (VerbLabels, TargetLabels);

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: u16,
}

/// Upstream's `APIServerComponent`.
const APISERVER: &str = "apiserver";

/// The verbs upstream reports; any other is `other`.
const VERBS: [&str; 13] = [
    "APPLY",
    "CONNECT",
    "CREATE",
    "DELETE",
    "DELETECOLLECTION",
    "GET",
    "LIST",
    "PATCH",
    "POST",
    "PROXY",
    "PUT",
    "UPDATE",
    "WATCH",
];

/// Subresources upstream reports as `CONNECT`.
const CONNECT: [&str; 5] = ["log", "exec", "portforward", "attach", "proxy"];

/// The paths outside the resource tree that upstream instruments (health roots,
/// discovery's root documents, the OpenAPI v3 index): their `subresource` and
/// `component` labels. Any other is not counted, so no client can add label sets by
/// asking for paths that do not exist.
const NON_RESOURCE: [(&str, &str, &str); 6] = [
    ("/healthz", "/healthz", ""),
    ("/livez", "/livez", ""),
    ("/readyz", "/readyz", ""),
    ("/api", "/api", APISERVER),
    ("/apis", "/apis", APISERVER),
    ("/openapi/v3", "openapi/v3", ""),
];

impl RequestLabels {
    /// The labels of `req`, resolved to `target` if it addresses a resource; `None` for
    /// a path upstream does not instrument.
    pub fn of(req: &Request, target: Option<&Target>) -> Option<RequestLabels> {
        let method = req.method.as_str();
        let Some(target) = target else {
            let path = req.path.trim_end_matches('/');
            let (_, subresource, component) = NON_RESOURCE.iter().find(|(p, ..)| *p == path)?;
            return Some(RequestLabels {
                verb: clean_verb(canonical_verb(method, ""), req, None),
                dry_run: "",
                target: TargetLabels {
                    group: "",
                    version: "",
                    resource: "",
                    subresource,
                    scope: "",
                    component,
                },
            });
        };
        let info = target.info;
        // As upstream's installer: an object (or a create) is `resource`, a collection
        // in a namespace `namespace`, any other collection `cluster`.
        let scope = if target.name.is_some() || req.method == http::Method::POST {
            "resource"
        } else if target.namespace.is_some() {
            "namespace"
        } else {
            "cluster"
        };
        let subresource = target
            .subresource
            .as_deref()
            .and_then(|s| info.subresources.iter().find(|sub| sub.name == s))
            .map(|sub| sub.name);
        let verb = if target.legacy_watch {
            "WATCH"
        } else {
            clean_verb(canonical_verb(method, scope), req, subresource)
        };
        Some(RequestLabels {
            verb,
            dry_run: dry_run(req),
            target: TargetLabels {
                group: info.group,
                version: info.version,
                resource: info.plural,
                subresource: subresource.unwrap_or(""),
                scope,
                component: APISERVER,
            },
        })
    }

    fn long_running(&self) -> LongRunningLabels {
        (VerbLabel { verb: self.verb }, self.target)
    }

    pub fn duration(&self) -> DurationLabels {
        (VerbLabels { verb: self.verb, dry_run: self.dry_run }, self.target)
    }
}

/// Upstream's `CanonicalVerb`: the method, GET read as LIST for a collection.
fn canonical_verb(method: &str, scope: &str) -> &'static str {
    match method {
        "GET" | "HEAD" if scope != "resource" && !scope.is_empty() => "LIST",
        "GET" | "HEAD" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        _ => "other",
    }
}

/// Upstream's `CleanVerb`: WATCH for `?watch` (any value but `0` and `false`), APPLY for
/// an apply patch, CONNECT for the streaming subresources; a verb outside upstream's set
/// is `other`.
fn clean_verb(verb: &'static str, req: &Request, subresource: Option<&str>) -> &'static str {
    let watching = req.method == http::Method::GET
        && req
            .query
            .get("watch")
            .is_some_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "0" | "false"));
    let media = req.header(http::header::CONTENT_TYPE).split(';').next().unwrap_or("").trim();
    let verb = if watching {
        "WATCH"
    } else if verb == "PATCH" && media == "application/apply-patch+yaml" {
        "APPLY"
    } else {
        verb
    };
    let verb = if subresource.is_some_and(|s| CONNECT.contains(&s)) { "CONNECT" } else { verb };
    if VERBS.contains(&verb) { verb } else { "other" }
}

/// Upstream's `cleanDryRun`: empty without `dryRun`, `All` for the one valid value,
/// `invalid` for anything else.
fn dry_run(req: &Request) -> &'static str {
    match req.query.get("dryRun").map(String::as_str) {
        None => "",
        Some("All") => "All",
        Some(_) => "invalid",
    }
}

/// Whether upstream counts the request as mutating in `apiserver_current_inflight_requests`.
fn is_mutating(method: &http::Method) -> bool {
    !matches!(*method, http::Method::GET | http::Method::HEAD)
}

/// One request being served: counted in flight (or as long-running) from its start, and
/// in `apiserver_request_total` and `apiserver_request_duration_seconds` when dropped —
/// for a long-running request, when its response body is (a watch ends).
pub struct Observation {
    metrics: Metrics,
    labels: Option<RequestLabels>,
    started: Instant,
    /// The in-flight or long-running gauge this request holds up.
    held: Option<Gauge>,
    code: Option<u16>,
}

impl Observation {
    pub fn start(
        metrics: &Metrics,
        labels: Option<RequestLabels>,
        method: &http::Method,
        long_running: bool,
    ) -> Observation {
        let held = match (long_running, labels) {
            (true, Some(labels)) => {
                Some(metrics.inner.long_running.get_or_create(&labels.long_running()).clone())
            }
            (true, None) => None,
            (false, _) if is_mutating(method) => Some(metrics.inner.inflight_mutating.clone()),
            (false, _) => Some(metrics.inner.inflight_read_only.clone()),
        };
        if let Some(gauge) = &held {
            gauge.inc();
        }
        Observation { metrics: metrics.clone(), labels, started: Instant::now(), held, code: None }
    }

    /// The status the request was answered with; a request never answered (its client
    /// went away first) is not counted.
    pub fn answered(&mut self, code: u16) {
        self.code = Some(code);
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        if let Some(gauge) = self.held.take() {
            gauge.dec();
        }
        // Failed authentication is not a request upstream counts.
        let (Some(labels), Some(code)) = (self.labels, self.code) else { return };
        if code == 401 {
            return;
        }
        let inner = &self.metrics.inner;
        let labels = labels.duration();
        inner.requests.get_or_create(&(labels, CodeLabel { code })).inc();
        inner.durations.get_or_create(&labels).observe(self.started.elapsed().as_secs_f64());
    }
}

/// A response body that holds its request's [`Observation`] until it ends or the client
/// goes away.
pub struct Observed<B> {
    body: B,
    _observation: Observation,
}

impl<B> Observed<B> {
    pub fn new(body: B, observation: Observation) -> Observed<B> {
        Observed { body, _observation: observation }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Observed<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use keelson_api::Registry;

    use super::*;

    fn labels(method: &str, uri: &str, content_type: &str) -> Option<RequestLabels> {
        let (parts, ()) = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(())
            .expect("request")
            .into_parts();
        let req = Request::new(parts, Bytes::new(), Default::default());
        let target = crate::router::target(Registry::builtin(), &req);
        RequestLabels::of(&req, target.as_ref())
    }

    fn verb_and_scope(method: &str, uri: &str, content_type: &str) -> (&'static str, &'static str) {
        let l = labels(method, uri, content_type).expect("instrumented");
        (l.verb, l.target.scope)
    }

    #[test]
    fn verbs_and_scopes_are_cleaned_as_upstream_cleans_them() {
        let pods = "/api/v1/namespaces/default/pods";
        assert_eq!(verb_and_scope("GET", pods, ""), ("LIST", "namespace"));
        assert_eq!(verb_and_scope("GET", "/api/v1/pods", ""), ("LIST", "cluster"));
        assert_eq!(verb_and_scope("GET", &format!("{pods}/web"), ""), ("GET", "resource"));
        assert_eq!(
            verb_and_scope("GET", &format!("{pods}?watch=true"), ""),
            ("WATCH", "namespace")
        );
        assert_eq!(
            verb_and_scope("GET", &format!("{pods}?watch=false"), ""),
            ("LIST", "namespace")
        );
        assert_eq!(verb_and_scope("GET", "/api/v1/watch/namespaces/default/pods", "").0, "WATCH");
        assert_eq!(verb_and_scope("POST", pods, "application/json"), ("POST", "resource"));
        assert_eq!(verb_and_scope("PUT", &format!("{pods}/web"), ""), ("PUT", "resource"));
        let apply = "application/apply-patch+yaml";
        assert_eq!(verb_and_scope("PATCH", &format!("{pods}/web"), apply).0, "APPLY");
        let merge = "application/merge-patch+json";
        assert_eq!(verb_and_scope("PATCH", &format!("{pods}/web/status"), merge).0, "PATCH");
        assert_eq!(verb_and_scope("DELETE", pods, ""), ("DELETE", "namespace"));
        assert_eq!(verb_and_scope("GET", &format!("{pods}/web/log"), "").0, "CONNECT");
        assert_eq!(verb_and_scope("POST", &format!("{pods}/web/exec"), "").0, "CONNECT");
        assert_eq!(verb_and_scope("OPTIONS", pods, "").0, "other");
        let deployments = labels("GET", "/apis/apps/v1/deployments", "").expect("labels");
        assert_eq!((deployments.target.group, deployments.target.version), ("apps", "v1"));
        assert_eq!(deployments.target.resource, "deployments");
        let status = labels("PUT", &format!("{pods}/web/status"), "").expect("labels");
        assert_eq!(status.target.subresource, "status");
        let dry = |q: &str| labels("POST", &format!("{pods}?{q}"), "").expect("labels").dry_run;
        assert_eq!((dry("dryRun=All"), dry("dryRun=Some"), dry("x=1")), ("All", "invalid", ""));
    }

    #[test]
    fn only_upstreams_instrumented_paths_outside_resources_are_counted() {
        let health = labels("GET", "/readyz", "").expect("instrumented");
        assert_eq!(
            (health.verb, health.target.subresource, health.target.scope),
            ("GET", "/readyz", "")
        );
        assert_eq!(labels("GET", "/apis", "").expect("instrumented").target.component, "apiserver");
        for path in ["/version", "/metrics", "/nothing/here", "/api/v1/namespaces/a/nothings"] {
            assert_eq!(labels("GET", path, ""), None, "{path}");
        }
    }
}

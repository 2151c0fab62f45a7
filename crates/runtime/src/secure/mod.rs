//! A component's secure port, as kube-controller-manager serves it (port 10257):
//! HTTPS only — the serving certificate given, or a self-signed one made at start — with
//! `/healthz`, `/livez`, `/readyz` (the component's [`Checks`]) and `/metrics` (its
//! [`Metrics`] and the process's), each request authenticated and authorized by the API
//! server as upstream's delegating authenticator and authorizer do:
//!
//! - authentication ([`authn`]): a client certificate verified against the client CA, or
//!   a bearer token checked with a TokenReview (answers cached 10 s);
//! - authorization ([`authz`]): the always-allowed paths (`/healthz`, `/readyz`,
//!   `/livez`) and groups (`system:masters`) without asking, anyone else by a
//!   SubjectAccessReview of the non-resource URL and the HTTP verb (answers cached 10 s
//!   allowed, 10 s denied).
//!
//! Unlike upstream, a request without credentials is not `system:anonymous`: it reaches
//! the always-allowed paths and nothing else (401), as the API server runs with
//! `--anonymous-auth=false`.
//!
//! Must never answer anything but the always-allowed paths to a caller the API server
//! has not authenticated and authorized.

mod authn;
mod authz;
mod cache;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use http::{Method, StatusCode};
use hyper::body::Incoming;
use kube::Client;
use serde_json::json;

use crate::Error;
use crate::health::Checks;
use crate::metrics::Metrics;

/// Upstream's `--authorization-always-allow-paths` default.
pub const ALWAYS_ALLOW_PATHS: [&str; 3] = ["/healthz", "/readyz", "/livez"];
/// Upstream's `AlwaysAllowGroups`: the API server lets this group do anything anyway.
pub const ALWAYS_ALLOW_GROUPS: [&str; 1] = ["system:masters"];

/// How to serve the secure port.
pub struct Config {
    /// Which component serves (`kube-controller-manager`, `kube-scheduler`), for the
    /// logs.
    pub component: &'static str,
    /// `--bind-address` and `--secure-port`; port 0 lets the system pick one.
    pub bind: SocketAddr,
    /// `--tls-cert-file` and `--tls-private-key-file`; `None` makes a self-signed
    /// certificate at start.
    pub serving: Option<(PathBuf, PathBuf)>,
    /// The CAs client certificates are verified against (`--client-ca-file`); `None`
    /// asks for no client certificates.
    pub client_ca_pem: Option<String>,
    /// The client that sends TokenReviews (`--authentication-kubeconfig`); `None`
    /// authenticates no bearer token.
    pub authentication: Option<Client>,
    /// The client that sends SubjectAccessReviews (`--authorization-kubeconfig`); `None`
    /// forbids everything but the always-allowed paths and groups.
    pub authorization: Option<Client>,
    /// `--authorization-always-allow-paths`: exact paths, or prefixes ending in `*`.
    pub always_allow_paths: Vec<String>,
    pub always_allow_groups: Vec<String>,
}

impl Config {
    /// Upstream's defaults on `bind`, reviews sent with `client`.
    pub fn new(bind: SocketAddr, client: Client, client_ca_pem: Option<String>) -> Self {
        Config {
            component: "component",
            bind,
            serving: None,
            client_ca_pem,
            authentication: Some(client.clone()),
            authorization: Some(client),
            always_allow_paths: ALWAYS_ALLOW_PATHS.map(String::from).to_vec(),
            always_allow_groups: ALWAYS_ALLOW_GROUPS.map(String::from).to_vec(),
        }
    }
}

struct State {
    authn: authn::Authenticator,
    authz: authz::Authorizer,
    checks: Checks,
    metrics: Metrics,
}

/// Listens on `config.bind` and serves until `stop` turns true; returns the address it
/// listens on.
pub async fn serve(
    config: Config,
    checks: Checks,
    metrics: Metrics,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<SocketAddr, Error> {
    let tls_error = |e: keelson_pki::Error| Error::Config(format!("secure port: {e}"));
    let (chain, key) = match &config.serving {
        Some((cert, key)) => keelson_pki::load_serving(cert, key).map_err(tls_error)?,
        None => {
            let ip = config.bind.ip();
            let names = if ip.is_unspecified() { vec![] } else { vec![ip.to_string()] };
            keelson_pki::self_signed_serving(&names).map_err(tls_error)?
        }
    };
    let tls = keelson_pki::secure_port_config(chain, key, config.client_ca_pem.as_deref())
        .map_err(tls_error)?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", config.bind)))?;
    let local_addr = listener.local_addr()?;
    let config_component = config.component;
    let state = Arc::new(State {
        authn: authn::Authenticator::new(config.authentication),
        authz: authz::Authorizer::new(
            config.authorization,
            config.always_allow_paths,
            config.always_allow_groups,
        ),
        checks,
        metrics,
    });
    tokio::spawn(keelson_serving::serve(listener, tls, stop, move |peer| {
        let user = authn::from_certificate(peer);
        let state = state.clone();
        move |req: http::Request<Incoming>| {
            let (state, user) = (state.clone(), user.clone());
            async move { handle(&state, user, req).await }
        }
    }));
    tracing::info!(component = %config_component, address = %local_addr, "serving securely");
    Ok(local_addr)
}

async fn handle(
    state: &State,
    certificate_user: Option<authn::User>,
    req: http::Request<Incoming>,
) -> http::Response<String> {
    let path = req.uri().path().to_owned();
    let user = match certificate_user {
        Some(user) => Some(user),
        None => match authn::bearer(req.headers()) {
            None => None,
            Some(token) => match state.authn.token(token).await {
                Ok(Some(user)) => Some(user),
                Ok(None) => return unauthorized(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot review a bearer token");
                    return unauthorized();
                }
            },
        },
    };
    let verb = req.method().as_str().to_ascii_lowercase();
    if !state.authz.path_allowed(&path) {
        let Some(user) = user else { return unauthorized() };
        match state.authz.authorize(&user, &verb, &path).await {
            Ok(authz::Decision::Allow) => {}
            Ok(authz::Decision::Deny(reason)) => return forbidden(&user, &verb, &path, &reason),
            Err(e) => {
                tracing::warn!(error = %e, %path, "cannot review an access");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Internal Server Error: {path:?}: {e}\n"),
                );
            }
        }
    }
    route(state, req.method(), &path, req.uri().query())
}

/// What an authenticated and authorized request gets.
fn route(
    state: &State,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> http::Response<String> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [endpoint @ ("healthz" | "livez" | "readyz"), rest @ ..] => {
            let ran = state.checks.run();
            let checks: Vec<_> = ran.iter().map(|(n, r)| (n.as_str(), r.clone())).collect();
            let options = keelson_serving::health::Options::from_query(query);
            let (code, body) = keelson_serving::health::answer(endpoint, rest, &options, &checks);
            text(code, body)
        }
        ["metrics"] if matches!(*method, Method::GET | Method::HEAD) => {
            let mut response = text(StatusCode::OK, state.metrics.render());
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n".into()),
    }
}

fn text(code: StatusCode, body: String) -> http::Response<String> {
    let mut response = http::Response::new(body);
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert("x-content-type-options", http::HeaderValue::from_static("nosniff"));
    response
}

/// A `metav1.Status` failure, as upstream's filters answer.
fn status(code: StatusCode, reason: &str, message: &str) -> http::Response<String> {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {},
        "code": code.as_u16(),
    });
    let mut response = http::Response::new(body.to_string());
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

fn unauthorized() -> http::Response<String> {
    status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
}

/// Upstream's `forbidden: User "alice" cannot get path "/metrics"`, with the
/// authorizer's reason after a colon when it gave one.
fn forbidden(user: &authn::User, verb: &str, path: &str, reason: &str) -> http::Response<String> {
    let mut message = format!("forbidden: User {:?} cannot {verb} path {path:?}", user.name);
    if !reason.is_empty() {
        message.push_str(&format!(": {reason}"));
    }
    status(StatusCode::FORBIDDEN, "Forbidden", &message)
}

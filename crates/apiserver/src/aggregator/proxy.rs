//! kube-aggregator's proxy handler (`handler_proxy.go`): a request for a group-version
//! an APIService backs with a Service goes to one of the Service's ready endpoints, over
//! TLS verified against the APIService's `caBundle` (server name
//! `<service>.<namespace>.svc`) with the front-proxy client certificate, the
//! authenticated user in request headers.
//!
//! Endpoints, not the ClusterIP: upstream proxies to the ClusterIP unless
//! `--enable-aggregator-routing`; Keelson routes as with that flag on, because nothing
//! on the node routes ClusterIPs yet (no kube-proxy).
//!
//! Must never forward the client's `Authorization`, `Impersonate-*` or `X-Remote-*`
//! headers: the user goes only as this server sets it.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use keelson_api::Registry;
use serde_json::Value;

use super::{EXTRA_HEADER_PREFIXES, FrontProxy, GROUP_HEADERS, Remote, USERNAME_HEADERS};
use crate::ApiServer;
use crate::registry::Place;
use crate::request::{Request, User};
use crate::response::Response;

/// `spec.service` of an APIService.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    pub port: u16,
}

/// Why an APIService's Service cannot be reached, in the availability controller's
/// reasons and words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    pub reason: &'static str,
    pub message: String,
}

/// Where a Service's traffic goes: the address and port of one ready endpoint serving
/// the Service port `service.port` (upstream's `ResolveEndpoint` over EndpointSlices).
pub async fn resolve(api: &ApiServer, service: &ServiceRef) -> Result<(String, u16), Unreachable> {
    let (ns, name) = (service.namespace.as_str(), service.name.as_str());
    let registry = Registry::builtin();
    let (Some(services), Some(slices)) = (
        registry.find("", "v1", "services"),
        registry.find("discovery.k8s.io", "v1", "endpointslices"),
    ) else {
        return Err(Unreachable { reason: "ServiceAccessError", message: "unregistered".into() });
    };
    let place = Place { info: services, namespace: Some(ns), name };
    let svc = match api.objects.get(place).await {
        Ok((svc, _)) => svc,
        Err(e) if e.is_not_found() => {
            return Err(Unreachable {
                reason: "ServiceNotFound",
                message: format!("service/{name} in {ns:?} is not present"),
            });
        }
        Err(e) => {
            return Err(Unreachable {
                reason: "ServiceAccessError",
                message: format!(
                    "service/{name} in {ns:?} cannot be checked due to: {}",
                    e.message
                ),
            });
        }
    };
    let port_name = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["port"].as_u64() == Some(u64::from(service.port)))
        .map(|p| p["name"].as_str().unwrap_or("").to_owned());
    let Some(port_name) = port_name else {
        return Err(Unreachable {
            reason: "ServicePortError",
            message: format!("service/{name} in {ns:?} is not listening on port {}", service.port),
        });
    };
    let dir = crate::registry::directory(slices, Some(ns));
    let listed = api.store.list(&dir, Default::default()).await.map_err(|e| Unreachable {
        reason: "EndpointsAccessError",
        message: format!("service/{name} in {ns:?} cannot be checked due to: {e}"),
    })?;
    let slices: Vec<Value> = listed
        .items
        .iter()
        .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
        .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == name)
        .collect();
    if slices.is_empty() {
        return Err(Unreachable {
            reason: "EndpointsNotFound",
            message: format!("cannot find endpointslices for service/{name} in {ns:?}"),
        });
    }
    let mut candidates = Vec::new();
    for slice in &slices {
        let port = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or("") == port_name)
            .and_then(|p| p["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok());
        let Some(port) = port else { continue };
        for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
            if endpoint["conditions"]["ready"] == Value::Bool(false) {
                continue;
            }
            if let Some(address) = endpoint["addresses"].get(0).and_then(Value::as_str) {
                candidates.push((address.to_owned(), port));
            }
        }
    }
    if candidates.is_empty() {
        return Err(Unreachable {
            reason: "MissingEndpoints",
            message: format!(
                "endpointslices for service/{name} in {ns:?} have no addresses with port name {port_name:?}"
            ),
        });
    }
    // Spread requests over the endpoints, as upstream's random pick does.
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    Ok(candidates.swap_remove(NEXT.fetch_add(1, Ordering::Relaxed) % candidates.len()))
}

/// Why a request to an extension server failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no front-proxy client certificate is configured")]
    NoClientCertificate,
    #[error("the APIService has no caBundle")]
    NoCaBundle,
    #[error(transparent)]
    Tls(#[from] keelson_pki::Error),
    #[error(transparent)]
    ServerName(#[from] rustls::pki_types::InvalidDnsNameError),
    #[error("dial tcp {address}: {error}")]
    Dial { address: String, error: std::io::Error },
    #[error("remote error: tls: {0}")]
    Handshake(std::io::Error),
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error(transparent)]
    Request(#[from] http::Error),
}

/// How to reach an extension server: where, and whether to check its certificate.
pub struct Target<'a> {
    pub address: &'a str,
    pub port: u16,
    pub service: &'a ServiceRef,
    /// The CA bundle its certificate must chain to; `None` checks nothing.
    pub ca_bundle: Option<&'a str>,
}

/// Sends `request` to `target` over TLS with the front-proxy client certificate.
pub async fn call(
    front_proxy: Option<&FrontProxy>,
    target: &Target<'_>,
    request: http::Request<Full<Bytes>>,
) -> Result<http::Response<Incoming>, CallError> {
    let front_proxy = front_proxy.ok_or(CallError::NoClientCertificate)?;
    let tls = keelson_pki::client_config_trusting(
        target.ca_bundle,
        &front_proxy.client_cert_pem,
        &front_proxy.client_key_pem,
    )?;
    let server_name = format!("{}.{}.svc", target.service.name, target.service.namespace);
    let server_name = rustls::pki_types::ServerName::try_from(server_name)?;
    let address = if target.address.contains(':') {
        format!("[{}]:{}", target.address, target.port)
    } else {
        format!("{}:{}", target.address, target.port)
    };
    let tcp = tokio::net::TcpStream::connect(address.as_str())
        .await
        .map_err(|error| CallError::Dial { address: address.clone(), error })?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(CallError::Handshake)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender.send_request(request).await?)
}

/// Sets the request headers that name `user` to an extension server, after removing
/// any the client sent (upstream's `SetAuthProxyHeaders`).
pub fn set_user_headers(headers: &mut http::HeaderMap, user: &User) {
    let names: Vec<http::header::HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            USERNAME_HEADERS.iter().chain(GROUP_HEADERS).any(|h| name.eq_ignore_ascii_case(h))
                || EXTRA_HEADER_PREFIXES
                    .iter()
                    .any(|p| name.len() >= p.len() && name[..p.len()].eq_ignore_ascii_case(p))
        })
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
    let mut add = |name: &str, value: &str| {
        if let (Ok(name), Ok(value)) =
            (http::header::HeaderName::try_from(name), http::header::HeaderValue::try_from(value))
        {
            headers.append(name, value);
        }
    };
    add(USERNAME_HEADERS[0], &user.name);
    for group in &user.groups {
        add(GROUP_HEADERS[0], group);
    }
    for (key, values) in &user.extra {
        let name = format!("{}{}", EXTRA_HEADER_PREFIXES[0], escape_extra_key(key));
        for value in values {
            add(&name, value);
        }
    }
}

/// An extra key as a header name: bytes a header name cannot hold, and `%`,
/// percent-encoded (upstream's `headerKeyEscape`).
pub fn escape_extra_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        let legal = b.is_ascii_alphanumeric() || b"!#$&'*+-.^_`|~".contains(&b);
        if legal {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Proxies an authenticated, authorized request to the extension server behind
/// `remote`: 503 `service unavailable` while it is not available or cannot be reached,
/// as upstream answers.
pub async fn handle(api: &ApiServer, remote: &Remote, req: Request) -> Response {
    if !remote.available {
        return unavailable("service unavailable");
    }
    let (address, port) = match resolve(api, &remote.service).await {
        Ok(found) => found,
        Err(why) => {
            tracing::info!(
                apiservice = remote.name,
                reason = why.reason,
                message = why.message,
                "cannot resolve an APIService's endpoint"
            );
            return unavailable("service unavailable");
        }
    };
    let mut headers = req.headers.clone();
    // The body is whole: hyper sets its length. Hop-by-hop headers stay on this hop.
    for name in [
        "authorization",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ] {
        headers.remove(name);
    }
    let impersonation: Vec<_> =
        headers.keys().filter(|n| n.as_str().starts_with("impersonate-")).cloned().collect();
    for name in impersonation {
        headers.remove(name);
    }
    set_user_headers(&mut headers, &req.user);
    let uri = req.uri.clone();
    let mut builder = http::Request::builder().method(req.method.clone()).uri(uri);
    if let Some(h) = builder.headers_mut() {
        *h = headers;
        if let Ok(host) = http::HeaderValue::try_from(format!("{address}:{port}")) {
            h.insert(http::header::HOST, host);
        }
    }
    let request = match builder.body(Full::new(req.body.clone())) {
        Ok(request) => request,
        Err(e) => {
            return crate::response::error_response(&crate::status::ApiError::bad_request(
                e.to_string(),
            ));
        }
    };
    let target = Target {
        address: &address,
        port,
        service: &remote.service,
        ca_bundle: if remote.insecure { None } else { remote.ca_bundle.as_deref() },
    };
    // Upstream falls back to the system's roots; Keelson ships none, so such an
    // APIService must name its CA.
    let called = match target.ca_bundle.is_none() && !remote.insecure {
        true => Err(CallError::NoCaBundle),
        false => call(api.aggregator.front_proxy(), &target, request).await,
    };
    match called {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            for hop in
                ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]
            {
                parts.headers.remove(hop);
            }
            http::Response::from_parts(parts, Relayed(body).boxed())
        }
        Err(e) => {
            tracing::info!(apiservice = remote.name, error = %e, "proxying to an extension API server failed");
            unavailable(&e.to_string())
        }
    }
}

/// A 503 as Go's `http.Error` writes it: upstream's `proxyError(…, "service
/// unavailable", 503)`, or the proxy's error.
fn unavailable(message: &str) -> Response {
    let mut response = http::Response::new(crate::response::full(format!("{message}\n")));
    *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert("x-content-type-options", http::HeaderValue::from_static("nosniff"));
    response
}

/// The extension server's response body, streamed as it comes (watches included); an
/// error ends it.
struct Relayed(Incoming);

impl Body for Relayed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.0).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(e))) => {
                tracing::info!(error = %e, "an extension API server's response ended early");
                Poll::Ready(None)
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_replaces_whatever_the_client_sent() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-remote-user", http::HeaderValue::from_static("mallory"));
        headers.insert("X-Remote-Extra-Scopes", http::HeaderValue::from_static("all"));
        let user = User {
            name: "alice".into(),
            groups: vec!["dev".into(), "system:authenticated".into()],
            extra: [("example.com/team".to_owned(), vec!["blue".to_owned()])].into(),
            ..Default::default()
        };
        set_user_headers(&mut headers, &user);
        assert_eq!(headers.get_all("x-remote-user").iter().collect::<Vec<_>>(), ["alice"]);
        assert_eq!(headers.get_all("x-remote-group").iter().count(), 2);
        assert!(headers.get("x-remote-extra-scopes").is_none());
        assert_eq!(
            headers.get("x-remote-extra-example.com%2Fteam").map(|v| v.as_bytes()),
            Some(&b"blue"[..])
        );
    }
}

//! ComponentStatus (`v1`, deprecated upstream since 1.19 and still served): the health of
//! the control plane, probed on every read and never stored, as upstream's
//! `pkg/registry/core/componentstatus` probes it — `controller-manager` and `scheduler`
//! by HTTPS `GET /healthz` on their secure ports (certificates not verified, no client
//! certificate, 20 s), `etcd-0` by a read of the datastore.
//!
//! Never fails a read for a component's sake: a component that does not answer is
//! `Healthy: False` with the reason as its message, as upstream's HTTP prober words it.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use serde_json::{Value, json};

use crate::request::{Request, Target};
use crate::response::{Response, json_response, with_warnings};
use crate::status::{ApiError, ApiResult, Reason};
use crate::{ApiServer, list};

/// Where the components' health is probed (upstream's `serversToValidate`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Components {
    /// kube-controller-manager's secure port (upstream: `127.0.0.1:10257`).
    pub controller_manager: SocketAddr,
    /// kube-scheduler's secure port (upstream: `127.0.0.1:10259`).
    pub scheduler: SocketAddr,
}

impl Default for Components {
    fn default() -> Self {
        Components {
            controller_manager: SocketAddr::from(([127, 0, 0, 1], 10257)),
            scheduler: SocketAddr::from(([127, 0, 0, 1], 10259)),
        }
    }
}

/// Upstream's `probeTimeOut`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// Upstream's HTTP prober reads at most this much of a body.
const MAX_BODY: usize = 10 * 1024;

/// The components, in the order listed.
const NAMES: [&str; 3] = ["scheduler", "controller-manager", "etcd-0"];

/// `GET /api/v1/componentstatuses/{name}`; a name that is no component is upstream's
/// plain error (500, no reason).
pub async fn get(api: &ApiServer, req: &Request, target: &Target) -> ApiResult<Response> {
    let name = target.name.as_deref().unwrap_or("");
    if !NAMES.contains(&name) {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Reason::Unknown,
            format!("Component not found: {name}"),
        ));
    }
    let status = probe(api, name).await;
    Ok(with_warnings(
        crate::answer::respond(req, target.info, StatusCode::OK, &status),
        &deprecated(),
    ))
}

/// `GET /api/v1/componentstatuses`: every component, probed at once; selectors filter
/// (a component status has no labels).
pub async fn list(api: &ApiServer, req: &Request, target: &Target) -> ApiResult<Response> {
    let info = target.info;
    let output = req.output(info, false)?;
    let filter = list::Filter::from_request(req, info)?;
    let statuses = futures_util::future::join_all(NAMES.map(|name| probe(api, name))).await;
    let items = statuses.into_iter().filter(|s| filter.matches(s)).collect();
    let body = list::list_as(info, req, output, items, json!({}))?;
    Ok(with_warnings(json_response(StatusCode::OK, &body), &deprecated()))
}

/// The warning upstream sends with every answer of this deprecated API.
fn deprecated() -> [String; 1] {
    ["v1 ComponentStatus is deprecated in v1.19+".to_owned()]
}

/// One component's status (upstream's `getComponentStatus`).
async fn probe(api: &ApiServer, name: &str) -> Value {
    let (status, message, error) = match name {
        "etcd-0" => match api.store.current_revision().await {
            Ok(_) => ("True", "ok".to_owned(), String::new()),
            Err(e) => ("False", String::new(), e.to_string()),
        },
        "controller-manager" => http_probe(api.components.controller_manager).await,
        _ => http_probe(api.components.scheduler).await,
    };
    let mut condition = json!({ "type": "Healthy", "status": status });
    if !message.is_empty() {
        condition["message"] = json!(message);
    }
    if !error.is_empty() {
        condition["error"] = json!(error);
    }
    json!({
        "kind": "ComponentStatus",
        "apiVersion": "v1",
        "metadata": { "name": name, "creationTimestamp": null },
        "conditions": [condition],
    })
}

/// Upstream's HTTP prober on `https://{addr}/healthz`: a 2xx is `True` with the body as
/// the message, a redirect `Unknown`, another code or no answer `False`.
async fn http_probe(addr: SocketAddr) -> (&'static str, String, String) {
    let url = format!("https://{addr}/healthz");
    match tokio::time::timeout(PROBE_TIMEOUT, get_healthz(addr)).await {
        Err(_) => (
            "False",
            format!(
                "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ),
            String::new(),
        ),
        Ok(Err(why)) => ("False", format!("Get {url:?}: {why}"), String::new()),
        Ok(Ok((code, body))) if code.is_redirection() => {
            ("Unknown", format!("Probe terminated redirects, Response body: {body}"), String::new())
        }
        Ok(Ok((code, body))) if code.is_success() => ("True", body, String::new()),
        Ok(Ok((code, _))) => (
            "False",
            format!("HTTP probe failed with statuscode: {}", code.as_u16()),
            String::new(),
        ),
    }
}

/// `GET /healthz` over TLS without verifying the server's certificate (upstream's
/// `InsecureSkipVerify`); the error as Go's client words the common ones.
async fn get_healthz(addr: SocketAddr) -> Result<(StatusCode, String), String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| dial_error(addr, &e))?;
    let tls = keelson_pki::unverified_client_config().map_err(|e| e.to_string())?;
    let server_name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("remote error: tls: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = http::Request::get("/healthz")
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let code = response.status();
    // A longer body is cut, as upstream's prober cuts it.
    let mut body = Vec::new();
    let mut incoming = response.into_body();
    while body.len() < MAX_BODY {
        match incoming.frame().await {
            Some(Ok(frame)) => body.extend_from_slice(frame.data_ref().map_or(&[][..], |d| d)),
            Some(Err(e)) => return Err(e.to_string()),
            None => break,
        }
    }
    body.truncate(MAX_BODY);
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

/// Go's `dial tcp` error for the common failures.
fn dial_error(addr: SocketAddr, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_owned(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_owned(),
        _ => e.to_string(),
    };
    format!("dial tcp {addr}: {why}")
}

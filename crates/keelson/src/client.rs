//! HTTPS connections to the API server: HTTP/1.1 with keep-alive, one connection per
//! client task, authenticated by the admin kubeconfig's client certificate. Used by
//! `keelson bench api` and `keelson secrets-encrypt`.
//!
//! Deliberately plain (hyper's connection API, no pool, no retries): what the benchmark
//! measures is the server, so the client must add as little of its own as it can.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How long one request may take before the benchmark gives up on the server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the API server listens, and how to reach it.
#[derive(Clone)]
pub struct Endpoint {
    addr: SocketAddr,
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl Endpoint {
    /// The server and client certificate of a kubeconfig (the admin one the server writes).
    pub fn from_kubeconfig(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let config: Kubeconfig = serde_saphyr::from_str(&text)
            .with_context(|| format!("invalid kubeconfig {}", path.display()))?;
        let (Some(cluster), Some(user)) = (config.clusters.first(), config.users.first()) else {
            bail!("kubeconfig {} has no cluster or no user", path.display());
        };
        let pem = |field: &str, value: &str| -> anyhow::Result<String> {
            let bytes = STANDARD
                .decode(value.trim())
                .with_context(|| format!("kubeconfig {}: {field} is not base64", path.display()))?;
            String::from_utf8(bytes)
                .with_context(|| format!("kubeconfig {}: {field} is not PEM text", path.display()))
        };
        let tls = keelson_pki::client_config(
            &pem("certificate-authority-data", &cluster.cluster.certificate_authority_data)?,
            &pem("client-certificate-data", &user.user.client_certificate_data)?,
            &pem("client-key-data", &user.user.client_key_data)?,
        )?;
        Endpoint::new(&cluster.cluster.server, tls)
    }

    /// `server_url` is the kubeconfig's `https://<ip>:<port>`; `tls` carries the client
    /// certificate. ALPN offers HTTP/1.1 only.
    pub fn new(server_url: &str, tls: Arc<rustls::ClientConfig>) -> anyhow::Result<Self> {
        let authority = server_url
            .strip_prefix("https://")
            .with_context(|| format!("server {server_url} is not an https:// url"))?;
        let addr: SocketAddr = authority
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("server {server_url} is not https://<ip>:<port>"))?;
        let mut tls = (*tls).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Endpoint {
            addr,
            connector: TlsConnector::from(Arc::new(tls)),
            server_name: ServerName::IpAddress(addr.ip().into()),
        })
    }

    /// A new TCP + TLS + HTTP/1.1 connection.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("cannot connect to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .with_context(|| format!("TLS handshake with {} failed", self.addr))?;
        let (sender, connection) = http1::handshake(TokioIo::new(tls)).await?;
        // Ends when the `Connection` (its sender) is dropped.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "bench connection ended with an error");
            }
        });
        Ok(Connection { sender, host: self.addr.to_string() })
    }

    /// `call` on a connection of its own, for the steps between measurements (a kept
    /// connection could have been closed as idle meanwhile).
    pub async fn call_once(&self, call: &Call) -> anyhow::Result<Bytes> {
        self.connect().await?.call(call).await
    }
}

/// One request, built before the clock starts, and the status it must answer with.
pub struct Call {
    /// Which operation of the phase this is; results are reported against it.
    pub index: usize,
    pub method: Method,
    pub path: String,
    pub body: Option<Bytes>,
    pub expect: StatusCode,
}

/// One HTTP/1.1 connection; requests on it run one at a time.
pub struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Connection {
    /// Sends `call` and reads the whole response body; a status other than the expected
    /// one is an error carrying the body (a `metav1.Status`).
    pub async fn call(&mut self, call: &Call) -> anyhow::Result<Bytes> {
        let request = self.request(&call.method, &call.path, call.body.clone())?;
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let response = self.send(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        })
        .await
        .with_context(|| format!("{} {} timed out", call.method, call.path))??;
        if status != call.expect {
            bail!(
                "{} {}: expected {}, got {status}: {}",
                call.method,
                call.path,
                call.expect,
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }

    /// Sends `method path` with an optional JSON body; the status and the whole body,
    /// whatever the status is.
    pub async fn request_json(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let request = self.request(&method, path, body)?;
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            let response = self.send(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        })
        .await
        .with_context(|| format!("{method} {path} timed out"))?
    }

    /// Sends a GET and returns the response body unread, for streams (watches). The
    /// connection carries nothing else afterwards.
    pub async fn open_stream(mut self, path: &str) -> anyhow::Result<Incoming> {
        let request = self.request(&Method::GET, path, None)?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.send(request))
            .await
            .with_context(|| format!("GET {path} timed out"))??;
        if response.status() != StatusCode::OK {
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            bail!("GET {path}: expected 200 OK, got {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(response.into_body())
    }

    fn request(
        &self,
        method: &Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host)
            .header(header::ACCEPT, "application/json");
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        Ok(builder.body(Full::new(body.unwrap_or_default()))?)
    }

    async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> anyhow::Result<http::Response<Incoming>> {
        self.sender.ready().await.context("connection to the API server closed")?;
        Ok(self.sender.send_request(request).await?)
    }
}

/// The parts of the admin kubeconfig a client uses.
#[derive(Deserialize)]
struct Kubeconfig {
    clusters: Vec<NamedCluster>,
    users: Vec<NamedUser>,
}

#[derive(Deserialize)]
struct NamedCluster {
    cluster: Cluster,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    certificate_authority_data: String,
}

#[derive(Deserialize)]
struct NamedUser {
    user: User,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct User {
    client_certificate_data: String,
    client_key_data: String,
}

//! Writes as a node: each request goes over a connection of its own, made with that
//! node's client certificate, closed when the answer is read.
//!
//! Why not a kube-rs `Client` per node: a client holds its connection pool, a buffer
//! task and channel (kilobytes each) and, once used, a TLS connection with its buffers
//! (tens of kilobytes) for as long as it is idle — times 5,000 nodes that alone is
//! hundreds of megabytes. A hollow node writes once per lease renewal (10 s) and when
//! its pods change, so a connection per request keeps only the requests in flight in
//! memory, at the cost of a TLS handshake per write. TLS resumption is off: the
//! client's session cache would hold tickets per node, and the API server's
//! (256 sessions) cannot remember thousands of nodes anyway.
//!
//! Requests are built with `kube::core::Request` (paths, parameters and bodies exactly
//! as kube-rs's `Api` sends them) and sent with hyper's HTTP/1.1 client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde::de::DeserializeOwned;

use crate::Error;
use crate::identity::Credential;

/// How long one request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The API server as the kubeconfig names it: where to connect and whom to trust.
pub struct Endpoint {
    addrs: Vec<SocketAddr>,
    server_name: ServerName<'static>,
    authority: String,
    /// A path the server URL carries before the API paths (usually empty).
    base_path: String,
    provider: Arc<CryptoProvider>,
    verifier: Arc<WebPkiServerVerifier>,
}

impl Endpoint {
    /// The server of `config` (a kubeconfig's), trusting its CA bundle.
    pub async fn new(config: &kube::Config) -> Result<Self, Error> {
        let url = &config.cluster_url;
        if url.scheme_str() != Some("https") {
            return Err(Error::Config(format!("the server {url} is not https")));
        }
        let host =
            url.host().ok_or_else(|| Error::Config(format!("the server {url} names no host")))?;
        let port = url.port_u16().unwrap_or(443);
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| Error::Config(format!("cannot resolve {host}: {e}")))?
            .collect();
        let name = config.tls_server_name.clone().unwrap_or_else(|| host.clone());
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| Error::Config(format!("invalid server name {name:?}: {e}")))?;
        let mut roots = RootCertStore::empty();
        for der in config.root_cert.iter().flatten() {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| Error::Config(format!("the kubeconfig's CA: {e}")))?;
        }
        if roots.is_empty() {
            return Err(Error::Config("the kubeconfig names no certificate authority".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| Error::Config(format!("the kubeconfig's CA: {e}")))?;
        Ok(Endpoint {
            addrs,
            server_name,
            authority: url.authority().map(|a| a.to_string()).unwrap_or(host),
            base_path: url.path().trim_end_matches('/').to_owned(),
            provider,
            verifier,
        })
    }

    /// A client that presents `credential`.
    pub fn client(self: &Arc<Self>, credential: &Credential) -> Result<NodeClient, Error> {
        let tls = |e: String| Error::Config(format!("node credential: {e}"));
        let chain = CertificateDer::pem_slice_iter(credential.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(credential.key_pem.as_bytes())
            .map_err(|e| tls(e.to_string()))?;
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls(e.to_string()))?
            .with_webpki_verifier(self.verifier.clone())
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls(e.to_string()))?;
        config.resumption = Resumption::disabled();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(NodeClient { endpoint: self.clone(), tls: Arc::new(config) })
    }
}

/// One node's way to the API server.
#[derive(Clone)]
pub struct NodeClient {
    endpoint: Arc<Endpoint>,
    tls: Arc<ClientConfig>,
}

/// A `metav1.Status` answer, as much as a hollow node reads of it.
#[derive(serde::Deserialize, Default)]
struct Status {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

impl NodeClient {
    /// Sends `request` (as `kube::core::Request` builds it) and reads the answer as `T`.
    pub async fn json<T: DeserializeOwned>(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<T, Error> {
        let body = self.send(request).await?;
        serde_json::from_slice(&body)
            .map_err(|e| Error::Transport(format!("cannot decode the answer: {e}")))
    }

    /// Sends `request`; a non-2xx answer is [`Error::Api`].
    pub async fn send(&self, request: http::Request<Vec<u8>>) -> Result<Bytes, Error> {
        let what = format!("{} {}", request.method(), request.uri().path());
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        parts.uri = format!("{}{path}", self.endpoint.base_path)
            .parse()
            .map_err(|e| Error::Transport(format!("{what}: {e}")))?;
        let headers = &mut parts.headers;
        let value =
            |s: &str| http::HeaderValue::from_str(s).map_err(|e| Error::Transport(e.to_string()));
        headers.insert(http::header::HOST, value(&self.endpoint.authority)?);
        headers.insert(http::header::USER_AGENT, value(crate::USER_AGENT)?);
        headers.insert(http::header::ACCEPT, http::HeaderValue::from_static("application/json"));
        let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(request))
            .await
            .map_err(|_| {
                Error::Transport(format!("{what}: no answer within {}s", REQUEST_TIMEOUT.as_secs()))
            })?
            .map_err(|e| Error::Transport(format!("{what}: {e}")))?;
        if status.is_success() {
            return Ok(body);
        }
        let answer: Status = serde_json::from_slice(&body).unwrap_or_default();
        Err(Error::Api { code: status.as_u16(), reason: answer.reason, message: answer.message })
    }

    async fn exchange(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<(http::StatusCode, Bytes), Box<dyn std::error::Error + Send + Sync>> {
        let tcp = tokio::net::TcpStream::connect(&self.endpoint.addrs[..]).await?;
        tcp.set_nodelay(true)?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(self.endpoint.server_name.clone(), tcp)
            .await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        // The connection ends by itself once the answer is read and the sender dropped.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

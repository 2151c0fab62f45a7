//! What every Keelson HTTPS server shares, as upstream's API server and its components
//! share `k8s.io/apiserver`'s secure serving and health checks:
//!
//! - [`serve`]: the accept loop — TLS (rustls; the configuration decides which client
//!   certificates are verified), HTTP/1.1 and HTTP/2, a bound on handshakes in progress
//!   and on how long a client may take for its handshake and request headers, and a
//!   graceful stop;
//! - [`Peer::identity`]: who a verified client certificate names;
//! - [`health`]: upstream's `/healthz`, `/livez` and `/readyz` answers from named checks.
//!
//! Used by the API server and by the secure port of the controller manager.
//!
//! Must never serve plain HTTP, and never decide what a peer may do: the caller answers
//! each request.

pub mod health;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// How long a client has for the TLS handshake, and then for each request's headers
/// (kube-apiserver's `ReadHeaderTimeout`, 32 s): a client that stalls is disconnected
/// instead of holding its connection for as long as it likes.
pub const HANDSHAKE_AND_HEADERS: Duration = Duration::from_secs(32);

/// How many connections may be in their TLS handshake at once: the phase before any
/// identity is known, so one client opening connections and stalling cannot keep the
/// rest out.
const HANDSHAKES_AT_ONCE: usize = 512;

/// The other end of an accepted connection.
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The client certificate it presented, verified by the TLS configuration's
    /// verifier; `None` if it presented none.
    pub certificate: Option<CertificateDer<'static>>,
}

impl Peer {
    /// Who the client certificate names, as upstream's x509 authenticator reads it (CN =
    /// user, O = groups, and `system:authenticated`): `None` without a certificate,
    /// `Some(None)` for one that names nobody (logged).
    pub fn identity(&self) -> Option<Option<keelson_pki::CertIdentity>> {
        let cert = self.certificate.as_ref()?;
        match keelson_pki::identity_from_der(cert) {
            Ok(identity) => Some(Some(identity.authenticated())),
            Err(e) => {
                tracing::info!(peer = %self.addr, error = %e, "client certificate has no usable identity");
                Some(None)
            }
        }
    }
}

/// Accepts connections on `listener` until `shutdown` turns true. For each connection
/// whose handshake succeeds, `connection` is asked once for the handler of its
/// requests; connections end gracefully on shutdown.
pub async fn serve<C, H, Fut, B>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
    connection: C,
) where
    C: Fn(&Peer) -> H + Send + Sync + 'static,
    H: Fn(http::Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = http::Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let acceptor = TlsAcceptor::from(tls);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_AT_ONCE));
    let connection = Arc::new(connection);
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
            // Full: this connection is dropped at once rather than queued.
            tracing::warn!(peer = %addr, "too many TLS handshakes in progress; closing a connection");
            continue;
        };
        let (acceptor, shutdown, connection) =
            (acceptor.clone(), shutdown.clone(), connection.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(HANDSHAKE_AND_HEADERS, acceptor.accept(tcp)).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    // A bad or foreign certificate ends here: the log says why, the
                    // client sees a failed handshake.
                    tracing::info!(peer = %addr, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!(peer = %addr, "TLS handshake timed out");
                    return;
                }
            };
            drop(handshake);
            let certificate = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).cloned();
            let handler = connection(&Peer { addr, certificate });
            http_connection(tls, addr, shutdown, handler).await;
        });
    }
}

/// Serves one connection's requests, HTTP/1.1 or HTTP/2 as ALPN chose.
async fn http_connection<H, Fut, B>(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    addr: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
    handler: H,
) where
    H: Fn(http::Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = http::Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let service = service_fn(move |req| {
        let answered = handler(req);
        async move { Ok::<_, std::convert::Infallible>(answered.await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HANDSHAKE_AND_HEADERS);
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
            }
        }
        _ = shutdown.changed() => conn.as_mut().graceful_shutdown(),
    }
}

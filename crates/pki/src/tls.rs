//! rustls configurations for the API server and its clients, always with the ring provider
//! passed explicitly.
//!
//! Must never install a process-wide crypto provider, and never reject a client for lacking a
//! certificate: anonymous requests reach the API server, which decides what they may do.

use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::{Error, Result};

/// ALPN protocols the API server offers, preferred first.
pub(crate) const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The serving certificate of a running server, replaceable while it serves: new
/// handshakes get the new certificate, open connections keep theirs.
#[derive(Debug)]
pub struct ServingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServingCert {
    fn certified(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Arc<CertifiedKey>> {
        let signing = provider()
            .key_provider
            .load_private_key(key)
            .map_err(|source| Error::Tls { side: "server", source })?;
        Ok(Arc::new(CertifiedKey::new(chain, signing)))
    }

    pub(crate) fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self> {
        Ok(ServingCert { current: RwLock::new(Self::certified(chain, key)?) })
    }

    /// Serves `chain`/`key` from the next handshake on; `false` if it was already served.
    pub(crate) fn replace(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<bool> {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if current.cert == chain {
            return Ok(false);
        }
        *current = Self::certified(chain, key)?;
        Ok(true)
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The API server's configuration: serving chain and key, ALPN, optional client certificates
/// verified against any of `cas`.
pub(crate) fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cas: &[CertificateDer<'static>],
) -> Result<Arc<ServerConfig>> {
    reloadable_server_config(Arc::new(ServingCert::new(chain, key)?), cas)
}

/// The API server's configuration, serving whatever `serving` holds at each handshake.
pub(crate) fn reloadable_server_config(
    serving: Arc<ServingCert>,
    cas: &[CertificateDer<'static>],
) -> Result<Arc<ServerConfig>> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca.clone()).map_err(|source| Error::Tls { side: "server", source })?;
    }
    config_with(serving, Some(roots))
}

/// Whether a client certificate (already accepted by the TLS handshake) chains to one of
/// the CAs of `ca_pem`: how the API server tells front-proxy certificates, which carry
/// request headers, from the cluster CA's, which name their user.
pub struct ClientCaVerifier {
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl ClientCaVerifier {
    pub fn new(ca_pem: &str) -> Result<ClientCaVerifier> {
        let roots = roots_from_pem(ca_pem, "client ca pem")?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(Error::Verifier)?;
        Ok(ClientCaVerifier { verifier })
    }

    /// Whether `cert` is signed by one of the CAs and valid now.
    pub fn verifies(&self, cert: &CertificateDer<'_>) -> bool {
        let now = rustls::pki_types::UnixTime::now();
        self.verifier.verify_client_cert(cert, &[], now).is_ok()
    }
}

impl std::fmt::Debug for ClientCaVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientCaVerifier")
    }
}

/// A component's secure port (the controller manager's): the serving chain and key, ALPN
/// `h2` then `http/1.1`, and client certificates verified against every certificate of
/// `client_ca_pem` but not required — without a bundle none are asked for.
pub fn secure_port_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca_pem: Option<&str>,
) -> Result<Arc<ServerConfig>> {
    let roots = client_ca_pem.map(|pem| roots_from_pem(pem, "client ca pem")).transpose()?;
    config_with(Arc::new(ServingCert::new(chain, key)?), roots)
}

/// Serving `resolver`'s certificate; client certificates verified against `roots` when
/// given, never required.
fn config_with(
    resolver: Arc<ServingCert>,
    roots: Option<RootCertStore>,
) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let tls = |source| Error::Tls { side: "server", source };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls)?;
    let builder = match roots {
        Some(roots) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .allow_unauthenticated()
                    .build()
                    .map_err(Error::Verifier)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client configuration trusting `ca_pem` and presenting the client certificate chain
/// `client_cert_pem` with key `client_key_pem` (all PEM). No ALPN protocols are set: the HTTP
/// client in use sets the ones it speaks.
pub fn client_config(
    ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
) -> Result<Arc<ClientConfig>> {
    let chain = CertificateDer::pem_slice_iter(client_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::input("client certificate pem", e.to_string()))?;
    if chain.is_empty() {
        return Err(Error::input("client certificate pem", "no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_slice(client_key_pem.as_bytes())
        .map_err(|e| Error::input("client key pem", e.to_string()))?;
    let config = client_builder(ca_pem)?
        .with_client_auth_cert(chain, key)
        .map_err(|source| Error::Tls { side: "client", source })?;
    Ok(Arc::new(config))
}

/// A client configuration trusting `ca_pem` and presenting no client certificate: an
/// anonymous client.
pub fn anonymous_client_config(ca_pem: &str) -> Result<Arc<ClientConfig>> {
    Ok(Arc::new(client_builder(ca_pem)?.with_no_client_auth()))
}

/// Every certificate of a PEM bundle, as trust roots; none is an error.
fn roots_from_pem(pem: &str, what: &'static str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| Error::input(what, e.to_string()))?;
        roots.add(cert).map_err(|e| Error::input(what, e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(Error::input(what, "no certificate found"));
    }
    Ok(roots)
}

fn client_builder(
    ca_pem: &str,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>> {
    let roots = roots_from_pem(ca_pem, "ca certificate pem")?;
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::Tls { side: "client", source })?
        .with_root_certificates(roots))
}

/// A client configuration presenting `client_cert_pem`/`client_key_pem` that trusts
/// `ca_pem`, or — without one — any server certificate at all: what an APIService with
/// `insecureSkipTLSVerify` asks for, and what kube-aggregator's availability probe uses.
pub fn client_config_trusting(
    ca_pem: Option<&str>,
    client_cert_pem: &str,
    client_key_pem: &str,
) -> Result<Arc<ClientConfig>> {
    if let Some(ca_pem) = ca_pem {
        return client_config(ca_pem, client_cert_pem, client_key_pem);
    }
    let chain = CertificateDer::pem_slice_iter(client_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::input("client certificate pem", e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(client_key_pem.as_bytes())
        .map_err(|e| Error::input("client key pem", e.to_string()))?;
    let config = unverified_builder()?
        .with_client_auth_cert(chain, key)
        .map_err(|source| Error::Tls { side: "client", source })?;
    Ok(Arc::new(config))
}

/// A client configuration that presents no certificate and accepts any server's (Go's
/// `InsecureSkipVerify`): for probes that only ask whether something answers, such as
/// ComponentStatus's.
pub fn unverified_client_config() -> Result<Arc<ClientConfig>> {
    Ok(Arc::new(unverified_builder()?.with_no_client_auth()))
}

fn unverified_builder()
-> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>> {
    let provider = provider();
    Ok(ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::Tls { side: "client", source })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider))))
}

/// Accepts any server certificate, checking only that the handshake is signed by it.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

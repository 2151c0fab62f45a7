//! The cluster PKI of `keelson server`: the cluster CA, the API server's serving certificate,
//! client certificates and the kubeconfigs that carry them, and the rustls configurations that
//! put them to use.
//!
//! Everything lives in one TLS directory (mode 0700):
//!
//! | file                          | mode | what                                               |
//! |-------------------------------|------|----------------------------------------------------|
//! | `ca.crt`, `ca.key`            | 0600, 0600 | cluster CA, ECDSA P-256, 10 years            |
//! | `serving-kube-apiserver.crt`, `.key` | 0600, 0600 | API server certificate, 90 days, re-issued 30 days before expiry |
//! | `service.key`                 | 0600 | service account token signing key, ECDSA P-256     |
//! | `front-proxy-ca.crt`, `.key`  | 0600, 0600 | front-proxy CA (kube-aggregator's `--requestheader-client-ca-file`), ECDSA P-256, 10 years |
//!
//! The front-proxy client certificate (CN `front-proxy-client`, 90 days), with which the API
//! server authenticates to extension API servers, is issued by the front-proxy CA at each
//! [`Pki::ensure`] and kept in memory only.
//!
//! [`Pki::ensure`] loads what exists and creates what is missing; it is idempotent and safe to
//! call on every start. Leaf certificates are derived material and are re-issued (with the reason
//! logged) whenever they stop fitting; the CA is never replaced behind the operator's back,
//! because that would orphan every certificate and kubeconfig it issued.
//!
//! This crate must never decide what an authenticated identity may do (that is the API server's
//! authorizer), never install a process-wide rustls crypto provider, and never pull in aws-lc:
//! ring is passed explicitly everywhere.

mod ca;
mod cert;
mod client;
mod csr;
mod der;
mod error;
mod files;
mod kubeconfig;
mod service_account;
mod serving;
mod tls;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use crate::cert::ParseError;
pub use crate::client::{CertIdentity, identity_from_der};
pub use crate::csr::{
    CertificatePemError, CertificateRequest, RequestError, check_certificate_pem,
};
pub use crate::error::{Error, Result};
pub use crate::service_account::{SERVICE_ACCOUNT_KEY, ServiceAccountKey};
pub use crate::serving::{host_addresses, load_serving, self_signed_serving};
pub use crate::tls::{
    ClientCaVerifier, ServingCert, anonymous_client_config, client_config, client_config_trusting,
    secure_port_config, unverified_client_config,
};

/// File names inside the TLS directory.
pub mod file_names {
    /// The CA certificate.
    pub const CA_CERT: &str = "ca.crt";
    /// The CA private key.
    pub const CA_KEY: &str = "ca.key";
    /// The API server's serving certificate.
    pub const SERVING_CERT: &str = "serving-kube-apiserver.crt";
    /// The API server's serving key.
    pub const SERVING_KEY: &str = "serving-kube-apiserver.key";
    /// The front-proxy CA certificate: it signs the client certificate the API server
    /// proxies to extension API servers with, and only that.
    pub const FRONT_PROXY_CA_CERT: &str = "front-proxy-ca.crt";
    /// The front-proxy CA private key.
    pub const FRONT_PROXY_CA_KEY: &str = "front-proxy-ca.key";
}

/// The common name of the front-proxy client certificate: the one name extension API
/// servers (and the API server itself) accept request headers from
/// (`--requestheader-allowed-names`, as kubeadm and k3s set it).
pub const FRONT_PROXY_CLIENT: &str = "front-proxy-client";

/// How long the leaf certificates the CA signs live at most: client, serving and CSR-issued.
pub const LEAF_VALIDITY: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);

/// The loaded cluster PKI: the CA (certificate and signing key) and the API server's serving
/// certificate and key.
pub struct Pki {
    ca: Arc<ca::Ca>,
    serving_cert: CertificateDer<'static>,
    serving_key: PrivateKeyDer<'static>,
    front_proxy_ca: ca::Ca,
    /// The front-proxy client certificate and key, PEM.
    front_proxy_client: (String, String),
}

/// What [`Pki::ensure`] needs beyond the TLS directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PkiOptions {
    /// Extra SANs for the serving certificate besides the fixed ones: each is an IP SAN if it
    /// parses as an IP address, a DNS SAN otherwise.
    pub extra_sans: Vec<String>,
}

impl Pki {
    /// Loads `<tls_dir>/ca.{crt,key}` and `serving-kube-apiserver.{crt,key}`, creating any that
    /// are missing (directory 0700, keys and certificates 0600).
    ///
    /// The CA is ECDSA P-256, CN `keelson-ca@<unix time>`, valid 10 years; it is created only when
    /// both of its files are absent, and a missing half, an unparseable file or a key that does
    /// not match is an [`Error::CaUnusable`].
    ///
    /// The serving certificate is ECDSA P-256, CN `kube-apiserver`, serverAuth, valid 90 days, with
    /// SANs `127.0.0.1`, `::1`, `localhost`, the host name, the host's non-loopback addresses
    /// (IPv4 from `/proc/net/fib_trie`, global IPv6 from `/proc/net/if_inet6`), `kubernetes`,
    /// `kubernetes.default`, `kubernetes.default.svc`, `kubernetes.default.svc.cluster.local`,
    /// `10.43.0.1` and `options.extra_sans`. It is re-issued, with the reason logged, when it is
    /// missing or unparseable, lacks a wanted SAN, expires within 30 days, or was not signed by the
    /// current CA.
    pub fn ensure(tls_dir: &Path, options: &PkiOptions) -> Result<Pki> {
        files::ensure_dir(tls_dir)?;
        let ca = ca::Ca::load_or_create(tls_dir)?;
        let (serving_cert, serving_key) = serving::ensure(tls_dir, &ca, options)?;
        let front_proxy_ca = ca::Ca::load_or_create_named(
            tls_dir,
            file_names::FRONT_PROXY_CA_CERT,
            file_names::FRONT_PROXY_CA_KEY,
            "keelson-front-proxy-ca",
        )?;
        let front_proxy_client = client::issue(&front_proxy_ca, FRONT_PROXY_CLIENT, &[])?;
        Ok(Pki { ca: Arc::new(ca), serving_cert, serving_key, front_proxy_ca, front_proxy_client })
    }

    /// The front-proxy CA certificate, PEM (`requestheader-client-ca-file`).
    pub fn front_proxy_ca_pem(&self) -> &str {
        self.front_proxy_ca.cert_pem()
    }

    /// The front-proxy client certificate and key, PEM: what the API server presents to
    /// extension API servers (`--proxy-client-cert-file`, `--proxy-client-key-file`).
    pub fn front_proxy_client(&self) -> (&str, &str) {
        (&self.front_proxy_client.0, &self.front_proxy_client.1)
    }

    /// Issues a client certificate signed by the front-proxy CA, for tests of
    /// request-header authentication.
    pub fn issue_front_proxy_client(&self, user: &str) -> Result<(String, String)> {
        client::issue(&self.front_proxy_ca, user, &[])
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        self.ca.cert_der()
    }

    /// The serving certificate, DER.
    pub fn serving_cert_der(&self) -> &CertificateDer<'static> {
        &self.serving_cert
    }

    /// Issues a client certificate (ECDSA P-256, clientAuth, 90 days) with CN = `user` and one
    /// O per group, signed by the CA; returns `(cert_pem, key_pem)`, the key in PKCS#8.
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<(String, String)> {
        client::issue(&self.ca, user, groups)
    }

    /// A handle that signs certificate signing requests with this CA and can do nothing
    /// else, for the API server's CSR signers.
    pub fn csr_signer(&self) -> CsrSigner {
        CsrSigner { ca: self.ca.clone() }
    }

    /// Writes a kubeconfig for `user` in `groups` to `path`: YAML, mode 0600, written atomically
    /// (temporary file + rename), with the CA (`certificate-authority-data`), a client
    /// certificate and key (`client-certificate-data`, `client-key-data`) embedded, server
    /// `server_url`, and cluster, context and user all named `default` like k3s.
    ///
    /// The client certificate already in the file is kept unless the file is missing or
    /// unparseable, the certificate expires within 30 days, was not signed by the current CA, or
    /// names another user or other groups; then a fresh one is issued. Missing parent
    /// directories are created. An unchanged file is not rewritten.
    pub fn write_kubeconfig(
        &self,
        path: &Path,
        server_url: &str,
        user: &str,
        groups: &[&str],
    ) -> Result<()> {
        kubeconfig::write(self, path, server_url, user, groups)
    }

    /// A rustls server configuration for the API server: the serving certificate, ALPN `h2` then
    /// `http/1.1`, and client certificates verified against the CA but not required, so
    /// anonymous requests reach the server, which decides what they may do. Uses the ring
    /// provider explicitly with the safe default protocol versions.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        tls::server_config(
            vec![self.serving_cert.clone()],
            self.serving_key.clone_key(),
            &[self.ca.cert_der().clone()],
        )
    }

    /// [`Pki::server_config`] that also accepts the front-proxy CA's client certificates,
    /// for an API server that takes request headers from them (given this PKI's front
    /// proxy, which tells those certificates apart; any other would read them as users).
    pub fn server_config_with_front_proxy(&self) -> Result<Arc<rustls::ServerConfig>> {
        tls::server_config(
            vec![self.serving_cert.clone()],
            self.serving_key.clone_key(),
            &self.client_roots(),
        )
    }

    /// The CAs whose client certificates an API server with a front proxy accepts.
    fn client_roots(&self) -> [CertificateDer<'static>; 2] {
        [self.ca.cert_der().clone(), self.front_proxy_ca.cert_der().clone()]
    }

    /// [`Pki::server_config_with_front_proxy`] whose serving certificate can be renewed while
    /// the server runs: pass a later [`Pki`] to [`Pki::serve_current`] with the returned
    /// handle.
    pub fn reloadable_server_config(
        &self,
    ) -> Result<(Arc<rustls::ServerConfig>, Arc<ServingCert>)> {
        let serving = Arc::new(ServingCert::new(
            vec![self.serving_cert.clone()],
            self.serving_key.clone_key(),
        )?);
        Ok((tls::reloadable_server_config(serving.clone(), &self.client_roots())?, serving))
    }

    /// Makes `serving` hand out this PKI's serving certificate from the next handshake;
    /// `true` if that changed the certificate.
    pub fn serve_current(&self, serving: &ServingCert) -> Result<bool> {
        serving.replace(vec![self.serving_cert.clone()], self.serving_key.clone_key())
    }

    /// Forces new leaf certificates: the serving certificate now, a client certificate the
    /// next time a kubeconfig is written (see [`Pki::write_kubeconfig`]). The CA stays.
    pub fn rotate_serving(tls_dir: &Path, options: &PkiOptions) -> Result<Pki> {
        for name in [file_names::SERVING_CERT, file_names::SERVING_KEY] {
            let path = tls_dir.join(name);
            if path.exists() {
                std::fs::remove_file(&path).map_err(|source| Error::Io {
                    op: "remove",
                    path: path.clone(),
                    source,
                })?;
            }
        }
        Pki::ensure(tls_dir, options)
    }
}

/// Who a certificate names and when it expires (Unix seconds), for `certificate check`.
pub fn certificate_expiry(der: &[u8]) -> Result<(String, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::input("certificate", e.to_string()))?;
    Ok((cert.subject().to_string(), cert.validity().not_after.timestamp()))
}

/// Signs certificate signing requests with the cluster CA ([`CsrSigner::sign_csr`]);
/// cheap to clone, holds nothing but the CA.
#[derive(Clone)]
pub struct CsrSigner {
    ca: Arc<ca::Ca>,
}

impl CsrSigner {
    /// A signer with the CA in these PEM files (a controller manager's
    /// `--cluster-signing-cert-file` and `--cluster-signing-key-file`).
    pub fn from_files(cert_path: &Path, key_path: &Path) -> Result<CsrSigner> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| Error::ca(path, format!("cannot read: {e}")))
        };
        let ca = ca::Ca::load(cert_path, &read(cert_path)?, key_path, &read(key_path)?)?;
        Ok(CsrSigner { ca: Arc::new(ca) })
    }

    /// Signs a certificate signing request (DER) with the CA, as upstream's CSR signers do:
    /// the request's subject, public key and subject alternative names; key usages and
    /// extended key usages from `usages` (the `certificates.k8s.io/v1` names, e.g.
    /// `"client auth"`; an unknown one is an error); basic constraints "not a CA"; valid
    /// from now (five minutes earlier for certificates of 8 hours or more) for `validity`,
    /// at most [`LEAF_VALIDITY`] and never past the CA's own expiry. Checks the request's
    /// signature first. Returns the certificate, PEM.
    pub fn sign_csr(
        &self,
        csr_der: &[u8],
        usages: &[&str],
        validity: std::time::Duration,
    ) -> Result<String> {
        csr::sign(&self.ca, csr_der, usages, validity)
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }
}

impl fmt::Debug for CsrSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsrSigner").field("ca_pem", &self.ca.cert_pem()).finish_non_exhaustive()
    }
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("ca_pem", &self.ca.cert_pem())
            .field("serving_key", &"[elided]")
            .finish_non_exhaustive()
    }
}

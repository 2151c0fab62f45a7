//! Who a hollow node is to the API server: `system:node:<name>` in `system:nodes`, by
//! a client certificate obtained as a kubelet bootstraps one — an ECDSA P-256 key made
//! here, a CertificateSigningRequest for signer
//! `kubernetes.io/kube-apiserver-client-kubelet` created with the process's kubeconfig,
//! approved by the controller manager's approving controller (the kubeconfig's user
//! must be allowed `create` on `certificatesigningrequests/nodeclient`, as bootstrap
//! tokens and the admin are) and signed by its signing controller.
//!
//! Issued certificates are kept in `--cert-dir` (`<node>.pem`: certificate and key,
//! 0600, as the kubelet's `kubelet-client-current.pem`), so a restart reuses them; a
//! cached certificate that expires within a day, or names another identity, is asked
//! for anew. A request whose certificate has been read is deleted (upstream leaves that
//! to the CSR cleaner, which Keelson does not run yet).
//!
//! Must never write a private key where another user can read it.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keelson_api::k8s_openapi::ByteString;
use keelson_api::k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_runtime::informer::{Change, Informer, Informers, Selectors};
use kube::api::{Api, DeleteParams, PostParams};
use rustls::pki_types::pem::PemObject;
use tokio::sync::oneshot;

use crate::Error;

/// The signer of kubelet client certificates.
pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The label on the requests this process makes, which its watch selects.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "keelson-hollow");
/// How long a certificate is waited for before the request is given up.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(600);
/// A cached certificate with less left than this is replaced.
const MIN_REMAINING_SECONDS: i64 = 24 * 3600;

/// A node's client certificate and key, PEM.
#[derive(Clone)]
pub struct Credential {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The user a node authenticates as.
pub fn node_user(node: &str) -> String {
    format!("system:node:{node}")
}

/// Gets node client certificates through the CSR API, many at once: one watch of this
/// process's requests tells every waiting node when its certificate is issued.
pub struct Issuer {
    api: Api<CertificateSigningRequest>,
    requests: Arc<Informer<CertificateSigningRequest>>,
    waiters: Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>>,
    _informers: Informers,
}

type Outcome = Result<String, String>;

/// The certificate of an issued request, or why it will never have one.
fn outcome(csr: &CertificateSigningRequest) -> Option<Outcome> {
    let status = csr.status.as_ref()?;
    if let Some(cert) = status.certificate.as_ref().filter(|c| !c.0.is_empty()) {
        return Some(
            String::from_utf8(cert.0.clone()).map_err(|_| "certificate is not PEM".into()),
        );
    }
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True")
        .map(|c| Err(format!("{}: {}", c.type_, c.message.clone().unwrap_or_default())))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Issuer {
    /// Starts watching this process's requests with `client` (the kubeconfig's).
    pub fn new(client: kube::Client) -> Self {
        let informers = Informers::new(client.clone());
        let requests = informers.get_with::<CertificateSigningRequest>(Selectors {
            labels: Some(format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)),
            fields: None,
        });
        let waiters: Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>> = Arc::default();
        let sink = waiters.clone();
        requests.on_change(move |change| {
            if let Change::Added(csr) | Change::Updated { new: csr, .. } = change
                && let Some(outcome) = outcome(csr)
                && let Some(waiter) =
                    lock(&sink).remove(csr.metadata.name.as_deref().unwrap_or_default())
            {
                let _ = waiter.send(outcome);
            }
        });
        Issuer { api: Api::all(client), requests, waiters, _informers: informers }
    }

    /// A new key and a certificate for `node`, through a signing request.
    pub async fn issue(&self, node: &str) -> Result<Credential, Error> {
        let user = node_user(node);
        let failed = |reason: String| Error::Certificate { node: node.to_owned(), reason };
        let key = rcgen::KeyPair::generate().map_err(|e| failed(e.to_string()))?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, user.as_str());
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:nodes");
        let request = params
            .serialize_request(&key)
            .and_then(|r| r.pem())
            .map_err(|e| failed(e.to_string()))?;
        let csr = CertificateSigningRequest {
            metadata: ObjectMeta {
                generate_name: Some("node-csr-".into()),
                labels: Some([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())].into()),
                ..ObjectMeta::default()
            },
            spec: CertificateSigningRequestSpec {
                request: ByteString(request.into_bytes()),
                signer_name: SIGNER.into(),
                // An ECDSA key: no key encipherment, as the kubelet asks.
                usages: Some(vec!["digital signature".into(), "client auth".into()]),
                ..CertificateSigningRequestSpec::default()
            },
            status: None,
        };
        let created = self.api.create(&PostParams::default(), &csr).await?;
        let name = created.metadata.name.unwrap_or_default();
        let (tx, rx) = oneshot::channel();
        {
            // The handler looks for waiters after updating the store: under the lock,
            // either the store already has the outcome or the handler will see us.
            let mut waiters = lock(&self.waiters);
            match self.requests.get(&name).as_deref().and_then(outcome) {
                Some(done) => drop(tx.send(done)),
                None => drop(waiters.insert(name.clone(), tx)),
            }
        }
        let answer = tokio::time::timeout(ISSUE_TIMEOUT, rx).await;
        lock(&self.waiters).remove(&name);
        let cert_pem = match answer {
            Ok(Ok(Ok(cert))) => cert,
            Ok(Ok(Err(reason))) => return Err(failed(format!("request {name}: {reason}"))),
            Ok(Err(_)) | Err(_) => {
                return Err(failed(format!(
                    "request {name} was not approved and signed within {}s",
                    ISSUE_TIMEOUT.as_secs()
                )));
            }
        };
        if let Err(e) = self.api.delete(&name, &DeleteParams::default()).await {
            tracing::debug!(node, csr = name, error = %e, "cannot delete a served signing request");
        }
        Ok(Credential { cert_pem, key_pem: key.serialize_pem() })
    }
}

/// `--cert-dir`: issued certificates, one file per node.
#[derive(Clone, Debug)]
pub struct CertDir(PathBuf);

impl CertDir {
    /// The directory, made 0700 if missing.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let io = |e: std::io::Error| Error::Io { path: path.to_owned(), source: e };
        std::fs::create_dir_all(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        Ok(CertDir(path.to_owned()))
    }

    fn file(&self, node: &str) -> PathBuf {
        self.0.join(format!("{node}.pem"))
    }

    /// The cached credential of `node`, if it is still good for it.
    pub fn load(&self, node: &str) -> Option<Credential> {
        let pem = std::fs::read_to_string(self.file(node)).ok()?;
        let key_start = pem.find("-----BEGIN PRIVATE KEY-----")?;
        let (cert_pem, key_pem) = pem.split_at(key_start);
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
        let identity = keelson_pki::identity_from_der(&der).ok()?;
        if identity.user != node_user(node) || !identity.groups.iter().any(|g| g == "system:nodes")
        {
            return None;
        }
        let (_, not_after) = keelson_pki::certificate_expiry(&der).ok()?;
        let now = keelson_api::k8s_openapi::jiff::Timestamp::now().as_second();
        (not_after - now > MIN_REMAINING_SECONDS)
            .then(|| Credential { cert_pem: cert_pem.to_owned(), key_pem: key_pem.to_owned() })
    }

    /// Keeps `credential` for `node` (0600, written whole or not at all).
    pub fn store(&self, node: &str, credential: &Credential) -> Result<(), Error> {
        let path = self.file(node);
        let tmp = path.with_extension("pem.tmp");
        let io = |e: std::io::Error| Error::Io { path: path.clone(), source: e };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        let mut body = credential.cert_pem.clone();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        body.push_str(&credential.key_pem);
        file.write_all(body.as_bytes()).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(())
    }

    /// Drops the cached credential of `node` (the API server no longer accepts it).
    pub fn forget(&self, node: &str) {
        let _ = std::fs::remove_file(self.file(node));
    }
}

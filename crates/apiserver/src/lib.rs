//! Keelson's kube-apiserver: the Kubernetes API over HTTPS, on the store.
//!
//! A request goes: TLS and client-certificate authentication ([`server`]) → routing
//! ([`router`]) → discovery, version and health ([`discovery`]) or a REST verb
//! ([`rest`], [`watch`], [`patch`]) → the generic store ([`registry`]) → the
//! [`keelson_store::Store`]. Errors are `metav1.Status` ([`status`]).
//!
//! Every other component reaches the cluster through this server; it is the only one
//! that touches the store.

pub mod admission;
pub mod aggregator;
mod answer;
pub mod apf;
pub mod apply;
pub mod audit;
pub mod auth;
pub mod authn;
mod cache;
pub mod cel;
pub mod componentstatus;
pub mod crd;
mod discovery;
pub mod encryption;
#[doc(hidden)]
pub mod fuzzing;
mod gojson;
#[cfg(test)]
mod layering;
mod list;
pub mod meta;
pub mod metrics;
mod negotiation;
mod openapi;
mod patch;
mod pods;
pub use keelson_core::quantity;
pub mod registry;
mod request;
mod response;
mod rest;
mod router;
mod scale;
mod server;
pub mod services;
pub mod status;
mod storage;
pub mod structural;
mod subresources;
mod table;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keelson_api::Registry;
use keelson_store::Store;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch as signal;

pub use discovery::git_version;
use registry::{Objects, Place};

keelson_api::k8s_openapi::k8s_if_1_34! {
    /// The Kubernetes minor version whose API is served.
    pub const KUBERNETES_MINOR: u32 = 34;
}

/// The largest request body accepted, as upstream's `MaxRequestBodyBytes` (3 MiB).
pub const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;

/// The namespaces every cluster has.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

pub struct Config {
    pub bind: SocketAddr,
    pub store: Arc<dyn Store>,
    pub tls: Arc<rustls::ServerConfig>,
    /// Where Service cluster IPs come from (`--service-cidr`, default 10.43.0.0/16).
    pub service_cidr: services::Cidr,
    /// The address other hosts and pods reach this server at (the `kubernetes`
    /// Service's endpoint); the port is the one bound.
    pub advertise_address: std::net::IpAddr,
    /// What is encrypted at rest, and how (`--encryption-provider-config`); the caller
    /// may keep a clone to reload it while the server runs.
    pub encryption: Option<encryption::Encryption>,
    /// Where the audit log goes and what it records; `None` records nothing.
    pub audit: Option<audit::AuditConfig>,
    /// PodSecurity admission's defaults and exemptions.
    pub pod_security: admission::podsecurity::Config,
    /// The admission plugins turned on and off beyond the defaults
    /// (`--enable-admission-plugins`, `--disable-admission-plugins`).
    pub admission_plugins: admission::plugins::Selection,
    /// The signing key and issuer of service account tokens; `None` serves none.
    pub service_accounts: Option<authn::serviceaccount::Config>,
    /// Where ComponentStatus probes the controller manager and the scheduler.
    pub components: componentstatus::Components,
    /// The front proxy: request-header authentication, the certificate extension API
    /// servers are called with, the trust published for them; `None` takes no request
    /// headers and reaches no extension server (its APIServices stay unavailable).
    pub front_proxy: Option<aggregator::FrontProxy>,
    /// The requests executing at once, read-only and mutating
    /// (`--max-requests-inflight`, `--max-mutating-requests-inflight`): API Priority and
    /// Fairness divides their sum among its priority levels.
    pub max_requests_inflight: u32,
    pub max_mutating_requests_inflight: u32,
    /// Static bearer tokens (`--token-auth-file`); `None` accepts none.
    pub token_file: Option<authn::tokenfile::TokenFile>,
}

impl Config {
    /// A server on a random loopback port with the default service CIDR
    /// (`10.43.0.0/16`) and every option at its default: no encryption, no audit log,
    /// no service account tokens. Tests and tools start from it and set what they need.
    pub fn loopback(store: Arc<dyn Store>, tls: Arc<rustls::ServerConfig>) -> Config {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            store,
            tls,
            service_cidr: services::Cidr::parse("10.43.0.0/16").expect("a valid CIDR"),
            advertise_address: std::net::IpAddr::from([127, 0, 0, 1]),
            encryption: None,
            audit: None,
            pod_security: Default::default(),
            admission_plugins: Default::default(),
            max_requests_inflight: 400,
            max_mutating_requests_inflight: 200,
            token_file: None,
            service_accounts: None,
            components: Default::default(),
            front_proxy: None,
        }
    }
}

/// The state every request handler shares.
pub struct ApiServer {
    store: Arc<dyn Store>,
    objects: Objects,
    shutting_down: AtomicBool,
    service_cidr: services::Cidr,
    caches: Arc<cache::Caches>,
    auditor: Option<audit::Auditor>,
    authorizer: Arc<auth::Authorizer>,
    /// The enabled admission plugins, in upstream's order.
    admission: admission::Chain,
    tokens: Option<authn::serviceaccount::Tokens>,
    /// The configuration in effect and the store under the encryption, for the status.
    encryption: Option<(encryption::Encryption, Arc<dyn Store>)>,
    /// The built-in resources and those CustomResourceDefinitions add.
    custom: crd::Served,
    /// What ComponentStatus probes.
    components: componentstatus::Components,
    /// Requests, watch events, admission and store metrics, served at `/metrics`.
    metrics: metrics::Metrics,
    /// Who may name users in request headers; `None` without a front proxy.
    request_header: Option<authn::requestheader::RequestHeader>,
    /// The aggregation layer's state: the front proxy and the Service-backed APIServices.
    aggregator: aggregator::Aggregator,
    /// API Priority and Fairness: each request's seat, queue or refusal.
    apf: apf::Apf,
    /// The `--token-auth-file` tokens.
    static_tokens: Option<authn::tokenfile::TokenFile>,
}

impl ApiServer {
    fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// The resources served now: the built-in ones and the established custom ones.
    pub fn registry(&self) -> Arc<Registry> {
        self.custom.registry()
    }

    /// Whether `kv`, read from the store, is encrypted otherwise than a write would
    /// encrypt it now ([`encryption::stale`]); never without an encryption configuration.
    async fn stored_stale(&self, kv: &keelson_store::KeyValue) -> keelson_store::Result<bool> {
        match &self.encryption {
            Some((encryption, raw)) => encryption::stale(encryption, raw.as_ref(), kv).await,
            None => Ok(false),
        }
    }
}

/// A running server; dropping it does not stop it, [`Running::shutdown`] does.
pub struct Running {
    pub local_addr: SocketAddr,
    api: Arc<ApiServer>,
    stop: signal::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets open connections finish their requests, and returns.
    pub async fn shutdown(self) {
        self.api.shutting_down.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot open the audit log {path}: {source}")]
    Audit { path: String, source: std::io::Error },
    #[error("cannot create {name}: {message}")]
    Bootstrap { name: String, message: String },
    #[error(transparent)]
    Admission(#[from] admission::plugins::Error),
}

/// Binds, creates what every cluster has (system namespaces), and serves.
pub async fn serve(config: Config) -> Result<Running, Error> {
    let (bind, tls, advertise_address) =
        (config.bind, config.tls.clone(), config.advertise_address);
    let api = ApiServer::build(config).await?;
    let listener =
        TcpListener::bind(bind).await.map_err(|source| Error::Listen { addr: bind, source })?;
    let local_addr =
        listener.local_addr().map_err(|source| Error::Listen { addr: bind, source })?;
    start(&api).await?;
    services::kubernetes_service(&api, SocketAddr::new(advertise_address, local_addr.port()))
        .await
        .map_err(|e| Error::Bootstrap { name: "default/kubernetes".into(), message: e.message })?;
    let (stop, stopped) = signal::channel(false);
    let task = tokio::spawn(server::accept_loop(api.clone(), listener, tls, stopped));
    tracing::info!(
        mutating = %api.admission.mutating().join(","),
        validating = %api.admission.validating().join(","),
        "admission plugins loaded in order"
    );
    tracing::info!(%local_addr, version = %git_version(), "serving the Kubernetes API");
    Ok(Running { local_addr, api, stop, task })
}

impl ApiServer {
    /// The server's state from its configuration, before it listens: what `serve`
    /// runs, and what unit tests build to call handlers, admission and authorization
    /// without HTTPS ([`ApiServer::for_tests`]).
    async fn build(config: Config) -> Result<Arc<ApiServer>, Error> {
        let admission_plugins = config.admission_plugins.resolve()?;
        let metrics = metrics::Metrics::default();
        let raw = config.store.clone();
        // Timed below the encryption, as upstream times its etcd calls.
        let timed = metrics::store::Instrumented::wrap(config.store.clone(), &metrics);
        let (store, encryption) = match config.encryption.clone() {
            Some(encryption) => (
                encryption::EncryptedStore::wrap(timed, encryption.clone()),
                Some((encryption, raw)),
            ),
            None => (timed, None),
        };
        let auditor = match config.audit.clone() {
            Some(audit) => {
                let path = audit.path.display().to_string();
                Some(audit::Auditor::start(audit).map_err(|source| Error::Audit { path, source })?)
            }
            None => None,
        };
        let tokens = match config.service_accounts {
            Some(accounts) => Some(authn::serviceaccount::Tokens::new(accounts).map_err(|e| {
                Error::Bootstrap {
                    name: "service account signing key".into(),
                    message: e.to_string(),
                }
            })?),
            None => None,
        };
        let request_header = match &config.front_proxy {
            Some(front_proxy) => {
                Some(authn::requestheader::RequestHeader::new(front_proxy).map_err(|e| {
                    Error::Bootstrap { name: "front-proxy CA".into(), message: e.to_string() }
                })?)
            }
            None => None,
        };
        let config = Config { store, encryption: None, service_accounts: None, ..config };
        let caches = Arc::new(cache::Caches::new(config.store.clone()));
        let sources = admission::lister::Sources::new(caches.clone(), config.store.clone());
        let authorizer = Arc::new(auth::Authorizer::new(caches.clone()));
        // The plugins that still hold the server get it once it exists.
        let server = admission::Server::pending();
        let init = admission::plugins::Init {
            sources,
            server: server.clone(),
            authorizer: authorizer.clone(),
            pod_security: config.pod_security.clone(),
            service_accounts: tokens.is_some(),
        };
        let seats =
            config.max_requests_inflight.saturating_add(config.max_mutating_requests_inflight);
        let apf = apf::Apf::new(seats, metrics.flowcontrol().clone());
        let api = Arc::new(ApiServer {
            auditor,
            objects: Objects { store: config.store.clone() },
            caches,
            admission: admission::plugins::chain(&admission_plugins, &init)?,
            store: config.store,
            shutting_down: AtomicBool::new(false),
            service_cidr: config.service_cidr,
            authorizer,
            tokens,
            encryption,
            custom: crd::Served::default(),
            components: config.components,
            metrics,
            request_header,
            aggregator: aggregator::Aggregator::new(config.front_proxy),
            apf,
            static_tokens: config.token_file,
        });
        server.attach(&api);
        Ok(api)
    }

    /// A server over a fresh memory store with the default admission plugins and
    /// every start-up step but listening done: the system namespaces, the bootstrap
    /// policy, the kubernetes Service.
    #[cfg(test)]
    pub(crate) async fn for_tests() -> Arc<ApiServer> {
        let store: Arc<dyn Store> = Arc::new(keelson_store::memory::open().expect("memory store"));
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .and_then(|p| p.self_signed(&key))
            .expect("certificate");
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der"),
            )
            .expect("tls");
        let api = ApiServer::build(Config::loopback(store, Arc::new(tls))).await.expect("builds");
        start(&api).await.expect("starts");
        api
    }
}

/// What a built server does before it takes requests: the system objects, the
/// bootstrap policy, the CRDs served, and the in-process controllers.
async fn start(api: &Arc<ApiServer>) -> Result<(), Error> {
    bootstrap(api).await?;
    auth::bootstrap::reconcile(api).await?;
    // Established CRDs are served from the first request.
    let crds = api.store.list(crd::PREFIX, Default::default()).await.map_err(|e| {
        Error::Bootstrap { name: "customresourcedefinitions".into(), message: e.to_string() }
    })?;
    let crds: Vec<Arc<_>> = crds.items.into_iter().map(Arc::new).collect();
    crd::controller::reconcile_all(api, &crds).await;
    tokio::spawn(crd::controller::run(api.clone()));
    if let Some(front_proxy) = api.aggregator.front_proxy() {
        authn::requestheader::publish(api, front_proxy).await.map_err(|e| Error::Bootstrap {
            name: "kube-system/extension-apiserver-authentication".into(),
            message: e.message,
        })?;
    }
    // The local APIServices exist from the first request (upstream's
    // `autoregister-completion` readiness check); extension servers are checked after.
    let stored = api
        .store
        .list(aggregator::controller::PREFIX, Default::default())
        .await
        .map_err(|e| Error::Bootstrap { name: "apiservices".into(), message: e.to_string() })?;
    let stored: Vec<Arc<_>> = stored.items.into_iter().map(Arc::new).collect();
    aggregator::controller::reconcile(api, &stored, false).await;
    tokio::spawn(aggregator::controller::run(api.clone()));
    // The APF bootstrap objects exist from the first request (upstream's
    // `priority-and-fairness-config-producer` start-up hook), then are kept.
    if let Err(e) = apf::ensure(api).await {
        tracing::warn!(error = %e, "cannot create the APF bootstrap configuration, will retry");
    }
    tokio::spawn(apf::run(api.clone()));
    Ok(())
}

/// Creates what every cluster has and is missing: the system namespaces and the
/// system priority classes (upstream's `scheduling/bootstrap-system-priority-classes`).
async fn bootstrap(api: &ApiServer) -> Result<(), Error> {
    for name in SYSTEM_NAMESPACES {
        create_missing(api, "", "namespaces", json!({ "metadata": { "name": name } })).await?;
    }
    for (name, value, description) in [
        (
            "system-node-critical",
            2_000_001_000,
            "Used for system critical pods that must not be moved from their current node.",
        ),
        (
            "system-cluster-critical",
            2_000_000_000,
            "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
        ),
    ] {
        let class =
            json!({ "metadata": { "name": name }, "value": value, "description": description });
        create_missing(api, "scheduling.k8s.io", "priorityclasses", class).await?;
    }
    Ok(())
}

/// Creates a cluster-scoped object unless it exists.
async fn create_missing(
    api: &ApiServer,
    group: &str,
    plural: &str,
    object: Value,
) -> Result<(), Error> {
    let name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let failed = |message: String| Error::Bootstrap { name: format!("{plural}/{name}"), message };
    let info = Registry::builtin()
        .resources()
        .find(|r| r.group == group && r.plural == plural)
        .ok_or_else(|| failed("the resource is not registered".into()))?;
    let place = Place { info, namespace: None, name: &name };
    match api.objects.get(place).await {
        Ok(_) => return Ok(()),
        Err(e) if e.code == http::StatusCode::NOT_FOUND => {}
        Err(e) => return Err(failed(e.message)),
    }
    let object = registry::prepare_create(info, None, object, &Default::default(), &mut Vec::new())
        .map_err(|e| failed(e.message))?;
    match api.objects.create(place, object, false).await {
        Ok(_) => {
            tracing::info!(kind = info.kind, name, "created a system object");
            Ok(())
        }
        // Another server of the same cluster was first.
        Err(e) if e.is_already_exists() => Ok(()),
        Err(e) => Err(failed(e.message)),
    }
}

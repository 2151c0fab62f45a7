//! What the components' secure ports share (kube-controller-manager's 10257,
//! kube-scheduler's 10259): upstream's `--secure-port`, `--bind-address`, TLS and
//! delegated authentication and authorization flags, resolved to
//! `keelson_runtime::secure::Config`; and the signals that stop a component run alone.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The secure-port flags, by upstream's names.
#[derive(clap::Args, Clone)]
pub struct SecureServingArgs {
    /// HTTPS port of the health checks and metrics; 0 serves none [default: the component's, 10257 or 10259]
    #[arg(long)]
    pub secure_port: Option<u16>,
    /// Address the secure port listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// The secure port's certificate (PEM, chain allowed) [default: a self-signed one, made at start]
    #[arg(long, requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// Its private key.
    #[arg(long, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// CAs that sign client certificates of callers [default: client-ca-file of ConfigMap kube-system/extension-apiserver-authentication, else the kubeconfig's CA]
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// The kubeconfig that creates tokenreviews.authentication.k8s.io [default: --kubeconfig]
    #[arg(long)]
    pub authentication_kubeconfig: Option<PathBuf>,
    /// The kubeconfig that creates subjectaccessreviews.authorization.k8s.io [default: --kubeconfig]
    #[arg(long)]
    pub authorization_kubeconfig: Option<PathBuf>,
    /// Paths served without authorization: exact, or prefixes ending in `*`.
    #[arg(long, value_delimiter = ',', default_value = "/healthz,/readyz,/livez")]
    pub authorization_always_allow_paths: Vec<String>,
    /// `--secure-port 0` lets the system pick a port rather than serving none (`keelson
    /// server`'s `--controller-manager-secure-port` and `--scheduler-secure-port`).
    #[arg(skip)]
    pub zero_port_picks: bool,
}

impl SecureServingArgs {
    /// What `keelson server` runs: on loopback (as k3s binds them), client certificates
    /// of the cluster CA.
    pub fn in_server(tls_dir: &Path, port: u16) -> Self {
        SecureServingArgs {
            secure_port: Some(port),
            bind_address: IpAddr::from([127, 0, 0, 1]),
            tls_cert_file: None,
            tls_private_key_file: None,
            client_ca_file: Some(tls_dir.join("ca.crt")),
            authentication_kubeconfig: None,
            authorization_kubeconfig: None,
            authorization_always_allow_paths: keelson_runtime::secure::ALWAYS_ALLOW_PATHS
                .map(String::from)
                .to_vec(),
            zero_port_picks: true,
        }
    }

    /// The port, the component's default when not given.
    pub fn port(&self, default: u16) -> u16 {
        self.secure_port.unwrap_or(default)
    }

    /// The secure port's settings; `None` with `--secure-port 0`.
    pub async fn config(
        &self,
        component: &'static str,
        default_port: u16,
        kubeconfig: &Path,
        client: &kube::Client,
    ) -> anyhow::Result<Option<keelson_runtime::secure::Config>> {
        let port = self.port(default_port);
        if port == 0 && !self.zero_port_picks {
            return Ok(None);
        }
        let reviewer = |path: &Option<PathBuf>| {
            let path = path.clone();
            let client = client.clone();
            async move {
                Ok::<_, anyhow::Error>(match path {
                    Some(path) => keelson_runtime::credentials::from_kubeconfig(&path).await?.0,
                    None => client,
                })
            }
        };
        let authentication = reviewer(&self.authentication_kubeconfig).await?;
        let authorization = reviewer(&self.authorization_kubeconfig).await?;
        let client_ca_pem = match &self.client_ca_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
            None => match published_client_ca(&authentication).await {
                Some(pem) => pem,
                None => {
                    tracing::info!(
                        "no client-ca-file in ConfigMap kube-system/extension-apiserver-authentication; client certificates are verified against the kubeconfig's CA"
                    );
                    crate::controller_manager::kubeconfig_ca(
                        self.authentication_kubeconfig.as_deref().unwrap_or(kubeconfig),
                    )?
                }
            },
        };
        let bind = SocketAddr::new(self.bind_address, port);
        let mut config =
            keelson_runtime::secure::Config::new(bind, authentication, Some(client_ca_pem));
        config.component = component;
        config.authorization = Some(authorization);
        config.always_allow_paths = self.authorization_always_allow_paths.clone();
        config.serving = self.tls_cert_file.clone().zip(self.tls_private_key_file.clone());
        Ok(Some(config))
    }
}

/// The client CA the API server publishes for delegated authentication, as upstream's
/// components look it up.
async fn published_client_ca(client: &kube::Client) -> Option<String> {
    use keelson_api::k8s_openapi::api::core::v1::ConfigMap;
    let configmaps: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), "kube-system");
    match configmaps.get_opt("extension-apiserver-authentication").await {
        Ok(found) => found?.data?.remove("client-ca-file"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read ConfigMap kube-system/extension-apiserver-authentication");
            None
        }
    }
}

/// A stop signal that turns true on SIGTERM or SIGINT (a component run alone).
pub fn stop_on_signals() -> anyhow::Result<tokio::sync::watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

//! `keelson controller-manager`: the controller manager alone, against any API server
//! it has a kubeconfig for — and the same, in process, for `keelson server`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;

/// kube-controller-manager's flags, by upstream's names.
#[derive(clap::Args, Clone)]
pub struct ControllerManagerArgs {
    /// The kubeconfig the controller manager authenticates with.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Controllers to run: `*` (all on by default), `name`, `-name`; comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    /// Give each controller its own ServiceAccount's credentials.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub use_service_account_credentials: bool,
    /// Elect a leader on Lease kube-system/kube-controller-manager before running.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// The CA bundle to publish as `kube-root-ca.crt` (default: the kubeconfig's CA).
    #[arg(long)]
    pub root_ca_file: Option<PathBuf>,
    /// The CA certificate that signs approved `kubernetes.io` certificate requests.
    #[arg(long, requires = "cluster_signing_key_file")]
    pub cluster_signing_cert_file: Option<PathBuf>,
    /// Its private key.
    #[arg(long, requires = "cluster_signing_cert_file")]
    pub cluster_signing_key_file: Option<PathBuf>,
    /// HTTPS port of the health checks and metrics; 0 serves none.
    #[arg(long, default_value_t = keelson_controllers::SECURE_PORT)]
    pub secure_port: u16,
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
    /// server`'s `--controller-manager-secure-port`).
    #[arg(skip)]
    pub zero_port_picks: bool,
}

impl ControllerManagerArgs {
    /// What `keelson server` runs: every default controller, ServiceAccount
    /// credentials, leader election, the secure port on loopback (as k3s binds it) with
    /// client certificates of the cluster CA.
    pub fn in_server(kubeconfig: PathBuf, tls_dir: &Path, secure_port: u16) -> Self {
        ControllerManagerArgs {
            cluster_signing_cert_file: Some(tls_dir.join("ca.crt")),
            cluster_signing_key_file: Some(tls_dir.join("ca.key")),
            kubeconfig,
            controllers: vec!["*".into()],
            use_service_account_credentials: true,
            leader_elect: true,
            root_ca_file: None,
            secure_port,
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
}

/// Runs until `stop` says so.
pub async fn run(
    args: ControllerManagerArgs,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (client, client_config) =
        keelson_runtime::credentials::from_kubeconfig(&args.kubeconfig).await?;
    let root_ca_pem = match &args.root_ca_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => kubeconfig_ca(&args.kubeconfig)?,
    };
    let csr_signer = match (&args.cluster_signing_cert_file, &args.cluster_signing_key_file) {
        (Some(cert), Some(key)) => Some(keelson_pki::CsrSigner::from_files(cert, key)?),
        _ => None,
    };
    let serving = secure_serving(&args, &client).await?;
    tracing::info!(
        "controller manager: --controllers={} --use-service-account-credentials={} --leader-elect={} --secure-port={} --bind-address={} --authorization-always-allow-paths={}",
        args.controllers.join(","),
        args.use_service_account_credentials,
        args.leader_elect,
        args.secure_port,
        args.bind_address,
        args.authorization_always_allow_paths.join(","),
    );
    keelson_controllers::run(
        keelson_controllers::Config {
            client,
            client_config,
            controllers: args.controllers,
            use_service_account_credentials: args.use_service_account_credentials,
            leader_elect: args.leader_elect.then(Default::default),
            root_ca_pem,
            csr_signer,
            metrics: Default::default(),
            serving,
        },
        stop,
    )
    .await?;
    Ok(())
}

/// The secure port's settings; `None` with `--secure-port 0`.
async fn secure_serving(
    args: &ControllerManagerArgs,
    client: &kube::Client,
) -> anyhow::Result<Option<keelson_runtime::secure::Config>> {
    if args.secure_port == 0 && !args.zero_port_picks {
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
    let authentication = reviewer(&args.authentication_kubeconfig).await?;
    let authorization = reviewer(&args.authorization_kubeconfig).await?;
    let client_ca_pem = match &args.client_ca_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => match published_client_ca(&authentication).await {
            Some(pem) => pem,
            None => {
                tracing::info!(
                    "no client-ca-file in ConfigMap kube-system/extension-apiserver-authentication; client certificates are verified against the kubeconfig's CA"
                );
                kubeconfig_ca(args.authentication_kubeconfig.as_ref().unwrap_or(&args.kubeconfig))?
            }
        },
    };
    let bind = SocketAddr::new(args.bind_address, args.secure_port);
    let mut config =
        keelson_runtime::secure::Config::new(bind, authentication, Some(client_ca_pem));
    config.authorization = Some(authorization);
    config.always_allow_paths = args.authorization_always_allow_paths.clone();
    config.serving = args.tls_cert_file.clone().zip(args.tls_private_key_file.clone());
    Ok(Some(config))
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

/// The CA of the kubeconfig's cluster, as PEM.
fn kubeconfig_ca(path: &Path) -> anyhow::Result<String> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
    let data = kubeconfig
        .clusters
        .iter()
        .find_map(|c| c.cluster.as_ref()?.certificate_authority_data.clone())
        .with_context(|| {
            format!("{} names no certificate-authority-data; pass --root-ca-file", path.display())
        })?;
    let pem = base64::engine::general_purpose::STANDARD.decode(data.trim())?;
    Ok(String::from_utf8(pem)?)
}

/// The signals that stop a standalone controller manager.
pub async fn run_alone(args: ControllerManagerArgs) -> anyhow::Result<()> {
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
    run(args, rx).await
}

//! `keelson controller-manager`: the controller manager alone, against any API server
//! it has a kubeconfig for — and the same, in process, for `keelson server`.

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
    #[command(flatten)]
    pub serving: crate::secure::SecureServingArgs,
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
            serving: crate::secure::SecureServingArgs::in_server(tls_dir, secure_port),
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
    let serving = args
        .serving
        .config(
            "kube-controller-manager",
            keelson_controllers::SECURE_PORT,
            &args.kubeconfig,
            &client,
        )
        .await?;
    tracing::info!(
        "controller manager: --controllers={} --use-service-account-credentials={} --leader-elect={} --secure-port={} --bind-address={} --authorization-always-allow-paths={}",
        args.controllers.join(","),
        args.use_service_account_credentials,
        args.leader_elect,
        args.serving.port(keelson_controllers::SECURE_PORT),
        args.serving.bind_address,
        args.serving.authorization_always_allow_paths.join(","),
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

/// The CA of the kubeconfig's cluster, as PEM.
pub fn kubeconfig_ca(path: &Path) -> anyhow::Result<String> {
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

/// A standalone controller manager, until SIGTERM or SIGINT.
pub async fn run_alone(args: ControllerManagerArgs) -> anyhow::Result<()> {
    run(args, crate::secure::stop_on_signals()?).await
}

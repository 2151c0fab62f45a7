//! `keelson controller-manager`: the controller manager alone, against any API server
//! it has a kubeconfig for — and the same, in process, for `keelson server`.

use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Give each node a block of --cluster-cidr as its pod CIDR.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub allocate_node_cidrs: bool,
    /// The pods' IPv4 range, cut into node blocks (with --allocate-node-cidrs).
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// The prefix length of each node's block.
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask_size: u8,
    /// How often node health is looked at.
    #[arg(long, default_value = "5s", value_parser = parse_go_duration)]
    pub node_monitor_period: Duration,
    /// How long a node may go without a heartbeat before it is marked unhealthy.
    #[arg(long, default_value = "50s", value_parser = parse_go_duration)]
    pub node_monitor_grace_period: Duration,
    /// How long a new node may go without reporting before it is marked unhealthy.
    #[arg(long, default_value = "1m0s", value_parser = parse_go_duration)]
    pub node_startup_grace_period: Duration,
    /// Nodes a second tainted NoExecute per zone while the zone is healthy.
    #[arg(long, default_value_t = 0.1)]
    pub node_eviction_rate: f64,
    /// Nodes a second tainted NoExecute in a partly unhealthy zone of a large cluster.
    #[arg(long, default_value_t = 0.01)]
    pub secondary_node_eviction_rate: f64,
    /// The share of not-ready nodes (at least 3) that makes a zone partly unhealthy.
    #[arg(long, default_value_t = 0.55)]
    pub unhealthy_zone_threshold: f64,
    /// Zones of at most this many nodes stop tainting when partly unhealthy.
    #[arg(long, default_value_t = 50)]
    pub large_cluster_size_threshold: usize,
    /// Finished pods kept before the oldest are deleted (0 keeps all).
    #[arg(long, default_value_t = 12_500)]
    pub terminated_pod_gc_threshold: usize,
    #[command(flatten)]
    pub serving: crate::secure::SecureServingArgs,
}

/// A Go duration (`50s`, `1m30s`, `500ms`, `1h`), as upstream's flags take them.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?}");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(invalid)?;
        let value: f64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

impl ControllerManagerArgs {
    /// What `keelson server` runs: every default controller, ServiceAccount
    /// credentials, leader election, node pod CIDRs from `cluster_cidr` (as k3s gives
    /// them), the secure port on loopback (as k3s binds it) with client certificates of
    /// the cluster CA.
    pub fn in_server(
        kubeconfig: PathBuf,
        tls_dir: &Path,
        secure_port: u16,
        cluster_cidr: &str,
    ) -> Self {
        ControllerManagerArgs {
            allocate_node_cidrs: true,
            cluster_cidr: Some(cluster_cidr.to_owned()),
            node_cidr_mask_size: 24,
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(50),
            node_startup_grace_period: Duration::from_secs(60),
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
            unhealthy_zone_threshold: 0.55,
            large_cluster_size_threshold: 50,
            terminated_pod_gc_threshold: 12_500,
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
    let ipam = match (args.allocate_node_cidrs, &args.cluster_cidr) {
        (false, _) => None,
        (true, None) => anyhow::bail!("--allocate-node-cidrs needs --cluster-cidr"),
        (true, Some(cidr)) => Some(
            keelson_controllers::nodeipam::Settings::new(cidr, args.node_cidr_mask_size)
                .map_err(anyhow::Error::msg)?,
        ),
    };
    let nodes = keelson_controllers::NodeSettings {
        ipam,
        lifecycle: keelson_controllers::nodelifecycle::Settings {
            monitor_period: args.node_monitor_period,
            grace_period: args.node_monitor_grace_period,
            startup_grace_period: args.node_startup_grace_period,
            eviction_rate: args.node_eviction_rate,
            secondary_eviction_rate: args.secondary_node_eviction_rate,
            unhealthy_zone_threshold: args.unhealthy_zone_threshold,
            large_cluster_size_threshold: args.large_cluster_size_threshold,
        },
        podgc: keelson_controllers::podgc::Settings {
            terminated_pod_threshold: args.terminated_pod_gc_threshold,
            ..Default::default()
        },
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
        "controller manager: --controllers={} --use-service-account-credentials={} --leader-elect={} --allocate-node-cidrs={} --cluster-cidr={} --node-monitor-grace-period={:?} --secure-port={} --bind-address={} --authorization-always-allow-paths={}",
        args.controllers.join(","),
        args.use_service_account_credentials,
        args.leader_elect,
        args.allocate_node_cidrs,
        args.cluster_cidr.as_deref().unwrap_or(""),
        args.node_monitor_grace_period,
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
            nodes,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_as_go_parses_them() {
        assert_eq!(parse_go_duration("50s"), Ok(Duration::from_secs(50)));
        assert_eq!(parse_go_duration("1m0s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_go_duration("1h2m3.5s"), Ok(Duration::from_secs_f64(3723.5)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(
            parse_go_duration("50").is_err()
                && parse_go_duration("s").is_err()
                && parse_go_duration("").is_err()
        );
    }
}

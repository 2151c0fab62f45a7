//! `keelson scheduler`: the scheduler alone, against any API server it has a kubeconfig
//! for — and the same, in process, for `keelson server`.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// kube-scheduler's flags, by upstream's names.
#[derive(clap::Args, Clone)]
pub struct SchedulerArgs {
    /// The kubeconfig the scheduler authenticates with.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// A KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1) file: profiles, plugins, their arguments [default: upstream's default profile]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Elect a leader on Lease kube-system/kube-scheduler before scheduling [default: the configuration's leaderElection.leaderElect, true]
    #[arg(long, action = clap::ArgAction::Set)]
    pub leader_elect: Option<bool>,
    #[command(flatten)]
    pub serving: crate::secure::SecureServingArgs,
}

impl SchedulerArgs {
    /// What `keelson server` runs: the default profile, leader election, the secure
    /// port on loopback.
    pub fn in_server(kubeconfig: PathBuf, tls_dir: &Path, secure_port: u16) -> Self {
        SchedulerArgs {
            kubeconfig,
            config: None,
            leader_elect: None,
            serving: crate::secure::SecureServingArgs::in_server(tls_dir, secure_port),
        }
    }
}

/// Reads and checks the configuration (refused at start, in upstream's words).
fn settings(args: &SchedulerArgs) -> anyhow::Result<keelson_scheduler::config::Config> {
    let mut settings = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            keelson_scheduler::config::Config::parse(&text)
                .map_err(|e| anyhow::anyhow!("invalid configuration in {}: {e}", path.display()))?
        }
        None => keelson_scheduler::config::Config::default(),
    };
    if let Some(elect) = args.leader_elect {
        settings.leader_elect = elect;
    }
    Ok(settings)
}

/// Runs until `stop` says so.
pub async fn run(
    args: SchedulerArgs,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let settings = settings(&args)?;
    let (_, config) = keelson_runtime::credentials::from_kubeconfig(&args.kubeconfig).await?;
    let client =
        keelson_runtime::credentials::with_user_agent(config, keelson_scheduler::USER_AGENT)?;
    let serving = args
        .serving
        .config("kube-scheduler", keelson_scheduler::SECURE_PORT, &args.kubeconfig, &client)
        .await?;
    tracing::info!(
        "scheduler: profiles={} --leader-elect={} --secure-port={} --bind-address={}",
        settings
            .profiles
            .iter()
            .filter_map(|p| p.scheduler_name.clone())
            .collect::<Vec<_>>()
            .join(","),
        settings.leader_elect,
        args.serving.port(keelson_scheduler::SECURE_PORT),
        args.serving.bind_address,
    );
    keelson_scheduler::run(
        keelson_scheduler::Config {
            client,
            scheduler: settings,
            leader_timings: Default::default(),
            metrics: Default::default(),
            serving,
        },
        stop,
    )
    .await?;
    Ok(())
}

/// A standalone scheduler, until SIGTERM or SIGINT.
pub async fn run_alone(args: SchedulerArgs) -> anyhow::Result<()> {
    run(args, crate::secure::stop_on_signals()?).await
}

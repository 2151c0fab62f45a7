//! The `keelson` command: parses flags, wires components, nothing else.

mod bench;
mod certificate;
mod client;
mod config;
mod controller_manager;
mod datastore;
mod hollow;
mod scheduler;
mod secrets_encrypt;
mod secure;
mod server;

use clap::{Parser, Subcommand};

use keelson_apiserver::KUBERNETES_MINOR;

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Parser)]
#[command(
    name = "keelson",
    version,
    about = "A Kubernetes-compatible orchestrator in one binary, secure by default"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the Keelson version and the Kubernetes API version it serves.
    Version,
    /// Run the control plane: datastore, PKI, API server, scheduler and controller manager.
    Server(config::ServerArgs),
    /// Run the API server alone (datastore and PKI included).
    Apiserver(config::ServerArgs),
    /// Run the controller manager alone, against the API server its kubeconfig names.
    ControllerManager(controller_manager::ControllerManagerArgs),
    /// Run the scheduler alone, against the API server its kubeconfig names.
    Scheduler(scheduler::SchedulerArgs),
    /// Check or rotate the cluster's certificates.
    Certificate {
        #[command(subcommand)]
        command: certificate::Command,
    },
    /// Show or rotate the keys that encrypt Secrets at rest, while the server runs.
    SecretsEncrypt {
        #[command(subcommand)]
        command: secrets_encrypt::Command,
    },
    /// Manage the datastore.
    Datastore {
        #[command(subcommand)]
        command: datastore::Command,
    },
    /// Run simulated nodes (kubemark's hollow nodes) for scale tests.
    HollowNodes(hollow::HollowNodesArgs),
    /// Measure Keelson's components.
    Bench {
        #[command(subcommand)]
        command: bench::Command,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // One TLS provider for the process: ring (no aws-lc, no OpenSSL).
    let _ = rustls::crypto::ring::default_provider().install_default();
    init_logging();
    let result = match cli.command {
        Command::Version => {
            println!("keelson v{VERSION}");
            println!(
                "kubernetes v1.{KUBERNETES_MINOR} (gitVersion v1.{KUBERNETES_MINOR}.0+keelson.{VERSION})"
            );
            Ok(())
        }
        Command::Server(args) => runtime().and_then(|rt| rt.block_on(server::run(args, true))),
        Command::Apiserver(args) => runtime().and_then(|rt| rt.block_on(server::run(args, false))),
        Command::ControllerManager(args) => {
            runtime().and_then(|rt| rt.block_on(controller_manager::run_alone(args)))
        }
        Command::Scheduler(args) => {
            runtime().and_then(|rt| rt.block_on(scheduler::run_alone(args)))
        }
        Command::Certificate { command } => certificate::run(command),
        Command::SecretsEncrypt { command } => {
            runtime().and_then(|rt| rt.block_on(secrets_encrypt::run(command)))
        }
        Command::Datastore { command } => {
            runtime().and_then(|rt| rt.block_on(datastore::run(command)))
        }
        Command::HollowNodes(args) => runtime().and_then(|rt| rt.block_on(hollow::run(args))),
        Command::Bench { command } => runtime().and_then(|rt| rt.block_on(bench::run(command))),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: logs in files and journals stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

//! The `keelson` command: parses flags, wires components, nothing else.

mod bench;
mod config;
mod datastore;
mod server;

use clap::{Parser, Subcommand};

k8s_openapi::k8s_if_1_34! {
    /// The Kubernetes minor version whose API Keelson serves (k8s-openapi's `v1_34`).
    const KUBERNETES_MINOR: u32 = 34;
}

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
    /// Run the control plane (today: the datastore; the API server comes next).
    Server(config::ServerArgs),
    /// Manage the datastore.
    Datastore {
        #[command(subcommand)]
        command: datastore::Command,
    },
    /// Measure Keelson's components.
    Bench {
        #[command(subcommand)]
        command: bench::Command,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Version => {
            println!("keelson v{VERSION}");
            println!(
                "kubernetes v1.{KUBERNETES_MINOR} (gitVersion v1.{KUBERNETES_MINOR}.0+keelson.{VERSION})"
            );
            Ok(())
        }
        Command::Server(args) => runtime().and_then(|rt| rt.block_on(server::run(args))),
        Command::Datastore { command } => {
            runtime().and_then(|rt| rt.block_on(datastore::run(command)))
        }
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
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

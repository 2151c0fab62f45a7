//! `keelson datastore …`: operations on a datastore while no server uses it.

use std::path::PathBuf;

use anyhow::Context;
use keelson_store::{Endpoint, TlsFiles};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Copy every key from one datastore to another (any backend to any backend).
    Migrate(MigrateArgs),
}

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// Source: sqlite://<path> or https://host:2379[,…]
    #[arg(long)]
    from: String,
    /// Target: sqlite://<path> or https://host:2379[,…]
    #[arg(long)]
    to: String,
    /// Write into a target that already holds keys (keys in both are overwritten)
    #[arg(long)]
    force: bool,
    /// CA bundle for etcd endpoints
    #[arg(long)]
    datastore_cafile: Option<PathBuf>,
    /// Client certificate for etcd endpoints
    #[arg(long)]
    datastore_certfile: Option<PathBuf>,
    /// Client key for etcd endpoints
    #[arg(long)]
    datastore_keyfile: Option<PathBuf>,
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Migrate(args) => migrate(args).await,
    }
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let tls = TlsFiles {
        ca_file: args.datastore_cafile,
        cert_file: args.datastore_certfile,
        key_file: args.datastore_keyfile,
    };
    let from = Endpoint::parse(&args.from)?;
    let to = Endpoint::parse(&args.to)?;
    anyhow::ensure!(from != to, "--from and --to name the same datastore");
    let source =
        keelson_store::open(&from, &tls).await.with_context(|| format!("cannot open {from}"))?;
    let target =
        keelson_store::open(&to, &tls).await.with_context(|| format!("cannot open {to}"))?;
    let summary = keelson_store::migrate::migrate(source, target, args.force).await?;
    println!(
        "copied {} keys from {from} (revision {}) to {to}",
        summary.keys, summary.source_revision
    );
    Ok(())
}

//! `keelson bench store`: the store workload of `keelson_store::bench` against each
//! backend, printed as a table or JSON lines.

use std::sync::Arc;

use anyhow::Context;
use keelson_store::bench::{BytesWritten, Config, Measurement, WriteVolume, proc_write_bytes};
use keelson_store::{Store, TlsFiles};

use super::Output;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    Sqlite,
    Memory,
    Etcd,
}

#[derive(clap::Args)]
pub struct StoreArgs {
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
    /// Backends to measure, in order
    #[arg(long, value_enum, value_delimiter = ',', default_value = "sqlite,etcd,memory")]
    backends: Vec<Backend>,
    /// Creates, updates and gets per client count
    #[arg(long, default_value_t = 4000)]
    ops: usize,
    /// Client counts for create, update and get
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    clients: Vec<usize>,
    #[arg(long, default_value_t = 1024)]
    value_bytes: usize,
    #[arg(long, default_value_t = 10_000)]
    list_keys: usize,
    #[arg(long, default_value_t = 100)]
    watchers: usize,
}

pub async fn run(args: StoreArgs) -> anyhow::Result<()> {
    let config = Config {
        ops: args.ops,
        clients: args.clients.clone(),
        value_bytes: args.value_bytes,
        list_keys: args.list_keys,
        watchers: args.watchers,
        ..Config::default()
    };
    let mut rows = Vec::new();
    let mut volumes = Vec::new();
    for backend in &args.backends {
        let Subject { name, store, written, _keep } = open(*backend).await?;
        tracing::info!(backend = name, "measuring");
        let (measured, volume) = keelson_store::bench::run(name, store, &config, written).await?;
        if args.output == Output::Json {
            for row in &measured {
                println!("{}", serde_json::to_string(row)?);
            }
            if let Some(volume) = &volume {
                println!("{}", serde_json::to_string(volume)?);
            }
        }
        rows.extend(measured);
        volumes.extend(volume);
    }
    if args.output == Output::Table {
        print_table(&rows, &volumes);
    }
    Ok(())
}

/// A fresh store to measure, and whatever keeps it alive until measured.
struct Subject {
    name: &'static str,
    store: Arc<dyn Store>,
    written: Option<(BytesWritten, String)>,
    _keep: Box<dyn std::any::Any>,
}

async fn open(backend: Backend) -> anyhow::Result<Subject> {
    Ok(match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir()?;
            let path = dir.path().join("state.db");
            let store =
                tokio::task::spawn_blocking(move || keelson_store::sqlite::open(&path)).await??;
            let written: BytesWritten = Box::new(|| proc_write_bytes("self"));
            Subject {
                name: "sqlite",
                store: Arc::new(store),
                written: Some((written, "/proc/self/io write_bytes".into())),
                _keep: Box::new(dir),
            }
        }
        Backend::Memory => Subject {
            name: "memory",
            store: Arc::new(keelson_store::memory::open()?),
            written: None,
            _keep: Box::new(()),
        },
        Backend::Etcd => {
            let etcd = keelson_testkit::EtcdProcess::start()
                .await
                .context("cannot start etcd (apt-get install etcd-server)")?;
            let tls = TlsFiles {
                ca_file: Some(etcd.ca_file().to_owned()),
                cert_file: Some(etcd.cert_file().to_owned()),
                key_file: Some(etcd.key_file().to_owned()),
            };
            let store = keelson_store::etcd::EtcdStore::connect(&[etcd.endpoint()], &tls).await?;
            let pid = etcd.pid().to_string();
            let written: BytesWritten = Box::new(move || proc_write_bytes(&pid));
            Subject {
                name: "etcd",
                store: Arc::new(store),
                written: Some((written, "/proc/<etcd pid>/io write_bytes".into())),
                _keep: Box::new(etcd),
            }
        }
    })
}

fn print_table(rows: &[Measurement], volumes: &[WriteVolume]) {
    println!(
        "{:<8} {:<15} {:>7} {:>7} {:>7} {:>12} {:>9} {:>9}",
        "BACKEND", "OP", "CLIENTS", "VALUE", "OPS", "OPS/S", "P50 MS", "P99 MS"
    );
    for r in rows {
        println!(
            "{:<8} {:<15} {:>7} {:>7} {:>7} {:>12.0} {:>9.3} {:>9.3}",
            r.backend, r.op, r.clients, r.value_bytes, r.ops, r.ops_per_sec, r.p50_ms, r.p99_ms
        );
    }
    println!();
    println!("{:<8} {:>28} {:>7}  MEASURED FROM", "BACKEND", "BYTES WRITTEN / 1K UPDATES", "VALUE");
    for v in volumes {
        println!(
            "{:<8} {:>28} {:>7}  {}",
            v.backend, v.bytes_written_per_1k_updates, v.value_bytes, v.measured_from
        );
    }
}

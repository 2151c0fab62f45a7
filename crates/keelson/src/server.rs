//! `keelson server`: the control plane in one process. Today it opens the datastore and
//! holds it until SIGINT/SIGTERM; the API server joins it next ([apiserver]).

use std::os::unix::fs::DirBuilderExt;

use anyhow::Context;

use crate::config::ServerArgs;

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    tracing::info!(
        data_dir = %config.data_dir.display(),
        datastore_endpoint = %config.datastore,
        https_listen_port = config.https_listen_port,
        bind_address = %config.bind_address,
        "starting keelson server"
    );
    let store = keelson_store::open(&config.datastore, &config.datastore_tls)
        .await
        .with_context(|| format!("cannot open datastore {}", config.datastore))?;
    let revision = store.current_revision().await?;
    tracing::info!(backend = store.backend(), revision, "datastore ready");
    shutdown_signal().await?;
    tracing::info!("shutting down");
    drop(store);
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = term.recv() => {}
    }
    Ok(())
}

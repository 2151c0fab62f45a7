//! What only the etcd backend has to handle: an etcd that is not there, and TLS
//! settings that cannot work.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use keelson_store::{Error, TlsFiles, etcd::EtcdStore};

#[tokio::test]
async fn an_unreachable_etcd_is_a_clear_error_after_bounded_retries() -> Result<()> {
    // A port nobody listens on: bind, note it, release.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    match EtcdStore::connect(std::slice::from_ref(&endpoint), &TlsFiles::default()).await {
        Err(Error::Unavailable(message)) => {
            ensure!(message.contains(&endpoint), "the error should name the endpoint: {message}")
        }
        Err(e) => bail!("expected Unavailable, got {e}"),
        Ok(_) => bail!("connected to nothing"),
    }
    ensure!(
        started.elapsed() < Duration::from_secs(30),
        "gave up only after {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn https_without_a_ca_is_refused_at_once() -> Result<()> {
    match EtcdStore::connect(&["https://127.0.0.1:2379".to_owned()], &TlsFiles::default()).await {
        Err(Error::InvalidEndpoint { .. }) => Ok(()),
        Err(e) => bail!("expected InvalidEndpoint, got {e}"),
        Ok(_) => bail!("connected without a CA"),
    }
}

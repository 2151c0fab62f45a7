//! What the controller manager's tests share: a real API server in this process
//! (memory store, random port, temp-dir PKI), the controller manager beside it as
//! `keelson server` runs it, the system's kubectl, and a TCP proxy that can be made
//! unavailable to show the controllers recover. Everything stops when dropped, also
//! when a test fails.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use keelson_pki::{Pki, PkiOptions};
use kube::Client;

/// The kubectl the system has.
pub const KUBECTL: &str = "/usr/bin/kubectl";

/// How long a test waits for a controller to act: generous, so a loaded machine passes.
pub const PATIENCE: Duration = Duration::from_secs(90);

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub url: String,
    pub addr: SocketAddr,
    /// `system:admin` in `system:masters`.
    pub client: Client,
    pub kubeconfig: PathBuf,
    running: Option<keelson_apiserver::Running>,
    stop_controllers: Option<tokio::sync::watch::Sender<bool>>,
}

impl Cluster {
    /// An API server alone.
    pub async fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let pki = Pki::ensure(&dir.path().join("tls"), &PkiOptions::default())?;
        let store: Arc<dyn keelson_store::Store> = Arc::new(keelson_store::memory::open()?);
        let running = keelson_apiserver::serve(keelson_apiserver::Config {
            service_accounts: Some(keelson_apiserver::authn::serviceaccount::Config::new(
                keelson_pki::ServiceAccountKey::load_or_create(&dir.path().join("tls"))?,
                pki.ca_pem(),
            )),
            ..keelson_apiserver::Config::loopback(store, pki.server_config()?)
        })
        .await?;
        let addr = running.local_addr;
        let url = format!("https://127.0.0.1:{}", addr.port());
        let kubeconfig = dir.path().join("admin.kubeconfig");
        pki.write_kubeconfig(&kubeconfig, &url, "system:admin", &["system:masters"])?;
        let (client, _) = keelson_runtime::credentials::from_kubeconfig(&kubeconfig).await?;
        Ok(Cluster {
            dir,
            pki,
            url,
            addr,
            client,
            kubeconfig,
            running: Some(running),
            stop_controllers: None,
        })
    }

    /// An API server with the controller manager beside it.
    pub async fn with_controllers() -> Result<Self> {
        let mut cluster = Self::start().await?;
        let url = cluster.url.clone();
        cluster.start_controllers(&url, &url).await?;
        Ok(cluster)
    }

    /// Starts the controller manager as `keelson server` does (its own identity, each
    /// controller as its ServiceAccount): its informers and token requests go to
    /// `component_url`, the controllers' own requests to `controllers_url`.
    pub async fn start_controllers(
        &mut self,
        component_url: &str,
        controllers_url: &str,
    ) -> Result<()> {
        let kubeconfig = self.dir.path().join("controller-manager.kubeconfig");
        self.pki.write_kubeconfig(
            &kubeconfig,
            component_url,
            "system:kube-controller-manager",
            &[],
        )?;
        let (client, mut client_config) =
            keelson_runtime::credentials::from_kubeconfig(&kubeconfig).await?;
        client_config.cluster_url = controllers_url.parse()?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(keelson_controllers::run(
            keelson_controllers::Config::in_process(client, client_config, self.pki.ca_pem(), None),
            stopped,
        ));
        self.stop_controllers = Some(stop);
        Ok(())
    }

    /// Runs the system's kubectl as `system:admin`.
    pub async fn kubectl(&self, args: &[&str]) -> Result<String> {
        let output = tokio::process::Command::new(KUBECTL)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(60), output).await??;
        if !output.status.success() {
            bail!("kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_controllers.take() {
            let _ = stop.send(true);
        }
        if let Some(running) = self.running.take() {
            // Stop accepting; the test's runtime ends the rest.
            tokio::spawn(running.shutdown());
        }
    }
}

/// Polls `check` until it says yes, failing after [`PATIENCE`] with `what`.
pub async fn eventually<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match last {
        Some(e) => Err(e.context(format!("timed out waiting for {what}"))),
        None => bail!("timed out waiting for {what}"),
    }
}

/// A TCP proxy to the API server that can be made unavailable: while down it cuts the
/// connections it carries and closes every new one at once, as a restarting or
/// overloaded server looks to a client.
pub struct Proxy {
    pub url: String,
    up: tokio::sync::watch::Sender<bool>,
    refused: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr, up: bool) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
        let (up, watching) = tokio::sync::watch::channel(up);
        let refused = Arc::new(AtomicUsize::new(0));
        let counter = refused.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*watching.borrow() {
                    counter.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                let mut watching = watching.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watching.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Ok(Proxy { url, up, refused, task })
    }

    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }

    /// How many connections it has closed while down.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until `proxy` has refused more than `count` connections.
pub async fn refused_more_than(proxy: &Proxy, count: usize) -> Result<()> {
    eventually("the proxy to refuse a connection", || async { Ok(proxy.refused() > count) })
        .await
        .context("nothing tried to connect")
}

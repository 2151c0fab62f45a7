//! Test harness for Keelson: real etcd servers for tests and benchmarks, and
//! [`wait`], polling with a deadline instead of sleeping.
//!
//! [`EtcdProcess`] starts Debian's `/usr/bin/etcd` (3.4) as a one-member cluster in a fresh
//! temp dir, on random loopback ports, serving clients over HTTPS with client-certificate
//! authentication required. The CA, server and client certificates are generated with
//! rcgen (ECDSA P-256) into the same temp dir, so a test gets a setup shaped like a
//! production one (mutual TLS) without any fixture files.
//!
//! This crate must never leak a process or a directory: dropping an [`EtcdProcess`] kills
//! etcd (SIGKILL), reaps it and removes its temp dir, also when the test panics. It must
//! never bind anything but loopback, and never write outside its temp dir.

pub mod wait;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

/// The etcd binary the harness runs (Debian's package).
pub const ETCD_BINARY: &str = "/usr/bin/etcd";

/// etcd's `--max-request-bytes`: large enough for 1.5 MiB values and their envelope.
pub const ETCD_MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// How long [`EtcdProcess::start`] waits for etcd to become healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How often a start is retried when another process took one of the chosen ports.
const PORT_ATTEMPTS: usize = 3;

/// A running single-member etcd with mutual TLS, killed when dropped.
pub struct EtcdProcess {
    // Declared before `dir` only for readability: `Drop` kills the child before any field
    // (and so the temp dir) is dropped.
    child: Child,
    client_port: u16,
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
    data_dir: PathBuf,
    dir: tempfile::TempDir,
}

/// Files and ports chosen for one start attempt.
struct Layout {
    ca_file: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
    data_dir: PathBuf,
    log_file: PathBuf,
}

impl EtcdProcess {
    /// Starts etcd and waits until it answers.
    ///
    /// The client URL is `https://127.0.0.1:<random>` and requires a client certificate
    /// signed by the generated CA ([`ca_file`](Self::ca_file), [`cert_file`](Self::cert_file),
    /// [`key_file`](Self::key_file)). The peer URL and a plain-HTTP metrics/health URL
    /// listen on their own random loopback ports. etcd's output goes to `etcd.log` in the
    /// temp dir; its tail is included in the error if etcd exits or is not healthy within
    /// 20 s. A start that loses a port to another process is retried with new ports.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("keelson-etcd-")
            .tempdir()
            .context("creating a temp dir for etcd")?;
        let layout = write_certificates(dir.path())?;
        let mut attempt = 1;
        loop {
            match start_once(&layout).await {
                Ok((child, client_port)) => {
                    tracing::debug!(
                        pid = child.id(),
                        port = client_port,
                        dir = %dir.path().display(),
                        "etcd started"
                    );
                    return Ok(EtcdProcess {
                        child,
                        client_port,
                        ca_file: layout.ca_file,
                        cert_file: layout.cert_file,
                        key_file: layout.key_file,
                        data_dir: layout.data_dir,
                        dir,
                    });
                }
                Err(StartError::PortTaken(log)) if attempt < PORT_ATTEMPTS => {
                    tracing::debug!(
                        attempt,
                        "etcd lost a port to another process, retrying: {log}"
                    );
                    attempt += 1;
                    // A fresh member needs a fresh data dir.
                    let _ = std::fs::remove_dir_all(&layout.data_dir);
                }
                Err(StartError::PortTaken(log)) => {
                    bail!(
                        "etcd could not bind its ports after {PORT_ATTEMPTS} attempts; log tail:\n{log}"
                    )
                }
                Err(StartError::Other(e)) => return Err(e),
            }
        }
    }

    /// The client URL, `https://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    /// The CA certificate (PEM) that signed both the server and the client certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The client certificate (PEM) etcd accepts.
    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }

    /// The client certificate's private key (PEM, PKCS#8).
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    /// etcd's process id, for reading `/proc/<pid>/io` in benchmarks.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// etcd's `--data-dir`.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The temp dir holding certificates, data and `etcd.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        // SIGKILL: nothing in the data dir needs to survive, and it cannot be ignored.
        if let Err(e) = self.child.kill() {
            tracing::warn!(pid = self.child.id(), "killing etcd failed: {e}");
        }
        // Reap it so no zombie outlives the harness; quick after SIGKILL.
        if let Err(e) = self.child.wait() {
            tracing::warn!(pid = self.child.id(), "waiting for etcd failed: {e}");
        }
    }
}

enum StartError {
    /// etcd exited because a port was taken; carries the log tail.
    PortTaken(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(e: anyhow::Error) -> Self {
        StartError::Other(e)
    }
}

/// Spawns etcd on fresh ports and waits for it to be healthy; kills it on failure.
async fn start_once(layout: &Layout) -> Result<(Child, u16), StartError> {
    let [client_port, peer_port, metrics_port] = free_ports()?;
    let log = File::create(&layout.log_file)
        .with_context(|| format!("creating {}", layout.log_file.display()))?;
    let log_err = log.try_clone().context("duplicating the etcd log file handle")?;

    let client_url = format!("https://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let mut command = Command::new(ETCD_BINARY);
    // Keep the parent's ETCD_* variables from changing the configuration.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ETCD_") {
            command.env_remove(name);
        }
    }
    command
        .arg("--name=keelson-test")
        .arg(format!("--data-dir={}", layout.data_dir.display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=keelson-test={peer_url}"))
        .arg("--initial-cluster-state=new")
        .arg("--initial-cluster-token=keelson-test")
        .arg(format!("--listen-metrics-urls=http://127.0.0.1:{metrics_port}"))
        .arg(format!("--cert-file={}", layout.server_cert.display()))
        .arg(format!("--key-file={}", layout.server_key.display()))
        .arg("--client-cert-auth")
        .arg(format!("--trusted-ca-file={}", layout.ca_file.display()))
        .arg(format!("--max-request-bytes={ETCD_MAX_REQUEST_BYTES}"))
        .arg("--logger=zap")
        .arg("--log-outputs=stderr")
        .arg("--log-level=warn")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let mut child = command.spawn().with_context(|| format!("starting {ETCD_BINARY}"))?;

    match wait_ready(&mut child, layout, metrics_port, client_port).await {
        Ok(()) => Ok((child, client_port)),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            let tail = log_tail(&layout.log_file);
            if tail.contains("address already in use") {
                Err(StartError::PortTaken(tail))
            } else {
                Err(StartError::Other(anyhow::anyhow!("{e:#}; etcd log tail:\n{tail}")))
            }
        }
    }
}

/// Polls etcd's plain-HTTP `/health` until it reports healthy, then checks the client
/// port accepts connections. Fails if etcd exits or the deadline passes.
async fn wait_ready(
    child: &mut Child,
    layout: &Layout,
    metrics_port: u16,
    client_port: u16,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().context("checking on etcd")? {
            bail!(
                "etcd exited during startup with {status} (data dir {})",
                layout.data_dir.display()
            );
        }
        let last = match health(metrics_port).await {
            Ok(true) => {
                TcpStream::connect(("127.0.0.1", client_port)).await.with_context(|| {
                    format!("etcd is healthy but its client port {client_port} refuses connections")
                })?;
                return Ok(());
            }
            Ok(false) => "etcd reports itself unhealthy".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("etcd was not healthy within {READY_TIMEOUT:?} (last check: {last})");
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// One `GET /health` on the metrics listener: whether etcd says `"health":"true"`.
async fn health(port: u16) -> anyhow::Result<bool> {
    let check = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response =
        timeout(Duration::from_secs(2), check).await.context("health check timed out")??;
    Ok(response.starts_with("HTTP/1.1 200") && response.contains(r#""health":"true""#))
}

/// Three distinct free loopback ports. They are released before etcd binds them, so
/// another process may take one in between; `start` retries when that happens.
fn free_ports() -> anyhow::Result<[u16; 3]> {
    let listeners = [(); 3].map(|()| TcpListener::bind("127.0.0.1:0"));
    let mut ports = [0; 3];
    for (port, listener) in ports.iter_mut().zip(listeners) {
        *port = listener.and_then(|l| l.local_addr()).context("picking a free port")?.port();
    }
    Ok(ports)
}

/// Generates the CA, server and client certificates into `dir`.
fn write_certificates(dir: &Path) -> anyhow::Result<Layout> {
    let layout = Layout {
        ca_file: dir.join("ca.crt"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        cert_file: dir.join("client.crt"),
        key_file: dir.join("client.key"),
        data_dir: dir.join("data"),
        log_file: dir.join("etcd.log"),
    };

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "keelson test ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    // etcd 3.4 also uses its server certificate as a client one (the gRPC gateway dials
    // the server), so it gets both usages.
    let mut server_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    server_params.distinguished_name.push(DnType::CommonName, "etcd");
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let server_key = KeyPair::generate()?;
    let server_cert = server_params.signed_by(&server_key, &ca)?;

    let mut client_params = CertificateParams::new(Vec::<String>::new())?;
    client_params.distinguished_name.push(DnType::CommonName, "keelson-apiserver");
    client_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate()?;
    let client_cert = client_params.signed_by(&client_key, &ca)?;

    let files = [
        (&layout.ca_file, ca.pem()),
        (&layout.server_cert, server_cert.pem()),
        (&layout.server_key, server_key.serialize_pem()),
        (&layout.cert_file, client_cert.pem()),
        (&layout.key_file, client_key.serialize_pem()),
    ];
    for (path, pem) in files {
        std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(layout)
}

/// The last lines of etcd's log, for error messages.
fn log_tail(path: &Path) -> String {
    const TAIL_BYTES: u64 = 4096;
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) if text.trim().is_empty() => "(etcd wrote nothing)".to_owned(),
        Ok(text) => text,
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

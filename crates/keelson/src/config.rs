//! Server settings: flags with k3s's names, a config file with the same keys
//! (`--config`, or `<data-dir>/config.yaml`), and defaults. A flag beats the file, the
//! file beats the default.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use keelson_store::{Endpoint, TlsFiles};
use serde::Deserialize;

/// Flags of `keelson server`; every one can also be a key of the config file.
#[derive(clap::Args, Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServerArgs {
    /// Config file with the same keys as these flags [default: <data-dir>/config.yaml]
    #[arg(long, short = 'c')]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Directory for state, certificates and logs [default: /var/lib/keelson as root, else $XDG_DATA_HOME/keelson]
    #[arg(long, short = 'd')]
    pub data_dir: Option<PathBuf>,
    /// HTTPS port of the API server [default: 6443]
    #[arg(long)]
    pub https_listen_port: Option<u16>,
    /// Address the API server listens on [default: 0.0.0.0]
    #[arg(long)]
    pub bind_address: Option<IpAddr>,
    /// IPv4 range Service cluster IPs come from [default: 10.43.0.0/16]
    #[arg(long)]
    pub service_cidr: Option<String>,
    /// IPv4 range pod IPs come from, a /24 of it per node [default: 10.42.0.0/16]
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// Address other hosts reach the API server at [default: the bind address, else the host's first IPv4]
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
    /// EncryptionConfiguration for data at rest [default: <data-dir>/cred/encryption-config.yaml, generated to encrypt Secrets]
    #[arg(long)]
    pub encryption_provider_config: Option<PathBuf>,
    /// Audit log file [default: <data-dir>/logs/audit.log]
    #[arg(long)]
    pub audit_log_path: Option<PathBuf>,
    /// audit.k8s.io/v1 Policy file [default: Metadata for everything but health checks]
    #[arg(long)]
    pub audit_policy_file: Option<PathBuf>,
    /// Audit log size in megabytes before it rotates [default: 100]
    #[arg(long)]
    pub audit_log_maxsize: Option<u64>,
    /// AdmissionConfiguration with the PodSecurity plugin's defaults and exemptions [default: enforce baseline, audit and warn restricted, kube-system exempt]
    #[arg(long)]
    pub pod_security_admission_config_file: Option<PathBuf>,
    /// Admission plugins to turn on beyond the defaults, comma-separated kube-apiserver names; they run in upstream's order whatever order they are listed in [default: NamespaceLifecycle, LimitRanger, ServiceAccount, NodeRestriction, PodSecurity, Priority, DefaultTolerationSeconds, DefaultStorageClass, CertificateApproval, CertificateSigning, CertificateSubjectRestriction, MutatingAdmissionWebhook, ValidatingAdmissionPolicy, ValidatingAdmissionWebhook, ResourceQuota]
    #[arg(long)]
    pub enable_admission_plugins: Option<String>,
    /// Admission plugins to turn off, comma-separated kube-apiserver names
    #[arg(long)]
    pub disable_admission_plugins: Option<String>,
    /// Rotated audit logs kept [default: 10]
    #[arg(long)]
    pub audit_log_maxbackup: Option<usize>,
    /// Days a rotated audit log is kept [default: 30]
    #[arg(long)]
    pub audit_log_maxage: Option<u64>,
    /// sqlite://<path>, or https://host:2379[,https://host2:2379] for etcd [default: sqlite://<data-dir>/state.db]
    #[arg(long)]
    pub datastore_endpoint: Option<String>,
    /// CA bundle to verify etcd's serving certificate
    #[arg(long)]
    pub datastore_cafile: Option<PathBuf>,
    /// Client certificate for etcd
    #[arg(long)]
    pub datastore_certfile: Option<PathBuf>,
    /// Client key for etcd
    #[arg(long)]
    pub datastore_keyfile: Option<PathBuf>,
    /// HTTPS port of the controller manager's health checks and metrics, on 127.0.0.1; 0 lets the system pick one (logged) [default: 10257]
    #[arg(long)]
    pub controller_manager_secure_port: Option<u16>,
    /// HTTPS port of the scheduler's health checks and metrics, on 127.0.0.1; 0 lets the system pick one (logged) [default: 10259]
    #[arg(long)]
    pub scheduler_secure_port: Option<u16>,
    /// Run no scheduler in this server (another one places pods)
    #[arg(long)]
    #[serde(default)]
    pub disable_scheduler: bool,
    /// Non-mutating requests the API server executes at once; API Priority and Fairness divides this plus the mutating limit among its priority levels [default: 400]
    #[arg(long)]
    pub max_requests_inflight: Option<u32>,
    /// Mutating requests the API server executes at once (added to --max-requests-inflight) [default: 200]
    #[arg(long)]
    pub max_mutating_requests_inflight: Option<u32>,
    /// CSV file of static bearer tokens, as kube-apiserver's: token,user,uid[,"group1,group2"]
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
}

/// Settings with every default filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub audit_log_path: PathBuf,
    pub audit_policy_file: Option<PathBuf>,
    pub audit_log_maxsize_mb: u64,
    pub audit_log_maxbackup: usize,
    pub audit_log_maxage: u64,
    pub pod_security_admission_config_file: Option<PathBuf>,
    /// The admission plugins chosen beyond the defaults.
    pub admission_plugins: keelson_apiserver::admission::plugins::Selection,
    /// The admission plugins that run, in their order.
    pub enabled_admission_plugins: Vec<&'static str>,
    /// The EncryptionConfiguration file, and whether it was named (else it is generated).
    pub encryption_provider_config: (PathBuf, bool),
    pub service_cidr: keelson_apiserver::services::Cidr,
    /// The pods' range, checked.
    pub cluster_cidr: String,
    pub advertise_address: IpAddr,
    pub https_listen_port: u16,
    pub bind_address: IpAddr,
    pub datastore: Endpoint,
    pub datastore_tls: TlsFiles,
    pub controller_manager_secure_port: u16,
    pub scheduler_secure_port: u16,
    pub disable_scheduler: bool,
    pub max_requests_inflight: u32,
    pub max_mutating_requests_inflight: u32,
    pub token_auth_file: Option<PathBuf>,
}

impl ServerArgs {
    /// Reads the config file (if any) under these flags and fills in defaults.
    pub fn resolve(self) -> anyhow::Result<ServerConfig> {
        let default_file =
            self.data_dir.clone().unwrap_or_else(default_data_dir).join("config.yaml");
        let file = match &self.config {
            Some(path) => Some(read_file(path)?),
            None if default_file.exists() => Some(read_file(&default_file)?),
            None => None,
        };
        let merged = match file {
            Some(file) => self.over(file),
            None => self,
        };
        let data_dir = merged.data_dir.unwrap_or_else(default_data_dir);
        let datastore = match &merged.datastore_endpoint {
            Some(endpoint) => Endpoint::parse(endpoint)?,
            None => Endpoint::Sqlite(data_dir.join("state.db")),
        };
        let service_cidr = merged.service_cidr.as_deref().unwrap_or("10.43.0.0/16");
        let service_cidr = keelson_apiserver::services::Cidr::parse(service_cidr)
            .map_err(|e| anyhow::anyhow!("invalid --service-cidr: {e}"))?;
        let cluster_cidr = merged.cluster_cidr.clone().unwrap_or_else(|| "10.42.0.0/16".into());
        keelson_controllers::nodeipam::Settings::new(&cluster_cidr, 24)
            .map_err(|e| anyhow::anyhow!("invalid --cluster-cidr: {e}"))?;
        let bind_address = merged.bind_address.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let advertise_address = merged.advertise_address.unwrap_or_else(|| {
            if bind_address.is_unspecified() {
                keelson_pki::host_addresses()
                    .into_iter()
                    .find(IpAddr::is_ipv4)
                    .unwrap_or(IpAddr::from([127, 0, 0, 1]))
            } else {
                bind_address
            }
        });
        let admission_plugins = keelson_apiserver::admission::plugins::Selection {
            enable: plugin_names(merged.enable_admission_plugins.as_deref()),
            disable: plugin_names(merged.disable_admission_plugins.as_deref()),
        };
        let enabled_admission_plugins = admission_plugins.resolve()?;
        let encryption_provider_config = match merged.encryption_provider_config.clone() {
            Some(path) => (path, true),
            None => (data_dir.join("cred/encryption-config.yaml"), false),
        };
        Ok(ServerConfig {
            audit_log_path: merged
                .audit_log_path
                .clone()
                .unwrap_or_else(|| data_dir.join("logs/audit.log")),
            audit_policy_file: merged.audit_policy_file.clone(),
            pod_security_admission_config_file: merged.pod_security_admission_config_file.clone(),
            admission_plugins,
            enabled_admission_plugins,
            audit_log_maxsize_mb: merged.audit_log_maxsize.unwrap_or(100),
            audit_log_maxbackup: merged.audit_log_maxbackup.unwrap_or(10),
            audit_log_maxage: merged.audit_log_maxage.unwrap_or(30),
            encryption_provider_config,
            service_cidr,
            cluster_cidr,
            advertise_address,
            https_listen_port: merged.https_listen_port.unwrap_or(6443),
            bind_address,
            datastore,
            datastore_tls: TlsFiles {
                ca_file: merged.datastore_cafile,
                cert_file: merged.datastore_certfile,
                key_file: merged.datastore_keyfile,
            },
            controller_manager_secure_port: merged
                .controller_manager_secure_port
                .unwrap_or(keelson_controllers::SECURE_PORT),
            scheduler_secure_port: merged
                .scheduler_secure_port
                .unwrap_or(keelson_scheduler::SECURE_PORT),
            disable_scheduler: merged.disable_scheduler,
            max_requests_inflight: merged.max_requests_inflight.unwrap_or(400),
            max_mutating_requests_inflight: merged.max_mutating_requests_inflight.unwrap_or(200),
            token_auth_file: merged.token_auth_file.clone(),
            data_dir,
        })
    }

    /// These flags, with `file`'s values where a flag was not given.
    fn over(self, file: ServerArgs) -> ServerArgs {
        ServerArgs {
            config: self.config,
            data_dir: self.data_dir.or(file.data_dir),
            https_listen_port: self.https_listen_port.or(file.https_listen_port),
            service_cidr: self.service_cidr.or(file.service_cidr),
            cluster_cidr: self.cluster_cidr.or(file.cluster_cidr),
            advertise_address: self.advertise_address.or(file.advertise_address),
            encryption_provider_config: self
                .encryption_provider_config
                .or(file.encryption_provider_config),
            audit_log_path: self.audit_log_path.or(file.audit_log_path),
            audit_policy_file: self.audit_policy_file.or(file.audit_policy_file),
            audit_log_maxsize: self.audit_log_maxsize.or(file.audit_log_maxsize),
            pod_security_admission_config_file: self
                .pod_security_admission_config_file
                .or(file.pod_security_admission_config_file),
            enable_admission_plugins: self
                .enable_admission_plugins
                .or(file.enable_admission_plugins),
            disable_admission_plugins: self
                .disable_admission_plugins
                .or(file.disable_admission_plugins),
            audit_log_maxbackup: self.audit_log_maxbackup.or(file.audit_log_maxbackup),
            audit_log_maxage: self.audit_log_maxage.or(file.audit_log_maxage),
            bind_address: self.bind_address.or(file.bind_address),
            datastore_endpoint: self.datastore_endpoint.or(file.datastore_endpoint),
            datastore_cafile: self.datastore_cafile.or(file.datastore_cafile),
            datastore_certfile: self.datastore_certfile.or(file.datastore_certfile),
            datastore_keyfile: self.datastore_keyfile.or(file.datastore_keyfile),
            controller_manager_secure_port: self
                .controller_manager_secure_port
                .or(file.controller_manager_secure_port),
            scheduler_secure_port: self.scheduler_secure_port.or(file.scheduler_secure_port),
            disable_scheduler: self.disable_scheduler || file.disable_scheduler,
            max_requests_inflight: self.max_requests_inflight.or(file.max_requests_inflight),
            max_mutating_requests_inflight: self
                .max_mutating_requests_inflight
                .or(file.max_mutating_requests_inflight),
            token_auth_file: self.token_auth_file.or(file.token_auth_file),
        }
    }
}

/// A comma-separated list of plugin names, as kube-apiserver's flags take them.
fn plugin_names(list: Option<&str>) -> Vec<String> {
    list.into_iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

fn read_file(path: &Path) -> anyhow::Result<ServerArgs> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(ServerArgs::default());
    }
    serde_saphyr::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// `/var/lib/keelson` for root, `$XDG_DATA_HOME/keelson` (or `~/.local/share/keelson`)
/// for anyone else.
pub fn default_data_dir() -> PathBuf {
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib/keelson");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("keelson");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/keelson")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("config.yaml"),
            "https-listen-port: 7443\ndatastore-endpoint: https://etcd-a:2379,https://etcd-b:2379\n\
             datastore-cafile: /etc/etcd/ca.crt\n",
        )?;
        let args = ServerArgs {
            data_dir: Some(dir.path().to_owned()),
            datastore_cafile: Some("/flag/ca.crt".into()),
            ..ServerArgs::default()
        };
        let config = args.resolve()?;
        assert_eq!(config.https_listen_port, 7443);
        assert_eq!(
            config.datastore,
            Endpoint::Etcd(vec!["https://etcd-a:2379".into(), "https://etcd-b:2379".into()])
        );
        assert_eq!(config.datastore_tls.ca_file, Some("/flag/ca.crt".into()));
        assert_eq!(config.bind_address, IpAddr::from([0, 0, 0, 0]));
        Ok(())
    }

    #[test]
    fn defaults_put_sqlite_in_the_data_dir() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let config =
            ServerArgs { data_dir: Some(dir.path().to_owned()), ..Default::default() }.resolve()?;
        assert_eq!(config.datastore, Endpoint::Sqlite(dir.path().join("state.db")));
        assert_eq!(config.https_listen_port, 6443);
        assert_eq!(config.controller_manager_secure_port, 10257);
        Ok(())
    }

    #[test]
    fn admission_plugins_come_from_flags_or_the_file_in_upstream_order() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("config.yaml"),
            "enable-admission-plugins: AlwaysDeny,AlwaysAdmit\n\
             disable-admission-plugins: ResourceQuota, LimitRanger\n",
        )?;
        let args = ServerArgs { data_dir: Some(dir.path().to_owned()), ..Default::default() };
        let config = args.clone().resolve()?;
        assert_eq!(config.admission_plugins.disable, ["ResourceQuota", "LimitRanger"]);
        let enabled = &config.enabled_admission_plugins;
        assert_eq!(enabled.first(), Some(&"AlwaysAdmit"));
        assert_eq!(enabled.last(), Some(&"AlwaysDeny"));
        assert!(!enabled.contains(&"LimitRanger") && !enabled.contains(&"ResourceQuota"));
        // The flag beats the file.
        let flagged = ServerArgs { disable_admission_plugins: Some("PodSecurity".into()), ..args };
        let config = flagged.resolve()?;
        assert!(config.enabled_admission_plugins.contains(&"LimitRanger"));
        assert!(!config.enabled_admission_plugins.contains(&"PodSecurity"));
        Ok(())
    }

    #[test]
    fn an_unknown_admission_plugin_is_refused_in_upstream_words() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let args = ServerArgs {
            data_dir: Some(dir.path().to_owned()),
            enable_admission_plugins: Some("NodeRestriction,Bogus".into()),
            ..Default::default()
        };
        let err = format!("{:#}", args.resolve().err().ok_or_else(|| anyhow::anyhow!("accepted"))?);
        assert_eq!(err, "enable-admission-plugins plugin \"Bogus\" is unknown");
        Ok(())
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error_naming_it() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("custom.yaml");
        std::fs::write(&path, "https-listen-prot: 7443\n")?;
        let args = ServerArgs { config: Some(path), ..Default::default() };
        let err = format!("{:#}", args.resolve().err().ok_or_else(|| anyhow::anyhow!("accepted"))?);
        assert!(err.contains("https-listen-prot"), "{err}");
        Ok(())
    }
}

//! Who a component's parts are to the API server.
//!
//! A component authenticates with its own kubeconfig (`cred/controller-manager.kubeconfig`:
//! a client certificate for `system:kube-controller-manager`). With
//! `--use-service-account-credentials` each controller instead acts as its own
//! ServiceAccount in `kube-system`, as upstream's `SAControllerClientBuilder` does: the
//! component makes sure the account exists, asks for a token through the TokenRequest
//! API (an hour long), keeps it in a private file that the controller's client re-reads
//! every minute, and asks for a new one when 80 % of its life has passed.
//!
//! Must never write a token where another user can read it (files are 0600 in a 0700
//! directory of the process's own).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keelson_api::k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use keelson_api::k8s_openapi::api::core::v1::ServiceAccount;
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::Error;

const TOKEN_SECONDS: i64 = 3600;
const NAMESPACE: &str = "kube-system";

/// A client from a kubeconfig file, and the configuration it was made from.
pub async fn from_kubeconfig(path: &Path) -> Result<(Client, Config), Error> {
    let kubeconfig = Kubeconfig::read_from(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Config(format!("cannot use {}: {e}", path.display())))?;
    let client = Client::try_from(config.clone())?;
    Ok((client, config))
}

/// A client like `config`'s that names itself `agent` (the `User-Agent` whose first word
/// the API server records as the field manager of its writes).
pub fn with_user_agent(mut config: Config, agent: &'static str) -> Result<Client, Error> {
    config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_static(agent)));
    Ok(Client::try_from(config)?)
}

/// How controllers get their clients.
#[derive(Clone)]
pub enum Credentials {
    /// Every controller uses the component's client.
    Shared(Client),
    /// Each controller acts as its ServiceAccount.
    ServiceAccounts(Arc<ServiceAccounts>),
}

pub struct ServiceAccounts {
    root: Client,
    config: Config,
    dir: tempfile_dir::PrivateDir,
}

impl Credentials {
    /// Per-controller ServiceAccount tokens, asked for with `root` (the component's
    /// client, made from `config`).
    pub fn service_accounts(root: Client, config: Config) -> Result<Self, Error> {
        let dir = tempfile_dir::PrivateDir::new()?;
        Ok(Credentials::ServiceAccounts(Arc::new(ServiceAccounts { root, config, dir })))
    }

    /// The client of the controller that acts as `service_account`.
    pub async fn client_for(&self, service_account: &str) -> Result<Client, Error> {
        match self {
            Credentials::Shared(client) => Ok(client.clone()),
            Credentials::ServiceAccounts(sa) => sa.client_for(service_account).await,
        }
    }
}

impl ServiceAccounts {
    async fn client_for(self: &Arc<Self>, name: &str) -> Result<Client, Error> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.root.clone(), NAMESPACE);
        if accounts.get_opt(name).await?.is_none() {
            let account = ServiceAccount {
                metadata: ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() },
                ..ServiceAccount::default()
            };
            match accounts.create(&PostParams::default(), &account).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        let path = self.dir.path().join(format!("{name}.token"));
        self.refresh(name, &path).await?;
        let mut config = self.config.clone();
        config.auth_info =
            AuthInfo { token_file: Some(path.display().to_string()), ..AuthInfo::default() };
        let client = Client::try_from(config)?;
        // The refresher holds the accounts weakly: it ends when the component drops them.
        let this = Arc::downgrade(self);
        let name = name.to_owned();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs((TOKEN_SECONDS as u64) * 8 / 10)).await;
                // A failed refresh leaves the old token, good for another 20 % of its life;
                // try again a minute later.
                loop {
                    let Some(this) = this.upgrade() else { return };
                    let Err(e) = this.refresh(&name, &path).await else { break };
                    tracing::warn!(service_account = name, error = %e, "cannot refresh a controller's token");
                    drop(this);
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
            }
        });
        Ok(client)
    }

    async fn refresh(&self, name: &str, path: &Path) -> Result<(), Error> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.root.clone(), NAMESPACE);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(TOKEN_SECONDS),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let answer = accounts.create_token_request(name, &PostParams::default(), &request).await?;
        let token = answer.status.map(|s| s.token).unwrap_or_default();
        if token.is_empty() {
            return Err(Error::Config(format!(
                "the token request of {NAMESPACE}/{name} returned no token"
            )));
        }
        write_private(path, token.as_bytes())?;
        Ok(())
    }
}

/// Writes `bytes` to `path` (0600) through a temporary file and a rename.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp: PathBuf = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

mod tempfile_dir {
    use super::*;

    /// A 0700 directory under the runtime directory, removed on drop.
    pub struct PrivateDir(PathBuf);

    impl PrivateDir {
        pub fn new() -> Result<Self, Error> {
            let base = std::env::var_os("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            let path = base.join(format!("keelson-tokens-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&path)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
            Ok(PrivateDir(path))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for PrivateDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

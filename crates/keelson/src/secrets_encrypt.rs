//! `keelson secrets-encrypt status|rotate-keys`: the keys that encrypt Secrets at rest,
//! shown and rotated while the server runs (k3s's command, done online).
//!
//! Rotation puts a new secretbox key first in the `EncryptionConfiguration` file, keeping
//! the old keys for reading; waits until the server has reloaded the file (see
//! `server.rs`); rewrites every Secret through the API as the admin (a GET and a PUT of
//! each, upstream's `kubectl get secrets -A -o json | kubectl replace -f -`); checks
//! that every stored Secret now names the new key; and only then drops the old keys.
//! Must never drop a key while a stored Secret still names it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use http::{Method, StatusCode};
use keelson_apiserver::encryption::{EncryptionConfig, RuleSummary, Status, generate_key};
use serde_json::{Value, json};

use crate::client::{Connection, Endpoint};
use crate::config::ServerArgs;

/// Where the server reports the encryption in effect.
const STATUS_PATH: &str = "/keelson/v1/secrets-encryption";
/// How long the server may take to load an edited configuration file.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the providers and keys in effect and whether every Secret is stored with the
    /// key new writes use.
    Status(Args),
    /// Encrypt Secrets with a new secretbox key: rewrite every Secret with it, then drop
    /// the old keys. The server keeps running.
    RotateKeys(Args),
}

#[derive(clap::Args)]
pub struct Args {
    /// The server's data directory [default: /var/lib/keelson as root, else $XDG_DATA_HOME/keelson]
    #[arg(long, short = 'd')]
    data_dir: Option<PathBuf>,
    /// The server's config file [default: <data-dir>/config.yaml]
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// The EncryptionConfiguration the server reads [default: as the server resolves it]
    #[arg(long)]
    encryption_provider_config: Option<PathBuf>,
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Status(args) => status(&Cluster::open(args)?).await,
        Command::RotateKeys(args) => rotate_keys(&Cluster::open(args)?).await,
    }
}

/// The configuration file and the server that reads it.
struct Cluster {
    file: PathBuf,
    endpoint: Endpoint,
}

impl Cluster {
    fn open(args: Args) -> anyhow::Result<Self> {
        let server = ServerArgs {
            config: args.config,
            data_dir: args.data_dir,
            encryption_provider_config: args.encryption_provider_config,
            ..ServerArgs::default()
        }
        .resolve()?;
        let endpoint = Endpoint::from_kubeconfig(&server.data_dir.join("admin.kubeconfig"))?;
        Ok(Cluster { file: server.encryption_provider_config.0, endpoint })
    }

    async fn connect(&self) -> anyhow::Result<Connection> {
        self.endpoint.connect().await.context("is the keelson server running?")
    }

    async fn server_status(&self) -> anyhow::Result<Status> {
        let (code, body) =
            self.connect().await?.request_json(Method::GET, STATUS_PATH, None).await?;
        ensure!(
            code == StatusCode::OK,
            "GET {STATUS_PATH}: {code}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).context("cannot read the server's encryption status")
    }

    /// The rules of the file as it is now.
    fn file_summary(&self) -> anyhow::Result<Vec<RuleSummary>> {
        Ok(EncryptionConfig::load(&self.file)?.summary())
    }

    /// Waits until the server has the file's configuration in effect.
    async fn wait_until_loaded(&self) -> anyhow::Result<Status> {
        let wanted = self.file_summary()?;
        let deadline = Instant::now() + RELOAD_TIMEOUT;
        loop {
            let status = self.server_status().await?;
            if status.resources == wanted {
                return Ok(status);
            }
            ensure!(
                Instant::now() < deadline,
                "the server has not loaded {} after {RELOAD_TIMEOUT:?}; see its log",
                self.file.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn status(cluster: &Cluster) -> anyhow::Result<()> {
    let status = cluster.server_status().await?;
    let loaded = cluster.file_summary().map(|file| file == status.resources);
    println!("Encryption configuration: {}", cluster.file.display());
    match loaded {
        Ok(true) => println!("Loaded by the server: yes"),
        Ok(false) => {
            println!("Loaded by the server: not yet (the file differs from what is in effect)")
        }
        Err(e) => println!("Loaded by the server: no ({e:#})"),
    }
    println!("Providers in effect:");
    for rule in &status.resources {
        let providers: Vec<String> = rule
            .providers
            .iter()
            .map(|p| match p.keys.as_slice() {
                [] => p.kind.clone(),
                keys => format!("{} [{}]", p.kind, keys.join(", ")),
            })
            .collect();
        println!("  {}: {}", rule.resources.join(", "), providers.join(", "));
    }
    let secrets = &status.secrets;
    println!("Write key for Secrets: {}", secrets.write_key);
    if secrets.all_current() {
        println!("Secrets: {}, all stored with {}", secrets.total, secrets.write_key);
    } else {
        let stale: Vec<String> = secrets
            .by_key
            .iter()
            .filter(|(key, _)| **key != secrets.write_key)
            .map(|(key, n)| format!("{n} with {key}"))
            .collect();
        println!(
            "Secrets: {}, not all stored with {}: {} (run `keelson secrets-encrypt rotate-keys`)",
            secrets.total,
            secrets.write_key,
            stale.join(", ")
        );
    }
    Ok(())
}

async fn rotate_keys(cluster: &Cluster) -> anyhow::Result<()> {
    let before = cluster.server_status().await?;
    ensure!(
        cluster.file_summary()? == before.resources,
        "the server does not have {} in effect yet; wait for it to load the file, or restart it",
        cluster.file.display()
    );
    let mut doc = read_yaml(&cluster.file)?;
    let rule = rotatable_rule(&doc)
        .with_context(|| format!("cannot rotate {}", cluster.file.display()))?;
    let name = new_key_name(&doc);
    let first = &mut doc["resources"][rule]["providers"];
    let providers = first.as_array_mut().context("providers is not a list")?;
    let key = json!({"name": name, "secret": generate_key(32)});
    match providers.first_mut().and_then(|p| p.get_mut("secretbox")) {
        Some(secretbox) => {
            let keys = secretbox["keys"].as_array_mut().context("secretbox keys is not a list")?;
            keys.insert(0, key);
        }
        None => providers.insert(0, json!({"secretbox": {"keys": [key]}})),
    }
    write_yaml(&cluster.file, &doc)?;
    let loaded = cluster.wait_until_loaded().await?;
    let write_key = format!("secretbox/{name}");
    ensure!(
        loaded.secrets.write_key == write_key,
        "the server writes Secrets with {}",
        loaded.secrets.write_key
    );
    println!("Secrets are now written with {write_key}; rewriting every Secret");

    let rewritten = rewrite_secrets(cluster).await?;
    let after = cluster.server_status().await?;
    if !after.secrets.all_current() {
        bail!(
            "rewrote {rewritten} Secrets, but some are still stored with an old key ({:?}); the old keys stay in {}",
            after.secrets.by_key,
            cluster.file.display()
        );
    }

    let secretbox = &mut doc["resources"][rule]["providers"][0]["secretbox"]["keys"];
    let keys = secretbox.as_array_mut().context("secretbox keys is not a list")?;
    let dropped: Vec<String> = keys
        .iter()
        .filter(|k| k["name"] != name.as_str())
        .filter_map(|k| k["name"].as_str().map(str::to_owned))
        .collect();
    keys.retain(|k| k["name"] == name.as_str());
    write_yaml(&cluster.file, &doc)?;
    cluster.wait_until_loaded().await?;
    println!(
        "Rotated: {rewritten} Secrets rewritten with {write_key}; dropped {}",
        if dropped.is_empty() { "no old secretbox key".to_owned() } else { dropped.join(", ") }
    );
    Ok(())
}

/// A GET and a PUT of every Secret: the PUT stores it again with the current write key.
async fn rewrite_secrets(cluster: &Cluster) -> anyhow::Result<usize> {
    let mut connection = cluster.connect().await?;
    let mut rewritten = 0;
    let mut token = String::new();
    loop {
        let mut path = "/api/v1/secrets?limit=500".to_owned();
        if !token.is_empty() {
            path.push_str("&continue=");
            path.push_str(&percent_encode(&token));
        }
        let list = get_json(&mut connection, &path).await?.context("cannot list Secrets")?;
        for item in list["items"].as_array().into_iter().flatten() {
            if rewrite(&mut connection, item.clone()).await? {
                rewritten += 1;
            }
        }
        token = list["metadata"]["continue"].as_str().unwrap_or_default().to_owned();
        if token.is_empty() {
            return Ok(rewritten);
        }
    }
}

/// Puts `secret` back as it is; on a conflict reads it again and retries. False if it
/// was deleted meanwhile.
async fn rewrite(connection: &mut Connection, mut secret: Value) -> anyhow::Result<bool> {
    let namespace = secret["metadata"]["namespace"].as_str().unwrap_or_default().to_owned();
    let name = secret["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    let path = format!("/api/v1/namespaces/{namespace}/secrets/{name}");
    for _ in 0..5 {
        secret["apiVersion"] = json!("v1");
        secret["kind"] = json!("Secret");
        let body = Bytes::from(serde_json::to_vec(&secret)?);
        let (code, answer) = connection.request_json(Method::PUT, &path, Some(body)).await?;
        match code {
            StatusCode::OK => return Ok(true),
            StatusCode::NOT_FOUND => return Ok(false),
            StatusCode::CONFLICT => match get_json(connection, &path).await? {
                Some(current) => secret = current,
                None => return Ok(false),
            },
            code => bail!("PUT {path}: {code}: {}", String::from_utf8_lossy(&answer)),
        }
    }
    bail!("PUT {path}: still conflicting after 5 attempts")
}

/// The object at `path`, or `None` if it does not exist.
async fn get_json(connection: &mut Connection, path: &str) -> anyhow::Result<Option<Value>> {
    let (code, body) = connection.request_json(Method::GET, path, None).await?;
    match code {
        StatusCode::OK => Ok(Some(serde_json::from_slice(&body)?)),
        StatusCode::NOT_FOUND => Ok(None),
        code => bail!("GET {path}: {code}: {}", String::from_utf8_lossy(&body)),
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// The index of the rule that covers Secrets, if it covers nothing else: only Secrets
/// are rewritten, so dropping the old keys of a wider rule would leave the other
/// resources unreadable.
fn rotatable_rule(doc: &Value) -> anyhow::Result<usize> {
    let rule = doc["resources"]
        .as_array()
        .and_then(|rules| {
            rules.iter().position(|rule| {
                rule["resources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| matches!(r.as_str(), Some("secrets" | "*." | "*.*")))
            })
        })
        .context("no rule covers secrets")?;
    let covered = &doc["resources"][rule]["resources"];
    ensure!(
        *covered == json!(["secrets"]),
        "the rule for secrets covers {covered}, but rotate-keys rewrites only Secrets: give secrets a rule of their own"
    );
    Ok(rule)
}

/// `keyN` for the smallest N no key of the file is named.
fn new_key_name(doc: &Value) -> String {
    let names: Vec<&str> = doc["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|rule| rule["providers"].as_array().into_iter().flatten())
        .filter_map(Value::as_object)
        .flat_map(|provider| provider.values())
        .flat_map(|config| config["keys"].as_array().into_iter().flatten())
        .filter_map(|key| key["name"].as_str())
        .collect();
    (1..)
        .map(|n| format!("key{n}"))
        .find(|name| !names.contains(&name.as_str()))
        .unwrap_or_default()
}

fn read_yaml(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_saphyr::from_str(&text).with_context(|| format!("invalid YAML in {}", path.display()))
}

/// Replaces `path` atomically (a 0600 file renamed over it), after checking that the
/// server would accept it.
fn write_yaml(path: &Path, doc: &Value) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = serde_saphyr::to_string(doc)?;
    EncryptionConfig::parse(&text).map_err(anyhow::Error::msg)?;
    let temporary = path.with_extension("yaml.new");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all())?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_keys_get_the_first_free_name_and_secrets_their_rule() {
        let doc: Value = serde_saphyr::from_str(
            "kind: EncryptionConfiguration\nresources:\n  - resources: [configmaps]\n    providers: [{identity: {}}]\n  - resources: [secrets]\n    providers:\n      - secretbox: {keys: [{name: key1, secret: x}, {name: key3, secret: y}]}\n      - aescbc: {keys: [{name: key2, secret: z}]}\n",
        )
        .expect("yaml");
        assert_eq!(new_key_name(&doc), "key4");
        assert_eq!(rotatable_rule(&doc).ok(), Some(1));
        let wide: Value = serde_saphyr::from_str(
            "kind: EncryptionConfiguration\nresources:\n  - resources: [secrets, configmaps]\n    providers: [{identity: {}}]\n",
        )
        .expect("yaml");
        let refused = rotatable_rule(&wide).expect_err("a rule wider than secrets");
        assert!(refused.to_string().contains("give secrets a rule of their own"), "{refused}");
        assert_eq!(percent_encode("a/b=="), "a%2Fb%3D%3D");
    }
}

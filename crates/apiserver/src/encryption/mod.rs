//! Encryption at rest: an `apiserver.config.k8s.io/v1` `EncryptionConfiguration` applied
//! as a [`Store`](keelson_store::Store) wrapper ([`EncryptedStore`]), so every write of a
//! configured resource is encrypted before it reaches SQLite or etcd and every read, list
//! and watch sees plaintext.
//!
//! Providers: `secretbox`, `aesgcm`, `aescbc` and `identity`, in upstream's stored
//! formats ([`providers`]). The first key of a resource's first provider encrypts; every
//! key of every provider is tried when reading, so keys rotate: put a new key first,
//! rewrite every object, then drop the old key. The configuration is swappable while the
//! server runs ([`Encryption::reload`]), as kube-apiserver's
//! `--encryption-provider-config-automatic-reload`.
//!
//! Must never write a configured resource in plaintext unless `identity` is its first
//! provider, and never return ciphertext to a reader.

mod providers;
mod store;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use base64::Engine;
use keelson_store::{Error, KeyValue, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use providers::Kind;
use providers::{ENCRYPTED_PREFIX, Key};
pub use store::{EncryptedStore, Status, StoredSecrets, stale, status};

/// One provider of a resource rule, with its keys in order.
#[derive(Clone)]
struct Provider {
    kind: Kind,
    keys: Vec<Key>,
}

#[derive(Clone)]
struct Rule {
    /// As written in the file (`secrets`, `*.apps`).
    resources: Vec<String>,
    /// The storage prefixes those name.
    prefixes: Vec<String>,
    providers: Vec<Provider>,
}

/// Which storage prefixes are encrypted, and how.
#[derive(Clone)]
pub struct EncryptionConfig {
    rules: Vec<Rule>,
}

/// What a rule of the configuration says, without the key material.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSummary {
    pub resources: Vec<String>,
    pub providers: Vec<ProviderSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSummary {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read encryption configuration {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid encryption configuration {path}: {reason}")]
    Invalid { path: String, reason: Box<InvalidConfig> },
}

/// Why text is not a valid `EncryptionConfiguration`.
#[derive(Debug, thiserror::Error)]
pub enum InvalidConfig {
    #[error(transparent)]
    Yaml(#[from] serde_saphyr::Error),
    /// The document's `kind`, as JSON.
    #[error("kind must be EncryptionConfiguration, not {0}")]
    Kind(Value),
    /// Every field error, as kube-apiserver words and joins them.
    #[error("{}", joined(.0))]
    Fields(Vec<String>),
}

/// One field error alone, several as `[a, b]`.
fn joined(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        all => format!("[{}]", all.join(", ")),
    }
}

/// A fresh random key of `size` bytes, base64 as the configuration file holds it.
pub fn generate_key(size: usize) -> String {
    use aes_gcm::aead::rand_core::RngCore;
    let mut key = vec![0; size];
    aes_gcm::aead::OsRng.fill_bytes(&mut key);
    base64::engine::general_purpose::STANDARD.encode(key)
}

impl EncryptionConfig {
    /// Reads an `EncryptionConfiguration` file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text).map_err(|reason| ConfigError::Invalid {
            path: path.display().to_string(),
            reason: Box::new(reason),
        })
    }

    /// Writes a configuration that encrypts Secrets with a fresh secretbox key (0600) if
    /// `path` does not exist, then reads it.
    pub fn load_or_create(path: &Path) -> Result<Self, ConfigError> {
        if !path.exists() {
            let write = |e: std::io::Error| ConfigError::Read {
                path: path.display().to_string(),
                source: e,
            };
            let text = format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - secretbox:\n          keys:\n            - name: key1\n              secret: {}\n      - identity: {{}}\n",
                generate_key(32)
            );
            if let Some(dir) = path.parent() {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(write)?;
            }
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(write)?;
            file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(write)?;
            tracing::info!(path = %path.display(), "generated the secrets encryption key");
        }
        Self::load(path)
    }

    /// Parses and validates a configuration; errors read as kube-apiserver's
    /// (`resources[0].providers[0].aesgcm.keys[0].secret: Invalid value: …`).
    pub fn parse(text: &str) -> Result<Self, InvalidConfig> {
        let doc: Value = serde_saphyr::from_str(text)?;
        if doc["kind"] != "EncryptionConfiguration" {
            return Err(InvalidConfig::Kind(doc["kind"].clone()));
        }
        let mut errors = Vec::new();
        let mut rules = Vec::new();
        let empty = Vec::new();
        let resource_rules = doc["resources"].as_array().unwrap_or(&empty);
        if resource_rules.is_empty() {
            errors.push("resources: Required value: at least one resources is required".into());
        }
        for (i, rule) in resource_rules.iter().enumerate() {
            let resources: Vec<String> = crate::meta::string_list(&rule["resources"]);
            if resources.is_empty() {
                errors.push(format!(
                    "resources[{i}].resources: Required value: at least one resources[{i}].resources is required"
                ));
            }
            let mut prefixes = Vec::new();
            for (j, resource) in resources.iter().enumerate() {
                match storage_prefixes(resource) {
                    Some(found) => prefixes.extend(found),
                    None => errors.push(format!(
                        "resources[{i}].resources[{j}]: Invalid value: {resource:?}: names no resource this server has"
                    )),
                }
            }
            let configured = rule["providers"].as_array().unwrap_or(&empty);
            if configured.is_empty() {
                errors.push(format!(
                    "resources[{i}].providers: Required value: at least one resources[{i}].providers is required"
                ));
            }
            let mut providers = Vec::new();
            for (j, provider) in configured.iter().enumerate() {
                let path = format!("resources[{i}].providers[{j}]");
                match parse_provider(provider, &path) {
                    Ok(provider) => providers.push(provider),
                    Err(more) => errors.extend(more),
                }
            }
            rules.push(Rule { resources, prefixes, providers });
        }
        if errors.is_empty() {
            Ok(EncryptionConfig { rules })
        } else {
            Err(InvalidConfig::Fields(errors))
        }
    }

    fn rule(&self, key: &str) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.prefixes.iter().any(|p| key.starts_with(p)))
    }

    /// The rules in effect, with key names but no key material.
    pub fn summary(&self) -> Vec<RuleSummary> {
        self.rules
            .iter()
            .map(|rule| RuleSummary {
                resources: rule.resources.clone(),
                providers: rule
                    .providers
                    .iter()
                    .map(|p| ProviderSummary {
                        kind: p.kind.name().into(),
                        keys: p.keys.iter().map(|k| k.name.clone()).collect(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// What new writes of `storage_key` are encrypted with: `secretbox/key2`, `identity`.
    pub fn write_key(&self, storage_key: &str) -> String {
        match self.rule(storage_key).and_then(|r| r.providers.first()) {
            Some(Provider { kind, keys }) if *kind != Kind::Identity => {
                format!("{}/{}", kind.name(), keys[0].name)
            }
            _ => Kind::Identity.name().into(),
        }
    }

    fn encrypt(&self, storage_key: &str, value: Vec<u8>) -> Result<Vec<u8>> {
        let Some(Provider { kind, keys }) =
            self.rule(storage_key).and_then(|r| r.providers.first())
        else {
            return Ok(value);
        };
        let Some(key) = keys.first() else { return Ok(value) };
        let sealed =
            key.seal(storage_key, &value).map_err(|e| Error::Unavailable(e.to_string()))?;
        let mut out = format!("{}{}:", kind.prefix(), key.name).into_bytes();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Tries every provider whose prefix the value has and every key of it whose name
    /// follows, as upstream's prefix transformers do; identity reads what is not
    /// encrypted.
    fn decrypt(&self, storage_key: &str, value: Vec<u8>) -> Result<Vec<u8>> {
        let encrypted = value.starts_with(ENCRYPTED_PREFIX.as_bytes());
        let Some(rule) = self.rule(storage_key) else {
            if encrypted {
                return Err(Error::Corrupt(format!(
                    "{storage_key:?} is encrypted, but its resource is not in the encryption configuration"
                )));
            }
            return Ok(value);
        };
        let mut errors = Vec::new();
        for provider in &rule.providers {
            if provider.kind == Kind::Identity {
                if !encrypted {
                    return Ok(value);
                }
                continue;
            }
            let Some(rest) = value.strip_prefix(provider.kind.prefix().as_bytes()) else {
                continue;
            };
            let mut matched = false;
            for key in &provider.keys {
                let Some(sealed) =
                    rest.strip_prefix(key.name.as_bytes()).and_then(|r| r.strip_prefix(b":"))
                else {
                    continue;
                };
                matched = true;
                match key.open(storage_key, sealed) {
                    Ok(plain) => return Ok(plain),
                    Err(e) => {
                        errors.push(format!("{} key {:?}: {e}", provider.kind.name(), key.name))
                    }
                }
            }
            if !matched {
                errors.push(format!(
                    "no matching key was found for the provided {} transformer",
                    provider.kind.name()
                ));
            }
        }
        if errors.is_empty() {
            errors.push(format!("no matching prefix found (stored as {})", stored_with(&value)));
        }
        Err(Error::Corrupt(format!("cannot decrypt {storage_key:?}: {}", errors.join("; "))))
    }

    fn decrypt_kv(&self, mut kv: KeyValue) -> Result<KeyValue> {
        kv.value = self.decrypt(&kv.key, kv.value)?;
        Ok(kv)
    }
}

/// The provider and key a stored value was written with, from its prefix alone:
/// `aesgcm/key1`, or `identity` for plaintext.
pub fn stored_with(value: &[u8]) -> String {
    let Some(rest) = value.strip_prefix(ENCRYPTED_PREFIX.as_bytes()) else {
        return Kind::Identity.name().into();
    };
    let mut fields = rest.splitn(4, |b| *b == b':');
    match (fields.next(), fields.next(), fields.next(), fields.next()) {
        (Some(kind), Some(_version), Some(name), Some(_)) => {
            format!("{}/{}", String::from_utf8_lossy(kind), String::from_utf8_lossy(name))
        }
        _ => "unknown".into(),
    }
}

fn parse_provider(provider: &Value, path: &str) -> Result<Provider, Vec<String>> {
    let object = provider.as_object().cloned().unwrap_or_default();
    let known: Vec<(&str, Kind)> = [
        ("aesgcm", Kind::AesGcm),
        ("aescbc", Kind::AesCbc),
        ("secretbox", Kind::Secretbox),
        ("identity", Kind::Identity),
    ]
    .into_iter()
    .filter(|(name, _)| object.contains_key(*name))
    .collect();
    let (name, kind) = match (known.as_slice(), object.contains_key("kms")) {
        (_, true) => {
            return Err(vec![format!(
                "{path}.kms: Unsupported value: the kms provider is not supported by Keelson"
            )]);
        }
        ([one], false) if object.len() == 1 => *one,
        ([], false) if object.is_empty() => {
            return Err(vec![format!(
                "{path}: Invalid value: {{}}: provider does not contain any of the expected providers: KMS, AESGCM, AESCBC, Secretbox, Identity"
            )]);
        }
        ([], false) => {
            let names: Vec<&String> = object.keys().collect();
            return Err(vec![format!(
                "{path}: Invalid value: {names:?}: provider does not contain any of the expected providers: KMS, AESGCM, AESCBC, Secretbox, Identity"
            )]);
        }
        _ => {
            return Err(vec![format!(
                "{path}: Invalid value: {:?}: more than one provider specified in a single element, should split into different list elements",
                object.keys().collect::<Vec<_>>()
            )]);
        }
    };
    if kind == Kind::Identity {
        return Ok(Provider { kind, keys: Vec::new() });
    }
    let path = format!("{path}.{name}.keys");
    let configured = object[name]["keys"].as_array().cloned().unwrap_or_default();
    if configured.is_empty() {
        return Err(vec![format!("{path}: Required value: at least one keys is required")]);
    }
    let mut errors = Vec::new();
    let mut keys = Vec::new();
    let sizes = kind.key_sizes();
    let expected = sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(" ");
    for (k, key) in configured.iter().enumerate() {
        let path = format!("{path}[{k}]");
        let name = key["name"].as_str().unwrap_or_default();
        let secret = key["secret"].as_str().unwrap_or_default();
        if name.is_empty() {
            errors
                .push(format!("{path}.name: Required value: name is a mandatory field for a key"));
        }
        if secret.is_empty() {
            errors.push(format!(
                "{path}.secret: Required value: secret is a mandatory field for a key"
            ));
            continue;
        }
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(secret) else {
            errors.push(format!(
                "{path}.secret: Invalid value: \"REDACTED\": secrets must be base64 encoded"
            ));
            continue;
        };
        match Key::new(kind, name.to_owned(), &bytes) {
            Some(key) if !name.is_empty() => keys.push(key),
            Some(_) => {}
            None => errors.push(format!(
                "{path}.secret: Invalid value: \"REDACTED\": secret is not of the expected length, got {}, expected one of [{expected}]",
                bytes.len()
            )),
        }
    }
    if errors.is_empty() { Ok(Provider { kind, keys }) } else { Err(errors) }
}

/// `secrets`, `deployments.apps`, `*.apps` or `*.*` as storage prefixes; `None` when it
/// names no resource this server has.
fn storage_prefixes(resource: &str) -> Option<Vec<String>> {
    let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
    let matches: Vec<String> = keelson_api::Registry::builtin()
        .resources()
        .filter(|r| (plural == "*" || r.plural == plural) && (group == "*" || r.group == group))
        .map(|r| r.storage_prefix())
        .collect();
    (!matches.is_empty()).then_some(matches)
}

/// The configuration in effect, swappable while the server runs: every operation of the
/// [`EncryptedStore`] reads the current one once, so it sees one configuration throughout.
#[derive(Clone)]
pub struct Encryption(Arc<RwLock<Arc<EncryptionConfig>>>);

impl Encryption {
    pub fn new(config: EncryptionConfig) -> Self {
        Encryption(Arc::new(RwLock::new(Arc::new(config))))
    }

    /// Puts `config` in effect for every operation that starts from now on.
    pub fn reload(&self, config: EncryptionConfig) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(config);
    }

    pub fn current(&self) -> Arc<EncryptionConfig> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl From<EncryptionConfig> for Encryption {
    fn from(config: EncryptionConfig) -> Self {
        Encryption::new(config)
    }
}

/// Counts of stored values by what they were written with (see [`stored_with`]).
pub type KeyCounts = BTreeMap<String, u64>;

#[cfg(test)]
mod tests;

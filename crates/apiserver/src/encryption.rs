//! Encryption at rest: an `apiserver.config.k8s.io/v1` `EncryptionConfiguration` applied
//! as a [`Store`] wrapper, so every write of a configured resource is encrypted before it
//! reaches SQLite or etcd and every read, list and watch sees plaintext.
//!
//! Providers: `secretbox` (XSalsa20-Poly1305, upstream's format
//! `k8s:enc:secretbox:v1:<key>:<nonce><box>`) and `identity`. The first provider of a
//! resource encrypts; all of them are tried when reading, so keys can rotate. Must
//! never write a configured resource in plaintext unless `identity` is its first
//! provider, and never return ciphertext to a reader.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use crypto_secretbox::aead::{Aead, AeadCore, KeyInit, OsRng};
use crypto_secretbox::{Key, Nonce, XSalsa20Poly1305};
use keelson_store::{
    Error, Event, KeyValue, ListOptions, ListResult, Result, Revision, Store, Watch,
};
use serde_json::Value;

const SECRETBOX_PREFIX: &str = "k8s:enc:secretbox:v1:";

#[derive(Clone)]
enum Provider {
    Secretbox(Vec<(String, XSalsa20Poly1305)>),
    Identity,
}

/// Which storage prefixes are encrypted, and how.
#[derive(Clone)]
pub struct EncryptionConfig {
    rules: Vec<(Vec<String>, Vec<Provider>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read encryption configuration {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid encryption configuration {path}: {reason}")]
    Invalid { path: String, reason: String },
}

impl EncryptionConfig {
    /// Reads an `EncryptionConfiguration` file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text)
            .map_err(|reason| ConfigError::Invalid { path: path.display().to_string(), reason })
    }

    /// Writes a configuration that encrypts Secrets with a fresh secretbox key (0600) if
    /// `path` does not exist, then reads it.
    pub fn load_or_create(path: &Path) -> Result<Self, ConfigError> {
        if !path.exists() {
            let write = |e: std::io::Error| ConfigError::Read {
                path: path.display().to_string(),
                source: e,
            };
            let key = XSalsa20Poly1305::generate_key(&mut OsRng);
            let text = format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - secretbox:\n          keys:\n            - name: key1\n              secret: {}\n      - identity: {{}}\n",
                base64::engine::general_purpose::STANDARD.encode(key.as_slice())
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

    pub fn parse(text: &str) -> Result<Self, String> {
        let doc: Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        if doc["kind"] != "EncryptionConfiguration" {
            return Err(format!("kind must be EncryptionConfiguration, not {}", doc["kind"]));
        }
        let mut rules = Vec::new();
        for (i, rule) in doc["resources"].as_array().into_iter().flatten().enumerate() {
            let mut prefixes = Vec::new();
            for resource in
                rule["resources"].as_array().into_iter().flatten().filter_map(Value::as_str)
            {
                prefixes.extend(
                    storage_prefixes(resource).map_err(|e| format!("resources[{i}]: {e}"))?,
                );
            }
            let mut providers = Vec::new();
            for provider in rule["providers"].as_array().into_iter().flatten() {
                if provider.get("identity").is_some() {
                    providers.push(Provider::Identity);
                } else if let Some(secretbox) = provider.get("secretbox") {
                    let mut keys = Vec::new();
                    for key in secretbox["keys"].as_array().into_iter().flatten() {
                        let name = key["name"].as_str().unwrap_or_default().to_owned();
                        let secret = base64::engine::general_purpose::STANDARD
                            .decode(key["secret"].as_str().unwrap_or_default())
                            .map_err(|e| format!("secretbox key {name:?}: {e}"))?;
                        if secret.len() != 32 || name.is_empty() {
                            return Err(format!(
                                "secretbox key {name:?} must have a name and 32 bytes, not {}",
                                secret.len()
                            ));
                        }
                        keys.push((name, XSalsa20Poly1305::new(Key::from_slice(&secret))));
                    }
                    if keys.is_empty() {
                        return Err("a secretbox provider needs at least one key".into());
                    }
                    providers.push(Provider::Secretbox(keys));
                } else {
                    let name = provider
                        .as_object()
                        .and_then(|m| m.keys().next().cloned())
                        .unwrap_or_default();
                    return Err(format!(
                        "provider {name:?} is not supported (secretbox, identity)"
                    ));
                }
            }
            if providers.is_empty() {
                return Err(format!("resources[{i}] has no providers"));
            }
            rules.push((prefixes, providers));
        }
        Ok(EncryptionConfig { rules })
    }

    fn providers(&self, key: &str) -> Option<&[Provider]> {
        self.rules
            .iter()
            .find(|(prefixes, _)| prefixes.iter().any(|p| key.starts_with(p)))
            .map(|(_, p)| p.as_slice())
    }

    fn encrypt(&self, key: &str, value: Vec<u8>) -> Result<Vec<u8>> {
        match self.providers(key).and_then(<[Provider]>::first) {
            Some(Provider::Secretbox(keys)) => {
                let (name, cipher) = &keys[0];
                let nonce = XSalsa20Poly1305::generate_nonce(&mut OsRng);
                let sealed = cipher
                    .encrypt(&nonce, value.as_slice())
                    .map_err(|_| Error::Unavailable("encryption failed".into()))?;
                let mut out = format!("{SECRETBOX_PREFIX}{name}:").into_bytes();
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&sealed);
                Ok(out)
            }
            Some(Provider::Identity) | None => Ok(value),
        }
    }

    fn decrypt(&self, key: &str, value: Vec<u8>) -> Result<Vec<u8>> {
        let Some(rest) = value.strip_prefix(SECRETBOX_PREFIX.as_bytes()) else {
            if value.starts_with(b"k8s:enc:") {
                return Err(Error::Corrupt(format!(
                    "{key:?} is encrypted by a provider this server does not have"
                )));
            }
            return Ok(value);
        };
        let keys = self.providers(key).into_iter().flatten().filter_map(|p| match p {
            Provider::Secretbox(keys) => Some(keys),
            Provider::Identity => None,
        });
        let colon = rest
            .iter()
            .position(|b| *b == b':')
            .ok_or_else(|| Error::Corrupt(format!("{key:?}: malformed secretbox value")))?;
        let (name, sealed) = (&rest[..colon], &rest[colon + 1..]);
        for (key_name, cipher) in keys.flatten() {
            if key_name.as_bytes() == name && sealed.len() > 24 {
                let (nonce, boxed) = sealed.split_at(24);
                return cipher.decrypt(Nonce::from_slice(nonce), boxed).map_err(|_| {
                    Error::Corrupt(format!("{key:?} does not decrypt with key {key_name:?}"))
                });
            }
        }
        Err(Error::Corrupt(format!(
            "{key:?} is encrypted with key {:?}, which the configuration lacks",
            String::from_utf8_lossy(name)
        )))
    }

    fn decrypt_kv(&self, mut kv: KeyValue) -> Result<KeyValue> {
        kv.value = self.decrypt(&kv.key, kv.value)?;
        Ok(kv)
    }
}

/// `secrets`, `deployments.apps`, `*.apps` or `*.*` as storage prefixes.
fn storage_prefixes(resource: &str) -> Result<Vec<String>, String> {
    let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
    let matches: Vec<String> = keelson_api::Registry::builtin()
        .resources()
        .iter()
        .filter(|r| (plural == "*" || r.plural == plural) && (group == "*" || r.group == group))
        .map(|r| r.storage_prefix())
        .collect();
    if matches.is_empty() {
        return Err(format!("{resource:?} names no resource"));
    }
    Ok(matches)
}

/// A store that encrypts what the configuration says.
pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    config: Arc<EncryptionConfig>,
}

impl EncryptedStore {
    pub fn wrap(inner: Arc<dyn Store>, config: EncryptionConfig) -> Arc<dyn Store> {
        Arc::new(EncryptedStore { inner, config: Arc::new(config) })
    }
}

#[async_trait]
impl Store for EncryptedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner.get(key).await?.map(|kv| self.config.decrypt_kv(kv)).transpose()
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        let mut page = self.inner.list(prefix, options).await?;
        page.items =
            page.items.into_iter().map(|kv| self.config.decrypt_kv(kv)).collect::<Result<_>>()?;
        Ok(page)
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        self.inner.count(prefix).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        let value = self.config.encrypt(key, value)?;
        self.inner.create(key, value).await.map_err(|e| self.decrypt_error(e))
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        let value = self.config.encrypt(key, value)?;
        self.inner.update(key, value, expected).await.map_err(|e| self.decrypt_error(e))
    }

    async fn delete(&self, key: &str, expected: Revision) -> Result<Revision> {
        self.inner.delete(key, expected).await.map_err(|e| self.decrypt_error(e))
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch> {
        let mut inner = self.inner.watch(prefix, from_revision).await?;
        let config = self.config.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    event = inner.next() => event,
                    () = tx.closed() => return,
                };
                let Some(event) = event else { return };
                let event = event.and_then(|event| match event {
                    Event::Put { kv, prev } => Ok(Event::Put {
                        kv: config.decrypt_kv(kv)?,
                        prev: prev.map(|p| config.decrypt_kv(p)).transpose()?,
                    }),
                    Event::Delete { revision, prev } => {
                        Ok(Event::Delete { revision, prev: config.decrypt_kv(prev)? })
                    }
                });
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        });
        Ok(Watch::from_channel(rx))
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

impl EncryptedStore {
    /// Conflicts carry the current value: readers get it in plaintext too.
    fn decrypt_error(&self, error: Error) -> Error {
        match error {
            Error::AlreadyExists { key, current } => match self.config.decrypt_kv(*current) {
                Ok(current) => Error::AlreadyExists { key, current: Box::new(current) },
                Err(e) => e,
            },
            Error::Conflict { key, expected, current } => match self.config.decrypt_kv(*current) {
                Ok(current) => Error::Conflict { key, expected, current: Box::new(current) },
                Err(e) => e,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_other_resources_stay_plain() {
        let config = EncryptionConfig::parse(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - secretbox:\n          keys:\n            - {name: k1, secret: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=}\n      - identity: {}\n",
        )
        .expect("parses");
        let secret = br#"{"data":{"password":"aHVudGVyMg=="}}"#.to_vec();
        let sealed =
            config.encrypt("/registry/secrets/default/s", secret.clone()).expect("encrypts");
        assert!(sealed.starts_with(b"k8s:enc:secretbox:v1:k1:"));
        assert!(!sealed.windows(8).any(|w| w == b"password"));
        assert_eq!(
            config.decrypt("/registry/secrets/default/s", sealed.clone()).expect("decrypts"),
            secret
        );
        // Plaintext written before encryption was turned on still reads.
        assert_eq!(
            config.decrypt("/registry/secrets/default/old", secret.clone()).expect("identity"),
            secret
        );
        assert_eq!(
            config.encrypt("/registry/configmaps/default/c", secret.clone()).expect("plain"),
            secret
        );
        let mut tampered = sealed;
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(matches!(
            config.decrypt("/registry/secrets/default/s", tampered),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn bad_configurations_are_refused() {
        for bad in [
            "kind: Something\n",
            "kind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers: []\n",
            "kind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aescbc: {keys: []}\n",
            "kind: EncryptionConfiguration\nresources:\n  - resources: [nothings]\n    providers:\n      - identity: {}\n",
            "kind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - secretbox: {keys: [{name: short, secret: c2hvcnQ=}]}\n",
        ] {
            assert!(EncryptionConfig::parse(bad).is_err(), "{bad}");
        }
    }
}

//! [`EncryptedStore`]: the configuration in effect applied to every store operation, and
//! [`status`]: what the stored Secrets are written with, read past the wrapper.

use std::sync::Arc;

use async_trait::async_trait;
use keelson_store::{
    Error, Event, KeyValue, ListOptions, ListResult, Result, Revision, Store, Watch,
};
use serde::{Deserialize, Serialize};

use super::{Encryption, EncryptionConfig, KeyCounts, RuleSummary, stored_with};

/// A store that encrypts what the configuration in effect says.
pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    encryption: Encryption,
}

impl EncryptedStore {
    pub fn wrap(inner: Arc<dyn Store>, encryption: Encryption) -> Arc<dyn Store> {
        Arc::new(EncryptedStore { inner, encryption })
    }

    fn config(&self) -> Arc<EncryptionConfig> {
        self.encryption.current()
    }

    /// Conflicts carry the current value: readers get it in plaintext too.
    fn decrypt_error(&self, error: Error) -> Error {
        let config = self.config();
        match error {
            Error::AlreadyExists { key, current } => match config.decrypt_kv(*current) {
                Ok(current) => Error::AlreadyExists { key, current: Box::new(current) },
                Err(e) => e,
            },
            Error::Conflict { key, expected, current } => match config.decrypt_kv(*current) {
                Ok(current) => Error::Conflict { key, expected, current: Box::new(current) },
                Err(e) => e,
            },
            other => other,
        }
    }
}

#[async_trait]
impl Store for EncryptedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let config = self.config();
        self.inner.get(key).await?.map(|kv| config.decrypt_kv(kv)).transpose()
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        let config = self.config();
        let mut page = self.inner.list(prefix, options).await?;
        page.items =
            page.items.into_iter().map(|kv| config.decrypt_kv(kv)).collect::<Result<_>>()?;
        Ok(page)
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        self.inner.count(prefix).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        let value = self.config().encrypt(key, value)?;
        self.inner.create(key, value).await.map_err(|e| self.decrypt_error(e))
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        let value = self.config().encrypt(key, value)?;
        self.inner.update(key, value, expected).await.map_err(|e| self.decrypt_error(e))
    }

    async fn delete(&self, key: &str, expected: Revision) -> Result<Revision> {
        self.inner.delete(key, expected).await.map_err(|e| self.decrypt_error(e))
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch> {
        let mut inner = self.inner.watch(prefix, from_revision).await?;
        let encryption = self.encryption.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    event = inner.next() => event,
                    () = tx.closed() => return,
                };
                let Some(event) = event else { return };
                let config = encryption.current();
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

    async fn changed_at(&self, prefix: &str) -> Result<Option<Revision>> {
        self.inner.changed_at(prefix).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

/// Whether `kv` (as read through the wrapper) is stored with another provider or key than
/// a write would use now: upstream's stale data, which an update that changes nothing
/// still writes, so that rewriting objects unchanged moves them to the new key. `raw` is
/// the store under the wrapper; a value changed since `kv` was read counts as stale (the
/// write that follows is conditional on `kv`, and fails).
pub async fn stale(encryption: &Encryption, raw: &dyn Store, kv: &KeyValue) -> Result<bool> {
    let config = encryption.current();
    if config.rule(&kv.key).is_none() {
        return Ok(false);
    }
    Ok(match raw.get(&kv.key).await? {
        Some(stored) if stored.mod_revision == kv.mod_revision => {
            stored_with(&stored.value) != config.write_key(&kv.key)
        }
        _ => true,
    })
}

/// The configuration in effect and what the stored Secrets are written with: the answer
/// of `GET /keelson/v1/secrets-encryption` and of `keelson secrets-encrypt status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub resources: Vec<RuleSummary>,
    pub secrets: StoredSecrets,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSecrets {
    /// What new writes of Secrets are encrypted with: `secretbox/key2`, `identity`.
    pub write_key: String,
    pub total: u64,
    /// How many Secrets are stored with each provider and key.
    pub by_key: KeyCounts,
}

impl StoredSecrets {
    /// Whether every Secret is stored with the key new writes use.
    pub fn all_current(&self) -> bool {
        self.by_key.keys().all(|k| *k == self.write_key)
    }
}

/// Reads every stored Secret from `raw` (the store under the [`EncryptedStore`]) and
/// counts them by the provider and key their stored bytes name.
pub async fn status(encryption: &Encryption, raw: &dyn Store) -> Result<Status> {
    let config = encryption.current();
    let prefix = keelson_api::Registry::builtin()
        .resources()
        .find(|r| r.group.is_empty() && r.plural == "secrets")
        .map(|r| r.storage_prefix())
        .unwrap_or_else(|| "/registry/secrets/".into());
    let mut secrets =
        StoredSecrets { write_key: config.write_key(&prefix), total: 0, by_key: KeyCounts::new() };
    let mut options = ListOptions { limit: 500, ..ListOptions::default() };
    loop {
        let page = raw.list(&prefix, options.clone()).await?;
        for kv in &page.items {
            secrets.total += 1;
            *secrets.by_key.entry(stored_with(&kv.value)).or_default() += 1;
        }
        match page.items.last() {
            Some(last) if page.more() => {
                options.start_after = Some(last.key.clone());
                options.revision = Some(page.revision);
            }
            _ => break,
        }
    }
    Ok(Status { resources: config.summary(), secrets })
}

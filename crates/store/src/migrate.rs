//! Copying every key from one store to another (`keelson datastore migrate`), in either
//! direction between any two backends.
//!
//! Revisions are not carried over: each backend numbers its own writes, so clients see
//! new resourceVersions after a migration and re-list, as after an etcd restore.
//! Must never write into a non-empty target unless asked to (`force`).

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::{ListOptions, Store};

/// Keys read per page of the source, and written at once to the target.
const PAGE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the target datastore holds {keys} keys; pass --force to overwrite keys present in both"
    )]
    NotEmpty { keys: u64 },
    #[error(transparent)]
    Store(#[from] crate::Error),
}

/// What a migration did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Keys written to the target.
    pub keys: u64,
    /// The source revision the copy is a snapshot of.
    pub source_revision: crate::Revision,
}

/// Copies every live key of `from` into `to`, as a snapshot of one source revision.
/// With `force`, keys already in the target are overwritten; keys only in the target
/// are left as they are.
pub async fn migrate(
    from: Arc<dyn Store>,
    to: Arc<dyn Store>,
    force: bool,
) -> Result<Summary, Error> {
    let existing = to.count("").await?;
    if existing > 0 && !force {
        return Err(Error::NotEmpty { keys: existing });
    }
    let source_revision = from.current_revision().await?;
    let mut keys = 0;
    let mut start_after = None;
    loop {
        let options = ListOptions {
            start_after: start_after.take(),
            limit: PAGE,
            revision: Some(source_revision),
        };
        let page = from.list("", options).await?;
        start_after = page.items.last().map(|kv| kv.key.clone());
        let more = page.more();
        let mut writes = JoinSet::new();
        for kv in page.items {
            let to = to.clone();
            writes.spawn(async move { put(to.as_ref(), &kv.key, kv.value).await });
        }
        while let Some(done) = writes.join_next().await {
            done.map_err(|e| crate::Error::Unavailable(format!("copy task failed: {e}")))??;
            keys += 1;
        }
        tracing::info!(keys, "copied");
        if !more {
            break;
        }
    }
    Ok(Summary { keys, source_revision })
}

/// Creates `key`, or replaces it if it exists.
async fn put(store: &dyn Store, key: &str, value: Vec<u8>) -> crate::Result<()> {
    match store.create(key, value.clone()).await {
        Ok(_) => Ok(()),
        Err(crate::Error::AlreadyExists { current, .. }) => {
            store.update(key, value, current.mod_revision).await.map(|_| ())
        }
        Err(e) => Err(e),
    }
}

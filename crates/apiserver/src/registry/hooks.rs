//! What a resource's storage may do around the generic store's writes (upstream's
//! `BeginCreate`, `BeginUpdate`, `AfterDelete` store hooks), and how a reservation made
//! for a write that failed is undone.

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use serde_json::Value;

use crate::ApiServer;
use crate::status::ApiResult;

/// Undoes what a hook reserved, when the write it was for fails.
pub struct Undo(Box<dyn for<'a> FnOnce(&'a ApiServer) -> BoxFuture<'a> + Send>);

type BoxFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

impl Undo {
    pub fn new<F>(undo: F) -> Undo
    where
        F: for<'a> FnOnce(&'a ApiServer) -> BoxFuture<'a> + Send + 'static,
    {
        Undo(Box::new(undo))
    }

    pub async fn run(self, api: &ApiServer) {
        (self.0)(api).await;
    }
}

/// Upstream's store hooks (`BeginCreate`, `BeginUpdate`, `AfterDelete`): what a resource's
/// storage does around the generic writes, registered by resource in
/// `crate::storage`.
#[async_trait]
pub trait Hooks: Sync {
    /// Before a new object is written: reserve what it needs, filling it in.
    async fn begin_create(
        &self,
        api: &ApiServer,
        object: &mut Value,
        dry_run: bool,
    ) -> ApiResult<Option<Undo>>;

    /// Before an update is written: carry over or reserve what it needs.
    async fn begin_update(
        &self,
        api: &ApiServer,
        old: &Value,
        object: &mut Value,
        dry_run: bool,
    ) -> ApiResult<Option<Undo>>;

    /// After an update was written (not for a dry run).
    async fn after_update(&self, api: &ApiServer, old: &Value, new: &Value);

    /// After the object is gone (not for a dry run).
    async fn after_delete(&self, api: &ApiServer, object: &Value);
}

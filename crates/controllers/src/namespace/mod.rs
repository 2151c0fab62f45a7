//! `namespace-controller` (upstream's `pkg/controller/namespace`): a namespace being
//! deleted (a deletion timestamp, phase `Terminating`, `kubernetes` in
//! `spec.finalizers`) has every namespaced resource in it deleted — pods first, then
//! every other resource discovery lists, custom resources included — and, once nothing
//! remains, `kubernetes` removed through `namespaces/{name}/finalize`, which lets the
//! API server remove the namespace.
//!
//! Level-triggered, one namespace per key, read live on each pass. A pass that leaves
//! content being removed (pods in their grace period, objects with finalizers) looks
//! again after half the estimate plus a second; a failed pass retries with backoff. The
//! namespace's conditions say what holds it (`conditions.rs`).
//!
//! Must never remove the finalizer while something of the namespace remains.

mod conditions;
mod deleter;

use std::time::Duration;

use keelson_api::k8s_openapi::api::core::v1::Namespace;
use keelson_runtime::controller::{Context, StartFuture, run_workers};
use keelson_runtime::informer::Change;

pub use conditions::{
    CONTENT_FAILURE, CONTENT_REMAINING, DISCOVERY_FAILURE, FINALIZERS_REMAINING,
    GROUP_VERSION_PARSING_FAILURE,
};

pub const NAME: &str = "namespace-controller";
pub const SERVICE_ACCOUNT: &str = "namespace-controller";
/// The finalizer this controller owns.
pub const FINALIZER: &str = "kubernetes";
/// How long after a namespace is seen being deleted its content is deleted, so every
/// cache has seen it `Terminating` and creates nothing more in it (upstream's
/// `namespaceDeletionGracePeriod`).
const GRACE: Duration = Duration::from_secs(5);
/// Namespaces deleted at once (`--concurrent-namespace-syncs`).
const WORKERS: usize = 10;

pub fn start(context: Context) -> StartFuture {
    Box::pin(run(context))
}

async fn run(context: Context) -> keelson_runtime::Result<()> {
    let namespaces = context.informers.get::<Namespace>();
    let queue = context.queue::<String>();
    {
        let queue = queue.clone();
        namespaces.on_change(move |change| {
            let ns = change.object();
            if !matches!(change, Change::Deleted(_)) && ns.metadata.deletion_timestamp.is_some() {
                queue.add_after(ns.metadata.name.clone().unwrap_or_default(), GRACE);
            }
        });
    }
    namespaces.wait_synced().await;
    let deleter = std::sync::Arc::new(deleter::Deleter::new(context.client.clone()));
    run_workers(&context, queue, WORKERS, move |name: String| {
        let deleter = deleter.clone();
        async move { deleter.delete(&name).await }
    })
    .await;
    Ok(())
}

//! One conformance suite, run against every backend by one macro: whatever the backend,
//! a caller sees the same contract (crate docs of `keelson-store`).

mod cases;

use std::any::Any;
use std::sync::Arc;

use keelson_store::Store;

/// A fresh, empty store and whatever keeps it alive (a temp dir, an etcd process).
pub struct Fixture {
    pub store: Arc<dyn Store>,
    _keep: Box<dyn Any + Send>,
}

async fn memory() -> anyhow::Result<Fixture> {
    Ok(Fixture { store: Arc::new(keelson_store::memory::open()?), _keep: Box::new(()) })
}

async fn sqlite() -> anyhow::Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.db");
    let store = tokio::task::spawn_blocking(move || keelson_store::sqlite::open(&path)).await??;
    Ok(Fixture { store: Arc::new(store), _keep: Box::new(dir) })
}

async fn etcd() -> anyhow::Result<Fixture> {
    let etcd = keelson_testkit::EtcdProcess::start().await?;
    let tls = keelson_store::TlsFiles {
        ca_file: Some(etcd.ca_file().to_owned()),
        cert_file: Some(etcd.cert_file().to_owned()),
        key_file: Some(etcd.key_file().to_owned()),
    };
    let store = keelson_store::etcd::EtcdStore::connect(&[etcd.endpoint()], &tls).await?;
    Ok(Fixture { store: Arc::new(store), _keep: Box::new(etcd) })
}

macro_rules! conformance {
    ($backend:ident: $($case:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> anyhow::Result<()> {
                    let fixture = super::$backend().await?;
                    super::cases::$case(fixture.store.clone()).await
                }
            )+
        }
    };
}

macro_rules! all_backends {
    ($($case:ident),+ $(,)?) => {
        conformance!(memory: $($case),+);
        conformance!(sqlite: $($case),+);
        conformance!(etcd: $($case),+);
    };
}

all_backends!(
    create_then_get,
    create_existing_key_fails_with_current_state,
    stale_update_and_delete_conflict_and_change_nothing,
    list_pages_at_a_fixed_revision_while_writes_continue,
    watch_from_a_past_revision_with_previous_values,
    watch_from_a_compacted_revision_is_a_typed_error,
    concurrent_writers_lose_no_update,
    values_of_one_and_a_half_mebibytes,
    a_hundred_thousand_keys,
    prefixes_are_directories,
    a_slow_watcher_catches_up_without_gaps,
    bad_input_is_rejected_cleanly,
);

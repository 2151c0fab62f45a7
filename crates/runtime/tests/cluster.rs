//! The runtime against a real API server (in this process, memory store, random port):
//! informers, leader election between two candidates, the event recorder and
//! per-controller ServiceAccount credentials.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use keelson_api::k8s_openapi::api::coordination::v1::Lease;
use keelson_api::k8s_openapi::api::core::v1::{ConfigMap, Event, ObjectReference};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_pki::{Pki, PkiOptions};
use keelson_runtime::credentials::{self, Credentials};
use keelson_runtime::events::{EventType, Recorder};
use keelson_runtime::informer::{Change, Informers};
use keelson_runtime::leader::{LeaderElection, LeaseTimings, Outcome};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, Config};

struct Cluster {
    _dir: tempfile::TempDir,
    running: Option<keelson_apiserver::Running>,
    client: Client,
    config: Config,
}

impl Cluster {
    async fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let pki = Pki::ensure(&dir.path().join("tls"), &PkiOptions::default())?;
        let store: Arc<dyn keelson_store::Store> = Arc::new(keelson_store::memory::open()?);
        let running = keelson_apiserver::serve(keelson_apiserver::Config {
            service_accounts: Some(keelson_apiserver::authn::serviceaccount::Config::new(
                keelson_pki::ServiceAccountKey::load_or_create(&dir.path().join("tls"))?,
                pki.ca_pem(),
            )),
            ..keelson_apiserver::Config::loopback(store, pki.server_config()?)
        })
        .await?;
        let url = format!("https://127.0.0.1:{}", running.local_addr.port());
        let kubeconfig = dir.path().join("admin.kubeconfig");
        pki.write_kubeconfig(&kubeconfig, &url, "system:admin", &["system:masters"])?;
        let (client, config) = credentials::from_kubeconfig(&kubeconfig).await?;
        Ok(Cluster { _dir: dir, running: Some(running), client, config })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            // Stop accepting; the runtime of the test ends the rest.
            tokio::spawn(running.shutdown());
        }
    }
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("timed out waiting for {what}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_informer_lists_then_follows_changes_with_indexes_and_handlers() -> Result<()> {
    let cluster = Cluster::start().await?;
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "default");
    api.create(&PostParams::default(), &config_map("before")).await?;

    let informers = Informers::new(cluster.client.clone());
    let maps = informers.get::<ConfigMap>();
    // The same type is one informer, one watch.
    assert!(Arc::ptr_eq(&maps, &informers.get::<ConfigMap>()));
    maps.add_index("namespace", |cm: &ConfigMap| {
        cm.metadata.namespace.clone().into_iter().collect()
    });
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    maps.on_change(move |change| {
        let kind = match change {
            Change::Added(_) => "added",
            Change::Updated { .. } => "updated",
            Change::Deleted(_) => "deleted",
        };
        let name = change.object().metadata.name.clone().unwrap_or_default();
        sink.lock().unwrap().push(format!("{kind} {name}"));
    });
    tokio::time::timeout(Duration::from_secs(20), maps.wait_synced()).await.context("sync")?;
    assert!(maps.get("default/before").is_some());

    api.create(&PostParams::default(), &config_map("after")).await?;
    let mut changed = config_map("after");
    changed.data = Some([("k".to_string(), "v".to_string())].into());
    changed.metadata.resource_version = None;
    api.replace("after", &PostParams::default(), &{
        let mut current = api.get("after").await?;
        current.data = changed.data.clone();
        current
    })
    .await?;
    api.delete("before", &DeleteParams::default()).await?;
    eventually("the informer to follow", || async {
        let seen = seen.lock().unwrap();
        ["added before", "added after", "updated after", "deleted before"]
            .iter()
            .all(|l| seen.iter().any(|s| s == l))
    })
    .await?;
    assert!(maps.get("default/before").is_none());
    assert_eq!(maps.get("default/after").and_then(|c| c.data.clone()).map(|d| d.len()), Some(1));
    let in_default: Vec<String> = maps
        .by_index("namespace", "default")
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    assert!(
        in_default.contains(&"after".to_string()) && !in_default.contains(&"before".to_string())
    );
    Ok(())
}

fn quick() -> LeaseTimings {
    LeaseTimings {
        // Short enough for a test, long enough that a loaded CI machine renews in time.
        lease_duration: Duration::from_secs(4),
        renew_deadline: Duration::from_secs(3),
        retry_period: Duration::from_millis(250),
    }
}

async fn holder(api: &Api<Lease>) -> Option<String> {
    api.get_opt("test-lease")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lease_passes_to_the_waiting_candidate() -> Result<()> {
    let cluster = Cluster::start().await?;
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), "kube-system");
    let (stop_a, stopped_a) = tokio::sync::oneshot::channel::<()>();
    let mut a =
        LeaderElection::new(cluster.client.clone(), "kube-system", "test-lease", "a", quick());
    let (led_a, mut leading_a) = tokio::sync::watch::channel(false);
    let task_a = tokio::spawn(async move {
        a.run(async { stopped_a.await.unwrap_or(()) }, async move {
            led_a.send_replace(true);
            std::future::pending::<()>().await
        })
        .await
    });
    leading_a.wait_for(|l| *l).await?;
    assert_eq!(holder(&leases).await.as_deref(), Some("a"));

    let (led_b, mut leading_b) = tokio::sync::watch::channel(false);
    let mut b =
        LeaderElection::new(cluster.client.clone(), "kube-system", "test-lease", "b", quick());
    let task_b = tokio::spawn(async move {
        b.run(std::future::pending::<()>(), async move {
            led_b.send_replace(true);
        })
        .await
    });
    // B waits while A renews: well past the lease duration, A still holds it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!*leading_b.borrow());
    assert_eq!(holder(&leases).await.as_deref(), Some("a"));

    let _ = stop_a.send(());
    assert_eq!(task_a.await?, Outcome::Stopped);
    tokio::time::timeout(Duration::from_secs(10), leading_b.wait_for(|l| *l)).await??;
    // B's work ended at once, so it released the lease again.
    assert_eq!(task_b.await?, Outcome::Finished);
    let lease = leases.get("test-lease").await?;
    let spec = lease.spec.context("spec")?;
    assert_eq!(spec.lease_transitions, Some(1));
    assert_eq!(spec.holder_identity, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_leader_is_replaced_after_the_lease_duration_and_a_leader_that_cannot_renew_stops()
-> Result<()> {
    let cluster = Cluster::start().await?;
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), "kube-system");
    // A leads, then vanishes without releasing (its task is aborted).
    let mut a =
        LeaderElection::new(cluster.client.clone(), "kube-system", "test-lease", "a", quick());
    let (led_a, mut leading_a) = tokio::sync::watch::channel(false);
    let task_a = tokio::spawn(async move {
        a.run(std::future::pending::<()>(), async move {
            led_a.send_replace(true);
            std::future::pending::<()>().await
        })
        .await
    });
    leading_a.wait_for(|l| *l).await?;
    task_a.abort();
    let vanished = tokio::time::Instant::now();

    let mut b =
        LeaderElection::new(cluster.client.clone(), "kube-system", "test-lease", "b", quick());
    let (led_b, mut leading_b) = tokio::sync::watch::channel(false);
    let task_b = tokio::spawn(async move {
        b.run(std::future::pending::<()>(), async move {
            led_b.send_replace(true);
            std::future::pending::<()>().await
        })
        .await
    });
    tokio::time::timeout(Duration::from_secs(20), leading_b.wait_for(|l| *l)).await??;
    assert!(
        vanished.elapsed() >= Duration::from_secs(4),
        "took over after {:?}",
        vanished.elapsed()
    );
    assert_eq!(holder(&leases).await.as_deref(), Some("b"));

    // Someone else takes the lease by force: B cannot renew and stops leading.
    let mut lease = leases.get("test-lease").await?;
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = Some("intruder".into());
        spec.lease_duration_seconds = Some(3600);
    }
    leases.replace("test-lease", &PostParams::default(), &lease).await?;
    let outcome = tokio::time::timeout(Duration::from_secs(20), task_b).await??;
    assert_eq!(outcome, Outcome::Lost);
    assert_eq!(holder(&leases).await.as_deref(), Some("intruder"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorder_writes_one_event_and_counts_repeats() -> Result<()> {
    let cluster = Cluster::start().await?;
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "default");
    let cm = api.create(&PostParams::default(), &config_map("subject")).await?;
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        namespace: Some("default".into()),
        name: Some("subject".into()),
        uid: cm.metadata.uid.clone(),
        ..Default::default()
    };
    let recorder = Recorder::new(cluster.client.clone(), "test-controller", None);
    for _ in 0..3 {
        recorder.event(&reference, EventType::Warning, "Broken", "it broke");
    }
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    eventually("one event counted three times", || async {
        let Ok(list) = events.list(&ListParams::default()).await else { return false };
        let ours: Vec<&Event> = list
            .items
            .iter()
            .filter(|e| e.involved_object.name.as_deref() == Some("subject"))
            .collect();
        ours.len() == 1
            && ours[0].count == Some(3)
            && ours[0].reason.as_deref() == Some("Broken")
            && ours[0].type_.as_deref() == Some("Warning")
            && ours[0].source.as_ref().and_then(|s| s.component.as_deref())
                == Some("test-controller")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_controller_can_act_as_its_own_service_account() -> Result<()> {
    let cluster = Cluster::start().await?;
    let credentials =
        Credentials::service_accounts(cluster.client.clone(), cluster.config.clone())?;
    let client = credentials.client_for("test-controller").await?;
    // The account was made, and the server sees the controller as it.
    let accounts: Api<keelson_api::k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(cluster.client.clone(), "kube-system");
    assert!(accounts.get_opt("test-controller").await?.is_some());
    let denied = Api::<ConfigMap>::namespaced(client, "default").list(&ListParams::default()).await;
    match denied {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert!(
                s.message.contains("system:serviceaccount:kube-system:test-controller"),
                "{}",
                s.message
            );
        }
        other => anyhow::bail!("expected 403 for an account without roles, got {other:?}"),
    }
    Ok(())
}

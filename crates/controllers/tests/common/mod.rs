//! A cluster in this process for the workload controllers' tests: the API server
//! (memory store, random port), the controller manager as `keelson server` runs it
//! (each controller as its ServiceAccount), the scheduler, and hollow nodes whose pods
//! become Running and Ready. Dropping it stops everything, even when a test fails.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, bail};
use keelson_api::k8s_openapi::api::core::v1::{Event, ServiceAccount};
use keelson_pki::{Pki, PkiOptions};
use keelson_runtime::credentials;
pub use keelson_testkit::wait::{eventually, wait_for};
use kube::Client;
use kube::api::{Api, ListParams};

pub struct Cluster {
    dir: tempfile::TempDir,
    running: Option<keelson_apiserver::Running>,
    fleet: Option<keelson_hollow::Fleet>,
    stops: Vec<tokio::sync::watch::Sender<bool>>,
    pub client: Client,
}

impl Cluster {
    /// The API server, controller manager and scheduler, and `nodes` hollow nodes.
    pub async fn start(nodes: u32) -> Result<Self> {
        Self::start_with(nodes, keelson_controllers::NodeSettings::default()).await
    }

    /// The same, with the node controllers' settings given.
    pub async fn start_with(
        nodes: u32,
        settings: keelson_controllers::NodeSettings,
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let tls = dir.path().join("tls");
        let pki = Pki::ensure(&tls, &PkiOptions::default())?;
        let store: Arc<dyn keelson_store::Store> = Arc::new(keelson_store::memory::open()?);
        let running = keelson_apiserver::serve(keelson_apiserver::Config {
            service_accounts: Some(keelson_apiserver::authn::serviceaccount::Config::new(
                keelson_pki::ServiceAccountKey::load_or_create(&tls)?,
                pki.ca_pem(),
            )),
            ..keelson_apiserver::Config::loopback(store, pki.server_config()?)
        })
        .await?;
        let url = format!("https://127.0.0.1:{}", running.local_addr.port());
        let kubeconfig = |name: &str, user: &str, groups: &[&str]| -> Result<PathBuf> {
            let path = dir.path().join(format!("{name}.kubeconfig"));
            pki.write_kubeconfig(&path, &url, user, groups)?;
            Ok(path)
        };
        let admin = kubeconfig("admin", "system:admin", &["system:masters"])?;
        let cm = kubeconfig("controller-manager", "system:kube-controller-manager", &[])?;
        let scheduler = kubeconfig("scheduler", "system:kube-scheduler", &[])?;
        let (client, _) = credentials::from_kubeconfig(&admin).await?;
        let mut cluster =
            Cluster { dir, running: Some(running), fleet: None, stops: Vec::new(), client };

        let (cm_client, cm_config) = credentials::from_kubeconfig(&cm).await?;
        let stop = cluster.stopper();
        tokio::spawn(keelson_controllers::run(
            keelson_controllers::Config {
                nodes: settings,
                ..keelson_controllers::Config::in_process(
                    cm_client,
                    cm_config,
                    pki.ca_pem(),
                    Some(pki.csr_signer()),
                )
            },
            stop,
        ));
        let (scheduler_client, _) = credentials::from_kubeconfig(&scheduler).await?;
        let stop = cluster.stopper();
        tokio::spawn(keelson_scheduler::run(
            keelson_scheduler::Config {
                client: scheduler_client,
                scheduler: keelson_scheduler::config::Config::default(),
                leader_timings: Default::default(),
                metrics: Default::default(),
                serving: None,
            },
            stop,
        ));
        let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), "default");
        eventually("the default ServiceAccount", || {
            let accounts = accounts.clone();
            async move { Ok(accounts.get_opt("default").await?.is_some()) }
        })
        .await?;
        let fleet = keelson_hollow::Config::new(admin, cluster.dir.path().join("hollow"), nodes);
        cluster.fleet = Some(keelson_hollow::Fleet::start(fleet).await?);
        Ok(cluster)
    }

    fn stopper(&mut self) -> tokio::sync::watch::Receiver<bool> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        self.stops.push(tx);
        rx
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    /// Runs the real kubectl against the cluster; fails unless it succeeds.
    pub async fn kubectl(&self, args: &[&str]) -> Result<String> {
        let out = tokio::process::Command::new("/usr/bin/kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .kill_on_drop(true)
            .output()
            .await?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!("kubectl {args:?} failed: {}{stdout}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(stdout)
    }

    /// The events about `name` in `default`, as `reason: message` lines.
    pub async fn events(&self, name: &str) -> Result<Vec<String>> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let list = events
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await?;
        Ok(list
            .items
            .into_iter()
            .map(|e| format!("{}: {}", e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for stop in &self.stops {
            let _ = stop.send(true);
        }
        if let Some(fleet) = self.fleet.take() {
            tokio::spawn(fleet.shutdown());
        }
        if let Some(running) = self.running.take() {
            tokio::spawn(running.shutdown());
        }
    }
}

/// Finishes a pod as a kubelet would (upstream's integration tests do the same): phase
/// `Succeeded` for exit code 0, else `Failed`, with its one container terminated with
/// `exit_code`. Waits for the hollow node to have it Running first, so the node's status
/// write can never land after this one.
pub async fn finish_pod(client: &Client, name: &str, exit_code: i32) -> Result<()> {
    use keelson_api::k8s_openapi::api::core::v1::Pod;
    use kube::api::{Patch, PatchParams};
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = wait_for(
        &format!("pod {name} running"),
        || async { Ok(pods.get(name).await?) },
        |p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"),
    )
    .await?;
    let container = pod.spec.as_ref().map(|s| s.containers[0].clone()).unwrap_or_default();
    let now = keelson_api::k8s_openapi::jiff::Timestamp::now().to_string();
    let phase = if exit_code == 0 { "Succeeded" } else { "Failed" };
    let reason = if exit_code == 0 { "Completed" } else { "Error" };
    let status = serde_json::json!({ "status": {
        "phase": phase,
        "conditions": [{ "type": "Ready", "status": "False", "reason": "PodCompleted" }],
        "containerStatuses": [{
            "name": container.name,
            "image": container.image.unwrap_or_default(),
            "imageID": "",
            "ready": false,
            "restartCount": 0,
            "state": { "terminated": {
                "exitCode": exit_code, "reason": reason, "startedAt": now, "finishedAt": now,
            }},
        }],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Strategic(&status)).await?;
    Ok(())
}

/// The names of the pods in `default` with `label` (`key=value`), oldest first, and
/// whether each is still active (neither finished nor being deleted).
pub async fn pods_with(client: &Client, label: &str) -> Result<Vec<(String, bool)>> {
    use keelson_api::k8s_openapi::api::core::v1::Pod;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut list = pods.list(&ListParams::default().labels(label)).await?.items;
    list.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    Ok(list
        .into_iter()
        .map(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
            let active = p.metadata.deletion_timestamp.is_none()
                && phase != "Succeeded"
                && phase != "Failed";
            (p.metadata.name.unwrap_or_default(), active)
        })
        .collect())
}

/// Ready and not being deleted.
pub fn is_ready(pod: &keelson_api::k8s_openapi::api::core::v1::Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

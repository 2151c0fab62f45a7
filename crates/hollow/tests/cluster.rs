//! Hollow nodes against a real API server and controller manager (in this process,
//! memory store, random port): certificates through the CSR API, registration, leases,
//! pods run and finished, the Node authorizer holding each node to itself, restarts.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use keelson_api::k8s_openapi::api::coordination::v1::Lease;
use keelson_api::k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, ServiceAccount};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_hollow::cidr::Ipv4Cidr;
use keelson_hollow::transport::Endpoint;
use keelson_hollow::{Config, Fleet};
use keelson_pki::{Pki, PkiOptions};
use keelson_testkit::wait::eventually;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::Request;
use kube::{Client, Resource};
use rustls::pki_types::pem::PemObject;

struct Cluster {
    dir: tempfile::TempDir,
    running: Option<keelson_apiserver::Running>,
    stop_controllers: tokio::sync::watch::Sender<bool>,
    kubeconfig: PathBuf,
    client: Client,
    config: kube::Config,
}

impl Cluster {
    /// The API server, and the controller manager as `keelson server` runs it (its own
    /// identity, controllers as their ServiceAccounts, the cluster CA signing).
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
        let cm_kubeconfig = dir.path().join("controller-manager.kubeconfig");
        pki.write_kubeconfig(&cm_kubeconfig, &url, "system:kube-controller-manager", &[])?;
        let (cm_client, cm_config) =
            keelson_runtime::credentials::from_kubeconfig(&cm_kubeconfig).await?;
        let (stop_controllers, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(keelson_controllers::run(
            keelson_controllers::Config::in_process(
                cm_client,
                cm_config,
                pki.ca_pem(),
                Some(pki.csr_signer()),
            ),
            stopped,
        ));
        let (client, config) = keelson_runtime::credentials::from_kubeconfig(&kubeconfig).await?;
        let cluster =
            Cluster { dir, running: Some(running), stop_controllers, kubeconfig, client, config };
        // Pods need their namespace's default ServiceAccount.
        let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), "default");
        eventually("the default ServiceAccount", || {
            let accounts = accounts.clone();
            async move { Ok(accounts.get_opt("default").await?.is_some()) }
        })
        .await?;
        Ok(cluster)
    }

    fn cert_dir(&self) -> PathBuf {
        self.dir.path().join("hollow-certs")
    }

    fn fleet_config(&self, count: u32) -> Config {
        Config::new(self.kubeconfig.clone(), self.cert_dir(), count)
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop_controllers.send(true);
        if let Some(running) = self.running.take() {
            tokio::spawn(running.shutdown());
        }
    }
}

fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod(name: &str, node: &str) -> Pod {
    Pod {
        metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            containers: vec![Container {
                name: "app".into(),
                image: Some("busybox:1.36".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// Waits until `name` runs Ready; returns its address.
async fn running(pods: &Api<Pod>, name: &str) -> Result<Ipv4Addr> {
    let ip = std::sync::Mutex::new(None);
    eventually(&format!("pod {name} running and ready"), || async {
        let status = pods.get(name).await?.status.unwrap_or_default();
        let is_ready =
            status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
        if status.phase.as_deref() == Some("Running") && is_ready {
            *ip.lock().unwrap() = status.pod_ip.as_deref().map(str::parse).transpose()?;
            return Ok(true);
        }
        Ok(false)
    })
    .await?;
    ip.into_inner().unwrap().context("a running pod has an address")
}

fn pod_cidr(node: &Node) -> Result<Ipv4Cidr> {
    let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).context("podCIDR")?;
    Ok(cidr.parse()?)
}

fn internal_ip(node: &Node) -> Option<String> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    Some(addresses.iter().find(|a| a.type_ == "InternalIP")?.address.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_register_ready_and_renew_their_leases() -> Result<()> {
    let cluster = Cluster::start().await?;
    let mut config = cluster.fleet_config(3);
    config.delete_nodes_on_exit = true;
    let fleet = Fleet::start(config).await?;
    assert_eq!(fleet.node_names(), ["hollow-node-0", "hollow-node-1", "hollow-node-2"]);

    let nodes = cluster.nodes();
    let mut cidrs = Vec::new();
    for name in fleet.node_names() {
        let node = nodes.get(&name).await?;
        ensure!(ready(&node), "{name} is Ready");
        let labels = node.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("kubernetes.io/hostname"), Some(&name));
        assert_eq!(labels.get("kubernetes.io/os").map(String::as_str), Some("linux"));
        assert!(labels.get("topology.kubernetes.io/zone").is_some_and(|z| z.starts_with("zone-")));
        let capacity = node.status.as_ref().and_then(|s| s.capacity.clone()).unwrap_or_default();
        assert_eq!(capacity.get("pods").map(|q| q.0.as_str()), Some("110"));
        assert!(node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_none_or(Vec::is_empty));
        cidrs.push(pod_cidr(&node)?);
    }
    cidrs.dedup();
    assert_eq!(cidrs.len(), 3, "each node has its own pod CIDR");

    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), "kube-node-lease");
    for name in fleet.node_names() {
        let first = leases.get(&name).await?;
        let spec = first.spec.clone().unwrap_or_default();
        assert_eq!(spec.holder_identity.as_deref(), Some(name.as_str()));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        let owner = first.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(owner.first().map(|o| o.kind.as_str()), Some("Node"));
        eventually(&format!("the lease of {name} renewed"), || {
            let leases = leases.clone();
            let (name, first) = (name.clone(), spec.renew_time.clone());
            async move {
                let now = leases.get(&name).await?;
                Ok(now.spec.and_then(|s| s.renew_time) > first)
            }
        })
        .await?;
    }

    fleet.shutdown().await?;
    for name in ["hollow-node-0", "hollow-node-1", "hollow-node-2"] {
        assert!(nodes.get_opt(name).await?.is_none(), "{name} deleted on exit");
        assert!(leases.get_opt(name).await?.is_none(), "the lease of {name} deleted on exit");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_pods_run_ready_and_deleted_pods_go() -> Result<()> {
    let cluster = Cluster::start().await?;
    let fleet = Fleet::start(cluster.fleet_config(2)).await?;
    let nodes = cluster.nodes();
    let node = nodes.get("hollow-node-1").await?;
    let cidr = pod_cidr(&node)?;

    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web", "hollow-node-1")).await?;
    pods.create(&PostParams::default(), &pod("api", "hollow-node-1")).await?;
    let web = running(&pods, "web").await?;
    let api = running(&pods, "api").await?;
    assert!(cidr.contains(web) && cidr.contains(api), "{web} and {api} in {cidr}");
    assert_ne!(web, api);

    let status = pods.get("web").await?.status.unwrap_or_default();
    assert_eq!(status.host_ip, internal_ip(&node));
    assert!(status.start_time.is_some());
    let types: Vec<String> = status.conditions.iter().flatten().map(|c| c.type_.clone()).collect();
    for kind in
        ["PodScheduled", "Initialized", "ContainersReady", "Ready", "PodReadyToStartContainers"]
    {
        assert!(types.iter().any(|t| t == kind), "{kind} in {types:?}");
    }
    let container = &status.container_statuses.unwrap_or_default()[0];
    assert!(container.ready && container.state.as_ref().is_some_and(|s| s.running.is_some()));
    assert!(container.container_id.as_deref().is_some_and(|id| id.starts_with("containerd://")));

    // A graceful delete waits for the kubelet; the hollow node finishes it.
    pods.delete("web", &DeleteParams::default()).await?;
    eventually("pod web gone", || {
        let pods = pods.clone();
        async move { Ok(pods.get_opt("web").await?.is_none()) }
    })
    .await?;
    // Pods of other nodes are none of the fleet's business.
    pods.create(&PostParams::default(), &pod("elsewhere", "real-node")).await?;
    pods.create(&PostParams::default(), &pod("after", "hollow-node-1")).await?;
    running(&pods, "after").await?;
    let elsewhere = pods.get("elsewhere").await?.status.unwrap_or_default();
    assert_ne!(elsewhere.phase.as_deref(), Some("Running"));

    fleet.shutdown().await?;
    Ok(())
}

/// A node's cached credential, as a client of that node.
fn node_credential(dir: &Path, node: &str) -> Result<keelson_hollow::identity::Credential> {
    let cert_dir = keelson_hollow::identity::CertDir::open(dir)?;
    cert_dir.load(node).context("a cached certificate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_acts_as_itself_and_no_other() -> Result<()> {
    let cluster = Cluster::start().await?;
    let fleet = Fleet::start(cluster.fleet_config(2)).await?;

    let credential = node_credential(&cluster.cert_dir(), "hollow-node-0")?;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(credential.cert_pem.as_bytes())?;
    let identity = keelson_pki::identity_from_der(&der)?;
    assert_eq!(identity.user, "system:node:hollow-node-0");
    assert_eq!(identity.groups, ["system:nodes"]);

    let endpoint = Arc::new(Endpoint::new(&cluster.config).await?);
    let as_node_0 = endpoint.client(&credential)?;
    let nodes = || Request::new(Node::url_path(&(), None));
    let label = serde_json::json!({ "metadata": { "labels": { "example.com/touched": "yes" } } });
    // Its own Node: allowed.
    as_node_0
        .send(nodes().patch("hollow-node-0", &PatchParams::default(), &Patch::Merge(&label))?)
        .await?;
    // Another's: the Node authorizer and NodeRestriction say no.
    let denied = as_node_0
        .send(nodes().patch("hollow-node-1", &PatchParams::default(), &Patch::Merge(&label))?)
        .await
        .expect_err("node 0 may not modify node 1");
    assert_eq!(denied.code(), Some(403), "{denied}");
    let status = serde_json::json!({ "status": { "conditions": [] } });
    let denied = as_node_0
        .send(nodes().patch_subresource(
            "status",
            "hollow-node-1",
            &PatchParams::default(),
            &Patch::Merge(&status),
        )?)
        .await
        .expect_err("node 0 may not write node 1's status");
    assert_eq!(denied.code(), Some(403), "{denied}");

    // A pod bound to node 1 is not node 0's to write or delete.
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    pods.create(&PostParams::default(), &pod("theirs", "hollow-node-1")).await?;
    running(&pods, "theirs").await?;
    let in_default = || Request::new(Pod::url_path(&(), Some("default")));
    let denied = as_node_0
        .send(in_default().delete("theirs", &DeleteParams::default())?)
        .await
        .expect_err("node 0 may not delete node 1's pod");
    assert_eq!(denied.code(), Some(403), "{denied}");

    fleet.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_adopts_nodes_pods_and_certificates() -> Result<()> {
    let cluster = Cluster::start().await?;
    let fleet = Fleet::start(cluster.fleet_config(2)).await?;
    let nodes = cluster.nodes();
    let uid = nodes.get("hollow-node-0").await?.metadata.uid;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    pods.create(&PostParams::default(), &pod("old", "hollow-node-0")).await?;
    let old_ip = running(&pods, "old").await?;
    let cert = std::fs::read_to_string(cluster.cert_dir().join("hollow-node-0.pem"))?;
    fleet.shutdown().await?;

    // Bound while no hollow node ran.
    pods.create(&PostParams::default(), &pod("waiting", "hollow-node-0")).await?;
    let fleet = Fleet::start(cluster.fleet_config(2)).await?;
    let waiting_ip = running(&pods, "waiting").await?;
    pods.create(&PostParams::default(), &pod("new", "hollow-node-0")).await?;
    let new_ip = running(&pods, "new").await?;

    assert_eq!(nodes.get("hollow-node-0").await?.metadata.uid, uid, "the same Node, adopted");
    assert_eq!(running(&pods, "old").await?, old_ip, "an adopted pod keeps its address");
    assert!(old_ip != waiting_ip && old_ip != new_ip && waiting_ip != new_ip);
    let again = std::fs::read_to_string(cluster.cert_dir().join("hollow-node-0.pem"))?;
    assert_eq!(again, cert, "the cached certificate is reused");
    fleet.shutdown().await?;
    Ok(())
}

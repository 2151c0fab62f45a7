//! The scheduler against a real API server (in this process, memory store, random
//! port), as `system:kube-scheduler` with upstream's bootstrap RBAC: placement by
//! resources, zones, taints, affinity and anti-affinity; a pod parked until a node
//! appears; preemption that spares a PDB-protected pod; two profiles; scheduling gates;
//! leader hand-over; and what `kubectl describe` and `kubectl cordon` show.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use keelson_api::k8s_openapi::api::core::v1::{Event, Node, Pod};
use keelson_pki::{Pki, PkiOptions};
use keelson_runtime::credentials;
use keelson_runtime::leader::LeaseTimings;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

struct Cluster {
    dir: tempfile::TempDir,
    running: Option<keelson_apiserver::Running>,
    admin: Client,
    scheduler: Client,
    stops: Vec<tokio::sync::watch::Sender<bool>>,
}

impl Cluster {
    async fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let pki = Pki::ensure(&dir.path().join("tls"), &PkiOptions::default())?;
        let store: Arc<dyn keelson_store::Store> = Arc::new(keelson_store::memory::open()?);
        let running = keelson_apiserver::serve(keelson_apiserver::Config::loopback(
            store,
            pki.server_config()?,
        ))
        .await?;
        let url = format!("https://127.0.0.1:{}", running.local_addr.port());
        let admin = dir.path().join("admin.kubeconfig");
        pki.write_kubeconfig(&admin, &url, "system:admin", &["system:masters"])?;
        let scheduler = dir.path().join("scheduler.kubeconfig");
        pki.write_kubeconfig(&scheduler, &url, "system:kube-scheduler", &[])?;
        let (admin, _) = credentials::from_kubeconfig(&admin).await?;
        let (scheduler, _) = credentials::from_kubeconfig(&scheduler).await?;
        Ok(Cluster { dir, running: Some(running), admin, scheduler, stops: Vec::new() })
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    /// Starts a scheduler with `config` (YAML, or the defaults); it stops with the
    /// cluster.
    fn schedule(
        &mut self,
        config: Option<&str>,
        leader_elect: bool,
    ) -> Result<tokio::sync::watch::Sender<bool>> {
        let mut settings = match config {
            Some(text) => {
                keelson_scheduler::config::Config::parse(text).map_err(anyhow::Error::msg)?
            }
            None => keelson_scheduler::config::Config::default(),
        };
        settings.leader_elect = leader_elect;
        let (tx, rx) = tokio::sync::watch::channel(false);
        let config = keelson_scheduler::Config {
            client: self.scheduler.clone(),
            scheduler: settings,
            leader_timings: LeaseTimings {
                lease_duration: Duration::from_secs(3),
                renew_deadline: Duration::from_secs(2),
                retry_period: Duration::from_millis(300),
            },
            metrics: Default::default(),
            serving: None,
        };
        tokio::spawn(async move {
            if let Err(e) = keelson_scheduler::run(config, rx).await {
                eprintln!("scheduler stopped: {e}");
            }
        });
        self.stops.push(tx.clone());
        Ok(tx)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.admin.clone(), "default")
    }

    async fn node(&self, name: &str, zone: &str, cpu: &str, extra: Value) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.admin.clone());
        let mut node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": { "name": name, "labels": {
                "kubernetes.io/hostname": name,
                "topology.kubernetes.io/zone": zone,
            }},
        });
        merge(&mut node, extra);
        let node: Node = serde_json::from_value(node)?;
        nodes.create(&PostParams::default(), &node).await?;
        let status = json!({ "status": {
            "capacity": { "cpu": cpu, "memory": "8Gi", "pods": "110" },
            "allocatable": { "cpu": cpu, "memory": "8Gi", "pods": "110" },
            "conditions": [{ "type": "Ready", "status": "True" }],
        }});
        nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
        Ok(())
    }

    async fn pod(&self, name: &str, cpu: &str, extra: Value) -> Result<()> {
        let mut pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": name, "namespace": "default" },
            "spec": { "containers": [{
                "name": "c",
                "image": "registry.k8s.io/pause:3.10",
                "resources": { "requests": { "cpu": cpu } },
            }]},
        });
        merge(&mut pod, extra);
        self.pods().create(&PostParams::default(), &serde_json::from_value(pod)?).await?;
        Ok(())
    }

    /// The node a pod is bound to, once it is.
    async fn bound(&self, name: &str) -> Result<String> {
        let pods = self.pods();
        poll(&format!("pod {name} bound"), || async {
            pods.get(name).await.ok().and_then(|p| p.spec?.node_name)
        })
        .await
    }

    /// The latest FailedScheduling message of a pod.
    async fn failed(&self, name: &str) -> Result<String> {
        let events: Api<Event> = Api::namespaced(self.admin.clone(), "default");
        poll(&format!("FailedScheduling of {name}"), || async {
            let list =
                events.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
            list.into_iter()
                .filter(|e| {
                    e.reason.as_deref() == Some("FailedScheduling")
                        && e.involved_object.name.as_deref() == Some(name)
                })
                .max_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0))
                .and_then(|e| e.message)
        })
        .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for stop in &self.stops {
            let _ = stop.send(true);
        }
        if let Some(running) = self.running.take() {
            tokio::spawn(running.shutdown());
        }
    }
}

fn merge(into: &mut Value, extra: Value) {
    match (into, extra) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

async fn poll<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if let Some(found) = check().await {
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("timed out waiting for {what}")
}

async fn eventually<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("timed out waiting for {what}")
}

async fn still_pending(cluster: &Cluster, name: &str) -> Result<()> {
    // Long enough for several scheduling attempts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pod = cluster.pods().get(name).await?;
    assert_eq!(pod.spec.and_then(|s| s.node_name), None, "{name} should stay pending");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_spread_over_zones_and_fit_by_resources() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    for (i, zone) in ["a", "b", "c"].iter().enumerate() {
        cluster.node(&format!("n{i}"), zone, "4", json!({})).await?;
    }
    cluster.schedule(None, false)?;
    // A Service selecting the pods gives them the default spreading constraints.
    let services: Api<keelson_api::k8s_openapi::api::core::v1::Service> =
        Api::namespaced(cluster.admin.clone(), "default");
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "web" },
        "spec": { "selector": { "app": "web" }, "ports": [{ "port": 80 }] },
    });
    services.create(&PostParams::default(), &serde_json::from_value(service)?).await?;
    for i in 0..6 {
        cluster
            .pod(&format!("web-{i}"), "100m", json!({ "metadata": { "labels": { "app": "web" } } }))
            .await?;
    }
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for i in 0..6 {
        *per_node.entry(cluster.bound(&format!("web-{i}")).await?).or_default() += 1;
    }
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), [2, 2, 2], "{per_node:?}");
    // Too big for any node: reasons and the preemption verdict as upstream words them.
    cluster.pod("huge", "5", json!({})).await?;
    assert_eq!(
        cluster.failed("huge").await?,
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    // The condition is written next to the event, not before it: wait for it.
    let pods = cluster.pods();
    let condition = poll("the PodScheduled condition", || async {
        let pod = pods.get("huge").await.ok()?;
        pod.status?.conditions?.into_iter().find(|c| c.type_ == "PodScheduled")
    })
    .await?;
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_deref()),
        ("False", Some("Unschedulable"))
    );
    // Bound pods carry the condition the binding set, and a Scheduled event.
    let events: Api<Event> = Api::namespaced(cluster.admin.clone(), "default");
    // Events are written after the binding, by the recorder's own task.
    eventually("six Scheduled events", || async {
        let list = events.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
        list.iter().filter(|e| e.reason.as_deref() == Some("Scheduled")).count() == 6
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taints_affinity_and_anti_affinity_choose_the_node() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let taint = json!({ "spec": { "taints": [{ "key": "dedicated", "value": "gpu", "effect": "NoSchedule" }] } });
    cluster
        .node(
            "gpu",
            "a",
            "4",
            merge_into(taint, json!({ "metadata": { "labels": { "disk": "ssd" } } })),
        )
        .await?;
    cluster.node("plain-1", "a", "4", json!({})).await?;
    cluster
        .node("plain-2", "b", "4", json!({ "metadata": { "labels": { "disk": "ssd" } } }))
        .await?;
    cluster.schedule(None, false)?;
    // Required affinity to ssd: the tainted node is out, so plain-2.
    let ssd = json!({ "spec": { "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{ "matchExpressions": [{ "key": "disk", "operator": "In", "values": ["ssd"] }] }]
    }}}}});
    cluster.pod("wants-ssd", "100m", ssd.clone()).await?;
    assert_eq!(cluster.bound("wants-ssd").await?, "plain-2");
    // Tolerating the taint and preferring the gpu node's label: the gpu node.
    let tolerant = json!({ "spec": {
        "tolerations": [{ "key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule" }],
        "nodeSelector": { "kubernetes.io/hostname": "gpu" },
    }});
    cluster.pod("tolerant", "100m", tolerant).await?;
    assert_eq!(cluster.bound("tolerant").await?, "gpu");
    // A selector no node matches, with the taint in the way too.
    cluster
        .pod("nowhere", "100m", json!({ "spec": { "nodeSelector": { "disk": "nvme" } } }))
        .await?;
    assert_eq!(
        cluster.failed("nowhere").await?,
        "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    // Required anti-affinity by hostname over the two untainted nodes: the third waits.
    let anti = json!({ "metadata": { "labels": { "app": "db" } }, "spec": { "affinity": { "podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": { "matchLabels": { "app": "db" } }, "topologyKey": "kubernetes.io/hostname"
        }]
    }}}});
    let mut hosts = Vec::new();
    for i in 0..2 {
        cluster.pod(&format!("db-{i}"), "100m", anti.clone()).await?;
        hosts.push(cluster.bound(&format!("db-{i}")).await?);
    }
    hosts.sort();
    assert_eq!(hosts, ["plain-1", "plain-2"]);
    cluster.pod("db-2", "100m", anti.clone()).await?;
    let message = cluster.failed("db-2").await?;
    assert!(message.starts_with("0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s) didn't match pod anti-affinity rules."), "{message}");
    // Required affinity to the db pods' zone b: only plain-2.
    let near = json!({ "spec": { "affinity": { "podAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": { "matchLabels": { "app": "db" } }, "topologyKey": "topology.kubernetes.io/zone"
    }]}, "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{ "matchExpressions": [{ "key": "topology.kubernetes.io/zone", "operator": "In", "values": ["b"] }] }]
    }}}}});
    cluster.pod("near-db", "100m", near).await?;
    assert_eq!(cluster.bound("near-db").await?, "plain-2");
    Ok(())
}

fn merge_into(mut a: Value, b: Value) -> Value {
    merge(&mut a, b);
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_waits_for_a_node_and_gates_hold_pods_back() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    cluster.schedule(None, false)?;
    cluster.pod("early", "100m", json!({})).await?;
    assert_eq!(cluster.failed("early").await?, "no nodes available to schedule pods");
    let gated = json!({ "spec": { "schedulingGates": [{ "name": "example.com/wait" }] } });
    cluster.pod("gated", "100m", gated).await?;
    let started = std::time::Instant::now();
    cluster.node("late", "a", "2", json!({})).await?;
    assert_eq!(cluster.bound("early").await?, "late");
    eprintln!("a parked pod was bound {:?} after its node appeared", started.elapsed());
    still_pending(&cluster, "gated").await?;
    // No event for a gated pod: the scheduler never tried it.
    let events: Api<Event> = Api::namespaced(cluster.admin.clone(), "default");
    let about_gated = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some("gated"))
        .count();
    assert_eq!(about_gated, 0);
    let ungate = json!({ "spec": { "schedulingGates": null } });
    cluster.pods().patch("gated", &PatchParams::default(), &Patch::Merge(&ungate)).await?;
    assert_eq!(cluster.bound("gated").await?, "late");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemption_evicts_the_unprotected_lower_priority_pod() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    cluster.node("only", "a", "2", json!({})).await?;
    cluster.schedule(None, false)?;
    let classes: Api<keelson_api::k8s_openapi::api::scheduling::v1::PriorityClass> =
        Api::all(cluster.admin.clone());
    for (name, value) in [("low", 10), ("high", 1000)] {
        let class = json!({ "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": { "name": name }, "value": value });
        classes.create(&PostParams::default(), &serde_json::from_value(class)?).await?;
    }
    for (name, app) in [("guarded", "guarded"), ("plain", "plain")] {
        let extra = json!({ "metadata": { "labels": { "app": app } }, "spec": { "priorityClassName": "low" } });
        cluster.pod(name, "900m", extra).await?;
        cluster.bound(name).await?;
    }
    // A PDB that allows no disruption of the guarded pod.
    let pdbs: Api<keelson_api::k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        Api::namespaced(cluster.admin.clone(), "default");
    let pdb = json!({ "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": { "name": "guard" },
        "spec": { "minAvailable": 1, "selector": { "matchLabels": { "app": "guarded" } } } });
    pdbs.create(&PostParams::default(), &serde_json::from_value(pdb)?).await?;
    let status = json!({ "status": { "disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1 } });
    pdbs.patch_status("guard", &PatchParams::default(), &Patch::Merge(&status)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.pod("vip", "900m", json!({ "spec": { "priorityClassName": "high" } })).await?;
    // The unguarded pod goes (gracefully: it is marked for deletion) and vip is
    // nominated to the node.
    let pods = cluster.pods();
    eventually("plain being deleted", || async {
        pods.get("plain").await.map(|p| p.metadata.deletion_timestamp.is_some()).unwrap_or(true)
    })
    .await?;
    let plain = pods.get_opt("plain").await?;
    if let Some(plain) = plain {
        let conditions = plain.status.and_then(|s| s.conditions).unwrap_or_default();
        assert!(
            conditions.iter().any(|c| c.type_ == "DisruptionTarget"
                && c.reason.as_deref() == Some("PreemptionByScheduler")),
            "{conditions:?}"
        );
        // No kubelet here to finish the deletion: do it as one would.
        pods.delete("plain", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() })
            .await?;
    }
    assert!(pods.get("guarded").await?.metadata.deletion_timestamp.is_none());
    assert_eq!(cluster.bound("vip").await?, "only");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_profiles_schedule_their_own_pods() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    cluster.node("a", "a", "4", json!({})).await?;
    cluster.node("b", "b", "4", json!({})).await?;
    // The second profile packs pods (MostAllocated) and skips taints.
    cluster.schedule(
        Some(
            r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
- schedulerName: packer
  plugins:
    score:
      disabled:
      - name: '*'
      enabled:
      - name: NodeResourcesFit
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
"#,
        ),
        false,
    )?;
    cluster.pod("first", "1", json!({ "spec": { "schedulerName": "packer" } })).await?;
    let first = cluster.bound("first").await?;
    for i in 0..3 {
        cluster
            .pod(&format!("packed-{i}"), "500m", json!({ "spec": { "schedulerName": "packer" } }))
            .await?;
        assert_eq!(
            cluster.bound(&format!("packed-{i}")).await?,
            first,
            "MostAllocated packs onto one node"
        );
    }
    cluster.pod("default", "100m", json!({})).await?;
    assert_ne!(cluster.bound("default").await?, first, "LeastAllocated picks the emptier node");
    // No profile of that name: nobody touches it.
    cluster.pod("elsewhere", "100m", json!({ "spec": { "schedulerName": "other" } })).await?;
    still_pending(&cluster, "elsewhere").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_scheduler_takes_over_when_the_leader_stops() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    cluster.node("a", "a", "4", json!({})).await?;
    let first = cluster.schedule(None, true)?;
    cluster.pod("one", "100m", json!({})).await?;
    cluster.bound("one").await?;
    let _second = cluster.schedule(None, true)?;
    let leases: Api<keelson_api::k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(cluster.admin.clone(), "kube-system");
    let holder = |l: keelson_api::k8s_openapi::api::coordination::v1::Lease| {
        l.spec.and_then(|s| s.holder_identity)
    };
    let leader = holder(leases.get("kube-scheduler").await?);
    first.send(true)?;
    eventually("a new leader", || async {
        let now = leases.get("kube-scheduler").await.ok().and_then(holder);
        now.is_some() && now != leader
    })
    .await?;
    cluster.pod("two", "100m", json!({})).await?;
    cluster.bound("two").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_describe_explains_and_cordon_stops_placement() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    cluster.node("solo", "a", "2", json!({})).await?;
    cluster.schedule(None, false)?;
    let kubectl = |args: &[&str]| -> Result<String> {
        let out = std::process::Command::new("/usr/bin/kubectl")
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .args(args)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    };
    kubectl(&["cordon", "solo"])?;
    cluster.pod("waiting", "100m", json!({})).await?;
    cluster.failed("waiting").await?;
    let described = kubectl(&["describe", "pod", "waiting"])?;
    assert!(
        described.contains("0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."),
        "{described}"
    );
    assert!(described.contains("FailedScheduling"), "{described}");
    kubectl(&["uncordon", "solo"])?;
    assert_eq!(cluster.bound("waiting").await?, "solo");
    // The Scheduled event follows the binding.
    let described = poll("the Scheduled event in describe", || async {
        kubectl(&["describe", "pod", "waiting"])
            .ok()
            .filter(|d| d.contains("Successfully assigned default/waiting to solo"))
    })
    .await?;
    assert!(described.contains("Scheduled"), "{described}");
    let wide = kubectl(&["get", "pod", "waiting", "-o", "wide"])?;
    assert!(wide.contains("solo"), "{wide}");
    Ok(())
}

//! `keelson bench scheduler`: upstream's `scheduler_perf` workloads against Keelson's
//! scheduler. Starts `keelson server --disable-scheduler` and `keelson scheduler` as
//! child processes (so the scheduler's memory and CPU are its own), creates the nodes as
//! scheduler_perf does (Node objects from its `node-default.yaml`, with the labels a
//! kubelet sets), schedules the initial pods, then creates the measured ones and watches
//! them bound: pods/s from the first measured create to the last binding (as
//! scheduler_perf's `SchedulingThroughput` averages it), p50/p99 of create → bound, and
//! the scheduler's RSS and CPU seconds during the measured phase.
//!
//! Figures are for issue notes; nothing asserts on them. The benchmark, the API server
//! and the scheduler share the machine's CPUs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use keelson_api::k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::Output;
use super::api::server::{Component, ServerProcess};

/// Clients creating objects at once.
const CREATORS: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Workload {
    SchedulingBasic,
    SchedulingPodAntiAffinity,
    SchedulingPodTopologySpread,
    SchedulingNodeAffinity,
    PreemptionBasic,
}

impl Workload {
    /// scheduler_perf's sizes, (nodes, initial pods, measured pods), of its
    /// `SchedulingBasic/5000Nodes_10000Pods`, `SchedulingPodAntiAffinity/5000Nodes_2000Pods`,
    /// `TopologySpreading/5000Nodes_5000Pods`, `SchedulingNodeAffinity/5000Nodes_10000Pods`
    /// and `PreemptionBasic/1000Nodes`.
    fn sizes(self) -> (usize, usize, usize) {
        match self {
            Workload::SchedulingBasic => (5000, 1000, 10000),
            Workload::SchedulingPodAntiAffinity => (5000, 1000, 2000),
            Workload::SchedulingPodTopologySpread => (5000, 5000, 5000),
            Workload::SchedulingNodeAffinity => (5000, 5000, 10000),
            Workload::PreemptionBasic => (1000, 4000, 1000),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Workload::SchedulingBasic => "SchedulingBasic",
            Workload::SchedulingPodAntiAffinity => "SchedulingPodAntiAffinity",
            Workload::SchedulingPodTopologySpread => "SchedulingPodTopologySpread",
            Workload::SchedulingNodeAffinity => "SchedulingNodeAffinity",
            Workload::PreemptionBasic => "PreemptionBasic",
        }
    }

    /// Zone labels of the nodes (scheduler_perf's `labelNodePrepareStrategy`).
    fn zones(self) -> &'static [&'static str] {
        match self {
            Workload::SchedulingPodTopologySpread => &["moon-1", "moon-2", "moon-3"],
            Workload::SchedulingNodeAffinity => &["zone1"],
            _ => &["zone-a", "zone-b", "zone-c"],
        }
    }

    /// The namespaces of the initial and the measured pods.
    fn namespaces(self) -> (&'static str, &'static str) {
        match self {
            Workload::SchedulingPodAntiAffinity => ("sched-0", "sched-1"),
            _ => ("sched-0", "sched-0"),
        }
    }

    /// The pod templates (scheduler_perf's `templates/`): initial, measured.
    fn pods(self) -> (Value, Value) {
        let container = |cpu: &str| {
            json!([{
                "name": "pause",
                "image": "registry.k8s.io/pause:3.10.1",
                "ports": [{ "containerPort": 80 }],
                "resources": {
                    "limits": { "cpu": cpu, "memory": "500Mi" },
                    "requests": { "cpu": cpu, "memory": "500Mi" },
                },
            }])
        };
        let default = json!({ "spec": { "containers": container("100m") } });
        match self {
            Workload::SchedulingBasic => (default.clone(), default),
            Workload::SchedulingPodAntiAffinity => {
                let pod = json!({
                    "metadata": { "labels": { "color": "green" } },
                    "spec": {
                        "affinity": { "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [{
                            "labelSelector": { "matchLabels": { "color": "green" } },
                            "topologyKey": "kubernetes.io/hostname",
                            "namespaces": ["sched-1", "sched-0"],
                        }]}},
                        "containers": container("100m"),
                    },
                });
                (pod.clone(), pod)
            }
            Workload::SchedulingPodTopologySpread => {
                let pod = json!({
                    "metadata": { "labels": { "color": "blue" } },
                    "spec": {
                        "topologySpreadConstraints": [{
                            "maxSkew": 5,
                            "topologyKey": "topology.kubernetes.io/zone",
                            "whenUnsatisfiable": "DoNotSchedule",
                            "labelSelector": { "matchLabels": { "color": "blue" } },
                        }],
                        "containers": container("100m"),
                    },
                });
                (default, pod)
            }
            Workload::SchedulingNodeAffinity => {
                let pod = json!({ "spec": {
                    "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{ "matchExpressions": [{
                            "key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone1", "zone2"],
                        }]}],
                    }}},
                    "containers": container("100m"),
                }});
                (pod.clone(), pod)
            }
            Workload::PreemptionBasic => (
                json!({ "spec": { "terminationGracePeriodSeconds": 0, "containers": container("900m") } }),
                // scheduler_perf sets `priority: 10`; here the Priority admission plugin
                // runs, so a PriorityClass of that value says it.
                json!({ "spec": { "priorityClassName": "bench-high", "containers": container("3000m") } }),
            ),
        }
    }
}

#[derive(clap::Args)]
pub struct SchedulerArgs {
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
    /// Workloads to run [default: all]
    #[arg(long, value_enum, value_delimiter = ',')]
    workload: Vec<Workload>,
    /// Nodes [default: the workload's, scheduler_perf's 5,000 (1,000 for PreemptionBasic)]
    #[arg(long)]
    nodes: Option<usize>,
    /// Pods scheduled before measuring [default: the workload's]
    #[arg(long)]
    init_pods: Option<usize>,
    /// Pods measured [default: the workload's]
    #[arg(long)]
    measure_pods: Option<usize>,
}

#[derive(Serialize)]
struct Figures {
    workload: &'static str,
    nodes: usize,
    init_pods: usize,
    measured_pods: usize,
    pods_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    scheduler_rss_mb: f64,
    scheduler_peak_rss_mb: f64,
    scheduler_cpu_seconds: f64,
    server_rss_mb: f64,
}

pub async fn run(args: SchedulerArgs) -> anyhow::Result<()> {
    let workloads = if args.workload.is_empty() {
        vec![
            Workload::SchedulingBasic,
            Workload::SchedulingPodAntiAffinity,
            Workload::SchedulingPodTopologySpread,
            Workload::SchedulingNodeAffinity,
            Workload::PreemptionBasic,
        ]
    } else {
        args.workload.clone()
    };
    if args.output == Output::Table {
        println!(
            "{:<28} {:>6} {:>6} {:>7} {:>9} {:>8} {:>8} {:>9} {:>8} {:>9}",
            "workload",
            "nodes",
            "init",
            "pods",
            "pods/s",
            "p50 ms",
            "p99 ms",
            "sched MB",
            "sched s",
            "server MB"
        );
    }
    for workload in workloads {
        let figures = measure(workload, &args).await?;
        match args.output {
            Output::Json => println!("{}", serde_json::to_string(&figures)?),
            Output::Table => println!(
                "{:<28} {:>6} {:>6} {:>7} {:>9.0} {:>8.1} {:>8.1} {:>9.1} {:>8.1} {:>9.1}",
                figures.workload,
                figures.nodes,
                figures.init_pods,
                figures.measured_pods,
                figures.pods_per_second,
                figures.p50_ms,
                figures.p99_ms,
                figures.scheduler_peak_rss_mb,
                figures.scheduler_cpu_seconds,
                figures.server_rss_mb,
            ),
        }
    }
    Ok(())
}

fn node(name: &str, zone: &str) -> anyhow::Result<Node> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "labels": {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "topology.kubernetes.io/zone": zone,
        }},
        "status": {
            "capacity": { "pods": "110", "cpu": "4", "memory": "32Gi" },
            "allocatable": { "pods": "110", "cpu": "4", "memory": "32Gi" },
            "conditions": [{ "status": "True", "type": "Ready" }],
            "phase": "Running",
        },
    }))?)
}

fn pod(template: &Value, namespace: &str, name: &str) -> anyhow::Result<Pod> {
    let mut pod = template.clone();
    pod["apiVersion"] = "v1".into();
    pod["kind"] = "Pod".into();
    pod["metadata"]["name"] = name.into();
    pod["metadata"]["namespace"] = namespace.into();
    Ok(serde_json::from_value(pod)?)
}

/// Creates `count` objects with `CREATORS` clients; returns when each create was sent.
async fn create_all<K, F>(
    api: Api<K>,
    count: usize,
    make: F,
) -> anyhow::Result<HashMap<String, Instant>>
where
    K: kube::Resource
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    F: Fn(usize) -> anyhow::Result<(String, K)> + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sent = Arc::new(Mutex::new(HashMap::new()));
    let mut tasks = JoinSet::new();
    for _ in 0..CREATORS.min(count.max(1)) {
        let (api, make, next, sent) = (api.clone(), make.clone(), next.clone(), sent.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(());
                }
                let (name, object) = make(i)?;
                let at = Instant::now();
                api.create(&PostParams::default(), &object)
                    .await
                    .with_context(|| format!("creating {name}"))?;
                sent.lock().unwrap_or_else(|e| e.into_inner()).insert(name, at);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let sent = std::mem::take(&mut *sent.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(sent)
}

async fn measure(workload: Workload, args: &SchedulerArgs) -> anyhow::Result<Figures> {
    let (nodes, init_pods, measure_pods) = workload.sizes();
    let nodes = args.nodes.unwrap_or(nodes);
    let init_pods = args.init_pods.unwrap_or(init_pods);
    let measure_pods = args.measure_pods.unwrap_or(measure_pods);
    tracing::info!(workload = workload.name(), nodes, init_pods, measure_pods, "starting");
    let (server, _) = tokio::task::spawn_blocking(|| ServerProcess::start(None)).await??;
    let admin = server.data_dir().join("admin.kubeconfig");
    let (client, _) = keelson_runtime::credentials::from_kubeconfig(&admin).await?;
    let (init_ns, measure_ns) = workload.namespaces();
    for ns in [init_ns, measure_ns] {
        let namespace: Namespace = serde_json::from_value(json!({ "metadata": { "name": ns } }))?;
        match Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        // Pods wait for the namespace's default ServiceAccount (the ServiceAccount
        // admission plugin needs it); made before the load begins.
        let accounts: Api<keelson_api::k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), ns);
        let deadline = Instant::now() + Duration::from_secs(60);
        while accounts.get_opt("default").await?.is_none() {
            if Instant::now() > deadline {
                bail!("no default ServiceAccount in {ns} after a minute");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if workload == Workload::PreemptionBasic {
        let class: keelson_api::k8s_openapi::api::scheduling::v1::PriorityClass =
            serde_json::from_value(json!({
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": { "name": "bench-high" },
                "value": 10,
            }))?;
        Api::<keelson_api::k8s_openapi::api::scheduling::v1::PriorityClass>::all(client.clone())
            .create(&PostParams::default(), &class)
            .await?;
    }
    let kubeconfig = server.data_dir().join("cred/scheduler.kubeconfig");
    let mut args: Vec<std::ffi::OsString> =
        ["scheduler", "--leader-elect=false", "--secure-port=0", "--kubeconfig"]
            .map(Into::into)
            .into();
    args.push(kubeconfig.into_os_string());
    let scheduler = Component::start(&args)?;

    let zones = workload.zones();
    create_all(Api::<Node>::all(client.clone()), nodes, move |i| {
        let name = format!("scheduler-perf-{i}");
        Ok((name.clone(), node(&name, zones[i % zones.len()])?))
    })
    .await?;
    // Bindings as they happen, from one watch of every pod.
    let bound: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watching = {
        let bound = bound.clone();
        let pods: Api<Pod> = Api::all(client.clone());
        tokio::spawn(async move {
            let mut events = watcher::watcher(pods, watcher::Config::default()).boxed();
            while let Some(event) = events.next().await {
                let objects = match event {
                    Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => vec![p],
                    _ => continue,
                };
                for p in objects {
                    if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                        let name = format!(
                            "{}/{}",
                            p.metadata.namespace.unwrap_or_default(),
                            p.metadata.name.unwrap_or_default()
                        );
                        bound
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(name)
                            .or_insert_with(Instant::now);
                    }
                }
            }
        })
    };
    let (init_template, measure_template) = workload.pods();
    let init_template = Arc::new(init_template);
    create_all(Api::<Pod>::namespaced(client.clone(), init_ns), init_pods, move |i| {
        let name = format!("init-{i}");
        Ok((name.clone(), pod(&init_template, init_ns, &name)?))
    })
    .await?;
    wait_bound(&bound, init_pods, Duration::from_secs(600)).await.context("initial pods")?;
    let cpu_before = scheduler.cpu_seconds()?;
    let measure_template = Arc::new(measure_template);
    let started = Instant::now();
    let sent =
        create_all(Api::<Pod>::namespaced(client.clone(), measure_ns), measure_pods, move |i| {
            let name = format!("measured-{i}");
            Ok((name.clone(), pod(&measure_template, measure_ns, &name)?))
        })
        .await?;
    // For PreemptionBasic, the victims' deletion leaves the initial pods' bindings as
    // they were; the measured pods are counted by name.
    let wanted = init_pods + measure_pods;
    let waited = wait_bound(&bound, wanted, Duration::from_secs(1200)).await;
    let cpu = scheduler.cpu_seconds()? - cpu_before;
    watching.abort();
    waited.context("measured pods")?;
    let bound = bound.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut latencies: Vec<f64> = sent
        .iter()
        .filter_map(|(name, at)| {
            let done = bound.get(&format!("{measure_ns}/{name}"))?;
            Some(done.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let last = sent
        .keys()
        .filter_map(|name| bound.get(&format!("{measure_ns}/{name}")))
        .max()
        .copied()
        .unwrap_or(started);
    let elapsed = last.saturating_duration_since(started).as_secs_f64().max(1e-9);
    let percentile = |p: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        (latencies[i] * 10.0).round() / 10.0
    };
    Ok(Figures {
        workload: workload.name(),
        nodes,
        init_pods,
        measured_pods: latencies.len(),
        pods_per_second: (latencies.len() as f64 / elapsed).round(),
        p50_ms: percentile(0.5),
        p99_ms: percentile(0.99),
        scheduler_rss_mb: scheduler.memory_mb("VmRSS")?,
        scheduler_peak_rss_mb: scheduler.memory_mb("VmHWM")?,
        scheduler_cpu_seconds: (cpu * 10.0).round() / 10.0,
        server_rss_mb: server.rss_mb()?,
    })
}

/// Waits until `count` pods have been seen bound.
async fn wait_bound(
    bound: &Mutex<HashMap<String, Instant>>,
    count: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let n = bound.lock().unwrap_or_else(|e| e.into_inner()).len();
        if n >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {n} of {count} pods bound after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! `keelson bench controllers`: the controller manager under the load the [controllers]
//! issue names. Starts `keelson apiserver` (no components in it), then `keelson
//! scheduler`, `keelson controller-manager` and `keelson hollow-nodes` as child
//! processes, so the controller manager's memory and CPU are its own; then measures
//!
//! - a Deployment of `--replicas` pods on `--nodes` hollow nodes: create → Available
//!   with every replica available;
//! - a rolling update of all of them (a template annotation changed): → every replica
//!   updated and available again;
//! - `--namespaces` namespaces of `--objects` ConfigMaps each: delete → all gone;
//!
//! and the controller manager's RSS (now and peak) and CPU seconds over the run. Figures
//! are for issue notes; nothing asserts on them. Everything shares the machine's CPUs.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{StreamExt, stream};
use keelson_api::k8s_openapi::api::apps::v1::Deployment;
use keelson_api::k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde_json::json;

use super::Output;
use super::api::server::{Component, ServerProcess};

/// Requests in flight while creating objects.
const PARALLEL: usize = 32;
/// How long any phase may take before the bench gives up.
const PHASE_LIMIT: Duration = Duration::from_secs(600);

#[derive(clap::Args)]
pub struct ControllersArgs {
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
    /// Hollow nodes
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// The Deployment's replicas
    #[arg(long, default_value_t = 1000)]
    replicas: i32,
    /// Namespaces deleted at once
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// ConfigMaps in each of them
    #[arg(long, default_value_t = 500)]
    objects: usize,
}

#[derive(Serialize)]
struct Figures {
    nodes: usize,
    replicas: i32,
    deployment_available_seconds: f64,
    rolling_update_seconds: f64,
    namespaces: usize,
    objects_per_namespace: usize,
    namespaces_deleted_seconds: f64,
    controller_manager_rss_mb: f64,
    controller_manager_peak_rss_mb: f64,
    controller_manager_cpu_seconds: f64,
    server_rss_mb: f64,
}

/// A component's arguments: `words`, then `--kubeconfig <path>` and `extra`.
fn args(words: &[&str], kubeconfig: &std::path::Path, extra: &[&std::ffi::OsStr]) -> Vec<OsString> {
    let mut args: Vec<OsString> = words.iter().map(OsString::from).collect();
    args.push("--kubeconfig".into());
    args.push(kubeconfig.into());
    args.extend(extra.iter().map(|a| a.to_os_string()));
    args
}

pub async fn run(options: ControllersArgs) -> anyhow::Result<()> {
    let (server, _) =
        tokio::task::spawn_blocking(|| ServerProcess::start_as("apiserver", None, &[])).await??;
    let dir = server.data_dir().to_owned();
    let admin = dir.join("admin.kubeconfig");
    let (client, _) = keelson_runtime::credentials::from_kubeconfig(&admin).await?;
    let scheduler_kubeconfig = dir.join("cred/scheduler.kubeconfig");
    let _scheduler = Component::start(&args(
        &["scheduler", "--leader-elect=false", "--secure-port=0"],
        &scheduler_kubeconfig,
        &[],
    ))?;
    let cm_kubeconfig = dir.join("cred/controller-manager.kubeconfig");
    // The cluster CA signs the hollow nodes' client certificates, as in `keelson server`.
    let (ca_cert, ca_key) = (dir.join("tls/ca.crt"), dir.join("tls/ca.key"));
    let controller_manager = Component::start(&args(
        &["controller-manager", "--leader-elect=false", "--secure-port=0"],
        &cm_kubeconfig,
        &[
            "--cluster-signing-cert-file".as_ref(),
            ca_cert.as_os_str(),
            "--cluster-signing-key-file".as_ref(),
            ca_key.as_os_str(),
        ],
    ))?;
    let count = options.nodes.to_string();
    let certs = dir.join("hollow-certs");
    let _hollow = Component::start(&args(
        &["hollow-nodes", "--count", &count],
        &admin,
        &["--cert-dir".as_ref(), certs.as_os_str()],
    ))?;
    let nodes: Api<Node> = Api::all(client.clone());
    wait("the hollow nodes Ready", || async {
        let list = nodes.list(&ListParams::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        Ok(ready >= options.nodes)
    })
    .await?;
    let accounts: Api<keelson_api::k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), "default");
    wait("the default ServiceAccount", || async {
        Ok(accounts.get_opt("default").await?.is_some())
    })
    .await?;

    // A Deployment made Available.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "bench" },
        "spec": {
            "replicas": options.replicas,
            "selector": { "matchLabels": { "app": "bench" } },
            "template": {
                "metadata": { "labels": { "app": "bench" } },
                "spec": { "containers": [{
                    "name": "c",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": { "requests": { "cpu": "1m", "memory": "1Mi" } },
                }]},
            },
        },
    }))?;
    let began = Instant::now();
    deployments.create(&PostParams::default(), &deployment).await?;
    wait("the Deployment Available", || rolled_out(&deployments, options.replicas)).await?;
    let available = began.elapsed().as_secs_f64();

    // Every replica replaced.
    let began = Instant::now();
    let patch = json!({ "spec": { "template": { "metadata": { "annotations": { "bench/revision": "2" } } } } });
    deployments.patch("bench", &PatchParams::default(), &Patch::Merge(&patch)).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    wait("the rolling update done", || rolled_out(&deployments, options.replicas)).await?;
    let rolled = began.elapsed().as_secs_f64();

    // Namespaces full of objects, deleted.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = (0..options.namespaces).map(|i| format!("bench-{i}")).collect();
    for name in &names {
        let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } }))?;
        namespaces.create(&PostParams::default(), &ns).await?;
    }
    let creates = names.iter().flat_map(|ns| (0..options.objects).map(move |i| (ns.clone(), i)));
    let failures: Vec<kube::Error> = stream::iter(creates)
        .map(|(ns, i)| {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            async move {
                let cm: ConfigMap = serde_json::from_value(json!({
                    "metadata": { "name": format!("cm-{i}") },
                    "data": { "key": "value" },
                }))
                .unwrap_or_default();
                api.create(&PostParams::default(), &cm).await.err()
            }
        })
        .buffer_unordered(PARALLEL)
        .filter_map(|e| async move { e })
        .collect()
        .await;
    if let Some(e) = failures.into_iter().next() {
        bail!("cannot create the ConfigMaps: {e}");
    }
    let began = Instant::now();
    for name in &names {
        namespaces.delete(name, &DeleteParams::default()).await?;
    }
    wait("the namespaces gone", || async {
        let list = namespaces.list(&ListParams::default()).await?;
        Ok(!list
            .items
            .iter()
            .any(|n| n.metadata.name.as_deref().is_some_and(|n| n.starts_with("bench-"))))
    })
    .await?;
    let deleted = began.elapsed().as_secs_f64();

    let figures = Figures {
        nodes: options.nodes,
        replicas: options.replicas,
        deployment_available_seconds: round(available),
        rolling_update_seconds: round(rolled),
        namespaces: options.namespaces,
        objects_per_namespace: options.objects,
        namespaces_deleted_seconds: round(deleted),
        controller_manager_rss_mb: controller_manager.memory_mb("VmRSS")?,
        controller_manager_peak_rss_mb: controller_manager.memory_mb("VmHWM")?,
        controller_manager_cpu_seconds: round(controller_manager.cpu_seconds()?),
        server_rss_mb: server.rss_mb()?,
    };
    match options.output {
        Output::Json => println!("{}", serde_json::to_string(&figures)?),
        Output::Table => {
            println!("nodes                              {}", figures.nodes);
            println!("replicas                           {}", figures.replicas);
            println!(
                "deployment available (s)           {:.1}",
                figures.deployment_available_seconds
            );
            println!("rolling update of all (s)          {:.1}", figures.rolling_update_seconds);
            println!(
                "{} namespaces × {} objects gone (s) {:.1}",
                figures.namespaces,
                figures.objects_per_namespace,
                figures.namespaces_deleted_seconds
            );
            println!("controller manager RSS (MB)        {:.1}", figures.controller_manager_rss_mb);
            println!(
                "controller manager peak RSS (MB)   {:.1}",
                figures.controller_manager_peak_rss_mb
            );
            println!(
                "controller manager CPU (s)         {:.1}",
                figures.controller_manager_cpu_seconds
            );
            println!("API server RSS (MB)                {:.1}", figures.server_rss_mb);
        }
    }
    Ok(())
}

fn round(seconds: f64) -> f64 {
    (seconds * 10.0).round() / 10.0
}

/// Whether the Deployment has every replica updated and available, and nothing else.
async fn rolled_out(deployments: &Api<Deployment>, replicas: i32) -> anyhow::Result<bool> {
    let d = deployments.get("bench").await?;
    let status = d.status.unwrap_or_default();
    Ok(status.observed_generation >= d.metadata.generation
        && status.updated_replicas == Some(replicas)
        && status.available_replicas == Some(replicas)
        && status.replicas == Some(replicas)
        && status.conditions.iter().flatten().any(|c| c.type_ == "Available" && c.status == "True"))
}

/// Polls `check` every 100 ms until it holds, for up to [`PHASE_LIMIT`].
async fn wait<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + PHASE_LIMIT;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("gave up waiting for {what} after {PHASE_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

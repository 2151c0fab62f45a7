//! `kubectl get componentstatuses`: the scheduler, the controller manager and the
//! datastore, each probed when read, as upstream probes them.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, ensure};
use common::TestServer;
use keelson_apiserver::componentstatus::Components;
use serde_json::Value;

/// A controller manager's secure port as `keelson_runtime::secure` serves it, with one
/// check that passes while `healthy` is true; returns its address.
async fn secure_port(
    healthy: Arc<AtomicBool>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<std::net::SocketAddr> {
    let config = keelson_runtime::secure::Config {
        component: "kube-controller-manager",
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        serving: None,
        client_ca_pem: None,
        authentication: None,
        authorization: None,
        always_allow_paths: vec!["/healthz".into()],
        always_allow_groups: Vec::new(),
    };
    let checks = keelson_runtime::health::Checks::default();
    checks.add("controllers", move || {
        if healthy.load(Ordering::Relaxed) { Ok(()) } else { Err("stopped".into()) }
    });
    Ok(keelson_runtime::secure::serve(config, checks, Default::default(), stop).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_are_probed_when_read() -> Result<()> {
    let healthy = Arc::new(AtomicBool::new(true));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let controller_manager = secure_port(healthy.clone(), stopped).await?;
    // No scheduler runs: its port refuses connections.
    let scheduler = tokio::net::TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let s = TestServer::start_with_components(Components { controller_manager, scheduler }).await?;

    let printed = s.ok(&["get", "componentstatuses"]).await?;
    let refused = format!(
        "Get \"https://{scheduler}/healthz\": dial tcp {scheduler}: connect: connection refused"
    );
    let rows: Vec<Vec<String>> =
        printed.lines().map(|l| l.split_whitespace().map(str::to_owned).collect()).collect();
    let expected = [
        vec!["NAME", "STATUS", "MESSAGE", "ERROR"],
        [vec!["scheduler", "Unhealthy"], refused.split(' ').collect()].concat(),
        vec!["controller-manager", "Healthy", "ok"],
        vec!["etcd-0", "Healthy", "ok"],
    ];
    ensure!(rows == expected, "{printed}");

    let (code, text) = s.curl("GET", "/api/v1/componentstatuses/scheduler", None, "", true).await?;
    let scheduler_status: Value = serde_json::from_str(&text)?;
    ensure!(
        code == 200
            && scheduler_status["kind"] == "ComponentStatus"
            && scheduler_status["metadata"]["name"] == "scheduler"
            && scheduler_status["conditions"]
                == serde_json::json!([{ "type": "Healthy", "status": "False", "message": refused }]),
        "{code} {text}"
    );

    // A failing check is a 500 from /healthz, which upstream's prober reports by code.
    healthy.store(false, Ordering::Relaxed);
    let (code, text) =
        s.curl("GET", "/api/v1/componentstatuses/controller-manager", None, "", true).await?;
    let failing: Value = serde_json::from_str(&text)?;
    ensure!(
        code == 200
            && failing["conditions"][0]["status"] == "False"
            && failing["conditions"][0]["message"] == "HTTP probe failed with statuscode: 500",
        "{code} {text}"
    );
    let (code, text) = s.curl("GET", "/api/v1/componentstatuses/kubelet", None, "", true).await?;
    let status: Value = serde_json::from_str(&text)?;
    ensure!(
        code == 500
            && status["message"] == "Component not found: kubelet"
            && status.get("reason").is_none(),
        "{code} {text}"
    );
    let _ = stop.send(true);
    Ok(())
}

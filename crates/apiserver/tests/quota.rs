//! LimitRanger and ResourceQuota with the real kubectl: LimitRange defaults and bounds,
//! quotas refusing what would exceed them in upstream's words, usage shown by
//! `kubectl get/describe quota` and released when objects go.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use common::TestServer;
use serde_json::{Value, json};

/// A pod named `name` with one container `c` whose resources are `resources`.
fn pod(name: &str, resources: Value) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": { "containers": [{ "name": "c", "image": "busybox", "resources": resources }] },
    })
    .to_string()
}

async fn create(s: &TestServer, manifest: &str) -> Result<common::Out> {
    s.kubectl_in(&["create", "-f", "-"], Some(manifest)).await
}

/// Polls `kubectl get <args> -o jsonpath=<path>` until it prints `want`: the quota
/// controller is asynchronous.
async fn eventually(s: &TestServer, args: &[&str], path: &str, want: &str) -> Result<()> {
    let output = format!("jsonpath={path}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut full = vec!["get"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-o", &output]);
        let got = s.ok(&full).await?;
        if got == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{args:?} {path}: got {got:?}, want {want:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The cells of the line of `describe` output that starts with `name`.
fn row<'a>(described: &'a str, name: &str) -> Vec<&'a str> {
    described
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&name))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_count_quota_refuses_the_third_pod_until_one_goes() -> Result<()> {
    let s = TestServer::start().await?;
    s.ok(&["create", "quota", "q", "--hard=pods=2,count/configmaps=5"]).await?;
    eventually(&s, &["quota", "q"], "{.status.used.pods}", "0").await?;
    for name in ["a", "b"] {
        let out = create(&s, &pod(name, json!({}))).await?;
        ensure!(out.ok, "{name}: {}", out.stderr);
    }
    let out = create(&s, &pod("c", json!({}))).await?;
    ensure!(
        !out.ok
            && out.stderr.contains(
                "pods \"c\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
            ),
        "{}",
        out.stderr
    );
    // What was charged shows, in kubectl's columns and its description.
    let listed = s.ok(&["get", "quota", "q"]).await?;
    ensure!(listed.contains("count/configmaps: 1/5, pods: 2/2"), "{listed}");
    let described = s.ok(&["describe", "quota", "q"]).await?;
    ensure!(row(&described, "pods") == ["pods", "2", "2"], "{described}");

    // Deleting a pod gives its place back.
    s.ok(&["delete", "pod", "a", "--wait=false"]).await?;
    eventually(&s, &["quota", "q"], "{.status.used.pods}", "1").await?;
    let out = create(&s, &pod("c", json!({}))).await?;
    ensure!(out.ok, "{}", out.stderr);

    // Other objects are counted too; a dry run is checked but not charged.
    s.ok(&["create", "configmap", "one"]).await?;
    s.ok(&["create", "configmap", "two", "--dry-run=server"]).await?;
    eventually(&s, &["quota", "q"], "{.status.used.count/configmaps}", "2").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compute_quota_requires_declared_resources_and_counts_them() -> Result<()> {
    let s = TestServer::start().await?;
    s.ok(&["create", "quota", "compute", "--hard=requests.cpu=1,limits.cpu=2,requests.memory=1Gi"])
        .await?;
    // A quota scoped to BestEffort pods does not see Burstable ones.
    s.ok(&["create", "quota", "besteffort", "--hard=pods=1", "--scopes=BestEffort"]).await?;
    eventually(&s, &["quota", "compute"], "{.status.used.requests\\.cpu}", "0").await?;
    eventually(&s, &["quota", "besteffort"], "{.status.used.pods}", "0").await?;

    let out = create(&s, &pod("bare", json!({}))).await?;
    ensure!(
        !out.ok
            && out.stderr.contains(
                "pods \"bare\" is forbidden: failed quota: compute: must specify limits.cpu for: c; requests.cpu for: c; requests.memory for: c"
            ),
        "{}",
        out.stderr
    );
    let sized = |cpu: &str| json!({ "requests": { "cpu": cpu, "memory": "256Mi" }, "limits": { "cpu": "1", "memory": "256Mi" } });
    let out = create(&s, &pod("first", sized("500m"))).await?;
    ensure!(out.ok, "{}", out.stderr);
    let out = create(&s, &pod("second", sized("600m"))).await?;
    ensure!(
        !out.ok
            && out.stderr.contains(
                "exceeded quota: compute, requested: requests.cpu=600m, used: requests.cpu=500m, limited: requests.cpu=1"
            ),
        "{}",
        out.stderr
    );
    let described = s.ok(&["describe", "quota", "compute"]).await?;
    ensure!(row(&described, "requests.cpu") == ["requests.cpu", "500m", "1"], "{described}");
    ensure!(row(&described, "limits.cpu") == ["limits.cpu", "1", "2"], "{described}");
    ensure!(
        row(&described, "requests.memory") == ["requests.memory", "256Mi", "1Gi"],
        "{described}"
    );
    let best_effort =
        s.ok(&["get", "quota", "besteffort", "-o", "jsonpath={.status.used.pods}"]).await?;
    ensure!(best_effort == "0", "{best_effort}");

    // Deleting the pod releases what it used.
    s.ok(&["delete", "pod", "first", "--wait=false"]).await?;
    eventually(&s, &["quota", "compute"], "{.status.used.requests\\.cpu}", "0").await?;
    let out = create(&s, &pod("second", sized("600m"))).await?;
    ensure!(out.ok, "{}", out.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_ranges_default_and_bound_containers() -> Result<()> {
    let s = TestServer::start().await?;
    let range = json!({
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": { "name": "limits" },
        "spec": { "limits": [{
            "type": "Container",
            "default": { "cpu": "500m", "memory": "128Mi" },
            "defaultRequest": { "cpu": "250m", "memory": "64Mi" },
            "max": { "cpu": "1" },
            "min": { "memory": "10Mi" },
            "maxLimitRequestRatio": { "cpu": "2" },
        }] },
    });
    let out = create(&s, &range.to_string()).await?;
    ensure!(out.ok, "{}", out.stderr);

    // Defaults fill requests and limits, say so in the annotation, and set the QoS class.
    let out = create(&s, &pod("plain", json!({}))).await?;
    ensure!(out.ok, "{}", out.stderr);
    let got: Value = serde_json::from_str(&s.ok(&["get", "pod", "plain", "-o", "json"]).await?)?;
    ensure!(
        got["metadata"]["annotations"]["kubernetes.io/limit-ranger"]
            == "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c",
        "{}",
        got["metadata"]
    );
    let resources = &got["spec"]["containers"][0]["resources"];
    ensure!(
        *resources
            == json!({ "limits": { "cpu": "500m", "memory": "128Mi" }, "requests": { "cpu": "250m", "memory": "64Mi" } }),
        "{resources}"
    );
    ensure!(got["status"]["qosClass"] == "Burstable", "{}", got["status"]);

    // Bounds, in upstream's words.
    for (name, resources, message) in [
        (
            "big",
            json!({ "limits": { "cpu": "2" }, "requests": { "cpu": "1" } }),
            "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2",
        ),
        (
            "small",
            json!({ "requests": { "memory": "5Mi" } }),
            "pods \"small\" is forbidden: minimum memory usage per Container is 10Mi, but request is 5Mi",
        ),
        (
            "spiky",
            json!({ "limits": { "cpu": "1" }, "requests": { "cpu": "250m" } }),
            "pods \"spiky\" is forbidden: cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000",
        ),
    ] {
        let out = create(&s, &pod(name, resources)).await?;
        ensure!(!out.ok && out.stderr.contains(message), "{name}: {}", out.stderr);
    }

    // A default limit below the request makes the pod invalid, as upstream validates
    // after admission.
    let out = create(&s, &pod("inverted", json!({ "requests": { "cpu": "800m" } }))).await?;
    ensure!(
        !out.ok && out.stderr.contains("must be less than or equal to cpu limit of 500m"),
        "{}",
        out.stderr
    );

    // Claims are bounded by PersistentVolumeClaim items.
    let claims = json!({
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": { "name": "storage" },
        "spec": { "limits": [{ "type": "PersistentVolumeClaim", "max": { "storage": "2Gi" } }] },
    });
    ensure!(create(&s, &claims.to_string()).await?.ok);
    let claim = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": { "name": "data" },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "5Gi" } } },
    });
    let out = create(&s, &claim.to_string()).await?;
    ensure!(
        !out.ok
            && out.stderr.contains(
                "persistentvolumeclaims \"data\" is forbidden: maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"
            ),
        "{}",
        out.stderr
    );
    Ok(())
}

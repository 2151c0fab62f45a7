//! LimitRanger and ResourceQuota with the real kubectl: LimitRange defaults and bounds,
//! quotas refusing what would exceed them in upstream's words, usage shown by
//! `kubectl get/describe quota` and released when objects go.

mod common;

use anyhow::{Result, ensure};
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

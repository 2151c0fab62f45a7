//! `/metrics` with the real kubectl: served to `system:monitoring` (and admins) only,
//! with kube-apiserver's metric names and labels, so dashboards and alerts made for it
//! read Keelson's.

mod common;

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use common::TestServer;

/// The value of the first sample of `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        if metric != name {
            return None;
        }
        let inside = rest.strip_suffix('}')?;
        let pairs: Vec<(&str, &str)> = inside
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        labels.iter().all(|wanted| pairs.contains(wanted)).then(|| value.parse().ok())?
    })
}

/// `/metrics` as `kubeconfig`'s user, until `name` has a sample with `labels` (a watch
/// is counted when its stream ends, a moment after the client sees the end).
async fn scrape_until(
    s: &TestServer,
    kubeconfig: &std::path::Path,
    name: &str,
    labels: &[(&str, &str)],
) -> Result<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = s.kubectl_as(kubeconfig, &["get", "--raw", "/metrics"]).await?;
        ensure!(out.ok, "kubectl get --raw /metrics: {}", out.stderr);
        if sample(&out.stdout, name, labels).is_some() {
            return Ok(out.stdout);
        }
        if std::time::Instant::now() > deadline {
            bail!("no {name} with {labels:?} in:\n{}", out.stdout);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_to_monitoring_with_upstream_names() -> Result<()> {
    let s = TestServer::start().await?;
    // Anonymous: refused before authorization; a user without a grant: 403.
    let (code, _) = s.curl("GET", "/metrics", None, "", false).await?;
    ensure!(code == 401, "anonymous /metrics: {code}");
    let nobody = s.kubeconfig_for("nobody", &[])?;
    let refused = s.kubectl_as(&nobody, &["get", "--raw", "/metrics"]).await?;
    ensure!(!refused.ok && refused.stderr.contains("Forbidden"), "{}", refused.stderr);
    let admin = s.kubectl(&["get", "--raw", "/metrics"]).await?;
    ensure!(
        admin.ok && admin.stdout.contains("# TYPE apiserver_request counter"),
        "{}",
        admin.stderr
    );
    let monitoring = s.kubeconfig_for("prometheus", &["system:monitoring"])?;

    s.ok(&["create", "configmap", "one", "--from-literal=a=b"]).await?;
    s.ok(&["create", "configmap", "two", "--from-literal=a=b", "--dry-run=server"]).await?;
    s.ok(&["get", "configmaps"]).await?;
    let applied = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: three\ndata:\n  a: b\n";
    let out = s.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(applied)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let denied = s.kubectl_as(&nobody, &["get", "secrets"]).await?;
    ensure!(!denied.ok, "nobody listed secrets");
    // A watch that ends by itself after a second.
    let (code, events) = s
        .curl(
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1",
            None,
            "",
            true,
        )
        .await?;
    ensure!(code == 200 && events.contains(r#""type":"ADDED""#), "{code} {events}");

    let watch = [("verb", "WATCH"), ("resource", "configmaps"), ("code", "200")];
    let text = scrape_until(&s, &monitoring, "apiserver_request_total", &watch).await?;
    let total = |labels: &[(&str, &str)]| sample(&text, "apiserver_request_total", labels);
    let configmaps = [("group", ""), ("version", "v1"), ("resource", "configmaps")];
    let create = [("verb", "POST"), ("dry_run", ""), ("scope", "resource"), ("code", "201")];
    let create: Vec<_> = configmaps.iter().chain(&create).copied().collect();
    // The controller manager creates configmaps too (`kube-root-ca.crt`).
    ensure!(total(&create).is_some_and(|n| n >= 1.0), "create: {text}");
    ensure!(total(&[("component", "apiserver"), ("subresource", ""), ("verb", "POST")]).is_some());
    let dry = [("verb", "POST"), ("dry_run", "All"), ("resource", "configmaps"), ("code", "201")];
    ensure!(total(&dry) == Some(1.0), "dry run: {text}");
    let list = [("verb", "LIST"), ("scope", "namespace"), ("resource", "configmaps")];
    ensure!(total(&list).is_some_and(|n| n >= 1.0), "list: {text}");
    let apply = [("verb", "APPLY"), ("scope", "resource"), ("resource", "configmaps")];
    ensure!(total(&apply).is_some(), "apply: {text}");
    let forbidden = [("verb", "LIST"), ("resource", "secrets"), ("code", "403")];
    ensure!(total(&forbidden) == Some(1.0), "denied: {text}");
    // Durations with upstream's buckets.
    let histogram = |suffix: &str, labels: &[(&str, &str)]| {
        sample(&text, &format!("apiserver_request_duration_seconds_{suffix}"), labels)
    };
    let posted = [("verb", "POST"), ("dry_run", ""), ("resource", "configmaps")];
    let count = histogram("count", &posted);
    ensure!(count.is_some_and(|n| n >= 1.0), "duration count {count:?}: {text}");
    let bounds = [("le", "0.005"), ("le", "1.25"), ("le", "60.0"), ("le", "+Inf")];
    for bound in bounds {
        let labels: Vec<_> = posted.iter().copied().chain([bound]).collect();
        ensure!(histogram("bucket", &labels).is_some(), "no bucket {bound:?}: {text}");
    }
    ensure!(
        sample(&text, "apiserver_current_inflight_requests", &[("request_kind", "readOnly")])
            .is_some_and(|n| n >= 1.0)
    );
    ensure!(
        sample(&text, "apiserver_current_inflight_requests", &[("request_kind", "mutating")])
            .is_some()
    );
    let events = [("group", ""), ("version", "v1"), ("kind", "ConfigMap")];
    ensure!(sample(&text, "apiserver_watch_events_total", &events).is_some_and(|n| n >= 1.0));
    ensure!(sample(&text, "apiserver_watch_events_sizes_count", &events).is_some());
    // Admission, by plugin and by step.
    let step = [("operation", "CREATE"), ("rejected", "false"), ("type", "validate")];
    let steps = sample(&text, "apiserver_admission_step_admission_duration_seconds_count", &step);
    ensure!(steps.is_some_and(|n| n >= 1.0), "admission step: {text}");
    let plugin = [("name", "NamespaceLifecycle"), ("operation", "CREATE")];
    let plugin =
        sample(&text, "apiserver_admission_controller_admission_duration_seconds_count", &plugin);
    ensure!(plugin.is_some(), "admission controller: {text}");
    // The store, under upstream's names.
    let stored = [("operation", "create"), ("type", "configmaps")];
    ensure!(sample(&text, "etcd_request_duration_seconds_count", &stored).is_some(), "{text}");
    let names = s.ok(&["get", "configmaps", "-A", "-o", "name"]).await?;
    let objects = sample(&text, "apiserver_storage_objects", &[("resource", "configmaps")]);
    ensure!(objects == Some(names.lines().count() as f64), "{objects:?} for {names}");
    let deployments = [("resource", "deployments.apps")];
    ensure!(sample(&text, "apiserver_storage_objects", &deployments) == Some(0.0), "{text}");

    // A watch open now is long-running.
    let mut watching = s.watch("configmaps")?;
    watching.next().await?;
    let open = [("verb", "WATCH"), ("resource", "configmaps"), ("scope", "namespace")];
    let text = scrape_until(&s, &monitoring, "apiserver_longrunning_requests", &open).await?;
    let gauge = sample(&text, "apiserver_longrunning_requests", &open);
    ensure!(gauge.is_some_and(|n| n >= 1.0), "{gauge:?}");
    Ok(())
}

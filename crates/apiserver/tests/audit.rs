//! The audit log records who did what, at the policy's level, never a Secret's data, and
//! rotates by size.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::TestServer;
use keelson_apiserver::audit::{AuditConfig, Policy};
use serde_json::Value;

async fn events(path: &std::path::Path, wanted: impl Fn(&[Value]) -> bool) -> Result<Vec<Value>> {
    // The writer is asynchronous: wait for what the test expects to be there.
    for _ in 0..100 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let events: Vec<Value> =
            text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        if wanted(&events) {
            return Ok(events);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!(
        "the audit log never had what was expected: {}",
        std::fs::read_to_string(path).unwrap_or_default()
    )
}

/// A server whose audit log at `path` records every request at Metadata.
async fn audited_at_metadata(path: &std::path::Path) -> Result<TestServer> {
    let policy =
        Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n")
            .map_err(anyhow::Error::msg)?;
    TestServer::start_audited(AuditConfig {
        path: path.to_owned(),
        policy,
        max_size_bytes: 10 << 20,
        max_backups: 3,
        max_age_days: 30,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_recorded_at_metadata_and_secrets_never_in_full() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("logs/audit.log");
    // A policy that asks for everything: Secrets must still stay at Metadata.
    let policy = Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: None\n    nonResourceURLs: [\"/livez*\"]\n  - level: RequestResponse\n").map_err(anyhow::Error::msg)?;
    let s = TestServer::start_audited(AuditConfig {
        path: path.clone(),
        policy,
        max_size_bytes: 10 << 20,
        max_backups: 3,
        max_age_days: 30,
    })
    .await?;
    s.ok(&["create", "configmap", "audited", "--from-literal=k=v"]).await?;
    s.ok(&["create", "secret", "generic", "db", "--from-literal=password=hunter2-plaintext"])
        .await?;
    s.ok(&["get", "secret", "db", "-o", "json"]).await?;
    s.curl("GET", "/livez", None, "", false).await?;
    let events = events(&path, |e| {
        e.iter().filter(|e| e["objectRef"]["resource"] == "secrets").count() >= 2
    })
    .await?;

    let create = events
        .iter()
        .find(|e| {
            e["verb"] == "create"
                && e["objectRef"]["resource"] == "configmaps"
                && e["requestObject"]["metadata"]["name"] == "audited"
        })
        .context("no create event")?;
    ensure!(
        create["apiVersion"] == "audit.k8s.io/v1"
            && create["kind"] == "Event"
            && create["stage"] == "ResponseComplete"
    );
    ensure!(
        create["user"]["username"] == "system:admin"
            && create["objectRef"]["namespace"] == "default"
    );
    ensure!(create["responseStatus"]["code"] == 201 && create["level"] == "RequestResponse");
    ensure!(
        create["requestObject"]["metadata"]["name"] == "audited",
        "a RequestResponse event carries the body: {create}"
    );
    for secret in events.iter().filter(|e| e["objectRef"]["resource"] == "secrets") {
        ensure!(secret["level"] == "Metadata" && secret.get("requestObject").is_none(), "{secret}");
    }
    let text = std::fs::read_to_string(&path)?;
    ensure!(
        !text.contains("hunter2") && !text.contains("aHVudGVyMi1wbGFpbnRleHQ="),
        "a Secret's data is in the audit log"
    );
    ensure!(!events.iter().any(|e| e["requestURI"] == "/livez"), "health checks are not audited");
    use std::os::unix::fs::PermissionsExt;
    ensure!(std::fs::metadata(&path)?.permissions().mode() & 0o777 == 0o600);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_rotates_by_size_and_keeps_its_backups() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.log");
    // A backup from two months ago goes at the first rotation (--audit-log-maxage).
    let ancient = dir.path().join("audit-2000-01-01T00-00-00.000000.log");
    std::fs::write(&ancient, "{}\n")?;
    let touched =
        std::process::Command::new("touch").args(["-d", "60 days ago"]).arg(&ancient).status()?;
    ensure!(touched.success());
    let s = TestServer::start_audited(AuditConfig {
        path: path.clone(),
        policy: Policy::default(),
        max_size_bytes: 2048,
        max_backups: 5,
        max_age_days: 30,
    })
    .await?;
    for _ in 0..10 {
        s.curl("GET", "/api/v1/namespaces", None, "", true).await?;
    }
    events(&path, |_| !ancient.exists()).await?;
    drop(s);
    let s = TestServer::start_audited(AuditConfig {
        path: path.clone(),
        policy: Policy::default(),
        max_size_bytes: 2048,
        max_backups: 2,
        max_age_days: 30,
    })
    .await?;
    for _ in 0..30 {
        s.curl("GET", "/api/v1/namespaces", None, "", true).await?;
    }
    events(&path, |_| std::fs::read_dir(dir.path()).map(|d| d.count()).unwrap_or(0) == 3).await?;
    let names: Vec<String> = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    ensure!(
        names.iter().filter(|n| n.starts_with("audit-") && n.ends_with(".log")).count() == 2,
        "{names:?}"
    );
    ensure!(std::fs::metadata(&path)?.len() <= 2048);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_security_findings_annotate_the_audit_event() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("logs/audit.log");
    let s = TestServer::start_audited(AuditConfig {
        path: path.clone(),
        policy: Policy::default(),
        max_size_bytes: 10 << 20,
        max_backups: 3,
        max_age_days: 30,
    })
    .await?;
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"plain"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;
    let out = s.kubectl_in(&["create", "-f", "-"], Some(pod)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let is_create =
        |e: &serde_json::Value| e["verb"] == "create" && e["objectRef"]["resource"] == "pods";
    let events = events(&path, |e| e.iter().any(is_create)).await?;
    let create = events.iter().find(|e| is_create(e)).context("no pod create event")?;
    let annotations = &create["annotations"];
    ensure!(
        annotations["pod-security.kubernetes.io/enforce-policy"] == "baseline:latest",
        "{create}"
    );
    ensure!(
        annotations["pod-security.kubernetes.io/audit-violations"]
            .as_str()
            .is_some_and(|v| v.starts_with(r#"would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false"#)),
        "{create}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_uri_keeps_its_query_string() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.log");
    let s = audited_at_metadata(&path).await?;
    let uri = "/api/v1/namespaces/default/configmaps?limit=1&labelSelector=app%3Dweb";
    let (code, _) = s.curl("GET", uri, None, "", true).await?;
    ensure!(code == 200);
    // Other clients (the controllers) list too: find this one by its user and resource.
    let mine = |e: &Value| {
        e["verb"] == "list"
            && e["user"]["username"] == "system:admin"
            && e["objectRef"]["resource"] == "configmaps"
    };
    let events = events(&path, |e| e.iter().any(mine)).await?;
    let list = events.iter().find(|e| mine(e)).context("no list event")?;
    ensure!(list["requestURI"] == uri, "{list}");
    Ok(())
}

/// `kubectl --as=alice`: the event names the impersonator as `user` and alice as
/// `impersonatedUser`, carries the authorization decision and its reason, and a failure's
/// `responseStatus` is the Status it was answered with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonated_requests_name_both_users_and_the_decision() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.log");
    let s = audited_at_metadata(&path).await?;
    let denied = s.fails(&["get", "configmaps", "--as=alice", "--as-group=team"]).await?;
    ensure!(denied.contains("forbidden"), "{denied}");
    s.ok(&["get", "secrets"]).await?;
    let as_alice = |e: &Value| {
        e["impersonatedUser"]["username"] == "alice" && e["objectRef"]["resource"] == "configmaps"
    };
    let mine = |e: &Value| {
        e["verb"] == "list"
            && e["user"]["username"] == "system:admin"
            && e["objectRef"]["resource"] == "secrets"
    };
    let events = events(&path, |e| e.iter().any(as_alice) && e.iter().any(mine)).await?;
    let event = events.iter().find(|e| as_alice(e)).context("no impersonated event")?;
    ensure!(event["user"]["username"] == "system:admin", "{event}");
    ensure!(
        event["impersonatedUser"]["groups"] == serde_json::json!(["team", "system:authenticated"]),
        "{event}"
    );
    ensure!(event["annotations"]["authorization.k8s.io/decision"] == "forbid", "{event}");
    ensure!(event["annotations"].get("authorization.k8s.io/reason").is_some(), "{event}");
    let status = &event["responseStatus"];
    ensure!(
        status["code"] == 403
            && status["status"] == "Failure"
            && status["reason"] == "Forbidden"
            && status["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("configmaps is forbidden: User \"alice\"")),
        "{event}"
    );
    ensure!(status.get("kind").is_none(), "{event}");
    let allowed = events.iter().find(|e| mine(e)).context("no list event")?;
    ensure!(allowed["annotations"]["authorization.k8s.io/decision"] == "allow", "{allowed}");
    ensure!(allowed.get("impersonatedUser").is_none(), "{allowed}");
    ensure!(allowed["responseStatus"] == serde_json::json!({ "metadata": {}, "code": 200 }));
    Ok(())
}

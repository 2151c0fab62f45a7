//! API Priority and Fairness with the real kubectl: the bootstrap FlowSchemas and
//! PriorityLevelConfigurations of a 1.34 cluster, kept as upstream keeps them; requests
//! classified by them (the `X-Kubernetes-PF-*` response headers); the `Dangling`
//! condition; the `apiserver_flowcontrol_*` metrics.

mod common;

use std::time::Duration;

use anyhow::{Result, bail};
use common::TestServer;

/// Runs `check` until it returns true, for at most ten seconds.
async fn eventually<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if check().await? {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("{what}: not within ten seconds");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_new_cluster_has_upstreams_bootstrap_configuration() -> Result<()> {
    let s = TestServer::start().await?;
    let schemas = s.ok(&["get", "flowschemas", "-o", "name"]).await?;
    for name in [
        "exempt",
        "probes",
        "system-leader-election",
        "system-node-high",
        "system-nodes",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-system-service-accounts",
        "service-accounts",
        "global-default",
        "catch-all",
    ] {
        assert!(
            schemas.contains(&format!("flowschema.flowcontrol.apiserver.k8s.io/{name}\n")),
            "{name}: {schemas}"
        );
    }
    let levels = s.ok(&["get", "prioritylevelconfigurations", "-o", "name"]).await?;
    assert_eq!(levels.lines().count(), 8, "{levels}");
    let shares = s
        .ok(&[
            "get",
            "prioritylevelconfiguration",
            "workload-low",
            "-o",
            "jsonpath={.spec.limited.nominalConcurrencyShares}",
        ])
        .await?;
    assert_eq!(shares, "100");
    let annotation = s
        .ok(&[
            "get",
            "flowschema",
            "catch-all",
            "-o",
            r"jsonpath={.metadata.annotations.apf\.kubernetes\.io/autoupdate-spec}",
        ])
        .await?;
    assert_eq!(annotation, "true");
    // Every schema's level exists: none is dangling.
    eventually("Dangling=False on global-default", || async {
        let reason = s
            .ok(&[
                "get",
                "flowschema",
                "global-default",
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="Dangling")].reason}"#,
            ])
            .await?;
        Ok(reason == "Found")
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn responses_name_the_flow_schema_and_priority_level_they_ran_under() -> Result<()> {
    let s = TestServer::start().await?;
    let uid = |kind: &'static str, name: &'static str| {
        let s = &s;
        async move { s.ok(&["get", kind, name, "-o", "jsonpath={.metadata.uid}"]).await }
    };
    let (exempt_fs, exempt_pl) =
        (uid("flowschema", "exempt").await?, uid("prioritylevelconfiguration", "exempt").await?);
    // The admin is in system:masters: exempt.
    eventually("the admin's request classified as exempt", || async {
        let raw = s.get_raw("/api/v1/namespaces", &[]).await?;
        Ok(raw.header("X-Kubernetes-PF-FlowSchema-UID") == Some(exempt_fs.as_str())
            && raw.header("X-Kubernetes-PF-PriorityLevel-UID") == Some(exempt_pl.as_str()))
    })
    .await?;
    // Impersonated, the request is classified as the user it acts as (and refused by
    // RBAC after that, with the headers still on the answer).
    let global = uid("flowschema", "global-default").await?;
    let raw = s
        .get_raw(
            "/api/v1/namespaces",
            &[("Impersonate-User", "alice"), ("Impersonate-Group", "system:authenticated")],
        )
        .await?;
    assert_eq!(raw.status, 403);
    assert_eq!(raw.header("X-Kubernetes-PF-FlowSchema-UID"), Some(global.as_str()));
    let probes = uid("flowschema", "probes").await?;
    let raw = s.get_raw("/readyz", &[("Impersonate-User", "alice")]).await?;
    assert_eq!(raw.status, 200);
    assert_eq!(
        raw.header("X-Kubernetes-PF-FlowSchema-UID"),
        Some(exempt_fs.as_str()),
        "the admin's own probe"
    );
    assert_ne!(probes, exempt_fs);
    // The metrics count them, by level and schema; the seats are upstream's division.
    let metrics = s.ok(&["get", "--raw", "/metrics"]).await?;
    assert!(
        metrics.contains(r#"apiserver_flowcontrol_dispatched_requests_total{priority_level="exempt",flow_schema="exempt"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"apiserver_flowcontrol_nominal_limit_seats{priority_level="global-default"} 49"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"apiserver_flowcontrol_nominal_limit_seats{priority_level="catch-all"} 13"#
        ),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn bootstrap_objects_come_back_and_only_auto_updated_specs_are_reset() -> Result<()> {
    let s = TestServer::start().await?;
    // A mandatory object deleted is created again.
    s.ok(&["delete", "flowschema", "catch-all"]).await?;
    eventually("catch-all created again", || async {
        Ok(s.kubectl(&["get", "flowschema", "catch-all"]).await?.ok)
    })
    .await?;
    // A suggested object still marked auto-updated gets its spec back.
    let shares = r#"{"spec":{"limited":{"nominalConcurrencyShares":7}}}"#;
    s.ok(&["patch", "prioritylevelconfiguration", "workload-low", "--type=merge", "-p", shares])
        .await?;
    let jsonpath = "jsonpath={.spec.limited.nominalConcurrencyShares}";
    eventually("workload-low put back", || async {
        Ok(s.ok(&["get", "prioritylevelconfiguration", "workload-low", "-o", jsonpath]).await?
            == "100")
    })
    .await?;
    // Marked `false` by an administrator, the edit stays.
    s.ok(&[
        "annotate",
        "--overwrite",
        "prioritylevelconfiguration",
        "global-default",
        "apf.kubernetes.io/autoupdate-spec=false",
    ])
    .await?;
    s.ok(&["patch", "prioritylevelconfiguration", "global-default", "--type=merge", "-p", shares])
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        s.ok(&["get", "prioritylevelconfiguration", "global-default", "-o", jsonpath]).await?,
        "7"
    );
    Ok(())
}

#[tokio::test]
async fn a_flow_schema_naming_a_missing_level_is_dangling_until_it_exists() -> Result<()> {
    let s = TestServer::start().await?;
    let schema = r#"{"apiVersion":"flowcontrol.apiserver.k8s.io/v1","kind":"FlowSchema",
        "metadata":{"name":"mine"},
        "spec":{"priorityLevelConfiguration":{"name":"later"},"matchingPrecedence":500,
          "rules":[{"subjects":[{"kind":"User","user":{"name":"alice"}}],
            "nonResourceRules":[{"verbs":["*"],"nonResourceURLs":["*"]}]}]}}"#;
    let created = s.kubectl_in(&["create", "-f", "-"], Some(schema)).await?;
    assert!(created.ok, "{}", created.stderr);
    let condition = r#"jsonpath={.status.conditions[?(@.type=="Dangling")].status}/{.status.conditions[?(@.type=="Dangling")].reason}"#;
    eventually("mine dangling", || async {
        Ok(s.ok(&["get", "flowschema", "mine", "-o", condition]).await? == "True/NotFound")
    })
    .await?;
    let level = r#"{"apiVersion":"flowcontrol.apiserver.k8s.io/v1","kind":"PriorityLevelConfiguration",
        "metadata":{"name":"later"},
        "spec":{"type":"Limited","limited":{"nominalConcurrencyShares":5,"limitResponse":{"type":"Reject"}}}}"#;
    let created = s.kubectl_in(&["create", "-f", "-"], Some(level)).await?;
    assert!(created.ok, "{}", created.stderr);
    eventually("mine found", || async {
        Ok(s.ok(&["get", "flowschema", "mine", "-o", condition]).await? == "False/Found")
    })
    .await?;
    // Alice's requests now run under it.
    let mine = s.ok(&["get", "flowschema", "mine", "-o", "jsonpath={.metadata.uid}"]).await?;
    let raw_impersonated = s
        .get_raw(
            "/apis",
            &[("Impersonate-User", "alice"), ("Impersonate-Group", "system:authenticated")],
        )
        .await?;
    assert_eq!(raw_impersonated.header("X-Kubernetes-PF-FlowSchema-UID"), Some(mine.as_str()));
    Ok(())
}

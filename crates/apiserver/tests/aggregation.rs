//! The aggregation layer with the real kubectl: APIService validation.

mod common;

use anyhow::{Context, Result, ensure};
use common::TestServer;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_api_service_is_refused_with_upstreams_messages() -> Result<()> {
    let s = TestServer::start().await?;
    let bad = json!({
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": { "name": "v1.wrong.example.com" },
        "spec": {
            "group": "wardle.example.com",
            "version": "v1",
            "groupPriorityMinimum": 0,
            "versionPriority": 1001,
            "caBundle": "AAAA",
        },
    });
    let path = "/apis/apiregistration.k8s.io/v1/apiservices";
    let (code, body) =
        s.curl("POST", path, Some(&bad.to_string()), "application/json", true).await?;
    ensure!(code == 422, "{code}: {body}");
    let status: Value = serde_json::from_str(&body)?;
    let causes: Vec<(String, String)> = status["details"]["causes"]
        .as_array()
        .context("causes")?
        .iter()
        .map(|c| {
            (
                c["field"].as_str().unwrap_or("").to_owned(),
                c["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expect = [
        (
            "metadata.name",
            "Invalid value: \"v1.wrong.example.com\": must be `spec.version+\".\"+spec.group`: \"v1.wardle.example.com\"",
        ),
        ("spec.groupPriorityMinimum", "Invalid value: 0: must be positive and less than 20000"),
        ("spec.versionPriority", "Invalid value: 1001: must be positive and less than 1000"),
        ("spec.caBundle", "Invalid value: \"3 bytes\": local APIServices may not have a caBundle"),
    ];
    for (field, message) in expect {
        ensure!(
            causes.iter().any(|(f, m)| f == field && m == message),
            "{field}: {message} not in {causes:?}"
        );
    }
    // With a Service: its name and namespace are required; the port defaults to 443.
    let service = json!({
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": { "name": "v1.wardle.example.com" },
        "spec": {
            "group": "wardle.example.com", "version": "v1", "groupPriorityMinimum": 100,
            "versionPriority": 10, "service": { "namespace": "wardle" }, "insecureSkipTLSVerify": true,
        },
    });
    let out = s.kubectl_in(&["create", "-f", "-"], Some(&service.to_string())).await?;
    ensure!(!out.ok && out.stderr.contains("spec.service.name: Required value"), "{}", out.stderr);
    let mut fixed = service.clone();
    fixed["spec"]["service"]["name"] = json!("api");
    let out = s
        .kubectl_in(
            &["create", "-f", "-", "-o", "jsonpath={.spec.service.port}"],
            Some(&fixed.to_string()),
        )
        .await?;
    ensure!(out.ok && out.stdout == "443", "{} {}", out.stdout, out.stderr);
    Ok(())
}

//! The aggregation layer with the real kubectl: APIService validation, the front-proxy
//! trust in `kube-system/extension-apiserver-authentication`, and request-header
//! authentication from the front-proxy CA only.

mod common;

use std::path::PathBuf;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_proxy_trust_is_published_for_extension_servers() -> Result<()> {
    let s = TestServer::start().await?;
    let text = s
        .ok(&[
            "get",
            "configmap",
            "-n",
            "kube-system",
            "extension-apiserver-authentication",
            "-o",
            "json",
        ])
        .await?;
    let data = &serde_json::from_str::<Value>(&text)?["data"];
    let keys: Vec<&String> = data.as_object().context("data")?.keys().collect();
    ensure!(
        keys == [
            "client-ca-file",
            "requestheader-allowed-names",
            "requestheader-client-ca-file",
            "requestheader-extra-headers-prefix",
            "requestheader-group-headers",
            "requestheader-uid-headers",
            "requestheader-username-headers",
        ],
        "{keys:?}"
    );
    ensure!(data["client-ca-file"] == s.pki.ca_pem(), "{data}");
    ensure!(data["requestheader-client-ca-file"] == s.pki.front_proxy_ca_pem(), "{data}");
    ensure!(data["requestheader-allowed-names"] == "[\"front-proxy-client\"]", "{data}");
    ensure!(data["requestheader-username-headers"] == "[\"X-Remote-User\"]", "{data}");
    ensure!(data["requestheader-group-headers"] == "[\"X-Remote-Group\"]", "{data}");
    ensure!(data["requestheader-extra-headers-prefix"] == "[\"X-Remote-Extra-\"]", "{data}");
    Ok(())
}

/// A client certificate and key as files, for curl.
fn cert_files(
    s: &TestServer,
    name: &str,
    (cert, key): (String, String),
) -> Result<(PathBuf, PathBuf)> {
    let (crt_path, key_path) =
        (s.dir.path().join(format!("{name}.crt")), s.dir.path().join(format!("{name}.key")));
    std::fs::write(&crt_path, cert)?;
    std::fs::write(&key_path, key)?;
    Ok((crt_path, key_path))
}

/// Who the server takes a SelfSubjectReview's sender for, sending `headers` with the
/// certificate `cert`: the status code and the username and groups.
async fn who(s: &TestServer, cert: &(PathBuf, PathBuf), headers: &[&str]) -> Result<(u16, Value)> {
    let mut command = tokio::process::Command::new("curl");
    command
        .args(["--silent", "--show-error", "--max-time", "20", "-X", "POST", "--cacert"])
        .arg(&s.ca_file)
        .arg("--cert")
        .arg(&cert.0)
        .arg("--key")
        .arg(&cert.1)
        .args(["-H", "Content-Type: application/json", "--data"])
        .arg(r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#);
    for header in headers {
        command.arg("-H").arg(header);
    }
    command
        .args(["-w", "\n%{http_code}"])
        .arg(format!("{}/apis/authentication.k8s.io/v1/selfsubjectreviews", s.url));
    let output = command.output().await?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').context("no status code")?;
    let body: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    Ok((code.trim().parse()?, body["status"]["userInfo"].clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_headers_name_the_user_only_for_an_allowed_front_proxy() -> Result<()> {
    let s = TestServer::start().await?;
    let headers =
        ["X-Remote-User: alice", "X-Remote-Group: dev", "X-Remote-Extra-Example.com%2fteam: blue"];
    let proxy = cert_files(
        &s,
        "front-proxy-client",
        s.pki.issue_front_proxy_client("front-proxy-client")?,
    )?;
    let (code, user) = who(&s, &proxy, &headers).await?;
    ensure!(code == 201, "{code} {user}");
    ensure!(user["username"] == "alice", "{user}");
    ensure!(user["groups"] == json!(["dev", "system:authenticated"]), "{user}");
    ensure!(user["extra"]["example.com/team"] == json!(["blue"]), "{user}");
    // Without a user header, or with another common name, the front proxy is no one.
    let (code, _) = who(&s, &proxy, &[]).await?;
    ensure!(code == 401, "no user header: {code}");
    let other = cert_files(&s, "mallory", s.pki.issue_front_proxy_client("mallory")?)?;
    let (code, _) = who(&s, &other, &headers).await?;
    ensure!(code == 401, "a name not allowed: {code}");
    // The front-proxy CA names no user itself, even one in system:masters.
    let masters = cert_files(&s, "masters", s.pki.issue_front_proxy_client("system:admin")?)?;
    let (code, _) = who(&s, &masters, &[]).await?;
    ensure!(code == 401, "a front-proxy certificate as a user: {code}");
    // A cluster CA certificate names its user; request headers are ignored.
    let admin = cert_files(&s, "admin", s.pki.issue_client("system:admin", &["system:masters"])?)?;
    let (code, user) = who(&s, &admin, &headers).await?;
    ensure!(code == 201 && user["username"] == "system:admin", "{code} {user}");
    ensure!(user["groups"] == json!(["system:masters", "system:authenticated"]), "{user}");
    Ok(())
}

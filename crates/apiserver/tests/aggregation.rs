//! The aggregation layer with the real kubectl: a local APIService per built-in and
//! custom group-version, APIService validation, the front-proxy trust in
//! `kube-system/extension-apiserver-authentication`, request-header authentication
//! from the front-proxy CA only, and an extension API server in this process reached
//! through its Service's EndpointSlice — proxied, discovered, its availability followed.

mod common;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use base64::Engine;
use common::TestServer;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

/// Polls `check` every 100 ms until it returns `Some`, for at most 20 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = check().await? {
            return Ok(found);
        }
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_api_service_is_listed_for_every_group_version_served() -> Result<()> {
    let s = TestServer::start().await?;
    let table = s.ok(&["get", "apiservices"]).await?;
    let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
    ensure!(header == ["NAME", "SERVICE", "AVAILABLE", "AGE"], "{table}");
    for name in ["v1.", "v1.apps", "v1.batch", "v2.autoscaling", "v1.rbac.authorization.k8s.io"] {
        let row = table.lines().find(|l| l.split_whitespace().next() == Some(name));
        let cells: Vec<&str> =
            row.with_context(|| format!("no {name} in {table}"))?.split_whitespace().collect();
        ensure!(cells[1..3] == ["Local", "True"], "{name}: {cells:?}");
    }
    ensure!(
        !table.contains("apiregistration.k8s.io"),
        "the aggregator's own group has none: {table}"
    );
    let apps: Value =
        serde_json::from_str(&s.ok(&["get", "apiservice", "v1.apps", "-o", "json"]).await?)?;
    ensure!(
        apps["spec"]["groupPriorityMinimum"] == 17800 && apps["spec"]["versionPriority"] == 15,
        "{apps}"
    );
    ensure!(
        apps["metadata"]["labels"]["kube-aggregator.kubernetes.io/automanaged"] == "onstart",
        "{apps}"
    );
    let available = &apps["status"]["conditions"][0];
    ensure!(
        available["reason"] == "Local"
            && available["message"] == "Local APIServices are always available",
        "{apps}"
    );

    // A CRD's group-versions get theirs, and lose them with the CRD.
    s.establish_widgets().await?;
    let widgets = eventually("v1.example.com", || async {
        let out = s.kubectl(&["get", "apiservice", "v1.example.com", "-o", "json"]).await?;
        Ok(out.ok.then(|| serde_json::from_str::<Value>(&out.stdout)).transpose()?)
    })
    .await?;
    ensure!(
        widgets["spec"]["groupPriorityMinimum"] == 1000
            && widgets["spec"]["versionPriority"] == 100,
        "{widgets}"
    );
    ensure!(
        widgets["metadata"]["labels"]["kube-aggregator.kubernetes.io/automanaged"] == "true",
        "{widgets}"
    );
    s.ok(&["get", "apiservice", "v1beta1.example.com"]).await?;
    s.ok(&["delete", "crd", "widgets.example.com"]).await?;
    eventually("v1.example.com to go", || async {
        Ok((!s.kubectl(&["get", "apiservice", "v1.example.com"]).await?.ok).then_some(()))
    })
    .await
}

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

/// The sample extension server: `wardle.example.com/v1alpha1` with `flunders`, served
/// only to the front-proxy client; other paths echo who asked.
struct Wardle {
    port: u16,
    ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

async fn wardle(front_proxy_ca_pem: &str) -> Result<Wardle> {
    let (cert, key, ca_pem) = common::serving_certificate("api.wardle.svc")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls::pki_types::pem::PemObject::pem_slice_iter(front_proxy_ca_pem.as_bytes()) {
        roots.add(der?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let peer = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| {
                    keelson_pki::identity_from_der(c).map(|id| id.user).unwrap_or_default()
                });
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let peer = peer.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        Ok::<_, Infallible>(answer(&parts, &body, peer.as_deref()))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok(Wardle { port, ca_pem, task })
}

fn answer(
    req: &http::request::Parts,
    body: &[u8],
    peer: Option<&str>,
) -> http::Response<Full<bytes::Bytes>> {
    let all = |name: &str| -> Vec<&str> {
        req.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect()
    };
    let body = if peer != Some("front-proxy-client") {
        json!({ "kind": "Status", "code": 403 })
    } else if req.uri.path() == "/apis/wardle.example.com/v1alpha1" {
        json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "wardle.example.com/v1alpha1",
            "resources": [
                { "name": "flunders", "singularName": "flunder", "namespaced": true, "kind": "Flunder",
                  "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"] },
                { "name": "flunders/status", "singularName": "", "namespaced": true, "kind": "Flunder",
                  "verbs": ["get", "patch", "update"] },
            ],
        })
    } else {
        json!({
            "method": req.method.as_str(),
            "uri": req.uri.to_string(),
            "body": String::from_utf8_lossy(body),
            "user": all("x-remote-user"),
            "groups": all("x-remote-group"),
            "authorization": all("authorization"),
        })
    };
    let mut response = http::Response::new(Full::new(bytes::Bytes::from(body.to_string())));
    if peer != Some("front-proxy-client") {
        *response.status_mut() = http::StatusCode::FORBIDDEN;
    }
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

/// The `Available` condition of the wardle APIService: status and reason.
async fn wardle_available(s: &TestServer) -> Result<(String, String)> {
    let out = s.ok(&["get", "apiservice", "v1alpha1.wardle.example.com", "-o", "json"]).await?;
    let object: Value = serde_json::from_str(&out)?;
    let condition = object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Available")
        .cloned()
        .unwrap_or_default();
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    Ok((text(&condition["status"]), text(&condition["reason"])))
}

async fn wait_available(s: &TestServer, status: &str, reason: &str) -> Result<()> {
    let last = std::sync::Mutex::new((String::new(), String::new()));
    let waited = eventually(&format!("Available {status} ({reason})"), || async {
        let seen = wardle_available(s).await?;
        let done = seen.0 == status && seen.1 == reason;
        *last.lock().unwrap_or_else(|e| e.into_inner()) = seen;
        Ok(done.then_some(()))
    })
    .await;
    waited
        .with_context(|| format!("last seen: {:?}", last.lock().unwrap_or_else(|e| e.into_inner())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_server_is_proxied_discovered_and_watched_for_availability() -> Result<()> {
    let s = TestServer::start().await?;
    let backend = wardle(s.pki.front_proxy_ca_pem()).await?;
    let bundle = base64::engine::general_purpose::STANDARD.encode(&backend.ca_pem);
    let manifests = format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: wardle}}
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: wardle}}
spec:
  ports: [{{name: https, port: 443, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: api-1
  namespace: wardle
  labels: {{kubernetes.io/service-name: api}}
addressType: IPv4
endpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]
ports: [{{name: https, port: {port}, protocol: TCP}}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {{name: v1alpha1.wardle.example.com}}
spec:
  group: wardle.example.com
  version: v1alpha1
  groupPriorityMinimum: 1000
  versionPriority: 15
  service: {{namespace: wardle, name: api, port: 443}}
  caBundle: {bundle}
"#,
        port = backend.port
    );
    let out = s.kubectl_in(&["apply", "-f", "-"], Some(&manifests)).await?;
    ensure!(out.ok, "{}", out.stderr);
    wait_available(&s, "True", "Passed").await?;

    // Proxied, as the front-proxy client, the user in request headers.
    let resources = s.ok(&["get", "--raw", "/apis/wardle.example.com/v1alpha1"]).await?;
    ensure!(resources.contains("\"flunders\""), "{resources}");
    let echoed: Value = serde_json::from_str(
        &s.ok(&[
            "get",
            "--raw",
            "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders?limit=1",
        ])
        .await?,
    )?;
    ensure!(
        echoed["uri"] == "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders?limit=1",
        "{echoed}"
    );
    ensure!(echoed["user"] == json!(["system:admin"]), "{echoed}");
    ensure!(echoed["groups"] == json!(["system:masters", "system:authenticated"]), "{echoed}");
    ensure!(echoed["authorization"] == json!([]), "{echoed}");
    // Impersonation is applied first, and not forwarded.
    let as_bob: Value = serde_json::from_str(
        &s.ok(&[
            "get",
            "--raw",
            "/apis/wardle.example.com/v1alpha1/x",
            "--as=bob",
            "--as-group=system:masters",
        ])
        .await?,
    )?;
    ensure!(as_bob["user"] == json!(["bob"]), "{as_bob}");
    // The client's own credentials and user headers never reach it; bodies do.
    let (code, body) = s
        .curl_with(
            "POST",
            "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders",
            Some(r#"{"kind":"Flunder"}"#),
            "application/json",
            true,
            &[
                ("Authorization", "Bearer secret"),
                ("X-Remote-User", "mallory"),
                ("X-Remote-Group", "evil"),
            ],
        )
        .await?;
    let posted: Value = serde_json::from_str(&body)?;
    ensure!(code == 200 && posted["method"] == "POST", "{code} {body}");
    ensure!(posted["body"] == r#"{"kind":"Flunder"}"#, "{posted}");
    ensure!(
        posted["user"] == json!(["system:admin"]) && posted["authorization"] == json!([]),
        "{posted}"
    );
    ensure!(posted["groups"] == json!(["system:masters", "system:authenticated"]), "{posted}");

    // Discovered: the legacy group list, the group, and aggregated discovery.
    let versions = s.ok(&["api-versions"]).await?;
    ensure!(versions.lines().any(|l| l == "wardle.example.com/v1alpha1"), "{versions}");
    let group: Value =
        serde_json::from_str(&s.ok(&["get", "--raw", "/apis/wardle.example.com"]).await?)?;
    ensure!(group["preferredVersion"]["version"] == "v1alpha1", "{group}");
    let listed = s.ok(&["api-resources", "--api-group=wardle.example.com", "--no-headers"]).await?;
    ensure!(
        listed.split_whitespace().collect::<Vec<_>>()
            == ["flunders", "wardle.example.com/v1alpha1", "true", "Flunder"],
        "{listed}"
    );
    let table =
        s.ok(&["get", "apiservices", "v1alpha1.wardle.example.com", "--no-headers"]).await?;
    ensure!(
        table.split_whitespace().take(3).collect::<Vec<_>>()
            == ["v1alpha1.wardle.example.com", "wardle/api", "True"],
        "{table}"
    );

    // The backend goes: the discovery check fails, requests get 503.
    backend.task.abort();
    let _ = backend.task.await;
    wait_available(&s, "False", "FailedDiscoveryCheck").await?;
    let failed = s
        .fails(&["get", "--raw", "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders"])
        .await?;
    ensure!(failed.contains("the server is currently unable to handle the request"), "{failed}");
    // Without endpoints, then without a Service, the reason says so.
    s.ok(&["delete", "endpointslice", "-n", "wardle", "api-1"]).await?;
    wait_available(&s, "False", "EndpointsNotFound").await?;
    s.ok(&["delete", "service", "-n", "wardle", "api"]).await?;
    wait_available(&s, "False", "ServiceNotFound").await?;
    let table =
        s.ok(&["get", "apiservices", "v1alpha1.wardle.example.com", "--no-headers"]).await?;
    ensure!(table.contains("False (ServiceNotFound)"), "{table}");
    Ok(())
}

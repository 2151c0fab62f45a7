//! Requests an outside fuzzing run found to panic the server (connection dropped, no
//! answer, no audit entry) are answered as upstream answers them: 400 when the body does
//! not fit its type, 422 when it is invalid, 404 for what cannot exist, 413 for too much.

mod common;

use anyhow::{Result, ensure};
use common::TestServer;
use serde_json::{Value, json};

const JSON: &str = "application/json";

/// The status code and the `metav1.Status` a request answered.
async fn send(s: &TestServer, method: &str, path: &str, body: &Value) -> Result<(u16, Value)> {
    let (code, text) = s.curl(method, path, Some(&body.to_string()), JSON, true).await?;
    Ok((code, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

async fn expect(
    s: &TestServer,
    method: &str,
    path: &str,
    body: &Value,
    code: u16,
) -> Result<Value> {
    let (answered, status) = send(s, method, path, body).await?;
    ensure!(answered == code, "{method} {path} {body}: wanted {code}, got {answered}: {status}");
    Ok(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_whose_metadata_or_spec_is_not_an_object_are_400s() -> Result<()> {
    let s = TestServer::start().await?;
    let attributes = json!({"resourceAttributes": {"verb": "get", "resource": "pods"}});
    let reviews = [
        ("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "SelfSubjectAccessReview"),
        ("/apis/authorization.k8s.io/v1/subjectaccessreviews", "SubjectAccessReview"),
        (
            "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews",
            "LocalSubjectAccessReview",
        ),
        ("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", "SelfSubjectRulesReview"),
        ("/apis/authentication.k8s.io/v1/tokenreviews", "TokenReview"),
    ];
    for (path, kind) in reviews {
        let api_version = path.split('/').nth(2).map(|g| format!("{g}/v1")).unwrap_or_default();
        let review = |metadata: Value, spec: Value| json!({"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": spec});
        for body in [review(json!("x"), attributes.clone()), review(json!({}), json!("x"))] {
            let status = expect(&s, "POST", path, &body, 400).await?;
            ensure!(status["reason"] == "BadRequest", "{kind}: {status}");
            ensure!(
                status["message"].as_str().is_some_and(|m| m.contains("cannot be handled as a")),
                "{kind}: {status}"
            );
        }
    }
    // A well-formed review is still answered.
    let fine = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "metadata": null, "spec": attributes});
    let answer = expect(&s, "POST", reviews[0].0, &fine, 201).await?;
    ensure!(answer["status"]["allowed"] == true, "{answer}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_whose_spec_or_metadata_is_misshapen_are_400s() -> Result<()> {
    let s = TestServer::start().await?;
    let path = "/api/v1/namespaces/default/serviceaccounts/default/token";
    for body in [
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": "x"}),
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "metadata": 1,
            "spec": {}}),
    ] {
        let status = expect(&s, "POST", path, &body, 400).await?;
        ensure!(status["reason"] == "BadRequest", "{status}");
    }
    let fine = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": null}});
    let issued = expect(&s, "POST", path, &fine, 201).await?;
    ensure!(issued["status"]["token"].as_str().is_some_and(|t| !t.is_empty()), "{issued}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_whose_delete_options_are_not_an_object_is_a_400() -> Result<()> {
    let s = TestServer::start().await?;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    expect(&s, "POST", "/api/v1/namespaces/default/pods", &pod, 201).await?;
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": "web"}, "deleteOptions": "x"});
    let path = "/api/v1/namespaces/default/pods/web/eviction";
    let status = expect(&s, "POST", path, &eviction, 400).await?;
    ensure!(status["reason"] == "BadRequest", "{status}");
    // The pod is still there, and a proper eviction still works.
    expect(&s, "GET", "/api/v1/namespaces/default/pods/web", &Value::Null, 200).await?;
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": "web"}, "deleteOptions": {"gracePeriodSeconds": 0}});
    expect(&s, "POST", path, &eviction, 201).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_with_string_annotations_over_last_applied_is_a_400() -> Result<()> {
    let s = TestServer::start().await?;
    let config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: \"1\"\n";
    let out = s.kubectl_in(&["apply", "-f", "-"], Some(config)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let applied = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  annotations: x\n";
    let path = "/api/v1/namespaces/default/configmaps/cfg?fieldManager=kubectl";
    let (code, body) =
        s.curl("PATCH", path, Some(applied), "application/apply-patch+yaml", true).await?;
    ensure!(code == 400, "apply answered {code}: {body}");
    // Its metadata being a string is refused the same way.
    let applied = "apiVersion: v1\nkind: ConfigMap\nmetadata: x\n";
    let (code, body) =
        s.curl("PATCH", path, Some(applied), "application/apply-patch+yaml", true).await?;
    ensure!(code == 400, "apply answered {code}: {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generate_name_cut_inside_a_character_is_a_422() -> Result<()> {
    let s = TestServer::start().await?;
    let prefix = format!("{}é", "a".repeat(57));
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"generateName": prefix}});
    let status = expect(&s, "POST", "/api/v1/namespaces/default/configmaps", &config, 422).await?;
    ensure!(status["reason"] == "Invalid", "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_that_overflow_are_ignored_even_for_anonymous_requests() -> Result<()> {
    let s = TestServer::start().await?;
    for timeout in ["18446744073709551615m", "307445734561825861m", "99999999999999999999h"] {
        let (code, body) =
            s.curl("GET", &format!("/version?timeout={timeout}"), None, "", false).await?;
        ensure!(code == 200, "anonymous /version answered {code}: {body}");
        let path = format!("/api/v1/namespaces/default/configmaps?timeout={timeout}");
        let (code, body) = s.curl("GET", &path, None, "", false).await?;
        ensure!(code == 401, "anonymous list answered {code}: {body}");
        let (code, body) = s.curl("GET", &path, None, "", true).await?;
        ensure!(code == 200, "list answered {code}: {body}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_namespaces_with_a_nul_are_not_found_or_invalid() -> Result<()> {
    let s = TestServer::start().await?;
    let none = Value::Null;
    for path in [
        "/api/v1/namespaces/default/configmaps/%00",
        "/api/v1/namespaces/default/configmaps/a%00b",
        "/api/v1/namespaces/%00/configmaps/x",
        "/api/v1/namespaces/%00",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/%00",
    ] {
        let status = expect(&s, "GET", path, &none, 404).await?;
        ensure!(status["reason"] == "NotFound", "{path}: {status}");
        expect(&s, "DELETE", path, &none, 404).await?;
    }
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "%00"}});
    expect(&s, "PUT", "/api/v1/namespaces/default/configmaps/%00", &config, 404).await?;
    expect(&s, "POST", "/api/v1/namespaces/%00/configmaps", &config, 404).await?;
    // Created with such a name: invalid, as any other name that breaks the rules.
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a\u{0}"}});
    expect(&s, "POST", "/api/v1/namespaces/default/configmaps", &config, 422).await?;
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "a\u{0}b"}});
    expect(&s, "POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", &role, 422).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_beyond_the_limits_are_413s() -> Result<()> {
    let s = TestServer::start().await?;
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
        "data": {"a": "x".repeat(1024)}});
    expect(&s, "POST", "/api/v1/namespaces/default/configmaps", &config, 201).await?;
    let path = "/api/v1/namespaces/default/configmaps/cfg";
    let patch = |ops: Vec<Value>| Value::Array(ops).to_string();
    let test = json!({"op": "test", "path": "/data/a", "value": "x".repeat(1024)});
    let (code, body) = s
        .curl(
            "PATCH",
            path,
            Some(&patch(vec![
                json!({"op": "test", "path": "/kind", "value": "ConfigMap"});
                10_001
            ])),
            "application/json-patch+json",
            true,
        )
        .await?;
    ensure!(code == 413, "10,001 operations answered {code}: {body}");
    ensure!(body.contains("The allowed maximum operations in a JSON patch is 10000, got 10001"));
    // Copies that would grow the object to 4 MB from a small body.
    let copies = (0..4000)
        .map(|i| json!({"op": "copy", "from": "/data/a", "path": format!("/data/k{i}")}))
        .collect();
    let (code, body) =
        s.curl("PATCH", path, Some(&patch(copies)), "application/json-patch+json", true).await?;
    ensure!(code == 413, "copies answered {code}: {body}");
    let (code, body) = s
        .curl("PATCH", path, Some(&patch(vec![test])), "application/json-patch+json", true)
        .await?;
    ensure!(code == 200, "a small patch answered {code}: {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_quantities_are_refused_with_upstreams_message() -> Result<()> {
    let s = TestServer::start().await?;
    let objects = [
        (
            "/api/v1/namespaces/default/resourcequotas",
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
                "spec": {"hard": {"cpu": "é"}}}),
            "spec.hard.cpu",
        ),
        (
            "/api/v1/namespaces/default/limitranges",
            json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "l"},
                "spec": {"limits": [{"type": "Container", "max": {"memory": "0x10"}}]}}),
            "spec.limits[0].max.memory",
        ),
        (
            "/api/v1/namespaces/default/persistentvolumeclaims",
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1_000"}}}}),
            "spec.resources.requests.storage",
        ),
        (
            "/api/v1/namespaces/default/pods",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "busybox",
                    "resources": {"limits": {"cpu": "0x10"}}}]}}),
            "spec.containers[0].resources.limits.cpu",
        ),
    ];
    for (path, object, field) in objects {
        let status = expect(&s, "POST", path, &object, 400).await?;
        let message = status["message"].as_str().unwrap_or("");
        ensure!(
            message.contains(
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
            ) && message.contains(field),
            "{path}: {status}"
        );
    }
    Ok(())
}

/// A client that stalls before its identity is known — in the TLS handshake, or in a
/// request's headers — is disconnected after 32 seconds (kube-apiserver's
/// `ReadHeaderTimeout`) instead of holding its connection for minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_and_headers_are_cut_off() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start().await?;
    let port = s.running.as_ref().map(|r| r.local_addr.port()).unwrap_or_default();
    let started = std::time::Instant::now();
    let limit = std::time::Duration::from_secs(50);
    // Connects and never says a word.
    let silent = async {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(limit, tcp.read(&mut byte)).await;
        anyhow::Ok((read.is_ok(), started.elapsed()))
    };
    // Completes the handshake, then sends half of a request's headers.
    let halting = async {
        let mut client = tokio::process::Command::new("openssl")
            .args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{port}"), "-CAfile"])
            .arg(&s.ca_file)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdin = client.stdin.take().ok_or_else(|| anyhow::anyhow!("no stdin"))?;
        stdin.write_all(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\n").await?;
        stdin.flush().await?;
        let ended = tokio::time::timeout(limit, client.wait()).await;
        drop(stdin);
        anyhow::Ok((ended.is_ok(), started.elapsed()))
    };
    let ((silent_closed, silent_after), (halting_closed, halting_after)) =
        tokio::try_join!(silent, halting)?;
    ensure!(silent_closed, "a connection without a handshake stayed open for {limit:?}");
    ensure!(halting_closed, "a connection with unfinished headers stayed open for {limit:?}");
    for after in [silent_after, halting_after] {
        ensure!(after >= std::time::Duration::from_secs(30), "closed too early: {after:?}");
    }
    // The server still serves everyone else.
    let out = s.kubectl(&["get", "--raw", "/version"]).await?;
    ensure!(out.ok, "{}", out.stderr);
    Ok(())
}

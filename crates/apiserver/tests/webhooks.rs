//! Admission webhooks with the real kubectl and a real HTTPS webhook server in this
//! process: denials with upstream's message and the webhook's warnings, mutation by JSON
//! patch, namespace selectors, deletes seen with their old object, and failure policies
//! for a webhook that is down or too slow.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use base64::Engine;
use common::TestServer;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

/// What the webhook server was asked, for assertions.
type Seen = Arc<Mutex<Vec<Value>>>;

/// An HTTPS webhook server on a random port; returns its address and CA bundle (PEM).
async fn webhook_server(seen: Seen) -> Result<(SocketAddr, String)> {
    let (cert, key, ca_pem) = common::serving_certificate("127.0.0.1")?;
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let seen = seen.clone();
                    async move { Ok::<_, Infallible>(answer(req, seen).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok((addr, ca_pem))
}

async fn answer(req: http::Request<Incoming>, seen: Seen) -> http::Response<Full<bytes::Bytes>> {
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let review: Value = serde_json::from_slice(&body).unwrap_or_default();
    let request = &review["request"];
    seen.lock().unwrap_or_else(|e| e.into_inner()).push(review.clone());
    let uid = request["uid"].clone();
    let labels = |o: &Value| o["metadata"]["labels"].clone();
    let response = match path.as_str() {
        "/validate" => {
            let object = if request["operation"] == "DELETE" {
                &request["oldObject"]
            } else {
                &request["object"]
            };
            if labels(object)["deny"] == "true"
                || (request["operation"] == "DELETE" && labels(object)["protect"] == "true")
            {
                json!({ "uid": uid, "allowed": false, "status": { "code": 403, "message": "no thanks" } })
            } else {
                json!({ "uid": uid, "allowed": true, "warnings": ["be careful"] })
            }
        }
        "/mutate" => {
            let patch = if request["object"]["metadata"]["labels"].is_object() {
                json!([{ "op": "add", "path": "/metadata/labels/mutated", "value": "yes" }])
            } else {
                json!([{ "op": "add", "path": "/metadata/labels", "value": { "mutated": "yes" } }])
            };
            let patch = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
            json!({ "uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": patch })
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            json!({ "uid": uid, "allowed": true })
        }
        _ => json!({ "uid": "someone-else", "allowed": true }),
    };
    let body = json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response });
    http::Response::new(Full::new(bytes::Bytes::from(body.to_string())))
}

fn configuration(
    kind: &str,
    name: &str,
    hooks: &[(&str, String, &str, &str, Value)],
    ca: &str,
) -> String {
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca);
    let webhooks: Vec<Value> = hooks
        .iter()
        .map(|(hook, url, resource, policy, extra)| {
            let mut webhook = json!({
                "name": hook,
                "clientConfig": { "url": url, "caBundle": bundle },
                "rules": [{ "operations": ["CREATE", "UPDATE", "DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": [resource] }],
                "failurePolicy": policy,
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 2,
            });
            for (k, v) in extra.as_object().into_iter().flatten() {
                webhook[k] = v.clone();
            }
            webhook
        })
        .collect();
    json!({ "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": { "name": name }, "webhooks": webhooks })
        .to_string()
}

fn configmap(name: &str, namespace: &str, labels: Value) -> String {
    json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "namespace": namespace, "labels": labels } })
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_admit_mutate_and_deny() -> Result<()> {
    let s = TestServer::start().await?;
    let seen: Seen = Arc::default();
    let (addr, ca) = webhook_server(seen.clone()).await?;
    let url = |path: &str| format!("https://{addr}{path}");
    let skip = json!({ "namespaceSelector": { "matchExpressions": [{ "key": "skip-webhooks", "operator": "DoesNotExist" }] } });
    let mut spare = skip.clone();
    spare["matchConditions"] = json!([{ "name": "not-spared", "expression": "object == null || object.metadata.name != 'spared'" }]);
    let validating = configuration(
        "ValidatingWebhookConfiguration",
        "policy",
        &[("deny.example.com", url("/validate"), "configmaps", "Fail", spare)],
        &ca,
    );
    let mutating = configuration(
        "MutatingWebhookConfiguration",
        "labeller",
        &[("label.example.com", url("/mutate"), "configmaps", "Fail", skip)],
        &ca,
    );
    for config in [&validating, &mutating] {
        let out = s.kubectl_in(&["create", "-f", "-"], Some(config)).await?;
        ensure!(out.ok, "{}", out.stderr);
    }
    // The webhooks see configurations through the watch cache: wait for the denial.
    let mut denied = String::new();
    for attempt in 0..100 {
        let out = s
            .kubectl_in(
                &["create", "-f", "-"],
                Some(&configmap(&format!("bad{attempt}"), "default", json!({ "deny": "true" }))),
            )
            .await?;
        if !out.ok {
            denied = out.stderr;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(
        denied.contains(r#"admission webhook "deny.example.com" denied the request: no thanks"#),
        "{denied}"
    );
    let out = s
        .kubectl_in(
            &["create", "-f", "-"],
            Some(&configmap("good", "default", json!({ "app": "x" }))),
        )
        .await?;
    ensure!(out.ok && out.stderr.contains("Warning: be careful"), "{}", out.stderr);
    let labels = s.ok(&["get", "cm", "good", "-o", "jsonpath={.metadata.labels}"]).await?;
    ensure!(labels == r#"{"app":"x","mutated":"yes"}"#, "{labels}");
    let review = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .rev()
        .find(|r| r["request"]["name"] == "good")
        .cloned();
    let review = review.unwrap_or_default();
    ensure!(
        review["request"]["userInfo"]["username"] == "system:admin"
            && review["request"]["operation"] == "CREATE"
            && review["request"]["resource"]
                == json!({ "group": "", "version": "v1", "resource": "configmaps" })
            && review["request"]["namespace"] == "default",
        "{review}"
    );

    // Match conditions (CEL) keep the webhook out of a request.
    let out = s
        .kubectl_in(
            &["create", "-f", "-"],
            Some(&configmap("spared", "default", json!({ "deny": "true" }))),
        )
        .await?;
    ensure!(out.ok, "{}", out.stderr);

    // A namespace the selector excludes is not sent to the webhooks.
    s.ok(&["create", "namespace", "quiet"]).await?;
    s.ok(&["label", "namespace", "quiet", "skip-webhooks=true"]).await?;
    let out = s
        .kubectl_in(
            &["create", "-f", "-"],
            Some(&configmap("bad", "quiet", json!({ "deny": "true" }))),
        )
        .await?;
    ensure!(out.ok, "{}", out.stderr);

    // Deletes are reviewed with the object being deleted.
    let out = s
        .kubectl_in(
            &["create", "-f", "-"],
            Some(&configmap("keep", "default", json!({ "protect": "true" }))),
        )
        .await?;
    ensure!(out.ok, "{}", out.stderr);
    let refused = s.fails(&["delete", "cm", "keep"]).await?;
    ensure!(
        refused.contains(r#"admission webhook "deny.example.com" denied the request: no thanks"#),
        "{refused}"
    );
    ensure!(s.ok(&["get", "cm", "keep", "-o", "name"]).await?.trim() == "configmap/keep");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_or_slow_webhooks_follow_their_failure_policy() -> Result<()> {
    let s = TestServer::start().await?;
    let (addr, ca) = webhook_server(Arc::default()).await?;
    let hooks = [
        (
            "down.example.com",
            "https://127.0.0.1:1/validate".to_owned(),
            "secrets",
            "Fail",
            json!({}),
        ),
        (
            "slow.example.com",
            format!("https://{addr}/slow"),
            "services",
            "Fail",
            json!({ "timeoutSeconds": 1 }),
        ),
        ("liar.example.com", format!("https://{addr}/liar"), "serviceaccounts", "Fail", json!({})),
        (
            "optional.example.com",
            "https://127.0.0.1:1/validate".to_owned(),
            "persistentvolumeclaims",
            "Ignore",
            json!({}),
        ),
    ];
    let config = configuration("ValidatingWebhookConfiguration", "fragile", &hooks, &ca);
    let out = s.kubectl_in(&["create", "-f", "-"], Some(&config)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let mut refused = String::new();
    for attempt in 0..100 {
        let out = s
            .kubectl(&["create", "secret", "generic", &format!("s{attempt}"), "--from-literal=a=b"])
            .await?;
        if !out.ok {
            refused = out.stderr;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(
        refused.contains("Internal error occurred: failed calling webhook \"down.example.com\"")
            && refused.contains("dial tcp 127.0.0.1:1"),
        "{refused}"
    );
    let slow = s.fails(&["create", "service", "clusterip", "web", "--tcp=80"]).await?;
    ensure!(
        slow.contains(r#"failed calling webhook "slow.example.com": context deadline exceeded"#),
        "{slow}"
    );
    let liar = s.fails(&["create", "serviceaccount", "robot"]).await?;
    ensure!(
        liar.contains(r#"failed calling webhook "liar.example.com": expected response.uid="#),
        "{liar}"
    );
    let claim = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": { "name": "data" },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } },
    });
    let out = s.kubectl_in(&["create", "-f", "-"], Some(&claim.to_string())).await?;
    ensure!(out.ok, "failurePolicy Ignore lets the write through: {}", out.stderr);
    // The configurations themselves are never sent to webhooks: they can be removed.
    let out = s.kubectl(&["delete", "validatingwebhookconfiguration", "fragile"]).await?;
    if !out.ok {
        bail!("{}", out.stderr);
    }
    Ok(())
}

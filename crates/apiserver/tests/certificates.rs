//! CertificateSigningRequests with the real kubectl: a node joining with a bootstrap token
//! gets its client certificate approved and signed and then is `system:node:<name>`; a
//! serving certificate is approved with `kubectl certificate approve` and signed;
//! requests that break their signer's rules fail; approving or signing without the
//! `signers` permission is forbidden; validation answers as upstream does.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use common::{Out, TestServer};
use serde_json::{Value, json};
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A fresh key and a PEM request for `cn` in `orgs` with the given SANs.
fn request(cn: &str, orgs: &[&str], sans: &[&str]) -> Result<(String, String)> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    for san in sans {
        params.subject_alt_names.push(match san.parse() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => rcgen::SanType::DnsName((*san).try_into()?),
        });
    }
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    for org in orgs {
        params.distinguished_name.push(rcgen::DnType::OrganizationName, *org);
    }
    Ok((params.serialize_request(&key)?.pem()?, key.serialize_pem()))
}

fn csr_object(name: &str, pem: &str, signer: &str, usages: &[&str]) -> Value {
    json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": { "name": name },
        "spec": { "request": B64.encode(pem), "signerName": signer, "usages": usages },
    })
}

/// Creates an object from a file (kubectl as `kubeconfig`).
async fn create_as(s: &TestServer, kubeconfig: &std::path::Path, object: &Value) -> Result<Out> {
    let file =
        s.dir.path().join(format!("{}.json", object["metadata"]["name"].as_str().context("name")?));
    std::fs::write(&file, object.to_string())?;
    s.kubectl_as(kubeconfig, &["create", "-f", &file.to_string_lossy()]).await
}

/// A kubeconfig with a bearer token.
fn token_kubeconfig(s: &TestServer, token: &str) -> Result<PathBuf> {
    let path = s.dir.path().join("bootstrap.kubeconfig");
    let config = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "default",
        "clusters": [{ "name": "default", "cluster": { "server": s.url, "certificate-authority": s.ca_file } }],
        "users": [{ "name": "default", "user": { "token": token } }],
        "contexts": [{ "name": "default", "context": { "cluster": "default", "user": "default" } }],
    });
    std::fs::write(&path, config.to_string())?;
    Ok(path)
}

/// A kubeconfig with a client certificate and key (PEM).
fn cert_kubeconfig(s: &TestServer, name: &str, cert: &str, key: &str) -> Result<PathBuf> {
    let path = s.dir.path().join(format!("{name}.kubeconfig"));
    let config = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "default",
        "clusters": [{ "name": "default", "cluster": { "server": s.url, "certificate-authority": s.ca_file } }],
        "users": [{ "name": "default", "user": {
            "client-certificate-data": B64.encode(cert), "client-key-data": B64.encode(key),
        } }],
        "contexts": [{ "name": "default", "context": { "cluster": "default", "user": "default" } }],
    });
    std::fs::write(&path, config.to_string())?;
    Ok(path)
}

/// The stored request.
async fn csr(s: &TestServer, name: &str) -> Result<Value> {
    Ok(serde_json::from_str(&s.ok(&["get", "csr", name, "-o", "json"]).await?)?)
}

/// Waits until the request is issued or failed; returns it.
async fn settled(s: &TestServer, name: &str) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let object = csr(s, name).await?;
        let failed = object["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Failed"));
        if failed || object["status"]["certificate"].is_string() {
            return Ok(object);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{name} was neither issued nor failed: {object}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The issued certificate, PEM and DER.
fn issued(object: &Value) -> Result<(String, Vec<u8>)> {
    let pem = String::from_utf8(
        B64.decode(object["status"]["certificate"].as_str().context("no certificate")?)?,
    )?;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    Ok((pem, B64.decode(body)?))
}

fn condition(object: &Value, kind: &str) -> Value {
    object["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind).cloned())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_with_a_bootstrap_token() -> Result<()> {
    let s = TestServer::start().await?;
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
        "metadata": { "name": "bootstrap-token-abcdef", "namespace": "kube-system" },
        "stringData": {
            "token-id": "abcdef", "token-secret": "0123456789abcdef",
            "usage-bootstrap-authentication": "true",
        },
    });
    s.kubectl_in(&["create", "-f", "-"], Some(&secret.to_string())).await?;
    let bootstrap = token_kubeconfig(&s, "abcdef.0123456789abcdef")?;

    let (pem, key) = request("system:node:node1", &["system:nodes"], &[])?;
    let mut object = csr_object(
        "node-client",
        &pem,
        "kubernetes.io/kube-apiserver-client-kubelet",
        &["digital signature", "client auth"],
    );
    // Who asks is who sent it, never what the body says.
    object["spec"]["username"] = json!("system:admin");
    object["spec"]["groups"] = json!(["system:masters"]);
    object["spec"]["expirationSeconds"] = json!(86400);
    let out = create_as(&s, &bootstrap, &object).await?;
    ensure!(out.ok, "{}", out.stderr);

    let object = settled(&s, "node-client").await?;
    ensure!(object["spec"]["username"] == "system:bootstrap:abcdef", "{object}");
    ensure!(
        object["spec"]["groups"] == json!(["system:bootstrappers", "system:authenticated"]),
        "{object}"
    );
    let approved = condition(&object, "Approved");
    ensure!(
        approved["reason"] == "AutoApproved"
            && approved["message"]
                == "Auto approving kubelet client certificate after SubjectAccessReview."
            && approved["lastUpdateTime"].is_string(),
        "{object}"
    );

    let (cert_pem, der) = issued(&object)?;
    let (_, cert) = X509Certificate::from_der(&der)?;
    ensure!(
        cert.subject().to_string() == "CN=system:node:node1, O=system:nodes",
        "{}",
        cert.subject()
    );
    let ca_der = {
        let text = std::fs::read_to_string(&s.ca_file)?;
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        B64.decode(body)?
    };
    let (_, ca) = X509Certificate::from_der(&ca_der)?;
    ensure!(cert.issuer() == ca.subject(), "issuer {}", cert.issuer());
    let eku = cert.extended_key_usage()?.context("no extended key usage")?.value;
    ensure!(eku.client_auth && !eku.server_auth);
    ensure!(!cert.is_ca());
    let validity = cert.validity();
    let lifetime = validity.not_after.timestamp() - validity.not_before.timestamp();
    ensure!(lifetime == 86400 + 300, "lifetime {lifetime}");

    let node = cert_kubeconfig(&s, "node1", &cert_pem, &key)?;
    let out = s
        .kubectl_as(
            &node,
            &[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
            ],
        )
        .await?;
    ensure!(
        out.ok && out.stdout == r#"system:node:node1 ["system:nodes","system:authenticated"]"#,
        "{} {}",
        out.stdout,
        out.stderr
    );

    // The node renews its own certificate: approved as selfnodeclient.
    let (pem, _) = request("system:node:node1", &["system:nodes"], &[])?;
    let object = csr_object(
        "node-client-renewal",
        &pem,
        "kubernetes.io/kube-apiserver-client-kubelet",
        &["digital signature", "key encipherment", "client auth"],
    );
    let out = create_as(&s, &node, &object).await?;
    ensure!(out.ok, "{}", out.stderr);
    let object = settled(&s, "node-client-renewal").await?;
    ensure!(
        condition(&object, "Approved")["message"]
            == "Auto approving self kubelet client certificate after SubjectAccessReview.",
        "{object}"
    );
    let (_, der) = issued(&object)?;
    let (_, cert) = X509Certificate::from_der(&der)?;
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    ensure!(lifetime == 90 * 86400 + 300, "lifetime {lifetime}");

    // A bootstrap token may not approve anything itself.
    let (pem, _) = request("system:node:node2", &["system:nodes"], &["node2"])?;
    let object = csr_object(
        "node2-serving",
        &pem,
        "kubernetes.io/kubelet-serving",
        &["digital signature", "server auth"],
    );
    ensure!(create_as(&s, &bootstrap, &object).await?.ok);
    let out = s.kubectl_as(&bootstrap, &["certificate", "approve", "node2-serving"]).await?;
    ensure!(
        !out.ok
            && out
                .stderr
                .contains(r#"cannot update resource "certificatesigningrequests/approval""#),
        "{}",
        out.stderr
    );
    Ok(())
}

with_each_kubectl!(
    serving_certificates_are_approved_by_an_administrator,
    approving_and_signing_need_the_signer_permission,
);

async fn serving_certificates_are_approved_by_an_administrator(s: TestServer) -> Result<()> {
    let (pem, _) = request("system:node:node1", &["system:nodes"], &["node1", "10.0.0.5"])?;
    let object = csr_object(
        "node1-serving",
        &pem,
        "kubernetes.io/kubelet-serving",
        &["digital signature", "key encipherment", "server auth"],
    );
    s.kubectl_in(&["create", "-f", "-"], Some(&object.to_string())).await?;
    let pending = s.ok(&["get", "csr", "node1-serving", "--no-headers"]).await?;
    ensure!(
        pending.contains("kubernetes.io/kubelet-serving") && pending.contains("Pending"),
        "{pending}"
    );

    let out = s.ok(&["certificate", "approve", "node1-serving"]).await?;
    ensure!(
        out.trim() == "certificatesigningrequest.certificates.k8s.io/node1-serving approved",
        "{out}"
    );
    let object = settled(&s, "node1-serving").await?;
    let (_, der) = issued(&object)?;
    let (_, cert) = X509Certificate::from_der(&der)?;
    let san = cert.subject_alternative_name()?.context("no SAN")?.value;
    ensure!(
        san.general_names
            == [GeneralName::DNSName("node1"), GeneralName::IPAddress(&[10, 0, 0, 5])],
        "{:?}",
        san.general_names
    );
    let eku = cert.extended_key_usage()?.context("no extended key usage")?.value;
    ensure!(eku.server_auth && !eku.client_auth);
    let listed = s.ok(&["get", "csr", "node1-serving", "--no-headers"]).await?;
    ensure!(listed.contains("Approved,Issued"), "{listed}");

    // Approved and Denied are exclusive and permanent (kubectl refuses to try; the
    // server refuses too).
    let out = s.kubectl(&["certificate", "deny", "node1-serving"]).await?;
    ensure!(!out.ok && out.stderr.contains("already Approved"), "{}", out.stderr);
    let path = "/apis/certificates.k8s.io/v1/certificatesigningrequests/node1-serving/approval";
    let mut denied = csr(&s, "node1-serving").await?;
    denied["status"]["conditions"]
        .as_array_mut()
        .context("conditions")?
        .push(json!({ "type": "Denied", "status": "True", "reason": "Changed", "message": "no" }));
    let (code, body) =
        s.curl("PUT", path, Some(&denied.to_string()), "application/json", true).await?;
    ensure!(
        code == 422 && body.contains("Approved and Denied conditions are mutually exclusive"),
        "{code} {body}"
    );
    let mut removed = csr(&s, "node1-serving").await?;
    removed["status"]["conditions"] = json!([]);
    let (code, body) =
        s.curl("PUT", path, Some(&removed.to_string()), "application/json", true).await?;
    ensure!(
        code == 422 && body.contains(r#"updates may not remove a condition of type \"Approved\""#),
        "{code} {body}"
    );
    // The certificate is set once.
    let out = s
        .kubectl(&[
            "patch",
            "csr",
            "node1-serving",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"certificate":null}}"#,
        ])
        .await?;
    ensure!(
        !out.ok && out.stderr.contains("updates may not modify existing certificate content"),
        "{}",
        out.stderr
    );
    // The spec never changes.
    s.ok(&["label", "csr", "node1-serving", "team=a"]).await?;
    let object = csr(&s, "node1-serving").await?;
    ensure!(object["spec"]["signerName"] == "kubernetes.io/kubelet-serving");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_break_the_signers_rules_fail() -> Result<()> {
    let s = TestServer::start().await?;
    // A forged subject: a node client certificate in system:masters.
    let (pem, _) = request("system:node:node1", &["system:masters"], &[])?;
    let forged = csr_object(
        "forged",
        &pem,
        "kubernetes.io/kube-apiserver-client-kubelet",
        &["digital signature", "client auth"],
    );
    // Wrong usages for a client certificate.
    let (pem, _) = request("alice", &["team"], &[])?;
    let serving = csr_object(
        "alice-serving",
        &pem,
        "kubernetes.io/kube-apiserver-client",
        &["digital signature", "server auth"],
    );
    for object in [&forged, &serving] {
        s.kubectl_in(&["create", "-f", "-"], Some(&object.to_string())).await?;
    }
    s.ok(&["certificate", "approve", "forged", "alice-serving"]).await?;
    for (name, message) in [
        ("forged", "subject organization is not system:nodes"),
        ("alice-serving", "invalid usage for client certificate: server auth"),
    ] {
        let object = settled(&s, name).await?;
        let failed = condition(&object, "Failed");
        ensure!(
            failed["status"] == "True"
                && failed["reason"] == "SignerValidationFailure"
                && failed["message"] == message
                && object["status"]["certificate"].is_null(),
            "{object}"
        );
    }
    let listed = s.ok(&["get", "csr", "forged", "--no-headers"]).await?;
    ensure!(listed.contains("Approved,Failed"), "{listed}");

    // CertificateSubjectRestriction.
    let (pem, _) = request("mallory", &["system:masters"], &[])?;
    let object =
        csr_object("masters", &pem, "kubernetes.io/kube-apiserver-client", &["client auth"]);
    let out = s.kubectl_in(&["create", "-f", "-"], Some(&object.to_string())).await?;
    ensure!(
        !out.ok && out.stderr.contains(r#"certificatesigningrequests.certificates.k8s.io "masters" is forbidden: use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"#),
        "{}",
        out.stderr
    );

    // Validation.
    let mut object = csr_object("bad", "not a request", "kubernetes.io/legacy-unknown", &[]);
    object["spec"]["expirationSeconds"] = json!(60);
    let out = s.kubectl_in(&["create", "-f", "-"], Some(&object.to_string())).await?;
    ensure!(!out.ok, "{}", out.stdout);
    for expected in [
        r#"The CertificateSigningRequest "bad" is invalid"#,
        "spec.request: Invalid value: []byte{0x6e, 0x6f, 0x74,",
        ": PEM block type must be CERTIFICATE REQUEST",
        "spec.usages: Required value: usages must be provided",
        r#"spec.signerName: Invalid value: "kubernetes.io/legacy-unknown": the legacy signerName is not allowed via this API version"#,
        "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)",
    ] {
        ensure!(out.stderr.contains(expected), "missing {expected:?} in {}", out.stderr);
    }
    Ok(())
}

async fn approving_and_signing_need_the_signer_permission(s: TestServer) -> Result<()> {
    let (pem, _) = request("alice", &["team"], &[])?;
    let object = csr_object("custom", &pem, "example.com/x", &["client auth"]);
    s.kubectl_in(&["create", "-f", "-"], Some(&object.to_string())).await?;
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": "csr-editor" },
        "rules": [
            { "apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"], "verbs": ["get", "list"] },
            { "apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests/approval", "certificatesigningrequests/status"], "verbs": ["get", "update", "patch"] },
        ],
    });
    s.kubectl_in(&["create", "-f", "-"], Some(&role.to_string())).await?;
    s.ok(&["create", "clusterrolebinding", "bob-csr", "--clusterrole=csr-editor", "--user=bob"])
        .await?;
    let bob = s.kubeconfig_for("bob", &[])?;

    let out = s.kubectl_as(&bob, &["certificate", "approve", "custom"]).await?;
    ensure!(
        !out.ok && out.stderr.contains(r#"certificatesigningrequests.certificates.k8s.io "custom" is forbidden: user not permitted to approve requests with signerName "example.com/x""#),
        "{}",
        out.stderr
    );
    let cert = B64.encode(std::fs::read_to_string(&s.ca_file)?);
    let patch = json!({ "status": { "certificate": cert } }).to_string();
    let sign = ["patch", "csr", "custom", "--subresource=status", "--type=merge", "-p", &patch];
    let out = s.kubectl_as(&bob, &sign).await?;
    ensure!(
        !out.ok
            && out
                .stderr
                .contains(r#"user not permitted to sign requests with signerName "example.com/x""#),
        "{}",
        out.stderr
    );

    // With approve and sign on the signer's domain, bob is the signer of example.com/x.
    let signer = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": "example-signer" },
        "rules": [{ "apiGroups": ["certificates.k8s.io"], "resources": ["signers"], "resourceNames": ["example.com/*"], "verbs": ["approve", "sign"] }],
    });
    s.kubectl_in(&["create", "-f", "-"], Some(&signer.to_string())).await?;
    s.ok(&[
        "create",
        "clusterrolebinding",
        "bob-signer",
        "--clusterrole=example-signer",
        "--user=bob",
    ])
    .await?;
    let out = s.kubectl_as(&bob, &["certificate", "approve", "custom"]).await?;
    ensure!(out.ok, "{}", out.stderr);
    let out = s.kubectl_as(&bob, &sign).await?;
    ensure!(out.ok, "{}", out.stderr);
    let listed = s.ok(&["get", "csr", "custom", "--no-headers"]).await?;
    ensure!(listed.contains("Approved,Issued"), "{listed}");
    Ok(())
}

//! Bearer tokens and impersonation with the real kubectl: service account tokens from
//! `kubectl create token` (bound to a pod, rejected once it is gone, tampered or
//! foreign tokens refused), the service account admission's token volume, TokenReview,
//! the issuer's OIDC discovery, bootstrap tokens, static tokens (`--token-auth-file`),
//! and `--as`/`--as-group`.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use common::{Out, TestServer};
use serde_json::{Value, json};

/// kubectl with only a bearer token (no client certificate).
async fn with_token(s: &TestServer, token: &str, args: &[&str]) -> Result<Out> {
    let empty = s.dir.path().join("empty.kubeconfig");
    std::fs::write(&empty, "apiVersion: v1\nkind: Config\n")?;
    let ca = s.ca_file.to_string_lossy().into_owned();
    let mut full = vec!["--server", &s.url, "--certificate-authority", &ca, "--token", token];
    full.extend_from_slice(args);
    s.kubectl_as(&empty, &full).await
}

/// A JWT's header (0) or claims (1), unverified.
fn segment(token: &str, index: usize) -> Result<Value> {
    use base64::Engine;
    let part = token.split('.').nth(index).context("a JWT has three parts")?;
    Ok(serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part)?)?)
}

/// The default service account of `default` exists a moment after start.
async fn token_for(s: &TestServer, args: &[&str]) -> Result<String> {
    let mut full = vec!["create", "token"];
    full.extend_from_slice(args);
    for _ in 0..50 {
        let out = s.kubectl(&full).await?;
        if out.ok {
            return Ok(out.stdout.trim().to_owned());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("kubectl {} never worked", full.join(" "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens() -> Result<()> {
    let s = TestServer::start().await?;
    let token = token_for(&s, &["default"]).await?;
    let whoami = with_token(&s, &token, &["auth", "whoami", "-o", "json"]).await?;
    ensure!(whoami.ok, "{}", whoami.stderr);
    let review: Value = serde_json::from_str(&whoami.stdout)?;
    let info = &review["status"]["userInfo"];
    ensure!(info["username"] == "system:serviceaccount:default:default", "{info}");
    ensure!(
        info["groups"]
            == json!([
                "system:serviceaccounts",
                "system:serviceaccounts:default",
                "system:authenticated"
            ]),
        "{info}"
    );
    ensure!(
        info["extra"]["authentication.kubernetes.io/credential-id"][0]
            .as_str()
            .is_some_and(|c| c.starts_with("JTI=")),
        "{info}"
    );
    // A service account may do nothing it was not granted.
    let denied = with_token(&s, &token, &["get", "pods"]).await?;
    ensure!(
        !denied.ok
            && denied.stderr.contains(
                r#"User "system:serviceaccount:default:default" cannot list resource "pods""#
            ),
        "{}",
        denied.stderr
    );
    s.ok(&[
        "create",
        "rolebinding",
        "sa-view",
        "--clusterrole=view",
        "--serviceaccount=default:default",
    ])
    .await?;
    let mut allowed = false;
    for _ in 0..50 {
        if with_token(&s, &token, &["get", "pods"]).await?.ok {
            allowed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(allowed, "the binding never took effect");

    // Tampered, truncated and foreign tokens are 401s.
    let (head, signature) = token.rsplit_once('.').context("a JWT")?;
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{head}.{flipped}{}", &signature[1..]);
    let foreign = {
        let other = tempfile::tempdir()?;
        let key = keelson_pki::ServiceAccountKey::load_or_create(other.path())?;
        let tokens = keelson_apiserver::authn::serviceaccount::Tokens::new(
            keelson_apiserver::authn::serviceaccount::Config {
                key,
                issuer: keelson_apiserver::authn::serviceaccount::DEFAULT_ISSUER.into(),
                audiences: vec![],
                root_ca_pem: String::new(),
            },
        )
        .map_err(anyhow::Error::msg)?;
        let claims: keelson_apiserver::authn::serviceaccount::Claims =
            serde_json::from_value(segment(&token, 1)?)?;
        tokens.sign(&claims).map_err(anyhow::Error::msg)?
    };
    for bad in [tampered.as_str(), head, foreign.as_str(), "abcdef.0123456789abcdef"] {
        let out = with_token(&s, bad, &["get", "pods"]).await?;
        ensure!(
            !out.ok && out.stderr.contains("You must be logged in to the server (Unauthorized)"),
            "{}",
            out.stderr
        );
    }

    // A token bound to a pod dies with it.
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "holder" },
        "spec": { "containers": [{ "name": "c", "image": "busybox" }] },
    });
    let created = s.kubectl_in(&["create", "-f", "-"], Some(&pod.to_string())).await?;
    ensure!(created.ok, "{}", created.stderr);
    let bound = token_for(
        &s,
        &[
            "default",
            "--bound-object-kind=Pod",
            "--bound-object-name=holder",
            "--audience=https://kubernetes.default.svc.cluster.local",
        ],
    )
    .await?;
    ensure!(with_token(&s, &bound, &["get", "pods"]).await?.ok);
    s.ok(&["delete", "pod", "holder", "--grace-period=0", "--force"]).await?;
    let out = with_token(&s, &bound, &["get", "pods"]).await?;
    ensure!(!out.ok && out.stderr.contains("Unauthorized"), "{}", out.stderr);
    let wrong = s
        .kubectl(&[
            "create",
            "token",
            "default",
            "--bound-object-kind=Pod",
            "--bound-object-name=holder",
        ])
        .await?;
    ensure!(!wrong.ok && wrong.stderr.contains(r#"pods "holder" not found"#), "{}", wrong.stderr);
    let short = s.kubectl(&["create", "token", "default", "--duration=5m"]).await?;
    ensure!(
        !short.ok && short.stderr.contains("spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes"),
        "{}",
        short.stderr
    );
    let missing = s.kubectl(&["create", "token", "ghost"]).await?;
    ensure!(
        !missing.ok && missing.stderr.contains(r#"serviceaccounts "ghost" not found"#),
        "{}",
        missing.stderr
    );

    // A token outlives neither its service account nor a new one of the same name.
    s.ok(&["create", "serviceaccount", "robot"]).await?;
    let robot = token_for(&s, &["robot"]).await?;
    ensure!(with_token(&s, &robot, &["auth", "whoami"]).await?.ok);
    s.ok(&["delete", "serviceaccount", "robot"]).await?;
    let out = with_token(&s, &robot, &["auth", "whoami"]).await?;
    ensure!(!out.ok && out.stderr.contains("Unauthorized"), "{}", out.stderr);
    s.ok(&["create", "serviceaccount", "robot"]).await?;
    let out = with_token(&s, &robot, &["auth", "whoami"]).await?;
    ensure!(!out.ok && out.stderr.contains("Unauthorized"), "{}", out.stderr);

    // TokenReview says who a token is.
    let review = json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": { "token": token } });
    let out =
        s.review(&review.to_string(), "{.status.authenticated} {.status.user.username}").await?;
    ensure!(
        out.ok && out.stdout == "true system:serviceaccount:default:default",
        "{} {}",
        out.stdout,
        out.stderr
    );
    let review = json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": { "token": tampered } });
    let out = s.review(&review.to_string(), "{.status.authenticated}").await?;
    ensure!(out.ok && out.stdout.is_empty(), "{} {}", out.stdout, out.stderr);

    // The issuer's discovery documents, readable by every service account.
    let config =
        with_token(&s, &token, &["get", "--raw", "/.well-known/openid-configuration"]).await?;
    ensure!(config.ok, "{}", config.stderr);
    let config: Value = serde_json::from_str(&config.stdout)?;
    ensure!(config["issuer"] == "https://kubernetes.default.svc.cluster.local", "{config}");
    ensure!(
        config["jwks_uri"] == "https://kubernetes.default.svc.cluster.local/openid/v1/jwks",
        "{config}"
    );
    let jwks: Value = serde_json::from_str(&s.ok(&["get", "--raw", "/openid/v1/jwks"]).await?)?;
    let kid = jwks["keys"][0]["kid"].as_str().context("a key id")?;
    let header = segment(&token, 0)?;
    ensure!(header["kid"] == kid && header["alg"] == "ES256", "{header} vs {kid}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_their_service_account_and_token_volume() -> Result<()> {
    let s = TestServer::start().await?;
    let pod = |name: &str, extra: Value| {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name },
            "spec": { "containers": [{ "name": "c", "image": "busybox" }] },
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            pod["spec"][k] = v.clone();
        }
        pod.to_string()
    };
    let out = s.kubectl_in(&["create", "-f", "-"], Some(&pod("plain", json!({})))).await?;
    ensure!(out.ok, "{}", out.stderr);
    let spec: Value =
        serde_json::from_str(&s.ok(&["get", "pod", "plain", "-o", "jsonpath={.spec}"]).await?)?;
    ensure!(spec["serviceAccountName"] == "default", "{spec}");
    let volume = spec["volumes"][0]["name"].as_str().unwrap_or("");
    ensure!(volume.starts_with("kube-api-access-"), "{spec}");
    ensure!(
        spec["containers"][0]["volumeMounts"][0]
            == json!({ "name": volume, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount" }),
        "{spec}"
    );
    let out = s
        .kubectl_in(
            &["create", "-f", "-"],
            Some(&pod("opted-out", json!({ "automountServiceAccountToken": false }))),
        )
        .await?;
    ensure!(out.ok, "{}", out.stderr);
    let volumes = s.ok(&["get", "pod", "opted-out", "-o", "jsonpath={.spec.volumes}"]).await?;
    ensure!(volumes.is_empty(), "{volumes}");
    let out = s
        .kubectl_in(
            &["create", "-f", "-"],
            Some(&pod("ghostly", json!({ "serviceAccountName": "ghost" }))),
        )
        .await?;
    ensure!(
        !out.ok && out.stderr.contains(r#"pods "ghostly" is forbidden: error looking up service account default/ghost: serviceaccount "ghost" not found"#),
        "{}",
        out.stderr
    );
    // Every namespace gets its default account and the cluster CA.
    s.ok(&["create", "namespace", "team"]).await?;
    let mut published = String::new();
    for _ in 0..50 {
        published = s.ok(&["get", "sa,cm", "-n", "team", "-o", "name"]).await?;
        if published.contains("serviceaccount/default")
            && published.contains("configmap/kube-root-ca.crt")
        {
            let ca = s
                .ok(&[
                    "get",
                    "cm",
                    "kube-root-ca.crt",
                    "-n",
                    "team",
                    "-o",
                    "jsonpath={.data.ca\\.crt}",
                ])
                .await?;
            ensure!(ca.trim() == std::fs::read_to_string(&s.ca_file)?.trim(), "{ca}");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("namespace team never got its account and CA: {published}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_tokens_and_impersonation() -> Result<()> {
    let s = TestServer::start().await?;
    let secret = |id: &str, expiration: &str| {
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
            "metadata": { "name": format!("bootstrap-token-{id}"), "namespace": "kube-system" },
            "stringData": {
                "token-id": id, "token-secret": "0123456789abcdef", "expiration": expiration,
                "usage-bootstrap-authentication": "true", "auth-extra-groups": "system:bootstrappers:keelson:default-node-token",
            },
        })
        .to_string()
    };
    s.kubectl_in(&["create", "-f", "-"], Some(&secret("abcdef", "2099-01-01T00:00:00Z"))).await?;
    s.kubectl_in(&["create", "-f", "-"], Some(&secret("old123", "2001-01-01T00:00:00Z"))).await?;
    // stringData is stored as data, as upstream's conversion does.
    let stored = s
        .ok(&[
            "get",
            "secret",
            "bootstrap-token-abcdef",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.data.token-id} {.stringData}",
        ])
        .await?;
    ensure!(stored.trim() == "YWJjZGVm", "{stored}");
    let out = with_token(
        &s,
        "abcdef.0123456789abcdef",
        &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}"],
    )
    .await?;
    ensure!(
        out.ok
            && out.stdout
                == r#"system:bootstrap:abcdef ["system:bootstrappers","system:bootstrappers:keelson:default-node-token","system:authenticated"]"#,
        "{} {}",
        out.stdout,
        out.stderr
    );
    for bad in ["old123.0123456789abcdef", "abcdef.0123456789abcdee"] {
        let out = with_token(&s, bad, &["auth", "whoami"]).await?;
        ensure!(!out.ok && out.stderr.contains("Unauthorized"), "{bad}: {}", out.stderr);
    }

    // An administrator may act as anyone; bob may not.
    let out = s
        .kubectl(&[
            "auth",
            "whoami",
            "--as=alice",
            "--as-group=team",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ])
        .await?;
    ensure!(
        out.ok && out.stdout == r#"alice ["team","system:authenticated"]"#,
        "{} {}",
        out.stdout,
        out.stderr
    );
    let out = s.kubectl(&["get", "pods", "--as=alice"]).await?;
    ensure!(
        !out.ok && out.stderr.contains(r#"User "alice" cannot list resource "pods""#),
        "{}",
        out.stderr
    );
    let out = s
        .kubectl(&[
            "auth",
            "whoami",
            "--as=system:serviceaccount:default:default",
            "-o",
            "jsonpath={.status.userInfo.groups}",
        ])
        .await?;
    ensure!(
        out.ok
            && out.stdout
                == r#"["system:serviceaccounts","system:serviceaccounts:default","system:authenticated"]"#,
        "{} {}",
        out.stdout,
        out.stderr
    );
    let bob = s.kubeconfig_for("bob", &[])?;
    let out = s.kubectl_as(&bob, &["get", "pods", "--as=alice"]).await?;
    ensure!(
        !out.ok && out.stderr.contains(r#"users "alice" is forbidden: User "bob" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        "{}",
        out.stderr
    );
    Ok(())
}

/// kube-apiserver's `--token-auth-file`: each token is its user, uid and groups (and
/// `system:authenticated`); a token not in the file is a 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_tokens_from_a_token_file() -> Result<()> {
    let s = TestServer::start_with_token_file(
        "admin-token,admin,admin,system:masters\nview-token,viewer,7,\"readers,other\"\n",
    )
    .await?;
    let who =
        "jsonpath={.status.userInfo.username} {.status.userInfo.uid} {.status.userInfo.groups}";
    let out = with_token(&s, "admin-token", &["auth", "whoami", "-o", who]).await?;
    ensure!(out.ok, "{}", out.stderr);
    ensure!(
        out.stdout == r#"admin admin ["system:masters","system:authenticated"]"#,
        "{}",
        out.stdout
    );
    let out = with_token(&s, "admin-token", &["get", "namespaces", "-o", "name"]).await?;
    ensure!(out.ok && out.stdout.contains("namespace/default"), "{} {}", out.stdout, out.stderr);
    let out = with_token(&s, "view-token", &["auth", "whoami", "-o", who]).await?;
    ensure!(
        out.stdout == r#"viewer 7 ["readers","other","system:authenticated"]"#,
        "{} {}",
        out.stdout,
        out.stderr
    );
    // Authenticated, and RBAC decides.
    let out = with_token(&s, "view-token", &["get", "secrets"]).await?;
    ensure!(
        !out.ok && out.stderr.contains("User \"viewer\" cannot list resource \"secrets\""),
        "{}",
        out.stderr
    );
    let out = with_token(&s, "not-in-the-file", &["get", "namespaces"]).await?;
    ensure!(!out.ok && out.stderr.contains("Unauthorized"), "{}", out.stderr);
    Ok(())
}

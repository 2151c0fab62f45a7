//! Authorization with the real kubectl: RBAC grants and 403s with upstream's messages,
//! `kubectl auth can-i` (with `--list`), escalation prevention, role aggregation, the
//! access reviews and the Node authorizer.

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use common::TestServer;

/// Retries a kubectl run as `kubeconfig` until it succeeds: RBAC follows its watch
/// caches, so a grant takes effect a moment after it is written.
async fn eventually_ok(s: &TestServer, kubeconfig: &Path, args: &[&str]) -> Result<String> {
    let mut last = String::new();
    for _ in 0..100 {
        let out = s.kubectl_as(kubeconfig, args).await?;
        if out.ok {
            return Ok(out.stdout);
        }
        last = out.stderr;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("kubectl {} kept failing: {last}", args.join(" "))
}

async fn fails_as(s: &TestServer, kubeconfig: &Path, args: &[&str]) -> Result<String> {
    let out = s.kubectl_as(kubeconfig, args).await?;
    ensure!(!out.ok, "kubectl {} should have failed: {}", args.join(" "), out.stdout);
    Ok(out.stderr)
}

async fn rbac_grants_and_denies(s: TestServer) -> Result<()> {
    let bob = s.kubeconfig_for("bob", &[])?;
    // Discovery and whoami need no grant: system:discovery and system:basic-user.
    let resources = s.kubectl_as(&bob, &["api-resources", "--api-group=apps"]).await?;
    ensure!(resources.ok && resources.stdout.contains("deployments"), "{}", resources.stderr);
    let whoami = s.kubectl_as(&bob, &["auth", "whoami"]).await?;
    ensure!(whoami.ok && whoami.stdout.contains("bob"), "{} {}", whoami.stdout, whoami.stderr);

    let denied = fails_as(&s, &bob, &["get", "pods"]).await?;
    ensure!(
        denied.contains(r#"Error from server (Forbidden): pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "default""#),
        "{denied}"
    );
    let denied = fails_as(&s, &bob, &["get", "nodes"]).await?;
    ensure!(
        denied.contains(r#"cannot list resource "nodes" in API group "" at the cluster scope"#),
        "{denied}"
    );
    let no = s.kubectl_as(&bob, &["auth", "can-i", "list", "pods"]).await?;
    ensure!(!no.ok && no.stdout.trim() == "no", "{} {}", no.stdout, no.stderr);

    s.ok(&["create", "role", "reader", "--verb=get,list,watch", "--resource=pods"]).await?;
    s.ok(&["create", "rolebinding", "bob-reads", "--role=reader", "--user=bob"]).await?;
    eventually_ok(&s, &bob, &["get", "pods"]).await?;
    let yes = s.kubectl_as(&bob, &["auth", "can-i", "list", "pods"]).await?;
    ensure!(yes.ok && yes.stdout.trim() == "yes", "{} {}", yes.stdout, yes.stderr);
    for args in [
        ["auth", "can-i", "delete", "pods"].as_slice(),
        &["auth", "can-i", "list", "pods", "-n", "kube-system"],
        &["auth", "can-i", "get", "pods", "--subresource=log"],
        &["auth", "can-i", "list", "secrets"],
    ] {
        let no = s.kubectl_as(&bob, args).await?;
        ensure!(!no.ok && no.stdout.trim() == "no", "{args:?}: {} {}", no.stdout, no.stderr);
    }
    let list = s.kubectl_as(&bob, &["auth", "can-i", "--list"]).await?;
    ensure!(list.ok, "{}", list.stderr);
    let pods_row = list.stdout.lines().find(|l| l.starts_with("pods ")).unwrap_or("");
    ensure!(pods_row.contains("[get list watch]"), "{}", list.stdout);
    ensure!(
        list.stdout.lines().any(|l| l.contains("selfsubjectaccessreviews.authorization.k8s.io")),
        "{}",
        list.stdout
    );
    ensure!(list.stdout.lines().any(|l| l.contains("[/api/*]")), "{}", list.stdout);

    // Administrators ask about others with SubjectAccessReview.
    let review = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"bob","resourceAttributes":{"namespace":"default","verb":"watch","resource":"pods"}}}"#;
    let out = s.review(review, "{.status.allowed} {.status.reason}").await?;
    ensure!(
        out.ok
            && out.stdout
                == r#"true RBAC: allowed by RoleBinding "bob-reads/default" of Role "reader" to User "bob""#,
        "{} {}",
        out.stdout,
        out.stderr
    );
    // …which bob may not.
    let no = s
        .kubectl_as(&bob, &["auth", "can-i", "create", "subjectaccessreviews.authorization.k8s.io"])
        .await?;
    ensure!(!no.ok && no.stdout.trim() == "no", "{} {}", no.stdout, no.stderr);
    let local = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"LocalSubjectAccessReview","metadata":{"namespace":"default"},"spec":{"user":"bob","resourceAttributes":{"namespace":"other","verb":"get","resource":"pods"}}}"#;
    let out = s.kubectl_in(&["create", "-f", "-"], Some(local)).await?;
    ensure!(
        !out.ok && out.stderr.contains("spec.resourceAttributes.namespace: Invalid value: \"other\": must match metadata.namespace"),
        "{}",
        out.stderr
    );

    // A binding to a role that does not exist grants nothing and says why.
    s.ok(&["create", "rolebinding", "bob-ghost", "--clusterrole=ghost", "--user=bob"]).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let denied = fails_as(&s, &bob, &["get", "secrets"]).await?;
    ensure!(
        denied.contains(r#"RBAC: clusterrole.rbac.authorization.k8s.io "ghost" not found"#),
        "{denied}"
    );
    Ok(())
}

async fn escalation_is_prevented(s: TestServer) -> Result<()> {
    let eve = s.kubeconfig_for("eve", &["team"])?;
    // Eve may manage roles and bindings in default, and read pods.
    s.ok(&[
        "create",
        "role",
        "rbac-manager",
        "--verb=create,update,patch,get",
        "--resource=roles,rolebindings",
    ])
    .await?;
    s.ok(&["create", "role", "pod-reader", "--verb=get,list", "--resource=pods"]).await?;
    s.ok(&["create", "rolebinding", "eve-manages", "--role=rbac-manager", "--group=team"]).await?;
    s.ok(&["create", "rolebinding", "eve-reads", "--role=pod-reader", "--user=eve"]).await?;
    eventually_ok(&s, &eve, &["get", "pods"]).await?;

    // Binding a stronger role than she holds.
    let denied = fails_as(
        &s,
        &eve,
        &["create", "rolebinding", "eve-admin", "--clusterrole=admin", "--user=eve"],
    )
    .await?;
    ensure!(
        denied.contains(r#"rolebindings.rbac.authorization.k8s.io "eve-admin" is forbidden: user "eve" (groups=["team" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#)
            && denied.contains(r#"{APIGroups:["apps"], Resources:["deployments"], Verbs:["create" "delete" "deletecollection" "patch" "update" "get" "list" "watch"]}"#),
        "{denied}"
    );
    // Writing a role with rules she lacks.
    let denied =
        fails_as(&s, &eve, &["create", "role", "deleter", "--verb=get,delete", "--resource=pods"])
            .await?;
    ensure!(
        denied.contains(r#"roles.rbac.authorization.k8s.io "deleter" is forbidden"#)
            && denied.contains(r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#)
            && !denied.contains(r#"Verbs:["get"#),
        "{denied}"
    );
    // Rules she holds she may grant.
    let out =
        s.kubectl_as(&eve, &["create", "role", "subset", "--verb=get", "--resource=pods"]).await?;
    ensure!(out.ok, "{}", out.stderr);
    let out = s
        .kubectl_as(
            &eve,
            &["create", "rolebinding", "carol-subset", "--role=subset", "--user=carol"],
        )
        .await?;
    ensure!(out.ok, "{}", out.stderr);
    // Binding a role that does not exist is a 404.
    let denied =
        fails_as(&s, &eve, &["create", "rolebinding", "x", "--clusterrole=ghost", "--user=eve"])
            .await?;
    ensure!(
        denied.contains(r#"clusterroles.rbac.authorization.k8s.io "ghost" not found"#),
        "{denied}"
    );
    // Widening a role she may update, beyond her own rules.
    let patch = r#"{"rules":[{"apiGroups":[""],"resources":["secrets"],"verbs":["get"]}]}"#;
    let denied =
        fails_as(&s, &eve, &["patch", "role", "subset", "--type=merge", "-p", patch]).await?;
    ensure!(denied.contains("attempting to grant RBAC permissions not currently held"), "{denied}");

    // With `bind` on the admin role, she may bind it.
    s.ok(&[
        "create",
        "role",
        "admin-binder",
        "--verb=bind",
        "--resource=clusterroles",
        "--resource-name=admin",
    ])
    .await?;
    s.ok(&["create", "rolebinding", "eve-binds", "--role=admin-binder", "--user=eve"]).await?;
    eventually_ok(
        &s,
        &eve,
        &["create", "rolebinding", "eve-admin", "--clusterrole=admin", "--user=eve"],
    )
    .await?;
    // Now an admin of the namespace, she may delete pods there but not elsewhere.
    eventually_ok(&s, &eve, &["auth", "can-i", "delete", "pods"]).await?;
    let no = s.kubectl_as(&eve, &["auth", "can-i", "delete", "pods", "-n", "kube-system"]).await?;
    ensure!(!no.ok, "{}", no.stdout);
    Ok(())
}

async fn roles_aggregate(s: TestServer) -> Result<()> {
    let view =
        s.ok(&["get", "clusterrole", "view", "-o", "jsonpath={.rules[*].resources}"]).await?;
    ensure!(view.contains("configmaps") && view.contains("deployments"), "{view}");
    let admin =
        s.ok(&["get", "clusterrole", "admin", "-o", "jsonpath={.rules[*].resources}"]).await?;
    ensure!(admin.contains("rolebindings") && !admin.contains("clusterrolebindings"), "{admin}");
    let widget_viewer = r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"widget-viewer","labels":{"rbac.authorization.k8s.io/aggregate-to-view":"true"}},"rules":[{"apiGroups":["example.com"],"resources":["widgets"],"verbs":["get","list","watch"]}]}"#;
    s.kubectl_in(&["create", "-f", "-"], Some(widget_viewer)).await?;
    for _ in 0..100 {
        let view =
            s.ok(&["get", "clusterrole", "view", "-o", "jsonpath={.rules[*].resources}"]).await?;
        if view.contains("widgets") {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("view never aggregated the widget rule")
}

with_each_kubectl!(rbac_grants_and_denies);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation() -> Result<()> {
    escalation_is_prevented(TestServer::start().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregation() -> Result<()> {
    roles_aggregate(TestServer::start().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reach_only_what_their_pods_use() -> Result<()> {
    let s = TestServer::start().await?;
    for name in ["mine", "theirs"] {
        s.ok(&["create", "secret", "generic", name, "--from-literal=k=v"]).await?;
        s.ok(&["create", "configmap", name, "--from-literal=k=v"]).await?;
    }
    for (pod, node, object) in [("p1", "n1", "mine"), ("p2", "n2", "theirs")] {
        let manifest = format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{pod}"}},"spec":{{"nodeName":"{node}","containers":[{{"name":"c","image":"busybox","envFrom":[{{"configMapRef":{{"name":"{object}"}}}}]}}],"volumes":[{{"name":"s","secret":{{"secretName":"{object}"}}}}]}}}}"#
        );
        let out = s.kubectl_in(&["create", "-f", "-"], Some(&manifest)).await?;
        ensure!(out.ok, "{}", out.stderr);
    }
    let n1 = s.kubeconfig_for("system:node:n1", &["system:nodes"])?;
    eventually_ok(&s, &n1, &["get", "secret", "mine"]).await?;
    eventually_ok(&s, &n1, &["get", "configmap", "mine"]).await?;
    let denied = fails_as(&s, &n1, &["get", "secret", "theirs"]).await?;
    ensure!(
        denied.contains(r#"secrets "theirs" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node 'n1' and this object"#),
        "{denied}"
    );
    let denied = fails_as(&s, &n1, &["get", "configmap", "theirs"]).await?;
    ensure!(denied.contains("no relationship found between node 'n1'"), "{denied}");
    let denied = fails_as(&s, &n1, &["get", "secrets"]).await?;
    ensure!(denied.contains("Forbidden"), "{denied}");
    // What the system:node role grants: reading pods and nodes.
    eventually_ok(&s, &n1, &["get", "pods"]).await?;
    // Its own lease only.
    let out = s
        .kubectl_as(
            &n1,
            &["auth", "can-i", "update", "leases.coordination.k8s.io/n1", "-n", "kube-node-lease"],
        )
        .await?;
    ensure!(out.ok && out.stdout.trim() == "yes", "{} {}", out.stdout, out.stderr);
    let out = s
        .kubectl_as(
            &n1,
            &["auth", "can-i", "update", "leases.coordination.k8s.io/n2", "-n", "kube-node-lease"],
        )
        .await?;
    ensure!(
        !out.ok && out.stdout.starts_with("no - can only access node lease"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_needs_create_even_over_a_websocket_get() -> Result<()> {
    let s = TestServer::start().await?;
    let mallory = s.kubeconfig_for("mallory", &[])?;
    s.ok(&["create", "role", "exec-get", "--verb=get", "--resource=pods,pods/exec"]).await?;
    s.ok(&["create", "rolebinding", "mallory-exec", "--role=exec-get", "--user=mallory"]).await?;
    eventually_ok(&s, &mallory, &["auth", "can-i", "get", "pods", "--subresource=exec"]).await?;
    let path = "/api/v1/namespaces/default/pods/p/exec?command=id";
    let denied = fails_as(&s, &mallory, &["get", "--raw", path]).await?;
    ensure!(denied.contains("cannot create resource") && denied.contains("pods/exec"), "{denied}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_path_refuses_the_anonymous() -> Result<()> {
    let s = TestServer::start().await?;
    let mut paths: Vec<String> = [
        "/api",
        "/apis",
        "/api/v1",
        "/apis/apps/v1",
        "/openapi/v2",
        "/openapi/v3",
        "/openapi/v3/api/v1",
        "/.well-known/openid-configuration",
        "/openid/v1/jwks",
        "/keelson/v1/secrets-encryption",
        "/metrics",
        "/debug/pprof/",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    // Every resource the server serves: its collection and an object in it.
    for info in keelson_api::Registry::builtin().resources() {
        let base = match info.group {
            "" => format!("/api/{}", info.version),
            group => format!("/apis/{group}/{}", info.version),
        };
        let collection = match info.namespaced() {
            true => format!("{base}/namespaces/default/{}", info.plural),
            false => format!("{base}/{}", info.plural),
        };
        paths.push(format!("{collection}/x"));
        paths.push(collection);
    }
    for path in &paths {
        for method in ["GET", "POST", "DELETE"] {
            let body = (method == "POST").then_some("{}");
            let (code, body) = s.curl(method, path, body, "application/json", false).await?;
            ensure!(
                code == 401
                    && serde_json::from_str::<serde_json::Value>(&body)?["reason"]
                        == "Unauthorized",
                "{method} {path}: {code} {body}"
            );
        }
    }
    for path in ["/version", "/healthz", "/livez", "/readyz"] {
        let (code, _) = s.curl("GET", path, None, "", false).await?;
        ensure!(code == 200, "{path}: {code}");
    }
    Ok(())
}

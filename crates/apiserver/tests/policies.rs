//! ValidatingAdmissionPolicy with the real kubectl: CEL validations that deny, warn or
//! only audit per binding, parameters, messages from expressions, match conditions,
//! binding-level resource selection, and the failure policy of an expression that errs.

mod common;

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use common::TestServer;
use serde_json::{Value, json};

fn policy(name: &str, spec: Value) -> String {
    json!({ "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy", "metadata": { "name": name }, "spec": spec }).to_string()
}

fn binding(name: &str, spec: Value) -> String {
    json!({ "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding", "metadata": { "name": name }, "spec": spec }).to_string()
}

fn deployments() -> Value {
    json!({ "resourceRules": [{ "apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments"] }] })
}

/// Creates a deployment with `replicas` (and `labels`); the kubectl result.
async fn deploy(
    s: &TestServer,
    name: &str,
    replicas: u32,
    namespace: &str,
    labels: Value,
) -> Result<common::Out> {
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name, "namespace": namespace, "labels": labels },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": { "metadata": { "labels": { "app": name } }, "spec": { "containers": [{ "name": "c", "image": "nginx" }] } },
        },
    });
    s.kubectl_in(&["create", "-f", "-"], Some(&deployment.to_string())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_deny_warn_and_take_params() -> Result<()> {
    let s = TestServer::start().await?;
    let create = |text: String| {
        let s = &s;
        async move {
            let out = s.kubectl_in(&["create", "-f", "-"], Some(&text)).await?;
            ensure!(out.ok, "{}", out.stderr);
            Ok::<_, anyhow::Error>(())
        }
    };
    create(policy(
        "max-replicas",
        json!({
            "failurePolicy": "Fail",
            "matchConstraints": deployments(),
            "matchConditions": [{ "name": "not-exempt", "expression": "!has(object.metadata.labels) || !('exempt' in object.metadata.labels)" }],
            "validations": [{ "expression": "object.spec.replicas <= 5" }],
        }),
    ))
    .await?;
    create(binding(
        "max-replicas-binding",
        json!({ "policyName": "max-replicas", "validationActions": ["Deny"] }),
    ))
    .await?;
    // Bindings reach admission through the watch cache.
    let mut denied = String::new();
    for attempt in 0..100 {
        let out = deploy(&s, &format!("big{attempt}"), 6, "default", json!({})).await?;
        if !out.ok {
            denied = out.stderr;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(
        denied.contains("ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding' denied request: failed expression: object.spec.replicas <= 5"),
        "{denied}"
    );
    ensure!(deploy(&s, "small", 3, "default", json!({})).await?.ok);
    let exempt = deploy(&s, "exempt", 9, "default", json!({ "exempt": "yes" })).await?;
    ensure!(exempt.ok, "match conditions exclude it: {}", exempt.stderr);
    // Updates are checked too.
    let patched = s
        .fails(&[
            "patch",
            "deployment",
            "small",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":7}}"#,
        ])
        .await?;
    ensure!(
        patched.contains("denied request: failed expression: object.spec.replicas <= 5"),
        "{patched}"
    );

    // Parameters, a message from an expression, and a warn-only binding scoped to a namespace.
    s.ok(&["create", "namespace", "team"]).await?;
    s.ok(&["label", "namespace", "team", "tier=dev"]).await?;
    s.ok(&["create", "configmap", "limits", "-n", "team", "--from-literal=max=2"]).await?;
    create(policy(
        "team-replicas",
        json!({
            "paramKind": { "apiVersion": "v1", "kind": "ConfigMap" },
            "matchConstraints": deployments(),
            "variables": [{ "name": "limit", "expression": "int(params.data.max)" }],
            "validations": [{
                "expression": "object.spec.replicas <= variables.limit",
                "messageExpression": "'replicas must be at most ' + string(variables.limit)",
                "reason": "Forbidden",
            }],
        }),
    ))
    .await?;
    create(binding(
        "team-replicas-warn",
        json!({
            "policyName": "team-replicas",
            "validationActions": ["Warn"],
            "paramRef": { "name": "limits", "namespace": "team", "parameterNotFoundAction": "Deny" },
            "matchResources": { "namespaceSelector": { "matchLabels": { "tier": "dev" } } },
        }),
    ))
    .await?;
    let mut warned = String::new();
    for attempt in 0..100 {
        let out = deploy(&s, &format!("w{attempt}"), 3, "team", json!({})).await?;
        ensure!(out.ok, "{}", out.stderr);
        if out.stderr.contains("Validation failed") {
            warned = out.stderr;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(
        warned.contains("Warning: Validation failed for ValidatingAdmissionPolicy 'team-replicas' with binding 'team-replicas-warn': replicas must be at most 2"),
        "{warned}"
    );
    // Outside the selected namespace the binding does not apply.
    let out = deploy(&s, "quiet", 3, "default", json!({})).await?;
    ensure!(out.ok && !out.stderr.contains("team-replicas"), "{}", out.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erring_expression_follows_the_failure_policy() -> Result<()> {
    let s = TestServer::start().await?;
    for (name, failure) in [("strict", "Fail"), ("lenient", "Ignore")] {
        let namespace = format!("ns-{name}");
        s.ok(&["create", "namespace", &namespace]).await?;
        s.ok(&["label", "namespace", &namespace, &format!("policy={name}")]).await?;
        let mut constraints = deployments();
        constraints["namespaceSelector"] = json!({ "matchLabels": { "policy": name } });
        let p = policy(
            name,
            json!({ "failurePolicy": failure, "matchConstraints": constraints, "validations": [{ "expression": "object.spec.nothing.here > 1" }] }),
        );
        let b = binding(
            &format!("{name}-binding"),
            json!({ "policyName": name, "validationActions": ["Deny"] }),
        );
        for text in [p, b] {
            let out = s.kubectl_in(&["create", "-f", "-"], Some(&text)).await?;
            ensure!(out.ok, "{}", out.stderr);
        }
    }
    for attempt in 0..100 {
        let out = deploy(&s, &format!("d{attempt}"), 1, "ns-strict", json!({})).await?;
        if !out.ok {
            ensure!(
                out.stderr.contains("ValidatingAdmissionPolicy 'strict' with binding 'strict-binding' denied request: expression 'object.spec.nothing.here > 1' resulted in error"),
                "{}",
                out.stderr
            );
            let lenient = deploy(&s, "d", 1, "ns-lenient", json!({})).await?;
            ensure!(lenient.ok, "{}", lenient.stderr);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the strict policy never applied")
}

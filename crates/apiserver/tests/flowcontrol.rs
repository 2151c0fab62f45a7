//! `flowcontrol.apiserver.k8s.io/v1` through the real kubectl and raw requests: the
//! FlowSchema and PriorityLevelConfiguration objects served, defaulted, validated
//! (including the mandatory `exempt` and `catch-all` objects) and printed as a 1.34
//! kube-apiserver does. Request limiting itself is not tested here.

mod common;

use anyhow::{Result, ensure};
use common::{TestServer, causes, header};
use serde_json::{Value, json};

const LEVEL: &str = r#"
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: PriorityLevelConfiguration
metadata: {name: batch}
spec:
  type: Limited
  limited:
    limitResponse:
      type: Queue
      queuing: {queues: 16}
"#;

const SCHEMA: &str = r#"
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {name: batch-jobs}
spec:
  priorityLevelConfiguration: {name: batch}
  distinguisherMethod: {type: ByUser}
  rules:
  - subjects:
    - kind: ServiceAccount
      serviceAccount: {name: runner, namespace: ci}
    resourceRules:
    - verbs: ["*"]
      apiGroups: ["batch"]
      resources: ["jobs"]
      namespaces: ["*"]
status:
  conditions: [{type: Injected, status: "True"}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_and_levels_are_served_defaulted_and_printed() -> Result<()> {
    let s = TestServer::start().await?;
    let resources = s
        .ok(&["api-resources", "--api-group=flowcontrol.apiserver.k8s.io", "--no-headers"])
        .await?;
    let rows: Vec<Vec<&str>> = resources.lines().map(|l| l.split_whitespace().collect()).collect();
    ensure!(
        rows == [
            vec!["flowschemas", "flowcontrol.apiserver.k8s.io/v1", "false", "FlowSchema"],
            vec![
                "prioritylevelconfigurations",
                "flowcontrol.apiserver.k8s.io/v1",
                "false",
                "PriorityLevelConfiguration"
            ],
        ],
        "{resources}"
    );

    let out = s.kubectl_in(&["create", "-f", "-"], Some(LEVEL)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let level: Value = serde_json::from_str(
        &s.ok(&["get", "prioritylevelconfiguration", "batch", "-o", "json"]).await?,
    )?;
    ensure!(
        level["spec"]["limited"]
            == json!({ "nominalConcurrencyShares": 30, "lendablePercent": 0,
            "limitResponse": { "type": "Queue", "queuing": { "queues": 16, "handSize": 8, "queueLengthLimit": 50 } } }),
        "{level}"
    );
    ensure!(level["metadata"]["generation"] == 1, "{level}");
    let table = s.ok(&["get", "prioritylevelconfigurations"]).await?;
    ensure!(
        header(&table)
            == [
                "NAME",
                "TYPE",
                "NOMINALCONCURRENCYSHARES",
                "QUEUES",
                "HANDSIZE",
                "QUEUELENGTHLIMIT",
                "AGE"
            ],
        "{table}"
    );
    ensure!(
        table
            .lines()
            .any(|l| l.split_whitespace().take(6).eq(["batch", "Limited", "30", "16", "8", "50"])),
        "{table}"
    );

    let out = s.kubectl_in(&["create", "-f", "-"], Some(SCHEMA)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let schema: Value =
        serde_json::from_str(&s.ok(&["get", "flowschema", "batch-jobs", "-o", "json"]).await?)?;
    ensure!(schema["spec"]["matchingPrecedence"] == 1000, "defaulted: {schema}");
    // The status sent is dropped; only the server's own `Dangling` condition appears.
    let conditions = schema["status"]["conditions"].as_array().cloned().unwrap_or_default();
    ensure!(conditions.iter().all(|c| c["type"] == "Dangling"), "status reset on create: {schema}");
    let table = s.ok(&["get", "flowschemas"]).await?;
    ensure!(
        header(&table)
            == [
                "NAME",
                "PRIORITYLEVEL",
                "MATCHINGPRECEDENCE",
                "DISTINGUISHERMETHOD",
                "AGE",
                "MISSINGPL"
            ],
        "{table}"
    );
    ensure!(
        table.lines().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            // MISSINGPL: API Priority and Fairness has found the level by now.
            cells[..4] == ["batch-jobs", "batch", "1000", "ByUser"]
                && matches!(cells.last(), Some(&"?" | &"False"))
        }),
        "{table}"
    );

    // `…/status` writes the conditions and nothing else.
    let mut with_status = schema.clone();
    with_status["status"] = json!({ "conditions": [{ "type": "Dangling", "status": "False" }] });
    with_status["spec"]["matchingPrecedence"] = json!(10);
    with_status["metadata"]["labels"] = json!({ "x": "y" });
    let path = "/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas/batch-jobs/status";
    let (code, body) =
        s.curl("PUT", path, Some(&with_status.to_string()), "application/json", true).await?;
    ensure!(code == 200, "{code} {body}");
    let written: Value = serde_json::from_str(&body)?;
    ensure!(
        written["spec"]["matchingPrecedence"] == 1000
            && written["metadata"].get("labels").is_none(),
        "{written}"
    );
    let table = s.ok(&["get", "flowschema", "batch-jobs", "--no-headers"]).await?;
    ensure!(table.split_whitespace().last() == Some("False"), "{table}");
    let described = s.ok(&["describe", "flowschema", "batch-jobs"]).await?;
    ensure!(described.contains("batch-jobs"), "{described}");
    let explained = s.ok(&["explain", "prioritylevelconfigurations.spec.limited"]).await?;
    ensure!(explained.contains("nominalConcurrencyShares"), "{explained}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_and_mandatory_objects_are_refused() -> Result<()> {
    let s = TestServer::start().await?;
    let levels = "/apis/flowcontrol.apiserver.k8s.io/v1/prioritylevelconfigurations";
    let post = |path: &'static str, body: Value| {
        let s = &s;
        async move {
            let (code, text) =
                s.curl("POST", path, Some(&body.to_string()), "application/json", true).await?;
            anyhow::Ok((code, serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)))
        }
    };
    let level = |name: &str, spec: Value| {
        json!({ "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration", "metadata": { "name": name }, "spec": spec })
    };

    let (code, status) = post(
        levels,
        level(
            "wide",
            json!({ "type": "Limited", "limited": {
        "limitResponse": { "type": "Queue", "queuing": { "queues": 128, "handSize": 10 } } } }),
        ),
    )
    .await?;
    ensure!(code == 422, "{code} {status}");
    ensure!(
        causes(&status)
            == [
                "spec.limited.limitResponse.queuing.handSize: Invalid value: 10: required entropy bits of deckSize 128 and handSize 10 should not be greater than 60"
            ],
        "{status}"
    );
    let (code, status) = post(
        levels,
        level(
            "exempt",
            json!({ "type": "Limited", "limited": { "limitResponse": { "type": "Reject" } } }),
        ),
    )
    .await?;
    ensure!(code == 422, "{code} {status}");
    let found = causes(&status);
    ensure!(found.len() == 2, "{found:#?}");
    ensure!(
        found[0]
            == "spec.type: Invalid value: \"Limited\": must be 'Exempt' if and only if `name` is 'exempt'",
        "{found:#?}"
    );
    ensure!(
        found[1].starts_with("spec: Invalid value: ")
            && found[1].ends_with(
                "spec of 'exempt' except the 'spec.exempt' field must equal the fixed value"
            ),
        "{found:#?}"
    );
    // The mandatory catch-all level exists from the start, as upstream's bootstrap
    // writes it (a valid object) ...
    let shares = s
        .ok(&[
            "get",
            "prioritylevelconfiguration",
            "catch-all",
            "-o",
            "jsonpath={.spec.limited.nominalConcurrencyShares}",
        ])
        .await?;
    ensure!(shares == "5", "{shares}");
    // ... and cannot change.
    let out = s
        .kubectl(&[
            "patch",
            "prioritylevelconfiguration",
            "catch-all",
            "--type=merge",
            "-p",
            r#"{"spec":{"limited":{"nominalConcurrencyShares":50}}}"#,
        ])
        .await?;
    ensure!(
        !out.ok && out.stderr.contains("spec of 'catch-all' must equal the fixed value"),
        "{}",
        out.stderr
    );

    let schemas = "/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas";
    let (code, status) = post(schemas, json!({ "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
        "metadata": { "name": "first" }, "spec": { "priorityLevelConfiguration": { "name": "batch" }, "matchingPrecedence": 1,
        "rules": [{ "subjects": [{ "kind": "Robot" }], "nonResourceRules": [{ "verbs": ["get", "fly"], "nonResourceURLs": ["healthz"] }] }] } })).await?;
    ensure!(code == 422, "{code} {status}");
    ensure!(
        causes(&status)
            == [
                "spec.matchingPrecedence: Invalid value: 1: only the schema named 'exempt' may have matchingPrecedence 1",
                "spec.rules[0].subjects[0].kind: Unsupported value: \"Robot\": supported values: \"Group\", \"ServiceAccount\", \"User\"",
                "spec.rules[0].nonResourceRules[0].verbs: Unsupported value: []string{\"get\", \"fly\"}: supported values: \"create\", \"delete\", \"deletecollection\", \"get\", \"list\", \"patch\", \"proxy\", \"update\", \"watch\"",
                "spec.rules[0].nonResourceRules[0].nonResourceURLs[0]: Invalid value: \"healthz\": must start with slash",
            ],
        "{status}"
    );
    Ok(())
}

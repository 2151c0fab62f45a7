//! `resource.k8s.io/v1` (dynamic resource allocation) through the real kubectl and raw
//! requests: what a 1.34 kube-apiserver serves, defaults, refuses and prints.

mod common;

use anyhow::{Result, ensure};
use common::{TestServer, causes, header};
use serde_json::{Value, json};

const CLASS: &str = r#"
apiVersion: resource.k8s.io/v1
kind: DeviceClass
metadata: {name: gpu.example.com}
spec:
  selectors:
  - cel: {expression: "device.driver == 'gpu.example.com'"}
"#;

const CLAIM: &str = r#"
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: single-gpu}
spec:
  devices:
    requests:
    - name: gpu
      exactly: {deviceClassName: gpu.example.com}
status:
  reservedFor: [{resource: pods, name: p, uid: "1"}]
"#;

const TEMPLATE: &str = r#"
apiVersion: resource.k8s.io/v1
kind: ResourceClaimTemplate
metadata: {name: two-gpus}
spec:
  spec:
    devices:
      requests:
      - name: gpus
        exactly: {deviceClassName: gpu.example.com, count: 2}
"#;

/// A slice of `driver` on `node` (or on every node without one).
fn slice(name: &str, driver: &str, node: Option<&str>) -> String {
    let nodes = node.map_or_else(|| "allNodes: true".to_owned(), |n| format!("nodeName: {n}"));
    format!(
        "apiVersion: resource.k8s.io/v1\nkind: ResourceSlice\nmetadata: {{name: {name}}}\nspec:\n  driver: {driver}\n  {nodes}\n  pool: {{name: {name}, generation: 0, resourceSliceCount: 1}}\n  devices:\n  - name: gpu-0\n    attributes:\n      model: {{string: a100}}\n"
    )
}

async fn create(s: &TestServer, manifest: &str) -> Result<()> {
    let out = s.kubectl_in(&["create", "-f", "-"], Some(manifest)).await?;
    ensure!(out.ok, "{}", out.stderr);
    Ok(())
}

async fn json_of(s: &TestServer, args: &[&str]) -> Result<Value> {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    Ok(serde_json::from_str(&s.ok(&args).await?)?)
}

/// A POST of `body` to `path`: its status code and Status body.
async fn post(s: &TestServer, path: &str, body: &Value) -> Result<(u16, Value)> {
    let (code, text) =
        s.curl("POST", path, Some(&body.to_string()), "application/json", true).await?;
    Ok((code, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_are_served_defaulted_and_printed() -> Result<()> {
    let s = TestServer::start().await?;
    let resources = s.ok(&["api-resources", "--api-group=resource.k8s.io", "-o", "wide"]).await?;
    ensure!(
        header(&resources)
            == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND", "VERBS", "CATEGORIES"],
        "{resources}"
    );
    let rows: Vec<Vec<&str>> =
        resources.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    let names: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r[0], r[2], r[3])).collect();
    ensure!(
        names
            == [
                ("deviceclasses", "false", "DeviceClass"),
                ("resourceclaims", "true", "ResourceClaim"),
                ("resourceclaimtemplates", "true", "ResourceClaimTemplate"),
                ("resourceslices", "false", "ResourceSlice"),
            ],
        "{resources}"
    );
    let versions = s.ok(&["api-versions"]).await?;
    ensure!(versions.lines().any(|l| l == "resource.k8s.io/v1"), "{versions}");
    ensure!(!versions.contains("resource.k8s.io/v1beta"), "betas are off by default:\n{versions}");

    create(&s, CLASS).await?;
    let class = json_of(&s, &["get", "deviceclass", "gpu.example.com"]).await?;
    ensure!(class["metadata"]["generation"] == 1, "{class}");
    let table = s.ok(&["get", "deviceclasses"]).await?;
    ensure!(header(&table) == ["NAME", "AGE"] && table.contains("gpu.example.com"), "{table}");

    // The status a client sends is dropped; the request gets ExactCount and a count of 1.
    create(&s, CLAIM).await?;
    let claim = json_of(&s, &["get", "resourceclaim", "single-gpu"]).await?;
    ensure!(claim["status"] == json!({}), "status reset on create: {claim}");
    ensure!(
        claim["spec"]["devices"]["requests"][0]["exactly"]
            == json!({ "deviceClassName": "gpu.example.com", "allocationMode": "ExactCount", "count": 1 }),
        "{claim}"
    );
    ensure!(claim["metadata"].get("generation").is_none(), "{claim}");
    let table = s.ok(&["get", "resourceclaims"]).await?;
    ensure!(header(&table) == ["NAME", "STATE", "AGE"], "{table}");
    ensure!(
        table.lines().any(|l| l.split_whitespace().take(2).eq(["single-gpu", "pending"])),
        "{table}"
    );
    let described = s.ok(&["describe", "resourceclaim", "single-gpu"]).await?;
    ensure!(described.contains("Name:") && described.contains("single-gpu"), "{described}");

    // The status subresource allocates; an update of the claim keeps that status.
    let allocated = json!({ "devices": { "results": [
        { "request": "gpu", "driver": "gpu.example.com", "pool": "node-1", "device": "gpu-0" }] } });
    let mut with_status = claim.clone();
    with_status["status"] = json!({ "allocation": allocated, "reservedFor": [{ "resource": "pods", "name": "p", "uid": "1" }] });
    let path = "/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/single-gpu";
    let (code, body) = s
        .curl(
            "PUT",
            &format!("{path}/status"),
            Some(&with_status.to_string()),
            "application/json",
            true,
        )
        .await?;
    ensure!(code == 200, "{code} {body}");
    let table = s.ok(&["get", "resourceclaim", "single-gpu"]).await?;
    ensure!(table.contains("allocated,reserved"), "{table}");
    let out = s.kubectl(&["label", "resourceclaim", "single-gpu", "team=a"]).await?;
    ensure!(out.ok, "{}", out.stderr);
    let claim = json_of(&s, &["get", "resourceclaim", "single-gpu"]).await?;
    ensure!(claim["status"]["allocation"] == allocated, "{claim}");

    create(&s, TEMPLATE).await?;
    let template = json_of(&s, &["get", "resourceclaimtemplate", "two-gpus"]).await?;
    ensure!(
        template["spec"]["spec"]["devices"]["requests"][0]["exactly"]["count"] == 2,
        "{template}"
    );
    ensure!(
        template["spec"]["spec"]["devices"]["requests"][0]["exactly"]["allocationMode"]
            == "ExactCount"
    );
    let table = s.ok(&["get", "resourceclaimtemplates"]).await?;
    ensure!(header(&table) == ["NAME", "AGE"] && table.contains("two-gpus"), "{table}");

    create(&s, &slice("node-1-gpus", "gpu.example.com", Some("node-1"))).await?;
    create(&s, &slice("node-2-gpus", "gpu.example.com", Some("node-2"))).await?;
    create(&s, &slice("shared-nics", "nic.example.com", None)).await?;
    let table = s.ok(&["get", "resourceslices"]).await?;
    ensure!(header(&table) == ["NAME", "NODE", "DRIVER", "POOL", "AGE"], "{table}");
    ensure!(
        table.lines().any(|l| l.split_whitespace().take(4).eq([
            "node-1-gpus",
            "node-1",
            "gpu.example.com",
            "node-1-gpus"
        ])),
        "{table}"
    );
    let slice_json = json_of(&s, &["get", "resourceslice", "node-1-gpus"]).await?;
    ensure!(slice_json["metadata"]["generation"] == 1, "{slice_json}");

    let explained = s.ok(&["explain", "resourceclaims.spec.devices.requests.exactly"]).await?;
    ensure!(
        explained.contains("deviceClassName") && explained.contains("allocationMode"),
        "{explained}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_select_by_node_and_driver() -> Result<()> {
    let s = TestServer::start().await?;
    create(&s, &slice("node-1-gpus", "gpu.example.com", Some("node-1"))).await?;
    create(&s, &slice("node-2-gpus", "gpu.example.com", Some("node-2"))).await?;
    create(&s, &slice("shared-nics", "nic.example.com", None)).await?;
    let names =
        |out: String| -> Vec<String> { out.split_whitespace().map(str::to_owned).collect() };
    let on_node = s
        .ok(&["get", "resourceslices", "--field-selector=spec.nodeName=node-1", "-o", "name"])
        .await?;
    ensure!(names(on_node.clone()) == ["resourceslice.resource.k8s.io/node-1-gpus"], "{on_node}");
    let nics = s
        .ok(&[
            "get",
            "resourceslices",
            "--field-selector=spec.driver=nic.example.com",
            "-o",
            "name",
        ])
        .await?;
    ensure!(names(nics.clone()) == ["resourceslice.resource.k8s.io/shared-nics"], "{nics}");
    // Without a node name the field is "", as upstream's field set has it.
    let everywhere =
        s.ok(&["get", "resourceslices", "--field-selector=spec.nodeName=", "-o", "name"]).await?;
    ensure!(
        names(everywhere.clone()) == ["resourceslice.resource.k8s.io/shared-nics"],
        "{everywhere}"
    );
    // `spec.pool.name` is no field label upstream converts.
    let refused = s.fails(&["get", "resourceslices", "--field-selector=spec.pool.name=x"]).await?;
    ensure!(refused.contains("spec.pool.name"), "{refused}");
    // The node name never changes.
    let moved = slice("node-1-gpus", "gpu.example.com", Some("node-9"));
    let out = s.kubectl_in(&["apply", "-f", "-"], Some(&moved)).await?;
    ensure!(
        !out.ok
            && out.stderr.contains("spec.nodeName: Invalid value: \"node-9\": field is immutable"),
        "{}",
        out.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_objects_are_refused_with_upstreams_causes() -> Result<()> {
    let s = TestServer::start().await?;
    let claims = "/apis/resource.k8s.io/v1/namespaces/default/resourceclaims";
    let claim = |requests: Value| {
        json!({ "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": { "name": "bad" }, "spec": { "devices": { "requests": requests } } })
    };
    let (code, status) = post(&s, claims, &claim(json!([
        { "name": "gpu", "exactly": { "deviceClassName": "", "allocationMode": "All", "count": 2 } },
        { "name": "gpu", "exactly": { "deviceClassName": "c", "selectors": [{ "cel": { "expression": "device.driver ==" } }] },
          "firstAvailable": [{ "name": "a", "deviceClassName": "c" }] },
        { "name": "none" }
    ]))).await?;
    ensure!(code == 422 && status["reason"] == "Invalid", "{code} {status}");
    let found = causes(&status);
    ensure!(found.len() == 6, "{found:#?}");
    ensure!(
        found[0] == "spec.devices.requests[0].exactly.deviceClassName: Required value",
        "{found:#?}"
    );
    ensure!(
        found[1]
            == "spec.devices.requests[0].exactly.count: Invalid value: 2: must not be specified when allocationMode is 'All'",
        "{found:#?}"
    );
    ensure!(found[2].starts_with("spec.devices.requests[1].exactly.selectors[0].cel.expression: Invalid value: \"device.driver ==\": compilation failed"), "{found:#?}");
    ensure!(
        found[3]
            == "spec.devices.requests[1]: Invalid value: null: exactly one of `exactly` or `firstAvailable` is required, but multiple fields are set",
        "{found:#?}"
    );
    ensure!(
        found[4]
            == "spec.devices.requests[2]: Required value: exactly one of `exactly` or `firstAvailable` is required",
        "{found:#?}"
    );
    ensure!(found[5] == "spec.devices.requests[1].name: Duplicate value: \"gpu\"", "{found:#?}");
    let message = status["message"].as_str().unwrap_or("");
    ensure!(
        message.starts_with("ResourceClaim.resource.k8s.io \"bad\" is invalid: ["),
        "{message}"
    );

    // The spec of a claim never changes.
    let good =
        claim(json!([{ "name": "gpu", "exactly": { "deviceClassName": "gpu.example.com" } }]));
    let (code, _) = post(&s, claims, &json!({ "metadata": { "name": "ok" }, "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "spec": good["spec"] })).await?;
    ensure!(code == 201, "{code}");
    let out = s
        .kubectl(&[
            "patch",
            "resourceclaim",
            "ok",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/devices/requests/0/exactly/count","value":2}]"#,
        ])
        .await?;
    ensure!(
        !out.ok
            && out.stderr.contains("spec: Invalid value:")
            && out.stderr.contains("field is immutable"),
        "{}",
        out.stderr
    );

    // A slice names one way to find its nodes, a pool and unique devices.
    let slices = "/apis/resource.k8s.io/v1/resourceslices";
    let (code, status) = post(&s, slices, &json!({ "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
        "metadata": { "name": "bad" }, "spec": { "driver": "gpu.example.com", "pool": { "name": "p", "resourceSliceCount": 1 },
        "devices": [{ "name": "gpu-0" }, { "name": "gpu-0" }] } })).await?;
    ensure!(code == 422, "{code} {status}");
    ensure!(
        causes(&status)
            == [
                "spec: Required value: exactly one of `nodeName`, `nodeSelector`, `allNodes`, `perDeviceNodeSelection` is required",
                "spec.devices[1].name: Duplicate value: \"gpu-0\"",
            ],
        "{status}"
    );
    // A class's selectors must compile.
    let (code, status) = post(&s, "/apis/resource.k8s.io/v1/deviceclasses", &json!({ "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass", "metadata": { "name": "c" }, "spec": { "selectors": [{ "cel": { "expression": "device.vendor == 'x'" } }] } })).await?;
    ensure!(code == 422, "{code} {status}");
    ensure!(
        causes(&status)
            == [
                "spec.selectors[0].cel.expression: Invalid value: \"device.vendor == 'x'\": compilation failed: ERROR: undefined field 'vendor'"
            ],
        "{status}"
    );
    Ok(())
}

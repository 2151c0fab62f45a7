//! `/openapi/v2` with the real kubectl: `explain --output=plaintext-openapiv2` and
//! client-side validation of kinds without PATCH read its protobuf; custom resources
//! come and go with their CRDs; JSON or protobuf, ETag and 406 as kube-openapi answers.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use common::TestServer;

const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
const PROTOBUF_DEPRECATED: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

async fn explain_reads_the_v2_protobuf(s: TestServer) -> Result<()> {
    let out = s.ok(&["explain", "--output=plaintext-openapiv2", "pods.spec.containers"]).await?;
    ensure!(
        out.contains("KIND:") && out.contains("Pod") && out.contains("containers <[]Object>"),
        "{out}"
    );
    ensure!(out.contains("image\t<string>") && out.contains("List of containers"), "{out}");
    let deployment =
        s.ok(&["explain", "--output=plaintext-openapiv2", "deployments.spec.replicas"]).await?;
    ensure!(deployment.contains("replicas <integer>"), "{deployment}");
    Ok(())
}

async fn kinds_without_patch_are_validated_against_v2(s: TestServer) -> Result<()> {
    let review = "apiVersion: authorization.k8s.io/v1\nkind: SubjectAccessReview\nspec:\n  user: bob\n  resourceAttributes: {verb: get, resource: pods}\n";
    let out = s.review(review, "{.status.allowed}").await?;
    ensure!(out.ok && out.stdout == "false", "{} {}", out.stdout, out.stderr);
    let unknown = format!("{review}  colour: red\n");
    let out = s.kubectl_in(&["create", "--validate=strict", "-f", "-"], Some(&unknown)).await?;
    ensure!(
        !out.ok
            && out.stderr.contains("error validating data")
            && out.stderr.contains(r#"unknown field "colour""#),
        "{}",
        out.stderr
    );
    Ok(())
}

async fn unknown_fields_are_refused_under_strict_validation(s: TestServer) -> Result<()> {
    let config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndta: {a: b}\n";
    let out = s.kubectl_in(&["create", "--validate=strict", "-f", "-"], Some(config_map)).await?;
    ensure!(
        !out.ok && out.stderr.contains(r#"strict decoding error: unknown field "dta""#),
        "{}",
        out.stderr
    );
    s.establish_widgets().await?;
    let widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {color: red, bogus: round}\n";
    let out = s.kubectl_in(&["create", "--validate=strict", "-f", "-"], Some(widget)).await?;
    ensure!(
        !out.ok && out.stderr.contains(r#"strict decoding error: unknown field "spec.bogus""#),
        "{}",
        out.stderr
    );
    Ok(())
}

/// Whether `/openapi/v2` (JSON) defines the Widget kind.
async fn has_widget(s: &TestServer) -> Result<bool> {
    let raw = s.get_raw("/openapi/v2", &[]).await?;
    let document: serde_json::Value = serde_json::from_slice(&raw.body)?;
    Ok(document["definitions"].get("com.example.v1.Widget").is_some())
}

/// Polls `check` for up to a second.
async fn within_a_second(s: &TestServer, expected: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if has_widget(s).await? == expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("Widget in /openapi/v2 is not {expected} after a second");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn custom_resources_come_and_go_with_their_crd(s: TestServer) -> Result<()> {
    ensure!(!has_widget(&s).await?);
    s.establish_widgets().await?;
    within_a_second(&s, true).await?;
    let out = s.ok(&["explain", "--output=plaintext-openapiv2", "widgets.spec"]).await?;
    ensure!(
        out.contains("What the widget should be.")
            && out.contains("color\t<string>")
            && out.contains("replicas\t<integer>"),
        "{out}"
    );
    // The v1beta1 schema keeps unknown fields: an object of any fields in v2.
    let beta = s
        .ok(&[
            "explain",
            "--output=plaintext-openapiv2",
            "widgets",
            "--api-version=example.com/v1beta1",
        ])
        .await?;
    ensure!(beta.contains("Widget") && beta.contains("v1beta1"), "{beta}");
    let raw = s.get_raw("/openapi/v2", &[]).await?;
    let document: serde_json::Value = serde_json::from_slice(&raw.body)?;
    let widget = &document["definitions"]["com.example.v1.Widget"];
    ensure!(
        widget["x-kubernetes-group-version-kind"]
            == serde_json::json!([{ "group": "example.com", "kind": "Widget", "version": "v1" }])
            && widget["properties"]["metadata"]["$ref"]
                == "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "{widget}"
    );
    let patch =
        &document["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"];
    ensure!(patch["x-kubernetes-action"] == "patch", "{patch}");
    s.ok(&["delete", "crd", "widgets.example.com"]).await?;
    within_a_second(&s, false).await?;
    Ok(())
}

with_each_kubectl!(
    explain_reads_the_v2_protobuf,
    kinds_without_patch_are_validated_against_v2,
    unknown_fields_are_refused_under_strict_validation,
    custom_resources_come_and_go_with_their_crd,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_or_protobuf_with_etags_as_kube_openapi() -> Result<()> {
    let s = TestServer::start().await?;
    let json = s.get_raw("/openapi/v2", &[]).await?;
    ensure!(json.status == 200 && json.header("content-type") == Some("application/json"));
    ensure!(json.header("vary") == Some("Accept"), "{:?}", json.headers);
    let document: serde_json::Value = serde_json::from_slice(&json.body)?;
    ensure!(document["swagger"] == "2.0");
    let pod = &document["definitions"]["io.k8s.api.core.v1.Pod"];
    ensure!(
        pod["x-kubernetes-group-version-kind"][0]["kind"] == "Pod"
            && pod["properties"]["spec"]["$ref"] == "#/definitions/io.k8s.api.core.v1.PodSpec",
        "{pod}"
    );
    let containers =
        &document["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    ensure!(
        containers["x-kubernetes-patch-strategy"] == "merge"
            && containers["x-kubernetes-patch-merge-key"] == "name"
            && containers["x-kubernetes-list-type"] == "map",
        "{containers}"
    );
    let create = &document["paths"]["/api/v1/namespaces/{namespace}/pods"]["post"];
    ensure!(
        create["x-kubernetes-action"] == "post"
            && create["parameters"][0]["in"] == "body"
            && create["parameters"][0]["schema"]["$ref"] == "#/definitions/io.k8s.api.core.v1.Pod"
            && create["responses"]["200"]["schema"]["$ref"]
                == "#/definitions/io.k8s.api.core.v1.Pod",
        "{create}"
    );
    ensure!(!String::from_utf8_lossy(&json.body).contains("#/components/schemas/"));

    let etag = json.header("etag").unwrap_or_default().to_owned();
    ensure!(etag.len() == 130 && etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    for accept in
        [PROTOBUF, PROTOBUF_DEPRECATED, &format!("{PROTOBUF_DEPRECATED}, application/json")]
    {
        let proto = s.get_raw("/openapi/v2", &[("Accept", accept)]).await?;
        ensure!(proto.status == 200 && proto.header("content-type") == Some(PROTOBUF));
        ensure!(proto.header("etag") == Some(etag.as_str()));
        // Field 1 of openapi.v2.Document, `swagger: "2.0"`, comes first.
        ensure!(proto.body.starts_with(b"\x0a\x032.0\x12"), "{:?}", &proto.body[..8]);
    }
    let cached = s.get_raw("/openapi/v2", &[("If-None-Match", &etag)]).await?;
    ensure!(cached.status == 304 && cached.body.is_empty() && cached.header("etag") == Some(&etag));
    let stale = s.get_raw("/openapi/v2", &[("If-None-Match", "\"0\"")]).await?;
    ensure!(stale.status == 200 && !stale.body.is_empty());
    let refused = s.get_raw("/openapi/v2", &[("Accept", "application/yaml")]).await?;
    ensure!(refused.status == 406 && refused.body.is_empty(), "{}", refused.status);
    ensure!(refused.header("vary") == Some("Accept"));
    Ok(())
}

/// Lists answer `<Kind>List` and deletecollection a `Status`, as upstream's documents
/// declare them, in v3 and in v2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_answer_their_list_kind_and_deletecollection_a_status() -> Result<()> {
    let s = TestServer::start().await?;
    let raw = s.get_raw("/openapi/v3/api/v1", &[]).await?;
    let v3: serde_json::Value = serde_json::from_slice(&raw.body)?;
    let pods = &v3["paths"]["/api/v1/namespaces/{namespace}/pods"];
    let schema = |op: &str| {
        pods[op]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].clone()
    };
    ensure!(
        schema("get") == "#/components/schemas/io.k8s.api.core.v1.PodList",
        "{}",
        schema("get")
    );
    let status = "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Status";
    ensure!(schema("delete") == status, "{}", schema("delete"));
    let list = &v3["components"]["schemas"]["io.k8s.api.core.v1.PodList"];
    ensure!(
        list["properties"]["items"]["items"]["$ref"]
            == "#/components/schemas/io.k8s.api.core.v1.Pod"
    );
    ensure!(list["x-kubernetes-group-version-kind"][0]["kind"] == "PodList");
    let raw = s.get_raw("/openapi/v2", &[]).await?;
    let v2: serde_json::Value = serde_json::from_slice(&raw.body)?;
    ensure!(
        v2["definitions"]["io.k8s.api.apps.v1.DeploymentList"]["properties"]["items"]["items"]["$ref"]
            == "#/definitions/io.k8s.api.apps.v1.Deployment"
    );
    let list_op = &v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["get"];
    ensure!(
        list_op["responses"]["200"]["schema"]["$ref"]
            == "#/definitions/io.k8s.api.apps.v1.DeploymentList",
        "{list_op}"
    );
    Ok(())
}

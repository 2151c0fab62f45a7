//! Bodies as upstream's Go encoder writes them, compared byte for byte: fields in Go
//! struct order (objects, lists, Status, watch events, discovery documents with their
//! `storageVersionHash`), a newline after each body, indentation for clients that ask
//! for it, and custom resources in key order.

mod common;

use anyhow::{Result, ensure};
use common::TestServer;

/// A User-Agent that is not curl's, which upstream answers indented.
const AGENT: (&str, &str) = ("User-Agent", "wire-test/1.0");

/// upstream's `test/cmd/discovery.sh` checks this entry of `/api/v1` as it stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_has_storage_version_hashes_in_go_struct_order() -> Result<()> {
    let s = TestServer::start().await?;
    let core = s.ok(&["get", "--raw", "/api/v1"]).await?;
    let configmaps = r#"{"name":"configmaps","singularName":"configmap","namespaced":true,"kind":"ConfigMap","verbs":["create","delete","deletecollection","get","list","patch","update","watch"],"shortNames":["cm"],"storageVersionHash":"qFsyl6wFWjQ="}"#;
    ensure!(core.contains(configmaps), "{core}");
    ensure!(core.starts_with(r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"bindings","singularName":"binding","namespaced":true,"kind":"Binding","verbs":["create"]},"#), "{core}");
    ensure!(
        core.contains(
            r#""shortNames":["po"],"categories":["all"],"storageVersionHash":"xPOwRZ+Yhw8="}"#
        ),
        "{core}"
    );
    ensure!(core.contains(r#"{"name":"pods/eviction","singularName":"","namespaced":true,"group":"policy","version":"v1","kind":"Eviction","verbs":["create"]}"#), "{core}");
    // autoscaling/v1 HPAs are stored as v2, and say so.
    let v1 = s.ok(&["get", "--raw", "/apis/autoscaling/v1"]).await?;
    let v2 = s.ok(&["get", "--raw", "/apis/autoscaling/v2"]).await?;
    let hash = r#""storageVersionHash":"qwQve8ut294=""#;
    ensure!(v1.contains(hash) && v2.contains(hash), "{v1}\n{v2}");
    let groups = s.ok(&["get", "--raw", "/apis"]).await?;
    ensure!(groups.starts_with(r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[{"name":"apiregistration.k8s.io","versions":[{"groupVersion":"apiregistration.k8s.io/v1","version":"v1"}],"preferredVersion":{"groupVersion":"apiregistration.k8s.io/v1","version":"v1"}},"#), "{groups}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_in_go_struct_order_and_end_with_a_newline() -> Result<()> {
    let s = TestServer::start().await?;
    s.ok(&["create", "configmap", "web", "--from-literal=b=2", "--from-literal=a=1"]).await?;
    let s = &s;
    let get = |path: &'static str| async move {
        s.curl_with("GET", path, None, "", true, &[AGENT]).await
    };
    let (code, object) = get("/api/v1/namespaces/default/configmaps/web").await?;
    ensure!(code == 200, "{code} {object}");
    ensure!(
        object.starts_with(
            r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"resourceVersion":""#
        ) && object.ends_with("\"data\":{\"a\":\"1\",\"b\":\"2\"}}\n"),
        "{object:?}"
    );
    let (_, list) = get("/api/v1/namespaces/default/configmaps").await?;
    ensure!(
        list.starts_with(
            r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":""#
        ) && list.contains(r#""},"items":[{"metadata":{"resourceVersion":""#)
            && list.ends_with("}]}\n"),
        "{list:?}"
    );
    // A decoded list (with a selector) is written the same way.
    let (_, selected) =
        get("/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Dweb").await?;
    ensure!(
        selected.starts_with(
            r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":""#
        ) && selected.contains(r#""items":[{"metadata":{"#)
            && selected.ends_with("}]}\n"),
        "{selected:?}"
    );
    let (code, missing) = get("/api/v1/namespaces/default/configmaps/nope").await?;
    ensure!(
        code == 404
            && missing
                == "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"configmaps \\\"nope\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"nope\",\"kind\":\"configmaps\"},\"code\":404}\n",
        "{missing:?}"
    );
    let (_, events) = get("/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1").await?;
    let first = events.lines().next().unwrap_or("");
    ensure!(
        first.starts_with(
            r#"{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"#
        ) && events.ends_with("}\n"),
        "{events:?}"
    );
    let (_, selected) = get(
        "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1&fieldSelector=metadata.name%3Dweb",
    )
    .await?;
    ensure!(
        selected.starts_with(
            r#"{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"#
        ),
        "{selected:?}"
    );
    // Custom resources are Go maps upstream: key order.
    s.establish_widgets().await?;
    let widget =
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {color: red}\n";
    let out = s.kubectl_in(&["create", "-f", "-"], Some(widget)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let (_, custom) = get("/apis/example.com/v1/namespaces/default/widgets/w").await?;
    ensure!(
        custom.starts_with(r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"#)
            && custom.ends_with("}\n"),
        "{custom:?}"
    );
    let (_, customs) = get("/apis/example.com/v1/namespaces/default/widgets").await?;
    ensure!(
        customs.starts_with(r#"{"apiVersion":"example.com/v1","items":[{"apiVersion":"example.com/v1","kind":"Widget","#)
            && customs.contains(r#"],"kind":"WidgetList","metadata":{"#),
        "{customs:?}"
    );
    Ok(())
}

/// `?pretty=true`, and curl or a browser without asking, get `json.MarshalIndent`'s
/// two-space indentation, without the newline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pretty_bodies_are_indented_as_go_indents_them() -> Result<()> {
    let s = TestServer::start().await?;
    s.ok(&["create", "configmap", "web", "--from-literal=a=1"]).await?;
    let path = "/api/v1/namespaces/default/configmaps/web?pretty=true";
    let (_, pretty) = s.curl_with("GET", path, None, "", true, &[AGENT]).await?;
    ensure!(
        pretty.starts_with("{\n  \"kind\": \"ConfigMap\",\n  \"apiVersion\": \"v1\",\n  \"metadata\": {\n    \"resourceVersion\": \"")
            && pretty.ends_with("  \"data\": {\n    \"a\": \"1\"\n  }\n}"),
        "{pretty:?}"
    );
    let (_, by_curl) =
        s.curl("GET", "/api/v1/namespaces/default/configmaps/nope", None, "", true).await?;
    ensure!(
        by_curl.starts_with(
            "{\n  \"kind\": \"Status\",\n  \"apiVersion\": \"v1\",\n  \"metadata\": {},\n"
        ),
        "{by_curl:?}"
    );
    let (_, plain) = s
        .curl("GET", "/api/v1/namespaces/default/configmaps/web?pretty=false", None, "", true)
        .await?;
    ensure!(plain.starts_with(r#"{"kind":"ConfigMap","#) && plain.ends_with("}\n"), "{plain:?}");
    // /version is indented for everyone; OpenAPI documents for no one.
    let version = s.ok(&["get", "--raw", "/version"]).await?;
    ensure!(version.starts_with("{\n  \"major\": \"1\",\n  \"minor\": \"34\",\n"), "{version:?}");
    let (_, openapi) = s.curl("GET", "/openapi/v3", None, "", true).await?;
    ensure!(openapi.starts_with("{\"paths\":{"), "{}", &openapi[..openapi.len().min(200)]);
    let (_, list) = s
        .curl_with(
            "GET",
            "/api/v1/namespaces/default/configmaps?pretty=1",
            None,
            "",
            true,
            &[AGENT],
        )
        .await?;
    ensure!(
        list.starts_with(
            "{\n  \"kind\": \"ConfigMapList\",\n  \"apiVersion\": \"v1\",\n  \"metadata\": {\n"
        ),
        "{list:?}"
    );
    Ok(())
}

//! The real kubectl against an in-process API server: what a user types, what upstream
//! prints.

mod common;

use anyhow::{Result, ensure};
use common::TestServer;
use serde_json::Value;

const CONFIGMAP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: web
  labels: {app: web}
data:
  color: blue
"#;

async fn version_and_discovery(s: TestServer) -> Result<()> {
    let version: Value = serde_json::from_str(&s.ok(&["version", "-o", "json"]).await?)?;
    ensure!(
        version["serverVersion"]["gitVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("v1.34.0+keelson."))
    );
    ensure!(version["serverVersion"]["minor"] == "34");

    let resources = s.ok(&["api-resources", "--no-headers"]).await?;
    for (name, short, api_version) in
        [("pods", "po", "v1"), ("deployments", "deploy", "apps/v1"), ("namespaces", "ns", "v1")]
    {
        ensure!(
            resources.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.first() == Some(&name) && cols.contains(&short) && cols.contains(&api_version)
            }),
            "api-resources lacks {name}:\n{resources}"
        );
    }
    let versions = s.ok(&["api-versions"]).await?;
    for gv in ["v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1", "autoscaling/v2"] {
        ensure!(versions.lines().any(|l| l == gv), "api-versions lacks {gv}");
    }
    Ok(())
}

async fn system_namespaces_exist_and_print_like_upstream(s: TestServer) -> Result<()> {
    let out = s.ok(&["get", "namespaces"]).await?;
    let header: Vec<&str> = out.lines().next().unwrap_or("").split_whitespace().collect();
    ensure!(header == ["NAME", "STATUS", "AGE"], "{out}");
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure!(
            out.lines().any(|l| l.starts_with(ns) && l.contains("Active")),
            "{ns} missing:\n{out}"
        );
    }
    let labels = s.ok(&["get", "ns", "kube-system", "-o", "jsonpath={.metadata.labels}"]).await?;
    ensure!(labels.contains("\"kubernetes.io/metadata.name\":\"kube-system\""), "{labels}");
    Ok(())
}

async fn configmap_lifecycle_in_every_output_format(s: TestServer) -> Result<()> {
    let created = s.kubectl_in(&["create", "-f", "-"], Some(CONFIGMAP)).await?;
    ensure!(
        created.ok && created.stdout.trim() == "configmap/web created",
        "{} {}",
        created.stdout,
        created.stderr
    );

    let table = s.ok(&["get", "configmaps"]).await?;
    let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
    ensure!(header == ["NAME", "DATA", "AGE"], "{table}");
    // Every namespace also holds the cluster CA, `kube-root-ca.crt`, as upstream's do.
    ensure!(
        table.lines().any(|l| l.split_whitespace().take(2).eq(["web", "1"]))
            && table.lines().any(|l| l.starts_with("kube-root-ca.crt ")),
        "{table}"
    );

    let object: Value = serde_json::from_str(&s.ok(&["get", "cm", "web", "-o", "json"]).await?)?;
    ensure!(object["kind"] == "ConfigMap" && object["apiVersion"] == "v1");
    ensure!(object["metadata"]["namespace"] == "default" && object["data"]["color"] == "blue");
    for field in ["uid", "resourceVersion", "creationTimestamp"] {
        ensure!(object["metadata"][field].is_string(), "metadata.{field} missing: {object}");
    }
    ensure!(s.ok(&["get", "cm", "web", "-o", "name"]).await?.trim() == "configmap/web");
    ensure!(s.ok(&["get", "cm", "web", "-o", "jsonpath={.data.color}"]).await? == "blue");
    let yaml = s.ok(&["get", "cm", "web", "-o", "yaml"]).await?;
    ensure!(yaml.contains("color: blue") && yaml.contains("kind: ConfigMap"), "{yaml}");
    let custom =
        s.ok(&["get", "cm", "-o", "custom-columns=NAME:.metadata.name,COLOR:.data.color"]).await?;
    ensure!(custom.lines().any(|l| l.split_whitespace().eq(["web", "blue"])), "{custom}");
    let labels = s.ok(&["get", "cm", "--show-labels"]).await?;
    ensure!(labels.contains("app=web"), "{labels}");

    ensure!(s.ok(&["label", "cm", "web", "tier=front"]).await?.trim() == "configmap/web labeled");
    ensure!(
        s.ok(&["annotate", "cm", "web", "note=hello"]).await?.trim() == "configmap/web annotated"
    );
    let selected = s.ok(&["get", "cm", "-l", "tier=front,app in (web)", "-o", "name"]).await?;
    ensure!(selected.trim() == "configmap/web", "{selected}");
    // `!=` also selects objects without the label.
    let others = s.ok(&["get", "cm", "-l", "tier!=front", "-o", "name"]).await?;
    ensure!(others.trim() == "configmap/kube-root-ca.crt", "{others}");

    s.ok(&["patch", "cm", "web", "-p", r#"{"data":{"size":"L"}}"#]).await?;
    s.ok(&["patch", "cm", "web", "--type=merge", "-p", r#"{"data":{"color":null}}"#]).await?;
    s.ok(&[
        "patch",
        "cm",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/data/shape","value":"round"}]"#,
    ])
    .await?;
    let data = s.ok(&["get", "cm", "web", "-o", "jsonpath={.data}"]).await?;
    ensure!(data == r#"{"shape":"round","size":"L"}"#, "{data}");

    ensure!(s.ok(&["delete", "cm", "web"]).await?.trim().starts_with("configmap \"web\" deleted"));
    let missing = s.fails(&["get", "cm", "web"]).await?;
    ensure!(
        missing.trim() == "Error from server (NotFound): configmaps \"web\" not found",
        "{missing}"
    );
    Ok(())
}

async fn watch_shows_added_modified_deleted(s: TestServer) -> Result<()> {
    // A marker in the initial list tells when kubectl watches: it watches from its
    // list's resourceVersion, so nothing after that line can be missed.
    s.ok(&["create", "configmap", "marker"]).await?;
    let mut watch = s.watch("cm")?;
    // The initial list: the namespace's root CA, then the marker.
    ensure!(watch.next().await? == "ADDED kube-root-ca.crt");
    ensure!(watch.next().await? == "ADDED marker");
    s.kubectl_in(&["create", "-f", "-"], Some(CONFIGMAP)).await?;
    ensure!(watch.next().await? == "ADDED web");
    s.ok(&["label", "cm", "web", "x=y"]).await?;
    ensure!(watch.next().await? == "MODIFIED web");
    s.ok(&["delete", "cm", "web"]).await?;
    ensure!(watch.next().await? == "DELETED web");
    Ok(())
}

async fn bad_requests_get_upstream_statuses(s: TestServer) -> Result<()> {
    let cm = |ns: &str, name: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","namespace":"{ns}"}}}}"#
        )
    };

    // Anonymous: health and version only.
    ensure!(s.curl("GET", "/livez", None, "", false).await? == (200, "ok".to_owned()));
    // `?verbose` as kubectl's docs write it, a key without a value, lists the checks.
    for endpoint in ["livez", "readyz"] {
        let (code, body) = s.curl("GET", &format!("/{endpoint}?verbose"), None, "", false).await?;
        let last = format!("{endpoint} check passed\n");
        ensure!(code == 200 && body.starts_with("[+]ping ok\n") && body.ends_with(&last), "{body}");
    }
    let (code, body) = s.curl("GET", "/api/v1/namespaces", None, "", false).await?;
    let status: Value = serde_json::from_str(&body)?;
    ensure!(
        code == 401 && status["reason"] == "Unauthorized" && status["kind"] == "Status",
        "{code} {body}"
    );
    ensure!(s.curl("GET", "/version", None, "", false).await?.0 == 200);

    let post = |path: &'static str, body: String, content_type: &'static str| {
        let s = &s;
        async move { s.curl("POST", path, Some(&body), content_type, true).await }
    };
    let (code, body) =
        post("/api/v1/namespaces/default/configmaps", "{not json".into(), "application/json")
            .await?;
    ensure!(code == 400 && reason(&body) == "BadRequest", "{code} {body}");
    ensure!(
        body.contains("the object provided is unrecognized (must be of type ConfigMap): couldn't get version/kind; json parse error: invalid character 'n' looking for beginning of object key string ({not json)"),
        "{body}"
    );
    let (code, body) =
        post("/api/v1/namespaces/default/configmaps", cm("default", "a"), "text/plain").await?;
    ensure!(code == 415 && body.contains("UnsupportedMediaType"), "{code} {body}");
    let (code, body) =
        post("/api/v1/namespaces/nope/configmaps", cm("nope", "a"), "application/json").await?;
    ensure!(code == 404 && body.contains(r#"namespaces \"nope\" not found"#), "{code} {body}");
    let (code, body) =
        post("/api/v1/namespaces/default/configmaps", cm("other", "a"), "application/json").await?;
    ensure!(code == 400 && body.contains("does not match the namespace"), "{code} {body}");
    let (code, body) = post(
        "/api/v1/namespaces/default/configmaps",
        cm("default", "Bad_Name"),
        "application/json",
    )
    .await?;
    let status: Value = serde_json::from_str(&body)?;
    ensure!(
        code == 422
            && status["reason"] == "Invalid"
            && status["details"]["causes"][0]["field"] == "metadata.name",
        "{body}"
    );
    let (code, body) = post(
        "/apis/apps/v1/namespaces/default/deployments",
        cm("default", "a"),
        "application/json",
    )
    .await?;
    ensure!(
        code == 400 && body.contains("does not match the expected API version"),
        "{code} {body}"
    );
    let big = format!(
        r#"{{"metadata":{{"name":"big"}},"data":{{"x":"{}"}}}}"#,
        "x".repeat(3 * 1024 * 1024 + 10)
    );
    let (code, body) =
        post("/api/v1/namespaces/default/configmaps", big, "application/json").await?;
    ensure!(
        code == 413 && body.contains("RequestEntityTooLarge"),
        "{code} {}",
        &body[..body.len().min(300)]
    );

    let (code, _) =
        post("/api/v1/namespaces/default/configmaps", cm("default", "a"), "application/yaml")
            .await?;
    ensure!(code == 201, "YAML bodies are accepted");
    let (code, body) =
        post("/api/v1/namespaces/default/configmaps", cm("default", "a"), "application/json")
            .await?;
    ensure!(code == 409 && body.contains(r#"configmaps \"a\" already exists"#), "{code} {body}");
    let (code, body) = s.curl("GET", "/api/v1/namespaces/default/nothings", None, "", true).await?;
    ensure!(code == 404 && body.contains("NotFound"), "{code} {body}");
    let (code, body) = s.curl("DELETE", "/api/v1/componentstatuses/x", None, "", true).await?;
    ensure!(code == 405 && body.contains("MethodNotAllowed"), "{code} {body}");
    let duplicated = r#"{"metadata":{"name":"dup"},"data":{"a":"1","a":"2"}}"#;
    let (code, body) = s
        .curl(
            "POST",
            "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
            Some(duplicated),
            "application/json",
            true,
        )
        .await?;
    ensure!(
        code == 400 && body.contains(r#"strict decoding error: duplicate field \"data.a\""#),
        "{code} {body}"
    );
    // Nothing partial was stored by any of the failures.
    let stored = s.ok(&["get", "cm", "-o", "name"]).await?;
    ensure!(stored.trim() == "configmap/a\nconfigmap/kube-root-ca.crt", "{stored}");
    Ok(())
}

async fn stale_updates_conflict_and_generate_name_works(s: TestServer) -> Result<()> {
    s.kubectl_in(&["create", "-f", "-"], Some(CONFIGMAP)).await?;
    let stale = s.ok(&["get", "cm", "web", "-o", "json"]).await?;
    s.ok(&["label", "cm", "web", "changed=yes"]).await?;
    let replaced = s.kubectl_in(&["replace", "-f", "-"], Some(&stale)).await?;
    ensure!(!replaced.ok, "a stale replace succeeded");
    ensure!(
        replaced.stderr.contains("Operation cannot be fulfilled on configmaps \"web\": the object has been modified; please apply your changes to the latest version and try again"),
        "{}",
        replaced.stderr
    );
    let generated = s
        .kubectl_in(
            &["create", "-o", "name", "-f", "-"],
            Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: gen-\n"),
        )
        .await?;
    ensure!(
        generated.ok
            && generated.stdout.trim().starts_with("configmap/gen-")
            && generated.stdout.trim().len() == "configmap/gen-".len() + 5,
        "{}",
        generated.stdout
    );
    Ok(())
}

async fn lists_come_in_chunks_with_continue_tokens(s: TestServer) -> Result<()> {
    for i in 0..7 {
        let body = format!(r#"{{"metadata":{{"name":"cm-{i}"}}}}"#);
        let (code, _) = s
            .curl(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                Some(&body),
                "application/json",
                true,
            )
            .await?;
        ensure!(code == 201);
    }
    // Seven and the namespace's kube-root-ca.crt.
    let all = s.ok(&["get", "cm", "--chunk-size=2", "-o", "name"]).await?;
    ensure!(all.lines().count() == 8, "{all}");
    let (_, body) =
        s.curl("GET", "/api/v1/namespaces/default/configmaps?limit=3", None, "", true).await?;
    let page: Value = serde_json::from_str(&body)?;
    ensure!(
        page["items"].as_array().map(Vec::len) == Some(3)
            && page["metadata"]["remainingItemCount"] == 5,
        "{page}"
    );
    let token = page["metadata"]["continue"].as_str().unwrap_or_default().to_owned();
    let (_, body) = s
        .curl(
            "GET",
            &format!("/api/v1/namespaces/default/configmaps?limit=10&continue={token}"),
            None,
            "",
            true,
        )
        .await?;
    let rest: Value = serde_json::from_str(&body)?;
    ensure!(
        rest["items"].as_array().map(Vec::len) == Some(5) && rest["metadata"]["continue"].is_null(),
        "{rest}"
    );
    let (code, body) = s
        .curl("GET", "/api/v1/namespaces/default/configmaps?continue=garbage", None, "", true)
        .await?;
    ensure!(code == 400, "{code} {body}");
    Ok(())
}

/// The typed commands send protobuf bodies; each must create what it says.
async fn typed_create_commands(s: TestServer) -> Result<()> {
    let commands: &[(&[&str], &str)] = &[
        (&["create", "configmap", "web", "--from-literal=a=1"], "configmap/web created"),
        (&["create", "secret", "generic", "s", "--from-literal=p=q"], "secret/s created"),
        (
            &["create", "deployment", "web", "--image=nginx:1.25", "--replicas=2", "--port=80"],
            "deployment.apps/web created",
        ),
        (&["create", "namespace", "team"], "namespace/team created"),
        (&["create", "service", "clusterip", "web", "--tcp=80:8080"], "service/web created"),
        (&["create", "job", "j", "--image=busybox", "--", "echo", "hi"], "job.batch/j created"),
        (
            &["create", "cronjob", "c", "--image=busybox", "--schedule=*/5 * * * *"],
            "cronjob.batch/c created",
        ),
        (
            &["create", "role", "r", "--verb=get", "--resource=pods"],
            "role.rbac.authorization.k8s.io/r created",
        ),
        (&["create", "serviceaccount", "sa"], "serviceaccount/sa created"),
        (&["run", "nginx", "--image=nginx"], "pod/nginx created"),
        (&["expose", "deployment", "web", "--port=8080", "--name=web2"], "service/web2 exposed"),
    ];
    for (args, printed) in commands {
        let out = s.kubectl(args).await?;
        ensure!(
            out.ok && out.stdout.trim() == *printed,
            "kubectl {}: {}{}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
    }
    let data = s.ok(&["get", "secret", "s", "-o", "jsonpath={.data.p}"]).await?;
    ensure!(data == "cQ==", "secret data arrives base64-encoded: {data}");
    let deployment = s
        .ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].ports[0].containerPort}",
        ])
        .await?;
    ensure!(deployment == "2 80", "{deployment}");
    let selector = s
        .ok(&["get", "svc", "web2", "-o", "jsonpath={.spec.selector.app} {.spec.ports[0].port}"])
        .await?;
    ensure!(selector == "web 8080", "{selector}");
    Ok(())
}

async fn invalid_objects_are_explained(s: TestServer) -> Result<()> {
    let mismatch = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: b}}\n    spec: {containers: [{name: c, image: nginx}]}\n";
    let out = s.kubectl_in(&["apply", "-f", "-"], Some(mismatch)).await?;
    ensure!(
        !out.ok
            && out.stderr.contains(
                "The Deployment \"d\" is invalid: spec.template.metadata.labels: Invalid value"
            )
            && out.stderr.contains("`selector` does not match template `labels`"),
        "{}",
        out.stderr
    );
    let frozen = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: frozen}\nimmutable: true\ndata: {a: \"1\"}\n";
    ensure!(s.kubectl_in(&["apply", "-f", "-"], Some(frozen)).await?.ok);
    let out = s.kubectl(&["patch", "cm", "frozen", "-p", r#"{"data":{"a":"2"}}"#]).await?;
    ensure!(
        !out.ok
            && out.stderr.contains("data: Forbidden: field is immutable when `immutable` is set"),
        "{}",
        out.stderr
    );
    s.ok(&["run", "p", "--image=busybox"]).await?;
    let out = s
        .kubectl(&[
            "patch",
            "pod",
            "p",
            "-p",
            r#"{"spec":{"containers":[{"name":"p","args":["x"]}]}}"#,
        ])
        .await?;
    ensure!(
        !out.ok
            && out.stderr.contains("spec: Forbidden: pod updates may not change fields other than"),
        "{}",
        out.stderr
    );
    ensure!(
        s.ok(&["set", "image", "pod/p", "p=busybox:1.36"]).await?.trim() == "pod/p image updated"
    );
    Ok(())
}

async fn whoami_names_the_certificate_user(s: TestServer) -> Result<()> {
    let out = s.ok(&["auth", "whoami"]).await?;
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    ensure!(rows.first().is_some_and(|r| r == &["ATTRIBUTE", "VALUE"]), "{out}");
    ensure!(rows.iter().any(|r| r == &["Username", "system:admin"]), "{out}");
    ensure!(
        rows.iter().any(|r| r == &["Groups", "[system:masters", "system:authenticated]"]),
        "{out}"
    );
    Ok(())
}

with_each_kubectl!(
    version_and_discovery,
    system_namespaces_exist_and_print_like_upstream,
    configmap_lifecycle_in_every_output_format,
    watch_shows_added_modified_deleted,
    bad_requests_get_upstream_statuses,
    stale_updates_conflict_and_generate_name_works,
    lists_come_in_chunks_with_continue_tokens,
    typed_create_commands,
    invalid_objects_are_explained,
    whoami_names_the_certificate_user,
);

/// The `reason` of a Status body.
fn reason(body: &str) -> String {
    let status: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    status["reason"].as_str().unwrap_or_default().to_owned()
}

/// upstream's `test/cmd` autoscale: HPAs are one object read as `autoscaling/v1` or
/// `v2`, converted as upstream converts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaled_deployments_read_back_in_either_version() -> Result<()> {
    let s = TestServer::start().await?;
    s.ok(&["create", "deployment", "x", "--image=nginx"]).await?;
    s.ok(&["autoscale", "deployment", "x", "--max=3", "--cpu-percent=70"]).await?;
    let path = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/x";
    let v2: serde_json::Value = serde_json::from_str(&s.ok(&["get", "--raw", path]).await?)?;
    let cpu = |percent: i64| serde_json::json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}}}]);
    ensure!(
        v2["apiVersion"] == "autoscaling/v2"
            && v2["spec"]["minReplicas"] == 1
            && v2["spec"]["maxReplicas"] == 3
            && v2["spec"]["metrics"] == cpu(70),
        "{v2}"
    );
    let v1: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "--raw", &path.replace("/v2/", "/v1/")]).await?)?;
    ensure!(
        v1["spec"]["targetCPUUtilizationPercentage"] == 70 && v1["spec"].get("metrics").is_none(),
        "{v1}"
    );
    // Without a target, 80 % CPU.
    s.ok(&["create", "deployment", "y", "--image=nginx"]).await?;
    s.ok(&["autoscale", "deployment", "y", "--max=2"]).await?;
    let y: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "--raw", &path.replace("/x", "/y")]).await?)?;
    ensure!(y["spec"]["metrics"] == cpu(80) && y["spec"]["minReplicas"] == 1, "{y}");
    // What v1 cannot hold survives a v1 client's read and replace.
    let hpa = r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: z}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: x}
  maxReplicas: 5
  metrics:
  - type: Pods
    pods:
      metric: {name: qps}
      target: {type: AverageValue, averageValue: "10"}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 60}
"#;
    let out = s.kubectl_in(&["create", "-f", "-"], Some(hpa)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let as_v1 =
        s.ok(&["get", "horizontalpodautoscalers.v1.autoscaling", "z", "-o", "json"]).await?;
    let parsed: serde_json::Value = serde_json::from_str(&as_v1)?;
    ensure!(
        parsed["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"]
            == r#"[{"type":"Pods","pods":{"metricName":"qps","targetAverageValue":"10"}}]"#,
        "{parsed}"
    );
    let out = s
        .kubectl_in(
            &["replace", "-f", "-"],
            Some(&as_v1.replace("\"maxReplicas\": 5", "\"maxReplicas\": 6")),
        )
        .await?;
    ensure!(out.ok, "{}", out.stderr);
    let z: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "--raw", &path.replace("/x", "/z")]).await?)?;
    ensure!(
        z["spec"]["maxReplicas"] == 6
            && z["spec"]["metrics"][0]["pods"]["metric"]["name"] == "qps"
            && z["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 60
            && z["metadata"].get("annotations").is_none(),
        "{z}"
    );
    Ok(())
}

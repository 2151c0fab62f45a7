//! The everyday kubectl workflows on a Deployment: apply (twice, with a change), diff,
//! edit, scale, explain, describe, delete and wait — and field validation.

mod common;

use anyhow::{Result, ensure};
use common::TestServer;

fn deployment(image: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: {image}
        ports: [{{containerPort: 80}}]
        env: [{{name: A, value: "1"}}]
"#
    )
}

async fn apply_diff_edit_scale_describe_delete(s: TestServer) -> Result<()> {
    let first = s.kubectl_in(&["apply", "-f", "-"], Some(&deployment("nginx:1.25", 2))).await?;
    ensure!(
        first.ok && first.stdout.trim() == "deployment.apps/web created",
        "{} {}",
        first.stdout,
        first.stderr
    );
    let wide = s.ok(&["get", "deploy", "-o", "wide"]).await?;
    let header: Vec<&str> = wide.lines().next().unwrap_or("").split_whitespace().collect();
    ensure!(
        header
            == [
                "NAME",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR"
            ],
        "{wide}"
    );
    ensure!(
        wide.lines().nth(1).is_some_and(|l| l.contains("0/2")
            && l.contains("nginx:1.25")
            && l.contains("app=web")),
        "{wide}"
    );

    // diff shows the change without making it; apply makes it and bumps the generation.
    let diff = s.kubectl_in(&["diff", "-f", "-"], Some(&deployment("nginx:1.26", 2))).await?;
    ensure!(
        diff.stdout.contains("-        image: nginx:1.25")
            && diff.stdout.contains("+        image: nginx:1.26"),
        "{}{}",
        diff.stdout,
        diff.stderr
    );
    ensure!(s.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.generation}"]).await? == "1");
    let second = s.kubectl_in(&["apply", "-f", "-"], Some(&deployment("nginx:1.26", 2))).await?;
    ensure!(
        second.ok && second.stdout.trim() == "deployment.apps/web configured",
        "{} {}",
        second.stdout,
        second.stderr
    );
    let state = s.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.generation} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[0].name}"]).await?;
    ensure!(state == "2 nginx:1.26 A", "{state}");

    let edit = tokio::process::Command::new(&s.kubectl_bin)
        .args(["edit", "deploy", "web"])
        .env("KUBECONFIG", &s.kubeconfig)
        .env("KUBE_EDITOR", "sed -i s/replicas:\\ 2/replicas:\\ 3/")
        .output()
        .await?;
    ensure!(edit.status.success(), "{}", String::from_utf8_lossy(&edit.stderr));
    ensure!(s.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]).await? == "3");

    ensure!(
        s.ok(&["scale", "deploy", "web", "--replicas=5"]).await?.trim()
            == "deployment.apps/web scaled"
    );
    let scale =
        s.ok(&["get", "--raw", "/apis/apps/v1/namespaces/default/deployments/web/scale"]).await?;
    let scale: serde_json::Value = serde_json::from_str(&scale)?;
    ensure!(
        scale["kind"] == "Scale"
            && scale["spec"]["replicas"] == 5
            && scale["status"]["selector"] == "app=web",
        "{scale}"
    );

    let described = s.ok(&["describe", "deploy", "web"]).await?;
    ensure!(
        described.contains("Name:") && described.contains("web") && described.contains("5 desired"),
        "{described}"
    );

    ensure!(
        s.ok(&["delete", "deploy", "web"])
            .await?
            .trim()
            .starts_with("deployment.apps \"web\" deleted")
    );
    let waited = s.kubectl(&["wait", "--for=delete", "deploy/web", "--timeout=5s"]).await?;
    ensure!(waited.ok || waited.stderr.contains("not found"), "{}", waited.stderr);
    Ok(())
}

async fn unknown_fields_are_refused_or_warned_as_asked(s: TestServer) -> Result<()> {
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  labelz: {a: b}\ndata: {x: \"1\"}\ndta: {}\n";
    let strict = s.kubectl_in(&["apply", "-f", "-"], Some(bad)).await?;
    ensure!(!strict.ok, "an unknown field passed strict validation");
    ensure!(
        strict.stderr.contains("Error from server (BadRequest)")
            && strict.stderr.contains("ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"dta\", unknown field \"metadata.labelz\""),
        "{}",
        strict.stderr
    );
    let warned = s.kubectl_in(&["create", "--validate=warn", "-f", "-"], Some(bad)).await?;
    ensure!(warned.ok, "{}", warned.stderr);
    ensure!(
        warned.stderr.contains("Warning: unknown field \"dta\"")
            && warned.stderr.contains("Warning: unknown field \"metadata.labelz\""),
        "{}",
        warned.stderr
    );
    let stored = s.ok(&["get", "cm", "bad", "-o", "json"]).await?;
    ensure!(
        !stored.contains("dta") && !stored.contains("labelz"),
        "unknown fields were stored: {stored}"
    );

    let wrong_type = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: many, selector: {}, template: {}}\n";
    let out = s.kubectl_in(&["create", "--validate=false", "-f", "-"], Some(wrong_type)).await?;
    ensure!(
        !out.ok
            && out.stderr.contains("Error from server (BadRequest)")
            && out.stderr.contains("spec.replicas"),
        "{}",
        out.stderr
    );
    Ok(())
}

async fn explain_reads_the_openapi_schemas(s: TestServer) -> Result<()> {
    let explained = s.ok(&["explain", "deployment.spec.replicas"]).await?;
    ensure!(
        explained.contains("KIND:       Deployment")
            && explained.contains("GROUP:      apps")
            && explained.contains("FIELD: replicas <integer>"),
        "{explained}"
    );
    let pod = s.ok(&["explain", "pods.spec.containers"]).await?;
    ensure!(pod.contains("FIELD: containers <[]Container>") && pod.contains("image"), "{pod}");
    let core: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "--raw", "/openapi/v3/api/v1"]).await?)?;
    let containers =
        &core["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    ensure!(
        containers["x-kubernetes-patch-strategy"] == "merge"
            && containers["x-kubernetes-patch-merge-key"] == "name",
        "{containers}"
    );
    ensure!(
        containers["x-kubernetes-list-type"] == "map"
            && containers["x-kubernetes-list-map-keys"] == serde_json::json!(["name"]),
        "{containers}"
    );
    let index = s.ok(&["get", "--raw", "/openapi/v3"]).await?;
    ensure!(index.contains("\"apis/apps/v1\"") && index.contains("serverRelativeURL"), "{index}");
    Ok(())
}

async fn objects_read_back_with_upstream_defaults(s: TestServer) -> Result<()> {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    resources: {limits: {cpu: 100m, memory: 64Mi}}\n";
    let out = s.kubectl_in(&["apply", "-f", "-"], Some(pod)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let fields = s
        .ok(&["get", "pod", "p", "-o", "jsonpath={.spec.restartPolicy} {.spec.dnsPolicy} {.spec.schedulerName} {.spec.terminationGracePeriodSeconds} {.spec.containers[0].imagePullPolicy} {.spec.containers[0].terminationMessagePath} {.spec.containers[0].resources.requests.cpu} {.status.phase} {.status.qosClass} {.metadata.generation}"])
        .await?;
    ensure!(
        fields
            == "Always ClusterFirst default-scheduler 30 Always /dev/termination-log 100m Pending Guaranteed 1",
        "{fields}"
    );
    let table = s.ok(&["get", "pods", "-o", "wide"]).await?;
    let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
    ensure!(
        header
            == [
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED",
                "NODE",
                "READINESS",
                "GATES"
            ],
        "{table}"
    );
    ensure!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().take(4).eq(["p", "0/1", "Pending", "0"])),
        "{table}"
    );
    // A job gets a selector of its own uid, and its template the labels that match.
    s.ok(&["create", "job", "j", "--image=busybox", "--", "true"]).await?;
    let job = s.ok(&["get", "job", "j", "-o", "jsonpath={.metadata.uid} {.spec.selector.matchLabels.batch\\.kubernetes\\.io/controller-uid} {.spec.template.metadata.labels.job-name}"]).await?;
    let parts: Vec<&str> = job.split(' ').collect();
    ensure!(parts.len() == 3 && parts[0] == parts[1] && parts[2] == "j", "{job}");
    let pvc = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n";
    ensure!(s.kubectl_in(&["apply", "-f", "-"], Some(pvc)).await?.ok);
    ensure!(
        s.ok(&["get", "pvc", "data", "-o", "jsonpath={.status.phase} {.spec.volumeMode}"]).await?
            == "Pending Filesystem"
    );
    let refused = s.kubectl(&["delete", "namespace", "default"]).await?;
    ensure!(
        !refused.ok
            && refused
                .stderr
                .contains("namespaces \"default\" is forbidden: this namespace may not be deleted"),
        "{}",
        refused.stderr
    );
    // An unbound pod is deleted at once; there is no kubelet to wait for.
    ensure!(s.ok(&["delete", "pod", "p"]).await?.trim().starts_with("pod \"p\" deleted"));
    Ok(())
}

with_each_kubectl!(
    apply_diff_edit_scale_describe_delete,
    unknown_fields_are_refused_or_warned_as_asked,
    explain_reads_the_openapi_schemas,
    objects_read_back_with_upstream_defaults,
);

//! CustomResourceDefinitions with the real kubectl: a created CRD is established and its
//! resource served — discovery, CRUD, printer columns, status and scale subresources,
//! schema validation, pruning and defaulting, CEL rules — and deleting it deletes its
//! objects first.

mod common;

use anyhow::{Context, Result, ensure};
use common::{TestServer, WIDGET_CRD as CRD};

fn widget(name: &str, spec: &str) -> String {
    format!("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

const W1_SPEC: &str = "  color: red\n  replicas: 3\n  port: http\n  bogus: dropped\n  owner: {name: ann, email: ann@example.com}\n  ports: [{name: web, number: 80}]\n";

async fn apply(s: &TestServer, yaml: &str) -> Result<common::Out> {
    s.kubectl_in(&["apply", "-f", "-"], Some(yaml)).await
}

async fn a_crd_is_established_and_its_resource_served(s: TestServer) -> Result<()> {
    s.establish_widgets().await?;
    let status = s
        .ok(&[
            "get",
            "crd",
            "widgets.example.com",
            "-o",
            "jsonpath={.status.acceptedNames.kind} {.status.conditions[?(@.type==\"NamesAccepted\")].status} {.status.storedVersions} {.metadata.finalizers}",
        ])
        .await?;
    ensure!(
        status == r#"Widget True ["v1"] ["customresourcecleanup.apiextensions.k8s.io"]"#,
        "{status}"
    );
    let resources = s.ok(&["api-resources", "--api-group=example.com", "--no-headers"]).await?;
    let row: Vec<&str> = resources.split_whitespace().collect();
    ensure!(row == ["widgets", "wd", "example.com/v1", "true", "Widget"], "{resources}");

    let err = apply(&s, &widget("w1", W1_SPEC)).await?.stderr;
    ensure!(
        err.contains(r#"Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field "spec.bogus""#),
        "{err}"
    );
    let out = s
        .kubectl_in(&["apply", "--validate=warn", "-f", "-"], Some(&widget("w1", W1_SPEC)))
        .await?;
    ensure!(out.ok && out.stdout.trim() == "widget.example.com/w1 created", "{}", out.stderr);
    ensure!(out.stderr.contains(r#"unknown field "spec.bogus""#), "{}", out.stderr);
    // Pruned, defaulted, and printed with the version's columns.
    let spec = s.ok(&["get", "wd", "w1", "-o", "jsonpath={.spec}"]).await?;
    let spec: serde_json::Value = serde_json::from_str(&spec)?;
    ensure!(spec.get("bogus").is_none() && spec["minReplicas"] == 0, "{spec}");
    ensure!(spec["port"] == "http" && spec["ports"][0]["number"] == 80, "{spec}");
    let table = s.ok(&["get", "widgets"]).await?;
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    ensure!(lines[0] == ["NAME", "REPLICAS", "COLOR", "READY", "AGE"], "{table}");
    // A column whose path finds nothing is blank, as upstream's.
    ensure!(lines[1].len() == 4 && lines[1][..3] == ["w1", "3", "red"], "{table}");
    ensure!(s.ok(&["get", "gadgets", "-o", "name"]).await?.trim() == "widget.example.com/w1");
    // selectableFields select.
    let out = s.ok(&["get", "widgets", "--field-selector=spec.color=red", "-o", "name"]).await?;
    ensure!(out.trim() == "widget.example.com/w1", "{out}");
    let out =
        s.kubectl(&["get", "widgets", "--field-selector=spec.color=blue", "-o", "name"]).await?;
    ensure!(out.ok && out.stdout.is_empty(), "{}", out.stderr);
    let err = s.fails(&["get", "widgets", "--field-selector=spec.replicas=3"]).await?;
    ensure!(
        err.contains(r#""spec.replicas" is not a known field selector: only "metadata.name", "metadata.namespace", "spec.color""#),
        "{err}"
    );
    // Every served version reads the same object.
    let other =
        s.ok(&["get", "widgets.v1beta1.example.com", "w1", "-o", "jsonpath={.apiVersion}"]).await?;
    ensure!(other == "example.com/v1beta1", "{other}");
    let beta = "apiVersion: example.com/v1beta1\nkind: Widget\nmetadata:\n  name: beta\nspec:\n  anything: goes\n";
    let out =
        s.kubectl_in(&["create", "-f", "-", "-o", "jsonpath={.apiVersion}"], Some(beta)).await?;
    ensure!(out.ok && out.stdout == "example.com/v1beta1", "{} {}", out.stdout, out.stderr);
    s.ok(&["delete", "widgets.v1beta1.example.com", "beta"]).await?;

    // Spec and status change separately.
    let out = s
        .ok(&[
            "patch",
            "widget",
            "w1",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":5},"status":{"replicas":9}}"#,
        ])
        .await?;
    ensure!(out.trim() == "widget.example.com/w1 patched", "{out}");
    s.ok(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":5,"selector":"app=w1","conditions":[{"type":"Ready","status":"True"}]}}"#,
    ])
    .await?;
    let got = s
        .ok(&[
            "get",
            "widget",
            "w1",
            "-o",
            "jsonpath={.spec.replicas} {.status.replicas} {.metadata.generation}",
        ])
        .await?;
    ensure!(got == "5 5 2", "{got}");
    let table = s.ok(&["get", "widgets", "--no-headers"]).await?;
    ensure!(table.split_whitespace().take(4).collect::<Vec<_>>() == ["w1", "5", "red", "True"]);
    // Strategic merge patch is not for custom resources, as upstream says.
    let err = s.fails(&["patch", "widget", "w1", "-p", r#"{"spec":{"replicas":4}}"#]).await?;
    ensure!(err.contains("application/strategic-merge-patch+json is not supported"), "{err}");

    let err = s.fails(&["scale", "widget", "w1", "--replicas=11"]).await?;
    ensure!(
        err.contains("spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"),
        "{err}"
    );
    let out = s.ok(&["scale", "widget", "w1", "--replicas=7"]).await?;
    ensure!(out.trim() == "widget.example.com/w1 scaled", "{out}");
    let scale =
        s.ok(&["get", "--raw", "/apis/example.com/v1/namespaces/default/widgets/w1/scale"]).await?;
    let scale: serde_json::Value = serde_json::from_str(&scale)?;
    ensure!(scale["spec"]["replicas"] == 7 && scale["status"]["selector"] == "app=w1", "{scale}");

    // Server-side apply owns fields of custom resources too; a new object's status is
    // the server's when the status subresource is on.
    let applied = widget("w2", "  color: blue\n  replicas: 2\n") + "status:\n  replicas: 4\n";
    let out = s
        .kubectl_in(&["apply", "--server-side", "--field-manager=me", "-f", "-"], Some(&applied))
        .await?;
    ensure!(
        out.ok && out.stdout.trim() == "widget.example.com/w2 serverside-applied",
        "{}",
        out.stderr
    );
    let out = s
        .kubectl_in(
            &["apply", "--server-side", "--field-manager=me", "-f", "-"],
            Some(&widget("w2", "  color: green\n")),
        )
        .await?;
    ensure!(out.ok, "{}", out.stderr);
    let got = s
        .ok(&["get", "widget", "w2", "-o", "jsonpath={.spec.color} {.spec.replicas} {.status} {.metadata.managedFields[0].manager}"])
        .await?;
    ensure!(got == "green 1  me", "{got}");
    // The keyed list `ports` (x-kubernetes-list-map-keys: [name]) merges item by item:
    // two managers each own their port, and one that stops applying its port removes
    // that port only.
    let apply_as = |manager: &'static str, spec: &'static str| {
        let s = &s;
        async move {
            let flag = format!("--field-manager={manager}");
            let out = s
                .kubectl_in(
                    &["apply", "--server-side", &flag, "-f", "-"],
                    Some(&widget("w2", spec)),
                )
                .await?;
            ensure!(out.ok, "{}", out.stderr);
            anyhow::Ok(())
        }
    };
    apply_as("me", "  color: green\n  ports: [{name: web, number: 80}]\n").await?;
    apply_as("other", "  color: green\n  ports: [{name: metrics, number: 9090}]\n").await?;
    let ports = "jsonpath={.spec.ports[*].name}";
    ensure!(s.ok(&["get", "widget", "w2", "-o", ports]).await? == "web metrics");
    let out = s
        .kubectl_in(
            &["apply", "--server-side", "--field-manager=other", "-f", "-"],
            Some(&widget("w2", "  color: green\n  ports: [{name: web, number: 81}]\n")),
        )
        .await?;
    ensure!(
        !out.ok && out.stderr.contains("conflict with \"me\": .spec.ports[name=\"web\"].number"),
        "{}",
        out.stderr
    );
    apply_as("me", "  color: green\n").await?;
    ensure!(s.ok(&["get", "widget", "w2", "-o", ports]).await? == "metrics");

    // A default added to the schema later shows on objects already stored.
    let with_size = CRD.replace(
        "              minReplicas: {type: integer, default: 0}",
        "              minReplicas: {type: integer, default: 0}\n              size: {type: string, default: small}",
    );
    ensure!(apply(&s, &with_size).await?.ok);
    let mut sizes = String::new();
    for _ in 0..50 {
        sizes = s.ok(&["get", "widgets", "-o", "jsonpath={.items[*].spec.size}"]).await?;
        if sizes == "small small" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ensure!(sizes == "small small", "{sizes}");
    ensure!(s.ok(&["get", "widget", "w1", "-o", "jsonpath={.spec.size}"]).await? == "small");

    let yaml = s.ok(&["get", "widget", "w1", "-o", "yaml"]).await?;
    ensure!(yaml.contains("kind: Widget") && yaml.contains("replicas: 7"), "{yaml}");
    let out = s.ok(&["delete", "widget", "w1"]).await?;
    // Newer kubectl names the namespace.
    ensure!(out.trim().starts_with("widget.example.com \"w1\" deleted"), "{out}");
    ensure!(
        s.fails(&["get", "widget", "w1"]).await?.contains("widgets.example.com \"w1\" not found")
    );
    Ok(())
}

async fn custom_resources_are_explained_and_watched(s: TestServer) -> Result<()> {
    s.establish_widgets().await?;
    let explain = s.ok(&["explain", "widgets.spec"]).await?;
    ensure!(explain.contains("GROUP:      example.com"), "{explain}");
    ensure!(explain.contains("What the widget should be."), "{explain}");
    ensure!(explain.contains("color\t<string> -required-"), "{explain}");
    ensure!(explain.contains("replicas\t<integer>"), "{explain}");
    let explain = s.ok(&["explain", "widget"]).await?;
    ensure!(explain.contains("A widget of the example shop."), "{explain}");

    let out = apply(&s, &widget("marker", "  color: red\n")).await?;
    ensure!(out.ok, "{}", out.stderr);
    let mut watch = s.watch("widgets")?;
    ensure!(watch.next().await? == "ADDED marker");
    let out = apply(&s, &widget("w", "  color: green\n")).await?;
    ensure!(out.ok, "{}", out.stderr);
    ensure!(watch.next().await? == "ADDED w");
    s.ok(&["label", "widget", "w", "x=y"]).await?;
    ensure!(watch.next().await? == "MODIFIED w");
    s.ok(&["delete", "widget", "w"]).await?;
    ensure!(watch.next().await? == "DELETED w");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_validated_against_the_schema() -> Result<()> {
    let s = TestServer::start().await?;
    s.establish_widgets().await?;
    for (spec, message) in [
        (
            "  color: red\n  replicas: 20\n",
            "spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10",
        ),
        (
            "  color: purple\n",
            r#"spec.color: Unsupported value: "purple": supported values: "red", "green", "blue""#,
        ),
        ("  replicas: 2\n", "spec.color: Required value"),
        (
            "  color: red\n  replicas: 2\n  minReplicas: 3\n",
            r#"spec: Invalid value: "object": replicas must be at least minReplicas"#,
        ),
        (
            "  color: red\n  owner: {name: a-very-long-name}\n",
            "spec.owner.name: Too long: may not be more than 10 bytes",
        ),
        (
            "  color: red\n  owner: {email: nobody}\n",
            r#"spec.owner.email: Invalid value: "nobody": spec.owner.email in body should match '^[^@]+@[^@]+$'"#,
        ),
        (
            "  color: red\n  replicas: three\n",
            r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#,
        ),
        (
            "  color: red\n  port: [1]\n",
            r#"spec.port: Invalid value: "array": spec.port in body must be of type integer,string: "array""#,
        ),
        ("  color: red\n  ports: [{name: a}, {name: a}]\n", "spec.ports[1]: Duplicate value"),
    ] {
        let out = apply(&s, &widget("bad", spec)).await?;
        ensure!(!out.ok, "{spec} was accepted");
        ensure!(
            out.stderr.contains(r#"The Widget "bad" is invalid"#) && out.stderr.contains(message),
            "{spec}: {}",
            out.stderr
        );
    }
    // Transition rules see the old object on updates.
    ensure!(apply(&s, &widget("w", "  color: red\n")).await?.ok);
    let out = apply(&s, &widget("w", "  color: green\n")).await?;
    ensure!(
        out.stderr.contains(r#"spec.color: Invalid value: "string": color is immutable once red"#),
        "{}",
        out.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_crd_deletes_its_objects_first() -> Result<()> {
    let s = TestServer::start().await?;
    s.establish_widgets().await?;
    for name in ["a", "b"] {
        let out = apply(&s, &widget(name, "  color: blue\n")).await?;
        ensure!(out.ok, "{}", out.stderr);
    }
    s.ok(&["create", "namespace", "other"]).await?;
    // Quotas count custom resources.
    s.ok(&["create", "quota", "q", "-n", "other", "--hard=count/widgets.example.com=1"]).await?;
    let out = s
        .kubectl_in(&["apply", "-n", "other", "-f", "-"], Some(&widget("c", "  color: green\n")))
        .await?;
    ensure!(out.ok, "{}", out.stderr);
    let out = s
        .kubectl_in(&["apply", "-n", "other", "-f", "-"], Some(&widget("d", "  color: green\n")))
        .await?;
    ensure!(
        out.stderr.contains("exceeded quota: q, requested: count/widgets.example.com=1, used: count/widgets.example.com=1, limited: count/widgets.example.com=1"),
        "{}",
        out.stderr
    );
    let out = s.ok(&["delete", "crd", "widgets.example.com"]).await?;
    ensure!(out.trim().ends_with("\"widgets.example.com\" deleted"), "{out}");
    ensure!(s.fails(&["get", "crd", "widgets.example.com"]).await?.contains("not found"));
    // Not served any more (kubectl's discovery cache may still name it).
    let err = s.fails(&["get", "--raw", "/apis/example.com/v1"]).await?;
    ensure!(err.contains("the server could not find the requested resource"), "{err}");
    let err = s.fails(&["get", "widgets"]).await?;
    ensure!(
        err.contains("the server doesn't have a resource type \"widgets\"")
            || err.contains("the server could not find the requested resource"),
        "{err}"
    );
    // Defined again, it starts empty: the objects went with the definition.
    s.establish_widgets().await?;
    let all = s.kubectl(&["get", "widgets", "-A"]).await?;
    ensure!(all.ok && all.stdout.is_empty(), "{} {}", all.stdout, all.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_are_validated_and_a_terminating_crd_takes_no_new_objects() -> Result<()> {
    let s = TestServer::start().await?;
    // Each CRD is CRD with one replacement, refused with the message.
    let schema = "spec.versions[1].schema.openAPIV3Schema.properties[spec]";
    let replicas = format!("{schema}.properties[replicas].default");
    let refused = [
        (
            ("name: widgets.example.com", "name: widgets.example.org"),
            r#"metadata.name: Invalid value: "widgets.example.org": must be spec.names.plural+"."+spec.group"#.to_owned(),
        ),
        (
            ("            type: object\n            required: [color]", "            required: [color]"),
            format!("{schema}.type: Required value: must not be empty for specified object fields"),
        ),
        // Defaults must be valid values of their schema.
        (
            ("maximum: 10, default: 1}", "maximum: 10, default: 11}"),
            format!("{replicas}: Invalid value: 11: {replicas} in body should be less than or equal to 10"),
        ),
    ];
    for ((from, to), message) in refused {
        let out = apply(&s, &CRD.replace(from, to)).await?;
        ensure!(!out.ok && out.stderr.contains(&message), "{message}: {}", out.stderr);
    }

    // A cluster-scoped resource.
    let cluster = CRD
        .replace("scope: Namespaced", "scope: Cluster")
        .replace("widgets", "gizmos")
        .replace("widget", "gizmo")
        .replace("Widget", "Gizmo")
        .replace("[wd]", "[gz]");
    let out = apply(&s, &cluster).await?;
    ensure!(out.ok, "{}", out.stderr);
    s.ok(&["wait", "--for=condition=Established", "crd/gizmos.example.com", "--timeout=10s"])
        .await?;
    let gizmo =
        "apiVersion: example.com/v1\nkind: Gizmo\nmetadata:\n  name: g1\nspec:\n  color: red\n";
    let out = apply(&s, gizmo).await?;
    ensure!(out.ok && out.stdout.trim() == "gizmo.example.com/g1 created", "{}", out.stderr);
    let got =
        s.ok(&["get", "gz", "g1", "-o", "jsonpath={.metadata.namespace}|{.spec.replicas}"]).await?;
    ensure!(got == "|1", "{got}");

    // An object that holds on keeps its CRD terminating; no new objects meanwhile.
    s.establish_widgets().await?;
    let held = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\nspec:\n  color: red\n";
    ensure!(apply(&s, held).await?.ok);
    s.ok(&["delete", "crd", "widgets.example.com", "--wait=false"]).await?;
    s.ok(&["wait", "--for=condition=Terminating", "crd/widgets.example.com", "--timeout=10s"])
        .await?;
    let err = apply(&s, &widget("late", "  color: red\n")).await?.stderr;
    ensure!(
        err.contains("create is not supported on resources of kind \"widgets.example.com\""),
        "{err}"
    );
    s.ok(&["patch", "widget", "held", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#])
        .await?;
    s.ok(&["wait", "--for=delete", "crd/widgets.example.com", "--timeout=10s"]).await?;
    Ok(())
}

const POLICY: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: widget-limit}
spec:
  paramKind: {apiVersion: example.com/v1, kind: Widget}
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: [v1]
      operations: [CREATE]
      resources: [configmaps]
  validations:
  - expression: "size(object.data) <= params.spec.replicas"
    message: too many keys
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: widget-limit}
spec:
  policyName: widget-limit
  validationActions: [Deny]
  paramRef: {name: limits, namespace: default, parameterNotFoundAction: Deny}
  matchResources:
    objectSelector: {matchLabels: {checked: "yes"}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_policies_take_custom_resources_as_params() -> Result<()> {
    let s = TestServer::start().await?;
    s.establish_widgets().await?;
    ensure!(apply(&s, &widget("limits", "  color: red\n  replicas: 1\n")).await?.ok);
    let out = apply(&s, POLICY).await?;
    ensure!(out.ok, "{}", out.stderr);
    let mut denied = String::new();
    // Policies take effect shortly after they are written.
    for attempt in 0..100 {
        let cm = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{attempt}\n  labels: {{checked: \"yes\"}}\ndata: {{a: \"1\", b: \"2\"}}\n"
        );
        let out = s.kubectl_in(&["create", "-f", "-"], Some(&cm)).await?;
        if !out.ok {
            denied = out.stderr;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ensure!(
        denied.contains("ValidatingAdmissionPolicy 'widget-limit' with binding 'widget-limit' denied request: too many keys"),
        "{denied}"
    );
    Ok(())
}

with_each_kubectl!(
    a_crd_is_established_and_its_resource_served,
    custom_resources_are_explained_and_watched,
);

/// kube-rs, as operators use it: the resource found by discovery, dynamic objects,
/// server-side apply and a status patch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_drives_custom_resources_through_discovery() -> Result<()> {
    use kube::api::{Api, DynamicObject, Patch, PatchParams};
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let s = TestServer::start().await?;
    s.establish_widgets().await?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&s.kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let discovery = kube::Discovery::new(client.clone()).run().await?;
    let (resource, capabilities) = discovery
        .groups()
        .find(|g| g.name() == "example.com")
        .context("example.com is not discovered")?
        .recommended_kind("Widget")
        .context("Widget is not discovered")?;
    ensure!(resource.version == "v1" && resource.plural == "widgets", "{resource:?}");
    ensure!(
        capabilities.subresources.iter().any(|(r, _)| r.plural == "widgets/status")
            || capabilities.subresources.iter().any(|(r, _)| r.plural == "status")
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &resource);
    let applied: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": { "name": "op" }, "spec": { "color": "green" },
    }))?;
    let params = PatchParams::apply("operator").force();
    let created = api.patch("op", &params, &Patch::Apply(&applied)).await?;
    ensure!(created.data["spec"]["replicas"] == 1, "{:?}", created.data);
    let status = serde_json::json!({ "status": { "replicas": 1 } });
    let patched = api.patch_status("op", &PatchParams::default(), &Patch::Merge(&status)).await?;
    ensure!(patched.data["status"]["replicas"] == 1, "{:?}", patched.data);
    let listed = api.list(&Default::default()).await?;
    ensure!(
        listed.items.len() == 1
            && listed.items[0].types.as_ref().is_some_and(|t| t.kind == "Widget")
    );
    Ok(())
}

/// A created definition comes back with the status upstream's strategy gives it; a
/// custom resource with a status subresource drops the status it was created with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_objects_carry_only_the_status_the_server_sets() -> Result<()> {
    let s = TestServer::start().await?;
    let out = s.kubectl_in(&["create", "-f", "-", "-o", "json"], Some(CRD)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let crd: serde_json::Value = serde_json::from_str(&out.stdout)?;
    ensure!(
        crd["status"]
            == serde_json::json!({ "conditions": [], "acceptedNames": { "plural": "", "kind": "" }, "storedVersions": ["v1"] }),
        "{}",
        crd["status"]
    );
    s.ok(&["wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=10s"])
        .await?;
    let with_status =
        format!("{}status: {{replicas: 7}}\n", widget("w", "  color: red\n  replicas: 1\n"));
    let out = s.kubectl_in(&["create", "-f", "-", "-o", "json"], Some(&with_status)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let widget: serde_json::Value = serde_json::from_str(&out.stdout)?;
    ensure!(widget.get("status").is_none(), "{widget}");
    Ok(())
}

/// A request to a deprecated version is answered with upstream's warning: the CRD's
/// `deprecationWarning`, else "<group>/<version> <Kind> is deprecated", naming the newest
/// served version that is not (upstream's test/cmd get.sh, run_deprecated_api_tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprecated_versions_warn() -> Result<()> {
    let s = TestServer::start().await?;
    let version = |name: &str, extra: &str| {
        format!(
            "  - name: {name}\n    served: true\n    storage: {}\n{extra}    schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}\n",
            name == "v1"
        )
    };
    let crd = format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: olds.example.com\nspec:\n  group: example.com\n  scope: Namespaced\n  names: {{plural: olds, kind: Old}}\n  versions:\n{}{}{}",
        version("v1", ""),
        version("v1beta1", "    deprecated: true\n"),
        version("v1alpha1", "    deprecated: true\n    deprecationWarning: use v1, really\n"),
    );
    let out = s.kubectl_in(&["create", "-f", "-"], Some(&crd)).await?;
    ensure!(out.ok, "{}", out.stderr);
    s.ok(&["wait", "--for=condition=Established", "crd/olds.example.com", "--timeout=10s"]).await?;
    let mut warned = String::new();
    for _ in 0..50 {
        let out = s.kubectl(&["get", "olds.v1beta1.example.com"]).await?;
        if out.ok {
            warned = out.stderr;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ensure!(
        warned.contains("Warning: example.com/v1beta1 Old is deprecated; use example.com/v1 Old"),
        "{warned}"
    );
    let out = s.kubectl(&["get", "olds.v1alpha1.example.com", "--warnings-as-errors"]).await?;
    ensure!(!out.ok && out.stderr.contains("Warning: use v1, really"), "{}", out.stderr);
    let out = s.kubectl(&["get", "olds.v1.example.com"]).await?;
    ensure!(out.ok && !out.stderr.contains("Warning"), "{}", out.stderr);
    Ok(())
}

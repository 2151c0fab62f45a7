//! The kube-rs client, as controllers and operators use it, against the API server:
//! typed objects, patches, errors and a watcher.

mod common;

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use common::TestServer;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use keelson_api::k8s_openapi;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use serde_json::json;

async fn client(s: &TestServer) -> Result<kube::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = Kubeconfig::read_from(&s.kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

fn configmap(name: &str) -> Result<ConfigMap> {
    Ok(serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "app": "kube-rs" } },
        "data": { "k": "v" },
    }))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_crud_patches_and_errors() -> Result<()> {
    let s = TestServer::start().await?;
    let api: Api<ConfigMap> = Api::namespaced(client(&s).await?, "default");

    let created = api.create(&PostParams::default(), &configmap("one")?).await?;
    ensure!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    let fetched = api.get("one").await?;
    ensure!(fetched.data.as_ref().and_then(|d| d.get("k")).map(String::as_str) == Some("v"));

    let listed = api.list(&ListParams::default().labels("app=kube-rs")).await?;
    ensure!(listed.items.len() == 1 && listed.metadata.resource_version.is_some());

    let merged = api
        .patch("one", &PatchParams::default(), &Patch::Merge(json!({ "data": { "m": "1" } })))
        .await?;
    ensure!(merged.data.as_ref().is_some_and(|d| d.len() == 2));
    let strategic = api
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Strategic(json!({ "metadata": { "labels": { "s": "2" } } })),
        )
        .await?;
    ensure!(strategic.metadata.labels.as_ref().is_some_and(|l| l.get("s").is_some()));

    // A stale replace is a typed 409 Conflict.
    let mut stale = fetched.clone();
    stale.data = None;
    match api.replace("one", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(status)) => {
            ensure!(status.code == 409 && status.reason == "Conflict", "{status:?}")
        }
        other => bail!("expected a conflict, got {other:?}"),
    }
    // Creating it again is AlreadyExists; a missing one is NotFound.
    match api.create(&PostParams::default(), &configmap("one")?).await {
        Err(kube::Error::Api(status)) => {
            ensure!(status.code == 409 && status.reason == "AlreadyExists")
        }
        other => bail!("expected AlreadyExists, got {other:?}"),
    }
    match api.get("missing").await {
        Err(kube::Error::Api(status)) => ensure!(status.code == 404 && status.reason == "NotFound"),
        other => bail!("expected NotFound, got {other:?}"),
    }

    api.delete("one", &DeleteParams::default()).await?;
    ensure!(api.get_opt("one").await?.is_none());

    // Typed workloads come back defaulted.
    let deployments: Api<Deployment> = Api::namespaced(client(&s).await?, "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } }, "spec": { "containers": [{ "name": "web", "image": "nginx:1.25" }] } },
        },
    }))?;
    let created = deployments.create(&PostParams::default(), &deployment).await?;
    let spec = created.spec.unwrap_or_default();
    ensure!(spec.replicas == Some(1) && spec.revision_history_limit == Some(10));
    ensure!(spec.template.spec.and_then(|p| p.restart_policy).as_deref() == Some("Always"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_sees_the_initial_state_and_changes() -> Result<()> {
    let s = TestServer::start().await?;
    let api: Api<ConfigMap> = Api::namespaced(client(&s).await?, "default");
    api.create(&PostParams::default(), &configmap("before")?).await?;

    let mut stream = Box::pin(watcher(api.clone(), watcher::Config::default()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // The initial state, to its end; then a change, which the watch must bring.
    let mut seen_initial = false;
    loop {
        match tokio::time::timeout_at(deadline, next(&mut stream)).await?? {
            watcher::Event::InitApply(cm) if cm.metadata.name.as_deref() == Some("before") => {
                seen_initial = true
            }
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    ensure!(seen_initial, "the initial state lacked the existing object");
    api.create(&PostParams::default(), &configmap("after")?).await?;
    loop {
        if let watcher::Event::Apply(cm) =
            tokio::time::timeout_at(deadline, next(&mut stream)).await??
            && cm.metadata.name.as_deref() == Some("after")
        {
            return Ok(());
        }
    }
}

async fn next<S>(stream: &mut S) -> Result<watcher::Event<ConfigMap>>
where
    S: futures_util::Stream<Item = Result<watcher::Event<ConfigMap>, watcher::Error>> + Unpin,
{
    use futures_util::StreamExt;
    match stream.next().await {
        Some(event) => Ok(event?),
        None => bail!("the watcher ended"),
    }
}

/// A controller's reconcile loop as kube-rs writes it: `Patch::Apply` with its own field
/// manager, conflicts with another manager, and `force` to take fields over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_apply_with_their_own_field_manager() -> Result<()> {
    let s = TestServer::start().await?;
    let api: Api<ConfigMap> = Api::namespaced(client(&s).await?, "default");
    let desired = |value: &str| json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "owned" }, "data": { "mode": value } });
    let params = PatchParams::apply("my-controller");
    let created = api.patch("owned", &params, &Patch::Apply(desired("fast"))).await?;
    let fields = created.metadata.managed_fields.unwrap_or_default();
    ensure!(
        fields.len() == 1
            && fields[0].manager.as_deref() == Some("my-controller")
            && fields[0].operation.as_deref() == Some("Apply"),
        "{fields:?}"
    );
    // The same apply again is a no-op, not a conflict.
    api.patch("owned", &params, &Patch::Apply(desired("fast"))).await?;
    let rival = PatchParams::apply("other-controller");
    match api.patch("owned", &rival, &Patch::Apply(desired("slow"))).await {
        Err(kube::Error::Api(status)) => ensure!(
            status.code == 409
                && status.message.contains(r#"conflict with "my-controller": .data.mode"#),
            "{status:?}"
        ),
        other => bail!("expected a conflict, got {other:?}"),
    }
    let taken = api.patch("owned", &rival.force(), &Patch::Apply(desired("slow"))).await?;
    ensure!(taken.data.unwrap_or_default().get("mode").map(String::as_str) == Some("slow"));
    Ok(())
}

/// kube-rs lists schedulable nodes with `spec.unschedulable=false`: upstream's field set
/// reads an unset bool as `false`. Uncordoning with `unschedulable: false` leaves the
/// field out, as Go's encoder drops an `omitempty` zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unset_fields_select_as_their_zero_value_and_are_not_kept() -> Result<()> {
    let s = TestServer::start().await?;
    let nodes: Api<Node> = Api::all(client(&s).await?);
    let node = |name: &str, spec: serde_json::Value| -> Result<Node> {
        Ok(serde_json::from_value(json!({ "metadata": { "name": name }, "spec": spec }))?)
    };
    nodes.create(&PostParams::default(), &node("plain", json!({}))?).await?;
    nodes
        .create(&PostParams::default(), &node("cordoned", json!({ "unschedulable": true }))?)
        .await?;
    let names = |list: kube::api::ObjectList<Node>| -> Vec<String> {
        list.items.into_iter().filter_map(|n| n.metadata.name).collect()
    };
    let schedulable = ListParams::default().fields("spec.unschedulable=false");
    ensure!(names(nodes.list(&schedulable).await?) == ["plain"]);
    let cordoned = ListParams::default().fields("spec.unschedulable=true");
    ensure!(names(nodes.list(&cordoned).await?) == ["cordoned"]);

    let patch = Patch::Merge(json!({ "spec": { "unschedulable": false } }));
    let uncordoned = nodes.patch("cordoned", &PatchParams::default(), &patch).await?;
    let spec = uncordoned.spec.unwrap_or_default();
    ensure!(spec.unschedulable.is_none(), "{spec:?}");
    let raw = s.curl("GET", "/api/v1/nodes/cordoned", None, "", true).await?.1;
    // (The node lifecycle controller's `node.kubernetes.io/unschedulable` taint may
    // still be there: only the field must be gone.)
    let raw: serde_json::Value = serde_json::from_str(&raw)?;
    ensure!(raw["spec"].get("unschedulable").is_none(), "{raw}");
    ensure!(names(nodes.list(&schedulable).await?) == ["cordoned", "plain"]);
    Ok(())
}

/// kube-rs's metadata API asks for `PartialObjectMetadata` of one object (get, patch,
/// watch) and `PartialObjectMetadataList` of a list; upstream transforms every response
/// so, a Table likewise, and answers 406 to a transform it cannot do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_tables_of_every_response() -> Result<()> {
    use kube::core::PartialObjectMeta;
    let s = TestServer::start().await?;
    let api: Api<ConfigMap> = Api::namespaced(client(&s).await?, "default");
    api.create(&PostParams::default(), &configmap("one")?).await?;
    let one: PartialObjectMeta<ConfigMap> = api.get_metadata("one").await?;
    ensure!(one.metadata.name.as_deref() == Some("one"));
    let listed = api.list_metadata(&ListParams::default().labels("app=kube-rs")).await?;
    ensure!(listed.items.len() == 1 && listed.items[0].metadata.labels.is_some());
    let patched = api
        .patch_metadata(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "seen": "yes" } } })),
        )
        .await?;
    ensure!(patched.metadata.labels.is_some_and(|l| l.contains_key("seen")));
    let metadata: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client(&s).await?, "default");
    let mut events = Box::pin(watcher(metadata, watcher::Config::default().labels("app=kube-rs")));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        use futures_util::StreamExt;
        match tokio::time::timeout_at(deadline, events.next()).await? {
            Some(Ok(watcher::Event::InitApply(meta))) => {
                ensure!(meta.metadata.name.as_deref() == Some("one"));
                break;
            }
            Some(Ok(_)) => {}
            other => bail!("the metadata watch ended: {other:?}"),
        }
    }

    // What each representation looks like on the wire.
    let partial = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
    let partial_list = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
    let table = "application/json;as=Table;g=meta.k8s.io;v=v1beta1";
    let path = "/api/v1/namespaces/default/configmaps";
    let body = r#"{"metadata":{"name":"two"},"data":{"secret":"value"}}"#;
    let (code, text) = s
        .curl_with("POST", path, Some(body), "application/json", true, &[("Accept", partial)])
        .await?;
    let created: serde_json::Value = serde_json::from_str(&text)?;
    ensure!(
        code == 201
            && created["kind"] == "PartialObjectMetadata"
            && created["apiVersion"] == "meta.k8s.io/v1"
            && created["metadata"]["name"] == "two"
            && created.get("data").is_none(),
        "{code} {text}"
    );
    let patch = r#"{"data":{"more":"1"}}"#;
    let (code, text) = s
        .curl_with(
            "PATCH",
            &format!("{path}/two"),
            Some(patch),
            "application/merge-patch+json",
            true,
            &[("Accept", table)],
        )
        .await?;
    let printed: serde_json::Value = serde_json::from_str(&text)?;
    ensure!(
        code == 200
            && printed["kind"] == "Table"
            && printed["apiVersion"] == "meta.k8s.io/v1beta1"
            && printed["rows"][0]["cells"][0] == "two"
            && printed["rows"][0]["object"]["apiVersion"] == "meta.k8s.io/v1beta1",
        "{code} {text}"
    );
    let (code, text) = s
        .curl_with(
            "GET",
            &format!("{path}?watch=1&resourceVersion=0&timeoutSeconds=1"),
            None,
            "",
            true,
            &[("Accept", partial)],
        )
        .await?;
    ensure!(code == 200, "{code} {text}");
    for line in text.lines() {
        let event: serde_json::Value = serde_json::from_str(line)?;
        ensure!(event["object"]["kind"] == "PartialObjectMetadata", "{line}");
    }
    for (method, target, accept, message) in [
        (
            "GET",
            path.to_owned(),
            partial,
            "you requested PartialObjectMetadata, but the requested object is a list (*core.ConfigMapList)",
        ),
        (
            "GET",
            format!("{path}/two"),
            partial_list,
            "you requested PartialObjectMetadataList, but the requested object is not a list (*core.ConfigMap)",
        ),
        (
            "GET",
            format!("{path}/two"),
            "application/json;as=Table;g=meta.k8s.io;v=v2",
            "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf",
        ),
        (
            "POST",
            path.to_owned(),
            "application/json;as=Foo;g=meta.k8s.io;v=v1",
            "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf",
        ),
    ] {
        let body = (method == "POST").then_some(r#"{"metadata":{"name":"three"}}"#);
        let (code, text) = s
            .curl_with(method, &target, body, "application/json", true, &[("Accept", accept)])
            .await?;
        ensure!(
            code == 406
                && text.contains(message)
                && serde_json::from_str::<serde_json::Value>(&text)?["reason"] == "NotAcceptable",
            "{accept}: {code} {text}"
        );
    }
    // Nothing is done for a request whose answer cannot be given.
    ensure!(api.get_opt("three").await?.is_none());
    Ok(())
}

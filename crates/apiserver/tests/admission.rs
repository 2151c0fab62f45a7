//! Admission with the real kubectl: PodSecurity (every baseline control refused in an
//! enforcing namespace, warnings, namespace labels, exemptions), Priority,
//! DefaultTolerationSeconds, DefaultStorageClass and NodeRestriction; plugins turned on
//! and off by name.

mod common;

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use common::TestServer;
use serde_json::{Value, json};

/// A pod named `name` with one container `c`, changed by `edit`.
fn pod(name: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": { "containers": [{ "name": "c", "image": "busybox" }] },
    });
    edit(&mut pod);
    pod.to_string()
}

/// A pod that meets the restricted level.
fn restricted_pod(name: &str) -> String {
    pod(name, |p| {
        p["spec"]["securityContext"] =
            json!({ "runAsNonRoot": true, "seccompProfile": { "type": "RuntimeDefault" } });
        p["spec"]["containers"][0]["securityContext"] = json!({
            "allowPrivilegeEscalation": false,
            "capabilities": { "drop": ["ALL"] },
        });
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_baseline_control_is_enforced() -> Result<()> {
    let s = TestServer::start().await?;
    let container = |field: &str, value: Value| {
        let field = field.to_owned();
        move |p: &mut Value| p["spec"]["containers"][0][field] = value
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "host-network",
            pod("a", |p| p["spec"]["hostNetwork"] = json!(true)),
            "host namespaces (hostNetwork=true)",
        ),
        (
            "host-pid",
            pod("a", |p| p["spec"]["hostPID"] = json!(true)),
            "host namespaces (hostPID=true)",
        ),
        (
            "host-ipc",
            pod("a", |p| p["spec"]["hostIPC"] = json!(true)),
            "host namespaces (hostIPC=true)",
        ),
        (
            "privileged",
            pod("a", container("securityContext", json!({ "privileged": true }))),
            r#"privileged (container "c" must not set securityContext.privileged=true)"#,
        ),
        (
            "capabilities",
            pod(
                "a",
                container("securityContext", json!({ "capabilities": { "add": ["SYS_ADMIN"] } })),
            ),
            r#"non-default capabilities (container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add)"#,
        ),
        (
            "host-path",
            pod("a", |p| {
                p["spec"]["volumes"] = json!([{ "name": "root", "hostPath": { "path": "/" } }])
            }),
            r#"hostPath volumes (volume "root")"#,
        ),
        (
            "host-port",
            pod("a", container("ports", json!([{ "containerPort": 80, "hostPort": 8080 }]))),
            r#"hostPort (container "c" uses hostPort 8080)"#,
        ),
        (
            "selinux",
            pod("a", |p| {
                p["spec"]["securityContext"] = json!({ "seLinuxOptions": { "type": "spc_t" } })
            }),
            "seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: type \"spc_t\")",
        ),
        (
            "proc-mount",
            pod("a", container("securityContext", json!({ "procMount": "Unmasked" }))),
            r#"procMount (container "c" must not set securityContext.procMount to "Unmasked")"#,
        ),
        (
            "seccomp",
            pod("a", |p| {
                p["spec"]["securityContext"] = json!({ "seccompProfile": { "type": "Unconfined" } })
            }),
            r#"seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")"#,
        ),
        (
            "sysctls",
            pod("a", |p| {
                p["spec"]["securityContext"] =
                    json!({ "sysctls": [{ "name": "kernel.msgmax", "value": "1" }] })
            }),
            r#"forbidden sysctls (kernel.msgmax)"#,
        ),
        (
            "apparmor",
            pod("a", |p| {
                p["spec"]["securityContext"] =
                    json!({ "appArmorProfile": { "type": "Unconfined" } })
            }),
            r#"forbidden AppArmor profile (pod must not set AppArmor profile type to "Unconfined")"#,
        ),
        (
            "host-process",
            pod("a", |p| {
                p["spec"]["securityContext"] = json!({ "windowsOptions": { "hostProcess": true } });
                p["spec"]["hostNetwork"] = json!(true);
            }),
            "hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)",
        ),
    ];
    for (case, manifest, reason) in cases {
        let out = s.kubectl_in(&["create", "-f", "-"], Some(&manifest)).await?;
        ensure!(
            !out.ok
                && out
                    .stderr
                    .contains(r#"pods "a" is forbidden: violates PodSecurity "baseline:latest": "#)
                && out.stderr.contains(reason),
            "{case}: {}",
            out.stderr
        );
    }
    // NamespaceLifecycle: nothing new in a namespace being deleted.
    s.ok(&["create", "namespace", "leaving"]).await?;
    s.ok(&["delete", "namespace", "leaving", "--wait=false"]).await?;
    let refused = s.fails(&["create", "configmap", "late", "-n", "leaving"]).await?;
    ensure!(
        refused.contains(r#"configmaps "late" is forbidden: unable to create new content in namespace leaving because it is being terminated"#),
        "{refused}"
    );
    // A namespace may opt out; kube-system is exempt.
    s.ok(&["create", "namespace", "lab"]).await?;
    s.ok(&["label", "namespace", "lab", "pod-security.kubernetes.io/enforce=privileged"]).await?;
    let privileged = pod("a", container("securityContext", json!({ "privileged": true })));
    for namespace in ["lab", "kube-system"] {
        let out = s.kubectl_in(&["create", "-n", namespace, "-f", "-"], Some(&privileged)).await?;
        ensure!(out.ok, "{namespace}: {}", out.stderr);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_levels_and_labels() -> Result<()> {
    let s = TestServer::start().await?;
    // Baseline is met, restricted is not: created, with the restricted warning.
    let out = s.kubectl_in(&["create", "-f", "-"], Some(&pod("plain", |_| {}))).await?;
    ensure!(out.ok, "{}", out.stderr);
    ensure!(
        out.stderr.contains(r#"Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#),
        "{}",
        out.stderr
    );
    let out = s.kubectl_in(&["create", "-f", "-"], Some(&restricted_pod("tight"))).await?;
    ensure!(out.ok && !out.stderr.contains("Warning"), "{}", out.stderr);

    // Workloads are warned about, never refused.
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "web" },
        "spec": {
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "hostNetwork": true, "containers": [{ "name": "web", "image": "nginx" }] },
            },
        },
    });
    let out = s.kubectl_in(&["create", "-f", "-"], Some(&deployment.to_string())).await?;
    ensure!(
        out.ok && out.stderr.contains(r#"Warning: would violate PodSecurity "restricted:latest": host namespaces (hostNetwork=true)"#),
        "{}",
        out.stderr
    );

    // Bad labels are refused as upstream refuses them.
    let bad = s
        .fails(&["label", "namespace", "default", "pod-security.kubernetes.io/enforce=strict"])
        .await?;
    ensure!(
        bad.contains(r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#),
        "{bad}"
    );
    // Tightening enforce names the pods that would now be refused.
    let out = s
        .kubectl(&[
            "label",
            "namespace",
            "default",
            "pod-security.kubernetes.io/enforce=restricted",
        ])
        .await?;
    ensure!(out.ok, "{}", out.stderr);
    ensure!(
        out.stderr.contains(r#"Warning: existing pods in namespace "default" violate the new PodSecurity enforce level "restricted:latest""#)
            && out.stderr.contains("Warning: plain: allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile")
            && !out.stderr.contains("tight"),
        "{}",
        out.stderr
    );
    let refused = s.kubectl_in(&["create", "-f", "-"], Some(&pod("plain2", |_| {}))).await?;
    ensure!(
        !refused.ok && refused.stderr.contains(r#"violates PodSecurity "restricted:latest""#),
        "{}",
        refused.stderr
    );
    // A version pin selects the checks of that release: 1.0 allowed fewer sysctls.
    s.ok(&[
        "label",
        "--overwrite",
        "namespace",
        "default",
        "pod-security.kubernetes.io/enforce=baseline",
    ])
    .await?;
    let keepalive = pod("keepalive", |p| {
        p["spec"]["securityContext"] =
            json!({ "sysctls": [{ "name": "net.ipv4.tcp_keepalive_time", "value": "60" }] })
    });
    let out = s.kubectl_in(&["create", "--dry-run=server", "-f", "-"], Some(&keepalive)).await?;
    ensure!(out.ok, "{}", out.stderr);
    s.ok(&[
        "label",
        "--overwrite",
        "namespace",
        "default",
        "pod-security.kubernetes.io/enforce-version=v1.0",
    ])
    .await?;
    let out = s.kubectl_in(&["create", "-f", "-"], Some(&keepalive)).await?;
    ensure!(
        !out.ok
            && out.stderr.contains(r#"violates PodSecurity "baseline:v1.0": forbidden sysctls (net.ipv4.tcp_keepalive_time)"#),
        "{}",
        out.stderr
    );
    Ok(())
}

/// `kubectl replace` of a pod with the manifest it was created from (upstream's
/// test/cmd save-config.sh): the priority and preemption policy Priority gave it at
/// creation stay, as upstream's plugin keeps them on updates; changing them is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_pod_keeps_its_priority() -> Result<()> {
    use keelson_apiserver::admission::plugins::Selection;
    // Only Priority fills in the pod's spec.
    let disable = vec!["ServiceAccount".into(), "DefaultTolerationSeconds".into()];
    let s = TestServer::start_with_admission(Selection { disable, ..Default::default() }).await?;
    let manifest = restricted_pod("p");
    let out = s.kubectl_in(&["create", "-f", "-"], Some(&manifest)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let out = s.kubectl_in(&["replace", "-f", "-"], Some(&manifest)).await?;
    ensure!(out.ok, "{}", out.stderr);
    // Nothing changed: the generation stays.
    let jsonpath = "jsonpath={.spec.priority} {.spec.preemptionPolicy} {.metadata.generation}";
    let spec = s.ok(&["get", "pod", "p", "-o", jsonpath]).await?;
    ensure!(spec == "0 PreemptLowerPriority 1", "{spec}");
    let changed = manifest.replace(r#""spec":{"#, r#""spec":{"priority":5,"#);
    let out = s.kubectl_in(&["replace", "-f", "-"], Some(&changed)).await?;
    ensure!(!out.ok && out.stderr.contains("pod updates may not change fields"), "{}", out.stderr);
    Ok(())
}

/// DefaultTolerationSeconds looks at updates too, as upstream's: a pod replaced with the
/// manifest it was created from gets the same two tolerations back, so the update
/// removes none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_pod_keeps_its_default_tolerations() -> Result<()> {
    use keelson_apiserver::admission::plugins::Selection;
    let disable = vec!["ServiceAccount".into()];
    let s = TestServer::start_with_admission(Selection { disable, ..Default::default() }).await?;
    let manifest = restricted_pod("p");
    let out = s.kubectl_in(&["create", "-f", "-"], Some(&manifest)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let out = s.kubectl_in(&["replace", "-f", "-"], Some(&manifest)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let jsonpath = "jsonpath={.spec.tolerations[*].key} {.metadata.generation}";
    let got = s.ok(&["get", "pod", "p", "-o", jsonpath]).await?;
    ensure!(got == "node.kubernetes.io/not-ready node.kubernetes.io/unreachable 1", "{got}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_tolerations_and_storage_classes_are_filled_in() -> Result<()> {
    let s = TestServer::start().await?;
    let classes =
        s.ok(&["get", "priorityclasses", "-o", "jsonpath={.items[*].metadata.name}"]).await?;
    ensure!(classes == "system-cluster-critical system-node-critical", "{classes}");
    s.kubectl_in(&["create", "-f", "-"], Some(&restricted_pod("p"))).await?;
    let spec = s
        .ok(&[
            "get",
            "pod",
            "p",
            "-o",
            "jsonpath={.spec.priority} {.spec.preemptionPolicy} {.spec.tolerations[*].key}",
        ])
        .await?;
    ensure!(
        spec == "0 PreemptLowerPriority node.kubernetes.io/not-ready node.kubernetes.io/unreachable",
        "{spec}"
    );
    let critical = restricted_pod("critical")
        .replace(r#""spec":{"#, r#""spec":{"priorityClassName":"system-node-critical","#);
    let out = s.kubectl_in(&["create", "-f", "-"], Some(&critical)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let priority = s.ok(&["get", "pod", "critical", "-o", "jsonpath={.spec.priority}"]).await?;
    ensure!(priority == "2000001000", "{priority}");
    let unknown =
        restricted_pod("unknown").replace(r#""spec":{"#, r#""spec":{"priorityClassName":"nope","#);
    let out = s.kubectl_in(&["create", "-f", "-"], Some(&unknown)).await?;
    ensure!(
        !out.ok
            && out.stderr.contains(
                r#"pods "unknown" is forbidden: no PriorityClass with name nope was found"#
            ),
        "{}",
        out.stderr
    );
    let forced = restricted_pod("forced").replace(r#""spec":{"#, r#""spec":{"priority":7,"#);
    let out = s.kubectl_in(&["create", "-f", "-"], Some(&forced)).await?;
    ensure!(
        !out.ok && out.stderr.contains("the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 0 from the given PriorityClass name"),
        "{}",
        out.stderr
    );

    let class = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": { "name": "local", "annotations": { "storageclass.kubernetes.io/is-default-class": "true" } },
        "provisioner": "example.com/local",
    });
    s.kubectl_in(&["create", "-f", "-"], Some(&class.to_string())).await?;
    let claim = |name: &str, class: Option<&str>| {
        let mut claim = json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": { "name": name },
            "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } },
        });
        if let Some(class) = class {
            claim["spec"]["storageClassName"] = json!(class);
        }
        claim.to_string()
    };
    // The class must be in the cache the plugin reads: retry the first claim.
    let mut named = String::new();
    for attempt in 0..50 {
        s.kubectl_in(&["create", "-f", "-"], Some(&claim(&format!("data{attempt}"), None))).await?;
        named = s
            .ok(&[
                "get",
                "pvc",
                &format!("data{attempt}"),
                "-o",
                "jsonpath={.spec.storageClassName}",
            ])
            .await?;
        if named == "local" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(named == "local", "{named}");
    s.kubectl_in(&["create", "-f", "-"], Some(&claim("none", Some("")))).await?;
    let none = s.ok(&["get", "pvc", "none", "-o", "jsonpath={.spec.storageClassName}"]).await?;
    ensure!(none.is_empty(), "{none}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_write_only_their_own_objects() -> Result<()> {
    let s = TestServer::start().await?;
    let n1 = s.kubeconfig_for("system:node:n1", &["system:nodes"])?;
    let node = |name: &str| {
        json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name } }).to_string()
    };
    let file = s.dir.path().join("n1.json");
    std::fs::write(&file, node("n1"))?;
    let path = file.to_string_lossy().into_owned();
    let mut created = false;
    for _ in 0..50 {
        if s.kubectl_as(&n1, &["create", "-f", &path]).await?.ok {
            created = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(created, "the node could not register itself");
    s.kubectl_in(&["create", "-f", "-"], Some(&node("n2"))).await?;

    let out = s.kubectl_as(&n1, &["label", "node", "n2", "a=b"]).await?;
    ensure!(
        !out.ok
            && out.stderr.contains(
                r#"nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2""#
            ),
        "{}",
        out.stderr
    );
    let out = s
        .kubectl_as(&n1, &["label", "node", "n1", "node-restriction.kubernetes.io/pci=true"])
        .await?;
    ensure!(
        !out.ok
            && out
                .stderr
                .contains("is not allowed to modify labels: node-restriction.kubernetes.io/pci"),
        "{}",
        out.stderr
    );
    let out = s.kubectl_as(&n1, &["label", "node", "n1", "kubernetes.io/arch=arm64"]).await?;
    ensure!(out.ok, "{}", out.stderr);
    let out = s.kubectl_as(&n1, &["taint", "node", "n1", "dedicated=x:NoSchedule"]).await?;
    ensure!(
        !out.ok && out.stderr.contains(r#"node "n1" is not allowed to modify taints"#),
        "{}",
        out.stderr
    );

    // Pods: only mirror pods bound to itself, status only of its own.
    let plain = std::fs::write(
        s.dir.path().join("plain.json"),
        pod("plain", |p| p["spec"]["nodeName"] = json!("n1")),
    );
    plain?;
    let out = s
        .kubectl_as(&n1, &["create", "-f", &s.dir.path().join("plain.json").to_string_lossy()])
        .await?;
    ensure!(
        !out.ok && out.stderr.contains(r#"pod does not have "kubernetes.io/config.mirror" annotation, node "n1" can only create mirror pods"#),
        "{}",
        out.stderr
    );
    let mirror = restricted_pod("static-web-n1").replace(
        r#""metadata":{"name":"static-web-n1"}"#,
        r#""metadata":{"name":"static-web-n1","annotations":{"kubernetes.io/config.mirror":"abc"}}"#,
    );
    let mirror = mirror.replace(r#""spec":{"#, r#""spec":{"nodeName":"n1","#);
    std::fs::write(s.dir.path().join("mirror.json"), &mirror)?;
    let out = s
        .kubectl_as(&n1, &["create", "-f", &s.dir.path().join("mirror.json").to_string_lossy()])
        .await?;
    ensure!(out.ok, "{}", out.stderr);
    s.kubectl_in(
        &["create", "-f", "-"],
        Some(&restricted_pod("elsewhere").replace(r#""spec":{"#, r#""spec":{"nodeName":"n2","#)),
    )
    .await?;
    // A status update as the kubelet sends it: PUT of the whole pod to `…/status`.
    let put_status = |name: &str| {
        let s = &s;
        let n1 = &n1;
        let name = name.to_owned();
        async move {
            let current = s.ok(&["get", "pod", &name, "-o", "json"]).await?;
            let mut pod: Value = serde_json::from_str(&current)?;
            pod["status"]["phase"] = json!("Running");
            let file = s.dir.path().join(format!("{name}-status.json"));
            std::fs::write(&file, pod.to_string())?;
            let uri = format!("/api/v1/namespaces/default/pods/{name}/status");
            s.kubectl_as(n1, &["replace", "--raw", &uri, "-f", &file.to_string_lossy()]).await
        }
    };
    let out = put_status("elsewhere").await?;
    ensure!(
        !out.ok
            && out.stderr.contains(
                r#"node "n1" can only update pod status for pods with spec.nodeName set to itself"#
            ),
        "{}",
        out.stderr
    );
    let out = put_status("static-web-n1").await?;
    ensure!(out.ok, "{}", out.stderr);
    let out = s.kubectl_as(&n1, &["delete", "pod", "elsewhere"]).await?;
    ensure!(
        !out.ok
            && out
                .stderr
                .contains(r#"node "n1" can only delete pods with spec.nodeName set to itself"#),
        "{}",
        out.stderr
    );
    if !s.kubectl_as(&n1, &["delete", "pod", "static-web-n1", "--wait=false"]).await?.ok {
        bail!("a node may delete its own mirror pod");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_plugin_does_not_run_and_an_unknown_one_is_refused() -> Result<()> {
    use keelson_apiserver::admission::plugins::Selection;
    let range = json!({
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": { "name": "limits" },
        "spec": { "limits": [{
            "type": "Container",
            "default": { "memory": "128Mi" },
            "defaultRequest": { "memory": "64Mi" },
        }] },
    });
    let without = Selection { disable: vec!["LimitRanger".into()], ..Default::default() };
    for (selection, defaulted) in [(without, false), (Selection::default(), true)] {
        let s = TestServer::start_with_admission(selection.clone()).await?;
        let out = s.kubectl_in(&["create", "-f", "-"], Some(&range.to_string())).await?;
        ensure!(out.ok, "{}", out.stderr);
        let out = s.kubectl_in(&["create", "-f", "-"], Some(&restricted_pod("p"))).await?;
        ensure!(out.ok, "{}", out.stderr);
        let got: Value = serde_json::from_str(&s.ok(&["get", "pod", "p", "-o", "json"]).await?)?;
        let limits = &got["spec"]["containers"][0]["resources"]["limits"];
        let annotation = &got["metadata"]["annotations"]["kubernetes.io/limit-ranger"];
        if defaulted {
            ensure!(limits["memory"] == "128Mi", "{selection:?}: {limits}");
            ensure!(annotation.is_string(), "{selection:?}: {}", got["metadata"]);
        } else {
            ensure!(limits.is_null(), "{selection:?} applied the LimitRange: {limits}");
            ensure!(annotation.is_null(), "{selection:?}: {}", got["metadata"]);
        }
    }
    let unknown = Selection { enable: vec!["Bogus".into()], ..Default::default() };
    match TestServer::start_with_admission(unknown).await {
        Ok(_) => bail!("a server started with an unknown admission plugin"),
        Err(e) => ensure!(
            e.to_string() == "enable-admission-plugins plugin \"Bogus\" is unknown",
            "{e:#}"
        ),
    }
    Ok(())
}

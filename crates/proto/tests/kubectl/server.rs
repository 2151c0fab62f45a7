//! A fake API server for capturing what the real kubectl sends: plain HTTP on a
//! loopback port, legacy discovery for the groups the commands need, canned objects
//! for the commands that read before they write, and every request body recorded.
//!
//! It answers JSON only and never decodes protobuf, so that the decoder under test
//! plays no part in producing the fixtures it is checked against.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// One request kubectl sent with a body.
#[derive(Clone, Debug)]
pub struct Request {
    pub content_type: String,
    pub body: Vec<u8>,
}

pub struct FakeServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeServer {
    /// Starts serving on a random loopback port; the thread ends with the process.
    pub fn start() -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let recorded = recorded.clone();
                std::thread::spawn(move || serve(stream, &recorded));
            }
        });
        FakeServer { addr, requests }
    }

    /// The requests with a body received since the last call.
    pub fn take(&self) -> Vec<Request> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

fn serve(stream: TcpStream, recorded: &Mutex<Vec<Request>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) =
            (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let (mut length, mut content_type) = (0, String::new());
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "content-type" => content_type = value.trim().to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let path = target.split('?').next().unwrap_or("").to_string();
        let (status, response) = respond(&method, &path);
        if !body.is_empty() {
            recorded.lock().unwrap().push(Request { content_type, body });
        }
        let response = response.to_string();
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            response.len()
        );
        if writer
            .write_all(head.as_bytes())
            .and_then(|()| writer.write_all(response.as_bytes()))
            .is_err()
        {
            return;
        }
    }
}

fn respond(method: &str, path: &str) -> (&'static str, Value) {
    let not_found = (
        "404 Not Found",
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
    );
    match (method, path) {
        ("GET", "/version") => {
            ("200 OK", json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0"}))
        }
        ("GET", "/api") => ("200 OK", json!({"kind": "APIVersions", "versions": ["v1"]})),
        ("GET", "/apis") => ("200 OK", group_list()),
        ("GET", "/api/v1") => ("200 OK", resources("v1", CORE)),
        ("GET", p) if p.starts_with("/apis/") && p.matches('/').count() == 3 => {
            let group_version = &p["/apis/".len()..];
            match GROUPS.iter().find(|(gv, _)| *gv == group_version) {
                Some((gv, list)) => ("200 OK", resources(gv, list)),
                None => not_found,
            }
        }
        ("GET", "/apis/apps/v1/namespaces/default/deployments/web") => ("200 OK", deployment()),
        ("GET", "/apis/certificates.k8s.io/v1/certificatesigningrequests/csr1") => {
            ("200 OK", csr())
        }
        ("GET", "/apis/batch/v1/namespaces/default/cronjobs/rich") => ("200 OK", rich_cronjob()),
        ("GET", "/api/v1/nodes/node1") => ("200 OK", node()),
        ("GET", "/api/v1/pods") => (
            "200 OK",
            json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [pod()]}),
        ),
        ("PATCH", "/api/v1/nodes/node1") => ("200 OK", node()),
        ("POST", p) if p.ends_with("/selfsubjectaccessreviews") => (
            "201 Created",
            json!({
                "kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                "metadata": {}, "spec": {}, "status": {"allowed": true}
            }),
        ),
        ("POST", p) if p.ends_with("/selfsubjectreviews") => (
            "201 Created",
            json!({
                "kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {}, "status": {"userInfo": {"username": "admin"}}
            }),
        ),
        ("POST", p) if p.ends_with("/token") => (
            "201 Created",
            json!({
                "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "metadata": {},
                "spec": {"audiences": []}, "status": {"token": "t0k3n", "expirationTimestamp": "2030-01-01T00:00:00Z"}
            }),
        ),
        ("PUT", p) if p.ends_with("/approval") => ("200 OK", csr()),
        ("POST", p) => ("201 Created", created(p)),
        _ => not_found,
    }
}

type Resource = (&'static str, &'static str, bool);

/// name, kind, namespaced.
const CORE: &[Resource] = &[
    ("configmaps", "ConfigMap", true),
    ("namespaces", "Namespace", false),
    ("nodes", "Node", false),
    ("pods", "Pod", true),
    ("resourcequotas", "ResourceQuota", true),
    ("secrets", "Secret", true),
    ("serviceaccounts", "ServiceAccount", true),
    ("serviceaccounts/token", "TokenRequest", true),
    ("services", "Service", true),
];

const GROUPS: &[(&str, &[Resource])] = &[
    ("apps/v1", &[("deployments", "Deployment", true), ("deployments/scale", "Scale", true)]),
    ("autoscaling/v2", &[("horizontalpodautoscalers", "HorizontalPodAutoscaler", true)]),
    ("batch/v1", &[("jobs", "Job", true), ("cronjobs", "CronJob", true)]),
    ("policy/v1", &[("poddisruptionbudgets", "PodDisruptionBudget", true)]),
    ("networking.k8s.io/v1", &[("ingresses", "Ingress", true)]),
    ("scheduling.k8s.io/v1", &[("priorityclasses", "PriorityClass", false)]),
    (
        "rbac.authorization.k8s.io/v1",
        &[
            ("roles", "Role", true),
            ("rolebindings", "RoleBinding", true),
            ("clusterroles", "ClusterRole", false),
            ("clusterrolebindings", "ClusterRoleBinding", false),
        ],
    ),
    ("authorization.k8s.io/v1", &[("selfsubjectaccessreviews", "SelfSubjectAccessReview", false)]),
    ("authentication.k8s.io/v1", &[("selfsubjectreviews", "SelfSubjectReview", false)]),
    (
        "certificates.k8s.io/v1",
        &[
            ("certificatesigningrequests", "CertificateSigningRequest", false),
            ("certificatesigningrequests/approval", "CertificateSigningRequest", false),
        ],
    ),
];

/// A minimal object of the kind a POST to this collection creates.
fn created(path: &str) -> Value {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (api_version, rest) = match segments.as_slice() {
        ["api", v, rest @ ..] => (v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return json!({}),
    };
    let resource = rest.last().copied().unwrap_or_default();
    let list = if api_version == "v1" {
        CORE
    } else {
        GROUPS.iter().find(|(gv, _)| *gv == api_version).map_or(&[][..], |g| g.1)
    };
    let kind = list.iter().find(|(name, _, _)| *name == resource).map_or("Unknown", |r| r.1);
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "created", "namespace": "default"}})
}

fn group_list() -> Value {
    let groups: Vec<Value> = GROUPS
        .iter()
        .map(|(gv, _)| {
            let (group, version) = gv.split_once('/').unwrap();
            let v = json!({"groupVersion": gv, "version": version});
            json!({"name": group, "versions": [v.clone()], "preferredVersion": v})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resources(group_version: &str, list: &[Resource]) -> Value {
    let resources: Vec<Value> = list
        .iter()
        .map(|(name, kind, namespaced)| {
            let verbs = if name.contains('/') { json!(["create"]) } else { json!(["create", "get", "list", "patch", "update", "delete"]) };
            json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": verbs})
        })
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "1", "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}
            }
        }
    })
}

fn csr() -> Value {
    json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "csr1", "uid": "2", "resourceVersion": "7", "creationTimestamp": "2024-05-06T07:08:09Z"},
        "spec": {
            "request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K",
            "signerName": "kubernetes.io/kube-apiserver-client",
            "expirationSeconds": 3600,
            "usages": ["client auth"],
            "username": "alice",
            "groups": ["system:authenticated"],
            "extra": {"scopes": ["a", "b"]}
        },
        "status": {}
    })
}

fn node() -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1", "uid": "3"}, "spec": {"unschedulable": true}})
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "uid": "4"},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running"}
    })
}

/// A cronjob whose pod template holds pointers set to zero, values left at zero,
/// quantities, int-or-strings of both kinds, inline volume sources and maps.
fn rich_cronjob() -> Value {
    let pod = json!({
        "terminationGracePeriodSeconds": 0,
        "enableServiceLinks": false,
        "hostNetwork": false,
        "activeDeadlineSeconds": 30,
        "restartPolicy": "OnFailure",
        "nodeSelector": {"disk": "ssd"},
        "securityContext": {"runAsNonRoot": false, "runAsUser": 0, "fsGroup": 2000, "sysctls": [{"name": "net.ipv4.ip_forward", "value": "1"}]},
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0}],
        "volumes": [
            {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "cfg", "configMap": {"name": "cm", "defaultMode": 420, "optional": false, "items": [{"key": "a", "path": "a.txt"}]}}
        ],
        "containers": [{
            "name": "q", "image": "busybox", "command": ["sh", "-c"], "args": [""],
            "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"cpu": "2", "nvidia.com/gpu": "1"}},
            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
            "ports": [{"name": "http", "containerPort": 8080, "hostPort": 0}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 0},
            "readinessProbe": {"tcpSocket": {"port": 8080}},
            "volumeMounts": [{"name": "scratch", "mountPath": "/tmp", "readOnly": false}],
            "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, {"name": "EMPTY", "value": ""}],
            "stdin": false, "tty": true
        }]
    });
    json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "rich", "namespace": "default", "uid": "5", "creationTimestamp": "2024-05-06T07:08:09Z"},
        "spec": {
            "schedule": "@hourly", "suspend": false,
            "jobTemplate": {
                "metadata": {"labels": {"team": "a"}, "annotations": {"note": ""}},
                "spec": {
                    "backoffLimit": 0, "parallelism": 1, "ttlSecondsAfterFinished": 0,
                    "template": {"metadata": {"labels": {"team": "a"}}, "spec": pod}
                }
            }
        }
    })
}

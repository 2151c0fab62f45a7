//! The kubectl commands whose protobuf bodies are fixtures, and how each is checked.
//!
//! kubectl 1.32 sends protobuf only from its typed generators (`create <type>`,
//! `autoscale`, `create token`, `auth can-i|whoami`, `certificate approve|deny`, and
//! drain's pod deletion where eviction is not offered). `run`, `expose`, drain's
//! evictions, `create|apply|replace -f`, `delete` and every patch send JSON.

/// What a case's decoded body is compared with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Expect {
    /// The same command with `--dry-run=client -o json`: kubectl prints, through Go's
    /// `encoding/json`, the very Go object it otherwise sends as protobuf, so the decoded
    /// body must equal that output exactly (as JSON values; key order aside). The one
    /// thing protobuf cannot carry, an empty but non-nil slice or map (`[]` before,
    /// `null` after), none of these commands produces.
    DryRun,
    /// A hand-written `<name>.json` (commands without a dry run), checked against
    /// `protoc --decode_raw` of the body when written. `masked` names JSON pointers
    /// whose value changes from run to run (timestamps), ignored in live runs.
    Fixture { masked: &'static [&'static str] },
}

pub struct Case {
    pub name: &'static str,
    /// `{bin}` is replaced with a file holding bytes that are not UTF-8.
    pub args: &'static [&'static str],
    pub expect: Expect,
}

const fn dry(name: &'static str, args: &'static [&'static str]) -> Case {
    Case { name, args, expect: Expect::DryRun }
}

pub const CASES: &[Case] = &[
    dry(
        "configmap",
        &[
            "create",
            "configmap",
            "cm",
            "--from-literal=a=1",
            "--from-literal=empty=",
            "--from-file=bin={bin}",
        ],
    ),
    dry(
        "secret-generic",
        &["create", "secret", "generic", "s", "--from-literal=p=q", "--from-file=bin={bin}"],
    ),
    dry(
        "secret-docker-registry",
        &[
            "create",
            "secret",
            "docker-registry",
            "d",
            "--docker-server=r.io",
            "--docker-username=u",
            "--docker-password=p",
        ],
    ),
    dry("namespace", &["create", "namespace", "n"]),
    dry("serviceaccount", &["create", "serviceaccount", "sa"]),
    dry(
        "deployment",
        &["create", "deployment", "web", "--image=nginx", "--replicas=2", "--port=80"],
    ),
    dry(
        "deployment-zero-replicas",
        &["create", "deployment", "z", "--image=nginx", "--replicas=0"],
    ),
    dry(
        "service-clusterip",
        &["create", "service", "clusterip", "s", "--tcp=80:8080", "--tcp=443"],
    ),
    dry(
        "service-nodeport",
        &["create", "service", "nodeport", "np", "--tcp=80:http", "--node-port=30080"],
    ),
    dry("service-headless", &["create", "service", "clusterip", "h", "--clusterip=None"]),
    dry("autoscale", &["autoscale", "deployment", "web", "--min=2", "--max=5", "--cpu-percent=80"]),
    dry("job", &["create", "job", "j", "--image=busybox", "--", "echo", "hi"]),
    // The job copies the server's cronjob "rich" (server.rs), whose pod template reaches
    // the field kinds the create commands leave alone.
    dry("job-from-cronjob", &["create", "job", "jf", "--from=cronjob/rich"]),
    dry(
        "cronjob",
        &[
            "create",
            "cronjob",
            "c",
            "--image=busybox",
            "--schedule=*/5 * * * *",
            "--restart=OnFailure",
        ],
    ),
    dry(
        "role",
        &[
            "create",
            "role",
            "r",
            "--verb=get,list",
            "--resource=pods,deployments.apps",
            "--resource-name=x",
        ],
    ),
    dry(
        "clusterrole",
        &["create", "clusterrole", "cr", "--verb=get", "--non-resource-url=/healthz"],
    ),
    dry(
        "clusterrole-aggregated",
        &["create", "clusterrole", "agg", "--aggregation-rule=rbac.example.com/aggregate=true"],
    ),
    dry(
        "rolebinding",
        &[
            "create",
            "rolebinding",
            "rb",
            "--role=r",
            "--user=u",
            "--serviceaccount=default:sa",
            "--group=g",
        ],
    ),
    dry(
        "clusterrolebinding",
        &["create", "clusterrolebinding", "crb", "--clusterrole=cr", "--group=g"],
    ),
    dry(
        "quota",
        &[
            "create",
            "quota",
            "q",
            "--hard=cpu=1,memory=1Gi,pods=2,requests.storage=500M",
            "--scopes=BestEffort",
        ],
    ),
    dry("pdb-percent", &["create", "pdb", "pdb", "--selector=a=b", "--min-available=50%"]),
    dry("pdb-int", &["create", "pdb", "pdb2", "--selector=a=b", "--max-unavailable=0"]),
    dry(
        "priorityclass",
        &[
            "create",
            "priorityclass",
            "pc",
            "--value=1000",
            "--description=x",
            "--preemption-policy=Never",
        ],
    ),
    dry(
        "ingress",
        &[
            "create",
            "ingress",
            "ing",
            "--rule=foo.com/bar*=svc:http",
            "--rule=/=other:8080",
            "--class=nginx",
            "--annotation=a=b",
        ],
    ),
    Case {
        name: "token",
        args: &["create", "token", "sa", "--duration=1h", "--audience=api"],
        expect: Expect::Fixture { masked: &[] },
    },
    Case {
        name: "auth-can-i",
        args: &["auth", "can-i", "list", "pods", "--subresource=log", "-n", "kube-system"],
        expect: Expect::Fixture { masked: &[] },
    },
    Case {
        name: "auth-whoami",
        args: &["auth", "whoami"],
        expect: Expect::Fixture { masked: &[] },
    },
    // kubectl evicts with JSON; where the server offers no pods/eviction (as here) it
    // deletes the pod instead, with protobuf DeleteOptions in the DELETE body.
    Case {
        name: "drain-delete-options",
        args: &[
            "drain",
            "node1",
            "--force",
            "--ignore-daemonsets",
            "--grace-period=0",
            "--timeout=10s",
        ],
        expect: Expect::Fixture { masked: &[] },
    },
    Case {
        name: "certificate-approve",
        args: &["certificate", "approve", "csr1"],
        expect: Expect::Fixture {
            masked: &[
                "/status/conditions/0/lastUpdateTime",
                "/status/conditions/0/lastTransitionTime",
            ],
        },
    },
];

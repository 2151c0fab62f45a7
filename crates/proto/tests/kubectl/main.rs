//! Golden tests with bodies the real kubectl sent: each fixture `<case>.pb` must decode
//! to `<case>.json`, the JSON Go prints for the same object (see `cases.rs`).
//!
//! `fixtures_decode_as_kubectl_prints_them` runs offline. `live_kubectl` captures the
//! bodies again from `/usr/bin/kubectl` against a fake server and checks them the same
//! way; with `KEELSON_UPDATE_FIXTURES=1` it also rewrites the fixtures of dry-run cases.
//! A case without a dry run keeps its `.pb` (delete it to capture it again) and its
//! hand-written `.json`, derived from `protoc --decode_raw` of the body.

mod cases;
mod server;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use cases::{CASES, Case, Expect};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn check(case: &Case, body: &[u8], expected: &Value, masked: &[&str]) {
    let mut decoded =
        keelson_proto::decode(body).unwrap_or_else(|e| panic!("{}: decode: {e}", case.name));
    let mut expected = expected.clone();
    for pointer in masked {
        for v in [&mut decoded, &mut expected] {
            if let Some(v) = v.pointer_mut(pointer) {
                *v = Value::String("<masked>".into());
            }
        }
    }
    if decoded != expected {
        panic!(
            "{}: decoded body differs from the expected JSON\n--- decoded\n{}\n--- expected\n{}",
            case.name,
            serde_json::to_string_pretty(&decoded).unwrap(),
            serde_json::to_string_pretty(&expected).unwrap()
        );
    }
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

#[test]
fn fixtures_decode_as_kubectl_prints_them() {
    for case in CASES {
        let body = std::fs::read(fixtures().join(format!("{}.pb", case.name)))
            .unwrap_or_else(|e| panic!("{}: read fixture: {e}", case.name));
        let expected = read_json(&fixtures().join(format!("{}.json", case.name)));
        check(case, &body, &expected, &[]);
    }
}

#[test]
fn live_kubectl() {
    let kubectl = Path::new("/usr/bin/kubectl");
    if !kubectl.exists() {
        eprintln!("skipped: no {}", kubectl.display());
        return;
    }
    let update = std::env::var_os("KEELSON_UPDATE_FIXTURES").is_some_and(|v| v == "1");
    let server = server::FakeServer::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: \"http://{}\"}}}}]\n\
             users: [{{name: u, user: {{}}}}]\ncontexts: [{{name: fake, context: {{cluster: fake, user: u, namespace: default}}}}]\n\
             current-context: fake\n",
            server.addr
        ),
    )
    .unwrap();
    let bin = dir.path().join("bin");
    std::fs::write(&bin, b"ab\0\xff").unwrap();
    let run = |args: &[String]| {
        let output = Command::new(kubectl)
            .args(args)
            .arg(format!("--cache-dir={}", dir.path().join("cache").display()))
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .expect("run kubectl");
        (
            output.status.success(),
            output.stdout,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    for case in CASES {
        let args: Vec<String> =
            case.args.iter().map(|a| a.replace("{bin}", &bin.display().to_string())).collect();
        server.take();
        let (ok, _, stderr) = run(&args);
        let all = server.take();
        let sent: Vec<_> =
            all.iter().filter(|r| r.content_type == keelson_proto::MEDIA_TYPE).collect();
        let [request] = sent.as_slice() else {
            let types: Vec<_> = all.iter().map(|r| r.content_type.as_str()).collect();
            panic!(
                "{}: kubectl sent {} protobuf bodies among {types:?} (exit ok: {ok}): {stderr}",
                case.name,
                sent.len()
            );
        };
        let json_path = fixtures().join(format!("{}.json", case.name));
        let (expected, masked) = match case.expect {
            Expect::DryRun => {
                // The flags go before any `--`, after which all is the container's command.
                let mut dry = args.clone();
                let at = dry.iter().position(|a| a == "--").unwrap_or(dry.len());
                dry.splice(at..at, ["--dry-run=client".into(), "-o".into(), "json".into()]);
                let (ok, stdout, stderr) = run(&dry);
                assert!(ok, "{}: dry run failed: {stderr}", case.name);
                let printed: Value = serde_json::from_slice(&stdout).unwrap_or_else(|e| {
                    panic!(
                        "{}: dry run printed no JSON ({e}): {}",
                        case.name,
                        String::from_utf8_lossy(&stdout)
                    )
                });
                if update {
                    std::fs::write(
                        &json_path,
                        serde_json::to_string_pretty(&printed).unwrap() + "\n",
                    )
                    .unwrap();
                }
                (printed, &[][..])
            }
            Expect::Fixture { masked } => {
                let pb = fixtures().join(format!("{}.pb", case.name));
                if update && !pb.exists() {
                    std::fs::write(&pb, &request.body).unwrap();
                }
                assert!(
                    json_path.exists(),
                    "{}: write {} by hand (see cases.rs)",
                    case.name,
                    json_path.display()
                );
                (read_json(&json_path), masked)
            }
        };
        if update && case.expect == Expect::DryRun {
            std::fs::write(fixtures().join(format!("{}.pb", case.name)), &request.body).unwrap();
        }
        check(case, &request.body, &expected, masked);
    }
}

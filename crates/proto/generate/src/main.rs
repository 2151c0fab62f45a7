//! Generates `crates/proto/src/schema/generated.rs`, the table `keelson-proto` decodes
//! Kubernetes protobuf with, and `crates/api/src/patch_meta.rs`, the strategic merge
//! patch metadata of the types keelson-api registers. See README.md beside this crate for
//! why three sources.
//!
//! Usage (from the workspace root):
//!   cargo run --manifest-path crates/proto/generate/Cargo.toml -- [--check]
//!       [--k8s-pb DIR] [--k8s-openapi DIR] [--go-binary FILE]... [--out FILE]
//!       [--builtin DIR] [--patch-meta-out FILE]
//! `--check` compares instead of writing and fails if a file is stale.

mod builtin;
mod emit;
mod gobin;
mod merge;
mod openapi;
mod patch_meta;
mod prost;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const K8S_PB: &str = "k8s-pb-0.9.0";
const K8S_OPENAPI: &str = "k8s-openapi-0.29.0";
/// The Kubernetes version the server serves; k8s-openapi has one module per version.
const OPENAPI_VERSION: &str = "v1_34";
/// kubectl binaries whose Go structs say how each field is declared; later ones win.
/// anthoscli is here the one Go program that links k8s.io/apiextensions-apiserver.
const GO_BINARIES: [&str; 3] = [
    "/usr/lib/google-cloud-sdk/bin/anthoscli",
    "/usr/lib/google-cloud-sdk/bin/kubectl.1.32",
    "/usr/lib/google-cloud-sdk/bin/kubectl.1.33",
];
/// Top-level modules of k8s-pb that hold the API types the server serves.
const MODULES: [&str; 4] = ["api", "apimachinery", "apiextensions_apiserver", "kube_aggregator"];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut check, mut k8s_pb, mut k8s_openapi, mut binaries, mut out) =
        (false, None, None, Vec::new(), None);
    let (mut builtin, mut patch_meta_out) = (None, None);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--check" => check = true,
            "--k8s-pb" => k8s_pb = Some(PathBuf::from(value()?)),
            "--k8s-openapi" => k8s_openapi = Some(PathBuf::from(value()?)),
            "--go-binary" => binaries.push(value()?),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--builtin" => builtin = Some(PathBuf::from(value()?)),
            "--patch-meta-out" => patch_meta_out = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    let k8s_pb = match k8s_pb {
        Some(dir) => dir,
        None => registry_source(K8S_PB)?.join("src"),
    };
    let k8s_openapi = match k8s_openapi {
        Some(dir) => dir,
        None => registry_source(K8S_OPENAPI)?.join("src").join(OPENAPI_VERSION),
    };
    if binaries.is_empty() {
        binaries = GO_BINARIES.iter().map(|s| s.to_string()).collect();
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = out.unwrap_or_else(|| here.join("../src/schema/generated.rs"));
    let builtin = builtin.unwrap_or_else(|| here.join("../../api/src/builtin"));
    let patch_meta_out = patch_meta_out.unwrap_or_else(|| here.join("../../api/src/patch_meta.rs"));

    let packages: Vec<_> = prost::read(&k8s_pb)?
        .into_iter()
        .filter(|p| {
            MODULES.contains(&p.module[0].as_str()) && !p.module.iter().any(|m| m == "testapigroup")
        })
        .collect();
    let openapi = openapi::read(&k8s_openapi)?;
    let mut go = Vec::new();
    for binary in &binaries {
        // Later binaries are newer: put their structs first so lookups find them.
        let mut structs = gobin::read(binary)?;
        structs.append(&mut go);
        go = structs;
    }
    dedup_newest_first(&mut go);
    let schema = merge::build(&packages, &go, &openapi)?;
    for line in &schema.report {
        eprintln!("{line}");
    }
    let mut sources = vec![
        format!("{K8S_PB} (protobuf schema)"),
        format!("{K8S_OPENAPI} {OPENAPI_VERSION} (JSON names)"),
    ];
    for binary in &binaries {
        let name = Path::new(binary)
            .file_name()
            .map_or(binary.clone(), |n| n.to_string_lossy().into_owned());
        sources.push(format!("{name} (Go struct declarations)"));
    }
    let text = emit::render(&schema, &sources);
    eprintln!(
        "{} messages, {} kinds, {} lines",
        schema.messages.len(),
        schema.kinds.len(),
        text.lines().count()
    );
    let registered = builtin::read(&builtin)?;
    let meta = patch_meta::build(&schema, &openapi, &registered)?;
    for line in &meta.report {
        eprintln!("{line}");
    }
    let meta_text = patch_meta::render(&meta, &sources);
    eprintln!("patch meta: {} lines", meta_text.lines().count());
    write_or_check(&out, &text, check)?;
    write_or_check(&patch_meta_out, &meta_text, check)
}

/// Writes `text` to `path`, or with `check` fails if the file differs from it.
fn write_or_check(path: &Path, text: &str, check: bool) -> Result<(), String> {
    if check {
        let current =
            std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
        if current != text {
            return Err(format!("{} is stale: regenerate it", path.display()));
        }
        eprintln!("{} is up to date", path.display());
    } else {
        std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Keeps the first struct of each (package, name): the one from the newest binary.
fn dedup_newest_first(go: &mut Vec<gobin::GoStruct>) {
    let mut seen = std::collections::HashSet::new();
    go.retain(|s| seen.insert((s.pkg.clone(), s.name.clone())));
}

/// `$CARGO_HOME/registry/src/*/<crate>`, where `cargo fetch` unpacks crates.
fn registry_source(krate: &str) -> Result<PathBuf, String> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let registry = home.join("registry/src");
    let entries =
        std::fs::read_dir(&registry).map_err(|e| format!("read {}: {e}", registry.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(krate))
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    found
        .pop()
        .ok_or_else(|| format!("{krate} is not in {}: run cargo fetch first", registry.display()))
}

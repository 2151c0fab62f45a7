//! Architecture invariants that a reader of ARCHITECTURE.md relies on.

use std::process::Command;

/// Only the API server and the binary reach the datastore directly; every other
/// component goes through the API.
#[test]
fn only_the_apiserver_and_the_binary_depend_on_the_store() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--workspace",
            "-i",
            "keelson-store",
            "-e",
            "normal",
            "--prefix",
            "depth",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout)?;
    // Every line is a crate that reaches the store, at any depth: depth 1 depends on it
    // directly, depth 2 through a depth-1 crate, and so on.
    let dependents: Vec<&str> = tree
        .lines()
        .filter_map(|l| {
            l.trim_start_matches(|c: char| c.is_ascii_digit()).split_whitespace().next()
        })
        .filter(|name| *name != "keelson-store")
        .collect();
    for dependent in &dependents {
        anyhow::ensure!(
            ["keelson", "keelson-apiserver"].contains(dependent),
            "{dependent} depends on keelson-store (directly or through another crate); components must use the API instead:\n{tree}"
        );
    }
    anyhow::ensure!(dependents.contains(&"keelson"), "unexpected cargo tree output:\n{tree}");
    Ok(())
}

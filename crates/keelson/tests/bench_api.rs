//! `keelson bench api` as a user runs it: the real binary starting a real server. Checks
//! the shape of the report, never its timings.

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

#[test]
fn bench_api_reports_every_operation_as_json_lines() -> Result<()> {
    let output = Command::new(env!("CARGO_BIN_EXE_keelson"))
        .args(["bench", "api", "--output", "json", "--ops", "200", "--clients", "1,4"])
        .args(["--list-pods", "300", "--list-repeats", "3", "--watchers", "5"])
        .args(["--watch-events", "50"])
        .env("RUST_LOG", "info")
        .output()?;
    let stdout = String::from_utf8(output.stdout)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success(), "bench api failed: {}\n{stderr}", output.status);

    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect::<Result<_>>()?;
    let (last, rows) = lines.split_last().context("no output")?;

    let mut seen = BTreeSet::new();
    for row in rows {
        let op = row["op"].as_str().with_context(|| format!("no op: {row}"))?;
        let clients = row["clients"].as_u64().with_context(|| format!("no clients: {row}"))?;
        seen.insert((op.to_owned(), clients));
        for field in ["ops_per_sec", "p50_ms", "p99_ms", "server_peak_rss_mb"] {
            ensure!(row[field].as_f64().is_some(), "{field} is not a number: {row}");
        }
        ensure!(row["server_peak_rss_mb"].as_f64() > Some(0.0), "no server memory: {row}");
        let expected_ops = match op {
            "list-300" => 3,
            "watch-delivery" => 5 * 50,
            _ => 200,
        };
        ensure!(row["ops"].as_u64() == Some(expected_ops), "expected {expected_ops} ops: {row}");
    }
    let expected: BTreeSet<(String, u64)> = ["create", "get", "update", "delete"]
        .into_iter()
        .flat_map(|op| [(op.to_owned(), 1), (op.to_owned(), 4)])
        .chain([("list-300".to_owned(), 1), ("watch-delivery".to_owned(), 5)])
        .collect();
    ensure!(seen == expected, "measured {seen:?}, expected {expected:?}");
    ensure!(rows.len() == expected.len(), "an operation was reported twice: {stdout}");

    ensure!(last["op"] == "server_rss", "last line is not server_rss: {last}");
    ensure!(last["pods"] == 300, "the list pods should be all that is stored: {last}");
    ensure!(last["rss_mb"].as_f64() > Some(0.0), "no server memory: {last}");

    // The server it started is gone (killed and reaped), not left running.
    let ready = stderr.lines().find(|l| l.contains("keelson server ready")).context("no pid")?;
    let pid: String = ready.chars().rev().take_while(char::is_ascii_digit).collect();
    let pid: String = pid.chars().rev().collect();
    ensure!(!pid.is_empty(), "no pid in {ready:?}");
    ensure!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "server {pid} still runs");
    Ok(())
}

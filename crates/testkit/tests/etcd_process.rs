//! `EtcdProcess` starts a real etcd that speaks mutual TLS, and leaves nothing behind.

use std::path::Path;
use std::process::Command;

use keelson_testkit::EtcdProcess;

/// `curl` against etcd's `/health` on the client URL; `Ok(body)` if curl succeeded.
fn curl_health(
    etcd: &EtcdProcess,
    with_client_cert: bool,
) -> anyhow::Result<Result<String, String>> {
    let mut curl = Command::new("curl");
    curl.args(["--silent", "--show-error", "--max-time", "5", "--cacert"]).arg(etcd.ca_file());
    if with_client_cert {
        curl.arg("--cert").arg(etcd.cert_file()).arg("--key").arg(etcd.key_file());
    }
    let output = curl.arg(format!("{}/health", etcd.endpoint())).output()?;
    Ok(if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    })
}

#[tokio::test]
async fn serves_mutual_tls_and_leaves_nothing_behind() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start().await?;
    let pid = etcd.pid();
    let dir = etcd.dir().to_owned();
    assert!(etcd.endpoint().starts_with("https://127.0.0.1:"), "{}", etcd.endpoint());
    assert!(etcd.data_dir().join("member").is_dir(), "etcd did not initialise its data dir");
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    // The server certificate verifies against the CA for 127.0.0.1, and a client
    // certificate is accepted.
    let body = curl_health(&etcd, true)?.map_err(anyhow::Error::msg)?;
    assert!(body.contains(r#""health":"true""#), "unexpected /health answer: {body}");

    // Without a client certificate etcd refuses the connection.
    assert!(curl_health(&etcd, false)?.is_err(), "etcd accepted a client without a certificate");

    drop(etcd);
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "etcd (pid {pid}) outlived its handle");
    assert!(!dir.exists(), "the temp dir {} outlived its handle", dir.display());
    Ok(())
}

#[tokio::test]
async fn two_servers_run_side_by_side() -> anyhow::Result<()> {
    let (a, b) = tokio::try_join!(EtcdProcess::start(), EtcdProcess::start())?;
    assert_ne!(a.endpoint(), b.endpoint());
    assert_ne!(a.data_dir(), b.data_dir());
    Ok(())
}

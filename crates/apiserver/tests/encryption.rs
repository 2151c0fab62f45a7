//! Secrets are encrypted at rest in a real etcd, and read back in plaintext.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use keelson_apiserver::encryption::EncryptionConfig;
use keelson_pki::{Pki, PkiOptions};
use keelson_store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_etcd_are_ciphertext() -> Result<()> {
    let etcd = keelson_testkit::EtcdProcess::start().await?;
    let tls = keelson_store::TlsFiles {
        ca_file: Some(etcd.ca_file().to_owned()),
        cert_file: Some(etcd.cert_file().to_owned()),
        key_file: Some(etcd.key_file().to_owned()),
    };
    let raw: Arc<dyn Store> =
        Arc::new(keelson_store::etcd::EtcdStore::connect(&[etcd.endpoint()], &tls).await?);
    let dir = tempfile::tempdir()?;
    let pki = Pki::ensure(&dir.path().join("tls"), &PkiOptions::default())?;
    let encryption =
        EncryptionConfig::load_or_create(&dir.path().join("cred/encryption-config.yaml"))?;
    let running = keelson_apiserver::serve(keelson_apiserver::Config {
        bind: "127.0.0.1:0".parse()?,
        store: raw.clone(),
        tls: pki.server_config()?,
        service_cidr: keelson_apiserver::services::Cidr::parse("10.43.0.0/16")
            .map_err(anyhow::Error::msg)?,
        advertise_address: "127.0.0.1".parse()?,
        encryption: Some(encryption),
        audit: None,
        pod_security: Default::default(),
        service_accounts: None,
    })
    .await?;
    let kubeconfig = dir.path().join("admin.kubeconfig");
    pki.write_kubeconfig(
        &kubeconfig,
        &format!("https://127.0.0.1:{}", running.local_addr.port()),
        "system:admin",
        &["system:masters"],
    )?;
    let kubectl = |args: &[&str]| {
        std::process::Command::new("kubectl").args(args).env("KUBECONFIG", &kubeconfig).output()
    };
    let created = kubectl(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=hunter2-plaintext",
    ])?;
    ensure!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let stored =
        raw.get("/registry/secrets/default/db").await?.context("the secret is not in etcd")?;
    ensure!(
        stored.value.starts_with(b"k8s:enc:secretbox:v1:key1:"),
        "stored as {:?}",
        String::from_utf8_lossy(&stored.value[..40.min(stored.value.len())])
    );
    for needle in [&b"hunter2"[..], b"aHVudGVyMi1wbGFpbnRleHQ=", b"password"] {
        ensure!(!stored.value.windows(needle.len()).any(|w| w == needle), "plaintext in etcd");
    }
    let read = kubectl(&["get", "secret", "db", "-o", "jsonpath={.data.password}"])?;
    ensure!(String::from_utf8_lossy(&read.stdout) == "aHVudGVyMi1wbGFpbnRleHQ=");
    // Other resources stay readable as they are.
    ensure!(kubectl(&["create", "configmap", "c", "--from-literal=k=v"])?.status.success());
    let plain = raw.get("/registry/configmaps/default/c").await?.context("configmap missing")?;
    ensure!(plain.value.starts_with(b"{"));
    running.shutdown().await;
    Ok(())
}

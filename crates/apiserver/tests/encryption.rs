//! Secrets are encrypted at rest in a real etcd and a real SQLite file, with each
//! provider's stored format, and read back in plaintext; keys rotate while serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use keelson_apiserver::encryption::{Encryption, EncryptionConfig, generate_key};
use keelson_pki::{Pki, PkiOptions};
use keelson_store::Store;

/// An API server over `raw` with `encryption`, and an admin kubeconfig for it.
async fn serve(
    dir: &Path,
    raw: Arc<dyn Store>,
    encryption: Encryption,
) -> Result<(keelson_apiserver::Running, PathBuf)> {
    let pki = Pki::ensure(&dir.join("tls"), &PkiOptions::default())?;
    let running = keelson_apiserver::serve(keelson_apiserver::Config {
        encryption: Some(encryption),
        ..keelson_apiserver::Config::loopback(raw, pki.server_config()?)
    })
    .await?;
    let kubeconfig = dir.join("admin.kubeconfig");
    pki.write_kubeconfig(
        &kubeconfig,
        &format!("https://127.0.0.1:{}", running.local_addr.port()),
        "system:admin",
        &["system:masters"],
    )?;
    Ok((running, kubeconfig))
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<String> {
    let output =
        std::process::Command::new("kubectl").args(args).env("KUBECONFIG", kubeconfig).output()?;
    ensure!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

fn head(value: &[u8]) -> String {
    String::from_utf8_lossy(&value[..40.min(value.len())]).into_owned()
}

fn has(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

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
    let encryption =
        EncryptionConfig::load_or_create(&dir.path().join("cred/encryption-config.yaml"))?;
    let (running, kubeconfig) = serve(dir.path(), raw.clone(), encryption.into()).await?;
    kubectl(
        &kubeconfig,
        &["create", "secret", "generic", "db", "--from-literal=password=hunter2-plaintext"],
    )?;
    let stored =
        raw.get("/registry/secrets/default/db").await?.context("the secret is not in etcd")?;
    ensure!(
        stored.value.starts_with(b"k8s:enc:secretbox:v1:key1:"),
        "stored as {:?}",
        head(&stored.value)
    );
    for needle in [&b"hunter2"[..], b"aHVudGVyMi1wbGFpbnRleHQ=", b"password"] {
        ensure!(!has(&stored.value, needle), "plaintext in etcd");
    }
    let read = kubectl(&kubeconfig, &["get", "secret", "db", "-o", "jsonpath={.data.password}"])?;
    ensure!(read == "aHVudGVyMi1wbGFpbnRleHQ=");
    // Other resources stay readable as they are.
    kubectl(&kubeconfig, &["create", "configmap", "c", "--from-literal=k=v"])?;
    let plain = raw.get("/registry/configmaps/default/c").await?.context("configmap missing")?;
    ensure!(plain.value.starts_with(b"{"));
    running.shutdown().await;
    Ok(())
}

/// Secrets with aesgcm and ConfigMaps with aescbc in a SQLite file; then, without a
/// restart, a new aesgcm key goes first and a rewrite moves the Secret to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aes_providers_in_sqlite_and_an_online_key_rotation() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.db");
    let raw: Arc<dyn Store> =
        Arc::new(tokio::task::spawn_blocking(move || keelson_store::sqlite::open(&path)).await??);
    let (gcm1, gcm2, cbc) = (generate_key(32), generate_key(16), generate_key(24));
    let config = |gcm_keys: &str| {
        EncryptionConfig::parse(&format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aesgcm:\n          keys:\n{gcm_keys}      - identity: {{}}\n  - resources: [configmaps]\n    providers:\n      - aescbc:\n          keys: [{{name: cbc1, secret: {cbc}}}]\n"
        ))
        .map_err(anyhow::Error::msg)
    };
    let encryption =
        Encryption::new(config(&format!("            - {{name: gcm1, secret: {gcm1}}}\n"))?);
    let (running, kubeconfig) = serve(dir.path(), raw.clone(), encryption.clone()).await?;

    kubectl(
        &kubeconfig,
        &["create", "secret", "generic", "db", "--from-literal=password=hunter2-plaintext"],
    )?;
    kubectl(&kubeconfig, &["create", "configmap", "c", "--from-literal=colour=ultramarine"])?;
    let secret = raw.get("/registry/secrets/default/db").await?.context("no secret")?;
    ensure!(
        secret.value.starts_with(b"k8s:enc:aesgcm:v1:gcm1:"),
        "stored as {:?}",
        head(&secret.value)
    );
    let map = raw.get("/registry/configmaps/default/c").await?.context("no configmap")?;
    ensure!(map.value.starts_with(b"k8s:enc:aescbc:v1:cbc1:"), "stored as {:?}", head(&map.value));
    // After the prefix: a 16-byte IV and whole AES blocks.
    ensure!((map.value.len() - b"k8s:enc:aescbc:v1:cbc1:".len()) % 16 == 0);
    ensure!(!has(&secret.value, b"aHVudGVyMi1wbGFpbnRleHQ=") && !has(&map.value, b"ultramarine"));
    let read = kubectl(&kubeconfig, &["get", "secret", "db", "-o", "jsonpath={.data.password}"])?;
    ensure!(read == "aHVudGVyMi1wbGFpbnRleHQ=", "read {read:?}");
    let read = kubectl(&kubeconfig, &["get", "configmap", "c", "-o", "jsonpath={.data.colour}"])?;
    ensure!(read == "ultramarine", "read {read:?}");

    // GCM authenticates the storage key: the same bytes under another name do not open.
    raw.create("/registry/secrets/default/copy", secret.value.clone()).await?;
    let copied = std::process::Command::new("kubectl")
        .args(["get", "secret", "copy"])
        .env("KUBECONFIG", &kubeconfig)
        .output()?;
    ensure!(!copied.status.success(), "a secret copied to another key decrypted");
    let copy = raw.get("/registry/secrets/default/copy").await?.context("copy")?;
    raw.delete("/registry/secrets/default/copy", copy.mod_revision).await?;

    // Rotation: a new key first, the old one kept for reading; a PUT rewrites with it.
    encryption.reload(config(&format!(
        "            - {{name: gcm2, secret: {gcm2}}}\n            - {{name: gcm1, secret: {gcm1}}}\n"
    ))?);
    let status = keelson_apiserver::encryption::status(&encryption, raw.as_ref()).await?;
    ensure!(
        status.secrets.write_key == "aesgcm/gcm2" && !status.secrets.all_current(),
        "{status:?}"
    );
    let read = kubectl(&kubeconfig, &["get", "secret", "db", "-o", "jsonpath={.data.password}"])?;
    ensure!(read == "aHVudGVyMi1wbGFpbnRleHQ=", "the old key no longer reads");
    let json = kubectl(&kubeconfig, &["get", "secret", "db", "-o", "json"])?;
    let replace = std::process::Command::new("kubectl")
        .args(["replace", "-f", "-"])
        .env("KUBECONFIG", &kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().map(|mut stdin| stdin.write_all(json.as_bytes()));
            child.wait()
        })?;
    ensure!(replace.success(), "kubectl replace failed");
    let secret = raw.get("/registry/secrets/default/db").await?.context("no secret")?;
    ensure!(
        secret.value.starts_with(b"k8s:enc:aesgcm:v1:gcm2:"),
        "stored as {:?}",
        head(&secret.value)
    );
    // The server says so too, over HTTPS to the admin.
    let status: keelson_apiserver::encryption::Status = serde_json::from_str(&kubectl(
        &kubeconfig,
        &["get", "--raw", "/keelson/v1/secrets-encryption"],
    )?)?;
    ensure!(status.secrets.all_current() && status.secrets.total == 1, "{status:?}");
    ensure!(status.resources[0].providers[0].keys == ["gcm2", "gcm1"], "{status:?}");
    running.shutdown().await;
    Ok(())
}

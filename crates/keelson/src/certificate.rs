//! `keelson certificate check|rotate`: the cluster's certificates and their expiry, and
//! new leaf certificates on demand. A running server picks up a rotated serving
//! certificate by itself (see `server.rs`); the CA never changes here.

use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use keelson_pki::{Pki, PkiOptions, certificate_expiry, file_names};

#[derive(clap::Subcommand)]
pub enum Command {
    /// List the certificates and when they expire.
    Check(Args),
    /// Issue new serving and admin client certificates (not a new CA).
    Rotate(Args),
}

#[derive(clap::Args)]
pub struct Args {
    /// The server's data directory [default: /var/lib/keelson as root, else $XDG_DATA_HOME/keelson]
    #[arg(long, short = 'd')]
    data_dir: Option<PathBuf>,
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Check(args) => check(&data_dir(args)),
        Command::Rotate(args) => rotate(&data_dir(args)),
    }
}

fn data_dir(args: Args) -> PathBuf {
    args.data_dir.unwrap_or_else(crate::config::default_data_dir)
}

/// The first certificate of a PEM file, DER.
fn pem_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_file(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(der.to_vec())
}

/// The client certificate embedded in a kubeconfig, DER, and the server it names.
fn kubeconfig_cert(path: &Path) -> anyhow::Result<(Vec<u8>, String)> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.trim().strip_prefix(name).map(|v| v.trim().trim_matches('"').to_owned())
            })
            .with_context(|| format!("{} has no {name}", path.display()))
    };
    let pem =
        base64::engine::general_purpose::STANDARD.decode(field("client-certificate-data:")?)?;
    let der = CertificateDer::from_pem_slice(&pem)
        .with_context(|| format!("{}: bad client certificate", path.display()))?;
    Ok((der.to_vec(), field("server:")?))
}

fn check(data_dir: &Path) -> anyhow::Result<()> {
    let tls = data_dir.join("tls");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    println!("{:<40} {:<32} {:>9}", "CERTIFICATE", "SUBJECT", "EXPIRES");
    let mut rows = vec![
        ("ca".to_owned(), pem_file(&tls.join(file_names::CA_CERT))),
        ("serving-kube-apiserver".to_owned(), pem_file(&tls.join(file_names::SERVING_CERT))),
    ];
    rows.push((
        "admin.kubeconfig".to_owned(),
        kubeconfig_cert(&data_dir.join("admin.kubeconfig")).map(|(der, _)| der),
    ));
    for (name, der) in rows {
        let (subject, not_after) = certificate_expiry(&der?)?;
        let days = (not_after - now) / 86_400;
        println!("{name:<40} {subject:<32} {:>8}d", days);
    }
    Ok(())
}

fn rotate(data_dir: &Path) -> anyhow::Result<()> {
    let tls = data_dir.join("tls");
    anyhow::ensure!(tls.join(file_names::CA_CERT).exists(), "no cluster PKI in {}", tls.display());
    let pki = Pki::rotate_serving(&tls, &PkiOptions::default())?;
    println!("serving certificate re-issued: a running server serves it within seconds");
    let kubeconfig = data_dir.join("admin.kubeconfig");
    if let Ok((_, server)) = kubeconfig_cert(&kubeconfig) {
        std::fs::remove_file(&kubeconfig)?;
        pki.write_kubeconfig(&kubeconfig, &server, "system:admin", &["system:masters"])?;
        println!("admin client certificate re-issued in {}", kubeconfig.display());
    }
    Ok(())
}

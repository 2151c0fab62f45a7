//! `Pki::write_kubeconfig`: layout, mode, embedded credentials, and when the client certificate
//! is kept or re-issued.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keelson_pki::file_names::{CA_CERT, CA_KEY};
use keelson_pki::{CertIdentity, Pki, PkiOptions, identity_from_der};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
};
use time::{Duration, OffsetDateTime};
use x509_parser::pem::parse_x509_pem;

const SERVER: &str = "https://127.0.0.1:6443";

/// The decoded value of `key` in a kubeconfig.
fn field(text: &str, key: &str) -> Result<String> {
    let value = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(&format!("{key}: ")))
        .with_context(|| format!("no {key} in\n{text}"))?;
    Ok(String::from_utf8(STANDARD.decode(value.trim())?)?)
}

fn client_cert_der(text: &str) -> Result<Vec<u8>> {
    let pem = field(text, "client-certificate-data")?;
    let (_, pem) = parse_x509_pem(pem.as_bytes())?;
    Ok(pem.contents)
}

fn setup() -> Result<(tempfile::TempDir, Pki)> {
    let tmp = tempfile::tempdir()?;
    let pki = Pki::ensure(&tmp.path().join("tls"), &PkiOptions::default())?;
    Ok((tmp, pki))
}

#[test]
fn kubeconfig_embeds_ca_and_admin_credentials() -> Result<()> {
    let (tmp, pki) = setup()?;
    let path = tmp.path().join("etc").join("keelson.yaml");
    pki.write_kubeconfig(&path, SERVER, "system:admin", &["system:masters"])?;

    assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o7777, 0o600);
    let text = fs::read_to_string(&path)?;
    assert!(text.contains(&format!("server: \"{SERVER}\"")), "{text}");
    assert!(text.contains("current-context: default"), "{text}");
    assert!(text.contains("kind: Config"), "{text}");
    assert_eq!(field(&text, "certificate-authority-data")?, pki.ca_pem());
    let key = field(&text, "client-key-data")?;
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    KeyPair::from_pem(&key)?;

    let der = client_cert_der(&text)?;
    assert_eq!(
        identity_from_der(&der)?,
        CertIdentity { user: "system:admin".into(), groups: vec!["system:masters".into()] }
    );
    let (_, cert) = x509_parser::parse_x509_certificate(&der)?;
    let (_, ca) = x509_parser::parse_x509_certificate(pki.ca_der())?;
    cert.verify_signature(Some(ca.public_key()))?;
    assert!(cert.extended_key_usage()?.context("eku")?.value.client_auth);
    assert!(!cert.is_ca());
    let lifetime = cert.validity().not_after.to_datetime() - OffsetDateTime::now_utc();
    assert!(lifetime > Duration::days(85) && lifetime <= Duration::days(90));
    Ok(())
}

#[test]
fn rewriting_keeps_a_sound_client_certificate() -> Result<()> {
    let (tmp, pki) = setup()?;
    let path = tmp.path().join("kubeconfig");
    pki.write_kubeconfig(&path, SERVER, "system:admin", &["system:masters"])?;
    let first = fs::read_to_string(&path)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;

    pki.write_kubeconfig(&path, SERVER, "system:admin", &["system:masters"])?;
    assert_eq!(fs::read_to_string(&path)?, first);
    assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o7777, 0o600);

    // A new server URL rewrites the file but keeps the credentials.
    pki.write_kubeconfig(&path, "https://192.0.2.1:6443", "system:admin", &["system:masters"])?;
    let moved = fs::read_to_string(&path)?;
    assert!(moved.contains("server: \"https://192.0.2.1:6443\""));
    assert_eq!(client_cert_der(&moved)?, client_cert_der(&first)?);
    assert_eq!(field(&moved, "client-key-data")?, field(&first, "client-key-data")?);
    Ok(())
}

#[test]
fn another_identity_gets_a_new_certificate() -> Result<()> {
    let (tmp, pki) = setup()?;
    let path = tmp.path().join("kubeconfig");
    pki.write_kubeconfig(&path, SERVER, "system:admin", &["system:masters"])?;
    let first = client_cert_der(&fs::read_to_string(&path)?)?;
    pki.write_kubeconfig(&path, SERVER, "alice", &["dev", "ops"])?;
    let second = client_cert_der(&fs::read_to_string(&path)?)?;
    assert_ne!(first, second);
    assert_eq!(
        identity_from_der(&second)?,
        CertIdentity { user: "alice".into(), groups: vec!["dev".into(), "ops".into()] }
    );
    Ok(())
}

#[test]
fn unparseable_kubeconfig_is_replaced() -> Result<()> {
    let (tmp, pki) = setup()?;
    let path = tmp.path().join("kubeconfig");
    for junk in [
        "not yaml at all: [",
        "users:\n- user:\n    client-certificate-data: !!!\n    client-key-data: ???\n",
        "\u{0}\u{1}binary",
    ] {
        fs::write(&path, junk)?;
        pki.write_kubeconfig(&path, SERVER, "system:admin", &["system:masters"])?;
        let text = fs::read_to_string(&path)?;
        identity_from_der(&client_cert_der(&text)?)?;
    }
    Ok(())
}

#[test]
fn certificate_from_a_previous_ca_is_replaced() -> Result<()> {
    let (tmp, old) = setup()?;
    let path = tmp.path().join("kubeconfig");
    old.write_kubeconfig(&path, SERVER, "system:admin", &["system:masters"])?;
    let before = fs::read_to_string(&path)?;

    let tls = tmp.path().join("tls");
    fs::remove_file(tls.join(CA_CERT))?;
    fs::remove_file(tls.join(CA_KEY))?;
    let new = Pki::ensure(&tls, &PkiOptions::default())?;
    new.write_kubeconfig(&path, SERVER, "system:admin", &["system:masters"])?;
    let after = fs::read_to_string(&path)?;
    assert_eq!(field(&after, "certificate-authority-data")?, new.ca_pem());
    assert_ne!(client_cert_der(&after)?, client_cert_der(&before)?);
    let der = client_cert_der(&after)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)?;
    let (_, ca) = x509_parser::parse_x509_certificate(new.ca_der())?;
    cert.verify_signature(Some(ca.public_key()))?;
    Ok(())
}

#[test]
fn certificate_expiring_within_30_days_is_replaced() -> Result<()> {
    let (tmp, pki) = setup()?;
    let path = tmp.path().join("kubeconfig");
    pki.write_kubeconfig(&path, SERVER, "system:admin", &["system:masters"])?;
    let text = fs::read_to_string(&path)?;

    // Swap in a certificate with the right identity and CA that expires in 10 days.
    let tls = tmp.path().join("tls");
    let ca = Issuer::from_ca_cert_pem(
        &fs::read_to_string(tls.join(CA_CERT))?,
        KeyPair::from_pem(&fs::read_to_string(tls.join(CA_KEY))?)?,
    )?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "system:masters");
    name.push(DnType::CommonName, "system:admin");
    params.distinguished_name = name;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = OffsetDateTime::now_utc() - Duration::hours(1);
    params.not_after = OffsetDateTime::now_utc() + Duration::days(10);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    let swap = |text: &str, key_name: &str, value: &str| -> Result<String> {
        let old = STANDARD.encode(field(text, key_name)?);
        Ok(text.replace(&old, &STANDARD.encode(value)))
    };
    let forged = swap(&text, "client-certificate-data", &cert.pem())?;
    let forged = swap(&forged, "client-key-data", &key.serialize_pem())?;
    assert_eq!(field(&forged, "client-certificate-data")?, cert.pem());
    write_private(&path, &forged)?;

    // Control: the same forgery with 60 days left is kept.
    let control_path = tmp.path().join("control");
    params.not_after = OffsetDateTime::now_utc() + Duration::days(60);
    let cert60 = params.signed_by(&key, &ca)?;
    let control = swap(&forged, "client-certificate-data", &cert60.pem())?;
    write_private(&control_path, &control)?;
    pki.write_kubeconfig(&control_path, SERVER, "system:admin", &["system:masters"])?;
    assert_eq!(fs::read_to_string(&control_path)?, control);

    pki.write_kubeconfig(&path, SERVER, "system:admin", &["system:masters"])?;
    let der = client_cert_der(&fs::read_to_string(&path)?)?;
    let (_, renewed) = x509_parser::parse_x509_certificate(&der)?;
    let lifetime = renewed.validity().not_after.to_datetime() - OffsetDateTime::now_utc();
    assert!(lifetime > Duration::days(85), "not re-issued: {lifetime}");
    Ok(())
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

#[test]
fn identities_round_trip_through_issued_certificates() -> Result<()> {
    let (_tmp, pki) = setup()?;
    for (user, groups) in [
        ("system:admin", vec!["system:masters"]),
        ("system:kube-scheduler", vec![]),
        ("alice", vec!["a", "b", "c", "system:authenticated"]),
        ("üser with spaces", vec!["grüppe"]),
    ] {
        let (cert, key) = pki.issue_client(user, &groups)?;
        KeyPair::from_pem(&key)?;
        let (_, pem) = parse_x509_pem(cert.as_bytes())?;
        let identity = identity_from_der(&pem.contents)?;
        assert_eq!(identity.user, user);
        assert_eq!(identity.groups, groups);
    }
    assert!(pki.issue_client("", &[]).is_err());
    assert!(pki.issue_client("bob", &[""]).is_err());
    assert!(identity_from_der(b"not a certificate").is_err());
    Ok(())
}

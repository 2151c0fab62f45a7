//! `Pki::ensure`: files and modes, idempotence, serving certificate names, re-issue rules, and
//! refusing to paper over a broken CA.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use keelson_pki::file_names::{CA_CERT, CA_KEY, SERVING_CERT, SERVING_KEY};
use keelson_pki::{Error, Pki, PkiOptions};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType,
};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

fn mode(path: &Path) -> Result<u32> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o7777)
}

fn read(dir: &Path, name: &str) -> Result<String> {
    fs::read_to_string(dir.join(name)).with_context(|| name.to_string())
}

/// DNS names (lowercase) and IP addresses in the serving certificate.
fn serving_sans(dir: &Path) -> Result<(Vec<String>, Vec<IpAddr>)> {
    let pem = read(dir, SERVING_CERT)?;
    let (_, pem) = parse_x509_pem(pem.as_bytes())?;
    let cert = pem.parse_x509()?;
    let san = cert.subject_alternative_name()?.context("no SAN extension")?;
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(d) => dns.push(d.to_ascii_lowercase()),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                ips.push(IpAddr::from(<[u8; 4]>::try_from(*b)?))
            }
            GeneralName::IPAddress(b) => ips.push(IpAddr::from(<[u8; 16]>::try_from(*b)?)),
            _ => {}
        }
    }
    Ok((dns, ips))
}

#[test]
fn creates_files_with_private_modes() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("server").join("tls");
    let pki = Pki::ensure(&dir, &PkiOptions::default())?;

    assert_eq!(mode(&dir)?, 0o700);
    assert_eq!(mode(&dir.join(CA_KEY))?, 0o600);
    assert_eq!(mode(&dir.join(SERVING_KEY))?, 0o600);
    assert_eq!(mode(&dir.join(CA_CERT))?, 0o600);
    assert_eq!(mode(&dir.join(SERVING_CERT))?, 0o600);
    let leftovers: Vec<_> = fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    assert_eq!(pki.ca_pem(), read(&dir, CA_CERT)?);
    let (_, ca) = x509_parser::parse_x509_certificate(pki.ca_der())?;
    assert!(ca.is_ca());
    let cn = ca.subject().iter_common_name().next().context("ca cn")?.as_str()?;
    assert!(cn.starts_with("keelson-ca@"), "{cn}");
    cn["keelson-ca@".len()..].parse::<i64>().context("unix time in ca cn")?;
    let lifetime = ca.validity().not_after.to_datetime() - OffsetDateTime::now_utc();
    assert!(lifetime > Duration::days(3640) && lifetime <= Duration::days(3650));
    Ok(())
}

#[test]
fn second_call_loads_the_same_files() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let first = Pki::ensure(tmp.path(), &PkiOptions::default())?;
    let files: Vec<String> = [CA_CERT, CA_KEY, SERVING_CERT, SERVING_KEY]
        .iter()
        .map(|n| read(tmp.path(), n))
        .collect::<Result<_>>()?;

    let second = Pki::ensure(tmp.path(), &PkiOptions::default())?;
    assert_eq!(first.ca_pem(), second.ca_pem());
    assert_eq!(first.ca_der(), second.ca_der());
    assert_eq!(first.serving_cert_der(), second.serving_cert_der());
    for (name, before) in [CA_CERT, CA_KEY, SERVING_CERT, SERVING_KEY].iter().zip(&files) {
        assert_eq!(&read(tmp.path(), name)?, before, "{name} changed");
    }
    Ok(())
}

#[test]
fn serving_certificate_carries_the_wanted_names() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let options = PkiOptions { extra_sans: vec!["API.example.com".into(), "192.0.2.77".into()] };
    let pki = Pki::ensure(tmp.path(), &options)?;
    let (dns, ips) = serving_sans(tmp.path())?;
    for name in [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "api.example.com",
    ] {
        assert!(dns.contains(&name.to_string()), "{name} missing from {dns:?}");
    }
    let host = fs::read_to_string("/proc/sys/kernel/hostname")?;
    assert!(dns.contains(&host.trim().to_ascii_lowercase()), "host name missing from {dns:?}");
    for ip in ["127.0.0.1", "::1", "10.43.0.1", "192.0.2.77"] {
        assert!(ips.contains(&ip.parse()?), "{ip} missing from {ips:?}");
    }

    let (_, cert) = x509_parser::parse_x509_certificate(pki.serving_cert_der())?;
    let cn = cert.subject().iter_common_name().next().context("cn")?.as_str()?;
    assert_eq!(cn, "kube-apiserver");
    assert!(cert.extended_key_usage()?.context("eku")?.value.server_auth);
    let (_, ca) = x509_parser::parse_x509_certificate(pki.ca_der())?;
    cert.verify_signature(Some(ca.public_key()))?;
    let lifetime = cert.validity().not_after.to_datetime() - OffsetDateTime::now_utc();
    assert!(lifetime > Duration::days(85) && lifetime <= Duration::days(90));
    Ok(())
}

#[test]
fn missing_san_reissues_the_serving_certificate_but_keeps_the_ca() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let first = Pki::ensure(tmp.path(), &PkiOptions::default())?;
    let ca_key = read(tmp.path(), CA_KEY)?;
    let options = PkiOptions { extra_sans: vec!["extra.example.com".into(), "fd00::99".into()] };
    let second = Pki::ensure(tmp.path(), &options)?;
    assert_ne!(first.serving_cert_der(), second.serving_cert_der());
    assert_eq!(first.ca_pem(), second.ca_pem());
    assert_eq!(read(tmp.path(), CA_KEY)?, ca_key);
    let (dns, ips) = serving_sans(tmp.path())?;
    assert!(dns.contains(&"extra.example.com".to_string()));
    assert!(ips.contains(&"fd00::99".parse()?));

    // Names are only ever added: dropping the extra SAN does not re-issue.
    let third = Pki::ensure(tmp.path(), &PkiOptions::default())?;
    assert_eq!(second.serving_cert_der(), third.serving_cert_der());
    Ok(())
}

/// Replaces the serving certificate with a copy of itself (same names) that `issuer` signs and
/// that expires at `not_after`.
fn forge_serving(
    dir: &Path,
    issuer: &Issuer<'_, KeyPair>,
    not_after: OffsetDateTime,
) -> Result<()> {
    let (dns, ips) = serving_sans(dir)?;
    let mut sans: Vec<SanType> = ips.into_iter().map(SanType::IpAddress).collect();
    for name in dns {
        sans.push(SanType::DnsName(name.try_into()?));
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name("kube-apiserver");
    params.subject_alt_names = sans;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = OffsetDateTime::now_utc() - Duration::hours(1);
    params.not_after = not_after;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    fs::write(dir.join(SERVING_KEY), key.serialize_pem())?;
    fs::write(dir.join(SERVING_CERT), cert.pem())?;
    Ok(())
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name
}

fn current_ca(dir: &Path) -> Result<Issuer<'static, KeyPair>> {
    let key = KeyPair::from_pem(&read(dir, CA_KEY)?)?;
    Ok(Issuer::from_ca_cert_pem(&read(dir, CA_CERT)?, key)?)
}

#[test]
fn serving_certificate_expiring_within_30_days_is_reissued() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    Pki::ensure(tmp.path(), &PkiOptions::default())?;
    let soon = OffsetDateTime::now_utc() + Duration::days(10);
    forge_serving(tmp.path(), &current_ca(tmp.path())?, soon)?;
    // A certificate good for 60 more days is kept.
    let later = OffsetDateTime::now_utc() + Duration::days(60);
    let forged_later = {
        let dir = tempfile::tempdir()?;
        Pki::ensure(dir.path(), &PkiOptions::default())?;
        forge_serving(dir.path(), &current_ca(dir.path())?, later)?;
        let kept = Pki::ensure(dir.path(), &PkiOptions::default())?;
        let (_, cert) = x509_parser::parse_x509_certificate(kept.serving_cert_der())?;
        cert.validity().not_after.to_datetime()
    };
    assert!((forged_later - later).abs() < Duration::seconds(1), "re-issued too early");

    let pki = Pki::ensure(tmp.path(), &PkiOptions::default())?;
    let (_, cert) = x509_parser::parse_x509_certificate(pki.serving_cert_der())?;
    let lifetime = cert.validity().not_after.to_datetime() - OffsetDateTime::now_utc();
    assert!(lifetime > Duration::days(85), "not re-issued: {lifetime}");
    Ok(())
}

#[test]
fn serving_certificate_signed_by_another_ca_is_reissued() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let pki = Pki::ensure(tmp.path(), &PkiOptions::default())?;
    // An impostor CA with the very same subject: only the signature tells them apart.
    let (_, ca) = x509_parser::parse_x509_certificate(pki.ca_der())?;
    let mut ca_params = CertificateParams::default();
    let cn = ca.subject().iter_common_name().next().context("ca cn")?.as_str()?;
    ca_params.distinguished_name = common_name(cn);
    let impostor = Issuer::new(ca_params, KeyPair::generate()?);
    forge_serving(tmp.path(), &impostor, OffsetDateTime::now_utc() + Duration::days(300))?;
    let forged = read(tmp.path(), SERVING_CERT)?;

    let pki = Pki::ensure(tmp.path(), &PkiOptions::default())?;
    assert_ne!(read(tmp.path(), SERVING_CERT)?, forged);
    let (_, cert) = x509_parser::parse_x509_certificate(pki.serving_cert_der())?;
    let (_, ca) = x509_parser::parse_x509_certificate(pki.ca_der())?;
    cert.verify_signature(Some(ca.public_key()))?;
    Ok(())
}

#[test]
fn corrupt_serving_files_are_reissued() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    Pki::ensure(tmp.path(), &PkiOptions::default())?;
    fs::write(tmp.path().join(SERVING_CERT), "not a certificate")?;
    Pki::ensure(tmp.path(), &PkiOptions::default())?;
    assert!(read(tmp.path(), SERVING_CERT)?.starts_with("-----BEGIN CERTIFICATE-----"));

    // A key that does not belong to the certificate.
    fs::write(tmp.path().join(SERVING_KEY), KeyPair::generate()?.serialize_pem())?;
    let cert_before = read(tmp.path(), SERVING_CERT)?;
    Pki::ensure(tmp.path(), &PkiOptions::default())?;
    assert_ne!(read(tmp.path(), SERVING_CERT)?, cert_before);

    fs::remove_file(tmp.path().join(SERVING_KEY))?;
    Pki::ensure(tmp.path(), &PkiOptions::default())?;
    assert_eq!(mode(&tmp.path().join(SERVING_KEY))?, 0o600);
    Ok(())
}

fn assert_ca_unusable(result: keelson_pki::Result<Pki>, file: &str) {
    match result {
        Err(e @ Error::CaUnusable { .. }) => {
            let message = e.to_string();
            assert!(message.contains(file), "{message}");
            assert!(message.contains("orphan"), "{message}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a broken ca was accepted"),
    }
}

#[test]
fn corrupt_ca_key_is_an_error_not_a_new_ca() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    Pki::ensure(tmp.path(), &PkiOptions::default())?;
    let ca_cert = read(tmp.path(), CA_CERT)?;

    for garbage in [
        "garbage".to_string(),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_string(),
        String::new(),
    ] {
        fs::write(tmp.path().join(CA_KEY), &garbage)?;
        assert_ca_unusable(Pki::ensure(tmp.path(), &PkiOptions::default()), CA_KEY);
        assert_eq!(read(tmp.path(), CA_CERT)?, ca_cert, "ca.crt was replaced");
        assert_eq!(read(tmp.path(), CA_KEY)?, garbage, "ca.key was replaced");
    }

    // A valid key that belongs to another certificate.
    fs::write(tmp.path().join(CA_KEY), KeyPair::generate()?.serialize_pem())?;
    assert_ca_unusable(Pki::ensure(tmp.path(), &PkiOptions::default()), CA_KEY);
    Ok(())
}

#[test]
fn half_a_ca_is_an_error() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    Pki::ensure(tmp.path(), &PkiOptions::default())?;
    fs::remove_file(tmp.path().join(CA_KEY))?;
    assert_ca_unusable(Pki::ensure(tmp.path(), &PkiOptions::default()), CA_KEY);

    let tmp = tempfile::tempdir()?;
    Pki::ensure(tmp.path(), &PkiOptions::default())?;
    fs::write(
        tmp.path().join(CA_CERT),
        "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
    )?;
    assert_ca_unusable(Pki::ensure(tmp.path(), &PkiOptions::default()), CA_CERT);
    fs::remove_file(tmp.path().join(CA_CERT))?;
    assert_ca_unusable(Pki::ensure(tmp.path(), &PkiOptions::default()), CA_CERT);
    Ok(())
}

#[test]
fn removing_both_ca_files_starts_over() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let old = Pki::ensure(tmp.path(), &PkiOptions::default())?;
    fs::remove_file(tmp.path().join(CA_CERT))?;
    fs::remove_file(tmp.path().join(CA_KEY))?;
    let new = Pki::ensure(tmp.path(), &PkiOptions::default())?;
    assert_ne!(old.ca_pem(), new.ca_pem());
    // The old serving certificate is not signed by the new CA, so it was re-issued.
    let (_, cert) = x509_parser::parse_x509_certificate(new.serving_cert_der())?;
    let (_, ca) = x509_parser::parse_x509_certificate(new.ca_der())?;
    cert.verify_signature(Some(ca.public_key()))?;
    Ok(())
}

#[test]
fn invalid_extra_san_is_an_error() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let options = PkiOptions { extra_sans: vec!["bücher.example".into()] };
    let err = Pki::ensure(tmp.path(), &options).err().context("accepted")?;
    assert!(err.to_string().contains("bücher.example"), "{err}");
    Ok(())
}

/// The front-proxy CA is its own CA, kept like the cluster CA; its client certificate
/// names `front-proxy-client`, and only its certificates verify against it.
#[test]
fn the_front_proxy_ca_is_separate_and_signs_the_proxy_client() -> Result<()> {
    use keelson_pki::file_names::{FRONT_PROXY_CA_CERT, FRONT_PROXY_CA_KEY};
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("tls");
    let pki = Pki::ensure(&dir, &PkiOptions::default())?;
    assert_eq!(mode(&dir.join(FRONT_PROXY_CA_KEY))?, 0o600);
    assert_eq!(read(&dir, FRONT_PROXY_CA_CERT)?, pki.front_proxy_ca_pem());
    assert_ne!(pki.front_proxy_ca_pem(), pki.ca_pem());
    let again = Pki::ensure(&dir, &PkiOptions::default())?;
    assert_eq!(again.front_proxy_ca_pem(), pki.front_proxy_ca_pem(), "kept");

    let front_proxy = keelson_pki::ClientCaVerifier::new(pki.front_proxy_ca_pem())?;
    let der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes());
    let proxy = der(pki.front_proxy_client().0)?;
    assert!(front_proxy.verifies(&proxy));
    assert_eq!(keelson_pki::identity_from_der(&proxy)?.user, keelson_pki::FRONT_PROXY_CLIENT);
    let (admin, _) = pki.issue_client("system:admin", &["system:masters"])?;
    assert!(!front_proxy.verifies(&der(&admin)?), "the cluster CA's is not a front proxy's");
    Ok(())
}

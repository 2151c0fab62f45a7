//! The API server's serving certificate, `serving-kube-apiserver.{crt,key}`, and the names it
//! must carry.
//!
//! Unlike the CA, the serving certificate is derived material: whenever it is missing, broken,
//! lacks a wanted name, nears expiry or was signed by another CA it is re-issued, and the reason
//! logged. It must never drop a name a client may be using: names are only ever added.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::ca::Ca;
use crate::cert::BACKDATE;
use crate::file_names::{SERVING_CERT, SERVING_KEY};
use crate::files::{self, PRIVATE, PUBLIC};
use crate::{Error, PkiOptions, Result};

const SERVING_VALIDITY: Duration = Duration::days(90);

/// The first address of the default service CIDR (10.43.0.0/16): the `kubernetes` service.
const FIRST_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 1);

/// Names of the in-cluster `kubernetes` service.
const SERVICE_NAMES: [&str; 4] = [
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// A subject alternative name. DNS names are kept lowercase: they match case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum San {
    Dns(String),
    Ip(IpAddr),
}

impl San {
    /// An IP SAN if `s` parses as an IP address, a DNS SAN otherwise.
    fn parse(s: &str) -> Result<San> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Error::input("subject alternative name", "empty name"));
        }
        let san = match s.parse::<IpAddr>() {
            Ok(ip) => San::Ip(ip),
            Err(_) => San::Dns(s.to_ascii_lowercase()),
        };
        san.to_rcgen()?;
        Ok(san)
    }

    fn to_rcgen(&self) -> Result<SanType> {
        match self {
            San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            San::Dns(name) => name
                .as_str()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|source| Error::InvalidSan { san: name.clone(), source }),
        }
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => f.write_str(name),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Every name the serving certificate must carry, without duplicates, in a stable order.
pub(crate) fn wanted_sans(options: &PkiOptions) -> Result<Vec<San>> {
    let mut sans = vec![
        San::Ip(Ipv4Addr::LOCALHOST.into()),
        San::Ip(Ipv6Addr::LOCALHOST.into()),
        San::Dns("localhost".into()),
    ];
    match host_name() {
        Some(name) => match San::parse(&name) {
            Ok(san) => sans.push(san),
            Err(e) => tracing::debug!(name, error = %e, "host name unusable as a certificate name"),
        },
        None => tracing::debug!("no host name found for the serving certificate"),
    }
    sans.extend(host_addresses().into_iter().map(San::Ip));
    sans.extend(SERVICE_NAMES.iter().map(|n| San::Dns((*n).into())));
    sans.push(San::Ip(FIRST_SERVICE_IP.into()));
    for extra in &options.extra_sans {
        sans.push(San::parse(extra)?);
    }
    let mut seen = HashSet::new();
    sans.retain(|san| seen.insert(san.clone()));
    Ok(sans)
}

/// Loads the serving certificate and key from `dir`, re-issuing them if they cannot be kept.
pub(crate) fn ensure(
    dir: &Path,
    ca: &Ca,
    options: &PkiOptions,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let cert_path = dir.join(SERVING_CERT);
    let key_path = dir.join(SERVING_KEY);
    let wanted = wanted_sans(options)?;
    let cert_pem = files::read_optional(&cert_path)?;
    let key_pem = files::read_optional(&key_path)?;
    let reason = match (&cert_pem, &key_pem) {
        (None, _) => "certificate does not exist".to_string(),
        (Some(_), None) => "private key does not exist".to_string(),
        (Some(cert_pem), Some(key_pem)) => {
            let problem = ca.leaf_problem(cert_pem, key_pem, |leaf| serving_problem(leaf, &wanted));
            match (problem, load(cert_pem, key_pem)) {
                (None, Ok(loaded)) => return Ok(loaded),
                (Some(problem), _) => problem,
                (None, Err(problem)) => problem.to_string(),
            }
        }
    };
    tracing::info!(
        path = %cert_path.display(),
        reason,
        "issuing the api server serving certificate",
    );
    let params = serving_params("kube-apiserver", &wanted, SERVING_VALIDITY)?;
    let (cert, key) = ca.issue(&params, "serving certificate")?;
    // Key first: a crash in between leaves a key that does not match the old certificate,
    // which the next start notices and repairs.
    files::write_atomic(&key_path, key.serialize_pem().as_bytes(), PRIVATE)?;
    files::write_atomic(&cert_path, cert.pem().as_bytes(), PUBLIC)?;
    let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    Ok((cert.der().clone(), key))
}

/// Why serving certificate and key files that passed the CA's checks do not load for rustls.
#[derive(Debug, thiserror::Error)]
enum Unloadable {
    #[error("certificate: {0}")]
    Certificate(rustls::pki_types::pem::Error),
    #[error("private key: {0}")]
    Key(rustls::pki_types::pem::Error),
}

fn load(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), Unloadable> {
    let cert = CertificateDer::from_pem_slice(cert_pem).map_err(Unloadable::Certificate)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(Unloadable::Key)?;
    Ok((cert, key))
}

fn serving_params(
    common_name: &str,
    sans: &[San],
    validity: Duration,
) -> Result<CertificateParams> {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    Ok(params)
}

/// A self-signed serving certificate made in memory, as a component's secure port makes
/// one at start when given none (upstream's `MaybeDefaultWithSelfSignedCerts`): ECDSA
/// P-256, CN `localhost@<unix time>`, serverAuth, a year, names `localhost`,
/// `127.0.0.1` and `names` (IP addresses or DNS names). Nobody trusts it; it only keeps
/// the port HTTPS.
pub fn self_signed_serving(
    names: &[String],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let mut sans = vec![San::Dns("localhost".into()), San::Ip(Ipv4Addr::LOCALHOST.into())];
    for name in names {
        let san = San::parse(name)?;
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    let cn = format!("localhost@{}", OffsetDateTime::now_utc().unix_timestamp());
    let mut params = serving_params(&cn, &sans, Duration::days(365))?;
    params.use_authority_key_identifier_extension = false;
    let what = "self-signed serving certificate";
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(Error::generate(what))?;
    let cert = params.self_signed(&key).map_err(Error::generate(what))?;
    Ok((vec![cert.der().clone()], PrivateKeyDer::Pkcs8(key.serialize_der().into())))
}

/// A serving certificate chain and key from PEM files (`--tls-cert-file`,
/// `--tls-private-key-file`).
pub fn load_serving(
    cert_path: &Path,
    key_path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| Error::io("read", path, e));
    let cert_pem = read(cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::input("serving certificate pem", e.to_string()))?;
    if chain.is_empty() {
        return Err(Error::input("serving certificate pem", "no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(key_path)?)
        .map_err(|e| Error::input("serving key pem", e.to_string()))?;
    Ok((chain, key))
}

/// Why an otherwise sound serving certificate must be re-issued: it is not for serving, or it
/// lacks wanted names.
fn serving_problem(leaf: &X509Certificate<'_>, wanted: &[San]) -> Option<String> {
    let server_auth = matches!(leaf.extended_key_usage(), Ok(Some(eku)) if eku.value.server_auth);
    if !server_auth {
        return Some("lacks the serverAuth extended key usage".into());
    }
    let present = present_sans(leaf);
    let missing: Vec<String> =
        wanted.iter().filter(|san| !present.contains(san)).map(San::to_string).collect();
    if missing.is_empty() {
        None
    } else {
        Some(format!("lacks subject alternative names {}", missing.join(", ")))
    }
}

/// The DNS and IP subject alternative names of `cert`.
pub(crate) fn present_sans(cert: &X509Certificate<'_>) -> HashSet<San> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return HashSet::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(San::Dns(dns.to_ascii_lowercase())),
            GeneralName::IPAddress(bytes) => ip_from_bytes(bytes).map(San::Ip),
            _ => None,
        })
        .collect()
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Some(IpAddr::from(v4))
    } else {
        <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
    }
}

/// The kernel's host name, from `/proc/sys/kernel/hostname`.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty() && name != "(none)").then(|| name.to_string())
}

/// The host's own non-loopback addresses: IPv4 from `/proc/net/fib_trie`, IPv6 from
/// `/proc/net/if_inet6`. Missing files (not Linux, no IPv6) just mean fewer names.
pub fn host_addresses() -> Vec<IpAddr> {
    let mut addrs: Vec<IpAddr> = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/proc/net/fib_trie") {
        addrs.extend(parse_fib_trie(&text).into_iter().map(IpAddr::V4));
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/if_inet6") {
        addrs.extend(parse_if_inet6(&text).into_iter().map(IpAddr::V6));
    }
    addrs
}

/// Local IPv4 addresses in a `/proc/net/fib_trie` dump: a leaf `|-- a.b.c.d` followed by a
/// `/32 host LOCAL` entry. Loopback and duplicates (the trie lists each table) are dropped.
pub(crate) fn parse_fib_trie(text: &str) -> Vec<Ipv4Addr> {
    let mut found = Vec::new();
    let mut leaf: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|-- ") {
            leaf = addr.trim().parse().ok();
        } else if line.starts_with("/32 host LOCAL") {
            if let Some(addr) = leaf.filter(|a| !a.is_loopback() && !found.contains(a)) {
                found.push(addr);
            }
        } else if !line.starts_with('/') {
            leaf = None;
        }
    }
    found
}

/// Global-scope IPv6 addresses in `/proc/net/if_inet6` (address, index, prefix length, scope,
/// flags, interface). Link-local and loopback scopes are dropped, and so are temporary
/// (privacy) addresses, which rotate and would churn the certificate.
pub(crate) fn parse_if_inet6(text: &str) -> Vec<Ipv6Addr> {
    const SCOPE_GLOBAL: u8 = 0x00;
    const IFA_F_TEMPORARY: u8 = 0x01;
    let mut found = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [hex, _, _, scope, flags, ..] = fields[..] else {
            continue;
        };
        let (Ok(addr), Ok(scope), Ok(flags)) = (
            u128::from_str_radix(hex, 16),
            u8::from_str_radix(scope, 16),
            u8::from_str_radix(flags, 16),
        ) else {
            continue;
        };
        let addr = Ipv6Addr::from(addr);
        if hex.len() == 32
            && scope == SCOPE_GLOBAL
            && flags & IFA_F_TEMPORARY == 0
            && !addr.is_loopback()
            && !found.contains(&addr)
        {
            found.push(addr);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_serving_certificate_names_localhost_and_the_bind_address() {
        let (chain, key) = self_signed_serving(&["10.0.0.7".into()]).expect("self-signed");
        let leaf = crate::cert::parse(&chain[0]).expect("parses");
        let names = present_sans(&leaf);
        for san in [
            San::Dns("localhost".into()),
            San::Ip(Ipv4Addr::LOCALHOST.into()),
            San::Ip(IpAddr::from([10, 0, 0, 7])),
        ] {
            assert!(names.contains(&san), "{san} missing");
        }
        assert!(serving_problem(&leaf, &[]).is_none(), "not for serving");
        let ca = crate::tls::secure_port_config(chain.clone(), key.clone_key(), None);
        assert!(ca.is_ok(), "without client CA");
        let bad = crate::tls::secure_port_config(chain, key, Some("not pem"));
        assert!(bad.is_err(), "a client CA bundle without certificates is refused");
    }

    const FIB_TRIE: &str = "\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
        +-- 192.0.2.0/30 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
     |-- 10.1.2.3
        /16 link UNICAST
        /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
           |-- 192.0.2.2
              /32 host LOCAL
";

    #[test]
    fn fib_trie_yields_local_non_loopback_addresses_once() {
        assert_eq!(
            parse_fib_trie(FIB_TRIE),
            [Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(10, 1, 2, 3)]
        );
    }

    #[test]
    fn if_inet6_yields_global_permanent_addresses() {
        let text = "\
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000002 04 40 00 82     eth0
20010db8000000000000000000000042 04 40 00 01     eth0
garbage
";
        assert_eq!(parse_if_inet6(text), ["fd00::2".parse::<Ipv6Addr>().unwrap()]);
    }

    #[test]
    fn extra_sans_are_ips_or_lowercase_dns_names() {
        let options = PkiOptions {
            extra_sans: vec!["192.0.2.10".into(), "API.Example.com".into(), "fd00::7".into()],
        };
        let sans = wanted_sans(&options).expect("sans");
        assert!(sans.contains(&San::Ip("192.0.2.10".parse().unwrap())));
        assert!(sans.contains(&San::Ip("fd00::7".parse().unwrap())));
        assert!(sans.contains(&San::Dns("api.example.com".into())));
        assert!(sans.contains(&San::Ip(FIRST_SERVICE_IP.into())));
        let unique: HashSet<_> = sans.iter().collect();
        assert_eq!(unique.len(), sans.len());
    }

    #[test]
    fn unusable_extra_sans_are_errors() {
        for bad in ["", "  ", "bücher.example"] {
            let options = PkiOptions { extra_sans: vec![bad.into()] };
            assert!(wanted_sans(&options).is_err(), "{bad:?} accepted");
        }
    }
}

//! Certificate signing requests: reading one (what the API server's validation, approver and
//! signers look at) and signing one with the cluster CA, as upstream's
//! `controller/certificates/authority` does with its `PermissiveSigningPolicy`.
//!
//! The issued certificate keeps the request's subject (raw, so several `O` survive) and
//! public key and its subject alternative names; everything else — key usages, extended key
//! usages, validity, basic constraints — is the signer's decision, never the request's. This
//! module must never decide whether a request deserves a certificate: approval and the
//! per-signer rules are the API server's.

use std::net::IpAddr;
use std::time::Duration as StdDuration;

use rcgen::SigningKey as _;
use rustls::pki_types::pem::{PemObject as _, SectionKind};
use time::{Duration, OffsetDateTime};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer as _;

use crate::ca::Ca;
use crate::cert::{self, BACKDATE};
use crate::client::{
    OID_AUTHORITY_KEY_ID, OID_BASIC_CONSTRAINTS, OID_EXT_KEY_USAGE, OID_KEY_USAGE, extension,
    serial_number, signature_algorithm,
};
use crate::{Error, Result, der};

const OID_SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];

/// Certificates shorter than this are not backdated (upstream's `Short`: 5 minutes of
/// backdating is about 1% of 8 hours).
const SHORT: Duration = Duration::hours(8);

/// A parsed, signature-checked PKCS#10 request: its DER and what the rules look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRequest {
    /// The request, DER.
    pub der: Vec<u8>,
    /// The subject's common name (the last, as Go reads it; empty without one).
    pub common_name: String,
    /// The subject's organizations, in order.
    pub organizations: Vec<String>,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// Email subject alternative names.
    pub email_addresses: Vec<String>,
    /// URI subject alternative names.
    pub uris: Vec<String>,
}

impl CertificateRequest {
    /// Upstream's `ParseCSR` and `CheckSignature`: the first PEM block must be a
    /// `CERTIFICATE REQUEST` that parses and is signed by the key it carries. The error is the
    /// problem alone, for `spec.request: Invalid value: …`.
    pub fn from_pem(pem: &[u8]) -> Result<CertificateRequest> {
        let der = match <(SectionKind, Vec<u8>)>::pem_slice_iter(pem).next() {
            Some(Ok((SectionKind::Csr, der))) => der,
            _ => return Err(RequestError::NotPemRequest.into()),
        };
        Ok(Self::from_der(&der)?)
    }

    fn from_der(der: &[u8]) -> Result<CertificateRequest, RequestError> {
        let request = parse(der)?;
        request.verify_signature().map_err(RequestError::Signature)?;
        let subject = &request.certification_request_info.subject;
        let text = |a: &x509_parser::x509::AttributeTypeAndValue<'_>| {
            a.as_str().map(str::to_owned).map_err(RequestError::Subject)
        };
        let common_name = match subject.iter_common_name().last() {
            Some(cn) => text(cn)?,
            None => String::new(),
        };
        let organizations = subject.iter_organization().map(text).collect::<Result<Vec<_>, _>>()?;
        let mut parsed = CertificateRequest {
            der: der.to_vec(),
            common_name,
            organizations,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            email_addresses: Vec::new(),
            uris: Vec::new(),
        };
        for ext in request.requested_extensions().into_iter().flatten() {
            let ParsedExtension::SubjectAlternativeName(san) = ext else {
                continue;
            };
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => parsed.dns_names.push((*d).to_owned()),
                    GeneralName::RFC822Name(e) => parsed.email_addresses.push((*e).to_owned()),
                    GeneralName::URI(u) => parsed.uris.push((*u).to_owned()),
                    GeneralName::IPAddress(bytes) => parsed.ip_addresses.push(ip(bytes)?),
                    _ => {}
                }
            }
        }
        Ok(parsed)
    }
}

/// Why a certificate signing request is unusable, in upstream's words (those of Go's
/// `x509` package, past the PEM block).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The first PEM block is not a `CERTIFICATE REQUEST`.
    #[error("PEM block type must be CERTIFICATE REQUEST")]
    NotPemRequest,
    /// The DER request is followed by more bytes.
    #[error("x509: trailing data after the request")]
    TrailingData,
    /// The DER is not a PKCS#10 request.
    #[error("x509: malformed certificate request: {0}")]
    Malformed(x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// The request is not signed by the key it carries.
    #[error("x509: signature check failed: {0}")]
    Signature(x509_parser::error::X509Error),
    /// A subject attribute is not a string.
    #[error("x509: invalid subject: {0}")]
    Subject(x509_parser::error::X509Error),
    /// An IP subject alternative name is neither 4 nor 16 bytes long.
    #[error("x509: cannot parse IP address of length {0}")]
    IpLength(usize),
}

fn parse(der: &[u8]) -> Result<X509CertificationRequest<'_>, RequestError> {
    match X509CertificationRequest::from_der(der) {
        Ok((rest, _)) if !rest.is_empty() => Err(RequestError::TrailingData),
        Ok((_, request)) => Ok(request),
        Err(e) => Err(RequestError::Malformed(e)),
    }
}

fn ip(bytes: &[u8]) -> Result<IpAddr, RequestError> {
    match bytes.len() {
        4 => Ok(IpAddr::from(<[u8; 4]>::try_from(bytes).unwrap_or_default())),
        16 => Ok(IpAddr::from(<[u8; 16]>::try_from(bytes).unwrap_or_default())),
        n => Err(RequestError::IpLength(n)),
    }
}

/// Why an issued certificate (`status.certificate`) is unacceptable, in upstream's words.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificatePemError {
    /// The text is not PEM.
    #[error("invalid PEM: {0}")]
    Pem(rustls::pki_types::pem::Error),
    /// A block holds something other than a certificate.
    #[error("only CERTIFICATE PEM blocks are allowed, found {0:?}")]
    NotCertificate(SectionKind),
    /// A `CERTIFICATE` block does not parse.
    #[error("x509: {0}")]
    Certificate(cert::ParseError),
    /// The text holds no block at all.
    #[error("must contain at least one CERTIFICATE PEM block")]
    Empty,
}

/// Upstream's `validateCertificate` of `status.certificate`: empty, or only `CERTIFICATE`
/// blocks, each holding a certificate that parses.
pub fn check_certificate_pem(pem: &[u8]) -> Result<(), CertificatePemError> {
    if pem.is_empty() {
        return Ok(());
    }
    let mut blocks = 0;
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(CertificatePemError::Pem)?;
        if kind != SectionKind::Certificate {
            return Err(CertificatePemError::NotCertificate(kind));
        }
        cert::parse(&der).map_err(CertificatePemError::Certificate)?;
        blocks += 1;
    }
    if blocks == 0 {
        return Err(CertificatePemError::Empty);
    }
    Ok(())
}

/// Key usages (bit numbers of RFC 5280's `KeyUsage`) and extended key usages (OIDs) by
/// the names `certificates.k8s.io/v1` gives them (upstream's `keyUsageDict` and
/// `extKeyUsageDict`).
fn usage(name: &str) -> Option<Result<u8, &'static [u64]>> {
    Some(match name {
        "signing" | "digital signature" => Ok(0),
        "content commitment" => Ok(1),
        "key encipherment" => Ok(2),
        "data encipherment" => Ok(3),
        "key agreement" => Ok(4),
        "cert sign" => Ok(5),
        "crl sign" => Ok(6),
        "encipher only" => Ok(7),
        "decipher only" => Ok(8),
        "any" => Err(&[2, 5, 29, 37, 0]),
        "server auth" => Err(&[1, 3, 6, 1, 5, 5, 7, 3, 1]),
        "client auth" => Err(&[1, 3, 6, 1, 5, 5, 7, 3, 2]),
        "code signing" => Err(&[1, 3, 6, 1, 5, 5, 7, 3, 3]),
        "email protection" | "s/mime" => Err(&[1, 3, 6, 1, 5, 5, 7, 3, 4]),
        "ipsec end system" => Err(&[1, 3, 6, 1, 5, 5, 7, 3, 5]),
        "ipsec tunnel" => Err(&[1, 3, 6, 1, 5, 5, 7, 3, 6]),
        "ipsec user" => Err(&[1, 3, 6, 1, 5, 5, 7, 3, 7]),
        "timestamping" => Err(&[1, 3, 6, 1, 5, 5, 7, 3, 8]),
        "ocsp signing" => Err(&[1, 3, 6, 1, 5, 5, 7, 3, 9]),
        "microsoft sgc" => Err(&[1, 3, 6, 1, 4, 1, 311, 10, 3, 3]),
        "netscape sgc" => Err(&[2, 16, 840, 1, 113730, 4, 1]),
        _ => return None,
    })
}

/// The `KeyUsage` BIT STRING for the given bit numbers, minimal as DER wants it.
fn key_usage_bits(bits: &[u8]) -> Vec<u8> {
    let mut value = 0u16;
    for bit in bits {
        value |= 0x8000 >> bit;
    }
    let length = 16 - value.trailing_zeros() as usize;
    let bytes = length.div_ceil(8);
    let mut content = vec![(bytes * 8 - length) as u8];
    content.extend_from_slice(&value.to_be_bytes()[..bytes]);
    der::tlv(0x03, &content)
}

/// Signs `csr_der` with `ca`: see [`crate::CsrSigner::sign_csr`].
pub(crate) fn sign(ca: &Ca, csr_der: &[u8], usages: &[&str], ttl: StdDuration) -> Result<String> {
    let request = parse(csr_der).map_err(|p| Error::input("certificate request", p))?;
    request.verify_signature().map_err(|e| {
        Error::input(
            "certificate request",
            format!("unable to verify certificate request signature: {e}"),
        )
    })?;
    let (mut bits, mut extended) = (Vec::new(), Vec::new());
    let mut unrecognized = Vec::new();
    for name in usages {
        match usage(name) {
            Some(Ok(bit)) => bits.push(bit),
            Some(Err(oid)) if !extended.contains(&oid) => extended.push(oid),
            Some(Err(_)) => {}
            None => unrecognized.push(format!("{name:?}")),
        }
    }
    if !unrecognized.is_empty() {
        return Err(Error::input(
            "usages",
            format!("unrecognized usage values: [{}]", unrecognized.join(" ")),
        ));
    }
    let now = OffsetDateTime::now_utc();
    if ca.not_after() <= now {
        return Err(Error::input("ca certificate", "the signer has expired"));
    }
    let ttl = Duration::try_from(ttl.min(crate::LEAF_VALIDITY)).unwrap_or(Duration::days(90));
    let not_before = if ttl < SHORT { now } else { now - BACKDATE };
    let not_after = (now + ttl).min(ca.not_after());

    let info = &request.certification_request_info;
    let mut extensions = Vec::new();
    if !bits.is_empty() {
        extensions.push(extension(OID_KEY_USAGE, true, &key_usage_bits(&bits)));
    }
    if !extended.is_empty() {
        let oids: Vec<Vec<u8>> = extended.iter().map(|o| der::oid(o)).collect();
        let list = der::sequence(&oids.iter().map(Vec::as_slice).collect::<Vec<_>>());
        extensions.push(extension(OID_EXT_KEY_USAGE, false, &list));
    }
    extensions.push(extension(OID_BASIC_CONSTRAINTS, true, &der::sequence(&[])));
    if let Some(key_id) = ca.key_id() {
        let aki = der::sequence(&[&der::implicit_primitive(0, key_id)]);
        extensions.push(extension(OID_AUTHORITY_KEY_ID, false, &aki));
    }
    let subject = info.subject.as_raw();
    let san = info.iter_attributes().find_map(|attr| match attr.parsed_attribute() {
        ParsedCriAttribute::ExtensionRequest(requested) => requested
            .extensions
            .iter()
            .find(|e| e.oid == x509_parser::oid_registry::OID_X509_EXT_SUBJECT_ALT_NAME)
            .map(|e| e.value),
        _ => None,
    });
    if let Some(san) = san {
        // Critical when the subject is empty, as RFC 5280 4.2.1.6 asks.
        let empty_subject = subject == [0x30, 0x00];
        extensions.push(extension(OID_SUBJECT_ALT_NAME, empty_subject, san));
    }
    let extensions = der::sequence(&extensions.iter().map(Vec::as_slice).collect::<Vec<_>>());

    let serial = serial_number("signed certificate serial number")?;
    let algorithm = signature_algorithm(ca.key())?;
    let tbs = der::sequence(&[
        &der::explicit(0, &der::unsigned_integer(&[2])), // v3
        &der::unsigned_integer(&serial),
        &algorithm,
        ca.subject_der(),
        &der::sequence(&[&der::x509_time(not_before), &der::x509_time(not_after)]),
        subject,
        info.subject_pki.raw,
        &der::explicit(3, &extensions),
    ]);
    let signature = ca.key().sign(&tbs).map_err(Error::generate("signed certificate"))?;
    let cert = der::sequence(&[&tbs, &algorithm, &der::bit_string(&signature)]);
    Ok(cert::pem_encode("CERTIFICATE", &cert))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_usage_bits_are_minimal() {
        // digitalSignature only: 7 unused bits.
        assert_eq!(key_usage_bits(&[0]), vec![0x03, 0x02, 0x07, 0x80]);
        // digitalSignature + keyEncipherment: 5 unused bits.
        assert_eq!(key_usage_bits(&[0, 2]), vec![0x03, 0x02, 0x05, 0xa0]);
        // decipherOnly needs a second byte.
        assert_eq!(key_usage_bits(&[8]), vec![0x03, 0x03, 0x07, 0x00, 0x80]);
    }

    #[test]
    fn requests_are_read_and_checked() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["node1.example".into()]).expect("p");
        params.subject_alt_names.push(rcgen::SanType::IpAddress("10.0.0.7".parse().expect("ip")));
        params.distinguished_name.push(rcgen::DnType::CommonName, "system:node:node1");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:nodes");
        let pem = params.serialize_request(&key).expect("csr").pem().expect("pem");
        let request = CertificateRequest::from_pem(pem.as_bytes()).expect("parses");
        assert_eq!(request.common_name, "system:node:node1");
        assert_eq!(request.organizations, ["system:nodes"]);
        assert_eq!(request.dns_names, ["node1.example"]);
        assert_eq!(request.ip_addresses, ["10.0.0.7".parse::<IpAddr>().expect("ip")]);

        let wrong = pem.replace("CERTIFICATE REQUEST", "CERTIFICATE");
        let e = CertificateRequest::from_pem(wrong.as_bytes()).expect_err("not a request");
        assert_eq!(e.to_string(), "PEM block type must be CERTIFICATE REQUEST");
        let mut der = request.der.clone();
        let last = der.len() - 1;
        der[last] ^= 1;
        let tampered = cert::pem_encode("CERTIFICATE REQUEST", &der);
        assert!(CertificateRequest::from_pem(tampered.as_bytes()).is_err());
    }

    #[test]
    fn signed_certificates_follow_the_signer_not_the_request() {
        let dir = tempfile::tempdir().expect("dir");
        let ca = Ca::load_or_create(dir.path()).expect("ca");
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["node1".into()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, "system:node:node1");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:nodes");
        // Asked for by the request, ignored by the signer.
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let request = params.serialize_request(&key).expect("csr");
        let ttl = StdDuration::from_secs(3600);
        let pem =
            sign(&ca, request.der(), &["digital signature", "server auth"], ttl).expect("signed");
        let der = cert::cert_from_pem(pem.as_bytes()).expect("pem");
        let issued = cert::parse(&der).expect("parses");
        assert_eq!(issued.subject().to_string(), "CN=system:node:node1, O=system:nodes");
        assert_eq!(issued.issuer().as_raw(), ca.subject_der());
        assert!(
            issued
                .verify_signature(Some(cert::parse(ca.cert_der()).expect("ca").public_key()))
                .is_ok()
        );
        assert!(!issued.is_ca());
        let eku = issued.extended_key_usage().expect("eku").expect("present").value;
        assert!(eku.server_auth && !eku.client_auth);
        let ku = issued.key_usage().expect("ku").expect("present").value;
        assert!(ku.digital_signature() && !ku.key_encipherment());
        let san = issued.subject_alternative_name().expect("san").expect("present").value;
        assert_eq!(san.general_names, [GeneralName::DNSName("node1")]);
        let validity = issued.validity();
        let lifetime = validity.not_after.timestamp() - validity.not_before.timestamp();
        // Short certificates are not backdated.
        assert!((3599..=3601).contains(&lifetime), "{lifetime}");

        let long = sign(&ca, request.der(), &["client auth"], StdDuration::from_secs(10 << 30))
            .expect("signed");
        let der = cert::cert_from_pem(long.as_bytes()).expect("pem");
        let validity = cert::parse(&der).expect("parses").validity().clone();
        let lifetime = validity.not_after.timestamp() - validity.not_before.timestamp();
        assert_eq!(lifetime, 90 * 86400 + 300);

        let e = sign(&ca, request.der(), &["flying"], ttl).expect_err("unknown usage");
        assert!(e.to_string().contains(r#"unrecognized usage values: ["flying"]"#), "{e}");
    }

    #[test]
    fn certificate_pem_rules() {
        assert!(check_certificate_pem(b"").is_ok());
        assert_eq!(
            check_certificate_pem(b"junk").expect_err("no block").to_string(),
            "must contain at least one CERTIFICATE PEM block"
        );
    }
}

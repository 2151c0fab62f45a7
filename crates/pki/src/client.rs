//! Client certificates: issuing them (CN = user, one O per group, clientAuth) and reading the
//! identity back out of a verified one.
//!
//! rcgen keeps one value per attribute type in a distinguished name, so it cannot write the
//! several `O` attributes a member of several groups needs. The certificate is therefore
//! assembled here with the small DER writer in `der.rs` and signed with the CA key through
//! rcgen's `SigningKey`; x509-parser and webpki check the result in the tests. This module must
//! never decide what an identity may do: authorization belongs to the API server.

use rcgen::{KeyPair, PublicKeyData as _, SigningKey as _};
use time::{Duration, OffsetDateTime};

use crate::ca::Ca;
use crate::cert::{self, BACKDATE};
use crate::der;
use crate::{Error, Result};

const CLIENT_VALIDITY: Duration = Duration::days(90);

const OID_COMMON_NAME: &[u64] = &[2, 5, 4, 3];
const OID_ORGANIZATION: &[u64] = &[2, 5, 4, 10];
pub(crate) const OID_KEY_USAGE: &[u64] = &[2, 5, 29, 15];
pub(crate) const OID_BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
pub(crate) const OID_EXT_KEY_USAGE: &[u64] = &[2, 5, 29, 37];
pub(crate) const OID_AUTHORITY_KEY_ID: &[u64] = &[2, 5, 29, 35];
const OID_CLIENT_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 2];

/// Who a verified client certificate names: CN = user, each O = a group.
///
/// This is the Kubernetes x509 authenticator's reading of a certificate; it says nothing about
/// whether the certificate is trusted, which is the TLS layer's job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertIdentity {
    /// The user name: the subject's common name.
    pub user: String,
    /// The groups: the subject's organization values, in certificate order.
    pub groups: Vec<String>,
}

impl CertIdentity {
    /// The identity as upstream's authenticators hand it on: every authenticated user is
    /// also in `system:authenticated`.
    pub fn authenticated(mut self) -> CertIdentity {
        if !self.groups.iter().any(|g| g == "system:authenticated") {
            self.groups.push("system:authenticated".into());
        }
        self
    }
}

/// Reads the identity out of a DER client certificate. Does not verify anything.
pub fn identity_from_der(cert_der: &[u8]) -> Result<CertIdentity> {
    let cert = cert::parse(cert_der).map_err(|p| Error::input("client certificate", p))?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .ok_or_else(|| Error::input("client certificate", "subject has no common name"))?
        .as_str()
        .map_err(|e| Error::input("client certificate", format!("common name: {e}")))?
        .to_string();
    let groups = subject
        .iter_organization()
        .map(|o| o.as_str().map(str::to_string))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::input("client certificate", format!("organization: {e}")))?;
    Ok(CertIdentity { user, groups })
}

/// Issues a client certificate for `user` in `groups`, signed by `ca`; returns PEM certificate
/// and PEM (PKCS#8) private key.
pub(crate) fn issue(ca: &Ca, user: &str, groups: &[&str]) -> Result<(String, String)> {
    if user.is_empty() {
        return Err(Error::input("user name", "empty"));
    }
    if groups.iter().any(|g| g.is_empty()) {
        return Err(Error::input("group name", "empty"));
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(Error::generate("client private key"))?;
    let now = OffsetDateTime::now_utc();
    let tbs = to_be_signed(ca, &key, user, groups, now)?;
    let signature_algorithm = signature_algorithm(ca.key())?;
    let signature = ca.key().sign(&tbs).map_err(Error::generate("client certificate signature"))?;
    let cert = der::sequence(&[&tbs, &signature_algorithm, &der::bit_string(&signature)]);
    Ok((cert::pem_encode("CERTIFICATE", &cert), key.serialize_pem()))
}

/// The `TBSCertificate` (RFC 5280 4.1) of a client certificate.
fn to_be_signed(
    ca: &Ca,
    key: &KeyPair,
    user: &str,
    groups: &[&str],
    now: OffsetDateTime,
) -> Result<Vec<u8>> {
    let serial = serial_number("client certificate serial number")?;

    let validity =
        der::sequence(&[&der::x509_time(now - BACKDATE), &der::x509_time(now + CLIENT_VALIDITY)]);

    let mut rdns: Vec<Vec<u8>> = groups.iter().map(|g| attribute(OID_ORGANIZATION, g)).collect();
    rdns.push(attribute(OID_COMMON_NAME, user));
    let subject = der::sequence(&rdns.iter().map(Vec::as_slice).collect::<Vec<_>>());

    let mut extensions = vec![
        extension(OID_BASIC_CONSTRAINTS, true, &der::sequence(&[])),
        // digitalSignature only: bit 0 set, 7 unused bits.
        extension(OID_KEY_USAGE, true, &der::tlv(0x03, &[0x07, 0x80])),
        extension(OID_EXT_KEY_USAGE, false, &der::sequence(&[&der::oid(OID_CLIENT_AUTH)])),
    ];
    if let Some(key_id) = ca.key_id() {
        let aki = der::sequence(&[&der::implicit_primitive(0, key_id)]);
        extensions.push(extension(OID_AUTHORITY_KEY_ID, false, &aki));
    }
    let extensions = der::sequence(&extensions.iter().map(Vec::as_slice).collect::<Vec<_>>());

    Ok(der::sequence(&[
        &der::explicit(0, &der::unsigned_integer(&[2])), // v3
        &der::unsigned_integer(&serial),
        &signature_algorithm(ca.key())?,
        ca.subject_der(),
        &validity,
        &subject,
        &key.subject_public_key_info(),
        &der::explicit(3, &extensions),
    ]))
}

/// A random 128-bit serial number: positive, non-zero, always 16 bytes.
pub(crate) fn serial_number(what: &'static str) -> Result<[u8; 16]> {
    let mut serial = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut serial)
        .map_err(|_| Error::Generate { what, source: rcgen::Error::RingUnspecified })?;
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    Ok(serial)
}

/// One relative distinguished name holding one UTF8String attribute.
fn attribute(oid: &[u64], value: &str) -> Vec<u8> {
    der::set_of_one(&der::sequence(&[&der::oid(oid), &der::utf8_string(value)]))
}

/// `Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }`.
pub(crate) fn extension(oid: &[u64], critical: bool, value: &[u8]) -> Vec<u8> {
    let oid = der::oid(oid);
    let value = der::octet_string(value);
    if critical {
        der::sequence(&[&oid, &der::boolean_true(), &value])
    } else {
        der::sequence(&[&oid, &value])
    }
}

/// The `AlgorithmIdentifier` of the signatures `key` makes (RFC 5758, RFC 8410, RFC 4055).
pub(crate) fn signature_algorithm(key: &KeyPair) -> Result<Vec<u8>> {
    let alg = key.algorithm();
    let id = if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        der::sequence(&[&der::oid(&[1, 2, 840, 10045, 4, 3, 2])])
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        der::sequence(&[&der::oid(&[1, 2, 840, 10045, 4, 3, 3])])
    } else if alg == &rcgen::PKCS_ED25519 {
        der::sequence(&[&der::oid(&[1, 3, 101, 112])])
    } else if alg == &rcgen::PKCS_RSA_SHA256 {
        der::sequence(&[&der::oid(&[1, 2, 840, 113549, 1, 1, 11]), &der::null()])
    } else {
        return Err(Error::input(
            "ca private key",
            format!("cannot sign client certificates with {alg:?}"),
        ));
    };
    Ok(id)
}

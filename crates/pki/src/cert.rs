//! Reading certificates back: PEM in and out, validity windows, and whether a key belongs to a
//! certificate.
//!
//! Everything here is a pure function of bytes and the current time; it must never touch the
//! filesystem or decide what to do about a problem (callers re-issue or fail).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rcgen::{KeyPair, PublicKeyData as _};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;

/// Leaf certificates are re-issued when they expire within this window.
pub(crate) const RENEW_BEFORE: Duration = Duration::days(30);

/// New certificates start this long in the past, to tolerate clock skew between machines.
pub(crate) const BACKDATE: Duration = Duration::minutes(5);

/// PEM text of one DER object, 64 columns, trailing newline.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Why bytes are not a certificate or a private key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The PEM text holds no `CERTIFICATE` block.
    #[error("no pem certificate found: {0}")]
    NoPemCertificate(rustls::pki_types::pem::Error),
    /// A DER certificate is followed by more bytes.
    #[error("trailing bytes after the certificate")]
    TrailingBytes,
    /// The DER is not an X.509 certificate.
    #[error("unparseable certificate: {0}")]
    Certificate(x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// A private key's PEM is not text.
    #[error("private key is not utf-8 text")]
    KeyNotUtf8,
    /// The PEM text holds no private key rcgen can use.
    #[error("unparseable private key: {0}")]
    Key(rcgen::Error),
}

/// The first certificate in PEM text.
pub(crate) fn cert_from_pem(pem: &[u8]) -> Result<CertificateDer<'static>, ParseError> {
    CertificateDer::from_pem_slice(pem).map_err(ParseError::NoPemCertificate)
}

/// Parses one DER certificate, rejecting trailing bytes.
pub(crate) fn parse(der: &[u8]) -> Result<X509Certificate<'_>, ParseError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((rest, _)) if !rest.is_empty() => Err(ParseError::TrailingBytes),
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(ParseError::Certificate(e)),
    }
}

/// Parses an rcgen key pair from PEM text (PKCS#8, or whatever rcgen's ring backend accepts).
pub(crate) fn key_from_pem(pem: &[u8]) -> Result<KeyPair, ParseError> {
    let text = std::str::from_utf8(pem).map_err(|_| ParseError::KeyNotUtf8)?;
    KeyPair::from_pem(text).map_err(ParseError::Key)
}

/// Whether `key` is the private half of `cert`'s public key.
pub(crate) fn key_matches(cert: &X509Certificate<'_>, key: &KeyPair) -> bool {
    cert.public_key().subject_public_key.data.as_ref() == key.der_bytes()
}

/// Why `cert`'s validity window makes it unfit at `now` (renewal window included), if it does.
pub(crate) fn validity_problem(
    cert: &X509Certificate<'_>,
    now: OffsetDateTime,
    renew_before: Duration,
) -> Option<String> {
    let validity = cert.validity();
    let not_before = validity.not_before.to_datetime();
    let not_after = validity.not_after.to_datetime();
    if not_after <= now {
        Some(format!("expired at {not_after}"))
    } else if not_after - now < renew_before {
        Some(format!("expires at {not_after}, within {} days", renew_before.whole_days()))
    } else if not_before > now + BACKDATE {
        Some(format!("not valid until {not_before}"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips() {
        let der: Vec<u8> = (0..=255).collect();
        let pem = pem_encode("CERTIFICATE", &der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(cert_from_pem(pem.as_bytes()).expect("pem").as_ref(), &der[..]);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(cert_from_pem(b"hello").is_err());
        assert!(parse(b"\x30\x03\x02\x01\x00").is_err());
        assert!(
            key_from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
    }
}

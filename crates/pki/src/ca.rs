//! The cluster certificate authority: `ca.crt` and `ca.key` in the TLS directory.
//!
//! Creates the CA only when both files are absent. It must never replace an existing CA, not
//! even a broken one: every serving certificate, client certificate and kubeconfig trusts it, so
//! a silent replacement would lock every client out. A broken CA is an error for the operator.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;

use crate::cert::{self, BACKDATE, RENEW_BEFORE};
use crate::file_names::{CA_CERT, CA_KEY};
use crate::files::{self, PRIVATE, PUBLIC};
use crate::{Error, Result};

const CA_VALIDITY: Duration = Duration::days(3650);

/// A loaded CA: its certificate and the key that signs with it.
pub(crate) struct Ca {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    /// The CA's subject, DER-encoded: the issuer name of everything it signs.
    subject_der: Vec<u8>,
    /// The CA's subject key identifier, if it has one: the authority key identifier of
    /// everything it signs.
    key_id: Option<Vec<u8>>,
    /// When the CA expires: nothing it signs may outlive it.
    not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// Loads the cluster CA from `dir`, or creates it if neither file exists.
    pub(crate) fn load_or_create(dir: &Path) -> Result<Ca> {
        Self::load_or_create_named(dir, CA_CERT, CA_KEY, "keelson-ca")
    }

    /// Loads the CA `cert_name`/`key_name` from `dir`, or creates it (CN
    /// `<cn_prefix>@<unix time>`) if neither file exists: the cluster CA and the
    /// front-proxy CA.
    pub(crate) fn load_or_create_named(
        dir: &Path,
        cert_name: &str,
        key_name: &str,
        cn_prefix: &str,
    ) -> Result<Ca> {
        let cert_path = dir.join(cert_name);
        let key_path = dir.join(key_name);
        let cert_pem = files::read_optional(&cert_path)?;
        let key_pem = files::read_optional(&key_path)?;
        match (cert_pem, key_pem) {
            (None, None) => Self::create(&cert_path, &key_path, cn_prefix),
            (Some(c), Some(k)) => Self::load(&cert_path, &c, &key_path, &k),
            (Some(_), None) => {
                Err(Error::ca(&key_path, format!("file is missing but {cert_name} exists")))
            }
            (None, Some(_)) => {
                Err(Error::ca(&cert_path, format!("file is missing but {key_name} exists")))
            }
        }
    }

    fn create(cert_path: &Path, key_path: &Path, cn_prefix: &str) -> Result<Ca> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(Error::generate("ca private key"))?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, format!("{cn_prefix}@{}", now.unix_timestamp()));
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key).map_err(Error::generate("ca certificate"))?;
        // Key first: a crash in between leaves a lone key, which load_or_create reports instead
        // of quietly minting a second CA.
        files::write_atomic(key_path, key.serialize_pem().as_bytes(), PRIVATE)?;
        files::write_atomic(cert_path, cert.pem().as_bytes(), PUBLIC)?;
        tracing::info!(path = %cert_path.display(), "generated a new ca");
        Self::from_parts(cert_path, cert.der().clone(), key)
    }

    pub(crate) fn load(
        cert_path: &Path,
        cert_pem: &[u8],
        key_path: &Path,
        key_pem: &[u8],
    ) -> Result<Ca> {
        let der = cert::cert_from_pem(cert_pem).map_err(|p| Error::ca(cert_path, p))?;
        let key = cert::key_from_pem(key_pem).map_err(|p| Error::ca(key_path, p))?;
        {
            let parsed = cert::parse(&der).map_err(|p| Error::ca(cert_path, p))?;
            if !parsed.is_ca() {
                return Err(Error::ca(cert_path, "not a ca certificate"));
            }
            if !cert::key_matches(&parsed, &key) {
                return Err(Error::ca(key_path, "private key does not belong to ca.crt"));
            }
            if let Some(problem) =
                cert::validity_problem(&parsed, OffsetDateTime::now_utc(), RENEW_BEFORE)
            {
                tracing::warn!(
                    path = %cert_path.display(),
                    problem,
                    "the cluster ca needs replacing by the operator; keelson never replaces it",
                );
            }
        }
        Self::from_parts(cert_path, der, key)
    }

    fn from_parts(cert_path: &Path, der: CertificateDer<'static>, key: KeyPair) -> Result<Ca> {
        let parsed = cert::parse(&der).map_err(|p| Error::ca(cert_path, p))?;
        let subject_der = parsed.subject().as_raw().to_vec();
        let key_id = subject_key_id(&parsed);
        let not_after = parsed.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(&der, key)
            .map_err(|e| Error::ca(cert_path, format!("cannot sign with this ca: {e}")))?;
        Ok(Ca {
            cert_pem: cert::pem_encode("CERTIFICATE", &der),
            cert_der: der,
            subject_der,
            key_id,
            not_after,
            issuer,
        })
    }

    pub(crate) fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub(crate) fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    pub(crate) fn subject_der(&self) -> &[u8] {
        &self.subject_der
    }

    pub(crate) fn key_id(&self) -> Option<&[u8]> {
        self.key_id.as_deref()
    }

    pub(crate) fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    pub(crate) fn key(&self) -> &KeyPair {
        self.issuer.key()
    }

    /// Signs `params` with a fresh ECDSA P-256 key; returns the certificate and its key.
    pub(crate) fn issue(
        &self,
        params: &CertificateParams,
        what: &'static str,
    ) -> Result<(rcgen::Certificate, KeyPair)> {
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(Error::generate(what))?;
        let cert = params.signed_by(&key, &self.issuer).map_err(Error::generate(what))?;
        Ok((cert, key))
    }

    /// Why a leaf certificate and key (PEM) cannot be kept, or `None` if they can: unparseable,
    /// key and certificate apart, not signed by this CA, expired or expiring within 30 days, or
    /// whatever `more` finds wrong with it.
    pub(crate) fn leaf_problem(
        &self,
        cert_pem: &[u8],
        key_pem: &[u8],
        more: impl FnOnce(&X509Certificate<'_>) -> Option<String>,
    ) -> Option<String> {
        let der = match cert::cert_from_pem(cert_pem) {
            Ok(der) => der,
            Err(problem) => return Some(problem.to_string()),
        };
        let leaf = match cert::parse(&der) {
            Ok(leaf) => leaf,
            Err(problem) => return Some(problem.to_string()),
        };
        let key = match cert::key_from_pem(key_pem) {
            Ok(key) => key,
            Err(problem) => return Some(problem.to_string()),
        };
        if !cert::key_matches(&leaf, &key) {
            return Some("private key does not belong to the certificate".into());
        }
        if let Some(problem) = self.signature_problem(&leaf) {
            return Some(problem);
        }
        cert::validity_problem(&leaf, OffsetDateTime::now_utc(), RENEW_BEFORE)
            .or_else(|| more(&leaf))
    }

    /// Why `leaf` does not verify as issued by this CA, if it does not.
    fn signature_problem(&self, leaf: &X509Certificate<'_>) -> Option<String> {
        if leaf.issuer().as_raw() != self.subject_der.as_slice() {
            return Some(format!("issued by {:?}, not the current ca", leaf.issuer().to_string()));
        }
        let ca = match cert::parse(&self.cert_der) {
            Ok(ca) => ca,
            Err(problem) => return Some(format!("current ca unparseable: {problem}")),
        };
        match leaf.verify_signature(Some(ca.public_key())) {
            Ok(()) => None,
            Err(e) => Some(format!("signature does not verify against the current ca: {e}")),
        }
    }
}

fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions().iter().find_map(|ext| match ext.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
        _ => None,
    })
}

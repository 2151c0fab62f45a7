//! The service account signing key (`service.key`): an ECDSA P-256 key, separate from the
//! CA, that signs the JWTs of service accounts. Created once, kept across restarts, since
//! every token issued is verified against it.
//!
//! Must never be regenerated over an existing unreadable file: that would invalidate
//! every token in the cluster silently.

use std::path::Path;

use rcgen::{KeyPair, PublicKeyData};

use crate::files::{self, PRIVATE};
use crate::{Error, Result, cert};

/// The file of the service account signing key in the TLS directory.
pub const SERVICE_ACCOUNT_KEY: &str = "service.key";

/// The signing key of service account tokens.
pub struct ServiceAccountKey {
    /// The private key, PKCS#8 DER.
    pub pkcs8_der: Vec<u8>,
    /// The public key as an uncompressed SEC1 point (`04 ‖ x ‖ y`).
    pub public_point: Vec<u8>,
    /// The public key, SubjectPublicKeyInfo DER.
    pub public_spki_der: Vec<u8>,
}

impl ServiceAccountKey {
    /// Loads `<tls_dir>/service.key`, or creates it (mode 0600) if it does not exist.
    pub fn load_or_create(tls_dir: &Path) -> Result<ServiceAccountKey> {
        files::ensure_dir(tls_dir)?;
        let path = tls_dir.join(SERVICE_ACCOUNT_KEY);
        let key = match files::read_optional(&path)? {
            Some(pem) => {
                cert::key_from_pem(&pem).map_err(|p| Error::input("service account key", p))?
            }
            None => {
                let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                    .map_err(Error::generate("service account key"))?;
                files::write_atomic(&path, key.serialize_pem().as_bytes(), PRIVATE)?;
                tracing::info!(path = %path.display(), "generated the service account signing key");
                key
            }
        };
        if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(Error::InvalidInput {
                what: "service account key",
                problem: format!("{} is not an ECDSA P-256 key", path.display()),
            });
        }
        Ok(ServiceAccountKey {
            pkcs8_der: key.serialize_der(),
            public_point: key.public_key_raw().to_vec(),
            public_spki_der: key.subject_public_key_info(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_and_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = ServiceAccountKey::load_or_create(dir.path()).expect("created");
        let again = ServiceAccountKey::load_or_create(dir.path()).expect("loaded");
        assert_eq!(first.pkcs8_der, again.pkcs8_der);
        assert_eq!(first.public_point.len(), 65);
        assert_eq!(first.public_point[0], 4);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SERVICE_ACCOUNT_KEY))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.path().join(SERVICE_ACCOUNT_KEY), "garbage").expect("write");
        assert!(ServiceAccountKey::load_or_create(dir.path()).is_err());
    }
}

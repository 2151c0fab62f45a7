//! The PKI's error type: every variant names the file or input at fault.
//!
//! Messages are lowercase and carry no trailing period; the underlying cause is kept as the
//! error source, never repeated in the message, so a caller logging the chain sees it once.

use std::path::PathBuf;

/// Result of a PKI operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading, writing, renaming or creating a file or directory failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done ("read", "write", "create directory", ...).
        op: &'static str,
        /// The file or directory at fault.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A cluster CA file is missing, unparseable or does not belong with its partner.
    ///
    /// The CA is never regenerated behind the operator's back: a new CA would orphan every
    /// certificate and kubeconfig the old one issued.
    #[error(
        "cluster ca unusable: {}: {problem}; refusing to generate a new ca because that would \
         orphan every certificate and kubeconfig the current one issued (restore the file, or \
         remove both ca.crt and ca.key to start over with a new ca)",
        path.display()
    )]
    CaUnusable {
        /// The CA file at fault.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },

    /// A certificate, key or name handed in by the caller is unusable.
    #[error("invalid {what}: {problem}")]
    InvalidInput {
        /// Which input ("ca certificate pem", "client certificate", "user name", ...).
        what: &'static str,
        /// What is wrong with it.
        problem: String,
    },

    /// A certificate signing request is not a PEM `CERTIFICATE REQUEST` that parses and
    /// verifies; the message is the problem alone, as the CSR API reports it.
    #[error(transparent)]
    CertificateRequest(#[from] crate::csr::RequestError),

    /// A subject alternative name cannot be put into a certificate.
    #[error("invalid subject alternative name {san:?}")]
    InvalidSan {
        /// The name as given.
        san: String,
        /// Why it was rejected.
        #[source]
        source: rcgen::Error,
    },

    /// Generating a key or signing a certificate failed.
    #[error("cannot generate {what}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: rcgen::Error,
    },

    /// rustls rejected the certificates or keys for a TLS configuration.
    #[error("cannot build the tls {side} configuration")]
    Tls {
        /// "server" or "client".
        side: &'static str,
        /// The underlying error.
        #[source]
        source: rustls::Error,
    },

    /// rustls rejected the CA for client certificate verification.
    #[error("cannot build the client certificate verifier")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }

    pub(crate) fn ca(path: impl Into<PathBuf>, problem: impl std::fmt::Display) -> Self {
        Error::CaUnusable { path: path.into(), problem: problem.to_string() }
    }

    pub(crate) fn input(what: &'static str, problem: impl std::fmt::Display) -> Self {
        Error::InvalidInput { what, problem: problem.to_string() }
    }

    pub(crate) fn generate(what: &'static str) -> impl FnOnce(rcgen::Error) -> Self {
        move |source| Error::Generate { what, source }
    }
}

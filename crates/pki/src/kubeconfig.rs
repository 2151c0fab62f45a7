//! Kubeconfig files with embedded credentials, laid out like k3s's: one cluster, context and
//! user, all named `default`.
//!
//! The client certificate already in a kubeconfig is kept while it is sound, so rewriting the
//! file on every start does not churn credentials. This module must never write a kubeconfig
//! other than atomically with mode 0600: it holds a private key.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::files::{self, PRIVATE};
use crate::{Pki, Result, identity_from_der};

/// Writes (or refreshes) the kubeconfig at `path`. See [`Pki::write_kubeconfig`].
pub(crate) fn write(
    pki: &Pki,
    path: &Path,
    server_url: &str,
    user: &str,
    groups: &[&str],
) -> Result<()> {
    let existing = files::read_optional(path)?;
    let reusable = match &existing {
        None => Err(NotReusable::Missing),
        Some(text) => reusable_credentials(pki, text, user, groups),
    };
    let (cert_pem, key_pem) = match reusable {
        Ok(credentials) => credentials,
        Err(reason) => {
            tracing::info!(
                path = %path.display(),
                user,
                reason = reason.to_string(),
                "issuing a client certificate for a kubeconfig",
            );
            pki.issue_client(user, groups)?
        }
    };
    let text = render(pki.ca_pem(), server_url, &cert_pem, &key_pem);
    if existing.as_deref() == Some(text.as_bytes()) {
        return files::ensure_mode(path, PRIVATE);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::io("create directory", dir, e))?;
    }
    files::write_atomic(path, text.as_bytes(), PRIVATE)
}

/// Why the client certificate and key of an existing kubeconfig cannot be kept.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum NotReusable {
    #[error("file does not exist")]
    Missing,
    #[error("file is not utf-8 text")]
    NotUtf8,
    /// The named field is absent.
    #[error("no {0}")]
    NoField(&'static str),
    #[error("{field} is not base64: {error}")]
    NotBase64 { field: &'static str, error: base64::DecodeError },
    #[error("{0} is not pem text")]
    NotPem(&'static str),
    /// The certificate is unsound, from another CA, expiring, or for someone else.
    #[error("client certificate: {0}")]
    Certificate(String),
}

/// The PEM client certificate and key in an existing kubeconfig, if they can be kept: both
/// present and decodable, issued by the current CA, not expiring within 30 days, and naming
/// `user` in `groups`. Otherwise, why not.
fn reusable_credentials(
    pki: &Pki,
    text: &[u8],
    user: &str,
    groups: &[&str],
) -> Result<(String, String), NotReusable> {
    let text = std::str::from_utf8(text).map_err(|_| NotReusable::NotUtf8)?;
    let cert_pem = embedded_pem(text, "client-certificate-data")?;
    let key_pem = embedded_pem(text, "client-key-data")?;
    let identity_problem =
        |leaf: &x509_parser::certificate::X509Certificate<'_>| match identity_from_der(
            leaf.as_raw(),
        ) {
            Ok(id) if id.user == user && id.groups == groups => None,
            Ok(id) => {
                Some(format!("certificate names user {:?} in groups {:?}", id.user, id.groups))
            }
            Err(e) => Some(e.to_string()),
        };
    match pki.ca.leaf_problem(cert_pem.as_bytes(), key_pem.as_bytes(), identity_problem) {
        None => Ok((cert_pem, key_pem)),
        Some(problem) => Err(NotReusable::Certificate(problem)),
    }
}

/// The base64 value of the first `key: value` line for `key`, decoded to PEM text.
fn embedded_pem(text: &str, key: &'static str) -> Result<String, NotReusable> {
    let value = text
        .lines()
        .find_map(|line| {
            let rest = line.trim_start().strip_prefix(key)?;
            rest.strip_prefix(':')
        })
        .ok_or(NotReusable::NoField(key))?;
    let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
    let bytes =
        STANDARD.decode(value).map_err(|error| NotReusable::NotBase64 { field: key, error })?;
    String::from_utf8(bytes).map_err(|_| NotReusable::NotPem(key))
}

/// The kubeconfig text, in the shape `kubectl config view --raw` prints.
pub(crate) fn render(ca_pem: &str, server_url: &str, cert_pem: &str, key_pem: &str) -> String {
    let ca = STANDARD.encode(ca_pem);
    let cert = STANDARD.encode(cert_pem);
    let key = STANDARD.encode(key_pem);
    let server = yaml_string(server_url);
    format!(
        "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
"
    )
}

/// A YAML double-quoted scalar; the escapes used are common to YAML and JSON.
fn yaml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert;

    #[test]
    fn server_urls_are_quoted() {
        assert_eq!(yaml_string("https://127.0.0.1:6443"), "\"https://127.0.0.1:6443\"");
        assert_eq!(yaml_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }

    #[test]
    fn embedded_values_are_found_and_decoded() {
        let text = render("CA", "https://x", "CERT", "KEY");
        assert_eq!(embedded_pem(&text, "client-certificate-data").as_deref(), Ok("CERT"));
        assert_eq!(embedded_pem(&text, "client-key-data").as_deref(), Ok("KEY"));
        assert_eq!(embedded_pem(&text, "certificate-authority-data").as_deref(), Ok("CA"));
        assert!(embedded_pem("kind: Config\n", "client-key-data").is_err());
        assert!(embedded_pem("client-key-data: !!!\n", "client-key-data").is_err());
    }

    #[test]
    fn pem_round_trips_through_render() {
        let pem = cert::pem_encode("CERTIFICATE", &[1, 2, 3]);
        let text = render(&pem, "https://x", &pem, &pem);
        assert_eq!(embedded_pem(&text, "client-certificate-data"), Ok(pem));
    }
}

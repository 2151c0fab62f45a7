//! Datastore endpoints as users write them (`--datastore-endpoint`, k3s's syntax) and
//! opening the backend one names.

use std::path::PathBuf;
use std::sync::Arc;

use crate::{Error, Result, Store};

/// Where the data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `sqlite://<path>`: the embedded default.
    Sqlite(PathBuf),
    /// `https://a:2379,https://b:2379` or `http://…`: an etcd cluster.
    Etcd(Vec<String>),
    /// `memory://`: gone when the process ends; for tests and benchmarks.
    Memory,
}

/// Client TLS material for etcd (`--datastore-cafile|certfile|keyfile`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl Endpoint {
    pub fn parse(endpoint: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(path) = endpoint.strip_prefix("sqlite://") {
            // k3s accepts query parameters for driver options; we set our own.
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(invalid(
                    "sqlite:// needs a file path, as in sqlite:///var/lib/keelson/state.db",
                ));
            }
            return Ok(Endpoint::Sqlite(PathBuf::from(path)));
        }
        if endpoint == "memory://" || endpoint == "memory" {
            return Ok(Endpoint::Memory);
        }
        if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
            let urls: Vec<String> = endpoint
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(bad) =
                urls.iter().find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
            {
                return Err(invalid(&format!("{bad:?} is not an http:// or https:// URL")));
            }
            return Ok(Endpoint::Etcd(urls));
        }
        Err(invalid("expected sqlite://<path>, http(s)://<host>:<port>[,…] for etcd, or memory://"))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Endpoint::Etcd(urls) => f.write_str(&urls.join(",")),
            Endpoint::Memory => f.write_str("memory://"),
        }
    }
}

/// Opens the backend `endpoint` names.
pub async fn open(endpoint: &Endpoint, tls: &TlsFiles) -> Result<Arc<dyn Store>> {
    Ok(match endpoint {
        Endpoint::Sqlite(path) => {
            let path = path.clone();
            let store = tokio::task::spawn_blocking(move || crate::sqlite::open(&path))
                .await
                .map_err(|e| Error::Unavailable(format!("opening sqlite failed: {e}")))??;
            Arc::new(store)
        }
        Endpoint::Etcd(urls) => Arc::new(crate::etcd::EtcdStore::connect(urls, tls).await?),
        Endpoint::Memory => Arc::new(crate::memory::open()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_k3s_forms() {
        assert_eq!(
            Endpoint::parse("sqlite:///var/lib/keelson/state.db?_journal=WAL").ok(),
            Some(Endpoint::Sqlite("/var/lib/keelson/state.db".into()))
        );
        assert_eq!(
            Endpoint::parse("https://a:2379, https://b:2379").ok(),
            Some(Endpoint::Etcd(vec!["https://a:2379".into(), "https://b:2379".into()]))
        );
        assert_eq!(Endpoint::parse("memory://").ok(), Some(Endpoint::Memory));
        for bad in ["", "sqlite://", "mysql://root@tcp(1.2.3.4)/db", "https://a:2379,b:2379"] {
            assert!(
                matches!(Endpoint::parse(bad), Err(Error::InvalidEndpoint { .. })),
                "{bad:?} should be rejected"
            );
        }
    }
}

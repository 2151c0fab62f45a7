//! Real TLS handshakes over TCP between `Pki::server_config` and `client_config`: with a client
//! certificate the server sees its identity, without one the connection is anonymous, and a
//! certificate from a foreign CA is refused rather than downgraded to anonymous.

use std::sync::Arc;

use anyhow::{Context, Result};
use keelson_pki::{
    CertIdentity, Pki, PkiOptions, anonymous_client_config, client_config, identity_from_der,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What the server saw on one connection.
#[derive(Debug)]
struct Seen {
    identity: Option<CertIdentity>,
    alpn: Option<Vec<u8>>,
}

/// Accepts one TLS connection, reports what it saw, and answers "ok".
async fn serve_one(listener: &TcpListener, acceptor: &TlsAcceptor) -> Result<Seen> {
    let (tcp, _) = listener.accept().await?;
    let mut tls = acceptor.accept(tcp).await?;
    let (_, conn) = tls.get_ref();
    let identity = match conn.peer_certificates().and_then(|c| c.first()) {
        Some(cert) => Some(identity_from_der(cert)?),
        None => None,
    };
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).await?;
    tls.write_all(b"ok").await?;
    tls.shutdown().await?;
    Ok(Seen { identity, alpn })
}

/// Connects with `config` to `server_name`, says hello and reads the answer.
async fn talk(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> Result<String> {
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_string())?;
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(b"hello").await?;
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await?;
    Ok(answer)
}

async fn server(pki: &Pki) -> Result<(TcpListener, TlsAcceptor)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    Ok((listener, TlsAcceptor::from(pki.server_config()?)))
}

#[tokio::test]
async fn client_certificate_identity_reaches_the_server() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let pki = Pki::ensure(tmp.path(), &PkiOptions::default())?;
    let (listener, acceptor) = server(&pki).await?;
    let addr = listener.local_addr()?;

    let (cert, key) = pki.issue_client("system:admin", &["system:masters", "ops"])?;
    let config = client_config(pki.ca_pem(), &cert, &key)?;
    let (seen, answer) =
        tokio::join!(serve_one(&listener, &acceptor), talk(addr, config, "localhost"));
    assert_eq!(answer?, "ok");
    let seen = seen?;
    assert_eq!(
        seen.identity,
        Some(CertIdentity {
            user: "system:admin".into(),
            groups: vec!["system:masters".into(), "ops".into()],
        })
    );
    assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]));
    Ok(())
}

#[tokio::test]
async fn clients_without_a_certificate_are_anonymous() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let pki = Pki::ensure(tmp.path(), &PkiOptions::default())?;
    let (listener, acceptor) = server(&pki).await?;
    let addr = listener.local_addr()?;

    for name in ["127.0.0.1", "kubernetes.default.svc"] {
        let config = anonymous_client_config(pki.ca_pem())?;
        let (seen, answer) =
            tokio::join!(serve_one(&listener, &acceptor), talk(addr, config, name));
        assert_eq!(answer?, "ok");
        assert_eq!(seen?.identity, None);
    }
    Ok(())
}

#[tokio::test]
async fn kubeconfig_credentials_authenticate() -> Result<()> {
    use base64::Engine as _;
    let tmp = tempfile::tempdir()?;
    let pki = Pki::ensure(&tmp.path().join("tls"), &PkiOptions::default())?;
    let path = tmp.path().join("kubeconfig");
    pki.write_kubeconfig(&path, "https://127.0.0.1:6443", "system:admin", &["system:masters"])?;
    let text = std::fs::read_to_string(&path)?;
    let field = |key: &str| -> Result<String> {
        let value = text
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(&format!("{key}: ")))
            .context(key.to_string())?;
        Ok(String::from_utf8(base64::engine::general_purpose::STANDARD.decode(value)?)?)
    };
    let config = client_config(
        &field("certificate-authority-data")?,
        &field("client-certificate-data")?,
        &field("client-key-data")?,
    )?;
    let (listener, acceptor) = server(&pki).await?;
    let addr = listener.local_addr()?;
    let (seen, answer) =
        tokio::join!(serve_one(&listener, &acceptor), talk(addr, config, "127.0.0.1"));
    assert_eq!(answer?, "ok");
    assert_eq!(seen?.identity.context("anonymous")?.user, "system:admin");
    Ok(())
}

#[tokio::test]
async fn foreign_client_certificates_are_refused() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let pki = Pki::ensure(&tmp.path().join("a"), &PkiOptions::default())?;
    let other = Pki::ensure(&tmp.path().join("b"), &PkiOptions::default())?;
    let (listener, acceptor) = server(&pki).await?;
    let addr = listener.local_addr()?;

    // Trusts the right server, but presents a certificate from another cluster's CA.
    let (cert, key) = other.issue_client("system:admin", &["system:masters"])?;
    let config = client_config(pki.ca_pem(), &cert, &key)?;
    let (seen, answer) =
        tokio::join!(serve_one(&listener, &acceptor), talk(addr, config, "localhost"));
    assert!(seen.is_err(), "server accepted a foreign certificate: {seen:?}");
    assert!(answer.is_err());

    // And a client trusting only the other CA refuses this server.
    let config = anonymous_client_config(other.ca_pem())?;
    let (seen, answer) =
        tokio::join!(serve_one(&listener, &acceptor), talk(addr, config, "localhost"));
    assert!(answer.is_err());
    assert!(seen.is_err());
    Ok(())
}

#[test]
fn bad_pem_inputs_are_errors() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let pki = Pki::ensure(tmp.path(), &PkiOptions::default())?;
    let (cert, key) = pki.issue_client("u", &[])?;
    assert!(client_config("junk", &cert, &key).is_err());
    assert!(client_config(pki.ca_pem(), "junk", &key).is_err());
    assert!(client_config(pki.ca_pem(), &cert, "junk").is_err());
    assert!(anonymous_client_config("").is_err());
    Ok(())
}

#[test]
fn pki_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pki>();
}

/// The front-proxy CA's certificates reach only a server configured to tell them apart.
#[tokio::test]
async fn front_proxy_certificates_reach_only_a_server_with_a_front_proxy() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let pki = Pki::ensure(tmp.path(), &PkiOptions::default())?;
    let (cert, key) = pki.front_proxy_client();
    let config = client_config(pki.ca_pem(), cert, key)?;

    let (listener, acceptor) = server(&pki).await?;
    let addr = listener.local_addr()?;
    let (seen, _) =
        tokio::join!(serve_one(&listener, &acceptor), talk(addr, config.clone(), "localhost"));
    assert!(seen.is_err(), "a plain server accepted a front proxy: {seen:?}");

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let acceptor = TlsAcceptor::from(pki.server_config_with_front_proxy()?);
    let addr = listener.local_addr()?;
    let (seen, answer) =
        tokio::join!(serve_one(&listener, &acceptor), talk(addr, config, "localhost"));
    let identity = seen?.identity.context("the certificate")?;
    assert_eq!(identity.user, keelson_pki::FRONT_PROXY_CLIENT);
    assert_eq!(answer?, "ok");
    Ok(())
}

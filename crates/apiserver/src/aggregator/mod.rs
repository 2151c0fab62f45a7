//! The aggregation layer, as kube-aggregator runs in front of kube-apiserver. So far
//! the front proxy's side: [`FrontProxy`], with which `authn::requestheader` takes users
//! from request headers and publishes the trust extension servers need
//! (`kube-system/extension-apiserver-authentication`).

/// What the API server needs for request-header authentication and for proxying to
/// extension API servers (kube-apiserver's `--client-ca-file`, `--requestheader-*` and
/// `--proxy-client-*` flags).
#[derive(Clone, Debug)]
pub struct FrontProxy {
    /// The CA client certificates name their user with (`client-ca-file`).
    pub client_ca_pem: String,
    /// The CA of front proxies (`--requestheader-client-ca-file`).
    pub ca_pem: String,
    /// The common names a front proxy's certificate may have
    /// (`--requestheader-allowed-names`).
    pub allowed_names: Vec<String>,
    /// The certificate and key this server presents to extension API servers.
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl FrontProxy {
    /// The front proxy of `keelson server`: the cluster PKI's front-proxy CA and its
    /// `front-proxy-client` certificate, the one allowed name. The server's TLS must
    /// accept that CA's certificates (`Pki::server_config_with_front_proxy`).
    pub fn from_pki(pki: &keelson_pki::Pki) -> FrontProxy {
        let (cert, key) = pki.front_proxy_client();
        FrontProxy {
            client_ca_pem: pki.ca_pem().to_owned(),
            ca_pem: pki.front_proxy_ca_pem().to_owned(),
            allowed_names: vec![keelson_pki::FRONT_PROXY_CLIENT.to_owned()],
            client_cert_pem: cert.to_owned(),
            client_key_pem: key.to_owned(),
        }
    }
}

/// The request headers of upstream's request-header authentication, as kubeadm and
/// k3s configure them (`--requestheader-username-headers` and the others).
pub const USERNAME_HEADERS: &[&str] = &["X-Remote-User"];
pub const GROUP_HEADERS: &[&str] = &["X-Remote-Group"];
pub const EXTRA_HEADER_PREFIXES: &[&str] = &["X-Remote-Extra-"];

/// The aggregator's state: its front proxy.
#[derive(Default)]
pub struct Aggregator {
    front_proxy: Option<FrontProxy>,
}

impl Aggregator {
    pub fn new(front_proxy: Option<FrontProxy>) -> Aggregator {
        Aggregator { front_proxy }
    }

    pub fn front_proxy(&self) -> Option<&FrontProxy> {
        self.front_proxy.as_ref()
    }
}

//! Service account tokens (upstream's `pkg/serviceaccount`): JWTs signed with the
//! cluster's service account key (ES256), issued through the TokenRequest API
//! (`serviceaccounts/{name}/token`) bound to a pod, secret or node, and accepted as
//! bearer tokens while the service account — and the object they are bound to — still
//! exist with the same uid. Also the OIDC discovery documents of the issuer and
//! TokenReview.
//!
//! Must never accept a token whose signature, issuer, audience or lifetime is wrong, or
//! whose bound object is gone; the reason goes to the server log, the client sees 401.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use http::StatusCode;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use keelson_api::Typed;
use keelson_api::k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};

use crate::ApiServer;
use crate::registry::{Place, typed};
use crate::request::Target;
use crate::request::{Request, User};
use crate::response::{Response, json_response};
use crate::status::{ApiError, ApiResult, Cause};

/// The issuer k3s and kubeadm clusters use.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// A token request's lifetime when it names none (one hour).
const DEFAULT_EXPIRATION: i64 = 3600;
/// The shortest lifetime a token request may ask for.
const MIN_EXPIRATION: i64 = 600;

/// How service account tokens are made and checked.
pub struct Config {
    pub key: keelson_pki::ServiceAccountKey,
    /// `iss` of every token (`--service-account-issuer`).
    pub issuer: String,
    /// Audiences the API server accepts (`--api-audiences`; default: the issuer).
    pub audiences: Vec<String>,
    /// The cluster CA, published to every namespace as `kube-root-ca.crt` for the
    /// pods that use their token.
    pub root_ca_pem: String,
}

impl Config {
    /// Tokens signed with `key`, upstream's issuer, the issuer as the one audience.
    pub fn new(key: keelson_pki::ServiceAccountKey, root_ca_pem: &str) -> Self {
        Config {
            key,
            issuer: DEFAULT_ISSUER.into(),
            audiences: Vec::new(),
            root_ca_pem: root_ca_pem.to_owned(),
        }
    }
}

/// The signing and verifying keys, ready.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    jwk: Value,
    issuer: String,
    audiences: Vec<String>,
    pub root_ca_pem: String,
}

/// A reference to the object a token is bound to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// The `kubernetes.io` claim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaim {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
}

/// The claims of a bound service account token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub iss: String,
    pub jti: String,
    pub sub: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaim,
}

/// Why service account tokens cannot be made, or why a token does not authenticate (for
/// the server log and TokenReview's `status.error`: a bearer token's client sees 401).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the service account key is not an uncompressed P-256 point")]
    KeyNotP256,
    /// The key is unusable for jsonwebtoken, or signing failed.
    #[error(transparent)]
    Jwt(#[from] jsonwebtoken::errors::Error),
    #[error("malformed token: {0}")]
    Malformed(jsonwebtoken::errors::Error),
    #[error("unexpected signing algorithm {0:?}")]
    Algorithm(Algorithm),
    /// The signature, issuer, audience or lifetime is wrong.
    #[error("invalid bearer token: {0}")]
    Invalid(jsonwebtoken::errors::Error),
    #[error("the subject does not name the service account")]
    SubjectMismatch,
    #[error("{0} are not registered")]
    NotRegistered(&'static str),
    /// The object a claim names (`what`: service account, pod, secret) has another uid.
    #[error("{what} UID ({uid}) does not match claim ({claimed})")]
    UidMismatch { what: &'static str, uid: String, claimed: String },
    #[error("pod {namespace}/{name} is being deleted")]
    PodDeleting { namespace: String, name: String },
    #[error("{what} {namespace}/{name} has been deleted")]
    Deleted { what: &'static str, namespace: String, name: String },
    /// Reading the object failed: the API error's message.
    #[error("cannot look up {what} {namespace}/{name}: {message}")]
    Lookup { what: &'static str, namespace: String, name: String, message: String },
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Tokens {
    pub fn new(config: Config) -> Result<Tokens, Error> {
        let point = &config.key.public_point;
        if point.len() != 65 || point[0] != 4 {
            return Err(Error::KeyNotP256);
        }
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        // Upstream's key id: the SHA-256 of the public key's DER, base64url.
        let kid = b64(&sha256(&config.key.public_spki_der));
        let (x, y) = (b64(&point[1..33]), b64(&point[33..]));
        let jwk = json!({ "use": "sig", "kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256", "x": x, "y": y });
        let decoding = DecodingKey::from_ec_components(&x, &y)?;
        let audiences = if config.audiences.is_empty() {
            vec![config.issuer.clone()]
        } else {
            config.audiences
        };
        Ok(Tokens {
            encoding: EncodingKey::from_ec_der(&config.key.pkcs8_der),
            decoding,
            kid,
            jwk,
            issuer: config.issuer,
            audiences,
            root_ca_pem: config.root_ca_pem,
        })
    }

    /// Signs `claims` (ES256, with the key id).
    pub fn sign(&self, claims: &Claims) -> Result<String, Error> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// Checks a token's signature, issuer, audience and lifetime; the claims, or why not.
    pub fn verify(&self, token: &str, audiences: &[String]) -> Result<Claims, Error> {
        let header = jsonwebtoken::decode_header(token).map_err(Error::Malformed)?;
        if header.alg != Algorithm::ES256 {
            return Err(Error::Algorithm(header.alg));
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(Error::Invalid)
    }

    pub fn accepts(&self) -> &[String] {
        &self.audiences
    }
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().to_vec()
}

/// Authenticates a service account token: valid, and the service account and the object
/// it is bound to still exist with the uids it names.
pub async fn authenticate(
    api: &ApiServer,
    tokens: &Tokens,
    token: &str,
    audiences: &[String],
) -> Result<User, Error> {
    let claims = tokens.verify(token, audiences)?;
    let k = &claims.kubernetes;
    let (namespace, account) = (k.namespace.as_str(), k.serviceaccount.name.as_str());
    if claims.sub != format!("system:serviceaccount:{namespace}:{account}") {
        return Err(Error::SubjectMismatch);
    }
    check_live(api, "serviceaccounts", Some(namespace), &k.serviceaccount, "service account")
        .await?;
    if let Some(pod) = &k.pod {
        check_live(api, "pods", Some(namespace), pod, "pod").await?;
    }
    if let Some(secret) = &k.secret {
        check_live(api, "secrets", Some(namespace), secret, "secret").await?;
    }
    let mut extra = BTreeMap::new();
    if let Some(pod) = &k.pod {
        extra.insert("authentication.kubernetes.io/pod-name".to_owned(), vec![pod.name.clone()]);
        extra.insert("authentication.kubernetes.io/pod-uid".to_owned(), vec![pod.uid.clone()]);
    }
    if let Some(node) = &k.node {
        extra.insert("authentication.kubernetes.io/node-name".to_owned(), vec![node.name.clone()]);
        extra.insert("authentication.kubernetes.io/node-uid".to_owned(), vec![node.uid.clone()]);
    }
    extra.insert(
        "authentication.kubernetes.io/credential-id".to_owned(),
        vec![format!("JTI={}", claims.jti)],
    );
    Ok(User {
        name: claims.sub.clone(),
        uid: k.serviceaccount.uid.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".into(),
        ],
        extra,
    })
}

/// The object a claim names must exist with the uid it names, and not be on its way out.
async fn check_live(
    api: &ApiServer,
    plural: &'static str,
    namespace: Option<&str>,
    reference: &ObjectRef,
    what: &'static str,
) -> Result<(), Error> {
    let info = keelson_api::Registry::builtin()
        .find("", "v1", plural)
        .ok_or(Error::NotRegistered(plural))?;
    let place = Place { info, namespace, name: &reference.name };
    let (namespace, name) = (namespace.unwrap_or("").to_owned(), reference.name.clone());
    match api.objects.get(place).await {
        Ok((object, _)) => {
            let uid = object["metadata"]["uid"].as_str().unwrap_or("");
            if uid != reference.uid {
                let (uid, claimed) = (uid.to_owned(), reference.uid.clone());
                return Err(Error::UidMismatch { what, uid, claimed });
            }
            if what == "pod" && !object["metadata"]["deletionTimestamp"].is_null() {
                return Err(Error::PodDeleting { namespace, name });
            }
            Ok(())
        }
        Err(e) if e.code == StatusCode::NOT_FOUND => Err(Error::Deleted { what, namespace, name }),
        Err(e) => Err(Error::Lookup { what, namespace, name, message: e.message }),
    }
}

/// `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`: a TokenRequest.
pub async fn token_request(api: &ApiServer, req: &Request, target: &Target) -> ApiResult<Response> {
    let Some(tokens) = api.tokens.as_ref() else {
        return Err(ApiError::method_not_supported("", "serviceaccounts/token", "create"));
    };
    let namespace = target.namespace.as_deref().unwrap_or("");
    let name = target.name.as_deref().unwrap_or("");
    let mut request = typed::decode_body(
        Typed::of::<TokenRequest>(),
        "authentication.k8s.io",
        "v1",
        "TokenRequest",
        &req.json_body()?,
    )?;
    let spec = request["spec"].clone();
    let expiration = spec["expirationSeconds"].as_i64().unwrap_or(DEFAULT_EXPIRATION);
    let invalid = |field: &str, value: Value, detail: &str| {
        ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            name,
            vec![Cause::invalid(field, &value, detail)],
        )
    };
    if expiration < MIN_EXPIRATION {
        return Err(invalid(
            "spec.expirationSeconds",
            json!(expiration),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > 1 << 32 {
        return Err(invalid(
            "spec.expirationSeconds",
            json!(expiration),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let admission = crate::admission::Attributes {
        user: &req.user,
        info: target.info,
        namespace,
        name,
        subresource: "token",
        operation: crate::admission::Operation::Create,
        old: None,
        dry_run: false,
    };
    crate::admission::admit(api, &admission, &mut request.clone()).await?;
    let account = object(api, "serviceaccounts", Some(namespace), name).await?;
    let mut claim = KubernetesClaim {
        namespace: namespace.to_owned(),
        serviceaccount: ObjectRef { name: name.to_owned(), uid: uid(&account) },
        ..Default::default()
    };
    let reference = &spec["boundObjectRef"];
    if reference.is_object() {
        let kind = reference["kind"].as_str().unwrap_or("");
        let api_version = reference["apiVersion"].as_str().unwrap_or("");
        let bound_name = reference["name"].as_str().unwrap_or("");
        let bound = match (api_version, kind) {
            ("v1", "Pod") => {
                let pod = object(api, "pods", Some(namespace), bound_name).await?;
                let runs_as = pod["spec"]["serviceAccountName"].as_str().unwrap_or("");
                if runs_as != name {
                    return Err(ApiError::bad_request(format!(
                        "cannot bind token for serviceaccount {name:?} to pod running with serviceaccount {runs_as:?}"
                    )));
                }
                if let Some(node_name) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())
                    && let Ok(node) = object(api, "nodes", None, node_name).await
                {
                    claim.node = Some(ObjectRef { name: node_name.to_owned(), uid: uid(&node) });
                }
                claim.pod = Some(ObjectRef { name: bound_name.to_owned(), uid: uid(&pod) });
                pod
            }
            ("v1", "Secret") => {
                let secret = object(api, "secrets", Some(namespace), bound_name).await?;
                claim.secret = Some(ObjectRef { name: bound_name.to_owned(), uid: uid(&secret) });
                secret
            }
            ("v1", "Node") => {
                let node = object(api, "nodes", None, bound_name).await?;
                claim.node = Some(ObjectRef { name: bound_name.to_owned(), uid: uid(&node) });
                node
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token to object of type {}",
                    if api_version.contains('/') {
                        format!("{api_version}, Kind={kind}")
                    } else {
                        format!("/{api_version}, Kind={kind}")
                    }
                )));
            }
        };
        let wanted = reference["uid"].as_str().unwrap_or("");
        let actual = uid(&bound);
        if !wanted.is_empty() && wanted != actual {
            return Err(ApiError::conflict(
                "",
                kind,
                bound_name,
                &format!(
                    "the UID in the bound object reference ({wanted}) does not match the UID in record ({actual}). The object might have been deleted and then recreated"
                ),
            ));
        }
    }
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(list) if !list.is_empty() => {
            list.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        }
        _ => tokens.accepts().to_vec(),
    };
    let issued = now();
    let claims = Claims {
        aud: audiences.clone(),
        exp: issued + expiration,
        iat: issued,
        nbf: issued,
        iss: tokens.issuer.clone(),
        jti: uuid::Uuid::new_v4().to_string(),
        sub: format!("system:serviceaccount:{namespace}:{name}"),
        kubernetes: claim,
    };
    let token = tokens.sign(&claims).map_err(ApiError::internal)?;
    request["apiVersion"] = json!("authentication.k8s.io/v1");
    request["kind"] = json!("TokenRequest");
    request["metadata"]["name"] = json!(name);
    request["metadata"]["namespace"] = json!(namespace);
    request["metadata"]["creationTimestamp"] = Value::Null;
    request["spec"]["audiences"] = json!(audiences);
    request["spec"]["expirationSeconds"] = json!(expiration);
    request["status"] = json!({
        "token": token,
        "expirationTimestamp": crate::meta::format_time(
            keelson_api::k8s_openapi::jiff::Timestamp::from_second(claims.exp)
                .map_err(ApiError::internal)?
        ),
    });
    Ok(json_response(StatusCode::CREATED, &request))
}

async fn object(
    api: &ApiServer,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> ApiResult<Value> {
    let info = keelson_api::Registry::builtin()
        .find("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))?;
    api.objects.get(Place { info, namespace, name }).await.map(|(o, _)| o)
}

fn uid(object: &Value) -> String {
    object["metadata"]["uid"].as_str().unwrap_or("").to_owned()
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`: who a token authenticates as.
pub async fn token_review(api: &ApiServer, req: &Request) -> ApiResult<Response> {
    let mut review = typed::decode_body(
        Typed::of::<TokenReview>(),
        "authentication.k8s.io",
        "v1",
        "TokenReview",
        &req.json_body()?,
    )?;
    let token = review["spec"]["token"].as_str().unwrap_or("").to_owned();
    let asked = crate::meta::string_list(&review["spec"]["audiences"]);
    let accepted = match api.tokens.as_ref() {
        Some(tokens) if asked.is_empty() => tokens.accepts().to_vec(),
        _ => asked.clone(),
    };
    review["apiVersion"] = json!("authentication.k8s.io/v1");
    review["kind"] = json!("TokenReview");
    review["metadata"] = json!({ "creationTimestamp": null });
    review["status"] = match super::authenticate_token(api, &token, &accepted).await {
        Ok(user) => {
            let mut status = json!({
                "authenticated": true,
                "user": { "username": user.name, "uid": user.uid, "groups": user.groups },
                "audiences": accepted,
            });
            if !user.extra.is_empty() {
                status["user"]["extra"] = json!(user.extra);
            }
            status
        }
        Err(why) => json!({ "user": {}, "error": why.to_string() }),
    };
    Ok(json_response(StatusCode::CREATED, &review))
}

/// `/.well-known/openid-configuration`.
pub fn discovery(tokens: &Tokens) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "issuer": tokens.issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", tokens.issuer.trim_end_matches('/')),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        }),
    )
}

/// `/openid/v1/jwks`.
pub fn jwks(tokens: &Tokens) -> Response {
    let mut response = json_response(StatusCode::OK, &json!({ "keys": [tokens.jwk] }));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/jwk-set+json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = keelson_pki::ServiceAccountKey::load_or_create(dir.path()).expect("key");
        Tokens::new(Config {
            key,
            issuer: DEFAULT_ISSUER.into(),
            audiences: vec![],
            root_ca_pem: String::new(),
        })
        .expect("tokens")
    }

    fn claims(exp: i64, aud: &str) -> Claims {
        Claims {
            aud: vec![aud.into()],
            exp,
            iat: now(),
            nbf: now(),
            iss: DEFAULT_ISSUER.into(),
            jti: "j".into(),
            sub: "system:serviceaccount:ns:sa".into(),
            kubernetes: KubernetesClaim { namespace: "ns".into(), ..Default::default() },
        }
    }

    #[test]
    fn tokens_verify_only_as_signed() {
        let t = tokens();
        let good = t.sign(&claims(now() + 600, DEFAULT_ISSUER)).expect("signed");
        assert_eq!(t.verify(&good, t.accepts()).expect("valid").sub, "system:serviceaccount:ns:sa");
        let expired = t.sign(&claims(now() - 10, DEFAULT_ISSUER)).expect("signed");
        assert!(
            t.verify(&expired, t.accepts()).unwrap_err().to_string().contains("ExpiredSignature")
        );
        let foreign = t.sign(&claims(now() + 600, "vault")).expect("signed");
        assert!(t.verify(&foreign, t.accepts()).is_err());
        assert!(t.verify(&foreign, &["vault".into()]).is_ok());
        let other = tokens();
        assert!(other.verify(&good, other.accepts()).is_err(), "another key's signature");
        let mut tampered = good.clone();
        tampered.insert(good.len() / 2, 'A');
        assert!(t.verify(&tampered, t.accepts()).is_err());
        assert!(t.verify("not.a.jwt", t.accepts()).is_err());
        assert!(t.verify("", t.accepts()).is_err());
    }

    #[test]
    fn the_jwk_names_the_key() {
        let t = tokens();
        assert_eq!(t.jwk["kty"], "EC");
        assert_eq!(t.jwk["kid"], t.kid);
        let header = jsonwebtoken::decode_header(
            t.sign(&claims(now() + 600, DEFAULT_ISSUER)).expect("signed"),
        )
        .expect("header");
        assert_eq!(header.kid.as_deref(), Some(t.kid.as_str()));
    }
}

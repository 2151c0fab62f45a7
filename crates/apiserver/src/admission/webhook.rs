//! Admission webhooks (upstream's `MutatingAdmissionWebhook` and
//! `ValidatingAdmissionWebhook`): every webhook of a `MutatingWebhookConfiguration` or
//! `ValidatingWebhookConfiguration` whose rules, namespace selector and object selector
//! match a write receives an `admission.k8s.io/v1` `AdmissionReview` over HTTPS
//! (verified against its `caBundle`), within its `timeoutSeconds`. A mutating webhook's
//! JSON patch is applied; a denial becomes the client's error; a webhook that cannot be
//! reached fails the request unless its `failurePolicy` is `Ignore`.
//!
//! `matchConditions` are CEL expressions ([`crate::cel`]) that must all hold.
//!
//! Not yet: `reinvocationPolicy: IfNeeded`; `service` references reach the Service's
//! cluster IP, which needs the node proxy. Requests on the webhook configurations
//! themselves are never sent to webhooks, so a broken webhook cannot lock itself in.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};

use super::{Attributes, Mutating, Operation, Plugin, Server, Validating};
use crate::ApiServer;
use crate::registry::selector::{LabelSelector, selector_string};
use crate::status::{ApiError, ApiResult};

const MUTATING: &str = "/registry/mutatingwebhookconfigurations/";
const VALIDATING: &str = "/registry/validatingwebhookconfigurations/";
/// The largest webhook response read (upstream caps it too).
const MAX_RESPONSE: usize = 3 * 1024 * 1024;

/// MutatingAdmissionWebhook; calls out with the server's state, so it holds the server.
pub struct MutatingAdmissionWebhook(pub Server);

impl Plugin for MutatingAdmissionWebhook {
    fn handles(&self, operation: Operation) -> bool {
        matches!(operation, Operation::Create | Operation::Update)
    }

    fn mutating(&self) -> Option<&dyn Mutating> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl Mutating for MutatingAdmissionWebhook {
    async fn admit(
        &self,
        a: &Attributes<'_>,
        object: Option<&mut Value>,
    ) -> ApiResult<Vec<String>> {
        match object {
            Some(object) => mutate(&*self.0.get()?, a, object).await,
            None => Ok(Vec::new()),
        }
    }
}

/// ValidatingAdmissionWebhook; deletes are sent with the object being deleted.
pub struct ValidatingAdmissionWebhook(pub Server);

impl Plugin for ValidatingAdmissionWebhook {
    fn handles(&self, _: Operation) -> bool {
        true
    }

    fn validating(&self) -> Option<&dyn Validating> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl Validating for ValidatingAdmissionWebhook {
    async fn validate(&self, a: &Attributes<'_>, object: Option<&Value>) -> ApiResult<Vec<String>> {
        let api = self.0.get()?;
        if a.operation != Operation::Delete || a.old.is_some() {
            return validate(&api, a, object).await;
        }
        if !any(&api).await {
            return Ok(Vec::new());
        }
        match super::deleted_object(&api, a).await {
            Some(old) => validate(&api, &Attributes { old: Some(&old), ..*a }, None).await,
            None => Ok(Vec::new()),
        }
    }
}

/// Calls the mutating webhooks that match, applying each patch to `object` in turn.
pub async fn mutate(
    api: &ApiServer,
    a: &Attributes<'_>,
    object: &mut Value,
) -> ApiResult<Vec<String>> {
    let mut warnings = Vec::new();
    for hook in matching(api, MUTATING, a, Some(object)).await? {
        if let Some(patched) = call(api, &hook, a, Some(object), &mut warnings).await? {
            *object = patched;
        }
    }
    Ok(warnings)
}

/// Calls the validating webhooks that match; any denial refuses the write.
pub async fn validate(
    api: &ApiServer,
    a: &Attributes<'_>,
    object: Option<&Value>,
) -> ApiResult<Vec<String>> {
    let mut warnings = Vec::new();
    for hook in matching(api, VALIDATING, a, object).await? {
        call(api, &hook, a, object, &mut warnings).await?;
    }
    Ok(warnings)
}

/// Whether any webhook configuration exists (so deletes need their old object).
pub async fn any(api: &ApiServer) -> bool {
    for prefix in [MUTATING, VALIDATING] {
        if !super::stored(api, prefix).await.is_empty() {
            return true;
        }
    }
    false
}

/// One webhook, with the name of the configuration it belongs to.
struct Hook {
    webhook: Value,
    mutating: bool,
}

impl Hook {
    fn name(&self) -> &str {
        self.webhook["name"].as_str().unwrap_or("")
    }
}

async fn matching(
    api: &ApiServer,
    prefix: &str,
    a: &Attributes<'_>,
    object: Option<&Value>,
) -> ApiResult<Vec<Hook>> {
    if a.info.group == "admissionregistration.k8s.io" {
        return Ok(Vec::new());
    }
    let mut configurations = super::stored(api, prefix).await;
    if configurations.is_empty() {
        return Ok(Vec::new());
    }
    configurations
        .sort_by(|x, y| x["metadata"]["name"].as_str().cmp(&y["metadata"]["name"].as_str()));
    let namespace_labels = namespace_labels(api, a, object).await;
    let mut hooks = Vec::new();
    for configuration in configurations {
        for webhook in configuration["webhooks"].as_array().into_iter().flatten() {
            if rules_match(&webhook["rules"], a)
                && selector_matches(&webhook["namespaceSelector"], namespace_labels.as_ref())
                && object_selector_matches(webhook, object, a.old)
            {
                hooks.push(Hook { webhook: webhook.clone(), mutating: prefix == MUTATING });
            }
        }
    }
    Ok(hooks)
}

/// The labels the namespace selector sees: the namespace's, or the object's own for a
/// Namespace; `None` for other cluster-scoped objects (the selector does not apply).
pub(super) async fn namespace_labels(
    api: &ApiServer,
    a: &Attributes<'_>,
    object: Option<&Value>,
) -> Option<Value> {
    if a.is("", "namespaces") {
        return Some(
            object.or(a.old).map(|o| o["metadata"]["labels"].clone()).unwrap_or(Value::Null),
        );
    }
    if !a.info.namespaced() {
        return None;
    }
    let info = keelson_api::Registry::builtin().find("", "v1", "namespaces")?;
    let place = crate::registry::Place { info, namespace: None, name: a.namespace };
    let labels = api.objects.get(place).await.map(|(ns, _)| ns["metadata"]["labels"].clone());
    Some(labels.unwrap_or(Value::Null))
}

pub(super) fn selector_matches(selector: &Value, labels: Option<&Value>) -> bool {
    let Some(labels) = labels else {
        return true;
    };
    if selector.is_null() {
        return true;
    }
    match LabelSelector::parse(&selector_string(selector, false)) {
        Ok(parsed) => parsed.matches(&json!({ "metadata": { "labels": labels } })),
        Err(_) => false,
    }
}

/// The object selector matches the new object or the old one.
pub(super) fn object_selector_matches(
    webhook: &Value,
    object: Option<&Value>,
    old: Option<&Value>,
) -> bool {
    let selector = &webhook["objectSelector"];
    if selector.is_null() {
        return true;
    }
    [object, old]
        .into_iter()
        .flatten()
        .any(|o| selector_matches(selector, Some(&o["metadata"]["labels"])))
}

/// Upstream's rule matcher: operations, groups, versions, resources (with
/// `resource/subresource`, `*`, `*/*`, `resource/*`, `*/subresource`), scope, and (for
/// policies) resource names.
pub(super) fn rules_match(rules: &Value, a: &Attributes<'_>) -> bool {
    let has = |list: &Value, item: &str| {
        list.as_array().into_iter().flatten().any(|v| v == "*" || v == item)
    };
    let scope_ok = |scope: &str| match scope {
        "Cluster" => !a.info.namespaced(),
        "Namespaced" => a.info.namespaced(),
        _ => true,
    };
    rules.as_array().into_iter().flatten().any(|rule| {
        let names = crate::meta::string_list(&rule["resourceNames"]);
        let resources =
            rule["resources"].as_array().into_iter().flatten().filter_map(Value::as_str);
        let resource_ok = resources.clone().any(|r| {
            let (res, sub) = r.split_once('/').unwrap_or((r, ""));
            let res_ok = res == "*" || res == a.info.plural;
            let sub_ok = if a.subresource.is_empty() {
                !r.contains('/')
            } else {
                sub == "*" || sub == a.subresource
            };
            res_ok && sub_ok
        });
        has(&rule["operations"], a.operation.as_str())
            && has(&rule["apiGroups"], a.info.group)
            && has(&rule["apiVersions"], a.info.version)
            && resource_ok
            && scope_ok(rule["scope"].as_str().unwrap_or("*"))
            && (names.is_empty() || names.iter().any(|n| n == a.name))
    })
}

/// Sends the review; the patched object for a mutating webhook that patched.
async fn call(
    api: &ApiServer,
    hook: &Hook,
    a: &Attributes<'_>,
    object: Option<&Value>,
    warnings: &mut Vec<String>,
) -> ApiResult<Option<Value>> {
    let name = hook.name();
    if a.dry_run && !matches!(hook.webhook["sideEffects"].as_str(), Some("None" | "NoneOnDryRun")) {
        return Err(ApiError::bad_request(format!(
            "admission webhook {name:?} has side effects and does not support dry run"
        )));
    }
    let uid = uuid::Uuid::new_v4().to_string();
    let review = review(&uid, a, object);
    match conditions_hold(&hook.webhook, &review["request"]) {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(why) => return fail(hook, &format!("failed to evaluate match conditions: {why}")),
    }
    let timeout =
        Duration::from_secs(hook.webhook["timeoutSeconds"].as_u64().unwrap_or(10).clamp(1, 30));
    let answer = match tokio::time::timeout(timeout, post(api, &hook.webhook, &review)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(why)) => return fail(hook, &why.to_string()),
        Err(_) => return fail(hook, "context deadline exceeded"),
    };
    let response = &answer["response"];
    if answer["apiVersion"] != "admission.k8s.io/v1" || answer["kind"] != "AdmissionReview" {
        return fail(
            hook,
            "expected response.apiVersion admission.k8s.io/v1 and kind AdmissionReview",
        );
    }
    if response["uid"] != uid.as_str() {
        return fail(
            hook,
            &format!(
                "expected response.uid={uid:?}, got {:?}",
                response["uid"].as_str().unwrap_or("")
            ),
        );
    }
    warnings.extend(crate::meta::string_list(&response["warnings"]));
    if response["allowed"] != true {
        let status = &response["status"];
        let code = status["code"].as_u64().and_then(|c| http::StatusCode::from_u16(c as u16).ok());
        let message = match status["message"].as_str().filter(|m| !m.is_empty()) {
            Some(m) => format!("admission webhook {name:?} denied the request: {m}"),
            None => format!("admission webhook {name:?} denied the request without explanation"),
        };
        let mut error = ApiError::forbidden(message);
        if let Some(code) = code.filter(|c| c.is_client_error() || c.is_server_error()) {
            error.code = code;
        }
        if let Some(reason) = status["reason"].as_str().filter(|r| !r.is_empty()) {
            error.reason = crate::status::Reason::named(reason);
        }
        return Err(error);
    }
    let patch = response["patch"].as_str().filter(|p| !p.is_empty());
    let (Some(patch), true, Some(object)) = (patch, hook.mutating, object) else {
        return Ok(None);
    };
    if response["patchType"] != "JSONPatch" {
        return fail(hook, "the only patchType supported is JSONPatch");
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(patch).map_err(|e| {
        ApiError::internal(format!(
            "admission webhook {name:?} sent a patch that is not base64: {e}"
        ))
    })?;
    let operations: json_patch::Patch = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::internal(format!("admission webhook {name:?} sent an invalid JSON patch: {e}"))
    })?;
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &operations).map_err(|e| {
        ApiError::internal(format!(
            "admission webhook {name:?} sent a patch that does not apply: {e}"
        ))
    })?;
    Ok(Some(patched))
}

/// A match condition that does not compile or evaluate to a bool: its name and why.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {error}")]
pub struct ConditionError {
    pub name: String,
    pub error: crate::cel::Error,
}

/// Upstream's `matchConditions`: every CEL condition must hold (over `object`,
/// `oldObject` and `request`) for the webhook to be called.
pub fn conditions_hold(webhook: &Value, request: &Value) -> Result<bool, ConditionError> {
    let empty = Value::Null;
    for condition in webhook["matchConditions"].as_array().into_iter().flatten() {
        let name = condition["name"].as_str().unwrap_or("");
        let failed = |error| ConditionError { name: name.to_owned(), error };
        let expression =
            crate::cel::compile(condition["expression"].as_str().unwrap_or("")).map_err(failed)?;
        let variables = [
            ("object", request.get("object").unwrap_or(&empty)),
            ("oldObject", request.get("oldObject").unwrap_or(&empty)),
            ("request", request),
        ];
        if !expression.holds(&variables).map_err(failed)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A webhook that could not answer: the request fails, unless it may be ignored.
fn fail(hook: &Hook, why: &str) -> ApiResult<Option<Value>> {
    let name = hook.name();
    if hook.webhook["failurePolicy"] == "Ignore" {
        tracing::warn!(webhook = name, reason = why, "failed calling webhook, failing open");
        return Ok(None);
    }
    Err(ApiError::internal(format!("failed calling webhook {name:?}: {why}")))
}

/// The `AdmissionReview` request upstream sends.
pub(super) fn review(uid: &str, a: &Attributes<'_>, object: Option<&Value>) -> Value {
    let info = a.info;
    let sub = info.subresources.iter().find(|s| s.name == a.subresource);
    let kind = match sub {
        Some(s) => json!({
            "group": if s.group.is_empty() { info.group } else { s.group },
            "version": if s.version.is_empty() { info.version } else { s.version },
            "kind": s.kind,
        }),
        None => json!({ "group": info.group, "version": info.version, "kind": info.kind }),
    };
    let resource = json!({ "group": info.group, "version": info.version, "resource": info.plural });
    let mut user = json!({ "username": a.user.name, "groups": a.user.groups });
    if !a.user.uid.is_empty() {
        user["uid"] = json!(a.user.uid);
    }
    if !a.user.extra.is_empty() {
        user["extra"] = json!(a.user.extra);
    }
    let options_kind = match a.operation {
        Operation::Create => "CreateOptions",
        Operation::Update => "UpdateOptions",
        Operation::Delete => "DeleteOptions",
    };
    let mut request = json!({
        "uid": uid,
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "name": a.name,
        "operation": a.operation.as_str(),
        "userInfo": user,
        "object": object.cloned().unwrap_or(Value::Null),
        "oldObject": a.old.cloned().unwrap_or(Value::Null),
        "dryRun": a.dry_run,
        "options": { "apiVersion": "meta.k8s.io/v1", "kind": options_kind },
    });
    if !a.subresource.is_empty() {
        request["subResource"] = json!(a.subresource);
        request["requestSubResource"] = json!(a.subresource);
    }
    if !a.namespace.is_empty() {
        request["namespace"] = json!(a.namespace);
    }
    json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request })
}

/// Why a webhook could not be called, or did not answer with a review; the message is
/// the end of upstream's `failed calling webhook` error.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("webhook URLs must be https")]
    NotHttps,
    #[error(transparent)]
    Port(#[from] std::num::ParseIntError),
    #[error("services are not registered")]
    ServicesNotRegistered,
    /// The webhook's Service could not be read: the API error's message.
    #[error("{0}")]
    Service(String),
    #[error("service has no cluster IP")]
    NoClusterIp,
    #[error("the webhook has neither url nor service")]
    NoTarget,
    #[error("caBundle: {0}")]
    CaBundleBase64(base64::DecodeError),
    #[error("caBundle: {0}")]
    CaBundleUtf8(std::string::FromUtf8Error),
    #[error("the webhook has no caBundle")]
    NoCaBundle,
    #[error(transparent)]
    ClientTls(#[from] keelson_pki::Error),
    #[error(transparent)]
    ServerName(#[from] rustls::pki_types::InvalidDnsNameError),
    #[error("dial tcp {host}:{port}: {error}")]
    Dial { host: String, port: u16, error: std::io::Error },
    #[error("tls: {0}")]
    Tls(std::io::Error),
    /// The HTTP/1 handshake or exchange failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error(transparent)]
    Request(#[from] http::Error),
    #[error(transparent)]
    Encode(serde_json::Error),
    /// Reading the response failed or it is too large.
    #[error(transparent)]
    Body(Box<dyn std::error::Error + Send + Sync>),
    #[error("the server responded with status {0}")]
    Status(http::StatusCode),
    #[error("the response is not an AdmissionReview: {0}")]
    NotReview(serde_json::Error),
}

/// POSTs the review to the webhook's URL (or its Service) over TLS verified against
/// its `caBundle`.
async fn post(api: &ApiServer, webhook: &Value, review: &Value) -> Result<Value, CallError> {
    let config = &webhook["clientConfig"];
    let (host, port, path, server_name) =
        match (config["url"].as_str(), config["service"].is_object()) {
            (Some(url), _) => {
                let rest = url.strip_prefix("https://").ok_or(CallError::NotHttps)?;
                let (authority, path) = rest
                    .split_once('/')
                    .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
                let (host, port) = match authority.rsplit_once(':') {
                    Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                        (h.trim_matches(|c| c == '[' || c == ']').to_owned(), p.parse::<u16>()?)
                    }
                    _ => (authority.to_owned(), 443),
                };
                (host.clone(), port, path, host)
            }
            (None, true) => {
                let service = &config["service"];
                let (ns, name) = (
                    service["namespace"].as_str().unwrap_or(""),
                    service["name"].as_str().unwrap_or(""),
                );
                let info = keelson_api::Registry::builtin()
                    .find("", "v1", "services")
                    .ok_or(CallError::ServicesNotRegistered)?;
                let place = crate::registry::Place { info, namespace: Some(ns), name };
                let (svc, _) =
                    api.objects.get(place).await.map_err(|e| CallError::Service(e.message))?;
                let ip = svc["spec"]["clusterIP"]
                    .as_str()
                    .filter(|ip| !ip.is_empty() && *ip != "None")
                    .ok_or(CallError::NoClusterIp)?;
                let port = service["port"].as_u64().unwrap_or(443) as u16;
                let path = service["path"].as_str().unwrap_or("/").to_owned();
                (ip.to_owned(), port, path, format!("{name}.{ns}.svc"))
            }
            _ => return Err(CallError::NoTarget),
        };
    let tls = client_tls(config["caBundle"].as_str())?;
    let server_name = rustls::pki_types::ServerName::try_from(server_name)?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|error| CallError::Dial { host: host.clone(), port, error })?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(CallError::Tls)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let body = serde_json::to_vec(review).map_err(CallError::Encode)?;
    let request = http::Request::post(path)
        .header(http::header::HOST, format!("{host}:{port}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(CallError::Body)?
        .to_bytes();
    if !status.is_success() {
        return Err(CallError::Status(status));
    }
    serde_json::from_slice(&bytes).map_err(CallError::NotReview)
}

/// A TLS client trusting only the webhook's CA bundle (or the system's roots when it
/// has none, which Keelson does not ship: such a webhook must name its CA).
fn client_tls(ca_bundle: Option<&str>) -> Result<Arc<rustls::ClientConfig>, CallError> {
    let pem = ca_bundle
        .map(|b| base64::engine::general_purpose::STANDARD.decode(b))
        .transpose()
        .map_err(CallError::CaBundleBase64)?
        .ok_or(CallError::NoCaBundle)?;
    let pem = String::from_utf8(pem).map_err(CallError::CaBundleUtf8)?;
    Ok(keelson_pki::anonymous_client_config(&pem)?)
}

//! ValidatingAdmissionPolicy (upstream's `plugin/policy/validating`): a policy's CEL
//! validations run for every write its `matchConstraints` and a binding's
//! `matchResources` select, with `object`, `oldObject`, `request`, `params` (the binding's
//! parameter object), `namespaceObject` and `variables` bound. A false validation denies
//! the write, warns or is only audited, as the binding's `validationActions` say; an
//! expression that cannot be evaluated follows the policy's `failurePolicy`.
//!
//! An `Audit` action annotates the request's audit event
//! (`validation.policy.admission.k8s.io/validation_failure`).
//!
//! Not yet: the `authorizer` variable, Kubernetes' own CEL libraries (quantity, URL, IP,
//! semver), type checking into `status`, the policy's own `auditAnnotations`.

use serde_json::{Map, Value, json};

use super::webhook::{namespace_labels, object_selector_matches, rules_match, selector_matches};
use super::{Attributes, Operation, Plugin, Server, Validating};
use crate::ApiServer;
use crate::status::{ApiError, ApiResult, Reason};

const POLICIES: &str = "/registry/validatingadmissionpolicies/";
const BINDINGS: &str = "/registry/validatingadmissionpolicybindings/";

/// ValidatingAdmissionPolicy; evaluates against the server's state, so it holds the
/// server. Deletes are checked with the object being deleted as `oldObject`.
pub struct ValidatingAdmissionPolicy(pub Server);

impl Plugin for ValidatingAdmissionPolicy {
    fn handles(&self, _: Operation) -> bool {
        true
    }

    fn validating(&self) -> Option<&dyn Validating> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl Validating for ValidatingAdmissionPolicy {
    async fn validate(&self, a: &Attributes<'_>, object: Option<&Value>) -> ApiResult<Vec<String>> {
        let api = self.0.get()?;
        if a.operation != Operation::Delete || a.old.is_some() {
            return validate(&api, a, object).await;
        }
        if none(&api).await {
            return Ok(Vec::new());
        }
        match super::deleted_object(&api, a).await {
            Some(old) => validate(&api, &Attributes { old: Some(&old), ..*a }, None).await,
            None => Ok(Vec::new()),
        }
    }
}

pub async fn validate(
    api: &ApiServer,
    a: &Attributes<'_>,
    object: Option<&Value>,
) -> ApiResult<Vec<String>> {
    if a.info.group == "admissionregistration.k8s.io" {
        return Ok(Vec::new());
    }
    let mut bindings = super::stored(api, BINDINGS).await;
    if bindings.is_empty() {
        return Ok(Vec::new());
    }
    bindings.sort_by(|x, y| x["metadata"]["name"].as_str().cmp(&y["metadata"]["name"].as_str()));
    let policies = super::stored(api, POLICIES).await;
    let namespace = namespace_labels(api, a, object).await;
    let namespace_object = namespace_object(api, a).await;
    let request = super::webhook::review("", a, object)["request"].clone();
    let mut warnings = Vec::new();
    for binding in &bindings {
        let policy_name = binding["spec"]["policyName"].as_str().unwrap_or("");
        let Some(policy) = policies.iter().find(|p| p["metadata"]["name"] == policy_name) else {
            continue;
        };
        let constraints = &policy["spec"]["matchConstraints"];
        if !selects(constraints, a, namespace.as_ref(), object, true) {
            continue;
        }
        let resources = &binding["spec"]["matchResources"];
        if resources.is_object() && !selects(resources, a, namespace.as_ref(), object, false) {
            continue;
        }
        let binding_name = binding["metadata"]["name"].as_str().unwrap_or("");
        let denied =
            |message: String, reason: &str| denial(a, policy_name, binding_name, message, reason);
        let fail_open = policy["spec"]["failurePolicy"] == "Ignore";
        let params = match params(api, policy, binding, a).await {
            Ok(params) => params,
            Err(why) if fail_open => {
                tracing::warn!(policy = policy_name, reason = %why, "policy skipped");
                continue;
            }
            Err(why) => return Err(denied(why.to_string(), "Invalid")),
        };
        let empty = Value::Null;
        let mut bound = vec![
            ("object", object.unwrap_or(&empty).clone()),
            ("oldObject", a.old.unwrap_or(&empty).clone()),
            ("request", request.clone()),
            ("params", params),
            ("namespaceObject", namespace_object.clone()),
        ];
        match evaluate(policy, &mut bound) {
            Ok(None) => {}
            Ok(Some((message, reason))) => {
                let actions = crate::meta::string_list(&binding["spec"]["validationActions"]);
                if actions.iter().any(|x| x == "Warn") {
                    warnings.push(format!(
                        "Validation failed for ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}': {message}"
                    ));
                }
                if actions.iter().any(|x| x == "Audit") {
                    let failure = json!([{
                        "message": message,
                        "policy": policy_name,
                        "binding": binding_name,
                        "validationActions": actions,
                    }]);
                    crate::audit::annotate(
                        "validation.policy.admission.k8s.io/validation_failure",
                        failure.to_string(),
                    );
                }
                if actions.iter().any(|x| x == "Deny") {
                    return Err(denied(message, &reason));
                }
            }
            Err(why) if fail_open => {
                tracing::warn!(policy = policy_name, reason = %why, "policy failed open")
            }
            Err(why) => return Err(denied(why.to_string(), "Invalid")),
        }
    }
    Ok(warnings)
}

/// Whether no policy is bound (deletes then skip reading the old object).
pub async fn none(api: &ApiServer) -> bool {
    super::stored(api, BINDINGS).await.is_empty()
}

/// Whether match constraints (or a binding's match resources, where no resource rules
/// means every resource the policy matches) select the write.
fn selects(
    constraints: &Value,
    a: &Attributes<'_>,
    namespace: Option<&Value>,
    object: Option<&Value>,
    rules_required: bool,
) -> bool {
    let rules = &constraints["resourceRules"];
    let unrestricted = !rules_required && rules.as_array().is_none_or(Vec::is_empty);
    (unrestricted || rules_match(rules, a))
        && !rules_match(&constraints["excludeResourceRules"], a)
        && selector_matches(&constraints["namespaceSelector"], namespace)
        && object_selector_matches(constraints, object, a.old)
}

async fn namespace_object(api: &ApiServer, a: &Attributes<'_>) -> Value {
    if a.namespace.is_empty() {
        return Value::Null;
    }
    let Some(info) = keelson_api::Registry::builtin().find("", "v1", "namespaces") else {
        return Value::Null;
    };
    let place = crate::registry::Place { info, namespace: None, name: a.namespace };
    api.objects.get(place).await.map(|(ns, _)| ns).unwrap_or(Value::Null)
}

/// Why a policy could not be applied to a write, in upstream's words.
#[derive(Debug, thiserror::Error)]
enum PolicyError {
    #[error(
        "failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"
    )]
    NoParams,
    /// The policy's `paramKind`, as JSON.
    #[error("failed to configure binding: the param kind {0} is not served")]
    ParamKindNotServed(Value),
    /// The params could not be read: the API error's message.
    #[error("{0}")]
    ParamsUnreadable(String),
    #[error(transparent)]
    Compile(crate::cel::Error),
    #[error("expression '{expression}' resulted in error: {error}")]
    Evaluation { expression: String, error: crate::cel::Error },
    #[error("expression '{expression}' resulted in a {value}, not a bool")]
    NotBool { expression: String, value: Value },
}

/// The binding's parameter object, when the policy takes one.
async fn params(
    api: &ApiServer,
    policy: &Value,
    binding: &Value,
    a: &Attributes<'_>,
) -> Result<Value, PolicyError> {
    let kind = &policy["spec"]["paramKind"];
    if !kind.is_object() {
        return Ok(Value::Null);
    }
    let reference = &binding["spec"]["paramRef"];
    let not_found = || {
        if reference["parameterNotFoundAction"] == "Allow" {
            Ok(Value::Null)
        } else {
            Err(PolicyError::NoParams)
        }
    };
    let (group, version) = match kind["apiVersion"].as_str().unwrap_or("").split_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (String::new(), kind["apiVersion"].as_str().unwrap_or("").to_owned()),
    };
    // The served registry: params are often custom resources.
    let registry = api.registry();
    let Some(info) = registry.resources().find(|r| {
        r.group == group && r.version == version && r.kind == kind["kind"].as_str().unwrap_or("")
    }) else {
        return Err(PolicyError::ParamKindNotServed(kind.clone()));
    };
    let name = reference["name"].as_str().unwrap_or("");
    let namespace = match reference["namespace"].as_str() {
        Some(ns) if !ns.is_empty() => Some(ns),
        _ if info.namespaced() => Some(a.namespace),
        _ => None,
    };
    let place = crate::registry::Place { info, namespace, name };
    match api.objects.get(place).await {
        Ok((found, _)) => Ok(found),
        Err(e) if e.code == http::StatusCode::NOT_FOUND => not_found(),
        Err(e) => Err(PolicyError::ParamsUnreadable(e.message)),
    }
}

/// Runs the policy's match conditions, variables and validations: `None` when the
/// write passes (or the conditions do not match), the first failure's message and
/// reason otherwise.
fn evaluate(
    policy: &Value,
    bound: &mut Vec<(&str, Value)>,
) -> Result<Option<(String, String)>, PolicyError> {
    let spec = &policy["spec"];
    let run = |source: &str, bound: &[(&str, Value)]| -> Result<Value, PolicyError> {
        let expression = crate::cel::compile(source).map_err(PolicyError::Compile)?;
        let variables: Vec<(&str, &Value)> = bound.iter().map(|(n, v)| (*n, v)).collect();
        expression
            .evaluate(&variables)
            .map_err(|error| PolicyError::Evaluation { expression: source.to_owned(), error })
    };
    let mut variables = Map::new();
    for variable in spec["variables"].as_array().into_iter().flatten() {
        let name = variable["name"].as_str().unwrap_or("");
        let mut scope = bound.clone();
        scope.push(("variables", Value::Object(variables.clone())));
        let value = run(variable["expression"].as_str().unwrap_or(""), &scope)?;
        variables.insert(name.to_owned(), value);
    }
    bound.push(("variables", Value::Object(variables)));
    for condition in spec["matchConditions"].as_array().into_iter().flatten() {
        if run(condition["expression"].as_str().unwrap_or(""), bound)? != json!(true) {
            return Ok(None);
        }
    }
    for validation in spec["validations"].as_array().into_iter().flatten() {
        let source = validation["expression"].as_str().unwrap_or("");
        match run(source, bound)? {
            Value::Bool(true) => continue,
            Value::Bool(false) => {}
            value => {
                return Err(PolicyError::NotBool { expression: source.to_owned(), value });
            }
        }
        let message =
            match (validation["message"].as_str(), validation["messageExpression"].as_str()) {
                (_, Some(expression)) if !expression.is_empty() => match run(expression, bound) {
                    Ok(Value::String(text)) if !text.trim().is_empty() => text,
                    _ => validation["message"]
                        .as_str()
                        .map_or_else(|| format!("failed expression: {source}"), str::to_owned),
                },
                (Some(text), _) if !text.is_empty() => text.to_owned(),
                _ => format!("failed expression: {source}"),
            };
        let reason =
            validation["reason"].as_str().filter(|r| !r.is_empty()).unwrap_or("Invalid").to_owned();
        return Ok(Some((message, reason)));
    }
    Ok(None)
}

/// The error a denying binding returns: upstream's message, with the status its
/// validation's `reason` names (Invalid 422 by default).
fn denial(
    a: &Attributes<'_>,
    policy: &str,
    binding: &str,
    message: String,
    reason: &str,
) -> ApiError {
    let message = format!(
        "ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {message}"
    );
    let (code, reason) = match reason {
        "Forbidden" => (http::StatusCode::FORBIDDEN, Reason::Forbidden),
        "Unauthorized" => (http::StatusCode::UNAUTHORIZED, Reason::Unauthorized),
        "RequestEntityTooLarge" => {
            (http::StatusCode::PAYLOAD_TOO_LARGE, Reason::RequestEntityTooLarge)
        }
        _ => (http::StatusCode::UNPROCESSABLE_ENTITY, Reason::Invalid),
    };
    let mut details = json!({ "name": a.name, "kind": a.info.plural, "causes": [{ "message": message, "field": "" }] });
    if !a.info.group.is_empty() {
        details["group"] = json!(a.info.group);
    }
    ApiError { code, reason, message, details: Some(details) }
}

//! The access reviews of `authorization.k8s.io/v1` (upstream's
//! `pkg/registry/authorization`): SubjectAccessReview (may X do Y), its Local and Self
//! forms, and SelfSubjectRulesReview (what may I do here) — what `kubectl auth can-i`
//! asks. They are answered, never stored.

use http::StatusCode;
use serde_json::{Value, json};

use super::{Attributes, Decision, node, rbac};
use crate::ApiServer;
use crate::request::Target;
use crate::request::{Request, User};
use crate::response::{Response, json_response};
use crate::status::{ApiError, ApiResult, Cause};

const GROUP: &str = "authorization.k8s.io";

/// Answers a review posted to `target`.
pub async fn answer(api: &ApiServer, req: &Request, target: &Target) -> ApiResult<Response> {
    let info = target.info;
    let body = req.json_body()?;
    crate::registry::check_type(info, &body)?;
    // Decoded through the review's type first: from here on `metadata` and `spec` are
    // objects of the right shape, whatever the client sent.
    let mut review = crate::registry::typed::decode_body(
        info.typed,
        info.group,
        info.version,
        info.kind,
        &body,
    )?;
    review["apiVersion"] = json!(info.api_version());
    review["kind"] = json!(info.kind);
    crate::meta::metadata_mut(&mut review).insert("creationTimestamp".into(), Value::Null);
    let status = match info.plural {
        "selfsubjectrulesreviews" => rules_review(api, &req.user, &review).await?,
        plural => {
            let user = match plural {
                "subjectaccessreviews" | "localsubjectaccessreviews" => {
                    subject(&review, info.kind)?
                }
                _ => {
                    // A self review is about the caller, as upstream fills it in.
                    review["spec"]["user"] = json!(req.user.name);
                    review["spec"]["groups"] = json!(req.user.groups);
                    req.user.clone()
                }
            };
            if plural == "localsubjectaccessreviews" {
                let namespace = target.namespace.as_deref().unwrap_or("");
                let asked =
                    review["spec"]["resourceAttributes"]["namespace"].as_str().unwrap_or("");
                if asked != namespace || review["spec"]["resourceAttributes"].is_null() {
                    return Err(invalid(
                        info.kind,
                        Cause::invalid(
                            "spec.resourceAttributes.namespace",
                            &json!(asked),
                            "must match metadata.namespace",
                        ),
                    ));
                }
                review["metadata"]["namespace"] = json!(namespace);
            }
            let attributes = attributes(&review["spec"], user, info.kind)?;
            match api.authorizer.decide(&attributes).await {
                Decision::Allow(reason) => with_reason(json!({ "allowed": true }), &reason),
                Decision::Deny(reason) => {
                    with_reason(json!({ "allowed": false, "denied": true }), &reason)
                }
                Decision::NoOpinion(reason) => with_reason(json!({ "allowed": false }), &reason),
            }
        }
    };
    review["status"] = status;
    Ok(json_response(StatusCode::CREATED, &review))
}

fn with_reason(mut status: Value, reason: &str) -> Value {
    if !reason.is_empty() {
        status["reason"] = json!(reason);
    }
    status
}

fn invalid(kind: &str, cause: Cause) -> ApiError {
    ApiError::invalid(GROUP, kind, "", vec![cause])
}

/// The user a SubjectAccessReview asks about.
fn subject(review: &Value, kind: &str) -> ApiResult<User> {
    let spec = &review["spec"];
    let name = spec["user"].as_str().unwrap_or("").to_owned();
    let groups = crate::meta::string_list(&spec["groups"]);
    if name.is_empty() && groups.is_empty() {
        return Err(invalid(
            kind,
            Cause::invalid(
                "spec.user",
                &json!(""),
                "at least one of user or group must be specified",
            ),
        ));
    }
    Ok(User { name, groups, ..Default::default() })
}

/// The question of a review's spec.
fn attributes(spec: &Value, user: User, kind: &str) -> ApiResult<Attributes> {
    let resource = &spec["resourceAttributes"];
    let non_resource = &spec["nonResourceAttributes"];
    let text = |v: &Value, f: &str| v[f].as_str().unwrap_or("").to_owned();
    match (resource.is_object(), non_resource.is_object()) {
        (true, false) => Ok(Attributes {
            user,
            verb: text(resource, "verb"),
            resource_request: true,
            namespace: text(resource, "namespace"),
            api_group: text(resource, "group"),
            api_version: text(resource, "version"),
            resource: text(resource, "resource"),
            subresource: text(resource, "subresource"),
            name: text(resource, "name"),
            path: String::new(),
        }),
        (false, true) => Ok(Attributes {
            user,
            verb: text(non_resource, "verb"),
            path: text(non_resource, "path"),
            ..Default::default()
        }),
        (true, true) => Err(invalid(
            kind,
            Cause::invalid(
                "spec.nonResourceAttributes",
                non_resource,
                "cannot be specified in combination with resourceAttributes",
            ),
        )),
        (false, false) => Err(invalid(
            kind,
            Cause::invalid(
                "spec.resourceAttributes",
                &json!("null"),
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ),
        )),
    }
}

/// SelfSubjectRulesReview: every rule the caller holds in `spec.namespace`.
async fn rules_review(api: &ApiServer, user: &User, review: &Value) -> ApiResult<Value> {
    let namespace = review["spec"]["namespace"].as_str().unwrap_or("");
    let (rules, errors, mut incomplete) = match api.authorizer.rbac_index().await {
        Some(index) => {
            let (rules, errors) = index.rules_for(user, namespace);
            (rules, errors, false)
        }
        None => (Vec::new(), vec!["the roles and bindings cannot be read".to_owned()], true),
    };
    if node::node_name(user).is_some() {
        // The Node authorizer's answer depends on the objects asked about.
        incomplete = true;
    }
    let (non_resource, resource): (Vec<&rbac::Rule>, Vec<&rbac::Rule>) =
        rules.iter().partition(|r| !r.non_resource_urls.is_empty());
    let resource: Vec<Value> = resource
        .iter()
        .map(|r| {
            let mut rule =
                json!({ "verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources });
            if !r.resource_names.is_empty() {
                rule["resourceNames"] = json!(r.resource_names);
            }
            rule
        })
        .collect();
    let non_resource: Vec<Value> = non_resource
        .iter()
        .map(|r| json!({ "verbs": r.verbs, "nonResourceURLs": r.non_resource_urls }))
        .collect();
    let mut status = json!({
        "resourceRules": resource,
        "nonResourceRules": non_resource,
        "incomplete": incomplete || !errors.is_empty(),
    });
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join(", "));
    }
    Ok(status)
}

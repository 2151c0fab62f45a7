//! Special verbs and subresources: what upstream's per-resource REST storage serves
//! beyond the generic store, each registered by (group, resource, subresource, verbs) in
//! [`HANDLERS`]. The HTTP layer (`rest.rs`) looks a request up here before the generic
//! verbs; `status` and `approval` are generic updates, prepared by the strategy.

use std::future::Future;
use std::pin::Pin;

use http::StatusCode;
use keelson_api::ResourceInfo;
use serde_json::{Value, json};

use crate::ApiServer;
use crate::answer::respond;
use crate::meta::metadata;
use crate::registry::{Place, decode, stores_as, typed};
use crate::request::{Request, Target};
use crate::response::{Response, json_response};
use crate::status::{ApiError, ApiResult};
use crate::storage::RETRIES;
use crate::{pods, scale};

type Answer<'a> = Pin<Box<dyn Future<Output = ApiResult<Response>> + Send + 'a>>;

/// Serves one request: the server, the request, what its path names, and whether it is
/// a dry run.
pub type Handler = for<'a> fn(&'a ApiServer, &'a Request, &'a Target, bool) -> Answer<'a>;

/// Where a handler applies: `"*"` as the resource means every resource that lists the
/// subresource (`scale`); `None` as the subresource means the resource itself (the
/// create-only kinds that are answered, never stored).
pub struct Registration {
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: Option<&'static str>,
    pub verbs: &'static [&'static str],
    pub handler: Handler,
}

/// Every special verb and subresource.
pub static HANDLERS: &[Registration] = &[
    Registration {
        group: "",
        resource: "pods",
        subresource: Some("binding"),
        verbs: &["create"],
        handler: |api, req, t, dry_run| {
            Box::pin(pods::bind(api, req, namespace(t), t.name.as_deref(), dry_run))
        },
    },
    Registration {
        group: "",
        resource: "bindings",
        subresource: None,
        verbs: &["create"],
        handler: |api, req, t, dry_run| Box::pin(pods::bind(api, req, namespace(t), None, dry_run)),
    },
    Registration {
        group: "",
        resource: "pods",
        subresource: Some("eviction"),
        verbs: &["create"],
        handler: |api, req, t, dry_run| {
            let name = t.name.as_deref().unwrap_or("");
            Box::pin(pods::evict(api, req, namespace(t), name, dry_run))
        },
    },
    Registration {
        group: "",
        resource: "pods",
        subresource: Some("log"),
        verbs: &["get"],
        handler: |api, req, t, _| Box::pin(pods::log(api, req, t)),
    },
    pod_connection("exec"),
    pod_connection("attach"),
    pod_connection("portforward"),
    Registration {
        group: "",
        resource: "serviceaccounts",
        subresource: Some("token"),
        verbs: &["create"],
        handler: |api, req, t, _| {
            Box::pin(crate::authn::serviceaccount::token_request(api, req, t))
        },
    },
    Registration {
        group: "",
        resource: "namespaces",
        subresource: Some("finalize"),
        verbs: &["update"],
        handler: |api, req, t, dry_run| Box::pin(finalize_namespace(api, req, t, dry_run)),
    },
    Registration {
        group: "*",
        resource: "*",
        subresource: Some("scale"),
        verbs: &["get"],
        handler: |api, _, t, _| Box::pin(scale::get(api, t)),
    },
    Registration {
        group: "*",
        resource: "*",
        subresource: Some("scale"),
        verbs: &["update", "patch"],
        handler: |api, req, t, dry_run| Box::pin(scale::write(api, req, t, dry_run)),
    },
    Registration {
        group: "",
        resource: "componentstatuses",
        subresource: None,
        verbs: &["get"],
        handler: |api, req, t, _| Box::pin(crate::componentstatus::get(api, req, t)),
    },
    Registration {
        group: "",
        resource: "componentstatuses",
        subresource: None,
        verbs: &["list"],
        handler: |api, req, t, _| Box::pin(crate::componentstatus::list(api, req, t)),
    },
    Registration {
        group: "authentication.k8s.io",
        resource: "tokenreviews",
        subresource: None,
        verbs: &["create"],
        handler: |api, req, _, _| Box::pin(crate::authn::serviceaccount::token_review(api, req)),
    },
    Registration {
        group: "authentication.k8s.io",
        resource: "selfsubjectreviews",
        subresource: None,
        verbs: &["create"],
        handler: |_, req, _, _| Box::pin(self_subject_review(req)),
    },
    Registration {
        group: "authorization.k8s.io",
        resource: "*",
        subresource: None,
        verbs: &["create"],
        handler: |api, req, t, _| Box::pin(crate::auth::reviews::answer(api, req, t)),
    },
];

/// A pod's streaming subresource (`GET` or `POST`, upstream's connect verbs), answered
/// up to the kubelet by `pods::connect`.
const fn pod_connection(subresource: &'static str) -> Registration {
    Registration {
        group: "",
        resource: "pods",
        subresource: Some(subresource),
        verbs: &["create", "get"],
        handler: |api, req, t, _| Box::pin(pods::connect(api, req, t)),
    }
}

/// The handler of `verb` on `info`'s resource (or its `subresource`), if one is
/// registered.
pub fn find(info: &ResourceInfo, subresource: Option<&str>, verb: &str) -> Option<Handler> {
    HANDLERS
        .iter()
        .find(|r| {
            (r.group == "*" || r.group == info.group)
                && (r.resource == "*" || r.resource == info.plural)
                && r.subresource == subresource
                && r.verbs.contains(&verb)
        })
        .map(|r| r.handler)
}

fn namespace(target: &Target) -> &str {
    target.namespace.as_deref().unwrap_or("")
}

/// `PUT /api/v1/namespaces/{name}/finalize`: replaces the namespace's `spec.finalizers`;
/// a namespace being deleted that has none left is removed.
async fn finalize_namespace(
    api: &ApiServer,
    req: &Request,
    target: &Target,
    dry_run: bool,
) -> ApiResult<Response> {
    let body = req.json_body()?;
    typed::check_shape(target.info, &body)?;
    let place = Place::of(target);
    for _ in 0..RETRIES {
        let stored = api.objects.get_raw(place).await?;
        let (mut namespace, revision) = (decode(target.info, &stored)?, stored.mod_revision);
        namespace["spec"]["finalizers"] = body["spec"]["finalizers"].clone();
        if namespace["spec"]["finalizers"].is_null() {
            namespace["spec"]["finalizers"] = json!([]);
        }
        let done = namespace["spec"]["finalizers"].as_array().is_none_or(Vec::is_empty)
            && metadata(&namespace)
                .get("finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
            && metadata(&namespace).contains_key("deletionTimestamp");
        if !done
            && stores_as(target.info, &stored, &namespace)?
            && crate::storage::changes_nothing(api, place, &stored).await?
        {
            // The finalizers it has already: nothing is written (upstream's no-op update).
            return Ok(respond(req, target.info, StatusCode::OK, &namespace));
        }
        let result = if done {
            api.objects.remove(place, revision, dry_run).await.map(|()| namespace)
        } else {
            api.objects.replace(place, namespace, revision, dry_run).await
        };
        match result {
            Ok(namespace) => return Ok(respond(req, target.info, StatusCode::OK, &namespace)),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::modified("", "namespaces", place.name))
}

/// `kubectl auth whoami`: who the server takes the caller for.
async fn self_subject_review(req: &Request) -> ApiResult<Response> {
    let user = &req.user;
    let mut info = json!({ "username": user.name, "groups": user.groups });
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": { "creationTimestamp": null },
            "status": { "userInfo": info },
        }),
    ))
}

#[cfg(test)]
mod tests {
    use keelson_api::Registry;

    use super::{HANDLERS, find};

    /// Every registration names a subresource (or a create-only resource) the registry
    /// serves with those verbs, so a handler is never unreachable by mistake.
    #[test]
    fn every_handler_serves_what_discovery_lists() {
        let resources: Vec<_> = Registry::builtin().resources().collect();
        for r in HANDLERS {
            let served = resources.iter().any(|info| {
                (r.group == "*" || r.group == info.group)
                    && (r.resource == "*" || r.resource == info.plural)
                    && r.verbs.iter().all(|verb| match r.subresource {
                        None => info.verbs.contains(verb),
                        Some(sub) => info
                            .subresources
                            .iter()
                            .any(|s| s.name == sub && s.verbs.contains(verb)),
                    })
            });
            assert!(served, "{}/{} {:?} {:?}", r.group, r.resource, r.subresource, r.verbs);
        }
        let pods = Registry::builtin().find("", "v1", "pods").expect("pods");
        assert!(find(pods, Some("eviction"), "create").is_some());
        assert!(find(pods, Some("eviction"), "get").is_none());
        assert!(find(pods, None, "create").is_none(), "pods are created by the generic store");
        let deployments = Registry::builtin().find("apps", "v1", "deployments").expect("apps");
        assert!(find(deployments, Some("scale"), "patch").is_some());
    }
}

//! CertificateSigningRequests: upstream's `pkg/registry/certificates/certificates`, with
//! its status and approval strategies.

use std::borrow::Cow;

use serde_json::{Value, json};

use crate::meta;
use crate::registry::selector::SelectableField;
use crate::registry::strategy::Strategy;
use crate::registry::validation::certificates;
use crate::request::User;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct CertificateSigningRequests;

impl Strategy for CertificateSigningRequests {
    fn field_selectors(&self) -> Cow<'static, [SelectableField]> {
        const FIELDS: &[SelectableField] = &[SelectableField::string("spec.signerName")];
        Cow::Borrowed(FIELDS)
    }

    /// Who asks for a certificate is who sent the request, never what the body claims.
    fn set_creator(&self, object: &mut Value, user: &User) {
        if !object["spec"].is_object() {
            object["spec"] = json!({});
        }
        let Some(spec) = object["spec"].as_object_mut() else {
            return;
        };
        for field in ["username", "uid", "groups", "extra"] {
            spec.remove(field);
        }
        spec.insert("username".into(), json!(user.name));
        if !user.uid.is_empty() {
            spec.insert("uid".into(), json!(user.uid));
        }
        if !user.groups.is_empty() {
            spec.insert("groups".into(), json!(user.groups));
        }
        if !user.extra.is_empty() {
            spec.insert("extra".into(), json!(user.extra));
        }
    }

    /// The spec never changes after create. `/status` keeps the `Approved` and `Denied`
    /// conditions as stored (when as many are sent), `/approval` keeps the certificate;
    /// conditions get their timestamps (upstream's CSR, status and approval strategies).
    fn prepare_update(&self, subresource: Option<&str>, old: &Value, new: &mut Value) {
        new["spec"] = old["spec"].clone();
        match subresource {
            Some("status") => {
                for kind in ["Approved", "Denied"] {
                    preserve_conditions(old, new, kind);
                }
            }
            Some("approval") => match old["status"].get("certificate") {
                Some(certificate) => new["status"]["certificate"] = certificate.clone(),
                None => {
                    if let Some(status) = new["status"].as_object_mut() {
                        status.remove("certificate");
                    }
                }
            },
            _ => return,
        }
        stamp_conditions(old, new);
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        certificates::create(object, causes);
    }

    /// Only the update rules: they include the object's own.
    fn validate_update(
        &self,
        old: &Value,
        new: &Value,
        subresource: Option<&str>,
        causes: &mut Vec<Cause>,
    ) {
        certificates::update(old, new, subresource, causes);
    }

    fn printer(&self) -> Printer {
        table::auth::CERTIFICATE_SIGNING_REQUEST
    }
}

/// Upstream's `preserveConditionInstances`: the stored instances of `kind` replace the
/// sent ones, if there are as many.
fn preserve_conditions(old: &Value, new: &mut Value, kind: &str) {
    let of_kind = |object: &Value| -> Vec<usize> {
        object["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .filter(|(_, c)| c["type"] == kind)
            .map(|(i, _)| i)
            .collect()
    };
    let (before, after) = (of_kind(old), of_kind(new));
    if before.len() != after.len() {
        return;
    }
    for (from, to) in before.into_iter().zip(after) {
        new["status"]["conditions"][to] = old["status"]["conditions"][from].clone();
    }
}

/// Upstream's `populateConditionTimestamps`: `lastUpdateTime` now when missing;
/// `lastTransitionTime` kept from a stored condition of the same type and status, else now.
fn stamp_conditions(old: &Value, new: &mut Value) {
    let now = meta::now();
    let stored = old["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let Some(conditions) = new["status"]["conditions"].as_array_mut() else {
        return;
    };
    for condition in conditions.iter_mut().filter(|c| c.is_object()) {
        if condition["lastUpdateTime"].as_str().is_none_or(str::is_empty) {
            condition["lastUpdateTime"] = json!(now);
        }
        if condition["lastTransitionTime"].as_str().is_none_or(str::is_empty) {
            let kept = stored.iter().find(|c| {
                c["type"] == condition["type"]
                    && c["status"] == condition["status"]
                    && c["lastTransitionTime"].as_str().is_some_and(|t| !t.is_empty())
            });
            condition["lastTransitionTime"] =
                kept.map_or_else(|| json!(now), |c| c["lastTransitionTime"].clone());
        }
    }
}

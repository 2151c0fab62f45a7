//! APIServices: upstream's `kube-aggregator/pkg/apis/apiregistration/validation`.

use serde_json::{Value, json};

use super::crd::dns1035_problem;
use crate::meta::dns_subdomain_problem;
use crate::status::Cause;

/// `ValidateAPIService`: the name is `<version>.<group>`, the group a subdomain (empty
/// only for the legacy `v1`), the version a DNS-1035 label, the priorities in range,
/// and a local APIService without TLS settings.
pub fn api_service(object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    let group = spec["group"].as_str().unwrap_or("");
    let version = spec["version"].as_str().unwrap_or("");
    let required = format!("{version}.{group}");
    let name = crate::meta::name(object).unwrap_or("");
    if !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '%'])
        && name != required
    {
        let detail = format!("must be `spec.version+\".\"+spec.group`: {required:?}");
        causes.push(Cause::invalid("metadata.name", &json!(name), &detail));
    }
    if group.is_empty() && version != "v1" {
        causes.push(Cause::required(
            "spec.group",
            "only v1 may have an empty group and it better be legacy kube",
        ));
    }
    if !group.is_empty()
        && let Some(problem) = dns_subdomain_problem(group)
    {
        causes.push(Cause::invalid("spec.group", &json!(group), &problem));
    }
    if let Some(problem) = dns1035_problem(version) {
        causes.push(Cause::invalid("spec.version", &json!(version), &problem));
    }
    let number = |field: &str| spec[field].as_i64().unwrap_or(0);
    let group_priority = number("groupPriorityMinimum");
    if group_priority <= 0 || group_priority > 20000 {
        let detail = "must be positive and less than 20000";
        causes.push(Cause::invalid("spec.groupPriorityMinimum", &json!(group_priority), detail));
    }
    let version_priority = number("versionPriority");
    if version_priority <= 0 || version_priority > 1000 {
        let detail = "must be positive and less than 1000";
        causes.push(Cause::invalid("spec.versionPriority", &json!(version_priority), detail));
    }
    let ca_bundle = spec["caBundle"].as_str().unwrap_or("");
    let insecure = spec["insecureSkipTLSVerify"].as_bool().unwrap_or(false);
    let service = &spec["service"];
    if !service.is_object() {
        if !ca_bundle.is_empty() {
            // The bundle is base64 on the wire; upstream counts the decoded bytes.
            let bytes = ca_bundle.len() / 4 * 3 - ca_bundle.matches('=').count();
            let shown = json!(format!("{bytes} bytes"));
            causes.push(Cause::invalid(
                "spec.caBundle",
                &shown,
                "local APIServices may not have a caBundle",
            ));
        }
        if insecure {
            causes.push(Cause::invalid(
                "spec.insecureSkipTLSVerify",
                &json!(true),
                "local APIServices may not have insecureSkipTLSVerify",
            ));
        }
        return;
    }
    for field in ["namespace", "name"] {
        if service[field].as_str().unwrap_or("").is_empty() {
            causes.push(Cause::required(&format!("spec.service.{field}"), ""));
        }
    }
    if insecure && !ca_bundle.is_empty() {
        causes.push(Cause::invalid(
            "spec.insecureSkipTLSVerify",
            &json!(true),
            "may not be true if caBundle is present",
        ));
    }
}

/// `ValidateAPIServiceStatus`: each condition's status is True, False or Unknown.
pub fn api_service_status(object: &Value, causes: &mut Vec<Cause>) {
    let conditions = object["status"]["conditions"].as_array().into_iter().flatten();
    for (i, condition) in conditions.enumerate() {
        let status = condition["status"].as_str().unwrap_or("");
        if !matches!(status, "True" | "False" | "Unknown") {
            causes.push(Cause::not_supported(
                &format!("status.conditions[{i}].status"),
                &format!("{status:?}"),
                &["True", "False", "Unknown"],
            ));
        }
    }
}

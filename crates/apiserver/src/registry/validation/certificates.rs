//! CertificateSigningRequests (upstream's `pkg/apis/certificates/validation`): the request
//! is a PEM `CERTIFICATE REQUEST` whose signature verifies, usages are known and unique,
//! the signer name is `domain/path` (and not `kubernetes.io/legacy-unknown` for new
//! objects), `expirationSeconds` is at least ten minutes, conditions are well formed with
//! `Approved` and `Denied` exclusive, and `status.certificate` holds only certificates.
//!
//! Updates may not remove `Approved`, `Denied` or `Failed`; only the `approval`
//! subresource may add or change `Approved`/`Denied`, and only `status` may set
//! `status.certificate`, once. What upstream tolerates in objects stored before a rule
//! existed it tolerates here too (the `allow…` options).

use base64::Engine as _;
use serde_json::Value;

use super::{duplicate, not_supported, required, too_long};
use crate::meta::{dns_label_problem, dns_subdomain_problem};
use crate::status::Cause;

/// Every usage `certificates.k8s.io/v1` knows, sorted (upstream's `allValidUsages`).
pub const USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

pub const LEGACY_UNKNOWN: &str = "kubernetes.io/legacy-unknown";

/// Condition types whose status may only be `True`.
const TRUE_ONLY: &[&str] = &["Approved", "Denied", "Failed"];

/// What an update may do, from the path it came by and the stored object.
#[derive(Default)]
struct Options {
    setting_approval: bool,
    setting_certificate: bool,
    both_approved_and_denied: bool,
    legacy_signer: bool,
    duplicate_conditions: bool,
    empty_condition_type: bool,
    arbitrary_certificate: bool,
    unknown_usages: bool,
    duplicate_usages: bool,
}

impl Options {
    /// Upstream's `getValidationOptions`; `old` is `None` on create.
    fn new(new: &Value, old: Option<&Value>, subresource: Option<&str>) -> Options {
        let Some(old) = old else {
            return Options::default();
        };
        let types: Vec<&str> =
            conditions(old).iter().map(|c| c["type"].as_str().unwrap_or("")).collect();
        let usages = string_list(&old["spec"]["usages"]);
        Options {
            setting_approval: subresource == Some("approval"),
            setting_certificate: subresource == Some("status"),
            both_approved_and_denied: types.contains(&"Approved") && types.contains(&"Denied"),
            legacy_signer: old["spec"]["signerName"] == LEGACY_UNKNOWN,
            duplicate_conditions: (1..types.len()).any(|i| types[..i].contains(&types[i])),
            empty_condition_type: types.contains(&""),
            arbitrary_certificate: certificate(new) == certificate(old)
                || keelson_pki::check_certificate_pem(&certificate(old)).is_err(),
            unknown_usages: usages.iter().any(|u| !USAGES.contains(u)),
            duplicate_usages: (1..usages.len()).any(|i| usages[..i].contains(&usages[i])),
        }
    }
}

/// Problems of a new CSR.
pub fn create(object: &Value, causes: &mut Vec<Cause>) {
    validate(object, &Options::new(object, None, None), causes);
}

/// Problems of an update from `old` to `new` through `subresource` (`None`, `approval`
/// or `status`).
pub fn update(old: &Value, new: &Value, subresource: Option<&str>, causes: &mut Vec<Cause>) {
    let options = Options::new(new, Some(old), subresource);
    validate(new, &options, causes);
    let count =
        |object: &Value, t: &str| conditions(object).iter().filter(|c| c["type"] == t).count();
    for t in ["Approved", "Denied", "Failed"] {
        if count(new, t) < count(old, t) {
            causes.push(Cause::forbidden(
                "status.conditions",
                &format!("updates may not remove a condition of type {t:?}"),
            ));
        }
    }
    if !options.setting_approval {
        for t in ["Approved", "Denied"] {
            let of_type = |object: &Value| -> Vec<Value> {
                conditions(object).iter().filter(|c| c["type"] == t).cloned().collect()
            };
            let (before, after) = (of_type(old), of_type(new));
            if after.len() > before.len() {
                causes.push(Cause::forbidden(
                    "status.conditions",
                    &format!("updates may not add a condition of type {t:?}"),
                ));
            } else if after.len() == before.len() && after != before {
                causes.push(Cause::forbidden(
                    "status.conditions",
                    &format!("updates may not modify a condition of type {t:?}"),
                ));
            }
        }
    }
    let (before, after) = (certificate(old), certificate(new));
    if before != after {
        if !options.setting_certificate {
            causes.push(Cause::forbidden(
                "status.certificate",
                "updates may not set certificate content",
            ));
        } else if !before.is_empty() {
            causes.push(Cause::forbidden(
                "status.certificate",
                "updates may not modify existing certificate content",
            ));
        }
    }
}

fn validate(csr: &Value, options: &Options, causes: &mut Vec<Cause>) {
    let spec = &csr["spec"];
    let request = decoded(&spec["request"]);
    if let Err(e) = keelson_pki::CertificateRequest::from_pem(&request) {
        causes.push(Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {}: {e}", go_bytes(&request)),
            field: "spec.request".into(),
        });
    }
    let usages = string_list(&spec["usages"]);
    if usages.is_empty() {
        causes.push(Cause::required("spec.usages", "usages must be provided"));
    }
    if !options.unknown_usages {
        for (i, usage) in usages.iter().enumerate() {
            if !USAGES.contains(usage) {
                not_supported(&format!("spec.usages[{i}]"), &Value::from(*usage), USAGES, causes);
            }
        }
    }
    if !options.duplicate_usages {
        for i in 1..usages.len() {
            if usages[..i].contains(&usages[i]) {
                duplicate(&format!("spec.usages[{i}]"), &Value::from(usages[i]), causes);
            }
        }
    }
    let signer = spec["signerName"].as_str().unwrap_or("");
    if !options.legacy_signer && signer == LEGACY_UNKNOWN {
        causes.push(Cause::invalid(
            "spec.signerName",
            &spec["signerName"],
            "the legacy signerName is not allowed via this API version",
        ));
    } else {
        signer_name("spec.signerName", signer, causes);
    }
    if let Some(seconds) = spec["expirationSeconds"].as_i64()
        && seconds < 600
    {
        causes.push(Cause::invalid(
            "spec.expirationSeconds",
            &spec["expirationSeconds"],
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    validate_conditions(csr, options, causes);
    if !options.arbitrary_certificate
        && let Err(problem) = keelson_pki::check_certificate_pem(&certificate(csr))
    {
        causes.push(Cause::invalid(
            "status.certificate",
            &Value::from("<certificate data>"),
            &problem.to_string(),
        ));
    }
}

fn validate_conditions(csr: &Value, options: &Options, causes: &mut Vec<Cause>) {
    let (mut approved, mut denied) = (false, false);
    let mut seen: Vec<&str> = Vec::new();
    for (i, condition) in conditions(csr).iter().enumerate() {
        let field = |name: &str| format!("status.conditions[{i}].{name}");
        let kind = condition["type"].as_str().unwrap_or("");
        if !options.empty_condition_type && kind.is_empty() {
            required(&field("type"), causes);
        }
        let allowed: &[&str] =
            if TRUE_ONLY.contains(&kind) { &["True"] } else { &["False", "True", "Unknown"] };
        match condition["status"].as_str().unwrap_or("") {
            "" => required(&field("status"), causes),
            s if !allowed.contains(&s) => {
                not_supported(&field("status"), &condition["status"], allowed, causes)
            }
            _ => {}
        }
        if !options.both_approved_and_denied {
            let clash = match kind {
                "Approved" => {
                    approved = true;
                    denied
                }
                "Denied" => {
                    denied = true;
                    approved
                }
                _ => false,
            };
            if clash {
                causes.push(Cause::invalid(
                    &field("type"),
                    &condition["type"],
                    "Approved and Denied conditions are mutually exclusive",
                ));
            }
        }
        if !options.duplicate_conditions {
            if seen.contains(&kind) {
                duplicate(&field("type"), &condition["type"], causes);
            }
            seen.push(kind);
        }
    }
}

/// Upstream's `ValidateCertificateSigningRequestSignerName`: `domain/path`, the domain
/// DNS labels with at least one dot, the path DNS subdomains separated by dots.
pub fn signer_name(field: &str, name: &str, causes: &mut Vec<Cause>) {
    if name.is_empty() {
        causes.push(Cause::required(field, "signerName must be provided"));
        return;
    }
    let segments: Vec<&str> = name.split('/').collect();
    let [domain, path] = segments.as_slice() else {
        causes.push(Cause::invalid(
            field,
            &Value::from(name),
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
        return;
    };
    if domain.len() > 253 {
        causes.push(too_long(field, 253));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    for label in &labels {
        if let Some(problem) = dns_label_problem(label) {
            let detail = format!("validating label {label:?}: {problem}");
            causes.push(Cause::invalid(field, &Value::from(*domain), &detail));
            break;
        }
    }
    if labels.len() < 2 {
        causes.push(Cause::invalid(
            field,
            &Value::from(*domain),
            "should be a domain with at least two segments separated by dots",
        ));
    }
    for label in path.split('.') {
        if let Some(problem) = dns_subdomain_problem(label) {
            let detail = format!("validating label {label:?}: {problem}");
            causes.push(Cause::invalid(field, &Value::from(*path), &detail));
            break;
        }
    }
    let max = 253 + (253 + 63 + 1) + 1;
    if name.len() > max {
        causes.push(too_long(field, max));
    }
}

/// The object's conditions (empty when there are none).
pub fn conditions(csr: &Value) -> &[Value] {
    csr["status"]["conditions"].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// The bytes of `status.certificate` (base64 on the wire).
pub fn certificate(csr: &Value) -> Vec<u8> {
    decoded(&csr["status"]["certificate"])
}

/// A `[]byte` field's bytes; absent or undecodable is empty (typed decoding refused bad
/// base64 already).
pub fn decoded(value: &Value) -> Vec<u8> {
    value
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .unwrap_or_default()
}

fn string_list(value: &Value) -> Vec<&str> {
    value.as_array().into_iter().flatten().map(|u| u.as_str().unwrap_or("")).collect()
}

/// A `[]byte` as Go's `%#v` prints it, which is how upstream shows a bad `spec.request`.
fn go_bytes(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "[]byte(nil)".into();
    }
    let shown: Vec<String> = bytes.iter().map(|b| format!("0x{b:x}")).collect();
    format!("[]byte{{{}}}", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request_pem() -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, "alice");
        params.serialize_request(&key).expect("csr").pem().expect("pem")
    }

    fn csr(signer: &str, usages: Value) -> Value {
        let request = base64::engine::general_purpose::STANDARD.encode(request_pem());
        json!({
            "metadata": { "name": "c" },
            "spec": { "request": request, "signerName": signer, "usages": usages },
        })
    }

    fn messages(causes: &[Cause]) -> Vec<String> {
        causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn a_good_request_passes() {
        let mut causes = Vec::new();
        create(&csr("example.com/x", json!(["client auth"])), &mut causes);
        assert!(causes.is_empty(), "{:?}", messages(&causes));
    }

    #[test]
    fn create_rules_have_upstreams_messages() {
        let mut causes = Vec::new();
        let mut object = csr(LEGACY_UNKNOWN, json!(["client auth", "flying", "client auth"]));
        object["spec"]["request"] = json!("YWJj"); // "abc"
        object["spec"]["expirationSeconds"] = json!(599);
        create(&object, &mut causes);
        assert_eq!(
            messages(&causes),
            [
                "spec.request: Invalid value: []byte{0x61, 0x62, 0x63}: PEM block type must be CERTIFICATE REQUEST",
                &format!(
                    "spec.usages[1]: Unsupported value: \"flying\": supported values: {}",
                    USAGES.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(", ")
                ),
                "spec.usages[2]: Duplicate value: \"client auth\"",
                "spec.signerName: Invalid value: \"kubernetes.io/legacy-unknown\": the legacy signerName is not allowed via this API version",
                "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 600 seconds (10 minutes)",
            ]
        );
        let mut causes = Vec::new();
        create(&csr("", json!([])), &mut causes);
        assert_eq!(
            messages(&causes),
            [
                "spec.usages: Required value: usages must be provided",
                "spec.signerName: Required value: signerName must be provided",
            ]
        );
    }

    #[test]
    fn signer_names_are_domain_and_path() {
        let check = |name: &str| {
            let mut causes = Vec::new();
            signer_name("spec.signerName", name, &mut causes);
            messages(&causes)
        };
        assert!(check("kubernetes.io/kube-apiserver-client").is_empty());
        assert!(check("example.com/ns.name").is_empty());
        assert_eq!(
            check("nodomain"),
            [
                "spec.signerName: Invalid value: \"nodomain\": must be a fully qualified domain and path of the form 'example.com/signer-name'"
            ]
        );
        assert_eq!(
            check("example/x"),
            [
                "spec.signerName: Invalid value: \"example\": should be a domain with at least two segments separated by dots"
            ]
        );
        assert_eq!(check("Example.com/x").len(), 1);
    }

    #[test]
    fn approval_and_certificate_follow_their_subresources() {
        let old = csr("example.com/x", json!(["client auth"]));
        let mut approved = old.clone();
        approved["status"] = json!({ "conditions": [{ "type": "Approved", "status": "True" }] });
        let check = |old: &Value, new: &Value, sub: Option<&str>| {
            let mut causes = Vec::new();
            update(old, new, sub, &mut causes);
            messages(&causes)
        };
        assert!(check(&old, &approved, Some("approval")).is_empty());
        assert_eq!(
            check(&old, &approved, Some("status")),
            ["status.conditions: Forbidden: updates may not add a condition of type \"Approved\""]
        );
        assert_eq!(
            check(&approved, &old, Some("approval")),
            [
                "status.conditions: Forbidden: updates may not remove a condition of type \"Approved\""
            ]
        );
        let mut both = approved.clone();
        both["status"]["conditions"]
            .as_array_mut()
            .expect("list")
            .push(json!({ "type": "Denied", "status": "True" }));
        assert_eq!(
            check(&approved, &both, Some("approval")),
            [
                "status.conditions[1].type: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive"
            ]
        );
        let mut false_approval = old.clone();
        false_approval["status"] =
            json!({ "conditions": [{ "type": "Approved", "status": "False" }] });
        assert_eq!(
            check(&old, &false_approval, Some("approval")),
            [
                "status.conditions[0].status: Unsupported value: \"False\": supported values: \"True\""
            ]
        );

        let mut issued = approved.clone();
        issued["status"]["certificate"] = json!("YWJj");
        assert_eq!(
            check(&approved, &issued, None),
            [
                "status.certificate: Invalid value: \"<certificate data>\": must contain at least one CERTIFICATE PEM block",
                "status.certificate: Forbidden: updates may not set certificate content",
            ]
        );
        assert_eq!(
            check(&approved, &issued, Some("status")),
            [
                "status.certificate: Invalid value: \"<certificate data>\": must contain at least one CERTIFICATE PEM block"
            ]
        );
    }
}

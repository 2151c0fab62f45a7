//! Device classes, resource claims, their templates and their status: upstream's
//! `pkg/apis/resource/validation` (ResourceSlices are in `resource_slice.rs`), with its
//! field paths and messages and its size limits.
//!
//! CEL selectors must parse, and may select from `device` only `driver`, `attributes`
//! and `capacity` (upstream's type check goes further: undeclared variables, a result
//! that is not a bool, the cost limit — not checked here). Not here either: the
//! `adminAccess` check that the claim's namespace is labelled
//! `resource.kubernetes.io/admin-access` (upstream's strategy reads the namespace).

use std::collections::HashSet;

use serde_json::{Value, json};

use super::{duplicate, not_supported, required, too_long, too_many};
use crate::meta::{
    dns_label_problem, dns_subdomain_problem, label_value_problem, qualified_name_problem,
};
use crate::status::Cause;

/// Most requests of a claim and results of an allocation (`AllocationResultsMaxSize`).
pub(super) const MAX_REQUESTS: usize = 32;
const MAX_CONSTRAINTS: usize = 32;
const MAX_CONFIGS: usize = 32;
const MAX_SELECTORS: usize = 32;
const MAX_FIRST_AVAILABLE: usize = 8;
const MAX_EXPRESSION: usize = 10 * 1024;
const MAX_OPAQUE_PARAMETERS: usize = 10 * 1024;
const MAX_RESERVED_FOR: usize = 256;
/// `DeviceMaxIDLength`: the name part of an attribute or capacity.
pub(super) const MAX_ID: usize = 32;

pub(super) fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

pub(super) fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// Upstream's `validateSlice`: each item, then the length.
pub(super) fn each(
    list: &Value,
    max: Option<usize>,
    path: &str,
    causes: &mut Vec<Cause>,
    mut check: impl FnMut(&Value, &str, &mut Vec<Cause>),
) {
    let list: Vec<&Value> = items(list).collect();
    for (i, item) in list.iter().enumerate() {
        check(item, &format!("{path}[{i}]"), causes);
    }
    if let Some(max) = max.filter(|m| list.len() > *m) {
        causes.push(too_many(path, list.len(), max));
    }
}

/// Upstream's `validateSet`: [`each`], then a `Duplicate` for each item whose key (at
/// `key_field` of the item, or the item itself) came before.
pub(super) fn each_unique(
    list: &Value,
    max: Option<usize>,
    key_field: Option<&str>,
    path: &str,
    causes: &mut Vec<Cause>,
    check: impl FnMut(&Value, &str, &mut Vec<Cause>),
) {
    each(list, max, path, causes, check);
    let mut seen = HashSet::new();
    for (i, item) in items(list).enumerate() {
        let (key, field) = match key_field {
            Some(f) => (&item[f], format!("{path}[{i}].{f}")),
            None => (item, format!("{path}[{i}]")),
        };
        if !seen.insert(key.to_string()) {
            duplicate(&field, key, causes);
        }
    }
}

/// `ValidateCSIDriverName`: what a driver may be called.
pub(super) fn driver_name(name: &str, field: &str, causes: &mut Vec<Cause>) {
    if name.is_empty() {
        required(field, causes);
    }
    if name.len() > 63 {
        causes.push(too_long(field, 63));
    }
    if let Some(problem) = dns_subdomain_problem(&name.to_lowercase()) {
        causes.push(Cause::invalid(field, &json!(name), &problem));
    }
}

/// A pool name: DNS subdomains separated by `/`, 253 bytes at most.
pub(super) fn pool_name(name: &str, field: &str, causes: &mut Vec<Cause>) {
    if name.is_empty() {
        return required(field, causes);
    }
    if name.len() > 253 {
        causes.push(too_long(field, 253));
    }
    for part in name.split('/') {
        if let Some(problem) = dns_subdomain_problem(part) {
            causes.push(Cause::invalid(field, &json!(part), &problem));
        }
    }
}

/// A DNS label (device, request and counter names).
pub(super) fn label(name: &str, field: &str, causes: &mut Vec<Cause>) {
    if let Some(problem) = dns_label_problem(name) {
        causes.push(Cause::invalid(field, &json!(name), &problem));
    }
}

/// A DNS subdomain (device class names, node names).
pub(super) fn subdomain(name: &str, field: &str, causes: &mut Vec<Cause>) {
    if let Some(problem) = dns_subdomain_problem(name) {
        causes.push(Cause::invalid(field, &json!(name), &problem));
    }
}

/// A label key (`metav1validation.ValidateLabelName`).
pub(super) fn label_name(key: &str, field: &str, causes: &mut Vec<Cause>) {
    if let Some(problem) = qualified_name_problem(key) {
        causes.push(Cause::invalid(field, &json!(key), &problem));
    }
}

pub(super) fn label_value(value: &str, field: &str, causes: &mut Vec<Cause>) {
    if label_value_problem(value) {
        causes.push(Cause::invalid(field, &json!(value), crate::meta::LABEL_VALUE_MESSAGE));
    }
}

/// An attribute or capacity name: a C identifier, optionally after a driver-like domain
/// and `/`.
pub(super) fn qualified_name(name: &str, field: &str, causes: &mut Vec<Cause>) {
    if name.is_empty() {
        return causes.push(Cause::required(field, "name required"));
    }
    let parts: Vec<&str> = name.split('/').collect();
    match parts[..] {
        [id] => c_identifier(id, field, causes),
        [domain, id] => {
            if domain.is_empty() {
                causes.push(Cause::required(field, "the domain must not be empty"));
            } else {
                driver_name(domain, field, causes);
            }
            if id.is_empty() {
                causes.push(Cause::required(field, "the name must not be empty"));
            } else {
                c_identifier(id, field, causes);
            }
        }
        _ => {}
    }
}

/// A qualified name that must have its domain.
fn fully_qualified_name(name: &str, field: &str, causes: &mut Vec<Cause>) {
    qualified_name(name, field, causes);
    if !name.is_empty() && !name.contains('/') {
        causes.push(Cause::invalid(field, &json!(name), "must include a domain"));
    }
}

fn c_identifier(id: &str, field: &str, causes: &mut Vec<Cause>) {
    if id.len() > MAX_ID {
        causes.push(too_long(field, MAX_ID));
    }
    let mut chars = id.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        causes.push(Cause::invalid(field, &json!(id), "a valid C identifier must start with alphabetic character or '_', followed by a string of alphanumeric characters or '_' (e.g. 'my_name',  or 'MY_NAME',  or 'MyName', regex used for validation is '[A-Za-z_][A-Za-z0-9_]*')"));
    }
}

/// The fields a CEL selector may read from `device` (its `allowMultipleAllocations` is
/// declared only with `DRAConsumableCapacity`, off).
const DEVICE_FIELDS: &[&str] = &["driver", "attributes", "capacity"];

fn cel_selector(selector: &Value, path: &str, causes: &mut Vec<Cause>) {
    let cel = &selector["cel"];
    if cel.is_null() {
        return required(&format!("{path}.cel"), causes);
    }
    let field = format!("{path}.cel.expression");
    let expression = str_of(&cel["expression"]);
    if expression.len() > MAX_EXPRESSION {
        return causes.push(too_long(&field, MAX_EXPRESSION));
    }
    match crate::cel::compile(expression) {
        Err(e) => causes.push(Cause::invalid(&field, &json!(expression), &e.to_string())),
        Ok(compiled) => {
            let mut undefined: Vec<String> = Vec::new();
            for path in compiled.selections(&["device"]) {
                if let Some(first) = path.first()
                    && !DEVICE_FIELDS.contains(&first.as_str())
                    && !undefined.contains(first)
                {
                    undefined.push(first.clone());
                }
            }
            for name in undefined {
                let detail = format!("compilation failed: ERROR: undefined field '{name}'");
                causes.push(Cause::invalid(&field, &json!(expression), &detail));
            }
        }
    }
}

fn selectors(list: &Value, path: &str, causes: &mut Vec<Cause>) {
    each(list, Some(MAX_SELECTORS), path, causes, cel_selector);
}

/// `validateRawExtension`: a JSON object, at most `max` bytes on create.
fn raw_object(value: &Value, field: &str, max: usize, causes: &mut Vec<Cause>) {
    match value {
        Value::Null => required(field, causes),
        Value::Object(_) if value.to_string().len() > max => causes.push(too_long(field, max)),
        Value::Object(_) => {}
        _ => causes.push(Cause::invalid(
            field,
            &json!("<value omitted>"),
            "must be a valid JSON object",
        )),
    }
}

/// A `DeviceConfiguration`: opaque parameters for a driver.
fn device_configuration(config: &Value, path: &str, causes: &mut Vec<Cause>) {
    let opaque = &config["opaque"];
    if opaque.is_null() {
        return required(&format!("{path}.opaque"), causes);
    }
    driver_name(str_of(&opaque["driver"]), &format!("{path}.opaque.driver"), causes);
    raw_object(
        &opaque["parameters"],
        &format!("{path}.opaque.parameters"),
        MAX_OPAQUE_PARAMETERS,
        causes,
    );
}

/// The names a claim's requests can be referred to by: `request` or `request/sub`.
struct RequestNames(Vec<(String, Vec<String>)>);

impl RequestNames {
    fn of(devices: &Value) -> Self {
        let names = items(&devices["requests"])
            .map(|r| {
                let subs = items(&r["firstAvailable"]).map(|s| str_of(&s["name"]).to_owned());
                (str_of(&r["name"]).to_owned(), subs.collect())
            })
            .collect();
        RequestNames(names)
    }

    fn has(&self, reference: &str) -> bool {
        let segments: Vec<&str> = reference.split('/').collect();
        let found = |name: &str| self.0.iter().find(|(n, _)| n == name);
        match segments[..] {
            [request] => found(request).is_some(),
            [request, sub] => found(request).is_some_and(|(_, subs)| subs.iter().any(|s| s == sub)),
            _ => false,
        }
    }

    /// `validateRequestNameRef`.
    fn check(&self, reference: &Value, field: &str, causes: &mut Vec<Cause>) {
        const MESSAGE: &str = "must be the name of a request in the claim or the name of a request and a subrequest separated by '/'";
        let reference = str_of(reference);
        let segments: Vec<&str> = reference.split('/').collect();
        if segments.len() > 2 {
            return causes.push(Cause::invalid(field, &json!(reference), MESSAGE));
        }
        for segment in segments {
            label(segment, field, causes);
        }
        if !self.has(reference) {
            causes.push(Cause::invalid(field, &json!(reference), MESSAGE));
        }
    }

    fn check_all(&self, list: &Value, path: &str, causes: &mut Vec<Cause>) {
        each_unique(list, Some(MAX_REQUESTS), None, path, causes, |r, f, c| self.check(r, f, c));
    }
}

/// A claim's spec (`ResourceClaimSpec`) at `path`.
pub fn claim_spec(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let devices = &spec["devices"];
    let path = format!("{path}.devices");
    let names = RequestNames::of(devices);
    each_unique(
        &devices["requests"],
        Some(MAX_REQUESTS),
        Some("name"),
        &format!("{path}.requests"),
        causes,
        request,
    );
    each(
        &devices["constraints"],
        Some(MAX_CONSTRAINTS),
        &format!("{path}.constraints"),
        causes,
        |c, p, causes| {
            names.check_all(&c["requests"], &format!("{p}.requests"), causes);
            if !c["matchAttribute"].is_null() {
                fully_qualified_name(
                    str_of(&c["matchAttribute"]),
                    &format!("{p}.matchAttribute"),
                    causes,
                );
            } else if !c["distinctAttribute"].is_null() {
                fully_qualified_name(
                    str_of(&c["distinctAttribute"]),
                    &format!("{p}.distinctAttribute"),
                    causes,
                );
            } else {
                required(&format!("{p}.matchAttribute"), causes);
            }
        },
    );
    each(
        &devices["config"],
        Some(MAX_CONFIGS),
        &format!("{path}.config"),
        causes,
        |c, p, causes| {
            names.check_all(&c["requests"], &format!("{p}.requests"), causes);
            device_configuration(c, p, causes);
        },
    );
}

fn request(request: &Value, path: &str, causes: &mut Vec<Cause>) {
    label(str_of(&request["name"]), &format!("{path}.name"), causes);
    let first_available = request["firstAvailable"].as_array().is_some_and(|l| !l.is_empty());
    let exactly = !request["exactly"].is_null();
    if first_available {
        let field = format!("{path}.firstAvailable");
        each_unique(
            &request["firstAvailable"],
            Some(MAX_FIRST_AVAILABLE),
            Some("name"),
            &field,
            causes,
            |sub, p, causes| {
                label(str_of(&sub["name"]), &format!("{p}.name"), causes);
                device_selection(sub, p, causes);
            },
        );
    }
    if exactly {
        device_selection(&request["exactly"], &format!("{path}.exactly"), causes);
    }
    match (first_available, exactly) {
        (false, false) => causes.push(Cause::required(
            path,
            "exactly one of `exactly` or `firstAvailable` is required",
        )),
        (true, true) => causes.push(Cause::invalid(
            path,
            &Value::Null,
            "exactly one of `exactly` or `firstAvailable` is required, but multiple fields are set",
        )),
        _ => {}
    }
}

/// What exact requests and subrequests share: class, selectors, allocation mode and
/// count, tolerations.
fn device_selection(request: &Value, path: &str, causes: &mut Vec<Cause>) {
    let class = str_of(&request["deviceClassName"]);
    let class_field = format!("{path}.deviceClassName");
    if class.is_empty() {
        required(&class_field, causes);
    } else {
        subdomain(class, &class_field, causes);
    }
    selectors(&request["selectors"], &format!("{path}.selectors"), causes);
    let count = request["count"].as_i64().unwrap_or(0);
    let count_field = format!("{path}.count");
    match str_of(&request["allocationMode"]) {
        "All" if count != 0 => causes.push(Cause::invalid(
            &count_field,
            &json!(count),
            "must not be specified when allocationMode is 'All'",
        )),
        "ExactCount" if count <= 0 => {
            causes.push(Cause::invalid(&count_field, &json!(count), "must be greater than zero"))
        }
        "All" | "ExactCount" => {}
        other => not_supported(
            &format!("{path}.allocationMode"),
            &json!(other),
            &["All", "ExactCount"],
            causes,
        ),
    }
    for (i, toleration) in items(&request["tolerations"]).enumerate() {
        device_toleration(toleration, &format!("{path}.tolerations[{i}]"), causes);
    }
}

/// The effects a device taint may have, as upstream lists them (sorted).
pub(super) const TAINT_EFFECTS: &[&str] = &["NoExecute", "NoSchedule"];

fn device_toleration(toleration: &Value, path: &str, causes: &mut Vec<Cause>) {
    let key = str_of(&toleration["key"]);
    if !key.is_empty() {
        label_name(key, &format!("{path}.key"), causes);
    }
    let value = str_of(&toleration["value"]);
    let value_field = format!("{path}.value");
    match str_of(&toleration["operator"]) {
        "Exists" if !value.is_empty() => causes.push(Cause::invalid(
            &value_field,
            &json!(value),
            "must be empty for operator `Exists`",
        )),
        "Exists" => {}
        "Equal" => label_value(value, &value_field, causes),
        "" => required(&format!("{path}.operator"), causes),
        other => {
            not_supported(&format!("{path}.operator"), &json!(other), &["Equal", "Exists"], causes)
        }
    }
    let effect = str_of(&toleration["effect"]);
    if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
        not_supported(&format!("{path}.effect"), &json!(effect), TAINT_EFFECTS, causes);
    }
}

/// A DeviceClass; `old` on update, where selectors and configs that did not change are
/// the stored ones.
pub fn device_class(class: &Value, _old: Option<&Value>, causes: &mut Vec<Cause>) {
    let spec = &class["spec"];
    selectors(&spec["selectors"], "spec.selectors", causes);
    each(&spec["config"], Some(MAX_CONFIGS), "spec.config", causes, device_configuration);
    if let Some(name) = spec["extendedResourceName"].as_str()
        && !is_extended_resource_name(name)
    {
        causes.push(Cause::invalid(
            "spec.extendedResourceName",
            &json!(name),
            "must be a valid extended resource name",
        ));
    }
}

/// Upstream's `IsExtendedResourceName`: a qualified name outside `kubernetes.io/`,
/// with a domain, that `requests.` can prefix.
fn is_extended_resource_name(name: &str) -> bool {
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    !native
        && !name.starts_with("requests.")
        && qualified_name_problem(&format!("requests.{name}")).is_none()
}

/// A ResourceClaimTemplate: its claim's metadata (labels and annotations only) and spec.
pub fn claim_template(template: &Value, causes: &mut Vec<Cause>) {
    let meta = &template["spec"]["metadata"];
    if let Some(map) = meta.as_object() {
        let mut embedded = Vec::new();
        crate::meta::validate_labels_and_annotations(&json!({ "metadata": meta }), &mut embedded);
        causes.extend(embedded.into_iter().map(|mut c| {
            c.field = format!("spec.{}", c.field);
            c
        }));
        for field in map.keys().filter(|k| !["labels", "annotations"].contains(&k.as_str())) {
            causes.push(Cause::forbidden(&format!("spec.metadata.{field}"), "cannot be set"));
        }
    }
    claim_spec(&template["spec"]["spec"], "spec.spec", causes);
}

/// An update of a claim's status (upstream's `validateResourceClaimStatusUpdate`).
pub fn claim_status_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    let status = &new["status"];
    let old_status = &old["status"];
    let names = RequestNames::of(&new["spec"]["devices"]);
    each_unique(
        &status["reservedFor"],
        Some(MAX_RESERVED_FOR),
        Some("uid"),
        "status.reservedFor",
        causes,
        |r, p, causes| {
            for field in ["resource", "name", "uid"] {
                if str_of(&r[field]).is_empty() {
                    required(&format!("{p}.{field}"), causes);
                }
            }
        },
    );
    let allocation = &status["allocation"];
    let allocated: Vec<(&Value, &Value, &Value)> = items(&allocation["devices"]["results"])
        .map(|r| (&r["driver"], &r["pool"], &r["device"]))
        .collect();
    each(&status["devices"], None, "status.devices", causes, |d, p, causes| {
        driver_name(str_of(&d["driver"]), &format!("{p}.driver"), causes);
        pool_name(str_of(&d["pool"]), &format!("{p}.pool"), causes);
        label(str_of(&d["device"]), &format!("{p}.device"), causes);
        if !allocated.contains(&(&d["driver"], &d["pool"], &d["device"])) {
            let id =
                format!("{}/{}/{}", str_of(&d["driver"]), str_of(&d["pool"]), str_of(&d["device"]));
            causes.push(Cause::invalid(p, &json!(id), "must be an allocated device in the claim"));
        }
        if items(&d["conditions"]).count() > 8 {
            causes.push(too_many(&format!("{p}.conditions"), items(&d["conditions"]).count(), 8));
        }
        if set(&d["data"]) {
            raw_object(&d["data"], &format!("{p}.data"), 10 * 1024, causes);
        }
        let network = &d["networkData"];
        if str_of(&network["interfaceName"]).len() > 256 {
            causes.push(too_long(&format!("{p}.networkData.interfaceName"), 256));
        }
        if str_of(&network["hardwareAddress"]).len() > 128 {
            causes.push(too_long(&format!("{p}.networkData.hardwareAddress"), 128));
        }
    });
    let mut seen = HashSet::new();
    for (i, d) in items(&status["devices"]).enumerate() {
        let id =
            format!("{}/{}/{}", str_of(&d["driver"]), str_of(&d["pool"]), str_of(&d["device"]));
        if !seen.insert(id.clone()) {
            duplicate(&format!("status.devices[{i}].deviceID"), &json!(id), causes);
        }
    }
    if items(&status["reservedFor"]).next().is_some() {
        if allocation.is_null() {
            causes.push(Cause::forbidden(
                "status.reservedFor",
                "may not be specified when `allocated` is not set",
            ));
        } else if !crate::meta::metadata(new).get("deletionTimestamp").is_none_or(Value::is_null) {
            let before: Vec<&Value> = items(&old_status["reservedFor"]).collect();
            if items(&status["reservedFor"]).any(|r| !before.contains(&r)) {
                causes.push(Cause::forbidden(
                    "status.reservedFor",
                    "new entries may not be added while `deallocationRequested` or `deletionTimestamp` are set",
                ));
            }
        }
    }
    match (&old_status["allocation"], allocation) {
        (Value::Null, Value::Null) => {}
        (Value::Null, allocation) => allocation_result(allocation, &names, causes),
        (_, Value::Null) => {}
        (before, after) => super::immutable(before, after, "status.allocation", causes),
    }
}

fn set(v: &Value) -> bool {
    !v.is_null()
}

/// A new allocation: its results name requests of the claim and allocated devices.
fn allocation_result(allocation: &Value, names: &RequestNames, causes: &mut Vec<Cause>) {
    let path = "status.allocation.devices";
    each(
        &allocation["devices"]["results"],
        Some(MAX_REQUESTS),
        &format!("{path}.results"),
        causes,
        |r, p, causes| {
            names.check(&r["request"], &format!("{p}.request"), causes);
            driver_name(str_of(&r["driver"]), &format!("{p}.driver"), causes);
            pool_name(str_of(&r["pool"]), &format!("{p}.pool"), causes);
            label(str_of(&r["device"]), &format!("{p}.device"), causes);
        },
    );
    each(
        &allocation["devices"]["config"],
        Some(2 * MAX_CONFIGS),
        &format!("{path}.config"),
        causes,
        |c, p, causes| {
            match str_of(&c["source"]) {
                "" => required(&format!("{p}.source"), causes),
                "FromClaim" | "FromClass" => {}
                other => not_supported(
                    &format!("{p}.source"),
                    &json!(other),
                    &["FromClaim", "FromClass"],
                    causes,
                ),
            }
            names.check_all(&c["requests"], &format!("{p}.requests"), causes);
            device_configuration(c, p, causes);
        },
    );
    if !allocation["nodeSelector"].is_null() {
        super::core::node_selector(
            &allocation["nodeSelector"],
            "status.allocation.nodeSelector",
            causes,
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{claim_spec, claim_status_update, device_class};

    fn messages(causes: Vec<crate::status::Cause>) -> Vec<String> {
        causes.into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    fn spec(devices: Value) -> Vec<String> {
        let mut causes = Vec::new();
        claim_spec(&json!({ "devices": devices }), "spec", &mut causes);
        messages(causes)
    }

    #[test]
    fn requests() {
        let found = spec(json!({ "requests": [
            { "name": "gpu", "exactly": { "deviceClassName": "", "allocationMode": "ExactCount", "count": 0 } },
            { "name": "gpu" },
            { "name": "Bad_Name", "exactly": { "deviceClassName": "c", "allocationMode": "All", "count": 2 },
              "firstAvailable": [{ "name": "a", "deviceClassName": "c", "allocationMode": "Some", "count": 1 }] }
        ], "constraints": [{ "requests": ["nope"] }] }));
        assert_eq!(
            found,
            [
                "spec.devices.requests[0].exactly.deviceClassName: Required value",
                "spec.devices.requests[0].exactly.count: Invalid value: 0: must be greater than zero",
                "spec.devices.requests[1]: Required value: exactly one of `exactly` or `firstAvailable` is required",
                "spec.devices.requests[2].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                "spec.devices.requests[2].firstAvailable[0].allocationMode: Unsupported value: \"Some\": supported values: \"All\", \"ExactCount\"",
                "spec.devices.requests[2].exactly.count: Invalid value: 2: must not be specified when allocationMode is 'All'",
                "spec.devices.requests[2]: Invalid value: null: exactly one of `exactly` or `firstAvailable` is required, but multiple fields are set",
                "spec.devices.requests[1].name: Duplicate value: \"gpu\"",
                "spec.devices.constraints[0].requests[0]: Invalid value: \"nope\": must be the name of a request in the claim or the name of a request and a subrequest separated by '/'",
                "spec.devices.constraints[0].matchAttribute: Required value",
            ]
        );
    }

    #[test]
    fn cel_selectors_must_compile() {
        let selector = |expression: &str| {
            spec(json!({ "requests": [{ "name": "r", "exactly": { "deviceClassName": "c",
                "allocationMode": "ExactCount", "count": 1, "selectors": [{ "cel": { "expression": expression } }] } }] }))
        };
        assert!(selector("device.driver == 'gpu.example.com' && device.attributes['gpu.example.com'].model == 'a100'").is_empty());
        let found = selector("device.driver ==");
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("spec.devices.requests[0].exactly.selectors[0].cel.expression: Invalid value: \"device.driver ==\": compilation failed: "), "{found:?}");
        assert_eq!(
            selector("device.vendor == 'x'"),
            [
                "spec.devices.requests[0].exactly.selectors[0].cel.expression: Invalid value: \"device.vendor == 'x'\": compilation failed: ERROR: undefined field 'vendor'"
            ]
        );
        let mut causes = Vec::new();
        device_class(
            &json!({ "spec": { "selectors": [{}], "config": [{ "opaque": { "driver": "d.example.com", "parameters": [1] } }] } }),
            None,
            &mut causes,
        );
        assert_eq!(
            messages(causes),
            [
                "spec.selectors[0].cel: Required value",
                "spec.config[0].opaque.parameters: Invalid value: \"<value omitted>\": must be a valid JSON object",
            ]
        );
    }

    #[test]
    fn status_rules() {
        let claim = json!({ "spec": { "devices": { "requests": [{ "name": "gpu", "exactly": { "deviceClassName": "c" } }] } }, "status": {} });
        let mut new = claim.clone();
        new["status"] = json!({ "reservedFor": [{ "resource": "pods", "name": "p", "uid": "1" }] });
        let mut causes = Vec::new();
        claim_status_update(&claim, &new, &mut causes);
        assert_eq!(
            messages(causes),
            ["status.reservedFor: Forbidden: may not be specified when `allocated` is not set"]
        );
        new["status"] = json!({ "allocation": { "devices": { "results": [
            { "request": "cpu", "driver": "d.example.com", "pool": "p", "device": "gpu-0" }] } } });
        let mut causes = Vec::new();
        claim_status_update(&claim, &new, &mut causes);
        assert_eq!(
            messages(causes),
            [
                "status.allocation.devices.results[0].request: Invalid value: \"cpu\": must be the name of a request in the claim or the name of a request and a subrequest separated by '/'"
            ]
        );
        let allocated = new.clone();
        new["status"]["allocation"]["devices"]["results"][0]["device"] = json!("gpu-1");
        let mut causes = Vec::new();
        claim_status_update(&allocated, &new, &mut causes);
        assert!(messages(causes)[0].starts_with("status.allocation: Invalid value: "));
    }
}

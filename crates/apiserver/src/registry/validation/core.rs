//! Services, ConfigMaps, Secrets and node selectors.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::{duplicate, not_supported, one_of, port_name_problem, port_number, required};
use crate::status::Cause;

/// ConfigMaps and Secrets hold at most 1 MiB.
const MAX_DATA_BYTES: usize = 1024 * 1024;

pub fn service(object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    let kind = spec["type"].as_str().unwrap_or("ClusterIP");
    one_of(
        &spec["type"],
        "spec.type",
        &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"],
        causes,
    );
    one_of(&spec["sessionAffinity"], "spec.sessionAffinity", &["ClientIP", "None"], causes);
    let ports = spec["ports"].as_array().map_or(&[][..], Vec::as_slice);
    let headless = spec["clusterIP"] == "None";
    if ports.is_empty() && kind != "ExternalName" && !headless {
        required("spec.ports", causes);
    }
    if kind == "ExternalName" && spec["externalName"].as_str().is_none_or(str::is_empty) {
        required("spec.externalName", causes);
    }
    let mut names = HashSet::new();
    let mut port_protocols = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        match port["name"].as_str() {
            None | Some("") if ports.len() > 1 => required(&format!("{field}.name"), causes),
            Some(name) if !name.is_empty() => {
                if let Some(problem) = crate::meta::dns_label_problem(name) {
                    causes.push(Cause::invalid(&format!("{field}.name"), &port["name"], &problem));
                } else if !names.insert(name.to_owned()) {
                    duplicate(&format!("{field}.name"), &port["name"], causes);
                }
            }
            _ => {}
        }
        port_number(&port["port"], &format!("{field}.port"), causes);
        let protocol = port["protocol"].as_str().unwrap_or("TCP");
        if !["TCP", "UDP", "SCTP"].contains(&protocol) {
            not_supported(
                &format!("{field}.protocol"),
                &port["protocol"],
                &["SCTP", "TCP", "UDP"],
                causes,
            );
        }
        if !port_protocols.insert((port["port"].as_i64(), protocol.to_owned())) {
            duplicate(&field, &json!({ "port": port["port"], "protocol": protocol }), causes);
        }
        match &port["targetPort"] {
            Value::Number(_) => {
                port_number(&port["targetPort"], &format!("{field}.targetPort"), causes)
            }
            Value::String(name) => {
                if let Some(problem) = port_name_problem(name) {
                    causes.push(Cause::invalid(
                        &format!("{field}.targetPort"),
                        &port["targetPort"],
                        problem,
                    ));
                }
            }
            _ => {}
        }
        if !port["nodePort"].is_null() && kind != "NodePort" && kind != "LoadBalancer" {
            causes.push(Cause::forbidden(
                &format!("{field}.nodePort"),
                &format!("may not be used when `type` is '{kind}'"),
            ));
        }
    }
}

/// Keys of `data`/`binaryData`/`stringData`: `[-._a-zA-Z0-9]+`, no more than 253 characters.
fn keys(object: &Value, fields: &[&str], causes: &mut Vec<Cause>) {
    let mut seen = HashSet::new();
    let mut total = 0;
    for field in fields {
        for (key, value) in object[*field].as_object().into_iter().flatten() {
            let ok = !key.is_empty()
                && key.len() <= 253
                && key.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
            if !ok || key == "." || key == ".." {
                causes.push(Cause::invalid(&format!("{field}[{key}]"), &json!(key), "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
            }
            if !seen.insert(key.clone()) && *field != "stringData" {
                duplicate(&format!("{field}[{key}]"), &json!(key), causes);
            }
            total += value.as_str().map_or(0, str::len);
        }
    }
    if total > MAX_DATA_BYTES {
        causes.push(Cause {
            reason: "FieldValueTooLong",
            message: format!("Too long: may not be more than {MAX_DATA_BYTES} bytes"),
            field: String::new(),
        });
    }
}

pub fn configmap(object: &Value, causes: &mut Vec<Cause>) {
    keys(object, &["data", "binaryData"], causes);
}

pub fn secret(object: &Value, causes: &mut Vec<Cause>) {
    keys(object, &["data", "stringData"], causes);
    let data = &object["data"];
    let has = |key: &str| data.get(key).is_some() || object["stringData"].get(key).is_some();
    match object["type"].as_str().unwrap_or("Opaque") {
        "kubernetes.io/service-account-token"
            if object
                .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                .is_none_or(|v| v.as_str().is_none_or(str::is_empty)) =>
        {
            required("metadata.annotations[kubernetes.io/service-account.name]", causes)
        }
        "kubernetes.io/dockercfg" if !has(".dockercfg") => required("data[.dockercfg]", causes),
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
            required("data[.dockerconfigjson]", causes)
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            required("data[username]", causes)
        }
        "kubernetes.io/ssh-auth" if !has("ssh-privatekey") => {
            required("data[ssh-privatekey]", causes)
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    required(&format!("data[{key}]"), causes);
                }
            }
        }
        _ => {}
    }
}

/// An `immutable` ConfigMap or Secret keeps its data and stays immutable.
pub fn immutable_data(plural: &str, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    if old["immutable"] != true {
        return;
    }
    if new["immutable"] != true {
        causes.push(Cause::forbidden("immutable", "field is immutable when `immutable` is set"));
    }
    let fields: &[&str] = if plural == "secrets" { &["data"] } else { &["data", "binaryData"] };
    for field in fields {
        let empty = json!({});
        let (before, after) =
            (old.get(*field).unwrap_or(&empty), new.get(*field).unwrap_or(&empty));
        if before != after {
            causes.push(Cause::forbidden(field, "field is immutable when `immutable` is set"));
        }
    }
}

/// Upstream's `ValidateNodeSelector` (label values checked): at least one term, each
/// requirement's operator and values, label keys, and field requirements only on
/// `metadata.name` with one node name.
pub fn node_selector(selector: &Value, path: &str, causes: &mut Vec<Cause>) {
    let terms_field = format!("{path}.nodeSelectorTerms");
    let terms: Vec<&Value> =
        selector["nodeSelectorTerms"].as_array().into_iter().flatten().collect();
    if terms.is_empty() {
        causes.push(Cause::required(&terms_field, "must have at least one node selector term"));
        return;
    }
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    for (i, term) in terms.iter().enumerate() {
        for (j, rq) in list(&term["matchExpressions"]).iter().enumerate() {
            let field = format!("{terms_field}[{i}].matchExpressions[{j}]");
            let values = list(&rq["values"]);
            let values_field = format!("{field}.values");
            match rq["operator"].as_str().unwrap_or("") {
                "In" | "NotIn" if values.is_empty() => causes.push(Cause::required(
                    &values_field,
                    "must be specified when `operator` is 'In' or 'NotIn'",
                )),
                "Exists" | "DoesNotExist" if !values.is_empty() => causes.push(Cause::forbidden(
                    &values_field,
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                )),
                "Gt" | "Lt" if values.len() != 1 => causes.push(Cause::required(
                    &values_field,
                    "must be specified single value when `operator` is 'Lt' or 'Gt'",
                )),
                "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
                _ => causes.push(Cause::invalid(
                    &format!("{field}.operator"),
                    &rq["operator"],
                    "not a valid selector operator",
                )),
            }
            let key = rq["key"].as_str().unwrap_or("");
            if let Some(problem) = crate::meta::qualified_name_problem(key) {
                causes.push(Cause::invalid(&format!("{field}.key"), &json!(key), &problem));
            }
            for (k, value) in values.iter().enumerate() {
                if crate::meta::label_value_problem(value.as_str().unwrap_or("")) {
                    let at = format!("{values_field}[{k}]");
                    causes.push(Cause::invalid(&at, value, crate::meta::LABEL_VALUE_MESSAGE));
                }
            }
        }
        for (j, rq) in list(&term["matchFields"]).iter().enumerate() {
            let field = format!("{terms_field}[{i}].matchFields[{j}]");
            let values = list(&rq["values"]);
            match rq["operator"].as_str().unwrap_or("") {
                "In" | "NotIn" if values.len() != 1 => causes.push(Cause::required(
                    &format!("{field}.values"),
                    "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                )),
                "In" | "NotIn" => {}
                _ => causes.push(Cause::invalid(
                    &format!("{field}.operator"),
                    &rq["operator"],
                    "not a valid selector operator",
                )),
            }
            if rq["key"] != "metadata.name" {
                let detail = "not a valid field selector key";
                causes.push(Cause::invalid(&format!("{field}.key"), &rq["key"], detail));
                continue;
            }
            for (k, value) in values.iter().enumerate() {
                if let Some(problem) =
                    crate::meta::dns_subdomain_problem(value.as_str().unwrap_or(""))
                {
                    causes.push(Cause::invalid(&format!("{field}.values[{k}]"), value, &problem));
                }
            }
        }
    }
}

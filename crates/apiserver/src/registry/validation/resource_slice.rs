//! ResourceSlices: upstream's `validateResourceSliceSpec` and `validateDevice` — the
//! driver, the pool, exactly one of `nodeName`, `nodeSelector`, `allNodes` and
//! `perDeviceNodeSelection`, the devices (unique names, attributes with exactly one
//! value, at most 32 attributes and capacities, counters and per-device node
//! selection), and the driver, pool name and node name never changing.

use serde_json::{Value, json};

use super::resource::{
    MAX_ID, TAINT_EFFECTS, driver_name, each, each_unique, items, label, label_name, label_value,
    pool_name, qualified_name, str_of, subdomain,
};
use super::{immutable, not_supported, required, too_long};
use crate::status::Cause;

const MAX_DEVICES: usize = 128;
const MAX_ATTRIBUTES_AND_CAPACITIES: usize = 32;
const MAX_COUNTERS_PER_DEVICE: usize = 32;
const MAX_DEVICE_COUNTERS_PER_SLICE: usize = 1024;
const MAX_SHARED_COUNTERS: usize = 32;
const MAX_TAINTS: usize = 4;
const MAX_ATTRIBUTE_VALUE: usize = 64;

/// A slice; `old` on update.
pub fn slice(slice: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let spec = &slice["spec"];
    driver_name(str_of(&spec["driver"]), "spec.driver", causes);
    let pool = &spec["pool"];
    pool_name(str_of(&pool["name"]), "spec.pool.name", causes);
    let count = pool["resourceSliceCount"].as_i64().unwrap_or(0);
    if count <= 0 {
        causes.push(Cause::invalid(
            "spec.pool.resourceSliceCount",
            &json!(count),
            "must be greater than zero",
        ));
    }
    let generation = pool["generation"].as_i64().unwrap_or(0);
    if generation < 0 {
        causes.push(Cause::invalid(
            "spec.pool.generation",
            &json!(generation),
            "must be greater than or equal to zero",
        ));
    }
    if let Some(old) = old {
        let (before, after) = (&old["spec"], spec);
        immutable(&before["pool"]["name"], &after["pool"]["name"], "spec.pool.name", causes);
        immutable(&before["driver"], &after["driver"], "spec.driver", causes);
        immutable(&before["nodeName"], &after["nodeName"], "spec.nodeName", causes);
    }
    let mut set_fields = Vec::new();
    if let Some(node) = spec["nodeName"].as_str() {
        if node.is_empty() {
            causes.push(Cause::invalid(
                "spec.nodeName",
                &json!(node),
                "must be either unset or set to a non-empty string",
            ));
        } else {
            set_fields.push("`nodeName`");
            subdomain(node, "spec.nodeName", causes);
        }
    }
    if !spec["nodeSelector"].is_null() {
        set_fields.push("`nodeSelector`");
        super::core::node_selector(&spec["nodeSelector"], "spec.nodeSelector", causes);
        let terms = &spec["nodeSelector"]["nodeSelectorTerms"];
        if items(terms).count() != 1 {
            causes.push(Cause::invalid(
                "spec.nodeSelector.nodeSelectorTerms",
                terms,
                "must have exactly one node selector term",
            ));
        }
    }
    for (field, shown) in
        [("allNodes", "`allNodes`"), ("perDeviceNodeSelection", "`perDeviceNodeSelection`")]
    {
        match spec[field].as_bool() {
            Some(true) => set_fields.push(shown),
            Some(false) => causes.push(Cause::invalid(
                &format!("spec.{field}"),
                &json!(false),
                "must be either unset or set to true",
            )),
            None => {}
        }
    }
    const ONE_OF: &str = "exactly one of `nodeName`, `nodeSelector`, `allNodes`, `perDeviceNodeSelection` is required";
    match set_fields.len() {
        0 => causes.push(Cause::required("spec", ONE_OF)),
        1 => {}
        _ => causes.push(Cause::invalid(
            "spec",
            &json!(format!("{{{}}}", set_fields.join(", "))),
            &format!("{ONE_OF}, but multiple fields are set"),
        )),
    }
    let per_device = spec["perDeviceNodeSelection"] == true;
    let shared = &spec["sharedCounters"];
    each_unique(
        &spec["devices"],
        Some(MAX_DEVICES),
        Some("name"),
        "spec.devices",
        causes,
        |d, p, causes| {
            device(d, p, shared, per_device, causes);
        },
    );
    let device_counters: usize = items(&spec["devices"])
        .flat_map(|d| items(&d["consumesCounters"]))
        .map(|c| c["counters"].as_object().map_or(0, |m| m.len()))
        .sum();
    if device_counters > MAX_DEVICE_COUNTERS_PER_SLICE {
        causes.push(Cause::invalid(
            "spec.devices",
            &json!(device_counters),
            &format!("the total number of counters in devices must not exceed {MAX_DEVICE_COUNTERS_PER_SLICE}"),
        ));
    }
    let shared_counters: usize =
        items(shared).map(|s| s["counters"].as_object().map_or(0, |m| m.len())).sum();
    if shared_counters > MAX_SHARED_COUNTERS {
        causes.push(Cause::invalid(
            "spec.sharedCounters",
            &json!(shared_counters),
            &format!("the total number of shared counters must not exceed {MAX_SHARED_COUNTERS}"),
        ));
    }
    each_unique(shared, None, Some("name"), "spec.sharedCounters", causes, |set, p, causes| {
        let name = str_of(&set["name"]);
        if name.is_empty() {
            required(&format!("{p}.name"), causes);
        } else {
            label(name, &format!("{p}.name"), causes);
        }
        counters(&set["counters"], &format!("{p}.counters"), causes);
    });
}

/// A counter map: present, names DNS labels.
fn counters(map: &Value, path: &str, causes: &mut Vec<Cause>) {
    match map.as_object().filter(|m| !m.is_empty()) {
        None => required(path, causes),
        Some(map) => {
            for name in map.keys() {
                label(name, &format!("{path}[{name}]"), causes);
            }
        }
    }
}

fn device(device: &Value, path: &str, shared: &Value, per_device: bool, causes: &mut Vec<Cause>) {
    label(str_of(&device["name"]), &format!("{path}.name"), causes);
    let attributes = device["attributes"].as_object();
    let capacity = device["capacity"].as_object();
    let total = attributes.map_or(0, |m| m.len()) + capacity.map_or(0, |m| m.len());
    if total > MAX_ATTRIBUTES_AND_CAPACITIES {
        causes.push(Cause::invalid(
            path,
            &json!(total),
            &format!("the total number of attributes and capacities must not exceed {MAX_ATTRIBUTES_AND_CAPACITIES}"),
        ));
    }
    for (name, attribute) in attributes.into_iter().flatten() {
        let field = format!("{path}.attributes[{}]", truncated(name));
        qualified_name(name, &field, causes);
        device_attribute(attribute, &field, causes);
    }
    let multiple = device["allowMultipleAllocations"] == true;
    for (name, value) in capacity.into_iter().flatten() {
        let field = format!("{path}.capacity[{}]", truncated(name));
        qualified_name(name, &field, causes);
        if !multiple && !value["requestPolicy"].is_null() {
            causes.push(Cause::forbidden(
                &format!("{field}.requestPolicy"),
                "allowMultipleAllocations must be true",
            ));
        }
    }
    each(&device["taints"], Some(MAX_TAINTS), &format!("{path}.taints"), causes, |t, p, causes| {
        label_name(str_of(&t["key"]), &format!("{p}.key"), causes);
        let value = str_of(&t["value"]);
        if !value.is_empty() {
            label_value(value, &format!("{p}.value"), causes);
        }
        match str_of(&t["effect"]) {
            "" => required(&format!("{p}.effect"), causes),
            e if TAINT_EFFECTS.contains(&e) => {}
            e => not_supported(&format!("{p}.effect"), &json!(e), TAINT_EFFECTS, causes),
        }
    });
    let consumes = &device["consumesCounters"];
    each_unique(
        consumes,
        None,
        Some("counterSet"),
        &format!("{path}.consumesCounters"),
        causes,
        |c, p, causes| {
            if str_of(&c["counterSet"]).is_empty() {
                required(&format!("{p}.counterSet"), causes);
            }
            counters(&c["counters"], &format!("{p}.counters"), causes);
        },
    );
    let used: usize =
        items(consumes).map(|c| c["counters"].as_object().map_or(0, |m| m.len())).sum();
    if used > MAX_COUNTERS_PER_DEVICE {
        causes.push(Cause::invalid(
            path,
            &json!(used),
            &format!("the total number of counters must not exceed {MAX_COUNTERS_PER_DEVICE}"),
        ));
    }
    for (i, consumption) in items(consumes).enumerate() {
        let set = items(shared).find(|s| s["name"] == consumption["counterSet"]);
        let field = format!("{path}.consumesCounters[{i}]");
        match set {
            Some(set) => {
                for name in consumption["counters"].as_object().into_iter().flat_map(|m| m.keys()) {
                    if set["counters"].get(name).is_none() {
                        causes.push(Cause::invalid(
                            &format!("{field}.counters"),
                            &json!(name),
                            "must reference a counter defined in the ResourceSlice sharedCounters",
                        ));
                    }
                }
            }
            None => causes.push(Cause::invalid(
                &format!("{field}.counterSet"),
                &consumption["counterSet"],
                "must reference a counterSet defined in the ResourceSlice sharedCounters",
            )),
        }
    }
    device_nodes(device, path, per_device, causes);
    binding_conditions(device, path, causes);
}

/// A device's own node selection, allowed only with `perDeviceNodeSelection`.
fn device_nodes(device: &Value, path: &str, per_device: bool, causes: &mut Vec<Cause>) {
    const ONE_OF: &str = "exactly one of `nodeName`, `nodeSelector`, or `allNodes` is required when `perDeviceNodeSelection` is set to true in the ResourceSlice spec";
    let any = ["nodeName", "nodeSelector", "allNodes"].iter().any(|f| !device[*f].is_null());
    if !per_device {
        if any {
            causes.push(Cause::invalid(path, &Value::Null, "`nodeName`, `nodeSelector` and `allNodes` can only be set if `perDeviceNodeSelection` is set to true in the ResourceSlice spec"));
        }
        return;
    }
    let mut set_fields = Vec::new();
    if let Some(node) = device["nodeName"].as_str() {
        if node.is_empty() {
            causes.push(Cause::invalid(
                &format!("{path}.nodeName"),
                &json!(node),
                "must not be empty",
            ));
        } else {
            set_fields.push("`nodeName`");
            subdomain(node, &format!("{path}.nodeName"), causes);
        }
    }
    if !device["nodeSelector"].is_null() {
        set_fields.push("`nodeSelector`");
        super::core::node_selector(
            &device["nodeSelector"],
            &format!("{path}.nodeSelector"),
            causes,
        );
    }
    match device["allNodes"].as_bool() {
        Some(true) => set_fields.push("`allNodes`"),
        Some(false) => causes.push(Cause::invalid(
            &format!("{path}.allNodes"),
            &json!(false),
            "must be either unset or set to true",
        )),
        None => {}
    }
    match set_fields.len() {
        0 => causes.push(Cause::required(path, ONE_OF)),
        1 => {}
        _ => causes.push(Cause::invalid(
            path,
            &json!(format!("{{{}}}", set_fields.join(", "))),
            ONE_OF,
        )),
    }
}

/// `validateDeviceBindingParameters`.
fn binding_conditions(device: &Value, path: &str, causes: &mut Vec<Cause>) {
    let conditions = &device["bindingConditions"];
    let failures = &device["bindingFailureConditions"];
    for (list, field) in [(conditions, "bindingConditions"), (failures, "bindingFailureConditions")]
    {
        each(list, Some(4), &format!("{path}.{field}"), causes, |c, p, causes| {
            label_name(str_of(c), p, causes)
        });
    }
    let named: Vec<&Value> = items(conditions).collect();
    let mut seen = Vec::new();
    for (i, c) in items(conditions).enumerate() {
        if seen.contains(&c) {
            super::duplicate(&format!("{path}.bindingConditions[{i}]"), c, causes);
        }
        seen.push(c);
    }
    let mut seen = Vec::new();
    for (i, c) in items(failures).enumerate() {
        let field = format!("{path}.bindingFailureConditions[{i}]");
        if seen.contains(&c) {
            super::duplicate(&field, c, causes);
        }
        seen.push(c);
        if named.contains(&c) {
            causes.push(Cause::invalid(
                &field,
                c,
                "bindingFailureConditions must not overlap with bindingConditions",
            ));
        }
    }
    match (named.is_empty(), items(failures).next().is_none()) {
        (true, false) => causes.push(Cause::invalid(
            &format!("{path}.bindingConditions"),
            &Value::Null,
            "bindingConditions are required to use bindingFailureConditions",
        )),
        (false, true) => causes.push(Cause::invalid(
            &format!("{path}.bindingFailureConditions"),
            &Value::Null,
            "bindingFailureConditions are required to use bindingConditions",
        )),
        _ => {}
    }
}

/// A `DeviceAttribute`: exactly one of bool, int, string (64 bytes at most) and
/// version (semantic versioning 2.0.0).
fn device_attribute(attribute: &Value, field: &str, causes: &mut Vec<Cause>) {
    let mut values = 0;
    for kind in ["bool", "int", "string", "version"] {
        let Some(value) = attribute.get(kind).filter(|v| !v.is_null()) else { continue };
        values += 1;
        let at = format!("{field}.{kind}");
        let text = str_of(value);
        if kind == "version" && !is_semver(text) {
            causes.push(Cause::invalid(
                &at,
                value,
                "must be a string compatible with semver.org spec 2.0.0",
            ));
        }
        if matches!(kind, "string" | "version") && text.len() > MAX_ATTRIBUTE_VALUE {
            causes.push(too_long(&at, MAX_ATTRIBUTE_VALUE));
        }
    }
    match values {
        0 => causes.push(Cause::required(field, "exactly one value must be specified")),
        1 => {}
        _ => causes.push(Cause::invalid(field, attribute, "exactly one value must be specified")),
    }
}

/// `MAJOR.MINOR.PATCH[-pre.release][+build.meta]`, numbers without leading zeros.
fn is_semver(v: &str) -> bool {
    let (rest, build) = match v.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (v, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let numeric = |s: &str| {
        !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
    };
    let ident = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let core_ok = core.split('.').count() == 3 && core.split('.').all(numeric);
    let pre_ok = pre.is_none_or(|p| {
        p.split('.').all(|s| ident(s) && (numeric(s) || !s.chars().all(|c| c.is_ascii_digit())))
    });
    core_ok && pre_ok && build.is_none_or(|b| b.split('.').all(ident))
}

/// Upstream's `truncateIfTooLong` for map keys in field paths (domain + `/` + ID).
fn truncated(key: &str) -> String {
    let max = 63 + 1 + MAX_ID;
    if key.len() <= max || !key.is_ascii() {
        return key.to_owned();
    }
    let remaining = max - 3;
    format!("{}...{}", &key[..remaining.div_ceil(2)], &key[key.len() - remaining / 2..])
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{is_semver, slice};

    fn messages(object: &Value, old: Option<&Value>) -> Vec<String> {
        let mut causes = Vec::new();
        slice(object, old, &mut causes);
        causes.into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn one_node_selection_and_valid_devices() {
        let object = json!({ "spec": { "driver": "", "pool": { "name": "p", "resourceSliceCount": 0 },
            "nodeName": "n1", "allNodes": true,
            "devices": [{ "name": "gpu-0", "attributes": { "model": { "string": "a", "int": 1 }, "gpu.example.com/v": { "version": "1.02.3" } } },
                        { "name": "gpu-0" }] } });
        assert_eq!(
            messages(&object, None),
            [
                "spec.driver: Required value",
                "spec.driver: Invalid value: \"\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                "spec.pool.resourceSliceCount: Invalid value: 0: must be greater than zero",
                "spec: Invalid value: \"{`nodeName`, `allNodes`}\": exactly one of `nodeName`, `nodeSelector`, `allNodes`, `perDeviceNodeSelection` is required, but multiple fields are set",
                "spec.devices[0].attributes[gpu.example.com/v].version: Invalid value: \"1.02.3\": must be a string compatible with semver.org spec 2.0.0",
                "spec.devices[0].attributes[model]: Invalid value: {\"int\":1,\"string\":\"a\"}: exactly one value must be specified",
                "spec.devices[1].name: Duplicate value: \"gpu-0\"",
            ]
        );
        let valid = json!({ "spec": { "driver": "gpu.example.com", "pool": { "name": "n1", "resourceSliceCount": 1 }, "nodeName": "n1" } });
        assert!(messages(&valid, None).is_empty());
        let mut moved = valid.clone();
        moved["spec"]["nodeName"] = json!("n2");
        assert_eq!(
            messages(&moved, Some(&valid)),
            ["spec.nodeName: Invalid value: \"n2\": field is immutable"]
        );
        let mut none = valid.clone();
        none["spec"].as_object_mut().unwrap().remove("nodeName");
        assert_eq!(
            messages(&none, None),
            [
                "spec: Required value: exactly one of `nodeName`, `nodeSelector`, `allNodes`, `perDeviceNodeSelection` is required"
            ]
        );
    }

    #[test]
    fn semantic_versions() {
        for good in ["1.2.3", "0.0.1-alpha.1", "1.0.0+build.5", "1.0.0-rc-1+x"] {
            assert!(is_semver(good), "{good}");
        }
        for bad in ["1.2", "01.2.3", "1.2.3-", "1.2.3-01", "v1.2.3"] {
            assert!(!is_semver(bad), "{bad}");
        }
    }
}

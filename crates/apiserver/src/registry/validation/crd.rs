//! CustomResourceDefinitions, as upstream's `apiextensions-apiserver/pkg/apis/
//! apiextensions/validation` checks them: the name is `<plural>.<group>`, the group a
//! domain, the names DNS-1035 labels, exactly one storage version, and every version's
//! schema structural (`apiserver/schema/validation.go`) with CEL rules that compile.

use serde_json::{Value, json};

use super::{immutable, not_supported, required};
use crate::status::Cause;

const DNS1035: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

pub(crate) fn dns1035_problem(s: &str) -> Option<String> {
    let shape_ok = s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.ends_with('-');
    if s.len() > 63 {
        Some("must be no more than 63 characters".into())
    } else if !shape_ok {
        Some(DNS1035.into())
    } else {
        None
    }
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// A new or updated CRD.
pub fn crd(object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    let group = str_of(&spec["group"]);
    let plural = str_of(&spec["names"]["plural"]);
    let name = str_of(&object["metadata"]["name"]);
    if !name.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if group.is_empty() {
        required("spec.group", causes);
    } else if let Some(problem) = crate::meta::dns_subdomain_problem(group) {
        causes.push(Cause::invalid("spec.group", &spec["group"], &problem));
    } else if !group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            &spec["group"],
            "should be a domain with at least one dot",
        ));
    }
    api_approval(object, group, causes);
    match str_of(&spec["scope"]) {
        "" => required("spec.scope", causes),
        "Cluster" | "Namespaced" => {}
        _ => not_supported("spec.scope", &spec["scope"], &["Cluster", "Namespaced"], causes),
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::invalid(
            "spec.versions",
            &json!("null"),
            "must have exactly one version marked as storage version",
        ));
        required("spec.versions", causes);
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut unique = true;
    for (i, version) in versions.iter().enumerate() {
        let version_name = str_of(&version["name"]);
        if seen.contains(&version_name) {
            unique = false;
        }
        seen.push(version_name);
        if let Some(problem) = dns1035_problem(version_name) {
            causes.push(Cause::invalid(
                &format!("spec.versions[{i}].name"),
                &version["name"],
                &problem,
            ));
        }
        for (j, column) in
            version["additionalPrinterColumns"].as_array().into_iter().flatten().enumerate()
        {
            printer_column(
                column,
                &format!("spec.versions[{i}].additionalPrinterColumns[{j}]"),
                causes,
            );
        }
        let schema = &version["schema"]["openAPIV3Schema"];
        let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
        if schema.is_object() {
            structural(schema, &path, Level::Root, causes);
        } else {
            required(&path, causes);
        }
    }
    let shown = Value::Array(versions.clone());
    if !unique {
        causes.push(Cause::invalid("spec.versions", &shown, "must contain unique version names"));
    }
    let storage = versions.iter().filter(|v| v["storage"] == json!(true)).count();
    if !versions.is_empty() && storage != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            &shown,
            "must have exactly one version marked as storage version",
        ));
    }
    let names = &spec["names"];
    for field in ["plural", "singular", "kind", "listKind"] {
        if str_of(&names[field]).is_empty() {
            required(&format!("spec.names.{field}"), causes);
        }
    }
    validate_names(names, "spec.names", causes);
}

/// Groups of the Kubernetes project (`*.k8s.io`, `*.kubernetes.io`) need the API review's
/// approval annotation: a URL, or a reason starting with `unapproved`.
fn api_approval(object: &Value, group: &str, causes: &mut Vec<Cause>) {
    let protected = ["k8s.io", "kubernetes.io"]
        .iter()
        .any(|g| group == *g || group.ends_with(&format!(".{g}")));
    if !protected {
        return;
    }
    const KEY: &str = "api-approved.kubernetes.io";
    let field = format!("metadata.annotations[{KEY}]");
    match object["metadata"]["annotations"][KEY].as_str() {
        None => causes.push(Cause::required(
            &field,
            "protected groups must have approval annotation \"api-approved.kubernetes.io\", see https://github.com/kubernetes/enhancements/pull/1111",
        )),
        Some(value)
            if !(value.starts_with("unapproved")
                || value.starts_with("https://")
                || value.starts_with("http://")) =>
        {
            causes.push(Cause::invalid(
                &field,
                &json!(value),
                "protected groups must have approval annotation \"api-approved.kubernetes.io\" with either a URL or a reason starting with \"unapproved\", see https://github.com/kubernetes/enhancements/pull/1111",
            ))
        }
        Some(_) => {}
    }
}

/// An `additionalPrinterColumns` entry: a name, a known type and format, a JSONPath.
fn printer_column(column: &Value, path: &str, causes: &mut Vec<Cause>) {
    const TYPES: [&str; 5] = ["boolean", "date", "integer", "number", "string"];
    const FORMATS: [&str; 8] =
        ["byte", "date", "date-time", "double", "float", "int32", "int64", "password"];
    if str_of(&column["name"]).is_empty() {
        required(&format!("{path}.name"), causes);
    }
    match str_of(&column["type"]) {
        "" => causes.push(Cause::required(
            &format!("{path}.type"),
            &format!("must be one of {}", TYPES.join(",")),
        )),
        t if TYPES.contains(&t) => {}
        _ => not_supported(&format!("{path}.type"), &column["type"], &TYPES, causes),
    }
    let format = str_of(&column["format"]);
    if !format.is_empty() && !FORMATS.contains(&format) {
        not_supported(&format!("{path}.format"), &column["format"], &FORMATS, causes);
    }
    if str_of(&column["jsonPath"]).is_empty() {
        required(&format!("{path}.jsonPath"), causes);
    }
}

/// `spec.names` and `status.acceptedNames`.
fn validate_names(names: &Value, path: &str, causes: &mut Vec<Cause>) {
    for field in ["plural", "singular"] {
        let value = str_of(&names[field]);
        if !value.is_empty()
            && let Some(problem) = dns1035_problem(value)
        {
            causes.push(Cause::invalid(&format!("{path}.{field}"), &names[field], &problem));
        }
    }
    for field in ["kind", "listKind"] {
        let value = str_of(&names[field]);
        if !value.is_empty()
            && let Some(problem) = dns1035_problem(&value.to_lowercase())
        {
            causes.push(Cause::invalid(
                &format!("{path}.{field}"),
                &names[field],
                &format!("may have mixed case, but should otherwise match: {problem}"),
            ));
        }
    }
    for field in ["shortNames", "categories"] {
        for (i, item) in names[field].as_array().into_iter().flatten().enumerate() {
            if let Some(problem) = dns1035_problem(str_of(item)) {
                causes.push(Cause::invalid(&format!("{path}.{field}[{i}]"), item, &problem));
            }
        }
    }
    let kind = str_of(&names["kind"]);
    if !kind.is_empty() && kind == str_of(&names["listKind"]) {
        causes.push(Cause::invalid(
            &format!("{path}.listKind"),
            &names["listKind"],
            "kind and listKind may not be the same",
        ));
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    Field,
    Item,
}

/// Upstream's structural schema rules, and CEL rules that must compile.
fn structural(s: &Value, path: &str, level: Level, causes: &mut Vec<Cause>) {
    let kind = str_of(&s["type"]);
    let int_or_string = s["x-kubernetes-int-or-string"] == json!(true);
    let preserve = s["x-kubernetes-preserve-unknown-fields"] == json!(true);
    let embedded = s["x-kubernetes-embedded-resource"] == json!(true);
    if embedded && kind != "object" {
        if kind.is_empty() {
            causes.push(Cause::required(
                &format!("{path}.type"),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        } else {
            causes.push(Cause::invalid(
                &format!("{path}.type"),
                &s["type"],
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        }
    } else if kind.is_empty() && !int_or_string && !preserve {
        let detail = match level {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        causes.push(Cause::required(&format!("{path}.type"), detail));
    }
    if level == Level::Root && !kind.is_empty() && kind != "object" {
        causes.push(Cause::invalid(
            &format!("{path}.type"),
            &s["type"],
            "must be object at the root",
        ));
    }
    if s["uniqueItems"] == json!(true) {
        causes.push(Cause::forbidden(
            &format!("{path}.uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if let Some(additional) = s.get("additionalProperties")
        && s["properties"].as_object().is_some_and(|p| !p.is_empty())
        && (additional == &json!(false) || additional.is_object())
    {
        causes.push(Cause::forbidden(
            &format!("{path}.additionalProperties"),
            "additionalProperties and properties are mutual exclusive",
        ));
    }
    if let Some(pattern) = s["pattern"].as_str()
        && let Err(e) = regex::Regex::new(pattern)
    {
        causes.push(Cause::invalid(
            &format!("{path}.pattern"),
            &s["pattern"],
            &format!("must be a valid regular expression, but isn't: {e}"),
        ));
    }
    if let Some(default) = s.get("default") {
        let default_path = format!("{path}.default");
        if path.contains(".openAPIV3Schema.properties[metadata]") {
            causes.push(Cause::forbidden(&default_path, "must not be set in top-level metadata"));
        } else if !crate::structural::is_pruned(default, s) {
            causes.push(Cause::invalid(&default_path, default, "must not have unknown fields"));
        } else {
            causes.extend(crate::structural::validation::check_default(default, s, &default_path));
        }
    }
    for (i, rule) in s["x-kubernetes-validations"].as_array().into_iter().flatten().enumerate() {
        let source = str_of(&rule["rule"]);
        let rule_path = format!("{path}.x-kubernetes-validations[{i}].rule");
        if source.is_empty() {
            required(&rule_path, causes);
        } else {
            match crate::cel::compile(source) {
                Err(e) => causes.push(Cause::invalid(&rule_path, &rule["rule"], &e.to_string())),
                Ok(compiled) => {
                    let root = level == Level::Root;
                    for field in crate::structural::validation::undefined_fields(&compiled, s, root)
                    {
                        causes.push(Cause::invalid(
                            &rule_path,
                            &rule["rule"],
                            &format!("compilation failed: ERROR: undefined field '{field}'"),
                        ));
                    }
                }
            }
        }
    }
    for (name, child) in s["properties"].as_object().into_iter().flatten() {
        structural(child, &format!("{path}.properties[{name}]"), Level::Field, causes);
    }
    if s["additionalProperties"].is_object() {
        structural(
            &s["additionalProperties"],
            &format!("{path}.additionalProperties"),
            Level::Field,
            causes,
        );
    }
    if s["items"].is_object() {
        structural(&s["items"], &format!("{path}.items"), Level::Item, causes);
    } else if kind == "array" {
        causes.push(Cause::required(&format!("{path}.items"), "must be specified"));
    }
}

/// What may not change once a CRD exists (or is established).
pub fn update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    let established = is_established(old);
    if established {
        immutable(&old["spec"]["scope"], &new["spec"]["scope"], "spec.scope", causes);
        immutable(
            &old["spec"]["names"]["kind"],
            &new["spec"]["names"]["kind"],
            "spec.names.kind",
            causes,
        );
    }
    immutable(&old["spec"]["group"], &new["spec"]["group"], "spec.group", causes);
    immutable(
        &old["spec"]["names"]["plural"],
        &new["spec"]["names"]["plural"],
        "spec.names.plural",
        causes,
    );
    let versions: Vec<&Value> =
        new["spec"]["versions"].as_array().into_iter().flatten().map(|v| &v["name"]).collect();
    for (i, stored) in new["status"]["storedVersions"].as_array().into_iter().flatten().enumerate()
    {
        if !versions.contains(&stored) {
            causes.push(Cause::invalid(
                &format!("status.storedVersions[{i}]"),
                stored,
                "must appear in spec.versions",
            ));
        }
    }
}

/// Upstream's defaults (`SetDefaults_CustomResourceDefinition`): the singular name and
/// list kind from the kind, and the `None` conversion strategy.
pub fn defaults(object: &mut Value) {
    let Some(spec) = object.get_mut("spec").filter(|s| s.is_object()) else { return };
    let kind = str_of(&spec["names"]["kind"]).to_owned();
    if spec["names"].is_object() && !kind.is_empty() {
        if str_of(&spec["names"]["singular"]).is_empty() {
            spec["names"]["singular"] = json!(kind.to_lowercase());
        }
        if str_of(&spec["names"]["listKind"]).is_empty() {
            spec["names"]["listKind"] = json!(format!("{kind}List"));
        }
    }
    if spec.get("conversion").is_none_or(Value::is_null) {
        spec["conversion"] = json!({ "strategy": "None" });
    }
}

/// Whether a CRD's `Established` condition is `True`.
pub(crate) fn is_established(crd: &Value) -> bool {
    crd["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Established" && c["status"] == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(object: &Value) -> Vec<String> {
        let mut causes = Vec::new();
        crd(object, &mut causes);
        causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn names_versions_and_schemas_are_checked() {
        let good = json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com",
            "scope": "Namespaced", "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}}]}});
        assert!(messages(&good).is_empty(), "{:?}", messages(&good));
        let mut bad = good.clone();
        bad["metadata"]["name"] = json!("widgets.example.org");
        bad["spec"]["group"] = json!("example");
        bad["spec"]["versions"][0]["additionalPrinterColumns"] =
            json!([{"name": "Size", "type": "text", "jsonPath": ".spec.size"}]);
        bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = json!({"type": "object",
            "properties": {"spec": {"properties": {"a": {"type": "string"}}}}});
        let mut protected = good.clone();
        protected["metadata"]["name"] = json!("widgets.x.k8s.io");
        protected["spec"]["group"] = json!("x.k8s.io");
        assert_eq!(
            messages(&protected),
            [
                "metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups must have approval annotation \"api-approved.kubernetes.io\", see https://github.com/kubernetes/enhancements/pull/1111"
            ]
        );
        protected["metadata"]["annotations"] =
            json!({"api-approved.kubernetes.io": "unapproved, testing"});
        assert!(messages(&protected).is_empty());
        assert_eq!(
            messages(&bad),
            [
                "metadata.name: Invalid value: \"widgets.example.org\": must be spec.names.plural+\".\"+spec.group",
                "spec.group: Invalid value: \"example\": should be a domain with at least one dot",
                "spec.versions[0].additionalPrinterColumns[0].type: Unsupported value: \"text\": supported values: \"boolean\", \"date\", \"integer\", \"number\", \"string\"",
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields",
            ]
        );
    }

    #[test]
    fn defaults_must_be_pruned_and_valid() {
        let crd = |schema: Value| {
            json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com",
                "scope": "Namespaced", "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema}}]}})
        };
        let good = crd(json!({"type": "object", "properties": {"spec": {"type": "object",
            "default": {"replicas": 1},
            "properties": {"replicas": {"type": "integer", "maximum": 10, "default": 3}}}}}));
        assert!(messages(&good).is_empty(), "{:?}", messages(&good));
        let bad = crd(json!({"type": "object", "properties": {
            "metadata": {"type": "object", "default": {"name": "x"}},
            "spec": {"type": "object",
                "default": {"replicas": 1, "bogus": true},
                "properties": {
                    "replicas": {"type": "integer", "maximum": 10, "default": 11},
                    "color": {"type": "string", "default": "red",
                        "x-kubernetes-validations": [{"rule": "self != 'red'", "message": "not red"}]}}}}}));
        let root = "spec.versions[0].schema.openAPIV3Schema";
        assert_eq!(
            messages(&bad),
            [
                format!(
                    "{root}.properties[metadata].default: Forbidden: must not be set in top-level metadata"
                ),
                format!(
                    "{root}.properties[spec].default: Invalid value: {{\"bogus\":true,\"replicas\":1}}: must not have unknown fields"
                ),
                format!(
                    "{root}.properties[spec].properties[color].default: Invalid value: \"string\": not red"
                ),
                format!(
                    "{root}.properties[spec].properties[replicas].default: Invalid value: 11: {root}.properties[spec].properties[replicas].default in body should be less than or equal to 10"
                ),
            ]
        );
    }

    #[test]
    fn rules_may_select_only_declared_fields() {
        let crd = |rules: &[&str]| {
            let rules: Vec<Value> = rules.iter().map(|r| json!({"rule": r})).collect();
            json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com",
                "scope": "Namespaced", "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object", "x-kubernetes-validations": rules, "properties": {
                        "spec": {"type": "object", "properties": {
                            "replicas": {"type": "integer"},
                            "x-y": {"type": "string"},
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}}}}}}]}})
        };
        let good = crd(&[
            "self.spec.replicas > 0 && has(self.spec.x__dash__y)",
            "self.metadata.name.startsWith('w') && self.kind == 'Widget'",
            "self.spec.labels.anything == 'x' && self.spec.free.whatever.deeper == 1",
            "self.spec.items.all(i, i.name != '') && self.spec.?replicas.orValue(0) >= 0",
        ]);
        assert!(messages(&good).is_empty(), "{:?}", messages(&good));
        let bad =
            crd(&["self.spec.replicass > 0", "has(self.spec.color) || self.?status.hasValue()"]);
        let rules = "spec.versions[0].schema.openAPIV3Schema.x-kubernetes-validations";
        assert_eq!(
            messages(&bad),
            [
                format!(
                    "{rules}[0].rule: Invalid value: \"self.spec.replicass > 0\": compilation failed: ERROR: undefined field 'replicass'"
                ),
                format!(
                    "{rules}[1].rule: Invalid value: \"has(self.spec.color) || self.?status.hasValue()\": compilation failed: ERROR: undefined field 'color'"
                ),
                format!(
                    "{rules}[1].rule: Invalid value: \"has(self.spec.color) || self.?status.hasValue()\": compilation failed: ERROR: undefined field 'status'"
                ),
            ]
        );
    }
}

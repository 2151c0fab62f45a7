//! Reads JSON field names and resource kinds from the `k8s-openapi` sources.
//!
//! Each generated file starts with `// Generated from definition io.k8s.api.core.v1.Volume`
//! and its serde code spells every JSON key (`"podIP" => Field::Key_pod_ip`); resources
//! carry `impl crate::Resource` with their apiVersion and kind. This is the source of
//! JSON names for fields newer than the kubectl binary the generator also reads.
//!
//! Their `impl crate::DeepMerge` also says how each list and map merges
//! (`merge_strategies::list::map(...)`), which k8s-openapi's code generator took from the
//! OpenAPI document's `x-kubernetes-list-type`, `x-kubernetes-list-map-keys` and
//! `x-kubernetes-map-type`, overridden by the patch tags: `patch_meta` checks k8s-pb's
//! `+listType` markers against it.

use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Default)]
pub struct Definitions {
    /// `(go package, lowercase type name)` → JSON keys of the type.
    pub keys: HashMap<(String, String), Vec<String>>,
    /// `(go package, lowercase type name)` → `(apiVersion, kind)`.
    pub resources: HashMap<(String, String), (String, String)>,
    /// `(go package, lowercase type name)` → the type name as upstream spells it.
    pub names: HashMap<(String, String), String>,
    /// `(go package, lowercase type name)` → JSON key → how `DeepMerge` merges the field,
    /// for every list and map field.
    pub merges: HashMap<(String, String), HashMap<String, DeepMerge>>,
}

/// One `crate::merge_strategies::<collection>::<strategy>(...)` call of a `DeepMerge` impl.
#[derive(Debug, Clone, PartialEq)]
pub struct DeepMerge {
    /// `list` or `map`.
    pub collection: String,
    /// `atomic`, `set` or `map` for a list (a list without a list type is `atomic`);
    /// `atomic` or `granular` for a map (granular without a map type).
    pub strategy: String,
    /// For `list::map`, the item fields compared, as Rust field names (`container_port`):
    /// the patch merge key if the field has one, else the list map keys.
    pub keys: Vec<String>,
}

pub fn read(src: &Path) -> Result<Definitions, String> {
    let mut defs = Definitions::default();
    walk(src, &mut defs)?;
    if defs.keys.len() < 500 {
        return Err(format!("{}: found only {} definitions", src.display(), defs.keys.len()));
    }
    Ok(defs)
}

fn walk(dir: &Path, defs: &mut Definitions) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.is_dir() {
            walk(&path, defs)?;
            continue;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        let Some(def) =
            text.lines().next().and_then(|l| l.strip_prefix("// Generated from definition "))
        else {
            continue;
        };
        let Some(key) = go_type(def) else { continue };
        defs.names.insert(key.clone(), def.rsplit('.').next().unwrap_or_default().to_string());
        let mut keys = Vec::new();
        let (mut api_version, mut kind) = (None, None);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        // Rust field name → JSON key, and Rust field name → merge strategy.
        let (mut json_of, mut merges) = (HashMap::new(), Vec::new());
        for (i, line) in lines.iter().enumerate() {
            if let Some(merge) = deep_merge(&lines[i..]) {
                merges.push(merge);
            }
            if let Some((json, ident)) = line.split_once("\" => Field::Key_") {
                let json = json.trim_start_matches('"').to_string();
                json_of.insert(ident.trim_end_matches(',').to_string(), json.clone());
                keys.push(json);
            } else if let Some(v) = line.strip_prefix("const API_VERSION: &'static str = \"") {
                api_version = Some(v.trim_end_matches("\";").to_string());
            } else if let Some(v) = line.strip_prefix("const KIND: &'static str = \"") {
                kind = Some(v.trim_end_matches("\";").to_string());
            }
        }
        if let (Some(api_version), Some(kind)) = (api_version, kind) {
            defs.resources.insert(key.clone(), (api_version, kind));
        }
        let mut by_json = HashMap::new();
        for (field, merge) in merges {
            let json = json_of.get(&field).ok_or_else(|| {
                format!(
                    "{}: DeepMerge merges self.{field}, which serde never names",
                    path.display()
                )
            })?;
            by_json.insert(json.clone(), merge);
        }
        defs.merges.insert(key.clone(), by_json);
        defs.keys.insert(key, keys);
    }
    Ok(())
}

/// The merge strategy call starting at `lines[0]`, if one does, with the Rust name of the
/// field it merges: `crate::merge_strategies::list::atomic(&mut self.args, other.args);`,
/// or over several lines, `list::map(` / `&mut self.ports,` / `other.ports,` /
/// `&[|lhs, rhs| lhs.container_port == rhs.container_port],`.
fn deep_merge(lines: &[&str]) -> Option<(String, DeepMerge)> {
    let call = lines[0].strip_prefix("crate::merge_strategies::")?;
    let (path, _) = call.split_once('(')?;
    let (collection, strategy) = path.split_once("::")?;
    let rest = lines.iter().take(4).copied().collect::<Vec<_>>().join(" ");
    let field = rest.split_once("&mut self.")?.1;
    let field = field.split([',', ')']).next()?.trim().to_string();
    let mut keys = Vec::new();
    if strategy == "map" && collection == "list" {
        let compared = lines.iter().take(4).find(|l| l.starts_with("&["))?;
        for part in compared.split("lhs.").skip(1) {
            keys.push(part.split(" ==").next()?.to_string());
        }
    }
    Some((field, DeepMerge { collection: collection.into(), strategy: strategy.into(), keys }))
}

/// `io.k8s.api.core.v1.Volume` → `("k8s.io/api/core/v1", "volume")`.
fn go_type(def: &str) -> Option<(String, String)> {
    let rest = def.strip_prefix("io.k8s.")?;
    let (pkg, name) = rest.rsplit_once('.')?;
    Some((format!("k8s.io/{}", pkg.replace('.', "/")), name.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn definition_names() {
        let (pkg, name) =
            super::go_type("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON")
                .unwrap();
        assert_eq!(
            (pkg.as_str(), name.as_str()),
            ("k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1", "json")
        );
    }
}

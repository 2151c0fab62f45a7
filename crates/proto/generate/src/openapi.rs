//! Reads JSON field names and resource kinds from the `k8s-openapi` sources.
//!
//! Each generated file starts with `// Generated from definition io.k8s.api.core.v1.Volume`
//! and its serde code spells every JSON key (`"podIP" => Field::Key_pod_ip`); resources
//! carry `impl crate::Resource` with their apiVersion and kind. This is the source of
//! JSON names for fields newer than the kubectl binary the generator also reads.

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
        for line in text.lines().map(str::trim) {
            if let Some((json, _)) = line.split_once("\" => Field::Key_") {
                keys.push(json.trim_start_matches('"').to_string());
            } else if let Some(v) = line.strip_prefix("const API_VERSION: &'static str = \"") {
                api_version = Some(v.trim_end_matches("\";").to_string());
            } else if let Some(v) = line.strip_prefix("const KIND: &'static str = \"") {
                kind = Some(v.trim_end_matches("\";").to_string());
            }
        }
        if let (Some(api_version), Some(kind)) = (api_version, kind) {
            defs.resources.insert(key.clone(), (api_version, kind));
        }
        defs.keys.insert(key, keys);
    }
    Ok(())
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

//! Reads which Kubernetes types keelson-api registers, from the text of
//! `crates/api/src/builtin/*.rs`: every k8s-openapi type named as the type argument of
//! `resource::<T>`, `status::<T>`, `same_version::<T>` or `other_version::<T>` (resources
//! and the kinds of their subresources), resolved through the file's `use k8s_openapi::…`
//! imports.
//!
//! Those files are small and written in one style; this reads just enough of Rust for
//! them. It must never guess: a type argument that no import resolves is an error (only
//! single-letter names, the generic parameters of the helper functions, are skipped).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// `(Go package, type name)` of each registered type, e.g.
/// `("k8s.io/api/apps/v1", "Deployment")`, sorted.
pub fn read(dir: &Path) -> Result<BTreeSet<(String, String)>, String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    entries.sort();
    let mut types = BTreeSet::new();
    for path in entries {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        types.extend(registered(&text).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    if types.len() < 20 {
        return Err(format!("{}: found only {} registered types", dir.display(), types.len()));
    }
    Ok(types)
}

fn registered(text: &str) -> Result<Vec<(String, String)>, String> {
    let imports = imports(text)?;
    let mut out = Vec::new();
    for helper in ["resource", "status", "same_version", "other_version"] {
        let needle = format!("{helper}::<");
        for (at, _) in text.match_indices(&needle) {
            let rest = &text[at + needle.len()..];
            let arg = rest.split('>').next().unwrap_or_default().trim();
            if arg.len() == 1 {
                continue; // a generic parameter: `status::<T>()` in mod.rs
            }
            let mut segments: Vec<&str> = arg.split("::").collect();
            let first = segments.remove(0);
            let mut path =
                imports.get(first).cloned().ok_or_else(|| format!("{arg}: not imported"))?;
            path.extend(segments.iter().map(|s| s.to_string()));
            out.push(go_type(&path).ok_or_else(|| format!("{arg}: not a k8s-openapi API type"))?);
        }
    }
    Ok(out)
}

/// `["api", "apps", "v1", "Deployment"]` → `("k8s.io/api/apps/v1", "Deployment")`.
fn go_type(path: &[String]) -> Option<(String, String)> {
    let (name, module) = path.split_last()?;
    if module.len() < 2 {
        return None;
    }
    Some((crate::merge::go_pkg(module), name.clone()))
}

/// Name in scope → path under `k8s_openapi`, from every `use k8s_openapi::…;`.
fn imports(text: &str) -> Result<HashMap<String, Vec<String>>, String> {
    let mut out = HashMap::new();
    for (at, _) in text.match_indices("use k8s_openapi::") {
        let rest = &text[at + "use k8s_openapi::".len()..];
        let tree: String = rest
            .split(';')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace() || *c == ' ')
            .collect();
        expand(&[], &tree, &mut out)?;
    }
    Ok(out)
}

/// Expands a use tree such as `api::autoscaling::{v1 as autoscaling_v1, v2}`.
fn expand(
    prefix: &[String],
    tree: &str,
    out: &mut HashMap<String, Vec<String>>,
) -> Result<(), String> {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let inner = tree[open + 1..]
            .strip_suffix('}')
            .ok_or_else(|| format!("unbalanced braces in `use k8s_openapi::{tree}`"))?;
        let mut path = prefix.to_vec();
        path.extend(tree[..open].split("::").filter(|s| !s.is_empty()).map(String::from));
        for item in split_top_level(inner) {
            expand(&path, item, out)?;
        }
        return Ok(());
    }
    if tree.is_empty() {
        return Ok(()); // a trailing comma
    }
    let (path, alias) = match tree.split_once(" as ") {
        Some((path, alias)) => (path.trim(), Some(alias.trim())),
        None => (tree, None),
    };
    let mut full = prefix.to_vec();
    full.extend(path.split("::").map(|s| s.trim().to_string()));
    let name = alias.map(String::from).unwrap_or_else(|| full.last().cloned().unwrap_or_default());
    out.insert(name, full);
    Ok(())
}

/// Splits at commas outside braces.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    #[test]
    fn resolves_imports_and_aliases() {
        let text = "use k8s_openapi::api::apps::v1::{\n    DaemonSet, Deployment,\n};\n\
            use k8s_openapi::api::autoscaling::{v1 as autoscaling_v1, v2 as autoscaling_v2};\n\
            use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;\n\
            const A: &[X] = &[resource::<Deployment>(\"deployment\"), status::<T>(),\n\
            resource::<autoscaling_v2::HorizontalPodAutoscaler>(\"hpa\"),\n\
            status::<CustomResourceDefinition>()];";
        let found = super::registered(text).unwrap();
        let found: Vec<String> = found.iter().map(|(p, n)| format!("{p}.{n}")).collect();
        assert_eq!(
            found,
            [
                "k8s.io/api/apps/v1.Deployment",
                "k8s.io/api/autoscaling/v2.HorizontalPodAutoscaler",
                "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1.CustomResourceDefinition",
            ]
        );
        assert!(super::registered("resource::<Pod>(\"pod\")").is_err());
    }
}

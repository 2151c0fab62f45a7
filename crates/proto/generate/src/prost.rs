//! Reads the protobuf schema from the prost-generated sources of the `k8s-pb` crate.
//!
//! `k8s-pb` is prost-build's output for the `generated.proto` files of k8s.io/api,
//! apimachinery, apiextensions-apiserver and kube-aggregator: one `mod.rs` per proto
//! package, a struct per message, a `#[prost(...)]` attribute per field with its wire
//! kind and number. This module reads that text line by line (the layout is
//! rustfmt's and prost's, regular enough not to need a Rust parser) and never
//! compiles or links `k8s-pb`.

use std::path::Path;

/// A proto package, e.g. module `api/core/v1` = package `k8s.io.api.core.v1`.
#[derive(Debug)]
pub struct Package {
    /// Module path under `src/`, e.g. `["api", "core", "v1"]`.
    pub module: Vec<String>,
    pub messages: Vec<Message>,
    /// `(message, apiVersion, kind)` from `impl crate::Resource for ...`.
    pub resources: Vec<(String, String, String)>,
}

#[derive(Debug)]
pub struct Message {
    /// prost's name (UpperCamelCase, which may differ in case from the proto name).
    pub name: String,
    pub fields: Vec<Field>,
    /// The doc comment's `+key=value` markers (`+structType=atomic`), copied from Go.
    pub markers: Vec<String>,
}

#[derive(Debug)]
pub struct Field {
    /// prost's snake_case name, without `r#`.
    pub name: String,
    pub number: u32,
    pub kind: Kind,
    pub card: Card,
    /// First line of the doc comment, which usually starts with the JSON name.
    pub doc: String,
    /// The doc comment's `+key=value` markers (`+patchStrategy=merge`), copied from Go.
    pub markers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    /// Module path and prost name of the message.
    Message(Vec<String>, String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Card {
    Single,
    Repeated,
    /// `map<string, kind>`.
    Map,
}

/// Reads every `mod.rs` under `src` that defines messages.
pub fn read(src: &Path) -> Result<Vec<Package>, String> {
    let mut packages = Vec::new();
    walk(src, &mut Vec::new(), &mut packages)?;
    packages.sort_by(|a, b| a.module.cmp(&b.module));
    Ok(packages)
}

fn walk(dir: &Path, module: &mut Vec<String>, out: &mut Vec<Package>) -> Result<(), String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            module.push(path.file_name().unwrap().to_string_lossy().into_owned());
            walk(&path, module, out)?;
            module.pop();
        } else if path.file_name().is_some_and(|n| n == "mod.rs") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("read {}: {e}", path.display()))?;
            let package = parse(module, &text).map_err(|e| format!("{}: {e}", path.display()))?;
            if !package.messages.is_empty() {
                out.push(package);
            }
        }
    }
    Ok(())
}

fn parse(module: &[String], text: &str) -> Result<Package, String> {
    let mut package =
        Package { module: module.to_vec(), messages: Vec::new(), resources: Vec::new() };
    let mut lines = text.lines().map(str::trim).enumerate();
    let mut doc = String::new();
    let mut markers = Vec::new();
    // The markers of the doc comment above `#[derive(...)]`, for the struct it derives.
    let mut struct_markers = Vec::new();
    let mut is_message = false;
    let mut resource: Option<(String, String, String)> = None;
    while let Some((n, line)) = lines.next() {
        let err = |e: String| format!("line {}: {e}", n + 1);
        if let Some(d) = line.strip_prefix("///") {
            if doc.is_empty() {
                doc = d.trim().to_string();
            }
            if let Some(marker) = d.trim().strip_prefix('+') {
                markers.push(marker.to_string());
            }
            continue;
        }
        if line.starts_with("#[derive(") {
            is_message = line.contains("::prost::Message");
            struct_markers = std::mem::take(&mut markers);
        } else if let Some(name) = line
            .strip_prefix("pub struct ")
            .and_then(|l| l.strip_suffix(" {").or(l.strip_suffix(" {}")))
        {
            if is_message {
                package.messages.push(Message {
                    name: name.to_string(),
                    fields: Vec::new(),
                    markers: std::mem::take(&mut struct_markers),
                });
            }
        } else if let Some(attr) = line.strip_prefix("#[prost(").and_then(|l| l.strip_suffix(")]"))
        {
            // The field declaration may wrap: read until its type is complete.
            let mut decl = String::new();
            for (_, next) in lines.by_ref() {
                decl.push_str(next);
                if decl.ends_with(',') && decl.matches('<').count() == decl.matches('>').count() {
                    break;
                }
            }
            let message =
                package.messages.last_mut().ok_or_else(|| err("field outside a message".into()))?;
            let mut field = field(module, attr, &decl, std::mem::take(&mut doc)).map_err(err)?;
            field.markers = std::mem::take(&mut markers);
            message.fields.push(field);
        } else if let Some(rest) = line.strip_prefix("impl crate::Resource for ") {
            resource =
                Some((rest.trim_end_matches(" {").to_string(), String::new(), String::new()));
        } else if let Some((_, api_version, kind)) = resource.as_mut() {
            if let Some(v) = const_str(line, "API_VERSION") {
                *api_version = v;
            } else if let Some(v) = const_str(line, "KIND") {
                *kind = v;
            } else if line == "}" {
                package.resources.extend(resource.take());
            }
        }
        doc.clear();
        markers.clear();
    }
    Ok(package)
}

fn const_str(line: &str, name: &str) -> Option<String> {
    let rest = line.strip_prefix(&format!("const {name}: &'static str = \""))?;
    Some(rest.strip_suffix("\";")?.to_string())
}

fn field(module: &[String], attr: &str, decl: &str, doc: String) -> Result<Field, String> {
    let decl = decl
        .strip_prefix("pub ")
        .ok_or_else(|| format!("unexpected field declaration {decl:?}"))?;
    let (name, ty) =
        decl.split_once(':').ok_or_else(|| format!("unexpected field declaration {decl:?}"))?;
    let name = name.trim().trim_start_matches("r#").to_string();
    let words = attr_words(attr);
    let mut number = None;
    let mut card = Card::Single;
    let mut scalar = None;
    for word in &words {
        match word.as_str() {
            "repeated" => card = Card::Repeated,
            "optional" | "boxed" | "packed = \"false\"" => {}
            w if w.starts_with("tag = ") => number = w[7..w.len() - 1].parse().ok(),
            w if w.starts_with("btree_map = ") => {
                card = Card::Map;
                let value = w.trim_end_matches('"').rsplit(", ").next().unwrap_or_default();
                scalar = Some(value.to_string());
            }
            w if w.starts_with("bytes") => scalar = Some("bytes".into()),
            w => scalar = Some(w.to_string()),
        }
    }
    let kind = match scalar.as_deref() {
        Some("string") => Kind::String,
        Some("bytes") => Kind::Bytes,
        Some("bool") => Kind::Bool,
        Some("int32") => Kind::Int32,
        Some("int64") => Kind::Int64,
        Some("double") => Kind::Double,
        Some("message") => message_type(module, ty)?,
        other => return Err(format!("unsupported prost field kind {other:?} in {attr}")),
    };
    let number = number.ok_or_else(|| format!("no tag in {attr}"))?;
    Ok(Field { name, number, kind, card, doc, markers: Vec::new() })
}

/// Splits `message, optional, tag = "1"` at commas outside quotes.
fn attr_words(attr: &str) -> Vec<String> {
    let mut words = vec![String::new()];
    let mut quoted = false;
    for c in attr.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                words.last_mut().unwrap().push(c);
            }
            ',' if !quoted => words.push(String::new()),
            _ => words.last_mut().unwrap().push(c),
        }
    }
    words.into_iter().map(|w| w.trim().to_string()).collect()
}

/// The message a field's Rust type names, resolved against the current module.
fn message_type(module: &[String], ty: &str) -> Result<Kind, String> {
    const WRAPPERS: [&str; 5] = [
        "::core::option::Option",
        "::prost::alloc::vec::Vec",
        "::prost::alloc::boxed::Box",
        "::prost::alloc::collections::BTreeMap",
        "::prost::alloc::string::String",
    ];
    let path = ty
        .split(['<', '>', ',', ' '])
        .rfind(|p| !p.is_empty() && !WRAPPERS.contains(p))
        .ok_or_else(|| format!("no message type in {ty:?}"))?;
    let mut resolved = module.to_vec();
    let mut segments: Vec<&str> = path.split("::").collect();
    let name = segments.pop().unwrap_or_default().to_string();
    let mut rest = segments.as_slice();
    while let Some(("super", tail)) = rest.split_first().map(|(h, t)| (*h, t)) {
        resolved.pop().ok_or_else(|| format!("too many super:: in {ty:?}"))?;
        rest = tail;
    }
    if rest.first() == Some(&"crate") {
        resolved.clear();
        rest = &rest[1..];
    }
    resolved.extend(rest.iter().map(|s| s.to_string()));
    Ok(Kind::Message(resolved, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_paths() {
        let module: Vec<String> = ["api", "core", "v1"].map(String::from).to_vec();
        let ty = "::core::option::Option<super::super::super::apimachinery::pkg::apis::meta::v1::ObjectMeta>,";
        let Kind::Message(m, n) = message_type(&module, ty).unwrap() else { panic!() };
        assert_eq!(
            (m.join("/"), n.as_str()),
            ("apimachinery/pkg/apis/meta/v1".into(), "ObjectMeta")
        );
        let ty = "::prost::alloc::collections::BTreeMap<::prost::alloc::string::String, Quantity>,";
        let Kind::Message(m, n) = message_type(&module, ty).unwrap() else { panic!() };
        assert_eq!((m.join("/"), n.as_str()), ("api/core/v1".into(), "Quantity"));
    }
}

//! Builds and writes `crates/api/src/patch_meta.rs`: for every type reachable from the
//! kinds keelson-api registers, its fields with their JSON names, shapes, value types and
//! strategic merge patch tags (`patchStrategy`, `patchMergeKey`).
//!
//! The fields come from the merged schema (k8s-pb's messages with Go's JSON names, inline
//! structs flattened into the object that prints them), the tags from the Go struct of the
//! type itself. A field that no binary declares in its own type (new in 1.34, or a group
//! no binary links) gets no strategy, which upstream treats as: replace lists, merge maps
//! and objects; the report lists every one.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write;

use crate::OPENAPI_VERSION;
use crate::merge::{Fld, PatchTags, Schema, Ty};
use crate::openapi::Definitions;
use crate::prost::Card;

/// The hand-written part of the output: types, lookups and docs.
const HEAD: &str = include_str!("../templates/patch_meta_head.rs");
/// `patchStrategy` values Kubernetes' strategic merge patch understands, and the constant
/// the output names each by.
const STRATEGIES: [(&str, &str); 4] = [
    ("merge", "MERGE"),
    ("retainKeys", "RETAIN"),
    ("merge,retainKeys", "MERGE_RETAIN"),
    ("replace", "REPLACE"),
];

pub struct PatchMeta {
    /// Sorted by name.
    pub types: Vec<Type>,
    /// `(group, version, kind, index into types)`, sorted.
    pub kinds: Vec<(String, String, String, usize)>,
    pub report: Vec<String>,
}

pub struct Type {
    pub name: String,
    /// Sorted by JSON name.
    pub fields: Vec<Field>,
}

pub struct Field {
    pub json: String,
    pub shape: &'static str,
    /// Message id while building, index into [`PatchMeta::types`] once done.
    pub ty: Option<usize>,
    /// A key of [`STRATEGIES`].
    pub strategy: Option<String>,
    pub merge_key: Option<String>,
}

pub fn build(
    schema: &Schema,
    openapi: &Definitions,
    registered: &BTreeSet<(String, String)>,
) -> Result<PatchMeta, String> {
    let messages = &schema.messages;
    let mut report = Vec::new();
    let mut roots = Vec::new();
    for (pkg, name) in registered {
        let (api_version, kind) = openapi
            .resources
            .get(&(pkg.clone(), name.to_ascii_lowercase()))
            .ok_or_else(|| format!("{pkg}.{name}: k8s-openapi has no Resource impl for it"))?;
        let id = schema
            .kinds
            .iter()
            .find(|(v, k, _)| v == api_version && k == kind)
            .map(|k| k.2)
            .ok_or_else(|| format!("{api_version} {kind}: no protobuf message"))?;
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        roots.push((group.to_string(), version.to_string(), kind.clone(), id));
    }
    // Every message reachable from the kinds, with its flattened fields.
    let mut built: BTreeMap<usize, Vec<Field>> = BTreeMap::new();
    let mut queue: VecDeque<usize> = roots.iter().map(|r| r.3).collect();
    let (mut no_go_type, mut no_go_field) = (BTreeSet::new(), Vec::new());
    let mut doc_agrees = 0;
    while let Some(id) = queue.pop_front() {
        if built.contains_key(&id) {
            continue;
        }
        let definition = &messages[id].definition;
        let keys = openapi_keys(openapi, definition)
            .ok_or_else(|| format!("{definition}: not a k8s-openapi definition"))?;
        let mut fields = Vec::new();
        for (owner, f) in flatten(schema, id) {
            let where_ = match owner == id {
                true => format!("{definition}.{}", f.json),
                false => format!("{definition}.{} (inline {})", f.json, messages[owner].definition),
            };
            if !keys.contains(&f.json) {
                report.push(format!("{where_}: not in k8s-openapi {OPENAPI_VERSION}, left out"));
                continue;
            }
            let target = match f.ty {
                Ty::Msg(t) if messages[t].special == "None" => Some(t),
                _ => None,
            };
            let string_list = matches!(f.ty, Ty::Msg(t) if messages[t].special == "StringList");
            let shape = match f.card {
                Card::Repeated => "List",
                Card::Map => "Map",
                Card::Single if string_list => "List",
                Card::Single => "One",
            };
            let tags = match &f.patch {
                Some(tags) if *tags == f.doc_patch => {
                    doc_agrees += 1;
                    tags.clone()
                }
                Some(tags) => {
                    report.push(format!(
                        "{where_}: Go tags say {}, k8s-pb's doc comment {}; Go wins",
                        show(tags),
                        show(&f.doc_patch)
                    ));
                    tags.clone()
                }
                None => {
                    let doc = match f.doc_patch {
                        PatchTags { strategy: None, merge_key: None } => String::new(),
                        ref tags => format!(" (k8s-pb's doc comment says {})", show(tags)),
                    };
                    if messages[owner].go_declared {
                        no_go_field.push(format!("{where_}{doc}"));
                    } else {
                        no_go_type.insert(messages[owner].definition.clone());
                        if !doc.is_empty() {
                            no_go_field.push(format!("{where_}{doc}"));
                        }
                    }
                    PatchTags::default()
                }
            };
            let PatchTags { strategy, merge_key } = tags;
            if let Some(s) = &strategy
                && !STRATEGIES.iter().any(|(name, _)| name == s)
            {
                return Err(format!("{where_}: unknown patchStrategy {s:?}"));
            }
            if merge_key.is_some() && !strategy.as_deref().is_some_and(|s| s.contains("merge")) {
                report.push(format!("{where_}: patchMergeKey without patchStrategy merge"));
            }
            queue.extend(target);
            fields.push(Field { json: f.json.clone(), shape, ty: target, strategy, merge_key });
        }
        fields.sort_by(|a, b| a.json.cmp(&b.json));
        if let Some(w) = fields.windows(2).find(|w| w[0].json == w[1].json) {
            return Err(format!("{definition}: two fields named {:?}", w[0].json));
        }
        for k in keys.iter().filter(|k| !fields.iter().any(|f| &f.json == *k)) {
            if k != "apiVersion" && k != "kind" {
                report
                    .push(format!("{definition}.{k}: in k8s-openapi, not in the protobuf schema"));
            }
        }
        built.insert(id, fields);
    }
    if built.len() >= usize::from(u16::MAX) {
        return Err(format!("{} types do not fit the u16 indices", built.len()));
    }
    // Sort by name and turn message ids into indices.
    let mut order: Vec<usize> = built.keys().copied().collect();
    order.sort_by(|a, b| messages[*a].definition.cmp(&messages[*b].definition));
    let index: HashMap<usize, usize> = order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let types: Vec<Type> = order
        .iter()
        .map(|id| {
            let mut fields = built.remove(id).unwrap_or_default();
            for f in &mut fields {
                f.ty = f.ty.map(|t| index[&t]);
            }
            Type { name: messages[*id].definition.clone(), fields }
        })
        .collect();
    let mut kinds: Vec<_> = roots.into_iter().map(|(g, v, k, id)| (g, v, k, index[&id])).collect();
    kinds.sort();
    kinds.dedup();

    for name in &no_go_type {
        report.push(format!("{name}: no Go declaration in the binaries; no patch strategies"));
    }
    for field in &no_go_field {
        report.push(format!("{field}: no Go declaration in the binaries; no patch strategy"));
    }
    let fields: Vec<&Field> = types.iter().flat_map(|t| &t.fields).collect();
    let mut by_strategy: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &fields {
        *by_strategy.entry(f.strategy.as_deref().unwrap_or("none")).or_default() += 1;
    }
    let counts: Vec<String> = by_strategy.iter().map(|(s, n)| format!("{s} {n}")).collect();
    report.push(format!(
        "patch meta: {} kinds, {} types, {} fields; patchStrategy: {}; with patchMergeKey: {}; \
         {} types and {} more fields without Go declaration; Go tags agree with k8s-pb's doc \
         comments on {doc_agrees} fields",
        kinds.len(),
        types.len(),
        fields.len(),
        counts.join(", "),
        fields.iter().filter(|f| f.merge_key.is_some()).count(),
        no_go_type.len(),
        no_go_field.len(),
    ));
    Ok(PatchMeta { types, kinds, report })
}

/// The fields of message `id` as JSON prints them: inline structs replaced by their
/// fields. Each comes with the message that declares it.
fn flatten(schema: &Schema, id: usize) -> Vec<(usize, &Fld)> {
    let mut out = Vec::new();
    for f in &schema.messages[id].fields {
        match f.ty {
            Ty::Msg(t) if f.inline && schema.messages[t].special == "None" => {
                out.extend(flatten(schema, t))
            }
            _ => out.push((id, f)),
        }
    }
    out
}

/// The JSON keys k8s-openapi's serde code spells for an OpenAPI definition.
fn openapi_keys<'a>(openapi: &'a Definitions, definition: &str) -> Option<&'a Vec<String>> {
    let (pkg, name) = definition.strip_prefix("io.k8s.")?.rsplit_once('.')?;
    openapi.keys.get(&(format!("k8s.io/{}", pkg.replace('.', "/")), name.to_ascii_lowercase()))
}

fn show(tags: &PatchTags) -> String {
    match (&tags.strategy, &tags.merge_key) {
        (None, None) => "nothing".into(),
        (Some(s), None) => format!("patchStrategy {s:?}"),
        (None, Some(k)) => format!("patchMergeKey {k:?}"),
        (Some(s), Some(k)) => format!("patchStrategy {s:?} patchMergeKey {k:?}"),
    }
}

pub fn render(meta: &PatchMeta, sources: &[String]) -> String {
    let mut out = String::new();
    out.push_str("// @generated by crates/proto/generate. Do not edit: regenerate with\n");
    out.push_str("//   cargo fetch --manifest-path crates/proto/generate/Cargo.toml\n");
    out.push_str("//   cargo run --manifest-path crates/proto/generate/Cargo.toml\n");
    out.push_str("// (see crates/proto/generate/README.md). Sources:\n");
    for source in sources {
        let _ = writeln!(out, "//   {source}");
    }
    out.push_str("//   crates/api/src/builtin (the registered kinds)\n");
    out.push_str("//\n");
    out.push_str("// Data rows: f(JSON name, shape, value type (index into TYPES, or LEAF),\n");
    out.push_str("// patchStrategy, patchMergeKey or \"\").\n\n");
    out.push_str(HEAD);
    let _ = writeln!(out, "\n/// Every type, sorted by name.");
    let _ = writeln!(out, "pub static TYPES: [TypeMeta; {}] = [", meta.types.len());
    for (i, t) in meta.types.iter().enumerate() {
        let _ = writeln!(out, "    TypeMeta {{ name: {:?}, fields: &[ // {i}", t.name);
        for f in &t.fields {
            let ty = f.ty.map_or("LEAF".to_string(), |t| t.to_string());
            let strategy = f.strategy.as_deref().map_or("NONE", |s| {
                STRATEGIES.iter().find(|(name, _)| *name == s).map_or("NONE", |c| c.1)
            });
            let key = f.merge_key.as_deref().unwrap_or_default();
            let _ =
                writeln!(out, "        f({:?}, {}, {ty}, {strategy}, {key:?}),", f.json, f.shape);
        }
        out.push_str("    ] },\n");
    }
    out.push_str("];\n\n");
    out.push_str("/// `(group, version, kind, index into TYPES)`, sorted for binary search.\n");
    let _ = writeln!(out, "static KINDS: [(&str, &str, &str, u16); {}] = [", meta.kinds.len());
    for (group, version, kind, ty) in &meta.kinds {
        let _ = writeln!(out, "    ({group:?}, {version:?}, {kind:?}, {ty}),");
    }
    out.push_str("];\n");
    out
}

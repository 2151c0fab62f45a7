//! Builds and writes `crates/api/src/patch_meta.rs`: for every type reachable from the
//! kinds keelson-api registers, its fields with their JSON names, shapes, value types and
//! strategic merge patch tags (`patchStrategy`, `patchMergeKey`).
//!
//! The fields come from the merged schema (k8s-pb's messages with Go's JSON names, inline
//! structs flattened into the object that prints them), the tags from the Go struct of the
//! type itself. A field that no binary declares in its own type (new in 1.34, or a group
//! no binary links) gets no strategy, which upstream treats as: replace lists, merge maps
//! and objects; the report lists every one.
//!
//! Server-side apply's markers (`+listType`, `+listMapKey`, `+mapType`, `+structType`)
//! come from k8s-pb's doc comments, which copy Go's; Go binaries do not keep comments.
//! They are checked against the shape of each field and the fields of its items, and
//! against k8s-openapi's `DeepMerge` code, which its generator took from the 1.34 OpenAPI
//! document's `x-kubernetes-list-type`, `-list-map-keys` and `-map-type`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write;

use crate::OPENAPI_VERSION;
use crate::merge::{Fld, Markers, PatchTags, Schema, Ty};
use crate::openapi::{DeepMerge, Definitions};
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
/// `+listType` values and the `ListType` variant each becomes.
const LIST_TYPES: [(&str, &str); 3] = [("atomic", "Atomic"), ("set", "Set"), ("map", "Map")];
/// `+mapType` and `+structType` values and the `MapType`/`StructType` variant each becomes.
const MAP_TYPES: [(&str, &str); 2] = [("atomic", "Atomic"), ("granular", "Granular")];

pub struct PatchMeta {
    /// Sorted by name.
    pub types: Vec<Type>,
    /// `(group, version, kind, index into types)`, sorted.
    pub kinds: Vec<(String, String, String, usize)>,
    pub report: Vec<String>,
}

pub struct Type {
    pub name: String,
    /// `+structType`, a key of [`MAP_TYPES`].
    pub struct_type: Option<String>,
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
    /// `+listType` (a key of [`LIST_TYPES`]) with its `+listMapKey`s, `+mapType` and
    /// `+structType` (keys of [`MAP_TYPES`]), each only where the shape allows it.
    pub markers: Markers,
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
    let (mut deep_agrees, mut deep_differs) = (0, Vec::new());
    let (mut struct_types, mut inline_markers) = (BTreeMap::new(), BTreeSet::new());
    while let Some(id) = queue.pop_front() {
        if built.contains_key(&id) {
            continue;
        }
        let definition = &messages[id].definition;
        let keys = openapi_keys(openapi, definition)
            .ok_or_else(|| format!("{definition}: not a k8s-openapi definition"))?;
        let merges = openapi_merges(openapi, definition);
        struct_types.insert(id, type_markers(&messages[id].markers, definition, &mut report)?);
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
            if owner != id && messages[owner].markers != Markers::default() {
                inline_markers.insert((definition.clone(), messages[owner].definition.clone()));
            }
            let markers = field_markers(&f.markers, shape, target.is_some(), &where_, &mut report)?;
            // The OpenAPI document's patch tags: Go's, else the doc comment's.
            let spec_tags = match &f.patch {
                Some(_) => PatchTags { strategy: strategy.clone(), merge_key: merge_key.clone() },
                None => f.doc_patch.clone(),
            };
            let deep = merges.and_then(|m| m.get(&f.json));
            match check_deep_merge(&markers, &spec_tags, shape, deep) {
                Ok(()) => deep_agrees += 1,
                Err(e) => deep_differs.push(format!("{where_}: {e}")),
            }
            queue.extend(target);
            fields.push(Field {
                json: f.json.clone(),
                shape,
                ty: target,
                strategy,
                merge_key,
                markers,
            });
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
    // Every +listMapKey names a field of the list's items.
    for (id, fields) in &built {
        for f in fields.iter().filter(|f| !f.markers.list_map_keys.is_empty()) {
            let where_ = format!("{}.{}", messages[*id].definition, f.json);
            let items = f.ty.and_then(|t| built.get(&t)).ok_or_else(|| {
                format!("{where_}: +listType=map on a list whose items are not objects")
            })?;
            for key in &f.markers.list_map_keys {
                if !items.iter().any(|i| &i.json == key) {
                    return Err(format!("{where_}: +listMapKey={key} is no field of its items"));
                }
            }
        }
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
            let struct_type = struct_types.remove(id).flatten();
            Type { name: messages[*id].definition.clone(), struct_type, fields }
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
    for f in &deep_differs {
        report.push(format!("{f}; the markers win"));
    }
    let count = |what: &str, values: Vec<Option<&str>>| {
        let mut n: BTreeMap<&str, usize> = BTreeMap::new();
        for v in values.into_iter().flatten() {
            *n.entry(v).or_default() += 1;
        }
        let each: Vec<String> = n.iter().map(|(v, n)| format!("{v} {n}")).collect();
        format!("{what}: {}", if each.is_empty() { "none".into() } else { each.join(", ") })
    };
    let list_fields = fields.iter().filter(|f| f.shape == "List").count();
    let map_fields = fields.iter().filter(|f| f.shape == "Map").count();
    let object_fields = fields.iter().filter(|f| f.shape == "One" && f.ty.is_some()).count();
    for (outer, inline) in &inline_markers {
        // The outer type's OpenAPI definition takes the embedded struct's fields, and its
        // own markers: the embedded type's +structType is not the outer type's.
        report.push(format!("{outer}: the type markers of inline {inline} left out"));
    }
    report.push(format!(
        "patch meta markers: {} of {list_fields} lists; {} of {map_fields} maps; {} of \
         {object_fields} object fields; {} of {} types; with +listMapKey: {} lists ({} with \
         more than one); k8s-openapi's DeepMerge agrees on {deep_agrees} fields, differs on {}",
        count("+listType", fields.iter().map(|f| f.markers.list_type.as_deref()).collect()),
        count("+mapType", fields.iter().map(|f| f.markers.map_type.as_deref()).collect()),
        count("+structType", fields.iter().map(|f| f.markers.struct_type.as_deref()).collect()),
        count("+structType", types.iter().map(|t| t.struct_type.as_deref()).collect()),
        types.len(),
        fields.iter().filter(|f| !f.markers.list_map_keys.is_empty()).count(),
        fields.iter().filter(|f| f.markers.list_map_keys.len() > 1).count(),
        deep_differs.len(),
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

/// The markers of a field that its shape allows (`+listType` and `+listMapKey` on lists,
/// `+mapType` on maps, `+structType` on objects); the report names any other. A value
/// server-side apply does not know is an error.
fn field_markers(
    m: &Markers,
    shape: &str,
    object: bool,
    where_: &str,
    report: &mut Vec<String>,
) -> Result<Markers, String> {
    let mut out = Markers::default();
    let mut keep = |key: &str, value: &Option<String>, allowed: &[(&str, &str)], fits: bool| {
        let Some(v) = value else { return Ok(None) };
        if !allowed.iter().any(|(a, _)| a == v) {
            return Err(format!("{where_}: unknown +{key}={v}"));
        }
        if !fits {
            report.push(format!("{where_}: +{key}={v} on a {shape} field, left out"));
            return Ok(None);
        }
        Ok(Some(v.clone()))
    };
    out.list_type = keep("listType", &m.list_type, &LIST_TYPES, shape == "List")?;
    out.map_type = keep("mapType", &m.map_type, &MAP_TYPES, shape == "Map")?;
    out.struct_type = keep("structType", &m.struct_type, &MAP_TYPES, shape == "One" && object)?;
    match (out.list_type.as_deref() == Some("map"), m.list_map_keys.is_empty()) {
        (true, true) => return Err(format!("{where_}: +listType=map without +listMapKey")),
        (true, false) => out.list_map_keys = m.list_map_keys.clone(),
        (false, false) => report.push(format!("{where_}: +listMapKey without +listType=map")),
        (false, true) => {}
    }
    Ok(out)
}

/// The `+structType` of a type; the report names other markers on it, which no type here
/// should have (Go puts them on the fields).
fn type_markers(
    m: &Markers,
    definition: &str,
    report: &mut Vec<String>,
) -> Result<Option<String>, String> {
    if let Some(v) = &m.struct_type
        && !MAP_TYPES.iter().any(|(a, _)| a == v)
    {
        return Err(format!("{definition}: unknown +structType={v}"));
    }
    if m.list_type.is_some() || m.map_type.is_some() || !m.list_map_keys.is_empty() {
        report.push(format!("{definition}: list or map markers on the type, left out"));
    }
    Ok(m.struct_type.clone())
}

/// Compares a field's markers with how k8s-openapi's `DeepMerge` merges it. Its
/// generator reads the OpenAPI document's list and map types, but lets the patch tags
/// win: `x-kubernetes-patch-merge-key` replaces the list map keys, and
/// `x-kubernetes-patch-strategy: merge` makes the list a map (with a key) or a set. So
/// this predicts k8s-openapi's strategy from the markers and the patch tags (a list
/// without a type is atomic, a map without one granular) and returns any difference.
fn check_deep_merge(
    m: &Markers,
    tags: &PatchTags,
    shape: &str,
    deep: Option<&DeepMerge>,
) -> Result<(), String> {
    let show = |collection: &str, strategy: &str, keys: &[String]| match keys.is_empty() {
        true => format!("{collection} {strategy}"),
        false => format!("{collection} {strategy} by {}", keys.join(", ")),
    };
    let (collection, strategy, keys) = match shape {
        "List" => {
            let mut keys = m.list_map_keys.clone();
            let mut strategy = m.list_type.as_deref().unwrap_or("atomic");
            if let Some(key) = &tags.merge_key {
                keys = vec![key.clone()];
            }
            if tags.strategy.as_deref().is_some_and(|s| s.split(',').any(|s| s == "merge")) {
                strategy = if keys.is_empty() { "set" } else { "map" };
            }
            if strategy != "map" {
                keys.clear();
            }
            ("list", strategy, keys)
        }
        "Map" => ("map", m.map_type.as_deref().unwrap_or("granular"), Vec::new()),
        _ => match deep {
            None => return Ok(()),
            Some(d) => {
                return Err(format!(
                    "k8s-openapi merges it as {}",
                    show(&d.collection, &d.strategy, &d.keys)
                ));
            }
        },
    };
    let ours = show(collection, strategy, &keys);
    let Some(deep) = deep else {
        return Err(format!("expected k8s-openapi to merge it as {ours}, it has no strategy"));
    };
    let norm = |k: &String| -> String {
        k.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
    };
    let theirs = show(&deep.collection, &deep.strategy, &deep.keys);
    if (deep.collection.as_str(), deep.strategy.as_str()) != (collection, strategy)
        || deep.keys.iter().map(norm).ne(keys.iter().map(norm))
    {
        return Err(format!("expected k8s-openapi to merge it as {ours}, it merges {theirs}"));
    }
    Ok(())
}

/// How k8s-openapi's `DeepMerge` merges each list and map field of a definition.
fn openapi_merges<'a>(
    openapi: &'a Definitions,
    definition: &str,
) -> Option<&'a HashMap<String, DeepMerge>> {
    let (pkg, name) = definition.strip_prefix("io.k8s.")?.rsplit_once('.')?;
    openapi.merges.get(&(format!("k8s.io/{}", pkg.replace('.', "/")), name.to_ascii_lowercase()))
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

/// The enum variant a marker value becomes (values were checked when building).
fn variant(table: &[(&str, &'static str)], value: &str) -> &'static str {
    table.iter().find(|(v, _)| *v == value).map_or("", |(_, name)| name)
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
    out.push_str("// patchStrategy, patchMergeKey or \"\"), then where Go's comments mark them\n");
    out.push_str("// .list(+listType, +listMapKeys), .map(+mapType), .structure(+structType).\n\n");
    out.push_str(HEAD);
    let _ = writeln!(out, "\n/// Every type, sorted by name.");
    let _ = writeln!(out, "pub static TYPES: [TypeMeta; {}] = [", meta.types.len());
    for (i, t) in meta.types.iter().enumerate() {
        let struct_type = match &t.struct_type {
            Some(v) => format!("Some(StructType::{})", variant(&MAP_TYPES, v)),
            None => "None".into(),
        };
        let _ = writeln!(
            out,
            "    TypeMeta {{ name: {:?}, struct_type: {struct_type}, fields: &[ // {i}",
            t.name
        );
        for f in &t.fields {
            let ty = f.ty.map_or("LEAF".to_string(), |t| t.to_string());
            let strategy = f.strategy.as_deref().map_or("NONE", |s| {
                STRATEGIES.iter().find(|(name, _)| *name == s).map_or("NONE", |c| c.1)
            });
            let key = f.merge_key.as_deref().unwrap_or_default();
            let mut markers = String::new();
            if let Some(v) = &f.markers.list_type {
                let keys: Vec<String> =
                    f.markers.list_map_keys.iter().map(|k| format!("{k:?}")).collect();
                let ty = variant(&LIST_TYPES, v);
                let _ = write!(markers, ".list(ListType::{ty}, &[{}])", keys.join(", "));
            }
            if let Some(v) = &f.markers.map_type {
                let _ = write!(markers, ".map(MapType::{})", variant(&MAP_TYPES, v));
            }
            if let Some(v) = &f.markers.struct_type {
                let _ = write!(markers, ".structure(StructType::{})", variant(&MAP_TYPES, v));
            }
            let _ = writeln!(
                out,
                "        f({:?}, {}, {ty}, {strategy}, {key:?}){markers},",
                f.json, f.shape
            );
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

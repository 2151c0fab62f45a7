//! Joins the three sources into one table: the protobuf schema (k8s-pb) decides which
//! messages and fields exist; the Go structs (kubectl) decide JSON names and how Go
//! prints each field; k8s-openapi names what the Go binary is too old to know.
//!
//! It must never invent a schema: every message and field comes from k8s-pb, and a
//! field whose JSON name had to be guessed is listed in the report.

use std::collections::{BTreeMap, HashMap};

use crate::gobin::GoStruct;
use crate::openapi::Definitions;
use crate::prost::{self, Card, Kind, Package};

pub struct Schema {
    pub messages: Vec<Msg>,
    /// `(apiVersion, kind, message index)`, sorted.
    pub kinds: Vec<(String, String, usize)>,
    pub report: Vec<String>,
}

pub struct Msg {
    /// Full proto name, e.g. `k8s.io.api.core.v1.Volume`.
    pub name: String,
    /// The OpenAPI definition name, e.g. `io.k8s.api.core.v1.Volume`.
    pub definition: String,
    /// A Go binary declares this very type (not only another version of it).
    pub go_declared: bool,
    /// Name of the runtime's `Special` variant.
    pub special: &'static str,
    pub fields: Vec<Fld>,
    /// The markers of k8s-pb's doc comment on the message (`+structType=atomic`).
    pub markers: Markers,
}

pub struct Fld {
    pub number: u32,
    pub json: String,
    pub ty: Ty,
    pub card: Card,
    /// How Go declares the field (`None`: unknown, printed when present).
    pub go: Option<GoInfo>,
    /// Printed inside the enclosing object (`json:",inline"`).
    pub inline: bool,
    /// Strategic merge patch tags, when the message's own Go struct declares the field
    /// (never borrowed from another version: strategies may differ between versions).
    pub patch: Option<PatchTags>,
    /// The same as k8s-pb's doc comment states it (`+patchStrategy=merge`), to check them.
    pub doc_patch: PatchTags,
    /// The server-side apply markers of k8s-pb's doc comment (`+listType=map`).
    pub markers: Markers,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PatchTags {
    pub strategy: Option<String>,
    pub merge_key: Option<String>,
}

/// The markers server-side apply reads, as Go's comments (copied into k8s-pb's doc
/// comments) state them: `+listType`, `+listMapKey` (repeatable, in order), `+mapType`,
/// `+structType`. Values are as written; `patch_meta` checks them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Markers {
    pub list_type: Option<String>,
    pub list_map_keys: Vec<String>,
    pub map_type: Option<String>,
    pub struct_type: Option<String>,
}

impl Markers {
    /// Reads them from a doc comment's markers (`listType=map`, without the `+`); a
    /// single-valued marker given twice with different values is an error.
    fn parse(markers: &[String]) -> Result<Self, String> {
        let values = |key: &str| -> Vec<String> {
            markers
                .iter()
                .filter_map(|m| m.strip_prefix(key)?.strip_prefix('='))
                .map(|v| v.trim().to_string())
                .collect()
        };
        let one = |key: &str| -> Result<Option<String>, String> {
            let mut v = values(key);
            v.dedup();
            match v.len() {
                0 | 1 => Ok(v.pop()),
                _ => Err(format!("+{key} given as {}", v.join(" and "))),
            }
        };
        Ok(Markers {
            list_type: one("listType")?,
            list_map_keys: values("listMapKey"),
            map_type: one("mapType")?,
            struct_type: one("structType")?,
        })
    }
}

#[derive(Clone, Copy)]
pub struct GoInfo {
    pub pointer: bool,
    pub omitempty: bool,
}

pub enum Ty {
    Str,
    Bytes,
    Bool,
    I32,
    I64,
    F64,
    Msg(usize),
}

/// Messages whose JSON form is not an object of their fields (custom `MarshalJSON`).
const SPECIAL: [(&str, &str); 14] = [
    ("k8s.io.apimachinery.pkg.apis.meta.v1.time", "Time"),
    ("k8s.io.apimachinery.pkg.apis.meta.v1.microtime", "MicroTime"),
    ("k8s.io.apimachinery.pkg.apis.meta.v1.duration", "Duration"),
    ("k8s.io.apimachinery.pkg.apis.meta.v1.fieldsv1", "RawJson"),
    ("k8s.io.apimachinery.pkg.api.resource.quantity", "Quantity"),
    ("k8s.io.apimachinery.pkg.api.resource.quantityvalue", "Quantity"),
    ("k8s.io.apimachinery.pkg.util.intstr.intorstring", "IntOrString"),
    ("k8s.io.apimachinery.pkg.runtime.rawextension", "RawExtension"),
    ("k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.json", "RawJson"),
    ("k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1beta1.json", "RawJson"),
    ("jsonschemapropsorarray", "SchemaOrArray"),
    ("jsonschemapropsorbool", "SchemaOrBool"),
    ("jsonschemapropsorstringarray", "SchemaOrStringArray"),
    ("k8s.io.apimachinery.pkg.apis.meta.v1.verbs", "StringList"),
];

/// Kinds of meta/v1 that every group version registers (`metav1.AddToGroupVersion`).
const META_KINDS: [&str; 11] = [
    "APIGroup",
    "APIGroupList",
    "APIResourceList",
    "APIVersions",
    "CreateOptions",
    "DeleteOptions",
    "GetOptions",
    "ListOptions",
    "PatchOptions",
    "Status",
    "UpdateOptions",
];

pub fn go_pkg(module: &[String]) -> String {
    format!("k8s.io/{}/{}", module[0].replace('_', "-"), module[1..].join("/"))
}

fn normalize(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

fn lower_camel(snake: &str) -> String {
    let mut out = String::new();
    for (i, part) in snake.split('_').enumerate() {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(if i == 0 { first } else { first.to_ascii_uppercase() });
            out.extend(chars);
        }
    }
    out
}

pub fn build(
    packages: &[Package],
    go: &[GoStruct],
    openapi: &Definitions,
) -> Result<Schema, String> {
    let mut report = Vec::new();
    let go_index: HashMap<(String, String), &GoStruct> =
        go.iter().map(|s| ((s.pkg.clone(), s.name.to_ascii_lowercase()), s)).collect();
    // Every message, keyed by (go package, lowercase name), in proto-name order.
    let mut order = BTreeMap::new();
    let mut definitions = HashMap::new();
    for (p, package) in packages.iter().enumerate() {
        let pkg = go_pkg(&package.module);
        for (m, message) in package.messages.iter().enumerate() {
            let key = (pkg.clone(), message.name.to_ascii_lowercase());
            let name = go_index
                .get(&key)
                .map(|s| s.name.clone())
                .or_else(|| openapi.names.get(&key).cloned())
                .unwrap_or_else(|| message.name.clone());
            let full = format!("k8s.io.{}.{}", package.module.join("."), name);
            let definition = format!("io.k8s.{}.{name}", pkg["k8s.io/".len()..].replace('/', "."));
            definitions.insert(full.to_ascii_lowercase(), definition);
            order.insert(full.to_ascii_lowercase(), (full, p, m, key));
        }
    }
    let ids: HashMap<(String, String), usize> =
        order.values().enumerate().map(|(i, (_, _, _, key))| (key.clone(), i)).collect();
    let mut stats: BTreeMap<&str, usize> = BTreeMap::new();
    let mut messages = Vec::new();
    for (lower, (full, p, m, key)) in &order {
        let message = &packages[*p].messages[*m];
        let exact = go_index.get(key).copied();
        let siblings: Vec<&GoStruct> = go
            .iter()
            .filter(|s| {
                s.name.eq_ignore_ascii_case(&key.1) && s.pkg != key.0 && same_group(&s.pkg, &key.0)
            })
            .collect();
        let keys = openapi.keys.get(key);
        let mut fields = Vec::new();
        for f in &message.fields {
            let ty = match &f.kind {
                Kind::String => Ty::Str,
                Kind::Bytes => Ty::Bytes,
                Kind::Bool => Ty::Bool,
                Kind::Int32 => Ty::I32,
                Kind::Int64 => Ty::I64,
                Kind::Double => Ty::F64,
                Kind::Message(module, name) => {
                    let target = (go_pkg(module), name.to_ascii_lowercase());
                    Ty::Msg(
                        *ids.get(&target)
                            .ok_or_else(|| format!("{full}.{}: unknown message {name}", f.name))?,
                    )
                }
            };
            let wanted = normalize(&f.name);
            let by_number =
                |s: &GoStruct| s.fields.iter().find(|g| g.number == Some(f.number)).cloned();
            let mut patch = None;
            let (go_field, source) = if let Some(g) = exact.and_then(by_number) {
                patch = Some(PatchTags {
                    strategy: g.patch_strategy.clone(),
                    merge_key: g.patch_merge_key.clone(),
                });
                (Some(g), "go")
            } else if let Some(g) = siblings.iter().filter_map(|s| by_number(s)).find(|g| {
                g.inline || g.json.as_deref().map(normalize).as_deref() == Some(wanted.as_str())
            }) {
                (Some(g), "go (other version)")
            } else {
                (None, "nowhere")
            };
            *stats.entry(source).or_default() += 1;
            if go_field.is_none() {
                report.push(format!("{full}.{}: Go declaration unknown", f.name));
            }
            let mut inline = go_field.as_ref().is_some_and(|g| g.inline);
            let json = if let Some(json) = go_field.as_ref().and_then(|g| g.json.clone()) {
                if normalize(&json) != wanted {
                    report.push(format!("{full}.{}: Go names it {json:?}", f.name));
                }
                json
            } else if let Some(json) = keys.and_then(|k| k.iter().find(|k| normalize(k) == wanted))
            {
                *stats.entry("openapi").or_default() += 1;
                json.clone()
            } else if let Some(word) = f.doc.split_whitespace().next().filter(|w| {
                normalize(w) == wanted && w.starts_with(|c: char| c.is_ascii_lowercase())
            }) {
                *stats.entry("doc comment").or_default() += 1;
                word.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
            } else {
                if go_field.is_none() && keys.is_some() && matches!(ty, Ty::Msg(_)) {
                    inline = true;
                    report.push(format!("{full}.{}: not in openapi, taken as inline", f.name));
                } else if !inline {
                    report.push(format!("{full}.{}: JSON name guessed", f.name));
                }
                lower_camel(&f.name)
            };
            let go = go_field.map(|g| GoInfo { pointer: g.pointer, omitempty: g.omitempty });
            let marker = |key: &str| {
                f.markers
                    .iter()
                    .find_map(|m| m.strip_prefix(key)?.strip_prefix('='))
                    .map(String::from)
            };
            let doc_patch =
                PatchTags { strategy: marker("patchStrategy"), merge_key: marker("patchMergeKey") };
            fields.push(Fld {
                number: f.number,
                json,
                ty,
                card: f.card,
                go,
                inline,
                patch,
                doc_patch,
                markers: Markers::parse(&f.markers)
                    .map_err(|e| format!("{full}.{}: {e}", f.name))?,
            });
        }
        fields.sort_by_key(|f| f.number);
        let special = SPECIAL
            .iter()
            .find(|(n, _)| lower == n || lower.rsplit('.').next() == Some(n))
            .map(|(_, s)| *s)
            .or_else(|| is_string_list(message).then_some("StringList"))
            .unwrap_or("None");
        if special != "None" {
            report.push(format!("{full}: decoded as {special}"));
        }
        messages.push(Msg {
            name: full.clone(),
            definition: definitions.remove(lower).unwrap_or_default(),
            go_declared: exact.is_some(),
            special,
            fields,
            markers: Markers::parse(&message.markers).map_err(|e| format!("{full}: {e}"))?,
        });
    }
    for (source, n) in stats {
        report.push(format!("fields whose JSON name or Go declaration comes from {source}: {n}"));
    }
    check_cycles(&messages)?;
    let kinds = kinds(packages, openapi, &ids, &messages);
    Ok(Schema { messages, kinds, report })
}

/// `type ExtraValue []string` is a message with one repeated string named items.
fn is_string_list(message: &prost::Message) -> bool {
    matches!(message.fields.as_slice(), [f] if f.number == 1 && f.name == "items" && f.kind == Kind::String && f.card == Card::Repeated)
}

fn same_group(a: &str, b: &str) -> bool {
    a.rsplit_once('/').map(|x| x.0) == b.rsplit_once('/').map(|x| x.0)
}

/// A struct that holds itself by value cannot exist in Go; if the table says so, the
/// decoder would recurse on absent fields until its depth limit, so refuse it here.
fn check_cycles(messages: &[Msg]) -> Result<(), String> {
    fn visit(m: usize, messages: &[Msg], state: &mut [u8]) -> Result<(), String> {
        match state[m] {
            1 => return Err(format!("{} holds itself by value", messages[m].name)),
            2 => return Ok(()),
            _ => state[m] = 1,
        }
        for f in &messages[m].fields {
            let by_value = f.inline || f.go.is_some_and(|g| !g.pointer);
            if let (Ty::Msg(t), Card::Single, true) = (&f.ty, f.card, by_value) {
                visit(*t, messages, state)?;
            }
        }
        state[m] = 2;
        Ok(())
    }
    let mut state = vec![0u8; messages.len()];
    (0..messages.len()).try_for_each(|m| visit(m, messages, &mut state))
}

fn kinds(
    packages: &[Package],
    openapi: &Definitions,
    ids: &HashMap<(String, String), usize>,
    messages: &[Msg],
) -> Vec<(String, String, usize)> {
    let mut kinds = BTreeMap::new();
    let mut groups: HashMap<String, String> = HashMap::new();
    let mut add = |pkg: &str, api_version: &str, kind: &str, id: usize| {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        groups.insert(pkg.rsplit_once('/').map_or(pkg, |(d, _)| d).to_string(), group.to_string());
        kinds.entry((api_version.to_string(), kind.to_string())).or_insert(id);
    };
    for ((pkg, name), (api_version, kind)) in &openapi.resources {
        if let Some(&id) = ids.get(&(pkg.clone(), name.clone())) {
            add(pkg, api_version, kind, id);
        }
    }
    for package in packages {
        let pkg = go_pkg(&package.module);
        for (message, api_version, kind) in &package.resources {
            if let Some(&id) = ids.get(&(pkg.clone(), message.to_ascii_lowercase())) {
                add(&pkg, api_version, kind, id);
            }
        }
    }
    // Objects and lists without a Resource impl: anything with metadata in a known group.
    for package in packages {
        let pkg = go_pkg(&package.module);
        let (dir, version) = pkg.rsplit_once('/').unwrap_or_default();
        let Some(group) = groups.get(dir) else { continue };
        let api_version =
            if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        for message in &package.messages {
            let id = ids[&(pkg.clone(), message.name.to_ascii_lowercase())];
            let is_object = message.fields.iter().any(|f| {
                f.number == 1
                    && f.name == "metadata"
                    && matches!(&f.kind, Kind::Message(_, n) if n == "ObjectMeta" || n == "ListMeta")
            });
            if is_object {
                let kind = messages[id].name.rsplit('.').next().unwrap_or_default().to_string();
                kinds.entry((api_version.clone(), kind)).or_insert(id);
            }
        }
    }
    let meta = "k8s.io/apimachinery/pkg/apis/meta/v1";
    for kind in META_KINDS {
        if let Some(&id) = ids.get(&(meta.to_string(), kind.to_ascii_lowercase())) {
            kinds.entry(("meta.k8s.io/v1".to_string(), kind.to_string())).or_insert(id);
        }
    }
    kinds.into_iter().map(|((v, k), id)| (v, k, id)).collect()
}

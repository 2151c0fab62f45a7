//! Field sets (structured-merge-diff's `fieldpath.Set`): which fields of an object a
//! manager owns, walked with the object's type ([`Ty`]), and
//! their `FieldsV1` JSON form (`f:name`, `k:{"name":"c"}` for an item of a keyed list,
//! `v:"x"` for a set item, `.` for the item itself).

use std::collections::BTreeMap;

use super::schema::{Shape, Ty};
use serde_json::{Map, Value, json};

/// A set of field paths as a tree; `own` marks the node itself as a member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Set {
    pub own: bool,
    pub children: BTreeMap<String, Set>,
}

/// Fields never owned: identity and bookkeeping the server writes.
const IGNORED_METADATA: [&str; 10] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

impl Set {
    fn leaf() -> Set {
        Set { own: true, children: BTreeMap::new() }
    }

    pub fn is_empty(&self) -> bool {
        !self.own && self.children.values().all(Set::is_empty)
    }

    /// The fields of an object of type `ty` (the top level: `apiVersion`, `kind` and the
    /// server's metadata are left out; `status` unless `with_status`).
    pub fn of_object(object: &Value, ty: Ty, with_status: bool) -> Set {
        walk(object, ty).top_level(with_status)
    }

    /// What an update that turned `old` into `new` changed — the members of `new` that
    /// `old` lacks or holds another value at (a keyed item owns itself only when added) —
    /// and what it removed: the members of `old` that `new` lacks. Both at the top level
    /// as [`Set::of_object`] leaves it. One walk of both objects.
    pub fn compare(old: &Value, new: &Value, ty: Ty, with_status: bool) -> (Set, Set) {
        let (changed, removed) = compare(old, new, ty);
        (changed.top_level(with_status), removed.top_level(with_status))
    }

    /// The set without what no manager owns at the top level.
    fn top_level(mut self, with_status: bool) -> Set {
        let set = &mut self;
        set.children.remove("f:apiVersion");
        set.children.remove("f:kind");
        if !with_status {
            set.children.remove("f:status");
        }
        if let Some(meta) = set.children.get_mut("f:metadata") {
            for field in IGNORED_METADATA {
                meta.children.remove(&format!("f:{field}"));
            }
            if meta.children.is_empty() {
                set.children.remove("f:metadata");
            }
        }
        self
    }

    /// `FieldsV1` JSON.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.own && !self.children.is_empty() {
            map.insert(".".into(), json!({}));
        }
        for (key, child) in &self.children {
            if !child.is_empty() {
                map.insert(key.clone(), child.to_fields_v1());
            }
        }
        Value::Object(map)
    }

    /// From `FieldsV1` JSON.
    pub fn from_fields_v1(value: &Value) -> Set {
        let Some(map) = value.as_object() else {
            return Set::default();
        };
        if map.is_empty() {
            return Set::leaf();
        }
        let mut set = Set::default();
        for (key, child) in map {
            if key == "." {
                set.own = true;
            } else {
                set.children.insert(key.clone(), Set::from_fields_v1(child));
            }
        }
        set
    }

    pub fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.own |= other.own;
        for (key, child) in &other.children {
            let merged = match out.children.get(key) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(key.clone(), merged);
        }
        out
    }

    pub fn difference(&self, other: &Set) -> Set {
        let mut out = Set { own: self.own && !other.own, children: BTreeMap::new() };
        for (key, child) in &self.children {
            let rest = match other.children.get(key) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(key.clone(), rest);
            }
        }
        out
    }

    pub fn intersection(&self, other: &Set) -> Set {
        let mut out = Set { own: self.own && other.own, children: BTreeMap::new() };
        for (key, child) in &self.children {
            if let Some(theirs) = other.children.get(key) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(key.clone(), both);
                }
            }
        }
        out
    }

    /// Every member path, as path elements.
    pub fn members(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.own && !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for (key, child) in &self.children {
            prefix.push(key.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }
}

/// The set of a value of type `ty`: an object field by field, a keyed list item by item
/// (each item also owning itself), a set by its values, anything else as a whole.
fn walk(value: &Value, ty: Ty) -> Set {
    let mut set = Set::default();
    match (ty.shape(value), value) {
        (Shape::Granular, Value::Object(map)) => {
            for (key, v) in map {
                set.children.insert(format!("f:{key}"), walk(v, ty.field(key)));
            }
        }
        (Shape::Keyed(keys), Value::Array(items)) => {
            for item in items {
                let mut child = walk(item, ty.items());
                child.own = true;
                set.children.insert(item_key(item, &keys, ty.items()), child);
            }
        }
        (Shape::Set, Value::Array(items)) => {
            for item in items {
                set.children.insert(format!("v:{item}"), Set::leaf());
            }
        }
        _ => {}
    }
    if set.children.is_empty() { Set::leaf() } else { set }
}

/// [`Set::compare`] below the top level.
fn compare(old: &Value, new: &Value, ty: Ty) -> (Set, Set) {
    let mut changed = Set::default();
    let mut removed = Set::default();
    match (ty.shape(new), old, new) {
        (Shape::Granular, Value::Object(o), Value::Object(n)) if !n.is_empty() => {
            removed.own = o.is_empty();
            for (key, value) in n {
                let field = ty.field(key);
                let (c, r) = match o.get(key) {
                    Some(before) => compare(before, value, field),
                    None => (walk(value, field), Set::default()),
                };
                let name = format!("f:{key}");
                if !c.is_empty() {
                    changed.children.insert(name.clone(), c);
                }
                if !r.is_empty() {
                    removed.children.insert(name, r);
                }
            }
            for (key, value) in o.iter().filter(|(k, _)| !n.contains_key(*k)) {
                removed.children.insert(format!("f:{key}"), walk(value, ty.field(key)));
            }
        }
        (Shape::Keyed(keys), Value::Array(o), Value::Array(n)) if !n.is_empty() => {
            removed.own = o.is_empty();
            let before: BTreeMap<String, &Value> =
                o.iter().map(|item| (item_key(item, &keys, ty.items()), item)).collect();
            let mut kept = std::collections::BTreeSet::new();
            for item in n {
                let key = item_key(item, &keys, ty.items());
                let (c, r) = match before.get(&key) {
                    Some(previous) => compare(previous, item, ty.items()),
                    None => {
                        let mut added = walk(item, ty.items());
                        added.own = true;
                        (added, Set::default())
                    }
                };
                if !c.is_empty() {
                    changed.children.insert(key.clone(), c);
                }
                if !r.is_empty() {
                    removed.children.insert(key.clone(), r);
                }
                kept.insert(key);
            }
            for (key, item) in before.into_iter().filter(|(k, _)| !kept.contains(k)) {
                let mut gone = walk(item, ty.items());
                gone.own = true;
                removed.children.insert(key, gone);
            }
        }
        (Shape::Set, Value::Array(o), Value::Array(n)) if !n.is_empty() => {
            removed.own = o.is_empty();
            for item in n.iter().filter(|i| !o.contains(i)) {
                changed.children.insert(format!("v:{item}"), Set::leaf());
            }
            for item in o.iter().filter(|i| !n.contains(i)) {
                removed.children.insert(format!("v:{item}"), Set::leaf());
            }
        }
        _ => {
            let after = walk(new, ty);
            removed = walk(old, ty).difference(&after);
            if old != new {
                changed = after;
            }
        }
    }
    (changed, removed)
}

/// `k:{"containerPort":80,"protocol":"TCP"}`: an item of a keyed list (of items of type
/// `item_type`) by its keys, a missing one by its default ([`Ty::key_default`]).
pub fn item_key(item: &Value, keys: &[&str], item_type: Ty) -> String {
    let mut fields = BTreeMap::new();
    for key in keys {
        if let Some(v) = item.get(*key).cloned().or_else(|| item_type.key_default(key)) {
            fields.insert(key.to_string(), v);
        }
    }
    format!("k:{}", serde_json::to_string(&fields).unwrap_or_default())
}

/// A path as upstream prints it in conflicts: `.spec.containers[name="c"].image`.
pub fn describe(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(name) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(name);
        } else if let Some(keys) = element.strip_prefix("k:") {
            let parsed: Map<String, Value> = serde_json::from_str(keys).unwrap_or_default();
            let parts: Vec<String> = parsed.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(value) = element.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        } else if let Some(index) = element.strip_prefix("i:") {
            out.push_str(&format!("[{index}]"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_is_owned_field_by_field() {
        let ty = Ty::Object(
            keelson_api::patch_meta::kind_type("apps", "v1", "Deployment").expect("known kind"),
        );
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "labels": { "app": "web" } },
            "spec": {
                "replicas": 2,
                "selector": { "matchLabels": { "app": "web" } },
                "template": { "spec": { "containers": [{ "name": "web", "image": "nginx", "ports": [{ "containerPort": 80, "protocol": "TCP" }] }] } },
            },
        });
        let set = Set::of_object(&deployment, ty, false);
        let fields = set.to_fields_v1();
        assert_eq!(fields["f:metadata"], json!({ "f:labels": { "f:app": {} } }));
        assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
        let container =
            &fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
        assert_eq!(container["."], json!({}));
        assert_eq!(container["f:image"], json!({}));
        assert_eq!(
            container["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"]["f:containerPort"],
            json!({})
        );
        // The selector is atomic.
        assert_eq!(fields["f:spec"]["f:selector"], json!({}));
        assert_eq!(Set::from_fields_v1(&fields), set);
        let paths: Vec<String> = set.members().iter().map(|p| describe(p)).collect();
        assert!(
            paths.contains(&".spec.template.spec.containers[name=\"web\"].image".to_owned()),
            "{paths:?}"
        );
    }

    #[test]
    fn an_update_changes_and_removes_what_differs() {
        let ty = Ty::Object(
            keelson_api::patch_meta::kind_type("apps", "v1", "Deployment").expect("known kind"),
        );
        let old = json!({"metadata": {"annotations": {"a": "1"}, "labels": {"x": "1"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]}}}});
        let new = json!({"metadata": {"labels": {"x": "1", "y": "2"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:2"}, {"name": "sidecar", "image": "envoy"}]}}}});
        let (changed, removed) = Set::compare(&old, &new, ty, false);
        let containers = |set: &Set| {
            set.to_fields_v1()["f:spec"]["f:template"]["f:spec"]["f:containers"].clone()
        };
        assert_eq!(changed.to_fields_v1()["f:metadata"], json!({"f:labels": {"f:y": {}}}));
        assert_eq!(
            containers(&changed),
            json!({"k:{\"name\":\"web\"}": {"f:image": {}},
                "k:{\"name\":\"sidecar\"}": {".": {}, "f:name": {}, "f:image": {}}})
        );
        assert_eq!(removed.to_fields_v1()["f:metadata"], json!({"f:annotations": {"f:a": {}}}));
        assert_eq!(
            containers(&removed),
            json!({"k:{\"name\":\"log\"}": {".": {}, "f:name": {}, "f:image": {}}})
        );
        // The same walk as ownership: what a create owns, an update from nothing changes.
        let (all, none) = Set::compare(&json!({}), &new, ty, false);
        assert_eq!(all, Set::of_object(&new, ty, false));
        assert!(none.children.is_empty());
    }

    #[test]
    fn set_algebra() {
        let a = Set::from_fields_v1(&json!({ "f:a": {}, "f:b": { "f:c": {}, "f:d": {} } }));
        let b = Set::from_fields_v1(&json!({ "f:b": { "f:c": {} }, "f:e": {} }));
        assert_eq!(a.intersection(&b).to_fields_v1(), json!({ "f:b": { "f:c": {} } }));
        assert_eq!(a.difference(&b).to_fields_v1(), json!({ "f:a": {}, "f:b": { "f:d": {} } }));
        assert_eq!(a.union(&b).members().len(), 4);
    }
}

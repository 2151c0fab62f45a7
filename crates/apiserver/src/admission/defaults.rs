//! The mutating plugins that fill in what a new object (or an updated pod) leaves out,
//! as upstream's do:
//! Priority (`plugin/pkg/admission/priority`), DefaultTolerationSeconds and
//! DefaultStorageClass (`plugin/pkg/admission/storage/storageclass/setdefault`).

use serde_json::{Value, json};

use super::lister::Lister;
use super::{Attributes, Mutating, Operation, Plugin};
use crate::status::ApiResult;

/// Whether a defaulting plugin looks at the write: creates of the object itself.
fn is_new(a: &Attributes<'_>) -> bool {
    a.operation == Operation::Create && a.subresource.is_empty()
}

/// A mutating plugin that looks at the given operations.
macro_rules! mutates {
    ($plugin:ty, $($operation:ident)|+) => {
        impl Plugin for $plugin {
            fn handles(&self, operation: Operation) -> bool {
                matches!(operation, $(Operation::$operation)|+)
            }

            fn mutating(&self) -> Option<&dyn Mutating> {
                Some(self)
            }
        }
    };
}

pub struct Priority {
    classes: Lister,
}

impl Priority {
    pub fn new(classes: Lister) -> Self {
        Priority { classes }
    }
}

// Updates too, as upstream's: a pod written back without them keeps the priority and
// preemption policy this plugin gave it, which validation would refuse to see change.
mutates!(Priority, Create | Update);

#[async_trait::async_trait]
impl Mutating for Priority {
    async fn admit(&self, a: &Attributes<'_>, pod: Option<&mut Value>) -> ApiResult<Vec<String>> {
        match pod {
            Some(pod) if is_new(a) => priority(&self.classes, a, pod).await.map(|()| Vec::new()),
            Some(pod) if a.operation == Operation::Update && a.subresource.is_empty() => {
                keep_priority(a, pod);
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }
}

pub struct DefaultTolerationSeconds;

// Updates too, as upstream's: a pod written back without the tolerations gets them
// again, so the update does not remove them.
mutates!(DefaultTolerationSeconds, Create | Update);

#[async_trait::async_trait]
impl Mutating for DefaultTolerationSeconds {
    async fn admit(&self, a: &Attributes<'_>, pod: Option<&mut Value>) -> ApiResult<Vec<String>> {
        if let Some(pod) = pod
            && a.subresource.is_empty()
        {
            toleration_seconds(a, pod);
        }
        Ok(Vec::new())
    }
}

pub struct DefaultStorageClass {
    classes: Lister,
}

impl DefaultStorageClass {
    pub fn new(classes: Lister) -> Self {
        DefaultStorageClass { classes }
    }
}

mutates!(DefaultStorageClass, Create);

#[async_trait::async_trait]
impl Mutating for DefaultStorageClass {
    async fn admit(&self, a: &Attributes<'_>, claim: Option<&mut Value>) -> ApiResult<Vec<String>> {
        match claim {
            Some(claim) if is_new(a) => {
                storage_class(&self.classes, a, claim).await.map(|()| Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }
}

/// Priority: a new pod's `priority` and `preemptionPolicy` come from its PriorityClass
/// (or the global default class, or 0); a pod may not name a class that does not exist
/// or a priority that differs from its class's.
pub async fn priority(classes: &Lister, a: &Attributes<'_>, pod: &mut Value) -> ApiResult<()> {
    if !a.is("", "pods") {
        return Ok(());
    }
    let classes = classes.list(None).await;
    let named = pod["spec"]["priorityClassName"].as_str().unwrap_or("").to_owned();
    let (value, policy) = if named.is_empty() {
        let default = classes
            .iter()
            .filter(|c| c["globalDefault"] == true)
            .min_by_key(|c| c["value"].as_i64().unwrap_or(0));
        match default {
            Some(class) => {
                pod["spec"]["priorityClassName"] = class["metadata"]["name"].clone();
                (class["value"].as_i64().unwrap_or(0), class["preemptionPolicy"].clone())
            }
            None => (0, json!("PreemptLowerPriority")),
        }
    } else {
        match classes.iter().find(|c| c["metadata"]["name"] == named.as_str()) {
            Some(class) => {
                (class["value"].as_i64().unwrap_or(0), class["preemptionPolicy"].clone())
            }
            None => {
                return Err(a.forbidden(format!("no PriorityClass with name {named} was found")));
            }
        }
    };
    if let Some(given) = pod["spec"]["priority"].as_i64()
        && given != value
    {
        return Err(a.forbidden(format!(
            "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
        )));
    }
    pod["spec"]["priority"] = json!(value);
    if let Some(policy) = policy.as_str() {
        if let Some(given) = pod["spec"]["preemptionPolicy"].as_str()
            && given != policy
        {
            return Err(a.forbidden(format!(
                "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
            )));
        }
        pod["spec"]["preemptionPolicy"] = json!(policy);
    }
    Ok(())
}

/// Priority on an update: a pod that leaves out `priority` or `preemptionPolicy` keeps
/// the stored one (upstream's `admitPod` on Update); changing them is validation's to
/// refuse.
pub fn keep_priority(a: &Attributes<'_>, pod: &mut Value) {
    if !a.is("", "pods") {
        return;
    }
    let (Some(old), Some(spec)) = (a.old, pod["spec"].as_object_mut()) else { return };
    for field in ["priority", "preemptionPolicy"] {
        if spec.get(field).is_none_or(Value::is_null) && !old["spec"][field].is_null() {
            spec.insert(field.to_owned(), old["spec"][field].clone());
        }
    }
}

/// DefaultTolerationSeconds: a pod tolerates `not-ready` and `unreachable` nodes
/// for 300 s unless it says otherwise, so its node's failure evicts it after five
/// minutes.
pub fn toleration_seconds(a: &Attributes<'_>, pod: &mut Value) {
    if !a.is("", "pods") {
        return;
    }
    let tolerations = pod["spec"]["tolerations"].as_array().cloned().unwrap_or_default();
    let tolerates = |taint: &str| {
        tolerations.iter().any(|t| {
            let key = t["key"].as_str().unwrap_or("");
            let effect = t["effect"].as_str().unwrap_or("");
            (key == taint || key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        })
    };
    let mut added = tolerations.clone();
    for taint in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        if !tolerates(taint) {
            added.push(json!({
                "key": taint,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }));
        }
    }
    if added.len() != tolerations.len() {
        pod["spec"]["tolerations"] = Value::Array(added);
    }
}

/// DefaultStorageClass: a new claim that names no class gets the default one (the
/// newest, if several are marked).
pub async fn storage_class(
    classes: &Lister,
    a: &Attributes<'_>,
    claim: &mut Value,
) -> ApiResult<()> {
    if !a.is("", "persistentvolumeclaims") || !claim["spec"]["storageClassName"].is_null() {
        return Ok(());
    }
    let is_default = |c: &Value| {
        [
            "storageclass.kubernetes.io/is-default-class",
            "storageclass.beta.kubernetes.io/is-default-class",
        ]
        .iter()
        .any(|k| c["metadata"]["annotations"][*k] == "true")
    };
    let classes = classes.list(None).await;
    let newest = classes
        .iter()
        .filter(|c| is_default(c))
        .max_by_key(|c| c["metadata"]["creationTimestamp"].as_str().unwrap_or("").to_owned());
    if let Some(class) = newest {
        claim["spec"]["storageClassName"] = class["metadata"]["name"].clone();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_tolerate_node_failure_for_five_minutes() {
        let info = keelson_api::Registry::builtin().find("", "v1", "pods").expect("pods");
        let user = crate::request::User::default();
        let a = Attributes {
            user: &user,
            info,
            namespace: "ns",
            name: "p",
            subresource: "",
            operation: super::super::Operation::Create,
            old: None,
            dry_run: false,
        };
        let mut pod = json!({ "spec": { "tolerations": [{ "key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5 }] } });
        toleration_seconds(&a, &mut pod);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                { "key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5 },
                { "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 },
            ])
        );
        // A toleration of every taint covers both.
        let mut pod = json!({ "spec": { "tolerations": [{ "operator": "Exists" }] } });
        toleration_seconds(&a, &mut pod);
        assert_eq!(pod["spec"]["tolerations"].as_array().map(Vec::len), Some(1));
    }
}

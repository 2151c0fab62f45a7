//! ControllerRevisions as the DaemonSet and StatefulSet controllers record their pod
//! templates (upstream's `pkg/controller/history` and the `getPatch`/`ApplyRevision`
//! pair both controllers have): a revision's data is the strategic merge patch
//! `{"spec":{"template":{…,"$patch":"replace"}}}`, so `kubectl rollout undo` can apply
//! it to the owner as it is; its name is `<owner>-<hash>` and it carries the hash as
//! the `controller-revision-hash` label.
//!
//! Pure, except [`claim`], which adopts and releases through the API.

use std::collections::BTreeMap;
use std::sync::Arc;

use keelson_api::k8s_openapi::api::apps::v1::ControllerRevision;
use keelson_api::k8s_openapi::api::core::v1::PodTemplateSpec;
use keelson_api::k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use keelson_runtime::informer::Informer;
use kube::api::{Api, ObjectMeta};
use kube::{Client, Resource};
use serde_json::{Value, json};

use crate::deployment::util::template_hash;
use crate::ownership::Claimer;
use crate::pods::controller_ref;
use crate::replicaset::NAMESPACE_INDEX;

/// The label with a revision's hash (`ControllerRevisionHashLabel`); pods carry it too.
pub const HASH_LABEL: &str = "controller-revision-hash";

/// The patch a revision records for `template` (upstream's `getPatch`).
pub fn patch_data(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or_default();
    if let Value::Object(map) = &mut template {
        map.insert("$patch".into(), json!("replace"));
    }
    json!({ "spec": { "template": template } })
}

/// The template a revision records (what `ApplyRevision` puts in the owner's spec).
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Value::Object(map) = &mut template {
        map.remove("$patch");
    }
    serde_json::from_value(template).ok()
}

/// Whether `revision` records `data` (upstream's `EqualRevision`, comparing the JSON).
pub fn records(revision: &ControllerRevision, data: &Value) -> bool {
    revision.data.as_ref().map(|d| &d.0) == Some(data)
}

/// The revision's hash label.
pub fn hash_of(revision: &ControllerRevision) -> String {
    revision.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)).cloned().unwrap_or_default()
}

pub fn name_of(revision: &ControllerRevision) -> String {
    revision.metadata.name.clone().unwrap_or_default()
}

/// A new revision of `owner` for `template` (upstream's `NewControllerRevision`): named
/// `<owner>-<hash>`, the template's labels and the hash label, the owner's annotations,
/// the owner as controller.
pub fn new_revision(
    owner: &ObjectMeta,
    (api_version, kind): (&str, &str),
    template: &PodTemplateSpec,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let hash = template_hash(template, collision_count);
    let mut labels: BTreeMap<String, String> =
        template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", owner.name.as_deref().unwrap_or_default())),
            namespace: owner.namespace.clone(),
            labels: Some(labels),
            annotations: owner.annotations.clone(),
            owner_references: Some(vec![controller_ref(api_version, kind, owner)]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(patch_data(template))),
        revision,
    }
}

/// Oldest first: by revision number, then name (upstream's `SortControllerRevisions`).
pub fn sort(revisions: &mut [Arc<ControllerRevision>]) {
    revisions.sort_by(|a, b| a.revision.cmp(&b.revision).then_with(|| name_of(a).cmp(&name_of(b))));
}

/// The revisions `owner` controls after claiming its namespace's revisions that
/// `selects` matches (upstream's `ListControllerRevisions` and
/// `AdoptControllerRevision`).
pub async fn claim<O>(
    client: &Client,
    revisions: &Informer<ControllerRevision>,
    owner: &O,
    (api_version, kind): (&str, &str),
    selects: impl Fn(&ControllerRevision) -> bool,
) -> Result<Vec<Arc<ControllerRevision>>, kube::Error>
where
    O: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let namespace = owner.meta().namespace.clone().unwrap_or_default();
    let owners: Api<O> = Api::namespaced(client.clone(), &namespace);
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    let candidates = revisions.by_index(NAMESPACE_INDEX, &namespace);
    let reference = controller_ref(api_version, kind, owner.meta());
    Claimer::new(&owners, owner, reference).claim(&api, candidates, selects).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revision_gives_back_its_template() {
        let template: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": { "labels": { "app": "web" } },
            "spec": { "containers": [{ "name": "c", "image": "nginx:1" }] },
        }))
        .expect("template");
        let owner = ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("u".into()),
            ..ObjectMeta::default()
        };
        let revision = new_revision(&owner, ("apps/v1", "StatefulSet"), &template, 3, None);
        assert_eq!(
            revision.data.as_ref().expect("data").0["spec"]["template"]["$patch"],
            "replace"
        );
        assert_eq!(template_of(&revision), Some(template.clone()));
        let hash = hash_of(&revision);
        assert_eq!(name_of(&revision), format!("web-{hash}"));
        assert_eq!(revision.metadata.labels.as_ref().expect("labels")["app"], "web");
        assert!(records(&revision, &patch_data(&template)));
        let other = new_revision(&owner, ("apps/v1", "StatefulSet"), &template, 3, Some(1));
        assert_ne!(hash_of(&other), hash, "a collision count changes the name");
    }
}

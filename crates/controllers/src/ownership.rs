//! Claiming objects by selector (upstream's `ControllerRefManager`): a controller owns
//! what carries its controller reference; it adopts orphans its selector matches and
//! releases what it owns that its selector no longer matches — both by patches with
//! the object's uid as precondition, so a recreated object of the same name is never
//! touched.
//!
//! Must never take an object another controller owns, nor adopt while its owner is
//! being deleted (or was replaced: [`Claimer`] checks a fresh copy of the owner once
//! before the first adoption).

use std::sync::Arc;

use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::pods::controller_of;

/// What to do with one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Ours and matching.
    Keep,
    /// An orphan that matches: take it.
    Adopt,
    /// Ours but no longer matching: let it go.
    Release,
    /// Someone else's, or not ours to take.
    Ignore,
}

/// Upstream's `ClaimObject` decision for `object` by `owner` (which is being deleted
/// when its `deletion_timestamp` is set).
pub fn classify(owner: &ObjectMeta, object: &ObjectMeta, matches: bool) -> Claim {
    let owner_deleting = owner.deletion_timestamp.is_some();
    if let Some(reference) = controller_of(object) {
        if Some(&reference.uid) != owner.uid.as_ref() {
            return Claim::Ignore;
        }
        return match (matches, owner_deleting) {
            (true, _) => Claim::Keep,
            (false, true) => Claim::Ignore,
            (false, false) => Claim::Release,
        };
    }
    if owner_deleting
        || !matches
        || object.deletion_timestamp.is_some()
        || owner.namespace.as_deref().is_some_and(|ns| Some(ns) != object.namespace.as_deref())
    {
        return Claim::Ignore;
    }
    Claim::Adopt
}

/// Adopts and releases for one owner, checking the owner afresh before the first
/// adoption (upstream's `RecheckDeletionTimestamp`).
pub struct Claimer<'a, O: Resource> {
    pub owners: &'a Api<O>,
    pub owner: &'a O,
    pub reference: OwnerReference,
    /// `None` until checked; then whether adoption is allowed.
    can_adopt: Option<bool>,
}

impl<'a, O> Claimer<'a, O>
where
    O: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    pub fn new(owners: &'a Api<O>, owner: &'a O, reference: OwnerReference) -> Self {
        Claimer { owners, owner, reference, can_adopt: None }
    }

    async fn can_adopt(&mut self) -> Result<bool, kube::Error> {
        if let Some(ok) = self.can_adopt {
            return Ok(ok);
        }
        let name = self.owner.meta().name.clone().unwrap_or_default();
        let fresh = self.owners.get_opt(&name).await?;
        let ok = fresh.is_some_and(|f| {
            f.meta().uid == self.owner.meta().uid && f.meta().deletion_timestamp.is_none()
        });
        self.can_adopt = Some(ok);
        Ok(ok)
    }

    /// Claims `objects` through `api`: returns the ones now owned.
    pub async fn claim<K>(
        &mut self,
        api: &Api<K>,
        objects: Vec<Arc<K>>,
        matches: impl Fn(&K) -> bool,
    ) -> Result<Vec<Arc<K>>, kube::Error>
    where
        K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let mut owned = Vec::new();
        for object in objects {
            match classify(self.owner.meta(), object.meta(), matches(&object)) {
                Claim::Keep => owned.push(object),
                Claim::Ignore => {}
                Claim::Adopt => {
                    if !self.can_adopt().await? {
                        continue;
                    }
                    let patch = json!({ "metadata": {
                        "ownerReferences": [&self.reference],
                        "uid": object.meta().uid,
                    }});
                    if let Some(adopted) = patched(api, object.meta(), &patch).await? {
                        owned.push(Arc::new(adopted));
                    }
                }
                Claim::Release => {
                    let patch = json!({ "metadata": {
                        "ownerReferences": [{ "$patch": "delete", "uid": self.reference.uid }],
                        "uid": object.meta().uid,
                    }});
                    patched(api, object.meta(), &patch).await?;
                }
            }
        }
        Ok(owned)
    }
}

/// A strategic merge patch; `None` when the object is gone or was replaced.
async fn patched<K>(
    api: &Api<K>,
    meta: &ObjectMeta,
    patch: &serde_json::Value,
) -> Result<Option<K>, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = meta.name.as_deref().unwrap_or_default();
    match api.patch(name, &PatchParams::default(), &Patch::Strategic(patch)).await {
        Ok(object) => Ok(Some(object)),
        Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409 | 422) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use keelson_api::k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::pods::controller_ref;

    fn meta(uid: &str, owner: Option<&str>) -> ObjectMeta {
        let mut m = ObjectMeta {
            name: Some(uid.into()),
            namespace: Some("ns".into()),
            uid: Some(uid.into()),
            ..ObjectMeta::default()
        };
        if let Some(owner) = owner {
            let mut r = controller_ref("apps/v1", "ReplicaSet", &meta(owner, None));
            r.uid = owner.into();
            m.owner_references = Some(vec![r]);
        }
        m
    }

    #[test]
    fn claims_follow_upstream() {
        let rs = meta("rs", None);
        assert_eq!(classify(&rs, &meta("p", Some("rs")), true), Claim::Keep);
        assert_eq!(classify(&rs, &meta("p", Some("rs")), false), Claim::Release);
        assert_eq!(classify(&rs, &meta("p", Some("other")), true), Claim::Ignore);
        assert_eq!(classify(&rs, &meta("p", None), true), Claim::Adopt);
        assert_eq!(classify(&rs, &meta("p", None), false), Claim::Ignore);
        let mut deleting = meta("p", None);
        deleting.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert_eq!(classify(&rs, &deleting, true), Claim::Ignore, "a pod being deleted");
        let mut elsewhere = meta("p", None);
        elsewhere.namespace = Some("other".into());
        assert_eq!(classify(&rs, &elsewhere, true), Claim::Ignore);
        let mut going = rs.clone();
        going.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert_eq!(classify(&going, &meta("p", None), true), Claim::Ignore);
        assert_eq!(classify(&going, &meta("p", Some("rs")), false), Claim::Ignore);
    }
}

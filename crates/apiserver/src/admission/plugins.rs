//! The admission plugins by name: every name upstream's kube-apiserver knows, in its
//! order (`AllOrderedPlugins` in `pkg/kubeapiserver/options/plugins.go`), which of them
//! are on by default (upstream's default-on set, plus NodeRestriction: Keelson is secure
//! by default), which Keelson implements, and the chain an
//! `--enable-admission-plugins`/`--disable-admission-plugins` choice selects — always in
//! upstream's order, whatever order the flags list.
//!
//! Adding a plugin: one row in [`IMPLEMENTED`]; its name is already in [`ALL_ORDERED`].

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use super::lister::{Lister, Sources};
use super::{Attributes, Chain, Mutating, Operation, Plugin, Server, Validating};
use crate::status::ApiResult;

/// Upstream's `AllOrderedPlugins`: every admission plugin name, in the order they run.
pub const ALL_ORDERED: &[&str] = &[
    "AlwaysAdmit",
    "NamespaceAutoProvision",
    "NamespaceLifecycle",
    "NamespaceExists",
    "LimitPodHardAntiAffinityTopology",
    "LimitRanger",
    "ServiceAccount",
    "NodeRestriction",
    "TaintNodesByCondition",
    "AlwaysPullImages",
    "ImagePolicyWebhook",
    "PodSecurity",
    "PodNodeSelector",
    "Priority",
    "DefaultTolerationSeconds",
    "PodTolerationRestriction",
    "EventRateLimit",
    "ExtendedResourceToleration",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "PodGroupProtection",
    "OwnerReferencesPermissionEnforcement",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "DenyServiceExternalIPs",
    "PodTopologyLabels",
    "PodGroupWorkloadExists",
    "NodeDeclaredFeatureValidator",
    "JobValidation",
    "PodResizeValidator",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
    "AlwaysDeny",
];

/// Upstream's default-on plugins (the complement of `DefaultOffAdmissionPlugins`), and
/// NodeRestriction, which kubeadm and k3s enable and Keelson turns on by default.
pub const DEFAULT_ON: &[&str] = &[
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "NodeRestriction",
    "DefaultStorageClass",
    "PersistentVolumeClaimResize",
    "DefaultTolerationSeconds",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
    "StorageObjectInUseProtection",
    "PodGroupProtection",
    "Priority",
    "TaintNodesByCondition",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "PodSecurity",
    "PodTopologyLabels",
    "MutatingAdmissionPolicy",
    "ValidatingAdmissionPolicy",
    "PodGroupWorkloadExists",
    "NodeDeclaredFeatureValidator",
    "JobValidation",
    "PodResizeValidator",
];

/// What a plugin is built from: the read handles, the server for the plugins not yet
/// narrowed, and the settings of those that have some.
#[derive(Clone)]
pub struct Init {
    pub sources: Sources,
    pub server: Server,
    /// The authorizer, for the plugins that ask it (certificate approval and signing).
    pub authorizer: Arc<crate::auth::Authorizer>,
    pub pod_security: super::podsecurity::Config,
    /// Whether service account tokens are served (ServiceAccount mounts them).
    pub service_accounts: bool,
}

impl Init {
    fn lister(&self, group: &str, plural: &str) -> Result<Lister, Error> {
        self.sources.lister(group, plural).ok_or_else(|| Error::NoResource(plural.to_owned()))
    }
}

type Factory = fn(&Init) -> Result<Box<dyn Plugin>, Error>;

/// The plugins Keelson implements, by upstream name. Every other name of
/// [`ALL_ORDERED`] is known but not implemented: naming it in
/// `--enable-admission-plugins` is refused, in `--disable-admission-plugins` accepted.
pub const IMPLEMENTED: &[(&str, Factory)] = &[
    ("AlwaysAdmit", |_| Ok(Box::new(AlwaysAdmit))),
    ("NamespaceLifecycle", |init| {
        Ok(Box::new(super::lifecycle::NamespaceLifecycle::new(init.lister("", "namespaces")?)))
    }),
    ("LimitRanger", |init| {
        Ok(Box::new(super::limitranger::LimitRanger::new(init.lister("", "limitranges")?)))
    }),
    ("ServiceAccount", |init| {
        let accounts = match init.service_accounts {
            true => Some(init.lister("", "serviceaccounts")?),
            false => None,
        };
        Ok(Box::new(super::serviceaccount::ServiceAccount::new(accounts)))
    }),
    ("NodeRestriction", |init| {
        Ok(Box::new(super::noderestriction::NodeRestriction::new(init.lister("", "pods")?)))
    }),
    ("PodSecurity", |init| {
        Ok(Box::new(super::podsecurity::PodSecurity::new(
            init.pod_security.clone(),
            init.lister("", "namespaces")?,
            init.lister("", "pods")?,
        )))
    }),
    ("Priority", |init| {
        let classes = init.lister("scheduling.k8s.io", "priorityclasses")?;
        Ok(Box::new(super::defaults::Priority::new(classes)))
    }),
    ("DefaultTolerationSeconds", |_| Ok(Box::new(super::defaults::DefaultTolerationSeconds))),
    ("DefaultStorageClass", |init| {
        let classes = init.lister("storage.k8s.io", "storageclasses")?;
        Ok(Box::new(super::defaults::DefaultStorageClass::new(classes)))
    }),
    ("CertificateApproval", |init| {
        Ok(Box::new(super::certificates::CertificateApproval(init.authorizer.clone())))
    }),
    ("CertificateSigning", |init| {
        Ok(Box::new(super::certificates::CertificateSigning(init.authorizer.clone())))
    }),
    ("CertificateSubjectRestriction", |_| {
        Ok(Box::new(super::certificates::CertificateSubjectRestriction))
    }),
    ("MutatingAdmissionWebhook", |init| {
        Ok(Box::new(super::webhook::MutatingAdmissionWebhook(init.server.clone())))
    }),
    ("ValidatingAdmissionPolicy", |init| {
        Ok(Box::new(super::policy::ValidatingAdmissionPolicy(init.server.clone())))
    }),
    ("ValidatingAdmissionWebhook", |init| {
        Ok(Box::new(super::webhook::ValidatingAdmissionWebhook(init.server.clone())))
    }),
    ("ResourceQuota", |init| {
        Ok(Box::new(super::resourcequota::ResourceQuota(init.server.clone())))
    }),
    ("AlwaysDeny", |_| Ok(Box::new(AlwaysDeny))),
];

/// Why a choice of plugins is refused, in kube-apiserver's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("enable-admission-plugins plugin {0:?} is unknown")]
    UnknownEnabled(String),
    #[error("disable-admission-plugins plugin {0:?} is unknown")]
    UnknownDisabled(String),
    #[error("[{}] in enable-admission-plugins and disable-admission-plugins overlapped", .0.join(" "))]
    Overlapped(Vec<String>),
    #[error("admission plugin {0:?} is not implemented by keelson")]
    NotImplemented(String),
    #[error("admission needs the built-in resource {0:?}, which is not registered")]
    NoResource(String),
}

/// The `--enable-admission-plugins` and `--disable-admission-plugins` choice: plugins
/// turned on beyond the defaults, and plugins turned off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub enable: Vec<String>,
    pub disable: Vec<String>,
}

impl Selection {
    /// The enabled plugins in upstream's order (upstream's `enabledPluginNames`), or
    /// why the choice is refused.
    pub fn resolve(&self) -> Result<Vec<&'static str>, Error> {
        if let Some(name) = self.enable.iter().find(|n| !ALL_ORDERED.contains(&n.as_str())) {
            return Err(Error::UnknownEnabled(name.clone()));
        }
        if let Some(name) = self.disable.iter().find(|n| !ALL_ORDERED.contains(&n.as_str())) {
            return Err(Error::UnknownDisabled(name.clone()));
        }
        let enable: BTreeSet<&str> = self.enable.iter().map(String::as_str).collect();
        let disable: BTreeSet<&str> = self.disable.iter().map(String::as_str).collect();
        let overlap: Vec<String> = enable.intersection(&disable).map(|n| n.to_string()).collect();
        if !overlap.is_empty() {
            return Err(Error::Overlapped(overlap));
        }
        if let Some(name) = enable.iter().find(|n| factory(n).is_none()) {
            return Err(Error::NotImplemented(name.to_string()));
        }
        Ok(ALL_ORDERED
            .iter()
            .copied()
            .filter(|n| factory(n).is_some())
            .filter(|n| enable.contains(n) || (DEFAULT_ON.contains(n) && !disable.contains(n)))
            .collect())
    }
}

fn factory(name: &str) -> Option<Factory> {
    IMPLEMENTED.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// The chain of the named plugins, in the order given (a [`Selection::resolve`]d list).
pub fn chain(names: &[&'static str], init: &Init) -> Result<Chain, Error> {
    let mut plugins = Vec::new();
    for name in names {
        let build = factory(name).ok_or_else(|| Error::NotImplemented(name.to_string()))?;
        plugins.push((*name, build(init)?));
    }
    Ok(Chain::new(plugins))
}

/// AlwaysAdmit: admits everything (deprecated upstream, kept for its name).
pub struct AlwaysAdmit;

impl Plugin for AlwaysAdmit {
    fn handles(&self, _: Operation) -> bool {
        true
    }
}

/// AlwaysDeny: refuses every write (upstream's, for tests).
pub struct AlwaysDeny;

impl Plugin for AlwaysDeny {
    fn handles(&self, _: Operation) -> bool {
        true
    }

    fn mutating(&self) -> Option<&dyn Mutating> {
        Some(self)
    }

    fn validating(&self) -> Option<&dyn Validating> {
        Some(self)
    }
}

const DENY_ALL: &str = "admission control is denying all modifications";

#[async_trait::async_trait]
impl Mutating for AlwaysDeny {
    async fn admit(&self, a: &Attributes<'_>, _: Option<&mut Value>) -> ApiResult<Vec<String>> {
        Err(a.forbidden(DENY_ALL))
    }
}

#[async_trait::async_trait]
impl Validating for AlwaysDeny {
    async fn validate(&self, a: &Attributes<'_>, _: Option<&Value>) -> ApiResult<Vec<String>> {
        Err(a.forbidden(DENY_ALL))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selection(enable: &[&str], disable: &[&str]) -> Selection {
        let owned = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        Selection { enable: owned(enable), disable: owned(disable) }
    }

    #[test]
    fn every_implemented_and_default_plugin_has_an_upstream_name_once() {
        for (name, _) in IMPLEMENTED {
            assert!(ALL_ORDERED.contains(name), "{name} is not an upstream plugin");
        }
        for name in DEFAULT_ON {
            assert!(ALL_ORDERED.contains(name), "{name} is not an upstream plugin");
        }
        let mut names: Vec<&str> = ALL_ORDERED.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL_ORDERED.len(), "a name is listed twice");
    }

    #[test]
    fn the_defaults_are_what_ran_before_in_upstream_order() -> Result<(), Error> {
        assert_eq!(
            Selection::default().resolve()?,
            [
                "NamespaceLifecycle",
                "LimitRanger",
                "ServiceAccount",
                "NodeRestriction",
                "PodSecurity",
                "Priority",
                "DefaultTolerationSeconds",
                "DefaultStorageClass",
                "CertificateApproval",
                "CertificateSigning",
                "CertificateSubjectRestriction",
                "MutatingAdmissionWebhook",
                "ValidatingAdmissionPolicy",
                "ValidatingAdmissionWebhook",
                "ResourceQuota",
            ]
        );
        Ok(())
    }

    #[test]
    fn the_order_is_upstreams_whatever_order_the_flags_list() -> Result<(), Error> {
        let one = selection(&["AlwaysDeny", "AlwaysAdmit"], &["ResourceQuota", "LimitRanger"]);
        let other = selection(&["AlwaysAdmit", "AlwaysDeny"], &["LimitRanger", "ResourceQuota"]);
        let enabled = one.resolve()?;
        assert_eq!(enabled, other.resolve()?);
        assert_eq!(enabled.first(), Some(&"AlwaysAdmit"));
        assert_eq!(enabled.get(1), Some(&"NamespaceLifecycle"));
        assert_eq!(enabled.last(), Some(&"AlwaysDeny"));
        assert!(!enabled.contains(&"LimitRanger") && !enabled.contains(&"ResourceQuota"));
        // Enabling a default-on plugin changes nothing; disabling one that Keelson does
        // not implement is accepted.
        let defaults = Selection::default().resolve()?;
        assert_eq!(selection(&["PodSecurity", "NodeRestriction"], &[]).resolve()?, defaults);
        assert_eq!(selection(&[], &["AlwaysPullImages", "RuntimeClass"]).resolve()?, defaults);
        Ok(())
    }

    #[test]
    fn unknown_overlapping_and_unimplemented_names_are_refused() {
        let refused = |s: Selection| s.resolve().err().map(|e| e.to_string());
        assert_eq!(
            refused(selection(&["NodeRestriction", "Nope"], &[])).as_deref(),
            Some("enable-admission-plugins plugin \"Nope\" is unknown")
        );
        assert_eq!(
            refused(selection(&[], &["namespacelifecycle"])).as_deref(),
            Some("disable-admission-plugins plugin \"namespacelifecycle\" is unknown")
        );
        assert_eq!(
            refused(selection(&["Priority", "LimitRanger"], &["LimitRanger", "Priority"]))
                .as_deref(),
            Some(
                "[LimitRanger Priority] in enable-admission-plugins and disable-admission-plugins overlapped"
            )
        );
        assert_eq!(
            refused(selection(&["AlwaysPullImages"], &[])).as_deref(),
            Some("admission plugin \"AlwaysPullImages\" is not implemented by keelson")
        );
    }

    fn init(service_accounts: bool) -> anyhow::Result<Init> {
        let store: std::sync::Arc<dyn keelson_store::Store> =
            std::sync::Arc::new(keelson_store::memory::open()?);
        let caches = std::sync::Arc::new(crate::cache::Caches::new(store.clone()));
        Ok(Init {
            sources: Sources::over(store),
            server: Server::pending(),
            authorizer: std::sync::Arc::new(crate::auth::Authorizer::new(caches)),
            pod_security: Default::default(),
            service_accounts,
        })
    }

    #[test]
    fn every_implemented_plugin_builds() -> anyhow::Result<()> {
        let everything: Vec<&'static str> = IMPLEMENTED.iter().map(|(name, _)| *name).collect();
        for service_accounts in [true, false] {
            let chain = chain(&everything, &init(service_accounts)?)?;
            assert_eq!(chain.names(), everything);
        }
        let unimplemented = chain(&["AlwaysPullImages"], &init(false)?).err();
        assert_eq!(unimplemented, Some(Error::NotImplemented("AlwaysPullImages".into())));
        Ok(())
    }

    #[tokio::test]
    async fn the_chain_runs_mutating_halves_then_validating_halves_in_order() -> anyhow::Result<()>
    {
        let init = init(false)?;
        // Without the plugins that need a running server.
        let server_bound = [
            "MutatingAdmissionWebhook",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionWebhook",
            "ResourceQuota",
        ];
        let names = selection(&["AlwaysAdmit", "AlwaysDeny"], &server_bound).resolve()?;
        let chain = chain(&names, &init)?;
        assert_eq!(chain.names(), names);
        assert_eq!(chain.mutating().first(), Some(&"NamespaceLifecycle"));
        assert_eq!(chain.mutating().last(), Some(&"AlwaysDeny"));
        assert_eq!(chain.validating().first(), Some(&"LimitRanger"));
        assert_eq!(chain.validating().last(), Some(&"AlwaysDeny"));
        assert!(!chain.mutating().contains(&"AlwaysAdmit"));
        // The others let a cluster-scoped write through; AlwaysDeny refuses it.
        let info = keelson_api::Registry::builtin()
            .find("rbac.authorization.k8s.io", "v1", "clusterroles")
            .ok_or_else(|| anyhow::anyhow!("clusterroles"))?;
        let user = crate::request::User::default();
        let a = Attributes {
            user: &user,
            info,
            namespace: "",
            name: "r",
            subresource: "",
            operation: Operation::Create,
            old: None,
            dry_run: false,
        };
        let refused =
            chain.run(&Default::default(), &a, Some(&mut serde_json::json!({}))).await.err();
        assert_eq!(
            refused.map(|e| e.message).as_deref(),
            Some(
                "clusterroles.rbac.authorization.k8s.io \"r\" is forbidden: admission control is denying all modifications"
            )
        );
        Ok(())
    }
}

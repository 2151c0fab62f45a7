//! What differs between resources, as upstream's per-resource `Strategy` says it
//! (`pkg/registry/<group>/<resource>/strategy.go`): the [`Strategy`] trait, one
//! implementation per resource in `registry/<group>/<resource>.rs`, and [`BUILTIN`], the
//! one table that names them.
//!
//! A built-in resource is either in [`BUILTIN`] or in the tests' `GENERIC` list (generic
//! on purpose, with the reason); a test fails on any other, so a new resource cannot silently get the
//! generic rules. Must never hold behaviour that applies to every resource: that belongs
//! in the generic store (`registry/mod.rs`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::LazyLock;

use keelson_api::ResourceInfo;
use serde_json::Value;

use super::selector::SelectableField;
use super::{
    apiextensions, apiregistration, apps, autoscaling, batch, certificates, coordination, core,
    discovery, events, flowcontrol, networking, policy, rbac, resource, scheduling, storage,
};
use crate::meta::NameRule;
use crate::request::User;
use crate::status::Cause;
use crate::table::{self, Printer};

/// One resource's rules. Every method has the generic behaviour as its default, so an
/// implementation says only what differs.
pub trait Strategy: Sync {
    /// The rule `metadata.name` follows.
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// Whether `metadata.generation` starts at 1 and goes up when anything but metadata
    /// and status changes (upstream sets it in these resources' `PrepareForCreate`).
    fn tracks_generation(&self) -> bool {
        false
    }

    /// Field selectors beyond `metadata.name` and `metadata.namespace`, read as
    /// upstream's `ToSelectableFields` reads them.
    fn field_selectors(&self) -> Cow<'static, [SelectableField]> {
        Cow::Borrowed(&[])
    }

    /// Upstream's `SetDefaults_*` (`pkg/apis/<group>/v1/defaults.go`): run on every
    /// decode; must never overwrite a value the client set.
    fn defaults(&self, _object: &mut Value) {}

    /// Upstream's conversion between the versions a kind is served in
    /// (`pkg/apis/<group>/<version>/conversion.go`, through the internal type): the
    /// object, in its `apiVersion`, rewritten in `to_version` of the same group. Only
    /// kinds whose versions differ, stored in one of them, have one.
    fn convert(&self, _object: &mut Value, _to_version: &str) {}

    /// What a new object takes from the authenticated user who creates it, whatever the
    /// body claims.
    fn set_creator(&self, _object: &mut Value, _user: &User) {}

    /// Whether a new object keeps the status it was sent with. Upstream resets the
    /// status of every resource with a status subresource on create, so that only
    /// `…/status` writes it, except nodes and service CIDRs.
    fn keeps_status_on_create(&self) -> bool {
        false
    }

    /// The status a new object starts with when it does not keep its own, if not the
    /// empty status of its type (what Go prints of the zero status struct).
    fn empty_status(&self) -> Option<Value> {
        None
    }

    /// Upstream's `PrepareForCreate`: what the server sets on a new object, after the
    /// generic store reset its status.
    fn prepare_create(&self, _object: &mut Value) {}

    /// Upstream's `PrepareForUpdate`: what an update through `subresource` may change
    /// beyond the generic rules, given the stored object.
    fn prepare_update(&self, _subresource: Option<&str>, _old: &Value, _new: &mut Value) {}

    /// Upstream's `Validate`: problems of a new object.
    fn validate(&self, _object: &Value, _causes: &mut Vec<Cause>) {}

    /// Upstream's `ValidateUpdate`: the object's own rules and what may not change.
    fn validate_update(
        &self,
        _old: &Value,
        new: &Value,
        _subresource: Option<&str>,
        causes: &mut Vec<Cause>,
    ) {
        self.validate(new, causes);
    }

    /// Whether DELETE answers with the object rather than a success `Status`.
    fn return_deleted_object(&self) -> bool {
        false
    }

    /// Upstream's `CheckGracefulDelete`: how long a deletion of `object` waits, given the
    /// grace period asked for; 0 deletes at once.
    fn deletion_grace_seconds(&self, _object: &Value, _requested: Option<i64>) -> i64 {
        0
    }

    /// Whether a deletion of `object` only marks it, for something other than its
    /// finalizers to finish (a namespace's `spec.finalizers`).
    fn held_on_delete(&self, _object: &Value) -> bool {
        false
    }

    /// What an object held on delete shows while it waits.
    fn prepare_held_delete(&self, _object: &mut Value) {}

    /// How `kubectl get` prints the objects.
    fn printer(&self) -> Printer {
        Printer::DEFAULT
    }
}

/// Whether the resource has a `status` subresource, so that updates of the object keep
/// the stored status and updates of `/status` keep everything else.
pub fn has_status(info: &ResourceInfo) -> bool {
    info.subresources.iter().any(|s| s.name == "status")
}

/// The generic rules, for the resources with none of their own (the tests' `GENERIC`).
pub struct Generic;

impl Strategy for Generic {}

/// A resource whose only differences are its printer, whether it tracks generation and
/// whether a new object keeps its status.
pub struct Simple {
    pub printer: Printer,
    pub tracks_generation: bool,
    pub keeps_status: bool,
}

impl Simple {
    const fn printed(printer: Printer) -> Simple {
        Simple { printer, tracks_generation: false, keeps_status: false }
    }

    const fn tracked(printer: Printer) -> Simple {
        Simple { printer, tracks_generation: true, keeps_status: false }
    }

    /// Upstream's service CIDR strategy leaves the status of a new object alone.
    const fn keeping_status(printer: Printer) -> Simple {
        Simple { printer, tracks_generation: false, keeps_status: true }
    }
}

impl Strategy for Simple {
    fn tracks_generation(&self) -> bool {
        self.tracks_generation
    }

    fn keeps_status_on_create(&self) -> bool {
        self.keeps_status
    }

    fn printer(&self) -> Printer {
        self.printer
    }
}

/// Upstream's custom resource strategy: generation starts at 1 and follows the spec;
/// with a status subresource, a new object's status is the server's to set (the generic
/// store drops it); the schema validates; `selectableFields` select;
/// `additionalPrinterColumns` print.
pub struct CustomResource {
    /// The CustomResourceDefinition's version, as the API server built it.
    version: &'static Value,
}

impl Strategy for CustomResource {
    fn tracks_generation(&self) -> bool {
        true
    }

    /// A custom resource's `selectableFields` (`.spec.color` selects as `spec.color`).
    fn field_selectors(&self) -> Cow<'static, [SelectableField]> {
        let version: &'static Value = self.version;
        let fields = version["selectableFields"].as_array().into_iter().flatten();
        Cow::Owned(
            fields
                .filter_map(|f| f["jsonPath"].as_str())
                .map(|p| SelectableField::string(p.trim_start_matches('.')))
                .collect(),
        )
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        causes.extend(crate::structural::validation::validate(self.version, object, None));
    }

    fn validate_update(
        &self,
        old: &Value,
        new: &Value,
        _subresource: Option<&str>,
        causes: &mut Vec<Cause>,
    ) {
        causes.extend(crate::structural::validation::validate(self.version, new, Some(old)));
    }

    fn printer(&self) -> Printer {
        Printer::Custom(self.version)
    }
}

/// The strategy of one resource: a registered built-in one, or a custom resource's.
pub enum ResourceStrategy {
    Builtin(&'static dyn Strategy),
    Custom(CustomResource),
}

impl Deref for ResourceStrategy {
    type Target = dyn Strategy;

    fn deref(&self) -> &(dyn Strategy + 'static) {
        match self {
            ResourceStrategy::Builtin(strategy) => *strategy,
            ResourceStrategy::Custom(strategy) => strategy,
        }
    }
}

/// The strategy of `info`'s resource.
pub fn for_resource(info: &ResourceInfo) -> ResourceStrategy {
    match info.custom {
        Some(version) => ResourceStrategy::Custom(CustomResource { version }),
        None => ResourceStrategy::Builtin(builtin(info.group, info.plural)),
    }
}

/// The strategy of the built-in resource `plural` of `group`; [`Generic`] when none is
/// registered.
pub fn builtin(group: &str, plural: &str) -> &'static dyn Strategy {
    static INDEX: LazyLock<HashMap<(&str, &str), &'static dyn Strategy>> =
        LazyLock::new(|| BUILTIN.iter().map(|&(g, p, s)| ((g, p), s)).collect());
    INDEX.get(&(group, plural)).copied().unwrap_or(&Generic)
}

/// Every built-in resource with rules of its own, by group and plural.
pub static BUILTIN: &[(&str, &str, &dyn Strategy)] = &[
    ("", "componentstatuses", &Simple::printed(table::core::COMPONENT_STATUS)),
    ("", "configmaps", &core::configmaps::ConfigMaps),
    ("", "endpoints", &Simple::printed(table::networking::ENDPOINTS)),
    ("", "events", &core::events::Events),
    ("", "limitranges", &core::limitranges::LimitRanges),
    ("", "namespaces", &core::namespaces::Namespaces),
    ("", "nodes", &core::nodes::Nodes),
    ("", "persistentvolumeclaims", &core::persistentvolumeclaims::PersistentVolumeClaims),
    ("", "persistentvolumes", &core::persistentvolumes::PersistentVolumes),
    ("", "pods", &core::pods::Pods),
    ("", "podtemplates", &core::podtemplates::PodTemplates),
    ("", "replicationcontrollers", &core::replicationcontrollers::ReplicationControllers),
    ("", "resourcequotas", &core::resourcequotas::ResourceQuotas),
    ("", "secrets", &core::secrets::Secrets),
    ("", "serviceaccounts", &Simple::printed(table::core::SERVICE_ACCOUNT)),
    ("", "services", &core::services::Services),
    ("apiregistration.k8s.io", "apiservices", &apiregistration::apiservices::ApiServices),
    ("apps", "controllerrevisions", &Simple::printed(table::workloads::CONTROLLER_REVISION)),
    ("apps", "daemonsets", &apps::daemonsets::DaemonSets),
    ("apps", "deployments", &apps::deployments::Deployments),
    ("apps", "replicasets", &apps::replicasets::ReplicaSets),
    ("apps", "statefulsets", &apps::statefulsets::StatefulSets),
    ("events.k8s.io", "events", &events::events::Events),
    (
        "autoscaling",
        "horizontalpodautoscalers",
        &autoscaling::horizontalpodautoscalers::HorizontalPodAutoscalers,
    ),
    ("batch", "cronjobs", &batch::cronjobs::CronJobs),
    ("batch", "jobs", &batch::jobs::Jobs),
    (
        "certificates.k8s.io",
        "certificatesigningrequests",
        &certificates::certificatesigningrequests::CertificateSigningRequests,
    ),
    ("networking.k8s.io", "ingressclasses", &Simple::printed(table::networking::INGRESS_CLASS)),
    ("networking.k8s.io", "ingresses", &networking::ingresses::Ingresses),
    ("networking.k8s.io", "ipaddresses", &Simple::printed(table::networking::IP_ADDRESS)),
    ("networking.k8s.io", "networkpolicies", &Simple::tracked(table::networking::NETWORK_POLICY)),
    ("networking.k8s.io", "servicecidrs", &Simple::keeping_status(table::networking::SERVICE_CIDR)),
    ("policy", "poddisruptionbudgets", &policy::poddisruptionbudgets::PodDisruptionBudgets),
    ("rbac.authorization.k8s.io", "clusterrolebindings", &rbac::bindings::CLUSTER_ROLE_BINDINGS),
    ("rbac.authorization.k8s.io", "clusterroles", &rbac::roles::CLUSTER_ROLES),
    ("rbac.authorization.k8s.io", "rolebindings", &rbac::bindings::ROLE_BINDINGS),
    ("rbac.authorization.k8s.io", "roles", &rbac::roles::ROLES),
    ("storage.k8s.io", "csidrivers", &Simple::printed(table::storage::CSI_DRIVER)),
    ("storage.k8s.io", "csinodes", &Simple::printed(table::storage::CSI_NODE)),
    (
        "storage.k8s.io",
        "csistoragecapacities",
        &Simple::printed(table::storage::CSI_STORAGE_CAPACITY),
    ),
    ("storage.k8s.io", "storageclasses", &storage::storageclasses::StorageClasses),
    ("storage.k8s.io", "volumeattachments", &Simple::printed(table::storage::VOLUME_ATTACHMENT)),
    (
        "storage.k8s.io",
        "volumeattributesclasses",
        &Simple::printed(table::storage::VOLUME_ATTRIBUTES_CLASS),
    ),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        &Simple::tracked(table::extensions::MUTATING_WEBHOOK_CONFIGURATION),
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
        &Simple::tracked(table::extensions::VALIDATING_ADMISSION_POLICY),
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
        &Simple::tracked(table::extensions::VALIDATING_ADMISSION_POLICY_BINDING),
    ),
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        &Simple::tracked(table::extensions::VALIDATING_WEBHOOK_CONFIGURATION),
    ),
    (
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        &apiextensions::customresourcedefinitions::CustomResourceDefinitions,
    ),
    ("scheduling.k8s.io", "priorityclasses", &scheduling::priorityclasses::PriorityClasses),
    ("coordination.k8s.io", "leases", &coordination::leases::Leases),
    ("node.k8s.io", "runtimeclasses", &Simple::printed(table::cluster::RUNTIME_CLASS)),
    ("discovery.k8s.io", "endpointslices", &discovery::endpointslices::EndpointSlices),
    ("resource.k8s.io", "deviceclasses", &resource::deviceclasses::DeviceClasses),
    ("resource.k8s.io", "resourceclaims", &resource::resourceclaims::ResourceClaims),
    (
        "resource.k8s.io",
        "resourceclaimtemplates",
        &resource::resourceclaimtemplates::ResourceClaimTemplates,
    ),
    ("resource.k8s.io", "resourceslices", &resource::resourceslices::ResourceSlices),
    ("flowcontrol.apiserver.k8s.io", "flowschemas", &flowcontrol::flowschemas::FLOW_SCHEMAS),
    (
        "flowcontrol.apiserver.k8s.io",
        "prioritylevelconfigurations",
        &flowcontrol::prioritylevelconfigurations::PRIORITY_LEVEL_CONFIGURATIONS,
    ),
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use keelson_api::Registry;
    use serde_json::{Value, json};

    use super::{BUILTIN, CustomResource, Strategy, builtin};
    use crate::request::User;

    /// Built-in resources that follow the generic rules on purpose, and why.
    const GENERIC: &[(&str, &str, &str)] = &[
        ("", "bindings", "create-only: a pod's binding, answered by its handler, never stored"),
        ("authentication.k8s.io", "selfsubjectreviews", "a review: answered, never stored"),
        ("authentication.k8s.io", "tokenreviews", "a review: answered, never stored"),
        ("authorization.k8s.io", "localsubjectaccessreviews", "a review: answered, never stored"),
        ("authorization.k8s.io", "selfsubjectaccessreviews", "a review: answered, never stored"),
        ("authorization.k8s.io", "selfsubjectrulesreviews", "a review: answered, never stored"),
        ("authorization.k8s.io", "subjectaccessreviews", "a review: answered, never stored"),
    ];

    #[test]
    fn every_builtin_resource_is_registered_or_generic_on_purpose() {
        let registered: HashSet<(&str, &str)> = BUILTIN.iter().map(|&(g, p, _)| (g, p)).collect();
        let generic: HashSet<(&str, &str)> = GENERIC.iter().map(|&(g, p, _)| (g, p)).collect();
        assert_eq!(registered.len(), BUILTIN.len(), "a resource registered twice");
        assert_eq!(generic.len(), GENERIC.len(), "a resource listed twice as generic");
        assert!(registered.is_disjoint(&generic), "{:?}", registered.intersection(&generic));
        let served: HashSet<(&str, &str)> =
            Registry::builtin().resources().map(|r| (r.group, r.plural)).collect();
        let missing: Vec<_> =
            served.iter().filter(|r| !registered.contains(r) && !generic.contains(r)).collect();
        assert!(missing.is_empty(), "neither registered nor generic on purpose: {missing:?}");
        let unserved: Vec<_> = registered.union(&generic).filter(|r| !served.contains(r)).collect();
        assert!(unserved.is_empty(), "registered but not served: {unserved:?}");
    }

    /// Each built-in field selector reads what upstream's field set holds: the zero
    /// value of an unset field, and the field upstream names where it differs.
    #[test]
    fn field_selectors_read_as_upstreams_field_sets() {
        let value = |group: &str, plural: &str, field: &str, object: Value| -> String {
            let fields = builtin(group, plural).field_selectors();
            let known = fields.iter().find(|f| f.name == field);
            known.unwrap_or_else(|| panic!("{plural} select no {field}")).value(&object)
        };
        let empty = || json!({ "metadata": { "name": "x" } });
        for (group, plural, field, unset) in [
            ("", "nodes", "spec.unschedulable", "false"),
            ("", "pods", "spec.hostNetwork", "false"),
            ("", "pods", "spec.nodeName", ""),
            ("", "pods", "status.podIP", ""),
            ("", "replicationcontrollers", "status.replicas", "0"),
            ("apps", "replicasets", "status.replicas", "0"),
            ("batch", "jobs", "status.successful", "0"),
            ("", "events", "source", ""),
            ("", "services", "spec.clusterIP", ""),
            ("events.k8s.io", "events", "regarding.kind", ""),
            ("resource.k8s.io", "resourceslices", "spec.nodeName", ""),
            ("resource.k8s.io", "resourceslices", "spec.driver", ""),
        ] {
            assert_eq!(value(group, plural, field, empty()), unset, "{plural} {field}");
        }
        let job = json!({ "status": { "succeeded": 3 } });
        assert_eq!(value("batch", "jobs", "status.successful", job), "3");
        let pod =
            json!({ "spec": { "nodeName": "n1" }, "status": { "podIPs": [{ "ip": "10.0.0.2" }] } });
        assert_eq!(value("", "pods", "status.podIP", pod.clone()), "10.0.0.2");
        assert_eq!(value("", "pods", "spec.host", pod.clone()), "n1");
        assert_eq!(value("", "pods", "status.podIPs", pod), "");
        let event = json!({ "reportingComponent": "kubelet", "source": {} });
        assert_eq!(value("", "events", "source", event), "kubelet");
        let event = json!({ "reportingComponent": "kubelet", "source": { "component": "k" } });
        assert_eq!(value("", "events", "source", event), "k");
        let event = json!({ "reportingController": "c", "deprecatedSource": {} });
        assert_eq!(value("events.k8s.io", "events", "source", event), "c");
    }

    #[test]
    fn a_custom_resource_follows_its_definition() {
        let version: &'static Value = Box::leak(Box::new(json!({
            "name": "v1",
            "selectableFields": [{ "jsonPath": ".spec.color" }],
        })));
        let strategy = CustomResource { version };
        assert!(strategy.tracks_generation());
        let fields = strategy.field_selectors();
        assert_eq!(fields.iter().map(|f| f.name).collect::<Vec<_>>(), ["spec.color"]);
        assert!(!strategy.keeps_status_on_create());
    }

    #[test]
    fn a_certificate_request_names_who_sent_it() {
        let csrs = builtin("certificates.k8s.io", "certificatesigningrequests");
        let mut object = json!({ "spec": { "username": "admin", "groups": ["system:masters"] } });
        let user = User { name: "alice".into(), ..User::default() };
        csrs.set_creator(&mut object, &user);
        assert_eq!(object["spec"], json!({ "username": "alice" }));
        let mut pod = json!({ "spec": {} });
        builtin("", "pods").set_creator(&mut pod, &user);
        assert_eq!(pod, json!({ "spec": {} }), "only requests take their creator");
    }

    #[test]
    fn a_new_job_selects_its_own_pods() {
        let mut job =
            json!({ "metadata": { "name": "pi", "uid": "u1" }, "spec": { "template": {} } });
        builtin("batch", "jobs").prepare_create(&mut job);
        assert_eq!(
            job["spec"]["selector"],
            json!({ "matchLabels": { "batch.kubernetes.io/controller-uid": "u1" } })
        );
        assert_eq!(job["spec"]["template"]["metadata"]["labels"]["job-name"], "pi");
    }

    #[test]
    fn updates_check_what_may_not_change() {
        let old = json!({ "metadata": { "name": "s" }, "type": "Opaque" });
        let new = json!({ "metadata": { "name": "s" }, "type": "kubernetes.io/tls",
            "data": { "tls.crt": "", "tls.key": "" } });
        let mut causes = Vec::new();
        builtin("", "secrets").validate_update(&old, &new, None, &mut causes);
        assert!(
            causes.iter().any(|c| c.field == "type" && c.message.ends_with("field is immutable")),
            "{causes:?}"
        );
        let selector = |app: &str| {
            json!({ "spec": { "selector": { "matchLabels": { "app": app } },
            "template": { "metadata": { "labels": { "app": app } },
                "spec": { "containers": [{ "name": "c", "image": "i" }] } } } })
        };
        let mut causes = Vec::new();
        builtin("apps", "deployments").validate_update(
            &selector("a"),
            &selector("b"),
            None,
            &mut causes,
        );
        assert!(causes.iter().any(|c| c.field == "spec.selector"), "{causes:?}");
    }

    #[test]
    fn go_clients_unset_fields_get_upstreams_defaults() {
        let mut binding = json!({
            "roleRef": { "apiGroup": "", "kind": "Role", "name": "reader" },
            "subjects": [
                { "kind": "User", "name": "ann" },
                { "kind": "Group", "name": "team", "apiGroup": "" },
                { "kind": "ServiceAccount", "name": "robot", "namespace": "ns" },
            ],
        });
        builtin("rbac.authorization.k8s.io", "rolebindings").defaults(&mut binding);
        assert_eq!(binding["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(binding["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(binding["subjects"][1]["apiGroup"], "rbac.authorization.k8s.io");
        assert!(binding["subjects"][2].get("apiGroup").is_none(), "{binding}");
        let mut cluster = json!({ "roleRef": { "kind": "ClusterRole", "name": "view" } });
        builtin("rbac.authorization.k8s.io", "clusterrolebindings").defaults(&mut cluster);
        assert_eq!(cluster["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        // A Go client sends the zero IntOrString for a target port it leaves unset.
        let mut service = json!({ "spec": { "ports": [
            { "port": 80, "targetPort": 0 },
            { "port": 81, "targetPort": "" },
            { "port": 82, "targetPort": "http" },
            { "port": 83 },
        ] } });
        builtin("", "services").defaults(&mut service);
        let targets: Vec<&Value> =
            (0..4).map(|i| &service["spec"]["ports"][i]["targetPort"]).collect();
        assert_eq!(targets, [&json!(80), &json!(81), &json!("http"), &json!(83)]);
    }
}

//! The registry matches what a Kubernetes 1.34 kube-apiserver serves by default, written
//! down independently of the registry's own tables: the discovery documents
//! (`/api/v1`, `/apis/<group>/<version>`, as in kubernetes/kubernetes' `api/discovery`
//! fixtures, as `kubectl api-resources -o wide` shows them) and the etcd key layout (as
//! kubernetes/kubernetes' `test/integration/etcd/data.go` pins it down). Only the
//! group-versions a default 1.34 server enables: `resource.k8s.io` `v1` but not its betas,
//! `flowcontrol.apiserver.k8s.io` `v1` only.

use keelson_api::{Registry, Scope};

/// One line per resource and subresource:
/// `<group-version> <name> <kind> <scope> <verbs>[ short=..][ cat=..]`; a subresource kind
/// from another group-version is written `<group>/<version>.<Kind>`.
const UPSTREAM_1_34: &str = "
v1 bindings Binding namespaced create
v1 componentstatuses ComponentStatus cluster get,list short=cs
v1 configmaps ConfigMap namespaced create,delete,deletecollection,get,list,patch,update,watch short=cm
v1 endpoints Endpoints namespaced create,delete,deletecollection,get,list,patch,update,watch short=ep
v1 events Event namespaced create,delete,deletecollection,get,list,patch,update,watch short=ev
v1 limitranges LimitRange namespaced create,delete,deletecollection,get,list,patch,update,watch short=limits
v1 namespaces Namespace cluster create,delete,get,list,patch,update,watch short=ns
v1 namespaces/finalize Namespace cluster update
v1 namespaces/status Namespace cluster get,patch,update
v1 nodes Node cluster create,delete,deletecollection,get,list,patch,update,watch short=no
v1 nodes/proxy NodeProxyOptions cluster create,delete,get,patch,update
v1 nodes/status Node cluster get,patch,update
v1 persistentvolumeclaims PersistentVolumeClaim namespaced create,delete,deletecollection,get,list,patch,update,watch short=pvc
v1 persistentvolumeclaims/status PersistentVolumeClaim namespaced get,patch,update
v1 persistentvolumes PersistentVolume cluster create,delete,deletecollection,get,list,patch,update,watch short=pv
v1 persistentvolumes/status PersistentVolume cluster get,patch,update
v1 pods Pod namespaced create,delete,deletecollection,get,list,patch,update,watch short=po cat=all
v1 pods/attach PodAttachOptions namespaced create,get
v1 pods/binding Binding namespaced create
v1 pods/ephemeralcontainers Pod namespaced get,patch,update
v1 pods/eviction policy/v1.Eviction namespaced create
v1 pods/exec PodExecOptions namespaced create,get
v1 pods/log Pod namespaced get
v1 pods/portforward PodPortForwardOptions namespaced create,get
v1 pods/proxy PodProxyOptions namespaced create,delete,get,patch,update
v1 pods/resize Pod namespaced get,patch,update
v1 pods/status Pod namespaced get,patch,update
v1 podtemplates PodTemplate namespaced create,delete,deletecollection,get,list,patch,update,watch
v1 replicationcontrollers ReplicationController namespaced create,delete,deletecollection,get,list,patch,update,watch short=rc cat=all
v1 replicationcontrollers/scale autoscaling/v1.Scale namespaced get,patch,update
v1 replicationcontrollers/status ReplicationController namespaced get,patch,update
v1 resourcequotas ResourceQuota namespaced create,delete,deletecollection,get,list,patch,update,watch short=quota
v1 resourcequotas/status ResourceQuota namespaced get,patch,update
v1 secrets Secret namespaced create,delete,deletecollection,get,list,patch,update,watch
v1 serviceaccounts ServiceAccount namespaced create,delete,deletecollection,get,list,patch,update,watch short=sa
v1 serviceaccounts/token authentication.k8s.io/v1.TokenRequest namespaced create
v1 services Service namespaced create,delete,deletecollection,get,list,patch,update,watch short=svc cat=all
v1 services/proxy ServiceProxyOptions namespaced create,delete,get,patch,update
v1 services/status Service namespaced get,patch,update
apiregistration.k8s.io/v1 apiservices APIService cluster create,delete,deletecollection,get,list,patch,update,watch cat=api-extensions
apiregistration.k8s.io/v1 apiservices/status APIService cluster get,patch,update
apps/v1 controllerrevisions ControllerRevision namespaced create,delete,deletecollection,get,list,patch,update,watch
apps/v1 daemonsets DaemonSet namespaced create,delete,deletecollection,get,list,patch,update,watch short=ds cat=all
apps/v1 daemonsets/status DaemonSet namespaced get,patch,update
apps/v1 deployments Deployment namespaced create,delete,deletecollection,get,list,patch,update,watch short=deploy cat=all
apps/v1 deployments/scale autoscaling/v1.Scale namespaced get,patch,update
apps/v1 deployments/status Deployment namespaced get,patch,update
apps/v1 replicasets ReplicaSet namespaced create,delete,deletecollection,get,list,patch,update,watch short=rs cat=all
apps/v1 replicasets/scale autoscaling/v1.Scale namespaced get,patch,update
apps/v1 replicasets/status ReplicaSet namespaced get,patch,update
apps/v1 statefulsets StatefulSet namespaced create,delete,deletecollection,get,list,patch,update,watch short=sts cat=all
apps/v1 statefulsets/scale autoscaling/v1.Scale namespaced get,patch,update
apps/v1 statefulsets/status StatefulSet namespaced get,patch,update
events.k8s.io/v1 events Event namespaced create,delete,deletecollection,get,list,patch,update,watch short=ev
authentication.k8s.io/v1 selfsubjectreviews SelfSubjectReview cluster create
authentication.k8s.io/v1 tokenreviews TokenReview cluster create
authorization.k8s.io/v1 localsubjectaccessreviews LocalSubjectAccessReview namespaced create
authorization.k8s.io/v1 selfsubjectaccessreviews SelfSubjectAccessReview cluster create
authorization.k8s.io/v1 selfsubjectrulesreviews SelfSubjectRulesReview cluster create
authorization.k8s.io/v1 subjectaccessreviews SubjectAccessReview cluster create
autoscaling/v2 horizontalpodautoscalers HorizontalPodAutoscaler namespaced create,delete,deletecollection,get,list,patch,update,watch short=hpa cat=all
autoscaling/v2 horizontalpodautoscalers/status HorizontalPodAutoscaler namespaced get,patch,update
autoscaling/v1 horizontalpodautoscalers HorizontalPodAutoscaler namespaced create,delete,deletecollection,get,list,patch,update,watch short=hpa cat=all
autoscaling/v1 horizontalpodautoscalers/status HorizontalPodAutoscaler namespaced get,patch,update
batch/v1 cronjobs CronJob namespaced create,delete,deletecollection,get,list,patch,update,watch short=cj cat=all
batch/v1 cronjobs/status CronJob namespaced get,patch,update
batch/v1 jobs Job namespaced create,delete,deletecollection,get,list,patch,update,watch cat=all
batch/v1 jobs/status Job namespaced get,patch,update
certificates.k8s.io/v1 certificatesigningrequests CertificateSigningRequest cluster create,delete,deletecollection,get,list,patch,update,watch short=csr
certificates.k8s.io/v1 certificatesigningrequests/approval CertificateSigningRequest cluster get,patch,update
certificates.k8s.io/v1 certificatesigningrequests/status CertificateSigningRequest cluster get,patch,update
networking.k8s.io/v1 ingressclasses IngressClass cluster create,delete,deletecollection,get,list,patch,update,watch
networking.k8s.io/v1 ingresses Ingress namespaced create,delete,deletecollection,get,list,patch,update,watch short=ing
networking.k8s.io/v1 ingresses/status Ingress namespaced get,patch,update
networking.k8s.io/v1 ipaddresses IPAddress cluster create,delete,deletecollection,get,list,patch,update,watch short=ip
networking.k8s.io/v1 networkpolicies NetworkPolicy namespaced create,delete,deletecollection,get,list,patch,update,watch short=netpol
networking.k8s.io/v1 servicecidrs ServiceCIDR cluster create,delete,deletecollection,get,list,patch,update,watch
networking.k8s.io/v1 servicecidrs/status ServiceCIDR cluster get,patch,update
policy/v1 poddisruptionbudgets PodDisruptionBudget namespaced create,delete,deletecollection,get,list,patch,update,watch short=pdb
policy/v1 poddisruptionbudgets/status PodDisruptionBudget namespaced get,patch,update
rbac.authorization.k8s.io/v1 clusterrolebindings ClusterRoleBinding cluster create,delete,deletecollection,get,list,patch,update,watch
rbac.authorization.k8s.io/v1 clusterroles ClusterRole cluster create,delete,deletecollection,get,list,patch,update,watch
rbac.authorization.k8s.io/v1 rolebindings RoleBinding namespaced create,delete,deletecollection,get,list,patch,update,watch
rbac.authorization.k8s.io/v1 roles Role namespaced create,delete,deletecollection,get,list,patch,update,watch
storage.k8s.io/v1 csidrivers CSIDriver cluster create,delete,deletecollection,get,list,patch,update,watch
storage.k8s.io/v1 csinodes CSINode cluster create,delete,deletecollection,get,list,patch,update,watch
storage.k8s.io/v1 csistoragecapacities CSIStorageCapacity namespaced create,delete,deletecollection,get,list,patch,update,watch
storage.k8s.io/v1 storageclasses StorageClass cluster create,delete,deletecollection,get,list,patch,update,watch short=sc
storage.k8s.io/v1 volumeattachments VolumeAttachment cluster create,delete,deletecollection,get,list,patch,update,watch
storage.k8s.io/v1 volumeattachments/status VolumeAttachment cluster get,patch,update
storage.k8s.io/v1 volumeattributesclasses VolumeAttributesClass cluster create,delete,deletecollection,get,list,patch,update,watch short=vac
admissionregistration.k8s.io/v1 mutatingwebhookconfigurations MutatingWebhookConfiguration cluster create,delete,deletecollection,get,list,patch,update,watch cat=api-extensions
admissionregistration.k8s.io/v1 validatingadmissionpolicies ValidatingAdmissionPolicy cluster create,delete,deletecollection,get,list,patch,update,watch cat=api-extensions
admissionregistration.k8s.io/v1 validatingadmissionpolicies/status ValidatingAdmissionPolicy cluster get,patch,update
admissionregistration.k8s.io/v1 validatingadmissionpolicybindings ValidatingAdmissionPolicyBinding cluster create,delete,deletecollection,get,list,patch,update,watch cat=api-extensions
admissionregistration.k8s.io/v1 validatingwebhookconfigurations ValidatingWebhookConfiguration cluster create,delete,deletecollection,get,list,patch,update,watch cat=api-extensions
apiextensions.k8s.io/v1 customresourcedefinitions CustomResourceDefinition cluster create,delete,deletecollection,get,list,patch,update,watch short=crd,crds cat=api-extensions
apiextensions.k8s.io/v1 customresourcedefinitions/status CustomResourceDefinition cluster get,patch,update
scheduling.k8s.io/v1 priorityclasses PriorityClass cluster create,delete,deletecollection,get,list,patch,update,watch short=pc
coordination.k8s.io/v1 leases Lease namespaced create,delete,deletecollection,get,list,patch,update,watch
node.k8s.io/v1 runtimeclasses RuntimeClass cluster create,delete,deletecollection,get,list,patch,update,watch
discovery.k8s.io/v1 endpointslices EndpointSlice namespaced create,delete,deletecollection,get,list,patch,update,watch
resource.k8s.io/v1 deviceclasses DeviceClass cluster create,delete,deletecollection,get,list,patch,update,watch
resource.k8s.io/v1 resourceclaims ResourceClaim namespaced create,delete,deletecollection,get,list,patch,update,watch
resource.k8s.io/v1 resourceclaims/status ResourceClaim namespaced get,patch,update
resource.k8s.io/v1 resourceclaimtemplates ResourceClaimTemplate namespaced create,delete,deletecollection,get,list,patch,update,watch
resource.k8s.io/v1 resourceslices ResourceSlice cluster create,delete,deletecollection,get,list,patch,update,watch
flowcontrol.apiserver.k8s.io/v1 flowschemas FlowSchema cluster create,delete,deletecollection,get,list,patch,update,watch
flowcontrol.apiserver.k8s.io/v1 flowschemas/status FlowSchema cluster get,patch,update
flowcontrol.apiserver.k8s.io/v1 prioritylevelconfigurations PriorityLevelConfiguration cluster create,delete,deletecollection,get,list,patch,update,watch
flowcontrol.apiserver.k8s.io/v1 prioritylevelconfigurations/status PriorityLevelConfiguration cluster get,patch,update
";

fn render(registry: &Registry) -> String {
    let mut out = String::from("\n");
    for r in registry.resources() {
        let gv = r.api_version();
        let scope = match r.scope {
            Scope::Namespaced => "namespaced",
            Scope::Cluster => "cluster",
        };
        out += &format!("{gv} {} {} {scope} {}", r.plural, r.kind, r.verbs.join(","));
        if !r.short_names.is_empty() {
            out += &format!(" short={}", r.short_names.join(","));
        }
        if !r.categories.is_empty() {
            out += &format!(" cat={}", r.categories.join(","));
        }
        out += "\n";
        for s in r.subresources {
            let kind = if s.group.is_empty() && s.version.is_empty() {
                s.kind.to_owned()
            } else {
                format!("{}.{}", s.api_version(r), s.kind)
            };
            out += &format!("{gv} {}/{} {kind} {scope} {}\n", r.plural, s.name, s.verbs.join(","));
        }
    }
    out
}

#[test]
fn discovery_matches_upstream_1_34() {
    let rendered = render(Registry::builtin());
    for (line, (got, want)) in rendered.lines().zip(UPSTREAM_1_34.lines()).enumerate() {
        assert_eq!(got, want, "line {line}");
    }
    assert_eq!(rendered.lines().count(), UPSTREAM_1_34.lines().count());
}

#[test]
fn storage_prefixes_match_kube_apiserver_etcd_layout() {
    let cases = [
        ("", "v1", "pods", "/registry/pods/"),
        ("", "v1", "configmaps", "/registry/configmaps/"),
        ("", "v1", "services", "/registry/services/specs/"),
        ("", "v1", "endpoints", "/registry/services/endpoints/"),
        ("", "v1", "nodes", "/registry/minions/"),
        ("", "v1", "replicationcontrollers", "/registry/controllers/"),
        ("", "v1", "namespaces", "/registry/namespaces/"),
        ("", "v1", "events", "/registry/events/"),
        ("events.k8s.io", "v1", "events", "/registry/events/"),
        ("apps", "v1", "deployments", "/registry/deployments/"),
        ("autoscaling", "v1", "horizontalpodautoscalers", "/registry/horizontalpodautoscalers/"),
        ("autoscaling", "v2", "horizontalpodautoscalers", "/registry/horizontalpodautoscalers/"),
        ("networking.k8s.io", "v1", "ingresses", "/registry/ingress/"),
        ("networking.k8s.io", "v1", "ingressclasses", "/registry/ingressclasses/"),
        ("rbac.authorization.k8s.io", "v1", "clusterroles", "/registry/clusterroles/"),
        ("storage.k8s.io", "v1", "csistoragecapacities", "/registry/csistoragecapacities/"),
        ("resource.k8s.io", "v1", "deviceclasses", "/registry/deviceclasses/"),
        ("resource.k8s.io", "v1", "resourceclaims", "/registry/resourceclaims/"),
        ("resource.k8s.io", "v1", "resourceclaimtemplates", "/registry/resourceclaimtemplates/"),
        ("resource.k8s.io", "v1", "resourceslices", "/registry/resourceslices/"),
        ("flowcontrol.apiserver.k8s.io", "v1", "flowschemas", "/registry/flowschemas/"),
        (
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "prioritylevelconfigurations",
            "/registry/prioritylevelconfigurations/",
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            "validatingadmissionpolicybindings",
            "/registry/validatingadmissionpolicybindings/",
        ),
        (
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "/registry/apiextensions.k8s.io/customresourcedefinitions/",
        ),
        (
            "apiregistration.k8s.io",
            "v1",
            "apiservices",
            "/registry/apiregistration.k8s.io/apiservices/",
        ),
    ];
    for (group, version, plural, prefix) in cases {
        let r = Registry::builtin().find(group, version, plural).unwrap();
        assert_eq!(r.storage_prefix(), prefix, "{group}/{version} {plural}");
    }
}

#[test]
fn storage_prefixes_are_unique_per_stored_resource() {
    // Two entries share a prefix only when upstream stores them together: the same plural
    // served in several versions, or core and events.k8s.io events.
    let mut seen: std::collections::HashMap<String, &str> = Default::default();
    for r in Registry::builtin().resources() {
        let prefix = r.storage_prefix();
        assert!(prefix.starts_with("/registry/") && prefix.ends_with('/'));
        let plural = seen.entry(prefix.clone()).or_insert(r.plural);
        assert_eq!(*plural, r.plural, "{prefix} shared by {plural} and {}", r.plural);
    }
}

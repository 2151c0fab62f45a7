//! The core (legacy, `/api/v1`) group's resources.

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::{
    Binding, ComponentStatus, ConfigMap, Endpoints, Event, LimitRange, Namespace, Node,
    PersistentVolume, PersistentVolumeClaim, Pod, PodTemplate, ReplicationController,
    ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::Eviction;

use super::{
    CREATE, CREATE_GET, GET_LIST, GET_PATCH_UPDATE, PROXY, connect, other_version, resource,
    same_version, status,
};
use crate::resource::ResourceInfo;

pub(crate) const V1: &[ResourceInfo] = &[
    resource::<Binding>("binding").verbs(CREATE).not_stored(),
    resource::<ComponentStatus>("componentstatus")
        .verbs(GET_LIST)
        .short_names(&["cs"])
        .not_stored(),
    resource::<ConfigMap>("configmap").short_names(&["cm"]),
    resource::<Endpoints>("endpoints").short_names(&["ep"]),
    resource::<Event>("event").short_names(&["ev"]),
    resource::<LimitRange>("limitrange").short_names(&["limits"]),
    resource::<Namespace>("namespace")
        // Namespaces are deleted one by one, through their finalizers: no deletecollection.
        .verbs(&["create", "delete", "get", "list", "patch", "update", "watch"])
        .short_names(&["ns"])
        .subresources(&[same_version::<Namespace>("finalize", &["update"]), status::<Namespace>()]),
    resource::<Node>("node")
        .short_names(&["no"])
        .subresources(&[connect("proxy", "NodeProxyOptions", PROXY), status::<Node>()]),
    resource::<PersistentVolumeClaim>("persistentvolumeclaim")
        .short_names(&["pvc"])
        .subresources(&[status::<PersistentVolumeClaim>()]),
    resource::<PersistentVolume>("persistentvolume")
        .short_names(&["pv"])
        .subresources(&[status::<PersistentVolume>()]),
    resource::<Pod>("pod").short_names(&["po"]).categories(&["all"]).subresources(&[
        connect("attach", "PodAttachOptions", CREATE_GET),
        same_version::<Binding>("binding", CREATE),
        same_version::<Pod>("ephemeralcontainers", GET_PATCH_UPDATE),
        other_version::<Eviction>("eviction", CREATE),
        connect("exec", "PodExecOptions", CREATE_GET),
        same_version::<Pod>("log", &["get"]),
        connect("portforward", "PodPortForwardOptions", CREATE_GET),
        connect("proxy", "PodProxyOptions", PROXY),
        // Served since 1.33, where InPlacePodVerticalScaling went beta (on by default).
        same_version::<Pod>("resize", GET_PATCH_UPDATE),
        status::<Pod>(),
    ]),
    resource::<PodTemplate>("podtemplate"),
    resource::<ReplicationController>("replicationcontroller")
        .short_names(&["rc"])
        .categories(&["all"])
        .subresources(&[
            other_version::<Scale>("scale", GET_PATCH_UPDATE),
            status::<ReplicationController>(),
        ]),
    resource::<ResourceQuota>("resourcequota")
        .short_names(&["quota"])
        .subresources(&[status::<ResourceQuota>()]),
    resource::<Secret>("secret"),
    resource::<ServiceAccount>("serviceaccount")
        .short_names(&["sa"])
        .subresources(&[other_version::<TokenRequest>("token", CREATE)]),
    resource::<Service>("service")
        .short_names(&["svc"])
        .categories(&["all"])
        .subresources(&[connect("proxy", "ServiceProxyOptions", PROXY), status::<Service>()]),
];

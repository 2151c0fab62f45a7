//! Cluster infrastructure groups: `events.k8s.io`, `storage.k8s.io`, `scheduling.k8s.io`,
//! `coordination.k8s.io`, `node.k8s.io`, `resource.k8s.io` (dynamic resource allocation)
//! and `flowcontrol.apiserver.k8s.io` (API Priority and Fairness configuration).

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::flowcontrol::v1::{FlowSchema, PriorityLevelConfiguration};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::resource::v1::{
    DeviceClass, ResourceClaim, ResourceClaimTemplate, ResourceSlice,
};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::{
    CSIDriver, CSINode, CSIStorageCapacity, StorageClass, VolumeAttachment, VolumeAttributesClass,
};

use super::{resource, status};
use crate::resource::ResourceInfo;

/// The same stored events as core `v1` events, in the newer shape.
pub(crate) const EVENTS_V1: &[ResourceInfo] =
    &[resource::<Event>("event").short_names(&["ev"]).stored_as::<CoreEvent>()];

pub(crate) const STORAGE_V1: &[ResourceInfo] = &[
    resource::<CSIDriver>("csidriver"),
    resource::<CSINode>("csinode"),
    resource::<CSIStorageCapacity>("csistoragecapacity"),
    resource::<StorageClass>("storageclass").short_names(&["sc"]),
    resource::<VolumeAttachment>("volumeattachment").subresources(&[status::<VolumeAttachment>()]),
    // GA (storage.k8s.io/v1) since 1.34.
    resource::<VolumeAttributesClass>("volumeattributesclass")
        .short_names(&["vac"])
        .stored_in("v1beta1"),
];

pub(crate) const SCHEDULING_V1: &[ResourceInfo] =
    &[resource::<PriorityClass>("priorityclass").short_names(&["pc"])];

pub(crate) const COORDINATION_V1: &[ResourceInfo] = &[resource::<Lease>("lease")];

pub(crate) const NODE_V1: &[ResourceInfo] = &[resource::<RuntimeClass>("runtimeclass")];

/// GA in 1.34 and stored as `v1beta2` (same fields), the version a 1.33 server reads:
/// upstream stores a newly GA kind in the newest version its previous release knows.
/// `v1beta1` and `v1beta2` are off by default (`betaAPIGroupVersionsDisabledByDefault`).
pub(crate) const RESOURCE_V1: &[ResourceInfo] = &[
    resource::<DeviceClass>("deviceclass").stored_in("v1beta2"),
    resource::<ResourceClaim>("resourceclaim")
        .subresources(&[status::<ResourceClaim>()])
        .stored_in("v1beta2"),
    resource::<ResourceClaimTemplate>("resourceclaimtemplate").stored_in("v1beta2"),
    resource::<ResourceSlice>("resourceslice").stored_in("v1beta2"),
];

pub(crate) const FLOWCONTROL_V1: &[ResourceInfo] = &[
    resource::<FlowSchema>("flowschema").subresources(&[status::<FlowSchema>()]),
    resource::<PriorityLevelConfiguration>("prioritylevelconfiguration")
        .subresources(&[status::<PriorityLevelConfiguration>()]),
];

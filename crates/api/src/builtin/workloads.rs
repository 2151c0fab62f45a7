//! Workload groups: `apps`, `batch`, `autoscaling` and `policy`.

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::{v1 as autoscaling_v1, v2 as autoscaling_v2};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use super::{GET_PATCH_UPDATE, other_version, resource, status};
use crate::resource::{ResourceInfo, Subresource};

/// `scale` as the apps workloads serve it: an `autoscaling/v1` `Scale`.
const SCALE: Subresource = other_version::<Scale>("scale", GET_PATCH_UPDATE);

pub(crate) const APPS_V1: &[ResourceInfo] = &[
    resource::<ControllerRevision>("controllerrevision"),
    resource::<DaemonSet>("daemonset")
        .short_names(&["ds"])
        .categories(&["all"])
        .subresources(&[status::<DaemonSet>()]),
    resource::<Deployment>("deployment")
        .short_names(&["deploy"])
        .categories(&["all"])
        .subresources(&[SCALE, status::<Deployment>()]),
    resource::<ReplicaSet>("replicaset")
        .short_names(&["rs"])
        .categories(&["all"])
        .subresources(&[SCALE, status::<ReplicaSet>()]),
    resource::<StatefulSet>("statefulset")
        .short_names(&["sts"])
        .categories(&["all"])
        .subresources(&[SCALE, status::<StatefulSet>()]),
];

pub(crate) const AUTOSCALING_V2: &[ResourceInfo] =
    &[resource::<autoscaling_v2::HorizontalPodAutoscaler>("horizontalpodautoscaler")
        .short_names(&["hpa"])
        .categories(&["all"])
        .subresources(&[status::<autoscaling_v2::HorizontalPodAutoscaler>()])];

pub(crate) const AUTOSCALING_V1: &[ResourceInfo] =
    &[resource::<autoscaling_v1::HorizontalPodAutoscaler>("horizontalpodautoscaler")
        .short_names(&["hpa"])
        .categories(&["all"])
        .subresources(&[status::<autoscaling_v1::HorizontalPodAutoscaler>()])
        .stored_as::<autoscaling_v2::HorizontalPodAutoscaler>()];

pub(crate) const BATCH_V1: &[ResourceInfo] = &[
    resource::<CronJob>("cronjob")
        .short_names(&["cj"])
        .categories(&["all"])
        .subresources(&[status::<CronJob>()]),
    resource::<Job>("job").categories(&["all"]).subresources(&[status::<Job>()]),
];

pub(crate) const POLICY_V1: &[ResourceInfo] =
    &[resource::<PodDisruptionBudget>("poddisruptionbudget")
        .short_names(&["pdb"])
        .subresources(&[status::<PodDisruptionBudget>()])];

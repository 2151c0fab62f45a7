//! API extension groups: `admissionregistration.k8s.io`, `apiextensions.k8s.io` and
//! `apiregistration.k8s.io`. All their resources are in the `api-extensions` category.

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingWebhookConfiguration,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;

use super::{resource, status};
use crate::resource::ResourceInfo;

const API_EXTENSIONS: &[&str] = &["api-extensions"];

pub(crate) const ADMISSIONREGISTRATION_V1: &[ResourceInfo] = &[
    resource::<MutatingWebhookConfiguration>("mutatingwebhookconfiguration")
        .categories(API_EXTENSIONS),
    resource::<ValidatingAdmissionPolicy>("validatingadmissionpolicy")
        .categories(API_EXTENSIONS)
        .subresources(&[status::<ValidatingAdmissionPolicy>()]),
    resource::<ValidatingAdmissionPolicyBinding>("validatingadmissionpolicybinding")
        .categories(API_EXTENSIONS),
    resource::<ValidatingWebhookConfiguration>("validatingwebhookconfiguration")
        .categories(API_EXTENSIONS),
];

pub(crate) const APIEXTENSIONS_V1: &[ResourceInfo] =
    &[resource::<CustomResourceDefinition>("customresourcedefinition")
        .short_names(&["crd", "crds"])
        .categories(API_EXTENSIONS)
        .subresources(&[status::<CustomResourceDefinition>()])
        // Where kube-apiserver 1.34 stores them (its discovery's storageVersionHash).
        .stored_in("v1beta1")];

pub(crate) const APIREGISTRATION_V1: &[ResourceInfo] = &[resource::<APIService>("apiservice")
    .categories(API_EXTENSIONS)
    .subresources(&[status::<APIService>()])];

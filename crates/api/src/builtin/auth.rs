//! Identity and access groups: `authentication.k8s.io`, `authorization.k8s.io`,
//! `rbac.authorization.k8s.io` and `certificates.k8s.io`.

use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenReview};
use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, SelfSubjectAccessReview, SelfSubjectRulesReview, SubjectAccessReview,
};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};

use super::{CREATE, GET_PATCH_UPDATE, resource, same_version, status};
use crate::resource::ResourceInfo;

/// Reviews are create-only: the answer comes back in the response and nothing is stored.
pub(crate) const AUTHENTICATION_V1: &[ResourceInfo] = &[
    resource::<SelfSubjectReview>("selfsubjectreview").verbs(CREATE).not_stored(),
    resource::<TokenReview>("tokenreview").verbs(CREATE).not_stored(),
];

pub(crate) const AUTHORIZATION_V1: &[ResourceInfo] = &[
    resource::<LocalSubjectAccessReview>("localsubjectaccessreview").verbs(CREATE).not_stored(),
    resource::<SelfSubjectAccessReview>("selfsubjectaccessreview").verbs(CREATE).not_stored(),
    resource::<SelfSubjectRulesReview>("selfsubjectrulesreview").verbs(CREATE).not_stored(),
    resource::<SubjectAccessReview>("subjectaccessreview").verbs(CREATE).not_stored(),
];

pub(crate) const RBAC_V1: &[ResourceInfo] = &[
    resource::<ClusterRoleBinding>("clusterrolebinding"),
    resource::<ClusterRole>("clusterrole"),
    resource::<RoleBinding>("rolebinding"),
    resource::<Role>("role"),
];

pub(crate) const CERTIFICATES_V1: &[ResourceInfo] =
    &[resource::<CertificateSigningRequest>("certificatesigningrequest")
        .short_names(&["csr"])
        .subresources(&[
            same_version::<CertificateSigningRequest>("approval", GET_PATCH_UPDATE),
            status::<CertificateSigningRequest>(),
        ])];

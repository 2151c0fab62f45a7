//! Service networking groups: `networking.k8s.io` and `discovery.k8s.io`.

use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{
    IPAddress, Ingress, IngressClass, NetworkPolicy, ServiceCIDR,
};

use super::{resource, status};
use crate::resource::ResourceInfo;

pub(crate) const NETWORKING_V1: &[ResourceInfo] = &[
    resource::<IngressClass>("ingressclass"),
    resource::<Ingress>("ingress").short_names(&["ing"]).subresources(&[status::<Ingress>()]),
    // IPAddress and ServiceCIDR are GA (networking.k8s.io/v1) since 1.33.
    resource::<IPAddress>("ipaddress").short_names(&["ip"]),
    resource::<NetworkPolicy>("networkpolicy").short_names(&["netpol"]),
    resource::<ServiceCIDR>("servicecidr").subresources(&[status::<ServiceCIDR>()]),
];

pub(crate) const DISCOVERY_V1: &[ResourceInfo] = &[resource::<EndpointSlice>("endpointslice")];

//! The `certificates.k8s.io` group: upstream's `pkg/registry/certificates`.

pub mod certificatesigningrequests;

//! Domain logic every component needs the same answer to — the API server, the
//! controllers, the scheduler and the kubelet — with no I/O: which objects a label
//! selector matches ([`labels`]), resource quantities and their arithmetic
//! ([`quantity`]), a pod's QoS class and resource sums ([`pod`]), what quota counts of
//! each object ([`quota`]), taints and tolerations ([`taints`]).
//!
//! Must never do I/O, hold state, or depend on a component crate.

pub mod labels;
pub mod pod;
pub mod quantity;
pub mod quota;
pub mod taints;

//! Domain logic every component needs the same answer to — the API server, the
//! controllers, the scheduler and the kubelet — with no I/O: which objects a label
//! selector matches (and, as they move here from the API server, quantities, field
//! selectors, QoS classes and pod resource sums).
//!
//! Must never do I/O, hold state, or depend on a component crate.

pub mod labels;

//! ResourceClaimTemplates: upstream's `pkg/registry/resource/resourceclaimtemplate` —
//! the claim's defaults, its spec immutable, and the `DRAConsumableCapacity` fields of
//! the requests dropped unless the stored template uses them.

use serde_json::Value;

use super::{claim_uses_consumable_capacity, default_requests, drop_request_capacity};
use crate::registry::strategy::Strategy;
use crate::registry::validation::{immutable, resource};
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct ResourceClaimTemplates;

impl Strategy for ResourceClaimTemplates {
    fn defaults(&self, object: &mut Value) {
        if let Some(devices) = object.pointer_mut("/spec/spec/devices").filter(|d| d.is_object()) {
            default_requests(devices);
        }
    }

    fn prepare_create(&self, object: &mut Value) {
        drop_request_capacity(object.pointer_mut("/spec/spec/devices"), false);
    }

    fn prepare_update(&self, _subresource: Option<&str>, old: &Value, new: &mut Value) {
        let in_use = claim_uses_consumable_capacity(&old["spec"]["spec"]["devices"]);
        drop_request_capacity(new.pointer_mut("/spec/spec/devices"), in_use);
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        resource::claim_template(object, causes);
    }

    /// As for claims: the new template, then the update — the spec immutable and checked
    /// a second time.
    fn validate_update(&self, old: &Value, new: &Value, _: Option<&str>, causes: &mut Vec<Cause>) {
        resource::claim_template(new, causes);
        immutable(&old["spec"], &new["spec"], "spec", causes);
        resource::claim_template(new, causes);
    }

    fn printer(&self) -> Printer {
        table::resource::RESOURCE_CLAIM_TEMPLATE
    }
}

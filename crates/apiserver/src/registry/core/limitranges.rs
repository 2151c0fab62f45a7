//! LimitRanges: upstream's `pkg/registry/core/limitrange`; printed with the default
//! columns, as upstream has no printer for them.

use serde_json::Value;

use crate::registry::defaults::{child, default, each};
use crate::registry::strategy::Strategy;

pub struct LimitRanges;

impl Strategy for LimitRanges {
    fn defaults(&self, object: &mut Value) {
        for item in each(child(object, "spec"), "limits") {
            limit_range_item(item);
        }
    }
}

/// `SetDefaults_LimitRangeItem`: a Container item's default limit falls back to its
/// max, and its default request to the default limit, then to its min.
fn limit_range_item(item: &mut Value) {
    if item["type"] != "Container" {
        return;
    }
    let copy = |item: &mut Value, from: &str, to: &str| {
        let source = item[from].as_object().cloned().unwrap_or_default();
        let target = child(item, to);
        for (resource, quantity) in source {
            default(target, &resource, quantity);
        }
    };
    copy(item, "max", "default");
    copy(item, "default", "defaultRequest");
    copy(item, "min", "defaultRequest");
}

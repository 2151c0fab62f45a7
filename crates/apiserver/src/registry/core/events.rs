//! Events (`v1`): upstream's `pkg/registry/core/event`.

use std::borrow::Cow;

use crate::registry::strategy::Strategy;
use crate::table::{self, Printer};

pub struct Events;

impl Strategy for Events {
    fn field_selectors(&self) -> Cow<'static, [&'static str]> {
        Cow::Borrowed(&[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ])
    }

    fn printer(&self) -> Printer {
        table::events::EVENT
    }
}

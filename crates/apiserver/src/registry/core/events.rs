//! Events (`v1`): upstream's `pkg/registry/core/event`.

use std::borrow::Cow;

use serde_json::Value;

use crate::registry::selector::{SelectableField, scalar_at};
use crate::registry::strategy::Strategy;
use crate::table::{self, Printer};

pub struct Events;

impl Strategy for Events {
    fn field_selectors(&self) -> Cow<'static, [SelectableField]> {
        const FIELDS: &[SelectableField] = &[
            SelectableField::string("involvedObject.kind"),
            SelectableField::string("involvedObject.namespace"),
            SelectableField::string("involvedObject.name"),
            SelectableField::string("involvedObject.uid"),
            SelectableField::string("involvedObject.apiVersion"),
            SelectableField::string("involvedObject.resourceVersion"),
            SelectableField::string("involvedObject.fieldPath"),
            SelectableField::string("reason"),
            SelectableField::string("reportingComponent"),
            SelectableField::with("source", |event| {
                source(event, "source.component", "reportingComponent")
            }),
            SelectableField::string("type"),
        ];
        Cow::Borrowed(FIELDS)
    }

    fn printer(&self) -> Printer {
        table::events::EVENT
    }
}

/// Upstream's `source` of an event: its source's component, else its reporting
/// controller (the fields at these paths of either API version's shape).
pub(crate) fn source(event: &Value, component: &str, reporter: &str) -> String {
    scalar_at(event, component)
        .filter(|c| !c.is_empty())
        .or_else(|| scalar_at(event, reporter))
        .unwrap_or_default()
}

//! Events (`events.k8s.io/v1`): upstream's core event storage, selected by the
//! `events.k8s.io` names its field label conversion maps to the core ones
//! (`pkg/apis/events/v1/conversion.go`).

use std::borrow::Cow;

use crate::registry::core::events::source;
use crate::registry::selector::SelectableField;
use crate::registry::strategy::Strategy;
use crate::table::{self, Printer};

pub struct Events;

impl Strategy for Events {
    fn field_selectors(&self) -> Cow<'static, [SelectableField]> {
        const FIELDS: &[SelectableField] = &[
            SelectableField::string("reason"),
            SelectableField::string("regarding.kind"),
            SelectableField::string("regarding.namespace"),
            SelectableField::string("regarding.name"),
            SelectableField::string("regarding.uid"),
            SelectableField::string("regarding.apiVersion"),
            SelectableField::string("regarding.resourceVersion"),
            SelectableField::string("regarding.fieldPath"),
            SelectableField::string("reportingController"),
            SelectableField::with("source", |event| {
                source(event, "deprecatedSource.component", "reportingController")
            }),
            SelectableField::string("type"),
        ];
        Cow::Borrowed(FIELDS)
    }

    fn printer(&self) -> Printer {
        table::events::EVENT
    }
}

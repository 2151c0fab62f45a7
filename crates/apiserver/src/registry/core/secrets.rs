//! Secrets: upstream's `pkg/registry/core/secret`.

use std::borrow::Cow;

use serde_json::{Value, json};

use crate::registry::defaults::default;
use crate::registry::selector::SelectableField;
use crate::registry::strategy::Strategy;
use crate::registry::validation::{core, immutable};
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct Secrets;

impl Strategy for Secrets {
    fn field_selectors(&self) -> Cow<'static, [SelectableField]> {
        const FIELDS: &[SelectableField] = &[SelectableField::string("type")];
        Cow::Borrowed(FIELDS)
    }

    fn defaults(&self, object: &mut Value) {
        default(object, "type", json!("Opaque"));
        string_data(object);
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        core::secret(object, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, _: Option<&str>, causes: &mut Vec<Cause>) {
        self.validate(new, causes);
        core::immutable_data("secrets", old, new, causes);
        immutable(&old["type"], &new["type"], "type", causes);
    }

    fn printer(&self) -> Printer {
        table::core::SECRET
    }
}

/// A Secret's `stringData` is written into `data` (base64), winning over a key of the
/// same name, and never stored (upstream's v1 conversion).
fn string_data(secret: &mut Value) {
    use base64::Engine;
    let Some(Value::Object(strings)) = secret.as_object_mut().and_then(|s| s.remove("stringData"))
    else {
        return;
    };
    if !secret["data"].is_object() {
        secret["data"] = json!({});
    }
    for (key, value) in strings {
        let text = value.as_str().unwrap_or_default();
        secret["data"][key] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

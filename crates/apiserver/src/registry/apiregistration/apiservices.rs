//! APIServices: kube-aggregator's `pkg/registry/apiservice` strategy — names that are
//! path segments (`v1.` for the legacy group), the service port defaulted to 443, and
//! upstream's validation. The aggregator (`crate::aggregator`) serves what they say.

use serde_json::{Value, json};

use crate::meta::NameRule;
use crate::registry::strategy::Strategy;
use crate::registry::validation::apiregistration;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct ApiServices;

impl Strategy for ApiServices {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    /// `SetDefaults_ServiceReference`: port 443.
    fn defaults(&self, object: &mut Value) {
        let service = &mut object["spec"]["service"];
        if service.is_object() && service.get("port").is_none_or(Value::is_null) {
            service["port"] = json!(443);
        }
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        apiregistration::api_service(object, causes);
    }

    fn validate_update(
        &self,
        _old: &Value,
        new: &Value,
        subresource: Option<&str>,
        causes: &mut Vec<Cause>,
    ) {
        match subresource {
            Some("status") => apiregistration::api_service_status(new, causes),
            _ => self.validate(new, causes),
        }
    }

    fn printer(&self) -> Printer {
        table::extensions::API_SERVICE
    }
}

//! Services: upstream's `pkg/registry/core/service` (cluster IPs and node ports are
//! allocated by `crate::services`, the storage hooks `crate::storage` registers).

use std::borrow::Cow;

use serde_json::{Value, json};

use crate::meta::NameRule;
use crate::registry::defaults::{child, default, each};
use crate::registry::selector::SelectableField;
use crate::registry::strategy::Strategy;
use crate::registry::validation::core;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct Services;

impl Strategy for Services {
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    /// What kube-proxy selects by (upstream's `SelectableFields`).
    fn field_selectors(&self) -> Cow<'static, [SelectableField]> {
        const FIELDS: &[SelectableField] =
            &[SelectableField::string("spec.clusterIP"), SelectableField::string("spec.type")];
        Cow::Borrowed(FIELDS)
    }

    /// `SetDefaults_Service`, less the cluster IP (allocated by the service registry).
    fn defaults(&self, object: &mut Value) {
        let spec = child(object, "spec");
        default(spec, "type", json!("ClusterIP"));
        let kind = spec["type"].as_str().unwrap_or("").to_owned();
        default(spec, "sessionAffinity", json!("None"));
        if kind != "ExternalName" {
            default(spec, "internalTrafficPolicy", json!("Cluster"));
        }
        if kind == "NodePort" || kind == "LoadBalancer" {
            default(spec, "externalTrafficPolicy", json!("Cluster"));
        }
        if kind == "LoadBalancer" {
            default(spec, "allocateLoadBalancerNodePorts", json!(true));
        }
        for port in each(spec, "ports") {
            default(port, "protocol", json!("TCP"));
            // Go clients send the zero IntOrString, 0, for a target port left unset.
            let unset = matches!(port.get("targetPort"), None | Some(Value::Null))
                || port["targetPort"] == 0
                || port["targetPort"] == "";
            if unset && let Some(number) = port.get("port").cloned() {
                port["targetPort"] = number;
            }
        }
        if spec["sessionAffinity"] == "ClientIP" {
            let config = child(child(spec, "sessionAffinityConfig"), "clientIP");
            default(config, "timeoutSeconds", json!(10800));
        }
        if let Some(status) = object.get_mut("status").filter(|s| s.is_object()) {
            default(status, "loadBalancer", json!({}));
        }
    }

    /// Go prints the load balancer status struct even when empty.
    fn empty_status(&self) -> Option<Value> {
        Some(json!({ "loadBalancer": {} }))
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        core::service(object, causes);
    }

    fn return_deleted_object(&self) -> bool {
        true
    }

    fn printer(&self) -> Printer {
        table::networking::SERVICE
    }
}

//! Jobs: upstream's `pkg/registry/batch/job`.

use std::borrow::Cow;

use serde_json::{Value, json};

use crate::registry::defaults::{child, default, pod_template};
use crate::registry::selector::{SelectableField, scalar_at};
use crate::registry::strategy::Strategy;
use crate::registry::validation::workloads;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct Jobs;

impl Strategy for Jobs {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn field_selectors(&self) -> Cow<'static, [SelectableField]> {
        // Upstream's name for the count of succeeded pods.
        const FIELDS: &[SelectableField] = &[SelectableField::with("status.successful", |job| {
            scalar_at(job, "status.succeeded").unwrap_or_else(|| "0".into())
        })];
        Cow::Borrowed(FIELDS)
    }

    fn defaults(&self, object: &mut Value) {
        spec_defaults(child(object, "spec"));
    }

    /// Unless the user manages the selector, one generated from the job's uid, with the
    /// labels that match it on the pod template.
    fn prepare_create(&self, object: &mut Value) {
        if object["spec"]["manualSelector"] == true {
            return;
        }
        let uid = object["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let labels = json!({
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        });
        if !object["spec"].is_object() {
            object["spec"] = json!({});
        }
        object["spec"]["selector"] =
            json!({ "matchLabels": { "batch.kubernetes.io/controller-uid": uid } });
        let template = &mut object["spec"]["template"];
        if !template.is_object() {
            *template = json!({});
        }
        if !template["metadata"].is_object() {
            template["metadata"] = json!({});
        }
        let template_labels = &mut template["metadata"]["labels"];
        if !template_labels.is_object() {
            *template_labels = json!({});
        }
        if let (Some(target), Some(source)) = (template_labels.as_object_mut(), labels.as_object())
        {
            for (k, v) in source {
                target.insert(k.clone(), v.clone());
            }
        }
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        workloads::job(&object["spec"], "spec", causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, _: Option<&str>, causes: &mut Vec<Cause>) {
        self.validate(new, causes);
        workloads::selector_unchanged(old, new, causes);
    }

    fn printer(&self) -> Printer {
        table::batch::JOB
    }
}

/// `SetDefaults_Job` of a job's spec, also a cron job's template's.
pub(crate) fn spec_defaults(spec: &mut Value) {
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        spec["completions"] = json!(1);
        spec["parallelism"] = json!(1);
    }
    default(spec, "parallelism", json!(1));
    default(spec, "backoffLimit", json!(6));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    let failure_policy_set = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
    default(
        spec,
        "podReplacementPolicy",
        json!(if failure_policy_set { "Failed" } else { "TerminatingOrFailed" }),
    );
    pod_template(spec.get_mut("template"));
}

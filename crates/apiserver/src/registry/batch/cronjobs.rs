//! CronJobs: upstream's `pkg/registry/batch/cronjob`.

use serde_json::{Value, json};

use crate::registry::defaults::{child, default};
use crate::registry::strategy::Strategy;
use crate::registry::validation::workloads;
use crate::status::Cause;
use crate::table::{self, Printer};

pub struct CronJobs;

impl Strategy for CronJobs {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn defaults(&self, object: &mut Value) {
        let spec = child(object, "spec");
        default(spec, "concurrencyPolicy", json!("Allow"));
        default(spec, "suspend", json!(false));
        default(spec, "successfulJobsHistoryLimit", json!(3));
        default(spec, "failedJobsHistoryLimit", json!(1));
        if let Some(job) = spec.pointer_mut("/jobTemplate/spec") {
            super::jobs::spec_defaults(job);
        }
    }

    fn validate(&self, object: &Value, causes: &mut Vec<Cause>) {
        workloads::cronjob(object, causes);
    }

    fn printer(&self) -> Printer {
        table::batch::CRON_JOB
    }
}

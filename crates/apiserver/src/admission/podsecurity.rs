//! PodSecurity admission (upstream's `pod-security-admission`): a pod is checked against
//! its namespace's Pod Security Standards level — refused (403) if it violates the
//! `enforce` level, with a `Warning` if it violates the `warn` level; a workload's pod
//! template is checked for `warn` only; a namespace's `pod-security.kubernetes.io/*`
//! labels must be valid, and tightening `enforce` warns about the pods already there.
//! The checks themselves are `keelson-podsecurity`'s.
//!
//! Keelson's cluster default (upstream's is privileged everywhere): enforce
//! `baseline`, warn and audit `restricted`, with `kube-system` exempt, where the
//! cluster's own privileged pods live. The audit level's findings are annotations of
//! the request's audit event (`pod-security.kubernetes.io/audit-violations`).

use keelson_podsecurity::{self as pss, Level, LevelVersion, Policy, Version};
use serde_json::{Map, Value};

use super::lister::Lister;
use super::{Attributes, Operation, Plugin, Validating};
use crate::status::{ApiError, ApiResult, Cause};

/// The cluster-wide defaults and exemptions (upstream's `PodSecurityConfiguration`).
#[derive(Clone, Debug)]
pub struct Config {
    pub defaults: Policy,
    pub exempt_namespaces: Vec<String>,
    pub exempt_users: Vec<String>,
    pub exempt_runtime_classes: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        let latest = |level| LevelVersion::new(level, Version::Latest);
        Config {
            defaults: Policy {
                enforce: latest(Level::Baseline),
                audit: latest(Level::Restricted),
                warn: latest(Level::Restricted),
            },
            exempt_namespaces: vec!["kube-system".into()],
            exempt_users: Vec::new(),
            exempt_runtime_classes: Vec::new(),
        }
    }
}

/// Why an `AdmissionConfiguration` does not configure PodSecurity.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Yaml(#[from] serde_saphyr::Error),
    #[error("not an AdmissionConfiguration")]
    NotAdmissionConfiguration,
    #[error("the PodSecurity plugin's configuration is not a PodSecurityConfiguration")]
    NotPodSecurityConfiguration,
    /// The defaults' problems, as the namespace label checks word them.
    #[error("{}", .0.join("; "))]
    InvalidDefaults(Vec<String>),
}

impl Config {
    /// From an `apiserver.config.k8s.io/v1` `AdmissionConfiguration` whose `PodSecurity`
    /// plugin carries a `pod-security.admission.config.k8s.io/v1`
    /// `PodSecurityConfiguration` (upstream's `--admission-control-config-file`);
    /// what it leaves out keeps Keelson's defaults.
    pub fn from_admission_configuration(yaml: &str) -> Result<Config, ConfigError> {
        let file: Value = serde_saphyr::from_str(yaml)?;
        if file["kind"] != "AdmissionConfiguration" {
            return Err(ConfigError::NotAdmissionConfiguration);
        }
        let plugin =
            file["plugins"].as_array().into_iter().flatten().find(|p| p["name"] == "PodSecurity");
        let Some(plugin) = plugin else {
            return Ok(Config::default());
        };
        let configuration = &plugin["configuration"];
        if configuration["kind"] != "PodSecurityConfiguration" {
            return Err(ConfigError::NotPodSecurityConfiguration);
        }
        let mut config = Config::default();
        let defaults = &configuration["defaults"];
        let mut labels = Map::new();
        for mode in ["enforce", "audit", "warn"] {
            for (field, label) in [
                (mode.to_owned(), format!("pod-security.kubernetes.io/{mode}")),
                (format!("{mode}-version"), format!("pod-security.kubernetes.io/{mode}-version")),
            ] {
                if let Some(value) = defaults[field.as_str()].as_str() {
                    labels.insert(label, Value::from(value));
                }
            }
        }
        config.defaults = pss::policy_from_labels(&labels, &config.defaults)
            .map_err(ConfigError::InvalidDefaults)?;
        let exemptions = &configuration["exemptions"];
        if exemptions.is_object() {
            config.exempt_namespaces = crate::meta::string_list(&exemptions["namespaces"]);
            config.exempt_users = crate::meta::string_list(&exemptions["usernames"]);
            config.exempt_runtime_classes = crate::meta::string_list(&exemptions["runtimeClasses"]);
        }
        Ok(config)
    }
}

pub struct PodSecurity {
    config: Config,
    namespaces: Lister,
    pods: Lister,
}

impl PodSecurity {
    pub fn new(config: Config, namespaces: Lister, pods: Lister) -> Self {
        PodSecurity { config, namespaces, pods }
    }
}

impl Plugin for PodSecurity {
    fn handles(&self, operation: Operation) -> bool {
        matches!(operation, Operation::Create | Operation::Update)
    }

    fn validating(&self) -> Option<&dyn Validating> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl Validating for PodSecurity {
    async fn validate(&self, a: &Attributes<'_>, object: Option<&Value>) -> ApiResult<Vec<String>> {
        match object {
            Some(object) => check(self, a, object).await,
            None => Ok(Vec::new()),
        }
    }
}

/// Checks a create or update; returns the warnings.
async fn check(plugin: &PodSecurity, a: &Attributes<'_>, object: &Value) -> ApiResult<Vec<String>> {
    let config = &plugin.config;
    if a.is("", "namespaces") && a.subresource.is_empty() {
        return namespace(plugin, a, object).await;
    }
    let is_pod = a.is("", "pods") && matches!(a.subresource, "" | "ephemeralcontainers");
    if !is_pod && !a.subresource.is_empty() {
        return Ok(Vec::new());
    }
    let Some((metadata, spec)) = pss::pod_template(a.info.kind, object) else {
        return Ok(Vec::new());
    };
    if a.operation == Operation::Update
        && let Some(old) = a.old
        && let Some((old_metadata, old_spec)) = pss::pod_template(a.info.kind, old)
        && !significant(metadata, spec, old_metadata, old_spec)
    {
        return Ok(Vec::new());
    }
    let exemption = if config.exempt_namespaces.iter().any(|n| n == a.namespace) {
        Some("namespace")
    } else if config.exempt_users.contains(&a.user.name) {
        Some("user")
    } else if spec["runtimeClassName"]
        .as_str()
        .is_some_and(|r| config.exempt_runtime_classes.iter().any(|c| c == r))
    {
        Some("runtimeClass")
    } else {
        None
    };
    if let Some(exemption) = exemption {
        crate::audit::annotate("pod-security.kubernetes.io/exempt", exemption);
        return Ok(Vec::new());
    }
    let policy = namespace_policy(&plugin.namespaces, a.namespace, config).await;
    // The audit level is recorded in the request's audit event, never refused or warned.
    let audited = pss::check(&policy.audit, metadata, spec);
    if !audited.is_empty() {
        crate::audit::annotate(
            "pod-security.kubernetes.io/audit-violations",
            pss::warning(&policy.audit, &audited),
        );
    }
    if is_pod {
        crate::audit::annotate(
            "pod-security.kubernetes.io/enforce-policy",
            policy.enforce.to_string(),
        );
        let violations = pss::check(&policy.enforce, metadata, spec);
        if !violations.is_empty() {
            return Err(a.forbidden(pss::message(&policy.enforce, &violations)));
        }
    }
    let violations = pss::check(&policy.warn, metadata, spec);
    if violations.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![pss::warning(&policy.warn, &violations)])
}

/// Upstream's `isSignificantPodUpdate`: only a change of the spec other than images, or
/// of the seccomp and AppArmor annotations, can change the verdict.
fn significant(metadata: &Value, spec: &Value, old_metadata: &Value, old_spec: &Value) -> bool {
    let without_images = |spec: &Value| {
        let mut spec = spec.clone();
        for field in ["containers", "initContainers", "ephemeralContainers"] {
            for c in spec[field].as_array_mut().into_iter().flatten() {
                c["image"] = Value::Null;
            }
        }
        spec
    };
    let security_annotations = |metadata: &Value| -> Vec<(String, Value)> {
        metadata["annotations"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| {
                k.starts_with("seccomp.security.alpha.kubernetes.io/")
                    || k.starts_with("container.apparmor.security.beta.kubernetes.io/")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    without_images(spec) != without_images(old_spec)
        || security_annotations(metadata) != security_annotations(old_metadata)
}

/// The policy of a namespace: its labels over the cluster defaults (invalid labels
/// fall back as upstream's do).
async fn namespace_policy(namespaces: &Lister, namespace: &str, config: &Config) -> Policy {
    let labels = match namespaces.get(None, namespace).await {
        Some(ns) => ns["metadata"]["labels"].as_object().cloned().unwrap_or_default(),
        None => Map::new(),
    };
    pss::evaluate_labels(&labels, &config.defaults).0
}

/// A namespace's labels must be valid; a stricter `enforce` warns about the pods it
/// would refuse now.
async fn namespace(plugin: &PodSecurity, a: &Attributes<'_>, ns: &Value) -> ApiResult<Vec<String>> {
    let config = &plugin.config;
    let labels = ns["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    let name = ns["metadata"]["name"].as_str().unwrap_or("");
    let policy = match pss::policy_from_labels(&labels, &config.defaults) {
        Ok(policy) => policy,
        Err(errors) => {
            let causes = errors
                .iter()
                .map(|e| {
                    let (field, message) = e.split_once(": ").unwrap_or(("", e));
                    Cause {
                        reason: "FieldValueInvalid",
                        message: message.to_owned(),
                        field: field.to_owned(),
                    }
                })
                .collect();
            return Err(ApiError::invalid("", "Namespace", name, causes));
        }
    };
    let Some(old) = a.old else {
        return Ok(Vec::new());
    };
    let old_labels = old["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    let old_policy = pss::evaluate_labels(&old_labels, &config.defaults).0;
    if old_policy.enforce == policy.enforce
        || policy.enforce.level == Level::Privileged
        || config.exempt_namespaces.iter().any(|n| n == name)
    {
        return Ok(Vec::new());
    }
    // Pods that share one list of violations are reported together.
    let mut groups: Vec<(String, Vec<String>, usize)> = Vec::new();
    let mut pods = plugin.pods.list(Some(name)).await;
    pods.sort_by(|x, y| x["metadata"]["name"].as_str().cmp(&y["metadata"]["name"].as_str()));
    for pod in &pods {
        let violations = pss::check(&policy.enforce, &pod["metadata"], &pod["spec"]);
        if violations.is_empty() {
            continue;
        }
        let reasons: Vec<String> = violations.into_iter().map(|v| v.reason).collect();
        let pod_name = pod["metadata"]["name"].as_str().unwrap_or("").to_owned();
        match groups.iter_mut().find(|(_, r, _)| *r == reasons) {
            Some(group) => group.2 += 1,
            None => groups.push((pod_name, reasons, 0)),
        }
    }
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let mut warnings = vec![format!(
        "existing pods in namespace {name:?} violate the new PodSecurity enforce level {:?}",
        policy.enforce.to_string()
    )];
    for (pod, reasons, others) in groups {
        let who = match others {
            0 => pod,
            1 => format!("{pod} (and 1 other pod)"),
            n => format!("{pod} (and {n} other pods)"),
        };
        warnings.push(format!("{who}: {}", reasons.join(", ")));
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_file_sets_defaults_and_exemptions() {
        let yaml = r#"
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults:
      enforce: restricted
      enforce-version: v1.30
      warn: restricted
    exemptions:
      namespaces: [kube-system, monitoring]
      usernames: [system:serviceaccount:kube-system:replicaset-controller]
"#;
        let config = Config::from_admission_configuration(yaml).expect("valid");
        assert_eq!(config.defaults.enforce.to_string(), "restricted:v1.30");
        assert_eq!(config.defaults.audit.to_string(), "restricted:latest");
        assert_eq!(config.exempt_namespaces, ["kube-system", "monitoring"]);
        assert_eq!(config.exempt_users.len(), 1);
        let bad = yaml.replace("enforce: restricted", "enforce: strict");
        assert!(
            Config::from_admission_configuration(&bad)
                .unwrap_err()
                .to_string()
                .contains("must be one of privileged, baseline, restricted")
        );
        assert_eq!(
            Config::from_admission_configuration("kind: Other").expect_err("other").to_string(),
            "not an AdmissionConfiguration"
        );
    }
}

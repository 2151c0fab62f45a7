//! `KubeSchedulerConfiguration` (`kubescheduler.config.k8s.io/v1`): read from
//! `--config`, defaulted and validated as upstream does, unknown fields and invalid
//! values refused at start with upstream's messages; then each profile's plugins per
//! extension point, with the default plugins merged in (`mergePlugins`) and multi-point
//! plugins expanded to the points they serve.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;

use crate::framework::{Enabled, Framework, Handle, Point};
use crate::plugins;

pub const API_VERSION: &str = "kubescheduler.config.k8s.io/v1";

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginRef {
    pub name: String,
    #[serde(default)]
    pub weight: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginSet {
    #[serde(default)]
    pub enabled: Vec<PluginRef>,
    #[serde(default)]
    pub disabled: Vec<PluginRef>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Plugins {
    #[serde(default)]
    pub pre_enqueue: PluginSet,
    #[serde(default)]
    pub queue_sort: PluginSet,
    #[serde(default)]
    pub pre_filter: PluginSet,
    #[serde(default)]
    pub filter: PluginSet,
    #[serde(default)]
    pub post_filter: PluginSet,
    #[serde(default)]
    pub pre_score: PluginSet,
    #[serde(default)]
    pub score: PluginSet,
    #[serde(default)]
    pub reserve: PluginSet,
    #[serde(default)]
    pub permit: PluginSet,
    #[serde(default)]
    pub pre_bind: PluginSet,
    #[serde(default)]
    pub bind: PluginSet,
    #[serde(default)]
    pub post_bind: PluginSet,
    #[serde(default)]
    pub multi_point: PluginSet,
}

impl Plugins {
    fn at(&self, point: Point) -> &PluginSet {
        match point {
            Point::PreEnqueue => &self.pre_enqueue,
            Point::QueueSort => &self.queue_sort,
            Point::PreFilter => &self.pre_filter,
            Point::Filter => &self.filter,
            Point::PostFilter => &self.post_filter,
            Point::PreScore => &self.pre_score,
            Point::Score => &self.score,
            Point::Reserve => &self.reserve,
            Point::Permit => &self.permit,
            Point::PreBind => &self.pre_bind,
            Point::Bind => &self.bind,
            Point::PostBind => &self.post_bind,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginConfig {
    pub name: String,
    #[serde(default)]
    pub args: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Profile {
    #[serde(default)]
    pub scheduler_name: Option<String>,
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<i32>,
    #[serde(default)]
    pub plugins: Option<Plugins>,
    #[serde(default)]
    pub plugin_config: Vec<PluginConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LeaderElection {
    #[serde(default)]
    pub leader_elect: Option<bool>,
    #[serde(default)]
    pub lease_duration: Option<String>,
    #[serde(default)]
    pub renew_deadline: Option<String>,
    #[serde(default)]
    pub retry_period: Option<String>,
    #[serde(default)]
    pub resource_lock: Option<String>,
    #[serde(default)]
    pub resource_name: Option<String>,
    #[serde(default)]
    pub resource_namespace: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientConnection {
    #[serde(default)]
    pub kubeconfig: Option<String>,
    #[serde(default)]
    pub accept_content_types: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub qps: Option<f64>,
    #[serde(default)]
    pub burst: Option<i64>,
}

/// The file as written (`v1.KubeSchedulerConfiguration`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeSchedulerConfiguration {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub parallelism: Option<i32>,
    #[serde(default)]
    pub leader_election: Option<LeaderElection>,
    #[serde(default)]
    pub client_connection: Option<ClientConnection>,
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<i32>,
    #[serde(default)]
    pub pod_initial_backoff_seconds: Option<i64>,
    #[serde(default)]
    pub pod_max_backoff_seconds: Option<i64>,
    #[serde(default)]
    pub profiles: Vec<Profile>,
    #[serde(default)]
    pub extenders: Vec<serde_json::Value>,
    #[serde(default)]
    pub delay_cache_until_active: Option<bool>,
    #[serde(default)]
    pub debugging_configuration: Option<serde_json::Value>,
    #[serde(default)]
    pub health_bind_address: Option<String>,
    #[serde(default)]
    pub metrics_bind_address: Option<String>,
}

/// The configuration after defaults, checked.
#[derive(Clone, Debug)]
pub struct Config {
    pub parallelism: usize,
    pub percentage_of_nodes_to_score: Option<i32>,
    pub initial_backoff: std::time::Duration,
    pub max_backoff: std::time::Duration,
    pub leader_elect: bool,
    pub lease_name: String,
    pub lease_namespace: String,
    pub profiles: Vec<Profile>,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_file(KubeSchedulerConfiguration::default()).expect("the defaults are valid")
    }
}

impl Config {
    /// Parses a configuration file (YAML or JSON).
    pub fn parse(text: &str) -> Result<Config, String> {
        let value: serde_json::Value = serde_saphyr::from_str(text)
            .map_err(|e| format!("couldn't decode the scheduler configuration: {e}"))?;
        let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
        let api_version = value.get("apiVersion").and_then(|k| k.as_str()).unwrap_or_default();
        if kind != "KubeSchedulerConfiguration" {
            return Err(format!(
                "no kind \"{kind}\" is registered for version \"{api_version}\" in scheme"
            ));
        }
        if api_version != API_VERSION {
            return Err(format!(
                "no kind \"KubeSchedulerConfiguration\" is registered for version \"{api_version}\" in scheme"
            ));
        }
        let file: KubeSchedulerConfiguration =
            serde_path_to_error::deserialize(value).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner().to_string();
                match inner.strip_prefix("unknown field `").and_then(|r| r.split_once('`')) {
                    Some((field, _)) => {
                        let at =
                            path.rsplit_once('.').map(|(p, _)| format!("{p}.")).unwrap_or_default();
                        format!("strict decoding error: unknown field \"{at}{field}\"")
                    }
                    None => format!("couldn't decode the scheduler configuration: {path}: {inner}"),
                }
            })?;
        Config::from_file(file)
    }

    /// Defaults, then validation (`SetDefaults_KubeSchedulerConfiguration`,
    /// `ValidateKubeSchedulerConfiguration`).
    pub fn from_file(mut file: KubeSchedulerConfiguration) -> Result<Config, String> {
        if file.profiles.is_empty() {
            file.profiles.push(Profile::default());
        }
        let single = file.profiles.len() == 1;
        for p in &mut file.profiles {
            if p.scheduler_name.as_deref().unwrap_or_default().is_empty() && single {
                p.scheduler_name = Some(crate::DEFAULT_SCHEDULER_NAME.into());
            }
        }
        let initial = file.pod_initial_backoff_seconds.unwrap_or(1);
        let max = file.pod_max_backoff_seconds.unwrap_or(10);
        let parallelism = file.parallelism.unwrap_or(16);
        let leader = file.leader_election.clone().unwrap_or_default();
        let mut errors = Vec::new();
        if parallelism <= 0 {
            errors.push(format!("parallelism: Invalid value: {parallelism}: should be an integer value greater than zero"));
        }
        if let Some(p) = file.percentage_of_nodes_to_score
            && !(0..=100).contains(&p)
        {
            errors.push(format!(
                "percentageOfNodesToScore: Invalid value: {p}: not in valid range [0-100]"
            ));
        }
        if initial <= 0 {
            errors.push(format!(
                "podInitialBackoffSeconds: Invalid value: {initial}: must be greater than 0"
            ));
        }
        if max < initial {
            errors.push(format!("podMaxBackoffSeconds: Invalid value: {max}: must be greater than or equal to PodInitialBackoffSeconds"));
        }
        if !file.extenders.is_empty() {
            errors.push("extenders: Forbidden: scheduler extenders are not supported by Keelson's scheduler".into());
        }
        let mut names = HashSet::new();
        let mut queue_sort: Option<Vec<String>> = None;
        for (i, p) in file.profiles.iter().enumerate() {
            let at = format!("profiles[{i}]");
            let name = p.scheduler_name.clone().unwrap_or_default();
            if name.is_empty() {
                errors.push(format!("{at}.schedulerName: Required value"));
            } else if !names.insert(name.clone()) {
                errors.push(format!("{at}.schedulerName: Duplicate value: \"{name}\""));
            }
            if let Some(pct) = p.percentage_of_nodes_to_score
                && !(0..=100).contains(&pct)
            {
                errors.push(format!("{at}.percentageOfNodesToScore: Invalid value: {pct}: not in valid range [0-100]"));
            }
            let mut configured = HashSet::new();
            for (j, c) in p.plugin_config.iter().enumerate() {
                let cat = format!("{at}.pluginConfig[{j}]");
                if !configured.insert(c.name.clone()) {
                    errors.push(format!("{cat}: Duplicate value: \"{}\"", c.name));
                }
                match plugins::validate_args(&c.name, c.args.as_ref(), &format!("{cat}.args")) {
                    Ok(found) => errors.extend(found),
                    Err(e) => errors.push(e),
                }
            }
            let points = resolve(p);
            for list in points.values() {
                for (plugin, _) in list {
                    if !plugins::known(plugin) {
                        errors.push(format!("{at}.plugins: Invalid value: \"{plugin}\": plugin {plugin:?} does not exist"));
                    }
                }
            }
            let sort: Vec<String> = points
                .get(&Point::QueueSort)
                .into_iter()
                .flatten()
                .map(|(n, _)| n.clone())
                .collect();
            match &queue_sort {
                None => queue_sort = Some(sort),
                Some(first) if *first != sort => errors.push(format!(
                    "{at}.plugins.queueSort: Invalid value: {sort:?}: queueSort must be the same for all profiles"
                )),
                Some(_) => {}
            }
            if points.get(&Point::Bind).is_none_or(|b| b.is_empty()) {
                errors.push(format!(
                    "{at}.plugins.bind: Required value: at least one bind plugin is needed"
                ));
            }
        }
        errors.dedup();
        if !errors.is_empty() {
            return Err(format!("[{}]", errors.join(", ")));
        }
        Ok(Config {
            parallelism: parallelism as usize,
            percentage_of_nodes_to_score: file.percentage_of_nodes_to_score,
            initial_backoff: std::time::Duration::from_secs(initial as u64),
            max_backoff: std::time::Duration::from_secs(max as u64),
            leader_elect: leader.leader_elect.unwrap_or(true),
            lease_name: leader.resource_name.unwrap_or_else(|| crate::LEASE.into()),
            lease_namespace: leader
                .resource_namespace
                .unwrap_or_else(|| crate::LEASE_NAMESPACE.into()),
            profiles: file.profiles,
        })
    }

    /// Builds each profile's framework.
    pub fn frameworks(
        &self,
        handle: &Arc<dyn Handle>,
    ) -> Result<HashMap<String, Arc<Framework>>, String> {
        let mut out = HashMap::new();
        for p in &self.profiles {
            let args: HashMap<&str, &serde_json::Value> = p
                .plugin_config
                .iter()
                .filter_map(|c| Some((c.name.as_str(), c.args.as_ref()?)))
                .collect();
            let mut built: HashMap<String, Arc<dyn crate::framework::Plugin>> = HashMap::new();
            let mut points = HashMap::new();
            for (point, list) in resolve(p) {
                let mut enabled = Vec::new();
                for (name, weight) in list {
                    let plugin = match built.get(&name) {
                        Some(p) => p.clone(),
                        None => {
                            let plugin =
                                plugins::build(&name, args.get(name.as_str()).copied(), handle)?;
                            built.insert(name.clone(), plugin.clone());
                            plugin
                        }
                    };
                    enabled.push(Enabled { plugin, weight });
                }
                points.insert(point, enabled);
            }
            let name = p.scheduler_name.clone().unwrap_or_default();
            out.insert(
                name.clone(),
                Arc::new(Framework {
                    scheduler_name: name,
                    percentage_of_nodes_to_score: p
                        .percentage_of_nodes_to_score
                        .or(self.percentage_of_nodes_to_score),
                    points,
                    handle: handle.clone(),
                }),
            );
        }
        Ok(out)
    }
}

/// The points a built-in plugin serves (what `multiPoint` expands it to).
fn served(name: &str) -> &'static [Point] {
    use Point::*;
    match name {
        "SchedulingGates" => &[PreEnqueue],
        "PrioritySort" => &[QueueSort],
        "NodeUnschedulable" | "NodeName" => &[Filter],
        "TaintToleration" => &[Filter, PreScore, Score],
        "NodeAffinity" | "NodeResourcesFit" | "PodTopologySpread" | "InterPodAffinity" => {
            &[PreFilter, Filter, PreScore, Score]
        }
        "NodePorts" | "VolumeRestrictions" | "NodeVolumeLimits" | "VolumeZone" => {
            &[PreFilter, Filter]
        }
        "VolumeBinding" => &[PreFilter, Filter, Reserve, PreBind],
        "DefaultPreemption" => &[PostFilter],
        "NodeResourcesBalancedAllocation" | "ImageLocality" => &[PreScore, Score],
        "DefaultBinder" => &[Bind],
        _ => &[],
    }
}

/// `mergePluginSet`: the defaults without the disabled ones (`*` disables all), a custom
/// entry replacing a default of the same name in place, the rest appended.
fn merge(defaults: &[(String, Option<i64>)], custom: &PluginSet) -> Vec<(String, Option<i64>)> {
    let disabled: HashSet<&str> = custom.disabled.iter().map(|p| p.name.as_str()).collect();
    let mut out: Vec<(String, Option<i64>)> = Vec::new();
    let mut replaced = HashSet::new();
    if !disabled.contains("*") {
        for (name, weight) in defaults {
            if disabled.contains(name.as_str()) {
                continue;
            }
            match custom.enabled.iter().find(|c| &c.name == name) {
                Some(c) => {
                    replaced.insert(c.name.clone());
                    out.push((c.name.clone(), c.weight));
                }
                None => out.push((name.clone(), *weight)),
            }
        }
    }
    for c in &custom.enabled {
        if !replaced.contains(&c.name) {
            out.push((c.name.clone(), c.weight));
        }
    }
    out
}

/// Each point's plugins with their weights (score weights default to 1): explicitly
/// configured ones first, in their order, then multi-point ones not disabled at the
/// point.
fn resolve(profile: &Profile) -> HashMap<Point, Vec<(String, i64)>> {
    let custom = profile.plugins.clone().unwrap_or_default();
    let defaults: Vec<(String, Option<i64>)> = plugins::DEFAULT_PLUGINS
        .iter()
        .map(|(n, w)| (n.to_string(), (*w > 0).then_some(*w)))
        .collect();
    let multi = merge(&defaults, &custom.multi_point);
    let mut out = HashMap::new();
    for point in Point::ALL {
        let set = custom.at(point);
        let explicit = merge(&[], set);
        let disabled: HashSet<&str> = set.disabled.iter().map(|p| p.name.as_str()).collect();
        let mut list: Vec<(String, i64)> = explicit
            .iter()
            .filter(|(n, _)| served(n).contains(&point) || !plugins::known(n))
            .map(|(n, w)| (n.clone(), w.unwrap_or(1).max(1)))
            .collect();
        for (name, weight) in &multi {
            let serves =
                served(name).contains(&point) || (!plugins::known(name) && point == Point::Filter);
            if !serves || disabled.contains("*") || disabled.contains(name.as_str()) {
                continue;
            }
            if list.iter().any(|(n, _)| n == name) {
                continue;
            }
            list.push((name.clone(), weight.unwrap_or(1).max(1)));
        }
        out.insert(point, list);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(config: &Config, point: Point) -> Vec<String> {
        resolve(&config.profiles[0])
            .remove(&point)
            .unwrap_or_default()
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    #[test]
    fn defaults_give_upstreams_plugins() {
        let config = Config::default();
        assert_eq!(config.profiles[0].scheduler_name.as_deref(), Some("default-scheduler"));
        assert_eq!(
            names(&config, Point::Filter),
            [
                "NodeUnschedulable",
                "NodeName",
                "TaintToleration",
                "NodeAffinity",
                "NodePorts",
                "NodeResourcesFit",
                "VolumeRestrictions",
                "NodeVolumeLimits",
                "VolumeBinding",
                "VolumeZone",
                "PodTopologySpread",
                "InterPodAffinity"
            ]
        );
        let score = resolve(&config.profiles[0]).remove(&Point::Score).unwrap_or_default();
        assert_eq!(
            score,
            [
                ("TaintToleration".to_owned(), 3),
                ("NodeAffinity".to_owned(), 2),
                ("NodeResourcesFit".to_owned(), 1),
                ("PodTopologySpread".to_owned(), 2),
                ("InterPodAffinity".to_owned(), 2),
                ("NodeResourcesBalancedAllocation".to_owned(), 1),
                ("ImageLocality".to_owned(), 1),
            ]
        );
        assert_eq!(config.initial_backoff, std::time::Duration::from_secs(1));
        assert!(config.leader_elect);
    }

    #[test]
    fn profiles_enable_disable_and_weigh_plugins() {
        let config = Config::parse(
            r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
leaderElection:
  leaderElect: false
profiles:
- schedulerName: default-scheduler
- schedulerName: no-scoring
  plugins:
    multiPoint:
      enabled:
      - name: NodeResourcesFit
        weight: 5
    score:
      disabled:
      - name: '*'
    filter:
      disabled:
      - name: TaintToleration
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
"#,
        )
        .expect("valid");
        assert!(!config.leader_elect);
        let second = resolve(&config.profiles[1]);
        assert!(second[&Point::Score].is_empty());
        assert!(!second[&Point::Filter].iter().any(|(n, _)| n == "TaintToleration"));
        assert!(second[&Point::PreScore].iter().any(|(n, _)| n == "TaintToleration"));
    }

    #[test]
    fn bad_configurations_are_refused_in_upstreams_words() {
        let head = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n";
        let err = Config::parse(&format!("{head}percentageOfNodesToScore: 120\n")).unwrap_err();
        assert_eq!(
            err,
            "[percentageOfNodesToScore: Invalid value: 120: not in valid range [0-100]]"
        );
        let err =
            Config::parse(&format!("{head}profiles:\n- schedulerName: a\n  foo: 1\n")).unwrap_err();
        assert_eq!(err, "strict decoding error: unknown field \"profiles[0].foo\"");
        let err =
            Config::parse(&format!("{head}profiles:\n- schedulerName: a\n- schedulerName: a\n"))
                .unwrap_err();
        assert_eq!(err, "[profiles[1].schedulerName: Duplicate value: \"a\"]");
        let err = Config::parse(&format!(
            "{head}profiles:\n- schedulerName: a\n  plugins:\n    filter:\n      enabled:\n      - name: Nope\n"
        ))
        .unwrap_err();
        assert!(err.contains("plugin \"Nope\" does not exist"), "{err}");
        let err = Config::parse("apiVersion: v9\nkind: KubeSchedulerConfiguration\n").unwrap_err();
        assert!(
            err.contains("no kind \"KubeSchedulerConfiguration\" is registered for version \"v9\""),
            "{err}"
        );
    }
}

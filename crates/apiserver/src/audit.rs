//! The audit log: one `audit.k8s.io/v1` `Event` per request as a JSON line, at the level
//! the `Policy` gives it, written by one task to a file that rotates by size.
//!
//! The default policy logs every request at `Metadata` and health checks not at all. A
//! policy may ask for request and response bodies (`Request`, `RequestResponse`), but
//! never gets them for Secrets: those stay at `Metadata`, whatever the policy says. Must
//! never block a request on the disk, nor write a Secret's data.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::meta::string_list;
use crate::request::User;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    fn parse(text: &str) -> Result<Self, PolicyError> {
        match text {
            "None" => Ok(Level::None),
            "Metadata" => Ok(Level::Metadata),
            "Request" => Ok(Level::Request),
            "RequestResponse" => Ok(Level::RequestResponse),
            other => Err(PolicyError::UnknownLevel(other.to_owned())),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

/// One rule of a Policy: who, what, where — and the level.
#[derive(Clone, Debug)]
struct Rule {
    level: Level,
    users: Vec<String>,
    groups: Vec<String>,
    verbs: Vec<String>,
    /// (group, resources) pairs; an empty resources list means every resource of the group.
    resources: Vec<(String, Vec<String>)>,
    namespaces: Vec<String>,
    non_resource_urls: Vec<String>,
}

/// An `audit.k8s.io/v1` Policy: the first rule that matches decides.
#[derive(Clone, Debug)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Default for Policy {
    /// Health checks and `/version` not at all, everything else at Metadata.
    fn default() -> Self {
        let health = Rule {
            level: Level::None,
            users: vec![],
            groups: vec![],
            verbs: vec![],
            resources: vec![],
            namespaces: vec![],
            non_resource_urls: ["/livez*", "/readyz*", "/healthz*", "/version"]
                .map(String::from)
                .to_vec(),
        };
        let everything =
            Rule { level: Level::Metadata, non_resource_urls: vec![], ..health.clone() };
        Policy { rules: vec![health, everything] }
    }
}

/// Why an audit policy is not one.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Yaml(#[from] serde_saphyr::Error),
    /// The document's `kind`, as JSON.
    #[error("kind must be Policy, not {0}")]
    Kind(Value),
    #[error("unknown audit level {0:?}")]
    UnknownLevel(String),
}

/// Why an audit policy file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read audit policy {}: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error("invalid audit policy {}: {error}", path.display())]
    Invalid { path: PathBuf, error: Box<PolicyError> },
}

impl Policy {
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| LoadError::Read { path: path.to_owned(), error })?;
        Self::parse(&text)
            .map_err(|error| LoadError::Invalid { path: path.to_owned(), error: Box::new(error) })
    }

    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let doc: Value = serde_saphyr::from_str(text)?;
        if doc["kind"] != "Policy" {
            return Err(PolicyError::Kind(doc["kind"].clone()));
        }
        let mut rules = Vec::new();
        for rule in doc["rules"].as_array().into_iter().flatten() {
            rules.push(Rule {
                level: Level::parse(rule["level"].as_str().unwrap_or(""))?,
                users: string_list(&rule["users"]),
                groups: string_list(&rule["userGroups"]),
                verbs: string_list(&rule["verbs"]),
                resources: rule["resources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        (r["group"].as_str().unwrap_or("").to_owned(), string_list(&r["resources"]))
                    })
                    .collect(),
                namespaces: string_list(&rule["namespaces"]),
                non_resource_urls: string_list(&rule["nonResourceURLs"]),
            });
        }
        Ok(Policy { rules })
    }

    /// The level of a request; `None` when no rule matches.
    fn level(&self, request: &Described, user: &User) -> Level {
        let matched = self.rules.iter().find(|rule| {
            (rule.users.is_empty() || rule.users.contains(&user.name))
                && (rule.groups.is_empty() || user.groups.iter().any(|g| rule.groups.contains(g)))
                && (rule.verbs.is_empty() || rule.verbs.contains(&request.verb))
                && match &request.object {
                    Some(o) => {
                        rule.non_resource_urls.is_empty()
                            && (rule.resources.is_empty()
                                || rule.resources.iter().any(|(group, resources)| {
                                    *group == o.group
                                        && (resources.is_empty() || resources.contains(&o.resource))
                                }))
                            && (rule.namespaces.is_empty()
                                || rule.namespaces.contains(&o.namespace))
                    }
                    None => {
                        rule.resources.is_empty()
                            && rule.namespaces.is_empty()
                            && (rule.non_resource_urls.is_empty()
                                || rule.non_resource_urls.iter().any(|p| {
                                    match p.strip_suffix('*') {
                                        Some(prefix) => request.path.starts_with(prefix),
                                        None => request.path == *p,
                                    }
                                }))
                    }
                }
        });
        matched.map_or(Level::None, |r| r.level)
    }
}

/// What a request is about, in audit's terms.
pub struct Described {
    pub verb: String,
    /// The path, decoded: what policies' `nonResourceURLs` match.
    pub path: String,
    /// The path and query as the client sent them (upstream's `requestURI`).
    pub request_uri: String,
    pub object: Option<ObjectRef>,
}

pub struct ObjectRef {
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub group: String,
    pub version: String,
}

/// Where and how the log is written.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    pub path: PathBuf,
    pub policy: Policy,
    /// Rotate when the file would grow past this (`--audit-log-maxsize`, in MB upstream).
    pub max_size_bytes: u64,
    /// Rotated files kept (`--audit-log-maxbackup`).
    pub max_backups: usize,
    /// Rotated files older than this many days are removed (`--audit-log-maxage`;
    /// 0 keeps them whatever their age).
    pub max_age_days: u64,
}

/// The handle requests send their events through.
#[derive(Clone)]
pub struct Auditor {
    policy: Policy,
    events: mpsc::Sender<Value>,
}

impl Auditor {
    /// Opens the log (0600) and starts its writer.
    pub fn start(config: AuditConfig) -> std::io::Result<Self> {
        if let Some(dir) = config.path.parent() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let file = open_log(&config.path)?;
        let (events, rx) = mpsc::channel(4096);
        let policy = config.policy.clone();
        std::thread::Builder::new()
            .name("keelson-audit".into())
            .spawn(move || write_loop(config, file, rx))?;
        Ok(Auditor { policy, events })
    }

    /// Records one request, if the policy logs it; never waits for the disk. `status`
    /// is the `Status` a failed request was answered with.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        described: &Described,
        user: &User,
        code: u16,
        status: Option<&Value>,
        received: &str,
        source: Option<std::net::SocketAddr>,
        user_agent: &str,
        request_body: Option<&[u8]>,
        stage: &str,
        collected: &Collected,
    ) {
        let mut level = self.policy.level(described, user);
        if level == Level::None {
            return;
        }
        let secret = described
            .object
            .as_ref()
            .is_some_and(|o| o.group.is_empty() && o.resource == "secrets");
        if secret {
            level = Level::Metadata;
        }
        let mut event = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": level.as_str(),
            "auditID": uuid::Uuid::new_v4().to_string(),
            "stage": stage,
            "requestURI": described.request_uri,
            "verb": described.verb,
            "user": { "username": user.name, "groups": user.groups },
            "sourceIPs": source.map(|s| vec![s.ip().to_string()]).unwrap_or_default(),
            "userAgent": user_agent,
            "responseStatus": response_status(code, status),
            "requestReceivedTimestamp": received,
            "stageTimestamp": micro_now(),
        });
        if let Some(impersonated) = &collected.impersonated {
            event["impersonatedUser"] = user_info(impersonated);
        }
        if !collected.annotations.is_empty() {
            let map: serde_json::Map<String, Value> =
                collected.annotations.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            event["annotations"] = Value::Object(map);
        }
        if let Some(o) = &described.object {
            let mut object_ref = json!({ "resource": o.resource, "apiVersion": o.version });
            for (field, value) in [
                ("namespace", &o.namespace),
                ("name", &o.name),
                ("apiGroup", &o.group),
                ("subresource", &o.subresource),
            ] {
                if !value.is_empty() {
                    object_ref[field] = json!(value);
                }
            }
            event["objectRef"] = object_ref;
        }
        if level >= Level::Request
            && let Some(body) = request_body.filter(|b| !b.is_empty())
            && let Some(object) = serde_json::from_slice::<Value>(body)
                .ok()
                .or_else(|| keelson_proto::decode(body).ok())
        {
            event["requestObject"] = object;
        }
        // A full queue means the disk is behind: drop rather than stall the API.
        if self.events.try_send(event).is_err() {
            tracing::warn!("audit log is behind; an event was dropped");
        }
    }
}

/// Upstream's `responseStatus`: the `Status` a failure was answered with (its fields,
/// without `kind` and `apiVersion`), else the code alone.
fn response_status(code: u16, status: Option<&Value>) -> Value {
    let mut response = json!({ "metadata": {}, "code": code });
    if let Some(status) = status.and_then(Value::as_object) {
        for (field, value) in
            status.iter().filter(|(f, _)| !matches!(f.as_str(), "kind" | "apiVersion"))
        {
            response[field] = value.clone();
        }
    }
    response
}

/// `authentication.k8s.io/v1` `UserInfo`, with `uid` and `extra` only when set.
fn user_info(user: &User) -> Value {
    let mut info = json!({ "username": user.name, "groups": user.groups });
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

/// What the handling of a request adds to its audit event.
#[derive(Debug, Default)]
pub struct Collected {
    /// Annotations, in the order they were added (admission's `AddAnnotation`, the
    /// authorization decision).
    pub annotations: Vec<(String, String)>,
    /// The user the request acts as, when the caller impersonates one.
    pub impersonated: Option<User>,
}

tokio::task_local! {
    /// What the request being handled adds to its audit event.
    static COLLECTED: std::cell::RefCell<Collected>;
}

/// Adds an annotation to the audit event of the request being handled (as admission
/// plugins' `AddAnnotation` does); outside a request it is dropped.
pub fn annotate(key: &str, value: impl Into<String>) {
    let value = value.into();
    let _ = COLLECTED.try_with(|c| c.borrow_mut().annotations.push((key.to_owned(), value)));
}

/// Records the user the request being handled acts as (upstream's
/// `LogImpersonatedUser`); outside a request it is dropped.
pub fn impersonated(user: &User) {
    let _ = COLLECTED.try_with(|c| c.borrow_mut().impersonated = Some(user.clone()));
}

/// Runs a request's handling, collecting what it adds to its audit event.
pub async fn collecting<F: std::future::Future>(handling: F) -> (F::Output, Collected) {
    COLLECTED
        .scope(std::cell::RefCell::new(Collected::default()), async {
            let output = handling.await;
            let collected = COLLECTED.with(|c| c.take());
            (output, collected)
        })
        .await
}

fn micro_now() -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let ts = keelson_api::k8s_openapi::jiff::Timestamp::from_second(now.as_secs() as i64)
        .unwrap_or(keelson_api::k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    format!("{}.{:06}Z", ts.strftime("%Y-%m-%dT%H:%M:%S"), now.subsec_micros())
}

/// The timestamp a request was received at, as audit writes it.
pub fn received_now() -> String {
    micro_now()
}

fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

fn write_loop(config: AuditConfig, file: std::fs::File, mut rx: mpsc::Receiver<Value>) {
    let mut size = file.metadata().map(|m| m.len()).unwrap_or(0);
    // Buffered, flushed whenever the queue runs dry: one write per burst, not per event.
    let mut file = std::io::BufWriter::new(file);
    loop {
        let event = match rx.try_recv() {
            Ok(event) => event,
            Err(mpsc::error::TryRecvError::Empty) => {
                if let Err(e) = file.flush() {
                    tracing::warn!(path = %config.path.display(), error = %e, "cannot write the audit log");
                }
                match rx.blocking_recv() {
                    Some(event) => event,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        if size > 0 && size + line.len() as u64 > config.max_size_bytes {
            let _ = file.flush();
            match rotate(&config) {
                Ok(fresh) => {
                    file = std::io::BufWriter::new(fresh);
                    size = 0;
                }
                Err(e) => {
                    tracing::warn!(path = %config.path.display(), error = %e, "cannot rotate the audit log")
                }
            }
        }
        if let Err(e) = file.write_all(&line) {
            tracing::warn!(path = %config.path.display(), error = %e, "cannot write the audit log");
        }
        size += line.len() as u64;
    }
    let _ = file.flush();
}

/// Renames the log to `audit-<timestamp>.log` (as upstream's lumberjack does), removes
/// the oldest beyond the limit, and opens a new one.
fn rotate(config: &AuditConfig) -> std::io::Result<std::fs::File> {
    let dir = config.path.parent().unwrap_or(Path::new("."));
    let stem = config.path.file_stem().and_then(|s| s.to_str()).unwrap_or("audit");
    let ext = config.path.extension().and_then(|s| s.to_str()).unwrap_or("log");
    let stamp = micro_now().replace(':', "-").trim_end_matches('Z').to_owned();
    std::fs::rename(&config.path, dir.join(format!("{stem}-{stamp}.{ext}")))?;
    let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&format!("{stem}-")) && n.ends_with(&format!(".{ext}"))
            })
        })
        .collect();
    backups.sort();
    while backups.len() > config.max_backups {
        let _ = std::fs::remove_file(backups.remove(0));
    }
    if config.max_age_days > 0 {
        let max_age = std::time::Duration::from_secs(config.max_age_days * 24 * 3600);
        for backup in backups {
            let old = std::fs::metadata(&backup)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > max_age);
            if old {
                let _ = std::fs::remove_file(backup);
            }
        }
    }
    open_log(&config.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(verb: &str, path: &str, object: Option<(&str, &str, &str)>) -> Described {
        Described {
            verb: verb.into(),
            path: path.into(),
            request_uri: path.into(),
            object: object.map(|(group, resource, namespace)| ObjectRef {
                resource: resource.into(),
                subresource: String::new(),
                namespace: namespace.into(),
                name: String::new(),
                group: group.into(),
                version: "v1".into(),
            }),
        }
    }

    #[test]
    fn the_default_policy_skips_health_checks() {
        let policy = Policy::default();
        let admin = User {
            name: "system:admin".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        };
        assert_eq!(policy.level(&request("get", "/livez", None), &admin), Level::None);
        assert_eq!(policy.level(&request("get", "/readyz/etcd", None), &admin), Level::None);
        assert_eq!(policy.level(&request("get", "/api", None), &admin), Level::Metadata);
        assert_eq!(
            policy.level(
                &request("create", "/api/v1/namespaces/a/pods", Some(("", "pods", "a"))),
                &admin
            ),
            Level::Metadata
        );
    }

    #[test]
    fn policy_errors_say_what_is_wrong() {
        let message = |text: &str| Policy::parse(text).expect_err(text).to_string();
        assert_eq!(message("kind: Other\n"), r#"kind must be Policy, not "Other""#);
        assert_eq!(message("rules: []\n"), "kind must be Policy, not null");
        assert_eq!(
            message("kind: Policy\nrules:\n  - level: Everything\n"),
            r#"unknown audit level "Everything""#
        );
        let missing = Policy::load(Path::new("/nonexistent/policy.yaml")).expect_err("missing");
        assert!(
            missing.to_string().starts_with("cannot read audit policy /nonexistent/policy.yaml: "),
            "{missing}"
        );
    }

    #[test]
    fn a_policy_file_is_matched_rule_by_rule() {
        let policy = Policy::parse(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: None\n    users: [\"system:kube-proxy\"]\n  - level: RequestResponse\n    resources: [{group: \"\", resources: [configmaps]}]\n    namespaces: [team]\n  - level: Metadata\n",
        )
        .expect("parses");
        let proxy = User { name: "system:kube-proxy".into(), groups: vec![], ..Default::default() };
        let alice = User { name: "alice".into(), groups: vec![], ..Default::default() };
        let cm = request(
            "update",
            "/api/v1/namespaces/team/configmaps/x",
            Some(("", "configmaps", "team")),
        );
        assert_eq!(policy.level(&cm, &proxy), Level::None);
        assert_eq!(policy.level(&cm, &alice), Level::RequestResponse);
        let elsewhere =
            request("update", "/api/v1/namespaces/b/configmaps/x", Some(("", "configmaps", "b")));
        assert_eq!(policy.level(&elsewhere, &alice), Level::Metadata);
        assert!(Policy::parse("kind: Policy\nrules: [{level: Loud}]\n").is_err());
    }
}

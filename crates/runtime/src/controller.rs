//! The controller table (kube-controller-manager's `NewControllerDescriptors`): each
//! controller is a name, the ServiceAccount it acts as, whether it is on by default,
//! and a start function. [`Manager::run`] starts the enabled ones, each with its own
//! client — the component's own credentials, or with
//! `--use-service-account-credentials` a token of `kube-system/<service account>`, so
//! RBAC sees `system:serviceaccount:kube-system:<name>` and grants it only the
//! controller's bootstrap role.
//!
//! [`run_workers`] is the loop every controller shares: workers take keys from the
//! queue, reconcile, and forget, requeue or retry with backoff by what the reconcile
//! returned (a panic counts as a failure), counting it in the metrics.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use kube::Client;

use crate::credentials::Credentials;
use crate::health::Checks;
use crate::informer::Informers;
use crate::metrics::{ControllerMetrics, Metrics};
use crate::queue::{RateLimit, WorkQueue};

/// What a controller's start gets: its client, the process's shared informers (started
/// with the component's client), metrics, and a signal that says stop.
#[derive(Clone)]
pub struct Context {
    pub name: &'static str,
    /// The controller's own client (its ServiceAccount's token, or the component's).
    pub client: Client,
    pub informers: Arc<Informers>,
    pub metrics: Metrics,
    pub stop: tokio::sync::watch::Receiver<bool>,
}

impl Context {
    /// A work queue reporting under the controller's name.
    pub fn queue<K: Clone + Eq + std::hash::Hash + Send + 'static>(&self) -> WorkQueue<K> {
        WorkQueue::with_metrics(RateLimit::default(), self.metrics.queue(self.name))
    }

    /// Resolves when the component stops.
    pub async fn stopped(&self) {
        let mut stop = self.stop.clone();
        let _ = stop.wait_for(|s| *s).await;
    }
}

pub type StartFuture = Pin<Box<dyn Future<Output = Result<(), crate::Error>> + Send>>;

/// One row of the controller table.
pub struct Descriptor {
    /// Upstream's name (`clusterrole-aggregation`, `root-ca-cert-publisher`, …).
    pub name: &'static str,
    /// The ServiceAccount in `kube-system` it acts as with
    /// `--use-service-account-credentials` (upstream's, e.g.
    /// `clusterrole-aggregation-controller`).
    pub service_account: &'static str,
    pub enabled_by_default: bool,
    pub start: Start,
}

/// A controller's start: given its context, the future that runs it until told to stop.
pub type Start = Box<dyn Fn(Context) -> StartFuture + Send + Sync>;

/// Whether `name` runs under `--controllers` (upstream's rules: `*` turns on the
/// default set, `foo` turns foo on, `-foo` turns it off; the most specific wins).
pub fn is_enabled(name: &str, enabled_by_default: bool, controllers: &[String]) -> bool {
    if controllers.iter().any(|c| c.strip_prefix('-') == Some(name)) {
        return false;
    }
    if controllers.iter().any(|c| c == name) {
        return true;
    }
    controllers.iter().any(|c| c == "*") && enabled_by_default
}

/// Checks `--controllers` against the table: every name (without `-`) must be known.
pub fn check_names(table: &[Descriptor], controllers: &[String]) -> Result<(), crate::Error> {
    let known: BTreeSet<&str> = table.iter().map(|d| d.name).collect();
    for c in controllers {
        let name = c.strip_prefix('-').unwrap_or(c);
        if name != "*" && !known.contains(name) {
            return Err(crate::Error::Config(format!(
                "{c:?} is not in the list of known controllers"
            )));
        }
    }
    Ok(())
}

/// Runs the enabled controllers of `table` until `stop` says so, and waits for them.
pub struct Manager {
    pub credentials: Credentials,
    pub informers: Arc<Informers>,
    pub metrics: Metrics,
    pub controllers: Vec<String>,
    /// Where each started controller adds its health check, named after it (upstream's
    /// `NamedPingChecker`): it fails once the controller has ended with an error.
    pub health: Checks,
}

impl Manager {
    pub async fn run(
        &self,
        table: &[Descriptor],
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), crate::Error> {
        check_names(table, &self.controllers)?;
        // Each controller's client is had in a task of its own (a TokenRequest with
        // `--use-service-account-credentials`), retried until it succeeds: one failed
        // request while the API server is busy or restarting must not keep a controller,
        // or the others, from ever starting.
        let mut pending = tokio::task::JoinSet::new();
        let mut running = tokio::task::JoinSet::new();
        let mut failures = HashMap::new();
        for (index, d) in table.iter().enumerate() {
            if !is_enabled(d.name, d.enabled_by_default, &self.controllers) {
                tracing::info!(controller = d.name, "controller disabled");
                continue;
            }
            let name = d.name;
            let failure = Arc::new(Mutex::new(None::<String>));
            let seen = failure.clone();
            self.health.add(name, move || match &*seen.lock().unwrap_or_else(|e| e.into_inner()) {
                Some(error) => Err(format!("controller failed: {error}")),
                None => Ok(()),
            });
            failures.insert(name, failure);
            let credentials = self.credentials.clone();
            let (service_account, stop) = (d.service_account, stop.clone());
            pending.spawn(async move {
                (index, client_with_retries(&credentials, name, service_account, stop).await)
            });
        }
        loop {
            tokio::select! {
                Some(got) = pending.join_next() => match got {
                    Ok((index, Some(client))) => {
                        let d = &table[index];
                        let context = Context {
                            name: d.name,
                            client,
                            informers: self.informers.clone(),
                            metrics: self.metrics.clone(),
                            stop: stop.clone(),
                        };
                        tracing::info!(controller = d.name, "starting controller");
                        let name = d.name;
                        let start = (d.start)(context);
                        running.spawn(async move { (name, start.await) });
                    }
                    // Told to stop before the client was had.
                    Ok((_, None)) => {}
                    Err(e) => tracing::error!(error = %e, "controller start task failed"),
                },
                Some(done) = running.join_next() => match done {
                    Ok((name, Err(e))) => {
                        tracing::error!(controller = name, error = %e, "controller failed");
                        if let Some(failure) = failures.get(name) {
                            *failure.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(e.to_string());
                        }
                    }
                    Ok((name, Ok(()))) => tracing::info!(controller = name, "controller stopped"),
                    Err(e) => tracing::error!(error = %e, "controller task failed"),
                },
                else => break,
            }
        }
        Ok(())
    }
}

/// The first and the longest wait between two tries at a controller's client.
const CLIENT_RETRY: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(5));

/// The client of the controller `name`, tried again with a doubling wait until had;
/// `None` once `stop` says stop.
async fn client_with_retries(
    credentials: &Credentials,
    name: &'static str,
    service_account: &'static str,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<Client> {
    let mut wait = CLIENT_RETRY.0;
    loop {
        if *stop.borrow() {
            return None;
        }
        match credentials.client_for(service_account).await {
            Ok(client) => return Some(client),
            Err(e) => tracing::warn!(
                controller = name,
                service_account,
                error = %e,
                retry_in = ?wait,
                "cannot get the controller's client; retrying"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
        wait = (wait * 2).min(CLIENT_RETRY.1);
    }
}

/// What a reconcile asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing until the object (or something it depends on) changes.
    AwaitChange,
    /// Look again after this long (a timer the controller owns, e.g. a TTL).
    RequeueAfter(Duration),
}

/// `workers` tasks draining `queue` through `reconcile` until the queue shuts down;
/// the queue is shut down when `context` says stop. Failed keys retry with the queue's
/// backoff; successful ones are forgotten.
pub async fn run_workers<K, F, Fut, E>(
    context: &Context,
    queue: WorkQueue<K>,
    workers: usize,
    reconcile: F,
) where
    K: Clone + Eq + std::hash::Hash + std::fmt::Debug + Send + Sync + 'static,
    F: Fn(K) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send,
    E: std::fmt::Display,
{
    let reconcile = Arc::new(reconcile);
    let metrics = context.metrics.controller(context.name);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let queue = queue.clone();
        let reconcile = reconcile.clone();
        let metrics = metrics.clone();
        let name = context.name;
        tasks.spawn(async move { worker(name, queue, reconcile, metrics).await });
    }
    let stopper = {
        let context = context.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            context.stopped().await;
            queue.shut_down();
        })
    };
    while tasks.join_next().await.is_some() {}
    stopper.abort();
}

async fn worker<K, F, Fut, E>(
    name: &'static str,
    queue: WorkQueue<K>,
    reconcile: Arc<F>,
    metrics: ControllerMetrics,
) where
    K: Clone + Eq + std::hash::Hash + std::fmt::Debug + Send + 'static,
    F: Fn(K) -> Fut,
    Fut: Future<Output = Result<Action, E>>,
    E: std::fmt::Display,
{
    while let Some(key) = queue.get().await {
        let started = tokio::time::Instant::now();
        // A reconcile that panics fails like one that errs: the key is retried with
        // backoff and the worker lives on. Uncaught, the panic would end this worker with
        // the key marked in process, so the object would never be reconciled again.
        let result = match AssertUnwindSafe(reconcile(key.clone())).catch_unwind().await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(panic) => Err(format!("panicked: {}", panic_message(panic.as_ref()))),
        };
        metrics.time.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(Action::AwaitChange) => {
                metrics.success.inc();
                queue.forget(&key);
            }
            Ok(Action::RequeueAfter(after)) => {
                metrics.requeue.inc();
                queue.forget(&key);
                queue.add_after(key.clone(), after);
            }
            Err(e) => {
                metrics.error.inc();
                metrics.errors.inc();
                tracing::warn!(controller = name, key = ?key, error = %e, "reconcile failed; retrying");
                queue.add_rate_limited(key.clone());
            }
        }
        queue.done(&key);
    }
}

/// What a panic said, if it said it with a string.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_reconcile_is_retried_and_the_worker_lives_on() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a url"));
        let client = Client::try_from(config).expect("a client");
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let context = Context {
            name: "test",
            client: client.clone(),
            informers: Arc::new(Informers::new(client)),
            metrics: Metrics::default(),
            stop,
        };
        let queue: WorkQueue<String> = context.queue();
        queue.add("boom".into());
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = calls.clone();
        let done = Arc::new(tokio::sync::Notify::new());
        let finished = done.clone();
        let workers = tokio::spawn(async move {
            run_workers(&context, queue, 1, move |_key: String| {
                let calls = seen.clone();
                let finished = finished.clone();
                async move {
                    if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        panic!("the first try fails");
                    }
                    finished.notify_one();
                    Ok::<_, String>(Action::AwaitChange)
                }
            })
            .await;
        });
        tokio::time::timeout(Duration::from_secs(10), done.notified()).await.expect("retried");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
        stop_tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), workers)
            .await
            .expect("stopped")
            .expect("joined");
    }

    fn flags(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn controllers_flag_follows_upstream_rules() {
        assert!(is_enabled("a", true, &flags(&["*"])));
        assert!(!is_enabled("b", false, &flags(&["*"])));
        assert!(is_enabled("b", false, &flags(&["*", "b"])));
        assert!(!is_enabled("a", true, &flags(&["*", "-a"])));
        assert!(is_enabled("a", true, &flags(&["a"])));
        assert!(!is_enabled("c", true, &flags(&["a"])));
        assert!(!is_enabled("a", true, &flags(&[])));
    }

    fn nothing(_: Context) -> StartFuture {
        Box::pin(async { Ok(()) })
    }

    #[test]
    fn unknown_controller_names_are_refused() {
        let table = [Descriptor {
            name: "known",
            service_account: "known-controller",
            enabled_by_default: true,
            start: Box::new(nothing),
        }];
        assert!(check_names(&table, &flags(&["*", "-known", "known"])).is_ok());
        let err = check_names(&table, &flags(&["*", "-nope"])).unwrap_err();
        assert_eq!(err.to_string(), "\"-nope\" is not in the list of known controllers");
    }
}

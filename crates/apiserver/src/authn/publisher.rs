//! What every namespace needs for its pods to reach the API server: the `default`
//! ServiceAccount (upstream's serviceaccounts controller) and the `kube-root-ca.crt`
//! ConfigMap with the cluster CA (upstream's root-ca-cert-publisher). Upstream runs both
//! in the controller manager; until Keelson has one they run inside the API server,
//! level-triggered: every pass makes every active namespace whole again.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::ApiServer;
use crate::registry::{self, Place};

const NAMESPACES: &str = "/registry/namespaces/";
const ROOT_CA: &str = "kube-root-ca.crt";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// Follows namespaces, service accounts and config maps until the server stops.
pub async fn run(api: Arc<ApiServer>) {
    let prefixes = [NAMESPACES, "/registry/serviceaccounts/", "/registry/configmaps/"];
    loop {
        if api.shutting_down() {
            return;
        }
        let mut feeds = Vec::new();
        for prefix in prefixes {
            match api.caches.get(prefix).await {
                Some(cache) => feeds.push(cache.live()),
                None => break,
            }
        }
        if feeds.len() != prefixes.len() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        reconcile(&api).await;
        loop {
            let changed = futures_select(&mut feeds).await;
            if !changed || api.shutting_down() {
                break;
            }
            // A burst of changes is one pass.
            tokio::time::sleep(Duration::from_millis(20)).await;
            for feed in feeds.iter_mut() {
                while feed.try_recv().is_ok() {}
            }
            reconcile(&api).await;
        }
    }
}

/// Waits for the next event on any feed; false once a feed closed.
async fn futures_select(
    feeds: &mut [tokio::sync::broadcast::Receiver<Arc<keelson_store::Event>>],
) -> bool {
    use tokio::sync::broadcast::error::RecvError;
    let [a, b, c] = feeds else {
        return false;
    };
    let result = tokio::select! {
        r = a.recv() => r.map(drop),
        r = b.recv() => r.map(drop),
        r = c.recv() => r.map(drop),
    };
    !matches!(result, Err(RecvError::Closed))
}

/// One pass: the default service account and the root CA in every active namespace.
pub async fn reconcile(api: &ApiServer) {
    let Some(tokens) = api.tokens.as_ref() else {
        return;
    };
    for namespace in crate::admission::stored(api, NAMESPACES).await {
        let terminating = !namespace["metadata"]["deletionTimestamp"].is_null()
            || namespace["status"]["phase"] == "Terminating";
        let Some(name) = namespace["metadata"]["name"].as_str().filter(|_| !terminating) else {
            continue;
        };
        let account = json!({ "metadata": { "name": "default", "namespace": name } });
        let root_ca = json!({
            "metadata": {
                "name": ROOT_CA,
                "namespace": name,
                "annotations": { "kubernetes.io/description": DESCRIPTION },
            },
            "data": { "ca.crt": tokens.root_ca_pem },
        });
        for (plural, object) in [("serviceaccounts", account), ("configmaps", root_ca)] {
            if let Err(e) = ensure(api, plural, name, object).await {
                tracing::warn!(namespace = name, plural, error = %e.message, "cannot publish to a namespace");
            }
        }
    }
}

/// Creates the object if it is missing; a root CA that changed is brought up to date.
async fn ensure(
    api: &ApiServer,
    plural: &str,
    namespace: &str,
    wanted: Value,
) -> crate::status::ApiResult<()> {
    let info = keelson_api::Registry::builtin()
        .find("", "v1", plural)
        .ok_or_else(|| crate::status::ApiError::internal(format!("{plural} are not registered")))?;
    let name = wanted["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let place = Place { info, namespace: Some(namespace), name: &name };
    match api.objects.get(place).await {
        Ok((existing, revision)) => {
            if plural == "configmaps" && existing["data"] != wanted["data"] {
                let mut updated = existing.clone();
                updated["data"] = wanted["data"].clone();
                crate::auth::write_update(api, place, &existing, updated, revision).await?;
            }
            Ok(())
        }
        Err(e) if e.code == http::StatusCode::NOT_FOUND => {
            let object = registry::prepare_create(
                info,
                Some(namespace),
                wanted,
                &Default::default(),
                &mut Vec::new(),
            )?;
            match api.objects.create(place, object, false).await {
                Ok(_) => Ok(()),
                Err(e) if e.reason == "AlreadyExists" => Ok(()),
                // The namespace went away in between.
                Err(e) if e.code == http::StatusCode::NOT_FOUND => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

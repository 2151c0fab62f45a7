//! `root-ca-certificate-publisher-controller`: every active namespace has the
//! `kube-root-ca.crt` ConfigMap holding the cluster CA (`ca.crt`), which the projected
//! token volume of every pod mounts, kept equal to the CA the controller manager has.

use std::collections::BTreeMap;

use keelson_api::k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use kube::api::{Api, PostParams};

use crate::namespaces::{active, namespace_gone, requeue_on_namespace_changes};

pub const NAME: &str = "root-ca-certificate-publisher-controller";
pub const SERVICE_ACCOUNT: &str = "root-ca-cert-publisher";
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
const DESCRIPTION_KEY: &str = "kubernetes.io/description";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// The controller with the CA bundle (PEM) it publishes.
pub fn starter(root_ca: String) -> impl Fn(Context) -> StartFuture {
    move |context| Box::pin(run(context, root_ca.clone()))
}

async fn run(context: Context, root_ca: String) -> keelson_runtime::Result<()> {
    let namespaces = context.informers.get::<Namespace>();
    let maps = context.informers.get::<ConfigMap>();
    let queue = context.queue::<String>();
    requeue_on_namespace_changes(&namespaces, &queue);
    {
        let queue = queue.clone();
        maps.on_change(move |change| {
            let cm = change.object();
            if cm.metadata.name.as_deref() == Some(CONFIG_MAP) {
                queue.add(cm.metadata.namespace.clone().unwrap_or_default());
            }
        });
    }
    namespaces.wait_synced().await;
    maps.wait_synced().await;
    let client = context.client.clone();
    let data: BTreeMap<String, String> = [("ca.crt".to_string(), root_ca)].into();
    run_workers(&context, queue, 1, move |namespace: String| {
        let namespaces = namespaces.clone();
        let maps = maps.clone();
        let client = client.clone();
        let data = data.clone();
        async move {
            if !active(&namespaces, &namespace) {
                return Ok::<_, kube::Error>(Action::AwaitChange);
            }
            let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
            let result = match maps.get(&format!("{namespace}/{CONFIG_MAP}")) {
                Some(cm) => {
                    let described = cm
                        .metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.get(DESCRIPTION_KEY).is_some_and(|d| !d.is_empty()));
                    if cm.data.as_ref() == Some(&data) && described {
                        return Ok(Action::AwaitChange);
                    }
                    let mut updated = (*cm).clone();
                    updated.data = Some(data);
                    updated
                        .metadata
                        .annotations
                        .get_or_insert_default()
                        .insert(DESCRIPTION_KEY.into(), DESCRIPTION.into());
                    api.replace(CONFIG_MAP, &PostParams::default(), &updated).await.map(drop)
                }
                None => {
                    let cm = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(CONFIG_MAP.into()),
                            annotations: Some(
                                [(DESCRIPTION_KEY.to_string(), DESCRIPTION.to_string())].into(),
                            ),
                            ..ObjectMeta::default()
                        },
                        data: Some(data),
                        ..ConfigMap::default()
                    };
                    match api.create(&PostParams::default(), &cm).await {
                        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                        other => other.map(drop),
                    }
                }
            };
            match result {
                Ok(()) => Ok(Action::AwaitChange),
                Err(e) if namespace_gone(&e) => Ok(Action::AwaitChange),
                Err(e) => Err(e),
            }
        }
    })
    .await;
    Ok(())
}

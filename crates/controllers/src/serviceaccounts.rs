//! `serviceaccount-controller`: every active namespace has a `default` ServiceAccount
//! (made again if deleted), so pods that name none can run.

use keelson_api::k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use keelson_runtime::informer::Change;
use kube::api::{Api, PostParams};

use crate::namespaces::{active, namespace_gone, requeue_on_namespace_changes};

pub const NAME: &str = "serviceaccount-controller";
pub const SERVICE_ACCOUNT: &str = "service-account-controller";
const DEFAULT: &str = "default";

pub fn start(context: Context) -> StartFuture {
    Box::pin(run(context))
}

async fn run(context: Context) -> keelson_runtime::Result<()> {
    let namespaces = context.informers.get::<Namespace>();
    let accounts = context.informers.get::<ServiceAccount>();
    let queue = context.queue::<String>();
    requeue_on_namespace_changes(&namespaces, &queue);
    {
        let queue = queue.clone();
        accounts.on_change(move |change| {
            let sa = change.object();
            if matches!(change, Change::Deleted(_)) && sa.metadata.name.as_deref() == Some(DEFAULT)
            {
                queue.add(sa.metadata.namespace.clone().unwrap_or_default());
            }
        });
    }
    namespaces.wait_synced().await;
    accounts.wait_synced().await;
    let client = context.client.clone();
    run_workers(&context, queue, 1, move |namespace: String| {
        let namespaces = namespaces.clone();
        let accounts = accounts.clone();
        let client = client.clone();
        async move {
            if !active(&namespaces, &namespace)
                || accounts.get(&format!("{namespace}/{DEFAULT}")).is_some()
            {
                return Ok::<_, kube::Error>(Action::AwaitChange);
            }
            let account = ServiceAccount {
                metadata: ObjectMeta { name: Some(DEFAULT.into()), ..ObjectMeta::default() },
                ..ServiceAccount::default()
            };
            let api: Api<ServiceAccount> = Api::namespaced(client, &namespace);
            match api.create(&PostParams::default(), &account).await {
                Ok(_) => Ok(Action::AwaitChange),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Action::AwaitChange),
                Err(e) if namespace_gone(&e) => Ok(Action::AwaitChange),
                Err(e) => Err(e),
            }
        }
    })
    .await;
    Ok(())
}

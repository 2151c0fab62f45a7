//! `certificatesigningrequest-approving-controller`, upstream's `csrapproving`
//! (`sarapprove.go`): a pending request for a node client certificate
//! (`kubernetes.io/kube-apiserver-client-kubelet`, subject `system:node:<name>` in
//! `system:nodes`, client usages, no SANs) is approved when a SubjectAccessReview for its
//! requester allows `create` on `certificatesigningrequests/selfnodeclient` (the
//! requester is that node, renewing) or `certificatesigningrequests/nodeclient` (anyone
//! allowed to join nodes: bootstrap tokens). Nothing else is ever approved
//! automatically, and nothing is ever denied. A request not approved is looked at again
//! every 30 seconds, so a requester granted the right later is approved without
//! touching its request.

use std::time::Duration;

use keelson_api::k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use keelson_api::k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use kube::api::{Api, PostParams};

use super::rules::{self, KUBELET_CLIENT};

pub const NAME: &str = "certificatesigningrequest-approving-controller";
const RECHECK: Duration = Duration::from_secs(30);

pub fn start(context: Context) -> StartFuture {
    Box::pin(run(context))
}

async fn run(context: Context) -> keelson_runtime::Result<()> {
    let requests = context.informers.get::<CertificateSigningRequest>();
    let queue = context.queue::<String>();
    requests.queue_changes(&queue);
    requests.wait_synced().await;
    let api: Api<CertificateSigningRequest> = Api::all(context.client.clone());
    let reviews: Api<SubjectAccessReview> = Api::all(context.client.clone());
    run_workers(&context, queue, 1, move |name: String| {
        let csr = requests.get(&name);
        let api = api.clone();
        let reviews = reviews.clone();
        async move {
            let Some(csr) = csr else { return Ok(Action::AwaitChange) };
            let Some(message) = candidate(&csr) else { return Ok(Action::AwaitChange) };
            let Some(message) = authorized(&reviews, &csr, message).await? else {
                return Ok(Action::RequeueAfter(RECHECK));
            };
            tracing::info!(
                csr = name,
                user = csr.spec.username.as_deref().unwrap_or_default(),
                "approving a node client certificate"
            );
            match super::write(
                &api,
                &super::with_condition(&csr, "Approved", "AutoApproved", message),
                "approval",
            )
            .await
            {
                Err(e) if !super::raced(&e) => Err(e),
                _ => Ok(Action::AwaitChange),
            }
        }
    })
    .await;
    Ok(())
}

/// The recognizers that apply to a pending kubelet client request, in upstream's order:
/// `(subresource, message)`; `None` if the request is not one to approve.
fn candidate(csr: &CertificateSigningRequest) -> Option<Vec<(&'static str, &'static str)>> {
    if super::issued(csr)
        || super::has_true_condition(csr, "Approved")
        || super::has_true_condition(csr, "Denied")
        || csr.spec.signer_name != KUBELET_CLIENT
    {
        return None;
    }
    let request = keelson_pki::CertificateRequest::from_pem(&csr.spec.request.0).ok()?;
    let usages = super::usages(csr).into_iter().collect();
    rules::kubelet_client(&request, &usages).ok()?;
    let mut recognizers = Vec::new();
    if csr.spec.username.as_deref() == Some(request.common_name.as_str()) {
        recognizers.push((
            "selfnodeclient",
            "Auto approving self kubelet client certificate after SubjectAccessReview.",
        ));
    }
    recognizers.push((
        "nodeclient",
        "Auto approving kubelet client certificate after SubjectAccessReview.",
    ));
    Some(recognizers)
}

/// The message of the first recognizer the requester is allowed, asked of the API
/// server's authorizer.
async fn authorized(
    reviews: &Api<SubjectAccessReview>,
    csr: &CertificateSigningRequest,
    recognizers: Vec<(&'static str, &'static str)>,
) -> Result<Option<&'static str>, kube::Error> {
    for (subresource, message) in recognizers {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: csr.spec.username.clone(),
                groups: csr.spec.groups.clone(),
                uid: csr.spec.uid.clone(),
                extra: csr.spec.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    group: Some("certificates.k8s.io".into()),
                    resource: Some("certificatesigningrequests".into()),
                    subresource: Some(subresource.into()),
                    verb: Some("create".into()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answer = reviews.create(&PostParams::default(), &review).await?;
        if answer.status.is_some_and(|s| s.allowed) {
            return Ok(Some(message));
        }
    }
    Ok(None)
}

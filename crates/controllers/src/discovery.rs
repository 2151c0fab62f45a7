//! Which resources the API serves, for the controllers that act on every resource
//! (the namespace controller, the garbage collector): read through aggregated
//! discovery, each group in its preferred version, custom resources included.

use kube::Client;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};

/// A served resource and what may be done with it.
#[derive(Clone, Debug)]
pub struct Served {
    pub resource: ApiResource,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl Served {
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    pub fn supports_all(&self, verbs: &[&str]) -> bool {
        verbs.iter().all(|v| self.supports(v))
    }

    /// `resource.group` (`pods.` for the core group), as upstream prints a
    /// GroupResource in messages.
    pub fn group_resource(&self) -> String {
        format!("{}.{}", self.resource.plural, self.resource.group)
    }

    /// Upstream's `%v` of a GroupVersionResource: `{group version resource}`.
    pub fn gvr(&self) -> String {
        let r = &self.resource;
        format!("{{{} {} {}}}", r.group, r.version, r.plural)
    }
}

fn served((resource, caps): (ApiResource, ApiCapabilities)) -> Served {
    Served { namespaced: caps.scope == Scope::Namespaced, verbs: caps.operations, resource }
}

/// Every resource served, in its group's preferred version.
pub async fn resources(client: &Client) -> Result<Vec<Served>, kube::Error> {
    let discovery = Discovery::new(client.clone()).run_aggregated().await?;
    Ok(discovery.groups().flat_map(|g| g.recommended_resources()).map(served).collect())
}

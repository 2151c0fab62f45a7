//! The registry in the shape of upstream's (unaggregated) discovery documents:
//! `APIResourceList` for `/api/v1` and `/apis/<group>/<version>`, `APIGroup` and
//! `APIGroupList` for `/apis/<group>` and `/apis`.
//!
//! This module only converts; it must never decide what is served (that is the registry's
//! data) nor how it is sent (that is the API server's).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, GroupVersionForDiscovery,
};

use crate::registry::{GroupInfo, Registry};
use crate::resource::{ResourceInfo, group_version};

impl ResourceInfo {
    /// The resource followed by its subresources (`pods`, `pods/attach`, ...), as upstream's
    /// discovery lists them. `storageVersionHash` is left out.
    pub fn api_resources(&self) -> Vec<APIResource> {
        let main = APIResource {
            name: self.plural.to_owned(),
            singular_name: self.singular.to_owned(),
            namespaced: self.namespaced(),
            kind: self.kind.to_owned(),
            verbs: strings(self.verbs),
            short_names: non_empty(self.short_names),
            categories: non_empty(self.categories),
            ..APIResource::default()
        };
        let subresources = self.subresources.iter().map(|s| APIResource {
            name: format!("{}/{}", self.plural, s.name),
            singular_name: String::new(),
            namespaced: self.namespaced(),
            kind: s.kind.to_owned(),
            group: (!s.group.is_empty()).then(|| s.group.to_owned()),
            version: (!s.version.is_empty()).then(|| s.version.to_owned()),
            verbs: strings(s.verbs),
            ..APIResource::default()
        });
        std::iter::once(main).chain(subresources).collect()
    }
}

impl GroupInfo {
    /// The group as `/apis/<group>` and `/apis` describe it.
    pub fn to_api_group(&self) -> APIGroup {
        let discovery = |version: &str| GroupVersionForDiscovery {
            group_version: group_version(self.name, version),
            version: version.to_owned(),
        };
        APIGroup {
            name: self.name.to_owned(),
            preferred_version: Some(discovery(self.preferred_version)),
            versions: self.versions.iter().map(|v| discovery(v)).collect(),
            server_address_by_client_cidrs: None,
        }
    }
}

impl Registry {
    /// The discovery document of one group-version (`/api/v1`, `/apis/apps/v1`), sorted by
    /// name as upstream sorts it; `None` if the group-version is not served.
    pub fn api_resource_list(&self, group: &str, version: &str) -> Option<APIResourceList> {
        let mut resources: Vec<APIResource> = self
            .group_version_resources(group, version)
            .flat_map(ResourceInfo::api_resources)
            .collect();
        if resources.is_empty() {
            return None;
        }
        resources.sort_by(|a, b| a.name.cmp(&b.name));
        Some(APIResourceList { group_version: group_version(group, version), resources })
    }

    /// The `/apis` document: every named group in upstream's order.
    pub fn api_group_list(&self) -> APIGroupList {
        APIGroupList { groups: self.groups().iter().map(GroupInfo::to_api_group).collect() }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Upstream omits empty short names and categories from discovery.
fn non_empty(items: &[&str]) -> Option<Vec<String>> {
    (!items.is_empty()).then(|| strings(items))
}

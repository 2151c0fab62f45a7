//! Printers of the authorization and certificates groups: role bindings, cluster role
//! bindings and certificate signing requests. Upstream's `printRoleBinding`,
//! `printClusterRoleBinding` and `printCertificateSigningRequest`. Roles and cluster roles
//! have no upstream printer and keep the default columns.

use serde_json::{Value, json};

use super::cells::{self, Now, items, text};
use super::{Column, Printer, human_duration};

const BINDING_COLUMNS: &[Column] = &[
    Column::NAME,
    Column::string("Role"),
    Column::AGE,
    Column::wide("Users"),
    Column::wide("Groups"),
    Column::wide("ServiceAccounts"),
];

pub(crate) const ROLE_BINDING: Printer =
    Printer::Columns { columns: BINDING_COLUMNS, cells: binding_cells };

pub(crate) const CLUSTER_ROLE_BINDING: Printer =
    Printer::Columns { columns: BINDING_COLUMNS, cells: binding_cells };

pub(crate) const CERTIFICATE_SIGNING_REQUEST: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::AGE,
        Column::string("SignerName"),
        Column::string("Requestor"),
        Column::string("RequestedDuration"),
        Column::string("Condition"),
    ],
    cells: |o, now| {
        let spec = &o["spec"];
        let duration = match spec["expirationSeconds"].as_i64() {
            Some(seconds) => human_duration(seconds),
            None => "<none>".into(),
        };
        vec![
            cells::name(o),
            now.age(o),
            json!(cells::text_or(&spec["signerName"], "<none>")),
            json!(text(&spec["username"])),
            json!(duration),
            json!(csr_condition(&o["status"])),
        ]
    },
};

/// `Kind/name` of the role, then the subjects by kind (upstream's `SubjectsStrings`),
/// service accounts as `namespace/name`.
fn binding_cells(o: &Value, now: Now) -> Vec<Value> {
    let role = &o["roleRef"];
    let (mut users, mut groups, mut accounts) = (Vec::new(), Vec::new(), Vec::new());
    for subject in items(&o["subjects"]) {
        let name = text(&subject["name"]);
        match text(&subject["kind"]) {
            "User" => users.push(name.to_owned()),
            "Group" => groups.push(name.to_owned()),
            "ServiceAccount" => accounts.push(format!("{}/{name}", text(&subject["namespace"]))),
            _ => {}
        }
    }
    vec![
        cells::name(o),
        json!(format!("{}/{}", text(&role["kind"]), text(&role["name"]))),
        now.age(o),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(accounts.join(", ")),
    ]
}

/// `Denied`, `Approved` or `Pending`, then `,Failed` and `,Issued` as they apply.
fn csr_condition(status: &Value) -> String {
    let has = |kind: &str| items(&status["conditions"]).any(|c| c["type"] == kind);
    let mut shown = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_owned();
    if has("Failed") {
        shown.push_str(",Failed");
    }
    if status["certificate"].as_str().is_some_and(|c| !c.is_empty()) {
        shown.push_str(",Issued");
    }
    shown
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::table::tests::print;

    #[test]
    fn a_role_binding_names_its_role_and_subjects() {
        let binding = json!({
            "metadata": { "name": "admins", "creationTimestamp": "2025-01-01T00:00:00Z" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "admin" },
            "subjects": [
                { "kind": "User", "name": "alice" },
                { "kind": "User", "name": "bob" },
                { "kind": "Group", "name": "ops" },
                { "kind": "ServiceAccount", "namespace": "ci", "name": "deployer" }
            ]
        });
        let (columns, cells) =
            print("rbac.authorization.k8s.io", "rolebindings", &binding, "2025-01-01T00:00:42Z");
        assert_eq!(columns, ["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"]);
        let expected = json!(["admins", "Role/admin", "42s", "alice, bob", "ops", "ci/deployer"]);
        assert_eq!(json!(cells), expected);
    }

    #[test]
    fn a_signing_request_shows_its_state() {
        let csr = json!({
            "metadata": { "name": "node-csr" },
            "spec": { "signerName": "kubernetes.io/kube-apiserver-client", "username": "alice", "expirationSeconds": 86400 },
            "status": { "conditions": [{ "type": "Approved", "status": "True" }], "certificate": "LS0t" }
        });
        let (_, cells) = print(
            "certificates.k8s.io",
            "certificatesigningrequests",
            &csr,
            "2025-01-01T00:00:00Z",
        );
        let expected = json!([
            "node-csr",
            "<unknown>",
            "kubernetes.io/kube-apiserver-client",
            "alice",
            "24h",
            "Approved,Issued"
        ]);
        assert_eq!(json!(cells), expected);
    }
}

//! Errors in upstream's words where clients and upstream's `test/cmd` look for them: a
//! body of the wrong kind, and a patch whose result does not fit the type.

mod common;

use anyhow::{Result, ensure};
use common::TestServer;

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: valid-pod\nspec:\n  containers:\n  - name: c\n    image: nginx\n";

/// upstream's `test/cmd/create.sh`: a pod's manifest posted raw to the namespaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_the_wrong_kind_is_unrecognized() -> Result<()> {
    let s = TestServer::start().await?;
    let file = s.dir.path().join("pod.yaml");
    std::fs::write(&file, POD)?;
    let file = file.to_str().unwrap_or_default();
    let err = s.fails(&["create", "--raw", "/api/v1/namespaces", "-f", file]).await?;
    ensure!(
        err.contains("the object provided is unrecognized (must be of type Namespace): couldn't get version/kind; json parse error: invalid character 'a' looking for beginning of value (61706956657273696f6e3a2076310a6b696e643a20506f640a6d65746164 ...)"),
        "{err}"
    );
    // As JSON, it is a Pod that cannot become a Namespace.
    let body = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}"#;
    let (code, text) =
        s.curl("POST", "/api/v1/namespaces", Some(body), "application/json", true).await?;
    let status: serde_json::Value = serde_json::from_str(&text)?;
    ensure!(
        code == 400
            && status["message"]
                == r#"Pod in version "v1" cannot be handled as a Namespace: converting (v1.Pod) to (core.Namespace): unknown conversion"#,
        "{code} {text}"
    );
    Ok(())
}

/// upstream's `test/cmd/core.sh`: a strategic merge patch that makes labels a string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_of_the_wrong_type_cannot_be_restored() -> Result<()> {
    let s = TestServer::start().await?;
    s.ok(&["create", "configmap", "c"]).await?;
    let patch = r#"{"metadata":{"labels":"invalid"}}"#;
    let err = s.fails(&["patch", "configmap", "c", "-p", patch]).await?;
    ensure!(err.contains("cannot restore map from string"), "{err}");
    let path = "/api/v1/namespaces/default/configmaps/c";
    let (code, text) =
        s.curl("PATCH", path, Some(patch), "application/strategic-merge-patch+json", true).await?;
    let status: serde_json::Value = serde_json::from_str(&text)?;
    ensure!(
        code == 422
            && status["message"]
                == r#" "" is invalid: patch: Invalid value: "map[metadata:map[labels:invalid]]": cannot restore map from string"#
            && status["reason"] == "Invalid"
            && status["details"]
                == serde_json::json!({"causes": [{
                    "reason": "FieldValueInvalid",
                    "message": "Invalid value: \"map[metadata:map[labels:invalid]]\": cannot restore map from string",
                    "field": "patch"
                }]}),
        "{code} {text}"
    );
    let (code, text) = s
        .curl(
            "PATCH",
            path,
            Some(r#"{"data":[1,2.5]}"#),
            "application/strategic-merge-patch+json",
            true,
        )
        .await?;
    ensure!(
        code == 422
            && text
                .contains(r#"Invalid value: \"map[data:[1 2.5]]\": cannot restore map from slice"#),
        "{code} {text}"
    );
    Ok(())
}

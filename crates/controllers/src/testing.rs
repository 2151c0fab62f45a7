//! What the controllers' unit tests share: a fake API server that records what it is
//! asked and answers with what it was sent, and informers fed by hand.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use keelson_runtime::informer::Informer;
use kube::runtime::watcher::Event;
use kube::{Client, Resource};
use serde_json::{Value, json};

/// What the fake API server was asked: `(method, path)`.
pub type Calls = Arc<Mutex<Vec<(String, String)>>>;

/// A client whose API server answers pod creates with a named pod (a name made up for a
/// `generateName`), deletes and status writes with their object, events with themselves.
pub fn fake_client() -> (Client, Calls) {
    let calls: Calls = Arc::default();
    let seen = calls.clone();
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let seen = seen.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let mut object: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
            let (method, path) = (parts.method.to_string(), parts.uri.path().to_owned());
            let created = {
                let mut seen = seen.lock().unwrap();
                seen.push((method.clone(), path.clone()));
                seen.len()
            };
            let generated = object["metadata"]["generateName"].is_string();
            if method == "POST" && path.ends_with("/pods") && generated {
                let name = format!(
                    "{}{created}",
                    object["metadata"]["generateName"].as_str().unwrap_or("")
                );
                object["metadata"]["name"] = json!(name);
                object["metadata"]["uid"] = json!(format!("uid-{name}"));
            }
            if method == "DELETE" {
                object = json!({ "kind": "Status", "apiVersion": "v1", "status": "Success" });
            }
            let response = http::Response::builder()
                .status(if method == "POST" { 201 } else { 200 })
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(object.to_string())))
                .expect("a response");
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    (Client::new(service, "default"), calls)
}

pub fn count(calls: &Calls, method: &str, suffix: &str) -> usize {
    calls.lock().unwrap().iter().filter(|(m, p)| m == method && p.contains(suffix)).count()
}

/// An informer that has listed `objects`.
pub fn synced<K: Resource + Send + Sync + 'static>(objects: Vec<K>) -> Arc<Informer<K>> {
    let informer = Arc::new(Informer::default());
    informer.apply(Event::Init);
    for o in objects {
        informer.apply(Event::InitApply(o));
    }
    informer.apply(Event::InitDone);
    informer
}

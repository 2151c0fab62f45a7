//! The HTTPS listener: TLS (rustls) with optional client certificates, HTTP/1.1 and
//! HTTP/2, and the authentication of each connection from its certificate.
//!
//! Must never serve plain HTTP, or let a request through without deciding who sent it.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::request::{Observation, RequestLabels};
use crate::request::{Request, User};
use crate::response::{Response, error_response};
use crate::status::ApiError;
use crate::{ApiServer, MAX_REQUEST_BYTES};

/// A JSON response indented for a client that asked for it (`?pretty=true`, curl).
async fn indented(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    // The body is whole already (a `Full`): collecting it cannot fail or wait.
    let Ok(collected) = body.collect().await;
    let pretty = crate::gojson::indent(&collected.to_bytes());
    Response::from_parts(parts, crate::response::full(pretty))
}

/// Accepts connections until `shutdown` turns true; each connection's identity comes
/// from its client certificate.
pub(crate) async fn accept_loop(
    api: Arc<ApiServer>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: watch::Receiver<bool>,
) {
    keelson_serving::serve(listener, tls, shutdown, move |peer| {
        let user = identify(&api, peer);
        let (api, addr) = (api.clone(), peer.addr);
        move |req: http::Request<Incoming>| {
            let (api, user) = (api.clone(), user.clone());
            async move { handle(&api, user, addr, req).await }
        }
    })
    .await
}

/// Who a connection is, from its client certificate.
#[derive(Clone)]
enum Identity {
    /// Anonymous without a certificate, the user the cluster CA's certificate names, or
    /// `None` for a certificate without a usable identity.
    Certificate(Option<User>),
    /// A front proxy (the front-proxy CA signed its certificate): each request names
    /// its user in request headers, if the proxy's name is allowed.
    FrontProxy(crate::authn::requestheader::Proxy),
}

fn identify(api: &ApiServer, peer: &keelson_serving::Peer) -> Identity {
    if let (Some(cert), Some(request_header)) = (&peer.certificate, &api.request_header)
        && let Some(proxy) = request_header.front_proxy(cert)
    {
        return Identity::FrontProxy(proxy);
    }
    Identity::Certificate(match peer.identity() {
        None => Some(User::anonymous()),
        Some(identity) => {
            identity.map(|id| User { name: id.user, groups: id.groups, ..Default::default() })
        }
    })
}

async fn handle(
    api: &ApiServer,
    identity: Identity,
    peer: SocketAddr,
    req: http::Request<Incoming>,
) -> Response {
    let received = crate::audit::received_now();
    let (mut parts, body) = req.into_parts();
    let user = match identity {
        Identity::Certificate(user) => user,
        Identity::FrontProxy(crate::authn::requestheader::Proxy::Allowed) => {
            crate::authn::requestheader::user(&mut parts.headers)
        }
        Identity::FrontProxy(crate::authn::requestheader::Proxy::Refused) => None,
    };
    // A body that never finishes (shorter than its Content-Length, or trickled) is
    // bounded by the request's deadline, as upstream's timeout filter bounds it.
    let reading = Limited::new(body, MAX_REQUEST_BYTES).collect();
    let collected = match tokio::time::timeout(REQUEST_TIMEOUT, reading).await {
        Ok(collected) => collected,
        Err(_) => {
            return error_response(&ApiError::timeout(
                "request did not complete within requested timeout - context deadline exceeded",
            ));
        }
    };
    let body = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return error_response(&ApiError::too_large(MAX_REQUEST_BYTES));
        }
        Err(e) => {
            return error_response(&ApiError::bad_request(format!(
                "cannot read the request body: {e}"
            )));
        }
    };
    // Refused only now that the body is read: a client still sending it when the 401
    // comes could miss the answer.
    let Some(user) = user else {
        return error_response(&ApiError::unauthorized());
    };
    // A bearer token authenticates a request without a client certificate.
    let user = match crate::authn::bearer(&parts.headers) {
        Some(token) if user.is_anonymous() => {
            let audiences = api.tokens.as_ref().map(|t| t.accepts().to_vec()).unwrap_or_default();
            match crate::authn::authenticate_token(api, token, &audiences).await {
                Ok(user) => user,
                Err(why) => {
                    tracing::info!(%peer, reason = %why, "bearer token rejected");
                    return error_response(&ApiError::unauthorized());
                }
            }
        }
        _ => user,
    };
    let request = Request::new(parts, body, user);
    let started = std::time::Instant::now();
    let (method, path) = (request.method.clone(), request.path.clone());
    let target = crate::router::target(&api.registry(), &request);
    let long_running = is_long_running(&request);
    let labels = RequestLabels::of(&request, target.as_ref());
    let mut observation = Observation::start(&api.metrics, labels, &method, long_running);
    // What the audit log needs, taken before the request is handed on.
    let audit = api.auditor.as_ref().map(|auditor| {
        let described = crate::router::describe(target, &request);
        let agent = request.header(http::header::USER_AGENT).to_owned();
        (auditor, described, request.user.clone(), agent, request.body.clone())
    });
    let deadline = (!long_running).then(|| request_timeout(&request));
    // Streams (watches, logs) are never indented, as upstream's stream serializer, nor
    // the documents upstream serves outside its API handlers (OpenAPI, the issuer's).
    let served_raw = ["/openapi/", "/.well-known/", "/openid/"];
    let pretty = deadline.is_some()
        && !served_raw.iter().any(|prefix| request.path.starts_with(prefix))
        && crate::gojson::wants_pretty(
            request.param("pretty"),
            request.header(http::header::ACCEPT),
            request.header(http::header::USER_AGENT),
        );
    let dispatched = crate::audit::collecting(crate::router::dispatch(api, request, deadline));
    let (routed, collected) = match deadline {
        Some(deadline) => match tokio::time::timeout(deadline, dispatched).await {
            Ok(done) => done,
            Err(_) => (
                crate::router::Routed {
                    result: Err(ApiError::timeout(
                        "request did not complete within requested timeout - context deadline exceeded",
                    )),
                    flow: None,
                },
                crate::audit::Collected::default(),
            ),
        },
        None => dispatched.await,
    };
    let (mut response, failure) = match routed.result {
        Ok(response) => (response, None),
        Err(error) => (error_response(&error), Some(error.to_status())),
    };
    if let Some(flow) = &routed.flow {
        flow.set_headers(response.headers_mut());
    }
    let response = if pretty { indented(response).await } else { response };
    if let Some((auditor, described, user, agent, body)) = audit {
        let stage = if described.verb == "watch" { "ResponseStarted" } else { "ResponseComplete" };
        auditor.record(
            &described,
            &user,
            response.status().as_u16(),
            failure.as_ref(),
            &received,
            Some(peer),
            &agent,
            Some(&body),
            stage,
            &collected,
        );
    }
    tracing::debug!(%method, %path, status = response.status().as_u16(), elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "request");
    observation.answered(response.status().as_u16());
    if long_running {
        // Counted until its stream ends, as upstream counts a watch when it closes.
        response.map(|body| crate::metrics::request::Observed::new(body, observation).boxed())
    } else {
        response
    }
}

/// The longest a request that is not long-running may take (kube-apiserver's
/// `--request-timeout`, one minute); a `timeout` query parameter may shorten it.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Watches (and, when they exist, exec, attach, port-forward, proxy and followed logs)
/// run as long as the client wants; nothing else does.
fn is_long_running(req: &Request) -> bool {
    let streaming = req
        .path
        .rsplit('/')
        .any(|segment| matches!(segment, "exec" | "attach" | "portforward" | "proxy"));
    req.flag("watch") || req.path.contains("/watch/") || streaming || req.flag("follow")
}

/// The request's deadline: `?timeout=` (a Go duration such as `32s`, `1m30s` or `1.5h`)
/// when shorter than the server's; one that does not parse, or overflows, is ignored.
pub(crate) fn request_timeout(req: &Request) -> std::time::Duration {
    let asked = req.param("timeout").and_then(parse_duration);
    asked.filter(|d| !d.is_zero()).map_or(REQUEST_TIMEOUT, |d| d.min(REQUEST_TIMEOUT))
}

/// A Go duration (`time.ParseDuration`): numbers with units `ns`, `us`, `µs`, `ms`, `s`,
/// `m`, `h`, optionally fractional, in sequence. Checked throughout: the text comes from
/// anyone, authenticated or not, so `None` rather than an overflow.
pub(crate) fn parse_duration(text: &str) -> Option<std::time::Duration> {
    const UNITS: [(&str, u128); 8] = [
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("μs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest == "0" {
        return Some(std::time::Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let whole_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (whole, after) = rest.split_at(whole_len);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
                after.split_at(len)
            }
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = UNITS.iter().find(|(name, _)| *name == unit)?.1;
        let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        let mut part = whole.checked_mul(scale)?;
        // The fraction's digits, as far as they still matter at nanosecond precision.
        let mut divisor: u128 = 1;
        for digit in fraction.bytes().take(20) {
            divisor *= 10;
            part = part.checked_add(u128::from(digit - b'0') * scale / divisor)?;
        }
        nanos = nanos.checked_add(part)?;
        rest = after;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    let subsec = u32::try_from(nanos % 1_000_000_000).ok()?;
    Some(std::time::Duration::new(secs, subsec))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::response::json_bytes;
    use crate::router::recovering;

    fn request(uri: &str) -> Request {
        let (parts, ()) = http::Request::builder().uri(uri).body(()).expect("request").into_parts();
        Request::new(parts, Bytes::new(), User::default())
    }

    #[test]
    fn requests_get_a_deadline_unless_they_stream() {
        assert!(is_long_running(&request("/api/v1/pods?watch=true")));
        assert!(is_long_running(&request("/api/v1/watch/pods")));
        assert!(is_long_running(&request("/api/v1/namespaces/a/pods/p/exec?command=ls")));
        assert!(!is_long_running(&request("/api/v1/namespaces/a/pods/p")));
        assert_eq!(request_timeout(&request("/api/v1/pods")), REQUEST_TIMEOUT);
        assert_eq!(
            request_timeout(&request("/api/v1/pods?timeout=32s")),
            std::time::Duration::from_secs(32)
        );
        assert_eq!(request_timeout(&request("/api/v1/pods?timeout=5m")), REQUEST_TIMEOUT);
        assert_eq!(request_timeout(&request("/api/v1/pods?timeout=bogus")), REQUEST_TIMEOUT);
    }

    #[tokio::test]
    async fn a_panicking_handler_is_answered_500_and_the_next_request_is_served() {
        let method = http::Method::GET;
        let panicked = recovering(async { panic!("boom") }, &method, "/api/v1/pods").await;
        let error = panicked.expect_err("a panic is an error");
        assert_eq!(error.code, http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error.reason, crate::status::Reason::InternalError);
        let response = error_response(&error);
        assert_eq!(response.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
        let served = recovering(async { Ok(json_bytes(b"{}".to_vec())) }, &method, "/").await;
        assert_eq!(served.expect("served").status(), http::StatusCode::OK);
    }

    #[test]
    fn timeouts_that_overflow_are_ignored_not_multiplied() {
        // Anyone may send these, before authentication decides anything.
        for huge in ["18446744073709551615m", "999999999999999999999999h", "307445734561825861m"] {
            assert_eq!(parse_duration(huge), None, "{huge}");
            let uri = format!("/api/v1/pods?timeout={huge}");
            assert_eq!(request_timeout(&request(&uri)), REQUEST_TIMEOUT, "{huge}");
        }
        let secs = std::time::Duration::from_secs;
        assert_eq!(parse_duration("1m30s"), Some(secs(90)));
        assert_eq!(parse_duration("1.5s"), Some(std::time::Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Some(std::time::Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Some(secs(0)));
        for bad in ["", "1", "s", ".s", "1x", "-1s", "1s-", "1..5s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(
            request_timeout(&request("/api/v1/pods?timeout=1m30s")),
            REQUEST_TIMEOUT.min(secs(90))
        );
    }
}

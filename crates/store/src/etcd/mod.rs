//! The etcd backend: the [`Store`] contract on etcd v3 over gRPC, with mutual TLS.
//!
//! The contract is shaped like etcd's API, so the mapping is direct:
//!
//! - a directory prefix `d` is the key range `[d, d with its last byte + 1)`; the empty
//!   prefix is every key (`["\0", "\0")` in etcd's terms);
//! - `list` is one range read with etcd's `limit` at the requested revision (0 = current);
//!   `remaining` is etcd's `count` of the range minus the items returned;
//! - `create`, `update` and `delete` are transactions comparing `create_revision` or
//!   `mod_revision`, whose else branch reads the key so a failed condition reports the
//!   current value without a second round trip;
//! - `watch` is an etcd watch from `from + 1` with `prev_kv`, re-established from the last
//!   delivered revision when the stream breaks (etcd restarted, connection lost);
//! - etcd's "required revision has been compacted", "required revision is a future
//!   revision" and "request is too large" become [`Error::Compacted`],
//!   [`Error::FutureRevision`] and [`Error::TooLarge`]; every other failure is
//!   [`Error::Unavailable`]. etcd does not say which revision it compacted to, so that is
//!   asked with a watch from revision 1, which etcd cancels naming it; nor does "request is
//!   too large" say the limit, which is learned once from an oversized read.
//!
//! This module must never panic on what etcd or the network does, never retry a write
//! (a write that failed in transit may have been applied; the caller decides), and never
//! write keys outside those it is asked to. Keelson writes one key per revision; the watch
//! relies on that when it resumes after the last delivered revision.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, GetResponse, Identity,
    KvClient, ResponseHeader, TlsOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchClient,
};
use tokio::time::{Instant, sleep, timeout};

mod watch;

use crate::{
    Error, KeyValue, ListOptions, ListResult, Result, Revision, Store, TlsFiles, Watch, check_key,
    directory,
};
use watch::compacted_revision;

/// The largest gRPC message sent or received: values up to etcd's own limit and big lists.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `connect` keeps trying an unreachable etcd.
const CONNECT_PATIENCE: Duration = Duration::from_secs(10);
/// How long a broken watch keeps trying to re-establish itself.
const WATCH_PATIENCE: Duration = Duration::from_secs(30);
/// The bound on any single request (watch streams excepted).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const RETRY_MAX_DELAY: Duration = Duration::from_secs(2);
/// How long to wait for etcd to name its compacted revision.
const COMPACTED_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest value this client sends, whatever etcd would accept.
const MAX_VALUE_SENT: usize = MAX_MESSAGE_BYTES - 1024 * 1024;
/// etcd's default `--max-request-bytes`, reported when etcd's limit cannot be learned.
const ETCD_DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// What etcd adds to `--max-request-bytes` for its gRPC receive limit.
const ETCD_GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// A [`Store`] on an etcd cluster.
pub struct EtcdStore {
    // Kept so the balanced channel's endpoint list stays alive with the store.
    _client: Client,
    kv: KvClient,
    watch: WatchClient,
    endpoints: Arc<str>,
    /// etcd's `--max-request-bytes` once learned (0 until then); see `request_limit`.
    request_limit: AtomicUsize,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").field("endpoints", &self.endpoints).finish_non_exhaustive()
    }
}

/// How an etcd request failed, before the operation adds its context.
enum Failure {
    Compacted,
    Future,
    /// `limit` when etcd said what it is.
    TooLarge {
        limit: Option<usize>,
    },
    Unavailable(String),
}

impl Failure {
    /// The error for an operation that expects none of the special cases.
    fn into_error(self) -> Error {
        match self {
            Failure::Unavailable(message) => Error::Unavailable(message),
            Failure::Compacted => {
                Error::Unavailable("etcd unexpectedly reported compaction".into())
            }
            Failure::Future => {
                Error::Unavailable("etcd unexpectedly reported a future revision".into())
            }
            Failure::TooLarge { .. } => {
                Error::Unavailable("etcd rejected a request as too large".into())
            }
        }
    }
}

impl EtcdStore {
    /// Connects to etcd, waiting up to 10 s for it to answer.
    ///
    /// `https://` endpoints need `tls.ca_file`, and a client certificate and key when etcd
    /// requires them (`--client-cert-auth`). Configuration mistakes are
    /// [`Error::InvalidEndpoint`]; an etcd that does not answer in time is
    /// [`Error::Unavailable`].
    pub async fn connect(endpoints: &[String], tls: &TlsFiles) -> Result<EtcdStore> {
        let joined: Arc<str> = endpoints.join(",").into();
        let invalid =
            |reason: String| Error::InvalidEndpoint { endpoint: joined.to_string(), reason };
        if endpoints.is_empty() {
            return Err(invalid("no etcd endpoints given".into()));
        }
        let https = endpoints.iter().filter(|e| e.starts_with("https://")).count();
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            // etcd refuses pings without an open stream (PermitWithoutStream=false).
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(false);
        if https == endpoints.len() {
            options = options.with_tls(tls_options(tls).map_err(|e| invalid(e.to_string()))?);
        } else if https > 0 {
            return Err(invalid(
                "all etcd endpoints must use the same scheme, http or https".into(),
            ));
        } else if *tls != TlsFiles::default() {
            tracing::warn!(endpoints = %joined, "ignoring the datastore TLS files: the etcd endpoints use plain http");
        }

        let deadline = Instant::now() + CONNECT_PATIENCE;
        let mut delay = Duration::from_millis(250);
        loop {
            let client = Client::connect(endpoints, Some(options.clone()))
                .await
                .map_err(|e| invalid(format!("cannot set up the etcd client: {e}")))?;
            let store = EtcdStore {
                kv: client
                    .kv_client()
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
                watch: client.watch_client().max_decoding_message_size(MAX_MESSAGE_BYTES),
                _client: client,
                endpoints: joined.clone(),
                request_limit: AtomicUsize::new(0),
            };
            let probe = timeout(CONNECT_TIMEOUT, store.current_revision()).await;
            let problem = match probe {
                Ok(Ok(revision)) => {
                    tracing::debug!(endpoints = %joined, revision, "connected to etcd");
                    return Ok(store);
                }
                Ok(Err(Error::Unavailable(message))) => message,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {CONNECT_TIMEOUT:?}"),
            };
            if Instant::now() + delay >= deadline {
                return Err(Error::Unavailable(format!(
                    "cannot reach etcd at {joined} within {CONNECT_PATIENCE:?}: {problem}"
                )));
            }
            tracing::warn!(endpoints = %joined, "etcd is not reachable, retrying in {delay:?}: {problem}");
            sleep(delay).await;
            delay = (delay * 2).min(RETRY_MAX_DELAY);
        }
    }

    /// Runs one request with the request timeout, classifying its failure.
    async fn call<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, Failure> {
        match timeout(REQUEST_TIMEOUT, request).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(classify(&e, || format!("etcd at {}: {what}: {e}", self.endpoints))),
            Err(_) => Err(Failure::Unavailable(format!(
                "etcd at {}: {what}: no answer within {REQUEST_TIMEOUT:?}",
                self.endpoints
            ))),
        }
    }

    async fn range(&self, key: Vec<u8>, options: GetOptions) -> Result<GetResponse, Failure> {
        let mut kv = self.kv.clone();
        self.call("range", kv.get(key, Some(options))).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, Failure> {
        let mut kv = self.kv.clone();
        self.call("transaction", kv.txn(txn)).await
    }

    /// The error for a write of a `size`-byte value that failed.
    async fn write_error(&self, failure: Failure, size: usize) -> Error {
        match failure {
            Failure::TooLarge { limit } => {
                let limit = match limit {
                    Some(limit) => limit,
                    None => self.request_limit(size).await,
                };
                Error::TooLarge { size, limit: limit.min(MAX_VALUE_SENT) }
            }
            other => other.into_error(),
        }
    }

    /// etcd's `--max-request-bytes`. etcd's "request is too large" does not say it, but
    /// its gRPC server names its receive limit (that plus 512 KiB) when a message exceeds
    /// it, so a read with a key bigger than that is sent once to learn it.
    async fn request_limit(&self, rejected: usize) -> usize {
        let known = self.request_limit.load(Ordering::Relaxed);
        if known > 0 {
            return known;
        }
        let probe_key = vec![b'/'; (rejected * 2).clamp(4 * 1024 * 1024, MAX_VALUE_SENT)];
        let limit = match self.range(probe_key, GetOptions::new().with_count_only()).await {
            Err(Failure::TooLarge { limit: Some(limit) }) => limit,
            _ => return ETCD_DEFAULT_MAX_REQUEST_BYTES,
        };
        self.request_limit.store(limit, Ordering::Relaxed);
        limit
    }

    /// The error for a read at `requested` that failed.
    async fn read_error(&self, failure: Failure, requested: Revision) -> Error {
        match failure {
            Failure::Compacted => Error::Compacted {
                requested,
                compacted: compacted_revision(&self.watch).await.unwrap_or(requested),
            },
            Failure::Future => match self.current_revision().await {
                Ok(current) => Error::FutureRevision { requested, current },
                Err(e) => e,
            },
            other => other.into_error(),
        }
    }

    /// The key's current value from a failed transaction's else branch (a range).
    fn current_of(response: &TxnResponse) -> Result<Option<KeyValue>> {
        for op in response.op_responses() {
            if let TxnOpResponse::Get(mut get) = op {
                return get.take_kvs().into_iter().next().map(key_value).transpose();
            }
        }
        Err(Error::Unavailable("etcd answered a failed transaction without its read".into()))
    }

    /// Runs a one-key conditional write: the new revision if the condition held, else
    /// the key's current state (read in the same transaction).
    async fn conditional(
        &self,
        txn: Txn,
        size: usize,
    ) -> Result<std::result::Result<Revision, Option<KeyValue>>> {
        let response = match self.txn(txn).await {
            Ok(response) => response,
            Err(failure) => return Err(self.write_error(failure, size).await),
        };
        if response.succeeded() {
            return Ok(Ok(revision_of(response.header())?));
        }
        Ok(Err(Self::current_of(&response)?))
    }
    /// A conditional write (`op`) of `key` at `expected`, for `update` and `delete`.
    async fn write_if(
        &self,
        key: &str,
        expected: Revision,
        op: TxnOp,
        size: usize,
    ) -> Result<Revision> {
        let txn = Txn::new()
            .when([
                Compare::mod_revision(key, CompareOp::Equal, expected),
                // mod_revision of an absent key compares as 0: require the key to exist.
                Compare::create_revision(key, CompareOp::Greater, 0),
            ])
            .and_then([op])
            .or_else([TxnOp::get(key, None)]);
        match self.conditional(txn, size).await? {
            Ok(revision) => Ok(revision),
            Err(None) => Err(Error::NotFound { key: key.to_owned() }),
            Err(Some(current)) => {
                Err(Error::Conflict { key: key.to_owned(), expected, current: Box::new(current) })
            }
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        check_key(key)?;
        let mut response =
            self.range(key.into(), GetOptions::new()).await.map_err(Failure::into_error)?;
        response.take_kvs().into_iter().next().map(key_value).transpose()
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        let (dir, end) = dir_range(prefix);
        let start = match &options.start_after {
            Some(after) => {
                let mut after = after.as_bytes().to_vec();
                after.push(0);
                after.max(dir)
            }
            None => dir,
        };
        let requested = options.revision.filter(|r| *r > 0);
        let mut get = GetOptions::new().with_range(end).with_revision(requested.unwrap_or(0));
        if options.limit > 0 {
            get = get.with_limit(i64::try_from(options.limit).unwrap_or(i64::MAX));
        }
        let mut response = match self.range(start, get).await {
            Ok(response) => response,
            Err(failure) => return Err(self.read_error(failure, requested.unwrap_or(0)).await),
        };
        let revision = match requested {
            Some(revision) => revision,
            None => revision_of(response.header())?,
        };
        let count = u64::try_from(response.count()).unwrap_or(0);
        let items = response.take_kvs().into_iter().map(key_value).collect::<Result<Vec<_>>>()?;
        let remaining = count.saturating_sub(items.len() as u64);
        Ok(ListResult { items, revision, remaining })
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        let (dir, end) = dir_range(prefix);
        let response = self
            .range(dir, GetOptions::new().with_range(end).with_count_only())
            .await
            .map_err(Failure::into_error)?;
        Ok(u64::try_from(response.count()).unwrap_or(0))
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        check_key(key)?;
        let size = value.len();
        if size > MAX_VALUE_SENT {
            return Err(self.write_error(Failure::TooLarge { limit: None }, size).await);
        }
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)])
            .or_else([TxnOp::get(key, None)]);
        match self.conditional(txn, size).await? {
            Ok(revision) => Ok(revision),
            Err(Some(current)) => {
                Err(Error::AlreadyExists { key: key.to_owned(), current: Box::new(current) })
            }
            Err(None) => Err(Error::Unavailable(format!(
                "etcd refused to create {key:?} but returned no current value"
            ))),
        }
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        check_key(key)?;
        let size = value.len();
        if size > MAX_VALUE_SENT {
            return Err(self.write_error(Failure::TooLarge { limit: None }, size).await);
        }
        self.write_if(key, expected, TxnOp::put(key, value, None), size).await
    }

    async fn delete(&self, key: &str, expected: Revision) -> Result<Revision> {
        check_key(key)?;
        self.write_if(key, expected, TxnOp::delete(key, None), 0).await
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch> {
        // One read at `from_revision` checks it is neither compacted nor in the future.
        let check = GetOptions::new().with_count_only().with_revision(from_revision.max(0));
        let current = match self.range(vec![0], check).await {
            Ok(response) => revision_of(response.header())?,
            Err(failure) => return Err(self.read_error(failure, from_revision).await),
        };
        if from_revision > current {
            return Err(Error::FutureRevision { requested: from_revision, current });
        }
        let (start, end) = dir_range(prefix);
        watch::start(self.watch.clone(), start, end, from_revision, self.endpoints.clone()).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        let response = self
            .range(vec![0], GetOptions::new().with_count_only())
            .await
            .map_err(Failure::into_error)?;
        revision_of(response.header())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        if revision <= 0 {
            return Ok(());
        }
        let mut kv = self.kv.clone();
        match self.call("compaction", kv.compact(revision, None)).await {
            // etcd refuses to compact to or below an earlier compaction; the contract
            // makes that a no-op.
            Ok(_) | Err(Failure::Compacted) => Ok(()),
            Err(failure) => Err(self.read_error(failure, revision).await),
        }
    }

    fn backend(&self) -> &'static str {
        "etcd"
    }
}

/// Why the TLS files for `https://` endpoints are unusable.
#[derive(Debug, thiserror::Error)]
enum TlsError {
    #[error("https etcd endpoints need a CA certificate (--datastore-cafile)")]
    NoCa,
    #[error("cannot read the {what} {}: {error}", path.display())]
    Read { what: &'static str, path: std::path::PathBuf, error: std::io::Error },
    #[error("a client certificate needs its key (--datastore-certfile with --datastore-keyfile)")]
    Unpaired,
}

/// Reads the TLS files for `https://` endpoints.
fn tls_options(tls: &TlsFiles) -> std::result::Result<TlsOptions, TlsError> {
    let read = |path: &std::path::Path, what: &'static str| {
        std::fs::read(path).map_err(|error| TlsError::Read { what, path: path.to_owned(), error })
    };
    let ca = tls.ca_file.as_deref().ok_or(TlsError::NoCa)?;
    let mut options =
        TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?));
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let identity =
                Identity::from_pem(read(cert, "client certificate")?, read(key, "client key")?);
            options = options.identity(identity);
        }
        (None, None) => {}
        _ => return Err(TlsError::Unpaired),
    }
    Ok(options)
}

/// The key range `[start, end)` of the directory `prefix`.
fn dir_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let dir = directory(prefix).into_bytes();
    if dir.is_empty() {
        return (vec![0], vec![0]);
    }
    let mut end = dir.clone();
    // A directory ends with '/', so its last byte can always be incremented.
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return (dir, end);
        }
    }
    (dir, vec![0])
}

fn key_value(kv: etcd_client::KeyValue) -> Result<KeyValue> {
    let (create_revision, mod_revision) = (kv.create_revision(), kv.mod_revision());
    let (key, value) = kv.into_key_value();
    let key = String::from_utf8(key).map_err(|e| {
        Error::Corrupt(format!("etcd key {:?} is not UTF-8", String::from_utf8_lossy(e.as_bytes())))
    })?;
    Ok(KeyValue { key, value, create_revision, mod_revision })
}

fn revision_of(header: Option<&ResponseHeader>) -> Result<Revision> {
    header
        .map(ResponseHeader::revision)
        .ok_or_else(|| Error::Unavailable("etcd answered without a response header".into()))
}

/// Sorts an etcd client error into the cases the contract names.
fn classify(error: &etcd_client::Error, describe: impl FnOnce() -> String) -> Failure {
    if let etcd_client::Error::GRpcStatus(status) = error {
        let message = status.message();
        if message.contains("required revision has been compacted") {
            return Failure::Compacted;
        }
        if message.contains("required revision is a future revision") {
            return Failure::Future;
        }
        if message.contains("request is too large") {
            return Failure::TooLarge { limit: None };
        }
        // etcd's gRPC server: "grpc: received message larger than max (N vs. M)", where M
        // is --max-request-bytes plus etcd's overhead allowance.
        if message.contains("received message larger than max")
            && let Some(&max) = numbers(message).last()
        {
            return Failure::TooLarge { limit: Some(max.saturating_sub(ETCD_GRPC_OVERHEAD_BYTES)) };
        }
        // This client's own limit: "encoded message length too large: found N bytes, the
        // limit is: M bytes".
        if message.contains("encoded message length too large")
            && let Some(&max) = numbers(message).last()
        {
            return Failure::TooLarge { limit: Some(max) };
        }
    }
    Failure::Unavailable(describe())
}

/// The decimal numbers in `text`, in order.
fn numbers(text: &str) -> Vec<usize> {
    text.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_become_half_open_ranges() {
        assert_eq!(dir_range(""), (vec![0], vec![0]));
        assert_eq!(dir_range("/a"), (b"/a/".to_vec(), b"/a0".to_vec()));
        assert_eq!(dir_range("/a/"), (b"/a/".to_vec(), b"/a0".to_vec()));
    }

    #[test]
    fn tls_file_errors_name_the_flag_or_file() {
        let message = |tls: &TlsFiles| tls_options(tls).err().map(|e| e.to_string());
        assert_eq!(
            message(&TlsFiles::default()).as_deref(),
            Some("https etcd endpoints need a CA certificate (--datastore-cafile)")
        );
        let missing =
            TlsFiles { ca_file: Some("/nonexistent/ca.crt".into()), ..Default::default() };
        let read = message(&missing).unwrap_or_default();
        assert!(read.starts_with("cannot read the CA certificate /nonexistent/ca.crt: "), "{read}");
    }

    #[test]
    fn grpc_size_limits_are_read_from_messages() {
        assert_eq!(
            numbers("grpc: received message larger than max (9437184 vs. 8912896)"),
            [9437184, 8912896]
        );
    }
}

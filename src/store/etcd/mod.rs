//! The etcd backend (feature `fleet`): the same records as the embedded store, as keys under
//! one prefix of an etcd v3 cluster that every host of a fleet shares.
//!
//! ```text
//! <prefix>vms/<id>            the VM record (`record.rs`'s layout; its revision field is 0)
//! <prefix>events/<id>         a scheduled event, JSON
//! <prefix>incarnations/<vm>   a VM's DocumentIncarnation, decimal
//! <prefix>imported/<vm>/<ev>  a definition event already imported (value unused)
//! <prefix>provisioning/<vm>   a VM's provisioning record (opaque bytes)
//! <prefix>events-written      put by every scheduled-events write: its mod_revision is the
//!                             revision of the fleet's events, compared by the next write
//! <prefix>progress/<host>     the newest revision a host's snapshot applied, decimal, under
//!                             that host's lease (`progress.rs`)
//! ```
//!
//! A VM's revision (its ETag) is its key's `mod_revision`: etcd makes it unique, increasing
//! and never reused, and a conditional write is one transaction comparing it. Every write is
//! one transaction, so it is all-or-nothing and acknowledged by a quorum before it returns.
//!
//! The store's interface is synchronous (its callers run it on blocking threads), the client
//! is async: the backend owns a one-thread runtime and each call waits for its future there,
//! bounded by [`CALL_TIMEOUT`]. A call that could not connect to the member the client
//! picked is tried again on another ([`until_connected`]); one that fails otherwise or times
//! out is [`Error::Unavailable`] (503, never acknowledged), and marks the store failing until
//! a call succeeds again, which is what `/readyz` and status report. A write that timed out may still have been applied by
//! etcd: it was not acknowledged, and the next read shows whether it was.

mod events;
mod keys;
mod progress;
mod records;
#[cfg(test)]
pub(super) mod testing;
#[cfg(test)]
mod tests;
mod watch;

use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, Identity, KvClient, TlsOptions,
};

use crate::store::{Error, EtcdOptions, StoreFailure, StoreHealth};
use crate::telemetry::histogram::{self, Histogram};

pub(super) use records::EtcdBatch;

/// How long one store call may take before it is given up as unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting to a member may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// HTTP/2 pings on the connection to etcd: what notices a member that is alive but answers
/// nothing (frozen, or its host paused), which fails no call on its own while nothing writes.
/// etcd refuses pings closer together than its `--grpc-keepalive-min-time` (5 s by default;
/// it answers a client pinging faster with GOAWAY), so one every 6 s. A frozen member is
/// noticed after 9 s or less, then the store probe's [`CALL_TIMEOUT`]: readiness turned
/// 503 about 13 s after a freeze (tests/it/fleet.rs), 20 s with the 10 s + 5 s used before.
const PING_EVERY: Duration = Duration::from_secs(6);
const PING_ANSWER_WITHIN: Duration = Duration::from_secs(3);
/// How many times one call is tried while no connection can be made ([`until_connected`]):
/// with one member of three down a try fails about one time in four, so twelve fail together
/// about once in 16 million calls. With every member down and refusing connections the call
/// fails within a second; a member that does not answer at all costs a connect timeout
/// per try, and the whole call is bounded by [`CALL_TIMEOUT`] either way.
const CONNECT_TRIES: u32 = 12;
/// Records read per range request when loading everything. A page whose answer is larger
/// than [`MAX_ANSWER`] (records of VMs with large custom data) is read again in halves.
const PAGE: i64 = 500;
/// The largest answer the client decodes: gRPC's 4 MiB default held only 500 records of
/// 8 KiB (a start on such a store failed); etcd takes writes up to 1.5 MiB each.
const MAX_ANSWER: usize = 64 << 20;

/// A connection to the cluster, the runtime it runs on and the store's health.
pub(super) struct Etcd {
    runtime: Option<tokio::runtime::Runtime>,
    client: Client,
    prefix: String,
    /// `--etcd-max-txn-ops`: a transaction with more operations is refused before it is sent.
    max_txn_ops: usize,
    failure: Mutex<Option<StoreFailure>>,
    commits: Histogram,
    /// The revision of the newest VM write this process committed: what a local write waits
    /// for its watch to reach (the cluster's revision also counts other keys' writes, such
    /// as hosts' progress, which the VM watch never delivers).
    vm_written: AtomicU64,
}

impl fmt::Debug for Etcd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Etcd")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for Etcd {
    /// The runtime may be dropped from async code (a server shutting down): let its threads
    /// go without blocking on them.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Etcd {
    /// Connects and reads once, so a wrong address, certificate or password fails the start
    /// with etcd's reason instead of the first write.
    pub(super) fn connect(options: &EtcdOptions) -> Result<Etcd, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("azimds-etcd")
            .enable_all()
            .build()
            .map_err(|e| unavailable(format!("cannot start the etcd client's runtime: {e}")))?;
        let connect = connect_options(options)?;
        let endpoints = options.endpoints.clone();
        let client = wait(&runtime, async move {
            Client::connect(endpoints, Some(connect)).await
        })
        .map_err(|reason| {
            // A wrong user or password is a setting no retry fixes (like an unreadable TLS
            // file): the start stops with the reason rather than waiting for ever. etcd says
            // it in this message (its ErrAuthFailed) with gRPC's InvalidArgument.
            if reason.contains("authentication failed") {
                Error::Settings {
                    reason: format!(
                        "etcd refused the user name or password (--etcd-user, --etcd-password-file): {reason}"
                    ),
                }
            } else {
                unavailable(format!("cannot connect to etcd: {reason}"))
            }
        })?;
        let etcd = Etcd {
            runtime: Some(runtime),
            client,
            prefix: options.prefix.clone(),
            max_txn_ops: options.max_txn_ops,
            failure: Mutex::new(None),
            commits: Histogram::new(histogram::COMMIT_BOUNDS),
            vm_written: AtomicU64::new(0),
        };
        etcd.count("vms/")?;
        Ok(etcd)
    }

    pub(super) fn max_txn_ops(&self) -> usize {
        self.max_txn_ops
    }

    pub(super) fn commit_times(&self) -> &Histogram {
        &self.commits
    }

    pub(super) fn health(&self) -> StoreHealth {
        StoreHealth {
            failure: self.failure().clone(),
        }
    }

    /// Reads one count: succeeds once etcd answers again.
    pub(super) fn probe(&self) -> StoreHealth {
        let _ = self.count("vms/");
        self.health()
    }

    /// The full key of `name` (`vms/a`, …) under this store's prefix.
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Runs one call against etcd on the client's runtime and waits for it, recording the
    /// store's health from the outcome. `call` may run more than once: see
    /// [`until_connected`].
    fn call<T, F>(&self, call: impl Fn(KvClient) -> F + Send + 'static) -> Result<T, Error>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the store");
        let kv = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_ANSWER);
        match wait(runtime, until_connected(kv, call)) {
            Ok(value) => {
                *self.failure() = None;
                Ok(value)
            }
            Err(reason) => {
                let mut failure = self.failure();
                let since = failure.as_ref().map_or_else(SystemTime::now, |f| f.since);
                *failure = Some(StoreFailure {
                    reason: reason.clone(),
                    since,
                });
                drop(failure);
                tracing::warn!(%reason, "etcd call failed");
                Err(unavailable(reason))
            }
        }
    }

    /// A write: its duration goes into the commit histogram when it succeeds.
    fn commit<T, F>(&self, call: impl Fn(KvClient) -> F + Send + 'static) -> Result<T, Error>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let started = Instant::now();
        let out = self.call(call)?;
        self.commits.observe(started.elapsed());
        Ok(out)
    }

    /// How many keys start with `name`.
    fn count(&self, name: &str) -> Result<u64, Error> {
        let key = self.key(name);
        self.call(move |mut kv| {
            let key = key.clone();
            async move {
                let response = kv
                    .get(key, Some(GetOptions::new().with_prefix().with_count_only()))
                    .await?;
                Ok(u64::try_from(response.count()).unwrap_or(0))
            }
        })
    }

    /// The cluster's revision now.
    pub(super) fn revision(&self) -> Result<u64, Error> {
        let key = self.key("vms/");
        self.call(move |mut kv| {
            let key = key.clone();
            async move {
                let response = kv
                    .get(key, Some(GetOptions::new().with_prefix().with_count_only()))
                    .await?;
                Ok(response
                    .header()
                    .map_or(0, |h| u64::try_from(h.revision()).unwrap_or(0)))
            }
        })
    }

    /// The revision of the newest VM write this process committed (0: none yet).
    pub(super) fn vm_written(&self) -> u64 {
        self.vm_written.load(Ordering::SeqCst)
    }

    /// Records a committed VM write's revision (from its response's header).
    fn wrote_vms(&self, header: Option<&etcd_client::ResponseHeader>) {
        if let Some(revision) = header.and_then(|h| u64::try_from(h.revision()).ok()) {
            self.vm_written.fetch_max(revision, Ordering::SeqCst);
        }
    }

    /// Every key under `name`, in key order, at one revision (returned), handed to `visit` a
    /// page at a time: (the key without the prefix and `name`, value, mod_revision).
    fn scan(
        &self,
        name: &str,
        visit: impl FnMut(&str, &[u8], u64) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        self.scan_at(name, 0, visit)
    }

    /// [`Etcd::scan`] at store revision `at` (0: the current one), so that several scans
    /// read one state.
    fn scan_at(
        &self,
        name: &str,
        at: u64,
        mut visit: impl FnMut(&str, &[u8], u64) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        let start = self.key(name);
        let end = range_end(&start);
        let mut from = start.clone().into_bytes();
        let mut revision = i64::try_from(at).unwrap_or(i64::MAX);
        let mut page = PAGE;
        loop {
            let (page_from, page_end) = (from.clone(), end.clone());
            let read = self.call(move |mut kv| {
                let (page_from, page_end) = (page_from.clone(), page_end.clone());
                async move {
                    let options = GetOptions::new()
                        .with_range(page_end)
                        .with_limit(page)
                        .with_revision(revision);
                    kv.get(page_from, Some(options)).await
                }
            });
            let mut response = match read {
                Err(Error::Unavailable { reason })
                    if page > 1 && reason.contains("message length too large") =>
                {
                    page /= 2;
                    continue;
                }
                read => read?,
            };
            if revision == 0 {
                revision = response.header().map_or(0, |h| h.revision());
            }
            let more = response.more();
            let kvs = response.take_kvs();
            for kv in &kvs {
                let key = kv
                    .key_str()
                    .map_err(|e| corrupt(&String::from_utf8_lossy(kv.key()), &e))?;
                let tail = &key[start.len()..];
                visit(tail, kv.value(), revision_of(kv))?;
            }
            match kvs.last() {
                Some(last) if more => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(u64::try_from(revision).unwrap_or(0)),
            }
        }
    }

    fn failure(&self) -> std::sync::MutexGuard<'_, Option<StoreFailure>> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The client options: timeouts, TLS files, user and password.
fn connect_options(options: &EtcdOptions) -> Result<ConnectOptions, Error> {
    let mut connect = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(CALL_TIMEOUT)
        .with_keep_alive(PING_EVERY, PING_ANSWER_WITHIN);
    if let Some(auth) = &options.auth {
        connect = connect.with_user(auth.user.clone(), auth.password.clone());
    }
    if let Some(tls) = &options.tls {
        let read = |what: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| Error::Settings {
                reason: format!("cannot read the etcd {what} {}: {e}", path.display()),
            })
        };
        let mut config = TlsOptions::new();
        if let Some(ca) = &tls.ca {
            config = config.ca_certificate(Certificate::from_pem(read("CA certificate", ca)?));
        }
        match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(
                    read("client certificate", cert)?,
                    read("client key", key)?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(Error::Settings {
                    reason:
                        "an etcd client certificate needs both --etcd-cert-file and --etcd-key-file"
                            .into(),
                });
            }
        }
        connect = connect.with_tls(config);
    }
    Ok(connect)
}

/// Runs `call`, and again (at most [`CONNECT_TRIES`] times in all, a short pause between)
/// while it failed because no connection to the member the client picked could be made. The
/// client balances calls over every endpoint and keeps picking a member that is down (about
/// one call in four with one of three down, tests/it/fleet_cluster.rs measured); such a call
/// was never sent (tonic's `Reconnect::call` returns the connect error in place of sending
/// it), so trying again, on whichever member is picked next, is safe for a write too. Any other failure is returned at once: the call may have reached etcd.
async fn until_connected<T, F>(
    kv: KvClient,
    call: impl Fn(KvClient) -> F,
) -> Result<T, etcd_client::Error>
where
    F: Future<Output = Result<T, etcd_client::Error>>,
{
    let mut pause = Duration::from_millis(10);
    let mut tries = 1;
    loop {
        match call(kv.clone()).await {
            Err(error) if tries < CONNECT_TRIES && never_connected(&error) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
                tries += 1;
            }
            outcome => return outcome,
        }
    }
}

/// The call failed because no connection could be made (refused, or its connect timeout).
/// tonic reports it as `Unavailable` with the connector's error as its source, a type that
/// is not public: it is recognised by its name, which the status' text includes.
fn never_connected(error: &etcd_client::Error) -> bool {
    error.to_string().contains("ConnectError(")
}

/// Runs `future` on `runtime` and blocks this thread until it is done (or [`CALL_TIMEOUT`]
/// passed). Works from any thread, async or not, as the embedded store's file IO does.
fn wait<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    future: impl Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
) -> Result<T, String> {
    let (send, receive) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = send.send(tokio::time::timeout(CALL_TIMEOUT, future).await);
    });
    match receive.recv() {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(error))) => Err(format!("etcd: {error}")),
        Ok(Err(_)) => Err(format!(
            "etcd did not answer within {} s",
            CALL_TIMEOUT.as_secs()
        )),
        Err(_) => Err("the etcd client stopped".into()),
    }
}

/// The end of the key range that holds every key starting with `prefix` (which ends in `/`).
fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    let last = end.last_mut().expect("a prefix is not empty");
    *last += 1;
    end
}

/// A key's mod_revision as a store revision (etcd's are positive).
fn revision_of(kv: &etcd_client::KeyValue) -> u64 {
    u64::try_from(kv.mod_revision()).unwrap_or(0)
}

fn unavailable(reason: String) -> Error {
    Error::Unavailable { reason }
}

fn corrupt(key: &str, error: &dyn fmt::Display) -> Error {
    Error::Corrupt {
        key: key.to_string(),
        message: error.to_string(),
    }
}

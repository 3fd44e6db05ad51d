//! Drives scheduled events on the clock: the live [`EventBook`], its persistence, the timer that
//! starts and completes events, guests' approvals, operator commands, "wait until a VM fetched
//! incarnation N", and hooks that tell the operator's system about each transition.
//!
//! Reads (guest GETs) load an immutable book from an `ArcSwap`; writes are serialized by one
//! mutex, persisted to the store, then published, all synchronously (callers use
//! `spawn_blocking`). No lock is held across an `.await`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use crate::clock::Clock;
use crate::events::{
    self, DefinedEvent, Event, EventBook, EventSource, EventType, EventsVersion, Input, Status,
    Transition, TransitionKind,
};
use crate::guest::GuestPlane;
use crate::store::{self, Store};

/// Settings of the events engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaintenanceConfig {
    /// Notice for Terminate events (user-configurable on Azure, 5–15 min).
    pub terminate_notice: Duration,
    /// How long an event stays Started when its DurationInSeconds gives no length.
    pub default_complete_after: Duration,
    /// Delay of a VM's first scheduled-events GET (§6.6; Azure: up to 2 min). Zero: off.
    pub first_call_delay: Duration,
    /// Where transitions are reported: `http://…` (POST) or a shell command (JSON on stdin).
    pub hook: Option<String>,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            terminate_notice: Duration::from_secs(5 * 60),
            default_complete_after: Duration::from_secs(60),
            first_call_delay: Duration::ZERO,
            hook: None,
        }
    }
}

/// Why an events operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Events(#[from] events::Error),
    #[error("invalid event")]
    Invalid(Vec<(String, String)>),
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// What an operator asks for when scheduling.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleRequest {
    #[serde(rename = "type")]
    pub event_type: String,
    pub vms: Vec<String>,
    /// RFC 3339 (`2026-01-02T03:04:05Z`) or RFC 1123.
    pub not_before: Option<String>,
    pub notice_seconds: Option<u64>,
    pub duration_seconds: Option<i64>,
    pub description: Option<String>,
    pub source: Option<String>,
    pub resources: Option<Vec<String>>,
    pub complete_after_seconds: Option<u64>,
    pub event_id: Option<String>,
}

/// The events engine.
#[derive(Debug)]
pub struct Maintenance {
    store: Arc<Store>,
    /// Weak: the plane holds this engine, and VM names are only needed when scheduling.
    plane: Weak<GuestPlane>,
    clock: Arc<dyn Clock>,
    config: MaintenanceConfig,
    book: ArcSwap<EventBook>,
    writes: Mutex<()>,
    /// Highest incarnation each VM has fetched, for `wait_fetched`.
    fetched: Mutex<HashMap<String, u64>>,
    fetched_changed: Notify,
    /// Wakes the timer when the schedule changes.
    book_changed: Notify,
    activated: Mutex<HashSet<String>>,
    hooks: Option<mpsc::Sender<Value>>,
}

impl Maintenance {
    /// Loads persisted events. Call [`Maintenance::start`] to run the timer and hooks.
    pub fn load(
        store: Arc<Store>,
        plane: &Arc<GuestPlane>,
        config: MaintenanceConfig,
    ) -> Result<Maintenance, Error> {
        let stored = store.events()?;
        let clock = Arc::clone(plane.clock());
        Ok(Maintenance {
            store,
            plane: Arc::downgrade(plane),
            clock,
            config,
            book: ArcSwap::from_pointee(EventBook::from_parts(
                stored.events,
                stored.incarnations,
                stored.imported,
            )),
            writes: Mutex::new(()),
            fetched: Mutex::new(HashMap::new()),
            fetched_changed: Notify::new(),
            book_changed: Notify::new(),
            activated: Mutex::new(HashSet::new()),
            hooks: None,
        })
    }

    /// Starts the timer and, if configured, the hook deliverer; both stop with `stop`.
    pub fn start(
        self: &mut Arc<Self>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(target) = self.config.hook.clone() {
            let (sender, receiver) = mpsc::channel(1024);
            Arc::get_mut(self)
                .expect("start is called before the engine is shared")
                .hooks = Some(sender);
            tasks.push(tokio::spawn(deliver_hooks(target, receiver, stop.clone())));
        }
        tasks.push(tokio::spawn(Arc::clone(self).run_timer(stop)));
        tasks
    }

    /// A VM's document at `version`, and its incarnation.
    pub fn document(&self, vm: &str, version: EventsVersion) -> (u64, Vec<u8>) {
        let book = self.book.load();
        let incarnation = book.incarnation(vm);
        (
            incarnation,
            events::render(incarnation, &book.for_vm(vm), version),
        )
    }

    /// How long this VM's first GET should wait (§6.6); zero after the first.
    pub fn activation_delay(&self, vm: &str) -> Duration {
        if self.config.first_call_delay.is_zero() {
            return Duration::ZERO;
        }
        let mut activated = self.activated.lock().unwrap_or_else(|p| p.into_inner());
        if activated.insert(vm.to_string()) {
            self.config.first_call_delay
        } else {
            Duration::ZERO
        }
    }

    /// Notes that `vm` received a document with `incarnation`.
    pub fn record_fetch(&self, vm: &str, incarnation: u64) {
        let mut fetched = self.fetched.lock().unwrap_or_else(|p| p.into_inner());
        let seen = fetched.entry(vm.to_string()).or_insert(0);
        if incarnation > *seen {
            *seen = incarnation;
            drop(fetched);
            self.fetched_changed.notify_waiters();
        }
    }

    /// Waits until `vm` has fetched a document with an incarnation of at least `incarnation`.
    /// `Err` carries the highest fetched so far when `timeout` passes first.
    pub async fn wait_fetched(
        &self,
        vm: &str,
        incarnation: u64,
        timeout: Duration,
    ) -> Result<u64, u64> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.fetched_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let seen = self
                .fetched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(vm)
                .copied()
                .unwrap_or(0);
            if seen >= incarnation {
                return Ok(seen);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(seen);
            }
        }
    }

    /// Every live event.
    pub fn events(&self) -> Vec<Event> {
        self.book.load().events().cloned().collect()
    }

    pub fn event(&self, id: &str) -> Option<Event> {
        self.book.load().event(id).cloned()
    }

    /// The current incarnation of a VM's document.
    pub fn incarnation(&self, vm: &str) -> u64 {
        self.book.load().incarnation(vm)
    }

    /// A guest approves events (§6.4): every id must be an event the VM can see; approving one
    /// starts it for all its VMs. All or nothing.
    pub fn approve(&self, vm: &str, ids: &[String]) -> Result<(), Error> {
        let now = self.clock.now();
        self.change(|book| {
            let mut transitions = Vec::new();
            for id in ids {
                let visible = book.event(id).is_some_and(|e| e.targets.iter().any(|t| t == vm));
                if !visible {
                    return Err(events::Error::UnknownEvent(id.clone()).into());
                }
                transitions.extend(book.apply(id, Input::Approve, now)?);
            }
            Ok(transitions)
        })
        .map(|transitions| {
            for t in &transitions {
                tracing::info!(vm, event = %t.event.id, kind = ?t.kind, "guest approved a scheduled event");
            }
        })
    }

    /// Operator commands: start now, complete now, cancel.
    pub fn command(&self, id: &str, input: Input) -> Result<Option<Event>, Error> {
        let now = self.clock.now();
        let transitions =
            self.change(|book| Ok(book.apply(id, input, now)?.into_iter().collect()))?;
        Ok(transitions.into_iter().next().map(|t| t.event))
    }

    /// Schedules a new event from an operator's request.
    pub fn schedule(&self, request: ScheduleRequest) -> Result<Event, Error> {
        let now = self.clock.now();
        let event = self.event_from_request(request, now)?;
        let transitions = self.change(|book| Ok(vec![book.schedule(event.clone(), now)?]))?;
        Ok(transitions.into_iter().next().map_or(event, |t| t.event))
    }

    /// Imports the `scheduledEvents` of a VM definition: each entry is seeded once (recorded
    /// per VM and EventId in the store); after that the server owns its lifecycle, so a
    /// restart or a file edit never brings back a completed or canceled event.
    pub fn import(&self, vm_id: &str, vm_name: &str, defined: &[Value]) -> Result<usize, Error> {
        let now = self.clock.now();
        let mut imported = 0;
        for (index, value) in defined.iter().enumerate() {
            let Ok(event) = events::parse_defined_event(value) else {
                continue;
            };
            let event = self.event_from_definition(vm_id, vm_name, index, value, event, now);
            if self.book.load().was_imported(vm_id, &event.id) {
                continue;
            }
            self.change(|book| {
                book.mark_imported(vm_id, &event.id);
                // Several VMs listing one EventId share one event (§6.7).
                if book.event(&event.id).is_some() {
                    book.add_target(&event.id, vm_id, vm_name)?;
                    return Ok(Vec::new());
                }
                Ok(vec![book.schedule(event.clone(), now)?])
            })?;
            imported += 1;
        }
        Ok(imported)
    }

    /// Takes a deleted VM out of its events; events it alone was in are dropped.
    pub fn forget_vm(&self, vm: &str) -> Result<(), Error> {
        self.change(|book| {
            book.forget_vm(vm);
            Ok(Vec::new())
        })?;
        Ok(())
    }

    /// Applies every time-driven transition due now. Returns how many happened.
    pub fn advance(&self) -> Result<usize, Error> {
        let now = self.clock.now();
        let due = self.book.load().next_deadline().is_some_and(|d| d <= now);
        if !due {
            return Ok(0);
        }
        Ok(self.change(|book| Ok(book.advance(now)))?.len())
    }

    /// Runs `edit` on a copy of the book; persists and publishes the result if it succeeds.
    fn change(
        &self,
        edit: impl FnOnce(&mut EventBook) -> Result<Vec<Transition>, Error>,
    ) -> Result<Vec<Transition>, Error> {
        let _serialized = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.book.load_full();
        let mut new = (*old).clone();
        let transitions = edit(&mut new)?;
        if new != *old {
            self.persist(&old, &new)?;
            self.book.store(Arc::new(new));
            self.book_changed.notify_one();
        }
        for transition in &transitions {
            self.report(transition);
        }
        Ok(transitions)
    }

    fn persist(&self, old: &EventBook, new: &EventBook) -> Result<(), Error> {
        let written: Vec<&Event> = new
            .events()
            .filter(|e| old.event(&e.id) != Some(*e))
            .collect();
        let removed: Vec<&str> = old
            .events()
            .filter(|e| new.event(&e.id).is_none())
            .map(|e| e.id.as_str())
            .collect();
        let incarnations: Vec<(&str, u64)> = new
            .incarnations()
            .iter()
            .filter(|(vm, n)| old.incarnations().get(*vm) != Some(n))
            .map(|(vm, n)| (vm.as_str(), *n))
            .collect();
        let imported: Vec<&str> = new
            .imported()
            .difference(old.imported())
            .map(String::as_str)
            .collect();
        self.store
            .write_events(&written, &removed, &incarnations, &imported)?;
        Ok(())
    }

    /// Sends a transition to the hook, never blocking: a full queue drops it with a warning.
    fn report(&self, transition: &Transition) {
        let Some(hooks) = &self.hooks else { return };
        let message = hook_message(transition);
        if hooks.try_send(message).is_err() {
            tracing::warn!(event = %transition.event.id, "event hook queue is full; transition not reported");
        }
    }

    async fn run_timer(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let wait = self
                .book
                .load()
                .next_deadline()
                .map(|d| d.duration_since(self.clock.now()).unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(3600))
                // Re-check at least every second: the clock may be moved by an operator.
                .min(Duration::from_secs(1));
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => return,
                () = tokio::time::sleep(wait) => {}
                () = self.book_changed.notified() => continue,
            }
            let engine = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || engine.advance()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::error!(%error, "applying due scheduled-event transitions failed")
                }
                Err(error) => tracing::error!(%error, "the scheduled-events timer task failed"),
            }
        }
    }

    fn event_from_request(
        &self,
        request: ScheduleRequest,
        now: SystemTime,
    ) -> Result<Event, Error> {
        let mut problems = Vec::new();
        let event_type = EventType::parse(&request.event_type);
        if event_type.is_none() {
            problems.push((
                "type".into(),
                format!(
                    "{:?} is not Freeze, Reboot, Redeploy, Preempt or Terminate",
                    request.event_type
                ),
            ));
        }
        let source = match request.source.as_deref() {
            None => EventSource::Platform,
            Some(s) => EventSource::parse(s).unwrap_or_else(|| {
                problems.push(("source".into(), format!("{s:?} is not Platform or User")));
                EventSource::Platform
            }),
        };
        if request.vms.is_empty() {
            problems.push(("vms".into(), "name at least one VM id".into()));
        }
        let snapshot = self.plane.upgrade().map(|plane| plane.snapshot());
        let mut names = Vec::new();
        for (i, vm) in request.vms.iter().enumerate() {
            match snapshot.as_ref().and_then(|s| s.vm(vm)) {
                Some(served) => names.push(served.definition().label().to_string()),
                None => problems.push((format!("vms[{i}]"), format!("no VM with id {vm:?}"))),
            }
        }
        let not_before = match (&request.not_before, request.notice_seconds) {
            (Some(_), Some(_)) => {
                problems.push((
                    "noticeSeconds".into(),
                    "give notBefore or noticeSeconds, not both".into(),
                ));
                now
            }
            (Some(text), None) => parse_time(text).unwrap_or_else(|| {
                problems.push((
                    "notBefore".into(),
                    format!("{text:?} is neither RFC 3339 nor RFC 1123"),
                ));
                now
            }),
            (None, Some(seconds)) => whole_second_after(now + Duration::from_secs(seconds)),
            (None, None) => whole_second_after(
                now + event_type.map_or(Duration::ZERO, |t| {
                    t.default_notice(self.config.terminate_notice)
                }),
            ),
        };
        let duration_seconds = request.duration_seconds.unwrap_or(-1);
        if duration_seconds < -1 {
            problems.push((
                "durationSeconds".into(),
                "must be -1 (unknown) or more".into(),
            ));
        }
        let id = match &request.event_id {
            Some(id) if uuid::Uuid::parse_str(id).is_ok() => id.to_ascii_uppercase(),
            Some(id) => {
                problems.push(("eventId".into(), format!("{id:?} is not a GUID")));
                String::new()
            }
            None => events::new_event_id(),
        };
        let (Some(event_type), true) = (event_type, problems.is_empty()) else {
            return Err(Error::Invalid(problems));
        };
        Ok(Event {
            id,
            event_type,
            targets: request.vms,
            resources: request.resources.unwrap_or(names),
            status: Status::Scheduled,
            not_before,
            description: request
                .description
                .unwrap_or_else(|| events::default_description(event_type, source).into()),
            source,
            duration_seconds,
            complete_after: request
                .complete_after_seconds
                .map(Duration::from_secs)
                .unwrap_or_else(|| self.complete_after(duration_seconds)),
            started_at: None,
        })
    }

    fn event_from_definition(
        &self,
        vm_id: &str,
        vm_name: &str,
        index: usize,
        source: &Value,
        defined: DefinedEvent,
        now: SystemTime,
    ) -> Event {
        Event {
            // An entry without an EventId gets one derived from where it is and what it says,
            // so the same entry maps to the same event on every start.
            id: defined
                .id
                .unwrap_or_else(|| derived_event_id(vm_id, index, source)),
            event_type: defined.event_type,
            targets: vec![vm_id.to_string()],
            resources: defined
                .resources
                .unwrap_or_else(|| vec![vm_name.to_string()]),
            status: defined.status,
            not_before: defined.not_before.unwrap_or(now),
            description: defined.description,
            source: defined.source,
            duration_seconds: defined.duration_seconds,
            complete_after: self.complete_after(defined.duration_seconds),
            started_at: (defined.status == Status::Started).then_some(now),
        }
    }

    fn complete_after(&self, duration_seconds: i64) -> Duration {
        if duration_seconds > 0 {
            Duration::from_secs(duration_seconds as u64)
        } else {
            self.config.default_complete_after
        }
    }
}

/// The JSON a hook receives for one transition.
pub fn hook_message(transition: &Transition) -> Value {
    let event = &transition.event;
    json!({
        "transition": transition.kind,
        "at": rfc3339(transition.at),
        "event": {
            "id": event.id,
            "type": event.event_type.as_str(),
            "status": match event.status { Status::Scheduled => "Scheduled", Status::Started => "Started" },
            "vms": event.targets,
            "resources": event.resources,
            "notBefore": rfc3339(event.not_before),
            "description": event.description,
            "source": event.source.as_str(),
            "durationInSeconds": event.duration_seconds,
        },
    })
}

/// Control-API view of an event.
pub fn event_json(event: &Event) -> Value {
    json!({
        "id": event.id,
        "type": event.event_type.as_str(),
        "status": match event.status { Status::Scheduled => "Scheduled", Status::Started => "Started" },
        "vms": event.targets,
        "resources": event.resources,
        "notBefore": rfc3339(event.not_before),
        "startedAt": event.started_at.map(rfc3339),
        "completeAfterSeconds": event.complete_after.as_secs(),
        "description": event.description,
        "source": event.source.as_str(),
        "durationInSeconds": event.duration_seconds,
    })
}

/// Guests see NotBefore in whole seconds (RFC 1123); rounding up keeps the event from starting
/// before the time they were shown, and the notice from falling below the minimum.
fn whole_second_after(at: SystemTime) -> SystemTime {
    let since_epoch = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let whole = since_epoch.as_secs() + u64::from(since_epoch.subsec_nanos() > 0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(whole)
}

/// An upper-case GUID from SHA-256 of the VM id, the entry's position and its JSON.
fn derived_event_id(vm_id: &str, index: usize, entry: &Value) -> String {
    let material = format!("azimds-event\0{vm_id}\0{index}\0{entry}");
    let digest = openssl::sha::sha256(material.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
        .to_ascii_uppercase()
}

fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn parse_time(text: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(SystemTime::from)
        .or_else(|| events::parse_rfc1123(text))
}

/// Delivers hook messages one at a time, retrying a failure 3 times with backoff; failures are
/// logged and never reach the guest plane.
/// Stops at shutdown, even mid-retry: the engine keeps the sending side, so the queue itself
/// never closes, and a slow hook must not hold the process up.
async fn deliver_hooks(
    target: String,
    mut receiver: mpsc::Receiver<Value>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let message = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            message = receiver.recv() => match message {
                Some(message) => message,
                None => return,
            },
        };
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            () = deliver_with_retries(&target, &message) => {}
        }
    }
}

async fn deliver_with_retries(target: &str, message: &Value) {
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=4 {
        match tokio::time::timeout(Duration::from_secs(10), deliver(target, message)).await {
            Ok(Ok(())) => return,
            Ok(Err(error)) => tracing::warn!(attempt, %error, "event hook failed"),
            Err(_) => tracing::warn!(attempt, "event hook timed out"),
        }
        if attempt == 4 {
            tracing::error!(transition = %message["transition"], event = %message["event"]["id"], "event hook gave up after 4 attempts");
        } else {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
}

async fn deliver(target: &str, message: &Value) -> Result<(), String> {
    let body = serde_json::to_vec(message).expect("a JSON value serializes");
    if target.starts_with("http://") {
        post_json(target, body).await
    } else {
        run_command(target, body).await
    }
}

async fn post_json(url: &str, body: Vec<u8>) -> Result<(), String> {
    use http_body_util::{BodyExt, Full};
    let uri: http::Uri = url.parse().map_err(|e| format!("bad hook URL: {e}"))?;
    let authority = uri.authority().ok_or("hook URL has no host")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((authority.host(), port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let _ = response.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("hook answered {status}"))
    }
}

async fn run_command(command: &str, body: Vec<u8>) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", command])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&body).await.map_err(|e| e.to_string())?;
    }
    let status = child.wait().await.map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("hook command exited with {status}"))
    }
}

impl TransitionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionKind::Scheduled => "scheduled",
            TransitionKind::Approved => "approved",
            TransitionKind::Started => "started",
            TransitionKind::Completed => "completed",
            TransitionKind::Canceled => "canceled",
        }
    }
}

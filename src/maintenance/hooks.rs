//! Hooks: every scheduled-event transition reported to the operator's system, as JSON POSTed
//! to an `http://` URL or piped to a shell command, so a hypervisor can actually reboot,
//! freeze or evict the VM. The provisioning engine reports WireServer health reports through
//! the same queue ([`HookSender::send`]).
//!
//! The engine only enqueues (`HookSender::report` never blocks); [`HookDelivery::run`]
//! delivers one message at a time with retries, off the request path.

use std::future::Future;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::events::{Status, Transition, TransitionKind};

/// Transitions waiting for delivery at most; past this a transition is dropped and logged.
const QUEUE: usize = 1024;
const ATTEMPTS: u32 = 4;
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The sending end of the queue (the events engine's, and a clone for provisioning).
#[derive(Debug, Clone)]
pub struct HookSender(mpsc::Sender<Value>);

/// The delivering end: run it as a task until shutdown.
#[derive(Debug)]
pub struct HookDelivery {
    target: String,
    receiver: mpsc::Receiver<Value>,
}

/// A queue to `target` (`http://…` or a shell command).
pub(super) fn queue(target: String) -> (HookSender, HookDelivery) {
    let (sender, receiver) = mpsc::channel(QUEUE);
    (HookSender(sender), HookDelivery { target, receiver })
}

impl HookSender {
    /// Enqueues a transition, never waiting: a full queue drops it with a warning.
    pub(super) fn report(&self, transition: &Transition) {
        if self.0.try_send(hook_message(transition)).is_err() {
            tracing::warn!(event = %transition.event.id, "event hook queue is full; transition not reported");
        }
    }

    /// Enqueues any message, never waiting: a full queue drops it with a warning.
    pub fn send(&self, message: Value) {
        let kind = message_kind(&message);
        if self.0.try_send(message).is_err() {
            tracing::warn!(transition = %kind, "hook queue is full; message not reported");
        }
    }
}

impl HookDelivery {
    /// Delivers messages one at a time, each retried up to 4 times with backoff; failures are
    /// logged and never reach the guest plane. Returns at `shutdown`, even mid-retry: the engine
    /// keeps the sending side, so the queue never closes, and a slow hook must not hold the
    /// process up.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let message = tokio::select! {
                () = &mut shutdown => return,
                message = self.receiver.recv() => match message {
                    Some(message) => message,
                    None => return,
                },
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = deliver_with_retries(&self.target, &message) => {}
            }
        }
    }
}

fn message_kind(message: &Value) -> String {
    message["transition"].as_str().unwrap_or("").to_string()
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
            "status": status_name(event.status),
            "vms": event.targets,
            "resources": event.resources,
            "notBefore": rfc3339(event.not_before),
            "description": event.description,
            "source": event.source.as_str(),
            "durationInSeconds": event.duration_seconds,
        },
    })
}

/// `Scheduled` or `Started`, as guests and operators see it.
pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Scheduled => "Scheduled",
        Status::Started => "Started",
    }
}

/// RFC 3339 in UTC, as the control API and hooks print times.
pub fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

async fn deliver_with_retries(target: &str, message: &Value) {
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        match tokio::time::timeout(ATTEMPT_TIMEOUT, deliver(target, message)).await {
            Ok(Ok(())) => return,
            Ok(Err(error)) => tracing::warn!(attempt, %error, "event hook failed"),
            Err(_) => tracing::warn!(attempt, "event hook timed out"),
        }
        if attempt == ATTEMPTS {
            tracing::error!(transition = %message["transition"], event = %message["event"]["id"], "event hook gave up after {ATTEMPTS} attempts");
        } else {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
}

async fn deliver(target: &str, message: &Value) -> Result<(), String> {
    let body = serde_json::to_vec(message).expect("a JSON value serializes");
    if target.starts_with("http://") {
        let status = crate::outbound::post_json(target, body)
            .await
            .map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("hook answered {status}"))
        }
    } else {
        run_command(target, body).await
    }
}

async fn run_command(command: &str, body: Vec<u8>) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", command])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
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

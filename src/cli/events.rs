//! `azimds events …`: schedule, list, start, complete and cancel scheduled events, and wait
//! until a VM has seen an incarnation, through `/v1/events` and `/v1/vms/{id}/events/wait`.

use std::io::Write;
use std::path::PathBuf;

use http::Method;
use serde_json::Value;

use crate::cli::format::{Column, Output, joined, text, write_json_table};
use crate::cli::{ConnectArgs, Failure, client, encode, fetch_json};
use crate::client::ControlClient;

/// `azimds events …`
#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Schedule an event for one or more VMs.
    ///
    /// Example: azimds events schedule Preempt --vm web-1 --notice 30s
    Schedule(ScheduleArgs),
    /// List live events.
    List,
    /// Start an event now (as if NotBefore had come).
    Start { id: String },
    /// Complete a started event now (it disappears from the documents).
    Complete { id: String },
    /// Cancel an event (it disappears, never having started, if it had not).
    Cancel { id: String },
    /// Wait until a VM has fetched a scheduled-events document with at least this incarnation.
    Wait {
        vm: String,
        #[arg(long)]
        incarnation: u64,
        /// Seconds to wait at most (exit 7 on timeout).
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

/// `azimds events schedule`: the event to ask the server for.
#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// Freeze, Reboot, Redeploy, Preempt or Terminate.
    event_type: String,
    /// Target VM id (repeat for an event that several VMs share).
    #[arg(long = "vm", value_name = "ID", required = true)]
    vms: Vec<String>,
    /// Notice before NotBefore, e.g. 30s or 15m [default: Azure's minimum for the type].
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration, conflicts_with = "not_before")]
    notice: Option<u64>,
    /// Absolute NotBefore (RFC 3339, e.g. 2026-01-02T03:04:05Z).
    #[arg(long, value_name = "TIME")]
    not_before: Option<String>,
    /// DurationInSeconds (-1: unknown).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    duration: Option<i64>,
    #[arg(long)]
    description: Option<String>,
    /// Platform or User.
    #[arg(long)]
    source: Option<String>,
    /// How long the event stays Started before it is removed.
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
    complete_after: Option<u64>,
}

impl ScheduleArgs {
    /// The body of `POST /v1/events`: only the options given, so the server's defaults apply.
    fn request(self) -> Value {
        let mut request = serde_json::json!({ "type": self.event_type, "vms": self.vms });
        let fields = [
            ("noticeSeconds", self.notice.map(Value::from)),
            ("notBefore", self.not_before.map(Value::from)),
            ("durationSeconds", self.duration.map(Value::from)),
            ("description", self.description.map(Value::from)),
            ("source", self.source.map(Value::from)),
            ("completeAfterSeconds", self.complete_after.map(Value::from)),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                request[key] = value;
            }
        }
        request
    }
}

/// Runs `azimds events …`.
pub async fn events(
    command: EventsCommand,
    args: &ConnectArgs,
    default_data: impl FnOnce() -> PathBuf,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let client = client(args, default_data)?;
    let mut output = Output::new(out, args.json);
    match command {
        EventsCommand::Schedule(schedule) => {
            let request = schedule.request();
            let event = fetch_json(&client, Method::POST, "/v1/events", Some(&request)).await?;
            output.show(&event, |out, event| {
                writeln!(
                    out,
                    "scheduled {} {} for {} (NotBefore {})",
                    text(&event["type"]),
                    text(&event["id"]),
                    joined(&event["vms"], ","),
                    text(&event["notBefore"])
                )
            })
        }
        EventsCommand::List => {
            let body = fetch_json(&client, Method::GET, "/v1/events", None).await?;
            output.show(&body, write_event_table)
        }
        EventsCommand::Start { id } => event_action(&client, &mut output, &id, "start").await,
        EventsCommand::Complete { id } => event_action(&client, &mut output, &id, "complete").await,
        EventsCommand::Cancel { id } => event_action(&client, &mut output, &id, "cancel").await,
        EventsCommand::Wait {
            vm,
            incarnation,
            timeout,
        } => {
            let path = format!(
                "/v1/vms/{}/events/wait?incarnation={incarnation}&timeout={timeout}",
                encode(&vm)
            );
            let body = fetch_json(&client, Method::GET, &path, None).await?;
            output.show(&body, |out, body| {
                writeln!(
                    out,
                    "VM {vm} fetched incarnation {}",
                    text(&body["fetched"])
                )
            })
        }
    }
}

fn write_event_table(out: &mut dyn Write, body: &Value) -> std::io::Result<()> {
    let columns = [
        Column::Text("ID", "id"),
        Column::Text("TYPE", "type"),
        Column::Text("STATUS", "status"),
        Column::Text("NOT BEFORE", "notBefore"),
        Column::List("VMS", "vms"),
    ];
    write_json_table(out, &body["events"], columns)
}

/// `start`, `complete` or `cancel`: the server says whether the event changed.
async fn event_action(
    client: &ControlClient,
    output: &mut Output<'_>,
    id: &str,
    action: &str,
) -> Result<(), Failure> {
    let path = format!("/v1/events/{}/{action}", encode(id));
    let body = fetch_json(client, Method::POST, &path, None).await?;
    output.show(&body, |out, body| {
        if body["changed"] != Value::Bool(true) {
            return writeln!(out, "{action}: event {id} was already in that state");
        }
        let now = match action {
            "start" => "Started",
            _ => "gone from the documents",
        };
        writeln!(out, "{action}: event {id} is now {now}")
    })
}

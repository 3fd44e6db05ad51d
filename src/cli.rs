//! The client subcommands (`azimds vm …`, `azimds status`): they drive a running server through
//! its control API and print a table (default) or the server's JSON (`--json`).
//!
//! Exit codes scripts can rely on: 0 success; 1 other failure (server error, bad local file);
//! 2 usage error; 3 not found; 4 conflict or precondition failed (409/412); 5 rejected as
//! invalid (400/413/422); 6 cannot reach or authenticate to the server; 7 `events wait` timed out.

use std::io::Write;
use std::path::{Path, PathBuf};

use http::{Method, StatusCode};
use serde_json::Value;

use crate::client::{ControlClient, Reply};
use crate::config::{ControlAddress, DEFAULT_CONTROL, parse_control};
use crate::control::token::ControlToken;
use crate::definition::Syntax;

/// How to reach the control API.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// Control API address (host:port or unix:/path). [default: 127.0.0.1:16926]
    #[arg(long, env = "AZIMDS_CONTROL", value_name = "ADDR", value_parser = parse_control, global = true)]
    pub control: Option<ControlAddress>,
    /// Bearer token; by default read from <data>/control-token (not needed on a unix socket).
    #[arg(
        long,
        env = "AZIMDS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// The server's data directory, to find its token. [default: as for `serve`]
    #[arg(long, env = "AZIMDS_DATA", value_name = "DIR", global = true)]
    pub data: Option<PathBuf>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `azimds vm …`
#[derive(Debug, clap::Subcommand)]
pub enum VmCommand {
    /// List VMs: id, name, origin, ETag, caller addresses.
    List,
    /// Print one VM's definition (JSON).
    Get { id: String },
    /// Create or replace a VM from a JSON or YAML file holding one VM entry (`-`: stdin).
    Put {
        id: String,
        file: PathBuf,
        /// Only replace this exact revision (the ETag printed by get/put/list).
        #[arg(long, value_name = "ETAG", conflicts_with = "create_only")]
        if_match: Option<String>,
        /// Fail if the VM already exists.
        #[arg(long)]
        create_only: bool,
    },
    /// Merge-patch a VM (RFC 7396) with a JSON or YAML file (`-`: stdin).
    Patch {
        id: String,
        file: PathBuf,
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// Delete a VM.
    Delete {
        id: String,
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
}

/// `azimds events …`
#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Schedule an event for one or more VMs.
    ///
    /// Example: azimds events schedule Preempt --vm web-1 --notice 30s
    Schedule {
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
    },
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

/// `azimds keys …`
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Make a new token signing key current; older keys stay published until their tokens expire.
    Rotate,
}

/// A failed client command: the message to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

fn client(
    args: &ConnectArgs,
    default_data: impl FnOnce() -> PathBuf,
) -> Result<ControlClient, Failure> {
    let address = args
        .control
        .clone()
        .unwrap_or_else(|| parse_control(DEFAULT_CONTROL).expect("the default parses"));
    let token = match (&address, &args.token) {
        (_, Some(token)) => Some(ControlToken::from_string(token.clone())),
        (ControlAddress::Unix(_), None) => None,
        (ControlAddress::Tcp(_), None) => {
            let data = args.data.clone().unwrap_or_else(default_data);
            let token = ControlToken::read(&data).map_err(|e| {
                Failure::new(
                    6,
                    format!(
                        "no control token: cannot read {} ({e}); pass --token or --data",
                        crate::control::token::path(&data).display()
                    ),
                )
            })?;
            Some(token)
        }
    };
    Ok(ControlClient::new(address, token))
}

async fn send(
    client: &ControlClient,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    headers: &[(&str, String)],
) -> Result<Reply, Failure> {
    let reply = client
        .send(method, path, body, headers)
        .await
        .map_err(|e| Failure::new(6, e.to_string()))?;
    if reply.status.is_success() {
        return Ok(reply);
    }
    let code = match reply.status {
        StatusCode::NOT_FOUND => 3,
        StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED => 4,
        StatusCode::BAD_REQUEST
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::UNPROCESSABLE_ENTITY => 5,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => 6,
        StatusCode::REQUEST_TIMEOUT => 7,
        _ => 1,
    };
    Err(Failure::new(code, describe_error(&reply)))
}

fn describe_error(reply: &Reply) -> String {
    let Ok(body) = serde_json::from_slice::<Value>(&reply.body) else {
        return format!("server answered {}", reply.status);
    };
    let error = &body["error"];
    let mut message = format!(
        "{} ({})",
        error["message"].as_str().unwrap_or("request failed"),
        reply.status
    );
    for problem in error["problems"].as_array().into_iter().flatten() {
        message.push_str(&format!(
            "\n  {}: {}",
            problem["path"].as_str().unwrap_or(""),
            problem["message"].as_str().unwrap_or("")
        ));
    }
    if let Some(etag) = &reply.etag {
        message.push_str(&format!("\n  current ETag: {etag}"));
    }
    message
}

/// Reads one VM entry or patch from a JSON or YAML file, `-` for stdin.
fn read_document(path: &Path) -> Result<Value, Failure> {
    let (text, name) = if path == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| Failure::new(1, format!("cannot read stdin: {e}")))?;
        (text, "stdin".to_string())
    } else {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::new(1, format!("cannot read {}: {e}", path.display())))?;
        (text, path.display().to_string())
    };
    let parsed = match Syntax::from_file_name(&name) {
        Some(Syntax::Json) => serde_json::from_str(&text).map_err(|e| e.to_string()),
        Some(Syntax::Yaml) => serde_yaml_ng::from_str(&text).map_err(|e| e.to_string()),
        None => serde_json::from_str(&text)
            .or_else(|_| serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())),
    };
    parsed.map_err(|e| Failure::new(1, format!("{name}: not valid JSON or YAML: {e}")))
}

/// Runs `azimds vm …`, writing results to `out`.
pub async fn vm(
    command: VmCommand,
    args: &ConnectArgs,
    default_data: impl FnOnce() -> PathBuf,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let client = client(args, default_data)?;
    let io = |e: std::io::Error| Failure::new(1, e.to_string());
    match command {
        VmCommand::List => {
            let reply = send(&client, Method::GET, "/v1/vms", None, &[]).await?;
            let body: Value =
                serde_json::from_slice(&reply.body).map_err(|e| Failure::new(1, e.to_string()))?;
            if args.json {
                return writeln!(out, "{}", pretty(&body)).map_err(io);
            }
            let rows: Vec<[String; 5]> = body["vms"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|vm| {
                    let callers: Vec<&str> = vm["callers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    [
                        text(&vm["id"]),
                        text(&vm["name"]),
                        text(&vm["origin"]),
                        text(&vm["etag"]),
                        callers.join(","),
                    ]
                })
                .collect();
            write_table(out, ["ID", "NAME", "ORIGIN", "ETAG", "CALLERS"], &rows).map_err(io)
        }
        VmCommand::Get { id } => {
            let reply = send(&client, Method::GET, &vm_path(&id), None, &[]).await?;
            let body: Value =
                serde_json::from_slice(&reply.body).map_err(|e| Failure::new(1, e.to_string()))?;
            writeln!(out, "{}", pretty(&body)).map_err(io)?;
            if !args.json
                && let Some(etag) = reply.etag
            {
                eprintln!("ETag: {etag}");
            }
            Ok(())
        }
        VmCommand::Put {
            id,
            file,
            if_match,
            create_only,
        } => {
            let entry = read_document(&file)?;
            let mut headers = Vec::new();
            if let Some(etag) = if_match {
                headers.push(("if-match", quote_etag(&etag)));
            }
            if create_only {
                headers.push(("if-none-match", "*".to_string()));
            }
            let body = serde_json::to_vec(&entry).expect("a JSON value serializes");
            let reply = send(&client, Method::PUT, &vm_path(&id), Some(body), &headers).await?;
            let verb = if reply.status == StatusCode::CREATED {
                "created"
            } else {
                "replaced"
            };
            report(out, args.json, &reply, &format!("{verb} VM {id}")).map_err(io)
        }
        VmCommand::Patch { id, file, if_match } => {
            let patch = read_document(&file)?;
            let headers: Vec<(&str, String)> = if_match
                .iter()
                .map(|e| ("if-match", quote_etag(e)))
                .collect();
            let body = serde_json::to_vec(&patch).expect("a JSON value serializes");
            let reply = send(&client, Method::PATCH, &vm_path(&id), Some(body), &headers).await?;
            report(out, args.json, &reply, &format!("patched VM {id}")).map_err(io)
        }
        VmCommand::Delete { id, if_match } => {
            let headers: Vec<(&str, String)> = if_match
                .iter()
                .map(|e| ("if-match", quote_etag(e)))
                .collect();
            send(&client, Method::DELETE, &vm_path(&id), None, &headers).await?;
            if args.json {
                writeln!(out, "{}", serde_json::json!({"deleted": id})).map_err(io)
            } else {
                writeln!(out, "deleted VM {id}").map_err(io)
            }
        }
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
    let io = |e: std::io::Error| Failure::new(1, e.to_string());
    let parse = |reply: &Reply| {
        serde_json::from_slice::<Value>(&reply.body).map_err(|e| Failure::new(1, e.to_string()))
    };
    match command {
        EventsCommand::Schedule {
            event_type,
            vms,
            notice,
            not_before,
            duration,
            description,
            source,
            complete_after,
        } => {
            let mut request = serde_json::json!({ "type": event_type, "vms": vms });
            let fields = [
                ("noticeSeconds", notice.map(Value::from)),
                ("notBefore", not_before.map(Value::from)),
                ("durationSeconds", duration.map(Value::from)),
                ("description", description.map(Value::from)),
                ("source", source.map(Value::from)),
                ("completeAfterSeconds", complete_after.map(Value::from)),
            ];
            for (key, value) in fields {
                if let Some(value) = value {
                    request[key] = value;
                }
            }
            let body = serde_json::to_vec(&request).expect("a JSON value serializes");
            let reply = send(&client, Method::POST, "/v1/events", Some(body), &[]).await?;
            let event = parse(&reply)?;
            if args.json {
                return writeln!(out, "{}", pretty(&event)).map_err(io);
            }
            writeln!(
                out,
                "scheduled {} {} for {} (NotBefore {})",
                text(&event["type"]),
                text(&event["id"]),
                vms_text(&event["vms"]),
                text(&event["notBefore"])
            )
            .map_err(io)
        }
        EventsCommand::List => {
            let reply = send(&client, Method::GET, "/v1/events", None, &[]).await?;
            let body = parse(&reply)?;
            if args.json {
                return writeln!(out, "{}", pretty(&body)).map_err(io);
            }
            let rows: Vec<[String; 5]> = body["events"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    [
                        text(&e["id"]),
                        text(&e["type"]),
                        text(&e["status"]),
                        text(&e["notBefore"]),
                        vms_text(&e["vms"]),
                    ]
                })
                .collect();
            write_table(out, ["ID", "TYPE", "STATUS", "NOT BEFORE", "VMS"], &rows).map_err(io)
        }
        EventsCommand::Start { id } => event_action(&client, args.json, &id, "start", out).await,
        EventsCommand::Complete { id } => {
            event_action(&client, args.json, &id, "complete", out).await
        }
        EventsCommand::Cancel { id } => event_action(&client, args.json, &id, "cancel", out).await,
        EventsCommand::Wait {
            vm,
            incarnation,
            timeout,
        } => {
            let path = format!(
                "/v1/vms/{}/events/wait?incarnation={incarnation}&timeout={timeout}",
                encode(&vm)
            );
            let reply = send(&client, Method::GET, &path, None, &[]).await?;
            let body = parse(&reply)?;
            if args.json {
                return writeln!(out, "{}", pretty(&body)).map_err(io);
            }
            writeln!(
                out,
                "VM {vm} fetched incarnation {}",
                text(&body["fetched"])
            )
            .map_err(io)
        }
    }
}

async fn event_action(
    client: &ControlClient,
    json: bool,
    id: &str,
    action: &str,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let path = format!("/v1/events/{}/{action}", encode(id));
    let reply = send(client, Method::POST, &path, None, &[]).await?;
    let body: Value =
        serde_json::from_slice(&reply.body).map_err(|e| Failure::new(1, e.to_string()))?;
    let written = if json {
        writeln!(out, "{}", pretty(&body))
    } else if body["changed"] == Value::Bool(true) {
        writeln!(
            out,
            "{action}: event {id} is now {}",
            match action {
                "start" => "Started",
                _ => "gone from the documents",
            }
        )
    } else {
        writeln!(out, "{action}: event {id} was already in that state")
    };
    written.map_err(|e| Failure::new(1, e.to_string()))
}

fn vms_text(vms: &Value) -> String {
    vms.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Runs `azimds keys …`.
pub async fn keys(
    command: KeysCommand,
    args: &ConnectArgs,
    default_data: impl FnOnce() -> PathBuf,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let client = client(args, default_data)?;
    let KeysCommand::Rotate = command;
    let reply = send(&client, Method::POST, "/v1/identity/keys/rotate", None, &[]).await?;
    let body: Value =
        serde_json::from_slice(&reply.body).map_err(|e| Failure::new(1, e.to_string()))?;
    let written = if args.json {
        writeln!(out, "{}", pretty(&body))
    } else {
        writeln!(
            out,
            "token signing key rotated; new kid {}",
            text(&body["kid"])
        )
    };
    written.map_err(|e| Failure::new(1, e.to_string()))
}

/// Runs `azimds status`.
pub async fn status(
    args: &ConnectArgs,
    default_data: impl FnOnce() -> PathBuf,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let client = client(args, default_data)?;
    let io = |e: std::io::Error| Failure::new(1, e.to_string());
    let reply = send(&client, Method::GET, "/v1/status", None, &[]).await?;
    let body: Value =
        serde_json::from_slice(&reply.body).map_err(|e| Failure::new(1, e.to_string()))?;
    if args.json {
        return writeln!(out, "{}", pretty(&body)).map_err(io);
    }
    let listeners: Vec<&str> = body["guestListeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let rows = [
        ["version".to_string(), text(&body["version"])],
        ["ready".to_string(), text(&body["ready"])],
        ["vms".to_string(), text(&body["vms"])],
        ["callers".to_string(), text(&body["callers"])],
        ["unknown callers".to_string(), text(&body["unknownCallers"])],
        ["guest listeners".to_string(), listeners.join(", ")],
    ];
    for [name, value] in rows {
        writeln!(out, "{name:<16} {value}").map_err(io)?;
    }
    Ok(())
}

fn report(out: &mut dyn Write, json: bool, reply: &Reply, summary: &str) -> std::io::Result<()> {
    if json {
        let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        return writeln!(out, "{}", pretty(&body));
    }
    match &reply.etag {
        Some(etag) => writeln!(out, "{summary} (ETag {etag})"),
        None => writeln!(out, "{summary}"),
    }
}

fn vm_path(id: &str) -> String {
    format!("/v1/vms/{}", encode(id))
}

/// Accepts `12` or `"12"` on the command line.
fn quote_etag(etag: &str) -> String {
    if etag.starts_with('"') || etag == "*" {
        etag.to_string()
    } else {
        format!("\"{etag}\"")
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).expect("a JSON value serializes")
}

fn write_table<const N: usize>(
    out: &mut dyn Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

//! The client subcommands (`azimds vm …`, `azimds events …`, `azimds keys …`,
//! `azimds faults …`, `azimds clock …`, `azimds journal`, `azimds status`): they drive a
//! running server through its control API and print text (default) or the server's JSON
//! (`--json`).
//!
//! `mod.rs` connects and turns the server's answers into results; `vm.rs`, `events.rs`,
//! `keys.rs`, `faults.rs`, `clock.rs`, `journal.rs` and `status.rs` are one command group
//! each; `format.rs` prints.
//!
//! Exit codes scripts can rely on: 0 success; 1 other failure (server error, bad local file);
//! 2 usage error; 3 not found; 4 conflict or precondition failed (409/412; also `vm wait-ready`
//! when the guest reported a provisioning failure); 5 rejected as invalid (400/413/422); 6
//! cannot reach or authenticate to the server; 7 `events wait` or `vm wait-ready` timed out.
//! `clock advance` and `clock set` on a server without `--clock manual` exit 4 (409).

mod capture;
mod clock;
mod events;
mod faults;
mod format;
mod generate;
mod journal;
mod keys;
mod provisioning;
mod status;
mod store;
mod vm;

use std::path::PathBuf;

use http::{Method, StatusCode};
use serde_json::Value;

use crate::client::{ControlClient, Reply};
use crate::config::{ControlAddress, DEFAULT_CONTROL, parse_control};
use crate::control::token::ControlToken;

pub use capture::{CaptureArgs, ReplayArgs, capture, replay};
pub use clock::{ClockCommand, clock};
pub use events::{EventsCommand, ScheduleArgs, events};
pub use faults::{AddArgs, FaultsCommand, faults};
pub use generate::{Shell, completions, man_pages};
pub use journal::{JournalArgs, journal};
pub use keys::{Keys, KeysCommand, keys};
pub use provisioning::{OvfEnvArgs, ovf_env};
pub use status::status;
pub use store::{StoreCommand, StoreToolArgs, store};
pub use vm::{VmCommand, vm};

/// How to reach the control API.
// The field docs are also clap's help text, where `<data>` is a placeholder, not HTML.
#[allow(rustdoc::invalid_html_tags)]
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

/// A failed client command: the message to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// The process's exit code (see the module documentation).
    pub code: u8,
    /// What went wrong, printed after `azimds: error: `.
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

/// A client for the control API at `--control`, with the token from `--token`, else from the
/// data directory (TCP only: a unix socket is authorized by its file permissions).
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

/// Sends one request; a non-2xx answer becomes a [`Failure`] with the server's message.
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
    checked(reply)
}

/// The reply if it is a 2xx; otherwise a [`Failure`] with the server's message.
fn checked(reply: Reply) -> Result<Reply, Failure> {
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

/// [`send`] for a request whose answer is JSON, with a JSON body if any.
async fn fetch_json(
    client: &ControlClient,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, Failure> {
    let body = body.map(|body| serde_json::to_vec(body).expect("a JSON value serializes"));
    let reply = send(client, method, path, body, &[]).await?;
    json_body(&reply)
}

/// The answer's JSON body.
fn json_body(reply: &Reply) -> Result<Value, Failure> {
    serde_json::from_slice(&reply.body).map_err(|e| Failure::new(1, e.to_string()))
}

/// The server's error message, its problems one per line, and the current ETag if it sent one.
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

/// A path segment for a URL (VM and event ids are user-chosen).
fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

//! `azimds clock …`: read the server's time, and move a manual clock (`/v1/clock`).

use std::io::Write;
use std::path::PathBuf;

use http::Method;
use serde_json::{Value, json};

use crate::cli::format::{Output, text};
use crate::cli::{ConnectArgs, Failure, client, fetch_json};

/// `azimds clock …`
#[derive(Debug, clap::Subcommand)]
pub enum ClockCommand {
    /// Show the server's time (the default).
    Show,
    /// Move a manual clock (--clock manual) forward, e.g. `azimds clock advance 10m`; what
    /// became due (scheduled events starting, completing) happens at once.
    Advance {
        /// Seconds, or a number with ms, s, m or h.
        by: String,
    },
    /// Set a manual clock, e.g. `azimds clock set 2026-01-02T03:04:05Z` (backwards too).
    Set {
        /// An RFC 3339 time.
        to: String,
    },
}

/// Runs `azimds clock …`.
pub async fn clock(
    command: Option<ClockCommand>,
    args: &ConnectArgs,
    default_data: impl FnOnce() -> PathBuf,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let client = client(args, default_data)?;
    let body = match command.unwrap_or(ClockCommand::Show) {
        ClockCommand::Show => fetch_json(&client, Method::GET, "/v1/clock", None).await?,
        ClockCommand::Advance { by } => {
            // A bare number is seconds; the server parses units.
            let by = by.parse::<f64>().map_or(Value::from(by), Value::from);
            let request = json!({ "by": by });
            fetch_json(&client, Method::POST, "/v1/clock/advance", Some(&request)).await?
        }
        ClockCommand::Set { to } => {
            let request = json!({ "to": to });
            fetch_json(&client, Method::POST, "/v1/clock/set", Some(&request)).await?
        }
    };
    Output::new(out, args.json).show(&body, |out, body| {
        let kind = if body["manual"] == Value::Bool(true) {
            "manual"
        } else {
            "system"
        };
        write!(out, "{} ({kind} clock)", text(&body["now"]))?;
        match body["transitions"].as_u64() {
            Some(n) => writeln!(out, "; {n} scheduled-event transitions applied"),
            None => writeln!(out),
        }
    })
}

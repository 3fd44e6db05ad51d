//! `azimds status`: what the server says about itself (`/v1/status`).

use std::io::Write;
use std::path::PathBuf;

use http::Method;
use serde_json::Value;

use crate::cli::format::{Output, joined, text};
use crate::cli::{ConnectArgs, Failure, client, fetch_json};

/// Runs `azimds status`.
pub async fn status(
    args: &ConnectArgs,
    default_data: impl FnOnce() -> PathBuf,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let client = client(args, default_data)?;
    let body = fetch_json(&client, Method::GET, "/v1/status", None).await?;
    Output::new(out, args.json).show(&body, write_status)
}

/// One `name value` line per fact, names padded to one column.
fn write_status(out: &mut dyn Write, body: &Value) -> std::io::Result<()> {
    let rows = [
        ("version", text(&body["version"])),
        ("ready", text(&body["ready"])),
        ("vms", text(&body["vms"])),
        ("callers", text(&body["callers"])),
        ("unknown callers", text(&body["unknownCallers"])),
        ("connections", connections(&body["connections"])),
        ("store", store(&body["store"])),
        ("guest listeners", joined(&body["guestListeners"], ", ")),
    ];
    for (name, value) in rows {
        writeln!(out, "{name:<16} {value}")?;
    }
    Ok(())
}

/// `open/max (per caller max), refused n`.
fn connections(connections: &Value) -> String {
    format!(
        "{} open of {} ({} per caller), {} refused",
        text(&connections["open"]),
        text(&connections["max"]),
        text(&connections["maxPerCaller"]),
        text(&connections["refused"]),
    )
}

/// `writable`, or why the store cannot commit and since when.
fn store(store: &Value) -> String {
    if store["writable"].as_bool().unwrap_or(true) {
        return "writable".into();
    }
    format!(
        "cannot write since {}: {}",
        text(&store["failingSince"]),
        text(&store["error"])
    )
}

//! `azimds journal VM [--follow]`: a VM's last guest requests (`/v1/vms/{id}/journal`).

use std::io::Write;
use std::path::PathBuf;

use http::Method;
use serde_json::Value;

use crate::cli::format::{Output, text};
use crate::cli::{ConnectArgs, Failure, client, encode, fetch_json};

/// How long one follow request waits on the server for a new entry.
const FOLLOW_WAIT: u64 = 30;

/// `azimds journal …`
#[derive(Debug, clap::Args)]
pub struct JournalArgs {
    /// The VM id.
    vm: String,
    /// Keep printing requests as they arrive (until interrupted); with --json, one JSON
    /// object per line.
    #[arg(long, short)]
    follow: bool,
    /// Show at most the last N requests [default: all kept].
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

/// Runs `azimds journal`.
pub async fn journal(
    args: JournalArgs,
    connect: &ConnectArgs,
    default_data: impl FnOnce() -> PathBuf,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let client = client(connect, default_data)?;
    let base = format!("/v1/vms/{}/journal", encode(&args.vm));
    let first = match args.limit {
        Some(limit) => format!("{base}?limit={limit}"),
        None => base.clone(),
    };
    let mut page = fetch_json(&client, Method::GET, &first, None).await?;
    let mut output = Output::new(out, connect.json);
    if !args.follow {
        return output.show(&page, |out, page| {
            for entry in page["entries"].as_array().into_iter().flatten() {
                writeln!(out, "{}", line(entry))?;
            }
            Ok(())
        });
    }
    loop {
        for entry in page["entries"].as_array().into_iter().flatten() {
            if output.json {
                output.line(&entry.to_string())?;
            } else {
                output.line(&line(entry))?;
            }
        }
        if page["missed"] == Value::Bool(true) && !output.json {
            output
                .line("… (older requests were pushed out of the journal before they were read)")?;
        }
        let after = page["next"].as_u64().unwrap_or(1).saturating_sub(1);
        let path = format!("{base}?after={after}&wait={FOLLOW_WAIT}");
        page = fetch_json(&client, Method::GET, &path, None).await?;
    }
}

/// `TIME  METHOD STATUS  MS  PATH?QUERY  [fault f1 status]  metadata  "user agent"`.
fn line(entry: &Value) -> String {
    let target = match entry["query"].as_str() {
        Some(query) if !query.is_empty() => format!("{}?{query}", text(&entry["path"])),
        _ => text(&entry["path"]),
    };
    let status = match entry["status"].as_u64() {
        Some(status) => status.to_string(),
        None => "---".into(),
    };
    let mut line = format!(
        "{}  {:<4} {status} {:>8.3}ms  {target}",
        text(&entry["time"]),
        text(&entry["method"]),
        entry["durationMs"].as_f64().unwrap_or(0.0),
    );
    if let Some(fault) = entry["fault"].as_object() {
        line.push_str(&format!(
            "  [fault {} {}]",
            text(&fault["rule"]),
            text(&fault["action"])
        ));
    }
    if entry["metadataHeader"] != Value::Bool(true) {
        line.push_str("  (no Metadata: true)");
    }
    if let Some(agent) = entry["userAgent"].as_str() {
        line.push_str(&format!("  {agent:?}"));
    }
    line
}

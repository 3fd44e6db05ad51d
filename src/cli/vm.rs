//! `azimds vm …`: list, get, put, patch and delete VMs through `/v1/vms`; a VM's provisioning
//! and waiting until it is Ready (in `provisioning.rs`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::Value;

use crate::cli::format::{Column, Output, write_json_table};
use crate::cli::provisioning;
use crate::cli::{ConnectArgs, Failure, client, encode, fetch_json, json_body, send};
use crate::client::{ControlClient, Reply};
use crate::definition::Syntax;

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
    /// Assign a pre-provisioned VM: its `/metadata/reprovisiondata` serves this OVF
    /// environment (ovf-env.xml; `-`: stdin) instead of 404, and cloud-init's poll ends.
    Assign {
        id: String,
        file: PathBuf,
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// Take a VM's OVF environment back: `/metadata/reprovisiondata` answers 404 again.
    Unassign {
        id: String,
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// Delete a VM.
    Delete {
        id: String,
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// Show what a VM's guest agents reported to the WireServer: Ready, NotReady with its
    /// reason, which agent, when.
    Provisioning {
        id: String,
        /// Forget what was reported (the VM is to be provisioned again): it is Pending again.
        #[arg(long)]
        reset: bool,
    },
    /// Wait until a VM's guest reported Ready to the WireServer. Exit 7 on timeout, 4 if the
    /// guest reported a provisioning failure.
    ///
    /// Example: azimds vm wait-ready web-1 --timeout 10m
    WaitReady {
        id: String,
        /// How long to wait at most: seconds, or a number with s, m or h.
        #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = crate::config::parse_duration)]
        timeout: u64,
    },
}

/// Runs `azimds vm …`, writing results to `out`.
pub async fn vm(
    command: VmCommand,
    args: &ConnectArgs,
    default_data: impl FnOnce() -> PathBuf,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let client = client(args, default_data)?;
    let mut output = Output::new(out, args.json);
    match command {
        VmCommand::List => {
            let body = fetch_json(&client, Method::GET, "/v1/vms", None).await?;
            output.show(&body, write_vm_table)
        }
        VmCommand::Get { id } => {
            let reply = send(&client, Method::GET, &vm_path(&id), None, &[]).await?;
            // The definition is JSON in either form; the ETag goes to stderr so stdout stays
            // a document a script can feed back to `vm put`.
            output.pretty(&json_body(&reply)?)?;
            if !output.json
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
            let mut headers = if_match_header(if_match.as_deref());
            if create_only {
                headers.push(("if-none-match", "*".to_string()));
            }
            let reply = write_vm(&client, Method::PUT, &id, &entry, &headers).await?;
            let verb = if reply.status == StatusCode::CREATED {
                "created"
            } else {
                "replaced"
            };
            report(&mut output, &reply, &format!("{verb} VM {id}"))
        }
        VmCommand::Patch { id, file, if_match } => {
            let patch = read_document(&file)?;
            let headers = if_match_header(if_match.as_deref());
            let reply = write_vm(&client, Method::PATCH, &id, &patch, &headers).await?;
            report(&mut output, &reply, &format!("patched VM {id}"))
        }
        VmCommand::Assign { id, file, if_match } => {
            let xml = read_text(&file)?;
            let headers = if_match_header(if_match.as_deref());
            let path = format!("{}/reprovisiondata", vm_path(&id));
            let reply = send(
                &client,
                Method::PUT,
                &path,
                Some(xml.into_bytes()),
                &headers,
            )
            .await?;
            report(
                &mut output,
                &reply,
                &format!("assigned VM {id} its OVF environment"),
            )
        }
        VmCommand::Unassign { id, if_match } => {
            let headers = if_match_header(if_match.as_deref());
            let path = format!("{}/reprovisiondata", vm_path(&id));
            let reply = send(&client, Method::DELETE, &path, None, &headers).await?;
            report(&mut output, &reply, &format!("unassigned VM {id}"))
        }
        VmCommand::Delete { id, if_match } => {
            let headers = if_match_header(if_match.as_deref());
            send(&client, Method::DELETE, &vm_path(&id), None, &headers).await?;
            if output.json {
                output.line(&serde_json::json!({ "deleted": id }).to_string())
            } else {
                output.line(&format!("deleted VM {id}"))
            }
        }
        VmCommand::Provisioning { id, reset } => {
            provisioning::show(&client, &mut output, &id, reset).await
        }
        VmCommand::WaitReady { id, timeout } => {
            provisioning::wait_ready(&client, &mut output, &id, Duration::from_secs(timeout)).await
        }
    }
}

fn write_vm_table(out: &mut dyn Write, body: &Value) -> std::io::Result<()> {
    let columns = [
        Column::Text("ID", "id"),
        Column::Text("NAME", "name"),
        Column::Text("ORIGIN", "origin"),
        Column::Text("ETAG", "etag"),
        Column::List("CALLERS", "callers"),
    ];
    write_json_table(out, &body["vms"], columns)
}

/// PUT or PATCH `document` as VM `id`.
async fn write_vm(
    client: &ControlClient,
    method: Method,
    id: &str,
    document: &Value,
    headers: &[(&str, String)],
) -> Result<Reply, Failure> {
    let body = serde_json::to_vec(document).expect("a JSON value serializes");
    send(client, method, &vm_path(id), Some(body), headers).await
}

/// After a write: the server's answer under `--json`, else `summary` and the new ETag.
fn report(output: &mut Output<'_>, reply: &Reply, summary: &str) -> Result<(), Failure> {
    if output.json {
        let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        return output.pretty(&body);
    }
    match &reply.etag {
        Some(etag) => output.line(&format!("{summary} (ETag {etag})")),
        None => output.line(summary),
    }
}

/// A file's text, `-` for stdin.
fn read_text(path: &Path) -> Result<String, Failure> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| Failure::new(1, format!("cannot read stdin: {e}")))?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| Failure::new(1, format!("cannot read {}: {e}", path.display())))
    }
}

/// Reads one VM entry or patch from a JSON or YAML file, `-` for stdin.
fn read_document(path: &Path) -> Result<Value, Failure> {
    let text = read_text(path)?;
    let name = if path == Path::new("-") {
        "stdin".to_string()
    } else {
        path.display().to_string()
    };
    let parsed = match Syntax::from_file_name(&name) {
        Some(Syntax::Json) => serde_json::from_str(&text).map_err(|e| e.to_string()),
        Some(Syntax::Yaml) => serde_yaml_ng::from_str(&text).map_err(|e| e.to_string()),
        None => serde_json::from_str(&text)
            .or_else(|_| serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())),
    };
    parsed.map_err(|e| Failure::new(1, format!("{name}: not valid JSON or YAML: {e}")))
}

fn vm_path(id: &str) -> String {
    format!("/v1/vms/{}", encode(id))
}

/// `If-Match` when `--if-match` is given.
fn if_match_header(etag: Option<&str>) -> Vec<(&'static str, String)> {
    etag.map(|etag| ("if-match", quote_etag(etag)))
        .into_iter()
        .collect()
}

/// Accepts `12` or `"12"` on the command line.
fn quote_etag(etag: &str) -> String {
    if etag.starts_with('"') || etag == "*" {
        etag.to_string()
    } else {
        format!("\"{etag}\"")
    }
}

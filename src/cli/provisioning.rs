//! `azimds vm provisioning VM`, `azimds vm wait-ready VM` and `azimds ovf-env VM`: what a VM's
//! guest agents reported to the WireServer, waiting until it is Ready, and its provisioning
//! media (`ovf-env.xml`, or a CD image holding it), through `/v1/vms/{id}/provisioning` and
//! `/v1/vms/{id}/ovf-env`.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::Value;

use crate::cli::format::{Column, Output, text, write_json_table};
use crate::cli::{ConnectArgs, Failure, client, encode, fetch_json, send};
use crate::client::ControlClient;

/// The volume label of the provisioning CD. No client requires one (wireserver.md §2.1);
/// cloud-init's ds-identify knows `rd_rdfe_stable*` as Azure's, so this is that family.
const ISO_LABEL: &str = "rd_rdfe_stable.azimds";
/// What each server-side wait lasts at most (the server's own cap); longer waits are a chain.
const SERVER_WAIT: Duration = Duration::from_secs(25);

/// `azimds ovf-env`'s arguments.
#[derive(Debug, clap::Args)]
pub struct OvfEnvArgs {
    /// The VM id.
    vm: String,
    /// Write the document to this file instead of stdout.
    #[arg(long, short, value_name = "FILE", conflicts_with = "iso")]
    output: Option<PathBuf>,
    /// Write an ISO 9660 CD image (Rock Ridge and Joliet, label rd_rdfe_stable.azimds) holding
    /// ovf-env.xml at its root, to attach to the VM as a CD-ROM (made with xorriso, genisoimage
    /// or mkisofs, whichever is installed).
    #[arg(long, value_name = "FILE")]
    iso: Option<PathBuf>,
}

pub(super) async fn show(
    client: &ControlClient,
    output: &mut Output<'_>,
    id: &str,
    reset: bool,
) -> Result<(), Failure> {
    let path = provisioning_path(id);
    if reset {
        let body = fetch_json(client, Method::DELETE, &path, None).await?;
        return output.show(&body, |out, body| {
            if body["reset"] == Value::Bool(true) {
                writeln!(out, "VM {id}: provisioning reset; it is Pending again")
            } else {
                writeln!(out, "VM {id}: nothing was reported; it is Pending")
            }
        });
    }
    let body = fetch_json(client, Method::GET, &path, None).await?;
    output.show(&body, write_provisioning)
}

/// Waits (chaining server-side long polls) until the VM is Ready, up to `timeout`.
pub(super) async fn wait_ready(
    client: &ControlClient,
    output: &mut Output<'_>,
    id: &str,
    timeout: Duration,
) -> Result<(), Failure> {
    let started = Instant::now();
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        let this_wait = left.min(SERVER_WAIT).as_secs().max(1);
        let path = format!("{}/wait?timeout={this_wait}", provisioning_path(id));
        match send(client, Method::GET, &path, None, &[]).await {
            Ok(reply) => {
                let body = crate::cli::json_body(&reply)?;
                let waited = started.elapsed().as_secs_f64();
                return output.show(&body, |out, body| {
                    writeln!(
                        out,
                        "VM {id} is Ready (reported by {} at {}; waited {waited:.1}s)",
                        text(&body["readyAgent"]),
                        text(&body["readyAt"]),
                    )
                });
            }
            Err(failure)
                if failure.code == 7 && started.elapsed() + Duration::from_secs(1) < timeout =>
            {
                continue;
            }
            Err(failure) => return Err(failure),
        }
    }
}

fn provisioning_path(id: &str) -> String {
    format!("/v1/vms/{}/provisioning", encode(id))
}

fn write_provisioning(out: &mut dyn Write, body: &Value) -> std::io::Result<()> {
    let vm = text(&body["vm"]);
    let state = text(&body["state"]);
    match state.as_str() {
        "Ready" => writeln!(
            out,
            "VM {vm}: Ready since {} (reported by {})",
            text(&body["readyAt"]),
            text(&body["readyAgent"])
        )?,
        _ => writeln!(out, "VM {vm}: {state}")?,
    }
    let latest = &body["latest"];
    if !latest.is_null() {
        let reason = match (&latest["subStatus"], &latest["description"]) {
            (Value::Null, Value::Null) => String::new(),
            (sub, Value::Null) => format!(" ({})", text(sub)),
            (sub, description) => format!(" ({}: {})", text(sub), text(description)),
        };
        writeln!(
            out,
            "latest report: {}{reason} from {} at {} via {}",
            text(&latest["health"]),
            text(&latest["agent"]),
            text(&latest["at"]),
            text(&latest["endpoint"]),
        )?;
    }
    let agent = &body["agentStatus"];
    if !agent.is_null() {
        writeln!(
            out,
            "guest agent status: {} (version {}) at {}",
            text(&agent["status"]),
            text(&agent["version"]),
            text(&agent["at"])
        )?;
    }
    let fetched = &body["goalState"]["lastFetchedAt"];
    if !fetched.is_null() {
        writeln!(out, "goal state last fetched: {}", text(fetched))?;
    }
    if body["reports"].as_array().is_some_and(|r| !r.is_empty()) {
        writeln!(out)?;
        let columns = [
            Column::Text("AT", "at"),
            Column::Text("HEALTH", "health"),
            Column::Text("SUBSTATUS", "subStatus"),
            Column::Text("AGENT", "agent"),
            Column::Text("DESCRIPTION", "description"),
        ];
        write_json_table(out, &body["reports"], columns)?;
    }
    Ok(())
}

/// Runs `azimds ovf-env`.
pub async fn ovf_env(
    args: OvfEnvArgs,
    connect: &ConnectArgs,
    default_data: impl FnOnce() -> PathBuf,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let client = client(connect, default_data)?;
    let path = format!("/v1/vms/{}/ovf-env", encode(&args.vm));
    let reply = send(&client, Method::GET, &path, None, &[]).await?;
    if reply.status != StatusCode::OK {
        return Err(Failure::new(1, format!("server answered {}", reply.status)));
    }
    let document = reply.body;
    let secret = has_password(&document);
    match (args.output, args.iso) {
        (None, None) => out
            .write_all(&document)
            .map_err(|e| Failure::new(1, e.to_string())),
        (Some(file), None) => {
            write_private(&file, &document, secret)?;
            eprintln!("wrote {}", file.display());
            Ok(())
        }
        (_, Some(iso)) => {
            build_iso(&iso, &document, secret)?;
            eprintln!("wrote {} (label {ISO_LABEL})", iso.display());
            Ok(())
        }
    }
}

/// Whether the document carries a password (then what holds it is made owner-only).
fn has_password(document: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(document) else {
        return true;
    };
    roxmltree::Document::parse(text).map_or(true, |doc| {
        doc.descendants()
            .filter(|n| n.tag_name().name() == "UserPassword")
            .any(|n| n.text().is_some_and(|t| !t.is_empty()))
    })
}

fn write_private(path: &Path, bytes: &[u8], secret: bool) -> Result<(), Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if secret { 0o600 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Failure::new(1, format!("cannot write {}: {e}", path.display())))?;
    file.write_all(bytes)
        .map_err(|e| Failure::new(1, format!("cannot write {}: {e}", path.display())))
}

/// The CD image: `ovf-env.xml` at the root of an ISO 9660 file system with Rock Ridge (so the
/// name keeps its `-` and lower case: plain ISO 9660 would show `ovf_env.xml`) and Joliet,
/// which every reader of §2.1 mounts. Built by a packaged tool rather than by azimds: the
/// format has decades of corner cases, and hypervisor hosts already carry one of these.
fn build_iso(iso: &Path, document: &[u8], secret: bool) -> Result<(), Failure> {
    let staging = std::env::temp_dir().join(format!(
        "azimds-ovf-env-{}-{:x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| Failure::new(1, format!("cannot create {}: {e}", staging.display())))?;
    let result = (|| {
        write_private(&staging.join("ovf-env.xml"), document, secret)?;
        let tool = iso_tool()?;
        let mut command = Command::new(tool[0]);
        command
            .args(&tool[1..])
            .args(["-quiet", "-V", ISO_LABEL, "-r", "-J", "-o"]);
        command.arg(iso).arg(&staging);
        let output = command
            .output()
            .map_err(|e| Failure::new(1, format!("cannot run {}: {e}", tool[0])))?;
        if !output.status.success() {
            return Err(Failure::new(
                1,
                format!(
                    "{} failed ({}): {}",
                    tool[0],
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            ));
        }
        if secret {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(iso, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Failure::new(1, format!("cannot restrict {}: {e}", iso.display())))?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// The first installed of xorriso (as mkisofs), genisoimage, mkisofs.
fn iso_tool() -> Result<&'static [&'static str], Failure> {
    const TOOLS: [&[&str]; 3] = [
        &["xorriso", "-as", "mkisofs"],
        &["genisoimage"],
        &["mkisofs"],
    ];
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
    };
    TOOLS
        .into_iter()
        .find(|tool| on_path(tool[0]))
        .ok_or_else(|| {
            Failure::new(
                1,
                "--iso needs xorriso, genisoimage or mkisofs (Debian: apt-get install xorriso)",
            )
        })
}

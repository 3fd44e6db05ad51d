//! `azimds faults …`: add, list, remove and clear fault rules (`/v1/faults`).

use std::io::Write;
use std::path::PathBuf;

use http::Method;
use serde_json::{Value, json};

use crate::cli::format::{Column, Output, text, write_json_table};
use crate::cli::{ConnectArgs, Failure, client, encode, fetch_json};

/// `azimds faults …`
#[derive(Debug, clap::Subcommand)]
pub enum FaultsCommand {
    /// Add a fault rule: a preset, or a match and an action.
    ///
    /// Examples:
    ///   azimds faults add --preset imds-updating                 # 410 everywhere for 70 s
    ///   azimds faults add --preset throttled --endpoint token    # 429 on tokens for 30 s
    ///   azimds faults add --vm web-1 --endpoint instance --status 500 --count 3
    ///   azimds faults add --endpoint scheduledevents --delay 5s --probability 0.2 --seed 7
    #[command(verbatim_doc_comment)]
    Add(Box<AddArgs>),
    /// List the rules in force, in the order they apply.
    List,
    /// Remove one rule.
    Remove { id: String },
    /// Remove every rule.
    Clear,
    /// List the presets and what each reproduces.
    Presets,
}

/// `azimds faults add`: the rule to ask the server for (only the options given are sent).
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// imds-updating, identity-not-ready, throttled, entra-outage or slow-first-call.
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,
    /// Only this VM's requests [default: every VM].
    #[arg(long, value_name = "ID")]
    vm: Option<String>,
    /// Only this endpoint: instance, versions, scheduledevents, token, identity, attested,
    /// loadbalancer or reprovisiondata.
    #[arg(long, value_name = "NAME", conflicts_with = "path")]
    endpoint: Option<String>,
    /// Only paths starting with this prefix, e.g. /metadata/instance/compute.
    #[arg(long, value_name = "PREFIX")]
    path: Option<String>,
    /// Only this method (GET, POST).
    #[arg(long)]
    method: Option<String>,
    /// Only token requests naming this client_id, object_id or msi_res_id (`system`: none).
    #[arg(long, value_name = "ID")]
    identity: Option<String>,
    /// Only token requests for this resource.
    #[arg(long, value_name = "URI")]
    resource: Option<String>,
    /// Answer this status with Azure's body: 400, 404, 410, 429, 500 or 503.
    #[arg(long, value_name = "CODE", group = "action")]
    status: Option<u16>,
    /// Wait this long (e.g. 500ms, 2s), then answer as usual.
    #[arg(long, value_name = "DURATION", group = "action")]
    delay: Option<String>,
    /// Never answer (the client gives up, or the idle timeout closes the connection).
    #[arg(long, group = "action")]
    stall: bool,
    /// Close the connection with a TCP reset, unanswered.
    #[arg(long, group = "action")]
    reset: bool,
    /// Answer as usual but close the connection after half the body.
    #[arg(long, group = "action")]
    truncate: bool,
    /// At most this many answers per VM.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Active for this long (e.g. 70s, 5m); for slow-first-call, the first call's delay.
    #[arg(long, value_name = "DURATION")]
    duration: Option<String>,
    /// Take each matching request with this probability (0 < P ≤ 1).
    #[arg(long, value_name = "P")]
    probability: Option<f64>,
    /// Seed of the draws, so a run is reproducible.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
}

impl AddArgs {
    /// The body of `POST /v1/faults`.
    fn spec(self) -> Value {
        let action = [
            (self.stall, "stall"),
            (self.reset, "reset"),
            (self.truncate, "truncate"),
        ]
        .into_iter()
        .find_map(|(on, name)| on.then_some(name));
        let mut spec = json!({});
        let fields = [
            ("preset", self.preset.map(Value::from)),
            ("vm", self.vm.map(Value::from)),
            ("endpoint", self.endpoint.map(Value::from)),
            ("path", self.path.map(Value::from)),
            ("method", self.method.map(Value::from)),
            ("identity", self.identity.map(Value::from)),
            ("resource", self.resource.map(Value::from)),
            ("action", action.map(Value::from)),
            ("status", self.status.map(Value::from)),
            ("delay", self.delay.map(Value::from)),
            ("count", self.count.map(Value::from)),
            ("duration", self.duration.map(Value::from)),
            ("probability", self.probability.map(Value::from)),
            ("seed", self.seed.map(Value::from)),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                spec[key] = value;
            }
        }
        spec
    }
}

/// Runs `azimds faults …`.
pub async fn faults(
    command: FaultsCommand,
    args: &ConnectArgs,
    default_data: impl FnOnce() -> PathBuf,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let client = client(args, default_data)?;
    let mut output = Output::new(out, args.json);
    match command {
        FaultsCommand::Add(add) => {
            let rule = fetch_json(&client, Method::POST, "/v1/faults", Some(&add.spec())).await?;
            output.show(&rule, |out, rule| {
                writeln!(out, "added fault {}: {}", text(&rule["id"]), summary(rule))
            })
        }
        FaultsCommand::List => {
            let body = fetch_json(&client, Method::GET, "/v1/faults", None).await?;
            output.show(&body, write_rule_table)
        }
        FaultsCommand::Remove { id } => {
            let path = format!("/v1/faults/{}", encode(&id));
            let rule = fetch_json(&client, Method::DELETE, &path, None).await?;
            output.show(&rule, |out, rule| {
                writeln!(
                    out,
                    "removed fault {} after {} injected answers",
                    text(&rule["id"]),
                    text(&rule["injected"])
                )
            })
        }
        FaultsCommand::Clear => {
            let body = fetch_json(&client, Method::DELETE, "/v1/faults", None).await?;
            output.show(&body, |out, body| {
                writeln!(out, "removed {} fault rules", text(&body["removed"]))
            })
        }
        FaultsCommand::Presets => {
            let body = fetch_json(&client, Method::GET, "/v1/faults/presets", None).await?;
            output.show(&body, |out, body| {
                let columns = [
                    Column::Text("PRESET", "name"),
                    Column::Text("WHAT", "summary"),
                ];
                write_json_table(out, &body["presets"], columns)
            })
        }
    }
}

/// "status 410 on every endpoint of every VM, until …".
fn summary(rule: &Value) -> String {
    let action = match rule["action"].as_str().unwrap_or("") {
        "status" => format!("status {}", text(&rule["status"])),
        "delay" => format!("delay {}s", text(&rule["delaySeconds"])),
        other => other.to_string(),
    };
    let paths = match rule["paths"].as_str() {
        Some(paths) => format!("on {paths}"),
        None => "on every endpoint".into(),
    };
    let vm = match rule["vm"].as_str() {
        Some(vm) => format!("of VM {vm}"),
        None => "of every VM".into(),
    };
    let mut limits = Vec::new();
    if let Some(count) = rule["count"].as_u64() {
        limits.push(format!("{count} per VM"));
    }
    if let Some(p) = rule["probability"].as_f64() {
        limits.push(format!("probability {p} (seed {})", text(&rule["seed"])));
    }
    if let Some(until) = rule["expires"].as_str() {
        limits.push(format!("until {until}"));
    }
    let limits = if limits.is_empty() {
        String::new()
    } else {
        format!(", {}", limits.join(", "))
    };
    format!("{action} {paths} {vm}{limits}")
}

fn write_rule_table(out: &mut dyn Write, body: &Value) -> std::io::Result<()> {
    let rows: Vec<Value> = body["faults"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|rule| {
            json!({
                "id": rule["id"],
                "preset": rule["preset"],
                "rule": summary(rule),
                "injected": rule["injected"],
            })
        })
        .collect();
    let columns = [
        Column::Text("ID", "id"),
        Column::Text("PRESET", "preset"),
        Column::Text("INJECTED", "injected"),
        Column::Text("RULE", "rule"),
    ];
    write_json_table(out, &Value::Array(rows), columns)
}

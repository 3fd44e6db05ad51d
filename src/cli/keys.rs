//! `azimds keys …`: the signing keys — managed-identity tokens' (`/v1/identity/keys/…`) and
//! attested documents' (`/v1/attested/keys/…`).

use std::io::Write;
use std::path::PathBuf;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::cli::format::{Output, text};
use crate::cli::{ConnectArgs, Failure, client, json_body};

/// `azimds keys …`
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Make new signing keys current: a new token signing key (older keys stay published until
    /// their tokens expire) and new attested-document leaves (older ones stay valid until
    /// their documents expire; operator-supplied certificates are left alone).
    Rotate {
        /// Rotate only these keys.
        #[arg(long, value_enum, value_name = "KEYS")]
        only: Option<Keys>,
    },
}

/// Which signing keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Keys {
    /// Managed-identity token signing keys.
    Tokens,
    /// Attested-document signing certificates.
    Attested,
}

/// Runs `azimds keys …`.
pub async fn keys(
    command: KeysCommand,
    args: &ConnectArgs,
    default_data: impl FnOnce() -> PathBuf,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let client = client(args, default_data)?;
    let KeysCommand::Rotate { only } = command;
    let mut result = serde_json::Map::new();
    if only != Some(Keys::Attested) {
        let reply =
            crate::cli::send(&client, Method::POST, "/v1/identity/keys/rotate", None, &[]).await?;
        result.insert("tokens".into(), json_body(&reply)?);
    }
    if only != Some(Keys::Tokens) {
        let path = "/v1/attested/keys/rotate";
        let reply = client
            .send(Method::POST, path, None, &[])
            .await
            .map_err(|e| Failure::new(6, e.to_string()))?;
        // Operator-supplied certificates are rotated by replacing their files: when both
        // kinds were asked for, that is a note, not a failure.
        let attested = if reply.status == StatusCode::CONFLICT && only.is_none() {
            let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
            json!({ "skipped": body["error"]["message"] })
        } else {
            json_body(&crate::cli::checked(reply)?)?
        };
        result.insert("attested".into(), attested);
    }
    let result = Value::Object(result);
    Output::new(out, args.json).show(&result, |out, body| {
        if let Some(tokens) = body.get("tokens") {
            writeln!(
                out,
                "token signing key rotated; new kid {}",
                text(&tokens["kid"])
            )?;
        }
        match body.get("attested") {
            Some(attested) if attested.get("skipped").is_some() => writeln!(
                out,
                "attested signing certificates not rotated: {}",
                text(&attested["skipped"])
            ),
            Some(attested) => writeln!(
                out,
                "attested signing certificates rotated; new generation {}",
                text(&attested["generation"])
            ),
            None => Ok(()),
        }
    })
}

//! `azimds keys …`: the token signing keys (`/v1/identity/keys/…`).

use std::io::Write;
use std::path::PathBuf;

use http::Method;

use crate::cli::format::{Output, text};
use crate::cli::{ConnectArgs, Failure, client, fetch_json};

/// `azimds keys …`
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Make a new token signing key current; older keys stay published until their tokens expire.
    Rotate,
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
    let body = fetch_json(&client, Method::POST, "/v1/identity/keys/rotate", None).await?;
    Output::new(out, args.json).show(&body, |out, body| {
        writeln!(
            out,
            "token signing key rotated; new kid {}",
            text(&body["kid"])
        )
    })
}

//! `azimds completions SHELL` and `azimds man`: shell completions and man pages generated
//! from the clap definitions, so the packages ship what `--help` says.

use std::path::{Path, PathBuf};

use crate::cli::Failure;

/// The shells completions are generated for.
pub use clap_complete::Shell;

/// Writes `shell`'s completion script for `command` to `out`.
pub fn completions(
    mut command: clap::Command,
    shell: Shell,
    out: &mut dyn std::io::Write,
) -> Result<(), Failure> {
    let name = command.get_name().to_string();
    // Generated in memory: clap_complete panics on a write error, a closed pipe is not one.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    out.write_all(&script)
        .map_err(|e| Failure::new(1, format!("cannot write the completions: {e}")))
}

/// Writes the man pages (`azimds.1`, `azimds-serve.1`, …: one per command) into `dir`, or
/// `azimds.1` to `out` when there is no `dir`; returns the files written.
pub fn man_pages(
    command: clap::Command,
    dir: Option<&Path>,
    out: &mut dyn std::io::Write,
) -> Result<Vec<PathBuf>, Failure> {
    let failed = |e: std::io::Error| Failure::new(1, format!("cannot write the man pages: {e}"));
    let Some(dir) = dir else {
        clap_mangen::Man::new(command).render(out).map_err(failed)?;
        return Ok(Vec::new());
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    // Subcommands' pages are named after their parents (azimds-vm-put.1), as git's are.
    let command = command.disable_help_subcommand(true);
    clap_mangen::generate_to(command, dir).map_err(failed)?;
    let mut written: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(failed)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "1"))
        .collect();
    written.sort();
    Ok(written)
}

//! Shell completions and man pages generated from the clap definitions (`azimds completions`,
//! `azimds man`), checked with the real bash and the real man(1).

use std::process::Command;

use crate::support::TempDir;

fn azimds(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_azimds"))
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "azimds {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// What bash's completion offers for the words typed so far.
fn complete(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let words_array = words
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let program = format!(
        "source '{}'; COMP_WORDS=({words_array}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; \
         _azimds azimds '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words[words.len().saturating_sub(2)],
    );
    let output = Command::new("bash")
        .args(["--norc", "-c", &program])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_commands_and_flags() {
    let temp = TempDir::new("completions");
    let script = temp.path().join("azimds.bash");
    std::fs::write(&script, azimds(&["completions", "bash"])).unwrap();
    assert_eq!(complete(&script, &["azimds", "se"]), ["serve"]);
    assert_eq!(complete(&script, &["azimds", "rep"]), ["replay"]);
    assert_eq!(
        complete(&script, &["azimds", "capture", "--no"]),
        ["--no-scrub"]
    );
    let serve = complete(&script, &["azimds", "serve", "--rea"]);
    assert_eq!(serve, ["--ready-file"]);
    // The other shells' scripts are generated too (not run: no zsh or fish here).
    assert!(azimds(&["completions", "zsh"]).starts_with("#compdef azimds"));
    assert!(azimds(&["completions", "fish"]).contains("complete -c azimds"));
}

#[test]
fn man_pages_document_every_flag_that_help_lists() {
    let temp = TempDir::new("man");
    let written = azimds(&["man", "--out", temp.path().to_str().unwrap()]);
    for page in [
        "azimds.1",
        "azimds-serve.1",
        "azimds-capture.1",
        "azimds-replay.1",
        "azimds-vm-put.1",
    ] {
        assert!(written.contains(page), "{page} not in {written}");
    }
    let help = azimds(&["serve", "--help"]);
    let flags: Vec<&str> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.trim_end_matches([',', '.', ']']))
        .collect();
    assert!(
        flags.contains(&"--ready-file") && flags.len() > 15,
        "{flags:?}"
    );
    let rendered = Command::new("man")
        .arg("-l")
        .arg(temp.path().join("azimds-serve.1"))
        .env("MANWIDTH", "200")
        .env_remove("MAN_KEEP_FORMATTING")
        .output()
        .unwrap();
    assert!(rendered.status.success(), "{rendered:?}");
    // Plain text: overstrike pairs ("c\x08c" for bold) removed, Unicode hyphens made ASCII.
    let mut page = String::new();
    for c in String::from_utf8_lossy(&rendered.stdout).chars() {
        match c {
            '\u{8}' => {
                page.pop();
            }
            '\u{2010}' | '\u{2212}' => page.push('-'),
            c => page.push(c),
        }
    }
    for flag in flags {
        assert!(page.contains(flag), "man azimds-serve lacks {flag}");
    }
}

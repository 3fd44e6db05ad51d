//! The one integration-test binary: a real guest listener on 127.0.0.1:0, driven over TCP.

/// Server start-up and a raw HTTP/1.1 client that sees every byte.
mod support;

/// The documented nftables anti-spoofing rules, in network namespaces (needs root).
mod antispoof;
/// Malformed and hostile input never panics and never gets a 5xx.
mod bad_input;
/// `azimds capture` and `azimds replay`: round trips byte for byte, scrubbing, the spec's captures.
mod capture;
/// The `azimds` binary: start-up, definition-file errors, `--help`.
mod cli;
/// The control API in-process: every route, auth, validation, ETags, isolation from guests.
mod control;
/// Crash durability: SIGKILL mid-write at random moments, restart, every acknowledged write kept.
mod durability;
/// docs/testing.md's Rust example: `azimds::testing` in another crate's tests.
mod embedding;
/// Shell completions and man pages from the clap definitions, with real bash and man.
mod generated;
/// Managed identity: tokens verified with the published JWKS, exact error bodies, cache, limits.
mod identity;
/// `/metadata/instance` bodies against the spec's real captures, and per-version goldens.
mod instance;
/// Host mode in real network namespaces: each VM sees only itself, strangers get nothing.
mod isolation;
/// Property tests: version monotonicity, arbitrary paths.
mod properties;
/// The ready line, `--ready-file` and `READY=1` for systemd: starting azimds on port 0.
mod ready;
/// Request rules: headers, api-version, query parameters, methods, paths, throttling.
mod rules;
/// Scheduled events: every rule of spec §6 on a paused clock, restart, hooks, definitions.
mod scheduled;

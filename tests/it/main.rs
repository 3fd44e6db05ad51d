//! The one integration-test binary: a real guest listener on 127.0.0.1:0, driven over TCP.

/// Server start-up and a raw HTTP/1.1 client that sees every byte.
mod support;

/// The documented nftables anti-spoofing rules, in network namespaces (needs root).
mod antispoof;
/// Attested documents verified by the openssl command line: envelope, content, rotation.
mod attested;
/// Malformed and hostile input never panics and never gets a 5xx.
mod bad_input;
/// `azimds capture` and `azimds replay`: round trips byte for byte, scrubbing, the spec's captures.
mod capture;
/// The `azimds` binary: start-up, definition-file errors, `--help`.
mod cli;
/// The control API in-process: every route, auth, validation, ETags, isolation from guests.
mod control;
/// Issue 14: what the schemathesis run found in the control API, each pinned.
mod control_contract;
/// Issue 14: SIGKILL during event transitions, approvals and key rotations; nothing acknowledged lost.
mod crash_points;
/// Issue 13: the data directory's owner and modes, the control token, the store file, the socket.
mod data_dir;
/// Definition input that costs too much or means two things; records changed on disk.
mod definitions;
/// Crash durability: SIGKILL mid-write at random moments, restart, every acknowledged write kept.
mod durability;
/// docs/testing.md's Rust example: `azimds::testing` in another crate's tests.
mod embedding;
/// Fault rules: every action and limit over HTTP, presets, isolation between VMs.
mod faults;
/// Issue 11: fleet mode, the real binary on a real etcd (with `--features fleet`).
mod fleet;
/// Issue 11: three hosts on a three-member etcd cluster: leader killed, all of etcd stopped.
#[cfg(feature = "fleet")]
mod fleet_cluster;
/// Issue 11: scheduled events as one state across a fleet: approvals, timers, hooks once.
#[cfg(feature = "fleet")]
mod fleet_events;
/// Issue 11: a move is fenced: the old host stops serving the VM before the new one starts.
#[cfg(feature = "fleet")]
mod fleet_fence;
/// Issue 11: the fleet's signing keys in etcd, sealed with the KEK; one JWKS, rotation seen.
mod fleet_keys;
/// Issue 11: two hypervisor hosts in network namespaces on one etcd, an outage, a move.
#[cfg(feature = "fleet")]
mod fleet_namespaces;
/// Issue 11: a VM's provisioning record seen, waited for and reset through any host.
#[cfg(feature = "fleet")]
mod fleet_provisioning;
/// Issue 11: etcd with TLS client certificates and user/password auth (openssl, etcdctl).
#[cfg(feature = "fleet")]
mod fleet_security;
/// Shell completions and man pages from the clap definitions, with real bash and man.
mod generated;
/// Issue 13: connection floods, slow clients, descriptor limits, the control API's shape.
mod hardening;
/// Managed identity: tokens verified with the published JWKS, exact error bodies, cache, limits.
mod identity;
/// `/metadata/instance` bodies against the spec's real captures, and per-version goldens.
mod instance;
/// Host mode in real network namespaces: each VM sees only itself, strangers get nothing.
mod isolation;
/// Issue 14: unprivileged on port 80 with one capability; no writes outside the data directory.
mod least_privilege;
/// `/metadata/loadbalancer` per version and every §8.4 answer; `loadBalancer` validation.
mod loadbalancer;
/// The request journal, metrics moving with requests, the manual clock through the API.
mod observe;
/// Property tests: version monotonicity, arbitrary paths.
mod properties;
/// Issue 14: a read-only data directory, store file or key directory: refused, or not ready.
mod read_only;
/// The ready line, `--ready-file` and `READY=1` for systemd: starting azimds on port 0.
mod ready;
/// `/metadata/reprovisiondata` and the assign action (control API and CLI).
mod reprovision;
/// Request rules: headers, api-version, query parameters, methods, paths, throttling.
mod rules;
/// Scheduled events: every rule of spec §6 on a paused clock, restart, hooks, definitions.
mod scheduled;
/// The secret-free-logs check every server of the suite runs when dropped.
mod secrets;
/// Issue 13: a full disk refuses writes with 503 and heals without a restart (tmpfs, root).
mod store_failure;
/// Issue 11: `azimds store export` / `import`, redb → etcd → redb with nothing lost.
mod store_transfer;
/// The WireServer companion: goal state, health reports per VM, the Host GA Plugin, isolation.
mod wireserver;

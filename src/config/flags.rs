//! The flags of `azimds serve` (clap): each one also reads an `AZIMDS_*` environment variable.
//! Their help texts are what `azimds serve --help` prints.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::parse::{
    ClockMode, ControlAddress, LogFormat, parse_caller_mode, parse_clock, parse_control,
    parse_duration, parse_lifetime, parse_log_format, parse_log_level, parse_timeout,
};
use crate::config::store::StoreArgs;
use crate::snapshot::CallerMode;

/// Flags of `azimds serve`. Every flag also reads an `AZIMDS_*` environment variable and a key
/// of the same name in the `--config` file.
#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below, keyed by flag name without the dashes (e.g.
    /// listen, vms, rate-limit, token-lifetime). Flags and environment variables override it.
    #[arg(long, env = "AZIMDS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Guest-plane address to listen on; repeat for several (e.g. 169.254.169.254:80).
    /// The environment variable takes a comma-separated list. [default: 127.0.0.1:16925]
    #[arg(
        long,
        env = "AZIMDS_LISTEN",
        value_name = "ADDR",
        value_delimiter = ','
    )]
    pub listen: Vec<SocketAddr>,

    /// WireServer address to listen on (e.g. 168.63.129.16:80): the goal state, health reports
    /// and telemetry that Azure images' provisioning agents (cloud-init, waagent, azure-init)
    /// need besides IMDS, for the same VMs and caller resolution. [default: off]
    #[arg(long, env = "AZIMDS_WIRESERVER_LISTEN", value_name = "ADDR")]
    pub wireserver_listen: Option<SocketAddr>,

    /// Host GA Plugin address (waagent's status and vmSettings channel).
    /// [default: the --wireserver-listen address on port 32526]
    #[arg(long, env = "AZIMDS_HGAP_LISTEN", value_name = "ADDR")]
    pub hgap_listen: Option<SocketAddr>,

    /// VM definitions (JSON or YAML; see README "VM definition file"). Without it, azimds
    /// serves a built-in demo VM.
    #[arg(long, env = "AZIMDS_VMS", value_name = "FILE")]
    pub vms: Option<PathBuf>,

    /// Directory for azimds's state (created owner-only if missing).
    /// [default: $XDG_STATE_HOME/azimds, else ~/.local/state/azimds]
    #[arg(long, env = "AZIMDS_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Requests per second allowed per VM before 429; 0 turns throttling off. [default: 5]
    #[arg(long, env = "AZIMDS_RATE_LIMIT", value_name = "N")]
    pub rate_limit: Option<u32>,

    /// How a request's source address picks its VM: `single` (every caller is the one VM) or
    /// `source-address` (the address must be in a VM's `callers`; others get the connection
    /// closed). [default: single]
    #[arg(long, env = "AZIMDS_CALLERS", value_name = "MODE", value_parser = parse_caller_mode)]
    pub callers: Option<CallerMode>,

    /// Control API address: a loopback TCP address (bearer token from the data directory's
    /// control-token file) or `unix:/path/to.sock` (no token; protect it with file
    /// permissions). [default: 127.0.0.1:16926]
    #[arg(long, env = "AZIMDS_CONTROL", value_name = "ADDR", value_parser = parse_control)]
    pub control: Option<ControlAddress>,

    /// Worker threads of the async runtime. [default: number of CPUs]
    #[arg(long, env = "AZIMDS_WORKERS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,

    /// Lifetime of managed-identity tokens: seconds, or a number with s, m, h or d
    /// (60 s to 7 d). [default: 24h, as Azure]
    #[arg(long, env = "AZIMDS_TOKEN_LIFETIME", value_name = "DURATION", value_parser = parse_lifetime)]
    pub token_lifetime: Option<u64>,

    /// Identity requests per second allowed per VM before 429; 0 turns it off. [default: 20]
    #[arg(long, env = "AZIMDS_IDENTITY_RATE_LIMIT", value_name = "N")]
    pub identity_rate_limit: Option<u32>,

    /// Identity requests in flight allowed per VM before 429; 0 turns it off. [default: 5]
    #[arg(long, env = "AZIMDS_IDENTITY_CONCURRENCY", value_name = "N")]
    pub identity_concurrency: Option<u32>,

    /// Where scheduled-event transitions (approved, started, completed, canceled) and WireServer
    /// health reports are reported: an http:// URL (JSON POST) or a shell command (JSON on
    /// stdin). Retried, never blocking.
    #[arg(long, env = "AZIMDS_EVENT_HOOK", value_name = "URL|COMMAND")]
    pub event_hook: Option<String>,

    /// Notice given to Terminate events (Azure: user-configurable 5-15 min). [default: 5m]
    #[arg(long, env = "AZIMDS_TERMINATE_NOTICE", value_name = "DURATION", value_parser = parse_duration)]
    pub terminate_notice: Option<u64>,

    /// How long a Started event stays before it is removed, when its DurationInSeconds gives no
    /// length. [default: 60s]
    #[arg(long, env = "AZIMDS_EVENT_COMPLETION", value_name = "DURATION", value_parser = parse_duration)]
    pub event_completion: Option<u64>,

    /// Delay of each VM's first scheduled-events request, as Azure's activation (up to 2 min).
    /// [default: 0, off]
    #[arg(long, env = "AZIMDS_EVENTS_FIRST_CALL_DELAY", value_name = "DURATION", value_parser = parse_duration)]
    pub events_first_call_delay: Option<u64>,

    /// Guest connections open at once, all VMs together; past it new ones are closed
    /// unanswered. [default: derived from the file-descriptor limit, leaving room for the
    /// control API and the store]
    #[arg(long, env = "AZIMDS_MAX_CONNECTIONS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,

    /// Guest connections open at once from one source address (one VM) in source-address
    /// mode. [default: 32]
    #[arg(long, env = "AZIMDS_MAX_CONNECTIONS_PER_CALLER", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_caller: Option<u32>,

    /// Attested documents: sign with this CA-issued leaf certificate (PEM) instead of the
    /// generated CA's leaves. Needs --attested-key and --attested-chain; the leaf should be
    /// named like Azure's (CN=metadata.azure.com). [default: a generated CA, kept in the data
    /// directory's keys/attested]
    #[arg(long, env = "AZIMDS_ATTESTED_CERT", value_name = "FILE", requires_all = ["attested_key", "attested_chain"])]
    pub attested_cert: Option<PathBuf>,

    /// The private key (PEM, RSA) of --attested-cert.
    #[arg(
        long,
        env = "AZIMDS_ATTESTED_KEY",
        value_name = "FILE",
        requires = "attested_cert"
    )]
    pub attested_key: Option<PathBuf>,

    /// The certificates (PEM) that verify --attested-cert: intermediates and/or the root
    /// relying parties trust; served at the control API's /attested/ca.pem.
    #[arg(
        long,
        env = "AZIMDS_ATTESTED_CHAIN",
        value_name = "FILE",
        requires = "attested_cert"
    )]
    pub attested_chain: Option<PathBuf>,

    /// The "CA Issuers" URL written into generated attested leaves, where relying parties
    /// download the issuing CA (DER), as Microsoft's samples do; empty for none.
    /// [default: http://169.254.169.254/metadata/attested/ca.cer? (the guest listener)]
    #[arg(long, env = "AZIMDS_ATTESTED_ISSUER_URL", value_name = "URL")]
    pub attested_issuer_url: Option<String>,

    /// How long a guest connection may wait for a request head: an idle keep-alive
    /// connection, or a client that stops mid-request, is closed after it. [default: 30s]
    #[arg(long, env = "AZIMDS_IDLE_TIMEOUT", value_name = "DURATION", value_parser = parse_timeout)]
    pub idle_timeout: Option<u64>,

    /// Where time comes from: `system`, or `manual` for development and CI: the clock starts
    /// at the system time and moves only when told (`azimds clock advance 10m`, `azimds clock
    /// set TIME`); scheduled events, token lifetimes, throttles and fault windows all follow
    /// it. [default: system]
    #[arg(long, env = "AZIMDS_CLOCK", value_name = "system|manual", value_parser = parse_clock)]
    pub clock: Option<ClockMode>,

    /// Guest requests kept per VM in the request journal (`azimds journal VM`); 0 turns the
    /// journal off. [default: 64]
    #[arg(long, env = "AZIMDS_JOURNAL_SIZE", value_name = "N")]
    pub journal_size: Option<usize>,

    /// Log one line per guest request (target azimds::access: VM, method, endpoint,
    /// api-version, status, duration, fault).
    #[arg(long, env = "AZIMDS_ACCESS_LOG")]
    pub access_log: bool,

    /// Label metrics by VM too (azimds_vm_* series), for at most --metrics-per-vm-limit VMs.
    #[arg(long, env = "AZIMDS_METRICS_PER_VM")]
    pub metrics_per_vm: bool,

    /// VMs given their own per-VM series (the first to make requests); the rest are summed
    /// under vm="_other". [default: 100]
    #[arg(long, env = "AZIMDS_METRICS_PER_VM_LIMIT", value_name = "N")]
    pub metrics_per_vm_limit: Option<usize>,

    /// Log format: `text` or `json` (one object per line). [default: text]
    #[arg(long, env = "AZIMDS_LOG_FORMAT", value_name = "text|json", value_parser = parse_log_format)]
    pub log_format: Option<LogFormat>,

    /// Log level (error, warn, info, debug, trace) or filter directives such as
    /// `info,azimds::access=off`. [default: info]
    #[arg(long, env = "AZIMDS_LOG", value_name = "LEVEL", value_parser = parse_log_level)]
    pub log_level: Option<String>,

    /// When ready, also write the ready line (the JSON printed on stdout: bound guest and
    /// control addresses, pid, …) to this file, atomically; a stale one is removed at start.
    #[arg(long, env = "AZIMDS_READY_FILE", value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
}

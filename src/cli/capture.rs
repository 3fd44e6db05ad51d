//! `azimds capture` and `azimds replay`: flags and output. The work is in
//! [`crate::capture`] and [`crate::replay`].

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::capture::{self, pack::Pack};
use crate::cli::Failure;
use crate::config::parse_timeout;
use crate::replay::{self, Replay};

/// Flags of `azimds capture`.
#[derive(Debug, Clone, clap::Args)]
pub struct CaptureArgs {
    /// The IMDS to capture (base URL, plain http). Inside an Azure VM the default is the real
    /// one.
    #[arg(long, value_name = "URL", default_value = capture::DEFAULT_URL)]
    pub url: String,
    /// Directory to write the fixture pack (pack.json, one file per response) and vms.yaml
    /// into; created if missing, refused if it already holds a pack.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Keep secrets and personal values: userData, customData, SSH public keys, the token and
    /// the attested document's signature (emptied by default).
    #[arg(long)]
    pub no_scrub: bool,
    /// Requests per second at most; 0 sends them back to back. Azure throttles above 5.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub rate: u32,
    /// How long one answer may take (scheduled events get at least 150 s: their first call
    /// may take 2 minutes on Azure).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub timeout: u64,
}

/// Flags of `azimds replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// A fixture pack written by `azimds capture`.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Address to serve on; repeat for several. [default: 127.0.0.1:16925]
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    pub listen: Vec<SocketAddr>,
}

/// Runs a capture and prints what it wrote.
pub async fn capture(args: CaptureArgs, out: &mut dyn std::io::Write) -> Result<(), Failure> {
    let options = capture::Options {
        url: args.url.trim_end_matches('/').to_string(),
        out: args.out.clone(),
        keep_secrets: args.no_scrub,
        requests_per_second: args.rate,
        timeout: Duration::from_secs(args.timeout),
    };
    let summary = capture::capture(&options).await.map_err(|e| {
        let code = match e {
            capture::Error::Url { .. } => 2,
            capture::Error::Request(_) | capture::Error::NotImds { .. } => 6,
            _ => 1,
        };
        Failure::new(code, e.to_string())
    })?;
    let scrubbed = if args.no_scrub {
        "nothing scrubbed (--no-scrub)".to_string()
    } else if summary.scrubbed.is_empty() {
        "nothing needed scrubbing".to_string()
    } else {
        format!("emptied: {}", summary.scrubbed.join(", "))
    };
    writeln!(
        out,
        "captured {} responses ({} api-versions) from {} into {}; {scrubbed}\nserve the VM: azimds serve --vms {}\nreplay the answers: azimds replay {}",
        summary.responses,
        summary.versions,
        options.url,
        args.out.display(),
        args.out.join(capture::pack::VMS_FILE).display(),
        args.out.display(),
    )
    .map_err(|e| Failure::new(1, e.to_string()))
}

/// Loads the pack, binds, calls `ready` with the bound addresses and how many responses are
/// served, then serves until `shutdown`.
pub async fn replay(
    args: ReplayArgs,
    ready: impl FnOnce(&[SocketAddr], usize) -> std::io::Result<()>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Failure> {
    let pack = Pack::read(&args.dir).map_err(|e| Failure::new(1, e.to_string()))?;
    let replay = Arc::new(Replay::new(pack));
    let listen = if args.listen.is_empty() {
        vec![
            crate::config::DEFAULT_LISTEN
                .parse()
                .expect("the default address parses"),
        ]
    } else {
        args.listen
    };
    let mut listeners = Vec::new();
    for address in &listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| Failure::new(1, format!("cannot listen on {address}: {e}")))?;
        listeners.push(listener);
    }
    let bound: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    tracing::info!(listen = ?bound, responses = replay.len(), pack = %args.dir.display(), "azimds replay listening");
    ready(&bound, replay.len()).map_err(|e| Failure::new(1, e.to_string()))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        let mut stopped = stopped.clone();
        tasks.spawn(replay::serve(listener, Arc::clone(&replay), async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
    }
    shutdown.await;
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

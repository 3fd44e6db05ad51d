//! Ceiling baseline for the guest-plane benchmark (`scripts/bench.sh`).
//!
//! A minimal raw hyper 1 server that serves fixed bytes, doing about the same
//! per-request work as azimds minus everything azimds actually decides:
//! it checks the `Metadata: true` header (400 with Azure's error body otherwise),
//! picks one of two pre-loaded bodies by path prefix, and sets
//! `Content-Type`, `Server` and (implicitly, via `Full`) `Content-Length`.
//! hyper adds `Date` as it does for azimds.
//!
//! ```text
//! cargo build --release --example ceiling
//! WORKERS=1 target/release/examples/ceiling --listen 127.0.0.1:8081 \
//!     --body-json instance.json --body-text vmid.txt
//! ```
//!
//! * `/metadata/instance/compute/vmId...` -> the text file, `text/plain; charset=utf-8`
//! * anything else -> the JSON file, `application/json; charset=utf-8`
//!
//! `WORKERS` (env, default 1): number of tokio worker threads; `0` selects the
//! current-thread runtime. TCP_NODELAY is set on every accepted socket.
//! Prints `listening on ADDR` once bound (so `--listen 127.0.0.1:0` is usable).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue, SERVER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const SERVER_HEADER: &str = "IMDS/150.870.65.1854";
const JSON_CT: &str = "application/json; charset=utf-8";
const TEXT_CT: &str = "text/plain; charset=utf-8";
const TEXT_PREFIX: &str = "/metadata/instance/compute/vmId";
const MISSING_HEADER_BODY: &[u8] =
    br#"{"error":"Bad request. Required metadata header not specified"}"#;

struct Bodies {
    json: Bytes,
    text: Bytes,
}

struct Args {
    listen: SocketAddr,
    body_json: String,
    body_text: String,
}

fn usage() -> ! {
    eprintln!(
        "usage: ceiling --listen ADDR:PORT --body-json FILE --body-text FILE\n\
         env WORKERS=N (default 1; 0 = current_thread runtime)"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut listen = None;
    let mut body_json = None;
    let mut body_text = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .unwrap_or_else(|| usage())
        };
        match flag.as_str() {
            "--listen" => {
                let v = value();
                listen = Some(v.parse::<SocketAddr>().unwrap_or_else(|e| {
                    eprintln!("ceiling: bad --listen {v:?}: {e}");
                    std::process::exit(2)
                }));
            }
            "--body-json" => body_json = Some(value()),
            "--body-text" => body_text = Some(value()),
            "-h" | "--help" => usage(),
            other => {
                eprintln!("ceiling: unknown argument {other:?}");
                usage()
            }
        }
    }
    match (listen, body_json, body_text) {
        (Some(listen), Some(body_json), Some(body_text)) => Args {
            listen,
            body_json,
            body_text,
        },
        _ => usage(),
    }
}

fn read_body(path: &str) -> Bytes {
    match std::fs::read(path) {
        Ok(b) => Bytes::from(b),
        Err(e) => {
            eprintln!("ceiling: cannot read {path}: {e}");
            std::process::exit(2)
        }
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(SERVER, HeaderValue::from_static(SERVER_HEADER));
    resp
}

fn handle(bodies: &Bodies, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let ok = req
        .headers()
        .get("metadata")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    if !ok {
        return respond(
            StatusCode::BAD_REQUEST,
            JSON_CT,
            Bytes::from_static(MISSING_HEADER_BODY),
        );
    }
    if req.uri().path().starts_with(TEXT_PREFIX) {
        respond(StatusCode::OK, TEXT_CT, bodies.text.clone())
    } else {
        respond(StatusCode::OK, JSON_CT, bodies.json.clone())
    }
}

async fn serve(args: Args, bodies: Arc<Bodies>) {
    let listener = TcpListener::bind(args.listen).await.unwrap_or_else(|e| {
        eprintln!("ceiling: cannot bind {}: {e}", args.listen);
        std::process::exit(1)
    });
    let local = listener.local_addr().expect("local_addr");
    println!("listening on {local}");
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                eprintln!("ceiling: accept: {e}");
                tokio::task::yield_now().await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let bodies = Arc::clone(&bodies);
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let resp = handle(&bodies, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            // Connection errors (client reset at the end of a wrk run) are expected.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn main() {
    let args = parse_args();
    let bodies = Arc::new(Bodies {
        json: read_body(&args.body_json),
        text: read_body(&args.body_text),
    });
    let workers: usize = match std::env::var("WORKERS") {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            eprintln!("ceiling: WORKERS must be a number, got {v:?}");
            std::process::exit(2)
        }),
        Err(_) => 1,
    };
    let rt = if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    rt.block_on(serve(args, bodies));
}

//! Write-to-visible latency for the scale benchmark (`scripts/bench-scale.sh`): how long after a
//! control-API `PUT` is acknowledged the changed value is served on the guest plane.
//!
//! ```text
//! write_visible --control 127.0.0.1:18391 --data DIR --guest 127.0.0.1:18390 \
//!     --vm vm-local --samples 500
//! ```
//!
//! Each sample: read nothing, change `compute.tags` of VM `--vm` to a fresh value, `PUT` the
//! whole entry (bearer token from `DIR/control-token`), note the time the acknowledgement
//! arrives, then poll `compute/tags?format=text` on the guest plane over one keep-alive
//! connection (from this host's address, so the VM must list it in `callers`) in a tight loop
//! until the new value is served. Reported per sample:
//!
//! * `ack_ms`: `PUT` sent → acknowledgement received (store commit + publish + HTTP);
//! * `visible_after_ack_ms`: acknowledgement → first guest response with the new value. The
//!   first poll starts after the acknowledgement, so this is an upper bound that includes one
//!   guest round trip;
//! * `polls`: guest requests needed (1 means the first request after the ack saw the change).
//!
//! Prints one JSON object: the samples' percentiles and the raw samples.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use azimds::client::ControlClient;
use azimds::config::ControlAddress;
use azimds::control::token::ControlToken;

struct Args {
    control: SocketAddr,
    data: PathBuf,
    guest: SocketAddr,
    vm: String,
    samples: usize,
    warmup: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: write_visible --control ADDR --data DIR --guest ADDR --vm ID [--samples N] [--warmup N]"
    );
    std::process::exit(2);
}

fn args() -> Args {
    let mut args = std::env::args().skip(1);
    let (mut control, mut data, mut guest, mut vm) = (None, None, None, None);
    let (mut samples, mut warmup) = (500, 20);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--control" => control = value.parse().ok(),
            "--data" => data = Some(PathBuf::from(value)),
            "--guest" => guest = value.parse().ok(),
            "--vm" => vm = Some(value),
            "--samples" => samples = value.parse().unwrap_or_else(|_| usage()),
            "--warmup" => warmup = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    match (control, data, guest, vm) {
        (Some(control), Some(data), Some(guest), Some(vm)) => Args {
            control,
            data,
            guest,
            vm,
            samples,
            warmup,
        },
        _ => usage(),
    }
}

type Guest = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn guest_connection(address: SocketAddr) -> Guest {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to the guest plane");
    stream.set_nodelay(true).unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}

async fn guest_tags(guest: &mut Guest) -> Bytes {
    let request =
        Request::get("/metadata/instance/compute/tags?api-version=2021-02-01&format=text")
            .header("host", "169.254.169.254")
            .header("metadata", "true")
            .body(Empty::new())
            .unwrap();
    let response = guest.send_request(request).await.expect("guest request");
    assert_eq!(response.status(), 200, "guest plane answered {response:?}");
    response.into_body().collect().await.unwrap().to_bytes()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(values: &[f64]) -> Value {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    json!({
        "p50": percentile(&sorted, 50.0),
        "p90": percentile(&sorted, 90.0),
        "p99": percentile(&sorted, 99.0),
        "max": sorted[sorted.len() - 1],
        "mean": sorted.iter().sum::<f64>() / sorted.len() as f64,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = args();
    let token = ControlToken::read(&args.data).expect("read DIR/control-token");
    let control = ControlClient::new(ControlAddress::Tcp(args.control), Some(token));
    let path = format!("/v1/vms/{}", args.vm);
    let reply = control
        .send(Method::GET, &path, None, &[])
        .await
        .expect("GET the VM");
    assert_eq!(reply.status, 200, "GET {path}");
    let mut entry: Value = serde_json::from_slice(&reply.body).unwrap();
    let mut guest = guest_connection(args.guest).await;
    let before = guest_tags(&mut guest).await;
    assert_eq!(
        before.as_ref(),
        entry["instance"]["compute"]["tags"]
            .as_str()
            .unwrap_or("")
            .as_bytes(),
        "the guest connection is served as {} (its callers must include this host)",
        args.vm
    );

    let (mut ack, mut visible, mut polls) = (Vec::new(), Vec::new(), Vec::new());
    let run = fastrand::u32(..);
    for sample in 0..args.warmup + args.samples {
        let tags = format!("bench:write-visible;run:{run};sample:{sample}");
        entry["instance"]["compute"]["tags"] = json!(tags);
        // tagsList is derived from tags when left out.
        if let Some(compute) = entry["instance"]["compute"].as_object_mut() {
            compute.remove("tagsList");
        }
        let body = serde_json::to_vec(&entry).unwrap();
        let sent = Instant::now();
        let reply = control
            .send(Method::PUT, &path, Some(body), &[])
            .await
            .expect("PUT the VM");
        let acked = Instant::now();
        assert!(reply.status.is_success(), "PUT {path}: {}", reply.status);
        let mut count = 0u32;
        let seen = loop {
            count += 1;
            if guest_tags(&mut guest).await.as_ref() == tags.as_bytes() {
                break Instant::now();
            }
            assert!(
                acked.elapsed() < Duration::from_secs(5),
                "sample {sample}: the change is not visible 5 s after its acknowledgement"
            );
        };
        if sample >= args.warmup {
            ack.push((acked - sent).as_secs_f64() * 1e3);
            visible.push((seen - acked).as_secs_f64() * 1e3);
            polls.push(f64::from(count));
        }
    }
    let first_poll = polls.iter().filter(|&&p| p == 1.0).count();
    println!(
        "{}",
        json!({
            "vm": args.vm,
            "samples": args.samples,
            "warmup": args.warmup,
            "ack_ms": summary(&ack),
            "visible_after_ack_ms": summary(&visible),
            "polls": summary(&polls),
            "visible_on_first_poll": first_poll,
            "raw": {"ack_ms": ack, "visible_after_ack_ms": visible, "polls": polls},
        })
    );
}

//! The soak's load (`scripts/soak.sh`, issue 14 item 3): several VMs at once at saturation on
//! the instance, token and scheduled-events endpoints, while the control API writes VMs and
//! events and a fault rule toggles; the server's resident set sampled every second.
//!
//! ```text
//! soak_load --guest ADDR --control ADDR --token-file PATH --pid PID --vms N
//!           [--connections 4] [--seconds 600] [--out DIR]
//! ```
//!
//! VM `i` (1..=N) is `vm-i`, calling from 127.4.0.i, as `scripts/soak.sh` defines them. Each
//! VM keeps `--connections` keep-alive connections from its own address, each sending the
//! next request as soon as the last is answered: 60 % `/metadata/instance`, 20 % tokens (one
//! in 20 with `bypass_cache=true`, so keys sign), 20 % `/metadata/scheduledevents`.
//! Meanwhile one task, every 100 ms, rewrites a loaded VM's definition (new tags) or puts or
//! deletes a VM nobody loads, every 2 s schedules or cancels an event for `vm-2`, and every
//! 5 s toggles a fault rule (`vm-1`, status 503).
//!
//! Expected: 200 everywhere, 503 for `vm-1` while the rule is on (either while it toggles).
//! Anything else, a failed connection included, is unexpected. Writes `rss.csv` (seconds,
//! RSS KiB, requests answered in that second, fault on) and `summary.json` into `--out`, prints
//! the summary, and exits 1 if anything was unexpected.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

struct Args {
    guest: SocketAddr,
    control: SocketAddr,
    token: String,
    pid: u32,
    vms: u32,
    connections: u32,
    seconds: u64,
    out: PathBuf,
}

fn args() -> Args {
    let mut given = std::env::args().skip(1);
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    while let Some(flag) = given.next() {
        let value = given
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        found.insert(flag, value);
    }
    let get = |name: &str| {
        found
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} is required"))
    };
    let token_file = get("--token-file");
    Args {
        guest: get("--guest").parse().expect("--guest ADDR:PORT"),
        control: get("--control").parse().expect("--control ADDR:PORT"),
        token: std::fs::read_to_string(&token_file)
            .expect("--token-file readable")
            .trim()
            .to_string(),
        pid: get("--pid").parse().expect("--pid N"),
        vms: get("--vms").parse().expect("--vms N"),
        connections: found.get("--connections").map_or(4, |v| v.parse().unwrap()),
        seconds: found.get("--seconds").map_or(600, |v| v.parse().unwrap()),
        out: found
            .get("--out")
            .map_or_else(|| PathBuf::from("target/soak"), PathBuf::from),
    }
}

fn caller(vm: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, 4, 0, vm as u8)
}

/// VM `vm`'s definition as `scripts/soak.sh` writes it, with `tags`.
fn definition(vm: u32, tags: &str) -> Value {
    json!({
        "callers": [caller(vm).to_string()],
        "instance": {"compute": {"name": format!("vm-{vm}"), "location": "westeurope", "tags": tags}},
        "identities": {"tenantId": TENANT, "systemAssigned": {
            "clientId": format!("5a1e8c3b-6f2d-4b7a-9e0c-{vm:012x}"),
            "objectId": format!("6b2f9d4c-7a3e-4c8b-8f1d-{vm:012x}"),
        }},
    })
}

/// The fault rule's state: on or off, and a generation that is odd while it toggles.
#[derive(Default)]
struct Fault {
    on: AtomicBool,
    generation: AtomicU64,
}

/// Counts by (endpoint, status); status 0 is a failed connection or a malformed answer.
#[derive(Default)]
struct Tally {
    statuses: Mutex<BTreeMap<(String, u16), u64>>,
    unexpected: Mutex<BTreeMap<String, u64>>,
    answered: AtomicU64,
}

impl Tally {
    fn count(&self, endpoint: &str, status: u16, expected: bool, vm: u32) {
        *self
            .statuses
            .lock()
            .unwrap()
            .entry((endpoint.to_string(), status))
            .or_default() += 1;
        // vm 0: the operator's control requests, not guest load.
        if status != 0 && vm != 0 {
            self.answered.fetch_add(1, Ordering::Relaxed);
        }
        if !expected {
            *self
                .unexpected
                .lock()
                .unwrap()
                .entry(format!("vm-{vm} {endpoint} {status}"))
                .or_default() += 1;
        }
    }
}

/// One keep-alive connection's next answer: the status, or `None` if the connection failed.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buffer: &mut Vec<u8>,
) -> Option<(u16, bool)> {
    stream.write_all(request).await.ok()?;
    buffer.clear();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buffer[..head_end])
        .ok()?
        .to_ascii_lowercase();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let keep_alive = !head.contains("connection: close");
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some((status, keep_alive))
}

async fn connect(from: Ipv4Addr, to: SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::from((from, 0))).ok()?;
    let stream = socket.connect(to).await.ok()?;
    stream.set_nodelay(true).ok()?;
    Some(stream)
}

/// One connection of VM `vm`, sending until `deadline`.
async fn guest(
    vm: u32,
    to: SocketAddr,
    deadline: Instant,
    fault: Arc<Fault>,
    tally: Arc<Tally>,
    seed: u64,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut buffer = Vec::with_capacity(16 * 1024);
    let mut stream = None;
    while Instant::now() < deadline {
        if stream.is_none() {
            stream = connect(caller(vm), to).await;
            if stream.is_none() {
                tally.count("connect", 0, false, vm);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        }
        let roll = rng.u32(0..100);
        let (endpoint, path) = if roll < 60 {
            ("instance", "/metadata/instance?api-version=2021-02-01")
        } else if roll < 80 {
            if rng.u32(0..20) == 0 {
                (
                    "token",
                    "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F&bypass_cache=true",
                )
            } else {
                (
                    "token",
                    "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F",
                )
            }
        } else {
            (
                "scheduledevents",
                "/metadata/scheduledevents?api-version=2020-07-01",
            )
        };
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\n\r\n");
        // The generation first: if it is even and unchanged at the answer, `on` held throughout.
        let generation = fault.generation.load(Ordering::Acquire);
        let on_before = fault.on.load(Ordering::Acquire);
        let answer = exchange(stream.as_mut().unwrap(), request.as_bytes(), &mut buffer).await;
        let steady =
            generation.is_multiple_of(2) && fault.generation.load(Ordering::Acquire) == generation;
        let status = answer.map_or(0, |(status, _)| status);
        let expected = match (vm, steady) {
            (1, true) if on_before => status == 503,
            (1, false) => status == 200 || status == 503,
            _ => status == 200,
        };
        tally.count(endpoint, status, expected, vm);
        if !answer.is_some_and(|(_, keep_alive)| keep_alive) {
            stream = None;
        }
    }
}

/// The control API over one connection per request: status and body.
async fn control(args: &Args, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: azimds\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        args.token,
        body.len()
    );
    let Ok(mut stream) = TcpStream::connect(args.control).await else {
        return (0, Value::Null);
    };
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, Value::Null);
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (0, Value::Null);
    };
    let head = String::from_utf8_lossy(&answer[..split]);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        serde_json::from_slice(&answer[split + 4..]).unwrap_or(Value::Null),
    )
}

/// VM writes, events and the fault toggle until `deadline`.
async fn operator(args: Arc<Args>, deadline: Instant, fault: Arc<Fault>, tally: Arc<Tally>) {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut tick: u64 = 0;
    let mut rule: Option<String> = None;
    let mut event: Option<String> = None;
    let expect = |what: &str, status: u16, ok: bool| tally.count(what, status, ok, 0);
    while Instant::now() < deadline {
        tick += 1;
        if tick.is_multiple_of(50) {
            // Odd generations: the rule is changing, a request then may see either state.
            fault.generation.fetch_add(1, Ordering::AcqRel);
            match rule.take() {
                None => {
                    let add = json!({"vm": "vm-1", "status": 503});
                    let (status, body) = control(&args, "POST", "/v1/faults", Some(&add)).await;
                    expect("control:fault-add", status, status == 201);
                    rule = body["id"].as_str().map(str::to_string);
                    fault.on.store(true, Ordering::Release);
                }
                Some(id) => {
                    let path = format!("/v1/faults/{id}");
                    let (status, _) = control(&args, "DELETE", &path, None).await;
                    expect(
                        "control:fault-remove",
                        status,
                        status == 200 || status == 204,
                    );
                    fault.on.store(false, Ordering::Release);
                }
            }
            fault.generation.fetch_add(1, Ordering::AcqRel);
        } else if tick.is_multiple_of(20) {
            match event.take() {
                None => {
                    let request = json!({"type": "Freeze", "vms": ["vm-2"], "noticeSeconds": 3600});
                    let (status, body) = control(&args, "POST", "/v1/events", Some(&request)).await;
                    expect("control:event-schedule", status, status == 201);
                    event = body["id"].as_str().map(str::to_string);
                }
                Some(id) => {
                    let (status, _) =
                        control(&args, "POST", &format!("/v1/events/{id}/cancel"), None).await;
                    expect("control:event-cancel", status, status == 200);
                }
            }
        } else if rng.bool() {
            let vm = rng.u32(1..=args.vms);
            let tags = format!("soak:{tick}");
            let (status, _) = control(
                &args,
                "PUT",
                &format!("/v1/vms/vm-{vm}"),
                Some(&definition(vm, &tags)),
            )
            .await;
            expect("control:vm-rewrite", status, status == 200);
        } else {
            let n = rng.u32(0..20);
            let path = format!("/v1/vms/churn-{n}");
            let (what, (status, _)) = if rng.bool() {
                let body = json!({"callers": [format!("127.5.0.{}", n + 1)], "instance": {"compute": {"name": format!("churn-{n}")}}});
                (
                    "control:vm-put",
                    control(&args, "PUT", &path, Some(&body)).await,
                )
            } else {
                (
                    "control:vm-delete",
                    control(&args, "DELETE", &path, None).await,
                )
            };
            expect(what, status, matches!(status, 200 | 201 | 204 | 404));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(id) = rule {
        let _ = control(&args, "DELETE", &format!("/v1/faults/{id}"), None).await;
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Arc::new(args());
    std::fs::create_dir_all(&args.out).expect("--out is creatable");
    let began = Instant::now();
    let deadline = began + Duration::from_secs(args.seconds);
    let (fault, tally) = (Arc::new(Fault::default()), Arc::new(Tally::default()));
    let mut tasks = Vec::new();
    for vm in 1..=args.vms {
        for c in 0..args.connections {
            let seed = u64::from(vm) << 32 | u64::from(c);
            tasks.push(tokio::spawn(guest(
                vm,
                args.guest,
                deadline,
                Arc::clone(&fault),
                Arc::clone(&tally),
                seed,
            )));
        }
    }
    tasks.push(tokio::spawn(operator(
        Arc::clone(&args),
        deadline,
        Arc::clone(&fault),
        Arc::clone(&tally),
    )));

    let mut csv = String::from("seconds,rss_kib,answered_per_second,fault_on\n");
    let mut samples = Vec::new();
    let mut last_answered = 0;
    let mut next = began;
    while Instant::now() < deadline {
        next += Duration::from_secs(1);
        tokio::time::sleep_until(next.into()).await;
        let rss = rss_kib(args.pid);
        let answered = tally.answered.load(Ordering::Relaxed);
        let on = fault.on.load(Ordering::Relaxed);
        let seconds = began.elapsed().as_secs_f64();
        csv.push_str(&format!(
            "{seconds:.1},{rss},{},{}\n",
            answered - last_answered,
            u8::from(on)
        ));
        samples.push(rss);
        last_answered = answered;
    }
    for task in tasks {
        task.await.expect("a load task failed");
    }
    std::fs::write(args.out.join("rss.csv"), csv).expect("rss.csv written");

    let statuses: BTreeMap<String, u64> = tally
        .statuses
        .lock()
        .unwrap()
        .iter()
        .map(|((endpoint, status), n)| (format!("{endpoint} {status}"), *n))
        .collect();
    let unexpected = tally.unexpected.lock().unwrap().clone();
    let answered = tally.answered.load(Ordering::Relaxed);
    let max = samples.iter().copied().max().unwrap_or(0);
    let summary = json!({
        "seconds": args.seconds,
        "vms": args.vms,
        "connections_per_vm": args.connections,
        "answered": answered,
        "answered_per_second": answered as f64 / args.seconds as f64,
        "statuses": statuses,
        "unexpected": unexpected,
        "rss_kib": {
            "first": samples.first(),
            "last": samples.last(),
            "max": max,
            "min": samples.iter().copied().min(),
        },
    });
    let text = serde_json::to_string_pretty(&summary).unwrap();
    std::fs::write(args.out.join("summary.json"), &text).expect("summary.json written");
    println!("{text}");
    if !unexpected.is_empty() {
        std::process::exit(1);
    }
}

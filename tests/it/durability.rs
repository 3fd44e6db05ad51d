//! Crash durability of the control plane's writes, with the real binary: stream writes through
//! the control API, `SIGKILL` the server at a random moment while a write is in flight, restart
//! it on the same data directory, and check that every acknowledged write is there with the
//! acknowledged content and ETag, on the control API and on the guest plane. Three kill/restart
//! cycles on one store.
//!
//! A write whose acknowledgement never arrived (the one in flight at the kill) may or may not
//! have been committed; either outcome is accepted, nothing else is. Set `AZIMDS_TEST_SEED` to
//! replay a run (the seed is printed).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use azimds::client::ControlClient;
use azimds::config::ControlAddress;
use azimds::control::token::ControlToken;
use http::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Spawned, TempDir, spawn_azimds, test_seed};

const CYCLES: usize = 3;

/// The real binary in source-address mode on `data`, checked to have started without a
/// warning (a store that opens but has records it cannot read says so before listening).
fn start(data: &Path) -> Spawned {
    let server = spawn_azimds(data, &["--callers", "source-address"]);
    let problems: Vec<String> = server
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .cloned()
        .collect();
    assert!(
        problems.is_empty(),
        "start-up on {}: {problems:?}",
        data.display()
    );
    server
}

fn control_of(server: &Spawned) -> SocketAddr {
    // The bound address: `--control 127.0.0.1:0` is reported with its real port.
    server.control.parse().unwrap()
}

fn vms_of(server: &Spawned) -> usize {
    server.field("vms").parse().unwrap()
}

/// What the store must hold for one VM id.
#[derive(Clone, Debug, PartialEq)]
enum Expected {
    Present { etag: String, entry: Value },
    Deleted,
}

#[derive(Clone, Debug)]
enum Op {
    Put { id: String, entry: Value },
    Delete { id: String },
}

impl Op {
    fn id(&self) -> &str {
        match self {
            Op::Put { id, .. } | Op::Delete { id } => id,
        }
    }
}

/// VM `n`'s caller address: 127.1.x.y, distinct per VM and reachable from this host.
fn caller(n: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8)
}

fn entry(n: u32, generation: u64, rng: &mut fastrand::Rng) -> Value {
    let id = format!("vm-{n}");
    // Random, incompressible filler so records span pages and a torn write cannot look valid.
    let filler: String = (0..rng.usize(256..2048))
        .map(|_| rng.alphanumeric())
        .collect();
    json!({
        "id": id,
        "callers": [caller(n).to_string()],
        "instance": {"compute": {
            "name": id,
            "tags": format!("generation:{generation}"),
            "userData": filler,
        }},
    })
}

/// Streams writes until the server stops answering; returns the acknowledged ones (with their
/// ETags, `None` for deletes) and the write that was in flight when the connection failed.
async fn stream_writes(
    client: ControlClient,
    rng: &mut fastrand::Rng,
    next_vm: &mut u32,
    existing: &mut Vec<u32>,
    generation: &mut u64,
) -> (Vec<(Op, Option<String>)>, Option<Op>) {
    let mut acked = Vec::new();
    loop {
        *generation += 1;
        let choice = rng.u32(0..10);
        let op = if existing.is_empty() || choice < 5 {
            *next_vm += 1;
            Op::Put {
                id: format!("vm-{next_vm}"),
                entry: entry(*next_vm, *generation, rng),
            }
        } else if choice < 9 {
            let n = existing[rng.usize(0..existing.len())];
            Op::Put {
                id: format!("vm-{n}"),
                entry: entry(n, *generation, rng),
            }
        } else {
            let n = existing[rng.usize(0..existing.len())];
            Op::Delete {
                id: format!("vm-{n}"),
            }
        };
        let path = format!("/v1/vms/{}", op.id());
        let result = match &op {
            Op::Put { entry, .. } => {
                let body = serde_json::to_vec(entry).unwrap();
                client.send(Method::PUT, &path, Some(body), &[]).await
            }
            Op::Delete { .. } => client.send(Method::DELETE, &path, None, &[]).await,
        };
        let Ok(reply) = result else {
            return (acked, Some(op));
        };
        assert!(
            reply.status.is_success(),
            "{op:?} answered {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        let n: u32 = op.id()["vm-".len()..].parse().unwrap();
        match &op {
            Op::Put { .. } => {
                assert!(
                    reply.etag.is_some(),
                    "a PUT acknowledgement carries an ETag"
                );
                if !existing.contains(&n) {
                    existing.push(n);
                }
            }
            Op::Delete { .. } => existing.retain(|&e| e != n),
        }
        acked.push((op, reply.etag));
    }
}

/// The VM's current state through the control API.
async fn read_back(client: &ControlClient, id: &str) -> Expected {
    let reply = client
        .send(Method::GET, &format!("/v1/vms/{id}"), None, &[])
        .await
        .unwrap();
    match reply.status.as_u16() {
        200 => Expected::Present {
            etag: reply.etag.expect("GET answers with an ETag"),
            entry: serde_json::from_slice(&reply.body).unwrap(),
        },
        404 => Expected::Deleted,
        other => panic!("GET /v1/vms/{id}: {other}"),
    }
}

/// `compute/tags` as the guest plane serves it to a connection from `source`, or `None` if the
/// connection is closed unanswered.
async fn guest_tags(guest: SocketAddr, source: Ipv4Addr) -> Option<String> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    let mut stream = socket.connect(guest).await.unwrap();
    let request = "GET /metadata/instance/compute/tags?api-version=2021-02-01&format=text HTTP/1.1\r\n\
                   Host: 169.254.169.254\r\nMetadata: true\r\nConnection: close\r\n\r\n";
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8(answer).unwrap();
    if answer.is_empty() {
        return None;
    }
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
    Some(body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_at_random_moments() {
    let began = Instant::now();
    let seed = test_seed("durability");
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = TempDir::new("durability");
    let data = dir.path().join("data");

    let mut model: BTreeMap<String, Expected> = BTreeMap::new();
    let mut etags = HashSet::new();
    let (mut next_vm, mut existing, mut generation) = (0u32, Vec::new(), 0u64);
    let mut server = start(&data);
    assert_eq!(
        vms_of(&server),
        0,
        "a fresh store in source-address mode has no VMs"
    );
    for cycle in 1..=CYCLES {
        let token = ControlToken::read(&data).expect("the server wrote its control token");
        let client = ControlClient::new(ControlAddress::Tcp(control_of(&server)), Some(token));
        // SIGKILL after a random delay, from another thread, while the writer keeps writing.
        let delay = Duration::from_millis(rng.u64(50..=400));
        let pid = server.child.id();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            let status = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        });
        let (acked, in_flight) = tokio::time::timeout(
            Duration::from_secs(10),
            stream_writes(
                client,
                &mut rng,
                &mut next_vm,
                &mut existing,
                &mut generation,
            ),
        )
        .await
        .expect("the writer stops when the server dies");
        killer.join().unwrap();
        let status = server.child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL, not exited");
        let in_flight = in_flight.expect("the stream ends with a write the kill interrupted");
        assert!(
            !acked.is_empty(),
            "cycle {cycle}: no write was acknowledged in {delay:?}; log:\n{}",
            server.log.lock().unwrap().join("\n")
        );
        eprintln!(
            "durability: cycle {cycle}: killed after {delay:?}, {} writes acknowledged, {:?} in flight",
            acked.len(),
            in_flight.id()
        );
        for (op, etag) in &acked {
            let state = match (op, etag) {
                (Op::Put { entry, .. }, Some(etag)) => {
                    assert!(etags.insert(etag.clone()), "ETag {etag} was given twice");
                    Expected::Present {
                        etag: etag.clone(),
                        entry: entry.clone(),
                    }
                }
                _ => Expected::Deleted,
            };
            model.insert(op.id().to_string(), state);
        }

        // Restart on the same data directory: the store opens, and holds every acknowledged write.
        server = start(&data);
        let token = ControlToken::read(&data).unwrap();
        let client = ControlClient::new(ControlAddress::Tcp(control_of(&server)), Some(token));
        let ready = client
            .send(Method::GET, "/readyz", None, &[])
            .await
            .unwrap();
        assert_eq!(ready.status, 200);
        let actual = read_back(&client, in_flight.id()).await;
        let before = model
            .get(in_flight.id())
            .cloned()
            .unwrap_or(Expected::Deleted);
        // The interrupted write: either not applied, or applied in full.
        let applied = match (&in_flight, &actual) {
            (Op::Put { entry, .. }, Expected::Present { entry: found, .. }) => found == entry,
            (Op::Delete { .. }, Expected::Deleted) => true,
            _ => false,
        };
        assert!(
            actual == before || applied,
            "cycle {cycle}: the interrupted {in_flight:?} left {actual:?}; before it: {before:?}"
        );
        if actual != before {
            if let Expected::Present { etag, .. } = &actual {
                assert!(etags.insert(etag.clone()), "ETag {etag} was given twice");
            }
            model.insert(in_flight.id().to_string(), actual.clone());
        }
        let n: u32 = in_flight.id()["vm-".len()..].parse().unwrap();
        match &actual {
            Expected::Present { .. } if !existing.contains(&n) => existing.push(n),
            Expected::Deleted => existing.retain(|&e| e != n),
            _ => {}
        }

        for (id, expected) in &model {
            assert_eq!(
                &read_back(&client, id).await,
                expected,
                "cycle {cycle}: {id} after restart"
            );
        }
        let present: BTreeSet<&str> = model
            .iter()
            .filter(|(_, e)| matches!(e, Expected::Present { .. }))
            .map(|(id, _)| id.as_str())
            .collect();
        let list = client
            .send(Method::GET, "/v1/vms", None, &[])
            .await
            .unwrap();
        let list: Value = serde_json::from_slice(&list.body).unwrap();
        let listed: BTreeSet<&str> = list["vms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|vm| vm["id"].as_str().unwrap())
            .collect();
        assert_eq!(listed, present, "cycle {cycle}: no VM lost, none invented");
        assert_eq!(vms_of(&server), present.len(), "cycle {cycle}: VMs served");

        // The guest plane serves the restored VMs from their own caller addresses.
        for (id, expected) in &model {
            let n: u32 = id["vm-".len()..].parse().unwrap();
            let tags = guest_tags(server.guest, caller(n)).await;
            let want = match expected {
                Expected::Present { entry, .. } => Some(
                    entry["instance"]["compute"]["tags"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                ),
                Expected::Deleted => None,
            };
            assert_eq!(tags, want, "cycle {cycle}: guest plane for {id}");
        }
    }
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "{CYCLES} kill/restart cycles took {:?}",
        began.elapsed()
    );
}

//! Issue 14 item 4: crash points beyond VM writes, with the real binary. While the control API
//! schedules, starts, completes and cancels scheduled events and rotates both signing keys,
//! guests fetch their documents, approve events, fetch tokens and attested documents, and the
//! events timer starts and completes events on the real clock, the server is `SIGKILL`ed at a
//! random moment, restarted on the same data directory, and checked:
//!
//! - every acknowledged schedule, start, approval, completion and cancellation holds; an
//!   event whose acknowledged removal came back is an error, so is one nobody scheduled;
//! - no half-state: every event is in the document of each of its VMs with the status the
//!   control API gives, and in no other; a VM's `DocumentIncarnation` never goes back, and an
//!   incarnation a guest saw before the kill still means the same document after it;
//! - every token a guest received verifies against the JWKS served after the restart, and the
//!   signing key is the last acknowledged rotation's (or a newer one, if a rotation was cut);
//! - every attested document a guest received verifies against the CA served after the
//!   restart (`openssl cms -verify`), and new documents are signed by the last acknowledged
//!   generation (or a newer one, if a rotation was cut).
//!
//! What was in flight at the kill may or may not have happened; both are accepted. Set
//! `AZIMDS_TEST_SEED` to replay a run (the seed is printed).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use azimds::control::token::ControlToken;

use crate::support::{Spawned, TempDir, spawn_azimds, test_seed};

const CYCLES: usize = 5;
/// The VMs of the definitions file; VM `i` calls from 127.3.0.(i+1).
const VMS: [&str; 3] = ["crash-a", "crash-b", "crash-c"];
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const TOKEN: &str = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F&bypass_cache=true";
const EVENTS: &str = "/metadata/scheduledevents?api-version=2020-07-01";

fn caller(vm: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 3, 0, vm as u8 + 1)
}

fn definitions() -> String {
    let mut yaml = String::from("vms:\n");
    for (i, id) in VMS.iter().enumerate() {
        yaml.push_str(&format!(
            "  - id: {id}\n    callers: [{}]\n    instance: {{compute: {{name: {id}, location: westeurope}}}}\n    identities: {{tenantId: {TENANT}, systemAssigned: {{clientId: 5a1e8c3b-6f2d-4b7a-9e0c-1d2f3a4b5c{i:02x}, objectId: 6b2f9d4c-7a3e-4c8b-8f1d-2e3a4b5c6d{i:02x}}}}}\n",
            caller(i)
        ));
    }
    yaml
}

/// One HTTP/1.1 exchange from `source`: the status and body, or `None` when the connection
/// failed (the server is gone).
async fn http(
    to: SocketAddr,
    source: Ipv4Addr,
    method: &str,
    target: &str,
    headers: &str,
    body: &str,
) -> Option<(u16, Vec<u8>)> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::from((source, 0))).ok()?;
    let mut stream = socket.connect(to).await.ok()?;
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok()?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..split]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, answer[split + 4..].to_vec()))
}

/// Where one run of the server listens.
#[derive(Clone)]
struct Target {
    guest: SocketAddr,
    control: SocketAddr,
    token: String,
}

impl Target {
    fn of(server: &Spawned, data: &Path) -> Target {
        Target {
            guest: server.guest,
            control: server.control.parse().unwrap(),
            token: ControlToken::read(data).unwrap().expose().to_string(),
        }
    }

    async fn control(&self, method: &str, path: &str, body: &str) -> Option<(u16, Value)> {
        let headers = format!(
            "Authorization: Bearer {}\r\nContent-Type: application/json\r\n",
            self.token
        );
        let (status, body) = http(
            self.control,
            Ipv4Addr::LOCALHOST,
            method,
            path,
            &headers,
            body,
        )
        .await?;
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or(Value::String(String::from_utf8_lossy(&body).into()))
        };
        Some((status, value))
    }

    async fn guest(
        &self,
        vm: usize,
        method: &str,
        target: &str,
        body: &str,
    ) -> Option<(u16, Vec<u8>)> {
        let headers = if method == "POST" {
            "Metadata: true\r\nContent-Type: application/json\r\n"
        } else {
            "Metadata: true\r\n"
        };
        http(self.guest, caller(vm), method, target, headers, body).await
    }
}

/// What the test did to one event, and what the server acknowledged.
#[derive(Debug, Default)]
struct Tracked {
    /// The control view the schedule was acknowledged with; `None` while in flight or cut.
    scheduled: Option<Value>,
    /// A start or an approval was sent (acknowledged or not).
    start_sent: bool,
    start_acked: bool,
    /// A completion or cancellation was sent.
    removal_sent: bool,
    removal_acked: bool,
    /// Notice and completion of a few seconds: the timer may start and complete it.
    timer_may_start: bool,
    timer_may_complete: bool,
}

/// Everything the streams saw acknowledged, shared between them.
#[derive(Debug, Default)]
struct Ledger {
    events: BTreeMap<String, Tracked>,
    /// Per VM: each incarnation a guest saw, and the document it came with.
    documents: Vec<BTreeMap<u64, Vec<u8>>>,
    tokens: Vec<String>,
    token_rotation_acked: Option<String>,
    token_rotation_cut: bool,
    attested: Vec<Vec<u8>>,
    generation_acked: Option<String>,
    generation_cut: bool,
    /// Acknowledged operations by kind, this cycle.
    acknowledged: BTreeMap<&'static str, usize>,
}

type Shared = Arc<Mutex<Ledger>>;

fn event_id(rng: &mut fastrand::Rng) -> String {
    let hex: String = (0..32)
        .map(|_| {
            char::from_digit(rng.u32(0..16), 16)
                .unwrap()
                .to_ascii_uppercase()
        })
        .collect();
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// The operator: schedules, starts, completes and cancels events, rotates both key kinds,
/// until the server stops answering.
async fn operator(target: Target, ledger: Shared, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    loop {
        let choice = rng.u32(0..100);
        if choice < 35 {
            let id = event_id(&mut rng);
            let mut vms: Vec<&str> = VMS.iter().copied().filter(|_| rng.bool()).collect();
            if vms.is_empty() {
                vms.push(VMS[rng.usize(0..VMS.len())]);
            }
            let short_notice = rng.u32(0..3) == 0;
            let short_completion = rng.bool();
            let kind = ["Reboot", "Redeploy", "Freeze", "Preempt"][rng.usize(0..4)];
            let request = json!({
                "type": kind,
                "vms": vms,
                "eventId": id,
                "noticeSeconds": if short_notice { 1 } else { 3600 },
                "completeAfterSeconds": if short_completion { 1 } else { 3600 },
            });
            ledger.lock().unwrap().events.insert(
                id.clone(),
                Tracked {
                    timer_may_start: short_notice,
                    timer_may_complete: short_completion,
                    ..Tracked::default()
                },
            );
            let Some((status, view)) = target
                .control("POST", "/v1/events", &request.to_string())
                .await
            else {
                return;
            };
            assert_eq!(status, 201, "{request}: {view}");
            let mut ledger = ledger.lock().unwrap();
            ledger.events.get_mut(&id).unwrap().scheduled = Some(view);
            *ledger.acknowledged.entry("schedule").or_default() += 1;
        } else if choice < 80 {
            let action = ["start", "complete", "cancel"][rng.usize(0..3)];
            let Some(id) = pick_event(&ledger, &mut rng) else {
                continue;
            };
            {
                let mut ledger = ledger.lock().unwrap();
                let tracked = ledger.events.get_mut(&id).unwrap();
                match action {
                    "start" => tracked.start_sent = true,
                    _ => tracked.removal_sent = true,
                }
            }
            let Some((status, body)) = target
                .control("POST", &format!("/v1/events/{id}/{action}"), "")
                .await
            else {
                return;
            };
            // Completing an event that has not started, or acting on one already gone, is
            // refused; nothing else is.
            assert!(
                status == 200 || status == 404 || status == 409,
                "{action} {id}: {status} {body}"
            );
            if status == 200 {
                let mut ledger = ledger.lock().unwrap();
                let tracked = ledger.events.get_mut(&id).unwrap();
                match action {
                    "start" => tracked.start_acked = true,
                    _ => tracked.removal_acked = true,
                }
                *ledger.acknowledged.entry(action).or_default() += 1;
            }
        } else if choice < 92 {
            ledger.lock().unwrap().token_rotation_cut = true;
            let Some((status, body)) = target.control("POST", "/v1/identity/keys/rotate", "").await
            else {
                return;
            };
            assert_eq!(status, 200, "{body}");
            let mut ledger = ledger.lock().unwrap();
            ledger.token_rotation_acked = Some(body["kid"].as_str().unwrap().to_string());
            ledger.token_rotation_cut = false;
            *ledger.acknowledged.entry("token key rotation").or_default() += 1;
        } else {
            ledger.lock().unwrap().generation_cut = true;
            let Some((status, body)) = target.control("POST", "/v1/attested/keys/rotate", "").await
            else {
                return;
            };
            assert_eq!(status, 200, "{body}");
            let mut ledger = ledger.lock().unwrap();
            ledger.generation_acked = Some(body["generation"].as_str().unwrap().to_string());
            ledger.generation_cut = false;
            *ledger.acknowledged.entry("attested rotation").or_default() += 1;
        }
    }
}

/// A scheduled (acknowledged) event, picked at random.
fn pick_event(ledger: &Shared, rng: &mut fastrand::Rng) -> Option<String> {
    let ledger = ledger.lock().unwrap();
    let ids: Vec<&String> = ledger
        .events
        .iter()
        .filter(|(_, t)| t.scheduled.is_some() && !t.removal_acked)
        .map(|(id, _)| id)
        .collect();
    (!ids.is_empty()).then(|| ids[rng.usize(0..ids.len())].clone())
}

/// Guest `vm`: fetches its events document, approves what it sees, fetches tokens and
/// attested documents, until the server stops answering.
async fn guest(target: Target, vm: usize, ledger: Shared, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    loop {
        // A pause, so the operator's key generations get the CPU too (two cores).
        tokio::time::sleep(Duration::from_millis(2)).await;
        let choice = rng.u32(0..100);
        if choice < 60 {
            let Some((status, body)) = target.guest(vm, "GET", EVENTS, "").await else {
                return;
            };
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            let document: Value = serde_json::from_slice(&body).unwrap();
            let incarnation = document["DocumentIncarnation"].as_u64().unwrap();
            // An approval of one of the events the VM sees, now and then.
            let scheduled: Vec<String> = document["Events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["EventStatus"] == "Scheduled")
                .map(|e| e["EventId"].as_str().unwrap().to_string())
                .collect();
            let approve = (!scheduled.is_empty() && rng.bool())
                .then(|| scheduled[rng.usize(0..scheduled.len())].clone());
            {
                let mut held = ledger.lock().unwrap();
                let seen = held.documents[vm]
                    .entry(incarnation)
                    .or_insert(body.clone());
                assert_eq!(
                    String::from_utf8_lossy(seen),
                    String::from_utf8_lossy(&body),
                    "{}: one incarnation, two documents",
                    VMS[vm]
                );
                if let Some(id) = &approve {
                    held.events.get_mut(id).unwrap().start_sent = true;
                }
            }
            let Some(id) = approve else {
                continue;
            };
            let body = json!({"StartRequests": [{"EventId": id}]}).to_string();
            let Some((status, answer)) = target.guest(vm, "POST", EVENTS, &body).await else {
                return;
            };
            // 400: the operator or the timer removed it meanwhile.
            assert!(
                status == 200 || status == 400,
                "approve {id}: {status} {}",
                String::from_utf8_lossy(&answer)
            );
            if status == 200 {
                let mut ledger = ledger.lock().unwrap();
                ledger.events.get_mut(&id).unwrap().start_acked = true;
                *ledger.acknowledged.entry("approval").or_default() += 1;
            }
        } else if choice < 80 {
            let Some((status, body)) = target.guest(vm, "GET", TOKEN, "").await else {
                return;
            };
            // 429: the per-VM token rate (Azure's 20 a second).
            assert!(
                status == 200 || status == 429,
                "token: {status} {}",
                String::from_utf8_lossy(&body)
            );
            if status == 200 {
                let token: Value = serde_json::from_slice(&body).unwrap();
                let mut ledger = ledger.lock().unwrap();
                ledger
                    .tokens
                    .push(token["access_token"].as_str().unwrap().to_string());
                *ledger.acknowledged.entry("token").or_default() += 1;
            }
        } else {
            let nonce = rng.u64(1..u64::MAX).to_string();
            let path = format!("/metadata/attested/document?api-version=2020-09-01&nonce={nonce}");
            let Some((status, body)) = target.guest(vm, "GET", &path, "").await else {
                return;
            };
            // 429: the attested documents' 5 a second.
            assert!(
                status == 200 || status == 429,
                "attested: {status} {}",
                String::from_utf8_lossy(&body)
            );
            if status == 200 {
                let document: Value = serde_json::from_slice(&body).unwrap();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(document["signature"].as_str().unwrap())
                    .unwrap();
                let mut ledger = ledger.lock().unwrap();
                ledger.attested.push(der);
                *ledger.acknowledged.entry("attested document").or_default() += 1;
            }
        }
    }
}

fn start(data: &Path, vms: &str) -> Spawned {
    let server = spawn_azimds(data, &["--callers", "source-address", "--vms", vms]);
    let problems: Vec<String> = server
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .cloned()
        .collect();
    assert!(problems.is_empty(), "start-up: {problems:?}");
    server
}

/// The control API's events by id.
async fn listed_events(target: &Target) -> HashMap<String, Value> {
    let (status, list) = target.control("GET", "/v1/events", "").await.unwrap();
    assert_eq!(status, 200, "{list}");
    list["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

/// The event list and every VM's document (raw and parsed), read while the timer moved
/// nothing: the list is read before and after the documents, until both reads agree.
async fn settled_view(target: &Target) -> (HashMap<String, Value>, Vec<(Vec<u8>, Value)>) {
    for _ in 0..20 {
        let before = listed_events(target).await;
        let mut documents = Vec::new();
        for vm in 0..VMS.len() {
            let (status, body) = target.guest(vm, "GET", EVENTS, "").await.unwrap();
            assert_eq!(status, 200);
            let parsed = serde_json::from_slice(&body).unwrap();
            documents.push((body, parsed));
        }
        if listed_events(target).await == before {
            return (before, documents);
        }
    }
    panic!("the events kept changing under 20 reads");
}

/// The events after a restart against what was acknowledged before the kill; returns them.
async fn check_events(target: &Target, ledger: &Ledger, cycle: usize) -> HashMap<String, Value> {
    let (listed, documents) = settled_view(target).await;
    for (id, event) in &listed {
        let tracked = ledger
            .events
            .get(id)
            .unwrap_or_else(|| panic!("cycle {cycle}: event {id} was never scheduled"));
        if let Some(acked) = &tracked.scheduled {
            for field in [
                "type",
                "vms",
                "notBefore",
                "completeAfterSeconds",
                "resources",
            ] {
                assert_eq!(event[field], acked[field], "cycle {cycle}: {id}'s {field}");
            }
        }
        assert!(
            !tracked.removal_acked,
            "cycle {cycle}: {id} came back after its removal was acknowledged: {event}"
        );
        match event["status"].as_str().unwrap() {
            "Scheduled" => assert!(
                !tracked.start_acked,
                "cycle {cycle}: {id}'s acknowledged start was lost: {event}"
            ),
            "Started" => assert!(
                tracked.start_sent || tracked.timer_may_start,
                "cycle {cycle}: {id} started by itself: {event}"
            ),
            other => panic!("cycle {cycle}: {id} is {other}"),
        }
    }
    for (id, tracked) in &ledger.events {
        if tracked.scheduled.is_some() && !listed.contains_key(id) {
            assert!(
                tracked.removal_sent || tracked.timer_may_complete,
                "cycle {cycle}: acknowledged event {id} was lost: {tracked:?}"
            );
        }
    }
    // No half-state: each VM's document holds exactly its events, with the listed status.
    for (vm, (body, document)) in documents.iter().enumerate() {
        let name = VMS[vm];
        let shown: BTreeMap<String, String> = document["Events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["EventId"].as_str().unwrap().to_string(),
                    e["EventStatus"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let expected: BTreeMap<String, String> = listed
            .iter()
            .filter(|(_, e)| e["vms"].as_array().unwrap().iter().any(|v| v == name))
            .map(|(id, e)| (id.clone(), e["status"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            shown, expected,
            "cycle {cycle}: {name}'s document against the list"
        );
        let incarnation = document["DocumentIncarnation"].as_u64().unwrap();
        let seen = &ledger.documents[vm];
        if let Some((&last, _)) = seen.last_key_value() {
            assert!(
                incarnation >= last,
                "cycle {cycle}: {name}'s incarnation went back from {last} to {incarnation}"
            );
        }
        if let Some(before) = seen.get(&incarnation) {
            assert_eq!(
                String::from_utf8_lossy(before),
                String::from_utf8_lossy(body),
                "cycle {cycle}: {name}'s incarnation {incarnation} means another document after the restart"
            );
        }
    }
    listed
}

/// What the restarted server holds becomes what the next cycle is checked against: a listed
/// event as acknowledged in its state, an unlisted one as gone for good.
fn reconcile(ledger: &mut Ledger, listed: &HashMap<String, Value>) {
    for (id, tracked) in ledger.events.iter_mut() {
        match listed.get(id) {
            Some(event) => {
                let started = event["status"] == "Started";
                *tracked = Tracked {
                    scheduled: Some(event.clone()),
                    start_sent: started,
                    start_acked: started,
                    timer_may_start: tracked.timer_may_start,
                    timer_may_complete: tracked.timer_may_complete,
                    ..Tracked::default()
                };
            }
            None => {
                tracked.removal_sent = true;
                tracked.removal_acked = true;
            }
        }
    }
    ledger.tokens.clear();
    ledger.attested.clear();
}

/// Tokens and attested documents after a restart against the keys acknowledged before.
/// Returns the `kid` signing new tokens.
async fn check_keys(target: &Target, ledger: &Ledger, scratch: &Path, cycle: usize) -> String {
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
    let (status, jwks) = target
        .control("GET", "/common/discovery/keys", "")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let set: JwkSet = serde_json::from_value(jwks).unwrap();
    for token in &ledger.tokens {
        let kid = decode_header(token).unwrap().kid.unwrap();
        let jwk = set.find(&kid).unwrap_or_else(|| {
            panic!("cycle {cycle}: kid {kid} of an issued token is not published")
        });
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&["https://management.azure.com/"]);
        decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap_or_else(|e| panic!("cycle {cycle}: a token signed by {kid}: {e}"));
    }
    // New tokens: signed by the last acknowledged key, or by a newer one a cut rotation made.
    let (status, body) = target.guest(0, "GET", TOKEN, "").await.unwrap();
    assert_eq!(status, 200);
    let token: Value = serde_json::from_slice(&body).unwrap();
    let kid = decode_header(token["access_token"].as_str().unwrap())
        .unwrap()
        .kid
        .unwrap();
    if let Some(acked) = &ledger.token_rotation_acked
        && !ledger.token_rotation_cut
    {
        assert_eq!(&kid, acked, "cycle {cycle}: the acknowledged signing key");
    }

    let (status, ca) = http(
        target.control,
        Ipv4Addr::LOCALHOST,
        "GET",
        "/attested/ca.pem",
        "",
        "",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    std::fs::write(scratch.join("ca.pem"), &ca).unwrap();
    // The last few documents of the cycle (openssl is a process each).
    for der in ledger.attested.iter().rev().take(4) {
        std::fs::write(scratch.join("doc.der"), der).unwrap();
        let verified = Command::new("openssl")
            .args([
                "cms", "-verify", "-binary", "-inform", "DER", "-in", "doc.der",
            ])
            .args(["-CAfile", "ca.pem", "-out", "/dev/null"])
            .current_dir(scratch)
            .output()
            .unwrap();
        assert!(
            verified.status.success(),
            "cycle {cycle}: an attested document from before the kill: {}",
            String::from_utf8_lossy(&verified.stderr)
        );
    }
    kid
}

/// The generations whose leaves are not retired, read from the key files.
fn unretired_generations(data: &Path) -> BTreeSet<String> {
    let mut generations = BTreeSet::new();
    for entry in std::fs::read_dir(data.join("keys/attested")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let key: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let kid = key["kid"].as_str().unwrap();
        if let Some(rest) = kid.strip_prefix("leaf-")
            && key["retired"].is_null()
        {
            generations.insert(rest.split('-').next().unwrap().to_string());
        }
    }
    generations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_approvals_and_key_rotations_survive_sigkill_at_random_moments() {
    let began = Instant::now();
    let seed = test_seed("crash points");
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = TempDir::new("crash-points");
    let data = dir.path().join("data");
    let vms = dir.path().join("vms.yaml");
    std::fs::write(&vms, definitions()).unwrap();
    let vms = vms.to_str().unwrap().to_string();
    let ledger: Shared = Arc::new(Mutex::new(Ledger {
        documents: vec![BTreeMap::new(); VMS.len()],
        ..Ledger::default()
    }));
    let mut server = start(&data, &vms);
    for cycle in 1..=CYCLES {
        let target = Target::of(&server, &data);
        let delay = Duration::from_millis(rng.u64(500..=2500));
        let pid = server.child.id();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            let sent = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .unwrap();
            assert!(sent.success());
        });
        let mut streams = vec![tokio::spawn(operator(
            target.clone(),
            Arc::clone(&ledger),
            rng.u64(..),
        ))];
        for vm in 0..VMS.len() {
            streams.push(tokio::spawn(guest(
                target.clone(),
                vm,
                Arc::clone(&ledger),
                rng.u64(..),
            )));
        }
        for stream in streams {
            tokio::time::timeout(Duration::from_secs(20), stream)
                .await
                .expect("the streams stop when the server dies")
                .expect("a stream failed");
        }
        killer.join().unwrap();
        let status = server.child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL");
        let acknowledged = std::mem::take(&mut ledger.lock().unwrap().acknowledged);
        assert!(
            !acknowledged.is_empty(),
            "cycle {cycle}: nothing acknowledged in {delay:?}"
        );
        eprintln!(
            "crash points: cycle {cycle}: killed after {delay:?}; acknowledged: {acknowledged:?}"
        );

        server = start(&data, &vms);
        let target = Target::of(&server, &data);
        let (status, _) = target.control("GET", "/readyz", "").await.unwrap();
        assert_eq!(status, 200, "cycle {cycle}: ready after the restart");
        let mut held = std::mem::take(&mut *ledger.lock().unwrap());
        let listed = check_events(&target, &held, cycle).await;
        let kid = check_keys(&target, &held, dir.path(), cycle).await;
        for keys in ["keys", "keys/attested"] {
            let partial: Vec<String> = std::fs::read_dir(data.join(keys))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".tmp"))
                .collect();
            assert!(
                partial.is_empty(),
                "cycle {cycle}: {keys} holds {partial:?}"
            );
        }
        let unretired = unretired_generations(&data);
        assert_eq!(
            unretired.len(),
            1,
            "cycle {cycle}: one generation signs: {unretired:?}"
        );
        if let Some(acked) = &held.generation_acked
            && !held.generation_cut
        {
            assert!(
                unretired.contains(acked),
                "cycle {cycle}: the acknowledged generation {acked}, not {unretired:?}"
            );
        }
        reconcile(&mut held, &listed);
        held.token_rotation_acked = Some(kid);
        held.token_rotation_cut = false;
        held.generation_acked = unretired.into_iter().next();
        held.generation_cut = false;
        *ledger.lock().unwrap() = held;
    }
    assert!(
        began.elapsed() < Duration::from_secs(90),
        "{CYCLES} kill/restart cycles took {:?}",
        began.elapsed()
    );
}

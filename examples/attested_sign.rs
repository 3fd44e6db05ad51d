//! Attested documents signed per second on one thread: our envelope encoder against openssl's
//! `Pkcs7::sign` (the ceiling in dependencies-and-ceilings.md §4.3: 3,399/s), same RSA-2048
//! leaf, same ~300-byte content (the newest version's, with a 10-digit nonce).
//!
//! ```text
//! cargo run --release --example attested_sign [-- --rounds 5 --seconds 1.5]
//! taskset -c 1 target/release/examples/attested_sign   # pinned, as the ceiling was measured
//! ```
//!
//! Rows: a bare RSA-2048 PKCS#1 v1.5 signature of the content (the floor: what one signature
//! costs on this machine right now), `CmsSigner::sign` (the envelope alone),
//! `AttestedSigner::document` (the whole response body: JSON, leaf lookup, envelope, base64),
//! the guest path's blocking task (the VM's facts read from its instance document, then
//! `document`), and `Pkcs7::sign` + `to_der` (openssl's own envelope, with signed attributes). Rounds
//! interleave the rows, so a busy machine slows them alike; each row is reported per
//! wall-clock second and per second of this thread's CPU time (which a shared core does not
//! dilute). Prints one JSON object per row: the median and range
//! of the rounds, in documents/s, and the output size (the DER; the JSON body for `document`).

use std::time::{Duration, Instant, SystemTime};

use openssl::hash::MessageDigest;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::sign::Signer;
use openssl::stack::Stack;

use azimds::attested::certs::{self, Cloud, LeafName};
use azimds::attested::cms::CmsSigner;
use azimds::attested::{AttestedSigner, AttestedVm, InstanceFacts, Nonce, signed_content};
use azimds::metadata::document::InstanceDocument;
use azimds::metadata::version::ApiVersion;

const VM: AttestedVm<'static> = AttestedVm {
    vm_id: "02aab8a4-74ef-476e-8182-f6d2ba4166a6",
    subscription_id: "aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e",
    sku: "22_04-lts-gen2",
    plan_name: "",
    plan_product: "",
    plan_publisher: "",
    license_type: "",
    location: "eastus",
    az_environment: "AzurePublicCloud",
};

fn main() {
    let (rounds, seconds) = arguments();
    let now = SystemTime::now();
    let unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let nonce = Nonce::parse("1234567890").expect("a valid nonce");
    let content = signed_content(&VM, ApiVersion::NEWEST, Some(&nonce), now);

    let ca_key = certs::generate_key().expect("key");
    let ca = certs::generate_ca(&ca_key, unix).expect("CA");
    let key = certs::generate_key().expect("key");
    let name = LeafName {
        cloud: Cloud::Public,
        region: Some("eastus".into()),
    };
    let leaf = certs::issue_leaf(&ca, &ca_key, &key, &name, None, unix).expect("leaf");
    let ours = CmsSigner::new(&leaf, key.clone()).expect("signer");
    let signer = AttestedSigner::in_memory(now).expect("attested signer");
    signer
        .prepare(Cloud::Public, VM.location, now)
        .expect("leaf");
    let no_extra_certs = Stack::new().expect("stack");
    // The same facts as a served VM holds them: a whole instance document (every field).
    let instance = InstanceDocument::from_json(&serde_json::json!({"compute": {
        "vmId": VM.vm_id, "subscriptionId": VM.subscription_id, "sku": VM.sku,
        "location": VM.location, "azEnvironment": VM.az_environment,
    }}))
    .expect("a valid instance");

    let mut rows: Vec<Row<'_>> = vec![
        Row::new("raw RSA-2048 signature (openssl Signer)", || {
            let mut signer = Signer::new(MessageDigest::sha256(), &key).expect("signer");
            signer.update(&content).expect("update");
            signer.sign_to_vec().expect("sign").len()
        }),
        Row::new("CmsSigner::sign", || {
            ours.sign(&content).expect("sign").len()
        }),
        Row::new("AttestedSigner::document", || {
            signer
                .document(&VM, ApiVersion::NEWEST, Some(&nonce), now)
                .expect("document")
                .len()
        }),
        Row::new(
            "guest path (facts from the instance document, then document)",
            || {
                let facts = InstanceFacts::parse(instance.compact_json()).expect("facts");
                signer
                    .document(&facts.attested(), ApiVersion::NEWEST, Some(&nonce), now)
                    .expect("document")
                    .len()
            },
        ),
        Row::new("openssl Pkcs7::sign", || {
            Pkcs7::sign(&leaf, &key, &no_extra_certs, &content, Pkcs7Flags::BINARY)
                .expect("sign")
                .to_der()
                .expect("der")
                .len()
        }),
    ];
    // Rounds interleave the rows, so a noisy neighbour slows every row alike.
    for row in &mut rows {
        for _ in 0..20 {
            row.bytes = (row.sign)(); // warm up
        }
    }
    for _ in 0..rounds {
        for row in &mut rows {
            row.round(seconds);
        }
    }
    for row in &mut rows {
        row.print();
    }
}

/// One thing measured: its rate per round and the size of what it returns.
struct Row<'a> {
    name: &'static str,
    sign: Box<dyn FnMut() -> usize + 'a>,
    /// Per wall-clock second, and per second this thread was on a CPU.
    rates: Vec<f64>,
    cpu_rates: Vec<f64>,
    bytes: usize,
}

impl<'a> Row<'a> {
    fn new(name: &'static str, sign: impl FnMut() -> usize + 'a) -> Row<'a> {
        Row {
            name,
            sign: Box::new(sign),
            rates: Vec::new(),
            cpu_rates: Vec::new(),
            bytes: 0,
        }
    }

    fn round(&mut self, seconds: f64) {
        let start = Instant::now();
        let cpu_start = thread_cpu_seconds();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs_f64(seconds) {
            self.bytes = std::hint::black_box((self.sign)());
            n += 1;
        }
        self.rates.push(n as f64 / start.elapsed().as_secs_f64());
        self.cpu_rates
            .push(n as f64 / (thread_cpu_seconds() - cpu_start));
    }

    fn print(&mut self) {
        self.rates.sort_by(f64::total_cmp);
        self.cpu_rates.sort_by(f64::total_cmp);
        let (rates, cpu) = (&self.rates, &self.cpu_rates);
        println!(
            r#"{{"row":"{}","median_per_s":{:.0},"min_per_s":{:.0},"max_per_s":{:.0},"median_per_cpu_s":{:.0},"min_per_cpu_s":{:.0},"max_per_cpu_s":{:.0},"rounds":{},"bytes":{}}}"#,
            self.name,
            rates[rates.len() / 2],
            rates[0],
            rates[rates.len() - 1],
            cpu[cpu.len() / 2],
            cpu[0],
            cpu[cpu.len() - 1],
            rates.len(),
            self.bytes,
        );
    }
}

/// This thread's time on a CPU (Linux `/proc/thread-self/schedstat`, nanoseconds), so a rate
/// per CPU-second does not drop when other processes share the core.
fn thread_cpu_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").expect("Linux schedstat");
    let nanos: u64 = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("schedstat starts with the run time in ns");
    nanos as f64 / 1e9
}

fn arguments() -> (usize, f64) {
    let mut rounds = 5;
    let mut seconds = 1.5;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--rounds" => rounds = value.parse().expect("--rounds N"),
            "--seconds" => seconds = value.parse().expect("--seconds S"),
            other => panic!("unknown flag {other}; use --rounds N --seconds S"),
        }
    }
    (rounds.max(1), seconds)
}

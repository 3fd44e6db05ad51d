//! `azimds capture` and `azimds replay` (issue 12), with the real binary: a capture of azimds
//! served again answers every endpoint × api-version byte for byte; a replayed pack is
//! captured back identical; the spec's real captures survive replay and capture.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use azimds::capture::pack::{Manifest, Pack, Recorded, RecordedRequest};
use azimds::capture::vm::TokenIdentity;
use azimds::testing::TestServer;
use bytes::Bytes;
use serde_json::Value;

use crate::support::{TempDir, TestImds, fixture};

/// Runs `azimds capture --url URL --out OUT --rate 0 extra…`; returns its stdout. Async: the
/// in-process servers it captures run on the test's runtime meanwhile.
/// Captures from a server on the system clock: a capture walks the service in real time, and a
/// manual clock that never moves would never refill the attested documents' 5-per-second limit.
async fn capture(url: &str, out: &Path, extra: &[&str]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_azimds"))
        .args(["capture", "--url", url, "--rate", "0", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "capture failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `azimds replay DIR` on an ephemeral port, killed on drop; the address from its ready line.
struct Replaying {
    child: Child,
    url: String,
    imds: TestImds,
}

impl Drop for Replaying {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replay(dir: &Path) -> Replaying {
    let mut child = Command::new(env!("CARGO_BIN_EXE_azimds"))
        .arg("replay")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let addr = ready["guest"][0].as_str().unwrap().parse().unwrap();
    Replaying {
        child,
        url: format!("http://{addr}"),
        imds: TestImds { addr },
    }
}

fn headers_but_request_id(recorded: &Recorded) -> Vec<(String, String)> {
    recorded
        .headers
        .iter()
        .filter(|(name, _)| name != "x-ms-request-id")
        .cloned()
        .collect()
}

/// Everything under `dir`, concatenated: to look for a secret anywhere in a pack.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            bytes.extend(all_bytes(&path));
        } else {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn a_capture_of_azimds_served_again_answers_byte_for_byte() {
    let temp = TempDir::new("capture-round-trip");
    let first = TestServer::builder().system_clock().start().await.unwrap();
    let (one, two) = (temp.path().join("one"), temp.path().join("two"));
    let said = capture(&first.url(), &one, &[]).await;
    assert!(
        said.contains("captured 191 responses (35 api-versions)"),
        "{said}"
    );

    // The capture's vms.yaml, loaded as-is by a second server, and captured in turn.
    let vms = std::fs::read_to_string(one.join("vms.yaml")).unwrap();
    let second = TestServer::builder()
        .system_clock()
        .definitions(&vms)
        .start()
        .await
        .unwrap();
    capture(&second.url(), &two, &[]).await;
    let (one, two) = (Pack::read(&one).unwrap(), Pack::read(&two).unwrap());
    let names = |pack: &Pack| -> Vec<String> {
        pack.manifest
            .responses
            .iter()
            .map(|r| r.name.clone())
            .collect()
    };
    assert_eq!(names(&one), names(&two));

    let mut compared = 0;
    for (index, (a, b)) in one
        .manifest
        .responses
        .iter()
        .zip(&two.manifest.responses)
        .enumerate()
    {
        assert_eq!(a.request, b.request, "{}", a.name);
        assert_eq!(a.status, b.status, "{}", a.name);
        assert_eq!(
            headers_but_request_id(a),
            headers_but_request_id(b),
            "{}",
            a.name
        );
        if a.name.starts_with("identity/oauth2/token/") {
            continue; // a new token each time: its identity is compared below
        }
        assert_eq!(one.bodies[index], two.bodies[index], "{} differs", a.name);
        compared += 1;
    }
    // Every instance version, with and without extended, and the events versions.
    let ok = |prefix: &str| {
        one.manifest
            .responses
            .iter()
            .filter(|r| r.name.starts_with(prefix) && r.status == 200)
            .count()
    };
    assert_eq!(ok("instance/20"), 70);
    assert_eq!(ok("scheduledevents/"), 7);
    // Identity takes 2018-02-01 and later (spec §2.2): 30 of the 35.
    assert_eq!(ok("identity/info/"), 30);
    assert!(compared >= 180, "{compared}");

    // The token's identity survived: same ids from the second server's token (scrubbed in the
    // pack, so asked for afresh).
    let token = |server: &TestServer| {
        let imds = TestImds {
            addr: server.guest_address(),
        };
        async move {
            imds.get("/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F")
                .await
                .body
        }
    };
    let first_identity = TokenIdentity::from_token_response(&token(&first).await).unwrap();
    let second_identity = TokenIdentity::from_token_response(&token(&second).await).unwrap();
    assert_eq!(first_identity, second_identity);
}

#[tokio::test]
async fn secrets_and_personal_values_are_scrubbed_unless_asked_for() {
    // The demo VM's userData, SSH key, and the token (src/definition/demo.json).
    let demo = crate::support::demo_instance();
    let user_data = demo["compute"]["userData"].as_str().unwrap().to_string();
    let key = demo["compute"]["publicKeys"][0]["keyData"]
        .as_str()
        .unwrap();
    let key = key.split_whitespace().nth(1).unwrap().to_string();
    let server = TestServer::builder().system_clock().start().await.unwrap();
    let temp = TempDir::new("capture-scrub");
    let (scrubbed, kept) = (temp.path().join("scrubbed"), temp.path().join("kept"));
    let said = capture(&server.url(), &scrubbed, &[]).await;
    assert!(
        said.contains(
            "emptied: compute.publicKeys[0].keyData, signature, compute.userData, access_token"
        ),
        "{said}"
    );
    let everything = all_bytes(&scrubbed);
    assert!(!contains(&everything, &user_data));
    assert!(!contains(&everything, &key));
    assert!(!contains(&everything, "eyJ0eXAi"), "no token anywhere");
    let pack = Pack::read(&scrubbed).unwrap();
    assert!(pack.manifest.scrubbed);
    let (_, body) = pack.get("instance/2025-04-07").unwrap();
    let document: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(document["compute"]["userData"], "");
    assert_eq!(document["compute"]["publicKeys"][0]["keyData"], "");
    assert_eq!(
        document["compute"]["publicKeys"][0]["path"],
        demo["compute"]["publicKeys"][0]["path"]
    );

    capture(&server.url(), &kept, &["--no-scrub"]).await;
    let everything = all_bytes(&kept);
    assert!(contains(&everything, &user_data));
    assert!(contains(&everything, &key));
    let vms = std::fs::read_to_string(kept.join("vms.yaml")).unwrap();
    assert!(vms.contains(&user_data), "{vms}");

    // A second capture into the same directory is refused, the first left as it was.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_azimds"))
        .args(["capture", "--url", &server.url(), "--out"])
        .arg(&kept)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("already holds a fixture pack"));
}

#[tokio::test]
async fn a_replayed_pack_is_captured_back_identical_and_answers_like_the_service() {
    let server = TestServer::builder().system_clock().start().await.unwrap();
    let temp = TempDir::new("capture-replay");
    let (pack_dir, again) = (temp.path().join("pack"), temp.path().join("again"));
    // Kept whole, so the replay's sub-paths can be compared with azimds' own.
    capture(&server.url(), &pack_dir, &["--no-scrub"]).await;
    let replaying = replay(&pack_dir);
    capture(&replaying.url, &again, &["--no-scrub"]).await;
    let (original, recaptured) = (Pack::read(&pack_dir).unwrap(), Pack::read(&again).unwrap());
    // Byte for byte, request ids and tokens included: nothing is generated on replay.
    assert_eq!(original.manifest.responses, recaptured.manifest.responses);
    assert_eq!(original.bodies, recaptured.bodies);

    // Query parameters in another order are the same request.
    let (recorded, body) = original.get("instance/2021-08-01-extended").unwrap();
    let reply = replaying
        .imds
        .get("/metadata/instance?extended=true&api-version=2021-08-01")
        .await;
    assert_eq!((reply.status, &reply.body[..]), (200, &body[..]));
    assert_eq!(
        reply.header("x-ms-request-id"),
        recorded
            .headers
            .iter()
            .find(|(n, _)| n == "x-ms-request-id")
            .map(|(_, v)| v.as_str())
    );
    assert!(reply.header("date").is_some(), "Date is the replay's own");

    // Sub-paths are cut from the recorded documents exactly as azimds (and Azure) cut them.
    let azimds = TestImds {
        addr: server.guest_address(),
    };
    for target in [
        "/metadata/instance/compute?api-version=2021-02-01",
        "/metadata/instance/network/interface/0/ipv4?api-version=2019-06-01",
        "/metadata/instance/compute/tagsList?api-version=2021-12-13",
        "/metadata/instance/compute/name?api-version=2021-02-01&format=text",
        "/metadata/instance/compute/vmId?format=text&api-version=2018-02-01",
        "/metadata/instance/compute?api-version=2021-08-01&extended=true",
        "/metadata/instance/compute/name?api-version=2021-02-01",
    ] {
        let (ours, replayed) = (azimds.get(target).await, replaying.imds.get(target).await);
        assert_eq!(
            (replayed.status, &replayed.body),
            (ours.status, &ours.body),
            "{target}"
        );
        assert_eq!(
            replayed.header("content-type"),
            ours.header("content-type"),
            "{target}"
        );
    }
    server.stop().await;

    // Requests never recorded get what the service answered to the same mistake.
    let no_header = replaying
        .imds
        .request(
            "GET",
            "/metadata/instance/compute?api-version=2019-02-01",
            &[],
        )
        .await;
    assert_eq!(
        (no_header.status, no_header.text()),
        (
            400,
            r#"{"error":"Bad request. Required metadata header not specified"}"#
        )
    );
    let identity = replaying
        .imds
        .request("GET", "/metadata/identity/oauth2/token?resource=x", &[])
        .await;
    assert_eq!(
        (identity.status, identity.text()),
        (
            400,
            r#"{"error":"invalid_request","error_description":"Required metadata header not specified"}"#
        )
    );
    let missing = replaying
        .imds
        .get("/metadata/instance/compute/nothing?api-version=2021-02-01")
        .await;
    let (_, not_found) = original.get("errors/not-found").unwrap();
    assert_eq!((missing.status, &missing.body[..]), (404, &not_found[..]));
}

/// The spec's real captures (tests/fixtures/spec, quoted in §3.6) as a pack with the headers
/// Azure sends (§1.9), replayed and captured back.
#[tokio::test]
async fn the_specs_real_captures_survive_replay_and_capture() {
    let captures = [
        ("2017-03-01", "spec/instance-2017-03-01.json", false),
        ("2017-04-02", "spec/instance-2017-04-02.json", false),
        ("2018-02-01", "spec/instance-2018-02-01.json", false),
        ("2019-02-01", "spec/instance-2019-02-01.json", false),
        ("2023-11-15", "spec/instance-2023-11-15-extended.json", true),
    ];
    let headers = vec![
        (
            "content-type".to_string(),
            "application/json; charset=utf-8".to_string(),
        ),
        ("server".to_string(), "IMDS/150.870.65.1854".to_string()),
    ];
    let versions: Vec<&str> = captures.iter().map(|(v, _, _)| *v).collect();
    let mut responses = vec![Recorded {
        name: "versions".into(),
        request: RecordedRequest {
            method: "GET".into(),
            target: "/metadata/versions".into(),
            metadata: true,
        },
        status: 200,
        headers: headers.clone(),
        body: "versions.json".into(),
    }];
    let mut bodies = vec![Bytes::from(
        serde_json::json!({ "apiVersions": versions }).to_string(),
    )];
    for (version, file, extended) in captures {
        let (name, query) = match extended {
            true => (format!("instance/{version}-extended"), "&extended=true"),
            false => (format!("instance/{version}"), ""),
        };
        responses.push(Recorded {
            name: name.clone(),
            request: RecordedRequest {
                method: "GET".into(),
                target: format!("/metadata/instance?api-version={version}{query}"),
                metadata: true,
            },
            status: 200,
            headers: headers.clone(),
            body: format!("{name}.json"),
        });
        bodies.push(Bytes::from(fixture(file)));
    }
    let pack = Pack {
        manifest: Manifest {
            format: 1,
            source: "spec/azure-imds.md §3.6".into(),
            captured_at: "2025-10-01T00:00:00Z".into(),
            azimds_version: "hand-made".into(),
            scrubbed: false,
            responses,
        },
        bodies,
    };
    let temp = TempDir::new("capture-spec");
    let (spec, kept, scrubbed) = (
        temp.path().join("spec"),
        temp.path().join("kept"),
        temp.path().join("scrubbed"),
    );
    std::fs::create_dir_all(&spec).unwrap();
    pack.write(&spec).unwrap();
    let replaying = replay(&spec);
    capture(&replaying.url, &kept, &["--no-scrub"]).await;
    capture(&replaying.url, &scrubbed, &[]).await;
    let (kept, kept_dir) = (Pack::read(&kept).unwrap(), kept);
    let scrubbed = Pack::read(&scrubbed).unwrap();
    for (index, original) in pack.manifest.responses.iter().enumerate() {
        let (recorded, body) = kept.get(&original.name).unwrap();
        assert_eq!(recorded.request, original.request, "{}", original.name);
        assert_eq!(
            (recorded.status, &recorded.headers),
            (200, &headers),
            "{}",
            original.name
        );
        assert_eq!(body, &pack.bodies[index], "{}", original.name);
        // Scrubbed: only the SSH keys differ, emptied in place.
        let real = std::str::from_utf8(&pack.bodies[index]).unwrap();
        let expected = real
            .replace(
                r#""keyData":"ssh-rsa AAAAB3Nza...== azureuser@temp-vm\n""#,
                r#""keyData":"""#,
            )
            .replace(r#""keyData":"ssh-rsa AAAA... user""#, r#""keyData":"""#);
        let (_, body) = scrubbed.get(&original.name).unwrap();
        assert_eq!(
            std::str::from_utf8(body).unwrap(),
            expected,
            "{}",
            original.name
        );
    }
    // What the pack lacks, the replay answers 404 to, and the capture records as such.
    assert_eq!(kept.get("instance/2023-11-15").unwrap().0.status, 404);

    // The capture's vms.yaml serves the real 2023-11-15 document again, byte for byte.
    let vms = std::fs::read_to_string(kept_dir.join("vms.yaml")).unwrap();
    let server = TestServer::builder()
        .definitions(&vms)
        .start()
        .await
        .unwrap();
    let reply = TestImds {
        addr: server.guest_address(),
    }
    .get("/metadata/instance?api-version=2023-11-15&extended=true")
    .await;
    assert_eq!(
        reply.text(),
        fixture("spec/instance-2023-11-15-extended.json")
    );
}

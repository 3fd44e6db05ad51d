//! `azimds capture`: walks an IMDS (a real Azure VM's, or any other) and writes a fixture
//! pack of its raw answers plus a VM definition that serves the same VM again. `plan.rs` says
//! what is asked, `scrub.rs` what is left out, `vm.rs` builds the definition, `pack.rs` is the
//! on-disk format `replay` reads, `json.rs` order-preserving JSON.

pub mod json;
pub mod pack;
pub mod plan;
pub mod scrub;
pub mod vm;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::capture::pack::{COMPUTED_HEADERS, Manifest, Pack, Recorded, RecordedRequest};
use crate::capture::plan::{Kind, Planned};
use crate::capture::vm::TokenIdentity;

/// Where a real VM's IMDS is.
pub const DEFAULT_URL: &str = "http://169.254.169.254";

/// How to capture.
#[derive(Clone, Debug)]
pub struct Options {
    /// `http://host[:port]`, no path.
    pub url: String,
    pub out: PathBuf,
    /// Keep secrets and personal values (userData, customData, keys, tokens, signatures).
    pub keep_secrets: bool,
    /// Requests per second at most (0: no pacing). Azure allows 5 per VM (spec §1.11).
    pub requests_per_second: u32,
    /// How long one answer may take; scheduled events' first call may take up to 2 minutes
    /// (spec §6.6), and gets at least that.
    pub timeout: Duration,
}

/// What a finished capture did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub responses: usize,
    pub versions: usize,
    /// Paths emptied, without duplicates, e.g. `compute.userData`.
    pub scrubbed: Vec<String>,
}

/// Why a capture failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad --url {url}: {message}")]
    Url { url: String, message: String },
    #[error("{0}")]
    Request(String),
    #[error("{url}/metadata/versions answered {status}, not an api-version list: is this an IMDS?")]
    NotImds { url: String, status: u16 },
    #[error("{0} already holds a fixture pack; choose another --out or remove it")]
    Exists(PathBuf),
    #[error("{0}")]
    Pack(#[from] pack::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs a capture into `options.out`.
pub async fn capture(options: &Options) -> Result<Summary, Error> {
    let target = Target::parse(&options.url)?;
    if options.out.join(pack::MANIFEST).exists() {
        return Err(Error::Exists(options.out.clone()));
    }
    let mut pacer = Pacer::new(options.requests_per_second);
    let versions_request = plan::versions_request();
    let versions_answer = target.fetch(&versions_request, options, &mut pacer).await?;
    let versions = api_versions(&versions_answer).ok_or_else(|| Error::NotImds {
        url: options.url.clone(),
        status: versions_answer.status,
    })?;
    let mut planned = vec![versions_request];
    planned.extend(plan::requests(&versions));
    let mut answers = vec![versions_answer];
    for request in &planned[1..] {
        answers.push(target.fetch(request, options, &mut pacer).await?);
    }
    let identity = planned
        .iter()
        .zip(&answers)
        .find(|(p, a)| p.kind == Kind::Token && a.status == 200)
        .and_then(|(_, a)| TokenIdentity::from_token_response(&a.body));

    let mut scrubbed_paths = Vec::new();
    let mut manifest = Manifest {
        format: pack::FORMAT,
        source: options.url.clone(),
        captured_at: now_rfc3339(),
        azimds_version: env!("CARGO_PKG_VERSION").to_string(),
        scrubbed: !options.keep_secrets,
        responses: Vec::with_capacity(planned.len()),
    };
    let mut bodies = Vec::with_capacity(planned.len());
    for (request, answer) in planned.iter().zip(answers) {
        let body = if options.keep_secrets {
            answer.body
        } else {
            let (body, paths) = scrub::scrub(request.kind, &answer.body);
            for path in paths {
                if !scrubbed_paths.contains(&path) {
                    scrubbed_paths.push(path);
                }
            }
            body
        };
        let content_type = answer
            .headers
            .iter()
            .find(|(name, _)| name == "content-type")
            .map(|(_, value)| value.as_str());
        manifest.responses.push(Recorded {
            name: request.name.clone(),
            request: RecordedRequest {
                method: "GET".into(),
                target: request.target.clone(),
                metadata: request.metadata,
            },
            status: answer.status,
            body: pack::body_file(&request.name, content_type),
            headers: answer.headers,
        });
        bodies.push(body);
    }
    let pack = Pack { manifest, bodies };
    std::fs::create_dir_all(&options.out).map_err(|source| Error::Write {
        path: options.out.clone(),
        source,
    })?;
    let definitions = vm::definitions(&pack, &versions, identity.as_ref());
    let yaml = vm::to_yaml(&definitions, &options.url, !options.keep_secrets);
    let vms_path = options.out.join(pack::VMS_FILE);
    std::fs::write(&vms_path, yaml).map_err(|source| Error::Write {
        path: vms_path,
        source,
    })?;
    pack.write(&options.out)?;
    Ok(Summary {
        responses: pack.bodies.len(),
        versions: versions.len(),
        scrubbed: scrubbed_paths,
    })
}

/// `apiVersions` of a 200 `/metadata/versions` answer, oldest first as Azure lists them.
fn api_versions(answer: &Answer) -> Option<Vec<String>> {
    if answer.status != 200 {
        return None;
    }
    let document: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
    let versions: Vec<String> = document["apiVersions"]
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect::<Option<_>>()?;
    let safe = |v: &String| {
        !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    // Versions become file names and query values: anything else is not an api-version.
    versions.iter().all(safe).then_some(versions)
}

/// One answer as it came.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// The IMDS to capture: host and port of an `http://` URL.
struct Target {
    host: String,
    port: u16,
    authority: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, Error> {
        let bad = |message: &str| Error::Url {
            url: url.to_string(),
            message: message.to_string(),
        };
        let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("IMDS is plain http:// (spec §1.1)"));
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(bad("give the base URL only, e.g. http://169.254.169.254"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        Ok(Target {
            host: authority.host().to_string(),
            port: authority.port_u16().unwrap_or(80),
            authority: authority.to_string(),
        })
    }

    /// GETs one planned request, retrying what Azure says to retry (429, 410, 500, 503:
    /// spec §1.11) a few times with growing pauses; the last answer is what is recorded.
    async fn fetch(
        &self,
        planned: &Planned,
        options: &Options,
        pacer: &mut Pacer,
    ) -> Result<Answer, Error> {
        let timeout = match planned.kind {
            Kind::ScheduledEvents => options.timeout.max(Duration::from_secs(150)),
            _ => options.timeout,
        };
        let mut pause = Duration::from_secs(1);
        for attempt in 1.. {
            pacer.wait().await;
            let answer = tokio::time::timeout(timeout, self.get(planned))
                .await
                .map_err(|_| {
                    Error::Request(format!(
                        "{}{}: no answer within {timeout:?}",
                        self.authority, planned.target
                    ))
                })??;
            if !matches!(answer.status, 410 | 429 | 500 | 503) || attempt == 5 {
                return Ok(answer);
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        unreachable!("the loop returns by its fifth attempt")
    }

    async fn get(&self, planned: &Planned) -> Result<Answer, Error> {
        let failed = |message: String| {
            Error::Request(format!("{}{}: {message}", self.authority, planned.target))
        };
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| failed(format!("cannot connect: {e}")))?;
        let mut request = Request::get(planned.target.as_str())
            .header(header::HOST, self.authority.as_str())
            .header(
                header::USER_AGENT,
                concat!("azimds-capture/", env!("CARGO_PKG_VERSION")),
            );
        if planned.metadata {
            request = request.header("Metadata", "true");
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| failed(e.to_string()))?;
        let response = crate::outbound::exchange(TokioIo::new(stream), request)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter(|(name, _)| !COMPUTED_HEADERS.contains(&name.as_str()))
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(format!("reading the body: {e}")))?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// At most `per_second` requests a second (none when 0).
struct Pacer {
    interval: Option<Duration>,
    next: Option<tokio::time::Instant>,
}

impl Pacer {
    fn new(per_second: u32) -> Pacer {
        Pacer {
            interval: (per_second > 0).then(|| Duration::from_secs(1) / per_second),
            next: None,
        }
    }

    async fn wait(&mut self) {
        let Some(interval) = self.interval else {
            return;
        };
        if let Some(next) = self.next {
            tokio::time::sleep_until(next).await;
        }
        self.next = Some(tokio::time::Instant::now() + interval);
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

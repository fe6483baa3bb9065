//! Load generator and test-key helper for `scripts/loadtest` (docs/performance.md).
//!
//! * `keys --dir D`: a local test IdP key (RS256) and a `private_key_jwt` client key (ES256),
//!   as PKCS#8 DER plus their public JWK sets. Nothing leaves the machine.
//! * `run ...`: pre-mints a pool of distinct subject tokens (cycled) and, for `private_key_jwt`,
//!   one distinct client assertion per request (never reused: each `jti` is fresh), then drives
//!   `POST /token` over N keep-alive HTTP/1.1 connections to 127.0.0.1 for a fixed time on one
//!   thread (a raw-socket client, so the generator takes as little CPU from the server as
//!   possible), and appends one JSON line: requests/s, p50, p99, errors and the server's idle and
//!   peak RSS (`/proc/<pid>/status` VmRSS before, VmHWM after).
//! * `report --results F`: a Markdown table of a results file with ratios against the reference
//!   server measured in the same run, and of each large-configuration row against the same
//!   server, database and client authentication with the small configuration.
//! * `big-trust ...`: TOML for thousands of extra identity providers (inline JWKS, so nothing
//!   is fetched), audiences and clients (pre-hashed secrets, as a real deployment stores them),
//!   appended to a load-test configuration to measure start-up and throughput at scale.
//! * `wait-ready --addr A --started-ns T`: polls `GET /readyz` until 200 and prints the
//!   milliseconds since `T` (the server's launch, `date +%s%N`), i.e. the start-up time.
//!
//! Every loop is bounded in time and count; the run stops by itself.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine;
use clap::{Parser, Subcommand, ValueEnum};
use frontdesk::keys::{PrivateKey, SigningAlgorithm};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

#[path = "../support/proc_cpu.rs"]
mod proc_cpu;
use proc_cpu::{processes_cpu, processes_cpu_delta};

#[derive(Debug, Parser)]
#[command(name = "frontdesk-loadgen", about = "frontdesk load generator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate the test IdP key and the private_key_jwt client key into a directory.
    Keys {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Drive token exchanges against one server and append a JSON result line.
    Run(Box<RunArgs>),
    /// Print a Markdown table (with ratios against the reference server) of a results file.
    Report {
        #[arg(long)]
        results: PathBuf,
    },
    /// Print TOML for many extra trust objects (the large configuration).
    BigTrust(BigTrustArgs),
    /// Wait until `GET /readyz` answers 200; print milliseconds since the server's launch.
    WaitReady {
        /// Server address (loopback only).
        #[arg(long)]
        addr: SocketAddr,
        /// When the server process was launched, in nanoseconds since the Unix epoch.
        #[arg(long)]
        started_ns: u128,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
}

#[derive(Debug, clap::Args)]
struct BigTrustArgs {
    /// Extra identity providers.
    #[arg(long, default_value_t = 1000)]
    idps: usize,
    /// Extra audiences.
    #[arg(long, default_value_t = 1000)]
    audiences: usize,
    /// Extra clients (half client_secret_basic, half private_key_jwt).
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// argon2id PHC string used for every extra secret client.
    #[arg(long)]
    secret_hash: String,
    /// Public JWK set used as the inline JWKS of every extra IdP and private_key_jwt client.
    #[arg(long)]
    jwks: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Auth {
    /// client_secret_basic
    Basic,
    /// private_key_jwt
    Jwt,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenario label, e.g. `frontdesk-sqlite`.
    #[arg(long)]
    label: String,
    /// `reference` or `frontdesk` (used by `report` to pair rows).
    #[arg(long)]
    server: String,
    /// Server address (loopback only).
    #[arg(long)]
    addr: SocketAddr,
    /// Key directory written by `keys`.
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, value_enum)]
    auth: Auth,
    #[arg(long)]
    client_id: String,
    /// Secret for client_secret_basic.
    #[arg(long, default_value = "")]
    secret: String,
    /// `audience` parameter (the resource AS).
    #[arg(long, default_value = "https://as.saas.example")]
    audience: String,
    /// `aud` of client assertions (the server's issuer).
    #[arg(long, default_value = "")]
    assertion_aud: String,
    #[arg(long, default_value = "https://idp.perf.example")]
    idp_issuer: String,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Distinct subject tokens, cycled.
    #[arg(long, default_value_t = 4096)]
    subject_pool: usize,
    /// Upper bound on requests (and on pre-minted client assertions for private_key_jwt).
    #[arg(long, default_value_t = 150_000)]
    max_requests: usize,
    /// Server process whose RSS is reported.
    #[arg(long)]
    pid: Option<u32>,
    /// Also report the CPU of every process with this command name (e.g. `postgres`): the
    /// database server shares the machine's cores with frontdesk, so its work per request is
    /// part of what an exchange costs.
    #[arg(long)]
    db_processes: Option<String>,
    /// Database label for the report (`sqlite`, `postgres`, `-`).
    #[arg(long, default_value = "-")]
    db: String,
    /// File to append the JSON result line to.
    #[arg(long)]
    out: PathBuf,
    /// Server start-up time (launch to `/readyz` 200), reported beside the figures.
    #[arg(long)]
    startup_ms: Option<f64>,
    /// `small` or `big` (the configuration size), used by `report` to pair rows.
    #[arg(long, default_value = "small")]
    config: String,
    /// Which pass over the scenarios this is (`LOADTEST_ROUNDS`), used by `report` to pair rows
    /// of the same round.
    #[arg(long, default_value_t = 1)]
    round: u32,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Keys { dir } => keys(&dir),
        Command::Run(args) => run(*args),
        Command::Report { results } => report(&results),
        Command::BigTrust(args) => big_trust(&args),
        Command::WaitReady {
            addr,
            started_ns,
            timeout_secs,
        } => wait_ready(addr, started_ns, timeout_secs),
    }
}

fn big_trust(args: &BigTrustArgs) -> anyhow::Result<()> {
    let jwks = std::fs::read_to_string(&args.jwks)?;
    let jwks = jwks.trim();
    if jwks.contains("'''") {
        bail!("the JWK set cannot be embedded in a TOML literal string");
    }
    let mut out = String::with_capacity(1000 * (args.idps + args.audiences + args.clients));
    use std::fmt::Write as _;
    for i in 0..args.idps {
        writeln!(
            out,
            "\n[[identity_providers]]\nid = \"filler-idp-{i}\"\nissuer = \"https://idp-{i}.filler.example\"\n\
             jwks = '''{jwks}'''\nalgorithms = [\"RS256\"]\ntoken_types = [\"id_token\"]\n\
             subject_namespace = \"loadtest\""
        )?;
        if i % 10 == 0 {
            writeln!(
                out,
                "condition = \"subject.email.endsWith('@filler-{i}.example')\""
            )?;
        }
    }
    for i in 0..args.audiences {
        writeln!(
            out,
            "\n[[audiences]]\nid = \"filler-aud-{i}\"\nissuer = \"https://as-{i}.filler.example\"\n\
             scopes = [\"read\", \"write\"]\ntoken_type = \"id-jag\""
        )?;
        if i % 10 == 0 {
            writeln!(out, "condition = \"'admins' in subject.groups\"")?;
        }
    }
    for i in 0..args.clients {
        let audience = i % args.audiences.max(1);
        let audiences = if args.audiences == 0 {
            String::new()
        } else {
            format!("\"filler-aud-{audience}\", \"saas\"")
        };
        if i % 2 == 0 {
            writeln!(
                out,
                "\n[[clients]]\nclient_id = \"filler-client-{i}\"\nauth_method = \"client_secret_basic\"\n\
                 secret_hash = \"{}\"\naudiences = [{audiences}]",
                args.secret_hash
            )?;
        } else {
            writeln!(
                out,
                "\n[[clients]]\nclient_id = \"filler-client-{i}\"\nauth_method = \"private_key_jwt\"\n\
                 jwks = '''{jwks}'''\naudiences = [{audiences}]"
            )?;
        }
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

fn wait_ready(addr: SocketAddr, started_ns: u128, timeout_secs: u64) -> anyhow::Result<()> {
    use std::io::Read as _;
    if !addr.ip().is_loopback() {
        bail!("wait-ready only talks to loopback addresses");
    }
    let give_up = Instant::now() + Duration::from_secs(timeout_secs);
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    while Instant::now() < give_up {
        let ready = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
            .and_then(|mut stream| {
                stream.set_read_timeout(Some(Duration::from_secs(2)))?;
                stream.write_all(request.as_bytes())?;
                let mut head = [0u8; 12];
                stream.read_exact(&mut head)?;
                Ok(head.ends_with(b" 200"))
            })
            .unwrap_or(false);
        if ready {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos();
            println!("{:.0}", now.saturating_sub(started_ns) as f64 / 1e6);
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("{addr} was not ready within {timeout_secs} s")
}

fn keys(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, algorithm) in [
        ("idp", SigningAlgorithm::Rs256),
        ("client", SigningAlgorithm::Es256),
    ] {
        let key = PrivateKey::generate(algorithm, 2048).map_err(anyhow::Error::msg)?;
        std::fs::write(dir.join(format!("{name}.pk8")), key.pkcs8())?;
        let jwk = key.public_jwk().map_err(anyhow::Error::msg)?;
        std::fs::write(
            dir.join(format!("{name}.jwks.json")),
            json!({ "keys": [jwk] }).to_string(),
        )?;
    }
    eprintln!("loadgen: wrote test keys to {}", dir.display());
    Ok(())
}

fn load_key(dir: &Path, name: &str, algorithm: SigningAlgorithm) -> anyhow::Result<PrivateKey> {
    let bytes = std::fs::read(dir.join(format!("{name}.pk8")))
        .with_context(|| format!("reading {name}.pk8 (run `keys` first)"))?;
    Ok(PrivateKey::from_pkcs8(algorithm, Zeroizing::new(bytes)))
}

/// Signs `count` JWTs on all cores; `claims(i)` gives the i-th payload.
fn mint(
    key: &PrivateKey,
    count: usize,
    claims: impl Fn(usize) -> Value + Sync,
) -> anyhow::Result<Vec<String>> {
    let encoding = key.encoding_key().map_err(anyhow::Error::msg)?;
    let jwk = key.public_jwk().map_err(anyhow::Error::msg)?;
    let mut header = jsonwebtoken::Header::new(key.algorithm().jwt_algorithm());
    header.kid = jwk.common.key_id.clone();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = count.div_ceil(threads).max(1);
    let parts: Vec<anyhow::Result<Vec<String>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|start| {
                let (header, encoding, claims) = (&header, &encoding, &claims);
                scope.spawn(move || {
                    (start..(start + chunk).min(count))
                        .map(|i| Ok(jsonwebtoken::encode(header, &claims(i), encoding)?))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("minting panicked")))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(count);
    for part in parts {
        all.extend(part?);
    }
    Ok(all)
}

/// CPU time (user, system; clock ticks) and context switches (voluntary + involuntary, summed
/// over all threads) of a process so far: the kernel side that an instruction profile misses.
fn proc_cpu(pid: u32) -> Option<(u64, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime = fields.get(11)?.parse().ok()?;
    let stime = fields.get(12)?.parse().ok()?;
    let mut switches = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if let Some(rest) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                switches += rest.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    Some((utime, stime, switches))
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

const FORM_HEAD: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid-jag\
&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token&scope=read";

struct Plan {
    /// Request bytes up to (excluding) `Content-Length`.
    head: String,
    /// Body prefix (form parameters other than the tokens).
    body_head: String,
    subjects: Vec<String>,
    /// One per request (private_key_jwt); empty for Basic.
    assertions: Vec<String>,
    max_requests: usize,
}

impl Plan {
    fn build(&self, i: usize, out: &mut Vec<u8>) -> bool {
        let subject = &self.subjects[i % self.subjects.len()];
        let assertion = if self.assertions.is_empty() {
            None
        } else {
            match self.assertions.get(i) {
                Some(a) => Some(a.as_str()),
                None => return false,
            }
        };
        if i >= self.max_requests {
            return false;
        }
        const TYPE: &str = "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=";
        let body_len = self.body_head.len()
            + "&subject_token=".len()
            + subject.len()
            + assertion.map_or(0, |a| TYPE.len() + a.len());
        out.clear();
        let _ = write!(out, "{}Content-Length: {body_len}\r\n\r\n", self.head);
        out.extend_from_slice(self.body_head.as_bytes());
        out.extend_from_slice(b"&subject_token=");
        out.extend_from_slice(subject.as_bytes());
        if let Some(a) = assertion {
            out.extend_from_slice(TYPE.as_bytes());
            out.extend_from_slice(a.as_bytes());
        }
        true
    }
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

/// Reads one HTTP/1.1 response (Content-Length framed). Returns (status, body).
async fn read_response(
    stream: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> anyhow::Result<(u16, Vec<u8>)> {
    buf.clear();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed by the server");
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 64 * 1024 {
            bail!("response headers too large");
        }
    };
    let head = std::str::from_utf8(&buf[..header_end]).context("non-UTF-8 response head")?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status code")?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .context("response without Content-Length")?;
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed mid-body");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((status, buf[header_end..header_end + length].to_vec()))
}

async fn connection(
    addr: SocketAddr,
    plan: Arc<Plan>,
    next: Arc<AtomicUsize>,
    exhausted: Arc<AtomicBool>,
    measure_from: Instant,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut request = Vec::with_capacity(4096);
    let mut response = Vec::with_capacity(4096);
    let mut stream: Option<tokio::net::TcpStream> = None;
    let mut reconnects = 0u32;
    while Instant::now() < deadline {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if !plan.build(i, &mut request) {
            exhausted.store(true, Ordering::Relaxed);
            break;
        }
        if stream.is_none() {
            reconnects += 1;
            if reconnects > 1000 {
                break;
            }
            match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stream = Some(s);
                }
                Err(error) => {
                    tally.errors += 1;
                    tally.first_error.get_or_insert_with(|| error.to_string());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        let started = Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            s.write_all(&request).await?;
            read_response(s, &mut response).await
        })
        .await;
        let done = Instant::now();
        let measured = started >= measure_from && done <= deadline;
        match outcome {
            Ok(Ok((200, _))) => {
                if measured {
                    tally.ok += 1;
                    let us = done.duration_since(started).as_micros();
                    tally
                        .latencies_us
                        .push(u32::try_from(us).unwrap_or(u32::MAX));
                    tally.last_done = Some(done);
                }
            }
            Ok(Ok((status, body))) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| {
                    format!("HTTP {status}: {}", String::from_utf8_lossy(&body))
                });
            }
            Ok(Err(error)) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| error.to_string());
                stream = None;
            }
            Err(_) => {
                tally.errors += 1;
                tally
                    .first_error
                    .get_or_insert_with(|| "request timed out (10 s)".into());
                stream = None;
            }
        }
    }
    tally
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    if !args.addr.ip().is_loopback() {
        bail!("the load generator only talks to loopback addresses");
    }
    let now = frontdesk::clock::unix_now();
    let idp = load_key(&args.dir, "idp", SigningAlgorithm::Rs256)?;
    let minting = Instant::now();
    let subjects = mint(&idp, args.subject_pool.max(1), |i| {
        json!({ "iss": args.idp_issuer, "sub": format!("user-{i}"), "aud": args.client_id,
                "iat": now, "exp": now + 3600, "auth_time": now - 60,
                "email": format!("user{i}@example.com"), "acr": "phr", "amr": ["pwd", "otp"],
                "jti": uuid::Uuid::new_v4().to_string() })
    })?;
    let mut head = format!(
        "POST /token HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n",
        args.addr
    );
    let mut body_head = format!(
        "{FORM_HEAD}&audience={}",
        form_urlencoded::byte_serialize(args.audience.as_bytes()).collect::<String>()
    );
    let assertions = match args.auth {
        Auth::Basic => {
            let credentials = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", args.client_id, args.secret));
            head.push_str(&format!("Authorization: Basic {credentials}\r\n"));
            Vec::new()
        }
        Auth::Jwt => {
            body_head.push_str(&format!("&client_id={}", args.client_id));
            let client = load_key(&args.dir, "client", SigningAlgorithm::Es256)?;
            mint(&client, args.max_requests, |_| {
                json!({ "iss": args.client_id, "sub": args.client_id, "aud": args.assertion_aud,
                        "jti": uuid::Uuid::new_v4().to_string(), "iat": now, "exp": now + 240 })
            })?
        }
    };
    eprintln!(
        "loadgen[{}]: minted {} subject tokens and {} client assertions in {:.1} s",
        args.label,
        subjects.len(),
        assertions.len(),
        minting.elapsed().as_secs_f64()
    );
    let plan = Arc::new(Plan {
        head,
        body_head,
        subjects,
        assertions,
        max_requests: args.max_requests,
    });
    let idle_rss = args.pid.and_then(|pid| proc_status_kib(pid, "VmRSS:"));

    // One thread: the generator must leave the CPU to the server as far as possible.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup_secs);
    let deadline = measure_from + Duration::from_secs(args.duration_secs);
    let next = Arc::new(AtomicUsize::new(0));
    let exhausted = Arc::new(AtomicBool::new(false));
    let pid = args.pid;
    let db_processes = args.db_processes.clone();
    let cpu = std::sync::Mutex::new(None);
    let db_cpu = std::sync::Mutex::new(None);
    let tallies: Vec<Tally> = runtime.block_on(async {
        let cpu_at_start = tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            let db = db_processes.as_deref().map(processes_cpu);
            (pid.and_then(proc_cpu), db)
        });
        let tasks: Vec<_> = (0..args.connections.clamp(1, 1024))
            .map(|_| {
                tokio::spawn(connection(
                    args.addr,
                    plan.clone(),
                    next.clone(),
                    exhausted.clone(),
                    measure_from,
                    deadline,
                ))
            })
            .collect();
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.unwrap_or_default());
        }
        let cpu_at_end = pid.and_then(proc_cpu);
        let db_at_end = args.db_processes.as_deref().map(processes_cpu);
        let (server_at_start, db_at_start) = cpu_at_start.await.unwrap_or((None, None));
        *cpu.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = server_at_start.zip(cpu_at_end);
        *db_cpu
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = db_at_start
            .zip(db_at_end)
            .map(|(before, after)| processes_cpu_delta(&before, &after));
        out
    });
    let peak_rss = args.pid.and_then(|pid| proc_status_kib(pid, "VmHWM:"));

    let mut latencies: Vec<u32> = Vec::new();
    let (mut ok, mut errors, mut first_error, mut last_done) = (0u64, 0u64, None, None);
    for tally in tallies {
        latencies.extend(tally.latencies_us);
        ok += tally.ok;
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
        last_done = last_done.max(tally.last_done);
    }
    latencies.sort_unstable();
    let pct = |p: usize| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        f64::from(latencies[(latencies.len() * p / 100).min(latencies.len() - 1)]) / 1000.0
    };
    let window = last_done
        .map(|done| done.duration_since(measure_from))
        .unwrap_or_default()
        .as_secs_f64();
    let rps = if window > 0.0 {
        ok as f64 / window
    } else {
        0.0
    };
    // Server CPU per successful measured request (µs; one clock tick is 10 ms on Linux, so
    // only meaningful over thousands of requests) and context switches per request.
    let cpu = cpu
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let per_request = |delta: u64, scale: f64| {
        (ok > 0).then(|| (delta as f64 * scale / ok as f64 * 10.0).round() / 10.0)
    };
    let (user_us, system_us, switches) = match cpu {
        Some(((u0, s0, c0), (u1, s1, c1))) => (
            per_request(u1.saturating_sub(u0), 10_000.0),
            per_request(s1.saturating_sub(s0), 10_000.0),
            per_request(c1.saturating_sub(c0), 1.0),
        ),
        None => (None, None, None),
    };
    let db_us = db_cpu
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .and_then(|ticks| per_request(ticks, 10_000.0));
    let result = json!({
        "label": args.label,
        "server": args.server,
        "db": args.db,
        "auth": match args.auth { Auth::Basic => "client_secret_basic", Auth::Jwt => "private_key_jwt" },
        "connections": args.connections,
        "window_s": (window * 100.0).round() / 100.0,
        "requests": ok,
        "errors": errors,
        "first_error": first_error,
        "ended_early": exhausted.load(Ordering::Relaxed),
        "rps": rps.round(),
        "p50_ms": (pct(50) * 100.0).round() / 100.0,
        "p99_ms": (pct(99) * 100.0).round() / 100.0,
        "max_ms": (f64::from(latencies.last().copied().unwrap_or(0)) / 10.0).round() / 100.0,
        "idle_rss_kib": idle_rss,
        "peak_rss_kib": peak_rss,
        "startup_ms": args.startup_ms,
        "server_user_us_per_req": user_us,
        "server_sys_us_per_req": system_us,
        "server_ctx_switches_per_req": switches,
        "db_cpu_us_per_req": db_us,
        "config": args.config,
        "round": args.round,
    });
    eprintln!("loadgen[{}]: {result}", args.label);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.out)?;
    writeln!(file, "{result}")?;
    Ok(())
}

fn num(row: &Value, key: &str) -> f64 {
    row.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// The row to compare the row at `index` with among those `matches` accepts: one of the same
/// round (a row without a round is of round 1), the nearest before it, else the first after.
/// With several rounds in a run every round has its own, and a row divided by another round's
/// would carry the machine's drift between the two.
fn nearest(rows: &[Value], index: usize, matches: impl Fn(&Value) -> bool) -> Option<usize> {
    let round = |row: &Value| row.get("round").and_then(Value::as_u64).unwrap_or(1);
    let mine = round(&rows[index]);
    let accepted = |other: usize| round(&rows[other]) == mine && matches(&rows[other]);
    (0..index)
        .rev()
        .find(|&other| accepted(other))
        .or_else(|| (index + 1..rows.len()).find(|&other| accepted(other)))
}

/// The small-configuration row to compare the large-configuration row at `index` with: the same
/// server, database and authentication, of the same round ([`nearest`]).
fn small_beside(rows: &[Value], index: usize) -> Option<usize> {
    let row = &rows[index];
    nearest(rows, index, |other| {
        other["config"] != "big"
            && other["server"] == row["server"]
            && other["db"] == row["db"]
            && other["auth"] == row["auth"]
    })
}

/// The `frontdesk-unaudited` row to compare the durable row at `index` with: the same
/// authentication, of the same round ([`nearest`]).
fn unaudited_beside(rows: &[Value], index: usize) -> Option<usize> {
    let auth = &rows[index]["auth"];
    nearest(rows, index, |other| {
        other["server"] == "frontdesk-unaudited" && other["auth"] == *auth
    })
}

/// The median of `values` (the mean of the middle two for an even count) and their range: what
/// the report gives for a scenario measured in several rounds. `None` for no values.
fn median_and_range(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    let median = if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    };
    Some((median, sorted[0], sorted[sorted.len() - 1]))
}

/// A scenario's key, (label without its round tag, authentication): rows with the same key are
/// the same measurement in different rounds. The label, not the server kind, so that the builds
/// compared by `LOADTEST_AB` (all of kind `frontdesk`, labelled ab1-…, ab2-…) stay apart.
fn scenario(row: &Value) -> (String, String) {
    let label = row["label"].as_str().unwrap_or("");
    let label = match row.get("round").and_then(Value::as_u64) {
        Some(round) => label.replacen(&format!("-r{round}"), "", 1),
        None => label.to_string(),
    };
    (label, row["auth"].as_str().unwrap_or("").to_string())
}

/// The reference's figure `key` to divide the row at `index` by: the mean of the reference runs
/// with the same authentication right before and right after it in the run (the script runs the
/// reference between every two frontdesk servers), so that drift of the machine's speed over
/// the run cancels instead of landing in the ratio. A reference row is divided by the mean of
/// all reference rows instead, which shows that drift. 0 when there is no reference.
fn reference_near(rows: &[Value], index: usize, auth: &str, key: &str) -> f64 {
    let is_reference = |row: &Value| row["server"] == "reference" && row["auth"] == auth;
    let values: Vec<f64> = if is_reference(&rows[index]) {
        rows.iter()
            .filter(|r| is_reference(r))
            .map(|r| num(r, key))
            .collect()
    } else {
        let before = rows[..index].iter().rev().find(|r| is_reference(r));
        let after = rows[index + 1..].iter().find(|r| is_reference(r));
        before
            .into_iter()
            .chain(after)
            .map(|r| num(r, key))
            .collect()
    };
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

fn report(path: &Path) -> anyhow::Result<()> {
    let rows: Vec<Value> = std::fs::read_to_string(path)?
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let reference = |index: usize, auth: &str, key: &str| reference_near(&rows, index, auth, key);
    // A row's throughput divided by its own neighbouring reference runs: for comparing two
    // frontdesk rows that ran minutes apart, while the machine's speed may have moved.
    let relative = |index: usize| {
        let auth = rows[index]["auth"].as_str().unwrap_or("");
        let reference = reference(index, auth, "rps");
        if reference > 0.0 {
            num(&rows[index], "rps") / reference
        } else {
            0.0
        }
    };
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}×", a / b)
        } else {
            "–".into()
        }
    };
    let mib = |row: &Value, key: &str| {
        row.get(key)
            .and_then(Value::as_f64)
            .map_or("–".into(), |kib| format!("{:.1}", kib / 1024.0))
    };
    let startup = |row: &Value| {
        row.get("startup_ms")
            .and_then(Value::as_f64)
            .map_or("–".into(), |ms| format!("{:.2}", ms / 1000.0))
    };
    println!(
        "| scenario | auth | req/s | p50 ms | p99 ms | errors | startup s | idle RSS MiB | peak RSS MiB | req/s ÷ ref | p99 ÷ ref | server CPU µs/req user + sys | ctx switches/req | database CPU µs/req |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (index, row) in rows.iter().enumerate() {
        let auth = row["auth"].as_str().unwrap_or("");
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {:.0} + {:.0} | {:.1} | {} |",
            row["label"].as_str().unwrap_or(""),
            auth,
            num(row, "rps"),
            num(row, "p50_ms"),
            num(row, "p99_ms"),
            num(row, "errors"),
            startup(row),
            mib(row, "idle_rss_kib"),
            mib(row, "peak_rss_kib"),
            ratio(num(row, "rps"), reference(index, auth, "rps")),
            ratio(num(row, "p99_ms"), reference(index, auth, "p99_ms")),
            num(row, "server_user_us_per_req"),
            num(row, "server_sys_us_per_req"),
            num(row, "server_ctx_switches_per_req"),
            row.get("db_cpu_us_per_req")
                .and_then(Value::as_f64)
                .map_or("–".into(), |us| format!("{us:.0}")),
        );
    }
    println!(
        "\nRatios are against the reference runs with the same client authentication right before and \
after the row (a reference row: against the mean of all of them, which shows how the machine's \
speed drifted during the run). Database CPU: every `postgres` process alive through the measured window, per request (SQLite \
runs inside frontdesk: its work is in the server's CPU)."
    );
    // What the durable writes cost: each database's server against the same server with the
    // audit log off (`frontdesk-unaudited`), same authentication, same run.
    // (row, its ratio each ÷ its reference) for the summary over rounds.
    let mut durable: Vec<(usize, f64)> = Vec::new();
    let mut large: Vec<(usize, f64)> = Vec::new();
    if rows.iter().any(|r| r["server"] == "frontdesk-unaudited") {
        println!(
            "\n| durable writes | auth | req/s | req/s without audit | req/s ÷ without | … each ÷ its reference | p99 ÷ without | CPU µs/req ÷ without |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|");
        let cpu =
            |row: &Value| num(row, "server_user_us_per_req") + num(row, "server_sys_us_per_req");
        for (index, row) in rows.iter().enumerate() {
            if row["server"] != "frontdesk" || row["config"] == "big" {
                continue;
            }
            let Some(base_index) = unaudited_beside(&rows, index) else {
                continue;
            };
            let base = &rows[base_index];
            durable.push((index, relative(index) / relative(base_index)));
            println!(
                "| {} | {} | {:.0} | {:.0} | {} | {} | {} | {} |",
                row["label"].as_str().unwrap_or(""),
                row["auth"].as_str().unwrap_or(""),
                num(row, "rps"),
                num(base, "rps"),
                ratio(num(row, "rps"), num(base, "rps")),
                ratio(relative(index), relative(base_index)),
                ratio(num(row, "p99_ms"), num(base, "p99_ms")),
                ratio(cpu(row), cpu(base)),
            );
        }
    }
    let big: Vec<(usize, &Value)> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r["config"] == "big")
        .collect();
    if !big.is_empty() {
        println!(
            "\n| large configuration | auth | startup s | req/s | req/s ÷ small | … each ÷ its reference | p99 ÷ small |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|");
        for (index, row) in big {
            let small = small_beside(&rows, index).map(|small| (small, &rows[small]));
            if let Some((small_index, _)) = small {
                large.push((index, relative(index) / relative(small_index)));
            }
            let of_small = |key: &str| small.map_or(0.0, |(_, s)| num(s, key));
            println!(
                "| {} | {} | {} | {:.0} | {} | {} | {} |",
                row["label"].as_str().unwrap_or(""),
                row["auth"].as_str().unwrap_or(""),
                startup(row),
                num(row, "rps"),
                ratio(num(row, "rps"), of_small("rps")),
                small.map_or("–".into(), |(small_index, _)| ratio(
                    relative(index),
                    relative(small_index)
                )),
                ratio(num(row, "p99_ms"), of_small("p99_ms")),
            );
        }
    }
    summary(&rows, &relative, &reference, &durable, &large);
    Ok(())
}

/// The last table of a run of several rounds: each frontdesk scenario's median over its rounds
/// (and the range), the figure the targets are read against on a machine whose speed moves
/// from one minute to the next. Printed only when some scenario ran more than once.
fn summary(
    rows: &[Value],
    relative: &dyn Fn(usize) -> f64,
    reference: &dyn Fn(usize, &str, &str) -> f64,
    durable: &[(usize, f64)],
    large: &[(usize, f64)],
) {
    let mut scenarios: Vec<(String, String)> = Vec::new();
    for row in rows.iter().filter(|r| r["server"] != "reference") {
        let key = scenario(row);
        if !scenarios.contains(&key) {
            scenarios.push(key);
        }
    }
    let rounds = |key: &(String, String)| {
        (0..rows.len())
            .filter(|&index| scenario(&rows[index]) == *key)
            .collect::<Vec<_>>()
    };
    if scenarios.iter().all(|key| rounds(key).len() < 2) {
        return;
    }
    let show = |values: &[f64]| {
        median_and_range(values).map_or("–".into(), |(median, low, high)| {
            format!("**{median:.2}×** ({low:.2}–{high:.2})")
        })
    };
    let of = |pairs: &[(usize, f64)], indexes: &[usize]| {
        pairs
            .iter()
            .filter(|(index, _)| indexes.contains(index))
            .map(|(_, value)| *value)
            .collect::<Vec<f64>>()
    };
    println!(
        "\nMedian over the rounds (lowest–highest), each row ÷ the reference runs beside it:\n\n\
| scenario | auth | rounds | req/s ÷ ref | p99 ÷ ref | durable ÷ without audit, each ÷ its reference | large ÷ small, each ÷ its reference |"
    );
    println!("|---|---|---:|---|---|---|---|");
    for key in &scenarios {
        let indexes = rounds(key);
        let p99: Vec<f64> = indexes
            .iter()
            .map(|&index| {
                let auth = rows[index]["auth"].as_str().unwrap_or("");
                num(&rows[index], "p99_ms") / reference(index, auth, "p99_ms")
            })
            .collect();
        let throughput: Vec<f64> = indexes.iter().map(|&index| relative(index)).collect();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            key.0,
            key.1,
            indexes.len(),
            show(&throughput),
            show(&p99),
            show(&of(durable, &indexes)),
            show(&of(large, &indexes)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(server: &str, auth: &str, rps: f64) -> Value {
        json!({ "server": server, "auth": auth, "rps": rps })
    }

    #[test]
    fn frontdesk_rows_are_divided_by_the_reference_runs_beside_them() {
        let rows = vec![
            row("reference", "basic", 100.0),
            row("reference", "jwt", 50.0),
            row("frontdesk", "basic", 80.0),
            row("reference", "basic", 120.0),
            row("frontdesk", "basic", 90.0),
            row("reference", "basic", 140.0),
        ];
        // Between the runs at 100 and 120, then between 120 and 140: not the mean of all three.
        assert_eq!(reference_near(&rows, 2, "basic", "rps"), 110.0);
        assert_eq!(reference_near(&rows, 4, "basic", "rps"), 130.0);
        // Only the authentication's own reference counts; before the first row of the other
        // kind there is only one side.
        assert_eq!(reference_near(&rows, 2, "jwt", "rps"), 50.0);
        // A reference row: the mean of every reference run of its kind.
        assert_eq!(reference_near(&rows, 3, "basic", "rps"), 120.0);
        assert_eq!(reference_near(&rows, 2, "none", "rps"), 0.0);
    }

    #[test]
    fn medians_take_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median_and_range(&[0.9, 0.7, 1.1]), Some((0.9, 0.7, 1.1)));
        assert_eq!(median_and_range(&[1.0, 0.8]), Some((0.9, 0.8, 1.0)));
        assert_eq!(median_and_range(&[0.8]), Some((0.8, 0.8, 0.8)));
        // A ratio against a missing reference (a division by zero) is left out, not counted.
        assert_eq!(
            median_and_range(&[f64::INFINITY, 0.5, f64::NAN]),
            Some((0.5, 0.5, 0.5))
        );
        assert_eq!(median_and_range(&[]), None);
    }

    #[test]
    fn rows_of_one_scenario_in_different_rounds_share_a_key_and_compared_builds_do_not() {
        let row = |label: &str, round: u32| json!({ "server": "frontdesk", "label": label, "auth": "basic", "round": round });
        let key = |label: &str| (label.to_string(), "basic".to_string());
        assert_eq!(
            scenario(&row("frontdesk-sqlite-r2", 2)),
            key("frontdesk-sqlite")
        );
        assert_eq!(
            scenario(&row("frontdesk-postgres-r3-big", 3)),
            key("frontdesk-postgres-big")
        );
        // LOADTEST_AB: two builds of the same server kind stay two scenarios.
        assert_eq!(scenario(&row("ab1-postgres-r1", 1)), key("ab1-postgres"));
        assert_eq!(scenario(&row("ab2-postgres-r1", 1)), key("ab2-postgres"));
        // A single pass has no round tag in its labels.
        assert_eq!(
            scenario(&row("frontdesk-sqlite", 1)),
            key("frontdesk-sqlite")
        );
    }

    #[test]
    fn a_durable_row_is_compared_with_the_unaudited_one_of_its_round() {
        let run = |server: &str, db: &str, auth: &str, round: u32| json!({ "server": server, "db": db, "config": "small", "auth": auth, "round": round });
        // The script's order in each round: SQLite, unaudited, PostgreSQL.
        let rows = vec![
            run("frontdesk", "sqlite", "basic", 1),
            run("frontdesk-unaudited", "sqlite", "basic", 1),
            run("frontdesk", "postgres", "basic", 1),
            run("frontdesk", "sqlite", "basic", 2),
            run("frontdesk-unaudited", "sqlite", "jwt", 2),
            run("frontdesk-unaudited", "sqlite", "basic", 2),
            run("frontdesk", "postgres", "basic", 2),
        ];
        // SQLite runs before its round's unaudited server: the one after it, not round 1's.
        assert_eq!(unaudited_beside(&rows, 0), Some(1));
        assert_eq!(unaudited_beside(&rows, 3), Some(5));
        // PostgreSQL runs after it.
        assert_eq!(unaudited_beside(&rows, 2), Some(1));
        assert_eq!(unaudited_beside(&rows, 6), Some(5));
        assert_eq!(
            unaudited_beside(&[run("frontdesk", "sqlite", "jwt", 1)], 0),
            None
        );
    }

    #[test]
    fn a_large_configuration_row_is_compared_with_the_small_one_of_its_round() {
        let run = |config: &str, auth: &str| json!({ "server": "frontdesk", "db": "postgres", "config": config, "auth": auth });
        let rows = vec![
            run("small", "basic"),
            run("big", "basic"),
            run("small", "jwt"),
            run("small", "basic"),
            run("big", "jwt"),
            run("big", "basic"),
        ];
        // Round two's large row goes with round two's small row, not the first one.
        assert_eq!(small_beside(&rows, 5), Some(3));
        assert_eq!(small_beside(&rows, 1), Some(0));
        assert_eq!(small_beside(&rows, 4), Some(2));
        // A large row run before any small one of its kind: the first after it.
        let rows = vec![
            run("big", "basic"),
            run("small", "jwt"),
            run("small", "basic"),
        ];
        assert_eq!(small_beside(&rows, 0), Some(2));
        assert_eq!(small_beside(&[run("big", "basic")], 0), None);
    }
}

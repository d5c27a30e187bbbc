//! Load test of the screen-pop path: starts the release `fiche serve` as a child
//! process on loopback (SQLite in a temp dir, `FICHE_LOG=warn`), creates agents
//! with one extension each through the admin API, opens one `/ws` per agent, then
//! sends synthetic calls as HEP over UDP (INVITE + 180 Ringing, a second later
//! 200 OK / ACK / BYE / 200 OK) and measures, per call, the time from the INVITE
//! leaving the sender to the `pop` frame arriving at that agent's socket. The pop
//! is triggered by the 180, sent right after the INVITE; the latency counts from
//! the INVITE. Also reports cards expected vs received and the server's CPU time
//! and resident memory.
//!
//! The same calls are then sent, at the same rate to the same number of sockets,
//! through a bare relay (`pop_load/relay.rs`: HEP in, the raw INVITE to the
//! extension's websocket, nothing else) started as a process of its own, and the
//! ratio of Fiche's latency to the relay's is printed: what Fiche adds beyond
//! the wire, measured in one run under one load (`POP_BENCH_RELAY=0` skips it).
//!
//! A cluster mode (`POP_BENCH_CLUSTER=<postgres URL>`, issue 15) starts two
//! nodes on a schema of their own in that database: the calls arrive at node A
//! (HEP), the agents' sockets are on node B, so every pop crosses the event log
//! (PostgreSQL, LISTEN/NOTIFY). The single-node figure is the default mode's,
//! run just before on the same machine.
//!
//! A second mode (`POP_BENCH_IDLE=<sockets>`) opens that many idle agent sockets
//! (shared between `POP_BENCH_IDLE_USERS` logins: a socket costs the same
//! whichever session opened it) and reports the server's resident memory per
//! socket above the idle process.
//!
//! ```text
//! cargo build --release -p fiche-server
//! ulimit -n 65536; cargo bench -p fiche-server --bench pop_load
//! ulimit -n 65536; POP_BENCH_IDLE=10000 cargo bench -p fiche-server --bench pop_load
//! ulimit -n 65536; POP_BENCH_CLUSTER=postgres://postgres@127.0.0.1:5432/test \
//!   cargo bench -p fiche-server --bench pop_load
//! ```
//! Settings: `POP_BENCH_AGENTS` (default 1000), `POP_BENCH_RATE` calls/s (default
//! 100), `POP_BENCH_SECONDS` (default 20), `POP_BENCH_IDLE` (sockets, default off),
//! `POP_BENCH_IDLE_USERS` (default 10), `POP_BENCH_IDLE_HOLD` (seconds the idle
//! sockets stay open after the first reading before a second one, default 32:
//! one heartbeat), `FICHE_BIN` (default target/release/fiche).

#[path = "pop_load/relay.rs"]
mod relay;
mod support;

use bytes::Bytes;
use fiche_pbx::hep::{self, HepPacket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{env_number, percentile, Usage, Workdir, ADMIN_PASSWORD};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// First agent extension; agent `i` owns `FIRST_EXTENSION + i`.
const FIRST_EXTENSION: usize = 30_000;
/// How long a call stays up after it rang, so the live table stays bounded.
const CALL_HOLD: Duration = Duration::from_secs(1);
/// Concurrent argon2 requests during setup (two cores).
const SETUP_CONCURRENCY: usize = 4;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A port free on 127.0.0.1 for both TCP and UDP (HEP listens on both).
fn free_port() -> anyhow::Result<u16> {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port on 127.0.0.1")
}

fn main() -> anyhow::Result<()> {
    if let Ok(ports) = std::env::var(relay::CHILD) {
        return relay::serve(&ports);
    }
    if let Ok(url) = std::env::var("POP_BENCH_CLUSTER") {
        return across_nodes(&url);
    }
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let http_port = free_port()?;
    let hep_port = free_port()?;
    let mut server = Workdir::new()?.serve(&[
        ("FICHE_HTTP_ADDR", &format!("127.0.0.1:{http_port}")),
        ("FICHE_HEP_ADDR", &format!("127.0.0.1:{hep_port}")),
        ("FICHE_AGENT_EXTENSIONS", r"3\d{4}"),
        ("FICHE_LOG", "warn"),
    ])?;
    let pid = server.pid();
    let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
    let hep: SocketAddr = ([127, 0, 0, 1], hep_port).into();
    let result = (|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let api = Api::new(http).await?;
            match std::env::var("POP_BENCH_IDLE")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
            {
                Some(sockets) => idle(&api, pid, sockets).await,
                None => pops(&api, pid, hep).await,
            }
        })
    })();
    server.stop();
    if result.is_err() {
        eprintln!("fiche log:\n{}", server.log());
    }
    result
}

/// A `fiche serve` node of the bench cluster, on the shared schema.
fn cluster_node(name: &str, db: &str) -> anyhow::Result<(support::Server, SocketAddr, SocketAddr)> {
    let http_port = free_port()?;
    let hep_port = free_port()?;
    let server = Workdir::new()?.serve(&[
        ("FICHE_HTTP_ADDR", &format!("127.0.0.1:{http_port}")),
        ("FICHE_HEP_ADDR", &format!("127.0.0.1:{hep_port}")),
        ("FICHE_AGENT_EXTENSIONS", r"3\d{4}"),
        ("FICHE_LOG", "warn"),
        ("FICHE_DATABASE_URL", db),
        ("FICHE_CLUSTER_NODE", name),
    ])?;
    Ok((
        server,
        ([127, 0, 0, 1], http_port).into(),
        ([127, 0, 0, 1], hep_port).into(),
    ))
}

/// `psql <url> -c <sql>`: the bench needs no PostgreSQL driver of its own.
fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("psql")
        .args([url, "-q", "-c", sql])
        .status()?;
    anyhow::ensure!(status.success(), "psql: {sql}");
    Ok(())
}

/// The cluster mode: calls at node A, agents on node B, then on node A.
fn across_nodes(url: &str) -> anyhow::Result<()> {
    let schema = format!("pop_bench_{}", std::process::id());
    psql(url, &format!("CREATE SCHEMA {schema}"))?;
    let separator = if url.contains('?') { '&' } else { '?' };
    let db = format!("{url}{separator}options[search_path]={schema}");
    let result = (|| {
        // Node A first: it takes the writer; node B only routes pops.
        let (mut a, _, a_hep) = cluster_node("bench-a", &db)?;
        std::thread::sleep(Duration::from_secs(2));
        let (mut b, b_http, _) = cluster_node("bench-b", &db)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let result = runtime.block_on(async {
            let load = Load {
                agents: env_number("POP_BENCH_AGENTS", 1000).clamp(1, 10_000),
                rate: env_number("POP_BENCH_RATE", 100).max(1),
                seconds: env_number("POP_BENCH_SECONDS", 20).max(1),
            };
            let on_b = Arc::new(Api::new(b_http).await?);
            let tokens = on_b.agents(load.agents).await?;
            let mut sockets = Vec::with_capacity(load.agents);
            for token in &tokens {
                sockets.push(on_b.socket(token).await?);
            }
            let across = measure(
                "across nodes (HEP at A, agents on B)",
                sockets,
                b.pid(),
                a_hep,
                load,
            )
            .await?;
            println!(
                "cluster: across nodes p50 {:.2?} p99 {:.2?}, lost {}",
                across.p50, across.p99, across.lost
            );
            anyhow::Ok(())
        });
        a.stop();
        b.stop();
        if result.is_err() {
            eprintln!("node A log:\n{}\nnode B log:\n{}", a.log(), b.log());
        }
        result
    })();
    psql(url, &format!("DROP SCHEMA {schema} CASCADE"))?;
    result
}

/// The admin API over loopback, with the admin's token.
struct Api {
    http: SocketAddr,
    client: reqwest::Client,
    token: String,
}

impl Api {
    async fn new(http: SocketAddr) -> anyhow::Result<Api> {
        let client = reqwest::Client::builder().build()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = client
                .get(format!("http://{http}/healthz"))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if up {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "fiche did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut api = Api {
            http,
            client,
            token: String::new(),
        };
        api.token = api.login("admin", ADMIN_PASSWORD).await?;
        Ok(api)
    }

    async fn login(&self, login: &str, password: &str) -> anyhow::Result<String> {
        let response = self
            .client
            .post(format!("http://{}/api/login", self.http))
            .json(&json!({"login": login, "password": password}))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "login {login}: {status} {body}");
        body["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("login {login}: no token in {body}"))
    }

    async fn add_agent(&self, login: &str, extension: &str) -> anyhow::Result<()> {
        let response = self
            .client
            .post(format!("http://{}/api/users", self.http))
            .bearer_auth(&self.token)
            .json(&json!({
                "login": login,
                "display_name": login,
                "role": "agent",
                "extensions": [extension],
                "password": format!("{login}-password"),
            }))
            .send()
            .await?;
        let status = response.status();
        anyhow::ensure!(
            status.as_u16() == 201,
            "add {login}: {status} {}",
            response.text().await?
        );
        Ok(())
    }

    /// Creates agents `0..count` and logs each in; their tokens, in order.
    async fn agents(self: &Arc<Self>, count: usize) -> anyhow::Result<Vec<String>> {
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..SETUP_CONCURRENCY {
            let api = self.clone();
            let next = next.clone();
            tasks.push(tokio::spawn(async move {
                let mut tokens = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return anyhow::Ok(tokens);
                    }
                    let login = format!("agent{i}");
                    api.add_agent(&login, &(FIRST_EXTENSION + i).to_string())
                        .await?;
                    let token = api.login(&login, &format!("{login}-password")).await?;
                    tokens.push((i, token));
                }
            }));
        }
        let mut tokens = Vec::with_capacity(count);
        for task in tasks {
            tokens.extend(task.await??);
        }
        tokens.sort();
        Ok(tokens.into_iter().map(|(_, t)| t).collect())
    }

    /// Opens `/ws` with `token` and waits for its snapshot.
    async fn socket(&self, token: &str) -> anyhow::Result<Ws> {
        let mut request = format!("ws://{}/ws", self.http).into_client_request()?;
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), ws.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("socket closed before its snapshot"))??;
            if let Message::Text(text) = message {
                let value: Value = serde_json::from_str(&text)?;
                anyhow::ensure!(value["type"] == "snapshot", "first message: {value}");
                return Ok(ws);
            }
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The settings of a pop run.
#[derive(Debug, Clone, Copy)]
struct Load {
    agents: usize,
    rate: usize,
    seconds: usize,
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
struct Figures {
    p50: Duration,
    p99: Duration,
    lost: usize,
}

async fn pops(api: &Api, pid: u32, hep: SocketAddr) -> anyhow::Result<()> {
    let load = Load {
        agents: env_number("POP_BENCH_AGENTS", 1000).clamp(1, 10_000),
        rate: env_number("POP_BENCH_RATE", 100).max(1),
        seconds: env_number("POP_BENCH_SECONDS", 20).max(1),
    };
    let agents = load.agents;
    let api = Arc::new(Api {
        http: api.http,
        client: api.client.clone(),
        token: api.token.clone(),
    });
    let setup = Instant::now();
    let tokens = api.agents(agents).await?;
    let created = setup.elapsed();
    let mut sockets = Vec::with_capacity(agents);
    for token in &tokens {
        sockets.push(api.socket(token).await?);
    }
    println!(
        "setup: {agents} agents created and logged in in {created:.1?}, sockets open in {:.1?}",
        setup.elapsed() - created
    );
    let fiche = measure("fiche", sockets, pid, hep, load).await?;
    if env_number("POP_BENCH_RELAY", 1) == 0 {
        return Ok(());
    }
    let relay = relay::Relay::start(free_port()?, free_port()?)?;
    let extensions: Vec<String> = (0..agents)
        .map(|i| (FIRST_EXTENSION + i).to_string())
        .collect();
    let sockets = relay.sockets(&extensions).await?;
    let bare = measure("bare relay", sockets, relay.pid(), relay.hep, load).await?;
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "side by side: fiche p50 {:.2?} / relay {:.2?} = {:.2}x; fiche p99 {:.2?} / relay {:.2?} = {:.2}x; \
         lost: fiche {}, relay {}",
        fiche.p50,
        bare.p50,
        ratio(fiche.p50, bare.p50),
        fiche.p99,
        bare.p99,
        ratio(fiche.p99, bare.p99),
        fiche.lost,
        bare.lost,
    );
    Ok(())
}

/// Sends the calls to `hep` and times each pop at its agent's socket; `pid` is
/// the process whose CPU and memory are reported.
async fn measure(
    name: &str,
    sockets: Vec<Ws>,
    pid: u32,
    hep: SocketAddr,
    load: Load,
) -> anyhow::Result<Figures> {
    let Load {
        agents,
        rate,
        seconds,
    } = load;
    let calls = rate * seconds;
    // Nanoseconds since `base`, per call: when the INVITE left, when the pop arrived.
    let base = Instant::now();
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..calls).map(|_| AtomicU64::new(0)).collect());
    let arrived: Arc<Vec<AtomicU64>> = Arc::new((0..calls).map(|_| AtomicU64::new(0)).collect());
    let stray = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::with_capacity(agents);
    for (i, ws) in sockets.into_iter().enumerate() {
        let arrived = arrived.clone();
        let stray = stray.clone();
        let extension = (FIRST_EXTENSION + i).to_string();
        readers.push(tokio::spawn(read_pops(ws, base, arrived, stray, extension)));
    }

    let before = Usage::of(pid)?;
    let started = Instant::now();
    let sender = {
        let sent = sent.clone();
        std::thread::spawn(move || send_calls(hep, base, &sent, rate, agents))
    };
    tokio::task::spawn_blocking(move || sender.join())
        .await?
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
    // Stragglers: a pop later than this counts as lost.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let elapsed = started.elapsed();
    let after = Usage::of(pid)?;
    for reader in &readers {
        reader.abort();
    }

    let mut latencies = Vec::with_capacity(calls);
    let mut by_call = Vec::with_capacity(calls);
    for (n, (s, a)) in sent.iter().zip(arrived.iter()).enumerate() {
        let (s, a) = (s.load(Ordering::Relaxed), a.load(Ordering::Relaxed));
        if a != 0 {
            let latency = Duration::from_nanos(a.saturating_sub(s));
            latencies.push(latency);
            by_call.push((latency, n));
        }
    }
    // Where the slow ones fall (a cold start, a periodic stall) says more than their number.
    by_call.sort();
    let slowest: Vec<String> = by_call
        .iter()
        .rev()
        .take(5)
        .map(|(latency, n)| format!("{latency:.1?} at {:.2} s", *n as f64 / rate as f64))
        .collect();
    let warm: Vec<Duration> = by_call
        .iter()
        .filter(|(_, n)| *n >= rate)
        .map(|(latency, _)| *latency)
        .collect();
    latencies.sort();
    let received = latencies.len();
    let pct = |p: f64| percentile(&latencies, p);
    let cpu = after.cpu.saturating_sub(before.cpu);
    println!(
        "{name}: pop latency (INVITE sent → pop frame at the agent's socket), {agents} agents, \
         {rate} calls/s for {seconds} s: p50 {:.2?}, p90 {:.2?}, p99 {:.2?}, p99.9 {:.2?}, max {:.2?}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        latencies.last().copied().unwrap_or_default(),
    );
    let warm_pct = |p: f64| percentile(&warm, p);
    println!(
        "after the first second: p50 {:.2?}, p99 {:.2?}, max {:.2?}; slowest calls: {}",
        warm_pct(0.50),
        warm_pct(0.99),
        warm.last().copied().unwrap_or_default(),
        slowest.join(", ")
    );
    println!(
        "cards: {calls} expected, {received} received, {} lost, {} pops duplicated or at a socket they were not for",
        calls - received,
        stray.load(Ordering::Relaxed)
    );
    println!(
        "{name} process: CPU {cpu:.2?} over {elapsed:.1?} ({:.1} % of one core); RSS {} KiB before, {} KiB after; \
         load average {}",
        100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64(),
        before.rss_kib,
        after.rss_kib,
        load_average()
    );
    Ok(Figures {
        p50: pct(0.50),
        p99: pct(0.99),
        lost: calls - received,
    })
}

async fn read_pops(
    mut ws: Ws,
    base: Instant,
    arrived: Arc<Vec<AtomicU64>>,
    stray: Arc<AtomicUsize>,
    extension: String,
) {
    while let Some(Ok(message)) = ws.next().await {
        // The clock is read before any parsing: parse time is the bench's, not the server's.
        let at = base.elapsed().as_nanos() as u64;
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        match value["type"].as_str() {
            Some("pop") => {
                let call = value["call"]["source_key"]
                    .as_str()
                    .and_then(|k| k.strip_prefix("bench-"))
                    .and_then(|k| k.parse::<usize>().ok());
                match call.and_then(|n| arrived.get(n)) {
                    Some(slot) if value["extension"] == extension.as_str() => {
                        if slot
                            .compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed)
                            .is_err()
                        {
                            stray.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        stray.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Some("ping") => {
                let pong = ws.send(Message::Text(r#"{"type":"pong"}"#.into())).await;
                if pong.is_err() {
                    return;
                }
            }
            _ => {}
        }
    }
}

const CALLER: &str = "127.0.0.1:5070";
const PHONE: &str = "127.0.0.1:5071";

/// The SIP messages of one direct call to `extension`: (ring part, end part).
fn call_flow(call_id: &str, extension: &str) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let from = format!("From: \"Bench\" <sip:0612345678@{CALLER}>;tag=caller-tag\r\n");
    let request = |method: &str, cseq: &str, branch: u8, to_tag: &str| {
        format!(
            "{method} sip:{extension}@{PHONE} SIP/2.0\r\n\
Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}-{branch}\r\n\
Max-Forwards: 70\r\n{from}\
To: <sip:{extension}@{PHONE}>{to_tag}\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq}\r\n\
Contact: <sip:0612345678@{CALLER}>\r\n\
Content-Length: 0\r\n\r\n"
        )
    };
    let response = |status: &str, cseq: &str, branch: u8| {
        format!(
            "SIP/2.0 {status}\r\n\
Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}-{branch}\r\n{from}\
To: <sip:{extension}@{PHONE}>;tag=phone-tag\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq}\r\n\
Contact: <sip:{extension}@{PHONE}>\r\n\
Content-Length: 0\r\n\r\n"
        )
    };
    let ring = vec![
        hep_packet(CALLER, PHONE, &request("INVITE", "1 INVITE", 1, "")),
        hep_packet(PHONE, CALLER, &response("180 Ringing", "1 INVITE", 1)),
    ];
    let end = vec![
        hep_packet(PHONE, CALLER, &response("200 OK", "1 INVITE", 1)),
        hep_packet(CALLER, PHONE, &request("ACK", "1 ACK", 2, ";tag=phone-tag")),
        hep_packet(CALLER, PHONE, &request("BYE", "2 BYE", 3, ";tag=phone-tag")),
        hep_packet(PHONE, CALLER, &response("200 OK", "2 BYE", 3)),
    ];
    (ring, end)
}

fn hep_packet(src: &str, dst: &str, sip: &str) -> Vec<u8> {
    hep::encode(&HepPacket {
        ip_family: Some(2),
        ip_protocol: Some(17),
        src: src.parse().ok(),
        dst: dst.parse().ok(),
        proto_type: Some(1),
        capture_id: Some(101),
        payload: Bytes::copy_from_slice(sip.as_bytes()),
        ..HepPacket::default()
    })
}

/// Sends `sent.len()` calls at `rate` per second, round-robin over the agents,
/// each ended `CALL_HOLD` after it rang; records when each INVITE left.
fn send_calls(
    hep: SocketAddr,
    base: Instant,
    sent: &[AtomicU64],
    rate: usize,
    agents: usize,
) -> anyhow::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(hep)?;
    let interval = Duration::from_secs(1) / rate as u32;
    let start = Instant::now();
    let mut ending: std::collections::VecDeque<(Instant, Vec<Vec<u8>>)> = Default::default();
    for (n, slot) in sent.iter().enumerate() {
        let extension = (FIRST_EXTENSION + n % agents).to_string();
        // Packets are built before the timed send.
        let (ring, end) = call_flow(&format!("bench-{n}"), &extension);
        let due = start + interval * n as u32;
        while let Some((at, _)) = ending.front() {
            if *at > due {
                break;
            }
            if let Some((_, packets)) = ending.pop_front() {
                for packet in packets {
                    socket.send(&packet)?;
                }
            }
        }
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        slot.store(base.elapsed().as_nanos() as u64, Ordering::Relaxed);
        for packet in ring {
            socket.send(&packet)?;
        }
        ending.push_back((due + CALL_HOLD, end));
    }
    for (at, packets) in ending {
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for packet in packets {
            socket.send(&packet)?;
        }
    }
    Ok(())
}

async fn idle(api: &Api, pid: u32, sockets: usize) -> anyhow::Result<()> {
    let users = env_number("POP_BENCH_IDLE_USERS", 10).clamp(1, sockets.max(1));
    let api = Arc::new(Api {
        http: api.http,
        client: api.client.clone(),
        token: api.token.clone(),
    });
    let setup = Instant::now();
    let tokens = api.agents(users).await?;
    println!(
        "setup: {users} agents created and logged in in {:.1?}",
        setup.elapsed()
    );
    // Settle: let the setup's allocations be reused or returned.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = Usage::of(pid)?;
    let opened = Instant::now();
    let pongs = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::with_capacity(sockets);
    for n in 0..sockets {
        let ws = api.socket(&tokens[n % users]).await?;
        readers.push(tokio::spawn(hold(ws, pongs.clone())));
    }
    let open_time = opened.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = |when: &str, after: &Usage| {
        let alive = readers.iter().filter(|r| !r.is_finished()).count();
        let per_socket =
            (after.rss_kib.saturating_sub(before.rss_kib) * 1024) / sockets.max(1) as u64;
        println!(
            "idle sockets, {when}: {sockets} opened in {open_time:.1?} ({alive} still open, \
             {} pings answered), {users} sessions; server RSS {} KiB before, {} KiB with the \
             sockets: {per_socket} bytes per socket; load average {}",
            pongs.load(Ordering::Relaxed),
            before.rss_kib,
            after.rss_kib,
            load_average()
        );
    };
    report("just opened", &Usage::of(pid)?);
    // The server pings every socket every 30 s: wait for one heartbeat so the
    // figure includes what pinging and answering leaves behind.
    let heartbeat = env_number("POP_BENCH_IDLE_HOLD", 32);
    if heartbeat > 0 {
        tokio::time::sleep(Duration::from_secs(heartbeat as u64)).await;
        report(&format!("after {heartbeat} s more"), &Usage::of(pid)?);
    }
    for reader in &readers {
        reader.abort();
    }
    Ok(())
}

/// Keeps a socket open, answering the server's pings.
async fn hold(mut ws: Ws, pongs: Arc<AtomicUsize>) {
    while let Some(Ok(message)) = ws.next().await {
        if let Message::Text(text) = message {
            if text.contains("\"ping\"") {
                if ws
                    .send(Message::Text(r#"{"type":"pong"}"#.into()))
                    .await
                    .is_err()
                {
                    return;
                }
                pongs.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

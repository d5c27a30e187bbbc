//! One loopback testbed: `fiche serve` and the Kamailio test PBX on free ports,
//! and the sipp phones and caller of one scenario at a time.
//!
//! Layout of `sip-test-scripts/scenarios/<name>/`: `caller.xml` is played against
//! Kamailio; `phone-201.xml`, `phone-202.xml`, `phone-203.xml` run as the sipp
//! phones of those extensions, `trunk.xml` as the trunk. The same layout drives
//! `sip-test-scripts/run-scenario.sh`.

use crate::http;
use crate::process::{tail, Process};
use crate::ws::EventStream;
use anyhow::{bail, Context};
use serde_json::Value;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Hard bound of one sipp run (its own `-timeout`); the harness adds a margin.
const SIPP_TIMEOUT: Duration = Duration::from_secs(20);
/// Hard bound of Fiche and Kamailio: longer than any one test needs (a testbed
/// lives for one scenario), short enough that a test runner killed without
/// unwinding leaves nothing running for long.
const SERVICE_LIMIT: Duration = Duration::from_secs(120);
/// How long start-up may take before the testbed gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// After the last sipp exits, how long events may keep arriving.
const EVENTS_TIMEOUT: Duration = Duration::from_secs(10);
/// Silence after the last `ended` event before the event list is closed, so
/// that an extra event after the end is seen (and fails the test).
const QUIET_AFTER_END: Duration = Duration::from_millis(500);

/// Every loopback port one testbed uses; all distinct, chosen free.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// Kamailio (the PBX), UDP.
    pub pbx: u16,
    /// Fiche's HEP listener, UDP and TCP.
    pub hep: u16,
    /// Fiche's HTTP API and websocket.
    pub http: u16,
    /// The sipp caller.
    pub caller: u16,
    /// The sipp phone of extension 201.
    pub phone_201: u16,
    /// The sipp phone of extension 202.
    pub phone_202: u16,
    /// The sipp phone of extension 203.
    pub phone_203: u16,
    /// The sipp trunk (numbers starting with 0 or +).
    pub trunk: u16,
}

impl Ports {
    /// Asks the kernel for free ports, holding every socket until all are
    /// chosen so that none is handed out twice.
    pub fn allocate() -> anyhow::Result<Self> {
        let mut held_udp = Vec::new();
        let mut held_tcp = Vec::new();
        let mut udp = || -> anyhow::Result<u16> {
            let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
            let port = socket.local_addr()?.port();
            held_udp.push(socket);
            Ok(port)
        };
        let pbx = udp()?;
        let caller = udp()?;
        let phone_201 = udp()?;
        let phone_202 = udp()?;
        let phone_203 = udp()?;
        let trunk = udp()?;
        // HEP listens on UDP and TCP with one number.
        let mut hep = None;
        for _ in 0..20 {
            let port = udp()?;
            if let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
                held_tcp.push(listener);
                hep = Some(port);
                break;
            }
        }
        let hep = hep.context("no port free on both UDP and TCP")?;
        let http_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let http = http_listener.local_addr()?.port();
        held_tcp.push(http_listener);
        Ok(Self {
            pbx,
            hep,
            http,
            caller,
            phone_201,
            phone_202,
            phone_203,
            trunk,
        })
    }

    /// The port of a scenario's sipp phone file (`phone-201`, ..., `trunk`).
    pub fn for_phone(&self, name: &str) -> Option<u16> {
        match name {
            "phone-201" => Some(self.phone_201),
            "phone-202" => Some(self.phone_202),
            "phone-203" => Some(self.phone_203),
            "trunk" => Some(self.trunk),
            _ => None,
        }
    }
}

/// A scratch folder for logs and the database; removed on drop unless the
/// test is failing, in which case its path is printed for the post-mortem.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn create() -> anyhow::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let path = std::env::temp_dir().join(format!(
            "fiche-e2e-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("FICHE_E2E_KEEP").is_some() {
            eprintln!("e2e logs and SIP traces kept in {}", self.path.display());
        } else {
            drop(std::fs::remove_dir_all(&self.path));
        }
    }
}

/// What one sipp program did.
#[derive(Debug, Clone)]
pub struct SippOutcome {
    /// `caller`, `phone-201`, ..., `trunk`.
    pub name: String,
    /// Exit code (0: the scenario went exactly as scripted); `None` if killed.
    pub code: Option<i32>,
    /// sipp's log of every SIP message it sent and received.
    pub messages_log: PathBuf,
    /// sipp's log of unexpected messages.
    pub errors_log: PathBuf,
}

/// The result of playing one scenario.
#[derive(Debug)]
pub struct Played {
    /// The scenario folder name.
    pub scenario: String,
    /// The SIP Call-ID the caller used (unique per run).
    pub call_id: String,
    /// Every call event received on `/ws` during the run, in arrival order.
    pub events: Vec<Value>,
    /// Each sipp program's outcome, caller first.
    pub sipp: Vec<SippOutcome>,
}

impl Played {
    /// Panics, with sipp's error log, unless every sipp program succeeded:
    /// the SIP flow itself must have gone as scripted before Fiche is judged.
    pub fn assert_sipp_ok(&self) {
        for outcome in &self.sipp {
            assert_eq!(
                outcome.code,
                Some(0),
                "scenario {}: sipp {} failed; its errors:\n{}\nlast messages:\n{}",
                self.scenario,
                outcome.name,
                tail(&outcome.errors_log, 30),
                tail(&outcome.messages_log, 60),
            );
        }
    }

    /// The SIP messages the caller sent and received, for failure messages.
    pub fn caller_trace(&self) -> String {
        self.sipp
            .first()
            .map(|o| tail(&o.messages_log, 400))
            .unwrap_or_default()
    }
}

/// Fiche and Kamailio, running; stopped (by PID) on drop.
#[derive(Debug)]
pub struct Testbed {
    // Drop order is field order: Kamailio, then Fiche, then the folder.
    kamailio: Process,
    fiche: Option<Process>,
    /// The admin's session token (empty without Fiche).
    token: String,
    ports: Ports,
    dir: WorkDir,
}

impl Testbed {
    /// Starts Fiche ([`fiche_binary`]) and Kamailio on free
    /// loopback ports and waits until both are ready.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = WorkDir::create()?;
        let ports = Ports::allocate()?;
        let fiche = start_fiche(&dir, ports).await?;
        let token = crate::auth::admin_token(ports.http).await?;
        let kamailio = start_kamailio(&dir, ports).await?;
        Ok(Self {
            kamailio,
            fiche: Some(fiche),
            token,
            ports,
            dir,
        })
    }

    /// Starts Kamailio alone, mirroring to `ports().hep` where nothing listens
    /// until the test binds it: for tests of the test PBX itself.
    pub async fn start_pbx_only() -> anyhow::Result<Self> {
        let dir = WorkDir::create()?;
        let ports = Ports::allocate()?;
        let kamailio = start_kamailio(&dir, ports).await?;
        Ok(Self {
            kamailio,
            fiche: None,
            token: String::new(),
            ports,
            dir,
        })
    }

    /// The ports in use.
    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// The scratch folder (logs, sipp traces, database).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of Fiche's and Kamailio's logs, for failure messages.
    pub fn logs(&self) -> String {
        let fiche = match &self.fiche {
            Some(fiche) => fiche.log_tail(40),
            None => "(not started)".to_owned(),
        };
        format!(
            "--- fiche log (tail):\n{fiche}\n--- kamailio log (tail):\n{}",
            self.kamailio.log_tail(20)
        )
    }

    /// Plays `scenario`: starts its phones, then its caller, waits for all of
    /// them (bounded), and returns the call events `/ws` streamed meanwhile
    /// (none without Fiche).
    pub async fn play(&self, scenario: &str) -> anyhow::Result<Played> {
        static RUN: AtomicU32 = AtomicU32::new(0);
        let folder = repo_root()
            .join("sip-test-scripts/scenarios")
            .join(scenario);
        let caller_xml = folder.join("caller.xml");
        if !caller_xml.is_file() {
            bail!("no scenario {}", caller_xml.display());
        }
        let nonce = format!(
            "{}-{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        );
        let call_id = format!("{scenario}-{nonce}-1@fiche.test");
        let mut events = match self.fiche {
            Some(_) => Some(EventStream::connect(self.ports.http, &self.token).await?),
            None => None,
        };

        let mut phones = Vec::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&folder)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "xml") && *p != caller_xml)
            .collect();
        entries.sort();
        for file in entries {
            let name = file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            let port = self
                .ports
                .for_phone(&name)
                .with_context(|| format!("no port for {}", file.display()))?;
            let mut phone = self.sipp(&name, &file, port, &[])?;
            wait_udp_bound(port, &mut phone.0).await?;
            phones.push(phone);
        }

        let remote = format!("127.0.0.1:{}", self.ports.pbx);
        let cid_str = format!("{scenario}-{nonce}-%u@fiche.test");
        let mut caller = self.sipp(
            "caller",
            &caller_xml,
            self.ports.caller,
            &["-cid_str".into(), cid_str, remote],
        )?;
        let limit = SIPP_TIMEOUT + Duration::from_secs(5);
        let mut sipp = Vec::new();
        let status = caller.0.wait(limit).await;
        sipp.push(outcome(&caller, status));
        for phone in &mut phones {
            let status = phone.0.wait(limit).await;
            sipp.push(outcome(phone, status));
        }
        let events = match &mut events {
            Some(stream) => stream.collect(EVENTS_TIMEOUT, QUIET_AFTER_END).await,
            None => Vec::new(),
        };
        Ok(Played {
            scenario: scenario.to_owned(),
            call_id,
            events,
            sipp,
        })
    }

    /// The call `source_key` (SIP Call-ID) as `GET /api/calls/live` shows it,
    /// once it shows it ended (bounded wait; the last state seen otherwise).
    pub async fn live_call(&self, source_key: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = None;
        loop {
            let (status, body) =
                http::get_as(self.ports.http, "/api/calls/live", &self.token).await?;
            if status != 200 {
                bail!("GET /api/calls/live answered {status}: {body}");
            }
            let calls: Value = serde_json::from_str(&body)
                .with_context(|| format!("/api/calls/live is not JSON: {body}"))?;
            let Some(list) = calls.as_array() else {
                bail!("/api/calls/live is not a JSON array: {body}");
            };
            if let Some(call) = list.iter().find(|c| c["source_key"] == source_key) {
                if call["state"] == "ended" {
                    return Ok(call.clone());
                }
                last = Some(call.clone());
            }
            if Instant::now() >= deadline {
                return last.with_context(|| {
                    format!("/api/calls/live never listed call {source_key}: {body}")
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn sipp(
        &self,
        name: &str,
        scenario: &Path,
        port: u16,
        extra: &[String],
    ) -> anyhow::Result<(Process, PathBuf, PathBuf)> {
        let messages = self.dir().join(format!("{name}.messages.log"));
        let errors = self.dir().join(format!("{name}.errors.log"));
        let mut args: Vec<String> = vec![
            "-sf".into(),
            scenario.display().to_string(),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-m".into(),
            "1".into(),
            "-nostdin".into(),
            "-timeout".into(),
            format!("{}s", SIPP_TIMEOUT.as_secs()),
            "-timeout_error".into(),
            "-trace_msg".into(),
            "-message_file".into(),
            messages.display().to_string(),
            "-trace_err".into(),
            "-error_file".into(),
            errors.display().to_string(),
        ];
        args.extend(extra.iter().cloned());
        let process = Process::spawn(
            name,
            Path::new("sipp"),
            &args,
            &[],
            self.dir(),
            &self.dir().join(format!("{name}.out")),
            SIPP_TIMEOUT + Duration::from_secs(3),
        )?;
        Ok((process, messages, errors))
    }
}

async fn start_fiche(dir: &WorkDir, ports: Ports) -> anyhow::Result<Process> {
    let fiche_bin = fiche_binary()?;
    let mut fiche = Process::spawn(
        "fiche",
        &fiche_bin,
        &["serve".to_owned()],
        &[
            ("FICHE_HTTP_ADDR", format!("127.0.0.1:{}", ports.http)),
            ("FICHE_HEP_ADDR", format!("127.0.0.1:{}", ports.hep)),
            (
                "FICHE_DATABASE_URL",
                format!("sqlite://{}/fiche.db", dir.path().display()),
            ),
            ("FICHE_AGENT_EXTENSIONS", r"2\d\d".to_owned()),
            (
                "FICHE_ADMIN_PASSWORD",
                crate::auth::ADMIN_PASSWORD.to_owned(),
            ),
            // Plain logs: they end up in failure messages.
            ("NO_COLOR", "1".to_owned()),
            (
                "FICHE_WEB_ROOT",
                repo_root().join("web-popup").display().to_string(),
            ),
            (
                "FICHE_LOG",
                std::env::var("FICHE_LOG").unwrap_or_else(|_| "info,fiche_pbx=debug".into()),
            ),
        ],
        dir.path(),
        &dir.path().join("fiche.log"),
        SERVICE_LIMIT,
    )?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok((200, _)) = http::get(ports.http, "/healthz").await {
            break;
        }
        if fiche.try_status().is_some() || Instant::now() >= deadline {
            bail!(
                "fiche did not answer /healthz on 127.0.0.1:{}; its log:\n{}",
                ports.http,
                fiche.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(fiche)
}

async fn start_kamailio(dir: &WorkDir, ports: Ports) -> anyhow::Result<Process> {
    let kamailio_bin =
        find_in_path("kamailio").context("kamailio is not installed (apt-get install kamailio)")?;
    find_in_path("sipp").context("sipp is not installed (apt-get install sip-tester)")?;
    let config = repo_root().join("sip-test-scripts/kamailio.cfg");
    let args: Vec<String> = [
        "-f".to_owned(),
        config.display().to_string(),
        "-DD".into(),
        "-E".into(),
        "-Y".into(),
        dir.path().display().to_string(),
        "-w".into(),
        dir.path().display().to_string(),
        "-A".into(),
        format!("PBX_PORT={}", ports.pbx),
        "-A".into(),
        format!("HEP_URI=\"sip:127.0.0.1:{}\"", ports.hep),
        "-A".into(),
        format!("PHONE_201_PORT={}", ports.phone_201),
        "-A".into(),
        format!("PHONE_202_PORT={}", ports.phone_202),
        "-A".into(),
        format!("PHONE_203_PORT={}", ports.phone_203),
        "-A".into(),
        format!("TRUNK_PORT={}", ports.trunk),
    ]
    .into();
    let mut kamailio = Process::spawn(
        "kamailio",
        &kamailio_bin,
        &args,
        &[],
        dir.path(),
        &dir.path().join("kamailio.log"),
        SERVICE_LIMIT,
    )?;
    if let Err(e) = wait_udp_bound(ports.pbx, &mut kamailio).await {
        bail!("{e:#}; kamailio log:\n{}", kamailio.log_tail(40));
    }
    Ok(kamailio)
}

fn outcome(
    (process, messages, errors): &(Process, PathBuf, PathBuf),
    status: anyhow::Result<ExitStatus>,
) -> SippOutcome {
    SippOutcome {
        name: process.name().to_owned(),
        code: status.ok().and_then(|s| s.code()),
        messages_log: messages.clone(),
        errors_log: errors.clone(),
    }
}

/// Waits until something listens on 127.0.0.1:`port`/udp, or `process` exits,
/// or [`READY_TIMEOUT`] passes. Reads /proc/net/udp: binding the port ourselves
/// to test it would race with the program.
async fn wait_udp_bound(port: u16, process: &mut Process) -> anyhow::Result<()> {
    let needle = format!(" 0100007F:{port:04X} 00000000:0000 07 ");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let table = std::fs::read_to_string("/proc/net/udp").context("reading /proc/net/udp")?;
        if table.contains(&needle) {
            return Ok(());
        }
        if process.try_status().is_some() {
            bail!(
                "{} exited before listening on udp {port}:\n{}",
                process.name(),
                process.log_tail(20)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "{} not listening on udp {port} after {READY_TIMEOUT:?}",
                process.name()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The repository root (the parent of this crate).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The `fiche` binary under test: `FICHE_BIN` when set (an older or a release
/// build, on purpose), else the one cargo built for the running test binary of
/// `fiche-server` — never a leftover `target/debug/fiche`.
pub fn fiche_binary() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("FICHE_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => built_with_this_test()?,
    };
    if !path.is_file() {
        bail!(
            "no fiche binary at {}: run the suites with `cargo test -p fiche-server --test e2e`, or set FICHE_BIN",
            path.display()
        );
    }
    Ok(path)
}

/// The `fiche` cargo built beside the running test binary: `CARGO_BIN_EXE_fiche`,
/// which cargo sets when it runs a test of `fiche-server`, else (the test binary
/// started by hand, or a cargo that does not set it at run time) the binary two
/// folders up from it (`target/debug/deps/e2e-…` → `target/debug/fiche`), the
/// layout cargo builds both in.
fn built_with_this_test() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("CARGO_BIN_EXE_fiche") {
        return Ok(PathBuf::from(bin));
    }
    let test = std::env::current_exe().context("the path of the running test")?;
    let profile = test
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("no target folder above {}", test.display()))?;
    Ok(profile.join("fiche"))
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

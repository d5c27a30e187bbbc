//! The real `fiche serve` fed by AMI test servers: start-up with the AMI
//! source given by `FICHE_AMI_*` variables or a TOML file, a gate in front of
//! the AMI server so that no event is replayed before the test listens on
//! `/ws`, and a hard kill by PID for restart tests.

use crate::http;
use crate::process::Process;
use crate::testbed::{fiche_binary, repo_root};
use crate::ws::EventStream;
use anyhow::{bail, Context};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Hard bound of one Fiche process (the test is far shorter).
const FICHE_LIMIT: Duration = Duration::from_secs(90);
/// How long start-up may take before the test gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Most bytes of client traffic a gate keeps for inspection.
const MAX_RECORDED: usize = 256 * 1024;

/// A TCP relay in front of an AMI server. Connections are accepted at once but
/// held, unanswered, until [`AmiGate::open`]: Fiche connects at start-up, and
/// the AMI test server starts its replay as soon as a client has logged in,
/// before the test could subscribe to `/ws`. Records what clients send, to
/// check what went over the wire (MD5 key or plain secret).
#[derive(Debug)]
pub struct AmiGate {
    addr: SocketAddr,
    open: watch::Sender<bool>,
    sent: Arc<Mutex<Vec<u8>>>,
    task: JoinHandle<()>,
}

impl AmiGate {
    /// Listens on 127.0.0.1:0, relaying to `upstream` once opened.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (open, _) = watch::channel(false);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(accept(listener, upstream, open.subscribe(), sent.clone()));
        Ok(Self {
            addr,
            open,
            sent,
            task,
        })
    }

    /// Where Fiche must connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Lets held and future connections through.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Everything clients sent through the gate so far (lossy UTF-8).
    pub fn client_text(&self) -> String {
        let sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&sent).into_owned()
    }
}

impl Drop for AmiGate {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet: every relay stops.
        self.task.abort();
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    open: watch::Receiver<bool>,
    sent: Arc<Mutex<Vec<u8>>>,
) {
    let mut relays = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        relays.spawn(relay(client, upstream, open.clone(), sent.clone()));
        while relays.try_join_next().is_some() {}
    }
}

/// Relays one connection; when either side closes, both are closed, as a
/// dropped AMI connection is.
async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    mut open: watch::Receiver<bool>,
    sent: Arc<Mutex<Vec<u8>>>,
) {
    if open.wait_for(|open| *open).await.is_err() {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upward = async {
        let mut buf = vec![0u8; 8192];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            {
                let mut sent = sent.lock().unwrap_or_else(PoisonError::into_inner);
                let room = MAX_RECORDED.saturating_sub(sent.len()).min(n);
                sent.extend_from_slice(&buf[..room]);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let downward = tokio::io::copy(&mut server_read, &mut client_write);
    tokio::select! {
        () = upward => {}
        _ = downward => {}
    }
}

/// How Fiche learns about its AMI source(s).
#[derive(Debug, Clone)]
pub enum AmiSetup {
    /// `FICHE_AMI_ADDR`, `FICHE_AMI_USER`, `FICHE_AMI_SECRET`.
    Env {
        /// `host:port`.
        addr: String,
        /// Manager user.
        username: String,
        /// Manager secret.
        secret: String,
    },
    /// A TOML file (written to the scratch folder) passed with `--config`.
    Toml(String),
}

/// A scratch folder for Fiche's database and logs; removed on drop unless the
/// test is failing (or `FICHE_E2E_KEEP` is set).
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// A new empty folder under the system temp dir.
    pub fn create() -> anyhow::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let path = std::env::temp_dir().join(format!(
            "fiche-e2e-ami-{}-{}-{nanos}",
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

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("FICHE_E2E_KEEP").is_some() {
            eprintln!("e2e logs kept in {}", self.path.display());
        } else {
            drop(std::fs::remove_dir_all(&self.path));
        }
    }
}

/// One running `fiche serve` on loopback ports of its own choosing (port 0,
/// read back from its log: no port chosen here can be taken meanwhile by a
/// test running in parallel); stopped by PID on drop.
#[derive(Debug)]
pub struct FicheProcess {
    process: Process,
    http_port: u16,
    hep_port: u16,
    log: PathBuf,
    /// The admin's session token, when `admin` has the harness's password.
    token: Option<String>,
}

impl FicheProcess {
    /// Starts `fiche serve` in `scratch` (database `fiche.db` there, log
    /// `<name>.log`), agent extensions `2\d\d`, `extra` variables last (they
    /// win), and waits for `/healthz`.
    pub async fn start(
        scratch: &Scratch,
        name: &str,
        ami: &AmiSetup,
        extra: &[(&'static str, String)],
    ) -> anyhow::Result<Self> {
        Self::start_binary(&fiche_binary()?, scratch, name, ami, extra).await
    }

    /// [`FicheProcess::start`] with another copy of the binary (one copied
    /// alone into an empty folder, say).
    pub async fn start_binary(
        binary: &Path,
        scratch: &Scratch,
        name: &str,
        ami: &AmiSetup,
        extra: &[(&'static str, String)],
    ) -> anyhow::Result<Self> {
        let dir = scratch.path();
        let mut args = Vec::new();
        let mut envs = vec![
            ("FICHE_HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("FICHE_HEP_ADDR", "127.0.0.1:0".to_owned()),
            (
                "FICHE_DATABASE_URL",
                format!("sqlite://{}/fiche.db", dir.display()),
            ),
            ("FICHE_AGENT_EXTENSIONS", r"2\d\d".to_owned()),
            (
                "FICHE_ADMIN_PASSWORD",
                crate::auth::ADMIN_PASSWORD.to_owned(),
            ),
            ("NO_COLOR", "1".to_owned()),
            (
                "FICHE_WEB_ROOT",
                repo_root().join("web-popup").display().to_string(),
            ),
            (
                "FICHE_LOG",
                std::env::var("FICHE_LOG").unwrap_or_else(|_| "info,fiche_pbx=debug".into()),
            ),
        ];
        match ami {
            AmiSetup::Env {
                addr,
                username,
                secret,
            } => {
                envs.push(("FICHE_AMI_ADDR", addr.clone()));
                envs.push(("FICHE_AMI_USER", username.clone()));
                envs.push(("FICHE_AMI_SECRET", secret.clone()));
            }
            AmiSetup::Toml(text) => {
                let file = dir.join(format!("{name}.toml"));
                std::fs::write(&file, text)
                    .with_context(|| format!("writing {}", file.display()))?;
                args.push("--config".to_owned());
                args.push(file.display().to_string());
                // Empty means unset: an AMI source from the test runner's own
                // environment must not replace the file's.
                for key in ["FICHE_AMI_ADDR", "FICHE_AMI_USER", "FICHE_AMI_SECRET"] {
                    envs.push((key, String::new()));
                }
            }
        }
        envs.extend(extra.iter().cloned());
        args.push("serve".to_owned());
        let log = dir.join(format!("{name}.log"));
        let mut process = Process::spawn(name, binary, &args, &envs, dir, &log, FICHE_LIMIT)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let text = std::fs::read(&log)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            let http_port = bound_port(&text, "HTTP listening");
            let hep_port = bound_port(&text, "HEP UDP listening");
            if let (Some(http_port), Some(hep_port)) = (http_port, hep_port) {
                if let Ok((200, _)) = http::get(http_port, "/healthz").await {
                    // A test that lets Fiche pick the admin password logs in itself.
                    let token = crate::auth::admin_token(http_port).await.ok();
                    return Ok(Self {
                        process,
                        http_port,
                        hep_port,
                        log,
                        token,
                    });
                }
            }
            if process.try_status().is_some() || Instant::now() >= deadline {
                bail!(
                    "fiche did not log its ports and answer /healthz; its log:\n{}",
                    process.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The HTTP port (API and websocket).
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The HEP port (UDP and TCP).
    pub fn hep_port(&self) -> u16 {
        self.hep_port
    }

    /// Subscribes to `/ws/events` as admin; the subscription is in place when this returns.
    pub async fn events(&self) -> anyhow::Result<EventStream> {
        let token = self.token.as_deref().context("not logged in as admin")?;
        EventStream::connect(self.http_port, token).await
    }

    /// `GET /healthz`'s status code.
    pub async fn health(&self) -> anyhow::Result<u16> {
        Ok(http::get(self.http_port, "/healthz").await?.0)
    }

    /// `GET <path>` as the admin, parsed as JSON.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let token = self.token.as_deref().context("not logged in as admin")?;
        let (status, body) = http::get_as(self.http_port, path, token).await?;
        if status != 200 {
            bail!("GET {path} answered {status}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("{path} is not JSON: {body}"))
    }

    /// `GET /api/calls/live`, parsed.
    pub async fn live_calls(&self) -> anyhow::Result<Vec<Value>> {
        let token = self.token.as_deref().context("not logged in as admin")?;
        let (status, body) = http::get_as(self.http_port, "/api/calls/live", token).await?;
        if status != 200 {
            bail!("GET /api/calls/live answered {status}: {body}");
        }
        let calls: Value = serde_json::from_str(&body)
            .with_context(|| format!("/api/calls/live is not JSON: {body}"))?;
        match calls {
            Value::Array(list) => Ok(list),
            _ => bail!("/api/calls/live is not a JSON array: {body}"),
        }
    }

    /// Fiche's whole log (stdout and stderr).
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The last lines of Fiche's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.process.try_status().is_none()
    }

    /// Kills Fiche at once (SIGKILL to its process group, by PID), as a crash
    /// or a power cut would: no goodbye to the PBX.
    /// Asks Fiche to stop as an operator would (SIGTERM, passed on by
    /// `timeout`), without waiting for it to exit.
    pub fn terminate(&self) -> anyhow::Result<()> {
        let pid = self.process.pid();
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()?;
        if !status.success() {
            bail!("kill -TERM {pid} failed: {status}");
        }
        Ok(())
    }

    pub async fn kill(mut self) -> anyhow::Result<()> {
        let pid = self.process.pid();
        let status = std::process::Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .arg(format!("-{pid}"))
            .status()?;
        if !status.success() {
            bail!("kill -KILL -{pid} failed: {status}");
        }
        self.process.wait(Duration::from_secs(5)).await?;
        Ok(())
    }
}

/// The port of `fiche serve`'s start-up line `<what> addr=Some(127.0.0.1:<port>)`.
fn bound_port(log: &str, what: &str) -> Option<u16> {
    let line = log.lines().find(|line| line.contains(what))?;
    let (_, rest) = line.split_once("addr=Some(127.0.0.1:")?;
    let (port, _) = rest.split_once(')')?;
    port.parse().ok().filter(|port| *port != 0)
}

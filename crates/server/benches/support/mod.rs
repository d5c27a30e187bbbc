//! Shared by the load benches (cti_load, login_load, pop_load): settings from the
//! environment, the release `fiche` binary run as `fiche serve` on loopback with a
//! SQLite database in a temp dir, the server's CPU and memory from /proc, and
//! latency percentiles.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The first-run admin's password, given to every bench server.
pub(crate) const ADMIN_PASSWORD: &str = "bench-admin-password";

/// A numeric setting from the environment; `default` when unset or not a number.
pub(crate) fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The fiche binary under test: `FICHE_BIN`, else target/release/fiche, which
/// must exist (the benches measure the release build, not the bench profile).
pub(crate) fn fiche_bin() -> anyhow::Result<PathBuf> {
    let bin = std::env::var_os("FICHE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/fiche")
        });
    anyhow::ensure!(
        bin.is_file(),
        "no {}: run `cargo build --release -p fiche-server` first",
        bin.display()
    );
    Ok(bin)
}

/// A temp dir holding the bench's SQLite database and the server's log; both go
/// when it is dropped.
pub(crate) struct Workdir {
    bin: PathBuf,
    dir: tempfile::TempDir,
    db: String,
}

impl Workdir {
    pub(crate) fn new() -> anyhow::Result<Workdir> {
        let bin = fiche_bin()?;
        let dir = tempfile::tempdir()?;
        let db = format!("sqlite://{}/fiche.db", dir.path().display());
        Ok(Workdir { bin, dir, db })
    }

    /// Runs `fiche <args>` on the bench database and returns its trimmed stdout.
    // Only cti_load sets things up with the command line (`fiche cti token add`).
    #[allow(dead_code)]
    pub(crate) fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(&self.bin)
            .args(args)
            .env("FICHE_DATABASE_URL", &self.db)
            .env_remove("FICHE_CONFIG")
            .output()?;
        anyhow::ensure!(output.status.success(), "{} failed", args.join(" "));
        Ok(String::from_utf8(output.stdout)?.trim().to_owned())
    }

    /// Starts `fiche serve` with its output in the log file. By default it listens
    /// on loopback ports the system picks (see [`Server::wait_for_port`]), with
    /// [`ADMIN_PASSWORD`] and agent extensions `2\d\d`; `env` adds to or overrides
    /// the `FICHE_*` settings.
    pub(crate) fn serve(self, env: &[(&str, &str)]) -> anyhow::Result<Server> {
        let log_path = self.dir.path().join("fiche.log");
        let log = std::fs::File::create(&log_path)?;
        let mut command = Command::new(&self.bin);
        command
            .arg("serve")
            .env("FICHE_DATABASE_URL", &self.db)
            .env("FICHE_HTTP_ADDR", "127.0.0.1:0")
            .env("FICHE_HEP_ADDR", "127.0.0.1:0")
            .env("FICHE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("FICHE_AGENT_EXTENSIONS", r"2\d\d")
            .env("NO_COLOR", "1")
            .env_remove("FICHE_CONFIG");
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(Server {
            child,
            stopped: false,
            log_path,
            _dir: self,
        })
    }
}

/// A running `fiche serve`, killed when dropped (before its temp dir goes).
pub(crate) struct Server {
    child: Child,
    stopped: bool,
    log_path: PathBuf,
    _dir: Workdir,
}

impl Server {
    // cti_load does not watch the server's memory.
    #[allow(dead_code)]
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to 30 s for the log line `HTTP listening … addr=Some(127.0.0.1:<port>)`
    /// and returns the port. `FICHE_LOG` must let info lines through.
    // pop_load logs warnings only, picks its ports itself and polls /healthz.
    #[allow(dead_code)]
    pub(crate) fn wait_for_port(&self) -> anyhow::Result<u16> {
        self.wait_for_log(|line| {
            let (_, rest) = line
                .contains("HTTP listening")
                .then_some(line)?
                .split_once("addr=Some(127.0.0.1:")?;
            rest.split_once(')')?.0.parse().ok()
        })
    }

    /// Waits up to 30 s for a log line that `parse` accepts, and returns what it made of it.
    // pop_load does not read the log: it picks its ports itself and polls /healthz.
    #[allow(dead_code)]
    pub(crate) fn wait_for_log<T>(&self, parse: impl Fn(&str) -> Option<T>) -> anyhow::Result<T> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let mut text = String::new();
            if let Ok(mut file) = std::fs::File::open(&self.log_path) {
                drop(file.read_to_string(&mut text));
            }
            if let Some(found) = text.lines().find_map(&parse) {
                return Ok(found);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("fiche did not start; see {}", self.log_path.display())
    }

    /// The server's log so far (empty if unreadable).
    // Only pop_load prints it, when the bench fails.
    #[allow(dead_code)]
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Kills the server and waits for it to exit; dropping does the same.
    pub(crate) fn stop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            drop(self.child.kill());
            drop(self.child.wait());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A process's CPU time (user + system), resident memory now and at its peak,
/// and thread count, from /proc.
// cti_load does not watch the server; login_load and pop_load read different fields.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Usage {
    pub(crate) cpu: Duration,
    pub(crate) rss_kib: u64,
    pub(crate) peak_kib: u64,
    pub(crate) threads: usize,
}

// As for the struct: each bench uses its own part of it, cti_load none.
#[allow(dead_code)]
impl Usage {
    pub(crate) fn of(pid: u32) -> anyhow::Result<Usage> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .ok_or_else(|| anyhow::anyhow!("odd /proc stat"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        // Linux reports clock ticks of 1/100 s (USER_HZ) on every common platform.
        Ok(Usage {
            cpu: Duration::from_millis(ticks * 10),
            rss_kib: field("VmRSS:"),
            peak_kib: field("VmHWM:"),
            threads: field("Threads:") as usize,
        })
    }

    pub(crate) fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    pub(crate) fn peak_mib(&self) -> f64 {
        self.peak_kib as f64 / 1024.0
    }
}

/// The `p` quantile (0.0 to 1.0) of `sorted` latencies; zero when there are none.
// setup_flood measures no latency.
#[allow(dead_code)]
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

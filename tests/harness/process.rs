//! Child processes that cannot outlive the test that started them.
//!
//! Every program runs under `timeout --kill-after`, so even a test runner that
//! is itself killed (no `Drop`) leaves nothing running past the limit; and
//! [`Process`] stops its child on drop — by PID: SIGTERM, a bounded wait, then
//! SIGKILL to the child's own process group (Kamailio forks workers).

use anyhow::{bail, Context};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a stopped process gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

/// A running program with its output in a log file; stopped on drop.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Process {
    /// Starts `program args` under `timeout -k 2 <limit>`, in a process group of
    /// its own, stdout and stderr appended to `log`, stdin closed.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(&str, String)],
        cwd: &Path,
        log: &Path,
        limit: Duration,
    ) -> anyhow::Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut command = Command::new("timeout");
        command
            .arg("--kill-after=2")
            .arg(format!("{}", limit.as_secs().max(1)))
            .arg(program)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        for (key, value) in envs {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            status: None,
        })
    }

    /// The name given at spawn time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The PID of the child (`timeout`, the leader of the program's process group).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file holding the program's output.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The exit status, if the program has exited. Reaping is done here only,
    /// after the rest of the process group got SIGKILL: while the leader is an
    /// unreaped zombie its PID (the group id) cannot be reused by anyone else.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            match is_zombie(self.child.id()) {
                Some(true) => {
                    signal_group(self.child.id(), "KILL");
                    self.status = self.child.wait().ok();
                }
                Some(false) => {}
                None => self.status = self.child.try_wait().ok().flatten(),
            }
        }
        self.status
    }

    /// Waits (polling, without blocking the runtime) until the program exits or
    /// `limit` passes; on timeout the program is stopped and an error returned.
    pub async fn wait(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_status() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.stop();
                bail!("{} still running after {limit:?}; stopped", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last `lines` lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Stops the program and everything in its process group; bounded by [`GRACE`].
    pub fn stop(&mut self) {
        if self.try_status().is_some() {
            return;
        }
        let pid = self.child.id();
        // `timeout` passes SIGTERM on to the program's group: Kamailio then
        // stops its workers itself.
        signal(pid, "TERM");
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline {
            if self.try_status().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal_group(pid, "KILL");
        drop(self.child.kill());
        self.status = self.child.wait().ok();
    }
}

/// Whether `pid` (our unreaped child) has exited; `None` when /proc cannot tell.
fn is_zombie(pid: u32) -> Option<bool> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": the state follows the last ')', comm may hold spaces.
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.trim_start().starts_with(['Z', 'X']))
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal(pid: u32, signal: &str) {
    drop(
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .stderr(Stdio::null())
            .status(),
    );
}

fn signal_group(pgid: u32, signal: &str) {
    drop(
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg("--")
            .arg(format!("-{pgid}"))
            .stderr(Stdio::null())
            .status(),
    );
}

/// The last `lines` lines of a text file (lossy UTF-8), or a note why not.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

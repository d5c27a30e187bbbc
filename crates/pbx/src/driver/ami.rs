//! The tokio driver of one AMI source: owns the TCP connection to one Asterisk.
//!
//! Connects with exponential backoff and jitter, logs in (plain or MD5
//! challenge), subscribes to call events, resyncs live calls with
//! `CoreShowChannels` after every (re)connect, pings to detect a dead manager,
//! and runs click-to-call `Originate` commands. All protocol logic is in
//! [`crate::ami`]; this module only moves bytes and time.
//!
//! Backpressure: call events are sent on a bounded channel; when it is full the
//! driver stops reading the socket (Asterisk buffers, then drops the session
//! if it must; the next resync repairs the state).

use crate::ami::{
    md5_login_key, Action, ActionOutcome, AmiEvent, AmiFramer, AmiTracker, ChannelPatterns,
    Originate, PendingActions, TrackerConfig,
};
use crate::direction::ExtensionPatterns;
use crate::model::{CallEvent, CallId};
use bytes::BytesMut;
use chrono::Utc;
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an `Originate` may wait for its reply (the reply to an async
/// originate comes at once; the call itself is tracked through events).
const ORIGINATE_REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `CoreShowChannels` may take on a busy PBX.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the agent's phone rings on a click-to-call.
const ORIGINATE_RING_TIMEOUT: Duration = Duration::from_secs(30);
/// Event classes subscribed to: calls, queues/agents, user events, system.
const EVENT_MASK: &str = "call,agent,user,system";
/// How often live calls are checked against `CoreShowChannels` on a healthy connection.
const RESYNC_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// At most this many click-to-calls wait for their reply at once.
const MAX_PENDING_ORIGINATES: usize = 32;
/// Read buffer start size; the framer bounds what it keeps.
const READ_BUFFER: usize = 64 * 1024;

/// One configured AMI source (one Asterisk).
#[derive(Clone)]
pub struct AmiSourceConfig {
    /// Name of the source in logs (e.g. `pbx-paris`).
    pub name: String,
    /// `host:port` of the manager, usually port 5038.
    pub addr: String,
    /// Manager user.
    pub username: String,
    /// Manager secret; never logged.
    pub secret: String,
    /// Log in with the MD5 challenge instead of sending the secret.
    pub use_md5: bool,
    /// How often to ping the manager.
    pub ping_interval: Duration,
    /// How long a ping (or the login) may stay unanswered before the connection is dropped.
    pub ping_timeout: Duration,
    /// Which numbers are agent extensions.
    pub agents: ExtensionPatterns,
    /// How to read extensions from channel names.
    pub channel_patterns: ChannelPatterns,
    /// Phones named by an account: what a channel pattern reads → the extension.
    pub aliases: HashMap<String, String>,
    /// Channel technology of agents' phones for click-to-call (`PJSIP`, `SIP`).
    pub originate_technology: String,
    /// Dialplan context in which the customer's number is dialled (`from-internal`).
    pub originate_context: String,
    /// First reconnect delay; doubled after each failure up to `reconnect_max`.
    pub reconnect_initial: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// The connection's state, kept by the driver for `/metrics`.
    pub status: Arc<AmiStatus>,
}

/// Where an AMI source's connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmiState {
    /// No connection: waiting to reconnect, or stopped.
    Disconnected,
    /// Connecting, or connected and logging in.
    Connecting,
    /// Logged in: events flow.
    LoggedIn,
}

impl AmiState {
    /// Every state, in a fixed order.
    pub const ALL: [AmiState; 3] = [
        AmiState::Disconnected,
        AmiState::Connecting,
        AmiState::LoggedIn,
    ];

    /// The state as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            AmiState::Disconnected => "disconnected",
            AmiState::Connecting => "connecting",
            AmiState::LoggedIn => "logged_in",
        }
    }
}

/// An AMI source's connection state and how often it was lost, readable from
/// other tasks without a lock.
#[derive(Debug)]
pub struct AmiStatus {
    state: AtomicU8,
    losses: AtomicU64,
}

impl Default for AmiStatus {
    fn default() -> Self {
        Self {
            state: AtomicU8::new(AmiState::Disconnected as u8),
            losses: AtomicU64::new(0),
        }
    }
}

impl AmiStatus {
    /// The state now.
    pub fn state(&self) -> AmiState {
        AmiState::ALL
            .get(usize::from(self.state.load(Relaxed)))
            .copied()
            .unwrap_or(AmiState::Disconnected)
    }

    /// Connections lost or refused since start (a failed connect or login counts).
    pub fn losses(&self) -> u64 {
        self.losses.load(Relaxed)
    }

    fn set(&self, state: AmiState) {
        self.state.store(state as u8, Relaxed);
    }
}

impl AmiSourceConfig {
    /// A source with the usual defaults: plain login, ping every 20 s with a 5 s
    /// timeout, PJSIP phones, `from-internal`, reconnect 1 s → 60 s.
    pub fn new(
        name: impl Into<String>,
        addr: impl Into<String>,
        username: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            addr: addr.into(),
            username: username.into(),
            secret: secret.into(),
            use_md5: false,
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(5),
            agents: ExtensionPatterns::default(),
            channel_patterns: ChannelPatterns::default(),
            aliases: HashMap::new(),
            originate_technology: "PJSIP".into(),
            originate_context: "from-internal".into(),
            reconnect_initial: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            status: Arc::default(),
        }
    }
}

impl std::fmt::Debug for AmiSourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmiSourceConfig")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .field("use_md5", &self.use_md5)
            .field("ping_interval", &self.ping_interval)
            .field("ping_timeout", &self.ping_timeout)
            .field("agents", &self.agents)
            .field("originate_technology", &self.originate_technology)
            .field("originate_context", &self.originate_context)
            .finish_non_exhaustive()
    }
}

/// What other tasks ask of an AMI source.
#[derive(Debug)]
#[non_exhaustive]
pub enum AmiCommand {
    /// Click-to-call: ring the agent's phone, then dial `number` once answered.
    Originate {
        /// The agent's extension (must match the agent patterns).
        agent_extension: String,
        /// The customer's number.
        number: String,
        /// Caller id shown on the agent's phone; the number when `None`.
        caller_id: Option<String>,
        /// The id the call will have in the call-event stream, or why not.
        reply: oneshot::Sender<Result<CallId, OriginateError>>,
    },
}

/// Why a click-to-call was not placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OriginateError {
    /// The AMI connection is down.
    #[error("the AMI connection is down")]
    NotConnected,
    /// The extension is not an agent's or the number has characters a dial string must not.
    #[error("invalid {field}: {value:?}")]
    Invalid {
        /// `agent_extension` or `number`.
        field: &'static str,
        /// The value refused.
        value: String,
    },
    /// Asterisk refused the action.
    #[error("Asterisk refused the originate: {0}")]
    Rejected(String),
    /// No reply in time.
    #[error("no reply to the originate in time")]
    TimedOut,
    /// Too many click-to-calls are waiting.
    #[error("too many click-to-calls in progress")]
    Busy,
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("the manager closed the connection")]
    Closed,
    #[error("login refused: {0}")]
    LoginRefused(String),
    #[error("no reply to {0} in time: connection presumed dead")]
    Timeout(&'static str),
    #[error("the call-event receiver is gone")]
    EventsClosed,
}

/// What an action in flight is for.
enum Pending {
    Challenge,
    Login,
    Events,
    Ping,
    List,
    Originate {
        call_id: CallId,
        reply: oneshot::Sender<Result<CallId, OriginateError>>,
    },
    Logoff,
}

impl Pending {
    fn name(&self) -> &'static str {
        match self {
            Pending::Challenge => "Challenge",
            Pending::Login => "Login",
            Pending::Events => "Events",
            Pending::Ping => "Ping",
            Pending::List => "CoreShowChannels",
            Pending::Originate { .. } => "Originate",
            Pending::Logoff => "Logoff",
        }
    }
}

/// Runs one AMI source until `shutdown` is cancelled: connect, log in, resync,
/// track, reconnect. Call events go to `events`; `commands` carry click-to-calls.
pub async fn run(
    config: AmiSourceConfig,
    events: mpsc::Sender<CallEvent>,
    mut commands: mpsc::Receiver<AmiCommand>,
    shutdown: CancellationToken,
) {
    let mut tracker = AmiTracker::new(TrackerConfig {
        agents: config.agents.clone(),
        channels: config.channel_patterns.clone(),
        aliases: config.aliases.clone(),
        pbx: config.name.clone(),
        ..TrackerConfig::default()
    });
    let mut failures: u32 = 0;
    let mut connection: u64 = 0;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        connection += 1;
        let mut ready = false;
        config.status.set(AmiState::Connecting);
        let result = session(
            &config,
            connection,
            &mut tracker,
            &events,
            &mut commands,
            &shutdown,
            &mut ready,
        )
        .await;
        config.status.set(AmiState::Disconnected);
        match result {
            Ok(()) => return,
            Err(SessionError::EventsClosed) => {
                tracing::info!(source = %config.name, "AMI source stops: nobody reads its call events");
                return;
            }
            Err(error) => {
                config.status.losses.fetch_add(1, Relaxed);
                tracing::warn!(source = %config.name, addr = %config.addr, %error, "AMI connection lost");
            }
        }
        failures = if ready { 1 } else { failures.saturating_add(1) };
        let delay = backoff(&config, failures);
        tracing::info!(source = %config.name, delay_ms = delay.as_millis() as u64, "AMI reconnecting");
        let wake = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(wake) => break,
                command = commands.recv() => match command {
                    Some(AmiCommand::Originate { reply, .. }) => {
                        let _ = reply.send(Err(OriginateError::NotConnected));
                    }
                    // Nobody can send commands any more; events still flow.
                    None => tokio::time::sleep_until(wake).await,
                },
            }
        }
    }
}

/// Exponential backoff with jitter: a random delay in [d/2, d], d doubling per failure.
fn backoff(config: &AmiSourceConfig, failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let full = config
        .reconnect_initial
        .saturating_mul(1 << exponent)
        .min(config.reconnect_max);
    let half = full / 2;
    let jitter = rand::thread_rng().gen_range(0..=half.as_millis().max(1) as u64);
    half + Duration::from_millis(jitter)
}

fn valid_dial_string(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '*' | '#'))
}

#[allow(clippy::too_many_arguments)] // reason: the session borrows the run loop's state piecewise.
async fn session(
    config: &AmiSourceConfig,
    connection: u64,
    tracker: &mut AmiTracker,
    events: &mpsc::Sender<CallEvent>,
    commands: &mut mpsc::Receiver<AmiCommand>,
    shutdown: &CancellationToken,
    ready: &mut bool,
) -> Result<(), SessionError> {
    let stream = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&config.addr)) => {
            connected.map_err(|_| SessionError::ConnectTimeout)??
        }
    };
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let mut pending: PendingActions<Pending> = PendingActions::new(format!("fiche-{connection}-"));
    let mut framer = AmiFramer::new();
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let mut next_ping: Option<Instant> = None;
    let mut next_resync: Option<Instant> = None;
    let mut logged_in = false;
    // Once every command sender is gone, `recv` would return `None` at once
    // forever: stop polling it.
    let mut commands_open = true;
    let mut bad_messages: u64 = 0;

    let first = if config.use_md5 {
        (Action::Challenge, Pending::Challenge)
    } else {
        (
            Action::LoginPlain {
                username: config.username.clone(),
                secret: config.secret.clone(),
                events: "off".into(),
            },
            Pending::Login,
        )
    };
    let (_, wire) = pending.send(
        &first.0,
        first.1,
        Instant::now().into_std(),
        config.ping_timeout,
    );
    writer.write_all(wire.as_bytes()).await?;

    let result: Result<(), SessionError> = loop {
        let mut deadline = pending.next_timeout().map(Instant::from_std);
        for at in [next_ping, next_resync].into_iter().flatten() {
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
        if let Some(at) = tracker.next_timeout() {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            let at = Instant::now() + wait;
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
        let sleep_until = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let mut out = String::new();
        tokio::select! {
            _ = shutdown.cancelled() => {
                let (_, wire) = pending.send(&Action::Logoff, Pending::Logoff, Instant::now().into_std(), Duration::from_secs(1));
                let _ = tokio::time::timeout(Duration::from_secs(1), writer.write_all(wire.as_bytes())).await;
                break Ok(());
            }
            read = reader.read_buf(&mut buf) => {
                match read {
                    Ok(0) => break Err(SessionError::Closed),
                    Ok(_) => {}
                    Err(error) => break Err(error.into()),
                }
                let mut fatal = None;
                loop {
                    let message = match framer.decode(&mut buf) {
                        Ok(Some(message)) => message,
                        Ok(None) => break,
                        Err(error) => {
                            // Rate-limited: a peer sending garbage must not flood the log.
                            bad_messages += 1;
                            if bad_messages.is_power_of_two() {
                                tracing::warn!(source = %config.name, %error, bad_messages, "bad AMI message skipped");
                            }
                            continue;
                        }
                    };
                    if message.response().is_some() {
                        let Some((_, tag, outcome)) = pending.on_response(&message) else {
                            continue;
                        };
                        match on_reply(config, tracker, &mut pending, tag, outcome, &mut out) {
                            Ok(true) => {
                                logged_in = true;
                                *ready = true;
                                config.status.set(AmiState::LoggedIn);
                                next_ping = Some(Instant::now() + config.ping_interval);
                                next_resync = Some(Instant::now() + RESYNC_INTERVAL);
                                tracing::info!(source = %config.name, addr = %config.addr, version = ?framer.banner_version(), "AMI logged in");
                            }
                            Ok(false) => {}
                            Err(error) => {
                                fatal = Some(error);
                                break;
                            }
                        }
                        continue;
                    }
                    tracker.handle(Utc::now(), &AmiEvent::from_message(&message));
                }
                if let Some(error) = fatal {
                    break Err(error);
                }
            }
            command = commands.recv(), if logged_in && commands_open => {
                match command {
                    Some(command) => on_command(config, tracker, &mut pending, command, &mut out),
                    None => commands_open = false,
                }
            }
            _ = tokio::time::sleep_until(sleep_until) => {
                let now = Instant::now();
                if next_ping.is_some_and(|p| p <= now) {
                    let (_, wire) = pending.send(&Action::Ping, Pending::Ping, now.into_std(), config.ping_timeout);
                    out.push_str(&wire);
                    next_ping = Some(now + config.ping_interval);
                }
                if next_resync.is_some_and(|r| r <= now) {
                    // A periodic consistency check also ends calls whose
                    // Hangup never reached us.
                    if !tracker.is_resyncing() {
                        tracker.resync_begin();
                        let (_, wire) = pending.send(&Action::CoreShowChannels, Pending::List, now.into_std(), LIST_TIMEOUT);
                        out.push_str(&wire);
                    }
                    next_resync = Some(now + RESYNC_INTERVAL);
                }
                let mut dead = None;
                for (_, tag) in pending.expire(now.into_std()) {
                    match tag {
                        Pending::Originate { reply, .. } => {
                            let _ = reply.send(Err(OriginateError::TimedOut));
                        }
                        Pending::List => {
                            tracker.resync_abort();
                            dead = Some(SessionError::Timeout("CoreShowChannels"));
                        }
                        Pending::Logoff | Pending::Events => {}
                        other => dead = Some(SessionError::Timeout(other.name())),
                    }
                }
                if let Some(error) = dead {
                    break Err(error);
                }
                tracker.handle_timeout(Utc::now());
            }
        }
        while let Some(event) = tracker.poll_event() {
            tokio::select! {
                sent = events.send(event) => {
                    if sent.is_err() {
                        return Err(SessionError::EventsClosed);
                    }
                }
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
        if !out.is_empty() {
            if let Err(error) = writer.write_all(out.as_bytes()).await {
                break Err(error.into());
            }
        }
    };
    // Anything in flight dies with the connection.
    for (_, tag) in pending.drain() {
        if let Pending::Originate { reply, .. } = tag {
            let _ = reply.send(Err(OriginateError::NotConnected));
        }
    }
    if tracker.is_resyncing() {
        tracker.resync_abort();
    }
    result
}

/// Handles the reply to one of our actions; `Ok(true)` when the login just succeeded.
fn on_reply(
    config: &AmiSourceConfig,
    tracker: &mut AmiTracker,
    pending: &mut PendingActions<Pending>,
    tag: Pending,
    outcome: ActionOutcome,
    out: &mut String,
) -> Result<bool, SessionError> {
    let now = Instant::now().into_std();
    match (tag, outcome) {
        (Pending::Challenge, ActionOutcome::Success(reply)) => {
            let challenge = reply.get("Challenge").unwrap_or_default();
            let action = Action::LoginMd5 {
                username: config.username.clone(),
                key: md5_login_key(challenge, &config.secret),
                events: "off".into(),
            };
            let (_, wire) = pending.send(&action, Pending::Login, now, config.ping_timeout);
            out.push_str(&wire);
            Ok(false)
        }
        (Pending::Challenge | Pending::Login, ActionOutcome::Error(message)) => {
            Err(SessionError::LoginRefused(message))
        }
        (Pending::Login, _) => {
            let (_, wire) = pending.send(
                &Action::Events {
                    mask: EVENT_MASK.into(),
                },
                Pending::Events,
                now,
                config.ping_timeout,
            );
            out.push_str(&wire);
            // Events flow from here on; the list that follows marks what is
            // still alive, and live events count as seen too.
            tracker.resync_begin();
            let (_, wire) =
                pending.send(&Action::CoreShowChannels, Pending::List, now, LIST_TIMEOUT);
            out.push_str(&wire);
            Ok(true)
        }
        (Pending::List, ActionOutcome::Error(message)) => {
            tracing::warn!(source = %config.name, error = ?message, "CoreShowChannels refused (manager user needs write=reporting): no resync");
            tracker.resync_abort();
            Ok(false)
        }
        (Pending::Events, ActionOutcome::Error(message)) => {
            tracing::warn!(source = %config.name, error = ?message, "Events refused");
            Ok(false)
        }
        (Pending::Originate { call_id, reply }, ActionOutcome::Success(_)) => {
            let _ = reply.send(Ok(call_id));
            Ok(false)
        }
        (Pending::Originate { reply, .. }, ActionOutcome::Error(message)) => {
            let _ = reply.send(Err(OriginateError::Rejected(message)));
            Ok(false)
        }
        // Ping, list start, Events on, Logoff: nothing to do. Time-outs never reach here.
        _ => Ok(false),
    }
}

fn on_command(
    config: &AmiSourceConfig,
    tracker: &mut AmiTracker,
    pending: &mut PendingActions<Pending>,
    command: AmiCommand,
    out: &mut String,
) {
    let AmiCommand::Originate {
        agent_extension,
        number,
        caller_id,
        reply,
    } = command;
    if !valid_dial_string(&agent_extension) || !config.agents.is_agent(&agent_extension) {
        let _ = reply.send(Err(OriginateError::Invalid {
            field: "agent_extension",
            value: agent_extension,
        }));
        return;
    }
    if !valid_dial_string(&number) {
        let _ = reply.send(Err(OriginateError::Invalid {
            field: "number",
            value: number,
        }));
        return;
    }
    if pending.len() >= MAX_PENDING_ORIGINATES {
        let _ = reply.send(Err(OriginateError::Busy));
        return;
    }
    let channel_id = format!("fiche-{}", uuid::Uuid::new_v4());
    let call_id = tracker.expect_originate(Utc::now(), &channel_id, &agent_extension, &number);
    let action = Action::Originate(Originate {
        channel: format!("{}/{}", config.originate_technology, agent_extension),
        context: config.originate_context.clone(),
        exten: number.clone(),
        caller_id: Some(caller_id.unwrap_or_else(|| number.clone())),
        other_channel_id: format!("{channel_id}-2"),
        channel_id,
        timeout: ORIGINATE_RING_TIMEOUT,
    });
    tracing::info!(source = %config.name, agent = %agent_extension, call_id = %call_id, "click-to-call");
    let (_, wire) = pending.send(
        &action,
        Pending::Originate { call_id, reply },
        Instant::now().into_std(),
        ORIGINATE_REPLY_TIMEOUT,
    );
    out.push_str(&wire);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let config = AmiSourceConfig::new("pbx", "127.0.0.1:5038", "fiche", "s3cr3t-value");
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t-value"));
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let config = AmiSourceConfig::new("pbx", "127.0.0.1:5038", "u", "s");
        for failures in 1..40 {
            let delay = backoff(&config, failures);
            let full = Duration::from_secs(1)
                .saturating_mul(1 << failures.saturating_sub(1).min(16))
                .min(Duration::from_secs(60));
            assert!(delay >= full / 2 && delay <= full, "{failures}: {delay:?}");
        }
    }

    #[test]
    fn dial_strings_are_digits_only() {
        assert!(valid_dial_string("+33612345678"));
        assert!(!valid_dial_string("201&PJSIP/202"));
        assert!(!valid_dial_string(""));
    }
}

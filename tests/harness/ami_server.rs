//! An AMI test server (test support, not product code): speaks the Asterisk
//! Manager Interface for real over TCP on 127.0.0.1, and replays a scripted
//! event stream from `tests/data/ami/*.ami`.
//!
//! What it does: banner line; `Login` plain and MD5 (`Challenge`); `Ping`;
//! `Events`; `CoreShowChannels` answered from the channels the script has
//! created and not hung up so far; `Originate` recorded and, optionally, played
//! out as a click-to-call; `Logoff`. Script directives (see
//! `tests/data/ami/generate.py`): `@sleep <ms>`, `@drop` (close the client and
//! refuse connections while the next events happen "offline"), `@await_client`
//! (accept connections again and wait for a client to log in and list
//! channels), `@restart` (wait for a new client session, e.g. a restarted Fiche).
//!
//! The replay starts once the first client has logged in and listed channels.

use anyhow::{bail, Context as _};
use bytes::BytesMut;
use fiche_pbx::ami::{AmiFramer, AmiMessage};
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// One step of a script.
#[derive(Debug, Clone)]
pub enum Step {
    /// An event to send (and to apply to the server's channel table).
    Message(Vec<(String, String)>),
    /// Pause the replay.
    Sleep(Duration),
    /// Close the client connection; refuse new ones until `AwaitClient`.
    Drop,
    /// Accept clients again; wait for one to log in and list channels.
    AwaitClient,
    /// Wait for a new client session to log in and list channels.
    Restart,
}

/// A parsed `.ami` script.
#[derive(Debug, Clone, Default)]
pub struct AmiScript {
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl AmiScript {
    /// Parses the script format described in `tests/data/ami/generate.py`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut steps = Vec::new();
        let mut message: Vec<(String, String)> = Vec::new();
        for (number, line) in text.lines().enumerate() {
            if line.is_empty() {
                if !message.is_empty() {
                    steps.push(Step::Message(std::mem::take(&mut message)));
                }
            } else if line.starts_with('#') {
            } else if let Some(directive) = line.strip_prefix('@') {
                if !message.is_empty() {
                    steps.push(Step::Message(std::mem::take(&mut message)));
                }
                let mut words = directive.split_whitespace();
                steps.push(match words.next() {
                    Some("sleep") => {
                        let ms: u64 = words
                            .next()
                            .context("@sleep needs milliseconds")?
                            .parse()
                            .with_context(|| format!("line {}", number + 1))?;
                        Step::Sleep(Duration::from_millis(ms))
                    }
                    Some("drop") => Step::Drop,
                    Some("await_client") => Step::AwaitClient,
                    Some("restart") => Step::Restart,
                    other => bail!("line {}: unknown directive {other:?}", number + 1),
                });
            } else {
                let (key, value) = line
                    .split_once(':')
                    .with_context(|| format!("line {}: not `Key: Value`", number + 1))?;
                message.push((
                    key.to_owned(),
                    value.strip_prefix(' ').unwrap_or(value).to_owned(),
                ));
            }
        }
        if !message.is_empty() {
            steps.push(Step::Message(message));
        }
        Ok(Self { steps })
    }

    /// A recorded flow (see [`crate::recordings`]) as a script: its messages in
    /// order, as fast as possible or at the pace the recording kept.
    pub fn from_recording(messages: &[crate::recordings::Fields], pace: Pace) -> Self {
        let mut steps = Vec::with_capacity(messages.len() * 2);
        let mut previous: Option<f64> = None;
        for fields in messages {
            if let Pace::Recorded = pace {
                // `timestampevents = yes` stamps each event; a recording
                // without stamps is replayed at an even pace.
                let stamp = fields
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("Timestamp"))
                    .and_then(|(_, v)| v.trim().parse::<f64>().ok());
                let gap = match (previous, stamp) {
                    (Some(before), Some(now)) if now >= before => {
                        Duration::from_secs_f64((now - before).min(MAX_RECORDED_GAP_SECS))
                    }
                    (_, None) => UNSTAMPED_GAP,
                    _ => Duration::ZERO,
                };
                if stamp.is_some() {
                    previous = stamp;
                }
                if !gap.is_zero() {
                    steps.push(Step::Sleep(gap));
                }
            }
            steps.push(Step::Message(fields.clone()));
        }
        Self { steps }
    }

    /// Loads `tests/data/ami/<name>.ami`.
    pub fn load(name: &str) -> anyhow::Result<Self> {
        let path = format!("{}/data/ami/{name}.ami", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).with_context(|| path.clone())?;
        Self::parse(&text).with_context(|| path)
    }
}

/// How fast a recording is replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Every message as soon as the previous one is written.
    AsFastAsPossible,
    /// The gaps between the recording's `Timestamp`s (capped), or an even
    /// pace when it has none.
    Recorded,
}

/// The longest pause a recorded pace keeps (a recording left idle for minutes
/// would only slow the suite down).
const MAX_RECORDED_GAP_SECS: f64 = 2.0;
/// The pace of a recording without timestamps.
const UNSTAMPED_GAP: Duration = Duration::from_millis(5);

/// How the test server behaves.
#[derive(Debug, Clone)]
pub struct AmiServerOptions {
    /// Manager user accepted.
    pub username: String,
    /// Its secret.
    pub secret: String,
    /// Answer `Ping`; `false` plays a wedged manager.
    pub answer_pings: bool,
    /// Play an accepted `Originate` out as a click-to-call: the agent's phone
    /// rings and answers, the customer answers, then both hang up.
    pub play_originates: bool,
}

impl Default for AmiServerOptions {
    fn default() -> Self {
        Self {
            username: "fiche".into(),
            secret: "s3cret".into(),
            answer_pings: true,
            play_originates: true,
        }
    }
}

enum Outgoing {
    Text(String),
    Close,
}

#[derive(Default)]
struct State {
    channels: BTreeMap<String, Vec<(String, String)>>,
    current: Option<(u64, mpsc::UnboundedSender<Outgoing>)>,
    offline: bool,
    logins: usize,
    failed_logins: usize,
    pings: usize,
    originates: Vec<Vec<(String, String)>>,
    next_session: u64,
}

struct Shared {
    options: AmiServerOptions,
    state: Mutex<State>,
    /// Count of sessions that have logged in and listed channels.
    ready: watch::Sender<u64>,
    finished: watch::Sender<bool>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running AMI test server; stops when dropped.
pub struct AmiTestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
}

const SNAPSHOT_KEYS: &[&str] = &[
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
];

fn render(fields: &[(String, String)]) -> String {
    let mut out = String::new();
    for (key, value) in fields {
        let _ = write!(out, "{key}: {value}\r\n");
    }
    out.push_str("\r\n");
    out
}

fn reply(action_id: &str, fields: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let _ = write!(out, "{}: {}\r\n", fields[0].0, fields[0].1);
    if !action_id.is_empty() {
        let _ = write!(out, "ActionID: {action_id}\r\n");
    }
    for (key, value) in &fields[1..] {
        let _ = write!(out, "{key}: {value}\r\n");
    }
    out.push_str("\r\n");
    out
}

impl AmiTestServer {
    /// Binds 127.0.0.1:0 and starts serving; the script starts once a client is ready.
    pub async fn start(options: AmiServerOptions, script: AmiScript) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            options,
            state: Mutex::new(State::default()),
            ready: watch::channel(0).0,
            finished: watch::channel(false).0,
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(listener, shared.clone()));
        tasks.spawn(replay(script, shared.clone()));
        Ok(Self {
            addr,
            shared,
            tasks,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Successful logins so far.
    pub fn logins(&self) -> usize {
        self.shared.state().logins
    }

    /// Refused logins so far.
    pub fn failed_logins(&self) -> usize {
        self.shared.state().failed_logins
    }

    /// Pings received so far.
    pub fn pings(&self) -> usize {
        self.shared.state().pings
    }

    /// The `Originate` actions received, fields in order.
    pub fn originates(&self) -> Vec<Vec<(String, String)>> {
        self.shared.state().originates.clone()
    }

    /// Channels the PBX has now (what `CoreShowChannels` would list).
    pub fn live_channels(&self) -> usize {
        self.shared.state().channels.len()
    }

    /// Waits until the whole script has been replayed.
    pub async fn finished(&self) {
        let mut finished = self.shared.finished.subscribe();
        let _ = finished.wait_for(|done| *done).await;
    }

    /// Waits until `n` client sessions have logged in and listed channels.
    pub async fn ready_sessions(&self, n: u64) {
        let mut ready = self.shared.ready.subscribe();
        let _ = ready.wait_for(|count| *count >= n).await;
    }

    /// Stops the server: listener and sessions are closed.
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Applies an event to the channel table, as Asterisk's own state changes.
fn apply(state: &mut State, fields: &[(String, String)]) {
    let get = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    let Some(uid) = get("Uniqueid") else {
        return;
    };
    if get("Event").as_deref() == Some("Hangup") {
        state.channels.remove(&uid);
        return;
    }
    let snapshot: Vec<(String, String)> = SNAPSHOT_KEYS
        .iter()
        .filter_map(|k| get(k).map(|v| ((*k).to_owned(), v)))
        .collect();
    if snapshot.iter().any(|(k, _)| k == "Channel") {
        state.channels.insert(uid, snapshot);
    }
}

async fn replay(script: AmiScript, shared: Arc<Shared>) {
    let mut ready = shared.ready.subscribe();
    let _ = ready.wait_for(|count| *count >= 1).await;
    for step in script.steps {
        match step {
            Step::Message(fields) => {
                let mut state = shared.state();
                apply(&mut state, &fields);
                if !state.offline {
                    if let Some((_, sender)) = &state.current {
                        let _ = sender.send(Outgoing::Text(render(&fields)));
                    }
                }
            }
            Step::Sleep(duration) => tokio::time::sleep(duration).await,
            Step::Drop => {
                let mut state = shared.state();
                state.offline = true;
                if let Some((_, sender)) = state.current.take() {
                    let _ = sender.send(Outgoing::Close);
                }
            }
            Step::AwaitClient | Step::Restart => {
                let seen = *ready.borrow_and_update();
                shared.state().offline = false;
                let _ = ready.wait_for(|count| *count > seen).await;
            }
        }
    }
    shared.finished.send_replace(true);
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut sessions = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        if shared.state().offline {
            // The PBX is "unreachable": the client must come back later.
            drop(stream);
            continue;
        }
        sessions.spawn(session(stream, shared.clone()));
        while sessions.try_join_next().is_some() {}
    }
}

async fn session(stream: TcpStream, shared: Arc<Shared>) {
    let (mut reader, mut writer) = stream.into_split();
    let (sender, mut outgoing) = mpsc::unbounded_channel::<Outgoing>();
    let id = {
        let mut state = shared.state();
        state.next_session += 1;
        state.next_session
    };
    if writer
        .write_all(b"Asterisk Call Manager/9.0.0\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut framer = AmiFramer::new();
    let mut buf = BytesMut::with_capacity(8192);
    let mut challenge: Option<String> = None;
    let mut logged_in = false;
    loop {
        tokio::select! {
            read = reader.read_buf(&mut buf) => {
                if !matches!(read, Ok(n) if n > 0) {
                    break;
                }
                loop {
                    let message = match framer.decode(&mut buf) {
                        Ok(Some(message)) => message,
                        Ok(None) => break,
                        Err(_) => continue,
                    };
                    let answer = handle_action(&shared, id, &sender, &message, &mut challenge, &mut logged_in);
                    for text in answer.texts {
                        if writer.write_all(text.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    if answer.listed {
                        shared.ready.send_modify(|count| *count += 1);
                    }
                    if answer.close {
                        return;
                    }
                }
            }
            next = outgoing.recv() => match next {
                Some(Outgoing::Text(text)) => {
                    if writer.write_all(text.as_bytes()).await.is_err() {
                        break;
                    }
                }
                Some(Outgoing::Close) | None => break,
            },
        }
    }
    let mut state = shared.state();
    if state
        .current
        .as_ref()
        .is_some_and(|(current, _)| *current == id)
    {
        state.current = None;
    }
}

#[derive(Default)]
struct Answer {
    texts: Vec<String>,
    listed: bool,
    close: bool,
}

fn md5_hex(text: &str) -> String {
    let digest = Md5::digest(text.as_bytes());
    digest.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

fn handle_action(
    shared: &Shared,
    id: u64,
    sender: &mpsc::UnboundedSender<Outgoing>,
    message: &AmiMessage,
    challenge: &mut Option<String>,
    logged_in: &mut bool,
) -> Answer {
    let mut answer = Answer::default();
    let action_id = message.action_id().unwrap_or_default();
    let action = message
        .get("Action")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let options = &shared.options;
    match action.as_str() {
        "challenge" => {
            let value = format!("{}", 100_000_000 + id * 7919);
            answer.texts.push(reply(
                action_id,
                &[("Response", "Success"), ("Challenge", &value)],
            ));
            *challenge = Some(value);
        }
        "login" => {
            let user_ok = message.get("Username") == Some(options.username.as_str());
            let md5 = message
                .get("AuthType")
                .is_some_and(|t| t.eq_ignore_ascii_case("md5"));
            let secret_ok = if md5 {
                challenge.as_ref().is_some_and(|c| {
                    message.get("Key") == Some(md5_hex(&format!("{c}{}", options.secret)).as_str())
                })
            } else {
                message.get("Secret") == Some(options.secret.as_str())
            };
            let mut state = shared.state();
            if user_ok && secret_ok {
                state.logins += 1;
                state.current = Some((id, sender.clone()));
                *logged_in = true;
                answer.texts.push(reply(
                    action_id,
                    &[
                        ("Response", "Success"),
                        ("Message", "Authentication accepted"),
                    ],
                ));
                answer.texts.push(reply(
                    "",
                    &[
                        ("Event", "FullyBooted"),
                        ("Privilege", "system,all"),
                        ("Uptime", "3600"),
                        ("LastReload", "3600"),
                        ("Status", "Fully Booted"),
                    ],
                ));
            } else {
                state.failed_logins += 1;
                answer.texts.push(reply(
                    action_id,
                    &[("Response", "Error"), ("Message", "Authentication failed")],
                ));
                answer.close = true;
            }
        }
        "logoff" => {
            answer.texts.push(reply(
                action_id,
                &[
                    ("Response", "Goodbye"),
                    ("Message", "Thanks for all the fish."),
                ],
            ));
            answer.close = true;
        }
        _ if !*logged_in => {
            answer.texts.push(reply(
                action_id,
                &[("Response", "Error"), ("Message", "Permission denied")],
            ));
        }
        "ping" => {
            shared.state().pings += 1;
            if options.answer_pings {
                answer.texts.push(reply(
                    action_id,
                    &[
                        ("Response", "Success"),
                        ("Ping", "Pong"),
                        ("Timestamp", "1700000000.123456"),
                    ],
                ));
            }
        }
        "events" => {
            let on = message
                .get("EventMask")
                .is_some_and(|m| !m.eq_ignore_ascii_case("off"));
            answer.texts.push(reply(
                action_id,
                &[
                    ("Response", "Success"),
                    ("Events", if on { "On" } else { "Off" }),
                ],
            ));
        }
        "coreshowchannels" => {
            answer.texts.push(reply(
                action_id,
                &[
                    ("Response", "Success"),
                    ("EventList", "start"),
                    ("Message", "Channels will follow"),
                ],
            ));
            let state = shared.state();
            for fields in state.channels.values() {
                let mut item = vec![
                    ("Event".to_owned(), "CoreShowChannel".to_owned()),
                    ("ActionID".to_owned(), action_id.to_owned()),
                ];
                item.extend(fields.iter().cloned());
                item.push(("BridgeId".into(), String::new()));
                item.push(("Application".into(), "Dial".into()));
                item.push(("ApplicationData".into(), String::new()));
                item.push(("Duration".into(), "00:00:42".into()));
                answer.texts.push(render(&item));
            }
            let count = state.channels.len().to_string();
            answer.texts.push(reply(
                action_id,
                &[
                    ("Event", "CoreShowChannelsComplete"),
                    ("EventList", "Complete"),
                    ("ListItems", &count),
                ],
            ));
            answer.listed = true;
        }
        "originate" => {
            let fields: Vec<(String, String)> = message
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            shared.state().originates.push(fields);
            answer.texts.push(reply(
                action_id,
                &[
                    ("Response", "Success"),
                    ("Message", "Originate successfully queued"),
                ],
            ));
            if options.play_originates {
                for text in originate_events(message) {
                    answer.texts.push(text);
                }
            }
        }
        _ => {
            answer.texts.push(reply(
                action_id,
                &[
                    ("Response", "Error"),
                    ("Message", "Invalid/unknown command"),
                ],
            ));
        }
    }
    answer
}

/// A click-to-call as Asterisk plays it: the agent's phone (Uniqueid =
/// ChannelId) rings and answers, the dialplan dials the customer through the
/// trunk, the customer answers, both hang up.
fn originate_events(message: &AmiMessage) -> Vec<String> {
    let get = |key: &str| message.get(key).unwrap_or_default().to_owned();
    let uid = get("ChannelId");
    let agent = get("Channel");
    let extension = agent.rsplit('/').next().unwrap_or_default().to_owned();
    let number = get("Exten");
    let context = get("Context");
    let agent_channel = format!("{agent}-000000a1");
    let trunk_uid = format!("{uid}-trunk");
    let linked_id = uid.clone();
    let leg = |channel: &str, uid: &str, state: &str, cid: &str| -> Vec<(String, String)> {
        [
            ("Channel", channel),
            ("ChannelState", state),
            ("CallerIDNum", cid),
            ("CallerIDName", ""),
            ("ConnectedLineNum", "<unknown>"),
            ("ConnectedLineName", "<unknown>"),
            ("Context", context.as_str()),
            ("Exten", number.as_str()),
            ("Priority", "1"),
            ("Uniqueid", uid),
            ("Linkedid", linked_id.as_str()),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    };
    let event = |name: &str, mut fields: Vec<(String, String)>| {
        fields.insert(0, ("Privilege".into(), "call,all".into()));
        fields.insert(0, ("Event".into(), name.into()));
        render(&fields)
    };
    let prefixed = |prefix: &str, fields: Vec<(String, String)>| -> Vec<(String, String)> {
        fields
            .into_iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v))
            .collect()
    };
    let trunk_channel = "PJSIP/ovh-000000a2";
    let mut out = vec![
        event("Newchannel", leg(&agent_channel, &uid, "0", &extension)),
        event(
            "DialBegin",
            prefixed("Dest", leg(&agent_channel, &uid, "0", &extension)),
        ),
        event("Newstate", leg(&agent_channel, &uid, "5", &extension)),
        event("Newstate", leg(&agent_channel, &uid, "6", &extension)),
        event("DialEnd", {
            let mut f = prefixed("Dest", leg(&agent_channel, &uid, "6", &extension));
            f.push(("DialStatus".into(), "ANSWER".into()));
            f
        }),
        event("Newchannel", leg(trunk_channel, &trunk_uid, "0", &number)),
        event("DialBegin", {
            let mut f = leg(&agent_channel, &uid, "6", &extension);
            f.extend(prefixed(
                "Dest",
                leg(trunk_channel, &trunk_uid, "0", &number),
            ));
            f
        }),
        event("Newstate", leg(trunk_channel, &trunk_uid, "5", &number)),
        event("Newstate", leg(trunk_channel, &trunk_uid, "6", &number)),
        event("DialEnd", {
            let mut f = leg(&agent_channel, &uid, "6", &extension);
            f.extend(prefixed(
                "Dest",
                leg(trunk_channel, &trunk_uid, "6", &number),
            ));
            f.push(("DialStatus".into(), "ANSWER".into()));
            f
        }),
    ];
    for (channel, id, cid) in [
        (trunk_channel, trunk_uid.as_str(), number.as_str()),
        (agent_channel.as_str(), uid.as_str(), extension.as_str()),
    ] {
        let mut f = leg(channel, id, "6", cid);
        f.push(("Cause".into(), "16".into()));
        f.push(("Cause-txt".into(), "Normal Clearing".into()));
        out.push(event("Hangup", f));
    }
    out
}

//! Fiche's configuration: an optional TOML file, then `FICHE_*` environment overrides.
//!
//! Every setting is documented in `config.example.toml` at the repository root; a
//! test parses that file so the example cannot drift from the code.

use anyhow::{bail, Context};
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole configuration, after file and environment are merged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP API, the websocket and the web pages (`FICHE_HTTP_ADDR`).
    #[serde(default = "default_http_addr")]
    pub http_addr: SocketAddr,
    /// Database URL: `sqlite://fiche.db` (embedded default) or `postgres://…` (`FICHE_DATABASE_URL`).
    #[serde(default = "default_database_url")]
    pub database_url: String,
    /// Folder to serve the web pages from instead of the copy inside the
    /// binary (`FICHE_WEB_ROOT`), for working on the pages without a rebuild.
    #[serde(default)]
    pub web_root: Option<PathBuf>,
    /// The HEP listener.
    #[serde(default)]
    pub hep: HepConfig,
    /// How calls are tracked.
    #[serde(default)]
    pub calls: CallsConfig,
    /// Asterisk Manager Interface sources, one per PBX.
    #[serde(default)]
    pub ami: Vec<AmiConfig>,
    /// How phone numbers are read.
    #[serde(default)]
    pub numbers: NumbersConfig,
    /// How the in-memory customer index follows changes made elsewhere.
    #[serde(default)]
    pub customers: CustomersConfig,
    /// Which calls become tickets, callback delay, linking to open tickets.
    #[serde(default)]
    pub tickets: crate::tickets::TicketsConfig,
    /// Login sessions.
    #[serde(default)]
    pub auth: crate::auth::AuthConfig,
    /// The pages' websockets.
    #[serde(default)]
    pub websocket: WebsocketConfig,
    /// The inbound CTI webhook (`/api/v1/cti/{token}`).
    #[serde(default)]
    pub cti: CtiConfig,
    /// Outbound webhook targets.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// Who may read `/metrics`.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Odoo: customers from its contacts, calls into its Helpdesk (absent: no Odoo).
    #[serde(default)]
    pub odoo: Option<fiche_odoo::OdooConfig>,
    /// Several nodes on one PostgreSQL database (absent: this node alone).
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
}

/// This node's place in a cluster (issue 15): several `fiche serve` on one
/// PostgreSQL database share calls, pops and the work that must run once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name, unique among the nodes (`FICHE_CLUSTER_NODE`, which
    /// also turns the cluster on): letters, digits, `-`, `_`, `.`; 1 to 64.
    pub node: String,
}

/// Longest `cluster.node`.
const MAX_NODE_NAME: usize = 64;

// --- [metrics] (issue 14) ---

/// Who may read the Prometheus metrics (`GET /metrics`).
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// When set, every scrape must send `Authorization: Bearer <token>`, from
    /// loopback too (`FICHE_METRICS_TOKEN`; at least 16 characters; never
    /// logged). Unset: only direct requests from loopback are answered.
    #[serde(default)]
    pub token: Option<String>,
}

impl std::fmt::Debug for MetricsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Shortest `metrics.token` accepted: a scrape token is guessed over the network.
const MIN_METRICS_TOKEN: usize = 16;

// --- end [metrics] ---

/// The inbound CTI webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtiConfig {
    /// Callers answered `{"action":"reject","reason":"busy"}`, in any format the
    /// region reads (`0899…`, `+33 8 99…`); no call events are produced for them.
    #[serde(default)]
    pub blocked_numbers: Vec<String>,

    // Cloud phone systems (issue 17): kept in one block for easy merges.
    /// Fiche's public base URL as the phone system reaches it
    /// (`https://fiche.example.com`): sipgate is told to send `answer` and
    /// `hangup` there. Unset: the request's `Host` (and `X-Forwarded-Proto`).
    #[serde(default)]
    pub public_url: Option<String>,
    /// Queue name (or dialled number, as the PBX sends it) → the agents that
    /// ring when a request names nobody (extensions or provider ids).
    #[serde(default)]
    pub queues: BTreeMap<String, Vec<String>>,
    /// A provider's id of an agent (sipgate `userId`/`fullUserId`, Placetel
    /// peer, Aircall or Ringover user id or e-mail; case-insensitive) → her extension.
    #[serde(default)]
    pub agents: BTreeMap<String, String>,
    /// Outbound caller-ID routing (Zammad's `outbound` settings).
    #[serde(default)]
    pub outbound: CtiOutboundConfig,
    /// Aircall's webhook (`/api/v1/aircall/{token}`).
    #[serde(default)]
    pub aircall: Option<AircallConfig>,
    /// Ringover's webhook (`/api/v1/ringover/{token}`).
    #[serde(default)]
    pub ringover: Option<RingoverConfig>,
    /// Seconds an unanswered call whose caller hung up waits for Aircall or
    /// Ringover to say whether a voicemail was left, before it ends missed.
    #[serde(default = "default_voicemail_wait_secs")]
    pub voicemail_wait_secs: u64,
}

impl Default for CtiConfig {
    fn default() -> Self {
        Self {
            blocked_numbers: Vec::new(),
            public_url: None,
            queues: BTreeMap::new(),
            agents: BTreeMap::new(),
            outbound: CtiOutboundConfig::default(),
            aircall: None,
            ringover: None,
            voicemail_wait_secs: default_voicemail_wait_secs(),
        }
    }
}

fn default_voicemail_wait_secs() -> u64 {
    u64::try_from(fiche_pbx::cti::VOICEMAIL_WAIT.num_seconds()).unwrap_or(180)
}

/// Outbound caller-ID routing: the first route whose `dest` matches the
/// dialled number, else `default_caller_id`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtiOutboundConfig {
    /// Routes, tried in order.
    #[serde(default)]
    pub routes: Vec<CallerIdRouteConfig>,
    /// The caller id presented when no route matches; unset: the PBX decides.
    #[serde(default)]
    pub default_caller_id: Option<String>,
}

/// One outbound caller-ID route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerIdRouteConfig {
    /// Dialled numbers, as the PBX sends them; `*` is one or more characters (`41*`).
    pub dest: String,
    /// The number to present.
    pub caller_id: String,
}

/// Aircall's webhook settings.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AircallConfig {
    /// The token Aircall shows for the webhook; every event's body carries it.
    pub token: String,
}

impl std::fmt::Debug for AircallConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AircallConfig")
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Ringover's webhook settings.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingoverConfig {
    /// The webhook key Ringover signs its `X-Ringover-Webhook-Signature` with.
    pub secret: String,
}

impl std::fmt::Debug for RingoverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingoverConfig")
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What an outbound webhook target receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKind {
    /// Fiche's JSON envelope (docs/webhooks.md), every event type.
    #[default]
    Json,
    /// Zammad "Generic CTI" requests (newCall, answer, hangup), form-encoded.
    Zammad,
}

/// One outbound webhook target.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// A short unique name (logs, outbox); defaults to the URL.
    #[serde(default)]
    pub name: Option<String>,
    /// Where to POST: `http://` or `https://`.
    pub url: String,
    /// PEM file of the CA certificate(s) that signed an `https://` target's
    /// certificate, trusted for this target besides the public and system roots
    /// (a company's private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `json` (default) or `zammad`.
    #[serde(default)]
    pub kind: WebhookKind,
    /// When set, each request carries `X-Fiche-Signature: sha256=<hex HMAC of the body>`. Never logged.
    #[serde(default)]
    pub secret: Option<String>,
    /// Event types to send (`call_started`, `ringing`, `answered`, `ended`, …,
    /// `ticket_changed`, or, for Zammad, `newCall`, `answer`, `hangup`); empty
    /// sends every one.
    #[serde(default)]
    pub events: Vec<String>,
    /// Seconds one request may take.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_secs: u64,
    /// Most deliveries kept waiting for this target; past it the oldest are dropped.
    #[serde(default = "default_max_outbox_rows")]
    pub max_outbox_rows: u64,
    /// Longest wait between two attempts (the wait doubles from 1 s up to this).
    #[serde(default = "default_max_backoff")]
    pub max_backoff_secs: u64,
}

impl WebhookConfig {
    /// The target's name: `name`, else the URL.
    pub fn target_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.url.clone())
    }
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("ca_file", &self.ca_file)
            .field("kind", &self.kind)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("events", &self.events)
            .field("timeout_secs", &self.timeout_secs)
            .field("max_outbox_rows", &self.max_outbox_rows)
            .field("max_backoff_secs", &self.max_backoff_secs)
            .finish()
    }
}

fn default_webhook_timeout() -> u64 {
    10
}
fn default_max_outbox_rows() -> u64 {
    100_000
}
fn default_max_backoff() -> u64 {
    300
}

/// How phone numbers from the PBX and from customer files are normalised.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumbersConfig {
    /// ISO 3166 region of numbers written without a country code (`FICHE_DEFAULT_REGION`).
    #[serde(default = "default_region")]
    pub default_region: String,
    /// Digits the PBX puts before outside callers' national numbers (e.g. "0"), stripped first.
    #[serde(default)]
    pub outside_line_prefix: Option<String>,
    /// Numbers of at most this many digits are internal extensions, not customers.
    #[serde(default = "default_extension_max_len")]
    pub extension_max_len: usize,
}

impl Default for NumbersConfig {
    fn default() -> Self {
        Self {
            default_region: default_region(),
            outside_line_prefix: None,
            extension_max_len: default_extension_max_len(),
        }
    }
}

impl NumbersConfig {
    /// The matcher's policy for these settings.
    pub fn policy(&self) -> fiche_matcher::NumberPolicy {
        fiche_matcher::NumberPolicy {
            default_region: self.default_region.clone(),
            outside_line_prefix: self.outside_line_prefix.clone(),
            extension_max_len: self.extension_max_len,
        }
    }
}

fn default_region() -> String {
    "FR".to_owned()
}
fn default_extension_max_len() -> usize {
    5
}

/// How the caller index follows customer changes made by other processes
/// (`fiche import customers`, other Fiche nodes on the same database).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomersConfig {
    /// How often the customer change log is read, in milliseconds
    /// (`FICHE_CUSTOMERS_SYNC_MS`); 0 turns the sync off.
    #[serde(default = "default_customers_sync_ms")]
    pub sync_interval_ms: u64,
}

impl Default for CustomersConfig {
    fn default() -> Self {
        Self {
            sync_interval_ms: default_customers_sync_ms(),
        }
    }
}

impl CustomersConfig {
    /// The polling interval, `None` when the sync is off.
    pub fn sync_interval(&self) -> Option<Duration> {
        (self.sync_interval_ms > 0).then(|| Duration::from_millis(self.sync_interval_ms))
    }
}

fn default_customers_sync_ms() -> u64 {
    2000
}

/// The pages' websockets (`/ws`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebsocketConfig {
    /// Seconds between the server's pings to every open page (1 to 60: pages
    /// reconnect after 70 s without a message). A page that leaves a ping
    /// unanswered until the next is closed (it reconnects).
    #[serde(default = "default_ping_secs")]
    pub ping_secs: u64,
    /// Origins (`scheme://host[:port]`) whose pages may open the websockets,
    /// besides the server's own (`FICHE_ALLOWED_ORIGINS`, comma-separated). A
    /// browser's websocket from any other origin is refused with 403, so a
    /// page elsewhere cannot use a logged-in agent's cookie.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

impl Default for WebsocketConfig {
    fn default() -> Self {
        Self {
            ping_secs: default_ping_secs(),
            allowed_origins: Vec::new(),
        }
    }
}

impl WebsocketConfig {
    /// The heartbeat interval, bounded to 1 s .. 60 s.
    pub fn ping_every(&self) -> Duration {
        Duration::from_secs(self.ping_secs.clamp(1, 60))
    }
}

fn default_ping_secs() -> u64 {
    fiche_hub::PING_EVERY.as_secs()
}

/// Where HEP arrives and who may send it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HepConfig {
    /// UDP and TCP address (`FICHE_HEP_ADDR`); the conventional collector port is 9060.
    #[serde(default = "default_hep_addr")]
    pub addr: SocketAddr,
    /// Listen on UDP.
    #[serde(default = "yes")]
    pub udp: bool,
    /// Listen on TCP.
    #[serde(default = "yes")]
    pub tcp: bool,
    /// Source networks allowed to send HEP (`FICHE_HEP_ALLOW`, comma-separated); others are dropped.
    #[serde(default = "default_allow")]
    pub allow: Vec<IpNet>,
    /// When set, packets must carry this HEP auth key (chunk 0x000e) (`FICHE_HEP_AUTH_KEY`).
    #[serde(default)]
    pub auth_key: Option<String>,
    /// Most TCP connections open at once; a new one beyond closes the one idle
    /// the longest (never refused).
    #[serde(default = "default_tcp_max_connections")]
    pub tcp_max_connections: usize,
    /// Most TCP connections open at once from one address; a new one beyond
    /// closes that address's connection idle the longest.
    #[serde(default = "default_tcp_max_per_source")]
    pub tcp_max_connections_per_source: usize,
    /// A TCP connection that sends nothing for this many seconds is closed.
    #[serde(default = "default_tcp_idle_timeout")]
    pub tcp_idle_timeout_secs: u64,
    /// A HEP packet begun over TCP must be complete within this many seconds,
    /// or its connection is closed.
    #[serde(default = "default_tcp_partial_timeout")]
    pub tcp_partial_timeout_secs: u64,
}

impl HepConfig {
    /// The TCP listener's limits.
    pub fn tcp_limits(&self) -> fiche_pbx::driver::hep::TcpLimits {
        fiche_pbx::driver::hep::TcpLimits {
            max_connections: self.tcp_max_connections.max(1),
            max_per_source: self.tcp_max_connections_per_source.max(1),
            idle_timeout: Duration::from_secs(self.tcp_idle_timeout_secs.max(1)),
            partial_timeout: Duration::from_secs(self.tcp_partial_timeout_secs.max(1)),
        }
    }
}

fn default_tcp_max_connections() -> usize {
    fiche_pbx::driver::hep::TcpLimits::default().max_connections
}

fn default_tcp_max_per_source() -> usize {
    fiche_pbx::driver::hep::TcpLimits::default().max_per_source
}

fn default_tcp_idle_timeout() -> u64 {
    fiche_pbx::driver::hep::TcpLimits::default()
        .idle_timeout
        .as_secs()
}

fn default_tcp_partial_timeout() -> u64 {
    fiche_pbx::driver::hep::TcpLimits::default()
        .partial_timeout
        .as_secs()
}

impl Default for HepConfig {
    fn default() -> Self {
        Self {
            addr: default_hep_addr(),
            udp: true,
            tcp: true,
            allow: default_allow(),
            auth_key: None,
            tcp_max_connections: default_tcp_max_connections(),
            tcp_max_connections_per_source: default_tcp_max_per_source(),
            tcp_idle_timeout_secs: default_tcp_idle_timeout(),
            tcp_partial_timeout_secs: default_tcp_partial_timeout(),
        }
    }
}

/// Call tracking settings shared by every source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallsConfig {
    /// Regular expressions of agent extensions, matched against the whole number
    /// (`FICHE_AGENT_EXTENSIONS`, whitespace-separated). Decides inbound/outbound/internal.
    #[serde(default = "default_agent_extensions")]
    pub agent_extensions: Vec<String>,
    /// A call with no signalling for this many seconds ends as failed, "signal lost".
    #[serde(default = "default_silence_timeout")]
    pub silence_timeout_secs: u64,
    /// A call not yet answered (setup, ringing) with no signalling for this many
    /// seconds ends the same way: a flood of setups never answered is forgotten
    /// far sooner than answered calls.
    #[serde(default = "default_ringing_timeout")]
    pub ringing_timeout_secs: u64,
    /// Most calls in the live table (`/api/calls/live`); beyond, the oldest
    /// unanswered or ended ones are dropped from it (their events still reach
    /// the call log).
    #[serde(default = "default_live_max")]
    pub live_max: usize,
    /// Ended calls stay in `/api/calls/live` for this many seconds.
    #[serde(default = "default_ended_linger")]
    pub ended_linger_secs: u64,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            agent_extensions: default_agent_extensions(),
            silence_timeout_secs: default_silence_timeout(),
            ringing_timeout_secs: default_ringing_timeout(),
            live_max: default_live_max(),
            ended_linger_secs: default_ended_linger(),
        }
    }
}

impl CallsConfig {
    /// How long an ended call stays listed.
    pub fn ended_linger(&self) -> Duration {
        Duration::from_secs(self.ended_linger_secs)
    }
}

/// One Asterisk Manager Interface connection.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmiConfig {
    /// A short name for logs and the board, e.g. the PBX's host name.
    #[serde(default = "default_ami_name")]
    pub name: String,
    /// `host:port` of the manager interface (`FICHE_AMI_ADDR`), usually port 5038.
    pub addr: String,
    /// Manager user (`FICHE_AMI_USER`).
    pub username: String,
    /// Manager secret (`FICHE_AMI_SECRET`). Never logged.
    pub secret: String,
    /// Log in with the MD5 challenge instead of sending the secret.
    #[serde(default = "yes")]
    pub md5: bool,
    /// Seconds between keepalive pings.
    #[serde(default = "default_ping_interval")]
    pub ping_interval_secs: u64,
    /// Seconds a ping may stay unanswered before the connection is presumed dead.
    #[serde(default = "default_ping_timeout")]
    pub ping_timeout_secs: u64,
    /// Regular expressions with an `ext` group reading the phone's extension from
    /// a channel name; empty means the built-in PJSIP/SIP/IAX2/FreePBX queue patterns.
    #[serde(default)]
    pub channel_patterns: Vec<String>,
    /// Phones the PBX names by an account instead of their extension: what a
    /// channel pattern reads (`SIP/150010002-…` → `150010002`) → the agent's
    /// extension (`202`), so her pops follow her phone whatever its name.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Channel technology of the agents' phones for click-to-call (`PJSIP`, `SIP`).
    #[serde(default = "default_originate_technology")]
    pub originate_technology: String,
    /// Dialplan context in which click-to-call dials the customer's number.
    #[serde(default = "default_originate_context")]
    pub originate_context: String,
}

impl std::fmt::Debug for AmiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmiConfig")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .field("md5", &self.md5)
            .field("ping_interval_secs", &self.ping_interval_secs)
            .field("ping_timeout_secs", &self.ping_timeout_secs)
            .field("channel_patterns", &self.channel_patterns)
            .field("aliases", &self.aliases)
            .field("originate_technology", &self.originate_technology)
            .field("originate_context", &self.originate_context)
            .finish()
    }
}

fn yes() -> bool {
    true
}
fn default_http_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_hep_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9060))
}
fn default_database_url() -> String {
    "sqlite://fiche.db".to_owned()
}
fn default_allow() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}
fn default_agent_extensions() -> Vec<String> {
    vec![r"[1-9]\d{1,4}".to_owned()]
}
fn default_silence_timeout() -> u64 {
    4 * 3600
}
fn default_ringing_timeout() -> u64 {
    300
}
fn default_live_max() -> usize {
    10_000
}
fn default_ended_linger() -> u64 {
    60
}
fn default_ami_name() -> String {
    "asterisk".to_owned()
}
fn default_ping_interval() -> u64 {
    20
}
fn default_ping_timeout() -> u64 {
    5
}
fn default_originate_technology() -> String {
    "PJSIP".to_owned()
}
fn default_originate_context() -> String {
    "from-internal".to_owned()
}

impl Config {
    /// Reads the file when given, then applies environment overrides from `env`.
    pub fn load(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let mut config: Config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading configuration file {}", path.display()))?;
                Self::parse(&text)
                    .with_context(|| format!("in configuration file {}", path.display()))?
            }
            None => Self::parse("")?,
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text (no environment applied).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let Some(v) = set("FICHE_CLUSTER_NODE") {
            self.cluster = Some(ClusterConfig { node: v });
        }
        if let Some(v) = set("FICHE_HTTP_ADDR") {
            self.http_addr = v
                .parse()
                .with_context(|| format!("FICHE_HTTP_ADDR={v:?}"))?;
        }
        if let Some(v) = set("FICHE_HEP_ADDR") {
            self.hep.addr = v.parse().with_context(|| format!("FICHE_HEP_ADDR={v:?}"))?;
        }
        if let Some(v) = set("FICHE_HEP_ALLOW") {
            self.hep.allow = v
                .split(',')
                .map(|n| {
                    n.trim()
                        .parse()
                        .with_context(|| format!("FICHE_HEP_ALLOW: bad network {n:?}"))
                })
                .collect::<anyhow::Result<_>>()?;
        }
        if let Some(v) = set("FICHE_TRUSTED_PROXIES") {
            self.auth.trusted_proxies = v
                .split(',')
                .map(|n| {
                    n.trim()
                        .parse()
                        .with_context(|| format!("FICHE_TRUSTED_PROXIES: bad network {n:?}"))
                })
                .collect::<anyhow::Result<_>>()?;
        }
        if let Some(v) = set("FICHE_ALLOWED_ORIGINS") {
            self.websocket.allowed_origins = v
                .split(',')
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect();
        }
        if let Some(v) = set("FICHE_HEP_AUTH_KEY") {
            self.hep.auth_key = Some(v);
        }
        if let Some(v) = set("FICHE_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = set("FICHE_CUSTOMERS_SYNC_MS") {
            self.customers.sync_interval_ms = v
                .trim()
                .parse()
                .with_context(|| format!("FICHE_CUSTOMERS_SYNC_MS={v:?}: expected milliseconds"))?;
        }
        if let Some(v) = set("FICHE_DEFAULT_REGION") {
            self.numbers.default_region = v;
        }
        if let Some(v) = set("FICHE_WEB_ROOT") {
            self.web_root = Some(PathBuf::from(v));
        }
        if let Some(v) = set("FICHE_AGENT_EXTENSIONS") {
            self.calls.agent_extensions = v.split_whitespace().map(str::to_owned).collect();
        }
        if let Some(addr) = set("FICHE_AMI_ADDR") {
            let username =
                set("FICHE_AMI_USER").context("FICHE_AMI_ADDR is set but FICHE_AMI_USER is not")?;
            let secret = set("FICHE_AMI_SECRET")
                .context("FICHE_AMI_ADDR is set but FICHE_AMI_SECRET is not")?;
            // The environment describes one PBX; it replaces the file's first source.
            match self.ami.first_mut() {
                Some(first) => {
                    first.addr = addr;
                    first.username = username;
                    first.secret = secret;
                }
                None => self.ami.push(AmiConfig {
                    name: default_ami_name(),
                    addr,
                    username,
                    secret,
                    md5: true,
                    ping_interval_secs: default_ping_interval(),
                    ping_timeout_secs: default_ping_timeout(),
                    channel_patterns: Vec::new(),
                    aliases: BTreeMap::new(),
                    originate_technology: default_originate_technology(),
                    originate_context: default_originate_context(),
                }),
            }
        }
        if let Some(v) = set("FICHE_METRICS_TOKEN") {
            self.metrics.token = Some(v.trim().to_owned());
        }
        if let Some(v) = set("FICHE_AMI_ALIASES") {
            // `account=extension` pairs, separated by commas or spaces.
            let first = self
                .ami
                .first_mut()
                .context("FICHE_AMI_ALIASES is set but no AMI source is")?;
            for pair in v.split([',', ' ']).filter(|p| !p.trim().is_empty()) {
                let (account, extension) = pair.split_once('=').with_context(|| {
                    format!("FICHE_AMI_ALIASES: {pair:?} is not account=extension")
                })?;
                first
                    .aliases
                    .insert(account.trim().to_owned(), extension.trim().to_owned());
            }
        }
        self.apply_odoo_env(&set)?;
        Ok(())
    }

    /// `FICHE_ODOO_API_KEY`: the Odoo key, kept out of the file (only with an `[odoo]` table).
    fn apply_odoo_env(&mut self, set: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(key) = set("FICHE_ODOO_API_KEY") {
            let odoo = self
                .odoo
                .as_mut()
                .context("FICHE_ODOO_API_KEY is set but the configuration has no [odoo] table")?;
            odoo.api_key = key.trim().to_owned();
        }
        Ok(())
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(cluster) = &self.cluster {
            let name = &cluster.node;
            if name.is_empty()
                || name.len() > MAX_NODE_NAME
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                bail!("cluster.node: 1 to {MAX_NODE_NAME} letters, digits, '-', '_' or '.', got {name:?}");
            }
            if !self.database_url.starts_with("postgres") {
                bail!("cluster: several nodes share one PostgreSQL database; SQLite serves one node (database_url is not postgres://)");
            }
        }
        if self.calls.agent_extensions.is_empty() {
            bail!("calls.agent_extensions: at least one pattern is needed");
        }
        fiche_pbx::ExtensionPatterns::new(&self.calls.agent_extensions)
            .context("calls.agent_extensions")?;
        self.numbers.policy().validate().context("numbers")?;
        if (1..100).contains(&self.customers.sync_interval_ms) {
            bail!("customers.sync_interval_ms: at least 100 (or 0 to turn the sync off)");
        }
        if self.hep.allow.is_empty() && (self.hep.udp || self.hep.tcp) {
            bail!("hep.allow: empty, every HEP packet would be dropped");
        }
        for (i, ami) in self.ami.iter().enumerate() {
            if ami.addr.trim().is_empty() {
                bail!("ami[{i}].addr: empty");
            }
            if ami.ping_interval_secs == 0 || ami.ping_timeout_secs == 0 {
                bail!("ami[{i}]: ping_interval_secs and ping_timeout_secs must be at least 1");
            }
            if !ami.channel_patterns.is_empty() {
                fiche_pbx::ami::ChannelPatterns::new(&ami.channel_patterns)
                    .with_context(|| format!("ami[{i}].channel_patterns"))?;
            }
            for (account, extension) in &ami.aliases {
                if account.trim().is_empty() || extension.trim().is_empty() {
                    bail!(
                        "ami[{i}].aliases: {account:?} = {extension:?}: neither side may be empty"
                    );
                }
            }
        }
        if let Some(token) = &self.metrics.token {
            if token.chars().count() < MIN_METRICS_TOKEN {
                bail!("metrics.token: at least {MIN_METRICS_TOKEN} characters (e.g. `openssl rand -hex 32`)");
            }
        }
        if let Some(odoo) = &self.odoo {
            odoo.validate().map_err(anyhow::Error::msg)?;
        }
        let mut names = std::collections::HashSet::new();
        for (i, hook) in self.webhooks.iter().enumerate() {
            let https = hook.url.starts_with("https://");
            if !https && !hook.url.starts_with("http://") {
                bail!("webhooks[{i}].url: expected an http:// or https:// URL");
            }
            if hook.ca_file.is_some() && !https {
                bail!("webhooks[{i}].ca_file: only used with an https:// URL");
            }
            if !names.insert(hook.target_name()) {
                bail!(
                    "webhooks[{i}].name: two targets share the name {:?}",
                    hook.target_name()
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_metrics_token_comes_from_the_environment_is_checked_and_never_printed() {
        let token = "0123456789abcdef0123";
        let config = Config::load(None, env_of(&[("FICHE_METRICS_TOKEN", token)])).unwrap();
        assert_eq!(config.metrics.token.as_deref(), Some(token));
        assert!(!format!("{config:?}").contains(token));
        let err = Config::load(None, env_of(&[("FICHE_METRICS_TOKEN", "short")])).unwrap_err();
        assert!(format!("{err:#}").contains("metrics.token"), "{err:#}");
        assert!(!format!("{err:#}").contains("short"), "{err:#}");
    }

    #[test]
    fn a_cluster_needs_postgresql_and_a_plain_node_name() {
        let pg = ("FICHE_DATABASE_URL", "postgres://postgres@127.0.0.1/test");
        let config = Config::load(None, env_of(&[pg, ("FICHE_CLUSTER_NODE", "paris-1")])).unwrap();
        assert_eq!(config.cluster.map(|c| c.node).as_deref(), Some("paris-1"));
        let err = Config::load(None, env_of(&[("FICHE_CLUSTER_NODE", "paris-1")])).unwrap_err();
        assert!(
            format!("{err:#}").contains("SQLite serves one node"),
            "{err:#}"
        );
        let err = Config::load(None, env_of(&[pg, ("FICHE_CLUSTER_NODE", "a b")])).unwrap_err();
        assert!(format!("{err:#}").contains("cluster.node"), "{err:#}");
        assert!(Config::load(None, env_of(&[pg])).unwrap().cluster.is_none());
    }

    #[test]
    fn the_odoo_key_comes_from_the_environment_and_never_shows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fiche.toml");
        std::fs::write(
            &path,
            "[odoo]\nurl = \"https://erp.example.com\"\ndatabase = \"prod\"\nlogin = \"fiche-bot\"\n",
        )
        .unwrap();
        let error = Config::load(Some(&path), |_| None).unwrap_err();
        assert!(
            format!("{error:#}").contains("FICHE_ODOO_API_KEY"),
            "{error:#}"
        );
        let config =
            Config::load(Some(&path), env_of(&[("FICHE_ODOO_API_KEY", "s3cret-k3y")])).unwrap();
        assert_eq!(config.odoo.as_ref().unwrap().api_key, "s3cret-k3y");
        assert!(!format!("{config:?}").contains("s3cret-k3y"));
        // Without an [odoo] table the key alone is an error, not silently ignored.
        assert!(Config::load(None, env_of(&[("FICHE_ODOO_API_KEY", "k")])).is_err());
        assert!(Config::load(None, |_| None).unwrap().odoo.is_none());
    }

    #[test]
    fn the_example_config_parses_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.example.toml");
        let example = Config::load(Some(&path), |_| None).unwrap();
        let defaults = Config::load(None, |_| None).unwrap();
        assert_eq!(example.http_addr, defaults.http_addr);
        assert_eq!(example.hep.addr, defaults.hep.addr);
        assert_eq!(example.hep.allow, defaults.hep.allow);
        assert_eq!(example.database_url, defaults.database_url);
        assert_eq!(
            example.calls.agent_extensions,
            defaults.calls.agent_extensions
        );
        assert_eq!(
            example.calls.silence_timeout_secs,
            defaults.calls.silence_timeout_secs
        );
        assert_eq!(
            example.calls.ended_linger_secs,
            defaults.calls.ended_linger_secs
        );
        assert_eq!(
            example.calls.ringing_timeout_secs,
            defaults.calls.ringing_timeout_secs
        );
        assert_eq!(example.calls.live_max, defaults.calls.live_max);
        assert_eq!(example.hep.tcp_limits(), defaults.hep.tcp_limits());
        assert!(
            example.ami.is_empty(),
            "the example's AMI section is commented out"
        );
        assert_eq!(
            example.numbers.default_region,
            defaults.numbers.default_region
        );
        assert_eq!(
            example.numbers.extension_max_len,
            defaults.numbers.extension_max_len
        );
        assert_eq!(
            example.customers.sync_interval_ms,
            defaults.customers.sync_interval_ms
        );
        assert_eq!(example.auth.trusted_proxies, defaults.auth.trusted_proxies);
        assert_eq!(
            example.websocket.allowed_origins,
            defaults.websocket.allowed_origins
        );
        assert_eq!(example.websocket.ping_secs, defaults.websocket.ping_secs);
    }

    #[test]
    fn the_example_ami_section_parses_once_uncommented() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let (head, ami) = text.split_once("# [[ami]]").unwrap();
        let uncommented: String = ami
            .lines()
            .map(|line| line.strip_prefix("# ").unwrap_or(line))
            .collect::<Vec<_>>()
            .join("\n");
        let config = Config::parse(&format!("{head}[[ami]]{uncommented}")).unwrap();
        assert_eq!(config.ami.len(), 1);
        assert_eq!(config.ami[0].addr, "192.0.2.10:5038");
        assert_eq!(config.ami[0].ping_interval_secs, 20);
        assert_eq!(config.ami[0].originate_context, "from-internal");
    }

    #[test]
    fn the_example_odoo_section_parses_once_uncommented() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let (_, odoo) = text.split_once("# [odoo]").unwrap();
        let table: String = odoo
            .lines()
            .skip(1)
            .take_while(|line| !line.trim().is_empty())
            .map(|line| line.strip_prefix("# ").unwrap_or(line))
            .collect::<Vec<_>>()
            .join("\n");
        let config = Config::parse(&format!("[odoo]\n{table}")).unwrap();
        let odoo = config.odoo.unwrap();
        assert_eq!(odoo.url, "https://erp.example.com");
        assert_eq!(odoo.poll_interval_secs, 60);
        assert_eq!(odoo.page_size, 2000);
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::load(None, |_| None).unwrap();
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.hep.addr.to_string(), "0.0.0.0:9060");
        assert_eq!(c.database_url, "sqlite://fiche.db");
        assert!(c
            .hep
            .allow
            .iter()
            .any(|n| n.contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap())));
    }

    #[test]
    fn environment_overrides_the_file() {
        let c = Config::load(
            None,
            env_of(&[
                ("FICHE_HTTP_ADDR", "127.0.0.1:18080"),
                ("FICHE_HEP_ADDR", "127.0.0.1:19060"),
                ("FICHE_DATABASE_URL", "postgres://postgres@127.0.0.1/test"),
                ("FICHE_HEP_ALLOW", "10.1.0.0/16, 127.0.0.1/32"),
                ("FICHE_AGENT_EXTENSIONS", r"2\d\d 3\d{2}"),
                ("FICHE_AMI_ADDR", "127.0.0.1:5038"),
                ("FICHE_AMI_USER", "fiche"),
                ("FICHE_AMI_SECRET", "s3cret"),
            ]),
        )
        .unwrap();
        assert_eq!(c.http_addr.port(), 18080);
        assert_eq!(c.hep.addr.port(), 19060);
        assert_eq!(c.hep.allow.len(), 2);
        assert_eq!(c.calls.agent_extensions, [r"2\d\d", r"3\d{2}"]);
        assert_eq!(c.ami.len(), 1);
        assert!(
            !format!("{:?}", c.ami[0]).contains("s3cret"),
            "secrets never in Debug"
        );
    }

    #[test]
    fn cti_and_webhook_sections_parse_and_are_checked() {
        let text = "[cti]\nblocked_numbers = [\"0899123456\"]\n\n\
                    [[webhooks]]\nurl = \"http://127.0.0.1:9000/hook\"\nsecret = \"s3cret\"\n\n\
                    [[webhooks]]\nname = \"zammad\"\nkind = \"zammad\"\nurl = \"http://127.0.0.1:9001/cti\"\n";
        let c = Config::parse(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.cti.blocked_numbers, ["0899123456"]);
        assert_eq!(c.webhooks[0].target_name(), "http://127.0.0.1:9000/hook");
        assert_eq!(c.webhooks[0].max_outbox_rows, 100_000);
        assert_eq!(c.webhooks[1].kind, WebhookKind::Zammad);
        assert!(
            !format!("{:?}", c.webhooks[0]).contains("s3cret"),
            "secrets never in Debug"
        );
        let twice =
            format!("{text}[[webhooks]]\nname = \"zammad\"\nurl = \"http://127.0.0.1:1/\"\n");
        let err = Config::parse(&twice).unwrap().validate().unwrap_err();
        assert!(format!("{err:#}").contains("webhooks[2].name"), "{err:#}");
        let https = Config::parse(
            "[[webhooks]]\nurl = \"https://crm.example/hook\"\nca_file = \"/etc/fiche/ca.pem\"\n",
        )
        .unwrap();
        https.validate().unwrap();
        assert_eq!(
            https.webhooks[0].ca_file.as_deref(),
            Some(Path::new("/etc/fiche/ca.pem"))
        );
        let err = Config::parse(
            "[[webhooks]]\nurl = \"http://127.0.0.1:1/\"\nca_file = \"/etc/fiche/ca.pem\"\n",
        )
        .unwrap()
        .validate()
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("webhooks[0].ca_file"),
            "{err:#}"
        );
        let err = Config::parse("[[webhooks]]\nurl = \"ftp://x\"\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(format!("{err:#}").contains("webhooks[0].url"), "{err:#}");
    }

    #[test]
    fn cloud_phone_system_settings_parse_and_keep_their_secrets() {
        let plain = Config::parse("").unwrap();
        assert_eq!(
            plain.cti.voicemail_wait_secs, 180,
            "the default without [cti]"
        );
        let text = "[cti]\npublic_url = \"https://fiche.example.com\"\n\
                    [cti.outbound]\ndefault_caller_id = \"4930777000000\"\n\
                    routes = [{ dest = \"41*\", caller_id = \"41715880339000\" }]\n\
                    [cti.queues]\nsupport = [\"201\", \"w0\"]\n\
                    [cti.agents]\n\"Claire@Example.com\" = \"202\"\n\
                    [cti.aircall]\ntoken = \"air-s3cret\"\n\
                    [cti.ringover]\nsecret = \"ring-s3cret\"\n";
        let c = Config::parse(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.cti.outbound.routes[0].dest, "41*");
        assert_eq!(c.cti.queues["support"], ["201", "w0"]);
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("air-s3cret") && !debug.contains("ring-s3cret"),
            "secrets never in Debug (fiche check-config prints it)"
        );
        let agents = fiche_pbx::ExtensionPatterns::new([r"2\d\d"]).unwrap();
        let translator = crate::cti::translator_config(&c, &agents);
        assert_eq!(
            translator
                .agent_ids
                .get("claire@example.com")
                .map(String::as_str),
            Some("202"),
            "ids are matched case-insensitively"
        );
        assert_eq!(
            translator.outbound.caller_id_for("4147110000000"),
            Some("41715880339000")
        );
        assert!(Config::parse("[cti.outbound]\nroutes = [{ dest = \"41*\" }]\n").is_err());
    }

    #[test]
    fn errors_name_the_setting() {
        let err = Config::load(None, env_of(&[("FICHE_HEP_ADDR", "nowhere")])).unwrap_err();
        assert!(format!("{err:#}").contains("FICHE_HEP_ADDR"), "{err:#}");
        let err = Config::parse("[hep]\nport = 9060\n").unwrap_err();
        assert!(format!("{err:#}").contains("port"), "{err:#}");
        let err = Config::load(None, env_of(&[("FICHE_AGENT_EXTENSIONS", "(")])).unwrap_err();
        assert!(format!("{err:#}").contains("agent_extensions"), "{err:#}");
        let err = Config::load(None, env_of(&[("FICHE_AMI_ADDR", "127.0.0.1:5038")])).unwrap_err();
        assert!(format!("{err:#}").contains("FICHE_AMI_USER"), "{err:#}");
    }
}

//! `GET /metrics`: what an operator graphs and alerts on, in the Prometheus
//! text format (encoded by `prometheus-client`).
//!
//! Every figure is kept where it happens with relaxed atomic additions (no
//! lock, no allocation on the packet, event or pop path): the HEP listeners'
//! [`HepStats`], each AMI source's [`AmiStatus`], the hub's
//! [`fiche_hub::HubStats`], and here the pipeline's [`CallStats`], the ticket
//! writer's [`WriterStats`] and the webhooks' [`WebhookStats`]. A scrape reads
//! them all (plus the outbox depth, one `COUNT` per target) and encodes them;
//! nothing is kept between scrapes.
//!
//! Who may scrape: with `[metrics] token` set, whoever sends it as a bearer
//! token (compared in constant time), from anywhere, loopback included;
//! without a token, only a request made directly from loopback, never one a
//! proxy relayed (it carries `X-Forwarded-For` or `Forwarded`), since a
//! reverse proxy on the same host makes every visitor look like loopback.
//! The metric names and labels are documented in `docs/metrics.md`.

use crate::pipeline::SinkEvent;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use fiche_hub::{Histogram, HistogramSnapshot, Hub};
use fiche_pbx::driver::ami::{AmiState, AmiStatus};
use fiche_pbx::driver::hep::{HepDrop, HepStats, HepTransport};
use fiche_pbx::{Outcome, Source};
use fiche_store::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::warn;

/// Sources, in the order of [`CallStats`]' arrays.
const SOURCES: [Source; 3] = [Source::Hep, Source::Ami, Source::Cti];
/// Outcomes, in the order of [`CallStats`]' arrays.
const OUTCOMES: [Outcome; 7] = [
    Outcome::Answered,
    Outcome::Missed,
    Outcome::Voicemail,
    Outcome::Forwarded,
    Outcome::Busy,
    Outcome::Rejected,
    Outcome::Failed,
];

/// Where `outcome` sits in [`OUTCOMES`]: a match, so that a new outcome
/// cannot be left uncounted.
fn outcome_slot(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Answered => 0,
        Outcome::Missed => 1,
        Outcome::Voicemail => 2,
        Outcome::Forwarded => 3,
        Outcome::Busy => 4,
        Outcome::Rejected => 5,
        Outcome::Failed => 6,
    }
}

/// Upper bounds of the ticket writer's batch size histogram (events).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0];
/// Upper bounds of the ticket writer's lag histogram (seconds).
const LAG_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Calls seen by the pipeline, by source, and ended by source and outcome.
#[derive(Debug, Default)]
pub struct CallStats {
    started: [AtomicU64; SOURCES.len()],
    ended: [[AtomicU64; OUTCOMES.len()]; SOURCES.len()],
}

impl CallStats {
    /// Counts `event` when it starts or ends a call.
    pub fn count(&self, event: &fiche_pbx::CallEvent) {
        let source = SOURCES.iter().position(|s| *s == event.source);
        match (&event.kind, source) {
            (fiche_pbx::CallEventKind::CallStarted { .. }, Some(s)) => {
                self.started[s].fetch_add(1, Relaxed);
            }
            (fiche_pbx::CallEventKind::Ended { outcome, .. }, Some(s)) => {
                self.ended[s][outcome_slot(*outcome)].fetch_add(1, Relaxed);
            }
            _ => {}
        }
    }
}

/// The ticket writer's batches: how many events each held, and how long the
/// oldest waited between its arrival and the commit (HEP's crash window).
#[derive(Debug)]
pub struct WriterStats {
    batch_size: Histogram,
    lag: Histogram,
    failed_events: AtomicU64,
}

impl Default for WriterStats {
    fn default() -> Self {
        Self {
            batch_size: Histogram::new(BATCH_BUCKETS),
            lag: Histogram::new(LAG_BUCKETS),
            failed_events: AtomicU64::new(0),
        }
    }
}

impl WriterStats {
    /// A batch of `events` committed, its oldest event having arrived `lag` before.
    pub fn committed(&self, events: usize, lag: std::time::Duration) {
        self.batch_size.observe(events as f64);
        self.lag.observe(lag.as_secs_f64());
    }

    /// An event that could not be written (logged by the writer).
    pub fn failed(&self) {
        self.failed_events.fetch_add(1, Relaxed);
    }
}

/// One webhook target's deliveries.
#[derive(Debug)]
pub struct TargetStats {
    /// The target's name (`[[webhooks]] name`, else its URL).
    pub name: String,
    delivered: AtomicU64,
    retried: AtomicU64,
    refused: AtomicU64,
}

impl TargetStats {
    /// Counters for the target `name`.
    pub fn new(name: String) -> Self {
        Self {
            name,
            delivered: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// The target accepted a delivery.
    pub fn delivered(&self) {
        self.delivered.fetch_add(1, Relaxed);
    }

    /// An attempt failed and will be retried (network, timeout, 408, 429, 5xx).
    pub fn retried(&self) {
        self.retried.fetch_add(1, Relaxed);
    }

    /// The target refused a delivery for good (another 4xx): dropped.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Relaxed);
    }
}

/// Every webhook target's counters, in configuration order.
pub type WebhookStats = Vec<Arc<TargetStats>>;

/// Everything `/metrics` reads. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    calls: Arc<CallStats>,
    hep: Arc<HepStats>,
    ami: Vec<(String, Arc<AmiStatus>)>,
    hub: Hub,
    writer: Arc<WriterStats>,
    /// The writer's queue, weakly: the writer still stops when the pipeline
    /// drops its sender.
    writer_queue: mpsc::WeakSender<SinkEvent>,
    webhooks: WebhookStats,
    store: Store,
    token: Option<String>,
}

/// What [`Metrics::new`] is built from: the parts `serve` wired.
pub struct Sources {
    /// The pipeline's call counters.
    pub calls: Arc<CallStats>,
    /// The HEP listeners' counters.
    pub hep: Arc<HepStats>,
    /// Each AMI source's name and status.
    pub ami: Vec<(String, Arc<AmiStatus>)>,
    /// The websocket hub (sockets, pops, the live-call table).
    pub hub: Hub,
    /// The ticket writer's counters.
    pub writer: Arc<WriterStats>,
    /// The ticket writer's input queue.
    pub writer_queue: mpsc::WeakSender<SinkEvent>,
    /// The webhook targets' counters.
    pub webhooks: WebhookStats,
    /// For the outbox depth.
    pub store: Store,
    /// `[metrics] token`.
    pub token: Option<String>,
}

impl Metrics {
    /// The metrics of a running server.
    pub fn new(sources: Sources) -> Self {
        let Sources {
            calls,
            hep,
            ami,
            hub,
            writer,
            writer_queue,
            webhooks,
            store,
            token,
        } = sources;
        Self {
            inner: Arc::new(Inner {
                calls,
                hep,
                ami,
                hub,
                writer,
                writer_queue,
                webhooks,
                store,
                token: token.filter(|t| !t.is_empty()),
            }),
        }
    }

    /// `GET /metrics`, outside the session layer (it has its own rule).
    pub fn router(self) -> Router {
        Router::new()
            .route("/metrics", get(scrape))
            .with_state(self)
    }

    /// The exposition text.
    pub async fn render(&self) -> String {
        let inner = &self.inner;
        let mut outbox = Vec::with_capacity(inner.webhooks.len());
        for target in &inner.webhooks {
            match inner.store.outbox_len(&target.name).await {
                Ok(rows) => outbox.push((target.name.clone(), rows)),
                Err(error) => {
                    warn!(target = %target.name, %error, "reading the webhook outbox depth for /metrics failed")
                }
            }
        }
        let live_calls = inner.hub.call_count();
        let snapshot = Snapshot {
            inner: self.inner.clone(),
            outbox,
            live_calls,
            sockets: inner.hub.connections_by_role(),
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(snapshot));
        let mut text = String::new();
        if let Err(error) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        {
            warn!(%error, "encoding /metrics failed");
        }
        text
    }
}

/// Whether a request may read the metrics.
#[derive(Debug, PartialEq, Eq)]
enum Access {
    Granted,
    /// A token is configured and the request did not carry it.
    NoToken,
    /// No token configured and the request is not a direct one from loopback.
    NotLoopback,
}

/// The access rule of the module's header.
fn access(token: Option<&str>, peer: Option<IpAddr>, headers: &HeaderMap) -> Access {
    if let Some(expected) = token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        return if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            Access::Granted
        } else {
            Access::NoToken
        };
    }
    let relayed = ["x-forwarded-for", "forwarded", "x-real-ip"]
        .iter()
        .any(|name| headers.contains_key(*name));
    let loopback = peer.is_some_and(|ip| match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        IpAddr::V4(v4) => v4.is_loopback(),
    });
    if loopback && !relayed {
        Access::Granted
    } else {
        Access::NotLoopback
    }
}

/// Compares without stopping at the first difference, so the time taken tells
/// nothing about how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut differ = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        differ |= x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0);
    }
    differ == 0
}

async fn scrape(State(metrics): State<Metrics>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    match access(metrics.inner.token.as_deref(), peer, request.headers()) {
        Access::Granted => (
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            metrics.render().await,
        )
            .into_response(),
        Access::NoToken => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"metrics\"")],
            crate::http::error::ApiError::Unauthorized(
                "the metrics token is required (Authorization: Bearer)".into(),
            ),
        )
            .into_response(),
        Access::NotLoopback => crate::http::error::ApiError::Forbidden(
            "metrics are served to loopback only; set [metrics] token to scrape from elsewhere"
                .into(),
        )
        .into_response(),
    }
}

/// What one scrape encodes.
struct Snapshot {
    inner: Arc<Inner>,
    outbox: Vec<(String, u64)>,
    live_calls: usize,
    sockets: [(fiche_hub::Role, usize); 3],
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").finish_non_exhaustive()
    }
}

/// Labels as the encoder takes them.
type Labels<'a> = Vec<(&'static str, &'a str)>;

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Labels<'_>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        let family = metric.encode_family(labels)?;
        ConstCounter::new(*value).encode(family)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Labels<'_>, i64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        let family = metric.encode_family(labels)?;
        ConstGauge::new(*value).encode(family)?;
    }
    Ok(())
}

fn histogram(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: &HistogramSnapshot,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        values.sum,
        values.count,
        &values.buckets,
        None,
    )
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let inner = &self.inner;
        let e = &mut encoder;

        let started: Vec<(Labels<'_>, u64)> = SOURCES
            .iter()
            .zip(&inner.calls.started)
            .map(|(s, n)| (vec![("source", s.as_str())], n.load(Relaxed)))
            .collect();
        counter(
            e,
            "fiche_calls_started",
            "Calls begun, by source.",
            &started,
        )?;
        let mut ended: Vec<(Labels<'_>, u64)> = Vec::new();
        for (s, row) in SOURCES.iter().zip(&inner.calls.ended) {
            for (o, n) in OUTCOMES.iter().zip(row) {
                ended.push((
                    vec![("source", s.as_str()), ("outcome", o.as_str())],
                    n.load(Relaxed),
                ));
            }
        }
        counter(
            e,
            "fiche_calls",
            "Calls ended, by source and outcome.",
            &ended,
        )?;
        gauge(
            e,
            "fiche_live_calls",
            "Calls in the live table (ringing, answered, and ended ones lingering).",
            &[(vec![], as_i64(self.live_calls))],
        )?;

        let hub = inner.hub.stats();
        counter(
            e,
            "fiche_pops_sent",
            "Pop messages queued on agents' sockets (one per socket).",
            &[(vec![], hub.pops_sent())],
        )?;
        counter(
            e,
            "fiche_pops_withdrawn",
            "Pops withdrawn (the phone stopped ringing), one per socket.",
            &[(vec![], hub.pops_withdrawn())],
        )?;
        histogram(
            e,
            "fiche_pop_latency_seconds",
            "From the arrival of what made the phone ring (HEP packet, AMI message, CTI request) to the pop queued on the socket.",
            &hub.pop_latency(),
        )?;
        let sockets: Vec<(Labels<'_>, i64)> = self
            .sockets
            .iter()
            .map(|(role, n)| (vec![("role", role.as_str())], as_i64(*n)))
            .collect();
        gauge(
            e,
            "fiche_websockets",
            "Open page websockets (/ws), by the user's role.",
            &sockets,
        )?;

        let accepted: Vec<(Labels<'_>, u64)> = HepTransport::ALL
            .iter()
            .map(|t| (vec![("transport", t.as_str())], inner.hep.accepted(*t)))
            .collect();
        counter(
            e,
            "fiche_hep_packets_accepted",
            "HEP packets carrying SIP passed on to the call tracker, by transport.",
            &accepted,
        )?;
        let dropped: Vec<(Labels<'_>, u64)> = HepDrop::ALL
            .iter()
            .map(|r| (vec![("reason", r.as_str())], inner.hep.dropped(*r)))
            .collect();
        counter(
            e,
            "fiche_hep_packets_dropped",
            "HEP packets dropped, by reason (not_allowed also counts refused TCP connections).",
            &dropped,
        )?;

        let mut states: Vec<(Labels<'_>, i64)> = Vec::new();
        let mut losses: Vec<(Labels<'_>, u64)> = Vec::new();
        for (name, status) in &inner.ami {
            let now = status.state();
            for state in AmiState::ALL {
                states.push((
                    vec![("pbx", name.as_str()), ("state", state.as_str())],
                    i64::from(now == state),
                ));
            }
            losses.push((vec![("pbx", name.as_str())], status.losses()));
        }
        gauge(
            e,
            "fiche_ami_connection_state",
            "1 for the state each AMI source's connection is in, 0 for the others.",
            &states,
        )?;
        counter(
            e,
            "fiche_ami_connection_losses",
            "AMI connections lost or refused (connect, login, ping), by PBX.",
            &losses,
        )?;

        let depth: Vec<(Labels<'_>, i64)> = self
            .outbox
            .iter()
            .map(|(name, rows)| {
                (
                    vec![("target", name.as_str())],
                    i64::try_from(*rows).unwrap_or(i64::MAX),
                )
            })
            .collect();
        gauge(
            e,
            "fiche_webhook_outbox_depth",
            "Webhook deliveries waiting in the outbox, by target.",
            &depth,
        )?;
        let mut delivered = Vec::new();
        let mut failures = Vec::new();
        for target in &inner.webhooks {
            let name = target.name.as_str();
            delivered.push((vec![("target", name)], target.delivered.load(Relaxed)));
            failures.push((
                vec![("target", name), ("kind", "retried")],
                target.retried.load(Relaxed),
            ));
            failures.push((
                vec![("target", name), ("kind", "refused")],
                target.refused.load(Relaxed),
            ));
        }
        counter(
            e,
            "fiche_webhook_deliveries",
            "Webhook deliveries the target accepted, by target.",
            &delivered,
        )?;
        counter(
            e,
            "fiche_webhook_delivery_failures",
            "Failed webhook attempts, by target: retried (network, timeout, 408, 429, 5xx) or refused for good (other 4xx, dropped).",
            &failures,
        )?;

        histogram(
            e,
            "fiche_ticket_writer_batch_size",
            "Call events written per ticket writer transaction.",
            &inner.writer.batch_size.snapshot(),
        )?;
        histogram(
            e,
            "fiche_ticket_writer_lag_seconds",
            "From the arrival of a batch's oldest event to its commit.",
            &inner.writer.lag.snapshot(),
        )?;
        counter(
            e,
            "fiche_ticket_writer_failed_events",
            "Call events the ticket writer could not write.",
            &[(vec![], inner.writer.failed_events.load(Relaxed))],
        )?;
        let queued = inner.writer_queue.upgrade().map_or(0, |queue| {
            queue.max_capacity().saturating_sub(queue.capacity())
        });
        gauge(
            e,
            "fiche_ticket_writer_queue",
            "Call events waiting for the ticket writer.",
            &[(vec![], as_i64(queued))],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_own_slot() {
        for (slot, outcome) in OUTCOMES.iter().enumerate() {
            assert_eq!(outcome_slot(*outcome), slot, "{outcome:?}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn without_a_token_only_direct_loopback_requests_may_scrape() {
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        let remote: IpAddr = "192.0.2.7".parse().unwrap();
        for ip in [local, mapped, v6] {
            assert_eq!(access(None, Some(ip), &headers(&[])), Access::Granted);
        }
        assert_eq!(
            access(None, Some(remote), &headers(&[])),
            Access::NotLoopback
        );
        assert_eq!(access(None, None, &headers(&[])), Access::NotLoopback);
        // A reverse proxy on the same host relays the internet from loopback.
        for relayed in ["x-forwarded-for", "forwarded", "x-real-ip"] {
            assert_eq!(
                access(None, Some(local), &headers(&[(relayed, "203.0.113.9")])),
                Access::NotLoopback,
                "{relayed}"
            );
        }
    }

    #[test]
    fn with_a_token_every_scrape_needs_it_loopback_too() {
        let token = Some("0123456789abcdef");
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let remote: IpAddr = "192.0.2.7".parse().unwrap();
        let good = headers(&[("authorization", "Bearer 0123456789abcdef")]);
        assert_eq!(access(token, Some(remote), &good), Access::Granted);
        assert_eq!(access(token, Some(local), &headers(&[])), Access::NoToken);
        for wrong in [
            "Bearer 0123456789abcdeF",
            "Bearer 0123456789abcdef0",
            "Bearer ",
            "0123456789abcdef",
            "Basic 0123456789abcdef",
        ] {
            let given = headers(&[("authorization", wrong)]);
            assert_eq!(
                access(token, Some(local), &given),
                Access::NoToken,
                "{wrong}"
            );
        }
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(!constant_time_eq(b"a", b""));
        assert!(constant_time_eq(b"", b""));
    }
}

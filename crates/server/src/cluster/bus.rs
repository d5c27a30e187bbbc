//! The event log between nodes: what each node's sources see, and each ticket
//! change, appended to one table in one order; every node follows it into its
//! hub; one node feeds it to the writers.
//!
//! **One call, once.** Two nodes fed the same SIP (a proxy mirroring to two
//! collectors) track the same call under the same `CallId` and produce the
//! same events. Each event gets a key, its kind and occurrence in its call
//! ("ringing:201#1"), and the log keeps one row per key: the first node to
//! append it wins, the other's copy is not stored. A node applies an event to
//! its hub once, whether its own source or the log brought it first
//! ([`Seen`]), so an agent gets one pop. The ticket writer and the webhook
//! outbox read the log, not the sources, on the one node holding the `writer`
//! lease: one ticket and one delivery per event. They move their cursor in the
//! transaction that writes, so a new holder resumes exactly where the last
//! commit left off.

use crate::pipeline::{Remote, SinkEvent};
use crate::tickets::CallbackCounts;
use fiche_hub::{Hub, TicketSummary};
use fiche_pbx::{CallEvent, CallEventKind, CallId};
use fiche_store::{LogEntry, NewLogEntry, Store, LOG_CHANNEL};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Cluster;

/// Capacity of the pipeline → publisher sink.
pub const PUBLISH_QUEUE_CAPACITY: usize = 4096;
/// Most entries appended in one transaction.
const APPEND_BATCH: usize = 500;
/// Most entries read from the log at a time.
const READ_BATCH: u32 = 500;
/// The log is read this often even without a notification (a lost
/// notification, a listener reconnecting), so nothing waits longer.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Wait before trying the database again.
const DB_RETRY: Duration = Duration::from_millis(500);
/// What a starting node reads back of calls in progress: answered calls last
/// up to 4 hours (`calls` reaping), plus a margin.
const OPEN_CALLS_LOOKBACK: chrono::Duration = chrono::Duration::minutes(4 * 60 + 10);
/// Log entries older than this go, once every writer has passed them.
const KEEP_LOG: chrono::Duration = chrono::Duration::hours(6);
/// And never more than this many rows (100 calls/s for over an hour).
const MAX_LOG_ROWS: i64 = 2_000_000;
/// How often the log is pruned (by the holder of the `prune` lease).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// One entry of the log, as JSON in its `body`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Body {
    /// A call event, and its key in its call.
    Call { event: CallEvent, key: String },
    /// A ticket as changed.
    Ticket { ticket: TicketSummary },
}

/// The key of an event kind in its call, before its occurrence is counted.
fn kind_key(kind: &CallEventKind) -> String {
    fn ext(e: &Option<fiche_pbx::Extension>) -> &str {
        e.as_ref().map_or("", |e| e.as_str())
    }
    match kind {
        CallEventKind::CallStarted { .. } => "started".into(),
        CallEventKind::Ringing { extension } => format!("ringing:{extension}"),
        CallEventKind::RingingStopped { extension, .. } => format!("stopped:{extension}"),
        CallEventKind::Answered { extension } => format!("answered:{}", ext(extension)),
        CallEventKind::PartiesUpdated { .. } => "parties".into(),
        CallEventKind::Held => "held".into(),
        CallEventKind::Resumed => "resumed".into(),
        CallEventKind::Transferred(t) => format!("transferred:{}:{}", t.kind.as_str(), ext(&t.to)),
        CallEventKind::Ended { .. } => "ended".into(),
    }
}

/// Which call events this node has applied, whichever way they came, so that
/// each reaches the hub once.
#[derive(Debug, Default)]
pub struct Seen {
    calls: HashMap<CallId, SeenCall>,
}

#[derive(Debug, Default)]
struct SeenCall {
    /// How often this node's own sources produced each kind key.
    local: HashMap<String, u32>,
    /// The keys applied.
    applied: HashSet<String>,
}

impl Seen {
    /// The key of an event from this node's sources, and whether it is new
    /// (not already applied from the log).
    pub fn local(&mut self, event: &CallEvent) -> (String, bool) {
        let call = self.calls.entry(event.call_id).or_default();
        let base = kind_key(&event.kind);
        let n = call.local.entry(base.clone()).or_insert(0);
        *n += 1;
        let key = format!("{base}#{n}");
        let fresh = call.applied.insert(key.clone());
        (key, fresh)
    }

    /// Whether an event read from the log is new here (then it is applied).
    pub fn remote(&mut self, call_id: CallId, key: &str) -> bool {
        let call = self.calls.entry(call_id).or_default();
        if call.applied.contains(key) {
            return false;
        }
        call.applied.insert(key.to_owned())
    }

    /// Forgets the calls `keep` says no.
    pub fn retain(&mut self, keep: impl Fn(&CallId) -> bool) {
        self.calls.retain(|id, _| keep(id));
    }
}

/// Starts the task that appends this node's events and ticket changes to the
/// log; returns the pipeline's sink. Each event's receipt is settled once its
/// append committed: in a cluster, an event is durable once it is in the log.
pub fn publisher(
    cluster: Cluster,
    tickets: Option<mpsc::Receiver<TicketSummary>>,
    tasks: &tokio_util::task::TaskTracker,
) -> mpsc::Sender<SinkEvent> {
    let (sink, events) = mpsc::channel(PUBLISH_QUEUE_CAPACITY);
    tasks.spawn(publish(cluster, events, tickets));
    sink
}

async fn publish(
    cluster: Cluster,
    mut events: mpsc::Receiver<SinkEvent>,
    mut tickets: Option<mpsc::Receiver<TicketSummary>>,
) {
    let mut batch: Vec<SinkEvent> = Vec::with_capacity(APPEND_BATCH);
    let mut changed: Vec<TicketSummary> = Vec::new();
    let mut events_open = true;
    while events_open || tickets.is_some() {
        tokio::select! {
            // Calls first: the ticket a call made follows the call.
            biased;
            n = events.recv_many(&mut batch, APPEND_BATCH), if events_open => {
                if n == 0 {
                    events_open = false;
                    continue;
                }
            }
            ticket = recv(&mut tickets), if tickets.is_some() => match ticket {
                Some(ticket) => changed.push(ticket),
                None => tickets = None,
            },
        }
        let mut entries = Vec::with_capacity(batch.len() + changed.len());
        for item in &batch {
            let key = item.key.clone().unwrap_or_default();
            let body = Body::Call {
                event: item.event.clone(),
                key: key.clone(),
            };
            entries.push(NewLogEntry {
                call_id: Some(item.event.call_id.to_string()),
                dedupe: Some(key),
                body: to_json(&body),
                at: item.event.at,
            });
        }
        for ticket in changed.drain(..) {
            entries.push(NewLogEntry {
                call_id: None,
                dedupe: None,
                body: to_json(&Body::Ticket { ticket }),
                at: chrono::Utc::now(),
            });
        }
        if entries.is_empty() {
            continue;
        }
        // Nothing acknowledged is lost: the append is retried until it
        // commits; meanwhile the pipeline's sink fills and it waits.
        loop {
            match cluster.store().log_append(cluster.node(), &entries).await {
                Ok(_) => break,
                Err(error) => {
                    warn!(%error, entries = entries.len(), "event log append failed; retrying");
                    tokio::time::sleep(DB_RETRY).await;
                }
            }
        }
        for item in batch.drain(..) {
            if let Some(receipt) = item.receipt {
                receipt.durable();
            }
        }
    }
}

fn to_json(body: &Body) -> String {
    // Serialising plain data with string keys cannot fail; an empty object
    // would be skipped by readers.
    serde_json::to_string(body).unwrap_or_else(|_| "{}".into())
}

async fn recv<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => None,
    }
}

/// What the follower hands on besides call events.
pub struct FollowTargets {
    /// The pipeline's input for other nodes' call events.
    pub remote: mpsc::Sender<Remote>,
    /// Other nodes' ticket changes go to this node's pages.
    pub hub: Hub,
    /// Woken when another node changed tickets (the board's figures).
    pub tickets_changed: Arc<Notify>,
    /// Most calls read back at start.
    pub live_max: usize,
}

/// Follows the log into this node until `shutdown`: first the calls in
/// progress (so the board and a reconnecting page see calls tracked
/// elsewhere), then every entry other nodes append. A reconnect reads on
/// from the last entry applied, so nothing is missed.
pub async fn follow(cluster: Cluster, targets: FollowTargets, shutdown: CancellationToken) {
    let store = cluster.store().clone();
    let mut counts = CallbackCounts::default();
    let mut cursor = loop {
        match catch_up(&store, &targets).await {
            Ok(end) => break end,
            Err(error) => {
                warn!(%error, "calls in progress on other nodes not read; retrying");
                if crate::outbox::sleep_or_stop(DB_RETRY, &shutdown).await {
                    return;
                }
            }
        }
    };
    let mut listener = None;
    loop {
        // Read everything there is, then wait for news.
        loop {
            match store
                .log_after(cursor, READ_BATCH, Some(cluster.node()))
                .await
            {
                Ok(entries) if entries.is_empty() => break,
                Ok(entries) => {
                    let full = entries.len() == READ_BATCH as usize;
                    let mut tickets = false;
                    for entry in entries {
                        cursor = entry.seq;
                        tickets |= apply(entry, &targets, true).await;
                    }
                    if tickets {
                        targets.tickets_changed.notify_one();
                        counts.push(&store, &targets.hub).await;
                    }
                    if !full {
                        break;
                    }
                }
                Err(error) => {
                    warn!(%error, "event log not read; retrying");
                    break;
                }
            }
        }
        if !super::wait_for_news(&store, LOG_CHANNEL, &mut listener, POLL_EVERY, &shutdown).await {
            return;
        }
    }
}

/// Applies the calls in progress; returns the log's end, where following starts.
async fn catch_up(store: &Store, targets: &FollowTargets) -> fiche_store::Result<i64> {
    let end = store.log_end().await?;
    let since = chrono::Utc::now() - OPEN_CALLS_LOOKBACK;
    let limit = u32::try_from(targets.live_max).unwrap_or(u32::MAX);
    let entries = store.log_open_calls(since, end, limit).await?;
    let n = entries.len();
    for entry in entries {
        apply(entry, targets, false).await;
    }
    if n > 0 {
        info!(events = n, "calls in progress on other nodes read back");
    }
    Ok(end)
}

/// Hands one entry on; true when it was a ticket change.
async fn apply(entry: LogEntry, targets: &FollowTargets, tickets: bool) -> bool {
    match serde_json::from_str::<Body>(&entry.body) {
        Ok(Body::Call { event, key }) => {
            // The pipeline gone means shutdown: nothing more to apply.
            let _ = targets.remote.send(Remote { event, key }).await;
            false
        }
        Ok(Body::Ticket { ticket }) if tickets => {
            targets.hub.publish_ticket(&ticket);
            true
        }
        Ok(Body::Ticket { .. }) => false,
        Err(error) => {
            warn!(seq = entry.seq, node = ?entry.node, %error, "event log entry unreadable; skipped");
            false
        }
    }
}

/// Feeds every call event of the log, in order, to the writers (each sink is
/// given with the name of its cursor), until `tenure` ends: the work of the
/// `writer` lease. Starts at the earliest cursor; each writer skips what it
/// wrote already, in its own transaction.
pub async fn feed_writers(
    store: Store,
    sinks: Vec<(Vec<String>, mpsc::Sender<SinkEvent>)>,
    tenure: CancellationToken,
) {
    let names: Vec<&String> = sinks.iter().flat_map(|(names, _)| names).collect();
    let mut cursor = loop {
        let mut min = i64::MAX;
        let mut failed = None;
        for name in &names {
            match store.cursor(name).await {
                Ok(seq) => min = min.min(seq),
                Err(error) => failed = Some(error),
            }
        }
        match failed {
            None => break if min == i64::MAX { 0 } else { min },
            Some(error) => {
                warn!(%error, "writers' cursors not read; retrying");
                if crate::outbox::sleep_or_stop(DB_RETRY, &tenure).await {
                    return;
                }
            }
        }
    };
    info!(from = cursor, "feeding the writers from the event log");
    let mut listener = None;
    loop {
        loop {
            match store.log_after(cursor, READ_BATCH, None).await {
                Ok(entries) if entries.is_empty() => break,
                Ok(entries) => {
                    for entry in entries {
                        cursor = entry.seq;
                        let Ok(Body::Call { event, key }) = serde_json::from_str(&entry.body)
                        else {
                            continue;
                        };
                        for (_, sink) in &sinks {
                            let item = SinkEvent {
                                event: event.clone(),
                                receipt: None,
                                key: Some(key.clone()),
                                log_seq: Some(entry.seq),
                            };
                            tokio::select! {
                                sent = sink.send(item) => if sent.is_err() { return },
                                () = tenure.cancelled() => return,
                            }
                        }
                    }
                }
                Err(error) => {
                    warn!(%error, "event log not read for the writers; retrying");
                    break;
                }
            }
            if tenure.is_cancelled() {
                return;
            }
        }
        if !super::wait_for_news(&store, LOG_CHANNEL, &mut listener, POLL_EVERY, &tenure).await {
            return;
        }
    }
}

/// Prunes the log every minute until `tenure` ends: the work of the `prune` lease.
pub async fn prune(store: Store, tenure: CancellationToken) {
    loop {
        match store
            .log_prune(chrono::Utc::now() - KEEP_LOG, MAX_LOG_ROWS)
            .await
        {
            Ok(0) => {}
            Ok(n) => debug!(entries = n, "event log pruned"),
            Err(error) => warn!(%error, "event log not pruned"),
        }
        if crate::outbox::sleep_or_stop(PRUNE_EVERY, &tenure).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fiche_pbx::{Extension, Source};

    fn id(call: u8) -> CallId {
        CallId::from_source_key(Source::Hep, &call.to_string())
    }

    fn event(call: u8, kind: CallEventKind) -> CallEvent {
        CallEvent {
            call_id: id(call),
            source: Source::Hep,
            at: chrono::Utc::now(),
            kind,
        }
    }

    fn ringing(ext: &str) -> CallEventKind {
        CallEventKind::Ringing {
            extension: Extension::new(ext).expect("an extension"),
        }
    }

    #[test]
    fn an_event_seen_from_the_log_first_is_not_applied_again_when_the_own_source_sees_it() {
        let mut seen = Seen::default();
        let call = id(1);
        assert!(seen.remote(call, "ringing:201#1"));
        let (key, fresh) = seen.local(&event(1, ringing("201")));
        assert_eq!(key, "ringing:201#1");
        assert!(
            !fresh,
            "the pop was already shown from the other node's copy"
        );
        assert!(!seen.remote(call, "ringing:201#1"));
    }

    #[test]
    fn a_phone_ringing_again_is_a_new_event() {
        let mut seen = Seen::default();
        assert_eq!(
            seen.local(&event(1, ringing("201"))),
            ("ringing:201#1".into(), true)
        );
        assert_eq!(
            seen.local(&event(1, ringing("201"))),
            ("ringing:201#2".into(), true)
        );
        assert_eq!(
            seen.local(&event(2, ringing("201"))),
            ("ringing:201#1".into(), true)
        );
        assert!(seen.remote(id(1), "ringing:201#3"));
    }
}

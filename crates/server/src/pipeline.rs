//! The call-event pipeline: every source's events in, the live table and the
//! websocket fan-out updated, in order.
//!
//! One task owns the order of events; readers of the live table take a short
//! read lock and never hold it across an await.
//!
//! A source that acknowledges what it reports (the CTI webhook's reply) sends
//! its events with a [`Receipt`]: every sink holds a clone until the event is
//! durable in it (the ticket writer until its transaction commits, the webhook
//! outbox until the delivery is stored), and the source hears back once the
//! last clone is gone. Sinks already batch what is queued, so concurrent
//! requests share one commit (group commit).

use crate::tickets::cards::{CardCompletion, CardMaker};
use chrono::Utc;
use fiche_hub::Hub;
use fiche_pbx::{CallEvent, CallEventKind, CallId, Direction};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn};

/// Capacity of the sources → pipeline channel; sources wait when it is full.
pub const EVENT_QUEUE_CAPACITY: usize = 4096;

/// Capacity of the acknowledged sources → pipeline channel (one item per CTI
/// request, with its events); a request waits when it is full.
pub const ACKNOWLEDGED_QUEUE_CAPACITY: usize = 1024;

/// Capacity of the websocket fan-out; a socket that falls this far behind is
/// closed (it reconnects and reloads the live table) rather than slowing others.
pub const FANOUT_CAPACITY: usize = 1024;

/// Call-event log lines written per second at most; beyond, events are counted
/// and summed up in one line, so a flood of calls cannot flood the log.
const LOG_LINES_PER_SECOND: u32 = 200;

/// How often ended calls past their linger time are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(5);

/// Tells a source when the events it sent are durable in every sink.
///
/// Clones travel with the event, one per sink. A sink calls
/// [`Receipt::durable`] on its clone once the event is durable there; a clone
/// dropped otherwise (the write failed, the sink or the pipeline stopped with
/// it queued) counts as a failure. When the last clone is gone, the source's
/// [`oneshot::Receiver`] gets `true` (durable everywhere) or `false`.
#[derive(Debug)]
pub struct Receipt {
    inner: Arc<ReceiptInner>,
    /// Set by [`Receipt::durable`]; a clone dropped without it fails the receipt.
    settled: bool,
}

#[derive(Debug)]
struct ReceiptInner {
    failed: AtomicBool,
    done: Option<oneshot::Sender<bool>>,
}

impl Drop for ReceiptInner {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            // The source may have stopped waiting (its client went away): fine.
            let _ = done.send(!self.failed.load(Ordering::Acquire));
        }
    }
}

impl Clone for Receipt {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            settled: false,
        }
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        if !self.settled {
            self.inner.failed.store(true, Ordering::Release);
        }
    }
}

impl Receipt {
    /// A receipt, and where its answer arrives.
    pub fn new() -> (Self, oneshot::Receiver<bool>) {
        let (done, answer) = oneshot::channel();
        let inner = ReceiptInner {
            failed: AtomicBool::new(false),
            done: Some(done),
        };
        let receipt = Self {
            inner: Arc::new(inner),
            settled: false,
        };
        (receipt, answer)
    }

    /// This holder's part is durable.
    pub fn durable(mut self) {
        self.settled = true;
    }
}

/// A call event on its way to a sink, with the receipt of the request that
/// reported it, when its source waits for it to be durable.
#[derive(Debug)]
pub struct SinkEvent {
    /// The event.
    pub event: CallEvent,
    /// Settled by the sink once the event is durable there.
    pub receipt: Option<Receipt>,
    /// In a cluster, the event's key in its call (see `cluster::bus`).
    pub key: Option<String>,
    /// In a cluster, the event's place in the log: a writer fed from the log
    /// writes it only past its cursor, and moves the cursor in the same
    /// transaction.
    pub log_seq: Option<i64>,
}

impl From<CallEvent> for SinkEvent {
    fn from(event: CallEvent) -> Self {
        Self {
            event,
            receipt: None,
            key: None,
            log_seq: None,
        }
    }
}

/// A call event another node's sources produced, read from the cluster's log.
#[derive(Debug)]
pub struct Remote {
    /// The event.
    pub event: CallEvent,
    /// Its key in its call.
    pub key: String,
}

/// Events from a source that acknowledges them (one CTI request), in order,
/// and the receipt it waits on.
#[derive(Debug)]
pub struct Acknowledged {
    /// The request's events (possibly none: it still waits for what came before).
    pub events: Vec<CallEvent>,
    /// Answered once every event is durable in every sink.
    pub receipt: Receipt,
}

/// The log lines left this second (see [`LOG_LINES_PER_SECOND`]).
#[derive(Debug)]
struct LogBudget {
    second: std::time::Instant,
    used: u32,
    skipped: u64,
}

impl LogBudget {
    fn new() -> Self {
        Self {
            second: std::time::Instant::now(),
            used: 0,
            skipped: 0,
        }
    }

    /// Whether this event may be logged.
    fn allow(&mut self) -> bool {
        if self.second.elapsed() >= Duration::from_secs(1) {
            if self.skipped > 0 {
                warn!(
                    skipped = self.skipped,
                    "call events not logged: more than {LOG_LINES_PER_SECOND} in a second"
                );
            }
            *self = Self::new();
        }
        if self.used < LOG_LINES_PER_SECOND {
            self.used += 1;
            true
        } else {
            self.skipped += 1;
            false
        }
    }
}

/// Where each event goes after the live table.
pub struct Outputs {
    /// Every call event as JSON (the raw event stream).
    pub fanout: broadcast::Sender<Arc<str>>,
    /// Per-agent routing of pops and call updates, and the supervisor board.
    pub hub: Hub,
    /// Writers that persist or forward events (tickets, webhooks). Each gets every
    /// event in order and must keep up: a full sink slows the pipeline rather than
    /// lose an event. A sink whose receiver is gone is dropped with a warning.
    pub sinks: Vec<mpsc::Sender<SinkEvent>>,
    /// Builds the pop card on a call's first `Ringing`; no cards when `None`.
    pub cards: Option<CardMaker>,
    /// Completes those cards from the store, off the pipeline's path.
    pub completion: Option<CardCompletion>,
    /// Calls begun and ended, for `/metrics`.
    pub calls: Arc<crate::metrics::CallStats>,
    /// In a cluster, which events this node applied (its sinks are then the
    /// log's publisher); `None` on a single node.
    pub seen: Option<crate::cluster::bus::Seen>,
}

/// Where an event comes from.
enum Origin<'a> {
    /// This node's sources, with the receipt of the request that reported it.
    Local(Option<&'a Receipt>),
    /// Another node, through the log: for this node's hub only.
    Remote(String),
}

/// Applies events until every sender is gone or `shutdown` fires, then drains
/// what is already queued. Dropping the sinks on return lets their writers
/// drain in turn. `events` come from sources that do not wait (HEP, AMI),
/// `acknowledged` from those that do (CTI), `remote` from other nodes (in a
/// cluster; `None` alone).
pub async fn run(
    mut events: mpsc::Receiver<CallEvent>,
    mut acknowledged: mpsc::Receiver<Acknowledged>,
    remote: Option<mpsc::Receiver<Remote>>,
    mut outputs: Outputs,
    ended_linger: Duration,
    shutdown: CancellationToken,
) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    let mut carded = HashSet::new();
    let mut budget = LogBudget::new();
    let mut events_open = true;
    let mut acknowledged_open = true;
    let mut remote_open = remote.is_some();
    // Alone, a channel nobody sends on, never read.
    let mut remote = remote.unwrap_or_else(|| mpsc::channel(1).1);
    while events_open || acknowledged_open {
        tokio::select! {
            event = events.recv(), if events_open => match event {
                Some(event) => handle(event, Origin::Local(None), &mut outputs, (&mut carded, &mut budget)).await,
                None => events_open = false,
            },
            item = remote.recv(), if remote_open => match item {
                Some(Remote { event, key }) => handle(event, Origin::Remote(key), &mut outputs, (&mut carded, &mut budget)).await,
                None => remote_open = false,
            },
            item = acknowledged.recv(), if acknowledged_open => match item {
                Some(item) => handle_acknowledged(item, &mut outputs, (&mut carded, &mut budget)).await,
                None => acknowledged_open = false,
            },
            _ = prune.tick() => {
                let cutoff = Utc::now() - chrono::Duration::from_std(ended_linger).unwrap_or_default();
                outputs.hub.prune(cutoff);
                carded.retain(|id| outputs.hub.has_call(id));
                if let Some(seen) = &mut outputs.seen {
                    seen.retain(|id| outputs.hub.has_call(id));
                }
            }
            () = shutdown.cancelled() => {
                events.close();
                acknowledged.close();
                while let Some(event) = events.recv().await {
                    handle(event, Origin::Local(None), &mut outputs, (&mut carded, &mut budget)).await;
                }
                while let Some(item) = acknowledged.recv().await {
                    handle_acknowledged(item, &mut outputs, (&mut carded, &mut budget)).await;
                }
                return;
            }
        }
    }
}

/// What the pipeline remembers between events: the calls whose card is made,
/// and the log lines left this second.
type Memory<'a> = (&'a mut HashSet<CallId>, &'a mut LogBudget);

async fn handle_acknowledged(
    item: Acknowledged,
    outputs: &mut Outputs,
    (carded, budget): Memory<'_>,
) {
    let Acknowledged { events, receipt } = item;
    for event in events {
        handle(
            event,
            Origin::Local(Some(&receipt)),
            outputs,
            (&mut *carded, &mut *budget),
        )
        .await;
    }
    // The pipeline's own part: each sink holds a clone until its write is
    // durable. A request that reported nothing new (a repeated hangup) is
    // answered here: what it repeats was made durable when first reported.
    receipt.durable();
}

async fn handle(
    event: CallEvent,
    origin: Origin<'_>,
    outputs: &mut Outputs,
    (carded, budget): Memory<'_>,
) {
    // In a cluster an event is applied once, whether this node's source or
    // the log brings it first (two nodes fed the same SIP).
    let (receipt, key) = match (&origin, &mut outputs.seen) {
        (Origin::Local(receipt), Some(seen)) => match seen.local(&event) {
            (key, true) => (*receipt, Some(key)),
            // Already in the log from another node: durable, and shown.
            (_, false) => return,
        },
        (Origin::Local(receipt), None) => (*receipt, None),
        (Origin::Remote(key), Some(seen)) => {
            if !seen.remote(event.call_id, key) {
                return;
            }
            (None, None)
        }
        (Origin::Remote(_), None) => return,
    };
    let remote = matches!(origin, Origin::Remote(_));
    let span = info_span!("call", id = %event.call_id, source = %event.source);
    let _entered = span.enter();
    match &event.kind {
        _ if !budget.allow() => {}
        // Numbers and names are untrusted: `?` escapes them in the log line.
        CallEventKind::CallStarted {
            direction,
            caller,
            callee,
            ..
        } => info!(
            ?direction, caller = ?caller.number, caller_name = ?caller.name,
            withheld = caller.withheld, callee = ?callee.number, "call started"
        ),
        CallEventKind::Ended { outcome, cause } => info!(?outcome, cause = ?cause, "call ended"),
        other => info!(event = other.name(), "call event"),
    }
    if !remote {
        // Each node counts what its own sources saw.
        outputs.calls.count(&event);
    }
    // In-memory fan-out first: the pop reaches the agent before anything touches the disk.
    // The card is made from the call as the hub's live table holds it, which
    // knows the call since its `CallStarted`; the hub applies this event below.
    let card = match (&event.kind, &outputs.cards) {
        (CallEventKind::Ringing { .. }, Some(cards)) if !carded.contains(&event.call_id) => {
            outputs.hub.call(&event.call_id).map(|call| {
                let remote = match call.direction {
                    Direction::Outbound => &call.callee,
                    _ => &call.caller,
                };
                let (card, _) = cards.first_card(remote.number.as_deref(), remote.withheld);
                carded.insert(event.call_id);
                card
            })
        }
        _ => None,
    };
    if let CallEventKind::Ended { .. } = event.kind {
        carded.remove(&event.call_id);
    }
    outputs.hub.publish_call(&event, card.clone());
    // Serialised only for a subscriber: most of the time nobody watches
    // /ws/events, and one who subscribes later gets later events either way.
    if outputs.fanout.receiver_count() > 0 {
        match serde_json::to_string(&event) {
            Ok(json) => drop(outputs.fanout.send(Arc::from(json))),
            Err(error) => warn!(%error, "call event not serialisable"),
        }
    }
    drop(_entered);
    if let CallEventKind::Ringing { .. } = event.kind {
        // Let the sockets' pumps write the pop before the card completion and
        // the sinks are woken: the scheduler runs the task woken last first, so
        // their tasks would run ahead of the pumps and delay the pop by tens of
        // µs (BENCHMARKS.md, "where the time goes").
        tokio::task::yield_now().await;
    }
    if let (Some(card), Some(completion)) = (card, &outputs.completion) {
        completion.submit(event.call_id, card);
    }
    if remote {
        // Its sinks ran on the node that saw it (its publisher, then the writers).
        return;
    }
    let mut closed = Vec::new();
    for (i, sink) in outputs.sinks.iter().enumerate() {
        let item = SinkEvent {
            event: event.clone(),
            receipt: receipt.cloned(),
            key: key.clone(),
            log_seq: None,
        };
        // A sink gone drops the item, its receipt clone unsettled: a failure.
        if sink.send(item).await.is_err() {
            closed.push(i);
        }
    }
    for i in closed.into_iter().rev() {
        warn!("an event writer stopped; its events are no longer delivered");
        outputs.sinks.remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_is_durable_once_every_holder_settled_it() {
        let (receipt, mut answer) = Receipt::new();
        let (writer, outbox) = (receipt.clone(), receipt.clone());
        receipt.durable();
        writer.durable();
        assert!(answer.try_recv().is_err(), "the outbox still holds it");
        outbox.durable();
        assert_eq!(answer.try_recv(), Ok(true));
    }

    #[test]
    fn a_receipt_dropped_unsettled_anywhere_fails() {
        let (receipt, mut answer) = Receipt::new();
        let writer = receipt.clone();
        receipt.durable();
        // A failed write, or a sink gone with the event queued.
        drop(writer);
        assert_eq!(answer.try_recv(), Ok(false));
    }
}

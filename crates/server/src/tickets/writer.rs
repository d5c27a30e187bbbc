//! The ticket writer: a pipeline sink that persists every call and turns it into
//! a ticket, exactly once per call even when events are replayed.
//!
//! Events arrive in order; the writer takes them in batches (what is queued, up
//! to [`BATCH_MAX`]) and writes each batch in one store transaction, so a burst
//! costs one wake-up and one commit. Ticket changes reach the hub and the feed
//! only once their batch is committed. When a batch fails, it is rolled back
//! (the writer's memory of the calls too) and written again event by event, so
//! one bad event loses only itself. An event that came with a receipt (a CTI
//! request waiting to reply) has it settled once its transaction committed, so
//! the phone system is answered only when the call's row and ticket are on
//! disk; the batch is the group commit. The writer drains everything queued before it
//! stops: the pipeline drops its sender on shutdown and the writer returns once
//! the channel is empty.
//!
//! What an agent saved on a call's card before its ticket existed (a draft, see
//! `fiche_store::TicketDraft`) is moved onto the ticket in the transaction that
//! gives the call its ticket; a call that would make no ticket makes one when it
//! has drafts, so nothing the agent typed is lost.

use super::cards::CardMaker;
use super::{rules, summary, CallKind, TicketsConfig};
use crate::pipeline::SinkEvent;
use chrono::{DateTime, Utc};
use fiche_hub::{Hub, Priority};
use fiche_matcher::{format_display, normalise, NumberKind};
use fiche_pbx::{CallEvent, CallEventKind, CallId, Direction, Outcome, Party, Source, Transfer};
use fiche_store::{
    Call, CustomerId, NewTicket, Store, StoreError, Ticket, TicketKind, TicketStatus, TicketTx,
    UserId,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};
use tracing::{debug, warn};

/// Capacity of the pipeline → writer channel.
pub const WRITER_QUEUE_CAPACITY: usize = 4096;
/// Most events taken in one batch.
pub const BATCH_MAX: usize = 100;
/// The writer's cursor in a cluster's log.
pub const LOG_CURSOR: &str = "tickets";
/// Calls tracked at once; beyond, the oldest are forgotten (their row stays).
const MAX_TRACKED: usize = 100_000;

/// What the writer remembers of a call between its events.
#[derive(Debug, Clone)]
struct Track {
    source: Source,
    source_key: String,
    direction: Direction,
    caller: Party,
    callee: Party,
    started_at: DateTime<Utc>,
    answered_at: Option<DateTime<Utc>>,
    agent: Option<String>,
    rang: Vec<String>,
    /// The first phone that answered.
    answered_by: Option<String>,
    transfers: Vec<Transfer>,
    remote_e164: Option<String>,
    remote_display: String,
    customer_id: Option<CustomerId>,
    /// The queue or line the source names.
    queue: Option<String>,
    /// How it ended, once it did.
    outcome: Option<Outcome>,
}

/// Persists calls and tickets and tells the hub.
pub struct TicketWriter {
    /// Where calls and tickets go.
    pub store: Store,
    /// Ticket changes and open-callback counts go out here.
    pub hub: Hub,
    /// Matching callers to customers.
    pub cards: CardMaker,
    /// Which calls make tickets, callback delay, linking.
    pub config: TicketsConfig,
    /// Woken after every batch that changed something, for the figures.
    pub changed: Arc<Notify>,
    /// Ticket changes for the webhook outbox.
    pub feed: super::TicketFeed,
    /// Batch sizes, lag and failures, for `/metrics`.
    pub stats: Arc<crate::metrics::WriterStats>,
    tracks: HashMap<CallId, Track>,
    callback_counts: super::CallbackCounts,
    /// The tracks as they were before the batch being written touched them, to
    /// put back when it rolls back.
    journal: HashMap<CallId, Option<Track>>,
    /// Tickets the batch changed, published once it is committed (latest state,
    /// in the order they first changed).
    changed_tickets: Vec<Ticket>,
    /// Tickets of `changed_tickets` that the batch created.
    created_tickets: HashSet<i64>,
    /// Customers the batch's calls are with, and when each call started: the
    /// store made it their last contact, the index follows once committed.
    contacts: Vec<(CustomerId, DateTime<Utc>)>,
}

impl TicketWriter {
    /// A writer with nothing tracked yet.
    pub fn new(
        store: Store,
        hub: Hub,
        cards: CardMaker,
        config: TicketsConfig,
        changed: Arc<Notify>,
        feed: super::TicketFeed,
    ) -> Self {
        Self {
            store,
            hub,
            cards,
            config,
            changed,
            feed,
            stats: Arc::default(),
            tracks: HashMap::new(),
            callback_counts: super::CallbackCounts::default(),
            journal: HashMap::new(),
            changed_tickets: Vec::new(),
            created_tickets: HashSet::new(),
            contacts: Vec::new(),
        }
    }

    /// Writes events until the sender is gone and the queue is empty.
    pub async fn run(mut self, mut events: mpsc::Receiver<SinkEvent>) {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        // Counts left by an earlier run reach the pages before any new call.
        self.push_open_callbacks().await;
        while events.recv_many(&mut batch, BATCH_MAX).await > 0 {
            // Receipts are settled only after a commit; those left in the batch
            // when it is cleared (events not written) tell their source so.
            let tickets_changed = match self.write(&batch).await {
                Ok(changed) => {
                    settle(&mut batch);
                    // How long the oldest event waited between its source and the
                    // disk: a crash within that time loses it (HEP's crash window).
                    if let Some(oldest) = batch.iter().map(|item| item.event.at).min() {
                        let waited = Utc::now() - oldest;
                        let waited_us = waited.num_microseconds().unwrap_or(i64::MAX);
                        debug!(events = batch.len(), waited_us, "batch committed");
                        self.stats
                            .committed(batch.len(), waited.to_std().unwrap_or_default());
                    }
                    changed
                }
                Err(error) if batch.len() == 1 => {
                    self.stats.failed();
                    let event = &batch[0].event;
                    warn!(%error, call = %event.call_id, event = event.kind.name(), "call not written");
                    false
                }
                Err(error) => {
                    warn!(%error, events = batch.len(), "batch not written; writing its events one by one");
                    let mut changed = false;
                    for item in &mut batch {
                        match self.write(std::slice::from_ref(item)).await {
                            Ok(c) => {
                                changed |= c;
                                let waited = Utc::now() - item.event.at;
                                self.stats.committed(1, waited.to_std().unwrap_or_default());
                                settle(std::slice::from_mut(item));
                            }
                            Err(error) => {
                                self.stats.failed();
                                let event = &item.event;
                                warn!(%error, call = %event.call_id, event = event.kind.name(), "call not written")
                            }
                        }
                    }
                    changed
                }
            };
            batch.clear();
            if tickets_changed {
                self.push_open_callbacks().await;
            }
            self.changed.notify_one();
        }
    }

    /// Writes `events` in one transaction, then publishes the tickets they
    /// changed; true when a ticket changed. On error nothing is written and the
    /// calls' tracks are as before.
    async fn write(&mut self, events: &[SinkEvent]) -> Result<bool, StoreError> {
        self.journal.clear();
        self.changed_tickets.clear();
        self.created_tickets.clear();
        self.contacts.clear();
        match self.write_in_one(events).await {
            Ok(changed) => {
                self.journal.clear();
                if !self.contacts.is_empty() {
                    // Among customers sharing a number, the next pop shows the one
                    // last in touch first, as the index built at start would.
                    self.cards.customers.touch(self.contacts.drain(..));
                }
                for ticket in std::mem::take(&mut self.changed_tickets) {
                    let name = ticket
                        .customer_id
                        .and_then(|id| self.cards.customers.cached(id.0))
                        .map(|c| c.name);
                    let mut summary = summary(&ticket, name);
                    summary.created = self.created_tickets.contains(&ticket.id.0);
                    self.hub.publish_ticket(&summary);
                    self.feed.send(summary).await;
                }
                Ok(changed)
            }
            Err(error) => {
                for (id, before) in self.journal.drain() {
                    match before {
                        Some(track) => self.tracks.insert(id, track),
                        None => self.tracks.remove(&id),
                    };
                }
                self.changed_tickets.clear();
                self.created_tickets.clear();
                self.contacts.clear();
                Err(error)
            }
        }
    }

    async fn write_in_one(&mut self, events: &[SinkEvent]) -> Result<bool, StoreError> {
        let mut tx = self.store.begin_tickets().await?;
        let mut changed = false;
        // Fed from a cluster's log: what the cursor passed was written already
        // (by this node before a crash, or by the last holder of the work).
        let last = events.iter().filter_map(|item| item.log_seq).max();
        let written = match last {
            Some(_) => tx.log_cursor(LOG_CURSOR).await?,
            None => i64::MIN,
        };
        for item in events {
            if item.log_seq.is_some_and(|seq| seq <= written) {
                continue;
            }
            changed |= self.apply(&mut tx, &item.event).await?;
        }
        if let Some(last) = last {
            tx.log_cursor_set(LOG_CURSOR, last).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Notes how `id`'s track was before this batch first changes it.
    fn touch(&mut self, id: CallId) {
        if !self.journal.contains_key(&id) {
            self.journal.insert(id, self.tracks.get(&id).cloned());
        }
    }

    fn wants(&self, kind: CallKind) -> bool {
        self.config.create_for.contains(&kind)
    }

    /// Applies one event; true when a ticket changed.
    async fn apply(&mut self, tx: &mut TicketTx, event: &CallEvent) -> Result<bool, StoreError> {
        match &event.kind {
            CallEventKind::CallStarted {
                source_key,
                direction,
                caller,
                callee,
                queue,
                ..
            } => {
                if self.tracks.len() >= MAX_TRACKED {
                    // A call whose end was never seen; its row keeps what was known.
                    if let Some(oldest) = self
                        .tracks
                        .iter()
                        .min_by_key(|(_, t)| t.started_at)
                        .map(|(id, _)| *id)
                    {
                        self.touch(oldest);
                        self.tracks.remove(&oldest);
                    }
                }
                let mut track = Track {
                    source: event.source,
                    source_key: source_key.clone(),
                    direction: *direction,
                    caller: caller.clone(),
                    callee: callee.clone(),
                    started_at: event.at,
                    answered_at: None,
                    agent: None,
                    rang: Vec::new(),
                    answered_by: None,
                    transfers: Vec::new(),
                    remote_e164: None,
                    remote_display: String::new(),
                    customer_id: None,
                    queue: queue.clone(),
                    outcome: None,
                };
                if *direction == Direction::Outbound {
                    track.agent = caller.number.clone();
                }
                self.identify(&mut track);
                tx.upsert_call(&call_row(event.call_id, &track)).await?;
                if let Some(customer) = track.customer_id {
                    self.contacts.push((customer, track.started_at));
                }
                self.touch(event.call_id);
                self.tracks.insert(event.call_id, track);
                Ok(false)
            }
            CallEventKind::Ringing { extension } => {
                self.touch(event.call_id);
                if let Some(track) = self.tracks.get_mut(&event.call_id) {
                    if !track.rang.iter().any(|r| r == extension) {
                        track.rang.push(extension.to_string());
                    }
                }
                Ok(false)
            }
            CallEventKind::PartiesUpdated { caller, callee } => {
                self.touch(event.call_id);
                if let Some(track) = self.tracks.get_mut(&event.call_id) {
                    track.caller = caller.clone();
                    track.callee = callee.clone();
                }
                Ok(false)
            }
            CallEventKind::Answered { extension } => {
                self.recall(tx, event.call_id).await?;
                self.touch(event.call_id);
                let Some(track) = self.tracks.get_mut(&event.call_id) else {
                    return Ok(false);
                };
                track.answered_at.get_or_insert(event.at);
                if track.answered_by.is_none() {
                    track.answered_by = extension.as_ref().map(|e| e.to_string());
                }
                if let Some(extension) = extension {
                    if track.direction != Direction::Outbound || track.agent.is_none() {
                        track.agent = Some(extension.to_string());
                    }
                }
                let track = track.clone();
                let mut row = call_row(event.call_id, &track);
                row.answered_at = track.answered_at;
                tx.upsert_call(&row).await?;
                // Reached: the customer's open callbacks close, whoever called whom.
                let mut changed = self.reached(tx, event.call_id, &track).await?;
                if rules::ticket_at_answer(&self.config, track.direction) {
                    let (created, ticket) = self.call_ticket(tx, event.call_id, &track).await?;
                    changed |= created;
                    if let Some(ticket) = ticket {
                        // What the agent typed while it rang is on the ticket at once.
                        changed |= self.settle_drafts(tx, event.call_id, &ticket).await?;
                    }
                }
                Ok(changed)
            }
            CallEventKind::Ended { outcome, cause } => {
                self.recall(tx, event.call_id).await?;
                self.touch(event.call_id);
                let Some(mut track) = self.tracks.remove(&event.call_id) else {
                    return Ok(false);
                };
                track.outcome = Some(*outcome);
                let mut row = call_row(event.call_id, &track);
                row.answered_at = track.answered_at;
                row.ended_at = Some(event.at);
                row.outcome = Some(*outcome);
                row.cause = Some(cause.clone());
                tx.upsert_call(&row).await?;
                let answered = track.answered_at.is_some() || *outcome == Outcome::Answered;
                let kind = rules::kind_of(track.direction, answered, Some(*outcome));
                // Taken before the drafts are read, so that a save racing with this
                // end either is seen here or sees the ticket.
                tx.lock_call(event.call_id).await?;
                let has_drafts = !self.wants(kind)
                    && tx.ticket_for_call(event.call_id).await?.is_none()
                    && tx.has_drafts(event.call_id).await?;
                let wanted = rules::makes_ticket(&self.config, kind, has_drafts);
                let (mut changed, ticket) = if !wanted {
                    (false, tx.ticket_for_call(event.call_id).await?)
                } else if kind == CallKind::Missed {
                    self.missed(tx, event.call_id, &track, event.at).await?
                } else {
                    // The ticket exists since the answer for inbound calls; an
                    // update tells the agent its duration and outcome.
                    let (_, ticket) = self.call_ticket(tx, event.call_id, &track).await?;
                    if let Some(ticket) = &ticket {
                        self.publish(ticket);
                    }
                    (true, ticket)
                };
                if let Some(ticket) = ticket {
                    changed |= self.settle_drafts(tx, event.call_id, &ticket).await?;
                }
                Ok(changed)
            }
            CallEventKind::Transferred(transfer) => {
                self.touch(event.call_id);
                if let Some(track) = self.tracks.get_mut(&event.call_id) {
                    track.transfers.push(transfer.clone());
                }
                Ok(false)
            }
            CallEventKind::Held | CallEventKind::Resumed => Ok(false),
            CallEventKind::RingingStopped { .. } => Ok(false),
        }
    }

    /// A call that started before this writer did (a restart mid-call): its
    /// track is rebuilt from the stored row.
    async fn recall(&mut self, tx: &mut TicketTx, call_id: CallId) -> Result<(), StoreError> {
        if self.tracks.contains_key(&call_id) {
            return Ok(());
        }
        let Some(call) = tx.get_call(call_id).await? else {
            return Ok(());
        };
        if call.ended_at.is_some() {
            // Ended already: a replay; its ticket is written or will be by the end.
            if tx.ticket_for_call(call_id).await?.is_some() {
                return Ok(());
            }
        }
        let mut track = Track {
            source: call.source,
            source_key: call.source_key,
            direction: call.direction,
            caller: Party {
                number: call.caller_number,
                name: call.caller_name,
                withheld: call.caller_withheld,
            },
            callee: Party {
                number: call.callee_number,
                name: None,
                withheld: false,
            },
            started_at: call.started_at,
            answered_at: call.answered_at,
            agent: call.agent_extension,
            rang: call.rang,
            answered_by: call.answered_by,
            transfers: call.transfers,
            remote_e164: None,
            remote_display: String::new(),
            customer_id: None,
            queue: call.queue,
            outcome: None,
        };
        self.identify(&mut track);
        self.touch(call_id);
        self.tracks.insert(call_id, track);
        Ok(())
    }

    /// Finds the outside party's number and customer.
    fn identify(&self, track: &mut Track) {
        let remote = match track.direction {
            Direction::Inbound => &track.caller,
            Direction::Outbound => &track.callee,
            Direction::Internal => return,
        };
        let kind = match (&remote.number, remote.withheld) {
            (Some(number), false) => normalise(number, &self.cards.policy),
            _ => NumberKind::Withheld,
        };
        track.remote_display = match &kind {
            NumberKind::E164(e164) => format_display(e164, &self.cards.policy),
            NumberKind::Withheld => "numéro masqué".to_owned(),
            NumberKind::Extension(n) | NumberKind::Invalid(n) => n.clone(),
        };
        track.remote_e164 = kind.e164().map(str::to_owned);
        let (_, customer) = self
            .cards
            .first_card(remote.number.as_deref(), remote.withheld);
        track.customer_id = customer;
    }

    fn subject(&self, track: &Track) -> String {
        let who = track
            .customer_id
            .and_then(|id| self.cards.customers.cached(id.0))
            .map(|c| c.name)
            .unwrap_or_else(|| track.remote_display.clone());
        let forwarded_to = track
            .transfers
            .last()
            .and_then(|t| t.to.as_ref())
            .filter(|_| track.outcome == Some(Outcome::Forwarded));
        match track.direction {
            Direction::Inbound => match forwarded_to {
                Some(to) => format!("Appel de {who}, renvoyé vers {to}"),
                None => format!("Appel de {who}"),
            },
            Direction::Outbound => format!("Appel vers {who}"),
            Direction::Internal => format!(
                "Appel interne {} → {}",
                track.caller.number.as_deref().unwrap_or("?"),
                track.callee.number.as_deref().unwrap_or("?")
            ),
        }
    }

    /// The call's ticket, created once (or the call linked to the customer's open
    /// ticket when configured): whether something was written, and the ticket.
    async fn call_ticket(
        &mut self,
        tx: &mut TicketTx,
        call_id: CallId,
        track: &Track,
    ) -> Result<(bool, Option<Ticket>), StoreError> {
        let existing = tx.ticket_for_call(call_id).await?;
        let open_for_customer = match (self.config.link_to_open_ticket, existing.is_none()) {
            (true, true) => match track.customer_id {
                Some(customer) => tx.open_ticket_for_customer(customer).await?,
                None => None,
            },
            _ => None,
        };
        let facts = rules::CallTicketFacts {
            existing: existing.as_ref().map(|t| t.id.0),
            open_for_customer: open_for_customer.as_ref().map(|t| t.id.0),
            agent: track.agent.clone(),
        };
        match rules::call_ticket(&self.config, &facts) {
            rules::CallTicketAction::Keep(_) => Ok((false, existing)),
            rules::CallTicketAction::Link(_) => {
                let Some(open) = open_for_customer else {
                    return Ok((false, None));
                };
                let linked = tx
                    .link_call(open.id, call_id, "call", serde_json::json!({}))
                    .await?;
                if let Some(ticket) = &linked {
                    self.publish(ticket);
                }
                Ok((true, Some(linked.unwrap_or(open))))
            }
            rules::CallTicketAction::Create {
                assign_to_extension,
            } => {
                let assignee = match &assign_to_extension {
                    Some(ext) => tx.user_for_extension(ext).await?,
                    None => None,
                };
                let new = NewTicket {
                    call_id: Some(call_id),
                    customer_id: track.customer_id,
                    phone_e164: track.remote_e164.clone(),
                    kind: TicketKind::Call,
                    status: TicketStatus::Open,
                    subject: self.subject(track),
                    reason: None,
                    priority: Priority::Normal.level(),
                    assignee_user_id: assignee,
                    assignee_group: None,
                    queue: track.queue.clone(),
                    due_at: None,
                };
                self.insert(tx, call_id, &new).await
            }
        }
    }

    /// Inserts a ticket the rules asked for; another writer of the same
    /// events may have written it first.
    async fn insert(
        &mut self,
        tx: &mut TicketTx,
        call_id: CallId,
        new: &NewTicket,
    ) -> Result<(bool, Option<Ticket>), StoreError> {
        match tx.insert_ticket(new).await? {
            Some(ticket) => {
                self.created_tickets.insert(ticket.id.0);
                self.publish(&ticket);
                Ok((true, Some(ticket)))
            }
            None => Ok((false, tx.ticket_for_call(call_id).await?)),
        }
    }

    /// A missed inbound call: a callback ticket, or one more attempt on the open one.
    async fn missed(
        &mut self,
        tx: &mut TicketTx,
        call_id: CallId,
        track: &Track,
        ended_at: DateTime<Utc>,
    ) -> Result<(bool, Option<Ticket>), StoreError> {
        let existing = tx.ticket_for_call(call_id).await?;
        let open_callback = match (&track.remote_e164, existing.is_none()) {
            (Some(e164), true) => tx.open_callback_for_phone(e164).await?,
            _ => None,
        };
        let customer_has_open_work = match (track.customer_id, &existing, &open_callback) {
            (Some(customer), None, None) => tx.open_ticket_for_customer(customer).await?.is_some(),
            _ => false,
        };
        let facts = rules::MissedFacts {
            existing: existing.as_ref().map(|t| t.id.0),
            open_callback: open_callback.as_ref().map(|t| t.id.0),
            customer_has_open_work,
            rang: track.rang.clone(),
            dialled: track.callee.number.clone(),
            queue: track.queue.clone(),
            voicemail: track.outcome == Some(Outcome::Voicemail),
            ended_at,
        };
        match rules::missed(&self.config, &facts) {
            rules::MissedAction::Keep(_) => Ok((false, existing)),
            rules::MissedAction::Attempt(_) => {
                let Some(open) = open_callback else {
                    return Ok((false, None));
                };
                let mut body = serde_json::json!({ "at": track.started_at, "rang": track.rang });
                if track.outcome == Some(Outcome::Voicemail) {
                    body["voicemail"] = serde_json::Value::Bool(true);
                }
                let linked = tx.link_call(open.id, call_id, "attempt", body).await?;
                if let Some(ticket) = &linked {
                    self.publish(ticket);
                }
                Ok((true, Some(linked.unwrap_or(open))))
            }
            rules::MissedAction::NewCallback {
                assign_to_extension,
                group,
                priority,
                due_at,
                voicemail,
            } => {
                let assignee: Option<UserId> = match &assign_to_extension {
                    Some(ext) => tx.user_for_extension(ext).await?,
                    None => None,
                };
                let new = NewTicket {
                    call_id: Some(call_id),
                    customer_id: track.customer_id,
                    phone_e164: track.remote_e164.clone(),
                    kind: TicketKind::Callback,
                    status: TicketStatus::Open,
                    subject: if voicemail {
                        format!(
                            "À rappeler (message vocal) : {}",
                            self.subject_target(track)
                        )
                    } else {
                        format!("À rappeler : {}", self.subject_target(track))
                    },
                    reason: None,
                    priority: priority.level(),
                    assignee_user_id: assignee,
                    assignee_group: assignee.is_none().then_some(group),
                    queue: track.queue.clone(),
                    due_at: Some(due_at),
                };
                self.insert(tx, call_id, &new).await
            }
        }
    }

    fn subject_target(&self, track: &Track) -> String {
        track
            .customer_id
            .and_then(|id| self.cards.customers.cached(id.0))
            .map(|c| c.name)
            .unwrap_or_else(|| track.remote_display.clone())
    }

    /// An answered call reaches the customer: their open callbacks close.
    async fn reached(
        &mut self,
        tx: &mut TicketTx,
        call_id: CallId,
        track: &Track,
    ) -> Result<bool, StoreError> {
        let Some(e164) = &track.remote_e164 else {
            return Ok(false);
        };
        let closed = tx.close_callbacks_reached(e164, call_id).await?;
        for ticket in &closed {
            self.publish(ticket);
        }
        Ok(!closed.is_empty())
    }

    /// Moves the drafts saved on the call's card onto its ticket; true when there
    /// were some.
    async fn settle_drafts(
        &mut self,
        tx: &mut TicketTx,
        call_id: CallId,
        ticket: &Ticket,
    ) -> Result<bool, StoreError> {
        tx.lock_call(call_id).await?;
        match tx.apply_drafts(call_id, ticket).await? {
            Some(updated) => {
                self.publish(&updated);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Queues a changed ticket for the hub and the feed, sent once the batch is
    /// committed; a ticket changed twice in a batch is sent once, as it ends up.
    fn publish(&mut self, ticket: &Ticket) {
        match self.changed_tickets.iter_mut().find(|t| t.id == ticket.id) {
            Some(queued) => *queued = ticket.clone(),
            None => self.changed_tickets.push(ticket.clone()),
        }
    }

    /// Sends each user's open-callback count.
    async fn push_open_callbacks(&mut self) {
        self.callback_counts.push(&self.store, &self.hub).await;
    }
}

/// Tells the sources of committed events that they are durable.
fn settle(items: &mut [SinkEvent]) {
    for item in items {
        if let Some(receipt) = item.receipt.take() {
            receipt.durable();
        }
    }
}

fn call_row(id: CallId, track: &Track) -> Call {
    Call {
        id,
        source: track.source,
        source_key: track.source_key.clone(),
        direction: track.direction,
        caller_number: track.caller.number.clone(),
        caller_name: track.caller.name.clone(),
        caller_withheld: track.caller.withheld,
        callee_number: track.callee.number.clone(),
        remote_e164: track.remote_e164.clone(),
        agent_extension: track.agent.clone(),
        rang: track.rang.clone(),
        answered_by: track.answered_by.clone(),
        transfers: track.transfers.clone(),
        queue: track.queue.clone(),
        customer_id: track.customer_id,
        started_at: track.started_at,
        answered_at: None,
        ended_at: None,
        outcome: None,
        cause: None,
    }
}

//! The ticket writer: a pipeline sink that persists every call and turns it into
//! a ticket, exactly once per call even when events are replayed.
//!
//! Events arrive in order; the writer takes them in batches (what is queued, up
//! to [`BATCH_MAX`]) so a burst costs one wake-up, and drains everything queued
//! before it stops: the pipeline drops its sender on shutdown and the writer
//! returns once the channel is empty.

use super::cards::CardMaker;
use super::{summary, CallKind, TicketsConfig};
use chrono::{DateTime, Duration, Utc};
use fiche_hub::Hub;
use fiche_matcher::{format_display, normalise, NumberKind};
use fiche_pbx::{CallEvent, CallEventKind, CallId, Direction, Outcome, Party, Source};
use fiche_store::{
    Call, CustomerId, NewTicket, Store, StoreError, Ticket, TicketKind, TicketStatus, UserId,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};
use tracing::warn;

/// Capacity of the pipeline → writer channel.
pub const WRITER_QUEUE_CAPACITY: usize = 4096;
/// Most events taken in one batch.
pub const BATCH_MAX: usize = 100;
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
    remote_e164: Option<String>,
    remote_display: String,
    customer_id: Option<CustomerId>,
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
    tracks: HashMap<CallId, Track>,
    callback_users: HashSet<i64>,
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
            tracks: HashMap::new(),
            callback_users: HashSet::new(),
        }
    }

    /// Writes events until the sender is gone and the queue is empty.
    pub async fn run(mut self, mut events: mpsc::Receiver<CallEvent>) {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        // Counts left by an earlier run reach the pages before any new call.
        self.push_open_callbacks().await;
        while events.recv_many(&mut batch, BATCH_MAX).await > 0 {
            let mut tickets_changed = false;
            for event in batch.drain(..) {
                match self.apply(&event).await {
                    Ok(changed) => tickets_changed |= changed,
                    Err(error) => {
                        warn!(%error, call = %event.call_id, event = event.kind.name(), "call not written")
                    }
                }
            }
            if tickets_changed {
                self.push_open_callbacks().await;
            }
            self.changed.notify_one();
        }
    }

    fn wants(&self, kind: CallKind) -> bool {
        self.config.create_for.contains(&kind)
    }

    /// Applies one event; true when a ticket changed.
    async fn apply(&mut self, event: &CallEvent) -> Result<bool, StoreError> {
        match &event.kind {
            CallEventKind::CallStarted {
                source_key,
                direction,
                caller,
                callee,
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
                    remote_e164: None,
                    remote_display: String::new(),
                    customer_id: None,
                };
                if *direction == Direction::Outbound {
                    track.agent = caller.number.clone();
                }
                self.identify(&mut track);
                self.store
                    .upsert_call(&call_row(event.call_id, &track))
                    .await?;
                self.tracks.insert(event.call_id, track);
                Ok(false)
            }
            CallEventKind::Ringing { extension } => {
                if let Some(track) = self.tracks.get_mut(&event.call_id) {
                    if !track.rang.contains(extension) {
                        track.rang.push(extension.clone());
                    }
                }
                Ok(false)
            }
            CallEventKind::PartiesUpdated { caller, callee } => {
                if let Some(track) = self.tracks.get_mut(&event.call_id) {
                    track.caller = caller.clone();
                    track.callee = callee.clone();
                }
                Ok(false)
            }
            CallEventKind::Answered { extension } => {
                self.recall(event.call_id).await?;
                let Some(track) = self.tracks.get_mut(&event.call_id) else {
                    return Ok(false);
                };
                track.answered_at.get_or_insert(event.at);
                if let Some(extension) = extension {
                    if track.direction != Direction::Outbound || track.agent.is_none() {
                        track.agent = Some(extension.clone());
                    }
                }
                let track = track.clone();
                let mut row = call_row(event.call_id, &track);
                row.answered_at = track.answered_at;
                self.store.upsert_call(&row).await?;
                let mut changed = self.reached(event.call_id, &track).await?;
                if track.direction == Direction::Inbound && self.wants(CallKind::InboundAnswered) {
                    changed |= self.call_ticket(event.call_id, &track).await?;
                }
                Ok(changed)
            }
            CallEventKind::Ended { outcome, cause } => {
                self.recall(event.call_id).await?;
                let Some(track) = self.tracks.remove(&event.call_id) else {
                    return Ok(false);
                };
                let mut row = call_row(event.call_id, &track);
                row.answered_at = track.answered_at;
                row.ended_at = Some(event.at);
                row.outcome = Some(*outcome);
                row.cause = Some(cause.clone());
                self.store.upsert_call(&row).await?;
                let answered = track.answered_at.is_some() || *outcome == Outcome::Answered;
                let kind = match (track.direction, answered) {
                    (Direction::Inbound, true) => CallKind::InboundAnswered,
                    (Direction::Inbound, false) => CallKind::Missed,
                    (Direction::Outbound, _) => CallKind::Outbound,
                    (Direction::Internal, _) => CallKind::Internal,
                };
                if !self.wants(kind) {
                    return Ok(false);
                }
                if kind == CallKind::Missed {
                    self.missed(event.call_id, &track, event.at).await
                } else {
                    // The ticket exists since the answer for inbound calls; an
                    // update tells the agent its duration and outcome.
                    self.call_ticket(event.call_id, &track).await?;
                    if let Some(ticket) = self.store.ticket_for_call(event.call_id).await? {
                        self.publish(&ticket).await;
                    }
                    Ok(true)
                }
            }
            CallEventKind::Held | CallEventKind::Resumed | CallEventKind::Transferred { .. } => {
                Ok(false)
            }
            CallEventKind::RingingStopped { .. } => Ok(false),
        }
    }

    /// A call that started before this writer did (a restart mid-call): its
    /// track is rebuilt from the stored row.
    async fn recall(&mut self, call_id: CallId) -> Result<(), StoreError> {
        if self.tracks.contains_key(&call_id) {
            return Ok(());
        }
        let Some(call) = self.store.get_call(call_id).await? else {
            return Ok(());
        };
        if call.ended_at.is_some() {
            // Ended already: a replay; its ticket is written or will be by the end.
            if self.store.ticket_for_call(call_id).await?.is_some() {
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
            rang: Vec::new(),
            remote_e164: None,
            remote_display: String::new(),
            customer_id: None,
        };
        self.identify(&mut track);
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
            .and_then(|id| self.cards.cache.get(id.0))
            .map(|c| c.name)
            .unwrap_or_else(|| track.remote_display.clone());
        match track.direction {
            Direction::Inbound => format!("Appel de {who}"),
            Direction::Outbound => format!("Appel vers {who}"),
            Direction::Internal => format!(
                "Appel interne {} → {}",
                track.caller.number.as_deref().unwrap_or("?"),
                track.callee.number.as_deref().unwrap_or("?")
            ),
        }
    }

    /// The call's ticket, created once (or the call linked to the customer's open
    /// ticket when configured). True when something was written.
    async fn call_ticket(&mut self, call_id: CallId, track: &Track) -> Result<bool, StoreError> {
        if self.store.ticket_for_call(call_id).await?.is_some() {
            return Ok(false);
        }
        if self.config.link_to_open_ticket {
            if let Some(customer) = track.customer_id {
                if let Some(open) = self.store.open_ticket_for_customer(customer).await? {
                    if let Some(ticket) = self
                        .store
                        .link_call(open.id, call_id, "call", serde_json::json!({}))
                        .await?
                    {
                        self.publish(&ticket).await;
                    }
                    return Ok(true);
                }
            }
        }
        let assignee = match &track.agent {
            Some(ext) => self.store.user_for_extension(ext).await?.map(|u| u.id),
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
            priority: 0,
            assignee_user_id: assignee,
            assignee_group: None,
            due_at: None,
        };
        match self.store.insert_ticket(&new).await {
            Ok(ticket) => {
                self.publish(&ticket).await;
                Ok(true)
            }
            // Written by an earlier run of the same events.
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// A missed inbound call: a callback ticket, or one more attempt on the open one.
    async fn missed(
        &mut self,
        call_id: CallId,
        track: &Track,
        ended_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        if self.store.ticket_for_call(call_id).await?.is_some() {
            return Ok(false);
        }
        if let Some(e164) = &track.remote_e164 {
            if let Some(open) = self.store.open_callback_for_phone(e164).await? {
                let body = serde_json::json!({ "at": track.started_at, "rang": track.rang });
                if let Some(ticket) = self
                    .store
                    .link_call(open.id, call_id, "attempt", body)
                    .await?
                {
                    self.publish(&ticket).await;
                }
                return Ok(true);
            }
        }
        // Known customers with work already open are called back first.
        let has_open = match track.customer_id {
            Some(customer) => self
                .store
                .open_ticket_for_customer(customer)
                .await?
                .is_some(),
            None => false,
        };
        let priority = i32::from(has_open);
        // The agent who missed it when exactly one phone rang, else the group.
        let assignee: Option<UserId> = match track.rang.as_slice() {
            [only] => self.store.user_for_extension(only).await?.map(|u| u.id),
            _ => None,
        };
        let group = match assignee {
            Some(_) => None,
            None => Some(
                track
                    .callee
                    .number
                    .clone()
                    .unwrap_or_else(|| "accueil".to_owned()),
            ),
        };
        let new = NewTicket {
            call_id: Some(call_id),
            customer_id: track.customer_id,
            phone_e164: track.remote_e164.clone(),
            kind: TicketKind::Callback,
            status: TicketStatus::Open,
            subject: format!("À rappeler : {}", self.subject_target(track)),
            reason: None,
            priority,
            assignee_user_id: assignee,
            assignee_group: group,
            due_at: Some(
                ended_at + Duration::minutes(i64::from(self.config.callback_delay_minutes)),
            ),
        };
        match self.store.insert_ticket(&new).await {
            Ok(ticket) => {
                self.publish(&ticket).await;
                Ok(true)
            }
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn subject_target(&self, track: &Track) -> String {
        track
            .customer_id
            .and_then(|id| self.cards.cache.get(id.0))
            .map(|c| c.name)
            .unwrap_or_else(|| track.remote_display.clone())
    }

    /// An answered call reaches the customer: their open callbacks close.
    async fn reached(&mut self, call_id: CallId, track: &Track) -> Result<bool, StoreError> {
        let Some(e164) = &track.remote_e164 else {
            return Ok(false);
        };
        let closed = self.store.close_callbacks_reached(e164, call_id).await?;
        for ticket in &closed {
            self.publish(ticket).await;
        }
        Ok(!closed.is_empty())
    }

    async fn publish(&self, ticket: &Ticket) {
        let name = ticket
            .customer_id
            .and_then(|id| self.cards.cache.get(id.0))
            .map(|c| c.name);
        let summary = summary(ticket, name);
        self.hub.publish_ticket(&summary);
        self.feed.send(summary).await;
    }

    /// Sends each user's open-callback count (0 to those who had some).
    async fn push_open_callbacks(&mut self) {
        match self.store.open_callbacks_per_user().await {
            Ok(counts) => {
                let mut now = HashSet::new();
                for (user, n) in counts {
                    self.hub.set_open_callbacks(user.0, n);
                    now.insert(user.0);
                }
                for gone in self.callback_users.difference(&now) {
                    self.hub.set_open_callbacks(*gone, 0);
                }
                self.callback_users = now;
            }
            Err(error) => warn!(%error, "open callbacks not counted"),
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
        queue: None,
        customer_id: track.customer_id,
        started_at: track.started_at,
        answered_at: None,
        ended_at: None,
        outcome: None,
        cause: None,
    }
}

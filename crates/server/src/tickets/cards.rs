//! The pop card: built from memory (the matcher's index and the customer cache)
//! the instant a phone rings, then completed from the store (notes, open
//! tickets, recent history) and sent again.

use super::summary;
use crate::customer_memory::CustomerMemory;
use fiche_hub::{Card, CustomerCard, CustomerSummary, HistoryItem, Hub};
use fiche_matcher::{format_display, normalise, NumberKind, NumberPolicy};
use fiche_pbx::CallId;
use fiche_store::{CustomerId, Store};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

/// Lines of history a card carries.
const RECENT_ITEMS: usize = 5;

/// Cards waiting to be completed from the store. Each is one first ring of a
/// known customer; when the queue is full (the store is slower than the calls
/// coming in) a card stays as it was built from memory, name and tags shown,
/// and a warning says so: the pop itself never waits for the disk.
pub const CARD_QUEUE_CAPACITY: usize = 256;
/// Workers completing cards: a few reads at once, never one task per ring.
pub const CARD_WORKERS: usize = 4;

struct CompletionJob {
    call_id: CallId,
    card: Card,
    customer_id: CustomerId,
}

/// The handle that queues cards for completion (see [`CardMaker::start_completion`]).
#[derive(Clone)]
pub struct CardCompletion {
    tx: mpsc::Sender<CompletionJob>,
}

impl CardCompletion {
    /// Queues `card` to be completed from the store and sent again to the
    /// call's sockets; a card showing no customer has nothing to complete.
    pub fn submit(&self, call_id: CallId, card: Card) {
        let Some(customer_id) = card.customer.as_ref().map(|c| CustomerId(c.id)) else {
            return;
        };
        let job = CompletionJob {
            call_id,
            card,
            customer_id,
        };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!(%call_id, "pop card completion queue full: the card stays as built from memory");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Builds and completes pop cards.
#[derive(Clone)]
pub struct CardMaker {
    /// The customers in memory: number index and names.
    pub customers: CustomerMemory,
    /// How numbers are read.
    pub policy: Arc<NumberPolicy>,
    /// Where the rest of the file lives.
    pub store: Store,
    /// Odoo's base URL as browsers reach it, with an `[odoo]` table: completed
    /// cards then carry "Ouvrir dans Odoo" links.
    pub odoo_url: Option<Arc<str>>,
}

impl CardMaker {
    /// The card for a caller, from memory only, and the customer it shows.
    pub fn first_card(&self, number: Option<&str>, withheld: bool) -> (Card, Option<CustomerId>) {
        let kind = match number {
            Some(raw) if !withheld => normalise(raw, &self.policy),
            _ => NumberKind::Withheld,
        };
        let caller_display = match &kind {
            NumberKind::E164(e164) => format_display(e164, &self.policy),
            NumberKind::Withheld => "Numéro masqué".to_owned(),
            NumberKind::Extension(ext) => ext.clone(),
            NumberKind::Invalid(raw) => raw.clone(),
        };
        let found = self.customers.lookup(&kind);
        let mut customers = found.iter().map(|m| {
            let id = m.customer_id.0;
            let cached = self.customers.cached(id);
            (id, cached)
        });
        let customer = customers.next().map(|(id, cached)| CustomerCard {
            id,
            name: cached.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
            company: cached.as_ref().and_then(|c| c.company.clone()),
            tags: cached.map(|c| c.tags).unwrap_or_default(),
            notes: None,
            open_tickets: Vec::new(),
            recent: Vec::new(),
            links: Vec::new(),
        });
        let other_matches = customers
            .map(|(id, cached)| CustomerSummary {
                id,
                name: cached.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
                company: cached.and_then(|c| c.company),
            })
            .collect();
        let customer_id = customer.as_ref().map(|c| CustomerId(c.id));
        let unknown = customer.is_none() && !matches!(kind, NumberKind::Extension(_));
        (
            Card {
                caller_display,
                customer,
                other_matches,
                unknown,
            },
            customer_id,
        )
    }

    /// Starts the workers that complete cards from the store, on `tasks`;
    /// they stop once `shutdown` fires (a card still being read is dropped:
    /// its first version is on screen already).
    pub fn start_completion(
        &self,
        hub: Hub,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> CardCompletion {
        let (tx, rx) = mpsc::channel(CARD_QUEUE_CAPACITY);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..CARD_WORKERS {
            let maker = self.clone();
            let hub = hub.clone();
            let rx = rx.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                loop {
                    let job = tokio::select! {
                        () = shutdown.cancelled() => return,
                        job = async { rx.lock().await.recv().await } => job,
                    };
                    let Some(CompletionJob {
                        call_id,
                        card,
                        customer_id,
                    }) = job
                    else {
                        return;
                    };
                    let completed = tokio::select! {
                        () = shutdown.cancelled() => return,
                        completed = maker.enrich(card, customer_id) => completed,
                    };
                    match completed {
                        Ok(card) => hub.publish_card(call_id, card),
                        Err(error) => warn!(%error, %call_id, "pop card not completed"),
                    }
                }
            });
        }
        CardCompletion { tx }
    }

    async fn enrich(&self, mut card: Card, id: CustomerId) -> fiche_store::Result<Card> {
        let customer = self.store.get_customer(id).await?;
        let open = self.store.open_tickets_for_customer(id).await?;
        let calls = self.store.recent_calls_for_customer(id, 5).await?;
        let (_, tickets) = self
            .store
            .list_tickets(&fiche_store::TicketQuery {
                customer_id: Some(id),
                limit: 5,
                ..fiche_store::TicketQuery::default()
            })
            .await?;
        let mut recent: Vec<HistoryItem> = calls
            .iter()
            .map(|call| HistoryItem::Call {
                call_id: call.id,
                at: call.started_at,
                direction: call.direction,
                outcome: call.outcome,
                duration_secs: match (call.answered_at, call.ended_at) {
                    (Some(a), Some(e)) => u32::try_from((e - a).num_seconds()).ok(),
                    _ => None,
                },
                agent_extension: call.agent_extension.clone(),
            })
            .chain(tickets.iter().map(|t| HistoryItem::Ticket {
                ticket_id: t.id.0,
                at: t.updated_at,
                subject: t.subject.clone(),
                status: summary(t, None).status,
            }))
            .collect();
        recent.sort_by_key(|item| {
            std::cmp::Reverse(match item {
                HistoryItem::Call { at, .. } | HistoryItem::Ticket { at, .. } => *at,
            })
        });
        recent.truncate(RECENT_ITEMS);
        let name = customer.name.clone();
        let links = match &self.odoo_url {
            Some(base) => crate::odoo::card_links(&self.store, base, &customer, &open).await?,
            None => Vec::new(),
        };
        card.customer = Some(CustomerCard {
            id: customer.id.0,
            name: customer.name,
            company: customer.company,
            tags: customer.tags,
            notes: customer.notes,
            open_tickets: open
                .iter()
                .map(|t| summary(t, Some(name.clone())))
                .collect(),
            recent,
            links,
        });
        Ok(card)
    }
}

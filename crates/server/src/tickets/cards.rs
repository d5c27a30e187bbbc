//! The pop card: built from memory (the matcher's index and the customer cache)
//! the instant a phone rings, then completed from the store (notes, open
//! tickets, recent history) and sent again.

use super::{summary, CustomerCache};
use fiche_hub::{Card, CustomerCard, CustomerSummary, HistoryItem, Hub};
use fiche_matcher::{format_display, normalise, Index, NumberKind, NumberPolicy};
use fiche_pbx::CallId;
use fiche_store::{CustomerId, Store};
use std::sync::{Arc, PoisonError, RwLock};
use tracing::warn;

/// Lines of history a card carries.
const RECENT_ITEMS: usize = 5;

/// Builds and completes pop cards.
#[derive(Clone)]
pub struct CardMaker {
    /// Number → customers.
    pub index: Arc<RwLock<Index>>,
    /// How numbers are read.
    pub policy: Arc<NumberPolicy>,
    /// Names, companies and tags in memory.
    pub cache: CustomerCache,
    /// Where the rest of the file lives.
    pub store: Store,
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
        let found = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .lookup(&kind);
        let mut customers = found.iter().map(|m| {
            let id = m.customer_id.0;
            let cached = self.cache.get(id);
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

    /// Completes `card` from the store in the background and sends it to the
    /// call's sockets.
    pub fn enrich_later(&self, hub: Hub, call_id: CallId, card: Card) {
        let Some(customer_id) = card.customer.as_ref().map(|c| CustomerId(c.id)) else {
            return;
        };
        let maker = self.clone();
        tokio::spawn(async move {
            match maker.enrich(card, customer_id).await {
                Ok(card) => hub.publish_card(call_id, card),
                Err(error) => warn!(%error, %call_id, "pop card not completed"),
            }
        });
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
        });
        Ok(card)
    }
}

//! Calls into work: the pop card built on `Ringing`, the ticket writer that turns
//! every call into a ticket (missed calls into merged callbacks that close
//! themselves), and the supervisor figures.

pub mod cards;
pub mod feed;
pub mod figures;
pub mod rules;
pub mod writer;

pub use feed::TicketFeed;

/// Each user's open-callback count as last sent, so that a user whose last
/// callback closed is told 0.
#[derive(Debug, Default)]
pub struct CallbackCounts {
    users: std::collections::HashSet<i64>,
}

impl CallbackCounts {
    /// Sends each user's open-callback count (0 to those who had some).
    pub async fn push(&mut self, store: &fiche_store::Store, hub: &fiche_hub::Hub) {
        match store.open_callbacks_per_user().await {
            Ok(counts) => {
                let mut now = std::collections::HashSet::new();
                for (user, n) in counts {
                    hub.set_open_callbacks(user.0, n);
                    now.insert(user.0);
                }
                for gone in self.users.difference(&now) {
                    hub.set_open_callbacks(*gone, 0);
                }
                self.users = now;
            }
            Err(error) => tracing::warn!(%error, "open callbacks not counted"),
        }
    }
}

use chrono::{DateTime, Utc};
use fiche_hub::{Priority, TicketSummary};
use fiche_store::{Customer, CustomerId, Ticket};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

/// Which calls create a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// An inbound call someone answered.
    InboundAnswered,
    /// An inbound call nobody answered (creates a callback).
    Missed,
    /// A call an agent placed to the outside.
    Outbound,
    /// A call between two extensions.
    Internal,
}

/// The `[tickets]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketsConfig {
    /// Which calls create tickets; internal calls are left out by default.
    #[serde(default = "default_create_for")]
    pub create_for: Vec<CallKind>,
    /// A missed call is due to be returned this many minutes after it ended.
    #[serde(default = "default_callback_delay")]
    pub callback_delay_minutes: u32,
    /// A later call with a customer who has an open ticket is linked to that
    /// ticket instead of opening a new one.
    #[serde(default)]
    pub link_to_open_ticket: bool,
}

impl Default for TicketsConfig {
    fn default() -> Self {
        Self {
            create_for: default_create_for(),
            callback_delay_minutes: default_callback_delay(),
            link_to_open_ticket: false,
        }
    }
}

fn default_create_for() -> Vec<CallKind> {
    vec![
        CallKind::InboundAnswered,
        CallKind::Missed,
        CallKind::Outbound,
    ]
}

fn default_callback_delay() -> u32 {
    30
}

/// Most customers kept in [`CustomerCache`]; beyond, cards of the others get
/// the name from the store a few milliseconds later.
pub const CUSTOMER_CACHE_MAX: usize = 500_000;

/// What the first pop card shows of a customer, kept in memory so the card
/// leaves before anything reads the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedCustomer {
    /// Name.
    pub name: String,
    /// Company.
    pub company: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
}

/// Customer id → name, company, tags; bounded by [`CUSTOMER_CACHE_MAX`].
#[derive(Debug, Clone, Default)]
pub struct CustomerCache(Arc<RwLock<HashMap<i64, CachedCustomer>>>);

impl CustomerCache {
    /// Remembers a created or updated customer.
    pub fn put(&self, customer: &Customer) {
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= CUSTOMER_CACHE_MAX && !map.contains_key(&customer.id.0) {
            return;
        }
        map.insert(
            customer.id.0,
            CachedCustomer {
                name: customer.name.clone(),
                company: customer.company.clone(),
                tags: customer.tags.clone(),
            },
        );
    }

    /// Forgets a deleted customer.
    pub fn remove(&self, id: CustomerId) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id.0);
    }

    /// The customer, if cached.
    pub fn get(&self, id: i64) -> Option<CachedCustomer> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// Customers cached.
    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Nothing cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills the cache from the store, page by page, up to the bound.
    pub async fn load(&self, store: &fiche_store::Store) -> fiche_store::Result<usize> {
        let mut offset = 0u32;
        loop {
            let page = store
                .search_customers(&fiche_store::CustomerQuery {
                    text: None,
                    e164: None,
                    limit: 500,
                    offset,
                })
                .await?;
            if page.items.is_empty() {
                break;
            }
            let n = u32::try_from(page.items.len()).unwrap_or(u32::MAX);
            for customer in &page.items {
                self.put(customer);
            }
            offset = offset.saturating_add(n);
            if self.len() >= CUSTOMER_CACHE_MAX || u64::from(offset) >= page.total {
                break;
            }
        }
        Ok(self.len())
    }
}

/// A stored ticket as the hub carries it.
pub fn summary(ticket: &Ticket, customer_name: Option<String>) -> TicketSummary {
    TicketSummary {
        id: ticket.id.0,
        kind: ticket.kind,
        status: ticket.status,
        priority: Priority::from_level(ticket.priority),
        subject: ticket.subject.clone(),
        customer_id: ticket.customer_id.map(|c| c.0),
        customer_name,
        assignee_user_id: ticket.assignee_user_id.map(|u| u.0),
        call_id: ticket.call_id,
        due_at: ticket.due_at,
        attempts: u32::try_from(ticket.attempts).unwrap_or(0),
        updated_at: ticket.updated_at,
        created: false,
    }
}

/// Start of the team's local day containing `at`, and of the next one, in UTC.
pub fn local_day(at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>, chrono::NaiveDate) {
    use chrono::{Local, TimeZone};
    let local = at.with_timezone(&Local);
    let day = local.date_naive();
    let start = |d: chrono::NaiveDate| {
        let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        Local
            .from_local_datetime(&midnight)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| midnight.and_utc())
    };
    let next = day.succ_opt().unwrap_or(day);
    (start(day), start(next), day)
}

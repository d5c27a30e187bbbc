//! Fiche tickets into Odoo Helpdesk through the persistent outbox (target
//! `odoo`): the ticket feed's changes are stored first (ordering key
//! `ticket:<id>`), then one task delivers them in order, retrying with backoff
//! while Odoo is down or refuses the key; nothing is lost meanwhile, and a
//! restart resumes from the outbox.
//!
//! A row only names the ticket: the delivery reads the ticket as it is then, so
//! a replay sends the current state. **Idempotent:** the Odoo ticket made for a
//! Fiche ticket is recorded in `odoo_links` (and its title carries a marker
//! found again after a crash between Odoo's answer and that record), the state
//! last posted to its chatter in `odoo_state`, so a replay neither creates a
//! second ticket nor posts the same update twice.

use std::sync::Arc;
use std::time::Duration;

use fiche_hub::TicketSummary;
use fiche_odoo::partners;
use fiche_odoo::tickets::{odoo_user, TicketFacts, TicketSync};
use fiche_odoo::{OdooClient, OdooConfig, OdooError};
use fiche_store::{NewOutboxEntry, OutboxEntry, Store, TicketId, TicketKind, TicketStatus};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// The outbox target of Odoo deliveries.
pub const TARGET: &str = "odoo";
/// Deliveries kept waiting for Odoo at most; past it the oldest are dropped
/// (with a warning), as for webhook targets.
const MAX_ROWS: u64 = 100_000;
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Stores every ticket change for Odoo, until the feed closes.
pub async fn write(store: Store, mut tickets: mpsc::Receiver<TicketSummary>, waker: Arc<Notify>) {
    while let Some(ticket) = tickets.recv().await {
        let key = format!("ticket:{}", ticket.id);
        let payload = serde_json::json!({ "ticket_id": ticket.id }).to_string();
        let entry = NewOutboxEntry {
            target: TARGET,
            ordering_key: Some(&key),
            event_type: "ticket_changed",
            payload: &payload,
        };
        let mut attempt = 0;
        loop {
            match store.outbox_push(&entry, MAX_ROWS).await {
                Ok(0) => break,
                Ok(dropped) => {
                    warn!(dropped, "Odoo outbox full: oldest deliveries dropped");
                    break;
                }
                Err(error) if attempt < 5 => {
                    attempt += 1;
                    warn!(%error, attempt, "Odoo outbox write failed, retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => {
                    error!(%error, ticket = ticket.id, "Odoo outbox write failed; this change is not sent");
                    break;
                }
            }
        }
        waker.notify_one();
    }
}

/// What one delivery came to.
enum Attempt {
    Done,
    Retry(OdooError),
    Dropped(OdooError),
}

/// Delivers the `odoo` outbox in order until `shutdown` (see [`crate::outbox::drain`]).
pub async fn deliver(
    config: OdooConfig,
    store: Store,
    waker: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let courier = Courier {
        config,
        store: store.clone(),
        connection: None,
        failing: false,
    };
    crate::outbox::drain(store, courier, waker, shutdown).await;
}

/// Odoo's side of the outbox: the connection (made again after an error that
/// is not transient) and whether the last attempt failed, so that a run of
/// failures is logged once and the recovery once.
struct Courier {
    config: OdooConfig,
    store: Store,
    connection: Option<(OdooClient, Option<TicketSync>)>,
    failing: bool,
}

impl crate::outbox::Courier for Courier {
    fn target(&self) -> &str {
        TARGET
    }

    async fn attempt(&mut self, entry: &OutboxEntry) -> crate::outbox::Attempt {
        let ticket_id = serde_json::from_str::<serde_json::Value>(&entry.payload)
            .ok()
            .and_then(|v| v.get("ticket_id").and_then(serde_json::Value::as_i64));
        let attempt = match ticket_id {
            Some(id) => deliver_one(&self.config, &self.store, &mut self.connection, id).await,
            None => Attempt::Dropped(OdooError::Protocol {
                what: "outbox row".to_owned(),
                message: format!("no ticket id in {:?}", entry.payload),
            }),
        };
        match attempt {
            Attempt::Done => {
                if self.failing {
                    info!("Odoo takes tickets again");
                    self.failing = false;
                }
                crate::outbox::Attempt::Delivered
            }
            Attempt::Dropped(error) => {
                error!(%error, delivery = entry.id, "Odoo refused this ticket change for good; dropped");
                crate::outbox::Attempt::Dropped
            }
            Attempt::Retry(error) => {
                if !self.failing {
                    match &error {
                        OdooError::AccessDenied { .. } => {
                            error!("{}", super::access_denied_hint(&self.config));
                        }
                        other => {
                            warn!(error = %other, "Odoo ticket delivery failed; kept, retrying")
                        }
                    }
                }
                self.failing = true;
                if !error.is_transient() {
                    self.connection = None;
                }
                crate::outbox::Attempt::Retry {
                    reason: error.to_string(),
                    delay: crate::outbox::backoff(entry.attempts, MAX_BACKOFF),
                }
            }
        }
    }
}

/// Errors that no retry can mend: the values themselves are refused.
fn is_permanent(error: &OdooError) -> bool {
    matches!(
        error,
        OdooError::Validation { .. }
            | OdooError::MissingField { .. }
            | OdooError::UnknownField { .. }
            | OdooError::NotFound { .. }
            | OdooError::Protocol { .. }
    )
}

async fn deliver_one(
    config: &OdooConfig,
    store: &Store,
    connection: &mut Option<(OdooClient, Option<TicketSync>)>,
    ticket_id: i64,
) -> Attempt {
    if connection.is_none() {
        let connected = match OdooClient::connect(config).await {
            Ok(client) => match TicketSync::discover(&client).await {
                Ok(sync) => Ok((client, sync)),
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        match connected {
            Ok(pair) => *connection = Some(pair),
            Err(error) => return Attempt::Retry(error),
        }
    }
    let Some((client, sync)) = connection.as_ref() else {
        return Attempt::Retry(OdooError::Protocol {
            what: "connection".to_owned(),
            message: "not connected".to_owned(),
        });
    };
    // Without a help desk in Odoo, tickets stay in Fiche.
    let Some(sync) = sync else {
        return Attempt::Done;
    };
    match push_ticket(client, sync, store, ticket_id).await {
        Ok(()) => Attempt::Done,
        Err(error) if is_permanent(&error) => Attempt::Dropped(error),
        Err(error) => Attempt::Retry(error),
    }
}

/// The ticket as Odoo needs it, read from the store now.
async fn facts(store: &Store, ticket_id: i64) -> Result<Option<TicketFacts>, OdooError> {
    let ticket = match store.get_ticket(TicketId(ticket_id)).await {
        Ok(ticket) => ticket,
        Err(fiche_store::StoreError::NotFound { .. }) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let mut partner_id = None;
    if let Some(customer) = ticket.customer_id {
        if let Ok(customer) = store.get_customer(customer).await {
            partner_id = customer
                .external_ref
                .as_deref()
                .and_then(partners::partner_id);
        }
    }
    let note = store
        .ticket_events(ticket.id)
        .await?
        .into_iter()
        .rev()
        .find(|e| e.kind == "note")
        .and_then(|e| {
            e.body
                .get("text")
                .and_then(|t| t.as_str())
                .map(str::to_owned)
        });
    let assignee_login = match ticket.assignee_user_id {
        Some(user) => store.get_user(user).await.ok().map(|u| u.login),
        None => None,
    };
    let mut call_summary = Vec::new();
    if let Some(call_id) = ticket.call_id {
        if let Some(call) = store.get_call(call_id).await? {
            let direction = match call.direction {
                fiche_pbx::Direction::Inbound => "entrant",
                fiche_pbx::Direction::Outbound => "sortant",
                fiche_pbx::Direction::Internal => "interne",
            };
            let number = call
                .remote_e164
                .clone()
                .or_else(|| call.caller_number.clone())
                .unwrap_or_else(|| "numéro masqué".to_owned());
            call_summary.push(format!("Appel {direction}, numéro {number}"));
            if let Some(name) = call.caller_name.as_deref().filter(|n| !n.is_empty()) {
                call_summary.push(format!("Nom affiché : {name}"));
            }
            if let Some(agent) = call
                .answered_by
                .as_deref()
                .or(call.agent_extension.as_deref())
            {
                call_summary.push(format!("Agent : poste {agent}"));
            }
            if let (Some(answered), Some(ended)) = (call.answered_at, call.ended_at) {
                let secs = (ended - answered).num_seconds().max(0);
                call_summary.push(format!("Durée : {} min {:02} s", secs / 60, secs % 60));
            }
            if let Some(outcome) = call.outcome {
                let word = match outcome.as_str() {
                    "answered" => "répondu",
                    "missed" => "manqué",
                    "busy" => "occupé",
                    "rejected" => "refusé",
                    _ => "échec",
                };
                call_summary.push(format!("Issue : {word}"));
            }
        }
    }
    Ok(Some(TicketFacts {
        fiche_id: ticket.id.0,
        subject: ticket.subject.clone(),
        callback: ticket.kind == TicketKind::Callback,
        closed: ticket.status == TicketStatus::Closed,
        priority: ticket.priority,
        reason: ticket.reason.clone(),
        note,
        partner_id,
        phone: ticket.phone_e164.clone(),
        assignee_login,
        due_at: ticket.due_at,
        call_summary,
    }))
}

async fn push_ticket(
    client: &OdooClient,
    sync: &TicketSync,
    store: &Store,
    ticket_id: i64,
) -> Result<(), OdooError> {
    let Some(facts) = facts(store, ticket_id).await? else {
        return Ok(());
    };
    let fiche_id = ticket_id.to_string();
    let user_id = match &facts.assignee_login {
        Some(login) => odoo_user(client, login).await?,
        None => None,
    };
    let state_name = format!("ticket:{ticket_id}:posted");
    let odoo_id = match store.odoo_link("ticket", &fiche_id).await? {
        Some(odoo_id) => {
            if store.odoo_state(&state_name).await?.as_deref() != Some(&facts.fingerprint()) {
                sync.update(client, odoo_id, &facts, user_id).await?;
            }
            odoo_id
        }
        None => {
            let odoo_id = match sync.find(client, ticket_id).await? {
                Some(found) => found,
                None => sync.create(client, &facts, user_id).await?,
            };
            store.set_odoo_link("ticket", &fiche_id, odoo_id).await?;
            odoo_id
        }
    };
    store
        .set_odoo_state(&state_name, &facts.fingerprint())
        .await?;
    // A missed call's callback: a "Call" activity for its assignee, done when it closes.
    if facts.callback {
        let activity = store.odoo_link("activity", &fiche_id).await?;
        match (activity, facts.closed) {
            (None, false) => {
                let id = match sync.find_call(client, odoo_id).await? {
                    Some(id) => id,
                    None => sync.schedule_call(client, odoo_id, &facts, user_id).await?,
                };
                store.set_odoo_link("activity", &fiche_id, id).await?;
            }
            (Some(id), true) => {
                let done = format!("activity:{ticket_id}:done");
                if store.odoo_state(&done).await?.is_none() {
                    sync.activity_done(client, id).await?;
                    store.set_odoo_state(&done, "1").await?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

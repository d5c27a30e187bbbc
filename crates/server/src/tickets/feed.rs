//! Ticket changes for listeners besides the hub (the webhook outbox), in the
//! order they happened.
//!
//! The hub only reaches open pages; the feed is what integrations hear. It is a
//! bounded channel whose sender waits rather than drops, so a slow listener
//! slows ticket writes down instead of losing changes.

use fiche_hub::TicketSummary;
use tokio::sync::mpsc;

/// Changes queued for the listener before ticket writes wait for it.
pub const FEED_CAPACITY: usize = 1024;

/// Where ticket changes go besides the hub. Without a listener it does nothing.
#[derive(Clone, Default)]
pub struct TicketFeed {
    txs: Vec<mpsc::Sender<TicketSummary>>,
}

impl TicketFeed {
    /// A feed and its one listener's end.
    pub fn channel() -> (Self, mpsc::Receiver<TicketSummary>) {
        let (tx, rx) = mpsc::channel(FEED_CAPACITY);
        (Self { txs: vec![tx] }, rx)
    }

    /// A feed with `n` listeners (the webhook outbox, Odoo), each getting every change.
    pub fn channels(n: usize) -> (Self, Vec<mpsc::Receiver<TicketSummary>>) {
        let (txs, rxs) = (0..n).map(|_| mpsc::channel(FEED_CAPACITY)).unzip();
        (Self { txs }, rxs)
    }

    /// Hands one change on to each listener; waits while one is behind. A
    /// listener that has gone (shutdown) is ignored.
    pub async fn send(&self, ticket: TicketSummary) {
        for tx in &self.txs {
            // An error only means the receiver is gone; there is nobody to tell.
            let _ = tx.send(ticket.clone()).await;
        }
    }
}

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
    tx: Option<mpsc::Sender<TicketSummary>>,
}

impl TicketFeed {
    /// A feed and its one listener's end.
    pub fn channel() -> (Self, mpsc::Receiver<TicketSummary>) {
        let (tx, rx) = mpsc::channel(FEED_CAPACITY);
        (Self { tx: Some(tx) }, rx)
    }

    /// Hands one change on; waits while the listener is behind. A listener that
    /// has gone (shutdown, no webhook configured) is ignored.
    pub async fn send(&self, ticket: TicketSummary) {
        if let Some(tx) = &self.tx {
            // An error only means the receiver is gone; there is nobody to tell.
            let _ = tx.send(ticket).await;
        }
    }
}

//! Several nodes, one call centre (issue 15): `fiche serve` processes on one
//! PostgreSQL database share their calls, pops and ticket changes, and run the
//! work that must happen once (a PBX connection, the ticket writer, a webhook
//! target's delivery, pruning) on one node at a time.
//!
//! - `lease.rs`: the node's handle ([`Cluster`]), its heartbeat, and
//!   [`claimed`], which runs a task only while this node holds its lease.
//! - `bus.rs`: the event log between nodes. What this node's sources see is
//!   appended (`publisher`); what other nodes appended reaches this node's hub
//!   (`follow`); the one holder of the `writer` lease feeds every event, once,
//!   to the ticket writer and the webhook outbox (`feed_writers`).
//! - `ami.rs`: an AMI source held by one node; click-to-call from any node goes
//!   through the holder.
//! - `status.rs`: `fiche cluster status`.
//!
//! Without a `[cluster]` table none of this runs and the single-node path is
//! what it always was.

pub mod ami;
pub mod bus;
mod lease;
pub mod status;

pub use lease::{claimed, Cluster, LEASE_TTL};

use fiche_store::{Listener, Store};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Waits until `channel` is notified, `poll` has passed or `stop` fires
/// (then false). The listener is (re)connected first when it has none, and
/// dropped when it breaks, so a database restart is survived by polling
/// until it can listen again.
pub(crate) async fn wait_for_news(
    store: &Store,
    channel: &str,
    listener: &mut Option<Listener>,
    poll: Duration,
    stop: &CancellationToken,
) -> bool {
    if listener.is_none() {
        *listener = store.listen(channel).await.ok();
    }
    let woken = async {
        match listener.as_mut() {
            Some(l) => l.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = stop.cancelled() => false,
        result = woken => {
            if result.is_err() {
                *listener = None;
            }
            true
        }
        () = tokio::time::sleep(poll) => true,
    }
}

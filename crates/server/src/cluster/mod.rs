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

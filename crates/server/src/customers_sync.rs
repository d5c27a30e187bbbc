//! Keeps this server's caller index and customer name cache in step with customer
//! changes it did not make itself: `fiche import customers` run beside a running
//! server, or another Fiche node on the same PostgreSQL.
//!
//! Every write to the customer file adds a row to the store's change log naming the
//! customer ids it touched (`migrations/*/0002_customer_changes.sql`). This task polls
//! the log every `customers.sync_interval_ms`, reads the current content of the
//! customers it names and applies it in place: a customer found is re-indexed, a
//! logged id that no longer exists was deleted and is taken out. Nothing is reloaded
//! whole.
//!
//! **Order.** On PostgreSQL, concurrent transactions commit their log rows out of
//! id and time order, so `id > cursor` could skip a row that committed late. Each poll
//! therefore re-reads the last [`OVERLAP`] of the log (by the database's clock) and
//! skips the rows it has already applied. Applying is idempotent anyway: it copies
//! the customers' current state, so a row applied twice, or late, changes nothing.
//! A transaction whose log row (written last, just before its commit) takes longer
//! than [`OVERLAP`] to commit would be missed until the next change to those
//! customers or a restart.

use std::collections::HashMap;

use std::time::Duration;

use fiche_store::{Customer, CustomerChange, CustomerId, Store, MAX_CHANGES_PAGE};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::customer_memory::CustomerMemory;

/// How far back each poll re-reads the change log, in microseconds (30 s).
pub const OVERLAP: i64 = 30_000_000;
/// Customer ids read and applied at once: the index's write lock is held for one
/// such chunk at a time, so lookups never wait long.
const APPLY_CHUNK: i64 = 1_000;
/// How often this server prunes the change log.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Change-log rows older than this are pruned (microseconds: one day). A server
/// reads the whole file at start, so it only needs the log while it runs.
const KEEP_CHANGES: i64 = 24 * 3600 * 1_000_000;

/// The poller's state: where the log was last read, and what was applied.
pub struct CustomersSync {
    store: Store,
    customers: CustomerMemory,
    /// The database clock when the previous poll started (or before the index was
    /// loaded): the next poll reads from there, minus [`OVERLAP`].
    since: i64,
    /// Change rows applied, with their time, still inside the overlap window.
    applied: HashMap<i64, i64>,
}

impl CustomersSync {
    /// A poller for `customers`, which were loaded after the database clock
    /// read `clock` ([`Store::customer_changes_clock`]).
    pub fn new(store: Store, customers: CustomerMemory, clock: i64) -> Self {
        Self {
            store,
            customers,
            since: clock,
            applied: HashMap::new(),
        }
    }

    /// Reads the change log once and applies what is new; returns how many customer
    /// ids were re-read. On an error nothing is marked applied and the window does
    /// not move, so the next poll retries.
    pub async fn poll(&mut self) -> fiche_store::Result<usize> {
        let now = self.store.customer_changes_clock().await?;
        let mut after = (self.since.saturating_sub(OVERLAP), i64::MIN);
        let mut fresh: Vec<CustomerChange> = Vec::new();
        loop {
            let rows = self.store.customer_changes_since(after, 0).await?;
            let full = rows.len() >= MAX_CHANGES_PAGE as usize;
            if let Some(last) = rows.last() {
                after = (last.changed_at, last.id);
            }
            fresh.extend(
                rows.into_iter()
                    .filter(|c| !self.applied.contains_key(&c.id)),
            );
            if !full {
                break;
            }
        }
        let mut applied_ids = 0;
        for (first, last) in chunks(&fresh) {
            let customers = self
                .store
                .customers_between(CustomerId(first), CustomerId(last))
                .await?;
            self.apply(first, last, &customers);
            applied_ids += usize::try_from(last - first + 1).unwrap_or(0);
        }
        for change in &fresh {
            self.applied.insert(change.id, change.changed_at);
        }
        self.since = now;
        let horizon = now.saturating_sub(OVERLAP);
        self.applied.retain(|_, at| *at >= horizon);
        Ok(applied_ids)
    }

    /// Makes the index and the cache hold exactly `customers` for the ids
    /// `first..=last`: those absent were deleted.
    fn apply(&self, first: i64, last: i64, customers: &[Customer]) {
        self.customers.replace_range(first, last, customers);
    }

    /// Polls every `interval` until `shutdown`; prunes the log now and then.
    pub async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune = tokio::time::Instant::now();
        let mut failing = false;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            match self.poll().await {
                Ok(0) => {}
                Ok(n) => debug!(customers = n, "customer changes applied to the index"),
                Err(error) => {
                    // Once per outage, not once per tick.
                    if !failing {
                        warn!(%error, "reading customer changes failed; retrying");
                    }
                    failing = true;
                    continue;
                }
            }
            if failing {
                info!("reading customer changes works again");
                failing = false;
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = tokio::time::Instant::now();
                match self
                    .store
                    .prune_customer_changes(self.since.saturating_sub(KEEP_CHANGES))
                    .await
                {
                    Ok(n) => debug!(rows = n, "customer change log pruned"),
                    Err(error) => warn!(%error, "pruning the customer change log failed"),
                }
            }
        }
    }
}

/// The id ranges of `changes`, merged and cut into pieces of at most [`APPLY_CHUNK`]
/// ids, in id order.
fn chunks(changes: &[CustomerChange]) -> Vec<(i64, i64)> {
    let mut ranges: Vec<(i64, i64)> = changes
        .iter()
        .map(|c| (c.first_id.0, c.last_id.0.max(c.first_id.0)))
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (first, last) in ranges {
        match merged.last_mut() {
            Some((_, end)) if first <= end.saturating_add(1) => *end = (*end).max(last),
            _ => merged.push((first, last)),
        }
    }
    let mut pieces = Vec::new();
    for (mut first, last) in merged {
        while first <= last {
            let end = last.min(first.saturating_add(APPLY_CHUNK - 1));
            pieces.push((first, end));
            if end == i64::MAX {
                break;
            }
            first = end + 1;
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(id: i64, first: i64, last: i64) -> CustomerChange {
        CustomerChange {
            id,
            first_id: CustomerId(first),
            last_id: CustomerId(last),
            changed_at: 0,
        }
    }

    #[test]
    fn ranges_are_merged_and_cut_into_chunks() {
        let changes = [
            change(1, 10, 10),
            change(2, 1, 2_500),
            change(3, 2_501, 2_600),
            change(4, 9_000, 9_000),
        ];
        assert_eq!(
            chunks(&changes),
            vec![(1, 1_000), (1_001, 2_000), (2_001, 2_600), (9_000, 9_000)]
        );
        assert!(chunks(&[]).is_empty());
    }
}

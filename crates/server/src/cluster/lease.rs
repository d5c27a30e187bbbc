//! The node's handle, its heartbeat, and leases: work that runs on one node at
//! a time and moves to another within seconds when its holder dies.
//!
//! A lease is a row with an expiry on the database's clock. Its holder renews
//! it every [`RENEW_EVERY`]; the others try to take it every [`ACQUIRE_EVERY`]
//! and succeed once it has lapsed ([`LEASE_TTL`] after the last renewal). A
//! holder that cannot renew (the database is gone) stops the work before its
//! lease can lapse, so two nodes never run it at once; at shutdown it gives the
//! lease up, so the next node takes it at once. Worst case after a crash: the
//! work restarts elsewhere within `LEASE_TTL + ACQUIRE_EVERY`, 7 s.

use chrono::{DateTime, Utc};
use fiche_store::{Store, StoreError};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long a lease lasts after its last renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(6);
/// How often a holder renews.
const RENEW_EVERY: Duration = Duration::from_secs(2);
/// How often a node tries to take a lease it does not hold.
const ACQUIRE_EVERY: Duration = Duration::from_secs(1);
/// A holder that could not renew for this long stops the work: the lease may
/// lapse a second later on the database's clock.
const GIVE_UP_AFTER: Duration = Duration::from_secs(4);
/// How often the node's heartbeat is written.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// A node whose heartbeat is older is presumed dead (`fiche cluster status`),
/// and its name may be used again.
pub(super) const NODE_ALIVE: Duration = Duration::from_secs(10);
/// How long work gets to stop when its lease is lost.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// This node in its cluster: its name, the database, the leases it holds.
#[derive(Clone, Debug)]
pub struct Cluster {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    node: String,
    store: Store,
    started_at: DateTime<Utc>,
    http_addr: String,
    held: Mutex<BTreeSet<String>>,
}

impl Cluster {
    /// Joins the cluster as `node`: refused when the database is not
    /// PostgreSQL, or when a live node already has that name.
    pub async fn join(node: &str, store: Store, http_addr: String) -> anyhow::Result<Self> {
        if !store.supports_cluster() {
            anyhow::bail!(
                "cluster: several nodes share one PostgreSQL database; SQLite serves one node"
            );
        }
        let started_at = Utc::now();
        match store
            .cluster_heartbeat(node, started_at, &http_addr, NODE_ALIVE)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => anyhow::bail!(
                "cluster.node {node:?}: another node of that name is alive (its heartbeat is under {}s old)",
                NODE_ALIVE.as_secs()
            ),
            Err(error) => return Err(error.into()),
        }
        info!(node, "joined the cluster");
        Ok(Self {
            inner: Arc::new(Inner {
                node: node.to_owned(),
                store,
                started_at,
                http_addr,
                held: Mutex::default(),
            }),
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The leases this node holds now.
    pub fn held(&self) -> Vec<String> {
        self.held_set().iter().cloned().collect()
    }

    /// Whether this node holds lease `name` now.
    pub fn holds(&self, name: &str) -> bool {
        self.held_set().contains(name)
    }

    fn held_set(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        // A panic while holding this lock leaves a set of names: still usable.
        self.inner
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the heartbeat until `shutdown`.
    pub async fn run_heartbeat(self, shutdown: CancellationToken) {
        loop {
            if crate::outbox::sleep_or_stop(HEARTBEAT_EVERY, &shutdown).await {
                return;
            }
            let beat = self
                .store()
                .cluster_heartbeat(
                    self.node(),
                    self.inner.started_at,
                    &self.inner.http_addr,
                    NODE_ALIVE,
                )
                .await;
            if let Err(error) = beat {
                warn!(%error, "cluster heartbeat not written");
            }
        }
    }

    /// Runs `work` whenever this node holds lease `name`, until `shutdown`.
    /// `work` gets a token cancelled when the lease is lost; it is started
    /// again at the next tenure.
    pub async fn exclusive<W, F>(self, name: String, shutdown: CancellationToken, mut work: W)
    where
        W: FnMut(CancellationToken) -> F,
        F: Future<Output = ()>,
    {
        let store = self.store().clone();
        let node = self.node().to_owned();
        loop {
            // Wait for the lease.
            loop {
                if shutdown.is_cancelled() {
                    return;
                }
                match store.lease_acquire(&name, &node, LEASE_TTL).await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(error) => warn!(lease = %name, %error, "lease not checked"),
                }
                if crate::outbox::sleep_or_stop(ACQUIRE_EVERY, &shutdown).await {
                    return;
                }
            }
            info!(lease = %name, "lease taken: this node runs it");
            self.held_set().insert(name.clone());
            let tenure = shutdown.child_token();
            let mut job = Box::pin(work(tenure.clone()));
            let mut renewed = Instant::now();
            let mut finished = false;
            loop {
                tokio::select! {
                    () = &mut job => { finished = true; break; }
                    () = tokio::time::sleep(RENEW_EVERY) => {}
                }
                match store.lease_acquire(&name, &node, LEASE_TTL).await {
                    Ok(true) => renewed = Instant::now(),
                    Ok(false) => {
                        warn!(lease = %name, "lease lost to another node: stopping its work");
                        break;
                    }
                    Err(error) if renewed.elapsed() >= GIVE_UP_AFTER => {
                        warn!(lease = %name, %error, "lease not renewed in time: stopping its work");
                        break;
                    }
                    Err(error) => warn!(lease = %name, %error, "lease not renewed; retrying"),
                }
            }
            tenure.cancel();
            if !finished && tokio::time::timeout(STOP_TIMEOUT, &mut job).await.is_err() {
                warn!(lease = %name, "work did not stop in time after its lease ended");
            }
            drop(job);
            self.held_set().remove(&name);
            if shutdown.is_cancelled() {
                // The next node need not wait for the lease to lapse.
                if let Err(error) = store.lease_release(&name, &node).await {
                    warn!(lease = %name, %error, "lease not released");
                }
                return;
            }
            if finished {
                // The work stopped by itself: give others a turn before taking it again.
                let _ = store.lease_release(&name, &node).await;
                if crate::outbox::sleep_or_stop(ACQUIRE_EVERY, &shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Runs `work` under lease `name` in a cluster, or simply until `shutdown`
/// on a single node.
pub async fn claimed<W, F>(
    cluster: Option<Cluster>,
    name: String,
    shutdown: CancellationToken,
    mut work: W,
) where
    W: FnMut(CancellationToken) -> F,
    F: Future<Output = ()>,
{
    match cluster {
        Some(cluster) => cluster.exclusive(name, shutdown, work).await,
        None => work(shutdown).await,
    }
}

//! Password hashing and checking on a few dedicated threads.
//!
//! argon2 fills 19 MiB per hash. Run in `spawn_blocking`, every thread of tokio's
//! blocking pool (up to 512) allocated that memory in its own glibc arena, where it
//! stayed resident: 1,000 logins left about 850 MB. Here one thread per core owns
//! one [`HashMemory`] for the life of the process, so argon2 memory is bounded at
//! workers × 19 MiB however many logins arrive at once. Work the threads cannot
//! keep up with waits in a bounded queue; when the queue is full the caller is
//! answered 503 at once, never queued without bound.

use fiche_store::{HashMemory, PasswordHash, StoreError};
use rand::distributions::Alphanumeric;
use rand::Rng;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::{info, warn};

/// Hashes waiting for a worker, beyond those being computed. At 25 to 40 ms per
/// hash on each of 2 cores, a full queue is drained in 3 to 5 s: a whole team
/// logging in at the start of a shift waits a few seconds rather than being
/// refused. A waiting login costs a few hundred bytes, not argon2 memory.
pub(crate) const QUEUE_CAPACITY: usize = 256;

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every worker is busy and the queue is full: retry shortly.
    #[error(
        "trop de connexions en cours, réessayez dans un instant / \
         too many logins at once, retry in a moment"
    )]
    Busy,
    /// The workers are gone (could not start, or panicked).
    #[error("the password workers are not running")]
    Stopped,
    /// The password is not acceptable (empty, too long).
    #[error(transparent)]
    Store(#[from] StoreError),
}

enum Job {
    Hash {
        password: String,
        reply: oneshot::Sender<Result<PasswordHash, StoreError>>,
    },
    /// `hash: None` checks against a hash of a password nobody knows, so that an
    /// unknown login takes as long to refuse as a wrong password.
    Verify {
        hash: Option<PasswordHash>,
        password: String,
        reply: oneshot::Sender<bool>,
    },
}

/// Least time between two "saturated" log lines.
const BUSY_LOG_EVERY: Duration = Duration::from_secs(10);

/// The password workers and their queue.
#[derive(Debug)]
pub(crate) struct Hasher {
    jobs: SyncSender<Job>,
}

/// The process's password workers: one per core, started at first use.
pub(crate) fn hasher() -> &'static Hasher {
    static HASHER: OnceLock<Hasher> = OnceLock::new();
    HASHER.get_or_init(|| {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hasher::start(workers, QUEUE_CAPACITY)
    })
}

impl Hasher {
    /// Starts `workers` threads (at least one) behind a queue of `capacity` jobs.
    pub(crate) fn start(workers: usize, capacity: usize) -> Hasher {
        let (jobs, receiver) = sync_channel(capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let mut started = 0;
        for index in 0..workers.max(1) {
            let receiver = Arc::clone(&receiver);
            match std::thread::Builder::new()
                .name(format!("fiche-argon2-{index}"))
                .spawn(move || work(&receiver))
            {
                Ok(_) => started += 1,
                Err(error) => warn!(%error, "could not start a password worker"),
            }
        }
        info!(
            workers = started,
            queue = capacity,
            "password workers ready"
        );
        Hasher { jobs }
    }

    /// Hashes `password` (argon2id, default parameters, random salt).
    pub(crate) async fn hash(&self, password: String) -> Result<PasswordHash, HashError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Hash { password, reply })?;
        Ok(answer.await.map_err(|_| HashError::Stopped)??)
    }

    /// Whether `password` matches `hash`; with `None` (no such user), spends the
    /// time of a check and answers false.
    pub(crate) async fn verify(
        &self,
        hash: Option<PasswordHash>,
        password: String,
    ) -> Result<bool, HashError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Verify {
            hash,
            password,
            reply,
        })?;
        answer.await.map_err(|_| HashError::Stopped)
    }

    fn submit(&self, job: Job) -> Result<(), HashError> {
        self.jobs.try_send(job).map_err(|error| match error {
            TrySendError::Full(_) => HashError::Busy,
            TrySendError::Disconnected(_) => HashError::Stopped,
        })
    }
}

/// Logs that a caller was turned away, at most once per [`BUSY_LOG_EVERY`] with
/// the count since the last line, so a burst does not flood the log.
pub(crate) fn note_busy() {
    static STATE: Mutex<Option<(Instant, u64)>> = Mutex::new(None);
    let now = Instant::now();
    let mut state = STATE.lock().unwrap_or_else(PoisonError::into_inner);
    let (since, count) = state.get_or_insert((now, 0));
    *count += 1;
    if *count == 1 || now.duration_since(*since) >= BUSY_LOG_EVERY {
        warn!(
            refused = *count,
            "password workers saturated: logins answered 503 (busy)"
        );
        *state = Some((now, 0));
    }
}

/// One worker: takes jobs until the pool is dropped, always in the same memory.
fn work(jobs: &Mutex<Receiver<Job>>) {
    // Allocated at the first job, then kept: an idle server does not pay for it.
    let mut memory: Option<HashMemory> = None;
    loop {
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else {
            return;
        };
        match job {
            Job::Hash { password, reply } => {
                // The client went away while queued: nobody wants this hash.
                if reply.is_closed() {
                    continue;
                }
                let memory = memory.get_or_insert_with(HashMemory::new);
                // Err: the caller left meanwhile, nobody to tell.
                let _ = reply.send(PasswordHash::hash_in(&password, memory));
            }
            Job::Verify {
                hash,
                password,
                reply,
            } => {
                if reply.is_closed() {
                    continue;
                }
                let memory = memory.get_or_insert_with(HashMemory::new);
                let valid = match &hash {
                    Some(hash) => hash.verify_in(&password, memory),
                    None => {
                        if let Some(dummy) = dummy_hash(memory) {
                            dummy.verify_in(&password, memory);
                        }
                        false
                    }
                };
                let _ = reply.send(valid);
            }
        }
    }
}

/// A hash of a random password, made once and then forgotten.
fn dummy_hash(memory: &mut HashMemory) -> Option<&'static PasswordHash> {
    static DUMMY: OnceLock<PasswordHash> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Some(hash);
    }
    let password: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let hash = PasswordHash::hash_in(&password, memory).ok()?;
    Some(DUMMY.get_or_init(|| hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_answers_busy_and_the_accepted_jobs_are_right() {
        let hasher = Hasher::start(1, 1);
        let hash = hasher.hash("rappel-du-matin".into()).await.unwrap();
        let checks = (0..6).map(|i| {
            let password = if i % 2 == 0 {
                "rappel-du-matin"
            } else {
                "rappel-du-soir"
            };
            let hash = hash.clone();
            let hasher = &hasher;
            async move { (i, hasher.verify(Some(hash), password.into()).await) }
        });
        let results = futures_util::future::join_all(checks).await;
        let busy = results
            .iter()
            .filter(|(_, r)| matches!(r, Err(HashError::Busy)))
            .count();
        // One being computed, one queued: the other four find the queue full.
        assert!(busy >= 4, "{results:?}");
        for (i, result) in &results {
            if let Ok(valid) = result {
                assert_eq!(*valid, i % 2 == 0, "check {i}");
            }
        }
        // Once drained, the pool takes work again.
        assert!(hasher
            .verify(Some(hash), "rappel-du-matin".into())
            .await
            .unwrap());
        assert!(!hasher.verify(None, "rappel-du-matin".into()).await.unwrap());
    }

    #[test]
    fn busy_says_so_in_french_first() {
        assert!(HashError::Busy
            .to_string()
            .starts_with("trop de connexions"));
    }
}

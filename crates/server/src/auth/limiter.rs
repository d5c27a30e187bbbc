//! Failed-login counting: a login or an address that failed too often in a window
//! is refused until the window ends, so passwords cannot be guessed at speed.
//!
//! In memory and bounded: when full, the oldest window is forgotten first.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Most keys (logins plus addresses) remembered.
const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Counts failures per key in fixed windows.
#[derive(Debug)]
pub struct Limiter {
    max_failures: u32,
    window: Duration,
    keys: Mutex<HashMap<String, Window>>,
}

impl Limiter {
    /// At most `max_failures` per `window` for each key.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(wait)` when `key` is blocked at `now`, with the time left.
    pub fn blocked(&self, key: &str, now: Instant) -> Option<Duration> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let window = keys.get(key)?;
        let ends = window.started + self.window;
        (window.failures >= self.max_failures && ends > now).then(|| ends - now)
    }

    /// Counts one failure for `key`.
    pub fn fail(&self, key: &str, now: Instant) {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= MAX_KEYS && !keys.contains_key(key) {
            let window = self.window;
            keys.retain(|_, w| w.started + window > now);
            if keys.len() >= MAX_KEYS {
                if let Some(oldest) = keys
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(k, _)| k.clone())
                {
                    keys.remove(&oldest);
                }
            }
        }
        let entry = keys.entry(key.to_owned()).or_insert(Window {
            started: now,
            failures: 0,
        });
        if entry.started + self.window <= now {
            *entry = Window {
                started: now,
                failures: 0,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
    }

    /// Forgets `key` (after a successful login).
    pub fn clear(&self, key: &str) {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Logins that succeeded from each client, remembered for a while: a client
/// blocked for its failures still lets these logins through (each keeps its
/// own per-login limit), so one address never locks every account.
///
/// In memory and bounded like [`Limiter`]: when full, the oldest is forgotten.
#[derive(Debug)]
pub struct KnownClients {
    keep: Duration,
    pairs: Mutex<HashMap<(String, String), Instant>>,
}

impl KnownClients {
    /// Remembers each success for `keep`.
    pub fn new(keep: Duration) -> Self {
        Self {
            keep,
            pairs: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `login` succeeded from `client` within `keep` before `now`.
    pub fn knows(&self, client: &str, login: &str, now: Instant) -> bool {
        let pairs = self.pairs.lock().unwrap_or_else(PoisonError::into_inner);
        pairs
            .get(&(client.to_owned(), login.to_owned()))
            .is_some_and(|at| now.saturating_duration_since(*at) < self.keep)
    }

    /// `login` succeeded from `client` at `now`.
    pub fn remember(&self, client: &str, login: &str, now: Instant) {
        let mut pairs = self.pairs.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (client.to_owned(), login.to_owned());
        if pairs.len() >= MAX_KEYS && !pairs.contains_key(&key) {
            let keep = self.keep;
            pairs.retain(|_, at| now.saturating_duration_since(*at) < keep);
            if pairs.len() >= MAX_KEYS {
                if let Some(oldest) = pairs
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(k, _)| k.clone())
                {
                    pairs.remove(&oldest);
                }
            }
        }
        pairs.insert(key, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_blocked_after_its_failures_until_the_window_ends() {
        let limiter = Limiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..2 {
            limiter.fail("claire", t0);
        }
        assert_eq!(limiter.blocked("claire", t0), None);
        limiter.fail("claire", t0);
        assert_eq!(
            limiter.blocked("claire", t0 + Duration::from_secs(10)),
            Some(Duration::from_secs(50))
        );
        assert_eq!(limiter.blocked("other", t0), None);
        assert_eq!(
            limiter.blocked("claire", t0 + Duration::from_secs(60)),
            None
        );
        limiter.fail("claire", t0 + Duration::from_secs(61));
        assert_eq!(
            limiter.blocked("claire", t0 + Duration::from_secs(61)),
            None
        );
        limiter.clear("claire");
        assert_eq!(limiter.len(), 0);
    }

    #[test]
    fn a_login_is_known_at_a_client_for_a_while_after_it_succeeded_there() {
        let known = KnownClients::new(Duration::from_secs(60));
        let t0 = Instant::now();
        known.remember("192.0.2.1", "claire", t0);
        assert!(known.knows("192.0.2.1", "claire", t0 + Duration::from_secs(59)));
        assert!(!known.knows("192.0.2.1", "claire", t0 + Duration::from_secs(60)));
        assert!(!known.knows("192.0.2.2", "claire", t0));
        assert!(!known.knows("192.0.2.1", "malik", t0));
        for i in 0..MAX_KEYS + 5 {
            known.remember(&format!("c{i}"), "x", t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(known.pairs.lock().unwrap().len(), MAX_KEYS);
    }

    #[test]
    fn the_map_stays_bounded() {
        let limiter = Limiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..MAX_KEYS + 50 {
            limiter.fail(&format!("k{i}"), t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(limiter.len(), MAX_KEYS);
    }
}

//! The in-memory map from phone numbers to the customers who own them.
//!
//! Numbers are keyed as integers: an E.164 number has at most 15 digits and
//! never starts with 0 after the `+`, so its digits fit a `u64` exactly. That
//! keeps the hot lookup to one or two probes of integer-keyed hash tables
//! with a multiply-fold hasher, and no string hashing or allocation besides
//! the result.
//!
//! **Concurrency:** `Index` is a plain synchronous value: lookups take `&self`,
//! updates take `&mut self` and cost O(numbers of that customer). The server
//! is expected to hold it in a `std::sync::RwLock` (updates are rare and
//! short, so readers almost never wait). Nothing here blocks or allocates
//! unboundedly.
//!
//! **Fallback:** numbers also go into a second table keyed by their last 9
//! digits, so a caller still finds a customer whose number was stored with a
//! wrong country code or could not be parsed at all (`Index::insert` accepts
//! any stored text). Those matches carry [`Confidence::LastDigits`] and are
//! returned only when no number matches exactly.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::number::NumberKind;
use crate::Timestamp;

/// A customer's identity as the store knows it (its primary key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomerId(pub i64);

impl From<i64> for CustomerId {
    fn from(id: i64) -> Self {
        CustomerId(id)
    }
}

/// How sure a match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Confidence {
    /// The caller's E.164 number is one of the customer's numbers.
    Exact,
    /// Only the last 9 digits agree: the customer's number was probably
    /// stored with a wrong country or trunk prefix. Show it as a guess.
    LastDigits,
}

/// One customer found for a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub customer_id: CustomerId,
    pub confidence: Confidence,
    /// When Fiche last had a call with this customer, used for ranking.
    pub last_contact: Option<Timestamp>,
}

/// Digits used for the fallback table.
const TAIL_DIGITS: u32 = 9;
const TAIL_MODULUS: u64 = 10u64.pow(TAIL_DIGITS);
/// Raw (unparseable) stored numbers keep at most this many trailing digits.
const RAW_DIGITS: usize = 18;
/// Marks a key built from a raw stored number rather than from E.164; such
/// keys live only in the fallback table.
const RAW_FLAG: u64 = 1 << 63;

/// A multiply-fold hasher for integer keys. The keys are phone numbers and
/// customer ids from our own database, not attacker-chosen, so a keyed
/// DoS-resistant hash buys nothing here and costs latency.
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl KeyHasher {
    #[inline]
    fn mix(&mut self, value: u64) {
        let product = u128::from(self.0 ^ value) * 0x9E37_79B9_7F4A_7C15_u128;
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }
    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.mix(value);
    }
    #[inline]
    fn write_u32(&mut self, value: u32) {
        self.mix(u64::from(value));
    }
    #[inline]
    fn write_i64(&mut self, value: i64) {
        self.mix(value as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// A list that is almost always of length one, kept inline in that case so
/// that a million singletons cost no heap allocation.
#[derive(Debug, Clone)]
enum Bucket<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Copy + PartialEq> Bucket<T> {
    fn as_slice(&self) -> &[T] {
        match self {
            Bucket::One(item) => std::slice::from_ref(item),
            Bucket::Many(items) => items,
        }
    }

    /// Adds `item` unless present; returns whether it was added.
    fn insert(&mut self, item: T) -> bool {
        if self.as_slice().contains(&item) {
            return false;
        }
        match self {
            Bucket::One(first) => *self = Bucket::Many(vec![*first, item]),
            Bucket::Many(items) => items.push(item),
        }
        true
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        match self {
            Bucket::One(item) => std::slice::from_mut(item),
            Bucket::Many(items) => items,
        }
    }

    /// Removes the items matching `gone`; returns whether the bucket is now
    /// empty (the caller then drops it).
    fn remove_where(&mut self, gone: impl Fn(&T) -> bool) -> bool {
        match self {
            Bucket::One(only) => gone(only),
            Bucket::Many(items) => {
                items.retain(|x| !gone(x));
                if items.len() == 1 {
                    *self = Bucket::One(items[0]);
                }
                items_is_empty(self)
            }
        }
    }
}

fn items_is_empty<T>(bucket: &Bucket<T>) -> bool {
    matches!(bucket, Bucket::Many(items) if items.is_empty())
}

fn insert_into<K: std::hash::Hash + Eq, T: Copy + PartialEq>(
    map: &mut FastMap<K, Bucket<T>>,
    key: K,
    item: T,
) -> bool {
    match map.entry(key) {
        std::collections::hash_map::Entry::Occupied(mut slot) => slot.get_mut().insert(item),
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(Bucket::One(item));
            true
        }
    }
}

fn remove_from<K: std::hash::Hash + Eq, T: Copy + PartialEq>(
    map: &mut FastMap<K, Bucket<T>>,
    key: K,
    gone: impl Fn(&T) -> bool,
) {
    if let Some(bucket) = map.get_mut(&key) {
        if bucket.remove_where(gone) {
            map.remove(&key);
        }
    }
}

/// "Never contacted" in [`Holder::last_contact`]; sorts before any time.
const NEVER: i64 = i64::MIN;

fn to_micros(at: Option<Timestamp>) -> i64 {
    at.map_or(NEVER, |t| t.timestamp_micros())
}

fn from_micros(micros: i64) -> Option<Timestamp> {
    if micros == NEVER {
        return None;
    }
    chrono::DateTime::from_timestamp_micros(micros)
}

/// A customer owning a number, with its last contact copied in (as
/// microseconds, to keep the entry at 16 bytes) so that an exact lookup
/// touches a single table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holder {
    customer_id: CustomerId,
    last_contact: i64,
}

#[derive(Debug, Clone)]
struct CustomerSlot {
    last_contact: i64,
    keys: Bucket<u64>,
}

/// Phone number → customers, with a last-9-digits fallback.
#[derive(Debug, Clone, Default)]
pub struct Index {
    by_number: FastMap<u64, Bucket<Holder>>,
    by_tail: FastMap<u32, Bucket<(CustomerId, u64)>>,
    customers: FastMap<CustomerId, CustomerSlot>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the index from `(customer, stored number, last contact)` rows,
    /// as the store reads them. `expected` sizes the tables up front (a
    /// hint; pass 0 if unknown). Rows whose number holds no digit are
    /// skipped, as [`Index::insert`] does.
    pub fn build<S: AsRef<str>>(
        rows: impl IntoIterator<Item = (CustomerId, S, Option<Timestamp>)>,
        expected: usize,
    ) -> Self {
        let mut index = Index {
            by_number: FastMap::with_capacity_and_hasher(expected, Default::default()),
            by_tail: FastMap::with_capacity_and_hasher(expected, Default::default()),
            customers: FastMap::with_capacity_and_hasher(expected, Default::default()),
        };
        for (customer_id, number, last_contact) in rows {
            index.insert(customer_id, number.as_ref(), last_contact);
        }
        index
    }

    /// Number of customers with at least one number.
    pub fn customer_count(&self) -> usize {
        self.customers.len()
    }

    /// Number of distinct E.164 numbers indexed.
    pub fn number_count(&self) -> usize {
        self.by_number.len()
    }

    /// Whether no customer is indexed.
    pub fn is_empty(&self) -> bool {
        self.customers.is_empty()
    }

    /// Records that `customer_id` owns `number`. `number` is what the store
    /// holds: normally E.164 ("+33612345678"); anything else (a number that
    /// failed normalisation at import) is indexed for the fallback only.
    /// `last_contact` replaces the customer's if it is more recent. Returns
    /// `false` when the number has no digit to index.
    pub fn insert(
        &mut self,
        customer_id: CustomerId,
        number: &str,
        last_contact: Option<Timestamp>,
    ) -> bool {
        let Some(key) = stored_key(number) else {
            return false;
        };
        let mut contact = to_micros(last_contact);
        let known = match self.customers.entry(customer_id) {
            std::collections::hash_map::Entry::Occupied(mut slot) => {
                let slot = slot.get_mut();
                slot.keys.insert(key);
                if contact > slot.last_contact {
                    slot.last_contact = contact;
                    true
                } else {
                    contact = slot.last_contact;
                    false
                }
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(CustomerSlot {
                    last_contact: contact,
                    keys: Bucket::One(key),
                });
                false
            }
        };
        if known {
            // A more recent contact came with this row: its other numbers
            // must rank it the same way.
            self.touch(customer_id, last_contact.unwrap_or_default());
        }
        if key & RAW_FLAG == 0 {
            let holder = Holder {
                customer_id,
                last_contact: contact,
            };
            match self.by_number.entry(key) {
                std::collections::hash_map::Entry::Occupied(mut slot) => {
                    let bucket = slot.get_mut();
                    match bucket
                        .as_mut_slice()
                        .iter_mut()
                        .find(|h| h.customer_id == customer_id)
                    {
                        Some(existing) => existing.last_contact = contact,
                        None => {
                            bucket.insert(holder);
                        }
                    }
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(Bucket::One(holder));
                }
            }
        }
        if let Some(tail) = tail_of_key(key) {
            insert_into(&mut self.by_tail, tail, (customer_id, key));
        }
        true
    }

    /// Forgets that `customer_id` owns `number` (given as it was inserted).
    pub fn remove(&mut self, customer_id: CustomerId, number: &str) {
        let Some(key) = stored_key(number) else {
            return;
        };
        let Some(slot) = self.customers.get_mut(&customer_id) else {
            return;
        };
        if !slot.keys.as_slice().contains(&key) {
            return;
        }
        if slot.keys.remove_where(|k| *k == key) {
            self.customers.remove(&customer_id);
        }
        self.unlink(customer_id, key);
    }

    /// Forgets every number of a deleted customer.
    pub fn remove_customer(&mut self, customer_id: CustomerId) {
        let Some(slot) = self.customers.remove(&customer_id) else {
            return;
        };
        for &key in slot.keys.as_slice() {
            self.unlink(customer_id, key);
        }
    }

    /// Records a contact (a call) with the customer at `at`, which moves it
    /// up among customers sharing a number. Older times are ignored.
    pub fn touch(&mut self, customer_id: CustomerId, at: Timestamp) {
        let Some(slot) = self.customers.get_mut(&customer_id) else {
            return;
        };
        let at = to_micros(Some(at));
        slot.last_contact = slot.last_contact.max(at);
        let at = slot.last_contact;
        for key in slot.keys.as_slice() {
            if let Some(bucket) = self.by_number.get_mut(key) {
                for holder in bucket.as_mut_slice() {
                    if holder.customer_id == customer_id {
                        holder.last_contact = at;
                    }
                }
            }
        }
    }

    fn unlink(&mut self, customer_id: CustomerId, key: u64) {
        if key & RAW_FLAG == 0 {
            remove_from(&mut self.by_number, key, |h| h.customer_id == customer_id);
        }
        if let Some(tail) = tail_of_key(key) {
            remove_from(&mut self.by_tail, tail, |entry| {
                *entry == (customer_id, key)
            });
        }
    }

    /// The customers who may be calling from `number`, most recent contact
    /// first, then by id: the exact matches if there is any, otherwise the
    /// last-9-digit matches (a fallback: a badly stored number is not
    /// offered next to a number that matches exactly). Extensions and
    /// withheld numbers match nobody.
    pub fn lookup(&self, number: &NumberKind) -> Vec<Match> {
        let mut found = Vec::new();
        self.lookup_into(number, &mut found);
        found
    }

    /// [`Index::lookup`] for an E.164 string ("+33612345678").
    pub fn lookup_e164(&self, e164: &str) -> Vec<Match> {
        let mut found = Vec::new();
        if let Some(key) = e164_key(e164) {
            self.collect(Some(key), tail_of_key(key), &mut found);
        }
        found
    }

    /// [`Index::lookup`] writing into a reused vector (cleared first), for
    /// callers that want no allocation per call.
    pub fn lookup_into(&self, number: &NumberKind, found: &mut Vec<Match>) {
        found.clear();
        match number {
            NumberKind::E164(e164) => {
                if let Some(key) = e164_key(e164) {
                    self.collect(Some(key), tail_of_key(key), found);
                }
            }
            NumberKind::Invalid(raw) => {
                if let Some(key) = raw_key(raw) {
                    self.collect(None, tail_of_key(key), found);
                }
            }
            NumberKind::Extension(_) | NumberKind::Withheld => {}
        }
    }

    fn collect(&self, key: Option<u64>, tail: Option<u32>, found: &mut Vec<Match>) {
        if let Some(bucket) = key.and_then(|k| self.by_number.get(&k)) {
            found.extend(bucket.as_slice().iter().map(|h| Match {
                customer_id: h.customer_id,
                confidence: Confidence::Exact,
                last_contact: from_micros(h.last_contact),
            }));
        } else if let Some(bucket) = tail.and_then(|t| self.by_tail.get(&t)) {
            for &(customer_id, _) in bucket.as_slice() {
                if found.iter().any(|m| m.customer_id == customer_id) {
                    continue;
                }
                found.push(Match {
                    customer_id,
                    confidence: Confidence::LastDigits,
                    last_contact: self
                        .customers
                        .get(&customer_id)
                        .and_then(|c| from_micros(c.last_contact)),
                });
            }
        }
        if found.len() > 1 {
            found.sort_unstable_by(rank);
        }
    }
}

/// Most recent contact first (never-contacted last), then lowest id.
fn rank(a: &Match, b: &Match) -> std::cmp::Ordering {
    b.last_contact
        .cmp(&a.last_contact)
        .then(a.customer_id.cmp(&b.customer_id))
}

/// The integer key of "+<digits>", if it is E.164-shaped.
fn e164_key(e164: &str) -> Option<u64> {
    let digits = e164.strip_prefix('+')?;
    if digits.is_empty() || digits.len() > 15 || digits.starts_with('0') {
        return None;
    }
    digits.bytes().try_fold(0u64, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

/// The key of any other stored text: its last digits, flagged as raw.
fn raw_key(text: &str) -> Option<u64> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    let start = digits.len().saturating_sub(RAW_DIGITS);
    let value = digits[start..]
        .iter()
        .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'));
    Some(RAW_FLAG | value)
}

fn stored_key(number: &str) -> Option<u64> {
    e164_key(number.trim()).or_else(|| raw_key(number))
}

/// The last 9 digits, or `None` for numbers too short to have them (their
/// tail would collide with unrelated numbers).
fn tail_of_key(key: u64) -> Option<u32> {
    let value = key & !RAW_FLAG;
    if value < TAIL_MODULUS / 10 {
        return None;
    }
    u32::try_from(value % TAIL_MODULUS).ok()
}

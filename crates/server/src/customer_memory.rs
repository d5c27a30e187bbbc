//! The customers Fiche keeps in memory so that a pop never waits for the disk:
//! the number index (`fiche_matcher::Index`) and the name cache, with one
//! owner. Both always change together (an API change, another writer's change
//! seen by `customers_sync`, a call that makes a customer the last in touch),
//! so no caller can update one and forget the other.

use crate::tickets::{CachedCustomer, CustomerCache};
use chrono::{DateTime, Utc};
use fiche_matcher::{Index, Match, NumberKind};
use fiche_store::{Customer, CustomerId};
use std::sync::{Arc, PoisonError, RwLock};

/// The index and the name cache (cheap to clone: shared).
#[derive(Debug, Clone, Default)]
pub struct CustomerMemory {
    index: Arc<RwLock<Index>>,
    cache: CustomerCache,
}

impl CustomerMemory {
    /// Memory over an index built at start and a loaded cache.
    pub fn new(index: Index, cache: CustomerCache) -> Self {
        Self {
            index: Arc::new(RwLock::new(index)),
            cache,
        }
    }

    /// Customers owning `number`, ranked (exact first, last in touch first).
    pub fn lookup(&self, number: &NumberKind) -> Vec<Match> {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .lookup(number)
    }

    /// A customer's name, company and tags, if cached.
    pub fn cached(&self, id: i64) -> Option<CachedCustomer> {
        self.cache.get(id)
    }

    /// A created or updated customer: its numbers and its name, now.
    pub fn put(&self, customer: &Customer) {
        self.cache.put(customer);
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        index_one(&mut index, customer);
    }

    /// A deleted customer leaves both.
    pub fn remove(&self, id: CustomerId) {
        self.cache.remove(id);
        self.index
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove_customer(fiche_matcher::CustomerId(id.0));
    }

    /// Holds exactly `customers` for the ids `first..=last` (sorted by id):
    /// those absent were deleted.
    pub fn replace_range(&self, first: i64, last: i64, customers: &[Customer]) {
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        let mut found = customers.iter().peekable();
        for id in first..=last {
            match found.next_if(|c| c.id.0 == id) {
                Some(customer) => {
                    index_one(&mut index, customer);
                    self.cache.put(customer);
                }
                None => {
                    index.remove_customer(fiche_matcher::CustomerId(id));
                    self.cache.remove(CustomerId(id));
                }
            }
        }
    }

    /// Calls committed with these customers: among customers sharing a
    /// number, the next pop shows the one last in touch first.
    pub fn touch(&self, contacts: impl IntoIterator<Item = (CustomerId, DateTime<Utc>)>) {
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        for (customer, at) in contacts {
            index.touch(fiche_matcher::CustomerId(customer.0), at);
        }
    }

    /// Customers in the name cache.
    pub fn cached_len(&self) -> usize {
        self.cache.len()
    }
}

fn index_one(index: &mut Index, customer: &Customer) {
    let id = fiche_matcher::CustomerId(customer.id.0);
    index.remove_customer(id);
    for phone in &customer.phones {
        let number = phone.e164.as_deref().unwrap_or(&phone.raw);
        index.insert(id, number, customer.last_contact_at);
    }
}

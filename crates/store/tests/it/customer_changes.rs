//! The customer change log that keeps other processes' caller index current: every
//! write to the customer file is logged with the ids it touched, deletions included.

use fiche_store::{Customer, CustomerChange, CustomerId, NewCustomer, Store};

use crate::customers::{dupont, phone};
use crate::{store_test, TestDb};

/// Changes logged since `start` (the database clock), oldest first, read in pages of
/// `page` rows as a poller would.
async fn changes(store: &Store, start: i64, page: u32) -> Vec<CustomerChange> {
    let mut all = Vec::new();
    let mut after = (start, i64::MIN);
    loop {
        let rows = store.customer_changes_since(after, page).await.unwrap();
        let Some(last) = rows.last() else { break };
        after = (last.changed_at, last.id);
        let full = rows.len() == page as usize;
        all.extend(rows);
        if !full {
            break;
        }
    }
    all
}

fn covers(changes: &[CustomerChange], id: CustomerId) -> usize {
    changes
        .iter()
        .filter(|c| c.first_id <= id && id <= c.last_id)
        .count()
}

fn customer(n: usize) -> NewCustomer {
    NewCustomer {
        name: format!("Client {n}"),
        phones: vec![phone(
            &format!("+3361000{n:04}"),
            &format!("06 10 00 {n:04}"),
        )],
        ..NewCustomer::default()
    }
}

store_test!(every_customer_write_is_logged_with_its_ids);
async fn every_customer_write_is_logged_with_its_ids(db: &TestDb) {
    let store = &db.store;
    let start = store.customer_changes_clock().await.unwrap();

    let created = store.create_customer(&dupont()).await.unwrap();
    let log = changes(store, start, 0).await;
    assert_eq!(covers(&log, created.id), 1, "creation logged: {log:?}");
    assert!(
        log.iter().all(|c| c.changed_at >= start),
        "{log:?} vs {start}"
    );

    // A reader that saw the creation continues after it and sees only what follows.
    let seen = log.last().map(|c| (c.changed_at, c.id)).unwrap();
    let mut changed = dupont();
    changed.name = "Hélène Dupont-Martin".to_owned();
    store.update_customer(created.id, &changed).await.unwrap();
    let added = store
        .add_phone(created.id, &phone("+33299000000", "02 99 00 00 00"))
        .await
        .unwrap();
    store.remove_phone(created.id, added.id).await.unwrap();
    let later = store.customer_changes_since(seen, 0).await.unwrap();
    assert_eq!(
        covers(&later, created.id),
        3,
        "update, add and remove: {later:?}"
    );

    // The range reads back the current customer; after the delete it reads nothing.
    let current: Vec<Customer> = store
        .customers_between(created.id, created.id)
        .await
        .unwrap();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].name, "Hélène Dupont-Martin");
    assert_eq!(current[0].phones.len(), 2);
    store.delete_customer(created.id).await.unwrap();
    let log = changes(store, start, 0).await;
    assert_eq!(
        covers(&log, created.id),
        5,
        "the delete is logged too: {log:?}"
    );
    assert!(store
        .customers_between(created.id, created.id)
        .await
        .unwrap()
        .is_empty());
    // Deleting what is not there writes nothing.
    assert!(store.delete_customer(created.id).await.is_err());
    assert_eq!(covers(&changes(store, start, 0).await, created.id), 5);
}

store_test!(an_import_batch_is_logged_as_ranges_and_pages_through);
async fn an_import_batch_is_logged_as_ranges_and_pages_through(db: &TestDb) {
    let store = &db.store;
    let start = store.customer_changes_clock().await.unwrap();
    let rows: Vec<NewCustomer> = (0..250).map(customer).collect();
    let outcome = store.upsert_customers_batch(&rows).await.unwrap();
    assert_eq!(outcome.inserted, 250);
    let log = changes(store, start, 0).await;
    // Consecutive new ids are one row, not 250.
    assert!(log.len() <= 3, "{log:?}");
    for id in &outcome.ids {
        assert_eq!(covers(&log, *id), 1, "{id} in {log:?}");
    }

    // Re-importing changed rows logs the updated customers.
    let seen = log.last().map(|c| (c.changed_at, c.id)).unwrap();
    let mut again: Vec<NewCustomer> = (0..250).step_by(50).map(customer).collect();
    for row in &mut again {
        row.notes = Some("rappelé".to_owned());
    }
    let outcome = store.upsert_customers_batch(&again).await.unwrap();
    assert_eq!(outcome.updated, 5);
    let later = store.customer_changes_since(seen, 0).await.unwrap();
    for id in &outcome.ids {
        assert_eq!(covers(&later, *id), 1, "{id} in {later:?}");
    }

    // Reading page by page gives the same rows, in order, without repeats.
    let whole = changes(store, start, 0).await;
    let paged = changes(store, start, 2).await;
    assert_eq!(whole, paged);
    let mut keys: Vec<(i64, i64)> = paged.iter().map(|c| (c.changed_at, c.id)).collect();
    let sorted = {
        let mut k = keys.clone();
        k.sort();
        k
    };
    assert_eq!(keys, sorted);
    keys.dedup();
    assert_eq!(keys.len(), paged.len());

    // The range read is bounded.
    assert!(store
        .customers_between(CustomerId(1), CustomerId(1_000_000))
        .await
        .is_err());
    let first = outcome.ids.iter().min().copied().unwrap();
    let last = outcome.ids.iter().max().copied().unwrap();
    let read = store.customers_between(first, last).await.unwrap();
    assert_eq!(read.len() as i64, last.0 - first.0 + 1);
    assert!(read.windows(2).all(|w| w[0].id < w[1].id));
}

store_test!(old_changes_are_pruned);
async fn old_changes_are_pruned(db: &TestDb) {
    let store = &db.store;
    let start = store.customer_changes_clock().await.unwrap();
    let created = store.create_customer(&customer(1)).await.unwrap();
    assert_eq!(store.prune_customer_changes(start - 1).await.unwrap(), 0);
    assert_eq!(covers(&changes(store, start, 0).await, created.id), 1);
    let now = store.customer_changes_clock().await.unwrap();
    assert_eq!(store.prune_customer_changes(now + 1).await.unwrap(), 1);
    assert!(changes(store, start, 0).await.is_empty());
}

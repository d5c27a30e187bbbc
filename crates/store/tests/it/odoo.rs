//! What the Odoo connector keeps: mirrored customers (Odoo owns them), deletions by
//! external reference, the poll cursor and the Fiche → Odoo links.

use fiche_store::{CheckedCustomer, MirrorOutcome, NewCustomer};

use crate::customers::phone;
use crate::{store_test, TestDb};

fn partner(id: i64, name: &str, number: &str) -> CheckedCustomer {
    NewCustomer {
        name: name.to_owned(),
        email: Some(format!("p{id}@example.com")),
        external_ref: Some(format!("odoo:res.partner:{id}")),
        phones: vec![phone(number, number)],
        ..NewCustomer::default()
    }
    .check()
    .unwrap()
}

async fn mirrored_customers_follow_odoo_exactly(db: &TestDb) {
    let store = &db.store;
    let first = store
        .mirror_customers(&[
            partner(1, "Hélène", "+33611223344"),
            partner(2, "Zoé", "+33655667788"),
        ])
        .await
        .unwrap();
    assert_eq!(
        first,
        MirrorOutcome {
            inserted: 2,
            updated: 0,
            unchanged: 0
        }
    );

    // The same content again: nothing written, nothing logged. (Rows are
    // counted, not read after the clock: SQLite's clock has millisecond steps,
    // so the first write can carry the very time read just after it.)
    let logged = |store: &fiche_store::Store| {
        let store = store.clone();
        async move {
            store
                .customer_changes_since((i64::MIN, i64::MIN), 0)
                .await
                .unwrap()
                .len()
        }
    };
    let before = logged(store).await;
    let again = store
        .mirror_customers(&[partner(1, "Hélène", "+33611223344")])
        .await
        .unwrap();
    assert_eq!(again.unchanged, 1);
    assert_eq!(logged(store).await, before, "nothing logged");

    // A change replaces the number and erases the email Odoo no longer has.
    let mut changed = partner(1, "Hélène Roy", "+33699887766").get().clone();
    changed.email = None;
    let outcome = store
        .mirror_customers(&[changed.check().unwrap()])
        .await
        .unwrap();
    assert_eq!(outcome.updated, 1);
    let found = store
        .search_customers(&fiche_store::CustomerQuery {
            e164: Some("+33699887766".to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(found.items[0].name, "Hélène Roy");
    assert_eq!(found.items[0].email, None);
    assert_eq!(found.items[0].phones.len(), 1, "the old number is gone");
    assert!(logged(store).await > before, "the change is logged");

    // Gone in Odoo: deleted by reference.
    let refs = store
        .external_refs_with_prefix("odoo:res.partner:")
        .await
        .unwrap();
    assert_eq!(
        refs,
        vec![
            "odoo:res.partner:1".to_owned(),
            "odoo:res.partner:2".to_owned()
        ]
    );
    let deleted = store
        .delete_customers_by_external_refs(&[
            "odoo:res.partner:2".to_owned(),
            "odoo:res.partner:9".to_owned(),
        ])
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(
        store
            .external_refs_with_prefix("odoo:")
            .await
            .unwrap()
            .len(),
        1
    );
}
store_test!(mirrored_customers_follow_odoo_exactly);

async fn cursor_and_links_are_kept(db: &TestDb) {
    let store = &db.store;
    assert_eq!(store.odoo_state("partners_cursor").await.unwrap(), None);
    store
        .set_odoo_state("partners_cursor", "2026-12-06 09:00:00|4")
        .await
        .unwrap();
    store
        .set_odoo_state("partners_cursor", "2026-12-06 10:00:00|7")
        .await
        .unwrap();
    assert_eq!(
        store
            .odoo_state("partners_cursor")
            .await
            .unwrap()
            .as_deref(),
        Some("2026-12-06 10:00:00|7")
    );
    store.set_odoo_link("ticket", "12", 40).await.unwrap();
    // A replay never moves the link to a second Odoo record.
    store.set_odoo_link("ticket", "12", 41).await.unwrap();
    assert_eq!(store.odoo_link("ticket", "12").await.unwrap(), Some(40));
    assert_eq!(store.odoo_link("activity", "12").await.unwrap(), None);
}
store_test!(cursor_and_links_are_kept);

//! The importer's batch upsert: merges by external reference, email, then number.

use std::time::Instant;

use fiche_store::{
    CustomerQuery, MatchedBy, MergeKeys, NewCustomer, NewPhone, Store, StoreError, UpsertAction,
};

use crate::customers::{dupont, phone};
use crate::{store_test, TestDb};

fn row(
    name: &str,
    external_ref: Option<&str>,
    email: Option<&str>,
    phones: &[&str],
) -> NewCustomer {
    NewCustomer {
        name: name.into(),
        email: email.map(Into::into),
        external_ref: external_ref.map(Into::into),
        phones: phones.iter().map(|e| phone(e, e)).collect(),
        ..NewCustomer::default()
    }
}

async fn count(store: &Store) -> u64 {
    store
        .search_customers(&CustomerQuery::default())
        .await
        .unwrap()
        .total
}

async fn reimporting_a_file_merges_instead_of_duplicating(db: &TestDb) {
    let first = vec![
        row(
            "Hélène Dupont",
            Some("C1"),
            Some("helene@example.fr"),
            &["+33612345678"],
        ),
        row(
            "Marc Martin",
            None,
            Some("marc@example.fr"),
            &["+33698765432"],
        ),
        row("Jean Petit", None, None, &["+33611111111"]),
    ];
    let outcome = db.store.upsert_customers_batch(&first).await.unwrap();
    assert_eq!(outcome.inserted, 3);
    assert_eq!(outcome.actions, [UpsertAction::Insert; 3]);
    let ids = outcome.ids.clone();

    let mut helene = row("Hélène Dupont-Durand", Some("C1"), None, &["+33700000001"]);
    helene.tags = vec!["VIP".into()];
    let second = vec![
        helene,
        row("Marc Martin", None, Some("MARC@example.fr"), &[]),
        row("PETIT Jean", None, None, &["+33611111111"]),
        row("Standard ACME", None, None, &["+33155555555"]),
    ];
    let planned = db.store.plan_customers_batch(&second).await.unwrap();
    let outcome = db.store.upsert_customers_batch(&second).await.unwrap();
    assert_eq!(planned, outcome.actions);
    assert_eq!(
        outcome.actions,
        [
            UpsertAction::Update {
                id: ids[0],
                matched_by: MatchedBy::ExternalRef
            },
            UpsertAction::Update {
                id: ids[1],
                matched_by: MatchedBy::Email
            },
            UpsertAction::Update {
                id: ids[2],
                matched_by: MatchedBy::Phone
            },
            UpsertAction::Insert,
        ]
    );
    assert_eq!((outcome.inserted, outcome.updated), (1, 3));
    assert_eq!(&outcome.ids[..3], &ids[..]);
    assert_eq!(count(&db.store).await, 4);

    let helene = db.store.get_customer(ids[0]).await.unwrap();
    assert_eq!(helene.name, "Hélène Dupont-Durand");
    // Values the new row left empty are kept; numbers add up.
    assert_eq!(helene.email.as_deref(), Some("helene@example.fr"));
    assert_eq!(helene.tags, ["VIP"]);
    let numbers: Vec<_> = helene
        .phones
        .iter()
        .filter_map(|p| p.e164.as_deref())
        .collect();
    assert_eq!(numbers, ["+33612345678", "+33700000001"]);
}
store_test!(reimporting_a_file_merges_instead_of_duplicating);

async fn a_shared_switchboard_number_does_not_merge_people(db: &TestDb) {
    let switchboard = "+33144444444";
    let first = vec![row("Jean Dupont", None, None, &[switchboard])];
    db.store.upsert_customers_batch(&first).await.unwrap();
    let second = vec![
        row("Marie Curie", None, None, &[switchboard]),
        row("Paul Langevin", None, None, &[switchboard]),
        // The number now belongs to three people: it decides nothing any more.
        row("Jean Dupont", None, None, &[switchboard]),
    ];
    let outcome = db.store.upsert_customers_batch(&second).await.unwrap();
    assert_eq!(outcome.actions, [UpsertAction::Insert; 3]);
    assert_eq!(count(&db.store).await, 4);
    let matches = db
        .store
        .find_merge_matches(&MergeKeys {
            e164s: vec![switchboard.into()],
            ..MergeKeys::default()
        })
        .await
        .unwrap();
    assert_eq!(matches.by_e164[switchboard].len(), 4);

    // Different external references never merge, even with the same email.
    let refs = vec![
        row("A", Some("R1"), Some("shared@example.fr"), &[]),
        row("B", Some("R2"), Some("shared@example.fr"), &[]),
    ];
    let outcome = db.store.upsert_customers_batch(&refs).await.unwrap();
    assert_eq!(outcome.inserted, 2);
}
store_test!(a_shared_switchboard_number_does_not_merge_people);

/// The store decides as the import decides inside a file (`fiche_model::Identity`):
/// a number shared with someone whose e-mail or company differs is not the same
/// person; a name written the other way round is.
async fn a_shared_number_merges_only_when_nothing_contradicts(db: &TestDb) {
    let family = "+33472000001";
    let mut marie = row("Marie Durand", None, Some("marie@durand.fr"), &[family]);
    marie.company = Some("Boulangerie Durand".into());
    db.store.upsert_customers_batch(&[marie]).await.unwrap();
    let mut garage = row("", None, None, &[family]);
    garage.company = Some("Garage Martin".into());
    let second = vec![
        // Another e-mail behind the family line: another person.
        row("Marie Durand", None, Some("m.durand@gmail.com"), &[family]),
        // Another company behind the number: another customer.
        garage,
        // The same person, name the other way round, new mobile.
        row("DURAND Marie", None, None, &[family, "+33611223344"]),
    ];
    let outcome = db.store.upsert_customers_batch(&second).await.unwrap();
    assert_eq!(outcome.actions[0], UpsertAction::Insert, "{outcome:?}");
    assert_eq!(outcome.actions[1], UpsertAction::Insert, "{outcome:?}");
    // Three holders of the number now: it decides nothing any more.
    assert_eq!(outcome.actions[2], UpsertAction::Insert, "{outcome:?}");
    assert_eq!(count(&db.store).await, 4);

    let other_line = "+33472000002";
    db.store
        .upsert_customers_batch(&[row(
            "Marie Durand",
            None,
            Some("marie@durand.fr"),
            &[other_line],
        )])
        .await
        .unwrap();
    let outcome = db
        .store
        .upsert_customers_batch(&[row("durand marie", None, None, &[other_line])])
        .await
        .unwrap();
    assert!(
        matches!(
            outcome.actions[0],
            UpsertAction::Update {
                matched_by: MatchedBy::Phone,
                ..
            }
        ),
        "{outcome:?}"
    );
}
store_test!(a_shared_number_merges_only_when_nothing_contradicts);

async fn duplicates_inside_one_file_become_one_customer(db: &TestDb) {
    let rows = vec![
        row("Hélène Dupont", Some("C1"), None, &["+33612345678"]),
        row(
            "Hélène Dupont",
            Some("C1"),
            Some("h@example.fr"),
            &["+33700000001"],
        ),
        NewCustomer {
            company: Some("Boulangerie Dupont".into()),
            ..row("", None, Some("H@EXAMPLE.FR"), &[])
        },
        row("hélène dupont", None, None, &["+33700000001"]),
    ];
    let outcome = db.store.upsert_customers_batch(&rows).await.unwrap();
    assert_eq!(outcome.inserted, 1);
    assert_eq!(
        &outcome.actions[1..],
        [
            UpsertAction::MergeIntoRow {
                row: 0,
                matched_by: MatchedBy::ExternalRef
            },
            UpsertAction::MergeIntoRow {
                row: 0,
                matched_by: MatchedBy::Email
            },
            UpsertAction::MergeIntoRow {
                row: 0,
                matched_by: MatchedBy::Phone
            },
        ]
    );
    assert!(outcome.ids.iter().all(|id| *id == outcome.ids[0]));
    let helene = db.store.get_customer(outcome.ids[0]).await.unwrap();
    assert_eq!(helene.name, "hélène dupont");
    assert_eq!(helene.company.as_deref(), Some("Boulangerie Dupont"));
    assert_eq!(helene.email.as_deref(), Some("H@EXAMPLE.FR"));
    assert_eq!(helene.phones.len(), 2);
    assert_eq!(count(&db.store).await, 1);
}
store_test!(duplicates_inside_one_file_become_one_customer);

async fn one_bad_row_writes_nothing(db: &TestDb) {
    let mut rows: Vec<NewCustomer> = (0..50)
        .map(|i| row(&format!("Client {i}"), Some(&format!("R{i}")), None, &[]))
        .collect();
    rows[37].phones = vec![NewPhone {
        e164: Some("+33 6 12".into()),
        raw: "06 12".into(),
        label: None,
    }];
    let err = db.store.upsert_customers_batch(&rows).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid { field: "e164", .. }),
        "{err:?}"
    );
    assert_eq!(count(&db.store).await, 0);

    // An existing external reference inside the batch still merges, never conflicts.
    db.store.create_customer(&dupont()).await.unwrap();
    let again = vec![dupont(), dupont()];
    let outcome = db.store.upsert_customers_batch(&again).await.unwrap();
    assert_eq!((outcome.inserted, outcome.updated), (0, 1));
    assert_eq!(count(&db.store).await, 1);
    assert_eq!(
        db.store
            .get_customer(outcome.ids[0])
            .await
            .unwrap()
            .phones
            .len(),
        2
    );
}
store_test!(one_bad_row_writes_nothing);

async fn large_batches_keep_every_row(db: &TestDb) {
    let rows: Vec<NewCustomer> = (0..2_500)
        .map(|i| {
            let mut customer = row(
                &format!("Client {i}"),
                Some(&format!("R{i}")),
                Some(&format!("client{i}@example.fr")),
                &[&format!("+336{i:08}")],
            );
            customer.phones.push(NewPhone {
                e164: None,
                raw: format!("poste {i}"),
                label: Some("bureau".into()),
            });
            customer
        })
        .collect();
    let outcome = db.store.upsert_customers_batch(&rows).await.unwrap();
    assert_eq!(outcome.inserted, 2_500);
    let mut ids = outcome.ids.clone();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2_500);
    let numbers = db.store.all_phone_numbers().await.unwrap();
    assert_eq!(numbers.len(), 5_000);
    let c = db.store.get_customer(outcome.ids[1234]).await.unwrap();
    assert_eq!(c.external_ref.as_deref(), Some("R1234"));
    assert_eq!(c.phones[0].e164.as_deref(), Some("+33600001234"));
    // The same file again updates every row and adds nothing.
    let again = db.store.upsert_customers_batch(&rows).await.unwrap();
    assert_eq!((again.inserted, again.updated), (0, 2_500));
    assert_eq!(db.store.all_phone_numbers().await.unwrap().len(), 5_000);
}
store_test!(large_batches_keep_every_row);

/// Imports `FICHE_MEASURE_ROWS` (default 1,000,000) customers in batches of 1,000 and
/// prints how long that, reading every number back, and two searches took. Asserts only
/// that every row arrived. Run by hand:
/// `cargo test -p fiche-store --release --test it -- --ignored --nocapture measure`.
async fn measure_import(db: &TestDb) {
    let total: usize = std::env::var("FICHE_MEASURE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let batch_size = 1_000;
    let started = Instant::now();
    for batch in 0..total.div_ceil(batch_size) {
        let rows: Vec<NewCustomer> = (batch * batch_size..((batch + 1) * batch_size).min(total))
            .map(|i| NewCustomer {
                name: format!("Client numéro {i}"),
                company: (i % 3 == 0).then(|| format!("Société {}", i / 3)),
                email: (i % 2 == 0).then(|| format!("client{i}@example.fr")),
                external_ref: Some(format!("EXT-{i}")),
                phones: vec![NewPhone {
                    e164: Some(format!("+336{i:08}")),
                    raw: format!("06 {i:08}"),
                    label: None,
                }],
                ..NewCustomer::default()
            })
            .collect();
        db.store.upsert_customers_batch(&rows).await.unwrap();
    }
    let import = started.elapsed();
    let started = Instant::now();
    let numbers = db.store.all_phone_numbers().await.unwrap();
    let read = started.elapsed();
    assert_eq!(numbers.len(), total);
    let started = Instant::now();
    let by_number = db
        .store
        .search_customers(&CustomerQuery {
            text: Some("06 00 12 34".into()),
            ..CustomerQuery::default()
        })
        .await
        .unwrap();
    let search_number = started.elapsed();
    let started = Instant::now();
    let by_e164 = db
        .store
        .search_customers(&CustomerQuery {
            e164: Some(format!("+336{:08}", total / 2)),
            ..CustomerQuery::default()
        })
        .await
        .unwrap();
    let search_e164 = started.elapsed();
    assert_eq!(by_e164.total, 1);
    println!(
        "{}: upsert_customers_batch of {total} customers (1 phone each, batches of {batch_size}): {import:?}; \
         all_phone_numbers: {read:?}; search by partial number ({} hits): {search_number:?}; \
         search by exact e164: {search_e164:?}",
        db.store.backend_name(),
        by_number.total,
    );
}

#[tokio::test]
#[ignore = "measurement, run by hand in release mode"]
async fn measure_import_on_sqlite() {
    let db = TestDb::sqlite().await;
    measure_import(&db).await;
    db.finish().await;
}

#[tokio::test]
#[ignore = "measurement, run by hand in release mode"]
async fn measure_import_on_postgres() {
    let db = TestDb::postgres().await;
    measure_import(&db).await;
    db.finish().await;
}

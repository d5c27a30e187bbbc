//! The customer file: create, read, search, update, delete, phones.

use fiche_store::{CustomerId, CustomerQuery, NewCustomer, NewPhone, PhoneId, Store, StoreError};

use crate::{store_test, TestDb};

pub(crate) fn phone(e164: &str, raw: &str) -> NewPhone {
    NewPhone {
        e164: Some(e164.to_owned()),
        raw: raw.to_owned(),
        label: None,
    }
}

pub(crate) fn dupont() -> NewCustomer {
    NewCustomer {
        name: "Hélène Dupont".to_owned(),
        company: Some("Boulangerie Dupont & Fils".to_owned()),
        email: Some("helene@dupont.example".to_owned()),
        address: Some("12 rue des Lilas\n75020 Paris".to_owned()),
        notes: Some("Préfère être appelée le matin.".to_owned()),
        tags: vec!["VIP".to_owned(), "boulangerie".to_owned()],
        external_ref: Some("C-0042".to_owned()),
        phones: vec![
            NewPhone {
                e164: Some("+33612345678".to_owned()),
                raw: "06 12 34 56 78".to_owned(),
                label: Some("portable".to_owned()),
            },
            phone("+33143210000", "01.43.21.00.00"),
        ],
    }
}

async fn search(store: &Store, text: &str) -> Vec<CustomerId> {
    store
        .search_customers(&CustomerQuery {
            text: Some(text.to_owned()),
            ..CustomerQuery::default()
        })
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.id)
        .collect()
}

async fn a_customer_reads_back_as_written(db: &TestDb) {
    let created = db.store.create_customer(&dupont()).await.unwrap();
    assert_eq!(created.name, "Hélène Dupont");
    assert_eq!(created.tags, ["VIP", "boulangerie"]);
    assert_eq!(created.phones.len(), 2);
    assert_eq!(created.phones[0].raw, "06 12 34 56 78");
    assert_eq!(created.phones[0].e164.as_deref(), Some("+33612345678"));
    assert_eq!(created.phones[0].label.as_deref(), Some("portable"));
    let read = db.store.get_customer(created.id).await.unwrap();
    assert_eq!(read, created);
    assert!(read.created_at <= read.updated_at);
}
store_test!(a_customer_reads_back_as_written);

async fn untrusted_text_is_stored_exactly(db: &TestDb) {
    let mut customer = dupont();
    customer.name = "<script>alert('x')</script> Œdipe «ÿ» 🙂".to_owned();
    customer.notes = Some("100% \"sûr\"; DROP TABLE customers; --".to_owned());
    let created = db.store.create_customer(&customer).await.unwrap();
    let read = db.store.get_customer(created.id).await.unwrap();
    assert_eq!(read.name, customer.name);
    assert_eq!(read.notes, customer.notes);
}
store_test!(untrusted_text_is_stored_exactly);

async fn search_finds_a_number_in_any_format(db: &TestDb) {
    let helene = db.store.create_customer(&dupont()).await.unwrap().id;
    let mut other = dupont();
    other.name = "Marc Martin".to_owned();
    other.company = None;
    other.email = None;
    other.external_ref = None;
    other.phones = vec![phone("+4930123456", "+49 30 123456")];
    let marc = db.store.create_customer(&other).await.unwrap().id;

    for typed in [
        "0612345678",
        "06 12 34 56 78",
        "06.12.34.56.78",
        "+33 6 12 34 56 78",
        "+33612345678",
        "0033612345678",
        "612345678",
        "06 12 34",
        "01 43 21",
    ] {
        assert_eq!(
            search(&db.store, typed).await,
            [helene],
            "searching {typed:?}"
        );
    }
    assert_eq!(search(&db.store, "030 123456").await, [marc]);
    let by_e164 = db
        .store
        .search_customers(&CustomerQuery {
            e164: Some("+33612345678".to_owned()),
            ..CustomerQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(by_e164.total, 1);
    assert_eq!(by_e164.items[0].id, helene);
    assert!(search(&db.store, "0799999999").await.is_empty());
}
store_test!(search_finds_a_number_in_any_format);

async fn search_matches_name_company_and_email_ignoring_case(db: &TestDb) {
    let helene = db.store.create_customer(&dupont()).await.unwrap().id;
    assert_eq!(search(&db.store, "dupont").await, [helene]);
    assert_eq!(search(&db.store, "BOULANGERIE").await, [helene]);
    assert_eq!(search(&db.store, "helene@dupont").await, [helene]);
    assert_eq!(search(&db.store, "Hélène").await, [helene]);
    assert!(search(&db.store, "durand").await.is_empty());
    // LIKE wildcards typed by a user are plain characters.
    assert!(search(&db.store, "%").await.is_empty());
    assert!(search(&db.store, "_").await.is_empty());
    assert_eq!(search(&db.store, "& Fils").await, [helene]);
}
store_test!(search_matches_name_company_and_email_ignoring_case);

async fn search_pages_are_ordered_by_name(db: &TestDb) {
    for i in (0..25).rev() {
        db.store
            .create_customer(&NewCustomer {
                name: format!("Client {i:02}"),
                ..NewCustomer::default()
            })
            .await
            .unwrap();
    }
    let page = db
        .store
        .search_customers(&CustomerQuery {
            text: Some("client".to_owned()),
            limit: 10,
            offset: 20,
            ..CustomerQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.total, 25);
    let names: Vec<&str> = page.items.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Client 20",
            "Client 21",
            "Client 22",
            "Client 23",
            "Client 24"
        ]
    );
    let all = db
        .store
        .search_customers(&CustomerQuery::default())
        .await
        .unwrap();
    assert_eq!(all.total, 25);
    assert_eq!(all.items.len(), 25);
    assert_eq!(all.items[0].name, "Client 00");
}
store_test!(search_pages_are_ordered_by_name);

async fn duplicate_external_ref_is_refused_naming_the_field(db: &TestDb) {
    db.store.create_customer(&dupont()).await.unwrap();
    let mut again = dupont();
    again.phones.clear();
    let err = db.store.create_customer(&again).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                field: "external_ref",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("external_ref"));
    // Nothing half-written: still one customer.
    assert_eq!(
        db.store
            .search_customers(&CustomerQuery::default())
            .await
            .unwrap()
            .total,
        1
    );
}
store_test!(duplicate_external_ref_is_refused_naming_the_field);

async fn bad_input_is_refused_naming_the_field(db: &TestDb) {
    type Spoil = fn(&mut NewCustomer);
    let cases: [(&str, Spoil); 5] = [
        ("name", |c| {
            c.name = "  ".into();
            c.company = None;
        }),
        ("email", |c| c.email = Some("not an email".into())),
        ("e164", |c| c.phones[0].e164 = Some("0612345678".into())),
        ("raw", |c| c.phones = vec![NewPhone::default()]),
        ("notes", |c| c.notes = Some("x".repeat(70_000))),
    ];
    for (field, spoil) in cases {
        let mut customer = dupont();
        spoil(&mut customer);
        let err = db.store.create_customer(&customer).await.unwrap_err();
        match err {
            StoreError::Invalid { field: f, .. } => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
        assert!(customer.validate().is_err());
    }
    // A company alone is a customer; empty strings count as absent.
    let company_only = db
        .store
        .create_customer(&NewCustomer {
            name: String::new(),
            company: Some("ACME".into()),
            email: Some("  ".into()),
            ..NewCustomer::default()
        })
        .await
        .unwrap();
    assert_eq!(company_only.email, None);
}
store_test!(bad_input_is_refused_naming_the_field);

async fn deleting_a_customer_deletes_its_phones(db: &TestDb) {
    let helene = db.store.create_customer(&dupont()).await.unwrap();
    let mut other = dupont();
    other.external_ref = None;
    other.phones = vec![phone("+33700000001", "07 00 00 00 01")];
    let other = db.store.create_customer(&other).await.unwrap();
    assert_eq!(db.store.all_phone_numbers().await.unwrap().len(), 3);

    db.store.delete_customer(helene.id).await.unwrap();
    let left = db.store.all_phone_numbers().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].customer_id, other.id);
    assert!(matches!(
        db.store.get_customer(helene.id).await,
        Err(StoreError::NotFound {
            entity: "customer",
            ..
        })
    ));
    assert!(matches!(
        db.store.delete_customer(helene.id).await,
        Err(StoreError::NotFound {
            entity: "customer",
            ..
        })
    ));
    assert!(search(&db.store, "0612345678").await.is_empty());
}
store_test!(deleting_a_customer_deletes_its_phones);

async fn phones_are_added_and_removed(db: &TestDb) {
    let helene = db.store.create_customer(&dupont()).await.unwrap();
    let added = db
        .store
        .add_phone(
            helene.id,
            &NewPhone {
                e164: None,
                raw: "poste 12 (standard)".into(),
                label: Some("bureau".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(added.customer_id, helene.id);
    assert_eq!(
        db.store.get_customer(helene.id).await.unwrap().phones.len(),
        3
    );

    let err = db
        .store
        .add_phone(helene.id, &phone("+33612345678", "0612345678"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { field: "e164", .. }),
        "{err:?}"
    );

    let err = db
        .store
        .add_phone(CustomerId(999_999), &phone("+33612345678", "0612345678"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotFound {
                entity: "customer",
                ..
            }
        ),
        "{err:?}"
    );

    db.store.remove_phone(helene.id, added.id).await.unwrap();
    let phones = db.store.get_customer(helene.id).await.unwrap().phones;
    assert_eq!(phones.len(), 2);
    assert!(matches!(
        db.store.remove_phone(helene.id, PhoneId(999_999)).await,
        Err(StoreError::NotFound {
            entity: "phone",
            ..
        })
    ));
}
store_test!(phones_are_added_and_removed);

async fn an_update_replaces_fields_and_numbers(db: &TestDb) {
    let helene = db.store.create_customer(&dupont()).await.unwrap();
    let mut changed = dupont();
    changed.company = None;
    changed.tags = vec!["fidèle".into()];
    changed.phones = vec![
        NewPhone {
            e164: Some("+33612345678".into()),
            raw: "+33 6 12 34 56 78".into(),
            label: Some("perso".into()),
        },
        phone("+33700000002", "07 00 00 00 02"),
    ];
    let updated = db.store.update_customer(helene.id, &changed).await.unwrap();
    assert_eq!(updated.company, None);
    assert_eq!(updated.tags, ["fidèle"]);
    assert_eq!(updated.phones.len(), 2);
    // The unchanged number kept its id, with the new spelling and label.
    assert_eq!(updated.phones[0].id, helene.phones[0].id);
    assert_eq!(updated.phones[0].raw, "+33 6 12 34 56 78");
    assert_eq!(updated.phones[0].label.as_deref(), Some("perso"));
    assert_eq!(updated.phones[1].e164.as_deref(), Some("+33700000002"));
    assert!(search(&db.store, "01 43 21").await.is_empty());
    assert!(updated.updated_at >= helene.updated_at);

    let err = db
        .store
        .update_customer(CustomerId(999_999), &changed)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::NotFound {
            entity: "customer",
            ..
        }
    ));
}
store_test!(an_update_replaces_fields_and_numbers);

async fn migrations_applied_twice_change_nothing(db: &TestDb) {
    let helene = db.store.create_customer(&dupont()).await.unwrap();
    db.store.migrate().await.unwrap();
    // A second process starting on the same database migrates too.
    let second = Store::connect(&db.url).await.unwrap();
    second.migrate().await.unwrap();
    assert_eq!(second.get_customer(helene.id).await.unwrap(), helene);
    second.close().await;
}
store_test!(migrations_applied_twice_change_nothing);

async fn all_phone_numbers_lists_every_number(db: &TestDb) {
    let helene = db.store.create_customer(&dupont()).await.unwrap();
    let mut entries = db.store.all_phone_numbers().await.unwrap();
    entries.sort_by(|a, b| a.raw.cmp(&b.raw));
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].raw, "01.43.21.00.00");
    assert_eq!(entries[1].e164.as_deref(), Some("+33612345678"));
    assert!(entries.iter().all(|e| e.customer_id == helene.id));
    assert!(entries.iter().all(|e| e.last_contact_at.is_none()));
}
store_test!(all_phone_numbers_lists_every_number);

#[tokio::test]
async fn a_bad_url_is_refused_without_revealing_the_password() {
    let err = Store::connect("mysql://root:hunter2@localhost/fiche")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Url(_)));
    let message = err.to_string();
    assert!(!message.contains("hunter2"), "{message}");
    assert!(message.contains("root:***@localhost"), "{message}");
}

#[tokio::test]
async fn the_sqlite_file_is_created_on_first_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fiche.db");
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store.close().await;
    assert!(path.exists());
    let again = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    again.migrate().await.unwrap();
    again.close().await;
}

async fn concurrent_writers_all_succeed(db: &TestDb) {
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut customer = dupont();
            customer.external_ref = Some(format!("C-{i}"));
            customer.phones = vec![phone(&format!("+3361000{i:04}"), "x")];
            store.create_customer(&customer).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(db.store.all_phone_numbers().await.unwrap().len(), 20);
}
store_test!(concurrent_writers_all_succeed);

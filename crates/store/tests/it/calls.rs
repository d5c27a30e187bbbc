//! The call log: idempotent upserts keyed by (source, source_key).

use chrono::{DateTime, Duration, Utc};
use fiche_model::{CallId, Direction, Extension, Outcome, Source, Transfer, TransferKind};
use fiche_store::{Call, CallUpsert, CustomerId, StoreError};

use crate::customers::dupont;
use crate::{store_test, TestDb};

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_790_000_000 + seconds, 123_456_000).unwrap()
}

fn ringing(key: &str, customer_id: Option<CustomerId>) -> Call {
    Call {
        id: CallId::from_source_key(Source::Hep, key),
        source: Source::Hep,
        source_key: key.to_owned(),
        direction: Direction::Inbound,
        caller_number: Some("0612345678".into()),
        caller_name: Some("<b>Hélène</b>".into()),
        caller_withheld: false,
        callee_number: Some("201".into()),
        remote_e164: Some("+33612345678".into()),
        agent_extension: None,
        rang: Vec::new(),
        answered_by: None,
        transfers: Vec::new(),
        queue: None,
        customer_id,
        started_at: at(0),
        answered_at: None,
        ended_at: None,
        outcome: None,
        cause: None,
    }
}

async fn replaying_a_call_never_duplicates_it(db: &TestDb) {
    let helene = db.store.create_customer(&dupont()).await.unwrap();
    let start = ringing("a84b4c76e66710@pc33.atlanta.example", Some(helene.id));
    assert_eq!(
        db.store.upsert_call(&start).await.unwrap(),
        CallUpsert::Inserted
    );
    assert_eq!(
        db.store.upsert_call(&start).await.unwrap(),
        CallUpsert::Updated
    );

    // Answer and end arrive later, each with only what it knows.
    let mut answered = start.clone();
    answered.caller_name = None;
    answered.agent_extension = Some("201".into());
    answered.answered_at = Some(at(5));
    answered.started_at = at(3);
    db.store.upsert_call(&answered).await.unwrap();
    let mut ended = start.clone();
    ended.caller_name = None;
    ended.ended_at = Some(at(65));
    ended.outcome = Some(Outcome::Answered);
    ended.cause = Some("200 OK, BYE from caller".into());
    db.store.upsert_call(&ended).await.unwrap();
    // A replay of the start after the end changes nothing that was learnt.
    assert_eq!(
        db.store.upsert_call(&start).await.unwrap(),
        CallUpsert::Updated
    );

    let stored = db.store.get_call(start.id).await.unwrap().unwrap();
    assert_eq!(stored.caller_name.as_deref(), Some("<b>Hélène</b>"));
    assert_eq!(stored.agent_extension.as_deref(), Some("201"));
    assert_eq!(stored.started_at, at(0));
    assert_eq!(stored.answered_at, Some(at(5)));
    assert_eq!(stored.ended_at, Some(at(65)));
    assert_eq!(stored.outcome, Some(Outcome::Answered));
    assert_eq!(stored.customer_id, Some(helene.id));

    let customer = db.store.get_customer(helene.id).await.unwrap();
    assert_eq!(customer.last_contact_at, Some(at(0)));
    let numbers = db.store.all_phone_numbers().await.unwrap();
    assert!(numbers.iter().all(|n| n.last_contact_at == Some(at(0))));
}
store_test!(replaying_a_call_never_duplicates_it);

async fn who_took_the_call_is_kept_in_the_log(db: &TestDb) {
    let start = ringing("who-took-it", None);
    db.store.upsert_call(&start).await.unwrap();
    let mut answered = start.clone();
    answered.rang = vec!["201".into(), "202".into()];
    answered.answered_by = Some("202".into());
    db.store.upsert_call(&answered).await.unwrap();
    let mut ended = start.clone();
    ended.rang = vec!["201".into(), "202".into(), "203".into()];
    ended.transfers = vec![Transfer {
        kind: TransferKind::Blonde,
        by: Extension::new("202"),
        transferee: Extension::new("0612345678"),
        to: Extension::new("203"),
    }];
    ended.ended_at = Some(at(90));
    ended.outcome = Some(Outcome::Answered);
    db.store.upsert_call(&ended).await.unwrap();
    // A write that knows nothing of the parties (a replayed start) keeps them.
    db.store.upsert_call(&start).await.unwrap();

    let stored = db.store.get_call(start.id).await.unwrap().unwrap();
    assert_eq!(stored.rang, ["201", "202", "203"]);
    assert_eq!(stored.answered_by.as_deref(), Some("202"));
    assert_eq!(stored.transfers, ended.transfers);
    let (_, log) = db
        .store
        .list_calls(&fiche_store::CallQuery::default())
        .await
        .unwrap();
    let logged = log.iter().find(|c| c.id == start.id).unwrap();
    assert_eq!(logged.answered_by.as_deref(), Some("202"));
    assert_eq!(logged.transfers.len(), 1);
    assert_eq!(logged.transfers[0].to.as_deref(), Some("203"));
}
store_test!(who_took_the_call_is_kept_in_the_log);

async fn the_same_key_from_two_sources_is_two_calls(db: &TestDb) {
    let hep = ringing("1699999999.42", None);
    let mut ami = hep.clone();
    ami.source = Source::Ami;
    ami.id = CallId::from_source_key(Source::Ami, "1699999999.42");
    assert_eq!(
        db.store.upsert_call(&hep).await.unwrap(),
        CallUpsert::Inserted
    );
    assert_eq!(
        db.store.upsert_call(&ami).await.unwrap(),
        CallUpsert::Inserted
    );
    assert!(db.store.get_call(hep.id).await.unwrap().is_some());
    assert!(db.store.get_call(ami.id).await.unwrap().is_some());
}
store_test!(the_same_key_from_two_sources_is_two_calls);

async fn a_call_with_a_foreign_id_or_unknown_customer_is_refused(db: &TestDb) {
    let mut call = ringing("k1", None);
    call.id = CallId::from_source_key(Source::Hep, "another key");
    assert!(matches!(
        db.store.upsert_call(&call).await,
        Err(StoreError::Invalid { field: "id", .. })
    ));
    let call = ringing("k2", Some(CustomerId(424_242)));
    let err = db.store.upsert_call(&call).await.unwrap_err();
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
    assert!(db.store.get_call(call.id).await.unwrap().is_none());
}
store_test!(a_call_with_a_foreign_id_or_unknown_customer_is_refused);

async fn a_stranger_chosen_display_name_is_bounded_not_refused(db: &TestDb) {
    let mut call = ringing("long-name", None);
    call.caller_name = Some(format!("{}\0end", "é".repeat(10_000)));
    db.store.upsert_call(&call).await.unwrap();
    let stored = db.store.get_call(call.id).await.unwrap().unwrap();
    let name = stored.caller_name.unwrap();
    assert_eq!(name.chars().count(), 256);
    assert!(!name.contains('\0'));
}
store_test!(a_stranger_chosen_display_name_is_bounded_not_refused);

async fn a_deleted_customer_leaves_the_call_log_intact(db: &TestDb) {
    let helene = db.store.create_customer(&dupont()).await.unwrap();
    let call = ringing("kept", Some(helene.id));
    db.store.upsert_call(&call).await.unwrap();
    db.store.delete_customer(helene.id).await.unwrap();
    let stored = db.store.get_call(call.id).await.unwrap().unwrap();
    assert_eq!(stored.customer_id, None);
    assert_eq!(stored.started_at, at(0));
    let later = Utc::now() + Duration::days(1);
    assert!(stored.started_at < later);
}
store_test!(a_deleted_customer_leaves_the_call_log_intact);

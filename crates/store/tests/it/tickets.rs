//! Tickets: the minimum the hub builds on.

use chrono::{DateTime, Utc};
use fiche_model::{CallId, Direction, Source};
use fiche_store::{
    Call, NewTicket, NewTicketEvent, StoreError, TicketId, TicketKind, TicketStatus,
};

use crate::customers::dupont;
use crate::{store_test, TestDb};

fn missed_call(key: &str) -> Call {
    Call {
        id: CallId::from_source_key(Source::Ami, key),
        source: Source::Ami,
        source_key: key.to_owned(),
        direction: Direction::Inbound,
        caller_number: Some("0612345678".into()),
        caller_name: None,
        caller_withheld: false,
        callee_number: Some("600".into()),
        remote_e164: Some("+33612345678".into()),
        agent_extension: None,
        rang: Vec::new(),
        answered_by: None,
        transfers: Vec::new(),
        queue: Some("support".into()),
        customer_id: None,
        started_at: Utc::now(),
        answered_at: None,
        ended_at: None,
        outcome: None,
        cause: None,
    }
}

async fn a_missed_call_makes_one_callback_ticket(db: &TestDb) {
    let helene = db.store.create_customer(&dupont()).await.unwrap();
    let call = missed_call("1700000000.1");
    db.store.upsert_call(&call).await.unwrap();
    let due = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let new = NewTicket {
        call_id: Some(call.id),
        customer_id: Some(helene.id),
        phone_e164: Some("+33612345678".into()),
        kind: TicketKind::Callback,
        status: TicketStatus::Open,
        subject: "À rappeler".into(),
        reason: None,
        priority: 1,
        assignee_user_id: None,
        assignee_group: Some("support".into()),
        queue: Some("support".into()),
        due_at: Some(due),
    };
    let ticket = db.store.insert_ticket(&new).await.unwrap();
    assert_eq!(ticket.attempts, 1);
    assert_eq!(
        ticket.queue.as_deref(),
        Some("support"),
        "the queue the call came through"
    );
    assert_eq!(ticket.due_at, Some(due));
    assert_eq!(ticket.closed_at, None);
    assert_eq!(db.store.get_ticket(ticket.id).await.unwrap(), ticket);

    let err = db.store.insert_ticket(&new).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                field: "call_id",
                ..
            }
        ),
        "{err:?}"
    );

    let second = missed_call("1700000000.2");
    db.store.upsert_call(&second).await.unwrap();
    let event = db
        .store
        .add_ticket_event(&NewTicketEvent {
            ticket_id: ticket.id,
            author_user_id: None,
            kind: "call".into(),
            call_id: Some(second.id),
            body: serde_json::json!({"attempt": 2, "note": "<i>rappelle</i>"}),
        })
        .await
        .unwrap();
    let events = db.store.ticket_events(ticket.id).await.unwrap();
    assert_eq!(events, [event]);
    assert_eq!(events[0].body["note"], "<i>rappelle</i>");
    assert_eq!(events[0].call_id, Some(second.id));

    assert!(matches!(
        db.store.get_ticket(TicketId(999)).await,
        Err(StoreError::NotFound {
            entity: "ticket",
            ..
        })
    ));
    let err = db
        .store
        .add_ticket_event(&NewTicketEvent {
            ticket_id: TicketId(999),
            author_user_id: None,
            kind: "note".into(),
            call_id: None,
            body: serde_json::json!({}),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotFound {
                entity: "ticket",
                ..
            }
        ),
        "{err:?}"
    );
}
store_test!(a_missed_call_makes_one_callback_ticket);

/// History written after the fact (the demo's company) carries its own dates.
async fn a_ticket_is_dated_back_with_its_notes(db: &TestDb) {
    let helene = db.store.create_customer(&dupont()).await.unwrap();
    let call = missed_call("1700000000.7");
    db.store.upsert_call(&call).await.unwrap();
    let ticket = db
        .store
        .insert_ticket(&NewTicket {
            call_id: Some(call.id),
            customer_id: Some(helene.id),
            phone_e164: Some("+33612345678".into()),
            kind: TicketKind::Call,
            status: TicketStatus::Closed,
            subject: "Entretien".into(),
            reason: None,
            priority: 0,
            assignee_user_id: None,
            assignee_group: None,
            queue: None,
            due_at: None,
        })
        .await
        .unwrap();
    db.store
        .add_ticket_event(&NewTicketEvent {
            ticket_id: ticket.id,
            author_user_id: None,
            kind: "note".into(),
            call_id: None,
            body: serde_json::json!({ "text": "fait" }),
        })
        .await
        .unwrap();
    let then = DateTime::from_timestamp(1_760_000_000, 0).unwrap();
    db.store.backdate_ticket(ticket.id, then).await.unwrap();
    let dated = db.store.get_ticket(ticket.id).await.unwrap();
    assert_eq!(
        (dated.created_at, dated.updated_at, dated.closed_at),
        (then, then, Some(then))
    );
    let events = db.store.ticket_events(ticket.id).await.unwrap();
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e.at == then), "{events:?}");
    assert!(matches!(
        db.store.backdate_ticket(TicketId(999), then).await,
        Err(StoreError::NotFound { .. })
    ));
}
store_test!(a_ticket_is_dated_back_with_its_notes);

/// The outcomes of cloud phone systems: a voicemail (a missed call) and a call
/// forwarded out (handled elsewhere) are stored and read back as such.
async fn voicemail_and_forwarded_calls_are_stored(db: &TestDb) {
    for (key, outcome) in [
        ("vm.1", fiche_model::Outcome::Voicemail),
        ("fw.1", fiche_model::Outcome::Forwarded),
    ] {
        let mut call = missed_call(key);
        call.ended_at = Some(Utc::now());
        call.outcome = Some(outcome);
        db.store.upsert_call(&call).await.unwrap();
        let stored = db.store.get_call(call.id).await.unwrap().unwrap();
        assert_eq!(stored.outcome, Some(outcome));
        assert_eq!(stored.queue.as_deref(), Some("support"));
    }
}

store_test!(voicemail_and_forwarded_calls_are_stored);

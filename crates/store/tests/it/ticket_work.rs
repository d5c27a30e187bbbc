//! Ticket work queries: lists, updates, merged callbacks, auto-close, call log, KPIs.

use chrono::{DateTime, Duration, FixedOffset, Utc};
use fiche_model::{CallId, Direction, Outcome, Source};
use fiche_store::{
    Assignee, Call, CallQuery, DraftSaved, NewTicket, TicketDraft, TicketKind, TicketPatch,
    TicketQuery, TicketStatus,
};

use crate::customers::dupont;
use crate::{store_test, TestDb};

fn call(key: &str, direction: Direction, started_at: DateTime<Utc>) -> Call {
    Call {
        id: CallId::from_source_key(Source::Hep, key),
        source: Source::Hep,
        source_key: key.to_owned(),
        direction,
        caller_number: Some("0612345678".into()),
        caller_name: None,
        caller_withheld: false,
        callee_number: Some("201".into()),
        remote_e164: Some("+33612345678".into()),
        agent_extension: None,
        rang: Vec::new(),
        answered_by: None,
        transfers: Vec::new(),
        queue: None,
        customer_id: None,
        started_at,
        answered_at: None,
        ended_at: None,
        outcome: None,
        cause: None,
    }
}

fn callback(call_id: CallId, due_at: DateTime<Utc>) -> NewTicket {
    NewTicket {
        call_id: Some(call_id),
        customer_id: None,
        phone_e164: Some("+33612345678".into()),
        kind: TicketKind::Callback,
        status: TicketStatus::Open,
        subject: "À rappeler".into(),
        reason: None,
        priority: 0,
        assignee_user_id: None,
        assignee_group: Some("accueil".into()),
        queue: None,
        due_at: Some(due_at),
    }
}

async fn missed_calls_merge_and_a_reached_customer_closes_the_callback(db: &TestDb) {
    let start = Utc::now() - Duration::minutes(90);
    let first = call("m1", Direction::Inbound, start);
    let second = call("m2", Direction::Inbound, start + Duration::minutes(5));
    let reached = call("out1", Direction::Outbound, start + Duration::minutes(20));
    for c in [&first, &second, &reached] {
        db.store.upsert_call(c).await.unwrap();
    }
    let ticket = db
        .store
        .insert_ticket(&callback(first.id, start + Duration::minutes(30)))
        .await
        .unwrap();
    let open = db
        .store
        .open_callback_for_phone("+33612345678")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(open.id, ticket.id);

    let merged = db
        .store
        .link_call(ticket.id, second.id, "attempt", serde_json::json!({}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(merged.attempts, 2);
    // Replaying the same attempt changes nothing.
    assert!(db
        .store
        .link_call(ticket.id, second.id, "attempt", serde_json::json!({}))
        .await
        .unwrap()
        .is_none());
    assert_eq!(db.store.get_ticket(ticket.id).await.unwrap().attempts, 2);
    assert_eq!(
        db.store
            .ticket_for_call(second.id)
            .await
            .unwrap()
            .unwrap()
            .id,
        ticket.id
    );

    let closed = db
        .store
        .close_callbacks_reached("+33612345678", reached.id)
        .await
        .unwrap();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].status, TicketStatus::Closed);
    assert!(closed[0].closed_at.is_some());
    assert!(db
        .store
        .open_callback_for_phone("+33612345678")
        .await
        .unwrap()
        .is_none());
    let events = db.store.ticket_events(ticket.id).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["attempt", "reached"]);
    assert_eq!(events[1].call_id, Some(reached.id));
    assert_eq!(
        db.store.ticket_call_ids(ticket.id).await.unwrap(),
        [first.id, second.id, reached.id]
    );
}
store_test!(missed_calls_merge_and_a_reached_customer_closes_the_callback);

async fn lists_filter_and_put_overdue_callbacks_first(db: &TestDb) {
    let helene = db.store.create_customer(&dupont()).await.unwrap();
    let now = Utc::now();
    let a = call("a", Direction::Inbound, now - Duration::hours(2));
    let b = call("b", Direction::Inbound, now - Duration::hours(1));
    let c = call("c", Direction::Outbound, now);
    for x in [&a, &b, &c] {
        db.store.upsert_call(x).await.unwrap();
    }
    let later = db
        .store
        .insert_ticket(&NewTicket {
            phone_e164: Some("+33600000001".into()),
            ..callback(a.id, now + Duration::hours(1))
        })
        .await
        .unwrap();
    let overdue = db
        .store
        .insert_ticket(&NewTicket {
            phone_e164: Some("+33600000002".into()),
            ..callback(b.id, now - Duration::minutes(10))
        })
        .await
        .unwrap();
    let call_ticket = db
        .store
        .insert_ticket(&NewTicket {
            call_id: Some(c.id),
            customer_id: Some(helene.id),
            phone_e164: None,
            kind: TicketKind::Call,
            status: TicketStatus::Open,
            subject: "Commande de pain".into(),
            reason: None,
            priority: 0,
            assignee_user_id: None,
            assignee_group: None,
            queue: None,
            due_at: None,
        })
        .await
        .unwrap();
    let (total, all) = db
        .store
        .list_tickets(&TicketQuery::default())
        .await
        .unwrap();
    assert_eq!(total, 3);
    let ids: Vec<_> = all.iter().map(|t| t.id).collect();
    assert_eq!(ids, [overdue.id, later.id, call_ticket.id]);

    let (total, items) = db
        .store
        .list_tickets(&TicketQuery {
            overdue_at: Some(now),
            ..TicketQuery::default()
        })
        .await
        .unwrap();
    assert_eq!((total, items[0].id), (1, overdue.id));

    let (_, by_name) = db
        .store
        .list_tickets(&TicketQuery {
            q: Some("hélène".into()),
            ..TicketQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(by_name.len(), 1);
    assert_eq!(by_name[0].id, call_ticket.id);

    let (total, page) = db
        .store
        .list_tickets(&TicketQuery {
            kind: Some(TicketKind::Callback),
            assignee: Some(Assignee::Group),
            limit: 1,
            offset: 1,
            ..TicketQuery::default()
        })
        .await
        .unwrap();
    assert_eq!((total, page.len(), page[0].id), (2, 1, later.id));

    let updated = db
        .store
        .update_ticket(
            call_ticket.id,
            &TicketPatch {
                status: Some(TicketStatus::Closed),
                reason: Some(Some("commande".into())),
                priority: Some(2),
                ..TicketPatch::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(updated.status, TicketStatus::Closed);
    assert_eq!(updated.reason.as_deref(), Some("commande"));
    assert_eq!(updated.priority, 2);
    assert!(updated.closed_at.is_some());
    let events = db.store.ticket_events(call_ticket.id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "status");
    let (total, _) = db
        .store
        .list_tickets(&TicketQuery {
            status: Some(TicketStatus::Open),
            ..TicketQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(total, 2);
}
store_test!(lists_filter_and_put_overdue_callbacks_first);

async fn figures_and_call_log_cover_the_range(db: &TestDb) {
    let day = DateTime::parse_from_rfc3339("2026-11-20T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let at = |h: i64, m: i64| day + Duration::hours(h) + Duration::minutes(m);
    let mut answered = call("ans", Direction::Inbound, at(9, 0));
    answered.answered_at = Some(at(9, 0) + Duration::seconds(10));
    answered.ended_at = Some(at(9, 0) + Duration::seconds(130));
    answered.outcome = Some(Outcome::Answered);
    answered.agent_extension = Some("201".into());
    let mut missed = call("mis", Direction::Inbound, at(9, 30));
    missed.ended_at = Some(at(9, 31));
    missed.outcome = Some(Outcome::Missed);
    missed.remote_e164 = Some("+33699999999".into());
    let mut out = call("out", Direction::Outbound, at(14, 0));
    out.outcome = Some(Outcome::Busy);
    out.ended_at = Some(at(14, 1));
    let other_day = call("old", Direction::Inbound, at(-5, 0));
    // Still ringing when the figures are read: neither answered nor missed yet.
    let ringing = call("rng", Direction::Inbound, at(11, 59));
    for c in [&answered, &missed, &out, &other_day, &ringing] {
        db.store.upsert_call(c).await.unwrap();
    }
    db.store
        .insert_ticket(&NewTicket {
            phone_e164: Some("+33699999999".into()),
            ..callback(missed.id, at(10, 0))
        })
        .await
        .unwrap();
    let kpis = db
        .store
        .kpis(
            day,
            day + Duration::days(1),
            at(12, 0),
            FixedOffset::east_opt(3600).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!((kpis.calls_in, kpis.calls_out, kpis.missed), (3, 1, 1));
    assert_eq!(
        kpis.answered_rate,
        Some(0.5),
        "answered / (answered + missed): the ringing call counts in neither"
    );
    assert_eq!(kpis.missed_not_called_back, 1);
    assert_eq!(kpis.overdue_callbacks, 1);
    assert_eq!(kpis.oldest_overdue_due_at, Some(at(10, 0)));
    assert_eq!(kpis.average_wait_secs, Some(10.0));
    assert_eq!(kpis.average_duration_secs, Some(120.0));
    assert_eq!(kpis.open_tickets, 1);
    // Local time is UTC+1: 09:00Z counts in hour 10.
    assert_eq!(kpis.calls_per_hour[10], 2);
    assert_eq!(kpis.calls_per_hour[15], 1);
    assert_eq!(kpis.calls_per_hour[12], 1);
    assert_eq!(kpis.calls_per_hour.iter().sum::<u32>(), 4);

    let (total, calls) = db
        .store
        .list_calls(&CallQuery {
            from: Some(day),
            to: Some(day + Duration::days(1)),
            direction: Some(Direction::Inbound),
            ..CallQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(total, 3);
    assert_eq!(calls[0].id, ringing.id, "newest first");
    let (total, calls) = db
        .store
        .list_calls(&CallQuery {
            agent: Some("201".into()),
            outcome: Some(Outcome::Answered),
            ..CallQuery::default()
        })
        .await
        .unwrap();
    assert_eq!((total, calls[0].id), (1, answered.id));
    // An agent's own log: the calls handled at any of her extensions, none without one.
    for (extensions, expected) in [(vec!["209", "201"], 1), (vec!["209"], 0), (vec![], 0)] {
        let (total, _) = db
            .store
            .list_calls(&CallQuery {
                agent_in: Some(extensions.iter().map(|e| (*e).to_owned()).collect()),
                direction: Some(Direction::Inbound),
                ..CallQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(total, expected, "{extensions:?}");
    }
    let (total, _) = db
        .store
        .list_calls(&CallQuery {
            number: Some("+33699999999".into()),
            ..CallQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(total, 1);
}
store_test!(figures_and_call_log_cover_the_range);

async fn a_batch_of_writes_commits_together_or_not_at_all(db: &TestDb) {
    let start = Utc::now() - Duration::minutes(10);
    let first = call("b1", Direction::Inbound, start);
    let second = call("b2", Direction::Inbound, start + Duration::minutes(1));

    // Rolled back: neither the calls nor the ticket nor the attempt remain.
    let mut tx = db.store.begin_tickets().await.unwrap();
    tx.upsert_call(&first).await.unwrap();
    tx.upsert_call(&second).await.unwrap();
    let ticket = tx
        .insert_ticket(&callback(first.id, start))
        .await
        .unwrap()
        .unwrap();
    tx.link_call(ticket.id, second.id, "attempt", serde_json::json!({}))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(db.store.get_call(first.id).await.unwrap().is_none());
    assert!(db.store.ticket_for_call(first.id).await.unwrap().is_none());

    // Committed: all of it, and a second ticket for the same call inside the same
    // transaction is skipped without spoiling the rest (PostgreSQL would abort the
    // transaction on a unique violation).
    let mut tx = db.store.begin_tickets().await.unwrap();
    tx.upsert_call(&first).await.unwrap();
    tx.upsert_call(&second).await.unwrap();
    let ticket = tx
        .insert_ticket(&callback(first.id, start))
        .await
        .unwrap()
        .unwrap();
    assert!(tx
        .insert_ticket(&callback(first.id, start))
        .await
        .unwrap()
        .is_none());
    let merged = tx
        .link_call(ticket.id, second.id, "attempt", serde_json::json!({}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(merged.attempts, 2);
    // Reads inside the transaction see its own writes.
    assert_eq!(
        tx.ticket_for_call(second.id).await.unwrap().unwrap().id,
        ticket.id
    );
    tx.commit().await.unwrap();
    let stored = db.store.ticket_for_call(second.id).await.unwrap().unwrap();
    assert_eq!(stored.id, ticket.id);
    assert_eq!(stored.attempts, 2);
    // Outside a batch, the duplicate is still a conflict.
    assert!(matches!(
        db.store.insert_ticket(&callback(first.id, start)).await,
        Err(fiche_store::StoreError::Conflict { .. })
    ));
}
store_test!(a_batch_of_writes_commits_together_or_not_at_all);

fn note(text: &str) -> TicketDraft {
    TicketDraft {
        note: Some(text.into()),
        ..Default::default()
    }
}

async fn a_note_saved_while_ringing_lands_once_on_the_calls_ticket(db: &TestDb) {
    let start = Utc::now() - Duration::minutes(5);
    let ringing = call("r1", Direction::Inbound, start);
    // Saved before the writer has even stored the call.
    let saved = db
        .store
        .save_call_draft(ringing.id, &note("Rappeler pour le devis"), None)
        .await
        .unwrap();
    assert_eq!(saved, DraftSaved::Held);
    let reason = TicketDraft {
        reason: Some("order".into()),
        priority: Some(2),
        ..Default::default()
    };
    db.store
        .save_call_draft(ringing.id, &reason, None)
        .await
        .unwrap();
    assert_eq!(db.store.call_drafts(ringing.id).await.unwrap().len(), 2);

    // The writer gives the call its ticket and takes the drafts in the same batch.
    let mut tx = db.store.begin_tickets().await.unwrap();
    tx.upsert_call(&ringing).await.unwrap();
    let mut new = callback(ringing.id, start);
    new.kind = TicketKind::Call;
    let ticket = tx.insert_ticket(&new).await.unwrap().unwrap();
    tx.lock_call(ringing.id).await.unwrap();
    let settled = tx.apply_drafts(ringing.id, &ticket).await.unwrap().unwrap();
    assert_eq!(settled.reason.as_deref(), Some("order"));
    assert_eq!(settled.priority, 2);
    // Nothing left to apply a second time.
    assert!(tx
        .apply_drafts(ringing.id, &settled)
        .await
        .unwrap()
        .is_none());
    tx.commit().await.unwrap();
    assert!(db.store.call_drafts(ringing.id).await.unwrap().is_empty());
    let notes: Vec<_> = db
        .store
        .ticket_events(ticket.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "note")
        .collect();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].body["text"], "Rappeler pour le devis");

    // Once the ticket exists, a save changes it at once.
    let saved = db
        .store
        .save_call_draft(
            ringing.id,
            &TicketDraft {
                note: Some("Devis envoyé".into()),
                status: Some(TicketStatus::Closed),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let DraftSaved::Applied(closed) = saved else {
        panic!("not applied: {saved:?}");
    };
    assert_eq!(closed.status, TicketStatus::Closed);
    let kinds: Vec<String> = db
        .store
        .ticket_events(ticket.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "note").count(),
        2,
        "{kinds:?}"
    );
    assert!(db.store.call_drafts(ringing.id).await.unwrap().is_empty());

    // A call that ended without a ticket takes no draft (nobody would apply it),
    // and an empty save is refused.
    let mut internal = call("r2", Direction::Internal, start);
    internal.ended_at = Some(start + Duration::minutes(1));
    db.store.upsert_call(&internal).await.unwrap();
    assert!(matches!(
        db.store
            .save_call_draft(internal.id, &note("x"), None)
            .await,
        Err(fiche_store::StoreError::Invalid { .. })
    ));
    assert!(matches!(
        db.store
            .save_call_draft(ringing.id, &TicketDraft::default(), None)
            .await,
        Err(fiche_store::StoreError::Invalid { .. })
    ));
}
store_test!(a_note_saved_while_ringing_lands_once_on_the_calls_ticket);

async fn a_save_racing_with_the_tickets_creation_lands_once(db: &TestDb) {
    let start = Utc::now() - Duration::minutes(5);
    let ringing = call("race1", Direction::Inbound, start);
    // The writer's batch is open: the ticket is created and the call locked, not
    // committed yet.
    let mut tx = db.store.begin_tickets().await.unwrap();
    tx.upsert_call(&ringing).await.unwrap();
    let mut new = callback(ringing.id, start);
    new.kind = TicketKind::Call;
    let ticket = tx.insert_ticket(&new).await.unwrap().unwrap();
    tx.lock_call(ringing.id).await.unwrap();
    assert!(tx
        .apply_drafts(ringing.id, &ticket)
        .await
        .unwrap()
        .is_none());
    // The agent saves now: the save must wait for the batch, then see the ticket
    // (otherwise its draft would stay behind, on no ticket).
    let store = db.store.clone();
    let id = ringing.id;
    let save = tokio::spawn(async move { store.save_call_draft(id, &note("Pendant"), None).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    tx.commit().await.unwrap();
    let saved = save.await.unwrap().unwrap();
    assert!(matches!(saved, DraftSaved::Applied(_)), "{saved:?}");
    assert!(db.store.call_drafts(ringing.id).await.unwrap().is_empty());
    let notes = db
        .store
        .ticket_events(ticket.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "note")
        .count();
    assert_eq!(notes, 1);
}
store_test!(a_save_racing_with_the_tickets_creation_lands_once);

async fn a_note_on_a_missed_call_joins_the_merged_callback(db: &TestDb) {
    let start = Utc::now() - Duration::minutes(30);
    let first = call("mm1", Direction::Inbound, start);
    let second = call("mm2", Direction::Inbound, start + Duration::minutes(5));
    db.store.upsert_call(&first).await.unwrap();
    let open = db
        .store
        .insert_ticket(&callback(first.id, start))
        .await
        .unwrap();
    // Typed while the second call rang.
    db.store
        .save_call_draft(second.id, &note("Deuxième appel, urgent"), None)
        .await
        .unwrap();
    let mut tx = db.store.begin_tickets().await.unwrap();
    tx.upsert_call(&second).await.unwrap();
    let merged = tx
        .link_call(open.id, second.id, "attempt", serde_json::json!({}))
        .await
        .unwrap()
        .unwrap();
    tx.lock_call(second.id).await.unwrap();
    tx.apply_drafts(second.id, &merged).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    let (total, _) = db
        .store
        .list_tickets(&TicketQuery::default())
        .await
        .unwrap();
    assert_eq!(total, 1);
    let events = db.store.ticket_events(open.id).await.unwrap();
    assert!(events
        .iter()
        .any(|e| e.kind == "note" && e.body["text"] == "Deuxième appel, urgent"));
    // A later save on that call's card goes to the same callback.
    let saved = db
        .store
        .save_call_draft(second.id, &note("Encore"), None)
        .await
        .unwrap();
    assert!(
        matches!(saved, DraftSaved::Applied(ref t) if t.id == open.id),
        "{saved:?}"
    );
}
store_test!(a_note_on_a_missed_call_joins_the_merged_callback);

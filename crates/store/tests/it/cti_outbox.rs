//! CTI tokens and the webhook outbox.

use fiche_store::{NewOutboxEntry, StoreError};

use crate::{store_test, TestDb};

async fn tokens_are_unique_by_name_and_revocable(db: &TestDb) {
    let token = db.store.add_cti_token("sipgate", "aa11").await.unwrap();
    assert_eq!(token.name, "sipgate");
    assert!(token.revoked_at.is_none());
    assert!(matches!(
        db.store.add_cti_token("sipgate", "bb22").await,
        Err(StoreError::Conflict { field: "name", .. })
    ));
    assert!(matches!(
        db.store.add_cti_token("bad name", "cc33").await,
        Err(StoreError::Invalid { field: "name", .. })
    ));
    db.store.add_cti_token("placetel", "dd44").await.unwrap();
    let revoked = db.store.revoke_cti_token("sipgate").await.unwrap();
    let first = revoked.revoked_at.unwrap();
    let again = db.store.revoke_cti_token("sipgate").await.unwrap();
    assert_eq!(
        again.revoked_at,
        Some(first),
        "revoking twice keeps the first time"
    );
    assert!(matches!(
        db.store.revoke_cti_token("nobody").await,
        Err(StoreError::NotFound { .. })
    ));
    db.store
        .touch_cti_token("placetel", chrono::Utc::now())
        .await
        .unwrap();
    let list = db.store.list_cti_tokens().await.unwrap();
    let names: Vec<&str> = list.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["placetel", "sipgate"]);
    assert!(list[0].last_used_at.is_some() && list[0].revoked_at.is_none());
}
store_test!(tokens_are_unique_by_name_and_revocable);

async fn outbox_keeps_order_retries_and_drops_the_oldest_past_its_bound(db: &TestDb) {
    let push = |target: &'static str, n: usize| {
        let payload = format!("{{\"n\":{n}}}");
        let store = db.store.clone();
        async move {
            store
                .outbox_push(
                    &NewOutboxEntry {
                        target,
                        ordering_key: Some("call-1"),
                        event_type: "ringing",
                        payload: &payload,
                    },
                    3,
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(push("crm", 1).await, 0);
    assert_eq!(push("crm", 2).await, 0);
    assert_eq!(push("other", 1).await, 0);
    assert_eq!(push("crm", 3).await, 0);
    assert_eq!(
        push("crm", 4).await,
        1,
        "the fourth row pushes the oldest out"
    );
    assert_eq!(db.store.outbox_len("crm").await.unwrap(), 3);
    assert_eq!(
        db.store.outbox_len("other").await.unwrap(),
        1,
        "bounds are per target"
    );
    let rows = db.store.outbox_next("crm", 10).await.unwrap();
    let payloads: Vec<&str> = rows.iter().map(|r| r.payload.as_str()).collect();
    assert_eq!(payloads, ["{\"n\":2}", "{\"n\":3}", "{\"n\":4}"]);
    let later = chrono::Utc::now() + chrono::Duration::seconds(30);
    db.store
        .outbox_failed(rows[0].id, later, "HTTP 503")
        .await
        .unwrap();
    let head = &db.store.outbox_next("crm", 1).await.unwrap()[0];
    assert_eq!((head.id, head.attempts), (rows[0].id, 1));
    assert_eq!(head.last_error.as_deref(), Some("HTTP 503"));
    assert!(head.next_attempt_at > chrono::Utc::now());
    db.store.outbox_delete(rows[0].id).await.unwrap();
    assert_eq!(
        db.store.outbox_next("crm", 1).await.unwrap()[0].id,
        rows[1].id
    );
}
store_test!(outbox_keeps_order_retries_and_drops_the_oldest_past_its_bound);

async fn outbox_never_hands_a_delivery_id_out_twice(db: &TestDb) {
    let entry = NewOutboxEntry {
        target: "crm",
        ordering_key: Some("call-1"),
        event_type: "ended",
        payload: "{}",
    };
    let mut seen = Vec::new();
    // An idle target: each delivery goes out before the next is queued.
    for _ in 0..3 {
        db.store.outbox_push(&entry, 10).await.unwrap();
        let rows = db.store.outbox_next("crm", 10).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert!(
            !seen.contains(&rows[0].id),
            "delivery id {} reused after {seen:?}",
            rows[0].id
        );
        seen.push(rows[0].id);
        db.store.outbox_delete(rows[0].id).await.unwrap();
    }
}
store_test!(outbox_never_hands_a_delivery_id_out_twice);

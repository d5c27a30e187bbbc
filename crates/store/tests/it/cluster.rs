//! What several nodes share through PostgreSQL: leases, the event log (one row
//! per event whichever node appends it first, read in commit order), the
//! writers' cursors, commands for a lease's holder. SQLite refuses a cluster.

use fiche_store::{NewLogEntry, NewOutboxEntry, StoreError};
use std::time::Duration;

use crate::TestDb;

fn entry(call: &str, key: &str) -> NewLogEntry {
    NewLogEntry {
        call_id: Some(call.to_owned()),
        dedupe: Some(key.to_owned()),
        body: format!("{{\"call\":\"{call}\",\"key\":\"{key}\"}}"),
        at: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn sqlite_serves_one_node_only() {
    let db = TestDb::sqlite().await;
    assert!(!db.store.supports_cluster());
    let refused = db
        .store
        .lease_acquire("writer", "a", Duration::from_secs(6))
        .await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Invalid {
                field: "cluster",
                ..
            })
        ),
        "{refused:?}"
    );
    db.finish().await;
}

#[tokio::test]
async fn a_lease_has_one_holder_until_it_lapses_or_is_given_up() {
    let db = TestDb::postgres().await;
    let store = &db.store;
    let short = Duration::from_millis(300);
    assert!(store.lease_acquire("ami:paris", "a", short).await.unwrap());
    assert!(
        !store.lease_acquire("ami:paris", "b", short).await.unwrap(),
        "held by a"
    );
    assert!(
        store.lease_acquire("ami:paris", "a", short).await.unwrap(),
        "a renews"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        store.lease_acquire("ami:paris", "b", short).await.unwrap(),
        "lapsed: b takes it"
    );
    assert!(
        !store.lease_acquire("ami:paris", "a", short).await.unwrap(),
        "a lost it"
    );
    store.lease_release("ami:paris", "b").await.unwrap();
    assert!(
        store.lease_acquire("ami:paris", "a", short).await.unwrap(),
        "given up"
    );
    let leases = store.cluster_leases().await.unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].node, "a");
    db.finish().await;
}

#[tokio::test]
async fn two_live_nodes_never_share_a_name() {
    let db = TestDb::postgres().await;
    let store = &db.store;
    let alive = Duration::from_secs(10);
    let first = chrono::Utc::now();
    store
        .cluster_heartbeat("a", first, "127.0.0.1:8080", alive)
        .await
        .unwrap();
    store
        .cluster_heartbeat("a", first, "127.0.0.1:8080", alive)
        .await
        .unwrap();
    let second = first + chrono::Duration::seconds(1);
    let refused = store
        .cluster_heartbeat("a", second, "127.0.0.1:8081", alive)
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "{refused:?}"
    );
    // A node whose heartbeat is old is gone: its name is free again.
    store
        .cluster_heartbeat("a", second, "127.0.0.1:8081", Duration::ZERO)
        .await
        .unwrap();
    let nodes = store.cluster_nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].http_addr, "127.0.0.1:8081");
    db.finish().await;
}

#[tokio::test]
async fn the_same_event_from_two_nodes_is_logged_once() {
    let db = TestDb::postgres().await;
    let store = &db.store;
    let stored = store
        .log_append(
            "a",
            &[entry("c1", "started#1"), entry("c1", "ringing:201#1")],
        )
        .await
        .unwrap();
    assert_eq!(stored, [true, true]);
    let stored = store
        .log_append(
            "b",
            &[entry("c1", "ringing:201#1"), entry("c1", "answered:201#1")],
        )
        .await
        .unwrap();
    assert_eq!(
        stored,
        [false, true],
        "b's copy of the ring is not stored again"
    );
    let all = store.log_after(0, 100, None).await.unwrap();
    let nodes: Vec<&str> = all.iter().map(|e| e.node.as_str()).collect();
    assert_eq!(nodes, ["a", "a", "b"]);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let others = store.log_after(0, 100, Some("a")).await.unwrap();
    assert_eq!(others.len(), 1, "a does not read its own entries back");
    assert_eq!(store.log_end().await.unwrap(), all[2].seq);
    // Calls in progress: c1 has no end yet, c2 has.
    store
        .log_append("a", &[entry("c2", "started#1"), entry("c2", "ended#1")])
        .await
        .unwrap();
    let end = store.log_end().await.unwrap();
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let open = store.log_open_calls(since, end, 100).await.unwrap();
    assert_eq!(open.len(), 3, "c1's three events, none of c2: {open:?}");
    db.finish().await;
}

#[tokio::test]
async fn a_writer_fed_from_the_log_writes_each_entry_once_per_target() {
    let db = TestDb::postgres().await;
    let store = &db.store;
    let delivery = NewOutboxEntry {
        target: "crm",
        ordering_key: Some("c1"),
        event_type: "ringing",
        payload: "{}",
    };
    assert_eq!(store.cursor("webhooks:crm").await.unwrap(), 0);
    let first = store
        .outbox_push_logged(&delivery, 100, "webhooks:crm", 7)
        .await
        .unwrap();
    assert_eq!(first, Some(0));
    // Again after a crash, or by the next holder of the work: nothing new.
    let again = store
        .outbox_push_logged(&delivery, 100, "webhooks:crm", 7)
        .await
        .unwrap();
    assert_eq!(again, None);
    let older = store
        .outbox_push_logged(&delivery, 100, "webhooks:crm", 5)
        .await
        .unwrap();
    assert_eq!(older, None);
    assert_eq!(store.outbox_len("crm").await.unwrap(), 1);
    assert_eq!(store.cursor("webhooks:crm").await.unwrap(), 7);
    // Each target has its cursor.
    let other = NewOutboxEntry {
        target: "erp",
        ..delivery
    };
    assert_eq!(
        store
            .outbox_push_logged(&other, 100, "webhooks:erp", 7)
            .await
            .unwrap(),
        Some(0)
    );

    // The ticket writer's cursor moves in its own transaction.
    let mut tx = store.begin_tickets().await.unwrap();
    assert_eq!(tx.log_cursor("tickets").await.unwrap(), 0);
    tx.log_cursor_set("tickets", 12).await.unwrap();
    drop(tx);
    assert_eq!(store.cursor("tickets").await.unwrap(), 0, "rolled back");
    let mut tx = store.begin_tickets().await.unwrap();
    tx.log_cursor_set("tickets", 12).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.cursor("tickets").await.unwrap(), 12);
    db.finish().await;
}

#[tokio::test]
async fn a_command_is_taken_once_and_answered() {
    let db = TestDb::postgres().await;
    let store = &db.store;
    let id = store
        .command_push("ami:paris", "{\"number\":\"0612\"}")
        .await
        .unwrap();
    assert_eq!(store.command_answer_of(id).await.unwrap(), None);
    let taken = store.commands_take("ami:paris", "a").await.unwrap();
    assert_eq!(taken.len(), 1);
    assert!(store
        .commands_take("ami:paris", "b")
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .commands_take("ami:lyon", "a")
        .await
        .unwrap()
        .is_empty());
    store.command_answer(id, "{\"placed\":1}").await.unwrap();
    assert_eq!(
        store.command_answer_of(id).await.unwrap().as_deref(),
        Some("{\"placed\":1}")
    );
    db.finish().await;
}

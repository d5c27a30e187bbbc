//! Sessions checked and kept alive in batches: what the server does every
//! few seconds for the sessions behind open websockets.

use chrono::{Duration, DurationRound, Utc};
use fiche_store::{NewUser, Role};

use crate::{store_test, TestDb};

async fn live_sessions_are_found_and_extended_in_batches(db: &TestDb) {
    let user = db
        .store
        .add_user(&NewUser {
            login: "claire".into(),
            display_name: "Claire Martin".into(),
            role: Role::Agent,
            password: None,
        })
        .await
        .unwrap();
    // Stored times have microsecond precision.
    let t0 = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
    // More than one query's worth of digests: 1,200, every third expired.
    let mut digests = Vec::new();
    for i in 0..1_200 {
        let digest = format!("{i:064x}");
        let expires = if i % 3 == 0 {
            t0 - Duration::minutes(1)
        } else {
            t0 + Duration::hours(1)
        };
        db.store
            .create_session(&digest, user.id, expires)
            .await
            .unwrap();
        digests.push(digest);
    }
    digests.push("not-a-session".into());

    let mut live = db.store.live_sessions(&digests, t0).await.unwrap();
    live.sort();
    assert_eq!(live.len(), 800, "the expired and the unknown are left out");
    assert_eq!(live[0], (format!("{:064x}", 1), t0 + Duration::hours(1)));
    assert!(live
        .iter()
        .all(|(d, _)| u64::from_str_radix(d, 16).unwrap() % 3 != 0));

    let kept: Vec<String> = live.iter().map(|(d, _)| d.clone()).collect();
    db.store
        .touch_sessions(&kept, t0 + Duration::hours(12))
        .await
        .unwrap();
    let later = t0 + Duration::hours(2);
    assert_eq!(
        db.store.live_sessions(&digests, later).await.unwrap().len(),
        800,
        "every kept session outlives its old expiry"
    );
    assert!(db.store.session(&kept[799], later).await.unwrap().is_some());
    assert!(db.store.live_sessions(&[], t0).await.unwrap().is_empty());
}
store_test!(live_sessions_are_found_and_extended_in_batches);

//! Users, passwords and extensions.

use fiche_store::{NewUser, PasswordHash, Role, Store, StoreError, User, UserId, UserUpdate};

use crate::{store_test, TestDb};

fn claire() -> NewUser {
    NewUser {
        login: "Claire".into(),
        display_name: "Claire Martin".into(),
        role: Role::Agent,
        password: None,
    }
}

async fn a_user_logs_in_with_the_password_set(db: &TestDb) {
    let user = db.store.add_user(&claire()).await.unwrap();
    assert_eq!(user.role, Role::Agent);
    assert!(!user.has_password);
    assert!(db.store.user_password("claire").await.unwrap().is_none());

    db.store
        .set_password(user.id, &PasswordHash::hash("rappel-du-matin").unwrap())
        .await
        .unwrap();
    let (found, hash) = db.store.user_password("CLAIRE").await.unwrap().unwrap();
    assert_eq!(found.id, user.id);
    assert!(found.has_password);
    assert!(hash.verify("rappel-du-matin"));
    assert!(!hash.verify("rappel-du-soir"));
    assert!(db.store.user_password("nobody").await.unwrap().is_none());
}
store_test!(a_user_logs_in_with_the_password_set);

async fn logins_are_unique_whatever_their_case(db: &TestDb) {
    db.store.add_user(&claire()).await.unwrap();
    let mut again = claire();
    again.login = "CLAIRE".into();
    let err = db.store.add_user(&again).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { field: "login", .. }),
        "{err:?}"
    );
    let found = db.store.get_user_by_login("cLaIrE").await.unwrap().unwrap();
    assert_eq!(found.login, "Claire");
    assert!(db.store.get_user_by_login("marc").await.unwrap().is_none());
    let mut spaced = claire();
    spaced.login = "claire martin".into();
    assert!(matches!(
        db.store.add_user(&spaced).await,
        Err(StoreError::Invalid { field: "login", .. })
    ));
}
store_test!(logins_are_unique_whatever_their_case);

async fn an_extension_belongs_to_one_agent(db: &TestDb) {
    let claire = db.store.add_user(&claire()).await.unwrap();
    let marc = db
        .store
        .add_user(&NewUser {
            login: "marc".into(),
            display_name: "Marc".into(),
            role: Role::Supervisor,
            password: None,
        })
        .await
        .unwrap();
    db.store
        .set_extensions(claire.id, &["201".into(), "202".into(), "201".into()])
        .await
        .unwrap();
    assert_eq!(
        db.store.get_user(claire.id).await.unwrap().extensions,
        ["201", "202"]
    );
    let err = db
        .store
        .set_extensions(marc.id, &["203".into(), "202".into()])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                field: "extension",
                ..
            }
        ),
        "{err:?}"
    );
    // The refused change left Marc as he was.
    assert!(db
        .store
        .get_user(marc.id)
        .await
        .unwrap()
        .extensions
        .is_empty());
    assert_eq!(
        db.store
            .user_for_extension("202")
            .await
            .unwrap()
            .unwrap()
            .id,
        claire.id
    );

    db.store
        .set_extensions(claire.id, &["210".into()])
        .await
        .unwrap();
    db.store
        .set_extensions(marc.id, &["202".into()])
        .await
        .unwrap();
    assert_eq!(
        db.store
            .user_for_extension("202")
            .await
            .unwrap()
            .unwrap()
            .id,
        marc.id
    );
    let users = db.store.list_users().await.unwrap();
    let logins: Vec<&str> = users.iter().map(|u| u.login.as_str()).collect();
    assert_eq!(logins, ["Claire", "marc"]);
    assert!(matches!(
        db.store.set_extensions(UserId(999), &[]).await,
        Err(StoreError::NotFound { entity: "user", .. })
    ));
}
store_test!(an_extension_belongs_to_one_agent);

async fn roles_and_disabling_are_kept(db: &TestDb) {
    // Another enabled admin, so that Claire may be disabled.
    add_admin(db, "root").await;
    let claire = db.store.add_user(&claire()).await.unwrap();
    db.store.set_role(claire.id, Role::Admin).await.unwrap();
    db.store.set_disabled(claire.id, true).await.unwrap();
    db.store
        .set_display_name(claire.id, "Claire M.")
        .await
        .unwrap();
    let read = db.store.get_user(claire.id).await.unwrap();
    assert_eq!(read.role, Role::Admin);
    assert!(read.disabled);
    assert_eq!(read.display_name, "Claire M.");
    assert!(matches!(
        db.store.set_role(UserId(999), Role::Agent).await,
        Err(StoreError::NotFound { entity: "user", .. })
    ));
}
store_test!(roles_and_disabling_are_kept);

async fn a_user_change_is_all_or_nothing(db: &TestDb) {
    let claire = db.store.add_user(&claire()).await.unwrap();
    db.store
        .set_extensions(claire.id, &["201".into()])
        .await
        .unwrap();
    let nadia = db
        .store
        .add_user(&NewUser {
            login: "nadia".into(),
            display_name: "Nadia".into(),
            role: Role::Agent,
            password: None,
        })
        .await
        .unwrap();
    // Renamed, promoted and given Claire's extension at once: the extension is
    // taken, so neither the name nor the role may change.
    let err = db
        .store
        .update_user(
            nadia.id,
            &UserUpdate {
                role: Some(Role::Supervisor),
                display_name: Some("Nadia Benali"),
                extensions: Some(&["202".into(), "201".into()]),
                ..UserUpdate::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    let after = db.store.get_user(nadia.id).await.unwrap();
    assert_eq!(after.display_name, "Nadia");
    assert_eq!(after.role, Role::Agent);
    assert!(after.extensions.is_empty(), "{:?}", after.extensions);
    // The same change without the taken extension goes through whole.
    db.store
        .update_user(
            nadia.id,
            &UserUpdate {
                role: Some(Role::Supervisor),
                display_name: Some("Nadia Benali"),
                extensions: Some(&["202".into()]),
                ..UserUpdate::default()
            },
        )
        .await
        .unwrap();
    let after = db.store.get_user(nadia.id).await.unwrap();
    assert_eq!(
        (after.display_name.as_str(), after.role),
        ("Nadia Benali", Role::Supervisor)
    );
    assert_eq!(after.extensions, ["202"]);
}
store_test!(a_user_change_is_all_or_nothing);

async fn add_admin(db: &TestDb, login: &str) -> User {
    db.store
        .add_user(&NewUser {
            login: login.into(),
            display_name: login.into(),
            role: Role::Admin,
            password: None,
        })
        .await
        .unwrap()
}

fn refused_on(result: Result<(), StoreError>, expected: &str) {
    match result {
        Err(StoreError::Invalid { field, reason }) => {
            assert_eq!(field, expected);
            assert!(reason.contains("last enabled admin"), "{reason}");
        }
        other => panic!("expected a refusal on {expected}, got {other:?}"),
    }
}

async fn the_last_enabled_admin_cannot_be_demoted_or_disabled(db: &TestDb) {
    let root = add_admin(db, "root").await;
    refused_on(db.store.set_role(root.id, Role::Supervisor).await, "role");
    refused_on(db.store.set_disabled(root.id, true).await, "disabled");
    // Nothing changed, and changes that keep an admin still pass.
    let read = db.store.get_user(root.id).await.unwrap();
    assert_eq!((read.role, read.disabled), (Role::Admin, false));
    db.store.set_role(root.id, Role::Admin).await.unwrap();
    db.store.set_disabled(root.id, false).await.unwrap();

    // A disabled admin does not count: enabling Marc lets root go.
    let marc = add_admin(db, "marc").await;
    db.store.set_disabled(marc.id, true).await.unwrap();
    refused_on(db.store.set_role(root.id, Role::Agent).await, "role");
    db.store.set_disabled(marc.id, false).await.unwrap();
    db.store.set_role(root.id, Role::Agent).await.unwrap();
    refused_on(db.store.set_disabled(marc.id, true).await, "disabled");
    // Demoting or disabling a non-admin is never refused.
    db.store.set_disabled(root.id, true).await.unwrap();
    let users = db.store.list_users().await.unwrap();
    let enabled_admins: Vec<&str> = users
        .iter()
        .filter(|u| u.role == Role::Admin && !u.disabled)
        .map(|u| u.login.as_str())
        .collect();
    assert_eq!(enabled_admins, ["marc"]);
}
store_test!(the_last_enabled_admin_cannot_be_demoted_or_disabled);

async fn two_admins_removing_each_other_at_once_leave_one(db: &TestDb) {
    // Each round races two admins, the only enabled ones: one is demoted while the
    // other is disabled, each request on its own connection. Without a lock both
    // would see the other admin still there and pass.
    let mut survivor: Option<UserId> = None;
    for round in 0..8 {
        let a = add_admin(db, &format!("a{round}")).await;
        let b = add_admin(db, &format!("b{round}")).await;
        if let Some(previous) = survivor {
            db.store.set_role(previous, Role::Agent).await.unwrap();
        }
        let (first, second) = tokio::join!(
            spawn_change(db.store.clone(), a.id, true),
            spawn_change(db.store.clone(), b.id, false),
        );
        let passed = [&first, &second].iter().filter(|r| r.is_ok()).count();
        assert_eq!(passed, 1, "round {round}: {first:?} {second:?}");
        let users = db.store.list_users().await.unwrap();
        let enabled_admins = users
            .iter()
            .filter(|u| u.role == Role::Admin && !u.disabled)
            .count();
        assert_eq!(enabled_admins, 1, "round {round}");
        survivor = Some(if first.is_ok() { b.id } else { a.id });
    }
}
store_test!(two_admins_removing_each_other_at_once_leave_one);

async fn spawn_change(store: Store, id: UserId, demote: bool) -> Result<(), StoreError> {
    tokio::spawn(async move {
        if demote {
            store.set_role(id, Role::Supervisor).await
        } else {
            store.set_disabled(id, true).await
        }
    })
    .await
    .unwrap()
}

async fn the_users_stamp_moves_with_every_change(db: &TestDb) {
    let empty = db.store.users_stamp().await.unwrap();
    assert_eq!((empty.count, empty.last_change), (0, None));
    let claire = db.store.add_user(&claire()).await.unwrap();
    let mut seen = vec![empty, db.store.users_stamp().await.unwrap()];
    assert_eq!(seen[1].count, 1);
    // A change from another process: each one gives a stamp never seen before.
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(5));
    pause().await;
    db.store
        .set_extensions(claire.id, &["201".to_owned()])
        .await
        .unwrap();
    seen.push(db.store.users_stamp().await.unwrap());
    pause().await;
    db.store.set_disabled(claire.id, true).await.unwrap();
    seen.push(db.store.users_stamp().await.unwrap());
    pause().await;
    db.store
        .set_role(claire.id, Role::Supervisor)
        .await
        .unwrap();
    seen.push(db.store.users_stamp().await.unwrap());
    for (i, stamp) in seen.iter().enumerate() {
        assert!(
            !seen[..i].contains(stamp),
            "stamp {i} seen before: {seen:?}"
        );
    }
    // Nothing changed: the same stamp.
    assert_eq!(db.store.users_stamp().await.unwrap(), seen[4]);
}
store_test!(the_users_stamp_moves_with_every_change);

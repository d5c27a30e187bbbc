//! Users, passwords and extensions.

use fiche_store::{NewUser, PasswordHash, Role, StoreError, UserId};

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

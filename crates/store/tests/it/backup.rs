//! `Store::backup_into`: a consistent SQLite copy, taken while the store is in use.

use fiche_store::{NewCustomer, Store, StoreError};

use crate::customers::dupont;
use crate::{store_test, TestDb};

async fn a_backup_copies_what_is_committed_and_refuses_to_overwrite(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("copy.db");
    if db.store.backend_name() == "postgres" {
        let refused = db.store.backup_into(&dest).await;
        assert!(
            matches!(&refused, Err(StoreError::Unsupported(text)) if text.contains("pg_dump")),
            "{refused:?}"
        );
        assert!(!dest.exists());
        return;
    }
    let kept = db.store.create_customer(&dupont()).await.unwrap();
    db.store.backup_into(&dest).await.unwrap();
    // Written after the copy: not in it.
    let later = db
        .store
        .create_customer(&NewCustomer {
            name: "Après la sauvegarde".to_owned(),
            ..NewCustomer::default()
        })
        .await
        .unwrap();

    let copy = Store::connect_existing(&format!("sqlite://{}", dest.display()))
        .await
        .unwrap();
    copy.migrate().await.unwrap();
    let restored = copy.get_customer(kept.id).await.unwrap();
    assert_eq!(restored.name, kept.name);
    assert_eq!(restored.phones.len(), kept.phones.len());
    assert!(matches!(
        copy.get_customer(later.id).await,
        Err(StoreError::NotFound { .. })
    ));
    copy.close().await;

    // SQLite never overwrites: the first copy stays as it was.
    let again = db.store.backup_into(&dest).await;
    assert!(again.is_err(), "{again:?}");
    let copy = Store::connect_existing(&format!("sqlite://{}", dest.display()))
        .await
        .unwrap();
    assert!(copy.get_customer(later.id).await.is_err());
    copy.close().await;
}
store_test!(a_backup_copies_what_is_committed_and_refuses_to_overwrite);

#[tokio::test]
async fn connect_existing_never_creates_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let result = Store::connect_existing(&format!("sqlite://{}", missing.display())).await;
    assert!(result.is_err());
    assert!(!missing.exists());
}

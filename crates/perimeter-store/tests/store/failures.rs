//! Bad conditions: unreachable, locked, newer schema, connections lost mid-run.

use std::time::Duration;

use perimeter_crypto::KeyRing;
use perimeter_domain::SystemClock;
use perimeter_store::{
    AccessContext, Backend, DatabaseUrl, SchemaStatus, Store, StoreError, StoreOptions,
};
use sqlx::Connection;

use crate::common::TestDb;

async fn a_newer_schema_is_refused(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    let mut raw = db.raw().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9999, 'from the future', TRUE, $1, 1)",
    )
    .bind(vec![0u8; 48])
    .execute(&mut raw)
    .await
    .unwrap();
    let supported = store.supported_schema_version();
    assert_eq!(
        store.schema_status().await.unwrap(),
        SchemaStatus::Newer {
            database: 9999,
            supported
        }
    );
    let err = store.migrate().await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                database: 9999,
                supported: s
            } if s == supported
        ),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade Perimeter"));
    assert!(store.require_current_schema().await.is_err());
}

async fn the_pool_recovers_after_connections_are_lost(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    let sys = AccessContext::system("test");
    let practice = store.create_practice(&sys, "Clinic").await.unwrap();
    match db.backend {
        Backend::Postgres => {
            // The server drops every connection of this database (as on a restart).
            let mut admin = sqlx::AnyConnection::connect(&crate::common::pg_admin_url())
                .await
                .unwrap();
            let name = match &db.url {
                DatabaseUrl::Postgres(_) => {
                    db.url.to_string().rsplit('/').next().unwrap().to_owned()
                }
                DatabaseUrl::Sqlite(_) => unreachable!(),
            };
            sqlx::query(
                "SELECT CAST(COUNT(pg_terminate_backend(pid)) AS BIGINT) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(name)
            .execute(&mut admin)
            .await
            .unwrap();
        }
        Backend::Sqlite => {
            // Another process holds the write lock for longer than the busy timeout.
            let mut opts = db.options();
            opts.busy_timeout = Duration::from_millis(200);
            let impatient = Store::connect(&opts, keys.clone(), db.shared_clock())
                .await
                .unwrap();
            let mut locker = db.raw().await;
            sqlx::query("BEGIN EXCLUSIVE")
                .execute(&mut locker)
                .await
                .unwrap();
            let err = impatient
                .create_practice(&sys, "Blocked")
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Busy), "{err}");
            assert!(err.is_transient());
            assert!(err.to_string().contains("busy_timeout"));
            sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
            impatient.create_practice(&sys, "Unblocked").await.unwrap();
        }
    }
    // The next operations succeed on fresh connections; nothing was half-written.
    for _ in 0..3 {
        store
            .create_patient(
                &sys,
                practice,
                &perimeter_store::PatientData {
                    given_name: "After".into(),
                    family_name: "Outage".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    store.ping().await.unwrap();
    let head = store.audit_head().await.unwrap().unwrap();
    let records = store.audit_records(0, 1000).await.unwrap();
    assert_eq!(head.size, records.len() as u64);
}

/// A full database (here SQLite's size cap; on a real machine the disk): the write that does
/// not fit fails with a clear error and leaves nothing half-written (its audit record neither),
/// reads go on, and writes work again once there is room.
#[tokio::test]
async fn a_full_sqlite_database_refuses_the_write_cleanly_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.db");
    let keys = KeyRing::generate().unwrap();
    let clock: perimeter_domain::SharedClock = std::sync::Arc::new(SystemClock);
    let open = |cap: Option<u64>| {
        let mut opts = StoreOptions::new(DatabaseUrl::Sqlite(path.clone()));
        opts.sqlite_max_bytes = cap;
        let keys = keys.clone();
        let clock = clock.clone();
        async move { Store::connect(&opts, keys, clock).await.unwrap() }
    };
    let store = open(None).await;
    store.migrate().await.unwrap();
    store.verify_keys().await.unwrap();
    let sys = AccessContext::system("test");
    let practice = store.create_practice(&sys, "Clinic").await.unwrap();
    store.close().await;
    let size = std::fs::metadata(&path).unwrap().len()
        + std::fs::metadata(path.with_extension("db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    // Room for a few more pages only.
    let capped = open(Some(size + 64 * 1024)).await;
    let data = perimeter_store::PatientData {
        given_name: "Fill".into(),
        family_name: "Up".into(),
        notes: Some("x".repeat(8 * 1024)),
        ..Default::default()
    };
    let mut stored: i64 = 0;
    let err = loop {
        match capped.create_patient(&sys, practice, &data).await {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 1000, "the cap was never reached");
    };
    assert!(matches!(err, StoreError::Full), "{err}");
    assert!(err.to_string().contains("full") && err.to_string().contains("nothing was written"));
    // Nothing half-written: every patient that exists was acknowledged, and the trail is whole.
    let head = capped.audit_head().await.unwrap().unwrap();
    assert_eq!(
        head.size,
        capped.audit_records(0, 100_000).await.unwrap().len() as u64
    );
    let mut raw = sqlx::AnyConnection::connect(&format!("sqlite://{}?mode=ro", path.display()))
        .await
        .unwrap();
    let patients: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM patient")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    let keyed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM patient_key")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    assert_eq!((patients, keyed), (stored, stored));
    raw.close().await.unwrap();
    capped.ping().await.unwrap();
    capped.close().await;
    // With room again, writes go on.
    let roomy = open(None).await;
    roomy.create_patient(&sys, practice, &data).await.unwrap();
}

crate::both_backends!(
    a_newer_schema_is_refused,
    the_pool_recovers_after_connections_are_lost,
);

#[tokio::test]
async fn an_unreachable_postgres_gives_a_clear_error() {
    let mut opts = StoreOptions::new(
        DatabaseUrl::parse("postgres://postgres:secretpw@127.0.0.1:1/none").unwrap(),
    );
    opts.acquire_timeout = Duration::from_secs(2);
    let err = Store::connect(
        &opts,
        KeyRing::generate().unwrap(),
        std::sync::Arc::new(SystemClock),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("127.0.0.1:1"), "{msg}");
    assert!(!msg.contains("secretpw"), "{msg}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_sqlite_file_in_a_missing_directory_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions::new(DatabaseUrl::Sqlite(dir.path().join("no/such/dir/p.db")));
    let err = Store::connect(
        &opts,
        KeyRing::generate().unwrap(),
        std::sync::Arc::new(SystemClock),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(!msg.is_empty());
    assert!(!matches!(err, StoreError::KeyMismatch { .. }));
}

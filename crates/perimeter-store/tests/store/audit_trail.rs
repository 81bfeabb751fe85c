//! The audit trail: chain, Merkle nodes, group commit, concurrency, checkpoints, queries and
//! append-only enforcement.

use perimeter_audit::merkle::root_of;
use perimeter_audit::query::{AuditQuery, IndexColumns};
use perimeter_audit::{Action, Actor, AuditEvent, GENESIS_HASH, Hash32, ObjectRef, Outcome};
use perimeter_crypto::KeyRing;
use perimeter_domain::{PatientId, StaffId};
use perimeter_store::{AccessContext, AuditReader, Backend, PatientData, Store, StoreError};

use crate::common::TestDb;

fn login(user: StaffId, at: i64) -> AuditEvent {
    AuditEvent {
        at_millis: at,
        actor: Actor::User {
            user,
            roles: vec![],
            session: None,
        },
        action: Action::Login,
        object: ObjectRef {
            kind: "session".into(),
            id: None,
        },
        patient: None,
        categories: vec![],
        purpose: None,
        outcome: Outcome::Success,
        detail: None,
        client_addr: Some("127.0.0.1".into()),
        user_agent: None,
        request_id: None,
    }
}

async fn all_records(store: &Store) -> Vec<perimeter_audit::AuditRecord> {
    let mut out = Vec::new();
    loop {
        let page = store.audit_records(out.len() as u64, 7).await.unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

async fn appends_chain_and_build_the_merkle_tree(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    assert!(store.audit_head().await.unwrap().is_none());
    let alice = StaffId::new();
    let bob = StaffId::new();
    let first = store
        .append_audit(&[login(alice, 1), login(bob, 2), login(alice, 3)])
        .await
        .unwrap();
    assert_eq!(first, vec![0, 1, 2]);
    for i in 0..18 {
        db.clock.advance(time::Duration::seconds(1));
        store.append_audit(&[login(bob, 10 + i)]).await.unwrap();
    }
    let records = all_records(&store).await;
    assert_eq!(records.len(), 21);
    let mut prev = GENESIS_HASH;
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64);
        assert_eq!(r.prev_hash, prev);
        r.check().unwrap();
        prev = r.leaf_hash;
    }
    let head = store.audit_head().await.unwrap().unwrap();
    assert_eq!(head.size, 21);
    assert_eq!(head.last_leaf_hash, prev);
    let leaves: Vec<Hash32> = records.iter().map(|r| r.leaf_hash).collect();
    assert_eq!(head.frontier.root(), root_of(&leaves));
    // Interior nodes are the roots of their perfect subtrees.
    for level in 0..5u32 {
        let width = 1usize << level;
        for index in 0..(21 / width) {
            let node = store
                .audit_node(level, index as u64)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(node, root_of(&leaves[index * width..(index + 1) * width]));
        }
        assert!(
            store
                .audit_node(level, (21 / width) as u64)
                .await
                .unwrap()
                .is_none()
        );
    }
    // Queries.
    let by_alice = store
        .audit_query(
            &AuditQuery {
                user: Some(alice),
                ..AuditQuery::default()
            },
            None,
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        by_alice.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![0, 2]
    );
    let after = store
        .audit_query(
            &AuditQuery {
                user: Some(bob),
                from_millis: Some(records[5].at_millis),
                ..AuditQuery::default()
            },
            Some(10),
            3,
        )
        .await
        .unwrap();
    assert_eq!(
        after.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![11, 12, 13]
    );
    let logins = store
        .audit_query(
            &AuditQuery {
                action: Some(Action::Login),
                to_millis: Some(records[0].at_millis + 1),
                ..AuditQuery::default()
            },
            None,
            100,
        )
        .await
        .unwrap();
    assert_eq!(logins.len(), 3);
    // Checkpoints.
    store
        .insert_checkpoint(21, 99, b"signed note")
        .await
        .unwrap();
    assert!(store.insert_checkpoint(21, 100, b"again").await.is_err());
    let cps = store.checkpoints().await.unwrap();
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0].tree_size, 21);
    assert_eq!(cps[0].signed, b"signed note");
}

async fn audit_rows_cannot_be_changed_or_deleted(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    store
        .append_audit(&[login(StaffId::new(), 1)])
        .await
        .unwrap();
    let mut raw = db.raw().await;
    assert!(
        sqlx::query("UPDATE audit_log SET at_millis = 5")
            .execute(&mut raw)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM audit_log")
            .execute(&mut raw)
            .await
            .is_err()
    );
    assert_eq!(all_records(&store).await.len(), 1);
}

async fn concurrent_writers_from_two_pools_get_one_gapless_sequence(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let a = db.open(&keys).await;
    // A second pool stands in for a second `perimeter serve` process.
    let b = db.open(&keys).await;
    let sys = AccessContext::system("test");
    let practice = a.create_practice(&sys, "Clinic").await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..6 {
        let store = if t % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let sys = AccessContext::system("test");
            let mut ids: Vec<PatientId> = Vec::new();
            for i in 0..5 {
                let id = store
                    .create_patient(
                        &sys,
                        practice,
                        &PatientData {
                            given_name: format!("T{t}"),
                            family_name: format!("N{i}"),
                            ..PatientData::default()
                        },
                    )
                    .await
                    .unwrap();
                store.get_patient(&sys, id).await.unwrap();
                // A standalone event through this pool's group committer (on SQLite its own
                // connection to the file) between the accesses.
                store
                    .append_audit(&[login(StaffId::new(), i64::from(i))])
                    .await
                    .unwrap();
                ids.push(id);
            }
            ids
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap().len();
    }
    assert_eq!(total, 30);
    let records = all_records(&a).await;
    // One practice creation, then a create, a read and a log-in per patient.
    assert_eq!(records.len(), 1 + 90);
    let mut prev = GENESIS_HASH;
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64);
        assert_eq!(r.prev_hash, prev);
        prev = r.leaf_hash;
    }
    let head = b.audit_head().await.unwrap().unwrap();
    let leaves: Vec<Hash32> = records.iter().map(|r| r.leaf_hash).collect();
    assert_eq!(head.frontier.root(), root_of(&leaves));
}

async fn raw_fails(raw: &mut sqlx::AnyConnection, sql: &str) -> bool {
    sqlx::raw_sql(sql).execute(raw).await.is_err()
}

async fn checkpoints_and_the_head_are_guarded_too(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    store
        .append_audit(&[login(StaffId::new(), 1), login(StaffId::new(), 2)])
        .await
        .unwrap();
    store.insert_checkpoint(2, 5, b"note").await.unwrap();
    let mut raw = db.raw().await;
    for sql in [
        "UPDATE audit_checkpoint SET signed = X'00'",
        "DELETE FROM audit_checkpoint",
        "DELETE FROM audit_head",
        "UPDATE audit_head SET size = 1",
        "UPDATE audit_head SET size = 2, last_leaf_hash = NULL",
        "DELETE FROM audit_node",
        "UPDATE audit_log SET patient_id = NULL",
    ] {
        let sql = if db.backend == Backend::Postgres {
            sql.replace("X'00'", "'\\x00'::bytea")
        } else {
            sql.to_owned()
        };
        assert!(raw_fails(&mut raw, &sql).await, "{sql} must be refused");
    }
    if db.backend == Backend::Postgres {
        for table in ["audit_log", "audit_node", "audit_checkpoint", "audit_head"] {
            assert!(
                raw_fails(&mut raw, &format!("TRUNCATE {table}")).await,
                "TRUNCATE {table} must be refused"
            );
        }
    }
    // The head still advances through the store.
    store
        .append_audit(&[login(StaffId::new(), 3)])
        .await
        .unwrap();
    let head = store.audit_head().await.unwrap().unwrap();
    assert_eq!(head.size, 3);
    assert_eq!(store.checkpoints().await.unwrap().len(), 1);
    assert_eq!(all_records(&store).await.len(), 3);
}

/// Makes every audit insert fail (as a full disk or a broken audit table would).
async fn sabotage_audit(db: &TestDb, on: bool) {
    let mut raw = db.raw().await;
    let sql = match (db.backend, on) {
        (Backend::Sqlite, true) => {
            "CREATE TRIGGER sabotage BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END;"
        }
        (Backend::Sqlite, false) => "DROP TRIGGER sabotage;",
        (Backend::Postgres, true) => {
            "CREATE FUNCTION sabotage() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit unavailable'; END; $$; \
             CREATE TRIGGER sabotage BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION sabotage();"
        }
        (Backend::Postgres, false) => {
            "DROP TRIGGER sabotage ON audit_log; DROP FUNCTION sabotage();"
        }
    };
    sqlx::raw_sql(sql).execute(&mut raw).await.unwrap();
}

async fn an_access_fails_and_writes_nothing_when_its_audit_record_cannot_be_written(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    let sys = AccessContext::system("test");
    let practice = store.create_practice(&sys, "Clinic").await.unwrap();
    let data = PatientData {
        given_name: "Ada".into(),
        family_name: "Byron".into(),
        phone: Some("+1 202 555 0100".into()),
        ..PatientData::default()
    };
    let existing = store.create_patient(&sys, practice, &data).await.unwrap();
    let before = store.audit_head().await.unwrap().unwrap();
    let patients_before = store.list_patient_ids(practice, None, 100).await.unwrap();

    sabotage_audit(&db, true).await;
    // A write: refused, and the patient row is not there.
    let err = store
        .create_patient(&sys, practice, &data)
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("Ada"), "{err}");
    assert_eq!(
        store.list_patient_ids(practice, None, 100).await.unwrap(),
        patients_before
    );
    // A read: refused, no data returned.
    assert!(store.get_patient(&sys, existing).await.is_err());
    // A search: refused.
    assert!(
        store
            .find_patients_by_phone(&sys, practice, "+1 202 555 0100")
            .await
            .is_err()
    );
    // A standalone event: refused to its caller.
    assert!(
        store
            .append_audit(&[login(StaffId::new(), 9)])
            .await
            .is_err()
    );
    // Nothing reached the trail.
    assert_eq!(store.audit_head().await.unwrap().unwrap(), before);

    sabotage_audit(&db, false).await;
    let p = store.get_patient(&sys, existing).await.unwrap();
    assert_eq!(p.data.given_name, "Ada");
    assert_eq!(
        store.audit_head().await.unwrap().unwrap().size,
        before.size + 1
    );
    // Standalone events are accepted again once the trail can be written.
    let seqs = store
        .append_audit(&[login(StaffId::new(), 10)])
        .await
        .unwrap();
    assert_eq!(seqs, vec![before.size + 1]);
}

async fn standalone_events_share_transactions_but_one_call_is_never_split(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let u = StaffId::new();
            store
                .append_audit(&[login(u, i), login(u, i + 1000)])
                .await
                .unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        let pair = t.await.unwrap();
        assert_eq!(pair.len(), 2);
        assert_eq!(pair[1], pair[0] + 1, "one call's events stay together");
        seqs.extend(pair);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..80).collect::<Vec<u64>>());
    let records = all_records(&store).await;
    assert_eq!(records.len(), 80);
    // Each record's query columns are the ones its event implies.
    let reader = store.audit_reader();
    let stored = reader.records(0, 1000).await.unwrap();
    for s in &stored {
        let e = AuditEvent::from_canonical_bytes(&s.record.event).unwrap();
        assert_eq!(s.index, IndexColumns::of(&e));
    }
}

async fn sqlite_commits_fsync_the_write_ahead_log(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    let d = store.durability().await.unwrap();
    match db.backend {
        // synchronous = 2 is FULL: every commit syncs the WAL before it returns.
        Backend::Sqlite => assert_eq!(d, "journal_mode=wal synchronous=2"),
        Backend::Postgres => assert!(d.starts_with("synchronous_commit="), "{d}"),
    }
}

async fn the_audit_reader_needs_no_key_ring(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    store
        .append_audit(&[login(StaffId::new(), 1), login(StaffId::new(), 2)])
        .await
        .unwrap();
    store.insert_checkpoint(2, 5, b"note").await.unwrap();
    let reader = AuditReader::connect_url(&db.url).await.unwrap();
    assert_eq!(reader.backend(), db.backend);
    let recs: Vec<_> = reader
        .records(0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.record)
        .collect();
    assert_eq!(recs, store.audit_records(0, 10).await.unwrap());
    assert_eq!(
        reader.head().await.unwrap(),
        store.audit_head().await.unwrap()
    );
    assert_eq!(
        reader.checkpoints_from(0).await.unwrap(),
        store.checkpoints().await.unwrap()
    );
    assert_eq!(
        reader.latest_checkpoint().await.unwrap().unwrap().tree_size,
        2
    );
    assert!(
        !store
            .insert_checkpoint_if_absent(2, 6, b"again")
            .await
            .unwrap()
    );
    assert!(
        store
            .insert_checkpoint_if_absent(3, 6, b"later")
            .await
            .unwrap()
    );
    let nodes = reader
        .nodes_by_id(&[
            perimeter_audit::proof::NodeId { level: 0, index: 1 },
            perimeter_audit::proof::NodeId { level: 1, index: 0 },
            perimeter_audit::proof::NodeId { level: 1, index: 7 },
        ])
        .await
        .unwrap();
    assert_eq!(nodes.len(), 2, "the missing node is left out");
    reader.close().await;
    if let Some(path) = &db.path {
        let missing = perimeter_store::DatabaseUrl::Sqlite(path.with_file_name("none.db"));
        let err = AuditReader::connect_url(&missing).await.unwrap_err();
        assert!(matches!(err, StoreError::Config(_)), "{err}");
        assert!(err.to_string().contains("none.db"), "{err}");
    }
}

crate::both_backends!(
    appends_chain_and_build_the_merkle_tree,
    audit_rows_cannot_be_changed_or_deleted,
    concurrent_writers_from_two_pools_get_one_gapless_sequence,
    checkpoints_and_the_head_are_guarded_too,
    an_access_fails_and_writes_nothing_when_its_audit_record_cannot_be_written,
    standalone_events_share_transactions_but_one_call_is_never_split,
    the_audit_reader_needs_no_key_ring,
    sqlite_commits_fsync_the_write_ahead_log,
);

/// The bulk builder (used by `perimeter audit bench` for its large trails) makes a database
/// the store then uses like any other: the records chain, the roots it reports are the tree's,
/// and the next append continues the same trail.
#[tokio::test]
async fn the_bulk_builder_makes_a_trail_the_store_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bulk.db");
    let patient = PatientId::new();
    let (head, roots) = perimeter_store::build_sqlite_trail(
        &path,
        3_000,
        |i| {
            let mut e = login(StaffId::new(), i as i64);
            if i % 3 == 0 {
                e.patient = Some(patient);
            }
            e
        },
        |i| 1_767_225_600_000 + i as i64,
        &[1_000, 3_000],
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(head.size, 3_000);
    assert_eq!(roots.len(), 2);
    let reader = AuditReader::connect_url(&perimeter_store::DatabaseUrl::Sqlite(path.clone()))
        .await
        .unwrap();
    let records: Vec<_> = reader
        .records(0, 3_000)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.record)
        .collect();
    assert_eq!(records.len(), 3_000);
    let leaves: Vec<Hash32> = records.iter().map(|r| r.leaf_hash).collect();
    assert_eq!(roots[0], (1_000, root_of(&leaves[..1_000])));
    assert_eq!(roots[1], (3_000, root_of(&leaves)));
    for pair in records.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].leaf_hash);
    }
    reader.close().await;
    // The store opens it, finds the trail head, and the next append continues the chain.
    let store = Store::connect(
        &perimeter_store::StoreOptions::new(perimeter_store::DatabaseUrl::Sqlite(path)),
        KeyRing::generate().unwrap(),
        std::sync::Arc::new(perimeter_domain::SystemClock),
    )
    .await
    .unwrap();
    store
        .append_audit(&[login(StaffId::new(), 9)])
        .await
        .unwrap();
    let head = store.audit_head().await.unwrap().unwrap();
    assert_eq!(head.size, 3_001);
    let last = store.audit_records(3_000, 1).await.unwrap();
    assert_eq!(last[0].prev_hash, leaves[2_999]);
    // The query columns were written and their indexes rebuilt.
    let mine = store
        .audit_query(
            &AuditQuery {
                patient: Some(patient),
                ..AuditQuery::default()
            },
            None,
            5_000,
        )
        .await
        .unwrap();
    assert_eq!(mine.len(), 1_000);
    store.close().await;
}

/// Checkpoints are off the commit path: a background task copies committed pages into the
/// database file, so the main file alone (without its -wal) soon holds every acknowledged
/// record, far below the log size at which a committing connection would checkpoint itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_checkpoints_run_in_the_background() {
    use sqlx::Connection;
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    let path = db.path.clone().unwrap();
    let events: Vec<AuditEvent> = (0..200).map(|i| login(StaffId::new(), i)).collect();
    for chunk in events.chunks(20) {
        store.append_audit(chunk).await.unwrap();
    }
    // A copy of the main file alone; a copy taken mid-checkpoint may be torn: try again.
    let copy = path.with_file_name("main-only.db");
    let mut found = 0i64;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        std::fs::copy(&path, &copy).unwrap();
        let url = format!("sqlite://{}?mode=rw", copy.display());
        if let Ok(mut c) = sqlx::SqliteConnection::connect(&url).await {
            found = sqlx::query_scalar("SELECT count(*) FROM audit_log")
                .fetch_one(&mut c)
                .await
                .unwrap_or(-1);
            c.close().await.unwrap();
        }
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", copy.display()));
        }
        if found == 200 {
            break;
        }
    }
    assert_eq!(found, 200, "the records reached the main database file");
    store.close().await;
}

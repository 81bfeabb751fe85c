//! Tampering with a real store's rows — SQLite in a temporary directory and PostgreSQL in a
//! fresh database (URL from PERIMETER_TEST_POSTGRES_URL; skipped only when
//! PERIMETER_TEST_SKIP_POSTGRES=1) — and checking that verification catches each change at the
//! right place. The append-only triggers are dropped first, as an attacker with database
//! access would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use perimeter_audit::checkpoint::CheckpointKey;
use perimeter_audit::checkpointer::{Checkpointer, CheckpointerConfig, read_log};
use perimeter_audit::merkle::Frontier;
use perimeter_audit::query::{AuditQuery, IndexColumns};
use perimeter_audit::schedule::Policy;
use perimeter_audit::trail::{OutsideCheckpoints, VerifyOptions, prove, verify_store};
use perimeter_audit::verify::{CheckpointOrigin, VerifyError};
use perimeter_audit::{Action, Actor, AuditEvent, AuditRecord, ObjectRef, Outcome};
use perimeter_crypto::KeyRing;
use perimeter_domain::{ManualClock, PatientId, PurposeOfUse, Role, StaffId};
use perimeter_store::{
    AccessContext, AuditReader, Backend, DatabaseUrl, NewStaff, PatientData, Store, StoreOptions,
};
use sqlx::{AnyConnection, Connection};

const ORIGIN: &str = "perimeter.test/audit";

static COUNTER: AtomicU32 = AtomicU32::new(0);

struct Db {
    backend: Backend,
    url: DatabaseUrl,
    raw_url: String,
    pg_name: Option<String>,
    dir: tempfile::TempDir,
}

fn pg_admin() -> String {
    std::env::var("PERIMETER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

impl Db {
    async fn new(backend: Backend) -> Option<Db> {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Sqlite => {
                let path = dir.path().join("perimeter.db");
                Some(Db {
                    backend,
                    url: DatabaseUrl::Sqlite(path.clone()),
                    raw_url: format!("sqlite://{}", path.display()),
                    pg_name: None,
                    dir,
                })
            }
            Backend::Postgres => {
                if std::env::var("PERIMETER_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
                    return None;
                }
                let admin = pg_admin();
                let name = format!(
                    "perimeter_audit_t_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::SeqCst),
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                );
                let mut c = AnyConnection::connect(&admin).await.unwrap();
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut c)
                    .await
                    .unwrap();
                c.close().await.unwrap();
                let url = DatabaseUrl::parse(&admin)
                    .unwrap()
                    .with_database_name(&name)
                    .unwrap();
                let (base, _) = admin.rsplit_once('/').unwrap();
                Some(Db {
                    backend,
                    url,
                    raw_url: format!("{base}/{name}"),
                    pg_name: Some(name),
                    dir,
                })
            }
        }
    }

    fn checkpoint_dir(&self) -> PathBuf {
        self.dir.path().join("checkpoints")
    }

    async fn raw(&self) -> AnyConnection {
        AnyConnection::connect(&self.raw_url).await.unwrap()
    }

    async fn exec(&self, sql: &str) {
        let mut c = self.raw().await;
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    }

    /// Drops the append-only guards, as an attacker with database access would.
    async fn drop_guards(&self) {
        match self.backend {
            Backend::Sqlite => {
                self.exec(
                    "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; \
                     DROP TRIGGER audit_node_no_update; DROP TRIGGER audit_node_no_delete; \
                     DROP TRIGGER audit_checkpoint_no_update; DROP TRIGGER audit_checkpoint_no_delete; \
                     DROP TRIGGER audit_head_no_delete; DROP TRIGGER audit_head_only_advances;",
                )
                .await
            }
            Backend::Postgres => {
                self.exec(
                    "DROP TRIGGER audit_log_append_only ON audit_log; \
                     DROP TRIGGER audit_node_append_only ON audit_node; \
                     DROP TRIGGER audit_log_no_truncate ON audit_log; \
                     DROP TRIGGER audit_checkpoint_append_only ON audit_checkpoint; \
                     DROP TRIGGER audit_head_only_advances ON audit_head;",
                )
                .await
            }
        }
    }

    async fn drop_db(&self) {
        if let Some(name) = &self.pg_name {
            let mut c = AnyConnection::connect(&pg_admin()).await.unwrap();
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut c)
                .await;
        }
    }
}

fn event(i: u64) -> AuditEvent {
    AuditEvent {
        at_millis: 1_767_225_600_000 + i as i64,
        actor: Actor::User {
            user: StaffId::new(),
            roles: vec![Role::Clinician],
            session: None,
        },
        action: Action::Read,
        object: ObjectRef {
            kind: "conversation".into(),
            id: Some(format!("c{i}")),
        },
        patient: Some(PatientId::new()),
        categories: vec![],
        purpose: Some(PurposeOfUse::Treatment),
        outcome: Outcome::Success,
        detail: None,
        client_addr: Some("10.0.0.1".into()),
        user_agent: None,
        request_id: None,
    }
}

struct Fixture {
    db: Db,
    store: Store,
    key: CheckpointKey,
}

fn options() -> VerifyOptions {
    VerifyOptions {
        page: 7,
        now_millis: 1_767_225_600_000,
        grace_millis: 60_000,
    }
}

impl Fixture {
    /// 100 records appended in batches, checkpoints at 40 and 100 in the database and the file.
    async fn new(backend: Backend) -> Option<Fixture> {
        let db = Db::new(backend).await?;
        let keys = KeyRing::generate().unwrap();
        let clock = ManualClock::at_epoch_2026();
        let mut opts = StoreOptions::new(db.url.clone());
        opts.max_connections = 2;
        let store = Store::connect(&opts, keys.clone(), Arc::new(clock.clone()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store.verify_keys().await.unwrap();
        let cfg = CheckpointerConfig {
            origin: ORIGIN.into(),
            policy: Policy::default(),
            dir: db.checkpoint_dir(),
            tick: std::time::Duration::from_secs(1),
        };
        let mut cp = Checkpointer::new(
            store.clone(),
            keys.audit_signing_key().clone(),
            Arc::new(clock.clone()),
            cfg,
        )
        .await
        .unwrap();
        for batch in 0..10u64 {
            let evs: Vec<AuditEvent> = (0..10).map(|i| event(batch * 10 + i)).collect();
            store.append_audit(&evs).await.unwrap();
            if batch == 3 || batch == 9 {
                cp.tick(true).await.unwrap().unwrap();
            }
        }
        let key = CheckpointKey::new(ORIGIN, keys.audit_verifying_key()).unwrap();
        Some(Fixture { db, store, key })
    }

    async fn verify(&self) -> Result<perimeter_audit::trail::Report, VerifyError> {
        let log = read_log(&self.db.checkpoint_dir()).unwrap();
        let outside = OutsideCheckpoints {
            log: Some(&log),
            copies: "",
        };
        verify_store(&self.store, &self.key, outside, options()).await
    }

    /// The same verification through a read-only [`AuditReader`] of the database alone (what
    /// `perimeter audit verify` uses; for SQLite it reads the file directly, not through sqlx).
    async fn verify_read_only(&self) -> Result<perimeter_audit::trail::Report, VerifyError> {
        let log = read_log(&self.db.checkpoint_dir()).unwrap();
        let outside = OutsideCheckpoints {
            log: Some(&log),
            copies: "",
        };
        let reader = AuditReader::connect_url(&self.db.url).await.unwrap();
        let out = verify_store(&reader, &self.key, outside, options()).await;
        reader.close().await;
        out
    }

    /// The same verification through the store's [`Store::verification_reader`] (what the
    /// server's verify route uses).
    async fn verify_with_verification_reader(
        &self,
    ) -> Result<perimeter_audit::trail::Report, VerifyError> {
        let log = read_log(&self.db.checkpoint_dir()).unwrap();
        let outside = OutsideCheckpoints {
            log: Some(&log),
            copies: "",
        };
        verify_store(
            &self.store.verification_reader(),
            &self.key,
            outside,
            options(),
        )
        .await
    }

    async fn done(self) {
        self.store.close().await;
        self.db.drop_db().await;
    }
}

/// A scenario: tamper, then check the verifier's finding.
async fn scenario(backend: Backend, sql: &str, check: impl FnOnce(VerifyError)) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    f.verify().await.unwrap();
    f.db.drop_guards().await;
    f.db.exec(sql).await;
    let err = f.verify().await.unwrap_err();
    // Every reader finds the same first problem.
    assert_eq!(f.verify_read_only().await.unwrap_err(), err);
    assert_eq!(f.verify_with_verification_reader().await.unwrap_err(), err);
    check(err);
    f.done().await;
}

async fn untouched_trail_verifies_and_proves(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    let r = f.verify().await.unwrap();
    assert_eq!(r.summary.records, 100);
    let ro = f.verify_read_only().await.unwrap();
    assert_eq!(
        (
            ro.summary.records,
            ro.summary.root,
            ro.nodes_checked,
            ro.consistency_checked
        ),
        (
            r.summary.records,
            r.summary.root,
            r.nodes_checked,
            r.consistency_checked
        )
    );
    assert_eq!(r.summary.checkpoints, 2);
    assert_eq!(r.consistency_checked, 1);
    assert!(r.nodes_checked >= 90);
    assert!(r.checkpoints.missing_from_database.is_empty());
    assert!(r.checkpoints.missing_from_file.is_empty());
    for seq in [0, 39, 40, 77, 99] {
        let bundle = prove(&f.store, &f.key, seq, None).await.unwrap();
        assert_eq!(bundle.tree_size, if seq < 40 { 40 } else { 100 });
        let json = serde_json::to_string(&bundle).unwrap();
        let back: perimeter_audit::bundle::InclusionBundle = serde_json::from_str(&json).unwrap();
        back.check(Some(&f.key)).unwrap();
        // The read-only reader (direct SQLite reads for a SQLite file) proves the same.
        let reader = AuditReader::connect_url(&f.db.url).await.unwrap();
        let again = prove(&reader, &f.key, seq, None).await.unwrap();
        reader.close().await;
        assert_eq!(serde_json::to_string(&again).unwrap(), json);
    }
    f.done().await;
}

async fn every_tampering_is_caught(backend: Backend) {
    // A changed field.
    scenario(
        backend,
        "UPDATE audit_log SET at_millis = at_millis + 1 WHERE seq = 17",
        |e| assert_eq!(e, VerifyError::LeafHash { seq: 17 }),
    )
    .await;
    // A deleted row.
    scenario(backend, "DELETE FROM audit_log WHERE seq = 20", |e| {
        assert_eq!(
            e,
            VerifyError::SeqGap {
                expected: 20,
                found: 21
            }
        )
    })
    .await;
    // Two rows' contents swapped.
    scenario(
        backend,
        "UPDATE audit_log SET seq = -1 WHERE seq = 30; \
         UPDATE audit_log SET seq = 30 WHERE seq = 31; \
         UPDATE audit_log SET seq = 31 WHERE seq = -1;",
        |e| assert_eq!(e.seq(), Some(30), "{e}"),
    )
    .await;
    // The tail truncated.
    scenario(backend, "DELETE FROM audit_log WHERE seq >= 90", |e| {
        assert_eq!(
            e,
            VerifyError::Truncated {
                records: 90,
                size: 100
            }
        )
    })
    .await;
    // A query column nulled: the record would vanish from the patient's accounting.
    scenario(
        backend,
        "UPDATE audit_log SET patient_id = NULL WHERE seq = 33",
        |e| {
            assert_eq!(
                e,
                VerifyError::IndexColumn {
                    seq: 33,
                    column: "patient_id"
                }
            )
        },
    )
    .await;
    // Another patient's id put in.
    scenario(
        backend,
        "UPDATE audit_log SET patient_id = (SELECT patient_id FROM audit_log WHERE seq = 2) WHERE seq = 61",
        |e| {
            assert_eq!(
                e,
                VerifyError::IndexColumn {
                    seq: 61,
                    column: "patient_id"
                }
            )
        },
    )
    .await;
    // The user changed, the action changed.
    scenario(
        backend,
        "UPDATE audit_log SET actor_id = 'someone-else' WHERE seq = 12",
        |e| {
            assert_eq!(
                e,
                VerifyError::IndexColumn {
                    seq: 12,
                    column: "actor_id"
                }
            )
        },
    )
    .await;
    scenario(
        backend,
        "UPDATE audit_log SET action = 'login' WHERE seq = 44",
        |e| {
            assert_eq!(
                e,
                VerifyError::IndexColumn {
                    seq: 44,
                    column: "action"
                }
            )
        },
    )
    .await;
    // A checkpoint row deleted from the database (the file still has it).
    scenario(
        backend,
        "DELETE FROM audit_checkpoint WHERE tree_size = 40",
        |e| {
            assert_eq!(
                e,
                VerifyError::MissingFromDatabase {
                    size: 40,
                    origin: CheckpointOrigin::File
                }
            )
        },
    )
    .await;
    // A stored interior node altered.
    scenario(
        backend,
        "UPDATE audit_node SET hash = leaf_hash FROM audit_log WHERE audit_log.seq = 0 AND audit_node.level = 2 AND audit_node.idx = 3",
        |e| assert_eq!(e, VerifyError::Node { level: 2, index: 3 }),
    )
    .await;
}

async fn insert_raw(c: &mut AnyConnection, r: &AuditRecord, cols: &IndexColumns) {
    sqlx::query(
        "INSERT INTO audit_log (seq, prev_hash, at_millis, event, leaf_hash, patient_id, actor_id, action) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(r.seq as i64)
    .bind(r.prev_hash.to_vec())
    .bind(r.at_millis)
    .bind(r.event.clone())
    .bind(r.leaf_hash.to_vec())
    .bind(cols.patient_id.clone())
    .bind(cols.actor_id.clone())
    .bind(cols.action.clone())
    .execute(c)
    .await
    .unwrap();
}

async fn inserted_rows_are_caught(backend: Backend) {
    // At the end: a well-formed, correctly chained record appended behind the store's back.
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    let last = f.store.audit_records(99, 1).await.unwrap().remove(0);
    let ev = event(1000);
    let forged = AuditRecord::next(
        Some((last.seq, last.leaf_hash)),
        ev.at_millis,
        ev.canonical_bytes(),
    );
    let mut c = f.db.raw().await;
    insert_raw(&mut c, &forged, &IndexColumns::of(&ev)).await;
    c.close().await.unwrap();
    let err = f.verify().await.unwrap_err();
    assert!(
        matches!(err, VerifyError::MissingNode { .. } | VerifyError::Head(_)),
        "{err}"
    );
    f.done().await;

    // In the middle: the rows from 57 on renumbered to make room, a well-formed record chained
    // after record 56 put in at 57, the head bumped. The verifier names record 57.
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    f.db.drop_guards().await;
    let prev = f.store.audit_records(56, 1).await.unwrap().remove(0);
    let ev = event(2000);
    let forged = AuditRecord::next(
        Some((prev.seq, prev.leaf_hash)),
        ev.at_millis,
        ev.canonical_bytes(),
    );
    f.db.exec(
        "UPDATE audit_log SET seq = -(seq + 1) WHERE seq >= 57; \
         UPDATE audit_log SET seq = -seq WHERE seq < 0; \
         UPDATE audit_head SET size = size + 1 WHERE id = 1;",
    )
    .await;
    let mut c = f.db.raw().await;
    insert_raw(&mut c, &forged, &IndexColumns::of(&ev)).await;
    c.close().await.unwrap();
    let err = f.verify().await.unwrap_err();
    assert_eq!(err, VerifyError::Inserted { seq: 57 }, "{err}");
    assert!(err.to_string().starts_with("record 57: inserted"), "{err}");
    f.done().await;
}

async fn crypto_shredding_leaves_the_trail_verifiable(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    let sys = AccessContext::system("test");
    let practice = f.store.create_practice(&sys, "Clinic").await.unwrap();
    // A real front-desk account registers the patient (the store checks register_patient).
    let desk = f
        .store
        .create_staff(
            &sys,
            practice,
            &NewStaff {
                username: "front-desk".into(),
                display_name: "Front desk".into(),
                roles: vec![Role::FrontDesk],
                password_hash: None,
            },
        )
        .await
        .unwrap();
    let clinician = AccessContext::user(desk, vec![Role::FrontDesk], PurposeOfUse::Operations);
    let data = PatientData {
        given_name: "Zebulon".into(),
        family_name: "Quixote".into(),
        phone: Some("+1 202 555 0199".into()),
        ..PatientData::default()
    };
    let pid = f
        .store
        .create_patient(&clinician, practice, &data)
        .await
        .unwrap();
    // Full reads are for Perimeter's own components (staff read through the views).
    let intake = AccessContext::system("intake");
    f.store.get_patient(&intake, pid).await.unwrap();
    let report = f.store.shred_patient(&sys, pid).await.unwrap();
    assert!(!report.already_shredded && report.patient_fields_unreadable > 0);
    assert!(f.store.get_patient(&intake, pid).await.is_err());
    // A checkpoint after the shred, then the whole trail verifies, and the patient's
    // accounting still lists every access, by internal id, without any of their data.
    let keys_dir = f.db.checkpoint_dir();
    let mut cp = Checkpointer::new(
        f.store.clone(),
        f.store.keys().audit_signing_key().clone(),
        f.store.clock().clone(),
        CheckpointerConfig {
            origin: ORIGIN.into(),
            policy: Policy::default(),
            dir: keys_dir,
            tick: std::time::Duration::from_secs(1),
        },
    )
    .await
    .unwrap();
    cp.tick(true).await.unwrap().unwrap();
    let r = f.verify().await.unwrap();
    assert!(r.summary.records > 100);
    let about = f
        .store
        .audit_query(
            &AuditQuery {
                patient: Some(pid),
                ..AuditQuery::default()
            },
            None,
            100,
        )
        .await
        .unwrap();
    let actions: Vec<Action> = about
        .iter()
        .map(|r| AuditEvent::from_canonical_bytes(&r.event).unwrap().action)
        .collect();
    assert_eq!(actions, vec![Action::Create, Action::Read, Action::Delete]);
    for r in f.store.audit_records(0, 10_000).await.unwrap() {
        let text = String::from_utf8_lossy(&r.event);
        // The phone in the forms it could take; its last four digits alone also occur by
        // chance in the records' random ids, so they are not a needle.
        for needle in ["Zebulon", "Quixote", "555 0199", "5550199", "555-0199"] {
            assert!(!text.contains(needle), "audit record holds {needle}");
        }
    }
    let last = r.summary.records - 1;
    prove(&f.store, &f.key, last, None).await.unwrap();
    f.done().await;
}

/// Rewrites every audit table with one event changed and everything re-hashed (records, nodes,
/// head), optionally removing the database's checkpoints. Only signed checkpoints can tell.
async fn rewrite_trail(f: &Fixture, drop_db_checkpoints: bool) {
    let records = f.store.audit_records(0, 1000).await.unwrap();
    let mut forged: Vec<AuditRecord> = Vec::new();
    let mut frontier = Frontier::new();
    let mut nodes = Vec::new();
    for r in &records {
        let prev = forged.last().map(|x| (x.seq, x.leaf_hash));
        let bytes = if r.seq == 25 {
            event(9999).canonical_bytes()
        } else {
            r.event.clone()
        };
        let nr = AuditRecord::next(prev, r.at_millis, bytes);
        nodes.extend(frontier.push(nr.leaf_hash));
        forged.push(nr);
    }
    f.db.drop_guards().await;
    let mut c = f.db.raw().await;
    let mut tx = c.begin().await.unwrap();
    sqlx::query("DELETE FROM audit_log")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_node")
        .execute(&mut *tx)
        .await
        .unwrap();
    if drop_db_checkpoints {
        sqlx::query("DELETE FROM audit_checkpoint")
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    for r in &forged {
        let cols = IndexColumns::of(&AuditEvent::from_canonical_bytes(&r.event).unwrap());
        insert_raw(&mut tx, r, &cols).await;
    }
    for n in &nodes {
        sqlx::query("INSERT INTO audit_node (level, idx, hash) VALUES ($1, $2, $3)")
            .bind(i64::from(n.level))
            .bind(n.index as i64)
            .bind(n.hash.to_vec())
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE audit_head SET size = $1, last_leaf_hash = $2, frontier = $3 WHERE id = 1")
        .bind(forged.len() as i64)
        .bind(forged.last().unwrap().leaf_hash.to_vec())
        .bind(frontier.to_bytes())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    c.close().await.unwrap();
}

async fn rehashed_forgery_is_caught_by_the_checkpoint_file(backend: Backend) {
    // With the database's checkpoints left in place, they already disagree.
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    rewrite_trail(&f, false).await;
    let err = f.verify().await.unwrap_err();
    assert_eq!(
        err,
        VerifyError::CheckpointRoot {
            size: 40,
            from: 0,
            origin: CheckpointOrigin::Database
        }
    );
    f.done().await;

    // With the database's checkpoints deleted too, the file outside the database catches it.
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    rewrite_trail(&f, true).await;
    let err = f.verify().await.unwrap_err();
    assert_eq!(
        err,
        VerifyError::CheckpointRoot {
            size: 40,
            from: 0,
            origin: CheckpointOrigin::File
        }
    );
    // Without the file the forgery would pass: the file is what makes it detectable.
    let db_only = VerifyOptions {
        page: 64,
        ..options()
    };
    verify_store(&f.store, &f.key, OutsideCheckpoints::default(), db_only)
        .await
        .unwrap();
    // With the file, even the records left intact give the deletion away.
    let log = read_log(&f.db.checkpoint_dir()).unwrap();
    let err = verify_store(
        &f.store,
        &f.key,
        OutsideCheckpoints {
            log: None,
            copies: &log,
        },
        db_only,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, VerifyError::CheckpointRoot { .. }), "{err}");

    // A forger who signs new checkpoints with their own key is refused.
    let forger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let head = f.store.audit_head().await.unwrap().unwrap();
    let fake = perimeter_audit::schedule::checkpoint_for_head(
        ORIGIN,
        &head.frontier.to_bytes(),
        1,
        &forger,
    )
    .unwrap();
    f.store
        .insert_checkpoint(head.size, 1, fake.text().as_bytes())
        .await
        .unwrap();
    let err = verify_store(&f.store, &f.key, OutsideCheckpoints::default(), db_only)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Checkpoint {
                origin: CheckpointOrigin::Database,
                ..
            }
        ),
        "{err}"
    );
    f.done().await;
}

#[tokio::test]
async fn sqlite_untouched_trail_verifies_and_proves() {
    untouched_trail_verifies_and_proves(Backend::Sqlite).await;
}

#[tokio::test]
async fn sqlite_every_tampering_is_caught() {
    every_tampering_is_caught(Backend::Sqlite).await;
    inserted_rows_are_caught(Backend::Sqlite).await;
}

#[tokio::test]
async fn sqlite_crypto_shredding_leaves_the_trail_verifiable() {
    crypto_shredding_leaves_the_trail_verifiable(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_crypto_shredding_leaves_the_trail_verifiable() {
    crypto_shredding_leaves_the_trail_verifiable(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_rehashed_forgery_is_caught() {
    rehashed_forgery_is_caught_by_the_checkpoint_file(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_untouched_trail_verifies_and_proves() {
    untouched_trail_verifies_and_proves(Backend::Postgres).await;
}

#[tokio::test]
async fn postgres_every_tampering_is_caught() {
    every_tampering_is_caught(Backend::Postgres).await;
    inserted_rows_are_caught(Backend::Postgres).await;
}

#[tokio::test]
async fn postgres_rehashed_forgery_is_caught() {
    rehashed_forgery_is_caught_by_the_checkpoint_file(Backend::Postgres).await;
}

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
use perimeter_audit::checkpointer::{CheckpointStore, Checkpointer, CheckpointerConfig, read_log};
use perimeter_audit::merkle::Frontier;
use perimeter_audit::schedule::Policy;
use perimeter_audit::trail::{TrailStore, prove, verify_store};
use perimeter_audit::verify::{CheckpointOrigin, HeadView, VerifyError};
use perimeter_audit::{Action, Actor, AuditEvent, AuditRecord, Hash32, ObjectRef, Outcome};
use perimeter_crypto::KeyRing;
use perimeter_domain::{ManualClock, PatientId, PurposeOfUse, Role, StaffId};
use perimeter_store::{Backend, DatabaseUrl, Store, StoreError, StoreOptions};
use sqlx::{AnyConnection, Connection};

const ORIGIN: &str = "perimeter.test/audit";

struct Adapter(Store);

impl TrailStore for Adapter {
    type Error = StoreError;
    async fn records(&self, from_seq: u64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        self.0.audit_records(from_seq, limit).await
    }
    async fn node(&self, level: u32, index: u64) -> Result<Option<Hash32>, StoreError> {
        self.0.audit_node(level, index).await
    }
    async fn head(&self) -> Result<Option<HeadView>, StoreError> {
        Ok(self.0.audit_head().await?.map(|h| HeadView {
            size: h.size,
            last_leaf_hash: h.last_leaf_hash,
            frontier: h.frontier.to_bytes(),
        }))
    }
    async fn checkpoints(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .0
            .checkpoints()
            .await?
            .into_iter()
            .map(|c| c.signed)
            .collect())
    }
}

impl CheckpointStore for Adapter {
    type Error = StoreError;
    async fn head(&self) -> Result<Frontier, StoreError> {
        Ok(self
            .0
            .audit_head()
            .await?
            .map(|h| h.frontier)
            .unwrap_or_default())
    }
    async fn latest_checkpoint(&self) -> Result<Option<(u64, i64)>, StoreError> {
        Ok(self
            .0
            .checkpoints()
            .await?
            .last()
            .map(|c| (c.tree_size, c.at_millis)))
    }
    async fn insert_checkpoint(&self, size: u64, at: i64, signed: &[u8]) -> Result<(), StoreError> {
        self.0.insert_checkpoint(size, at, signed).await
    }
}

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
                     DROP TRIGGER audit_node_no_update; DROP TRIGGER audit_node_no_delete;",
                )
                .await
            }
            Backend::Postgres => {
                self.exec(
                    "DROP TRIGGER audit_log_append_only ON audit_log; \
                     DROP TRIGGER audit_node_append_only ON audit_node; \
                     DROP TRIGGER audit_log_no_truncate ON audit_log;",
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
    store: Adapter,
    key: CheckpointKey,
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
        let adapter = Adapter(store.clone());
        let cfg = CheckpointerConfig {
            origin: ORIGIN.into(),
            policy: Policy::default(),
            dir: db.checkpoint_dir(),
            tick: std::time::Duration::from_secs(1),
        };
        let mut cp = Checkpointer::new(
            Adapter(store.clone()),
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
        Some(Fixture {
            db,
            store: adapter,
            key,
        })
    }

    async fn verify(&self) -> Result<perimeter_audit::trail::Report, VerifyError> {
        let log = read_log(&self.db.checkpoint_dir()).unwrap();
        verify_store(&self.store, &self.key, &log, 7).await
    }

    async fn done(self) {
        self.store.0.close().await;
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
    check(err);
    f.done().await;
}

async fn untouched_trail_verifies_and_proves(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    let r = f.verify().await.unwrap();
    assert_eq!(r.summary.records, 100);
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
    // A stored interior node altered.
    scenario(
        backend,
        "UPDATE audit_node SET hash = leaf_hash FROM audit_log WHERE audit_log.seq = 0 AND audit_node.level = 2 AND audit_node.idx = 3",
        |e| assert_eq!(e, VerifyError::Node { level: 2, index: 3 }),
    )
    .await;
}

async fn inserted_row_is_caught(backend: Backend) {
    let Some(f) = Fixture::new(backend).await else {
        return;
    };
    // A well-formed, correctly chained record appended behind the store's back.
    let last = f.store.0.audit_records(99, 1).await.unwrap().remove(0);
    let ev = event(1000);
    let forged = AuditRecord::next(
        Some((last.seq, last.leaf_hash)),
        ev.at_millis,
        ev.canonical_bytes(),
    );
    let mut c = f.db.raw().await;
    sqlx::query(
        "INSERT INTO audit_log (seq, prev_hash, at_millis, event, leaf_hash, patient_id, actor_id, action) \
         VALUES ($1, $2, $3, $4, $5, NULL, NULL, 'read')",
    )
    .bind(forged.seq as i64)
    .bind(forged.prev_hash.to_vec())
    .bind(forged.at_millis)
    .bind(forged.event.clone())
    .bind(forged.leaf_hash.to_vec())
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();
    let err = f.verify().await.unwrap_err();
    assert!(
        matches!(err, VerifyError::MissingNode { .. } | VerifyError::Head(_)),
        "{err}"
    );
    f.done().await;
}

/// Rewrites every audit table with one event changed and everything re-hashed (records, nodes,
/// head), optionally removing the database's checkpoints. Only signed checkpoints can tell.
async fn rewrite_trail(f: &Fixture, drop_db_checkpoints: bool) {
    let records = f.store.0.audit_records(0, 1000).await.unwrap();
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
        sqlx::query(
            "INSERT INTO audit_log (seq, prev_hash, at_millis, event, leaf_hash, patient_id, actor_id, action) \
             VALUES ($1, $2, $3, $4, $5, NULL, NULL, 'read')",
        )
        .bind(r.seq as i64)
        .bind(r.prev_hash.to_vec())
        .bind(r.at_millis)
        .bind(r.event.clone())
        .bind(r.leaf_hash.to_vec())
        .execute(&mut *tx)
        .await
        .unwrap();
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
    verify_store(&f.store, &f.key, "", 64).await.unwrap();

    // A forger who signs new checkpoints with their own key is refused.
    let forger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let head = f.store.0.audit_head().await.unwrap().unwrap();
    let fake = perimeter_audit::schedule::checkpoint_for_head(
        ORIGIN,
        &head.frontier.to_bytes(),
        1,
        &forger,
    )
    .unwrap();
    f.store
        .0
        .insert_checkpoint(head.size, 1, fake.text().as_bytes())
        .await
        .unwrap();
    let err = verify_store(&f.store, &f.key, "", 64).await.unwrap_err();
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
    inserted_row_is_caught(Backend::Sqlite).await;
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
    inserted_row_is_caught(Backend::Postgres).await;
}

#[tokio::test]
async fn postgres_rehashed_forgery_is_caught() {
    rehashed_forgery_is_caught_by_the_checkpoint_file(Backend::Postgres).await;
}

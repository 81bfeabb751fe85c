//! The audit group committer's batches on SQLite, written by one direct connection.
//!
//! Standalone audit events (log-ins, denials, AI calls, exports) are batched by the group
//! committer into one transaction per batch. Through sqlx a batch is six round trips to the
//! driver's worker thread (BEGIN IMMEDIATE, the head read, two INSERTs, the head update,
//! COMMIT), each an async hand-off and a thread switch; under 5,000 appends/s on two cores
//! those hand-offs, not the fsync, set the tail latency. Here a batch is one synchronous
//! function on a blocking thread with a dedicated `rusqlite` connection (the same bundled
//! SQLite as sqlx's) and cached prepared statements.
//!
//! The transaction is the one [`crate::db::WriteTx`] writes: `BEGIN IMMEDIATE` (so the head
//! read happens under the write lock, shared with every other connection and process on the
//! file), the records computed by [`HeadState::push`], their interior nodes, the new head,
//! `COMMIT` with `synchronous = FULL` (the batch is durable when the callers hear of it). If
//! anything fails nothing commits and every caller of the batch gets the error; the connection
//! is then dropped and the next batch opens a new one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use perimeter_audit::merkle::Node;
use perimeter_audit::query::IndexColumns;
use perimeter_audit::{AuditEvent, AuditRecord};
use perimeter_domain::SharedClock;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::db::{HeadState, to_i64};
use crate::native::from_rusqlite;
use crate::{Backend, StoreError};

/// How long a WAL restart waits for other writers and readers before giving up.
const RESTART_BUSY: Duration = Duration::from_millis(50);

/// Writes audit batches to one SQLite file.
pub(crate) struct NativeAppender {
    path: PathBuf,
    target: String,
    busy: Duration,
    /// `PRAGMA max_page_count` of the store's connections (its size cap), if any.
    max_pages: Option<u64>,
    clock: SharedClock,
    /// Opened at the first batch; dropped after a failed one.
    conn: Mutex<Option<Connection>>,
}

impl std::fmt::Debug for NativeAppender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeAppender")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl NativeAppender {
    /// Prepares appends to `path` (nothing is opened until the first batch).
    pub(crate) fn new(
        path: &Path,
        target: String,
        busy: Duration,
        max_pages: Option<u64>,
        clock: SharedClock,
    ) -> Arc<NativeAppender> {
        Arc::new(NativeAppender {
            path: path.to_owned(),
            target,
            busy,
            max_pages,
            clock,
            conn: Mutex::new(None),
        })
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        from_rusqlite(e, &self.target)
    }

    /// A read-write connection with the settings of the store's own connections
    /// ([`crate::db::sqlite_pragmas`]).
    fn open(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| self.err(e))?;
        conn.busy_timeout(self.busy).map_err(|e| self.err(e))?;
        let mut pragmas = crate::db::sqlite_pragmas(self.busy.as_millis());
        if let Some(pages) = self.max_pages {
            pragmas.push_str(&format!(" PRAGMA max_page_count = {pages};"));
        }
        // Some of these pragmas answer with a row; step through every statement's rows.
        for sql in pragmas.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let mut stmt = conn.prepare(sql).map_err(|e| self.err(e))?;
            let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
            while rows.next().map_err(|e| self.err(e))?.is_some() {}
        }
        Ok(conn)
    }

    /// Drops the connection (the next batch opens a new one).
    pub(crate) fn close(&self) {
        *self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// Runs `f` with the writer's connection (opened if there is none) on a blocking thread.
    /// After a failure the connection is dropped: the next call opens a new one, in case the
    /// failure left it in a transaction or with other settings.
    async fn with_conn<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&NativeAppender, &mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut slot = me
                .conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut conn = match slot.take() {
                Some(c) => c,
                None => me.open()?,
            };
            let out = f(&me, &mut conn);
            if out.is_ok() {
                *slot = Some(conn);
            }
            out
        })
        .await
        .map_err(|_| StoreError::Unavailable {
            backend: Backend::Sqlite,
            target: self.target.clone(),
            detail: "the audit writing thread stopped".into(),
        })?
    }

    /// Appends `events` in one durable transaction on a blocking thread; returns their
    /// sequence numbers.
    pub(crate) async fn append(
        self: &Arc<Self>,
        events: Vec<AuditEvent>,
    ) -> Result<Vec<u64>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.with_conn(move |me, conn| me.write(conn, &events))
            .await
    }

    /// Restarts the write-ahead log (`PRAGMA wal_checkpoint(RESTART)`) on this connection,
    /// between batches: writers wait while it copies the frames left and syncs the database,
    /// and it gives up after [`RESTART_BUSY`] if readers still use the log (the next try comes
    /// from the background task). Returns SQLite's (busy, log pages, pages checkpointed).
    pub(crate) async fn restart_wal(self: &Arc<Self>) -> Result<(i64, i64, i64), StoreError> {
        self.with_conn(|me, conn| {
            conn.busy_timeout(RESTART_BUSY).map_err(|e| me.err(e))?;
            let out = conn
                .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(|e| me.err(e))?;
            conn.busy_timeout(me.busy).map_err(|e| me.err(e))?;
            Ok(out)
        })
        .await
    }

    /// The batch's transaction.
    fn write(&self, conn: &mut Connection, events: &[AuditEvent]) -> Result<Vec<u64>, StoreError> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let mut head = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT size, last_leaf_hash, frontier FROM audit_head WHERE id = 1",
                )
                .map_err(|e| self.err(e))?;
            let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
            let row = rows
                .next()
                .map_err(|e| self.err(e))?
                .ok_or_else(|| StoreError::Corrupt("the audit head row is missing".into()))?;
            let size: i64 = row
                .get(0)
                .map_err(|_| StoreError::Corrupt("audit head size cannot be read".into()))?;
            let last: Option<Vec<u8>> = row
                .get(1)
                .map_err(|_| StoreError::Corrupt("audit head hash cannot be read".into()))?;
            let frontier: Vec<u8> = row
                .get(2)
                .map_err(|_| StoreError::Corrupt("audit frontier cannot be read".into()))?;
            HeadState::from_columns(size, last.as_deref(), &frontier)
                .map_err(StoreError::Corrupt)?
        };
        let mut records: Vec<(AuditRecord, IndexColumns)> = Vec::with_capacity(events.len());
        let mut nodes: Vec<Node> = Vec::new();
        let mut seqs = Vec::with_capacity(events.len());
        for event in events {
            let record = head.push(event, self.clock.now_millis(), &mut nodes)?;
            seqs.push(record.seq);
            records.push((record, IndexColumns::of(event)));
        }
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO audit_log (seq, prev_hash, at_millis, event, leaf_hash, patient_id, actor_id, action) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(|e| self.err(e))?;
            for (r, cols) in &records {
                insert
                    .execute((
                        to_i64(r.seq)?,
                        r.prev_hash.as_slice(),
                        r.at_millis,
                        r.event.as_slice(),
                        r.leaf_hash.as_slice(),
                        cols.patient_id.as_deref(),
                        cols.actor_id.as_deref(),
                        cols.action.as_str(),
                    ))
                    .map_err(|e| self.err(e))?;
            }
            let mut insert_node = tx
                .prepare_cached("INSERT INTO audit_node (level, idx, hash) VALUES (?1, ?2, ?3)")
                .map_err(|e| self.err(e))?;
            for n in &nodes {
                insert_node
                    .execute((i64::from(n.level), to_i64(n.index)?, n.hash.as_slice()))
                    .map_err(|e| self.err(e))?;
            }
            let mut update = tx
                .prepare_cached(
                    "UPDATE audit_head SET size = ?1, last_leaf_hash = ?2, frontier = ?3 WHERE id = 1",
                )
                .map_err(|e| self.err(e))?;
            update
                .execute((
                    to_i64(head.size)?,
                    head.last.as_ref().map(|h| h.as_slice()),
                    head.frontier.to_bytes(),
                ))
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(seqs)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use perimeter_audit::{Action, Actor, AuditEvent, GENESIS_HASH, ObjectRef, Outcome};
    use perimeter_crypto::KeyRing;
    use perimeter_domain::{ManualClock, StaffId};

    use super::*;
    use crate::{DatabaseUrl, Store, StoreOptions};

    fn login(at: i64) -> AuditEvent {
        AuditEvent {
            at_millis: at,
            actor: Actor::User {
                user: StaffId::new(),
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
            client_addr: None,
            user_agent: None,
            request_id: None,
        }
    }

    async fn store_at(path: &Path, cap: Option<u64>, busy: Duration) -> Store {
        let mut opts = StoreOptions::new(DatabaseUrl::Sqlite(path.to_owned()));
        opts.sqlite_max_bytes = cap;
        opts.busy_timeout = busy;
        let clock: SharedClock = Arc::new(ManualClock::at_epoch_2026());
        let store = Store::connect(&opts, KeyRing::generate().unwrap(), clock)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    }

    fn appender(store: &Store) -> Arc<NativeAppender> {
        store.inner.appender.clone().unwrap()
    }

    fn pragma(conn: &Connection, name: &str) -> i64 {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn the_writer_has_the_settings_of_the_store_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let store = store_at(&path, Some(64 << 20), Duration::from_millis(1234)).await;
        let a = appender(&store);
        a.append(vec![login(1)]).await.unwrap();
        let slot = a.conn.lock().unwrap();
        let conn = slot.as_ref().unwrap();
        // FULL: every commit fsyncs the write-ahead log before the callers hear of it.
        assert_eq!(pragma(conn, "synchronous"), 2);
        assert_eq!(pragma(conn, "foreign_keys"), 1);
        assert_eq!(pragma(conn, "secure_delete"), 1);
        assert_eq!(pragma(conn, "busy_timeout"), 1234);
        assert_eq!(pragma(conn, "max_page_count"), (64 << 20) / 4096);
        assert_eq!(
            pragma(conn, "wal_autocheckpoint"),
            i64::from(crate::db::WAL_AUTOCHECKPOINT_PAGES)
        );
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    /// The writer and the store's transactions append to one chain and one tree.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn direct_batches_and_pool_transactions_make_one_trail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let store = store_at(&path, None, Duration::from_secs(5)).await;
        let a = appender(&store);
        let mut tasks = Vec::new();
        for t in 0..4_i64 {
            let (store, a) = (store.clone(), a.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    if (t + i) % 2 == 0 {
                        a.append(vec![login(i), login(i + 1)]).await.unwrap();
                    } else {
                        let mut w = store.begin_write().await.unwrap();
                        w.audit(&login(i)).await.unwrap();
                        w.commit().await.unwrap();
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let records = store.audit_records(0, 10_000).await.unwrap();
        assert_eq!(records.len(), 2 * 50 + 50);
        let mut prev = GENESIS_HASH;
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.seq, i as u64);
            assert_eq!(r.prev_hash, prev);
            prev = r.leaf_hash;
        }
        let head = store.audit_head().await.unwrap().unwrap();
        let leaves: Vec<_> = records.iter().map(|r| r.leaf_hash).collect();
        assert_eq!(
            head.frontier.root(),
            perimeter_audit::merkle::root_of(&leaves)
        );
        // Every complete subtree's node was written, with its hash (proofs and the verifier
        // read them).
        let mut level = 1_u32;
        while (1_usize << level) <= leaves.len() {
            let width = 1_usize << level;
            for index in 0..leaves.len() / width {
                let want =
                    perimeter_audit::merkle::root_of(&leaves[index * width..(index + 1) * width]);
                let got = store.audit_node(level, index as u64).await.unwrap();
                assert_eq!(got, Some(want), "node {level}/{index}");
            }
            level += 1;
        }
    }

    #[tokio::test]
    async fn a_locked_file_fails_the_batch_whole_and_the_next_one_goes_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let store = store_at(&path, None, Duration::from_millis(150)).await;
        let a = appender(&store);
        assert_eq!(a.append(vec![login(1)]).await.unwrap(), vec![0]);
        let locker = Connection::open(&path).unwrap();
        locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let err = a.append(vec![login(2), login(3)]).await.unwrap_err();
        assert!(matches!(err, StoreError::Busy), "{err}");
        locker.execute_batch("ROLLBACK").unwrap();
        assert_eq!(
            a.append(vec![login(4), login(5)]).await.unwrap(),
            vec![1, 2]
        );
        assert_eq!(store.audit_head().await.unwrap().unwrap().size, 3);
    }

    #[tokio::test]
    async fn a_full_file_fails_the_batch_with_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let store = store_at(&path, None, Duration::from_secs(5)).await;
        store.close().await;
        let size = std::fs::metadata(&path).unwrap().len()
            + std::fs::metadata(path.with_extension("db-wal"))
                .map(|m| m.len())
                .unwrap_or(0);
        let capped = store_at(&path, Some(size + 64 * 1024), Duration::from_secs(5)).await;
        let a = appender(&capped);
        let mut appended = 0_u64;
        let err = loop {
            match a.append((0..10).map(login).collect()).await {
                Ok(seqs) => {
                    assert_eq!(seqs.first(), Some(&appended));
                    appended += 10;
                }
                Err(e) => break e,
            }
            assert!(appended < 100_000, "the cap was never reached");
        };
        assert!(matches!(err, StoreError::Full), "{err}");
        assert!(appended > 0, "batches that fit were written");
        let head = capped.audit_head().await.unwrap().unwrap();
        assert_eq!(head.size, appended, "the failed batch left no record");
        assert_eq!(
            capped.audit_records(0, 100_000).await.unwrap().len() as u64,
            appended
        );
    }

    /// A restart lets the next batch write from the log's start: the log stops growing with
    /// the trail (passive checkpoints alone never finish under a steady stream of commits).
    #[tokio::test]
    async fn restarting_the_wal_starts_the_log_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let store = store_at(&path, None, Duration::from_secs(5)).await;
        let a = appender(&store);
        for i in 0..50 {
            a.append((0..20).map(|k| login(i * 20 + k)).collect())
                .await
                .unwrap();
        }
        let log_pages = |conn: &Connection| -> i64 {
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
                .unwrap()
        };
        let before = log_pages(&Connection::open(&path).unwrap());
        assert!(before > 50, "the batches are in the log ({before} pages)");
        let (busy, log, done) = a.restart_wal().await.unwrap();
        assert_eq!(busy, 0);
        assert_eq!(log, done, "every frame was copied to the database");
        a.append(vec![login(9_999)]).await.unwrap();
        let after = log_pages(&Connection::open(&path).unwrap());
        assert!(
            after < 20,
            "the next batch wrote from the start ({after} pages)"
        );
        // The trail is whole and the store reads it.
        assert_eq!(store.audit_head().await.unwrap().unwrap().size, 1001);
        assert_eq!(store.audit_records(0, 2000).await.unwrap().len(), 1001);
    }

    #[tokio::test]
    async fn a_closed_store_refuses_standalone_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_at(&dir.path().join("e.db"), None, Duration::from_secs(5)).await;
        store.append_audit(&[login(1)]).await.unwrap();
        store.close().await;
        assert!(store.append_audit(&[login(2)]).await.is_err());
    }
}

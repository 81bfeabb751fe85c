//! Direct reads of a SQLite audit trail for verification, on blocking threads.
//!
//! `perimeter audit verify` reads every record and interior node once. Through sqlx each row
//! is handed from the driver's worker thread to the async task and decoded into a generic
//! `AnyRow` (two copies of every blob, a thread switch per page of rows); reading alone topped
//! out near 130,000 records/s, below the 200,000/s the verifier must reach. Here a page is read
//! by one synchronous `rusqlite` statement on a blocking thread and decoded straight into
//! [`StoredRecord`]s. Only read-only [`crate::AuditReader`]s of a SQLite file use it (from
//! `AuditReader::connect`, and a store's `verification_reader`); the
//! SQL and the decoding rules (every malformed column is [`StoreError::Corrupt`], naming the
//! column, never a value) are those of the sqlx path, and a test compares the two.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use perimeter_audit::query::IndexColumns;
use perimeter_audit::verify::StoredRecord;
use perimeter_audit::{AuditRecord, Hash32};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Row};

use crate::{Backend, StoreError};

/// Idle connections kept (the verifier reads records and nodes concurrently).
const KEEP: usize = 4;

/// A read-only SQLite database file, opened on demand by blocking threads.
pub(crate) struct NativeTrail {
    path: PathBuf,
    target: String,
    busy: Duration,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for NativeTrail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeTrail")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl NativeTrail {
    /// Prepares reads of `path` (read-only; nothing is opened until the first read).
    pub(crate) fn new(path: &Path, target: String, busy: Duration) -> Arc<NativeTrail> {
        Arc::new(NativeTrail {
            path: path.to_owned(),
            target,
            busy,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        from_rusqlite(e, &self.target)
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| self.err(e))?;
        conn.busy_timeout(self.busy).map_err(|e| self.err(e))?;
        Ok(conn)
    }

    /// Drops the idle connections (a later read opens a new one).
    pub(crate) fn close(&self) {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// Runs `f` with an idle connection (or a new one) on the calling thread.
    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let taken = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let conn = match taken {
            Some(c) => c,
            None => self.open()?,
        };
        let out = f(&conn);
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < KEEP {
            idle.push(conn);
        }
        out
    }

    /// Runs `f` on a blocking thread.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&NativeTrail) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|_| StoreError::Unavailable {
                backend: Backend::Sqlite,
                target: self.target.clone(),
                detail: "the database reading thread stopped".into(),
            })?
    }

    /// Records from `from_seq` on, at most `limit`, in order, with their query columns.
    pub(crate) async fn records(
        self: &Arc<Self>,
        from_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        self.blocking(move |me| {
            me.with(|conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT seq, prev_hash, at_millis, event, leaf_hash, patient_id, actor_id, action \
                         FROM audit_log WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
                    )
                    .map_err(|e| me.err(e))?;
                let mut rows = stmt
                    .query((from_seq, i64::from(limit)))
                    .map_err(|e| me.err(e))?;
                let mut out = Vec::with_capacity(limit.min(65_536) as usize);
                while let Some(row) = rows.next().map_err(|e| me.err(e))? {
                    out.push(StoredRecord {
                        record: AuditRecord {
                            seq: u64_at(row, 0, "seq")?,
                            prev_hash: hash_at(row, 1, "prev_hash")?,
                            at_millis: i64_at(row, 2, "at_millis")?,
                            event: blob_at(row, 3, "event")?,
                            leaf_hash: hash_at(row, 4, "leaf_hash")?,
                        },
                        index: IndexColumns {
                            patient_id: opt_text_at(row, 5, "patient_id")?,
                            actor_id: opt_text_at(row, 6, "actor_id")?,
                            action: text_at(row, 7, "action")?,
                        },
                    });
                }
                Ok(out)
            })
        })
        .await
    }

    /// Nodes `from..to` of one level that exist, ascending (level 0: the records' leaf hashes).
    pub(crate) async fn nodes(
        self: &Arc<Self>,
        level: u32,
        from: i64,
        to: i64,
    ) -> Result<Vec<(u64, Hash32)>, StoreError> {
        self.blocking(move |me| {
            me.with(|conn| {
                if level == 0 {
                    let mut stmt = conn
                        .prepare_cached(
                            "SELECT seq, leaf_hash FROM audit_log WHERE seq >= ?1 AND seq < ?2 ORDER BY seq",
                        )
                        .map_err(|e| me.err(e))?;
                    let rows = stmt.query((from, to)).map_err(|e| me.err(e))?;
                    me.node_rows(rows)
                } else {
                    let mut stmt = conn
                        .prepare_cached(
                            "SELECT idx, hash FROM audit_node WHERE level = ?1 AND idx >= ?2 AND idx < ?3 ORDER BY idx",
                        )
                        .map_err(|e| me.err(e))?;
                    let rows = stmt
                        .query((i64::from(level), from, to))
                        .map_err(|e| me.err(e))?;
                    me.node_rows(rows)
                }
            })
        })
        .await
    }

    /// Decodes `(index, hash)` rows.
    fn node_rows(&self, mut rows: rusqlite::Rows<'_>) -> Result<Vec<(u64, Hash32)>, StoreError> {
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            out.push((u64_at(row, 0, "idx")?, hash_at(row, 1, "hash")?));
        }
        Ok(out)
    }

    /// The given nodes that exist (level 0: the records' leaf hashes), one indexed point read
    /// each on one connection (an inclusion proof needs O(log n) of them).
    pub(crate) async fn nodes_by_id(
        self: &Arc<Self>,
        ids: Vec<(u32, i64)>,
    ) -> Result<Vec<(u32, u64, Hash32)>, StoreError> {
        self.blocking(move |me| {
            me.with(|conn| {
                let mut leaf = conn
                    .prepare_cached("SELECT leaf_hash FROM audit_log WHERE seq = ?1")
                    .map_err(|e| me.err(e))?;
                let mut inner = conn
                    .prepare_cached("SELECT hash FROM audit_node WHERE level = ?1 AND idx = ?2")
                    .map_err(|e| me.err(e))?;
                let mut out = Vec::with_capacity(ids.len());
                for (level, index) in ids {
                    let mut rows = if level == 0 {
                        leaf.query([index])
                    } else {
                        inner.query((i64::from(level), index))
                    }
                    .map_err(|e| me.err(e))?;
                    if let Some(row) = rows.next().map_err(|e| me.err(e))? {
                        let idx =
                            u64::try_from(index).map_err(|_| corrupt("idx", "is negative"))?;
                        out.push((level, idx, hash_at(row, 0, "hash")?));
                    }
                }
                Ok(out)
            })
        })
        .await
    }
}

fn corrupt(name: &str, what: &str) -> StoreError {
    StoreError::Corrupt(format!("column {name} {what}"))
}

fn i64_at(row: &Row<'_>, i: usize, name: &str) -> Result<i64, StoreError> {
    match row.get_ref(i) {
        Ok(ValueRef::Integer(v)) => Ok(v),
        _ => Err(corrupt(name, "cannot be read")),
    }
}

fn u64_at(row: &Row<'_>, i: usize, name: &str) -> Result<u64, StoreError> {
    u64::try_from(i64_at(row, i, name)?).map_err(|_| corrupt(name, "is negative"))
}

/// A blob column's bytes. A value an editor stored as text is read as its bytes, so that the
/// verifier reports what it means for the record (its content no longer matches its hash)
/// rather than a type error.
fn blob_ref<'a>(row: &'a Row<'_>, i: usize, name: &str) -> Result<&'a [u8], StoreError> {
    match row.get_ref(i) {
        Ok(ValueRef::Blob(b) | ValueRef::Text(b)) => Ok(b),
        _ => Err(corrupt(name, "cannot be read")),
    }
}

fn blob_at(row: &Row<'_>, i: usize, name: &str) -> Result<Vec<u8>, StoreError> {
    blob_ref(row, i, name).map(<[u8]>::to_vec)
}

fn hash_at(row: &Row<'_>, i: usize, name: &str) -> Result<Hash32, StoreError> {
    <[u8; 32]>::try_from(blob_ref(row, i, name)?).map_err(|_| corrupt(name, "is not 32 bytes"))
}

/// A text column (bytes stored as a blob are read as text when they are UTF-8, so an edited
/// query column is reported as disagreeing with its event).
fn text_at(row: &Row<'_>, i: usize, name: &str) -> Result<String, StoreError> {
    match row.get_ref(i) {
        Ok(ValueRef::Text(t) | ValueRef::Blob(t)) => std::str::from_utf8(t)
            .map(str::to_owned)
            .map_err(|_| corrupt(name, "cannot be read")),
        _ => Err(corrupt(name, "cannot be read")),
    }
}

fn opt_text_at(row: &Row<'_>, i: usize, name: &str) -> Result<Option<String>, StoreError> {
    match row.get_ref(i) {
        Ok(ValueRef::Null) => Ok(None),
        _ => text_at(row, i, name).map(Some),
    }
}

/// Maps a rusqlite error as [`StoreError::from_sqlx`] maps SQLite's: busy and locked are
/// [`StoreError::Busy`], I/O errors and a missing file make the database unavailable; the
/// message carries SQLite's result code, never values.
pub(crate) fn from_rusqlite(e: rusqlite::Error, target: &str) -> StoreError {
    use rusqlite::ErrorCode as C;
    match e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            C::DatabaseBusy | C::DatabaseLocked => StoreError::Busy,
            C::DiskFull => StoreError::Full,
            C::SystemIoFailure | C::CannotOpen => StoreError::Unavailable {
                backend: Backend::Sqlite,
                target: target.to_owned(),
                detail: format!("SQLite error {}", f.extended_code),
            },
            _ => StoreError::Database {
                code: f.extended_code.to_string(),
                message: format!("{:?}", f.code),
            },
        },
        other => StoreError::Database {
            code: String::new(),
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trail_with(rows: &str) -> (tempfile::TempDir, Arc<NativeTrail>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE audit_log (seq BIGINT PRIMARY KEY, prev_hash BLOB, at_millis BIGINT, \
             event BLOB, leaf_hash BLOB, patient_id TEXT, actor_id TEXT, action TEXT); \
             CREATE TABLE audit_node (level BIGINT, idx BIGINT, hash BLOB); {rows}"
        ))
        .unwrap();
        drop(conn);
        let native = NativeTrail::new(&path, "t.db".into(), Duration::from_secs(1));
        (dir, native)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn well_formed_rows_are_read_and_malformed_ones_name_the_column() {
        let (_dir, t) = trail_with(
            "INSERT INTO audit_log VALUES (0, zeroblob(32), 5, x'7b7d', zeroblob(32), NULL, 'a', 'read'); \
             INSERT INTO audit_log VALUES (1, zeroblob(32), 6, 'text event', zeroblob(31), 'p', 'a', 'read'); \
             INSERT INTO audit_node VALUES (1, 0, zeroblob(32));",
        );
        let rt = runtime();
        let first = rt.block_on(t.records(0, 1)).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].record.seq, 0);
        assert_eq!(first[0].record.event, b"{}");
        assert_eq!(first[0].index.patient_id, None);
        assert_eq!(first[0].index.action, "read");
        let err = rt.block_on(t.records(0, 10)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "stored data is malformed: column leaf_hash is not 32 bytes"
        );
        let nodes = rt.block_on(t.nodes(1, 0, 5)).unwrap();
        assert_eq!(nodes, vec![(0, [0u8; 32])]);
        let found = rt
            .block_on(t.nodes_by_id(vec![(1, 0), (1, 1), (0, 0)]))
            .unwrap();
        assert_eq!(found, vec![(1, 0, [0u8; 32]), (0, 0, [0u8; 32])]);
    }

    #[test]
    fn a_negative_seq_is_corruption_and_a_missing_file_is_unavailable() {
        let (dir, t) = trail_with(
            "INSERT INTO audit_log VALUES (-1, zeroblob(32), 5, x'00', zeroblob(32), NULL, 'a', 'read');",
        );
        let rt = runtime();
        let err = rt.block_on(t.records(-5, 10)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "stored data is malformed: column seq is negative"
        );
        let gone = NativeTrail::new(
            &dir.path().join("missing.db"),
            "missing.db".into(),
            Duration::from_secs(1),
        );
        assert!(matches!(
            rt.block_on(gone.records(0, 1)).unwrap_err(),
            StoreError::Unavailable { .. }
        ));
    }
}

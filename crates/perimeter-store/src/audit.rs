//! The audit trail's storage: group-committed appends, reads, Merkle nodes, checkpoints and
//! queries, and [`AuditReader`], a read-only handle that needs no key ring (for an outside
//! auditor holding only the database and the public checkpoint key). There is deliberately no
//! update or delete (and the schema's triggers refuse both; the head may only advance).

use std::sync::Arc;
use std::time::Duration;

use perimeter_audit::checkpointer::CheckpointStore;
use perimeter_audit::group::GroupError;
use perimeter_audit::merkle::Frontier;
use perimeter_audit::proof::NodeId;
use perimeter_audit::query::{AuditQuery, IndexColumns};
use perimeter_audit::trail::TrailStore;
use perimeter_audit::verify::{HeadView, StoredRecord};
use perimeter_audit::{AuditEvent, AuditRecord, Hash32};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor};

use crate::db::{BatchError, Core, push_placeholders, sqlite_url, to_i64};
use crate::native::NativeTrail;
use crate::rows::{col, col_hash, col_u64};
use crate::{Backend, DatabaseUrl, Store, StoreError, StoreOptions};

/// The audit trail's current head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    /// Number of records.
    pub size: u64,
    /// Leaf hash of the last record.
    pub last_leaf_hash: Hash32,
    /// The Merkle frontier (gives the tree root).
    pub frontier: Frontier,
}

/// A stored signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The tree size it commits to.
    pub tree_size: u64,
    /// When it was written (ms).
    pub at_millis: i64,
    /// The signed note, as given.
    pub signed: Vec<u8>,
}

const RECORD_COLUMNS: &str =
    "seq, prev_hash, at_millis, event, leaf_hash, patient_id, actor_id, action";

fn decode_record(row: &AnyRow) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        seq: col_u64(row, "seq")?,
        prev_hash: col_hash(row, "prev_hash")?,
        at_millis: col(row, "at_millis")?,
        event: col(row, "event")?,
        leaf_hash: col_hash(row, "leaf_hash")?,
    })
}

fn decode_stored(row: &AnyRow) -> Result<StoredRecord, StoreError> {
    Ok(StoredRecord {
        record: decode_record(row)?,
        index: IndexColumns {
            patient_id: col(row, "patient_id")?,
            actor_id: col(row, "actor_id")?,
            action: col(row, "action")?,
        },
    })
}

/// The same record written again for each caller of a failed batch.
fn for_caller(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable {
            backend,
            target,
            detail,
        } => StoreError::Unavailable {
            backend: *backend,
            target: target.clone(),
            detail: detail.clone(),
        },
        StoreError::Busy => StoreError::Busy,
        StoreError::Full => StoreError::Full,
        StoreError::Conflict => StoreError::Conflict,
        StoreError::Duplicate { what } => StoreError::Duplicate { what: what.clone() },
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::Config(m) => StoreError::Config(m.clone()),
        StoreError::Database { code, message } => StoreError::Database {
            code: code.clone(),
            message: message.clone(),
        },
        other => StoreError::Database {
            code: String::new(),
            message: other.to_string(),
        },
    }
}

fn from_group(e: GroupError<BatchError>) -> StoreError {
    match e {
        GroupError::Append(e) => for_caller(&e),
        GroupError::Closed => StoreError::Corrupt(
            "the audit group committer has stopped (the runtime is shutting down)".into(),
        ),
        GroupError::Count { .. } => {
            StoreError::Corrupt("the audit batch returned the wrong number of records".into())
        }
    }
}

impl Store {
    /// Appends standalone events (no data access of their own: log-ins, denials, exports) in
    /// one transaction, shared with other callers' events through the group committer (one
    /// fsync per batch); returns their sequence numbers once durable. Events of one call are
    /// never split.
    pub async fn append_audit(&self, events: &[AuditEvent]) -> Result<Vec<u64>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        match &self.inner.group {
            Some(group) => group.append_all(events.to_vec()).await.map_err(from_group),
            None => crate::db::append_batch(self.core(), events).await,
        }
    }

    /// A read-only view of the audit tables over this store's pool.
    pub fn audit_reader(&self) -> AuditReader {
        AuditReader {
            native: None,
            core: self.core().clone(),
        }
    }

    /// A read-only view of the audit tables for reading the whole trail (verification) and
    /// proofs: on SQLite it reads records and nodes from the file directly, on read-only
    /// connections of its own (as [`AuditReader::connect`] does), which is several times faster
    /// than through the pool; everything else goes through the pool, as
    /// [`Store::audit_reader`]'s does.
    pub fn verification_reader(&self) -> AuditReader {
        AuditReader {
            native: self.inner.native.clone(),
            core: self.core().clone(),
        }
    }

    /// Records from `from_seq` on, at most `limit`, in order.
    pub async fn audit_records(
        &self,
        from_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(self
            .audit_reader()
            .records(from_seq, limit)
            .await?
            .into_iter()
            .map(|s| s.record)
            .collect())
    }

    /// The head, or `None` while the trail is empty.
    pub async fn audit_head(&self) -> Result<Option<AuditHead>, StoreError> {
        self.audit_reader().head().await
    }

    /// A Merkle node: level 0 is the leaf hash of record `index`; level ≥ 1 the stored
    /// interior node covering leaves `index·2^level .. (index+1)·2^level`.
    pub async fn audit_node(&self, level: u32, index: u64) -> Result<Option<Hash32>, StoreError> {
        self.audit_reader().node(level, index).await
    }

    /// Stores a signed checkpoint for `tree_size`; fails if one exists for that size.
    pub async fn insert_checkpoint(
        &self,
        tree_size: u64,
        at_millis: i64,
        signed: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_checkpoint (tree_size, at_millis, signed) VALUES ($1, $2, $3)",
        )
        .bind(to_i64(tree_size)?)
        .bind(at_millis)
        .bind(signed.to_vec())
        .execute(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Stores a signed checkpoint unless one exists for that size (another process won the
    /// race); returns whether it was stored.
    pub async fn insert_checkpoint_if_absent(
        &self,
        tree_size: u64,
        at_millis: i64,
        signed: &[u8],
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO audit_checkpoint (tree_size, at_millis, signed) VALUES ($1, $2, $3) ON CONFLICT (tree_size) DO NOTHING",
        )
        .bind(to_i64(tree_size)?)
        .bind(at_millis)
        .bind(signed.to_vec())
        .execute(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Every stored checkpoint, by tree size.
    pub async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.audit_reader().checkpoints_from(0).await
    }

    /// Records matching `q` with seq after `after_seq`, at most `limit`, in order.
    pub async fn audit_query(
        &self,
        q: &AuditQuery,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit_reader().query(q, after_seq, limit).await
    }

    /// Appends `event` (the query's own audit record) and reads one page of `q`, in one
    /// transaction: a query that cannot be audited returns nothing. Returns the page and the
    /// event's sequence number.
    pub async fn audit_query_audited(
        &self,
        event: &AuditEvent,
        q: &AuditQuery,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<(Vec<AuditRecord>, u64), StoreError> {
        let mut w = self.begin_write().await?;
        let seq = w.audit(event).await?;
        let rows = query_statement(q, after_seq, limit)?
            .fetch_all(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        let page = rows
            .iter()
            .map(decode_record)
            .collect::<Result<Vec<_>, _>>()?;
        w.commit().await?;
        Ok((page, seq))
    }
}

/// The fixed query SQL with `parameter IS NULL OR column = parameter` for each filter.
fn query_statement<'q>(
    q: &AuditQuery,
    after_seq: Option<u64>,
    limit: u32,
) -> Result<sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>, StoreError> {
    const SQL: &str = "SELECT seq, prev_hash, at_millis, event, leaf_hash FROM audit_log WHERE seq > $1 \
         AND ($2 IS NULL OR patient_id = $2) \
         AND ($3 IS NULL OR actor_id = $3) \
         AND ($4 IS NULL OR action = $4) \
         AND ($5 IS NULL OR at_millis >= $5) \
         AND ($6 IS NULL OR at_millis < $6) \
         ORDER BY seq LIMIT $7";
    let after = match after_seq {
        Some(s) => to_i64(s)?,
        None => -1,
    };
    Ok(sqlx::query(SQL)
        .bind(after)
        .bind(q.patient.map(|p| p.to_string()))
        .bind(q.user.map(|u| u.to_string()))
        .bind(q.action.map(|a| a.as_str().to_owned()))
        .bind(q.from_millis)
        .bind(q.to_millis)
        .bind(i64::from(limit)))
}

/// A read-only handle on the audit tables: records with their query columns, nodes, head,
/// checkpoints and queries. [`AuditReader::connect`] needs only the database URL — no key
/// ring — and opens the database read-only (SQLite `mode=ro`; PostgreSQL sessions with
/// `default_transaction_read_only`), so an outside auditor can verify a trail with nothing but
/// the database and the public checkpoint key. [`Store::audit_reader`] gives one over a
/// store's pool.
#[derive(Clone)]
pub struct AuditReader {
    core: Arc<Core>,
    /// Direct SQLite reads of records and nodes (a reader of a SQLite file opened by
    /// [`AuditReader::connect`]): verification reads the whole trail, and sqlx's row handoff
    /// and generic rows capped it below the 200,000 records/s target.
    native: Option<Arc<NativeTrail>>,
}

impl std::fmt::Debug for AuditReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditReader")
            .field("backend", &self.core.backend)
            .field("target", &self.core.target)
            .finish_non_exhaustive()
    }
}

impl AuditReader {
    /// Opens the database read-only. Fails clearly if it is missing or has no audit tables.
    pub async fn connect(opts: &StoreOptions) -> Result<AuditReader, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = opts.url.backend();
        let target = opts.url.to_string();
        let url = match &opts.url {
            DatabaseUrl::Sqlite(path) => {
                if !path.is_file() {
                    return Err(StoreError::Config(format!(
                        "no SQLite database at {}; give the database file with --database-url sqlite://PATH",
                        path.display()
                    )));
                }
                sqlite_url(path, "ro")?
            }
            DatabaseUrl::Postgres(_) => opts.url.expose(),
        };
        let busy_ms = opts.busy_timeout.as_millis();
        let pool: AnyPool = AnyPoolOptions::new()
            .max_connections(opts.max_connections.clamp(1, 4))
            .acquire_timeout(opts.acquire_timeout)
            // The verifier reads the next page while it checks one: no ping before each read.
            .test_before_acquire(false)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            conn.execute(format!("PRAGMA busy_timeout = {busy_ms};").as_str())
                                .await?;
                        }
                        Backend::Postgres => {
                            conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                                .await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| StoreError::from_sqlx(e, backend, &target))?;
        let native = match &opts.url {
            DatabaseUrl::Sqlite(path) => {
                Some(NativeTrail::new(path, target.clone(), opts.busy_timeout))
            }
            DatabaseUrl::Postgres(_) => None,
        };
        let reader = AuditReader {
            native,
            core: Arc::new(Core {
                pool,
                backend,
                target,
                clock: Arc::new(perimeter_domain::SystemClock),
            }),
        };
        if let Err(e) = reader.head().await {
            reader.close().await;
            return Err(match e {
                StoreError::Database { .. } => StoreError::Config(format!(
                    "{} has no Perimeter audit tables (not a Perimeter database, or never migrated)",
                    reader.core.target
                )),
                other => other,
            });
        }
        Ok(reader)
    }

    /// Connects read-only to `url` with default options.
    pub async fn connect_url(url: &DatabaseUrl) -> Result<AuditReader, StoreError> {
        let mut opts = StoreOptions::new(url.clone());
        opts.acquire_timeout = Duration::from_secs(10);
        Self::connect(&opts).await
    }

    /// Which backend.
    pub fn backend(&self) -> Backend {
        self.core.backend
    }

    /// Closes the pool (a reader from [`Store::audit_reader`] or [`Store::verification_reader`]
    /// shares the store's pool: do not close that one).
    pub async fn close(&self) {
        if let Some(native) = &self.native {
            native.close();
        }
        self.core.pool.close().await;
    }

    fn err(&self, e: sqlx::Error) -> StoreError {
        self.core.err(e)
    }

    /// Records from `from_seq` on, at most `limit`, in order, with their query columns.
    pub async fn records(
        &self,
        from_seq: u64,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        if let Some(native) = &self.native {
            return native.records(to_i64(from_seq)?, limit).await;
        }
        let rows = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2"
        ))
        .bind(to_i64(from_seq)?)
        .bind(i64::from(limit))
        .fetch_all(&self.core.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter().map(decode_stored).collect()
    }

    /// The head, or `None` while the trail is empty.
    pub async fn head(&self) -> Result<Option<AuditHead>, StoreError> {
        let row = sqlx::query("SELECT size, last_leaf_hash, frontier FROM audit_head WHERE id = 1")
            .fetch_optional(&self.core.pool)
            .await
            .map_err(|e| self.err(e))?
            .ok_or_else(|| StoreError::Corrupt("the audit head row is missing".into()))?;
        let head = crate::db::HeadState::from_row(&row).map_err(|e| match e {
            crate::db::HeadDecode::Sql(e) => self.err(e),
            crate::db::HeadDecode::Bad(m) => StoreError::Corrupt(m),
        })?;
        Ok(head.last.map(|last| AuditHead {
            size: head.size,
            last_leaf_hash: last,
            frontier: head.frontier,
        }))
    }

    /// One Merkle node (level 0: a record's leaf hash).
    pub async fn node(&self, level: u32, index: u64) -> Result<Option<Hash32>, StoreError> {
        if let Some(native) = &self.native {
            return Ok(native
                .nodes_by_id(vec![(level, to_i64(index)?)])
                .await?
                .first()
                .map(|n| n.2));
        }
        let row = if level == 0 {
            sqlx::query("SELECT leaf_hash AS hash FROM audit_log WHERE seq = $1")
                .bind(to_i64(index)?)
                .fetch_optional(&self.core.pool)
                .await
        } else {
            sqlx::query("SELECT hash FROM audit_node WHERE level = $1 AND idx = $2")
                .bind(i64::from(level))
                .bind(to_i64(index)?)
                .fetch_optional(&self.core.pool)
                .await
        }
        .map_err(|e| self.err(e))?;
        row.as_ref().map(|r| col_hash(r, "hash")).transpose()
    }

    /// Nodes `from..to` of one level that exist, ascending.
    pub async fn nodes(
        &self,
        level: u32,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, Hash32)>, StoreError> {
        if let Some(native) = &self.native {
            return native.nodes(level, to_i64(from)?, to_i64(to)?).await;
        }
        let rows = if level == 0 {
            sqlx::query(
                "SELECT seq AS idx, leaf_hash AS hash FROM audit_log WHERE seq >= $1 AND seq < $2 ORDER BY seq",
            )
            .bind(to_i64(from)?)
            .bind(to_i64(to)?)
            .fetch_all(&self.core.pool)
            .await
        } else {
            sqlx::query(
                "SELECT idx, hash FROM audit_node WHERE level = $1 AND idx >= $2 AND idx < $3 ORDER BY idx",
            )
            .bind(i64::from(level))
            .bind(to_i64(from)?)
            .bind(to_i64(to)?)
            .fetch_all(&self.core.pool)
            .await
        }
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| Ok((col_u64(r, "idx")?, col_hash(r, "hash")?)))
            .collect()
    }

    /// The given nodes that exist, in two statements (leaves, interior nodes).
    pub async fn nodes_by_id(&self, ids: &[NodeId]) -> Result<Vec<(NodeId, Hash32)>, StoreError> {
        if let Some(native) = &self.native {
            let wanted = ids
                .iter()
                .map(|i| Ok((i.level, to_i64(i.index)?)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            return Ok(native
                .nodes_by_id(wanted)
                .await?
                .into_iter()
                .map(|(level, index, h)| (NodeId { level, index }, h))
                .collect());
        }
        let mut out = Vec::with_capacity(ids.len());
        let leaves: Vec<u64> = ids
            .iter()
            .filter(|i| i.level == 0)
            .map(|i| i.index)
            .collect();
        let inner: Vec<NodeId> = ids.iter().filter(|i| i.level > 0).copied().collect();
        for chunk in leaves.chunks(500) {
            let mut sql =
                String::from("SELECT seq AS idx, leaf_hash AS hash FROM audit_log WHERE seq IN ");
            push_placeholders(&mut sql, 1, chunk.len());
            let mut q = sqlx::query(&sql);
            for i in chunk {
                q = q.bind(to_i64(*i)?);
            }
            for r in q
                .fetch_all(&self.core.pool)
                .await
                .map_err(|e| self.err(e))?
            {
                out.push((
                    NodeId {
                        level: 0,
                        index: col_u64(&r, "idx")?,
                    },
                    col_hash(&r, "hash")?,
                ));
            }
        }
        for chunk in inner.chunks(250) {
            let mut sql = String::from("SELECT level, idx, hash FROM audit_node WHERE ");
            for k in 0..chunk.len() {
                if k > 0 {
                    sql.push_str(" OR ");
                }
                sql.push_str(&format!(
                    "(level = ${} AND idx = ${})",
                    2 * k + 1,
                    2 * k + 2
                ));
            }
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(i64::from(id.level)).bind(to_i64(id.index)?);
            }
            for r in q
                .fetch_all(&self.core.pool)
                .await
                .map_err(|e| self.err(e))?
            {
                let level = u32::try_from(col_u64(&r, "level")?)
                    .map_err(|_| StoreError::Corrupt("node level out of range".into()))?;
                out.push((
                    NodeId {
                        level,
                        index: col_u64(&r, "idx")?,
                    },
                    col_hash(&r, "hash")?,
                ));
            }
        }
        Ok(out)
    }

    /// Stored checkpoints with a size of at least `min_size`, by size.
    pub async fn checkpoints_from(
        &self,
        min_size: u64,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT tree_size, at_millis, signed FROM audit_checkpoint WHERE tree_size >= $1 ORDER BY tree_size",
        )
        .bind(to_i64(min_size)?)
        .fetch_all(&self.core.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                Ok(StoredCheckpoint {
                    tree_size: col_u64(r, "tree_size")?,
                    at_millis: col(r, "at_millis")?,
                    signed: col(r, "signed")?,
                })
            })
            .collect()
    }

    /// The latest stored checkpoint.
    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let row = sqlx::query(
            "SELECT tree_size, at_millis, signed FROM audit_checkpoint ORDER BY tree_size DESC LIMIT 1",
        )
        .fetch_optional(&self.core.pool)
        .await
        .map_err(|e| self.err(e))?;
        row.map(|r| {
            Ok(StoredCheckpoint {
                tree_size: col_u64(&r, "tree_size")?,
                at_millis: col(&r, "at_millis")?,
                signed: col(&r, "signed")?,
            })
        })
        .transpose()
    }

    /// Records matching `q` with seq after `after_seq`, at most `limit`, in order.
    pub async fn query(
        &self,
        q: &AuditQuery,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = query_statement(q, after_seq, limit)?
            .fetch_all(&self.core.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(decode_record).collect()
    }
}

impl TrailStore for AuditReader {
    type Error = StoreError;
    async fn records(&self, from_seq: u64, limit: u32) -> Result<Vec<StoredRecord>, StoreError> {
        AuditReader::records(self, from_seq, limit).await
    }
    async fn node(&self, level: u32, index: u64) -> Result<Option<Hash32>, StoreError> {
        AuditReader::node(self, level, index).await
    }
    async fn nodes(
        &self,
        level: u32,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, Hash32)>, StoreError> {
        AuditReader::nodes(self, level, from, to).await
    }
    async fn nodes_by_id(&self, ids: &[NodeId]) -> Result<Vec<(NodeId, Hash32)>, StoreError> {
        AuditReader::nodes_by_id(self, ids).await
    }
    async fn head(&self) -> Result<Option<HeadView>, StoreError> {
        Ok(AuditReader::head(self).await?.map(|h| HeadView {
            size: h.size,
            last_leaf_hash: h.last_leaf_hash,
            frontier: h.frontier.to_bytes(),
        }))
    }
    async fn checkpoints(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .checkpoints_from(0)
            .await?
            .into_iter()
            .map(|c| c.signed)
            .collect())
    }
}

impl TrailStore for Store {
    type Error = StoreError;
    async fn records(&self, from_seq: u64, limit: u32) -> Result<Vec<StoredRecord>, StoreError> {
        self.audit_reader().records(from_seq, limit).await
    }
    async fn node(&self, level: u32, index: u64) -> Result<Option<Hash32>, StoreError> {
        self.audit_reader().node(level, index).await
    }
    async fn nodes(
        &self,
        level: u32,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, Hash32)>, StoreError> {
        self.audit_reader().nodes(level, from, to).await
    }
    async fn nodes_by_id(&self, ids: &[NodeId]) -> Result<Vec<(NodeId, Hash32)>, StoreError> {
        self.audit_reader().nodes_by_id(ids).await
    }
    async fn head(&self) -> Result<Option<HeadView>, StoreError> {
        TrailStore::head(&self.audit_reader()).await
    }
    async fn checkpoints(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        TrailStore::checkpoints(&self.audit_reader()).await
    }
}

/// The checkpointer's view of the store (`perimeter serve` and `perimeter audit checkpoint`).
impl CheckpointStore for Store {
    type Error = StoreError;
    async fn head(&self) -> Result<Frontier, StoreError> {
        Ok(self
            .audit_head()
            .await?
            .map(|h| h.frontier)
            .unwrap_or_default())
    }
    async fn latest_checkpoint(&self) -> Result<Option<(u64, i64)>, StoreError> {
        Ok(self
            .audit_reader()
            .latest_checkpoint()
            .await?
            .map(|c| (c.tree_size, c.at_millis)))
    }
    async fn insert_checkpoint(
        &self,
        size: u64,
        at_millis: i64,
        signed: &[u8],
    ) -> Result<bool, StoreError> {
        self.insert_checkpoint_if_absent(size, at_millis, signed)
            .await
    }
    async fn checkpoints_from(&self, min_size: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        Ok(self
            .audit_reader()
            .checkpoints_from(min_size)
            .await?
            .into_iter()
            .map(|c| (c.tree_size, c.signed))
            .collect())
    }
}

//! The store handle: connecting, migrating, schema status and write transactions.

use std::fmt;
use std::sync::Arc;

use perimeter_audit::merkle::Frontier;
use perimeter_audit::{AuditEvent, AuditRecord, Hash32};
use perimeter_crypto::KeyRing;
use perimeter_domain::SharedClock;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, Row};

use crate::{Backend, DatabaseUrl, StoreError, StoreOptions};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Version before.
    pub from_version: i64,
    /// Version after.
    pub to_version: i64,
    /// Versions applied now, ascending.
    pub applied: Vec<i64>,
}

/// The database schema compared with this build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStatus {
    /// No Perimeter tables yet.
    Empty {
        /// Migrations this build would apply.
        pending: Vec<i64>,
    },
    /// Every migration of this build is applied.
    Current {
        /// The version.
        version: i64,
    },
    /// Some migrations are not yet applied.
    Pending {
        /// The version now.
        version: i64,
        /// Versions to apply.
        pending: Vec<i64>,
    },
    /// The database has migrations this build does not know.
    Newer {
        /// The database's version.
        database: i64,
        /// The highest version this build knows.
        supported: i64,
    },
}

pub(crate) struct Inner {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    pub(crate) target: String,
    pub(crate) keys: KeyRing,
    pub(crate) clock: SharedClock,
}

/// The storage handle. Cheap to clone; holds the connection pool, the key ring and the clock,
/// and no other state, so several processes can share one PostgreSQL database.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.backend)
            .field("target", &self.inner.target)
            .field("keys", &self.inner.keys)
            .finish_non_exhaustive()
    }
}

fn sqlite_url(path: &std::path::Path) -> Result<String, StoreError> {
    let s = path
        .to_str()
        .ok_or_else(|| StoreError::Config("the SQLite database path must be valid UTF-8".into()))?;
    let encoded = s
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23");
    Ok(format!("sqlite://{encoded}?mode=rwc"))
}

impl Store {
    /// Connects (creating the SQLite file and its directory's file if absent). Does not migrate.
    pub async fn connect(
        opts: &StoreOptions,
        keys: KeyRing,
        clock: SharedClock,
    ) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = opts.url.backend();
        let target = opts.url.to_string();
        let url = match &opts.url {
            DatabaseUrl::Sqlite(path) => sqlite_url(path)?,
            DatabaseUrl::Postgres(_) => opts.url.expose(),
        };
        let busy_ms = opts.busy_timeout.as_millis();
        let pool = AnyPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            .test_before_acquire(true)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            format!(
                                "PRAGMA busy_timeout = {busy_ms}; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON; PRAGMA synchronous = NORMAL;"
                            )
                            .as_str(),
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| StoreError::from_sqlx(e, backend, &target))?;
        let store = Store {
            inner: Arc::new(Inner {
                pool,
                backend,
                target,
                keys,
                clock,
            }),
        };
        if backend == Backend::Sqlite {
            // WAL is a property of the file; setting it needs no other connection writing.
            let row = sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_one(&store.inner.pool)
                .await
                .map_err(|e| store.err(e))?;
            let mode: String = row.try_get(0).map_err(|e| store.err(e))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(journal_mode = %mode, "SQLite did not switch to WAL mode");
            }
        }
        Ok(store)
    }

    /// Which backend.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The key ring.
    pub fn keys(&self) -> &KeyRing {
        &self.inner.keys
    }

    /// The clock.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// The same database with another key ring (after a rotation added a KEK version).
    pub fn with_keys(&self, keys: KeyRing) -> Store {
        Store {
            inner: Arc::new(Inner {
                pool: self.inner.pool.clone(),
                backend: self.inner.backend,
                target: self.inner.target.clone(),
                keys,
                clock: self.inner.clock.clone(),
            }),
        }
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.inner.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(crate) fn err(&self, e: sqlx::Error) -> StoreError {
        StoreError::from_sqlx(e, self.inner.backend, &self.inner.target)
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    pub(crate) fn now(&self) -> i64 {
        self.inner.clock.now_millis()
    }

    fn migrator(&self) -> &'static Migrator {
        match self.inner.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// The highest migration version this build embeds.
    pub fn supported_schema_version(&self) -> i64 {
        self.migrator().iter().map(|m| m.version).max().unwrap_or(0)
    }

    async fn applied_versions(&self) -> Result<Option<Vec<(i64, bool)>>, StoreError> {
        let exists_sql = match self.inner.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
            }
        };
        let n: i64 = sqlx::query_scalar(exists_sql)
            .fetch_one(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Ok(None);
        }
        let rows = sqlx::query("SELECT version, CAST(CASE WHEN success THEN 1 ELSE 0 END AS BIGINT) FROM _sqlx_migrations ORDER BY version")
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push((
                r.try_get::<i64, _>(0).map_err(|e| self.err(e))?,
                r.try_get::<i64, _>(1).map_err(|e| self.err(e))? == 1,
            ));
        }
        Ok(Some(out))
    }

    /// Compares the database's schema with this build.
    pub async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        let known: Vec<i64> = self.migrator().iter().map(|m| m.version).collect();
        let supported = known.iter().copied().max().unwrap_or(0);
        let Some(applied) = self.applied_versions().await? else {
            return Ok(SchemaStatus::Empty { pending: known });
        };
        if applied.is_empty() {
            return Ok(SchemaStatus::Empty { pending: known });
        }
        let database = applied.iter().map(|(v, _)| *v).max().unwrap_or(0);
        if applied.iter().any(|(v, _)| !known.contains(v)) {
            return Ok(SchemaStatus::Newer {
                database,
                supported,
            });
        }
        if let Some((v, _)) = applied.iter().find(|(_, ok)| !ok) {
            return Err(StoreError::Migration(format!(
                "migration {v} is recorded as failed; restore the database from backup"
            )));
        }
        let pending: Vec<i64> = known
            .iter()
            .copied()
            .filter(|k| !applied.iter().any(|(v, _)| v == k))
            .collect();
        if pending.is_empty() {
            Ok(SchemaStatus::Current { version: database })
        } else {
            Ok(SchemaStatus::Pending {
                version: database,
                pending,
            })
        }
    }

    /// Applies pending migrations; refuses a database with a newer schema.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let status = self.schema_status().await?;
        let (from_version, pending) = match status {
            SchemaStatus::Newer {
                database,
                supported,
            } => {
                return Err(StoreError::SchemaTooNew {
                    database,
                    supported,
                });
            }
            SchemaStatus::Current { version } => (version, Vec::new()),
            SchemaStatus::Pending { version, pending } => (version, pending),
            SchemaStatus::Empty { pending } => (0, pending),
        };
        if !pending.is_empty() {
            self.migrator()
                .run(self.pool())
                .await
                .map_err(|e| match e {
                    sqlx::migrate::MigrateError::Execute(inner) => self.err(inner),
                    sqlx::migrate::MigrateError::VersionMissing(v) => StoreError::SchemaTooNew {
                        database: v,
                        supported: self.supported_schema_version(),
                    },
                    other => StoreError::Migration(other.to_string()),
                })?;
        }
        let to_version = self.supported_schema_version().max(from_version);
        Ok(MigrationReport {
            from_version,
            to_version,
            applied: pending,
        })
    }

    /// Fails unless the schema is exactly what this build expects.
    pub async fn require_current_schema(&self) -> Result<(), StoreError> {
        match self.schema_status().await? {
            SchemaStatus::Current { .. } => Ok(()),
            SchemaStatus::Newer {
                database,
                supported,
            } => Err(StoreError::SchemaTooNew {
                database,
                supported,
            }),
            SchemaStatus::Pending { version, .. } => Err(StoreError::SchemaOutdated {
                database: version,
                required: self.supported_schema_version(),
            }),
            SchemaStatus::Empty { .. } => Err(StoreError::SchemaOutdated {
                database: 0,
                required: self.supported_schema_version(),
            }),
        }
    }

    /// Starts a write transaction that holds the audit-head lock: `BEGIN IMMEDIATE` on SQLite
    /// (no lock upgrade later, so no SQLITE_BUSY deadlock), `SELECT ... FOR UPDATE` of the
    /// single head row on PostgreSQL (serialising all writers, across processes, into one
    /// audit sequence). Taking this lock first in every write transaction gives one lock order.
    pub(crate) async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        let mut tx = match self.inner.backend {
            Backend::Sqlite => self.pool().begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool().begin().await,
        }
        .map_err(|e| self.err(e))?;
        let sql = match self.inner.backend {
            Backend::Sqlite => "SELECT size, last_leaf_hash, frontier FROM audit_head WHERE id = 1",
            Backend::Postgres => {
                "SELECT size, last_leaf_hash, frontier FROM audit_head WHERE id = 1 FOR UPDATE"
            }
        };
        let row = sqlx::query(sql)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?
            .ok_or_else(|| StoreError::Corrupt("the audit head row is missing".into()))?;
        let head = HeadState::from_row(&row).map_err(|e| match e {
            HeadDecode::Sql(e) => self.err(e),
            HeadDecode::Bad(m) => StoreError::Corrupt(m),
        })?;
        Ok(WriteTx {
            tx,
            head,
            dirty: false,
            store: self.clone(),
        })
    }
}

pub(crate) struct HeadState {
    pub(crate) size: u64,
    pub(crate) last: Option<Hash32>,
    pub(crate) frontier: Frontier,
}

pub(crate) enum HeadDecode {
    Sql(sqlx::Error),
    Bad(String),
}

impl HeadState {
    pub(crate) fn from_row(row: &AnyRow) -> Result<HeadState, HeadDecode> {
        let size: i64 = row.try_get(0).map_err(HeadDecode::Sql)?;
        let last: Option<Vec<u8>> = row.try_get(1).map_err(HeadDecode::Sql)?;
        let frontier: Vec<u8> = row.try_get(2).map_err(HeadDecode::Sql)?;
        let size =
            u64::try_from(size).map_err(|_| HeadDecode::Bad("negative audit size".into()))?;
        let last = match last {
            Some(b) => Some(
                <Hash32>::try_from(b.as_slice())
                    .map_err(|_| HeadDecode::Bad("audit head hash is not 32 bytes".into()))?,
            ),
            None => None,
        };
        let frontier = Frontier::from_bytes(&frontier)
            .map_err(|_| HeadDecode::Bad("audit frontier is malformed".into()))?;
        if frontier.size() != size || (size == 0) != last.is_none() {
            return Err(HeadDecode::Bad("audit head is inconsistent".into()));
        }
        Ok(HeadState {
            size,
            last,
            frontier,
        })
    }
}

/// A write transaction holding the audit-head lock. Dropping it rolls back.
pub(crate) struct WriteTx {
    pub(crate) tx: Tx,
    head: HeadState,
    dirty: bool,
    store: Store,
}

impl WriteTx {
    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }

    pub(crate) fn err(&self, e: sqlx::Error) -> StoreError {
        self.store.err(e)
    }

    /// Appends one audit record in this transaction; returns its sequence number.
    pub(crate) async fn audit(&mut self, event: &AuditEvent) -> Result<u64, StoreError> {
        let at = self.store.now();
        let prev = self
            .head
            .last
            .map(|h| (self.head.size.saturating_sub(1), h));
        let record = AuditRecord::next(prev, at, event.canonical_bytes());
        if record.seq != self.head.size {
            return Err(StoreError::Corrupt("audit sequence out of step".into()));
        }
        let keys = event.index_keys();
        let seq = to_i64(record.seq)?;
        sqlx::query(
            "INSERT INTO audit_log (seq, prev_hash, at_millis, event, leaf_hash, patient_id, actor_id, action) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(seq)
        .bind(record.prev_hash.to_vec())
        .bind(record.at_millis)
        .bind(record.event.clone())
        .bind(record.leaf_hash.to_vec())
        .bind(keys.patient.map(|p| p.to_string()))
        .bind(keys.user.map(|u| u.to_string()))
        .bind(crate::audit::action_name(keys.action))
        .execute(&mut *self.tx)
        .await
        .map_err(|e| self.store.err(e))?;
        for node in self.head.frontier.push(record.leaf_hash) {
            sqlx::query("INSERT INTO audit_node (level, idx, hash) VALUES ($1, $2, $3)")
                .bind(i64::from(node.level))
                .bind(to_i64(node.index)?)
                .bind(node.hash.to_vec())
                .execute(&mut *self.tx)
                .await
                .map_err(|e| self.store.err(e))?;
        }
        self.head.size = record.seq.saturating_add(1);
        self.head.last = Some(record.leaf_hash);
        self.dirty = true;
        Ok(record.seq)
    }

    /// Writes the audit head (if records were appended) and commits.
    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        if self.dirty {
            sqlx::query(
                "UPDATE audit_head SET size = $1, last_leaf_hash = $2, frontier = $3 WHERE id = 1",
            )
            .bind(to_i64(self.head.size)?)
            .bind(self.head.last.map(|h| h.to_vec()))
            .bind(self.head.frontier.to_bytes())
            .execute(&mut *self.tx)
            .await
            .map_err(|e| self.store.err(e))?;
        }
        let store = self.store;
        self.tx.commit().await.map_err(|e| store.err(e))
    }
}

pub(crate) fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid {
        field: "sequence number",
        expected: "a value below 2^63",
    })
}

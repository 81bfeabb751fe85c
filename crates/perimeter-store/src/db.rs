//! The store handle: connecting, migrating, schema status and write transactions.

use std::fmt;
use std::sync::Arc;

use perimeter_audit::group::{GroupCommitter, GroupConfig};
use perimeter_audit::merkle::{Frontier, Node};
use perimeter_audit::query::IndexColumns;
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

/// The connection pool and what every statement needs: shared by a [`Store`], the stores made
/// from it with other keys, its audit group committer and its [`crate::AuditReader`]s.
pub(crate) struct Core {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    pub(crate) target: String,
    pub(crate) clock: SharedClock,
}

impl Core {
    pub(crate) fn err(&self, e: sqlx::Error) -> StoreError {
        StoreError::from_sqlx(e, self.backend, &self.target)
    }
}

/// The group committer's error: the batch's store error, shared by every caller in it.
pub(crate) type BatchError = Arc<StoreError>;

pub(crate) struct Inner {
    pub(crate) core: Arc<Core>,
    /// Swapped in place when a rotated key file is reloaded ([`Store::reload_keys`]).
    pub(crate) keys: std::sync::RwLock<KeyRing>,
    /// Standalone audit events (log-ins, denials, exports) are batched through this into one
    /// transaction (one fsync) per batch. `None` outside a Tokio runtime.
    pub(crate) group: Option<GroupCommitter<BatchError>>,
    /// Direct read-only reads of a SQLite file's audit tables, for whole-trail verification
    /// ([`Store::verification_reader`]); `None` on PostgreSQL.
    pub(crate) native: Option<Arc<crate::native::NativeTrail>>,
    /// The group committer's direct writer of a SQLite file; `None` on PostgreSQL.
    pub(crate) appender: Option<Arc<crate::append::NativeAppender>>,
}

/// The storage handle. Cheap to clone; holds the connection pool, the key ring, the clock and
/// the audit group committer (a queue, no data), and no other state, so several processes can
/// share one PostgreSQL database.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.core.backend)
            .field("target", &self.inner.core.target)
            .field("keys", &self.keys())
            .finish_non_exhaustive()
    }
}

/// SQLite settings of every connection. `synchronous = FULL` with WAL makes every commit fsync
/// the write-ahead log before it returns: an acknowledged write (PHI or audit) survives a power
/// cut. (`NORMAL` would only sync at checkpoints.)
///
/// Checkpoints (copying the log into the database file, and fsyncing it) are taken off the
/// commit path: a store's background task runs a passive checkpoint every
/// [`WAL_CHECKPOINT_EVERY`] (every [`WAL_CHECKPOINT_BUSY_EVERY`] while commits stream in),
/// concurrently with writers, and a committing connection checkpoints
/// itself only once the log holds [`WAL_AUTOCHECKPOINT_PAGES`] pages (SQLite's default of 1000
/// made every ~70th audit batch wait for a checkpoint, the main cause of slow appends).
pub(crate) fn sqlite_pragmas(busy_ms: u128) -> String {
    format!(
        "PRAGMA busy_timeout = {busy_ms}; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON; PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES};"
    )
}

/// Log pages after which a committing connection checkpoints itself (256 MiB of 4 KiB pages):
/// the bound on the write-ahead log when the background checkpoints cannot keep up or are not
/// running.
pub(crate) const WAL_AUTOCHECKPOINT_PAGES: u32 = 65_536;

/// Log pages after which the background task restarts the write-ahead log (64 MiB).
///
/// Passive checkpoints copy the log into the database while writers go on, but under a steady
/// stream of commits they never finish before the next commit, so SQLite never starts the log
/// over: it grew to the autocheckpoint bound and then every commit checkpointed on its own
/// path (the append tail at 5,000/s). A RESTART checkpoint holds writers back while it copies
/// what the passive ones left and syncs the database (usually a few milliseconds; up to ~100 ms
/// was seen at 5,000 appends/s on a virtual disk), after which the next commit writes from the
/// log's start again. At 64 MiB that pause comes every few seconds at the audit trail's target
/// load, and rarely at a practice's usual one.
pub(crate) const WAL_RESTART_PAGES: i64 = 16_384;

/// How often a store's background task runs a passive WAL checkpoint (SQLite) while there is
/// nothing to copy.
pub(crate) const WAL_CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// The pause before the next passive checkpoint after one that copied pages: while commits
/// stream in, small checkpoints every few milliseconds keep each database sync short. (Every
/// 100 ms, each sync flushed enough pages to hold back the commits' own log syncs for several
/// milliseconds a few times a second: the audit append p99 at 5,000/s was 6-9 ms; every 5 ms
/// it is 3.6-5.2 ms, and at 1 s intervals it was 18 ms.)
pub(crate) const WAL_CHECKPOINT_BUSY_EVERY: std::time::Duration =
    std::time::Duration::from_millis(5);

/// Starts the background WAL checkpointer of a SQLite store on the current Tokio runtime (none
/// outside one: connections then checkpoint themselves at [`WAL_AUTOCHECKPOINT_PAGES`]). A
/// passive checkpoint takes no write lock, so writers go on committing while it copies and
/// fsyncs. Once the log holds [`WAL_RESTART_PAGES`] pages the task has the audit writer's
/// connection restart it ([`crate::append::NativeAppender::restart_wal`]). The task ends when
/// the pool is closed or the last store handle is dropped.
fn spawn_wal_checkpointer(core: &Arc<Core>, appender: Option<&Arc<crate::append::NativeAppender>>) {
    if core.backend != Backend::Sqlite || tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    let weak = Arc::downgrade(core);
    let appender = appender.map(Arc::downgrade);
    tokio::spawn(async move {
        // The log's pages and the pages copied, after the previous checkpoint.
        let mut before = (0_i64, 0_i64);
        let mut pause = WAL_CHECKPOINT_EVERY;
        loop {
            tokio::time::sleep(pause).await;
            let Some(core) = weak.upgrade() else { break };
            if core.pool.is_closed() {
                break;
            }
            // (busy, log pages, pages checkpointed)
            let (log, copied) = match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_optional(&core.pool)
                .await
            {
                Ok(row) => row
                    .map(|r| {
                        (
                            r.try_get::<i64, _>(1).unwrap_or(0),
                            r.try_get::<i64, _>(2).unwrap_or(0),
                        )
                    })
                    .unwrap_or((0, 0)),
                Err(e) => {
                    if core.pool.is_closed() {
                        break;
                    }
                    // Not fatal: the next tick, or a committing connection, checkpoints instead.
                    tracing::debug!(error = %core.err(e), "background WAL checkpoint failed");
                    (0, 0)
                }
            };
            // Busy while the log changed since the previous checkpoint (commits came in, or it
            // was started over) or holds pages not yet copied; idle otherwise.
            pause = if (log, copied) != before || log > copied {
                WAL_CHECKPOINT_BUSY_EVERY
            } else {
                WAL_CHECKPOINT_EVERY
            };
            before = (log, copied);
            if log >= WAL_RESTART_PAGES
                && let Some(a) = appender.as_ref().and_then(std::sync::Weak::upgrade)
                && let Err(e) = a.restart_wal().await
            {
                tracing::debug!(error = %e, "restarting the WAL failed; retried next tick");
            }
        }
    });
}

pub(crate) fn sqlite_url(path: &std::path::Path, mode: &str) -> Result<String, StoreError> {
    let s = path
        .to_str()
        .ok_or_else(|| StoreError::Config("the SQLite database path must be valid UTF-8".into()))?;
    let encoded = s
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23");
    Ok(format!("sqlite://{encoded}?mode={mode}"))
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
            DatabaseUrl::Sqlite(path) => sqlite_url(path, "rwc")?,
            DatabaseUrl::Postgres(_) => opts.url.expose(),
        };
        let busy_ms = opts.busy_timeout.as_millis();
        // SQLite's default page size (4096 bytes) is what Perimeter's databases use.
        let max_pages = opts.sqlite_max_bytes.map(|b| (b / 4096).max(1));
        let pool = AnyPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            // A PostgreSQL connection can die with its server (a restart, a network cut): ping
            // it before use. A SQLite connection is a file handle in this process; a ping is
            // one more round trip to its worker thread for every transaction and read.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(sqlite_pragmas(busy_ms).as_str()).await?;
                        if let Some(pages) = max_pages {
                            conn.execute(format!("PRAGMA max_page_count = {pages};").as_str())
                                .await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| StoreError::from_sqlx(e, backend, &target))?;
        let core = Arc::new(Core {
            pool,
            backend,
            target,
            clock,
        });
        let native = match &opts.url {
            DatabaseUrl::Sqlite(path) => Some(crate::native::NativeTrail::new(
                path,
                core.target.clone(),
                opts.busy_timeout,
            )),
            DatabaseUrl::Postgres(_) => None,
        };
        let appender = match &opts.url {
            DatabaseUrl::Sqlite(path) => Some(crate::append::NativeAppender::new(
                path,
                core.target.clone(),
                opts.busy_timeout,
                max_pages,
                core.clock.clone(),
            )),
            DatabaseUrl::Postgres(_) => None,
        };
        spawn_wal_checkpointer(&core, appender.as_ref());
        let store = Store {
            inner: Arc::new(Inner {
                group: spawn_group_committer(&core, appender.clone()),
                core,
                keys: std::sync::RwLock::new(keys),
                native,
                appender,
            }),
        };
        if backend == Backend::Sqlite {
            // WAL is a property of the file; setting it needs no other connection writing.
            let row = sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_one(store.pool())
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
        self.inner.core.backend
    }

    /// The key ring (a cheap shared handle; the store may swap in a reloaded one later).
    pub fn keys(&self) -> KeyRing {
        match self.inner.keys.read() {
            Ok(k) => k.clone(),
            // A panic while holding the lock cannot leave a half-written KeyRing: the write is
            // a single assignment.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the key ring in place (every clone of this store sees it).
    pub(crate) fn set_keys(&self, keys: KeyRing) {
        match self.inner.keys.write() {
            Ok(mut k) => *k = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
    }

    /// The clock.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.core.clock
    }

    /// The same database with another key ring (after a rotation added a KEK version); shares
    /// the pool and the audit group committer.
    pub fn with_keys(&self, keys: KeyRing) -> Store {
        Store {
            inner: Arc::new(Inner {
                core: self.inner.core.clone(),
                keys: std::sync::RwLock::new(keys),
                group: self.inner.group.clone(),
                native: self.inner.native.clone(),
                appender: self.inner.appender.clone(),
            }),
        }
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        if let Some(native) = &self.inner.native {
            native.close();
        }
        self.inner.core.pool.close().await;
        if let Some(appender) = &self.inner.appender {
            appender.close();
        }
    }

    /// How commits are made durable, as the database reports it: for SQLite the journal mode
    /// and `synchronous` level of a pooled connection (`wal`, `2` = FULL: each commit fsyncs
    /// the log), for PostgreSQL `synchronous_commit` and `fsync`.
    pub async fn durability(&self) -> Result<String, StoreError> {
        let mut conn = self.pool().acquire().await.map_err(|e| self.err(e))?;
        let (a, b) = match self.backend() {
            Backend::Sqlite => ("PRAGMA journal_mode", "PRAGMA synchronous"),
            Backend::Postgres => ("SHOW synchronous_commit", "SHOW fsync"),
        };
        let mut out = Vec::new();
        for (name, sql) in [
            ("journal_mode/synchronous_commit", a),
            ("synchronous/fsync", b),
        ] {
            let row = sqlx::query(sql)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| self.err(e))?;
            let v = row
                .try_get::<String, _>(0)
                .or_else(|_| row.try_get::<i64, _>(0).map(|n| n.to_string()))
                .map_err(|_| StoreError::Corrupt(format!("{name} cannot be read")))?;
            out.push(v);
        }
        Ok(match self.backend() {
            Backend::Sqlite => format!("journal_mode={} synchronous={}", out[0], out[1]),
            Backend::Postgres => format!("synchronous_commit={} fsync={}", out[0], out[1]),
        })
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(crate) fn err(&self, e: sqlx::Error) -> StoreError {
        self.inner.core.err(e)
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.inner.core.pool
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.inner.core
    }

    pub(crate) fn now(&self) -> i64 {
        self.inner.core.clock.now_millis()
    }

    fn migrator(&self) -> &'static Migrator {
        migrator(self.inner.core.backend)
    }

    /// The highest migration version this build embeds.
    pub fn supported_schema_version(&self) -> i64 {
        self.migrator().iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// Every migration version this build embeds, ascending. Numbers are reserved per
    /// feature, so a build may lack one that another branch brings (a gap is not an error).
    pub fn embedded_migrations(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.migrator().iter().map(|m| m.version).collect();
        v.sort_unstable();
        v
    }

    async fn applied_versions(&self) -> Result<Option<Vec<(i64, bool)>>, StoreError> {
        let exists_sql = match self.inner.core.backend {
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
        begin_write(&self.inner.core).await
    }
}

/// The migrations embedded for a backend.
pub(crate) fn migrator(backend: Backend) -> &'static Migrator {
    match backend {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    }
}

/// See [`Store::begin_write`].
pub(crate) async fn begin_write(core: &Arc<Core>) -> Result<WriteTx, StoreError> {
    let mut tx = match core.backend {
        Backend::Sqlite => core.pool.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => core.pool.begin().await,
    }
    .map_err(|e| core.err(e))?;
    let sql = match core.backend {
        Backend::Sqlite => "SELECT size, last_leaf_hash, frontier FROM audit_head WHERE id = 1",
        Backend::Postgres => {
            "SELECT size, last_leaf_hash, frontier FROM audit_head WHERE id = 1 FOR UPDATE"
        }
    };
    let row = sqlx::query(sql)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| core.err(e))?
        .ok_or_else(|| StoreError::Corrupt("the audit head row is missing".into()))?;
    let head = HeadState::from_row(&row).map_err(|e| match e {
        HeadDecode::Sql(e) => core.err(e),
        HeadDecode::Bad(m) => StoreError::Corrupt(m),
    })?;
    Ok(WriteTx {
        tx,
        head,
        dirty: false,
        pending: Vec::new(),
        pending_nodes: Vec::new(),
        core: core.clone(),
    })
}

/// Appends standalone events in one transaction of their own (the group committer's batch).
pub(crate) async fn append_batch(
    core: &Arc<Core>,
    events: &[AuditEvent],
) -> Result<Vec<u64>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut w = begin_write(core).await?;
    let seqs = w.audit_batch(events).await?;
    w.commit().await?;
    Ok(seqs)
}

/// Starts the audit group committer on the current Tokio runtime (none outside one: appends
/// then write their own transaction). It holds the pool, not the store, so it stops when the
/// last store handle is dropped. On SQLite its batches go through the direct writer
/// ([`crate::append`]); once the store is closed they take the pool's path, which refuses them.
fn spawn_group_committer(
    core: &Arc<Core>,
    appender: Option<Arc<crate::append::NativeAppender>>,
) -> Option<GroupCommitter<BatchError>> {
    tokio::runtime::Handle::try_current().ok()?;
    let core = core.clone();
    let (committer, _task) = GroupCommitter::spawn(
        move |events: Vec<AuditEvent>| {
            let core = core.clone();
            let appender = appender.clone();
            async move {
                match appender {
                    Some(a) if !core.pool.is_closed() => a.append(events).await,
                    _ => append_batch(&core, &events).await,
                }
                .map_err(Arc::new)
            }
        },
        GroupConfig::default(),
    );
    Some(committer)
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
        HeadState::from_columns(size, last.as_deref(), &frontier).map_err(HeadDecode::Bad)
    }

    /// The head from the columns of `audit_head` (size, last leaf hash, frontier), checked for
    /// consistency; the error names what is wrong, never a value.
    pub(crate) fn from_columns(
        size: i64,
        last: Option<&[u8]>,
        frontier: &[u8],
    ) -> Result<HeadState, String> {
        let size = u64::try_from(size).map_err(|_| "negative audit size".to_owned())?;
        let last = match last {
            Some(b) => Some(
                <Hash32>::try_from(b).map_err(|_| "audit head hash is not 32 bytes".to_owned())?,
            ),
            None => None,
        };
        let frontier =
            Frontier::from_bytes(frontier).map_err(|_| "audit frontier is malformed".to_owned())?;
        if frontier.size() != size || (size == 0) != last.is_none() {
            return Err("audit head is inconsistent".into());
        }
        Ok(HeadState {
            size,
            last,
            frontier,
        })
    }

    /// Appends the record of `event` at time `at` to the head: its sequence number is the
    /// head's size, its previous hash the head's last leaf; the interior nodes it completes are
    /// pushed to `nodes`.
    pub(crate) fn push(
        &mut self,
        event: &AuditEvent,
        at: i64,
        nodes: &mut Vec<Node>,
    ) -> Result<AuditRecord, StoreError> {
        let prev = self.last.map(|h| (self.size.saturating_sub(1), h));
        let record = AuditRecord::next(prev, at, event.canonical_bytes());
        if record.seq != self.size {
            return Err(StoreError::Corrupt("audit sequence out of step".into()));
        }
        self.frontier.push_into(record.leaf_hash, nodes);
        self.size = record.seq.saturating_add(1);
        self.last = Some(record.leaf_hash);
        Ok(record)
    }
}

/// A write transaction holding the audit-head lock. Dropping it rolls back.
pub(crate) struct WriteTx {
    pub(crate) tx: Tx,
    /// The head including the records not yet written.
    head: HeadState,
    dirty: bool,
    /// Audit records appended but not yet written (sequence numbers already assigned).
    pending: Vec<(AuditRecord, IndexColumns)>,
    /// The interior nodes the pending records complete.
    pending_nodes: Vec<Node>,
    core: Arc<Core>,
}

/// Rows per multi-row INSERT (8 parameters each: well inside SQLite's and PostgreSQL's limits).
const ROWS_PER_INSERT: usize = 256;

impl WriteTx {
    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }

    pub(crate) fn err(&self, e: sqlx::Error) -> StoreError {
        self.core.err(e)
    }

    /// Appends one audit record in this transaction; returns its sequence number.
    pub(crate) async fn audit(&mut self, event: &AuditEvent) -> Result<u64, StoreError> {
        let seqs = self.audit_batch(std::slice::from_ref(event)).await?;
        seqs.first()
            .copied()
            .ok_or_else(|| StoreError::Corrupt("audit append returned no sequence".into()))
    }

    /// Appends audit records in this transaction; returns their sequence numbers. The records
    /// and the interior nodes they complete are computed at once (the sequence numbers are
    /// final) and written with multi-row INSERTs at the latest before the commit (see
    /// [`WriteTx::flush_audit`]), so a transaction that records several accesses writes its
    /// audit rows in one or two statements instead of two per access.
    pub(crate) async fn audit_batch(
        &mut self,
        events: &[AuditEvent],
    ) -> Result<Vec<u64>, StoreError> {
        let mut seqs = Vec::with_capacity(events.len());
        for event in events {
            let at = self.core.clock.now_millis();
            let record = self.head.push(event, at, &mut self.pending_nodes)?;
            self.dirty = true;
            seqs.push(record.seq);
            self.pending.push((record, IndexColumns::of(event)));
        }
        if self.pending.len() >= ROWS_PER_INSERT {
            self.flush_audit().await?;
        }
        Ok(seqs)
    }

    /// Writes the audit records appended so far (and their interior nodes) to the database.
    /// [`WriteTx::commit`] does it; a transaction that reads the audit tables after appending
    /// to them calls it first. Rows go in chunks of a few distinct sizes ([`chunk_len`]).
    pub(crate) async fn flush_audit(&mut self) -> Result<(), StoreError> {
        let records = std::mem::take(&mut self.pending);
        let mut rest = records.as_slice();
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(chunk_len(rest.len()));
            rest = tail;
            let mut sql = String::from(
                "INSERT INTO audit_log (seq, prev_hash, at_millis, event, leaf_hash, patient_id, actor_id, action) VALUES ",
            );
            push_placeholders(&mut sql, chunk.len(), 8);
            let mut q = sqlx::query(&sql);
            for (r, cols) in chunk {
                q = q
                    .bind(to_i64(r.seq)?)
                    .bind(r.prev_hash.to_vec())
                    .bind(r.at_millis)
                    .bind(r.event.clone())
                    .bind(r.leaf_hash.to_vec())
                    .bind(cols.patient_id.clone())
                    .bind(cols.actor_id.clone())
                    .bind(cols.action.clone());
            }
            q.execute(&mut *self.tx)
                .await
                .map_err(|e| self.core.err(e))?;
        }
        let nodes = std::mem::take(&mut self.pending_nodes);
        let mut rest = nodes.as_slice();
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(chunk_len(rest.len()));
            rest = tail;
            let mut sql = String::from("INSERT INTO audit_node (level, idx, hash) VALUES ");
            push_placeholders(&mut sql, chunk.len(), 3);
            let mut q = sqlx::query(&sql);
            for n in chunk {
                q = q
                    .bind(i64::from(n.level))
                    .bind(to_i64(n.index)?)
                    .bind(n.hash.to_vec());
            }
            q.execute(&mut *self.tx)
                .await
                .map_err(|e| self.core.err(e))?;
        }
        Ok(())
    }

    /// Writes the audit head (if records were appended) and commits.
    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        self.flush_audit().await?;
        if self.dirty {
            sqlx::query(
                "UPDATE audit_head SET size = $1, last_leaf_hash = $2, frontier = $3 WHERE id = 1",
            )
            .bind(to_i64(self.head.size)?)
            .bind(self.head.last.map(|h| h.to_vec()))
            .bind(self.head.frontier.to_bytes())
            .execute(&mut *self.tx)
            .await
            .map_err(|e| self.core.err(e))?;
        }
        let core = self.core;
        self.tx.commit().await.map_err(|e| core.err(e))
    }
}

/// Up to this many rows go in one INSERT of exactly that many rows.
const EXACT_ROWS: usize = 16;

/// The rows of the next multi-row INSERT: all of them up to [`EXACT_ROWS`] (one statement for
/// the usual small batch), else the largest power of two up to [`ROWS_PER_INSERT`] that
/// `remaining` holds, so that only a few distinct statements are ever prepared.
fn chunk_len(remaining: usize) -> usize {
    if remaining <= EXACT_ROWS {
        return remaining.max(1);
    }
    let cap = remaining.min(ROWS_PER_INSERT);
    1 << cap.ilog2()
}

/// Appends `($1, ..., $k), ($k+1, ...)` for `rows` rows of `per_row` parameters.
pub(crate) fn push_placeholders(sql: &mut String, rows: usize, per_row: usize) {
    use std::fmt::Write as _;
    let mut n = 0;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..per_row {
            n += 1;
            let _ = write!(sql, "{}${n}", if c == 0 { "" } else { ", " });
        }
        sql.push(')');
    }
}

pub(crate) fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid {
        field: "sequence number",
        expected: "a value below 2^63",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_rows_go_in_few_distinct_chunk_sizes_that_cover_them_exactly() {
        for n in 1..=2 * ROWS_PER_INSERT + 3 {
            let mut rest = n;
            let mut sizes = std::collections::BTreeSet::new();
            if n <= EXACT_ROWS {
                assert_eq!(chunk_len(n), n, "a small batch is one statement");
            }
            while rest > 0 {
                let c = chunk_len(rest);
                assert!(c <= rest && c <= ROWS_PER_INSERT);
                assert!(c <= EXACT_ROWS || c.is_power_of_two());
                sizes.insert(c);
                rest -= c;
            }
            assert!(sizes.len() <= ROWS_PER_INSERT.ilog2() as usize + 2);
        }
    }
}

//! A fast bulk path that builds a large audit trail in a *new* SQLite file, for benchmarks
//! (`perimeter audit bench`): the same schema, records, interior nodes and head the store
//! writes, inserted with the journal and fsync off and the query indexes built afterwards.
//! It refuses an existing file, so it cannot touch a real database.

use std::path::Path;
use std::sync::Arc;

use perimeter_audit::merkle::{Frontier, Node};
use perimeter_audit::query::IndexColumns;
use perimeter_audit::{AuditEvent, AuditRecord, Hash32};
use perimeter_crypto::KeyRing;
use perimeter_domain::SystemClock;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Executor};

use crate::db::{push_placeholders, to_i64};
use crate::{AuditHead, Backend, DatabaseUrl, Store, StoreError, StoreOptions};

/// Rows per multi-row INSERT (8 parameters each).
const ROWS: usize = 500;
/// Records computed ahead while the previous ones are inserted.
const CHUNK: usize = 10_000;
/// Records per transaction.
const PER_TRANSACTION: usize = 200_000;
const SECONDARY_INDEXES: [(&str, &str); 4] = [
    ("audit_log_patient", "audit_log (patient_id, seq)"),
    ("audit_log_actor", "audit_log (actor_id, seq)"),
    ("audit_log_action", "audit_log (action, seq)"),
    ("audit_log_at", "audit_log (at_millis, seq)"),
];

fn sql_err(e: sqlx::Error, target: &str) -> StoreError {
    StoreError::from_sqlx(e, Backend::Sqlite, target)
}

/// Builds a trail of `records` records in a new SQLite database at `path` (migrated like any
/// Perimeter database), with events from `event(seq)` stamped `at_millis(seq)`; calls
/// `progress(done)` now and then. Returns the head and the tree roots at the sizes in
/// `roots_at` (for signing checkpoints).
pub async fn build_sqlite_trail(
    path: &Path,
    records: u64,
    mut event: impl FnMut(u64) -> AuditEvent,
    at_millis: impl Fn(u64) -> i64,
    roots_at: &[u64],
    mut progress: impl FnMut(u64),
) -> Result<(AuditHead, Vec<(u64, perimeter_audit::Hash32)>), StoreError> {
    if path.exists() {
        return Err(StoreError::Config(format!(
            "{} exists; the bulk builder only creates new databases",
            path.display()
        )));
    }
    // Every seq and node index then fits the BIGINT columns.
    to_i64(records)?;
    let url = DatabaseUrl::Sqlite(path.to_owned());
    let target = url.to_string();
    let store = Store::connect(
        &StoreOptions::new(url),
        KeyRing::generate()?,
        Arc::new(SystemClock),
    )
    .await?;
    store.migrate().await?;
    store.close().await;

    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .disable_statement_logging()
        .connect()
        .await
        .map_err(|e| sql_err(e, &target))?;
    // Schema changes first: a row-returning PRAGMA left in the connection's statement cache
    // makes a later DROP INDEX fail with SQLITE_LOCKED ("database table is locked").
    for (name, _) in SECONDARY_INDEXES {
        conn.execute(format!("DROP INDEX {name}").as_str())
            .await
            .map_err(|e| sql_err(e, &target))?;
    }
    conn.execute(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;",
    )
    .await
    .map_err(|e| sql_err(e, &target))?;
    conn.clear_cached_statements()
        .await
        .map_err(|e| sql_err(e, &target))?;

    let mut maker = Generator {
        event: &mut event,
        at_millis: &at_millis,
        roots_at,
        frontier: Frontier::new(),
        roots: Vec::new(),
        last: None,
        seq: 0,
        records,
    };
    if roots_at.contains(&0) {
        maker.roots.push((0, maker.frontier.root()));
    }
    // Two stages in step: SQLite (on its worker thread) inserts one chunk while this task
    // computes the next one (events, canonical bytes, hashes, tree nodes).
    let mut current = maker.chunk(CHUNK);
    while !current.recs.is_empty() {
        let mut tx = conn.begin().await.map_err(|e| sql_err(e, &target))?;
        let mut in_tx = 0usize;
        while !current.recs.is_empty() && in_tx < PER_TRANSACTION {
            in_tx += current.recs.len();
            let (done, next) = tokio::join!(insert_chunk(&mut tx, &current), async {
                maker.chunk(CHUNK)
            });
            done.map_err(|e| sql_err(e, &target))?;
            progress(
                current
                    .recs
                    .last()
                    .map_or(0, |(r, _)| r.seq.saturating_add(1)),
            );
            current = next;
        }
        tx.commit().await.map_err(|e| sql_err(e, &target))?;
    }
    let Generator {
        frontier,
        roots,
        last,
        ..
    } = maker;
    if records > 0 {
        sqlx::query(
            "UPDATE audit_head SET size = $1, last_leaf_hash = $2, frontier = $3 WHERE id = 1",
        )
        .bind(to_i64(records)?)
        .bind(last.map(|h| h.to_vec()))
        .bind(frontier.to_bytes())
        .execute(&mut conn)
        .await
        .map_err(|e| sql_err(e, &target))?;
    }
    conn.clear_cached_statements()
        .await
        .map_err(|e| sql_err(e, &target))?;
    for (name, def) in SECONDARY_INDEXES {
        conn.execute(format!("CREATE INDEX {name} ON {def}").as_str())
            .await
            .map_err(|e| sql_err(e, &target))?;
    }
    conn.execute("PRAGMA journal_mode = WAL")
        .await
        .map_err(|e| sql_err(e, &target))?;
    conn.close().await.map_err(|e| sql_err(e, &target))?;
    Ok((
        AuditHead {
            size: records,
            last_leaf_hash: last.unwrap_or(perimeter_audit::GENESIS_HASH),
            frontier,
        },
        roots,
    ))
}

/// Computes records in order: events, canonical bytes, the chain, the tree.
struct Generator<'a, E, A> {
    event: &'a mut E,
    at_millis: &'a A,
    roots_at: &'a [u64],
    frontier: Frontier,
    roots: Vec<(u64, Hash32)>,
    last: Option<Hash32>,
    seq: u64,
    records: u64,
}

/// Records with their query columns, and the interior nodes they complete.
struct Chunk {
    recs: Vec<(AuditRecord, IndexColumns)>,
    nodes: Vec<Node>,
}

impl<E: FnMut(u64) -> AuditEvent, A: Fn(u64) -> i64> Generator<'_, E, A> {
    fn chunk(&mut self, max: usize) -> Chunk {
        let n = usize::try_from(self.records.saturating_sub(self.seq))
            .unwrap_or(max)
            .min(max);
        let mut recs = Vec::with_capacity(n);
        let mut nodes = Vec::with_capacity(n + 64);
        for _ in 0..n {
            let seq = self.seq;
            let e = (self.event)(seq);
            let prev = self.last.map(|h| (seq.saturating_sub(1), h));
            let r = AuditRecord::next(prev, (self.at_millis)(seq), e.canonical_bytes());
            self.frontier.push_into(r.leaf_hash, &mut nodes);
            self.last = Some(r.leaf_hash);
            recs.push((r, IndexColumns::of(&e)));
            self.seq = seq.saturating_add(1);
            if self.roots_at.contains(&self.seq) {
                self.roots.push((self.seq, self.frontier.root()));
            }
        }
        Chunk { recs, nodes }
    }
}

async fn insert_chunk(conn: &mut SqliteConnection, chunk: &Chunk) -> Result<(), sqlx::Error> {
    for recs in chunk.recs.chunks(ROWS) {
        let mut sql = String::from(
            "INSERT INTO audit_log (seq, prev_hash, at_millis, event, leaf_hash, patient_id, actor_id, action) VALUES ",
        );
        push_placeholders(&mut sql, recs.len(), 8);
        let mut q = sqlx::query::<sqlx::Sqlite>(&sql);
        for (r, c) in recs {
            q = q
                .bind(i64::try_from(r.seq).unwrap_or(i64::MAX))
                .bind(&r.prev_hash[..])
                .bind(r.at_millis)
                .bind(&r.event[..])
                .bind(&r.leaf_hash[..])
                .bind(c.patient_id.as_deref())
                .bind(c.actor_id.as_deref())
                .bind(c.action.as_str());
        }
        q.execute(&mut *conn).await?;
    }
    for nodes in chunk.nodes.chunks(ROWS) {
        let mut sql = String::from("INSERT INTO audit_node (level, idx, hash) VALUES ");
        push_placeholders(&mut sql, nodes.len(), 3);
        let mut q = sqlx::query::<sqlx::Sqlite>(&sql);
        for nd in nodes {
            q = q
                .bind(i64::from(nd.level))
                .bind(i64::try_from(nd.index).unwrap_or(i64::MAX))
                .bind(&nd.hash[..]);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

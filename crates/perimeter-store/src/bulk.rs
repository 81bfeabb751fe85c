//! A fast bulk path that builds a large audit trail in a *new* SQLite file, for benchmarks
//! (`perimeter audit bench`): the same schema, records, interior nodes and head the store
//! writes, inserted with the journal and fsync off and the query indexes built afterwards.
//! It refuses an existing file, so it cannot touch a real database.

use std::path::Path;
use std::sync::Arc;

use perimeter_audit::AuditEvent;
use perimeter_audit::AuditRecord;
use perimeter_audit::merkle::Frontier;
use perimeter_audit::query::IndexColumns;
use perimeter_crypto::KeyRing;
use perimeter_domain::SystemClock;
use sqlx::{Connection, Executor};

use crate::db::{push_placeholders, sqlite_url, to_i64};
use crate::{AuditHead, Backend, DatabaseUrl, Store, StoreError, StoreOptions};

const ROWS: usize = 500;
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

    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&sqlite_url(path, "rw")?)
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

    let mut frontier = Frontier::new();
    let mut roots = Vec::new();
    if roots_at.contains(&0) {
        roots.push((0, frontier.root()));
    }
    let mut last: Option<[u8; 32]> = None;
    let mut seq = 0u64;
    while seq < records {
        let mut tx = conn.begin().await.map_err(|e| sql_err(e, &target))?;
        let end = records.min(seq.saturating_add(100_000));
        while seq < end {
            let n = usize::try_from((end - seq).min(ROWS as u64)).unwrap_or(ROWS);
            let mut recs = Vec::with_capacity(n);
            let mut nodes = Vec::new();
            for _ in 0..n {
                let e = event(seq);
                let prev = last.map(|h| (seq.saturating_sub(1), h));
                let r = AuditRecord::next(prev, at_millis(seq), e.canonical_bytes());
                nodes.extend(frontier.push(r.leaf_hash));
                last = Some(r.leaf_hash);
                recs.push((r, IndexColumns::of(&e)));
                seq += 1;
                if roots_at.contains(&seq) {
                    roots.push((seq, frontier.root()));
                }
            }
            let mut sql = String::from(
                "INSERT INTO audit_log (seq, prev_hash, at_millis, event, leaf_hash, patient_id, actor_id, action) VALUES ",
            );
            push_placeholders(&mut sql, recs.len(), 8);
            let mut q = sqlx::query(&sql);
            for (r, c) in &recs {
                q = q
                    .bind(to_i64(r.seq)?)
                    .bind(r.prev_hash.to_vec())
                    .bind(r.at_millis)
                    .bind(r.event.clone())
                    .bind(r.leaf_hash.to_vec())
                    .bind(c.patient_id.clone())
                    .bind(c.actor_id.clone())
                    .bind(c.action.clone());
            }
            q.execute(&mut *tx).await.map_err(|e| sql_err(e, &target))?;
            for chunk in nodes.chunks(ROWS) {
                let mut sql = String::from("INSERT INTO audit_node (level, idx, hash) VALUES ");
                push_placeholders(&mut sql, chunk.len(), 3);
                let mut q = sqlx::query(&sql);
                for nd in chunk {
                    q = q
                        .bind(i64::from(nd.level))
                        .bind(to_i64(nd.index)?)
                        .bind(nd.hash.to_vec());
                }
                q.execute(&mut *tx).await.map_err(|e| sql_err(e, &target))?;
            }
        }
        tx.commit().await.map_err(|e| sql_err(e, &target))?;
        progress(seq);
    }
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

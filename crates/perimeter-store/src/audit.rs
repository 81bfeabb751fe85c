//! The audit trail's storage: group-commit appends, reads, Merkle nodes, checkpoints and
//! queries. There is deliberately no update or delete (and the schema's triggers refuse both).

use perimeter_audit::merkle::Frontier;
use perimeter_audit::query::AuditQuery;
use perimeter_audit::{Action, AuditEvent, AuditRecord, Hash32};
use sqlx::any::AnyRow;

use crate::db::to_i64;
use crate::rows::{col, col_hash, col_u64};
use crate::{Store, StoreError};

pub(crate) fn action_name(a: Action) -> &'static str {
    match a {
        Action::Create => "create",
        Action::Read => "read",
        Action::Update => "update",
        Action::Delete => "delete",
        Action::Execute => "execute",
        Action::Disclose => "disclose",
        Action::Login => "login",
        Action::Logout => "logout",
    }
}

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

const RECORD_COLUMNS: &str = "seq, prev_hash, at_millis, event, leaf_hash";

fn decode_record(row: &AnyRow) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        seq: col_u64(row, "seq")?,
        prev_hash: col_hash(row, "prev_hash")?,
        at_millis: col(row, "at_millis")?,
        event: col(row, "event")?,
        leaf_hash: col_hash(row, "leaf_hash")?,
    })
}

impl Store {
    /// Appends standalone events (no data access of their own, e.g. logins) in one
    /// transaction; returns their sequence numbers.
    pub async fn append_audit(&self, events: &[AuditEvent]) -> Result<Vec<u64>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut w = self.begin_write().await?;
        let mut seqs = Vec::with_capacity(events.len());
        for e in events {
            seqs.push(w.audit(e).await?);
        }
        w.commit().await?;
        Ok(seqs)
    }

    /// Records from `from_seq` on, at most `limit`, in order.
    pub async fn audit_records(
        &self,
        from_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2"
        ))
        .bind(to_i64(from_seq)?)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        rows.iter().map(decode_record).collect()
    }

    /// The head, or `None` while the trail is empty.
    pub async fn audit_head(&self) -> Result<Option<AuditHead>, StoreError> {
        let row = sqlx::query("SELECT size, last_leaf_hash, frontier FROM audit_head WHERE id = 1")
            .fetch_optional(self.pool())
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

    /// A Merkle node: level 0 is the leaf hash of record `index`; level ≥ 1 the stored
    /// interior node covering leaves `index·2^level .. (index+1)·2^level`.
    pub async fn audit_node(&self, level: u32, index: u64) -> Result<Option<Hash32>, StoreError> {
        let row = if level == 0 {
            sqlx::query("SELECT leaf_hash AS hash FROM audit_log WHERE seq = $1")
                .bind(to_i64(index)?)
                .fetch_optional(self.pool())
                .await
        } else {
            sqlx::query("SELECT hash FROM audit_node WHERE level = $1 AND idx = $2")
                .bind(i64::from(level))
                .bind(to_i64(index)?)
                .fetch_optional(self.pool())
                .await
        }
        .map_err(|e| self.err(e))?;
        row.as_ref().map(|r| col_hash(r, "hash")).transpose()
    }

    /// Stores a signed checkpoint for `tree_size`.
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

    /// Every stored checkpoint, by tree size.
    pub async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT tree_size, at_millis, signed FROM audit_checkpoint ORDER BY tree_size",
        )
        .fetch_all(self.pool())
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

    /// Records matching `q` with seq after `after_seq`, at most `limit`, in order.
    pub async fn audit_query(
        &self,
        q: &AuditQuery,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        // Fixed SQL with "parameter IS NULL OR column = parameter" for each optional filter.
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM audit_log WHERE seq > $1 \
             AND ($2 IS NULL OR patient_id = $2) \
             AND ($3 IS NULL OR actor_id = $3) \
             AND ($4 IS NULL OR action = $4) \
             AND ($5 IS NULL OR at_millis >= $5) \
             AND ($6 IS NULL OR at_millis < $6) \
             ORDER BY seq LIMIT $7"
        );
        let after = match after_seq {
            Some(s) => to_i64(s)?,
            None => -1,
        };
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(q.patient.map(|p| p.to_string()))
            .bind(q.user.map(|u| u.to_string()))
            .bind(q.action.map(|a| action_name(a).to_owned()))
            .bind(q.from_millis)
            .bind(q.to_millis)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(decode_record).collect()
    }
}

//! Log-in throttle state (migrations 0003 and 0005), changed atomically.
//!
//! The rules are `perimeter_auth::throttle`'s. Every change here is one read-modify-write of one
//! row inside a transaction that locks that row (`SELECT ... FOR UPDATE` on PostgreSQL, the
//! database write lock of `BEGIN IMMEDIATE` on SQLite), so two requests, or two processes, can
//! never both read the same state and overwrite each other's count. These transactions do not
//! take the audit head: the caller appends the audit records that go with an outcome
//! afterwards, so refused attempts, which are not audited one by one, never queue behind the
//! trail.
//!
//! An attempt is [`Store::begin_attempt`] (refused while locked, delayed or, for an exclusive
//! key, while another attempt holds the lease; else the lease is taken), then the credential
//! check, then [`Store::finish_attempt`] (count a failure, release the lease) or
//! [`Store::release_attempt`] (release only) or [`Store::clear_attempts`] (a completed log-in
//! forgets the failures).

use perimeter_audit::AuditEvent;
use perimeter_auth::{
    ATTEMPT_LEASE, Permission, ThrottleDecision, ThrottlePolicy, ThrottleState, throttled_audit_due,
};
use perimeter_domain::StaffId;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use crate::Scope;
use crate::auth::{from_millis, millis, opt_from_millis};
use crate::db::Tx;
use crate::rows::{col, col_u64, id};
use crate::views::acting;
use crate::{Backend, Store, StoreError};

/// Which throttle a state belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleScope {
    /// Per account (subject: the normalised username, whether or not an account has it).
    Account,
    /// Per client address (subject: the address).
    Address,
}

impl ThrottleScope {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ThrottleScope::Account => "account",
            ThrottleScope::Address => "address",
        }
    }
}

/// One throttle an attempt passes through: which, whose, under which policy.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleKey<'a> {
    /// Account or address.
    pub scope: ThrottleScope,
    /// The normalised username or the client address.
    pub subject: &'a str,
    /// The policy (`ThrottlePolicy::ACCOUNT` or `ThrottlePolicy::ADDRESS`).
    pub policy: ThrottlePolicy,
}

impl<'a> ThrottleKey<'a> {
    /// The account throttle of a (normalised) username.
    pub fn account(username: &'a str) -> Self {
        Self {
            scope: ThrottleScope::Account,
            subject: username,
            policy: ThrottlePolicy::ACCOUNT,
        }
    }

    /// The throttle of a client address.
    pub fn address(addr: &'a str) -> Self {
        Self {
            scope: ThrottleScope::Address,
            subject: addr,
            policy: ThrottlePolicy::ADDRESS,
        }
    }
}

/// What [`Store::begin_attempt`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptStart {
    /// Go ahead and check the credentials (an exclusive key's lease is now held).
    Go,
    /// Refused without checking anything. `audit` is true for the first refusal of this key in
    /// the audit interval: append one `login_throttled` record then, and none otherwise.
    Refused {
        /// Delayed or locked, and until when.
        decision: ThrottleDecision,
        /// Whether a `login_throttled` audit record is due.
        audit: bool,
    },
}

/// A lockout in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lockout {
    /// Account or address.
    pub scope: ThrottleScope,
    /// The username or the address.
    pub subject: String,
    /// The account the username belongs to (accounts of the administrator's practice only).
    pub staff: Option<StaffId>,
    /// When it ends.
    pub locked_until: OffsetDateTime,
    /// Lockouts so far.
    pub lockouts: u32,
    /// Attempts refused since the key was last cleared (counted, not each audited).
    pub refused: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Row {
    state: ThrottleState,
    lease_until: Option<OffsetDateTime>,
    refused: u64,
    refused_audited_at: Option<OffsetDateTime>,
}

fn decode(row: &AnyRow) -> Result<Row, StoreError> {
    Ok(Row {
        state: ThrottleState {
            failures: u32::try_from(col_u64(row, "failures")?).unwrap_or(u32::MAX),
            last_failure_at: opt_from_millis(col(row, "last_failure_at")?)?,
            locked_until: opt_from_millis(col(row, "locked_until")?)?,
            lockouts: u32::try_from(col_u64(row, "lockouts")?).unwrap_or(u32::MAX),
        },
        lease_until: opt_from_millis(col(row, "lease_until")?)?,
        refused: col_u64(row, "refused")?,
        refused_audited_at: opt_from_millis(col(row, "refused_audited_at")?)?,
    })
}

const COLUMNS: &str =
    "failures, last_failure_at, locked_until, lockouts, lease_until, refused, refused_audited_at";

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens a transaction holding the lock of one throttle row, and reads it (the default
    /// state when there is no row).
    async fn lock_throttle(&self, key: &ThrottleKey<'_>) -> Result<(Tx, Row), StoreError> {
        let mut tx = match self.backend() {
            Backend::Sqlite => self.pool().begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool().begin().await,
        }
        .map_err(|e| self.err(e))?;
        let select = match self.backend() {
            Backend::Sqlite => {
                format!("SELECT {COLUMNS} FROM auth_throttle WHERE scope = $1 AND subject = $2")
            }
            Backend::Postgres => {
                // The row must exist to be locked; a concurrent insert waits on the key.
                sqlx::query(
                    "INSERT INTO auth_throttle (scope, subject, failures, lockouts, refused) VALUES ($1, $2, 0, 0, 0) ON CONFLICT (scope, subject) DO NOTHING",
                )
                .bind(key.scope.as_str())
                .bind(key.subject.to_owned())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
                format!(
                    "SELECT {COLUMNS} FROM auth_throttle WHERE scope = $1 AND subject = $2 FOR UPDATE"
                )
            }
        };
        let row = sqlx::query(&select)
            .bind(key.scope.as_str())
            .bind(key.subject.to_owned())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let row = row.as_ref().map(decode).transpose()?.unwrap_or_default();
        Ok((tx, row))
    }

    /// Writes a throttle row back (deleting it when it holds nothing) and commits.
    async fn store_throttle(
        &self,
        mut tx: Tx,
        key: &ThrottleKey<'_>,
        row: &Row,
    ) -> Result<(), StoreError> {
        if *row == Row::default() {
            sqlx::query("DELETE FROM auth_throttle WHERE scope = $1 AND subject = $2")
                .bind(key.scope.as_str())
                .bind(key.subject.to_owned())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        } else {
            sqlx::query(&format!(
                "INSERT INTO auth_throttle (scope, subject, {COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (scope, subject) DO UPDATE SET failures = excluded.failures, last_failure_at = excluded.last_failure_at, locked_until = excluded.locked_until, lockouts = excluded.lockouts, lease_until = excluded.lease_until, refused = excluded.refused, refused_audited_at = excluded.refused_audited_at"
            ))
            .bind(key.scope.as_str())
            .bind(key.subject.to_owned())
            .bind(i64::from(row.state.failures))
            .bind(row.state.last_failure_at.map(millis))
            .bind(row.state.locked_until.map(millis))
            .bind(i64::from(row.state.lockouts))
            .bind(row.lease_until.map(millis))
            .bind(to_i64(row.refused))
            .bind(row.refused_audited_at.map(millis))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))
    }

    /// Starts an attempt at `now`, atomically: refused (and counted) while the key is locked or
    /// delayed, or, for an exclusive key, while another attempt holds its lease; otherwise an
    /// exclusive key's lease is taken (for at most `perimeter_auth::ATTEMPT_LEASE`). Check
    /// before any credential work, so a refused attempt costs no hashing.
    pub async fn begin_attempt(
        &self,
        key: &ThrottleKey<'_>,
        now: OffsetDateTime,
    ) -> Result<AttemptStart, StoreError> {
        let (tx, mut row) = self.lock_throttle(key).await?;
        let outcome = match key.policy.check_attempt(&row.state, row.lease_until, now) {
            ThrottleDecision::Allow => {
                if key.policy.exclusive {
                    row.lease_until = Some(now + ATTEMPT_LEASE);
                }
                AttemptStart::Go
            }
            decision => {
                row.refused = row.refused.saturating_add(1);
                let audit = throttled_audit_due(row.refused_audited_at, now);
                if audit {
                    row.refused_audited_at = Some(now);
                }
                AttemptStart::Refused { decision, audit }
            }
        };
        self.store_throttle(tx, key, &row).await?;
        Ok(outcome)
    }

    /// Ends an attempt, atomically: releases the lease and, when `failed`, counts the failure.
    /// Returns the end of the lockout this failure caused, if it caused one (audit it). Also
    /// forgets stale rows (no failure within a day, not locked, no lease), so throttles of
    /// usernames that match no account do not pile up.
    pub async fn finish_attempt(
        &self,
        key: &ThrottleKey<'_>,
        failed: bool,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let (tx, mut row) = self.lock_throttle(key).await?;
        row.lease_until = None;
        let mut locked = None;
        if failed {
            let out = key.policy.record_failure(&row.state, now);
            row.state = out.state;
            locked = out.locked_until;
        }
        self.store_throttle(tx, key, &row).await?;
        if failed {
            self.prune_throttles(now, key.policy.lockout_memory).await?;
        }
        Ok(locked)
    }

    /// Releases an attempt's lease without counting anything (the attempt stopped before its
    /// outcome was known, or the credentials were right and the second factor is next).
    pub async fn release_attempt(&self, key: &ThrottleKey<'_>) -> Result<(), StoreError> {
        let (tx, mut row) = self.lock_throttle(key).await?;
        row.lease_until = None;
        self.store_throttle(tx, key, &row).await
    }

    /// A completed log-in: the key's failures, lockouts and refusals are forgotten.
    pub async fn clear_attempts(&self, key: &ThrottleKey<'_>) -> Result<(), StoreError> {
        let (tx, _) = self.lock_throttle(key).await?;
        self.store_throttle(tx, key, &Row::default()).await
    }

    async fn prune_throttles(
        &self,
        now: OffsetDateTime,
        memory: time::Duration,
    ) -> Result<(), StoreError> {
        let sql = match self.backend() {
            Backend::Sqlite => {
                "DELETE FROM auth_throttle WHERE last_failure_at < $1 AND (locked_until IS NULL OR locked_until <= $2) AND (lease_until IS NULL OR lease_until <= $2)"
            }
            // Rows another transaction holds are skipped (pruned next time), so pruning never
            // waits on, or deadlocks with, an attempt in progress.
            Backend::Postgres => {
                "DELETE FROM auth_throttle WHERE (scope, subject) IN (SELECT scope, subject FROM auth_throttle WHERE last_failure_at < $1 AND (locked_until IS NULL OR locked_until <= $2) AND (lease_until IS NULL OR lease_until <= $2) LIMIT 200 FOR UPDATE SKIP LOCKED)"
            }
        };
        sqlx::query(sql)
            .bind(millis(now - memory))
            .bind(millis(now))
            .execute(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The throttle state of an account (username) or address (default: no failures).
    pub async fn throttle_state(
        &self,
        scope: ThrottleScope,
        subject: &str,
    ) -> Result<ThrottleState, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM auth_throttle WHERE scope = $1 AND subject = $2"
        ))
        .bind(scope.as_str())
        .bind(subject.to_owned())
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        Ok(row
            .as_ref()
            .map(decode)
            .transpose()?
            .unwrap_or_default()
            .state)
    }

    /// Lifts a lockout (an administrator's unlock) and appends `event` (`unlocked` or
    /// `address_unlocked`) in one transaction. `false`: there was nothing to lift. Declares
    /// `manage_lockouts` for the event's actor (checked in the database): a user may lift an
    /// account's lockout only for an account of their practice (another username is not
    /// found), and any address's (addresses belong to no practice, see [`Store::lockouts`]).
    pub async fn clear_throttle(
        &self,
        scope: ThrottleScope,
        subject: &str,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut w = self.begin_write().await?;
        let who = acting(&mut w, &event.actor, Permission::ManageLockouts).await?;
        if scope == ThrottleScope::Account && who.user().is_some() {
            let practice: Option<String> =
                sqlx::query_scalar("SELECT practice_id FROM staff_user WHERE username = $1")
                    .bind(subject.to_owned())
                    .fetch_optional(w.conn())
                    .await
                    .map_err(|e| w.err(e))?;
            let practice = practice.ok_or_else(|| StoreError::NotFound {
                kind: "staff user",
                id: "(username)".into(),
            })?;
            who.within(id(&practice, "practice")?, "staff user", "(username)")?;
        }
        let gone = sqlx::query("DELETE FROM auth_throttle WHERE scope = $1 AND subject = $2")
            .bind(scope.as_str())
            .bind(subject.to_owned())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        w.audit(event).await?;
        w.commit().await?;
        Ok(gone.rows_affected() > 0)
    }

    /// Lockouts in force at `now` that an administrator of `practice` may see: the accounts of
    /// that practice and client addresses (an address is not a practice's: a lockout of one
    /// blocks every practice's users behind it). Usernames that match no account are not
    /// listed (they concern no one's account).
    /// Declares `manage_lockouts` for a staff [`Scope`].
    pub async fn lockouts(
        &self,
        scope: impl Into<Scope>,
        now: OffsetDateTime,
    ) -> Result<Vec<Lockout>, StoreError> {
        let practice = self
            .scope_practice(scope, Permission::ManageLockouts)
            .await?;
        let rows = sqlx::query(
            "SELECT t.scope, t.subject, t.locked_until, t.lockouts, t.refused, s.id AS staff_id FROM auth_throttle t LEFT JOIN staff_user s ON t.scope = 'account' AND s.username = t.subject WHERE t.locked_until > $1 AND (t.scope = 'address' OR s.practice_id = $2) ORDER BY t.locked_until, t.subject",
        )
        .bind(millis(now))
        .bind(practice.to_string())
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                let scope: String = col(r, "scope")?;
                let staff: Option<String> = col(r, "staff_id")?;
                Ok(Lockout {
                    scope: match scope.as_str() {
                        "account" => ThrottleScope::Account,
                        "address" => ThrottleScope::Address,
                        _ => return Err(StoreError::Corrupt("unknown throttle scope".into())),
                    },
                    subject: col(r, "subject")?,
                    staff: staff.map(|s| id(&s, "staff")).transpose()?,
                    locked_until: from_millis(col(r, "locked_until")?)?,
                    lockouts: u32::try_from(col_u64(r, "lockouts")?).unwrap_or(u32::MAX),
                    refused: col_u64(r, "refused")?,
                })
            })
            .collect()
    }
}

//! Staff authentication storage (migrations `0003_auth`, `0005_auth_access`): MFA secrets
//! sealed under a per-user data key, recovery-code hashes, sessions keyed by token hash and API
//! tokens. Throttling is in `throttle.rs`, emergency access and notifications in
//! `emergency.rs`.
//!
//! The rules live in `perimeter-auth`; this module only keeps their state. Sessions are in the
//! database so several server processes share them. Security events are audit records built by
//! the caller (`perimeter_auth::SecurityEvent::to_audit`) and, where a change goes with them,
//! appended in the same transaction.
//!
//! The changes one person makes to another's account ([`Store::set_staff_roles`],
//! [`Store::reset_mfa`], [`Store::end_staff_sessions`], [`Store::insert_api_token`],
//! [`Store::revoke_api_token`]) declare a permission and check the event's actor in the
//! database in their transaction; see the table in `staff.rs`.

use perimeter_audit::AuditEvent;
use perimeter_auth::{
    ApiTokenRecord, ApiTokenScope, CsrfToken, Permission, RecoveryCodeHash, SessionRecord,
    SessionStage, TokenHash, TotpSecret, Username,
};
use perimeter_crypto::{Aad, Dek, WrappedDek, decrypt_field, encrypt_field};
use perimeter_domain::{PracticeId, PurposeOfUse, Role, StaffId};
use sqlx::any::AnyRow;
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::Scope;
use crate::model::StaffUser;
use crate::rows::{col, id};
use crate::staff::{act_on_staff, not_oneself};
use crate::views::acting;
use crate::{Store, StoreError};

/// Milliseconds since the Unix epoch (how every timestamp is stored).
pub(crate) fn millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(crate) fn from_millis(ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|_| StoreError::Corrupt("stored timestamp out of range".into()))
}

pub(crate) fn opt_from_millis(ms: Option<i64>) -> Result<Option<OffsetDateTime>, StoreError> {
    ms.map(from_millis).transpose()
}

fn hash_col(row: &AnyRow, name: &str) -> Result<TokenHash, StoreError> {
    Ok(TokenHash(crate::rows::col_hash(row, name)?))
}

fn step_to_i64(step: u64) -> Result<i64, StoreError> {
    i64::try_from(step).map_err(|_| StoreError::Invalid {
        field: "totp step",
        expected: "a step within range",
    })
}

/// The wrapping context of a staff user's MFA data key.
pub(crate) fn mfa_wrap_context(staff: StaffId) -> Vec<u8> {
    let mut c = b"staff_mfa:".to_vec();
    c.extend_from_slice(staff.as_bytes());
    c
}

const MFA_TABLE: &str = "staff_mfa";
const MFA_FIELD: &str = "totp_secret";

/// A user's stored MFA state.
pub struct MfaRecord {
    /// The TOTP secret (decrypted).
    pub secret: TotpSecret,
    /// Whether enrolment was confirmed with a valid code (until then MFA is not in force).
    pub confirmed: bool,
    /// The last accepted TOTP step.
    pub last_step: Option<u64>,
}

impl std::fmt::Debug for MfaRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaRecord")
            .field("confirmed", &self.confirmed)
            .field("last_step", &self.last_step)
            .finish_non_exhaustive()
    }
}

fn join<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn decode_session(row: &AnyRow) -> Result<SessionRecord, StoreError> {
    let stage: String = col(row, "stage")?;
    Ok(SessionRecord {
        token_hash: hash_col(row, "token_hash")?,
        user: id(&col::<String>(row, "staff_id")?, "staff")?,
        stage: SessionStage::parse(&stage)
            .ok_or_else(|| StoreError::Corrupt("unknown session stage stored".into()))?,
        created_at: from_millis(col(row, "created_at")?)?,
        last_seen_at: from_millis(col(row, "last_seen_at")?)?,
        csrf: CsrfToken::from_stored(col(row, "csrf_token")?),
    })
}

fn decode_token(row: &AnyRow) -> Result<ApiTokenRecord, StoreError> {
    let perms: String = col(row, "permissions")?;
    let purposes: String = col(row, "purposes")?;
    Ok(ApiTokenRecord {
        id: id(&col::<String>(row, "id")?, "api token")?,
        token_hash: hash_col(row, "token_hash")?,
        client: id(&col::<String>(row, "client_id")?, "staff")?,
        label: col(row, "label")?,
        scope: ApiTokenScope {
            permissions: perms
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<Permission>()
                        .map_err(|_| StoreError::Corrupt("unknown permission stored".into()))
                })
                .collect::<Result<_, _>>()?,
            purposes: purposes
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<PurposeOfUse>()
                        .map_err(|_| StoreError::Corrupt("unknown purpose stored".into()))
                })
                .collect::<Result<_, _>>()?,
        },
        created_at: from_millis(col(row, "created_at")?)?,
        expires_at: from_millis(col(row, "expires_at")?)?,
        revoked_at: opt_from_millis(col(row, "revoked_at")?)?,
    })
}

const SESSION_COLUMNS: &str = "token_hash, staff_id, stage, csrf_token, created_at, last_seen_at";
const TOKEN_COLUMNS: &str =
    "id, token_hash, client_id, label, permissions, purposes, created_at, expires_at, revoked_at";

impl Store {
    /// The account a log-in names: the staff user with this (normalised) username. Usernames
    /// are unique across the installation (migration 0005), so the name alone identifies the
    /// account. One query whether or not the account exists. Disabled accounts are returned
    /// (the caller refuses them after the same password work as any other failure).
    pub async fn find_login(&self, username: &Username) -> Result<Option<StaffUser>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM staff_user WHERE username = $1",
            crate::staff::STAFF_COLUMNS
        ))
        .bind(username.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        row.as_ref().map(crate::staff::decode_staff).transpose()
    }

    /// Appends security events that go with no other change (failed log-ins, denials,
    /// timeouts), in one transaction.
    pub async fn append_security_events(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        // Group-committed with other standalone events; the events of one call stay together.
        self.append_audit(events).await.map(|_| ())
    }

    // ---- MFA ------------------------------------------------------------------------------

    /// The user's MFA state, with the secret decrypted.
    pub async fn load_mfa(&self, staff: StaffId) -> Result<Option<MfaRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT kek_version, dek_id, wrapped_dek, secret_ct, confirmed_at, last_step FROM staff_mfa WHERE staff_id = $1",
        )
        .bind(staff.to_string())
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let version: i64 = col(&row, "kek_version")?;
        let dek_id: Vec<u8> = col(&row, "dek_id")?;
        let wrapped = WrappedDek {
            kek_version: u32::try_from(version)
                .map_err(|_| StoreError::Corrupt("KEK version out of range".into()))?,
            dek_id: <[u8; 16]>::try_from(dek_id.as_slice())
                .map_err(|_| StoreError::Corrupt("data key id is not 16 bytes".into()))?,
            bytes: col(&row, "wrapped_dek")?,
        };
        let dek = self.keys().unwrap_dek(&wrapped, &mfa_wrap_context(staff))?;
        let ct: Vec<u8> = col(&row, "secret_ct")?;
        let secret = Zeroizing::new(decrypt_field(
            &dek,
            &Aad::new(MFA_TABLE, *staff.as_bytes(), MFA_FIELD),
            &ct,
        )?);
        let secret = TotpSecret::from_bytes(secret.to_vec())
            .map_err(|_| StoreError::Corrupt("stored TOTP secret has a bad length".into()))?;
        let confirmed: Option<i64> = col(&row, "confirmed_at")?;
        let last: Option<i64> = col(&row, "last_step")?;
        Ok(Some(MfaRecord {
            secret,
            confirmed: confirmed.is_some(),
            last_step: last.and_then(|s| u64::try_from(s).ok()),
        }))
    }

    /// Stores a new, unconfirmed TOTP secret (replacing an unconfirmed one). Refused with
    /// `Duplicate`-free `Invalid` when the user already has confirmed MFA (an administrator must
    /// reset it first).
    pub async fn start_mfa_enrolment(
        &self,
        staff: StaffId,
        secret: &TotpSecret,
    ) -> Result<(), StoreError> {
        self.ensure_current_keys().await?;
        let dek = Dek::generate()?;
        let wrapped = self.keys().wrap_dek(&dek, &mfa_wrap_context(staff))?;
        let ct = encrypt_field(
            &dek,
            &Aad::new(MFA_TABLE, *staff.as_bytes(), MFA_FIELD),
            secret.as_bytes(),
        )?;
        let now = self.now();
        let mut w = self.begin_write().await?;
        crate::keys::check_kek_usable(&mut w, wrapped.kek_version).await?;
        let confirmed = sqlx::query(
            "SELECT confirmed_at FROM staff_mfa WHERE staff_id = $1 AND confirmed_at IS NOT NULL",
        )
        .bind(staff.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        if confirmed.is_some() {
            return Err(StoreError::Invalid {
                field: "mfa",
                expected: "no confirmed authenticator (an administrator must reset MFA first)",
            });
        }
        sqlx::query("DELETE FROM staff_mfa WHERE staff_id = $1")
            .bind(staff.to_string())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        sqlx::query(
            "INSERT INTO staff_mfa (staff_id, kek_version, dek_id, wrapped_dek, secret_ct, confirmed_at, last_step, created_at) VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6)",
        )
        .bind(staff.to_string())
        .bind(i64::from(wrapped.kek_version))
        .bind(wrapped.dek_id.to_vec())
        .bind(wrapped.bytes.clone())
        .bind(ct)
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        w.commit().await
    }

    /// Confirms a pending enrolment with the step of the valid code the user entered, stores
    /// the recovery-code hashes (replacing any old ones) and appends `event` (`mfa_enrolled`),
    /// all in one transaction. Returns `false` if there was no pending enrolment.
    pub async fn confirm_mfa_enrolment(
        &self,
        staff: StaffId,
        step: u64,
        recovery: &[RecoveryCodeHash],
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE staff_mfa SET confirmed_at = $2, last_step = $3 WHERE staff_id = $1 AND confirmed_at IS NULL",
        )
        .bind(staff.to_string())
        .bind(now)
        .bind(step_to_i64(step)?)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM staff_recovery_code WHERE staff_id = $1")
            .bind(staff.to_string())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        for h in recovery {
            sqlx::query(
                "INSERT INTO staff_recovery_code (staff_id, code_hash, created_at) VALUES ($1, $2, $3)",
            )
            .bind(staff.to_string())
            .bind(h.0.to_vec())
            .bind(now)
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        }
        w.audit(event).await?;
        w.commit().await?;
        Ok(true)
    }

    /// Records `step` as the user's last accepted TOTP step if it is later than the stored one
    /// (compare-and-set, so two processes cannot both accept the same code). `false`: replay.
    pub async fn accept_totp_step(&self, staff: StaffId, step: u64) -> Result<bool, StoreError> {
        let step = step_to_i64(step)?;
        let done = sqlx::query(
            "UPDATE staff_mfa SET last_step = $2 WHERE staff_id = $1 AND confirmed_at IS NOT NULL AND (last_step IS NULL OR last_step < $2)",
        )
        .bind(staff.to_string())
        .bind(step)
        .execute(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Consumes a recovery code (deletes its hash). `false`: no such unused code.
    pub async fn consume_recovery_code(
        &self,
        staff: StaffId,
        code: &RecoveryCodeHash,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM staff_recovery_code WHERE staff_id = $1 AND code_hash = $2")
                .bind(staff.to_string())
                .bind(code.0.to_vec())
                .execute(self.pool())
                .await
                .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() == 1)
    }

    /// How many unused recovery codes the user has.
    pub async fn recovery_codes_left(&self, staff: StaffId) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM staff_recovery_code WHERE staff_id = $1")
            .bind(staff.to_string())
            .fetch_one(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        crate::rows::col_u64(&row, "n")
    }

    /// Removes the user's MFA, recovery codes and sessions (they enrol again at next log-in)
    /// and appends `event` (`mfa_reset`), in one transaction. Declares `reset_mfa` for the
    /// event's actor (checked in the database; the account must be of the user's practice).
    pub async fn reset_mfa(&self, staff: StaffId, event: &AuditEvent) -> Result<(), StoreError> {
        let mut w = self.begin_write().await?;
        act_on_staff(&mut w, &event.actor, Permission::ResetMfa, staff).await?;
        for sql in [
            "DELETE FROM staff_mfa WHERE staff_id = $1",
            "DELETE FROM staff_recovery_code WHERE staff_id = $1",
            "DELETE FROM auth_session WHERE staff_id = $1",
        ] {
            sqlx::query(sql)
                .bind(staff.to_string())
                .execute(w.conn())
                .await
                .map_err(|e| w.err(e))?;
        }
        w.audit(event).await?;
        w.commit().await
    }

    // ---- sessions -------------------------------------------------------------------------

    /// Stores a new session.
    pub async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO auth_session ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(s.token_hash.0.to_vec())
        .bind(s.user.to_string())
        .bind(s.stage.as_str())
        .bind(s.csrf.as_str().to_owned())
        .bind(millis(s.created_at))
        .bind(millis(s.last_seen_at))
        .execute(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A session by its token hash.
    pub async fn session(&self, hash: &TokenHash) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM auth_session WHERE token_hash = $1"
        ))
        .bind(hash.0.to_vec())
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        row.as_ref().map(decode_session).transpose()
    }

    /// Records activity on a session (the idle timeout counts from here).
    pub async fn touch_session(
        &self,
        hash: &TokenHash,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE auth_session SET last_seen_at = $2 WHERE token_hash = $1 AND last_seen_at < $2",
        )
        .bind(hash.0.to_vec())
        .bind(millis(at))
        .execute(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Replaces a session by a rotated one (new token and CSRF token) in one transaction, and
    /// appends `event` if given. `false`: the old session no longer exists (nothing stored).
    pub async fn rotate_session(
        &self,
        old: &TokenHash,
        new: &SessionRecord,
        event: Option<&AuditEvent>,
    ) -> Result<bool, StoreError> {
        let mut w = self.begin_write().await?;
        let gone = sqlx::query("DELETE FROM auth_session WHERE token_hash = $1")
            .bind(old.0.to_vec())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        if gone.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(&format!(
            "INSERT INTO auth_session ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(new.token_hash.0.to_vec())
        .bind(new.user.to_string())
        .bind(new.stage.as_str())
        .bind(new.csrf.as_str().to_owned())
        .bind(millis(new.created_at))
        .bind(millis(new.last_seen_at))
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        if let Some(event) = event {
            w.audit(event).await?;
        }
        w.commit().await?;
        Ok(true)
    }

    /// Ends one session, appending `event` (logout or a timeout) in the same transaction.
    /// `false`: it had already ended.
    pub async fn end_session(
        &self,
        hash: &TokenHash,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut w = self.begin_write().await?;
        let gone = sqlx::query("DELETE FROM auth_session WHERE token_hash = $1")
            .bind(hash.0.to_vec())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        if gone.rows_affected() == 0 {
            return Ok(false);
        }
        w.audit(event).await?;
        w.commit().await?;
        Ok(true)
    }

    /// Ends every session of `staff` (logout everywhere, an administrator's action, a role
    /// change), appending `event`. Returns how many ended. Declares `own_account` when the
    /// event's actor is `staff` (sign out everywhere), else `end_user_sessions` (checked in the
    /// database; the account must be of the user's practice); Perimeter itself (the guard
    /// ending a disabled account's sessions) may.
    pub async fn end_staff_sessions(
        &self,
        staff: StaffId,
        event: &AuditEvent,
    ) -> Result<u64, StoreError> {
        let own =
            matches!(&event.actor, perimeter_audit::Actor::User { user, .. } if *user == staff);
        let permission = if own {
            Permission::OwnAccount
        } else {
            Permission::EndUserSessions
        };
        let mut w = self.begin_write().await?;
        act_on_staff(&mut w, &event.actor, permission, staff).await?;
        let gone = sqlx::query("DELETE FROM auth_session WHERE staff_id = $1")
            .bind(staff.to_string())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        w.audit(event).await?;
        w.commit().await?;
        Ok(gone.rows_affected())
    }

    /// How many sessions `staff` has.
    pub async fn count_staff_sessions(&self, staff: StaffId) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM auth_session WHERE staff_id = $1")
            .bind(staff.to_string())
            .fetch_one(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        crate::rows::col_u64(&row, "n")
    }

    // ---- roles ----------------------------------------------------------------------------

    /// Sets a staff user's roles, ends their sessions (they log in again with the new
    /// privileges) and appends `event` (`role_changed`), in one transaction. Declares
    /// `manage_roles` for the event's actor (checked in the database; the account must be of
    /// the user's practice, and not the user's own).
    pub async fn set_staff_roles(
        &self,
        staff: StaffId,
        roles: &[Role],
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut w = self.begin_write().await?;
        let who = act_on_staff(&mut w, &event.actor, Permission::ManageRoles, staff).await?;
        not_oneself(&who, staff, Permission::ManageRoles)?;
        let done = sqlx::query("UPDATE staff_user SET roles = $2 WHERE id = $1")
            .bind(staff.to_string())
            .bind(join(roles.iter().map(|r| r.as_str())))
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "staff user",
                id: staff.to_string(),
            });
        }
        sqlx::query("DELETE FROM auth_session WHERE staff_id = $1")
            .bind(staff.to_string())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        w.audit(event).await?;
        w.commit().await
    }

    // ---- API tokens -----------------------------------------------------------------------

    /// Stores a new API token record and appends `event` (`api_token_created`). Declares
    /// `manage_api_tokens` for the event's actor (checked in the database; the token's client
    /// must be an account of the user's practice).
    pub async fn insert_api_token(
        &self,
        t: &ApiTokenRecord,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut w = self.begin_write().await?;
        act_on_staff(&mut w, &event.actor, Permission::ManageApiTokens, t.client).await?;
        // Tokens are for service clients only: a person signs in (with MFA) instead.
        let client = sqlx::query("SELECT roles, disabled_at FROM staff_user WHERE id = $1")
            .bind(t.client.to_string())
            .fetch_one(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        let roles = crate::staff::roles_from_text(&col::<String>(&client, "roles")?)?;
        let disabled: Option<i64> = col(&client, "disabled_at")?;
        if !roles.contains(&perimeter_domain::Role::Service) || disabled.is_some() {
            return Err(StoreError::Invalid {
                field: "client",
                expected: "an enabled service client account (role service)",
            });
        }
        sqlx::query(&format!(
            "INSERT INTO api_token ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(t.id.to_string())
        .bind(t.token_hash.0.to_vec())
        .bind(t.client.to_string())
        .bind(t.label.clone())
        .bind(join(t.scope.permissions.iter().map(|p| p.as_str())))
        .bind(join(t.scope.purposes.iter().map(|p| p.as_str())))
        .bind(millis(t.created_at))
        .bind(millis(t.expires_at))
        .bind(t.revoked_at.map(millis))
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        w.audit(event).await?;
        w.commit().await
    }

    /// An API token by its hash.
    pub async fn api_token_by_hash(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<ApiTokenRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_token WHERE token_hash = $1"
        ))
        .bind(hash.0.to_vec())
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        row.as_ref().map(decode_token).transpose()
    }

    /// The API tokens of `practice`'s service clients, newest first.
    /// Declares `manage_api_tokens` for a staff [`Scope`].
    pub async fn list_api_tokens(
        &self,
        scope: impl Into<Scope>,
    ) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let practice = self
            .scope_practice(scope, Permission::ManageApiTokens)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_token WHERE client_id IN (SELECT id FROM staff_user WHERE practice_id = $1) ORDER BY created_at DESC, id"
        ))
        .bind(practice.to_string())
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        rows.iter().map(decode_token).collect()
    }

    /// Revokes a token of one of `practice`'s service clients at `at` and appends `event`.
    /// `false`: no such unrevoked token in that practice. Declares `manage_api_tokens` for the
    /// event's actor (checked in the database; `practice` must be the user's).
    pub async fn revoke_api_token(
        &self,
        practice: PracticeId,
        token: Uuid,
        at: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut w = self.begin_write().await?;
        acting(&mut w, &event.actor, Permission::ManageApiTokens)
            .await?
            .in_practice(practice)?;
        let done = sqlx::query(
            "UPDATE api_token SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL AND client_id IN (SELECT id FROM staff_user WHERE practice_id = $3)",
        )
        .bind(token.to_string())
        .bind(millis(at))
        .bind(practice.to_string())
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        w.audit(event).await?;
        w.commit().await?;
        Ok(true)
    }
}

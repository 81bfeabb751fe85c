//! Practices and staff accounts (not PHI, stored in clear; password hashes are argon2id).
//!
//! Each administrative change declares a permission and checks its actor in the database in
//! its own transaction (`views::acting`): the actor of the [`AccessContext`], or of the audit
//! event the caller has the store append with the change. A user must be an active account
//! whose stored roles hold the permission, and the account changed must be of that user's
//! practice (another practice's account is not found); the roles the caller put in the actor
//! are not trusted. Perimeter itself (the CLI, seeding, the session guard) may; service
//! clients and anonymous callers may not. Token and MFA changes are in `auth.rs`, lockouts in
//! `throttle.rs`, with the same check.
//!
//! | Function | Declares |
//! |---|---|
//! | [`Store::create_practice`] | Perimeter itself only (`internal_write`: the CLI, seeding) |
//! | [`Store::create_staff`] | `manage_users` |
//! | [`Store::set_staff_disabled`] | `manage_users` (not one's own account) |
//! | [`Store::set_staff_roles`] | `manage_roles` (not one's own roles) |
//! | [`Store::reset_mfa`] | `reset_mfa` |
//! | [`Store::end_staff_sessions`] | `end_user_sessions`, or `own_account` for one's own sessions |
//! | [`Store::insert_api_token`], [`Store::revoke_api_token`] | `manage_api_tokens` |
//! | [`Store::clear_throttle`] | `manage_lockouts` |
//!
//! The reads (`get_staff`, `list_staff`, `staff_directory`, ...) and the authentication
//! steps of one's own log-in (passwords, MFA enrolment, sessions) hold no patient data and
//! serve the server's guard and the routes, which declare their permission there.

use perimeter_audit::{Action, Actor, AuditEvent};
use perimeter_auth::{Permission, TokenHash};
use perimeter_domain::{PracticeId, Role, StaffId};
use sqlx::any::AnyRow;

use crate::Scope;
use crate::db::WriteTx;
use crate::model::{AccessContext, NewStaff, Practice, StaffUser, object};
use crate::rows::{col, id};
use crate::views::{Acting, acting};
use crate::{Store, StoreError};

/// The practice of staff account `staff`, read in `w` (`NotFound` if there is none).
async fn staff_practice(w: &mut WriteTx, staff: StaffId) -> Result<PracticeId, StoreError> {
    let practice: Option<String> =
        sqlx::query_scalar("SELECT practice_id FROM staff_user WHERE id = $1")
            .bind(staff.to_string())
            .fetch_optional(w.conn())
            .await
            .map_err(|e| w.err(e))?;
    let practice = practice.ok_or_else(|| StoreError::NotFound {
        kind: "staff user",
        id: staff.to_string(),
    })?;
    id(&practice, "practice")
}

/// For a change to staff account `target` declaring `permission`: checks `actor` in `w`
/// ([`acting`]), then that the account exists and is of the acting user's practice (else
/// `NotFound`). The actor is checked first, so a refused caller learns nothing about accounts.
pub(crate) async fn act_on_staff(
    w: &mut WriteTx,
    actor: &Actor,
    permission: Permission,
    target: StaffId,
) -> Result<Acting, StoreError> {
    let who = acting(w, actor, permission).await?;
    let practice = staff_practice(w, target).await?;
    who.within(practice, "staff user", target)?;
    Ok(who)
}

/// `Forbidden` when a user would change their own account this way (roles, disabling).
pub(crate) fn not_oneself(
    who: &Acting,
    target: StaffId,
    permission: Permission,
) -> Result<(), StoreError> {
    if who.user() == Some(target) {
        return Err(StoreError::Forbidden {
            permission: permission.as_str(),
        });
    }
    Ok(())
}

fn roles_to_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn roles_from_text(s: &str) -> Result<Vec<Role>, StoreError> {
    s.split(',')
        .filter(|r| !r.is_empty())
        .map(|r| {
            r.parse()
                .map_err(|_| StoreError::Corrupt("unknown role stored".into()))
        })
        .collect()
}

pub(crate) const STAFF_COLUMNS: &str =
    "id, practice_id, username, display_name, roles, password_hash, disabled_at, created_at";

pub(crate) fn decode_staff(row: &AnyRow) -> Result<StaffUser, StoreError> {
    Ok(StaffUser {
        id: id(&col::<String>(row, "id")?, "staff")?,
        practice_id: id(&col::<String>(row, "practice_id")?, "practice")?,
        username: col(row, "username")?,
        display_name: col(row, "display_name")?,
        roles: roles_from_text(&col::<String>(row, "roles")?)?,
        password_hash: col(row, "password_hash")?,
        disabled_at_millis: col(row, "disabled_at")?,
        created_at_millis: col(row, "created_at")?,
    })
}

impl Store {
    /// Creates a practice. Perimeter itself only (the CLI, seeding): no role creates
    /// practices, so a user, service or anonymous context gets [`StoreError::Forbidden`].
    pub async fn create_practice(
        &self,
        ctx: &AccessContext,
        name: &str,
    ) -> Result<PracticeId, StoreError> {
        ctx.require_internal_write()?;
        if name.trim().is_empty() {
            return Err(StoreError::Invalid {
                field: "practice name",
                expected: "a non-empty name",
            });
        }
        let pid = PracticeId::new();
        let now = self.now();
        let mut w = self.begin_write().await?;
        sqlx::query("INSERT INTO practice (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(pid.to_string())
            .bind(name.trim())
            .bind(now)
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        w.audit(&ctx.event(
            now,
            Action::Create,
            object("practice", pid),
            None,
            Vec::new(),
            None,
        ))
        .await?;
        w.commit().await?;
        Ok(pid)
    }

    /// Every practice, oldest first.
    pub async fn list_practices(&self) -> Result<Vec<Practice>, StoreError> {
        let rows = sqlx::query("SELECT id, name, created_at FROM practice ORDER BY created_at, id")
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                Ok(Practice {
                    id: id(&col::<String>(r, "id")?, "practice")?,
                    name: col(r, "name")?,
                    created_at_millis: col(r, "created_at")?,
                })
            })
            .collect()
    }

    /// Creates a staff account (audited as `user_created`). Usernames are unique across the
    /// installation: a name in use in any practice is refused with [`StoreError::Duplicate`].
    /// Declares `manage_users`: a user context must be an active administrator of `practice`
    /// by the database's record (the roles in `ctx` are not trusted; another practice is
    /// [`StoreError::NotFound`]); Perimeter itself may.
    pub async fn create_staff(
        &self,
        ctx: &AccessContext,
        practice: PracticeId,
        new: &NewStaff,
    ) -> Result<StaffId, StoreError> {
        let username = new.username.trim();
        if username.is_empty() || username.chars().any(char::is_whitespace) {
            return Err(StoreError::Invalid {
                field: "username",
                expected: "a non-empty name without spaces",
            });
        }
        let sid = StaffId::new();
        let now = self.now();
        let mut w = self.begin_write().await?;
        // Another practice does not exist for a user: not found, like its records.
        crate::views::require_actor(&mut w, ctx, Permission::ManageUsers, Some(practice)).await?;
        sqlx::query(
            "INSERT INTO staff_user (id, practice_id, username, display_name, roles, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(sid.to_string())
        .bind(practice.to_string())
        .bind(username)
        .bind(new.display_name.trim())
        .bind(roles_to_text(&new.roles))
        .bind(new.password_hash.clone())
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        w.audit(&ctx.event(
            now,
            Action::Create,
            object("staff_user", sid),
            None,
            Vec::new(),
            Some("user_created"),
        ))
        .await?;
        w.commit().await?;
        Ok(sid)
    }

    /// A staff account by id.
    pub async fn get_staff(&self, staff: StaffId) -> Result<StaffUser, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {STAFF_COLUMNS} FROM staff_user WHERE id = $1"
        ))
        .bind(staff.to_string())
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.err(e))?
        .ok_or_else(|| StoreError::NotFound {
            kind: "staff user",
            id: staff.to_string(),
        })?;
        decode_staff(&row)
    }

    /// A staff account by practice and username.
    pub async fn find_staff_by_username(
        &self,
        practice: PracticeId,
        username: &str,
    ) -> Result<Option<StaffUser>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {STAFF_COLUMNS} FROM staff_user WHERE practice_id = $1 AND username = $2"
        ))
        .bind(practice.to_string())
        .bind(username.trim())
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        row.as_ref().map(decode_staff).transpose()
    }

    /// A practice's staff, by username.
    pub async fn list_staff(&self, practice: PracticeId) -> Result<Vec<StaffUser>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {STAFF_COLUMNS} FROM staff_user WHERE practice_id = $1 ORDER BY username"
        ))
        .bind(practice.to_string())
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        rows.iter().map(decode_staff).collect()
    }

    /// Sets (or clears) a staff account's password hash and appends `event`
    /// (`password_changed`, or `password_rehashed` when only the parameters were upgraded), in
    /// one transaction. Sessions are left alone (see [`Store::change_staff_password`]).
    pub async fn set_staff_password_hash(
        &self,
        staff: StaffId,
        password_hash: Option<&str>,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut w = self.begin_write().await?;
        let done = sqlx::query("UPDATE staff_user SET password_hash = $2 WHERE id = $1")
            .bind(staff.to_string())
            .bind(password_hash.map(str::to_owned))
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "staff user",
                id: staff.to_string(),
            });
        }
        w.audit(event).await?;
        w.commit().await
    }

    /// A user's own password change: stores the new hash, ends every session of the user but
    /// `keep` (the one that re-authenticated) and appends `event` (`password_changed`), in one
    /// transaction. Returns how many sessions ended.
    pub async fn change_staff_password(
        &self,
        staff: StaffId,
        password_hash: &str,
        keep: Option<&TokenHash>,
        event: &AuditEvent,
    ) -> Result<u64, StoreError> {
        let mut w = self.begin_write().await?;
        let done = sqlx::query("UPDATE staff_user SET password_hash = $2 WHERE id = $1")
            .bind(staff.to_string())
            .bind(password_hash.to_owned())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "staff user",
                id: staff.to_string(),
            });
        }
        let ended = match keep {
            Some(hash) => {
                sqlx::query("DELETE FROM auth_session WHERE staff_id = $1 AND token_hash <> $2")
                    .bind(staff.to_string())
                    .bind(hash.0.to_vec())
                    .execute(w.conn())
                    .await
                    .map_err(|e| w.err(e))?
            }
            None => sqlx::query("DELETE FROM auth_session WHERE staff_id = $1")
                .bind(staff.to_string())
                .execute(w.conn())
                .await
                .map_err(|e| w.err(e))?,
        };
        w.audit(event).await?;
        w.commit().await?;
        Ok(ended.rows_affected())
    }

    /// Disables (`disabled = true`: ends every session too; API tokens stop working because
    /// the guard refuses disabled accounts) or enables a staff account, appending `event`
    /// (`user_disabled` / `user_enabled`) in the same transaction. `false`: it already was.
    /// Declares `manage_users` for the event's actor (checked in the database; the account
    /// must be of the user's practice, and not the user's own).
    pub async fn set_staff_disabled(
        &self,
        staff: StaffId,
        disabled: bool,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        let who = act_on_staff(&mut w, &event.actor, Permission::ManageUsers, staff).await?;
        not_oneself(&who, staff, Permission::ManageUsers)?;
        let done = if disabled {
            sqlx::query(
                "UPDATE staff_user SET disabled_at = $2 WHERE id = $1 AND disabled_at IS NULL",
            )
            .bind(staff.to_string())
            .bind(now)
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?
        } else {
            sqlx::query(
                "UPDATE staff_user SET disabled_at = NULL WHERE id = $1 AND disabled_at IS NOT NULL",
            )
            .bind(staff.to_string())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?
        };
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if disabled {
            sqlx::query("DELETE FROM auth_session WHERE staff_id = $1")
                .bind(staff.to_string())
                .execute(w.conn())
                .await
                .map_err(|e| w.err(e))?;
        }
        w.audit(event).await?;
        w.commit().await?;
        Ok(true)
    }

    /// A practice's staff for the administrators' list, by username, each with whether an
    /// authenticator is enrolled.
    /// Declares `manage_users` for a staff [`Scope`].
    pub async fn staff_directory(
        &self,
        scope: impl Into<Scope>,
    ) -> Result<Vec<StaffEntry>, StoreError> {
        let practice = self.scope_practice(scope, Permission::ManageUsers).await?;
        let rows = sqlx::query(
            "SELECT s.id, s.practice_id, s.username, s.display_name, s.roles, s.password_hash, s.disabled_at, s.created_at, m.confirmed_at AS mfa_confirmed_at FROM staff_user s LEFT JOIN staff_mfa m ON m.staff_id = s.id WHERE s.practice_id = $1 ORDER BY s.username",
        )
        .bind(practice.to_string())
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                let confirmed: Option<i64> = col(r, "mfa_confirmed_at")?;
                Ok(StaffEntry {
                    user: decode_staff(r)?,
                    mfa_enrolled: confirmed.is_some(),
                })
            })
            .collect()
    }
}

/// A staff account as the administrators' list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffEntry {
    /// The account (its password hash is never shown).
    pub user: StaffUser,
    /// Whether an authenticator is enrolled and confirmed.
    pub mfa_enrolled: bool,
}

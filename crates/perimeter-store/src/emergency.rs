//! Emergency access ("break the glass") and the notifications it sends (migrations 0003 and
//! 0005).
//!
//! A grant belongs to the patient's practice: [`Store::grant_break_glass`] refuses a patient
//! of another practice as not found. The justification is sealed under the patient's data key
//! (it is free text and may hold PHI); the audit trail and the notification carry the reason
//! code only. The privacy officer of the practice is notified in the console
//! ([`Store::staff_notifications`], polled; [`Store::mark_staff_notification_delivered`]) and reviews
//! each grant with its stated reasons ([`Store::break_glass_review_list`], every justification
//! read audited; [`Store::mark_break_glass_reviewed`]). The data layer consults
//! [`Store::active_break_glass`] through the views (`views.rs`).
//!
//! Each staff-facing function declares a permission and checks its actor (of the context, or of
//! the audit event the caller has it append) in the database in its transaction: an active
//! account of `practice` whose stored roles hold the permission (the roles in the actor are
//! not trusted); service clients and anonymous callers are refused.
//!
//! | Function | Declares |
//! |---|---|
//! | [`Store::grant_break_glass`] | `break_glass` (a user grants only themselves) |
//! | [`Store::break_glass_review_list`], [`Store::break_glass_justification`] | `review_emergency_access` |
//! | [`Store::mark_break_glass_reviewed`] | `review_emergency_access` (the reviewer is the acting user) |
//! | [`Store::staff_notifications`], [`Store::mark_staff_notification_delivered`] | `own_account` (the account's stored practice and roles choose what it sees) |
//!
//! [`Store::notifications_for`] and [`Store::mark_notification_delivered`] take a practice
//! and roles from their caller: they are for Perimeter itself (the CLI's start-up notice, other
//! deliverers), never for a staff request.

use perimeter_audit::{Action, AuditEvent, ObjectRef};
use perimeter_auth::{
    BreakGlassGrant, BreakGlassReason, Justification, Permission, PrivacyNotification,
};
use perimeter_crypto::{Aad, decrypt_text, encrypt_text};
use perimeter_domain::{PatientId, PracticeId, Role, StaffId};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::auth::{from_millis, millis, opt_from_millis};
use crate::model::AccessContext;
use crate::patients::patient_key;
use crate::rows::{col, id};
use crate::views::{acting, require_actor};
use crate::{Store, StoreError};

const GRANT_TABLE: &str = "break_glass_grant";
const GRANT_FIELD: &str = "reason";
const GRANT_COLUMNS: &str = "id, staff_id, patient_id, reason_code, granted_at, expires_at";

/// The outcomes a privacy officer's review may record.
pub const REVIEW_OUTCOMES: [&str; 2] = ["appropriate", "inappropriate"];

/// The most grants one review page returns.
pub const REVIEW_PAGE_LIMIT: u32 = 200;

fn decode_grant(row: &AnyRow) -> Result<BreakGlassGrant, StoreError> {
    let reason: String = col(row, "reason_code")?;
    Ok(BreakGlassGrant {
        id: id(&col::<String>(row, "id")?, "grant")?,
        user: id(&col::<String>(row, "staff_id")?, "staff")?,
        patient: id(&col::<String>(row, "patient_id")?, "patient")?,
        reason: reason
            .parse::<BreakGlassReason>()
            .map_err(|_| StoreError::Corrupt("unknown break-glass reason stored".into()))?,
        granted_at: from_millis(col(row, "granted_at")?)?,
        expires_at: from_millis(col(row, "expires_at")?)?,
    })
}

/// One emergency access as the privacy officer reviews it.
#[derive(Clone)]
pub struct BreakGlassEntry {
    /// The grant (who, whose record, reason code, when).
    pub grant: BreakGlassGrant,
    /// The stated justification (decrypted; `None` when the patient was crypto-shredded).
    pub justification: Option<Zeroizing<String>>,
    /// When it was reviewed, if it was.
    pub reviewed_at: Option<OffsetDateTime>,
    /// Who reviewed it.
    pub reviewed_by: Option<StaffId>,
    /// The review's outcome code (one of [`REVIEW_OUTCOMES`]).
    pub review_outcome: Option<String>,
}

impl std::fmt::Debug for BreakGlassEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakGlassEntry")
            .field("grant", &self.grant)
            .field("reviewed_at", &self.reviewed_at)
            .field("review_outcome", &self.review_outcome)
            .finish_non_exhaustive()
    }
}

/// A notification in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxNotification {
    /// Its id.
    pub id: Uuid,
    /// What kind (`break_glass`).
    pub kind: String,
    /// JSON of ids and codes (never PHI).
    pub payload: String,
    /// The practice whose staff it is for.
    pub practice: Option<PracticeId>,
    /// The role that receives it (`privacy_officer`).
    pub recipient_role: Option<Role>,
    /// When queued (ms).
    pub created_at_millis: i64,
    /// When delivered (ms), if it was.
    pub delivered_at_millis: Option<i64>,
    /// To whom.
    pub delivered_to: Option<StaffId>,
}

const OUTBOX_COLUMNS: &str =
    "id, kind, payload, practice_id, recipient_role, created_at, delivered_at, delivered_to";

fn decode_notification(r: &AnyRow) -> Result<OutboxNotification, StoreError> {
    let practice: Option<String> = col(r, "practice_id")?;
    let role: Option<String> = col(r, "recipient_role")?;
    let to: Option<String> = col(r, "delivered_to")?;
    Ok(OutboxNotification {
        id: id(&col::<String>(r, "id")?, "notification")?,
        kind: col(r, "kind")?,
        payload: col(r, "payload")?,
        practice: practice.map(|p| id(&p, "practice")).transpose()?,
        recipient_role: role
            .map(|r| {
                r.parse::<Role>()
                    .map_err(|_| StoreError::Corrupt("unknown recipient role stored".into()))
            })
            .transpose()?,
        created_at_millis: col(r, "created_at")?,
        delivered_at_millis: col(r, "delivered_at")?,
        delivered_to: to.map(|t| id(&t, "staff")).transpose()?,
    })
}

/// The practice of a patient (not shredded or shredded alike), or `NotFound`.
pub(crate) async fn patient_practice(
    conn: &mut AnyConnection,
    store: &Store,
    patient: PatientId,
) -> Result<PracticeId, StoreError> {
    let practice: Option<String> =
        sqlx::query_scalar("SELECT practice_id FROM patient WHERE id = $1")
            .bind(patient.to_string())
            .fetch_optional(conn)
            .await
            .map_err(|e| store.err(e))?;
    let practice = practice.ok_or_else(|| StoreError::NotFound {
        kind: "patient",
        id: patient.to_string(),
    })?;
    id(&practice, "practice")
}

/// The newest grant letting `staff` see `patient` at `now`, read on `conn`.
pub(crate) async fn active_grant(
    conn: &mut AnyConnection,
    store: &Store,
    staff: StaffId,
    patient: PatientId,
    now: OffsetDateTime,
) -> Result<Option<BreakGlassGrant>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {GRANT_COLUMNS} FROM break_glass_grant WHERE staff_id = $1 AND patient_id = $2 AND granted_at <= $3 AND expires_at > $3 ORDER BY expires_at DESC LIMIT 1"
    ))
    .bind(staff.to_string())
    .bind(patient.to_string())
    .bind(millis(now))
    .fetch_optional(conn)
    .await
    .map_err(|e| store.err(e))?;
    row.as_ref().map(decode_grant).transpose()
}

impl Store {
    /// Stores an emergency-access grant for a patient of `practice` (another practice's patient
    /// is refused as not found) with its justification sealed under the patient's data key,
    /// queues the notification for the practice's privacy officers and appends `event`
    /// (`break_glass`), in one transaction. Declares `break_glass` for the event's actor: a
    /// user must be an active clinician or nurse of `practice` by the database's record, and
    /// the grant theirs.
    pub async fn grant_break_glass(
        &self,
        practice: PracticeId,
        grant: &BreakGlassGrant,
        justification: &Justification,
        note: &PrivacyNotification,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let payload = serde_json::to_string(note)
            .map_err(|_| StoreError::Corrupt("notification could not be encoded".into()))?;
        let mut w = self.begin_write().await?;
        let who = acting(&mut w, &event.actor, Permission::BreakGlass).await?;
        who.in_practice(practice)?;
        if who.user().is_some_and(|u| u != grant.user) {
            return Err(StoreError::Forbidden {
                permission: Permission::BreakGlass.as_str(),
            });
        }
        if patient_practice(w.conn(), self, grant.patient).await? != practice {
            return Err(StoreError::NotFound {
                kind: "patient",
                id: grant.patient.to_string(),
            });
        }
        let dek = patient_key(w.conn(), self, grant.patient).await?;
        let ct = encrypt_text(
            &dek,
            &Aad::new(GRANT_TABLE, *grant.id.as_bytes(), GRANT_FIELD),
            justification.as_str(),
        )?;
        sqlx::query(&format!(
            "INSERT INTO break_glass_grant ({GRANT_COLUMNS}, reason_ct, practice_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(grant.id.to_string())
        .bind(grant.user.to_string())
        .bind(grant.patient.to_string())
        .bind(grant.reason.as_str())
        .bind(millis(grant.granted_at))
        .bind(millis(grant.expires_at))
        .bind(ct)
        .bind(practice.to_string())
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        sqlx::query(
            "INSERT INTO notification_outbox (id, kind, payload, created_at, delivered_at, practice_id, recipient_role) VALUES ($1, $2, $3, $4, NULL, $5, $6)",
        )
        .bind(note.id.to_string())
        .bind(note.kind.clone())
        .bind(payload)
        .bind(millis(note.created_at))
        .bind(practice.to_string())
        .bind(Role::PrivacyOfficer.as_str())
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        w.audit(event).await?;
        w.commit().await
    }

    /// The newest grant letting `staff` see `patient` at `now`, if any.
    pub async fn active_break_glass(
        &self,
        staff: StaffId,
        patient: PatientId,
        now: OffsetDateTime,
    ) -> Result<Option<BreakGlassGrant>, StoreError> {
        let mut conn = self.pool().acquire().await.map_err(|e| self.err(e))?;
        active_grant(&mut conn, self, staff, patient, now).await
    }

    /// One grant's justification, for review; appends `event` (a read of the patient's record)
    /// in the same transaction. A grant of another practice is not found. Declares
    /// `review_emergency_access` for the event's actor (checked in the database, in `practice`).
    pub async fn break_glass_justification(
        &self,
        practice: PracticeId,
        grant: Uuid,
        event: &AuditEvent,
    ) -> Result<(BreakGlassGrant, Zeroizing<String>), StoreError> {
        let mut w = self.begin_write().await?;
        acting(&mut w, &event.actor, Permission::ReviewEmergencyAccess)
            .await?
            .in_practice(practice)?;
        let row = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS}, reason_ct FROM break_glass_grant WHERE id = $1 AND practice_id = $2"
        ))
        .bind(grant.to_string())
        .bind(practice.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(|e| w.err(e))?
        .ok_or_else(|| StoreError::NotFound {
            kind: "break-glass grant",
            id: grant.to_string(),
        })?;
        let g = decode_grant(&row)?;
        let ct: Vec<u8> = col(&row, "reason_ct")?;
        let dek = patient_key(w.conn(), self, g.patient).await?;
        let text = Zeroizing::new(decrypt_text(
            &dek,
            &Aad::new(GRANT_TABLE, *g.id.as_bytes(), GRANT_FIELD),
            &ct,
        )?);
        w.audit(event).await?;
        w.commit().await?;
        Ok((g, text))
    }

    /// The practice's emergency accesses for the privacy officer's review, newest first (only
    /// those not yet reviewed when `unreviewed_only`), each with its stated justification. Each
    /// justification read is audited (a read of that patient's record by `ctx`, detail
    /// `break_glass_review`) in the same transaction. Declares `review_emergency_access` for
    /// the context's actor (checked in the database, in `practice`).
    pub async fn break_glass_review_list(
        &self,
        ctx: &AccessContext,
        practice: PracticeId,
        unreviewed_only: bool,
        limit: u32,
    ) -> Result<Vec<BreakGlassEntry>, StoreError> {
        let mut w = self.begin_write().await?;
        require_actor(
            &mut w,
            ctx,
            Permission::ReviewEmergencyAccess,
            Some(practice),
        )
        .await?;
        let filter = if unreviewed_only {
            " AND reviewed_at IS NULL"
        } else {
            ""
        };
        let rows = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS}, reason_ct, reviewed_at, reviewed_by, review_outcome FROM break_glass_grant WHERE practice_id = $1{filter} ORDER BY granted_at DESC, id LIMIT $2"
        ))
        .bind(practice.to_string())
        .bind(i64::from(limit.min(REVIEW_PAGE_LIMIT)))
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let g = decode_grant(row)?;
            let ct: Vec<u8> = col(row, "reason_ct")?;
            let justification = match patient_key(w.conn(), self, g.patient).await {
                Ok(dek) => Some(Zeroizing::new(decrypt_text(
                    &dek,
                    &Aad::new(GRANT_TABLE, *g.id.as_bytes(), GRANT_FIELD),
                    &ct,
                )?)),
                Err(StoreError::Shredded { .. }) => None,
                Err(e) => return Err(e),
            };
            if justification.is_some() {
                w.audit(&ctx.event(
                    self.now(),
                    Action::Read,
                    ObjectRef {
                        kind: "break_glass_grant".into(),
                        id: Some(g.id.to_string()),
                    },
                    Some(g.patient),
                    Vec::new(),
                    Some("break_glass_review"),
                ))
                .await?;
            }
            let reviewed_by: Option<String> = col(row, "reviewed_by")?;
            out.push(BreakGlassEntry {
                grant: g,
                justification,
                reviewed_at: opt_from_millis(col(row, "reviewed_at")?)?,
                reviewed_by: reviewed_by.map(|r| id(&r, "staff")).transpose()?,
                review_outcome: col(row, "review_outcome")?,
            });
        }
        w.commit().await?;
        Ok(out)
    }

    /// The patient of a grant of `practice` (ids only, nothing decrypted), if there is one.
    pub async fn grant_patient(
        &self,
        practice: PracticeId,
        grant: Uuid,
    ) -> Result<Option<PatientId>, StoreError> {
        let patient: Option<String> = sqlx::query_scalar(
            "SELECT patient_id FROM break_glass_grant WHERE id = $1 AND practice_id = $2",
        )
        .bind(grant.to_string())
        .bind(practice.to_string())
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        patient.map(|p| id(&p, "patient")).transpose()
    }

    /// Records the privacy officer's review of a grant of `practice` (`outcome` one of
    /// [`REVIEW_OUTCOMES`]) and appends `event` (`break_glass_reviewed`). `Ok(None)`: no such
    /// grant in the practice; `Ok(Some(false))`: it was reviewed already (nothing changed).
    /// Declares `review_emergency_access` for the event's actor (checked in the database, in
    /// `practice`; a user records only their own review).
    pub async fn mark_break_glass_reviewed(
        &self,
        practice: PracticeId,
        grant: Uuid,
        reviewer: StaffId,
        outcome: &str,
        event: &AuditEvent,
    ) -> Result<Option<bool>, StoreError> {
        if !REVIEW_OUTCOMES.contains(&outcome) {
            return Err(StoreError::Invalid {
                field: "outcome",
                expected: "appropriate or inappropriate",
            });
        }
        let mut w = self.begin_write().await?;
        let who = acting(&mut w, &event.actor, Permission::ReviewEmergencyAccess).await?;
        who.in_practice(practice)?;
        if who.user().is_some_and(|u| u != reviewer) {
            return Err(StoreError::Forbidden {
                permission: Permission::ReviewEmergencyAccess.as_str(),
            });
        }
        let exists: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT reviewed_at FROM break_glass_grant WHERE id = $1 AND practice_id = $2",
        )
        .bind(grant.to_string())
        .bind(practice.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        match exists {
            None => return Ok(None),
            Some(Some(_)) => return Ok(Some(false)),
            Some(None) => {}
        }
        sqlx::query(
            "UPDATE break_glass_grant SET reviewed_at = $3, reviewed_by = $4, review_outcome = $5 WHERE id = $1 AND practice_id = $2 AND reviewed_at IS NULL",
        )
        .bind(grant.to_string())
        .bind(practice.to_string())
        .bind(self.now())
        .bind(reviewer.to_string())
        .bind(outcome.to_owned())
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        w.audit(event).await?;
        w.commit().await?;
        Ok(Some(true))
    }

    /// Notifications for `roles` in `practice`, oldest first: those not yet delivered, and also
    /// the delivered ones when `include_delivered`. For Perimeter itself: the caller's roles are
    /// trusted; a staff request uses [`Store::staff_notifications`].
    pub async fn notifications_for(
        &self,
        practice: PracticeId,
        roles: &[Role],
        include_delivered: bool,
        limit: u32,
    ) -> Result<Vec<OutboxNotification>, StoreError> {
        if roles.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (0..roles.len()).map(|i| format!("${}", i + 3)).collect();
        let delivered = if include_delivered {
            ""
        } else {
            " AND delivered_at IS NULL"
        };
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM notification_outbox WHERE practice_id = $1{delivered} AND recipient_role IN ({}) ORDER BY created_at, id LIMIT $2",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(&sql)
            .bind(practice.to_string())
            .bind(i64::from(limit.min(REVIEW_PAGE_LIMIT)));
        for r in roles {
            q = q.bind(r.as_str());
        }
        let rows = q.fetch_all(self.pool()).await.map_err(|e| self.err(e))?;
        rows.iter().map(decode_notification).collect()
    }

    /// Marks a notification of `practice` for one of `roles` delivered to `staff`. `false`: no
    /// such undelivered notification for them.
    pub async fn mark_notification_delivered(
        &self,
        practice: PracticeId,
        roles: &[Role],
        notification: Uuid,
        staff: StaffId,
    ) -> Result<bool, StoreError> {
        let Some(n) = self
            .notifications_for(practice, roles, false, REVIEW_PAGE_LIMIT)
            .await?
            .into_iter()
            .find(|n| n.id == notification)
        else {
            return Ok(false);
        };
        let done = sqlx::query(
            "UPDATE notification_outbox SET delivered_at = $2, delivered_to = $3 WHERE id = $1 AND delivered_at IS NULL",
        )
        .bind(n.id.to_string())
        .bind(self.now())
        .bind(staff.to_string())
        .execute(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() == 1)
    }

    /// The notifications a member of staff may see (declares `own_account`): those of their
    /// practice addressed to one of their roles, as the database holds them (roles a caller
    /// claims are not asked for); oldest first. A disabled or unknown account gets
    /// [`StoreError::Forbidden`].
    pub async fn staff_notifications(
        &self,
        staff: StaffId,
        include_delivered: bool,
        limit: u32,
    ) -> Result<Vec<OutboxNotification>, StoreError> {
        let (practice, roles) = self.notified(staff).await?;
        self.notifications_for(practice, &roles, include_delivered, limit)
            .await
    }

    /// Marks one of [`Store::staff_notifications`] delivered to `staff` (declares
    /// `own_account`). `false`: no such undelivered notification for them.
    pub async fn mark_staff_notification_delivered(
        &self,
        staff: StaffId,
        notification: Uuid,
    ) -> Result<bool, StoreError> {
        let (practice, roles) = self.notified(staff).await?;
        self.mark_notification_delivered(practice, &roles, notification, staff)
            .await
    }

    /// The practice and stored roles of an enabled account holding `own_account`.
    async fn notified(&self, staff: StaffId) -> Result<(PracticeId, Vec<Role>), StoreError> {
        let user = self.entitled_staff(staff, Permission::OwnAccount).await?;
        Ok((user.practice_id, user.roles))
    }

    /// Every notification not yet delivered, oldest first (for a deliverer other than the
    /// console, such as e-mail).
    pub async fn pending_notifications(&self) -> Result<Vec<OutboxNotification>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM notification_outbox WHERE delivered_at IS NULL ORDER BY created_at, id"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        rows.iter().map(decode_notification).collect()
    }
}

//! Emergency access ("break the glass"), the privacy officer's review of it, and in-app
//! notifications.

use axum::Json;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use perimeter_auth::{BreakGlassReason, Justification, SecurityEvent};
use perimeter_domain::{PatientId, PurposeOfUse, StaffId};
use perimeter_store::{AccessContext, REVIEW_OUTCOMES, REVIEW_PAGE_LIMIT};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::admin::bad;
use super::{AuthState, Principal, store_error};
use crate::error::ApiError;

fn context(principal: &Principal, purpose: PurposeOfUse) -> AccessContext {
    principal.access_context(purpose)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BreakGlassRequest {
    reason_code: BreakGlassReason,
    reason_text: String,
}

#[derive(Serialize)]
struct GrantView {
    grant_id: Uuid,
    reason_code: BreakGlassReason,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

/// `POST /api/patients/{id}/break-glass`: `{ reason_code, reason_text }`. Grants emergency
/// access to a patient of the caller's practice (another practice's patient is not found) for
/// 60 minutes; audited with purpose `emergency` and detail `break_glass`; the practice's
/// privacy officers are notified in the console; the reason text is stored encrypted.
pub(crate) async fn break_glass(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<BreakGlassRequest>,
) -> Response {
    let Ok(patient) = id.trim().parse::<PatientId>() else {
        return bad("invalid_id", "id: expected a patient id (UUID)");
    };
    let Ok(why) = Justification::new(&body.reason_text) else {
        return bad(
            "invalid_reason",
            "reason_text: expected 10 to 2000 characters explaining the emergency",
        );
    };
    let now = auth.now();
    let (grant, note) = match auth.settings().break_glass.grant(
        principal.user,
        &principal.roles,
        patient,
        body.reason_code,
        &why,
        now,
    ) {
        Ok(g) => g,
        Err(_) => return super::forbidden().into_response(),
    };
    let event = SecurityEvent::BreakGlass {
        grant: grant.clone(),
    }
    .to_audit(principal.actor(), auth.now_millis(), &principal.meta);
    match auth
        .store()
        .grant_break_glass(principal.practice, &grant, &why, &note, &event)
        .await
    {
        Ok(()) => (
            StatusCode::CREATED,
            Json(GrantView {
                grant_id: grant.id,
                reason_code: grant.reason,
                expires_at: grant.expires_at,
            }),
        )
            .into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReviewQuery {
    /// `unreviewed` (default) or `all`.
    status: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize)]
struct ReviewView {
    grant_id: Uuid,
    staff_id: StaffId,
    patient_id: PatientId,
    reason_code: BreakGlassReason,
    /// The stated justification; absent when the patient's data was erased.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason_text: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    granted_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    reviewed_at: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reviewed_by: Option<StaffId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    review_outcome: Option<String>,
}

/// `GET /api/privacy/break-glass?status=unreviewed|all&limit=N`: the practice's emergency
/// accesses, newest first, with their stated reasons (each reason read is audited).
pub(crate) async fn review_list(
    auth: AuthState,
    principal: Principal,
    Query(q): Query<ReviewQuery>,
) -> Response {
    let unreviewed_only = match q.status.as_deref() {
        None | Some("unreviewed") => true,
        Some("all") => false,
        Some(_) => return bad("invalid_status", "status: expected unreviewed or all"),
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=REVIEW_PAGE_LIMIT).contains(&limit) {
        return bad("invalid_limit", "limit: expected 1 to 200");
    }
    match auth
        .store()
        .break_glass_review_list(
            &context(&principal, PurposeOfUse::Operations),
            principal.practice,
            unreviewed_only,
            limit,
        )
        .await
    {
        Ok(list) => Json(
            list.into_iter()
                .map(|e| ReviewView {
                    grant_id: e.grant.id,
                    staff_id: e.grant.user,
                    patient_id: e.grant.patient,
                    reason_code: e.grant.reason,
                    reason_text: e.justification.map(|j| j.as_str().to_owned()),
                    granted_at: e.grant.granted_at,
                    expires_at: e.grant.expires_at,
                    reviewed_at: e.reviewed_at,
                    reviewed_by: e.reviewed_by,
                    review_outcome: e.review_outcome,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReviewRequest {
    outcome: String,
}

#[derive(Serialize)]
struct Reviewed {
    reviewed: bool,
}

/// `POST /api/privacy/break-glass/{id}/review`: `{ outcome: "appropriate" | "inappropriate" }`
/// marks a grant reviewed (once; 409 when it already was). Audited as `break_glass_reviewed`.
pub(crate) async fn mark_reviewed(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<ReviewRequest>,
) -> Response {
    let Ok(grant) = Uuid::parse_str(id.trim()) else {
        return bad("invalid_id", "id: expected a grant id (UUID)");
    };
    let Some(outcome) = REVIEW_OUTCOMES.iter().find(|o| **o == body.outcome) else {
        return bad(
            "invalid_outcome",
            "outcome: expected appropriate or inappropriate",
        );
    };
    // The patient goes into the audit record; read it from the grant (of this practice).
    let patient = match auth.store().grant_patient(principal.practice, grant).await {
        Ok(Some(p)) => p,
        Ok(None) => return ApiError::not_found().into_response(),
        Err(e) => return store_error(e).into_response(),
    };
    let event = SecurityEvent::BreakGlassReviewed {
        grant,
        patient,
        outcome,
    }
    .to_audit(principal.actor(), auth.now_millis(), &principal.meta);
    match auth
        .store()
        .mark_break_glass_reviewed(principal.practice, grant, principal.user, outcome, &event)
        .await
    {
        Ok(Some(true)) => Json(Reviewed { reviewed: true }).into_response(),
        Ok(Some(false)) => ApiError::new(
            StatusCode::CONFLICT,
            "already_reviewed",
            "this emergency access was reviewed already",
        )
        .into_response(),
        Ok(None) => ApiError::not_found().into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NotificationQuery {
    /// Also the ones delivered already.
    all: Option<bool>,
}

#[derive(Serialize)]
struct NotificationView {
    id: Uuid,
    kind: String,
    /// Ids and codes (never PHI): for `break_glass`, the grant, who, whose record, the reason.
    details: serde_json::Value,
    created_at_millis: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_at_millis: Option<i64>,
}

/// `GET /api/notifications` (passive: the console polls it, which does not keep the session
/// alive): notifications for the signed-in user's roles in their practice (the privacy
/// officer's emergency-access notices), oldest first; `?all=true` includes delivered ones.
pub(crate) async fn notifications(
    auth: AuthState,
    principal: Principal,
    Query(q): Query<NotificationQuery>,
) -> Response {
    match auth
        .store()
        .staff_notifications(principal.user, q.all.unwrap_or(false), REVIEW_PAGE_LIMIT)
        .await
    {
        Ok(list) => Json(
            list.into_iter()
                .map(|n| NotificationView {
                    id: n.id,
                    kind: n.kind,
                    details: serde_json::from_str(&n.payload).unwrap_or(serde_json::Value::Null),
                    created_at_millis: n.created_at_millis,
                    delivered_at_millis: n.delivered_at_millis,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// `POST /api/notifications/{id}/delivered`: the console showed it; it is delivered (to this
/// user) and no longer listed as new. 404 when there is no such new notification for them.
pub(crate) async fn mark_delivered(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = Uuid::parse_str(id.trim()) else {
        return bad("invalid_id", "id: expected a notification id (UUID)");
    };
    match auth
        .store()
        .mark_staff_notification_delivered(principal.user, id)
        .await
    {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => ApiError::not_found().into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

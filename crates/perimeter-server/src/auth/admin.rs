//! Administration of staff accounts, lockouts and API tokens, and emergency access.

use std::collections::BTreeSet;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use perimeter_auth::{
    ApiTokenScope, BreakGlassReason, Justification, Permission, SecurityEvent, Username,
    check_password_policy, create_api_token, hash_password,
};
use perimeter_domain::{PatientId, PurposeOfUse, Role, StaffId};
use perimeter_store::{AccessContext, NewStaff, StaffUser, ThrottleScope};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{AuthState, Principal, api_error, store_error};
use crate::error::ApiError;

fn bad(code: &'static str, message: &'static str) -> Response {
    api_error(StatusCode::BAD_REQUEST, code, message).into_response()
}

fn context(principal: &Principal) -> AccessContext {
    AccessContext {
        actor: principal.actor(),
        purpose: Some(PurposeOfUse::Operations),
        request_id: principal.meta.request_id,
        client_addr: principal.meta.client_addr.clone(),
        user_agent: principal.meta.user_agent.clone(),
    }
}

/// The staff user named in the path, if it is in the caller's practice.
async fn target(auth: &AuthState, principal: &Principal, id: &str) -> Result<StaffUser, Response> {
    let id: StaffId = id
        .parse()
        .map_err(|_| bad("invalid_id", "id: expected a staff user id (UUID)"))?;
    match auth.store().get_staff(id).await {
        Ok(s) if s.practice_id == principal.practice => Ok(s),
        Ok(_) => Err(ApiError::not_found().into_response()),
        Err(e) => Err(store_error(e).into_response()),
    }
}

/// The roles if they are a non-empty list without repeats.
fn valid_roles(roles: &[Role]) -> Option<Vec<Role>> {
    let set: BTreeSet<Role> = roles.iter().copied().collect();
    (!set.is_empty() && set.len() == roles.len()).then(|| roles.to_vec())
}

fn invalid_roles() -> Response {
    bad(
        "invalid_roles",
        "roles: expected one or more distinct roles",
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    username: String,
    display_name: String,
    roles: Vec<Role>,
    password: String,
}

#[derive(Serialize)]
struct Created {
    id: String,
}

/// `POST /api/admin/users`: `{ username, display_name, roles, password }`.
pub(crate) async fn create_user(
    Extension(auth): Extension<AuthState>,
    Extension(principal): Extension<Principal>,
    Json(body): Json<CreateUser>,
) -> Response {
    let password = Zeroizing::new(body.password);
    let Ok(username) = Username::parse(&body.username) else {
        return bad(
            "invalid_username",
            "username: expected 3 to 64 letters a-z, digits, '.', '_' or '-' (look-alike characters are refused)",
        );
    };
    let display = body.display_name.trim();
    if display.is_empty() || display.chars().count() > 100 || display.chars().any(char::is_control)
    {
        return bad(
            "invalid_display_name",
            "display_name: expected 1 to 100 printable characters",
        );
    }
    let Some(roles) = valid_roles(&body.roles) else {
        return invalid_roles();
    };
    if let Err(e) = check_password_policy(&password, username.as_str()) {
        return api_error(
            StatusCode::BAD_REQUEST,
            "weak_password",
            password_message(&e),
        )
        .into_response();
    }
    let hash = match tokio::task::spawn_blocking(move || hash_password(&password)).await {
        Ok(Ok(h)) => h,
        _ => return ApiError::internal().into_response(),
    };
    let new = NewStaff {
        username: username.as_str().to_owned(),
        display_name: display.to_owned(),
        roles,
        password_hash: Some(hash),
    };
    match auth
        .store()
        .create_staff(&context(&principal), principal.practice, &new)
        .await
    {
        Ok(id) => (StatusCode::CREATED, Json(Created { id: id.to_string() })).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

fn password_message(e: &perimeter_auth::PasswordPolicyError) -> &'static str {
    use perimeter_auth::PasswordPolicyError as E;
    match e {
        E::TooShort { .. } => "password: expected at least 12 characters",
        E::TooLong { .. } => "password: expected at most 128 characters",
        E::Common => "password: this is a commonly used password; choose another",
        E::ContainsUsername => "password: must not contain the username",
        E::ControlCharacter => "password: must not contain control characters",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetRoles {
    roles: Vec<Role>,
}

/// `POST /api/admin/users/{id}/roles`: `{ roles }`. Ends the user's sessions (they log in
/// again with the new privileges). Administrators cannot change their own roles.
pub(crate) async fn set_roles(
    Extension(auth): Extension<AuthState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Json(body): Json<SetRoles>,
) -> Response {
    let staff = match target(&auth, &principal, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if staff.id == principal.user {
        return api_error(
            StatusCode::FORBIDDEN,
            "own_roles",
            "administrators cannot change their own roles",
        )
        .into_response();
    }
    let Some(roles) = valid_roles(&body.roles) else {
        return invalid_roles();
    };
    let event = SecurityEvent::RoleChanged { user: staff.id }.to_audit(
        principal.actor(),
        auth.now_millis(),
        &principal.meta,
    );
    match auth.store().set_staff_roles(staff.id, &roles, &event).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// `POST /api/admin/users/{id}/mfa-reset`: removes the user's authenticator, recovery codes
/// and sessions; they enrol again at their next log-in.
pub(crate) async fn mfa_reset(
    Extension(auth): Extension<AuthState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let staff = match target(&auth, &principal, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let event = SecurityEvent::MfaReset { user: staff.id }.to_audit(
        principal.actor(),
        auth.now_millis(),
        &principal.meta,
    );
    match auth.store().reset_mfa(staff.id, &event).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Serialize)]
struct Ended {
    ended_sessions: u64,
}

/// `POST /api/admin/users/{id}/end-sessions`.
pub(crate) async fn end_sessions(
    Extension(auth): Extension<AuthState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let staff = match target(&auth, &principal, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let event = SecurityEvent::SessionsEndedByAdmin { user: staff.id }.to_audit(
        principal.actor(),
        auth.now_millis(),
        &principal.meta,
    );
    match auth.store().end_staff_sessions(staff.id, &event).await {
        Ok(n) => Json(Ended { ended_sessions: n }).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Serialize)]
struct LockoutView {
    scope: &'static str,
    subject: String,
    #[serde(with = "time::serde::rfc3339")]
    locked_until: OffsetDateTime,
    lockouts: u32,
}

/// `GET /api/admin/lockouts`: accounts (by staff id) and client addresses locked now.
pub(crate) async fn lockouts(
    Extension(auth): Extension<AuthState>,
    Extension(_principal): Extension<Principal>,
) -> Response {
    match auth.store().lockouts(auth.now()).await {
        Ok(list) => Json(
            list.into_iter()
                .map(|l| LockoutView {
                    scope: match l.scope {
                        ThrottleScope::Account => "account",
                        ThrottleScope::Address => "address",
                    },
                    subject: l.subject,
                    locked_until: l.locked_until,
                    lockouts: l.lockouts,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Serialize)]
struct Unlocked {
    unlocked: bool,
}

/// `POST /api/admin/users/{id}/unlock`: lifts the account's lockout and forgets its failures.
pub(crate) async fn unlock(
    Extension(auth): Extension<AuthState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let staff = match target(&auth, &principal, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let event = SecurityEvent::AccountUnlocked { user: staff.id }.to_audit(
        principal.actor(),
        auth.now_millis(),
        &principal.meta,
    );
    match auth
        .store()
        .clear_throttle(ThrottleScope::Account, &staff.id.to_string(), &event)
        .await
    {
        Ok(unlocked) => Json(Unlocked { unlocked }).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    client_id: String,
    label: String,
    permissions: BTreeSet<Permission>,
    purposes: BTreeSet<PurposeOfUse>,
    expires_in_days: u32,
}

#[derive(Serialize)]
struct NewTokenView {
    id: Uuid,
    token: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

/// `POST /api/admin/tokens`: `{ client_id, label, permissions, purposes, expires_in_days }`.
/// The client must be a staff account holding the `service` role. The token is shown once.
pub(crate) async fn create_token(
    Extension(auth): Extension<AuthState>,
    Extension(principal): Extension<Principal>,
    Json(body): Json<CreateToken>,
) -> Response {
    let client = match target(&auth, &principal, &body.client_id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !client.roles.contains(&Role::Service) {
        return bad(
            "invalid_client",
            "client_id: expected a service account (role service)",
        );
    }
    if !(1..=366).contains(&body.expires_in_days) {
        return bad("invalid_expiry", "expires_in_days: expected 1 to 366");
    }
    let now = auth.now();
    let expires_at = now + Duration::days(i64::from(body.expires_in_days));
    let scope = ApiTokenScope {
        permissions: body.permissions,
        purposes: body.purposes,
    };
    let new = match create_api_token(client.id, &body.label, scope, expires_at, now) {
        Ok(n) => n,
        Err(perimeter_auth::ApiTokenCreateError::Scope(_)) => {
            return bad(
                "invalid_scope",
                "permissions/purposes/label: expected service permissions, non-emergency purposes and a 1-80 character label",
            );
        }
        Err(perimeter_auth::ApiTokenCreateError::Auth(_)) => {
            return ApiError::internal().into_response();
        }
    };
    let event = SecurityEvent::ApiTokenCreated {
        token: new.record.id,
    }
    .to_audit(principal.actor(), auth.now_millis(), &principal.meta);
    if let Err(e) = auth.store().insert_api_token(&new.record, &event).await {
        return store_error(e).into_response();
    }
    (
        StatusCode::CREATED,
        Json(NewTokenView {
            id: new.record.id,
            token: new.token.as_str().to_owned(),
            expires_at,
        }),
    )
        .into_response()
}

#[derive(Serialize)]
struct TokenView {
    id: Uuid,
    client_id: StaffId,
    label: String,
    permissions: BTreeSet<Permission>,
    purposes: BTreeSet<PurposeOfUse>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    revoked_at: Option<OffsetDateTime>,
}

/// `GET /api/admin/tokens`: every token (never the secret).
pub(crate) async fn list_tokens(
    Extension(auth): Extension<AuthState>,
    Extension(_principal): Extension<Principal>,
) -> Response {
    match auth.store().list_api_tokens().await {
        Ok(list) => Json(
            list.into_iter()
                .map(|t| TokenView {
                    id: t.id,
                    client_id: t.client,
                    label: t.label,
                    permissions: t.scope.permissions,
                    purposes: t.scope.purposes,
                    created_at: t.created_at,
                    expires_at: t.expires_at,
                    revoked_at: t.revoked_at,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// `DELETE /api/admin/tokens/{id}`: revokes a token at once.
pub(crate) async fn revoke_token(
    Extension(auth): Extension<AuthState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = Uuid::parse_str(id.trim()) else {
        return bad("invalid_id", "id: expected a token id (UUID)");
    };
    let event = SecurityEvent::ApiTokenRevoked { token: id }.to_audit(
        principal.actor(),
        auth.now_millis(),
        &principal.meta,
    );
    match auth.store().revoke_api_token(id, auth.now(), &event).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => ApiError::not_found().into_response(),
        Err(e) => store_error(e).into_response(),
    }
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
/// access to the patient's record for 60 minutes; audited with purpose `emergency` and detail
/// `break_glass`; the privacy officer is notified; the reason text is stored encrypted.
pub(crate) async fn break_glass(
    Extension(auth): Extension<AuthState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Json(body): Json<BreakGlassRequest>,
) -> Response {
    let Ok(patient) = id.parse::<PatientId>() else {
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
        .grant_break_glass(&grant, &why, &note, &event)
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

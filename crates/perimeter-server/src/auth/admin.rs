//! Administration of staff accounts, lockouts and API tokens. Everything is scoped to the
//! administrator's practice: another practice's accounts and tokens are "not found".

use std::collections::BTreeSet;
use std::net::IpAddr;

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use perimeter_auth::{
    ApiTokenScope, Permission, SecurityEvent, Username, check_password_policy, create_api_token,
    hash_password,
};
use perimeter_domain::{PurposeOfUse, Role, StaffId};
use perimeter_store::{AccessContext, NewStaff, StaffUser, ThrottleScope};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{AuthState, Principal, api_error, hashing_error, store_error};
use crate::error::ApiError;

pub(crate) fn bad(code: &'static str, message: &'static str) -> Response {
    api_error(StatusCode::BAD_REQUEST, code, message).into_response()
}

fn context(principal: &Principal) -> AccessContext {
    principal.access_context(PurposeOfUse::Operations)
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

/// The roles if they are a non-empty list without repeats, and `service` alone if present (a
/// service client is a machine, never also a person).
fn valid_roles(roles: &[Role]) -> Option<Vec<Role>> {
    let set: BTreeSet<Role> = roles.iter().copied().collect();
    let service_mixed = set.contains(&Role::Service) && set.len() > 1;
    (!set.is_empty() && set.len() == roles.len() && !service_mixed).then(|| roles.to_vec())
}

fn invalid_roles() -> Response {
    bad(
        "invalid_roles",
        "roles: expected one or more distinct roles (service only on its own)",
    )
}

pub(crate) use perimeter_domain::is_invisible;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    username: String,
    display_name: String,
    roles: Vec<Role>,
    /// Required for people; absent for a service client (it uses API tokens only).
    password: Option<String>,
}

#[derive(Serialize)]
struct Created {
    id: String,
}

/// `POST /api/admin/users`: `{ username, display_name, roles, password }` (no password for a
/// service client). Usernames are unique across the installation (409 `duplicate`). Audited
/// as `user_created`; the new user enrols MFA at first log-in.
pub(crate) async fn create_user(
    auth: AuthState,
    principal: Principal,
    Json(body): Json<CreateUser>,
) -> Response {
    let password = body.password.map(Zeroizing::new);
    let Ok(username) = Username::parse(&body.username) else {
        return bad(
            "invalid_username",
            "username: expected 3 to 64 letters a-z, digits, '.', '_' or '-' (look-alike characters are refused)",
        );
    };
    let display = body.display_name.trim();
    if display.is_empty() || display.chars().count() > 100 || display.chars().any(is_invisible) {
        return bad(
            "invalid_display_name",
            "display_name: expected 1 to 100 visible characters (no control, zero-width or direction-changing characters)",
        );
    }
    let Some(roles) = valid_roles(&body.roles) else {
        return invalid_roles();
    };
    let service = roles.contains(&Role::Service);
    let hash = match (service, password) {
        (true, None) => None,
        (true, Some(_)) => {
            return bad(
                "password_not_allowed",
                "password: a service client has no password (it uses API tokens)",
            );
        }
        (false, None) => {
            return bad(
                "password_required",
                "password: expected 12 to 128 characters",
            );
        }
        (false, Some(password)) => {
            if let Err(e) = check_password_policy(&password, username.as_str()) {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "weak_password",
                    password_message(&e),
                )
                .into_response();
            }
            match auth
                .hash_limiter()
                .run(move || hash_password(&password))
                .await
            {
                Ok(Ok(h)) => Some(h),
                Ok(Err(_)) => return ApiError::internal().into_response(),
                Err(e) => return hashing_error(e),
            }
        }
    };
    let new = NewStaff {
        username: username.as_str().to_owned(),
        display_name: display.to_owned(),
        roles,
        password_hash: hash,
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

pub(crate) fn password_message(e: &perimeter_auth::PasswordPolicyError) -> &'static str {
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
    auth: AuthState,
    principal: Principal,
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
    auth: AuthState,
    principal: Principal,
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
    auth: AuthState,
    principal: Principal,
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
    /// The username or the client address.
    subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    staff_id: Option<StaffId>,
    #[serde(with = "time::serde::rfc3339")]
    locked_until: OffsetDateTime,
    lockouts: u32,
    refused_attempts: u64,
}

/// `GET /api/admin/lockouts`: the practice's accounts and the client addresses locked now,
/// with how many attempts were refused (counted, not each audited).
pub(crate) async fn lockouts(auth: AuthState, principal: Principal) -> Response {
    match auth
        .store()
        .lockouts(perimeter_store::Scope::Staff(principal.user), auth.now())
        .await
    {
        Ok(list) => Json(
            list.into_iter()
                .map(|l| LockoutView {
                    scope: l.scope.as_str(),
                    subject: l.subject,
                    staff_id: l.staff,
                    locked_until: l.locked_until,
                    lockouts: l.lockouts,
                    refused_attempts: l.refused,
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
    auth: AuthState,
    principal: Principal,
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
        .clear_throttle(ThrottleScope::Account, &staff.username, &event)
        .await
    {
        Ok(unlocked) => Json(Unlocked { unlocked }).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnlockAddress {
    address: String,
}

/// `POST /api/admin/lockouts/unlock-address`: `{ address }` lifts a client address's lockout
/// and forgets its failures. Addresses belong to no practice (a lockout of one blocks every
/// practice's users behind it), so any practice's administrator may lift one; audited as
/// `address_unlocked` with the administrator as actor.
pub(crate) async fn unlock_address(
    auth: AuthState,
    principal: Principal,
    Json(body): Json<UnlockAddress>,
) -> Response {
    let Ok(addr) = body.address.trim().parse::<IpAddr>() else {
        return bad(
            "invalid_address",
            "address: expected an IPv4 or IPv6 address",
        );
    };
    let event = SecurityEvent::AddressUnlocked.to_audit(
        principal.actor(),
        auth.now_millis(),
        &principal.meta,
    );
    match auth
        .store()
        .clear_throttle(ThrottleScope::Address, &addr.to_string(), &event)
        .await
    {
        Ok(unlocked) => Json(Unlocked { unlocked }).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Serialize)]
struct UserView {
    id: StaffId,
    username: String,
    display_name: String,
    roles: Vec<Role>,
    disabled: bool,
    mfa_enrolled: bool,
    created_at_millis: i64,
}

/// `GET /api/admin/users`: the practice's staff accounts (never a password hash).
pub(crate) async fn list_users(auth: AuthState, principal: Principal) -> Response {
    match auth
        .store()
        .staff_directory(perimeter_store::Scope::Staff(principal.user))
        .await
    {
        Ok(list) => Json(
            list.into_iter()
                .map(|e| UserView {
                    id: e.user.id,
                    username: e.user.username,
                    display_name: e.user.display_name,
                    roles: e.user.roles,
                    disabled: e.user.disabled_at_millis.is_some(),
                    mfa_enrolled: e.mfa_enrolled,
                    created_at_millis: e.user.created_at_millis,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Serialize)]
struct Changed {
    changed: bool,
}

async fn set_disabled(
    auth: AuthState,
    principal: Principal,
    id: String,
    disabled: bool,
) -> Response {
    let staff = match target(&auth, &principal, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if staff.id == principal.user {
        return api_error(
            StatusCode::FORBIDDEN,
            "own_account",
            "administrators cannot disable or enable their own account",
        )
        .into_response();
    }
    let event = if disabled {
        SecurityEvent::UserDisabled { user: staff.id }
    } else {
        SecurityEvent::UserEnabled { user: staff.id }
    }
    .to_audit(principal.actor(), auth.now_millis(), &principal.meta);
    match auth
        .store()
        .set_staff_disabled(staff.id, disabled, &event)
        .await
    {
        Ok(changed) => Json(Changed { changed }).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// `POST /api/admin/users/{id}/disable`: the account can no longer log in, its sessions end
/// and its API tokens stop working. Audited as `user_disabled`.
pub(crate) async fn disable_user(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    set_disabled(auth, principal, id, true).await
}

/// `POST /api/admin/users/{id}/enable`: undoes a disable. Audited as `user_enabled`.
pub(crate) async fn enable_user(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    set_disabled(auth, principal, id, false).await
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
    auth: AuthState,
    principal: Principal,
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

/// `GET /api/admin/tokens`: the tokens of the practice's service clients (never the secret).
pub(crate) async fn list_tokens(auth: AuthState, principal: Principal) -> Response {
    match auth
        .store()
        .list_api_tokens(perimeter_store::Scope::Staff(principal.user))
        .await
    {
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
    auth: AuthState,
    principal: Principal,
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
    match auth
        .store()
        .revoke_api_token(principal.practice, id, auth.now(), &event)
        .await
    {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => ApiError::not_found().into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

//! Log-in, the second factor, log-out and "who am I".
//!
//! Log-in is two steps: `POST /api/auth/login` checks the password and opens a short-lived
//! pre-MFA session (`mfa_required`, or `mfa_enrolment_required` with the otpauth URI and QR
//! code for a user without MFA); `/api/auth/mfa/verify`, `/api/auth/mfa/enrol` or
//! `/api/auth/recovery` then rotate it into an authenticated session (new token, new CSRF
//! token). Failures count towards the per-account and per-address throttles.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use perimeter_audit::{Actor, AuditEvent};
use perimeter_auth::{
    RequestMeta, SecurityEvent, SessionStage, ThrottleDecision, ThrottlePolicy, ThrottleState,
    TotpRejection, TotpSecret, Username, generate_recovery_codes, hash_password,
    hash_recovery_code, needs_rehash, permissions_of, totp_enrolment, user_actor, verify_password,
    verify_totp, visible_categories,
};
use perimeter_domain::StaffId;
use perimeter_store::{AccessContext, StaffUser, ThrottleScope};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{AuthState, Principal, api_error, audit, cookies, request_meta, store_error};
use crate::error::ApiError;

/// Request metadata (client address, user agent, request id) for audit records.
pub(crate) struct Meta(pub(crate) RequestMeta);

impl<S: Send + Sync> FromRequestParts<S> for Meta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Meta(request_meta(parts)))
    }
}

/// The longest password accepted in a request, in bytes (128 characters of up to 4 bytes).
const MAX_PASSWORD_BYTES: usize = 512;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeRequest {
    code: String,
}

#[derive(Serialize)]
struct LoginResponse {
    status: &'static str,
    csrf_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    otpauth_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    qr_svg_data_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_codes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_codes_left: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    session_expires_at: OffsetDateTime,
}

fn retry_after(
    status: StatusCode,
    code: &'static str,
    message: &'static str,
    until: OffsetDateTime,
    now: OffsetDateTime,
) -> Response {
    let mut r = api_error(status, code, message).into_response();
    let secs = (until - now).whole_seconds().max(1);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn invalid_credentials() -> ApiError {
    api_error(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "wrong username or password",
    )
}

/// Records a failed attempt against the account (and the address), appending `events` plus
/// a lockout event if this failure locked.
async fn record_failures(
    auth: &AuthState,
    user: Option<StaffId>,
    meta: &RequestMeta,
    mut events: Vec<AuditEvent>,
) -> Result<(), ApiError> {
    let now = auth.now();
    let store = auth.store();
    if let Some(addr) = &meta.client_addr {
        let state = store
            .throttle_state(ThrottleScope::Address, addr)
            .await
            .map_err(store_error)?;
        let out = ThrottlePolicy::ADDRESS.record_failure(&state, now);
        store
            .save_throttle_state(ThrottleScope::Address, addr, &out.state)
            .await
            .map_err(store_error)?;
        if out.locked_until.is_some() {
            events.push(SecurityEvent::AddressLocked.to_audit(
                Actor::Anonymous,
                auth.now_millis(),
                meta,
            ));
        }
    }
    if let Some(user) = user {
        let subject = user.to_string();
        let state = store
            .throttle_state(ThrottleScope::Account, &subject)
            .await
            .map_err(store_error)?;
        let out = ThrottlePolicy::ACCOUNT.record_failure(&state, now);
        store
            .save_throttle_state(ThrottleScope::Account, &subject, &out.state)
            .await
            .map_err(store_error)?;
        if out.locked_until.is_some() {
            events.push(SecurityEvent::AccountLocked { user }.to_audit(
                Actor::Anonymous,
                auth.now_millis(),
                meta,
            ));
        }
    }
    audit(auth, &events).await
}

/// Checks the account throttle; `Err` is the 429 to answer (after auditing it).
async fn check_account(
    auth: &AuthState,
    user: StaffId,
    meta: &RequestMeta,
) -> Result<(), Response> {
    let now = auth.now();
    let state = auth
        .store()
        .throttle_state(ThrottleScope::Account, &user.to_string())
        .await
        .map_err(|e| store_error(e).into_response())?;
    let decision = ThrottlePolicy::ACCOUNT.check(&state, now);
    throttled(auth, Some(user), decision, meta).await
}

async fn throttled(
    auth: &AuthState,
    user: Option<StaffId>,
    decision: ThrottleDecision,
    meta: &RequestMeta,
) -> Result<(), Response> {
    let now = auth.now();
    let (until, code, message) = match decision {
        ThrottleDecision::Allow => return Ok(()),
        ThrottleDecision::RetryAt(at) => {
            (at, "throttled", "too many failed attempts; wait and retry")
        }
        ThrottleDecision::LockedUntil(at) => (
            at,
            "locked",
            "locked after repeated failed attempts; wait or ask an administrator",
        ),
    };
    let event =
        SecurityEvent::LoginThrottled { user }.to_audit(Actor::Anonymous, auth.now_millis(), meta);
    if let Err(e) = audit(auth, &[event]).await {
        return Err(e.into_response());
    }
    Err(retry_after(
        StatusCode::TOO_MANY_REQUESTS,
        code,
        message,
        until,
        now,
    ))
}

/// `POST /api/auth/login`: `{ "username", "password" }`.
pub(crate) async fn login(
    Extension(auth): Extension<AuthState>,
    Meta(meta): Meta,
    Json(body): Json<LoginRequest>,
) -> Response {
    match login_inner(&auth, &meta, body).await {
        Ok(r) | Err(r) => r,
    }
}

async fn login_inner(
    auth: &AuthState,
    meta: &RequestMeta,
    body: LoginRequest,
) -> Result<Response, Response> {
    let password = Zeroizing::new(body.password);
    let username = Username::parse(&body.username).map_err(|_| {
        api_error(
            StatusCode::BAD_REQUEST,
            "invalid_username",
            "username: expected 3 to 64 letters a-z, digits, '.', '_' or '-'",
        )
        .into_response()
    })?;
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            "invalid_password",
            "password: expected 1 to 128 characters",
        )
        .into_response());
    }
    let now = auth.now();
    let store = auth.store();
    if let Some(addr) = &meta.client_addr {
        let state = store
            .throttle_state(ThrottleScope::Address, addr)
            .await
            .map_err(|e| store_error(e).into_response())?;
        throttled(auth, None, ThrottlePolicy::ADDRESS.check(&state, now), meta).await?;
    }
    let staff = store
        .find_login(&username)
        .await
        .map_err(|e| store_error(e).into_response())?;
    if let Some(s) = &staff {
        check_account(auth, s.id, meta).await?;
    }
    let hash = staff
        .as_ref()
        .filter(|s| s.disabled_at_millis.is_none())
        .and_then(|s| s.password_hash.clone());
    let checked = password.clone();
    let stored = hash.clone();
    let ok = tokio::task::spawn_blocking(move || verify_password(stored.as_deref(), &checked))
        .await
        .unwrap_or(false);
    let (Some(staff), true) = (staff.clone().filter(|_| ok), ok) else {
        let user = staff.map(|s| s.id);
        let event =
            SecurityEvent::LoginFailed { user }.to_audit(Actor::Anonymous, auth.now_millis(), meta);
        record_failures(auth, user, meta, vec![event])
            .await
            .map_err(IntoResponse::into_response)?;
        return Err(invalid_credentials().into_response());
    };
    if hash.as_deref().is_some_and(needs_rehash) {
        rehash(auth, &staff, password).await;
    }
    let mfa = store
        .load_mfa(staff.id)
        .await
        .map_err(|e| store_error(e).into_response())?;
    let mut response = LoginResponse {
        status: "mfa_required",
        csrf_token: String::new(),
        otpauth_uri: None,
        qr_svg_data_uri: None,
        secret: None,
        recovery_codes: None,
        recovery_codes_left: None,
        session_expires_at: now,
    };
    let stage = match mfa {
        Some(m) if m.confirmed => SessionStage::MfaPending,
        _ => {
            let secret =
                TotpSecret::generate().map_err(|_| ApiError::internal().into_response())?;
            store
                .start_mfa_enrolment(staff.id, &secret)
                .await
                .map_err(|e| store_error(e).into_response())?;
            let e = totp_enrolment(&secret, &auth.settings().issuer, username.as_str())
                .map_err(|_| ApiError::internal().into_response())?;
            response.status = "mfa_enrolment_required";
            response.otpauth_uri = Some(e.otpauth_uri.to_string());
            response.qr_svg_data_uri = Some(e.qr_svg_data_uri.to_string());
            response.secret = Some(e.secret_base32.to_string());
            SessionStage::MfaEnrolmentPending
        }
    };
    let new = auth
        .settings()
        .sessions
        .start(staff.id, stage, now)
        .map_err(|_| ApiError::internal().into_response())?;
    store
        .insert_session(&new.record)
        .await
        .map_err(|e| store_error(e).into_response())?;
    response.csrf_token = new.record.csrf.as_str().to_owned();
    response.session_expires_at = auth.settings().sessions.expires_at(&new.record);
    let mut r = (StatusCode::OK, Json(response)).into_response();
    cookies::set(auth, &mut r, &new.token);
    Ok(r)
}

/// Replaces a hash made with weaker parameters (best effort: a failure is logged, the log-in
/// goes on).
async fn rehash(auth: &AuthState, staff: &StaffUser, password: Zeroizing<String>) {
    let hashed = tokio::task::spawn_blocking(move || hash_password(&password)).await;
    if let Ok(Ok(hash)) = hashed {
        let ctx = AccessContext::system("auth");
        if let Err(e) = auth
            .store()
            .set_staff_password_hash(&ctx, staff.id, Some(&hash))
            .await
        {
            tracing::warn!(error = %e, "could not upgrade a password hash");
        }
    }
}

/// Rotates a pre-MFA session into an authenticated one, clears the account's failures, and
/// answers with the new cookie and CSRF token.
async fn complete_login(
    auth: &AuthState,
    principal: &Principal,
    mut body: LoginResponse,
) -> Result<Response, Response> {
    let Some(old) = &principal.session else {
        return Err(super::unauthenticated().into_response());
    };
    let now = auth.now();
    let new = auth
        .settings()
        .sessions
        .rotate(old, SessionStage::Authenticated, now)
        .map_err(|_| ApiError::internal().into_response())?;
    let event = SecurityEvent::LoginSucceeded {
        user: principal.user,
    }
    .to_audit(
        user_actor(
            principal.user,
            &principal.roles,
            Some(new.record.token_hash.audit_ref()),
        ),
        auth.now_millis(),
        &principal.meta,
    );
    let rotated = auth
        .store()
        .rotate_session(&old.token_hash, &new.record, Some(&event))
        .await
        .map_err(|e| store_error(e).into_response())?;
    if !rotated {
        return Err(super::unauthenticated().into_response());
    }
    auth.store()
        .save_throttle_state(
            ThrottleScope::Account,
            &principal.user.to_string(),
            &ThrottleState::default(),
        )
        .await
        .map_err(|e| store_error(e).into_response())?;
    body.status = "authenticated";
    body.csrf_token = new.record.csrf.as_str().to_owned();
    body.session_expires_at = auth.settings().sessions.expires_at(&new.record);
    let mut r = (StatusCode::OK, Json(body)).into_response();
    cookies::set(auth, &mut r, &new.token);
    Ok(r)
}

fn empty_response(now: OffsetDateTime) -> LoginResponse {
    LoginResponse {
        status: "authenticated",
        csrf_token: String::new(),
        otpauth_uri: None,
        qr_svg_data_uri: None,
        secret: None,
        recovery_codes: None,
        recovery_codes_left: None,
        session_expires_at: now,
    }
}

fn stage_of(principal: &Principal) -> Option<SessionStage> {
    principal.session.as_ref().map(|s| s.stage)
}

/// A failed second factor: audit `event`, count it, answer 401 with `code`.
async fn second_factor_failed(
    auth: &AuthState,
    principal: &Principal,
    event: SecurityEvent,
    code: &'static str,
    message: &'static str,
) -> Response {
    let event = event.to_audit(principal.actor(), auth.now_millis(), &principal.meta);
    if let Err(e) = record_failures(auth, Some(principal.user), &principal.meta, vec![event]).await
    {
        return e.into_response();
    }
    api_error(StatusCode::UNAUTHORIZED, code, message).into_response()
}

fn malformed_code() -> Response {
    api_error(
        StatusCode::BAD_REQUEST,
        "invalid_code",
        "code: expected 6 digits",
    )
    .into_response()
}

/// `POST /api/auth/mfa/verify`: `{ "code": "123456" }` with a pre-MFA session.
pub(crate) async fn mfa_verify(
    Extension(auth): Extension<AuthState>,
    Extension(principal): Extension<Principal>,
    Json(body): Json<CodeRequest>,
) -> Response {
    if stage_of(&principal) != Some(SessionStage::MfaPending) {
        return api_error(
            StatusCode::CONFLICT,
            "enrolment_required",
            "enrol an authenticator first (POST /api/auth/mfa/enrol)",
        )
        .into_response();
    }
    if let Err(r) = check_account(&auth, principal.user, &principal.meta).await {
        return r;
    }
    let mfa = match auth.store().load_mfa(principal.user).await {
        Ok(Some(m)) if m.confirmed => m,
        Ok(_) => {
            return api_error(
                StatusCode::CONFLICT,
                "enrolment_required",
                "no authenticator is enrolled",
            )
            .into_response();
        }
        Err(e) => return store_error(e).into_response(),
    };
    let now = auth.now();
    let replay = |auth: AuthState, principal: Principal| async move {
        second_factor_failed(
            &auth,
            &principal,
            SecurityEvent::MfaReplay {
                user: principal.user,
            },
            "code_replayed",
            "this code was already used; wait for the next one",
        )
        .await
    };
    match verify_totp(&mfa.secret, &body.code, now, mfa.last_step) {
        Ok(step) => match auth.store().accept_totp_step(principal.user, step).await {
            Ok(true) => match complete_login(&auth, &principal, empty_response(now)).await {
                Ok(r) | Err(r) => r,
            },
            Ok(false) => replay(auth.clone(), principal.clone()).await,
            Err(e) => store_error(e).into_response(),
        },
        Err(TotpRejection::Malformed) => malformed_code(),
        Err(TotpRejection::Replayed) => replay(auth.clone(), principal.clone()).await,
        Err(TotpRejection::Invalid) => {
            second_factor_failed(
                &auth,
                &principal,
                SecurityEvent::MfaFailed {
                    user: principal.user,
                },
                "invalid_code",
                "wrong code",
            )
            .await
        }
    }
}

/// `POST /api/auth/mfa/enrol`: `{ "code": "123456" }` from the newly added authenticator.
/// Confirms enrolment, completes log-in and returns ten recovery codes (shown once).
pub(crate) async fn mfa_enrol(
    Extension(auth): Extension<AuthState>,
    Extension(principal): Extension<Principal>,
    Json(body): Json<CodeRequest>,
) -> Response {
    if stage_of(&principal) != Some(SessionStage::MfaEnrolmentPending) {
        return api_error(
            StatusCode::CONFLICT,
            "already_enrolled",
            "an authenticator is already enrolled; use POST /api/auth/mfa/verify",
        )
        .into_response();
    }
    if let Err(r) = check_account(&auth, principal.user, &principal.meta).await {
        return r;
    }
    let mfa = match auth.store().load_mfa(principal.user).await {
        Ok(Some(m)) if !m.confirmed => m,
        Ok(_) => {
            return api_error(
                StatusCode::CONFLICT,
                "no_pending_enrolment",
                "log in again to start enrolment",
            )
            .into_response();
        }
        Err(e) => return store_error(e).into_response(),
    };
    let now = auth.now();
    let step = match verify_totp(&mfa.secret, &body.code, now, None) {
        Ok(step) => step,
        Err(TotpRejection::Malformed) => return malformed_code(),
        Err(_) => {
            return second_factor_failed(
                &auth,
                &principal,
                SecurityEvent::MfaFailed {
                    user: principal.user,
                },
                "invalid_code",
                "wrong code; check the authenticator's clock",
            )
            .await;
        }
    };
    let Ok((codes, hashes)) = generate_recovery_codes() else {
        return ApiError::internal().into_response();
    };
    let event = SecurityEvent::MfaEnrolled {
        user: principal.user,
    }
    .to_audit(principal.actor(), auth.now_millis(), &principal.meta);
    match auth
        .store()
        .confirm_mfa_enrolment(principal.user, step, &hashes, &event)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return api_error(
                StatusCode::CONFLICT,
                "no_pending_enrolment",
                "log in again to start enrolment",
            )
            .into_response();
        }
        Err(e) => return store_error(e).into_response(),
    }
    let mut body = empty_response(now);
    body.recovery_codes = Some(codes.iter().map(|c| c.as_str().to_owned()).collect());
    match complete_login(&auth, &principal, body).await {
        Ok(r) | Err(r) => r,
    }
}

/// `POST /api/auth/recovery`: `{ "code": "XXXX-XXXX-XXXX-XXXX" }` instead of a TOTP code.
pub(crate) async fn recovery(
    Extension(auth): Extension<AuthState>,
    Extension(principal): Extension<Principal>,
    Json(body): Json<CodeRequest>,
) -> Response {
    if stage_of(&principal) != Some(SessionStage::MfaPending) {
        return api_error(
            StatusCode::CONFLICT,
            "enrolment_required",
            "recovery codes exist only after enrolment",
        )
        .into_response();
    }
    let Ok(hash) = hash_recovery_code(&body.code) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_code",
            "code: expected a recovery code such as XXXX-XXXX-XXXX-XXXX",
        )
        .into_response();
    };
    if let Err(r) = check_account(&auth, principal.user, &principal.meta).await {
        return r;
    }
    match auth
        .store()
        .consume_recovery_code(principal.user, &hash)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return second_factor_failed(
                &auth,
                &principal,
                SecurityEvent::RecoveryCodeFailed {
                    user: principal.user,
                },
                "invalid_code",
                "wrong or already used recovery code",
            )
            .await;
        }
        Err(e) => return store_error(e).into_response(),
    }
    let used = SecurityEvent::RecoveryCodeUsed {
        user: principal.user,
    }
    .to_audit(principal.actor(), auth.now_millis(), &principal.meta);
    if let Err(e) = audit(&auth, &[used]).await {
        return e.into_response();
    }
    let left = auth
        .store()
        .recovery_codes_left(principal.user)
        .await
        .unwrap_or(0);
    let mut body = empty_response(auth.now());
    body.recovery_codes_left = Some(left);
    match complete_login(&auth, &principal, body).await {
        Ok(r) | Err(r) => r,
    }
}

/// `POST /api/auth/logout`.
pub(crate) async fn logout(
    Extension(auth): Extension<AuthState>,
    Extension(principal): Extension<Principal>,
) -> Response {
    let Some(session) = &principal.session else {
        return super::unauthenticated().into_response();
    };
    let event = SecurityEvent::Logout {
        user: principal.user,
    }
    .to_audit(principal.actor(), auth.now_millis(), &principal.meta);
    if let Err(e) = auth.store().end_session(&session.token_hash, &event).await {
        return store_error(e).into_response();
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    cookies::clear(&auth, &mut r);
    r
}

#[derive(Serialize)]
struct Ended {
    ended_sessions: u64,
}

/// `POST /api/auth/logout-everywhere`: ends every session of the signed-in user.
pub(crate) async fn logout_everywhere(
    Extension(auth): Extension<AuthState>,
    Extension(principal): Extension<Principal>,
) -> Response {
    let event = SecurityEvent::LogoutEverywhere {
        user: principal.user,
    }
    .to_audit(principal.actor(), auth.now_millis(), &principal.meta);
    match auth
        .store()
        .end_staff_sessions(principal.user, &event)
        .await
    {
        Ok(n) => {
            let mut r = (StatusCode::OK, Json(Ended { ended_sessions: n })).into_response();
            cookies::clear(&auth, &mut r);
            r
        }
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Serialize)]
struct Me {
    id: StaffId,
    username: String,
    display_name: String,
    roles: Vec<perimeter_domain::Role>,
    permissions: Vec<perimeter_auth::Permission>,
    visible_categories: Vec<perimeter_domain::DataCategory>,
    csrf_token: String,
    #[serde(with = "time::serde::rfc3339")]
    session_expires_at: OffsetDateTime,
}

/// `GET /api/auth/me`: the signed-in user, their permissions and data categories, the CSRF
/// token and when the session will end without activity.
pub(crate) async fn me(
    Extension(auth): Extension<AuthState>,
    Extension(principal): Extension<Principal>,
) -> Response {
    let Some(session) = &principal.session else {
        return super::unauthenticated().into_response();
    };
    let staff = match auth.store().get_staff(principal.user).await {
        Ok(s) => s,
        Err(e) => return store_error(e).into_response(),
    };
    let mut touched = session.clone();
    touched.last_seen_at = auth.now();
    Json(Me {
        id: staff.id,
        username: staff.username,
        display_name: staff.display_name,
        permissions: permissions_of(&staff.roles).into_iter().collect(),
        visible_categories: visible_categories(&staff.roles).into_iter().collect(),
        roles: staff.roles,
        csrf_token: session.csrf.as_str().to_owned(),
        session_expires_at: auth.settings().sessions.expires_at(&touched),
    })
    .into_response()
}

//! Log-in, the second factor, log-out and "who am I".
//!
//! Log-in is two steps: `POST /api/auth/login` checks the password and opens a short-lived
//! pre-MFA session (`mfa_required`, or `mfa_enrolment_required` with the otpauth URI and QR
//! code for a user without MFA); `/api/auth/mfa/verify`, `/api/auth/mfa/enrol` or
//! `/api/auth/recovery` then rotate it into an authenticated session (new token, new CSRF
//! token). Failures count towards the per-account and per-address throttles.

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use perimeter_audit::{Actor, AuditEvent};
use perimeter_auth::{
    RequestMeta, SecurityEvent, SessionStage, ThrottleDecision, TotpRejection, TotpSecret,
    Username, check_password_policy, generate_recovery_codes, hash_password, hash_recovery_code,
    needs_rehash, permissions_of, totp_enrolment, user_actor, verify_password, verify_totp,
    visible_categories,
};
use perimeter_domain::{Role, StaffId};
use perimeter_store::{AttemptStart, StaffUser, ThrottleKey};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{
    AuthState, Principal, api_error, audit, cookies, hashing_error, request_meta, store_error,
};
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

/// Starts an attempt on `key`; `Err` is the 429 to answer (audited once per key and interval,
/// as `login_throttled` naming `user` when the key is a known account's).
async fn begin(
    auth: &AuthState,
    key: &ThrottleKey<'_>,
    user: Option<StaffId>,
    meta: &RequestMeta,
) -> Result<(), Response> {
    let now = auth.now();
    let start = auth
        .store()
        .begin_attempt(key, now)
        .await
        .map_err(|e| store_error(e).into_response())?;
    let AttemptStart::Refused {
        decision,
        audit: due,
    } = start
    else {
        return Ok(());
    };
    if due {
        let event = SecurityEvent::LoginThrottled { user }.to_audit(
            Actor::Anonymous,
            auth.now_millis(),
            meta,
        );
        audit(auth, &[event])
            .await
            .map_err(IntoResponse::into_response)?;
    }
    let (until, code, message) = match decision {
        ThrottleDecision::LockedUntil(at) => (
            at,
            "locked",
            "locked after repeated failed attempts; wait or ask an administrator",
        ),
        ThrottleDecision::RetryAt(at) => {
            (at, "throttled", "too many failed attempts; wait and retry")
        }
        ThrottleDecision::Allow => (now, "throttled", "too many failed attempts; wait and retry"),
    };
    Err(retry_after(
        StatusCode::TOO_MANY_REQUESTS,
        code,
        message,
        until,
        now,
    ))
}

/// Counts a failed attempt against the account key and the client address, and appends
/// `event` plus the lockout events these failures caused, after the counts are stored.
async fn fail(
    auth: &AuthState,
    account: &ThrottleKey<'_>,
    user: Option<StaffId>,
    meta: &RequestMeta,
    event: AuditEvent,
) -> Result<(), ApiError> {
    let now = auth.now();
    let store = auth.store();
    let mut events = vec![event];
    if store
        .finish_attempt(account, true, now)
        .await
        .map_err(store_error)?
        .is_some()
    {
        events.push(SecurityEvent::AccountLocked { user }.to_audit(
            Actor::Anonymous,
            auth.now_millis(),
            meta,
        ));
    }
    if let Some(addr) = &meta.client_addr
        && store
            .finish_attempt(&ThrottleKey::address(addr), true, now)
            .await
            .map_err(store_error)?
            .is_some()
    {
        events.push(SecurityEvent::AddressLocked.to_audit(
            Actor::Anonymous,
            auth.now_millis(),
            meta,
        ));
    }
    audit(auth, &events).await
}

/// Releases the account key's lease (best effort: it lapses by itself soon).
async fn release(auth: &AuthState, account: &ThrottleKey<'_>) {
    if let Err(e) = auth.store().release_attempt(account).await {
        tracing::warn!(error = %e, "could not release a log-in attempt's lease");
    }
}

/// Whether a password may open a console session for this account: it exists, is enabled,
/// and is a person's (service clients use API tokens only).
fn console_account(staff: &StaffUser) -> bool {
    staff.disabled_at_millis.is_none() && !staff.roles.contains(&Role::Service)
}

/// `POST /api/auth/login`: `{ "username", "password" }`.
///
/// Every failure answers the same 401 `invalid_credentials` after the same work (the address
/// throttle, one account lookup, the account throttle keyed by the username whether or not an
/// account has it, one argon2 verification through the bounded hashing pool, the counts and the
/// audit record): an unknown username, a wrong password, a disabled account and a service
/// client all look alike, and are throttled and locked alike.
pub(crate) async fn login(
    auth: AuthState,
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
    let store = auth.store();
    if let Some(addr) = &meta.client_addr {
        begin(auth, &ThrottleKey::address(addr), None, meta).await?;
    }
    let staff = store
        .find_login(&username)
        .await
        .map_err(|e| store_error(e).into_response())?;
    let user = staff.as_ref().map(|s| s.id);
    let account = ThrottleKey::account(username.as_str());
    begin(auth, &account, user, meta).await?;
    let hash = staff
        .as_ref()
        .filter(|s| console_account(s))
        .and_then(|s| s.password_hash.clone());
    let checked = password.clone();
    let stored = hash.clone();
    let ok = match auth
        .hash_limiter()
        .run(move || verify_password(stored.as_deref(), &checked))
        .await
    {
        Ok(ok) => ok,
        Err(e) => {
            release(auth, &account).await;
            return Err(hashing_error(e));
        }
    };
    let Some(staff) = staff.filter(|s| ok && console_account(s)) else {
        let event =
            SecurityEvent::LoginFailed { user }.to_audit(Actor::Anonymous, auth.now_millis(), meta);
        fail(auth, &account, user, meta, event)
            .await
            .map_err(IntoResponse::into_response)?;
        return Err(invalid_credentials().into_response());
    };
    // The password was right: the lease goes, the failures stay until the second factor.
    release(auth, &account).await;
    if hash.as_deref().is_some_and(needs_rehash) {
        rehash(auth, &staff, password, meta).await;
    }
    let now = auth.now();
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
/// goes on), audited as `password_rehashed`.
async fn rehash(
    auth: &AuthState,
    staff: &StaffUser,
    password: Zeroizing<String>,
    meta: &RequestMeta,
) {
    let hashed = auth
        .hash_limiter()
        .run(move || hash_password(&password))
        .await;
    if let Ok(Ok(hash)) = hashed {
        let event = SecurityEvent::PasswordRehashed { user: staff.id }.to_audit(
            Actor::System {
                component: "auth".into(),
            },
            auth.now_millis(),
            meta,
        );
        if let Err(e) = auth
            .store()
            .set_staff_password_hash(staff.id, Some(&hash), &event)
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
        .clear_attempts(&ThrottleKey::account(&principal.username))
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

/// A failed second factor: count it (account and address), audit `event`, answer 401 with
/// `code`.
async fn second_factor_failed(
    auth: &AuthState,
    principal: &Principal,
    event: SecurityEvent,
    code: &'static str,
    message: &'static str,
) -> Response {
    let event = event.to_audit(principal.actor(), auth.now_millis(), &principal.meta);
    let account = ThrottleKey::account(&principal.username);
    if let Err(e) = fail(auth, &account, Some(principal.user), &principal.meta, event).await {
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

/// Starts a second-factor attempt on the principal's account key (one at a time, refused
/// while throttled or locked).
async fn begin_second_factor(auth: &AuthState, principal: &Principal) -> Result<(), Response> {
    begin(
        auth,
        &ThrottleKey::account(&principal.username),
        Some(principal.user),
        &principal.meta,
    )
    .await
}

/// `POST /api/auth/mfa/verify`: `{ "code": "123456" }` with a pre-MFA session.
pub(crate) async fn mfa_verify(
    auth: AuthState,
    principal: Principal,
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
    if let Err(r) = begin_second_factor(&auth, &principal).await {
        return r;
    }
    let account = ThrottleKey::account(&principal.username);
    let mfa = match auth.store().load_mfa(principal.user).await {
        Ok(Some(m)) if m.confirmed => m,
        Ok(_) => {
            release(&auth, &account).await;
            return api_error(
                StatusCode::CONFLICT,
                "enrolment_required",
                "no authenticator is enrolled",
            )
            .into_response();
        }
        Err(e) => {
            release(&auth, &account).await;
            return store_error(e).into_response();
        }
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
            Err(e) => {
                release(&auth, &account).await;
                store_error(e).into_response()
            }
        },
        Err(TotpRejection::Malformed) => {
            release(&auth, &account).await;
            malformed_code()
        }
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
    auth: AuthState,
    principal: Principal,
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
    if let Err(r) = begin_second_factor(&auth, &principal).await {
        return r;
    }
    let account = ThrottleKey::account(&principal.username);
    let mfa = match auth.store().load_mfa(principal.user).await {
        Ok(Some(m)) if !m.confirmed => m,
        Ok(_) => {
            release(&auth, &account).await;
            return api_error(
                StatusCode::CONFLICT,
                "no_pending_enrolment",
                "log in again to start enrolment",
            )
            .into_response();
        }
        Err(e) => {
            release(&auth, &account).await;
            return store_error(e).into_response();
        }
    };
    let now = auth.now();
    let step = match verify_totp(&mfa.secret, &body.code, now, None) {
        Ok(step) => step,
        Err(TotpRejection::Malformed) => {
            release(&auth, &account).await;
            return malformed_code();
        }
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
        release(&auth, &account).await;
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
            release(&auth, &account).await;
            return api_error(
                StatusCode::CONFLICT,
                "no_pending_enrolment",
                "log in again to start enrolment",
            )
            .into_response();
        }
        Err(e) => {
            release(&auth, &account).await;
            return store_error(e).into_response();
        }
    }
    let mut body = empty_response(now);
    body.recovery_codes = Some(codes.iter().map(|c| c.as_str().to_owned()).collect());
    match complete_login(&auth, &principal, body).await {
        Ok(r) | Err(r) => r,
    }
}

/// `POST /api/auth/recovery`: `{ "code": "XXXX-XXXX-XXXX-XXXX" }` instead of a TOTP code.
pub(crate) async fn recovery(
    auth: AuthState,
    principal: Principal,
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
    if let Err(r) = begin_second_factor(&auth, &principal).await {
        return r;
    }
    let account = ThrottleKey::account(&principal.username);
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
        Err(e) => {
            release(&auth, &account).await;
            return store_error(e).into_response();
        }
    }
    let used = SecurityEvent::RecoveryCodeUsed {
        user: principal.user,
    }
    .to_audit(principal.actor(), auth.now_millis(), &principal.meta);
    if let Err(e) = audit(&auth, &[used]).await {
        release(&auth, &account).await;
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
pub(crate) async fn logout(auth: AuthState, principal: Principal) -> Response {
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
pub(crate) async fn logout_everywhere(auth: AuthState, principal: Principal) -> Response {
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

/// `GET /api/auth/me` (passive: polling it does not keep the session alive): the signed-in
/// user, their permissions and data categories, the CSRF token and when the session will end
/// without further activity.
pub(crate) async fn me(auth: AuthState, principal: Principal) -> Response {
    let Some(session) = &principal.session else {
        return super::unauthenticated().into_response();
    };
    let staff = match auth.store().get_staff(principal.user).await {
        Ok(s) => s,
        Err(e) => return store_error(e).into_response(),
    };
    Json(Me {
        id: staff.id,
        username: staff.username,
        display_name: staff.display_name,
        permissions: permissions_of(&staff.roles).into_iter().collect(),
        visible_categories: visible_categories(&staff.roles).into_iter().collect(),
        roles: staff.roles,
        csrf_token: session.csrf.as_str().to_owned(),
        session_expires_at: auth.settings().sessions.expires_at(session),
    })
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePassword {
    current_password: String,
    new_password: String,
}

#[derive(Serialize)]
struct PasswordChanged {
    ended_sessions: u64,
}

/// `POST /api/auth/password`: `{ current_password, new_password }`. Re-authenticates with the
/// current password (a wrong one counts towards the account's lockout, like a failed log-in),
/// checks the new one against the policy, stores it, and ends every other session of the user
/// (this one stays), audited as `password_changed`.
pub(crate) async fn change_password(
    auth: AuthState,
    principal: Principal,
    Json(body): Json<ChangePassword>,
) -> Response {
    let Some(session) = principal.session.clone() else {
        return super::unauthenticated().into_response();
    };
    let current = Zeroizing::new(body.current_password);
    let new_password = Zeroizing::new(body.new_password);
    if current.is_empty()
        || current.len() > MAX_PASSWORD_BYTES
        || new_password.len() > MAX_PASSWORD_BYTES * 2
    {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_password",
            "current_password/new_password: expected 1 to 128 characters",
        )
        .into_response();
    }
    if let Err(e) = check_password_policy(&new_password, &principal.username) {
        return api_error(
            StatusCode::BAD_REQUEST,
            "weak_password",
            super::admin::password_message(&e),
        )
        .into_response();
    }
    let account = ThrottleKey::account(&principal.username);
    if let Err(r) = begin(&auth, &account, Some(principal.user), &principal.meta).await {
        return r;
    }
    let staff = match auth.store().get_staff(principal.user).await {
        Ok(s) => s,
        Err(e) => {
            release(&auth, &account).await;
            return store_error(e).into_response();
        }
    };
    let stored = staff.password_hash.clone();
    let ok = match auth
        .hash_limiter()
        .run(move || verify_password(stored.as_deref(), &current))
        .await
    {
        Ok(ok) => ok,
        Err(e) => {
            release(&auth, &account).await;
            return hashing_error(e);
        }
    };
    if !ok {
        let event = SecurityEvent::LoginFailed {
            user: Some(principal.user),
        }
        .to_audit(principal.actor(), auth.now_millis(), &principal.meta);
        if let Err(e) = fail(
            &auth,
            &account,
            Some(principal.user),
            &principal.meta,
            event,
        )
        .await
        {
            return e.into_response();
        }
        return api_error(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "current_password: wrong password",
        )
        .into_response();
    }
    release(&auth, &account).await;
    let hash = match auth
        .hash_limiter()
        .run(move || hash_password(&new_password))
        .await
    {
        Ok(Ok(h)) => h,
        Ok(Err(_)) => return ApiError::internal().into_response(),
        Err(e) => return hashing_error(e),
    };
    let event = SecurityEvent::PasswordChanged {
        user: principal.user,
    }
    .to_audit(principal.actor(), auth.now_millis(), &principal.meta);
    match auth
        .store()
        .change_staff_password(principal.user, &hash, Some(&session.token_hash), &event)
        .await
    {
        Ok(n) => Json(PasswordChanged { ended_sessions: n }).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

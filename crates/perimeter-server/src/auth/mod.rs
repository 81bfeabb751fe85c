//! Staff authentication over HTTP: session cookies, CSRF, the access guard every declared route
//! passes through, security headers, and the `/api/auth/*`, `/api/admin/*` and break-glass
//! endpoints.
//!
//! The rules are `perimeter-auth`'s; the state is the store's (sessions live in the database,
//! so several processes share them). [`AuthState`] is attached to an [`App`] with
//! [`App::with_auth`]; [`guard`] enforces each route's declared [`Access`] (deny by default:
//! without an `AuthState` every non-public route answers 500 and runs nothing).

mod admin;
mod cookies;
mod session_routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::{Extension, Router};
use perimeter_audit::{Actor, AuditEvent};
use perimeter_auth::{
    ApiToken, ApiTokenRecord, BreakGlassPolicy, Permission, RequestMeta, SecurityEvent,
    SessionPolicy, SessionRecord, SessionStage, TotpSecret, allowed, user_actor,
};
use perimeter_domain::{PracticeId, RequestId, Role, SharedClock, StaffId};
use perimeter_store::{Store, StoreError};
use time::OffsetDateTime;
use zeroize::Zeroizing;

pub use cookies::{SESSION_COOKIE, SESSION_COOKIE_TLS};

use crate::App;
use crate::access::{Access, RouteError, Routes};
use crate::error::ApiError;
use crate::state::AppState;

/// The header carrying the CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Authentication settings.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Idle and absolute session timeouts (`[sessions]` in the configuration).
    pub sessions: SessionPolicy,
    /// Served over TLS: cookies are `Secure` and named `__Host-perimeter_session`, and
    /// responses carry HSTS.
    pub tls: bool,
    /// The issuer shown in authenticator apps.
    pub issuer: String,
    /// Emergency-access grant length.
    pub break_glass: BreakGlassPolicy,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            sessions: SessionPolicy::default(),
            tls: false,
            issuer: "Perimeter".to_owned(),
            break_glass: BreakGlassPolicy::default(),
        }
    }
}

/// What the authentication endpoints and the guard share. Cheap to clone.
#[derive(Clone)]
pub struct AuthState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    clock: SharedClock,
    settings: AuthSettings,
}

impl std::fmt::Debug for AuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthState")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl AuthState {
    /// Authentication over `store`, with time from `clock`.
    pub fn new(store: Store, clock: SharedClock, settings: AuthSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                settings,
            }),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn settings(&self) -> &AuthSettings {
        &self.inner.settings
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    pub(crate) fn now_millis(&self) -> i64 {
        self.inner.clock.now_millis()
    }

    pub(crate) fn cookie_name(&self) -> &'static str {
        if self.inner.settings.tls {
            SESSION_COOKIE_TLS
        } else {
            SESSION_COOKIE
        }
    }
}

impl App {
    /// Attaches authentication: every guarded route can then resolve sessions and API tokens,
    /// and every response carries the security headers.
    pub fn with_auth(self, auth: AuthState) -> Self {
        let tls = auth.settings().tls;
        let router: Router = self
            .router
            .layer(Extension(auth))
            .layer(axum::middleware::from_fn(
                move |req: Request, next: Next| security_headers(tls, req, next),
            ));
        Self {
            router,
            routes: self.routes,
        }
    }
}

/// Adds the security headers to every response.
async fn security_headers(tls: bool, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::CACHE_CONTROL, "no-store");
    if tls {
        set(
            h,
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=63072000; includeSubDomains",
        );
    }
    response
}

/// Who is making a guarded request, as the guard established it.
#[derive(Clone)]
pub struct Principal {
    /// The staff user or service client.
    pub user: StaffId,
    /// Their practice.
    pub practice: PracticeId,
    /// Their roles, read from the database on this request.
    pub roles: Vec<Role>,
    /// The session, for console users.
    pub session: Option<SessionRecord>,
    /// The API token, for service clients.
    pub token: Option<ApiTokenRecord>,
    /// Request metadata for audit records.
    pub meta: RequestMeta,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("user", &self.user)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

impl Principal {
    /// The audit actor for this principal.
    pub fn actor(&self) -> Actor {
        match (&self.session, &self.token) {
            (_, Some(_)) => Actor::Service { client: self.user },
            (Some(s), None) => user_actor(self.user, &self.roles, Some(s.token_hash.audit_ref())),
            (None, None) => user_actor(self.user, &self.roles, None),
        }
    }
}

/// Request metadata for audit records: client address, user agent (truncated), request id.
pub(crate) fn request_meta(req_parts: &axum::http::request::Parts) -> RequestMeta {
    let client_addr = req_parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    let user_agent = req_parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(200).collect());
    RequestMeta {
        client_addr,
        user_agent,
        request_id: req_parts.extensions.get::<RequestId>().copied(),
    }
}

/// A fixed-text error (never echoes the request).
pub(crate) fn api_error(status: StatusCode, code: &'static str, message: &'static str) -> ApiError {
    ApiError::new(status, code, message)
}

pub(crate) fn unauthenticated() -> ApiError {
    api_error(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "log in first (session missing, ended or malformed)",
    )
}

pub(crate) fn forbidden() -> ApiError {
    api_error(
        StatusCode::FORBIDDEN,
        "forbidden",
        "your roles do not allow this",
    )
}

/// Maps a storage failure to a response; logs the (PHI-free) error under the request id.
pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound { .. } => ApiError::not_found(),
        StoreError::Invalid { .. } => api_error(
            StatusCode::CONFLICT,
            "invalid_state",
            "the request conflicts with the record's current state",
        ),
        StoreError::Duplicate { .. } => api_error(
            StatusCode::CONFLICT,
            "duplicate",
            "a record with this name already exists",
        ),
        StoreError::Shredded { .. } => api_error(
            StatusCode::GONE,
            "shredded",
            "this patient's data was erased",
        ),
        StoreError::Unavailable { .. } | StoreError::Busy => ApiError::not_ready(),
        other => {
            tracing::error!(error = %other, "storage failure in authentication");
            ApiError::internal()
        }
    }
}

/// Appends security events that go with no other change. Failure to audit fails the request.
pub(crate) async fn audit(auth: &AuthState, events: &[AuditEvent]) -> Result<(), ApiError> {
    auth.store()
        .append_security_events(events)
        .await
        .map_err(store_error)
}

/// Wraps a route's handler with the check its [`Access`] declares. Called by [`Routes::add`]
/// for every route, so no route escapes it.
pub(crate) fn guard(access: Access, route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    match access {
        Access::Public => route,
        other => route.route_layer(axum::middleware::from_fn(
            move |req: Request, next: Next| enforce(other, req, next),
        )),
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The guard itself.
async fn enforce(access: Access, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let Some(auth) = parts.extensions.get::<AuthState>().cloned() else {
        tracing::error!("a guarded route was called without authentication configured");
        return ApiError::internal().into_response();
    };
    let meta = request_meta(&parts);
    let result = match bearer(&parts.headers) {
        Some(token) => authorize_token(&auth, access, &parts.method, token, &meta).await,
        None => authorize_session(&auth, access, &parts.method, &parts.headers, &meta).await,
    };
    match result {
        Ok(principal) => {
            parts.extensions.insert(principal);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(response) => response,
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

async fn authorize_token(
    auth: &AuthState,
    access: Access,
    _method: &Method,
    presented: &str,
    meta: &RequestMeta,
) -> Result<Principal, Response> {
    let now = auth.now();
    let rejected = || async {
        let event =
            SecurityEvent::ApiTokenRejected.to_audit(Actor::Anonymous, auth.now_millis(), meta);
        if let Err(e) = audit(auth, &[event]).await {
            return e.into_response();
        }
        api_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the API token is malformed, unknown, expired or revoked",
        )
        .into_response()
    };
    let Access::Permission(perm) = access else {
        // Tokens never stand in for a console session.
        return Err(rejected().await);
    };
    let Ok(token) = ApiToken::parse(presented) else {
        return Err(rejected().await);
    };
    let record = match auth.store().api_token_by_hash(&token.hash()).await {
        Ok(Some(r)) => r,
        Ok(None) => return Err(rejected().await),
        Err(e) => return Err(store_error(e).into_response()),
    };
    let staff = match auth.store().get_staff(record.client).await {
        Ok(s) => s,
        Err(e) => return Err(store_error(e).into_response()),
    };
    if staff.disabled_at_millis.is_some() {
        return Err(rejected().await);
    }
    match record.authorize(now, perm, None) {
        Ok(()) if allowed(&staff.roles, perm) => {}
        Ok(()) | Err(perimeter_auth::ApiTokenRejection::PermissionOutOfScope) => {
            let principal = Principal {
                user: staff.id,
                practice: staff.practice_id,
                roles: staff.roles.clone(),
                session: None,
                token: Some(record.clone()),
                meta: meta.clone(),
            };
            return Err(deny(auth, &principal, perm).await);
        }
        Err(_) => return Err(rejected().await),
    }
    Ok(Principal {
        user: staff.id,
        practice: staff.practice_id,
        roles: staff.roles,
        session: None,
        token: Some(record),
        meta: meta.clone(),
    })
}

/// Audits a permission denial and answers 403.
async fn deny(auth: &AuthState, principal: &Principal, perm: Permission) -> Response {
    let event = SecurityEvent::PermissionDenied { permission: perm }.to_audit(
        principal.actor(),
        auth.now_millis(),
        &principal.meta,
    );
    if let Err(e) = audit(auth, &[event]).await {
        return e.into_response();
    }
    forbidden().into_response()
}

/// Ends an expired session with its audit record and answers 401 `session_expired`, clearing
/// the cookie.
async fn expire(
    auth: &AuthState,
    record: &SessionRecord,
    expiry: perimeter_auth::SessionExpiry,
    meta: &RequestMeta,
) -> Response {
    let event = match expiry {
        perimeter_auth::SessionExpiry::Idle => {
            SecurityEvent::SessionIdleTimeout { user: record.user }
        }
        perimeter_auth::SessionExpiry::Absolute => {
            SecurityEvent::SessionAbsoluteTimeout { user: record.user }
        }
    }
    .to_audit(
        Actor::User {
            user: record.user,
            roles: Vec::new(),
            session: Some(record.token_hash.audit_ref()),
        },
        auth.now_millis(),
        meta,
    );
    if let Err(e) = auth.store().end_session(&record.token_hash, &event).await {
        return store_error(e).into_response();
    }
    let mut response = api_error(
        StatusCode::UNAUTHORIZED,
        "session_expired",
        "the session ended (inactivity or maximum length); log in again",
    )
    .into_response();
    cookies::clear(auth, &mut response);
    response
}

async fn authorize_session(
    auth: &AuthState,
    access: Access,
    method: &Method,
    headers: &HeaderMap,
    meta: &RequestMeta,
) -> Result<Principal, Response> {
    let now = auth.now();
    let token = match cookies::session_token(headers, auth.cookie_name()) {
        Some(Ok(token)) => token,
        Some(Err(_)) => {
            let mut r = unauthenticated().into_response();
            cookies::clear(auth, &mut r);
            return Err(r);
        }
        None => return Err(unauthenticated().into_response()),
    };
    let record = match auth.store().session(&token.hash()).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            let mut r = unauthenticated().into_response();
            cookies::clear(auth, &mut r);
            return Err(r);
        }
        Err(e) => return Err(store_error(e).into_response()),
    };
    if let Err(expiry) = auth.settings().sessions.validate(&record, now) {
        return Err(expire(auth, &record, expiry, meta).await);
    }
    let staff = match auth.store().get_staff(record.user).await {
        Ok(s) => s,
        Err(e) => return Err(store_error(e).into_response()),
    };
    if staff.disabled_at_millis.is_some() {
        let event = SecurityEvent::SessionsEndedByAdmin { user: staff.id }.to_audit(
            Actor::System {
                component: "auth".into(),
            },
            auth.now_millis(),
            meta,
        );
        let _ = auth.store().end_staff_sessions(staff.id, &event).await;
        return Err(unauthenticated().into_response());
    }
    let principal = Principal {
        user: staff.id,
        practice: staff.practice_id,
        roles: staff.roles,
        session: Some(record.clone()),
        token: None,
        meta: meta.clone(),
    };
    // The stage must match: pending sessions reach only the second-factor endpoints.
    match (access, record.stage) {
        (Access::MfaPending, SessionStage::MfaPending | SessionStage::MfaEnrolmentPending) => {}
        (Access::Permission(_), SessionStage::Authenticated) => {}
        (Access::MfaPending, SessionStage::Authenticated) => {
            return Err(api_error(
                StatusCode::CONFLICT,
                "already_authenticated",
                "this session has already completed log-in",
            )
            .into_response());
        }
        _ => {
            return Err(api_error(
                StatusCode::UNAUTHORIZED,
                "mfa_required",
                "complete the second factor first",
            )
            .into_response());
        }
    }
    if !is_safe(method) {
        let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !presented.is_some_and(|p| record.csrf.verify(p)) {
            let event =
                SecurityEvent::CsrfRejected.to_audit(principal.actor(), auth.now_millis(), meta);
            if let Err(e) = audit(auth, &[event]).await {
                return Err(e.into_response());
            }
            return Err(api_error(
                StatusCode::FORBIDDEN,
                "csrf",
                "missing or wrong x-csrf-token header",
            )
            .into_response());
        }
    }
    if let Access::Permission(perm) = access
        && !allowed(&principal.roles, perm)
    {
        return Err(deny(auth, &principal, perm).await);
    }
    if let Err(e) = auth.store().touch_session(&record.token_hash, now).await {
        return Err(store_error(e).into_response());
    }
    Ok(principal)
}

/// Every authentication route with its declared access. Add them to the application's routes.
pub fn routes(routes: Routes) -> Result<Routes, RouteError> {
    use Method as M;
    use Permission as P;
    routes
        .add(
            M::POST,
            "/api/auth/login",
            Access::Public,
            session_routes::login,
        )?
        .add(
            M::POST,
            "/api/auth/mfa/enrol",
            Access::MfaPending,
            session_routes::mfa_enrol,
        )?
        .add(
            M::POST,
            "/api/auth/mfa/verify",
            Access::MfaPending,
            session_routes::mfa_verify,
        )?
        .add(
            M::POST,
            "/api/auth/recovery",
            Access::MfaPending,
            session_routes::recovery,
        )?
        .add(
            M::POST,
            "/api/auth/logout",
            Access::Permission(P::OwnAccount),
            session_routes::logout,
        )?
        .add(
            M::POST,
            "/api/auth/logout-everywhere",
            Access::Permission(P::OwnAccount),
            session_routes::logout_everywhere,
        )?
        .add(
            M::GET,
            "/api/auth/me",
            Access::Permission(P::OwnAccount),
            session_routes::me,
        )?
        .add(
            M::POST,
            "/api/admin/users",
            Access::Permission(P::ManageUsers),
            admin::create_user,
        )?
        .add(
            M::POST,
            "/api/admin/users/{id}/roles",
            Access::Permission(P::ManageRoles),
            admin::set_roles,
        )?
        .add(
            M::POST,
            "/api/admin/users/{id}/mfa-reset",
            Access::Permission(P::ResetMfa),
            admin::mfa_reset,
        )?
        .add(
            M::POST,
            "/api/admin/users/{id}/end-sessions",
            Access::Permission(P::EndUserSessions),
            admin::end_sessions,
        )?
        .add(
            M::GET,
            "/api/admin/lockouts",
            Access::Permission(P::ManageLockouts),
            admin::lockouts,
        )?
        .add(
            M::POST,
            "/api/admin/users/{id}/unlock",
            Access::Permission(P::ManageLockouts),
            admin::unlock,
        )?
        .add(
            M::POST,
            "/api/admin/tokens",
            Access::Permission(P::ManageApiTokens),
            admin::create_token,
        )?
        .add(
            M::GET,
            "/api/admin/tokens",
            Access::Permission(P::ManageApiTokens),
            admin::list_tokens,
        )?
        .add(
            M::DELETE,
            "/api/admin/tokens/{id}",
            Access::Permission(P::ManageApiTokens),
            admin::revoke_token,
        )?
        .add(
            M::POST,
            "/api/patients/{id}/break-glass",
            Access::Permission(P::BreakGlass),
            admin::break_glass,
        )
}

/// Enrols every user of `practice` who has no MFA yet with a fresh TOTP secret, confirmed at
/// once, and returns `(username, base32 secret)` for each. **Demo data only** (`serve --demo`
/// prints them so someone can log in); real users enrol themselves at first log-in.
pub async fn enrol_demo_mfa(
    store: &Store,
    practice: PracticeId,
    clock: &SharedClock,
) -> Result<Vec<(String, Zeroizing<String>)>, StoreError> {
    let mut out = Vec::new();
    for staff in store.list_staff(practice).await? {
        if store.load_mfa(staff.id).await?.is_some() {
            continue;
        }
        let secret =
            TotpSecret::generate().map_err(|_| StoreError::Corrupt("randomness failed".into()))?;
        store.start_mfa_enrolment(staff.id, &secret).await?;
        let step = perimeter_auth::totp_step(clock.now()).saturating_sub(2);
        let event = SecurityEvent::MfaEnrolled { user: staff.id }.to_audit(
            Actor::System {
                component: "demo".into(),
            },
            clock.now_millis(),
            &RequestMeta::default(),
        );
        store
            .confirm_mfa_enrolment(staff.id, step, &[], &event)
            .await?;
        out.push((staff.username.clone(), secret.to_base32()));
    }
    Ok(out)
}

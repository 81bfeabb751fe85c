//! Staff authentication over HTTP: session cookies, CSRF, the access guard every declared route
//! passes through, security headers, and the `/api/auth/*`, `/api/admin/*`, emergency-access,
//! privacy-review and notification endpoints.
//!
//! The rules are `perimeter-auth`'s; the state is the store's (sessions live in the database,
//! so several processes share them). An [`AuthSlot`] is attached to an [`App`] with
//! [`App::with_auth_slot`] (or a ready [`AuthState`] with [`App::with_auth`]); [`guard`]
//! enforces each route's declared [`Access`] (deny by default). While the slot waits for the
//! database every non-public route answers 503 `not_ready` and runs nothing; without any
//! authentication attached it answers 500.
//!
//! User activity: every guarded request restarts the session's idle timer except the routes
//! declared passive ([`Routes::add_passive`]: `GET /api/auth/me` and `GET /api/notifications`,
//! which the console polls in the background), so an unattended console still logs off.

pub(crate) mod admin;
mod cookies;
mod limiter;
mod privacy;
mod session_routes;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use perimeter_audit::{Actor, AuditEvent};
use perimeter_auth::{
    ApiToken, ApiTokenRecord, ApiTokenRejection, BreakGlassPolicy, Permission, RequestMeta,
    SecurityEvent, SessionRecord, SessionStage, allowed, user_actor,
};
use perimeter_domain::{PracticeId, PurposeOfUse, RequestId, Role, SharedClock, StaffId};
use perimeter_store::{Store, StoreError, Viewer};
use time::OffsetDateTime;

pub use cookies::{SESSION_COOKIE, SESSION_COOKIE_TLS};
pub use limiter::{HashLimiter, HashLimits, HashRunError, HeldSlots};
pub use perimeter_auth::SessionPolicy;

use crate::App;
use crate::access::{Access, RouteError, Routes};
use crate::error::ApiError;
use crate::state::AppState;

/// The header carrying the CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The header in which a request made with an API token states its purpose of use
/// (`treatment`, `payment`, `operations`); optional when the token allows only one.
pub const PURPOSE_HEADER: &str = "x-purpose-of-use";

/// Authentication settings.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Idle and absolute session timeouts (`[sessions]` in the configuration).
    pub sessions: SessionPolicy,
    /// The browser reaches Perimeter over HTTPS (TLS here, or a TLS-terminating proxy in
    /// front): cookies are `Secure` and named `__Host-perimeter_session`, and responses carry
    /// HSTS.
    pub tls: bool,
    /// The issuer shown in authenticator apps.
    pub issuer: String,
    /// Emergency-access grant length.
    pub break_glass: BreakGlassPolicy,
    /// Limits on concurrent password hashing.
    pub hashing: HashLimits,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            sessions: SessionPolicy::default(),
            tls: false,
            issuer: "Perimeter".to_owned(),
            break_glass: BreakGlassPolicy::default(),
            hashing: HashLimits::default(),
        }
    }
}

/// What the authentication endpoints and the guard share once the database is open. Cheap to
/// clone. Handlers take it as an argument (it is an extractor: a request served while the
/// database is not open yet is answered 503 `not_ready` and runs nothing).
#[derive(Clone)]
pub struct AuthState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    clock: SharedClock,
    settings: AuthSettings,
    limiter: HashLimiter,
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
        let limiter = HashLimiter::new(settings.hashing);
        Self::with_limiter(store, clock, settings, limiter)
    }

    fn with_limiter(
        store: Store,
        clock: SharedClock,
        settings: AuthSettings,
        limiter: HashLimiter,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                settings,
                limiter,
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The settings.
    pub fn settings(&self) -> &AuthSettings {
        &self.inner.settings
    }

    /// The password-hashing limiter.
    pub fn hash_limiter(&self) -> &HashLimiter {
        &self.inner.limiter
    }

    /// Now, from the injected clock.
    pub fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// Now in milliseconds, from the injected clock.
    pub fn now_millis(&self) -> i64 {
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

/// Authentication that may start before the database is open: `serve` starts listening at
/// once and [`AuthSlot::activate`]s the store when the database answers (it retries in the
/// background). Until then every authenticated route, and the log-in itself, answers 503
/// `not_ready` and runs nothing; afterwards they work without a restart. Cheap to clone.
#[derive(Clone)]
pub struct AuthSlot {
    inner: Arc<SlotInner>,
}

struct SlotInner {
    state: OnceLock<AuthState>,
    clock: SharedClock,
    settings: AuthSettings,
    limiter: HashLimiter,
}

impl std::fmt::Debug for AuthSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSlot")
            .field("ready", &self.inner.state.get().is_some())
            .finish_non_exhaustive()
    }
}

impl AuthSlot {
    /// A slot waiting for the store.
    pub fn new(clock: SharedClock, settings: AuthSettings) -> Self {
        let limiter = HashLimiter::new(settings.hashing);
        Self {
            inner: Arc::new(SlotInner {
                state: OnceLock::new(),
                clock,
                settings,
                limiter,
            }),
        }
    }

    /// A slot that is ready at once.
    pub fn ready(state: AuthState) -> Self {
        let slot = Self {
            inner: Arc::new(SlotInner {
                state: OnceLock::new(),
                clock: state.inner.clock.clone(),
                settings: state.inner.settings.clone(),
                limiter: state.inner.limiter.clone(),
            }),
        };
        let _ = slot.inner.state.set(state);
        slot
    }

    /// Makes authentication available over `store`. `false` if it already was (the first
    /// store stays).
    pub fn activate(&self, store: Store) -> bool {
        let state = AuthState::with_limiter(
            store,
            self.inner.clock.clone(),
            self.inner.settings.clone(),
            self.inner.limiter.clone(),
        );
        self.inner.state.set(state).is_ok()
    }

    /// The authentication state, once the store is there.
    pub fn state(&self) -> Option<AuthState> {
        self.inner.state.get().cloned()
    }

    /// The settings.
    pub fn settings(&self) -> &AuthSettings {
        &self.inner.settings
    }

    /// The password-hashing limiter (shared with the state).
    pub fn hash_limiter(&self) -> &HashLimiter {
        &self.inner.limiter
    }
}

/// Marks a request that reached a server whose authentication waits for the database.
#[derive(Clone, Copy)]
struct AuthPending;

fn auth_unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        "the database is not reachable yet, so nobody can log in or be authorized; nothing was done. Retry shortly (see /readyz)",
    )
}

pub(crate) fn auth_from_extensions(ext: &axum::http::Extensions) -> Result<AuthState, ApiError> {
    if let Some(state) = ext.get::<AuthState>() {
        return Ok(state.clone());
    }
    if ext.get::<AuthPending>().is_some() {
        return Err(auth_unavailable());
    }
    tracing::error!("an authenticated route was called without authentication configured");
    Err(ApiError::internal())
}

impl<S: Send + Sync> FromRequestParts<S> for AuthState {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        auth_from_extensions(&parts.extensions).map_err(IntoResponse::into_response)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| unauthenticated().into_response())
    }
}

impl App {
    /// Attaches authentication that is ready at once.
    pub fn with_auth(self, auth: AuthState) -> Self {
        self.with_auth_slot(AuthSlot::ready(auth))
    }

    /// Attaches authentication through a slot (see [`AuthSlot`]): every guarded route then
    /// resolves sessions and API tokens once the slot is active (503 before), and every
    /// response carries the security headers.
    pub fn with_auth_slot(self, slot: AuthSlot) -> Self {
        let tls = slot.settings().tls;
        let router = self
            .router
            .layer(axum::middleware::from_fn(
                move |mut req: Request, next: Next| {
                    match slot.state() {
                        Some(state) => {
                            req.extensions_mut().insert(state);
                        }
                        None => {
                            req.extensions_mut().insert(AuthPending);
                        }
                    }
                    next.run(req)
                },
            ))
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
    let chat_csp =
        (req.uri().path() == "/chat" || req.uri().path().starts_with("/chat/")).then(|| {
            let origins = req
                .extensions()
                .get::<crate::channels::Channels>()
                .map(|c| c.settings().chat.embed_origins.clone())
                .unwrap_or_default();
            crate::channels::web_chat::chat_csp(&origins)
        });
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    if let Some(csp) = chat_csp {
        // The chat's page and widget: its own scripts and styles only, framed only by the
        // configured practice sites (so no X-Frame-Options, which cannot list them).
        if let Ok(v) = HeaderValue::from_str(&csp) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
    } else {
        // A response that declares its own policy (the console's assets) keeps it; every
        // other response gets the strictest one.
        if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
            set(
                h,
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; frame-ancestors 'none'",
            );
        }
        set(h, header::X_FRAME_OPTIONS, "DENY");
    }
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
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
    /// Their (normalised) username.
    pub username: String,
    /// Their practice.
    pub practice: PracticeId,
    /// Their roles, read from the database on this request.
    pub roles: Vec<Role>,
    /// The session, for console users.
    pub session: Option<SessionRecord>,
    /// The API token, for service clients.
    pub token: Option<ApiTokenRecord>,
    /// For API tokens: the purpose of use this request serves, checked against the token's
    /// scope (stated in the `x-purpose-of-use` header, or the token's only purpose).
    pub purpose: Option<PurposeOfUse>,
    /// Request metadata for audit records.
    pub meta: RequestMeta,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("user", &self.user)
            .field("roles", &self.roles)
            .field("purpose", &self.purpose)
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

    /// The store's access context for a write by this principal for `purpose` (actor, request
    /// id, client address and user agent for the audit record).
    pub fn access_context(&self, purpose: PurposeOfUse) -> perimeter_store::AccessContext {
        perimeter_store::AccessContext {
            actor: self.actor(),
            purpose: Some(purpose),
            request_id: self.meta.request_id,
            client_addr: self.meta.client_addr.clone(),
            user_agent: self.meta.user_agent.clone(),
            api_token: self.token.as_ref().map(|t| t.id),
        }
    }

    /// The principal as a reader of patient data (the store decides what they may see).
    pub fn viewer(&self) -> Viewer {
        Viewer {
            staff: self.user,
            session: self.session.as_ref().map(|s| s.token_hash.audit_ref()),
            request_id: self.meta.request_id,
            client_addr: self.meta.client_addr.clone(),
            user_agent: self.meta.user_agent.clone(),
        }
    }
}

/// Request metadata for audit records: client address, user agent (truncated), request id.
pub(crate) fn request_meta(req_parts: &axum::http::request::Parts) -> RequestMeta {
    // Behind trusted proxies, the address they forwarded (crate::client_addr); else the peer.
    let client_addr = match req_parts.extensions.get::<crate::client_addr::ClientAddr>() {
        Some(c) => Some(c.0.to_string()),
        None => req_parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string()),
    };
    let user_agent = req_parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().filter(|c| !c.is_control()).take(200).collect());
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

pub(crate) fn hashing_error(e: HashRunError) -> Response {
    match e {
        HashRunError::Saturated => {
            let mut r = api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many log-ins or password changes at once; nothing was done, retry in a moment",
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        HashRunError::Failed => ApiError::internal().into_response(),
    }
}

/// Maps a storage failure to a response; logs the (PHI-free) error under the request id.
pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound { .. } => ApiError::not_found(),
        StoreError::Forbidden { .. } => forbidden(),
        StoreError::Invalid { field, expected } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            format!("{field}: expected {expected}"),
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
        StoreError::Unavailable { .. } | StoreError::Busy | StoreError::Conflict => {
            ApiError::not_ready()
        }
        other => {
            tracing::error!(error = %other, "storage failure");
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
/// for every route, so no route escapes it. `passive` routes (the console's background polls)
/// check the session but do not count as user activity: they never extend the idle timeout.
pub(crate) fn guard(
    access: Access,
    passive: bool,
    route: MethodRouter<AppState>,
) -> MethodRouter<AppState> {
    match access {
        Access::Public => route,
        Access::PatientChat => route.route_layer(axum::middleware::from_fn(
            move |req: Request, next: Next| crate::channels::web_chat::enforce(passive, req, next),
        )),
        other => route.route_layer(axum::middleware::from_fn(
            move |req: Request, next: Next| enforce(other, passive, req, next),
        )),
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The guard itself.
async fn enforce(access: Access, passive: bool, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let auth = match auth_from_extensions(&parts.extensions) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let meta = request_meta(&parts);
    let result = match bearer(&parts.headers) {
        Some(token) => authorize_token(&auth, access, &parts.headers, token, &meta).await,
        None => {
            authorize_session(&auth, access, passive, &parts.method, &parts.headers, &meta).await
        }
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

/// The purpose a token request states: `Ok(None)` when it states none; `Err` when the header
/// is present but not a purpose of use.
fn stated_purpose(headers: &HeaderMap) -> Result<Option<PurposeOfUse>, ()> {
    match headers.get(PURPOSE_HEADER) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse::<PurposeOfUse>().ok())
            .map(Some)
            .ok_or(()),
    }
}

async fn authorize_token(
    auth: &AuthState,
    access: Access,
    headers: &HeaderMap,
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
    if staff.disabled_at_millis.is_some() || !staff.roles.contains(&Role::Service) {
        return Err(rejected().await);
    }
    let principal = |purpose| Principal {
        user: staff.id,
        username: staff.username.clone(),
        practice: staff.practice_id,
        roles: staff.roles.clone(),
        session: None,
        token: Some(record.clone()),
        purpose,
        meta: meta.clone(),
    };
    let Ok(stated) = stated_purpose(headers) else {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            "invalid_purpose",
            "x-purpose-of-use: expected treatment, payment or operations",
        )
        .into_response());
    };
    match record.authorize_request(now, perm, stated) {
        Ok(purpose) if allowed(&staff.roles, perm) => Ok(principal(Some(purpose))),
        Ok(_) | Err(ApiTokenRejection::PermissionOutOfScope) => {
            Err(deny(auth, &principal(stated), perm).await)
        }
        Err(ApiTokenRejection::PurposeOutOfScope) => {
            Err(deny_purpose(auth, &principal(stated), perm).await)
        }
        Err(ApiTokenRejection::PurposeRequired) => Err(api_error(
            StatusCode::BAD_REQUEST,
            "purpose_required",
            "this token allows several purposes of use: state one in the x-purpose-of-use header",
        )
        .into_response()),
        Err(ApiTokenRejection::Expired | ApiTokenRejection::Revoked) => Err(rejected().await),
    }
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

/// Audits a denial for a purpose outside the token's scope and answers 403.
async fn deny_purpose(auth: &AuthState, principal: &Principal, perm: Permission) -> Response {
    let mut event = SecurityEvent::PermissionDenied { permission: perm }.to_audit(
        principal.actor(),
        auth.now_millis(),
        &principal.meta,
    );
    event.purpose = principal.purpose;
    if let Err(e) = audit(auth, &[event]).await {
        return e.into_response();
    }
    api_error(
        StatusCode::FORBIDDEN,
        "purpose_not_allowed",
        "this API token does not allow the stated purpose of use",
    )
    .into_response()
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
    passive: bool,
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
    // Disabled accounts lose their sessions; service clients never hold one (they use API
    // tokens), whatever created it.
    if staff.disabled_at_millis.is_some() || staff.roles.contains(&Role::Service) {
        let event = SecurityEvent::SessionsEndedByAdmin { user: staff.id }.to_audit(
            Actor::System {
                component: "auth".into(),
            },
            auth.now_millis(),
            meta,
        );
        if let Err(e) = auth.store().end_staff_sessions(staff.id, &event).await {
            return Err(store_error(e).into_response());
        }
        let mut r = unauthenticated().into_response();
        cookies::clear(auth, &mut r);
        return Err(r);
    }
    let principal = Principal {
        user: staff.id,
        username: staff.username,
        practice: staff.practice_id,
        roles: staff.roles,
        session: Some(record.clone()),
        token: None,
        purpose: None,
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
    // User activity restarts the idle timer; background polls do not.
    if !passive && let Err(e) = auth.store().touch_session(&record.token_hash, now).await {
        return Err(store_error(e).into_response());
    }
    Ok(principal)
}

/// Every authentication, account-administration, emergency-access and notification route with
/// its declared access. The whole product's table is [`crate::build_app`]'s.
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
        .add_passive(
            M::GET,
            "/api/auth/me",
            Access::Permission(P::OwnAccount),
            session_routes::me,
        )?
        .add(
            M::POST,
            "/api/auth/password",
            Access::Permission(P::OwnAccount),
            session_routes::change_password,
        )?
        .add(
            M::GET,
            "/api/admin/users",
            Access::Permission(P::ManageUsers),
            admin::list_users,
        )?
        .add(
            M::POST,
            "/api/admin/users",
            Access::Permission(P::ManageUsers),
            admin::create_user,
        )?
        .add(
            M::POST,
            "/api/admin/users/{id}/disable",
            Access::Permission(P::ManageUsers),
            admin::disable_user,
        )?
        .add(
            M::POST,
            "/api/admin/users/{id}/enable",
            Access::Permission(P::ManageUsers),
            admin::enable_user,
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
            "/api/admin/lockouts/unlock-address",
            Access::Permission(P::ManageLockouts),
            admin::unlock_address,
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
            privacy::break_glass,
        )?
        .add(
            M::GET,
            "/api/privacy/break-glass",
            Access::Permission(P::ReviewEmergencyAccess),
            privacy::review_list,
        )?
        .add(
            M::POST,
            "/api/privacy/break-glass/{id}/review",
            Access::Permission(P::ReviewEmergencyAccess),
            privacy::mark_reviewed,
        )?
        .add_passive(
            M::GET,
            "/api/notifications",
            Access::Permission(P::OwnAccount),
            privacy::notifications,
        )?
        .add(
            M::POST,
            "/api/notifications/{id}/delivered",
            Access::Permission(P::OwnAccount),
            privacy::mark_delivered,
        )
}

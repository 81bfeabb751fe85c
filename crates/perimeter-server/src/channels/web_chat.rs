//! The patient web chat: the widget (`GET /chat/widget.js`, `GET /chat/widget.css`), its page
//! (`GET /chat`) and the patient-side API under `/api/chat/*`.
//!
//! A chat session starts anonymous (`POST /api/chat/sessions` answers a random token, kept by
//! the browser and sent in the `x-perimeter-chat` header; the database keeps its hash). The
//! routes declared [`Access::PatientChat`] need a live session and nothing else: staff
//! cookies and API tokens do not reach them. Until the patient proves who they are (name and
//! birth date, or a code sent to the phone on file) what they write is taken in as from an
//! unverified contact and nothing from any record is shown; afterwards their messages go
//! through the same intake as SMS (classification, emergency fast path, routing) into their
//! web-chat conversation, and the stream (`GET /api/chat/stream`, server-sent events) shows
//! that conversation, staff replies included. Every failure of a verification gets the same
//! answer; failures are throttled per session and per client address (store: `web_chat.rs`).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use perimeter_domain::DataCategory;
use perimeter_store::{
    AccessContext, Channel, ChatCodeRequest, ChatLookup, ChatPolicy, ChatSession, ChatVerification,
    InboundOutcome, NewInbound, StoreError, chat_address_subject, chat_context, chat_start_subject,
    new_chat_token, parse_chat_token,
};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Notify, mpsc};

use super::{Channels, MaybeChannels, after_record, not_configured, route};
use crate::access::{Access, RouteError, Routes};
use crate::auth::{AuthState, api_error, store_error};
use crate::error::ApiError;
use crate::state::AppState;

/// The header carrying the chat session token.
pub const CHAT_HEADER: &str = "x-perimeter-chat";
/// The longest chat message accepted (characters).
pub const MAX_CHAT_CHARS: usize = 2000;
/// The largest chat request body accepted.
pub const MAX_CHAT_BODY: usize = 16 * 1024;

const WIDGET_JS: &str = include_str!("../../assets/chat/widget.js");
const WIDGET_CSS: &str = include_str!("../../assets/chat/widget.css");
const PAGE_HTML: &str = include_str!("../../assets/chat/index.html");

/// Web chat settings (`[chat]` in the configuration).
#[derive(Debug, Clone)]
pub struct ChatSettings {
    /// Session and verification limits.
    pub policy: ChatPolicy,
    /// Origins (`https://www.example-practice.org`) whose pages may embed the chat (the
    /// widget opens `/chat` in a frame). Empty: only this server's own pages.
    pub embed_origins: Vec<String>,
    /// How often an open stream looks for new messages (staff replies from any process).
    pub stream_poll: Duration,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            policy: ChatPolicy::default(),
            embed_origins: Vec::new(),
            stream_poll: Duration::from_secs(1),
        }
    }
}

/// Whether `origin` may be listed in `embed_origins`: `http(s)://host[:port]`, nothing else.
pub fn valid_embed_origin(origin: &str) -> bool {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    rest.is_some_and(|r| {
        !r.is_empty()
            && r.len() <= 253
            && r.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
    })
}

/// The Content-Security-Policy of the chat's page and assets: scripts, styles and requests
/// only from this server, no inline code, framing only by the configured origins.
pub(crate) fn chat_csp(embed_origins: &[String]) -> String {
    let mut ancestors = String::from("'self'");
    for o in embed_origins.iter().filter(|o| valid_embed_origin(o)) {
        ancestors.push(' ');
        ancestors.push_str(o);
    }
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
    )
}

/// Who is chatting, as the guard established it.
#[derive(Clone)]
pub(crate) struct ChatPrincipal {
    session: ChatSession,
    token_hash: [u8; 32],
    address: [u8; 32],
    user_agent: Option<String>,
}

impl ChatPrincipal {
    fn ctx(&self) -> AccessContext {
        chat_context(self.user_agent.clone())
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ChatPrincipal {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ChatPrincipal>()
            .cloned()
            .ok_or_else(|| no_session().into_response())
    }
}

fn no_session() -> ApiError {
    api_error(
        StatusCode::UNAUTHORIZED,
        "chat_session_required",
        "start a chat session first (POST /api/chat/sessions) and send its token in the x-perimeter-chat header",
    )
}

fn session_ended() -> ApiError {
    api_error(
        StatusCode::UNAUTHORIZED,
        "chat_session_ended",
        "this chat session has ended (inactivity, maximum length or too many failed checks); start a new one",
    )
}

/// The guard of [`Access::PatientChat`] routes: a live chat session, found by its token's
/// hash. `passive` requests (the stream) do not restart the idle timer.
pub(crate) async fn enforce(passive: bool, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let Some(hash) = parts
        .headers
        .get(CHAT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_chat_token)
    else {
        return no_session().into_response();
    };
    let auth = match crate::auth::auth_from_extensions(&parts.extensions) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let Some(channels) = parts.extensions.get::<Channels>().cloned() else {
        return not_configured().into_response();
    };
    let meta = crate::auth::request_meta(&parts);
    let policy = channels.settings().chat.policy;
    let ctx = chat_context(meta.user_agent.clone());
    let session = match auth.store().chat_session(&ctx, &policy, &hash).await {
        Ok(ChatLookup::Live(s)) => s,
        Ok(ChatLookup::Ended) => return session_ended().into_response(),
        Ok(ChatLookup::Unknown) => return no_session().into_response(),
        Err(e) => return store_error(e).into_response(),
    };
    if !passive && let Err(e) = auth.store().touch_chat_session(session.id).await {
        return store_error(e).into_response();
    }
    let address = chat_address_subject(meta.client_addr.as_deref().unwrap_or("unknown"));
    parts.extensions.insert(ChatPrincipal {
        session,
        token_hash: hash,
        address,
        user_agent: meta.user_agent,
    });
    next.run(Request::from_parts(parts, body)).await
}

/// The web chat routes with their declared access.
pub fn routes(routes: Routes) -> Result<Routes, RouteError> {
    use Method as M;
    routes
        .add(M::GET, "/chat", Access::Public, page)?
        .add(M::GET, "/chat/widget.js", Access::Public, widget_js)?
        .add(M::GET, "/chat/widget.css", Access::Public, widget_css)?
        .add(M::POST, "/api/chat/sessions", Access::Public, start)?
        .add(M::GET, "/api/chat/session", Access::PatientChat, status)?
        .add(M::DELETE, "/api/chat/session", Access::PatientChat, end)?
        .add(M::POST, "/api/chat/verify", Access::PatientChat, verify)?
        .add(M::POST, "/api/chat/code", Access::PatientChat, request_code)?
        .add(
            M::POST,
            "/api/chat/code/verify",
            Access::PatientChat,
            verify_code,
        )?
        .add(M::POST, "/api/chat/messages", Access::PatientChat, post)?
        .add(M::GET, "/api/chat/messages", Access::PatientChat, read)?
        .add_passive(M::GET, "/api/chat/stream", Access::PatientChat, stream)
}

/// `GET /chat`: the standalone chat page (it loads the widget).
async fn page() -> Response {
    crate::static_asset("text/html; charset=utf-8", None, PAGE_HTML)
}

/// `GET /chat/widget.js`: the widget (one `<script>` tag embeds it).
async fn widget_js() -> Response {
    crate::static_asset("text/javascript; charset=utf-8", None, WIDGET_JS)
}

/// `GET /chat/widget.css`: the widget's styles.
async fn widget_css() -> Response {
    crate::static_asset("text/css; charset=utf-8", None, WIDGET_CSS)
}

fn bad(code: &'static str, message: &'static str) -> Response {
    api_error(StatusCode::BAD_REQUEST, code, message).into_response()
}

/// Refuses a request whose body is not declared `application/json`.
fn json_type(headers: &HeaderMap) -> Result<(), Response> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if json_type {
        Ok(())
    } else {
        Err(api_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a request body of type application/json",
        )
        .into_response())
    }
}

fn invalid(code: &'static str, message: &'static str) -> ApiError {
    api_error(StatusCode::BAD_REQUEST, code, message)
}

/// Parses a small JSON body: at most [`MAX_CHAT_BODY`] bytes.
fn json_of<T: serde::de::DeserializeOwned>(
    body: &[u8],
    expected: &'static str,
) -> Result<T, ApiError> {
    if body.len() > MAX_CHAT_BODY {
        return Err(api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body exceeds 16 KiB",
        ));
    }
    serde_json::from_slice(body).map_err(|_| invalid("invalid_body", expected))
}

/// The checked body of `POST /api/chat/verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    /// The full name, trimmed: 1 to 200 visible characters.
    pub name: String,
    /// The birth date.
    pub birth_date: time::Date,
}

/// Reads and checks a `POST /api/chat/verify` body `{name, birth_date}` (birth date as
/// `YYYY-MM-DD`; at most [`MAX_CHAT_BODY`] bytes; the route checks the content type first).
/// Errors never quote the body.
pub fn parse_verify_body(body: &[u8]) -> Result<VerifyRequest, ApiError> {
    let v: VerifyBody = json_of(
        body,
        "expected {name, birth_date} (birth_date as YYYY-MM-DD)",
    )?;
    let name_ok = {
        let n = v.name.trim().chars().count();
        (1..=200).contains(&n) && !v.name.chars().any(crate::auth::admin::is_invisible)
    };
    if !name_ok {
        return Err(invalid(
            "invalid_name",
            "name: expected 1 to 200 visible characters",
        ));
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let Ok(birth_date) = time::Date::parse(v.birth_date.trim(), &format) else {
        return Err(invalid(
            "invalid_birth_date",
            "birth_date: expected a date as YYYY-MM-DD",
        ));
    };
    Ok(VerifyRequest {
        name: v.name.trim().to_owned(),
        birth_date,
    })
}

/// The checked body of `POST /api/chat/code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRequest {
    /// The phone number, trimmed: 7 to 15 digits with `+ - ( ) .` and spaces.
    pub phone: String,
}

/// Reads and checks a `POST /api/chat/code` body `{phone}`.
pub fn parse_code_request_body(body: &[u8]) -> Result<CodeRequest, ApiError> {
    let v: CodeRequestBody = json_of(body, "expected {phone}")?;
    if super::perimeter_crypto_phone_ok(&v.phone).is_none() {
        return Err(invalid(
            "invalid_phone",
            "phone: expected a phone number of 7 to 15 digits",
        ));
    }
    Ok(CodeRequest {
        phone: v.phone.trim().to_owned(),
    })
}

/// The checked body of `POST /api/chat/code/verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeAttempt {
    /// The code as typed, trimmed (at most 32 bytes; the store compares it).
    pub code: String,
}

/// Reads and checks a `POST /api/chat/code/verify` body `{code}`.
pub fn parse_code_body(body: &[u8]) -> Result<CodeAttempt, ApiError> {
    let v: CodeBody = json_of(body, "expected {code}")?;
    if v.code.len() > 32 {
        return Err(invalid(
            "invalid_code",
            "code: expected the 6 digits of the text message",
        ));
    }
    Ok(CodeAttempt {
        code: v.code.trim().to_owned(),
    })
}

/// The checked body of `POST /api/chat/messages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// The widget's id for this message: 1 to 31 of `A-Z a-z 0-9 - _`.
    pub client_id: String,
    /// The text as written: 1 to [`MAX_CHAT_CHARS`] characters, not blank, no control
    /// characters but new lines and tabs.
    pub text: String,
}

/// Reads and checks a `POST /api/chat/messages` body `{client_id, text}`.
pub fn parse_message_body(body: &[u8]) -> Result<ChatMessage, ApiError> {
    let v: PostBody = json_of(body, "expected {client_id, text}")?;
    if v.client_id.is_empty()
        || v.client_id.len() > 31
        || !v
            .client_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            "invalid_client_id",
            "client_id: expected 1 to 31 letters, digits, '-' or '_'",
        ));
    }
    let chars = v.text.chars().count();
    if v.text.trim().is_empty() || chars > MAX_CHAT_CHARS {
        return Err(invalid(
            "invalid_text",
            "text: expected 1 to 2000 characters",
        ));
    }
    if v.text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(invalid(
            "invalid_text",
            "text: control characters are not accepted",
        ));
    }
    Ok(ChatMessage {
        client_id: v.client_id,
        text: v.text,
    })
}

/// `POST /api/chat/sessions`: a new, unverified chat session.
async fn start(MaybeChannels(channels): MaybeChannels, auth: AuthState, req: Request) -> Response {
    let Some(channels) = channels else {
        return not_configured().into_response();
    };
    let (parts, _) = req.into_parts();
    let meta = crate::auth::request_meta(&parts);
    let store = auth.store();
    let practice = match channels.practice(store).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let (token, hash) = match new_chat_token() {
        Ok(t) => t,
        Err(e) => return store_error(e).into_response(),
    };
    let start_subject = chat_start_subject(meta.client_addr.as_deref().unwrap_or("unknown"));
    let ctx = chat_context(meta.user_agent);
    let policy = channels.settings().chat.policy;
    match store
        .start_chat_session(&ctx, practice, &hash, &policy, &start_subject)
        .await
    {
        Ok(None) => api_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_sessions",
            "too many chat sessions were started from this address; try again in a few minutes",
        )
        .into_response(),
        Ok(Some(_)) => (
            StatusCode::CREATED,
            Json(json!({
                "token": token,
                "verified": false,
                "idle_timeout_seconds": policy.idle_millis / 1000,
                "absolute_timeout_seconds": policy.absolute_millis / 1000,
            })),
        )
            .into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

fn status_body(session: &ChatSession) -> serde_json::Value {
    json!({
        "verified": session.patient.is_some(),
        "verified_by": session.verified_by,
    })
}

/// `GET /api/chat/session`: whether the session is verified (nothing from the record).
async fn status(chat: ChatPrincipal) -> Response {
    Json(status_body(&chat.session)).into_response()
}

/// `DELETE /api/chat/session`: the patient ends the chat.
async fn end(auth: AuthState, chat: ChatPrincipal) -> Response {
    match auth
        .store()
        .end_chat_session(&chat.ctx(), &chat.session)
        .await
    {
        Ok(()) => Json(json!({ "ended": true })).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

fn verification_answer(v: ChatVerification) -> Response {
    match v {
        ChatVerification::Verified(_) => Json(json!({ "verified": true })).into_response(),
        ChatVerification::Failed => api_error(
            StatusCode::UNAUTHORIZED,
            "verification_failed",
            "we could not verify these details; check them and try again, or call the practice",
        )
        .into_response(),
        ChatVerification::SessionLocked => session_ended().into_response(),
        ChatVerification::Throttled => api_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "too many attempts; wait a while and try again, or call the practice",
        )
        .into_response(),
    }
}

fn already_verified() -> Response {
    api_error(
        StatusCode::CONFLICT,
        "already_verified",
        "this chat session is already verified",
    )
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    name: String,
    birth_date: String,
}

/// `POST /api/chat/verify` `{name, birth_date}`: verification by full name and birth date
/// (`YYYY-MM-DD`).
async fn verify(
    MaybeChannels(channels): MaybeChannels,
    auth: AuthState,
    chat: ChatPrincipal,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(channels) = channels else {
        return not_configured().into_response();
    };
    if chat.session.patient.is_some() {
        return already_verified();
    }
    if let Err(r) = json_type(&headers) {
        return r;
    }
    let v = match parse_verify_body(&body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let policy = channels.settings().chat.policy;
    match auth
        .store()
        .verify_chat_identity(
            &chat.ctx(),
            &policy,
            &chat.session,
            &chat.address,
            &v.name,
            v.birth_date,
        )
        .await
    {
        Ok(v) => {
            if matches!(v, ChatVerification::Verified(_)) {
                channels.chat_wake().notify_waiters();
            }
            verification_answer(v)
        }
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeRequestBody {
    phone: String,
}

/// `POST /api/chat/code` `{phone}`: sends a one-time code to the phone on file of the patient
/// with that number. The answer is the same whether or not a code went out.
async fn request_code(
    MaybeChannels(channels): MaybeChannels,
    auth: AuthState,
    chat: ChatPrincipal,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(channels) = channels else {
        return not_configured().into_response();
    };
    if chat.session.patient.is_some() {
        return already_verified();
    }
    if let Err(r) = json_type(&headers) {
        return r;
    }
    let v = match parse_code_request_body(&body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let policy = channels.settings().chat.policy;
    let minutes = (policy.code_ttl_millis / 60_000).max(1);
    let text = move |code: &str| {
        format!(
            "Your chat verification code is {code}. It expires in {minutes} minutes. Never share it; the practice will not ask you for it."
        )
    };
    match auth
        .store()
        .request_chat_code(
            &chat.ctx(),
            &policy,
            &chat.session,
            &chat.address,
            &v.phone,
            &text,
        )
        .await
    {
        Ok(ChatCodeRequest::Throttled) => api_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "too many codes were requested; wait a while and try again, or call the practice",
        )
        .into_response(),
        Ok(r) => {
            if matches!(r, ChatCodeRequest::Sent(_)) {
                channels.inner.wake.notify_one();
            }
            (
                StatusCode::ACCEPTED,
                Json(json!({
                    "message": "if this number is on file with the practice, a code is on its way by text message",
                    "expires_in_seconds": policy.code_ttl_millis / 1000,
                })),
            )
                .into_response()
        }
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    code: String,
}

/// `POST /api/chat/code/verify` `{code}`.
async fn verify_code(
    MaybeChannels(channels): MaybeChannels,
    auth: AuthState,
    chat: ChatPrincipal,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(channels) = channels else {
        return not_configured().into_response();
    };
    if chat.session.patient.is_some() {
        return already_verified();
    }
    if let Err(r) = json_type(&headers) {
        return r;
    }
    let v = match parse_code_body(&body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let policy = channels.settings().chat.policy;
    match auth
        .store()
        .verify_chat_code(&chat.ctx(), &policy, &chat.session, &chat.address, &v.code)
        .await
    {
        Ok(v) => {
            if matches!(v, ChatVerification::Verified(_)) {
                channels.chat_wake().notify_waiters();
            }
            verification_answer(v)
        }
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostBody {
    /// The widget's id for this message (a retry with the same id is stored once).
    client_id: String,
    text: String,
}

/// Runs the intake pipeline for one chat message and stores it.
async fn intake(
    channels: &Channels,
    state: &AppState,
    auth: &AuthState,
    chat: &ChatPrincipal,
    client_id: &str,
    text: String,
) -> Result<InboundOutcome, StoreError> {
    let (routing, category) = route(channels, state, &text);
    let emergency = routing.emergency;
    let triage = routing.triage();
    let reminder_reply = (perimeter_workflows::parse_reminder_reply(&text)
        != perimeter_workflows::ReminderReply::Other)
        .then(|| text.clone());
    let m = NewInbound {
        practice: chat.session.practice,
        channel: Channel::WebChat,
        provider_id: format!("{}_{client_id}", chat.session.id.simple()),
        from: String::new(),
        body: text,
        category: if chat.session.patient.is_some() {
            category
        } else {
            DataCategory::ClinicalMessage
        },
        keyword: None,
        routing,
        emergency_reply: emergency.then(|| channels.settings().texts.emergency.clone()),
        alert_roles: if emergency {
            channels.settings().alert_roles.clone()
        } else {
            Vec::new()
        },
    };
    let ctx = chat.ctx();
    let store = auth.store();
    let out = store.record_web_chat(&ctx, &chat.session, &m).await?;
    state.metrics().channel_event(if out.duplicate {
        "inbound_duplicate"
    } else {
        "inbound_stored"
    });
    after_record(
        channels,
        state,
        store,
        &ctx,
        &out,
        reminder_reply.as_deref(),
        triage,
    )
    .await;
    Ok(out)
}

/// `POST /api/chat/messages` `{client_id, text}`: the patient writes. Answered once stored;
/// an emergency's practice-approved message comes back in the answer, to show at once.
async fn post(
    State(state): State<AppState>,
    MaybeChannels(channels): MaybeChannels,
    auth: AuthState,
    chat: ChatPrincipal,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(channels) = channels else {
        return not_configured().into_response();
    };
    if let Err(r) = json_type(&headers) {
        return r;
    }
    let v = match parse_message_body(&body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    match intake(&channels, &state, &auth, &chat, &v.client_id, v.text).await {
        Ok(out) => {
            channels.chat_wake().notify_waiters();
            (
                if out.duplicate {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
                Json(json!({
                    "receipt": out.receipt,
                    "duplicate": out.duplicate,
                    "verified": out.patient.is_some(),
                    "emergency": out.emergency,
                    "emergency_message": out
                        .emergency
                        .then(|| channels.settings().texts.emergency.clone()),
                })),
            )
                .into_response()
        }
        Err(StoreError::NotFound { .. }) => session_ended().into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    after: Option<String>,
}

fn valid_cursor(c: &Option<String>) -> bool {
    c.as_ref().is_none_or(|c| {
        c.len() <= 80
            && c.bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_')
    })
}

/// `GET /api/chat/messages?after=CURSOR`: the verified patient's web-chat messages (an
/// unverified session gets an empty list).
async fn read(auth: AuthState, chat: ChatPrincipal, Query(q): Query<ReadQuery>) -> Response {
    if !valid_cursor(&q.after) {
        return bad(
            "invalid_after",
            "after: expected a cursor from an earlier read",
        );
    }
    match auth
        .store()
        .chat_messages(&chat.ctx(), &chat.session, q.after.as_deref())
        .await
    {
        Ok(messages) => Json(json!({
            "verified": chat.session.patient.is_some(),
            "messages": messages,
        }))
        .into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// The events of one stream, from its producer task.
struct EventStream(mpsc::Receiver<Event>);

impl futures_core::Stream for EventStream {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|e| e.map(Ok))
    }
}

/// `GET /api/chat/stream?after=CURSOR`: server-sent events. `status` (verified or not) first
/// and on every change; `message` for each message of the verified patient's web-chat
/// conversation (the cursor in its `id`); `end` when the session ends.
async fn stream(
    MaybeChannels(channels): MaybeChannels,
    auth: AuthState,
    chat: ChatPrincipal,
    headers: HeaderMap,
    Query(q): Query<ReadQuery>,
) -> Response {
    let Some(channels) = channels else {
        return not_configured().into_response();
    };
    // A reconnecting EventSource states where it was in Last-Event-ID.
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(q.after);
    if !valid_cursor(&after) {
        return bad(
            "invalid_after",
            "after: expected a cursor from an earlier read",
        );
    }
    let (tx, rx) = mpsc::channel(64);
    let wake = channels.chat_wake();
    let poll = channels.settings().chat.stream_poll;
    let policy = channels.settings().chat.policy;
    tokio::spawn(produce(auth, chat, policy, wake, poll, after, tx));
    Sse::new(EventStream(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

async fn produce(
    auth: AuthState,
    chat: ChatPrincipal,
    policy: ChatPolicy,
    wake: Arc<Notify>,
    poll: Duration,
    mut cursor: Option<String>,
    tx: mpsc::Sender<Event>,
) {
    let store = auth.store();
    let ctx = chat.ctx();
    let hash = chat.token_hash;
    let mut verified: Option<bool> = None;
    loop {
        // The session as it is now: verified since, or ended.
        let session = match store.chat_session(&ctx, &policy, &hash).await {
            Ok(ChatLookup::Live(s)) => s,
            Ok(_) => {
                let _ = tx
                    .send(
                        Event::default()
                            .event("end")
                            .data(r#"{"reason":"session_ended"}"#),
                    )
                    .await;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "a chat stream could not read its session");
                let _ = tx
                    .send(
                        Event::default()
                            .event("end")
                            .data(r#"{"reason":"unavailable"}"#),
                    )
                    .await;
                return;
            }
        };
        let now_verified = session.patient.is_some();
        if verified != Some(now_verified) {
            verified = Some(now_verified);
            let ev = Event::default()
                .event("status")
                .data(status_body(&session).to_string());
            if tx.send(ev).await.is_err() {
                return;
            }
        }
        if now_verified {
            match store.chat_messages(&ctx, &session, cursor.as_deref()).await {
                Ok(messages) => {
                    for m in messages {
                        let data = serde_json::to_string(&m).unwrap_or_default();
                        let ev = Event::default()
                            .event("message")
                            .id(m.cursor.clone())
                            .data(data);
                        cursor = Some(m.cursor);
                        if tx.send(ev).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a chat stream could not read its messages");
                    let _ = tx
                        .send(
                            Event::default()
                                .event("end")
                                .data(r#"{"reason":"unavailable"}"#),
                        )
                        .await;
                    return;
                }
            }
        }
        tokio::select! {
            () = tx.closed() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embed_origins_are_origins_and_nothing_else() {
        for good in [
            "https://www.example-practice.org",
            "http://localhost:8000",
            "https://a-b.c",
        ] {
            assert!(valid_embed_origin(good), "{good}");
        }
        for bad in [
            "",
            "https://",
            "www.example.org",
            "https://x.org/path",
            "https://x.org; script-src *",
            "https://x.org 'unsafe-inline'",
            "javascript:alert(1)",
            "*",
        ] {
            assert!(!valid_embed_origin(bad), "{bad}");
        }
    }

    #[test]
    fn the_chat_csp_allows_only_this_server_and_the_listed_frames() {
        let csp = chat_csp(&["https://www.example.org".into(), "https://x.org; a".into()]);
        assert!(
            csp.starts_with("default-src 'none'; script-src 'self';"),
            "{csp}"
        );
        assert!(
            csp.ends_with("frame-ancestors 'self' https://www.example.org"),
            "{csp}"
        );
        assert!(
            !csp.contains("unsafe") && !csp.contains("x.org; a"),
            "{csp}"
        );
    }
}

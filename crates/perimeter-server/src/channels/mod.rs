//! Patient channels over HTTP: the Twilio SMS webhook and status callback, voicemail and
//! voice-agent transcript intake, the intake pipeline (keywords, classification, routing, the
//! emergency fast path), and the staff API for intake items, contacts, representatives,
//! opt-outs and outbound message status.
//!
//! The webhooks are [`Access::Public`]: they are authenticated by the `X-Twilio-Signature`
//! (HMAC-SHA1 with the account's auth token over the public URL and the sorted parameters),
//! checked in constant time before anything is stored. A message is acknowledged (HTTP 200,
//! TwiML) only after the store's transaction holding it has committed. Without
//! `[channels.twilio]` the webhooks answer 503 `channels_not_configured`.
//!
//! Intake fails closed: when classification fails (or panics), the message is still stored
//! and routed to the fallback human queue with the failure recorded in the receipt, the audit
//! record and the `perimeter_channel_events_total{event="intake_fallback"}` metric.

// Helpers return the finished error response (as the other route modules do).
#![allow(clippy::result_large_err)]

pub mod sender;
pub mod twilio;
pub mod web_chat;

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use perimeter_audit::{Action, Actor, ObjectRef, Outcome};
use perimeter_auth::Permission;
use perimeter_domain::{DataCategory, PatientId, PracticeId, PurposeOfUse, Role};
use perimeter_store::{
    AccessContext, Channel, InboundOutcome, Keyword, NewInbound, NewRepresentative, OutboxStatus,
    RouteStatus, Routing, Store, StoreError,
};
use perimeter_workflows::{
    CarrierKeyword, ChannelTexts, ClassifyError, IntakeClass, IntakeClassifier, RoutingRules,
    carrier_keyword, queue_name, urgency_name,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};
use uuid::Uuid;

use crate::access::{Access, RouteError, Routes};
use crate::auth::{AuthState, Principal, api_error, store_error};
use crate::error::ApiError;
use crate::{App, AppState};

pub use sender::{SendError, Sender, TwilioClient, TwilioConfig};

/// The largest webhook body accepted (Twilio's are a few kilobytes).
pub const MAX_WEBHOOK_BYTES: usize = 64 * 1024;
/// The largest transcript accepted.
pub const MAX_TRANSCRIPT_CHARS: usize = 20_000;

/// Channel settings (`[channels]` in the configuration).
#[derive(Clone)]
pub struct ChannelSettings {
    /// The practice the channels serve; `None`: the database's only practice.
    pub practice: Option<PracticeId>,
    /// The Twilio account (`[channels.twilio]`); `None`: the SMS webhooks answer 503.
    pub twilio: Option<TwilioConfig>,
    /// The practice-approved automatic texts.
    pub texts: ChannelTexts,
    /// The routing rules.
    pub rules: RoutingRules,
    /// Who is alerted to an emergency (the on-call nurse and clinician roles).
    pub alert_roles: Vec<Role>,
    /// The web chat (`[chat]`).
    pub chat: web_chat::ChatSettings,
}

impl Default for ChannelSettings {
    fn default() -> Self {
        Self {
            practice: None,
            twilio: None,
            texts: ChannelTexts::default(),
            rules: RoutingRules::default(),
            alert_roles: vec![Role::Nurse, Role::Clinician],
            chat: web_chat::ChatSettings::default(),
        }
    }
}

impl std::fmt::Debug for ChannelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSettings")
            .field("practice", &self.practice)
            .field("twilio", &self.twilio)
            .finish_non_exhaustive()
    }
}

/// What the channel routes share: settings, the classifier and the sender's wake-up.
#[derive(Clone)]
pub struct Channels {
    inner: Arc<ChannelsInner>,
}

struct ChannelsInner {
    settings: ChannelSettings,
    classifier: Arc<dyn IntakeClassifier>,
    wake: Arc<Notify>,
    /// Woken when a chat session changes here (a message, a verification).
    chat_wake: Arc<Notify>,
    practice: OnceLock<PracticeId>,
    committer: OnceLock<mpsc::Sender<IntakeJob>>,
}

/// One message waiting for the intake group committer.
struct IntakeJob {
    ctx: AccessContext,
    message: NewInbound,
    reply: oneshot::Sender<Result<InboundOutcome, StoreError>>,
}

/// The most messages one intake transaction holds.
const MAX_INTAKE_BATCH: usize = 128;

/// Group commit for inbound messages: concurrent webhooks share one transaction (one fsync)
/// while the previous batch commits; each caller is answered only once its batch committed.
async fn run_committer(store: Store, mut rx: mpsc::Receiver<IntakeJob>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_INTAKE_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let (items, replies): (Vec<(AccessContext, NewInbound)>, Vec<_>) = jobs
            .into_iter()
            .map(|j| ((j.ctx, j.message), j.reply))
            .unzip();
        let results = store.record_inbound_batch(&items).await;
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Channels {
    /// Channels with `settings`, classifying with `classifier`.
    pub fn new(settings: ChannelSettings, classifier: Arc<dyn IntakeClassifier>) -> Channels {
        Channels {
            inner: Arc::new(ChannelsInner {
                practice: OnceLock::new(),
                committer: OnceLock::new(),
                settings,
                classifier,
                wake: Arc::new(Notify::new()),
                chat_wake: Arc::new(Notify::new()),
            }),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &ChannelSettings {
        &self.inner.settings
    }

    /// Woken whenever a message is queued for the sender.
    pub fn wake(&self) -> Arc<Notify> {
        self.inner.wake.clone()
    }

    /// Woken when a chat session of this process changes (open streams look again).
    pub fn chat_wake(&self) -> Arc<Notify> {
        self.inner.chat_wake.clone()
    }

    async fn practice(&self, store: &Store) -> Result<PracticeId, ApiError> {
        if let Some(p) = self
            .inner
            .settings
            .practice
            .or(self.inner.practice.get().copied())
        {
            return Ok(p);
        }
        let practices = store.list_practices().await.map_err(store_error)?;
        match practices.as_slice() {
            [one] => Ok(*self.inner.practice.get_or_init(|| one.id)),
            _ => {
                tracing::error!(
                    "channels.practice is not set and the database does not hold exactly one practice"
                );
                Err(not_configured())
            }
        }
    }

    /// Records one inbound message through the group committer (started on first use).
    async fn record(
        &self,
        store: &Store,
        ctx: &AccessContext,
        message: NewInbound,
    ) -> Result<InboundOutcome, StoreError> {
        let tx = self.inner.committer.get_or_init(|| {
            let (tx, rx) = mpsc::channel(4096);
            tokio::spawn(run_committer(store.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        let job = IntakeJob {
            ctx: ctx.clone(),
            message,
            reply,
        };
        if tx.send(job).await.is_err() {
            return Err(StoreError::Conflict);
        }
        answer.await.unwrap_or(Err(StoreError::Conflict))
    }

    /// Classifies `text`, failing closed: a panicking classifier counts as a failure.
    fn classify(&self, text: &str) -> Result<IntakeClass, ClassifyError> {
        let classifier = self.inner.classifier.clone();
        std::panic::catch_unwind(AssertUnwindSafe(|| classifier.classify(text)))
            .unwrap_or(Err(ClassifyError::Failed("classifier panicked")))
    }
}

/// The channels attached with [`App::with_channels`], if any (an extractor that never fails).
struct MaybeChannels(Option<Channels>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for MaybeChannels {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(MaybeChannels(parts.extensions.get::<Channels>().cloned()))
    }
}

impl App {
    /// Gives the channel routes their settings and classifier (without it they answer 503).
    pub fn with_channels(self, channels: Channels) -> Self {
        Self {
            router: self.router.layer(axum::Extension(channels)),
            routes: self.routes,
        }
    }
}

fn not_configured() -> ApiError {
    api_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "channels_not_configured",
        "patient channels are not configured on this server (see [channels] in the configuration)",
    )
}

/// The channel routes with their declared access.
pub fn routes(routes: Routes) -> Result<Routes, RouteError> {
    use Method as M;
    use Permission as P;
    web_chat::routes(routes)?
        .add(M::POST, "/webhooks/twilio/sms", Access::Public, sms_webhook)?
        .add(
            M::POST,
            "/webhooks/twilio/status",
            Access::Public,
            status_webhook,
        )?
        .add(
            M::POST,
            "/api/intake/voicemail",
            Access::Permission(P::IngestChannel),
            voicemail,
        )?
        .add(
            M::GET,
            "/api/intake/inbound",
            Access::Permission(P::ViewQueue),
            list_inbound,
        )?
        .add(
            M::POST,
            "/api/intake/inbound/{id}/patient",
            Access::Permission(P::RegisterPatient),
            assign_patient,
        )?
        .add(
            M::POST,
            "/api/intake/inbound/{id}/resolve",
            Access::Permission(P::TriageConversation),
            resolve_inbound,
        )?
        .add(
            M::GET,
            "/api/channels/contacts",
            Access::Permission(P::RegisterPatient),
            list_contacts,
        )?
        .add(
            M::GET,
            "/api/channels/opt-outs",
            Access::Permission(P::ManageChannels),
            list_opt_outs,
        )?
        .add(
            M::POST,
            "/api/channels/opt-outs/lookup",
            Access::Permission(P::ManageChannels),
            lookup_opt_out,
        )?
        .add(
            M::GET,
            "/api/channels/outbox",
            Access::Permission(P::ManageChannels),
            list_outbox,
        )?
        .add(
            M::GET,
            "/api/channels/outbox/{id}",
            Access::Permission(P::ReplyToPatient),
            outbox_entry,
        )?
        .add(
            M::GET,
            "/api/patients/{id}/representatives",
            Access::Permission(P::ViewContactData),
            list_representatives,
        )?
        .add(
            M::POST,
            "/api/patients/{id}/representatives",
            Access::Permission(P::EditContactData),
            add_representative,
        )?
        .add(
            M::POST,
            "/api/patients/{id}/representatives/{rep_id}/verify",
            Access::Permission(P::EditContactData),
            verify_representative,
        )?
        .add(
            M::DELETE,
            "/api/patients/{id}/representatives/{rep_id}",
            Access::Permission(P::EditContactData),
            revoke_representative,
        )
}

fn context(principal: &Principal, purpose: PurposeOfUse) -> AccessContext {
    principal.access_context(purpose)
}

fn webhook_context(headers: &HeaderMap) -> AccessContext {
    let mut ctx = AccessContext::system("channel_intake");
    ctx.user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().filter(|c| !c.is_control()).take(200).collect());
    ctx
}

fn bad(code: &'static str, message: &'static str) -> Response {
    api_error(StatusCode::BAD_REQUEST, code, message).into_response()
}

fn twiml_response(text: Option<&str>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=utf-8"),
        )],
        twilio::twiml(text),
    )
        .into_response()
}

/// The store's keyword for a carrier keyword.
fn store_keyword(k: CarrierKeyword) -> Keyword {
    match k {
        CarrierKeyword::Stop => Keyword::Stop,
        CarrierKeyword::Start => Keyword::Start,
        CarrierKeyword::Help => Keyword::Help,
    }
}

fn workflow_keyword(k: Keyword) -> CarrierKeyword {
    match k {
        Keyword::Stop => CarrierKeyword::Stop,
        Keyword::Start => CarrierKeyword::Start,
        Keyword::Help => CarrierKeyword::Help,
    }
}

/// Reads a webhook body: at most [`MAX_WEBHOOK_BYTES`] (413 beyond), form-encoded (415
/// otherwise).
async fn read_form(req: Request) -> Result<(HeaderMap, String, twilio::Form), Response> {
    let (parts, body) = req.into_parts();
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !is_form {
        return Err(api_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a request body of type application/x-www-form-urlencoded",
        )
        .into_response());
    }
    let bytes: Bytes = axum::body::to_bytes(body, MAX_WEBHOOK_BYTES)
        .await
        .map_err(|_| {
            api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the webhook body exceeds 64 KiB",
            )
            .into_response()
        })?;
    let form = twilio::Form::parse(&bytes).map_err(|e| {
        api_error(
            StatusCode::BAD_REQUEST,
            "malformed_form",
            match e {
                twilio::FormError::TooManyParams => "the form body has more than 200 parameters",
                _ => "the form body is not valid UTF-8 form encoding",
            },
        )
        .into_response()
    })?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    Ok((parts.headers, path_and_query, form))
}

/// Checks the signature; a failure is audited (no content) and answered 403.
async fn check_signature(
    store: &Store,
    state: &AppState,
    config: &TwilioConfig,
    headers: &HeaderMap,
    path_and_query: &str,
    form: &twilio::Form,
    endpoint: &'static str,
) -> Result<(), Response> {
    let url = format!(
        "{}{}",
        config.public_base_url.trim_end_matches('/'),
        path_and_query
    );
    let given = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if twilio::verify(config.auth_token.as_bytes(), &url, form, given) {
        return Ok(());
    }
    state.metrics().channel_event("bad_signature");
    let mut event = webhook_context(headers).event(
        state.clock().now_millis(),
        Action::Execute,
        ObjectRef {
            kind: "webhook".into(),
            id: Some(endpoint.into()),
        },
        None,
        Vec::new(),
        Some(if given.is_empty() {
            "signature_missing"
        } else {
            "signature_invalid"
        }),
    );
    event.actor = Actor::Anonymous;
    event.outcome = Outcome::Denied;
    if let Err(e) = store.append_audit(&[event]).await {
        tracing::error!(error = %e, "could not audit a refused webhook");
    }
    Err(api_error(
        StatusCode::FORBIDDEN,
        "bad_signature",
        "the X-Twilio-Signature header is missing or does not match",
    )
    .into_response())
}

/// The routing decision for a non-keyword message, failing closed.
fn route(channels: &Channels, state: &AppState, body: &str) -> (Routing, DataCategory) {
    let received = state.clock().now();
    let class = if body.trim().is_empty() {
        Err(ClassifyError::Failed("empty message"))
    } else {
        channels.classify(body)
    };
    let d = channels.settings().rules.decide(class, received);
    if d.failure.is_some() {
        state.metrics().channel_event("intake_fallback");
        tracing::warn!(
            code = d.failure.unwrap_or("unknown"),
            "intake classification failed; routed to the fallback queue"
        );
    }
    if d.emergency {
        state.metrics().channel_event("intake_emergency");
    }
    let due = d.due.unix_timestamp_nanos() / 1_000_000;
    (
        Routing {
            intent: d.intent.map(|i| i.as_str()),
            urgency: Some(urgency_name(d.urgency)),
            queue: queue_name(d.queue),
            priority: d.priority,
            due_at_millis: i64::try_from(due).ok(),
            emergency: d.emergency,
            status: if d.failure.is_some() {
                RouteStatus::Fallback
            } else {
                RouteStatus::Routed
            },
            failure: d.failure,
        },
        if d.clinical {
            DataCategory::ClinicalMessage
        } else {
            DataCategory::AdministrativeMessage
        },
    )
}

/// After a message is stored, for one the store did not queue for staff itself (a bare `C` /
/// `R`): a reply to an appointment reminder is recorded (`C` confirms it and makes no staff
/// work; `R` asks to reschedule and the store puts the conversation in the scheduling queue);
/// with no reminder awaiting a reply, the conversation is queued here. The message is durable
/// and routed on its receipt already: if this step fails, staff still find it in the intake
/// list, and the failure is counted and logged (no content).
pub(crate) async fn after_record(
    channels: &Channels,
    state: &AppState,
    store: &Store,
    ctx: &AccessContext,
    out: &InboundOutcome,
    reminder_reply: Option<&str>,
    triage: Option<perimeter_store::Triage>,
) {
    let (false, false, Some(conversation)) = (out.duplicate, out.work_queued, out.conversation)
    else {
        return;
    };
    if let Some(text) = reminder_reply {
        match store
            .record_reminder_reply(ctx, conversation, text, &channels.settings().rules.levels)
            .await
        {
            Ok(Some((_, reply))) => {
                state.metrics().channel_event(match reply {
                    perimeter_workflows::ReminderReply::Confirm => "reminder_confirmed",
                    _ => "reminder_reschedule",
                });
                return;
            }
            Ok(None) => {}
            Err(e) => {
                state.metrics().channel_event("reminder_reply_failed");
                tracing::warn!(error = %e, "a reminder reply could not be recorded; the message goes to the work queue");
            }
        }
    }
    if let Some(triage) = triage
        && let Err(e) = store.set_triage(ctx, conversation, &triage).await
    {
        state.metrics().channel_event("work_queue_failed");
        tracing::warn!(error = %e, "an inbound conversation could not be put in its work queue");
    }
}

/// Runs the intake pipeline for one message and stores it (one transaction).
#[allow(clippy::too_many_arguments)]
async fn intake(
    channels: &Channels,
    state: &AppState,
    store: &Store,
    ctx: &AccessContext,
    practice: PracticeId,
    channel: Channel,
    provider_id: String,
    from: String,
    body: String,
    keywords: bool,
) -> Result<InboundOutcome, StoreError> {
    let keyword = if keywords {
        carrier_keyword(&body)
    } else {
        None
    };
    let (routing, category) = match keyword {
        Some(_) => (
            Routing {
                intent: None,
                urgency: None,
                queue: queue_name(channels.settings().rules.fallback_queue),
                priority: 2,
                due_at_millis: None,
                emergency: false,
                status: RouteStatus::Keyword,
                failure: None,
            },
            DataCategory::AdministrativeMessage,
        ),
        None => route(channels, state, &body),
    };
    let emergency = routing.emergency;
    let triage = routing.triage();
    // The store queues the conversation for staff in the message's transaction, except a bare
    // `C` / `R`, which may answer an appointment reminder: kept to be checked once stored.
    let reminder_reply = (keyword.is_none()
        && perimeter_workflows::parse_reminder_reply(&body)
            != perimeter_workflows::ReminderReply::Other)
        .then(|| body.clone());
    let m = NewInbound {
        practice,
        channel,
        provider_id,
        from,
        body,
        category,
        keyword: keyword.map(store_keyword),
        routing,
        emergency_reply: emergency.then(|| channels.settings().texts.emergency.clone()),
        alert_roles: if emergency {
            channels.settings().alert_roles.clone()
        } else {
            Vec::new()
        },
    };
    let out = channels.record(store, ctx, m).await?;
    state.metrics().channel_event(if out.duplicate {
        "inbound_duplicate"
    } else {
        "inbound_stored"
    });
    after_record(
        channels,
        state,
        store,
        ctx,
        &out,
        reminder_reply.as_deref(),
        triage,
    )
    .await;
    if out.reply_outbox.is_some() && !out.duplicate {
        channels.inner.wake.notify_one();
    }
    Ok(out)
}

/// `POST /webhooks/twilio/sms`: an inbound SMS (see the module documentation).
async fn sms_webhook(
    State(state): State<AppState>,
    MaybeChannels(channels): MaybeChannels,
    auth: AuthState,
    req: Request,
) -> Response {
    let Some(channels) = channels else {
        return not_configured().into_response();
    };
    let Some(config) = channels.settings().twilio.clone() else {
        return not_configured().into_response();
    };
    let (headers, pq, form) = match read_form(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let store = auth.store();
    if let Err(r) =
        check_signature(store, &state, &config, &headers, &pq, &form, "twilio_sms").await
    {
        return r;
    }
    let sms = match twilio::InboundSms::from_form(&form) {
        Ok(s) => s,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "malformed_webhook",
                match e {
                    twilio::FormError::Missing("MessageSid") => "MessageSid is missing",
                    twilio::FormError::Missing("From") => "From is missing",
                    twilio::FormError::Missing(_) => "a required parameter is missing",
                    twilio::FormError::Repeated(_) => "a parameter is repeated",
                    twilio::FormError::Malformed("From") => {
                        "From: expected a phone number of 7 to 15 digits"
                    }
                    twilio::FormError::Malformed(_) => "a parameter is malformed",
                    _ => "the webhook body is malformed",
                },
            )
            .into_response();
        }
    };
    if sms.body.chars().count() > MAX_TRANSCRIPT_CHARS {
        return api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Body exceeds 20000 characters",
        )
        .into_response();
    }
    let practice = match channels.practice(store).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let ctx = webhook_context(&headers);
    let out = match intake(
        &channels,
        &state,
        store,
        &ctx,
        practice,
        Channel::Sms,
        sms.message_sid,
        sms.from,
        sms.body,
        true,
    )
    .await
    {
        Ok(o) => o,
        Err(e) => return store_error(e).into_response(),
    };
    let reply = out
        .keyword
        .map(|k| channels.settings().texts.keyword_reply(workflow_keyword(k)));
    twiml_response(reply)
}

/// `POST /webhooks/twilio/status`: a delivery status callback for a sent message.
async fn status_webhook(
    State(state): State<AppState>,
    MaybeChannels(channels): MaybeChannels,
    auth: AuthState,
    req: Request,
) -> Response {
    let Some(channels) = channels else {
        return not_configured().into_response();
    };
    let Some(config) = channels.settings().twilio.clone() else {
        return not_configured().into_response();
    };
    let (headers, pq, form) = match read_form(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let store = auth.store();
    if let Err(r) = check_signature(
        store,
        &state,
        &config,
        &headers,
        &pq,
        &form,
        "twilio_status",
    )
    .await
    {
        return r;
    }
    let cb = match twilio::StatusCallback::from_form(&form) {
        Ok(c) => c,
        Err(_) => {
            return bad(
                "malformed_webhook",
                "expected MessageSid and MessageStatus parameters",
            );
        }
    };
    let Some(status) = OutboxStatus::parse(&cb.status) else {
        // Statuses this build does not track (e.g. "scheduled"): acknowledged, nothing changed.
        return twiml_response(None);
    };
    match store
        .update_sms_status(&cb.message_sid, status, cb.error_code.as_deref())
        .await
    {
        Ok(_) => twiml_response(None),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VoicemailBody {
    caller: String,
    transcript: String,
    #[serde(with = "time::serde::rfc3339")]
    started_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    ended_at: time::OffsetDateTime,
    call_id: String,
}

#[derive(Serialize)]
struct IntakeAnswer {
    receipt: Uuid,
    duplicate: bool,
    queue: Option<String>,
    priority: i64,
    emergency: bool,
    needs_patient: bool,
    route_status: RouteStatus,
}

const AUDIO_FIELDS: [&str; 8] = [
    "audio",
    "audio_url",
    "audio_base64",
    "recording",
    "recording_url",
    "media",
    "media_url",
    "wav",
];

/// A voicemail or voice-agent transcript as `POST /api/intake/voicemail` takes it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voicemail {
    /// The caller's number: 7 to 15 digits with `+ - ( ) .` and spaces.
    pub caller: String,
    /// The transcript: 1 to [`MAX_TRANSCRIPT_CHARS`] characters, not blank.
    pub transcript: String,
    /// When the call started.
    pub started_at: time::OffsetDateTime,
    /// When it ended (not before it started).
    pub ended_at: time::OffsetDateTime,
    /// The telephony provider's call id: 1 to 64 of `A-Z a-z 0-9 - _`.
    pub call_id: String,
}

/// Reads and checks a `POST /api/intake/voicemail` body (the route checks the content type
/// and the server the body limit first): `{caller, transcript, started_at, ended_at (RFC
/// 3339), call_id}` and nothing else; a field naming audio or a recording is refused as such.
/// Errors never quote the body.
pub fn parse_voicemail_body(body: &[u8]) -> Result<Voicemail, ApiError> {
    let invalid = |code, message| api_error(StatusCode::BAD_REQUEST, code, message);
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Err(invalid("invalid_json", "the body is not valid JSON"));
    };
    if let Some(obj) = value.as_object()
        && obj
            .keys()
            .any(|k| AUDIO_FIELDS.contains(&k.to_ascii_lowercase().as_str()))
    {
        return Err(api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "audio_not_accepted",
            "raw audio and recording references are never accepted; send the transcript only",
        ));
    }
    let Ok(v) = serde_json::from_value::<VoicemailBody>(value) else {
        return Err(invalid(
            "invalid_voicemail",
            "expected {caller, transcript, started_at, ended_at (RFC 3339), call_id} and nothing else",
        ));
    };
    if v.transcript.trim().is_empty() || v.transcript.chars().count() > MAX_TRANSCRIPT_CHARS {
        return Err(invalid(
            "invalid_transcript",
            "transcript: expected 1 to 20000 characters",
        ));
    }
    if v.ended_at < v.started_at {
        return Err(invalid(
            "invalid_times",
            "ended_at: expected a time not before started_at",
        ));
    }
    if v.call_id.is_empty()
        || v.call_id.len() > 64
        || !v
            .call_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            "invalid_call_id",
            "call_id: expected 1 to 64 letters, digits, '-' or '_'",
        ));
    }
    if perimeter_crypto_phone_ok(&v.caller).is_none() {
        return Err(invalid(
            "invalid_caller",
            "caller: expected a phone number of 7 to 15 digits",
        ));
    }
    Ok(Voicemail {
        caller: v.caller,
        transcript: v.transcript,
        started_at: v.started_at,
        ended_at: v.ended_at,
        call_id: v.call_id,
    })
}

/// `POST /api/intake/voicemail`: a voicemail or voice-agent transcript (JSON; raw audio is
/// never accepted).
async fn voicemail(
    State(state): State<AppState>,
    MaybeChannels(channels): MaybeChannels,
    auth: AuthState,
    principal: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(channels) = channels else {
        return not_configured().into_response();
    };
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return api_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected application/json with a transcript; raw audio is never accepted",
        )
        .into_response();
    }
    let v = match parse_voicemail_body(&body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let ctx = context(&principal, PurposeOfUse::Operations);
    match intake(
        &channels,
        &state,
        auth.store(),
        &ctx,
        principal.practice,
        Channel::Voice,
        v.call_id,
        v.caller,
        v.transcript,
        false,
    )
    .await
    {
        Ok(out) => (
            if out.duplicate {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            },
            Json(IntakeAnswer {
                receipt: out.receipt,
                duplicate: out.duplicate,
                queue: out.queue,
                priority: out.priority,
                emergency: out.emergency,
                needs_patient: out.needs_patient,
                route_status: out.route_status,
            }),
        )
            .into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// A phone number's digits count, or `None` when it cannot be one.
fn perimeter_crypto_phone_ok(s: &str) -> Option<usize> {
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    ((7..=15).contains(&digits)
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b' ' | b'(' | b')' | b'.')))
    .then_some(digits)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
    all: Option<bool>,
    status: Option<String>,
}

fn limit_of(q: &ListQuery) -> Result<u32, Response> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=perimeter_store::INBOUND_PAGE_LIMIT).contains(&limit) {
        return Err(bad("invalid_limit", "limit: expected 1 to 200"));
    }
    Ok(limit)
}

/// Audits a staff read of channel metadata (a standalone event).
async fn audit_read(
    auth: &AuthState,
    principal: &Principal,
    kind: &str,
    patient: Option<PatientId>,
) -> Result<(), Response> {
    let event = context(principal, PurposeOfUse::Operations).event(
        auth.now_millis(),
        Action::Read,
        ObjectRef {
            kind: kind.into(),
            id: None,
        },
        patient,
        Vec::new(),
        None,
    );
    auth.store()
        .append_audit(&[event])
        .await
        .map(|_| ())
        .map_err(|e| store_error(e).into_response())
}

#[derive(Serialize)]
struct InboundList {
    items: Vec<perimeter_store::InboundEntry>,
}

/// `GET /api/intake/inbound?limit=&all=`: intake items, emergencies first (metadata only).
async fn list_inbound(
    auth: AuthState,
    principal: Principal,
    Query(q): Query<ListQuery>,
) -> Response {
    let limit = match limit_of(&q) {
        Ok(l) => l,
        Err(r) => return r,
    };
    if let Err(r) = audit_read(&auth, &principal, "inbound_list", None).await {
        return r;
    }
    match auth
        .store()
        .list_inbound(
            perimeter_store::Scope::Staff(principal.user),
            q.all.unwrap_or(false),
            limit,
        )
        .await
    {
        Ok(items) => Json(InboundList { items }).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    patient_id: String,
}

fn uuid_path(s: &str) -> Result<Uuid, Response> {
    s.trim()
        .parse()
        .map_err(|_| bad("invalid_id", "id: expected a UUID"))
}

fn patient_path(s: &str) -> Result<PatientId, Response> {
    s.trim()
        .parse()
        .map_err(|_| bad("invalid_id", "id: expected a patient id (UUID)"))
}

/// `POST /api/intake/inbound/{id}/patient` `{patient_id}`: staff picked the patient of a
/// message from a shared, representative's or unknown number.
async fn assign_patient(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<AssignBody>,
) -> Response {
    let id = match uuid_path(&id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let patient = match patient_path(&body.patient_id) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let ctx = context(&principal, PurposeOfUse::Operations);
    match auth
        .store()
        .assign_inbound_patient(&ctx, principal.practice, id, patient)
        .await
    {
        Ok(conversation) => {
            Json(serde_json::json!({ "conversation_id": conversation })).into_response()
        }
        Err(e) => store_error(e).into_response(),
    }
}

/// `POST /api/intake/inbound/{id}/resolve`: the item was handled.
async fn resolve_inbound(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    let id = match uuid_path(&id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let ctx = context(&principal, PurposeOfUse::Operations);
    match auth
        .store()
        .resolve_inbound(&ctx, principal.practice, id)
        .await
    {
        Ok(changed) => Json(serde_json::json!({ "changed": changed })).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// `GET /api/channels/contacts`: unverified and shared-number contacts (no numbers).
async fn list_contacts(
    auth: AuthState,
    principal: Principal,
    Query(q): Query<ListQuery>,
) -> Response {
    let limit = match limit_of(&q) {
        Ok(l) => l,
        Err(r) => return r,
    };
    if let Err(r) = audit_read(&auth, &principal, "contact_list", None).await {
        return r;
    }
    match auth
        .store()
        .list_contacts(perimeter_store::Scope::Staff(principal.user), limit)
        .await
    {
        Ok(contacts) => Json(serde_json::json!({ "contacts": contacts })).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// `GET /api/channels/opt-outs?all=`: STOP records (a keyed reference, never the number).
async fn list_opt_outs(
    auth: AuthState,
    principal: Principal,
    Query(q): Query<ListQuery>,
) -> Response {
    let limit = match limit_of(&q) {
        Ok(l) => l,
        Err(r) => return r,
    };
    match auth
        .store()
        .list_opt_outs(
            perimeter_store::Scope::Staff(principal.user),
            !q.all.unwrap_or(false),
            limit,
        )
        .await
    {
        Ok(opt_outs) => Json(serde_json::json!({ "opt_outs": opt_outs })).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupBody {
    phone: String,
}

/// `POST /api/channels/opt-outs/lookup` `{phone}`: whether a number is opted out (audited).
async fn lookup_opt_out(
    auth: AuthState,
    principal: Principal,
    Json(body): Json<LookupBody>,
) -> Response {
    if perimeter_crypto_phone_ok(&body.phone).is_none() {
        return bad(
            "invalid_phone",
            "phone: expected a phone number of 7 to 15 digits",
        );
    }
    if let Err(r) = audit_read(&auth, &principal, "opt_out_lookup", None).await {
        return r;
    }
    match auth
        .store()
        .is_opted_out(perimeter_store::Scope::Staff(principal.user), &body.phone)
        .await
    {
        Ok(opted_out) => Json(serde_json::json!({ "opted_out": opted_out })).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// `GET /api/channels/outbox?status=&limit=`: outbound messages (metadata only).
async fn list_outbox(
    auth: AuthState,
    principal: Principal,
    Query(q): Query<ListQuery>,
) -> Response {
    let limit = match limit_of(&q) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => match OutboxStatus::parse(s) {
            Some(st) => Some(st),
            None => {
                return bad(
                    "invalid_status",
                    "status: expected queued, sending, sent, delivered, failed, undelivered or refused",
                );
            }
        },
    };
    match auth
        .store()
        .list_outbox(perimeter_store::Scope::Staff(principal.user), status, limit)
        .await
    {
        Ok(items) => Json(serde_json::json!({ "items": items })).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// `GET /api/channels/outbox/{id}`: one outbound message's status.
async fn outbox_entry(auth: AuthState, principal: Principal, Path(id): Path<String>) -> Response {
    let id = match uuid_path(&id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    match auth.store().outbox_entry(principal.practice, id).await {
        Ok(e) => Json(e).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// `GET /api/patients/{id}/representatives`.
async fn list_representatives(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    let patient = match patient_path(&id) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let ctx = context(&principal, PurposeOfUse::Operations);
    match auth
        .store()
        .list_representatives(&ctx, principal.practice, patient)
        .await
    {
        Ok(reps) => Json(serde_json::json!({ "representatives": reps })).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RepresentativeBody {
    name: String,
    phone: String,
    relationship: String,
    #[serde(default)]
    verified: bool,
}

/// `POST /api/patients/{id}/representatives` `{name, phone, relationship, verified}`.
async fn add_representative(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<RepresentativeBody>,
) -> Response {
    let patient = match patient_path(&id) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if body.name.chars().any(crate::auth::admin::is_invisible) {
        return bad(
            "invalid_name",
            "name: expected visible characters (no control, zero-width or direction-changing characters)",
        );
    }
    let ctx = context(&principal, PurposeOfUse::Operations);
    let rep = NewRepresentative {
        name: body.name,
        phone: body.phone,
        relationship: body.relationship,
        verified: body.verified,
    };
    match auth
        .store()
        .add_representative(
            &ctx,
            principal.practice,
            patient,
            &rep,
            Some(principal.user),
        )
        .await
    {
        Ok(id) => (StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

async fn change_representative(
    auth: AuthState,
    principal: Principal,
    id: String,
    rep: String,
    verify: bool,
) -> Response {
    let patient = match patient_path(&id) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let rep = match uuid_path(&rep) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let ctx = context(&principal, PurposeOfUse::Operations);
    match auth
        .store()
        .update_representative(
            &ctx,
            principal.practice,
            patient,
            rep,
            verify,
            principal.user,
        )
        .await
    {
        Ok(true) => Json(serde_json::json!({ "changed": true })).into_response(),
        Ok(false) => ApiError::not_found().into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// `POST /api/patients/{id}/representatives/{rep_id}/verify`.
async fn verify_representative(
    auth: AuthState,
    principal: Principal,
    Path((id, rep)): Path<(String, String)>,
) -> Response {
    change_representative(auth, principal, id, rep, true).await
}

/// `DELETE /api/patients/{id}/representatives/{rep_id}`: revokes the representative.
async fn revoke_representative(
    auth: AuthState,
    principal: Principal,
    Path((id, rep)): Path<(String, String)>,
) -> Response {
    change_representative(auth, principal, id, rep, false).await
}

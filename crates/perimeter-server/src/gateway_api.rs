//! The OpenAI-compatible endpoint for the practice's own tools, and the de-identification API.
//!
//! * `POST /v1/chat/completions` (streamed and not) and `GET /v1/models`, for service clients
//!   whose API token holds `use_gateway`. The vendor of a request is the one the registry lists
//!   its `model` under; its terms are read from the store on every request (an indexed read),
//!   so `perimeter vendors ...` changes apply to a running server at once. The HTTP client of
//!   a vendor is cached by the row's revision and key, and rebuilt when either changes.
//! * The policy ([`perimeter_gateway::decide`], purpose `developer_gateway`) issues the permit
//!   or refuses; every call that reached a vendor lookup is audited from its
//!   [`CallRecord`] (actor `ai` with vendor, model and the service client who initiated it;
//!   the data class actually sent, token counts, latency, outcome; no text). The answer is
//!   released only once its record is written; a stream's `[DONE]` only once its final record
//!   is.
//! * Errors, including the guard's 401/403 on these paths, are in OpenAI's error format
//!   ([`openai_errors`]).
//! * `POST /api/deid`: `{"text", "mode"}` to `{"text", "spans"}` (character offsets), for
//!   tokens holding `deidentify_text`; audited without text.
//! * Counters (calls by outcome, guardrail hits) go to `/metrics` with fixed label values.
//! * The model inside the perimeter (`[local_model]`, [`App::with_local_model`]) answers the
//!   requests that name its model, ahead of the registry: the policy sees it as inside the
//!   perimeter (PHI as is, no BAA needed, nothing leaves the process), and its calls are
//!   audited like any vendor's.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use perimeter_audit::{Action, Actor, AuditEvent, ObjectRef, Outcome};
use perimeter_auth::Permission;
use perimeter_domain::SharedClock;
use perimeter_gateway::wire::{ErrorBody, parse_request};
use perimeter_gateway::{
    AiPurpose, Baa, CallOutcome, CallRecord, Caller, DataClass, Decision, Gateway, GatewayConfig,
    GatewayError, HttpProvider, HttpSettings, LocalProvider, MetricsSnapshot, ModelList, Provider,
    Released, Reply, VendorConnection, VendorTerms, decide,
};
use perimeter_phi::{Engine, EngineConfig, Vault};
use perimeter_store::{KeySource, Store, Vendor, VendorClass};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::App;
use crate::access::{Access, RouteError, Routes};
use crate::auth::{AuthState, Principal};
use crate::state::AppState;

/// The process's PHI engine (built once: its automata are large and immutable).
static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();

/// The process's PHI engine, built with the default configuration unless
/// [`configure_phi_engine`] ran first.
fn engine() -> Result<Arc<Engine>, perimeter_phi::PhiError> {
    if let Some(e) = ENGINE.get() {
        return Ok(Arc::clone(e));
    }
    let e = Arc::new(Engine::new(EngineConfig::default())?);
    Ok(Arc::clone(ENGINE.get_or_init(|| e)))
}

/// Builds the process's PHI engine (used by the gateway and `/api/deid`) with
/// `phi.max_message_bytes`: larger texts are refused before any AI call. Call once at start,
/// before serving; a second call with another limit is refused.
pub fn configure_phi_engine(max_message_bytes: usize) -> Result<(), perimeter_phi::PhiError> {
    let config = EngineConfig {
        max_message_bytes,
        ..EngineConfig::default()
    };
    let e = Arc::new(Engine::new(config)?);
    let got = ENGINE.get_or_init(|| e);
    if got.config().max_message_bytes != max_message_bytes {
        return Err(perimeter_phi::PhiError::InvalidConfig {
            field: "max_message_bytes",
            expected: "to be set once, before the engine is first used",
        });
    }
    Ok(())
}

struct CachedProvider {
    revision: i64,
    key: Option<Zeroizing<String>>,
    provider: Arc<HttpProvider>,
}

/// The gateway as the server runs it: the engine, the injected clock, the vendors' HTTP
/// clients and the counters. One per application ([`AppState::gateway_api`]).
pub struct GatewayApi {
    gateway: Gateway,
    engine: Arc<Engine>,
    clock: SharedClock,
    settings: HttpSettings,
    providers: Mutex<HashMap<Uuid, CachedProvider>>,
    /// Calls refused before the gateway engine saw them (policy, vendor key, disabled).
    refused_early: AtomicU64,
    /// Calls of the de-identification API.
    deid_calls: AtomicU64,
}

impl std::fmt::Debug for GatewayApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayApi").finish_non_exhaustive()
    }
}

/// The counters `/metrics` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GatewayCounters {
    /// The engine's counters.
    pub gateway: MetricsSnapshot,
    /// Refusals before the engine (policy, missing vendor key).
    pub refused_early: u64,
    /// De-identification API calls.
    pub deid_calls: u64,
}

impl GatewayApi {
    /// A gateway over the process's engine with time from `clock`.
    pub fn new(clock: SharedClock, settings: HttpSettings) -> Result<GatewayApi, GatewayError> {
        let engine =
            engine().map_err(|_| GatewayError::Config("the PHI engine could not start"))?;
        Ok(GatewayApi {
            gateway: Gateway::new(Arc::clone(&engine), clock.clone(), GatewayConfig::default()),
            engine,
            clock,
            settings,
            providers: Mutex::new(HashMap::new()),
            refused_early: AtomicU64::new(0),
            deid_calls: AtomicU64::new(0),
        })
    }

    /// The counters now.
    pub fn counters(&self) -> GatewayCounters {
        GatewayCounters {
            gateway: self.gateway.metrics().snapshot(),
            refused_early: self.refused_early.load(Ordering::Relaxed),
            deid_calls: self.deid_calls.load(Ordering::Relaxed),
        }
    }

    /// Counts a call refused before the gateway engine saw it and writes its record; `false`
    /// when the record could not be written.
    async fn record_refusal(
        &self,
        store: &Store,
        rec: &CallRecord,
        principal: &Principal,
        call: Uuid,
    ) -> bool {
        self.refused_early.fetch_add(1, Ordering::Relaxed);
        write_record(store, &self.clock, rec, principal, call).await
    }

    /// The HTTP client for `vendor` with `key`, reused while the vendor's revision and key stay.
    fn provider(
        &self,
        vendor: &Vendor,
        key: Option<Zeroizing<String>>,
    ) -> Result<Arc<HttpProvider>, GatewayError> {
        let mut cache = self
            .providers
            .lock()
            .map_err(|_| GatewayError::Config("the vendor client cache"))?;
        if let Some(c) = cache.get(&vendor.id)
            && c.revision == vendor.revision
            && c.key.as_ref().map(|k| k.as_str()) == key.as_ref().map(|k| k.as_str())
        {
            return Ok(Arc::clone(&c.provider));
        }
        let provider = Arc::new(HttpProvider::new(
            VendorConnection {
                name: vendor.name.clone(),
                base_url: vendor.base_url.clone(),
                models: vendor.models.clone(),
                api_key: key.clone(),
                inside_perimeter: vendor.inside_perimeter,
                ca_pem: None,
            },
            self.settings.clone(),
        )?);
        cache.insert(
            vendor.id,
            CachedProvider {
                revision: vendor.revision,
                key,
                provider: Arc::clone(&provider),
            },
        );
        Ok(provider)
    }
}

fn class(c: VendorClass) -> DataClass {
    match c {
        VendorClass::None => DataClass::None,
        VendorClass::Deidentified => DataClass::Deidentified,
        VendorClass::Phi => DataClass::Phi,
    }
}

/// The policy's view of a registry entry.
pub fn vendor_terms(v: &Vendor) -> VendorTerms {
    VendorTerms {
        name: v.name.clone(),
        configured_class: class(v.data_class),
        baa: v.baa.as_ref().map(|b| Baa {
            signed: b.signed,
            expires: b.expires,
            document_ref: b.document_ref.clone(),
        }),
        inside_perimeter: v.inside_perimeter,
    }
}

/// Adds the gateway routes, each with its declared permission.
pub fn routes(routes: Routes) -> Result<Routes, RouteError> {
    routes
        .add(
            Method::POST,
            "/v1/chat/completions",
            Access::Permission(Permission::UseGateway),
            chat_completions,
        )?
        .add(
            Method::GET,
            "/v1/models",
            Access::Permission(Permission::UseGateway),
            models,
        )?
        .add(
            Method::POST,
            "/api/deid",
            Access::Permission(Permission::DeidentifyText),
            deid,
        )
}

fn openai_error(status: u16, body: &ErrorBody) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_json(),
    )
        .into_response()
}

fn gateway_error(e: &GatewayError) -> Response {
    openai_error(e.http_status(), &e.to_error_body())
}

fn unavailable() -> Response {
    openai_error(
        503,
        &ErrorBody::new(
            "the gateway is not ready (database or PHI engine); nothing was sent. Retry shortly",
            "server_error",
            None,
            Some("not_ready"),
        ),
    )
}

/// The audit event of one call record.
fn call_event(rec: &CallRecord, principal: &Principal, call: Uuid, at: i64) -> AuditEvent {
    let outcome = match rec.outcome {
        CallOutcome::Started | CallOutcome::Answered => Outcome::Success,
        CallOutcome::Blocked { .. } | CallOutcome::Refused { .. } => Outcome::Denied,
        CallOutcome::Failed { .. } => Outcome::Failure,
    };
    AuditEvent {
        at_millis: at,
        actor: Actor::Ai {
            provider: rec.vendor.clone(),
            model: rec.model.clone(),
            initiated_by: Some(principal.user),
        },
        action: if rec.class_sent.is_some() {
            Action::Disclose
        } else {
            Action::Execute
        },
        object: ObjectRef {
            kind: "ai_call".into(),
            id: Some(call.to_string()),
        },
        patient: None,
        categories: Vec::new(),
        purpose: principal.purpose,
        outcome,
        // The record holds names from the registry, enum values, counts and durations only.
        detail: Some(format!(
            "ai_call:{}",
            serde_json::to_string(rec).unwrap_or_default()
        )),
        client_addr: principal.meta.client_addr.clone(),
        user_agent: principal.meta.user_agent.clone(),
        request_id: principal.meta.request_id,
    }
}

/// Writes a call record; `true` once durable.
async fn write_record(
    store: &Store,
    clock: &SharedClock,
    rec: &CallRecord,
    principal: &Principal,
    call: Uuid,
) -> bool {
    let event = call_event(rec, principal, call, clock.now_millis());
    match store.append_audit(&[event]).await {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(error = %e, "the audit record of an AI call could not be written");
            false
        }
    }
}

fn model_not_found() -> Response {
    openai_error(
        404,
        &ErrorBody::new(
            "no enabled vendor serves the model named in the request; GET /v1/models lists the models available",
            "invalid_request_error",
            Some("model".into()),
            Some("model_not_found"),
        ),
    )
}

/// The model inside the perimeter, as the routes see it.
#[derive(Clone)]
pub(crate) struct LocalModelRoute(pub(crate) Arc<LocalProvider>);

impl App {
    /// Serves `provider` (the `[local_model]` loaded at start) on `/v1/chat/completions` for
    /// requests naming its model, and lists it on `/v1/models`.
    pub fn with_local_model(self, provider: Arc<LocalProvider>) -> Self {
        Self {
            router: self
                .router
                .layer(axum::Extension(LocalModelRoute(provider))),
            routes: self.routes,
        }
    }
}

/// Which provider answers a request: the local model, or a registry vendor.
enum Target {
    Local(Arc<LocalProvider>),
    Vendor(Box<Vendor>),
}

/// The provider that answers `target`: the local model, or the vendor's HTTP client with its
/// API key. An error is `(record code, error)` for the caller to record and answer.
async fn provider_for(
    api: &GatewayApi,
    store: &Store,
    target: &Target,
) -> Result<Arc<dyn Provider>, (&'static str, GatewayError)> {
    let vendor = match target {
        Target::Local(p) => return Ok(Arc::clone(p) as Arc<dyn Provider>),
        Target::Vendor(v) => v,
    };
    let key = match &vendor.key {
        KeySource::None => None,
        KeySource::Sealed => match store.vendor_api_key(vendor.id).await {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, "the vendor's sealed API key could not be opened");
                return Err((
                    "vendor_key_unavailable",
                    GatewayError::Config("the vendor's API key could not be opened"),
                ));
            }
        },
        KeySource::Env(var) => match std::env::var(var) {
            Ok(k) if !k.trim().is_empty() => Some(Zeroizing::new(k.trim().to_owned())),
            _ => {
                tracing::error!(
                    vendor = %vendor.name,
                    "the environment variable that holds the vendor's API key is not set"
                );
                return Err((
                    "vendor_key_unavailable",
                    GatewayError::Config(
                        "the vendor's API key environment variable is not set on the server",
                    ),
                ));
            }
        },
    };
    match api.provider(vendor, key) {
        Ok(p) => Ok(p as Arc<dyn Provider>),
        Err(e) => Err(("gateway_misconfigured", e)),
    }
}

/// The provider of `model`: the local model when it serves that name, else the enabled
/// registry vendor that lists it. `Ok(None)`: nobody serves it.
async fn resolve_target(
    local: Option<Arc<LocalProvider>>,
    store: &Store,
    model: &str,
) -> Result<Option<Target>, perimeter_store::StoreError> {
    if let Some(p) = local.filter(|p| p.model_name() == model) {
        return Ok(Some(Target::Local(p)));
    }
    Ok(match store.vendor_for_model(model).await? {
        Some(v) if v.enabled => Some(Target::Vendor(Box::new(v))),
        _ => None,
    })
}

impl Target {
    fn terms(&self) -> VendorTerms {
        match self {
            Target::Local(p) => p.terms(),
            Target::Vendor(v) => vendor_terms(v),
        }
    }
}

/// Text a model wrote for staff through the gateway (a summary, a draft reply).
#[derive(Debug)]
pub(crate) struct AiText {
    /// The text, re-identified for the staff member who asked.
    pub text: String,
    /// The vendor (`local` for the model inside the perimeter) and model.
    pub vendor: String,
    pub model: String,
    /// How the conversation reached the model (`as_is` or `pseudonymized`).
    pub sent_as: &'static str,
}

/// What a staff-side AI task sends: the purpose, the model, the instructions and the
/// conversation (minimum necessary already applied by the caller).
pub(crate) struct AssistTask<'a> {
    pub purpose: AiPurpose,
    pub model: &'a str,
    pub instructions: &'static str,
    pub transcript: &'a str,
    pub max_tokens: u32,
}

/// Runs `task` with its model on behalf of `principal`. The policy decides from the vendor's
/// terms, the purpose and the caller's roles (PHI as is under a valid BAA or inside the
/// perimeter, pseudonymised otherwise, or refused); the gateway's output guardrails apply (a
/// patient-facing purpose's answer must pass the clinical-advice check); the call is audited
/// before the text is released. Any failure is an error code, never made-up text.
pub(crate) async fn assist(
    state: &AppState,
    local: Option<Arc<LocalProvider>>,
    store: &Store,
    principal: &Principal,
    task: &AssistTask<'_>,
) -> Result<AiText, &'static str> {
    let model = task.model;
    let api = state.gateway_api().ok_or("gateway_unavailable")?;
    let target = match resolve_target(local, store, model).await {
        Ok(Some(t)) => t,
        Ok(None) => return Err("summary_model_not_served"),
        Err(e) => {
            tracing::error!(error = %e, "reading the vendor registry failed");
            return Err("registry_unavailable");
        }
    };
    let terms = target.terms();
    let clock = api.clock.clone();
    let call = Uuid::now_v7();
    let purpose = task.purpose;
    let refuse = |code: &'static str| {
        let rec = CallRecord::refused(&terms.name, model, purpose, false, code);
        let api = Arc::clone(&api);
        async move {
            api.record_refusal(store, &rec, principal, call).await;
            code
        }
    };
    let caller = Caller::Staff {
        roles: principal.roles.clone(),
    };
    let permit = match decide(purpose, &terms, DataClass::Phi, &caller, clock.now().date()) {
        Decision::Send(p) => p,
        Decision::Refuse(_) => return Err(refuse("policy_refused").await),
    };
    let sent_as = match permit.form() {
        perimeter_gateway::SendForm::AsIs => "as_is",
        _ => "pseudonymized",
    };
    let provider = match provider_for(&api, store, &target).await {
        Ok(p) => p,
        Err((code, _)) => return Err(refuse(code).await),
    };
    let body = serde_json::json!({
        "model": model,
        "max_tokens": task.max_tokens,
        "messages": [
            {"role": "system", "content": task.instructions},
            {"role": "user", "content": task.transcript},
        ],
    });
    let request = serde_json::to_vec(&body)
        .ok()
        .and_then(|b| parse_request(&b).ok())
        .ok_or("summary_request_invalid")?;
    let ready = match api.gateway.prepare(permit, request, Arc::new(Vault::new())) {
        Ok(r) => r,
        Err(f) => {
            write_record(store, &clock, &f.record, principal, call).await;
            return Err("deidentification_failed");
        }
    };
    let pending = match api.gateway.send(ready, provider.as_ref()).await {
        Ok(Reply::Complete(p)) => p,
        Ok(Reply::Stream(_)) => return Err("unexpected_stream"),
        Err(f) => {
            write_record(store, &clock, &f.record, principal, call).await;
            return Err("upstream_failed");
        }
    };
    let written = write_record(store, &clock, pending.record(), principal, call).await;
    match pending.finish(written) {
        Ok(Released::Answer(a)) => {
            let v = serde_json::to_value(a.completion()).unwrap_or_default();
            let text = v["choices"][0]["message"]["content"]
                .as_str()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or("empty_answer")?
                .to_owned();
            Ok(AiText {
                text,
                vendor: terms.name.clone(),
                model: model.to_owned(),
                sent_as,
            })
        }
        Ok(Released::Blocked(_)) => Err("guardrail_blocked"),
        Err(_) => Err("audit_not_written"),
    }
}

/// `POST /v1/chat/completions`.
async fn chat_completions(
    axum::extract::State(state): axum::extract::State<AppState>,
    local: Option<axum::Extension<LocalModelRoute>>,
    auth: AuthState,
    principal: Principal,
    body: Bytes,
) -> Response {
    let Some(api) = state.gateway_api() else {
        return unavailable();
    };
    let request = match parse_request(&body) {
        Ok(r) => r,
        Err(e) => return openai_error(400, &e.to_error_body()),
    };
    drop(body);
    let store = auth.store();
    let target = match resolve_target(local.map(|e| e.0.0), store, &request.model).await {
        Ok(Some(t)) => t,
        Ok(None) => return model_not_found(),
        Err(e) => {
            tracing::error!(error = %e, "reading the vendor registry failed");
            return unavailable();
        }
    };
    let terms = target.terms();
    let vendor_name = terms.name.clone();
    let clock = api.clock.clone();
    let call = Uuid::now_v7();
    let purpose = AiPurpose::DeveloperGateway;
    let stream = request.is_stream();
    let refuse = |code: &'static str, error: GatewayError| {
        let rec = CallRecord::refused(&vendor_name, &request.model, purpose, stream, code);
        let api = Arc::clone(&api);
        let principal = principal.clone();
        async move {
            if !api.record_refusal(store, &rec, &principal, call).await {
                return gateway_error(&GatewayError::AuditNotWritten);
            }
            gateway_error(&error)
        }
    };
    let caller = Caller::Service {
        purposes: vec![purpose],
    };
    let day = clock.now().date();
    let permit = match decide(purpose, &terms, DataClass::Phi, &caller, day) {
        Decision::Send(p) => p,
        Decision::Refuse(r) => {
            return refuse("policy_refused", GatewayError::Refused(r)).await;
        }
    };
    let provider = match provider_for(&api, store, &target).await {
        Ok(p) => p,
        Err((code, e)) => return refuse(code, e).await,
    };
    let vault = Arc::new(Vault::new());
    let ready = match api.gateway.prepare(permit, request, vault) {
        Ok(r) => r,
        Err(f) => {
            if !write_record(store, &clock, &f.record, &principal, call).await {
                return gateway_error(&GatewayError::AuditNotWritten);
            }
            return gateway_error(&f.error);
        }
    };
    let reply = match api.gateway.send(ready, provider.as_ref()).await {
        Ok(r) => r,
        Err(f) => {
            if !write_record(store, &clock, &f.record, &principal, call).await {
                return gateway_error(&GatewayError::AuditNotWritten);
            }
            return gateway_error(&f.error);
        }
    };
    match reply {
        Reply::Complete(pending) => {
            let written = write_record(store, &clock, pending.record(), &principal, call).await;
            match pending.finish(written) {
                Ok(Released::Answer(a)) => {
                    let body = a.into_body();
                    (
                        StatusCode::OK,
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static(body.content_type),
                        )],
                        body.bytes,
                    )
                        .into_response()
                }
                Ok(Released::Blocked(b)) => openai_error(422, &b.error_body()),
                Err(e) => gateway_error(&e),
            }
        }
        Reply::Stream(pending) => {
            let started = pending.record().clone();
            let written = write_record(store, &clock, &started, &principal, call).await;
            let mut live = match pending.begin(written) {
                Ok(l) => l,
                Err(e) => return gateway_error(&e),
            };
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(32);
            let store = store.clone();
            tokio::spawn(async move {
                while let Some(piece) = live.next().await {
                    if tx.send(piece).await.is_err() {
                        // The caller went away: record that, the stream is dropped.
                        let mut rec = started.clone();
                        rec.outcome = CallOutcome::Failed {
                            code: "caller_disconnected",
                            status: None,
                        };
                        write_record(&store, &clock, &rec, &principal, call).await;
                        return;
                    }
                }
                let written = match live.record() {
                    Some(rec) => write_record(&store, &clock, rec, &principal, call).await,
                    None => false,
                };
                let tail = live.finish(written);
                if !tail.is_empty() {
                    let _ = tx.send(tail).await;
                }
            });
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "text/event-stream"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                Body::from_stream(ChannelBody(rx)),
            )
                .into_response()
        }
    }
}

/// A response body fed by the relay task.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl futures_core::Stream for ChannelBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| o.map(Ok))
    }
}

/// `GET /v1/models`: the local model (when configured), then the models of the enabled
/// vendors.
async fn models(local: Option<axum::Extension<LocalModelRoute>>, auth: AuthState) -> Response {
    match auth.store().vendor_models_enabled().await {
        Ok(mut pairs) => {
            if let Some(axum::Extension(LocalModelRoute(p))) = local {
                let name = p.model_name().to_owned();
                pairs.retain(|(m, _)| *m != name);
                pairs.insert(0, (name, p.terms().name));
            }
            let list = ModelList::from_pairs(pairs.iter().map(|(m, v)| (m.as_str(), v.as_str())));
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::to_vec(&list).unwrap_or_default(),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the vendor registry failed");
            unavailable()
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeidRequest {
    text: String,
    #[serde(default)]
    mode: Option<String>,
}

#[derive(Serialize)]
struct DeidSpan {
    /// Character (code point) offsets in the input.
    start: usize,
    end: usize,
    label: String,
    /// Character offsets of the replacement in the output.
    output_start: usize,
    output_end: usize,
}

#[derive(Serialize)]
struct DeidResponse {
    text: String,
    mode: &'static str,
    spans: Vec<DeidSpan>,
}

fn deid_error(status: u16, code: &'static str, message: &'static str) -> Response {
    openai_error(
        status,
        &ErrorBody::new(message, "invalid_request_error", None, Some(code)),
    )
}

/// Character offset of byte offset `byte` in `text`.
fn char_offset(text: &str, byte: usize) -> usize {
    text.get(..byte).map_or(0, |s| s.chars().count())
}

/// `POST /api/deid`: de-identifies one text (`redact` by default, or `pseudonymize`,
/// `surrogate`, `safe-harbor`). Audited (mode, count of identifiers) without text; the result
/// is released only once the record is written.
async fn deid(
    axum::extract::State(state): axum::extract::State<AppState>,
    auth: AuthState,
    principal: Principal,
    body: Bytes,
) -> Response {
    let Some(api) = state.gateway_api() else {
        return unavailable();
    };
    let Ok(req) = serde_json::from_slice::<DeidRequest>(&body) else {
        return deid_error(
            400,
            "invalid_body",
            "expected a JSON object {\"text\": string, \"mode\": \"redact\"|\"pseudonymize\"|\"surrogate\"|\"safe-harbor\"}",
        );
    };
    drop(body);
    let mode = match req.mode.as_deref() {
        None => perimeter_phi::deid::Mode::Redact,
        Some(m) => match m.parse::<perimeter_phi::deid::Mode>() {
            Ok(m) => m,
            Err(_) => {
                return deid_error(
                    400,
                    "invalid_mode",
                    "mode: expected redact, pseudonymize, surrogate or safe-harbor",
                );
            }
        },
    };
    let spans = match api.engine.detect(&req.text) {
        Ok(s) => s,
        Err(perimeter_phi::PhiError::MessageTooLarge { .. }) => {
            return deid_error(
                413,
                "message_too_large",
                "text: too large for the PHI engine",
            );
        }
        Err(_) => {
            return openai_error(
                500,
                &ErrorBody::new(
                    "the PHI engine failed on this text; nothing was returned",
                    "server_error",
                    None,
                    Some("deidentification_failed"),
                ),
            );
        }
    };
    let vault = Vault::new();
    let options = perimeter_phi::deid::DeidOptions {
        mode,
        reference_year: api.clock.now().year(),
    };
    let out = match perimeter_phi::deid::deidentify(&req.text, &spans, &options, &vault) {
        Ok(o) => o,
        Err(_) => {
            return openai_error(
                500,
                &ErrorBody::new(
                    "de-identification failed; nothing was returned",
                    "server_error",
                    None,
                    Some("deidentification_failed"),
                ),
            );
        }
    };
    let event = AuditEvent {
        at_millis: api.clock.now_millis(),
        actor: principal.actor(),
        action: Action::Execute,
        object: ObjectRef {
            kind: "deidentification".into(),
            id: None,
        },
        patient: None,
        categories: Vec::new(),
        purpose: principal.purpose,
        outcome: Outcome::Success,
        detail: Some(format!("deid:{}:{}", mode.as_str(), out.replacements.len())),
        client_addr: principal.meta.client_addr.clone(),
        user_agent: principal.meta.user_agent.clone(),
        request_id: principal.meta.request_id,
    };
    if auth.store().append_audit(&[event]).await.is_err() {
        return gateway_error(&GatewayError::AuditNotWritten);
    }
    api.deid_calls.fetch_add(1, Ordering::Relaxed);
    let spans = out
        .replacements
        .iter()
        .map(|r| DeidSpan {
            start: char_offset(&req.text, r.input.start),
            end: char_offset(&req.text, r.input.end),
            label: serde_json::to_value(r.label)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            output_start: char_offset(&out.text, r.output.start),
            output_end: char_offset(&out.text, r.output.end),
        })
        .collect();
    axum::Json(DeidResponse {
        text: out.text.clone(),
        mode: mode.as_str(),
        spans,
    })
    .into_response()
}

fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        s if s >= 500 => "server_error",
        _ => "invalid_request_error",
    }
}

/// Rewrites the server's own error bodies (`{"error": {"code", "message"}}`, from the guard,
/// the body limit, the router) into OpenAI's format on `/v1/` paths, so OpenAI clients raise
/// them properly. Bodies already in that format pass unchanged.
pub(crate) async fn openai_errors(req: Request, next: Next) -> Response {
    let on_v1 = req.uri().path().starts_with("/v1/");
    let response = next.run(req).await;
    if !on_v1 || response.status().is_success() {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return openai_error(
            parts.status.as_u16(),
            &ErrorBody::new("internal error", "server_error", None, None),
        );
    };
    #[derive(Deserialize)]
    struct Ours {
        error: OursInner,
    }
    #[derive(Deserialize)]
    struct OursInner {
        code: String,
        message: String,
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    match serde_json::from_slice::<Ours>(&bytes) {
        Ok(o) if o.error.kind.is_none() => {
            let body = ErrorBody::new(
                o.error.message,
                openai_type(parts.status),
                None,
                Some(o.error.code.as_str()),
            )
            .to_json();
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(body))
        }
        _ => Response::from_parts(parts, Body::from(bytes)),
    }
}

//! The work queues and the human side of conversations, for the console and integrations:
//! queues, a conversation with its work state and messages, triage, assignment, status,
//! internal notes, summaries, reply drafts and their approval, templates and reminders.
//!
//! Like `patients_api.rs`, these handlers decide nothing about what a role may see: each calls
//! one store function with the caller as a [`perimeter_store::Viewer`]; the store checks the
//! permission it declares (the same the route declares), keeps the call inside the caller's
//! practice, decrypts only the categories the caller may see and audits in the same
//! transaction. Error messages are fixed texts (no request content, no PHI).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use perimeter_auth::Permission;
use perimeter_domain::{ConversationId, DataCategory, PatientId, StaffId};
use perimeter_store::{
    DraftOutcome, DraftRequest, MAX_NOTE_CHARS, MAX_REPLY_CHARS, NewTemplate, QUEUE_PAGE_LIMIT,
    TemplateKind,
};
use perimeter_workflows::{
    ConversationStatus, DraftRefusal, Intent, Queue, ServiceLevels, SummaryInput, Template,
    TemplateError, Urgency, extractive_summary,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::access::{Access, RouteError, Routes};
use crate::auth::admin::{bad, is_invisible};
use crate::auth::{AuthState, Principal};
use crate::error::ApiError;

/// The work routes with their declared access.
pub fn routes(routes: Routes) -> Result<Routes, RouteError> {
    use Method as M;
    use Permission as P;
    let p = Access::Permission;
    routes
        .add(M::GET, "/api/queues/{queue}", p(P::ViewQueue), queue)?
        .add(
            M::GET,
            "/api/conversations/{id}",
            p(P::ReadConversation),
            conversation,
        )?
        .add(
            M::POST,
            "/api/conversations/{id}/triage",
            p(P::TriageConversation),
            triage,
        )?
        .add(
            M::PUT,
            "/api/conversations/{id}/assignee",
            p(P::TriageConversation),
            assign,
        )?
        .add(
            M::DELETE,
            "/api/conversations/{id}/assignee",
            p(P::TriageConversation),
            unassign,
        )?
        .add(
            M::POST,
            "/api/conversations/{id}/status",
            p(P::CloseConversation),
            set_status,
        )?
        .add(
            M::GET,
            "/api/conversations/{id}/notes",
            p(P::ReadConversation),
            notes,
        )?
        .add(
            M::POST,
            "/api/conversations/{id}/notes",
            p(P::WriteInternalNote),
            add_note,
        )?
        .add(
            M::POST,
            "/api/conversations/{id}/summary",
            p(P::RequestAiAssist),
            summary,
        )?
        .add(
            M::GET,
            "/api/conversations/{id}/drafts",
            p(P::ReadConversation),
            drafts,
        )?
        .add(
            M::POST,
            "/api/conversations/{id}/drafts",
            p(P::RequestAiAssist),
            create_draft,
        )?
        .add(
            M::POST,
            "/api/drafts/{id}/approve",
            p(P::ApproveDraft),
            approve_draft,
        )?
        .add(
            M::POST,
            "/api/drafts/{id}/reject",
            p(P::ApproveDraft),
            reject_draft,
        )?
        .add(M::GET, "/api/templates", p(P::ManageTemplates), templates)?
        .add(
            M::POST,
            "/api/templates",
            p(P::ManageTemplates),
            create_template,
        )?
        .add(
            M::POST,
            "/api/templates/{id}/approve",
            p(P::ManageTemplates),
            approve_template,
        )?
        .add(
            M::POST,
            "/api/templates/{id}/deactivate",
            p(P::ManageTemplates),
            deactivate_template,
        )?
        .add(
            M::GET,
            "/api/patients/{id}/reminders",
            p(P::ViewAppointments),
            reminders,
        )?
        .add(
            M::POST,
            "/api/patients/{id}/reminders",
            p(P::ManageAppointments),
            schedule_reminder,
        )?
        .add(
            M::DELETE,
            "/api/reminders/{id}",
            p(P::ManageAppointments),
            cancel_reminder,
        )
}

fn bad_request(code: &'static str, message: &'static str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

fn conversation_id(text: &str) -> Result<ConversationId, ApiError> {
    text.trim()
        .parse()
        .map_err(|_| bad_request("invalid_id", "id: expected a conversation id (UUID)"))
}

fn uuid(text: &str, code: &'static str, message: &'static str) -> Result<Uuid, ApiError> {
    text.trim().parse().map_err(|_| bad_request(code, message))
}

fn unprocessable(code: &'static str, message: &'static str) -> Response {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).into_response()
}

fn refused(r: DraftRefusal) -> Response {
    let message = match r {
        DraftRefusal::NotTriaged => {
            "no draft: the conversation has no intent yet; a person must triage it first"
        }
        DraftRefusal::NotAdministrative => {
            "no draft: drafts are made only for administrative conversations (scheduling, billing, records, general, refill status); a person answers clinical and results conversations"
        }
        DraftRefusal::Emergency => {
            "no draft: the conversation is an emergency; a person answers it"
        }
    };
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, r.code(), message).into_response()
}

fn text_ok(text: &str, max: usize) -> bool {
    !text.trim().is_empty()
        && text.chars().count() <= max
        && !text.chars().any(|c| c != '\n' && is_invisible(c))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueQuery {
    offset: Option<u32>,
    limit: Option<u32>,
    include_closed: Option<bool>,
}

/// `GET /api/queues/{queue}?offset=&limit=&include_closed=`: the queue's conversations in
/// queue order (emergencies first, then urgency, then due time); metadata only.
pub(crate) async fn queue(
    auth: AuthState,
    principal: Principal,
    Path(name): Path<String>,
    Query(q): Query<QueueQuery>,
) -> Response {
    let Ok(queue) = name.parse::<Queue>() else {
        return bad(
            "invalid_queue",
            "queue: expected one of front_desk, scheduling, refills, billing, records, nurse_triage, clinician",
        );
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=QUEUE_PAGE_LIMIT).contains(&limit) {
        return bad("invalid_limit", "limit: expected 1 to 200");
    }
    let page = store!(auth.store().work_queue(
        &principal.viewer(),
        queue,
        q.include_closed.unwrap_or(false),
        q.offset.unwrap_or(0),
        limit
    ));
    Json(page).into_response()
}

/// `GET /api/conversations/{id}`: the work state and the first page of messages, each body
/// only if the caller may see its category.
pub(crate) async fn conversation(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    let id = try_resp!(conversation_id(&id));
    let viewer = principal.viewer();
    let work = store!(auth.store().work_item(&viewer, id));
    let page = store!(auth.store().view_messages(&viewer, id, None, 100));
    Json(json!({ "work": work, "thread": page })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TriageBody {
    intent: Option<String>,
    urgency: String,
    queue: String,
}

/// `POST /api/conversations/{id}/triage` `{intent?, urgency, queue}`: a person re-triages; the
/// due time restarts from now at the queue's service level.
pub(crate) async fn triage(
    settings: Option<axum::Extension<Arc<WorkSettings>>>,
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<TriageBody>,
) -> Response {
    let id = try_resp!(conversation_id(&id));
    let intent = match body.intent.as_deref().map(str::parse::<Intent>) {
        None => None,
        Some(Ok(i)) => Some(i),
        Some(Err(_)) => {
            return unprocessable(
                "invalid_intent",
                "intent: expected one of scheduling, refill, billing, records, results, clinical, emergency, general",
            );
        }
    };
    let Ok(urgency) = body.urgency.parse::<Urgency>() else {
        return unprocessable(
            "invalid_urgency",
            "urgency: expected routine, urgent or emergency",
        );
    };
    let Ok(queue) = body.queue.parse::<Queue>() else {
        return unprocessable(
            "invalid_queue",
            "queue: expected one of front_desk, scheduling, refills, billing, records, nurse_triage, clinician",
        );
    };
    let item = store!(auth.store().triage(
        &principal.viewer(),
        id,
        intent,
        urgency,
        queue,
        &settings.map(|s| s.0.levels.clone()).unwrap_or_default()
    ));
    Json(item).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssignBody {
    staff_id: String,
}

/// `PUT /api/conversations/{id}/assignee` `{staff_id}`: assigns the conversation to a member
/// of staff whose role works its queue (a clinician or nurse joins the care team).
pub(crate) async fn assign(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<AssignBody>,
) -> Response {
    let id = try_resp!(conversation_id(&id));
    let Ok(staff) = body.staff_id.trim().parse::<StaffId>() else {
        return bad(
            "invalid_staff_id",
            "staff_id: expected a staff user id (UUID)",
        );
    };
    let item = store!(auth.store().assign(&principal.viewer(), id, Some(staff)));
    Json(item).into_response()
}

/// `DELETE /api/conversations/{id}/assignee`.
pub(crate) async fn unassign(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    let id = try_resp!(conversation_id(&id));
    let item = store!(auth.store().assign(&principal.viewer(), id, None));
    Json(item).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusBody {
    status: String,
}

/// `POST /api/conversations/{id}/status` `{status}`: open, waiting_on_patient or closed.
pub(crate) async fn set_status(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<StatusBody>,
) -> Response {
    let id = try_resp!(conversation_id(&id));
    let Ok(status) = body.status.parse::<ConversationStatus>() else {
        return unprocessable(
            "invalid_status",
            "status: expected open, waiting_on_patient or closed",
        );
    };
    let item = store!(
        auth.store()
            .set_work_status(&principal.viewer(), id, status)
    );
    Json(item).into_response()
}

/// `GET /api/conversations/{id}/notes`: internal notes; bodies only of visible categories.
pub(crate) async fn notes(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    let id = try_resp!(conversation_id(&id));
    let notes = store!(auth.store().list_notes(&principal.viewer(), id));
    Json(json!({ "notes": notes })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoteBody {
    body: String,
    category: Option<String>,
}

/// `POST /api/conversations/{id}/notes` `{body, category?}`: `internal_note` (default) or
/// `clinical_message` for notes about symptoms, results or medications.
pub(crate) async fn add_note(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<NoteBody>,
) -> Response {
    let id = try_resp!(conversation_id(&id));
    let category = match body.category.as_deref().map(str::trim) {
        None | Some("internal_note") => DataCategory::InternalNote,
        Some("clinical_message") => DataCategory::ClinicalMessage,
        Some(_) => {
            return unprocessable(
                "invalid_category",
                "category: expected internal_note or clinical_message",
            );
        }
    };
    if !text_ok(&body.body, MAX_NOTE_CHARS) {
        return unprocessable(
            "invalid_body",
            "body: expected 1 to 4000 visible characters",
        );
    }
    let note = store!(
        auth.store()
            .add_note(&principal.viewer(), id, category, &body.body)
    );
    (StatusCode::CREATED, Json(note)).into_response()
}

#[derive(Serialize)]
struct SummaryResponse {
    method: &'static str,
    sentences: Vec<String>,
    messages: usize,
    withheld: usize,
    /// For `method: "ai"`: the model's summary, its vendor and model, and how the conversation
    /// was sent (`as_is`, `pseudonymized`).
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vendor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sent_as: Option<&'static str>,
    /// Why the AI summary was not used (the extractive one is given instead).
    #[serde(skip_serializing_if = "Option::is_none")]
    ai_error: Option<&'static str>,
}

/// The practice's settings for staff work: service levels (`[service_levels]`) and AI
/// assistance (`[assist]`).
#[derive(Debug, Clone, Default)]
pub struct WorkSettings {
    /// A model served by a registered vendor or by `[local_model]` that writes coordinator
    /// summaries; `None`: summaries are extractive and local.
    pub summary_model: Option<String>,
    /// The model that drafts administrative replies for a person to approve; `None`: drafts
    /// come from approved templates only (`source: "ai"` answers 503 `ai_not_configured`).
    pub draft_model: Option<String>,
    /// How long each queue's conversations may wait (re-triage restarts the clock with these).
    pub levels: ServiceLevels,
}

impl crate::App {
    /// Uses `settings` for the work API (service levels, summaries through the gateway).
    pub fn with_work_settings(self, settings: WorkSettings) -> Self {
        Self {
            router: self.router.layer(axum::Extension(Arc::new(settings))),
            routes: self.routes,
        }
    }
}

const SUMMARY_INSTRUCTIONS: &str = "You write short summaries of patient messages for a medical practice's coordinator. In at most three sentences, say what the patient asks for and what is still open. Do not diagnose, advise, or judge urgency. Keep every name, date and placeholder exactly as written.";

const DRAFT_INSTRUCTIONS: &str = "You draft a short, polite reply from a medical practice's front office to the patient's last message, about scheduling, billing, records or refill status only. Never give medical advice, diagnoses, dosing or urgency judgements; if the patient asks for any, say a member of the care team will reply. Keep every name, date and placeholder exactly as written. Write only the reply text.";

/// The messages an AI task for `purpose` may use: only the categories the purpose allows
/// (minimum necessary), only bodies the caller may see, the most recent last, at most
/// `MAX_SUMMARY_CHARS`.
fn assist_transcript(
    purpose: perimeter_gateway::AiPurpose,
    messages: &[perimeter_store::MessageView],
) -> String {
    const MAX_SUMMARY_CHARS: usize = 8_000;
    let allowed = purpose.rule().categories;
    let mut lines: Vec<String> = Vec::new();
    let mut used = 0;
    for m in messages.iter().rev() {
        let Some(body) = m.body.as_deref() else {
            continue;
        };
        if !allowed.contains(&m.category) {
            continue;
        }
        let who = if m.direction == perimeter_store::Direction::Inbound {
            "Patient"
        } else {
            "Practice"
        };
        let line = format!("{who}: {}", body.trim());
        used += line.chars().count() + 1;
        if used > MAX_SUMMARY_CHARS && !lines.is_empty() {
            break;
        }
        lines.push(line);
    }
    lines.reverse();
    lines.join("\n")
}

/// `POST /api/conversations/{id}/summary`: a summary for the coordinator, built from the
/// messages the caller may see (withheld bodies are left out and counted). With
/// `assist.summary_model` set, the model writes it through the gateway (policy-checked,
/// pseudonymised for a vendor without a BAA, audited, re-identified for the caller); the
/// extractive summary is always given too, and alone when no model is configured or the AI
/// call fails (`ai_error` says why; nothing is made up).
pub(crate) async fn summary(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    settings: Option<axum::Extension<Arc<WorkSettings>>>,
    local: Option<axum::Extension<crate::gateway_api::LocalModelRoute>>,
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    let id = try_resp!(conversation_id(&id));
    let page = store!(auth.store().view_messages(
        &principal.viewer(),
        id,
        None,
        perimeter_store::MESSAGE_PAGE_LIMIT
    ));
    let inputs: Vec<SummaryInput<'_>> = page
        .messages
        .iter()
        .filter_map(|m| {
            m.body.as_deref().map(|text| SummaryInput {
                from_patient: m.direction == perimeter_store::Direction::Inbound,
                text,
            })
        })
        .collect();
    let s = extractive_summary(&inputs, 3);
    let mut out = SummaryResponse {
        method: "extractive",
        sentences: s.sentences,
        messages: s.messages,
        withheld: page.messages.iter().filter(|m| m.withheld).count(),
        summary: None,
        vendor: None,
        model: None,
        sent_as: None,
        ai_error: None,
    };
    let model = settings.and_then(|a| a.0.summary_model.clone());
    if let Some(model) = model {
        let transcript = assist_transcript(
            perimeter_gateway::AiPurpose::SummarizeForCoordinator,
            &page.messages,
        );
        if transcript.is_empty() {
            out.ai_error = Some("nothing_to_summarise");
        } else {
            let task = crate::gateway_api::AssistTask {
                purpose: perimeter_gateway::AiPurpose::SummarizeForCoordinator,
                model: &model,
                instructions: SUMMARY_INSTRUCTIONS,
                transcript: &transcript,
                max_tokens: 200,
            };
            match crate::gateway_api::assist(
                &state,
                local.map(|l| l.0.0),
                auth.store(),
                &principal,
                &task,
            )
            .await
            {
                Ok(ai) => {
                    out.method = "ai";
                    out.summary = Some(ai.text);
                    out.vendor = Some(ai.vendor);
                    out.model = Some(ai.model);
                    out.sent_as = Some(ai.sent_as);
                }
                Err(code) => {
                    tracing::warn!(
                        code,
                        "the AI summary failed; the extractive summary is given"
                    );
                    out.ai_error = Some(code);
                }
            }
        }
    }
    Json(out).into_response()
}

/// `GET /api/conversations/{id}/drafts`.
pub(crate) async fn drafts(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    let id = try_resp!(conversation_id(&id));
    let drafts = store!(auth.store().list_drafts(&principal.viewer(), id));
    Json(json!({ "drafts": drafts })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DraftBody {
    template_id: Option<String>,
    source: Option<String>,
}

/// `POST /api/conversations/{id}/drafts` `{template_id}` (or `{source: "ai"}`): a draft for
/// a person to approve, only for administrative intents (422 `draft_refused_*` otherwise,
/// recorded in the audit trail). A template an administrator let go out for the intent is
/// sent at once (status `sent`).
pub(crate) async fn create_draft(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    settings: Option<axum::Extension<Arc<WorkSettings>>>,
    local: Option<axum::Extension<crate::gateway_api::LocalModelRoute>>,
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<DraftBody>,
) -> Response {
    let id = try_resp!(conversation_id(&id));
    let viewer = principal.viewer();
    let request = match (body.template_id.as_deref(), body.source.as_deref()) {
        (Some(t), None | Some("template")) => DraftRequest::Template(try_resp!(uuid(
            t,
            "invalid_template_id",
            "template_id: expected a template id (UUID)"
        ))),
        (None, Some("ai")) => {
            // The rule first: a clinical conversation is refused (and recorded) whatever is
            // configured.
            if let Some(r) = store!(auth.store().draft_refusal(&viewer, id)) {
                return refused(r);
            }
            let Some(model) = settings.and_then(|s| s.0.draft_model.clone()) else {
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ai_not_configured",
                    "no AI vendor is configured for drafting; draft from an approved template instead",
                )
                .into_response();
            };
            let purpose = perimeter_gateway::AiPurpose::DraftAdministrativeReply;
            let page = store!(auth.store().view_messages(
                &viewer,
                id,
                None,
                perimeter_store::MESSAGE_PAGE_LIMIT
            ));
            let transcript = assist_transcript(purpose, &page.messages);
            if transcript.is_empty() {
                return unprocessable(
                    "nothing_to_answer",
                    "the conversation has no administrative message to answer",
                );
            }
            let task = crate::gateway_api::AssistTask {
                purpose,
                model: &model,
                instructions: DRAFT_INSTRUCTIONS,
                transcript: &transcript,
                max_tokens: 300,
            };
            match crate::gateway_api::assist(
                &state,
                local.map(|l| l.0.0),
                auth.store(),
                &principal,
                &task,
            )
            .await
            {
                Ok(ai) => DraftRequest::Ai(ai.text),
                // The clinical-advice check stopped the answer: a person writes this one.
                Err("guardrail_blocked") => {
                    return unprocessable(
                        "draft_blocked_by_guardrail",
                        "the AI draft did not pass the clinical-advice check; write the reply or use a template",
                    );
                }
                Err(code) => {
                    tracing::warn!(code, "an AI draft failed");
                    return ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "ai_draft_failed",
                        "the AI draft could not be made; draft from an approved template or write the reply",
                    )
                    .into_response();
                }
            }
        }
        _ => {
            return unprocessable(
                "invalid_draft_request",
                "expected {\"template_id\": UUID} or {\"source\": \"ai\"}",
            );
        }
    };
    match store!(auth.store().create_draft(&viewer, id, &request)) {
        DraftOutcome::Done(d) => (StatusCode::CREATED, Json(d)).into_response(),
        DraftOutcome::Refused(r) => refused(r),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApproveBody {
    body: Option<String>,
}

/// `POST /api/drafts/{id}/approve` `{body?}`: approves (optionally edited) and queues the
/// reply to the patient; the audit record names the approver.
pub(crate) async fn approve_draft(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<ApproveBody>,
) -> Response {
    let id = try_resp!(uuid(&id, "invalid_id", "id: expected a draft id (UUID)"));
    if let Some(text) = &body.body
        && !text_ok(text, MAX_REPLY_CHARS)
    {
        return unprocessable(
            "invalid_body",
            "body: expected 1 to 1600 visible characters",
        );
    }
    match store!(
        auth.store()
            .approve_draft(&principal.viewer(), id, body.body.as_deref())
    ) {
        DraftOutcome::Done(d) => Json(d).into_response(),
        DraftOutcome::Refused(r) => refused(r),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RejectBody {
    reason: String,
}

/// `POST /api/drafts/{id}/reject` `{reason}`: one of inaccurate, tone, not_needed,
/// needs_clinician, other.
pub(crate) async fn reject_draft(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<RejectBody>,
) -> Response {
    let id = try_resp!(uuid(&id, "invalid_id", "id: expected a draft id (UUID)"));
    let d = store!(
        auth.store()
            .reject_draft(&principal.viewer(), id, &body.reason)
    );
    Json(d).into_response()
}

/// `GET /api/templates`: every version of every template of the practice.
pub(crate) async fn templates(auth: AuthState, principal: Principal) -> Response {
    let t = store!(auth.store().list_templates(&principal.viewer()));
    Json(json!({ "templates": t })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TemplateBody {
    name: String,
    kind: String,
    body: String,
    #[serde(default)]
    auto_send_intents: Vec<String>,
}

fn template_error(e: &TemplateError) -> Response {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_template",
        e.to_string(),
    )
    .into_response()
}

/// `POST /api/templates` `{name, kind: reply|reminder, body, auto_send_intents?}`: saves a new
/// version (not approved, not active).
pub(crate) async fn create_template(
    auth: AuthState,
    principal: Principal,
    Json(body): Json<TemplateBody>,
) -> Response {
    let Ok(kind) = body.kind.parse::<TemplateKind>() else {
        return unprocessable("invalid_kind", "kind: expected reply or reminder");
    };
    if let Err(e) = Template::parse(&body.body) {
        return template_error(&e);
    }
    let mut intents = Vec::new();
    for i in &body.auto_send_intents {
        let Ok(i) = i.parse::<Intent>() else {
            return unprocessable("invalid_intent", "auto_send_intents: expected intent names");
        };
        intents.push(i);
    }
    let t = store!(auth.store().create_template(
        &principal.viewer(),
        &NewTemplate {
            name: body.name,
            kind,
            body: body.body,
            auto_send_intents: intents,
        }
    ));
    (StatusCode::CREATED, Json(t)).into_response()
}

/// `POST /api/templates/{id}/approve`: approves the version and makes it the active one.
pub(crate) async fn approve_template(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    let id = try_resp!(uuid(&id, "invalid_id", "id: expected a template id (UUID)"));
    let t = store!(auth.store().approve_template(&principal.viewer(), id));
    Json(t).into_response()
}

/// `POST /api/templates/{id}/deactivate`.
pub(crate) async fn deactivate_template(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    let id = try_resp!(uuid(&id, "invalid_id", "id: expected a template id (UUID)"));
    let t = store!(auth.store().deactivate_template(&principal.viewer(), id));
    Json(t).into_response()
}

fn patient_id(text: &str) -> Result<PatientId, ApiError> {
    text.trim()
        .parse()
        .map_err(|_| bad_request("invalid_id", "id: expected a patient id (UUID)"))
}

/// `GET /api/patients/{id}/reminders`.
pub(crate) async fn reminders(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    let id = try_resp!(patient_id(&id));
    let r = store!(auth.store().list_reminders(&principal.viewer(), id));
    Json(json!({ "reminders": r })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReminderBody {
    template_id: String,
    appointment_at: String,
    lead_hours: Option<u32>,
}

/// `POST /api/patients/{id}/reminders` `{template_id, appointment_at (RFC 3339), lead_hours?}`:
/// schedules a reminder `lead_hours` (default 24, at most 720) before the appointment.
pub(crate) async fn schedule_reminder(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<ReminderBody>,
) -> Response {
    let id = try_resp!(patient_id(&id));
    let template = try_resp!(uuid(
        &body.template_id,
        "invalid_template_id",
        "template_id: expected a template id (UUID)"
    ));
    let Ok(at) = OffsetDateTime::parse(
        body.appointment_at.trim(),
        &time::format_description::well_known::Rfc3339,
    ) else {
        return unprocessable(
            "invalid_appointment_at",
            "appointment_at: expected an RFC 3339 time such as 2026-03-02T09:30:00Z",
        );
    };
    let lead = body.lead_hours.unwrap_or(24);
    if lead > 720 {
        return unprocessable("invalid_lead_hours", "lead_hours: expected 0 to 720");
    }
    let r = store!(auth.store().schedule_reminder(
        &principal.viewer(),
        id,
        template,
        at,
        time::Duration::hours(i64::from(lead))
    ));
    (StatusCode::CREATED, Json(r)).into_response()
}

/// `DELETE /api/reminders/{id}`.
pub(crate) async fn cancel_reminder(
    auth: AuthState,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    let id = try_resp!(uuid(&id, "invalid_id", "id: expected a reminder id (UUID)"));
    let changed = store!(auth.store().cancel_reminder(&principal.viewer(), id));
    Json(json!({ "changed": changed })).into_response()
}

//! The human side of conversations: work state (queue, intent, urgency, assignee, status,
//! service level, escalation), internal notes, reply drafts and their approval, practice
//! templates, appointment reminders and the outbound replies they produce.
//!
//! Staff calls take a [`Viewer`] and declare a permission like the `view_*` functions; the
//! store reads the viewer's roles itself, keeps every call inside the viewer's practice, and
//! appends the audit record in the same transaction. Perimeter's own jobs (intake, the
//! escalation sweep, the reminder sender) take an [`AccessContext`] and check its actor in the
//! database in their transaction before they read anything: the intake's steps
//! ([`Store::set_triage`], [`Store::record_reminder_reply`]) declare `ingest_channel` like the
//! intake itself (Perimeter, or an entitled service client, `views::acting_client`; another
//! practice's conversation is not found for it; no member of staff, who re-triages through
//! [`Store::triage`]); the sweep, the reminder sender and [`Store::outbound_replies`] are
//! Perimeter's only.
//!
//! | Function | Declares |
//! |---|---|
//! | [`Store::work_queue`] | `view_queue` (and a role that works the queue) |
//! | [`Store::work_item`] | `read_conversation` |
//! | [`Store::triage`], [`Store::assign`] | `triage_conversation` |
//! | [`Store::set_work_status`] | `close_conversation` |
//! | [`Store::add_note`] / [`Store::list_notes`] | `write_internal_note` / `read_conversation` |
//! | [`Store::create_draft`] | `request_ai_assist` |
//! | [`Store::list_drafts`] | `read_conversation` |
//! | [`Store::approve_draft`], [`Store::reject_draft`] | `approve_draft` |
//! | templates | `manage_templates` |
//! | [`Store::schedule_reminder`], [`Store::cancel_reminder`] / [`Store::list_reminders`] | `manage_appointments` / `view_appointments` |

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use perimeter_audit::{Action, ObjectRef, Outcome};
use perimeter_auth::{Permission, routine_purpose};
use perimeter_crypto::{Aad, Dek, decrypt_text, encrypt_text};
use perimeter_domain::{
    ConversationId, DataCategory, MessageId, PatientId, PracticeId, Role, StaffId,
};
use perimeter_workflows::{
    ConversationStatus as WorkStatus, DraftRefusal, EscalationRules, Intent, Queue, ReminderReply,
    ReminderTier, ServiceLevels, Template, TemplateStanding, Urgency, WorkState, auto_send_allowed,
    may_draft, parse_reminder_reply,
};
use serde::Serialize;
use sqlx::any::AnyRow;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::auth::millis;
use crate::db::WriteTx;
use crate::model::{AccessContext, Direction, object};
use crate::patients::{open, patient_key};
use crate::rows::{col, id};
use crate::views::{Reader, Viewer, access_to, acting_client, insert_care, purpose_of, reader};
use crate::{Store, StoreError};

/// The most rows one page of a queue returns.
pub const QUEUE_PAGE_LIMIT: u32 = 200;
/// The longest note body, in characters.
pub const MAX_NOTE_CHARS: usize = 4000;
/// The longest reply body (draft or edited draft), in characters.
pub const MAX_REPLY_CHARS: usize = 1600;
/// Why a draft may be rejected (codes, never free text: the audit trail holds them).
pub const REJECT_REASONS: &[&str] = &[
    "inaccurate",
    "tone",
    "not_needed",
    "needs_clinician",
    "other",
];

fn parse<T: FromStr>(s: &str, what: &str) -> Result<T, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("stored {what} is not known")))
}

fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn forbidden(permission: Permission) -> StoreError {
    StoreError::Forbidden {
        permission: permission.as_str(),
    }
}

fn not_found(kind: &'static str, id: impl fmt::Display) -> StoreError {
    StoreError::NotFound {
        kind,
        id: id.to_string(),
    }
}

/// A conversation's work state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkItem {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Its patient.
    pub patient_id: PatientId,
    /// The queue it is in.
    pub queue: Queue,
    /// What it is about (absent until classified or triaged).
    pub intent: Option<Intent>,
    /// How soon a person must look.
    pub urgency: Urgency,
    /// Open, waiting on the patient, or closed.
    pub status: WorkStatus,
    /// The member of staff it is assigned to.
    pub assignee: Option<StaffId>,
    /// When its service level runs out (ms).
    pub sla_due_at_millis: Option<i64>,
    /// When it was escalated for missing it (ms).
    pub escalated_at_millis: Option<i64>,
    /// The queue it was escalated out of.
    pub escalated_from: Option<Queue>,
    /// When it entered its queue (ms).
    pub queued_at_millis: i64,
    /// Last change (ms).
    pub updated_at_millis: i64,
    /// Open and past its due time now.
    pub overdue: bool,
}

const WORK_COLUMNS: &str = "conversation_id, patient_id, queue, intent, urgency, assignee_id, status, sla_due_at, escalated_at, escalated_from, queued_at, updated_at";

fn decode_work(r: &AnyRow, now: i64) -> Result<WorkItem, StoreError> {
    let intent: Option<String> = col(r, "intent")?;
    let assignee: Option<String> = col(r, "assignee_id")?;
    let from: Option<String> = col(r, "escalated_from")?;
    let status: WorkStatus = parse(&col::<String>(r, "status")?, "status")?;
    let due: Option<i64> = col(r, "sla_due_at")?;
    Ok(WorkItem {
        conversation_id: id(&col::<String>(r, "conversation_id")?, "conversation")?,
        patient_id: id(&col::<String>(r, "patient_id")?, "patient")?,
        queue: parse(&col::<String>(r, "queue")?, "queue")?,
        intent: intent.map(|i| parse(&i, "intent")).transpose()?,
        urgency: parse(&col::<String>(r, "urgency")?, "urgency")?,
        assignee: assignee.map(|a| id(&a, "staff")).transpose()?,
        status,
        sla_due_at_millis: due,
        escalated_at_millis: col(r, "escalated_at")?,
        escalated_from: from.map(|q| parse(&q, "queue")).transpose()?,
        queued_at_millis: col(r, "queued_at")?,
        updated_at_millis: col(r, "updated_at")?,
        overdue: status == WorkStatus::Open && due.is_some_and(|d| d < now),
    })
}

/// How the intake pipeline (or a person) classified a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Triage {
    /// What it is about (`None`: classification failed; the conversation still gets a queue).
    pub intent: Option<Intent>,
    /// How soon.
    pub urgency: Urgency,
    /// Where it goes.
    pub queue: Queue,
    /// When its service level runs out (ms); `None`: no level applies.
    pub due_at_millis: Option<i64>,
}

impl Triage {
    /// A triage whose due time is the queue's service level from `from`.
    pub fn with_levels(
        intent: Option<Intent>,
        urgency: Urgency,
        queue: Queue,
        levels: &ServiceLevels,
        from: OffsetDateTime,
    ) -> Triage {
        Triage {
            intent,
            urgency,
            queue,
            due_at_millis: Some(millis(from + levels.allowed_wait(queue, urgency))),
        }
    }
}

/// One page of a queue, in queue order (emergencies first, then urgency, then due time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuePage {
    /// The queue.
    pub queue: Queue,
    /// Its conversations (metadata only: no subject, no bodies, no names).
    pub items: Vec<WorkItem>,
    /// The offset of the next page, if there is one.
    pub next_offset: Option<u32>,
    /// Open emergencies of the practice that sit in OTHER queues, oldest first (metadata
    /// only): every queue shows them above its own work, so an emergency jumps every queue
    /// until someone closes it. Not paged (at most [`QUEUE_PAGE_LIMIT`]).
    pub emergencies: Vec<WorkItem>,
}

/// An internal note as a reader may see it.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct NoteView {
    /// Its id.
    pub id: Uuid,
    /// Who wrote it.
    pub author: StaffId,
    /// `internal_note` or `clinical_message`.
    pub category: DataCategory,
    /// Written (ms).
    pub created_at_millis: i64,
    /// The text, if the reader may see its category.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body exists but is not shown to this reader.
    pub withheld: bool,
}

impl fmt::Debug for NoteView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteView")
            .field("id", &self.id)
            .field("category", &self.category)
            .field("withheld", &self.withheld)
            .finish_non_exhaustive()
    }
}

/// Where a reply draft comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum DraftRequest {
    /// Filled from a practice-approved, active reply template.
    Template(Uuid),
    /// Written by an AI through the gateway (the text after re-identification).
    Ai(String),
}

impl fmt::Debug for DraftRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DraftRequest::Template(t) => write!(f, "Template({t})"),
            DraftRequest::Ai(_) => f.write_str("Ai([PHI redacted])"),
        }
    }
}

/// A reply draft.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct DraftView {
    /// Its id.
    pub id: Uuid,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The intent it was drafted for.
    pub intent: Intent,
    /// `ai` or `template`.
    pub source: String,
    /// The template, for template drafts.
    pub template_id: Option<Uuid>,
    /// The text.
    pub body: String,
    /// `pending`, `rejected` or `sent`.
    pub status: String,
    /// Who asked for it.
    pub requested_by: Option<StaffId>,
    /// Who approved or rejected it (absent for an automatic send by template rule).
    pub decided_by: Option<StaffId>,
    /// When (ms).
    pub decided_at_millis: Option<i64>,
    /// The rejection's code.
    pub reject_reason: Option<String>,
    /// The outbound message it became.
    pub sent_message_id: Option<MessageId>,
    /// Created (ms).
    pub created_at_millis: i64,
}

impl fmt::Debug for DraftView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DraftView")
            .field("id", &self.id)
            .field("intent", &self.intent)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// What became of a draft request or approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DraftOutcome {
    /// The draft (pending, or sent when a template rule let it go out).
    Done(Box<DraftView>),
    /// Refused by the rule of what may be drafted; the refusal is in the audit trail.
    Refused(DraftRefusal),
}

/// What kind of template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateKind {
    /// A reply to a conversation.
    Reply,
    /// An appointment reminder.
    Reminder,
}

impl TemplateKind {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            TemplateKind::Reply => "reply",
            TemplateKind::Reminder => "reminder",
        }
    }
}

impl FromStr for TemplateKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.trim() {
            "reply" => Ok(TemplateKind::Reply),
            "reminder" => Ok(TemplateKind::Reminder),
            _ => Err(()),
        }
    }
}

/// A template version to save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTemplate {
    /// Its name; a new version of an existing name gets the next version number.
    pub name: String,
    /// Reply or reminder.
    pub kind: TemplateKind,
    /// The text with `{{placeholders}}`.
    pub body: String,
    /// The intents it may go out for without a person's approval (administrative ones only).
    pub auto_send_intents: Vec<Intent>,
}

/// A saved template version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateRecord {
    /// This version's id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its version (1, 2, ...).
    pub version: i64,
    /// Reply or reminder.
    pub kind: TemplateKind,
    /// The text.
    pub body: String,
    /// Intents it goes out for automatically once approved and active.
    pub auto_send_intents: Vec<Intent>,
    /// Who saved it.
    pub created_by: StaffId,
    /// When (ms).
    pub created_at_millis: i64,
    /// Who approved it.
    pub approved_by: Option<StaffId>,
    /// When (ms).
    pub approved_at_millis: Option<i64>,
    /// The version in use for its name.
    pub active: bool,
}

const TEMPLATE_COLUMNS: &str = "id, name, version, kind, body, auto_send_intents, created_by, created_at, approved_by, approved_at, active";

fn decode_template(r: &AnyRow) -> Result<TemplateRecord, StoreError> {
    let intents: String = col(r, "auto_send_intents")?;
    let approved_by: Option<String> = col(r, "approved_by")?;
    Ok(TemplateRecord {
        id: id(&col::<String>(r, "id")?, "template")?,
        name: col(r, "name")?,
        version: col(r, "version")?,
        kind: col::<String>(r, "kind")?
            .parse()
            .map_err(|_| StoreError::Corrupt("unknown template kind stored".into()))?,
        body: col(r, "body")?,
        auto_send_intents: intents
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| parse(s, "intent"))
            .collect::<Result<_, _>>()?,
        created_by: id(&col::<String>(r, "created_by")?, "staff")?,
        created_at_millis: col(r, "created_at")?,
        approved_by: approved_by.map(|a| id(&a, "staff")).transpose()?,
        approved_at_millis: col(r, "approved_at")?,
        active: col::<i64>(r, "active")? != 0,
    })
}

/// An appointment reminder.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct ReminderView {
    /// Its id.
    pub id: Uuid,
    /// The patient.
    pub patient_id: PatientId,
    /// The template version it uses.
    pub template_id: Uuid,
    /// The appointment time (ms), if the reader may see appointments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appointment_at_millis: Option<i64>,
    /// The personalisation tier (computed locally).
    pub tier: ReminderTier,
    /// When it is (or was) sent (ms).
    pub send_at_millis: i64,
    /// `scheduled`, `sent`, `confirmed`, `reschedule_requested` or `cancelled`.
    pub status: String,
    /// The conversation it was sent in.
    pub conversation_id: Option<ConversationId>,
    /// When the patient replied C or R (ms).
    pub replied_at_millis: Option<i64>,
}

impl fmt::Debug for ReminderView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReminderView")
            .field("id", &self.id)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A reminder the sender just sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentReminder {
    /// The reminder.
    pub reminder: Uuid,
    /// The conversation it went into.
    pub conversation: ConversationId,
    /// The outbound message.
    pub message: MessageId,
}

/// A conversation the sweep escalated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Escalated {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Out of this queue.
    pub from: Queue,
    /// Into this queue.
    pub to: Queue,
    /// The role notified.
    pub notify: Role,
}

/// A reply waiting for (or handed to) the channel's sender. No body: the sender reads it
/// from the message with its own internal context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboundReply {
    /// The outbound message.
    pub message_id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// `draft` or `reminder`.
    pub source: String,
    /// The draft's or reminder's id.
    pub source_id: Uuid,
    /// Who approved it (absent: sent by a template rule or the reminder schedule).
    pub approved_by: Option<StaffId>,
    /// The template it came from.
    pub template_id: Option<Uuid>,
    /// `queued`, `sent` or `failed`.
    pub status: String,
    /// Queued (ms).
    pub queued_at_millis: i64,
}

/// The practice and patient of a conversation.
/// For the intake's own steps on a conversation it just stored a message in (declares
/// `ingest_channel`, like the intake): checks the actor ([`acting_client`]: Perimeter itself,
/// or an entitled service client), then returns the conversation's practice and patient
/// (another practice's conversation is not found for a service client).
async fn intake_owner(
    w: &mut WriteTx,
    ctx: &AccessContext,
    conversation: ConversationId,
    now: i64,
) -> Result<(PracticeId, PatientId), StoreError> {
    let who = acting_client(w, ctx, Permission::IngestChannel, now).await?;
    let (practice, patient) = owner(w, conversation).await?;
    who.within(practice, "conversation", conversation)?;
    Ok((practice, patient))
}

async fn owner(
    w: &mut WriteTx,
    conversation: ConversationId,
) -> Result<(PracticeId, PatientId), StoreError> {
    let row = sqlx::query("SELECT practice_id, patient_id FROM conversation WHERE id = $1")
        .bind(conversation.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(|e| w.err(e))?
        .ok_or_else(|| not_found("conversation", conversation))?;
    Ok((
        id(&col::<String>(&row, "practice_id")?, "practice")?,
        id(&col::<String>(&row, "patient_id")?, "patient")?,
    ))
}

/// The patient of a conversation of the reader's practice (another practice's: not found).
async fn owned(
    w: &mut WriteTx,
    reader: &Reader,
    conversation: ConversationId,
) -> Result<PatientId, StoreError> {
    let (practice, patient) = owner(w, conversation).await?;
    if practice != reader.practice {
        return Err(not_found("conversation", conversation));
    }
    Ok(patient)
}

async fn load_work(
    w: &mut WriteTx,
    conversation: ConversationId,
    now: i64,
) -> Result<Option<WorkItem>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {WORK_COLUMNS} FROM conversation_work WHERE conversation_id = $1"
    ))
    .bind(conversation.to_string())
    .fetch_optional(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    row.as_ref().map(|r| decode_work(r, now)).transpose()
}

/// Mirrors the work status onto the conversation row (open / closed).
async fn mirror_status(
    w: &mut WriteTx,
    conversation: ConversationId,
    status: WorkStatus,
    now: i64,
) -> Result<(), StoreError> {
    let s = if status == WorkStatus::Closed {
        "closed"
    } else {
        "open"
    };
    sqlx::query("UPDATE conversation SET status = $2, updated_at = $3 WHERE id = $1")
        .bind(conversation.to_string())
        .bind(s)
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
    Ok(())
}

/// Inserts or updates the work row. `reopen`: the status becomes open and the escalation
/// mark is cleared (a new patient message or classification); otherwise status is kept.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn upsert_work(
    w: &mut WriteTx,
    conversation: ConversationId,
    practice: PracticeId,
    patient: PatientId,
    t: &Triage,
    reopen: bool,
    now: i64,
) -> Result<WorkItem, StoreError> {
    let existing = load_work(w, conversation, now).await?;
    match existing {
        None => {
            sqlx::query(
                "INSERT INTO conversation_work (conversation_id, practice_id, patient_id, queue, intent, urgency, priority, assignee_id, status, sla_due_at, escalated_at, escalated_from, queued_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, 'open', $8, NULL, NULL, $9, $9)",
            )
            .bind(conversation.to_string())
            .bind(practice.to_string())
            .bind(patient.to_string())
            .bind(t.queue.name())
            .bind(t.intent.map(|i| i.name()))
            .bind(t.urgency.name())
            .bind(t.urgency.rank())
            .bind(t.due_at_millis)
            .bind(now)
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        }
        Some(old) => {
            let status = if reopen { WorkStatus::Open } else { old.status };
            let queued = if old.queue == t.queue && !reopen {
                old.queued_at_millis
            } else {
                now
            };
            sqlx::query(
                "UPDATE conversation_work SET queue = $2, intent = $3, urgency = $4, priority = $5, status = $6, sla_due_at = $7, escalated_at = NULL, escalated_from = NULL, queued_at = $8, updated_at = $9 WHERE conversation_id = $1",
            )
            .bind(conversation.to_string())
            .bind(t.queue.name())
            .bind(t.intent.map(|i| i.name()))
            .bind(t.urgency.name())
            .bind(t.urgency.rank())
            .bind(status.name())
            .bind(t.due_at_millis)
            .bind(queued)
            .bind(now)
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        }
    }
    if reopen {
        mirror_status(w, conversation, WorkStatus::Open, now).await?;
    }
    load_work(w, conversation, now)
        .await?
        .ok_or_else(|| StoreError::Corrupt("work row missing after write".into()))
}

async fn set_status_in(
    w: &mut WriteTx,
    conversation: ConversationId,
    status: WorkStatus,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE conversation_work SET status = $2, updated_at = $3 WHERE conversation_id = $1",
    )
    .bind(conversation.to_string())
    .bind(status.name())
    .bind(now)
    .execute(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    mirror_status(w, conversation, status, now).await
}

/// Adds an outbound message (administrative) to a conversation inside `w` and queues it for
/// the channel's sender with who approved it.
#[allow(clippy::too_many_arguments)]
async fn queue_outbound(
    w: &mut WriteTx,
    store: &Store,
    ctx: &AccessContext,
    dek: &Dek,
    conversation: ConversationId,
    practice: PracticeId,
    patient: PatientId,
    author: Option<StaffId>,
    body: &str,
    source: (&str, Uuid),
    template: Option<Uuid>,
    now: i64,
) -> Result<MessageId, StoreError> {
    let mid = crate::conversations::insert_message(
        w,
        dek,
        conversation,
        patient,
        Direction::Outbound,
        author,
        DataCategory::AdministrativeMessage,
        body,
        now,
    )
    .await?;
    sqlx::query(
        "INSERT INTO outbound_reply (message_id, conversation_id, patient_id, practice_id, source, source_id, approved_by, template_id, status, queued_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', $9)",
    )
    .bind(mid.to_string())
    .bind(conversation.to_string())
    .bind(patient.to_string())
    .bind(practice.to_string())
    .bind(source.0)
    .bind(source.1.to_string())
    .bind(author.map(|a| a.to_string()))
    .bind(template.map(|t| t.to_string()))
    .bind(now)
    .execute(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    // A web-chat conversation's replies are delivered to the chat (the patient's stream reads
    // the conversation); nothing goes to the SMS outbox.
    let channel: String = sqlx::query_scalar("SELECT channel FROM conversation WHERE id = $1")
        .bind(conversation.to_string())
        .fetch_one(w.conn())
        .await
        .map_err(|e| w.err(e))?;
    if channel == crate::model::Channel::WebChat.as_str() {
        sqlx::query("UPDATE outbound_reply SET status = 'web_chat' WHERE message_id = $1")
            .bind(mid.to_string())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        return Ok(mid);
    }
    // Hand it to the SMS sender (channels' outbox); a number that opted out is never sent to.
    let purpose = if source.0 == "reminder" {
        "reminder"
    } else {
        "reply"
    };
    let queued = crate::channels::queue_patient_sms(
        w,
        store,
        ctx,
        practice,
        patient,
        dek,
        conversation,
        body,
        purpose,
        author,
        now,
    )
    .await?;
    let status = match queued {
        Some(false) => "queued",
        Some(true) => "refused_opted_out",
        None => "no_phone_on_file",
    };
    if status != "queued" {
        sqlx::query("UPDATE outbound_reply SET status = $2 WHERE message_id = $1")
            .bind(mid.to_string())
            .bind(status)
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
    }
    Ok(mid)
}

async fn practice_name(w: &mut WriteTx, practice: PracticeId) -> Result<String, StoreError> {
    sqlx::query_scalar("SELECT name FROM practice WHERE id = $1")
        .bind(practice.to_string())
        .fetch_one(w.conn())
        .await
        .map_err(|e| w.err(e))
}

async fn given_name(w: &mut WriteTx, dek: &Dek, patient: PatientId) -> Result<String, StoreError> {
    let ct: Vec<u8> = sqlx::query_scalar("SELECT given_name_ct FROM patient WHERE id = $1")
        .bind(patient.to_string())
        .fetch_one(w.conn())
        .await
        .map_err(|e| w.err(e))?;
    open(dek, patient, "given_name", &ct)
}

async fn load_template(
    w: &mut WriteTx,
    practice: PracticeId,
    template: Uuid,
) -> Result<TemplateRecord, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {TEMPLATE_COLUMNS} FROM reply_template WHERE id = $1 AND practice_id = $2"
    ))
    .bind(template.to_string())
    .bind(practice.to_string())
    .fetch_optional(w.conn())
    .await
    .map_err(|e| w.err(e))?
    .ok_or_else(|| not_found("template", template))?;
    decode_template(&row)
}

fn usable(t: &TemplateRecord, kind: TemplateKind) -> Result<Template, StoreError> {
    if t.kind != kind || t.approved_by.is_none() || !t.active {
        return Err(StoreError::Invalid {
            field: "template_id",
            expected: match kind {
                TemplateKind::Reply => "an approved, active reply template",
                TemplateKind::Reminder => "an approved, active reminder template",
            },
        });
    }
    Template::parse(&t.body)
        .map_err(|_| StoreError::Corrupt("a stored template does not parse".into()))
}

fn render(template: &Template, values: &BTreeMap<&str, String>) -> Result<String, StoreError> {
    template.render(values).map_err(|_| StoreError::Invalid {
        field: "template_id",
        expected: "a template whose placeholders can all be filled here (reply templates may use given_name, practice_name and callback_number only when configured)",
    })
}

fn draft_columns() -> &'static str {
    "id, conversation_id, patient_id, intent, source, template_id, body_ct, status, requested_by, decided_by, decided_at, reject_reason, sent_message_id, created_at"
}

fn decode_draft(r: &AnyRow, dek: &Dek) -> Result<DraftView, StoreError> {
    let did: Uuid = id(&col::<String>(r, "id")?, "draft")?;
    let opt_staff = |name: &str| -> Result<Option<StaffId>, StoreError> {
        col::<Option<String>>(r, name)?
            .map(|s| id(&s, "staff"))
            .transpose()
    };
    let template: Option<String> = col(r, "template_id")?;
    let sent: Option<String> = col(r, "sent_message_id")?;
    Ok(DraftView {
        id: did,
        conversation_id: id(&col::<String>(r, "conversation_id")?, "conversation")?,
        intent: parse(&col::<String>(r, "intent")?, "intent")?,
        source: col(r, "source")?,
        template_id: template.map(|t| id(&t, "template")).transpose()?,
        body: decrypt_text(
            dek,
            &Aad::new("reply_draft", *did.as_bytes(), "body"),
            &col::<Vec<u8>>(r, "body_ct")?,
        )?,
        status: col(r, "status")?,
        requested_by: opt_staff("requested_by")?,
        decided_by: opt_staff("decided_by")?,
        decided_at_millis: col(r, "decided_at")?,
        reject_reason: col(r, "reject_reason")?,
        sent_message_id: sent.map(|m| id(&m, "message")).transpose()?,
        created_at_millis: col(r, "created_at")?,
    })
}

async fn read_draft(
    w: &mut WriteTx,
    store: &Store,
    practice: PracticeId,
    draft: Uuid,
) -> Result<(DraftView, PatientId, Dek), StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {} FROM reply_draft WHERE id = $1 AND practice_id = $2",
        draft_columns()
    ))
    .bind(draft.to_string())
    .bind(practice.to_string())
    .fetch_optional(w.conn())
    .await
    .map_err(|e| w.err(e))?
    .ok_or_else(|| not_found("draft", draft))?;
    let patient: PatientId = id(&col::<String>(&row, "patient_id")?, "patient")?;
    let dek = patient_key(w.conn(), store, patient).await?;
    Ok((decode_draft(&row, &dek)?, patient, dek))
}

fn check_text(
    text: &str,
    max: usize,
    field: &'static str,
    expected: &'static str,
) -> Result<(), StoreError> {
    let n = text.chars().count();
    if text.trim().is_empty() || n > max || text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(StoreError::Invalid { field, expected });
    }
    Ok(())
}

impl Store {
    /// Records how a conversation was classified and where it goes (the intake pipeline calls
    /// this for every inbound message, with its own context): intent, urgency, queue and due
    /// time; the status becomes open and any escalation mark is cleared. Audited (`triage`).
    pub async fn set_triage(
        &self,
        ctx: &AccessContext,
        conversation: ConversationId,
        triage: &Triage,
    ) -> Result<WorkItem, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        let (practice, patient) = intake_owner(&mut w, ctx, conversation, now).await?;
        let item = upsert_work(&mut w, conversation, practice, patient, triage, true, now).await?;
        w.audit(&ctx.event(
            now,
            Action::Update,
            object("conversation_work", conversation),
            Some(patient),
            Vec::new(),
            Some("triage"),
        ))
        .await?;
        w.commit().await?;
        Ok(item)
    }

    /// A person re-triages a conversation (declares `triage_conversation`): new intent,
    /// urgency and queue, due time from `levels` counted from now; status kept. Audited.
    pub async fn triage(
        &self,
        viewer: &Viewer,
        conversation: ConversationId,
        intent: Option<Intent>,
        urgency: Urgency,
        queue: Queue,
        levels: &ServiceLevels,
    ) -> Result<WorkItem, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::TriageConversation).await?;
        let patient = owned(&mut w, &reader, conversation).await?;
        let t = Triage::with_levels(intent, urgency, queue, levels, self.clock().now());
        let item = upsert_work(
            &mut w,
            conversation,
            reader.practice,
            patient,
            &t,
            false,
            now,
        )
        .await?;
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            now,
            Action::Update,
            object("conversation_work", conversation),
            Some(patient),
            Vec::new(),
            Some("triage"),
        ))
        .await?;
        w.commit().await?;
        Ok(item)
    }

    /// One page of a queue (declares `view_queue`; the viewer's roles must work the queue, see
    /// [`Queue::worked_by`]): metadata only, in queue order; closed conversations only when
    /// asked. Audited once (`queue_list`).
    pub async fn work_queue(
        &self,
        viewer: &Viewer,
        queue: Queue,
        include_closed: bool,
        offset: u32,
        limit: u32,
    ) -> Result<QueuePage, StoreError> {
        let now = self.now();
        let limit = limit.clamp(1, QUEUE_PAGE_LIMIT);
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ViewQueue).await?;
        if !queue.visible_to(&reader.roles) {
            return Err(forbidden(Permission::ViewQueue));
        }
        let closed = if include_closed {
            ""
        } else {
            " AND status <> 'closed'"
        };
        let rows = sqlx::query(&format!(
            "SELECT {WORK_COLUMNS} FROM conversation_work WHERE practice_id = $1 AND queue = $2{closed} ORDER BY priority, CASE WHEN sla_due_at IS NULL THEN 1 ELSE 0 END, sla_due_at, queued_at, conversation_id LIMIT $3 OFFSET $4"
        ))
        .bind(reader.practice.to_string())
        .bind(queue.name())
        .bind(i64::from(limit) + 1)
        .bind(i64::from(offset))
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let mut items = rows
            .iter()
            .map(|r| decode_work(r, now))
            .collect::<Result<Vec<_>, _>>()?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let rows = sqlx::query(&format!(
            "SELECT {WORK_COLUMNS} FROM conversation_work WHERE practice_id = $1 AND queue <> $2 AND urgency = 'emergency' AND status <> 'closed' ORDER BY queued_at, conversation_id LIMIT $3"
        ))
        .bind(reader.practice.to_string())
        .bind(queue.name())
        .bind(i64::from(QUEUE_PAGE_LIMIT))
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let emergencies = rows
            .iter()
            .map(|r| decode_work(r, now))
            .collect::<Result<Vec<_>, _>>()?;
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            now,
            Action::Read,
            object("work_queue", queue.name()),
            None,
            Vec::new(),
            Some("queue_list"),
        ))
        .await?;
        w.commit().await?;
        Ok(QueuePage {
            queue,
            next_offset: more.then(|| offset.saturating_add(limit)),
            items,
            emergencies,
        })
    }

    /// A conversation's work state (declares `read_conversation`); `None` when it was never
    /// triaged. Audited (`work_state`).
    pub async fn work_item(
        &self,
        viewer: &Viewer,
        conversation: ConversationId,
    ) -> Result<Option<WorkItem>, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ReadConversation).await?;
        let patient = owned(&mut w, &reader, conversation).await?;
        let item = load_work(&mut w, conversation, now).await?;
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            now,
            Action::Read,
            object("conversation_work", conversation),
            Some(patient),
            Vec::new(),
            Some("work_state"),
        ))
        .await?;
        w.commit().await?;
        Ok(item)
    }

    /// Assigns a conversation to a member of staff of the practice whose roles work its queue,
    /// or unassigns it (`None`) (declares `triage_conversation`). A clinician or nurse
    /// assigned joins the patient's care team (they handle the conversation, so they may read
    /// its clinical messages). Audited (`assigned` / `unassigned`, and `care_team_added`).
    pub async fn assign(
        &self,
        viewer: &Viewer,
        conversation: ConversationId,
        assignee: Option<StaffId>,
    ) -> Result<WorkItem, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::TriageConversation).await?;
        let patient = owned(&mut w, &reader, conversation).await?;
        let item = load_work(&mut w, conversation, now)
            .await?
            .ok_or(StoreError::Invalid {
                field: "conversation",
                expected: "a triaged conversation (it has no queue yet)",
            })?;
        let ctx = reader.ctx(viewer, routine_purpose(&reader.roles));
        if let Some(staff) = assignee {
            let row =
                sqlx::query("SELECT practice_id, roles, disabled_at FROM staff_user WHERE id = $1")
                    .bind(staff.to_string())
                    .fetch_optional(w.conn())
                    .await
                    .map_err(|e| w.err(e))?
                    .ok_or_else(|| not_found("staff user", staff))?;
            let their: PracticeId = id(&col::<String>(&row, "practice_id")?, "practice")?;
            if their != reader.practice {
                return Err(not_found("staff user", staff));
            }
            let roles = crate::staff::roles_from_text(&col::<String>(&row, "roles")?)?;
            let disabled: Option<i64> = col(&row, "disabled_at")?;
            if disabled.is_some() || !item.queue.visible_to(&roles) {
                return Err(StoreError::Invalid {
                    field: "staff_id",
                    expected: "an active member of staff whose role works this conversation's queue",
                });
            }
            if roles
                .iter()
                .any(|r| matches!(r, Role::Clinician | Role::Nurse))
            {
                let by = (staff != reader.staff).then_some(reader.staff);
                if insert_care(&mut w, self, reader.practice, patient, staff, by).await? {
                    w.audit(&ctx.event(
                        now,
                        Action::Create,
                        object("care_team", staff),
                        Some(patient),
                        Vec::new(),
                        Some("care_team_added"),
                    ))
                    .await?;
                }
            }
        }
        sqlx::query(
            "UPDATE conversation_work SET assignee_id = $2, updated_at = $3 WHERE conversation_id = $1",
        )
        .bind(conversation.to_string())
        .bind(assignee.map(|a| a.to_string()))
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        w.audit(&ctx.event(
            now,
            Action::Update,
            object("conversation_work", conversation),
            Some(patient),
            Vec::new(),
            Some(if assignee.is_some() {
                "assigned"
            } else {
                "unassigned"
            }),
        ))
        .await?;
        let item = load_work(&mut w, conversation, now)
            .await?
            .ok_or_else(|| StoreError::Corrupt("work row missing after write".into()))?;
        w.commit().await?;
        Ok(item)
    }

    /// Moves a conversation to `to` (declares `close_conversation`) by the rules of
    /// [`WorkStatus::transition`]; a refused transition is [`StoreError::Invalid`]. Audited.
    pub async fn set_work_status(
        &self,
        viewer: &Viewer,
        conversation: ConversationId,
        to: WorkStatus,
    ) -> Result<WorkItem, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::CloseConversation).await?;
        let patient = owned(&mut w, &reader, conversation).await?;
        let item = load_work(&mut w, conversation, now)
            .await?
            .ok_or(StoreError::Invalid {
                field: "conversation",
                expected: "a triaged conversation (it has no queue yet)",
            })?;
        let next = item.status.transition(to).map_err(|_| StoreError::Invalid {
            field: "status",
            expected: "a different status; a closed conversation is reopened before it can wait on the patient",
        })?;
        set_status_in(&mut w, conversation, next, now).await?;
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            now,
            Action::Update,
            object("conversation_work", conversation),
            Some(patient),
            Vec::new(),
            Some(next.name()),
        ))
        .await?;
        let item = load_work(&mut w, conversation, now)
            .await?
            .ok_or_else(|| StoreError::Corrupt("work row missing after write".into()))?;
        w.commit().await?;
        Ok(item)
    }

    /// Adds an internal note (declares `write_internal_note`), sealed under the patient's key.
    /// `category` is `internal_note` (administrative) or `clinical_message` (about symptoms,
    /// results, medications: only staff who may read the patient's clinical messages may
    /// write one). Audited with its category.
    pub async fn add_note(
        &self,
        viewer: &Viewer,
        conversation: ConversationId,
        category: DataCategory,
        body: &str,
    ) -> Result<NoteView, StoreError> {
        if !matches!(
            category,
            DataCategory::InternalNote | DataCategory::ClinicalMessage
        ) {
            return Err(StoreError::Invalid {
                field: "category",
                expected: "internal_note or clinical_message",
            });
        }
        check_text(
            body,
            MAX_NOTE_CHARS,
            "body",
            "a note of 1 to 4000 characters without control characters",
        )?;
        let now = self.now();
        let nid = Uuid::now_v7();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::WriteInternalNote).await?;
        let patient = owned(&mut w, &reader, conversation).await?;
        let access = access_to(&mut w, self, &reader, patient).await?;
        if !access.categories.contains(&category) {
            return Err(forbidden(Permission::ReadClinicalMessage));
        }
        let dek = patient_key(w.conn(), self, patient).await?;
        let ct = encrypt_text(
            &dek,
            &Aad::new("conversation_note", *nid.as_bytes(), "body"),
            body,
        )?;
        sqlx::query(
            "INSERT INTO conversation_note (id, conversation_id, patient_id, practice_id, author_id, category, body_ct, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(nid.to_string())
        .bind(conversation.to_string())
        .bind(patient.to_string())
        .bind(reader.practice.to_string())
        .bind(reader.staff.to_string())
        .bind(category.as_str())
        .bind(ct)
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let mut disclosed = std::collections::BTreeSet::new();
        disclosed.insert(category);
        let (purpose, detail) = purpose_of(&access, &reader.roles, &disclosed, Some("note"));
        w.audit(&reader.ctx(viewer, purpose).event(
            now,
            Action::Create,
            object("conversation_note", nid),
            Some(patient),
            vec![category],
            detail,
        ))
        .await?;
        w.commit().await?;
        Ok(NoteView {
            id: nid,
            author: reader.staff,
            category,
            created_at_millis: now,
            body: Some(body.to_owned()),
            withheld: false,
        })
    }

    /// A conversation's notes, oldest first (declares `read_conversation`): each body only if
    /// the viewer may see its category (clinical notes only in care or under a grant).
    /// Audited with exactly the categories disclosed.
    pub async fn list_notes(
        &self,
        viewer: &Viewer,
        conversation: ConversationId,
    ) -> Result<Vec<NoteView>, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ReadConversation).await?;
        let patient = owned(&mut w, &reader, conversation).await?;
        let access = access_to(&mut w, self, &reader, patient).await?;
        let dek = patient_key(w.conn(), self, patient).await?;
        let rows = sqlx::query(
            "SELECT id, author_id, category, body_ct, created_at FROM conversation_note WHERE conversation_id = $1 ORDER BY id LIMIT 500",
        )
        .bind(conversation.to_string())
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let mut disclosed = std::collections::BTreeSet::new();
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let nid: Uuid = id(&col::<String>(r, "id")?, "note")?;
            let category: DataCategory = col::<String>(r, "category")?
                .parse()
                .map_err(|_| StoreError::Corrupt("unknown note category".into()))?;
            let body = if access.categories.contains(&category) {
                disclosed.insert(category);
                Some(decrypt_text(
                    &dek,
                    &Aad::new("conversation_note", *nid.as_bytes(), "body"),
                    &col::<Vec<u8>>(r, "body_ct")?,
                )?)
            } else {
                None
            };
            out.push(NoteView {
                id: nid,
                author: id(&col::<String>(r, "author_id")?, "staff")?,
                category,
                created_at_millis: col(r, "created_at")?,
                withheld: body.is_none(),
                body,
            });
        }
        let (purpose, detail) = purpose_of(&access, &reader.roles, &disclosed, Some("notes"));
        w.audit(&reader.ctx(viewer, purpose).event(
            now,
            Action::Read,
            object("conversation", conversation),
            Some(patient),
            disclosed.into_iter().collect(),
            detail,
        ))
        .await?;
        w.commit().await?;
        Ok(out)
    }

    /// Makes a reply draft (declares `request_ai_assist`), only for administrative intents:
    /// a conversation without an intent, with a clinical, results or emergency intent, or
    /// marked as an emergency is refused ([`DraftOutcome::Refused`]) and the refusal is audited
    /// (outcome `denied`). A template draft whose template an administrator let go out for the
    /// conversation's intent is sent at once (status `sent`, audited with the template and
    /// version as the approval); every other draft waits for a person's approval.
    pub async fn create_draft(
        &self,
        viewer: &Viewer,
        conversation: ConversationId,
        request: &DraftRequest,
    ) -> Result<DraftOutcome, StoreError> {
        if let DraftRequest::Ai(text) = request {
            check_text(
                text,
                MAX_REPLY_CHARS,
                "body",
                "a reply of 1 to 1600 characters",
            )?;
        }
        let now = self.now();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::RequestAiAssist).await?;
        let patient = owned(&mut w, &reader, conversation).await?;
        let ctx = reader.ctx(viewer, routine_purpose(&reader.roles));
        let work = load_work(&mut w, conversation, now).await?;
        let intent = match may_draft(
            work.as_ref().and_then(|x| x.intent),
            work.as_ref().map_or(Urgency::Routine, |x| x.urgency),
        ) {
            Ok(i) => i,
            Err(refusal) => {
                let mut ev = ctx.event(
                    now,
                    Action::Create,
                    object("reply_draft", conversation),
                    Some(patient),
                    Vec::new(),
                    Some(refusal.code()),
                );
                ev.outcome = Outcome::Denied;
                w.audit(&ev).await?;
                w.commit().await?;
                return Ok(DraftOutcome::Refused(refusal));
            }
        };
        let urgency = work.as_ref().map_or(Urgency::Routine, |x| x.urgency);
        let dek = patient_key(w.conn(), self, patient).await?;
        let did = Uuid::now_v7();
        let mut categories = vec![DataCategory::AdministrativeMessage];
        let (body, source, template) = match request {
            DraftRequest::Ai(text) => (text.clone(), "ai", None),
            DraftRequest::Template(tid) => {
                let t = load_template(&mut w, reader.practice, *tid).await?;
                let parsed = usable(&t, TemplateKind::Reply)?;
                let mut values = BTreeMap::new();
                let uses = parsed.placeholders();
                if uses.contains(&"given_name") {
                    values.insert("given_name", given_name(&mut w, &dek, patient).await?);
                    categories.push(DataCategory::Demographics);
                }
                if uses.contains(&"practice_name") {
                    values.insert(
                        "practice_name",
                        practice_name(&mut w, reader.practice).await?,
                    );
                }
                (render(&parsed, &values)?, "template", Some(t))
            }
        };
        let auto = template.as_ref().is_some_and(|t| {
            auto_send_allowed(
                intent,
                urgency,
                &TemplateStanding {
                    approved: t.approved_by.is_some(),
                    active: t.active,
                    auto_send_intents: &t.auto_send_intents,
                },
            )
        });
        let ct = encrypt_text(
            &dek,
            &Aad::new("reply_draft", *did.as_bytes(), "body"),
            &body,
        )?;
        sqlx::query(
            "INSERT INTO reply_draft (id, conversation_id, patient_id, practice_id, intent, source, template_id, body_ct, status, requested_by, decided_by, decided_at, reject_reason, sent_message_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, NULL, NULL, NULL, NULL, $10)",
        )
        .bind(did.to_string())
        .bind(conversation.to_string())
        .bind(patient.to_string())
        .bind(reader.practice.to_string())
        .bind(intent.name())
        .bind(source)
        .bind(template.as_ref().map(|t| t.id.to_string()))
        .bind(ct)
        .bind(reader.staff.to_string())
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        w.audit(&ctx.event(
            now,
            Action::Create,
            object("reply_draft", did),
            Some(patient),
            categories,
            Some(if source == "ai" {
                "draft_ai"
            } else {
                "draft_template"
            }),
        ))
        .await?;
        if let (true, Some(t)) = (auto, template.as_ref()) {
            let mid = queue_outbound(
                &mut w,
                self,
                &ctx,
                &dek,
                conversation,
                reader.practice,
                patient,
                None,
                &body,
                ("draft", did),
                Some(t.id),
                now,
            )
            .await?;
            sqlx::query(
                "UPDATE reply_draft SET status = 'sent', decided_at = $2, sent_message_id = $3 WHERE id = $1",
            )
            .bind(did.to_string())
            .bind(now)
            .bind(mid.to_string())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
            if work.as_ref().is_some_and(|x| x.status == WorkStatus::Open) {
                set_status_in(&mut w, conversation, WorkStatus::WaitingOnPatient, now).await?;
            }
            let detail = format!("outbound auto_send template={} v{}", t.id, t.version);
            w.audit(&ctx.event(
                now,
                Action::Create,
                object("message", mid),
                Some(patient),
                vec![DataCategory::AdministrativeMessage],
                Some(&detail),
            ))
            .await?;
        }
        let (view, _, _) = read_draft(&mut w, self, reader.practice, did).await?;
        w.commit().await?;
        Ok(DraftOutcome::Done(Box::new(view)))
    }

    /// Whether a draft may be made for the conversation now (declares `request_ai_assist`):
    /// `Some(refusal)` when not, and the refusal is audited (outcome `denied`), as
    /// [`Store::create_draft`] would. For callers that must check before asking an AI.
    pub async fn draft_refusal(
        &self,
        viewer: &Viewer,
        conversation: ConversationId,
    ) -> Result<Option<DraftRefusal>, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::RequestAiAssist).await?;
        let patient = owned(&mut w, &reader, conversation).await?;
        let work = load_work(&mut w, conversation, now).await?;
        let Err(refusal) = may_draft(
            work.as_ref().and_then(|x| x.intent),
            work.as_ref().map_or(Urgency::Routine, |x| x.urgency),
        ) else {
            return Ok(None);
        };
        let mut ev = reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            now,
            Action::Create,
            object("reply_draft", conversation),
            Some(patient),
            Vec::new(),
            Some(refusal.code()),
        );
        ev.outcome = Outcome::Denied;
        w.audit(&ev).await?;
        w.commit().await?;
        Ok(Some(refusal))
    }

    /// A conversation's drafts, newest first (declares `read_conversation`). Audited.
    pub async fn list_drafts(
        &self,
        viewer: &Viewer,
        conversation: ConversationId,
    ) -> Result<Vec<DraftView>, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ReadConversation).await?;
        let patient = owned(&mut w, &reader, conversation).await?;
        let access = access_to(&mut w, self, &reader, patient).await?;
        if !access
            .categories
            .contains(&DataCategory::AdministrativeMessage)
        {
            return Err(forbidden(Permission::ReadConversation));
        }
        let dek = patient_key(w.conn(), self, patient).await?;
        let rows = sqlx::query(&format!(
            "SELECT {} FROM reply_draft WHERE conversation_id = $1 ORDER BY id DESC LIMIT 100",
            draft_columns()
        ))
        .bind(conversation.to_string())
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let out = rows
            .iter()
            .map(|r| decode_draft(r, &dek))
            .collect::<Result<Vec<_>, _>>()?;
        let categories = if out.is_empty() {
            Vec::new()
        } else {
            vec![DataCategory::AdministrativeMessage]
        };
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            now,
            Action::Read,
            object("conversation", conversation),
            Some(patient),
            categories,
            Some("drafts"),
        ))
        .await?;
        w.commit().await?;
        Ok(out)
    }

    /// Approves a pending draft and queues it to the patient (declares `approve_draft`),
    /// optionally with the approver's edited text. The rule is checked again against the
    /// conversation as it is now (a conversation re-triaged as clinical is refused). The
    /// outbound message's audit record names the approver. The conversation then waits on
    /// the patient.
    pub async fn approve_draft(
        &self,
        viewer: &Viewer,
        draft: Uuid,
        edited: Option<&str>,
    ) -> Result<DraftOutcome, StoreError> {
        if let Some(text) = edited {
            check_text(
                text,
                MAX_REPLY_CHARS,
                "body",
                "a reply of 1 to 1600 characters",
            )?;
        }
        let now = self.now();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ApproveDraft).await?;
        let (view, patient, dek) = read_draft(&mut w, self, reader.practice, draft).await?;
        if view.status != "pending" {
            return Err(StoreError::Invalid {
                field: "draft",
                expected: "a pending draft (this one was already decided)",
            });
        }
        let ctx = reader.ctx(viewer, routine_purpose(&reader.roles));
        let conversation = view.conversation_id;
        let work = load_work(&mut w, conversation, now).await?;
        if let Err(refusal) = may_draft(
            work.as_ref().and_then(|x| x.intent),
            work.as_ref().map_or(Urgency::Routine, |x| x.urgency),
        ) {
            let mut ev = ctx.event(
                now,
                Action::Update,
                object("reply_draft", draft),
                Some(patient),
                Vec::new(),
                Some(refusal.code()),
            );
            ev.outcome = Outcome::Denied;
            w.audit(&ev).await?;
            w.commit().await?;
            return Ok(DraftOutcome::Refused(refusal));
        }
        let body = edited.map_or_else(|| view.body.clone(), str::to_owned);
        let mid = queue_outbound(
            &mut w,
            self,
            &ctx,
            &dek,
            conversation,
            reader.practice,
            patient,
            Some(reader.staff),
            &body,
            ("draft", draft),
            view.template_id,
            now,
        )
        .await?;
        let edited_ct = edited
            .map(|t| encrypt_text(&dek, &Aad::new("reply_draft", *draft.as_bytes(), "body"), t))
            .transpose()?;
        sqlx::query(
            "UPDATE reply_draft SET status = 'sent', decided_by = $2, decided_at = $3, sent_message_id = $4, body_ct = COALESCE($5, body_ct) WHERE id = $1",
        )
        .bind(draft.to_string())
        .bind(reader.staff.to_string())
        .bind(now)
        .bind(mid.to_string())
        .bind(edited_ct)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        if work.as_ref().is_some_and(|x| x.status == WorkStatus::Open) {
            set_status_in(&mut w, conversation, WorkStatus::WaitingOnPatient, now).await?;
        }
        w.audit(&ctx.event(
            now,
            Action::Update,
            object("reply_draft", draft),
            Some(patient),
            vec![DataCategory::AdministrativeMessage],
            Some(if edited.is_some() {
                "approved_edited"
            } else {
                "approved"
            }),
        ))
        .await?;
        let detail = format!("outbound approved_by={}", reader.staff);
        w.audit(&ctx.event(
            now,
            Action::Create,
            object("message", mid),
            Some(patient),
            vec![DataCategory::AdministrativeMessage],
            Some(&detail),
        ))
        .await?;
        let (view, _, _) = read_draft(&mut w, self, reader.practice, draft).await?;
        w.commit().await?;
        Ok(DraftOutcome::Done(Box::new(view)))
    }

    /// Rejects a pending draft with a reason code from [`REJECT_REASONS`] (declares
    /// `approve_draft`). Audited.
    pub async fn reject_draft(
        &self,
        viewer: &Viewer,
        draft: Uuid,
        reason: &str,
    ) -> Result<DraftView, StoreError> {
        let Some(reason) = REJECT_REASONS.iter().find(|r| **r == reason.trim()) else {
            return Err(StoreError::Invalid {
                field: "reason",
                expected: "one of inaccurate, tone, not_needed, needs_clinician, other",
            });
        };
        let now = self.now();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ApproveDraft).await?;
        let (view, patient, _) = read_draft(&mut w, self, reader.practice, draft).await?;
        if view.status != "pending" {
            return Err(StoreError::Invalid {
                field: "draft",
                expected: "a pending draft (this one was already decided)",
            });
        }
        sqlx::query(
            "UPDATE reply_draft SET status = 'rejected', decided_by = $2, decided_at = $3, reject_reason = $4 WHERE id = $1",
        )
        .bind(draft.to_string())
        .bind(reader.staff.to_string())
        .bind(now)
        .bind(*reason)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let detail = format!("rejected {reason}");
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            now,
            Action::Update,
            object("reply_draft", draft),
            Some(patient),
            Vec::new(),
            Some(&detail),
        ))
        .await?;
        let (view, _, _) = read_draft(&mut w, self, reader.practice, draft).await?;
        w.commit().await?;
        Ok(view)
    }

    /// Saves a new version of a template (declares `manage_templates`): the next version
    /// number for its name, not approved, not active. The body is checked
    /// ([`Template::parse`]); automatic sending may be asked only for administrative intents.
    pub async fn create_template(
        &self,
        viewer: &Viewer,
        new: &NewTemplate,
    ) -> Result<TemplateRecord, StoreError> {
        let name = new.name.trim();
        if name.is_empty()
            || name.chars().count() > 80
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(StoreError::Invalid {
                field: "name",
                expected: "1 to 80 letters, digits, '_', '-' or '.'",
            });
        }
        Template::parse(&new.body).map_err(|_| StoreError::Invalid {
            field: "body",
            expected: "a template body with known {{placeholders}}",
        })?;
        if new.auto_send_intents.iter().any(|i| !i.allows_ai_draft()) {
            return Err(StoreError::Invalid {
                field: "auto_send_intents",
                expected: "administrative intents only (scheduling, refill, billing, records, general)",
            });
        }
        if new.kind == TemplateKind::Reminder && !new.auto_send_intents.is_empty() {
            return Err(StoreError::Invalid {
                field: "auto_send_intents",
                expected: "none for a reminder template (reminders are sent on their schedule)",
            });
        }
        let now = self.now();
        let tid = Uuid::now_v7();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ManageTemplates).await?;
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(version) FROM reply_template WHERE practice_id = $1 AND name = $2",
        )
        .bind(reader.practice.to_string())
        .bind(name)
        .fetch_one(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let mut intents: Vec<&str> = new.auto_send_intents.iter().map(|i| i.name()).collect();
        intents.sort_unstable();
        intents.dedup();
        sqlx::query(
            "INSERT INTO reply_template (id, practice_id, name, version, kind, body, auto_send_intents, created_by, created_at, approved_by, approved_at, active) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, 0)",
        )
        .bind(tid.to_string())
        .bind(reader.practice.to_string())
        .bind(name)
        .bind(last.unwrap_or(0) + 1)
        .bind(new.kind.as_str())
        .bind(new.body.clone())
        .bind(intents.join(","))
        .bind(reader.staff.to_string())
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            now,
            Action::Create,
            object("reply_template", tid),
            None,
            Vec::new(),
            Some("template_saved"),
        ))
        .await?;
        let t = load_template(&mut w, reader.practice, tid).await?;
        w.commit().await?;
        Ok(t)
    }

    /// The practice's templates, every version, by name then version (declares
    /// `manage_templates`).
    pub async fn list_templates(&self, viewer: &Viewer) -> Result<Vec<TemplateRecord>, StoreError> {
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ManageTemplates).await?;
        let rows = sqlx::query(&format!(
            "SELECT {TEMPLATE_COLUMNS} FROM reply_template WHERE practice_id = $1 ORDER BY name, version"
        ))
        .bind(reader.practice.to_string())
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let out = rows
            .iter()
            .map(decode_template)
            .collect::<Result<Vec<_>, _>>()?;
        w.commit().await?;
        Ok(out)
    }

    /// Approves a template version and makes it the active one of its name (the other
    /// versions become inactive) (declares `manage_templates`). Audited.
    pub async fn approve_template(
        &self,
        viewer: &Viewer,
        template: Uuid,
    ) -> Result<TemplateRecord, StoreError> {
        self.template_change(viewer, template, true).await
    }

    /// Deactivates a template version (declares `manage_templates`): it no longer drafts,
    /// sends automatically or reminds. Audited.
    pub async fn deactivate_template(
        &self,
        viewer: &Viewer,
        template: Uuid,
    ) -> Result<TemplateRecord, StoreError> {
        self.template_change(viewer, template, false).await
    }

    async fn template_change(
        &self,
        viewer: &Viewer,
        template: Uuid,
        approve: bool,
    ) -> Result<TemplateRecord, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ManageTemplates).await?;
        let t = load_template(&mut w, reader.practice, template).await?;
        if approve {
            sqlx::query(
                "UPDATE reply_template SET active = 0 WHERE practice_id = $1 AND name = $2 AND id <> $3",
            )
            .bind(reader.practice.to_string())
            .bind(t.name.clone())
            .bind(template.to_string())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
            sqlx::query(
                "UPDATE reply_template SET active = 1, approved_by = COALESCE(approved_by, $2), approved_at = COALESCE(approved_at, $3) WHERE id = $1",
            )
            .bind(template.to_string())
            .bind(reader.staff.to_string())
            .bind(now)
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        } else {
            sqlx::query("UPDATE reply_template SET active = 0 WHERE id = $1")
                .bind(template.to_string())
                .execute(w.conn())
                .await
                .map_err(|e| w.err(e))?;
        }
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            now,
            Action::Update,
            object("reply_template", template),
            None,
            Vec::new(),
            Some(if approve {
                "template_approved"
            } else {
                "template_deactivated"
            }),
        ))
        .await?;
        let t = load_template(&mut w, reader.practice, template).await?;
        w.commit().await?;
        Ok(t)
    }

    /// Schedules an appointment reminder (declares `manage_appointments`) from an approved,
    /// active reminder template, sent `lead` before the appointment (at once if that is past).
    /// The appointment time is sealed; the tier is computed locally from the patient's earlier
    /// reminded appointments. Audited (`appointment`).
    pub async fn schedule_reminder(
        &self,
        viewer: &Viewer,
        patient: PatientId,
        template: Uuid,
        appointment: OffsetDateTime,
        lead: Duration,
    ) -> Result<ReminderView, StoreError> {
        let now_t = self.clock().now();
        let now = self.now();
        let send_at = perimeter_workflows::reminder_send_at(appointment, lead, now_t).ok_or(
            StoreError::Invalid {
                field: "appointment_at",
                expected: "an appointment time in the future",
            },
        )?;
        let rid = Uuid::now_v7();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ManageAppointments).await?;
        crate::views::same_practice(&mut w, self, &reader, patient).await?;
        let t = load_template(&mut w, reader.practice, template).await?;
        usable(&t, TemplateKind::Reminder)?;
        let dek = patient_key(w.conn(), self, patient).await?;
        // The tier: earlier appointments this practice reminded the patient of.
        let rows = sqlx::query(
            "SELECT id, appointment_ct FROM appointment_reminder WHERE patient_id = $1 AND status <> 'cancelled'",
        )
        .bind(patient.to_string())
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let mut earlier = 0u32;
        let mut last: Option<OffsetDateTime> = None;
        for r in &rows {
            let oid: Uuid = id(&col::<String>(r, "id")?, "reminder")?;
            let at = open_appointment(&dek, oid, &col::<Vec<u8>>(r, "appointment_ct")?)?;
            if at < now_t {
                earlier += 1;
                last = last.max(Some(at));
            }
        }
        let tier = ReminderTier::from_history(earlier, last, now_t);
        let ct = encrypt_text(
            &dek,
            &Aad::new("appointment_reminder", *rid.as_bytes(), "appointment"),
            &millis(appointment).to_string(),
        )?;
        sqlx::query(
            "INSERT INTO appointment_reminder (id, practice_id, patient_id, conversation_id, template_id, appointment_ct, tier, send_at, status, sent_message_id, replied_at, created_by, created_at, updated_at) VALUES ($1, $2, $3, NULL, $4, $5, $6, $7, 'scheduled', NULL, NULL, $8, $9, $9)",
        )
        .bind(rid.to_string())
        .bind(reader.practice.to_string())
        .bind(patient.to_string())
        .bind(template.to_string())
        .bind(ct)
        .bind(tier.name())
        .bind(millis(send_at))
        .bind(reader.staff.to_string())
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            now,
            Action::Create,
            object("appointment_reminder", rid),
            Some(patient),
            vec![DataCategory::Appointment],
            Some("reminder_scheduled"),
        ))
        .await?;
        w.commit().await?;
        Ok(ReminderView {
            id: rid,
            patient_id: patient,
            template_id: template,
            appointment_at_millis: Some(millis(appointment)),
            tier,
            send_at_millis: millis(send_at),
            status: "scheduled".into(),
            conversation_id: None,
            replied_at_millis: None,
        })
    }

    /// Cancels a scheduled reminder (declares `manage_appointments`). `false`: it was not
    /// scheduled any more (sent, answered or cancelled). Audited.
    pub async fn cancel_reminder(
        &self,
        viewer: &Viewer,
        reminder: Uuid,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ManageAppointments).await?;
        let patient: Option<String> = sqlx::query_scalar(
            "SELECT patient_id FROM appointment_reminder WHERE id = $1 AND practice_id = $2",
        )
        .bind(reminder.to_string())
        .bind(reader.practice.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let patient: PatientId = id(
            &patient.ok_or_else(|| not_found("reminder", reminder))?,
            "patient",
        )?;
        let done = sqlx::query(
            "UPDATE appointment_reminder SET status = 'cancelled', updated_at = $2 WHERE id = $1 AND status = 'scheduled'",
        )
        .bind(reminder.to_string())
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            now,
            Action::Update,
            object("appointment_reminder", reminder),
            Some(patient),
            Vec::new(),
            Some("reminder_cancelled"),
        ))
        .await?;
        w.commit().await?;
        Ok(true)
    }

    /// A patient's reminders (declares `view_appointments`), newest first; the appointment
    /// time only if the viewer may see appointments. Audited.
    pub async fn list_reminders(
        &self,
        viewer: &Viewer,
        patient: PatientId,
    ) -> Result<Vec<ReminderView>, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ViewAppointments).await?;
        crate::views::same_practice(&mut w, self, &reader, patient).await?;
        let access = access_to(&mut w, self, &reader, patient).await?;
        let see = access.categories.contains(&DataCategory::Appointment);
        let dek = patient_key(w.conn(), self, patient).await?;
        let rows = sqlx::query(
            "SELECT id, template_id, appointment_ct, tier, send_at, status, conversation_id, replied_at FROM appointment_reminder WHERE patient_id = $1 ORDER BY id DESC LIMIT 100",
        )
        .bind(patient.to_string())
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let rid: Uuid = id(&col::<String>(r, "id")?, "reminder")?;
            let conv: Option<String> = col(r, "conversation_id")?;
            out.push(ReminderView {
                id: rid,
                patient_id: patient,
                template_id: id(&col::<String>(r, "template_id")?, "template")?,
                appointment_at_millis: if see {
                    Some(millis(open_appointment(
                        &dek,
                        rid,
                        &col::<Vec<u8>>(r, "appointment_ct")?,
                    )?))
                } else {
                    None
                },
                tier: parse(&col::<String>(r, "tier")?, "tier")?,
                send_at_millis: col(r, "send_at")?,
                status: col(r, "status")?,
                conversation_id: conv.map(|c| id(&c, "conversation")).transpose()?,
                replied_at_millis: col(r, "replied_at")?,
            });
        }
        let categories = if see && !out.is_empty() {
            vec![DataCategory::Appointment]
        } else {
            Vec::new()
        };
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            now,
            Action::Read,
            ObjectRef {
                kind: "appointment_reminder_list".into(),
                id: None,
            },
            Some(patient),
            categories,
            None,
        ))
        .await?;
        w.commit().await?;
        Ok(out)
    }

    /// Sends every reminder due at the clock's now (at most `limit`), for Perimeter's reminder
    /// task: fills the template locally (given name, practice, date and time), adds the
    /// outbound message to the patient's open SMS conversation (opening one if needed) and
    /// queues it for the sender. Each in its own transaction, audited.
    pub async fn send_due_reminders(
        &self,
        ctx: &AccessContext,
        limit: u32,
    ) -> Result<Vec<SentReminder>, StoreError> {
        ctx.require_internal()?;
        let now = self.now();
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM appointment_reminder WHERE status = 'scheduled' AND send_at <= $1 ORDER BY send_at, id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for rid in due {
            let rid: Uuid = id(&rid, "reminder")?;
            if let Some(sent) = self.send_reminder(ctx, rid).await? {
                out.push(sent);
            }
        }
        Ok(out)
    }

    async fn send_reminder(
        &self,
        ctx: &AccessContext,
        rid: Uuid,
    ) -> Result<Option<SentReminder>, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT practice_id, patient_id, template_id, appointment_ct, status FROM appointment_reminder WHERE id = $1",
        )
        .bind(rid.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(|e| w.err(e))?
        .ok_or_else(|| not_found("reminder", rid))?;
        if col::<String>(&row, "status")? != "scheduled" {
            return Ok(None);
        }
        let practice: PracticeId = id(&col::<String>(&row, "practice_id")?, "practice")?;
        let patient: PatientId = id(&col::<String>(&row, "patient_id")?, "patient")?;
        let tid: Uuid = id(&col::<String>(&row, "template_id")?, "template")?;
        let dek = patient_key(w.conn(), self, patient).await?;
        let at = open_appointment(&dek, rid, &col::<Vec<u8>>(&row, "appointment_ct")?)?;
        let t = load_template(&mut w, practice, tid).await?;
        let parsed = match usable(&t, TemplateKind::Reminder) {
            Ok(p) => p,
            Err(_) => {
                // The template was withdrawn after scheduling: nothing goes out; a person
                // sees the reminder as failed.
                sqlx::query("UPDATE appointment_reminder SET status = 'failed', updated_at = $2 WHERE id = $1")
                    .bind(rid.to_string())
                    .bind(now)
                    .execute(w.conn())
                    .await
                    .map_err(|e| w.err(e))?;
                let mut ev = ctx.event(
                    now,
                    Action::Execute,
                    object("appointment_reminder", rid),
                    Some(patient),
                    Vec::new(),
                    Some("reminder_template_withdrawn"),
                );
                ev.outcome = Outcome::Failure;
                w.audit(&ev).await?;
                w.commit().await?;
                return Ok(None);
            }
        };
        let mut values = BTreeMap::new();
        values.insert("given_name", given_name(&mut w, &dek, patient).await?);
        values.insert("practice_name", practice_name(&mut w, practice).await?);
        values.insert(
            "appointment_date",
            format!(
                "{:04}-{:02}-{:02}",
                at.year(),
                u8::from(at.month()),
                at.day()
            ),
        );
        values.insert(
            "appointment_time",
            format!("{:02}:{:02} UTC", at.hour(), at.minute()),
        );
        let body = render(&parsed, &values)?;
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT id FROM conversation WHERE patient_id = $1 AND channel = 'sms' AND status = 'open' ORDER BY updated_at DESC, id DESC LIMIT 1",
        )
        .bind(patient.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let conversation: ConversationId = match existing {
            Some(c) => id(&c, "conversation")?,
            None => {
                let cid = ConversationId::new();
                sqlx::query(
                    "INSERT INTO conversation (id, practice_id, patient_id, channel, status, subject_ct, created_at, updated_at) VALUES ($1, $2, $3, 'sms', 'open', NULL, $4, $4)",
                )
                .bind(cid.to_string())
                .bind(practice.to_string())
                .bind(patient.to_string())
                .bind(now)
                .execute(w.conn())
                .await
                .map_err(|e| w.err(e))?;
                w.audit(&ctx.event(
                    now,
                    Action::Create,
                    object("conversation", cid),
                    Some(patient),
                    Vec::new(),
                    Some("reminder"),
                ))
                .await?;
                cid
            }
        };
        let mid = queue_outbound(
            &mut w,
            self,
            ctx,
            &dek,
            conversation,
            practice,
            patient,
            None,
            &body,
            ("reminder", rid),
            Some(tid),
            now,
        )
        .await?;
        sqlx::query(
            "UPDATE appointment_reminder SET status = 'sent', conversation_id = $2, sent_message_id = $3, updated_at = $4 WHERE id = $1",
        )
        .bind(rid.to_string())
        .bind(conversation.to_string())
        .bind(mid.to_string())
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let detail = format!("outbound reminder template={} v{}", t.id, t.version);
        w.audit(&ctx.event(
            now,
            Action::Create,
            object("message", mid),
            Some(patient),
            vec![
                DataCategory::Appointment,
                DataCategory::AdministrativeMessage,
            ],
            Some(&detail),
        ))
        .await?;
        w.commit().await?;
        Ok(Some(SentReminder {
            reminder: rid,
            conversation,
            message: mid,
        }))
    }

    /// Handles a patient's reply in a conversation a reminder was sent in (the intake pipeline
    /// calls this before classifying): `C` confirms (the conversation's work state is left as
    /// it is: the thread may hold other work), `R` asks to reschedule (the conversation goes
    /// to the scheduling queue for a person to follow up); anything else, or a conversation
    /// with no reminder awaiting a reply, is `None` and is handled like any message. Audited.
    pub async fn record_reminder_reply(
        &self,
        ctx: &AccessContext,
        conversation: ConversationId,
        text: &str,
        levels: &ServiceLevels,
    ) -> Result<Option<(Uuid, ReminderReply)>, StoreError> {
        let reply = parse_reminder_reply(text);
        let now = self.now();
        let mut w = self.begin_write().await?;
        let (practice, patient) = intake_owner(&mut w, ctx, conversation, now).await?;
        if reply == ReminderReply::Other {
            return Ok(None);
        }
        let rid: Option<String> = sqlx::query_scalar(
            "SELECT id FROM appointment_reminder WHERE conversation_id = $1 AND status = 'sent' ORDER BY updated_at DESC, id DESC LIMIT 1",
        )
        .bind(conversation.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let Some(rid) = rid else {
            return Ok(None);
        };
        let rid: Uuid = id(&rid, "reminder")?;
        let status = match reply {
            ReminderReply::Confirm => "confirmed",
            _ => "reschedule_requested",
        };
        sqlx::query(
            "UPDATE appointment_reminder SET status = $2, replied_at = $3, updated_at = $3 WHERE id = $1",
        )
        .bind(rid.to_string())
        .bind(status)
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        if reply == ReminderReply::Reschedule {
            let t = Triage::with_levels(
                Some(Intent::Scheduling),
                Urgency::Routine,
                Queue::Scheduling,
                levels,
                self.clock().now(),
            );
            upsert_work(&mut w, conversation, practice, patient, &t, true, now).await?;
        }
        w.audit(&ctx.event(
            now,
            Action::Update,
            object("appointment_reminder", rid),
            Some(patient),
            vec![DataCategory::Appointment],
            Some(status),
        ))
        .await?;
        w.commit().await?;
        Ok(Some((rid, reply)))
    }

    /// The escalation sweep (Perimeter's own task): every open conversation past its due time
    /// and not yet escalated moves to its queue's escalation target and the target role of
    /// its practice is notified (a notification with ids only). At most `limit` per call, each
    /// audited (`escalated`) in the transaction that changes it.
    pub async fn escalate_overdue(
        &self,
        ctx: &AccessContext,
        rules: &EscalationRules,
        limit: u32,
    ) -> Result<Vec<Escalated>, StoreError> {
        ctx.require_internal_write()?;
        let now = self.now();
        let now_t = self.clock().now();
        let rows = sqlx::query(&format!(
            "SELECT {WORK_COLUMNS}, practice_id FROM conversation_work WHERE status = 'open' AND escalated_at IS NULL AND sla_due_at < $1 ORDER BY sla_due_at, conversation_id LIMIT $2"
        ))
        .bind(now)
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in &rows {
            let item = decode_work(r, now)?;
            let practice: PracticeId = id(&col::<String>(r, "practice_id")?, "practice")?;
            let state = WorkState {
                queue: item.queue,
                urgency: item.urgency,
                status: item.status,
                due: item.sla_due_at_millis.map(from_millis),
                escalated: item.escalated_at_millis.is_some(),
            };
            let Some(e) = rules.escalation(&state, now_t) else {
                continue;
            };
            let mut w = self.begin_write().await?;
            // Changed since it was read (answered, re-triaged, escalated by another process)?
            let done = sqlx::query(
                "UPDATE conversation_work SET queue = $2, escalated_at = $3, escalated_from = $4, updated_at = $3 WHERE conversation_id = $1 AND status = 'open' AND escalated_at IS NULL AND sla_due_at < $3",
            )
            .bind(item.conversation_id.to_string())
            .bind(e.to_queue.name())
            .bind(now)
            .bind(item.queue.name())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
            if done.rows_affected() == 0 {
                continue;
            }
            let payload = serde_json::json!({
                "conversation": item.conversation_id.to_string(),
                "from_queue": item.queue.name(),
                "to_queue": e.to_queue.name(),
                "late_by_minutes": e.late_by.whole_minutes(),
            })
            .to_string();
            sqlx::query(
                "INSERT INTO notification_outbox (id, kind, payload, created_at, delivered_at, practice_id, recipient_role) VALUES ($1, 'sla_escalation', $2, $3, NULL, $4, $5)",
            )
            .bind(Uuid::now_v7().to_string())
            .bind(payload)
            .bind(now)
            .bind(practice.to_string())
            .bind(e.notify.as_str())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
            let detail = format!("escalated {}->{}", item.queue.name(), e.to_queue.name());
            w.audit(&ctx.event(
                now,
                Action::Update,
                object("conversation_work", item.conversation_id),
                Some(item.patient_id),
                Vec::new(),
                Some(&detail),
            ))
            .await?;
            w.commit().await?;
            out.push(Escalated {
                conversation_id: item.conversation_id,
                from: item.queue,
                to: e.to_queue,
                notify: e.notify,
            });
        }
        Ok(out)
    }

    /// Replies queued for the channel's sender (or all, with `status` `None`), oldest first;
    /// for Perimeter itself (the sender, tests). No bodies.
    pub async fn outbound_replies(
        &self,
        ctx: &AccessContext,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<OutboundReply>, StoreError> {
        ctx.require_internal()?;
        let rows = sqlx::query(
            "SELECT message_id, conversation_id, source, source_id, approved_by, template_id, status, queued_at FROM outbound_reply WHERE ($1 = '' OR status = $1) ORDER BY queued_at, message_id LIMIT $2",
        )
        .bind(status.unwrap_or("").to_owned())
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                let by: Option<String> = col(r, "approved_by")?;
                let t: Option<String> = col(r, "template_id")?;
                Ok(OutboundReply {
                    message_id: id(&col::<String>(r, "message_id")?, "message")?,
                    conversation_id: id(&col::<String>(r, "conversation_id")?, "conversation")?,
                    source: col(r, "source")?,
                    source_id: id(&col::<String>(r, "source_id")?, "source")?,
                    approved_by: by.map(|b| id(&b, "staff")).transpose()?,
                    template_id: t.map(|t| id(&t, "template")).transpose()?,
                    status: col(r, "status")?,
                    queued_at_millis: col(r, "queued_at")?,
                })
            })
            .collect()
    }
}

fn open_appointment(dek: &Dek, reminder: Uuid, ct: &[u8]) -> Result<OffsetDateTime, StoreError> {
    let text = decrypt_text(
        dek,
        &Aad::new("appointment_reminder", *reminder.as_bytes(), "appointment"),
        ct,
    )?;
    let ms: i64 = text
        .parse()
        .map_err(|_| StoreError::Corrupt("a sealed appointment time does not parse".into()))?;
    Ok(from_millis(ms))
}

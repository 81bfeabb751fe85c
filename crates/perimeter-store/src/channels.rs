//! Patient channels (migration 0007): inbound receipts keyed by the provider's message id, the
//! outbound SMS outbox, STOP/START state, unverified contacts and authorised representatives.
//!
//! * [`Store::record_inbound`] stores one inbound message in ONE transaction: the receipt (a
//!   repeated delivery of the same provider id finds it and returns the first outcome), the
//!   opt-out change of a carrier keyword, the sender match through the phone blind index, the
//!   message (in the patient's conversation, or sealed under the contact's own data key when
//!   the sender is not exactly one patient), the routing decision, the emergency reply in the
//!   outbox and the on-call notification, and the audit records. The caller answers the
//!   webhook only after it returns.
//! * The outbox ([`Store::queue_sms`], [`Store::queue_conversation_reply`],
//!   [`Store::claim_due_sms`], [`Store::mark_sms_sent`], [`Store::mark_sms_retry`],
//!   [`Store::mark_sms_failed`], [`Store::update_sms_status`]) refuses opted-out numbers both
//!   when a message is queued and when it is claimed for sending.
//! * Nothing here stores a phone number or a body in clear: numbers are sealed and found by
//!   their blind index (the opt-out table keeps only the index).
//!
//! Every function that takes an [`AccessContext`] checks its actor in the database in its
//! transaction, before it reads anything, and a refusal changes nothing. The staff calls
//! declare a permission (`views::require_actor`, `views::acting`): an active account whose
//! stored roles hold it, acting in its own practice (the roles in the context are not
//! trusted; another practice's patient or conversation is not found); Perimeter itself
//! (intake, jobs, tests, seeding) may; service clients and anonymous callers may not. The
//! intake declares `ingest_channel` (`views::acting_client`): Perimeter itself (the SMS
//! webhooks) or a service client whose enabled account holds the role `service` and which
//! presented a live API token of its own scoped to `ingest_channel` on this request
//! ([`AccessContext::api_token`]; the voicemail intake), in its own
//! practice; no member of staff. Perimeter's own jobs refuse every staff-facing actor.
//!
//! | Function | Who may call it |
//! |---|---|
//! | [`Store::record_inbound`], [`Store::record_inbound_batch`] | `ingest_channel`: Perimeter, or an entitled service client of the message's practice (in a batch, a refused item gets its refusal, the others go on) |
//! | [`Store::record_web_chat`] | Perimeter only (the web chat runs as `system:web_chat`) |
//! | [`Store::queue_sms`], [`Store::queue_conversation_reply`] | `reply_to_patient`: Perimeter, or a user of the practice; the approver recorded, if any, must be an active account of the practice holding `reply_to_patient`, and a user names themselves |
//! | [`Store::claim_due_sms`] | Perimeter only (the sender: it decrypts numbers and bodies) |
//! | [`Store::assign_inbound_patient`] | `register_patient` |
//! | [`Store::resolve_inbound`] | `triage_conversation` |
//! | [`Store::list_representatives`] | `view_contact_data` |
//! | [`Store::add_representative`], [`Store::update_representative`] | `edit_contact_data` (a user records only themselves as verifier) |
//!
//! The outbox's status changes ([`Store::mark_sms_sent`], [`Store::mark_sms_retry`],
//! [`Store::mark_sms_failed`], [`Store::update_sms_status`]) and [`Store::count_inbound`],
//! [`Store::inbound_entry`], [`Store::outbox_entry`] take no actor: they touch ids, statuses
//! and codes only (Perimeter's sender, the signed status callback, a route whose guard checked
//! the permission and which names the principal's practice).

use std::fmt;

use perimeter_audit::{Action, ObjectRef};
use perimeter_auth::Permission;
use perimeter_crypto::{Aad, Dek, IndexKind, WrappedDek, decrypt_text, encrypt_text};
use perimeter_domain::{
    ConversationId, DataCategory, MessageId, PatientId, PracticeId, Role, StaffId,
};
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::Scope;
use crate::conversations::insert_message;
use crate::db::WriteTx;
use crate::model::{AccessContext, Channel, Direction, object};
use crate::patients::patient_key;
use crate::rows::{col, id};
use crate::views::{Acting, Viewer, acting, acting_client, reader, require_actor};
use crate::{Store, StoreError};

/// How many inbound items one page lists.
pub const INBOUND_PAGE_LIMIT: u32 = 200;
/// How long a claimed outbox message stays `sending` before another worker may retry it (a
/// worker that crashed mid-send).
pub const SEND_LEASE_MILLIS: i64 = 60_000;
/// The longest message body accepted (Twilio's limit is 1600 characters).
pub const MAX_SMS_CHARS: usize = 1600;

/// Who sent an inbound message, as matched through the blind indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    /// Exactly one patient has this number (and no representative).
    Patient,
    /// Several patients share the number (a family phone): staff pick the patient.
    SharedNumber,
    /// The number is a registered representative's: staff pick the patient.
    Representative,
    /// Nobody known: an unverified contact.
    Unknown,
}

impl MatchKind {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            MatchKind::Patient => "patient",
            MatchKind::SharedNumber => "shared_number",
            MatchKind::Representative => "representative",
            MatchKind::Unknown => "unknown",
        }
    }

    fn parse(s: &str) -> Result<MatchKind, StoreError> {
        match s {
            "patient" => Ok(MatchKind::Patient),
            "shared_number" => Ok(MatchKind::SharedNumber),
            "representative" => Ok(MatchKind::Representative),
            "unknown" => Ok(MatchKind::Unknown),
            _ => Err(StoreError::Corrupt("unknown match kind stored".into())),
        }
    }
}

/// A carrier keyword (the message is handled by it instead of being routed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Keyword {
    /// STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT: opt out.
    Stop,
    /// START, UNSTOP, YES: opt back in.
    Start,
    /// HELP, INFO: the practice's help text.
    Help,
}

impl Keyword {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Keyword::Stop => "stop",
            Keyword::Start => "start",
            Keyword::Help => "help",
        }
    }

    fn parse(s: &str) -> Result<Keyword, StoreError> {
        match s {
            "stop" => Ok(Keyword::Stop),
            "start" => Ok(Keyword::Start),
            "help" => Ok(Keyword::Help),
            _ => Err(StoreError::Corrupt("unknown keyword stored".into())),
        }
    }
}

/// How the message was routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteStatus {
    /// Classified and routed by the rules.
    Routed,
    /// Classification failed: sent to a human queue, the failure recorded.
    Fallback,
    /// A carrier keyword: handled, not queued.
    Keyword,
}

impl RouteStatus {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            RouteStatus::Routed => "routed",
            RouteStatus::Fallback => "fallback",
            RouteStatus::Keyword => "keyword",
        }
    }

    fn parse(s: &str) -> Result<RouteStatus, StoreError> {
        match s {
            "routed" => Ok(RouteStatus::Routed),
            "fallback" => Ok(RouteStatus::Fallback),
            "keyword" => Ok(RouteStatus::Keyword),
            _ => Err(StoreError::Corrupt("unknown route status stored".into())),
        }
    }
}

/// The routing decision for an inbound message (made by the intake pipeline before it is
/// stored; names are the workflows crate's snake_case names, never text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// The intent, if classified.
    pub intent: Option<&'static str>,
    /// The urgency, if classified.
    pub urgency: Option<&'static str>,
    /// The queue (always set: fail closed means a human queue).
    pub queue: &'static str,
    /// 0 is the top; emergencies get 0.
    pub priority: i64,
    /// The service-level due time (ms).
    pub due_at_millis: Option<i64>,
    /// The emergency fast path applies.
    pub emergency: bool,
    /// How it was routed.
    pub status: RouteStatus,
    /// A failure code (classification failed), never text.
    pub failure: Option<&'static str>,
}

/// An inbound message to record.
#[derive(Clone)]
pub struct NewInbound {
    /// The practice the number belongs to.
    pub practice: PracticeId,
    /// SMS or voice (transcript).
    pub channel: Channel,
    /// The provider's id for idempotency (Twilio `MessageSid`, the call id).
    pub provider_id: String,
    /// The sender's number as received.
    pub from: String,
    /// The text (PHI).
    pub body: String,
    /// Clinical or administrative (from the intent; clinical when unsure).
    pub category: DataCategory,
    /// A carrier keyword, when the whole message is one.
    pub keyword: Option<Keyword>,
    /// Where it goes.
    pub routing: Routing,
    /// For emergencies: the practice-approved message queued to the sender.
    pub emergency_reply: Option<String>,
    /// For emergencies: the roles alerted (the on-call nurse and clinician).
    pub alert_roles: Vec<Role>,
}

impl fmt::Debug for NewInbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewInbound")
            .field("channel", &self.channel)
            .field("keyword", &self.keyword)
            .field("routing", &self.routing)
            .finish_non_exhaustive()
    }
}

/// What recording an inbound message did (ids and codes only, no PHI).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InboundOutcome {
    /// The receipt.
    pub receipt: Uuid,
    /// `true`: this provider id was recorded before; nothing new was stored.
    pub duplicate: bool,
    /// Who the sender is.
    pub match_kind: MatchKind,
    /// The patient, when exactly one matched.
    pub patient: Option<PatientId>,
    /// The contact, when the sender is not exactly one patient.
    pub contact: Option<Uuid>,
    /// The patient's conversation.
    pub conversation: Option<ConversationId>,
    /// The stored message.
    pub message: Option<MessageId>,
    /// The keyword handled.
    pub keyword: Option<Keyword>,
    /// The queue.
    pub queue: Option<String>,
    /// The priority (0 top).
    pub priority: i64,
    /// The emergency fast path ran.
    pub emergency: bool,
    /// The emergency reply queued in the outbox.
    pub reply_outbox: Option<Uuid>,
    /// The sender's number is opted out (after this message).
    pub opted_out: bool,
    /// Staff must pick the patient.
    pub needs_patient: bool,
    /// How it was routed.
    pub route_status: RouteStatus,
    /// The conversation entered (or moved in) the staff work queues in the same transaction.
    /// `false` for keywords, senders who are not one patient, duplicates, and a bare `C` / `R`
    /// (which may answer an appointment reminder: the caller decides, see
    /// [`Store::record_reminder_reply`], then [`Store::set_triage`]).
    pub work_queued: bool,
}

impl Routing {
    /// The work-queue triage this routing gives (`None` for a queue name routing never
    /// produces).
    pub fn triage(&self) -> Option<crate::Triage> {
        Some(crate::Triage {
            intent: self.intent.and_then(|i| i.parse().ok()),
            urgency: self
                .urgency
                .and_then(|u| u.parse().ok())
                .unwrap_or(if self.emergency {
                    perimeter_workflows::Urgency::Emergency
                } else {
                    perimeter_workflows::Urgency::Urgent
                }),
            queue: perimeter_workflows::parse_queue(self.queue)?,
            due_at_millis: self.due_at_millis,
        })
    }
}

/// An inbound item as staff see it in the intake list: metadata only (the body is read through
/// the patient's conversation once the message is linked to a patient).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InboundEntry {
    /// The receipt.
    pub id: Uuid,
    /// `sms` or `voice`.
    pub channel: String,
    /// Who the sender is.
    pub match_kind: MatchKind,
    /// The patient, if matched.
    pub patient_id: Option<PatientId>,
    /// The contact, if not.
    pub contact_id: Option<Uuid>,
    /// The conversation, if any.
    pub conversation_id: Option<ConversationId>,
    /// Intent name.
    pub intent: Option<String>,
    /// Urgency name.
    pub urgency: Option<String>,
    /// Queue name.
    pub queue: Option<String>,
    /// 0 is the top.
    pub priority: i64,
    /// Due (ms).
    pub due_at_millis: Option<i64>,
    /// Emergency fast path.
    pub emergency: bool,
    /// How it was routed.
    pub route_status: RouteStatus,
    /// The failure code, if classification failed.
    pub failure: Option<String>,
    /// Staff must pick the patient.
    pub needs_patient: bool,
    /// Received (ms).
    pub received_at_millis: i64,
}

/// The status of an outbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Waiting for the sender.
    Queued,
    /// Claimed by a sender.
    Sending,
    /// The carrier accepted it.
    Sent,
    /// The carrier reported delivery.
    Delivered,
    /// Gave up (or the carrier refused it).
    Failed,
    /// The carrier could not deliver it.
    Undelivered,
    /// Never sent: the number is opted out.
    Refused,
}

impl OutboxStatus {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Queued => "queued",
            OutboxStatus::Sending => "sending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Delivered => "delivered",
            OutboxStatus::Failed => "failed",
            OutboxStatus::Undelivered => "undelivered",
            OutboxStatus::Refused => "refused",
        }
    }

    /// Parses a stored (or Twilio callback) status name.
    pub fn parse(s: &str) -> Option<OutboxStatus> {
        Some(match s {
            "queued" | "accepted" => OutboxStatus::Queued,
            "sending" => OutboxStatus::Sending,
            "sent" => OutboxStatus::Sent,
            "delivered" | "read" => OutboxStatus::Delivered,
            "failed" | "canceled" => OutboxStatus::Failed,
            "undelivered" => OutboxStatus::Undelivered,
            "refused" => OutboxStatus::Refused,
            _ => return None,
        })
    }

    const fn rank(self) -> u8 {
        match self {
            OutboxStatus::Queued => 0,
            OutboxStatus::Sending => 1,
            OutboxStatus::Sent => 2,
            OutboxStatus::Delivered
            | OutboxStatus::Failed
            | OutboxStatus::Undelivered
            | OutboxStatus::Refused => 3,
        }
    }
}

/// Who an outbound message is for (whose data key seals it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    /// A patient (their number on file unless one is given).
    Patient(PatientId),
    /// A contact (their number).
    Contact(Uuid),
}

/// An outbound SMS to queue.
#[derive(Clone)]
pub struct NewSms {
    /// The practice.
    pub practice: PracticeId,
    /// Whose key seals it.
    pub recipient: Recipient,
    /// The number; `None`: the patient's number on file (or the contact's).
    pub to: Option<String>,
    /// The text.
    pub body: String,
    /// Why: `emergency`, `reply`, `reminder`, `notice`.
    pub purpose: &'static str,
    /// The conversation it belongs to.
    pub conversation: Option<ConversationId>,
    /// Who approved it (for staff replies and approved drafts).
    pub approved_by: Option<StaffId>,
}

impl fmt::Debug for NewSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSms")
            .field("recipient", &self.recipient)
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

/// An outbound message claimed for sending (decrypted for the carrier call).
#[derive(Clone)]
pub struct ClaimedSms {
    /// The outbox id.
    pub id: Uuid,
    /// The number.
    pub to: String,
    /// The text.
    pub body: String,
    /// Attempts so far (this one included).
    pub attempts: u32,
}

impl fmt::Debug for ClaimedSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimedSms")
            .field("id", &self.id)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// An outbox row's metadata (no number, no body).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutboxEntry {
    /// Id.
    pub id: Uuid,
    /// Status.
    pub status: OutboxStatus,
    /// Why.
    pub purpose: String,
    /// The carrier's id.
    pub provider_sid: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Next attempt (ms).
    pub next_attempt_at_millis: Option<i64>,
    /// Last error code.
    pub last_error: Option<String>,
    /// The patient.
    pub patient_id: Option<PatientId>,
    /// The contact.
    pub contact_id: Option<Uuid>,
    /// The conversation.
    pub conversation_id: Option<ConversationId>,
    /// Who approved it.
    pub approved_by: Option<StaffId>,
    /// Created (ms).
    pub created_at_millis: i64,
    /// Changed (ms).
    pub updated_at_millis: i64,
}

/// An opt-out row (the number itself is not kept: a reference derived from its blind index).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OptOutEntry {
    /// The first 16 hex digits of the number's blind index (keyed: reveals nothing without
    /// the index key).
    pub number_ref: String,
    /// Opted out now.
    pub opted_out: bool,
    /// The keyword that set it (`stop`, `start`).
    pub keyword: String,
    /// When (ms).
    pub changed_at_millis: i64,
}

/// A contact: a number that is not exactly one patient's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContactEntry {
    /// Id.
    pub id: Uuid,
    /// Linked to a patient by staff.
    pub verified_patient_id: Option<PatientId>,
    /// Inbound items still waiting for staff to pick the patient.
    pub pending_inbound: i64,
    /// Created (ms).
    pub created_at_millis: i64,
}

/// The relationships a representative may have.
pub const RELATIONSHIPS: [&str; 6] = [
    "parent",
    "guardian",
    "spouse",
    "child",
    "caregiver",
    "other",
];

/// A representative to register on a patient's record.
#[derive(Clone)]
pub struct NewRepresentative {
    /// Their name (PHI, sealed under the patient's key).
    pub name: String,
    /// Their number.
    pub phone: String,
    /// One of [`RELATIONSHIPS`].
    pub relationship: String,
    /// Verified (identity checked by staff) now.
    pub verified: bool,
}

impl fmt::Debug for NewRepresentative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewRepresentative")
            .field("relationship", &self.relationship)
            .field("verified", &self.verified)
            .finish_non_exhaustive()
    }
}

/// A representative as read back.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct Representative {
    /// Id.
    pub id: Uuid,
    /// The patient.
    pub patient_id: PatientId,
    /// Name.
    pub name: String,
    /// Number.
    pub phone: String,
    /// Relationship.
    pub relationship: String,
    /// Verified (ms).
    pub verified_at_millis: Option<i64>,
    /// Revoked (ms).
    pub revoked_at_millis: Option<i64>,
    /// Created (ms).
    pub created_at_millis: i64,
}

impl fmt::Debug for Representative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Representative")
            .field("id", &self.id)
            .field("patient_id", &self.patient_id)
            .field("relationship", &self.relationship)
            .finish_non_exhaustive()
    }
}

pub(crate) fn contact_wrap_context(contact: Uuid) -> Vec<u8> {
    let mut c = b"contact:".to_vec();
    c.extend_from_slice(contact.as_bytes());
    c
}

fn seal(dek: &Dek, table: &str, row: Uuid, field: &str, v: &str) -> Result<Vec<u8>, StoreError> {
    Ok(encrypt_text(
        dek,
        &Aad::new(table, *row.as_bytes(), field),
        v,
    )?)
}

fn open(dek: &Dek, table: &str, row: Uuid, field: &str, ct: &[u8]) -> Result<String, StoreError> {
    Ok(decrypt_text(
        dek,
        &Aad::new(table, *row.as_bytes(), field),
        ct,
    )?)
}

fn uuid_col(row: &AnyRow, name: &str) -> Result<Uuid, StoreError> {
    id(&col::<String>(row, name)?, name)
}

fn opt_id<T: std::str::FromStr>(row: &AnyRow, name: &str) -> Result<Option<T>, StoreError> {
    col::<Option<String>>(row, name)?
        .map(|s| id(&s, name))
        .transpose()
}

fn phone_digest(store: &Store, raw: &str) -> Result<[u8; 32], StoreError> {
    store
        .keys()
        .indexer()
        .index_raw(IndexKind::Phone, raw)
        .ok_or(StoreError::Invalid {
            field: "phone number",
            expected: "a phone number of 7 to 15 digits, optionally with + and separators",
        })
}

fn channel_object(kind: &str, id: Uuid) -> ObjectRef {
    object(kind, id)
}

/// Files a contact's inbound message (its body opened) in the patient's conversation, sealed
/// under the patient's key (clinical until triaged), and marks the receipt resolved to them.
async fn attach_inbound(
    w: &mut WriteTx,
    receipt: Uuid,
    pdek: &Dek,
    cid: ConversationId,
    patient: PatientId,
    body: &str,
    now: i64,
) -> Result<MessageId, StoreError> {
    let mid = insert_message(
        w,
        pdek,
        cid,
        patient,
        Direction::Inbound,
        None,
        DataCategory::ClinicalMessage,
        body,
        now,
    )
    .await?;
    sqlx::query(
        "UPDATE channel_inbound SET patient_id = $2, conversation_id = $3, message_id = $4, body_ct = NULL, needs_patient = 0 WHERE id = $1",
    )
    .bind(receipt.to_string())
    .bind(patient.to_string())
    .bind(cid.to_string())
    .bind(mid.to_string())
    .execute(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    Ok(mid)
}

/// Loads and unwraps a contact's data key.
async fn contact_key(w: &mut WriteTx, store: &Store, contact: Uuid) -> Result<Dek, StoreError> {
    let row =
        sqlx::query("SELECT kek_version, dek_id, wrapped_dek FROM channel_contact WHERE id = $1")
            .bind(contact.to_string())
            .fetch_optional(w.conn())
            .await
            .map_err(|e| w.err(e))?
            .ok_or_else(|| StoreError::NotFound {
                kind: "contact",
                id: contact.to_string(),
            })?;
    let version: i64 = col(&row, "kek_version")?;
    let dek_id: Vec<u8> = col(&row, "dek_id")?;
    let wrapped = WrappedDek {
        kek_version: u32::try_from(version)
            .map_err(|_| StoreError::Corrupt("KEK version out of range".into()))?,
        dek_id: <[u8; 16]>::try_from(dek_id.as_slice())
            .map_err(|_| StoreError::Corrupt("data key id is not 16 bytes".into()))?,
        bytes: col(&row, "wrapped_dek")?,
    };
    Ok(store
        .keys()
        .unwrap_dek(&wrapped, &contact_wrap_context(contact))?)
}

/// The contact for `digest` in `practice`, created (with its own data key and the sealed
/// number) if there is none. Returns `(id, key, created)`.
async fn contact_for(
    w: &mut WriteTx,
    store: &Store,
    practice: PracticeId,
    digest: &[u8; 32],
    phone: &str,
    now: i64,
) -> Result<(Uuid, Dek, bool), StoreError> {
    let existing: Option<String> = sqlx::query_scalar(
        "SELECT id FROM channel_contact WHERE practice_id = $1 AND phone_digest = $2",
    )
    .bind(practice.to_string())
    .bind(digest.to_vec())
    .fetch_optional(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    if let Some(existing) = existing {
        let cid: Uuid = id(&existing, "contact")?;
        let dek = contact_key(w, store, cid).await?;
        return Ok((cid, dek, false));
    }
    let cid = Uuid::now_v7();
    let dek = Dek::generate()?;
    let wrapped = store.keys().wrap_dek(&dek, &contact_wrap_context(cid))?;
    crate::keys::check_kek_usable(w, wrapped.kek_version).await?;
    let phone_ct = seal(&dek, "channel_contact", cid, "phone", phone)?;
    sqlx::query(
        "INSERT INTO channel_contact (id, practice_id, phone_digest, kek_version, dek_id, wrapped_dek, phone_ct, verified_patient_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $8)",
    )
    .bind(cid.to_string())
    .bind(practice.to_string())
    .bind(digest.to_vec())
    .bind(i64::from(wrapped.kek_version))
    .bind(wrapped.dek_id.to_vec())
    .bind(wrapped.bytes)
    .bind(phone_ct)
    .bind(now)
    .execute(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    Ok((cid, dek, true))
}

async fn opted_out(
    w: &mut WriteTx,
    practice: PracticeId,
    digest: &[u8; 32],
) -> Result<bool, StoreError> {
    let v: Option<i64> = sqlx::query_scalar(
        "SELECT opted_out FROM channel_opt_out WHERE practice_id = $1 AND phone_digest = $2",
    )
    .bind(practice.to_string())
    .bind(digest.to_vec())
    .fetch_optional(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    Ok(v == Some(1))
}

async fn set_opt_out(
    w: &mut WriteTx,
    practice: PracticeId,
    digest: &[u8; 32],
    out: bool,
    keyword: Keyword,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO channel_opt_out (practice_id, phone_digest, opted_out, keyword, changed_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (practice_id, phone_digest) DO UPDATE SET opted_out = excluded.opted_out, keyword = excluded.keyword, changed_at = excluded.changed_at",
    )
    .bind(practice.to_string())
    .bind(digest.to_vec())
    .bind(i64::from(out))
    .bind(keyword.as_str())
    .bind(now)
    .execute(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    Ok(())
}

/// The open conversation of `patient` on `channel`, or a new one (audited).
async fn open_conversation(
    w: &mut WriteTx,
    ctx: &AccessContext,
    practice: PracticeId,
    patient: PatientId,
    channel: Channel,
    now: i64,
) -> Result<ConversationId, StoreError> {
    let existing: Option<String> = sqlx::query_scalar(
        "SELECT id FROM conversation WHERE patient_id = $1 AND channel = $2 AND status = 'open' ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(patient.to_string())
    .bind(channel.as_str())
    .fetch_optional(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    if let Some(c) = existing {
        return id(&c, "conversation");
    }
    let cid = ConversationId::new();
    sqlx::query(
        "INSERT INTO conversation (id, practice_id, patient_id, channel, status, subject_ct, created_at, updated_at) VALUES ($1, $2, $3, $4, 'open', NULL, $5, $5)",
    )
    .bind(cid.to_string())
    .bind(practice.to_string())
    .bind(patient.to_string())
    .bind(channel.as_str())
    .bind(now)
    .execute(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    w.audit(&ctx.event(
        now,
        Action::Create,
        object("conversation", cid),
        Some(patient),
        vec![DataCategory::AdministrativeMessage],
        Some(channel.as_str()),
    ))
    .await?;
    Ok(cid)
}

fn validate_body(body: &str) -> Result<(), StoreError> {
    if body.trim().is_empty() || body.chars().count() > MAX_SMS_CHARS {
        return Err(StoreError::Invalid {
            field: "message body",
            expected: "1 to 1600 characters",
        });
    }
    Ok(())
}

struct QueuedSms<'a> {
    practice: PracticeId,
    recipient: Recipient,
    dek: &'a Dek,
    to: &'a str,
    digest: [u8; 32],
    body: &'a str,
    purpose: &'a str,
    conversation: Option<ConversationId>,
    approved_by: Option<StaffId>,
}

/// Queues, inside `w`, an outbound SMS to a patient's phone on file for a message the work
/// queues already stored (an approved reply, an auto-sent template, a reminder), audited as
/// the outbox row's creation. `Ok(None)`: the patient has no phone on file; `Ok(Some(true))`:
/// the number opted out, the row is `refused` and nothing will be sent.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn queue_patient_sms(
    w: &mut WriteTx,
    store: &Store,
    ctx: &AccessContext,
    practice: PracticeId,
    patient: PatientId,
    dek: &Dek,
    conversation: ConversationId,
    body: &str,
    purpose: &str,
    approved_by: Option<StaffId>,
    now: i64,
) -> Result<Option<bool>, StoreError> {
    let Some(to) = crate::patients::read_patient(w, store, patient)
        .await?
        .data
        .phone
    else {
        return Ok(None);
    };
    let digest = phone_digest(store, &to)?;
    let (oid, refused) = insert_outbox(
        w,
        &QueuedSms {
            practice,
            recipient: Recipient::Patient(patient),
            dek,
            to: &to,
            digest,
            body,
            purpose,
            conversation: Some(conversation),
            approved_by,
        },
        now,
    )
    .await?;
    w.audit(&ctx.event(
        now,
        Action::Create,
        channel_object("outbound_sms", oid),
        Some(patient),
        vec![DataCategory::Contact, DataCategory::AdministrativeMessage],
        Some(if refused {
            "refused_opted_out"
        } else {
            purpose
        }),
    ))
    .await?;
    Ok(Some(refused))
}

/// Queues, inside `w`, a notice (a web chat's one-time code) to a patient's phone on file,
/// audited as the outbox row's creation. `Ok(None)`: no phone on file; `Ok(Some((id, true)))`:
/// the number opted out and nothing will be sent.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn queue_notice_sms(
    w: &mut WriteTx,
    store: &Store,
    ctx: &AccessContext,
    practice: PracticeId,
    patient: PatientId,
    dek: &Dek,
    body: &str,
    now: i64,
) -> Result<Option<(Uuid, bool)>, StoreError> {
    let Some(to) = crate::patients::read_patient(w, store, patient)
        .await?
        .data
        .phone
    else {
        return Ok(None);
    };
    let digest = phone_digest(store, &to)?;
    let (oid, refused) = insert_outbox(
        w,
        &QueuedSms {
            practice,
            recipient: Recipient::Patient(patient),
            dek,
            to: &to,
            digest,
            body,
            purpose: "notice",
            conversation: None,
            approved_by: None,
        },
        now,
    )
    .await?;
    w.audit(&ctx.event(
        now,
        Action::Create,
        channel_object("outbound_sms", oid),
        Some(patient),
        vec![DataCategory::Contact],
        Some(if refused {
            "refused_opted_out"
        } else {
            "web_chat_code"
        }),
    ))
    .await?;
    Ok(Some((oid, refused)))
}

/// Inserts an outbox row; an opted-out number gets status `refused` and is never sent. Returns
/// `(id, refused)`. No audit: the caller audits.
async fn insert_outbox(
    w: &mut WriteTx,
    q: &QueuedSms<'_>,
    now: i64,
) -> Result<(Uuid, bool), StoreError> {
    let oid = Uuid::now_v7();
    let refused = opted_out(w, q.practice, &q.digest).await?;
    let (patient, contact) = match q.recipient {
        Recipient::Patient(p) => (Some(p.to_string()), None),
        Recipient::Contact(c) => (None, Some(c.to_string())),
    };
    let status = if refused {
        OutboxStatus::Refused
    } else {
        OutboxStatus::Queued
    };
    sqlx::query(
        "INSERT INTO channel_outbox (id, practice_id, channel, to_digest, patient_id, contact_id, conversation_id, to_ct, body_ct, purpose, status, provider_sid, attempts, next_attempt_at, last_error, approved_by, created_at, updated_at) VALUES ($1, $2, 'sms', $3, $4, $5, $6, $7, $8, $9, $10, NULL, 0, $11, $12, $13, $14, $14)",
    )
    .bind(oid.to_string())
    .bind(q.practice.to_string())
    .bind(q.digest.to_vec())
    .bind(patient)
    .bind(contact)
    .bind(q.conversation.map(|c| c.to_string()))
    .bind(seal(q.dek, "channel_outbox", oid, "to", q.to)?)
    .bind(seal(q.dek, "channel_outbox", oid, "body", q.body)?)
    .bind(q.purpose.to_owned())
    .bind(status.as_str())
    .bind(if refused { None } else { Some(now) })
    .bind(if refused { Some("opted_out") } else { None })
    .bind(q.approved_by.map(|a| a.to_string()))
    .bind(now)
    .execute(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    Ok((oid, refused))
}

fn recipient_patient(r: Recipient) -> Option<PatientId> {
    match r {
        Recipient::Patient(p) => Some(p),
        Recipient::Contact(_) => None,
    }
}

const INBOUND_COLUMNS: &str = "id, channel, match_kind, patient_id, contact_id, conversation_id, message_id, keyword, intent, urgency, queue, priority, due_at, emergency, route_status, failure, reply_outbox_id, needs_patient, received_at";

fn decode_entry(row: &AnyRow) -> Result<InboundEntry, StoreError> {
    Ok(InboundEntry {
        id: uuid_col(row, "id")?,
        channel: col(row, "channel")?,
        match_kind: MatchKind::parse(&col::<String>(row, "match_kind")?)?,
        patient_id: opt_id(row, "patient_id")?,
        contact_id: opt_id(row, "contact_id")?,
        conversation_id: opt_id(row, "conversation_id")?,
        intent: col(row, "intent")?,
        urgency: col(row, "urgency")?,
        queue: col(row, "queue")?,
        priority: col(row, "priority")?,
        due_at_millis: col(row, "due_at")?,
        emergency: col::<i64>(row, "emergency")? == 1,
        route_status: RouteStatus::parse(&col::<String>(row, "route_status")?)?,
        failure: col(row, "failure")?,
        needs_patient: col::<i64>(row, "needs_patient")? == 1,
        received_at_millis: col(row, "received_at")?,
    })
}

const OUTBOX_COLUMNS: &str = "id, status, purpose, provider_sid, attempts, next_attempt_at, last_error, patient_id, contact_id, conversation_id, approved_by, created_at, updated_at";

fn decode_outbox(row: &AnyRow) -> Result<OutboxEntry, StoreError> {
    let status: String = col(row, "status")?;
    Ok(OutboxEntry {
        id: uuid_col(row, "id")?,
        status: OutboxStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt("unknown outbox status stored".into()))?,
        purpose: col(row, "purpose")?,
        provider_sid: col(row, "provider_sid")?,
        attempts: u32::try_from(col::<i64>(row, "attempts")?).unwrap_or(u32::MAX),
        next_attempt_at_millis: col(row, "next_attempt_at")?,
        last_error: col(row, "last_error")?,
        patient_id: opt_id(row, "patient_id")?,
        contact_id: opt_id(row, "contact_id")?,
        conversation_id: opt_id(row, "conversation_id")?,
        approved_by: opt_id(row, "approved_by")?,
        created_at_millis: col(row, "created_at")?,
        updated_at_millis: col(row, "updated_at")?,
    })
}

async fn outcome_of(
    w: &mut WriteTx,
    receipt: Uuid,
    practice: PracticeId,
    digest: &[u8; 32],
) -> Result<InboundOutcome, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {INBOUND_COLUMNS} FROM channel_inbound WHERE id = $1"
    ))
    .bind(receipt.to_string())
    .fetch_one(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    let e = decode_entry(&row)?;
    let keyword: Option<String> = col(&row, "keyword")?;
    Ok(InboundOutcome {
        receipt,
        duplicate: true,
        match_kind: e.match_kind,
        patient: e.patient_id,
        contact: e.contact_id,
        conversation: e.conversation_id,
        message: opt_id(&row, "message_id")?,
        keyword: keyword.map(|k| Keyword::parse(&k)).transpose()?,
        queue: e.queue,
        priority: e.priority,
        emergency: e.emergency,
        reply_outbox: opt_id(&row, "reply_outbox_id")?,
        opted_out: opted_out(w, practice, digest).await?,
        needs_patient: e.needs_patient,
        route_status: e.route_status,
        work_queued: false,
    })
}

/// Moves an unverified web chat session's messages (sealed under its contact's key) into the
/// patient's web-chat conversation once the session is verified as that patient, inside `w`
/// and audited: the person who wrote them has now proved who they are. Returns how many.
pub(crate) async fn adopt_chat_messages(
    w: &mut WriteTx,
    store: &Store,
    ctx: &AccessContext,
    practice: PracticeId,
    session: Uuid,
    patient: PatientId,
    now: i64,
) -> Result<usize, StoreError> {
    let contact: Option<String> =
        sqlx::query_scalar("SELECT contact_id FROM web_chat_session WHERE id = $1")
            .bind(session.to_string())
            .fetch_one(w.conn())
            .await
            .map_err(|e| w.err(e))?;
    let Some(contact) = contact else {
        return Ok(0);
    };
    let contact: Uuid = id(&contact, "contact")?;
    let rows = sqlx::query(
        "SELECT id, body_ct FROM channel_inbound WHERE contact_id = $1 AND practice_id = $2 AND needs_patient = 1 AND body_ct IS NOT NULL ORDER BY received_at, id",
    )
    .bind(contact.to_string())
    .bind(practice.to_string())
    .fetch_all(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    if rows.is_empty() {
        return Ok(0);
    }
    let cdek = contact_key(w, store, contact).await?;
    let pdek = patient_key(w.conn(), store, patient).await?;
    let cid = open_conversation(w, ctx, practice, patient, Channel::WebChat, now).await?;
    for row in &rows {
        let receipt = uuid_col(row, "id")?;
        let body = zeroize::Zeroizing::new(open(
            &cdek,
            "channel_inbound",
            receipt,
            "body",
            &col::<Vec<u8>>(row, "body_ct")?,
        )?);
        let mid = attach_inbound(w, receipt, &pdek, cid, patient, &body, now).await?;
        w.audit(&ctx.event(
            now,
            Action::Update,
            channel_object("channel_inbound", receipt),
            Some(patient),
            vec![DataCategory::ClinicalMessage],
            Some("web_chat_verified"),
        ))
        .await?;
        w.audit(&ctx.event(
            now,
            Action::Create,
            object("message", mid),
            Some(patient),
            vec![DataCategory::ClinicalMessage],
            Some(Channel::WebChat.as_str()),
        ))
        .await?;
    }
    sqlx::query(
        "UPDATE channel_contact SET verified_patient_id = $2, updated_at = $3 WHERE id = $1",
    )
    .bind(contact.to_string())
    .bind(patient.to_string())
    .bind(now)
    .execute(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    Ok(rows.len())
}

/// Who wrote an inbound message.
#[derive(Clone, Copy)]
enum Writer {
    /// Found through the phone blind index (SMS, voice).
    Phone,
    /// A web chat session verified as this patient.
    ChatPatient(PatientId),
    /// An unverified web chat session, as its own contact.
    ChatContact(Uuid),
}

fn validate_provider_id(m: &NewInbound) -> Result<(), StoreError> {
    if m.provider_id.is_empty()
        || m.provider_id.len() > 64
        || !m
            .provider_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(StoreError::Invalid {
            field: "provider message id",
            expected: "1 to 64 letters, digits, '-' or '_'",
        });
    }
    if m.body.chars().count() > 20_000 {
        return Err(StoreError::Invalid {
            field: "message body",
            expected: "at most 20000 characters",
        });
    }
    Ok(())
}

/// A web chat session's own contact: a data key of its own and no number (the sealed "phone"
/// is empty; the digest is the session's, never a phone's blind index).
async fn chat_contact(
    w: &mut WriteTx,
    store: &Store,
    practice: PracticeId,
    session: Uuid,
    digest: &[u8; 32],
    now: i64,
) -> Result<Uuid, StoreError> {
    let cid = Uuid::now_v7();
    let dek = Dek::generate()?;
    let wrapped = store.keys().wrap_dek(&dek, &contact_wrap_context(cid))?;
    let phone_ct = seal(&dek, "channel_contact", cid, "phone", "")?;
    sqlx::query(
        "INSERT INTO channel_contact (id, practice_id, phone_digest, kek_version, dek_id, wrapped_dek, phone_ct, verified_patient_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $8)",
    )
    .bind(cid.to_string())
    .bind(practice.to_string())
    .bind(digest.to_vec())
    .bind(i64::from(wrapped.kek_version))
    .bind(wrapped.dek_id.to_vec())
    .bind(wrapped.bytes)
    .bind(phone_ct)
    .bind(now)
    .execute(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    sqlx::query("UPDATE web_chat_session SET contact_id = $2 WHERE id = $1")
        .bind(session.to_string())
        .bind(cid.to_string())
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
    Ok(cid)
}

fn validate_inbound(store: &Store, m: &NewInbound) -> Result<[u8; 32], StoreError> {
    validate_provider_id(m)?;
    phone_digest(store, &m.from)
}

fn fail_all(n: usize, first: StoreError) -> Vec<Result<InboundOutcome, StoreError>> {
    let mut v = Vec::with_capacity(n);
    v.push(Err(first));
    v.extend((1..n).map(|_| Err(StoreError::Conflict)));
    v
}

impl Store {
    /// Records an inbound message in one transaction (see the module documentation). A
    /// repeated delivery (same channel and provider id) stores nothing and returns the first
    /// delivery's outcome with `duplicate: true`.
    pub async fn record_inbound(
        &self,
        ctx: &AccessContext,
        m: &NewInbound,
    ) -> Result<InboundOutcome, StoreError> {
        let digest = validate_inbound(self, m)?;
        let now = self.now();
        let mut w = self.begin_write().await?;
        intake_actor(&mut w, ctx, m.practice, now).await?;
        let out = self
            .record_one(&mut w, ctx, m, digest, now, Writer::Phone)
            .await?;
        w.commit().await?;
        Ok(out)
    }

    /// Records several inbound messages in ONE transaction (one fsync), for a caller that
    /// batches concurrent webhooks. Each message is validated on its own (an invalid one gets
    /// its error, the others go on); a database failure fails every message of the batch
    /// (nothing of it is stored; the first gets the error, the rest [`StoreError::Conflict`]).
    pub async fn record_inbound_batch(
        &self,
        items: &[(AccessContext, NewInbound)],
    ) -> Vec<Result<InboundOutcome, StoreError>> {
        let mut out: Vec<Result<InboundOutcome, StoreError>> = Vec::with_capacity(items.len());
        let digests: Vec<Result<[u8; 32], StoreError>> = items
            .iter()
            .map(|(_, m)| validate_inbound(self, m))
            .collect();
        let now = self.now();
        let mut w = match self.begin_write().await {
            Ok(w) => w,
            Err(e) => return fail_all(items.len(), e),
        };
        for ((ctx, m), digest) in items.iter().zip(digests) {
            let d = match digest {
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
                Ok(d) => d,
            };
            // A refused caller gets its refusal (nothing of its message is stored); the
            // others go on. A database failure fails the batch.
            match intake_actor(&mut w, ctx, m.practice, now).await {
                Ok(()) => {}
                Err(e @ (StoreError::Forbidden { .. } | StoreError::NotFound { .. })) => {
                    out.push(Err(e));
                    continue;
                }
                Err(e) => return fail_all(items.len(), e),
            }
            match self.record_one(&mut w, ctx, m, d, now, Writer::Phone).await {
                Ok(o) => out.push(Ok(o)),
                Err(e) => return fail_all(items.len(), e),
            }
        }
        if let Err(e) = w.commit().await {
            return fail_all(items.len(), e);
        }
        out
    }

    /// Records a message written in a web chat session in one transaction, like an SMS
    /// (receipt, routing, emergency alert, audit), except for who wrote it: a verified session
    /// writes as its patient (into the patient's web-chat conversation), an unverified one as
    /// its own contact (sealed under the contact's key; staff pick the patient). The emergency
    /// text is never sent by SMS here: for a verified session it is stored as an outbound
    /// message of the conversation (the chat shows it); the caller shows it at once either way.
    pub async fn record_web_chat(
        &self,
        ctx: &AccessContext,
        session: &crate::ChatSession,
        m: &NewInbound,
    ) -> Result<InboundOutcome, StoreError> {
        ctx.require_internal_write()?;
        validate_provider_id(m)?;
        if m.practice != session.practice || m.channel != Channel::WebChat {
            return Err(StoreError::Invalid {
                field: "message",
                expected: "a web chat message of the session's practice",
            });
        }
        let now = self.now();
        let digest = crate::web_chat::chat_sender_digest(session.id);
        let mut w = self.begin_write().await?;
        // The session as it is now (it may have been verified since the caller read it).
        let row = sqlx::query(
            "SELECT patient_id, contact_id, ended_at FROM web_chat_session WHERE id = $1",
        )
        .bind(session.id.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let gone = || StoreError::NotFound {
            kind: "web chat session",
            id: session.id.to_string(),
        };
        let row = row.ok_or_else(gone)?;
        if col::<Option<i64>>(&row, "ended_at")?.is_some() {
            return Err(gone());
        }
        let writer = match opt_id::<PatientId>(&row, "patient_id")? {
            Some(p) => Writer::ChatPatient(p),
            None => Writer::ChatContact(match opt_id::<Uuid>(&row, "contact_id")? {
                Some(c) => c,
                None => chat_contact(&mut w, self, m.practice, session.id, &digest, now).await?,
            }),
        };
        let out = self.record_one(&mut w, ctx, m, digest, now, writer).await?;
        w.commit().await?;
        Ok(out)
    }

    async fn record_one(
        &self,
        w: &mut WriteTx,
        ctx: &AccessContext,
        m: &NewInbound,
        digest: [u8; 32],
        now: i64,
        writer: Writer,
    ) -> Result<InboundOutcome, StoreError> {
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT id FROM channel_inbound WHERE channel = $1 AND provider_id = $2",
        )
        .bind(m.channel.as_str())
        .bind(m.provider_id.clone())
        .fetch_optional(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        if let Some(existing) = existing {
            return outcome_of(w, id(&existing, "receipt")?, m.practice, &digest).await;
        }
        let receipt = Uuid::now_v7();
        // Who is writing.
        let chat = !matches!(writer, Writer::Phone);
        let (patients, reps): (Vec<String>, i64) = match writer {
            Writer::ChatPatient(p) => (vec![p.to_string()], 0),
            Writer::ChatContact(_) => (Vec::new(), 0),
            Writer::Phone => {
                let patients: Vec<String> = sqlx::query_scalar(
            "SELECT p.id FROM patient_index i JOIN patient p ON p.id = i.patient_id WHERE i.kind = 'phone' AND i.digest = $1 AND p.practice_id = $2 AND p.shredded_at IS NULL ORDER BY p.id LIMIT 10",
        )
        .bind(digest.to_vec())
        .bind(m.practice.to_string())
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
                let reps: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM channel_representative WHERE practice_id = $1 AND phone_digest = $2 AND revoked_at IS NULL",
        )
        .bind(m.practice.to_string())
        .bind(digest.to_vec())
        .fetch_one(w.conn())
        .await
        .map_err(|e| w.err(e))?;
                (patients, reps)
            }
        };
        let match_kind = match (patients.len(), reps) {
            (1, 0) => MatchKind::Patient,
            (n, _) if n > 1 => MatchKind::SharedNumber,
            (_, r) if r > 0 => MatchKind::Representative,
            _ => MatchKind::Unknown,
        };
        // Carrier keywords change the opt-out state in the same transaction.
        match m.keyword {
            Some(Keyword::Stop) => {
                set_opt_out(w, m.practice, &digest, true, Keyword::Stop, now).await?
            }
            Some(Keyword::Start) => {
                set_opt_out(w, m.practice, &digest, false, Keyword::Start, now).await?
            }
            _ => {}
        }
        let mut patient = None;
        let mut contact = None;
        let mut conversation = None;
        let mut message = None;
        let mut body_ct = None;
        let key: Dek;
        if match_kind == MatchKind::Patient {
            let pid: PatientId = id(
                patients.first().map(String::as_str).unwrap_or_default(),
                "patient",
            )?;
            key = patient_key(w.conn(), self, pid).await?;
            let cid = open_conversation(w, ctx, m.practice, pid, m.channel, now).await?;
            let mid = insert_message(
                w,
                &key,
                cid,
                pid,
                Direction::Inbound,
                None,
                m.category,
                &m.body,
                now,
            )
            .await?;
            w.audit(&ctx.event(
                now,
                Action::Create,
                object("message", mid),
                Some(pid),
                vec![m.category],
                Some(m.channel.as_str()),
            ))
            .await?;
            patient = Some(pid);
            conversation = Some(cid);
            message = Some(mid);
        } else {
            let (cid, dek) = match writer {
                Writer::ChatContact(c) => (c, contact_key(w, self, c).await?),
                _ => {
                    let (c, dek, _) =
                        contact_for(w, self, m.practice, &digest, &m.from, now).await?;
                    (c, dek)
                }
            };
            body_ct = Some(seal(&dek, "channel_inbound", receipt, "body", &m.body)?);
            key = dek;
            contact = Some(cid);
        }
        let needs_patient = match_kind != MatchKind::Patient && m.keyword.is_none();
        // The emergency fast path: the approved message to the sender, the on-call alert.
        let mut reply_outbox = None;
        if chat
            && m.routing.emergency
            && let (Some(text), Some(pid), Some(cid)) = (&m.emergency_reply, patient, conversation)
        {
            // The chat shows the emergency text at once; it is kept in the conversation so
            // staff see what the patient was told.
            let mid = insert_message(
                w,
                &key,
                cid,
                pid,
                Direction::Outbound,
                None,
                DataCategory::AdministrativeMessage,
                text,
                now,
            )
            .await?;
            w.audit(&ctx.event(
                now,
                Action::Disclose,
                object("message", mid),
                Some(pid),
                vec![DataCategory::AdministrativeMessage],
                Some("web_chat_emergency_reply"),
            ))
            .await?;
        } else if !chat
            && m.routing.emergency
            && let Some(text) = &m.emergency_reply
        {
            let recipient = match (patient, contact) {
                (Some(p), _) => Recipient::Patient(p),
                (None, Some(c)) => Recipient::Contact(c),
                (None, None) => return Err(StoreError::Corrupt("no recipient".into())),
            };
            let (oid, refused) = insert_outbox(
                w,
                &QueuedSms {
                    practice: m.practice,
                    recipient,
                    dek: &key,
                    to: &m.from,
                    digest,
                    body: text,
                    purpose: "emergency",
                    conversation,
                    approved_by: None,
                },
                now,
            )
            .await?;
            w.audit(&ctx.event(
                now,
                Action::Create,
                channel_object("outbound_sms", oid),
                patient,
                vec![DataCategory::Contact],
                Some(if refused {
                    "emergency_refused_opted_out"
                } else {
                    "emergency"
                }),
            ))
            .await?;
            reply_outbox = Some(oid);
        }
        // The conversation enters the staff work queues in this transaction (atomic with the
        // message, and no second commit per webhook).
        let mut work_queued = false;
        if let (None, Some(pid), Some(cid), Some(t)) =
            (m.keyword, patient, conversation, m.routing.triage())
            && perimeter_workflows::parse_reminder_reply(&m.body)
                == perimeter_workflows::ReminderReply::Other
        {
            crate::work::upsert_work(w, cid, m.practice, pid, &t, true, now).await?;
            w.audit(&ctx.event(
                now,
                Action::Update,
                object("conversation_work", cid),
                Some(pid),
                Vec::new(),
                Some("triage"),
            ))
            .await?;
            work_queued = true;
        }
        if m.routing.emergency {
            let payload = serde_json::json!({
                "receipt": receipt.to_string(),
                "conversation": conversation.map(|c| c.to_string()),
                "queue": m.routing.queue,
                "channel": m.channel.as_str(),
            })
            .to_string();
            for role in &m.alert_roles {
                sqlx::query(
                    "INSERT INTO notification_outbox (id, kind, payload, created_at, delivered_at, practice_id, recipient_role) VALUES ($1, 'emergency_intake', $2, $3, NULL, $4, $5)",
                )
                .bind(Uuid::now_v7().to_string())
                .bind(payload.clone())
                .bind(now)
                .bind(m.practice.to_string())
                .bind(role.as_str())
                .execute(w.conn())
                .await
                .map_err(|e| w.err(e))?;
            }
        }
        sqlx::query(
            "INSERT INTO channel_inbound (id, practice_id, channel, provider_id, sender_digest, match_kind, patient_id, contact_id, conversation_id, message_id, body_ct, keyword, intent, urgency, queue, priority, due_at, emergency, route_status, failure, reply_outbox_id, needs_patient, received_at, resolved_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)",
        )
        .bind(receipt.to_string())
        .bind(m.practice.to_string())
        .bind(m.channel.as_str())
        .bind(m.provider_id.clone())
        .bind(digest.to_vec())
        .bind(match_kind.as_str())
        .bind(patient.map(|p| p.to_string()))
        .bind(contact.map(|c| c.to_string()))
        .bind(conversation.map(|c| c.to_string()))
        .bind(message.map(|c| c.to_string()))
        .bind(body_ct)
        .bind(m.keyword.map(|k| k.as_str()))
        .bind(m.routing.intent)
        .bind(m.routing.urgency)
        .bind(m.routing.queue)
        .bind(m.routing.priority)
        .bind(m.routing.due_at_millis)
        .bind(i64::from(m.routing.emergency))
        .bind(m.routing.status.as_str())
        .bind(m.routing.failure)
        .bind(reply_outbox.map(|o| o.to_string()))
        .bind(i64::from(needs_patient))
        .bind(now)
        .bind(if m.keyword.is_some() { Some(now) } else { None })
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let detail = match (m.keyword, m.routing.failure) {
            (Some(k), _) => format!("keyword:{}", k.as_str()),
            (None, Some(f)) => format!("fallback:{f}"),
            (None, None) => format!("routed:{}", m.routing.queue),
        };
        w.audit(&ctx.event(
            now,
            Action::Create,
            channel_object("channel_inbound", receipt),
            patient,
            if patient.is_some() {
                Vec::new()
            } else {
                vec![m.category]
            },
            Some(&detail),
        ))
        .await?;
        let out_now = opted_out(w, m.practice, &digest).await?;
        Ok(InboundOutcome {
            receipt,
            duplicate: false,
            match_kind,
            patient,
            contact,
            conversation,
            message,
            keyword: m.keyword,
            queue: Some(m.routing.queue.to_owned()),
            priority: m.routing.priority,
            emergency: m.routing.emergency,
            reply_outbox,
            opted_out: out_now,
            needs_patient,
            route_status: m.routing.status,
            work_queued,
        })
    }

    /// The intake list of `practice`: unresolved inbound items, top priority first, then by
    /// due time (metadata only).
    /// Declares `view_queue` for a staff [`Scope`].
    pub async fn list_inbound(
        &self,
        scope: impl Into<Scope>,
        include_resolved: bool,
        limit: u32,
    ) -> Result<Vec<InboundEntry>, StoreError> {
        let practice = self.scope_practice(scope, Permission::ViewQueue).await?;
        let filter = if include_resolved {
            ""
        } else {
            " AND resolved_at IS NULL"
        };
        let rows = sqlx::query(&format!(
            "SELECT {INBOUND_COLUMNS} FROM channel_inbound WHERE practice_id = $1{filter} ORDER BY priority, due_at, received_at LIMIT $2"
        ))
        .bind(practice.to_string())
        .bind(i64::from(limit.min(INBOUND_PAGE_LIMIT)))
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        rows.iter().map(decode_entry).collect()
    }

    /// How many inbound messages `practice` has received (stored receipts).
    pub async fn count_inbound(&self, practice: PracticeId) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM channel_inbound WHERE practice_id = $1")
            .bind(practice.to_string())
            .fetch_one(self.pool())
            .await
            .map_err(|e| self.err(e))
    }

    /// One inbound item's metadata, if it is of `practice`.
    pub async fn inbound_entry(
        &self,
        practice: PracticeId,
        receipt: Uuid,
    ) -> Result<InboundEntry, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {INBOUND_COLUMNS} FROM channel_inbound WHERE id = $1 AND practice_id = $2"
        ))
        .bind(receipt.to_string())
        .bind(practice.to_string())
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.err(e))?
        .ok_or_else(|| StoreError::NotFound {
            kind: "inbound message",
            id: receipt.to_string(),
        })?;
        decode_entry(&row)
    }

    /// Staff picked the patient of a contact's inbound message: the body moves into that
    /// patient's conversation (sealed under the patient's key; the contact's copy is erased)
    /// and the contact is linked to the patient. Audited (a read of the contact's message, a
    /// write to the patient's record) in one transaction. Declares `register_patient`.
    pub async fn assign_inbound_patient(
        &self,
        ctx: &AccessContext,
        practice: PracticeId,
        receipt: Uuid,
        patient: PatientId,
    ) -> Result<ConversationId, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        require_actor(&mut w, ctx, Permission::RegisterPatient, Some(practice)).await?;
        let row = sqlx::query(
            "SELECT contact_id, body_ct, channel, needs_patient FROM channel_inbound WHERE id = $1 AND practice_id = $2",
        )
        .bind(receipt.to_string())
        .bind(practice.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(|e| w.err(e))?
        .ok_or_else(|| StoreError::NotFound {
            kind: "inbound message",
            id: receipt.to_string(),
        })?;
        let contact: Option<Uuid> = opt_id(&row, "contact_id")?;
        let body_ct: Option<Vec<u8>> = col(&row, "body_ct")?;
        let (Some(contact), Some(body_ct), 1) =
            (contact, body_ct, col::<i64>(&row, "needs_patient")?)
        else {
            return Err(StoreError::Invalid {
                field: "inbound message",
                expected: "a message waiting for staff to pick the patient",
            });
        };
        let channel = Channel::parse(&col::<String>(&row, "channel")?)?;
        if crate::emergency::patient_practice(w.conn(), self, patient).await? != practice {
            return Err(StoreError::NotFound {
                kind: "patient",
                id: patient.to_string(),
            });
        }
        let cdek = contact_key(&mut w, self, contact).await?;
        let body =
            zeroize::Zeroizing::new(open(&cdek, "channel_inbound", receipt, "body", &body_ct)?);
        let pdek = patient_key(w.conn(), self, patient).await?;
        let cid = open_conversation(&mut w, ctx, practice, patient, channel, now).await?;
        let mid = attach_inbound(&mut w, receipt, &pdek, cid, patient, &body, now).await?;
        sqlx::query(
            "UPDATE channel_contact SET verified_patient_id = $2, updated_at = $3 WHERE id = $1",
        )
        .bind(contact.to_string())
        .bind(patient.to_string())
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        w.audit(&ctx.event(
            now,
            Action::Update,
            channel_object("channel_inbound", receipt),
            Some(patient),
            vec![DataCategory::ClinicalMessage],
            Some("assign_patient"),
        ))
        .await?;
        w.audit(&ctx.event(
            now,
            Action::Create,
            object("message", mid),
            Some(patient),
            vec![DataCategory::ClinicalMessage],
            Some(channel.as_str()),
        ))
        .await?;
        w.commit().await?;
        Ok(cid)
    }

    /// Marks an inbound item handled (it leaves the intake list). Declares
    /// `triage_conversation`.
    pub async fn resolve_inbound(
        &self,
        ctx: &AccessContext,
        practice: PracticeId,
        receipt: Uuid,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        require_actor(&mut w, ctx, Permission::TriageConversation, Some(practice)).await?;
        let n = sqlx::query(
            "UPDATE channel_inbound SET resolved_at = $3 WHERE id = $1 AND practice_id = $2 AND resolved_at IS NULL",
        )
        .bind(receipt.to_string())
        .bind(practice.to_string())
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?
        .rows_affected();
        if n > 0 {
            w.audit(&ctx.event(
                now,
                Action::Update,
                channel_object("channel_inbound", receipt),
                None,
                Vec::new(),
                Some("resolved"),
            ))
            .await?;
        }
        w.commit().await?;
        Ok(n > 0)
    }

    /// Queues an SMS. An opted-out number is refused: the row is stored with status
    /// `refused` (never sent) and [`StoreError::OptedOut`] is returned.
    pub async fn queue_sms(&self, ctx: &AccessContext, sms: &NewSms) -> Result<Uuid, StoreError> {
        validate_body(&sms.body)?;
        let now = self.now();
        let mut w = self.begin_write().await?;
        let who = acting(&mut w, &ctx.actor, Permission::ReplyToPatient).await?;
        who.in_practice(sms.practice)?;
        check_approver(&mut w, &who, sms.practice, sms.approved_by).await?;
        let (dek, to) = match sms.recipient {
            Recipient::Patient(p) => {
                if crate::emergency::patient_practice(w.conn(), self, p).await? != sms.practice {
                    return Err(StoreError::NotFound {
                        kind: "patient",
                        id: p.to_string(),
                    });
                }
                let dek = patient_key(w.conn(), self, p).await?;
                let to = match &sms.to {
                    Some(t) => t.clone(),
                    None => crate::patients::read_patient(&mut w, self, p)
                        .await?
                        .data
                        .phone
                        .ok_or(StoreError::Invalid {
                            field: "recipient",
                            expected: "a patient with a phone number on file",
                        })?,
                };
                (dek, to)
            }
            Recipient::Contact(c) => {
                let dek = contact_key(&mut w, self, c).await?;
                let to = match &sms.to {
                    Some(t) => t.clone(),
                    None => {
                        let ct: Vec<u8> = sqlx::query_scalar(
                            "SELECT phone_ct FROM channel_contact WHERE id = $1 AND practice_id = $2",
                        )
                        .bind(c.to_string())
                        .bind(sms.practice.to_string())
                        .fetch_optional(w.conn())
                        .await
                        .map_err(|e| w.err(e))?
                        .ok_or_else(|| StoreError::NotFound {
                            kind: "contact",
                            id: c.to_string(),
                        })?;
                        open(&dek, "channel_contact", c, "phone", &ct)?
                    }
                };
                (dek, to)
            }
        };
        let digest = phone_digest(self, &to)?;
        let (oid, refused) = insert_outbox(
            &mut w,
            &QueuedSms {
                practice: sms.practice,
                recipient: sms.recipient,
                dek: &dek,
                to: &to,
                digest,
                body: &sms.body,
                purpose: sms.purpose,
                conversation: sms.conversation,
                approved_by: sms.approved_by,
            },
            now,
        )
        .await?;
        w.audit(&ctx.event(
            now,
            Action::Create,
            channel_object("outbound_sms", oid),
            recipient_patient(sms.recipient),
            vec![DataCategory::Contact],
            Some(if refused {
                "refused_opted_out"
            } else {
                sms.purpose
            }),
        ))
        .await?;
        w.commit().await?;
        if refused {
            return Err(StoreError::OptedOut);
        }
        Ok(oid)
    }

    /// A reply to a patient's conversation: stored as an outbound message of the conversation
    /// (with `author`, the approver) and queued to the patient's number on file, in one
    /// transaction. Refused ([`StoreError::OptedOut`], nothing stored but the refused outbox
    /// row) when the number opted out. Returns the outbox id.
    pub async fn queue_conversation_reply(
        &self,
        ctx: &AccessContext,
        conversation: ConversationId,
        body: &str,
        approved_by: Option<StaffId>,
        category: DataCategory,
    ) -> Result<Uuid, StoreError> {
        validate_body(body)?;
        let now = self.now();
        let mut w = self.begin_write().await?;
        let who = acting(&mut w, &ctx.actor, Permission::ReplyToPatient).await?;
        let row = sqlx::query("SELECT patient_id, practice_id FROM conversation WHERE id = $1")
            .bind(conversation.to_string())
            .fetch_optional(w.conn())
            .await
            .map_err(|e| w.err(e))?
            .ok_or_else(|| StoreError::NotFound {
                kind: "conversation",
                id: conversation.to_string(),
            })?;
        let patient: PatientId = id(&col::<String>(&row, "patient_id")?, "patient")?;
        let practice: PracticeId = id(&col::<String>(&row, "practice_id")?, "practice")?;
        who.within(practice, "conversation", conversation)?;
        check_approver(&mut w, &who, practice, approved_by).await?;
        let dek = patient_key(w.conn(), self, patient).await?;
        let to = crate::patients::read_patient(&mut w, self, patient)
            .await?
            .data
            .phone
            .ok_or(StoreError::Invalid {
                field: "recipient",
                expected: "a patient with a phone number on file",
            })?;
        let digest = phone_digest(self, &to)?;
        let (oid, refused) = insert_outbox(
            &mut w,
            &QueuedSms {
                practice,
                recipient: Recipient::Patient(patient),
                dek: &dek,
                to: &to,
                digest,
                body,
                purpose: "reply",
                conversation: Some(conversation),
                approved_by,
            },
            now,
        )
        .await?;
        w.audit(&ctx.event(
            now,
            Action::Create,
            channel_object("outbound_sms", oid),
            Some(patient),
            vec![DataCategory::Contact, category],
            Some(if refused {
                "refused_opted_out"
            } else {
                "reply"
            }),
        ))
        .await?;
        if refused {
            w.commit().await?;
            return Err(StoreError::OptedOut);
        }
        let mid = insert_message(
            &mut w,
            &dek,
            conversation,
            patient,
            Direction::Outbound,
            approved_by,
            category,
            body,
            now,
        )
        .await?;
        w.audit(&ctx.event(
            now,
            Action::Create,
            object("message", mid),
            Some(patient),
            vec![category],
            Some("sms_reply"),
        ))
        .await?;
        w.commit().await?;
        Ok(oid)
    }

    /// Claims up to `limit` due outbox messages for sending (status `sending`, leased for
    /// [`SEND_LEASE_MILLIS`]), decrypted; audited as reads by the sender. Messages to a number
    /// that opted out since they were queued become `refused` instead.
    pub async fn claim_due_sms(
        &self,
        ctx: &AccessContext,
        limit: u32,
    ) -> Result<Vec<ClaimedSms>, StoreError> {
        ctx.require_internal()?;
        let now = self.now();
        let mut w = self.begin_write().await?;
        let rows = sqlx::query(
            "SELECT o.id, o.practice_id, o.patient_id, o.contact_id, o.to_ct, o.body_ct, o.attempts, o.to_digest, (SELECT opted_out FROM channel_opt_out x WHERE x.practice_id = o.practice_id AND x.phone_digest = o.to_digest) AS opted FROM channel_outbox o WHERE o.status IN ('queued', 'sending') AND o.next_attempt_at <= $1 ORDER BY CASE WHEN o.purpose = 'emergency' THEN 0 ELSE 1 END, o.next_attempt_at, o.id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit.clamp(1, 100)))
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let mut out = Vec::with_capacity(rows.len());
        let mut events = Vec::new();
        for row in &rows {
            let oid = uuid_col(row, "id")?;
            let patient: Option<PatientId> = opt_id(row, "patient_id")?;
            let contact: Option<Uuid> = opt_id(row, "contact_id")?;
            let opted: Option<i64> = col(row, "opted")?;
            if opted == Some(1) {
                sqlx::query("UPDATE channel_outbox SET status = 'refused', last_error = 'opted_out', next_attempt_at = NULL, updated_at = $2 WHERE id = $1")
                    .bind(oid.to_string())
                    .bind(now)
                    .execute(w.conn())
                    .await
                    .map_err(|e| w.err(e))?;
                events.push(ctx.event(
                    now,
                    Action::Update,
                    channel_object("outbound_sms", oid),
                    patient,
                    Vec::new(),
                    Some("refused_opted_out"),
                ));
                continue;
            }
            let dek = match (patient, contact) {
                (Some(p), _) => patient_key(w.conn(), self, p).await,
                (None, Some(c)) => contact_key(&mut w, self, c).await,
                (None, None) => Err(StoreError::Corrupt("outbox row without recipient".into())),
            };
            let decoded = dek.and_then(|dek| {
                Ok((
                    open(
                        &dek,
                        "channel_outbox",
                        oid,
                        "to",
                        &col::<Vec<u8>>(row, "to_ct")?,
                    )?,
                    open(
                        &dek,
                        "channel_outbox",
                        oid,
                        "body",
                        &col::<Vec<u8>>(row, "body_ct")?,
                    )?,
                ))
            });
            let (to, body) = match decoded {
                Ok(v) => v,
                Err(StoreError::Shredded { .. }) | Err(StoreError::Crypto(_)) => {
                    sqlx::query("UPDATE channel_outbox SET status = 'failed', last_error = 'unreadable', next_attempt_at = NULL, updated_at = $2 WHERE id = $1")
                        .bind(oid.to_string())
                        .bind(now)
                        .execute(w.conn())
                        .await
                        .map_err(|e| w.err(e))?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let attempts = col::<i64>(row, "attempts")?.saturating_add(1);
            sqlx::query("UPDATE channel_outbox SET status = 'sending', attempts = $2, next_attempt_at = $3, updated_at = $4 WHERE id = $1")
                .bind(oid.to_string())
                .bind(attempts)
                .bind(now.saturating_add(SEND_LEASE_MILLIS))
                .bind(now)
                .execute(w.conn())
                .await
                .map_err(|e| w.err(e))?;
            events.push(ctx.event(
                now,
                Action::Disclose,
                channel_object("outbound_sms", oid),
                patient,
                vec![DataCategory::Contact],
                Some("carrier_send"),
            ));
            out.push(ClaimedSms {
                id: oid,
                to,
                body,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            });
        }
        w.audit_batch(&events).await?;
        w.commit().await?;
        Ok(out)
    }

    /// The carrier accepted a claimed message.
    pub async fn mark_sms_sent(&self, outbox: Uuid, provider_sid: &str) -> Result<(), StoreError> {
        let now = self.now();
        sqlx::query("UPDATE channel_outbox SET status = 'sent', provider_sid = $2, next_attempt_at = NULL, last_error = NULL, updated_at = $3 WHERE id = $1 AND status = 'sending'")
            .bind(outbox.to_string())
            .bind(provider_sid.to_owned())
            .bind(now)
            .execute(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A claimed message failed transiently: try again at `next_attempt_at_millis`.
    pub async fn mark_sms_retry(
        &self,
        outbox: Uuid,
        next_attempt_at_millis: i64,
        error_code: &'static str,
    ) -> Result<(), StoreError> {
        let now = self.now();
        sqlx::query("UPDATE channel_outbox SET status = 'queued', next_attempt_at = $2, last_error = $3, updated_at = $4 WHERE id = $1 AND status = 'sending'")
            .bind(outbox.to_string())
            .bind(next_attempt_at_millis)
            .bind(error_code)
            .bind(now)
            .execute(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A claimed message failed for good.
    pub async fn mark_sms_failed(
        &self,
        outbox: Uuid,
        error_code: &'static str,
    ) -> Result<(), StoreError> {
        let now = self.now();
        sqlx::query("UPDATE channel_outbox SET status = 'failed', next_attempt_at = NULL, last_error = $2, updated_at = $3 WHERE id = $1 AND status = 'sending'")
            .bind(outbox.to_string())
            .bind(error_code)
            .bind(now)
            .execute(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A carrier status callback: moves the message with `provider_sid` forward (never back:
    /// callbacks arrive out of order). `false`: no such message.
    pub async fn update_sms_status(
        &self,
        provider_sid: &str,
        status: OutboxStatus,
        error_code: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let current: Option<String> =
            sqlx::query_scalar("SELECT status FROM channel_outbox WHERE provider_sid = $1")
                .bind(provider_sid.to_owned())
                .fetch_optional(self.pool())
                .await
                .map_err(|e| self.err(e))?;
        let Some(current) = current else {
            return Ok(false);
        };
        let current = OutboxStatus::parse(&current)
            .ok_or_else(|| StoreError::Corrupt("unknown outbox status stored".into()))?;
        if status.rank() < current.rank()
            || (status.rank() == current.rank() && status == current)
            || current.rank() == 3
        {
            return Ok(true);
        }
        let code: Option<String> = error_code
            .filter(|c| !c.is_empty() && c.len() <= 10 && c.bytes().all(|b| b.is_ascii_digit()))
            .map(|c| format!("carrier_{c}"));
        sqlx::query("UPDATE channel_outbox SET status = $2, last_error = COALESCE($3, last_error), updated_at = $4 WHERE provider_sid = $1")
            .bind(provider_sid.to_owned())
            .bind(status.as_str())
            .bind(code)
            .bind(now)
            .execute(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        Ok(true)
    }

    /// An outbox row's metadata, if it is of `practice`.
    pub async fn outbox_entry(
        &self,
        practice: PracticeId,
        outbox: Uuid,
    ) -> Result<OutboxEntry, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM channel_outbox WHERE id = $1 AND practice_id = $2"
        ))
        .bind(outbox.to_string())
        .bind(practice.to_string())
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.err(e))?
        .ok_or_else(|| StoreError::NotFound {
            kind: "outbound message",
            id: outbox.to_string(),
        })?;
        decode_outbox(&row)
    }

    /// The newest outbox rows of `practice` (metadata only), optionally of one status.
    /// Declares `manage_channels` for a staff [`Scope`].
    pub async fn list_outbox(
        &self,
        scope: impl Into<Scope>,
        status: Option<OutboxStatus>,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let practice = self
            .scope_practice(scope, Permission::ManageChannels)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM channel_outbox WHERE practice_id = $1 AND ($2 = '' OR status = $2) ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(practice.to_string())
        .bind(status.map(OutboxStatus::as_str).unwrap_or(""))
        .bind(i64::from(limit.min(INBOUND_PAGE_LIMIT)))
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        rows.iter().map(decode_outbox).collect()
    }

    /// Whether `phone` is opted out in `practice`.
    /// Declares `manage_channels` for a staff [`Scope`].
    pub async fn is_opted_out(
        &self,
        scope: impl Into<Scope>,
        phone: &str,
    ) -> Result<bool, StoreError> {
        let practice = self
            .scope_practice(scope, Permission::ManageChannels)
            .await?;
        let digest = phone_digest(self, phone)?;
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT opted_out FROM channel_opt_out WHERE practice_id = $1 AND phone_digest = $2",
        )
        .bind(practice.to_string())
        .bind(digest.to_vec())
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        Ok(v == Some(1))
    }

    /// The opt-out records of `practice`, newest first.
    /// Declares `manage_channels` for a staff [`Scope`].
    pub async fn list_opt_outs(
        &self,
        scope: impl Into<Scope>,
        only_opted_out: bool,
        limit: u32,
    ) -> Result<Vec<OptOutEntry>, StoreError> {
        let practice = self
            .scope_practice(scope, Permission::ManageChannels)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT phone_digest, opted_out, keyword, changed_at FROM channel_opt_out WHERE practice_id = $1{} ORDER BY changed_at DESC LIMIT $2",
            if only_opted_out { " AND opted_out = 1" } else { "" }
        ))
        .bind(practice.to_string())
        .bind(i64::from(limit.min(INBOUND_PAGE_LIMIT)))
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                let d: Vec<u8> = col(r, "phone_digest")?;
                Ok(OptOutEntry {
                    number_ref: hex::encode(d.get(..8).unwrap_or_default()),
                    opted_out: col::<i64>(r, "opted_out")? == 1,
                    keyword: col(r, "keyword")?,
                    changed_at_millis: col(r, "changed_at")?,
                })
            })
            .collect()
    }

    /// The contacts of `practice` (metadata only), newest first.
    /// Declares `register_patient` for a staff [`Scope`].
    pub async fn list_contacts(
        &self,
        scope: impl Into<Scope>,
        limit: u32,
    ) -> Result<Vec<ContactEntry>, StoreError> {
        let practice = self
            .scope_practice(scope, Permission::RegisterPatient)
            .await?;
        let rows = sqlx::query(
            "SELECT c.id, c.verified_patient_id, c.created_at, (SELECT COUNT(*) FROM channel_inbound i WHERE i.contact_id = c.id AND i.needs_patient = 1) AS pending FROM channel_contact c WHERE c.practice_id = $1 ORDER BY c.created_at DESC, c.id DESC LIMIT $2",
        )
        .bind(practice.to_string())
        .bind(i64::from(limit.min(INBOUND_PAGE_LIMIT)))
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                Ok(ContactEntry {
                    id: uuid_col(r, "id")?,
                    verified_patient_id: opt_id(r, "verified_patient_id")?,
                    pending_inbound: col(r, "pending")?,
                    created_at_millis: col(r, "created_at")?,
                })
            })
            .collect()
    }

    /// Registers a family member or caregiver on a patient's record (sealed under the
    /// patient's key, audited). Declares `edit_contact_data`; `by` (who verified them, when
    /// `rep.verified`) must be the acting user when a user acts.
    pub async fn add_representative(
        &self,
        ctx: &AccessContext,
        practice: PracticeId,
        patient: PatientId,
        rep: &NewRepresentative,
        by: Option<StaffId>,
    ) -> Result<Uuid, StoreError> {
        if !RELATIONSHIPS.contains(&rep.relationship.as_str()) {
            return Err(StoreError::Invalid {
                field: "relationship",
                expected: "parent, guardian, spouse, child, caregiver or other",
            });
        }
        if rep.name.trim().is_empty() || rep.name.chars().count() > 200 {
            return Err(StoreError::Invalid {
                field: "name",
                expected: "1 to 200 characters",
            });
        }
        let digest = phone_digest(self, &rep.phone)?;
        let now = self.now();
        let rid = Uuid::now_v7();
        let mut w = self.begin_write().await?;
        verifier_is_actor(&mut w, ctx, practice, by).await?;
        if crate::emergency::patient_practice(w.conn(), self, patient).await? != practice {
            return Err(StoreError::NotFound {
                kind: "patient",
                id: patient.to_string(),
            });
        }
        let dek = patient_key(w.conn(), self, patient).await?;
        sqlx::query(
            "INSERT INTO channel_representative (id, practice_id, patient_id, phone_digest, name_ct, phone_ct, relationship, verified_at, verified_by, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)",
        )
        .bind(rid.to_string())
        .bind(practice.to_string())
        .bind(patient.to_string())
        .bind(digest.to_vec())
        .bind(seal(&dek, "channel_representative", rid, "name", rep.name.trim())?)
        .bind(seal(&dek, "channel_representative", rid, "phone", &rep.phone)?)
        .bind(rep.relationship.clone())
        .bind(if rep.verified { Some(now) } else { None })
        .bind(if rep.verified { by.map(|b| b.to_string()) } else { None })
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        w.audit(&ctx.event(
            now,
            Action::Create,
            channel_object("representative", rid),
            Some(patient),
            vec![DataCategory::Contact],
            Some(rep.relationship.as_str()),
        ))
        .await?;
        w.commit().await?;
        Ok(rid)
    }

    /// A patient's representatives, decrypted (audited as a read of the record's contact data).
    /// Declares `view_contact_data`.
    pub async fn list_representatives(
        &self,
        ctx: &AccessContext,
        practice: PracticeId,
        patient: PatientId,
    ) -> Result<Vec<Representative>, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        require_actor(&mut w, ctx, Permission::ViewContactData, Some(practice)).await?;
        if crate::emergency::patient_practice(w.conn(), self, patient).await? != practice {
            return Err(StoreError::NotFound {
                kind: "patient",
                id: patient.to_string(),
            });
        }
        let dek = patient_key(w.conn(), self, patient).await?;
        let rows = sqlx::query(
            "SELECT id, name_ct, phone_ct, relationship, verified_at, revoked_at, created_at FROM channel_representative WHERE patient_id = $1 ORDER BY created_at, id",
        )
        .bind(patient.to_string())
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let rid = uuid_col(r, "id")?;
            out.push(Representative {
                id: rid,
                patient_id: patient,
                name: open(
                    &dek,
                    "channel_representative",
                    rid,
                    "name",
                    &col::<Vec<u8>>(r, "name_ct")?,
                )?,
                phone: open(
                    &dek,
                    "channel_representative",
                    rid,
                    "phone",
                    &col::<Vec<u8>>(r, "phone_ct")?,
                )?,
                relationship: col(r, "relationship")?,
                verified_at_millis: col(r, "verified_at")?,
                revoked_at_millis: col(r, "revoked_at")?,
                created_at_millis: col(r, "created_at")?,
            });
        }
        w.audit(&ctx.event(
            now,
            Action::Read,
            ObjectRef {
                kind: "representative_list".into(),
                id: None,
            },
            Some(patient),
            vec![DataCategory::Contact],
            None,
        ))
        .await?;
        w.commit().await?;
        Ok(out)
    }

    /// Marks a representative verified (`verify`) or revokes them; audited. `false`: no such
    /// active representative of the patient. Declares `edit_contact_data`; `by` must be the
    /// acting user when a user acts.
    pub async fn update_representative(
        &self,
        ctx: &AccessContext,
        practice: PracticeId,
        patient: PatientId,
        representative: Uuid,
        verify: bool,
        by: StaffId,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        verifier_is_actor(&mut w, ctx, practice, Some(by)).await?;
        let sql = if verify {
            "UPDATE channel_representative SET verified_at = $4, verified_by = $5 WHERE id = $1 AND practice_id = $2 AND patient_id = $3 AND revoked_at IS NULL"
        } else {
            "UPDATE channel_representative SET revoked_at = $4, verified_by = COALESCE(verified_by, $5) WHERE id = $1 AND practice_id = $2 AND patient_id = $3 AND revoked_at IS NULL"
        };
        let n = sqlx::query(sql)
            .bind(representative.to_string())
            .bind(practice.to_string())
            .bind(patient.to_string())
            .bind(now)
            .bind(by.to_string())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?
            .rows_affected();
        if n > 0 {
            w.audit(&ctx.event(
                now,
                Action::Update,
                channel_object("representative", representative),
                Some(patient),
                Vec::new(),
                Some(if verify { "verified" } else { "revoked" }),
            ))
            .await?;
        }
        w.commit().await?;
        Ok(n > 0)
    }
}

/// For the representative changes (`edit_contact_data`): checks the actor in the database
/// within `practice`, and that a user records no one but themselves as `by`.
async fn verifier_is_actor(
    w: &mut WriteTx,
    ctx: &AccessContext,
    practice: PracticeId,
    by: Option<StaffId>,
) -> Result<(), StoreError> {
    let who = acting(w, &ctx.actor, Permission::EditContactData).await?;
    who.in_practice(practice)?;
    match (who.user(), by) {
        (Some(user), Some(by)) if user != by => Err(StoreError::Forbidden {
            permission: Permission::EditContactData.as_str(),
        }),
        _ => Ok(()),
    }
}

/// For the intake (`record_inbound`, `record_inbound_batch`; declares `ingest_channel`):
/// Perimeter itself (the SMS webhooks) or a service client the database entitles
/// ([`acting_client`]: the voicemail intake's API token), acting in `practice`.
pub(crate) async fn intake_actor(
    w: &mut WriteTx,
    ctx: &AccessContext,
    practice: PracticeId,
    now: i64,
) -> Result<(), StoreError> {
    acting_client(w, ctx, Permission::IngestChannel, now)
        .await?
        .in_practice(practice)
}

/// For the outbound texts (`reply_to_patient`): the approver recorded on a text, if any, is
/// an active account of `practice` whose stored roles hold `reply_to_patient` (another
/// practice's account is not found); a user acting names no one but themselves.
async fn check_approver(
    w: &mut WriteTx,
    who: &Acting,
    practice: PracticeId,
    approved_by: Option<StaffId>,
) -> Result<(), StoreError> {
    if let Some(user) = who.user()
        && approved_by != Some(user)
    {
        return Err(match approved_by {
            None => StoreError::Invalid {
                field: "approved_by",
                expected: "the member of staff sending the text",
            },
            Some(_) => StoreError::Forbidden {
                permission: Permission::ReplyToPatient.as_str(),
            },
        });
    }
    let Some(approver) = approved_by else {
        return Ok(());
    };
    let account = reader(w, &Viewer::new(approver), Permission::ReplyToPatient).await?;
    if account.practice != practice {
        return Err(StoreError::NotFound {
            kind: "staff user",
            id: approver.to_string(),
        });
    }
    Ok(())
}

//! Patient web chat (migration 0009): chat sessions, identity verification and the chat's view
//! of the patient's web-chat conversation.
//!
//! * A session is a random 256-bit token held by the patient's browser; the database keeps
//!   only its SHA-256 ([`chat_token_hash`]). Sessions end after an idle and an absolute limit
//!   measured with the injected clock ([`ChatPolicy`]), and when verification failed too often.
//! * Until the patient proves who they are the session is bound to nobody: what they write is
//!   taken in as from an unverified contact (sealed under the contact's own data key, see
//!   `channels.rs`) and nothing from any record is shown. Verification moves those messages
//!   into the patient's web-chat conversation (audited).
//! * Verification by name and birth date ([`Store::verify_chat_identity`]): the name is looked
//!   up through the name blind index, each candidate's birth date is decrypted and compared;
//!   exactly one match binds the session. Every failure looks the same to the caller.
//! * Verification by a one-time code ([`Store::request_chat_code`], [`Store::verify_chat_code`]):
//!   the code goes through the SMS outbox to the phone on file of the one patient with that
//!   number; it is stored hashed, expires, is single use and allows a few attempts.
//! * Failures are counted per session and per client address (a hash of it) in a window; a
//!   throttled attempt checks nothing.
//! * Every attempt and every read is audited in the transaction that does it, with the
//!   session's id as the object: actor `system:web_chat` (failed and refused attempts:
//!   `anonymous`; a failed name check names the record when the name is exactly one patient's).
//! * Every function here that takes an [`AccessContext`] is for Perimeter's own chat routes
//!   ([`chat_context`]: the patient is known by the session token, not by an actor): a user,
//!   service client or anonymous context is refused ([`StoreError::Forbidden`]) before
//!   anything is read.

use std::fmt;

use perimeter_audit::{Action, Actor, ObjectRef, Outcome};
use perimeter_crypto::{Aad, Dek, IndexKind, decrypt_text};
use perimeter_domain::{ConversationId, DataCategory, PatientId, PracticeId};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::db::WriteTx;
use crate::model::{AccessContext, object};
use crate::patients::patient_key;
use crate::rows::{col, id};
use crate::{Store, StoreError};

/// The most messages one read of the chat returns.
pub const CHAT_PAGE_LIMIT: u32 = 100;

/// Limits of web chat sessions and verification (all times in milliseconds of the injected
/// clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatPolicy {
    /// A session unused this long ends.
    pub idle_millis: i64,
    /// A session ends this long after it started, used or not.
    pub absolute_millis: i64,
    /// A one-time code is valid this long.
    pub code_ttl_millis: i64,
    /// Wrong codes accepted for one code before it is void.
    pub code_attempts: u32,
    /// Codes one session may have sent.
    pub code_sends: u32,
    /// Failed verifications after which the session ends.
    pub session_failures: u32,
    /// Failed verifications from one client address within `address_window_millis` after
    /// which every further attempt from it is refused until the window passes.
    pub address_failures: u32,
    /// The address window.
    pub address_window_millis: i64,
    /// Sessions one client address may start within `address_window_millis` (the public
    /// start route creates rows; this bounds what one client can make it create).
    pub address_sessions: u32,
}

impl Default for ChatPolicy {
    fn default() -> Self {
        Self {
            idle_millis: 15 * 60_000,
            absolute_millis: 4 * 3_600_000,
            code_ttl_millis: 10 * 60_000,
            code_attempts: 5,
            code_sends: 3,
            session_failures: 5,
            address_failures: 20,
            address_window_millis: 15 * 60_000,
            address_sessions: 30,
        }
    }
}

/// A live chat session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSession {
    /// Its id (not secret; the object of its audit records).
    pub id: Uuid,
    /// The practice.
    pub practice: PracticeId,
    /// The verified patient, once verified.
    pub patient: Option<PatientId>,
    /// The contact the unverified writer's messages are sealed under.
    pub contact: Option<Uuid>,
    /// How it was verified (`name_birth_date`, `sms_code`).
    pub verified_by: Option<String>,
    /// Started (ms).
    pub created_at_millis: i64,
}

/// A chat token's lookup result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatLookup {
    /// The session is live (and was not touched: see [`Store::touch_chat_session`]).
    Live(ChatSession),
    /// The session ended (now or before).
    Ended,
    /// No such session.
    Unknown,
}

/// What a verification attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatVerification {
    /// The session is now bound to this patient.
    Verified(PatientId),
    /// Not verified (every cause looks the same).
    Failed,
    /// Too many failures: the session ended.
    SessionLocked,
    /// Too many failures from this address: nothing was checked.
    Throttled,
}

/// What a code request did (the caller tells the patient the same in every case but
/// throttling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatCodeRequest {
    /// A code was queued to the phone on file (the outbox id).
    Sent(Uuid),
    /// No code was sent (no single patient has that number, or it opted out).
    NotSent,
    /// The session asked for too many codes, or the address is throttled.
    Throttled,
}

/// A message as the verified patient sees it in the chat.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChatMessage {
    /// The cursor to read after this message.
    pub cursor: String,
    /// `inbound` (the patient's) or `outbound` (the practice's).
    pub direction: String,
    /// Written by staff (`false`: an automatic message such as the emergency text).
    pub from_staff: bool,
    /// The text.
    pub body: String,
    /// When (ms).
    pub at_millis: i64,
}

impl fmt::Debug for ChatMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatMessage")
            .field("cursor", &self.cursor)
            .field("direction", &self.direction)
            .finish_non_exhaustive()
    }
}

/// A fresh chat token (64 hex characters) and its hash.
pub fn new_chat_token() -> Result<(String, [u8; 32]), StoreError> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    OsRng
        .try_fill_bytes(&mut bytes[..])
        .map_err(|_| StoreError::Corrupt("the system random generator failed".into()))?;
    let token = hex::encode(bytes.as_ref());
    let hash = chat_token_hash(&token);
    Ok((token, hash))
}

/// The stored hash of a chat token; `None` when the text cannot be a token (refused before any
/// lookup).
pub fn parse_chat_token(text: &str) -> Option<[u8; 32]> {
    (text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
    .then(|| chat_token_hash(text))
}

fn chat_token_hash(token: &str) -> [u8; 32] {
    sha(&[b"perimeter-chat-session/1", token.as_bytes()])
}

/// The hash under which failures of a client address are counted (the address is not kept).
pub fn chat_address_subject(address: &str) -> [u8; 32] {
    sha(&[b"perimeter-chat-address/1", address.as_bytes()])
}

/// The hash under which a client address's session starts are counted.
pub fn chat_start_subject(address: &str) -> [u8; 32] {
    sha(&[b"perimeter-chat-start/1", address.as_bytes()])
}

/// The sender digest of a chat session's messages (in place of a phone number's blind index).
pub(crate) fn chat_sender_digest(session: Uuid) -> [u8; 32] {
    sha(&[b"perimeter-chat-contact/1", session.as_bytes()])
}

fn code_hash(session: Uuid, code: &str) -> [u8; 32] {
    sha(&[
        b"perimeter-chat-code/1",
        session.as_bytes(),
        code.as_bytes(),
    ])
}

fn sha(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(p);
    }
    h.finalize().into()
}

/// A uniformly random six-digit code.
fn new_code() -> Result<String, StoreError> {
    // Rejection sampling: 4_294_000_000 is the largest multiple of 10^6 below 2^32.
    loop {
        let mut b = [0u8; 4];
        OsRng
            .try_fill_bytes(&mut b)
            .map_err(|_| StoreError::Corrupt("the system random generator failed".into()))?;
        let v = u32::from_le_bytes(b);
        if v < 4_294_000_000 {
            return Ok(format!("{:06}", v % 1_000_000));
        }
    }
}

/// The audit context of the chat (a patient acting through the widget).
pub fn chat_context(user_agent: Option<String>) -> AccessContext {
    let mut ctx = AccessContext::system("web_chat");
    ctx.user_agent = user_agent;
    ctx
}

fn session_object(session: Uuid) -> ObjectRef {
    object("web_chat_session", session)
}

const SESSION_COLUMNS: &str = "id, practice_id, patient_id, contact_id, verified_by, failed_attempts, created_at, last_seen_at, ended_at";

fn decode_session(row: &sqlx::any::AnyRow) -> Result<ChatSession, StoreError> {
    Ok(ChatSession {
        id: id(&col::<String>(row, "id")?, "web chat session")?,
        practice: id(&col::<String>(row, "practice_id")?, "practice")?,
        patient: col::<Option<String>>(row, "patient_id")?
            .map(|s| id(&s, "patient"))
            .transpose()?,
        contact: col::<Option<String>>(row, "contact_id")?
            .map(|s| id(&s, "contact"))
            .transpose()?,
        verified_by: col(row, "verified_by")?,
        created_at_millis: col(row, "created_at")?,
    })
}

/// Ends a session inside `w` (audited).
async fn end_in(
    w: &mut WriteTx,
    ctx: &AccessContext,
    session: Uuid,
    patient: Option<PatientId>,
    reason: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE web_chat_session SET ended_at = $2, end_reason = $3 WHERE id = $1 AND ended_at IS NULL",
    )
    .bind(session.to_string())
    .bind(now)
    .bind(reason.to_owned())
    .execute(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    sqlx::query("DELETE FROM web_chat_code WHERE session_id = $1")
        .bind(session.to_string())
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
    w.audit(&ctx.event(
        now,
        Action::Logout,
        session_object(session),
        patient,
        Vec::new(),
        Some(reason),
    ))
    .await?;
    Ok(())
}

/// The address throttle: `true` when the address is over its limit in the current window.
async fn address_throttled(
    w: &mut WriteTx,
    policy: &ChatPolicy,
    subject: &[u8; 32],
    now: i64,
) -> Result<bool, StoreError> {
    over_limit(w, policy, subject, policy.address_failures, now).await
}

/// Whether `subject` has reached `limit` counts in the current window.
async fn over_limit(
    w: &mut WriteTx,
    policy: &ChatPolicy,
    subject: &[u8; 32],
    limit: u32,
    now: i64,
) -> Result<bool, StoreError> {
    let row =
        sqlx::query("SELECT window_start, failures FROM web_chat_throttle WHERE subject = $1")
            .bind(subject.to_vec())
            .fetch_optional(w.conn())
            .await
            .map_err(|e| w.err(e))?;
    let Some(row) = row else {
        return Ok(false);
    };
    let start: i64 = col(&row, "window_start")?;
    let failures: i64 = col(&row, "failures")?;
    Ok(now.saturating_sub(start) < policy.address_window_millis && failures >= i64::from(limit))
}

async fn count_address_failure(
    w: &mut WriteTx,
    policy: &ChatPolicy,
    subject: &[u8; 32],
    now: i64,
) -> Result<(), StoreError> {
    let window_open = now.saturating_sub(policy.address_window_millis);
    sqlx::query(
        "INSERT INTO web_chat_throttle (subject, window_start, failures) VALUES ($1, $2, 1) ON CONFLICT (subject) DO UPDATE SET failures = CASE WHEN web_chat_throttle.window_start <= $3 THEN 1 ELSE web_chat_throttle.failures + 1 END, window_start = CASE WHEN web_chat_throttle.window_start <= $3 THEN $2 ELSE web_chat_throttle.window_start END",
    )
    .bind(subject.to_vec())
    .bind(now)
    .bind(window_open)
    .execute(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    Ok(())
}

/// Counts a failed verification of `session`; ends it (and says so) at the limit.
async fn count_session_failure(
    w: &mut WriteTx,
    ctx: &AccessContext,
    policy: &ChatPolicy,
    session: Uuid,
    now: i64,
) -> Result<bool, StoreError> {
    sqlx::query("UPDATE web_chat_session SET failed_attempts = failed_attempts + 1 WHERE id = $1")
        .bind(session.to_string())
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
    let failures: i64 =
        sqlx::query_scalar("SELECT failed_attempts FROM web_chat_session WHERE id = $1")
            .bind(session.to_string())
            .fetch_one(w.conn())
            .await
            .map_err(|e| w.err(e))?;
    if failures >= i64::from(policy.session_failures) {
        end_in(w, ctx, session, None, "locked", now).await?;
        return Ok(true);
    }
    Ok(false)
}

fn attempt_event(
    ctx: &AccessContext,
    now: i64,
    session: Uuid,
    patient: Option<PatientId>,
    outcome: Outcome,
    detail: &str,
) -> perimeter_audit::AuditEvent {
    let mut ev = ctx.event(
        now,
        Action::Login,
        session_object(session),
        patient,
        if patient.is_some() {
            vec![DataCategory::Demographics]
        } else {
            Vec::new()
        },
        Some(detail),
    );
    if outcome != Outcome::Success {
        ev.actor = Actor::Anonymous;
    }
    ev.outcome = outcome;
    ev
}

/// Binds the session to `patient` inside `w`.
async fn bind(
    w: &mut WriteTx,
    session: Uuid,
    patient: PatientId,
    how: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE web_chat_session SET patient_id = $2, verified_at = $3, verified_by = $4, failed_attempts = 0, last_seen_at = $3 WHERE id = $1",
    )
    .bind(session.to_string())
    .bind(patient.to_string())
    .bind(now)
    .bind(how.to_owned())
    .execute(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    Ok(())
}

fn birth_matches(dek: &Dek, patient: PatientId, ct: &[u8], wanted: &str) -> bool {
    let Ok(stored) = crate::patients::open(dek, patient, "birth_date", ct) else {
        return false;
    };
    bool::from(stored.as_bytes().ct_eq(wanted.as_bytes()))
}

impl Store {
    /// Starts a chat session for `practice` whose token hashes to `token_hash` (audited), unless
    /// the client address (`start_subject`, from [`chat_start_subject`]) already started
    /// `policy.address_sessions` in the window: then `None`, and the refusal is audited.
    pub async fn start_chat_session(
        &self,
        ctx: &AccessContext,
        practice: PracticeId,
        token_hash: &[u8; 32],
        policy: &ChatPolicy,
        start_subject: &[u8; 32],
    ) -> Result<Option<Uuid>, StoreError> {
        ctx.require_internal_write()?;
        let now = self.now();
        let sid = Uuid::now_v7();
        let mut w = self.begin_write().await?;
        if over_limit(&mut w, policy, start_subject, policy.address_sessions, now).await? {
            let mut ev = ctx.event(
                now,
                Action::Create,
                ObjectRef {
                    kind: "web_chat_session".into(),
                    id: None,
                },
                None,
                Vec::new(),
                Some("web_chat_start throttled"),
            );
            ev.outcome = Outcome::Denied;
            w.audit(&ev).await?;
            w.commit().await?;
            return Ok(None);
        }
        count_address_failure(&mut w, policy, start_subject, now).await?;
        sqlx::query(
            "INSERT INTO web_chat_session (id, practice_id, token_hash, patient_id, contact_id, verified_at, verified_by, failed_attempts, created_at, last_seen_at, ended_at, end_reason) VALUES ($1, $2, $3, NULL, NULL, NULL, NULL, 0, $4, $4, NULL, NULL)",
        )
        .bind(sid.to_string())
        .bind(practice.to_string())
        .bind(token_hash.to_vec())
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        w.audit(&ctx.event(
            now,
            Action::Create,
            session_object(sid),
            None,
            Vec::new(),
            Some("web_chat_start"),
        ))
        .await?;
        w.commit().await?;
        Ok(Some(sid))
    }

    /// The session of a token hash. A session past its idle or absolute limit is ended here
    /// (audited) and reported [`ChatLookup::Ended`].
    pub async fn chat_session(
        &self,
        ctx: &AccessContext,
        policy: &ChatPolicy,
        token_hash: &[u8; 32],
    ) -> Result<ChatLookup, StoreError> {
        ctx.require_internal_write()?;
        let now = self.now();
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM web_chat_session WHERE token_hash = $1"
        ))
        .bind(token_hash.to_vec())
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        let Some(row) = row else {
            return Ok(ChatLookup::Unknown);
        };
        if col::<Option<i64>>(&row, "ended_at")?.is_some() {
            return Ok(ChatLookup::Ended);
        }
        let session = decode_session(&row)?;
        let last_seen: i64 = col(&row, "last_seen_at")?;
        let reason = if now.saturating_sub(session.created_at_millis) >= policy.absolute_millis {
            Some("absolute")
        } else if now.saturating_sub(last_seen) >= policy.idle_millis {
            Some("idle")
        } else {
            None
        };
        if let Some(reason) = reason {
            let mut w = self.begin_write().await?;
            end_in(&mut w, ctx, session.id, session.patient, reason, now).await?;
            w.commit().await?;
            return Ok(ChatLookup::Ended);
        }
        Ok(ChatLookup::Live(session))
    }

    /// Records activity on a session (restarts its idle timer).
    pub async fn touch_chat_session(&self, session: Uuid) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE web_chat_session SET last_seen_at = $2 WHERE id = $1 AND ended_at IS NULL",
        )
        .bind(session.to_string())
        .bind(self.now())
        .execute(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The patient ended the session (audited).
    pub async fn end_chat_session(
        &self,
        ctx: &AccessContext,
        session: &ChatSession,
    ) -> Result<(), StoreError> {
        ctx.require_internal_write()?;
        let now = self.now();
        let mut w = self.begin_write().await?;
        end_in(&mut w, ctx, session.id, session.patient, "ended", now).await?;
        w.commit().await
    }

    /// Verifies the session's patient by full name and birth date (see the module
    /// documentation). `address` is [`chat_address_subject`] of the client address.
    pub async fn verify_chat_identity(
        &self,
        ctx: &AccessContext,
        policy: &ChatPolicy,
        session: &ChatSession,
        address: &[u8; 32],
        full_name: &str,
        birth_date: time::Date,
    ) -> Result<ChatVerification, StoreError> {
        ctx.require_internal_write()?;
        let now = self.now();
        let wanted = format!(
            "{:04}-{:02}-{:02}",
            birth_date.year(),
            u8::from(birth_date.month()),
            birth_date.day()
        );
        let digest = self.keys().indexer().index_raw(IndexKind::Name, full_name);
        let mut w = self.begin_write().await?;
        if address_throttled(&mut w, policy, address, now).await? {
            w.audit(&attempt_event(
                ctx,
                now,
                session.id,
                None,
                Outcome::Denied,
                "verify_name_birth_date throttled",
            ))
            .await?;
            w.commit().await?;
            return Ok(ChatVerification::Throttled);
        }
        let rows = match digest {
            Some(d) => sqlx::query(
                "SELECT p.id, p.birth_date_ct FROM patient_index i JOIN patient p ON p.id = i.patient_id WHERE i.kind = 'name' AND i.digest = $1 AND p.practice_id = $2 AND p.shredded_at IS NULL ORDER BY p.id LIMIT 20",
            )
            .bind(d.to_vec())
            .bind(session.practice.to_string())
            .fetch_all(w.conn())
            .await
            .map_err(|e| w.err(e))?,
            None => Vec::new(),
        };
        // Every candidate is checked (no early exit), and a name nobody has costs one data-key
        // unwrap and decryption too, so the answer's timing says little about the record.
        let mut matched = Vec::new();
        let mut candidates = Vec::new();
        for row in &rows {
            let pid: PatientId = id(&col::<String>(row, "id")?, "patient")?;
            candidates.push(pid);
            let ct: Option<Vec<u8>> = col(row, "birth_date_ct")?;
            let dek = match patient_key(w.conn(), self, pid).await {
                Ok(k) => k,
                Err(StoreError::Shredded { .. }) => continue,
                Err(e) => return Err(e),
            };
            if ct.is_some_and(|ct| birth_matches(&dek, pid, &ct, &wanted)) {
                matched.push(pid);
            }
        }
        if rows.is_empty() {
            let dek = Dek::generate()?;
            let _ = birth_matches(&dek, PatientId::new(), &[0u8; 40], &wanted);
        }
        // Every other candidate's birth date was decrypted to compare: each is named in its own
        // audit record, so a patient's accounting shows the comparison too.
        let named = match (matched.as_slice(), candidates.as_slice()) {
            ([pid], _) | ([], [pid]) => Some(*pid),
            _ => None,
        };
        for c in candidates.iter().filter(|c| Some(**c) != named) {
            w.audit(&attempt_event(
                ctx,
                now,
                session.id,
                Some(*c),
                Outcome::Failure,
                "verify_name_birth_date compared",
            ))
            .await?;
        }
        if let [pid] = matched.as_slice() {
            bind(&mut w, session.id, *pid, "name_birth_date", now).await?;
            crate::channels::adopt_chat_messages(
                &mut w,
                self,
                ctx,
                session.practice,
                session.id,
                *pid,
                now,
            )
            .await?;
            w.audit(&attempt_event(
                ctx,
                now,
                session.id,
                Some(*pid),
                Outcome::Success,
                "verify_name_birth_date",
            ))
            .await?;
            w.commit().await?;
            return Ok(ChatVerification::Verified(*pid));
        }
        // Failed: the record whose name was given (if exactly one) is named in the audit
        // record, so the privacy officer sees attempts on it.
        let target = match candidates.as_slice() {
            [one] => Some(*one),
            _ => None,
        };
        let mut ev = attempt_event(
            ctx,
            now,
            session.id,
            None,
            Outcome::Failure,
            if matched.len() > 1 {
                "verify_name_birth_date ambiguous"
            } else {
                "verify_name_birth_date failed"
            },
        );
        ev.patient = target;
        w.audit(&ev).await?;
        count_address_failure(&mut w, policy, address, now).await?;
        let locked = count_session_failure(&mut w, ctx, policy, session.id, now).await?;
        w.commit().await?;
        Ok(if locked {
            ChatVerification::SessionLocked
        } else {
            ChatVerification::Failed
        })
    }

    /// Sends a one-time code to the phone on file of the one patient whose number is `phone`
    /// (through the SMS outbox; `text` makes the message from the code). Nothing tells the
    /// caller whether a code was sent but [`ChatCodeRequest::Throttled`].
    pub async fn request_chat_code(
        &self,
        ctx: &AccessContext,
        policy: &ChatPolicy,
        session: &ChatSession,
        address: &[u8; 32],
        phone: &str,
        text: &(dyn Fn(&str) -> String + Sync),
    ) -> Result<ChatCodeRequest, StoreError> {
        ctx.require_internal_write()?;
        let now = self.now();
        let digest = self.keys().indexer().index_raw(IndexKind::Phone, phone);
        let mut w = self.begin_write().await?;
        let sends: Option<i64> =
            sqlx::query_scalar("SELECT sends FROM web_chat_code WHERE session_id = $1")
                .bind(session.id.to_string())
                .fetch_optional(w.conn())
                .await
                .map_err(|e| w.err(e))?;
        if sends.unwrap_or(0) >= i64::from(policy.code_sends)
            || address_throttled(&mut w, policy, address, now).await?
        {
            w.audit(&attempt_event(
                ctx,
                now,
                session.id,
                None,
                Outcome::Denied,
                "code_request throttled",
            ))
            .await?;
            w.commit().await?;
            return Ok(ChatCodeRequest::Throttled);
        }
        let patients: Vec<String> = match digest {
            Some(d) => sqlx::query_scalar(
                "SELECT p.id FROM patient_index i JOIN patient p ON p.id = i.patient_id WHERE i.kind = 'phone' AND i.digest = $1 AND p.practice_id = $2 AND p.shredded_at IS NULL ORDER BY p.id LIMIT 2",
            )
            .bind(d.to_vec())
            .bind(session.practice.to_string())
            .fetch_all(w.conn())
            .await
            .map_err(|e| w.err(e))?,
            None => Vec::new(),
        };
        let [pid] = patients.as_slice() else {
            w.audit(&attempt_event(
                ctx,
                now,
                session.id,
                None,
                Outcome::Failure,
                "code_request no_single_patient",
            ))
            .await?;
            count_address_failure(&mut w, policy, address, now).await?;
            w.commit().await?;
            return Ok(ChatCodeRequest::NotSent);
        };
        let pid: PatientId = id(pid, "patient")?;
        let code = zeroize::Zeroizing::new(new_code()?);
        let dek = patient_key(w.conn(), self, pid).await?;
        let body = zeroize::Zeroizing::new(text(&code));
        // The practice's own conversation id is not needed: the code is a notice.
        let queued = crate::channels::queue_notice_sms(
            &mut w,
            self,
            ctx,
            session.practice,
            pid,
            &dek,
            &body,
            now,
        )
        .await?;
        let Some((outbox, false)) = queued else {
            w.audit(&attempt_event(
                ctx,
                now,
                session.id,
                None,
                Outcome::Failure,
                "code_request not_sendable",
            ))
            .await?;
            w.commit().await?;
            return Ok(ChatCodeRequest::NotSent);
        };
        sqlx::query(
            "INSERT INTO web_chat_code (session_id, patient_id, code_hash, expires_at, attempts, sends, used_at, created_at) VALUES ($1, $2, $3, $4, 0, 1, NULL, $5) ON CONFLICT (session_id) DO UPDATE SET patient_id = excluded.patient_id, code_hash = excluded.code_hash, expires_at = excluded.expires_at, attempts = 0, sends = web_chat_code.sends + 1, used_at = NULL, created_at = excluded.created_at",
        )
        .bind(session.id.to_string())
        .bind(pid.to_string())
        .bind(code_hash(session.id, &code).to_vec())
        .bind(now.saturating_add(policy.code_ttl_millis))
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let mut ev = attempt_event(ctx, now, session.id, None, Outcome::Success, "code_sent");
        ev.action = Action::Create;
        ev.patient = Some(pid);
        ev.categories = vec![DataCategory::Contact];
        w.audit(&ev).await?;
        w.commit().await?;
        Ok(ChatCodeRequest::Sent(outbox))
    }

    /// Checks a one-time code: valid, not expired, not used, within its attempts. Success
    /// binds the session to the code's patient and uses the code up.
    pub async fn verify_chat_code(
        &self,
        ctx: &AccessContext,
        policy: &ChatPolicy,
        session: &ChatSession,
        address: &[u8; 32],
        code: &str,
    ) -> Result<ChatVerification, StoreError> {
        ctx.require_internal_write()?;
        let now = self.now();
        let mut w = self.begin_write().await?;
        if address_throttled(&mut w, policy, address, now).await? {
            w.audit(&attempt_event(
                ctx,
                now,
                session.id,
                None,
                Outcome::Denied,
                "verify_code throttled",
            ))
            .await?;
            w.commit().await?;
            return Ok(ChatVerification::Throttled);
        }
        let row = sqlx::query(
            "SELECT patient_id, code_hash, expires_at, attempts, used_at FROM web_chat_code WHERE session_id = $1",
        )
        .bind(session.id.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let mut failure = "verify_code no_code";
        if let Some(row) = row {
            let pid: PatientId = id(&col::<String>(&row, "patient_id")?, "patient")?;
            let stored: Vec<u8> = col(&row, "code_hash")?;
            let expires: i64 = col(&row, "expires_at")?;
            let attempts: i64 = col(&row, "attempts")?;
            let used: Option<i64> = col(&row, "used_at")?;
            let valid_shape = code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit());
            let equal =
                valid_shape && bool::from(stored.as_slice().ct_eq(&code_hash(session.id, code)));
            failure = if used.is_some() {
                "verify_code used"
            } else if now >= expires {
                "verify_code expired"
            } else if attempts >= i64::from(policy.code_attempts) {
                "verify_code attempts_exhausted"
            } else if !equal {
                "verify_code wrong"
            } else {
                ""
            };
            if failure.is_empty() {
                sqlx::query("UPDATE web_chat_code SET used_at = $2 WHERE session_id = $1")
                    .bind(session.id.to_string())
                    .bind(now)
                    .execute(w.conn())
                    .await
                    .map_err(|e| w.err(e))?;
                bind(&mut w, session.id, pid, "sms_code", now).await?;
                crate::channels::adopt_chat_messages(
                    &mut w,
                    self,
                    ctx,
                    session.practice,
                    session.id,
                    pid,
                    now,
                )
                .await?;
                w.audit(&attempt_event(
                    ctx,
                    now,
                    session.id,
                    Some(pid),
                    Outcome::Success,
                    "verify_code",
                ))
                .await?;
                w.commit().await?;
                return Ok(ChatVerification::Verified(pid));
            }
            sqlx::query("UPDATE web_chat_code SET attempts = attempts + 1 WHERE session_id = $1")
                .bind(session.id.to_string())
                .execute(w.conn())
                .await
                .map_err(|e| w.err(e))?;
        }
        w.audit(&attempt_event(
            ctx,
            now,
            session.id,
            None,
            Outcome::Failure,
            failure,
        ))
        .await?;
        count_address_failure(&mut w, policy, address, now).await?;
        let locked = count_session_failure(&mut w, ctx, policy, session.id, now).await?;
        w.commit().await?;
        Ok(if locked {
            ChatVerification::SessionLocked
        } else {
            ChatVerification::Failed
        })
    }

    /// The verified patient's web-chat messages (inbound and outbound, never staff notes)
    /// after `cursor`, oldest first, at most [`CHAT_PAGE_LIMIT`]. A read that returns messages
    /// is audited. An unverified session reads nothing.
    pub async fn chat_messages(
        &self,
        ctx: &AccessContext,
        session: &ChatSession,
        cursor: Option<&str>,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        ctx.require_internal()?;
        let Some(patient) = session.patient else {
            return Ok(Vec::new());
        };
        let (after_at, after_id) = match cursor {
            None => (i64::MIN, String::new()),
            Some(c) => parse_cursor(c)?,
        };
        let now = self.now();
        let mut w = self.begin_write().await?;
        let rows = sqlx::query(
            "SELECT m.id, m.conversation_id, m.direction, m.author_id, m.category, m.body_ct, m.created_at FROM message m JOIN conversation c ON c.id = m.conversation_id WHERE m.patient_id = $1 AND c.channel = 'web_chat' AND c.practice_id = $2 AND m.direction IN ('inbound', 'outbound') AND (m.created_at > $3 OR (m.created_at = $3 AND m.id > $4)) ORDER BY m.created_at, m.id LIMIT $5",
        )
        .bind(patient.to_string())
        .bind(session.practice.to_string())
        .bind(after_at)
        .bind(after_id)
        .bind(i64::from(CHAT_PAGE_LIMIT))
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        if rows.is_empty() {
            w.commit().await?;
            return Ok(Vec::new());
        }
        let dek = patient_key(w.conn(), self, patient).await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut categories: Vec<DataCategory> = Vec::new();
        let mut conversations: Vec<ConversationId> = Vec::new();
        for row in &rows {
            let mid: String = col(row, "id")?;
            let muid: Uuid = id(&mid, "message")?;
            let at: i64 = col(row, "created_at")?;
            let category: String = col(row, "category")?;
            if let Ok(c) = category.parse::<DataCategory>()
                && !categories.contains(&c)
            {
                categories.push(c);
            }
            let cid: ConversationId = id(&col::<String>(row, "conversation_id")?, "conversation")?;
            if !conversations.contains(&cid) {
                conversations.push(cid);
            }
            let body = decrypt_text(
                &dek,
                &Aad::new("message", *muid.as_bytes(), "body"),
                &col::<Vec<u8>>(row, "body_ct")?,
            )?;
            out.push(ChatMessage {
                cursor: format!("{at}_{mid}"),
                direction: col(row, "direction")?,
                from_staff: col::<Option<String>>(row, "author_id")?.is_some(),
                body,
                at_millis: at,
            });
        }
        for cid in conversations {
            let mut ev = ctx.event(
                now,
                Action::Read,
                object("conversation", cid),
                Some(patient),
                categories.clone(),
                Some("web_chat_read"),
            );
            ev.object = object("conversation", cid);
            w.audit(&ev).await?;
        }
        w.commit().await?;
        Ok(out)
    }
}

/// What one web chat housekeeping pass did ([`Store::purge_chat_state`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChatPurge {
    /// Live sessions past their idle or absolute limit, ended (and audited) now.
    pub sessions_ended: u64,
    /// Sessions that ended longer ago than the keep period, deleted.
    pub sessions_deleted: u64,
    /// One-time codes expired, used, or of an ended session, deleted.
    pub codes_deleted: u64,
    /// Throttle windows (per client address) that have closed, deleted.
    pub throttles_deleted: u64,
}

impl ChatPurge {
    /// Whether the pass changed anything.
    pub fn is_empty(&self) -> bool {
        *self == ChatPurge::default()
    }
}

impl Store {
    /// Web chat housekeeping, for a background task: ends the live sessions past their idle or
    /// absolute limit (each audited as an end at lookup is, at most `limit` per pass), deletes
    /// the one-time codes that can no longer be used (expired, used, or of an ended session),
    /// the throttle windows that have closed (a closed window counts nothing), and the
    /// sessions that ended more than `keep_ended_millis` ago. Only token and code hashes go:
    /// the messages live in the conversation and intake tables and stay, and the audit records
    /// of every session stay (they name the session by id). One transaction. Perimeter itself
    /// only: a user, service or anonymous context gets [`StoreError::Forbidden`].
    pub async fn purge_chat_state(
        &self,
        ctx: &AccessContext,
        policy: &ChatPolicy,
        keep_ended_millis: i64,
        limit: u32,
    ) -> Result<ChatPurge, StoreError> {
        ctx.require_internal_write()?;
        if keep_ended_millis < 0 {
            return Err(StoreError::Invalid {
                field: "keep_ended_millis",
                expected: "a duration of zero or more",
            });
        }
        let now = self.now();
        let mut w = self.begin_write().await?;
        let overdue = sqlx::query(
            "SELECT id, patient_id, created_at, last_seen_at FROM web_chat_session WHERE ended_at IS NULL AND (created_at <= $1 OR last_seen_at <= $2) ORDER BY created_at, id LIMIT $3",
        )
        .bind(now.saturating_sub(policy.absolute_millis))
        .bind(now.saturating_sub(policy.idle_millis))
        .bind(i64::from(limit))
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let mut out = ChatPurge::default();
        for row in &overdue {
            let session: Uuid = id(&col::<String>(row, "id")?, "chat session")?;
            let patient = col::<Option<String>>(row, "patient_id")?
                .map(|p| id::<PatientId>(&p, "patient"))
                .transpose()?;
            let created: i64 = col(row, "created_at")?;
            let reason = if now.saturating_sub(created) >= policy.absolute_millis {
                "absolute"
            } else {
                "idle"
            };
            end_in(&mut w, ctx, session, patient, reason, now).await?;
            out.sessions_ended += 1;
        }
        let codes = sqlx::query(
            "DELETE FROM web_chat_code WHERE expires_at <= $1 OR used_at IS NOT NULL OR session_id IN (SELECT id FROM web_chat_session WHERE ended_at IS NOT NULL)",
        )
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        out.codes_deleted = codes.rows_affected();
        let throttles = sqlx::query("DELETE FROM web_chat_throttle WHERE window_start <= $1")
            .bind(now.saturating_sub(policy.address_window_millis))
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        out.throttles_deleted = throttles.rows_affected();
        let sessions = sqlx::query(
            "DELETE FROM web_chat_session WHERE ended_at IS NOT NULL AND ended_at <= $1 AND id NOT IN (SELECT session_id FROM web_chat_code)",
        )
        .bind(now.saturating_sub(keep_ended_millis))
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        out.sessions_deleted = sessions.rows_affected();
        w.commit().await?;
        Ok(out)
    }
}

fn parse_cursor(c: &str) -> Result<(i64, String), StoreError> {
    let bad = || StoreError::Invalid {
        field: "after",
        expected: "a cursor returned by an earlier read",
    };
    let (at, mid) = c.split_once('_').ok_or_else(bad)?;
    let at: i64 = at.parse().map_err(|_| bad())?;
    let mid: Uuid = mid.parse().map_err(|_| bad())?;
    Ok((at, mid.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_hash_consistently() {
        let (a, ha) = new_chat_token().unwrap();
        let (b, hb) = new_chat_token().unwrap();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(a.len(), 64);
        assert_eq!(parse_chat_token(&a), Some(ha));
        assert_eq!(parse_chat_token(&a.to_uppercase()), None);
        assert_eq!(parse_chat_token(&a[..63]), None);
        assert_eq!(parse_chat_token("zz"), None);
    }

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..200 {
            let c = new_code().unwrap();
            assert_eq!(c.len(), 6);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
        let s = Uuid::now_v7();
        assert_ne!(code_hash(s, "123456"), code_hash(Uuid::now_v7(), "123456"));
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let mid = Uuid::now_v7();
        let (at, id) = parse_cursor(&format!("12_{mid}")).unwrap();
        assert_eq!((at, id), (12, mid.to_string()));
        for bad in ["", "12", "x_y", "12_notauuid", "_"] {
            assert!(parse_cursor(bad).is_err(), "{bad}");
        }
    }
}

//! Conversations and messages: subjects and bodies encrypted with the patient's data key.
//!
//! Everything here is for Perimeter itself (intake, seeding, the AI gateway's own work, the
//! CLI): the full reads refuse staff-facing actors (`internal_read`) and the direct writes do
//! too (`internal_write`). Staff read through the minimum-necessary views (`views.rs`) and
//! change conversations through the work functions, which declare their permission and check
//! the viewer in the database (`work.rs`: `set_work_status` declares `close_conversation`,
//! `add_note` `write_internal_note`, replies go out by `approve_draft`).
//!
//! | Function | Declares |
//! |---|---|
//! | [`Store::create_conversation`], [`Store::add_message`], [`Store::set_conversation_status`] | Perimeter itself only (`internal_write`) |
//! | [`Store::get_conversation`], [`Store::list_conversations`], [`Store::list_messages`] | Perimeter itself only (`internal_read`) |

use perimeter_audit::Action;
use perimeter_crypto::{Aad, Dek, decrypt_text, encrypt_text};
use perimeter_domain::{ConversationId, DataCategory, MessageId, PatientId, StaffId};
use sqlx::any::AnyRow;

use crate::db::WriteTx;
use crate::model::{
    AccessContext, Channel, Conversation, ConversationStatus, Direction, Message, NewMessage,
    object,
};
use crate::patients::patient_key;
use crate::rows::{col, id};
use crate::{Store, StoreError};

/// The most messages one page returns.
pub const MESSAGE_PAGE_LIMIT: u32 = 500;

/// The categories a message body may have.
pub const MESSAGE_CATEGORIES: [DataCategory; 3] = [
    DataCategory::ClinicalMessage,
    DataCategory::AdministrativeMessage,
    DataCategory::InternalNote,
];

pub(crate) fn decode_conversation(
    row: &AnyRow,
    dek: &perimeter_crypto::Dek,
) -> Result<Conversation, StoreError> {
    let cid: ConversationId = id(&col::<String>(row, "id")?, "conversation")?;
    let subject: Option<Vec<u8>> = col(row, "subject_ct")?;
    Ok(Conversation {
        id: cid,
        practice_id: id(&col::<String>(row, "practice_id")?, "practice")?,
        patient_id: id(&col::<String>(row, "patient_id")?, "patient")?,
        channel: Channel::parse(&col::<String>(row, "channel")?)?,
        status: ConversationStatus::parse(&col::<String>(row, "status")?)?,
        subject: subject
            .map(|ct| {
                decrypt_text(
                    dek,
                    &Aad::new("conversation", *cid.as_bytes(), "subject"),
                    &ct,
                )
            })
            .transpose()?,
        created_at_millis: col(row, "created_at")?,
        updated_at_millis: col(row, "updated_at")?,
    })
}

pub(crate) fn decode_message(
    row: &AnyRow,
    dek: &perimeter_crypto::Dek,
) -> Result<Message, StoreError> {
    let mid: MessageId = id(&col::<String>(row, "id")?, "message")?;
    let author: Option<String> = col(row, "author_id")?;
    let category: String = col(row, "category")?;
    Ok(Message {
        id: mid,
        conversation_id: id(&col::<String>(row, "conversation_id")?, "conversation")?,
        patient_id: id(&col::<String>(row, "patient_id")?, "patient")?,
        direction: Direction::parse(&col::<String>(row, "direction")?)?,
        author: author.map(|a| id(&a, "staff")).transpose()?,
        category: category
            .parse()
            .map_err(|_| StoreError::Corrupt("unknown message category".into()))?,
        body: decrypt_text(
            dek,
            &Aad::new("message", *mid.as_bytes(), "body"),
            &col::<Vec<u8>>(row, "body_ct")?,
        )?,
        created_at_millis: col(row, "created_at")?,
    })
}

pub(crate) const CONVERSATION_COLUMNS: &str =
    "id, practice_id, patient_id, channel, status, subject_ct, created_at, updated_at";

impl Store {
    /// Opens a conversation with a patient. Perimeter itself only (staff-facing actors get
    /// [`StoreError::Forbidden`]).
    pub async fn create_conversation(
        &self,
        ctx: &AccessContext,
        patient: PatientId,
        channel: Channel,
        subject: Option<&str>,
    ) -> Result<ConversationId, StoreError> {
        ctx.require_internal_write()?;
        let cid = ConversationId::new();
        let now = self.now();
        let mut w = self.begin_write().await?;
        let dek = patient_key(w.conn(), self, patient).await?;
        let practice: String = sqlx::query_scalar("SELECT practice_id FROM patient WHERE id = $1")
            .bind(patient.to_string())
            .fetch_one(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        let subject_ct = subject
            .map(|s| {
                encrypt_text(
                    &dek,
                    &Aad::new("conversation", *cid.as_bytes(), "subject"),
                    s,
                )
            })
            .transpose()?;
        sqlx::query(
            "INSERT INTO conversation (id, practice_id, patient_id, channel, status, subject_ct, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(cid.to_string())
        .bind(practice)
        .bind(patient.to_string())
        .bind(channel.as_str())
        .bind(ConversationStatus::Open.as_str())
        .bind(subject_ct)
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
            None,
        ))
        .await?;
        w.commit().await?;
        Ok(cid)
    }

    /// Reads a conversation (with its decrypted subject). For Perimeter itself only; staff use
    /// [`Store::view_conversations`] / [`Store::view_messages`].
    pub async fn get_conversation(
        &self,
        ctx: &AccessContext,
        conversation: ConversationId,
    ) -> Result<Conversation, StoreError> {
        ctx.require_internal()?;
        let mut w = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversation WHERE id = $1"
        ))
        .bind(conversation.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(|e| w.err(e))?
        .ok_or_else(|| StoreError::NotFound {
            kind: "conversation",
            id: conversation.to_string(),
        })?;
        let patient: PatientId = id(&col::<String>(&row, "patient_id")?, "patient")?;
        let dek = patient_key(w.conn(), self, patient).await?;
        let c = decode_conversation(&row, &dek)?;
        w.audit(&ctx.event(
            self.now(),
            Action::Read,
            object("conversation", conversation),
            Some(patient),
            vec![DataCategory::AdministrativeMessage],
            None,
        ))
        .await?;
        w.commit().await?;
        Ok(c)
    }

    /// A patient's conversations, oldest first. For Perimeter itself only; staff use
    /// [`Store::view_conversations`].
    pub async fn list_conversations(
        &self,
        ctx: &AccessContext,
        patient: PatientId,
    ) -> Result<Vec<Conversation>, StoreError> {
        ctx.require_internal()?;
        let mut w = self.begin_write().await?;
        let dek = patient_key(w.conn(), self, patient).await?;
        let rows = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversation WHERE patient_id = $1 ORDER BY created_at, id"
        ))
        .bind(patient.to_string())
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let out = rows
            .iter()
            .map(|r| decode_conversation(r, &dek))
            .collect::<Result<Vec<_>, _>>()?;
        w.audit(&ctx.event(
            self.now(),
            Action::Read,
            perimeter_audit::ObjectRef {
                kind: "conversation_list".into(),
                id: None,
            },
            Some(patient),
            vec![DataCategory::AdministrativeMessage],
            None,
        ))
        .await?;
        w.commit().await?;
        Ok(out)
    }

    /// Sets a conversation's status. Perimeter itself only; staff use
    /// [`Store::set_work_status`].
    pub async fn set_conversation_status(
        &self,
        ctx: &AccessContext,
        conversation: ConversationId,
        status: ConversationStatus,
    ) -> Result<(), StoreError> {
        ctx.require_internal_write()?;
        let mut w = self.begin_write().await?;
        let now = self.now();
        let patient: Option<String> =
            sqlx::query_scalar("SELECT patient_id FROM conversation WHERE id = $1")
                .bind(conversation.to_string())
                .fetch_optional(w.conn())
                .await
                .map_err(|e| w.err(e))?;
        let patient: PatientId = id(
            &patient.ok_or_else(|| StoreError::NotFound {
                kind: "conversation",
                id: conversation.to_string(),
            })?,
            "patient",
        )?;
        sqlx::query("UPDATE conversation SET status = $2, updated_at = $3 WHERE id = $1")
            .bind(conversation.to_string())
            .bind(status.as_str())
            .bind(now)
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        w.audit(&ctx.event(
            now,
            Action::Update,
            object("conversation", conversation),
            Some(patient),
            Vec::new(),
            Some(status.as_str()),
        ))
        .await?;
        w.commit().await
    }

    /// Adds a message (or staff note) to a conversation. Its category must be one of
    /// [`MESSAGE_CATEGORIES`]: `clinical_message` for anything about symptoms, results or
    /// medications (staff notes included), `administrative_message` for other messages,
    /// `internal_note` for administrative staff notes; readers see the body only if their roles
    /// may see that category. Perimeter itself only; staff write notes with
    /// [`Store::add_note`] and replies through drafts.
    pub async fn add_message(
        &self,
        ctx: &AccessContext,
        conversation: ConversationId,
        message: &NewMessage,
    ) -> Result<MessageId, StoreError> {
        ctx.require_internal_write()?;
        if !MESSAGE_CATEGORIES.contains(&message.category) {
            return Err(StoreError::Invalid {
                field: "message category",
                expected: "clinical_message, administrative_message or internal_note",
            });
        }
        let now = self.now();
        let mut w = self.begin_write().await?;
        let patient: Option<String> =
            sqlx::query_scalar("SELECT patient_id FROM conversation WHERE id = $1")
                .bind(conversation.to_string())
                .fetch_optional(w.conn())
                .await
                .map_err(|e| w.err(e))?;
        let patient: PatientId = id(
            &patient.ok_or_else(|| StoreError::NotFound {
                kind: "conversation",
                id: conversation.to_string(),
            })?,
            "patient",
        )?;
        let dek = patient_key(w.conn(), self, patient).await?;
        let mid = insert_message(
            &mut w,
            &dek,
            conversation,
            patient,
            message.direction,
            message.author,
            message.category,
            &message.body,
            now,
        )
        .await?;
        w.audit(&ctx.event(
            now,
            Action::Create,
            object("message", mid),
            Some(patient),
            vec![message.category],
            None,
        ))
        .await?;
        w.commit().await?;
        Ok(mid)
    }

    /// A conversation's messages, every body decrypted, oldest first, at most `limit` (capped
    /// at [`MESSAGE_PAGE_LIMIT`]) after message `after`. For Perimeter itself only (for example
    /// the AI gateway's own work); staff use [`Store::view_messages`], which shows each body
    /// only to the roles its category allows.
    pub async fn list_messages(
        &self,
        ctx: &AccessContext,
        conversation: ConversationId,
        after: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        ctx.require_internal()?;
        let mut w = self.begin_write().await?;
        let patient: Option<String> =
            sqlx::query_scalar("SELECT patient_id FROM conversation WHERE id = $1")
                .bind(conversation.to_string())
                .fetch_optional(w.conn())
                .await
                .map_err(|e| w.err(e))?;
        let patient: PatientId = id(
            &patient.ok_or_else(|| StoreError::NotFound {
                kind: "conversation",
                id: conversation.to_string(),
            })?,
            "patient",
        )?;
        let dek = patient_key(w.conn(), self, patient).await?;
        // Message ids are UUIDv7, so id order is creation order.
        let rows = sqlx::query(
            "SELECT id, conversation_id, patient_id, direction, author_id, category, body_ct, created_at FROM message WHERE conversation_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(conversation.to_string())
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(i64::from(limit.min(MESSAGE_PAGE_LIMIT)))
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let out = rows
            .iter()
            .map(|r| decode_message(r, &dek))
            .collect::<Result<Vec<_>, _>>()?;
        let mut categories: Vec<DataCategory> = out.iter().map(|m| m.category).collect();
        categories.sort();
        categories.dedup();
        w.audit(&ctx.event(
            self.now(),
            Action::Read,
            object("conversation", conversation),
            Some(patient),
            categories,
            Some("messages"),
        ))
        .await?;
        w.commit().await?;
        Ok(out)
    }
}

/// Inserts a message (sealed under the patient's key) and touches the conversation. No audit:
/// the caller audits.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_message(
    w: &mut WriteTx,
    dek: &Dek,
    conversation: ConversationId,
    patient: PatientId,
    direction: Direction,
    author: Option<StaffId>,
    category: DataCategory,
    body: &str,
    now: i64,
) -> Result<MessageId, StoreError> {
    let mid = MessageId::new();
    let body_ct = encrypt_text(dek, &Aad::new("message", *mid.as_bytes(), "body"), body)?;
    sqlx::query(
        "INSERT INTO message (id, conversation_id, patient_id, direction, author_id, category, body_ct, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(mid.to_string())
    .bind(conversation.to_string())
    .bind(patient.to_string())
    .bind(direction.as_str())
    .bind(author.map(|a| a.to_string()))
    .bind(category.as_str())
    .bind(body_ct)
    .bind(now)
    .execute(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    sqlx::query("UPDATE conversation SET updated_at = $2 WHERE id = $1")
        .bind(conversation.to_string())
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
    Ok(mid)
}

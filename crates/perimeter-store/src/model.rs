//! The records the store reads and writes. Types that hold PHI redact it in `Debug`.

use std::fmt;

use perimeter_audit::{Action, Actor, AuditEvent, ObjectRef, Outcome};
use perimeter_domain::{
    ConversationId, DataCategory, MessageId, PatientId, PracticeId, PurposeOfUse, RequestId, Role,
    StaffId,
};
use uuid::Uuid;

/// Who is accessing data, why, and from where: every PHI read or write takes one and records it
/// in the audit trail in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessContext {
    /// Who.
    pub actor: Actor,
    /// Why.
    pub purpose: Option<PurposeOfUse>,
    /// The request being served.
    pub request_id: Option<RequestId>,
    /// The client's address (staff or service client; never a patient's).
    pub client_addr: Option<String>,
    /// The client's user agent.
    pub user_agent: Option<String>,
    /// For a service client: the id of the API token it presented on this request. The store
    /// checks that very token again in its transaction (not revoked, not expired, the
    /// client's own, scoped to what the call declares): a token revoked after the request's
    /// guard let it in does not act, whatever other tokens the client holds.
    pub api_token: Option<Uuid>,
}

impl AccessContext {
    /// Perimeter itself acting (a job, the CLI, seeding), for health-care operations.
    pub fn system(component: &str) -> AccessContext {
        AccessContext {
            actor: Actor::System {
                component: component.to_owned(),
            },
            purpose: Some(PurposeOfUse::Operations),
            request_id: None,
            client_addr: None,
            user_agent: None,
            api_token: None,
        }
    }

    /// A signed-in user acting for `purpose`.
    pub fn user(user: StaffId, roles: Vec<Role>, purpose: PurposeOfUse) -> AccessContext {
        AccessContext {
            actor: Actor::User {
                user,
                roles,
                session: None,
            },
            purpose: Some(purpose),
            request_id: None,
            client_addr: None,
            user_agent: None,
            api_token: None,
        }
    }

    /// Refuses staff-facing actors (users, service clients, anonymous callers) on the reads
    /// that return every field of a record: those are for Perimeter itself (jobs, the CLI,
    /// the AI gateway's own work). Staff read through the minimum-necessary `view_*` and
    /// `search_patients` functions, which decide what the reader's roles may see.
    pub(crate) fn require_internal(&self) -> Result<(), crate::StoreError> {
        match self.actor {
            Actor::User { .. } | Actor::Service { .. } | Actor::Anonymous => {
                Err(crate::StoreError::Forbidden {
                    permission: "internal_read",
                })
            }
            Actor::System { .. } | Actor::Ai { .. } => Ok(()),
        }
    }

    /// Refuses staff-facing actors (users, service clients, anonymous callers) on the writes
    /// only Perimeter itself makes (seeding, intake, the CLI: practices, conversations and
    /// messages written directly, a patient's whole record replaced): staff change these
    /// through functions that declare a permission and check it in the database.
    pub(crate) fn require_internal_write(&self) -> Result<(), crate::StoreError> {
        match self.actor {
            Actor::User { .. } | Actor::Service { .. } | Actor::Anonymous => {
                Err(crate::StoreError::Forbidden {
                    permission: "internal_write",
                })
            }
            Actor::System { .. } | Actor::Ai { .. } => Ok(()),
        }
    }

    /// An audit event for an action by this context.
    pub fn event(
        &self,
        at_millis: i64,
        action: Action,
        object: ObjectRef,
        patient: Option<PatientId>,
        categories: Vec<DataCategory>,
        detail: Option<&str>,
    ) -> AuditEvent {
        AuditEvent {
            at_millis,
            actor: self.actor.clone(),
            action,
            object,
            patient,
            categories,
            purpose: self.purpose,
            outcome: Outcome::Success,
            detail: detail.map(str::to_owned),
            client_addr: self.client_addr.clone(),
            user_agent: self.user_agent.clone(),
            request_id: self.request_id,
        }
    }
}

pub(crate) fn object(kind: &str, id: impl fmt::Display) -> ObjectRef {
    ObjectRef {
        kind: kind.to_owned(),
        id: Some(id.to_string()),
    }
}

/// A practice (tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Practice {
    /// Id.
    pub id: PracticeId,
    /// Display name (not PHI).
    pub name: String,
    /// Created (ms since the epoch).
    pub created_at_millis: i64,
}

/// A staff account to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStaff {
    /// Login name, unique within the practice.
    pub username: String,
    /// Shown in the console.
    pub display_name: String,
    /// Roles held.
    pub roles: Vec<Role>,
    /// Argon2id PHC string, if a password is set.
    pub password_hash: Option<String>,
}

/// A staff account.
#[derive(Clone, PartialEq, Eq)]
pub struct StaffUser {
    /// Id.
    pub id: StaffId,
    /// Practice.
    pub practice_id: PracticeId,
    /// Login name.
    pub username: String,
    /// Shown in the console.
    pub display_name: String,
    /// Roles held.
    pub roles: Vec<Role>,
    /// Argon2id PHC string, if a password is set (secret; not shown by `Debug`).
    pub password_hash: Option<String>,
    /// Disabled since (ms), if disabled.
    pub disabled_at_millis: Option<i64>,
    /// Created (ms).
    pub created_at_millis: i64,
}

impl fmt::Debug for StaffUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaffUser")
            .field("id", &self.id)
            .field("practice_id", &self.practice_id)
            .field("username", &self.username)
            .field("roles", &self.roles)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "[redacted]"),
            )
            .field("disabled_at_millis", &self.disabled_at_millis)
            .finish_non_exhaustive()
    }
}

/// A patient's identifying and contact data (all PHI, all stored encrypted).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PatientData {
    /// Given name(s).
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Birth date.
    pub birth_date: Option<time::Date>,
    /// Phone number as entered.
    pub phone: Option<String>,
    /// E-mail address as entered.
    pub email: Option<String>,
    /// Postal address.
    pub address: Option<String>,
    /// Medical record number.
    pub mrn: Option<String>,
    /// Free-text notes.
    pub notes: Option<String>,
}

impl fmt::Debug for PatientData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PatientData([PHI redacted])")
    }
}

/// A patient as read back (decrypted).
#[derive(Clone, PartialEq, Eq)]
pub struct Patient {
    /// Id.
    pub id: PatientId,
    /// Practice.
    pub practice_id: PracticeId,
    /// The data.
    pub data: PatientData,
    /// Created (ms).
    pub created_at_millis: i64,
    /// Last changed (ms).
    pub updated_at_millis: i64,
}

impl fmt::Debug for Patient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Patient")
            .field("id", &self.id)
            .field("practice_id", &self.practice_id)
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $t:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v),+ }
        impl $name {
            /// The stored name.
            pub const fn as_str(self) -> &'static str { match self { $($name::$v => $t),+ } }
            pub(crate) fn parse(s: &str) -> Result<Self, crate::StoreError> {
                match s {
                    $($t => Ok($name::$v),)+
                    _ => Err(crate::StoreError::Corrupt(format!(concat!("unknown ", stringify!($name), " {:?}"), s.chars().take(20).collect::<String>()))),
                }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// How a conversation reaches the patient.
    Channel {
        /// Text messages.
        Sms => "sms",
        /// E-mail.
        Email => "email",
        /// The patient portal.
        Portal => "portal",
        /// Telephone (transcribed).
        Voice => "voice",
        /// The web chat widget.
        WebChat => "web_chat",
    }
);

text_enum!(
    /// Whether a conversation is in progress.
    ConversationStatus {
        /// Open.
        Open => "open",
        /// Closed.
        Closed => "closed",
    }
);

text_enum!(
    /// Which way a message went.
    Direction {
        /// From the patient.
        Inbound => "inbound",
        /// To the patient.
        Outbound => "outbound",
        /// A staff note, never sent.
        Note => "note",
    }
);

/// A conversation.
#[derive(Clone, PartialEq, Eq)]
pub struct Conversation {
    /// Id.
    pub id: ConversationId,
    /// Practice.
    pub practice_id: PracticeId,
    /// Patient.
    pub patient_id: PatientId,
    /// Channel.
    pub channel: Channel,
    /// Status.
    pub status: ConversationStatus,
    /// Subject line (PHI, stored encrypted).
    pub subject: Option<String>,
    /// Created (ms).
    pub created_at_millis: i64,
    /// Last changed (ms).
    pub updated_at_millis: i64,
}

impl fmt::Debug for Conversation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conversation")
            .field("id", &self.id)
            .field("patient_id", &self.patient_id)
            .field("channel", &self.channel)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A message to add.
#[derive(Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Which way.
    pub direction: Direction,
    /// The staff author (outbound messages and notes).
    pub author: Option<StaffId>,
    /// What kind of data the body is.
    pub category: DataCategory,
    /// The text (PHI, stored encrypted).
    pub body: String,
}

impl fmt::Debug for NewMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewMessage")
            .field("direction", &self.direction)
            .field("category", &self.category)
            .field("body", &"[PHI redacted]")
            .finish_non_exhaustive()
    }
}

/// A message as read back.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// Id.
    pub id: MessageId,
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Patient.
    pub patient_id: PatientId,
    /// Which way.
    pub direction: Direction,
    /// Staff author.
    pub author: Option<StaffId>,
    /// What kind of data the body is.
    pub category: DataCategory,
    /// The text.
    pub body: String,
    /// Created (ms).
    pub created_at_millis: i64,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("conversation_id", &self.conversation_id)
            .field("direction", &self.direction)
            .field("category", &self.category)
            .field("body", &"[PHI redacted]")
            .finish_non_exhaustive()
    }
}

//! Perimeter's storage: one repository interface over SQLite or PostgreSQL.
//!
//! * [`Store::connect`] opens a pool ([`StoreOptions`], [`DatabaseUrl`]); [`Store::migrate`]
//!   applies the migrations embedded for that backend and refuses a newer schema.
//! * Every PHI field is stored only as ciphertext under the patient's data key (see
//!   `perimeter-crypto`); lookups by phone, e-mail, MRN and name go through keyed blind
//!   indexes.
//! * Every PHI read or write takes an [`AccessContext`] and appends its audit record in the
//!   same transaction: if the audit append fails, the operation fails. Write transactions first
//!   take the audit-head lock (`BEGIN IMMEDIATE` on SQLite, `SELECT ... FOR UPDATE` on
//!   PostgreSQL), which orders all writers, across processes, into one audit sequence.
//! * Standalone audit events ([`Store::append_audit`], the security events of
//!   authentication) go through a group committer: concurrent callers share one transaction
//!   (one fsync; SQLite runs `synchronous = FULL` in WAL mode) and each returns once durable.
//!   On SQLite the batches are written by a dedicated `rusqlite` connection (`append.rs`).
//! * [`AuditReader`] reads the audit tables read-only without a key ring (verification by an
//!   outside auditor); the store implements the audit crate's `TrailStore` and
//!   `CheckpointStore` for verification, proofs and the checkpointer.
//! * Nothing that matters lives in process memory, so several `perimeter serve` processes can
//!   share one PostgreSQL database.
//! * Minimum necessary is enforced here: staff read through the `view_*` and
//!   [`Store::search_patients`] functions with a [`Viewer`]; the store reads the viewer's roles,
//!   care relation and emergency grants itself and returns only the categories those allow
//!   (see `views.rs`). The reads that return every field (`get_patient`, `list_messages`, ...)
//!   refuse staff-facing actors.
//! * Functions that act for someone declare the permission they need and check the actor in
//!   the database in the transaction of the access: a [`Viewer`], or the actor a caller puts
//!   in an [`AccessContext`] or in the audit event it has the store append (an active account
//!   of the practice whose stored roles hold the permission; the roles the caller claims are
//!   not trusted). Perimeter itself (system and AI actors) acts in every practice; service
//!   clients and anonymous callers are refused. The module documentation has the table of
//!   what each function declares (`views.rs`, `work.rs`, `billing.rs`, `staff.rs`,
//!   `emergency.rs`, `channels.rs`, `patients.rs`, `conversations.rs`; `vendors.rs` and
//!   `keys.rs` in their functions' documentation). The practice-wide metadata reads
//!   (the intake list, contacts, outbox, opt-outs, lockouts, the staff directory, API token
//!   lists) take a [`Scope`]: for a member of staff the store reads the account's practice and
//!   roles itself and checks the permission the read declares; Perimeter names a practice.
//!   The functions of Perimeter's own jobs (intake, the SMS outbox, reminders, escalation) use
//!   their context for the audit record.
//! * Key management: [`Store::verify_keys`], [`Store::rotate_keks`], [`Store::retire_kek`],
//!   [`Store::key_status`], and crypto-shredding with [`Store::shred_patient`].

mod append;
mod audit;
mod auth;
mod billing;
mod bulk;
mod channels;
mod conversations;
mod db;
mod demo;
mod emergency;
mod error;
mod keys;
mod model;
mod native;
mod options;
mod patients;
mod rows;
mod staff;
mod throttle;
mod vendors;
mod views;
mod web_chat;
mod work;

pub use audit::{AuditHead, AuditReader, StoredCheckpoint};
pub use auth::MfaRecord;
pub use billing::{
    AccountIdentifier, AccountInput, BillingAccountView, Cents, CoverageInput, CoverageView,
    InsuranceName, MAX_BALANCE_CENTS, MAX_COVERAGES, MAX_INSURANCE_NAME_CHARS,
    SUBSCRIBER_RELATIONSHIPS, SubscriberRelationship,
};
pub use bulk::build_sqlite_trail;
pub use channels::{
    ClaimedSms, ContactEntry, INBOUND_PAGE_LIMIT, InboundEntry, InboundOutcome, Keyword,
    MAX_SMS_CHARS, MatchKind, NewInbound, NewRepresentative, NewSms, OptOutEntry, OutboxEntry,
    OutboxStatus, RELATIONSHIPS, Recipient, Representative, RouteStatus, Routing,
    SEND_LEASE_MILLIS,
};
pub use conversations::{MESSAGE_CATEGORIES, MESSAGE_PAGE_LIMIT};
pub use db::{MigrationReport, SchemaStatus, Store};
pub use demo::{
    DEMO_PRACTICE_NAME, DemoConversation, DemoHashing, DemoOptions, DemoPatient, SeedReport,
    demo_patients, hash_password,
};
pub use emergency::{BreakGlassEntry, OutboxNotification, REVIEW_OUTCOMES, REVIEW_PAGE_LIMIT};
pub use error::StoreError;
pub use keys::{KekStatus, KeyStatus, RotateProgress, RotateReport, ShredReport};
pub use model::{
    AccessContext, Channel, Conversation, ConversationStatus, Direction, Message, NewMessage,
    NewStaff, Patient, PatientData, Practice, StaffUser,
};
pub use options::{Backend, DatabaseUrl, StoreOptions};
pub use patients::LOOKUP_LIMIT;
pub use staff::StaffEntry;
pub use throttle::{AttemptStart, Lockout, ThrottleKey, ThrottleScope};
pub use vendors::{
    BAA_EXPIRED_NOTIFICATION, BaaTerms, KeyInput, KeySource, Vendor, VendorClass, VendorInput,
    parse_date, validate_vendor,
};
pub use views::{
    CareTeamMember, Contact, ConversationView, Demographics, Identifiers, MessagePage, MessageView,
    PatientLookup, PatientView, Scope, Viewer,
};
pub use web_chat::{
    CHAT_PAGE_LIMIT, ChatCodeRequest, ChatLookup, ChatMessage, ChatPolicy, ChatPurge, ChatSession,
    ChatVerification, chat_address_subject, chat_context, chat_start_subject, new_chat_token,
    parse_chat_token,
};
pub use work::{
    DraftOutcome, DraftRequest, DraftView, Escalated, MAX_NOTE_CHARS, MAX_REPLY_CHARS, NewTemplate,
    NoteView, OutboundReply, QUEUE_PAGE_LIMIT, QueuePage, REJECT_REASONS, ReminderView,
    SentReminder, TemplateKind, TemplateRecord, Triage, WorkItem,
};

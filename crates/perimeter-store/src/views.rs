//! Minimum necessary, enforced in the data layer: what a member of staff may read of a
//! patient's record and conversations.
//!
//! Staff reads take a [`Viewer`] (who is asking, and the request), never a list of roles: the
//! store reads the viewer's practice, roles and state from the database in the same
//! transaction, checks the permission the function declares, works out the care relation
//! (the `care_team` table) and any active emergency-access grant, and asks
//! `perimeter_auth::patient_access` which data categories the viewer may see. Only the fields
//! of those categories are decrypted and returned (the others are absent from the view, not
//! empty), and the audit record of the read lists exactly the categories disclosed.
//!
//! | Function | Declares | Returns |
//! |---|---|---|
//! | [`Store::view_patient`] | `view_demographics` | one [`PatientView`] |
//! | [`Store::search_patients`] | `search_patients` (and `view_insurance` / `view_billing` by member id / account number) | the [`PatientView`]s a blind-index lookup finds |
//! | [`Store::view_conversations`] | `read_conversation` | a patient's [`ConversationView`]s |
//! | [`Store::view_messages`] | `read_conversation` | a [`MessagePage`]: bodies only of visible categories |
//! | [`Store::care_team`], [`Store::add_to_care_team`], [`Store::remove_from_care_team`] | `triage_conversation` | the care team |
//!
//! A patient or conversation of another practice is "not found". A disabled viewer, or one
//! whose roles lack the declared permission, gets [`StoreError::Forbidden`].
//!
//! Categories of fields: `demographics` = name and birth date; `contact` = phone, e-mail and
//! address; `identifiers` = MRN; `insurance` = the coverages and `billing` = the billing
//! account (`billing.rs`); `internal_note` = the record's notes; a conversation's
//! subject is `administrative_message`; a message body has its own category
//! (`crate::MESSAGE_CATEGORIES`). Clinical bodies are shown only to clinicians and nurses on the
//! patient's care team, or holding an active emergency grant for the patient (then the read is
//! audited with purpose `emergency` and detail `break_glass`); schedulers, billing and front
//! desk never see them.

use std::collections::BTreeSet;
use std::fmt;

use perimeter_audit::{Action, Actor, ObjectRef};
use perimeter_auth::authz::CARE_RESTRICTED;
use perimeter_auth::{
    CareRelation, PatientAccess, Permission, allowed, patient_access, routine_purpose,
};
use perimeter_crypto::{Aad, Dek, IndexKind, decrypt_text};
use perimeter_domain::{
    ConversationId, DataCategory, MessageId, PatientId, PracticeId, PurposeOfUse, RequestId, Role,
    StaffId,
};
use serde::Serialize;
use sqlx::any::AnyRow;

use crate::billing::{
    BillingAccountView, CoverageView, find_by_number, load_account, load_coverages,
};
use crate::conversations::{CONVERSATION_COLUMNS, MESSAGE_PAGE_LIMIT};
use crate::db::WriteTx;
use crate::emergency::{active_grant, patient_practice};
use crate::model::{AccessContext, Channel, ConversationStatus, Direction, object};
use crate::patients::{LOOKUP_LIMIT, PATIENT_COLUMNS, open, open_opt, patient_key};
use crate::rows::{col, id};
use crate::{Store, StoreError};

/// Whose practice-wide metadata read it is (the intake list, outbox, opt-outs, contacts,
/// lockouts, the staff directory, API tokens: ids, statuses and digests, no PHI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Perimeter itself (its jobs, the CLI): the practice given.
    Practice(PracticeId),
    /// A member of staff: their own practice, as the database holds it, when their stored
    /// roles hold the permission the function declares (an unknown, disabled or unentitled
    /// account gets [`StoreError::Forbidden`]).
    Staff(StaffId),
}

impl From<PracticeId> for Scope {
    fn from(p: PracticeId) -> Scope {
        Scope::Practice(p)
    }
}

impl Store {
    /// The practice a [`Scope`] reads, checking a staff scope's account for `permission`.
    pub(crate) async fn scope_practice(
        &self,
        scope: impl Into<Scope>,
        permission: Permission,
    ) -> Result<PracticeId, StoreError> {
        match scope.into() {
            Scope::Practice(p) => Ok(p),
            Scope::Staff(s) => Ok(self.entitled_staff(s, permission).await?.practice_id),
        }
    }

    /// The account `staff` as the database holds it, if it is enabled and its stored roles
    /// hold `permission`; otherwise (unknown accounts too) [`StoreError::Forbidden`]. For the
    /// reads that need no transaction of their own.
    pub(crate) async fn entitled_staff(
        &self,
        staff: StaffId,
        permission: Permission,
    ) -> Result<crate::model::StaffUser, StoreError> {
        let forbidden = StoreError::Forbidden {
            permission: permission.as_str(),
        };
        let user = match self.get_staff(staff).await {
            Ok(u) => u,
            Err(StoreError::NotFound { .. }) => return Err(forbidden),
            Err(e) => return Err(e),
        };
        if user.disabled_at_millis.is_some() || !allowed(&user.roles, permission) {
            return Err(forbidden);
        }
        Ok(user)
    }
}

/// Who is reading: a member of staff (or a service client), as the server's guard established
/// it, with the request's details for the audit record. The store looks up the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// The staff account.
    pub staff: StaffId,
    /// An opaque, non-secret session reference for the audit record.
    pub session: Option<String>,
    /// The request being served.
    pub request_id: Option<RequestId>,
    /// The client's address.
    pub client_addr: Option<String>,
    /// The client's user agent.
    pub user_agent: Option<String>,
}

impl Viewer {
    /// A viewer with no request details.
    pub fn new(staff: StaffId) -> Self {
        Self {
            staff,
            session: None,
            request_id: None,
            client_addr: None,
            user_agent: None,
        }
    }
}

/// The viewer as the database knows them, read in the transaction of the read.
pub(crate) struct Reader {
    pub(crate) staff: StaffId,
    pub(crate) practice: PracticeId,
    pub(crate) roles: Vec<Role>,
}

impl Reader {
    pub(crate) fn ctx(&self, viewer: &Viewer, purpose: PurposeOfUse) -> AccessContext {
        AccessContext {
            actor: Actor::User {
                user: self.staff,
                roles: self.roles.clone(),
                session: viewer.session.clone(),
            },
            purpose: Some(purpose),
            request_id: viewer.request_id,
            client_addr: viewer.client_addr.clone(),
            user_agent: viewer.user_agent.clone(),
            api_token: None,
        }
    }
}

/// Loads the viewer and checks the permission the calling function declares.
pub(crate) async fn reader(
    w: &mut WriteTx,
    viewer: &Viewer,
    permission: Permission,
) -> Result<Reader, StoreError> {
    let forbidden = StoreError::Forbidden {
        permission: permission.as_str(),
    };
    let row = sqlx::query("SELECT practice_id, roles, disabled_at FROM staff_user WHERE id = $1")
        .bind(viewer.staff.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(|e| w.err(e))?;
    let Some(row) = row else {
        return Err(forbidden);
    };
    let disabled: Option<i64> = col(&row, "disabled_at")?;
    let roles = crate::staff::roles_from_text(&col::<String>(&row, "roles")?)?;
    if disabled.is_some() || !allowed(&roles, permission) {
        return Err(forbidden);
    }
    Ok(Reader {
        staff: viewer.staff,
        practice: id(&col::<String>(&row, "practice_id")?, "practice")?,
        roles,
    })
}

/// For store functions that take an [`AccessContext`] (Perimeter itself, the CLI, and a few
/// staff routes): checks in `w` that the context's actor may use `permission`. Perimeter itself
/// (system, AI job) may. A user may only if the database says so: the account exists, is not
/// disabled, belongs to `practice` (when the action is within one; another practice is not
/// found) and its stored roles hold the permission; the roles the caller put in the context
/// are not trusted. Service clients and anonymous callers may not.
pub(crate) async fn require_actor(
    w: &mut WriteTx,
    ctx: &AccessContext,
    permission: Permission,
    practice: Option<PracticeId>,
) -> Result<(), StoreError> {
    let acting = acting(w, &ctx.actor, permission).await?;
    if let Some(p) = practice {
        acting.in_practice(p)?;
    }
    Ok(())
}

/// Who is acting, once [`acting`] (or [`acting_client`]) has checked them: Perimeter itself
/// (the system, an AI job: the CLI, intake, seeding, scheduled jobs), a user as the database
/// knows them, or a service client as the database knows it.
pub(crate) enum Acting {
    /// Perimeter itself; it acts in every practice.
    Perimeter,
    /// A staff user, read in the transaction of the action.
    User(Reader),
    /// A service client (API token), read in the transaction of the action.
    Client(Reader),
}

impl Acting {
    /// The acting user's id (`None` for Perimeter itself and for a service client).
    pub(crate) fn user(&self) -> Option<StaffId> {
        match self {
            Acting::Perimeter | Acting::Client(_) => None,
            Acting::User(r) => Some(r.staff),
        }
    }

    fn account(&self) -> Option<&Reader> {
        match self {
            Acting::Perimeter => None,
            Acting::User(r) | Acting::Client(r) => Some(r),
        }
    }

    /// `NotFound` (of `kind` `id`) unless the object's `practice` is the acting user's: another
    /// practice's records do not exist for a user. Perimeter itself sees every practice.
    pub(crate) fn within(
        &self,
        practice: PracticeId,
        kind: &'static str,
        id: impl fmt::Display,
    ) -> Result<(), StoreError> {
        match self.account() {
            Some(r) if r.practice != practice => Err(StoreError::NotFound {
                kind,
                id: id.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// `NotFound` (of the practice) unless a user or service client acts in `practice` (the
    /// practice a caller named for the action, which must be its own): another practice does
    /// not exist for it, like that practice's records. Perimeter itself may act in any.
    pub(crate) fn in_practice(&self, practice: PracticeId) -> Result<(), StoreError> {
        self.within(practice, "practice", practice)
    }
}

/// Checks in `w` that `actor` may use `permission` (the one the calling function declares),
/// for the store functions whose caller passes the actor, in an [`AccessContext`] or in the
/// audit event it has the store append. Perimeter itself (system, AI job) may. A user may only
/// if the database says so (the account exists, is not disabled and its stored roles hold the
/// permission; the roles in the actor are not trusted); the caller then keeps the action
/// within the user's practice ([`Acting::within`], [`Acting::in_practice`]). Service clients
/// and anonymous callers may not.
pub(crate) async fn acting(
    w: &mut WriteTx,
    actor: &Actor,
    permission: Permission,
) -> Result<Acting, StoreError> {
    match actor {
        Actor::System { .. } | Actor::Ai { .. } => Ok(Acting::Perimeter),
        Actor::User { user, .. } => Ok(Acting::User(
            reader(w, &Viewer::new(*user), permission).await?,
        )),
        Actor::Service { .. } | Actor::Anonymous => Err(StoreError::Forbidden {
            permission: permission.as_str(),
        }),
    }
}

/// Checks in `w` that `actor` may use `permission` where the permission is a machine
/// client's (the intake's `ingest_channel`): Perimeter itself (system, AI job: the SMS
/// webhooks, the web chat, seeding) may; a service client may only if the database says so,
/// at `now`: its account exists, is not disabled, holds the role `service` and its stored
/// roles hold `permission`, and it holds an API token that is not revoked, not expired and
/// scoped to `permission` (the scope is what a service client holds): the token it presented
/// on this request ([`AccessContext::api_token`]; none named, none held). Members of staff (the
/// roles in the actor are not trusted; no staff role holds these permissions) and anonymous
/// callers may not. The caller then keeps the action within the client's practice.
pub(crate) async fn acting_client(
    w: &mut WriteTx,
    ctx: &AccessContext,
    permission: Permission,
    now: i64,
) -> Result<Acting, StoreError> {
    let forbidden = || StoreError::Forbidden {
        permission: permission.as_str(),
    };
    let client = match &ctx.actor {
        Actor::System { .. } | Actor::Ai { .. } => return Ok(Acting::Perimeter),
        Actor::Service { client } => *client,
        Actor::User { .. } | Actor::Anonymous => return Err(forbidden()),
    };
    let account = reader(w, &Viewer::new(client), permission).await?;
    if !account.roles.contains(&Role::Service) {
        return Err(forbidden());
    }
    let Some(token) = ctx.api_token else {
        return Err(forbidden());
    };
    let scope: Option<String> = sqlx::query_scalar(
        "SELECT permissions FROM api_token WHERE id = $1 AND client_id = $2 AND revoked_at IS NULL AND expires_at > $3",
    )
    .bind(token.to_string())
    .bind(client.to_string())
    .bind(now)
    .fetch_optional(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    if !scope.is_some_and(|s| s.split(',').any(|p| p == permission.as_str())) {
        return Err(forbidden());
    }
    Ok(Acting::Client(account))
}

/// Fails with `NotFound` unless `patient` belongs to the reader's practice.
pub(crate) async fn same_practice(
    w: &mut WriteTx,
    store: &Store,
    reader: &Reader,
    patient: PatientId,
) -> Result<(), StoreError> {
    if patient_practice(w.conn(), store, patient).await? != reader.practice {
        return Err(StoreError::NotFound {
            kind: "patient",
            id: patient.to_string(),
        });
    }
    Ok(())
}

/// Whether `staff` is on `patient`'s care team (the one place that decides the care relation).
async fn care_relation(
    w: &mut WriteTx,
    staff: StaffId,
    patient: PatientId,
) -> Result<CareRelation, StoreError> {
    let row = sqlx::query("SELECT staff_id FROM care_team WHERE patient_id = $1 AND staff_id = $2")
        .bind(patient.to_string())
        .bind(staff.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(|e| w.err(e))?;
    Ok(if row.is_some() {
        CareRelation::InCare
    } else {
        CareRelation::NotInCare
    })
}

/// What the reader may see of `patient` now.
pub(crate) async fn access_to(
    w: &mut WriteTx,
    store: &Store,
    reader: &Reader,
    patient: PatientId,
) -> Result<PatientAccess, StoreError> {
    let relation = care_relation(w, reader.staff, patient).await?;
    let grant = active_grant(w.conn(), store, reader.staff, patient, store.clock().now()).await?;
    Ok(patient_access(&reader.roles, relation, grant.is_some()))
}

/// The purpose and audit detail of a disclosure: emergency (`break_glass`) when it rests on a
/// grant and disclosed care-restricted content, else the reader's routine purpose.
pub(crate) fn purpose_of(
    access: &PatientAccess,
    roles: &[Role],
    disclosed: &BTreeSet<DataCategory>,
    routine_detail: Option<&'static str>,
) -> (PurposeOfUse, Option<&'static str>) {
    if access.emergency && CARE_RESTRICTED.iter().any(|c| disclosed.contains(c)) {
        (PurposeOfUse::Emergency, Some("break_glass"))
    } else {
        (routine_purpose(roles), routine_detail)
    }
}

/// Name and birth date (`demographics`).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Demographics {
    /// Given name(s).
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Birth date, `YYYY-MM-DD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
}

/// Phone, e-mail, address (`contact`); only the fields on record.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Contact {
    /// Phone number as entered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// E-mail address as entered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Postal address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// Medical record number and other identifiers (`identifiers`).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Identifiers {
    /// Medical record number.
    pub mrn: String,
}

/// What a reader may see of one patient's record. A group is absent when the reader may not
/// see its category or the record holds nothing in it; `disclosed` lists the categories
/// present (the audit record of the read lists the same).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct PatientView {
    /// The patient's id (not PHI).
    pub id: PatientId,
    /// Name and birth date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demographics: Option<Demographics>,
    /// Phone, e-mail, address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
    /// MRN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifiers: Option<Identifiers>,
    /// The record's staff notes (`internal_note`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Insurance coverages, oldest first, ended ones included (`insurance`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverages: Option<Vec<CoverageView>>,
    /// The billing account (`billing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<BillingAccountView>,
    /// The categories disclosed by this view.
    pub disclosed: BTreeSet<DataCategory>,
    /// The purpose recorded for the read.
    pub purpose: PurposeOfUse,
    /// Clinical content of this patient is hidden for lack of a care relationship and the
    /// reader could open it with emergency access.
    pub break_glass_available: bool,
}

impl fmt::Debug for PatientView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatientView")
            .field("id", &self.id)
            .field("disclosed", &self.disclosed)
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

fn build_patient_view(
    row: &AnyRow,
    dek: &Dek,
    access: &PatientAccess,
) -> Result<PatientView, StoreError> {
    let pid: PatientId = id(&col::<String>(row, "id")?, "patient")?;
    let see = |c: DataCategory| access.categories.contains(&c);
    let mut disclosed = BTreeSet::new();
    let demographics = if see(DataCategory::Demographics) {
        disclosed.insert(DataCategory::Demographics);
        Some(Demographics {
            given_name: open(
                dek,
                pid,
                "given_name",
                &col::<Vec<u8>>(row, "given_name_ct")?,
            )?,
            family_name: open(
                dek,
                pid,
                "family_name",
                &col::<Vec<u8>>(row, "family_name_ct")?,
            )?,
            birth_date: open_opt(dek, pid, "birth_date", col(row, "birth_date_ct")?)?,
        })
    } else {
        None
    };
    let contact = if see(DataCategory::Contact) {
        let c = Contact {
            phone: open_opt(dek, pid, "phone", col(row, "phone_ct")?)?,
            email: open_opt(dek, pid, "email", col(row, "email_ct")?)?,
            address: open_opt(dek, pid, "address", col(row, "address_ct")?)?,
        };
        (c.phone.is_some() || c.email.is_some() || c.address.is_some()).then(|| {
            disclosed.insert(DataCategory::Contact);
            c
        })
    } else {
        None
    };
    let identifiers = if see(DataCategory::Identifiers) {
        open_opt(dek, pid, "mrn", col(row, "mrn_ct")?)?.map(|mrn| {
            disclosed.insert(DataCategory::Identifiers);
            Identifiers { mrn }
        })
    } else {
        None
    };
    let notes = if see(DataCategory::InternalNote) {
        open_opt(dek, pid, "notes", col(row, "notes_ct")?)?.inspect(|_| {
            disclosed.insert(DataCategory::InternalNote);
        })
    } else {
        None
    };
    Ok(PatientView {
        id: pid,
        demographics,
        contact,
        identifiers,
        notes,
        coverages: None,
        account: None,
        disclosed,
        purpose: PurposeOfUse::Operations,
        break_glass_available: access.break_glass_available,
    })
}

/// Reads one patient's view in `w` and appends its audit record (`detail` for routine reads).
async fn read_view(
    w: &mut WriteTx,
    store: &Store,
    viewer: &Viewer,
    reader: &Reader,
    patient: PatientId,
    detail: Option<&'static str>,
) -> Result<PatientView, StoreError> {
    let access = access_to(w, store, reader, patient).await?;
    let dek = patient_key(w.conn(), store, patient).await?;
    let row = sqlx::query(&format!(
        "SELECT {PATIENT_COLUMNS} FROM patient WHERE id = $1"
    ))
    .bind(patient.to_string())
    .fetch_one(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    let mut view = build_patient_view(&row, &dek, &access)?;
    if access.categories.contains(&DataCategory::Insurance) {
        let coverages = load_coverages(w, patient, &dek).await?;
        if !coverages.is_empty() {
            view.disclosed.insert(DataCategory::Insurance);
            view.coverages = Some(coverages);
        }
    }
    if access.categories.contains(&DataCategory::Billing) {
        view.account = load_account(w, patient, &dek).await?;
        if view.account.is_some() {
            view.disclosed.insert(DataCategory::Billing);
        }
    }
    let (purpose, detail) = purpose_of(&access, &reader.roles, &view.disclosed, detail);
    view.purpose = purpose;
    w.audit(&reader.ctx(viewer, purpose).event(
        store.now(),
        Action::Read,
        object("patient", patient),
        Some(patient),
        view.disclosed.iter().copied().collect(),
        detail,
    ))
    .await?;
    Ok(view)
}

/// A blind-index patient lookup. `Debug` redacts the value (it is PHI).
#[derive(Clone, PartialEq, Eq)]
pub enum PatientLookup {
    /// By phone number (normalised).
    Phone(String),
    /// By e-mail address (case-insensitive).
    Email(String),
    /// By medical record number.
    Mrn(String),
    /// By full name, given then family or family then given.
    Name(String),
    /// By insurance member id (also needs `view_insurance`).
    MemberId(String),
    /// By billing account number (also needs `view_billing`).
    AccountNumber(String),
}

impl fmt::Debug for PatientLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            PatientLookup::Phone(_) => "Phone",
            PatientLookup::Email(_) => "Email",
            PatientLookup::Mrn(_) => "Mrn",
            PatientLookup::Name(_) => "Name",
            PatientLookup::MemberId(_) => "MemberId",
            PatientLookup::AccountNumber(_) => "AccountNumber",
        };
        write!(f, "PatientLookup::{kind}([PHI redacted])")
    }
}

impl PatientLookup {
    fn parts(&self) -> (IndexKind, &str, &'static str, &'static str) {
        match self {
            PatientLookup::Phone(v) => (
                IndexKind::Phone,
                v,
                "lookup_phone",
                "a phone number of 7 to 15 digits",
            ),
            PatientLookup::Email(v) => (
                IndexKind::Email,
                v,
                "lookup_email",
                "an e-mail address such as name@example.org",
            ),
            PatientLookup::Mrn(v) => (IndexKind::Mrn, v, "lookup_mrn", "a medical record number"),
            PatientLookup::Name(v) => {
                (IndexKind::Name, v, "lookup_name", "a given and family name")
            }
            PatientLookup::MemberId(v) => (
                IndexKind::MemberId,
                v,
                "lookup_member_id",
                "1 to 40 letters and digits (spaces and hyphens allowed between them)",
            ),
            PatientLookup::AccountNumber(v) => (
                IndexKind::AccountNumber,
                v,
                "lookup_account_number",
                "1 to 40 letters and digits (spaces and hyphens allowed between them)",
            ),
        }
    }

    /// The permission a lookup needs beyond `search_patients`: looking a patient up by a
    /// number of a category reveals that category.
    const fn extra_permission(&self) -> Option<Permission> {
        match self {
            PatientLookup::MemberId(_) => Some(Permission::ViewInsurance),
            PatientLookup::AccountNumber(_) => Some(Permission::ViewBilling),
            _ => None,
        }
    }
}

/// A conversation's metadata and subject (`administrative_message`).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct ConversationView {
    /// Id.
    pub id: ConversationId,
    /// The patient.
    pub patient_id: PatientId,
    /// Channel.
    pub channel: Channel,
    /// Status.
    pub status: ConversationStatus,
    /// Subject line, if there is one and the reader may see administrative messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Created (ms).
    pub created_at_millis: i64,
    /// Last changed (ms).
    pub updated_at_millis: i64,
}

impl fmt::Debug for ConversationView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConversationView")
            .field("id", &self.id)
            .field("patient_id", &self.patient_id)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

fn build_conversation_view(
    row: &AnyRow,
    dek: &Dek,
    access: &PatientAccess,
) -> Result<ConversationView, StoreError> {
    let cid: ConversationId = id(&col::<String>(row, "id")?, "conversation")?;
    let subject: Option<Vec<u8>> = col(row, "subject_ct")?;
    let subject = if access
        .categories
        .contains(&DataCategory::AdministrativeMessage)
    {
        subject
            .map(|ct| {
                decrypt_text(
                    dek,
                    &Aad::new("conversation", *cid.as_bytes(), "subject"),
                    &ct,
                )
            })
            .transpose()?
    } else {
        None
    };
    Ok(ConversationView {
        id: cid,
        patient_id: id(&col::<String>(row, "patient_id")?, "patient")?,
        channel: Channel::parse(&col::<String>(row, "channel")?)?,
        status: ConversationStatus::parse(&col::<String>(row, "status")?)?,
        subject,
        created_at_millis: col(row, "created_at")?,
        updated_at_millis: col(row, "updated_at")?,
    })
}

/// One message as a reader sees it: always its metadata, the body only if the reader may see
/// its category.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct MessageView {
    /// Id.
    pub id: MessageId,
    /// Which way.
    pub direction: Direction,
    /// Staff author.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<StaffId>,
    /// The body's category.
    pub category: DataCategory,
    /// Created (ms).
    pub created_at_millis: i64,
    /// The text; absent when withheld.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body was withheld (the reader may not see its category).
    pub withheld: bool,
}

impl fmt::Debug for MessageView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageView")
            .field("id", &self.id)
            .field("category", &self.category)
            .field("withheld", &self.withheld)
            .finish_non_exhaustive()
    }
}

/// A page of a conversation as one reader may see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessagePage {
    /// The conversation.
    pub conversation: ConversationView,
    /// Its messages, oldest first.
    pub messages: Vec<MessageView>,
    /// The categories disclosed (as audited).
    pub disclosed: BTreeSet<DataCategory>,
    /// The purpose recorded.
    pub purpose: PurposeOfUse,
    /// Clinical bodies were withheld for lack of a care relationship and the reader could
    /// open them with emergency access.
    pub break_glass_available: bool,
}

/// A member of a patient's care team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CareTeamMember {
    /// The staff account.
    pub staff_id: StaffId,
    /// Their display name.
    pub display_name: String,
    /// Their roles.
    pub roles: Vec<Role>,
    /// Who added them (`None`: Perimeter itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_by: Option<StaffId>,
    /// When (ms).
    pub assigned_at_millis: i64,
}

impl Store {
    /// One patient's record as `viewer` may see it (declares `view_demographics`), audited
    /// with exactly the categories disclosed.
    pub async fn view_patient(
        &self,
        viewer: &Viewer,
        patient: PatientId,
    ) -> Result<PatientView, StoreError> {
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ViewDemographics).await?;
        same_practice(&mut w, self, &reader, patient).await?;
        let view = read_view(&mut w, self, viewer, &reader, patient, None).await?;
        w.commit().await?;
        Ok(view)
    }

    /// Patients of the viewer's practice found by a blind-index lookup (declares
    /// `search_patients`; at most [`LOOKUP_LIMIT`]), each as the viewer may see it and each
    /// read audited (detail `lookup_phone`, ...). A lookup that finds nobody is audited too. A
    /// value that cannot be normalised is refused with [`StoreError::Invalid`].
    pub async fn search_patients(
        &self,
        viewer: &Viewer,
        lookup: &PatientLookup,
    ) -> Result<Vec<PatientView>, StoreError> {
        let (kind, raw, detail, expected) = lookup.parts();
        let Some(digest) = self.keys().indexer().index_raw(kind, raw) else {
            return Err(StoreError::Invalid {
                field: kind.as_str(),
                expected,
            });
        };
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::SearchPatients).await?;
        if let Some(extra) = lookup.extra_permission()
            && !allowed(&reader.roles, extra)
        {
            return Err(StoreError::Forbidden {
                permission: extra.as_str(),
            });
        }
        let found: Vec<String> = match kind {
            IndexKind::MemberId | IndexKind::AccountNumber => {
                find_by_number(
                    &mut w,
                    kind,
                    &digest,
                    &reader.practice.to_string(),
                    LOOKUP_LIMIT,
                )
                .await?
            }
            _ => {
                let rows = sqlx::query(
                    "SELECT p.id FROM patient_index i JOIN patient p ON p.id = i.patient_id WHERE i.kind = $1 AND i.digest = $2 AND p.practice_id = $3 AND p.shredded_at IS NULL ORDER BY p.id LIMIT $4",
                )
                .bind(kind.as_str())
                .bind(digest.to_vec())
                .bind(reader.practice.to_string())
                .bind(i64::from(LOOKUP_LIMIT))
                .fetch_all(w.conn())
                .await
                .map_err(|e| w.err(e))?;
                rows.iter()
                    .map(|r| col::<String>(r, "id"))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        let ids = found
            .iter()
            .map(|s| id::<PatientId>(s, "patient"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for pid in ids {
            out.push(read_view(&mut w, self, viewer, &reader, pid, Some(detail)).await?);
        }
        if out.is_empty() {
            w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
                self.now(),
                Action::Execute,
                ObjectRef {
                    kind: "patient_search".into(),
                    id: None,
                },
                None,
                Vec::new(),
                Some(detail),
            ))
            .await?;
        }
        w.commit().await?;
        Ok(out)
    }

    /// A patient's conversations, oldest first, as `viewer` may see them (declares
    /// `read_conversation`); audited with `administrative_message` when a subject is shown.
    pub async fn view_conversations(
        &self,
        viewer: &Viewer,
        patient: PatientId,
    ) -> Result<Vec<ConversationView>, StoreError> {
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ReadConversation).await?;
        same_practice(&mut w, self, &reader, patient).await?;
        let access = access_to(&mut w, self, &reader, patient).await?;
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
            .map(|r| build_conversation_view(r, &dek, &access))
            .collect::<Result<Vec<_>, _>>()?;
        let mut disclosed = BTreeSet::new();
        if out.iter().any(|c| c.subject.is_some()) {
            disclosed.insert(DataCategory::AdministrativeMessage);
        }
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            self.now(),
            Action::Read,
            ObjectRef {
                kind: "conversation_list".into(),
                id: None,
            },
            Some(patient),
            disclosed.into_iter().collect(),
            None,
        ))
        .await?;
        w.commit().await?;
        Ok(out)
    }

    /// A page of a conversation (at most `limit`, capped at [`MESSAGE_PAGE_LIMIT`], after
    /// message `after`) as `viewer` may see it (declares `read_conversation`): every message's
    /// metadata, and the body of those whose category the viewer may see (clinical bodies only
    /// in care or under an emergency grant). Withheld bodies are not decrypted. Audited once
    /// with exactly the categories disclosed (detail `messages`, or `break_glass` with purpose
    /// `emergency` when a grant opened clinical content).
    pub async fn view_messages(
        &self,
        viewer: &Viewer,
        conversation: ConversationId,
        after: Option<MessageId>,
        limit: u32,
    ) -> Result<MessagePage, StoreError> {
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ReadConversation).await?;
        let row = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversation WHERE id = $1"
        ))
        .bind(conversation.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let not_found = || StoreError::NotFound {
            kind: "conversation",
            id: conversation.to_string(),
        };
        let row = row.ok_or_else(not_found)?;
        let practice: PracticeId = id(&col::<String>(&row, "practice_id")?, "practice")?;
        if practice != reader.practice {
            return Err(not_found());
        }
        let patient: PatientId = id(&col::<String>(&row, "patient_id")?, "patient")?;
        let access = access_to(&mut w, self, &reader, patient).await?;
        let dek = patient_key(w.conn(), self, patient).await?;
        let header = build_conversation_view(&row, &dek, &access)?;
        let rows = sqlx::query(
            "SELECT id, direction, author_id, category, body_ct, created_at FROM message WHERE conversation_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(conversation.to_string())
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(i64::from(limit.clamp(1, MESSAGE_PAGE_LIMIT)))
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let mut disclosed = BTreeSet::new();
        if header.subject.is_some() {
            disclosed.insert(DataCategory::AdministrativeMessage);
        }
        let mut messages = Vec::with_capacity(rows.len());
        for r in &rows {
            let mid: MessageId = id(&col::<String>(r, "id")?, "message")?;
            let category: DataCategory = col::<String>(r, "category")?
                .parse()
                .map_err(|_| StoreError::Corrupt("unknown message category".into()))?;
            let author: Option<String> = col(r, "author_id")?;
            let body = if access.categories.contains(&category) {
                disclosed.insert(category);
                Some(decrypt_text(
                    &dek,
                    &Aad::new("message", *mid.as_bytes(), "body"),
                    &col::<Vec<u8>>(r, "body_ct")?,
                )?)
            } else {
                None
            };
            messages.push(MessageView {
                id: mid,
                direction: Direction::parse(&col::<String>(r, "direction")?)?,
                author: author.map(|a| id(&a, "staff")).transpose()?,
                category,
                created_at_millis: col(r, "created_at")?,
                withheld: body.is_none(),
                body,
            });
        }
        let (purpose, detail) = purpose_of(&access, &reader.roles, &disclosed, Some("messages"));
        w.audit(&reader.ctx(viewer, purpose).event(
            self.now(),
            Action::Read,
            object("conversation", conversation),
            Some(patient),
            disclosed.iter().copied().collect(),
            detail,
        ))
        .await?;
        w.commit().await?;
        Ok(MessagePage {
            conversation: header,
            messages,
            disclosed,
            purpose,
            break_glass_available: access.break_glass_available,
        })
    }

    /// A patient's care team (declares `triage_conversation`), audited (detail `care_team`).
    pub async fn care_team(
        &self,
        viewer: &Viewer,
        patient: PatientId,
    ) -> Result<Vec<CareTeamMember>, StoreError> {
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::TriageConversation).await?;
        same_practice(&mut w, self, &reader, patient).await?;
        let rows = sqlx::query(
            "SELECT c.staff_id, s.display_name, s.roles, c.assigned_by, c.assigned_at FROM care_team c JOIN staff_user s ON s.id = c.staff_id WHERE c.patient_id = $1 ORDER BY c.assigned_at, c.staff_id",
        )
        .bind(patient.to_string())
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let out = rows
            .iter()
            .map(|r| {
                let by: Option<String> = col(r, "assigned_by")?;
                Ok(CareTeamMember {
                    staff_id: id(&col::<String>(r, "staff_id")?, "staff")?,
                    display_name: col(r, "display_name")?,
                    roles: crate::staff::roles_from_text(&col::<String>(r, "roles")?)?,
                    assigned_by: by.map(|b| id(&b, "staff")).transpose()?,
                    assigned_at_millis: col(r, "assigned_at")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            self.now(),
            Action::Read,
            ObjectRef {
                kind: "care_team".into(),
                id: None,
            },
            Some(patient),
            Vec::new(),
            Some("care_team"),
        ))
        .await?;
        w.commit().await?;
        Ok(out)
    }

    /// Adds a clinician or nurse of the viewer's practice to a patient's care team (declares
    /// `triage_conversation`), audited (`care_team_added`). Nobody adds themselves: reaching a
    /// record outside one's care is emergency access. `false`: already on the team.
    pub async fn add_to_care_team(
        &self,
        viewer: &Viewer,
        patient: PatientId,
        member: StaffId,
    ) -> Result<bool, StoreError> {
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::TriageConversation).await?;
        same_practice(&mut w, self, &reader, patient).await?;
        if member == reader.staff {
            return Err(StoreError::Invalid {
                field: "staff_id",
                expected: "another member of staff (to open a record outside your care, use emergency access)",
            });
        }
        let added = insert_care(
            &mut w,
            self,
            reader.practice,
            patient,
            member,
            Some(reader.staff),
        )
        .await?;
        if added {
            w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
                self.now(),
                Action::Create,
                object("care_team", member),
                Some(patient),
                Vec::new(),
                Some("care_team_added"),
            ))
            .await?;
        }
        w.commit().await?;
        Ok(added)
    }

    /// Removes a member from a patient's care team (declares `triage_conversation`), audited
    /// (`care_team_removed`). `false`: not on the team.
    pub async fn remove_from_care_team(
        &self,
        viewer: &Viewer,
        patient: PatientId,
        member: StaffId,
    ) -> Result<bool, StoreError> {
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::TriageConversation).await?;
        same_practice(&mut w, self, &reader, patient).await?;
        let gone = sqlx::query("DELETE FROM care_team WHERE patient_id = $1 AND staff_id = $2")
            .bind(patient.to_string())
            .bind(member.to_string())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        if gone.rows_affected() == 0 {
            return Ok(false);
        }
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            self.now(),
            Action::Delete,
            object("care_team", member),
            Some(patient),
            Vec::new(),
            Some("care_team_removed"),
        ))
        .await?;
        w.commit().await?;
        Ok(true)
    }

    /// Perimeter itself puts `member` on `patient`'s care team (demo seeding, later the work
    /// queues), audited with `ctx` (`care_team_added`). The context must be the system's.
    pub async fn assign_care(
        &self,
        ctx: &AccessContext,
        patient: PatientId,
        member: StaffId,
    ) -> Result<bool, StoreError> {
        ctx.require_internal()?;
        let mut w = self.begin_write().await?;
        let practice = patient_practice(w.conn(), self, patient).await?;
        let added = insert_care(&mut w, self, practice, patient, member, None).await?;
        if added {
            w.audit(&ctx.event(
                self.now(),
                Action::Create,
                object("care_team", member),
                Some(patient),
                Vec::new(),
                Some("care_team_added"),
            ))
            .await?;
        }
        w.commit().await?;
        Ok(added)
    }
}

/// Inserts a care-team row after checking the member: a clinician or nurse of `practice`,
/// not disabled.
pub(crate) async fn insert_care(
    w: &mut WriteTx,
    store: &Store,
    practice: PracticeId,
    patient: PatientId,
    member: StaffId,
    by: Option<StaffId>,
) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT practice_id, roles, disabled_at FROM staff_user WHERE id = $1")
        .bind(member.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(|e| w.err(e))?;
    let Some(row) = row else {
        return Err(StoreError::NotFound {
            kind: "staff user",
            id: member.to_string(),
        });
    };
    let their_practice: PracticeId = id(&col::<String>(&row, "practice_id")?, "practice")?;
    if their_practice != practice {
        return Err(StoreError::NotFound {
            kind: "staff user",
            id: member.to_string(),
        });
    }
    let roles = crate::staff::roles_from_text(&col::<String>(&row, "roles")?)?;
    let disabled: Option<i64> = col(&row, "disabled_at")?;
    if disabled.is_some()
        || !roles
            .iter()
            .any(|r| matches!(r, Role::Clinician | Role::Nurse))
    {
        return Err(StoreError::Invalid {
            field: "staff_id",
            expected: "an active clinician or nurse",
        });
    }
    let now = store.now();
    let done = sqlx::query(
        "INSERT INTO care_team (patient_id, staff_id, practice_id, assigned_by, assigned_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (patient_id, staff_id) DO NOTHING",
    )
    .bind(patient.to_string())
    .bind(member.to_string())
    .bind(practice.to_string())
    .bind(by.map(|b| b.to_string()))
    .bind(now)
    .execute(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    Ok(done.rows_affected() == 1)
}

//! Insurance coverages and billing accounts (migration 0010): what billing staff need of a
//! patient, and nothing more.
//!
//! Every field is sealed under the patient's data key, bound to (table, row id, field), so
//! crypto-shredding the patient makes them unreadable like the rest of the record. Member ids
//! and account numbers are found through keyed blind indexes kept in their own columns
//! ([`IndexKind::MemberId`], [`IndexKind::AccountNumber`]; cleared when the patient is
//! shredded), never through a plaintext column.
//!
//! | Function | Declares | Category audited |
//! |---|---|---|
//! | [`Store::add_coverage`], [`Store::update_coverage`], [`Store::end_coverage`] | `manage_insurance` | `insurance` |
//! | [`Store::view_coverages`] | `view_insurance` | `insurance` |
//! | [`Store::set_billing_account`] | `manage_billing` | `billing` |
//! | [`Store::view_billing_account`] | `view_billing` | `billing` |
//!
//! Lookups by member id or account number go through [`Store::search_patients`]
//! ([`crate::PatientLookup::MemberId`], [`crate::PatientLookup::AccountNumber`]), which then
//! also requires `view_insurance` or `view_billing`. [`Store::view_patient`] carries the
//! coverages and the account only for readers whose categories include `insurance` and
//! `billing`. Like every staff function here, these take a [`Viewer`] and read the viewer's
//! roles from the database; a patient of another practice is "not found". Input arrives as
//! the validated types of this module ([`InsuranceName`], [`AccountIdentifier`],
//! [`SubscriberRelationship`], [`Cents`]), whose errors name the field and never the value.

use std::fmt;
use std::str::FromStr;

use perimeter_audit::{Action, ObjectRef};
use perimeter_auth::{Permission, routine_purpose};
use perimeter_crypto::{Aad, Dek, IndexKind, decrypt_text, encrypt_text};
use perimeter_domain::{DataCategory, PatientId, PracticeId, StaffId, is_invisible};
use serde::Serialize;
use sqlx::any::AnyRow;
use time::Date;
use uuid::Uuid;

use crate::db::WriteTx;
use crate::emergency::patient_practice;
use crate::model::{AccessContext, object};
use crate::patients::patient_key;
use crate::rows::{col, id};
use crate::views::{Viewer, access_to, reader, same_practice};
use crate::{Store, StoreError};

/// The longest payer or plan name accepted, in characters.
pub const MAX_INSURANCE_NAME_CHARS: usize = 100;
/// The largest balance, in cents, either way (ten million in the currency's unit).
pub const MAX_BALANCE_CENTS: i64 = 1_000_000_000;
/// The most coverages one patient may have on record (ended ones included).
pub const MAX_COVERAGES: i64 = 20;

const COVERAGE: &str = "insurance_coverage";
const ACCOUNT: &str = "billing_account";

/// A payer or plan name: trimmed, 1 to [`MAX_INSURANCE_NAME_CHARS`] characters, no control,
/// zero-width or direction-changing characters. `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct InsuranceName(String);

impl InsuranceName {
    /// Validates `raw` for `field` (the field is named in the error, the value never).
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, StoreError> {
        let t = raw.trim();
        if t.is_empty()
            || t.chars().count() > MAX_INSURANCE_NAME_CHARS
            || t.chars().any(is_invisible)
        {
            return Err(StoreError::Invalid {
                field,
                expected: "1 to 100 visible characters (no control, zero-width or direction-changing characters)",
            });
        }
        Ok(Self(t.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for InsuranceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InsuranceName([PHI redacted])")
    }
}

/// A member id, group number or account number: letters and digits, with spaces and hyphens
/// as separators, at most 40 letters and digits (see
/// [`perimeter_crypto::normalize::account_id`]). Kept as entered (trimmed); looked up in its
/// normalised form. `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct AccountIdentifier(String);

impl AccountIdentifier {
    /// Validates `raw` for `field`.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, StoreError> {
        let t = raw.trim();
        if t.chars().count() > 60 || perimeter_crypto::normalize::account_id(t).is_none() {
            return Err(StoreError::Invalid {
                field,
                expected: "1 to 40 letters and digits (spaces and hyphens allowed between them)",
            });
        }
        Ok(Self(t.to_owned()))
    }

    /// The identifier as entered.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccountIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccountIdentifier([PHI redacted])")
    }
}

/// The patient's relationship to the coverage's subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriberRelationship {
    /// The patient is the subscriber.
    #[serde(rename = "self")]
    Subscriber,
    /// The subscriber's spouse or partner.
    Spouse,
    /// The subscriber's child.
    Child,
    /// Another dependant.
    Other,
}

/// The relationships accepted, as spelled in the API.
pub const SUBSCRIBER_RELATIONSHIPS: &[&str] = &["self", "spouse", "child", "other"];

impl SubscriberRelationship {
    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            SubscriberRelationship::Subscriber => "self",
            SubscriberRelationship::Spouse => "spouse",
            SubscriberRelationship::Child => "child",
            SubscriberRelationship::Other => "other",
        }
    }
}

impl FromStr for SubscriberRelationship {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "self" => Ok(SubscriberRelationship::Subscriber),
            "spouse" => Ok(SubscriberRelationship::Spouse),
            "child" => Ok(SubscriberRelationship::Child),
            "other" => Ok(SubscriberRelationship::Other),
            _ => Err(StoreError::Invalid {
                field: "relationship",
                expected: "one of self, spouse, child, other",
            }),
        }
    }
}

/// An amount in cents, at most [`MAX_BALANCE_CENTS`] either way (negative: a credit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Cents(i64);

impl Cents {
    /// Validates `cents` for `field`.
    pub fn new(field: &'static str, cents: i64) -> Result<Self, StoreError> {
        if cents.checked_abs().is_none_or(|a| a > MAX_BALANCE_CENTS) {
            return Err(StoreError::Invalid {
                field,
                expected: "a whole number of cents between -1000000000 and 1000000000",
            });
        }
        Ok(Self(cents))
    }

    /// The amount.
    pub const fn get(self) -> i64 {
        self.0
    }
}

/// A coverage to record or the new state of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoverageInput {
    /// The payer (insurer).
    pub payer: InsuranceName,
    /// The plan.
    pub plan: Option<InsuranceName>,
    /// The member id on the card.
    pub member_id: AccountIdentifier,
    /// The group number.
    pub group_number: Option<AccountIdentifier>,
    /// The patient's relationship to the subscriber.
    pub relationship: SubscriberRelationship,
    /// First day covered.
    pub effective_from: Option<Date>,
    /// Last day covered.
    pub effective_to: Option<Date>,
    /// This is the patient's primary coverage (any other loses the mark).
    pub primary: bool,
}

impl CoverageInput {
    fn validate(&self) -> Result<(), StoreError> {
        if let (Some(from), Some(to)) = (self.effective_from, self.effective_to)
            && to < from
        {
            return Err(StoreError::Invalid {
                field: "effective_to",
                expected: "a date on or after effective_from",
            });
        }
        Ok(())
    }
}

/// A billing account's new state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInput {
    /// The practice's account number for the patient.
    pub account_number: AccountIdentifier,
    /// The balance due (negative: a credit).
    pub balance: Cents,
    /// The date of the last statement sent.
    pub last_statement: Option<Date>,
}

/// One coverage as a reader with `insurance` sees it.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct CoverageView {
    /// Id (not PHI).
    pub id: Uuid,
    /// The patient.
    pub patient_id: PatientId,
    /// Payer.
    pub payer: String,
    /// Plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Member id as entered.
    pub member_id: String,
    /// Group number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_number: Option<String>,
    /// Relationship to the subscriber.
    pub relationship: SubscriberRelationship,
    /// First day covered, `YYYY-MM-DD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_from: Option<String>,
    /// Last day covered, `YYYY-MM-DD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_to: Option<String>,
    /// The primary coverage.
    pub primary: bool,
    /// When it was ended (ms), if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at_millis: Option<i64>,
    /// Recorded (ms).
    pub created_at_millis: i64,
    /// Last changed (ms).
    pub updated_at_millis: i64,
}

impl fmt::Debug for CoverageView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoverageView")
            .field("id", &self.id)
            .field("primary", &self.primary)
            .finish_non_exhaustive()
    }
}

/// A billing account as a reader with `billing` sees it.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct BillingAccountView {
    /// The patient.
    pub patient_id: PatientId,
    /// Account number as entered.
    pub account_number: String,
    /// Balance due in cents (negative: a credit).
    pub balance_cents: i64,
    /// Last statement date, `YYYY-MM-DD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_statement: Option<String>,
    /// Last changed (ms).
    pub updated_at_millis: i64,
}

impl fmt::Debug for BillingAccountView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BillingAccountView")
            .field("patient_id", &self.patient_id)
            .finish_non_exhaustive()
    }
}

fn date_text(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn seal(
    dek: &Dek,
    table: &str,
    row: [u8; 16],
    field: &str,
    v: &str,
) -> Result<Vec<u8>, StoreError> {
    Ok(encrypt_text(dek, &Aad::new(table, row, field), v)?)
}

fn seal_opt(
    dek: &Dek,
    table: &str,
    row: [u8; 16],
    field: &str,
    v: Option<&str>,
) -> Result<Option<Vec<u8>>, StoreError> {
    v.map(|v| seal(dek, table, row, field, v)).transpose()
}

fn open(
    dek: &Dek,
    table: &str,
    row: [u8; 16],
    field: &str,
    ct: &[u8],
) -> Result<String, StoreError> {
    Ok(decrypt_text(dek, &Aad::new(table, row, field), ct)?)
}

fn open_opt(
    dek: &Dek,
    table: &str,
    row: [u8; 16],
    field: &str,
    ct: Option<Vec<u8>>,
) -> Result<Option<String>, StoreError> {
    ct.map(|c| open(dek, table, row, field, &c)).transpose()
}

const COVERAGE_COLUMNS: &str = "id, patient_id, payer_ct, plan_ct, member_id_ct, group_number_ct, relationship_ct, effective_from_ct, effective_to_ct, is_primary, ended_at, created_at, updated_at";

fn decode_coverage(row: &AnyRow, dek: &Dek) -> Result<CoverageView, StoreError> {
    let cid: Uuid = id(&col::<String>(row, "id")?, "coverage")?;
    let r = *cid.as_bytes();
    let relationship: SubscriberRelationship = open(
        dek,
        COVERAGE,
        r,
        "relationship",
        &col::<Vec<u8>>(row, "relationship_ct")?,
    )?
    .parse()
    .map_err(|_| StoreError::Corrupt("stored subscriber relationship is unknown".into()))?;
    Ok(CoverageView {
        id: cid,
        patient_id: id(&col::<String>(row, "patient_id")?, "patient")?,
        payer: open(dek, COVERAGE, r, "payer", &col::<Vec<u8>>(row, "payer_ct")?)?,
        plan: open_opt(dek, COVERAGE, r, "plan", col(row, "plan_ct")?)?,
        member_id: open(
            dek,
            COVERAGE,
            r,
            "member_id",
            &col::<Vec<u8>>(row, "member_id_ct")?,
        )?,
        group_number: open_opt(
            dek,
            COVERAGE,
            r,
            "group_number",
            col(row, "group_number_ct")?,
        )?,
        relationship,
        effective_from: open_opt(
            dek,
            COVERAGE,
            r,
            "effective_from",
            col(row, "effective_from_ct")?,
        )?,
        effective_to: open_opt(
            dek,
            COVERAGE,
            r,
            "effective_to",
            col(row, "effective_to_ct")?,
        )?,
        primary: col::<i64>(row, "is_primary")? != 0,
        ended_at_millis: col(row, "ended_at")?,
        created_at_millis: col(row, "created_at")?,
        updated_at_millis: col(row, "updated_at")?,
    })
}

fn decode_account(row: &AnyRow, dek: &Dek) -> Result<BillingAccountView, StoreError> {
    let pid: PatientId = id(&col::<String>(row, "patient_id")?, "patient")?;
    let r = *pid.as_bytes();
    let balance = open(
        dek,
        ACCOUNT,
        r,
        "balance",
        &col::<Vec<u8>>(row, "balance_ct")?,
    )?;
    Ok(BillingAccountView {
        patient_id: pid,
        account_number: open(
            dek,
            ACCOUNT,
            r,
            "account_number",
            &col::<Vec<u8>>(row, "account_number_ct")?,
        )?,
        balance_cents: balance
            .parse()
            .map_err(|_| StoreError::Corrupt("stored balance is not a number".into()))?,
        last_statement: open_opt(
            dek,
            ACCOUNT,
            r,
            "last_statement",
            col(row, "last_statement_ct")?,
        )?,
        updated_at_millis: col(row, "updated_at")?,
    })
}

/// The patient's coverages, oldest first (decrypted: callers check the category first).
pub(crate) async fn load_coverages(
    w: &mut WriteTx,
    patient: PatientId,
    dek: &Dek,
) -> Result<Vec<CoverageView>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COVERAGE_COLUMNS} FROM insurance_coverage WHERE patient_id = $1 ORDER BY created_at, id"
    ))
    .bind(patient.to_string())
    .fetch_all(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    rows.iter().map(|r| decode_coverage(r, dek)).collect()
}

/// The patient's billing account, if there is one (decrypted: callers check the category).
pub(crate) async fn load_account(
    w: &mut WriteTx,
    patient: PatientId,
    dek: &Dek,
) -> Result<Option<BillingAccountView>, StoreError> {
    let row = sqlx::query(
        "SELECT patient_id, account_number_ct, balance_ct, last_statement_ct, updated_at FROM billing_account WHERE patient_id = $1",
    )
    .bind(patient.to_string())
    .fetch_optional(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    row.map(|r| decode_account(&r, dek)).transpose()
}

/// The patients (not shredded) of `practice` whose coverage (`MemberId`) or account
/// (`AccountNumber`) has this blind index.
pub(crate) async fn find_by_number(
    w: &mut WriteTx,
    kind: IndexKind,
    digest: &[u8; 32],
    practice: &str,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    let sql = match kind {
        IndexKind::MemberId => {
            "SELECT DISTINCT c.patient_id AS id FROM insurance_coverage c JOIN patient p ON p.id = c.patient_id WHERE c.member_id_bidx = $1 AND c.practice_id = $2 AND p.shredded_at IS NULL ORDER BY c.patient_id LIMIT $3"
        }
        _ => {
            "SELECT a.patient_id AS id FROM billing_account a JOIN patient p ON p.id = a.patient_id WHERE a.account_number_bidx = $1 AND a.practice_id = $2 AND p.shredded_at IS NULL ORDER BY a.patient_id LIMIT $3"
        }
    };
    let rows = sqlx::query(sql)
        .bind(digest.to_vec())
        .bind(practice.to_owned())
        .bind(i64::from(limit))
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
    rows.iter().map(|r| col::<String>(r, "id")).collect()
}

struct SealedCoverage {
    payer: Vec<u8>,
    plan: Option<Vec<u8>>,
    member_id: Vec<u8>,
    group_number: Option<Vec<u8>>,
    relationship: Vec<u8>,
    from: Option<Vec<u8>>,
    to: Option<Vec<u8>>,
    bidx: Vec<u8>,
}

fn seal_coverage(
    store: &Store,
    dek: &Dek,
    cid: Uuid,
    c: &CoverageInput,
) -> Result<SealedCoverage, StoreError> {
    let r = *cid.as_bytes();
    let bidx = store
        .keys()
        .indexer()
        .index_raw(IndexKind::MemberId, c.member_id.as_str())
        .ok_or(StoreError::Invalid {
            field: "member_id",
            expected: "1 to 40 letters and digits (spaces and hyphens allowed between them)",
        })?;
    Ok(SealedCoverage {
        payer: seal(dek, COVERAGE, r, "payer", c.payer.as_str())?,
        plan: seal_opt(
            dek,
            COVERAGE,
            r,
            "plan",
            c.plan.as_ref().map(InsuranceName::as_str),
        )?,
        member_id: seal(dek, COVERAGE, r, "member_id", c.member_id.as_str())?,
        group_number: seal_opt(
            dek,
            COVERAGE,
            r,
            "group_number",
            c.group_number.as_ref().map(AccountIdentifier::as_str),
        )?,
        relationship: seal(dek, COVERAGE, r, "relationship", c.relationship.as_str())?,
        from: seal_opt(
            dek,
            COVERAGE,
            r,
            "effective_from",
            c.effective_from.map(date_text).as_deref(),
        )?,
        to: seal_opt(
            dek,
            COVERAGE,
            r,
            "effective_to",
            c.effective_to.map(date_text).as_deref(),
        )?,
        bidx: bidx.to_vec(),
    })
}

async fn clear_primary(
    w: &mut WriteTx,
    patient: PatientId,
    except: Uuid,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE insurance_coverage SET is_primary = 0, updated_at = $3 WHERE patient_id = $1 AND id <> $2 AND is_primary = 1",
    )
    .bind(patient.to_string())
    .bind(except.to_string())
    .bind(now)
    .execute(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    Ok(())
}

/// Inserts a coverage row (after the caller checked who may): at most [`MAX_COVERAGES`] per
/// patient; a primary one takes the mark from the others.
async fn insert_coverage(
    w: &mut WriteTx,
    store: &Store,
    practice: PracticeId,
    patient: PatientId,
    by: Option<StaffId>,
    input: &CoverageInput,
) -> Result<(Uuid, Dek), StoreError> {
    let cid = Uuid::now_v7();
    let now = store.now();
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM insurance_coverage WHERE patient_id = $1")
            .bind(patient.to_string())
            .fetch_one(w.conn())
            .await
            .map_err(|e| w.err(e))?;
    if count >= MAX_COVERAGES {
        return Err(StoreError::Invalid {
            field: "coverage",
            expected: "at most 20 coverages per patient (update or end an existing one)",
        });
    }
    let dek = patient_key(w.conn(), store, patient).await?;
    let s = seal_coverage(store, &dek, cid, input)?;
    if input.primary {
        clear_primary(w, patient, cid, now).await?;
    }
    sqlx::query(
        "INSERT INTO insurance_coverage (id, practice_id, patient_id, payer_ct, plan_ct, member_id_ct, group_number_ct, relationship_ct, effective_from_ct, effective_to_ct, member_id_bidx, is_primary, ended_at, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, $13, $14, $14)",
    )
    .bind(cid.to_string())
    .bind(practice.to_string())
    .bind(patient.to_string())
    .bind(s.payer)
    .bind(s.plan)
    .bind(s.member_id)
    .bind(s.group_number)
    .bind(s.relationship)
    .bind(s.from)
    .bind(s.to)
    .bind(s.bidx)
    .bind(i64::from(input.primary))
    .bind(by.map(|b| b.to_string()))
    .bind(now)
    .execute(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    Ok((cid, dek))
}

/// Creates or replaces a billing account row (after the caller checked who may). `true`: it
/// existed before.
async fn write_account(
    w: &mut WriteTx,
    store: &Store,
    practice: PracticeId,
    patient: PatientId,
    by: Option<StaffId>,
    input: &AccountInput,
) -> Result<(bool, Dek), StoreError> {
    let now = store.now();
    let bidx = store
        .keys()
        .indexer()
        .index_raw(IndexKind::AccountNumber, input.account_number.as_str())
        .ok_or(StoreError::Invalid {
            field: "account_number",
            expected: "1 to 40 letters and digits (spaces and hyphens allowed between them)",
        })?;
    let dek = patient_key(w.conn(), store, patient).await?;
    let r = *patient.as_bytes();
    let number = seal(
        &dek,
        ACCOUNT,
        r,
        "account_number",
        input.account_number.as_str(),
    )?;
    let balance = seal(
        &dek,
        ACCOUNT,
        r,
        "balance",
        &input.balance.get().to_string(),
    )?;
    let statement = seal_opt(
        &dek,
        ACCOUNT,
        r,
        "last_statement",
        input.last_statement.map(date_text).as_deref(),
    )?;
    let existed = sqlx::query("SELECT patient_id FROM billing_account WHERE patient_id = $1")
        .bind(patient.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(|e| w.err(e))?
        .is_some();
    let by = by.map(|b| b.to_string());
    if existed {
        sqlx::query(
            "UPDATE billing_account SET account_number_ct = $2, balance_ct = $3, last_statement_ct = $4, account_number_bidx = $5, updated_by = $6, updated_at = $7 WHERE patient_id = $1",
        )
        .bind(patient.to_string())
        .bind(number)
        .bind(balance)
        .bind(statement)
        .bind(bidx.to_vec())
        .bind(by)
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
    } else {
        sqlx::query(
            "INSERT INTO billing_account (patient_id, practice_id, account_number_ct, balance_ct, last_statement_ct, account_number_bidx, updated_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(patient.to_string())
        .bind(practice.to_string())
        .bind(number)
        .bind(balance)
        .bind(statement)
        .bind(bidx.to_vec())
        .bind(by)
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
    }
    Ok((existed, dek))
}

async fn coverage_row(
    w: &mut WriteTx,
    patient: PatientId,
    coverage: Uuid,
) -> Result<AnyRow, StoreError> {
    sqlx::query(&format!(
        "SELECT {COVERAGE_COLUMNS} FROM insurance_coverage WHERE id = $1 AND patient_id = $2"
    ))
    .bind(coverage.to_string())
    .bind(patient.to_string())
    .fetch_optional(w.conn())
    .await
    .map_err(|e| w.err(e))?
    .ok_or_else(|| StoreError::NotFound {
        kind: "coverage",
        id: coverage.to_string(),
    })
}

impl Store {
    /// Records a coverage for `patient` (declares `manage_insurance`); with `primary`, any
    /// other coverage of the patient loses the mark. Audited (`insurance`, `coverage_added`).
    pub async fn add_coverage(
        &self,
        viewer: &Viewer,
        patient: PatientId,
        input: &CoverageInput,
    ) -> Result<CoverageView, StoreError> {
        input.validate()?;
        let now = self.now();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ManageInsurance).await?;
        same_practice(&mut w, self, &reader, patient).await?;
        let (cid, dek) = insert_coverage(
            &mut w,
            self,
            reader.practice,
            patient,
            Some(reader.staff),
            input,
        )
        .await?;
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            now,
            Action::Create,
            object(COVERAGE, cid),
            Some(patient),
            vec![DataCategory::Insurance],
            Some("coverage_added"),
        ))
        .await?;
        let view = decode_coverage(&coverage_row(&mut w, patient, cid).await?, &dek)?;
        w.commit().await?;
        Ok(view)
    }

    /// Replaces a coverage's fields (declares `manage_insurance`). Audited (`insurance`,
    /// `coverage_updated`). A coverage of another patient is "not found".
    pub async fn update_coverage(
        &self,
        viewer: &Viewer,
        patient: PatientId,
        coverage: Uuid,
        input: &CoverageInput,
    ) -> Result<CoverageView, StoreError> {
        input.validate()?;
        let now = self.now();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ManageInsurance).await?;
        same_practice(&mut w, self, &reader, patient).await?;
        let current = coverage_row(&mut w, patient, coverage).await?;
        let ended: Option<i64> = col(&current, "ended_at")?;
        if ended.is_some() && input.primary {
            return Err(StoreError::Invalid {
                field: "primary",
                expected: "false for an ended coverage",
            });
        }
        let dek = patient_key(w.conn(), self, patient).await?;
        let s = seal_coverage(self, &dek, coverage, input)?;
        if input.primary {
            clear_primary(&mut w, patient, coverage, now).await?;
        }
        sqlx::query(
            "UPDATE insurance_coverage SET payer_ct = $2, plan_ct = $3, member_id_ct = $4, group_number_ct = $5, relationship_ct = $6, effective_from_ct = $7, effective_to_ct = $8, member_id_bidx = $9, is_primary = $10, updated_at = $11 WHERE id = $1",
        )
        .bind(coverage.to_string())
        .bind(s.payer)
        .bind(s.plan)
        .bind(s.member_id)
        .bind(s.group_number)
        .bind(s.relationship)
        .bind(s.from)
        .bind(s.to)
        .bind(s.bidx)
        .bind(i64::from(input.primary))
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            now,
            Action::Update,
            object(COVERAGE, coverage),
            Some(patient),
            vec![DataCategory::Insurance],
            Some("coverage_updated"),
        ))
        .await?;
        let view = decode_coverage(&coverage_row(&mut w, patient, coverage).await?, &dek)?;
        w.commit().await?;
        Ok(view)
    }

    /// Ends a coverage (declares `manage_insurance`): its last day becomes `effective_to`, it
    /// is no longer primary, and it stays on record (coverages are never deleted). Audited
    /// (`insurance`, `coverage_ended`). Ending an ended coverage changes its last day only.
    pub async fn end_coverage(
        &self,
        viewer: &Viewer,
        patient: PatientId,
        coverage: Uuid,
        effective_to: Date,
    ) -> Result<CoverageView, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ManageInsurance).await?;
        same_practice(&mut w, self, &reader, patient).await?;
        let current = coverage_row(&mut w, patient, coverage).await?;
        let dek = patient_key(w.conn(), self, patient).await?;
        let r = *coverage.as_bytes();
        let from = open_opt(
            &dek,
            COVERAGE,
            r,
            "effective_from",
            col(&current, "effective_from_ct")?,
        )?;
        if from.is_some_and(|f| date_text(effective_to) < f) {
            return Err(StoreError::Invalid {
                field: "effective_to",
                expected: "a date on or after effective_from",
            });
        }
        let ended: Option<i64> = col(&current, "ended_at")?;
        let to = seal(&dek, COVERAGE, r, "effective_to", &date_text(effective_to))?;
        sqlx::query(
            "UPDATE insurance_coverage SET effective_to_ct = $2, is_primary = 0, ended_at = $3, updated_at = $4 WHERE id = $1",
        )
        .bind(coverage.to_string())
        .bind(to)
        .bind(ended.unwrap_or(now))
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            now,
            Action::Update,
            object(COVERAGE, coverage),
            Some(patient),
            vec![DataCategory::Insurance],
            Some("coverage_ended"),
        ))
        .await?;
        let view = decode_coverage(&coverage_row(&mut w, patient, coverage).await?, &dek)?;
        w.commit().await?;
        Ok(view)
    }

    /// A patient's coverages, oldest first, ended ones included (declares `view_insurance`).
    /// Audited once (detail `coverages`), with `insurance` when there was one to show.
    pub async fn view_coverages(
        &self,
        viewer: &Viewer,
        patient: PatientId,
    ) -> Result<Vec<CoverageView>, StoreError> {
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ViewInsurance).await?;
        same_practice(&mut w, self, &reader, patient).await?;
        let access = access_to(&mut w, self, &reader, patient).await?;
        if !access.categories.contains(&DataCategory::Insurance) {
            return Err(StoreError::Forbidden {
                permission: Permission::ViewInsurance.as_str(),
            });
        }
        let dek = patient_key(w.conn(), self, patient).await?;
        let out = load_coverages(&mut w, patient, &dek).await?;
        let categories = if out.is_empty() {
            Vec::new()
        } else {
            vec![DataCategory::Insurance]
        };
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            self.now(),
            Action::Read,
            ObjectRef {
                kind: "insurance_coverage_list".into(),
                id: None,
            },
            Some(patient),
            categories,
            Some("coverages"),
        ))
        .await?;
        w.commit().await?;
        Ok(out)
    }

    /// Sets a patient's billing account (declares `manage_billing`): created the first time,
    /// replaced afterwards. Audited (`billing`, `billing_account_set`).
    pub async fn set_billing_account(
        &self,
        viewer: &Viewer,
        patient: PatientId,
        input: &AccountInput,
    ) -> Result<BillingAccountView, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ManageBilling).await?;
        same_practice(&mut w, self, &reader, patient).await?;
        let (existed, dek) = write_account(
            &mut w,
            self,
            reader.practice,
            patient,
            Some(reader.staff),
            input,
        )
        .await?;
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            now,
            if existed {
                Action::Update
            } else {
                Action::Create
            },
            object(ACCOUNT, patient),
            Some(patient),
            vec![DataCategory::Billing],
            Some("billing_account_set"),
        ))
        .await?;
        let view = load_account(&mut w, patient, &dek)
            .await?
            .ok_or(StoreError::Corrupt("billing account vanished".into()))?;
        w.commit().await?;
        Ok(view)
    }

    /// A patient's billing account (declares `view_billing`); `None` when there is none.
    /// Audited (detail `billing_account`), with `billing` when there was one to show.
    pub async fn view_billing_account(
        &self,
        viewer: &Viewer,
        patient: PatientId,
    ) -> Result<Option<BillingAccountView>, StoreError> {
        let mut w = self.begin_write().await?;
        let reader = reader(&mut w, viewer, Permission::ViewBilling).await?;
        same_practice(&mut w, self, &reader, patient).await?;
        let access = access_to(&mut w, self, &reader, patient).await?;
        if !access.categories.contains(&DataCategory::Billing) {
            return Err(StoreError::Forbidden {
                permission: Permission::ViewBilling.as_str(),
            });
        }
        let dek = patient_key(w.conn(), self, patient).await?;
        let out = load_account(&mut w, patient, &dek).await?;
        w.audit(&reader.ctx(viewer, routine_purpose(&reader.roles)).event(
            self.now(),
            Action::Read,
            object(ACCOUNT, patient),
            Some(patient),
            if out.is_some() {
                vec![DataCategory::Billing]
            } else {
                Vec::new()
            },
            Some("billing_account"),
        ))
        .await?;
        w.commit().await?;
        Ok(out)
    }

    /// Perimeter itself records a coverage and a billing account (demo seeding, later an
    /// import), audited with `ctx` (`insurance`, `billing`). The context must be the system's.
    pub async fn record_billing_data(
        &self,
        ctx: &AccessContext,
        patient: PatientId,
        coverage: Option<&CoverageInput>,
        account: Option<&AccountInput>,
    ) -> Result<(), StoreError> {
        ctx.require_internal()?;
        if let Some(c) = coverage {
            c.validate()?;
        }
        let mut w = self.begin_write().await?;
        let practice = patient_practice(w.conn(), self, patient).await?;
        if let Some(c) = coverage {
            let (cid, _) = insert_coverage(&mut w, self, practice, patient, None, c).await?;
            w.audit(&ctx.event(
                self.now(),
                Action::Create,
                object(COVERAGE, cid),
                Some(patient),
                vec![DataCategory::Insurance],
                Some("coverage_added"),
            ))
            .await?;
        }
        if let Some(a) = account {
            write_account(&mut w, self, practice, patient, None, a).await?;
            w.audit(&ctx.event(
                self.now(),
                Action::Create,
                object(ACCOUNT, patient),
                Some(patient),
                vec![DataCategory::Billing],
                Some("billing_account_set"),
            ))
            .await?;
        }
        w.commit().await
    }
}

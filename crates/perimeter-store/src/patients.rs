//! Patients: per-patient data keys, encrypted fields and blind-index lookups.
//!
//! | Function | Declares |
//! |---|---|
//! | [`Store::create_patient`] | `register_patient` (a user of `practice`, checked in the database), or Perimeter itself |
//! | [`Store::update_patient`] | Perimeter itself only (`internal_write`: it replaces every field, which no role may see all of) |
//! | [`Store::get_patient`], `find_patients_by_*` | Perimeter itself only (`internal_read`); staff use `view_patient` and `search_patients` |

use perimeter_audit::Action;
use perimeter_auth::Permission;
use perimeter_crypto::{Aad, Dek, IndexKind, WrappedDek, decrypt_text, encrypt_text};
use perimeter_domain::{DataCategory, PatientId, PracticeId};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use crate::db::WriteTx;
use crate::model::{AccessContext, Patient, PatientData, object};
use crate::rows::{col, id};
use crate::{Store, StoreError};

const TABLE: &str = "patient";
const PATIENT_CATEGORIES: [DataCategory; 3] = [
    DataCategory::Demographics,
    DataCategory::Contact,
    DataCategory::Identifiers,
];

/// The upper bound on patients one lookup returns.
pub const LOOKUP_LIMIT: u32 = 100;

pub(crate) fn wrap_context(patient: PatientId) -> Vec<u8> {
    let mut c = b"patient:".to_vec();
    c.extend_from_slice(patient.as_bytes());
    c
}

/// Loads and unwraps the data key of `patient`.
pub(crate) async fn patient_key(
    conn: &mut AnyConnection,
    store: &Store,
    patient: PatientId,
) -> Result<Dek, StoreError> {
    let row = sqlx::query(
        "SELECT k.dek_id, k.kek_version, k.wrapped, p.shredded_at FROM patient p LEFT JOIN patient_key k ON k.patient_id = p.id WHERE p.id = $1",
    )
    .bind(patient.to_string())
    .fetch_optional(conn)
    .await
    .map_err(|e| store.err(e))?
    .ok_or_else(|| StoreError::NotFound {
        kind: "patient",
        id: patient.to_string(),
    })?;
    let shredded: Option<i64> = col(&row, "shredded_at")?;
    let dek_id: Option<Vec<u8>> = col(&row, "dek_id")?;
    let (Some(dek_id), None) = (dek_id, shredded) else {
        return Err(StoreError::Shredded { patient });
    };
    let version: i64 = col(&row, "kek_version")?;
    let wrapped = WrappedDek {
        kek_version: u32::try_from(version)
            .map_err(|_| StoreError::Corrupt("KEK version out of range".into()))?,
        dek_id: <[u8; 16]>::try_from(dek_id.as_slice())
            .map_err(|_| StoreError::Corrupt("data key id is not 16 bytes".into()))?,
        bytes: col(&row, "wrapped")?,
    };
    Ok(store.keys().unwrap_dek(&wrapped, &wrap_context(patient))?)
}

fn seal(dek: &Dek, patient: PatientId, field: &str, value: &str) -> Result<Vec<u8>, StoreError> {
    Ok(encrypt_text(
        dek,
        &Aad::new(TABLE, *patient.as_bytes(), field),
        value,
    )?)
}

fn seal_opt(
    dek: &Dek,
    patient: PatientId,
    field: &str,
    value: Option<&str>,
) -> Result<Option<Vec<u8>>, StoreError> {
    value.map(|v| seal(dek, patient, field, v)).transpose()
}

pub(crate) fn open(
    dek: &Dek,
    patient: PatientId,
    field: &str,
    ct: &[u8],
) -> Result<String, StoreError> {
    Ok(decrypt_text(
        dek,
        &Aad::new(TABLE, *patient.as_bytes(), field),
        ct,
    )?)
}

pub(crate) fn open_opt(
    dek: &Dek,
    patient: PatientId,
    field: &str,
    ct: Option<Vec<u8>>,
) -> Result<Option<String>, StoreError> {
    ct.map(|c| open(dek, patient, field, &c)).transpose()
}

struct Sealed {
    given: Vec<u8>,
    family: Vec<u8>,
    birth: Option<Vec<u8>>,
    phone: Option<Vec<u8>>,
    email: Option<Vec<u8>>,
    address: Option<Vec<u8>>,
    mrn: Option<Vec<u8>>,
    notes: Option<Vec<u8>>,
}

fn seal_all(dek: &Dek, id: PatientId, d: &PatientData) -> Result<Sealed, StoreError> {
    let birth = d
        .birth_date
        .map(|b| format!("{:04}-{:02}-{:02}", b.year(), u8::from(b.month()), b.day()));
    Ok(Sealed {
        given: seal(dek, id, "given_name", &d.given_name)?,
        family: seal(dek, id, "family_name", &d.family_name)?,
        birth: seal_opt(dek, id, "birth_date", birth.as_deref())?,
        phone: seal_opt(dek, id, "phone", d.phone.as_deref())?,
        email: seal_opt(dek, id, "email", d.email.as_deref())?,
        address: seal_opt(dek, id, "address", d.address.as_deref())?,
        mrn: seal_opt(dek, id, "mrn", d.mrn.as_deref())?,
        notes: seal_opt(dek, id, "notes", d.notes.as_deref())?,
    })
}

fn parse_birth_date(s: &str) -> Result<time::Date, StoreError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &format)
        .map_err(|_| StoreError::Corrupt("stored birth date is not YYYY-MM-DD".into()))
}

fn validate(d: &PatientData) -> Result<(), StoreError> {
    if d.given_name.trim().is_empty() && d.family_name.trim().is_empty() {
        return Err(StoreError::Invalid {
            field: "name",
            expected: "a given or family name",
        });
    }
    if let Some(p) = &d.phone
        && IndexKind::Phone.normalise(p).is_none()
    {
        return Err(StoreError::Invalid {
            field: "phone",
            expected: "a phone number of 7 to 15 digits, optionally with + and separators",
        });
    }
    if let Some(e) = &d.email
        && IndexKind::Email.normalise(e).is_none()
    {
        return Err(StoreError::Invalid {
            field: "email",
            expected: "an e-mail address such as name@example.org",
        });
    }
    if let Some(m) = &d.mrn
        && IndexKind::Mrn.normalise(m).is_none()
    {
        return Err(StoreError::Invalid {
            field: "mrn",
            expected: "a non-empty medical record number",
        });
    }
    Ok(())
}

fn index_entries(store: &Store, d: &PatientData) -> Vec<(IndexKind, [u8; 32])> {
    let keys = store.keys();
    let ix = keys.indexer();
    let mut out = Vec::new();
    let mut push = |kind: IndexKind, raw: Option<&str>| {
        if let Some(h) = raw.and_then(|r| ix.index_raw(kind, r)) {
            out.push((kind, h));
        }
    };
    push(IndexKind::Phone, d.phone.as_deref());
    push(IndexKind::Email, d.email.as_deref());
    push(IndexKind::Mrn, d.mrn.as_deref());
    let forward = format!("{} {}", d.given_name, d.family_name);
    let backward = format!("{} {}", d.family_name, d.given_name);
    push(IndexKind::Name, Some(&forward));
    push(IndexKind::Name, Some(&backward));
    out
}

async fn write_index(
    w: &mut WriteTx,
    store: &Store,
    patient: PatientId,
    d: &PatientData,
) -> Result<(), StoreError> {
    for (kind, digest) in index_entries(store, d) {
        sqlx::query(
            "INSERT INTO patient_index (kind, digest, patient_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(kind.as_str())
        .bind(digest.to_vec())
        .bind(patient.to_string())
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
    }
    Ok(())
}

pub(crate) const PATIENT_COLUMNS: &str = "id, practice_id, given_name_ct, family_name_ct, birth_date_ct, phone_ct, email_ct, address_ct, mrn_ct, notes_ct, created_at, updated_at, shredded_at";

fn decode_patient(row: &AnyRow, dek: &Dek) -> Result<Patient, StoreError> {
    let pid: PatientId = id(&col::<String>(row, "id")?, "patient")?;
    let birth = open_opt(dek, pid, "birth_date", col(row, "birth_date_ct")?)?
        .map(|s| parse_birth_date(&s))
        .transpose()?;
    Ok(Patient {
        id: pid,
        practice_id: id(&col::<String>(row, "practice_id")?, "practice")?,
        data: PatientData {
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
            birth_date: birth,
            phone: open_opt(dek, pid, "phone", col(row, "phone_ct")?)?,
            email: open_opt(dek, pid, "email", col(row, "email_ct")?)?,
            address: open_opt(dek, pid, "address", col(row, "address_ct")?)?,
            mrn: open_opt(dek, pid, "mrn", col(row, "mrn_ct")?)?,
            notes: open_opt(dek, pid, "notes", col(row, "notes_ct")?)?,
        },
        created_at_millis: col(row, "created_at")?,
        updated_at_millis: col(row, "updated_at")?,
    })
}

pub(crate) async fn read_patient(
    w: &mut WriteTx,
    store: &Store,
    patient: PatientId,
) -> Result<Patient, StoreError> {
    let dek = patient_key(w.conn(), store, patient).await?;
    let row = sqlx::query(&format!(
        "SELECT {PATIENT_COLUMNS} FROM patient WHERE id = $1"
    ))
    .bind(patient.to_string())
    .fetch_optional(w.conn())
    .await
    .map_err(|e| w.err(e))?
    .ok_or_else(|| StoreError::NotFound {
        kind: "patient",
        id: patient.to_string(),
    })?;
    decode_patient(&row, &dek)
}

impl Store {
    /// Creates a patient with a fresh data key; every field is stored encrypted and the phone,
    /// e-mail, MRN and name are blind-indexed. Declares `register_patient`: a user context
    /// must be an active scheduler or front-desk account of `practice` by the database's record
    /// (the roles in `ctx` are not trusted); Perimeter itself (intake, seeding, the CLI) may.
    pub async fn create_patient(
        &self,
        ctx: &AccessContext,
        practice: PracticeId,
        data: &PatientData,
    ) -> Result<PatientId, StoreError> {
        validate(data)?;
        self.ensure_current_keys().await?;
        let pid = PatientId::new();
        let now = self.now();
        let mut w = self.begin_write().await?;
        crate::views::require_actor(&mut w, ctx, Permission::RegisterPatient, Some(practice))
            .await?;
        // The patient row first: the key row references it.
        let dek = Dek::generate()?;
        let s = seal_all(&dek, pid, data)?;
        sqlx::query(
            "INSERT INTO patient (id, practice_id, given_name_ct, family_name_ct, birth_date_ct, phone_ct, email_ct, address_ct, mrn_ct, notes_ct, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
        )
        .bind(pid.to_string())
        .bind(practice.to_string())
        .bind(s.given)
        .bind(s.family)
        .bind(s.birth)
        .bind(s.phone)
        .bind(s.email)
        .bind(s.address)
        .bind(s.mrn)
        .bind(s.notes)
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let wrapped = self.keys().wrap_dek(&dek, &wrap_context(pid))?;
        crate::keys::check_kek_usable(&mut w, wrapped.kek_version).await?;
        sqlx::query(
            "INSERT INTO patient_key (patient_id, dek_id, kek_version, wrapped, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(pid.to_string())
        .bind(wrapped.dek_id.to_vec())
        .bind(i64::from(wrapped.kek_version))
        .bind(wrapped.bytes)
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        write_index(&mut w, self, pid, data).await?;
        w.audit(&ctx.event(
            now,
            Action::Create,
            object("patient", pid),
            Some(pid),
            PATIENT_CATEGORIES.to_vec(),
            None,
        ))
        .await?;
        w.commit().await?;
        Ok(pid)
    }

    /// Reads and decrypts every field of a patient. For Perimeter itself only (the context's
    /// actor must be the system or an AI job; staff get [`StoreError::Forbidden`] and read
    /// through [`Store::view_patient`]).
    pub async fn get_patient(
        &self,
        ctx: &AccessContext,
        patient: PatientId,
    ) -> Result<Patient, StoreError> {
        ctx.require_internal()?;
        let mut w = self.begin_write().await?;
        let p = read_patient(&mut w, self, patient).await?;
        w.audit(&ctx.event(
            self.now(),
            Action::Read,
            object("patient", patient),
            Some(patient),
            PATIENT_CATEGORIES.to_vec(),
            None,
        ))
        .await?;
        w.commit().await?;
        Ok(p)
    }

    /// Replaces a patient's data (re-encrypting under the same data key and re-indexing).
    /// Perimeter itself only (staff-facing actors get [`StoreError::Forbidden`]): a staff edit
    /// would need a function that changes only the categories the editor may see.
    pub async fn update_patient(
        &self,
        ctx: &AccessContext,
        patient: PatientId,
        data: &PatientData,
    ) -> Result<(), StoreError> {
        ctx.require_internal_write()?;
        validate(data)?;
        let mut w = self.begin_write().await?;
        let dek = patient_key(w.conn(), self, patient).await?;
        let s = seal_all(&dek, patient, data)?;
        let now = self.now();
        sqlx::query(
            "UPDATE patient SET given_name_ct = $2, family_name_ct = $3, birth_date_ct = $4, phone_ct = $5, email_ct = $6, address_ct = $7, mrn_ct = $8, notes_ct = $9, updated_at = $10 WHERE id = $1",
        )
        .bind(patient.to_string())
        .bind(s.given)
        .bind(s.family)
        .bind(s.birth)
        .bind(s.phone)
        .bind(s.email)
        .bind(s.address)
        .bind(s.mrn)
        .bind(s.notes)
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        sqlx::query("DELETE FROM patient_index WHERE patient_id = $1")
            .bind(patient.to_string())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        write_index(&mut w, self, patient, data).await?;
        w.audit(&ctx.event(
            now,
            Action::Update,
            object("patient", patient),
            Some(patient),
            PATIENT_CATEGORIES.to_vec(),
            None,
        ))
        .await?;
        w.commit().await
    }

    /// Patients of `practice` whose phone number matches (after normalising). Like every
    /// `find_patients_by_*`, for Perimeter itself only; staff use [`Store::search_patients`].
    pub async fn find_patients_by_phone(
        &self,
        ctx: &AccessContext,
        practice: PracticeId,
        phone: &str,
    ) -> Result<Vec<Patient>, StoreError> {
        self.find_by(ctx, practice, IndexKind::Phone, phone).await
    }

    /// Patients of `practice` whose e-mail address matches (case-insensitively).
    pub async fn find_patients_by_email(
        &self,
        ctx: &AccessContext,
        practice: PracticeId,
        email: &str,
    ) -> Result<Vec<Patient>, StoreError> {
        self.find_by(ctx, practice, IndexKind::Email, email).await
    }

    /// Patients of `practice` with this medical record number.
    pub async fn find_patients_by_mrn(
        &self,
        ctx: &AccessContext,
        practice: PracticeId,
        mrn: &str,
    ) -> Result<Vec<Patient>, StoreError> {
        self.find_by(ctx, practice, IndexKind::Mrn, mrn).await
    }

    /// Patients of `practice` with this full name (given then family, or family then given;
    /// case, accents and punctuation ignored).
    pub async fn find_patients_by_name(
        &self,
        ctx: &AccessContext,
        practice: PracticeId,
        full_name: &str,
    ) -> Result<Vec<Patient>, StoreError> {
        self.find_by(ctx, practice, IndexKind::Name, full_name)
            .await
    }

    async fn find_by(
        &self,
        ctx: &AccessContext,
        practice: PracticeId,
        kind: IndexKind,
        raw: &str,
    ) -> Result<Vec<Patient>, StoreError> {
        let detail = match kind {
            IndexKind::Phone => "lookup_phone",
            IndexKind::Email => "lookup_email",
            IndexKind::Mrn => "lookup_mrn",
            IndexKind::Name => "lookup_name",
            IndexKind::MemberId => "lookup_member_id",
            IndexKind::AccountNumber => "lookup_account_number",
        };
        ctx.require_internal()?;
        let Some(digest) = self.keys().indexer().index_raw(kind, raw) else {
            return Ok(Vec::new());
        };
        let mut w = self.begin_write().await?;
        let rows = sqlx::query(
            "SELECT p.id FROM patient_index i JOIN patient p ON p.id = i.patient_id WHERE i.kind = $1 AND i.digest = $2 AND p.practice_id = $3 AND p.shredded_at IS NULL ORDER BY p.id LIMIT $4",
        )
        .bind(kind.as_str())
        .bind(digest.to_vec())
        .bind(practice.to_string())
        .bind(i64::from(LOOKUP_LIMIT))
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let pid: PatientId = id(&col::<String>(row, "id")?, "patient")?;
            out.push(read_patient(&mut w, self, pid).await?);
            w.audit(&ctx.event(
                self.now(),
                Action::Read,
                object("patient", pid),
                Some(pid),
                PATIENT_CATEGORIES.to_vec(),
                Some(detail),
            ))
            .await?;
        }
        if out.is_empty() {
            w.audit(&ctx.event(
                self.now(),
                Action::Execute,
                perimeter_audit::ObjectRef {
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

    /// Ids of the practice's patients (not shredded), in id order, after `after`. Ids are not
    /// PHI, so this reads nothing encrypted and records nothing.
    pub async fn list_patient_ids(
        &self,
        practice: PracticeId,
        after: Option<PatientId>,
        limit: u32,
    ) -> Result<Vec<PatientId>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM patient WHERE practice_id = $1 AND shredded_at IS NULL AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(practice.to_string())
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| id(&col::<String>(r, "id")?, "patient"))
            .collect()
    }
}

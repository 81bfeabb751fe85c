//! Key management against the database: verifying the key ring, KEK rotation (re-wrapping
//! data keys in committed batches, resumable), retiring KEK versions and crypto-shredding.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use perimeter_audit::Action;
use perimeter_auth::Permission;
use perimeter_crypto::{KeyRing, KeySource, WrappedDek};
use perimeter_domain::{DataCategory, PatientId, StaffId};
use uuid::Uuid;

use crate::auth::mfa_wrap_context;
use crate::channels::contact_wrap_context;
use crate::db::WriteTx;
use crate::model::{AccessContext, object};
use crate::patients::wrap_context;
use crate::rows::col;
use crate::vendors::wrap_context as vendor_wrap_context;
use crate::{Store, StoreError};

const KEK: &str = "kek";
const INDEX: &str = "index";
const AUDIT_SIGNING: &str = "audit_signing";

/// One KEK version as seen by `keys status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekStatus {
    /// The version.
    pub version: u32,
    /// Whether the loaded key ring holds it.
    pub in_key_ring: bool,
    /// Whether it is the key ring's primary version.
    pub primary: bool,
    /// When the database first saw it (ms).
    pub registered_at_millis: Option<i64>,
    /// When it was retired (ms).
    pub retired_at_millis: Option<i64>,
    /// Data keys it wraps (patients', staff MFA, AI vendor credentials, contacts).
    pub deks: u64,
}

/// `keys status`: versions and counts, never key bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// The key ring's primary version.
    pub primary: u32,
    /// Every version known to the key ring or the database.
    pub versions: Vec<KekStatus>,
    /// Data keys not yet wrapped by the primary version (a rotation to finish).
    pub pending_rewrap: u64,
    /// Patients whose data key was destroyed.
    pub shredded_patients: u64,
}

/// Progress of a rotation, after each committed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotateProgress {
    /// Data keys re-wrapped so far in this run.
    pub done: u64,
    /// Data keys that needed re-wrapping when this run started.
    pub total: u64,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotateReport {
    /// The version every data key is now wrapped by.
    pub primary: u32,
    /// Data keys re-wrapped in this run.
    pub rewrapped: u64,
    /// Batches committed.
    pub batches: u64,
    /// False when the progress callback stopped the run early (rerun to finish).
    pub finished: bool,
}

/// What crypto-shredding a patient destroyed and what remains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShredReport {
    /// The patient.
    pub patient: PatientId,
    /// Whether the patient had already been shredded (nothing more was done).
    pub already_shredded: bool,
    /// Encrypted patient fields left as unreadable ciphertext.
    pub patient_fields_unreadable: u64,
    /// Conversations whose subjects are now unreadable ciphertext.
    pub conversations_unreadable: u64,
    /// Messages whose bodies are now unreadable ciphertext.
    pub messages_unreadable: u64,
    /// Insurance coverages and billing accounts now unreadable ciphertext.
    pub billing_records_unreadable: u64,
    /// Blind-index entries deleted.
    pub index_entries_deleted: u64,
    /// Audit records about the patient, kept (they hold ids only, no PHI).
    pub audit_records_kept: u64,
    /// KEK versions that may have wrapped this data key in existing backups: a backup stays
    /// decryptable for this patient until every one of these versions is retired (rotate,
    /// then `keys retire`).
    pub kek_versions_in_backups: Vec<u32>,
}

fn version_u32(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt("KEK version out of range".into()))
}

/// Refuses to store a NEW data key wrapped by KEK `version` once that version is retired
/// (this process's key ring is outdated). Runs inside the write transaction that stores the
/// key: write transactions hold the audit-head lock, so `keys retire` (also a write
/// transaction) either saw this key when it counted, or committed before this check.
pub(crate) async fn check_kek_usable(w: &mut WriteTx, version: u32) -> Result<(), StoreError> {
    let retired: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT retired_at FROM key_ring WHERE purpose = 'kek' AND version = $1",
    )
    .bind(i64::from(version))
    .fetch_optional(w.conn())
    .await
    .map_err(|e| w.err(e))?;
    if let Some(Some(_)) = retired {
        return Err(StoreError::KeyState(format!(
            "KEK version {version} has been retired but this process still wraps new data keys with it; install the current key file on this server (it is reloaded automatically)"
        )));
    }
    Ok(())
}

/// A table that holds data keys wrapped by a KEK version. Every such table is listed here,
/// so that counting, rotation and retirement can never forget one.
struct KeyTable {
    /// Table name.
    table: &'static str,
    /// Its TEXT primary key (a UUID).
    id_col: &'static str,
    /// The KEK version column.
    version_col: &'static str,
    /// The data key id column (16 bytes).
    dek_id_col: &'static str,
    /// The wrapped data key column.
    wrapped_col: &'static str,
    /// A column recording when the row was last re-wrapped, where the table has one.
    rewrapped_col: Option<&'static str>,
    /// The wrapping context (associated data) of a row's data key, from its id.
    context: fn(Uuid) -> Vec<u8>,
}

const KEY_TABLES: [KeyTable; 4] = [
    KeyTable {
        table: "patient_key",
        id_col: "patient_id",
        version_col: "kek_version",
        dek_id_col: "dek_id",
        wrapped_col: "wrapped",
        rewrapped_col: Some("rewrapped_at"),
        context: |u| wrap_context(PatientId::from_uuid(u)),
    },
    KeyTable {
        table: "staff_mfa",
        id_col: "staff_id",
        version_col: "kek_version",
        dek_id_col: "dek_id",
        wrapped_col: "wrapped_dek",
        rewrapped_col: None,
        context: |u| mfa_wrap_context(StaffId::from_uuid(u)),
    },
    KeyTable {
        table: "ai_vendor",
        id_col: "id",
        version_col: "key_kek_version",
        dek_id_col: "key_dek_id",
        wrapped_col: "key_wrapped_dek",
        rewrapped_col: None,
        context: vendor_wrap_context,
    },
    KeyTable {
        table: "channel_contact",
        id_col: "id",
        version_col: "kek_version",
        dek_id_col: "dek_id",
        wrapped_col: "wrapped_dek",
        rewrapped_col: None,
        context: contact_wrap_context,
    },
];

impl Store {
    /// Data keys per KEK version, over every table that holds wrapped data keys.
    async fn dek_counts(&self) -> Result<BTreeMap<u32, u64>, StoreError> {
        let mut out = BTreeMap::new();
        for t in &KEY_TABLES {
            let sql = format!(
                "SELECT {v} AS kek_version, COUNT(*) AS n FROM {t} WHERE {v} IS NOT NULL GROUP BY {v}",
                v = t.version_col,
                t = t.table
            );
            let rows = sqlx::query(&sql)
                .fetch_all(self.pool())
                .await
                .map_err(|e| self.err(e))?;
            for r in &rows {
                let n: i64 = col(r, "n")?;
                *out.entry(version_u32(col(r, "kek_version")?)?).or_insert(0) +=
                    u64::try_from(n).unwrap_or(0);
            }
        }
        Ok(out)
    }

    /// Checks that the loaded key ring belongs to this database (check values of the KEKs,
    /// the blind-index key and the audit signing key), and that it holds every KEK version
    /// that still wraps a data key. Only when everything matches does it register key versions
    /// the database has not seen yet. A mismatch changes nothing.
    pub async fn verify_keys(&self) -> Result<(), StoreError> {
        self.verify_ring(&self.keys()).await
    }

    /// [`Store::verify_keys`] for a candidate key ring (one about to be swapped in).
    async fn verify_ring(&self, keys: &KeyRing) -> Result<(), StoreError> {
        let rows = sqlx::query("SELECT purpose, version, check_value FROM key_ring")
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        let mut registered = Vec::new();
        for r in &rows {
            let purpose: String = col(r, "purpose")?;
            let version = version_u32(col(r, "version")?)?;
            let stored: Vec<u8> = col(r, "check_value")?;
            let expected: Option<Vec<u8>> = match purpose.as_str() {
                KEK if keys.kek_versions().contains(&version) => {
                    Some(keys.kek_check_value(version)?.to_vec())
                }
                KEK => None,
                INDEX => Some(keys.index_check_value().to_vec()),
                AUDIT_SIGNING => Some(keys.audit_verifying_key().to_bytes().to_vec()),
                _ => return Err(StoreError::Corrupt("unknown key_ring purpose".into())),
            };
            if let Some(expected) = expected
                && expected != stored
            {
                let what = match purpose.as_str() {
                    KEK => format!("KEK version {version} differs"),
                    INDEX => "the blind-index key differs".to_owned(),
                    _ => "the audit signing key differs".to_owned(),
                };
                return Err(StoreError::KeyMismatch { what });
            }
            registered.push((purpose, version));
        }
        // Patients exist but no key was ever registered: a foreign database.
        if rows.is_empty() {
            let patients: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM patient_key")
                .fetch_one(self.pool())
                .await
                .map_err(|e| self.err(e))?;
            if patients > 0 {
                return Err(StoreError::KeyMismatch {
                    what: "the database holds patient keys but no key check values".into(),
                });
            }
        }
        for (version, deks) in self.dek_counts().await? {
            if deks > 0 && !keys.kek_versions().contains(&version) {
                return Err(StoreError::KekMissing { version, deks });
            }
        }
        let mut missing: Vec<(&str, u32, Vec<u8>)> = Vec::new();
        for v in keys.kek_versions() {
            if !registered.iter().any(|(p, rv)| p == KEK && *rv == v) {
                missing.push((KEK, v, keys.kek_check_value(v)?.to_vec()));
            }
        }
        if !registered.iter().any(|(p, _)| p == INDEX) {
            missing.push((INDEX, 1, keys.index_check_value().to_vec()));
        }
        if !registered.iter().any(|(p, _)| p == AUDIT_SIGNING) {
            missing.push((
                AUDIT_SIGNING,
                1,
                keys.audit_verifying_key().to_bytes().to_vec(),
            ));
        }
        if missing.is_empty() {
            return Ok(());
        }
        let mut w = self.begin_write().await?;
        for (purpose, version, check) in missing {
            sqlx::query(
                "INSERT INTO key_ring (purpose, version, check_value, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(purpose)
            .bind(i64::from(version))
            .bind(check)
            .bind(self.now())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        }
        w.commit().await
    }

    /// Reloads the key ring from its key file, when it came from one and the file now holds
    /// other KEK versions (after `perimeter keys rotate` or `keys retire` in another process).
    /// The new ring is verified against the database first; a file that fails (foreign keys, a
    /// version still in use missing) changes nothing and is reported. Returns whether the ring
    /// changed. Key rings from the environment or a provider are left as they are.
    pub async fn reload_keys(&self) -> Result<bool, StoreError> {
        let current = self.keys();
        let KeySource::File(path) = current.source() else {
            return Ok(false);
        };
        let candidate = KeyRing::load_file(path)?;
        if candidate.primary_kek_version() == current.primary_kek_version()
            && candidate.kek_versions() == current.kek_versions()
        {
            return Ok(false);
        }
        self.verify_ring(&candidate).await?;
        tracing::info!(
            primary_kek = candidate.primary_kek_version(),
            kek_versions = ?candidate.kek_versions(),
            "key ring reloaded from its key file"
        );
        self.set_keys(candidate);
        Ok(true)
    }

    /// Makes sure this process does not wrap new data keys with an outdated KEK: when the
    /// database knows a newer unretired KEK version than this key ring's primary (another
    /// process rotated), the key file is reloaded; if the ring is still older after that, new
    /// data keys are refused with a message saying what to install. Cheap (one indexed query);
    /// called before a new data key is made and periodically by the server.
    pub async fn ensure_current_keys(&self) -> Result<(), StoreError> {
        let newest: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(version) FROM key_ring WHERE purpose = 'kek' AND retired_at IS NULL",
        )
        .fetch_one(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        let Some(newest) = newest else {
            return Ok(());
        };
        let newest = version_u32(newest)?;
        if newest <= self.keys().primary_kek_version() {
            return Ok(());
        }
        self.reload_keys().await?;
        let primary = self.keys().primary_kek_version();
        if newest > primary {
            return Err(StoreError::KeyState(format!(
                "the database's newest KEK version is {newest} but this process's key ring has primary version {primary}; install the rotated key file on this server (it is reloaded automatically)"
            )));
        }
        Ok(())
    }

    /// KEK versions, how many data keys each wraps, and rotation progress.
    pub async fn key_status(&self) -> Result<KeyStatus, StoreError> {
        let keys = self.keys();
        let counts = self.dek_counts().await?;
        let rows = sqlx::query(
            "SELECT version, created_at, retired_at FROM key_ring WHERE purpose = 'kek' ORDER BY version",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        let mut versions: BTreeMap<u32, KekStatus> = BTreeMap::new();
        let primary = keys.primary_kek_version();
        let blank = |version: u32| KekStatus {
            version,
            in_key_ring: keys.kek_versions().contains(&version),
            primary: version == primary,
            registered_at_millis: None,
            retired_at_millis: None,
            deks: 0,
        };
        for r in &rows {
            let v = version_u32(col(r, "version")?)?;
            let e = versions.entry(v).or_insert_with(|| blank(v));
            e.registered_at_millis = col(r, "created_at")?;
            e.retired_at_millis = col(r, "retired_at")?;
        }
        for v in keys.kek_versions() {
            versions.entry(v).or_insert_with(|| blank(v));
        }
        for (v, n) in &counts {
            versions.entry(*v).or_insert_with(|| blank(*v)).deks = *n;
        }
        let pending_rewrap = counts
            .iter()
            .filter(|(v, _)| **v != primary)
            .map(|(_, n)| *n)
            .sum();
        let shredded: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM patient WHERE shredded_at IS NOT NULL")
                .fetch_one(self.pool())
                .await
                .map_err(|e| self.err(e))?;
        Ok(KeyStatus {
            primary,
            versions: versions.into_values().collect(),
            pending_rewrap,
            shredded_patients: u64::try_from(shredded).unwrap_or(0),
        })
    }

    /// Re-wraps every data key not wrapped by the key ring's primary KEK, `batch_size` at a
    /// time, each batch in its own committed transaction. Data is not re-encrypted. Safe to
    /// interrupt and rerun; concurrent use of the database continues meanwhile. `progress` is
    /// called after each batch; returning `ControlFlow::Break` stops after that batch.
    pub async fn rotate_keks(
        &self,
        batch_size: u32,
        progress: &mut (dyn FnMut(RotateProgress) -> ControlFlow<()> + Send),
    ) -> Result<RotateReport, StoreError> {
        self.verify_keys().await?;
        let keys = self.keys();
        let primary = keys.primary_kek_version();
        let batch_size = batch_size.clamp(1, 10_000);
        let total: u64 = self
            .dek_counts()
            .await?
            .iter()
            .filter(|(v, _)| **v != primary)
            .map(|(_, n)| *n)
            .sum();
        let mut report = RotateReport {
            primary,
            rewrapped: 0,
            batches: 0,
            finished: false,
        };
        if progress(RotateProgress { done: 0, total }).is_break() {
            return Ok(report);
        }
        for t in &KEY_TABLES {
            loop {
                let n = self.rewrap_batch(t, primary, batch_size).await?;
                if n == 0 {
                    break;
                }
                report.rewrapped += n;
                report.batches += 1;
                let flow = progress(RotateProgress {
                    done: report.rewrapped,
                    total: total.max(report.rewrapped),
                });
                if flow.is_break() {
                    return Ok(report);
                }
            }
        }
        report.finished = true;
        Ok(report)
    }

    /// Re-wraps up to `batch_size` data keys of table `t` that the primary KEK does not wrap,
    /// in one committed transaction with its audit event. Returns how many it re-wrapped.
    async fn rewrap_batch(
        &self,
        t: &KeyTable,
        primary: u32,
        batch_size: u32,
    ) -> Result<u64, StoreError> {
        let keys = self.keys();
        let mut w = self.begin_write().await?;
        let select = format!(
            "SELECT {id} AS id, {d} AS dek_id, {v} AS kek_version, {wr} AS wrapped FROM {t} WHERE {v} IS NOT NULL AND {v} <> $1 ORDER BY {id} LIMIT $2",
            id = t.id_col,
            d = t.dek_id_col,
            v = t.version_col,
            wr = t.wrapped_col,
            t = t.table
        );
        let rows = sqlx::query(&select)
            .bind(i64::from(primary))
            .bind(i64::from(batch_size))
            .fetch_all(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        if rows.is_empty() {
            return Ok(0);
        }
        let now = self.now();
        let stamp = t
            .rewrapped_col
            .map(|c| format!(", {c} = $5"))
            .unwrap_or_default();
        let update = format!(
            "UPDATE {t} SET {v} = $2, {wr} = $3{stamp} WHERE {id} = $1 AND {v} = $4",
            t = t.table,
            v = t.version_col,
            wr = t.wrapped_col,
            id = t.id_col,
        );
        for r in &rows {
            let row_id: String = col(r, "id")?;
            let uuid = Uuid::parse_str(&row_id)
                .map_err(|_| StoreError::Corrupt(format!("{} id is not a UUID", t.table)))?;
            let dek_id: Vec<u8> = col(r, "dek_id")?;
            let old = WrappedDek {
                kek_version: version_u32(col(r, "kek_version")?)?,
                dek_id: <[u8; 16]>::try_from(dek_id.as_slice())
                    .map_err(|_| StoreError::Corrupt("data key id is not 16 bytes".into()))?,
                bytes: col(r, "wrapped")?,
            };
            let ctx = (t.context)(uuid);
            let dek = keys.unwrap_dek(&old, &ctx)?;
            let new = keys.wrap_dek(&dek, &ctx)?;
            let mut q = sqlx::query(&update)
                .bind(row_id)
                .bind(i64::from(new.kek_version))
                .bind(new.bytes)
                .bind(i64::from(old.kek_version));
            // $5 exists only where the table records the re-wrap time.
            if t.rewrapped_col.is_some() {
                q = q.bind(now);
            }
            q.execute(w.conn()).await.map_err(|e| w.err(e))?;
        }
        w.audit(&AccessContext::system("key_rotation").event(
            now,
            Action::Update,
            object("key_ring", format!("kek-{primary}")),
            None,
            Vec::new(),
            Some("dek_rewrap_batch"),
        ))
        .await?;
        w.commit().await?;
        Ok(rows.len() as u64)
    }

    /// Marks KEK `version` retired; refused while it wraps any data key or is primary. The
    /// caller then removes it from the key file.
    pub async fn retire_kek(&self, version: u32) -> Result<(), StoreError> {
        if version == self.keys().primary_kek_version() {
            return Err(StoreError::KeyState(format!(
                "KEK version {version} is the primary version; run `perimeter keys rotate` first"
            )));
        }
        let mut w = self.begin_write().await?;
        // Every data key the version still wraps: patients', staff MFA secrets', AI vendor
        // credentials' and contacts' (the same tables `keys rotate` re-wraps), so retiring can
        // never make a sealed value unreadable.
        let mut n: i64 = 0;
        for t in &KEY_TABLES {
            let sql = format!(
                "SELECT COUNT(*) FROM {t} WHERE {v} = $1",
                t = t.table,
                v = t.version_col
            );
            let c: i64 = sqlx::query_scalar(&sql)
                .bind(i64::from(version))
                .fetch_one(w.conn())
                .await
                .map_err(|e| w.err(e))?;
            n += c;
        }
        if n > 0 {
            return Err(StoreError::KekInUse {
                version,
                deks: u64::try_from(n).unwrap_or(0),
            });
        }
        let now = self.now();
        let done = sqlx::query(
            "UPDATE key_ring SET retired_at = $2 WHERE purpose = 'kek' AND version = $1 AND retired_at IS NULL",
        )
        .bind(i64::from(version))
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        if done.rows_affected() == 0 {
            let known: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM key_ring WHERE purpose = 'kek' AND version = $1",
            )
            .bind(i64::from(version))
            .fetch_one(w.conn())
            .await
            .map_err(|e| w.err(e))?;
            if known == 0 {
                return Err(StoreError::KeyState(format!(
                    "KEK version {version} is not known to this database"
                )));
            }
            // Already retired: nothing to do.
            return Ok(());
        }
        w.audit(&AccessContext::system("key_rotation").event(
            now,
            Action::Delete,
            object("key_ring", format!("kek-{version}")),
            None,
            Vec::new(),
            Some("kek_retired"),
        ))
        .await?;
        w.commit().await
    }

    /// Crypto-shreds a patient: destroys their data key (and blind-index entries, including
    /// the member-id and account-number indexes of their coverages and billing account), so
    /// every copy of their encrypted data (record, conversations, coverages, account) becomes
    /// unreadable. Declares `erase_patient`: a user context must be an active privacy officer
    /// of the patient's practice by the database's record (another practice's patient is
    /// [`StoreError::NotFound`]); Perimeter itself (the CLI) may. Rows stay, as ciphertext;
    /// audit records stay (they hold ids only).
    pub async fn shred_patient(
        &self,
        ctx: &AccessContext,
        patient: PatientId,
    ) -> Result<ShredReport, StoreError> {
        let pid = patient.to_string();
        let mut w = self.begin_write().await?;
        // The actor first (a refused caller learns nothing of the patient); another
        // practice's patient is not found.
        let who = crate::views::acting(&mut w, &ctx.actor, Permission::ErasePatient).await?;
        let practice = crate::emergency::patient_practice(w.conn(), self, patient).await?;
        who.within(practice, "patient", patient)?;
        let row = sqlx::query(
            "SELECT shredded_at, CAST( \
             (CASE WHEN given_name_ct IS NULL THEN 0 ELSE 1 END + CASE WHEN family_name_ct IS NULL THEN 0 ELSE 1 END \
              + CASE WHEN birth_date_ct IS NULL THEN 0 ELSE 1 END + CASE WHEN phone_ct IS NULL THEN 0 ELSE 1 END \
              + CASE WHEN email_ct IS NULL THEN 0 ELSE 1 END + CASE WHEN address_ct IS NULL THEN 0 ELSE 1 END \
              + CASE WHEN mrn_ct IS NULL THEN 0 ELSE 1 END + CASE WHEN notes_ct IS NULL THEN 0 ELSE 1 END) AS BIGINT) AS fields \
             FROM patient WHERE id = $1",
        )
        .bind(pid.clone())
        .fetch_optional(w.conn())
        .await
        .map_err(|e| w.err(e))?
        .ok_or_else(|| StoreError::NotFound {
            kind: "patient",
            id: pid.clone(),
        })?;
        let already: Option<i64> = col(&row, "shredded_at")?;
        let fields: i64 = col(&row, "fields")?;
        let conversations: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM conversation WHERE patient_id = $1")
                .bind(pid.clone())
                .fetch_one(w.conn())
                .await
                .map_err(|e| w.err(e))?;
        let messages: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM message WHERE patient_id = $1")
                .bind(pid.clone())
                .fetch_one(w.conn())
                .await
                .map_err(|e| w.err(e))?;
        let billing_records: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM insurance_coverage WHERE patient_id = $1) + (SELECT COUNT(*) FROM billing_account WHERE patient_id = $1)",
        )
        .bind(pid.clone())
        .fetch_one(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let kek_row = sqlx::query("SELECT kek_version FROM patient_key WHERE patient_id = $1")
            .bind(pid.clone())
            .fetch_optional(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        let current_kek = kek_row
            .as_ref()
            .map(|r| version_u32(col(r, "kek_version")?))
            .transpose()?;
        let mut index_deleted = 0;
        if already.is_none() {
            sqlx::query("DELETE FROM patient_key WHERE patient_id = $1")
                .bind(pid.clone())
                .execute(w.conn())
                .await
                .map_err(|e| w.err(e))?;
            index_deleted = sqlx::query("DELETE FROM patient_index WHERE patient_id = $1")
                .bind(pid.clone())
                .execute(w.conn())
                .await
                .map_err(|e| w.err(e))?
                .rows_affected();
            // The member-id and account-number blind indexes live beside their rows.
            for sql in [
                "UPDATE insurance_coverage SET member_id_bidx = NULL WHERE patient_id = $1 AND member_id_bidx IS NOT NULL",
                "UPDATE billing_account SET account_number_bidx = NULL WHERE patient_id = $1 AND account_number_bidx IS NOT NULL",
            ] {
                index_deleted += sqlx::query(sql)
                    .bind(pid.clone())
                    .execute(w.conn())
                    .await
                    .map_err(|e| w.err(e))?
                    .rows_affected();
            }
            let now = self.now();
            sqlx::query("UPDATE patient SET shredded_at = $2, updated_at = $2 WHERE id = $1")
                .bind(pid.clone())
                .bind(now)
                .execute(w.conn())
                .await
                .map_err(|e| w.err(e))?;
            w.audit(&ctx.event(
                now,
                Action::Delete,
                object("patient", patient),
                Some(patient),
                DataCategory::ALL.to_vec(),
                Some("crypto_shred"),
            ))
            .await?;
        }
        // Every KEK version that existed while the key existed may have wrapped it in a backup.
        let kek_rows = sqlx::query(
            "SELECT version FROM key_ring WHERE purpose = 'kek' AND retired_at IS NULL ORDER BY version",
        )
        .fetch_all(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        let mut kek_versions = kek_rows
            .iter()
            .map(|r| version_u32(col(r, "version")?))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(v) = current_kek
            && !kek_versions.contains(&v)
        {
            kek_versions.push(v);
        }
        // Audit rows of this transaction are written before they are counted.
        w.flush_audit().await?;
        let audit: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE patient_id = $1")
            .bind(pid.clone())
            .fetch_one(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        w.commit().await?;
        if self.backend() == crate::Backend::Sqlite {
            // Move the change out of the WAL into the (secure-delete) main file.
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(self.pool())
                .await;
        }
        Ok(ShredReport {
            patient,
            already_shredded: already.is_some(),
            patient_fields_unreadable: u64::try_from(fields).unwrap_or(0),
            conversations_unreadable: u64::try_from(conversations).unwrap_or(0),
            messages_unreadable: u64::try_from(messages).unwrap_or(0),
            billing_records_unreadable: u64::try_from(billing_records).unwrap_or(0),
            index_entries_deleted: index_deleted,
            audit_records_kept: u64::try_from(audit).unwrap_or(0),
            kek_versions_in_backups: kek_versions,
        })
    }
}

//! The AI vendor registry (migration `0006_vendors`): where the gateway may send a model call
//! and under which terms (BAA, attestations, the data class it may receive).
//!
//! * A vendor has a unique name, an OpenAI-compatible base URL and the models it serves; a
//!   model belongs to at most one vendor (the gateway routes a request by its `model`).
//! * Its API key is sealed under a data key of its own (wrapped by the KEK, like MFA secrets),
//!   or named by an environment variable that the server reads at call time. Neither the key
//!   nor the variable's value is ever returned by a list or put in an audit record.
//! * Every change (add, update, remove, the BAA monitor's downgrade) appends its audit record
//!   (object kind `vendor`, no secret) in the same transaction, and bumps the row's
//!   `revision`, so a running server sees changes on its next request.
//! * Validation lives here, so the CLI and any API refuse the same things: a bad URL, an
//!   expiry before its signing, a `phi` class without a BAA in force that day (unless the
//!   vendor runs inside the perimeter), a duplicate name or model.
//! * [`Store::add_vendor`], [`Store::update_vendor`] and [`Store::remove_vendor`] declare
//!   `manage_vendors`: a user context must hold it by the database's record
//!   (`views::require_actor`); Perimeter itself (the CLI, the BAA monitor) may.

use perimeter_audit::{Action, AuditEvent};
use perimeter_auth::Permission;
use perimeter_crypto::{Aad, Dek, WrappedDek, decrypt_text, encrypt_text};
use perimeter_domain::Role;
use sqlx::any::AnyRow;
use time::Date;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::model::{AccessContext, object};
use crate::rows::{col, id};
use crate::{Store, StoreError};

/// The most sensitive class of data a vendor may receive (the gateway's `DataClass`; kept here
/// as well because the store sits below the gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VendorClass {
    /// Nothing derived from patient communication.
    None,
    /// De-identified text only.
    Deidentified,
    /// PHI, under a BAA in force (or inside the perimeter).
    Phi,
}

impl VendorClass {
    /// The stable name (`phi`, `deidentified`, `none`).
    pub const fn as_str(self) -> &'static str {
        match self {
            VendorClass::None => "none",
            VendorClass::Deidentified => "deidentified",
            VendorClass::Phi => "phi",
        }
    }

    /// Parses [`VendorClass::as_str`] output.
    pub fn parse(s: &str) -> Option<VendorClass> {
        match s {
            "none" => Some(VendorClass::None),
            "deidentified" => Some(VendorClass::Deidentified),
            "phi" => Some(VendorClass::Phi),
            _ => None,
        }
    }
}

/// A Business Associate Agreement on file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaaTerms {
    /// The day it was signed.
    pub signed: Date,
    /// The last day it is in force.
    pub expires: Date,
    /// Where the signed document is kept (a reference, not the document).
    pub document_ref: Option<String>,
}

impl BaaTerms {
    /// Whether it is in force on `day`.
    pub fn in_force_on(&self, day: Date) -> bool {
        self.signed <= day && day <= self.expires
    }
}

/// How the vendor's API key is kept (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// No key (a server inside the perimeter that needs none).
    None,
    /// Sealed in the database ([`Store::vendor_api_key`] opens it).
    Sealed,
    /// Read from this environment variable at call time.
    Env(String),
}

impl KeySource {
    /// A short description for lists (`none`, `sealed`, `env:VAR`).
    pub fn describe(&self) -> String {
        match self {
            KeySource::None => "none".into(),
            KeySource::Sealed => "sealed".into(),
            KeySource::Env(v) => format!("env:{v}"),
        }
    }
}

/// What to do with the key when a vendor is written.
pub enum KeyInput {
    /// Keep what is stored (updates only; `None` for a new vendor).
    Keep,
    /// Remove the key.
    Clear,
    /// Read this environment variable at call time.
    Env(String),
    /// Seal this key.
    Secret(Zeroizing<String>),
}

impl std::fmt::Debug for KeyInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyInput::Keep => f.write_str("Keep"),
            KeyInput::Clear => f.write_str("Clear"),
            KeyInput::Env(v) => f.debug_tuple("Env").field(v).finish(),
            KeyInput::Secret(_) => f.write_str("Secret(<redacted>)"),
        }
    }
}

/// A vendor's terms as an administrator writes them.
#[derive(Debug)]
pub struct VendorInput {
    /// Unique registry name: 1 to 64 of `a-z 0-9 . _ -`.
    pub name: String,
    /// OpenAI-compatible base URL (`https://api.example.com/v1`; `http` only inside the
    /// perimeter or on loopback).
    pub base_url: String,
    /// The models it serves (at least one; none served by another vendor).
    pub models: Vec<String>,
    /// The class the administrator configures.
    pub data_class: VendorClass,
    /// The BAA, if one is on file.
    pub baa: Option<BaaTerms>,
    /// The vendor attests that it keeps no prompts or completions.
    pub zero_retention: bool,
    /// The vendor attests that it does not train on the data.
    pub no_training: bool,
    /// The SOC 2 Type 2 report's date.
    pub soc2_report_date: Option<Date>,
    /// When the SOC 2 report stops being current.
    pub soc2_expires: Option<Date>,
    /// The vendor's sub-processors, by name.
    pub sub_processors: Vec<String>,
    /// Runs inside the practice's perimeter (the practice's own server).
    pub inside_perimeter: bool,
    /// Whether calls may go to it at all.
    pub enabled: bool,
    /// The API key.
    pub key: KeyInput,
}

/// A vendor as stored (never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vendor {
    /// Internal id.
    pub id: Uuid,
    /// Unique name.
    pub name: String,
    /// Base URL.
    pub base_url: String,
    /// Models, in the order given.
    pub models: Vec<String>,
    /// The configured class.
    pub data_class: VendorClass,
    /// The BAA.
    pub baa: Option<BaaTerms>,
    /// Zero-retention attestation.
    pub zero_retention: bool,
    /// No-training attestation.
    pub no_training: bool,
    /// SOC 2 Type 2 report date.
    pub soc2_report_date: Option<Date>,
    /// SOC 2 report expiry.
    pub soc2_expires: Option<Date>,
    /// Sub-processors.
    pub sub_processors: Vec<String>,
    /// Inside the perimeter.
    pub inside_perimeter: bool,
    /// Enabled.
    pub enabled: bool,
    /// How the key is kept.
    pub key: KeySource,
    /// The BAA expiry whose downgrade was recorded by the monitor, if any.
    pub downgrade_recorded: Option<Date>,
    /// Bumped by every change.
    pub revision: i64,
    /// Created (ms).
    pub created_at_millis: i64,
    /// Last changed (ms).
    pub updated_at_millis: i64,
}

impl Vendor {
    /// The class it may receive on `day`: a `phi` vendor outside the perimeter without a BAA in
    /// force that day receives de-identified text only.
    pub fn effective_class(&self, day: Date) -> VendorClass {
        match self.data_class {
            VendorClass::Phi if self.inside_perimeter => VendorClass::Phi,
            VendorClass::Phi if self.baa.as_ref().is_some_and(|b| b.in_force_on(day)) => {
                VendorClass::Phi
            }
            VendorClass::Phi => VendorClass::Deidentified,
            other => other,
        }
    }

    /// Back to the form an update starts from (the key is kept).
    pub fn to_input(&self) -> VendorInput {
        VendorInput {
            name: self.name.clone(),
            base_url: self.base_url.clone(),
            models: self.models.clone(),
            data_class: self.data_class,
            baa: self.baa.clone(),
            zero_retention: self.zero_retention,
            no_training: self.no_training,
            soc2_report_date: self.soc2_report_date,
            soc2_expires: self.soc2_expires,
            sub_processors: self.sub_processors.clone(),
            inside_perimeter: self.inside_perimeter,
            enabled: self.enabled,
            key: KeyInput::Keep,
        }
    }
}

/// The kind of notification the BAA monitor queues for administrators.
pub const BAA_EXPIRED_NOTIFICATION: &str = "vendor_baa_expired";

const TABLE: &str = "ai_vendor";
const KEY_FIELD: &str = "api_key";
const COLUMNS: &str = "id, name, base_url, data_class, inside_perimeter, enabled, baa_signed, baa_expires, baa_document, zero_retention, no_training, soc2_report_date, soc2_expires, sub_processors, api_key_env, key_ct, downgrade_recorded, revision, created_at, updated_at";

pub(crate) fn wrap_context(vendor: Uuid) -> Vec<u8> {
    let mut c = b"ai_vendor_key:".to_vec();
    c.extend_from_slice(vendor.as_bytes());
    c
}

fn invalid(field: &'static str, expected: &'static str) -> StoreError {
    StoreError::Invalid { field, expected }
}

fn date_text(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Parses `YYYY-MM-DD`: four digits of year, no sign. That is the form the registry stores
/// (and compares as text); a signed year (`-0001-01-01`, which `time` takes) was stored as
/// `-001-01-01`, which no read could parse, so the whole registry failed to load.
pub fn parse_date(s: &str) -> Option<Date> {
    let s = s.trim();
    let shape = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !shape {
        return None;
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &format).ok()
}

fn stored_date(s: Option<String>) -> Result<Option<Date>, StoreError> {
    s.map(|s| parse_date(&s).ok_or_else(|| StoreError::Corrupt("stored date is malformed".into())))
        .transpose()
}

fn flag(row: &AnyRow, name: &str) -> Result<bool, StoreError> {
    Ok(col::<i64>(row, name)? != 0)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

fn valid_model(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | ','))
}

fn valid_env_var(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

fn valid_label(s: &str) -> bool {
    !s.trim().is_empty() && s.chars().count() <= 200 && !s.chars().any(char::is_control)
}

/// Checks a vendor's terms on `day`. Errors name the field and what was expected, never a
/// value (a URL could carry a key).
pub fn validate_vendor(v: &VendorInput, day: Date) -> Result<(), StoreError> {
    if !valid_name(&v.name) {
        return Err(invalid(
            "name",
            "1 to 64 characters of a-z, 0-9, '.', '_' or '-'",
        ));
    }
    let url = url::Url::parse(v.base_url.trim()).map_err(|_| {
        invalid(
            "base_url",
            "an absolute http(s) URL such as https://api.example.com/v1",
        )
    })?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if v.inside_perimeter || loopback => {}
        "http" => {
            return Err(invalid(
                "base_url",
                "https for a vendor outside the perimeter (http only with --inside-perimeter or on loopback)",
            ));
        }
        _ => return Err(invalid("base_url", "an http or https URL")),
    }
    if url.host().is_none() {
        return Err(invalid("base_url", "a URL with a host"));
    }
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(invalid(
            "base_url",
            "a URL without credentials, query or fragment (give the key with --api-key-env or --api-key-stdin)",
        ));
    }
    if v.models.is_empty() {
        return Err(invalid("model", "at least one model"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for m in &v.models {
        if !valid_model(m) {
            return Err(invalid(
                "model",
                "1 to 200 printable characters without spaces, quotes, commas or backslashes",
            ));
        }
        if !seen.insert(m.as_str()) {
            return Err(invalid("model", "each model named once"));
        }
    }
    if let Some(baa) = &v.baa {
        if baa.expires < baa.signed {
            return Err(invalid("baa_expires", "a date on or after baa_signed"));
        }
        if baa.document_ref.as_deref().is_some_and(|d| !valid_label(d)) {
            return Err(invalid("baa_document", "1 to 200 printable characters"));
        }
    }
    if let (Some(r), Some(e)) = (v.soc2_report_date, v.soc2_expires)
        && e < r
    {
        return Err(invalid(
            "soc2_expires",
            "a date on or after soc2_report_date",
        ));
    }
    if v.sub_processors.iter().any(|s| !valid_label(s)) || v.sub_processors.len() > 100 {
        return Err(invalid(
            "sub_processor",
            "at most 100 names of 1 to 200 printable characters",
        ));
    }
    if let KeyInput::Env(var) = &v.key
        && !valid_env_var(var)
    {
        return Err(invalid(
            "api_key_env",
            "an environment variable name (letters, digits, '_', not starting with a digit)",
        ));
    }
    if let KeyInput::Secret(k) = &v.key
        && (k.trim().is_empty() || k.chars().any(|c| c.is_control() || c == ' '))
    {
        return Err(invalid(
            "api_key",
            "a non-empty key without spaces or control characters",
        ));
    }
    if v.data_class == VendorClass::Phi
        && !v.inside_perimeter
        && !v.baa.as_ref().is_some_and(|b| b.in_force_on(day))
    {
        return Err(invalid(
            "data_class",
            "a BAA in force today for class phi: pass --baa-signed DATE --baa-expires DATE (and --baa-document REF), or --inside-perimeter for the practice's own server, or use --data-class deidentified",
        ));
    }
    Ok(())
}

fn decode(row: &AnyRow, models: Vec<String>) -> Result<Vendor, StoreError> {
    let class: String = col(row, "data_class")?;
    let signed = stored_date(col(row, "baa_signed")?)?;
    let expires = stored_date(col(row, "baa_expires")?)?;
    let baa = match (signed, expires) {
        (Some(signed), Some(expires)) => Some(BaaTerms {
            signed,
            expires,
            document_ref: col(row, "baa_document")?,
        }),
        _ => None,
    };
    let subs: String = col(row, "sub_processors")?;
    let env: Option<String> = col(row, "api_key_env")?;
    let ct: Option<Vec<u8>> = col(row, "key_ct")?;
    Ok(Vendor {
        id: id(&col::<String>(row, "id")?, "vendor")?,
        name: col(row, "name")?,
        base_url: col(row, "base_url")?,
        models,
        data_class: VendorClass::parse(&class)
            .ok_or_else(|| StoreError::Corrupt("unknown vendor data class stored".into()))?,
        baa,
        zero_retention: flag(row, "zero_retention")?,
        no_training: flag(row, "no_training")?,
        soc2_report_date: stored_date(col(row, "soc2_report_date")?)?,
        soc2_expires: stored_date(col(row, "soc2_expires")?)?,
        sub_processors: serde_json::from_str(&subs)
            .map_err(|_| StoreError::Corrupt("stored sub-processors are malformed".into()))?,
        inside_perimeter: flag(row, "inside_perimeter")?,
        enabled: flag(row, "enabled")?,
        key: match (env, ct) {
            (Some(v), _) => KeySource::Env(v),
            (None, Some(_)) => KeySource::Sealed,
            (None, None) => KeySource::None,
        },
        downgrade_recorded: stored_date(col(row, "downgrade_recorded")?)?,
        revision: col(row, "revision")?,
        created_at_millis: col(row, "created_at")?,
        updated_at_millis: col(row, "updated_at")?,
    })
}

/// The sealed form of a key.
struct SealedKey {
    kek_version: u32,
    dek_id: Vec<u8>,
    wrapped: Vec<u8>,
    ct: Vec<u8>,
}

impl Store {
    fn today(&self) -> Date {
        self.clock().now().date()
    }

    fn seal_key(&self, vendor: Uuid, key: &str) -> Result<SealedKey, StoreError> {
        let dek = Dek::generate()?;
        let wrapped = self.keys().wrap_dek(&dek, &wrap_context(vendor))?;
        let ct = encrypt_text(&dek, &Aad::new(TABLE, *vendor.as_bytes(), KEY_FIELD), key)?;
        Ok(SealedKey {
            kek_version: wrapped.kek_version,
            dek_id: wrapped.dek_id.to_vec(),
            wrapped: wrapped.bytes,
            ct,
        })
    }

    async fn vendor_models(
        &self,
        conn: &mut sqlx::AnyConnection,
        vendor: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT model FROM ai_vendor_model WHERE vendor_id = $1 ORDER BY position, model",
        )
        .bind(vendor)
        .fetch_all(conn)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter().map(|r| col(r, "model")).collect()
    }

    /// Adds a vendor after [`validate_vendor`] (today from the store's clock), appending
    /// `vendor_added` in the same transaction. Like every registry change, declares
    /// `manage_vendors`: a user context must be an active administrator by the database's
    /// record (the roles in `ctx` are not trusted); Perimeter itself (the CLI) may. A name or model already registered is refused
    /// with [`StoreError::Duplicate`] naming which.
    pub async fn add_vendor(
        &self,
        ctx: &AccessContext,
        v: &VendorInput,
    ) -> Result<Vendor, StoreError> {
        self.write_vendor(ctx, None, v).await
    }

    /// Replaces the terms of the vendor named `name` (it may be renamed by `v.name`); the key
    /// follows `v.key` ([`KeyInput::Keep`] keeps it). Appends `vendor_updated`.
    pub async fn update_vendor(
        &self,
        ctx: &AccessContext,
        name: &str,
        v: &VendorInput,
    ) -> Result<Vendor, StoreError> {
        self.write_vendor(ctx, Some(name), v).await
    }

    async fn write_vendor(
        &self,
        ctx: &AccessContext,
        existing: Option<&str>,
        v: &VendorInput,
    ) -> Result<Vendor, StoreError> {
        validate_vendor(v, self.today())?;
        if matches!(v.key, KeyInput::Secret(_)) {
            self.ensure_current_keys().await?;
        }
        let now = self.now();
        let mut w = self.begin_write().await?;
        crate::views::require_actor(&mut w, ctx, Permission::ManageVendors, None).await?;
        let current = match existing {
            Some(name) => {
                let row = sqlx::query("SELECT id, revision FROM ai_vendor WHERE name = $1")
                    .bind(name)
                    .fetch_optional(w.conn())
                    .await
                    .map_err(|e| w.err(e))?
                    .ok_or_else(|| StoreError::NotFound {
                        kind: "vendor",
                        id: name.chars().take(64).collect(),
                    })?;
                let vid: Uuid = id(&col::<String>(&row, "id")?, "vendor")?;
                Some((vid, col::<i64>(&row, "revision")?))
            }
            None => None,
        };
        let vid = current.map(|(i, _)| i).unwrap_or_else(Uuid::now_v7);
        let taken = sqlx::query("SELECT id FROM ai_vendor WHERE name = $1 AND id <> $2")
            .bind(v.name.as_str())
            .bind(vid.to_string())
            .fetch_optional(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        if taken.is_some() {
            return Err(StoreError::Duplicate {
                what: "a vendor with this name".into(),
            });
        }
        for m in &v.models {
            let other = sqlx::query(
                "SELECT vendor_id FROM ai_vendor_model WHERE model = $1 AND vendor_id <> $2",
            )
            .bind(m.as_str())
            .bind(vid.to_string())
            .fetch_optional(w.conn())
            .await
            .map_err(|e| w.err(e))?;
            if other.is_some() {
                return Err(StoreError::Duplicate {
                    what: "a model served by another vendor (a model belongs to one vendor)".into(),
                });
            }
        }
        let sealed = match &v.key {
            KeyInput::Secret(k) => Some(self.seal_key(vid, k)?),
            _ => None,
        };
        if let Some(s) = &sealed {
            crate::keys::check_kek_usable(&mut w, s.kek_version).await?;
        }
        let env = match &v.key {
            KeyInput::Env(var) => Some(var.clone()),
            _ => None,
        };
        let subs = serde_json::to_string(&v.sub_processors)
            .map_err(|_| StoreError::Corrupt("sub-processors could not be encoded".into()))?;
        let (signed, expires, document) = match &v.baa {
            Some(b) => (
                Some(date_text(b.signed)),
                Some(date_text(b.expires)),
                b.document_ref.clone(),
            ),
            None => (None, None, None),
        };
        let q = match current {
            None => sqlx::query(
                "INSERT INTO ai_vendor (id, name, base_url, data_class, inside_perimeter, enabled, baa_signed, baa_expires, baa_document, zero_retention, no_training, soc2_report_date, soc2_expires, sub_processors, revision, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 1, $15, $15)",
            ),
            Some(_) => sqlx::query(
                "UPDATE ai_vendor SET name = $2, base_url = $3, data_class = $4, inside_perimeter = $5, enabled = $6, baa_signed = $7, baa_expires = $8, baa_document = $9, zero_retention = $10, no_training = $11, soc2_report_date = $12, soc2_expires = $13, sub_processors = $14, revision = revision + 1, updated_at = $15 WHERE id = $1",
            ),
        };
        q.bind(vid.to_string())
            .bind(v.name.as_str())
            .bind(v.base_url.trim().trim_end_matches('/'))
            .bind(v.data_class.as_str())
            .bind(i64::from(v.inside_perimeter))
            .bind(i64::from(v.enabled))
            .bind(signed)
            .bind(expires)
            .bind(document)
            .bind(i64::from(v.zero_retention))
            .bind(i64::from(v.no_training))
            .bind(v.soc2_report_date.map(date_text))
            .bind(v.soc2_expires.map(date_text))
            .bind(subs)
            .bind(now)
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        let key_sql = match (&v.key, current) {
            (KeyInput::Keep, Some(_)) => None,
            (KeyInput::Keep | KeyInput::Clear, _) => Some(
                "UPDATE ai_vendor SET api_key_env = NULL, key_kek_version = NULL, key_dek_id = NULL, key_wrapped_dek = NULL, key_ct = NULL WHERE id = $1",
            ),
            (KeyInput::Env(_), _) => Some(
                "UPDATE ai_vendor SET api_key_env = $2, key_kek_version = NULL, key_dek_id = NULL, key_wrapped_dek = NULL, key_ct = NULL WHERE id = $1",
            ),
            (KeyInput::Secret(_), _) => Some(
                "UPDATE ai_vendor SET api_key_env = NULL, key_kek_version = $2, key_dek_id = $3, key_wrapped_dek = $4, key_ct = $5 WHERE id = $1",
            ),
        };
        if let Some(sql) = key_sql {
            let mut q = sqlx::query(sql).bind(vid.to_string());
            match (&v.key, &sealed) {
                (KeyInput::Env(_), _) => q = q.bind(env),
                (KeyInput::Secret(_), Some(s)) => {
                    q = q
                        .bind(i64::from(s.kek_version))
                        .bind(s.dek_id.clone())
                        .bind(s.wrapped.clone())
                        .bind(s.ct.clone());
                }
                _ => {}
            }
            q.execute(w.conn()).await.map_err(|e| w.err(e))?;
        }
        sqlx::query("DELETE FROM ai_vendor_model WHERE vendor_id = $1")
            .bind(vid.to_string())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        for (i, m) in v.models.iter().enumerate() {
            sqlx::query(
                "INSERT INTO ai_vendor_model (model, vendor_id, position) VALUES ($1, $2, $3)",
            )
            .bind(m.as_str())
            .bind(vid.to_string())
            .bind(i64::try_from(i).unwrap_or(i64::MAX))
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        }
        let (action, detail) = match current {
            None => (Action::Create, "vendor_added"),
            Some(_) => (Action::Update, "vendor_updated"),
        };
        w.audit(&ctx.event(
            now,
            action,
            object("vendor", vid),
            None,
            Vec::new(),
            Some(detail),
        ))
        .await?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM ai_vendor WHERE id = $1"))
            .bind(vid.to_string())
            .fetch_one(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        let models = self.vendor_models(w.conn(), &vid.to_string()).await?;
        let vendor = decode(&row, models)?;
        w.commit().await?;
        Ok(vendor)
    }

    /// Removes the vendor named `name` (and its models and key), appending `vendor_removed`.
    /// `false`: no such vendor.
    pub async fn remove_vendor(&self, ctx: &AccessContext, name: &str) -> Result<bool, StoreError> {
        let now = self.now();
        let mut w = self.begin_write().await?;
        crate::views::require_actor(&mut w, ctx, Permission::ManageVendors, None).await?;
        let found: Option<String> = sqlx::query_scalar("SELECT id FROM ai_vendor WHERE name = $1")
            .bind(name)
            .fetch_optional(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        let Some(vid) = found else {
            return Ok(false);
        };
        for sql in [
            "DELETE FROM ai_vendor_model WHERE vendor_id = $1",
            "DELETE FROM ai_vendor WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(vid.as_str())
                .execute(w.conn())
                .await
                .map_err(|e| w.err(e))?;
        }
        w.audit(&ctx.event(
            now,
            Action::Delete,
            object("vendor", &vid),
            None,
            Vec::new(),
            Some("vendor_removed"),
        ))
        .await?;
        w.commit().await?;
        Ok(true)
    }

    /// Every vendor, by name.
    pub async fn list_vendors(&self) -> Result<Vec<Vendor>, StoreError> {
        let mut conn = self.pool().acquire().await.map_err(|e| self.err(e))?;
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM ai_vendor ORDER BY name"))
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let vid: String = col(r, "id")?;
            let models = self.vendor_models(&mut conn, &vid).await?;
            out.push(decode(r, models)?);
        }
        Ok(out)
    }

    /// The vendor named `name`.
    pub async fn vendor(&self, name: &str) -> Result<Option<Vendor>, StoreError> {
        self.vendor_where("name = $1", name).await
    }

    /// The vendor that serves `model` (enabled or not; the caller decides).
    pub async fn vendor_for_model(&self, model: &str) -> Result<Option<Vendor>, StoreError> {
        self.vendor_where(
            "id = (SELECT vendor_id FROM ai_vendor_model WHERE model = $1)",
            model,
        )
        .await
    }

    async fn vendor_where(&self, cond: &str, value: &str) -> Result<Option<Vendor>, StoreError> {
        let mut conn = self.pool().acquire().await.map_err(|e| self.err(e))?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM ai_vendor WHERE {cond}"))
            .bind(value)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        let Some(row) = row else { return Ok(None) };
        let vid: String = col(&row, "id")?;
        let models = self.vendor_models(&mut conn, &vid).await?;
        decode(&row, models).map(Some)
    }

    /// Every model of every enabled vendor, with the vendor's name, by model.
    pub async fn vendor_models_enabled(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.model AS model, v.name AS name FROM ai_vendor_model m JOIN ai_vendor v ON v.id = m.vendor_id WHERE v.enabled <> 0 ORDER BY m.model",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| Ok((col(r, "model")?, col(r, "name")?)))
            .collect()
    }

    /// The sealed API key of `vendor`, opened; `None` when it has no sealed key (see
    /// [`Vendor::key`] for a key named by an environment variable).
    pub async fn vendor_api_key(
        &self,
        vendor: Uuid,
    ) -> Result<Option<Zeroizing<String>>, StoreError> {
        let row = sqlx::query(
            "SELECT key_kek_version, key_dek_id, key_wrapped_dek, key_ct FROM ai_vendor WHERE id = $1",
        )
        .bind(vendor.to_string())
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.err(e))?
        .ok_or_else(|| StoreError::NotFound {
            kind: "vendor",
            id: vendor.to_string(),
        })?;
        let ct: Option<Vec<u8>> = col(&row, "key_ct")?;
        let Some(ct) = ct else { return Ok(None) };
        let version: Option<i64> = col(&row, "key_kek_version")?;
        let dek_id: Option<Vec<u8>> = col(&row, "key_dek_id")?;
        let bytes: Option<Vec<u8>> = col(&row, "key_wrapped_dek")?;
        let (Some(version), Some(dek_id), Some(bytes)) = (version, dek_id, bytes) else {
            return Err(StoreError::Corrupt(
                "a sealed vendor key lacks its data key".into(),
            ));
        };
        let wrapped = WrappedDek {
            kek_version: u32::try_from(version)
                .map_err(|_| StoreError::Corrupt("KEK version out of range".into()))?,
            dek_id: <[u8; 16]>::try_from(dek_id.as_slice())
                .map_err(|_| StoreError::Corrupt("data key id is not 16 bytes".into()))?,
            bytes,
        };
        let dek = self.keys().unwrap_dek(&wrapped, &wrap_context(vendor))?;
        let key = decrypt_text(&dek, &Aad::new(TABLE, *vendor.as_bytes(), KEY_FIELD), &ct)?;
        Ok(Some(Zeroizing::new(key)))
    }

    /// The BAA monitor's step for one vendor: if its configured class is `phi`, it is outside
    /// the perimeter and its BAA is no longer in force on `day` (expired), records the
    /// automatic downgrade to `deidentified` once per BAA expiry: the audit record
    /// (`baa_expired_downgrade`, actor from `ctx`) and a notification for each practice's
    /// administrators, in one transaction. Returns whether it recorded now (`false`: nothing to
    /// record, or already recorded, by this or another process).
    pub async fn record_baa_downgrade(
        &self,
        ctx: &AccessContext,
        vendor: &Vendor,
        day: Date,
    ) -> Result<bool, StoreError> {
        let Some(baa) = &vendor.baa else {
            return Ok(false);
        };
        if vendor.data_class != VendorClass::Phi || vendor.inside_perimeter || day <= baa.expires {
            return Ok(false);
        }
        let expiry = date_text(baa.expires);
        let now = self.now();
        let mut w = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE ai_vendor SET downgrade_recorded = $2 WHERE id = $1 AND baa_expires = $2 AND data_class = 'phi' AND (downgrade_recorded IS NULL OR downgrade_recorded <> $2)",
        )
        .bind(vendor.id.to_string())
        .bind(expiry.as_str())
        .execute(w.conn())
        .await
        .map_err(|e| w.err(e))?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        let practices: Vec<String> = sqlx::query_scalar("SELECT id FROM practice ORDER BY id")
            .fetch_all(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        let payload = serde_json::json!({
            "vendor": vendor.id.to_string(),
            "baa_expired": expiry,
            "now_receives": VendorClass::Deidentified.as_str(),
        })
        .to_string();
        for p in practices {
            sqlx::query(
                "INSERT INTO notification_outbox (id, kind, payload, created_at, delivered_at, practice_id, recipient_role) VALUES ($1, $2, $3, $4, NULL, $5, $6)",
            )
            .bind(Uuid::now_v7().to_string())
            .bind(BAA_EXPIRED_NOTIFICATION)
            .bind(payload.as_str())
            .bind(now)
            .bind(p)
            .bind(Role::Admin.as_str())
            .execute(w.conn())
            .await
            .map_err(|e| w.err(e))?;
        }
        let event: AuditEvent = ctx.event(
            now,
            Action::Update,
            object("vendor", vendor.id),
            None,
            Vec::new(),
            Some("baa_expired_downgrade"),
        );
        w.audit(&event).await?;
        w.commit().await?;
        Ok(true)
    }
}

impl Store {
    /// One pass of the BAA monitor on `day`: records the downgrade of every vendor whose BAA
    /// has expired (once per expiry, see [`Store::record_baa_downgrade`]). Returns the names
    /// of the vendors recorded now.
    pub async fn monitor_baas(
        &self,
        ctx: &AccessContext,
        day: Date,
    ) -> Result<Vec<String>, StoreError> {
        let mut recorded = Vec::new();
        for v in self.list_vendors().await? {
            if self.record_baa_downgrade(ctx, &v, day).await? {
                recorded.push(v.name);
            }
        }
        Ok(recorded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::date;

    fn input(name: String, url: String, model: String, env: String) -> VendorInput {
        VendorInput {
            name,
            base_url: url,
            models: vec![model],
            data_class: VendorClass::Deidentified,
            baa: None,
            zero_retention: false,
            no_training: false,
            soc2_report_date: None,
            soc2_expires: None,
            sub_processors: Vec::new(),
            inside_perimeter: false,
            enabled: true,
            key: KeyInput::Env(env),
        }
    }

    #[test]
    fn dates_round_trip_and_bad_ones_are_refused() {
        assert_eq!(parse_date("2026-02-28"), Some(date!(2026 - 02 - 28)));
        assert_eq!(date_text(date!(2026 - 02 - 08)), "2026-02-08");
        for bad in ["2026-02-30", "26-02-01", "2026/02/01", "", "2026-2-1x"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    /// Found by `fuzz/fuzz_targets/vendor_body.rs` (regression input
    /// `fuzz/regressions/vendor_body/signed-year`): `time` takes a signed year, which the
    /// registry wrote as `-001-01-01` and then could not read back.
    #[test]
    fn signed_years_are_refused() {
        for bad in [
            "-0001-01-01",
            "+2026-01-01",
            "-2026-01-01",
            "+02026-01-01",
            "02026-01-01",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        assert_eq!(parse_date(" 0000-01-01 "), Some(date!(0000 - 01 - 01)));
    }

    proptest! {
        /// Every date `parse_date` accepts is one the registry can store and read back.
        #[test]
        fn accepted_dates_read_back_from_their_stored_form(
            sign in "[ +-]?",
            year in 0u32..10_000,
            month in 1u8..13,
            day in 1u8..29,
            noise in "\\PC{0,12}",
        ) {
            for s in [format!("{sign}{year:04}-{month:02}-{day:02}"), noise] {
                if let Some(d) = parse_date(&s) {
                    prop_assert_eq!(parse_date(&date_text(d)), Some(d), "{}", s);
                }
            }
        }

        /// The validator never panics, and an accepted vendor has a name, URL and model of
        /// the documented shapes; a refusal never quotes the value (a URL may carry a key).
        #[test]
        fn validation_never_panics_nor_quotes_values(
            name in "\\PC{0,70}",
            url in "(https?://)?\\PC{0,40}",
            model in "\\PC{0,30}",
            env in "\\PC{0,20}",
        ) {
            let v = input(name.clone(), url.clone(), model.clone(), env);
            match validate_vendor(&v, date!(2026 - 01 - 01)) {
                Ok(()) => {
                    prop_assert!(valid_name(&name));
                    prop_assert!(valid_model(&model));
                    prop_assert!(url.trim().starts_with("https://") || url.trim().starts_with("http://"));
                }
                Err(e) => {
                    let msg = e.to_string();
                    if url.len() > 12 {
                        prop_assert!(!msg.contains(url.as_str()));
                    }
                }
            }
        }
    }
}

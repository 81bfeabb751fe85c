//! The audit trail over HTTP, for privacy officers and auditors (the `ReadAudit`,
//! `ExportAudit` and `VerifyAudit` permissions of `perimeter_auth::authz`):
//!
//! | Route | Permission | What |
//! | --- | --- | --- |
//! | `GET /api/audit/events` | `read_audit` | events filtered by `patient`, `user`, `action`, `from`, `to` (RFC 3339), paged by `cursor` and `limit` (1..=1000, default 100) |
//! | `GET /api/audit/patients/{id}/disclosures` | `read_audit` | the patient's accounting of disclosures (`include=all`: every access), paged alike |
//! | `GET /api/audit/export` | `export_audit` | `format=fhir` (FHIR R4 Bundle of IHE BALP AuditEvents) or `format=csv`, same filters, streamed |
//! | `GET /api/audit/verify` | `verify_audit` | verifies the whole trail against the signed checkpoints; a summary |
//!
//! Each request is itself audited, the signed-in user as the actor: a query or an accounting
//! is recorded in the same transaction as the page it reads (no record, no page); an export is
//! recorded as a disclosure before its first byte; a verification before it starts. Bad
//! parameters get a 400 naming the parameter, never echoing its value.

use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::Json;
use axum::body::Body;
use axum::extract::Query;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use perimeter_audit::checkpoint::{CheckpointKey, ORIGIN};
use perimeter_audit::checkpointer::{LOG_FILE, VKEY_FILE, read_log};
use perimeter_audit::export::{CsvWriter, ExportError, FhirBundleWriter, FhirOptions};
use perimeter_audit::query::{AuditQuery, QueryKind, query_event};
use perimeter_audit::trail::{OutsideCheckpoints, VerifyOptions, verify_store};
use perimeter_audit::{Action, AuditEvent, AuditRecord, ObjectRef, Outcome};
use perimeter_auth::Permission;
use perimeter_domain::{PatientId, PurposeOfUse, StaffId};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::App;
use crate::access::{Access, RouteError, Routes};
use crate::auth::{AuthState, Principal, store_error};
use crate::error::ApiError;

/// Largest page of `/api/audit/events` and the accounting of disclosures.
pub const MAX_PAGE: u32 = 1000;
/// The page size when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 100;

/// Where the checkpoint file is and how the server names itself in exports.
#[derive(Debug, Clone, Default)]
pub struct AuditApiSettings {
    /// The checkpointer's directory (`audit.checkpoint_dir`): `/api/audit/verify` compares its
    /// `checkpoints.log` with the database. `None`: the database's checkpoints alone.
    pub checkpoint_dir: Option<PathBuf>,
    /// One checkpoint period (`audit.checkpoint_every_seconds`): how long the newest database
    /// checkpoint may be missing from the file.
    pub grace_millis: i64,
    /// The server agent and `source` of FHIR exports.
    pub fhir: FhirOptions,
}

impl App {
    /// Gives the audit routes their settings (without it: no checkpoint file, default FHIR
    /// server name).
    pub fn with_audit_api(self, settings: AuditApiSettings) -> Self {
        Self {
            router: self.router.layer(axum::Extension(Arc::new(settings))),
            routes: self.routes,
        }
    }
}

/// Adds the audit routes, each with its declared permission.
pub fn routes(routes: Routes) -> Result<Routes, RouteError> {
    routes
        .add(
            Method::GET,
            "/api/audit/events",
            Access::Permission(Permission::ReadAudit),
            events,
        )?
        .add(
            Method::GET,
            "/api/audit/patients/{id}/disclosures",
            Access::Permission(Permission::ReadAudit),
            disclosures,
        )?
        .add(
            Method::GET,
            "/api/audit/export",
            Access::Permission(Permission::ExportAudit),
            export,
        )?
        .add(
            Method::GET,
            "/api/audit/verify",
            Access::Permission(Permission::VerifyAudit),
            verify,
        )
}

fn bad(message: &'static str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", message)
}

/// What the guard put in the request.
fn context(parts: &Parts) -> Result<(AuthState, Principal), ApiError> {
    let auth = parts.extensions.get::<AuthState>().cloned();
    let principal = parts.extensions.get::<Principal>().cloned();
    match (auth, principal) {
        (Some(a), Some(p)) => Ok((a, p)),
        _ => Err(ApiError::internal()),
    }
}

fn settings(parts: &Parts) -> Arc<AuditApiSettings> {
    parts
        .extensions
        .get::<Arc<AuditApiSettings>>()
        .cloned()
        .unwrap_or_default()
}

/// The parsed query string.
#[derive(Debug, Default)]
struct Params {
    query: AuditQuery,
    cursor: Option<u64>,
    limit: u32,
    format: Option<String>,
    include_all: bool,
}

fn parse_time(v: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Parses the parameters a route accepts (`allowed`); anything else is refused.
fn params(parts: &Parts, allowed: &[&str]) -> Result<Params, ApiError> {
    let Query(pairs): Query<Vec<(String, String)>> = Query::try_from_uri(&parts.uri)
        .map_err(|_| bad("the query string is not valid form encoding"))?;
    let mut p = Params {
        limit: DEFAULT_PAGE,
        ..Params::default()
    };
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in &pairs {
        let Some(name) = allowed.iter().find(|a| **a == k.as_str()) else {
            return Err(bad(
                "unknown query parameter; allowed: patient, user, action, from, to, cursor, limit (and format for export, include for disclosures)",
            ));
        };
        if seen.contains(name) {
            return Err(bad("a query parameter is given twice"));
        }
        seen.push(name);
        let v = v.trim();
        match *name {
            "patient" => {
                p.query.patient = Some(
                    v.parse::<PatientId>()
                        .map_err(|_| bad("patient: expected a patient id (UUID)"))?,
                )
            }
            "user" => {
                p.query.user = Some(
                    v.parse::<StaffId>()
                        .map_err(|_| bad("user: expected a staff user id (UUID)"))?,
                )
            }
            "action" => {
                p.query.action = Some(Action::from_code(v).ok_or_else(|| {
                    bad("action: expected create, read, update, delete, execute, disclose, login or logout")
                })?)
            }
            "from" => {
                p.query.from_millis = Some(parse_time(v).ok_or_else(|| {
                    bad("from: expected an RFC 3339 instant such as 2026-01-01T00:00:00Z")
                })?)
            }
            "to" => {
                p.query.to_millis = Some(parse_time(v).ok_or_else(|| {
                    bad("to: expected an RFC 3339 instant such as 2026-01-01T00:00:00Z")
                })?)
            }
            "cursor" => {
                p.cursor = Some(v.parse::<u64>().map_err(|_| {
                    bad("cursor: expected the next_cursor value of the previous page")
                })?)
            }
            "limit" => {
                p.limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|l| (1..=MAX_PAGE).contains(l))
                    .ok_or_else(|| bad("limit: expected a whole number from 1 to 1000"))?
            }
            "format" => p.format = Some(v.to_owned()),
            "include" => match v {
                "all" => p.include_all = true,
                "disclosures" => p.include_all = false,
                _ => return Err(bad("include: expected disclosures or all")),
            },
            _ => {}
        }
    }
    if let (Some(f), Some(t)) = (p.query.from_millis, p.query.to_millis)
        && f > t
    {
        return Err(bad("from: must not be after to"));
    }
    Ok(p)
}

/// The self-audit event of a request, the principal as actor, with its request metadata.
fn self_event(principal: &Principal, auth: &AuthState, mut e: AuditEvent) -> AuditEvent {
    e.at_millis = auth.now_millis();
    e.client_addr = principal.meta.client_addr.clone();
    e.user_agent = principal.meta.user_agent.clone();
    e.request_id = principal.meta.request_id;
    e
}

fn record_json(r: &AuditRecord) -> Result<Value, ApiError> {
    let event: Value = serde_json::from_slice(&r.event).map_err(|_| {
        tracing::error!(seq = r.seq, "stored audit event does not parse");
        ApiError::internal()
    })?;
    Ok(json!({
        "seq": r.seq,
        "recorded": perimeter_audit::export::rfc3339_millis(r.at_millis),
        "leaf_hash": hex_encode(&r.leaf_hash),
        "event": event,
    }))
}

fn hex_encode(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// One audited page of `q`.
async fn page(
    auth: &AuthState,
    principal: &Principal,
    q: &AuditQuery,
    p: &Params,
) -> Result<Response, ApiError> {
    let event = self_event(
        principal,
        auth,
        query_event(
            0,
            principal.actor(),
            q,
            QueryKind::Search,
            Outcome::Success,
            None,
        ),
    );
    let (records, _) = auth
        .store()
        .audit_query_audited(&event, q, p.cursor, p.limit)
        .await
        .map_err(store_error)?;
    let next = (records.len() == p.limit as usize)
        .then(|| records.last().map(|r| r.seq.to_string()))
        .flatten();
    let events = records
        .iter()
        .map(record_json)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({
        "events": events,
        "limit": p.limit,
        "next_cursor": next,
    }))
    .into_response())
}

/// `GET /api/audit/events`.
async fn events(parts: Parts) -> Result<Response, ApiError> {
    let (auth, principal) = context(&parts)?;
    let p = params(
        &parts,
        &["patient", "user", "action", "from", "to", "cursor", "limit"],
    )?;
    page(&auth, &principal, &p.query, &p).await
}

/// `GET /api/audit/patients/{id}/disclosures`: the accounting of disclosures (HIPAA
/// 164.528) of one patient; `include=all` lists every access (an access report).
async fn disclosures(
    axum::extract::Path(id): axum::extract::Path<String>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let (auth, principal) = context(&parts)?;
    let patient: PatientId = id
        .parse()
        .map_err(|_| bad("id: expected a patient id (UUID)"))?;
    let p = params(&parts, &["from", "to", "cursor", "limit", "include"])?;
    let q = AuditQuery {
        patient: Some(patient),
        action: (!p.include_all).then_some(Action::Disclose),
        ..p.query.clone()
    };
    page(&auth, &principal, &q, &p).await
}

/// A `Write` sink whose bytes the export task hands to the response body page by page.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Buf {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default()
    }
}

impl Write for Buf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("export buffer poisoned"))?
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The response body of a streamed export.
struct Chunks(mpsc::Receiver<Result<Vec<u8>, std::io::Error>>);

impl futures_core::Stream for Chunks {
    type Item = Result<Vec<u8>, std::io::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

enum Writer {
    Fhir(FhirBundleWriter<Buf>),
    // Boxed: the CSV writer's buffers make it five times the size of the FHIR one.
    Csv(Box<CsvWriter<Buf>>),
}

impl Writer {
    fn write(&mut self, r: &AuditRecord) -> Result<(), ExportError> {
        match self {
            Writer::Fhir(w) => w.write(r),
            Writer::Csv(w) => w.write(r),
        }
    }
    fn finish(self) -> Result<(), ExportError> {
        match self {
            Writer::Fhir(w) => w.finish().map(|_| ()),
            Writer::Csv(w) => w.finish().map(|_| ()),
        }
    }
}

/// `GET /api/audit/export?format=fhir|csv`.
async fn export(parts: Parts) -> Result<Response, ApiError> {
    let (auth, principal) = context(&parts)?;
    let p = params(
        &parts,
        &["patient", "user", "action", "from", "to", "format"],
    )?;
    let fhir = match p.format.as_deref() {
        Some("fhir") => true,
        Some("csv") => false,
        _ => return Err(bad("format: expected fhir or csv")),
    };
    // The export is a disclosure: recorded (durably) before anything is sent.
    let event = self_event(
        &principal,
        &auth,
        query_event(
            0,
            principal.actor(),
            &p.query,
            QueryKind::Export,
            Outcome::Success,
            None,
        ),
    );
    auth.store()
        .append_audit(&[event])
        .await
        .map_err(store_error)?;
    let buf = Buf::default();
    let mut writer = if fhir {
        let opts = settings(&parts).fhir.clone();
        Writer::Fhir(
            FhirBundleWriter::with_options(buf.clone(), false, auth.now_millis(), opts)
                .map_err(|_| ApiError::internal())?,
        )
    } else {
        Writer::Csv(Box::new(
            CsvWriter::new(buf.clone()).map_err(|_| ApiError::internal())?,
        ))
    };
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let store = auth.store().clone();
    let q = p.query.clone();
    tokio::spawn(async move {
        let mut after = None;
        loop {
            let page = match store.audit_query(&q, after, MAX_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, "audit export stopped: reading the trail failed");
                    let _ = tx.send(Err(std::io::Error::other("export failed"))).await;
                    return;
                }
            };
            let Some(last) = page.last() else { break };
            after = Some(last.seq);
            for r in &page {
                if let Err(e) = writer.write(r) {
                    tracing::error!(error = %e, "audit export stopped");
                    let _ = tx.send(Err(std::io::Error::other("export failed"))).await;
                    return;
                }
            }
            if tx.send(Ok(buf.take())).await.is_err() {
                return; // The client went away.
            }
        }
        if let Err(e) = writer.finish() {
            tracing::error!(error = %e, "audit export stopped");
            let _ = tx.send(Err(std::io::Error::other("export failed"))).await;
            return;
        }
        let _ = tx.send(Ok(buf.take())).await;
    });
    let (ctype, name) = if fhir {
        ("application/fhir+json", "audit-export.json")
    } else {
        ("text/csv; charset=utf-8", "audit-export.csv")
    };
    let mut response = Body::from_stream(Chunks(rx)).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// `GET /api/audit/verify`: the whole trail against every signed checkpoint.
async fn verify(parts: Parts) -> Result<Response, ApiError> {
    let (auth, principal) = context(&parts)?;
    params(&parts, &[])?;
    let settings = settings(&parts);
    let event = self_event(
        &principal,
        &auth,
        AuditEvent {
            at_millis: 0,
            actor: principal.actor(),
            action: Action::Execute,
            object: ObjectRef {
                kind: "audit_trail".into(),
                id: None,
            },
            patient: None,
            categories: Vec::new(),
            purpose: Some(PurposeOfUse::Operations),
            outcome: Outcome::Success,
            detail: Some("audit_verify".into()),
            client_addr: None,
            user_agent: None,
            request_id: None,
        },
    );
    auth.store()
        .append_audit(&[event])
        .await
        .map_err(store_error)?;
    let key = CheckpointKey::new(ORIGIN, auth.store().keys().audit_verifying_key())
        .map_err(|_| ApiError::internal())?;
    let log = match &settings.checkpoint_dir {
        Some(dir) if dir.join(LOG_FILE).exists() || dir.join(VKEY_FILE).exists() => {
            Some(read_log(dir).map_err(|e| {
                tracing::error!(error = %e, "cannot read the checkpoint file");
                ApiError::internal()
            })?)
        }
        _ => None,
    };
    let options = VerifyOptions {
        page: 4096,
        now_millis: auth.now_millis(),
        grace_millis: settings.grace_millis,
    };
    let outside = OutsideCheckpoints {
        log: log.as_deref(),
        copies: "",
    };
    let reader = auth.store().verification_reader();
    let body = match verify_store(&reader, &key, outside, options).await {
        Ok(r) => json!({
            "status": "pass",
            "records": r.summary.records,
            "checkpoints": r.summary.checkpoints,
            "consistency_proofs": r.consistency_checked,
            "nodes_checked": r.nodes_checked,
            "root": hex_encode(&r.summary.root),
            "checkpoint_file": if r.file_compared { "compared" } else { "not available" },
            "newest_checkpoint_pending_in_file": r.pending_in_file,
            "uncheckpointed_records": r
                .checkpoints
                .latest()
                .map_or(r.summary.records, |c| r.summary.records.saturating_sub(c.size)),
            "verify_key": key.to_vkey(),
        }),
        Err(perimeter_audit::verify::VerifyError::Source(m)) => {
            tracing::error!(error = %m, "reading the audit trail for verification failed");
            return Err(ApiError::not_ready());
        }
        Err(e) => json!({
            "status": "fail",
            "problem": e.to_string(),
            "record": e.seq(),
            "verify_key": key.to_vkey(),
        }),
    };
    Ok(Json(body).into_response())
}

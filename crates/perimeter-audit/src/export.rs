//! Export of audit records as FHIR R4 `AuditEvent` resources in a `Bundle` (following the IHE
//! Basic Audit Log Patterns: user, client and server agents with `requestor` and
//! `purposeOfUse`, a `source`, the patient as `entity` `Patient/<internal id>` and the data as a
//! second entity; disclosures typed DICOM 110106 Export) and as CSV.
//!
//! Both writers stream: records are written one by one, never collected. Exports contain what
//! the trail contains — internal ids, codes, no PHI in clear.

use std::io::Write;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::event::{Action, Actor, AuditEvent, Outcome};
use crate::record::AuditRecord;

/// An export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing failed.
    #[error("writing the export failed: {0}")]
    Io(#[from] std::io::Error),
    /// CSV encoding failed.
    #[error("writing CSV failed: {0}")]
    Csv(#[from] csv::Error),
    /// JSON encoding failed.
    #[error("writing JSON failed: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored record's event bytes do not parse.
    #[error("record {seq}: event bytes are not a valid audit event")]
    BadEvent {
        /// The record.
        seq: u64,
    },
}

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL: &str = "http://hl7.org/fhir/restful-interaction";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const BALP_ENTITY: &str = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType";
const STAFF_SYSTEM: &str = "urn:perimeter:staff";
const OBJECT_SYSTEM: &str = "urn:perimeter:object";
const LEAF_SYSTEM: &str = "urn:perimeter:audit-leaf-hash";

/// RFC 3339 text of a millisecond timestamp.
pub fn rfc3339_millis(at_millis: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_millis) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| at_millis.to_string())
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({ "system": system, "code": code, "display": display })
}

fn type_and_subtype(action: Action) -> (Value, Value, &'static str) {
    let rest = coding(EVENT_TYPE, "rest", "RESTful Operation");
    match action {
        Action::Create => (rest, coding(RESTFUL, "create", "create"), "C"),
        Action::Read => (rest, coding(RESTFUL, "read", "read"), "R"),
        Action::Update => (rest, coding(RESTFUL, "update", "update"), "U"),
        Action::Delete => (rest, coding(RESTFUL, "delete", "delete"), "D"),
        Action::Execute => (rest, coding(RESTFUL, "operation", "operation"), "E"),
        Action::Disclose => (
            coding(DCM, "110106", "Export"),
            coding(DCM, "110106", "Export"),
            "R",
        ),
        Action::Login => (
            coding(DCM, "110114", "User Authentication"),
            coding(DCM, "110122", "Login"),
            "E",
        ),
        Action::Logout => (
            coding(DCM, "110114", "User Authentication"),
            coding(DCM, "110123", "Logout"),
            "E",
        ),
    }
}

fn outcome_code(o: Outcome) -> &'static str {
    match o {
        Outcome::Success => "0",
        Outcome::Denied => "4",
        Outcome::Failure => "8",
    }
}

fn staff_ref(id: &perimeter_domain::StaffId) -> Value {
    json!({ "identifier": { "system": STAFF_SYSTEM, "value": id.to_string() } })
}

/// One record as a FHIR R4 `AuditEvent` resource.
pub fn fhir_audit_event(record: &AuditRecord, e: &AuditEvent) -> Value {
    let (ty, subtype, action) = type_and_subtype(e.action);
    let purpose: Vec<Value> = e
        .purpose
        .iter()
        .map(|p| json!({ "coding": [coding(ACT_REASON, p.hl7_code(), p.as_str())] }))
        .collect();

    let mut agents = Vec::new();
    let human = |who: Value, roles: Vec<Value>| {
        let mut a = json!({
            "type": { "coding": [coding(PARTICIPATION, "IRCP", "information recipient")] },
            "who": who,
            "requestor": true,
        });
        if !roles.is_empty() {
            a["role"] = Value::Array(roles);
        }
        if !purpose.is_empty() {
            a["purposeOfUse"] = Value::Array(purpose.clone());
        }
        a
    };
    match &e.actor {
        Actor::User { user, roles, .. } => {
            let roles = roles
                .iter()
                .map(|r| json!({ "coding": [{ "system": "urn:perimeter:role", "code": r.as_str() }] }))
                .collect();
            agents.push(human(staff_ref(user), roles));
        }
        Actor::Service { client } => agents.push(human(staff_ref(client), Vec::new())),
        Actor::Ai {
            provider,
            model,
            initiated_by,
        } => {
            if let Some(h) = initiated_by {
                agents.push(human(staff_ref(h), Vec::new()));
            }
            agents.push(json!({
                "type": { "coding": [coding(PARTICIPATION, "DEV", "device")] },
                "who": { "display": format!("{provider}/{model}") },
                "requestor": initiated_by.is_none(),
            }));
        }
        Actor::System { component } => agents.push(json!({
            "type": { "coding": [coding(PARTICIPATION, "DEV", "device")] },
            "who": { "display": format!("perimeter/{component}") },
            "requestor": true,
        })),
        Actor::Anonymous => agents.push(json!({
            "who": { "display": "anonymous" },
            "requestor": true,
        })),
    }
    if e.client_addr.is_some() || e.user_agent.is_some() {
        let mut client = json!({
            "type": { "coding": [coding(DCM, "110153", "Source Role ID")] },
            "requestor": false,
        });
        if let Some(ua) = &e.user_agent {
            client["who"] = json!({ "display": ua });
        }
        if let Some(addr) = &e.client_addr {
            client["network"] = json!({ "address": addr, "type": "2" });
        }
        agents.push(client);
    }
    agents.push(json!({
        "type": { "coding": [coding(DCM, "110152", "Destination Role ID")] },
        "who": { "display": "perimeter" },
        "requestor": false,
    }));

    let mut entities = Vec::new();
    if let Some(p) = &e.patient {
        entities.push(json!({
            "what": { "reference": format!("Patient/{p}") },
            "type": coding(ENTITY_TYPE, "1", "Person"),
            "role": coding(OBJECT_ROLE, "1", "Patient"),
        }));
    }
    let mut data = json!({
        "type": coding(ENTITY_TYPE, "2", "System Object"),
        "role": coding(OBJECT_ROLE, "4", "Domain Resource"),
        "what": { "identifier": {
            "system": OBJECT_SYSTEM,
            "value": match &e.object.id {
                Some(id) => format!("{}/{id}", e.object.kind),
                None => e.object.kind.clone(),
            },
        } },
    });
    let mut details: Vec<Value> = e
        .categories
        .iter()
        .map(|c| json!({ "type": "data_category", "valueString": c.as_str() }))
        .collect();
    if let Some(d) = &e.detail {
        details.push(json!({ "type": "detail", "valueString": d }));
    }
    if !details.is_empty() {
        data["detail"] = Value::Array(details);
    }
    entities.push(data);
    if let Some(r) = &e.request_id {
        entities.push(json!({
            "what": { "identifier": { "value": r.to_string() } },
            "type": coding(BALP_ENTITY, "XrequestId", "X-Request-Id"),
        }));
    }

    let mut ev = json!({
        "resourceType": "AuditEvent",
        "id": record.seq.to_string(),
        "type": ty,
        "subtype": [subtype],
        "action": action,
        "recorded": rfc3339_millis(e.at_millis),
        "outcome": outcome_code(e.outcome),
        "agent": agents,
        "source": {
            "observer": { "display": "perimeter" },
            "type": [coding(SOURCE_TYPE, "4", "Application Server")],
        },
        "entity": entities,
        "meta": { "tag": [{ "system": LEAF_SYSTEM, "code": hex::encode(record.leaf_hash) }] },
    });
    if !purpose.is_empty() {
        ev["purposeOfEvent"] = Value::Array(purpose);
    }
    ev
}

/// Streams records into a FHIR `Bundle` of type `collection` (or `searchset`).
pub struct FhirBundleWriter<W: Write> {
    out: W,
    first: bool,
    count: u64,
}

impl<W: Write> std::fmt::Debug for FhirBundleWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FhirBundleWriter")
            .field("count", &self.count)
            .finish()
    }
}

impl<W: Write> FhirBundleWriter<W> {
    /// Writes the bundle's opening; `timestamp_millis` from the injected clock.
    pub fn new(mut out: W, searchset: bool, timestamp_millis: i64) -> Result<Self, ExportError> {
        let ty = if searchset { "searchset" } else { "collection" };
        write!(
            out,
            "{{\"resourceType\":\"Bundle\",\"type\":\"{ty}\",\"timestamp\":{},\"entry\":[",
            serde_json::to_string(&rfc3339_millis(timestamp_millis))?
        )?;
        Ok(Self {
            out,
            first: true,
            count: 0,
        })
    }

    /// Appends one record.
    pub fn write(&mut self, record: &AuditRecord) -> Result<(), ExportError> {
        let e = AuditEvent::from_canonical_bytes(&record.event)
            .map_err(|_| ExportError::BadEvent { seq: record.seq })?;
        if !self.first {
            self.out.write_all(b",")?;
        }
        self.first = false;
        let entry = json!({ "resource": fhir_audit_event(record, &e) });
        serde_json::to_writer(&mut self.out, &entry)?;
        self.count += 1;
        Ok(())
    }

    /// Closes the bundle; returns the writer and the number of entries.
    pub fn finish(mut self) -> Result<(W, u64), ExportError> {
        write!(self.out, "],\"total\":{}}}", self.count)?;
        self.out.flush()?;
        Ok((self.out, self.count))
    }
}

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; 22] = [
    "seq",
    "recorded",
    "at_millis",
    "actor_kind",
    "actor_id",
    "actor_roles",
    "ai_provider",
    "ai_model",
    "initiated_by",
    "component",
    "action",
    "object_kind",
    "object_id",
    "patient",
    "categories",
    "purpose",
    "outcome",
    "detail",
    "client_addr",
    "user_agent",
    "request_id",
    "leaf_hash",
];

/// Neutralises spreadsheet formulas: a cell starting with `=`, `+`, `-`, `@`, tab or CR is
/// prefixed with `'`.
fn cell(s: &str) -> String {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
        _ => s.to_owned(),
    }
}

/// Streams records as CSV with [`CSV_HEADER`].
pub struct CsvWriter<W: Write> {
    out: csv::Writer<W>,
    count: u64,
}

impl<W: Write> std::fmt::Debug for CsvWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvWriter")
            .field("count", &self.count)
            .finish()
    }
}

impl<W: Write> CsvWriter<W> {
    /// Writes the header.
    pub fn new(out: W) -> Result<Self, ExportError> {
        let mut out = csv::Writer::from_writer(out);
        out.write_record(CSV_HEADER)?;
        Ok(Self { out, count: 0 })
    }

    /// Appends one record.
    pub fn write(&mut self, record: &AuditRecord) -> Result<(), ExportError> {
        let e = AuditEvent::from_canonical_bytes(&record.event)
            .map_err(|_| ExportError::BadEvent { seq: record.seq })?;
        let mut actor_id = String::new();
        let mut roles = String::new();
        let (mut provider, mut model, mut initiated, mut component) =
            (String::new(), String::new(), String::new(), String::new());
        let kind = match &e.actor {
            Actor::User { user, roles: r, .. } => {
                actor_id = user.to_string();
                roles = r.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(";");
                "user"
            }
            Actor::Service { client } => {
                actor_id = client.to_string();
                "service"
            }
            Actor::Ai {
                provider: p,
                model: m,
                initiated_by,
            } => {
                provider = p.clone();
                model = m.clone();
                initiated = initiated_by.map(|h| h.to_string()).unwrap_or_default();
                "ai"
            }
            Actor::System { component: c } => {
                component = c.clone();
                "system"
            }
            Actor::Anonymous => "anonymous",
        };
        let action = serde_json::to_value(e.action)?
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default();
        let outcome = serde_json::to_value(e.outcome)?
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default();
        let row = [
            record.seq.to_string(),
            rfc3339_millis(e.at_millis),
            e.at_millis.to_string(),
            kind.to_owned(),
            actor_id,
            roles,
            cell(&provider),
            cell(&model),
            initiated,
            cell(&component),
            action,
            cell(&e.object.kind),
            cell(e.object.id.as_deref().unwrap_or("")),
            e.patient.map(|p| p.to_string()).unwrap_or_default(),
            e.categories
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(";"),
            e.purpose.map(|p| p.as_str().to_owned()).unwrap_or_default(),
            outcome,
            cell(e.detail.as_deref().unwrap_or("")),
            cell(e.client_addr.as_deref().unwrap_or("")),
            cell(e.user_agent.as_deref().unwrap_or("")),
            e.request_id.map(|r| r.to_string()).unwrap_or_default(),
            hex::encode(record.leaf_hash),
        ];
        self.out.write_record(&row)?;
        self.count += 1;
        Ok(())
    }

    /// Flushes; returns the writer and the number of rows.
    pub fn finish(self) -> Result<(W, u64), ExportError> {
        let count = self.count;
        let out = self
            .out
            .into_inner()
            .map_err(|e| ExportError::Io(std::io::Error::other(e.to_string())))?;
        Ok((out, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ObjectRef;
    use perimeter_domain::{DataCategory, PatientId, PurposeOfUse, RequestId, Role, StaffId};

    fn records() -> (Vec<AuditRecord>, PatientId, StaffId) {
        let p = PatientId::new();
        let u = StaffId::new();
        let evs = vec![
            AuditEvent {
                at_millis: 1_767_225_600_123,
                actor: Actor::User {
                    user: u,
                    roles: vec![Role::Clinician, Role::Nurse],
                    session: Some("s1".into()),
                },
                action: Action::Read,
                object: ObjectRef {
                    kind: "conversation".into(),
                    id: Some("c-1".into()),
                },
                patient: Some(p),
                categories: vec![DataCategory::ClinicalMessage],
                purpose: Some(PurposeOfUse::Treatment),
                outcome: Outcome::Success,
                detail: None,
                client_addr: Some("10.0.0.5".into()),
                user_agent: Some("=HYPERLINK(\"x\")".into()),
                request_id: Some(RequestId::new()),
            },
            AuditEvent {
                at_millis: 1_767_225_600_200,
                actor: Actor::Ai {
                    provider: "vendor".into(),
                    model: "m-1".into(),
                    initiated_by: Some(u),
                },
                action: Action::Disclose,
                object: ObjectRef {
                    kind: "message".into(),
                    id: None,
                },
                patient: Some(p),
                categories: vec![],
                purpose: Some(PurposeOfUse::Operations),
                outcome: Outcome::Denied,
                detail: Some("policy_denied".into()),
                client_addr: None,
                user_agent: None,
                request_id: None,
            },
        ];
        let mut out: Vec<AuditRecord> = Vec::new();
        for e in evs {
            let prev = out.last().map(|r| (r.seq, r.leaf_hash));
            out.push(AuditRecord::next(prev, e.at_millis, e.canonical_bytes()));
        }
        (out, p, u)
    }

    #[test]
    fn fhir_bundle_follows_balp_shape() {
        let (recs, p, u) = records();
        let mut w = FhirBundleWriter::new(Vec::new(), false, 0).unwrap();
        for r in &recs {
            w.write(r).unwrap();
        }
        let (bytes, n) = w.finish().unwrap();
        assert_eq!(n, 2);
        let b: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(b["resourceType"], "Bundle");
        assert_eq!(b["type"], "collection");
        assert_eq!(b["total"], 2);
        let read = &b["entry"][0]["resource"];
        assert_eq!(read["resourceType"], "AuditEvent");
        assert_eq!(read["action"], "R");
        assert_eq!(read["subtype"][0]["code"], "read");
        assert_eq!(read["recorded"], "2026-01-01T00:00:00.123Z");
        assert_eq!(read["outcome"], "0");
        assert_eq!(read["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
        let agents = read["agent"].as_array().unwrap();
        assert_eq!(agents.len(), 3, "user, client, server");
        assert_eq!(agents[0]["requestor"], true);
        assert_eq!(agents[0]["who"]["identifier"]["value"], u.to_string());
        assert_eq!(agents[0]["purposeOfUse"][0]["coding"][0]["code"], "TREAT");
        assert_eq!(agents[1]["network"]["address"], "10.0.0.5");
        assert_eq!(agents[2]["type"]["coding"][0]["code"], "110152");
        assert_eq!(
            read["entity"][0]["what"]["reference"],
            format!("Patient/{p}")
        );
        assert_eq!(
            read["entity"][1]["what"]["identifier"]["value"],
            "conversation/c-1"
        );
        assert_eq!(read["source"]["type"][0]["code"], "4");
        let disc = &b["entry"][1]["resource"];
        assert_eq!(disc["type"]["code"], "110106");
        assert_eq!(disc["type"]["system"], DCM);
        assert_eq!(disc["outcome"], "4");
        assert_eq!(disc["agent"][1]["who"]["display"], "vendor/m-1");
    }

    #[test]
    fn csv_has_every_column_and_neutralises_formulas() {
        let (recs, p, _) = records();
        let mut w = CsvWriter::new(Vec::new()).unwrap();
        for r in &recs {
            w.write(r).unwrap();
        }
        let (bytes, n) = w.finish().unwrap();
        assert_eq!(n, 2);
        let mut rd = csv::Reader::from_reader(bytes.as_slice());
        let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
        assert_eq!(header, CSV_HEADER);
        let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][13], p.to_string().as_str());
        assert_eq!(&rows[0][5], "clinician;nurse");
        assert!(rows[0][19].starts_with("'="));
        assert_eq!(&rows[1][3], "ai");
        assert_eq!(&rows[1][10], "disclose");
        assert_eq!(&rows[1][16], "denied");
    }

    #[test]
    fn bad_event_bytes_are_reported_by_seq() {
        let r = AuditRecord::next(None, 0, b"not json".to_vec());
        let mut w = CsvWriter::new(Vec::new()).unwrap();
        assert!(matches!(w.write(&r), Err(ExportError::BadEvent { seq: 0 })));
    }
}

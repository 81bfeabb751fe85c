//! Export of audit records as FHIR R4 `AuditEvent` resources in a `Bundle`, following the IHE
//! Basic Audit Log Patterns (BALP), and as CSV.
//!
//! Each event maps to a BALP pattern ([`Pattern`]): RESTful create, read, update and delete;
//! searches (patient look-ups and audit-trail queries) as the BALP *Query* pattern (`search-type`,
//! action `E`, a query entity holding only the program's codes, never a searched value); privacy
//! disclosures as DICOM 110106 *Export* with the ISO 21089 `disclose` subtype; log-in and
//! log-out as DICOM 110114 *User Authentication*. Agents: the user (`requestor`, roles,
//! `purposeOfUse`), the client (user agent and network address), the server, and for AI calls the
//! model. Entities: the patient as `Patient/<internal id>`, the data touched, the query, the
//! request id.
//!
//! `meta.profile` names the BALP profile only when the resource meets it (a successful outcome,
//! the client's and server's network addresses known, the entities the profile requires), so a
//! validator that checks profiles never finds a false claim.
//!
//! The bundle is a `collection` (which, by FHIR invariant bdl-1, carries no `total`), or a
//! `searchset` with `total`. Both writers stream: records are written one by one, never
//! collected. Exports contain what the trail contains — internal ids, codes, no PHI in clear.

use std::io::Write;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
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
const LIFECYCLE: &str = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const PROVENANCE: &str = "http://terminology.hl7.org/CodeSystem/provenance-participant-type";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const BALP_ENTITY: &str = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType";
const BALP_PROFILE: &str = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/";
const STAFF_SYSTEM: &str = "urn:perimeter:staff";
const ROLE_SYSTEM: &str = "urn:perimeter:role";
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

/// Who the server is, for the server agent and `source` (events do not record it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirOptions {
    /// The server's name (`source.observer` and the server agent's `who`).
    pub server_name: String,
    /// The server's host name, as the server agent's network address (machine name). BALP
    /// profiles need it; without it none is claimed.
    pub server_address: Option<String>,
}

impl Default for FhirOptions {
    fn default() -> Self {
        Self {
            server_name: "perimeter".to_owned(),
            server_address: None,
        }
    }
}

/// The BALP pattern an event follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// RESTful create.
    Create,
    /// RESTful read.
    Read,
    /// RESTful update.
    Update,
    /// RESTful delete (including crypto-shredding).
    Delete,
    /// A search: a patient look-up (and each patient it found), or a query of the trail.
    Query,
    /// Another operation (an AI call, a refused permission).
    Operation,
    /// A privacy disclosure (data leaving Perimeter).
    Disclosure,
    /// Log-in.
    Login,
    /// Log-out or session end.
    Logout,
}

/// Whether an event records a search: a look-up (`lookup_*`), a search object
/// (`patient_search`), or a query of the audit trail (`audit_query`).
pub fn is_search(e: &AuditEvent) -> bool {
    let detail = e.detail.as_deref().unwrap_or("");
    detail.starts_with("lookup_") || detail == "audit_query" || e.object.kind.ends_with("_search")
}

/// The pattern of an event.
pub fn pattern(e: &AuditEvent) -> Pattern {
    match e.action {
        Action::Create => Pattern::Create,
        Action::Read | Action::Execute if is_search(e) => Pattern::Query,
        Action::Read => Pattern::Read,
        Action::Update => Pattern::Update,
        Action::Delete => Pattern::Delete,
        Action::Execute => Pattern::Operation,
        Action::Disclose => Pattern::Disclosure,
        Action::Login => Pattern::Login,
        Action::Logout => Pattern::Logout,
    }
}

/// The query an event describes, without any searched value: the searched object and the
/// program's code for the search (`patient_search?lookup_phone`, `audit_trail?audit_query`).
pub fn query_text(e: &AuditEvent) -> String {
    let kind = if e.object.kind.is_empty() {
        "search"
    } else {
        e.object.kind.as_str()
    };
    match e.detail.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => format!("{kind}?{d}"),
        None => kind.to_owned(),
    }
}

fn type_subtype_action(p: Pattern) -> (Value, Vec<Value>, &'static str) {
    let rest = || coding(EVENT_TYPE, "rest", "Restful Operation");
    let auth = || coding(DCM, "110114", "User Authentication");
    match p {
        Pattern::Create => (rest(), vec![coding(RESTFUL, "create", "create")], "C"),
        Pattern::Read => (rest(), vec![coding(RESTFUL, "read", "read")], "R"),
        Pattern::Update => (rest(), vec![coding(RESTFUL, "update", "update")], "U"),
        Pattern::Delete => (rest(), vec![coding(RESTFUL, "delete", "delete")], "D"),
        Pattern::Query => (
            rest(),
            vec![coding(RESTFUL, "search-type", "search type")],
            "E",
        ),
        Pattern::Operation => (rest(), vec![coding(RESTFUL, "operation", "operation")], "E"),
        Pattern::Disclosure => (
            coding(DCM, "110106", "Export"),
            vec![coding(
                LIFECYCLE,
                "disclose",
                "Disclose Record Lifecycle Event",
            )],
            "R",
        ),
        Pattern::Login => (auth(), vec![coding(DCM, "110122", "Login")], "E"),
        Pattern::Logout => (auth(), vec![coding(DCM, "110123", "Logout")], "E"),
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

/// The agent roles of client and server per pattern (BALP: the data flows from the Source
/// Role ID to the Destination Role ID).
fn client_server_types(p: Pattern) -> (Value, Value) {
    let source = || coding(DCM, "110153", "Source Role ID");
    let destination = || coding(DCM, "110152", "Destination Role ID");
    match p {
        Pattern::Read | Pattern::Disclosure => (destination(), source()),
        Pattern::Delete => (
            coding(DCM, "110150", "Application"),
            coding(PROVENANCE, "custodian", "Custodian"),
        ),
        _ => (source(), destination()),
    }
}

/// One record as a FHIR R4 `AuditEvent` resource (server described by the defaults).
pub fn fhir_audit_event(record: &AuditRecord, e: &AuditEvent) -> Value {
    fhir_audit_event_with(record, e, &FhirOptions::default())
}

/// One record as a FHIR R4 `AuditEvent` resource.
pub fn fhir_audit_event_with(record: &AuditRecord, e: &AuditEvent, opts: &FhirOptions) -> Value {
    let p = pattern(e);
    let (ty, subtype, action) = type_subtype_action(p);
    let purpose: Vec<Value> = e
        .purpose
        .iter()
        .map(|pu| json!({ "coding": [coding(ACT_REASON, pu.hl7_code(), pu.as_str())] }))
        .collect();
    // The user takes part as the information recipient, or as the author of a change.
    let user_type = match p {
        Pattern::Create | Pattern::Update | Pattern::Delete => {
            coding(PARTICIPATION, "AUT", "author (originator)")
        }
        _ => coding(PARTICIPATION, "IRCP", "information recipient"),
    };

    let mut agents = Vec::new();
    let human = |who: Value, roles: Vec<Value>| {
        let mut a = json!({
            "type": { "coding": [user_type.clone()] },
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
    let device = |display: String, requestor: bool| {
        json!({
            "type": { "coding": [coding(PARTICIPATION, "DEV", "device")] },
            "who": { "display": display },
            "requestor": requestor,
        })
    };
    // Only users and service clients may stand in the slots of a closed BALP agent list.
    let mut only_people = true;
    match &e.actor {
        Actor::User { user, roles, .. } => {
            let roles = roles
                .iter()
                .map(|r| json!({ "coding": [{ "system": ROLE_SYSTEM, "code": r.as_str() }] }))
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
            if p != Pattern::Disclosure {
                agents.push(device(
                    format!("{provider}/{model}"),
                    initiated_by.is_none(),
                ));
                only_people = false;
            }
        }
        Actor::System { component } => {
            agents.push(device(format!("perimeter/{component}"), true));
            only_people = false;
        }
        Actor::Anonymous => agents.push(json!({
            "type": { "coding": [user_type.clone()] },
            "who": { "display": "anonymous" },
            "requestor": true,
        })),
    }

    let (client_type, server_type) = client_server_types(p);
    let server_network = opts
        .server_address
        .as_ref()
        .map(|a| json!({ "address": a, "type": "1" }));
    let mut server = json!({
        "type": { "coding": [server_type] },
        "who": { "display": opts.server_name },
        "requestor": false,
    });
    if let Some(n) = &server_network {
        server["network"] = n.clone();
    }
    // FHIR has no empty strings: an empty user agent or address counts as unknown.
    let client_addr = e.client_addr.as_deref().filter(|a| !a.is_empty());
    let user_agent = e.user_agent.as_deref().filter(|a| !a.is_empty());
    let client_known = client_addr.is_some() || user_agent.is_some();
    let mut client_networked = false;
    match (&e.actor, p) {
        // A disclosure to an AI vendor: the model is the recipient.
        (
            Actor::Ai {
                provider, model, ..
            },
            Pattern::Disclosure,
        ) => agents.push(json!({
            "type": { "coding": [client_type] },
            "who": { "display": format!("{provider}/{model}") },
            "requestor": false,
        })),
        _ if client_known => {
            let who = user_agent.or(client_addr).unwrap_or("client");
            let mut client = json!({
                "type": { "coding": [client_type] },
                "who": { "display": who },
                "requestor": false,
            });
            if let Some(addr) = client_addr {
                client["network"] = json!({ "address": addr, "type": "2" });
                client_networked = true;
            }
            agents.push(client);
        }
        _ => {}
    }
    agents.push(server);

    let mut entities = Vec::new();
    if let Some(pid) = &e.patient {
        entities.push(json!({
            "what": { "reference": format!("Patient/{pid}") },
            "type": coding(ENTITY_TYPE, "1", "Person"),
            "role": coding(OBJECT_ROLE, "1", "Patient"),
        }));
    }
    let mut details: Vec<Value> = e
        .categories
        .iter()
        .map(|c| json!({ "type": "data_category", "valueString": c.as_str() }))
        .collect();
    if let Some(d) = e.detail.as_deref().filter(|d| !d.is_empty()) {
        details.push(json!({ "type": "detail", "valueString": d }));
    }
    let data_entity = |details: Vec<Value>| {
        let mut data = json!({
            "type": coding(ENTITY_TYPE, "2", "System Object"),
            "role": coding(OBJECT_ROLE, "4", "Domain Resource"),
            "what": { "identifier": {
                "system": OBJECT_SYSTEM,
                "value": match e.object.id.as_deref().filter(|i| !i.is_empty()) {
                    Some(id) => format!("{}/{id}", e.object.kind),
                    None if e.object.kind.is_empty() => "unknown".to_owned(),
                    None => e.object.kind.clone(),
                },
            } },
        });
        if !details.is_empty() {
            data["detail"] = Value::Array(details);
        }
        data
    };
    let has_details = !details.is_empty();
    if p == Pattern::Query {
        // The query entity: the program's codes only (BALP: the raw request in `query`,
        // base64; here no searched value is ever recorded, so there is none to leak).
        let q = query_text(e);
        entities.push(json!({
            "type": coding(ENTITY_TYPE, "2", "System Object"),
            "role": coding(OBJECT_ROLE, "24", "Query"),
            "description": q,
            "query": B64.encode(q.as_bytes()),
        }));
        // The record a look-up found, with the categories of data shown.
        if e.object.id.is_some() || !e.categories.is_empty() {
            entities.push(data_entity(
                e.categories
                    .iter()
                    .map(|c| json!({ "type": "data_category", "valueString": c.as_str() }))
                    .collect(),
            ));
        }
    } else {
        entities.push(data_entity(details));
    }
    if let Some(r) = &e.request_id {
        entities.push(json!({
            "what": { "identifier": { "value": r.to_string() } },
            "type": coding(BALP_ENTITY, "XrequestId", "X-Request-Id"),
        }));
    }

    // Claim a BALP profile only when every element it requires is present.
    let success = e.outcome == Outcome::Success;
    let networked = client_networked && server_network.is_some();
    let with_patient = |plain: &str, patient: &str| {
        if e.patient.is_some() {
            patient.to_owned()
        } else {
            plain.to_owned()
        }
    };
    let profile = match p {
        Pattern::Create if success && networked => Some(with_patient(
            "IHE.BasicAudit.Create",
            "IHE.BasicAudit.PatientCreate",
        )),
        Pattern::Read if success && networked => Some(with_patient(
            "IHE.BasicAudit.Read",
            "IHE.BasicAudit.PatientRead",
        )),
        Pattern::Update if success && networked => Some(with_patient(
            "IHE.BasicAudit.Update",
            "IHE.BasicAudit.PatientUpdate",
        )),
        // PatientDelete closes its slices: exactly the patient and the data, no details, no
        // request id, and no agents other than client, server and the person.
        Pattern::Delete
            if success
                && networked
                && only_people
                && e.patient.is_some()
                && !has_details
                && e.request_id.is_none() =>
        {
            Some("IHE.BasicAudit.PatientDelete".to_owned())
        }
        Pattern::Query if success && networked => Some(with_patient(
            "IHE.BasicAudit.Query",
            "IHE.BasicAudit.PatientQuery",
        )),
        Pattern::Disclosure if networked && e.patient.is_some() => {
            Some("IHE.BasicAudit.PrivacyDisclosure.Source".to_owned())
        }
        _ => None,
    };
    let mut meta = json!({
        "tag": [{ "system": LEAF_SYSTEM, "code": hex::encode(record.leaf_hash) }],
    });
    if let Some(name) = profile {
        meta["profile"] = json!([format!("{BALP_PROFILE}{name}")]);
    }

    let mut ev = json!({
        "resourceType": "AuditEvent",
        "id": record.seq.to_string(),
        "meta": meta,
        "type": ty,
        "subtype": subtype,
        "action": action,
        "recorded": rfc3339_millis(e.at_millis),
        "outcome": outcome_code(e.outcome),
        "agent": agents,
        "source": {
            "observer": { "display": opts.server_name },
            "type": [coding(SOURCE_TYPE, "4", "Application Server")],
        },
        "entity": entities,
    });
    if !purpose.is_empty() {
        ev["purposeOfEvent"] = Value::Array(purpose);
    }
    ev
}

/// Streams records into a FHIR `Bundle` of type `collection` (no `total`, FHIR bdl-1) or
/// `searchset` (with `total`).
pub struct FhirBundleWriter<W: Write> {
    out: W,
    first: bool,
    count: u64,
    searchset: bool,
    options: FhirOptions,
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
    pub fn new(out: W, searchset: bool, timestamp_millis: i64) -> Result<Self, ExportError> {
        Self::with_options(out, searchset, timestamp_millis, FhirOptions::default())
    }

    /// [`FhirBundleWriter::new`] describing the server with `options`.
    pub fn with_options(
        mut out: W,
        searchset: bool,
        timestamp_millis: i64,
        options: FhirOptions,
    ) -> Result<Self, ExportError> {
        let ty = if searchset { "searchset" } else { "collection" };
        // `entry` is opened by the first record: FHIR JSON has no empty arrays.
        write!(
            out,
            "{{\"resourceType\":\"Bundle\",\"type\":\"{ty}\",\"timestamp\":{}",
            serde_json::to_string(&rfc3339_millis(timestamp_millis))?
        )?;
        Ok(Self {
            out,
            first: true,
            count: 0,
            searchset,
            options,
        })
    }

    /// Appends one record.
    pub fn write(&mut self, record: &AuditRecord) -> Result<(), ExportError> {
        let e = AuditEvent::from_canonical_bytes(&record.event)
            .map_err(|_| ExportError::BadEvent { seq: record.seq })?;
        self.out
            .write_all(if self.first { b",\"entry\":[" } else { b"," })?;
        self.first = false;
        let mut entry = json!({ "resource": fhir_audit_event_with(record, &e, &self.options) });
        if self.searchset {
            entry["search"] = json!({ "mode": "match" });
        }
        serde_json::to_writer(&mut self.out, &entry)?;
        self.count += 1;
        Ok(())
    }

    /// Closes the bundle; returns the writer and the number of entries.
    pub fn finish(mut self) -> Result<(W, u64), ExportError> {
        if !self.first {
            self.out.write_all(b"]")?;
        }
        if self.searchset {
            write!(self.out, ",\"total\":{}", self.count)?;
        }
        self.out.write_all(b"}")?;
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
            AuditEvent {
                at_millis: 1_767_225_600_300,
                actor: Actor::User {
                    user: u,
                    roles: vec![Role::FrontDesk],
                    session: None,
                },
                action: Action::Read,
                object: ObjectRef {
                    kind: "patient".into(),
                    id: Some(p.to_string()),
                },
                patient: Some(p),
                categories: vec![DataCategory::Contact],
                purpose: Some(PurposeOfUse::Operations),
                outcome: Outcome::Success,
                detail: Some("lookup_phone".into()),
                client_addr: Some("10.0.0.6".into()),
                user_agent: None,
                request_id: Some(RequestId::new()),
            },
        ];
        let mut out: Vec<AuditRecord> = Vec::new();
        for e in evs {
            let prev = out.last().map(|r| (r.seq, r.leaf_hash));
            out.push(AuditRecord::next(prev, e.at_millis, e.canonical_bytes()));
        }
        (out, p, u)
    }

    fn bundle(recs: &[AuditRecord], opts: FhirOptions) -> Value {
        let mut w = FhirBundleWriter::with_options(Vec::new(), false, 0, opts).unwrap();
        for r in recs {
            w.write(r).unwrap();
        }
        let (bytes, n) = w.finish().unwrap();
        assert_eq!(n, recs.len() as u64);
        serde_json::from_slice(&bytes).unwrap()
    }

    fn host() -> FhirOptions {
        FhirOptions {
            server_name: "perimeter".into(),
            server_address: Some("clinic-host".into()),
        }
    }

    #[test]
    fn fhir_bundle_follows_balp_and_r4_rules() {
        let (recs, p, u) = records();
        let b = bundle(&recs, host());
        assert_eq!(crate::fhir_check::problems(&b), Vec::<String>::new());
        assert_eq!(b["resourceType"], "Bundle");
        assert_eq!(b["type"], "collection");
        assert!(b.get("total").is_none(), "bdl-1: a collection has no total");
        let read = &b["entry"][0]["resource"];
        assert_eq!(read["resourceType"], "AuditEvent");
        assert_eq!(
            read["meta"]["profile"][0],
            "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientRead"
        );
        assert_eq!(read["action"], "R");
        assert_eq!(read["subtype"][0]["code"], "read");
        assert_eq!(read["recorded"], "2026-01-01T00:00:00.123Z");
        assert_eq!(read["outcome"], "0");
        assert_eq!(read["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
        let agents = read["agent"].as_array().unwrap();
        assert_eq!(agents.len(), 3, "user, client, server");
        assert_eq!(agents[0]["requestor"], true);
        assert_eq!(agents[0]["type"]["coding"][0]["code"], "IRCP");
        assert_eq!(agents[0]["who"]["identifier"]["value"], u.to_string());
        assert_eq!(agents[0]["purposeOfUse"][0]["coding"][0]["code"], "TREAT");
        // Read: the data flows to the client (Destination) from the server (Source).
        assert_eq!(agents[1]["type"]["coding"][0]["code"], "110152");
        assert_eq!(agents[1]["network"]["address"], "10.0.0.5");
        assert_eq!(agents[2]["type"]["coding"][0]["code"], "110153");
        assert_eq!(agents[2]["network"]["address"], "clinic-host");
        assert_eq!(
            read["entity"][0]["what"]["reference"],
            format!("Patient/{p}")
        );
        assert_eq!(
            read["entity"][1]["what"]["identifier"]["value"],
            "conversation/c-1"
        );
        assert_eq!(read["source"]["type"][0]["code"], "4");

        // A disclosure to an AI vendor: DICOM 110106 Export, subtype ISO 21089 disclose.
        let disc = &b["entry"][1]["resource"];
        assert_eq!(disc["type"]["code"], "110106");
        assert_eq!(disc["type"]["system"], DCM);
        assert_eq!(disc["subtype"][0]["system"], LIFECYCLE);
        assert_eq!(disc["subtype"][0]["code"], "disclose");
        assert_eq!(disc["action"], "R");
        assert_eq!(disc["outcome"], "4");
        let recipient = disc["agent"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"]["coding"][0]["code"] == "110152")
            .unwrap();
        assert_eq!(recipient["who"]["display"], "vendor/m-1");
        // The vendor's network address is not known: no profile is claimed.
        assert!(disc["meta"].get("profile").is_none());

        // The search: BALP Query, with a query entity of codes only.
        let q = &b["entry"][2]["resource"];
        assert_eq!(
            q["meta"]["profile"][0],
            "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientQuery"
        );
        assert_eq!(q["subtype"][0]["code"], "search-type");
        assert_eq!(q["action"], "E");
        let query = q["entity"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["role"]["code"] == "24")
            .unwrap();
        assert_eq!(query["description"], "patient?lookup_phone");
        assert_eq!(
            B64.decode(query["query"].as_str().unwrap()).unwrap(),
            b"patient?lookup_phone"
        );
        assert!(query.get("what").is_none() && query.get("detail").is_none());

        // Without the server's address, nothing claims a profile (and the rest still holds).
        let plain = bundle(&recs, FhirOptions::default());
        assert_eq!(crate::fhir_check::problems(&plain), Vec::<String>::new());
        assert!(
            plain["entry"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["resource"]["meta"].get("profile").is_none())
        );
    }

    #[test]
    fn every_kind_of_event_exports_as_valid_r4() {
        let (recs, _, u) = records();
        let base = AuditEvent::from_canonical_bytes(&recs[0].event).unwrap();
        let mut evs = Vec::new();
        for action in Action::ALL {
            for outcome in [Outcome::Success, Outcome::Denied, Outcome::Failure] {
                for actor in [
                    base.actor.clone(),
                    Actor::Service { client: u },
                    Actor::Ai {
                        provider: "v".into(),
                        model: "m".into(),
                        initiated_by: None,
                    },
                    Actor::System {
                        component: "cli".into(),
                    },
                    Actor::Anonymous,
                ] {
                    evs.push(AuditEvent {
                        action,
                        outcome,
                        actor,
                        user_agent: Some(String::new()),
                        ..base.clone()
                    });
                }
            }
        }
        evs.push(AuditEvent {
            patient: None,
            categories: vec![],
            detail: None,
            client_addr: None,
            user_agent: None,
            request_id: None,
            purpose: None,
            object: ObjectRef {
                kind: String::new(),
                id: None,
            },
            ..base.clone()
        });
        let mut out: Vec<AuditRecord> = Vec::new();
        for e in evs {
            let prev = out.last().map(|r| (r.seq, r.leaf_hash));
            out.push(AuditRecord::next(prev, e.at_millis, e.canonical_bytes()));
        }
        for opts in [host(), FhirOptions::default()] {
            let b = bundle(&out, opts);
            assert_eq!(crate::fhir_check::problems(&b), Vec::<String>::new());
        }
        // An empty collection has no entry array at all (FHIR JSON has no empty arrays).
        let empty = bundle(&[], host());
        assert!(empty.get("entry").is_none());
        assert_eq!(crate::fhir_check::problems(&empty), Vec::<String>::new());
        // A searchset carries its total and each entry's search mode.
        let mut w = FhirBundleWriter::with_options(Vec::new(), true, 0, host()).unwrap();
        w.write(&out[0]).unwrap();
        let (bytes, _) = w.finish().unwrap();
        let ss: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(ss["total"], 1);
        assert_eq!(ss["entry"][0]["search"]["mode"], "match");
        assert_eq!(crate::fhir_check::problems(&ss), Vec::<String>::new());
    }

    #[test]
    fn the_checker_finds_what_r4_forbids() {
        let (recs, _, _) = records();
        let good = bundle(&recs, host());
        let check = |f: &dyn Fn(&mut Value)| {
            let mut b = good.clone();
            f(&mut b);
            crate::fhir_check::problems(&b)
        };
        assert!(!check(&|b| b["total"] = json!(3)).is_empty(), "bdl-1");
        assert!(
            !check(&|b| b["entry"][0]["resource"]["agent"][0]
                .as_object_mut()
                .unwrap()
                .remove("requestor")
                .map(|_| ())
                .unwrap_or(()))
            .is_empty()
        );
        assert!(!check(&|b| b["entry"][0]["resource"]["action"] = json!("X")).is_empty());
        assert!(
            !check(&|b| b["entry"][0]["resource"]["recorded"] = json!("2026-01-01")).is_empty()
        );
        assert!(!check(&|b| b["entry"][0]["resource"]["entity"] = json!([])).is_empty());
        assert!(!check(&|b| b["entry"][0]["resource"]["id"] = json!("has space")).is_empty());
        assert!(
            !check(&|b| b["entry"][2]["resource"]["entity"][1]["name"] = json!("x")).is_empty(),
            "sev-1"
        );
        assert!(!check(&|b| b["entry"][0]["resource"]["source"] = json!({})).is_empty());
        // A claimed profile whose requirements are not met.
        assert!(
            !check(&|b| b["entry"][0]["resource"]["agent"][1]
                .as_object_mut()
                .unwrap()
                .remove("network")
                .map(|_| ())
                .unwrap_or(()))
            .is_empty()
        );
    }

    #[test]
    fn csv_has_every_column_and_neutralises_formulas() {
        let (recs, p, _) = records();
        let mut w = CsvWriter::new(Vec::new()).unwrap();
        for r in &recs {
            w.write(r).unwrap();
        }
        let (bytes, n) = w.finish().unwrap();
        assert_eq!(n, 3);
        let mut rd = csv::Reader::from_reader(bytes.as_slice());
        let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
        assert_eq!(header, CSV_HEADER);
        let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 3);
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

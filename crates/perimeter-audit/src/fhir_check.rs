//! A structural check of exported FHIR R4 audit bundles: the rules of the FHIR R4 JSON format,
//! the `Bundle` and `AuditEvent` cardinalities, value sets and invariants that an export can
//! break (bdl-1, bdl-2, sev-1, ...), and the requirements of each IHE BALP profile an
//! `AuditEvent` claims in `meta.profile`. Used by the tests of every export path (library,
//! CLI, HTTP); it is not a full FHIR validator (no terminology server, no snapshot expansion).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

const BALP: &str = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";

/// Every problem found in `bundle`, as `path: what is wrong`; empty when it passes.
pub fn problems(bundle: &Value) -> Vec<String> {
    let mut out = Vec::new();
    json_rules(bundle, "Bundle", &mut out);
    check_bundle(bundle, &mut out);
    out
}

fn push(out: &mut Vec<String>, path: &str, what: &str) {
    out.push(format!("{path}: {what}"));
}

/// FHIR JSON: no nulls, no empty strings, arrays or objects.
fn json_rules(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Null => push(out, path, "null is not allowed in FHIR JSON"),
        Value::String(s) if s.is_empty() => push(out, path, "empty string"),
        Value::String(s) if s.trim() != s => push(out, path, "leading or trailing white space"),
        Value::Array(a) => {
            if a.is_empty() {
                push(out, path, "empty array");
            }
            for (i, x) in a.iter().enumerate() {
                json_rules(x, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(o) => {
            if o.is_empty() {
                push(out, path, "empty object");
            }
            for (k, x) in o {
                json_rules(x, &format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// `YYYY-MM-DDThh:mm:ss(.s+)?(Z|(+|-)hh:mm)`.
fn is_instant(s: &str) -> bool {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
        && s.len() >= 20
        && s.as_bytes().get(10) == Some(&b'T')
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn check_coding(v: &Value, path: &str, out: &mut Vec<String>) {
    if !v.is_object() {
        return push(out, path, "expected a Coding object");
    }
    if str_at(v, "system").is_none() || str_at(v, "code").is_none() {
        push(out, path, "a Coding needs system and code here");
    }
}

fn check_concept(v: &Value, path: &str, out: &mut Vec<String>) {
    match v.get("coding").and_then(Value::as_array) {
        Some(codings) => {
            for (i, c) in codings.iter().enumerate() {
                check_coding(c, &format!("{path}.coding[{i}]"), out);
            }
        }
        None => push(out, path, "expected a CodeableConcept with coding"),
    }
}

fn check_reference(v: &Value, path: &str, out: &mut Vec<String>) {
    if !v.is_object() {
        return push(out, path, "expected a Reference");
    }
    if let Some(r) = str_at(v, "reference") {
        let ok = r
            .split_once('/')
            .is_some_and(|(ty, id)| ty.chars().all(|c| c.is_ascii_alphabetic()) && is_id(id));
        if !ok {
            push(out, path, "reference must be Type/id");
        }
    }
    if let Some(i) = v.get("identifier")
        && str_at(i, "value").is_none()
    {
        push(out, path, "identifier needs a value");
    }
    if v.get("reference").is_none() && v.get("identifier").is_none() && v.get("display").is_none() {
        push(
            out,
            path,
            "a Reference needs reference, identifier or display",
        );
    }
}

fn check_bundle(b: &Value, out: &mut Vec<String>) {
    if str_at(b, "resourceType") != Some("Bundle") {
        push(out, "Bundle", "resourceType must be Bundle");
    }
    let ty = str_at(b, "type").unwrap_or("");
    let types = [
        "document",
        "message",
        "transaction",
        "transaction-response",
        "batch",
        "batch-response",
        "history",
        "searchset",
        "collection",
    ];
    if !types.contains(&ty) {
        push(out, "Bundle.type", "not a Bundle type code");
    }
    if b.get("total").is_some() && ty != "searchset" && ty != "history" {
        push(
            out,
            "Bundle.total",
            "bdl-1: total only when a search or history",
        );
    }
    if let Some(t) = b.get("total")
        && !t.is_u64()
    {
        push(out, "Bundle.total", "expected an unsignedInt");
    }
    if let Some(ts) = str_at(b, "timestamp")
        && !is_instant(ts)
    {
        push(out, "Bundle.timestamp", "expected an instant");
    }
    let Some(entries) = b.get("entry") else {
        return;
    };
    let Some(entries) = entries.as_array() else {
        return push(out, "Bundle.entry", "expected an array");
    };
    for (i, entry) in entries.iter().enumerate() {
        let path = format!("Bundle.entry[{i}]");
        if entry.get("search").is_some() && ty != "searchset" {
            push(out, &path, "bdl-2: entry.search only when a search");
        }
        if let Some(mode) = entry.get("search").and_then(|s| s.get("mode")) {
            let ok = mode
                .as_str()
                .is_some_and(|m| ["match", "include", "outcome"].contains(&m));
            if !ok {
                push(out, &path, "search.mode is not a search entry mode code");
            }
        }
        match entry.get("resource") {
            Some(r) if str_at(r, "resourceType") == Some("AuditEvent") => {
                check_audit_event(r, &format!("{path}.resource"), out)
            }
            Some(_) => push(out, &path, "expected an AuditEvent resource"),
            None => push(out, &path, "entry without a resource"),
        }
    }
}

fn codes_of(concept: &Value) -> Vec<(String, String)> {
    concept
        .get("coding")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        str_at(c, "system").unwrap_or("").to_owned(),
                        str_at(c, "code").unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn check_audit_event(e: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(id) = str_at(e, "id")
        && !is_id(id)
    {
        push(out, &format!("{path}.id"), "not a FHIR id");
    }
    match e.get("type") {
        Some(t) => check_coding(t, &format!("{path}.type"), out),
        None => push(out, &format!("{path}.type"), "required (1..1)"),
    }
    if let Some(subs) = e.get("subtype") {
        match subs.as_array() {
            Some(a) => {
                for (i, c) in a.iter().enumerate() {
                    check_coding(c, &format!("{path}.subtype[{i}]"), out);
                }
            }
            None => push(out, &format!("{path}.subtype"), "expected an array"),
        }
    }
    if let Some(a) = e.get("action") {
        let ok = a
            .as_str()
            .is_some_and(|a| ["C", "R", "U", "D", "E"].contains(&a));
        if !ok {
            push(
                out,
                &format!("{path}.action"),
                "not an audit-event-action code",
            );
        }
    }
    if !str_at(e, "recorded").is_some_and(is_instant) {
        push(out, &format!("{path}.recorded"), "required instant");
    }
    if let Some(o) = e.get("outcome") {
        let ok = o
            .as_str()
            .is_some_and(|o| ["0", "4", "8", "12"].contains(&o));
        if !ok {
            push(
                out,
                &format!("{path}.outcome"),
                "not an audit-event-outcome code",
            );
        }
    }
    if let Some(p) = e.get("purposeOfEvent").and_then(Value::as_array) {
        for (i, c) in p.iter().enumerate() {
            check_concept(c, &format!("{path}.purposeOfEvent[{i}]"), out);
        }
    }
    let agents = e.get("agent").and_then(Value::as_array);
    match agents {
        Some(agents) => {
            for (i, a) in agents.iter().enumerate() {
                let ap = format!("{path}.agent[{i}]");
                if !a.get("requestor").is_some_and(Value::is_boolean) {
                    push(out, &ap, "requestor is required (1..1 boolean)");
                }
                if let Some(t) = a.get("type") {
                    check_concept(t, &format!("{ap}.type"), out);
                }
                if let Some(roles) = a.get("role").and_then(Value::as_array) {
                    for (j, r) in roles.iter().enumerate() {
                        check_concept(r, &format!("{ap}.role[{j}]"), out);
                    }
                }
                if let Some(w) = a.get("who") {
                    check_reference(w, &format!("{ap}.who"), out);
                }
                if let Some(p) = a.get("purposeOfUse").and_then(Value::as_array) {
                    for (j, c) in p.iter().enumerate() {
                        check_concept(c, &format!("{ap}.purposeOfUse[{j}]"), out);
                    }
                }
                if let Some(n) = a.get("network") {
                    let ok =
                        str_at(n, "type").is_some_and(|t| ["1", "2", "3", "4", "5"].contains(&t));
                    if !ok || str_at(n, "address").is_none() {
                        push(
                            out,
                            &format!("{ap}.network"),
                            "needs address and a type 1..5",
                        );
                    }
                }
            }
        }
        None => push(out, &format!("{path}.agent"), "required (1..*)"),
    }
    match e.get("source") {
        Some(s) => match s.get("observer") {
            Some(o) => check_reference(o, &format!("{path}.source.observer"), out),
            None => push(out, &format!("{path}.source.observer"), "required (1..1)"),
        },
        None => push(out, &format!("{path}.source"), "required (1..1)"),
    }
    if let Some(types) = e.get("source").and_then(|s| s.get("type")) {
        match types.as_array() {
            Some(a) => {
                for (i, c) in a.iter().enumerate() {
                    check_coding(c, &format!("{path}.source.type[{i}]"), out);
                }
            }
            None => push(out, &format!("{path}.source.type"), "expected an array"),
        }
    }
    if let Some(entities) = e.get("entity").and_then(Value::as_array) {
        for (i, en) in entities.iter().enumerate() {
            let ep = format!("{path}.entity[{i}]");
            if en.get("name").is_some() && en.get("query").is_some() {
                push(out, &ep, "sev-1: either a name or a query, not both");
            }
            if let Some(q) = en.get("query")
                && q.as_str().is_none_or(|q| B64.decode(q).is_err())
            {
                push(out, &format!("{ep}.query"), "expected base64Binary");
            }
            if let Some(w) = en.get("what") {
                check_reference(w, &format!("{ep}.what"), out);
            }
            for key in ["type", "role"] {
                if let Some(c) = en.get(key) {
                    check_coding(c, &format!("{ep}.{key}"), out);
                }
            }
            if let Some(details) = en.get("detail").and_then(Value::as_array) {
                for (j, d) in details.iter().enumerate() {
                    let has_value = d.get("valueString").is_some_and(Value::is_string)
                        || d.get("valueBase64Binary").is_some_and(Value::is_string);
                    if str_at(d, "type").is_none() || !has_value {
                        push(
                            out,
                            &format!("{ep}.detail[{j}]"),
                            "needs type and valueString or valueBase64Binary",
                        );
                    }
                }
            }
        }
    }
    let profiles: Vec<String> = e
        .get("meta")
        .and_then(|m| m.get("profile"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    for p in profiles {
        match p.strip_prefix(BALP) {
            Some(name) => check_balp(e, name, path, out),
            None => push(out, &format!("{path}.meta.profile"), "unknown profile"),
        }
    }
}

fn agent_with<'a>(e: &'a Value, system: &str, code: &str) -> Option<&'a Value> {
    e.get("agent")?.as_array()?.iter().find(|a| {
        a.get("type")
            .map(codes_of)
            .unwrap_or_default()
            .iter()
            .any(|(s, c)| s == system && c == code)
    })
}

fn entity_with<'a>(e: &'a Value, role: &str) -> Option<&'a Value> {
    e.get("entity")?
        .as_array()?
        .iter()
        .find(|en| en.get("role").and_then(|r| str_at(r, "code")) == Some(role))
}

/// What each claimed BALP profile requires of the resource.
fn check_balp(e: &Value, name: &str, path: &str, out: &mut Vec<String>) {
    let mut fail = |what: &str| push(out, &format!("{path} ({name})"), what);
    let action = str_at(e, "action").unwrap_or("");
    let outcome = str_at(e, "outcome").unwrap_or("");
    let ty = e.get("type").map(|t| {
        (
            str_at(t, "system").unwrap_or("").to_owned(),
            str_at(t, "code").unwrap_or("").to_owned(),
        )
    });
    let subtypes: Vec<String> = e
        .get("subtype")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| str_at(c, "code"))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let networked =
        |a: Option<&Value>| a.is_some_and(|a| a.get("who").is_some() && a.get("network").is_some());
    let patient_entity = entity_with(e, "1").is_some_and(|p| {
        p.get("what")
            .and_then(|w| str_at(w, "reference"))
            .is_some_and(|r| r.starts_with("Patient/"))
            && p.get("type").and_then(|t| str_at(t, "code")) == Some("1")
    });
    let rest = ty
        .as_ref()
        .is_some_and(|(s, c)| s.ends_with("audit-event-type") && c == "rest");
    let (base, patient) = match name.strip_prefix("IHE.BasicAudit.Patient") {
        Some(rest_name) => (rest_name, true),
        None => (name.strip_prefix("IHE.BasicAudit.").unwrap_or(name), false),
    };
    if patient && !patient_entity {
        fail("needs a patient entity (type 1, role 1, Reference(Patient))");
    }
    let (want_action, want_sub, client, server) = match base {
        "Create" => ("C", "create", "110153", "110152"),
        "Read" => ("R", "read", "110152", "110153"),
        "Update" => ("U", "update", "110153", "110152"),
        "Query" => ("E", "search-type", "110153", "110152"),
        "Delete" => ("D", "delete", "110150", ""),
        "PrivacyDisclosure.Source" => {
            if ty != Some((DCM.to_owned(), "110106".to_owned())) {
                fail("type must be DCM 110106 Export");
            }
            if action != "R" {
                fail("action must be R");
            }
            if !subtypes.iter().any(|s| s == "disclose") {
                fail("needs the ISO 21089 disclose subtype");
            }
            if !patient_entity {
                fail("needs a patient entity");
            }
            let source = agent_with(e, DCM, "110153");
            if !networked(source) || !networked(agent_with(e, DCM, "110152")) {
                fail("needs source and recipient agents with who and network");
            }
            let observer = e.get("source").and_then(|s| s.get("observer"));
            if source.and_then(|s| s.get("who")) != observer {
                fail("val-audit-source: the source agent must be the source observer");
            }
            return;
        }
        _ => return fail("not a profile this checker knows"),
    };
    if !rest {
        fail("type must be rest");
    }
    if action != want_action {
        fail("wrong action for the profile");
    }
    if !subtypes.iter().any(|s| s == want_sub) {
        fail("missing the profile's subtype");
    }
    if outcome != "0" {
        fail("BALP success profiles need outcome 0");
    }
    if !networked(agent_with(e, DCM, client)) {
        fail("needs the client agent with who and network");
    }
    let server_agent = if server.is_empty() {
        agent_with(
            e,
            "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
            "custodian",
        )
    } else {
        agent_with(e, DCM, server)
    };
    if !networked(server_agent) {
        fail("needs the server agent with who and network");
    }
    if let Some(user) = e.get("agent").and_then(Value::as_array).and_then(|a| {
        a.iter()
            .find(|a| a.get("requestor") == Some(&Value::Bool(true)))
    }) && user.get("network").is_some()
    {
        fail("the user agent has no network");
    }
    if base == "Query" {
        match entity_with(e, "24") {
            Some(q) => {
                if q.get("query").is_none() || q.get("what").is_some() || q.get("detail").is_some()
                {
                    fail("the query entity needs query, and has no what or detail");
                }
            }
            None => fail("needs a query entity (role 24)"),
        }
    } else {
        let data = e.get("entity").and_then(Value::as_array).and_then(|a| {
            a.iter()
                .find(|en| en.get("type").and_then(|t| str_at(t, "code")) == Some("2"))
        });
        if data.is_none_or(|d| d.get("what").is_none()) {
            fail("needs a data entity (type 2) with what");
        }
        if base == "Delete" {
            let n = e
                .get("entity")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if n != 2 || data.is_some_and(|d| d.get("detail").is_some()) {
                fail("PatientDelete: exactly the patient and the data entity, no detail");
            }
            let agents = e.get("agent").and_then(Value::as_array).map_or(0, Vec::len);
            if !(2..=3).contains(&agents) {
                fail("PatientDelete: two or three agents");
            }
        }
    }
}

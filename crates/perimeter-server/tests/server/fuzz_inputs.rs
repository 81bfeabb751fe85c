//! Replays the committed inputs of the fuzz targets that read the server's outside input
//! (`fuzz/seeds/TARGET/` and `fuzz/regressions/TARGET/`, see `fuzz/fuzz_targets/TARGET.rs`)
//! through the same entry points and the targets' main invariants, so that a bug the fuzzer
//! once found fails `cargo test` again without running the fuzzer (`scripts/fuzz`).

use std::path::PathBuf;

use perimeter_gateway::wire::parse_request;
use perimeter_server::channels::parse_voicemail_body;
use perimeter_server::channels::twilio::Form;
use perimeter_server::channels::web_chat::{
    parse_code_body, parse_code_request_body, parse_message_body, parse_verify_body,
};
use perimeter_server::vendors_api::VendorBody;
use perimeter_store::{parse_date, validate_vendor};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::macros::date;

/// Every committed input of `target`, with its path; fails when there is none (the
/// directories moved or the target was renamed).
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut out = Vec::new();
    for kind in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            out.push((path.display().to_string(), bytes));
        }
    }
    assert!(!out.is_empty(), "no committed fuzz inputs for {target}");
    out
}

fn to_json(v: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn vendor_body_inputs() {
    for (path, data) in inputs("vendor_body") {
        let Ok(body) = serde_json::from_slice::<VendorBody>(&data) else {
            continue;
        };
        let Ok(input) = body.into_input() else {
            continue;
        };
        if validate_vendor(&input, date!(2026 - 06 - 01)).is_err() {
            continue;
        }
        let baa = input.baa.iter().flat_map(|b| [b.signed, b.expires]);
        let soc2 = [input.soc2_report_date, input.soc2_expires]
            .into_iter()
            .flatten();
        for d in baa.chain(soc2) {
            let text = d.to_string();
            assert_eq!(text.len(), 10, "{path}: {text}");
            assert_eq!(parse_date(&text), Some(d), "{path}");
        }
    }
}

#[test]
fn web_chat_body_inputs() {
    for (path, data) in inputs("web_chat_bodies") {
        if let Ok(v) = parse_verify_body(&data) {
            let again = to_json(json!({"name": v.name, "birth_date": v.birth_date.to_string()}));
            assert_eq!(parse_verify_body(&again), Ok(v), "{path}");
        }
        if let Ok(v) = parse_code_request_body(&data) {
            let again = to_json(json!({ "phone": v.phone }));
            assert_eq!(parse_code_request_body(&again), Ok(v), "{path}");
        }
        if let Ok(v) = parse_code_body(&data) {
            let again = to_json(json!({ "code": v.code }));
            assert_eq!(parse_code_body(&again), Ok(v), "{path}");
        }
        if let Ok(v) = parse_message_body(&data) {
            let again = to_json(json!({"client_id": v.client_id, "text": v.text}));
            assert_eq!(parse_message_body(&again), Ok(v), "{path}");
        }
    }
}

#[test]
fn voicemail_body_inputs() {
    for (path, data) in inputs("voicemail_body") {
        match parse_voicemail_body(&data) {
            Ok(v) => {
                assert!(v.started_at <= v.ended_at, "{path}");
                let again = to_json(json!({
                    "caller": v.caller,
                    "transcript": v.transcript,
                    "started_at": v.started_at.format(&Rfc3339).unwrap(),
                    "ended_at": v.ended_at.format(&Rfc3339).unwrap(),
                    "call_id": v.call_id,
                }));
                assert_eq!(parse_voicemail_body(&again), Ok(v), "{path}");
            }
            Err(e) => assert!(e.status().is_client_error(), "{path}: {e:?}"),
        }
    }
}

#[test]
fn gateway_request_inputs() {
    for (path, data) in inputs("gateway_request") {
        if let Ok(request) = parse_request(&data) {
            let bytes = serde_json::to_vec(&request).unwrap();
            assert_eq!(parse_request(&bytes), Ok(request), "{path}");
        }
    }
}

#[test]
fn twilio_form_inputs() {
    for (path, data) in inputs("twilio_form") {
        if let Ok(form) = Form::parse(&data) {
            let again = Form::parse(form.encode().as_bytes()).unwrap();
            assert_eq!(again.params(), form.params(), "{path}");
        }
    }
}

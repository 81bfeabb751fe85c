//! The patient web chat's JSON bodies (`POST /api/chat/verify`, `/api/chat/code`,
//! `/api/chat/code/verify`, `/api/chat/messages`; `POST /api/chat/sessions` reads none) on
//! arbitrary bytes, through the functions the routes call: never a panic; a refused body is a
//! client error (413 exactly when it is over the limit), never a partial value; an accepted
//! body holds only what the checks allow, and written back as JSON it reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perimeter_server::ApiError;
use perimeter_server::channels::web_chat::{
    MAX_CHAT_BODY, MAX_CHAT_CHARS, parse_code_body, parse_code_request_body, parse_message_body,
    parse_verify_body,
};
use serde_json::json;

fn refused(e: &ApiError, body: &[u8]) {
    assert!(e.status().is_client_error(), "{e:?}");
    assert_eq!(
        e.code() == "payload_too_large",
        body.len() > MAX_CHAT_BODY,
        "{e:?}"
    );
}

fn body(v: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&v).expect("a JSON value serialises")
}

fuzz_target!(|data: &[u8]| {
    match parse_verify_body(data) {
        Ok(v) => {
            assert_eq!(v.name.trim(), v.name);
            assert!((1..=200).contains(&v.name.chars().count()));
            assert!(!v.name.chars().any(char::is_control));
            let again = body(json!({"name": v.name, "birth_date": v.birth_date.to_string()}));
            assert_eq!(parse_verify_body(&again), Ok(v));
        }
        Err(e) => refused(&e, data),
    }
    match parse_code_request_body(data) {
        Ok(v) => {
            assert_eq!(v.phone.trim(), v.phone);
            let digits = v.phone.bytes().filter(u8::is_ascii_digit).count();
            assert!((7..=15).contains(&digits));
            let again = body(json!({ "phone": v.phone }));
            assert_eq!(parse_code_request_body(&again), Ok(v));
        }
        Err(e) => refused(&e, data),
    }
    match parse_code_body(data) {
        Ok(v) => {
            assert_eq!(v.code.trim(), v.code);
            assert!(v.code.len() <= 32);
            let again = body(json!({ "code": v.code }));
            assert_eq!(parse_code_body(&again), Ok(v));
        }
        Err(e) => refused(&e, data),
    }
    match parse_message_body(data) {
        Ok(v) => {
            assert!((1..=31).contains(&v.client_id.len()));
            assert!(
                v.client_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert!(!v.text.trim().is_empty());
            assert!(v.text.chars().count() <= MAX_CHAT_CHARS);
            assert!(
                !v.text
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t')
            );
            let again = body(json!({"client_id": v.client_id, "text": v.text}));
            assert_eq!(parse_message_body(&again), Ok(v));
        }
        Err(e) => refused(&e, data),
    }
});

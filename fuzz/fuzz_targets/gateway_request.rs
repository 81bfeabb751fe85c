//! The gateway's OpenAI chat-completions request body (`POST /v1/chat/completions`, read by
//! `perimeter_gateway::wire::parse_request`) on arbitrary bytes: never a panic; a refused body
//! is an error in general terms (never the body's text); an accepted one serialises back to a
//! body that parses to the same request (unknown fields included), and that body is stable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perimeter_gateway::wire::parse_request;

const WHAT: [&str; 4] = [
    "could not be read",
    "not valid JSON",
    "a field is missing or has the wrong type (expected the OpenAI chat-completions format)",
    "the JSON ends too early",
];

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(request) => {
            let bytes = serde_json::to_vec(&request).expect("a request serialises");
            let again = parse_request(&bytes).expect("a serialised request parses");
            assert_eq!(again, request);
            let bytes_again = serde_json::to_vec(&again).expect("a request serialises");
            assert_eq!(bytes_again, bytes);
        }
        Err(e) => {
            assert!(WHAT.contains(&e.what), "{e:?}");
            assert_eq!(
                e.to_string(),
                format!(
                    "invalid request body at line {} column {}: {}",
                    e.line, e.column, e.what
                )
            );
        }
    }
});

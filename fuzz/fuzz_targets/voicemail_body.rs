//! The voicemail / voice-agent transcript intake body (`POST /api/intake/voicemail`) on
//! arbitrary bytes, through the function the route calls: never a panic; a body naming audio
//! or a recording is refused as such; a refused body is a client error, never a partial
//! value; an accepted one holds only what the checks allow and, written back as JSON, reads
//! back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perimeter_server::channels::{MAX_TRANSCRIPT_CHARS, parse_voicemail_body};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

const AUDIO: [&str; 8] = [
    "audio",
    "audio_url",
    "audio_base64",
    "recording",
    "recording_url",
    "media",
    "media_url",
    "wav",
];

fuzz_target!(|data: &[u8]| {
    let names_audio = serde_json::from_slice::<Value>(data)
        .ok()
        .and_then(|v| {
            v.as_object().map(|o| {
                o.keys()
                    .any(|k| AUDIO.contains(&k.to_ascii_lowercase().as_str()))
            })
        })
        .unwrap_or(false);
    match parse_voicemail_body(data) {
        Ok(v) => {
            assert!(!names_audio);
            assert!(!v.transcript.trim().is_empty());
            assert!(v.transcript.chars().count() <= MAX_TRANSCRIPT_CHARS);
            assert!(v.started_at <= v.ended_at);
            assert!((1..=64).contains(&v.call_id.len()));
            assert!(
                v.call_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            let digits = v.caller.bytes().filter(u8::is_ascii_digit).count();
            assert!((7..=15).contains(&digits));
            let again = serde_json::to_vec(&json!({
                "caller": v.caller,
                "transcript": v.transcript,
                "started_at": v.started_at.format(&Rfc3339).expect("an accepted time formats"),
                "ended_at": v.ended_at.format(&Rfc3339).expect("an accepted time formats"),
                "call_id": v.call_id,
            }))
            .expect("serialises");
            assert_eq!(parse_voicemail_body(&again), Ok(v));
        }
        Err(e) => {
            assert!(e.status().is_client_error(), "{e:?}");
            if names_audio {
                assert_eq!(e.code(), "audio_not_accepted");
            }
        }
    }
});

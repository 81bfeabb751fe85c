//! Patient SMS replies to reminders and administrators' template bodies are outside input:
//! neither parser may panic, and a parsed template renders with every placeholder filled.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use perimeter_workflows::{PLACEHOLDERS, Template, parse_reminder_reply};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_reminder_reply(text);
    if let Ok(t) = Template::parse(text) {
        let values: BTreeMap<&str, String> =
            PLACEHOLDERS.iter().map(|p| (*p, "x".to_owned())).collect();
        assert!(t.render(&values).is_ok());
    }
});

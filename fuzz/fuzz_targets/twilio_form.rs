//! The Twilio webhook form parser and field extraction on arbitrary bytes: never panics, and
//! whatever parses re-encodes to a body that parses to the same parameters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perimeter_server::channels::twilio::{Form, InboundSms, StatusCallback};

fuzz_target!(|data: &[u8]| {
    if let Ok(form) = Form::parse(data) {
        let _ = InboundSms::from_form(&form);
        let _ = StatusCallback::from_form(&form);
        let again = Form::parse(form.encode().as_bytes()).expect("re-encoded form parses");
        assert_eq!(again.params(), form.params());
    }
});

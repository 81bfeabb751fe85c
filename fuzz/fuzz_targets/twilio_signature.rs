//! The webhook signature check on arbitrary bodies, URLs and headers: never panics, accepts
//! the signature it computes, and refuses any other header value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perimeter_server::channels::twilio::{Form, signature, verify};

fuzz_target!(|input: (&[u8], &str, &str)| {
    let (body, url, header) = input;
    let Ok(form) = Form::parse(body) else {
        return;
    };
    let token = b"fuzz-auth-token";
    let good = signature(token, url, &form);
    assert!(verify(token, url, &form, &good));
    if header.trim() != good {
        assert!(!verify(token, url, &form, header));
    }
    assert!(!verify(b"", url, &form, &good));
});

//! The AI vendor registry's JSON body (`POST /api/vendors`, `PUT /api/vendors/{name}`) on
//! arbitrary bytes, through what the routes run (the JSON extractor's serde, then
//! `VendorBody::into_input`, then the store's `validate_vendor`): never a panic; a refusal is a
//! stable code and message; terms the store accepts hold only what its checks allow, with
//! every date in the `YYYY-MM-DD` form the registry stores and reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perimeter_server::vendors_api::VendorBody;
use perimeter_store::{KeyInput, VendorClass, parse_date, validate_vendor};
use time::macros::date;

fn stored_form_reads_back(d: time::Date) {
    let text = d.to_string();
    assert_eq!(text.len(), 10, "{text}");
    assert_eq!(parse_date(&text), Some(d), "{text}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<VendorBody>(data) else {
        return;
    };
    let input = match body.into_input() {
        Ok(input) => input,
        Err((code, message)) => {
            assert!(!code.is_empty() && !message.is_empty());
            return;
        }
    };
    let today = date!(2026 - 06 - 01);
    if validate_vendor(&input, today).is_err() {
        return;
    }
    assert!(!input.models.is_empty());
    if let Some(baa) = &input.baa {
        assert!(baa.signed <= baa.expires);
        stored_form_reads_back(baa.signed);
        stored_form_reads_back(baa.expires);
    }
    for d in [input.soc2_report_date, input.soc2_expires]
        .into_iter()
        .flatten()
    {
        stored_form_reads_back(d);
    }
    if input.data_class == VendorClass::Phi && !input.inside_perimeter {
        assert!(input.baa.as_ref().is_some_and(|b| b.in_force_on(today)));
    }
    if let KeyInput::Secret(k) = &input.key {
        assert!(!k.trim().is_empty());
    }
});

//! The Twilio wire format: webhook form bodies, the `X-Twilio-Signature` check and TwiML.
//!
//! Signature (Twilio's documented scheme): base64 of HMAC-SHA1, keyed by the account's auth
//! token, over the full public URL of the webhook followed by every POST parameter's name and
//! value, sorted by name (and, for repeated names, by value), concatenated without separators.
//! The comparison is constant time.

use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The most parameters one webhook may carry (Twilio sends about 20; media adds a few each).
pub const MAX_PARAMS: usize = 200;

/// A form body that is not `application/x-www-form-urlencoded` as Twilio sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// Not UTF-8 after percent-decoding.
    #[error("the form body is not valid UTF-8 after percent-decoding")]
    NotUtf8,
    /// Too many parameters.
    #[error("the form body has more than 200 parameters")]
    TooManyParams,
    /// A parameter the webhook needs is missing or empty.
    #[error("the form body lacks the {0} parameter")]
    Missing(&'static str),
    /// A parameter is given twice where one is expected.
    #[error("the form body repeats the {0} parameter")]
    Repeated(&'static str),
    /// A parameter's value has the wrong shape.
    #[error("the {0} parameter is malformed")]
    Malformed(&'static str),
}

/// A decoded form body: its parameters in order (values may hold PHI: never logged).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Form {
    params: Vec<(String, String)>,
}

impl fmt::Debug for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Form")
            .field("params", &self.params.len())
            .finish_non_exhaustive()
    }
}

fn strict_utf8(bytes: Vec<u8>) -> Result<String, FormError> {
    String::from_utf8(bytes).map_err(|_| FormError::NotUtf8)
}

impl Form {
    /// Parses an `application/x-www-form-urlencoded` body (`+` is a space, `%XX` a byte).
    /// Invalid UTF-8 is refused rather than replaced, so the signature is computed over exactly
    /// what was sent.
    pub fn parse(body: &[u8]) -> Result<Form, FormError> {
        let mut params = Vec::new();
        for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (k, v) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (
                    pair.get(..i).unwrap_or_default(),
                    pair.get(i + 1..).unwrap_or_default(),
                ),
                None => (pair, &[][..]),
            };
            params.push((
                strict_utf8(percent_decode(k))?,
                strict_utf8(percent_decode(v))?,
            ));
            if params.len() > MAX_PARAMS {
                return Err(FormError::TooManyParams);
            }
        }
        Ok(Form { params })
    }

    /// Builds a form from parameters (for tests and the fake carrier).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Form {
        Form {
            params: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The body, form-encoded.
    pub fn encode(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.params {
            s.append_pair(k, v);
        }
        s.finish()
    }

    /// The parameters in order.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The one value of `name`, if present once; an error if it is repeated.
    pub fn get(&self, name: &'static str) -> Result<Option<&str>, FormError> {
        let mut it = self.params.iter().filter(|(k, _)| k == name);
        let first = it.next().map(|(_, v)| v.as_str());
        if it.next().is_some() {
            return Err(FormError::Repeated(name));
        }
        Ok(first)
    }

    /// The one non-empty value of `name`.
    pub fn require(&self, name: &'static str) -> Result<&str, FormError> {
        match self.get(name)? {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(FormError::Missing(name)),
        }
    }
}

fn percent_decode(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (body.get(i + 1), body.get(i + 2))
            && let (Some(h), Some(l)) = (hex_val(*h), hex_val(*l))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(if b == b'+' { b' ' } else { b });
        i += 1;
    }
    out
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The signature Twilio computes for `url` and `form`.
pub fn signature(auth_token: &[u8], url: &str, form: &Form) -> String {
    let mut sorted: Vec<&(String, String)> = form.params.iter().collect();
    sorted.sort();
    // HMAC accepts keys of any length.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(auth_token) else {
        return String::new();
    };
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks `header` (the `X-Twilio-Signature` value) in constant time.
pub fn verify(auth_token: &[u8], url: &str, form: &Form, header: &str) -> bool {
    if auth_token.is_empty() {
        return false;
    }
    let expected = signature(auth_token, url, form);
    let given = header.trim().as_bytes();
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given))
}

/// An inbound SMS as Twilio posts it.
#[derive(Clone, PartialEq, Eq)]
pub struct InboundSms {
    /// `MessageSid` (`SM...` or `MM...`).
    pub message_sid: String,
    /// `From`, the sender.
    pub from: String,
    /// `To`, the practice's number.
    pub to: String,
    /// `Body`.
    pub body: String,
    /// `NumMedia`.
    pub num_media: u32,
}

impl fmt::Debug for InboundSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundSms")
            .field("num_media", &self.num_media)
            .finish_non_exhaustive()
    }
}

fn sid_ok(s: &str) -> bool {
    (10..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn phone_ok(s: &str) -> bool {
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    (7..=15).contains(&digits)
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b' ' | b'(' | b')' | b'.'))
}

impl InboundSms {
    /// The message in a verified form.
    pub fn from_form(form: &Form) -> Result<InboundSms, FormError> {
        let sid = form.require("MessageSid")?;
        if !sid_ok(sid) {
            return Err(FormError::Malformed("MessageSid"));
        }
        let from = form.require("From")?;
        if !phone_ok(from) {
            return Err(FormError::Malformed("From"));
        }
        let to = form.require("To")?;
        let body = form.get("Body")?.unwrap_or_default();
        let num_media = match form.get("NumMedia")? {
            None | Some("") => 0,
            Some(n) => n.parse().map_err(|_| FormError::Malformed("NumMedia"))?,
        };
        Ok(InboundSms {
            message_sid: sid.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            body: body.to_owned(),
            num_media,
        })
    }
}

/// A status callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCallback {
    /// `MessageSid`.
    pub message_sid: String,
    /// `MessageStatus`.
    pub status: String,
    /// `ErrorCode`, if any (digits).
    pub error_code: Option<String>,
}

impl StatusCallback {
    /// The callback in a verified form.
    pub fn from_form(form: &Form) -> Result<StatusCallback, FormError> {
        let sid = form.require("MessageSid")?;
        if !sid_ok(sid) {
            return Err(FormError::Malformed("MessageSid"));
        }
        let status = form.require("MessageStatus")?;
        if status.len() > 20 || !status.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(FormError::Malformed("MessageStatus"));
        }
        let error_code = form
            .get("ErrorCode")?
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        Ok(StatusCallback {
            message_sid: sid.to_owned(),
            status: status.to_owned(),
            error_code,
        })
    }
}

/// TwiML: an empty `<Response/>`, or one `<Message>` with `text` (XML-escaped).
pub fn twiml(text: Option<&str>) -> String {
    match text {
        None => "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>".to_owned(),
        Some(t) => {
            let mut out =
                String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>");
            for c in t.chars() {
                match c {
                    '&' => out.push_str("&amp;"),
                    '<' => out.push_str("&lt;"),
                    '>' => out.push_str("&gt;"),
                    '"' => out.push_str("&quot;"),
                    '\'' => out.push_str("&apos;"),
                    c => out.push(c),
                }
            }
            out.push_str("</Message></Response>");
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn twilio_documented_example() {
        // The example from Twilio's "Webhooks security" documentation.
        let form = Form::from_pairs([
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let sig = signature(b"12345", url, &form);
        assert_eq!(sig, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert!(verify(b"12345", url, &form, &sig));
        assert!(!verify(b"12346", url, &form, &sig));
        assert!(!verify(b"12345", "https://example.com/other", &form, &sig));
        assert!(!verify(b"", url, &form, &sig));
        assert!(!verify(b"12345", url, &form, ""));
    }

    #[test]
    fn parse_and_fields() {
        let f = Form::parse(b"MessageSid=SM0123456789abcdef&From=%2B15551234567&To=%2B15550000000&Body=Hi+there%21&NumMedia=0").unwrap();
        let m = InboundSms::from_form(&f).unwrap();
        assert_eq!(m.from, "+15551234567");
        assert_eq!(m.body, "Hi there!");
        assert_eq!(m.num_media, 0);
        assert_eq!(
            InboundSms::from_form(&Form::parse(b"From=%2B15551234567").unwrap()),
            Err(FormError::Missing("MessageSid"))
        );
        assert_eq!(
            InboundSms::from_form(
                &Form::parse(b"MessageSid=SM0123456789&MessageSid=SM0123456789&From=1").unwrap()
            ),
            Err(FormError::Repeated("MessageSid"))
        );
        assert_eq!(
            InboundSms::from_form(
                &Form::parse(b"MessageSid=SM01234567/9&From=%2B15551234567&To=x").unwrap()
            ),
            Err(FormError::Malformed("MessageSid"))
        );
        assert_eq!(Form::parse(b"Body=%FF%FE"), Err(FormError::NotUtf8));
        // A real U+FFFD sent percent-encoded is kept.
        let f = Form::parse(b"Body=%EF%BF%BD").unwrap();
        assert_eq!(f.get("Body").unwrap(), Some("\u{FFFD}"));
    }

    #[test]
    fn twiml_escapes() {
        assert_eq!(
            twiml(Some("a<b & \"c\"")),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>a&lt;b &amp; &quot;c&quot;</Message></Response>"
        );
        assert!(twiml(None).ends_with("<Response/>"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Form::parse(&body);
        }

        #[test]
        fn encode_parse_round_trip(pairs in proptest::collection::vec(("[A-Za-z]{1,12}", ".{0,40}"), 0..20)) {
            let f = Form::from_pairs(pairs.clone());
            let back = Form::parse(f.encode().as_bytes()).unwrap();
            prop_assert_eq!(back.params(), f.params());
        }

        #[test]
        fn signature_depends_on_every_value(pairs in proptest::collection::vec(("[A-Za-z]{1,12}", "[ -~]{0,20}"), 1..8), i in any::<usize>()) {
            let f = Form::from_pairs(pairs.clone());
            let sig = signature(b"token", "https://h/x", &f);
            prop_assert!(verify(b"token", "https://h/x", &f, &sig));
            let mut changed = pairs;
            let n = i % changed.len();
            changed[n].1.push('!');
            let g = Form::from_pairs(changed);
            prop_assert!(!verify(b"token", "https://h/x", &g, &sig));
        }
    }
}

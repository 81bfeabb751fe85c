//! Structured inputs: HL7 v2 segments (`PID|...`) and JSON payloads (`"dob": "..."`), where
//! the field position or key says what a value is.

use super::{Candidate, Recognizer, Text};
use crate::{Label, Span};

/// The structured-input recognizer.
pub(crate) struct Structured;

impl Recognizer for Structured {
    fn name(&self) -> &'static str {
        "structured"
    }

    fn find(&self, doc: &Text<'_>, out: &mut Vec<Candidate>) {
        let text = doc.text;
        // The tokenizer saw whether the text has a `|` or a `"`.
        if doc.seen & super::tokens::SEEN_PIPE != 0 {
            hl7(text, out);
        }
        if doc.seen & super::tokens::SEEN_QUOTE != 0
            && (text.contains("\":") || text.contains("\" :"))
        {
            json(doc, out);
        }
        let b = text.as_bytes();
        if b.contains(&b'\n') && (b.contains(&b',') || b.contains(&b';') || b.contains(&b'\t')) {
            csv(text, out);
        }
        let seen = doc.seen;
        if seen & super::tokens::SEEN_LT != 0 && text.contains("</") {
            xml(text, out);
        }
        if seen & super::tokens::SEEN_TILDE != 0 && (text.contains("NM1*") || text.contains("N4*"))
        {
            x12(text, out);
        }
        if seen & super::tokens::SEEN_EQ != 0 {
            key_values(text, out);
        }
        logins_in_prose(doc, out);
        vcard_addresses(doc, out);
    }
}

/// `ADR;TYPE=WORK:;;2 N. Clark St.;Chicago;IL;60602;US`: a vCard's address line, whose
/// fields are (RFC 6350) post office box, extended address, street, locality, region,
/// postal code and country. The street and extended address are ADDRESS, the locality and
/// postal code LOCATION; region and country are not PHI. Found from the tokens (`ADR` at a
/// line's start), not by searching the text.
fn vcard_addresses(doc: &Text<'_>, out: &mut Vec<Span>) {
    let text = doc.text;
    let b = text.as_bytes();
    for t in &doc.tokens {
        if t.end - t.start != 3
            || b.get(t.start..t.end) != Some(b"ADR")
            || !(t.start == 0 || b.get(t.start - 1) == Some(&b'\n'))
            || !matches!(b.get(t.end), Some(b':' | b';'))
        {
            continue;
        }
        let line_end = b[t.end..]
            .iter()
            .position(|&c| c == b'\n' || c == b'\r')
            .map_or(b.len(), |i| t.end + i);
        let Some(colon) = b[t.end..line_end].iter().position(|&c| c == b':') else {
            continue;
        };
        let mut at = t.end + colon + 1;
        for field in 0..7 {
            // `\;` and `\,` are escapes inside a field, not separators.
            let mut end = at;
            while end < line_end && !(b[end] == b';' && (end == at || b[end - 1] != b'\\')) {
                end += 1;
            }
            let label = match field {
                0..=2 => Some(Label::Address),
                3 | 5 => Some(Label::Location),
                _ => None,
            };
            if let Some(label) = label {
                value(text, at, end, label, out);
            }
            if end >= line_end {
                break;
            }
            at = end + 1;
        }
    }
}

/// The words that name a login in prose ([`logins_in_prose`]).
pub(crate) const LOGIN_WORDS: &[&str] = &["username", "userid", "login", "user"];

/// `Portal username: peggyosh47`, `Username jwashington_clt`, `login is mreyes.77`, `User:
/// whunter85`: a login named in prose or a help-desk chat. The value must look like a login:
/// a digit, `_` or `.` in it, or (after `username` or `login`) a lower-case word no
/// dictionary lists. E-mail addresses are left to the e-mail pattern. The key words are
/// found from the tokens' word classes (no text search per message).
fn logins_in_prose(doc: &Text<'_>, out: &mut Vec<Span>) {
    let lower = doc.lower.as_str();
    let b = lower.as_bytes();
    for (k, f) in doc.feats.iter().enumerate() {
        if f.class & super::features::class::LOGIN == 0 {
            continue;
        }
        let Some(t) = doc.tokens.get(k) else {
            continue;
        };
        let word = doc.lower_tok(k);
        // `user name`, `user id`: two words.
        let second = (word == "user")
            .then(|| doc.tokens.get(k + 1))
            .flatten()
            .filter(|n| {
                b.get(t.end..n.start) == Some(b" ") && matches!(doc.lower_tok(k + 1), "name" | "id")
            });
        let key_end = second.map_or(t.end, |n| n.end);
        let bare_user = word == "user" && second.is_none();
        let mut at = key_end;
        // `User:` alone is a chat's speaker label: only a login-shaped value counts.
        if bare_user && b.get(at) != Some(&b':') {
            continue;
        }
        while b
            .get(at)
            .is_some_and(|c| matches!(c, b' ' | b':' | b'#' | b'='))
        {
            at += 1;
        }
        for filler in ["is ", "was ", "will be "] {
            if lower.get(at..).is_some_and(|r| r.starts_with(filler)) {
                at += filler.len();
            }
        }
        let len = b
            .get(at..)
            .unwrap_or(&[])
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'@'))
            .count();
        let mut end = at + len;
        while end > at && matches!(b[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let Some(v) = lower.get(at..end) else {
            continue;
        };
        if v.len() < 3
            || v.len() > 40
            || v.contains('@')
            || !v.bytes().any(|c| c.is_ascii_alphabetic())
        {
            continue;
        }
        let shaped = v
            .bytes()
            .any(|c| c.is_ascii_digit() || c == b'_' || c == b'.');
        let unlisted_word = !bare_user
            && doc
                .text
                .get(at..end)
                .is_some_and(|w| w.bytes().all(|c| c.is_ascii_lowercase()))
            && v.len() >= 5
            && doc.lex.flags(v, &mut String::new()) & crate::lexicon::WORD == 0
            && !super::features::STOP_WORDS.contains(&v);
        if shaped || unlisted_word {
            push(out, at, end, Label::Id, 0.8);
        }
    }
}

fn push(out: &mut Vec<Span>, start: usize, end: usize, label: Label, conf: f32) {
    if start < end {
        out.push(Span {
            start,
            end,
            label,
            confidence: conf,
            recognizer: "structured",
        });
    }
}

/// `YYYYMMDD[HHMM[SS]]` with a real calendar date.
fn hl7_date(s: &str) -> bool {
    let d = s.split(['+', '-', '.']).next().unwrap_or("");
    if !(d.len() == 8 || d.len() == 12 || d.len() == 14) || !d.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let iso = format!(
        "{}-{}-{}",
        d.get(0..4).unwrap_or(""),
        d.get(4..6).unwrap_or(""),
        d.get(6..8).unwrap_or("")
    );
    let y: u32 = d.get(0..4).and_then(|y| y.parse().ok()).unwrap_or(0);
    (1850..=2100).contains(&y) && super::validate::iso_date(&iso)
}

/// What each field (1-based, after the segment name) of the common segments holds.
fn field_label(seg: &str, field: usize) -> Option<Label> {
    Some(match (seg, field) {
        ("PID", 2..=4) => Label::Mrn,
        ("PID", 5 | 6 | 9) => Label::Name,
        ("PID", 7) => Label::Date,
        ("PID", 11) => Label::Address,
        ("PID", 13 | 14) => Label::Phone,
        ("PID", 18) => Label::Account,
        ("PID", 19) => Label::Ssn,
        ("PID", 20) => Label::License,
        ("PID", 29) => Label::Date,
        ("NK1", 2) => Label::Name,
        ("NK1", 4) => Label::Address,
        ("NK1", 5 | 6) => Label::Phone,
        ("PV1", 7 | 8 | 9 | 17) => Label::Name,
        ("PV1", 19) => Label::Id,
        ("PV1", 44 | 45) => Label::Date,
        ("GT1", 3) => Label::Name,
        ("GT1", 5) => Label::Address,
        ("GT1", 6 | 7) => Label::Phone,
        ("GT1", 8) => Label::Date,
        ("GT1", 12) => Label::Ssn,
        ("IN1", 2 | 36) => Label::HealthPlan,
        ("IN1", 16) => Label::Name,
        ("IN1", 18) => Label::Date,
        ("IN1", 19) => Label::Address,
        ("IN1", 49) => Label::HealthPlan,
        ("ORC" | "OBR", 2 | 3) => Label::Id,
        ("ORC", 12) | ("OBR", 16) | ("OBX", 16) => Label::Name,
        ("AIP", 3) | ("ROL", 4) | ("PRD", 2) | ("SCH", 12 | 16 | 20) => Label::Name,
        ("IN1", 6) | ("TXA", 5 | 9 | 22) | ("PV2", 13) => Label::Name,
        ("IN1", 5) => Label::Address,
        _ => return None,
    })
}

fn hl7(text: &str, out: &mut Vec<Span>) {
    let mut line_start = 0;
    for line in text.split_inclusive(['\n', '\r']) {
        let base = line_start;
        line_start += line.len();
        let l = line.trim_end_matches(['\n', '\r']);
        let b = l.as_bytes();
        if b.len() < 4
            || b[3] != b'|'
            || !b[..3]
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            continue;
        }
        let seg = &l[..3];
        // MSH-1 is the separator itself, so MSH fields are shifted by one.
        let mut pos = 4;
        for (i, field) in l[4..].split('|').enumerate() {
            let field_no = if seg == "MSH" { i + 2 } else { i + 1 };
            let fstart = base + pos;
            pos += field.len() + 1;
            if field.is_empty() {
                continue;
            }
            let label = field_label(seg, field_no);
            // A person's name (XPN `FAMILY^GIVEN^MIDDLE^...`, or XCN with an id first) in a
            // name field, or an XCN anywhere (`1629074815^HALVORSEN^INGRID^M^^^DR`).
            if label == Some(Label::Name) || is_xcn(field) {
                name_parts(field, fstart, out);
            }
            // Any date-time field is a date.
            let mut cpos = 0;
            for comp in field.split(['^', '~', '&']) {
                let cstart = fstart + cpos;
                cpos += comp.len() + 1;
                let c = comp.trim();
                if c.is_empty() {
                    continue;
                }
                let lead = comp.len() - comp.trim_start().len();
                let (s, e) = (cstart + lead, cstart + lead + c.len());
                if hl7_date(c) {
                    // `202503021432`: the date-time whole (annotators differ on whether the
                    // time belongs to the date; covering it leaves no date digit out), up to
                    // a time zone or fraction.
                    let d = c.split(['+', '-', '.']).next().unwrap_or("");
                    push(out, s, s + d.len(), Label::Date, 0.9);
                    continue;
                }
                match label {
                    // The name parts are taken by `name_parts`; an XCN's leading id here.
                    Some(Label::Name)
                        if c.chars().any(|ch| ch.is_ascii_digit())
                            && c.len() >= 4
                            && cstart == fstart =>
                    {
                        push(out, s, e, Label::Id, 0.8);
                    }
                    Some(Label::Name) => {}
                    Some(Label::Address) => {
                        // street ^ other ^ city ^ state ^ zip ^ country
                        let idx = field[..(cstart - fstart).min(field.len())]
                            .matches('^')
                            .count();
                        let l2 = match idx {
                            0 | 1 => Some(Label::Address),
                            2 | 4 | 8 => Some(Label::Location),
                            _ => None,
                        };
                        if let Some(l2) = l2 {
                            push(out, s, e, l2, 0.9);
                        }
                    }
                    Some(Label::Phone) if c.bytes().filter(u8::is_ascii_digit).count() >= 7 => {
                        // XTN's area code is the component before the number
                        // (`^PRN^PH^^1^802^5550162`): one span for both.
                        let before = &field[..(cstart - fstart).min(field.len())];
                        let area = before
                            .strip_suffix('^')
                            .and_then(|b| b.rsplit('^').next())
                            .filter(|a| a.len() == 3 && a.bytes().all(|d| d.is_ascii_digit()));
                        let s = area.map_or(s, |a| cstart - 1 - a.len());
                        push(out, s, e, Label::Phone, 0.9);
                    }
                    Some(Label::Phone) => {}
                    Some(Label::Date) => {}
                    Some(l) => {
                        let idx = field[..(cstart - fstart).min(field.len())]
                            .matches('^')
                            .count();
                        if idx == 0 && c.bytes().any(|b| b.is_ascii_digit()) {
                            push(out, s, e, l, 0.9);
                        }
                    }
                    None => {}
                }
            }
        }
    }
}

/// The components of an HL7 field, each with its byte offset in the field.
fn components(field: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut at = 0;
    field.split('^').map(move |c| {
        let r = (at, c);
        at += c.len() + 1;
        r
    })
}

/// Whether a component is a word of a person's name: letters with `'`, `-`, `.` or spaces,
/// starting with a letter or an apostrophe (`'ANA`), no digits.
fn name_word(c: &str) -> bool {
    let c = c.trim();
    !c.is_empty()
        && c.chars().any(char::is_alphabetic)
        && c.chars()
            .all(|ch| ch.is_alphabetic() || matches!(ch, '\'' | '-' | '.' | ' ' | '’'))
}

/// An extended composite id with a name (XCN): an id (digits, or letters and digits) and
/// then family and given names, one word each, the given name not a coding-system code
/// (`2345-7^GLUCOSE^LN` is a LOINC code, `70618^Penicillin^RXNORM` an RxNorm one).
fn is_xcn(field: &str) -> bool {
    let mut parts = field.split('^');
    let (Some(id), Some(family), Some(given)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    const SYSTEMS: [&str; 12] = [
        "LN", "SCT", "SNM", "RXNORM", "I10", "I9", "CPT", "HCPCS", "NDC", "CVX", "L", "HL7",
    ];
    id.len() >= 6
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
        && id.bytes().filter(u8::is_ascii_digit).count() >= 4
        && [family, given]
            .iter()
            .all(|w| name_word(w) && !w.contains(' ') && w.len() >= 2)
        && !SYSTEMS.contains(&given.trim())
        && !given.starts_with("99")
}

/// The name parts of a name field: family, given and middle names (components 1-3 of an
/// XPN, or 2-4 of an XCN whose first component is an id), a middle initial too, but not the
/// suffix, prefix or degree after them. One span per component, so that the field keeps its
/// shape when de-identified.
fn name_parts(field: &str, fstart: usize, out: &mut Vec<Span>) {
    for rep in field.split('~') {
        let rstart = fstart + (rep.as_ptr() as usize - field.as_ptr() as usize);
        let comps: Vec<(usize, &str)> = components(rep).collect();
        let skip = usize::from(
            comps
                .first()
                .is_some_and(|(_, c)| c.bytes().any(|b| b.is_ascii_digit()) || c.is_empty()),
        );
        for &(off, c) in comps.iter().skip(skip).take(3) {
            let c = c.split('&').next().unwrap_or("");
            if !name_word(c) {
                continue;
            }
            let lead = c.len() - c.trim_start().len();
            let s = rstart + off + lead;
            push(out, s, s + c.trim().len(), Label::Name, 0.9);
        }
    }
}

/// What a JSON key says its value is.
fn key_label(key: &str) -> Option<Label> {
    let k: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let has = |w: &str| k.contains(w);
    if k.is_empty() {
        return None;
    }
    Some(if has("email") {
        Label::Email
    } else if has("fax") {
        Label::Fax
    } else if has("phone") || has("mobile") || has("cell") || k == "tel" || has("telephone") {
        Label::Phone
    } else if has("ssn") || has("socialsecurity") {
        Label::Ssn
    } else if has("mrn") || has("medicalrecord") || k == "patientid" || has("chart") {
        Label::Mrn
    } else if has("memberid")
        || has("policy")
        || has("medicare")
        || has("medicaid")
        || has("subscriber")
        || has("insuranceid")
        || has("mbi")
    {
        Label::HealthPlan
    } else if has("account") || has("acct") || has("cardnumber") {
        Label::Account
    } else if has("license") || has("licence") || has("npi") || has("dea") {
        Label::License
    } else if has("vin") || (has("plate") && !has("template")) {
        Label::Vehicle
    } else if has("serial") || has("deviceid") || has("udi") || has("imei") || has("transmitter") {
        Label::Device
    } else if has("url") || has("website") || has("homepage") {
        Label::Url
    } else if k == "ip" || has("ipaddress") || has("ipaddr") {
        Label::Ip
    } else if has("dob")
        || has("birth")
        || k.ends_with("date")
        || has("admit")
        || has("discharge")
        || has("dos")
    {
        Label::Date
    } else if k == "age" {
        Label::Age
    } else if has("zip")
        || has("postal")
        || k == "city"
        || k == "county"
        || k == "district"
        || has("town")
    {
        Label::Location
    } else if has("street")
        || has("address")
        || k == "line"
        || k == "line1"
        || k == "line2"
        || k == "addr"
    {
        Label::Address
    } else if has("name")
        || k == "patient"
        || k == "pt"
        || k == "guarantor"
        || k == "given"
        || k == "family"
        || k == "first"
        || k == "last"
        || k == "middle"
        || k == "surname"
        || has("physician")
        || has("provider")
        || has("doctor")
        || k == "guardian"
        || k == "contact"
        || k == "caller"
        || k == "pcp"
        || k == "nok"
        || has("ordering")
        || has("attending")
        || has("referring")
    {
        Label::Name
    } else if has("claim")
        || k == "id"
        || (k.len() > 4
            && k.ends_with("id")
            && ![
                "paid",
                "valid",
                "void",
                "fluid",
                "liquid",
                "covid",
                "android",
                "thyroid",
                "versionid",
            ]
            .iter()
            .any(|w| k.ends_with(w)))
        || has("rx")
        || has("prescription")
        || has("case")
        || has("ticket")
        || has("order")
        || has("encounter")
        || has("visitid")
    {
        Label::Id
    } else {
        return None;
    })
}

/// `"key": "value"`, `"key": ["value", ...]` and `"key": 12345` pairs, in JSON and in JSON
/// escaped inside a JSON string (`\"key\":\"value\"`). Keys are found from their colons, not
/// by pairing quotes from the start, so one odd quote does not shift every pair after it.
fn json(doc: &Text<'_>, out: &mut Vec<Span>) {
    let text = doc.text;
    let b = text.as_bytes();
    let mut from = 0;
    // The label of the key whose value is the object or array of objects being read, and
    // where that value ends: its `text` or `display` is what the key says (FHIR's
    // `"name": [{"text": ...}]`, `"patient": {"reference": ..., "display": ...}`).
    let mut parent: Option<(Label, usize)> = None;
    while let Some(colon) = memchr_from(b, b':', from) {
        from = colon + 1;
        // Back over spaces to the key's closing quote (and its backslash when escaped).
        let mut k = colon;
        while k > 0 && b[k - 1] == b' ' {
            k -= 1;
        }
        if k == 0 || b[k - 1] != b'"' {
            continue;
        }
        let close = k - 1;
        let escaped = close > 0 && b[close - 1] == b'\\';
        let key_end = if escaped { close - 1 } else { close };
        let Some(open) = b[..key_end].iter().rposition(|&c| c == b'"') else {
            continue;
        };
        let key = text.get(open + 1..key_end).unwrap_or("");
        if key.len() > 40 || key.is_empty() {
            continue;
        }
        let inherited = parent
            .filter(|&(_, end)| colon < end)
            .map(|(l, _)| l)
            .filter(|l| matches!(l, Label::Name | Label::Address | Label::Location))
            .filter(|_| matches!(key, "text" | "display"));
        // A FHIR reference's `display` (`{"reference": "Patient/1", "display": "..."}`) names
        // who is referred to.
        let reference = key == "display" && {
            let window = &b[open.saturating_sub(200)..open];
            let obj = window
                .iter()
                .rposition(|&c| c == b'{')
                .map_or(window, |p| &window[p..]);
            obj.windows(11).any(|w| w == b"\"reference\"")
                || obj.windows(11).any(|w| w == b"\\\"reference")
        };
        let inherited = inherited.or(reference.then_some(Label::Name));
        let Some(label) = key_label(key).or(inherited) else {
            continue;
        };
        let mut j = colon + 1;
        while j < b.len() && matches!(b[j], b' ' | b'\t' | b'\n' | b'\r') {
            j += 1;
        }
        // An object, or an array of objects: its own keys say what their values are.
        let mut first = j;
        if b.get(first) == Some(&b'[') {
            first += 1;
            while first < b.len() && matches!(b[first], b' ' | b'\t' | b'\n' | b'\r') {
                first += 1;
            }
        }
        if b.get(first) == Some(&b'{') {
            parent = Some((label, region_end(b, j)));
            continue;
        }
        if b.get(j) == Some(&b'[') {
            // An array: each string in it, up to the closing bracket.
            let mut at = j + 1;
            while at < b.len() && b[at] != b']' {
                match string_at(b, at, escaped) {
                    Some((vs, ve, next)) => {
                        value(text, vs, ve, label, out);
                        at = next;
                    }
                    None => at += 1,
                }
            }
            from = at.max(from);
        } else if let Some((vs, ve, next)) = string_at(b, j, escaped) {
            value(text, vs, ve, label, out);
            from = next.max(from);
        } else {
            // A bare number.
            let vs = j;
            let mut k = vs;
            while k < b.len() && (b[k].is_ascii_digit() || b[k] == b'-') {
                k += 1;
            }
            if k > vs {
                let v = text.get(vs..k).unwrap_or("");
                let ok = match label {
                    Label::Age => v.parse::<u32>().is_ok_and(|a| a >= 90),
                    Label::Name | Label::Address | Label::Url | Label::Email => false,
                    _ => v.len() >= 3,
                };
                if ok {
                    push(out, vs, k, label, 0.9);
                }
            }
        }
    }
}

/// Where the JSON object or array opening at `at` closes (after its bracket), counting
/// brackets outside strings; at most 8 KiB on (a longer or unclosed one ends there).
fn region_end(b: &[u8], at: usize) -> usize {
    let limit = (at + 8192).min(b.len());
    let mut depth = 0usize;
    let mut k = at;
    let mut in_str = false;
    while k < limit {
        match (in_str, b[k]) {
            (true, b'\\') => k += 1,
            (true, b'"') => in_str = false,
            (false, b'"') => in_str = true,
            (false, b'[' | b'{') => depth += 1,
            (false, b']' | b'}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return k + 1;
                }
            }
            _ => {}
        }
        k += 1;
    }
    limit
}

/// The string starting at `at` (`"..."`, or `\"...\"` when `escaped`): its content's range
/// and where to go on after it.
fn string_at(b: &[u8], at: usize, escaped: bool) -> Option<(usize, usize, usize)> {
    if escaped {
        if b.get(at..at + 2) != Some(b"\\\"") {
            return None;
        }
        let vs = at + 2;
        let mut k = vs;
        while k + 1 < b.len() && !(b[k] == b'\\' && b[k + 1] == b'"') {
            k += if b[k] == b'\\' { 2 } else { 1 };
        }
        let ve = k.min(b.len());
        Some((vs, ve, (ve + 2).min(b.len())))
    } else {
        if b.get(at) != Some(&b'"') {
            return None;
        }
        let vs = at + 1;
        let mut k = vs;
        while k < b.len() && b[k] != b'"' {
            k += if b[k] == b'\\' { 2 } else { 1 };
        }
        let ve = k.min(b.len());
        Some((vs, ve, (ve + 1).min(b.len())))
    }
}

/// Words that make a name value an organisation's.
const ORG_WORDS: [&str; 16] = [
    "medicine",
    "health",
    "healthcare",
    "care",
    "clinic",
    "hospital",
    "center",
    "centre",
    "medical",
    "pharmacy",
    "associates",
    "group",
    "llc",
    "inc",
    "practice",
    "services",
];

/// A string value under a key that says what it is.
fn value(text: &str, vs: usize, ve: usize, l: Label, out: &mut Vec<Span>) {
    let Some(v) = text.get(vs..ve) else {
        return;
    };
    let t = v.trim();
    let lead = v.len() - v.trim_start().len();
    // `Hannah Liebowitz, LCSW`: the name without the credential after it.
    let t = match t.rsplit_once(", ") {
        Some((name, cred))
            if l == Label::Name
                && (2..=6).contains(&cred.len())
                && cred.bytes().filter(u8::is_ascii_uppercase).count() >= 2
                && cred.bytes().all(|b| b.is_ascii_uppercase() || b == b'.') =>
        {
            name
        }
        _ => t,
    };
    let ok = match l {
        // Not an organisation's name (`<name>Eastowne Family Medicine</name>`).
        Label::Name => {
            t.chars().any(char::is_alphabetic)
                && t.len() <= 80
                && !t
                    .split([' ', ','])
                    .any(|w| ORG_WORDS.iter().any(|o| o.eq_ignore_ascii_case(w)))
        }
        // A namespace (`http://hl7.org/fhir/...`) or a word (`ombCategory`) is no web address.
        Label::Url => t.contains(['.', '/']) && !super::patterns::standards_url(t),
        Label::Id => t.len() >= 3 && t.bytes().any(|b| b.is_ascii_digit()),
        Label::Age => t.parse::<u32>().is_ok_and(|a| a >= 90),
        Label::Address => t.chars().any(|c| c.is_ascii_digit()) || t.len() > 3,
        _ => t.chars().any(|c| c.is_ascii_alphanumeric()),
    };
    if ok {
        push(out, vs + lead, vs + lead + t.len(), l, 0.9);
    }
}

/// `<family>Abernathy</family>`, `<postalCode>27514</postalCode>` (CDA, NCPDP SCRIPT and
/// other XML): an element holding only text, labelled by its name as a JSON key is (the
/// namespace prefix dropped). Found from each `</`, so the scan is linear.
fn xml(text: &str, out: &mut Vec<Span>) {
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(lt) = memchr_from(b, b'<', from) {
        from = lt + 1;
        if b.get(lt + 1) != Some(&b'/') {
            continue;
        }
        // `</name>`: the closing tag's name.
        let ns = lt + 2;
        let mut ne = ns;
        while ne < b.len()
            && ne - ns < 64
            && (b[ne].is_ascii_alphanumeric() || matches!(b[ne], b':' | b'_' | b'-' | b'.'))
        {
            ne += 1;
        }
        if ne == ns || b.get(ne) != Some(&b'>') {
            continue;
        }
        let name = text.get(ns..ne).unwrap_or("");
        // The text before it, back to the `>` of its opening tag, which must be `<name ...>`.
        let window = lt.saturating_sub(200);
        let Some(gt) = b[window..lt]
            .iter()
            .rposition(|&c| c == b'>' || c == b'<')
            .map(|p| window + p)
        else {
            continue;
        };
        if b[gt] != b'>' {
            continue;
        }
        // The opening tag, within 200 bytes (attributes included).
        let window = gt.saturating_sub(200);
        let Some(open) = b[window..gt]
            .iter()
            .rposition(|&c| c == b'<')
            .map(|p| window + p)
        else {
            continue;
        };
        let opening = text.get(open + 1..gt).unwrap_or("");
        if opening.split([' ', '\t', '\n']).next() != Some(name) {
            continue;
        }
        let local = name.rsplit(':').next().unwrap_or(name);
        if let Some(label) = key_label(local) {
            value(text, gt + 1, lt, label, out);
        }
    }
}

/// X12 (270/271 eligibility, 837 claims): segments end with `~`, elements are split by `*`.
/// A person's `NM1` (entity type 1) gives the last, first and middle names and, after `MI`,
/// the member id; `N3` the street, `N4` the city and ZIP, `DMG*D8` the birth date.
fn x12(text: &str, out: &mut Vec<Span>) {
    let mut seg_start = 0;
    for seg in text.split_inclusive('~') {
        let base = seg_start;
        seg_start += seg.len();
        let seg = seg.trim_end_matches('~');
        let lead = seg.len() - seg.trim_start().len();
        let seg = seg.trim_start();
        let base = base + lead;
        let mut els: Vec<(usize, &str)> = Vec::with_capacity(16);
        let mut at = 0;
        for e in seg.split('*') {
            els.push((base + at, e));
            at += e.len() + 1;
        }
        let el = |i: usize| els.get(i).copied();
        let mut mark = |i: usize, label: Label| {
            if let Some((s, e)) = el(i)
                && e.chars().any(char::is_alphanumeric)
            {
                push(out, s, s + e.len(), label, 0.9);
            }
        };
        match el(0).map(|(_, e)| e) {
            Some("NM1") if el(2).map(|(_, e)| e) == Some("1") => {
                for i in 3..=5 {
                    mark(i, Label::Name);
                }
                match el(8).map(|(_, e)| e) {
                    Some("MI") => mark(9, Label::HealthPlan),
                    Some("34") => mark(9, Label::Ssn),
                    Some("XX") => mark(9, Label::Id),
                    _ => {}
                }
            }
            Some("N3") => {
                mark(1, Label::Address);
                mark(2, Label::Address);
            }
            Some("N4") => {
                mark(1, Label::Location);
                mark(3, Label::Location);
            }
            Some("DMG") if el(1).map(|(_, e)| e) == Some("D8") => mark(2, Label::Date),
            // The interchange date (`ISA*...*250311*0915*...`), YYMMDD.
            Some("ISA") => mark(9, Label::Date),
            Some("DTP") if el(2).map(|(_, e)| e) == Some("D8") => mark(3, Label::Date),
            _ => {}
        }
    }
}

/// `user_id=u_5520931 mrn=30118846` (application logs, query strings): a `key=value` whose
/// key says what the value is, as a JSON key does. The value runs to a space, `&`, `,`, `;`
/// or a quote.
fn key_values(text: &str, out: &mut Vec<Span>) {
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(eq) = memchr_from(b, b'=', from) {
        from = eq + 1;
        let mut ks = eq;
        while ks > 0 && eq - ks < 40 && (b[ks - 1].is_ascii_alphanumeric() || b[ks - 1] == b'_') {
            ks -= 1;
        }
        if ks == eq {
            continue;
        }
        let key = text.get(ks..eq).unwrap_or("");
        let Some(label) = key_label(key).or_else(|| login_key(key).then_some(Label::Id)) else {
            continue;
        };
        let quoted = b.get(eq + 1) == Some(&b'"');
        let vs = eq + 1 + usize::from(quoted);
        let mut ve = vs;
        while ve < b.len()
            && ve - vs < 200
            && !(if quoted {
                b[ve] == b'"'
            } else {
                matches!(
                    b[ve],
                    b' ' | b'&' | b',' | b';' | b'"' | b'\n' | b'\t' | b'>'
                )
            })
        {
            ve += 1;
        }
        // `user=CORP\ahaddad`: the login without its domain.
        let vs = match text.get(vs..ve).and_then(|v| v.find('\\')) {
            Some(i) if label == Label::Id && i + 1 < ve - vs => vs + i + 1,
            _ => vs,
        };
        if ve > vs && login_key(key) {
            // A login names one person as surely as a number does (`user=dmcalister`),
            // digits or not.
            let v = text.get(vs..ve).unwrap_or("");
            if v.len() >= 3
                && v.bytes().any(|b| b.is_ascii_alphabetic())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                push(out, vs, ve, Label::Id, 0.85);
            }
            from = ve;
        } else if ve > vs {
            value(text, vs, ve, label, out);
            from = ve;
        }
    }
}

/// A log's key for a person's login (`user`, `username`, `login`, `operator`).
fn login_key(key: &str) -> bool {
    ["user", "username", "user_name", "login", "operator", "uid"]
        .iter()
        .any(|k| key.eq_ignore_ascii_case(k))
}

/// Pasted exports (`name,dob,phone,zip` then rows): a header line whose fields are mostly
/// keys that say what a value is (the JSON keys' words), then the lines below it with the
/// same separator, each field labelled by its column. Quoted fields (`"Khoury, N"`) are one.
fn csv(text: &str, out: &mut Vec<Span>) {
    // First, without allocating: is any line a plausible header (short, two separators or
    // more, no full stop)? Most messages have none.
    let plausible = text.split('\n').any(|l| {
        let b = l.as_bytes();
        b.len() <= 300
            && !b.contains(&b'.')
            && [b',', b';', b'\t', b'|']
                .iter()
                .any(|&c| b.iter().filter(|&&x| x == c).count() >= 2)
    });
    if !plausible {
        return;
    }
    let mut lines = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        lines.push((at, line.trim_end_matches(['\n', '\r'])));
        at += line.len();
    }
    let mut i = 0;
    while i < lines.len() {
        let (_, header) = lines[i];
        // Most lines are prose: a header is short, has no full stop and no long field.
        let hb = header.as_bytes();
        if hb.len() > 300 || hb.contains(&b'.') || hb.contains(&b'?') {
            i += 1;
            continue;
        }
        let Some(sep) = [b',', b';', b'\t', b'|']
            .into_iter()
            .find(|&c| hb.iter().filter(|&&x| x == c).count() >= 2)
            .map(char::from)
        else {
            i += 1;
            continue;
        };
        if fields(header, sep).any(|(_, f)| f.trim().len() > 30) {
            i += 1;
            continue;
        }
        let cols: Vec<Option<Label>> = fields(header, sep)
            .map(|(_, f)| {
                let f = f.trim().trim_matches('"');
                (f.len() <= 30).then(|| key_label(f)).flatten().or_else(|| {
                    // `first`, `last`, `zip` alone, as exports name them.
                    matches!(
                        f.to_ascii_lowercase().as_str(),
                        "first" | "last" | "given" | "family"
                    )
                    .then_some(Label::Name)
                })
            })
            .collect();
        let known = cols.iter().filter(|c| c.is_some()).count();
        // A header: three fields or more, at least two of them known keys, every field a
        // word (`a1c` is one; `1961-02-03` is a value, not a column's name).
        let worded = fields(header, sep).all(|(_, f)| {
            let f = f.trim().trim_matches('"');
            f.is_empty() || f.starts_with(|c: char| c.is_alphabetic() || c == '_')
        });
        if cols.len() < 3 || known < 2 || !worded {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while let Some(&(base, row)) = lines.get(j) {
            let cells: Vec<(usize, &str)> = fields(row, sep).collect();
            if row.trim().is_empty() || cells.len() + 1 < cols.len() || cells.len() > cols.len() + 1
            {
                break;
            }
            for ((off, cell), col) in cells.iter().zip(&cols) {
                let Some(l) = *col else { continue };
                let t = cell.trim();
                let t = t
                    .strip_prefix('"')
                    .and_then(|x| x.strip_suffix('"'))
                    .unwrap_or(t);
                if t.is_empty() {
                    continue;
                }
                let lead = cell.find(t).unwrap_or(0);
                let s = base + off + lead;
                let ok = match l {
                    Label::Age => t.parse::<u32>().is_ok_and(|a| a >= 90),
                    Label::Name => t.chars().any(char::is_alphabetic) && t.len() <= 80,
                    _ => t.chars().any(|c| c.is_ascii_alphanumeric()),
                };
                if ok {
                    push(out, s, s + t.len(), l, 0.85);
                }
            }
            j += 1;
        }
        i = j.max(i + 1);
    }
}

/// The fields of one line split at `sep` outside double quotes, each with its offset.
fn fields(line: &str, sep: char) -> impl Iterator<Item = (usize, &str)> {
    let mut start = 0;
    let mut quoted = false;
    let mut cuts = Vec::new();
    for (i, c) in line.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            cuts.push((start, &line[start..i]));
            start = i + c.len_utf8();
        }
    }
    cuts.push((start, &line[start..]));
    cuts.into_iter()
}

fn memchr_from(b: &[u8], needle: u8, from: usize) -> Option<usize> {
    b.get(from..)?
        .iter()
        .position(|&c| c == needle)
        .map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(t: &str) -> Vec<(String, Label)> {
        let mut out = Vec::new();
        hl7(t, &mut out);
        out.iter()
            .map(|s| (s.text(t).to_string(), s.label))
            .collect()
    }

    #[test]
    fn hl7_pid_fields() {
        let t = "MSH|^~\\&|EPIC|CLINIC|||20250314093000||ADT^A01|MSG00001|P|2.5\rPID|1||00123456^^^MRN^MR||DOE^JANE^Q||19800115|F|||12 Elm St^^Springfield^IL^62704||(555)555-1234|||||ACCT998877|123-45-6789";
        let s = spans(t);
        assert!(s.contains(&("00123456".into(), Label::Mrn)));
        assert!(s.contains(&("DOE".into(), Label::Name)));
        assert!(s.contains(&("JANE".into(), Label::Name)));
        assert!(s.contains(&("19800115".into(), Label::Date)));
        assert!(s.contains(&("12 Elm St".into(), Label::Address)));
        assert!(s.contains(&("Springfield".into(), Label::Location)));
        assert!(s.contains(&("62704".into(), Label::Location)));
        assert!(!s.iter().any(|(x, _)| x == "IL"));
        assert!(s.contains(&("(555)555-1234".into(), Label::Phone)));
        assert!(s.contains(&("ACCT998877".into(), Label::Account)));
        assert!(s.contains(&("123-45-6789".into(), Label::Ssn)));
        // The message's date-time, whole (no digit of the date left out under either
        // annotators' reading).
        assert!(s.contains(&("20250314093000".into(), Label::Date)));
    }

    #[test]
    fn json_keys() {
        let t = r#"{"patient_name": "Ana Ruiz", "dob": "1950-02-03", "mrn": 445566, "age": 93, "dose_mg": 10, "city": "Bend"}"#;
        let mut out = Vec::new();
        let doc_text = t;
        let lex = crate::lexicon::Lexicon::load();
        let doc = Text {
            text: doc_text,
            tokens: Vec::new(),
            cues: Vec::new(),
            feats: Vec::new(),
            lex: &lex,
            lower: t.to_ascii_lowercase(),
            seen: 0,
            lists: Default::default(),
        };
        json(&doc, &mut out);
        let s: Vec<(&str, Label)> = out.iter().map(|s| (s.text(t), s.label)).collect();
        assert!(s.contains(&("Ana Ruiz", Label::Name)));
        assert!(s.contains(&("1950-02-03", Label::Date)));
        assert!(s.contains(&("445566", Label::Mrn)));
        assert!(s.contains(&("93", Label::Age)));
        assert!(s.contains(&("Bend", Label::Location)));
        assert!(!s.iter().any(|(x, _)| *x == "10"));
    }
}

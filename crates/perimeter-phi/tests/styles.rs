//! Hand-made texts in styles the development corpus does not have (HL7, JSON, chat, fax cover
//! sheet, forwarded e-mail, spelled-out digits, lower-case names, names that are also words),
//! with the identifiers each must find and the look-alikes it must leave alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use perimeter_phi::{Engine, EngineConfig, Label, Span};

fn engine() -> Engine {
    Engine::new(EngineConfig::default()).unwrap()
}

/// Every letter and digit of `needle` (first occurrence) is covered by some span.
fn covered(text: &str, spans: &[Span], needle: &str) -> bool {
    let Some(at) = text.find(needle) else {
        panic!("test text lacks {needle:?}");
    };
    text[at..at + needle.len()]
        .char_indices()
        .filter(|(_, c)| c.is_alphanumeric())
        .all(|(i, _)| spans.iter().any(|s| s.start <= at + i && at + i < s.end))
}

/// No letter or digit of `needle` (first occurrence) is covered.
fn untouched(text: &str, spans: &[Span], needle: &str) -> bool {
    let Some(at) = text.find(needle) else {
        panic!("test text lacks {needle:?}");
    };
    text[at..at + needle.len()]
        .char_indices()
        .filter(|(_, c)| c.is_alphanumeric())
        .all(|(i, _)| !spans.iter().any(|s| s.start <= at + i && at + i < s.end))
}

fn label_of(text: &str, spans: &[Span], needle: &str) -> Option<Label> {
    let at = text.find(needle)?;
    spans
        .iter()
        .find(|s| s.start <= at && at < s.end)
        .map(|s| s.label)
}

fn check(text: &str, phi: &[&str], not_phi: &[&str]) -> Vec<Span> {
    let spans = engine().detect(text).unwrap();
    let shown: Vec<String> = spans
        .iter()
        .map(|s| format!("{}:{}", s.label, s.text(text)))
        .collect();
    for p in phi {
        assert!(
            covered(text, &spans, p),
            "missed {p:?} in {text:?}; found {shown:?}"
        );
    }
    for n in not_phi {
        assert!(
            untouched(text, &spans, n),
            "flagged {n:?} in {text:?}; found {shown:?}"
        );
    }
    // Sorted, disjoint, on char boundaries.
    for w in spans.windows(2) {
        assert!(w[0].end <= w[1].start);
    }
    for s in &spans {
        assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
    }
    spans
}

#[test]
fn hl7_v2_message() {
    let t = "MSH|^~\\&|LAB|NORTHCLINIC|||20250314093000||ORU^R01|MSG0042|P|2.5\r\
PID|1||A7781234^^^NC^MR||KOWALCZYK^MAGDALENA^J||19470822|F|||418 Birch Hollow Rd^^Marquette^MI^49855||906-555-0187|||||88120455|512-33-9081\r\
PV1|1|O|||||1234567^OKAFOR^CHIDI^^^DR|||||||||||V99812\r\
OBX|1|NM|4548-4^HbA1c^LN||7.2|%|4.0-5.6|H|||F|||20250313";
    let spans = check(
        t,
        &[
            "A7781234",
            "KOWALCZYK",
            "MAGDALENA",
            "19470822",
            "418 Birch Hollow Rd",
            "Marquette",
            "49855",
            "906-555-0187",
            "512-33-9081",
            "OKAFOR",
            "CHIDI",
            "20250313",
        ],
        &["HbA1c", "7.2", "4.0-5.6"],
    );
    assert_eq!(label_of(t, &spans, "KOWALCZYK"), Some(Label::Name));
    assert_eq!(label_of(t, &spans, "19470822"), Some(Label::Date));
}

#[test]
fn json_payload() {
    let t = r#"{"event":"portal_message","patient":{"first_name":"Oluwaseun","last_name":"Adeyemi-Barros","dob":"1938-11-02","mrn":"MR-5521907","phone":"+1 (312) 555-0143","address":{"line1":"77 Quarry Ln Apt 3","city":"Evanston","zip":"60201"}},"age":94,"text":"Can I take ibuprofen 400 mg with my lisinopril?","icd10":"E11.9"}"#;
    let spans = check(
        t,
        &[
            "Oluwaseun",
            "Adeyemi-Barros",
            "1938-11-02",
            "MR-5521907",
            "+1 (312) 555-0143",
            "77 Quarry Ln Apt 3",
            "Evanston",
            "60201",
            "94",
        ],
        &["ibuprofen", "400 mg", "E11.9", "lisinopril"],
    );
    assert_eq!(label_of(t, &spans, "Oluwaseun"), Some(Label::Name));
    assert_eq!(label_of(t, &spans, "94"), Some(Label::Age));
}

#[test]
fn chat_transcript() {
    let t = "[09:14] Agent: Hi, thanks for contacting the clinic. Who am I speaking with?\n\
[09:14] Visitor: hi its priya raghunathan, my dob is 4/9/1952\n\
[09:15] Agent: Thanks Priya. How can I help?\n\
[09:15] Visitor: my husband Tomasz needs his metformin 500 mg refilled, pharmacy is on Maple Ave in Kalamazoo\n\
[09:16] Agent: I hope he feels better. Will you pick it up on Tuesday?";
    check(
        t,
        &[
            "priya raghunathan",
            "4/9/1952",
            "Priya",
            "Tomasz",
            "Kalamazoo",
        ],
        &["09:14", "hope", "Will", "Tuesday", "metformin", "500 mg"],
    );
}

#[test]
fn fax_cover_sheet() {
    let t = "FAX COVER SHEET\nTo: Dr. Henrietta Vasquez-Oyelaran\nFax: (614) 555-0199\nFrom: Lakeshore Family Medicine\nPhone: 614-555-0100\nDate: March 3, 2025\nRe: Dwayne O'Shaughnessy, DOB 07/30/1931, MRN 00418827\nPages: 4\nPatient is 93 years old, BP 130/85, A1c 7.2. Please see attached records.";
    let spans = check(
        t,
        &[
            "Henrietta Vasquez-Oyelaran",
            "(614) 555-0199",
            "614-555-0100",
            "March 3, 2025",
            "Dwayne O'Shaughnessy",
            "07/30/1931",
            "00418827",
            "93",
        ],
        &["130/85", "7.2", "Pages: 4"],
    );
    assert_eq!(label_of(t, &spans, "(614) 555-0199"), Some(Label::Fax));
}

#[test]
fn forwarded_email() {
    let t = "---------- Forwarded message ---------\nFrom: Marisol Etxeberria <m.etxeberria@fastmail.com>\nDate: Mon, Feb 10, 2025 at 8:12 AM\nSubject: question about my mom\nTo: <frontdesk@clinic.example>\n\nHi, my mother Ingrid Solberg (she is 96) was seen on 1/28 by Dr Nakamura. She lives at 2201 Ridgeview Terrace, Unit 12, Duluth, MN 55811. Her member ID is XGH448120937.\nThanks,\nMarisol";
    check(
        t,
        &[
            "Marisol Etxeberria",
            "m.etxeberria@fastmail.com",
            "Feb 10, 2025",
            "frontdesk@clinic.example",
            "Ingrid Solberg",
            "96",
            "1/28",
            "Nakamura",
            "2201 Ridgeview Terrace, Unit 12",
            "Duluth",
            "55811",
            "XGH448120937",
        ],
        &["8:12 AM", "MN"],
    );
}

#[test]
fn spelled_out_digits_voicemail() {
    let t = "hi this is desmond okonkwo calling back my number is six one seven, five five five, zero one four two and my date of birth is march fourth nineteen fifty. thanks bye";
    check(
        t,
        &[
            "desmond okonkwo",
            "six one seven, five five five, zero one four two",
        ],
        &["thanks bye"],
    );
}

#[test]
fn lower_case_names_and_word_names() {
    let t = "hey dr patel, this is grace from 3b. my son Will has a fever of 101. I hope it is nothing. Rose Whitfield is his grandma. grace period for the bill ends friday.";
    check(
        t,
        &["patel", "grace", "Will", "Rose Whitfield"],
        &["hope", "grace period", "friday", "101"],
    );
}

#[test]
fn precision_traps() {
    let t = "Dx: Parkinson's disease and Bell's palsy, E11.9, CPT 99213. Taking Ativan 0.5 mg and Lipitor 20 mg. BP 130/85, A1c 7.2, weight 180 lbs. She is 84. Seen in 2023 at Riverside Family Medicine on a Tuesday at 10:30 AM. Lives in Texas, USA.";
    check(
        t,
        &[],
        &[
            "Parkinson",
            "Bell",
            "E11.9",
            "99213",
            "Ativan",
            "Lipitor",
            "130/85",
            "7.2",
            "180",
            "84",
            "2023",
            "Riverside",
            "Tuesday",
            "10:30",
            "Texas",
            "USA",
        ],
    );
}

#[test]
fn identifiers_with_validators() {
    let t = "Card 4111 1111 1111 1111, Medicare 1EG4-TE5-MK73, VIN 1M8GDM9AXKP042788, IP 2001:db8::8a2e:370:7334 and 192.168.10.4, site https://example.org/p/123, last 4 SSN 6789.";
    let spans = check(
        t,
        &[
            "4111 1111 1111 1111",
            "1EG4-TE5-MK73",
            "1M8GDM9AXKP042788",
            "2001:db8::8a2e:370:7334",
            "192.168.10.4",
            "https://example.org/p/123",
            "6789",
        ],
        &[],
    );
    assert_eq!(label_of(t, &spans, "1EG4"), Some(Label::HealthPlan));
    assert_eq!(
        label_of(t, &spans, "1M8GDM9AXKP042788"),
        Some(Label::Vehicle)
    );
    assert_eq!(label_of(t, &spans, "2001:db8"), Some(Label::Ip));
    assert_eq!(label_of(t, &spans, "6789"), Some(Label::Ssn));
}

#[test]
fn size_limit_is_a_clear_error() {
    let e = Engine::new(EngineConfig {
        max_message_bytes: 10,
        ..EngineConfig::default()
    })
    .unwrap();
    let err = e.detect("this text is longer than ten bytes").unwrap_err();
    assert_eq!(
        err,
        perimeter_phi::PhiError::MessageTooLarge { size: 34, max: 10 }
    );
    assert!(!err.to_string().contains("longer"));
}

#[test]
fn assorted_notes_and_headers() {
    let t = "Maria called yesterday about her refill. Spoke w/ pt's wife Ewa.\n\
Appt w/ Dr. K. Nguyen on Thurs 3/5 at 2:30pm. Mr. and Mrs. Delacroix will both attend.\n\
Pt is a 92-year-old female, 95yo per chart, age: 97. Her brother is 45.\n\
ZIP: 10022. Apt. 5B, 300 E 57th St. Call 555-0199 or text 917 555 0134.\n\
Seen in March of 2024 and again 3rd of March. Next visit Mar. 3rd.\n\
From: \"Okafor, Chinedu\" <cokafor@gmail.com>\n\
Sent: Tuesday, April 8, 2025 9:14 AM\n\
sorry its hana again lol. can u tell dr reyes my bp is 150/95 and my a1c was 8.1\n\
- Love, Bernadette\n\
serial no. ABC-99812-Z; license plate 7XYZ123; my npi is 1234567893";
    let spans = check(
        t,
        &[
            "Maria",
            "Ewa",
            "K. Nguyen",
            "3/5",
            "Delacroix",
            "92",
            "95",
            "97",
            "10022",
            "300 E 57th St",
            "555-0199",
            "917 555 0134",
            "March of 2024",
            "3rd of March",
            "Mar. 3rd",
            "Okafor, Chinedu",
            "cokafor@gmail.com",
            "April 8, 2025",
            "hana",
            "reyes",
            "Bernadette",
            "ABC-99812-Z",
            "7XYZ123",
            "1234567893",
        ],
        &[
            "2:30pm", "45", "Tuesday", "9:14 AM", "150/95", "8.1", "Love",
        ],
    );
    assert_eq!(label_of(t, &spans, "92-year"), Some(Label::Age));
    assert_eq!(label_of(t, &spans, "7XYZ123"), Some(Label::Vehicle));
    assert_eq!(label_of(t, &spans, "1234567893"), Some(Label::License));
}

#[test]
fn unlisted_towns_speaker_labels_and_short_spelled_numbers() {
    let t = "Xiomara: hi is the clinic open?\nAgent: yes until 5\nXiomara: ok my MRN is one two three four five\nAgent: thanks. Mail goes to 12 Elm St, Smallville, KS 66002. Callback five five five dash one two one two.";
    let spans = check(
        t,
        &[
            "Xiomara",
            "one two three four five",
            "12 Elm St",
            "Smallville",
            "66002",
            "five five five dash one two one two",
        ],
        &["Agent", "until 5", "KS"],
    );
    assert_eq!(label_of(t, &spans, "one two three"), Some(Label::Mrn));
    assert_eq!(label_of(t, &spans, "Smallville"), Some(Label::Location));
}

#[test]
fn clinical_prose_is_left_alone() {
    let t = "Patient reports chest pain 7/10 since this morning. Took 2 tabs of Tylenol 500 mg at 8:00. Hx of Graves' disease, Hashimoto's thyroiditis, and Down syndrome.\n\
Labs: Na 138, K 4.1, Cr 1.2, glucose 145, WBC 11.2. ICD-10 I10, E78.5. CPT 99214 billed. Follow up in 2 weeks.\n\
The Mayo Clinic protocol was used. Discussed with Cleveland Clinic. Epic MyChart message sent. COVID-19 vaccine given.\n\
I hope the Will of God is done. Grace period ends on Friday. Faith and hope helped me. Rose petals. Mark my words.\n\
She is 89 years old and weighs 140 lbs. He turned 65 last year. Blood pressure 120/80. Room 204. Suite 300.\n\
Take 1/2 tablet twice daily. Version 2.0.1.4 of the app. Step 2 of 5.\n\
Metformin ER 1000mg, Ozempic 0.5mg weekly, Eliquis 5 mg BID, Januvia, Humira Pen, Synthroid 75 mcg.";
    let spans = engine().detect(t).unwrap();
    let shown: Vec<String> = spans
        .iter()
        .map(|s| format!("{}:{}", s.label, s.text(t)))
        .collect();
    assert!(spans.is_empty(), "flagged {shown:?}");
}

#[test]
fn international_phones_bare_urls_and_day_ordinals() {
    let t = "call me on +44 20 7946 0958 or +49 (30) 123 4567; see facebook.com/jane.doe.77 (not example.com). appt on the 3rd at 4pm, born Mar-02-1950.";
    let spans = check(
        t,
        &[
            "+44 20 7946 0958",
            "+49 (30) 123 4567",
            "facebook.com/jane.doe.77",
            "3rd",
            "Mar-02-1950",
        ],
        &["example.com", "4pm"],
    );
    assert_eq!(label_of(t, &spans, "+44"), Some(Label::Phone));
    assert_eq!(label_of(t, &spans, "facebook"), Some(Label::Url));
}

#[test]
fn names_that_are_words_in_name_slots() {
    let t = "Message from: Bill Young re: his daughter April. Call back 312-555-0148.\n\
FYI - Sunny called. She said Dawn would pick up the meds. Ask for Hope at the front desk.\n\
Dear Mrs. Park, your son Hunter is due for his vaccines. Sincerely, Nurse Bell\n\
I can't make it. Will call later. Mark\n\
we saw dr. lee and nurse kim today. my grandson tyler is doing better.\n\
Patient Name: LE, VAN THI  Sex: F  DOB: 01/02/1930  Age: 94";
    check(
        t,
        &[
            "Bill Young",
            "April",
            "312-555-0148",
            "Sunny",
            "Dawn",
            "Hope",
            "Park",
            "Hunter",
            "Bell",
            "Mark",
            "lee",
            "kim",
            "tyler",
            "LE, VAN THI",
            "01/02/1930",
            "94",
        ],
        &["Will call", "front desk", "Sex: F"],
    );
}

#[test]
fn lower_case_names_with_particles() {
    check(
        "yes hi um this is jörg-peter dos santos my number is three one two five five five zero one nine nine",
        &[
            "jörg-peter dos santos",
            "three one two five five five zero one nine nine",
        ],
        &["yes hi um"],
    );
}

#[test]
fn compact_birth_date_outside_hl7() {
    let t = "DOB: 19800115, acct 20240102";
    let spans = check(t, &["19800115", "20240102"], &[]);
    assert_eq!(label_of(t, &spans, "19800115"), Some(Label::Date));
    assert_eq!(label_of(t, &spans, "20240102"), Some(Label::Account));
}

#[test]
fn json_escaped_free_text() {
    let t = r#"{"channel":"portal","body":"Hi Dr. Okafor,\nmy daughter Zainab has a fever since 3/2.\nThanks,\nAdaeze Nwosu\n555-201-3344"}"#;
    let spans = check(
        t,
        &["Okafor", "Zainab", "3/2", "Adaeze Nwosu", "555-201-3344"],
        &["portal", "fever"],
    );
    // The escape is not part of the name.
    let name = spans.iter().find(|s| s.text(t).contains("Nwosu")).unwrap();
    assert_eq!(name.text(t), "Adaeze Nwosu");
}

/// The held-out set's miss families (lower-case self-introductions and signatures, word-names
/// in name slots, initial + surname, `St.` surnames, `Last, First` opening a line, lower-case
/// towns), written afresh with other names, towns and phrasing, so the rules are tested
/// beyond the set they were found on.
#[test]
fn generalised_name_and_town_shapes() {
    check(
        "gretchen halvorsen here, running 10 min behind",
        &["gretchen halvorsen"],
        &["running"],
    );
    check("ok see u thurs!! -gretchen", &["gretchen"], &["thurs"]);
    check(
        "could Destiny drop off the forms tomorrow?",
        &["Destiny"],
        &["forms", "tomorrow"],
    );
    check(
        "please ask Ivy (my sister) to bring my inhaler",
        &["Ivy"],
        &["sister", "inhaler"],
    );
    check(
        "The refill is for K. Nakamura. Thanks",
        &["K. Nakamura"],
        &["refill"],
    );
    check(
        "My father, Ambrose St. Vincent, is 91 now",
        &["Ambrose St. Vincent", "91"],
        &["father"],
    );
    check(
        "Referred by Dr. St. Vincent last week",
        &["St. Vincent"],
        &["last week"],
    );
    check(
        "Lindqvist, Henrik called about the invoice",
        &["Lindqvist, Henrik"],
        &["invoice"],
    );
    check(
        "we just moved. i live in kalamazoo near the hospital",
        &["kalamazoo"],
        &["hospital", "moved"],
    );
}

/// Look-alikes of those shapes that are not names: a sentence-initial word and an acronym, a
/// form label ending in an acronym, a state code after a town, words after `in` that are
/// ordinary words, `St.` in an address, lower-case words before `here`.
#[test]
fn generalised_shapes_keep_precision() {
    check("Said EOB is wrong, please fix", &[], &["Said EOB"]);
    check("Provider NPI: see attached", &[], &["Provider NPI"]);
    check(
        "12 Elm St. Dayton OH 45402",
        &["12 Elm St", "Dayton", "45402"],
        &["OH"],
    );
    check("i was in bed all day, in pain", &[], &["bed", "pain"]);
    check("stuff here - anyone there?", &[], &["stuff"]);
    check(
        "I hope you can help. Grace period ends soon",
        &[],
        &["hope", "Grace period"],
    );
}

/// Ages over 89 in the shapes the second hand-annotated set (`tests/data/styles_b.txt`)
/// showed missing, tried on other words and numbers: after a form label on its own line,
/// spelled out, set off by a comma after a name or a relative.
#[test]
fn generalised_ages() {
    let t = check("Patient: Okafor, Chidi\nAge: 97\nSex: M", &["97"], &["Sex"]);
    assert_eq!(
        label_of("Patient: Okafor, Chidi\nAge: 97\nSex: M", &t, "97"),
        Some(Label::Age)
    );
    check(
        "her dad is ninety-two and lives alone",
        &["ninety-two"],
        &[],
    );
    check(
        "Grandpa turned a hundred and one in May",
        &["a hundred and one"],
        &[],
    );
    check("mom is aged ninety, hard of hearing", &["ninety"], &[]);
    check("Seen today: Tadeusz Wrobel, 92, for a fall.", &["92"], &[]);
    check("my grandmother, 99, needs a ride", &["99"], &[]);
    check(
        "pt, 91. seen for a fall; her sister, 93, came along",
        &["91", "93"],
        &[],
    );
}

/// Look-alikes of those ages: a year spelled out, ages under 90, a number after a common
/// word or a dose, a number that goes on.
#[test]
fn generalised_ages_keep_precision() {
    check("born in nineteen ninety four", &[], &["ninety four"]);
    check("he is 45, she is eighty", &[], &["45", "eighty"]);
    check("Total, 92. Thanks, 95.", &[], &["92", "95"]);
    check("BP 130/85, 92.", &[], &["92"]);
    check("Room Smith, 91.5 degrees", &[], &["91.5"]);
    check(
        "the copay is ninety dollars, the wait is a hundred minutes, the bill is 95 bucks",
        &[],
        &["ninety", "a hundred", "95"],
    );
}

/// Other shapes from that set: a day after a weekday (`Tues the 21st`), rural delivery
/// addresses, the date of an ISO 8601 date-time (not its time), a relative's lower-case name
/// that is no dictionary word.
#[test]
fn generalised_days_routes_timestamps_and_relatives() {
    check(
        "can we do Tues the 21st or sat the 25th?",
        &["21st", "25th"],
        &["Tues", "sat"],
    );
    check("Mail to RR 1 Box 7, Hilo", &["RR 1 Box 7"], &[]);
    check(
        "mailing: rural route 12, box 330",
        &["rural route 12, box 330"],
        &[],
    );
    let text = r#"{"sent":"2024-12-31T23:59:59Z"}"#;
    let t = check(text, &["2024-12-31"], &["23:59:59Z"]);
    assert_eq!(label_of(text, &t, "2024"), Some(Label::Date));
    let text = "my date of birth is one two oh four nineteen eighty, and my number is";
    let t = check(text, &["one two oh four nineteen eighty"], &["number"]);
    assert_eq!(label_of(text, &t, "one two"), Some(Label::Date));
    check(
        "DOB zero seven one one sixty two please",
        &["zero seven one one sixty two"],
        &["please"],
    );
    check("our son tobechukwu has a rash", &["tobechukwu"], &["rash"]);
    check("my wife ngozika, she's worried", &["ngozika"], &[]);
}

/// Look-alikes: SMS shorthand and ordinary words after a relative, a relative without `my`.
#[test]
fn generalised_relatives_keep_precision() {
    check("my daughter tmrw is fine", &[], &["tmrw"]);
    check("my son gonna call", &[], &["gonna"]);
    check("his mother gets confused", &[], &["gets", "confused"]);
    check("the son xyzzyq is", &[], &["xyzzyq"]);
}

/// The families the third set (`tests/data/styles_c.*`) showed missing, each tried on other
/// names, numbers and towns than the set's: spelled-out surnames, chat speaker labels, a
/// lone initial signing, relatives' lower-case two-word names and names after `of`, HL7
/// name components in any segment, JSON arrays and escaped JSON, OCR spacing in faxes,
/// spoken dates, extensions and addresses, rural routes, unit and grid addresses, places
/// named again, after an organisation or before a country.
#[test]
fn generalised_third_set_shapes() {
    check(
        "this is marek that's n o w i c k i calling back",
        &["n o w i c k i"],
        &["calling"],
    );
    check(
        "surname is D-U-B-R-O-V-S-K-Y, thanks",
        &["D-U-B-R-O-V-S-K-Y"],
        &[],
    );
    check(
        "message for ivy b a r r a g a n about her refill",
        &["ivy b a r r a g a n"],
        &["refill"],
    );
    check(
        "[9:01 AM] Zofia (Billing): Hello!\n[9:02 AM] Customer: hi\nAgent Tamsin: Sure.\nFront Desk (Oksana): Done.",
        &["Zofia", "Tamsin", "Oksana"],
        &["Billing", "Customer", "Front Desk"],
    );
    check(
        "Support · Radomir · 4:10 PM\nWe got it.",
        &["Radomir"],
        &["Support"],
    );
    check("see attached, thanks\n-J\n", &["J"], &["attached"]);
    check(
        "my dad wiremu tawhiri cant sleep",
        &["wiremu tawhiri"],
        &["sleep"],
    );
    check(
        "i'm the daughter of ikaika kahale he's sick",
        &["ikaika kahale"],
        &["sick"],
    );
    check("my sister Oluchi's baby", &["Oluchi"], &["baby"]);
    check(
        "PID|1||7781^^^H^MR||NAKAMURA^KENJI^T||19620404|M\nAIP|1||4477123^ODUYA^FEMI^^^^MD|PT\nPV1|1|O|CL^1||||5566778^BRANDT^ELKE^R^^^DR",
        &["NAKAMURA^KENJI^T", "ODUYA^FEMI", "BRANDT^ELKE^R"],
        &["MD|PT", "DR"],
    );
    check(
        r#"{"name":{"family":"Ibarra","given":["Maite","Lur"]},"address":{"line":["9 Elk Ct","Apt 2"]}}"#,
        &["Ibarra", "Maite", "Lur", "9 Elk Ct", "Apt 2"],
        &[],
    );
    check(
        r#"{"payload":"{\"dob\":\"1931-05-06\",\"age\":94,\"site\":\"https://x.example.org/p/77?id=5\"}"}"#,
        &["1931-05-06", "94", "https://x.example.org/p/77?id=5"],
        &["payload"],
    );
    let text = r#"{"a":"https://x.example.org/c/1","b":"https://x.example.org/r/2"}"#;
    let t = check(text, &["https://x.example.org/c/1"], &[]);
    assert!(t.iter().all(|s| !s.text(text).contains('"')), "{t:?}");
    check(
        "PATIENT :  OKORO, CHIDI     DOB :  1977 - 04 - 09\nPhone :  312 . 555 . 0147   Fax (312) 555 - 0148",
        &[
            "OKORO, CHIDI",
            "1977 - 04 - 09",
            "312 . 555 . 0147",
            "(312) 555 - 0148",
        ],
        &["PATIENT", "DOB"],
    );
    check(
        "call 3 1 2 - 5 5 5 - 0 1 9 0 today",
        &["3 1 2 - 5 5 5 - 0 1 9 0"],
        &["today"],
    );
    check("DOB:   03 / 22 / 1944", &["03 / 22 / 1944"], &[]);
    check(
        "my birthday is four nine nineteen fifty one okay and call two one seven five five five zero one four four extension three two",
        &[
            "four nine nineteen fifty one",
            "two one seven five five five zero one four four extension three two",
        ],
        &["okay"],
    );
    check(
        "we moved on the 3rd of June and saw her on the eleventh of may",
        &["3rd of June", "eleventh of may"],
        &["moved"],
    );
    check(
        "he lives at seven oh two maple ridge drive apartment nine",
        &["seven oh two maple ridge drive apartment nine"],
        &[],
    );
    check(
        "mail goes to Rte 4 Box 77 or Hopi Route 3 Box 18",
        &["Rte 4 Box 77", "Route 3 Box 18"],
        &[],
    );
    check(
        "at W7710 Town Hall Rd N, Merrill, WI and 3550 S 2700 W, Lot 9, Taylorsville, UT",
        &[
            "W7710 Town Hall Rd N",
            "3550 S 2700 W, Lot 9",
            "Merrill",
            "Taylorsville",
        ],
        &[],
    );
    check(
        "She lives at 4 Pine St, 3rd floor, Brockton, and visits Brockton Mondays",
        &["4 Pine St, 3rd floor", "Brockton"],
        &["Mondays"],
    );
    let text = "PO Box 9, Ganado AZ 86505. She works at the Ganado clinic.";
    let t = check(text, &["Ganado"], &["clinic"]);
    let mentions = t.iter().filter(|s| s.text(text) == "Ganado").count();
    assert_eq!(mentions, 2, "{t:?}");
    check("log-in from Lyon, France", &["Lyon"], &["France"]);
    check("we are in pipestone county now", &["pipestone county"], &[]);
    check(
        "Claimant:   FIFITA , SIONE 'OFA",
        &["FIFITA , SIONE 'OFA"],
        &[],
    );
    check("Patient: Lâm, Thu Hà", &["Lâm, Thu Hà"], &[]);
    let text = "towed: plate NY KLM 2290, and my licence is 44 019 872 (Ohio)";
    // (`NY` is still taken as part of a name `NY KLM` and cut down to itself: precision only.)
    let t = check(text, &["KLM 2290", "44 019 872"], &["Ohio"]);
    assert_eq!(label_of(text, &t, "KLM"), Some(Label::Vehicle));
    assert_eq!(label_of(text, &t, "44 019"), Some(Label::License));
    check("plate 8-XRT-331 is mine", &["8-XRT-331"], &["mine"]);
    check("her grandma Tevita Fonua (97!) fell", &["97"], &["fell"]);
    check(
        "moved to 8 Elm St, 2nd floor, New Britain, CT",
        &["New Britain"],
        &["CT"],
    );
    check("at 9 Oak Rd, Cedar Falls, IA", &["Cedar Falls"], &["IA"]);
    check("a sign-in from Porto, Portugal", &["Porto"], &["Portugal"]);
    check("paid with card ending 3391 today", &["3391"], &["today"]);
    check(
        "first name ludmila, last name ostrowska",
        &["ludmila", "ostrowska"],
        &[],
    );
}

/// Look-alikes of the rules above that must stay untouched.
#[test]
fn generalised_third_set_keep_precision() {
    check("press a b c on the keypad", &[], &["a b c", "keypad"]);
    check("Name: \nPages: 3\nSex: F", &[], &["Name", "Pages", "Sex"]);
    check("Prescriber DEA: none", &[], &["Prescriber DEA"]);
    check(
        "OBX|1|NM|2345-7^GLUCOSE^LN||182|mg/dL|70-99|H\nRXA|0|1|20250101||70618^Penicillin^RXNORM",
        &[],
        &["GLUCOSE", "70-99", "Penicillin", "RXNORM"],
    );
    check("K 5.9 may be high", &[], &["5.9 may"]);
    check(
        "born in nineteen ninety four",
        &[],
        &["nineteen ninety four"],
    );
    check("we met at Suite 300 downstairs", &[], &["Suite 300"]);
    check(
        "take two tablets at one more road stop",
        &[],
        &["two tablets"],
    );
    check("my mom said it hurts", &[], &["said", "hurts"]);
    check("Mercy West Pharmacy, Springfield office", &[], &["Mercy"]);
    check(
        "started Zubsolv 8mg and Brilinta 90 mg",
        &[],
        &["Zubsolv", "Brilinta"],
    );
    check("PV1|1|O|ORTHO^3^1||||", &[], &["ORTHO"]);
    check(
        "Prescriber: Imani Oduya\nGuarantor: Tevita Fonua",
        &["Imani Oduya", "Tevita Fonua"],
        &["Prescriber", "Guarantor"],
    );
    check("P.003/004  Dear Dr. Lim,", &["Lim"], &["004", "Dear"]);
    check("TSH 6.8 ref 0.35-5.50 mIU/L", &[], &["0.35-5.50"]);
    check(
        r#"{"template":"welcome_v2","bg_mg_dl":212}"#,
        &[],
        &["welcome_v2", "212"],
    );
    check("SSN: XXX-XX-1234", &["1234"], &["XXX-XX"]);
    check("dr imoh said to rest", &["imoh"], &["said"]);
    check("Obrigada, Inês", &["Inês"], &["Obrigada"]);
    check(
        "his Spanish is good, referred to urology",
        &[],
        &["Spanish", "urology"],
    );
    check(
        "plate is fine, licence renewal due",
        &[],
        &["fine", "renewal"],
    );
    check("the new city office (92 pages)", &[], &["92"]);
    check("first name only please", &[], &["only"]);
}

/// Families the fourth set's first half (`tests/data/styles_d1.txt`, written blind) showed
/// missing, tried on other words: Spanish dates,
/// digits and ages, kin words of other languages, `tell`/`ask for` before a name, a middle
/// initial after `Last, First`, grouped member and chart numbers after their cue, phones
/// broken by ellipses, county roads and lettered boxes, places after `past`, `en` or a `#`
/// unit, `age of`, an apostrophe year.
#[test]
fn generalised_fourth_set_shapes() {
    check(
        "tiene cita el 4 de febrero; nació el 9 de julio de 1931 y tiene noventa y dos años",
        &["4 de febrero", "9 de julio de 1931", "noventa y dos"],
        &["cita"],
    );
    check(
        "mi número es ocho uno ocho, tres tres dos, cero nueve uno uno",
        &["ocho uno ocho, tres tres dos, cero nueve uno uno"],
        &["número"],
    );
    check(
        "she is 96 años old, abuela Remedios",
        &["96", "Remedios"],
        &[],
    );
    check("kuya Arnel will pick me up", &["Arnel"], &["pick"]);
    check(
        "can you tell marisela, and ask for Dawn",
        &["marisela", "Dawn"],
        &[],
    );
    check("Pt: OKONJO, RITA M.  MRN 4471", &["OKONJO, RITA M."], &[]);
    check(
        "Member ID: ZKH 551 902 774 DOB 1/2/1950; chart number CHR 0031 66",
        &["ZKH 551 902 774", "CHR 0031 66"],
        &["DOB"],
    );
    check(
        "call 712... 555... 0143 tonight",
        &["712... 555... 0143"],
        &["tonight"],
    );
    check(
        "it's 2210 County Road 14 now, mail to Rt. 3 Box 12-B",
        &["2210 County Road 14", "Rt. 3 Box 12-B"],
        &["mail"],
    );
    check("he lives out past Tahlequah", &["Tahlequah"], &[]);
    check("vivimos en Porterville", &["Porterville"], &[]);
    check("14 Birch St #5, Somerville", &["Somerville"], &[]);
    check("died at the age of 97 last week", &["97"], &["last"]);
    check(
        "born June 2nd, '44 in a storm",
        &["June 2nd, '44"],
        &["storm"],
    );
}

/// Look-alikes of the fourth set's rules.
#[test]
fn generalised_fourth_set_keep_precision() {
    check("tiene 45 años y dos hijos", &[], &["45", "dos"]);
    check("tell them the truth, ask for help", &[], &["them", "help"]);
    check("the lola dress and 3 de 4 pills", &[], &["lola", "3 de 4"]);
    check("the past year en route", &[], &["year", "route"]);
    check("the age of the building", &[], &["building"]);
    check(
        "la hija de Doña Marisol Arriaga; pitit fi Manmi Claudette",
        &["Marisol Arriaga", "Claudette"],
        &["Doña", "Manmi"],
    );
    check(
        "Callback: 218-555-0100\nCB: 320.555.0199\nStairs: 4 steps",
        &[],
        &["Callback", "CB", "Stairs"],
    );
    check(
        "I'm at my son Oleksandr's place",
        &["Oleksandr"],
        &["place"],
    );
}

/// Families the fourth set's second half (`tests/data/styles_d2.txt`, measured blind before
/// these rules) showed missing, tried on other words: pasted CSV exports read by their
/// header, a name label's value in dictionary words, letters spelled with commas and
/// `as in`, an introduced word-name before a verb in -ing, a quoted speaker label, `LAST,FIRST`
/// without a space, a name in its own script after it, in-laws, Broadway and full
/// directional words, lettered county roads and boxes, `City:` and `County:` labels.
#[test]
fn generalised_fourth_set_second_half() {
    let text = "last,first,dob,phone,zip,last_a1c\nVang,Tou,1961-02-03,612-555-0101,55106,7.1\n\"Lor, K\",,1970-05-06,612-555-0102,55117,8.2";
    let t = check(
        text,
        &["Vang", "Tou", "612-555-0101", "55106", "Lor, K", "55117"],
        &["7.1", "8.2", "last_a1c"],
    );
    assert_eq!(label_of(text, &t, "55106"), Some(Label::Location));
    check(
        "Name (Last): Little Bear\nName (First): Winona",
        &["Little Bear", "Winona"],
        &[],
    );
    check(
        "that's j as in juliet, e, s, s, i, c, a and the last name d, apostrophe, a, r, c, y",
        &[
            "j as in juliet, e, s, s, i, c, a",
            "d, apostrophe, a, r, c, y",
        ],
        &["last name"],
    );
    check("hi this is grace calling about", &["grace"], &["calling"]);
    check("> Tavita: is my refill in?", &["Tavita"], &["refill"]);
    check(
        "Patient: MARKARYAN,ARMEN K  DOB 1/2/1950",
        &["MARKARYAN,ARMEN K"],
        &["DOB"],
    );
    check(
        "for Kenji Watanabe (渡辺 健二) and",
        &["Kenji Watanabe", "渡辺 健二"],
        &[],
    );
    check("my son-in-law Vartan can call", &["Vartan"], &["call"]);
    check(
        "at 2290 Broadway, 4th Floor and 77 Elm Road West, apt 2",
        &["2290 Broadway, 4th Floor", "77 Elm Road West, apt 2"],
        &[],
    );
    check(
        "W2210 County Rd KK or Rte 2 Box 14B",
        &["W2210 County Rd KK", "Rte 2 Box 14B"],
        &[],
    );
    check(
        "Street: 12 Oak St\nCity: Fennimore   State: WI\nCounty: Grant",
        &["Fennimore", "Grant"],
        &["WI"],
    );
}

/// Look-alikes of the second half's rules.
#[test]
fn generalised_fourth_set_second_half_keeps_precision() {
    check("qty,dose,route\n30,10 mg,PO", &[], &["30", "10 mg", "PO"]);
    check("Name: \nCity: \nthe city: big", &[], &["big"]);
    check("this is going to hurt", &[], &["going"]);
    check("press a, b or c", &[], &["a, b"]);
}

/// HL7's compact date-times are one DATE each, time included (writers differ on whether the
/// time belongs to it; covering it leaves no digit of the date out either way), and a 12- or
/// 14-digit date-time is never taken for a card or an account.
#[test]
fn compact_date_times_are_dates_whole() {
    let text = "MSH|^~\\&|RIS|STB|EHR|STB|20250603143055||ORU^R01|R1|P|2.5\nSCH|||^^30^202507080930^202507081000|";
    let t = check(
        text,
        &["20250603143055", "202507080930", "202507081000"],
        &["ORU", "2.5"],
    );
    assert!(
        t.iter()
            .all(|s| s.label == Label::Date || !s.text(text).starts_with("2025")),
        "{t:?}"
    );
    check("visit 202513011200 is no date", &[], &["no date"]);
}

/// Families the fourth set's last third (`tests/data/styles_d3.txt`, measured blind first)
/// showed missing, tried on other words: a day after `the`, a month and year, phones with a
/// spoken extension after a comma or an area code in digits, an address read out, a box
/// letter after a space, expressways, nickname labels, `city / zip` labels.
#[test]
fn generalised_fourth_set_last_third() {
    check(
        "can we do the 22nd? or the twenty third",
        &["22nd", "twenty third"],
        &[],
    );
    check(
        "records from 11/2019 to present",
        &["11/2019"],
        &["present"],
    );
    check(
        "call three one two, five five five, oh one four four, extension nine",
        &["three one two, five five five, oh one four four, extension nine"],
        &[],
    );
    check(
        "or my cell 312 five five five oh one four four",
        &["312 five five five oh one four four"],
        &[],
    );
    check(
        "send it to m dot okafor at yahoo dot com please",
        &["m dot okafor at yahoo dot com"],
        &["please"],
    );
    check(
        "mail to Route 4 Box 22 C in town",
        &["Route 4 Box 22 C"],
        &["town"],
    );
    check("at 88 N Gateway Expy, Mesa", &["88 N Gateway Expy"], &[]);
    check(
        "Nickname: Bobo\nCity / ZIP: Yuma 85364",
        &["Bobo", "Yuma"],
        &[],
    );
}

/// Look-alikes of the last third's rules.
#[test]
fn generalised_fourth_set_last_third_keeps_precision() {
    check(
        "on the 3rd floor for the 2nd dose, the first time, the 4th of them",
        &[],
        &["3rd", "2nd", "first", "4th"],
    );
    check("he scored 3/2019 points", &[], &[]);
    check("meet me at the mall", &[], &["at the mall"]);
}

/// Words kept out of the stop and kin lists because they are names too: `Lola`, `Tito`,
/// `Yung`, and the surnames `English` and `French`.
#[test]
fn kin_words_and_languages_that_are_names_stay_names() {
    check(
        "Patient: Lola Whitcomb; Dr. French and Dr. English saw Tito Ramos with Anh Yung",
        &["Lola Whitcomb", "French", "English", "Tito Ramos", "Yung"],
        &["Patient"],
    );
}

/// `doc` is a title, and a verb after a title is no name.
#[test]
fn a_title_then_a_verb_is_no_name() {
    check(
        "the doc said it's fine, dr says rest",
        &[],
        &["said", "says"],
    );
    check("Hi po Doc Bautista!", &["Bautista"], &["Doc"]);
}

/// A language after `language:` or `speaks` is no surname (`English`, `French` are ones).
#[test]
fn a_language_after_its_label_is_no_name() {
    check(
        "Primary language: English\nHe speaks French",
        &[],
        &["English", "French"],
    );
}

/// Spoken digits with a caller's fillers between them are one number.
#[test]
fn spoken_digits_with_fillers() {
    check(
        "call me back at eight one two, uh, five five five, um, zero one nine nine thanks",
        &["eight one two, uh, five five five, um, zero one nine nine"],
        &["thanks"],
    );
    check("one, uh, moment please", &[], &["moment"]);
}

/// An ASR voicemail in lower case: `niner`, `double four` and `triple five` digits, a ZIP
/// read out after its state, a town before its state or after `lane in`, a place of two
/// words after `in`, letters and digits read out after an identifier cue, a spoken PO box,
/// a unit with its letter, an extension in number words, a spoken e-mail with an initial
/// and number words, a two-word year, ages said as words.
#[test]
fn lower_case_voicemail_read_out() {
    let t = "my address its fourteen twenty two north alder street apartment six b beaverton \
             oregon nine seven zero zero six my medicare number is two r w five q eight three n k \
             four four and my chart number is p four four zero one nine two i had a visit call \
             me at five oh three two two seven double four one eight or two oh eight triple \
             five one nine two oh or two zero six five five five zero one four seven extension \
             two twelve email mtillery eighty two at gmail dot com or t becerra at outlook dot \
             com mail goes to p o box seventy one twelve sandpoint idaho";
    let spans = check(
        t,
        &[
            "fourteen twenty two north alder street apartment six b",
            "beaverton",
            "nine seven zero zero six",
            "two r w five q eight three n k four four",
            "p four four zero one nine two",
            "five oh three two two seven double four one eight",
            "two oh eight triple five one nine two oh",
            "two zero six five five five zero one four seven extension two twelve",
            "mtillery eighty two at gmail dot com",
            "t becerra at outlook dot com",
            "p o box seventy one twelve",
            "sandpoint",
        ],
        &["oregon", "idaho", "had a visit", "call"],
    );
    assert_eq!(
        label_of(t, &spans, "nine seven zero"),
        Some(Label::Location)
    );
    assert_eq!(label_of(t, &spans, "two r w"), Some(Label::HealthPlan));
    assert_eq!(label_of(t, &spans, "p four four"), Some(Label::Mrn));
    check(
        "she lives at thirty one oak hollow court in greer south carolina and he is at forty \
         two sugar maple lane in jasper and my son is in mount vernon",
        &["greer", "jasper", "mount vernon"],
        &["south carolina"],
    );
    check(
        "born the tenth of april thirty five she turned one oh two and he'll be ninety five \
         on his birthday",
        &["tenth of april thirty five", "one oh two", "ninety five"],
        &["birthday"],
    );
    // Facilities named after a place, and an `F` after a labelled age, are what they seem.
    let t = "moving to cedar ridge rehab. Age  94  F  and Beatrix Olumide (103 F) temp 101 F";
    let spans = check(t, &["94", "103"], &["cedar ridge", "101"]);
    assert_eq!(label_of(t, &spans, "94"), Some(Label::Age));
    // Lower-case names after a caller's cues.
    check(
        "doctor nwachukwu calling for james pruitt, and on behalf of our client shaniqua bell \
         for my grandmother ruby ellsworth she is fine, a hundred and one year old female \
         agnes whitcombe",
        &[
            "james pruitt",
            "shaniqua bell",
            "ruby ellsworth",
            "agnes whitcombe",
        ],
        &["calling", "behalf", "client", "female"],
    );
    check(
        "calling for a refill and calling about my appointment",
        &[],
        &["refill", "appointment"],
    );
    // A town before a state's postal code in lower case, and the ZIP after it; a code that
    // is also a word is left alone.
    check(
        "we moved to boone nc 28607 last week, my sister is in tulsa ok and we love jackson ms!",
        &["boone", "28607", "jackson"],
        &["nc", "ok", "ms", "week"],
    );
}

/// Machine-made payloads: XML elements by their names, X12 segments, `key=value` logs,
/// FHIR's nested names and references, an XTN phone with its area code, compact date-times
/// whole, web-server log dates; and what is no one's: standards' namespaces, NDC drug
/// codes, HL7 tables, X12 guides, XML element names, organisations' names, credentials.
#[test]
fn machine_payloads_by_their_structure() {
    let t = "<patient><name><given>Hollis</given><family>Abernathy</family></name>\
             <addr><streetAddressLine>12 Weaver Rd</streetAddressLine><city>Chapel Hill</city>\
             <postalCode>27514</postalCode></addr></patient><NewRx><name>Eastowne Family \
             Medicine</name></NewRx><time value=\"20240528091500\"/>";
    let spans = check(
        t,
        &[
            "Hollis",
            "Abernathy",
            "12 Weaver Rd",
            "Chapel Hill",
            "27514",
            "20240528091500",
        ],
        &["NewRx", "Eastowne Family Medicine", "patient"],
    );
    assert_eq!(label_of(t, &spans, "27514"), Some(Label::Location));
    let t = "ISA*00*          *00*          *ZZ*AVAILITY       *ZZ*MERCYCLIN      *250311*0915*^*00501*000004471*0*P*:~ST*271*0001*005010X279A1~NM1*IL*1*DELACROIX*MARGUERITE****MI*W270118845~N3*1420 ESPLANADE AVE APT 6~N4*NEW ORLEANS*LA*701163011~DMG*D8*19301127*F~";
    let spans = check(
        t,
        &[
            "250311",
            "DELACROIX",
            "MARGUERITE",
            "W270118845",
            "1420 ESPLANADE AVE APT 6",
            "NEW ORLEANS",
            "701163011",
            "19301127",
        ],
        &["005010X279A1", "AVAILITY"],
    );
    assert_eq!(label_of(t, &spans, "W270118845"), Some(Label::HealthPlan));
    check(
        "ts=2025-03-12 msg=\"login success\" user_id=u_5520931 mrn=30118846 \
         [12/Mar/2025:08:14:55 -0500]",
        &["u_5520931", "30118846", "12/Mar/2025"],
        &["login", "0500"],
    );
    let t = r#"{"resourceType":"Patient","meta":{"versionId":"4"},"name":[{"use":"official","family":"Lindqvist","given":["Astrid"]}],"contact":[{"name":{"text":"Karin Lindqvist-Hale"}}],"address":[{"use":"home","line":["2715 Minnehaha Ave"],"district":"Hennepin"}],"identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"622-41-9910"}],"subject":{"reference":"Patient/1","display":"NAGY, ERZSEBET"},"provider":{"name":"Hannah Liebowitz, LCSW"},"url":"ombCategory"}"#;
    check(
        t,
        &[
            "Lindqvist",
            "Astrid",
            "Karin Lindqvist-Hale",
            "2715 Minnehaha Ave",
            "Hennepin",
            "622-41-9910",
            "NAGY, ERZSEBET",
            "Hannah Liebowitz",
        ],
        &[
            "official",
            "use",
            "home",
            "hl7.org",
            "versionId\":\"4",
            "LCSW",
            "ombCategory",
        ],
    );
    check(
        "PID|1||48213907^^^MRN||BRENNAN^SEAMUS||19400203|M|||||^PRN^PH^^1^802^5550162\n\
         RXE|^BID^^20250219|00378-0018-01^Warfarin 5 mg tab^NDC\nNK1|1|ROSALES^ANA|MTH^Mother^HL70063",
        &["802^5550162", "19400203"],
        &["00378-0018-01", "HL70063", "Warfarin"],
    );
    check(
        "Store #10418  NDC 68180-0513-01  Message-ID: <CAF8x2+Qm0Lw@mail.gmail.com>",
        &[],
        &["68180-0513-01", "CAF8x2"],
    );
}

/// Texts' addresses in lower case: the town after the street (or before the ZIP), numbers in
/// groups a few words after their cue, a filler inside a typed number, digits one by one
/// after a cue, a lower-case signature of two words, a Portuguese title.
#[test]
fn texts_lower_case_towns_and_numbers() {
    check(
        "new address 55 ocean pkwy apt 6f brooklyn 11218. we moved to 3412 s othello st unit \
         204 seattle! yes minneapolis 55454 is right",
        &["brooklyn", "11218", "seattle", "minneapolis", "55454"],
        &["moved", "right"],
    );
    let t = "his medicaid # its WQ 88 21 07 3C and her medi-cal card, number was 9182 0447 3A ok";
    let spans = check(t, &["WQ 88 21 07 3C", "9182 0447 3A"], &["ok"]);
    assert_eq!(label_of(t, &spans, "9182"), Some(Label::HealthPlan));
    check(
        "best callback? 704 uhh 918 2265. And the Rx number? 6 0 4 4 8 1 2 thanks",
        &["704 uhh 918 2265", "6 0 4 4 8 1 2"],
        &["thanks"],
    );
    check(
        "my old one its 919 555 0126 - hunter reyes",
        &["hunter reyes"],
        &[],
    );
    check("sou filho da dona Cida, ela caiu", &["Cida"], &["filho"]);
    // A number in groups without its cue, and a sign-off of words, stay as they are.
    check(
        "we had 3 4 5 6 people - see you soon",
        &[],
        &["3 4 5 6", "see you soon"],
    );
}

/// Numbers read out half in digits (a transcriber writes some groups as digits), identifiers
/// read out with `as in`, and the look-alikes: counts and times in a voicemail.
#[test]
fn spoken_numbers_mixed_with_digits() {
    let t = "hey its about my refill you can reach me at six two six 418 oh two nine seven \
             or at work 3 1 2 five five five oh one four four, i take 2 pills at 8";
    let spans = check(
        t,
        &[
            "six two six 418 oh two nine seven",
            "3 1 2 five five five oh one four four",
        ],
        &["2 pills", "at 8"],
    );
    assert_eq!(label_of(t, &spans, "418"), Some(Label::Phone));
    check(
        "call me back at four four zero 7 1 3 nine eighty one twelve thanks",
        &["four four zero 7 1 3 nine eighty one twelve"],
        &["thanks"],
    );
    let t = "my member id is w as in whiskey q 4 4 1 8 three zero two and my chart number is \
             5 5 two one oh nine";
    let spans = check(
        t,
        &[
            "w as in whiskey q 4 4 1 8 three zero two",
            "5 5 two one oh nine",
        ],
        &[],
    );
    assert_eq!(label_of(t, &spans, "whiskey"), Some(Label::HealthPlan));
    assert_eq!(label_of(t, &spans, "5 5 two"), Some(Label::Mrn));
    check(
        "we need one 2 more chairs and three 4 5 minute slots",
        &[],
        &["one 2 more", "three 4 5"],
    );
}

/// A scanned form read by OCR: digits read as letters (`O`, `l`, `I`) and letters as digits,
/// which the patterns must read through; the words around them stay as they are.
#[test]
fn ocr_letters_for_digits() {
    let t = "PATlENT lNTAKE (scan)\nName: Kaczmarek, Wiesława  DOB: O4/l7/l949\nPhone: (4l3) \
             5O2-9l84  Zip: Ol1O3\nMember lD: QHT 7O2 44l 9O\nAllergies: none  Room: B2";
    let spans = check(
        t,
        &[
            "Kaczmarek, Wiesława",
            "O4/l7/l949",
            "(4l3) 5O2-9l84",
            "Ol1O3",
            "QHT 7O2 44l 9O",
        ],
        &["Allergies", "none", "B2"],
    );
    assert_eq!(label_of(t, &spans, "O4/l7"), Some(Label::Date));
    assert_eq!(label_of(t, &spans, "(4l3)"), Some(Label::Phone));
    // Clean text that merely has `O2` and `Il` in it is not re-read into identifiers.
    check(
        "On 2L O2 via nasal cannula, Il-6 pending, Type II DM",
        &[],
        &["2L O2", "Il-6", "Type II"],
    );
}

/// Exports and reports: `LAST, FIRST` in capitals in a column, `Last^First` outside HL7,
/// `Surname, I` with an initial; and capitals that are not names.
#[test]
fn table_cells_last_first() {
    check(
        "ACCT      NAME                  DOB       BAL\n\
         400112093 OSTERGAARD, LISBETH   19510302  120.00\n\
         400112177 QUARLES, DONOVAN R    19770611  0.00\n\
         400113020 MBEKI, T              19880904  45.10",
        &["OSTERGAARD, LISBETH", "QUARLES, DONOVAN R", "MBEKI, T"],
        &["ACCT", "BAL", "NAME"],
    );
    check(
        "RX 881204 | VELLANKI^PRIYA | metformin 500 mg | READY\nRX 881205 | Okoro, C  | \
         lisinopril 10 mg | HOLD",
        &["VELLANKI^PRIYA", "Okoro, C"],
        &["metformin", "READY", "HOLD"],
    );
    check(
        "CHIEF COMPLAINT: PAIN, CHEST  ONSET: SUDDEN\nGLUCOSE^LN  NORMAL, STABLE",
        &[],
        &["PAIN, CHEST", "GLUCOSE^LN", "NORMAL, STABLE"],
    );
}

/// Letters from abroad: national numbers with their trunk `0`, UK, Canadian and Australian
/// postcodes, and dates as `the 9th of March 2024`; and what is none of these.
#[test]
fn international_numbers_postcodes_and_prose_dates() {
    let t = "Dear Sir, my aunt lives at 14 Priory Lane, Ripon HG4 1DX and her landline is \
             01765 602 118; my mobile 07911 123 456. My cousin in Brisbane: (07) 3369 4410, \
             Paddington QLD 4064. The letter is dated the 9th of March 2024 and her scan was \
             on the 3rd of this month at 3 PM, B12 shot given.";
    let spans = check(
        t,
        &[
            "HG4 1DX",
            "01765 602 118",
            "07911 123 456",
            "(07) 3369 4410",
            "4064",
            "9th of March 2024",
            "3rd",
        ],
        &["3 PM", "B12 shot", "QLD"],
    );
    assert_eq!(label_of(t, &spans, "HG4"), Some(Label::Location));
    assert_eq!(label_of(t, &spans, "07911"), Some(Label::Phone));
    check(
        "New address: 88 Lakeshore Rd E, Mississauga ON L5G 1E2. Lagos line 0803 555 0192.",
        &["L5G 1E2", "0803 555 0192"],
        &[],
    );
    // Doses, lot numbers and codes that look a little like them stay.
    check(
        "Take 0.5 mg at 08 00 and 20 00. Lot 0012 334 expires. Code A1C 7.2 today.",
        &[],
        &["0.5 mg", "0012 334", "A1C 7.2"],
    );
}

/// Staff text: initials with a credential, chat exports with several time stamps on one
/// line and lower-case display names, nicknames inside a name, logins in audit logs.
#[test]
fn staff_chat_credentials_nicknames_and_logins() {
    check(
        "Handoff: K. Osei RN -> D. Varga LPN, pt in 12B stable",
        &["K. Osei", "D. Varga"],
        &["RN", "LPN", "12B", "stable"],
    );
    check(
        "[9:02 AM] tamsin k: is bed 4 clean? [9:03 AM] oduya: yes [9:04 AM] System: message \
         deleted",
        &["tamsin k", "oduya"],
        &["System", "bed 4"],
    );
    check(
        "Re: my late husband, Robert \"Bobby\" Kincannon, and my son Thaddeus (Tad) Wolcott",
        &["Robert \"Bobby\" Kincannon", "Thaddeus (Tad) Wolcott"],
        &["husband"],
    );
    let t = "2026-03-12T09:14:03 evt=CHART_OPEN user=HOSP\\bkowalsky role=RN dept=5E";
    let spans = check(t, &["bkowalsky"], &["CHART_OPEN", "HOSP", "5E"]);
    assert_eq!(label_of(t, &spans, "bkowalsky"), Some(Label::Id));
}

/// Towns abroad in prose (the built-in list has the larger cities of every country), and
/// towns whose names are common words, which stay words.
#[test]
fn towns_abroad_in_prose() {
    check(
        "My brother in Chennai may ring, and my niece flew in from Quezon City last week; we \
         were leaving Tucson on Friday. It was a nice visit, most of it reading.",
        &["Chennai", "Quezon City", "Tucson"],
        &["nice visit", "most", "reading", "Friday"],
    );
}

/// Ages over 89 in words after a person's name or `turn`, and in an export's row after the
/// sex's cell; a card's last four after `ending`; addresses that open with a flat, unit or
/// plot; and numbers that are none of these.
#[test]
fn ages_card_endings_and_unit_first_addresses() {
    let t = "re: pt Ignatius Pell, ninety-two, and his sister will turn one hundred in May. \
             Refund to Visa ending 4417.\nROW | PELL^IGNATIUS | M | 92 | 4W | 88 | 3E";
    let spans = check(t, &["ninety-two", "one hundred", "4417", "92 |"], &["88 |"]);
    assert_eq!(label_of(t, &spans, "ninety-two"), Some(Label::Age));
    assert_eq!(label_of(t, &spans, "4417"), Some(Label::Account));
    check(
        "She lives at Flat 3, 27 Kingsley Road, Ripon; post to Unit 4/18 Jacaranda Street or \
         space 12 at 11840 SE Foster Rd Spc 44. The order was 4 units, ending in 2 weeks.",
        &[
            "Flat 3, 27 Kingsley Road",
            "Unit 4/18 Jacaranda Street",
            "11840 SE Foster Rd Spc 44",
        ],
        &["4 units", "2 weeks"],
    );
}

/// Speech-to-text writes digits that sound like words as the words (`for` 4, `too` 2, `ate`
/// 8, `won` 1); a transcript's pauses (`...`) between groups; `g like golf`. Prose with the
/// same words is left alone.
#[test]
fn transcribed_digits_that_sound_like_words() {
    let t = "hi its me again call me back at five five five three for too one oh oh eight \
             thanks. or my cell for one to five five five oh eight eight too. confirmation \
             number G like golf 7 7 2 1 9 [00:21] call me 9 1 7 ... 4 4 2 ... 0 6 6 3 ok bye";
    let spans = check(
        t,
        &[
            "five five five three for too one oh oh eight",
            "for one to five five five oh eight eight too",
            "G like golf 7 7 2 1 9",
            "9 1 7 ... 4 4 2 ... 0 6 6 3",
        ],
        &["thanks", "ok bye"],
    );
    assert_eq!(
        label_of(t, &spans, "five five five three"),
        Some(Label::Phone)
    );
    check(
        "I need to go to two stores for four days, then one to one with the nurse for two \
         hours to eight.",
        &[],
        &[
            "to two stores for four days",
            "one to one",
            "two hours to eight",
        ],
    );
}

/// Dates in the other languages patients write in, and the calendar forms of Vietnamese,
/// Chinese, Japanese and Korean; a day and a number that are not a date stay unmarked.
#[test]
fn dates_in_other_languages() {
    check(
        "Maman est rentrée le 5 mai, née le 12 décembre 1947. Geburtstag 5. März 1961. \
         nasceu em 12 de março de 1950. urodzona 14 lutego 1958. дата рождения 3 мая 1941, \
         был на приёме 28 января у доктора. sinh ngày 23 tháng 9 năm 1988. born \
         1972年3月8日, 1985년 3월 5일. I take 5 mai tai pills, 2 out of 3 days.",
        &[
            "5 mai,",
            "12 décembre 1947",
            "5. März 1961",
            "12 de março de 1950",
            "14 lutego 1958",
            "3 мая 1941",
            "28 января",
            "23 tháng 9 năm 1988",
            "1972年3月8日",
            "1985년 3월 5일",
        ],
        &["2 out of 3"],
    );
}

/// iCalendar and vCard text: the components are not names, and a date-time's date is a
/// date while its time of day is not.
#[test]
fn calendar_and_vcard_components() {
    let t = "BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nDTSTART;TZID=America/New_York:\
             20260311T094000\nDTSTAMP:20260304T211500Z\nSUMMARY:Follow-up\nBEGIN:VALARM\n\
             TRIGGER:-PT24H\nEND:VALARM\nEND:VEVENT\nEND:VCALENDAR\nBEGIN:VCARD\nEND:VCARD";
    let spans = check(
        t,
        &["20260311", "20260304"],
        &[
            "VCALENDAR",
            "VEVENT",
            "VALARM",
            "TRIGGER",
            "VCARD",
            "094000",
            "211500Z",
        ],
    );
    assert_eq!(label_of(t, &spans, "20260311"), Some(Label::Date));
}

/// Numbers after a generic `ID` or `#` of a rep, interpreter or employee, tracking and
/// booking references; a generic `ID` after a cue that says what the number is keeps that
/// cue's label; logins named in prose and help-desk chats; a chat's `User:` label and words
/// after `username` are not logins.
#[test]
fn generic_ids_and_logins_in_prose() {
    let t = "Spoke w/ rep Kendra (rep ID A7Q31). Interpreter Widline ID 307714, interp \
             #51190. Emp #044120. Medicaid ID W400017384. booking reference K7QX2M, tracking \
             9400 1118 9922 3817 4420 17. Portal username: peggyosh47. Username \
             jwashington_clt. your login is mreyes.77 ok. Bot: enter your username. User: \
             whunter85 Bot: sent. User: yes please. I forgot my username and password.";
    let spans = check(
        t,
        &[
            "A7Q31",
            "307714",
            "51190",
            "044120",
            "W400017384",
            "K7QX2M",
            "9400 1118 9922 3817 4420 17",
            "peggyosh47",
            "jwashington_clt",
            "mreyes.77",
            "whunter85",
        ],
        &["yes please", "and password", "Bot"],
    );
    assert_eq!(label_of(t, &spans, "W400017384"), Some(Label::HealthPlan));
    assert_eq!(label_of(t, &spans, "307714"), Some(Label::Id));
}

/// A month on its own after `since`, `in`, `last`... or `~` is a date; one that begins a
/// fuller date or a name is left to those.
#[test]
fn months_on_their_own() {
    let t = "PT visits since January. Cushion last replaced ~Nov. Ordered new. Fevers since \
             Feb. 28 and back in March of 2019; since April Nguyen came. I will march in May.";
    let spans = check(
        t,
        &[
            "January",
            "Nov",
            "Feb. 28",
            "March of 2019",
            "April Nguyen",
            "May",
        ],
        &[],
    );
    assert_eq!(label_of(t, &spans, "January"), Some(Label::Date));
    assert_eq!(label_of(t, &spans, "April Nguyen"), Some(Label::Name));
    let t2 = "We march on. The marchers went in. Mayor Lee spoke.";
    check(t2, &[], &["march on", "marchers", "Mayor"]);
}

/// Lower-case names with particles after an introduction, `Jun` after a title, a name
/// after `named`, and towns after French and Portuguese prepositions.
#[test]
fn particles_titles_and_prepositions_abroad() {
    let t = "hi um yes this is pauline de la cruz calling. To whom it may concern: Mr. Jun \
             Takahashi was seen on Jun 1, 2026. I talked to someone named kevin who said it \
             was fine. Maman est chez elle à Villeurbanne; minha mãe mora em Campinas.";
    let spans = check(
        t,
        &[
            "pauline de la cruz",
            "Jun Takahashi",
            "kevin",
            "Villeurbanne",
            "Campinas",
        ],
        &["calling", "said"],
    );
    assert_eq!(label_of(t, &spans, "Jun 1"), Some(Label::Date));
    assert_eq!(label_of(t, &spans, "Villeurbanne"), Some(Label::Location));
}

/// `LAST, FIRST` in capitals before a note in parentheses; a six-digit postcode after a
/// listed town, but not a LOINC code after a state's abbreviation.
#[test]
fn capital_last_first_and_six_digit_postcodes() {
    let t = "lab trend for GRIEVE, ANNIKA (00781146). Address: near Koregaon Park, Pune 411001, \
             Maharashtra.\nOBX|1|NM|4548-4^Hemoglobin A1c^LN||7.2|%";
    let spans = check(t, &["GRIEVE, ANNIKA", "411001"], &["4548-4", "7.2"]);
    assert_eq!(label_of(t, &spans, "411001"), Some(Label::Location));
}

/// Street addresses in other languages' forms, a vCard's escaped comma before the unit, a
/// pager's `#` extension and a number dialled from abroad with `00`; a drug's NDC, a record
/// number's zeros and prose with the same words are left alone.
#[test]
fn addresses_and_numbers_abroad() {
    let t = "Endereço: Rua Doutor Arnaldo, 455 - apto 12, São Paulo. chez ma fille (4580 rue \
             Saint-Denis, app. 7). vive en Calle Libertad 1842. ADR;TYPE=WORK:;;1101 Madison \
             St\\, Suite 900;Seattle;WA;98104\nPager 847.555.0100 #2241. call me on 0049 171 \
             5530284 please. NDC 00378-7185-01, MRN 00123456. el corso di 3 ore.";
    let spans = check(
        t,
        &[
            "Rua Doutor Arnaldo, 455 - apto 12",
            "4580 rue Saint-Denis, app. 7",
            "Calle Libertad 1842",
            "1101 Madison St\\, Suite 900",
            "847.555.0100 #2241",
            "0049 171 5530284",
        ],
        &["00378-7185-01", "corso di 3 ore"],
    );
    assert_eq!(label_of(t, &spans, "0049"), Some(Label::Phone));
    assert_eq!(label_of(t, &spans, "00123456"), Some(Label::Mrn));
}

/// A vCard's address line read by its fields: street and extended address, locality and
/// postal code; the region and the country are not PHI.
#[test]
fn vcard_address_fields() {
    let t = "BEGIN:VCARD\nVERSION:4.0\nFN:Rosa Quintero\nADR;TYPE=WORK:;;2 N. Clark St.;Chicago;\
             IL;60602;US\nEND:VCARD";
    let spans = check(
        t,
        &["Rosa Quintero", "2 N. Clark St.", "Chicago", "60602"],
        &["IL;", "US"],
    );
    assert_eq!(label_of(t, &spans, "Chicago"), Some(Label::Location));
    assert_eq!(label_of(t, &spans, "2 N. Clark"), Some(Label::Address));
}

/// A caller's filler between an introduction and the name, a spoken date with its year in
/// digits, and a fixed-width export's surname and given-name columns.
#[test]
fn fillers_spoken_dates_with_years_and_name_columns() {
    let t = "hi this is uh marty kowalczyk calling, her date of birth is august ninth 1931 ok\n\
             ACCT       NAME            FIRST   DOB\n\
             0040021887 PETRAKIS        HARLAN  19560830\n\
             TOTAL      DUE             NOW     0";
    let spans = check(
        t,
        &["marty kowalczyk", "august ninth 1931", "PETRAKIS", "HARLAN"],
        &["calling", "TOTAL", "DUE", "NOW"],
    );
    assert_eq!(label_of(t, &spans, "august ninth 1931"), Some(Label::Date));
}

/// A licence number whose board writes a prefix and the number a dot apart, and a device's
/// GS1 UDI in its human-readable form; decimals and versions stay what they are.
#[test]
fn dotted_licences_and_gs1_udis() {
    let t = "State license MD.0412263, pharmacist lic 036.118204, Lic. No.5512034. Pump UDI \
             (01)00884521356437(17)281130(10)A23B(21)SN7781230 placed 3/2/2025. \
             A1c 7.2, app v2.14.1, dose 0.5 mg.";
    let spans = check(
        t,
        &[
            "MD.0412263",
            "036.118204",
            "(01)00884521356437(17)281130(10)A23B(21)SN7781230",
            "3/2/2025",
        ],
        &["7.2", "2.14.1", "0.5", "No."],
    );
    assert!(covered(t, &spans, "5512034"));
    assert_eq!(label_of(t, &spans, "MD.0412263"), Some(Label::License));
    assert_eq!(label_of(t, &spans, "036.118204"), Some(Label::License));
    assert_eq!(label_of(t, &spans, "(01)0088"), Some(Label::Device));
}

/// A form-encoded SMS webhook's numbers in E.164 form, with their `%2B` (the `+`).
#[test]
fn url_encoded_e164_numbers() {
    let t = "From=%2B15035550123&To=%2B18005550100&Body=refill";
    let spans = check(
        t,
        &["%2B15035550123", "%2B18005550100"],
        &["From", "refill"],
    );
    assert_eq!(label_of(t, &spans, "15035550123"), Some(Label::Phone));
    assert_eq!(label_of(t, &spans, "18005550100"), Some(Label::Phone));
}

/// An attachment's file name read in its parts: a patient's name and a date between
/// underscores; an e-mail address or a variable with an underscore is no file name.
#[test]
fn names_and_dates_in_file_names() {
    let t = "Uploaded Scan_Okafor_Chidi_03142026.pdf and IMG_20260312_142201.jpg today. \
             Write to lina_harb@outlook.com; set max_retries=3 in the config.";
    check(
        t,
        &[
            "Okafor",
            "Chidi",
            "03142026",
            "20260312",
            "lina_harb@outlook.com",
        ],
        &["Uploaded", "Scan", "today", "max_retries", "config"],
    );
}

/// A licence number after `lic.` and a therapist's credentials after the name.
#[test]
fn licence_abbreviation_and_therapy_credentials() {
    let t = "Lucía Ferreira, PT, DPT, lic. #301447. Seen by Jo Park PT and Sam Ortiz OTR today.";
    let spans = check(
        t,
        &["Lucía Ferreira", "301447", "Jo Park", "Sam Ortiz"],
        &["OTR", "today"],
    );
    assert_eq!(label_of(t, &spans, "301447"), Some(Label::License));
    assert!(untouched(t, &spans, "PT and"));
}

//! The gateway against a real HTTP vendor on loopback (a fake that records every byte).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use perimeter_gateway::{
    AiPurpose, CallOutcome, Caller, ClinicalAdvice, DataClass, GatewayError, HttpSettings,
    Released, Reply, UpstreamError,
};
use perimeter_phi::Vault;
use serde_json::{Value, json};
use support::*;

fn corpus_request(text: &str, stream: bool) -> Value {
    let args = serde_json::to_string(&json!({"note": text, "list": [text]})).unwrap();
    json!({
        "model": MODEL,
        "stream": stream,
        "user": text,
        "metadata": {"note": text},
        "messages": [
            {"role": "system", "content": text},
            {"role": "user", "content": [{"type": "text", "text": text}], "name": text},
            {"role": "assistant", "content": text, "tool_calls": [{"id": "call_1",
                "type": "function", "function": {"name": "lookup", "arguments": args}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": text},
            {"role": "user", "content": text}
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": text,
            "parameters": {"type": "object", "properties": {"who": {"type": "string",
                "description": text, "enum": [text]}}}}}],
        "x_context": {"note": text, "items": [text, {"deep": text}]},
        "stop": [text]
    })
}

/// Every form of `s` an identifier could take in the bytes a vendor receives.
fn encodings(s: &str) -> Vec<(&'static str, Vec<u8>)> {
    let json = serde_json::to_string(s).unwrap();
    let json = json[1..json.len() - 1].to_string();
    let ascii_json: String = s
        .chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                let mut b = [0u16; 2];
                c.encode_utf16(&mut b)
                    .iter()
                    .map(|u| format!("\\u{u:04x}"))
                    .collect()
            }
        })
        .collect();
    vec![
        ("raw", s.as_bytes().to_vec()),
        ("lower-case", s.to_lowercase().into_bytes()),
        ("json-escaped", json.into_bytes()),
        ("json-ascii-escaped", ascii_json.into_bytes()),
        (
            "percent-encoded",
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
                .into_bytes(),
        ),
        (
            "base64",
            base64::engine::general_purpose::STANDARD
                .encode(s)
                .into_bytes(),
        ),
    ]
}

/// Whether `needle` occurs in `hay`; a short one (under 4 bytes) only as a token of its own,
/// not inside a longer run of letters and digits ("94" in a content length is not the age 94).
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() || hay.len() < needle.len() {
        return false;
    }
    if needle.len() >= 4 {
        return hay.windows(needle.len()).any(|w| w == needle);
    }
    let edge = |b: Option<&u8>| b.is_none_or(|b| !b.is_ascii_alphanumeric());
    (0..=hay.len() - needle.len()).any(|i| {
        &hay[i..i + needle.len()] == needle
            && (!needle[0].is_ascii_alphanumeric() || i == 0 || edge(hay.get(i - 1)))
            && (!needle[needle.len() - 1].is_ascii_alphanumeric()
                || edge(hay.get(i + needle.len())))
    })
}

/// Gold spans (character offsets) of a corpus record.
fn gold_spans(rec: &Value) -> Vec<String> {
    rec["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["text"].as_str().unwrap().to_string())
        .collect()
}

/// Gold spans the engine, run alone on the message, does not fully cover (the corpus's own
/// recall rule: every letter and digit inside some predicted span).
fn engine_misses(rec: &Value) -> BTreeSet<String> {
    let text = rec["text"].as_str().unwrap();
    let found = engine().detect(text).unwrap();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut missed = BTreeSet::new();
    for s in rec["spans"].as_array().unwrap() {
        let (a, b) = (
            s["start"].as_u64().unwrap() as usize,
            s["end"].as_u64().unwrap() as usize,
        );
        let covered = chars[a..b].iter().all(|(byte, c)| {
            !c.is_alphanumeric() || found.iter().any(|f| f.start <= *byte && *byte < f.end)
        });
        if !covered {
            missed.insert(s["text"].as_str().unwrap().to_string());
        }
    }
    missed
}

/// A `deidentified` vendor never receives an identifier of the dev corpus, in any encoding,
/// whichever field carries it; the caller gets every message back exactly, whole and streamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deidentified_vendor_never_receives_a_corpus_identifier() {
    let Some(corpus) = corpus() else { return };
    let fake = FakeUpstream::start(Behaviour::Echo(Style {
        chars_per_event: 3,
        split_writes: true,
        ..Style::default()
    }))
    .await;
    let clock = clock();
    let gw = gateway(&clock);
    let p = provider(&fake.base_url(), fast_settings());
    let sample: Vec<&Value> = corpus.iter().step_by(13).collect();
    assert!(sample.len() >= 300, "{}", sample.len());
    let mut spans_checked = 0;
    let mut engine_missed = BTreeSet::new();
    let mut leaked = Vec::new();
    for (i, rec) in sample.iter().enumerate() {
        let text = rec["text"].as_str().unwrap();
        let stream = i % 3 == 0;
        fake.clear();
        let out = run(
            &gw,
            &p,
            deid_permit(&clock),
            request(corpus_request(text, stream)),
        )
        .await
        .unwrap();
        assert_eq!(out.text, text, "{}: text not restored", rec["id"]);
        let args: Value = serde_json::from_str(out.arguments.as_deref().unwrap()).unwrap();
        assert_eq!(args["echo"], text, "{}: arguments not restored", rec["id"]);
        if stream {
            assert_eq!(out.done_events, 1);
        }
        assert_eq!(out.record.class_sent, Some(DataClass::Deidentified));
        let bytes = fake.all_bytes();
        let misses = engine_misses(rec);
        for span in gold_spans(rec) {
            spans_checked += 1;
            for (how, needle) in encodings(&span) {
                if contains(&bytes, &needle) {
                    if misses.contains(&span) {
                        engine_missed.insert(span.clone());
                    } else {
                        leaked.push(format!("{} {how}", rec["id"]));
                    }
                }
            }
        }
    }
    assert!(spans_checked > 800, "{spans_checked}");
    assert!(
        leaked.is_empty(),
        "identifiers the engine finds on its own reached the vendor: {leaked:?}"
    );
    // What the engine misses on its own (its recall is measured in perimeter-phi's corpus
    // test) is the only thing that may get through; report how much that was.
    eprintln!(
        "corpus leak test: {} messages, {spans_checked} identifiers, {} missed by the engine itself",
        sample.len(),
        engine_missed.len()
    );
    assert!(engine_missed.len() <= 2, "{}", engine_missed.len());
}

/// A `phi` vendor under a valid BAA receives the text as is; the caller gets it back exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phi_vendor_under_a_baa_receives_it_as_is() {
    let Some(corpus) = corpus() else { return };
    let fake = FakeUpstream::start(Behaviour::Echo(Style::default())).await;
    let clock = clock();
    let gw = gateway(&clock);
    let p = provider(&fake.base_url(), fast_settings());
    for (i, rec) in corpus.iter().step_by(61).enumerate() {
        let text = rec["text"].as_str().unwrap();
        fake.clear();
        let out = run(
            &gw,
            &p,
            phi_permit(&clock),
            request(corpus_request(text, i % 2 == 0)),
        )
        .await
        .unwrap();
        assert_eq!(out.text, text);
        assert_eq!(out.record.class_sent, Some(DataClass::Phi));
        assert_eq!(out.record.identifiers_replaced, 0);
        let received = fake.received();
        let body = received[0].json();
        assert_eq!(body["messages"][4]["content"], text);
        assert_eq!(body["messages"][0]["content"], text);
        assert_eq!(body["x_context"]["items"][1]["deep"], text);
        // Telemetry about the caller is never forwarded.
        assert!(body.get("user").is_none() && body.get("metadata").is_none());
        for span in gold_spans(rec) {
            assert!(contains(&received[0].body, &encodings(&span)[2].1));
        }
    }
}

/// Placeholders split across events (one character each, events split across TCP writes,
/// CRLF, comments, multi-line data) are restored exactly, in the text and in tool-call
/// arguments with JSON escaping; the caller sees exactly one [DONE].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_placeholders_split_anywhere_are_restored() {
    let fake = FakeUpstream::start(Behaviour::Echo(Style {
        chars_per_event: 1,
        split_writes: true,
        crlf: true,
        comments: true,
        multiline: true,
        double_done: true,
        ..Style::default()
    }))
    .await;
    let clock = clock();
    let gw = gateway(&clock);
    let p = provider(&fake.base_url(), fast_settings());
    let text = "Hi, this is \"Maria Gonzalez\" \\ DOB 03/02/1981,\ncall (312) 555-8841 or \
                maria.gonzalez@example.com. Zoë Ünal's MRN is 4815162. [NAME_1] is literal.";
    let out = run(
        &gw,
        &p,
        deid_permit(&clock),
        request(json!({"model": MODEL, "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": text}],
            "tools": [{"type": "function", "function": {"name": "save_note", "parameters": {"type": "object"}}}]})),
    )
    .await
    .unwrap();
    assert_eq!(out.text, text);
    let args: Value = serde_json::from_str(out.arguments.as_deref().unwrap()).unwrap();
    assert_eq!(args, json!({"echo": text}));
    assert_eq!(out.done_events, 1);
    assert!(out.error_events.is_empty());
    let received = fake.received();
    let sent = received[0].json();
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let sent_text = sent["messages"][0]["content"].as_str().unwrap();
    for secret in [
        "Maria",
        "Gonzalez",
        "1981",
        "8841",
        "maria.gonzalez",
        "Zoë",
        "4815162",
    ] {
        assert!(!sent_text.contains(secret), "{secret} in {sent_text}");
    }
    assert!(sent_text.contains("[NAME_"), "{sent_text}");
    // Usage was asked for: it is relayed and recorded.
    assert!(String::from_utf8_lossy(&out.raw).contains("\"usage\""));
    assert_eq!(out.record.prompt_tokens, Some(11));
    assert_eq!(out.record.outcome, CallOutcome::Answered);
    assert_eq!(out.started.unwrap().outcome, CallOutcome::Started);
    assert!(out.record.identifiers_replaced >= 5);
    assert_eq!(out.record.guardrails.identifiers.total(), 0);
    // The whole stream is valid SSE with JSON events.
    let raw = String::from_utf8(out.raw).unwrap();
    assert!(raw.ends_with("data: [DONE]\n\n"));
}

/// Without `stream_options.include_usage` the caller gets no usage chunk, but the record still
/// has the token counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_recorded_even_when_the_caller_did_not_ask_for_it() {
    let fake = FakeUpstream::start(Behaviour::Echo(Style::default())).await;
    let clock = clock();
    let gw = gateway(&clock);
    let p = provider(&fake.base_url(), fast_settings());
    let out = run(
        &gw,
        &p,
        phi_permit(&clock),
        request(json!({"model": MODEL, "stream": true,
            "messages": [{"role": "user", "content": "hello there"}]})),
    )
    .await
    .unwrap();
    assert_eq!(out.text, "hello there");
    assert!(!String::from_utf8_lossy(&out.raw).contains("\"usage\""));
    assert_eq!(out.record.total_tokens, Some(11 + 11));
}

/// Only the body and the vendor's own Authorization go upstream, with Content-Length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_but_the_body_and_the_vendor_key_goes_upstream() {
    let fake = FakeUpstream::start(Behaviour::Echo(Style::default())).await;
    let clock = clock();
    let gw = gateway(&clock);
    let p = provider(&fake.base_url(), fast_settings());
    for stream in [false, true] {
        fake.clear();
        run(
            &gw,
            &p,
            deid_permit(&clock),
            request(json!({"model": MODEL, "stream": stream, "user": "u-42",
                "safety_identifier": "s", "prompt_cache_key": "k", "store": true,
                "messages": [{"role": "user", "content": "hi"}]})),
        )
        .await
        .unwrap();
        let r = &fake.received()[0];
        assert_eq!(r.request_line, "POST /v1/chat/completions HTTP/1.1");
        let names: BTreeSet<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            BTreeSet::from([
                "accept",
                "authorization",
                "content-length",
                "content-type",
                "host"
            ])
        );
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {API_KEY}").as_str())
        );
        assert_eq!(
            r.header("content-length")
                .unwrap()
                .parse::<usize>()
                .unwrap(),
            r.body.len()
        );
        let body = r.json();
        for k in [
            "user",
            "safety_identifier",
            "prompt_cache_key",
            "store",
            "metadata",
        ] {
            assert!(body.get(k).is_none(), "{k} forwarded");
        }
        assert_eq!(body["model"], MODEL);
    }
}

/// A vendor's error is passed on in OpenAI's format, with its codes and without its message
/// (which may quote the prompt); no completion is made up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_errors_are_passed_on_without_the_prompt() {
    let fake = FakeUpstream::start(Behaviour::Status {
        status: 400,
        body: json!({"error": {"message": "Invalid content: [NAME_1] called from 555-0101",
            "type": "invalid_request_error", "param": "messages[0].content",
            "code": "context_length_exceeded"}})
        .to_string(),
        retry_after: None,
    })
    .await;
    let clock = clock();
    let gw = gateway(&clock);
    let p = provider(&fake.base_url(), fast_settings());
    let f = run(
        &gw,
        &p,
        deid_permit(&clock),
        request(json!({"model": MODEL, "messages": [{"role": "user", "content": "Maria Gonzalez here"}]})),
    )
    .await
    .unwrap_err();
    assert_eq!(f.error.http_status(), 400);
    let body: Value = serde_json::from_slice(&f.error.to_error_body().to_json()).unwrap();
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert_eq!(body["error"]["param"], "messages[0].content");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        !msg.contains("NAME") && !msg.contains("555") && !msg.contains("Maria"),
        "{msg}"
    );
    assert_eq!(fake.received().len(), 1, "a 400 is not retried");
    assert!(matches!(
        f.record.outcome,
        CallOutcome::Failed {
            status: Some(400),
            ..
        }
    ));
    // The vendor refusing the gateway's key is a gateway problem (502), not the caller's.
    let fake = FakeUpstream::start(Behaviour::Status {
        status: 401,
        body: "{}".into(),
        retry_after: None,
    })
    .await;
    let p = provider(&fake.base_url(), fast_settings());
    let f = run(
        &gw,
        &p,
        phi_permit(&clock),
        request(json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}]})),
    )
    .await
    .unwrap_err();
    assert_eq!(f.error.http_status(), 502);
}

/// Connect errors, 429 and 5xx are retried with backoff before anything is relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_succeeds_or_gives_up() {
    let fake = FakeUpstream::start(Behaviour::Echo(Style::default())).await;
    fake.script([
        Behaviour::Status {
            status: 503,
            body: "{}".into(),
            retry_after: None,
        },
        Behaviour::Status {
            status: 429,
            body: json!({"error": {"code": "rate_limit_exceeded"}}).to_string(),
            retry_after: Some(0),
        },
    ]);
    let clock = clock();
    let gw = gateway(&clock);
    let p = provider(&fake.base_url(), fast_settings());
    for stream in [false, true] {
        if stream {
            fake.script([
                Behaviour::CloseWithoutAnswer,
                Behaviour::Status {
                    status: 502,
                    body: String::new(),
                    retry_after: None,
                },
            ]);
        }
        fake.clear();
        let out = run(
            &gw,
            &p,
            deid_permit(&clock),
            request(json!({"model": MODEL, "stream": stream,
                "messages": [{"role": "user", "content": "Is Dr. Ann Lee in today?"}]})),
        )
        .await
        .unwrap();
        assert_eq!(out.text, "Is Dr. Ann Lee in today?");
        assert_eq!(out.record.upstream_attempts, 3);
        assert_eq!(fake.received().len(), 3);
        // Each attempt sent the same de-identified body.
        let bodies: BTreeSet<Vec<u8>> = fake.received().into_iter().map(|r| r.body).collect();
        assert_eq!(bodies.len(), 1);
    }
    // Always 503: gives up after max_attempts, as a 502 to the caller.
    fake.script((0..3).map(|_| Behaviour::Status {
        status: 503,
        body: "{}".into(),
        retry_after: None,
    }));
    fake.clear();
    let f = run(
        &gw,
        &p,
        deid_permit(&clock),
        request(json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}]})),
    )
    .await
    .unwrap_err();
    assert_eq!(fake.received().len(), 3);
    assert_eq!(f.error.http_status(), 502);
    // Nobody listening: connect errors, retried, then reported.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let p = provider(&format!("http://{closed}/v1"), fast_settings());
    let f = run(
        &gw,
        &p,
        deid_permit(&clock),
        request(json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}]})),
    )
    .await
    .unwrap_err();
    assert_eq!(f.error, GatewayError::Upstream(UpstreamError::Connect));
    assert_eq!(f.error.http_status(), 502);
    assert!(gw.metrics().snapshot().upstream_retries >= 4);
}

/// A vendor that does not answer in time, or stalls or hangs up mid-stream, ends the call with
/// an error (an error event for streams, never [DONE]); nothing is made up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_stalls_and_hang_ups() {
    let fake = FakeUpstream::start(Behaviour::StallBeforeHeaders(Duration::from_secs(3))).await;
    let clock = clock();
    let gw = gateway(&clock);
    let quick = HttpSettings {
        response_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        max_attempts: 1,
        ..fast_settings()
    };
    let p = provider(&fake.base_url(), quick.clone());
    let req = || {
        request(json!({"model": MODEL, "stream": true,
            "messages": [{"role": "user", "content": "Maria Gonzalez, 312-555-8841, please call back"}]}))
    };
    let f = run(&gw, &p, deid_permit(&clock), req()).await.unwrap_err();
    assert_eq!(f.error, GatewayError::Upstream(UpstreamError::Timeout));
    assert_eq!(f.error.http_status(), 504);

    for (behaviour, code) in [
        (
            Behaviour::StallMidStream {
                after_events: 6,
                stall: Duration::from_secs(3),
            },
            "upstream_timeout",
        ),
        (
            Behaviour::CloseMidStream { after_events: 6 },
            "upstream_interrupted",
        ),
        (
            Behaviour::Raw(vec![
                b"data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"hi\"}}]}\n\n"
                    .to_vec(),
            ]),
            "upstream_truncated",
        ),
        (
            Behaviour::Raw(vec![
                b"data: {\"error\": {\"message\": \"Maria\", \"code\": \"overloaded\"}}\n\n"
                    .to_vec(),
            ]),
            "upstream_stream_error",
        ),
        (
            Behaviour::Raw(vec![b"data: not json\n\n".to_vec()]),
            "upstream_invalid_response",
        ),
    ] {
        fake.script([behaviour]);
        let out = run(&gw, &p, deid_permit(&clock), req()).await.unwrap();
        assert_eq!(out.done_events, 0, "{code}");
        assert_eq!(out.error_events.len(), 1, "{code}");
        assert_eq!(out.error_events[0]["error"]["code"], code);
        let raw = String::from_utf8_lossy(&out.raw).to_string();
        assert!(!raw.contains("Maria") && !raw.contains("8841"), "{raw}");
        assert!(
            matches!(out.record.outcome, CallOutcome::Failed { code: c, .. } if c == code),
            "{:?}",
            out.record.outcome
        );
    }
}

/// When the PHI engine fails (a message over its size limit), nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_closed_when_the_detector_errors() {
    let fake = FakeUpstream::start(Behaviour::Echo(Style::default())).await;
    let clock = clock();
    let gw = gateway(&clock);
    let p = provider(&fake.base_url(), fast_settings());
    let big = "Maria Gonzalez called. ".repeat(12_000);
    assert!(big.len() > perimeter_phi::DEFAULT_MAX_MESSAGE_BYTES);
    let f = run(
        &gw,
        &p,
        deid_permit(&clock),
        request(json!({"model": MODEL, "messages": [{"role": "user", "content": big}]})),
    )
    .await
    .unwrap_err();
    assert_eq!(f.error.code(), "message_too_large");
    assert_eq!(f.error.http_status(), 413);
    assert!(!f.error.to_string().contains("Maria"));
    assert_eq!(f.record.class_sent, None);
    assert_eq!(f.record.upstream_attempts, 0);
    assert!(matches!(
        f.record.outcome,
        CallOutcome::Refused {
            code: "message_too_large"
        }
    ));
    // An image cannot be de-identified: refused too.
    let f = run(
        &gw,
        &p,
        deid_permit(&clock),
        request(
            json!({"model": MODEL, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "see photo"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(f.error.http_status(), 400);
    assert!(fake.received().is_empty(), "nothing may reach the vendor");
    assert!(gw.metrics().snapshot().calls_refused >= 2);
}

/// Identifiers the model makes up are redacted, in text and encoded, whole and streamed, and
/// counted in the record and the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifiers_the_caller_did_not_send_are_redacted() {
    let leak = format!(
        "Sure. Maria Gonzalez can also ask Ann Lee at 415-555-0199, or see \
         https://example.org/p?who={} and token {} today.",
        percent_encoding::utf8_percent_encode(
            "Bo Li 415-555-0123",
            percent_encoding::NON_ALPHANUMERIC
        ),
        base64::engine::general_purpose::STANDARD.encode("SSN 123-45-6789"),
    );
    let fake = FakeUpstream::start(Behaviour::Say(leak.clone(), Style::default())).await;
    let clock = clock();
    let gw = gateway(&clock);
    let p = provider(&fake.base_url(), fast_settings());
    for (stream, permit) in [
        (false, deid_permit(&clock)),
        (true, deid_permit(&clock)),
        (true, phi_permit(&clock)),
    ] {
        let out = run(
            &gw,
            &p,
            permit,
            request(json!({"model": MODEL, "stream": stream,
                "messages": [{"role": "user", "content": "Please help Maria Gonzalez book a visit."}]})),
        )
        .await
        .unwrap();
        // The engine reads the URL (with its percent-encoded query) and the base64 token as
        // identifiers themselves; the guard's own decoding of encoded runs is unit-tested.
        assert_eq!(
            out.text,
            "Sure. Maria Gonzalez can also ask [NAME] at [PHONE], or see [URL] and token [ID] today."
        );
        for secret in ["Ann Lee", "0199", "Bo%20Li", "0123", "U1NOIDEyMy00NS02Nzg5"] {
            assert!(!out.text.contains(secret), "{secret}: {}", out.text);
        }
        let hits = out.record.guardrails.identifiers;
        assert_eq!(hits.total(), 4, "{hits:?}");
        assert_eq!(hits.late, 0, "{hits:?}");
    }
    let m = gw.metrics().snapshot();
    assert_eq!(m.guardrail_redacted_plain, 12, "{m:?}");
}

/// Made-up placeholders are left as they are (they carry nothing) and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_placeholders_are_counted() {
    let fake = FakeUpstream::start(Behaviour::Say(
        "Ask [NAME_1] and [NAME_77].".into(),
        Style::default(),
    ))
    .await;
    let clock = clock();
    let gw = gateway(&clock);
    let p = provider(&fake.base_url(), fast_settings());
    let out = run(
        &gw,
        &p,
        deid_permit(&clock),
        request(json!({"model": MODEL, "stream": true,
            "messages": [{"role": "user", "content": "This is Maria Gonzalez."}]})),
    )
    .await
    .unwrap();
    assert_eq!(out.text, "Ask Maria Gonzalez and [NAME_77].");
    assert_eq!(out.record.guardrails.unknown_placeholders, 1);
}

/// Answers for patient-facing purposes are checked before release; clinical advice is
/// blocked and routed to a person; administrative answers pass (and a stream asked for is
/// made from the checked answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_facing_clinical_advice_is_blocked() {
    let fake = FakeUpstream::start(Behaviour::Echo(Style::default())).await;
    let clock = clock();
    let gw = gateway(&clock);
    let p = provider(&fake.base_url(), fast_settings());
    let terms = terms("acme", DataClass::Deidentified, false);
    let draft = |clock| {
        permit_for(
            clock,
            &terms,
            AiPurpose::DraftAdministrativeReply,
            &Caller::System,
        )
    };
    fake.script([Behaviour::Say(
        "Hi Maria Gonzalez, it sounds like you have the flu. Take 400 mg ibuprofen every 6 hours."
            .into(),
        Style::default(),
    )]);
    let ready = gw
        .prepare(
            draft(&clock),
            request(json!({"model": MODEL, "stream": true,
                "messages": [{"role": "user", "content": "Maria Gonzalez has a fever, what do I do?"}]})),
            Arc::new(Vault::new()),
        )
        .unwrap();
    let Reply::Complete(pending) = gw.send(ready, &p).await.unwrap() else {
        panic!("patient-facing answers are never streamed before the check");
    };
    assert_eq!(fake.received()[0].json().get("stream"), None);
    assert!(matches!(
        &pending.record().outcome,
        CallOutcome::Blocked { findings } if findings.contains(&ClinicalAdvice::Diagnosis)
            && findings.contains(&ClinicalAdvice::Dosing)
    ));
    let Released::Blocked(b) = pending.finish(true).unwrap() else {
        panic!("not blocked")
    };
    let draft_text = serde_json::to_string(&b.draft).unwrap();
    assert!(
        draft_text.contains("Maria Gonzalez"),
        "the person sees the restored draft"
    );
    let e = serde_json::to_string(&b.error_body()).unwrap();
    assert!(e.contains("clinical_advice_blocked") && !e.contains("Maria"));
    assert_eq!(gw.metrics().snapshot().guardrail_clinical_advice, 1);

    fake.script([Behaviour::Say(
        "Hi Maria Gonzalez, your appointment is confirmed for Tuesday.".into(),
        Style::default(),
    )]);
    let out = run(
        &gw,
        &p,
        draft(&clock),
        request(json!({"model": MODEL, "stream": true,
            "messages": [{"role": "user", "content": "Confirm Maria Gonzalez's visit"}]})),
    )
    .await
    .unwrap();
    assert_eq!(
        out.text,
        "Hi Maria Gonzalez, your appointment is confirmed for Tuesday."
    );
    assert_eq!(out.done_events, 1);
    assert_eq!(out.record.outcome, CallOutcome::Answered);
}

/// Nothing is released unless the caller confirms the audit record was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_released_unless_the_record_is_written() {
    let fake = FakeUpstream::start(Behaviour::Echo(Style::default())).await;
    let clock = clock();
    let gw = gateway(&clock);
    let p = provider(&fake.base_url(), fast_settings());
    let req = |stream| {
        request(json!({"model": MODEL, "stream": stream,
            "messages": [{"role": "user", "content": "Maria Gonzalez, MRN 4815162"}]}))
    };
    let send = |stream| {
        let ready = gw
            .prepare(deid_permit(&clock), req(stream), Arc::new(Vault::new()))
            .unwrap();
        gw.send(ready, &p)
    };
    let Reply::Complete(pending) = send(false).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        pending.finish(false).unwrap_err(),
        GatewayError::AuditNotWritten
    );
    let Reply::Stream(pending) = send(true).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        pending.begin(false).unwrap_err(),
        GatewayError::AuditNotWritten
    );
    let Reply::Stream(pending) = send(true).await.unwrap() else {
        panic!()
    };
    let mut live = pending.begin(true).unwrap();
    let mut raw = Vec::new();
    while let Some(b) = live.next().await {
        raw.extend_from_slice(&b);
    }
    raw.extend_from_slice(&live.finish(false));
    let (text, _, done, errors) = parse_events(&raw);
    assert_eq!(text, "Maria Gonzalez, MRN 4815162");
    assert_eq!(done, 0);
    assert_eq!(errors[0]["error"]["code"], "audit_not_written");
    assert_eq!(gw.metrics().snapshot().audit_not_written, 3);
}

/// A permit covers one vendor on one day; anything else is refused before sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_for_another_vendor_model_or_day_is_refused() {
    let fake = FakeUpstream::start(Behaviour::Echo(Style::default())).await;
    let clock = clock();
    let gw = gateway(&clock);
    let p = provider(&fake.base_url(), fast_settings());
    let other = permit_for(
        &clock,
        &terms("other", DataClass::Phi, true),
        AiPurpose::DeveloperGateway,
        &developer(),
    );
    let req = |model: &str| {
        request(json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
    };
    let f = run(&gw, &p, other, req(MODEL)).await.unwrap_err();
    assert!(matches!(f.error, GatewayError::PermitMismatch(_)));
    let f = run(&gw, &p, phi_permit(&clock), req("another-model"))
        .await
        .unwrap_err();
    assert!(matches!(f.error, GatewayError::PermitMismatch(_)));
    let yesterday = phi_permit(&clock);
    clock.advance(time::Duration::days(1));
    let f = run(&gw, &p, yesterday, req(MODEL)).await.unwrap_err();
    assert!(matches!(f.error, GatewayError::PermitMismatch(_)));
    assert_eq!(f.error.http_status(), 409);
    assert!(fake.received().is_empty());
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A vendor over TLS: trusted through the configured root, refused without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talks_tls_to_a_vendor_with_the_configured_root_only() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(sock).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut b = [0u8; 4096];
                let body_at = loop {
                    let n = tls.read(&mut b).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&b[..n]);
                    if let Some(i) = find(&buf, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= i + 4 + len {
                            break i + 4;
                        }
                    }
                };
                let req: Value = serde_json::from_slice(&buf[body_at..]).unwrap();
                let body =
                    serde_json::to_vec(&support::upstream::echo_completion(&req, None)).unwrap();
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(&body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    let clock = clock();
    let gw = gateway(&clock);
    let conn = |ca_pem: Option<String>| perimeter_gateway::VendorConnection {
        name: "acme".into(),
        base_url: format!("https://localhost:{port}/v1"),
        models: vec![MODEL.into()],
        api_key: None,
        inside_perimeter: false,
        ca_pem,
    };
    let req = || {
        request(
            json!({"model": MODEL, "messages": [{"role": "user", "content": "Ann Lee, 312-555-8841"}]}),
        )
    };
    let trusted =
        perimeter_gateway::HttpProvider::new(conn(Some(ck.cert.pem())), fast_settings()).unwrap();
    let out = run(&gw, &trusted, deid_permit(&clock), req())
        .await
        .unwrap();
    assert_eq!(out.text, "Ann Lee, 312-555-8841");
    let untrusted = perimeter_gateway::HttpProvider::new(
        conn(None),
        HttpSettings {
            max_attempts: 1,
            ..fast_settings()
        },
    )
    .unwrap();
    let f = run(&gw, &untrusted, deid_permit(&clock), req())
        .await
        .unwrap_err();
    assert!(
        matches!(f.error, GatewayError::Upstream(_)),
        "{:?}",
        f.error
    );
}

//! Shared helpers: the engine, a gateway on a manual clock, permits, providers for the fake
//! vendor, and a driver that plays the server's part (write the record, then release).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod upstream;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use perimeter_domain::ManualClock;
use perimeter_gateway::sse::SseParser;
use perimeter_gateway::wire::Content;
use perimeter_gateway::{
    AiPurpose, Baa, CallRecord, Caller, ChatCompletion, ChatCompletionRequest, DataClass, Decision,
    Failure, Gateway, GatewayConfig, HttpProvider, HttpSettings, Permit, Released, Reply,
    VendorConnection, VendorTerms, decide,
};
use perimeter_phi::{Engine, EngineConfig, Vault};
use time::macros::date;
use zeroize::Zeroizing;

pub use upstream::{Behaviour, FakeUpstream, Style};

pub const API_KEY: &str = "sk-test-vendor-key";
pub const MODEL: &str = "fake-model";

pub fn engine() -> Arc<Engine> {
    static E: OnceLock<Arc<Engine>> = OnceLock::new();
    Arc::clone(E.get_or_init(|| Arc::new(Engine::new(EngineConfig::default()).unwrap())))
}

pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at_epoch_2026())
}

pub fn gateway(clock: &Arc<ManualClock>) -> Gateway {
    Gateway::new(engine(), clock.clone(), GatewayConfig::default())
}

pub fn terms(name: &str, class: DataClass, baa: bool) -> VendorTerms {
    VendorTerms {
        name: name.into(),
        configured_class: class,
        baa: baa.then(|| Baa {
            signed: date!(2025 - 01 - 01),
            expires: date!(2027 - 12 - 31),
            document_ref: Some("BAA-1".into()),
        }),
        inside_perimeter: false,
    }
}

pub fn permit_for(
    clock: &Arc<ManualClock>,
    terms: &VendorTerms,
    purpose: AiPurpose,
    caller: &Caller,
) -> Permit {
    use perimeter_domain::Clock;
    match decide(purpose, terms, DataClass::Phi, caller, clock.now().date()) {
        Decision::Send(p) => p,
        Decision::Refuse(r) => panic!("refused: {r:?}"),
    }
}

pub fn developer() -> Caller {
    Caller::Service {
        purposes: vec![AiPurpose::DeveloperGateway],
    }
}

/// A deidentified vendor's permit (pseudonymised form).
pub fn deid_permit(clock: &Arc<ManualClock>) -> Permit {
    permit_for(
        clock,
        &terms("acme", DataClass::Deidentified, false),
        AiPurpose::DeveloperGateway,
        &developer(),
    )
}

/// A phi vendor's permit under a valid BAA (as-is form).
pub fn phi_permit(clock: &Arc<ManualClock>) -> Permit {
    permit_for(
        clock,
        &terms("acme", DataClass::Phi, true),
        AiPurpose::DeveloperGateway,
        &developer(),
    )
}

pub fn fast_settings() -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(10),
        max_attempts: 3,
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        max_response_bytes: 4 * 1024 * 1024,
    }
}

pub fn provider(base_url: &str, settings: HttpSettings) -> HttpProvider {
    HttpProvider::new(
        VendorConnection {
            name: "acme".into(),
            base_url: base_url.into(),
            models: vec![MODEL.into()],
            api_key: Some(Zeroizing::new(API_KEY.into())),
            inside_perimeter: false,
            ca_pem: None,
        },
        settings,
    )
    .unwrap()
}

/// What the caller got.
#[derive(Debug)]
pub struct Outcome {
    /// The text of choice 0.
    pub text: String,
    /// The arguments of tool call 0 of choice 0, if any.
    pub arguments: Option<String>,
    /// The raw bytes (SSE for streams, JSON otherwise).
    pub raw: Vec<u8>,
    /// `data: [DONE]` events seen.
    pub done_events: usize,
    /// Error events seen (streams).
    pub error_events: Vec<serde_json::Value>,
    /// The final record.
    pub record: CallRecord,
    /// The "started" record, for streams.
    pub started: Option<CallRecord>,
    /// The whole completion (non-streamed).
    pub completion: Option<ChatCompletion>,
}

pub fn parse_events(raw: &[u8]) -> (String, Option<String>, usize, Vec<serde_json::Value>) {
    let mut p = SseParser::new(1 << 24);
    let mut events = Vec::new();
    p.push(raw, &mut events).unwrap();
    assert!(!p.finish(), "the caller's stream ends mid-event");
    let mut text = String::new();
    let mut args: Option<String> = None;
    let mut done = 0;
    let mut errors = Vec::new();
    for e in events {
        if e.data == "[DONE]" {
            done += 1;
            continue;
        }
        assert_eq!(done, 0, "an event after [DONE]");
        let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        if v.get("error").is_some() {
            errors.push(v);
            continue;
        }
        for c in v["choices"].as_array().unwrap() {
            if c["index"] != 0 {
                continue;
            }
            if let Some(s) = c["delta"]["content"].as_str() {
                text.push_str(s);
            }
            if let Some(calls) = c["delta"]["tool_calls"].as_array() {
                for call in calls {
                    if let Some(a) = call["function"]["arguments"].as_str() {
                        args.get_or_insert_with(String::new).push_str(a);
                    }
                }
            }
        }
    }
    (text, args, done, errors)
}

/// Plays the server: prepare, send, write the record (confirmed), release.
pub async fn run(
    gw: &Gateway,
    provider: &HttpProvider,
    permit: Permit,
    request: ChatCompletionRequest,
) -> Result<Outcome, Box<Failure>> {
    let vault = Arc::new(Vault::new());
    let ready = gw.prepare(permit, request, vault)?;
    match gw.send(ready, provider).await? {
        Reply::Complete(pending) => {
            let record = pending.record().clone();
            match pending.finish(true).unwrap() {
                Released::Answer(a) => {
                    let completion = a.completion().clone();
                    let body = a.into_body();
                    if body.content_type == "text/event-stream" {
                        let (text, arguments, done_events, error_events) =
                            parse_events(&body.bytes);
                        return Ok(Outcome {
                            text,
                            arguments,
                            raw: body.bytes,
                            done_events,
                            error_events,
                            record,
                            started: None,
                            completion: Some(completion),
                        });
                    }
                    let c = &completion.choices[0].message;
                    let text = match &c.content {
                        Some(Content::Text(s)) => s.clone(),
                        _ => String::new(),
                    };
                    let arguments = c
                        .tool_calls
                        .as_ref()
                        .and_then(|t| t[0].function.arguments.clone());
                    Ok(Outcome {
                        text,
                        arguments,
                        raw: body.bytes,
                        done_events: 0,
                        error_events: Vec::new(),
                        record,
                        started: None,
                        completion: Some(completion),
                    })
                }
                Released::Blocked(b) => panic!("blocked: {:?}", b.findings),
            }
        }
        Reply::Stream(pending) => {
            let started = pending.record().clone();
            let mut live = pending.begin(true).unwrap();
            let mut raw = Vec::new();
            while let Some(b) = live.next().await {
                raw.extend_from_slice(&b);
            }
            let record = live.record().unwrap().clone();
            raw.extend_from_slice(&live.finish(true));
            let (text, arguments, done_events, error_events) = parse_events(&raw);
            Ok(Outcome {
                text,
                arguments,
                raw,
                done_events,
                error_events,
                record,
                started: Some(started),
                completion: None,
            })
        }
    }
}

pub fn request(v: serde_json::Value) -> ChatCompletionRequest {
    serde_json::from_value(v).unwrap()
}

/// The corpus, or `None` when PERIMETER_TEST_SKIP_CORPUS=1 and it is missing.
pub fn corpus() -> Option<Vec<serde_json::Value>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus/phi-dev.jsonl"
    );
    match std::fs::read_to_string(path) {
        Ok(s) => Some(
            s.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        ),
        Err(_) if std::env::var("PERIMETER_TEST_SKIP_CORPUS").as_deref() == Ok("1") => None,
        Err(e) => panic!(
            "the PHI dev corpus is missing at {path} ({e}); set PERIMETER_TEST_SKIP_CORPUS=1 to skip"
        ),
    }
}

//! The gateway with the in-process model (feature `local-model`): the same permit, prepare,
//! send, record and release path as a vendor, with a real GGUF model
//! (`PERIMETER_TEST_GGUF`; fails when missing unless `PERIMETER_TEST_SKIP_MODEL=1`).
#![cfg(feature = "local-model")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unused_imports)] // the fake vendor's helpers are not used here
mod support;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use perimeter_domain::Clock;
use perimeter_gateway::perimeter_llm::{LocalModel, ModelConfig};
use perimeter_gateway::{
    AiPurpose, CallOutcome, CallRecord, DataClass, Decision, Failure, Gateway, LocalProvider,
    Permit, Provider, Released, Reply, SendForm, UpstreamError, decide,
};
use perimeter_phi::Vault;
use serde_json::{Value, json};
use support::*;

const LOCAL: &str = "local-smollm";

fn model() -> Option<LocalModel> {
    static M: OnceLock<Option<LocalModel>> = OnceLock::new();
    M.get_or_init(|| {
        let path = match std::env::var_os("PERIMETER_TEST_GGUF") {
            Some(p) => PathBuf::from(p),
            None if std::env::var("PERIMETER_TEST_SKIP_MODEL").as_deref() == Ok("1") => {
                return None;
            }
            None => panic!(
                "PERIMETER_TEST_GGUF is not set: run scripts/test, or set PERIMETER_TEST_SKIP_MODEL=1"
            ),
        };
        let mut config = ModelConfig::new(path, LOCAL);
        config.threads = Some(2);
        config.max_tokens = 16;
        Some(LocalModel::load(&config).unwrap())
    })
    .clone()
}

fn local_permit(gw_clock: &Arc<perimeter_domain::ManualClock>, p: &LocalProvider) -> Permit {
    match decide(
        AiPurpose::DeveloperGateway,
        &p.terms(),
        DataClass::Phi,
        &developer(),
        gw_clock.now().date(),
    ) {
        Decision::Send(permit) => permit,
        Decision::Refuse(r) => panic!("{r:?}"),
    }
}

struct Got {
    text: String,
    record: CallRecord,
    raw: Vec<u8>,
    done_events: usize,
    finish: Option<String>,
}

/// Plays the server's part: prepare, send, write the record, release.
async fn run(
    gw: &Gateway,
    p: &dyn Provider,
    permit: Permit,
    body: Value,
) -> Result<Got, Box<Failure>> {
    let ready = gw.prepare(permit, request(body), Arc::new(Vault::new()))?;
    assert_eq!(ready.form(), SendForm::AsIs);
    match gw.send(ready, p).await? {
        Reply::Complete(pending) => {
            let record = pending.record().clone();
            let Released::Answer(a) = pending.finish(true).unwrap() else {
                panic!("blocked")
            };
            let c = a.completion().clone();
            let text = match &c.choices[0].message.content {
                Some(perimeter_gateway::wire::Content::Text(s)) => s.clone(),
                other => panic!("{other:?}"),
            };
            Ok(Got {
                text,
                record,
                raw: a.into_body().bytes,
                done_events: 0,
                finish: c.choices[0].finish_reason.clone(),
            })
        }
        Reply::Stream(pending) => {
            let mut live = pending.begin(true).unwrap();
            let mut raw = Vec::new();
            while let Some(b) = live.next().await {
                raw.extend_from_slice(&b);
            }
            let record = live.record().unwrap().clone();
            raw.extend_from_slice(&live.finish(true));
            let (text, _, done_events, errors) = parse_events(&raw);
            assert!(errors.is_empty(), "{errors:?}");
            let finish = String::from_utf8_lossy(&raw)
                .contains("\"finish_reason\":\"stop\"")
                .then(|| "stop".to_string())
                .or_else(|| Some("length".into()));
            Ok(Got {
                text,
                record,
                raw,
                done_events,
                finish,
            })
        }
    }
}

#[tokio::test]
async fn a_local_call_goes_through_the_gateway_with_a_record() {
    let Some(m) = model() else { return };
    let clock = clock();
    let gw = gateway(&clock);
    let p = LocalProvider::new("local", m, clock.clone());
    assert!(p.inside_perimeter());
    assert!(p.serves(LOCAL) && !p.serves("gpt-4o"));
    // PHI goes as is to the model inside the perimeter: no BAA needed, nothing replaced.
    let body = json!({"model": LOCAL, "temperature": 0, "max_tokens": 8, "messages": [
        {"role": "system", "content": "You help a clinic's front desk."},
        {"role": "user", "content": "Maria Gonzalez (DOB 03/14/1962) wants to reschedule."}]});
    let got = run(&gw, &p, local_permit(&clock, &p), body.clone())
        .await
        .unwrap();
    assert!(!got.text.is_empty());
    let r = &got.record;
    assert_eq!(r.vendor, "local");
    assert_eq!(r.model, LOCAL);
    assert_eq!(r.form, Some(SendForm::AsIs));
    assert_eq!(r.class_sent, Some(DataClass::Phi));
    assert_eq!(r.identifiers_replaced, 0);
    assert_eq!(r.outcome, CallOutcome::Answered);
    assert_eq!(r.upstream_attempts, 1);
    let (prompt, completion) = (r.prompt_tokens.unwrap(), r.completion_tokens.unwrap());
    assert!(prompt > 10 && (1..=8).contains(&completion));
    assert_eq!(r.total_tokens, Some(prompt + completion));
    let v: Value = serde_json::from_slice(&got.raw).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], LOCAL);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(
        v["created"].as_i64().unwrap(),
        clock.now().unix_timestamp(),
        "created comes from the injected clock"
    );
    assert!(got.finish.is_some());

    // Streamed: OpenAI chunks, one [DONE], the same text at temperature 0, usage recorded.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let s = run(&gw, &p, local_permit(&clock, &p), streamed)
        .await
        .unwrap();
    assert_eq!(s.done_events, 1);
    assert_eq!(s.text, got.text);
    assert!(s.record.streamed);
    assert_eq!(s.record.outcome, CallOutcome::Answered);
    assert_eq!(s.record.prompt_tokens, Some(prompt));
    assert_eq!(s.record.completion_tokens, Some(completion));
    let raw = String::from_utf8(s.raw).unwrap();
    assert!(raw.contains("\"object\":\"chat.completion.chunk\""));
    assert!(raw.contains("\"role\":\"assistant\""));
}

#[tokio::test]
async fn model_errors_are_openai_errors_with_a_failed_record() {
    let Some(m) = model() else { return };
    let clock = clock();
    let gw = gateway(&clock);
    let context = m.info().context;
    let p = LocalProvider::new("local", m, clock.clone());
    let long = "word ".repeat(context + 10);
    let body = json!({"model": LOCAL, "messages": [{"role": "user", "content": long}]});
    let f = run(&gw, &p, local_permit(&clock, &p), body)
        .await
        .err()
        .unwrap();
    match &f.error {
        perimeter_gateway::GatewayError::Upstream(UpstreamError::Status {
            status, code, ..
        }) => {
            assert_eq!(*status, 400);
            assert_eq!(code.as_deref(), Some("context_length_exceeded"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(f.record.outcome, CallOutcome::Failed { .. }));
    let json = String::from_utf8(f.error.to_error_body().to_json()).unwrap();
    assert!(!json.contains("word word"), "{json}");

    let tools = json!({"model": LOCAL, "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "lookup"}}]});
    let f = run(&gw, &p, local_permit(&clock, &p), tools)
        .await
        .err()
        .unwrap();
    assert_eq!(
        f.error.to_error_body().error.code.as_deref(),
        Some("tools_unsupported")
    );

    // A permit for the model is refused for a model name it does not serve.
    let other = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let f = run(&gw, &p, local_permit(&clock, &p), other)
        .await
        .err()
        .unwrap();
    assert!(matches!(
        f.error,
        perimeter_gateway::GatewayError::PermitMismatch(_)
    ));
}

//! The OpenAI-compatible endpoint through the server `perimeter serve` runs (`build_app`),
//! over real HTTP on loopback, with a real SQLite store on a ManualClock and an
//! OpenAI-compatible fake vendor that records every byte it receives (the gateway crate's
//! fake): a `deidentified` vendor never receives a corpus identifier, a `phi` vendor under a
//! valid BAA receives them as is, an expired BAA flips it on the day, tokens that are missing,
//! malformed, revoked, expired or out of scope get OpenAI-style 401/403, unknown models 404,
//! streams are valid SSE with one `[DONE]`, registry changes apply without a restart, every
//! call is audited without text, counters reach `/metrics`, and `/api/deid` works.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::Up;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration as StdDuration;

use crate::upstream::{Behaviour, FakeUpstream, Style};
use perimeter_audit::{Actor, AuditEvent};
use perimeter_auth::{ApiTokenScope, Permission, SecurityEvent, create_api_token};
use perimeter_crypto::KeyRing;
use perimeter_domain::{Clock, ManualClock, PracticeId, PurposeOfUse, Role, SharedClock, StaffId};
use perimeter_phi::{Engine, EngineConfig};
use perimeter_server::auth::{AuthSettings, AuthSlot, AuthState};
use perimeter_server::{AppParts, HttpLimits, Metrics, ServerSettings, bind, build_app};
use perimeter_store::{
    AccessContext, BaaTerms, DatabaseUrl, KeyInput, NewStaff, Store, StoreOptions, VendorClass,
    VendorInput,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::Duration;
use time::macros::date;
use tokio::sync::oneshot;
use zeroize::Zeroizing;

const MODEL: &str = "fake-model";
const VENDOR_KEY: &str = "sk-vendor-secret-for-tests";

struct Env {
    base: String,
    clock: ManualClock,
    store: Store,
    practice: PracticeId,
    service: StaffId,
    token: String,
    client: reqwest::Client,
    _shutdown: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

fn engine() -> Arc<Engine> {
    static E: OnceLock<Arc<Engine>> = OnceLock::new();
    Arc::clone(E.get_or_init(|| Arc::new(Engine::new(EngineConfig::default()).unwrap())))
}

fn vendor(
    name: &str,
    base_url: &str,
    class: VendorClass,
    baa_expires: Option<time::Date>,
) -> VendorInput {
    VendorInput {
        name: name.into(),
        base_url: base_url.into(),
        models: vec![MODEL.into()],
        data_class: class,
        baa: baa_expires.map(|expires| BaaTerms {
            signed: date!(2025 - 01 - 01),
            expires,
            document_ref: Some("BAA-1".into()),
        }),
        zero_retention: true,
        no_training: true,
        soc2_report_date: None,
        soc2_expires: None,
        sub_processors: Vec::new(),
        inside_perimeter: false,
        enabled: true,
        key: KeyInput::Secret(Zeroizing::new(VENDOR_KEY.into())),
    }
}

async fn start() -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_2026();
    let shared: SharedClock = Arc::new(clock.clone());
    let mut store_opts = StoreOptions::new(DatabaseUrl::Sqlite(dir.path().join("p.db")));
    store_opts.acquire_timeout = StdDuration::from_secs(5);
    let store = Store::connect(&store_opts, KeyRing::generate().unwrap(), shared.clone())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let sys = AccessContext::system("test");
    let practice = store.create_practice(&sys, "Test Practice").await.unwrap();
    let service = store
        .create_staff(
            &sys,
            practice,
            &NewStaff {
                username: "scribe".into(),
                display_name: "Scribe app".into(),
                roles: vec![Role::Service],
                password_hash: None,
            },
        )
        .await
        .unwrap();
    let slot = AuthSlot::ready(AuthState::new(
        store.clone(),
        shared.clone(),
        AuthSettings::default(),
    ));
    let app = build_app(AppParts {
        readiness: Arc::new(Up),
        clock: shared.clone(),
        metrics: Metrics::new(),
        limits: HttpLimits {
            max_body_bytes: 256 * 1024,
            request_timeout: StdDuration::from_secs(20),
        },
        auth: slot,
        audit: Default::default(),
        extra_routes: Vec::new(),
    })
    .unwrap();
    let bound = bind(&ServerSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: None,
        insecure_http: false,
        shutdown_grace: StdDuration::from_secs(2),
    })
    .unwrap();
    let base = format!("http://{}", bound.local_addr());
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(bound.run(app, async move {
        let _ = rx.await;
    }));
    let mut env = Env {
        base,
        clock,
        store,
        practice,
        service,
        token: String::new(),
        client: reqwest::Client::new(),
        _shutdown: tx,
        _dir: dir,
    };
    env.token = env
        .new_token(&[Permission::UseGateway, Permission::DeidentifyText], 30)
        .await
        .1;
    env
}

impl Env {
    async fn new_token(&self, perms: &[Permission], days: i64) -> (uuid::Uuid, String) {
        let now = self.clock.now();
        let new = create_api_token(
            self.service,
            "scribe",
            ApiTokenScope {
                permissions: perms.iter().copied().collect(),
                purposes: [PurposeOfUse::Operations].into_iter().collect(),
            },
            now + Duration::days(days),
            now,
        )
        .unwrap();
        let event = SecurityEvent::ApiTokenCreated {
            token: new.record.id,
        }
        .to_audit(
            Actor::System {
                component: "test".into(),
            },
            0,
            &Default::default(),
        );
        self.store
            .insert_api_token(&new.record, &event)
            .await
            .unwrap();
        (new.record.id, new.token.as_str().to_owned())
    }

    async fn chat_with(&self, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut r = self
            .client
            .post(format!("{}/v1/chat/completions", self.base))
            .json(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap()
    }

    async fn chat(&self, body: &Value) -> reqwest::Response {
        self.chat_with(Some(&self.token), body).await
    }

    async fn audit_events(&self) -> Vec<AuditEvent> {
        self.store
            .audit_records(0, 100_000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| AuditEvent::from_canonical_bytes(&r.event).unwrap())
            .collect()
    }

    /// The call records (`detail` of `ai_call` events), oldest first.
    async fn call_records(&self) -> Vec<Value> {
        self.audit_events()
            .await
            .into_iter()
            .filter(|e| e.object.kind == "ai_call")
            .map(|e| {
                let d = e.detail.unwrap();
                serde_json::from_str(d.strip_prefix("ai_call:").unwrap()).unwrap()
            })
            .collect()
    }
}

fn request(text: &str, stream: bool) -> Value {
    json!({
        "model": MODEL,
        "stream": stream,
        "messages": [
            {"role": "system", "content": format!("Context: {text}")},
            {"role": "user", "content": text}
        ]
    })
}

/// The text of a whole answer or of an event stream (checking the stream's shape).
async fn answer_text(r: reqwest::Response, stream: bool) -> String {
    assert_eq!(r.status(), StatusCode::OK);
    if !stream {
        let v: Value = r.json().await.unwrap();
        return v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let raw = r.text().await.unwrap();
    let (text, done, errors) = parse_sse(&raw);
    assert_eq!(done, 1, "exactly one [DONE]: {raw}");
    assert!(errors.is_empty(), "{errors:?}");
    text
}

/// Content of choice 0, `[DONE]` count, error events; fails on an event after `[DONE]` or a
/// stream that ends mid-event.
fn parse_sse(raw: &str) -> (String, usize, Vec<Value>) {
    assert!(raw.ends_with("\n\n"), "the stream ends mid-event");
    let mut text = String::new();
    let mut done = 0;
    let mut errors = Vec::new();
    for event in raw.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let data: String = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim_start)
            .collect::<Vec<_>>()
            .join("\n");
        if data == "[DONE]" {
            done += 1;
            continue;
        }
        assert_eq!(done, 0, "an event after [DONE]");
        let v: Value = serde_json::from_str(&data).unwrap();
        if v.get("error").is_some() {
            errors.push(v);
            continue;
        }
        for c in v["choices"].as_array().unwrap() {
            if let Some(s) = c["delta"]["content"].as_str() {
                text.push_str(s);
            }
        }
    }
    (text, done, errors)
}

fn corpus() -> Option<Vec<Value>> {
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

/// Every form an identifier could take in the bytes a vendor receives.
fn encodings(s: &str) -> Vec<(&'static str, Vec<u8>)> {
    use base64::Engine as _;
    let json = serde_json::to_string(s).unwrap();
    let json = json[1..json.len() - 1].to_string();
    vec![
        ("raw", s.as_bytes().to_vec()),
        ("lower-case", s.to_lowercase().into_bytes()),
        ("json-escaped", json.into_bytes()),
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

/// Whether `needle` occurs in `hay`; a short one (under 4 bytes) only as a token of its own.
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

/// Gold spans the engine, alone on the message, does not cover (the corpus's recall rule).
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

fn spans(rec: &Value) -> Vec<String> {
    rec["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["text"].as_str().unwrap().to_string())
        .collect()
}

/// Identifiers of `rec` (that the engine finds) present in `bytes`, with how.
fn leaks(rec: &Value, bytes: &[u8]) -> Vec<String> {
    let misses = engine_misses(rec);
    let mut out = Vec::new();
    for span in spans(rec) {
        if misses.contains(&span) {
            continue;
        }
        for (how, needle) in encodings(&span) {
            if contains(bytes, &needle) {
                out.push(format!("{} {how}", rec["id"]));
            }
        }
    }
    out
}

/// Through the server: a `deidentified` vendor never receives an identifier of the dev corpus
/// (in any encoding), whole or streamed (one character per event), and the caller gets every
/// message back exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deidentified_vendor_never_receives_a_corpus_identifier_through_the_server() {
    let Some(corpus) = corpus() else { return };
    let env = start().await;
    let fake = FakeUpstream::start(Behaviour::Echo(Style {
        chars_per_event: 1,
        split_writes: true,
        ..Style::default()
    }))
    .await;
    env.store
        .add_vendor(
            &AccessContext::system("test"),
            &vendor("acme", &fake.base_url(), VendorClass::Deidentified, None),
        )
        .await
        .unwrap();
    let sample: Vec<&Value> = corpus.iter().step_by(13).collect();
    assert!(sample.len() >= 300, "{}", sample.len());
    let mut leaked = Vec::new();
    for (i, rec) in sample.iter().enumerate() {
        let text = rec["text"].as_str().unwrap();
        let stream = i % 3 == 0;
        fake.clear();
        let r = env.chat(&request(text, stream)).await;
        assert_eq!(
            answer_text(r, stream).await,
            text,
            "{}: not restored",
            rec["id"]
        );
        let received = fake.received();
        assert_eq!(received.len(), 1);
        assert_eq!(
            received[0].header("authorization"),
            Some(format!("Bearer {VENDOR_KEY}").as_str())
        );
        leaked.extend(leaks(rec, &fake.all_bytes()));
    }
    assert!(
        leaked.is_empty(),
        "identifiers reached the vendor: {leaked:?}"
    );
    let records = env.call_records().await;
    let finals: Vec<&Value> = records
        .iter()
        .filter(|r| r["outcome"]["kind"] == "answered")
        .collect();
    assert_eq!(finals.len(), sample.len());
    assert!(finals.iter().all(|r| r["class_sent"] == "deidentified"));
    // Nothing of any message is in the audit trail.
    let trail: Vec<u8> = env
        .store
        .audit_records(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .flat_map(|r| r.event)
        .collect();
    // Identifiers with letters, as whole words (the trail's numbers are timestamps, counts
    // and durations; its words are field names and codes such as "started").
    let word = |hay: &[u8], needle: &[u8]| {
        hay.windows(needle.len()).enumerate().any(|(i, w)| {
            w == needle
                && (i == 0 || !hay[i - 1].is_ascii_alphanumeric())
                && hay
                    .get(i + needle.len())
                    .is_none_or(|b| !b.is_ascii_alphanumeric())
        })
    };
    for rec in &sample {
        for span in spans(rec) {
            if span.chars().filter(|c| c.is_alphabetic()).count() >= 3 {
                assert!(
                    !word(&trail, span.as_bytes()),
                    "{} in the audit trail",
                    rec["id"]
                );
            }
        }
    }
}

/// A `phi` vendor under a BAA in force receives identifiers as is; the day after the BAA's
/// last day the same request reaches it de-identified, without any change to the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phi_vendor_receives_as_is_under_its_baa_and_deidentified_the_day_after_it_expires() {
    let Some(corpus) = corpus() else { return };
    let env = start().await;
    let fake = FakeUpstream::start(Behaviour::Echo(Style::default())).await;
    env.store
        .add_vendor(
            &AccessContext::system("test"),
            &vendor(
                "acme",
                &fake.base_url(),
                VendorClass::Phi,
                Some(date!(2026 - 01 - 01)),
            ),
        )
        .await
        .unwrap();
    let sample: Vec<&Value> = corpus
        .iter()
        .filter(|r| r["spans"].as_array().unwrap().len() >= 2)
        .take(20)
        .collect();
    for rec in &sample {
        let text = rec["text"].as_str().unwrap();
        fake.clear();
        let r = env.chat(&request(text, false)).await;
        assert_eq!(answer_text(r, false).await, text);
        let body = fake.received()[0].json();
        assert_eq!(body["messages"][1]["content"], text, "{}", rec["id"]);
    }
    env.clock.advance(Duration::days(1));
    let mut checked = 0;
    for rec in &sample {
        let text = rec["text"].as_str().unwrap();
        fake.clear();
        let r = env.chat(&request(text, true)).await;
        assert_eq!(answer_text(r, true).await, text);
        let bytes = fake.all_bytes();
        assert!(leaks(rec, &bytes).is_empty(), "{}", rec["id"]);
        checked += spans(rec).len();
    }
    assert!(checked >= 40, "{checked}");
    let records = env.call_records().await;
    let answered: Vec<&Value> = records
        .iter()
        .filter(|r| r["outcome"]["kind"] == "answered")
        .collect();
    assert_eq!(answered.len(), 2 * sample.len());
    assert!(
        answered[..sample.len()]
            .iter()
            .all(|r| r["class_sent"] == "phi")
    );
    assert!(
        answered[sample.len()..]
            .iter()
            .all(|r| r["class_sent"] == "deidentified" && r["streamed"] == true)
    );
}

/// Missing, malformed, unknown, revoked, expired and out-of-scope tokens: 401 or 403, in
/// OpenAI's error format, and nothing reaches the vendor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_openai_style_401_and_403_and_nothing_is_sent() {
    let env = start().await;
    let fake = FakeUpstream::start(Behaviour::Echo(Style::default())).await;
    env.store
        .add_vendor(
            &AccessContext::system("test"),
            &vendor("acme", &fake.base_url(), VendorClass::Deidentified, None),
        )
        .await
        .unwrap();
    let body = request("hello", false);
    let check = |status: StatusCode, expected: StatusCode, v: &Value| {
        assert_eq!(status, expected, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        assert!(v["error"]["type"].is_string(), "{v}");
        assert!(v["error"].get("param").is_some(), "{v}");
    };
    for token in [
        None,
        Some("not-a-token"),
        Some("pmt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        let r = env.chat_with(token, &body).await;
        let s = r.status();
        check(s, StatusCode::UNAUTHORIZED, &r.json().await.unwrap());
    }
    // A token for the de-identification API only may not call the gateway.
    let (_, deid_only) = env.new_token(&[Permission::DeidentifyText], 30).await;
    let r = env.chat_with(Some(&deid_only), &body).await;
    let s = r.status();
    check(s, StatusCode::FORBIDDEN, &r.json().await.unwrap());
    let r = env
        .client
        .get(format!("{}/v1/models", env.base))
        .bearer_auth(&deid_only)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Revoked: refused at once.
    let (id, revoked) = env.new_token(&[Permission::UseGateway], 30).await;
    assert_eq!(
        env.chat_with(Some(&revoked), &body).await.status(),
        StatusCode::OK
    );
    let event = SecurityEvent::ApiTokenRevoked { token: id }.to_audit(
        Actor::System {
            component: "test".into(),
        },
        0,
        &Default::default(),
    );
    assert!(
        env.store
            .revoke_api_token(env.practice, id, env.clock.now(), &event)
            .await
            .unwrap()
    );
    let r = env.chat_with(Some(&revoked), &body).await;
    let s = r.status();
    check(s, StatusCode::UNAUTHORIZED, &r.json().await.unwrap());
    // Expired: the main token lives 30 days.
    fake.clear();
    env.clock.advance(Duration::days(31));
    let r = env.chat(&body).await;
    let s = r.status();
    check(s, StatusCode::UNAUTHORIZED, &r.json().await.unwrap());
    assert!(fake.received().is_empty());
}

/// `GET /v1/models` lists the enabled vendors' models; an unknown or disabled model is an
/// OpenAI-style 404 `model_not_found`; bad bodies are 400 in the same format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_list_unknown_models_and_bad_bodies() {
    let env = start().await;
    let fake = FakeUpstream::start(Behaviour::Echo(Style::default())).await;
    let sys = AccessContext::system("test");
    env.store
        .add_vendor(
            &sys,
            &vendor("acme", &fake.base_url(), VendorClass::Deidentified, None),
        )
        .await
        .unwrap();
    let mut other = vendor("beta", &fake.base_url(), VendorClass::None, None);
    other.models = vec!["beta-1".into(), "beta-2".into()];
    env.store.add_vendor(&sys, &other).await.unwrap();
    let list = |env: &Env| {
        let c = env.client.clone();
        let url = format!("{}/v1/models", env.base);
        let t = env.token.clone();
        async move {
            let r = c.get(url).bearer_auth(t).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["object"], "list");
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    assert_eq!(m["object"], "model");
                    format!(
                        "{}@{}",
                        m["id"].as_str().unwrap(),
                        m["owned_by"].as_str().unwrap()
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(&env).await,
        vec!["beta-1@beta", "beta-2@beta", "fake-model@acme"]
    );
    let mut body = request("hello", false);
    body["model"] = json!("no-such-model");
    let r = env.chat(&body).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(!v.to_string().contains("no-such-model"));
    // A `none` vendor receives nothing derived from patient communication: refused, audited.
    body["model"] = json!("beta-1");
    let r = env.chat(&body).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "policy_refused");
    assert!(fake.received().is_empty());
    let records = env.call_records().await;
    assert_eq!(records.last().unwrap()["outcome"]["kind"], "refused");
    assert!(records.last().unwrap()["class_sent"].is_null());
    // Disabled: gone from the list, 404.
    let mut u = env.store.vendor("acme").await.unwrap().unwrap().to_input();
    u.enabled = false;
    env.store.update_vendor(&sys, "acme", &u).await.unwrap();
    assert_eq!(list(&env).await, vec!["beta-1@beta", "beta-2@beta"]);
    assert_eq!(
        env.chat(&request("hello", false)).await.status(),
        StatusCode::NOT_FOUND
    );
    // Bodies that are not chat-completions requests.
    for bad in [&b"{"[..], b"[]", b"{\"model\": 5}", b"{\"messages\": []}"] {
        let r = env
            .client
            .post(format!("{}/v1/chat/completions", env.base))
            .bearer_auth(&env.token)
            .header("content-type", "application/json")
            .body(bad.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    assert!(fake.received().is_empty());
}

/// Registry changes (class, base URL, key, removal) apply to the running server at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_changes_apply_without_a_restart() {
    let env = start().await;
    let first = FakeUpstream::start(Behaviour::Echo(Style::default())).await;
    let second = FakeUpstream::start(Behaviour::Echo(Style::default())).await;
    let sys = AccessContext::system("test");
    env.store
        .add_vendor(
            &sys,
            &vendor("acme", &first.base_url(), VendorClass::Deidentified, None),
        )
        .await
        .unwrap();
    let text = "Please call Marleen Dossetti at 729.473.9833";
    assert_eq!(
        answer_text(env.chat(&request(text, false)).await, false).await,
        text
    );
    let sent = first.received()[0].json();
    assert!(
        !sent["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("Dossetti")
    );

    // A BAA arrives: class phi, as is from the next request.
    let mut u = env.store.vendor("acme").await.unwrap().unwrap().to_input();
    u.data_class = VendorClass::Phi;
    u.baa = Some(BaaTerms {
        signed: date!(2025 - 06 - 01),
        expires: date!(2027 - 05 - 31),
        document_ref: None,
    });
    env.store.update_vendor(&sys, "acme", &u).await.unwrap();
    first.clear();
    assert_eq!(
        answer_text(env.chat(&request(text, false)).await, false).await,
        text
    );
    assert_eq!(first.received()[0].json()["messages"][1]["content"], text);

    // Moved to another server with a new key.
    let mut u = env.store.vendor("acme").await.unwrap().unwrap().to_input();
    u.base_url = second.base_url();
    u.key = KeyInput::Secret(Zeroizing::new("sk-rotated".into()));
    env.store.update_vendor(&sys, "acme", &u).await.unwrap();
    first.clear();
    assert_eq!(
        answer_text(env.chat(&request(text, true)).await, true).await,
        text
    );
    assert!(first.received().is_empty());
    assert_eq!(
        second.received()[0].header("authorization"),
        Some("Bearer sk-rotated")
    );

    // A key named by an environment variable is read at call time; unset, nothing is sent.
    let mut u = env.store.vendor("acme").await.unwrap().unwrap().to_input();
    u.key = KeyInput::Env("PERIMETER_TEST_SURELY_UNSET_VENDOR_KEY".into());
    env.store.update_vendor(&sys, "acme", &u).await.unwrap();
    second.clear();
    let r = env.chat(&request(text, false)).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "server_error");
    assert!(second.received().is_empty());
    let mut u = env.store.vendor("acme").await.unwrap().unwrap().to_input();
    u.key = KeyInput::Env("PATH".into());
    env.store.update_vendor(&sys, "acme", &u).await.unwrap();
    assert_eq!(
        answer_text(env.chat(&request(text, false)).await, false).await,
        text
    );
    let path = std::env::var("PATH").unwrap();
    assert_eq!(
        second.received()[0].header("authorization"),
        Some(format!("Bearer {}", path.trim()).as_str())
    );

    // Removed: 404 at once.
    assert!(env.store.remove_vendor(&sys, "acme").await.unwrap());
    assert_eq!(
        env.chat(&request(text, false)).await.status(),
        StatusCode::NOT_FOUND
    );
}

/// Every call is audited as an AI disclosure initiated by the service client, with the class
/// sent, token counts and outcome, and no text; counters reach `/metrics` with fixed labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_audited_without_text_and_counted_in_metrics() {
    let env = start().await;
    let fake = FakeUpstream::start(Behaviour::Echo(Style {
        chars_per_event: 2,
        ..Style::default()
    }))
    .await;
    env.store
        .add_vendor(
            &AccessContext::system("test"),
            &vendor("acme", &fake.base_url(), VendorClass::Deidentified, None),
        )
        .await
        .unwrap();
    let text = "Marleen Dossetti, DOB 5/2/38, email mdossetti29@outlook.com";
    assert_eq!(
        answer_text(env.chat(&request(text, false)).await, false).await,
        text
    );
    assert_eq!(
        answer_text(env.chat(&request(text, true)).await, true).await,
        text
    );
    let events: Vec<AuditEvent> = env
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e.object.kind == "ai_call")
        .collect();
    // Whole: one record; stream: "started" then "answered".
    assert_eq!(events.len(), 3, "{events:?}");
    for e in &events {
        match &e.actor {
            Actor::Ai {
                provider,
                model,
                initiated_by,
            } => {
                assert_eq!(provider, "acme");
                assert_eq!(model, MODEL);
                assert_eq!(*initiated_by, Some(env.service));
            }
            other => panic!("actor {other:?}"),
        }
        assert_eq!(e.purpose, Some(PurposeOfUse::Operations));
        let json = serde_json::to_string(e).unwrap();
        for word in ["Dossetti", "mdossetti29", "5/2/38", "Marleen"] {
            assert!(!json.contains(word), "{json}");
        }
    }
    assert_eq!(events[1].object.id, events[2].object.id);
    let records = env.call_records().await;
    assert_eq!(records[0]["outcome"]["kind"], "answered");
    assert_eq!(records[0]["class_sent"], "deidentified");
    assert!(records[0]["identifiers_replaced"].as_u64().unwrap() >= 3);
    assert!(records[0]["prompt_tokens"].is_u64());
    assert_eq!(records[1]["outcome"]["kind"], "started");
    assert_eq!(records[2]["outcome"]["kind"], "answered");

    let metrics = env
        .client
        .get(format!("{}/metrics", env.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("perimeter_gateway_calls_total{outcome=\"answered\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("perimeter_gateway_events_total{event=\"identifier_replaced\"}"));
    assert!(metrics.contains("perimeter_gateway_guardrail_hits_total{kind=\"clinical_advice\"} 0"));
    assert!(!metrics.contains("Dossetti"));
}

/// `POST /api/deid`: de-identified text and character-offset spans, every mode, audited
/// without text; bad input is a clear 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deid_api_returns_text_and_char_offsets_and_audits_without_text() {
    let env = start().await;
    let text = "Zoë Ortiz — call 729.473.9833 or mail zoe@example.org";
    let post = |body: Value| {
        let c = env.client.clone();
        let url = format!("{}/api/deid", env.base);
        let t = env.token.clone();
        async move { c.post(url).bearer_auth(t).json(&body).send().await.unwrap() }
    };
    let r = post(json!({"text": text})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["mode"], "redact");
    let out = v["text"].as_str().unwrap();
    assert!(
        !out.contains("729.473.9833") && !out.contains("zoe@example.org"),
        "{out}"
    );
    let chars: Vec<char> = text.chars().collect();
    let out_chars: Vec<char> = out.chars().collect();
    let spans = v["spans"].as_array().unwrap();
    assert!(spans.len() >= 2);
    let mut covered = Vec::new();
    for s in spans {
        let (a, b) = (
            s["start"].as_u64().unwrap() as usize,
            s["end"].as_u64().unwrap() as usize,
        );
        covered.push(chars[a..b].iter().collect::<String>());
        let (oa, ob) = (
            s["output_start"].as_u64().unwrap() as usize,
            s["output_end"].as_u64().unwrap() as usize,
        );
        let replaced: String = out_chars[oa..ob].iter().collect();
        assert!(replaced.starts_with('['), "{replaced}");
        assert!(s["label"].as_str().is_some_and(|l| !l.is_empty()));
    }
    assert!(covered.contains(&"729.473.9833".to_owned()), "{covered:?}");
    assert!(
        covered.contains(&"zoe@example.org".to_owned()),
        "{covered:?}"
    );
    for mode in ["pseudonymize", "surrogate", "safe-harbor"] {
        let r = post(json!({"text": text, "mode": mode})).await;
        assert_eq!(r.status(), StatusCode::OK, "{mode}");
        let v: Value = r.json().await.unwrap();
        assert!(
            !v["text"].as_str().unwrap().contains("729.473.9833"),
            "{mode}"
        );
    }
    for bad in [
        json!({"text": 5}),
        json!({"mode": "redact"}),
        json!({"text": "x", "mode": "shred"}),
        json!({"text": "x", "extra": 1}),
    ] {
        let r = post(bad.clone()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let trail = env.audit_events().await;
    let deid: Vec<&AuditEvent> = trail
        .iter()
        .filter(|e| e.object.kind == "deidentification")
        .collect();
    assert_eq!(deid.len(), 4);
    for e in &deid {
        let json = serde_json::to_string(e).unwrap();
        assert!(!json.contains("Ortiz") && !json.contains("9833"), "{json}");
        assert!(matches!(e.actor, Actor::Service { client } if client == env.service));
    }
    // A gateway-only token may not use it.
    let (_, gw_only) = env.new_token(&[Permission::UseGateway], 30).await;
    let r = env
        .client
        .post(format!("{}/api/deid", env.base))
        .bearer_auth(gw_only)
        .json(&json!({"text": text}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

//! The patient web chat over real HTTP on loopback with a real SQLite store, a ManualClock and
//! a fake Twilio Messages API (for the one-time codes): sessions, nothing revealed before
//! verification, name + birth date and SMS-code verification (one answer for every failure,
//! throttling, expiry, single use), the emergency reply in the chat, staff replies delivered
//! to the stream instead of SMS, session expiry, malformed and oversized input, the page's
//! security headers; and a real browser (headless Chromium driven by Playwright) using the
//! widget end to end.
//!
//! The classifier here is a TEST DOUBLE (keyword rules written for these tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::Up;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::extract::State;
use axum::response::IntoResponse;
use perimeter_auth::{SessionPolicy, SessionStage};
use perimeter_crypto::KeyRing;
use perimeter_domain::{Clock, ManualClock, PatientId, PracticeId, Role, SharedClock};
use perimeter_server::auth::{AuthSettings, AuthSlot, AuthState};
use perimeter_server::channels::twilio::Form;
use perimeter_server::channels::web_chat::ChatSettings;
use perimeter_server::channels::{ChannelSettings, Channels, Sender, TwilioClient, TwilioConfig};
use perimeter_server::{AppParts, HttpLimits, Metrics, ServerSettings, bind, build_app};
use perimeter_store::{
    AccessContext, ChatPolicy, DatabaseUrl, NewStaff, PatientData, Store, StoreOptions,
};
use perimeter_workflows::{
    ChannelTexts, ClassifyError, IntakeClass, IntakeClassifier, Intent, Urgency,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const PATIENT_PHONE: &str = "+12025550142";

/// A keyword test double (NOT the product's classifier).
struct TestClassifier;

impl IntakeClassifier for TestClassifier {
    fn classify(&self, text: &str) -> Result<IntakeClass, ClassifyError> {
        let t = text.to_lowercase();
        let (intent, urgency, emergency) = if t.contains("chest pain") {
            (Intent::Emergency, Urgency::Emergency, true)
        } else if t.contains("appointment") || t.contains("reschedule") {
            (Intent::Scheduling, Urgency::Routine, false)
        } else {
            (Intent::General, Urgency::Routine, false)
        };
        Ok(IntakeClass {
            intent,
            urgency,
            emergency,
        })
    }
}

#[derive(Clone, Default)]
struct Carrier {
    bodies: Arc<Mutex<Vec<(String, String)>>>,
    count: Arc<AtomicU32>,
}

async fn fake_messages(
    State(c): State<Carrier>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let form = Form::parse(&body).unwrap();
    let get = |k: &str| {
        form.params()
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    c.bodies.lock().unwrap().push((get("To"), get("Body")));
    let n = c.count.fetch_add(1, Ordering::SeqCst);
    (
        axum::http::StatusCode::CREATED,
        axum::Json(json!({"sid": format!("SM{n:032x}"), "status": "queued"})),
    )
        .into_response()
}

pub struct Env {
    pub base: String,
    clock: ManualClock,
    store: Store,
    practice: PracticeId,
    patient: PatientId,
    sender: Sender,
    carrier: Carrier,
    client: reqwest::Client,
    db: std::path::PathBuf,
    _shutdown: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start_with(policy: ChatPolicy) -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_2026();
    let shared: SharedClock = Arc::new(clock.clone());
    let db = dir.path().join("p.db");
    let mut opts = StoreOptions::new(DatabaseUrl::Sqlite(db.clone()));
    opts.acquire_timeout = StdDuration::from_secs(5);
    let store = Store::connect(&opts, KeyRing::generate().unwrap(), shared.clone())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let sys = AccessContext::system("test");
    let practice = store.create_practice(&sys, "Test Practice").await.unwrap();
    let patient = store
        .create_patient(
            &sys,
            practice,
            &PatientData {
                given_name: "Grace".into(),
                family_name: "Hopper".into(),
                birth_date: Some(time::macros::date!(1956 - 12 - 09)),
                phone: Some("(202) 555-0142".into()),
                ..PatientData::default()
            },
        )
        .await
        .unwrap();
    // A second Grace Hopper with another birth date: the name alone matches two records.
    store
        .create_patient(
            &sys,
            practice,
            &PatientData {
                given_name: "Grace".into(),
                family_name: "Hopper".into(),
                birth_date: Some(time::macros::date!(1990 - 01 - 02)),
                ..PatientData::default()
            },
        )
        .await
        .unwrap();
    let c = Carrier::default();
    let carrier_app = axum::Router::new()
        .route(
            "/2010-04-01/Accounts/{sid}/Messages.json",
            axum::routing::post(fake_messages),
        )
        .with_state(c.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let carrier_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, carrier_app).await.unwrap() });
    let twilio = TwilioConfig {
        account_sid: SID.into(),
        auth_token: zeroize::Zeroizing::new("test-auth-token-0123456789".into()),
        public_base_url: "https://perimeter.example-practice.test".into(),
        api_base_url: carrier_url,
        from_number: "+15550001111".into(),
        ca_pem: None,
        timeout: StdDuration::from_secs(5),
    };
    let channels = Channels::new(
        ChannelSettings {
            twilio: Some(twilio.clone()),
            chat: ChatSettings {
                policy,
                embed_origins: vec!["https://www.example-practice.test".into()],
                stream_poll: StdDuration::from_millis(200),
            },
            ..ChannelSettings::default()
        },
        Arc::new(TestClassifier),
    );
    let metrics = Metrics::new();
    let sender = Sender::new(
        store.clone(),
        TwilioClient::new(twilio).unwrap(),
        shared.clone(),
        metrics.clone(),
        channels.wake(),
    );
    let slot = AuthSlot::ready(AuthState::new(
        store.clone(),
        shared.clone(),
        AuthSettings::default(),
    ));
    let app = build_app(AppParts {
        readiness: Arc::new(Up),
        clock: shared.clone(),
        metrics,
        limits: HttpLimits {
            max_body_bytes: 1024 * 1024,
            request_timeout: StdDuration::from_secs(20),
        },
        auth: slot,
        audit: Default::default(),
        extra_routes: Vec::new(),
    })
    .unwrap()
    .with_channels(channels);
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
    Env {
        base,
        clock,
        store,
        practice,
        patient,
        sender,
        carrier: c,
        client: reqwest::Client::new(),
        db,
        _shutdown: tx,
        _dir: dir,
    }
}

async fn start() -> Env {
    start_with(ChatPolicy::default()).await
}

type Session = (String, String);

impl Env {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn new_chat(&self) -> String {
        let r = self
            .client
            .post(self.url("/api/chat/sessions"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["verified"], false);
        v["token"].as_str().unwrap().to_owned()
    }

    async fn chat(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, self.url(path))
            .header("x-perimeter-chat", token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let st = r.status();
        let text = r.text().await.unwrap();
        (st, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.chat(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.chat(reqwest::Method::GET, path, token, None).await
    }

    async fn say(&self, token: &str, text: &str) -> (StatusCode, Value) {
        let id = uuid::Uuid::now_v7().simple().to_string();
        self.post(
            "/api/chat/messages",
            token,
            json!({"client_id": &id[..24], "text": text}),
        )
        .await
    }

    async fn verified_chat(&self) -> String {
        let t = self.new_chat().await;
        let (st, v) = self
            .post(
                "/api/chat/verify",
                &t,
                json!({"name": "grace hopper", "birth_date": "1956-12-09"}),
            )
            .await;
        assert_eq!((st, &v), (StatusCode::OK, &json!({"verified": true})));
        t
    }

    async fn staff(&self, role: Role) -> Session {
        let sys = AccessContext::system("test");
        let id = self
            .store
            .create_staff(
                &sys,
                self.practice,
                &NewStaff {
                    username: format!("u{}", uuid::Uuid::now_v7().simple()),
                    display_name: "Staff".into(),
                    roles: vec![role],
                    password_hash: None,
                },
            )
            .await
            .unwrap();
        let s = SessionPolicy::default()
            .start(id, SessionStage::Authenticated, self.clock.now())
            .unwrap();
        self.store.insert_session(&s.record).await.unwrap();
        (
            format!("perimeter_session={}", s.token.as_str()),
            s.record.csrf.as_str().to_owned(),
        )
    }

    async fn staff_call(
        &self,
        method: reqwest::Method,
        path: &str,
        s: &Session,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, self.url(path))
            .header("cookie", &s.0)
            .header("x-csrf-token", &s.1);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let st = r.status();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    /// A scheduler's approved template reply to the patient's scheduling conversation.
    async fn staff_reply(&self, text: &str) {
        let admin = self.staff(Role::Admin).await;
        let sched = self.staff(Role::Scheduler).await;
        let m = reqwest::Method::POST;
        let (st, t) = self
            .staff_call(
                m.clone(),
                "/api/templates",
                &admin,
                Some(json!({"name": format!("t{}", uuid::Uuid::now_v7().simple()), "kind": "reply", "body": text})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{t}");
        let tid = t["id"].as_str().unwrap().to_owned();
        let (st, _) = self
            .staff_call(
                m.clone(),
                &format!("/api/templates/{tid}/approve"),
                &admin,
                Some(json!({})),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let (st, q) = self
            .staff_call(reqwest::Method::GET, "/api/queues/scheduling", &sched, None)
            .await;
        assert_eq!(st, StatusCode::OK, "{q}");
        let conv = q["items"][0]["conversation_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (st, d) = self
            .staff_call(
                m.clone(),
                &format!("/api/conversations/{conv}/drafts"),
                &sched,
                Some(json!({"template_id": tid})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{d}");
        let did = d["id"].as_str().unwrap().to_owned();
        let (st, d) = self
            .staff_call(
                m,
                &format!("/api/drafts/{did}/approve"),
                &sched,
                Some(json!({})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{d}");
        assert_eq!(d["status"], "sent");
    }

    fn raw_db(&self) -> Vec<u8> {
        let mut all = std::fs::read(&self.db).unwrap();
        if let Ok(w) = std::fs::read(self.db.with_extension("db-wal")) {
            all.extend(w);
        }
        all
    }

    fn sms(&self) -> Vec<(String, String)> {
        self.carrier.bodies.lock().unwrap().clone()
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_chat_is_taken_in_as_a_contact_and_reveals_nothing() {
    let env = start().await;
    let t = env.new_chat().await;
    let (st, s) = env.get("/api/chat/session", &t).await;
    assert_eq!((st, s["verified"].clone()), (StatusCode::OK, json!(false)));
    let (st, r) = env
        .say(
            &t,
            "Hi, this is Grace Hopper, can I reschedule my appointment?",
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!(r["verified"], false);
    assert_eq!(r["emergency"], false);
    // Nothing from the record: no messages, no name, no id.
    let (st, m) = env.get("/api/chat/messages", &t).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(m, json!({"verified": false, "messages": []}));
    for v in [&s, &r, &m] {
        let text = v.to_string();
        assert!(!text.contains(&env.patient.to_string()) && !text.contains("1956-12"));
    }
    // Staff find it in the intake list, from an unverified contact, waiting for a patient.
    let fd = env.staff(Role::FrontDesk).await;
    let (st, list) = env
        .staff_call(reqwest::Method::GET, "/api/intake/inbound", &fd, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["channel"], "web_chat");
    assert_eq!(items[0]["match_kind"], "unknown");
    assert_eq!(items[0]["needs_patient"], true);
    assert!(items[0]["patient_id"].is_null());
    // Stored encrypted only; the token is stored only as its hash.
    let raw = env.raw_db();
    assert!(!contains(&raw, "reschedule my appointment"));
    assert!(!contains(&raw, &t));
    // Staff credentials are not a chat session.
    let r = env
        .client
        .get(env.url("/api/chat/messages"))
        .header("cookie", &fd.0)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Ending the session ends it.
    let (st, _) = env
        .chat(reqwest::Method::DELETE, "/api/chat/session", &t, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, e) = env.get("/api/chat/session", &t).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("chat_session_ended"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_and_birth_date_verify_with_one_answer_for_every_failure() {
    let env = start().await;
    let t = env.new_chat().await;
    let attempt = |name: &'static str, dob: &'static str| {
        let t = t.clone();
        let env = &env;
        async move {
            env.post(
                "/api/chat/verify",
                &t,
                json!({"name": name, "birth_date": dob}),
            )
            .await
        }
    };
    // A wrong birth date, an unknown name, a name two records share with neither date: one answer.
    let a = attempt("Grace Hopper", "1956-12-10").await;
    let b = attempt("Ada Lovelace", "1956-12-09").await;
    let c = attempt("Hopper Grace", "1901-01-01").await;
    assert_eq!(a.0, StatusCode::UNAUTHORIZED);
    assert_eq!(a, b);
    assert_eq!(b, c);
    assert_eq!(a.1["error"]["code"], "verification_failed");
    // Still unverified, and the attempts are audited without any name or date.
    let (_, s) = env.get("/api/chat/session", &t).await;
    assert_eq!(s["verified"], false);
    // The right details (any case, family name first) verify and bind the session.
    let (st, v) = attempt("HOPPER, Grace", "1956-12-09").await;
    assert_eq!((st, v), (StatusCode::OK, json!({"verified": true})));
    let (_, s) = env.get("/api/chat/session", &t).await;
    assert_eq!(
        s,
        json!({"verified": true, "verified_by": "name_birth_date"})
    );
    let (st, e) = attempt("Grace Hopper", "1956-12-09").await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_verified"))
    );
    let trail = env
        .store
        .audit_records(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            serde_json::to_string(
                &perimeter_audit::AuditEvent::from_canonical_bytes(&r.event).unwrap(),
            )
            .unwrap()
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(trail.contains("verify_name_birth_date failed"));
    assert!(trail.contains(&format!("\"patient\":\"{}\"", env.patient)));
    assert!(!trail.contains("1956-12-") && !trail.contains("Lovelace"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_verifications_end_the_session_and_throttle_the_address() {
    let env = start_with(ChatPolicy {
        session_failures: 3,
        address_failures: 5,
        ..ChatPolicy::default()
    })
    .await;
    let wrong = json!({"name": "Grace Hopper", "birth_date": "2000-01-01"});
    let t = env.new_chat().await;
    for _ in 0..2 {
        let (st, _) = env.post("/api/chat/verify", &t, wrong.clone()).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    // The third failure ends the session; the right answer no longer helps.
    let (st, e) = env.post("/api/chat/verify", &t, wrong.clone()).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("chat_session_ended"))
    );
    let (st, _) = env
        .post(
            "/api/chat/verify",
            &t,
            json!({"name": "Grace Hopper", "birth_date": "1956-12-09"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // A fresh session from the same address: two more failures reach the address limit, then
    // even the right details are refused without being checked.
    let t2 = env.new_chat().await;
    for _ in 0..2 {
        let (st, _) = env.post("/api/chat/verify", &t2, wrong.clone()).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    let t3 = env.new_chat().await;
    let (st, e) = env
        .post(
            "/api/chat/verify",
            &t3,
            json!({"name": "Grace Hopper", "birth_date": "1956-12-09"}),
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("too_many_attempts"))
    );
    // The window passes (injected clock): the address may try again.
    env.clock.advance(time::Duration::minutes(16));
    let t4 = env.new_chat().await;
    let (st, _) = env
        .post(
            "/api/chat/verify",
            &t4,
            json!({"name": "Grace Hopper", "birth_date": "1956-12-09"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
}

fn code_of(sms: &str) -> String {
    sms.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_codes_go_to_the_phone_on_file_expire_and_are_single_use() {
    let env = start().await;
    let t = env.new_chat().await;
    // An unknown number gets the same answer, and nothing is sent.
    let (st, unknown) = env
        .post("/api/chat/code", &t, json!({"phone": "+1 202 555 0199"}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, known) = env
        .post("/api/chat/code", &t, json!({"phone": "202-555-0142"}))
        .await;
    assert_eq!((st, &known), (StatusCode::ACCEPTED, &unknown));
    env.sender.run_once().await.unwrap();
    let sent = env.sms();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, "(202) 555-0142", "the phone on file");
    let code = code_of(&sent[0].1);
    // Hashed at rest.
    assert!(!contains(&env.raw_db(), &format!("code is {code}")));
    // A wrong code fails; the code expires with the injected clock.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (st, e) = env
        .post("/api/chat/code/verify", &t, json!({"code": wrong}))
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("verification_failed"))
    );
    env.clock.advance(time::Duration::minutes(11));
    let (st, _) = env
        .post("/api/chat/code/verify", &t, json!({"code": code}))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "expired");
    // A new code works once.
    let (st, _) = env
        .post("/api/chat/code", &t, json!({"phone": PATIENT_PHONE}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    env.sender.run_once().await.unwrap();
    let code2 = code_of(&env.sms()[1].1);
    let (st, v) = env
        .post("/api/chat/code/verify", &t, json!({"code": code2}))
        .await;
    assert_eq!((st, v), (StatusCode::OK, json!({"verified": true})));
    let (_, s) = env.get("/api/chat/session", &t).await;
    assert_eq!(s["verified_by"], "sms_code");
    // Replayed in another session it is worth nothing.
    let other = env.new_chat().await;
    let (st, _) = env
        .post("/api/chat/code/verify", &other, json!({"code": code2}))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // Codes per session are limited.
    for i in 0..3 {
        let (st, _) = env
            .post("/api/chat/code", &other, json!({"phone": PATIENT_PHONE}))
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "send {i}");
    }
    let (st, e) = env
        .post("/api/chat/code", &other, json!({"phone": PATIENT_PHONE}))
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("too_many_attempts"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_code_attempts_are_limited() {
    let env = start_with(ChatPolicy {
        code_attempts: 2,
        ..ChatPolicy::default()
    })
    .await;
    let t = env.new_chat().await;
    env.post("/api/chat/code", &t, json!({"phone": PATIENT_PHONE}))
        .await;
    env.sender.run_once().await.unwrap();
    let code = code_of(&env.sms()[0].1);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..2 {
        let (st, _) = env
            .post("/api/chat/code/verify", &t, json!({"code": wrong}))
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    // The right code after the attempts ran out is refused too.
    let (st, _) = env
        .post("/api/chat/code/verify", &t, json!({"code": code}))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (_, s) = env.get("/api/chat/session", &t).await;
    assert_eq!(s["verified"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_gets_the_approved_message_in_the_chat_at_once() {
    let env = start().await;
    // Unverified: the message is shown in the answer, nothing is texted.
    let t = env.new_chat().await;
    let (st, r) = env.say(&t, "I have crushing chest pain").await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!(r["emergency"], true);
    assert_eq!(r["emergency_message"], ChannelTexts::default().emergency);
    // Verified: the same, and it is kept in the conversation the chat shows.
    let v = env.verified_chat().await;
    let (st, r) = env.say(&v, "chest pain since an hour").await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!(r["verified"], true);
    assert_eq!(r["emergency_message"], ChannelTexts::default().emergency);
    let (_, m) = env.get("/api/chat/messages", &v).await;
    let msgs = m["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{m}");
    assert_eq!(msgs[0]["direction"], "inbound");
    assert_eq!(msgs[0]["body"], "chest pain since an hour");
    assert_eq!(msgs[1]["direction"], "outbound");
    assert_eq!(msgs[1]["body"], ChannelTexts::default().emergency);
    // It jumps the queue, and the on-call people are alerted; no SMS went out.
    let fd = env.staff(Role::FrontDesk).await;
    let (_, list) = env
        .staff_call(reqwest::Method::GET, "/api/intake/inbound", &fd, None)
        .await;
    let items = list["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .all(|i| i["emergency"] == true && i["priority"] == 0)
    );
    env.sender.run_once().await.unwrap();
    assert!(env.sms().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staff_reply_is_delivered_to_the_chat_stream_not_by_sms() {
    let env = start().await;
    let t = env.verified_chat().await;
    let (st, _) = env.say(&t, "Can I reschedule my appointment?").await;
    assert_eq!(st, StatusCode::CREATED);
    // The stream: status first, then the patient's own message.
    let mut stream = env
        .client
        .get(env.url("/api/chat/stream"))
        .header("x-perimeter-chat", &t)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut seen = String::new();
    let mut read_until = async |seen: &mut String, needle: &str| {
        let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
        while !seen.contains(needle) {
            let chunk = tokio::time::timeout_at(deadline, stream.chunk())
                .await
                .expect("the stream delivered it in time")
                .unwrap()
                .expect("the stream is open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    read_until(&mut seen, "reschedule my appointment").await;
    assert!(seen.contains("event: status"));
    assert!(seen.contains("\"verified\":true"));
    // A scheduler approves a reply: it appears in the open stream.
    env.staff_reply("Yes, Thursday at 9:30 works. See you then.")
        .await;
    read_until(&mut seen, "Thursday at 9:30 works").await;
    assert!(seen.contains("\"from_staff\":true"));
    // Nothing went to the SMS outbox.
    env.sender.run_once().await.unwrap();
    assert!(env.sms().is_empty());
    let out = env
        .store
        .outbound_replies(&AccessContext::system("test"), Some("web_chat"), 10)
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
    // Reads are audited.
    let trail = env
        .store
        .audit_records(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            serde_json::to_string(
                &perimeter_audit::AuditEvent::from_canonical_bytes(&r.event).unwrap(),
            )
            .unwrap()
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(trail.contains("web_chat_read"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_when_idle_and_at_their_absolute_limit() {
    let env = start().await;
    let t = env.verified_chat().await;
    env.clock.advance(time::Duration::minutes(14));
    assert_eq!(env.get("/api/chat/session", &t).await.0, StatusCode::OK);
    env.clock.advance(time::Duration::minutes(14));
    assert_eq!(env.get("/api/chat/session", &t).await.0, StatusCode::OK);
    env.clock.advance(time::Duration::minutes(16));
    let (st, e) = env.get("/api/chat/session", &t).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("chat_session_ended"))
    );
    // Absolute: activity every 10 minutes does not keep it alive past 4 hours.
    let t = env.new_chat().await;
    for _ in 0..23 {
        env.clock.advance(time::Duration::minutes(10));
        assert_eq!(env.get("/api/chat/session", &t).await.0, StatusCode::OK);
    }
    env.clock.advance(time::Duration::minutes(10));
    assert_eq!(
        env.get("/api/chat/session", &t).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_input_gets_a_clear_error_and_changes_nothing() {
    let env = start().await;
    // No token, a malformed one, an unknown one.
    for token in [None, Some("nope"), Some(&"a".repeat(64)[..])] {
        let mut req = env.client.get(env.url("/api/chat/session"));
        if let Some(t) = token {
            req = req.header("x-perimeter-chat", t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "chat_session_required");
    }
    let t = env.new_chat().await;
    let before = env.store.count_inbound(env.practice).await.unwrap();
    let raw = |ct: &'static str, body: Vec<u8>| {
        let t = t.clone();
        let env = &env;
        async move {
            let r = env
                .client
                .post(env.url("/api/chat/messages"))
                .header("x-perimeter-chat", t)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            let st = r.status();
            (st, r.json::<Value>().await.unwrap())
        }
    };
    let (st, e) = raw("text/plain", b"hello".to_vec()).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported_media_type")
        )
    );
    let (st, e) = raw("application/json", b"{not json".to_vec()).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_body"))
    );
    let (st, _) = raw(
        "application/json",
        br#"{"client_id":"a","text":"hi","extra":1}"#.to_vec(),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, e) = raw(
        "application/json",
        serde_json::to_vec(&json!({"client_id": "a", "text": "x".repeat(30_000)})).unwrap(),
    )
    .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    let (st, e) = env
        .post(
            "/api/chat/messages",
            &t,
            json!({"client_id": "a", "text": "y".repeat(2001)}),
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_text"))
    );
    for (id, text) in [("bad id!", "hi"), ("a", "   "), ("a", "bell\u{7}")] {
        let (st, _) = env
            .post(
                "/api/chat/messages",
                &t,
                json!({"client_id": id, "text": text}),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{id:?} {text:?}");
    }
    let (st, e) = env
        .post(
            "/api/chat/verify",
            &t,
            json!({"name": "Grace Hopper", "birth_date": "12/09/1956"}),
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_birth_date"))
    );
    let (st, _) = env
        .post("/api/chat/code", &t, json!({"phone": "call me"}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = env.get("/api/chat/messages?after=%27%3B--", &t).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(env.store.count_inbound(env.practice).await.unwrap(), before);
    // Error bodies never echo what was sent.
    assert!(!e.to_string().contains("call me"));
    // A retried message (same client id) is stored once.
    let body = json!({"client_id": "retry-1", "text": "hello there"});
    let (a, _) = env.post("/api/chat/messages", &t, body.clone()).await;
    let (b, r) = env.post("/api/chat/messages", &t, body).await;
    assert_eq!((a, b), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(r["duplicate"], true);
    assert_eq!(
        env.store.count_inbound(env.practice).await.unwrap(),
        before + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_widget_are_served_under_a_strict_csp() {
    let env = start().await;
    for (path, ct) in [
        ("/chat", "text/html"),
        ("/chat/widget.js", "text/javascript"),
        ("/chat/widget.css", "text/css"),
    ] {
        let r = env.client.get(env.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(ct)
        );
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert!(
            csp.contains("frame-ancestors 'self' https://www.example-practice.test"),
            "{csp}"
        );
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        let body = r.text().await.unwrap();
        if path == "/chat" {
            // No inline script or style: every script has a src.
            assert_eq!(
                body.matches("<script").count(),
                body.matches("<script src=").count()
            );
            assert!(!body.contains("style=") && !body.contains("<style"));
            assert!(!body.contains("onclick") && !body.contains("javascript:"));
        }
    }
    // The API keeps the strict default.
    let r = env.client.get(env.url("/healthz")).send().await.unwrap();
    assert_eq!(
        r.headers()["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");
}

/// The widget in a real browser: headless Chromium (Debian's package) driven by Playwright
/// (`playwright-core`, pinned in tests/browser/package.json). The script writes before
/// verification, verifies by name and birth date, gets the emergency message at once, and
/// sees a staff reply arrive on the stream, with no CSP violation on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_works_in_a_real_browser() {
    let (node, dir) = crate::support::browser_prerequisites();
    let env = start().await;
    let base = env.base.clone();
    let script = dir.join("webchat.mjs");
    let child = tokio::task::spawn_blocking(move || {
        std::process::Command::new(node)
            .arg(script)
            .arg(base)
            .output()
            .unwrap()
    });
    // When the browser's scheduling message is in the queue, a scheduler answers it.
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(60);
    let sched = env.staff(Role::Scheduler).await;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the browser never wrote"
        );
        let (_, q) = env
            .staff_call(reqwest::Method::GET, "/api/queues/scheduling", &sched, None)
            .await;
        if q["items"].as_array().is_some_and(|i| !i.is_empty()) {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
    env.staff_reply("Thursday at 9:30 is booked for you.").await;
    let out = tokio::time::timeout(StdDuration::from_secs(90), child)
        .await
        .expect("the browser test finished in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("webchat browser test: ok"), "{stdout}");
}

/// The public start route is bounded per client address: past the limit within the window a
/// start is refused with 429 (audited, no session row), and the window's end lifts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_start_sessions_without_limit() {
    let env = start_with(ChatPolicy {
        address_sessions: 3,
        ..ChatPolicy::default()
    })
    .await;
    for _ in 0..3 {
        env.new_chat().await;
    }
    let r = env
        .client
        .post(env.url("/api/chat/sessions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "too_many_sessions");
    let trail: Vec<String> = env
        .store
        .audit_records(0, 100_000)
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.event).into_owned())
        .collect();
    assert_eq!(
        trail
            .iter()
            .filter(|e| e.contains("web_chat_start throttled"))
            .count(),
        1
    );
    env.clock.advance(time::Duration::minutes(16));
    env.new_chat().await;
}

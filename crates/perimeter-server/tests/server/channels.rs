//! Patient channels over real HTTP on loopback with a real SQLite store, a ManualClock and a
//! fake Twilio Messages API (axum on loopback, recording every request, failing on demand):
//! signed SMS webhooks stored encrypted, matched, classified and routed; duplicates; bad
//! signatures; malformed, wrong-type and oversized bodies; STOP / START / HELP; unknown
//! senders; the emergency fast path; status callbacks; carrier retries; voicemail
//! transcripts; classifier failure (and panic) to a human queue; the staff API.
//!
//! The classifier here is a TEST DOUBLE (keyword rules written for these tests); the product
//! default is `perimeter-triage`'s built-in model (or, without it, none: every message then
//! fails closed to a human queue).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::Up;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::extract::State;
use axum::http::StatusCode as AxStatus;
use axum::response::IntoResponse;
use perimeter_auth::{ApiTokenScope, Permission, SessionPolicy, SessionStage, create_api_token};
use perimeter_crypto::KeyRing;
use perimeter_domain::{
    Clock, ManualClock, PatientId, PracticeId, PurposeOfUse, Role, SharedClock,
};
use perimeter_server::auth::{AuthSettings, AuthSlot, AuthState};
use perimeter_server::channels::twilio::{Form, signature};
use perimeter_server::channels::{ChannelSettings, Channels, Sender, TwilioClient, TwilioConfig};
use perimeter_server::{AppParts, HttpLimits, Metrics, ServerSettings, bind, build_app};
use perimeter_store::{
    AccessContext, DatabaseUrl, MatchKind, NewStaff, OutboxStatus, PatientData, RouteStatus, Store,
    StoreOptions,
};
use perimeter_workflows::{
    ChannelTexts, ClassifyError, IntakeClass, IntakeClassifier, Intent, Urgency,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

const TOKEN: &str = "test-auth-token-0123456789";
const SID: &str = "AC0123456789abcdef0123456789abcdef";
const PUBLIC: &str = "https://perimeter.example-practice.test";
const PATIENT_PHONE: &str = "+12025550142";

/// A keyword test double (NOT the product's classifier). `#fail` fails, `#panic` panics.
struct TestClassifier;

impl IntakeClassifier for TestClassifier {
    fn classify(&self, text: &str) -> Result<IntakeClass, ClassifyError> {
        let t = text.to_lowercase();
        if t.contains("#fail") {
            return Err(ClassifyError::Failed("test failure"));
        }
        if t.contains("#panic") {
            panic!("test classifier panic");
        }
        let (intent, urgency, emergency) = if t.contains("chest pain") || t.contains("kill myself")
        {
            (Intent::Emergency, Urgency::Emergency, true)
        } else if t.contains("appointment") || t.contains("reschedule") {
            (Intent::Scheduling, Urgency::Routine, false)
        } else if t.contains("results") {
            (Intent::Results, Urgency::Routine, false)
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

/// What the fake carrier received.
#[derive(Debug, Clone)]
struct Received {
    auth: Option<String>,
    path: String,
    form: Vec<(String, String)>,
}

#[derive(Clone, Default)]
struct Carrier {
    received: Arc<Mutex<Vec<Received>>>,
    /// Answer this many requests with 500 first.
    fail_5xx: Arc<AtomicU32>,
    /// Answer the next request with 400 and Twilio error 21610.
    refuse: Arc<AtomicU32>,
    count: Arc<AtomicU32>,
}

async fn fake_messages(
    State(c): State<Carrier>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let form = Form::parse(&body).unwrap();
    c.received.lock().unwrap().push(Received {
        auth: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        path: uri.path().to_owned(),
        form: form.params().to_vec(),
    });
    if c.fail_5xx
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (AxStatus::SERVICE_UNAVAILABLE, "{\"code\":20500}").into_response();
    }
    if c.refuse
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (
            AxStatus::BAD_REQUEST,
            "{\"code\":21610,\"message\":\"Attempt to send to unsubscribed recipient\"}",
        )
            .into_response();
    }
    let n = c.count.fetch_add(1, Ordering::SeqCst);
    (
        AxStatus::CREATED,
        axum::Json(json!({"sid": format!("SM{n:032x}"), "status": "queued"})),
    )
        .into_response()
}

async fn start_carrier() -> (Carrier, String) {
    let c = Carrier::default();
    let app = axum::Router::new()
        .route(
            "/2010-04-01/Accounts/{sid}/Messages.json",
            axum::routing::post(fake_messages),
        )
        .with_state(c.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (c, format!("http://{addr}"))
}

struct Env {
    base: String,
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

async fn start() -> Env {
    start_with(Arc::new(TestClassifier), None).await
}

/// [`start`] with another classifier and, optionally, the work API's settings.
async fn start_with(
    classifier: Arc<dyn IntakeClassifier>,
    work: Option<perimeter_server::work_api::WorkSettings>,
) -> Env {
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
                phone: Some("(202) 555-0142".into()),
                ..PatientData::default()
            },
        )
        .await
        .unwrap();
    let (carrier, carrier_url) = start_carrier().await;
    let twilio = TwilioConfig {
        account_sid: SID.into(),
        auth_token: zeroize::Zeroizing::new(TOKEN.into()),
        public_base_url: PUBLIC.into(),
        api_base_url: carrier_url,
        from_number: "+15550001111".into(),
        ca_pem: None,
        timeout: StdDuration::from_secs(5),
    };
    let channels = Channels::new(
        ChannelSettings {
            practice: None,
            twilio: Some(twilio.clone()),
            ..ChannelSettings::default()
        },
        classifier,
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
    let app = match work {
        Some(w) => app.with_work_settings(w),
        None => app,
    };
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
        carrier,
        client: reqwest::Client::new(),
        db,
        _shutdown: tx,
        _dir: dir,
    }
}

fn sms_form(sid: &str, from: &str, body: &str) -> Form {
    Form::from_pairs([
        ("ToCountry", "US"),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("MessageSid", sid),
        ("AccountSid", SID),
        ("From", from),
        ("To", "+15550001111"),
        ("Body", body),
        ("NumSegments", "1"),
        ("ApiVersion", "2010-04-01"),
    ])
}

impl Env {
    async fn post_form(&self, path: &str, form: &Form, sig: Option<&str>) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.encode());
        if let Some(s) = sig {
            req = req.header("x-twilio-signature", s);
        }
        req.send().await.unwrap()
    }

    async fn signed(&self, path: &str, form: &Form) -> reqwest::Response {
        let sig = signature(TOKEN.as_bytes(), &format!("{PUBLIC}{path}"), form);
        self.post_form(path, form, Some(&sig)).await
    }

    async fn sms(&self, sid: &str, from: &str, body: &str) -> (StatusCode, String) {
        let r = self
            .signed("/webhooks/twilio/sms", &sms_form(sid, from, body))
            .await;
        let status = r.status();
        if status == StatusCode::OK {
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/xml")
            );
        }
        (status, r.text().await.unwrap())
    }

    fn received(&self) -> Vec<Received> {
        self.carrier.received.lock().unwrap().clone()
    }

    async fn session(&self, role: Role) -> (String, String) {
        self.staff_session(role).await.1
    }

    /// A new member of staff with `role` and a signed-in session: (id, (cookie, csrf)).
    async fn staff_session(&self, role: Role) -> (perimeter_domain::StaffId, (String, String)) {
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
            id,
            (
                format!("perimeter_session={}", s.token.as_str()),
                s.record.csrf.as_str().to_owned(),
            ),
        )
    }

    async fn service_token(&self) -> String {
        let sys = AccessContext::system("test");
        let id = self
            .store
            .create_staff(
                &sys,
                self.practice,
                &NewStaff {
                    username: "voicebot".into(),
                    display_name: "Voice agent".into(),
                    roles: vec![Role::Service],
                    password_hash: None,
                },
            )
            .await
            .unwrap();
        let now = self.clock.now();
        let new = create_api_token(
            id,
            "voice",
            ApiTokenScope {
                permissions: [Permission::IngestChannel].into_iter().collect(),
                purposes: [PurposeOfUse::Operations].into_iter().collect(),
            },
            now + time::Duration::days(30),
            now,
        )
        .unwrap();
        let event = perimeter_auth::SecurityEvent::ApiTokenCreated {
            token: new.record.id,
        }
        .to_audit(
            perimeter_audit::Actor::System {
                component: "test".into(),
            },
            0,
            &Default::default(),
        );
        self.store
            .insert_api_token(&new.record, &event)
            .await
            .unwrap();
        new.token.as_str().to_owned()
    }

    fn raw_db(&self) -> Vec<u8> {
        let mut all = std::fs::read(&self.db).unwrap();
        if let Ok(w) = std::fs::read(self.db.with_extension("db-wal")) {
            all.extend(w);
        }
        all
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn texts() -> ChannelTexts {
    ChannelTexts::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_sms_is_stored_encrypted_matched_classified_routed_and_once() {
    let env = start().await;
    let sid = "SM0123456789abcdef0123456789abcdef";
    let (status, body) = env
        .sms(
            sid,
            PATIENT_PHONE,
            "Can I reschedule my Quixotic appointment?",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>",
        "no automatic reply to a routine message"
    );
    // A repeated delivery: the same answer, nothing stored twice.
    let (status2, body2) = env
        .sms(
            sid,
            PATIENT_PHONE,
            "Can I reschedule my Quixotic appointment?",
        )
        .await;
    assert_eq!((status2, body2), (StatusCode::OK, body));
    let items = env
        .store
        .list_inbound(env.practice, true, 100)
        .await
        .unwrap();
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item.match_kind, MatchKind::Patient);
    assert_eq!(item.patient_id, Some(env.patient));
    assert_eq!(item.intent.as_deref(), Some("scheduling"));
    assert_eq!(item.queue.as_deref(), Some("scheduling"));
    assert_eq!(item.route_status, RouteStatus::Routed);
    assert_eq!(
        item.due_at_millis,
        Some(env.clock.now_millis() + 480 * 60_000),
        "the scheduling service level from the injected clock"
    );
    let sys = AccessContext::system("test");
    let msgs = env
        .store
        .list_messages(&sys, item.conversation_id.unwrap(), None, 10)
        .await
        .unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].body, "Can I reschedule my Quixotic appointment?");
    // The conversation entered the staff work queues with the same routing, once.
    {
        use sqlx::Connection;
        let mut conn =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", env.db.display()))
                .await
                .unwrap();
        let rows: Vec<(String, Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT queue, intent, sla_due_at FROM conversation_work WHERE conversation_id = $1",
        )
        .bind(item.conversation_id.unwrap().to_string())
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            rows,
            vec![(
                "scheduling".to_owned(),
                Some("scheduling".to_owned()),
                item.due_at_millis
            )]
        );
        conn.close().await.unwrap();
    }
    let raw = env.raw_db();
    assert!(
        !contains(&raw, "Quixotic"),
        "the body is only ciphertext at rest"
    );
    assert!(!contains(&raw, "2025550142"));
    let metrics = env
        .client
        .get(format!("{}/metrics", env.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("perimeter_channel_events_total{event=\"inbound_duplicate\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_malformed_wrong_type_and_oversized_are_refused_and_store_nothing() {
    let env = start().await;
    let form = sms_form("SM0123456789abcdef0123456789abcde0", PATIENT_PHONE, "hello");
    let before = env.store.audit_records(0, 100_000).await.unwrap().len();
    // Missing, wrong, and signed for another URL.
    let r = env.post_form("/webhooks/twilio/sms", &form, None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = env
        .post_form(
            "/webhooks/twilio/sms",
            &form,
            Some("AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let other_url = signature(
        TOKEN.as_bytes(),
        "https://evil.test/webhooks/twilio/sms",
        &form,
    );
    let r = env
        .post_form("/webhooks/twilio/sms", &form, Some(&other_url))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_signature");
    // Tampered body with a signature over the original.
    let good = signature(
        TOKEN.as_bytes(),
        &format!("{PUBLIC}/webhooks/twilio/sms"),
        &form,
    );
    let tampered = sms_form("SM0123456789abcdef0123456789abcde0", PATIENT_PHONE, "hellO");
    let r = env
        .post_form("/webhooks/twilio/sms", &tampered, Some(&good))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        env.store
            .list_inbound(env.practice, true, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The refusals are audited as security events, without content.
    let records = env.store.audit_records(0, 100_000).await.unwrap();
    let denied: Vec<_> = records[before..]
        .iter()
        .map(|r| perimeter_audit::AuditEvent::from_canonical_bytes(&r.event).unwrap())
        .filter(|e| e.object.kind == "webhook")
        .collect();
    assert_eq!(denied.len(), 4);
    assert!(
        denied
            .iter()
            .all(|e| e.outcome == perimeter_audit::Outcome::Denied)
    );
    for r in &records[before..] {
        assert!(!contains(&r.event, "hello"));
        assert!(!contains(&r.event, "555"));
    }

    // Signed but malformed: 400 with a clear code.
    let no_sid = Form::from_pairs([("From", PATIENT_PHONE), ("Body", "hi")]);
    let r = env.signed("/webhooks/twilio/sms", &no_sid).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "malformed_webhook");
    assert_eq!(body["error"]["message"], "MessageSid is missing");
    let bad_from = sms_form("SM0123456789abcdef0123456789abcde1", "robert'); DROP", "hi");
    let r = env.signed("/webhooks/twilio/sms", &bad_from).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Invalid UTF-8 in the form body.
    let r = env
        .client
        .post(format!("{}/webhooks/twilio/sms", env.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", "x")
        .body("Body=%FF%FE&MessageSid=SM0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Not a form.
    let r = env
        .client
        .post(format!("{}/webhooks/twilio/sms", env.base))
        .json(&json!({"MessageSid": "SM0123456789"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Oversized.
    let big = sms_form(
        "SM0123456789abcdef0123456789abcde2",
        PATIENT_PHONE,
        &"x".repeat(70 * 1024),
    );
    let r = env.signed("/webhooks/twilio/sms", &big).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        env.store
            .list_inbound(env.practice, true, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_refuses_every_send_start_restores_help_answers() {
    let env = start().await;
    let t = texts();
    let (s, body) = env
        .sms("SM00000000000000000000000000000S01", PATIENT_PHONE, "Stop")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        body.contains(&format!("<Message>{}</Message>", t.stop)),
        "{body}"
    );
    assert!(
        env.store
            .is_opted_out(env.practice, PATIENT_PHONE)
            .await
            .unwrap()
    );
    let items = env
        .store
        .list_inbound(env.practice, false, 10)
        .await
        .unwrap();
    assert!(items.is_empty(), "a keyword is handled, not queued");
    let all = env
        .store
        .list_inbound(env.practice, true, 10)
        .await
        .unwrap();
    let conversation = all[0].conversation_id.unwrap();
    let sys = AccessContext::system("test");
    let refused = env
        .store
        .queue_conversation_reply(
            &sys,
            conversation,
            "Your visit is Friday",
            None,
            perimeter_domain::DataCategory::AdministrativeMessage,
        )
        .await;
    assert!(matches!(
        refused,
        Err(perimeter_store::StoreError::OptedOut)
    ));
    assert_eq!(env.sender.run_once().await.unwrap(), 0);
    assert!(env.received().is_empty(), "nothing reaches the carrier");
    // An emergency from an opted-out number: the fast path still alerts staff, but the
    // carrier gets nothing.
    env.sms(
        "SM00000000000000000000000000000S02",
        PATIENT_PHONE,
        "I have chest pain",
    )
    .await;
    env.sender.run_once().await.unwrap();
    assert!(env.received().is_empty());
    // START: opted back in, and replies go out.
    let (_, body) = env
        .sms("SM00000000000000000000000000000S03", PATIENT_PHONE, "START")
        .await;
    assert!(body.contains(&t.start));
    assert!(
        !env.store
            .is_opted_out(env.practice, PATIENT_PHONE)
            .await
            .unwrap()
    );
    let id = env
        .store
        .queue_conversation_reply(
            &sys,
            conversation,
            "Your visit is Friday",
            None,
            perimeter_domain::DataCategory::AdministrativeMessage,
        )
        .await
        .unwrap();
    assert_eq!(env.sender.run_once().await.unwrap(), 1);
    let got = env.received();
    assert_eq!(got.len(), 1);
    let form: std::collections::HashMap<_, _> = got[0].form.iter().cloned().collect();
    assert_eq!(form["To"], "(202) 555-0142");
    assert_eq!(form["From"], "+15550001111");
    assert_eq!(form["Body"], "Your visit is Friday");
    assert_eq!(
        form["StatusCallback"],
        format!("{PUBLIC}/webhooks/twilio/status")
    );
    assert_eq!(
        got[0].path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
    assert_eq!(
        got[0].auth.as_deref(),
        Some(format!("Basic {basic}").as_str())
    );
    assert_eq!(
        env.store
            .outbox_entry(env.practice, id)
            .await
            .unwrap()
            .status,
        OutboxStatus::Sent
    );
    let (_, body) = env
        .sms("SM00000000000000000000000000000S04", PATIENT_PHONE, "help")
        .await;
    assert_eq!(
        body,
        perimeter_server::channels::twilio::twiml(Some(&t.help))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sender_is_unverified_and_the_emergency_reply_reveals_nothing() {
    let env = start().await;
    let (s, body) = env
        .sms(
            "SM00000000000000000000000000000U01",
            "+12025550999",
            "what are my lab results",
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        body.ends_with("<Response/>"),
        "no automatic reply to an unknown sender"
    );
    let items = env
        .store
        .list_inbound(env.practice, false, 10)
        .await
        .unwrap();
    assert_eq!(items[0].match_kind, MatchKind::Unknown);
    assert!(items[0].needs_patient);
    assert!(items[0].patient_id.is_none() && items[0].conversation_id.is_none());
    assert_eq!(items[0].queue.as_deref(), Some("nurse_triage"));
    env.sender.run_once().await.unwrap();
    assert!(env.received().is_empty());
    // Routine first, then an emergency: the emergency jumps the queue.
    env.sms(
        "SM00000000000000000000000000000U02",
        "+12025550999",
        "I want to kill myself",
    )
    .await;
    let items = env
        .store
        .list_inbound(env.practice, false, 10)
        .await
        .unwrap();
    assert!(items[0].emergency);
    assert_eq!(items[0].priority, 0);
    assert_eq!(items[0].urgency.as_deref(), Some("emergency"));
    assert_eq!(env.sender.run_once().await.unwrap(), 1);
    let got = env.received();
    assert_eq!(got.len(), 1);
    let form: std::collections::HashMap<_, _> = got[0].form.iter().cloned().collect();
    assert_eq!(form["Body"], texts().emergency, "exactly the approved text");
    assert!(form["Body"].contains("911") && form["Body"].contains("988"));
    assert_eq!(form["To"], "+12025550999");
    // The on-call nurse and clinician are alerted (ids only).
    for role in [Role::Nurse, Role::Clinician] {
        let notes = env
            .store
            .notifications_for(env.practice, &[role], false, 10)
            .await
            .unwrap();
        assert_eq!(notes.len(), 1, "{role}");
        assert_eq!(notes[0].kind, "emergency_intake");
        assert!(!notes[0].payload.contains("kill"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_from_a_patient_is_sent_and_status_callbacks_update_the_outbox() {
    let env = start().await;
    env.sms(
        "SM00000000000000000000000000000E01",
        PATIENT_PHONE,
        "crushing chest pain since an hour",
    )
    .await;
    let items = env
        .store
        .list_inbound(env.practice, false, 10)
        .await
        .unwrap();
    assert!(items[0].emergency);
    assert_eq!(items[0].queue.as_deref(), Some("nurse_triage"));
    assert_eq!(env.sender.run_once().await.unwrap(), 1);
    let outbox = env.store.list_outbox(env.practice, None, 10).await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].purpose, "emergency");
    assert_eq!(outbox[0].status, OutboxStatus::Sent);
    let sid = outbox[0].provider_sid.clone().unwrap();
    // An unsigned callback changes nothing.
    let cb = Form::from_pairs([
        ("MessageSid", sid.as_str()),
        ("MessageStatus", "delivered"),
        ("AccountSid", SID),
    ]);
    let r = env
        .post_form("/webhooks/twilio/status", &cb, Some("bm9wZQ=="))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        env.store
            .outbox_entry(env.practice, outbox[0].id)
            .await
            .unwrap()
            .status,
        OutboxStatus::Sent
    );
    let r = env.signed("/webhooks/twilio/status", &cb).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        env.store
            .outbox_entry(env.practice, outbox[0].id)
            .await
            .unwrap()
            .status,
        OutboxStatus::Delivered
    );
    let malformed = Form::from_pairs([("MessageSid", sid.as_str())]);
    assert_eq!(
        env.signed("/webhooks/twilio/status", &malformed)
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carrier_failures_are_retried_with_backoff_on_the_injected_clock() {
    let env = start().await;
    env.carrier.fail_5xx.store(2, Ordering::SeqCst);
    let sys = AccessContext::system("test");
    env.sms(
        "SM00000000000000000000000000000R01",
        PATIENT_PHONE,
        "hi there",
    )
    .await;
    let conv = env
        .store
        .list_inbound(env.practice, true, 10)
        .await
        .unwrap()[0]
        .conversation_id
        .unwrap();
    let id = env
        .store
        .queue_conversation_reply(
            &sys,
            conv,
            "Hello!",
            None,
            perimeter_domain::DataCategory::AdministrativeMessage,
        )
        .await
        .unwrap();
    assert_eq!(env.sender.run_once().await.unwrap(), 1);
    let e = env.store.outbox_entry(env.practice, id).await.unwrap();
    assert_eq!(e.status, OutboxStatus::Queued);
    assert_eq!(e.attempts, 1);
    assert_eq!(e.last_error.as_deref(), Some("http_5xx"));
    assert_eq!(
        e.next_attempt_at_millis,
        Some(env.clock.now_millis() + 2000)
    );
    // Not due yet.
    assert_eq!(env.sender.run_once().await.unwrap(), 0);
    env.clock.advance(time::Duration::seconds(2));
    assert_eq!(env.sender.run_once().await.unwrap(), 1);
    let e = env.store.outbox_entry(env.practice, id).await.unwrap();
    assert_eq!((e.status, e.attempts), (OutboxStatus::Queued, 2));
    env.clock.advance(time::Duration::seconds(4));
    assert_eq!(env.sender.run_once().await.unwrap(), 1);
    let e = env.store.outbox_entry(env.practice, id).await.unwrap();
    assert_eq!((e.status, e.attempts), (OutboxStatus::Sent, 3));
    assert_eq!(env.received().len(), 3);
    // A carrier refusal (400, error 21610) is not retried.
    env.carrier.refuse.store(1, Ordering::SeqCst);
    let id2 = env
        .store
        .queue_conversation_reply(
            &sys,
            conv,
            "Again",
            None,
            perimeter_domain::DataCategory::AdministrativeMessage,
        )
        .await
        .unwrap();
    env.sender.run_once().await.unwrap();
    let e = env.store.outbox_entry(env.practice, id2).await.unwrap();
    assert_eq!(e.status, OutboxStatus::Failed);
    assert_eq!(e.last_error.as_deref(), Some("carrier_21610_unsubscribed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classifier_failure_or_panic_lands_in_a_human_queue_and_is_recorded() {
    let env = start().await;
    for (sid, text) in [
        ("SM00000000000000000000000000000F01", "my results #fail"),
        ("SM00000000000000000000000000000F02", "my results #panic"),
    ] {
        let (s, _) = env.sms(sid, PATIENT_PHONE, text).await;
        assert_eq!(s, StatusCode::OK, "acknowledged once durable");
    }
    let items = env
        .store
        .list_inbound(env.practice, false, 10)
        .await
        .unwrap();
    assert_eq!(items.len(), 2);
    for i in &items {
        assert_eq!(i.route_status, RouteStatus::Fallback);
        assert_eq!(i.queue.as_deref(), Some("nurse_triage"));
        assert_eq!(i.failure.as_deref(), Some("classifier_failed"));
        assert_eq!(i.urgency.as_deref(), Some("urgent"));
    }
    let events: Vec<_> = env
        .store
        .audit_records(0, 100_000)
        .await
        .unwrap()
        .iter()
        .map(|r| perimeter_audit::AuditEvent::from_canonical_bytes(&r.event).unwrap())
        .filter(|e| e.detail.as_deref() == Some("fallback:classifier_failed"))
        .collect();
    assert_eq!(events.len(), 2);
    let metrics = env
        .client
        .get(format!("{}/metrics", env.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("perimeter_channel_events_total{event=\"intake_fallback\"} 2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voicemail_transcripts_are_taken_as_json_only_never_audio() {
    let env = start().await;
    let token = env.service_token().await;
    let url = format!("{}/api/intake/voicemail", env.base);
    let body = json!({
        "caller": PATIENT_PHONE,
        "transcript": "Hi, this is Grace, I need to reschedule my appointment",
        "started_at": "2026-01-01T10:00:00Z",
        "ended_at": "2026-01-01T10:00:40Z",
        "call_id": "CA0123456789abcdef"
    });
    let r = env
        .client
        .post(&url)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["queue"], "scheduling");
    assert_eq!(v["duplicate"], false);
    let r = env
        .client
        .post(&url)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["duplicate"], true);
    let mut with_audio = body.clone();
    with_audio["audio_base64"] = json!("UklGRg==");
    let r = env
        .client
        .post(&url)
        .bearer_auth(&token)
        .json(&with_audio)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "audio_not_accepted"
    );
    let r = env
        .client
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "audio/wav")
        .body(vec![0u8; 64])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut bad = body.clone();
    bad["ended_at"] = json!("2025-01-01T10:00:00Z");
    bad["call_id"] = json!("CA2");
    let r = env
        .client
        .post(&url)
        .bearer_auth(&token)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = env
        .client
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({"caller": PATIENT_PHONE}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Staff sessions cannot post transcripts.
    let (cookie, csrf) = env.session(Role::FrontDesk).await;
    let r = env
        .client
        .post(&url)
        .header("cookie", cookie)
        .header("x-csrf-token", csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let items = env
        .store
        .list_inbound(env.practice, false, 10)
        .await
        .unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].channel, "voice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_pick_the_patient_of_a_shared_number_and_manage_representatives() {
    let env = start().await;
    let sys = AccessContext::system("test");
    for given in ["Ann", "Bob"] {
        env.store
            .create_patient(
                &sys,
                env.practice,
                &PatientData {
                    given_name: given.into(),
                    family_name: "Family".into(),
                    phone: Some("+1 202 555 0160".into()),
                    ..PatientData::default()
                },
            )
            .await
            .unwrap();
    }
    env.sms(
        "SM00000000000000000000000000000P01",
        "+12025550160",
        "appointment for my son",
    )
    .await;
    let (cookie, csrf) = env.session(Role::FrontDesk).await;
    let r = env
        .client
        .get(format!("{}/api/intake/inbound", env.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    let item = &v["items"][0];
    assert_eq!(item["match_kind"], "shared_number");
    assert_eq!(item["needs_patient"], true);
    assert!(
        !v.to_string().contains("son"),
        "the list holds no message text"
    );
    let id = item["id"].as_str().unwrap();
    let r = env
        .client
        .post(format!("{}/api/intake/inbound/{id}/patient", env.base))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"patient_id": env.patient.to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Representatives: front desk registers one; the next message from that number is flagged.
    let r = env
        .client
        .post(format!("{}/api/patients/{}/representatives", env.base, env.patient))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "Kim Carer", "phone": "+1 202 555 0170", "relationship": "caregiver", "verified": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = env
        .client
        .get(format!(
            "{}/api/patients/{}/representatives",
            env.base, env.patient
        ))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["representatives"][0]["relationship"], "caregiver");
    env.sms(
        "SM00000000000000000000000000000P02",
        "+12025550170",
        "about grace",
    )
    .await;
    let items = env
        .store
        .list_inbound(env.practice, false, 10)
        .await
        .unwrap();
    assert!(
        items
            .iter()
            .any(|i| i.match_kind == MatchKind::Representative && i.needs_patient)
    );
    // Admin sees opt-outs (no numbers) but not the intake list.
    let (acookie, acsrf) = env.session(Role::Admin).await;
    env.sms("SM00000000000000000000000000000P03", "+12025550170", "STOP")
        .await;
    let r = env
        .client
        .get(format!("{}/api/channels/opt-outs", env.base))
        .header("cookie", &acookie)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["opt_outs"].as_array().unwrap().len(), 1);
    assert!(!v.to_string().contains("555"));
    let r = env
        .client
        .post(format!("{}/api/channels/opt-outs/lookup", env.base))
        .header("cookie", &acookie)
        .header("x-csrf-token", &acsrf)
        .json(&json!({"phone": "(202) 555-0170"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["opted_out"], true);
    let r = env
        .client
        .get(format!("{}/api/intake/inbound", env.base))
        .header("cookie", &acookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

/// The conversation's row in the staff work queues: (queue, intent), if any.
async fn work_row(env: &Env, conversation: &str) -> Option<(String, Option<String>)> {
    use sqlx::Connection;
    let mut conn =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", env.db.display()))
            .await
            .unwrap();
    let row =
        sqlx::query_as("SELECT queue, intent FROM conversation_work WHERE conversation_id = $1")
            .bind(conversation)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
    conn.close().await.unwrap();
    row
}

/// Replies to an appointment reminder by SMS: `C` confirms it (no staff work is made of the
/// confirmation), `R` asks to reschedule (the conversation goes to the scheduling queue), and
/// the same letter with no reminder awaiting a reply is an ordinary message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_c_and_r_answer_the_appointment_reminder() {
    use perimeter_store::{NewTemplate, TemplateKind, Viewer};
    let owned = start().await;
    let env = &owned;
    let sys = AccessContext::system("test");
    let mut staff = Vec::new();
    for (name, role) in [("admin1", Role::Admin), ("sched1", Role::Scheduler)] {
        let id = env
            .store
            .create_staff(
                &sys,
                env.practice,
                &NewStaff {
                    username: name.into(),
                    display_name: name.into(),
                    roles: vec![role],
                    password_hash: None,
                },
            )
            .await
            .unwrap();
        staff.push(Viewer::new(id));
    }
    let (admin, sched) = (&staff[0], &staff[1]);
    let t = env
        .store
        .create_template(
            admin,
            &NewTemplate {
                name: "reminder".into(),
                kind: TemplateKind::Reminder,
                body: "{{given_name}}: {{practice_name}} on {{appointment_date}} at {{appointment_time}}. Reply C to confirm or R to reschedule.".into(),
                auto_send_intents: vec![],
            },
        )
        .await
        .unwrap();
    env.store.approve_template(admin, t.id).await.unwrap();
    let send = || async move {
        let now = env.store.clock().now();
        env.store
            .schedule_reminder(
                sched,
                env.patient,
                t.id,
                now + time::Duration::days(2),
                time::Duration::days(3),
            )
            .await
            .unwrap();
        let sent = env
            .store
            .send_due_reminders(&AccessContext::system("reminders"), 10)
            .await
            .unwrap();
        assert_eq!(sent.len(), 1);
        sent[0].conversation.to_string()
    };
    let status = |n: usize| async move {
        let list = env.store.list_reminders(sched, env.patient).await.unwrap();
        let mut s: Vec<String> = list.into_iter().map(|r| r.status).collect();
        s.sort();
        assert_eq!(s.len(), n);
        s
    };

    let conv = send().await;
    let (code, _) = env
        .sms("SM00000000000000000000000000c0nf1", PATIENT_PHONE, "C")
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(status(1).await, vec!["confirmed"]);
    assert_eq!(
        work_row(env, &conv).await,
        None,
        "a confirmation is not staff work"
    );

    let conv2 = send().await;
    assert_eq!(
        conv2, conv,
        "the reminder goes to the open SMS conversation"
    );
    let (code, _) = env
        .sms("SM00000000000000000000000000resch1", PATIENT_PHONE, " r ")
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(status(2).await, vec!["confirmed", "reschedule_requested"]);
    assert_eq!(
        work_row(env, &conv).await,
        Some(("scheduling".to_owned(), Some("scheduling".to_owned())))
    );

    // Nothing awaits a reply now: a "C" is an ordinary message, routed as the classifier says.
    let (code, _) = env
        .sms("SM00000000000000000000000000plain1", PATIENT_PHONE, "C")
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(status(2).await, vec!["confirmed", "reschedule_requested"]);
    assert_eq!(
        work_row(env, &conv).await,
        Some(("front_desk".to_owned(), Some("general".to_owned())))
    );
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
        metrics.contains("event=\"reminder_confirmed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("event=\"reminder_reschedule\"} 1"),
        "{metrics}"
    );
}

/// The whole loop over real HTTP with the real database and the product's classifier: SMS in
/// (signed), matched, classified and routed; summarised by a vendor without a BAA that records
/// every byte (no identifier reaches it); a nurse sees the clinical conversation and a draft is
/// refused for it; a scheduler has a draft made for the scheduling message and approves it; the
/// reply goes out through the fake carrier; the audit trail shows every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_to_reply_end_to_end_with_every_step_audited() {
    use crate::upstream::{Behaviour, FakeUpstream, Style};
    use perimeter_store::{KeyInput, VendorClass, VendorInput};
    let classifier = perimeter_triage::Classifier::builtin().unwrap();
    let env = start_with(
        Arc::new(classifier),
        Some(perimeter_server::work_api::WorkSettings {
            summary_model: Some("coordinator-model".into()),
            draft_model: Some("coordinator-model".into()),
            ..Default::default()
        }),
    )
    .await;
    let vendor = FakeUpstream::start(Behaviour::Echo(Style::default())).await;
    env.store
        .add_vendor(
            &AccessContext::system("test"),
            &VendorInput {
                name: "acme".into(),
                base_url: vendor.base_url(),
                models: vec!["coordinator-model".into()],
                data_class: VendorClass::Deidentified,
                baa: None,
                zero_retention: true,
                no_training: true,
                soc2_report_date: None,
                soc2_expires: None,
                sub_processors: Vec::new(),
                inside_perimeter: false,
                enabled: true,
                key: KeyInput::Keep,
            },
        )
        .await
        .unwrap();
    let call =
        |method: reqwest::Method, path: String, s: &(String, String), body: Option<Value>| {
            let mut req = env
                .client
                .request(method, format!("{}{path}", env.base))
                .header("cookie", &s.0)
                .header("x-csrf-token", &s.1);
            if let Some(b) = body {
                req = req.json(&b);
            }
            async move {
                let r = req.send().await.unwrap();
                let st = r.status();
                (st, r.json::<Value>().await.unwrap_or(Value::Null))
            }
        };

    // Two SMS from the patient on file.
    let clinical_text = "Hi, this is Grace Hopper. My ankle has been swollen for three days and it hurts to walk. Should I come in?";
    let scheduling_text =
        "Hi, this is Grace Hopper. Can I reschedule my appointment on Thursday to next week?";
    let (st, _) = env
        .sms(
            "SM00000000000000000000000000e2e001",
            PATIENT_PHONE,
            clinical_text,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let items = env
        .store
        .list_inbound(env.practice, true, 10)
        .await
        .unwrap();
    let clinical = items[0].conversation_id.unwrap();
    assert_eq!(items[0].match_kind, MatchKind::Patient);
    assert_eq!(
        items[0].queue.as_deref(),
        Some("nurse_triage"),
        "{:?}",
        items[0].intent
    );
    // The clinical conversation is closed before the next message opens a new one.
    let (nurse_id, nurse) = env.staff_session(Role::Nurse).await;
    env.store
        .assign_care(&AccessContext::system("test"), env.patient, nurse_id)
        .await
        .unwrap();
    let (st, q) = call(
        reqwest::Method::GET,
        "/api/queues/nurse_triage".into(),
        &nurse,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{q}");
    assert!(
        q["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["conversation_id"] == clinical.to_string()),
        "the nurse sees it: {q}"
    );
    let (st, sum) = call(
        reqwest::Method::POST,
        format!("/api/conversations/{clinical}/summary"),
        &nurse,
        Some(json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{sum}");
    assert_eq!(sum["method"], "ai", "{sum}");
    assert_eq!(sum["sent_as"], "pseudonymized");
    assert!(
        sum["summary"].as_str().unwrap().contains("Grace Hopper"),
        "{sum}"
    );
    let (st, e) = call(
        reqwest::Method::POST,
        format!("/api/conversations/{clinical}/drafts"),
        &nurse,
        Some(json!({"source": "ai"})),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(
        e["error"]["code"]
            .as_str()
            .unwrap()
            .starts_with("draft_refused"),
        "{e}"
    );
    let (st, _) = call(
        reqwest::Method::POST,
        format!("/api/conversations/{clinical}/status"),
        &nurse,
        Some(json!({"status": "closed"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);

    let (st, _) = env
        .sms(
            "SM00000000000000000000000000e2e002",
            PATIENT_PHONE,
            scheduling_text,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let items = env
        .store
        .list_inbound(env.practice, true, 10)
        .await
        .unwrap();
    let item = items
        .iter()
        .find(|i| i.queue.as_deref() == Some("scheduling"))
        .expect("routed to scheduling");
    assert_eq!(item.intent.as_deref(), Some("scheduling"));
    let sched_conv = item.conversation_id.unwrap();
    let sched = env.session(Role::Scheduler).await;
    let (st, d) = call(
        reqwest::Method::POST,
        format!("/api/conversations/{sched_conv}/drafts"),
        &sched,
        Some(json!({"source": "ai"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    let draft = d["id"].as_str().unwrap().to_owned();
    let (st, a) = call(
        reqwest::Method::POST,
        format!("/api/drafts/{draft}/approve"),
        &sched,
        Some(json!({"body": "Hi Grace, we can offer Tuesday at 10. Reply YES to book."})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert_eq!(env.sender.run_once().await.unwrap(), 1);
    let sent = env.received();
    let last = sent.last().unwrap();
    assert!(
        last.form
            .iter()
            .any(|(k, v)| k == "Body"
                && v == "Hi Grace, we can offer Tuesday at 10. Reply YES to book."),
        "{:?}",
        last.form
    );
    assert!(
        last.form.iter().any(|(k, v)| k == "To"
            && v.chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
                .ends_with("2025550142")),
        "to the phone on file: {:?}",
        last.form
    );

    // The vendor never saw who it was about.
    for r in vendor.received() {
        let body = String::from_utf8_lossy(&r.body).into_owned();
        for id in ["Grace", "Hopper", "2025550142", "555-0142"] {
            assert!(!body.contains(id), "{id} reached the vendor: {body}");
        }
    }
    assert_eq!(vendor.received().len(), 2, "one summary, one draft");

    // Every step is in the trail, without text.
    let trail: Vec<String> = env
        .store
        .audit_records(0, 100_000)
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.event).into_owned())
        .collect();
    let has = |needle: &str| trail.iter().filter(|e| e.contains(needle)).count();
    assert!(has("channel_inbound") >= 2, "inbound receipts");
    assert_eq!(has("summarize_for_coordinator"), 1, "the summary's AI call");
    assert_eq!(has("draft_administrative_reply"), 1, "the draft's AI call");
    assert!(has("work_queue") >= 1, "the nurse's queue read");
    assert!(
        has("approved_by") >= 1,
        "the outbound message with its approver"
    );
    assert!(has("draft_refused") >= 1, "the refused clinical draft");
    for e in &trail {
        assert!(
            !e.contains("ankle") && !e.contains("Hopper"),
            "text in the trail: {e}"
        );
    }
}

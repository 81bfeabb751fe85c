//! The work API over real HTTP on loopback with a real SQLite store and a ManualClock, on the
//! application `perimeter serve` runs (`build_app`): a nurse sees a clinical conversation in
//! nurse triage, a draft is refused for it, a scheduler approves a draft for a scheduling
//! message, an administrator's template goes out automatically for its intent only, notes are
//! audited and visible only to permitted roles, the SLA sweep escalates with the manual clock,
//! reminders are sent and C/R replies handled, summaries are extractive and local, and the
//! OpenAPI document lists exactly the routes the server has.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::Up;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use perimeter_audit::{AuditEvent, Outcome};
use perimeter_auth::{SessionPolicy, SessionStage};
use perimeter_crypto::KeyRing;
use perimeter_domain::{
    Clock, ConversationId, DataCategory, ManualClock, PatientId, Role, SharedClock, StaffId,
};
use perimeter_server::auth::{AuthSettings, AuthSlot, AuthState};
use perimeter_server::{AppParts, HttpLimits, Metrics, RouteSpec, ServerSettings, bind, build_app};
use perimeter_store::{
    AccessContext, Channel, DatabaseUrl, Direction, NewMessage, NewStaff, PatientData, Store,
    StoreOptions, Triage,
};
use perimeter_workflows::{EscalationRules, Intent, Queue, ServiceLevels, Urgency};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::Duration;
use tokio::sync::oneshot;

struct Session {
    cookie: String,
    csrf: String,
}

struct Env {
    base: String,
    clock: ManualClock,
    store: Store,
    staff: HashMap<Role, StaffId>,
    patient: PatientId,
    routes: Vec<RouteSpec>,
    client: reqwest::Client,
    _shutdown: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Env {
    start_with(None).await
}

/// [`start`] with `assist.summary_model` and `assist.draft_model` set to `summary_model`.
async fn start_with(summary_model: Option<&str>) -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_2026();
    let shared: SharedClock = Arc::new(clock.clone());
    let mut opts = StoreOptions::new(DatabaseUrl::Sqlite(dir.path().join("p.db")));
    opts.acquire_timeout = StdDuration::from_secs(5);
    let store = Store::connect(&opts, KeyRing::generate().unwrap(), shared.clone())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let sys = AccessContext::system("test");
    let practice = store.create_practice(&sys, "Harbor Clinic").await.unwrap();
    let mut staff = HashMap::new();
    for role in [
        Role::Admin,
        Role::Clinician,
        Role::Nurse,
        Role::Scheduler,
        Role::Billing,
        Role::FrontDesk,
        Role::Auditor,
    ] {
        let id = store
            .create_staff(
                &sys,
                practice,
                &NewStaff {
                    username: role.as_str().replace('_', "-"),
                    display_name: role.as_str().into(),
                    roles: vec![role],
                    password_hash: None,
                },
            )
            .await
            .unwrap();
        staff.insert(role, id);
    }
    let patient = store
        .create_patient(
            &sys,
            practice,
            &PatientData {
                given_name: "Grace".into(),
                family_name: "Hopper".into(),
                phone: Some("(202) 555-0142".into()),
                mrn: Some("MRN-0042".into()),
                ..PatientData::default()
            },
        )
        .await
        .unwrap();
    let app = build_app(AppParts {
        readiness: Arc::new(Up),
        clock: shared.clone(),
        metrics: Metrics::new(),
        limits: HttpLimits::default(),
        auth: AuthSlot::ready(AuthState::new(
            store.clone(),
            shared.clone(),
            AuthSettings::default(),
        )),
        audit: Default::default(),
        extra_routes: Vec::new(),
    })
    .unwrap()
    .with_work_settings(perimeter_server::work_api::WorkSettings {
        summary_model: summary_model.map(str::to_owned),
        draft_model: summary_model.map(str::to_owned),
        ..Default::default()
    });
    let routes = app.routes().to_vec();
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
        staff,
        patient,
        routes,
        client: reqwest::Client::new(),
        _shutdown: tx,
        _dir: dir,
    }
}

impl Env {
    async fn session(&self, role: Role) -> Session {
        let s = SessionPolicy::default()
            .start(
                self.staff[&role],
                SessionStage::Authenticated,
                self.clock.now(),
            )
            .unwrap();
        self.store.insert_session(&s.record).await.unwrap();
        Session {
            cookie: format!("perimeter_session={}", s.token.as_str()),
            csrf: s.record.csrf.as_str().to_owned(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        s: &Session,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("cookie", &s.cookie)
            .header("x-csrf-token", &s.csrf);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, s: &Session) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, s, None).await
    }

    async fn post(&self, path: &str, s: &Session, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, s, Some(body)).await
    }

    /// A conversation with one inbound message, classified as intake would.
    async fn inbound(&self, text: &str, intent: Intent, urgency: Urgency) -> ConversationId {
        let sys = AccessContext::system("test");
        let c = self
            .store
            .create_conversation(&sys, self.patient, Channel::Sms, None)
            .await
            .unwrap();
        self.clock.advance(Duration::seconds(1));
        let category = if matches!(
            intent,
            Intent::Clinical | Intent::Emergency | Intent::Results
        ) {
            DataCategory::ClinicalMessage
        } else {
            DataCategory::AdministrativeMessage
        };
        self.store
            .add_message(
                &sys,
                c,
                &NewMessage {
                    direction: Direction::Inbound,
                    author: None,
                    category,
                    body: text.into(),
                },
            )
            .await
            .unwrap();
        let t = Triage::with_levels(
            Some(intent),
            urgency,
            intent.default_queue(),
            &ServiceLevels::default(),
            self.clock.now(),
        );
        self.store
            .set_triage(&AccessContext::system("intake"), c, &t)
            .await
            .unwrap();
        c
    }

    async fn events(&self) -> Vec<AuditEvent> {
        self.store
            .audit_records(0, 100_000)
            .await
            .unwrap()
            .iter()
            .map(|r| AuditEvent::from_canonical_bytes(&r.event).unwrap())
            .collect()
    }

    async fn template(&self, admin: &Session, body: Value) -> String {
        let (st, t) = self.post("/api/templates", admin, body).await;
        assert_eq!(st, StatusCode::CREATED, "{t}");
        let id = t["id"].as_str().unwrap().to_owned();
        let (st, t) = self
            .post(&format!("/api/templates/{id}/approve"), admin, json!({}))
            .await;
        assert_eq!(st, StatusCode::OK, "{t}");
        assert_eq!(t["active"], true);
        id
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nurse_triage_refused_clinical_draft_and_approved_scheduling_draft() {
    let env = start().await;
    let nurse = env.session(Role::Nurse).await;
    let sched = env.session(Role::Scheduler).await;
    let fd = env.session(Role::FrontDesk).await;
    let admin = env.session(Role::Admin).await;
    let clinical = env
        .inbound(
            "The wheezing got worse at night and my inhaler is not helping",
            Intent::Clinical,
            Urgency::Urgent,
        )
        .await;
    let scheduling = env
        .inbound(
            "Can we move Tuesday's visit to Thursday morning?",
            Intent::Scheduling,
            Urgency::Routine,
        )
        .await;

    // The nurse sees it in nurse triage (metadata: no names, no bodies).
    let (st, q) = env.get("/api/queues/nurse_triage", &nurse).await;
    assert_eq!(st, StatusCode::OK, "{q}");
    let items = q["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["conversation_id"], clinical.to_string());
    assert_eq!(items[0]["intent"], "clinical");
    assert_eq!(items[0]["urgency"], "urgent");
    let text = q.to_string();
    assert!(!text.contains("Grace") && !text.contains("wheezing"));
    // A scheduler does not work nurse triage; a bad queue name is a clear 400.
    assert_eq!(
        env.get("/api/queues/nurse_triage", &sched).await.0,
        StatusCode::FORBIDDEN
    );
    let (st, e) = env.get("/api/queues/cardiology", &nurse).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_queue"))
    );

    // Front desk assigns it to the nurse, who can then read the clinical message.
    let (st, w) = env
        .call(
            reqwest::Method::PUT,
            &format!("/api/conversations/{clinical}/assignee"),
            &fd,
            Some(json!({"staff_id": env.staff[&Role::Nurse].to_string()})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{w}");
    let (st, c) = env
        .get(&format!("/api/conversations/{clinical}"), &nurse)
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["work"]["assignee"], env.staff[&Role::Nurse].to_string());
    assert!(
        c["thread"]["messages"][0]["body"]
            .as_str()
            .unwrap()
            .contains("wheezing")
    );
    // The scheduler opening it sees the metadata, not the clinical body.
    let (_, c) = env
        .get(&format!("/api/conversations/{clinical}"), &sched)
        .await;
    assert_eq!(c["thread"]["messages"][0]["withheld"], true);
    assert!(!c.to_string().contains("wheezing"));

    // Templates are an administrator's.
    let body = json!({"name": "move-visit", "kind": "reply", "body": "Hi {{given_name}}, {{practice_name}} can see you Thursday at 9:30. Reply YES to confirm."});
    assert_eq!(
        env.post("/api/templates", &sched, body.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    let (st, e) = env
        .post(
            "/api/templates",
            &admin,
            json!({"name": "x", "kind": "reply", "body": "Hi {{ssn}}"}),
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_template"))
    );
    let tid = env.template(&admin, body).await;

    // A draft is refused for the clinical message: 422, recorded as denied.
    let (st, e) = env
        .post(
            &format!("/api/conversations/{clinical}/drafts"),
            &nurse,
            json!({"template_id": tid}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["code"], "draft_refused_not_administrative");
    let (st, e) = env
        .post(
            &format!("/api/conversations/{clinical}/drafts"),
            &nurse,
            json!({"source": "ai"}),
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("draft_refused_not_administrative")
        )
    );
    let denied = env
        .events()
        .await
        .into_iter()
        .filter(|e| {
            e.outcome == Outcome::Denied
                && e.detail.as_deref() == Some("draft_refused_not_administrative")
        })
        .count();
    assert_eq!(denied, 2);

    // A scheduler drafts for the scheduling message and approves it (edited).
    let (st, d) = env
        .post(
            &format!("/api/conversations/{scheduling}/drafts"),
            &sched,
            json!({"template_id": tid}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    assert_eq!(d["status"], "pending");
    assert_eq!(
        d["body"],
        "Hi Grace, Harbor Clinic can see you Thursday at 9:30. Reply YES to confirm."
    );
    let did = d["id"].as_str().unwrap().to_owned();
    let (st, d) = env
        .post(
            &format!("/api/drafts/{did}/approve"),
            &sched,
            json!({"body": "Hi Grace, Thursday at 9:30 works. Reply YES to confirm."}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{d}");
    assert_eq!(d["status"], "sent");
    assert_eq!(d["decided_by"], env.staff[&Role::Scheduler].to_string());
    let out = env
        .store
        .outbound_replies(&AccessContext::system("test"), Some("queued"), 10)
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].approved_by, Some(env.staff[&Role::Scheduler]));
    let needle = format!("outbound approved_by={}", env.staff[&Role::Scheduler]);
    assert!(
        env.events()
            .await
            .iter()
            .any(|e| e.detail.as_deref() == Some(needle.as_str()))
    );
    let (_, c) = env
        .get(&format!("/api/conversations/{scheduling}"), &sched)
        .await;
    assert_eq!(c["work"]["status"], "waiting_on_patient");
    let msgs = c["thread"]["messages"].as_array().unwrap();
    assert_eq!(msgs.last().unwrap()["direction"], "outbound");
    assert_eq!(
        msgs.last().unwrap()["body"],
        "Hi Grace, Thursday at 9:30 works. Reply YES to confirm."
    );
    // Approving again is a clear 422; a bad reject reason too.
    assert_eq!(
        env.post(&format!("/api/drafts/{did}/approve"), &sched, json!({}))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        env.post(
            &format!("/api/drafts/{did}/reject"),
            &sched,
            json!({"reason": "meh"})
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // Status changes and bad input.
    let (st, _) = env
        .post(
            &format!("/api/conversations/{scheduling}/status"),
            &sched,
            json!({"status": "closed"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, e) = env
        .post(
            &format!("/api/conversations/{scheduling}/status"),
            &sched,
            json!({"status": "waiting_on_patient"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (st, _) = env
        .post(
            &format!("/api/conversations/{scheduling}/status"),
            &sched,
            json!({"status": "done"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        env.get("/api/conversations/not-a-uuid", &sched).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        env.get(
            &format!("/api/conversations/{}", ConversationId::new()),
            &sched
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_send_notes_summary_sweep_and_reminders() {
    let env = start().await;
    let admin = env.session(Role::Admin).await;
    let billing = env.session(Role::Billing).await;
    let sched = env.session(Role::Scheduler).await;
    let nurse = env.session(Role::Nurse).await;
    let auditor = env.session(Role::Auditor).await;

    // An administrator lets a billing template go out automatically for billing only.
    let (st, e) = env
        .post("/api/templates", &admin, json!({"name": "c", "kind": "reply", "body": "Take two.", "auto_send_intents": ["clinical"]}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let tid = env
        .template(&admin, json!({"name": "billing-hours", "kind": "reply", "body": "Billing is open 9 to 5 on weekdays.", "auto_send_intents": ["billing"]}))
        .await;
    let bill = env
        .inbound(
            "When can I call about my bill?",
            Intent::Billing,
            Urgency::Routine,
        )
        .await;
    let (st, d) = env
        .post(
            &format!("/api/conversations/{bill}/drafts"),
            &billing,
            json!({"template_id": tid}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    assert_eq!(d["status"], "sent");
    assert!(d["decided_by"].is_null());
    let general = env
        .inbound("Do you have parking?", Intent::General, Urgency::Routine)
        .await;
    let fd = env.session(Role::FrontDesk).await;
    let (_, d) = env
        .post(
            &format!("/api/conversations/{general}/drafts"),
            &fd,
            json!({"template_id": tid}),
        )
        .await;
    assert_eq!(
        d["status"], "pending",
        "not listed for general: waits for a person"
    );

    // Notes: audited, visible only to permitted roles.
    let (st, n) = env
        .post(
            &format!("/api/conversations/{bill}/notes"),
            &billing,
            json!({"body": "Balance plan offered"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{n}");
    let (st, _) = env
        .post(
            &format!("/api/conversations/{bill}/notes"),
            &billing,
            json!({"body": "x", "category": "clinical_message"}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = env
        .post(
            &format!("/api/conversations/{bill}/notes"),
            &billing,
            json!({"body": "a\u{202e}b"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, l) = env
        .get(&format!("/api/conversations/{bill}/notes"), &sched)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(l["notes"][0]["body"], "Balance plan offered");
    assert_eq!(
        env.get(&format!("/api/conversations/{bill}/notes"), &admin)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        env.get(&format!("/api/conversations/{bill}/notes"), &auditor)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let ev = env.events().await;
    assert!(ev.iter().any(|e| e.object.kind == "conversation_note"
        && e.categories == vec![DataCategory::InternalNote]));
    assert!(
        ev.iter()
            .all(|e| !format!("{e:?}").contains("Balance plan"))
    );

    // Summary: extractive, from what the caller may see.
    let clinical = env
        .inbound(
            "My ankle is swollen. It hurts when I walk. Should I come in today?",
            Intent::Clinical,
            Urgency::Routine,
        )
        .await;
    let (st, s) = env
        .post(
            &format!("/api/conversations/{clinical}/summary"),
            &sched,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{s}");
    assert_eq!(
        (s["method"].as_str(), s["withheld"].as_u64()),
        (Some("extractive"), Some(1))
    );
    assert!(s["sentences"].as_array().unwrap().is_empty());
    env.store
        .assign_care(
            &AccessContext::system("test"),
            env.patient,
            env.staff[&Role::Nurse],
        )
        .await
        .unwrap();
    let (_, s) = env
        .post(
            &format!("/api/conversations/{clinical}/summary"),
            &nurse,
            json!({}),
        )
        .await;
    let sentences: Vec<&str> = s["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        !sentences.is_empty()
            && sentences.iter().all(|x| {
                "My ankle is swollen. It hurts when I walk. Should I come in today?".contains(x)
            }),
        "{sentences:?}"
    );

    // The SLA sweep escalates with the manual clock (nurse triage: 4 hours).
    let rules = EscalationRules::default();
    let tasks = perimeter_server::work_tasks::WorkTasks::spawn(
        {
            let store = env.store.clone();
            move || Some(store.clone())
        },
        perimeter_server::work_tasks::WorkTaskSettings {
            rules,
            ..Default::default()
        },
        StdDuration::from_millis(20),
    );
    env.clock.advance(Duration::minutes(241));
    // Sessions time out when idle that long: log in again.
    let nurse = env.session(Role::Nurse).await;
    let sched = env.session(Role::Scheduler).await;
    let admin = env.session(Role::Admin).await;
    let billing = env.session(Role::Billing).await;
    let mut escalated = false;
    for _ in 0..200 {
        let (_, q) = env.get("/api/queues/clinician", &nurse).await;
        if q["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["conversation_id"] == clinical.to_string())
        {
            escalated = true;
            assert_eq!(q["items"][0]["escalated_from"], "nurse_triage");
            assert_eq!(q["items"][0]["overdue"], true);
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert!(escalated, "the sweep escalated the overdue conversation");

    // Reminders: scheduled over HTTP, sent by the task when due, C and R handled.
    let rid = env
        .template(&admin, json!({"name": "reminder", "kind": "reminder", "body": "{{given_name}}: {{practice_name}} on {{appointment_date}} at {{appointment_time}}. Reply C to confirm, R to reschedule."}))
        .await;
    let appt = env.clock.now() + Duration::days(2);
    let at = appt
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (st, e) = env
        .post(
            &format!("/api/patients/{}/reminders", env.patient),
            &billing,
            json!({"template_id": rid, "appointment_at": at}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    let (st, r) = env
        .post(
            &format!("/api/patients/{}/reminders", env.patient),
            &sched,
            json!({"template_id": rid, "appointment_at": at, "lead_hours": 24}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!(r["tier"], "first_visit");
    let (st, _) = env
        .post(
            &format!("/api/patients/{}/reminders", env.patient),
            &sched,
            json!({"template_id": rid, "appointment_at": "next tuesday"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    env.clock.advance(Duration::days(1) + Duration::minutes(1));
    let sched = env.session(Role::Scheduler).await;
    let mut sent = None;
    for _ in 0..200 {
        let (_, l) = env
            .get(&format!("/api/patients/{}/reminders", env.patient), &sched)
            .await;
        if l["reminders"][0]["status"] == "sent" {
            sent = l["reminders"][0]["conversation_id"]
                .as_str()
                .map(str::to_owned);
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    tasks.finish().await;
    let conv: ConversationId = sent.expect("the reminder task sent it").parse().unwrap();
    let levels = ServiceLevels::default();
    let ctx = AccessContext::system("intake");
    let got = env
        .store
        .record_reminder_reply(&ctx, conv, "C", &levels)
        .await
        .unwrap();
    assert!(got.is_some());
    let (_, l) = env
        .get(&format!("/api/patients/{}/reminders", env.patient), &sched)
        .await;
    assert_eq!(l["reminders"][0]["status"], "confirmed");
    let msgs = env
        .store
        .list_messages(&AccessContext::system("test"), conv, None, 10)
        .await
        .unwrap();
    assert!(
        msgs.iter().any(|m| m.direction == Direction::Outbound
            && m.body.starts_with("Grace: Harbor Clinic on "))
    );
    // Queue names in the conversation list are snake_case queue names.
    assert_eq!(Queue::NurseTriage.name(), "nurse_triage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_exactly_the_routes_the_server_has() {
    let env = start().await;
    let r = env
        .client
        .get(format!("{}/api/openapi.json", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().await.unwrap();
    // A valid OpenAPI 3.0 document (parsed by the openapiv3 crate's model).
    let parsed: openapiv3::OpenAPI = serde_json::from_value(doc.clone()).unwrap();
    assert!(parsed.openapi.starts_with("3.0"));
    let mut documented = BTreeSet::new();
    for (path, item) in &parsed.paths.paths {
        let openapiv3::ReferenceOr::Item(item) = item else {
            panic!("{path} is a reference")
        };
        for (method, op) in item.iter() {
            documented.insert((method.to_ascii_uppercase(), path.clone()));
            assert!(op.operation_id.is_some(), "{method} {path}");
            for param in &op.parameters {
                let openapiv3::ReferenceOr::Item(p) = param else {
                    panic!()
                };
                assert!(path.contains(&format!("{{{}}}", p.parameter_data_ref().name)));
            }
        }
    }
    let served: BTreeSet<(String, String)> = env
        .routes
        .iter()
        .map(|r| (r.method.as_str().to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(
        documented, served,
        "the document and the route table differ"
    );
    // Every route's access is stated: permission and roles, or public with no security.
    for route in &env.routes {
        let op = &doc["paths"][route.path][route.method.as_str().to_ascii_lowercase()];
        assert_eq!(
            op["x-perimeter-access"],
            route.access.to_string(),
            "{}",
            route.path
        );
        match route.access {
            perimeter_server::Access::Public => assert_eq!(op["security"], json!([])),
            perimeter_server::Access::Permission(p) => {
                assert_eq!(op["x-perimeter-permission"], p.as_str());
                assert_eq!(op["security"], json!([{"session": []}, {"bearer": []}]));
                let roles: Vec<&str> = perimeter_auth::authz::roles_with(p)
                    .iter()
                    .map(|r| r.as_str())
                    .collect();
                assert_eq!(op["x-perimeter-roles"], json!(roles));
            }
            perimeter_server::Access::PatientChat => {
                assert_eq!(op["security"], json!([{"chat_session": []}]));
            }
            _ => assert_eq!(op["security"], json!([{"session": []}])),
        }
    }
    for p in [
        "/api/queues/{queue}",
        "/api/conversations/{id}/drafts",
        "/api/templates",
        "/api/openapi.json",
        "/api/patients/{id}",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p}");
    }
    assert!(!doc.to_string().contains("Grace"));
}

/// A summary written by a vendor WITHOUT a BAA, through the gateway: the fake vendor (real
/// HTTP on loopback, recording every byte) receives the conversation pseudonymised (no name,
/// no number), the scheduler who asked gets it back re-identified, the call is audited with
/// them as the initiating human; a vendor that may receive nothing is refused by the policy
/// and the extractive summary is given with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ai_summaries_go_through_the_gateway_pseudonymised_without_a_baa() {
    use crate::upstream::{Behaviour, FakeUpstream, Style};
    use perimeter_store::{KeyInput, VendorClass, VendorInput};
    let env = start_with(Some("summary-model")).await;
    let fake = FakeUpstream::start(Behaviour::Echo(Style::default())).await;
    let vendor = |class: VendorClass| VendorInput {
        name: "acme".into(),
        base_url: fake.base_url(),
        models: vec!["summary-model".into()],
        data_class: class,
        baa: None,
        zero_retention: true,
        no_training: true,
        soc2_report_date: None,
        soc2_expires: None,
        sub_processors: Vec::new(),
        inside_perimeter: false,
        enabled: true,
        key: KeyInput::Keep,
    };
    let sys = AccessContext::system("test");
    env.store
        .add_vendor(&sys, &vendor(VendorClass::Deidentified))
        .await
        .unwrap();
    let text = "This is Grace Hopper, please call me at 202-555-0142 to move my appointment.";
    let c = env
        .inbound(text, Intent::Scheduling, Urgency::Routine)
        .await;
    let sched = env.session(Role::Scheduler).await;
    let (st, s) = env
        .post(
            &format!("/api/conversations/{c}/summary"),
            &sched,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{s}");
    assert_eq!(s["method"], "ai", "{s}");
    assert_eq!(s["vendor"], "acme");
    assert_eq!(s["sent_as"], "pseudonymized");
    let summary = s["summary"].as_str().unwrap();
    assert!(
        summary.contains("Grace Hopper") && summary.contains("202-555-0142"),
        "re-identified for the scheduler: {summary}"
    );
    let got = fake.received();
    assert_eq!(got.len(), 1);
    let sent = String::from_utf8_lossy(&got[0].body).into_owned();
    for id in ["Grace", "Hopper", "555-0142", "5550142"] {
        assert!(!sent.contains(id), "{id} reached the vendor: {sent}");
    }
    assert!(sent.contains("appointment"), "{sent}");
    // Audited: an AI call initiated by the scheduler, naming vendor and model, no text.
    let records = env.store.audit_records(0, 100_000).await.unwrap();
    let calls: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.event).into_owned())
        .filter(|e| e.contains("ai_call"))
        .collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(
        calls[0].contains("summarize_for_coordinator"),
        "{}",
        calls[0]
    );
    assert!(calls[0].contains(&env.staff[&Role::Scheduler].to_string()));
    assert!(!calls[0].contains("Hopper"));

    // A vendor that may receive nothing: refused, recorded, nothing sent.
    env.store
        .update_vendor(&sys, "acme", &vendor(VendorClass::None))
        .await
        .unwrap();
    fake.clear();
    let (st, s) = env
        .post(
            &format!("/api/conversations/{c}/summary"),
            &sched,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{s}");
    assert_eq!(
        (s["method"].as_str(), s["ai_error"].as_str()),
        (Some("extractive"), Some("policy_refused"))
    );
    assert!(!s["sentences"].as_array().unwrap().is_empty());
    assert!(fake.received().is_empty());
}

/// AI drafts through the gateway: refused for a clinical conversation before any AI call; for
/// a scheduling message the vendor without a BAA gets it pseudonymised and the draft (restored)
/// waits for approval; an answer that gives clinical advice is blocked by the guardrail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ai_drafts_are_administrative_pseudonymised_checked_and_wait_for_approval() {
    use crate::upstream::{Behaviour, FakeUpstream, Style};
    use perimeter_store::{KeyInput, VendorClass, VendorInput};
    let env = start_with(Some("summary-model")).await;
    let echo = FakeUpstream::start(Behaviour::Echo(Style::default())).await;
    let advice = FakeUpstream::start(Behaviour::Say(
        "You should take 800 mg of ibuprofen three times a day for the swelling.".into(),
        Style::default(),
    ))
    .await;
    let vendor = |url: String| VendorInput {
        name: "acme".into(),
        base_url: url,
        models: vec!["summary-model".into()],
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
    };
    let sys = AccessContext::system("test");
    env.store
        .add_vendor(&sys, &vendor(echo.base_url()))
        .await
        .unwrap();
    let sched = env.session(Role::Scheduler).await;
    let nurse = env.session(Role::Nurse).await;

    let clinical = env
        .inbound(
            "My ankle is swollen and hurts.",
            Intent::Clinical,
            Urgency::Routine,
        )
        .await;
    let (st, e) = env
        .post(
            &format!("/api/conversations/{clinical}/drafts"),
            &nurse,
            json!({"source": "ai"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["code"], "draft_refused_not_administrative");
    assert!(
        echo.received().is_empty(),
        "nothing is sent for a clinical conversation"
    );

    let text = "This is Grace Hopper, can I move my appointment to Friday? Call 202-555-0142.";
    let c = env
        .inbound(text, Intent::Scheduling, Urgency::Routine)
        .await;
    let (st, d) = env
        .post(
            &format!("/api/conversations/{c}/drafts"),
            &sched,
            json!({"source": "ai"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    assert_eq!(d["status"], "pending", "{d}");
    let body = d["body"].as_str().unwrap();
    assert!(
        body.contains("Grace Hopper"),
        "re-identified for staff: {body}"
    );
    let sent = String::from_utf8_lossy(&echo.received()[0].body).into_owned();
    for id in ["Grace", "Hopper", "555-0142"] {
        assert!(!sent.contains(id), "{id} reached the vendor: {sent}");
    }

    // A model that answers with clinical advice: blocked, no draft.
    env.store
        .update_vendor(&sys, "acme", &vendor(advice.base_url()))
        .await
        .unwrap();
    let (st, e) = env
        .post(
            &format!("/api/conversations/{c}/drafts"),
            &sched,
            json!({"source": "ai"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["code"], "draft_blocked_by_guardrail");
    let (_, list) = env
        .get(&format!("/api/conversations/{c}/drafts"), &sched)
        .await;
    assert_eq!(list["drafts"].as_array().unwrap().len(), 1, "{list}");
}

/// A background pass also does the web chat's housekeeping: a session idle past its limit is
/// ended by the pass (not only when its patient comes back), audited as Perimeter's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_pass_ends_idle_chat_sessions() {
    use perimeter_server::work_tasks::{WorkTaskSettings, run_once};
    let env = start().await;
    let practice = env.store.list_practices().await.unwrap()[0].id;
    let (_, hash) = perimeter_store::new_chat_token().unwrap();
    let settings = WorkTaskSettings::default();
    env.store
        .start_chat_session(
            &perimeter_store::chat_context(None),
            practice,
            &hash,
            &settings.chat,
            &perimeter_store::chat_start_subject("192.0.2.7"),
        )
        .await
        .unwrap()
        .unwrap();
    let quiet = run_once(&env.store, &settings).await.unwrap();
    assert_eq!(quiet.chat.sessions_ended, 0);
    env.clock.advance(Duration::minutes(16));
    let pass = run_once(&env.store, &settings).await.unwrap();
    assert_eq!(pass.chat.sessions_ended, 1);
    let size = env.store.audit_head().await.unwrap().unwrap().size;
    let last = env.store.audit_records(size - 1, 1).await.unwrap();
    let event = AuditEvent::from_canonical_bytes(&last[0].event).unwrap();
    assert_eq!(
        event.actor,
        perimeter_audit::Actor::System {
            component: "chat_housekeeping".into()
        }
    );
    assert_eq!(event.detail.as_deref(), Some("idle"));
}

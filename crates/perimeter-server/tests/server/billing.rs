//! Coverages and billing accounts over real HTTP on loopback (`build_app`, SQLite, a
//! ManualClock): billing and the front desk record coverages, billing alone sets the account,
//! each role's patient view carries only its categories, search by member id and account
//! number, bad input gets a clear 400/422/413 and changes nothing, and the OpenAPI document
//! lists the routes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::Up;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use perimeter_audit::AuditEvent;
use perimeter_auth::{SessionPolicy, SessionStage};
use perimeter_crypto::KeyRing;
use perimeter_domain::{Clock, DataCategory, ManualClock, PatientId, Role, SharedClock, StaffId};
use perimeter_server::auth::{AuthSettings, AuthSlot, AuthState};
use perimeter_server::{AppParts, HttpLimits, Metrics, ServerSettings, bind, build_app};
use perimeter_store::{AccessContext, DatabaseUrl, NewStaff, PatientData, Store, StoreOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};
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
    client: reqwest::Client,
    _shutdown: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Env {
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
    let practice = store.create_practice(&sys, "Ledger Clinic").await.unwrap();
    let mut staff = HashMap::new();
    for role in [
        Role::Admin,
        Role::Clinician,
        Role::Nurse,
        Role::Scheduler,
        Role::Billing,
        Role::FrontDesk,
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
                given_name: "Ada".into(),
                family_name: "Ledger".into(),
                phone: Some("(202) 555-0161".into()),
                mrn: Some("MRN-0061".into()),
                ..PatientData::default()
            },
        )
        .await
        .unwrap();
    for role in [Role::Clinician, Role::Nurse] {
        store
            .assign_care(&sys, patient, staff[&role])
            .await
            .unwrap();
    }
    let app = build_app(AppParts {
        readiness: Arc::new(Up),
        clock: shared.clone(),
        metrics: Metrics::new(),
        limits: HttpLimits {
            max_body_bytes: 16 * 1024,
            ..HttpLimits::default()
        },
        auth: AuthSlot::ready(AuthState::new(
            store.clone(),
            shared.clone(),
            AuthSettings::default(),
        )),
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
    Env {
        base,
        clock,
        store,
        staff,
        patient,
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

    async fn put(&self, path: &str, s: &Session, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PUT, path, s, Some(body)).await
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
}

fn coverage_body(member: &str) -> Value {
    json!({
        "payer": "Harbor Mutual",
        "plan": "Harbor Gold PPO",
        "member_id": member,
        "group_number": "G-100",
        "relationship": "self",
        "effective_from": "2026-01-01",
        "primary": true
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coverages_and_accounts_by_role_over_http() {
    let env = start().await;
    let p = env.patient;
    let billing = env.session(Role::Billing).await;
    let desk = env.session(Role::FrontDesk).await;

    // The front desk records a coverage (201); billing sets the account.
    let (st, c) = env
        .post(
            &format!("/api/patients/{p}/coverages"),
            &desk,
            coverage_body("HM-4410-77"),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    assert_eq!(c["member_id"], "HM-4410-77");
    assert_eq!(c["relationship"], "self");
    assert_eq!(c["primary"], true);
    let cid = c["id"].as_str().unwrap().to_owned();
    let (st, a) = env
        .put(
            &format!("/api/patients/{p}/account"),
            &billing,
            json!({"account_number": "AC-90210", "balance_cents": 4250, "last_statement": "2026-02-01"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert_eq!(a["balance_cents"], 4250);
    // The front desk may not set the account.
    let (st, _) = env
        .put(
            &format!("/api/patients/{p}/account"),
            &desk,
            json!({"account_number": "AC-1", "balance_cents": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Patient views: billing both, front desk coverage only, others neither (absent).
    let (st, v) = env.get(&format!("/api/patients/{p}"), &billing).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["coverages"][0]["payer"], "Harbor Mutual");
    assert_eq!(v["account"]["account_number"], "AC-90210");
    let (_, v) = env.get(&format!("/api/patients/{p}"), &desk).await;
    assert_eq!(v["coverages"][0]["member_id"], "HM-4410-77");
    assert!(v.get("account").is_none(), "{v}");
    assert!(!v.to_string().contains("AC-90210"));
    for role in [Role::Scheduler, Role::Nurse, Role::Clinician] {
        let s = env.session(role).await;
        let (st, v) = env.get(&format!("/api/patients/{p}"), &s).await;
        assert_eq!(st, StatusCode::OK, "{role}");
        assert!(
            v.get("coverages").is_none() && v.get("account").is_none(),
            "{role}: {v}"
        );
        let text = v.to_string();
        assert!(
            !text.contains("HM-4410") && !text.contains("Harbor Mutual"),
            "{role}"
        );
        for path in [
            format!("/api/patients/{p}/coverages"),
            format!("/api/patients/{p}/account"),
        ] {
            let (st, _) = env.get(&path, &s).await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{role} {path}");
        }
        let (st, _) = env
            .post(
                &format!("/api/patients/{p}/coverages"),
                &s,
                coverage_body("NOPE-1"),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{role}");
    }
    // The audit record of each view lists exactly the categories disclosed.
    let reads: Vec<AuditEvent> = env
        .events()
        .await
        .into_iter()
        .filter(|e| e.object.kind == "patient" && e.action == perimeter_audit::Action::Read)
        .collect();
    assert_eq!(reads.len(), 5);
    assert!(reads[0].categories.contains(&DataCategory::Billing));
    assert!(reads[1].categories.contains(&DataCategory::Insurance));
    assert!(!reads[1].categories.contains(&DataCategory::Billing));
    for e in &reads[2..] {
        assert!(
            !e.categories.contains(&DataCategory::Insurance)
                && !e.categories.contains(&DataCategory::Billing)
        );
    }

    // Dedicated reads, update and end.
    let (st, list) = env
        .get(&format!("/api/patients/{p}/coverages"), &desk)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["coverages"].as_array().unwrap().len(), 1);
    let mut changed = coverage_body("HM-4410-78");
    changed["relationship"] = json!("spouse");
    let (st, c) = env
        .put(
            &format!("/api/patients/{p}/coverages/{cid}"),
            &billing,
            changed,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["relationship"], "spouse");
    let (st, c) = env
        .post(
            &format!("/api/patients/{p}/coverages/{cid}/end"),
            &billing,
            json!({"effective_to": "2026-06-30"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["effective_to"], "2026-06-30");
    assert_eq!(c["primary"], false);
    let (st, a) = env
        .get(&format!("/api/patients/{p}/account"), &billing)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(a["account"]["balance_cents"], 4250);

    // Search by member id and account number, each needing its category.
    let (st, r) = env
        .get("/api/patients?member_id=hm%204410%2078", &desk)
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["patients"][0]["id"], p.to_string());
    let (st, _) = env
        .get("/api/patients?account_number=AC-90210", &desk)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, r) = env
        .get("/api/patients?account_number=ac90210", &billing)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(r["patients"].as_array().unwrap().len(), 1);
    let sched = env.session(Role::Scheduler).await;
    let (st, _) = env.get("/api/patients?member_id=HM-4410-78", &sched).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = env
        .get("/api/patients?member_id=HM-1&account_number=AC-1", &billing)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_coverage_and_account_input_is_refused_and_changes_nothing() {
    let env = start().await;
    let p = env.patient;
    let billing = env.session(Role::Billing).await;
    let before = env.events().await.len();
    let path = format!("/api/patients/{p}/coverages");
    for (body, field) in [
        (json!({"payer": "", "member_id": "M-1"}), "payer"),
        (
            json!({"payer": "Evil\u{202e}Payer", "member_id": "M-1"}),
            "payer",
        ),
        (json!({"payer": "P", "member_id": "M/1!"}), "member_id"),
        (json!({"payer": "P", "member_id": "１２３"}), "member_id"),
        (
            json!({"payer": "P", "member_id": "M-1", "relationship": "cousin"}),
            "relationship",
        ),
        (
            json!({"payer": "P", "member_id": "M-1", "effective_from": "01/02/2026"}),
            "effective_from",
        ),
        (
            json!({"payer": "P", "member_id": "M-1", "effective_from": "2026-05-01", "effective_to": "2026-04-01"}),
            "effective_to",
        ),
        (
            json!({"payer": "x".repeat(101), "member_id": "M-1"}),
            "payer",
        ),
    ] {
        let (st, e) = env.post(&path, &billing, body).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().starts_with(field),
            "{field}: {e}"
        );
        assert!(!e.to_string().contains("Evil") && !e.to_string().contains("M/1"));
    }
    // Unknown fields and missing required ones: a client error, nothing stored.
    let (st, _) = env
        .post(
            &path,
            &billing,
            json!({"payer": "P", "member_id": "M-1", "ssn": "123"}),
        )
        .await;
    assert!(st.is_client_error(), "{st}");
    let (st, _) = env.post(&path, &billing, json!({"payer": "P"})).await;
    assert!(st.is_client_error(), "{st}");
    // Bad ids: 400.
    let (st, _) = env
        .post(
            "/api/patients/not-a-uuid/coverages",
            &billing,
            coverage_body("M-1"),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = env
        .put(
            &format!("/api/patients/{p}/coverages/nope"),
            &billing,
            coverage_body("M-1"),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // The account: balance out of range, bad number, bad date.
    let acct = format!("/api/patients/{p}/account");
    for (body, field) in [
        (
            json!({"account_number": "A-1", "balance_cents": 1_000_000_001_i64}),
            "balance_cents",
        ),
        (
            json!({"account_number": "A 1 ?", "balance_cents": 0}),
            "account_number",
        ),
        (
            json!({"account_number": "A-1", "balance_cents": 0, "last_statement": "2026-13-01"}),
            "last_statement",
        ),
    ] {
        let (st, e) = env.put(&acct, &billing, body).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().starts_with(field),
            "{e}"
        );
    }
    let (st, _) = env
        .put(
            &acct,
            &billing,
            json!({"account_number": "A-1", "balance_cents": "ten"}),
        )
        .await;
    assert!(st.is_client_error());
    // A huge body: 413.
    let (st, _) = env
        .post(
            &path,
            &billing,
            json!({"payer": "P", "member_id": "M-1", "plan": "x".repeat(100_000)}),
        )
        .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    // Nothing was stored and nothing was audited.
    assert_eq!(env.events().await.len(), before);
    let (st, list) = env.get(&path, &billing).await;
    assert_eq!(st, StatusCode::OK);
    assert!(list["coverages"].as_array().unwrap().is_empty());
    let (_, a) = env.get(&acct, &billing).await;
    assert!(a["account"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_the_billing_routes_with_their_permissions() {
    let env = start().await;
    let r = env
        .client
        .get(format!("{}/api/openapi.json", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().await.unwrap();
    let text = doc.to_string();
    for (path, method, perm) in [
        ("/api/patients/{id}/coverages", "get", "view_insurance"),
        ("/api/patients/{id}/coverages", "post", "manage_insurance"),
        (
            "/api/patients/{id}/coverages/{coverage_id}",
            "put",
            "manage_insurance",
        ),
        (
            "/api/patients/{id}/coverages/{coverage_id}/end",
            "post",
            "manage_insurance",
        ),
        ("/api/patients/{id}/account", "get", "view_billing"),
        ("/api/patients/{id}/account", "put", "manage_billing"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing");
        assert!(op.to_string().contains(perm), "{method} {path}: {op}");
    }
    assert!(text.contains("manage_billing"));
}

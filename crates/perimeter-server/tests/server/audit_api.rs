//! The audit trail over real HTTP on loopback, with a temporary SQLite store: who may query,
//! filters and paging, the accounting of disclosures, FHIR and CSV exports, verification,
//! and that every one of these requests is itself audited with the signed-in user as actor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::Up;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use perimeter_audit::checkpoint::ORIGIN;
use perimeter_audit::checkpointer::{Checkpointer, CheckpointerConfig};
use perimeter_audit::export::FhirOptions;
use perimeter_audit::schedule::Policy;
use perimeter_audit::{Action, Actor, AuditEvent, ObjectRef, Outcome};
use perimeter_auth::{Permission, SessionPolicy, SessionStage, allowed, hash_password};
use perimeter_crypto::KeyRing;
use perimeter_domain::{
    Clock, ManualClock, PatientId, PracticeId, PurposeOfUse, Role, SharedClock, StaffId,
};
use perimeter_server::audit_api::AuditApiSettings;
use perimeter_server::auth::{AuthSettings, AuthState};
use perimeter_server::{
    Access, AppParts, AuthSlot, HttpLimits, Metrics, RouteSpec, ServerSettings, bind, build_app,
};
use perimeter_store::{AccessContext, DatabaseUrl, NewStaff, PatientData, Store, StoreOptions};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection;
use tokio::sync::oneshot;

const PASSWORD: &str = "correct horse battery staple";

struct Env {
    base: String,
    clock: ManualClock,
    store: Store,
    users: HashMap<Role, StaffId>,
    patients: Vec<PatientId>,
    routes: Vec<RouteSpec>,
    client: reqwest::Client,
    checkpoints: tempfile::TempDir,
    db_path: std::path::PathBuf,
    _shutdown: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_2026();
    let shared: SharedClock = Arc::new(clock.clone());
    let db_path = dir.path().join("p.db");
    let mut opts = StoreOptions::new(DatabaseUrl::Sqlite(db_path.clone()));
    opts.acquire_timeout = StdDuration::from_secs(5);
    let store = Store::connect(&opts, KeyRing::generate().unwrap(), shared.clone())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let sys = AccessContext::system("test");
    let practice: PracticeId = store.create_practice(&sys, "Test Practice").await.unwrap();
    let hash = hash_password(PASSWORD).unwrap();
    let mut users = HashMap::new();
    for &role in Role::ALL {
        let id = store
            .create_staff(
                &sys,
                practice,
                &NewStaff {
                    username: role.as_str().replace('_', ""),
                    display_name: role.as_str().into(),
                    roles: vec![role],
                    password_hash: Some(hash.clone()),
                },
            )
            .await
            .unwrap();
        users.insert(role, id);
    }
    // The front desk registers the patients (register_patient, checked by the store).
    let front_desk = AccessContext::user(
        users[&Role::FrontDesk],
        vec![Role::FrontDesk],
        PurposeOfUse::Operations,
    );
    let mut patients = Vec::new();
    for i in 0..3 {
        let p = store
            .create_patient(
                &front_desk,
                practice,
                &PatientData {
                    given_name: format!("Grace{i}"),
                    family_name: "Hopper".into(),
                    ..PatientData::default()
                },
            )
            .await
            .unwrap();
        // Reads by Perimeter's own intake (full reads are not for staff, who use the views).
        let intake = AccessContext::system("intake");
        for _ in 0..4 {
            store.get_patient(&intake, p).await.unwrap();
        }
        patients.push(p);
    }
    // Two disclosures of the first patient (to an AI vendor), one of the second.
    for p in [patients[0], patients[0], patients[1]] {
        store
            .append_audit(&[AuditEvent {
                at_millis: clock.now_millis(),
                actor: Actor::Ai {
                    provider: "vendor".into(),
                    model: "m-1".into(),
                    initiated_by: Some(users[&Role::Clinician]),
                },
                action: Action::Disclose,
                object: ObjectRef {
                    kind: "message".into(),
                    id: None,
                },
                patient: Some(p),
                categories: vec![],
                purpose: Some(PurposeOfUse::Treatment),
                outcome: Outcome::Success,
                detail: Some("ai_summary".into()),
                client_addr: None,
                user_agent: None,
                request_id: None,
            }])
            .await
            .unwrap();
    }

    // The production assembly (every route module), as `perimeter serve` builds it.
    let limits = HttpLimits {
        max_body_bytes: 16 * 1024,
        request_timeout: StdDuration::from_secs(20),
    };
    let auth = AuthState::new(store.clone(), shared.clone(), AuthSettings::default());
    let app = build_app(AppParts {
        readiness: Arc::new(Up),
        clock: shared,
        metrics: Metrics::new(),
        limits,
        auth: AuthSlot::ready(auth),
        audit: AuditApiSettings {
            checkpoint_dir: Some(checkpoints.path().to_owned()),
            grace_millis: 60_000,
            fhir: FhirOptions {
                server_name: "perimeter".into(),
                server_address: Some("clinic-host".into()),
            },
        },
        extra_routes: Vec::new(),
    })
    .unwrap();
    let table = app.routes().to_vec();
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
        users,
        patients,
        routes: table,
        client: reqwest::Client::new(),
        checkpoints,
        db_path,
        _shutdown: tx,
        _dir: dir,
    }
}

impl Env {
    /// An authenticated session for `role`'s user, created in the store.
    async fn session(&self, role: Role) -> String {
        let s = SessionPolicy::default()
            .start(
                self.users[&role],
                SessionStage::Authenticated,
                self.clock.now(),
            )
            .unwrap();
        self.store.insert_session(&s.record).await.unwrap();
        format!("perimeter_session={}", s.token.as_str())
    }

    async fn get(&self, path: &str, cookie: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .header("user-agent", "audit-test/1")
            .send()
            .await
            .unwrap()
    }

    async fn json(&self, path: &str, cookie: &str) -> Value {
        let r = self.get(path, cookie).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.json().await.unwrap()
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

    /// The self-audit events with this detail code, by this user.
    async fn self_audits(&self, detail: &str, role: Role) -> Vec<AuditEvent> {
        self.events()
            .await
            .into_iter()
            .filter(|e| e.detail.as_deref() == Some(detail))
            .filter(|e| matches!(&e.actor, Actor::User { user, .. } if *user == self.users[&role]))
            .collect()
    }
}

fn seqs(page: &Value) -> Vec<u64> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_auditors_and_privacy_officers_reach_the_audit_routes() {
    let env = start().await;
    let audit: Vec<&RouteSpec> = env
        .routes
        .iter()
        .filter(|r| r.path.starts_with("/api/audit/"))
        .collect();
    assert_eq!(audit.len(), 4);
    let expected = [
        ("/api/audit/events", Permission::ReadAudit),
        (
            "/api/audit/patients/{id}/disclosures",
            Permission::ReadAudit,
        ),
        ("/api/audit/export", Permission::ExportAudit),
        ("/api/audit/verify", Permission::VerifyAudit),
    ];
    for (path, perm) in expected {
        let r = audit.iter().find(|r| r.path == path).unwrap();
        assert_eq!(r.access, Access::Permission(perm), "{path}");
    }
    let concrete = |path: &str| {
        path.replace("{id}", &env.patients[0].to_string())
            + if path.ends_with("export") {
                "?format=csv"
            } else {
                ""
            }
    };
    for r in &audit {
        let url = format!("{}{}", env.base, concrete(r.path));
        let anon = env.client.get(&url).send().await.unwrap();
        assert_eq!(anon.status(), StatusCode::UNAUTHORIZED, "{}", r.path);
        let Access::Permission(perm) = r.access else {
            panic!("{} is not permission-checked", r.path)
        };
        // Service clients hold API tokens, not sessions; the route x role walk in tests/auth.rs
        // covers them on every route.
        for &role in Role::ALL.iter().filter(|r| **r != Role::Service) {
            let cookie = env.session(role).await;
            let status = env.get(&concrete(r.path), &cookie).await.status();
            if allowed(&[role], perm) {
                assert!(
                    matches!(role, Role::Auditor | Role::PrivacyOfficer),
                    "{role} holds {perm}"
                );
                assert_eq!(status, StatusCode::OK, "{role} on {}", r.path);
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{role} on {}", r.path);
            }
        }
    }
    // Each refusal is audited as a denied permission; nothing the refused roles asked for was
    // queried (no audit_query event by them).
    let denied = env
        .events()
        .await
        .into_iter()
        .filter(|e| e.outcome == Outcome::Denied && e.object.kind == "permission")
        .count();
    assert_eq!(
        denied,
        4 * (Role::ALL.len() - 3),
        "every refused role but the service client"
    );
    assert!(env.self_audits("audit_query", Role::Nurse).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_filtered_paged_and_every_query_is_audited() {
    let env = start().await;
    let cookie = env.session(Role::Auditor).await;
    let p = env.patients[0];
    // By patient, two at a time: create, four reads, two disclosures = 7 records.
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/audit/events?patient={p}&limit=2&cursor={c}"),
            None => format!("/api/audit/events?patient={p}&limit=2"),
        };
        let page = env.json(&path, &cookie).await;
        pages += 1;
        assert_eq!(page["limit"], 2);
        for e in page["events"].as_array().unwrap() {
            assert_eq!(e["event"]["patient"], p.to_string());
            assert_eq!(e["leaf_hash"].as_str().unwrap().len(), 64);
            assert!(e["recorded"].as_str().unwrap().starts_with("2026-"));
        }
        all.extend(seqs(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10);
    }
    // Seven records about the patient; each page's own audit record (Execute, patient set)
    // joins the patient's trail too, so later pages see the earlier queries.
    assert!(all.len() >= 7, "{all:?}");
    assert!(all.windows(2).all(|w| w[0] < w[1]), "ascending, no repeats");
    // Every page was audited, with the auditor as actor and the request's metadata.
    let audits = env.self_audits("audit_query", Role::Auditor).await;
    assert_eq!(audits.len(), pages);
    for a in &audits {
        assert_eq!(a.action, Action::Execute);
        assert_eq!(a.patient, Some(p));
        assert_eq!(a.client_addr.as_deref(), Some("127.0.0.1"));
        assert_eq!(a.user_agent.as_deref(), Some("audit-test/1"));
        assert!(a.request_id.is_some());
    }
    // By action and user.
    let reads = env
        .json(
            &format!(
                "/api/audit/events?action=create&user={}&limit=1000",
                env.users[&Role::FrontDesk]
            ),
            &cookie,
        )
        .await;
    assert_eq!(
        seqs(&reads).len(),
        3,
        "the front desk registered three patients (the reads were Perimeter's own)"
    );
    assert!(reads["next_cursor"].is_null());
    // By time: nothing before 2026, everything from then on.
    let none = env
        .json("/api/audit/events?to=2025-01-01T00:00:00Z", &cookie)
        .await;
    assert!(seqs(&none).is_empty());
    let from = env
        .json(
            "/api/audit/events?from=2026-01-01T00:00:00Z&limit=5",
            &cookie,
        )
        .await;
    assert_eq!(seqs(&from).len(), 5);
    assert!(from["next_cursor"].is_string());

    // Bad parameters: 400 naming the parameter, never echoing the value, nothing read.
    let before = env.self_audits("audit_query", Role::Auditor).await.len();
    for (query, names) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("patient=Grace-Hopper", "patient"),
        ("user=x", "user"),
        ("action=peek", "action"),
        ("from=yesterday", "from"),
        ("cursor=-1", "cursor"),
        ("secret=1", "unknown query parameter"),
        ("limit=1&limit=2", "twice"),
        ("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
    ] {
        let r = env
            .get(&format!("/api/audit/events?{query}"), &cookie)
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_parameter");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(names), "{query}: {msg}");
        assert!(!msg.contains("Grace") && !msg.contains("yesterday") && !msg.contains("peek"));
    }
    assert_eq!(
        env.self_audits("audit_query", Role::Auditor).await.len(),
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounting_of_disclosures_lists_the_patients_disclosures() {
    let env = start().await;
    let cookie = env.session(Role::PrivacyOfficer).await;
    let p = env.patients[0];
    let page = env
        .json(&format!("/api/audit/patients/{p}/disclosures"), &cookie)
        .await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    for e in events {
        assert_eq!(e["event"]["action"], "disclose");
        assert_eq!(e["event"]["patient"], p.to_string());
        assert_eq!(e["event"]["actor"]["provider"], "vendor");
    }
    let other = env
        .json(
            &format!("/api/audit/patients/{}/disclosures", env.patients[2]),
            &cookie,
        )
        .await;
    assert!(seqs(&other).is_empty());
    // Every access (an access report): create, reads, disclosures, and the first query.
    let all = env
        .json(
            &format!("/api/audit/patients/{p}/disclosures?include=all&limit=1000"),
            &cookie,
        )
        .await;
    assert!(seqs(&all).len() >= 7);
    let r = env
        .get("/api/audit/patients/not-a-patient/disclosures", &cookie)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let audits = env.self_audits("audit_query", Role::PrivacyOfficer).await;
    assert_eq!(audits.len(), 3);
    assert!(audits.iter().any(|a| a.patient == Some(env.patients[2])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_are_audited_first_and_valid() {
    let env = start().await;
    let cookie = env.session(Role::Auditor).await;
    // Some audited queries first, so the export holds events with client details.
    env.json("/api/audit/events?limit=1", &cookie).await;
    let r = env
        .get(
            &format!("/api/audit/export?format=fhir&patient={}", env.patients[0]),
            &cookie,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/fhir+json"
    );
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let bundle: Value = r.json().await.unwrap();
    assert_eq!(
        perimeter_audit::fhir_check::problems(&bundle),
        Vec::<String>::new()
    );
    assert_eq!(bundle["type"], "collection");
    assert!(bundle.get("total").is_none());
    let entries = bundle["entry"].as_array().unwrap();
    // The export's own record (a disclosure about the patient) is written first, so it is in.
    let own = entries
        .iter()
        .map(|e| &e["resource"])
        .find(|r| {
            r["type"]["code"] == "110106"
                && r["entity"].as_array().unwrap().iter().any(|e| {
                    e["description"].is_null() && e["what"]["identifier"]["value"] == "audit_trail"
                })
        })
        .expect("the export's own disclosure record");
    assert_eq!(own["subtype"][0]["code"], "disclose");
    assert_eq!(
        own["meta"]["profile"][0],
        "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PrivacyDisclosure.Source"
    );
    let recipient = own["agent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"]["coding"][0]["code"] == "110152")
        .unwrap();
    assert_eq!(recipient["network"]["address"], "127.0.0.1");
    // A patient read by the clinician (no client address recorded by the test): no profile.
    assert!(entries.iter().any(|e| e["resource"]["action"] == "R"));
    let exports = env.self_audits("audit_export", Role::Auditor).await;
    assert_eq!(exports.len(), 1);
    assert_eq!(exports[0].action, Action::Disclose);
    assert_eq!(exports[0].patient, Some(env.patients[0]));

    let r = env
        .get("/api/audit/export?format=csv&action=disclose", &cookie)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = r.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("seq,recorded,at_millis,actor_kind"));
    // Three AI disclosures, the first export, and this export itself.
    assert_eq!(lines.len(), 1 + 5, "{text}");
    for bad in ["format=xml", "", "format=csv&limit=5"] {
        let r = env.get(&format!("/api/audit/export?{bad}"), &cookie).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(
        env.self_audits("audit_export", Role::Auditor).await.len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_pass_and_then_the_tampered_record() {
    let env = start().await;
    let cookie = env.session(Role::Auditor).await;
    let mut cp = Checkpointer::new(
        env.store.clone(),
        env.store.keys().audit_signing_key().clone(),
        env.store.clock().clone(),
        CheckpointerConfig {
            origin: ORIGIN.into(),
            policy: Policy::default(),
            dir: env.checkpoints.path().to_owned(),
            tick: StdDuration::from_secs(1),
        },
    )
    .await
    .unwrap();
    let size = cp.tick(true).await.unwrap().unwrap().checkpoint.size;
    let v = env.json("/api/audit/verify", &cookie).await;
    assert_eq!(v["status"], "pass", "{v}");
    assert_eq!(v["checkpoints"], 1);
    assert_eq!(v["checkpoint_file"], "compared");
    assert!(v["records"].as_u64().unwrap() > size);
    assert!(
        v["verify_key"]
            .as_str()
            .unwrap()
            .starts_with("perimeter/audit+")
    );
    assert_eq!(
        env.self_audits("audit_verify", Role::Auditor).await.len(),
        1
    );

    // Tamper as an attacker with database access would: hide a read of the first patient
    // from their accounting.
    let target = env
        .store
        .audit_query(
            &perimeter_audit::query::AuditQuery {
                patient: Some(env.patients[0]),
                action: Some(Action::Read),
                ..Default::default()
            },
            None,
            1,
        )
        .await
        .unwrap()[0]
        .seq;
    let mut raw = sqlx::AnyConnection::connect(&format!("sqlite://{}", env.db_path.display()))
        .await
        .unwrap();
    sqlx::raw_sql(&format!(
        "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET patient_id = NULL WHERE seq = {target};"
    ))
    .execute(&mut raw)
    .await
    .unwrap();
    raw.close().await.unwrap();
    let v = env.json("/api/audit/verify", &cookie).await;
    assert_eq!(v["status"], "fail", "{v}");
    assert_eq!(v["record"], target);
    assert!(
        v["problem"]
            .as_str()
            .unwrap()
            .starts_with(&format!("record {target}: index column patient_id")),
        "{v}"
    );
    assert_eq!(
        env.self_audits("audit_verify", Role::Auditor).await.len(),
        2
    );
    let r = env.get("/api/audit/verify?deep=1", &cookie).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

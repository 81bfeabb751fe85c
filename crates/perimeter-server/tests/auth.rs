//! Staff authentication over real HTTP on loopback, with a temporary SQLite store and a
//! ManualClock, against the application `perimeter serve` runs (`build_app`): log-in and MFA,
//! replays, timeouts and what counts as activity, lockouts per account and per address, no
//! username enumeration, parallel guesses, bounded hashing, CSRF, log-out everywhere, account
//! administration, password changes, emergency access with its review and notification, API
//! tokens and their purposes, minimum-necessary patient and message reads, every route of the
//! production table with every role, real TLS, start-up before the database, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::http::Method;
use perimeter_audit::AuditEvent;
use perimeter_auth::{
    ApiTokenScope, Permission, SessionPolicy, SessionStage, TotpSecret, allowed,
    create_api_token, hash_password, totp_code_at,
};
use perimeter_crypto::KeyRing;
use perimeter_domain::{
    Clock, ConversationId, DataCategory, ManualClock, PatientId, PracticeId, PurposeOfUse, Role,
    SharedClock, StaffId,
};
use perimeter_server::auth::{AuthSettings, AuthSlot, AuthState, HashLimits};
use perimeter_server::{
    Access, AppParts, BoxFuture, HttpLimits, Metrics, PoolStats, Readiness, ReadyCheck,
    ReadyReport, RouteError, RouteModule, RouteSpec, Routes, ServerSettings, TlsFiles, bind,
    build_app,
};
use perimeter_store::{
    AccessContext, Channel, DatabaseUrl, Direction, NewMessage, NewStaff, PatientData, Store,
    StoreOptions,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::Duration;
use tokio::sync::oneshot;

const PASSWORD: &str = "correct horse battery staple";

struct Up;

impl Readiness for Up {
    fn check(&self) -> BoxFuture<'_, ReadyReport> {
        Box::pin(async {
            ReadyReport {
                checks: vec![ReadyCheck::pass("database")],
            }
        })
    }
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }
}

struct User {
    id: StaffId,
    username: String,
    secret: Option<TotpSecret>,
}

struct Env {
    base: String,
    clock: ManualClock,
    store: Store,
    slot: AuthSlot,
    practice: PracticeId,
    other_practice: PracticeId,
    users: HashMap<&'static str, User>,
    /// Grace Hopper: full record, one conversation with an administrative message, a clinical
    /// message and an administrative note.
    patient: PatientId,
    conversation: ConversationId,
    /// A patient of the other practice.
    foreign_patient: PatientId,
    routes: Vec<RouteSpec>,
    client: reqwest::Client,
    _shutdown: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

/// A browser-like session: the cookie and the CSRF token.
#[derive(Clone, Debug)]
struct Session {
    cookie: String,
    csrf: String,
}

async fn gateway_probe(principal: perimeter_server::Principal) -> String {
    format!("gateway ok for {:?}", principal.purpose.map(|p| p.as_str()))
}

fn test_routes(routes: Routes) -> Result<Routes, RouteError> {
    routes.add(
        Method::POST,
        "/test/gateway",
        Access::Permission(Permission::UseGateway),
        gateway_probe,
    )
}

/// How to start the test server.
struct Opts {
    settings: AuthSettings,
    /// Authentication ready at once (else the slot waits for `env.slot.activate`).
    ready: bool,
    /// Add the `/test/gateway` probe (a `use_gateway` route) after the product's routes.
    probe: bool,
    /// Serve over TLS with this certificate (PEM of the CA for the client).
    tls: Option<(TlsFiles, Vec<u8>)>,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            settings: AuthSettings::default(),
            ready: true,
            probe: true,
            tls: None,
        }
    }
}

fn tls_client(ca_pem: &[u8]) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], 0)))
        .build()
        .unwrap()
}

fn write_cert(dir: &std::path::Path) -> (TlsFiles, Vec<u8>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = cert.cert.pem();
    let files = TlsFiles {
        cert_file: dir.join("cert.pem"),
        key_file: dir.join("key.pem"),
    };
    std::fs::write(&files.cert_file, &cert_pem).unwrap();
    std::fs::write(&files.key_file, cert.signing_key.serialize_pem()).unwrap();
    (files, cert_pem.into_bytes())
}

async fn start() -> Env {
    start_with(Opts::default()).await
}

async fn start_with(opts: Opts) -> Env {
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
    let other_practice = store.create_practice(&sys, "Other Practice").await.unwrap();
    let hash = hash_password(PASSWORD).unwrap();
    let mut users = HashMap::new();
    let specs: [(&'static str, Role, bool); 11] = [
        ("admin", Role::Admin, true),
        ("admin2", Role::Admin, true),
        ("privacy", Role::PrivacyOfficer, true),
        ("clinician", Role::Clinician, true),
        ("nurse", Role::Nurse, true),
        ("scheduler", Role::Scheduler, true),
        ("billing", Role::Billing, true),
        ("frontdesk", Role::FrontDesk, true),
        ("auditor", Role::Auditor, true),
        ("service", Role::Service, false),
        ("newbie", Role::Nurse, false),
    ];
    for (name, role, enrol) in specs {
        let id = store
            .create_staff(
                &sys,
                practice,
                &NewStaff {
                    username: name.into(),
                    display_name: name.into(),
                    roles: vec![role],
                    // The service client gets a password too, to show it cannot use it.
                    password_hash: Some(hash.clone()),
                },
            )
            .await
            .unwrap();
        let secret = if enrol {
            let s = TotpSecret::generate().unwrap();
            store.start_mfa_enrolment(id, &s).await.unwrap();
            let ev = perimeter_auth::SecurityEvent::MfaEnrolled { user: id }.to_audit(
                perimeter_audit::Actor::Anonymous,
                0,
                &Default::default(),
            );
            store.confirm_mfa_enrolment(id, 0, &[], &ev).await.unwrap();
            Some(s)
        } else {
            None
        };
        users.insert(
            name,
            User {
                id,
                username: name.into(),
                secret,
            },
        );
    }
    let patient = store
        .create_patient(
            &sys,
            practice,
            &PatientData {
                given_name: "Grace".into(),
                family_name: "Hopper".into(),
                birth_date: time::Date::from_calendar_date(1906, time::Month::December, 9).ok(),
                phone: Some("(202) 555-0142".into()),
                email: Some("grace.hopper@example.org".into()),
                address: Some("1 Harbor Way".into()),
                mrn: Some("MRN-0042".into()),
                notes: None,
            },
        )
        .await
        .unwrap();
    let conversation = store
        .create_conversation(&sys, patient, Channel::Sms, Some("Follow-up"))
        .await
        .unwrap();
    for (direction, category, body) in [
        (
            Direction::Inbound,
            DataCategory::AdministrativeMessage,
            "Can we move Tuesday's visit?",
        ),
        (
            Direction::Inbound,
            DataCategory::ClinicalMessage,
            "The wheezing got worse at night",
        ),
        (
            Direction::Note,
            DataCategory::InternalNote,
            "Prefers texts after 3 pm",
        ),
    ] {
        clock.advance(Duration::milliseconds(5));
        store
            .add_message(
                &sys,
                conversation,
                &NewMessage {
                    direction,
                    author: None,
                    category,
                    body: body.into(),
                },
            )
            .await
            .unwrap();
    }
    let foreign_patient = store
        .create_patient(
            &sys,
            other_practice,
            &PatientData {
                given_name: "Alan".into(),
                family_name: "Turing".into(),
                ..PatientData::default()
            },
        )
        .await
        .unwrap();

    let limits = HttpLimits {
        max_body_bytes: 16 * 1024,
        request_timeout: StdDuration::from_secs(20),
    };
    let tls = opts.settings.tls || opts.tls.is_some();
    let settings = AuthSettings {
        tls,
        ..opts.settings
    };
    let slot = if opts.ready {
        AuthSlot::ready(AuthState::new(store.clone(), shared.clone(), settings))
    } else {
        AuthSlot::new(shared.clone(), settings)
    };
    let mut extra_routes: Vec<RouteModule> = Vec::new();
    if opts.probe {
        extra_routes.push(Box::new(test_routes));
    }
    let app = build_app(AppParts {
        readiness: Arc::new(Up),
        clock: shared.clone(),
        metrics: Metrics::new(),
        limits,
        auth: slot.clone(),
        extra_routes,
    })
    .unwrap();
    let table = app.routes().to_vec();
    let bound = bind(&ServerSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: opts.tls.as_ref().map(|(f, _)| f.clone()),
        insecure_http: false,
        shutdown_grace: StdDuration::from_secs(2),
    })
    .unwrap();
    let (base, client) = match &opts.tls {
        Some((_, ca)) => (
            format!("https://localhost:{}", bound.local_addr().port()),
            tls_client(ca),
        ),
        None => (format!("http://{}", bound.local_addr()), reqwest::Client::new()),
    };
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(bound.run(app, async move {
        let _ = rx.await;
    }));
    Env {
        base,
        clock,
        store,
        slot,
        practice,
        other_practice,
        users,
        patient,
        conversation,
        foreign_patient,
        routes: table,
        client,
        _shutdown: tx,
        _dir: dir,
    }
}

fn cookie_from(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.contains("Max-Age=0"))
        .find_map(|v| v.split(';').next().map(str::to_owned))
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn user(&self, name: &str) -> &User {
        &self.users[name]
    }

    async fn post(&self, path: &str, session: Option<&Session>, body: Value) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).json(&body);
        if let Some(s) = session {
            req = req
                .header("cookie", &s.cookie)
                .header("x-csrf-token", &s.csrf);
        }
        req.send().await.unwrap()
    }

    async fn delete(&self, path: &str, session: &Session) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .header("cookie", &session.cookie)
            .header("x-csrf-token", &session.csrf)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str, session: Option<&Session>) -> reqwest::Response {
        let mut req = self.client.get(self.url(path));
        if let Some(s) = session {
            req = req.header("cookie", &s.cookie);
        }
        req.send().await.unwrap()
    }

    async fn get_json(&self, path: &str, session: &Session) -> Value {
        let r = self.get(path, Some(session)).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.unwrap()
    }

    async fn login_with(
        &self,
        username: &str,
        password: &str,
    ) -> (reqwest::StatusCode, Value, Option<Session>) {
        let resp = self
            .post(
                "/api/auth/login",
                None,
                json!({"username": username, "password": password}),
            )
            .await;
        let status = resp.status();
        let cookie = cookie_from(&resp);
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let session = cookie.map(|c| Session {
            cookie: c,
            csrf: body["csrf_token"].as_str().unwrap_or_default().to_owned(),
        });
        (status, body, session)
    }

    async fn login_password(&self, name: &str) -> (reqwest::StatusCode, Value, Option<Session>) {
        self.login_with(&self.user(name).username, PASSWORD).await
    }

    fn code(&self, name: &str) -> String {
        let secret = self.user(name).secret.as_ref().unwrap();
        totp_code_at(secret, self.clock.now()).unwrap().to_string()
    }

    /// Full log-in with password and TOTP.
    async fn login(&self, name: &str) -> Session {
        let (status, body, pending) = self.login_password(name).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "mfa_required");
        let resp = self
            .post(
                "/api/auth/mfa/verify",
                pending.as_ref(),
                json!({"code": self.code(name)}),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let cookie = cookie_from(&resp).unwrap();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["status"], "authenticated");
        // Each later log-in in the same test needs a fresh TOTP step.
        self.clock.advance(Duration::seconds(30));
        Session {
            cookie,
            csrf: body["csrf_token"].as_str().unwrap().to_owned(),
        }
    }

    /// An authenticated session created directly in the store (for the route × role walk).
    async fn direct_session(&self, user: StaffId) -> Session {
        let s = SessionPolicy::default()
            .start(user, SessionStage::Authenticated, self.clock.now())
            .unwrap();
        self.store.insert_session(&s.record).await.unwrap();
        Session {
            cookie: format!("perimeter_session={}", s.token.as_str()),
            csrf: s.record.csrf.as_str().to_owned(),
        }
    }

    /// An API token for the service client, created directly in the store.
    async fn service_token(&self, purposes: &[PurposeOfUse]) -> String {
        let now = self.clock.now();
        let new = create_api_token(
            self.user("service").id,
            "test",
            ApiTokenScope {
                permissions: [Permission::UseGateway, Permission::DeidentifyText]
                    .into_iter()
                    .collect(),
                purposes: purposes.iter().copied().collect(),
            },
            now + Duration::days(30),
            now,
        )
        .unwrap();
        let event = perimeter_auth::SecurityEvent::ApiTokenCreated {
            token: new.record.id,
        }
        .to_audit(perimeter_audit::Actor::Anonymous, 0, &Default::default());
        self.store
            .insert_api_token(&new.record, &event)
            .await
            .unwrap();
        new.token.as_str().to_owned()
    }

    async fn audit_events(&self) -> Vec<AuditEvent> {
        self.store
            .audit_records(0, 100_000)
            .await
            .unwrap()
            .iter()
            .map(|r| AuditEvent::from_canonical_bytes(&r.event).unwrap())
            .collect()
    }

    async fn audit_count(&self) -> usize {
        self.store.audit_records(0, 100_000).await.unwrap().len()
    }

    async fn details(&self) -> Vec<String> {
        self.audit_events()
            .await
            .into_iter()
            .filter_map(|e| e.detail)
            .collect()
    }

    async fn count_detail(&self, detail: &str) -> usize {
        self.details().await.iter().filter(|d| *d == detail).count()
    }
}

async fn error_code(r: reqwest::Response) -> (StatusCode, String, bool) {
    let status = r.status();
    let retry = r.headers().contains_key("retry-after");
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or_default().to_owned(),
        retry,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_login_enrols_mfa_with_qr_then_recovery_codes_work() {
    let env = start().await;
    let (status, body, pending) = env.login_password("newbie").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "mfa_enrolment_required");
    let uri = body["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/Perimeter:newbie?"));
    assert!(
        body["qr_svg_data_uri"]
            .as_str()
            .unwrap()
            .starts_with("data:image/svg+xml;base64,")
    );
    let pending = pending.unwrap();
    // The pending session reaches nothing else.
    let me = env.get("/api/auth/me", Some(&pending)).await;
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    let secret = TotpSecret::from_base32(body["secret"].as_str().unwrap()).unwrap();
    let wrong = env
        .post(
            "/api/auth/mfa/enrol",
            Some(&pending),
            json!({"code": "000000"}),
        )
        .await;
    let code = totp_code_at(&secret, env.clock.now()).unwrap().to_string();
    if code != "000000" {
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    let resp = env
        .post("/api/auth/mfa/enrol", Some(&pending), json!({"code": code}))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = cookie_from(&resp).unwrap();
    assert_ne!(cookie, pending.cookie, "session rotated at log-in");
    let body: Value = resp.json().await.unwrap();
    let codes: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    let session = Session {
        cookie,
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
    };
    let me: Value = env
        .get("/api/auth/me", Some(&session))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "newbie");
    assert!(
        me["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "read_clinical_message")
    );
    // The old pre-MFA cookie is dead.
    assert_eq!(
        env.post("/api/auth/mfa/enrol", Some(&pending), json!({"code": code}))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // Recovery code instead of TOTP, once.
    env.clock.advance(Duration::seconds(30));
    let (_, _, pending) = env.login_password("newbie").await;
    let pending = pending.unwrap();
    let r = env
        .post(
            "/api/auth/recovery",
            Some(&pending),
            json!({"code": codes[0]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["recovery_codes_left"], 9);
    let (_, _, pending) = env.login_password("newbie").await;
    let r = env
        .post(
            "/api/auth/recovery",
            pending.as_ref(),
            json!({"code": codes[0]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let details = env.details().await;
    for d in [
        "mfa_enrolled",
        "login",
        "recovery_code_used",
        "recovery_code_failed",
    ] {
        assert!(details.iter().any(|x| x == d), "missing {d}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_totp_codes_are_refused() {
    let env = start().await;
    let (_, _, pending) = env.login_password("nurse").await;
    let code = env.code("nurse");
    let ok = env
        .post(
            "/api/auth/mfa/verify",
            pending.as_ref(),
            json!({"code": code}),
        )
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
    // Same code, same 30 s window, new log-in: refused.
    let (_, _, pending) = env.login_password("nurse").await;
    let replay = env
        .post(
            "/api/auth/mfa/verify",
            pending.as_ref(),
            json!({"code": code}),
        )
        .await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    let body: Value = replay.json().await.unwrap();
    assert_eq!(body["error"]["code"], "code_replayed");
    assert!(env.details().await.iter().any(|d| d == "mfa_replay"));
    // The next step's code works.
    env.clock.advance(Duration::seconds(30));
    let next = env
        .post(
            "/api/auth/mfa/verify",
            pending.as_ref(),
            json!({"code": env.code("nurse")}),
        )
        .await;
    assert_eq!(next.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_absolute_timeouts_follow_the_clock() {
    let env = start().await;
    // User activity (reading a record) restarts the idle timer.
    let record = format!("/api/patients/{}", env.patient);
    let s = env.login("clinician").await;
    env.clock.advance(Duration::minutes(14));
    assert_eq!(env.get(&record, Some(&s)).await.status(), StatusCode::OK);
    env.clock.advance(Duration::minutes(14));
    assert_eq!(env.get(&record, Some(&s)).await.status(), StatusCode::OK);
    env.clock.advance(Duration::minutes(15));
    let r = env.get("/api/auth/me", Some(&s)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "session_expired");
    assert!(
        env.details()
            .await
            .iter()
            .any(|d| d == "session_idle_timeout")
    );

    let s = env.login("clinician").await;
    for _ in 0..(12 * 6 - 1) {
        env.clock.advance(Duration::minutes(10));
        assert_eq!(env.get(&record, Some(&s)).await.status(), StatusCode::OK);
    }
    env.clock.advance(Duration::minutes(10));
    assert_eq!(
        env.get(&record, Some(&s)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(
        env.details()
            .await
            .iter()
            .any(|d| d == "session_absolute_timeout")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failures_lock_the_account_until_an_admin_unlocks_it() {
    let env = start().await;
    for i in 0..5 {
        let r = env
            .post(
                "/api/auth/login",
                None,
                json!({"username": "billing", "password": "wrong password here"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
        env.clock.advance(Duration::seconds(10));
    }
    // Locked: even the right password is refused, with Retry-After.
    let (status, body, _) = env.login_password("billing").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"]["code"], "locked");
    let details = env.details().await;
    assert!(details.iter().any(|d| d == "locked"));
    assert_eq!(details.iter().filter(|d| *d == "login_failed").count(), 5);

    let admin = env.login("admin").await;
    let list: Value = env
        .get("/api/admin/lockouts", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    let billing = env.user("billing").id.to_string();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|l| l["staff_id"] == billing.as_str() && l["subject"] == "billing")
    );
    let r = env
        .post(
            &format!("/api/admin/users/{billing}/unlock"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(env.details().await.iter().any(|d| d == "unlocked"));
    env.login("billing").await;

    // Without an unlock the lock lifts after 15 minutes.
    for _ in 0..5 {
        env.post(
            "/api/auth/login",
            None,
            json!({"username": "billing", "password": "wrong password here"}),
        )
        .await;
        env.clock.advance(Duration::seconds(10));
    }
    assert_eq!(
        env.login_password("billing").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    env.clock.advance(Duration::minutes(15));
    env.login("billing").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_need_the_csrf_token() {
    let env = start().await;
    let s = env.login("scheduler").await;
    let no_header = env
        .client
        .post(env.url("/api/auth/logout"))
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(no_header.status(), StatusCode::FORBIDDEN);
    let wrong = Session {
        cookie: s.cookie.clone(),
        csrf: "x".repeat(43),
    };
    assert_eq!(
        env.post("/api/auth/logout", Some(&wrong), json!({}))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert!(env.details().await.iter().any(|d| d == "csrf_rejected"));
    // Still signed in; with the right token the log-out works.
    assert_eq!(
        env.get("/api/auth/me", Some(&s)).await.status(),
        StatusCode::OK
    );
    let r = env.post("/api/auth/logout", Some(&s), json!({})).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        env.get("/api/auth/me", Some(&s)).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_everywhere_and_admin_end_sessions() {
    let env = start().await;
    let a = env.login("frontdesk").await;
    let b = env.login("frontdesk").await;
    let r = env
        .post("/api/auth/logout-everywhere", Some(&a), json!({}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ended_sessions"], 2);
    for s in [&a, &b] {
        assert_eq!(
            env.get("/api/auth/me", Some(s)).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }

    let nurse = env.login("nurse").await;
    let admin = env.login("admin").await;
    let id = env.user("nurse").id;
    let r = env
        .post(
            &format!("/api/admin/users/{id}/end-sessions"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        env.get("/api/auth/me", Some(&nurse)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(env.details().await.iter().any(|d| d == "sessions_ended"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_creates_users_changes_roles_and_resets_mfa() {
    let env = start().await;
    let admin = env.login("admin").await;
    let weak = env
        .post(
            "/api/admin/users",
            Some(&admin),
            json!({"username": "temp", "display_name": "Temp", "roles": ["scheduler"], "password": "password1234"}),
        )
        .await;
    assert_eq!(weak.status(), StatusCode::BAD_REQUEST);
    let confusable = env
        .post(
            "/api/admin/users",
            Some(&admin),
            json!({"username": "\u{430}dmin", "display_name": "X", "roles": ["scheduler"], "password": PASSWORD}),
        )
        .await;
    assert_eq!(confusable.status(), StatusCode::BAD_REQUEST);
    let r = env
        .post(
            "/api/admin/users",
            Some(&admin),
            json!({"username": "Temp.User", "display_name": "Temp", "roles": ["scheduler"], "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id: String = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dup = env
        .post(
            "/api/admin/users",
            Some(&admin),
            json!({"username": "temp.user", "display_name": "Temp", "roles": ["scheduler"], "password": PASSWORD}),
        )
        .await;
    assert_eq!(dup.status(), StatusCode::CONFLICT);
    // The new user logs in (normalised username) and must enrol.
    let r = env
        .post(
            "/api/auth/login",
            None,
            json!({"username": "TEMP.USER", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["status"],
        "mfa_enrolment_required"
    );

    // Role change ends the user's sessions; admins cannot change their own roles.
    let nurse = env.login("nurse").await;
    let nid = env.user("nurse").id;
    let r = env
        .post(
            &format!("/api/admin/users/{nid}/roles"),
            Some(&admin),
            json!({"roles": ["nurse", "front_desk"]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        env.get("/api/auth/me", Some(&nurse)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let own = env.user("admin").id;
    let r = env
        .post(
            &format!("/api/admin/users/{own}/roles"),
            Some(&admin),
            json!({"roles": ["admin", "clinician"]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(env.details().await.iter().any(|d| d == "role_changed"));

    // MFA reset: the user enrols again at next log-in.
    let r = env
        .post(
            &format!("/api/admin/users/{nid}/mfa-reset"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (_, body, _) = env.login_password("nurse").await;
    assert_eq!(body["status"], "mfa_enrolment_required");
    assert!(env.details().await.iter().any(|d| d == "mfa_reset"));
    let _ = id;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_is_flagged_and_notifies_the_privacy_officer() {
    let env = start().await;
    let clin = env.login("clinician").await;
    let path = format!("/api/patients/{}/break-glass", env.patient);
    let short = env
        .post(
            &path,
            Some(&clin),
            json!({"reason_code": "medical_emergency", "reason_text": "now"}),
        )
        .await;
    assert_eq!(short.status(), StatusCode::BAD_REQUEST);
    let r = env
        .post(
            &path,
            Some(&clin),
            json!({"reason_code": "medical_emergency", "reason_text": "Patient collapsed at reception, need allergies"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    let grant = body["grant_id"].as_str().unwrap().to_owned();
    let events = env.audit_events().await;
    let flagged = events
        .iter()
        .find(|e| e.detail.as_deref() == Some("break_glass"))
        .unwrap();
    assert_eq!(
        flagged.purpose,
        Some(perimeter_domain::PurposeOfUse::Emergency)
    );
    assert_eq!(flagged.patient, Some(env.patient));
    assert_eq!(flagged.object.id.as_deref(), Some(grant.as_str()));
    for e in &events {
        assert!(
            !String::from_utf8(e.canonical_bytes())
                .unwrap()
                .contains("collapsed")
        );
    }
    let notes = env.store.pending_notifications().await.unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].kind, "break_glass");
    let clinician = env.user("clinician").id;
    assert!(
        env.store
            .active_break_glass(clinician, env.patient, env.clock.now())
            .await
            .unwrap()
            .is_some()
    );
    // A scheduler may not, and the denial is audited.
    let sched = env.login("scheduler").await;
    let r = env
        .post(
            &path,
            Some(&sched),
            json!({"reason_code": "other", "reason_text": "I would like to look"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(env.details().await.iter().any(|d| d == "permission_denied"));
    let unknown = env
        .post(
            &format!("/api/patients/{}/break-glass", PatientId::new()),
            Some(&clin),
            json!({"reason_code": "other", "reason_text": "a long enough reason"}),
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_are_scoped_expiring_and_revocable() {
    let env = start().await;
    let admin = env.login("admin").await;
    let service = env.user("service").id;
    let not_service = env
        .post(
            "/api/admin/tokens",
            Some(&admin),
            json!({"client_id": env.user("nurse").id, "label": "x", "permissions": ["use_gateway"], "purposes": ["operations"], "expires_in_days": 30}),
        )
        .await;
    assert_eq!(not_service.status(), StatusCode::BAD_REQUEST);
    let human_perm = env
        .post(
            "/api/admin/tokens",
            Some(&admin),
            json!({"client_id": service, "label": "x", "permissions": ["read_clinical_message"], "purposes": ["operations"], "expires_in_days": 30}),
        )
        .await;
    assert_eq!(human_perm.status(), StatusCode::BAD_REQUEST);
    let r = env
        .post(
            "/api/admin/tokens",
            Some(&admin),
            json!({"client_id": service, "label": "intake bot", "permissions": ["use_gateway"], "purposes": ["operations"], "expires_in_days": 30}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("pmt_"));
    let list: Value = env
        .get("/api/admin/tokens", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert!(!list.to_string().contains(&token[4..]));

    let call = |t: String| {
        let client = env.client.clone();
        let url = env.url("/test/gateway");
        async move {
            client
                .post(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(call(token.clone()).await, StatusCode::OK);
    assert_eq!(call("pmt_garbage".into()).await, StatusCode::UNAUTHORIZED);
    // A token does not open console routes.
    let me = env
        .client
        .get(env.url("/api/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::FORBIDDEN);
    // Expiry follows the clock.
    env.clock.advance(Duration::days(31));
    assert_eq!(call(token.clone()).await, StatusCode::UNAUTHORIZED);
    env.clock.advance(Duration::days(-31));
    let admin = env.login("admin").await;
    let del = env
        .client
        .delete(env.url(&format!("/api/admin/tokens/{id}")))
        .header("cookie", &admin.cookie)
        .header("x-csrf-token", &admin.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    assert_eq!(call(token).await, StatusCode::UNAUTHORIZED);
    let details = env.details().await;
    for d in [
        "api_token_created",
        "api_token_revoked",
        "api_token_rejected",
    ] {
        assert!(details.iter().any(|x| x == d), "missing {d}");
    }
}

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                uuid::Uuid::now_v7().to_string()
            } else {
                seg.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The route table `perimeter serve` runs (build_app with no extra module), walked with every
/// role: people with a session cookie, the service client with an API token (it has no
/// session). Every route is either public or declared, and each role reaches exactly what the
/// matrix gives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_route_table_with_every_role_matches_the_matrix() {
    let env = start_with(Opts {
        probe: false,
        ..Opts::default()
    })
    .await;
    // The production table: the probe-free app, and nothing else.
    assert!(env.routes.iter().all(|r| !r.path.starts_with("/test/")));
    for expected in [
        "/api/auth/login",
        "/api/auth/password",
        "/api/admin/users",
        "/api/admin/lockouts/unlock-address",
        "/api/patients",
        "/api/patients/{id}",
        "/api/conversations/{id}/messages",
        "/api/privacy/break-glass",
        "/api/notifications",
    ] {
        assert!(
            env.routes.iter().any(|r| r.path == expected),
            "{expected} missing from the production table"
        );
    }
    let by_role: Vec<(Role, StaffId)> = [
        ("admin", Role::Admin),
        ("privacy", Role::PrivacyOfficer),
        ("clinician", Role::Clinician),
        ("nurse", Role::Nurse),
        ("scheduler", Role::Scheduler),
        ("billing", Role::Billing),
        ("frontdesk", Role::FrontDesk),
        ("auditor", Role::Auditor),
        ("service", Role::Service),
    ]
    .into_iter()
    .map(|(n, r)| (r, env.user(n).id))
    .collect();
    assert_eq!(by_role.len(), Role::ALL.len());
    let token = env.service_token(&[PurposeOfUse::Operations]).await;
    let mut checked = 0;
    let mut guarded = 0;
    for route in &env.routes {
        let path = concrete(route.path);
        let method = reqwest::Method::from_bytes(route.method.as_str().as_bytes()).unwrap();
        // Without credentials: every non-public route answers 401.
        let anon = env
            .client
            .request(method.clone(), env.url(&path))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        match route.access {
            Access::Public => {
                assert_ne!(
                    anon.status(),
                    StatusCode::UNAUTHORIZED,
                    "{} {}",
                    route.method,
                    route.path
                );
                continue;
            }
            _ => assert_eq!(
                anon.status(),
                StatusCode::UNAUTHORIZED,
                "{} {}",
                route.method,
                route.path
            ),
        }
        guarded += 1;
        for (role, user) in &by_role {
            let req = env.client.request(method.clone(), env.url(&path));
            let req = if *role == Role::Service {
                req.bearer_auth(&token)
            } else {
                let s = env.direct_session(*user).await;
                req.header("cookie", &s.cookie)
                    .header("x-csrf-token", &s.csrf)
            };
            let status = req.json(&json!({})).send().await.unwrap().status();
            match (route.access, *role) {
                (Access::Permission(p), role) => {
                    if allowed(&[role], p) {
                        assert!(
                            status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                            "{role} should reach {} {} ({p}), got {status}",
                            route.method,
                            route.path
                        );
                    } else {
                        assert_eq!(
                            status,
                            StatusCode::FORBIDDEN,
                            "{role} must not reach {} {} ({p})",
                            route.method,
                            route.path
                        );
                    }
                }
                (Access::MfaPending, Role::Service) => {
                    // A token never stands in for a session.
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", route.path);
                }
                (Access::MfaPending, _) => {
                    // An authenticated session has nothing to do there.
                    assert_eq!(
                        status,
                        StatusCode::CONFLICT,
                        "{} {}",
                        route.method,
                        route.path
                    );
                }
                _ => panic!("unexpected access {:?}", route.access),
            }
            checked += 1;
        }
    }
    assert!(guarded >= 30, "{guarded}");
    assert_eq!(checked, guarded * Role::ALL.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let env = start().await;
    let before = env.store.audit_records(0, 100_000).await.unwrap().len();
    // Unicode tricks in usernames: refused before any lookup, nothing recorded.
    for name in [
        "\u{430}dmin",
        "ad\u{200b}min",
        "admin\u{202e}",
        "ádmin",
        "a",
        "",
    ] {
        let r = env
            .post(
                "/api/auth/login",
                None,
                json!({"username": name, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{name:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_username");
        if name.chars().count() > 3 {
            assert!(!body.to_string().contains(name));
        }
    }
    // Wrong content type, malformed JSON, unknown fields, huge bodies.
    let r = env
        .client
        .post(env.url("/api/auth/login"))
        .header("content-type", "text/plain")
        .body(format!("username=admin&password={PASSWORD}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = env
        .client
        .post(env.url("/api/auth/login"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    let r = env
        .post(
            "/api/auth/login",
            None,
            json!({"username": "admin", "password": PASSWORD, "extra": 1}),
        )
        .await;
    assert!(r.status().is_client_error());
    let r = env
        .post(
            "/api/auth/login",
            None,
            json!({"username": "admin", "password": "x".repeat(100_000)}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = env
        .post(
            "/api/auth/login",
            None,
            json!({"username": "admin", "password": "x".repeat(1_000)}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Malformed cookies.
    for cookie in [
        "perimeter_session=",
        "perimeter_session=not-a-token",
        "perimeter_session=AAAAAAAAAAAAAAAAAAAAAA; perimeter_session=BBBBBBBBBBBBBBBBBBBBBA",
        "perimeter_session=AAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let r = env
            .client
            .get(env.url("/api/auth/me"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{cookie}");
    }
    let after = env.store.audit_records(0, 100_000).await.unwrap().len();
    assert_eq!(before, after, "bad input must not change anything");
    assert!(
        env.store
            .lockouts(env.practice, env.clock.now())
            .await
            .unwrap()
            .is_empty()
    );
    // A full-width username is normalised (NFKC) to the real account.
    let r = env
        .post(
            "/api/auth/login",
            None,
            json!({"username": "ＡＤＭＩＮ", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers_and_cookies_are_strict() {
    let env = start().await;
    for path in ["/healthz", "/api/auth/me", "/no/such/route"] {
        let r = env.get(path, None).await;
        let h = r.headers();
        assert_eq!(
            h["content-security-policy"],
            "default-src 'none'; frame-ancestors 'none'"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["x-frame-options"], "DENY");
        assert!(
            h.get("strict-transport-security").is_none(),
            "no HSTS without TLS"
        );
    }
    let r = env
        .post(
            "/api/auth/login",
            None,
            json!({"username": "auditor", "password": PASSWORD}),
        )
        .await;
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with("perimeter_session="));
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    let _ = env.practice;
}

//! Staff authentication over real HTTP on loopback, with a temporary SQLite store and a
//! ManualClock, against the application `perimeter serve` runs (`build_app`): log-in and MFA,
//! replays, timeouts and what counts as activity, lockouts per account and per address, no
//! username enumeration, parallel guesses, bounded hashing, CSRF, log-out everywhere, account
//! administration, password changes, emergency access with its review and notification, API
//! tokens and their purposes, minimum-necessary patient and message reads, every route of the
//! production table with every role, real TLS, start-up before the database, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::Up;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::http::Method;
use perimeter_audit::AuditEvent;
use perimeter_auth::{
    ApiTokenScope, Permission, SessionPolicy, SessionStage, TotpSecret, allowed, create_api_token,
    hash_password, totp_code_at,
};
use perimeter_crypto::KeyRing;
use perimeter_domain::{
    Clock, ConversationId, DataCategory, ManualClock, PatientId, PracticeId, PurposeOfUse, Role,
    SharedClock, StaffId,
};
use perimeter_server::auth::{AuthSettings, AuthSlot, AuthState, HashLimits};
use perimeter_server::{
    Access, AppParts, HttpLimits, Metrics, RouteError, RouteModule, RouteSpec, Routes,
    ServerSettings, TlsFiles, bind, build_app,
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
    /// `http.trusted_proxies`.
    trusted_proxies: Option<&'static str>,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            settings: AuthSettings::default(),
            ready: true,
            probe: true,
            tls: None,
            trusted_proxies: None,
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
        audit: Default::default(),
        extra_routes,
    })
    .unwrap();
    let app = match opts.trusted_proxies {
        Some(list) => {
            app.with_trusted_proxies(perimeter_server::TrustedProxies::parse(list).unwrap())
        }
        None => app,
    };
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
        None => (
            format!("http://{}", bound.local_addr()),
            reqwest::Client::new(),
        ),
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
                permissions: [
                    Permission::UseGateway,
                    Permission::DeidentifyText,
                    Permission::IngestChannel,
                ]
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
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
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
        "/api/queues/{queue}",
        "/api/conversations/{id}/drafts",
        "/api/drafts/{id}/approve",
        "/api/templates",
        "/api/patients/{id}/reminders",
        "/api/patients/{id}/coverages",
        "/api/patients/{id}/coverages/{coverage_id}/end",
        "/api/patients/{id}/account",
        "/api/openapi.json",
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
                (Access::PatientChat, _) => {
                    // Staff sessions and API tokens are not a patient's chat session.
                    assert_eq!(
                        status,
                        StatusCode::UNAUTHORIZED,
                        "{role} must not reach {} {}",
                        route.method,
                        route.path
                    );
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

/// Unknown usernames are throttled exactly like known ones: the same answers in the same order
/// (status, error code, Retry-After), for a wrong password, an unknown name, a disabled
/// account and a service client. Throttled attempts are audited once per key per interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_usernames_are_answered_and_throttled_exactly_like_known_ones() {
    let env = start().await;
    let admin = env.login("admin").await;
    let r = env
        .post(
            &format!("/api/admin/users/{}/disable", env.user("frontdesk").id),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Each sequence starts from a clean client address (all come from 127.0.0.1, whose own
    // throttle would otherwise join in after ten failures).
    let sequence = |name: &'static str, password: &'static str| {
        let env = &env;
        async move {
            let unlock = perimeter_auth::SecurityEvent::AddressUnlocked.to_audit(
                perimeter_audit::Actor::System {
                    component: "test".into(),
                },
                0,
                &Default::default(),
            );
            env.store
                .clear_throttle(
                    perimeter_store::ThrottleScope::Address,
                    "127.0.0.1",
                    &unlock,
                )
                .await
                .unwrap();
            let mut answers = Vec::new();
            for _ in 0..8 {
                let r = env
                    .post(
                        "/api/auth/login",
                        None,
                        json!({"username": name, "password": password}),
                    )
                    .await;
                answers.push(error_code(r).await);
                env.clock.advance(Duration::milliseconds(500));
            }
            answers
        }
    };
    let known = sequence("billing", "not the password at all").await;
    let unknown = sequence("no.such.user", "not the password at all").await;
    let disabled = sequence("frontdesk", PASSWORD).await;
    let service = sequence("service", PASSWORD).await;
    assert_eq!(known, unknown);
    assert_eq!(known, disabled);
    assert_eq!(known, service);
    // 401 twice, then throttled (429 with Retry-After), never a different answer.
    assert_eq!(
        known[0],
        (
            StatusCode::UNAUTHORIZED,
            "invalid_credentials".to_owned(),
            false
        )
    );
    assert!(
        known
            .iter()
            .any(|a| a == &(StatusCode::TOO_MANY_REQUESTS, "throttled".to_owned(), true))
    );
    // Each refused burst was audited once per key, not once per request.
    let throttled = env
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e.detail.as_deref() == Some("login_throttled"))
        .count();
    let refused = 4 * known
        .iter()
        .filter(|a| a.0 == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(refused >= 8, "{known:?}");
    assert_eq!(throttled, 4, "one record per key, {refused} refusals");
    // Locked alike: five counted failures lock the unknown name as they lock a real account.
    for name in ["billing", "no.such.user"] {
        let mut last = None;
        for _ in 0..12 {
            env.clock.advance(Duration::seconds(40));
            let r = env
                .post(
                    "/api/auth/login",
                    None,
                    json!({"username": name, "password": "still not the password"}),
                )
                .await;
            last = Some(error_code(r).await);
        }
        assert_eq!(
            last.unwrap(),
            (StatusCode::TOO_MANY_REQUESTS, "locked".to_owned(), true),
            "{name}"
        );
    }
}

/// Parallel guesses at one account are checked one at a time against one count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_cannot_overrun_the_lockout() {
    let env = start().await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let client = env.client.clone();
        let url = env.url("/api/auth/login");
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"username": "billing", "password": format!("guess number {i:04}")}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let evaluated = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // The clock did not move: after two failures every further guess must wait, so at most
    // two were ever checked; every check was counted and audited.
    assert!((1..=2).contains(&evaluated), "{statuses:?}");
    assert_eq!(env.count_detail("login_failed").await, evaluated);
    let state = env
        .store
        .throttle_state(perimeter_store::ThrottleScope::Account, "billing")
        .await
        .unwrap();
    assert_eq!(state.failures as usize, evaluated);
    // Audit flood control: the refused guesses left one record, not twenty.
    assert_eq!(env.count_detail("login_throttled").await, 1);
}

/// Password hashing is bounded: with every slot taken, log-in answers 503 `busy` at once,
/// counts nothing and leaves no lease behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_hashing_answers_503_busy_and_changes_nothing() {
    let env = start_with(Opts {
        settings: AuthSettings {
            hashing: HashLimits {
                max_concurrent: 2,
                max_waiting: 2,
                max_wait: StdDuration::from_millis(200),
            },
            ..AuthSettings::default()
        },
        ..Opts::default()
    })
    .await;
    let held = env.slot.hash_limiter().hold_all().await.unwrap();
    let before = env.audit_count().await;
    let r = env
        .post(
            "/api/auth/login",
            None,
            json!({"username": "billing", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::SERVICE_UNAVAILABLE, "busy".to_owned(), true)
    );
    assert_eq!(env.audit_count().await, before);
    assert_eq!(
        env.store
            .throttle_state(perimeter_store::ThrottleScope::Account, "billing")
            .await
            .unwrap(),
        Default::default()
    );
    drop(held);
    env.login("billing").await;
}

/// Twenty failures from one address lock it for every username; the lock is listed for
/// administrators and one of them lifts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_lockout_over_http_and_an_admin_lifts_it() {
    let env = start().await;
    for i in 0..20 {
        let r = env
            .post(
                "/api/auth/login",
                None,
                json!({"username": format!("nobody{i}"), "password": "wrong password here"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
        env.clock.advance(Duration::seconds(31));
    }
    assert!(env.details().await.iter().any(|d| d == "address_locked"));
    // A real user with the right password from this address is refused now.
    let (status, body, _) = env.login_password("nurse").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "locked");
    // An administrator (already signed in) sees it and lifts it.
    let admin = env.direct_session(env.user("admin").id).await;
    let list: Value = env.get_json("/api/admin/lockouts", &admin).await;
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["scope"] == "address")
        .unwrap()
        .clone();
    assert_eq!(entry["subject"], "127.0.0.1");
    assert!(entry["refused_attempts"].as_u64().unwrap() >= 1);
    // Unknown usernames are listed for no practice.
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|l| l["scope"] != "account")
    );
    for bad in ["", "not an address", "127.0.0.1; DROP TABLE", "::1::2"] {
        let r = env
            .post(
                "/api/admin/lockouts/unlock-address",
                Some(&admin),
                json!({"address": bad}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad:?}");
    }
    let r = env
        .post(
            "/api/admin/lockouts/unlock-address",
            Some(&admin),
            json!({"address": "127.0.0.1"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["unlocked"], true);
    assert!(env.details().await.iter().any(|d| d == "address_unlocked"));
    env.login("nurse").await;
}

/// What counts as user activity: any request but the console's background polls
/// (`GET /api/auth/me`, `GET /api/notifications`), which never extend the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_polls_do_not_keep_a_session_alive() {
    let env = start().await;
    let s = env.login("scheduler").await;
    for _ in 0..2 {
        env.clock.advance(Duration::minutes(7));
        assert_eq!(
            env.get("/api/auth/me", Some(&s)).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            env.get("/api/notifications", Some(&s)).await.status(),
            StatusCode::OK
        );
    }
    // 14 minutes of polling only, then one more minute: logged off (idle since log-in).
    env.clock.advance(Duration::minutes(1));
    let r = env.get("/api/auth/me", Some(&s)).await;
    assert_eq!(error_code(r).await.1, "session_expired");
    // Reading a record is activity: the timer restarts from there.
    let s = env.login("scheduler").await;
    env.clock.advance(Duration::minutes(10));
    assert_eq!(
        env.get(&format!("/api/patients/{}", env.patient), Some(&s))
            .await
            .status(),
        StatusCode::OK
    );
    env.clock.advance(Duration::minutes(10));
    let me: Value = env.get_json("/api/auth/me", &s).await;
    // The poll reports when the session ends without activity: 15 minutes after the read.
    let ends = time::OffsetDateTime::parse(
        me["session_expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(ends, env.clock.now() + Duration::minutes(5));
}

/// Changing one's own password needs the current one (a wrong one counts towards the lock),
/// follows the policy, ends every other session and is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_own_password_reauthenticates_and_ends_other_sessions() {
    let env = start().await;
    let a = env.login("nurse").await;
    let b = env.login("nurse").await;
    let new_password = "a much longer passphrase of mine";
    let r = env
        .post(
            "/api/auth/password",
            Some(&a),
            json!({"current_password": "guessing at it", "new_password": new_password}),
        )
        .await;
    assert_eq!(error_code(r).await.1, "invalid_credentials");
    assert_eq!(
        env.store
            .throttle_state(perimeter_store::ThrottleScope::Account, "nurse")
            .await
            .unwrap()
            .failures,
        1
    );
    env.clock.advance(Duration::seconds(5));
    for weak in ["short", "password1234", "nurse is my name ok"] {
        let r = env
            .post(
                "/api/auth/password",
                Some(&a),
                json!({"current_password": PASSWORD, "new_password": weak}),
            )
            .await;
        assert_eq!(error_code(r).await.1, "weak_password", "{weak}");
    }
    let r = env
        .post(
            "/api/auth/password",
            Some(&a),
            json!({"current_password": PASSWORD, "new_password": new_password}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["ended_sessions"], 1);
    assert_eq!(
        env.get("/api/auth/me", Some(&a)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        env.get("/api/auth/me", Some(&b)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(env.details().await.iter().any(|d| d == "password_changed"));
    env.clock.advance(Duration::seconds(30));
    assert_eq!(
        env.login_with("nurse", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    env.clock.advance(Duration::seconds(30));
    let (status, body, _) = env.login_with("nurse", new_password).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "mfa_required");
}

/// Administrators list, disable and enable their practice's accounts; creating one is audited;
/// a disabled account can neither log in nor keep a session or use a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_list_disable_and_enable_accounts() {
    let env = start().await;
    let admin = env.login("admin").await;
    let list: Value = env.get_json("/api/admin/users", &admin).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"nurse") && names.contains(&"service"));
    assert!(!list.to_string().contains("argon2"));
    let nurse_entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "nurse")
        .unwrap();
    assert_eq!(nurse_entry["mfa_enrolled"], true);
    assert_eq!(nurse_entry["disabled"], false);
    // Create: audited as user_created; a service client has no password.
    let r = env
        .post(
            "/api/admin/users",
            Some(&admin),
            json!({"username": "bot2", "display_name": "Bot", "roles": ["service"], "password": PASSWORD}),
        )
        .await;
    assert_eq!(error_code(r).await.1, "password_not_allowed");
    let r = env
        .post(
            "/api/admin/users",
            Some(&admin),
            json!({"username": "bot2", "display_name": "Bot", "roles": ["service", "nurse"]}),
        )
        .await;
    assert_eq!(error_code(r).await.1, "invalid_roles");
    let r = env
        .post(
            "/api/admin/users",
            Some(&admin),
            json!({"username": "bot2", "display_name": "Bot", "roles": ["service"]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = env
        .post(
            "/api/admin/users",
            Some(&admin),
            json!({"username": "helper", "display_name": "Helper", "roles": ["scheduler"]}),
        )
        .await;
    assert_eq!(error_code(r).await.1, "password_required");
    assert!(env.details().await.iter().any(|d| d == "user_created"));
    // Disable the nurse: sessions end, log-in is refused like a wrong password.
    let nurse = env.login("nurse").await;
    let nid = env.user("nurse").id;
    let r = env
        .post(
            &format!("/api/admin/users/{nid}/disable"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["changed"], true);
    assert_eq!(
        env.get("/api/auth/me", Some(&nurse)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, body, _) = env.login_password("nurse").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "invalid_credentials");
    let r = env
        .post(
            &format!("/api/admin/users/{nid}/disable"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["changed"], false);
    // Own account: refused. Another practice's account: not found.
    let own = env.user("admin").id;
    let r = env
        .post(
            &format!("/api/admin/users/{own}/disable"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let outsider = env
        .store
        .create_staff(
            &AccessContext::system("test"),
            env.other_practice,
            &NewStaff {
                username: "outsider".into(),
                display_name: "Outsider".into(),
                roles: vec![Role::Nurse],
                password_hash: None,
            },
        )
        .await
        .unwrap();
    let r = env
        .post(
            &format!("/api/admin/users/{outsider}/disable"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A disabled service client's token stops working.
    let token = env.service_token(&[PurposeOfUse::Operations]).await;
    let sid = env.user("service").id;
    env.post(
        &format!("/api/admin/users/{sid}/disable"),
        Some(&admin),
        json!({}),
    )
    .await;
    let r = env
        .client
        .post(env.url("/test/gateway"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Enable: the nurse logs in again.
    let r = env
        .post(
            &format!("/api/admin/users/{nid}/enable"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["changed"], true);
    env.clock.advance(Duration::minutes(1));
    env.login("nurse").await;
    let details = env.details().await;
    assert!(details.iter().any(|d| d == "user_disabled"));
    assert!(details.iter().any(|d| d == "user_enabled"));
}

/// Service clients use API tokens only: no password log-in, no cookie session, whatever made it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_clients_never_hold_a_console_session() {
    let env = start().await;
    let (status, body, session) = env.login_password("service").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "invalid_credentials");
    assert!(session.is_none());
    // Even a session planted in the database is refused, and ended.
    let planted = env.direct_session(env.user("service").id).await;
    assert_eq!(
        env.get("/api/auth/me", Some(&planted)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        env.store
            .count_staff_sessions(env.user("service").id)
            .await
            .unwrap(),
        0
    );
}

/// Each request made with an API token serves one purpose of use, within the token's scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_purposes_are_checked_per_request() {
    let env = start().await;
    let two = env
        .service_token(&[PurposeOfUse::Operations, PurposeOfUse::Treatment])
        .await;
    let call = |token: String, purpose: Option<&'static str>| {
        let env = &env;
        async move {
            let mut req = env.client.post(env.url("/test/gateway")).bearer_auth(token);
            if let Some(p) = purpose {
                req = req.header("x-purpose-of-use", p);
            }
            let r = req.send().await.unwrap();
            let status = r.status();
            (status, r.text().await.unwrap())
        }
    };
    let (status, body) = call(two.clone(), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("purpose_required"));
    let (status, body) = call(two.clone(), Some("payment")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("purpose_not_allowed"));
    let (status, body) = call(two.clone(), Some("emergency")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = call(two.clone(), Some("anything")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("invalid_purpose"));
    let (status, body) = call(two.clone(), Some("treatment")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("treatment"), "{body}");
    // One purpose: implied.
    let one = env.service_token(&[PurposeOfUse::Operations]).await;
    let (status, body) = call(one, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("operations"), "{body}");
    let denied = env
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e.detail.as_deref() == Some("permission_denied"))
        .collect::<Vec<_>>();
    assert!(
        denied
            .iter()
            .any(|e| e.purpose == Some(PurposeOfUse::Payment))
    );
}

/// Patient and message reads return only what the caller's roles allow (decided by the store),
/// over HTTP: schedulers never see clinical bodies, nurses do once on the care team.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_and_message_reads_are_minimum_necessary() {
    let env = start().await;
    let record = format!("/api/patients/{}", env.patient);
    let messages = format!("/api/conversations/{}/messages", env.conversation);
    let sched = env.login("scheduler").await;
    let v = env.get_json(&record, &sched).await;
    assert_eq!(v["demographics"]["family_name"], "Hopper");
    assert_eq!(v["contact"]["phone"], "(202) 555-0142");
    assert!(v.get("identifiers").is_none(), "{v}");
    assert!(!v.to_string().contains("MRN-0042"));
    let billing = env.login("billing").await;
    let v = env.get_json(&record, &billing).await;
    assert_eq!(v["identifiers"]["mrn"], "MRN-0042");
    assert_eq!(v["purpose"], "payment");
    // The audit record of the scheduler's read lists exactly what was disclosed.
    let reads: Vec<AuditEvent> = env
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e.patient == Some(env.patient) && e.object.kind == "patient")
        .collect();
    assert!(
        reads
            .iter()
            .any(|e| e.categories == vec![DataCategory::Demographics, DataCategory::Contact])
    );
    // Search through the blind indexes.
    let found = env
        .get_json("/api/patients?phone=%2B1%20202%20555%200142", &sched)
        .await;
    assert_eq!(found["patients"][0]["id"], env.patient.to_string());
    let found = env
        .get_json("/api/patients?name=hopper%20grace", &sched)
        .await;
    assert_eq!(found["patients"].as_array().unwrap().len(), 1);
    let none = env.get_json("/api/patients?mrn=NOPE-1", &sched).await;
    assert!(none["patients"].as_array().unwrap().is_empty());
    for bad in [
        "/api/patients",
        "/api/patients?phone=2025550142&mrn=MRN-0042",
        "/api/patients?phone=call%20me",
        "/api/patients?ssn=123",
        "/api/patients?name=%00%01",
    ] {
        let r = env.get(bad, Some(&sched)).await;
        assert!(r.status().is_client_error(), "{bad}: {}", r.status());
    }
    // Another practice's patient does not exist for them.
    assert_eq!(
        env.get(
            &format!("/api/patients/{}", env.foreign_patient),
            Some(&sched)
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
    // Messages: the scheduler never sees the clinical body.
    let page = env.get_json(&messages, &sched).await;
    assert!(!page.to_string().contains("wheezing"), "{page}");
    assert_eq!(page["messages"][1]["withheld"], true);
    assert_eq!(page["messages"][0]["body"], "Can we move Tuesday's visit?");
    assert_eq!(page["conversation"]["subject"], "Follow-up");
    let list = env
        .get_json(
            &format!("/api/patients/{}/conversations", env.patient),
            &sched,
        )
        .await;
    assert_eq!(list["conversations"][0]["id"], env.conversation.to_string());
    // The nurse, out of care, neither; the clinician puts her on the care team.
    let nurse = env.login("nurse").await;
    let page = env.get_json(&messages, &nurse).await;
    assert!(!page.to_string().contains("wheezing"));
    assert_eq!(page["break_glass_available"], true);
    let clin = env.login("clinician").await;
    let team = format!("/api/patients/{}/care-team", env.patient);
    let r = env
        .post(
            &team,
            Some(&clin),
            json!({"staff_id": env.user("clinician").id}),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "no self-assignment"
    );
    let r = env
        .post(
            &team,
            Some(&clin),
            json!({"staff_id": env.user("nurse").id}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let page = env.get_json(&messages, &nurse).await;
    assert_eq!(
        page["messages"][1]["body"],
        "The wheezing got worse at night"
    );
    assert_eq!(page["purpose"], "treatment");
    let members = env.get_json(&team, &clin).await;
    assert_eq!(
        members["members"][0]["staff_id"],
        env.user("nurse").id.to_string()
    );
    // The scheduler cannot manage care teams.
    let r = env
        .post(
            &team,
            Some(&sched),
            json!({"staff_id": env.user("nurse").id}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = env
        .delete(&format!("{team}/{}", env.user("nurse").id), &clin)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        !env.get_json(&messages, &nurse)
            .await
            .to_string()
            .contains("wheezing")
    );
}

/// Emergency access: only for the caller's practice; the privacy officer is notified in the
/// console (marking delivered), reviews the stated reasons and marks the review; the store then
/// shows the clinical bodies, audited as emergency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_is_practice_scoped_notified_and_reviewed() {
    let env = start().await;
    let clin = env.login("clinician").await;
    let foreign = env
        .post(
            &format!("/api/patients/{}/break-glass", env.foreign_patient),
            Some(&clin),
            json!({"reason_code": "medical_emergency", "reason_text": "Collapsed at the front door"}),
        )
        .await;
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    let messages = format!("/api/conversations/{}/messages", env.conversation);
    assert!(
        !env.get_json(&messages, &clin)
            .await
            .to_string()
            .contains("wheezing")
    );
    let r = env
        .post(
            &format!("/api/patients/{}/break-glass", env.patient),
            Some(&clin),
            json!({"reason_code": "urgent_follow_up", "reason_text": "Wheezing report overnight; covering for the GP"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let grant = r.json::<Value>().await.unwrap()["grant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = env.get_json(&messages, &clin).await;
    assert_eq!(
        page["messages"][1]["body"],
        "The wheezing got worse at night"
    );
    assert_eq!(page["purpose"], "emergency");
    let last = env.audit_events().await.pop().unwrap();
    assert_eq!(last.detail.as_deref(), Some("break_glass"));
    assert_eq!(last.purpose, Some(PurposeOfUse::Emergency));
    // The privacy officer's console poll shows it; others see nothing.
    let po = env.login("privacy").await;
    let notes = env.get_json("/api/notifications", &po).await;
    let notes = notes.as_array().unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["kind"], "break_glass");
    assert_eq!(notes[0]["details"]["grant"], grant.as_str());
    assert!(!notes[0].to_string().contains("covering"));
    let nurse = env.login("nurse").await;
    assert!(
        env.get_json("/api/notifications", &nurse)
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    let id = notes[0]["id"].as_str().unwrap();
    assert_eq!(
        env.post(
            &format!("/api/notifications/{id}/delivered"),
            Some(&nurse),
            json!({})
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        env.post(
            &format!("/api/notifications/{id}/delivered"),
            Some(&po),
            json!({})
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    assert!(
        env.get_json("/api/notifications", &po)
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        env.get_json("/api/notifications?all=true", &po)
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Review: the stated reason (audited read), then the outcome, once.
    let list = env.get_json("/api/privacy/break-glass", &po).await;
    assert_eq!(list[0]["grant_id"], grant.as_str());
    assert_eq!(
        list[0]["reason_text"],
        "Wheezing report overnight; covering for the GP"
    );
    assert_eq!(list[0]["reason_code"], "urgent_follow_up");
    assert!(
        env.details()
            .await
            .iter()
            .any(|d| d == "break_glass_review")
    );
    let review = format!("/api/privacy/break-glass/{grant}/review");
    let r = env
        .post(&review, Some(&po), json!({"outcome": "fine i guess"}))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = env
        .post(&review, Some(&po), json!({"outcome": "appropriate"}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = env
        .post(&review, Some(&po), json!({"outcome": "appropriate"}))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(
        env.get_json("/api/privacy/break-glass", &po)
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    let all = env
        .get_json("/api/privacy/break-glass?status=all", &po)
        .await;
    assert_eq!(all[0]["review_outcome"], "appropriate");
    assert_eq!(all[0]["reviewed_by"], env.user("privacy").id.to_string());
    assert!(
        env.details()
            .await
            .iter()
            .any(|d| d == "break_glass_reviewed")
    );
    // Clinicians cannot review.
    assert_eq!(
        env.get("/api/privacy/break-glass", Some(&clin))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
}

/// Over real TLS: HSTS on every response, the `__Host-` cookie with `Secure`, usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_cookies_are_secure_host_cookies_and_hsts_is_sent() {
    let certs = tempfile::tempdir().unwrap();
    let env = start_with(Opts {
        tls: Some(write_cert(certs.path())),
        ..Opts::default()
    })
    .await;
    assert!(env.base.starts_with("https://"));
    for path in ["/healthz", "/api/auth/me", "/no/such/route"] {
        let r = env.get(path, None).await;
        assert_eq!(
            r.headers()["strict-transport-security"],
            "max-age=63072000; includeSubDomains",
            "{path}"
        );
    }
    let r = env
        .post(
            "/api/auth/login",
            None,
            json!({"username": "clinician", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.starts_with("__Host-perimeter_session="),
        "{set_cookie}"
    );
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Domain"), "{set_cookie}");
    let csrf = r.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let pending = Session {
        cookie: set_cookie.split(';').next().unwrap().to_owned(),
        csrf,
    };
    let r = env
        .post(
            "/api/auth/mfa/verify",
            Some(&pending),
            json!({"code": env.code("clinician")}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = cookie_from(&r).unwrap();
    assert!(cookie.starts_with("__Host-perimeter_session="));
    let s = Session {
        cookie,
        csrf: String::new(),
    };
    assert_eq!(
        env.get("/api/auth/me", Some(&s)).await.status(),
        StatusCode::OK
    );
    // The plain name is not accepted under TLS.
    let plain = Session {
        cookie: s.cookie.replace("__Host-", ""),
        csrf: String::new(),
    };
    assert_eq!(
        env.get("/api/auth/me", Some(&plain)).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// Started before the database: authenticated routes and log-in answer 503 and run nothing;
/// once the store is there they work, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_database_is_open_auth_answers_503_then_works_without_restart() {
    let env = start_with(Opts {
        ready: false,
        ..Opts::default()
    })
    .await;
    let before = env.audit_count().await;
    assert_eq!(env.get("/healthz", None).await.status(), StatusCode::OK);
    let r = env
        .post(
            "/api/auth/login",
            None,
            json!({"username": "clinician", "password": PASSWORD}),
        )
        .await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "not_ready");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("database")
    );
    for path in ["/api/auth/me", "/api/admin/users"] {
        let r = env.get(path, None).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(r.headers().contains_key("content-security-policy"));
    }
    assert_eq!(env.audit_count().await, before);
    assert!(env.slot.activate(env.store.clone()));
    assert!(!env.slot.activate(env.store.clone()), "activated once");
    env.login("clinician").await;
}

/// Bad input on authenticated and administrative routes: a clear 4xx, nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_authenticated_and_admin_routes_changes_nothing() {
    let env = start().await;
    let admin = env.login("admin").await;
    let staff_before = env.store.list_staff(env.practice).await.unwrap();
    let audit_before = env.audit_count().await;
    let send = |method: reqwest::Method, path: &str, ct: Option<&str>, body: Vec<u8>| {
        let mut req = env
            .client
            .request(method, env.url(path))
            .header("cookie", &admin.cookie)
            .header("x-csrf-token", &admin.csrf)
            .body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    let break_glass = format!("/api/patients/{}/break-glass", env.patient);
    let user_body = br#"{"username":"eve","display_name":"Eve","roles":["scheduler"],"password":"a long enough password"}"#.to_vec();
    let cases: Vec<(&str, Option<&str>, Vec<u8>, u16)> = vec![
        ("/api/admin/users", Some("text/plain"), user_body.clone(), 415),
        ("/api/admin/users", None, user_body.clone(), 415),
        ("/api/admin/users", Some("application/json"), b"{\"username\": ".to_vec(), 400),
        ("/api/admin/users", Some("application/json"), b"[1,2,3]".to_vec(), 422),
        (
            "/api/admin/users",
            Some("application/json"),
            br#"{"username":"eve","display_name":"Eve","roles":["scheduler"],"password":"a long enough password","is_admin":true}"#.to_vec(),
            422,
        ),
        (
            "/api/admin/users",
            Some("application/json"),
            br#"{"username":"eve","display_name":"Eve","roles":["root"],"password":"a long enough password"}"#.to_vec(),
            422,
        ),
        (
            "/api/admin/users",
            Some("application/json"),
            format!(
                r#"{{"username":"eve","display_name":"Eve","roles":["scheduler"],"password":"{}"}}"#,
                "x".repeat(64 * 1024)
            )
            .into_bytes(),
            413,
        ),
        (
            "/api/admin/users",
            Some("application/json"),
            "{\"username\":\"\u{435}ve\",\"display_name\":\"Eve\",\"roles\":[\"scheduler\"],\"password\":\"a long enough password\"}".as_bytes().to_vec(),
            400,
        ),
        (
            "/api/admin/users",
            Some("application/json"),
            "{\"username\":\"eve\",\"display_name\":\"Ev\u{202e}e\",\"roles\":[\"scheduler\"],\"password\":\"a long enough password\"}".as_bytes().to_vec(),
            400,
        ),
        (
            "/api/admin/users",
            Some("application/json"),
            "{\"username\":\"eve\",\"display_name\":\"E\u{200b}ve\",\"roles\":[\"scheduler\"],\"password\":\"a long enough password\"}".as_bytes().to_vec(),
            400,
        ),
        (
            "/api/admin/users",
            Some("application/json"),
            br#"{"username":"eve","display_name":"Eve","roles":[],"password":"a long enough password"}"#.to_vec(),
            400,
        ),
        (
            "/api/admin/users/not-a-uuid/roles",
            Some("application/json"),
            br#"{"roles":["nurse"]}"#.to_vec(),
            400,
        ),
        ("/api/admin/tokens", Some("application/json"), b"{}".to_vec(), 422),
        (
            "/api/admin/tokens",
            Some("application/json"),
            br#"{"client_id":"x","label":"l","permissions":["use_gateway"],"purposes":["operations"],"expires_in_days":-1}"#.to_vec(),
            422,
        ),
        ("/api/auth/password", Some("application/json"), b"null".to_vec(), 422),
        (
            "/api/auth/password",
            Some("application/x-www-form-urlencoded"),
            b"current_password=a&new_password=b".to_vec(),
            415,
        ),
        (
            "/api/admin/lockouts/unlock-address",
            Some("application/json"),
            "{\"address\":\"127.0.0.\u{0661}\"}".as_bytes().to_vec(),
            400,
        ),
        (
            &break_glass,
            Some("application/json"),
            br#"{"reason_code":"because","reason_text":"a long enough reason"}"#.to_vec(),
            403,
        ),
    ];
    for (path, ct, body, expected) in cases {
        // Pooled connections on purpose: the server reads an oversized body away before its
        // 413, so the answer arrives and the connection stays usable for the next case.
        let r = send(reqwest::Method::POST, path, ct, body.clone())
            .await
            .unwrap_or_else(|e| panic!("{path} {ct:?}: {e}"));
        let status = r.status().as_u16();
        let is_json = r
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("application/json"));
        let text = r.text().await.unwrap();
        assert_eq!(status, expected, "{path} {ct:?}: {text}");
        assert!(is_json, "{path}: JSON error body");
        assert!(
            !text.contains("long enough password"),
            "{path}: echoes the body"
        );
    }
    // Unicode tricks in path ids and queries (by a role that may call these routes).
    let clin = env.direct_session(env.user("clinician").id).await;
    for path in [
        "/api/patients/%E2%80%AE1234",
        "/api/patients/\u{FF11}\u{FF12}",
        "/api/conversations/\u{0661}\u{0662}/messages",
        "/api/conversations/00000000-0000-0000-0000-000000000000/messages?limit=0",
        "/api/patients?name=gr%E2%80%8Bace",
    ] {
        let r = env.get(path, Some(&clin)).await;
        assert!(r.status().is_client_error(), "{path}: {}", r.status());
    }
    assert_eq!(
        env.store.list_staff(env.practice).await.unwrap(),
        staff_before
    );
    // Only the (audited) permission denial of the admin's break-glass attempt was recorded.
    let after = env.audit_events().await;
    assert_eq!(after.len(), audit_before + 1);
    assert_eq!(
        after.last().unwrap().detail.as_deref(),
        Some("permission_denied")
    );
}

/// Behind a trusted reverse proxy, the client address (audit records, per-address throttling)
/// is the rightmost untrusted `X-Forwarded-For` entry, so a client cannot choose its address by
/// prepending one; without trust the header is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_addresses_come_from_trusted_proxies_only() {
    async fn fail_from(env: &Env, forwarded: &str, n: usize) {
        for i in 0..n {
            let r = env
                .client
                .post(env.url("/api/auth/login"))
                .header("x-forwarded-for", forwarded)
                .json(&json!({"username": format!("nobody{i}"), "password": "wrong password here"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
            env.clock.advance(Duration::seconds(31));
        }
    }
    let env = start_with(Opts {
        trusted_proxies: Some("127.0.0.1, 10.0.0.0/8"),
        ..Opts::default()
    })
    .await;
    fail_from(&env, "6.6.6.6, 203.0.113.5, 10.1.1.1", 20).await;
    let events = env.audit_events().await;
    assert!(
        events
            .iter()
            .filter(|e| e.detail.as_deref() == Some("login_failed"))
            .all(|e| e.client_addr.as_deref() == Some("203.0.113.5")),
        "{events:?}"
    );
    let admin = env.direct_session(env.user("admin").id).await;
    let list: Value = env.get_json("/api/admin/lockouts", &admin).await;
    let subjects: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["scope"] == "address")
        .filter_map(|l| l["subject"].as_str())
        .collect();
    assert_eq!(subjects, vec!["203.0.113.5"], "{list}");
    // Another client behind the same proxy is not locked out.
    let r = env
        .client
        .post(env.url("/api/auth/login"))
        .header("x-forwarded-for", "203.0.113.6")
        .json(&json!({"username": env.user("nurse").username, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // No trusted proxy: the header is ignored, the peer is the client.
    let plain = start().await;
    fail_from(&plain, "203.0.113.5", 1).await;
    let events = plain.audit_events().await;
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.detail.as_deref() == Some("login_failed"))
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].client_addr.as_deref(), Some("127.0.0.1"));
}

/// The vendor registry over HTTP: administrators add, change and remove vendors (audited by
/// the store); privacy officers may look but not change; the API key is sealed and never
/// returned; bad terms get a 422 that says what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_manage_the_vendor_registry_over_http() {
    let env = start().await;
    let admin = env.direct_session(env.user("admin").id).await;
    let po = env.direct_session(env.user("privacy").id).await;
    let key = "sk-http-vendor-key-777";
    let terms = json!({
        "name": "acme",
        "base_url": "https://api.acme.example/v1",
        "models": ["acme-large"],
        "data_class": "phi",
        "baa": {"signed": "2025-01-01", "expires": "2099-01-01", "document_ref": "BAA-7"},
        "zero_retention": true,
        "no_training": true,
        "api_key": key,
    });
    let r = env.post("/api/vendors", Some(&po), terms.clone()).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = env.post("/api/vendors", Some(&admin), terms.clone()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["api_key"], "sealed");
    assert_eq!(v["effective_class_today"], "phi");
    let list = env.get_json("/api/vendors", &po).await;
    assert_eq!(list["vendors"][0]["name"], "acme");
    assert!(!list.to_string().contains(key));
    let r = env.post("/api/vendors", Some(&admin), terms.clone()).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let mut bad = terms.clone();
    bad["data_class"] = json!("secret");
    let r = env.post("/api/vendors", Some(&admin), bad).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let mut changed = terms.clone();
    changed["data_class"] = json!("deidentified");
    changed.as_object_mut().unwrap().remove("api_key");
    let r = env
        .client
        .put(env.url("/api/vendors/acme"))
        .header("cookie", &admin.cookie)
        .header("x-csrf-token", &admin.csrf)
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["data_class"].as_str(), v["api_key"].as_str()),
        (Some("deidentified"), Some("sealed"))
    );
    assert_eq!(v["revision"], 2);
    let r = env.delete("/api/vendors/acme", &admin).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = env.get("/api/vendors/acme", Some(&po)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let details = env.details().await;
    for d in ["vendor_added", "vendor_updated", "vendor_removed"] {
        assert!(details.iter().any(|x| x.contains(d)), "{d}: {details:?}");
    }
    assert!(details.iter().all(|x| !x.contains(key)));
}

/// The staff console in a real browser (headless Chromium driven by Playwright,
/// `tests/browser/console.mjs`): a wrong password, sign-in with the authenticator's code, a
/// scheduler's view of a record and a conversation (contact data, the administrative message;
/// the MRN and the clinical body never reach the page), an internal note through the CSRF
/// header and a forged request without it refused, sign-out, a new user's enrolment from the
/// QR page's key with recovery codes, and automatic logoff once the server's clock passes the
/// idle limit; no CSP violation or script error on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    use std::io::{BufRead, Write};
    let (node, dir) = crate::support::browser_prerequisites();
    let env = start().await;
    let code = env.code("scheduler");
    let epoch = env.clock.now().unix_timestamp();
    let mut child = std::process::Command::new(node)
        .arg(dir.join("console.mjs"))
        .arg(&env.base)
        .arg(epoch.to_string())
        .arg(code)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(120);
    while let Ok(Some(line)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if line == "advance-clock" {
            // Past the 15-minute idle limit (the default policy).
            env.clock.advance(Duration::minutes(16));
            writeln!(stdin, "advanced").unwrap();
            stdin.flush().unwrap();
        }
        seen.push(line);
    }
    drop(stdin);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = seen.join("\n");
    assert!(
        out.status.success(),
        "the console browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("console browser test: ok"), "{stdout}");
    // The pages came with the console's policy; the session it signed out is gone.
    let r = env.get("/console", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    // The note the scheduler wrote through the console is stored with the conversation.
    let sched = env.direct_session(env.user("scheduler").id).await;
    let notes = env
        .get_json(
            &format!("/api/conversations/{}/notes", env.conversation),
            &sched,
        )
        .await;
    assert!(
        notes["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["body"] == "Called back; prefers Thursday mornings."),
        "{notes}"
    );
}

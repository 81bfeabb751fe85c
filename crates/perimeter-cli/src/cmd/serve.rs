//! `perimeter serve`: run the HTTP server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::http::Method;
use clap::Args;
use perimeter_domain::{SharedClock, SystemClock};
use perimeter_server::{
    Access, AppParts, AuthSettings, AuthSlot, BoxFuture, HttpLimits, Metrics, PoolStats, Readiness,
    ReadyCheck, ReadyReport, RouteError, RouteModule, Routes, ServerSettings, SessionPolicy,
    TlsFiles,
};
use perimeter_store::{DemoOptions, SchemaStatus, SeedReport, StoreError};

use crate::config::{Config, FlagOverride};
use crate::runtime::{self, OpenMode, Runtime};

/// Test hook: when this variable is set, `GET /test/slow/{ms}` is added (it sleeps `ms`
/// milliseconds, at most 60 s), so tests of the binary can hold a request in flight.
const ENV_TEST_SLOW_ROUTE: &str = "PERIMETER_TEST_SLOW_ROUTE";

/// Options of `perimeter serve`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  perimeter serve --demo
  perimeter serve --listen 127.0.0.1:0                      (pick a free port; the address is printed)
  perimeter serve --listen 0.0.0.0:8443 --config /etc/perimeter/perimeter.toml   (with [tls] set)
  perimeter serve --print-config")]
pub struct ServeArgs {
    /// Address and port to listen on. Default 127.0.0.1:8080; port 0 picks a free port.
    /// A non-loopback address needs [tls] or --insecure-http. Environment: PERIMETER_LISTEN.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Allow plain HTTP on a non-loopback address (only behind a TLS-terminating proxy).
    /// Environment: PERIMETER_INSECURE_HTTP.
    #[arg(long)]
    pub insecure_http: bool,
    /// Database URL: sqlite://PATH or postgres://USER[:PASSWORD]@HOST[:PORT]/DB. Default: the
    /// SQLite file <data-dir>/perimeter.db. Environment: PERIMETER_DATABASE_URL.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Seed a demo practice with demo staff and synthetic patients (if not yet seeded) and
    /// print how to log in.
    #[arg(long)]
    pub demo: bool,
    /// Print the effective configuration as TOML (database password and keys masked) and exit.
    #[arg(long)]
    pub print_config: bool,
}

impl ServeArgs {
    /// The configuration keys these flags set.
    pub fn overrides(&self) -> Vec<FlagOverride> {
        let mut flags = Vec::new();
        if let Some(listen) = self.listen {
            flags.push(FlagOverride::string(
                "listen",
                "--listen",
                listen.to_string(),
            ));
        }
        if self.insecure_http {
            flags.push(FlagOverride::bool("insecure_http", "--insecure-http", true));
        }
        if let Some(url) = &self.database_url {
            flags.push(FlagOverride::string(
                "database_url",
                "--database-url",
                url.clone(),
            ));
        }
        flags
    }
}

/// What `/readyz` reports while the server runs: the opened runtime once the database has
/// been reached, else why not yet.
struct Services {
    runtime: OnceLock<Runtime>,
    /// Why the last attempt to open the database failed (no secrets: the store masks them).
    problem: Mutex<Option<String>>,
    /// Authentication, activated with the store once the database is open.
    auth: AuthSlot,
    /// Where the server listens, for the demo instructions (`http://127.0.0.1:8080`).
    base_url: String,
}

impl Services {
    fn set_problem(&self, problem: Option<String>) {
        if let Ok(mut slot) = self.problem.lock() {
            *slot = problem;
        }
    }
}

impl Readiness for Services {
    fn check(&self) -> BoxFuture<'_, ReadyReport> {
        Box::pin(async move {
            let Some(rt) = self.runtime.get() else {
                let reason = self
                    .problem
                    .lock()
                    .ok()
                    .and_then(|p| p.clone())
                    .unwrap_or_else(|| "connecting".to_owned());
                return ReadyReport {
                    checks: vec![
                        ReadyCheck::fail("database", reason),
                        ReadyCheck::fail("keys", "not loaded yet"),
                        ReadyCheck::fail("migrations", "not checked yet"),
                    ],
                };
            };
            let database = match rt.store.ping().await {
                Ok(()) => ReadyCheck::pass("database"),
                Err(_) => ReadyCheck::fail("database", "cannot reach the database"),
            };
            let migrations = match rt.store.schema_status().await {
                Ok(SchemaStatus::Current { .. }) => ReadyCheck::pass("migrations"),
                Ok(_) => ReadyCheck::fail("migrations", "migrations are not current"),
                Err(_) => ReadyCheck::fail("migrations", "cannot read the schema version"),
            };
            let keys = if rt.keys.kek_versions().is_empty() {
                ReadyCheck::fail("keys", "no key-encryption key loaded")
            } else {
                ReadyCheck::pass("keys")
            };
            ReadyReport {
                checks: vec![database, keys, migrations],
            }
        })
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }
}

/// Whether an open failure is the database being unreachable (worth retrying).
fn is_transient(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<StoreError>()
            .is_some_and(StoreError::is_transient)
    })
}

/// Runs the server until SIGTERM/SIGINT.
pub async fn run(args: ServeArgs, config: &Config) -> anyhow::Result<()> {
    if args.print_config {
        let text = config
            .to_masked_toml()
            .context("cannot render the configuration")?;
        print!("{text}");
        return Ok(());
    }
    crate::logging::init(config);

    let settings = ServerSettings {
        listen: config.listen,
        tls: config.tls.as_ref().map(|t| TlsFiles {
            cert_file: t.cert_file.clone(),
            key_file: t.key_file.clone(),
        }),
        insecure_http: config.insecure_http,
        shutdown_grace: Duration::from_millis(config.http.shutdown_grace_ms),
    };
    // Refusals (plain HTTP off loopback, unreadable TLS files, port in use) come first, before
    // anything is created on disk.
    let bound = perimeter_server::bind(&settings)?;
    // The model inside the perimeter, when `[local_model]` is configured: loaded and checked
    // before listening, so a bad file stops the start with a clear error; then served on
    // /v1/chat/completions (and listed on /v1/models) under its configured name.
    let local_model = load_local_model(config).await?;
    // The gateway's PHI engine with `phi.max_message_bytes` (texts beyond it are refused
    // before any AI call).
    perimeter_server::gateway_api::configure_phi_engine(
        usize::try_from(config.phi.max_message_bytes).unwrap_or(usize::MAX),
    )
    .context("phi.max_message_bytes")?;

    let clock: SharedClock = Arc::new(SystemClock);
    let services = Arc::new(Services {
        runtime: OnceLock::new(),
        problem: Mutex::new(Some("connecting".to_owned())),
        auth: AuthSlot::new(clock.clone(), auth_settings(config)),
        base_url: format!("{}://{}", bound.scheme(), bound.local_addr()),
    });
    // The first attempt decides: anything but an unreachable database stops here.
    match runtime::open(config, OpenMode::CreateIfMissing).await {
        Ok(rt) => started(&services, rt, args.demo).await?,
        Err(e) if is_transient(&e) => {
            tracing::warn!(error = %format!("{e:#}"), "database unavailable at start; serving /readyz as not ready and retrying");
            services.set_problem(Some("cannot reach the database; retrying".to_owned()));
            tokio::spawn(retry_open(services.clone(), config.clone(), args.demo));
        }
        Err(e) => return Err(e),
    }

    let metrics = Metrics::new();
    let channels = channel_settings(config)?;
    let channels = perimeter_server::channels::Channels::new(channels, intake_classifier());
    let mut app = build_app(config, &services, clock.clone(), metrics.clone())?
        .with_channels(channels.clone());
    // Validated at load: a bad list stopped the start with the key named.
    let proxies = perimeter_server::TrustedProxies::parse(&config.http.trusted_proxies)
        .context("http.trusted_proxies")?;
    if !proxies.is_empty() {
        app = app.with_trusted_proxies(proxies);
    }
    app = app.with_work_settings(perimeter_server::work_api::WorkSettings {
        summary_model: config.assist.summary_model.clone(),
        draft_model: config.assist.draft_model.clone(),
        levels: config.service_levels.levels(),
    });
    if let Some(model) = local_model {
        app = app.with_local_model(Arc::new(perimeter_gateway::LocalProvider::new(
            LOCAL_VENDOR,
            model,
            clock.clone(),
        )));
    }
    let (stop_sender, sender_task) =
        spawn_sms_sender(&channels, &services, clock.clone(), metrics.clone())?;

    let addr = bound.local_addr();
    let scheme = bound.scheme();
    // Signal handlers first: a SIGTERM right after the announcement is a graceful stop.
    let shutdown = perimeter_server::shutdown_signal();
    tracing::info!(%addr, scheme, "perimeter listening");
    println!("perimeter listening on {scheme}://{addr}");

    // Audit checkpoints: the checkpointer starts once the database is open and writes a last
    // checkpoint after the server has drained (see cmd::audit::ServeCheckpointer).
    let checkpoints = crate::cmd::audit::ServeCheckpointer::spawn(config, {
        let services = services.clone();
        move || {
            let rt = services.runtime.get()?;
            Some((rt.store.clone(), rt.keys.clone()))
        }
    });
    // The escalation sweep, the reminder sender and web chat housekeeping (perimeter-server's
    // work_tasks).
    let work = perimeter_server::work_tasks::WorkTasks::spawn(
        {
            let services = services.clone();
            move || services.runtime.get().map(|rt| rt.store.clone())
        },
        perimeter_server::work_tasks::WorkTaskSettings {
            rules: Default::default(),
            chat: channels.settings().chat.policy,
        },
        Duration::from_secs(15),
    );
    // The BAA monitor: records each expired BAA's downgrade once, with an alert for the
    // administrators (the policy downgrades on the day by itself).
    let monitor = tokio::spawn(baa_monitor(services.clone(), BAA_MONITOR_EVERY));
    // Key rotation is online: the rotated key file is picked up without a restart.
    let key_reload = tokio::spawn(key_reloader(services.clone(), KEY_RELOAD_EVERY));
    bound.run(app, shutdown).await?;
    monitor.abort();
    key_reload.abort();
    work.finish().await;
    let _ = stop_sender.send(true);
    if let Some(task) = sender_task {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    checkpoints.finish().await;
    if let Some(rt) = services.runtime.get() {
        rt.store.close().await;
    }
    tracing::info!("perimeter stopped");
    Ok(())
}

/// The vendor name the model inside the perimeter is audited under.
const LOCAL_VENDOR: &str = "local";

/// How often the server looks for a rotated key file (SIGHUP looks at once).
const KEY_RELOAD_EVERY: Duration = Duration::from_secs(10);

/// Reloads the key ring when `perimeter keys rotate` or `keys retire` changed the key file,
/// every `every` and on SIGHUP, so new data keys are wrapped by the new primary KEK without a
/// restart. A key file that does not fit the database is refused and the old ring kept.
async fn key_reloader(services: Arc<Services>, every: Duration) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        {
            let hup = async {
                match hangup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = hup => tracing::info!("SIGHUP: checking the key file"),
            }
        }
        #[cfg(not(unix))]
        tokio::time::sleep(every).await;
        if let Some(rt) = services.runtime.get()
            && let Err(e) = rt.store.reload_keys().await
        {
            tracing::warn!(error = %e, "the key file changed but cannot be used; keeping the loaded key ring");
        }
    }
}

/// How often the BAA monitor looks at the vendor registry.
const BAA_MONITOR_EVERY: Duration = Duration::from_secs(60);

/// Runs [`baa_monitor_pass`] every `every` once the database is open.
async fn baa_monitor(services: Arc<Services>, every: Duration) {
    loop {
        if let Some(rt) = services.runtime.get()
            && let Err(e) = baa_monitor_pass(&rt.store).await
        {
            tracing::warn!(error = %e, "the BAA monitor could not check the vendor registry; retrying");
        }
        tokio::time::sleep(every).await;
    }
}

/// One pass of the BAA monitor, on the store's (injected) clock's day.
pub(crate) async fn baa_monitor_pass(
    store: &perimeter_store::Store,
) -> Result<Vec<String>, StoreError> {
    let day = store.clock().now().date();
    let recorded = store
        .monitor_baas(&perimeter_store::AccessContext::system("baa_monitor"), day)
        .await?;
    for name in &recorded {
        tracing::warn!(vendor = %name, "a vendor's BAA expired: it now receives de-identified text only; administrators were notified");
    }
    Ok(recorded)
}

/// Loads `[local_model]` on a blocking thread (seconds for a large file).
async fn load_local_model(config: &Config) -> anyhow::Result<Option<perimeter_llm::LocalModel>> {
    let Some(lm) = &config.local_model else {
        return Ok(None);
    };
    let settings = lm.model_config();
    let path = lm.path.clone();
    let model = tokio::task::spawn_blocking(move || perimeter_llm::LocalModel::load(&settings))
        .await
        .context("the local model's loader stopped")?
        .with_context(|| format!("local_model.path: cannot load {}", path.display()))?;
    let info = model.info();
    tracing::info!(
        name = %info.name,
        context = info.context,
        threads = info.threads,
        requantized_tensors = info.requantized_tensors,
        load_ms = u64::try_from(info.load_time.as_millis()).unwrap_or(u64::MAX),
        "local model loaded"
    );
    Ok(Some(model))
}

/// The authentication settings the configuration gives: `[sessions]` timeouts, and
/// `Secure`/`__Host-` cookies with HSTS whenever browsers reach Perimeter over HTTPS (`[tls]`
/// here, or `insecure_http` behind a TLS-terminating proxy).
fn auth_settings(config: &Config) -> AuthSettings {
    AuthSettings {
        sessions: SessionPolicy::from_config(
            config.sessions.idle_timeout_minutes,
            config.sessions.absolute_timeout_hours,
        ),
        tls: config.tls.is_some() || config.insecure_http,
        ..AuthSettings::default()
    }
}

/// The application (perimeter-server's `build_app`, the one route table), with the test
/// route when its environment variable is set.
fn build_app(
    config: &Config,
    services: &Arc<Services>,
    clock: SharedClock,
    metrics: Metrics,
) -> anyhow::Result<perimeter_server::App> {
    let limits = HttpLimits {
        max_body_bytes: usize::try_from(config.http.max_body_bytes).unwrap_or(usize::MAX),
        request_timeout: Duration::from_millis(config.http.request_timeout_ms),
    };
    let mut extra_routes: Vec<RouteModule> = Vec::new();
    if std::env::var_os(ENV_TEST_SLOW_ROUTE).is_some() {
        tracing::warn!("{ENV_TEST_SLOW_ROUTE} is set: serving the test route /test/slow/{{ms}}");
        extra_routes.push(Box::new(add_test_routes));
    }
    Ok(perimeter_server::build_app(AppParts {
        readiness: services.clone(),
        clock,
        metrics,
        limits,
        auth: services.auth.clone(),
        audit: perimeter_server::audit_api::AuditApiSettings {
            checkpoint_dir: Some(config.checkpoint_dir()),
            grace_millis: i64::try_from(config.audit.checkpoint_every_seconds)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000),
            fhir: perimeter_audit::export::FhirOptions {
                server_name: "perimeter".to_owned(),
                server_address: hostname(),
            },
        },
        extra_routes,
    })?)
}

/// The intake classifier: the built-in model and emergency rules (`perimeter-triage`). If the
/// embedded model cannot be loaded (a broken build), every message fails closed to the
/// fallback human queue (recorded as `classifier_not_configured`) and the failure is logged.
pub fn intake_classifier() -> Arc<dyn perimeter_workflows::IntakeClassifier> {
    match perimeter_triage::Classifier::builtin() {
        Ok(classifier) => Arc::new(classifier),
        Err(e) => {
            tracing::error!(error = %e, "the built-in triage model could not be loaded; every message goes to the fallback queue");
            Arc::new(perimeter_workflows::NoClassifier)
        }
    }
}

/// The channel settings `[channels]` gives.
fn channel_settings(
    config: &Config,
) -> anyhow::Result<perimeter_server::channels::ChannelSettings> {
    use perimeter_server::channels::{ChannelSettings, TwilioConfig};
    use secrecy::ExposeSecret;
    let c = &config.channels;
    let practice = c
        .practice
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|_| anyhow::anyhow!("channels.practice: expected a practice id (UUID)"))?;
    let twilio = c.twilio.as_ref().map(|t| TwilioConfig {
        account_sid: t.account_sid.clone(),
        auth_token: zeroize::Zeroizing::new(t.auth_token.expose_secret().to_owned()),
        public_base_url: t.public_base_url.clone(),
        api_base_url: t.api_base_url.clone(),
        from_number: t.from_number.clone(),
        ca_pem: None,
        timeout: Duration::from_secs(15),
    });
    let mut s = ChannelSettings {
        practice,
        twilio,
        ..ChannelSettings::default()
    };
    s.rules.levels = config.service_levels.levels();
    if let Some(origins) = &c.chat_embed_origins {
        for o in origins.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            if !perimeter_server::channels::web_chat::valid_embed_origin(o) {
                anyhow::bail!(
                    "channels.chat_embed_origins: {o:?} is not an origin such as https://www.example-practice.org"
                );
            }
            s.chat.embed_origins.push(o.to_owned());
        }
    }
    if let Some(m) = c.chat_idle_timeout_minutes {
        if !(1..=240).contains(&m) {
            anyhow::bail!("channels.chat_idle_timeout_minutes: expected 1 to 240");
        }
        s.chat.policy.idle_millis = i64::from(m) * 60_000;
    }
    if let Some(h) = c.chat_absolute_timeout_hours {
        if !(1..=24).contains(&h) {
            anyhow::bail!("channels.chat_absolute_timeout_hours: expected 1 to 24");
        }
        s.chat.policy.absolute_millis = i64::from(h) * 3_600_000;
    }
    if let Some(t) = &c.emergency_text {
        s.texts.emergency = t.clone();
    }
    if let Some(t) = &c.help_text {
        s.texts.help = t.clone();
    }
    for (intent, queue) in &c.routing {
        let queue = perimeter_workflows::parse_queue(queue)
            .ok_or_else(|| anyhow::anyhow!("channels.routing.{intent}: not a queue"))?;
        if intent == "fallback" {
            s.rules.fallback_queue = queue;
        } else {
            let intent: perimeter_workflows::Intent = intent
                .parse()
                .map_err(|_| anyhow::anyhow!("channels.routing.{intent}: not an intent"))?;
            s.rules.queues.insert(intent, queue);
        }
    }
    Ok(s)
}

/// Starts the SMS sender (when `[channels.twilio]` is set) once the database is open; it
/// stops when the returned sender is sent `true`.
fn spawn_sms_sender(
    channels: &perimeter_server::channels::Channels,
    services: &Arc<Services>,
    clock: SharedClock,
    metrics: Metrics,
) -> anyhow::Result<(
    tokio::sync::watch::Sender<bool>,
    Option<tokio::task::JoinHandle<()>>,
)> {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let Some(twilio) = channels.settings().twilio.clone() else {
        return Ok((stop, None));
    };
    let client = perimeter_server::channels::TwilioClient::new(twilio)
        .map_err(|e| anyhow::anyhow!("[channels.twilio]: {e}"))?;
    let wake = channels.wake();
    let services = services.clone();
    let task = tokio::spawn(async move {
        let store = loop {
            if let Some(rt) = services.runtime.get() {
                break rt.store.clone();
            }
            tokio::select! {
                _ = stopped.changed() => return,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        };
        let sender = perimeter_server::channels::Sender::new(store, client, clock, metrics, wake);
        sender
            .run(Duration::from_secs(1), async move {
                let _ = stopped.changed().await;
            })
            .await;
    });
    Ok((stop, Some(task)))
}

/// This machine's host name (the FHIR server agent's network address), if it has one.
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Records the opened runtime, seeds the demo practice when asked, and turns authentication
/// on (until then the authenticated routes answer 503).
async fn started(services: &Services, rt: Runtime, demo: bool) -> anyhow::Result<()> {
    if rt.created_keys {
        tracing::info!(
            "created a new data directory and key file (mode 0600): back up the key file, without it the data cannot be read"
        );
    }
    if demo {
        let report = rt
            .store
            .seed_demo(&DemoOptions::default())
            .await
            .context("cannot seed the demo practice")?;
        print_demo(&report, &services.base_url);
    }
    services.auth.activate(rt.store.clone());
    services.set_problem(None);
    let _ = services.runtime.set(rt);
    tracing::info!("database open, keys verified, migrations current; log-in available");
    Ok(())
}

fn print_demo(report: &SeedReport, base: &str) {
    use secrecy::ExposeSecret;
    if report.created {
        println!(
            "demo practice seeded: {} patients, {} conversations, {} messages (synthetic data)",
            report.patients, report.conversations, report.messages
        );
    } else {
        println!("demo practice already seeded (the password was printed when it was created)");
    }
    println!(
        "demo users (one password for all; the first log-in of each enrols an authenticator):"
    );
    for (user, roles) in &report.users {
        let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        if roles.contains(&"service") {
            println!(
                "  {user:<12} {} (no password: API tokens only, which an admin creates with POST /api/admin/tokens)",
                roles.join(", ")
            );
        } else {
            println!("  {user:<12} {}", roles.join(", "));
        }
    }
    if let Some(password) = &report.password {
        println!("demo password (shown once): {}", password.expose_secret());
    }
    println!(
        "\
to log in: open the staff console at {base}/console in a browser and sign in as one of the users
above with the demo password; the first sign-in shows a QR code for any TOTP authenticator app.
Or over the JSON API, for example with curl:
  1. POST {base}/api/auth/login with {{\"username\": \"clinician\", \"password\": \"<demo password>\"}}
       curl -c jar -H 'content-type: application/json' -d '{{\"username\":\"clinician\",\"password\":\"PASSWORD\"}}' {base}/api/auth/login
     The first log-in answers \"mfa_enrolment_required\" with otpauth_uri, a QR code (qr_svg_data_uri:
     open it in a browser and scan it) and the secret in base32: add it to any TOTP authenticator app.
  2. Confirm with the app's current 6-digit code, sending the cookie and the csrf_token of step 1:
       curl -b jar -c jar -H 'content-type: application/json' -H 'x-csrf-token: CSRF_TOKEN' -d '{{\"code\":\"123456\"}}' {base}/api/auth/mfa/enrol
     You are logged in (and get 10 single-use recovery codes). Later log-ins answer \"mfa_required\" at
     step 1: send the code to {base}/api/auth/mfa/verify instead.
  Then, for example: curl -b jar {base}/api/auth/me ; sessions end after the [sessions] idle timeout."
    );
}

/// Retries opening with exponential backoff (1 s .. 30 s) until the database answers.
async fn retry_open(services: Arc<Services>, config: Config, demo: bool) {
    let mut delay = Duration::from_secs(1);
    loop {
        tokio::time::sleep(delay).await;
        match runtime::open(&config, OpenMode::CreateIfMissing).await {
            Ok(rt) => {
                if let Err(e) = started(&services, rt, demo).await {
                    tracing::error!(error = %format!("{e:#}"), "database reachable but start-up failed");
                    services.set_problem(Some("start-up failed; see the log".to_owned()));
                }
                return;
            }
            Err(e) if is_transient(&e) => {
                delay = (delay * 2).min(Duration::from_secs(30));
                tracing::warn!(
                    error = %format!("{e:#}"),
                    retry_in_s = delay.as_secs(),
                    "database still unavailable"
                );
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot open the database; not retrying");
                services.set_problem(Some("cannot open the database; see the log".to_owned()));
                return;
            }
        }
    }
}

fn add_test_routes(routes: Routes) -> Result<Routes, RouteError> {
    async fn slow(axum::extract::Path(ms): axum::extract::Path<u64>) -> &'static str {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
        "done"
    }
    routes.add(Method::GET, "/test/slow/{ms}", Access::Public, slow)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use perimeter_crypto::KeyRing;
    use perimeter_domain::{ManualClock, Role};
    use perimeter_store::{
        AccessContext, BaaTerms, DatabaseUrl, KeyInput, Store, StoreOptions, VendorClass,
        VendorInput,
    };
    use time::macros::date;

    /// `[channels]` chat keys: origins and timeouts reach the chat settings; a value that is
    /// not an origin, or a timeout out of range, is refused with the key's name.
    #[test]
    fn chat_keys_are_applied_and_checked() {
        let mut config = crate::config::Config::default();
        config.channels.chat_embed_origins =
            Some("https://www.example-practice.org, http://localhost:8000".into());
        config.channels.chat_idle_timeout_minutes = Some(30);
        config.channels.chat_absolute_timeout_hours = Some(2);
        let s = super::channel_settings(&config).unwrap();
        assert_eq!(
            s.chat.embed_origins,
            vec!["https://www.example-practice.org", "http://localhost:8000"]
        );
        assert_eq!(s.chat.policy.idle_millis, 30 * 60_000);
        assert_eq!(s.chat.policy.absolute_millis, 2 * 3_600_000);
        config.channels.chat_embed_origins = Some("https://x.org; script-src *".into());
        let e = super::channel_settings(&config).unwrap_err().to_string();
        assert!(e.contains("channels.chat_embed_origins"), "{e}");
        config.channels.chat_embed_origins = None;
        config.channels.chat_idle_timeout_minutes = Some(0);
        let e = super::channel_settings(&config).unwrap_err().to_string();
        assert!(e.contains("channels.chat_idle_timeout_minutes"), "{e}");
    }

    /// The monitor, on a manual clock: nothing before the expiry, one record and one alert
    /// per practice the day after, nothing more on later passes.
    #[tokio::test]
    async fn baa_monitor_records_the_downgrade_once_on_the_day_after_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at_epoch_2026();
        let store = Store::connect(
            &StoreOptions::new(DatabaseUrl::Sqlite(dir.path().join("p.db"))),
            KeyRing::generate().unwrap(),
            Arc::new(clock.clone()),
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let sys = AccessContext::system("test");
        let practice = store.create_practice(&sys, "Clinic").await.unwrap();
        store
            .add_vendor(
                &sys,
                &VendorInput {
                    name: "acme".into(),
                    base_url: "https://api.example.com/v1".into(),
                    models: vec!["m".into()],
                    data_class: VendorClass::Phi,
                    baa: Some(BaaTerms {
                        signed: date!(2025 - 01 - 01),
                        expires: date!(2026 - 01 - 02),
                        document_ref: None,
                    }),
                    zero_retention: false,
                    no_training: false,
                    soc2_report_date: None,
                    soc2_expires: None,
                    sub_processors: Vec::new(),
                    inside_perimeter: false,
                    enabled: true,
                    key: KeyInput::Clear,
                },
            )
            .await
            .unwrap();
        assert!(super::baa_monitor_pass(&store).await.unwrap().is_empty());
        clock.advance(time::Duration::days(1));
        assert!(super::baa_monitor_pass(&store).await.unwrap().is_empty());
        clock.advance(time::Duration::days(1));
        assert_eq!(super::baa_monitor_pass(&store).await.unwrap(), vec!["acme"]);
        clock.advance(time::Duration::days(1));
        assert!(super::baa_monitor_pass(&store).await.unwrap().is_empty());
        let notes = store
            .notifications_for(practice, &[Role::Admin], true, 10)
            .await
            .unwrap();
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].kind, perimeter_store::BAA_EXPIRED_NOTIFICATION);
        store.close().await;
    }
}

//! `perimeter serve`: run the HTTP server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::http::Method;
use clap::Args;
use perimeter_crypto::KeyRing;
use perimeter_domain::{SharedClock, SystemClock};
use perimeter_server::{
    Access, App, AppState, BoxFuture, HttpLimits, Metrics, PoolStats, Readiness, ReadyCheck,
    ReadyReport, Routes, ServerSettings, TlsFiles, standard_routes,
};

use crate::config::{Config, ENV_MASTER_KEY, FlagOverride};

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

/// What `/readyz` reports while the server runs.
struct Services {
    keys: OnceLock<KeyRing>,
    /// Why the last attempt to open the database failed (fixed text, no secrets).
    database_problem: Mutex<Option<String>>,
}

impl Readiness for Services {
    fn check(&self) -> BoxFuture<'_, ReadyReport> {
        Box::pin(async move {
            let keys = if self.keys.get().is_some() {
                ReadyCheck::pass("keys")
            } else {
                ReadyCheck::fail("keys", "key ring not loaded")
            };
            let problem = self
                .database_problem
                .lock()
                .map(|p| p.clone())
                .unwrap_or_else(|_| Some("state unavailable".to_owned()));
            let database = match problem {
                None => ReadyCheck::pass("database"),
                Some(reason) => ReadyCheck::fail("database", reason),
            };
            ReadyReport {
                checks: vec![database, keys],
            }
        })
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }
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

    create_data_dir(&config.data_dir)?;
    let keys = load_or_create_keys(config)?;

    let services = Arc::new(Services {
        keys: OnceLock::new(),
        database_problem: Mutex::new(Some("connecting".to_owned())),
    });
    let _ = services.keys.set(keys);

    let clock: SharedClock = Arc::new(SystemClock);
    let limits = HttpLimits {
        max_body_bytes: usize::try_from(config.http.max_body_bytes).unwrap_or(usize::MAX),
        request_timeout: Duration::from_millis(config.http.request_timeout_ms),
    };
    let state = AppState::new(services.clone(), clock, Metrics::new(), limits);
    let mut routes = standard_routes()?;
    if std::env::var_os(ENV_TEST_SLOW_ROUTE).is_some() {
        tracing::warn!("{ENV_TEST_SLOW_ROUTE} is set: serving the test route /test/slow/{{ms}}");
        routes = add_test_routes(routes)?;
    }
    let app = App::new(state, routes);

    let addr = bound.local_addr();
    let scheme = bound.scheme();
    tracing::info!(%addr, scheme, "perimeter listening");
    println!("perimeter listening on {scheme}://{addr}");

    bound.run(app, perimeter_server::shutdown_signal()).await?;
    tracing::info!("perimeter stopped");
    Ok(())
}

fn add_test_routes(routes: Routes) -> anyhow::Result<Routes> {
    async fn slow(axum::extract::Path(ms): axum::extract::Path<u64>) -> &'static str {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
        "done"
    }
    Ok(routes.add(Method::GET, "/test/slow/{ms}", Access::Public, slow)?)
}

/// Creates the data directory (mode 0700 on Unix) if it does not exist.
fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("data_dir: cannot create {}", dir.display()))?;
    tracing::info!(data_dir = %dir.display(), "created the data directory");
    Ok(())
}

/// The key ring from PERIMETER_MASTER_KEY, else the key file, else a new key file.
fn load_or_create_keys(config: &Config) -> anyhow::Result<KeyRing> {
    use secrecy::ExposeSecret;
    if let Some(value) = &config.keys.master_key {
        return KeyRing::from_env_value(value.expose_secret())
            .with_context(|| format!("{ENV_MASTER_KEY}: not a usable key ring"));
    }
    let path = config.keys_file();
    if path.exists() {
        return KeyRing::load_file(&path).context("keys.file: cannot load the key ring");
    }
    let ring = KeyRing::generate().context("cannot generate a key ring")?;
    ring.save_file_new(&path)
        .context("keys.file: cannot create the key file")?;
    tracing::info!(path = %path.display(), "created a new key file (mode 0600); back it up");
    Ok(ring)
}

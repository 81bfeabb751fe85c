//! The `perimeter` binary, run as a process: configuration errors, serve, TLS, shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");

fn perimeter(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().current_dir(dir);
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A running `perimeter serve`.
struct Server {
    child: Child,
    base: String,
    /// Keeps the reader thread (and so the child's stdout pipe) alive.
    stdout: mpsc::Receiver<String>,
}

impl Server {
    fn start(cmd: &mut Command) -> Server {
        Self::start_collecting(cmd).0
    }

    /// Starts the server and returns the stdout lines printed before the address.
    fn start_collecting(cmd: &mut Command) -> (Server, Vec<String>) {
        Self::spawn_collecting(cmd, Stdio::inherit())
    }

    /// As [`Server::start_collecting`], with the server's stderr (its logs) sent to `stderr`.
    fn spawn_collecting(cmd: &mut Command, stderr: Stdio) -> (Server, Vec<String>) {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut before = Vec::new();
        let base = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(120))
                .expect("server printed its address");
            if let Some(addr) = line.strip_prefix("perimeter listening on ") {
                break addr.trim().to_owned();
            }
            before.push(line);
        };
        (
            Server {
                child,
                base,
                stdout: rx,
            },
            before,
        )
    }

    /// Waits for a stdout line starting with `prefix` (printed after the address).
    fn line_after(&self, prefix: &str) -> String {
        loop {
            let line = self
                .stdout
                .recv_timeout(Duration::from_secs(120))
                .expect("server printed the line");
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait(mut self) -> std::process::ExitStatus {
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("server did not exit within 30 s");
    }

    fn stop(self) -> std::process::ExitStatus {
        self.terminate();
        self.wait()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn serve_without_configuration_creates_the_data_dir_and_becomes_ready() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(perimeter(dir.path()).args(["serve", "--listen", "127.0.0.1:0"]));
    let data = dir.path().join("perimeter-data");
    assert!(data.join("perimeter.db").exists());
    #[cfg(unix)]
    {
        assert_eq!(mode(&data.join("keys.json")), 0o600);
        assert_eq!(mode(&data), 0o700);
    }
    let http = client();
    let health = http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-request-id"));
    let ready = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");

    // Metrics: Prometheus text, route templates only.
    let _ = http
        .get(server.url("/patients/Maria-Gonzalez?dob=1985-03-14"))
        .send()
        .await
        .unwrap();
    let metrics = http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("perimeter_http_requests_total{"), "{text}");
    assert!(text.contains("route=\"/healthz\""), "{text}");
    assert!(!text.contains("Maria") && !text.contains("1985"), "{text}");
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = line.rsplit_once(' ').unwrap().1;
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    assert!(server.stop().success());
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        perimeter(dir.path())
            .env("PERIMETER_TEST_SLOW_ROUTE", "1")
            .args(["--data-dir", "d", "serve", "--listen", "127.0.0.1:0"]),
    );
    let http = client();
    let url = server.url("/test/slow/1500");
    let in_flight = tokio::spawn(async move { http.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.terminate();
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "done");
    let status = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn unknown_config_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, "[http]\nmax_body_byts = 10\n").unwrap();
    let out = run(perimeter(dir.path())
        .arg("--config")
        .arg(&file)
        .args(["serve", "--print-config"]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("http.max_body_byts"), "{err}");
    assert!(err.contains("p.toml"), "{err}");
}

#[test]
fn bad_values_are_named_with_what_is_expected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, "listen = \"somewhere\"\n").unwrap();
    let out = run(perimeter(dir.path())
        .arg("--config")
        .arg(&file)
        .args(["serve", "--print-config"]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("`listen`") && err.contains("127.0.0.1:8080"),
        "{err}"
    );

    let out = run(perimeter(dir.path())
        .env("PERIMETER_HTTP_MAX_BODY_BYTES", "lots")
        .args(["serve", "--print-config"]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("http.max_body_bytes") && err.contains("PERIMETER_HTTP_MAX_BODY_BYTES"),
        "{err}"
    );

    std::fs::write(&file, "[database]\nmax_connections = 0\n").unwrap();
    let out = run(perimeter(dir.path())
        .arg("--config")
        .arg(&file)
        .args(["serve", "--print-config"]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("database.max_connections") && err.contains("from 1 to 1000"),
        "{err}"
    );
}

#[test]
fn unknown_environment_variables_are_refused_except_test_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(perimeter(dir.path())
        .env("PERIMETER_LISTN", "127.0.0.1:1")
        .args(["serve", "--print-config"]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("PERIMETER_LISTN"), "{}", stderr(&out));

    let out = run(perimeter(dir.path())
        .env("PERIMETER_TEST_ANYTHING", "x")
        .args(["serve", "--print-config"]));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn an_unreadable_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        run(perimeter(dir.path()).args(["--config", "missing.toml", "serve", "--print-config"]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing.toml"), "{}", stderr(&out));
}

#[test]
fn print_config_shows_layers_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9000\"\n[http]\nrequest_timeout_ms = 1234\n",
    )
    .unwrap();
    let out = run(perimeter(dir.path())
        .arg("--config")
        .arg(&file)
        .env("PERIMETER_LISTEN", "127.0.0.1:9001")
        .env(
            "PERIMETER_DATABASE_URL",
            "postgres://perimeter:hunter2@127.0.0.1:5432/prod?password=hunter3",
        )
        .env("PERIMETER_MASTER_KEY", "{\"secret-key-material\": 1}")
        .args(["serve", "--listen", "127.0.0.1:9002", "--print-config"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains("hunter2") && !text.contains("hunter3"),
        "{text}"
    );
    assert!(!text.contains("secret-key-material"), "{text}");
    assert!(text.contains("********"), "{text}");
    assert!(text.contains("listen = \"127.0.0.1:9002\""), "{text}");
    assert!(text.contains("request_timeout_ms = 1234"), "{text}");
    // The output is valid TOML.
    assert!(text.parse::<toml::Table>().is_ok(), "{text}");
}

#[test]
fn plain_http_off_loopback_is_refused_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(perimeter(dir.path()).args(["serve", "--listen", "0.0.0.0:0"]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("--insecure-http") && err.contains("0.0.0.0"),
        "{err}"
    );
    assert!(!dir.path().join("perimeter-data").exists());
}

#[tokio::test]
async fn insecure_http_flag_allows_plain_http_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(perimeter(dir.path()).args([
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--insecure-http",
    ]));
    let url = format!("http://127.0.0.1:{}/healthz", server.port());
    assert_eq!(client().get(url).send().await.unwrap().status(), 200);
    assert!(server.stop().success());
}

#[tokio::test]
async fn serves_tls_with_a_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:0\"\n[tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n",
    )
    .unwrap();
    let server = Server::start(
        perimeter(dir.path())
            .arg("--config")
            .arg(&file)
            .arg("serve"),
    );
    assert!(server.base.starts_with("https://"), "{}", server.base);

    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap();
    let resp = https
        .get(format!("https://localhost:{}/healthz", server.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(server.stop().success());
}

#[test]
fn missing_tls_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        "[tls]\ncert_file = \"nothere.pem\"\nkey_file = \"key.pem\"\n",
    )
    .unwrap();
    let out = run(perimeter(dir.path()).arg("--config").arg(&file).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
    ]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("tls.cert_file") && err.contains("nothere.pem"),
        "{err}"
    );
}

#[test]
fn a_port_in_use_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(perimeter(dir.path()).args(["serve", "--listen", &addr]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&addr) && err.contains("cannot listen"),
        "{err}"
    );
}

#[tokio::test]
async fn readyz_reports_an_unreachable_database_without_its_url() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on this port: the database is "down" from the start.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("postgres://perimeter:hunter2@127.0.0.1:{port}/perimeter");
    let server = Server::start(
        perimeter(dir.path())
            .env("PERIMETER_DATABASE_URL", &url)
            .env("PERIMETER_DATABASE_ACQUIRE_TIMEOUT_MS", "500")
            .args(["serve", "--listen", "127.0.0.1:0"]),
    );
    let http = client();
    assert_eq!(
        http.get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let resp = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let text = resp.text().await.unwrap();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        body["failed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "database"),
        "{text}"
    );
    assert!(
        !text.contains("hunter2") && !text.contains("postgres://"),
        "{text}"
    );
    assert!(server.stop().success());
}

#[test]
fn help_explains_options_with_examples() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(perimeter(dir.path()).args(["serve", "--help"]));
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--listen",
        "--insecure-http",
        "--demo",
        "--print-config",
        "--data-dir",
        "Examples:",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

/// A browser-like client keeping the session cookie and the CSRF token by hand.
struct Login {
    cookie: String,
    csrf: String,
}

fn session_cookie(resp: &reqwest::Response) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| !v.contains("Max-Age=0"))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

/// Logs in as a demo user for the first time, following the printed instructions: password,
/// then enrol the TOTP secret the answer carries, with a code computed from it.
async fn first_login(http: &reqwest::Client, base: &str, user: &str, password: &str) -> Login {
    let resp = http
        .post(format!("{base}/api/auth/login"))
        .json(&serde_json::json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = session_cookie(&resp);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "mfa_enrolment_required", "{body}");
    assert!(
        body["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with(&format!("otpauth://totp/Perimeter:{user}?"))
    );
    assert!(
        body["qr_svg_data_uri"]
            .as_str()
            .unwrap()
            .starts_with("data:image/svg+xml;base64,")
    );
    let secret = perimeter_auth::TotpSecret::from_base32(body["secret"].as_str().unwrap()).unwrap();
    let code = perimeter_auth::totp_code_at(&secret, time::OffsetDateTime::now_utc()).unwrap();
    let resp = http
        .post(format!("{base}/api/auth/mfa/enrol"))
        .header("cookie", &cookie)
        .header("x-csrf-token", body["csrf_token"].as_str().unwrap())
        .json(&serde_json::json!({"code": code.as_str()}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = session_cookie(&resp);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "authenticated");
    assert_eq!(body["recovery_codes"].as_array().unwrap().len(), 10);
    Login {
        cookie,
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test]
async fn serve_demo_prints_instructions_that_log_a_person_in_for_real() {
    let dir = tempfile::tempdir().unwrap();
    let (server, printed) = Server::start_collecting(perimeter(dir.path()).args([
        "serve",
        "--demo",
        "--listen",
        "127.0.0.1:0",
    ]));
    let text = printed.join("\n");
    let password = printed
        .iter()
        .find_map(|l| l.strip_prefix("demo password (shown once): "))
        .expect("the demo password is printed")
        .trim()
        .to_owned();
    // The instructions say how the first log-in goes: TOTP enrolment by otpauth URI / QR code.
    for needle in [
        "/api/auth/login",
        "mfa_enrolment_required",
        "otpauth_uri",
        "QR code",
        "/api/auth/mfa/enrol",
        "/api/auth/mfa/verify",
        "x-csrf-token",
        "clinician",
        "API tokens only",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let base = server.base.clone();
    assert!(text.contains(&format!("{base}/api/auth/login")), "{text}");
    assert!(text.contains(&format!("{base}/console")), "{text}");
    let http = client();
    let clinician = first_login(&http, &base, "clinician", &password).await;
    let me: serde_json::Value = http
        .get(format!("{base}/api/auth/me"))
        .header("cookie", &clinician.cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "clinician");
    assert_eq!(me["roles"][0], "clinician");
    // A synthetic patient, found by name as the clinician may see it.
    let found: serde_json::Value = http
        .get(format!("{base}/api/patients?name=Avery%20Testwell"))
        .header("cookie", &clinician.cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        found["patients"][0]["demographics"]["family_name"], "Testwell",
        "{found}"
    );
    // The scheduler, logged in the same way, sees no MRN.
    let scheduler = first_login(&http, &base, "scheduler", &password).await;
    let found: serde_json::Value = http
        .get(format!("{base}/api/patients?name=Avery%20Testwell"))
        .header("cookie", &scheduler.cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(found["patients"][0].get("identifiers").is_none(), "{found}");
    // The service client has no password; log-out works.
    let resp = http
        .post(format!("{base}/api/auth/login"))
        .json(&serde_json::json!({"username": "service", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .post(format!("{base}/api/auth/logout"))
        .header("cookie", &clinician.cookie)
        .header("x-csrf-token", &clinician.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(server.stop().success());
    // A second start finds the demo seeded and still explains how to log in.
    let (server, printed) = Server::start_collecting(perimeter(dir.path()).args([
        "serve",
        "--demo",
        "--listen",
        "127.0.0.1:0",
    ]));
    let text = printed.join("\n");
    assert!(
        text.contains("already seeded") && text.contains("/api/auth/login"),
        "{text}"
    );
    assert!(!text.contains(&password));
    assert!(server.stop().success());
}

/// Forwards TCP connections on `listener` to `target` (the database "comes up").
async fn forward(listener: tokio::net::TcpListener, target: std::net::SocketAddr) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_answers_503_until_the_database_comes_up_then_works_without_restart() {
    use sqlx::Connection;
    if std::env::var("PERIMETER_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
        eprintln!("PERIMETER_TEST_SKIP_POSTGRES=1: skipping");
        return;
    }
    let admin = std::env::var("PERIMETER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let name = format!("perimeter_cli_{}_{}", std::process::id(), rand_suffix());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    // Where the real server listens, and a free port where nothing answers yet.
    let target: std::net::SocketAddr = {
        let after = admin.split('@').nth(1).unwrap();
        let hostport = after.split('/').next().unwrap();
        let hostport = if hostport.contains(':') {
            hostport.to_owned()
        } else {
            format!("{hostport}:5432")
        };
        std::net::ToSocketAddrs::to_socket_addrs(&hostport)
            .unwrap()
            .next()
            .unwrap()
    };
    let user = admin
        .split("://")
        .nth(1)
        .unwrap()
        .split('@')
        .next()
        .unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        perimeter(dir.path())
            .env(
                "PERIMETER_DATABASE_URL",
                format!("postgres://{user}@127.0.0.1:{port}/{name}"),
            )
            .env("PERIMETER_DATABASE_ACQUIRE_TIMEOUT_MS", "500")
            .args(["serve", "--demo", "--listen", "127.0.0.1:0"]),
    );
    let http = client();
    let base = server.base.clone();
    // The database is down: log-in and every authenticated route answer 503, and say why.
    let resp = http
        .post(format!("{base}/api/auth/login"))
        .json(&serde_json::json!({"username": "clinician", "password": "whatever it is"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_ready");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("database")
    );
    for path in ["/api/auth/me", "/api/admin/users", "/api/notifications"] {
        let resp = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 503, "{path}");
    }
    // The database comes up: serve's background retry opens it, seeds the demo, and log-in
    // works in the same process.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let proxy = tokio::spawn(forward(listener, target));
    let password = server.line_after("demo password (shown once): ");
    let mut ready = false;
    for _ in 0..120 {
        let r = http.get(format!("{base}/readyz")).send().await.unwrap();
        if r.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(ready, "the server became ready once the database answered");
    let nurse = first_login(&http, &base, "nurse", &password).await;
    let resp = http
        .get(format!("{base}/api/auth/me"))
        .header("cookie", &nurse.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(server.stop().success());
    proxy.abort();
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await;
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{nanos:x}")
}

/// Invariant 5: no PHI in logs, metrics or error messages. The demo practice's patients are
/// known bytes; the server runs at the most verbose log level in JSON, is asked for them in
/// every way a client can (searches carrying names and phone numbers in query strings, bodies
/// carrying them in bad log-ins and malformed JSON, unknown paths naming a patient), and then
/// its logs, its metrics and every error body are scanned for any of them.
#[tokio::test]
async fn no_demo_phi_reaches_logs_metrics_or_error_messages() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let (server, printed) = Server::spawn_collecting(
        perimeter(dir.path()).args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--log-level",
            "trace",
        ]),
        Stdio::from(log),
    );
    let password = printed
        .iter()
        .find_map(|l| l.strip_prefix("demo password (shown once): "))
        .expect("the demo password is printed")
        .trim()
        .to_owned();
    let base = server.base.clone();
    let http = client();
    let patients = perimeter_store::demo_patients(36);
    let first = &patients[0].data;
    let full_name = format!("{} {}", first.given_name, first.family_name);
    let phone = first.phone.clone().unwrap();
    let email = first.email.clone().unwrap();
    let mut bodies = Vec::new();

    // Bad log-ins whose fields carry PHI.
    for (user, pass) in [
        (full_name.as_str(), phone.as_str()),
        (email.as_str(), "x"),
        ("clinician", email.as_str()),
    ] {
        let r = http
            .post(format!("{base}/api/auth/login"))
            .json(&serde_json::json!({"username": user, "password": pass}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error());
        bodies.push(r.text().await.unwrap());
    }
    // Malformed JSON carrying PHI.
    let r = http
        .post(format!("{base}/api/auth/login"))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"username\": \"{full_name}\", \"password\": {phone}"
        ))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    bodies.push(r.text().await.unwrap());
    // Unknown paths and unauthenticated searches naming a patient.
    for path in [
        format!("/api/nope/{}", first.family_name),
        format!("/api/patients?name={}", full_name.replace(' ', "%20")),
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert!(r.status().is_client_error(), "{path}");
        bodies.push(r.text().await.unwrap());
    }
    // Signed-in searches by name and phone (the answers carry PHI by design; the logs must not),
    // and a bad search parameter whose error must not echo it.
    let clinician = first_login(&http, &base, "clinician", &password).await;
    for query in [
        format!("name={}", full_name.replace(' ', "%20")),
        format!("phone={}", phone.replace(' ', "%20")),
        format!("email={email}"),
        format!("name={}&unknown={}", first.family_name, first.family_name),
    ] {
        let r = http
            .get(format!("{base}/api/patients?{query}"))
            .header("cookie", &clinician.cookie)
            .send()
            .await
            .unwrap();
        if !r.status().is_success() {
            bodies.push(r.text().await.unwrap());
        }
    }
    // Demo billing data: billing finds the first patient by member id and reads the account;
    // a bad member id gets an error that does not echo it; none of it reaches the logs.
    let billing = first_login(&http, &base, "billing", &password).await;
    let member = patients[0].coverage.member_id.as_str().to_owned();
    let r = http
        .get(format!("{base}/api/patients?member_id={member}"))
        .header("cookie", &billing.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let found: serde_json::Value = r.json().await.unwrap();
    let pid = found["patients"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(found["patients"][0]["coverages"][0]["member_id"], member);
    let r = http
        .get(format!("{base}/api/patients/{pid}/account"))
        .header("cookie", &billing.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let account: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        account["account"]["account_number"],
        patients[0].account.account_number.as_str()
    );
    let r = http
        .get(format!("{base}/api/patients?member_id={member}%2F!"))
        .header("cookie", &billing.cookie)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    bodies.push(r.text().await.unwrap());
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("# TYPE"), "{metrics}");
    assert!(server.stop().success());
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logs.lines().count() > 10 && logs.contains("request completed"),
        "the server logged its requests:\n{logs}"
    );

    let mut needles = Vec::new();
    for p in &patients {
        let d = &p.data;
        needles.push(d.family_name.clone());
        needles.extend(d.phone.clone());
        needles.extend(
            d.phone
                .as_deref()
                .map(|p| p.replace(['(', ')', ' ', '-'], "")),
        );
        needles.extend(d.email.clone());
        needles.extend(d.mrn.clone());
        needles.extend(d.address.clone());
        needles.push(p.coverage.member_id.as_str().to_owned());
        needles.push(p.coverage.payer.as_str().to_owned());
        needles.push(p.account.account_number.as_str().to_owned());
        for (_, _, messages) in &p.conversations {
            needles.extend(messages.iter().map(|(_, body)| body.clone()));
        }
    }
    for (what, text) in std::iter::once(("logs", &logs))
        .chain(std::iter::once(("metrics", &metrics)))
        .chain(bodies.iter().map(|b| ("an error body", b)))
    {
        for needle in &needles {
            assert!(
                !text.contains(needle.as_str()),
                "{what} carry demo PHI {needle:?}"
            );
        }
    }
}

/// The shipped example configuration loads as it is, and documents every key the program
/// knows (each key `--print-config` prints appears in the example).
#[test]
fn the_example_configuration_loads_and_documents_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("perimeter.example.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    let out = run(perimeter(dir.path())
        .arg("--config")
        .arg(&example)
        .args(["serve", "--print-config"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: toml::Table = String::from_utf8(out.stdout).unwrap().parse().unwrap();
    fn keys(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in table {
            match v {
                toml::Value::Table(t) => keys(&format!("{prefix}{k}."), t, out),
                _ => out.push(format!("{prefix}{k}")),
            }
        }
    }
    let mut all = Vec::new();
    keys("", &printed, &mut all);
    assert!(all.len() > 10, "{all:?}");
    for key in all {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            text.contains(&format!("{leaf} =")),
            "perimeter.example.toml does not document {key}"
        );
    }
}

/// A SQLite database held locked by another process: the command waits for the configured
/// busy timeout, then says what is wrong and what to do, and exits non-zero without a panic;
/// once the lock is gone the same command completes (rotation is resumable).
#[tokio::test]
async fn a_locked_database_is_reported_and_the_command_can_be_rerun() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let out = run(perimeter(dir.path()).args(["init"]));
    assert!(out.status.success(), "{}", stderr(&out));
    // No configuration: the data directory is ./perimeter-data.
    let db = dir.path().join("perimeter-data").join("perimeter.db");
    assert!(db.exists());
    let mut holder = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .unwrap();
    let out = run(perimeter(dir.path())
        .env("PERIMETER_DATABASE_BUSY_TIMEOUT_MS", "200")
        .args(["keys", "rotate"]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("locked"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
    // Once the lock is gone the same command works, and the database is intact.
    let out = run(perimeter(dir.path()).args(["keys", "rotate"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(perimeter(dir.path()).args(["keys", "status"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let status = String::from_utf8(out.stdout).unwrap();
    assert!(!status.contains("not yet wrapped"), "{status}");
}

/// Waits until the log file holds `needle` `times` times (the server logs as it goes).
fn wait_for_log(path: &Path, needle: &str, times: usize) -> String {
    for _ in 0..300 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.matches(needle).count() >= times {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the server did not log {needle:?} {times} times within 30 s:\n{}",
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

/// Key rotation is online: `keys rotate` and `keys retire` run beside a serving process, which
/// reloads the key file (on SIGHUP here; every 10 s anyway), and a restart afterwards finds
/// every data key readable with the rotated file.
#[test]
fn a_running_server_follows_key_rotation_and_retirement() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let (server, _) = Server::spawn_collecting(
        perimeter(dir.path()).args([
            "--data-dir",
            "d",
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ]),
        Stdio::from(log),
    );
    let hup = |server: &Server| {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(server.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    };

    let rotate = run(perimeter(dir.path()).args(["--data-dir", "d", "keys", "rotate"]));
    assert!(rotate.status.success(), "{}", stderr(&rotate));
    let said = String::from_utf8_lossy(&rotate.stdout).into_owned();
    assert!(
        said.contains("rotation to KEK version 2 complete"),
        "{said}"
    );
    hup(&server);
    let text = wait_for_log(&log_path, "key ring reloaded from its key file", 1);
    assert!(text.contains("\"primary_kek\":2"), "{text}");

    let retire =
        run(perimeter(dir.path()).args(["--data-dir", "d", "keys", "retire", "--version", "1"]));
    assert!(retire.status.success(), "{}", stderr(&retire));
    hup(&server);
    wait_for_log(&log_path, "key ring reloaded from its key file", 2);
    let status = run(perimeter(dir.path()).args(["--data-dir", "d", "keys", "status"]));
    let table = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(!table.contains("not yet wrapped"), "{table}");
    assert!(server.stop().success());

    // A restart with the rotated file reads everything (a key still on version 1 would stop it).
    let again = Server::start(perimeter(dir.path()).args([
        "--data-dir",
        "d",
        "serve",
        "--listen",
        "127.0.0.1:0",
    ]));
    assert!(again.stop().success());
}

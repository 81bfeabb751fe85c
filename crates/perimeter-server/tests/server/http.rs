//! The server over real HTTP on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::Method;
use perimeter_domain::{ManualClock, SharedClock};
use perimeter_server::{
    Access, App, AppState, BoxFuture, HttpLimits, Metrics, PoolStats, Readiness, ReadyCheck,
    ReadyReport, Routes, ServeError, ServerSettings, TlsFiles, bind, standard_routes,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Readiness that tests can flip.
struct Switch {
    database_up: AtomicBool,
}

impl Readiness for Switch {
    fn check(&self) -> BoxFuture<'_, ReadyReport> {
        Box::pin(async move {
            let db = if self.database_up.load(Ordering::SeqCst) {
                ReadyCheck::pass("database")
            } else {
                ReadyCheck::fail("database", "cannot connect")
            };
            ReadyReport {
                checks: vec![db, ReadyCheck::pass("keys"), ReadyCheck::pass("migrations")],
            }
        })
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        Some(PoolStats {
            size: 3,
            idle: 2,
            max: 10,
        })
    }
}

struct TestApp {
    base: String,
    switch: Arc<Switch>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
    client: reqwest::Client,
}

impl TestApp {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn stop(mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops in time")
            .expect("server task")
    }
}

async fn slow(Path(ms): Path<u64>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "done"
}

async fn thing(Path(_id): Path<String>) -> &'static str {
    "thing"
}

#[derive(serde::Deserialize)]
struct Note {
    #[allow(dead_code)]
    count: u32,
}

async fn note(Json(_n): Json<Note>) -> &'static str {
    "noted"
}

async fn upload(body: Bytes) -> String {
    body.len().to_string()
}

fn test_routes() -> Routes {
    standard_routes()
        .unwrap()
        .add(Method::GET, "/test/slow/{ms}", Access::Public, slow)
        .unwrap()
        .add(Method::GET, "/things/{id}", Access::Public, thing)
        .unwrap()
        .add(Method::POST, "/notes", Access::Public, note)
        .unwrap()
        .add(Method::POST, "/upload", Access::Public, upload)
        .unwrap()
}

fn limits() -> HttpLimits {
    HttpLimits {
        max_body_bytes: 4096,
        request_timeout: Duration::from_secs(2),
    }
}

async fn spawn_app_with(limits: HttpLimits, tls: Option<TlsFiles>) -> TestApp {
    let switch = Arc::new(Switch {
        database_up: AtomicBool::new(true),
    });
    let clock: SharedClock = Arc::new(ManualClock::at_epoch_2026());
    let state = AppState::new(switch.clone(), clock, Metrics::new(), limits);
    let app = App::new(state, test_routes());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let settings = ServerSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls,
        insecure_http: false,
        shutdown_grace: Duration::from_secs(5),
    };
    let bound = bind(&settings).unwrap();
    assert_eq!(bound.scheme(), scheme);
    let base = format!("{scheme}://{}", bound.local_addr());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(bound.run(app, async move {
        let _ = rx.await;
    }));
    TestApp {
        base,
        switch,
        shutdown: Some(tx),
        task,
        client: http_client(),
    }
}

/// reqwest built without a bundled provider uses the process default: ring, as the server.
fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn http_client() -> reqwest::Client {
    install_provider();
    reqwest::Client::new()
}

async fn spawn_app() -> TestApp {
    spawn_app_with(limits(), None).await
}

async fn error_code(resp: reqwest::Response) -> (u16, String, serde_json::Value) {
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.expect("JSON error body");
    let code = body["error"]["code"].as_str().unwrap().to_owned();
    assert!(body["error"]["message"].is_string());
    (status, code, body)
}

#[tokio::test]
async fn healthz_answers_with_a_request_id() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(id.parse::<perimeter_domain::RequestId>().is_ok(), "{id}");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn readyz_names_the_failed_check() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ready");

    app.switch.database_up.store(false, Ordering::SeqCst);
    let resp = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["failed"], serde_json::json!(["database"]));

    app.switch.database_up.store(true, Ordering::SeqCst);
    let resp = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/nope")).send().await.unwrap();
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));

    let resp = app.client.delete(app.url("/healthz")).send().await.unwrap();
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (405, "method_not_allowed"));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn extractor_rejections_do_not_echo_the_body() {
    let app = spawn_app().await;
    let resp = app
        .client
        .post(app.url("/notes"))
        .header("content-type", "application/json")
        .body(r#"{"count": "Maria Gonzalez 555-0142"}"#)
        .send()
        .await
        .unwrap();
    let (status, code, body) = error_code(resp).await;
    assert_eq!(status, 422);
    assert_eq!(code, "invalid_request");
    let text = body.to_string();
    assert!(!text.contains("Maria") && !text.contains("555"), "{text}");

    let resp = app
        .client
        .post(app.url("/notes"))
        .body("count=1")
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (415, "unsupported_media_type"));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let app = spawn_app().await;
    let ok = post_upload(&app, vec![b'a'; 1000]).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1000");

    let resp = post_upload(&app, vec![b'a'; 5000]).await;
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));

    // Without a Content-Length (chunked), the limit applies while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b'b'; 1000])).collect();
    let stream = futures_stream(chunks);
    let resp = app
        .client
        .post(app.url("/upload"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    app.stop().await.unwrap();
}

fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + Sync + 'static {
    tokio_stream::iter(chunks)
}

/// `text` (from [`raw_exchange`]) starts with the answer `status` and then holds the answer
/// to the second request on the same connection: the connection survived the first.
fn assert_answered_then_served(text: &str, status: u16) {
    assert!(text.starts_with(&format!("HTTP/1.1 {status}")), "{text}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 2, "{text}");
    assert!(text.contains("HTTP/1.1 200"), "{text}");
}

/// POSTs `body` to `/upload` (which answers with the number of bytes it read).
async fn post_upload(app: &TestApp, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url("/upload"))
        .body(body)
        .send()
        .await
        .unwrap()
}

/// One HTTP/1.1 exchange written by hand: the request head, `body`, then a second request on
/// the same connection; returns everything the server sent until it closed.
async fn raw_exchange(app: &TestApp, head: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the server answers and closes")
        .expect("no reset: the server read the body before closing");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn an_oversized_body_gets_its_413_on_an_intact_connection() {
    let app = spawn_app().await;
    // Declared too large (limit 4096) and sent whole before reading, as clients do: the
    // server reads it away, answers 413 and the same connection serves the next request
    // (answering with the body unread would reset the connection under the client).
    let body = vec![b'a'; 200_000];
    let text = raw_exchange(
        &app,
        &format!(
            "POST /upload HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\n\r\n",
            body.len()
        ),
        &body,
    )
    .await;
    assert_answered_then_served(&text, 413);
    assert!(text.contains("payload_too_large"), "{text}");
    app.stop().await.unwrap();
}

/// A chunked body of `n` bytes, sent in chunks of 1000.
fn chunked(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut left = n;
    while left > 0 {
        let k = left.min(1000);
        out.extend_from_slice(format!("{k:x}\r\n").as_bytes());
        out.extend(std::iter::repeat_n(b'c', k));
        out.extend_from_slice(b"\r\n");
        left -= k;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_gets_its_413_on_an_intact_connection() {
    let app = spawn_app().await;
    // No Content-Length: the extractor stops reading at the limit (4096) and answers 413; the
    // rest of the body is read away before the answer goes out.
    let text = raw_exchange(
        &app,
        "POST /upload HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n",
        &chunked(300_000),
    )
    .await;
    assert_answered_then_served(&text, 413);
    assert!(text.contains("payload_too_large"), "{text}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_body_the_handler_never_reads_does_not_reset_the_connection() {
    let app = spawn_app_with(
        HttpLimits {
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(2),
        },
        None,
    )
    .await;
    // Within the limit but answered from the head alone (405: the route takes GET only), with
    // a declared length and chunked: the server reads the body away, then answers.
    let body = vec![b'a'; 600_000];
    let declared = raw_exchange(
        &app,
        &format!(
            "POST /things/1 HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\n\r\n",
            body.len()
        ),
        &body,
    )
    .await;
    let chunked = raw_exchange(
        &app,
        "POST /things/1 HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n",
        &chunked(600_000),
    )
    .await;
    for text in [declared, chunked] {
        assert_answered_then_served(&text, 405);
    }
    // A body that is read whole is not read again: the upload still counts every byte.
    let resp = post_upload(&app, vec![b'u'; 700_000]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "700000");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn slow_requests_time_out_with_a_json_error() {
    let app = spawn_app_with(
        HttpLimits {
            max_body_bytes: 4096,
            request_timeout: Duration::from_millis(200),
        },
        None,
    )
    .await;
    let resp = app
        .client
        .get(app.url("/test/slow/2000"))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (503, "timeout"));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let mut app = spawn_app().await;
    let client = app.client.clone();
    let url = app.url("/test/slow/700");
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = app.shutdown.take().unwrap().send(());
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "done");
    let base = app.base.clone();
    app.stop().await.unwrap();
    let after = http_client()
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(after.is_err(), "server still accepting after shutdown");
}

/// Parses the text exposition format strictly enough to catch malformed output; returns
/// (metric name, labels, value) for each sample.
type Sample = (String, Vec<(String, String)>, f64);

fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value.parse().expect("numeric value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').expect("closing brace");
                let labels = inner
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').expect("label k=v");
                        let v = v
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .expect("quoted");
                        (k.to_owned(), v.to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), Vec::new()),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{name}"
        );
        samples.push((name, labels, value));
    }
    samples
}

#[tokio::test]
async fn metrics_use_route_templates_and_carry_no_phi() {
    let app = spawn_app().await;
    let secret_id = "Maria-Gonzalez-1985-03-14";
    let resp = app
        .client
        .get(app.url(&format!("/things/{secret_id}?ssn=123-45-6789")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = app
        .client
        .get(app.url("/patients/Maria-Gonzalez"))
        .send()
        .await
        .unwrap();
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("openmetrics-text")
    );
    let text = resp.text().await.unwrap();
    assert!(text.trim_end().ends_with("# EOF"));
    assert!(
        !text.contains("Maria") && !text.contains("123-45"),
        "{text}"
    );
    let samples = parse_metrics(&text);
    let requests: Vec<_> = samples
        .iter()
        .filter(|(n, _, _)| n == "perimeter_http_requests_total")
        .collect();
    let has = |route: &str, status: &str| {
        requests.iter().any(|(_, labels, v)| {
            *v >= 1.0
                && labels.contains(&("route".to_owned(), route.to_owned()))
                && labels.contains(&("status".to_owned(), status.to_owned()))
        })
    };
    assert!(has("/things/{id}", "200"), "{text}");
    assert!(has("unmatched", "404"), "{text}");
    for (_, labels, _) in &samples {
        for (k, v) in labels {
            let allowed = match k.as_str() {
                "method" => [
                    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "OTHER",
                ]
                .contains(&v.as_str()),
                "route" => v == "unmatched" || app_routes().contains(&v.as_str()),
                "status" => v.parse::<u16>().is_ok(),
                "state" => v == "idle" || v == "in_use",
                "le" => v == "+Inf" || v.parse::<f64>().is_ok(),
                // The AI gateway's counters: fixed names only.
                "outcome" => [
                    "answered",
                    "blocked",
                    "refused",
                    "failed",
                    "audit_not_written",
                ]
                .contains(&v.as_str()),
                "kind" => [
                    "identifier_plain",
                    "identifier_percent_encoded",
                    "identifier_base64",
                    "identifier_json_escaped",
                    "identifier_late",
                    "clinical_advice",
                    "unknown_placeholder",
                ]
                .contains(&v.as_str()),
                "event" => {
                    ["upstream_retry", "identifier_replaced", "deid_api_call"].contains(&v.as_str())
                }
                _ => false,
            };
            assert!(allowed, "unexpected label {k}={v}");
        }
    }
    let gauge = |name: &str, state: Option<&str>| {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name && state.is_none_or(|s| l.contains(&("state".to_owned(), s.to_owned())))
            })
            .map(|(_, _, v)| *v)
    };
    assert_eq!(
        gauge("perimeter_db_pool_connections", Some("idle")),
        Some(2.0)
    );
    assert_eq!(
        gauge("perimeter_db_pool_connections", Some("in_use")),
        Some(1.0)
    );
    assert_eq!(gauge("perimeter_db_pool_max_connections", None), Some(10.0));
    assert!(
        samples
            .iter()
            .any(|(n, _, _)| n == "perimeter_http_request_duration_seconds_bucket")
    );
    app.stop().await.unwrap();
}

fn app_routes() -> Vec<&'static str> {
    test_routes().table().iter().map(|r| r.path).collect()
}

#[tokio::test]
async fn every_route_is_declared_with_its_access() {
    let state = AppState::new(
        Arc::new(Switch {
            database_up: AtomicBool::new(true),
        }),
        Arc::new(ManualClock::at_epoch_2026()),
        Metrics::new(),
        limits(),
    );
    let app = App::new(state, test_routes());
    let table: Vec<(String, &str, Access)> = app
        .routes()
        .iter()
        .map(|r| (r.method.to_string(), r.path, r.access))
        .collect();
    for expected in ["/healthz", "/readyz", "/metrics"] {
        assert!(
            table
                .iter()
                .any(|(m, p, a)| m == "GET" && *p == expected && *a == Access::Public)
        );
    }
    assert_eq!(table.len(), 7);
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

fn tls_client(ca_pem: &[u8]) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    install_provider();
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

#[tokio::test]
async fn serves_https_with_a_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (files, ca) = write_cert(dir.path());
    let mut app = spawn_app_with(limits(), Some(files)).await;
    app.client = tls_client(&ca);
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    let resp = app
        .client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    app.stop().await.unwrap();
}

#[test]
fn bad_tls_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = write_cert(dir.path());
    let settings = |tls: TlsFiles| ServerSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: Some(tls),
        insecure_http: false,
        shutdown_grace: Duration::from_secs(1),
    };
    let missing = TlsFiles {
        cert_file: dir.path().join("absent.pem"),
        key_file: files.key_file.clone(),
    };
    let err = bind(&settings(missing)).unwrap_err().to_string();
    assert!(
        err.contains("tls.cert_file") && err.contains("absent.pem"),
        "{err}"
    );

    let not_a_key = TlsFiles {
        cert_file: files.cert_file.clone(),
        key_file: files.cert_file.clone(),
    };
    let err = bind(&settings(not_a_key)).unwrap_err().to_string();
    assert!(
        err.contains("tls.key_file") && err.contains("cert.pem"),
        "{err}"
    );

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello").unwrap();
    let not_a_cert = TlsFiles {
        cert_file: garbage,
        key_file: files.key_file.clone(),
    };
    let err = bind(&settings(not_a_cert)).unwrap_err().to_string();
    assert!(
        err.contains("tls.cert_file") && err.contains("garbage.pem"),
        "{err}"
    );
}

#[test]
fn plain_http_off_loopback_needs_an_explicit_opt_in() {
    let mut settings = ServerSettings {
        listen: SocketAddr::from(([0, 0, 0, 0], 0)),
        tls: None,
        insecure_http: false,
        shutdown_grace: Duration::from_secs(1),
    };
    let err = bind(&settings).unwrap_err();
    assert!(matches!(err, ServeError::InsecureListen { .. }));
    assert!(err.to_string().contains("--insecure-http"));
    settings.insecure_http = true;
    assert!(bind(&settings).is_ok());
}

#[test]
fn a_port_in_use_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let settings = ServerSettings {
        listen: taken.local_addr().unwrap(),
        tls: None,
        insecure_http: false,
        shutdown_grace: Duration::from_secs(1),
    };
    let err = bind(&settings).unwrap_err();
    assert!(matches!(err, ServeError::Bind { .. }));
    assert!(
        err.to_string()
            .contains(&taken.local_addr().unwrap().to_string())
    );
}

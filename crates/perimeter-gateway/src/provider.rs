//! Providers: what actually runs a prepared request.
//!
//! [`HttpProvider`] speaks the OpenAI chat-completions protocol to a vendor's base URL: a
//! cloud vendor, or a server the practice runs itself (vLLM, llama.cpp's server, Ollama),
//! which the registry marks `inside_perimeter`. The in-process local model is another
//! implementation, `LocalProvider` (`local.rs`, cargo feature `local-model`). The trait is
//! sealed: only this crate implements it, so only the gateway sends text out of the process.
//!
//! What goes upstream is exactly: `POST {base_url}/chat/completions` with `content-type`,
//! `accept`, `content-length` (the body is buffered), `host` and the vendor's own
//! `authorization`. Nothing of the caller's headers or telemetry; no redirects are followed
//! (a redirect could take the body elsewhere); no proxy from the environment.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use zeroize::Zeroizing;

use crate::error::{GatewayError, UpstreamError};

/// A boxed future, for the object-safe [`Provider`] trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// Something that runs a prepared chat-completions request. Sealed.
pub trait Provider: sealed::Sealed + Send + Sync + fmt::Debug {
    /// The vendor's registry name (a permit for another vendor is refused).
    fn vendor(&self) -> &str;
    /// Whether it serves `model`.
    fn serves(&self, model: &str) -> bool;
    /// Whether it runs inside the practice's perimeter.
    fn inside_perimeter(&self) -> bool;
    /// Runs the request. Retries, if any, happen inside, before anything is returned.
    fn send<'a>(
        &'a self,
        request: UpstreamRequest,
    ) -> BoxFuture<'a, Result<UpstreamReply, UpstreamError>>;
}

/// A prepared body on its way to a provider. Only the gateway makes one, from a `Ready`.
#[derive(Debug)]
pub struct UpstreamRequest {
    pub(crate) body: Bytes,
    pub(crate) stream: bool,
}

impl UpstreamRequest {
    /// The JSON body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
    /// Whether a stream is asked for.
    pub fn stream(&self) -> bool {
        self.stream
    }
}

/// Pieces of a streamed answer.
pub trait ByteStream: Send + fmt::Debug {
    /// The next piece; `None` at the end.
    fn next_piece(&mut self) -> BoxFuture<'_, Result<Option<Bytes>, UpstreamError>>;
}

/// A provider's answer (always a success status: errors are [`UpstreamError`]s).
pub enum UpstreamReply {
    /// A whole JSON body.
    Complete {
        /// The body.
        body: Bytes,
        /// Attempts it took.
        attempts: u32,
    },
    /// An event stream.
    Stream {
        /// The pieces.
        body: Box<dyn ByteStream>,
        /// Attempts it took.
        attempts: u32,
    },
}

impl fmt::Debug for UpstreamReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamReply::Complete { body, attempts } => f
                .debug_struct("Complete")
                .field("bytes", &body.len())
                .field("attempts", attempts)
                .finish(),
            UpstreamReply::Stream { attempts, .. } => f
                .debug_struct("Stream")
                .field("attempts", attempts)
                .finish_non_exhaustive(),
        }
    }
}

/// How to reach one vendor (from the registry).
#[derive(Clone)]
pub struct VendorConnection {
    /// The registry name.
    pub name: String,
    /// The OpenAI-compatible base URL, e.g. `https://api.example.com/v1`.
    pub base_url: String,
    /// The models it serves.
    pub models: Vec<String>,
    /// The vendor's API key (sent as `Authorization: Bearer`); wiped on drop, never printed.
    pub api_key: Option<Zeroizing<String>>,
    /// A server inside the practice's perimeter (may use plain HTTP).
    pub inside_perimeter: bool,
    /// PEM root certificates to trust instead of the system's (a practice's own server).
    pub ca_pem: Option<String>,
}

impl fmt::Debug for VendorConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VendorConnection")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("models", &self.models)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("inside_perimeter", &self.inside_perimeter)
            .finish_non_exhaustive()
    }
}

/// Timeouts, retries and limits for HTTP providers.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// To open the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// From sending to the response headers.
    pub response_timeout: Duration,
    /// Between two pieces of the body (a stalled stream), and for a whole non-streamed body.
    pub idle_timeout: Duration,
    /// Attempts in all (1 = no retry). Retried: connect errors, timeouts before the answer,
    /// 429 and 5xx, and a non-streamed body that broke off; never once anything was relayed.
    pub max_attempts: u32,
    /// The first backoff; doubled each retry.
    pub backoff_initial: Duration,
    /// The longest backoff (also caps a `Retry-After`).
    pub backoff_max: Duration,
    /// The largest non-streamed answer accepted.
    pub max_response_bytes: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_attempts: 3,
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(4),
            max_response_bytes: 8 * 1024 * 1024,
        }
    }
}

/// An OpenAI-compatible vendor over HTTP(S).
pub struct HttpProvider {
    name: String,
    models: Vec<String>,
    inside_perimeter: bool,
    url: reqwest::Url,
    auth: Option<reqwest::header::HeaderValue>,
    client: reqwest::Client,
    settings: HttpSettings,
}

impl fmt::Debug for HttpProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProvider")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("inside_perimeter", &self.inside_perimeter)
            .finish_non_exhaustive()
    }
}

fn tls_config(ca_pem: Option<&str>) -> Result<rustls::ClientConfig, GatewayError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|_| GatewayError::Config("TLS protocol versions"))?;
    Ok(match ca_pem {
        None => {
            let verifier = rustls_platform_verifier::Verifier::new(provider)
                .map_err(|_| GatewayError::Config("the system's certificate verifier"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|_| GatewayError::Config("ca_pem is not valid PEM"))?;
                roots
                    .add(cert)
                    .map_err(|_| GatewayError::Config("ca_pem holds an unusable certificate"))?;
            }
            if roots.is_empty() {
                return Err(GatewayError::Config("ca_pem holds no certificate"));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    })
}

impl HttpProvider {
    /// A provider for one vendor. Plain `http://` is accepted only for a server inside the
    /// perimeter or on a loopback address.
    pub fn new(
        conn: VendorConnection,
        settings: HttpSettings,
    ) -> Result<HttpProvider, GatewayError> {
        let base = reqwest::Url::parse(conn.base_url.trim_end_matches('/'))
            .map_err(|_| GatewayError::Config("base_url is not a URL"))?;
        let loopback = match base.host() {
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        match base.scheme() {
            "https" => {}
            "http" if conn.inside_perimeter || loopback => {}
            "http" => {
                return Err(GatewayError::Config(
                    "base_url must use https for a vendor outside the perimeter",
                ));
            }
            _ => return Err(GatewayError::Config("base_url must be http or https")),
        }
        if !base.username().is_empty() || base.password().is_some() || base.query().is_some() {
            return Err(GatewayError::Config(
                "base_url must not carry credentials or a query; use api_key",
            ));
        }
        let url = reqwest::Url::parse(&format!(
            "{}/chat/completions",
            base.as_str().trim_end_matches('/')
        ))
        .map_err(|_| GatewayError::Config("base_url is not a URL"))?;
        let auth = match &conn.api_key {
            Some(k) => {
                let mut v =
                    reqwest::header::HeaderValue::from_str(&format!("Bearer {}", k.as_str()))
                        .map_err(|_| {
                            GatewayError::Config("api_key has characters a header cannot carry")
                        })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(conn.ca_pem.as_deref())?)
            .connect_timeout(settings.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .http1_only()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|_| GatewayError::Config("the HTTP client could not be built"))?;
        Ok(HttpProvider {
            name: conn.name,
            models: conn.models,
            inside_perimeter: conn.inside_perimeter,
            url,
            auth,
            client,
            settings,
        })
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .settings
            .backoff_initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        retry_after.unwrap_or(exp).min(self.settings.backoff_max)
    }

    async fn attempt(
        &self,
        request: &UpstreamRequest,
    ) -> Result<Attempted, (UpstreamError, Option<Duration>)> {
        let mut req = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                reqwest::header::ACCEPT,
                if request.stream {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            )
            .body(request.body.clone());
        if let Some(a) = &self.auth {
            req = req.header(reqwest::header::AUTHORIZATION, a.clone());
        }
        let resp = match tokio::time::timeout(self.settings.response_timeout, req.send()).await {
            Err(_) => return Err((UpstreamError::Timeout, None)),
            Ok(Err(e)) if e.is_connect() => return Err((UpstreamError::Connect, None)),
            Ok(Err(e)) if e.is_timeout() => return Err((UpstreamError::Timeout, None)),
            Ok(Err(_)) => return Err((UpstreamError::Interrupted, None)),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = read_limited(resp, 64 * 1024, self.settings.idle_timeout)
                .await
                .unwrap_or_default();
            return Err((status_error(status, &body), retry_after));
        }
        if request.stream {
            return Ok(Attempted::Stream(resp));
        }
        match read_limited(
            resp,
            self.settings.max_response_bytes,
            self.settings.idle_timeout,
        )
        .await
        {
            Ok(b) => Ok(Attempted::Complete(b)),
            Err(e) => Err((e, None)),
        }
    }
}

enum Attempted {
    Complete(Bytes),
    Stream(reqwest::Response),
}

fn plain_identifier(s: &str, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.') || extra.contains(&b)
        })
}

/// The vendor's error status, with only its machine-readable fields kept.
fn status_error(status: u16, body: &[u8]) -> UpstreamError {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let e = &v["error"];
    let field = |k: &str, extra: &[u8]| -> Option<String> {
        let s = match &e[k] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return None,
        };
        plain_identifier(&s, extra).then_some(s)
    };
    UpstreamError::Status {
        status,
        kind: field("type", b""),
        code: field("code", b""),
        param: field("param", b"[]"),
    }
}

async fn read_limited(
    mut resp: reqwest::Response,
    max: usize,
    idle: Duration,
) -> Result<Bytes, UpstreamError> {
    let mut buf = Vec::new();
    loop {
        match tokio::time::timeout(idle, resp.chunk()).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(Err(_)) => return Err(UpstreamError::Interrupted),
            Ok(Ok(None)) => return Ok(Bytes::from(buf)),
            Ok(Ok(Some(piece))) => {
                if buf.len() + piece.len() > max {
                    return Err(UpstreamError::TooLarge { max });
                }
                buf.extend_from_slice(&piece);
            }
        }
    }
}

struct HttpStream {
    resp: reqwest::Response,
    idle: Duration,
}

impl fmt::Debug for HttpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpStream").finish_non_exhaustive()
    }
}

impl ByteStream for HttpStream {
    fn next_piece(&mut self) -> BoxFuture<'_, Result<Option<Bytes>, UpstreamError>> {
        Box::pin(async move {
            match tokio::time::timeout(self.idle, self.resp.chunk()).await {
                Err(_) => Err(UpstreamError::Timeout),
                Ok(Err(_)) => Err(UpstreamError::Interrupted),
                Ok(Ok(p)) => Ok(p),
            }
        })
    }
}

impl sealed::Sealed for HttpProvider {}

impl Provider for HttpProvider {
    fn vendor(&self) -> &str {
        &self.name
    }

    fn serves(&self, model: &str) -> bool {
        self.models.iter().any(|m| m == model)
    }

    fn inside_perimeter(&self) -> bool {
        self.inside_perimeter
    }

    fn send<'a>(
        &'a self,
        request: UpstreamRequest,
    ) -> BoxFuture<'a, Result<UpstreamReply, UpstreamError>> {
        Box::pin(async move {
            let max = self.settings.max_attempts.max(1);
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.attempt(&request).await {
                    Ok(Attempted::Complete(body)) => {
                        return Ok(UpstreamReply::Complete {
                            body,
                            attempts: attempt,
                        });
                    }
                    Ok(Attempted::Stream(resp)) => {
                        return Ok(UpstreamReply::Stream {
                            body: Box::new(HttpStream {
                                resp,
                                idle: self.settings.idle_timeout,
                            }),
                            attempts: attempt,
                        });
                    }
                    Err((e, retry_after)) => {
                        if attempt >= max || !e.is_retryable() {
                            return Err(e);
                        }
                        tokio::time::sleep(self.backoff(attempt, retry_after)).await;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(url: &str, inside: bool) -> VendorConnection {
        VendorConnection {
            name: "v".into(),
            base_url: url.into(),
            models: vec!["m".into()],
            api_key: Some(Zeroizing::new("sk-secret".into())),
            inside_perimeter: inside,
            ca_pem: None,
        }
    }

    #[test]
    fn plain_http_only_inside_the_perimeter_or_on_loopback() {
        let s = HttpSettings::default();
        assert!(HttpProvider::new(conn("https://api.example.com/v1", false), s.clone()).is_ok());
        assert!(HttpProvider::new(conn("http://127.0.0.1:9/v1", false), s.clone()).is_ok());
        assert!(HttpProvider::new(conn("http://[::1]:9/v1", false), s.clone()).is_ok());
        assert!(HttpProvider::new(conn("http://llm.practice.lan/v1", true), s.clone()).is_ok());
        assert!(HttpProvider::new(conn("http://api.example.com/v1", false), s.clone()).is_err());
        assert!(HttpProvider::new(conn("ftp://x/v1", false), s.clone()).is_err());
        assert!(HttpProvider::new(conn("https://u:p@x/v1", false), s.clone()).is_err());
        let mut bad = conn("https://x/v1", false);
        bad.ca_pem = Some("not pem".into());
        assert!(HttpProvider::new(bad, s.clone()).is_err());
        let p = HttpProvider::new(conn("https://api.example.com/v1/", false), s).unwrap();
        assert_eq!(
            p.url.as_str(),
            "https://api.example.com/v1/chat/completions"
        );
        let dbg = format!("{p:?} {:?}", conn("https://x", false));
        assert!(!dbg.contains("sk-secret"), "{dbg}");
    }

    #[test]
    fn vendor_errors_keep_codes_and_drop_messages() {
        let body = br#"{"error":{"message":"Invalid 'messages[0].content': Maria Gonzalez","type":"invalid_request_error","param":"messages[0].content","code":"context_length_exceeded"}}"#;
        let e = status_error(400, body);
        assert_eq!(
            e,
            UpstreamError::Status {
                status: 400,
                kind: Some("invalid_request_error".into()),
                code: Some("context_length_exceeded".into()),
                param: Some("messages[0].content".into()),
            }
        );
        let json = String::from_utf8(e.to_error_body().to_json()).unwrap();
        assert!(!json.contains("Maria"), "{json}");
        let e = status_error(500, br#"{"error":{"code":"Maria Gonzalez","type":42}}"#);
        assert_eq!(
            e,
            UpstreamError::Status {
                status: 500,
                kind: Some("42".into()),
                code: None,
                param: None
            }
        );
        assert!(status_error(503, b"<html>").is_retryable());
        assert!(!status_error(400, b"").is_retryable());
    }
}

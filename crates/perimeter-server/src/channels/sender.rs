//! The outbound SMS sender: claims due messages from the store's outbox and POSTs each to the
//! Twilio REST Messages API (`{api_base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`,
//! basic auth, form fields `To`, `From`, `Body`, `StatusCallback`) over rustls. Timeouts, 429
//! and 5xx are retried with exponential backoff on the injected clock; other 4xx answers fail
//! the message with the carrier's error code. Never logs a number or a body.

use std::sync::Arc;
use std::time::Duration;

use perimeter_domain::SharedClock;
use perimeter_store::{AccessContext, ClaimedSms, Store, StoreError};
use tokio::sync::Notify;
use zeroize::Zeroizing;

use super::twilio::Form;
use crate::Metrics;

/// Attempts before a message fails for good.
pub const MAX_ATTEMPTS: u32 = 8;

/// The carrier connection (`[channels.twilio]`).
#[derive(Clone)]
pub struct TwilioConfig {
    /// `account_sid`.
    pub account_sid: String,
    /// `auth_token` (secret: signs webhooks, authenticates API calls).
    pub auth_token: Zeroizing<String>,
    /// `public_base_url`: the URL Twilio calls us at (webhook signatures cover it).
    pub public_base_url: String,
    /// `api_base_url`: `https://api.twilio.com` in production, a loopback fake in tests.
    pub api_base_url: String,
    /// `from_number`: the practice's number.
    pub from_number: String,
    /// A PEM root certificate for the API (tests with TLS); `None`: the system's roots.
    pub ca_pem: Option<String>,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[secret]")
            .field("public_base_url", &self.public_base_url)
            .field("api_base_url", &self.api_base_url)
            .finish_non_exhaustive()
    }
}

/// Why a send failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying (timeout, connection, 429, 5xx).
    #[error("transient carrier failure: {0}")]
    Transient(&'static str),
    /// Not worth retrying (the carrier refused the message).
    #[error("the carrier refused the message: {0}")]
    Permanent(&'static str),
    /// The sender is misconfigured.
    #[error("sender configuration: {0}")]
    Config(&'static str),
}

/// A client of the Twilio Messages API.
#[derive(Clone)]
pub struct TwilioClient {
    config: Arc<TwilioConfig>,
    messages_url: reqwest::Url,
    client: reqwest::Client,
}

impl std::fmt::Debug for TwilioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn tls_config(ca_pem: Option<&str>) -> Result<rustls::ClientConfig, SendError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|_| SendError::Config("TLS protocol versions"))?;
    Ok(match ca_pem {
        None => {
            let verifier = rustls_platform_verifier::Verifier::new(provider)
                .map_err(|_| SendError::Config("the system's certificate verifier"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|_| SendError::Config("ca_pem is not valid PEM"))?;
                roots
                    .add(cert)
                    .map_err(|_| SendError::Config("ca_pem holds an unusable certificate"))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    })
}

fn sid_ok(s: &str) -> bool {
    (10..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A carrier error code as a fixed label (Twilio's documented codes that matter here).
fn carrier_code(code: Option<i64>) -> &'static str {
    match code {
        Some(21610) => "carrier_21610_unsubscribed",
        Some(21211) => "carrier_21211_invalid_to",
        Some(21408) => "carrier_21408_region",
        Some(21614) => "carrier_21614_not_mobile",
        Some(20003) => "carrier_20003_auth",
        Some(_) => "carrier_refused",
        None => "carrier_refused",
    }
}

impl TwilioClient {
    /// A client for `config`. Plain `http://` is allowed only to a loopback address (the fake
    /// carrier in tests).
    pub fn new(config: TwilioConfig) -> Result<TwilioClient, SendError> {
        if !sid_ok(&config.account_sid) {
            return Err(SendError::Config("account_sid"));
        }
        let base = reqwest::Url::parse(config.api_base_url.trim_end_matches('/'))
            .map_err(|_| SendError::Config("api_base_url is not a URL"))?;
        let loopback = match base.host() {
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        if base.scheme() != "https" && !(base.scheme() == "http" && loopback) {
            return Err(SendError::Config(
                "api_base_url must be https (http only on loopback)",
            ));
        }
        let messages_url = reqwest::Url::parse(&format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            base.as_str().trim_end_matches('/'),
            config.account_sid
        ))
        .map_err(|_| SendError::Config("api_base_url"))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(config.ca_pem.as_deref())?)
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| SendError::Config("HTTP client"))?;
        Ok(TwilioClient {
            config: Arc::new(config),
            messages_url,
            client,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TwilioConfig {
        &self.config
    }

    /// Sends one message; returns the carrier's message sid.
    pub async fn send(&self, to: &str, body: &str) -> Result<String, SendError> {
        let callback = format!(
            "{}/webhooks/twilio/status",
            self.config.public_base_url.trim_end_matches('/')
        );
        let form = Form::from_pairs([
            ("To", to),
            ("From", self.config.from_number.as_str()),
            ("Body", body),
            ("StatusCallback", callback.as_str()),
        ]);
        let resp = self
            .client
            .post(self.messages_url.clone())
            .basic_auth(
                &self.config.account_sid,
                Some(self.config.auth_token.as_str()),
            )
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(form.encode())
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    SendError::Transient("timeout")
                } else {
                    SendError::Transient("connection")
                }
            })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|_| SendError::Transient("response_read"))?;
        let json: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() {
            let sid = json
                .as_ref()
                .and_then(|j| j.get("sid"))
                .and_then(|s| s.as_str())
                .filter(|s| sid_ok(s))
                .ok_or(SendError::Transient("response_without_sid"))?;
            return Ok(sid.to_owned());
        }
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(SendError::Transient(if status.as_u16() == 429 {
                "http_429"
            } else {
                "http_5xx"
            }));
        }
        let code = json
            .as_ref()
            .and_then(|j| j.get("code"))
            .and_then(serde_json::Value::as_i64);
        Err(SendError::Permanent(carrier_code(code)))
    }
}

/// The backoff before attempt `attempts + 1`: 2 s, 4 s, 8 s, ... at most 5 minutes.
pub fn backoff_millis(attempts: u32) -> i64 {
    let exp = attempts.min(20);
    (1000_i64 << exp).min(300_000)
}

/// Claims due messages and sends them. Cheap to clone.
#[derive(Clone)]
pub struct Sender {
    store: Store,
    client: TwilioClient,
    clock: SharedClock,
    metrics: Metrics,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl Sender {
    /// A sender over `store` with `client`.
    pub fn new(
        store: Store,
        client: TwilioClient,
        clock: SharedClock,
        metrics: Metrics,
        wake: Arc<Notify>,
    ) -> Sender {
        Sender {
            store,
            client,
            clock,
            metrics,
            wake,
        }
    }

    /// One pass: claims up to 20 due messages and sends each. Returns how many were claimed.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let ctx = AccessContext::system("sms_sender");
        let claimed = self.store.claim_due_sms(&ctx, 20).await?;
        let n = claimed.len();
        for sms in claimed {
            self.send_one(sms).await?;
        }
        Ok(n)
    }

    async fn send_one(&self, sms: ClaimedSms) -> Result<(), StoreError> {
        match self.client.send(&sms.to, &sms.body).await {
            Ok(sid) => {
                self.metrics.channel_event("sms_sent");
                self.store.mark_sms_sent(sms.id, &sid).await
            }
            Err(SendError::Transient(code)) if sms.attempts < MAX_ATTEMPTS => {
                self.metrics.channel_event("sms_retry");
                tracing::warn!(outbox = %sms.id, attempts = sms.attempts, code, "SMS send failed; will retry");
                let next = self
                    .clock
                    .now_millis()
                    .saturating_add(backoff_millis(sms.attempts));
                self.store.mark_sms_retry(sms.id, next, code).await
            }
            Err(SendError::Transient(_)) => {
                self.metrics.channel_event("sms_failed");
                tracing::error!(outbox = %sms.id, "SMS send failed after every retry");
                self.store
                    .mark_sms_failed(sms.id, "retries_exhausted")
                    .await
            }
            Err(SendError::Permanent(code)) | Err(SendError::Config(code)) => {
                self.metrics.channel_event("sms_failed");
                tracing::error!(outbox = %sms.id, code, "the carrier refused an SMS");
                self.store.mark_sms_failed(sms.id, code).await
            }
        }
    }

    /// Runs until `shutdown` resolves: a pass whenever woken (a message was queued) and at
    /// least every `poll` (retries coming due).
    pub async fn run(self, poll: Duration, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.run_once().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "SMS sender pass failed; retrying");
                }
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_millis(1), 2000);
        assert_eq!(backoff_millis(2), 4000);
        assert_eq!(backoff_millis(30), 300_000);
    }

    #[test]
    fn only_https_or_loopback() {
        let cfg = |url: &str| TwilioConfig {
            account_sid: "AC0123456789abcdef".into(),
            auth_token: Zeroizing::new("t".into()),
            public_base_url: "https://p.example".into(),
            api_base_url: url.into(),
            from_number: "+15550000000".into(),
            ca_pem: None,
            timeout: Duration::from_secs(1),
        };
        assert!(TwilioClient::new(cfg("http://127.0.0.1:9")).is_ok());
        assert!(TwilioClient::new(cfg("https://api.twilio.com")).is_ok());
        assert_eq!(
            TwilioClient::new(cfg("http://api.twilio.com")).err(),
            Some(SendError::Config(
                "api_base_url must be https (http only on loopback)"
            ))
        );
    }
}

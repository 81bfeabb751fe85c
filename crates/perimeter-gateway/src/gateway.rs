//! A call, end to end: prepare from a permit, send, restore, check, and release only once the
//! caller has confirmed the audit record.
//!
//! ```text
//! decide(..) -> Permit ─prepare─▶ Ready ─send─▶ Reply::Complete(PendingAnswer) ─finish(written)─▶ Released
//!                                            └▶ Reply::Stream(PendingStream) ─begin(written)─▶ LiveStream
//!                                                                   next()* ─▶ record() ─▶ finish(written) ─▶ [DONE]
//! ```
//!
//! **The audit rule.** Nothing of an answer reaches the caller before a record of the call is
//! written. A whole answer is held by [`PendingAnswer`] until [`PendingAnswer::finish`] is told
//! that [`PendingAnswer::record`] was written; if it was not, the answer is dropped. A stream is
//! held by [`PendingStream`] until the "started" record is confirmed with
//! [`PendingStream::begin`]; its final record is available once [`LiveStream::next`] returns
//! `None`, and `data: [DONE]` is released by [`LiveStream::finish`] only when that record was
//! written (otherwise the stream ends with an error event, which OpenAI clients raise).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use perimeter_domain::SharedClock;
use perimeter_phi::{Engine, Vault};

use crate::clinical::{self, ClinicalAdvice};
use crate::error::{GatewayError, UpstreamError};
use crate::guard::Originals;
use crate::inbound::{self, Ctx, StreamFault, StreamRelay};
use crate::outbound::Outbound;
use crate::provider::{ByteStream, Provider, UpstreamReply, UpstreamRequest};
use crate::record::{CallOutcome, CallRecord, GatewayMetrics, GuardrailHits};
use crate::wire::{ChatCompletion, ChatCompletionRequest, ErrorBody};
use crate::{Permit, SendForm};

/// Limits of the gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The largest prepared request body sent to a vendor.
    pub max_request_bytes: usize,
    /// The largest single event accepted from a vendor's stream.
    pub max_event_bytes: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_request_bytes: 4 * 1024 * 1024,
            max_event_bytes: 1024 * 1024,
        }
    }
}

/// The gateway: the PHI engine, the clock, the counters. Cheap to share (`Arc`).
pub struct Gateway {
    engine: Arc<Engine>,
    clock: SharedClock,
    metrics: Arc<GatewayMetrics>,
    config: GatewayConfig,
}

/// A failed call: the error for the caller and the record for the audit trail.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong (no content).
    pub error: GatewayError,
    /// The record to write.
    pub record: CallRecord,
}

/// A permit that allows sending as is.
#[derive(Debug)]
pub struct AsIsPermit(Permit);

/// A permit that allows sending only after de-identification.
#[derive(Debug)]
pub struct PseudonymisedPermit(Permit);

/// A permit, by the form it allows.
#[derive(Debug)]
pub enum PermitForm {
    /// Send as is.
    AsIs(AsIsPermit),
    /// Send pseudonymised.
    Pseudonymised(PseudonymisedPermit),
}

impl Permit {
    /// The permit by its form; consumes it.
    pub fn into_form(self) -> PermitForm {
        match self.form() {
            SendForm::AsIs => PermitForm::AsIs(AsIsPermit(self)),
            SendForm::Pseudonymised => PermitForm::Pseudonymised(PseudonymisedPermit(self)),
        }
    }
}

enum Restore {
    AsIs,
    /// Only built by [`PseudonymisedPermit::prepare`] after every string was de-identified.
    Pseudonymised(Arc<Vault>),
}

/// A request ready to go to the vendor its permit names. Only a permit's `prepare` makes one.
pub struct Ready {
    permit: Permit,
    model: String,
    body: Bytes,
    restore: Restore,
    originals: Originals,
    caller_stream: bool,
    upstream_stream: bool,
    caller_wants_usage: bool,
    patient_facing: bool,
    replaced: u32,
    prepare_time: Duration,
}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ready")
            .field("vendor", &self.permit.vendor())
            .field("model", &self.model)
            .field("form", &self.form())
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Ready {
    /// The form the body is in.
    pub fn form(&self) -> SendForm {
        match self.restore {
            Restore::AsIs => SendForm::AsIs,
            Restore::Pseudonymised(_) => SendForm::Pseudonymised,
        }
    }
    /// The model.
    pub fn model(&self) -> &str {
        &self.model
    }
    /// The size of the body that will be sent.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }
    /// Identifiers replaced by placeholders.
    pub fn identifiers_replaced(&self) -> u32 {
        self.replaced
    }

    fn record(&self, outcome: CallOutcome, sent: bool) -> CallRecord {
        CallRecord {
            vendor: self.permit.vendor().to_string(),
            model: self.model.clone(),
            purpose: self.permit.purpose(),
            form: sent.then(|| self.form()),
            class_sent: sent.then(|| self.permit.class_sent()),
            streamed: self.caller_stream,
            identifiers_replaced: self.replaced,
            prompt_tokens: None,
            completion_tokens: None,
            total_tokens: None,
            latency_ms: 0,
            overhead_us: duration_us(self.prepare_time),
            upstream_attempts: 0,
            outcome,
            guardrails: GuardrailHits::default(),
        }
    }
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn refused_record(
    permit: &Permit,
    request: &ChatCompletionRequest,
    code: &'static str,
) -> CallRecord {
    CallRecord::refused(
        permit.vendor(),
        &request.model,
        permit.purpose(),
        request.is_stream(),
        code,
    )
}

impl AsIsPermit {
    /// Prepares the request as is (telemetry fields removed, nothing else changed).
    pub fn prepare(
        self,
        gateway: &Gateway,
        request: ChatCompletionRequest,
    ) -> Result<Ready, Box<Failure>> {
        let start = Instant::now();
        let mut request = request;
        let mut walk = Outbound::as_is(&gateway.engine);
        let walked = walk.request(&mut request);
        gateway.finish_prepare(
            self.0,
            request,
            walked,
            walk.originals,
            0,
            Restore::AsIs,
            start,
        )
    }
}

impl PseudonymisedPermit {
    /// Prepares the request with every string de-identified into `vault` (one vault per
    /// request or per conversation, never shared across them). Any engine error refuses the
    /// call.
    pub fn prepare(
        self,
        gateway: &Gateway,
        request: ChatCompletionRequest,
        vault: Arc<Vault>,
    ) -> Result<Ready, Box<Failure>> {
        let start = Instant::now();
        let mut request = request;
        let year = gateway.clock.now().year();
        let mut walk = Outbound::pseudonymise(&gateway.engine, &vault, year);
        let walked = walk.request(&mut request);
        let replaced = walk.replaced;
        let originals = walk.originals;
        gateway.finish_prepare(
            self.0,
            request,
            walked,
            originals,
            replaced,
            Restore::Pseudonymised(vault),
            start,
        )
    }
}

/// The vendor's answer, before release.
#[derive(Debug)]
pub enum Reply {
    /// A whole answer (also for a streaming request of a patient-facing purpose).
    Complete(Box<PendingAnswer>),
    /// A stream.
    Stream(Box<PendingStream>),
}

/// A whole answer, held until the record is confirmed.
#[derive(Debug)]
pub struct PendingAnswer {
    record: CallRecord,
    completion: ChatCompletion,
    blocked: Option<Vec<ClinicalAdvice>>,
    as_events: bool,
    caller_wants_usage: bool,
    metrics: Arc<GatewayMetrics>,
}

/// What the caller may release.
#[derive(Debug)]
pub enum Released {
    /// The answer.
    Answer(Answer),
    /// The clinical-advice check blocked it: route the draft to a person, do not send it to
    /// the caller.
    Blocked(Blocked),
}

/// A released answer.
#[derive(Debug)]
pub struct Answer {
    completion: ChatCompletion,
    as_events: bool,
    caller_wants_usage: bool,
}

/// The HTTP body of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseBody {
    /// `application/json` or `text/event-stream`.
    pub content_type: &'static str,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl Answer {
    /// The restored, checked completion.
    pub fn completion(&self) -> &ChatCompletion {
        &self.completion
    }
    /// The body for the caller: JSON, or (the caller asked for a stream) events ending with
    /// one `data: [DONE]`.
    pub fn into_body(self) -> ResponseBody {
        if self.as_events {
            let mut bytes =
                inbound::completion_as_events(&self.completion, self.caller_wants_usage);
            bytes.extend_from_slice(DONE);
            ResponseBody {
                content_type: "text/event-stream",
                bytes,
            }
        } else {
            ResponseBody {
                content_type: "application/json",
                bytes: serde_json::to_vec(&self.completion).unwrap_or_default(),
            }
        }
    }
}

/// An answer the clinical-advice check blocked.
#[derive(Debug)]
pub struct Blocked {
    /// The draft, restored (for the person it is routed to; never for the caller).
    pub draft: ChatCompletion,
    /// What the check found.
    pub findings: Vec<ClinicalAdvice>,
}

impl Blocked {
    /// The error body for an HTTP caller (HTTP 422).
    pub fn error_body(&self) -> ErrorBody {
        let kinds: Vec<&str> = self.findings.iter().map(|f| f.as_str()).collect();
        ErrorBody::new(
            format!(
                "the answer was held for review by a person: it contains clinical advice ({})",
                kinds.join(", ")
            ),
            "guardrail_error",
            None,
            Some("clinical_advice_blocked"),
        )
    }
}

const DONE: &[u8] = b"data: [DONE]\n\n";

impl PendingAnswer {
    /// The record to write before release.
    pub fn record(&self) -> &CallRecord {
        &self.record
    }

    /// Releases the answer if `record_written`; otherwise drops it and fails.
    pub fn finish(self, record_written: bool) -> Result<Released, GatewayError> {
        if !record_written {
            self.metrics.audit_not_written();
            return Err(GatewayError::AuditNotWritten);
        }
        self.metrics.count(&self.record);
        Ok(match self.blocked {
            Some(findings) => Released::Blocked(Blocked {
                draft: self.completion,
                findings,
            }),
            None => Released::Answer(Answer {
                completion: self.completion,
                as_events: self.as_events,
                caller_wants_usage: self.caller_wants_usage,
            }),
        })
    }
}

/// A stream, held until the "started" record is confirmed.
#[derive(Debug)]
pub struct PendingStream {
    record: CallRecord,
    live: LiveStream,
}

impl PendingStream {
    /// The "started" record to write before the first byte goes to the caller.
    pub fn record(&self) -> &CallRecord {
        &self.record
    }

    /// Starts releasing if `record_written`; otherwise closes the vendor's stream and fails.
    pub fn begin(self, record_written: bool) -> Result<LiveStream, GatewayError> {
        if !record_written {
            self.live.metrics.audit_not_written();
            return Err(GatewayError::AuditNotWritten);
        }
        Ok(self.live)
    }
}

/// A stream being relayed to the caller.
pub struct LiveStream {
    upstream: Box<dyn ByteStream>,
    relay: StreamRelay,
    record: CallRecord,
    started: Instant,
    overhead: Duration,
    state: LiveState,
    metrics: Arc<GatewayMetrics>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LiveState {
    Relaying,
    /// The vendor's answer is complete; the final record awaits confirmation.
    Complete,
    /// Ended with an error event.
    Failed,
}

impl std::fmt::Debug for LiveStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveStream")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl LiveStream {
    /// The next bytes for the caller; `None` once the vendor's answer is over (the final
    /// record is then in [`LiveStream::record`]).
    pub async fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.state != LiveState::Relaying {
                return None;
            }
            let piece = self.upstream.next_piece().await;
            let t = Instant::now();
            let mut out = Vec::new();
            let r = match piece {
                Ok(Some(p)) => self.relay.push(&p, &mut out),
                Ok(None) => self.relay.end(&mut out),
                Err(e) => Err(StreamFault::Upstream(e)),
            };
            match r {
                Ok(()) if self.relay.done => {
                    self.overhead += t.elapsed();
                    self.close(CallOutcome::Answered);
                }
                Ok(()) => self.overhead += t.elapsed(),
                Err(fault) => {
                    let error = match fault {
                        StreamFault::Upstream(u) => GatewayError::Upstream(u),
                        StreamFault::Guard => {
                            GatewayError::OutputCheck("the PHI engine failed on the answer")
                        }
                    };
                    out.extend_from_slice(&inbound::error_event(&error.to_error_body()));
                    self.close(CallOutcome::Failed {
                        code: error.code(),
                        status: None,
                    });
                    self.state = LiveState::Failed;
                    self.overhead += t.elapsed();
                }
            }
            if !out.is_empty() {
                return Some(Bytes::from(out));
            }
        }
    }

    fn close(&mut self, outcome: CallOutcome) {
        self.state = LiveState::Complete;
        let r = &mut self.record;
        r.outcome = outcome;
        r.latency_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        r.overhead_us = r.overhead_us.saturating_add(duration_us(self.overhead));
        self.overhead = Duration::ZERO;
        if let Some(u) = &self.relay.usage {
            r.prompt_tokens = u.prompt_tokens;
            r.completion_tokens = u.completion_tokens;
            r.total_tokens = u.total_tokens;
        }
        r.guardrails = self.relay.ctx.hits.clone();
    }

    /// The final record, once [`LiveStream::next`] has returned `None`.
    pub fn record(&self) -> Option<&CallRecord> {
        (self.state != LiveState::Relaying).then_some(&self.record)
    }

    /// The stream's last bytes: `data: [DONE]` when the answer was complete and its record
    /// written, an error event when the record was not written, nothing after an error event.
    pub fn finish(self, record_written: bool) -> Bytes {
        match (self.state, record_written) {
            (LiveState::Complete, true) => {
                self.metrics.count(&self.record);
                Bytes::from_static(DONE)
            }
            (LiveState::Failed, true) => {
                self.metrics.count(&self.record);
                Bytes::new()
            }
            (LiveState::Relaying, _) | (_, false) => {
                self.metrics.audit_not_written();
                Bytes::from(inbound::error_event(
                    &GatewayError::AuditNotWritten.to_error_body(),
                ))
            }
        }
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway using `engine` for de-identification and the output guardrail.
    pub fn new(engine: Arc<Engine>, clock: SharedClock, config: GatewayConfig) -> Gateway {
        Gateway {
            engine,
            clock,
            metrics: Arc::new(GatewayMetrics::default()),
            config,
        }
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<GatewayMetrics> {
        &self.metrics
    }

    /// Prepares `request` in the form `permit` allows; `vault` is used only when that form is
    /// pseudonymised.
    pub fn prepare(
        &self,
        permit: Permit,
        request: ChatCompletionRequest,
        vault: Arc<Vault>,
    ) -> Result<Ready, Box<Failure>> {
        match permit.into_form() {
            PermitForm::AsIs(p) => p.prepare(self, request),
            PermitForm::Pseudonymised(p) => p.prepare(self, request, vault),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_prepare(
        &self,
        permit: Permit,
        mut request: ChatCompletionRequest,
        walked: Result<(), GatewayError>,
        originals: Originals,
        replaced: u32,
        restore: Restore,
        start: Instant,
    ) -> Result<Ready, Box<Failure>> {
        if let Err(error) = walked {
            let record = refused_record(&permit, &request, error.code());
            self.metrics.count(&record);
            return Err(Box::new(Failure { error, record }));
        }
        let caller_stream = request.is_stream();
        let patient_facing = permit.purpose().rule().patient_facing;
        let upstream_stream = caller_stream && !patient_facing;
        let caller_wants_usage = request
            .extra
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        if upstream_stream {
            request.stream = Some(true);
            request.extra.insert(
                "stream_options".into(),
                serde_json::json!({"include_usage": true}),
            );
        } else {
            request.stream = None;
            request.extra.remove("stream_options");
        }
        let body = match serde_json::to_vec(&request) {
            Ok(b) => b,
            Err(_) => {
                let error = GatewayError::InvalidRequest {
                    path: "body".into(),
                    reason: "the request could not be serialised",
                };
                let record = refused_record(&permit, &request, error.code());
                self.metrics.count(&record);
                return Err(Box::new(Failure { error, record }));
            }
        };
        if body.len() > self.config.max_request_bytes {
            let error = GatewayError::RequestTooLarge {
                size: body.len(),
                max: self.config.max_request_bytes,
            };
            let record = refused_record(&permit, &request, error.code());
            self.metrics.count(&record);
            return Err(Box::new(Failure { error, record }));
        }
        Ok(Ready {
            permit,
            model: request.model,
            body: Bytes::from(body),
            restore,
            originals,
            caller_stream,
            upstream_stream,
            caller_wants_usage,
            patient_facing,
            replaced,
            prepare_time: start.elapsed(),
        })
    }

    /// Sends a prepared request to `provider` (the vendor its permit names) and prepares the
    /// answer for release.
    pub async fn send(&self, ready: Ready, provider: &dyn Provider) -> Result<Reply, Box<Failure>> {
        let mismatch = if ready.permit.vendor() != provider.vendor() {
            Some("the permit is for another vendor")
        } else if !provider.serves(&ready.model) {
            Some("the vendor does not serve this model")
        } else if ready.permit.decided_on() != self.clock.now().date() {
            Some("the permit was issued on another day")
        } else {
            None
        };
        if let Some(why) = mismatch {
            let error = GatewayError::PermitMismatch(why);
            let mut record = ready.record(CallOutcome::Refused { code: error.code() }, false);
            record.overhead_us = 0;
            self.metrics.count(&record);
            return Err(Box::new(Failure { error, record }));
        }
        let base = ready.record(CallOutcome::Started, true);
        let started = Instant::now();
        let Ready {
            permit,
            body,
            restore,
            originals,
            caller_stream,
            upstream_stream,
            caller_wants_usage,
            patient_facing,
            ..
        } = ready;
        let vault = match restore {
            Restore::AsIs => None,
            Restore::Pseudonymised(v) => Some(v),
        };
        let reply = dispatch(permit, provider, body, upstream_stream).await;
        let record_with = |outcome: CallOutcome| {
            let mut r = base.clone();
            r.outcome = outcome;
            r
        };
        let ctx = Ctx {
            engine: Arc::clone(&self.engine),
            originals,
            vault,
            hits: GuardrailHits::default(),
        };
        let fail = |error: GatewayError, attempts: u32, status: Option<u16>| {
            let mut record = record_with(CallOutcome::Failed {
                code: error.code(),
                status,
            });
            record.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            record.upstream_attempts = attempts;
            self.metrics.count(&record);
            Box::new(Failure { error, record })
        };
        match reply {
            Err(e) => {
                let status = match &e {
                    UpstreamError::Status { status, .. } => Some(*status),
                    _ => None,
                };
                Err(fail(GatewayError::Upstream(e), 0, status))
            }
            Ok(UpstreamReply::Complete { body, attempts }) => {
                let t = Instant::now();
                let mut ctx = ctx;
                let mut completion: ChatCompletion = match serde_json::from_slice(&body) {
                    Ok(c) => c,
                    Err(_) => {
                        return Err(fail(
                            GatewayError::Upstream(UpstreamError::InvalidResponse),
                            attempts,
                            None,
                        ));
                    }
                };
                let texts = match inbound::restore_completion(&mut completion, &mut ctx) {
                    Ok(t) => t,
                    Err(_) => {
                        return Err(fail(
                            GatewayError::OutputCheck("the PHI engine failed on the answer"),
                            attempts,
                            None,
                        ));
                    }
                };
                let mut findings = Vec::new();
                if patient_facing {
                    for text in &texts {
                        match clinical::check(text) {
                            Ok(f) => findings.extend(f),
                            Err(_) => {
                                return Err(fail(
                                    GatewayError::OutputCheck("the clinical-advice rules"),
                                    attempts,
                                    None,
                                ));
                            }
                        }
                    }
                    findings.sort_unstable();
                    findings.dedup();
                }
                let blocked = (!findings.is_empty()).then(|| findings.clone());
                let outcome = match &blocked {
                    Some(f) => CallOutcome::Blocked {
                        findings: f.clone(),
                    },
                    None => CallOutcome::Answered,
                };
                let mut record = record_with(outcome);
                record.latency_ms =
                    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                record.upstream_attempts = attempts;
                if let Some(u) = &completion.usage {
                    record.prompt_tokens = u.prompt_tokens;
                    record.completion_tokens = u.completion_tokens;
                    record.total_tokens = u.total_tokens;
                }
                let mut hits = ctx.hits;
                hits.clinical_advice = findings;
                record.guardrails = hits;
                record.overhead_us = record.overhead_us.saturating_add(duration_us(t.elapsed()));
                Ok(Reply::Complete(Box::new(PendingAnswer {
                    record,
                    completion,
                    blocked,
                    as_events: caller_stream,
                    caller_wants_usage,
                    metrics: Arc::clone(&self.metrics),
                })))
            }
            Ok(UpstreamReply::Stream { body, attempts }) => {
                let mut record = record_with(CallOutcome::Started);
                record.upstream_attempts = attempts;
                let relay = StreamRelay::new(ctx, caller_wants_usage, self.config.max_event_bytes);
                Ok(Reply::Stream(Box::new(PendingStream {
                    record: record.clone(),
                    live: LiveStream {
                        upstream: body,
                        relay,
                        record,
                        started,
                        overhead: Duration::ZERO,
                        state: LiveState::Relaying,
                        metrics: Arc::clone(&self.metrics),
                    },
                })))
            }
        }
    }
}

/// The one code path that opens a connection to a vendor: it takes the permit (moved into
/// [`Ready`] by the policy's decision and a permit's `prepare`) and the prepared body.
async fn dispatch(
    permit: Permit,
    provider: &dyn Provider,
    body: Bytes,
    stream: bool,
) -> Result<UpstreamReply, UpstreamError> {
    // `send` has checked that the permit names this provider's vendor, for this model, today;
    // the permit is spent here, with the one request it covers.
    drop(permit);
    provider.send(UpstreamRequest { body, stream }).await
}

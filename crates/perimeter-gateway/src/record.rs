//! What the server writes to the audit trail for each call, and the counters it exports.
//! Neither ever holds text: names from the registry, enum values, counts and durations.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::clinical::ClinicalAdvice;
use crate::guard::IdentifierHits;
use crate::{AiPurpose, DataClass, SendForm};

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CallOutcome {
    /// A stream is about to be released to the caller (the record written before the first
    /// byte; a final record follows).
    Started,
    /// The answer was released.
    Answered,
    /// The clinical-advice check blocked the answer; it goes to a person.
    Blocked {
        /// What it found.
        findings: Vec<ClinicalAdvice>,
    },
    /// Nothing was sent: the policy refused, or the request could not be made safe.
    Refused {
        /// The stable reason code.
        code: &'static str,
    },
    /// Something failed after the request was sent (the vendor, or the output check).
    Failed {
        /// The stable reason code.
        code: &'static str,
        /// The vendor's HTTP status, if it answered with one.
        status: Option<u16>,
    },
}

impl CallOutcome {
    /// The stable name of the outcome.
    pub fn as_str(&self) -> &'static str {
        match self {
            CallOutcome::Started => "started",
            CallOutcome::Answered => "answered",
            CallOutcome::Blocked { .. } => "blocked",
            CallOutcome::Refused { .. } => "refused",
            CallOutcome::Failed { .. } => "failed",
        }
    }
}

/// Every guardrail hit of one call.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct GuardrailHits {
    /// Identifiers the model emitted that the caller had not sent, redacted.
    pub identifiers: IdentifierHits,
    /// What the clinical-advice check found (patient-facing purposes only).
    pub clinical_advice: Vec<ClinicalAdvice>,
    /// Placeholders of the `[LABEL_N]` form the model made up (not issued by the vault; left
    /// as they were, they carry nothing).
    pub unknown_placeholders: u32,
}

/// The audit record of one AI call. No prompt, no completion, no identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    /// The vendor's registry name.
    pub vendor: String,
    /// The model asked for.
    pub model: String,
    /// The purpose of the call.
    pub purpose: AiPurpose,
    /// The form the content was sent in; `None` when nothing was sent.
    pub form: Option<SendForm>,
    /// The data class that actually reached the vendor; `None` when nothing was sent.
    pub class_sent: Option<DataClass>,
    /// Whether the caller got a stream.
    pub streamed: bool,
    /// Identifiers replaced by placeholders on the way out.
    pub identifiers_replaced: u32,
    /// Prompt tokens, from the vendor's usage.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens, from the vendor's usage.
    pub completion_tokens: Option<u64>,
    /// Total tokens, from the vendor's usage.
    pub total_tokens: Option<u64>,
    /// Milliseconds from sending to the end of the vendor's answer (or the failure).
    pub latency_ms: u64,
    /// Microseconds the gateway itself spent on the call (de-identification, re-identification,
    /// guardrails, parsing), excluding waiting for the vendor.
    pub overhead_us: u64,
    /// Attempts made to reach the vendor (retries + 1; 0 when nothing was sent).
    pub upstream_attempts: u32,
    /// How it ended.
    pub outcome: CallOutcome,
    /// Every guardrail hit.
    pub guardrails: GuardrailHits,
}

impl CallRecord {
    /// The record of a call the policy refused (nothing was sent).
    pub fn refused(
        vendor: &str,
        model: &str,
        purpose: AiPurpose,
        streamed: bool,
        code: &'static str,
    ) -> CallRecord {
        CallRecord {
            vendor: vendor.to_string(),
            model: model.to_string(),
            purpose,
            form: None,
            class_sent: None,
            streamed,
            identifiers_replaced: 0,
            prompt_tokens: None,
            completion_tokens: None,
            total_tokens: None,
            latency_ms: 0,
            overhead_us: 0,
            upstream_attempts: 0,
            outcome: CallOutcome::Refused { code },
            guardrails: GuardrailHits::default(),
        }
    }
}

/// The gateway's counters, for the server's `/metrics`. Labels are fixed names, never values.
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    answered: AtomicU64,
    blocked: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    upstream_retries: AtomicU64,
    identifiers_replaced: AtomicU64,
    redacted_plain: AtomicU64,
    redacted_percent: AtomicU64,
    redacted_base64: AtomicU64,
    redacted_json: AtomicU64,
    redacted_late: AtomicU64,
    clinical_blocks: AtomicU64,
    unknown_placeholders: AtomicU64,
    audit_not_written: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct MetricsSnapshot {
    /// Calls whose answer was released.
    pub calls_answered: u64,
    /// Calls blocked by the clinical-advice check.
    pub calls_blocked: u64,
    /// Calls refused before anything was sent (fail closed).
    pub calls_refused: u64,
    /// Calls that failed after sending (vendor errors, output check failures).
    pub calls_failed: u64,
    /// Retries of vendor requests.
    pub upstream_retries: u64,
    /// Identifiers replaced by placeholders on the way out.
    pub identifiers_replaced: u64,
    /// Output identifiers redacted, written as text.
    pub guardrail_redacted_plain: u64,
    /// Output identifiers redacted, percent-encoded.
    pub guardrail_redacted_percent_encoded: u64,
    /// Output identifiers redacted, base64.
    pub guardrail_redacted_base64: u64,
    /// Output identifiers redacted, JSON-escaped.
    pub guardrail_redacted_json_escaped: u64,
    /// Output identifiers found after part of them was released.
    pub guardrail_redacted_late: u64,
    /// Answers blocked by the clinical-advice check.
    pub guardrail_clinical_advice: u64,
    /// Made-up placeholders in answers.
    pub guardrail_unknown_placeholders: u64,
    /// Answers withheld because the audit record could not be written.
    pub audit_not_written: u64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl GatewayMetrics {
    /// Counts one finished call from its record.
    pub(crate) fn count(&self, r: &CallRecord) {
        match &r.outcome {
            CallOutcome::Started => return,
            CallOutcome::Answered => add(&self.answered, 1),
            CallOutcome::Blocked { .. } => {
                add(&self.blocked, 1);
                add(&self.clinical_blocks, 1);
            }
            CallOutcome::Refused { .. } => add(&self.refused, 1),
            CallOutcome::Failed { .. } => add(&self.failed, 1),
        }
        add(
            &self.upstream_retries,
            u64::from(r.upstream_attempts.saturating_sub(1)),
        );
        add(
            &self.identifiers_replaced,
            u64::from(r.identifiers_replaced),
        );
        let h = &r.guardrails.identifiers;
        add(&self.redacted_plain, u64::from(h.plain));
        add(&self.redacted_percent, u64::from(h.percent_encoded));
        add(&self.redacted_base64, u64::from(h.base64));
        add(&self.redacted_json, u64::from(h.json_escaped));
        add(&self.redacted_late, u64::from(h.late));
        add(
            &self.unknown_placeholders,
            u64::from(r.guardrails.unknown_placeholders),
        );
    }

    pub(crate) fn audit_not_written(&self) {
        add(&self.audit_not_written, 1);
    }

    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            calls_answered: g(&self.answered),
            calls_blocked: g(&self.blocked),
            calls_refused: g(&self.refused),
            calls_failed: g(&self.failed),
            upstream_retries: g(&self.upstream_retries),
            identifiers_replaced: g(&self.identifiers_replaced),
            guardrail_redacted_plain: g(&self.redacted_plain),
            guardrail_redacted_percent_encoded: g(&self.redacted_percent),
            guardrail_redacted_base64: g(&self.redacted_base64),
            guardrail_redacted_json_escaped: g(&self.redacted_json),
            guardrail_redacted_late: g(&self.redacted_late),
            guardrail_clinical_advice: g(&self.clinical_blocks),
            guardrail_unknown_placeholders: g(&self.unknown_placeholders),
            audit_not_written: g(&self.audit_not_written),
        }
    }
}

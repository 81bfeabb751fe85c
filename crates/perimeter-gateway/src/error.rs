//! The gateway's errors: typed, without content, each with its OpenAI error body and HTTP
//! status.

use perimeter_phi::PhiError;

use crate::Refusal;
use crate::wire::ErrorBody;

/// What went wrong talking to the vendor. Never holds the vendor's message text (it may
/// quote the prompt): only the status and the vendor's machine-readable codes, when they are
/// plain identifiers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be opened.
    #[error("could not connect to the vendor")]
    Connect,
    /// No answer (or no next piece of a streamed answer) within the time allowed.
    #[error("the vendor did not answer in time")]
    Timeout,
    /// The connection failed while the answer was being read.
    #[error("the connection to the vendor failed while reading its answer")]
    Interrupted,
    /// The vendor answered with an error status.
    #[error("the vendor answered with HTTP {status}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The vendor's error type, when it is a plain identifier.
        kind: Option<String>,
        /// The vendor's error code, when it is a plain identifier.
        code: Option<String>,
        /// The request field the vendor named, when it is a plain path.
        param: Option<String>,
    },
    /// The answer is larger than allowed.
    #[error("the vendor's answer is larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// The answer is not in the chat-completions format.
    #[error("the vendor's answer is not a valid chat completion")]
    InvalidResponse,
    /// A streamed answer ended before it was complete.
    #[error("the vendor's stream ended before the answer was complete")]
    Truncated,
    /// The vendor sent an error event in the middle of a stream.
    #[error("the vendor reported an error in the middle of the stream")]
    StreamError {
        /// The vendor's error code, when it is a plain identifier.
        code: Option<String>,
    },
}

impl UpstreamError {
    /// Whether a retry may help (and nothing has been relayed yet).
    pub fn is_retryable(&self) -> bool {
        match self {
            UpstreamError::Connect | UpstreamError::Timeout | UpstreamError::Interrupted => true,
            UpstreamError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// A short stable code for records and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            UpstreamError::Connect => "upstream_connect",
            UpstreamError::Timeout => "upstream_timeout",
            UpstreamError::Interrupted => "upstream_interrupted",
            UpstreamError::Status { .. } => "upstream_status",
            UpstreamError::TooLarge { .. } => "upstream_too_large",
            UpstreamError::InvalidResponse => "upstream_invalid_response",
            UpstreamError::Truncated => "upstream_truncated",
            UpstreamError::StreamError { .. } => "upstream_stream_error",
        }
    }

    /// The HTTP status the caller gets.
    pub fn http_status(&self) -> u16 {
        match self {
            UpstreamError::Timeout => 504,
            UpstreamError::Status { status, .. } => match *status {
                // The vendor refusing the gateway's own credentials is not the caller's fault.
                401 | 403 => 502,
                429 => 429,
                s if (400..500).contains(&s) => s,
                _ => 502,
            },
            _ => 502,
        }
    }

    /// OpenAI's error body for the caller.
    pub fn to_error_body(&self) -> ErrorBody {
        match self {
            UpstreamError::Status {
                status,
                kind,
                code,
                param,
            } => {
                let mut message = format!("the AI vendor rejected the request (HTTP {status}");
                if let Some(c) = code {
                    message.push_str(", code ");
                    message.push_str(c);
                }
                message.push_str("); the vendor's own message is not passed on");
                let kind = match *status {
                    429 => "rate_limit_error",
                    401 | 403 => "upstream_error",
                    s if (400..500).contains(&s) => {
                        kind.as_deref().unwrap_or("invalid_request_error")
                    }
                    _ => "upstream_error",
                };
                ErrorBody::new(
                    message,
                    kind,
                    param.clone(),
                    Some(code.as_deref().unwrap_or(self.code())),
                )
            }
            other => ErrorBody::new(
                format!("{other}; no answer was made up in its place"),
                if matches!(other, UpstreamError::Timeout) {
                    "timeout_error"
                } else {
                    "upstream_error"
                },
                None,
                Some(other.code()),
            ),
        }
    }
}

/// Why a call failed. Carries field paths and sizes, never content.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatewayError {
    /// The policy refused the call.
    #[error("refused by policy: {0}")]
    Refused(Refusal),
    /// The request cannot be sent safely as written.
    #[error("{reason} (at {path})")]
    InvalidRequest {
        /// The field, as a path of known field names and indices.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The PHI engine failed on a field: nothing was sent.
    #[error("de-identification failed at {path}: {source}; nothing was sent")]
    Deidentification {
        /// The field.
        path: String,
        /// The engine's error (sizes only).
        source: PhiError,
    },
    /// The prepared request is larger than allowed.
    #[error("the request is {size} bytes, the maximum is {max} bytes")]
    RequestTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The permit was issued on another day (or for another vendor, or the vendor does not
    /// serve the model): decide again.
    #[error("the permit does not cover this call: {0}")]
    PermitMismatch(&'static str),
    /// The vendor failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The output check could not run: the answer is withheld.
    #[error("the output guardrails could not check the answer ({0}); it was withheld")]
    OutputCheck(&'static str),
    /// The caller reported that the audit record could not be written: the answer is withheld.
    #[error("the audit record of the call could not be written; the answer was withheld")]
    AuditNotWritten,
    /// The gateway could not be set up (TLS, client).
    #[error("the gateway is misconfigured: {0}")]
    Config(&'static str),
}

impl GatewayError {
    /// A short stable code for records and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::Refused(_) => "policy_refused",
            GatewayError::InvalidRequest { .. } => "invalid_request",
            GatewayError::Deidentification { source, .. } => match source {
                PhiError::MessageTooLarge { .. } => "message_too_large",
                _ => "deidentification_failed",
            },
            GatewayError::RequestTooLarge { .. } => "request_too_large",
            GatewayError::PermitMismatch(_) => "permit_mismatch",
            GatewayError::Upstream(u) => u.code(),
            GatewayError::OutputCheck(_) => "output_check_failed",
            GatewayError::AuditNotWritten => "audit_not_written",
            GatewayError::Config(_) => "gateway_misconfigured",
        }
    }

    /// The HTTP status the caller gets.
    pub fn http_status(&self) -> u16 {
        match self {
            GatewayError::Refused(_) => 403,
            GatewayError::InvalidRequest { .. } => 400,
            GatewayError::Deidentification { source, .. } => match source {
                PhiError::MessageTooLarge { .. } => 413,
                _ => 500,
            },
            GatewayError::RequestTooLarge { .. } => 413,
            GatewayError::PermitMismatch(_) => 409,
            GatewayError::Upstream(u) => u.http_status(),
            GatewayError::OutputCheck(_) | GatewayError::AuditNotWritten => 500,
            GatewayError::Config(_) => 500,
        }
    }

    /// OpenAI's error body for the caller.
    pub fn to_error_body(&self) -> ErrorBody {
        let kind = match self.http_status() {
            400 | 413 => "invalid_request_error",
            403 => "permission_error",
            _ => "server_error",
        };
        match self {
            GatewayError::Upstream(u) => u.to_error_body(),
            GatewayError::InvalidRequest { path, .. }
            | GatewayError::Deidentification { path, .. } => ErrorBody::new(
                self.to_string(),
                kind,
                Some(path.clone()),
                Some(self.code()),
            ),
            _ => ErrorBody::new(self.to_string(), kind, None, Some(self.code())),
        }
    }
}

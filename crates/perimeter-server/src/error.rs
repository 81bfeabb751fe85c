//! The API's error body: `{ "error": { "code", "message" } }`. Codes are stable snake_case
//! identifiers; messages are fixed texts that never echo request content, so they carry no PHI.

use std::borrow::Cow;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to an HTTP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// An error with the given status, code and message. The message must not contain PHI or
    /// secrets.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 404: no such route or record.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    /// 503: the service cannot answer yet (database unreachable, keys not loaded, ...).
    pub fn not_ready() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the service is not ready; see /readyz",
        )
    }

    /// 500: something failed inside; details are in the server log under the request id.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has details under this request's x-request-id",
        )
    }

    /// The generic error for a status produced outside a handler (routing, extractors,
    /// limits). Extractor messages can quote the request body, so they are replaced.
    pub fn for_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::NOT_FOUND => ("not_found", "no such resource"),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                "this method is not allowed on this resource",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "payload_too_large",
                "the request body exceeds the configured http.max_body_bytes",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "expected a request body of type application/json",
            ),
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => (
                "timeout",
                "the request took longer than the configured http.request_timeout_ms",
            ),
            StatusCode::SERVICE_UNAVAILABLE => {
                ("not_ready", "the service is not ready; see /readyz")
            }
            StatusCode::UNAUTHORIZED => ("unauthenticated", "authentication is required"),
            StatusCode::FORBIDDEN => ("forbidden", "access denied"),
            s if s.is_client_error() => (
                "invalid_request",
                "the request is not valid for this endpoint",
            ),
            _ => (
                "internal",
                "internal error; the server log has details under this request's x-request-id",
            ),
        };
        Self::new(status, code, message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable error code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_gets_a_code() {
        for s in [
            400u16, 401, 403, 404, 405, 408, 413, 415, 422, 500, 503, 504,
        ] {
            let status = StatusCode::from_u16(s).unwrap();
            let e = ApiError::for_status(status);
            assert_eq!(e.status(), status);
            assert!(!e.code().is_empty());
        }
    }
}

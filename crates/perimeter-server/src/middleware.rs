//! The per-request wrapper: request id, tracing span, timeout, JSON error bodies, metrics.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use perimeter_domain::RequestId;
use tracing::Instrument;

use crate::error::ApiError;
use crate::metrics::{method_label, route_label};
use crate::state::AppState;

/// The response header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Most bytes of a body declared too large that are read and thrown away before the 413 is
/// sent (a "lingering close", as web servers do). A client sends its whole body before it
/// reads the answer; if the server answered and closed with the body unread, the kernel would
/// reset the connection and the client would see a broken pipe instead of the 413. Beyond this
/// the server answers at once and the connection closes.
pub(crate) const DRAIN_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// Longest time spent draining such a body.
const DRAIN_MAX_TIME: Duration = Duration::from_secs(2);

/// Wraps every request. Logs method, route template, status and latency under a fresh
/// request id; never the query string, headers or body.
pub(crate) async fn observe(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = RequestId::new();
    let method = method_label(req.method());
    let route = route_label(
        req.extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method,
        route = %route,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    req.extensions_mut().insert(request_id);
    let limits = state.limits();

    let declared_len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = declared_len
        .is_some_and(|len| usize::try_from(len).map_or(true, |len| len > limits.max_body_bytes));

    let response = if too_large {
        if declared_len.is_some_and(|len| len <= DRAIN_MAX_BYTES) {
            drain(req).await;
        }
        ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE).into_response()
    } else {
        match tokio::time::timeout(
            limits.request_timeout,
            next.run(req).instrument(span.clone()),
        )
        .await
        {
            Ok(response) => response,
            Err(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request took longer than the configured http.request_timeout_ms",
            )
            .into_response(),
        }
    };
    let mut response = json_errors(response);
    if let Ok(value) = HeaderValue::from_str(&request_id.to_string()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    span.record("status", status);
    span.record("latency_ms", elapsed.as_secs_f64() * 1000.0);
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!("request failed");
        } else {
            tracing::info!("request completed");
        }
    });
    state
        .metrics()
        .observe_request(method, &route, status, elapsed);
    response
}

/// Reads the request body to its end (at most [`DRAIN_MAX_BYTES`], for at most
/// [`DRAIN_MAX_TIME`]) and throws it away, so that the connection is intact when the answer
/// goes out and can even serve the next request.
async fn drain(req: Request) {
    use futures_core::Stream;
    let mut body = req.into_body().into_data_stream();
    let read = async {
        let mut seen = 0u64;
        while let Some(Ok(chunk)) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_next(cx)).await
        {
            seen = seen.saturating_add(chunk.len() as u64);
            if seen > DRAIN_MAX_BYTES {
                break;
            }
        }
    };
    // A client that stops sending does not hold the answer back for long.
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, read).await;
}

/// Replaces any non-JSON error body (from routing, extractors or limits) with the API's JSON
/// error. Extractor rejections can quote the request body, which may hold PHI.
fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let replacement = ApiError::for_status(status).into_response();
    let (new_parts, body) = replacement.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(ct) = new_parts.headers.get(header::CONTENT_TYPE) {
        parts.headers.insert(header::CONTENT_TYPE, ct.clone());
    }
    Response::from_parts(parts, body)
}

//! The per-request wrapper: request id, tracing span, timeout, JSON error bodies, metrics.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
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

/// Most bytes of a request body left unread that are read and thrown away before the answer
/// is sent (a "lingering close", as web servers do): a body declared too large, before its
/// 413; a chunked body cut off at the limit by the extractor, before its 413; a body the
/// handler never read (a 401, 404 or 405 answered from the head alone). A client sends its
/// whole body before it reads the answer; if the server answered and closed with the body
/// unread, the kernel would reset the connection and the client would see a broken pipe
/// instead of the answer. Beyond this the server answers at once and the connection closes.
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

    let drainable = declared_len.is_none_or(|len| len <= DRAIN_MAX_BYTES);
    let response = if too_large {
        if drainable {
            drain(req.into_body()).await;
        }
        ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE).into_response()
    } else {
        // What the handler leaves of the body (none if it read it all) comes back here.
        let unread = Arc::new(Mutex::new(None));
        let req = req.map(|body| {
            Body::new(Reclaim {
                inner: Some(body),
                unread: Arc::clone(&unread),
            })
        });
        let response = match tokio::time::timeout(
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
        };
        let rest = unread.lock().ok().and_then(|mut slot| slot.take());
        if let Some(rest) = rest
            && drainable
        {
            drain(rest).await;
        }
        response
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

/// The request body as the handler sees it. Dropped before its end (an extractor stopping at
/// the size limit, a handler that never read it, a request that timed out), it puts the rest
/// of the body in `unread` for the middleware to read away.
struct Reclaim {
    inner: Option<Body>,
    unread: Arc<Mutex<Option<Body>>>,
}

impl HttpBody for Reclaim {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        match self.inner.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| http_body::SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Reclaim {
    fn drop(&mut self) {
        if let Some(body) = self.inner.take().filter(|b| !b.is_end_stream())
            && let Ok(mut slot) = self.unread.lock()
        {
            *slot = Some(body);
        }
    }
}

/// Reads a request body to its end (at most [`DRAIN_MAX_BYTES`], for at most
/// [`DRAIN_MAX_TIME`]) and throws it away, so that the connection is intact when the answer
/// goes out and can even serve the next request.
async fn drain(body: Body) {
    use futures_core::Stream;
    let mut body = body.into_data_stream();
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

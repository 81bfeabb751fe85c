//! `/healthz`, `/readyz` and `/metrics`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;
use crate::readiness::{ReadyCheck, ReadyReport};
use crate::state::AppState;

/// How long `/readyz` waits for the checks before declaring them failed.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

/// The process is up and serving HTTP.
pub(crate) async fn healthz() -> Json<impl Serialize> {
    Json(Health { status: "ok" })
}

#[derive(Serialize)]
struct Ready<'a> {
    status: &'static str,
    failed: Vec<&'static str>,
    checks: &'a [ReadyCheck],
}

/// 200 when every check passes, else 503 naming the failed checks.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let report = match tokio::time::timeout(READY_TIMEOUT, state.readiness().check()).await {
        Ok(report) => report,
        Err(_) => ReadyReport {
            checks: vec![ReadyCheck::fail("database", "check timed out")],
        },
    };
    let ready = report.is_ready();
    state.metrics().set_ready(ready);
    let body = Ready {
        status: if ready { "ready" } else { "not_ready" },
        failed: report.failed(),
        checks: &report.checks,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus/OpenMetrics text.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics().set_pool(state.readiness().pool_stats());
    match state.metrics().encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => {
            tracing::error!("encoding metrics failed");
            ApiError::internal().into_response()
        }
    }
}

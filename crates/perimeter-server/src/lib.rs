//! Perimeter's HTTP server.
//!
//! [`AppState`] holds what handlers share; [`Routes`] is the only way to add a handler and
//! requires an [`Access`] declaration for each route (deny by default), keeping a
//! machine-readable table of `(method, path template, access)`. [`App::new`] adds the
//! standard public endpoints (`/healthz`, `/readyz`, `/metrics`), the per-request middleware
//! (request id, tracing span, timeout, body limit, JSON errors, metrics) and a JSON 404
//! fallback. [`bind`] and [`Bound::run`] serve it over plain HTTP or rustls with graceful
//! shutdown.

mod access;
pub mod auth;
mod error;
mod health;
mod metrics;
mod middleware;
mod readiness;
mod serve;
mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;

pub use access::{Access, RouteError, RouteSpec, Routes};
pub use auth::{AuthSettings, AuthState, Principal};
pub use error::ApiError;
pub use metrics::Metrics;
pub use middleware::REQUEST_ID_HEADER;
pub use readiness::{BoxFuture, PoolStats, Readiness, ReadyCheck, ReadyReport};
pub use serve::{Bound, ServeError, ServerSettings, TlsFiles, bind, load_tls, shutdown_signal};
pub use state::{AppState, HttpLimits};

/// The standard public endpoints every Perimeter server has.
pub fn standard_routes() -> Result<Routes, RouteError> {
    Routes::new()
        .add(Method::GET, "/healthz", Access::Public, health::healthz)?
        .add(Method::GET, "/readyz", Access::Public, health::readyz)?
        .add(Method::GET, "/metrics", Access::Public, health::metrics)
}

/// A complete application: router with middleware, plus its route table.
pub struct App {
    router: Router,
    routes: Vec<RouteSpec>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("routes", &self.routes).finish()
    }
}

impl App {
    /// Builds the application from declared routes (start from [`standard_routes`]).
    pub fn new(state: AppState, routes: Routes) -> Self {
        let limits = state.limits();
        let (router, table) = routes.into_parts();
        let router = router
            .fallback(|| async { ApiError::not_found() })
            .layer(DefaultBodyLimit::max(limits.max_body_bytes))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                middleware::observe,
            ))
            .with_state(state);
        Self {
            router,
            routes: table,
        }
    }

    /// Every declared route.
    pub fn routes(&self) -> &[RouteSpec] {
        &self.routes
    }

    /// The axum router (for serving or in-process tests).
    pub fn into_router(self) -> Router {
        self.router
    }
}

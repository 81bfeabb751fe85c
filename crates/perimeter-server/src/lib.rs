//! Perimeter's HTTP server.
//!
//! [`AppState`] holds what handlers share; [`Routes`] is the only way to add a handler and
//! requires an [`Access`] declaration for each route (deny by default), keeping a
//! machine-readable table of `(method, path template, access)`. [`build_app`] assembles THE
//! application `perimeter serve` runs: the standard public endpoints (`/healthz`, `/readyz`,
//! `/metrics`), every product route module, optional extra modules, the per-request middleware
//! (request id, tracing span, timeout, body limit, JSON errors, metrics), authentication
//! (sessions, API tokens, the guard, security headers) and a JSON 404 fallback. [`bind`] and
//! [`Bound::run`] serve it over plain HTTP or rustls with graceful shutdown.

/// In a handler returning `Response`: the `Ok` value, or return the error as the response.
macro_rules! try_resp {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r.into_response(),
        }
    };
}

/// In a handler returning `Response`: awaits a store call; its error becomes the API error.
macro_rules! store {
    ($e:expr) => {
        match $e.await {
            Ok(v) => v,
            Err(e) => return $crate::auth::store_error(e).into_response(),
        }
    };
}

mod access;
pub mod audit_api;
pub mod auth;
pub mod billing_api;
pub mod channels;
mod client_addr;
pub mod console;
mod error;
pub mod gateway_api;
mod health;
mod metrics;
mod middleware;
pub mod openapi;
pub mod patients_api;
mod readiness;
mod serve;
mod state;
pub mod vendors_api;
pub mod work_api;
pub mod work_tasks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use perimeter_domain::SharedClock;

pub use access::{Access, RouteError, RouteSpec, Routes};
pub use auth::{AuthSettings, AuthSlot, AuthState, HashLimits, Principal, SessionPolicy};
pub use client_addr::{TrustedProxies, TrustedProxiesError};
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

/// A static asset compiled into the binary (the console's and the web chat's page, script and
/// styles). With `csp`, the response carries that Content-Security-Policy and the security
/// headers middleware keeps it; without, the middleware sets the policy.
pub(crate) fn static_asset(
    content_type: &'static str,
    csp: Option<&'static str>,
    body: &'static str,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse;
    let mut response = (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response();
    if let Some(csp) = csp {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(csp),
        );
    }
    response
}

/// A route module: adds its routes (each with its declared access) to the table.
pub type RouteModule = Box<dyn FnOnce(Routes) -> Result<Routes, RouteError> + Send>;

/// The product's route modules, in declaration order. To add a module, add one line here
/// (`|r| my_module::routes(r),`); `perimeter serve` and the route × role test both get it.
fn product_routes() -> Vec<RouteModule> {
    vec![
        Box::new(auth::routes),
        Box::new(patients_api::routes),
        Box::new(billing_api::routes),
        Box::new(audit_api::routes),
        Box::new(work_api::routes),
        Box::new(gateway_api::routes),
        Box::new(openapi::routes),
        Box::new(channels::routes),
        Box::new(vendors_api::routes),
        Box::new(console::routes),
    ]
}

/// What [`build_app`] assembles.
pub struct AppParts {
    /// The source of `/readyz`.
    pub readiness: Arc<dyn Readiness>,
    /// The injected clock.
    pub clock: SharedClock,
    /// The metrics registry.
    pub metrics: Metrics,
    /// Request limits.
    pub limits: HttpLimits,
    /// Authentication (ready, or waiting for the database).
    pub auth: AuthSlot,
    /// The audit API's checkpoint file and FHIR naming.
    pub audit: audit_api::AuditApiSettings,
    /// Optional route modules added after the product's (diagnostics, tests, modules enabled
    /// by configuration).
    pub extra_routes: Vec<RouteModule>,
}

impl std::fmt::Debug for AppParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppParts")
            .field("limits", &self.limits)
            .field("auth", &self.auth)
            .field("extra_routes", &self.extra_routes.len())
            .finish_non_exhaustive()
    }
}

/// Assembles the application `perimeter serve` runs: the standard endpoints, every product
/// route module, the extra modules, the middleware and authentication. Fails only when a
/// route is declared twice or malformed (a programming error, caught by the tests).
pub fn build_app(parts: AppParts) -> Result<App, RouteError> {
    let mut routes = standard_routes()?;
    for module in product_routes().into_iter().chain(parts.extra_routes) {
        routes = module(routes)?;
    }
    let state = AppState::new(parts.readiness, parts.clock, parts.metrics, parts.limits);
    Ok(App::new(state, routes)
        .with_audit_api(parts.audit)
        .with_auth_slot(parts.auth))
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
        let doc = openapi::OpenApiDocument(Arc::new(openapi::document(&table)));
        let router = router
            .fallback(|| async { ApiError::not_found() })
            .layer(axum::Extension(doc))
            .layer(DefaultBodyLimit::max(limits.max_body_bytes))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                middleware::observe,
            ))
            .layer(axum::middleware::from_fn(gateway_api::openai_errors))
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

//! Shared application state handed to every handler.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use perimeter_domain::SharedClock;

use crate::metrics::Metrics;
use crate::readiness::Readiness;

/// Limits applied to every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest accepted request body (`http.max_body_bytes`).
    pub max_body_bytes: usize,
    /// Longest a request may run before it is answered with 503 `timeout`
    /// (`http.request_timeout_ms`).
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Everything handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    readiness: Arc<dyn Readiness>,
    clock: SharedClock,
    metrics: Metrics,
    limits: HttpLimits,
    /// The AI gateway, started on first use (`gateway_api.rs`).
    gateway: OnceLock<Arc<crate::gateway_api::GatewayApi>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State built from its parts.
    pub fn new(
        readiness: Arc<dyn Readiness>,
        clock: SharedClock,
        metrics: Metrics,
        limits: HttpLimits,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                readiness,
                clock,
                metrics,
                limits,
                gateway: OnceLock::new(),
            }),
        }
    }

    /// The readiness source.
    pub fn readiness(&self) -> &dyn Readiness {
        self.inner.readiness.as_ref()
    }

    /// The injected clock.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The AI gateway (engine, vendor clients, counters), started on first use; `None` when
    /// the PHI engine cannot start (every gateway route then answers 503 and sends nothing).
    pub fn gateway_api(&self) -> Option<Arc<crate::gateway_api::GatewayApi>> {
        if let Some(g) = self.inner.gateway.get() {
            return Some(Arc::clone(g));
        }
        let api = match crate::gateway_api::GatewayApi::new(
            self.inner.clock.clone(),
            perimeter_gateway::HttpSettings::default(),
        ) {
            Ok(a) => Arc::new(a),
            Err(e) => {
                tracing::error!(error = %e, "the AI gateway could not start");
                return None;
            }
        };
        let api = Arc::clone(self.inner.gateway.get_or_init(|| api));
        self.inner.metrics.attach_gateway(Arc::clone(&api));
        Some(api)
    }

    /// The request limits.
    pub fn limits(&self) -> HttpLimits {
        self.inner.limits
    }
}

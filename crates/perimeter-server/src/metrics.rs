//! Prometheus metrics. Label values are bounded and never carry PHI: the HTTP method (unknown
//! methods become `OTHER`), the route *template* (`/patients/{id}`, never a concrete path;
//! unmatched requests are `unmatched`) and the status code.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::readiness::PoolStats;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    method: &'static str,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    event: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

type LatencyFamily = Family<LatencyLabels, Histogram, fn() -> Histogram>;

/// The application's metrics registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    pool_connections: Family<PoolLabels, Gauge>,
    pool_max: Gauge,
    ready: Gauge,
    gateway: Arc<OnceLock<Arc<crate::gateway_api::GatewayApi>>>,
    channel_events: Family<ChannelLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// A route label: the template, or `unmatched`.
pub(crate) fn route_label(template: Option<&str>) -> String {
    template.unwrap_or("unmatched").to_owned()
}

/// A method label from a closed set, so clients cannot mint label values.
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

impl Metrics {
    /// A fresh registry with Perimeter's metrics registered under the `perimeter` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("perimeter");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency in seconds, by method and route template",
            latency.clone(),
        );
        let pool_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database pool connections by state (idle, in_use)",
            pool_connections.clone(),
        );
        let pool_max = Gauge::default();
        registry.register(
            "db_pool_max_connections",
            "Configured maximum of database pool connections",
            pool_max.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when the last readiness evaluation passed, else 0",
            ready.clone(),
        );
        let gateway = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(GatewayCollector(Arc::clone(&gateway))));
        let channel_events = Family::<ChannelLabels, Counter>::default();
        registry.register(
            "channel_events",
            "Patient channel events (inbound stored, duplicates, bad signatures, intake fallbacks, emergencies, SMS sent/retried/failed), by a fixed event name",
            channel_events.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                gateway,
                registry,
                channel_events,
                requests,
                latency,
                pool_connections,
                pool_max,
                ready,
            }),
        }
    }

    /// Records one answered request.
    pub(crate) fn observe_request(
        &self,
        method: &'static str,
        route: &str,
        status: u16,
        elapsed: Duration,
    ) {
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                method,
                route: route.to_owned(),
                status,
            })
            .inc();
        self.inner
            .latency
            .get_or_create(&LatencyLabels {
                method,
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one patient-channel event (`event` is a fixed name, never data).
    pub fn channel_event(&self, event: &'static str) {
        self.inner
            .channel_events
            .get_or_create(&ChannelLabels { event })
            .inc();
    }

    /// Updates the pool gauges.
    pub(crate) fn set_pool(&self, stats: Option<PoolStats>) {
        let stats = stats.unwrap_or_default();
        let in_use = stats.size.saturating_sub(stats.idle);
        self.inner
            .pool_connections
            .get_or_create(&PoolLabels { state: "idle" })
            .set(i64::from(stats.idle));
        self.inner
            .pool_connections
            .get_or_create(&PoolLabels { state: "in_use" })
            .set(i64::from(in_use));
        self.inner.pool_max.set(i64::from(stats.max));
    }

    /// Shows the gateway's counters (the first gateway attached stays).
    pub(crate) fn attach_gateway(&self, api: Arc<crate::gateway_api::GatewayApi>) {
        let _ = self.inner.gateway.set(api);
    }

    /// Records the outcome of a readiness evaluation.
    pub(crate) fn set_ready(&self, ready: bool) {
        self.inner.ready.set(i64::from(ready));
    }

    /// The metrics in the Prometheus/OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)?;
        Ok(out)
    }
}

/// A counter family: name, help, label name, and each label value with its count.
type CounterFamily<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, u64)>);

/// The AI gateway's counters, read on each scrape. Label values are fixed names.
#[derive(Debug)]
struct GatewayCollector(Arc<OnceLock<Arc<crate::gateway_api::GatewayApi>>>);

impl prometheus_client::collector::Collector for GatewayCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        let c = self.0.get().map(|g| g.counters()).unwrap_or_default();
        let g = c.gateway;
        let families: [CounterFamily<'_>; 3] = [
            (
                "gateway_calls",
                "AI gateway calls by outcome (refused: nothing was sent)",
                "outcome",
                vec![
                    ("answered", g.calls_answered),
                    ("blocked", g.calls_blocked),
                    ("refused", g.calls_refused.saturating_add(c.refused_early)),
                    ("failed", g.calls_failed),
                    ("audit_not_written", g.audit_not_written),
                ],
            ),
            (
                "gateway_guardrail_hits",
                "Output guardrail hits by kind",
                "kind",
                vec![
                    ("identifier_plain", g.guardrail_redacted_plain),
                    (
                        "identifier_percent_encoded",
                        g.guardrail_redacted_percent_encoded,
                    ),
                    ("identifier_base64", g.guardrail_redacted_base64),
                    ("identifier_json_escaped", g.guardrail_redacted_json_escaped),
                    ("identifier_late", g.guardrail_redacted_late),
                    ("clinical_advice", g.guardrail_clinical_advice),
                    ("unknown_placeholder", g.guardrail_unknown_placeholders),
                ],
            ),
            (
                "gateway_events",
                "Other AI gateway counts",
                "event",
                vec![
                    ("upstream_retry", g.upstream_retries),
                    ("identifier_replaced", g.identifiers_replaced),
                    ("deid_api_call", c.deid_calls),
                ],
            ),
        ];
        for (name, help, label, values) in families {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (value, n) in values {
                let labels = [(label, value)];
                let metric = family.encode_family(&labels)?;
                ConstCounter::new(n).encode(metric)?;
            }
        }
        Ok(())
    }
}

//! Prometheus metrics of a node, served by the admin listener at `/metrics` (docs/operations/metrics.md
//! lists them). One registry per process ([`metrics`]); counters are resolved per label set where they
//! are used, so the hot path does an atomic add. Labels are low-cardinality: hub names, transports,
//! protocols, declared method names, close reasons, outcomes.

use std::sync::LazyLock;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    /// Open hub connections (after the handshake).
    pub connections: IntGaugeVec,
    /// Hub connections that completed their handshake.
    pub connects: IntCounterVec,
    /// Hub connections that ended, by close reason.
    pub disconnects: IntCounterVec,
    /// Handshakes refused or abandoned.
    pub handshake_failures: IntCounterVec,
    /// Hub messages received, by type.
    pub messages_in: IntCounterVec,
    /// Hub messages queued to connections (each recipient of a fan-out counts).
    pub messages_out: IntCounterVec,
    /// Invocations by hub, declared method (others: `(undeclared)`) and outcome.
    pub invocations: IntCounterVec,
    /// How long invocations ran.
    pub invocation_seconds: HistogramVec,
    /// How long delivering one send to this node's recipients took.
    pub fanout_seconds: Histogram,
    /// Connections closed because their outbound queue was full.
    pub slow_consumer_closes: IntCounter,
    /// Invocations refused by a rate limit.
    pub rate_limited: IntCounterVec,
    /// HTTP requests refused, by reason (`unauthorized`, `unknown_connection`, …).
    pub http_refusals: IntCounterVec,
    /// Credentials refused on hub requests: `invalid_token` (presented, not valid: bad signature,
    /// expired, wrong issuer or audience) and `missing_credentials` (a hub that requires them).
    pub auth_failures: IntCounterVec,
    /// Control-API requests by status code.
    pub control_requests: IntCounterVec,
    /// Upstream requests by category and outcome.
    pub upstream_requests: IntCounterVec,
    /// Transport connections (negotiated, not yet closed).
    pub transport_connections: IntGauge,
    /// Hub-protocol bytes received from clients.
    pub bytes_in: IntCounter,
    /// Hub-protocol bytes handed to the transports for clients (framing of the transport aside).
    pub bytes_out: IntCounter,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    let _ = registry.register(Box::new(counter.clone()));
    counter
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let connections = IntGaugeVec::new(
            Opts::new("hubcast_hub_connections", "Open hub connections"),
            &["hub", "transport", "protocol"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let _ = r.register(Box::new(connections.clone()));
        let invocation_seconds = HistogramVec::new(
            HistogramOpts::new(
                "hubcast_hub_invocation_duration_seconds",
                "How long hub method invocations ran",
            )
            .buckets(vec![
                0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0,
            ]),
            &["hub"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let _ = r.register(Box::new(invocation_seconds.clone()));
        let fanout_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "hubcast_hub_fanout_duration_seconds",
                "How long delivering one send to this node's recipients took",
            )
            .buckets(vec![0.00001, 0.0001, 0.001, 0.01, 0.1, 1.0]),
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let _ = r.register(Box::new(fanout_seconds.clone()));
        let transport_connections = IntGauge::new(
            "hubcast_transport_connections",
            "Transport connections (negotiated, not yet closed)",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let _ = r.register(Box::new(transport_connections.clone()));
        let bytes_in = IntCounter::new(
            "hubcast_transport_received_bytes_total",
            "Hub-protocol bytes received from clients",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let _ = r.register(Box::new(bytes_in.clone()));
        let bytes_out = IntCounter::new(
            "hubcast_transport_sent_bytes_total",
            "Hub-protocol bytes handed to the transports for clients",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let _ = r.register(Box::new(bytes_out.clone()));
        let slow_consumer_closes = IntCounter::new(
            "hubcast_hub_slow_consumer_closes_total",
            "Connections closed because their outbound queue was full",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let _ = r.register(Box::new(slow_consumer_closes.clone()));
        let _ = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        Self {
            connects: counter(
                r,
                "hubcast_hub_connects_total",
                "Hub connections that completed their handshake",
                &["hub", "transport"],
            ),
            disconnects: counter(
                r,
                "hubcast_hub_disconnects_total",
                "Hub connections that ended, by close reason",
                &["hub", "reason"],
            ),
            handshake_failures: counter(
                r,
                "hubcast_hub_handshake_failures_total",
                "Handshakes refused or abandoned",
                &["hub"],
            ),
            messages_in: counter(
                r,
                "hubcast_hub_messages_in_total",
                "Hub messages received, by type",
                &["hub", "type"],
            ),
            messages_out: counter(
                r,
                "hubcast_hub_messages_out_total",
                "Hub messages queued to connections",
                &["hub"],
            ),
            invocations: counter(
                r,
                "hubcast_hub_invocations_total",
                "Invocations by method and outcome",
                &["hub", "method", "outcome"],
            ),
            rate_limited: counter(
                r,
                "hubcast_hub_rate_limited_total",
                "Invocations refused by a rate limit",
                &["hub"],
            ),
            http_refusals: counter(
                r,
                "hubcast_http_refusals_total",
                "HTTP requests refused, by reason",
                &["reason"],
            ),
            auth_failures: counter(
                r,
                "hubcast_auth_failures_total",
                "Credentials refused on hub requests, by reason",
                &["reason"],
            ),
            control_requests: counter(
                r,
                "hubcast_control_requests_total",
                "Control-API requests by status",
                &["status"],
            ),
            upstream_requests: counter(
                r,
                "hubcast_upstream_requests_total",
                "Upstream requests by category and outcome",
                &["hub", "category", "outcome"],
            ),
            connections,
            slow_consumer_closes,
            invocation_seconds,
            fanout_seconds,
            transport_connections,
            bytes_in,
            bytes_out,
            registry,
        }
    }

    /// Adds a collector (the backplane's, say) to the registry.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        if let Err(error) = self.registry.register(collector) {
            tracing::warn!(%error, "a metrics collector could not be registered");
        }
    }

    /// Creates the series of `hub` that would otherwise appear only after their first event, so
    /// dashboards and alerts see them at 0.
    pub fn hub_started(&self, hub: &str) {
        self.handshake_failures.with_label_values(&[hub]);
        self.messages_out.with_label_values(&[hub]);
        self.rate_limited.with_label_values(&[hub]);
        for reason in ["invalid_token", "missing_credentials"] {
            self.auth_failures.with_label_values(&[reason]);
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(error) = encoder.encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(%error, "metrics could not be encoded");
        }
        out
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

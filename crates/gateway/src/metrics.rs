//! Prometheus metrics of a node, served by the admin listener at `/metrics` (docs/operations/metrics.md
//! lists them). One registry per process ([`metrics`]); a hub's per-message series are resolved once
//! when it starts ([`HubMetrics`]), so the hot path does an atomic add. Labels are low-cardinality: hub names, transports,
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
    /// TCP connections closed at accept, by the cap they were over (`max_connections`,
    /// `max_connections_per_ip`).
    pub refused_tcp_connections: IntCounterVec,
    /// Failed accepts (out of file descriptors, say).
    pub accept_errors: IntCounter,
    /// Upstream requests by category and outcome.
    pub upstream_requests: IntCounterVec,
    /// Transport connections (negotiated, not yet closed).
    pub transport_connections: IntGauge,
    /// Hub-protocol bytes received from clients.
    pub bytes_in: IntCounter,
    /// Hub-protocol bytes handed to the transports for clients (framing of the transport aside).
    pub bytes_out: IntCounter,
}

/// Registers a metric whose definition is static (so it cannot fail at run time) and returns it.
fn registered<T>(registry: &Registry, metric: prometheus::Result<T>) -> T
where
    T: prometheus::core::Collector + Clone + 'static,
{
    let metric = metric.unwrap_or_else(|e| unreachable!("a static metric definition: {e}"));
    let _ = registry.register(Box::new(metric.clone()));
    metric
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let _ = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        let invocation_buckets = vec![0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];
        let fanout_buckets = vec![0.00001, 0.0001, 0.001, 0.01, 0.1, 1.0];
        Self {
            connections: registered(
                r,
                IntGaugeVec::new(
                    Opts::new("hubcast_hub_connections", "Open hub connections"),
                    &["hub", "transport", "protocol"],
                ),
            ),
            invocation_seconds: registered(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "hubcast_hub_invocation_duration_seconds",
                        "How long hub method invocations ran",
                    )
                    .buckets(invocation_buckets),
                    &["hub"],
                ),
            ),
            fanout_seconds: registered(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "hubcast_hub_fanout_duration_seconds",
                        "How long delivering one send to this node's recipients took",
                    )
                    .buckets(fanout_buckets),
                ),
            ),
            transport_connections: registered(
                r,
                IntGauge::new(
                    "hubcast_transport_connections",
                    "Transport connections (negotiated, not yet closed)",
                ),
            ),
            bytes_in: registered(
                r,
                IntCounter::new(
                    "hubcast_transport_received_bytes_total",
                    "Hub-protocol bytes received from clients",
                ),
            ),
            bytes_out: registered(
                r,
                IntCounter::new(
                    "hubcast_transport_sent_bytes_total",
                    "Hub-protocol bytes handed to the transports for clients",
                ),
            ),
            slow_consumer_closes: registered(
                r,
                IntCounter::new(
                    "hubcast_hub_slow_consumer_closes_total",
                    "Connections closed because their outbound queue was full",
                ),
            ),
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
            refused_tcp_connections: counter(
                r,
                "hubcast_http_refused_connections_total",
                "TCP connections closed at accept, by the cap they were over",
                &["reason"],
            ),
            accept_errors: registered(
                r,
                IntCounter::new(
                    "hubcast_http_accept_errors_total",
                    "Failed accepts (out of file descriptors, say)",
                ),
            ),
            upstream_requests: counter(
                r,
                "hubcast_upstream_requests_total",
                "Upstream requests by category and outcome",
                &["hub", "category", "outcome"],
            ),
            registry,
        }
    }

    /// Adds a collector (the backplane's, say) to the registry.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        if let Err(error) = self.registry.register(collector) {
            tracing::warn!(%error, "a metrics collector could not be registered");
        }
    }

    /// The series of `hub` resolved once, for its hot paths. Creating them also makes the series that
    /// only count failures appear at 0, so dashboards and alerts see them before the first event.
    pub(crate) fn hub(&self, hub: &str) -> HubMetrics {
        for reason in ["invalid_token", "missing_credentials"] {
            self.auth_failures.with_label_values(&[reason]);
        }
        HubMetrics {
            messages_in: MESSAGE_TYPES.map(|kind| self.messages_in.with_label_values(&[hub, kind])),
            messages_out: self.messages_out.with_label_values(&[hub]),
            handshake_failures: self.handshake_failures.with_label_values(&[hub]),
            rate_limited: self.rate_limited.with_label_values(&[hub]),
            invocation_seconds: self.invocation_seconds.with_label_values(&[hub]),
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

/// The `type` label of `hubcast_hub_messages_in_total`, indexed by [`message_type`].
const MESSAGE_TYPES: [&str; 9] = [
    "invocation",
    "stream_invocation",
    "stream_item",
    "completion",
    "cancel_invocation",
    "ping",
    "close",
    "ack",
    "sequence",
];

/// The index of a received message's type in [`MESSAGE_TYPES`].
pub(crate) fn message_type<A, V>(message: &hubcast_protocol::HubMessage<A, V>) -> usize {
    use hubcast_protocol::HubMessage as M;
    match message {
        M::Invocation(_) => 0,
        M::StreamInvocation(_) => 1,
        M::StreamItem(_) => 2,
        M::Completion(_) => 3,
        M::CancelInvocation(_) => 4,
        M::Ping => 5,
        M::Close(_) => 6,
        M::Ack(_) => 7,
        M::Sequence(_) => 8,
    }
}

/// One hub's series, resolved when the hub starts (an atomic add on the hot path, no label lookup).
#[derive(Clone)]
pub(crate) struct HubMetrics {
    /// By [`message_type`].
    pub(crate) messages_in: [IntCounter; 9],
    pub(crate) messages_out: IntCounter,
    pub(crate) handshake_failures: IntCounter,
    pub(crate) rate_limited: IntCounter,
    pub(crate) invocation_seconds: Histogram,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

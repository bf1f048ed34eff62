//! The series a gateway produces (docs/operations/metrics.md lists them). Each gateway owns its set
//! ([`GatewayMetrics`]) and the binary registers it in the process's one registry, which the admin
//! listener serves at `/metrics`; two gateways in one process (tests) count apart. A hub's series are
//! resolved once when it starts ([`HubMetrics`]), so the hot path does an atomic add. Labels are
//! low-cardinality: hub names, transports, protocols, declared method names, close reasons, outcomes.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// A gateway's series.
pub struct GatewayMetrics {
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
    /// Connections a drain has yet to close (0 outside a drain).
    pub drain_remaining: IntGauge,
    /// Transport connections (negotiated, not yet closed).
    pub transport_connections: IntGauge,
    /// Hub-protocol bytes received from clients.
    pub bytes_in: IntCounter,
    /// Hub-protocol bytes handed to the transports for clients (framing of the transport aside).
    pub bytes_out: IntCounter,
}

/// A metric whose definition is static, so it cannot fail at run time.
fn registered<T>(metric: prometheus::Result<T>) -> T {
    metric.unwrap_or_else(|e| unreachable!("a static metric definition: {e}"))
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(IntCounterVec::new(Opts::new(name, help), labels))
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayMetrics {
    /// The series, registered nowhere yet.
    pub fn new() -> Self {
        let invocation_buckets = vec![0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];
        // Fine enough between 10 µs and 50 ms (1-2-5 steps) for a useful p99 of a fan-out, which on a
        // busy node is hundreds of microseconds to a few milliseconds.
        let fanout_buckets = vec![
            0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
            0.05, 0.1, 0.5, 1.0,
        ];
        Self {
            connections: registered(IntGaugeVec::new(
                Opts::new("hubcast_hub_connections", "Open hub connections"),
                &["hub", "transport", "protocol"],
            )),
            invocation_seconds: registered(HistogramVec::new(
                HistogramOpts::new(
                    "hubcast_hub_invocation_duration_seconds",
                    "How long hub method invocations ran",
                )
                .buckets(invocation_buckets),
                &["hub"],
            )),
            fanout_seconds: registered(Histogram::with_opts(
                HistogramOpts::new(
                    "hubcast_hub_fanout_duration_seconds",
                    "How long delivering one send to this node's recipients took",
                )
                .buckets(fanout_buckets),
            )),
            transport_connections: registered(IntGauge::new(
                "hubcast_transport_connections",
                "Transport connections (negotiated, not yet closed)",
            )),
            bytes_in: registered(IntCounter::new(
                "hubcast_transport_received_bytes_total",
                "Hub-protocol bytes received from clients",
            )),
            bytes_out: registered(IntCounter::new(
                "hubcast_transport_sent_bytes_total",
                "Hub-protocol bytes handed to the transports for clients",
            )),
            slow_consumer_closes: registered(IntCounter::new(
                "hubcast_hub_slow_consumer_closes_total",
                "Connections closed because their outbound queue was full",
            )),
            connects: counter(
                "hubcast_hub_connects_total",
                "Hub connections that completed their handshake",
                &["hub", "transport"],
            ),
            disconnects: counter(
                "hubcast_hub_disconnects_total",
                "Hub connections that ended, by close reason",
                &["hub", "reason"],
            ),
            handshake_failures: counter(
                "hubcast_hub_handshake_failures_total",
                "Handshakes refused or abandoned",
                &["hub"],
            ),
            messages_in: counter(
                "hubcast_hub_messages_in_total",
                "Hub messages received, by type",
                &["hub", "type"],
            ),
            messages_out: counter(
                "hubcast_hub_messages_out_total",
                "Hub messages queued to connections",
                &["hub"],
            ),
            invocations: counter(
                "hubcast_hub_invocations_total",
                "Invocations by method and outcome",
                &["hub", "method", "outcome"],
            ),
            rate_limited: counter(
                "hubcast_hub_rate_limited_total",
                "Invocations refused by a rate limit",
                &["hub"],
            ),
            http_refusals: counter(
                "hubcast_http_refusals_total",
                "HTTP requests refused, by reason",
                &["reason"],
            ),
            auth_failures: counter(
                "hubcast_auth_failures_total",
                "Credentials refused on hub requests, by reason",
                &["reason"],
            ),
            drain_remaining: registered(IntGauge::new(
                "hubcast_drain_remaining_connections",
                "Connections a drain has yet to close (0 outside a drain)",
            )),
        }
    }

    /// Adds every series to `registry` (the process's, served at `/metrics`).
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        let collectors: [Box<dyn prometheus::core::Collector>; 17] = [
            Box::new(self.connections.clone()),
            Box::new(self.connects.clone()),
            Box::new(self.disconnects.clone()),
            Box::new(self.handshake_failures.clone()),
            Box::new(self.messages_in.clone()),
            Box::new(self.messages_out.clone()),
            Box::new(self.invocations.clone()),
            Box::new(self.invocation_seconds.clone()),
            Box::new(self.fanout_seconds.clone()),
            Box::new(self.slow_consumer_closes.clone()),
            Box::new(self.rate_limited.clone()),
            Box::new(self.http_refusals.clone()),
            Box::new(self.auth_failures.clone()),
            Box::new(self.transport_connections.clone()),
            Box::new(self.bytes_in.clone()),
            Box::new(self.bytes_out.clone()),
            Box::new(self.drain_remaining.clone()),
        ];
        collectors
            .into_iter()
            .try_for_each(|collector| registry.register(collector))
    }

    /// The series of `hub` resolved once, for its hot paths. Creating them also makes the series that
    /// only count failures appear at 0, so dashboards and alerts see them before the first event.
    pub(crate) fn hub(&self, hub: &str) -> HubMetrics {
        for reason in ["invalid_token", "missing_credentials"] {
            self.auth_failures.with_label_values(&[reason]);
        }
        HubMetrics {
            connections: self.connections.clone(),
            connects: self.connects.clone(),
            disconnects: self.disconnects.clone(),
            invocations: self.invocations.clone(),
            fanout_seconds: self.fanout_seconds.clone(),
            bytes_in: self.bytes_in.clone(),
            messages_in: MESSAGE_TYPES.map(|kind| self.messages_in.with_label_values(&[hub, kind])),
            messages_out: self.messages_out.with_label_values(&[hub]),
            handshake_failures: self.handshake_failures.with_label_values(&[hub]),
            rate_limited: self.rate_limited.with_label_values(&[hub]),
            invocation_seconds: self.invocation_seconds.with_label_values(&[hub]),
        }
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
    /// By hub, transport and protocol.
    pub(crate) connections: IntGaugeVec,
    /// By hub and transport.
    pub(crate) connects: IntCounterVec,
    /// By hub and close reason.
    pub(crate) disconnects: IntCounterVec,
    /// By hub, method and outcome.
    pub(crate) invocations: IntCounterVec,
    pub(crate) fanout_seconds: Histogram,
    pub(crate) bytes_in: IntCounter,
    /// By [`message_type`].
    pub(crate) messages_in: [IntCounter; 9],
    pub(crate) messages_out: IntCounter,
    pub(crate) handshake_failures: IntCounter,
    pub(crate) rate_limited: IntCounter,
    pub(crate) invocation_seconds: Histogram,
}

//! The listener's series: connections refused at accept and failed accepts. One set per process,
//! shared by every listener [`serve`](crate::serve) runs, registered by the binary.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// The HTTP listeners' metrics.
#[derive(Clone)]
pub struct HttpMetrics {
    /// TCP connections closed at accept, by the cap they were over (`max_connections`,
    /// `max_connections_per_ip`).
    pub(crate) refused_connections: IntCounterVec,
    /// Failed accepts (out of file descriptors, say).
    pub(crate) accept_errors: IntCounter,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpMetrics {
    /// The series, not yet registered anywhere.
    pub fn new() -> Self {
        let refused_connections = IntCounterVec::new(
            Opts::new(
                "hubcast_http_refused_connections_total",
                "TCP connections closed at accept, by the cap they were over",
            ),
            &["reason"],
        )
        .unwrap_or_else(|e| unreachable!("a static metric definition: {e}"));
        // The series exist at 0 from the start, for dashboards and alerts.
        for reason in ["max_connections", "max_connections_per_ip"] {
            refused_connections.with_label_values(&[reason]);
        }
        let accept_errors = IntCounter::new(
            "hubcast_http_accept_errors_total",
            "Failed accepts (out of file descriptors, say)",
        )
        .unwrap_or_else(|e| unreachable!("a static metric definition: {e}"));
        Self {
            refused_connections,
            accept_errors,
        }
    }

    /// Adds the series to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.refused_connections.clone()))?;
        registry.register(Box::new(self.accept_errors.clone()))
    }
}

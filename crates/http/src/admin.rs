//! The admin listener: `/live` (the process is up; never depends on Redis), `/ready` (this process
//! takes new work; a drain turns it off) and `/metrics` (the Prometheus text format of the process's
//! one registry, which the binary owns and every component registers its series in).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Request, StatusCode};
use hyper::body::Incoming;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{HttpMetrics, ServerLimits, bytes, text};

/// Whether the process takes new work; the drain sets it false.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the process ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Serves the admin endpoints until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    readiness: Readiness,
    registry: Registry,
    metrics: &HttpMetrics,
    shutdown: CancellationToken,
) {
    let handler = move |request: Request<Incoming>, _| {
        let response = match request.uri().path() {
            "/live" => text(StatusCode::OK, "OK"),
            "/ready" if readiness.is_ready() => text(StatusCode::OK, "OK"),
            "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "Not Ready"),
            "/metrics" => bytes(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                bytes::Bytes::from(render(&registry)),
            ),
            _ => text(StatusCode::NOT_FOUND, "Not Found"),
        };
        std::future::ready(response)
    };
    crate::serve(
        listener,
        &ServerLimits::default(),
        metrics,
        shutdown,
        handler,
    )
    .await;
}

/// The text exposition of every series in `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(error) = encoder.encode_utf8(&registry.gather(), &mut out) {
        tracing::warn!(%error, "metrics could not be encoded");
    }
    out
}
